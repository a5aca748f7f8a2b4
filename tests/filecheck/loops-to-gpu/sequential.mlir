// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu | filecheck %s
// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu -t opencl | filecheck %s --check-prefix=OCL
// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu -t cuda | filecheck %s --check-prefix=CU

// The greedy pass of nms under the default schedule: its sequential loop `step` stays
// outside, in one block of 256 threads that share the 300 boxes (two rounds per step), and
// a barrier that also fences global memory ends every round, so a step sees what the
// threads wrote in the steps before it.
builtin.module {
  func.func @main(%B: tensor<300x4xf32>, %S: tensor<300xf32>) -> tensor<3xi32> {
    %NM = tensorop.nms %B, %S {name = "NM", max_output = 3 : i64, iou_threshold = 5.000000e-01 : f32, score_threshold = 2.500000e-01 : f32} : (tensor<300x4xf32>, tensor<300xf32>) -> tensor<3xi32>
    func.return %NM : tensor<3xi32>
  }
}

// CHECK:      "gpu.launch_func"({{.*}}kernel = @kernels::@main_NM_order
// CHECK-NEXT: %[[G:.*]] = arith.constant 1 : index
// CHECK-NEXT: %{{.*}} = arith.constant 1 : index
// CHECK-NEXT: %{{.*}} = arith.constant 1 : index
// CHECK-NEXT: %[[T:.*]] = arith.constant 256 : index
// CHECK:      "gpu.launch_func"(%[[G]], %{{.*}}, %{{.*}}, %[[T]], %{{.*}}, %{{.*}}, %B, %S, %NM.order, %NM.supp) <{kernel = @kernels::@main_NM_supp

// CHECK:      ^bb0(%B: memref<300x4xf32>, %S: memref<300xf32>, %NM.order: memref<300xi32>, %NM.supp: memref<300xi32>):
// CHECK-NEXT: %box.i = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NOT:  gpu.block_id
// CHECK:      scf.for %step =
// CHECK:      scf.for %box.o =
// CHECK:      %[[BASE:.*]] = arith.muli %box.o, %{{.*}} : index
// CHECK-NEXT: %[[BOX:.*]] = arith.addi %[[BASE]], %box.i : index
// CHECK-NEXT: %[[IN:.*]] = arith.cmpi slt, %[[BOX]], %{{.*}} : index
// CHECK-NEXT: scf.if %[[IN]] {
// CHECK:      memref.store %{{.*}}, %NM.supp[%[[BOX]]] : memref<300xi32>
// CHECK-NEXT: } else {
// CHECK-NEXT: }
// CHECK-NEXT: "gpu.barrier"() {sched.fence = "global"} : () -> ()
// CHECK-NEXT: } {sched.stage = "NM.supp", sched.axis = "box.o"}
// CHECK-NEXT: } {sched.stage = "NM.supp", sched.axis = "step", sched.reduce, sched.sequential}
// CHECK-NEXT: "gpu.return"() : () -> ()

// i32 buffers in the host plan and as int pointers; the barrier fences global memory.
// OCL:      //   output NM: 3 i32
// OCL:      //   temp NM.supp: 300 i32
// OCL:      __kernel __attribute__((reqd_work_group_size(256, 1, 1))) void v_main_NM_supp(__global float* restrict v_B, __global float* restrict v_S, __global int* restrict x_NM_2eorder, __global int* restrict x_NM_2esupp) {
// OCL:      for (int v_step = 0; v_step < 300; v_step += 1) {
// OCL:      barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
// OCL-NEXT: }
// OCL-NEXT: }
// OCL-NEXT: }

// CU:      __global__ void __launch_bounds__(256) v_main_NM_supp(float* __restrict__ v_B, float* __restrict__ v_S, int* __restrict__ x_NM_2eorder, int* __restrict__ x_NM_2esupp) {
// CU:      __syncthreads();
