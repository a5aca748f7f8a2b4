"""Measures every config of the tuner's evaluation spaces (benchmarks/tune_eval.py) on a device.

Each workload's configs are measured in a random order (the random strategy of `sd.tune`
with as many trials as the space has points) into OUT_DIR/<workload>.jsonl, so that
`tune_eval.py --replay OUT_DIR` can compare search strategies over many seeds against the
true best config of each space. A run cut short by `--budget-s` (or a kill) goes on where it
stopped when run again: recorded configs are not measured twice.

    python benchmarks/measure_space.py --out-dir space_records --budget-s 500
    python benchmarks/measure_space.py --target opencl --small --out-dir /tmp/space   # on PoCL
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

import sched_dsl as sd  # noqa: E402
from sched_dsl.tuner.measure import Measurer  # noqa: E402
from sched_dsl.tuner.space import Space  # noqa: E402
from tune_eval import SMALL, WORKLOADS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="cuda", choices=["cuda", "opencl"])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--workloads", default="sgemm4096,conv64x56,conv128x28,conv256x14",
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--small", action="store_true", help="small shapes (for CPU OpenCL)")
    p.add_argument("--budget-s", type=float, default=None, help="start no batch after this many seconds in all")
    p.add_argument("--batch", type=int, default=64, help="configs built in parallel at a time")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--min-repeat-ms", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args()
    table = SMALL if args.small else WORKLOADS
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in table]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; choose from {', '.join(table)}")
    if args.budget_s is not None and args.budget_s <= 0:
        p.error("--budget-s must be > 0")
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.time()
    for name in names:
        fn, fargs, _ = table[name]
        out, schedule = fn(**fargs)
        size = len(Space.of(schedule))
        left = None if args.budget_s is None else args.budget_s - (time.time() - t0)
        if left is not None and left <= 0:
            print(f"{name}: not started (--budget-s used up)", flush=True)
            continue
        path = os.path.join(args.out_dir, f"{name}.jsonl")
        with Measurer(out, schedule, args.target, timeout=args.timeout, repeat=args.repeat,
                      min_repeat_ms=args.min_repeat_ms, workers=args.workers) as measurer:
            res = sd.tune(out, schedule, args.target, trials=size, records=path, strategy="random",
                          batch=args.batch, measurer=measurer, budget_s=left)
        done = res.trials + res.invalid
        print(f"{name}: {done} of {size} configs recorded ({res.invalid} invalid, errors "
              f"{ {k: v for k, v in res.errors.items() if k != 'invalid'} }), best {res.best_ms} ms "
              f"{res.best_config}{'; out of time' if res.out_of_time else ''}; {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
