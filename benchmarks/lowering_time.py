"""Median time to lower the matmul example of docs/api.md to OpenCL text (no device involved).

    python benchmarks/lowering_time.py [repeats]
"""

import os
import statistics
import sys
import time

import sched_dsl as sd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from gpu_cases import shared_tiled  # noqa: E402  (the schedule of docs/api.md)


def readme_matmul():
    return shared_tiled(sd.matmul(sd.placeholder("A", (256, 128)), sd.placeholder("B", (128, 192))))


def main(repeats: int) -> None:
    times = []
    for _ in range(repeats):
        C, s = readme_matmul()
        start = time.perf_counter()
        sd.lower(C, s, target="opencl")
        times.append((time.perf_counter() - start) * 1e3)
    print(f"lowering to OpenCL text: median {statistics.median(times):.1f} ms, "
          f"min {min(times):.1f} ms over {repeats} runs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
