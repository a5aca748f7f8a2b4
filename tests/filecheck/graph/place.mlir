// RUN: sched-opt %s -p 'tensorop-place{host="soft"}' | filecheck %s
// RUN: sched-opt %s -p 'tensorop-place{host="soft"},tensorop-fuse' | filecheck %s --check-prefix=FUSE
// RUN: not sched-opt %s -p 'tensorop-place{host="nosuch,soft"}' 2>&1 | filecheck %s --check-prefix=ERR

// Every op gets a place; host_call always runs on the host, "soft" because the option names
// it. Copies appear where a value crosses: arguments live on the device, so the host ops'
// operands are copied to the host once (before their first host consumer), the host result
// that a GPU op reads is copied to the device right after its producer, and the results are
// copied to the host before the return.
builtin.module {
  func.func @main(%x: tensor<2x8xf32>, %k: tensor<1xi64>) -> (tensor<2x8xf32>, tensor<2x3xi64>) {
    %a = tensorop.unary %x {name = "a", fn = "relu"} : (tensor<2x8xf32>) -> tensor<2x8xf32>
    %s = tensorop.softmax %a {name = "soft", axis = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32>
    %v, %i = tensorop.host_call %s, %k {name = "top", callee = "TopK", params = {axis = 1 : i64}} : (tensor<2x8xf32>, tensor<1xi64>) -> (tensor<2x3xf32>, tensor<2x3xi64>)
    %e = tensorop.unary %s {name = "e", fn = "exp"} : (tensor<2x8xf32>) -> tensor<2x8xf32>
    %n = tensorop.unary %e {name = "n", fn = "neg"} : (tensor<2x8xf32>) -> tensor<2x8xf32>
    func.return %n, %i : tensor<2x8xf32>, tensor<2x3xi64>
  }
}

// CHECK:      %a = tensorop.unary %x {place = "gpu", name = "a", fn = "relu"}
// CHECK-NEXT: %a_host = tensorop.copy %a {to = "host"}
// CHECK-NEXT: %s = tensorop.softmax %a_host {place = "host", name = "soft", axis = 1 : i64}
// CHECK-NEXT: %s_device = tensorop.copy %s {to = "device"}
// CHECK-NEXT: %k_host = tensorop.copy %k {to = "host"}
// CHECK-NEXT: %v, %i = tensorop.host_call %s, %k_host {place = "host", name = "top", callee = "TopK"
// CHECK-NEXT: %e = tensorop.unary %s_device {place = "gpu", name = "e", fn = "exp"}
// CHECK-NEXT: %n = tensorop.unary %e {place = "gpu", name = "n", fn = "neg"}
// CHECK-NEXT: %n_host = tensorop.copy %n {to = "host"}
// CHECK-NEXT: func.return %n_host, %i

// The GPU ops after the host ops still fuse (a copy to the device does not split them);
// relu before the host op has no elementwise consumer on the GPU.
// FUSE:      tensorop.unary %x {place = "gpu", name = "a"
// FUSE:      tensorop.unary %s_device {place = "gpu", group = "e", name = "e"
// FUSE-NEXT: tensorop.unary %e {place = "gpu", group = "e", name = "n"

// ERR: no operator named nosuch
