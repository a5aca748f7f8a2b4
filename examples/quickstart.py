"""A scheduled conv2d and matmul: built, printed and run on the default OpenCL device,
checked against numpy."""

import numpy as np

import sched_dsl as sd


def conv2d_example() -> None:
    X = sd.placeholder("X", (1, 16, 14, 14))
    W = sd.placeholder("W", (32, 16, 3, 3))
    Y = sd.conv2d(X, W, stride=1, padding=1, name="Y")  # loops n f y x, reductions rc ry rx

    s = sd.Schedule(Y)
    n, f, y, x, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx")
    fo, fi = s.split(f, 4)
    yo, yi = s.split(y, 7)
    xo, xi = s.split(x, 7)
    rco, rci = s.split(rc, 4)
    s.reorder(fo, yo, xo, fi, yi, xi, rco, rci, ry, rx)
    s.bind(fo, "block.z"); s.bind(yo, "block.y"); s.bind(xo, "block.x")
    s.bind(fi, "thread.z"); s.bind(yi, "thread.y"); s.bind(xi, "thread.x")
    s.cache_read(X, "shared", at=rco)   # the input tile the block needs for 4 channels
    s.cache_read(W, "shared", at=rco)
    s.cache_write("local", at=xi)       # each thread accumulates its output in a register
    s.unroll(ry); s.unroll(rx)

    kern = sd.build(Y, s, target="opencl")
    print(kern.source)
    x = np.random.rand(1, 16, 14, 14).astype(np.float32)
    w = np.random.rand(32, 16, 3, 3).astype(np.float32)
    np.testing.assert_allclose(kern(x, w), sd.evaluate(Y, {"X": x, "W": w}), rtol=1e-4)
    print("conv2d matches numpy")


def matmul_example() -> None:
    A = sd.placeholder("A", (256, 128))
    B = sd.placeholder("B", (128, 192))
    C = sd.matmul(A, B, name="C")

    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    t = s.knob("tile", [16, 8])          # a tunable split factor; 16 unless a config says otherwise
    io, ii = s.split(i, t)
    jo, ji = s.split(j, 16)
    ko, ki = s.split(k, 8)
    s.reorder(io, jo, ii, ji, ko, ki)
    s.bind(io, "block.y"); s.bind(jo, "block.x")
    s.bind(ii, "thread.y"); s.bind(ji, "thread.x")
    s.cache_read(A, "shared", at=ko)
    s.cache_read(B, "shared", at=ko)
    s.cache_write("local", at=ji)
    s.unroll(ki)

    kern = sd.build(C, s, target="opencl", config={"tile": 8})
    print(kern.source)
    a = np.random.rand(256, 128).astype(np.float32)
    b = np.random.rand(128, 192).astype(np.float32)
    np.testing.assert_allclose(kern(a, b), a @ b, rtol=1e-4)
    print("matmul matches numpy")


if __name__ == "__main__":
    conv2d_example()
    matmul_example()
