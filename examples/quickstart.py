"""The quick start (`scripts/dev.sh demo`): a matmul and a conv2d, each with a schedule for a
GPU, lowered to OpenCL C, run on the default OpenCL device and checked against numpy. It
prints a few lines of each schedule and kernel and says what they are; `--full` prints the
whole IR and kernel text instead."""

import sys

import numpy as np

import sched_dsl as sd
from sched_dsl.runtime.opencl import default_device

FULL = "--full" in sys.argv[1:]


def show(title: str, text: str, keep) -> None:
    """Prints the lines of `text` that `keep` picks (all of them with --full), indented, with
    `...` where lines are left out."""
    lines = text.rstrip("\n").splitlines()
    picked = [i for i, line in enumerate(lines) if FULL or keep(line)]
    print(f"{title} ({len(picked)} of {len(lines)} lines):")
    for n, i in enumerate(picked):
        if i > (picked[n - 1] + 1 if n else 0):
            print("    ...")
        print("    " + lines[i])
    if picked and picked[-1] < len(lines) - 1:
        print("    ...")


def show_launches(kern: sd.Kernel) -> None:
    for launch in kern.lowered.launches:
        print(f"Launch {launch.kernel}: a grid of {'x'.join(map(str, launch.grid))} blocks, "
              f"{'x'.join(map(str, launch.block))} threads each, on buffers {', '.join(launch.args)}")


def matmul_example() -> None:
    A = sd.placeholder("A", (256, 128))
    B = sd.placeholder("B", (128, 192))
    C = sd.matmul(A, B, name="C")  # loops i, j and the reduction k

    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    t = s.knob("tile", [16, 8])  # a tunable split factor; 16 unless a config says otherwise
    io, ii = s.split(i, t)
    jo, ji = s.split(j, 16)
    ko, ki = s.split(k, 8)
    s.reorder(io, jo, ko, ii, ji, ki)
    s.bind(io, "block.y"); s.bind(jo, "block.x")
    s.bind(ii, "thread.y"); s.bind(ji, "thread.x")
    s.cache_read(A, "shared", at=ko)
    s.cache_read(B, "shared", at=ko)
    s.unroll(ki)

    print("== matmul C = A @ B, A 256x128, B 128x192\n")
    ir = s.ir()
    show("The schedule, as sched IR (s.ir() prints it after the operator)",
         ir[ir.index("sched.schedule"):ir.rindex("}")], lambda line: True)
    print("""  Each op is one schedule primitive: i is split by the knob "tile", j by 16, k by 8;
  the outer parts of i and j become the grid's blocks, the inner parts a block's threads;
  every 8 steps of k, the block copies the rows of A and columns of B it needs into shared
  memory. The operator itself says nothing about any of this.
""")
    kern = sd.build(C, s, target="opencl", config={"tile": 8})
    show_launches(kern)
    landmarks = ("__kernel", "__local", "*(__local", "barrier", "for (int v_ko", "#pragma unroll", "for (int v_ki", "v_C[")
    show("The OpenCL C it lowers to, with tile=8 (kern.source holds all of it)", kern.source,
         lambda line: line.strip().startswith(landmarks) or "get_" in line)
    print("""  The bound loops are gone: each thread finds its place from get_group_id/get_local_id.
  For each step of ko, the block's threads copy their tiles of A and B into the __local
  (shared) arrays, wait at a barrier, then run the unrolled ki loop on the copies.
""")
    a = np.random.rand(256, 128).astype(np.float32)
    b = np.random.rand(128, 192).astype(np.float32)
    c = kern(a, b)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4)
    print(f"Ran on {default_device().name.strip()}: matches numpy (max |error| {np.abs(c - a @ b).max():.1e})\n")


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
    s.cache_read(X, "shared", at=rco)  # the input tile the block needs for 4 channels
    s.cache_read(W, "shared", at=rco)
    s.cache_write("local", at=xi)      # each thread accumulates its output in a register
    s.unroll(ry); s.unroll(rx)

    kern = sd.build(Y, s, target="opencl")
    x = np.random.rand(1, 16, 14, 14).astype(np.float32)
    w = np.random.rand(32, 16, 3, 3).astype(np.float32)
    np.testing.assert_allclose(kern(x, w), sd.evaluate(Y, {"X": x, "W": w}), rtol=1e-4)
    print("== conv2d Y = conv(X, W), X 1x16x14x14, W 32x16x3x3, padding 1\n")
    show_launches(kern)
    show("Its buffers", kern.source, lambda line: "__local float" in line or "float v_Y_local" in line)
    print("""  A block computes 4 channels x 7x7 pixels, one output per thread, kept in a register
  (v_Y_local) until the end; the input patch and the weights of 4 input channels at a time
  are copied to shared memory. It matches sd.evaluate, the operator's numpy meaning.
""")


if __name__ == "__main__":
    matmul_example()
    conv2d_example()
    print("""Next: the tour in README.md; a smaller matmul as IR text in examples/mm.mlir:
    sched-opt examples/mm.mlir -p tensorop-to-loops,apply-schedule,loops-to-gpu -t opencl
(with the virtual environment active: source .venv/bin/activate). `--full` prints everything.""")
