// RUN: sched-opt %s -p tensorop-to-loops,apply-schedule,loops-to-gpu | filecheck %s

builtin.module {
  func.func @main(%A: tensor<10x20xf32>, %B: tensor<20x30xf32>) -> tensor<10x30xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<10x20xf32>, tensor<20x30xf32>) -> tensor<10x30xf32>
    %R = tensorop.unary %C {name = "R", fn = "relu"} : (tensor<10x30xf32>) -> tensor<10x30xf32>
    func.return %R : tensor<10x30xf32>
  }
}

// One kernel per stage, launched in the order the stages run, each with only the buffers
// it uses; both get 5 blocks of 64 threads from the default schedule.
// CHECK:      func.func @main(%A: memref<10x20xf32>, %B: memref<20x30xf32>, %R: memref<10x30xf32>)
// CHECK-NEXT:   %C = memref.alloc() : memref<10x30xf32>
// CHECK-NEXT:   %[[G1:.*]] = arith.constant 5 : index
// CHECK:        %[[B1:.*]] = arith.constant 64 : index
// CHECK:        "gpu.launch_func"(%[[G1]], %{{.*}}, %{{.*}}, %[[B1]], %{{.*}}, %{{.*}}, %A, %B, %C) <{kernel = @kernels::@main_C
// CHECK-NEXT:   %[[G2:.*]] = arith.constant 5 : index
// CHECK:        %[[B2:.*]] = arith.constant 64 : index
// CHECK:        "gpu.launch_func"(%[[G2]], %{{.*}}, %{{.*}}, %[[B2]], %{{.*}}, %{{.*}}, %R, %C) <{kernel = @kernels::@main_R
// CHECK-NEXT:   func.return

// CHECK:      "gpu.func"() <{function_type = (memref<10x20xf32>, memref<20x30xf32>, memref<10x30xf32>) -> (), kernel}>
// CHECK-NEXT: ^bb0(%A: memref<10x20xf32>, %B: memref<20x30xf32>, %C: memref<10x30xf32>):
// CHECK-NEXT:   %i_j.i = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NEXT:   %i_j.o = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NOT:    gpu.barrier
// CHECK:        scf.for %k =
// CHECK:      }) {sym_name = "main_C", sched.stage = "C"} : () -> ()
// CHECK-NEXT: "gpu.func"() <{function_type = (memref<10x30xf32>, memref<10x30xf32>) -> (), kernel}>
// CHECK-NEXT: ^bb0(%R: memref<10x30xf32>, %C: memref<10x30xf32>):
// CHECK-NEXT:   %d0_d1.i = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NEXT:   %d0_d1.o = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NOT:    scf.for
// CHECK:      }) {sym_name = "main_R", sched.stage = "R"} : () -> ()
