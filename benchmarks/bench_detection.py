"""Times the detection operators (cumsum, argsort, topk, nms) at SSD-like sizes on one GPU,
with their default schedules, against PyTorch on the same GPU in the same run
(torch.cumsum, torch.sort(stable=True), torch.topk, torchvision.ops.nms when installed).

Each result is first checked against the numpy reference (`sd.evaluate`): index outputs
must be equal, cumsum within 1e-4 of the largest magnitude. Our time is the mean over
back-to-back runs of all of a plan's kernels (CUDA events; OpenCL: profiling times);
PyTorch's is the mean between CUDA events, inputs already on the GPU.

    python benchmarks/bench_detection.py --json detection.json            # CUDA (pycuda)
    python benchmarks/bench_detection.py --target opencl --quick          # any OpenCL device
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import sched_dsl as sd  # noqa: E402
from bench_kernels import torch_time  # noqa: E402


def boxes_and_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random boxes [y1, x1, y2, x2] in a 300x300 image, sides 10..100, and scores in [0, 1)."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 250, (n, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(10, 100, (n, 2))], axis=1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32)


def workloads(quick: bool):
    """(name, output tensor, input values, torch function of the torch inputs or None)."""
    rng = np.random.default_rng(1)
    anchors = 1000 if quick else 8732  # SSD300's anchor count
    x = rng.standard_normal((8, anchors)).astype(np.float32)
    X = sd.placeholder("X", x.shape)
    yield f"cumsum 8x{anchors}", sd.cumsum(X, 1), {"X": x}, lambda t: t["X"].cumsum(1)
    yield (f"argsort 8x{anchors}", sd.argsort(X, 1), {"X": x},
           lambda t: t["X"].sort(dim=1, descending=True, stable=True).indices)
    scores = rng.random((20 if quick else 80, anchors)).astype(np.float32)
    S = sd.placeholder("X", scores.shape)
    values, indices = sd.topk(S, 200, axis=1)
    yield f"topk k=200 {scores.shape[0]}x{anchors}", indices, {"X": scores}, lambda t: t["X"].topk(200, dim=1).indices
    for n in (200, 1000) if quick else (200, 1000, 4000):
        b, s = boxes_and_scores(n)
        out = sd.nms(sd.placeholder("boxes", b.shape), sd.placeholder("scores", s.shape), 100, 0.45, 0.01)

        def tv_nms(t):
            import torchvision
            keep = t["scores"] > 0.01
            idx = keep.nonzero().flatten()
            bx = t["boxes"][idx][:, [1, 0, 3, 2]]  # torchvision wants x1, y1, x2, y2
            return idx[torchvision.ops.nms(bx, t["scores"][idx], 0.45)[:100]]
        yield f"nms N={n} max_output=100", out, {"boxes": b, "scores": s}, tv_nms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=("cuda", "opencl"), default="cuda")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    args = ap.parse_args()
    repeat, warmup = (5, 1) if args.quick else (50, 5)
    try:
        import torch
        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    rows = []
    print(f"{'workload':34} {'ours ms':>9} {'torch ms':>9} {'ours/torch':>10}  kernels")
    for name, out, values, torch_fn in workloads(args.quick):
        kern = sd.build(out, target=args.target)
        got = kern(**values)
        want = sd.evaluate(out, values)
        if got.dtype == np.int32:
            bad = int((got != want).sum())
            if bad:
                raise SystemExit(f"{name}: {bad} of {got.size} indices differ from the reference")
        else:
            err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
            if err > 1e-4:
                raise SystemExit(f"{name}: relative error {err:.2e} against the reference")
        ours = kern.runner.bench(repeat=repeat, warmup=warmup)
        base = None
        if torch is not None:
            tin = {k: torch.from_numpy(v).cuda() for k, v in values.items()}
            try:
                base = torch_time(lambda: torch_fn(tin), repeat, warmup)
            except ImportError as e:  # torchvision missing: no NMS baseline
                print(f"  ({name}: no baseline: {e})")
        ratio = f"{ours / base:10.2f}" if base else f"{'-':>10}"
        print(f"{name:34} {ours:9.3f} {base if base else float('nan'):9.3f} {ratio}  {len(kern.lowered.launches)}")
        rows.append({"workload": name, "target": args.target, "ours_ms": ours, "torch_ms": base,
                     "kernels": len(kern.lowered.launches)})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
