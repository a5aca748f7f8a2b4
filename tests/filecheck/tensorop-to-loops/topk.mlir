// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%X: tensor<2x5xf32>) -> (tensor<2x2xf32>, tensor<2x2xi32>) {
    %TK = tensorop.topk %X {name = "TK", k = 2 : i64, axis = -1 : i64, largest = 0 : i64} : (tensor<2x5xf32>) -> tensor<2x2xi32>
    %TK_values = tensorop.take_along_axis %X, %TK {name = "TK_values", axis = -1 : i64} : (tensor<2x5xf32>, tensor<2x2xi32>) -> tensor<2x2xf32>
    func.return %TK_values, %TK : tensor<2x2xf32>, tensor<2x2xi32>
  }
}

// topk (smallest first): ranks as in argsort, then a scatter of the ranks below k, then
// take_along_axis reads the values at the indices.
// CHECK:      func.func @main(%X: memref<2x5xf32>, %TK_values: memref<2x2xf32>, %TK: memref<2x2xi32>)
// CHECK-NEXT: %TK.rank = memref.alloc() : memref<2x5xi32>
// CHECK:      scf.for %j =
// CHECK:      arith.cmpf olt, %{{.*}}, %{{.*}} : f32
// CHECK:      } {sched.stage = "TK.rank", sched.axis = "j", sched.reduce}

// CHECK:      %[[RK:.*]] = memref.load %TK.rank[%d0_1, %d1_1] : memref<2x5xi32>
// CHECK-NEXT: %[[AT:.*]] = arith.index_cast %[[RK]] : i32 to index
// CHECK-NEXT: %[[K:.*]] = arith.constant 2 : i32
// CHECK-NEXT: %[[IN:.*]] = arith.cmpi slt, %[[RK]], %[[K]] : i32
// CHECK-NEXT: scf.if %[[IN]] {
// CHECK-NEXT:   %[[I:.*]] = arith.index_cast %d1_1 : index to i32
// CHECK-NEXT:   memref.store %[[I]], %TK[%d0_1, %[[AT]]] : memref<2x2xi32>
// CHECK:      } {sched.stage = "TK", sched.axis = "d1"}

// CHECK:      %[[IDX:.*]] = memref.load %TK[%d0_2, %d1_2] : memref<2x2xi32>
// CHECK-NEXT: %[[COL:.*]] = arith.index_cast %[[IDX]] : i32 to index
// CHECK-NEXT: %[[V:.*]] = memref.load %X[%d0_2, %[[COL]]] : memref<2x5xf32>
// CHECK-NEXT: memref.store %[[V]], %TK_values[%d0_2, %d1_2] : memref<2x2xf32>
// CHECK-NEXT: } {sched.stage = "TK_values", sched.axis = "d1"}
