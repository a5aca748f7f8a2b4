// RUN: sched-opt %s -p tensorop-place,tensorop-fuse,tensorop-plan-memory | filecheck %s
// RUN: sched-opt %s -p 'tensorop-place,tensorop-plan-memory{alignment=4096}' | filecheck %s --check-prefix=UNFUSED
// RUN: not sched-opt %s -p 'tensorop-plan-memory{alignment=100}' 2>&1 | filecheck %s --check-prefix=ERR

// A chain of convs with a residual add. Fused, the groups are c1+r1 and c4+add; every value
// is 1024 bytes (p: 16). Lifetimes, in op positions (a group's reads happen where its last
// member stands): r1 [1,2], c2 [2,5] (the residual add reads it), c3 [3,5], add [5,7] (copied
// to the host at 7), p [6,8]. c3 takes r1's bytes, p takes c3's: 3 KiB instead of 4 KiB + 16.
// c1 and c4 only feed their own group: they never reach memory and get no offset.
builtin.module {
  func.func @main(%x: tensor<1x4x8x8xf32>, %w: tensor<4x4x3x3xf32>, %b: tensor<4xf32>) -> (tensor<1x4x8x8xf32>, tensor<1x4x1x1xf32>) {
    %c1 = tensorop.conv2d %x, %w {name = "c1", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
    %r1 = tensorop.bias_add %c1, %b {name = "r1", axis = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
    %c2 = tensorop.conv2d %r1, %w {name = "c2", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
    %c3 = tensorop.conv2d %c2, %w {name = "c3", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
    %c4 = tensorop.conv2d %c3, %w {name = "c4", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
    %add = tensorop.binary %c4, %c2 {name = "add", fn = "add"} : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
    %p = tensorop.reduce %add {name = "p", fn = "mean", axes = array<i64: 2, 3>, keepdims = 1 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x1x1xf32>
    func.return %add, %p : tensor<1x4x8x8xf32>, tensor<1x4x1x1xf32>
  }
}

// CHECK:      func.func @main({{.*}} attributes {arena_size = 3072 : i64}
// CHECK-NEXT:   %c1 = tensorop.conv2d
// CHECK-NOT:    arena_offset
// CHECK-SAME:   name = "c1"
// CHECK-NEXT:   %r1 = tensorop.bias_add {{.*}}arena_offset = 0 : i64
// CHECK-NEXT:   %c2 = tensorop.conv2d {{.*}}arena_offset = 1024 : i64
// CHECK-NEXT:   %c3 = tensorop.conv2d {{.*}}arena_offset = 0 : i64
// CHECK-NEXT:   %c4 = tensorop.conv2d
// CHECK-NOT:    arena_offset
// CHECK-SAME:   name = "c4"
// CHECK-NEXT:   %add = tensorop.binary {{.*}}arena_offset = 2048 : i64
// CHECK-NEXT:   %p = tensorop.reduce {{.*}}arena_offset = 0 : i64
// CHECK-NEXT:   tensorop.copy %add {to = "host"}
// CHECK-NOT:    arena_offset

// Unfused, every op's result is in memory; with 4 KiB alignment each value takes 4 KiB. At
// most three live at once (at position 5: c2, c4 and add), so 12 KiB.
// UNFUSED:      attributes {arena_size = 12288 : i64}
// UNFUSED-COUNT-7: arena_offset = {{[0-9]+}}
// UNFUSED-NOT:  arena_offset

// ERR: tensorop-plan-memory: alignment=100 is not a power of two
