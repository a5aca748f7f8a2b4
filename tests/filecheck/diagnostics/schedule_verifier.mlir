// RUN: sched-opt %s --split-input-file --verify-diagnostics -p tensorop-to-loops,apply-schedule | filecheck %s
// RUN: not sched-opt %s --split-input-file -p tensorop-to-loops,apply-schedule 2>&1 | filecheck %s --check-prefix=FIRST

// Errors of the sched dialect's verifiers, each reported at the op that fails, with its name.
// Without --verify-diagnostics the first error ends the run (exit code 1, no traceback).
// FIRST: {{.*}}schedule_verifier.mlir:{{[0-9]+}}:{{[0-9]+}}: error: sched.split: factor must be >= 1, got 0
// FIRST-NOT: error
// FIRST-NOT: Traceback

// split factor < 1
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %io, %ii = sched.split %i by 0 // CHECK: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.split: factor must be >= 1, got 0
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// tile factor < 1
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %a, %b, %c, %d = sched.tile %i, %j by 4, 0 // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.tile: needs two factors >= 1, got [4, 0]
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// knob without candidates
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %t = sched.knob "t" [] // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.knob 't': needs at least one candidate
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// knob candidate < 1
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %t = sched.knob "t" [8, 0] // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.knob 't': candidates must be >= 1, got [8, 0]
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a handle used after it was split
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %io, %ii = sched.split %i by 16
    sched.bind %i "block.x" // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.bind: loop 'i' was already replaced by sched.split
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a handle used after it was fused
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %ij = sched.fuse %i, %j
    sched.unroll %j // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.unroll: loop 'j' was already replaced by sched.fuse
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// binding one loop twice
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    sched.bind %i "block.x"
    sched.bind %i "thread.x" // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.bind: loop 'i' is already bound to block.x
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// reordering loops of different stages
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %d0 = sched.loop "R" "d0"
    sched.reorder %d0, %i // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.reorder: loops of different nests (C, R) cannot be combined
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// fusing loops of different stages
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %d0 = sched.loop "R" "d0"
    %f = sched.fuse %i, %d0 // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.fuse: loops of different nests (C, R) cannot be combined
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a loop named twice in a reorder
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    sched.reorder %i, %j, %i // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.reorder: a loop is named twice
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// unknown bind tag
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    sched.bind %i "warp.x" // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.bind: 'warp.x' is not one of block.x, block.y, block.z, thread.x, thread.y, thread.z
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// bad cache_read scope
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %k = sched.loop "C" "k"
    sched.cache_read "A" "global" at %k // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.cache_read: scope 'global' is not one of shared, local
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a cache layout that is not a permutation
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %k = sched.loop "C" "k"
    sched.cache_read "A" "shared" at %k {layout = array<i64: 1, 1>} // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: cache_read of 'A': layout [1, 1] is not a permutation of the tensor's dimensions
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a double-buffered local cache
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %k = sched.loop "C" "k"
    sched.cache_read "A" "local" at %k {double_buffer} // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: cache_read of 'A': double_buffer needs scope 'shared'
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// bad cache_write scope
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    sched.cache_write "texture" at %i // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.cache_write: scope 'texture' is not one of shared, local
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// compute_at of a stage inside itself
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    sched.compute_at "C" at %i // CHECK-NEXT: {{.*}}schedule_verifier.mlir:[[# @LINE]]:5: error: sched.compute_at: stage 'C' cannot be computed inside itself
  }
}
// CHECK-NOT: Traceback
