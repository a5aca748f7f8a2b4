// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s

builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %io, %jo, %ii, %ji = sched.tile %i, %j by 8, 16
  }
}

// tile = split both, then order io, jo, ii, ji; 64 / 8 and 48 / 16 divide: no guards.
// CHECK:      %[[IO_UB:.*]] = arith.constant 8 : index
// CHECK-NEXT: %{{.*}} = arith.constant 1 : index
// CHECK-NEXT: scf.for %io = %{{.*}} to %[[IO_UB]] step
// CHECK-NEXT:   %[[JO_UB:.*]] = arith.constant 3 : index
// CHECK-NEXT:   scf.for %jo = %{{.*}} to %[[JO_UB]] step
// CHECK-NEXT:     scf.for %ii = %{{.*}} to %[[IO_UB]] step
// CHECK-NEXT:       %[[JI_UB:.*]] = arith.constant 16 : index
// CHECK-NEXT:       scf.for %ji = %{{.*}} to %[[JI_UB]] step
// CHECK-NEXT:         %[[I0:.*]] = arith.muli %io, %[[IO_UB]] : index
// CHECK-NEXT:         %[[I:.*]] = arith.addi %[[I0]], %ii : index
// CHECK-NEXT:         %[[J0:.*]] = arith.muli %jo, %[[JI_UB]] : index
// CHECK-NEXT:         %[[J:.*]] = arith.addi %[[J0]], %ji : index
// CHECK-NOT:          scf.if
// CHECK:              memref.store %{{.*}}, %C[%[[I]], %[[J]]]
// CHECK:              scf.for %k =
// CHECK:              } {sched.stage = "C", sched.axis = "k", sched.reduce}
// CHECK-NEXT:       } {sched.stage = "C", sched.axis = "ji"}
// CHECK-NEXT:     } {sched.stage = "C", sched.axis = "ii"}
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "jo"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "io"}
