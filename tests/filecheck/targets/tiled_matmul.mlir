// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu -t opencl | filecheck %s --check-prefixes=CHECK,OCL
// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu -t cuda | filecheck %s --check-prefixes=CHECK,CUDA

builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %k = sched.loop "C" "k"
    %io, %jo, %ii, %ji = sched.tile %i, %j by 8, 8
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.bind %ii "thread.y"
    sched.bind %ji "thread.x"
    %ko, %ki = sched.split %k by 8
    sched.cache_read "A" "shared" at %ko
    sched.cache_read "B" "local" at %ki
    sched.cache_write "local" at %ji
  }
}

// The host plan, as comments, in both languages.
// CHECK:      // host function main
// CHECK-NEXT: //   input A: 64x32 f32
// CHECK-NEXT: //   input B: 32x48 f32
// CHECK-NEXT: //   output C: 64x48 f32
// CHECK-NEXT: //   launch main_C grid=(6, 8, 1) block=(8, 8, 1) args=(A, B, C)

// Kernel qualifiers and buffer parameters.
// OCL-NEXT:   __kernel __attribute__((reqd_work_group_size(8, 8, 1))) void v_main_C(__global float* restrict v_A, __global float* restrict v_B, __global float* restrict v_C) {
// CUDA-NEXT:  extern "C" {
// CUDA-NEXT:  __global__ void __launch_bounds__(64) v_main_C(float* __restrict__ v_A, float* __restrict__ v_B, float* __restrict__ v_C) {

// The shared tile, then block and thread ids.
// OCL-NEXT:   __local float v_A_shared[64] __attribute__((aligned(16)));
// OCL-NEXT:   const int v_ji = (int)get_local_id(0);
// OCL-NEXT:   const int v_ii = (int)get_local_id(1);
// OCL-NEXT:   const int v_io = (int)get_group_id(1);
// OCL-NEXT:   const int v_jo = (int)get_group_id(0);
// CUDA-NEXT:  __shared__ __align__(16) float v_A_shared[64];
// CUDA-NEXT:  const int v_ji = (int)threadIdx.x;
// CUDA-NEXT:  const int v_ii = (int)threadIdx.y;
// CUDA-NEXT:  const int v_io = (int)blockIdx.y;
// CUDA-NEXT:  const int v_jo = (int)blockIdx.x;

// The local accumulator is a private array, zeroed once.
// CHECK-NEXT: float v_C_local[1];
// CHECK-NEXT: v_C_local[0] = 0.0f;

// The shared fill between two barriers: 16 aligned float4 copies over 64 threads.
// CHECK-NEXT: for (int v_ko = 0; v_ko < 4; v_ko += 1) {
// OCL:          barrier(CLK_LOCAL_MEM_FENCE);
// CUDA:         __syncthreads();
// CHECK-NEXT:   const int [[T0:v_t_[0-9]+]] = v_ii * 8;
// CHECK-NEXT:   const int [[TID:v_t_[0-9]+]] = [[T0]] + v_ji;
// CHECK-NEXT:   for (int [[E:v_t_[0-9]+]] = [[TID]]; [[E]] < 16; [[E]] += 64) {
// OCL:            const float4 [[V:v_t_[0-9]+]] = *(__global const float4*)(&v_A[({{.*}}) * 32 + {{.*}}]);
// OCL-NEXT:       *(__local float4*)(&v_A_shared[({{.*}}) * 8 + {{.*}}]) = [[V]];
// CUDA:           const float4 [[V:v_t_[0-9]+]] = *(const float4*)(&v_A[({{.*}}) * 32 + {{.*}}]);
// CUDA-NEXT:      *(float4*)(&v_A_shared[({{.*}}) * 8 + {{.*}}]) = [[V]];
// CHECK-NEXT:   }
// OCL-NEXT:     barrier(CLK_LOCAL_MEM_FENCE);
// CUDA-NEXT:    __syncthreads();
// CHECK-NEXT:   for (int v_ki = 0; v_ki < 8; v_ki += 1) {

// The local copy of B, in unrolled loops.
// CHECK:          float v_B_local[1];
// CHECK-NEXT:     #pragma unroll
// CHECK-NEXT:     for (int [[R:v_t_[0-9]+]] = 0; [[R]] < 1; [[R]] += 1) {
// CHECK:          v_C_local[0] = {{.*}};
// CHECK-NEXT:   }
// CHECK-NEXT: }

// The write-back to global memory.
// CHECK:      v_C[({{.*}}) * 48 + {{.*}}] = {{.*}};
// CHECK-NEXT: {{^}}}
// CUDA:       {{^}}}
