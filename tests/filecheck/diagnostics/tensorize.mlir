// RUN: sched-opt %s --split-input-file --verify-diagnostics -p tensorop-to-loops,apply-schedule | filecheck %s

// What the warp-level instruction cannot take, reported by sched.tensorize's verifier or by
// apply-schedule, naming the op and the loop.
// an intrinsic sched.tensorize does not know
builtin.module {
  func.func @main(%A: tensor<32x32xbf16>, %B: tensor<32x16xbf16>) -> tensor<32x16xbf16> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<32x32xbf16>, tensor<32x16xbf16>) -> tensor<32x16xbf16>
    func.return %C : tensor<32x16xbf16>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    %io, %ii = sched.split %i by 16
    %jo, %ji = sched.split %j by 8
    %ko, %ki = sched.split %k by 16
    sched.reorder %io, %jo, %ko, %ii, %ji, %ki
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.cache_read "A" "shared" at %ko
    sched.cache_read "B" "shared" at %ko
    sched.tensorize %ii, %ji, %ki "mma.m16n8k32" // CHECK: {{.*}}tensorize.mlir:[[# @LINE]]:5: error: sched.tensorize: intrinsic 'mma.m16n8k32' is not one of mma.m16n8k16, mma.m16n8k8
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// a k tile of 8 for mma.m16n8k16
builtin.module {
  func.func @main(%A: tensor<32x32xbf16>, %B: tensor<32x16xbf16>) -> tensor<32x16xbf16> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<32x32xbf16>, tensor<32x16xbf16>) -> tensor<32x16xbf16>
    func.return %C : tensor<32x16xbf16>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    %io, %ii = sched.split %i by 16
    %jo, %ji = sched.split %j by 8
    %ko, %ki = sched.split %k by 8
    sched.reorder %io, %jo, %ko, %ii, %ji, %ki
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.cache_read "A" "shared" at %ko
    sched.cache_read "B" "shared" at %ko
    sched.tensorize %ii, %ji, %ki "mma.m16n8k16" // CHECK-NEXT: {{.*}}tensorize.mlir:[[# @LINE]]:5: error: sched.tensorize: stage 'C': loop 'ki' has 8 iterations; mma.m16n8k16 takes tiles of K = 16
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// f32 operands without tf32
builtin.module {
  func.func @main(%A: tensor<32x32xf32>, %B: tensor<32x16xf32>) -> tensor<32x16xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<32x32xf32>, tensor<32x16xf32>) -> tensor<32x16xf32>
    func.return %C : tensor<32x16xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    %io, %ii = sched.split %i by 16
    %jo, %ji = sched.split %j by 8
    %ko, %ki = sched.split %k by 8
    sched.reorder %io, %jo, %ko, %ii, %ji, %ki
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.cache_read "A" "shared" at %ko
    sched.cache_read "B" "shared" at %ko
    sched.tensorize %ii, %ji, %ki "mma.m16n8k8" // CHECK-NEXT: {{.*}}tensorize.mlir:[[# @LINE]]:5: error: sched.tensorize: stage 'C': mma.m16n8k8 does not take f32 operands; mma.m16n8k16 and wgmma take f16/bf16, mma.m16n8k8 f32 matmuls at precision tf32
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// f16 operands for the tf32 intrinsic
builtin.module {
  func.func @main(%A: tensor<32x32xf16>, %B: tensor<32x16xf16>) -> tensor<32x16xf16> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<32x32xf16>, tensor<32x16xf16>) -> tensor<32x16xf16>
    func.return %C : tensor<32x16xf16>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    %io, %ii = sched.split %i by 16
    %jo, %ji = sched.split %j by 8
    %ko, %ki = sched.split %k by 8
    sched.reorder %io, %jo, %ko, %ii, %ji, %ki
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.cache_read "A" "shared" at %ko
    sched.cache_read "B" "shared" at %ko
    sched.tensorize %ii, %ji, %ki "mma.m16n8k8" // CHECK-NEXT: {{.*}}tensorize.mlir:[[# @LINE]]:5: error: sched.tensorize: stage 'C': mma.m16n8k8 does not take f16 operands; mma.m16n8k16 and wgmma take f16/bf16, mma.m16n8k8 f32 matmuls at precision tf32
  }
}
// -----
// CHECK-NEXT: // {{-+}}
// the lanes' thread.x bound by the schedule
builtin.module {
  func.func @main(%A: tensor<32x32xbf16>, %B: tensor<32x16xbf16>) -> tensor<32x16xbf16> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<32x32xbf16>, tensor<32x16xbf16>) -> tensor<32x16xbf16>
    func.return %C : tensor<32x16xbf16>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    %io, %ii = sched.split %i by 16
    %jo, %ji = sched.split %j by 8
    %ko, %ki = sched.split %k by 16
    sched.reorder %io, %jo, %ko, %ii, %ji, %ki
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    %iw, %iii = sched.split %ii by 16
    sched.bind %iw "thread.x" // CHECK-NEXT: {{.*}}tensorize.mlir:[[# @LINE]]:5: error: sched.bind: stage 'C': thread.x is the warp's lanes in a tensorized stage; bind loop 'iw' to thread.y or thread.z
    sched.cache_read "A" "shared" at %ko
    sched.cache_read "B" "shared" at %ko
    sched.tensorize %iii, %ji, %ki "mma.m16n8k16"
  }
}
// CHECK-NOT: Traceback
