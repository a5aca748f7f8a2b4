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
from sched_dsl.graph.model_schedules import sgemm_tiles


def sgemm(m: int, n: int, k: int, tile: int = 128, reg: int = 8, k_chunk: int = 16):
    """(C, schedule) for an m x k by k x n product: `tile` x `tile` block tiles, `reg` x `reg`
    outputs per thread as strided 4x4 quads, `k_chunk`-deep shared slices. The schedule itself
    is sched_dsl.graph.model_schedules.sgemm_tiles (also what whole models and the tuner use)."""
    a, b = sd.placeholder("A", (m, k)), sd.placeholder("B", (k, n))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    span = tile // reg * 4  # rows (columns) a block's threads cover with one quad each
    sgemm_tiles(s, c, a, b, tile, tile, span, span, k_chunk)
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
