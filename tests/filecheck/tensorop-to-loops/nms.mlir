// RUN: sched-opt %s -p tensorop-to-loops | filecheck %s

builtin.module {
  func.func @main(%B: tensor<6x4xf32>, %S: tensor<6xf32>) -> tensor<3xi32> {
    %NM = tensorop.nms %B, %S {name = "NM", max_output = 3 : i64, iou_threshold = 5.000000e-01 : f32, score_threshold = 2.500000e-01 : f32} : (tensor<6x4xf32>, tensor<6xf32>) -> tensor<3xi32>
    func.return %NM : tensor<3xi32>
  }
}

// NMS: sort by score (NM.rank, NM.order), the greedy pass (NM.supp), an exclusive scan of
// the kept flags (NM.pos.step0, NM.pos.step1, NM.pos) and the output (NM).
// CHECK:      func.func @main(%B: memref<6x4xf32>, %S: memref<6xf32>, %NM: memref<3xi32>)
// CHECK-NEXT: %NM.rank = memref.alloc() : memref<6xi32>
// CHECK-NEXT: %NM.order = memref.alloc() : memref<6xi32>
// CHECK-NEXT: %NM.supp = memref.alloc() : memref<6xi32>
// CHECK-NEXT: %NM.pos = memref.alloc() : memref<6xi32>
// CHECK:      } {sched.stage = "NM.rank", sched.axis = "j", sched.reduce}
// CHECK:      memref.store %{{.*}}, %NM.order[%{{.*}}] : memref<6xi32>
// CHECK-NEXT: } {sched.stage = "NM.order", sched.axis = "d0"}

// The greedy pass: the sequential loop `step` outermost (it is the reduction of supp),
// the later boxes inside. supp[step] is read only after step 0 has written it.
// CHECK:      scf.for %step =
// CHECK:      scf.for %box =
// CHECK:      %[[BS:.*]] = memref.load %NM.order[%step] : memref<6xi32>
// CHECK:      %[[BR:.*]] = memref.load %NM.order[%box] : memref<6xi32>
// CHECK:      %[[STARTED:.*]] = arith.cmpi sgt, %step, %{{.*}} : index
// CHECK-NEXT: %[[SS:.*]] = scf.if %[[STARTED]] -> (i32) {
// CHECK-NEXT:   %[[L:.*]] = memref.load %NM.supp[%step] : memref<6xi32>
// CHECK:      %[[LATER:.*]] = arith.cmpi slt, %step, %box : index
// candidate: score > 0.25
// CHECK:      %[[SC:.*]] = memref.load %S[%{{.*}}] : memref<6xf32>
// CHECK-NEXT: %[[THR:.*]] = arith.constant 2.500000e-01 : f32
// CHECK-NEXT: %[[CAND:.*]] = arith.cmpf ogt, %[[SC]], %[[THR]] : f32
// CHECK:      %[[HIT:.*]] = scf.if %{{.*}} -> (i32) {
// the IoU test with onnxruntime's rules, then IoU > 0.5
// CHECK:      arith.minimumf
// CHECK:      %[[IOU:.*]] = arith.divf %{{.*}}, %{{.*}} : f32
// CHECK-NEXT: %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-NEXT: arith.cmpf ogt, %[[IOU]], %[[HALF]] : f32
// CHECK:      %[[FIRST:.*]] = arith.cmpi eq, %step, %{{.*}} : index
// CHECK-NEXT: %[[OLD:.*]] = memref.load %NM.supp[%box] : memref<6xi32>
// CHECK:      %[[ACC:.*]] = arith.select %[[FIRST]], %{{.*}}, %[[OLD]] {sched.init} : i32
// CHECK-NEXT: %[[NEW:.*]] = arith.maxsi %[[ACC]], %[[HIT]] : i32
// CHECK-NEXT: memref.store %[[NEW]], %NM.supp[%box] : memref<6xi32>
// CHECK-NEXT: } {sched.stage = "NM.supp", sched.axis = "box"}
// CHECK-NEXT: } {sched.stage = "NM.supp", sched.axis = "step", sched.reduce, sched.sequential}

// CHECK:      %NM.pos.step0 = memref.alloc() : memref<6xi32>
// CHECK:      } {sched.stage = "NM.pos.step0", sched.axis = "d0"}
// CHECK:      %NM.pos.step1 = memref.alloc() : memref<6xi32>
// CHECK:      } {sched.stage = "NM.pos.step1", sched.axis = "d0"}
// CHECK:      memref.store %{{.*}}, %NM.pos[%{{.*}}] : memref<6xi32>
// CHECK-NEXT: } {sched.stage = "NM.pos", sched.axis = "d0"}

// The output: out[m] = max over ranks of (kept and pos == m ? order[rank] : -1), from -1.
// CHECK:      scf.for %m =
// CHECK:      scf.for %rank =
// CHECK:      %[[P:.*]] = memref.load %NM.pos[%rank] : memref<6xi32>
// CHECK-NEXT: %[[PI:.*]] = arith.index_cast %[[P]] : i32 to index
// CHECK-NEXT: %[[ATM:.*]] = arith.cmpi eq, %[[PI]], %m : index
// CHECK:      %[[OLDM:.*]] = memref.load %NM[%m] : memref<3xi32>
// CHECK-NEXT: %[[MINUS1:.*]] = arith.constant -1 : i32
// CHECK-NEXT: %[[ACC2:.*]] = arith.select %{{.*}}, %[[MINUS1]], %{{.*}} {sched.init} : i32
// CHECK-NEXT: %[[OUT:.*]] = arith.maxsi %[[ACC2]], %{{.*}} : i32
// CHECK-NEXT: memref.store %[[OUT]], %NM[%m] : memref<3xi32>
// CHECK-NEXT: } {sched.stage = "NM", sched.axis = "rank", sched.reduce}
