// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

// An intermediate result gets a memref.alloc named after its stage; only the returned
// tensor becomes an argument. Stages run in program order.
builtin.module {
  func.func @main(%A: tensor<16x8xf32>, %B: tensor<8x4xf32>) -> tensor<16x4xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<16x8xf32>, tensor<8x4xf32>) -> tensor<16x4xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<16x4xf32>) -> tensor<16x4xf32>
    func.return %R : tensor<16x4xf32>
  }
}

// CHECK:      func.func @main(%A: memref<16x8xf32>, %B: memref<8x4xf32>, %R: memref<16x4xf32>)
// CHECK-SAME: sched.arg_names = ["A", "B", "R"], sched.num_inputs = 2 : i64
// CHECK-NEXT: %C = memref.alloc() : memref<16x4xf32>
// CHECK:      memref.store %{{.*}}, %C[%i, %j] : memref<16x4xf32>
// CHECK:      } {sched.stage = "C", sched.axis = "i"}
// CHECK:      %[[V:.*]] = memref.load %C[%d0, %d1] : memref<16x4xf32>
// CHECK-NEXT: %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %[[RELU:.*]] = arith.maximumf %[[V]], %[[Z]] : f32
// CHECK-NEXT: memref.store %[[RELU]], %R[%d0, %d1] : memref<16x4xf32>
// CHECK-NEXT: } {sched.stage = "R", sched.axis = "d1"}
// CHECK-NEXT: } {sched.stage = "R", sched.axis = "d0"}
