// RUN: sched-opt %s --split-input-file --verify-diagnostics -p tensorop-place | filecheck %s

// Errors of the graph-level ops, reported by their verifiers with the op and stage name.

// reshape: element counts differ
builtin.module {
  func.func @main(%x: tensor<2x3xf32>) {
    %r = tensorop.reshape %x {name = "r"} : (tensor<2x3xf32>) -> tensor<5xf32> // CHECK: {{.*}}graph_ops.mlir:[[# @LINE]]:5: error: tensorop.reshape 'r': reshape of (2, 3) (6 elements) to (5,) (5 elements)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// concat: shapes differ off the axis
builtin.module {
  func.func @main(%x: tensor<2x3xf32>, %y: tensor<3x3xf32>) {
    %c = tensorop.concat %x, %y {name = "c", axis = 1 : i64} : (tensor<2x3xf32>, tensor<3x3xf32>) -> tensor<2x6xf32> // CHECK-NEXT: {{.*}}graph_ops.mlir:[[# @LINE]]:5: error: tensorop.concat 'c': concat along axis 1: shapes [(2, 3), (3, 3)] differ off that axis
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// concat: wrong result shape
builtin.module {
  func.func @main(%x: tensor<2x3xf32>, %y: tensor<2x4xf32>) {
    %c = tensorop.concat %x, %y {name = "c", axis = 1 : i64} : (tensor<2x3xf32>, tensor<2x4xf32>) -> tensor<2x6xf32> // CHECK-NEXT: {{.*}}graph_ops.mlir:[[# @LINE]]:5: error: tensorop.concat 'c': result shape (2, 6) should be (2, 7)
    func.return
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// copy: unknown destination
builtin.module {
  func.func @main(%x: tensor<2x3xf32>) {
    %c = tensorop.copy %x {to = "disk"} : (tensor<2x3xf32>) -> tensor<2x3xf32> // CHECK-NEXT: {{.*}}graph_ops.mlir:[[# @LINE]]:5: error: tensorop.copy: 'to' must be "host" or "device", got "disk"
    func.return
  }
}
