// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%A: tensor<4x8xf32>) -> tensor<4x8xf32> {
    %SM = tensorop.softmax %A {name = "SM", axis = -1 : i64} : (tensor<4x8xf32>) -> tensor<4x8xf32>
    func.return %SM : tensor<4x8xf32>
  }
}

// Three stages: SM.max and SM.sum into buffers of their own, then SM.
// CHECK:      func.func @main(%A: memref<4x8xf32>, %SM: memref<4x8xf32>)
// CHECK-NEXT: %SM.max = memref.alloc() : memref<4xf32>
// CHECK-NEXT: %SM.sum = memref.alloc() : memref<4xf32>

// Stage SM.max: the row maximum, starting from -inf.
// CHECK:      scf.for %d0 =
// CHECK:      scf.for %r0 =
// CHECK-NEXT: %[[X:.*]] = memref.load %A[%d0, %r0] : memref<4x8xf32>
// CHECK-NEXT: %[[Z:.*]] = arith.constant 0 : index
// CHECK-NEXT: %[[FIRST:.*]] = arith.cmpi eq, %r0, %[[Z]] : index
// CHECK-NEXT: %[[OLD:.*]] = memref.load %SM.max[%d0] : memref<4xf32>
// CHECK-NEXT: %[[NINF:.*]] = arith.constant 0xff800000 : f32
// CHECK-NEXT: %[[ACC:.*]] = arith.select %[[FIRST]], %[[NINF]], %[[OLD]] {sched.init} : f32
// CHECK-NEXT: %[[M:.*]] = arith.maximumf %[[ACC]], %[[X]] : f32
// CHECK-NEXT: memref.store %[[M]], %SM.max[%d0] : memref<4xf32>
// CHECK-NEXT: } {sched.stage = "SM.max", sched.axis = "r0", sched.reduce}
// CHECK-NEXT: } {sched.stage = "SM.max", sched.axis = "d0"}

// Stage SM.sum: sum of exp(x - max), starting from 0.
// CHECK:      scf.for %d0_1 =
// CHECK:      scf.for %r0_1 =
// CHECK-NEXT: %[[X1:.*]] = memref.load %A[%d0_1, %r0_1] : memref<4x8xf32>
// CHECK-NEXT: %[[MX1:.*]] = memref.load %SM.max[%d0_1] : memref<4xf32>
// CHECK-NEXT: %[[SUB1:.*]] = arith.subf %[[X1]], %[[MX1]] : f32
// CHECK-NEXT: %[[E1:.*]] = math.exp %[[SUB1]] : f32
// CHECK:      %[[OLD1:.*]] = memref.load %SM.sum[%d0_1] : memref<4xf32>
// CHECK-NEXT: %[[Z1:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %[[ACC1:.*]] = arith.select %{{.*}}, %[[Z1]], %[[OLD1]] {sched.init} : f32
// CHECK-NEXT: %[[S1:.*]] = arith.addf %[[ACC1]], %[[E1]] : f32
// CHECK-NEXT: memref.store %[[S1]], %SM.sum[%d0_1] : memref<4xf32>
// CHECK-NEXT: } {sched.stage = "SM.sum", sched.axis = "r0", sched.reduce}
// CHECK-NEXT: } {sched.stage = "SM.sum", sched.axis = "d0"}

// Stage SM: exp(x - max) / sum, elementwise; no reduction, no init.
// CHECK:      scf.for %d0_2 =
// CHECK:      scf.for %d1 =
// CHECK-NEXT: %[[X2:.*]] = memref.load %A[%d0_2, %d1] : memref<4x8xf32>
// CHECK-NEXT: %[[MX2:.*]] = memref.load %SM.max[%d0_2] : memref<4xf32>
// CHECK-NEXT: %[[SUB2:.*]] = arith.subf %[[X2]], %[[MX2]] : f32
// CHECK-NEXT: %[[E2:.*]] = math.exp %[[SUB2]] : f32
// CHECK-NEXT: %[[S2:.*]] = memref.load %SM.sum[%d0_2] : memref<4xf32>
// CHECK-NEXT: %[[Q:.*]] = arith.divf %[[E2]], %[[S2]] : f32
// CHECK-NEXT: memref.store %[[Q]], %SM[%d0_2, %d1] : memref<4x8xf32>
// CHECK-NEXT: } {sched.stage = "SM", sched.axis = "d1"}
// CHECK-NEXT: } {sched.stage = "SM", sched.axis = "d0"}
// CHECK-NEXT: func.return
