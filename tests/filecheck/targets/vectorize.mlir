// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu -t opencl 2>&1 | filecheck %s --check-prefixes=CHECK,OCL
// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu -t cuda 2>&1 | filecheck %s --check-prefixes=CHECK,CUDA

// Each thread computes 4 adjacent outputs of C = A @ B; the 4 iterations of jv run as one
// float4: B's and C's elements move with jv (vector loads and stores; their addresses are
// multiples of 4 floats), A's does not (one load, broadcast). io, ii, jo, jt are bound without
// a reorder, TVM-style: the block loops move outermost.
builtin.module {
  func.func @main(%A: tensor<32x24xf32>, %B: tensor<24x64xf32>) -> tensor<32x64xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<32x24xf32>, tensor<24x64xf32>) -> tensor<32x64xf32>
    func.return %C : tensor<32x64xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    %io, %ii = sched.split %i by 8
    %jo, %jr = sched.split %j by 16
    %jt, %jv = sched.split %jr by 4
    sched.reorder %k, %jv
    sched.bind %io "block.y"
    sched.bind %ii "thread.y"
    sched.bind %jo "block.x"
    sched.bind %jt "thread.x"
    sched.vectorize %jv
  }
}

// CHECK-NOT:  remark
// CHECK:      launch main_C grid=(4, 4, 1) block=(4, 8, 1)
// CHECK:      {  // v_jv: 4 iterations as one float4
// OCL:          *(__global float4*)(&v_C[{{.*}}]) = (float4)(0.0f);
// CUDA:         *(float4*)(&v_C[{{.*}}]) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
// CHECK:      for (int v_k = 0; v_k < 24; v_k += 1) {
// CHECK:        {  // v_jv_1: 4 iterations as one float4
// CHECK:          const float [[A:v_t_[0-9]+]] = v_A[
// OCL-NEXT:       const float4 [[B:v_t_[0-9]+]] = *(__global const float4*)(&v_B[
// CUDA-NEXT:      const float4 [[B:v_t_[0-9]+]] = *(const float4*)(&v_B[
// OCL-NEXT:       const float4 [[AB:v_t_[0-9]+]] = (float4)([[A]]) * [[B]];
// CUDA-NEXT:      const float4 [[AB:v_t_[0-9]+]] = make_float4([[A]] * [[B]].x, [[A]] * [[B]].y, [[A]] * [[B]].z, [[A]] * [[B]].w);
// OCL-NEXT:       const float4 [[OLD:v_t_[0-9]+]] = *(__global const float4*)(&v_C[
// CUDA-NEXT:      const float4 [[OLD:v_t_[0-9]+]] = *(const float4*)(&v_C[
// OCL-NEXT:       const float4 [[NEW:v_t_[0-9]+]] = [[OLD]] + [[AB]];
// CUDA-NEXT:      const float4 [[NEW:v_t_[0-9]+]] = make_float4([[OLD]].x + [[AB]].x, [[OLD]].y + [[AB]].y, [[OLD]].z + [[AB]].z, [[OLD]].w + [[AB]].w);
// OCL-NEXT:       *(__global float4*)(&v_C[{{.*}}]) = [[NEW]];
// CUDA-NEXT:      *(float4*)(&v_C[{{.*}}]) = [[NEW]];
// CHECK-NEXT:   }
// CHECK-NEXT: }
