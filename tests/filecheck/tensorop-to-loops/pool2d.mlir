// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%X: tensor<1x2x8x8xf32>) -> (tensor<1x2x4x4xf32>, tensor<1x2x8x8xf32>) {
    %P = tensorop.pool2d %X {name = "P", kind = "max", kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>} : (tensor<1x2x8x8xf32>) -> tensor<1x2x4x4xf32>
    %Q = tensorop.pool2d %X {name = "Q", kind = "avg", kernel = array<i64: 3, 3>, stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x2x8x8xf32>) -> tensor<1x2x8x8xf32>
    func.return %P, %Q : tensor<1x2x4x4xf32>, tensor<1x2x8x8xf32>
  }
}

// CHECK:      func.func @main(%X: memref<1x2x8x8xf32>, %P: memref<1x2x4x4xf32>, %Q: memref<1x2x8x8xf32>)
// CHECK-SAME: sched.num_inputs = 1 : i64

// Max pooling, 2x2 window, stride 2, no padding: no bounds check, init -inf, maximumf.
// CHECK:      scf.for %n =
// CHECK:      scf.for %c =
// CHECK:      scf.for %y =
// CHECK:      scf.for %x =
// CHECK:      scf.for %ry =
// CHECK:      scf.for %rx =
// CHECK-NOT:  scf.if
// CHECK:      %[[V:.*]] = memref.load %X[%n, %c, %{{.*}}, %{{.*}}] : memref<1x2x8x8xf32>
// CHECK:      %[[OLD:.*]] = memref.load %P[%n, %c, %y, %x] : memref<1x2x4x4xf32>
// CHECK-NEXT: %[[NEGINF:.*]] = arith.constant 0xff800000 : f32
// CHECK-NEXT: %[[ACC:.*]] = arith.select %{{.*}}, %[[NEGINF]], %[[OLD]] {sched.init} : f32
// CHECK-NEXT: %[[M:.*]] = arith.maximumf %[[ACC]], %[[V]] : f32
// CHECK-NEXT: memref.store %[[M]], %P[%n, %c, %y, %x]
// CHECK-NEXT: } {sched.stage = "P", sched.axis = "rx", sched.reduce}
// CHECK-NEXT: } {sched.stage = "P", sched.axis = "ry", sched.reduce}
// CHECK-NEXT: } {sched.stage = "P", sched.axis = "x"}
// CHECK-NEXT: } {sched.stage = "P", sched.axis = "y"}
// CHECK-NEXT: } {sched.stage = "P", sched.axis = "c"}
// CHECK-NEXT: } {sched.stage = "P", sched.axis = "n"}

// Average pooling, 3x3 window, stride 1, padding 1: a second nest whose loop variables get
// fresh names; padded reads are 0 and each term is divided by the in-bounds window size.
// CHECK:      scf.for %n_1 =
// CHECK:      scf.for %c_1 =
// CHECK:      scf.for %y_1 =
// CHECK:      scf.for %x_1 =
// CHECK:      scf.for %ry_1 =
// CHECK:      scf.for %rx_1 =
// CHECK:      %[[IN:.*]] = scf.if %{{.*}} -> (f32) {
// CHECK-NEXT:   memref.load %X[%n_1, %c_1, %{{.*}}, %{{.*}}] : memref<1x2x8x8xf32>
// CHECK:      } else {
// CHECK-NEXT:   arith.constant 0.000000e+00 : f32
// CHECK:      arith.minsi
// CHECK:      arith.maxsi
// CHECK:      arith.minsi
// CHECK:      arith.maxsi
// CHECK:      %[[CNT:.*]] = arith.muli
// CHECK-NEXT: %[[CNT32:.*]] = arith.index_cast %[[CNT]] : index to i32
// CHECK-NEXT: %[[CNTF:.*]] = arith.sitofp %[[CNT32]] : i32 to f32
// CHECK-NEXT: %[[TERM:.*]] = arith.divf %[[IN]], %[[CNTF]] : f32
// CHECK:      %[[OLD2:.*]] = memref.load %Q[%n_1, %c_1, %y_1, %x_1] : memref<1x2x8x8xf32>
// CHECK-NEXT: %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %[[ACC2:.*]] = arith.select %{{.*}}, %[[Z]], %[[OLD2]] {sched.init} : f32
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[ACC2]], %[[TERM]] : f32
// CHECK-NEXT: memref.store %[[S]], %Q[%n_1, %c_1, %y_1, %x_1]
// CHECK-NEXT: } {sched.stage = "Q", sched.axis = "rx", sched.reduce}
// CHECK-NEXT: } {sched.stage = "Q", sched.axis = "ry", sched.reduce}
// CHECK-NEXT: } {sched.stage = "Q", sched.axis = "x"}
// CHECK-NEXT: } {sched.stage = "Q", sched.axis = "y"}
// CHECK-NEXT: } {sched.stage = "Q", sched.axis = "c"}
// CHECK-NEXT: } {sched.stage = "Q", sched.axis = "n"}
// CHECK-NEXT: func.return
