// RUN: sched-opt %s --split-input-file --verify-diagnostics -p tensorop-to-loops | filecheck %s
// RUN: not sched-opt %s --split-input-file -p tensorop-to-loops 2>&1 | filecheck %s --check-prefix=FIRST

// Shape and attribute errors of each tensorop op, reported by its verifier with the op
// and stage name.
// Without --verify-diagnostics the first error ends the run (exit code 1, no traceback).
// FIRST: {{.*}}tensorop_shapes.mlir:{{[0-9]+}}:5: error: tensorop.matmul 'C': matmul inner dimensions differ: (4, 8) @ (6, 5)
// FIRST-NOT: error
// FIRST-NOT: Traceback

// matmul: inner dimensions differ
builtin.module {
  func.func @main(%A: tensor<4x8xf32>, %B: tensor<6x5xf32>) {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<4x8xf32>, tensor<6x5xf32>) -> tensor<4x5xf32> // CHECK: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.matmul 'C': matmul inner dimensions differ: (4, 8) @ (6, 5)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// matmul: a 1-D operand
builtin.module {
  func.func @main(%A: tensor<8xf32>, %B: tensor<8x5xf32>) {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<8xf32>, tensor<8x5xf32>) -> tensor<5xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.matmul 'C': matmul needs operands of rank 2 or more, got (8,) and (8, 5)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// matmul: wrong result shape
builtin.module {
  func.func @main(%A: tensor<4x8xf32>, %B: tensor<8x5xf32>) {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<4x8xf32>, tensor<8x5xf32>) -> tensor<4x6xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.matmul 'C': result shape (4, 6) should be (4, 5)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// matmul: not a float tensor
builtin.module {
  func.func @main(%A: tensor<4x8xi32>, %B: tensor<8x5xf32>) {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<4x8xi32>, tensor<8x5xf32>) -> tensor<4x5xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.matmul 'C': operand 0 must be a float tensor (f32, f16, bf16), got tensor<4x8xi32>
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// conv2d: groups do not divide the channels
builtin.module {
  func.func @main(%X: tensor<1x4x8x8xf32>, %W: tensor<6x2x3x3xf32>) {
    %Y = tensorop.conv2d %X, %W {name = "Y", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 3 : i64} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>) -> tensor<1x6x6x6xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.conv2d 'Y': conv2d groups=3 must divide input channels 4 and filters 6
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// conv2d: weights have the wrong channels per group
builtin.module {
  func.func @main(%X: tensor<1x4x8x8xf32>, %W: tensor<6x2x3x3xf32>) {
    %Y = tensorop.conv2d %X, %W {name = "Y", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>) -> tensor<1x6x6x6xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.conv2d 'Y': conv2d weights have 2 channels per group, input gives 4/1
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// conv2d: negative padding
builtin.module {
  func.func @main(%X: tensor<1x4x8x8xf32>, %W: tensor<6x2x3x3xf32>) {
    %Y = tensorop.conv2d %X, %W {name = "Y", stride = array<i64: 1, 1>, padding = array<i64: -1, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>) -> tensor<1x6x5x6xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.conv2d 'Y': conv2d stride/dilation must be >= 1 and padding >= 0, got stride=(1, 1) dilation=(1, 1) padding=(-1, 0, 0, 0)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// conv2d: three paddings
builtin.module {
  func.func @main(%X: tensor<1x4x8x8xf32>, %W: tensor<6x2x3x3xf32>) {
    %Y = tensorop.conv2d %X, %W {name = "Y", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>) -> tensor<1x6x6x6xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.conv2d 'Y': conv2d needs 2 strides, 2 dilations and 4 paddings (top, left, bottom, right)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// conv2d: wrong result shape (padding not accounted for)
builtin.module {
  func.func @main(%X: tensor<1x4x8x8xf32>, %W: tensor<6x2x3x3xf32>) {
    %Y = tensorop.conv2d %X, %W {name = "Y", stride = array<i64: 1, 1>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>) -> tensor<1x6x6x6xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.conv2d 'Y': result shape (1, 6, 6, 6) should be (1, 6, 8, 8)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// pool2d: unknown kind
builtin.module {
  func.func @main(%X: tensor<1x2x8x8xf32>) {
    %P = tensorop.pool2d %X {name = "P", kind = "min", kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>} : (tensor<1x2x8x8xf32>) -> tensor<1x2x4x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.pool2d 'P': kind 'min' is not one of max, avg
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// pool2d: padding as large as the kernel
builtin.module {
  func.func @main(%X: tensor<1x2x8x8xf32>) {
    %P = tensorop.pool2d %X {name = "P", kind = "max", kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 2, 0, 0, 0>} : (tensor<1x2x8x8xf32>) -> tensor<1x2x5x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.pool2d 'P': pool2d padding (2, 0, 0, 0) must be smaller than the kernel (2, 2)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// pool2d: not NCHW
builtin.module {
  func.func @main(%X: tensor<2x8x8xf32>) {
    %P = tensorop.pool2d %X {name = "P", kind = "avg", kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>} : (tensor<2x8x8xf32>) -> tensor<2x4x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.pool2d 'P': pool2d needs an NCHW input, got (2, 8, 8)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// unary: unknown function
builtin.module {
  func.func @main(%A: tensor<4xf32>) {
    %U = tensorop.unary %A {name = "U", fn = "cbrt"} : (tensor<4xf32>) -> tensor<4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.unary 'U': fn 'cbrt' is not one of relu, relu6, clip, sigmoid, tanh, exp, neg, abs, sqrt, reciprocal, floor, ceil, sign, erf, log, softplus, softsign, leaky_relu, elu, selu, hard_sigmoid, hard_swish, gelu, gelu_tanh, shrink
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// unary: clip without hi
builtin.module {
  func.func @main(%A: tensor<4xf32>) {
    %U = tensorop.unary %A {name = "U", fn = "clip", lo = 0.0 : f32} : (tensor<4xf32>) -> tensor<4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.unary 'U': clip needs both lo and hi
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// unary: clip lo above hi
builtin.module {
  func.func @main(%A: tensor<4xf32>) {
    %U = tensorop.unary %A {name = "U", fn = "clip", lo = 2.0 : f32, hi = 1.0 : f32} : (tensor<4xf32>) -> tensor<4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.unary 'U': clip lo 2.0 is above hi 1.0
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// unary: result shape differs
builtin.module {
  func.func @main(%A: tensor<4xf32>) {
    %U = tensorop.unary %A {name = "U", fn = "relu"} : (tensor<4xf32>) -> tensor<5xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.unary 'U': result shape (5,) should be (4,)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// binary: shapes do not broadcast
builtin.module {
  func.func @main(%A: tensor<4x3xf32>, %B: tensor<2x3xf32>) {
    %S = tensorop.binary %A, %B {name = "S", fn = "add"} : (tensor<4x3xf32>, tensor<2x3xf32>) -> tensor<4x3xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.binary 'S': shapes (4, 3) and (2, 3) do not broadcast
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// binary: unknown function
builtin.module {
  func.func @main(%A: tensor<4x3xf32>, %B: tensor<3xf32>) {
    %S = tensorop.binary %A, %B {name = "S", fn = "atan2"} : (tensor<4x3xf32>, tensor<3xf32>) -> tensor<4x3xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.binary 'S': fn 'atan2' is not one of add, sub, mul, div, max, min, pow, prelu
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// binary: result is not the broadcast shape
builtin.module {
  func.func @main(%A: tensor<4x1xf32>, %B: tensor<3xf32>) {
    %S = tensorop.binary %A, %B {name = "S", fn = "mul"} : (tensor<4x1xf32>, tensor<3xf32>) -> tensor<4x1xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.binary 'S': result shape (4, 1) should be (4, 3)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// bias_add: bias of the wrong size
builtin.module {
  func.func @main(%X: tensor<2x8x4xf32>, %b: tensor<4xf32>) {
    %Y = tensorop.bias_add %X, %b {name = "Y", axis = 1 : i64} : (tensor<2x8x4xf32>, tensor<4xf32>) -> tensor<2x8x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.bias_add 'Y': bias shape (4,) should be (8,) for axis 1 of (2, 8, 4)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// bias_add: axis out of range
builtin.module {
  func.func @main(%X: tensor<2x8x4xf32>, %b: tensor<4xf32>) {
    %Y = tensorop.bias_add %X, %b {name = "Y", axis = 3 : i64} : (tensor<2x8x4xf32>, tensor<4xf32>) -> tensor<2x8x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.bias_add 'Y': bias_add: axis 3 is out of range for rank 3
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// reduce: repeated axis
builtin.module {
  func.func @main(%X: tensor<2x8x4xf32>) {
    %R = tensorop.reduce %X {name = "R", fn = "sum", axes = array<i64: 1, -2>, keepdims = 0 : i64} : (tensor<2x8x4xf32>) -> tensor<2x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.reduce 'R': reduce: repeated axis in (1, -2)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// reduce: no axis
builtin.module {
  func.func @main(%X: tensor<2x8x4xf32>) {
    %R = tensorop.reduce %X {name = "R", fn = "sum", axes = array<i64>, keepdims = 0 : i64} : (tensor<2x8x4xf32>) -> tensor<2x8x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.reduce 'R': reduce needs at least one axis
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// reduce: unknown function
builtin.module {
  func.func @main(%X: tensor<2x8x4xf32>) {
    %R = tensorop.reduce %X {name = "R", fn = "prod", axes = array<i64: 1>, keepdims = 0 : i64} : (tensor<2x8x4xf32>) -> tensor<2x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.reduce 'R': fn 'prod' is not one of sum, max, mean
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// reduce: keepdims result shape
builtin.module {
  func.func @main(%X: tensor<2x8x4xf32>) {
    %R = tensorop.reduce %X {name = "R", fn = "max", axes = array<i64: 1>, keepdims = 1 : i64} : (tensor<2x8x4xf32>) -> tensor<2x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.reduce 'R': result shape (2, 4) should be (2, 1, 4)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// softmax: axis out of range
builtin.module {
  func.func @main(%X: tensor<2x8xf32>) {
    %S = tensorop.softmax %X {name = "S", axis = -3 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.softmax 'S': softmax: axis -3 is out of range for rank 2
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// scan: axis out of range
builtin.module {
  func.func @main(%X: tensor<2x8xf32>) {
    %S = tensorop.scan %X {name = "S", axis = 2 : i64, exclusive = 0 : i64, reverse = 0 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.scan 'S': scan: axis 2 is out of range for rank 2
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// argsort: the result must be i32
builtin.module {
  func.func @main(%X: tensor<2x8xf32>) {
    %S = tensorop.argsort %X {name = "S", axis = 1 : i64, descending = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.argsort 'S': result must be an i32 tensor, got tensor<2x8xf32>
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// topk: k above the axis size
builtin.module {
  func.func @main(%X: tensor<2x8xf32>) {
    %S = tensorop.topk %X {name = "S", k = 9 : i64, axis = 1 : i64, largest = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x9xi32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.topk 'S': topk: k=9 must be between 1 and the size 8 of axis 1
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// take_along_axis: the indices must be i32
builtin.module {
  func.func @main(%X: tensor<2x8xf32>) {
    %S = tensorop.take_along_axis %X, %X {name = "S", axis = 1 : i64} : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.take_along_axis 'S': operand 1 must be an i32 tensor, got tensor<2x8xf32>
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// nms: boxes not (N, 4)
builtin.module {
  func.func @main(%B: tensor<5x3xf32>, %C: tensor<5xf32>) {
    %S = tensorop.nms %B, %C {name = "S", max_output = 2 : i64, iou_threshold = 5.000000e-01 : f32, score_threshold = 0.000000e+00 : f32} : (tensor<5x3xf32>, tensor<5xf32>) -> tensor<2xi32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.nms 'S': nms: boxes must have shape (N, 4), got (5, 3)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// nms: max_output below 1
builtin.module {
  func.func @main(%B: tensor<5x4xf32>, %C: tensor<5xf32>) {
    %S = tensorop.nms %B, %C {name = "S", max_output = 0 : i64, iou_threshold = 5.000000e-01 : f32, score_threshold = 0.000000e+00 : f32} : (tensor<5x4xf32>, tensor<5xf32>) -> tensor<0xi32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.nms 'S': nms: max_output must be >= 1, got 0
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// binary: operands of two float types (no implicit conversion)
builtin.module {
  func.func @main(%A: tensor<4x8xbf16>, %B: tensor<4x8xf32>) {
    %C = tensorop.binary %A, %B {name = "C", fn = "add"} : (tensor<4x8xbf16>, tensor<4x8xf32>) -> tensor<4x8xbf16> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.binary 'C': operands are bf16 and f32; give them one element type with an explicit cast (sd.cast)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// matmul: tf32 compute mode on bf16 tensors
builtin.module {
  func.func @main(%A: tensor<4x8xbf16>, %B: tensor<8x5xbf16>) {
    %C = tensorop.matmul %A, %B {name = "C", compute = "tf32"} : (tensor<4x8xbf16>, tensor<8x5xbf16>) -> tensor<4x5xbf16> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.matmul 'C': compute mode tf32 is for f32 tensors, the operands are bf16
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// matmul: a result type that is neither the operands' nor f32
builtin.module {
  func.func @main(%A: tensor<4x8xbf16>, %B: tensor<8x5xbf16>) {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<4x8xbf16>, tensor<8x5xbf16>) -> tensor<4x5xf16> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.matmul 'C': result type f16 must be the operands' type bf16 or f32
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// conv2d: an unknown compute mode
builtin.module {
  func.func @main(%X: tensor<1x2x4x4xf32>, %W: tensor<3x2x1x1xf32>) {
    %Y = tensorop.conv2d %X, %W {name = "Y", compute = "fp8", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.conv2d 'Y': compute mode 'fp8' is not one of tf32
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// cast: to an integer type
builtin.module {
  func.func @main(%A: tensor<4xbf16>) {
    %C = tensorop.cast %A {name = "C"} : (tensor<4xbf16>) -> tensor<4xi32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.cast 'C': casts to i32; the result must be one of f32, f16, bf16
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// conv2d: a layout that is not NCHW or NHWC
builtin.module {
  func.func @main(%X: tensor<1x8x8x4xf32>, %W: tensor<6x4x3x3xf32>) {
    %Y = tensorop.conv2d %X, %W {name = "Y", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64, layout = "NWHC"} : (tensor<1x8x8x4xf32>, tensor<6x4x3x3xf32>) -> tensor<1x6x6x6xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.conv2d 'Y': conv2d: layout 'NWHC' is not one of NCHW, NHWC
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// conv2d: NHWC, the result given in NCHW
builtin.module {
  func.func @main(%X: tensor<1x8x8x4xf32>, %W: tensor<5x4x3x3xf32>) {
    %Y = tensorop.conv2d %X, %W {name = "Y", stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64, layout = "NHWC"} : (tensor<1x8x8x4xf32>, tensor<5x4x3x3xf32>) -> tensor<1x5x6x6xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.conv2d 'Y': result shape (1, 5, 6, 6) should be (1, 6, 6, 5)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// pool2d: a layout that is not NCHW or NHWC
builtin.module {
  func.func @main(%X: tensor<1x8x8x4xf32>) {
    %Y = tensorop.pool2d %X {name = "P", kind = "max", kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>, layout = "CHWN"} : (tensor<1x8x8x4xf32>) -> tensor<1x4x4x4xf32> // CHECK-NEXT: {{.*}}tensorop_shapes.mlir:[[# @LINE]]:5: error: tensorop.pool2d 'P': pool2d: layout 'CHWN' is not one of NCHW, NHWC
    func.return
  }
}
// CHECK-NOT: Traceback
