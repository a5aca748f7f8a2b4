// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%A: tensor<4x6x8xf32>) -> (tensor<6xf32>, tensor<4x1x1xf32>) {
    %R = tensorop.reduce %A {name = "R", fn = "mean", axes = array<i64: 0, 2>, keepdims = 0 : i64} : (tensor<4x6x8xf32>) -> tensor<6xf32>
    %M = tensorop.reduce %A {name = "M", fn = "max", axes = array<i64: -1, 1>, keepdims = 1 : i64} : (tensor<4x6x8xf32>) -> tensor<4x1x1xf32>
    func.return %R, %M : tensor<6xf32>, tensor<4x1x1xf32>
  }
}

// mean over axes (0, 2) without keepdims: one output loop d0 over the kept axis, reductions
// r0, r1 over the reduced ones in axis order; each term is scaled by 1/32.
// CHECK:      func.func @main(%A: memref<4x6x8xf32>, %R: memref<6xf32>, %M: memref<4x1x1xf32>)
// CHECK:      %[[D0:.*]] = arith.constant 6 : index
// CHECK:      scf.for %d0 = %{{.*}} to %[[D0]] step
// CHECK:      %[[R0:.*]] = arith.constant 4 : index
// CHECK:      scf.for %r0 = %{{.*}} to %[[R0]] step
// CHECK:      %[[R1:.*]] = arith.constant 8 : index
// CHECK:      scf.for %r1 = %{{.*}} to %[[R1]] step
// CHECK-NEXT: %[[X:.*]] = memref.load %A[%r0, %d0, %r1] : memref<4x6x8xf32>
// CHECK-NEXT: %[[SCALE:.*]] = arith.constant 3.125000e-02 : f32
// CHECK-NEXT: %[[T:.*]] = arith.mulf %[[X]], %[[SCALE]] : f32
// CHECK:      arith.cmpi eq, %r0
// CHECK:      arith.cmpi eq, %r1
// CHECK-NEXT: %[[FIRST:.*]] = arith.andi
// CHECK-NEXT: %[[OLD:.*]] = memref.load %R[%d0] : memref<6xf32>
// CHECK-NEXT: %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %[[ACC:.*]] = arith.select %[[FIRST]], %[[Z]], %[[OLD]] {sched.init} : f32
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[ACC]], %[[T]] : f32
// CHECK-NEXT: memref.store %[[S]], %R[%d0] : memref<6xf32>
// CHECK-NEXT: } {sched.stage = "R", sched.axis = "r1", sched.reduce}
// CHECK-NEXT: } {sched.stage = "R", sched.axis = "r0", sched.reduce}
// CHECK-NEXT: } {sched.stage = "R", sched.axis = "d0"}

// max over axes (-1, 1) with keepdims: output loops d0, d1, d2 (the kept size-1 axes too),
// reductions r0 (axis 1), r1 (axis 2); starts from -inf.
// CHECK:      scf.for %d0_1 =
// CHECK:      scf.for %d1 =
// CHECK:      scf.for %d2 =
// CHECK:      %[[R0M:.*]] = arith.constant 6 : index
// CHECK:      scf.for %r0_1 = %{{.*}} to %[[R0M]] step
// CHECK:      %[[R1M:.*]] = arith.constant 8 : index
// CHECK:      scf.for %r1_1 = %{{.*}} to %[[R1M]] step
// CHECK-NEXT: %[[XM:.*]] = memref.load %A[%d0_1, %r0_1, %r1_1] : memref<4x6x8xf32>
// CHECK:      %[[OLDM:.*]] = memref.load %M[%d0_1, %d1, %d2] : memref<4x1x1xf32>
// CHECK-NEXT: %[[NINF:.*]] = arith.constant 0xff800000 : f32
// CHECK-NEXT: %[[ACCM:.*]] = arith.select %{{.*}}, %[[NINF]], %[[OLDM]] {sched.init} : f32
// CHECK-NEXT: %[[MX:.*]] = arith.maximumf %[[ACCM]], %[[XM]] : f32
// CHECK-NEXT: memref.store %[[MX]], %M[%d0_1, %d1, %d2] : memref<4x1x1xf32>
// CHECK-NEXT: } {sched.stage = "M", sched.axis = "r1", sched.reduce}
// CHECK-NEXT: } {sched.stage = "M", sched.axis = "r0", sched.reduce}
// CHECK-NEXT: } {sched.stage = "M", sched.axis = "d2"}
// CHECK-NEXT: } {sched.stage = "M", sched.axis = "d1"}
// CHECK-NEXT: } {sched.stage = "M", sched.axis = "d0"}
