// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s

builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %ij = sched.fuse %i, %j
    %o, %t = sched.split %ij by 128
    sched.bind %o "block.x"
    sched.bind %t "thread.x"
  }
}

// i (64) and j (48) fuse into one loop of 3072, split by 128 into 24 x 128 and bound;
// i and j are rebuilt as ij / 48 and ij % 48.
// CHECK:      %[[O_UB:.*]] = arith.constant 24 : index
// CHECK-NEXT: %{{.*}} = arith.constant 1 : index
// CHECK-NEXT: scf.for %o = %{{.*}} to %[[O_UB]] step
// CHECK-NEXT:   %[[T_UB:.*]] = arith.constant 128 : index
// CHECK-NEXT:   scf.for %t = %{{.*}} to %[[T_UB]] step
// CHECK-NEXT:     %[[O128:.*]] = arith.muli %o, %[[T_UB]] : index
// CHECK-NEXT:     %[[IJ:.*]] = arith.addi %[[O128]], %t : index
// CHECK-NEXT:     %[[NJ:.*]] = arith.constant 48 : index
// CHECK-NEXT:     %[[I:.*]] = arith.divui %[[IJ]], %[[NJ]] : index
// CHECK-NEXT:     %[[J:.*]] = arith.remui %[[IJ]], %[[NJ]] : index
// CHECK-NEXT:     %{{.*}} = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:     memref.store %{{.*}}, %C[%[[I]], %[[J]]] : memref<64x48xf32>
// CHECK:          scf.for %k =
// CHECK:          } {sched.stage = "C", sched.axis = "k", sched.reduce}
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "t", sched.bind = "thread.x"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "o", sched.bind = "block.x"}
