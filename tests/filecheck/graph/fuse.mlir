// RUN: sched-opt %s -p tensorop-fuse | filecheck %s
// RUN: sched-opt %s -p tensorop-fuse,tensorop-to-loops,apply-schedule,loops-to-gpu | filecheck %s --check-prefix=GPU
// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu | filecheck %s --check-prefix=UNFUSED

// A ResNet-style block: conv -> bias -> relu -> residual add -> relu is one group (anchor
// "conv"). "skip" has two consumers (the residual add and "side"), so it is fused into
// neither and keeps its own kernel; "side" anchors its own elementwise chain with "side2".
// "grow" broadcasts a 1x4x1x1 tensor up to 1x4x6x6, so it does not join "pooled".
builtin.module {
  func.func @main(%x: tensor<1x3x6x6xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>, %w2: tensor<4x3x1x1xf32>, %big: tensor<1x4x6x6xf32>) -> (tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>) {
    %conv = tensorop.conv2d %x, %w {name = "conv", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x6x6xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
    %bias = tensorop.bias_add %conv, %b {name = "bias", axis = 1 : i64} : (tensor<1x4x6x6xf32>, tensor<4xf32>) -> tensor<1x4x6x6xf32>
    %act = tensorop.unary %bias {name = "act", fn = "relu"} : (tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
    %skip = tensorop.conv2d %x, %w2 {name = "skip", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x6x6xf32>, tensor<4x3x1x1xf32>) -> tensor<1x4x6x6xf32>
    %res = tensorop.binary %act, %skip {name = "res", fn = "add"} : (tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
    %out = tensorop.unary %res {name = "out", fn = "relu"} : (tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
    %side = tensorop.unary %skip {name = "side", fn = "sigmoid"} : (tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
    %side2 = tensorop.binary %side, %big {name = "side2", fn = "mul"} : (tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
    %pooled = tensorop.reduce %out {name = "pooled", fn = "mean", axes = array<i64: 2, 3>, keepdims = 1 : i64} : (tensor<1x4x6x6xf32>) -> tensor<1x4x1x1xf32>
    %grow = tensorop.binary %pooled, %big {name = "grow", fn = "add"} : (tensor<1x4x1x1xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
    func.return %side2, %grow, %out : tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>
  }
}

// CHECK:      tensorop.conv2d {{.*}} {group = "conv", name = "conv"
// CHECK-NEXT: tensorop.bias_add {{.*}} {group = "conv", name = "bias"
// CHECK-NEXT: tensorop.unary {{.*}} {group = "conv", name = "act"
// CHECK-NEXT: tensorop.conv2d {{.*}} {name = "skip"
// CHECK-NEXT: tensorop.binary {{.*}} {group = "conv", name = "res"
// CHECK-NEXT: tensorop.unary {{.*}} {group = "conv", name = "out"
// CHECK-NEXT: tensorop.unary {{.*}} {group = "side", name = "side"
// CHECK-NEXT: tensorop.binary {{.*}} {group = "side", name = "side2"
// "out" is returned and read by "pooled": the group ends there, "pooled" is its own kernel
// CHECK-NEXT: tensorop.reduce {{.*}} {name = "pooled"
// CHECK-NEXT: tensorop.binary {{.*}} {name = "grow"

// Five kernels: skip, the conv group (launched where its last op stands, once "skip" exists),
// the side chain, pooled, grow. The fused conv accumulates in a register (the default
// schedule of a fused reduction) and, after the reduction loops, adds the bias, applies relu,
// adds the residual and applies relu, then stores into "out": "conv", "bias", "act" and
// "res" never reach memory.
// GPU:     launch_func{{.*}}@kernels::@main_skip
// GPU:     launch_func{{.*}}@kernels::@main_conv
// GPU:     launch_func{{.*}}@kernels::@main_side
// GPU:     launch_func{{.*}}@kernels::@main_pooled
// GPU:     launch_func{{.*}}@kernels::@main_grow
// GPU-NOT: launch_func
// GPU:     sym_name = "main_skip"
// GPU:     %out_local = memref.alloca() : memref<1xf32, #memspace<addr local>>
// GPU:     scf.for %rc
// GPU-NOT: memref.store {{.*}}, %out[
// GPU:     memref.store %{{.*}}, %out_local[%{{.*}}]
// GPU:     } {sched.stage = "conv", sched.axis = "rc", sched.reduce}
// GPU:     %[[ACC:.*]] = memref.load %out_local
// GPU-NEXT: %[[B:.*]] = memref.load %b
// GPU-NEXT: %[[BIAS:.*]] = arith.addf %[[ACC]], %[[B]] : f32
// GPU-NEXT: %[[ACT:.*]] = arith.maximumf %[[BIAS]]
// GPU-NEXT: %[[SKIP:.*]] = memref.load %skip
// GPU-NEXT: %[[RES:.*]] = arith.addf %[[ACT]], %[[SKIP]] : f32
// GPU-NEXT: %[[OUT:.*]] = arith.maximumf %[[RES]]
// GPU-NEXT: memref.store %[[OUT]], %out
// GPU:     sym_name = "main_conv"

// Without the pass every operator is its own kernel.
// UNFUSED-COUNT-10: launch_func
// UNFUSED-NOT:      launch_func
