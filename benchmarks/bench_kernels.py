"""Times generated kernels against cuBLAS/cuDNN (through torch) on one CUDA GPU, in one run:
SGEMM cubes, ResNet-18's batch-1 3x3 convolutions and MobileNetV2's depthwise 3x3 layers,
each with the schedules of examples/, on the CUDA target (pycuda) and, where an NVIDIA
OpenCL platform is registered, on the OpenCL target from the same schedule.

fp32 throughout: TF32 is off for cuBLAS and cuDNN. Ratios are speeds: baseline time / our
time (1.0 = as fast as cuBLAS/cuDNN), and CUDA time / OpenCL time for the same schedule. cuDNN is timed with
`torch.backends.cudnn.benchmark` off and on. Times are means over back-to-back calls after
warm-ups, between CUDA events (OpenCL: the sum of the kernels' profiling times).

    python benchmarks/bench_kernels.py --json results.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

import sched_dsl as sd  # noqa: E402
from resnet_conv_schedule import RESNET18_3X3, conv3x3, depthwise3x3  # noqa: E402
from sgemm_schedule import sgemm  # noqa: E402

MOBILENET_DW = [(32, 112, 1), (144, 56, 2), (384, 14, 1), (960, 7, 1)]


def torch_time(fn, repeat: int, warmup: int) -> float:
    import torch
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeat


def close(got: np.ndarray, want: np.ndarray) -> float:
    """Largest error relative to the reference's largest magnitude."""
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


class Bench:
    def __init__(self, repeat: int, warmup: int, opencl: bool):
        import torch
        self.torch = torch
        self.repeat, self.warmup = repeat, warmup
        self.opencl = opencl
        self.rows: list[dict] = []

    def ours(self, workload: str, variant: str, out, schedule, values: dict, want: np.ndarray, flops: float,
             baseline_ms: float):
        for target in ("cuda", "opencl") if self.opencl else ("cuda",):
            try:
                kern = sd.build(out, schedule, target=target)
                got = kern(**{n: values[n] for n in kern.input_names})
                err = close(got, want)
                ms = kern.runner.bench(self.repeat, self.warmup)
            except Exception as e:  # a schedule the device rejects is a result, not a crash
                msg = " | ".join(line for line in str(e).splitlines() if line.strip())[:600]
                self.rows.append(dict(workload=workload, impl=f"{target}:{variant}", error=msg))
                print(f"  {target}:{variant}: {type(e).__name__}: {msg}", flush=True)
                continue
            self.add(workload, f"{target}:{variant}", ms, flops, baseline_ms, err)

    def add(self, workload, impl, ms, flops, baseline_ms, err=None):
        row = dict(workload=workload, impl=impl, ms=ms, tflops=flops / ms / 1e9 if flops else None,
                   speed_vs_baseline=baseline_ms / ms, max_rel_err=err)
        self.rows.append(row)
        rate = f"{row['tflops']:7.2f} TFLOP/s" if flops else " " * 15
        print(f"  {impl:<28} {ms * 1e3:10.1f} us  {rate}  {row['speed_vs_baseline']:6.2f}x the baseline's speed"
              + (f"  err {err:.1e}" if err is not None else ""), flush=True)

    def sgemm(self, n: int):
        torch = self.torch
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        want = (ta @ tb).cpu().numpy()
        flops = 2.0 * n ** 3
        workload = f"SGEMM {n}^3"
        print(workload, flush=True)
        base = torch_time(lambda: ta @ tb, self.repeat, self.warmup)
        self.add(workload, "cuBLAS", base, flops, base)
        for tile, reg, k_chunk in ((128, 8, 16), (128, 8, 8), (64, 4, 16)):
            c, s = sgemm(n, n, n, tile=tile, reg=reg, k_chunk=k_chunk)
            self.ours(workload, f"tile{tile}/reg{reg}/k{k_chunk}", c, s, {"A": a, "B": b}, want, flops, base)

    def _cudnn(self, workload, tx, tw, stride, groups, flops):
        torch = self.torch
        conv = lambda: torch.nn.functional.conv2d(tx, tw, stride=stride, padding=1, groups=groups)  # noqa: E731
        times = {}
        for bench_mode in (False, True):
            torch.backends.cudnn.benchmark = bench_mode
            times[bench_mode] = torch_time(conv, self.repeat, self.warmup)
        torch.backends.cudnn.benchmark = False
        base = min(times.values())
        self.add(workload, "cuDNN benchmark=off", times[False], flops, base)
        self.add(workload, "cuDNN benchmark=on", times[True], flops, base)
        return conv().cpu().numpy(), base

    def conv(self, c: int, size: int, cfg: dict):
        torch = self.torch
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, c, size, size), dtype=np.float32)
        w = rng.standard_normal((c, c, 3, 3), dtype=np.float32)
        workload = f"conv {c}x{size}x{size}, {c} 3x3 s1 p1"
        print(workload, flush=True)
        flops = 2.0 * c * size * size * c * 9
        want, base = self._cudnn(workload, torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda(), 1, 1, flops)
        for staged in (True, False):
            y, s = conv3x3(c, size, size, c, **cfg, staged=staged)
            self.ours(workload, "tiled-staged" if staged else "tiled", y, s, {"X": x, "W": w}, want, flops, base)

    def depthwise(self, c: int, size: int, stride: int):
        torch = self.torch
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, c, size, size), dtype=np.float32)
        w = rng.standard_normal((c, 1, 3, 3), dtype=np.float32)
        workload = f"depthwise 3x3 {c}x{size}x{size} s{stride}"
        print(workload, flush=True)
        out = (size + 2 - 3) // stride + 1
        flops = 2.0 * c * out * out * 9
        want, base = self._cudnn(workload, torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda(), stride, c, flops)
        y, s = depthwise3x3(c, size, size, stride)
        self.ours(workload, "flat128", y, s, {"X": x, "W": w}, want, flops, base)
        wt = sd.placeholder("W", (c, 1, 3, 3))
        y = sd.conv2d(sd.placeholder("X", (1, c, size, size)), wt, stride=stride, padding=1, groups=c, name="Y")
        self.ours(workload, "default", y, None, {"X": x, "W": w}, want, flops, base)


def nvidia_opencl() -> bool:
    try:
        import pyopencl as cl
        found = any("nvidia" in p.name.lower() for p in cl.get_platforms())
    except Exception:
        return False
    if found:
        os.environ.setdefault("SCHED_DSL_OPENCL_DEVICE", "NVIDIA")
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default="bench_kernels.json", help="where to write the results")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="SGEMM 1024 and the first conv of each kind only")
    args = p.parse_args()

    import torch
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    opencl = nvidia_opencl()
    b = Bench(args.repeat, args.warmup, opencl)
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}; "
          f"OpenCL target: {'NVIDIA' if opencl else 'not available'}", flush=True)
    for n in (1024,) if args.quick else (1024, 2048, 4096):
        b.sgemm(n)
    for (c, size), cfg in list(RESNET18_3X3.items())[:1 if args.quick else None]:
        b.conv(c, size, cfg)
    for c, size, stride in MOBILENET_DW[:1 if args.quick else None]:
        b.depthwise(c, size, stride)

    print("\nsummary (best of ours per workload and target; speed = baseline time / our time; "
          "OpenCL/CUDA = CUDA time / OpenCL time of the same schedule):")
    by_work: dict[str, list[dict]] = {}
    for r in b.rows:
        by_work.setdefault(r["workload"], []).append(r)
    summary = []
    for work, rows in by_work.items():
        ok = [r for r in rows if "ms" in r]
        base = min(r["ms"] for r in ok if not r["impl"].startswith(("cuda:", "opencl:")))
        line = {"workload": work, "baseline_ms": base}
        for target in ("cuda", "opencl"):
            mine = [r for r in ok if r["impl"].startswith(target + ":")]
            if mine:
                best = min(mine, key=lambda r: r["ms"])
                line[target] = {"impl": best["impl"], "ms": best["ms"], "speed": base / best["ms"]}
        if "cuda" in line:
            variant = line["cuda"]["impl"].split(":", 1)[1]
            same = [r for r in ok if r["impl"] == f"opencl:{variant}"]
            if same:
                line["opencl_vs_cuda"] = line["cuda"]["ms"] / same[0]["ms"]
        summary.append(line)
        cells = "  ".join(f"{t} {line[t]['ms'] * 1e3:9.1f} us ({line[t]['speed']:.2f}x)" for t in ("cuda", "opencl")
                          if t in line)
        if "opencl_vs_cuda" in line:
            cells += f"  OpenCL/CUDA {line['opencl_vs_cuda']:.2f}"
        print(f"  {work:<36} baseline {base * 1e3:9.1f} us  {cells}")
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": b.rows,
                   "summary": summary}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
