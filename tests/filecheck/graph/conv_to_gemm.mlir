// RUN: sched-opt %s -p tensorop-conv-to-gemm,tensorop-fuse | filecheck %s
// RUN: sched-opt %s -p "tensorop-conv-to-gemm{all=true}" | filecheck %s --check-prefix=ALL

// conv2d marked algorithm = "gemm" becomes a matmul of its weights (reshaped) and its windows
// (im2col). Its bias, residual add and relu move to the product's [f, oh * ow] shape (the
// residual reshaped, which moves no data) and fuse into the matmul; the reshape back to NCHW
// follows them and takes the chain's value and stage name. The 1x1 conv needs no im2col: its input
// reshaped is the windows' matrix. The bf16 conv is padded for a tensor-core tile: rows to a
// multiple of 16 (144 -> 144 here), the columns matrix with zero columns up to a multiple of 8
// (7 x 7 = 49 -> 56), and the matmul keeps its product's first 49 columns (no cut after it).
// split_k = 2 splits the 144 window rows into two
// slices of 72: a batched product of the weights' slices and the columns' (both reshapes, the
// weights' also a transpose) whose two partial products a reduce sums. algorithm = "winograd"
// takes F(4x4, 3x3) on the 8 x 8 f32 output: 36 products of the transformed filters [36, f, c]
// and tiles [36, c, 4 tiles], then the output transform. Unmarked convs stay, unless all=true;
// a conv marked "direct" stays in any case.
builtin.module {
  func.func @main(%x: tensor<1x16x8x8xf32>, %w: tensor<32x16x3x3xf32>, %b: tensor<32xf32>, %r: tensor<1x32x8x8xf32>, %w1: tensor<32x16x1x1xf32>, %xh: tensor<1x16x7x7xbf16>, %wh: tensor<32x16x3x3xbf16>) -> (tensor<1x32x8x8xf32>, tensor<1x32x8x8xf32>, tensor<1x32x7x7xbf16>, tensor<1x32x8x8xf32>, tensor<1x32x8x8xf32>, tensor<1x32x8x8xf32>) {
    %c = tensorop.conv2d %x, %w {name = "conv", algorithm = "gemm", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x8x8xf32>, tensor<32x16x3x3xf32>) -> tensor<1x32x8x8xf32>
    %cb = tensorop.bias_add %c, %b {name = "bias", axis = 1 : i64} : (tensor<1x32x8x8xf32>, tensor<32xf32>) -> tensor<1x32x8x8xf32>
    %s = tensorop.binary %cb, %r {name = "res", fn = "add"} : (tensor<1x32x8x8xf32>, tensor<1x32x8x8xf32>) -> tensor<1x32x8x8xf32>
    %y = tensorop.unary %s {name = "relu", fn = "relu"} : (tensor<1x32x8x8xf32>) -> tensor<1x32x8x8xf32>
    %p = tensorop.conv2d %x, %w1 {name = "pw", algorithm = "gemm", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x8x8xf32>, tensor<32x16x1x1xf32>) -> tensor<1x32x8x8xf32>
    %h = tensorop.conv2d %xh, %wh {name = "half", algorithm = "gemm", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x7x7xbf16>, tensor<32x16x3x3xbf16>) -> tensor<1x32x7x7xbf16>
    %d = tensorop.conv2d %x, %w {name = "direct", algorithm = "direct", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x8x8xf32>, tensor<32x16x3x3xf32>) -> tensor<1x32x8x8xf32>
    %k = tensorop.conv2d %x, %w {name = "sk", algorithm = "gemm", split_k = 2 : i64, stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x8x8xf32>, tensor<32x16x3x3xf32>) -> tensor<1x32x8x8xf32>
    %g = tensorop.conv2d %x, %w {name = "wino", algorithm = "winograd", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x8x8xf32>, tensor<32x16x3x3xf32>) -> tensor<1x32x8x8xf32>
    func.return %y, %p, %h, %d, %k, %g : tensor<1x32x8x8xf32>, tensor<1x32x8x8xf32>, tensor<1x32x7x7xbf16>, tensor<1x32x8x8xf32>, tensor<1x32x8x8xf32>, tensor<1x32x8x8xf32>
  }
}

// CHECK:      %conv_cols = tensorop.im2col %x {{.*}}kernel = array<i64: 3, 3>, stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, width = 8 : i64} : (tensor<1x16x8x8xf32>) -> tensor<144x64xf32>
// CHECK-NEXT: %conv_wmat = tensorop.reshape %w {{.*}} -> tensor<32x144xf32>
// CHECK-NEXT: %conv_gemm = tensorop.matmul %conv_wmat, %conv_cols {group = "conv_gemm", name = "conv_gemm"} : {{.*}} -> tensor<32x64xf32>
// CHECK-NEXT: %bias_gemm = tensorop.bias_add %conv_gemm, %b {group = "conv_gemm", name = "bias_gemm", axis = 0 : i64} : {{.*}} -> tensor<32x64xf32>
// CHECK-NEXT: %res_view = tensorop.reshape %r {{.*}} -> tensor<32x64xf32>
// CHECK-NEXT: %res_gemm = tensorop.binary %bias_gemm, %res_view {group = "conv_gemm", name = "res_gemm", fn = "add"}
// CHECK-NEXT: %relu_gemm = tensorop.unary %res_gemm {group = "conv_gemm", name = "relu_gemm", fn = "relu"}
// CHECK-NEXT: %y = tensorop.reshape %relu_gemm {name = "relu"} : (tensor<32x64xf32>) -> tensor<1x32x8x8xf32>
// CHECK-NEXT: %pw_cols = tensorop.reshape %x {{.*}} -> tensor<16x64xf32>
// CHECK-NEXT: %pw_wmat = tensorop.reshape %w1 {{.*}} -> tensor<32x16xf32>
// CHECK-NEXT: %pw_gemm = tensorop.matmul %pw_wmat, %pw_cols
// CHECK-NEXT: %p = tensorop.reshape %pw_gemm {name = "pw"}
// CHECK-NEXT: %half_cols = tensorop.im2col %xh {{.*}}width = 7 : i64} : (tensor<1x16x7x7xbf16>) -> tensor<144x56xbf16>
// CHECK-NEXT: %half_wmat = tensorop.reshape %wh
// CHECK-NEXT: %half_gemm = tensorop.matmul %half_wmat, %half_cols {name = "half_gemm", columns = 49 : i64} : (tensor<32x144xbf16>, tensor<144x56xbf16>) -> tensor<32x49xbf16>
// CHECK-NEXT: %h = tensorop.reshape %half_gemm {name = "half"} : (tensor<32x49xbf16>) -> tensor<1x32x7x7xbf16>
// CHECK-NEXT: %d = tensorop.conv2d %x, %w {algorithm = "direct", name = "direct"
// CHECK-NEXT: %sk_cols = tensorop.im2col %x {{.*}} -> tensor<144x64xf32>
// CHECK-NEXT: %sk_wmat = tensorop.reshape %w
// CHECK-NEXT: %sk_wsplit = tensorop.reshape %sk_wmat {{.*}} -> tensor<32x2x72xf32>
// CHECK-NEXT: %sk_wslices = tensorop.remap %sk_wsplit {{.*}} -> tensor<2x32x72xf32>
// CHECK-NEXT: %sk_cslices = tensorop.reshape %sk_cols {{.*}} -> tensor<2x72x64xf32>
// CHECK-NEXT: %sk_gemm = tensorop.matmul %sk_wslices, %sk_cslices {{.*}} -> tensor<2x32x64xf32>
// CHECK-NEXT: %sk_sum = tensorop.reduce %sk_gemm {{.*}}axes = array<i64: 0>{{.*}} -> tensor<32x64xf32>
// CHECK-NEXT: %k = tensorop.reshape %sk_sum {name = "sk"}
// CHECK-NEXT: %wino_tiles = tensorop.winograd_input %x {name = "wino_tiles", tile = 4 : i64, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x16x8x8xf32>) -> tensor<36x16x4xf32>
// CHECK-NEXT: %wino_filters = tensorop.winograd_weights %w {name = "wino_filters", tile = 4 : i64} : (tensor<32x16x3x3xf32>) -> tensor<36x32x16xf32>
// CHECK-NEXT: %wino_gemm = tensorop.matmul %wino_filters, %wino_tiles {{.*}} -> tensor<36x32x4xf32>
// CHECK-NEXT: %g = tensorop.winograd_output %wino_gemm {name = "wino", tile = 4 : i64, size = array<i64: 8, 8>} : (tensor<36x32x4xf32>) -> tensor<1x32x8x8xf32>

// ALL:     %d = tensorop.conv2d %x, %w {algorithm = "direct", name = "direct"
// ALL:     %wino_tiles = tensorop.winograd_input %x
