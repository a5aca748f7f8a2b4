// RUN: not sched-opt %s --split-input-file 2>&1 | filecheck %s --check-prefix=FIRST
// RUN: sched-opt %s --split-input-file --parsing-diagnostics --verify-diagnostics | filecheck %s

// Malformed text: each error points at the offending token, with file:line:col.
// Without the diagnostics flags the first error ends the run (exit code 1, no traceback).
// FIRST:     {{.*}}malformed.mlir:{{[0-9]+}}:5: error: property 'fn' expected in operation 'tensorop.unary'
// FIRST-NOT: Traceback

// A required property is missing.
builtin.module {
  func.func @main(%A: tensor<4xf32>) -> tensor<4xf32> {
    %R = tensorop.unary %A {name = "R"} : (tensor<4xf32>) -> tensor<4xf32> // CHECK: {{.*}}malformed.mlir:[[# @LINE]]:5: error: property 'fn' expected in operation 'tensorop.unary'
    func.return %R : tensor<4xf32>
  }
}

// -----
// CHECK-NEXT: // {{-+}}
// An unknown tensorop op.
builtin.module {
  func.func @main(%A: tensor<4xf32>) -> tensor<4xf32> {
    %R = tensorop.frob %A {name = "R"} : (tensor<4xf32>) -> tensor<4xf32> // CHECK-NEXT: {{.*}}malformed.mlir:[[# @LINE]]:24
    func.return %R : tensor<4xf32>
  }
}
// CHECK: Operation tensorop.frob is not registered

// -----
// CHECK: // {{-+}}
// sched.loop without its axis.
builtin.module {
  sched.schedule {
    %i = sched.loop "C"
  } // CHECK-NEXT: {{.*}}malformed.mlir:[[# @LINE]]:3
}
// CHECK: attribute expected

// -----
// CHECK: // {{-+}}
// sched.split binds two handles.
builtin.module {
  sched.schedule {
    %i = sched.loop "C" "i"
    %o = sched.split %i by 2 // CHECK-NEXT: {{.*}}malformed.mlir:[[# @LINE]]:5
  }
}
// CHECK: Operation has 2 results, but was given 1 to bind.

// -----
// CHECK: // {{-+}}
// sched.split with neither a factor nor a knob.
builtin.module {
  sched.schedule {
    %i = sched.loop "C" "i"
    %o, %p = sched.split %i by
  } // CHECK-NEXT: {{.*}}malformed.mlir:[[# @LINE]]:3
}
// CHECK: operand expected

// -----
// CHECK: // {{-+}}
// Text ends inside a function.
builtin.module {
  func.func @main(%A: tensor<4xf32>) -> tensor<4xf32> {
    %R = tensorop.unary %A {name = "R", fn = "relu"} : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT: {{.*}}malformed.mlir:{{[0-9]+}}:{{[0-9]+}}
// CHECK-NOT:  Traceback
