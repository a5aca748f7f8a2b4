// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
}

// Destination passing: inputs, then the output, as memrefs; the function returns nothing.
// CHECK:      func.func @main(%A: memref<64x32xf32>, %B: memref<32x48xf32>, %C: memref<64x48xf32>)
// CHECK-SAME: attributes {sched.arg_names = ["A", "B", "C"], sched.num_inputs = 2 : i64}
// CHECK-NOT:  tensorop.matmul
// CHECK:      %[[I_UB:.*]] = arith.constant 64 : index
// CHECK:      scf.for %i = %{{.*}} to %[[I_UB]] step
// CHECK:      %[[J_UB:.*]] = arith.constant 48 : index
// CHECK:      scf.for %j = %{{.*}} to %[[J_UB]] step
// CHECK:      %[[K_UB:.*]] = arith.constant 32 : index
// CHECK:      scf.for %k = %{{.*}} to %[[K_UB]] step
// CHECK-NEXT: %[[A:.*]] = memref.load %A[%i, %k] : memref<64x32xf32>
// CHECK-NEXT: %[[B:.*]] = memref.load %B[%k, %j] : memref<32x48xf32>
// CHECK-NEXT: %[[AB:.*]] = arith.mulf %[[A]], %[[B]] : f32
// CHECK-NEXT: %[[ZI:.*]] = arith.constant 0 : index
// CHECK-NEXT: %[[FIRST:.*]] = arith.cmpi eq, %k, %[[ZI]] : index
// CHECK-NEXT: %[[OLD:.*]] = memref.load %C[%i, %j] : memref<64x48xf32>
// CHECK-NEXT: %[[ZF:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %[[ACC:.*]] = arith.select %[[FIRST]], %[[ZF]], %[[OLD]] {sched.init} : f32
// CHECK-NEXT: %[[NEW:.*]] = arith.addf %[[ACC]], %[[AB]] : f32
// CHECK-NEXT: memref.store %[[NEW]], %C[%i, %j] : memref<64x48xf32>
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "k", sched.reduce}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "j"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "i"}
// CHECK-NEXT: func.return
// CHECK-NEXT: }
