"""sched-run: import an ONNX model, run it on a device, print per-layer times and the
end-to-end latency.

    sched-run resnet18.onnx --target opencl --repeat 10
    sched-run ssd.onnx --host softmax60 --no-fuse --print-ir
    sched-run mobilenetv2.onnx --tune --records mb.jsonl --trials 16   # tune each anchor shape, then run
    sched-run mobilenetv2.onnx --records mb.jsonl                      # reuse the best recorded configs
    sched-run resnet18.onnx --devices 2 --partition auto               # on two devices (OpenCL ordinals 0, 1)
    sched-run resnet18.onnx --stats                                    # kernels, peak device bytes, load

Bad input (a missing file, a file that is not ONNX, unsupported operators, a wrong input)
ends in a one-line (or one-list) error on stderr and exit code 1, never a traceback; a
failure of the device ends in exit code 2 (SCHED_DSL_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import numpy as np


def parse_config(text: str) -> dict[str, int]:
    """--config as apply-schedule reads a config: each knob once, each value an integer."""
    from sched_dsl.lowering.apply_schedule import ScheduleError, parse_config as parse

    try:
        return parse(text)
    except ScheduleError as e:
        raise ValueError(f"--config: {str(e).removeprefix('apply-schedule: ')}") from None


def parse_devices(text: str | None) -> int | list[int] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items or not all(t.isdigit() for t in items):
        raise ValueError(f"--devices '{text}' is not a count or comma-separated device ordinals")
    return int(items[0]) if len(items) == 1 else [int(t) for t in items]


def make_input(sess, path: str | None, seed: int) -> dict[str, np.ndarray]:
    if path is not None:
        if not os.path.isfile(path):
            raise ValueError(f"--input {path}: no such file")
        try:
            x = np.load(path)
        except Exception as e:  # noqa: BLE001 - numpy raises several kinds
            raise ValueError(f"--input {path}: not a .npy array ({e})") from None
        return {sess.input_names[0]: x}
    rng = np.random.default_rng(seed)
    feeds = {}
    for n in sess.input_names:
        shape = sess.feed_shapes.get(n, sess.shapes[sess.inputs_of[n]])
        dtype = sess.feed_dtypes.get(n, np.dtype(sess.dtypes[sess.inputs_of[n]]))
        # integer inputs (indices) get zeros: any other value may be out of range for the model
        feeds[n] = np.zeros(shape, dtype) if dtype.kind == "i" else rng.standard_normal(shape).astype(dtype)
    return feeds


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sched-run", description="Import an ONNX model, run it, print per-layer times "
                                 "and the end-to-end latency.")
    ap.add_argument("model", help="an .onnx file")
    ap.add_argument("--target", choices=("opencl", "cuda"), default="opencl")
    ap.add_argument("--no-fuse", action="store_true", help="one kernel per operator (no tensorop-fuse)")
    ap.add_argument("--host", default="", help="comma-separated operator (stage) names to run on the host")
    ap.add_argument("--config", default="", help="knob values, k=v,...")
    ap.add_argument("--records", help="tuning records file: the best recorded config of every anchor (conv, "
                    "matmul) with records; --tune appends to it")
    ap.add_argument("--tune", action="store_true",
                    help="first tune every distinct anchor shape with the tuner (into --records, default "
                    "<model>.records.jsonl)")
    ap.add_argument("--trials", type=int, default=16, help="configs measured per distinct anchor shape with --tune")
    ap.add_argument("--precision", choices=("bf16", "fp16", "tf32", "3xtf32"),
                    help="run the f32 model in bf16 or fp16 (sums, softmax and reductions in f32), multiply "
                    "at tf32, or on tensor cores near f32's precision (3xtf32: three TF32 products each)")
    ap.add_argument("--conv-algorithm", choices=("auto", "direct", "gemm", "implicit", "winograd"), default="auto",
                    help="convs as conv templates (direct), as matmuls of the weights and the windows (gemm), as "
                    "matmuls that gather the windows where they read them (implicit: tensor cores, unsplit products), "
                    "with Winograd's transforms (3x3 stride 1), or per conv (auto: the records' faster form, else "
                    "gemm on tensor cores; default)")
    ap.add_argument("--layout", choices=("NCHW", "NHWC", "auto"), default="NCHW",
                    help="run convs and pools channels last (NHWC: tensorop-convert-layout, transposes at the edges "
                    "of each region; auto: where the pass's rule says it pays) or as the model has them (NCHW; "
                    "default)")
    ap.add_argument("--input", help="a .npy file for the (first) input; default: random normal")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=10, help="runs averaged for the end-to-end latency")
    ap.add_argument("--no-graph", action="store_true",
                    help="launch every kernel from Python on each run (no CUDA graph or command buffer)")
    ap.add_argument("--no-plan-memory", action="store_true",
                    help="a buffer of its own for every intermediate value (no tensorop-plan-memory arena)")
    ap.add_argument("--stats", action="store_true",
                    help="also print the kernel count, capture mode, peak device bytes and load statistics")
    ap.add_argument("--print-ir", action="store_true", help="print the placed, fused and planned graph IR")
    ap.add_argument("--json", help="write the per-layer times and latency here")
    ap.add_argument("--devices", help="run on several devices of this machine: a count N (ordinals 0..N-1) or "
                    "ordinals a,b,...")
    ap.add_argument("--partition", choices=("split", "pipeline", "auto"), default="auto",
                    help="with --devices: how layers are spread (default auto)")
    ap.add_argument("--objective", choices=("latency", "throughput"), default="latency",
                    help="with --devices: what the partitioner minimises or maximises")
    ap.add_argument("--profile", help="with --devices: a layer profile JSON (benchmarks/profile_layers.py) for "
                    "the partitioner; default: measured on the first device")
    args = ap.parse_args(argv)

    from sched_dsl.graph.executor import GraphError, load_onnx
    from sched_dsl.schedule import ScheduleError
    from sched_dsl.graph.onnx_import import OnnxImportError
    from sched_dsl.runtime.common import DeviceError

    try:
        if args.repeat < 1:
            raise ValueError(f"--repeat {args.repeat} must be at least 1")
        config = parse_config(args.config)
        host = [h.strip() for h in args.host.split(",") if h.strip()]
        if args.records and os.path.isdir(args.records):
            raise ValueError(f"--records {args.records} is a directory")
        if args.tune:
            if args.trials < 1:
                raise ValueError(f"--trials {args.trials} must be at least 1")
            if not os.path.isfile(args.model):
                raise ValueError(f"{args.model}: no such file")
            args.records = args.records or os.path.splitext(args.model)[0] + ".records.jsonl"
            from sched_dsl.tuner.models import tune_model

            def progress(i, n, workload):
                print(f"tuning {i + 1}/{n}: {workload.split('|')[0]} {workload.split('|')[1]}", flush=True)
            results = tune_model(args.model, args.records, args.target, not args.no_fuse, host, args.trials,
                                 progress=progress, precision=args.precision, conv_algorithm=args.conv_algorithm,
                                 layout=args.layout)
            best = sum(r.best_ms or 0 for r in results)
            print(f"tuned {len(results)} anchor shapes into {args.records} (best kernels sum to {best:.3f} ms)")
        devices = parse_devices(args.devices)
        if args.profile and not os.path.isfile(args.profile):
            raise ValueError(f"--profile {args.profile}: no such file")
        sess = load_onnx(args.model, target=args.target, fuse=not args.no_fuse, host_ops=host, config=config,
                         records=args.records, graph=not args.no_graph, plan_memory=not args.no_plan_memory,
                         devices=devices, partition=args.partition, profile=args.profile, objective=args.objective,
                         precision=args.precision, conv_algorithm=args.conv_algorithm, layout=args.layout)
        feeds = make_input(sess, args.input, args.seed)
        outputs = sess.run(None, feeds)
        layers = sess.profile(feeds)
        latency = sess.latency(feeds, repeat=args.repeat, warmup=1)
    except (OnnxImportError, GraphError, ValueError) as e:
        print(f"sched-run: error: {e}", file=sys.stderr)
        return 1
    except (DeviceError, ScheduleError, RuntimeError) as e:
        if os.environ.get("SCHED_DSL_DEBUG"):
            raise
        print(f"sched-run: error on the device: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug of ours, or a library's error we do not know yet: one line, not a traceback
        if os.environ.get("SCHED_DSL_DEBUG"):
            raise
        print(f"sched-run: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    if args.print_ir:
        print(sess.ir)
    if len(sess.devices) > 1:
        print(f"plan ({args.partition}, {args.objective}) on {len(sess.devices)} devices:")
        for line in sess.plan:
            print(f"  {line}")
    print(f"{args.model}: {sess.kernel_count} kernels on {len(sess.devices)} x {sess.device.name} ({args.target}), "
          f"fusion {'off' if args.no_fuse else 'on'}"
          + (f", {len(sess.tuned)} anchors with tuned configs from {args.records}" if args.records else ""))
    width = max([len(n) for n, _, _ in layers] + [5])
    print(f"{'layer':<{width}}  {'kind':<8}  {'ms':>9}")
    for name, kind, ms in layers:
        print(f"{name:<{width}}  {kind:<8}  {ms:9.3f}")
    print(f"{'sum of layers':<{width}}  {'':<8}  {sum(ms for _, _, ms in layers):9.3f}")
    print(f"end-to-end latency: {latency:.3f} ms (mean of {args.repeat} runs)")
    stats = sess.stats()
    if args.stats:
        m, ld = stats["memory"], stats["load"]
        print(f"kernels: {stats['kernels']} in {stats['pieces']} piece(s), replayed as: {stats['capture']}")
        print(f"peak device memory: {stats['peak_bytes']} bytes (weights {m['weights']}, inputs {m['inputs']}, "
              f"intermediates {m['arena'] + m['other intermediates']}; without planning "
              f"{m['intermediates unplanned']})")
        print(f"load: {ld['seconds']:.2f} s; segments lowered {ld['lowered']}, from the cache {ld['lowered from cache']}; "
              f"kernels compiled {ld['compiled']}, from the cache {ld['compiled from cache']}")
    for name, out in zip(sess.output_names, outputs):
        print(f"output {name}: shape {out.shape} {out.dtype}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "target": args.target, "fuse": not args.no_fuse,
                       "devices": len(sess.devices), "partition": args.partition if len(sess.devices) > 1 else None,
                       "plan": sess.plan,
                       "kernels": sess.kernel_count, "latency_ms": latency, "config": sess.config, "stats": stats,
                       "records": args.records, "tuned": sess.tuned,
                       "layers": [{"name": n, "kind": k, "ms": ms} for n, k, ms in layers]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
