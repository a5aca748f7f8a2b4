"""SGEMM C = A @ B with the classic fast GPU schedule: each block computes a `tile` x `tile`
block of C from `tile` x `k_chunk` and `k_chunk` x `tile` slices of A and B in shared memory,
double-buffered (the next slices load into registers while this one is used), A's slice
stored transposed so both are read along rows; each of the block's (tile/reg)^2 threads
accumulates `reg` x `reg` outputs in registers (cache_write local), taken as 4x4 quads strided
by the thread count, so neighbouring threads read neighbouring shared words (no bank
conflicts) and each thread reads float4s. Shared copies use float4 where aligned.

    python examples/sgemm_schedule.py [N] [--target cuda|opencl]
"""

from __future__ import annotations

import argparse

import numpy as np

import sched_dsl as sd


def sgemm(m: int, n: int, k: int, tile: int = 128, reg: int = 8, k_chunk: int = 16, quad: int = 4):
    """(C, schedule) for an m x k by k x n product."""
    a, b = sd.placeholder("A", (m, k)), sd.placeholder("B", (k, n))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    i, j, kk = s.loops("i", "j", "k")
    io, ir = s.split(i, tile)
    jo, jr = s.split(j, tile)
    threads = tile // reg  # per dimension
    # i within the block = i2 * (threads * quad) + ty * quad + i4: thread ty's rows are quads
    # of `quad` rows, `threads * quad` apart (likewise for columns and tx)
    i2, ir2 = s.split(ir, threads * quad)
    ty, i4 = s.split(ir2, quad)
    j2, jr2 = s.split(jr, threads * quad)
    tx, j4 = s.split(jr2, quad)
    ko, ki = s.split(kk, k_chunk)
    s.reorder(io, jo, ty, tx, ko, ki, i2, j2, i4, j4)
    s.bind(io, "block.y")
    s.bind(jo, "block.x")
    s.bind(ty, "thread.y")
    s.bind(tx, "thread.x")
    s.cache_read(a, "shared", at=ko, layout=(1, 0), double_buffer=True)
    s.cache_read(b, "shared", at=ko, double_buffer=True)
    s.cache_write("local", at=tx)
    for loop in (ki, i2, j2, i4, j4):
        s.unroll(loop)
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
