// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu | filecheck %s

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

// The host function launches one kernel: grid (48 / 8, 64 / 8, 1) = (6, 8, 1) from the block
// loops jo (block.x) and io (block.y), blocks of (8, 8, 1) threads from ji and ii.
// CHECK:      builtin.module attributes {gpu.container_module} {
// CHECK-NEXT: func.func @main(%A: memref<64x32xf32>, %B: memref<32x48xf32>, %C: memref<64x48xf32>)
// CHECK-NEXT:   %[[GX:.*]] = arith.constant 6 : index
// CHECK-NEXT:   %[[GY:.*]] = arith.constant 8 : index
// CHECK-NEXT:   %[[GZ:.*]] = arith.constant 1 : index
// CHECK-NEXT:   %[[BX:.*]] = arith.constant 8 : index
// CHECK-NEXT:   %[[BY:.*]] = arith.constant 8 : index
// CHECK-NEXT:   %[[BZ:.*]] = arith.constant 1 : index
// CHECK-NEXT:   "gpu.launch_func"(%[[GX]], %[[GY]], %[[GZ]], %[[BX]], %[[BY]], %[[BZ]], %A, %B, %C) <{kernel = @kernels::@main_C
// CHECK-NOT:    scf.for
// CHECK:        func.return

// The kernel: shared buffers first, then the ids that replace the bound loops.
// CHECK:      "gpu.module"() <{sym_name = "kernels"}> ({
// CHECK-NEXT:   "gpu.func"() <{function_type = (memref<64x32xf32>, memref<32x48xf32>, memref<64x48xf32>) -> (), kernel}> ({
// CHECK-NEXT:   ^bb0(%A: memref<64x32xf32>, %B: memref<32x48xf32>, %C: memref<64x48xf32>):
// CHECK-NEXT:     %A_shared = memref.alloca() : memref<8x8xf32, #memspace<addr shared>>
// CHECK-NEXT:     %ji = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NEXT:     %ii = "gpu.thread_id"() <{dimension = #gpu<dim y>}> : () -> index
// CHECK-NEXT:     %io = "gpu.block_id"() <{dimension = #gpu<dim y>}> : () -> index
// CHECK-NEXT:     %jo = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NOT:      sched.bind
// CHECK:          %C_local = memref.alloca() : memref<1xf32, #memspace<addr local>>
// CHECK:          scf.for %ko =
// CHECK-NOT:        memref.alloca
// CHECK:            "gpu.barrier"() : () -> ()
// CHECK:            vector.store %{{.*}}, %A_shared
// CHECK-NEXT:       }
// CHECK-NEXT:       "gpu.barrier"() : () -> ()
// CHECK-NEXT:       scf.for %ki =
// CHECK:              %B_local = memref.alloca() : memref<1x1xf32, #memspace<addr local>>
// CHECK:          } {sched.stage = "C", sched.axis = "ko", sched.reduce}
// CHECK:          "gpu.return"() : () -> ()
// CHECK-NEXT:   }) {sym_name = "main_C", sched.stage = "C"} : () -> ()
// CHECK-NEXT: }) : () -> ()
