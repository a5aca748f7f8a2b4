// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu -t opencl 2>&1 | filecheck %s --check-prefixes=CHECK,OCL
// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu -t cuda 2>&1 | filecheck %s --check-prefixes=CHECK,CUDA

// Where a vectorized loop cannot run as one vector, it is unrolled and a remark says why.
// The max pool reads its input window at x + rx: contiguous along xi but not known to start
// at a multiple of 4 floats. OpenCL reads it with vload4; CUDA has no unaligned float4 load.
builtin.module {
  func.func @main(%X: tensor<1x2x9x9xf32>) -> tensor<1x2x8x8xf32> {
    %P = tensorop.pool2d %X {name = "P", kind = "max", kernel = array<i64: 2, 2>, stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>} : (tensor<1x2x9x9xf32>) -> tensor<1x2x8x8xf32>
    func.return %P : tensor<1x2x8x8xf32>
  }
  sched.schedule {
    %n = sched.loop "P" "n"
    %c = sched.loop "P" "c"
    %y = sched.loop "P" "y"
    %x = sched.loop "P" "x"
    %ry = sched.loop "P" "ry"
    %rx = sched.loop "P" "rx"
    %xo, %xi = sched.split %x by 4
    sched.reorder %n, %c, %y, %xo, %ry, %rx, %xi
    sched.bind %c "block.x"
    sched.bind %y "thread.y"
    sched.bind %xo "thread.x"
    sched.vectorize %xi
  }
}

// OCL-NOT:    remark
// CUDA:       sched-opt: remark: loop 'xi' of stage 'P' is not vectorized: its accesses to 'X' are not known to be aligned to 16 bytes (the first iteration's element is a multiple of 1, not of 4); it is unrolled
// CHECK:      {  // v_xi: 4 iterations as one float4
// OCL:        {  // v_xi_1: 4 iterations as one float4
// OCL:          const float4 {{v_t_[0-9]+}} = vload4(0, &v_X[
// OCL-NEXT:     const float4 {{v_t_[0-9]+}} = *(__global const float4*)(&v_P[
// OCL-NEXT:     const float4 {{v_t_[0-9]+}} = {{v_t_[0-9]+}} != {{.*}} ? {{.*}} : fmax(
// CUDA:       // not vectorized: its accesses to 'X' are not known to be aligned to 16 bytes
// CUDA-NEXT:  #pragma unroll
// CUDA-NEXT:  for (int v_xi_1 = 0; v_xi_1 < 4; v_xi_1 += 1) {
