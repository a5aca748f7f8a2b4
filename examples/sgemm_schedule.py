"""SGEMM C = A @ B with the classic GPU schedule the primitives can express: each block
computes a `tile` x `tile` block of C from `tile` x `k_chunk` and `k_chunk` x `tile` slices of
A and B staged in shared memory, and each of its (tile/reg)^2 threads accumulates a `reg` x `reg`
block of C in registers (cache_write local), with the inner loops unrolled.

    python examples/sgemm_schedule.py [N] [--target cuda|opencl]
"""

from __future__ import annotations

import argparse

import numpy as np

import sched_dsl as sd


def sgemm(m: int, n: int, k: int, tile: int = 128, reg: int = 8, k_chunk: int = 8):
    """(C, schedule) for an m x k by k x n product."""
    a, b = sd.placeholder("A", (m, k)), sd.placeholder("B", (k, n))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    i, j, kk = s.loops("i", "j", "k")
    io, ir = s.split(i, tile)
    jo, jr = s.split(j, tile)
    ty, ii = s.split(ir, reg)
    tx, ji = s.split(jr, reg)
    ko, ki = s.split(kk, k_chunk)
    s.reorder(io, jo, ty, tx, ko, ki, ii, ji)
    s.bind(io, "block.y")
    s.bind(jo, "block.x")
    s.bind(ty, "thread.y")
    s.bind(tx, "thread.x")
    s.cache_read(a, "shared", at=ko)
    s.cache_read(b, "shared", at=ko)
    s.cache_write("local", at=tx)
    s.unroll(ki)
    s.unroll(ii)
    s.unroll(ji)
    return c, s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("n", type=int, nargs="?", default=1024)
    p.add_argument("--target", default="cuda", choices=["cuda", "opencl"])
    args = p.parse_args()
    c, s = sgemm(args.n, args.n, args.n)
    kern = sd.build(c, s, target=args.target)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.n, args.n), dtype=np.float32)
    b = rng.standard_normal((args.n, args.n), dtype=np.float32)
    np.testing.assert_allclose(kern(a, b), a @ b, rtol=1e-3, atol=1e-2 * np.sqrt(args.n))
    ms = kern.runner.bench()
    print(f"SGEMM {args.n}^3 on {args.target}: {ms:.3f} ms, {2 * args.n ** 3 / ms / 1e9:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
