"""Median time to lower the README's matmul example to OpenCL text (no device involved).

    python benchmarks/lowering_time.py [repeats]
"""

import statistics
import sys
import time

import sched_dsl as sd


def readme_matmul():
    A = sd.placeholder("A", (256, 128), "f32")
    B = sd.placeholder("B", (128, 192), "f32")
    C = sd.matmul(A, B)
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 16)
    jo, ji = s.split(j, 16)
    ko, ki = s.split(k, 8)
    s.reorder(io, jo, ko, ii, ji, ki)
    s.bind(io, "block.y"); s.bind(jo, "block.x")
    s.bind(ii, "thread.y"); s.bind(ji, "thread.x")
    s.cache_read(A, "shared", at=ko)
    s.cache_read(B, "shared", at=ko)
    s.unroll(ki)
    return C, s


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
