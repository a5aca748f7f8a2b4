// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule | filecheck %s --check-prefix=DEFAULT
// RUN: sched-opt %s -p 'tensorop-to-loops,apply-schedule{config="t=8"}' | filecheck %s --check-prefix=EIGHT

builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %t = sched.knob "t" [16, 8, 4]
    %i = sched.loop "C" "i"
    %io, %ii = sched.split %i by %t
    sched.bind %io "block.x"
    sched.bind %ii "thread.x"
  }
}

// Without a config the knob takes its first candidate, 16.
// DEFAULT:      %[[IO:.*]] = arith.constant 4 : index
// DEFAULT:      scf.for %io = %{{.*}} to %[[IO]] step
// DEFAULT-NEXT:   %[[II:.*]] = arith.constant 16 : index
// DEFAULT-NEXT:   scf.for %ii = %{{.*}} to %[[II]] step
// DEFAULT:        } {sched.stage = "C", sched.axis = "ii", sched.bind = "thread.x"}
// DEFAULT-NEXT: } {sched.stage = "C", sched.axis = "io", sched.bind = "block.x"}
// DEFAULT-NOT:  sched.knob

// config="t=8" picks 8.
// EIGHT:      %[[IO:.*]] = arith.constant 8 : index
// EIGHT:      scf.for %io = %{{.*}} to %[[IO]] step
// EIGHT-NEXT:   scf.for %ii = %{{.*}} to %[[IO]] step
// EIGHT:        } {sched.stage = "C", sched.axis = "ii", sched.bind = "thread.x"}
// EIGHT-NEXT: } {sched.stage = "C", sched.axis = "io", sched.bind = "block.x"}
// EIGHT-NOT:  sched.knob
