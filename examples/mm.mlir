// A 64x32 by 32x48 matmul and its schedule: 16x16 threads per block, the block's rows of A
// and columns of B copied to shared memory 8 columns (rows) at a time. The knob "ti" (rows
// per block) is 16 unless a config picks 8 or 4:
//   sched-opt examples/mm.mlir -p 'tensorop-to-loops,apply-schedule{config="ti=8"},loops-to-gpu' -t opencl
builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %ti = sched.knob "ti" [16, 8, 4]
    %i = sched.loop "C" "i"
    %io, %ii = sched.split %i by %ti
    %j = sched.loop "C" "j"
    %jo, %ji = sched.split %j by 16
    %k = sched.loop "C" "k"
    %ko, %ki = sched.split %k by 8
    sched.reorder %io, %jo, %ko, %ii, %ji, %ki
    sched.bind %io "block.y"
    sched.bind %jo "block.x"
    sched.bind %ii "thread.y"
    sched.bind %ji "thread.x"
    sched.cache_read "A" "shared" at %ko
    sched.cache_read "B" "shared" at %ko
    sched.unroll %ki
  }
}
