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
    %io, %jo, %ii, %ji = sched.tile %i, %j by 16, 16
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.bind %ii "thread.y"
    sched.bind %ji "thread.x"
    %ko, %ki = sched.split %k by 8
    sched.cache_read "A" "shared" at %ko {layout = array<i64: 1, 0>, double_buffer}
    sched.cache_write "local" at %ji
  }
}

// A's 16x8 tile per iteration of ko, stored transposed (8x16), in two parts. Before ko: part 0
// gets the first tile, in float4 copies along A's rows, stored one element at a time.
// CHECK:          %A_shared = memref.alloca() : memref<2x8x16xf32, #memspace<addr shared>>
// CHECK:          scf.for
// CHECK:            %[[V:.*]] = vector.load %A[%{{.*}}, %{{.*}}] : memref<64x32xf32>, vector<4xf32>
// CHECK-NEXT:       %[[X:.*]] = vector.extract %[[V]][0] : f32 from vector<4xf32>
// CHECK-NEXT:       memref.store %[[X]], %A_shared[%{{.*}}, %{{.*}}, %{{.*}}] : memref<2x8x16xf32, #memspace<addr shared>>
// CHECK:          "gpu.barrier"() : () -> ()

// In iteration ko: registers get the next tile (of iteration min(ko + 1, 3)) first...
// CHECK:          scf.for %ko =
// CHECK:            %[[PART:.*]] = arith.remui %ko, %{{.*}} : index
// CHECK:            %[[NEXT:.*]] = arith.minsi %{{.*}}, %{{.*}} : index
// CHECK:            %A_next = memref.alloca() : memref<4xf32, #memspace<addr local>>
// CHECK:            vector.load %A
// CHECK:            vector.store %{{.*}}, %A_next

// ...the inner loops read part ko % 2...
// CHECK:            scf.for %ki =
// CHECK:              memref.load %A_shared[%[[PART]], %{{.*}}, %{{.*}}]
// CHECK:            } {sched.stage = "C", sched.axis = "ki", sched.reduce}

// ...then the registers go to the other part, and one barrier ends the iteration.
// CHECK:              vector.load %A_next
// CHECK:              %[[OTHER:.*]] = arith.subi %{{.*}}, %[[PART]] : index
// CHECK:            memref.store %{{.*}}, %A_shared[%[[OTHER]], %{{.*}}, %{{.*}}]
// CHECK:            "gpu.barrier"() : () -> ()
// CHECK-NEXT:     } {sched.stage = "C", sched.axis = "ko", sched.reduce}
// CHECK-NOT:      gpu.barrier
