// RUN: sched-opt %s --split-input-file --verify-diagnostics -p tensorop-to-loops,apply-schedule | filecheck %s
// RUN: not sched-opt %s --split-input-file -p tensorop-to-loops,apply-schedule 2>&1 | filecheck %s --check-prefix=FIRST

// Errors that need the payload, found by apply-schedule; each names the sched op and where it is.
// Without --verify-diagnostics the first error ends the run (exit code 1, no traceback).
// FIRST: {{.*}}apply_schedule.mlir:{{[0-9]+}}:{{[0-9]+}}: error: sched.loop: no stage 'D'; stages are C, R
// FIRST-NOT: error
// FIRST-NOT: Traceback

// unknown stage
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "D" "i" // CHECK: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.loop: no stage 'D'; stages are C, R
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// unknown axis
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %q = sched.loop "C" "q" // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.loop: stage 'C' has no loop 'q'; its loops are i, j, k
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// unknown tensor
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %k = sched.loop "C" "k"
    sched.cache_read "Z" "shared" at %k // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.cache_read: no tensor 'Z'; tensors are A, B, R, C
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a tensor the stage does not read
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %d0 = sched.loop "R" "d0"
    sched.cache_read "A" "shared" at %d0 // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.cache_read: stage 'R' does not read 'A'
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// two loops bound to the same tag
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    sched.bind %i "thread.x"
    sched.bind %j "thread.x" // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.bind: thread.x is already bound to loop 'i' of stage 'C'
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// binding a reduction loop
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %k = sched.loop "C" "k"
    sched.bind %k "thread.x" // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.bind: cannot bind reduction loop 'k' to thread.x: its iterations update the same outputs
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// fuse of non-adjacent loops
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    sched.reorder %j, %i
    %f = sched.fuse %i, %j // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.fuse: loops 'i' and 'j' are not adjacent (outer, then inner)
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// fuse of a spatial and a reduction loop
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    %jk = sched.fuse %j, %k // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.fuse: cannot fuse spatial and reduction loops 'j', 'k'
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// vectorizing a loop that is not innermost
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %j = sched.loop "C" "j"
    sched.vectorize %j // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.vectorize: stage 'C': cannot vectorize loop 'j': it is not innermost (loop 'k' is inside it)
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a layout of the wrong rank
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %k = sched.loop "C" "k"
    sched.cache_read "A" "shared" at %k {layout = array<i64: 2, 0, 1>} // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.cache_read: layout [2, 0, 1] of 'A' does not have its 2 dimensions
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// double buffering at a loop with thread loops inside it
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    sched.reorder %k, %i, %j
    sched.bind %j "thread.x"
    sched.cache_read "A" "shared" at %k {double_buffer} // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.cache_read: stage 'C': double_buffer of 'A': loop 'k' must be a sequential loop inside all of the block's thread loops
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// cache_write inside a reduction loop
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %k = sched.loop "C" "k"
    sched.cache_write "local" at %k // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.cache_write: stage 'C': cache_write at 'k' is inside reduction loop 'k'; put it at a loop outside every reduction loop
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a knob defined twice
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %t = sched.knob "t" [4]
    %u = sched.knob "t" [8] // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.knob: knob 't' is defined twice
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// compute_at of an unknown stage
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    sched.compute_at "Q" at %i // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.compute_at: no stage 'Q'
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// compute_at of a stage the consumer does not read
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<64x48xf32>) -> tensor<64x48xf32>
    func.return %R : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    sched.compute_at "R" at %i // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.compute_at: stage 'C' does not read stage 'R'
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// split of the sequential loop of nms's greedy pass
builtin.module {
  func.func @main(%B: tensor<10x4xf32>, %S: tensor<10xf32>) -> tensor<4xi32> {
    %NM = tensorop.nms %B, %S {name = "NM", max_output = 4 : i64, iou_threshold = 5.000000e-01 : f32, score_threshold = 0xFF800000 : f32} : (tensor<10x4xf32>, tensor<10xf32>) -> tensor<4xi32>
    func.return %NM : tensor<4xi32>
  }
  sched.schedule {
    %step = sched.loop "NM.supp" "step"
    %so, %si = sched.split %step by 2 // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.split: loop 'step' of stage 'NM.supp' is sequential (each iteration reads what the earlier ones wrote): it stays the outermost loop, unsplit and unbound
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a stage with a sequential loop runs in one block
builtin.module {
  func.func @main(%B: tensor<10x4xf32>, %S: tensor<10xf32>) -> tensor<4xi32> {
    %NM = tensorop.nms %B, %S {name = "NM", max_output = 4 : i64, iou_threshold = 5.000000e-01 : f32, score_threshold = 0xFF800000 : f32} : (tensor<10x4xf32>, tensor<10xf32>) -> tensor<4xi32>
    func.return %NM : tensor<4xi32>
  }
  sched.schedule {
    %box = sched.loop "NM.supp" "box"
    sched.bind %box "block.x" // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.bind: stage 'NM.supp': its sequential loop 'step' runs in one block; bind its other loops to threads, not blocks
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// cache_write of a scatter
builtin.module {
  func.func @main(%X: tensor<8xf32>) -> tensor<8xi32> {
    %AS = tensorop.argsort %X {name = "AS", axis = 0 : i64, descending = 1 : i64} : (tensor<8xf32>) -> tensor<8xi32>
    func.return %AS : tensor<8xi32>
  }
  sched.schedule {
    %d0 = sched.loop "AS" "d0"
    sched.cache_write "local" at %d0 // CHECK-NEXT: {{.*}}apply_schedule.mlir:[[# @LINE]]:5: error: sched.cache_write: stage 'AS' writes its output at computed indices (a scatter); cache_write cannot keep it in registers
  }
}
// CHECK-NOT: Traceback
