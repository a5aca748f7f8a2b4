// RUN: sched-opt %s | filecheck %s --check-prefix=ROUNDTRIP
// RUN: sched-opt %s -p 'tensorop-to-loops,apply-schedule{config="t=16"}' | filecheck %s --check-prefix=SIXTEEN

// Split-factor knobs keep the extent their candidates derive from, through a print/parse round trip.
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %t = sched.knob "t" [4, 8, 16, 32] pow2 of 64
    %u = sched.knob "u" [2, 3, 6, 12] divisors of 48
    %i = sched.loop "C" "i"
    %j = sched.loop "C" "j"
    %io, %ii = sched.split %i by %t
    %jo, %ji = sched.split %j by %u
    sched.bind %io "block.x"
    sched.bind %ii "thread.x"
  }
}

// ROUNDTRIP: %t = sched.knob "t" [4, 8, 16, 32] pow2 of 64
// ROUNDTRIP: %u = sched.knob "u" [2, 3, 6, 12] divisors of 48

// SIXTEEN:      %[[IO:.*]] = arith.constant 4 : index
// SIXTEEN:      scf.for %io = %{{.*}} to %[[IO]] step
// SIXTEEN:        %[[II:.*]] = arith.constant 16 : index
// SIXTEEN-NEXT:   scf.for %ii = %{{.*}} to %[[II]] step
