// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s

// No schedule at all: every stage fuses its spatial loops, splits them by 64 and binds the
// parts to block.x and thread.x; reduction loops stay inside, unbound.
builtin.module {
  func.func @main(%A: tensor<10x20xf32>, %B: tensor<20x30xf32>) -> tensor<10x30xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<10x20xf32>, tensor<20x30xf32>) -> tensor<10x30xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<10x30xf32>) -> tensor<10x30xf32>
    func.return %R : tensor<10x30xf32>
  }
}

// C: i and j (10 x 30 = 300) fuse into i_j, split by 64 into 5 blocks; guarded by < 300.
// CHECK:      %[[NB:.*]] = arith.constant 5 : index
// CHECK:      scf.for %i_j.o = %{{.*}} to %[[NB]] step
// CHECK-NEXT:   %[[NT:.*]] = arith.constant 64 : index
// CHECK-NEXT:   scf.for %i_j.i = %{{.*}} to %[[NT]] step
// CHECK-NEXT:     %[[O:.*]] = arith.muli %i_j.o, %[[NT]] : index
// CHECK-NEXT:     %[[IJ:.*]] = arith.addi %[[O]], %i_j.i : index
// CHECK-NEXT:     %[[TOTAL:.*]] = arith.constant 300 : index
// CHECK-NEXT:     %[[IN:.*]] = arith.cmpi slt, %[[IJ]], %[[TOTAL]] : index
// CHECK-NEXT:     scf.if %[[IN]] {
// CHECK:          scf.for %k =
// CHECK-NEXT:       scf.if %[[IN]] {
// CHECK:          } {sched.stage = "C", sched.axis = "k", sched.reduce}
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "i_j.i", sched.bind = "thread.x"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "i_j.o", sched.bind = "block.x"}

// R: d0 and d1 the same way.
// CHECK-NEXT: scf.for %d0_d1.o = %{{.*}} to %[[NB]] step
// CHECK-NEXT:   %[[NT2:.*]] = arith.constant 64 : index
// CHECK-NEXT:   scf.for %d0_d1.i = %{{.*}} to %[[NT2]] step
// CHECK:          arith.cmpi slt
// CHECK:          memref.store %{{.*}}, %R[%{{.*}}, %{{.*}}] : memref<10x30xf32>
// CHECK:        } {sched.stage = "R", sched.axis = "d0_d1.i", sched.bind = "thread.x"}
// CHECK-NEXT: } {sched.stage = "R", sched.axis = "d0_d1.o", sched.bind = "block.x"}
