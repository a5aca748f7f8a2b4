// RUN: not sched-opt %s -p 'tensorop-to-loops,apply-schedule{config="t=5"}' 2>&1 | filecheck %s --check-prefix=VALUE
// RUN: not sched-opt %s -p 'tensorop-to-loops,apply-schedule{config="t=x"}' 2>&1 | filecheck %s --check-prefix=SYNTAX
// RUN: not sched-opt %s -p 'tensorop-to-loops,apply-schedule{config="t=8,u=4"}' 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not sched-opt %s -p 'tensorop-to-loops,apply-schedule{config="t=8,t=4"}' 2>&1 | filecheck %s --check-prefix=TWICE

// Bad values for apply-schedule's knob config: exit code 1, a one-line message.
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %t = sched.knob "t" [16, 8, 4] // VALUE: {{.*}}knob_config.mlir:[[# @LINE]]:5: error: sched.knob: knob 't' = 5 is not one of its candidates [16, 8, 4]
    %i = sched.loop "C" "i"
    %io, %ii = sched.split %i by %t
  }
}

// VALUE-NOT: Traceback
// SYNTAX: apply-schedule: config entry 't=x' is not knob=integer
// SYNTAX-NOT: Traceback
// TWICE: apply-schedule: config sets knob 't' twice ('t=8', 't=4')
// UNKNOWN: apply-schedule: config names unknown knob(s) ['u']; the schedule has ['t']
// UNKNOWN-NOT: Traceback
