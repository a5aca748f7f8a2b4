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
    %jo, %ji = sched.split %j by 4
    %ko, %ki = sched.split %k by 4
    sched.reorder %ko, %ki, %ji
    sched.bind %i "block.y"
    sched.bind %jo "thread.y"
    sched.unroll %ki
    sched.vectorize %ji
  }
}

// bind, unroll and vectorize become loop attributes. ji is the innermost loop of both the
// initialisation and the reduction nest, and is vectorized in both.
// CHECK:      scf.for %i =
// CHECK-NEXT:   %[[JO_UB:.*]] = arith.constant 12 : index
// CHECK-NEXT:   scf.for %jo = %{{.*}} to %[[JO_UB]] step
// CHECK-NEXT:     %[[FOUR:.*]] = arith.constant 4 : index
// CHECK-NEXT:     scf.for %ji = %{{.*}} to %[[FOUR]] step
// CHECK:            memref.store
// CHECK-NEXT:     } {sched.stage = "C", sched.axis = "ji", sched.vectorize}
// CHECK-NEXT:     %[[KO_UB:.*]] = arith.constant 8 : index
// CHECK-NEXT:     scf.for %ko = %{{.*}} to %[[KO_UB]] step
// CHECK-NEXT:       scf.for %ki = %{{.*}} to %[[FOUR]] step
// CHECK-NEXT:         scf.for %ji_1 = %{{.*}} to %[[FOUR]] step
// CHECK:              } {sched.stage = "C", sched.axis = "ji", sched.vectorize}
// CHECK-NEXT:       } {sched.stage = "C", sched.axis = "ki", sched.reduce, sched.unroll}
// CHECK-NEXT:     } {sched.stage = "C", sched.axis = "ko", sched.reduce}
// CHECK-NEXT:   } {sched.stage = "C", sched.axis = "jo", sched.bind = "thread.y"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "i", sched.bind = "block.y"}
