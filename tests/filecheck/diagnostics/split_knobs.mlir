// RUN: sched-opt %s --split-input-file --verify-diagnostics | filecheck %s
// RUN: not sched-opt %s --split-input-file 2>&1 | filecheck %s --check-prefix=FIRST

// Split-factor knobs whose candidates do not derive from their extent, or a bad kind or extent.
// FIRST: {{.*}}split_knobs.mlir:{{[0-9]+}}:{{[0-9]+}}: error: sched.knob 't': [12] are not powers of two up to 64
// FIRST-NOT: Traceback
builtin.module {
  sched.schedule {
    %t = sched.knob "t" [4, 8, 12] pow2 of 64 // CHECK: {{.*}}split_knobs.mlir:[[# @LINE]]:5: error: sched.knob 't': [12] are not powers of two up to 64
  }
}
// -----
// CHECK-NEXT: // {{-+}}
builtin.module {
  sched.schedule {
    %t = sched.knob "t" [5, 8] divisors of 48 // CHECK-NEXT: {{.*}}split_knobs.mlir:[[# @LINE]]:5: error: sched.knob 't': [5] are not divisors of 48
  }
}
// -----
// CHECK-NEXT: // {{-+}}
builtin.module {
  sched.schedule {
    %t = sched.knob "t" [1] primes of 48 // CHECK-NEXT: {{.*}}split_knobs.mlir:[[# @LINE]]:5: error: sched.knob 't': kind 'primes' is not one of divisors, pow2
  }
}
// -----
// CHECK-NEXT: // {{-+}}
builtin.module {
  sched.schedule {
    %t = sched.knob "t" [1] divisors of 0 // CHECK-NEXT: {{.*}}split_knobs.mlir:[[# @LINE]]:5: error: sched.knob 't': extent must be >= 1, got 0
  }
}
// -----
// CHECK-NEXT: // {{-+}}
builtin.module {
  sched.schedule {
    %t = sched.knob "t" [2, 2] // CHECK-NEXT: {{.*}}split_knobs.mlir:[[# @LINE]]:5: error: sched.knob 't': a candidate is listed twice in [2, 2]
  }
}
