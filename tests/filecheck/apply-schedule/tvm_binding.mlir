// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s
// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu --check-each-pass -o /dev/null 2>&1 | filecheck %s --check-prefix=CHECKED

builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %io, %ii = sched.split %i by 16
    %jo, %ji = sched.split %j by 16
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.bind %ii "thread.y"
    sched.bind %ji "thread.x"
  }
}

// Split loops bound without a reorder, as in TVM: the order is io, ii, jo, ji, k, and the
// loops bound to blocks move outermost (their iterations are independent), so it runs as
// io, jo, ii, ji, k.
// CHECK:      scf.for %io =
// CHECK:        scf.for %jo =
// CHECK:          scf.for %ii =
// CHECK-NEXT:       scf.for %ji =
// CHECK:            } {sched.stage = "C", sched.axis = "ji", sched.bind = "thread.x"}
// CHECK-NEXT:     } {sched.stage = "C", sched.axis = "ii", sched.bind = "thread.y"}
// CHECK:        } {sched.stage = "C", sched.axis = "jo", sched.bind = "block.x"}
// CHECK-NEXT: } {sched.stage = "C", sched.axis = "io", sched.bind = "block.y"}

// CHECKED:      check-each-pass: tensorop-to-loops: loops level, ok
// CHECKED-NEXT: check-each-pass: apply-schedule: loops level, ok
// CHECKED-NEXT: check-each-pass: loops-to-gpu: gpu level, ok
// CHECKED-NEXT: check-each-pass: emitted OpenCL text: text level, ok
