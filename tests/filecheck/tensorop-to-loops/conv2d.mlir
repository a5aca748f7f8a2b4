// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%X: tensor<1x4x8x8xf32>, %W: tensor<6x2x3x3xf32>) -> tensor<1x6x4x4xf32> {
    %Y = tensorop.conv2d %X, %W {name = "Y", stride = array<i64: 2, 2>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>) -> tensor<1x6x4x4xf32>
    func.return %Y : tensor<1x6x4x4xf32>
  }
}

// Grouped (2 groups), strided (2) and padded (1 on every side) convolution: loops n, f, y, x
// over the output and reductions rc (channels of one group), ry, rx.

// CHECK:      func.func @main(%X: memref<1x4x8x8xf32>, %W: memref<6x2x3x3xf32>, %Y: memref<1x6x4x4xf32>)
// CHECK-SAME: sched.arg_names = ["X", "W", "Y"], sched.num_inputs = 2 : i64
// CHECK-NOT:  tensorop.
// CHECK:      %[[N_UB:.*]] = arith.constant 1 : index
// CHECK:      scf.for %n = %{{.*}} to %[[N_UB]] step
// CHECK:      %[[F_UB:.*]] = arith.constant 6 : index
// CHECK:      scf.for %f = %{{.*}} to %[[F_UB]] step
// CHECK:      %[[Y_UB:.*]] = arith.constant 4 : index
// CHECK:      scf.for %y = %{{.*}} to %[[Y_UB]] step
// CHECK:      %[[X_UB:.*]] = arith.constant 4 : index
// CHECK:      scf.for %x = %{{.*}} to %[[X_UB]] step
// CHECK:      %[[RC_UB:.*]] = arith.constant 2 : index
// CHECK:      scf.for %rc = %{{.*}} to %[[RC_UB]] step
// CHECK:      %[[RY_UB:.*]] = arith.constant 3 : index
// CHECK:      scf.for %ry = %{{.*}} to %[[RY_UB]] step
// CHECK:      %[[RX_UB:.*]] = arith.constant 3 : index
// CHECK:      scf.for %rx = %{{.*}} to %[[RX_UB]] step

// The input channel is group * 2 + rc, with group = f / 3 (3 filters per group).
// CHECK:      %[[FPG:.*]] = arith.constant 3 : index
// CHECK-NEXT: %[[G:.*]] = arith.divui %f, %[[FPG]] : index
// CHECK-NEXT: %[[CPG:.*]] = arith.constant 2 : index
// CHECK-NEXT: %[[G0:.*]] = arith.muli %[[G]], %[[CPG]] : index
// CHECK-NEXT: %[[C:.*]] = arith.addi %[[G0]], %rc : index

// Input rows and columns are out * stride + r - pad.
// CHECK:      %[[YS:.*]] = arith.muli %y, %{{.*}} : index
// CHECK:      %[[YR:.*]] = arith.addi %[[YS]], %ry : index
// CHECK:      %[[IY:.*]] = arith.subi %[[YR]], %{{.*}} : index
// CHECK:      %[[XS:.*]] = arith.muli %x, %{{.*}} : index
// CHECK:      %[[XR:.*]] = arith.addi %[[XS]], %rx : index
// CHECK:      %[[IX:.*]] = arith.subi %[[XR]], %{{.*}} : index

// Padding reads as 0 before the start of the 8x8 input; no index passes its end
// (at most 3 * 2 + 2 - 1 = 7), so that side needs no check.
// CHECK:      arith.cmpi sge, %[[IY]]
// CHECK-NOT:  arith.cmpi slt, %[[IY]]
// CHECK:      arith.cmpi sge, %[[IX]]
// CHECK-NOT:  arith.cmpi slt
// CHECK:      %[[IN:.*]] = scf.if %{{.*}} -> (f32) {
// CHECK-NEXT:   %[[V:.*]] = memref.load %X[%n, %[[C]], %[[IY]], %[[IX]]] : memref<1x4x8x8xf32>
// CHECK-NEXT:   scf.yield %[[V]] : f32
// CHECK-NEXT: } else {
// CHECK-NEXT:   %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:   scf.yield %[[ZERO]] : f32
// CHECK-NEXT: }
// CHECK-NEXT: %[[WV:.*]] = memref.load %W[%f, %rc, %ry, %rx] : memref<6x2x3x3xf32>
// CHECK-NEXT: %[[PROD:.*]] = arith.mulf %[[IN]], %[[WV]] : f32

// The first reduction iteration is rc == 0 && ry == 0 && rx == 0; it starts from 0.
// CHECK:      arith.cmpi eq, %rc
// CHECK:      arith.cmpi eq, %ry
// CHECK:      arith.cmpi eq, %rx
// CHECK-NEXT: arith.andi
// CHECK-NEXT: %[[FIRST:.*]] = arith.andi
// CHECK-NEXT: %[[OLD:.*]] = memref.load %Y[%n, %f, %y, %x] : memref<1x6x4x4xf32>
// CHECK-NEXT: %[[INIT:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %[[ACC:.*]] = arith.select %[[FIRST]], %[[INIT]], %[[OLD]] {sched.init} : f32
// CHECK-NEXT: %[[SUM:.*]] = arith.addf %[[ACC]], %[[PROD]] : f32
// CHECK-NEXT: memref.store %[[SUM]], %Y[%n, %f, %y, %x] : memref<1x6x4x4xf32>
// CHECK-NEXT: } {sched.stage = "Y", sched.axis = "rx", sched.reduce}
// CHECK-NEXT: } {sched.stage = "Y", sched.axis = "ry", sched.reduce}
// CHECK-NEXT: } {sched.stage = "Y", sched.axis = "rc", sched.reduce}
// CHECK-NEXT: } {sched.stage = "Y", sched.axis = "x"}
// CHECK-NEXT: } {sched.stage = "Y", sched.axis = "y"}
// CHECK-NEXT: } {sched.stage = "Y", sched.axis = "f"}
// CHECK-NEXT: } {sched.stage = "Y", sched.axis = "n"}
// CHECK-NEXT: func.return
