// RUN: sched-opt %s -p tensorop-place,tensorop-plan-memory | filecheck %s
// RUN: sched-opt %s -p 'tensorop-place,tensorop-plan-memory{alignment=4096}' | filecheck %s --check-prefix=ALIGN

// A concat along channels at batch 1: each operand is one contiguous slice of the result, so
// the convs write straight into it (their offsets are the concat's plus the slice's) and the
// concat is marked arena_in_place (no kernel). a and b are 1 KiB each: the concat takes 2 KiB
// from a's write to y's, y 512 bytes beside it.
builtin.module {
  func.func @main(%x: tensor<1x4x8x8xf32>, %w: tensor<4x4x3x3xf32>, %v: tensor<2x8x1x1xf32>) -> tensor<1x2x8x8xf32> {
    %a = tensorop.conv2d %x, %w {name = "a", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
    %b = tensorop.conv2d %a, %w {name = "b", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
    %cat = tensorop.concat %a, %b {name = "cat", axis = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
    %y = tensorop.conv2d %cat, %v {name = "y", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x8x8xf32>, tensor<2x8x1x1xf32>) -> tensor<1x2x8x8xf32>
    func.return %y : tensor<1x2x8x8xf32>
  }
}

// CHECK:      func.func @main({{.*}} attributes {arena_size = 2560 : i64}
// CHECK-NEXT:   %a = tensorop.conv2d {{.*}}arena_offset = 0 : i64
// CHECK-NEXT:   %b = tensorop.conv2d {{.*}}arena_offset = 1024 : i64
// CHECK-NEXT:   %cat = tensorop.concat {{.*}}arena_offset = 0 : i64, arena_in_place
// CHECK-NEXT:   %y = tensorop.conv2d {{.*}}arena_offset = 2048 : i64

// With 4 KiB alignment b's slice (at 1 KiB) cannot be a view: the concat copies.
// ALIGN-NOT:  arena_in_place
