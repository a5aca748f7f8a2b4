// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu --check-each-pass -o %t 2>&1 | filecheck %s

// After every pass the IR runs on random inputs and is compared with numpy's matmul: the
// loop IR and the gpu dialect in the interpreter (threads stepped barrier to barrier), the
// OpenCL text on the default device.
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
    %k = sched.loop "C" "k"
    %ko, %ki = sched.split %k by 4
    sched.reorder %io, %jo, %ii, %ji, %ko, %ki
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.bind %ii "thread.y"
    sched.bind %ji "thread.x"
    sched.cache_read "B" "shared" at %ko
  }
}

// CHECK:      check-each-pass: tensorop-to-loops: loops level, ok
// CHECK-NEXT: check-each-pass: apply-schedule: loops level, ok
// CHECK-NEXT: check-each-pass: loops-to-gpu: gpu level, ok
// CHECK-NEXT: check-each-pass: emitted OpenCL text: text level, ok
