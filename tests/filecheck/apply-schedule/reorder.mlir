// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s

builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    %ko, %ki = sched.split %k by 8
    sched.reorder %ko, %j, %i
  }
}

// Order ko, j, i, ki (the reorder fills the slots of the loops it names). With a reduction
// loop outermost there is no point outside every reduction loop to initialise C at, so the
// sched.init select stays in the body, now testing ko * 8 + ki == 0.
// CHECK:      %[[KO_UB:.*]] = arith.constant 4 : index
// CHECK-NEXT: %{{.*}} = arith.constant 1 : index
// CHECK-NEXT: scf.for %ko = %{{.*}} to %[[KO_UB]] step
// CHECK-NEXT:   %[[J_UB:.*]] = arith.constant 48 : index
// CHECK-NEXT:   scf.for %j = %{{.*}} to %[[J_UB]] step
// CHECK-NEXT:     %[[I_UB:.*]] = arith.constant 64 : index
// CHECK-NEXT:     scf.for %i = %{{.*}} to %[[I_UB]] step
// CHECK-NEXT:       %[[KI_UB:.*]] = arith.constant 8 : index
// CHECK-NEXT:       scf.for %ki = %{{.*}} to %[[KI_UB]] step
// CHECK-NEXT:         %[[K0:.*]] = arith.muli %ko, %[[KI_UB]] : index
// CHECK-NEXT:         %[[K:.*]] = arith.addi %[[K0]], %ki : index
// CHECK-NEXT:         %[[A:.*]] = memref.load %A[%i, %[[K]]]
// CHECK-NEXT:         %[[B:.*]] = memref.load %B[%[[K]], %j]
// CHECK-NEXT:         %[[AB:.*]] = arith.mulf %[[A]], %[[B]] : f32
// CHECK-NEXT:         %[[FIRST:.*]] = arith.cmpi eq, %[[K]], %{{.*}} : index
// CHECK-NEXT:         %[[OLD:.*]] = memref.load %C[%i, %j]
// CHECK-NEXT:         %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:         %[[ACC:.*]] = arith.select %[[FIRST]], %[[Z]], %[[OLD]] {sched.init} : f32
// CHECK-NEXT:         %[[NEW:.*]] = arith.addf %[[ACC]], %[[AB]] : f32
// CHECK-NEXT:         memref.store %[[NEW]], %C[%i, %j]
// CHECK-NEXT:       } {sched.stage = "C", sched.axis = "ki", sched.reduce}
// CHECK-NEXT:     } {sched.stage = "C", sched.axis = "i"}
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "j"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "ko", sched.reduce}
// CHECK-NEXT: func.return
