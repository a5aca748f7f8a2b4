// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%X: tensor<2x5xf32>) -> tensor<2x5xi32> {
    %AS = tensorop.argsort %X {name = "AS", axis = -1 : i64, descending = 1 : i64} : (tensor<2x5xf32>) -> tensor<2x5xi32>
    func.return %AS : tensor<2x5xi32>
  }
}

// Two stages: AS.rank counts, for each element i, the elements j that come before it
// (larger, or equal with a lower index), an i32 reduction; AS scatters out[rank[i]] = i.
// CHECK:      func.func @main(%X: memref<2x5xf32>, %AS: memref<2x5xi32>)
// CHECK-NEXT: %AS.rank = memref.alloc() : memref<2x5xi32>
// CHECK:      scf.for %d0 =
// CHECK:      scf.for %d1 =
// CHECK:      scf.for %j =
// CHECK-NEXT: %[[XI:.*]] = memref.load %X[%d0, %d1] : memref<2x5xf32>
// CHECK-NEXT: %[[XJ:.*]] = memref.load %X[%d0, %j] : memref<2x5xf32>
// CHECK-NEXT: %[[GT:.*]] = arith.cmpf ogt, %[[XJ]], %[[XI]] : f32
// CHECK-NEXT: %[[EQ:.*]] = arith.cmpf oeq, %[[XJ]], %[[XI]] : f32
// CHECK-NEXT: %[[LOWER:.*]] = arith.cmpi slt, %j, %d1 : index
// CHECK-NEXT: %[[TIE:.*]] = arith.andi %[[EQ]], %[[LOWER]] : i1
// CHECK-NEXT: %[[BEFORE:.*]] = arith.ori %[[GT]], %[[TIE]] : i1
// CHECK:      %[[ONE:.*]] = arith.select %[[BEFORE]], %{{.*}}, %{{.*}} : i32
// CHECK:      %[[OLD:.*]] = memref.load %AS.rank[%d0, %d1] : memref<2x5xi32>
// CHECK-NEXT: %[[Z:.*]] = arith.constant 0 : i32
// CHECK-NEXT: %[[ACC:.*]] = arith.select %{{.*}}, %[[Z]], %[[OLD]] {sched.init} : i32
// CHECK-NEXT: %[[R:.*]] = arith.addi %[[ACC]], %[[ONE]] : i32
// CHECK-NEXT: memref.store %[[R]], %AS.rank[%d0, %d1] : memref<2x5xi32>
// CHECK-NEXT: } {sched.stage = "AS.rank", sched.axis = "j", sched.reduce}

// CHECK:      scf.for %d0_1 =
// CHECK:      scf.for %d1_1 =
// CHECK:      %[[RK:.*]] = memref.load %AS.rank[%d0_1, %d1_1] : memref<2x5xi32>
// CHECK-NEXT: %[[AT:.*]] = arith.index_cast %[[RK]] : i32 to index
// CHECK-NEXT: %[[I:.*]] = arith.index_cast %d1_1 : index to i32
// CHECK-NEXT: memref.store %[[I]], %AS[%d0_1, %[[AT]]] : memref<2x5xi32>
// CHECK-NEXT: } {sched.stage = "AS", sched.axis = "d1"}
