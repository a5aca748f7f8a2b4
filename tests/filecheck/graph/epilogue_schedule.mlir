// RUN: sched-opt %s -p tensorop-fuse,tensorop-to-loops | filecheck %s
// RUN: sched-opt %s -p tensorop-fuse,tensorop-to-loops,apply-schedule | filecheck %s --check-prefix=SCHED

// tensorop-to-loops writes a fused epilogue inside the anchor's perfect nest: on the last
// reduction iteration (k = 7) the stored value goes through bias and sigmoid; the scf.if is
// tagged sched.epilogue. A hand-written schedule without cache_write keeps it there (right in
// any loop order, since that iteration comes last for each output); the default schedule of
// a fused reduction moves it to the write-back of a register accumulator (see fuse.mlir).
builtin.module {
  func.func @main(%A: tensor<16x8xf32>, %B: tensor<8x4xf32>, %c: tensor<4xf32>) -> tensor<16x4xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<16x8xf32>, tensor<8x4xf32>) -> tensor<16x4xf32>
    %D = tensorop.bias_add %C, %c {name = "D", axis = 1 : i64} : (tensor<16x4xf32>, tensor<4xf32>) -> tensor<16x4xf32>
    %E = tensorop.unary %D {name = "E", fn = "sigmoid"} : (tensor<16x4xf32>) -> tensor<16x4xf32>
    func.return %E : tensor<16x4xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    sched.bind %i "block.x"
    sched.bind %j "thread.x"
  }
}

// CHECK:      func.func @main(%A: memref<16x8xf32>, %B: memref<8x4xf32>, %c: memref<4xf32>, %E: memref<16x4xf32>)
// CHECK-NOT:  memref.alloc
// CHECK:      %[[SEVEN:.*]] = arith.constant 7 : index
// CHECK-NEXT: %[[LAST:.*]] = arith.cmpi eq, %k, %[[SEVEN]] : index
// CHECK-NEXT: %[[V:.*]] = scf.if %[[LAST]] -> (f32) {
// CHECK:        memref.load %c[%j]
// CHECK:        arith.divf
// CHECK:      }{sched.epilogue}
// CHECK-NEXT: memref.store %[[V]], %E[%i, %j]
// CHECK:      } {sched.stage = "C", sched.axis = "i"}
// CHECK-NOT:  sched.stage = "D"
// CHECK-NOT:  sched.stage = "E"

// SCHED:      scf.for %k
// SCHED:      scf.if %{{.*}} -> (f32) {
// SCHED:        memref.load %c
// SCHED:      }{sched.epilogue}
// SCHED-NEXT: memref.store %{{.*}}, %E
