// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu --check-each-pass --check-budget 1 -o %t 2>&1 | filecheck %s

// A stage whose IR needs more interpreter steps than --check-budget is not checked, which is
// not a failure: the check goes on, and a last line names the stages checked and not checked.
// The input is tensorop IR: its meaning is the numpy reference, which takes no steps.
builtin.module {
  func.func @main(%A: tensor<8x8xf32>, %B: tensor<8x8xf32>) -> tensor<8x8xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<8x8xf32>, tensor<8x8xf32>) -> tensor<8x8xf32>
    func.return %C : tensor<8x8xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %io, %ii = sched.split %i by 4
    %j = sched.loop "C" "j"
    %jo, %ji = sched.split %j by 4
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.bind %ii "thread.y"
    sched.bind %ji "thread.x"
  }
}

// CHECK:      check-each-pass: tensorop-to-loops: loops level, not checked: too large for the budget of 1 interpreter steps
// CHECK-NEXT: check-each-pass: apply-schedule: loops level, not checked: too large for the budget of 1 interpreter steps
// CHECK-NEXT: check-each-pass: loops-to-gpu: gpu level, not checked: too large for the budget of 1 interpreter steps
// CHECK-NEXT: check-each-pass: emitted OpenCL text: text level, ok
// CHECK-NEXT: check-each-pass: not every stage was checked: too large for the interpreter's budget: tensorop-to-loops, apply-schedule, loops-to-gpu; checked: emitted OpenCL text (raise the budget with --check-budget, or check_each_pass(budget=...))
// CHECK-NOT:  broke equivalence
