// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s
// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu,tc-to-loops | filecheck %s --check-prefix=LOOPS
// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu -t cuda | filecheck %s --check-prefix=CUDA

// A 32x16x32 bf16 matmul: one block of 2 x 1 warps (thread.z, thread.y) of 16 x 16, the lanes
// on thread.x, k in two 16-deep steps of one 32-deep slice, A and B in two stages of padded
// shared buffers filled by cp.async.
builtin.module {
  func.func @main(%A: tensor<32x32xbf16>, %B: tensor<32x16xbf16>) -> tensor<32x16xbf16> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<32x32xbf16>, tensor<32x16xbf16>) -> tensor<32x16xbf16>
    func.return %C : tensor<32x16xbf16>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %io, %ii = sched.split %i by 32
    %j = sched.loop "C" "j"
    %jo, %ji = sched.split %j by 16
    %iio, %iii = sched.split %ii by 16
    %jio, %jii = sched.split %ji by 16
    %iiio, %iiii = sched.split %iii by 16
    %jiio, %jiii = sched.split %jii by 8
    %k = sched.loop "C" "k"
    %ko, %ki = sched.split %k by 32
    %kio, %kii = sched.split %ki by 16
    sched.reorder %io, %jo, %iio, %jio, %ko, %kio, %iiio, %jiio, %iiii, %jiii, %kii
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.bind %iio "thread.z"
    sched.bind %jio "thread.y"
    sched.cache_read "A" "shared" at %ko {stages = 2 : i64, pad = 8 : i64}
    sched.cache_read "B" "shared" at %ko {stages = 2 : i64, pad = 8 : i64}
    sched.unroll %kio
    sched.tensorize %iiii, %jiii, %kii "mma.m16n8k16"
  }
}

// The warp's results: 1 x 2 mma tiles of 4 f32 per lane.
// CHECK:          %C_frag = memref.alloca() : memref<1x2x4xf32, #memspace<addr local>>
// Before the k slices: the first slice's copies, 16 bytes each, into part 0 of rows padded to 40.
// CHECK:          %A_shared = memref.alloca() : memref<2x32x40xbf16, #memspace<addr shared>>
// CHECK:          tc.copy_async %A_shared[%{{.*}}, %{{.*}}, %{{.*}}], %A[%{{.*}}, %{{.*}}] {elements = 8 : i64}
// CHECK:          tc.copy_commit
// Each slice waits for its copies, meets the block, starts the next slice's copies, computes.
// CHECK:          scf.for %ko =
// CHECK-NEXT:       tc.copy_wait 0
// CHECK-NEXT:       "gpu.barrier"() : () -> ()
// CHECK:            tc.copy_commit
// Both k steps' fragments (B's two column tiles in one), then the mmas of the first step.
// CHECK:            %a_frag = tc.load_fragment "a" %C_lane, %A_shared[%ko, {{.*}}] {intrinsic = "m16n8k16", dims = array<i64: 1, 2>, tiles = 1 : i64}
// CHECK:            %b_frag = tc.load_fragment "b" %C_lane, %B_shared[%ko, {{.*}}tiles = 2 : i64}
// CHECK:            %a_frag_1 = tc.load_fragment "a"
// CHECK:            %b_frag_1 = tc.load_fragment "b"
// CHECK-NEXT:       tc.mma %a_frag, %b_frag, %C_lane, %C_frag[{{.*}}] {b_tile = 0 : i64}
// CHECK-NEXT:       tc.mma %a_frag, %b_frag, %C_lane, %C_frag[{{.*}}] {b_tile = 1 : i64}
// CHECK-NEXT:       tc.mma %a_frag_1, %b_frag_1
// CHECK-NEXT:       tc.mma %a_frag_1, %b_frag_1
// The lanes are a loop of 32 bound to thread.x.
// CHECK:          } {sched.stage = "C", sched.axis = "C_lane", sched.bind = "thread.x"}

// Without tensor cores: no tc op is left.
// LOOPS-NOT:      tc.
// LOOPS:          "gpu.module"() <{sym_name = "kernels"}>
// LOOPS-NOT:      tc.

// The CUDA text has the instructions.
// CUDA:           launch main_C grid=(1, 1, 1) block=(32, 1, 2)
// CUDA:           cp.async.cg.shared.global
// CUDA:           cp.async.wait_group 0;
// CUDA:           ldmatrix.sync.aligned.m8n8.x4.shared.b16
// CUDA:           ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
// CUDA:           mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
