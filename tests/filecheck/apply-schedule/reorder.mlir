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
// loop outermost, the initialisation gets a nest of its own over the spatial loops, in the
// same relative order (j, i), ahead of the main nest.
// CHECK:      scf.for %j =
// CHECK-NEXT:   %{{.*}} = arith.constant 64 : index
// CHECK-NEXT:   scf.for %i =
// CHECK-NEXT:     %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:     memref.store %[[Z]], %C[%i, %j] : memref<64x48xf32>
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "i"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "j"}
// CHECK:      %[[KO_UB:.*]] = arith.constant 4 : index
// CHECK-NEXT: scf.for %ko = %{{.*}} to %[[KO_UB]] step
// CHECK-NEXT:   scf.for %j_1 =
// CHECK:          scf.for %i_1 =
// CHECK-NEXT:       %[[KI_UB:.*]] = arith.constant 8 : index
// CHECK-NEXT:       scf.for %ki = %{{.*}} to %[[KI_UB]] step
// CHECK-NEXT:         %[[K0:.*]] = arith.muli %ko, %[[KI_UB]] : index
// CHECK-NEXT:         %[[K:.*]] = arith.addi %[[K0]], %ki : index
// CHECK-NEXT:         memref.load %A[%i_1, %[[K]]]
// CHECK-NEXT:         memref.load %B[%[[K]], %j_1]
// CHECK:            } {sched.stage = "C", sched.axis = "ki", sched.reduce}
// CHECK-NEXT:     } {sched.stage = "C", sched.axis = "i"}
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "j"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "ko", sched.reduce}
// CHECK-NEXT: func.return
