"""Tunable versions of the schedules in sgemm_schedule.py and resnet_conv_schedule.py: their
tile sizes are knobs, for `sd.tune` and `sched-tune`; and a plain tiled matmul (matmul_space),
quick to tune even on a CPU.

    sched-tune run examples/tune_spaces.py:sgemm_space --arg m=256 --arg n=256 --arg k=256 \\
        --trials 32 --records sgemm.jsonl --plot sgemm.png
    python examples/tune_spaces.py [N] [--target opencl|cuda] [--trials T] [--records F]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import sched_dsl as sd
from sched_dsl.graph.model_schedules import conv_tiles, sgemm_tiles


def matmul_space(m: int, n: int, k: int):
    """(C, schedule) for an m x k by k x n product, one output per thread: knobs ti x tj, the
    block's tile (powers of two of m, divisors of n, at most 16); small and quick to build."""
    a, b = sd.placeholder("A", (m, k)), sd.placeholder("B", (k, n))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    i, j, kk = s.loops("i", "j", "k")
    ti = s.split_knob("ti", m, "pow2", lo=min(m, 4), hi=16)
    tj = s.split_knob("tj", n, "divisors", hi=16)
    io, ii = s.split(i, ti)
    jo, ji = s.split(j, tj)
    s.reorder(io, jo, ii, ji, kk)
    s.bind(io, "block.y"); s.bind(jo, "block.x"); s.bind(ii, "thread.y"); s.bind(ji, "thread.x")
    return c, s


def sgemm_space(m: int, n: int, k: int, small: bool = False):
    """(C, schedule) for an m x k by k x n product with the schedule of sgemm_schedule.py
    (double-buffered shared tiles, A's transposed, register tiles as strided 4x4 quads);
    knobs: the block tile (ti x tj, powers of two), the rows and columns a block's threads
    span with one quad each (si x sj: si / 4 threads along i, ti / si quads per thread) and
    the k chunk staged in shared memory (kc). `small` keeps tiles and chunks small (for CPU
    tests)."""
    a, b = sd.placeholder("A", (m, k)), sd.placeholder("B", (k, n))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    hi = 32 if small else 128
    ti = s.split_knob("ti", m, "pow2", lo=min(m, 8 if small else 16), hi=hi)
    tj = s.split_knob("tj", n, "pow2", lo=min(n, 8 if small else 16), hi=hi)
    si = s.knob("si", [8, 16] if small else [16, 32, 64])
    sj = s.knob("sj", [8, 16] if small else [16, 32, 64])
    kc = s.split_knob("kc", k, "pow2", lo=min(k, 4), hi=8 if small else 32)
    sgemm_tiles(s, c, a, b, ti, tj, si, sj, kc)
    return c, s


def conv3x3_space(c: int, size: int, f: int):
    """(Y, schedule) for a batch-1 3x3 convolution, stride 1, padding 1, with the schedule of
    resnet_conv_schedule.py; knobs: filters per block (fb) and per thread (fr), output rows (yb)
    and columns (xb) per block, columns per thread (xr), input channels per shared chunk (rc)."""
    x = sd.placeholder("X", (1, c, size, size))
    wt = sd.placeholder("W", (f, c, 3, 3))
    y = sd.conv2d(x, wt, stride=1, padding=1, name="Y")
    s = sd.Schedule(y)
    fb = s.split_knob("fb", f, "divisors", lo=min(f, 4), hi=64)
    fr = s.knob("fr", [1, 2, 4])
    yb = s.split_knob("yb", size, "divisors", hi=14)
    xb = s.split_knob("xb", size, "divisors", lo=min(size, 4), hi=28)
    xr = s.knob("xr", [1, 2])
    rcc = s.split_knob("rc", c, "divisors", lo=min(c, 4), hi=32)
    conv_tiles(s, y, x, wt, fb, fr, yb, xb, xr, rcc)
    return y, s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("n", type=int, nargs="?", default=64)
    p.add_argument("--target", default="opencl", choices=["cuda", "opencl"])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--records", help="records file to append to (default: a temporary one)")
    args = p.parse_args()
    if args.records is None:
        args.records = os.path.join(tempfile.mkdtemp(prefix="sched_tune_"), "sgemm.jsonl")
    c, s = sgemm_space(args.n, args.n, args.n, small=args.target == "opencl")
    result = sd.tune(c, s, target=args.target, trials=args.trials, records=args.records, batch=4)
    print(f"records: {args.records}")
    print(f"best {result.best_config}: {result.best_ms:.4f} ms after {result.trials} trials "
          f"({result.invalid} invalid configs skipped, errors {dict(result.errors)})")
    kern = sd.build(c, s, target=args.target, records=args.records)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.n, args.n), dtype=np.float32)
    b = rng.standard_normal((args.n, args.n), dtype=np.float32)
    np.testing.assert_allclose(kern(a, b), a @ b, rtol=1e-3, atol=1e-2 * np.sqrt(args.n))


if __name__ == "__main__":
    main()
