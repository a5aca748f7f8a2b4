// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%A: tensor<4x1x8xf32>, %B: tensor<3x1xf32>, %b: tensor<8xf32>) -> (tensor<4x3x8xf32>, tensor<4x1x8xf32>, tensor<4x1x8xf32>, tensor<4x1x8xf32>) {
    %S = tensorop.binary %A, %B {name = "S", fn = "sub"} : (tensor<4x1x8xf32>, tensor<3x1xf32>) -> tensor<4x3x8xf32>
    %U = tensorop.unary %A {name = "U", fn = "clip", lo = 5.000000e-01 : f32, hi = 2.000000e+00 : f32} : (tensor<4x1x8xf32>) -> tensor<4x1x8xf32>
    %BA = tensorop.bias_add %A, %b {name = "BA", axis = 2 : i64} : (tensor<4x1x8xf32>, tensor<8xf32>) -> tensor<4x1x8xf32>
    %E = tensorop.unary %A {name = "E", fn = "sigmoid"} : (tensor<4x1x8xf32>) -> tensor<4x1x8xf32>
    func.return %S, %U, %BA, %E : tensor<4x3x8xf32>, tensor<4x1x8xf32>, tensor<4x1x8xf32>, tensor<4x1x8xf32>
  }
}

// CHECK:      func.func @main(%A: memref<4x1x8xf32>, %B: memref<3x1xf32>, %b: memref<8xf32>, %S: memref<4x3x8xf32>, %U: memref<4x1x8xf32>, %BA: memref<4x1x8xf32>, %E: memref<4x1x8xf32>)
// CHECK-SAME: sched.arg_names = ["A", "B", "b", "S", "U", "BA", "E"], sched.num_inputs = 3 : i64

// binary sub, (4,1,8) - (3,1) broadcasts to (4,3,8): loops d0 d1 d2; size-1 dimensions
// read at index 0, and the missing leading dimension of B is dropped.
// CHECK:      %[[E0:.*]] = arith.constant 4 : index
// CHECK:      scf.for %d0 = %{{.*}} to %[[E0]] step
// CHECK:      %[[E1:.*]] = arith.constant 3 : index
// CHECK:      scf.for %d1 = %{{.*}} to %[[E1]] step
// CHECK:      %[[E2:.*]] = arith.constant 8 : index
// CHECK:      scf.for %d2 = %{{.*}} to %[[E2]] step
// CHECK-NEXT: %[[Z0:.*]] = arith.constant 0 : index
// CHECK-NEXT: %[[LA:.*]] = memref.load %A[%d0, %[[Z0]], %d2] : memref<4x1x8xf32>
// CHECK-NEXT: %[[Z1:.*]] = arith.constant 0 : index
// CHECK-NEXT: %[[LB:.*]] = memref.load %B[%d1, %[[Z1]]] : memref<3x1xf32>
// CHECK-NEXT: %[[D:.*]] = arith.subf %[[LA]], %[[LB]] : f32
// CHECK-NEXT: memref.store %[[D]], %S[%d0, %d1, %d2] : memref<4x3x8xf32>
// CHECK-NEXT: } {sched.stage = "S", sched.axis = "d2"}
// CHECK-NEXT: } {sched.stage = "S", sched.axis = "d1"}
// CHECK-NEXT: } {sched.stage = "S", sched.axis = "d0"}
// CHECK-NOT:  sched.reduce
// CHECK-NOT:  sched.init

// unary clip(0.5, 2.0) is min(max(x, lo), hi).
// CHECK:      scf.for %d2_1 =
// CHECK-NEXT: %[[X:.*]] = memref.load %A[%d0_1, %d1_1, %d2_1] : memref<4x1x8xf32>
// CHECK-NEXT: %[[LO:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-NEXT: %[[MX:.*]] = arith.maximumf %[[X]], %[[LO]] : f32
// CHECK-NEXT: %[[HI:.*]] = arith.constant 2.000000e+00 : f32
// CHECK-NEXT: %[[MN:.*]] = arith.minimumf %[[MX]], %[[HI]] : f32
// CHECK-NEXT: memref.store %[[MN]], %U[%d0_1, %d1_1, %d2_1] : memref<4x1x8xf32>
// CHECK-NEXT: } {sched.stage = "U", sched.axis = "d2"}
// CHECK-NEXT: } {sched.stage = "U", sched.axis = "d1"}
// CHECK-NEXT: } {sched.stage = "U", sched.axis = "d0"}

// bias_add along axis 2: the bias is indexed by that axis's loop only.
// CHECK:      scf.for %d2_2 =
// CHECK-NEXT: %[[X2:.*]] = memref.load %A[%d0_2, %d1_2, %d2_2] : memref<4x1x8xf32>
// CHECK-NEXT: %[[BV:.*]] = memref.load %b[%d2_2] : memref<8xf32>
// CHECK-NEXT: %[[SUM:.*]] = arith.addf %[[X2]], %[[BV]] : f32
// CHECK-NEXT: memref.store %[[SUM]], %BA[%d0_2, %d1_2, %d2_2] : memref<4x1x8xf32>
// CHECK-NEXT: } {sched.stage = "BA", sched.axis = "d2"}
// CHECK-NEXT: } {sched.stage = "BA", sched.axis = "d1"}
// CHECK-NEXT: } {sched.stage = "BA", sched.axis = "d0"}

// unary sigmoid is 1 / (1 + exp(-x)).
// CHECK:      scf.for %d2_3 =
// CHECK-NEXT: %[[X3:.*]] = memref.load %A[%d0_3, %d1_3, %d2_3] : memref<4x1x8xf32>
// CHECK-NEXT: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NEXT: %[[NX:.*]] = arith.negf %[[X3]] : f32
// CHECK-NEXT: %[[EX:.*]] = math.exp %[[NX]] : f32
// CHECK-NEXT: %[[DEN:.*]] = arith.addf %[[ONE]], %[[EX]] : f32
// CHECK-NEXT: %[[SIG:.*]] = arith.divf %[[ONE]], %[[DEN]] : f32
// CHECK-NEXT: memref.store %[[SIG]], %E[%d0_3, %d1_3, %d2_3] : memref<4x1x8xf32>
// CHECK-NEXT: } {sched.stage = "E", sched.axis = "d2"}
// CHECK:      func.return
