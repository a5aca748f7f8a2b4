"""Lowers the models of examples/make_models.py into the kernel cache without a device, so
that `load_onnx` on the device only compiles (or, with the compiled kernels cached too, only
loads): the lowered segments depend on the model, the schedules and sched-dsl itself, not on
the device. Carry the cache folder to the device and point SCHED_DSL_CACHE at it.

    SCHED_DSL_CACHE=/tmp/cache python scripts/lower_ahead.py --models resnet18,resnet50 --size 224 \\
        --unfused --records benchmarks/data/h200_space/conv64x56.jsonl.gz --device "NVIDIA H200"
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import onnx

from sched_dsl.graph.executor import lower_ahead
from sched_dsl.graph.onnx_import import import_onnx

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,resnet50,mobilenetv2")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--target", choices=("cuda", "opencl"), default="cuda")
    ap.add_argument("--unfused", action="store_true", help="also the unfused variants")
    ap.add_argument("--records", help="tuning records (comma-separated files, merged): also the tuned variants")
    ap.add_argument("--device", help="the device's name as the records give it, e.g. 'NVIDIA H200'")
    ap.add_argument("--host-softmax", action="store_true", help="softmax ops on the host (as the GPU tests run ssd)")
    args = ap.parse_args(argv)
    spec = importlib.util.spec_from_file_location("make_models", ROOT / "examples" / "make_models.py")
    mm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mm)
    records = None
    if args.records:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_models import merged_records
        records = merged_records(args.records, tempfile.mkdtemp(prefix="lower_ahead_"))
    tmp = tempfile.mkdtemp(prefix="lower_ahead_")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = os.path.join(tmp, f"{name}.onnx")
        onnx.save(mm.MODELS[name](args.size), path)
        host = [o.stage_name for o in import_onnx(path).module.walk()
                if o.name == "tensorop.softmax"] if args.host_softmax else []
        for fuse in (True, False) if args.unfused else (True,):
            for rec in [None, records] if records else [None]:
                t0 = time.perf_counter()
                n = lower_ahead(path, args.target, fuse, host, records=rec, device=args.device)
                print(f"{name} {args.size} fuse={fuse} tuned={rec is not None}: {n} kernels lowered in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
