// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s

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

// cache_write local at ji: one register per output the thread computes (here one),
// zeroed, accumulated into, and stored to C after the reduction loops.
// CHECK:      scf.for %io =
// CHECK:        scf.for %jo =
// CHECK-NEXT:     scf.for %ii =
// CHECK-NEXT:       scf.for %ji =
// CHECK-NEXT:         %C_local = memref.alloca() : memref<1xf32, #memspace<addr local>>
// CHECK-NEXT:         %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:         memref.store %[[Z]], %C_local[%{{.*}}] : memref<1xf32, #memspace<addr local>>

// cache_read A shared at ko: an 8x8 tile (8 rows of i by 8 of k) filled by all 64 threads
// together (start at the linear thread id, step by the thread count), between barriers.
// Every split divides and rows are multiples of 4 long, so the tile never leaves A and is
// copied as 16 aligned vectors of 4, without bounds checks.
// CHECK:          scf.for %ko =
// CHECK:            %A_shared = memref.alloca() : memref<8x8xf32, #memspace<addr shared>>
// CHECK-NEXT:       "gpu.barrier"() : () -> ()
// CHECK-NEXT:       %[[II8:.*]] = arith.muli %ii, %{{.*}} : index
// CHECK-NEXT:       %[[TID:.*]] = arith.addi %[[II8]], %ji : index
// CHECK-NEXT:       %[[NV:.*]] = arith.constant 16 : index
// CHECK-NEXT:       %[[NT:.*]] = arith.constant 64 : index
// CHECK-NEXT:       scf.for %{{.*}} = %[[TID]] to %[[NV]] step %[[NT]] {
// CHECK-NOT:          scf.if
// CHECK:              %[[AV:.*]] = vector.load %A[%{{.*}}, %{{.*}}] : memref<64x32xf32>, vector<4xf32>
// CHECK-NEXT:         vector.store %[[AV]], %A_shared[%{{.*}}, %{{.*}}] : memref<8x8xf32, #memspace<addr shared>>, vector<4xf32>
// CHECK-NEXT:       }
// CHECK-NEXT:       "gpu.barrier"() : () -> ()

// cache_read B local at ki: each thread copies its own 1x1 part, no barrier.
// CHECK-NEXT:       scf.for %ki =
// CHECK:              %B_local = memref.alloca() : memref<1x1xf32, #memspace<addr local>>
// CHECK-NOT:          gpu.barrier
// CHECK:              memref.load %B[%{{.*}}, %{{.*}}] : memref<32x48xf32>
// CHECK:              memref.store %{{.*}}, %B_local[%{{.*}}, %{{.*}}] : memref<1x1xf32, #memspace<addr local>>

// The body reads the caches, not A and B, and accumulates into C_local.
// CHECK:              %[[A:.*]] = memref.load %A_shared[%{{.*}}, %{{.*}}] : memref<8x8xf32, #memspace<addr shared>>
// CHECK:              %[[B:.*]] = memref.load %B_local[%{{.*}}, %{{.*}}] : memref<1x1xf32, #memspace<addr local>>
// CHECK-NEXT:         %[[AB:.*]] = arith.mulf %[[A]], %[[B]] : f32
// CHECK-NEXT:         %[[OLD:.*]] = memref.load %C_local[%{{.*}}] : memref<1xf32, #memspace<addr local>>
// CHECK-NEXT:         %[[NEW:.*]] = arith.addf %[[OLD]], %[[AB]] : f32
// CHECK-NEXT:         memref.store %[[NEW]], %C_local[%{{.*}}] : memref<1xf32, #memspace<addr local>>
// CHECK-NEXT:       } {sched.stage = "C", sched.axis = "ki", sched.reduce}
// CHECK-NEXT:     } {sched.stage = "C", sched.axis = "ko", sched.reduce}

// The write-back from C_local to C, at the output the thread computes.
// CHECK:            %[[R:.*]] = memref.load %C_local[%{{.*}}] : memref<1xf32, #memspace<addr local>>
// CHECK-NEXT:       memref.store %[[R]], %C[%{{.*}}, %{{.*}}] : memref<64x48xf32>
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "ji", sched.bind = "thread.x"}
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "ii", sched.bind = "thread.y"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "jo", sched.bind = "block.x"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "io", sched.bind = "block.y"}
