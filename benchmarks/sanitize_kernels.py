"""Builds and runs a representative set of generated kernels once each on the CUDA target and
checks them against the numpy reference; meant to run under compute-sanitizer:

    compute-sanitizer --tool memcheck python benchmarks/sanitize_kernels.py
    compute-sanitizer --tool racecheck python benchmarks/sanitize_kernels.py --quick
    compute-sanitizer --tool racecheck python benchmarks/sanitize_kernels.py --cases tensor_core_bf16
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "tests"), os.path.join(HERE, "..", "examples")]

from gpu_cases import CASES, SANITIZE, check  # noqa: E402
from resnet_conv_schedule import conv3x3, depthwise3x3  # noqa: E402
from sgemm_schedule import sgemm  # noqa: E402


def kernels(quick: bool, only: list[str] | None = None):
    by_id = {c.id: c for c in CASES}
    if only:
        for cid in only:
            yield cid, by_id[cid].make()
        return
    for cid in SANITIZE:
        yield cid, by_id[cid].make()
    yield "sgemm_130x200x77_tile64", sgemm(130, 200, 77, tile=64, reg=4)
    yield "sgemm_259x300x65_tile128", sgemm(259, 300, 65)
    yield "conv3x3_24x15x15_f40", conv3x3(24, 15, 15, 40)
    if not quick:
        yield "conv3x3_64x56x56", conv3x3(64, 56, 56, 64)
        yield "depthwise_144x56x56_s2", depthwise3x3(144, 56, 56, 2)
    yield "depthwise_13x9x9", depthwise3x3(13, 9, 9, 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="only the small kernels")
    p.add_argument("--target", default="cuda")
    p.add_argument("--cases", help="comma-separated gpu_cases ids to run instead (e.g. tensor_core_bf16)")
    args = p.parse_args()
    n = 0
    for name, (out, schedule) in kernels(args.quick, args.cases.split(",") if args.cases else None):
        check(out, schedule, args.target, rtol=None if args.cases else 1e-3, atol=None if args.cases else 1e-3)
        n += 1
        print(f"ran {name}", flush=True)
    print(f"{n} kernels ran and matched the reference")


if __name__ == "__main__":
    main()
