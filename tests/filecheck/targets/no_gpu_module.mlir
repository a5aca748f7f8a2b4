// RUN: not sched-opt %s -p tensorop-to-loops -t opencl 2>&1 | filecheck %s
// RUN: not sched-opt %s -t cuda 2>&1 | filecheck %s

// The C printers need a lowered module; anything else is a clear error, not a traceback.
builtin.module {
  func.func @main(%A: tensor<4xf32>) -> tensor<4xf32> {
    %R = tensorop.unary %A {name = "R", fn = "relu"} : (tensor<4xf32>) -> tensor<4xf32>
    func.return %R : tensor<4xf32>
  }
}

// CHECK-NOT: Traceback
// CHECK:     no gpu.module to print
