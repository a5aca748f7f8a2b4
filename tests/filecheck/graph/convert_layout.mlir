// RUN: sched-opt %s -p tensorop-convert-layout | filecheck %s
// RUN: sched-opt %s -p 'tensorop-convert-layout{layout="auto"}' | filecheck %s --check-prefix=AUTO
// RUN: sched-opt %s -p tensorop-convert-layout,tensorop-fuse | filecheck %s --check-prefix=FUSE
// RUN: sched-opt %s -p tensorop-convert-layout,tensorop-to-loops | filecheck %s --check-prefix=LOOPS
// RUN: not sched-opt %s -p 'tensorop-convert-layout{layout="NWHC"}' 2>&1 | filecheck %s --check-prefix=BAD

// @main: a 1x1 conv with its bias, a per-channel scale (a rank-3 weight) and relu, a 3x3 conv,
// a concat of both along the channels, a max pool; softmax reads relu's value (outside the
// region: softmax is not converted). In NHWC the region's ops take layout = "NHWC" or their
// axis moved from 1 to 3; the input is transposed in once (x_nhwc), the scale reshaped to 4-D
// and transposed (a weight: done once at load by the executor), and the two values read
// outside the region are transposed back once each (relu_nchw for softmax, pool_nchw for the
// return). No transpose runs between the region's ops.

// CHECK-LABEL: func.func @main
// CHECK:      %x_nhwc = tensorop.remap %x {name = "x_nhwc", source = array<i64: 0, 3, 1, 2>
// CHECK-SAME:   (tensor<2x8x6x6xf32>) -> tensor<2x6x6x8xf32>
// CHECK-NEXT: %c = tensorop.conv2d %x_nhwc, %w {{.*}}layout = "NHWC"} : (tensor<2x6x6x8xf32>, tensor<16x8x1x1xf32>) -> tensor<2x6x6x16xf32>
// CHECK-NEXT: %cb = tensorop.bias_add %c, %b {name = "bias", axis = 3 : i64}
// CHECK-NEXT: %s_4d = tensorop.reshape %s {{.*}} (tensor<16x1x1xf32>) -> tensor<1x16x1x1xf32>
// CHECK-NEXT: %s_nhwc = tensorop.remap %s_4d {{.*}} (tensor<1x16x1x1xf32>) -> tensor<1x1x1x16xf32>
// CHECK-NEXT: %m = tensorop.binary %cb, %s_nhwc {name = "scale", fn = "mul"}
// CHECK-NEXT: %r = tensorop.unary %m {name = "relu", fn = "relu"} : (tensor<2x6x6x16xf32>) -> tensor<2x6x6x16xf32>
// CHECK-NEXT: %relu_nchw = tensorop.remap %r {name = "relu_nchw", source = array<i64: 0, 2, 3, 1>
// CHECK-SAME:   (tensor<2x6x6x16xf32>) -> tensor<2x16x6x6xf32>
// CHECK-NEXT: %c2 = tensorop.conv2d %r, %w2 {{.*}}layout = "NHWC"}
// CHECK-NEXT: %cat = tensorop.concat %r, %c2 {name = "cat", axis = 3 : i64} : (tensor<2x6x6x16xf32>, tensor<2x6x6x16xf32>) -> tensor<2x6x6x32xf32>
// CHECK-NEXT: %p = tensorop.pool2d %cat {{.*}}layout = "NHWC"} : (tensor<2x6x6x32xf32>) -> tensor<2x3x3x32xf32>
// CHECK-NEXT: %pool_nchw = tensorop.remap %p {{.*}} (tensor<2x3x3x32xf32>) -> tensor<2x32x3x3xf32>
// CHECK-NEXT: %sm = tensorop.softmax %relu_nchw {name = "sm", axis = 1 : i64} : (tensor<2x16x6x6xf32>)
// CHECK-NEXT: func.return %pool_nchw, %sm : tensor<2x32x3x3xf32>, tensor<2x16x6x6xf32>

// @small: one 3x3 conv at batch 1 and its relu. Forced (the default layout = "NHWC") it is
// converted too; with layout = "auto" it stays NCHW (no conv of it prefers NHWC: its matmul
// form, if any, needs no channels last), while @main's region, with a 1x1 conv at batch 2
// and little moved at its edges, is converted.

// CHECK-LABEL: func.func @small
// CHECK-NEXT: %y_nhwc = tensorop.remap %y
// CHECK-NEXT: %k = tensorop.conv2d %y_nhwc, %v {{.*}}layout = "NHWC"}
// CHECK-NEXT: %a = tensorop.unary %k
// CHECK-NEXT: %act_nchw = tensorop.remap %a
// CHECK-NEXT: func.return %act_nchw

// AUTO-LABEL: func.func @main
// AUTO:       %x_nhwc = tensorop.remap %x
// AUTO:       tensorop.conv2d %x_nhwc, %w {{.*}}layout = "NHWC"}
// AUTO-LABEL: func.func @small
// AUTO-NEXT:  %k = tensorop.conv2d %y, %v {name = "k", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>
// AUTO-NOT:   tensorop.remap
// AUTO:       func.return %a

// An NHWC conv fuses with its bias (now along axis 3), scale and relu as an NCHW one does.
// FUSE:      tensorop.conv2d {{.*}} {group = "conv", name = "conv"
// FUSE-NEXT: tensorop.bias_add {{.*}} {group = "conv", name = "bias", axis = 3 : i64}
// FUSE:      tensorop.binary {{.*}} {group = "conv", name = "scale"
// FUSE-NEXT: tensorop.unary {{.*}} {group = "conv", name = "relu"

// The NHWC conv keeps its loops n, f, y, x, rc, ry, rx (x prints as %x_1: the argument is %x);
// it reads its input at [n, iy, ix, channel] and writes its output at [n, y, x, f].
// LOOPS-LABEL: func.func @main
// LOOPS:       scf.for %n =
// LOOPS:       scf.for %f =
// LOOPS:       scf.for %y =
// LOOPS:       scf.for %[[X:.*]] =
// LOOPS:       scf.for %rc =
// LOOPS:       scf.for %ry =
// LOOPS:       scf.for %rx =
// LOOPS:       memref.load %x_nhwc[%n, %{{.*}}, %{{.*}}, %rc] : memref<2x6x6x8xf32>
// LOOPS-NEXT:  memref.load %w[%f, %rc, %ry, %rx] : memref<16x8x1x1xf32>
// LOOPS:       memref.store %{{.*}}, %conv[%n, %y, %[[X]], %f] : memref<2x6x6x16xf32>

// BAD: tensorop-convert-layout: layout 'NWHC' is not one of NCHW, NHWC, auto
// BAD-NOT: Traceback

builtin.module {
  func.func @main(%x: tensor<2x8x6x6xf32>, %w: tensor<16x8x1x1xf32>, %b: tensor<16xf32>, %s: tensor<16x1x1xf32>, %w2: tensor<16x16x3x3xf32>) -> (tensor<2x32x3x3xf32>, tensor<2x16x6x6xf32>) {
    %c = tensorop.conv2d %x, %w {name = "conv", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<2x8x6x6xf32>, tensor<16x8x1x1xf32>) -> tensor<2x16x6x6xf32>
    %cb = tensorop.bias_add %c, %b {name = "bias", axis = 1 : i64} : (tensor<2x16x6x6xf32>, tensor<16xf32>) -> tensor<2x16x6x6xf32>
    %m = tensorop.binary %cb, %s {name = "scale", fn = "mul"} : (tensor<2x16x6x6xf32>, tensor<16x1x1xf32>) -> tensor<2x16x6x6xf32>
    %r = tensorop.unary %m {name = "relu", fn = "relu"} : (tensor<2x16x6x6xf32>) -> tensor<2x16x6x6xf32>
    %c2 = tensorop.conv2d %r, %w2 {name = "conv2", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<2x16x6x6xf32>, tensor<16x16x3x3xf32>) -> tensor<2x16x6x6xf32>
    %cat = tensorop.concat %r, %c2 {name = "cat", axis = 1 : i64} : (tensor<2x16x6x6xf32>, tensor<2x16x6x6xf32>) -> tensor<2x32x6x6xf32>
    %p = tensorop.pool2d %cat {name = "pool", kind = "max", kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>} : (tensor<2x32x6x6xf32>) -> tensor<2x32x3x3xf32>
    %sm = tensorop.softmax %r {name = "sm", axis = 1 : i64} : (tensor<2x16x6x6xf32>) -> tensor<2x16x6x6xf32>
    func.return %p, %sm : tensor<2x32x3x3xf32>, tensor<2x16x6x6xf32>
  }
  func.func @small(%y: tensor<1x4x8x8xf32>, %v: tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32> {
    %k = tensorop.conv2d %y, %v {name = "k", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
    %a = tensorop.unary %k {name = "act", fn = "relu"} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
    func.return %a : tensor<1x4x8x8xf32>
  }
}
