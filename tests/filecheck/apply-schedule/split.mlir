// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s

builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %io, %ii = sched.split %i by 16
    %jo, %ji = sched.split %j by 10
  }
}

// i (64) split by 16 divides evenly: no guard on i. j (48) split by 10 does not: jo runs
// ceil(48 / 10) = 5 times and the body is guarded by jo * 10 + ji < 48, the initialisation
// included. The first-iteration select becomes a store of 0 before the reduction loop.
// CHECK:      %[[IO_UB:.*]] = arith.constant 4 : index
// CHECK-NEXT: %[[STEP:.*]] = arith.constant 1 : index
// CHECK-NEXT: scf.for %io = %{{.*}} to %[[IO_UB]] step %[[STEP]] {
// CHECK-NEXT:   %[[II_UB:.*]] = arith.constant 16 : index
// CHECK-NEXT:   scf.for %ii = %{{.*}} to %[[II_UB]] step %[[STEP]] {
// CHECK-NEXT:     %[[JO_UB:.*]] = arith.constant 5 : index
// CHECK-NEXT:     scf.for %jo = %{{.*}} to %[[JO_UB]] step %[[STEP]] {
// CHECK-NEXT:       %[[JI_UB:.*]] = arith.constant 10 : index
// CHECK-NEXT:       scf.for %ji = %{{.*}} to %[[JI_UB]] step %[[STEP]] {
// CHECK-NEXT:         %[[JO10:.*]] = arith.muli %jo, %[[JI_UB]] : index
// CHECK-NEXT:         %[[J:.*]] = arith.addi %[[JO10]], %ji : index
// CHECK-NEXT:         %[[J_UB:.*]] = arith.constant 48 : index
// CHECK-NEXT:         %[[IN:.*]] = arith.cmpi slt, %[[J]], %[[J_UB]] : index
// CHECK-NEXT:         scf.if %[[IN]] {
// CHECK-NEXT:           %[[IO16:.*]] = arith.muli %io, %[[II_UB]] : index
// CHECK-NEXT:           %[[I:.*]] = arith.addi %[[IO16]], %ii : index
// CHECK-NEXT:           %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:           memref.store %[[Z]], %C[%[[I]], %[[J]]] : memref<64x48xf32>
// CHECK-NEXT:         } else {
// CHECK-NEXT:         }
// CHECK:              scf.for %k =
// CHECK-NEXT:           scf.if %[[IN]] {
// CHECK-NOT:              sched.init
// CHECK:                  memref.load %A[%{{.*}}, %k]
// CHECK-NEXT:             memref.load %B[%k, %[[J]]]
// CHECK:                  memref.store %{{.*}}, %C[%{{.*}}, %[[J]]]
// CHECK-NEXT:           } else {
// CHECK-NEXT:           }
// CHECK-NEXT:         } {sched.stage = "C", sched.axis = "k", sched.reduce}
// CHECK-NEXT:       } {sched.stage = "C", sched.axis = "ji"}
// CHECK-NEXT:     } {sched.stage = "C", sched.axis = "jo"}
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "ii"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "io"}
// CHECK-NOT:  sched.schedule
