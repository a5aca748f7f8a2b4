// RUN: sched-opt %s -p tensorop-place,tensorop-plan-memory | filecheck %s

// A reshape on the device moves no data: its result names its input's bytes and gets no
// place of its own, and the input lives until the reshape result's last read. c1 and c2 are
// read only through their reshapes, by s at position 4: both live to 4, so s (also read at
// 4) takes a third KiB. (Were the reshapes' reads not counted, all three would share one.)
builtin.module {
  func.func @main(%x: tensor<1x4x8x8xf32>, %w: tensor<4x4x3x3xf32>) -> tensor<4x64xf32> {
    %c1 = tensorop.conv2d %x, %w {name = "c1", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
    %r1 = tensorop.reshape %c1 {name = "r1"} : (tensor<1x4x8x8xf32>) -> tensor<4x64xf32>
    %c2 = tensorop.conv2d %x, %w {name = "c2", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
    %r2 = tensorop.reshape %c2 {name = "r2"} : (tensor<1x4x8x8xf32>) -> tensor<4x64xf32>
    %s = tensorop.binary %r1, %r2 {name = "s", fn = "add"} : (tensor<4x64xf32>, tensor<4x64xf32>) -> tensor<4x64xf32>
    func.return %s : tensor<4x64xf32>
  }
}

// CHECK:      func.func @main({{.*}} attributes {arena_size = 3072 : i64}
// CHECK-NEXT:   %c1 = tensorop.conv2d {{.*}}arena_offset = 0 : i64
// CHECK-NEXT:   %r1 = tensorop.reshape %c1
// CHECK-NOT:    arena_offset
// CHECK-SAME:   name = "r1"
// CHECK-NEXT:   %c2 = tensorop.conv2d {{.*}}arena_offset = 1024 : i64
// CHECK-NEXT:   %r2 = tensorop.reshape %c2
// CHECK-NOT:    arena_offset
// CHECK-SAME:   name = "r2"
// CHECK-NEXT:   %s = tensorop.binary {{.*}}arena_offset = 2048 : i64
