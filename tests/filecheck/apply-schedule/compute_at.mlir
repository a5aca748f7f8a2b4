// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s

// R = relu(A + b) with the bias add computed inside R's loop over rows.
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

// T's nest disappears: each iteration of d0 computes the 1x32 row of T that R reads into a
// shared buffer, in a thread phase of its own, then R reads the buffer.
// CHECK:      func.func @main(%A: memref<16x32xf32>, %b: memref<32xf32>, %R: memref<16x32xf32>)
// CHECK-NOT:  sched.stage = "T"
// CHECK:      scf.for %d0 =
// CHECK-NEXT:   %T_shared = memref.alloca() : memref<1x32xf32, #memspace<addr shared>>
// CHECK-NEXT:   %[[N:.*]] = arith.constant 32 : index
// CHECK-NEXT:   scf.for %d1 =
// CHECK-NEXT:     scf.for %[[E:.*]] = %d1 to %[[N]] step %[[N]] {
// The row lies inside T, so no bounds check guards it.
// CHECK-NOT:        scf.if
// CHECK:              %[[X:.*]] = memref.load %A[%d0, %{{.*}}] : memref<16x32xf32>
// CHECK-NEXT:         %[[BV:.*]] = memref.load %b[%{{.*}}] : memref<32xf32>
// CHECK-NEXT:         %[[S:.*]] = arith.addf %[[X]], %[[BV]] : f32
// CHECK:              memref.store %[[S]], %T_shared[%{{.*}}, %{{.*}}] : memref<1x32xf32, #memspace<addr shared>>
// CHECK:        } {sched.stage = "R", sched.axis = "d1", sched.bind = "thread.x"}
// CHECK-NEXT:   scf.for %d1_1 =
// CHECK:          %[[TV:.*]] = memref.load %T_shared[%{{.*}}, %d1_1] : memref<1x32xf32, #memspace<addr shared>>
// CHECK-NEXT:     %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:     %[[RV:.*]] = arith.maximumf %[[TV]], %[[Z]] : f32
// CHECK-NEXT:     memref.store %[[RV]], %R[%d0, %d1_1] : memref<16x32xf32>
// CHECK-NEXT:   } {sched.stage = "R", sched.axis = "d1", sched.bind = "thread.x"}
// CHECK-NEXT: } {sched.stage = "R", sched.axis = "d0", sched.bind = "block.x"}
// CHECK-NOT:  sched.stage = "T"
