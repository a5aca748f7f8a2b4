// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%X: tensor<2x5xf32>) -> tensor<2x5xf32> {
    %CS = tensorop.scan %X {name = "CS", axis = 1 : i64, exclusive = 1 : i64, reverse = 0 : i64} : (tensor<2x5xf32>) -> tensor<2x5xf32>
    func.return %CS : tensor<2x5xf32>
  }
}

// An exclusive scan of 5: ceil(log2 5) = 3 Hillis-Steele steps, each an elementwise nest.
// CHECK:      func.func @main(%X: memref<2x5xf32>, %CS: memref<2x5xf32>)
// CHECK-NEXT: %CS.step0 = memref.alloc() : memref<2x5xf32>

// Step 0 reads the input moved one place (exclusive) and adds its neighbour 1 back.
// CHECK:      scf.for %d0 =
// CHECK:      scf.for %d1 =
// CHECK:      %[[P:.*]] = arith.subi %d1, %{{.*}} : index
// CHECK:      arith.cmpi sge, %[[P]]
// CHECK:      memref.load %X[%d0, %[[P]]] : memref<2x5xf32>
// CHECK:      %[[SUM0:.*]] = arith.addf
// CHECK-NEXT: memref.store %[[SUM0]], %CS.step0[%d0, %d1] : memref<2x5xf32>
// CHECK-NEXT: } {sched.stage = "CS.step0", sched.axis = "d1"}
// CHECK-NEXT: } {sched.stage = "CS.step0", sched.axis = "d0"}

// Step 1 adds the element 2 back, step 2 (the last, into the output) the element 4 back.
// CHECK:      %CS.step1 = memref.alloc() : memref<2x5xf32>
// CHECK:      %[[OWN1:.*]] = memref.load %CS.step0[%d0_1, %d1_1]
// CHECK-NEXT: %[[TWO:.*]] = arith.constant 2 : index
// CHECK-NEXT: %[[Q1:.*]] = arith.subi %d1_1, %[[TWO]] : index
// CHECK:      memref.load %CS.step0[%d0_1, %[[Q1]]]
// CHECK:      memref.store %{{.*}}, %CS.step1[%d0_1, %d1_1]
// CHECK:      } {sched.stage = "CS.step1", sched.axis = "d0"}
// CHECK:      memref.load %CS.step1[%d0_2, %d1_2]
// CHECK-NEXT: %[[FOUR:.*]] = arith.constant 4 : index
// CHECK-NEXT: %[[Q2:.*]] = arith.subi %d1_2, %[[FOUR]] : index
// CHECK:      memref.store %{{.*}}, %CS[%d0_2, %d1_2] : memref<2x5xf32>
// CHECK:      } {sched.stage = "CS", sched.axis = "d0"}
// CHECK-NOT:  sched.stage
