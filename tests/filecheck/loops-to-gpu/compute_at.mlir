// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu | filecheck %s

builtin.module {
  func.func @main(%A: tensor<16x32xf32>, %b: tensor<32xf32>) -> tensor<16x32xf32> {
    %T = tensorop.bias_add %A, %b {name = "T", axis = 1 : i64} : (tensor<16x32xf32>, tensor<32xf32>) -> tensor<16x32xf32>
    %R = tensorop.unary %T {name = "R", fn = "relu"} : (tensor<16x32xf32>) -> tensor<16x32xf32>
    func.return %R : tensor<16x32xf32>
  }
  sched.schedule {
    %d0 = sched.loop "R" "d0"
    %d1 = sched.loop "R" "d1"
    sched.bind %d0 "block.x"
    sched.bind %d1 "thread.x"
    sched.compute_at "T" at %d0
  }
}

// One kernel for R; T, computed only inside it, gets no global buffer (apply-schedule drops it).
// CHECK:      func.func @main(%A: memref<16x32xf32>, %b: memref<32xf32>, %R: memref<16x32xf32>)
// CHECK-NEXT:   %[[GX:.*]] = arith.constant 16 : index
// CHECK-NEXT:   %[[GY:.*]] = arith.constant 1 : index
// CHECK-NEXT:   %[[GZ:.*]] = arith.constant 1 : index
// CHECK-NEXT:   %[[BX:.*]] = arith.constant 32 : index
// CHECK-NEXT:   %[[BY:.*]] = arith.constant 1 : index
// CHECK-NEXT:   %[[BZ:.*]] = arith.constant 1 : index
// CHECK-NEXT:   "gpu.launch_func"(%[[GX]], %[[GY]], %[[GZ]], %[[BX]], %[[BY]], %[[BZ]], %A, %b, %R) <{kernel = @kernels::@main_R
// CHECK-NOT:  gpu.launch_func

// Two thread phases: T's row into shared memory, a barrier, then R reading it.
// CHECK:      ^bb0(%A: memref<16x32xf32>, %b: memref<32xf32>, %R: memref<16x32xf32>):
// CHECK-NEXT:   %T_shared = memref.alloca() : memref<1x32xf32, #memspace<addr shared>>
// CHECK-NEXT:   %d1 = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NEXT:   %d0 = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK:        scf.for %{{.*}} = %d1 to %{{.*}} step
// CHECK:          memref.store %{{.*}}, %T_shared
// CHECK-NEXT:   }
// CHECK-NEXT:   "gpu.barrier"() : () -> ()
// CHECK-NEXT:   %[[ROW:.*]] = arith.subi %d0, %d0 : index
// CHECK-NEXT:   %[[V:.*]] = memref.load %T_shared[%[[ROW]], %d1] : memref<1x32xf32, #memspace<addr shared>>
// CHECK:        memref.store %{{.*}}, %R[%d0, %d1] : memref<16x32xf32>
// CHECK-NEXT:   "gpu.return"() : () -> ()
// CHECK-NEXT: }) {sym_name = "main_R", sched.stage = "R"} : () -> ()
