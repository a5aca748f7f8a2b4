"""End-to-end latency of whole models, ours against PyTorch (eager, under a CUDA graph, and
torch.compile), in one run: ResNet-18, ResNet-50 and MobileNetV2 from examples/make_models.py
(random weights), batch 1, fp32 (TF32 off) or --precision bf16, fp16, tf32 on both sides;
--precision 3xtf32 runs ours at f32's precision on tensor cores (three TF32 products each)
against PyTorch in fp32 (TF32 off).

    python benchmarks/bench_models.py --json models.json                      # CUDA, 224x224
    python benchmarks/bench_models.py --precision bf16 --no-unfused --json models_bf16.json
    python benchmarks/bench_models.py --target opencl --size 32 --repeat 3 --models resnet18

Our rows: untuned and tuned (with --records or --tune), fused and unfused, graph on and off
(`load_onnx(..., graph=False)`: every kernel launched from Python on each run). Our latency is
wall-clock per `sess.run(None, {"input": x})`. Copies are counted the same way on both sides:
the input goes from a numpy array into a page-locked staging buffer, from there to the GPU
asynchronously; the output comes back into a page-locked buffer and is copied into a new numpy
array; one wait per run. PyTorch runs the same network, built from the same ONNX graph and
weights (batch norm folded into the convs the same way), with cudnn.benchmark on: "eager"
op by op, "graph" the forward pass captured once in a torch.cuda.CUDAGraph and replayed,
"compile" torch.compile in its default mode (its compile time is in the JSON; --no-compile
leaves it out). "torch fwd" is eager without the copies. Every configuration is first checked
against onnxruntime (within 1e-3 of the largest output in fp32 and 3xtf32; bf16 1e-1, fp16
1e-2, tf32 1e-2). PyTorch runs in NCHW and in channels-last (in bf16 and fp16, in that type),
and the faster layout's times are kept (`torch_layout` in the JSON); our convs follow `--conv-algorithm`
(default auto: as matmuls on tensor cores where they fit).

The per-layer table puts each of our kernels (a fused group: its stages joined by +) beside
the PyTorch ops of the same ONNX nodes, each timed alone between two CUDA events (Python
dispatch included: an upper bound on the library's kernel); it is printed for
the first (tuned, fused if there is one) row of each model, the longest layers first, and
is in the JSON for every row. Load times ("load s", with the kernels compiled and taken from
the cache) are in the JSON too.

Untuned runs use the schedules sched_dsl/graph/model_schedules.py chooses for each conv and
matmul, with its default knobs. `--tune` first tunes every distinct conv/matmul shape of the
models with the tuner (`tune_model`: `--trials` configs each, the shapes with most arithmetic
first, at most `--tune-budget-s` seconds per model) into `--records` (default
bench_models.records.jsonl; a cut-off run resumes from it). `--records FILE` alone adds tuned
rows from an existing records file (several files: comma-separated, merged).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx

import sched_dsl as sd

HERE = os.path.dirname(os.path.abspath(__file__))


def make_models():
    spec = importlib.util.spec_from_file_location("make_models", os.path.join(HERE, "..", "examples", "make_models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ROUNDS = 5  # alternating rounds of PyTorch's graph and ours for each of our rows


def wall_ms(fn, repeat: int, warmup: int, sync=lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3 / repeat


class InPrecision:
    """The twin run in bf16 or fp16 (its constants cast once; the f32 input cast on the GPU,
    as ours is) in a memory format, its outputs back in f32."""

    def __init__(self, twin, dtype, channels_last: bool, torch):
        self.twin, self.dtype = twin, dtype
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        twin.cast(dtype, channels_last)

    def __call__(self, x, timed=None) -> list:
        x = x.to(self.dtype).contiguous(memory_format=self.layout)
        return [y.float() for y in self.twin(x, timed)]


def graph_device_ms(sess, repeat: int) -> float | None:
    """The GPU's time for one replay of the session's CUDA graph alone (events around back-to-back
    replays: no staging copies, no host work), when the whole model is one captured piece;
    ours_ms minus this is what the host and the copies add."""
    runners = [p.runner for p in sess.pieces if hasattr(p, "runner")]
    if sess.target != "cuda" or len(runners) != 1 or runners[0].graph is None:
        return None
    from sched_dsl.runtime.cuda import current_context

    runner = runners[0]
    with current_context():
        drv, stream = runner.device.drv, runner.device.stream
        runner.graph.launch()
        start, end = drv.Event(), drv.Event()
        start.record(stream)
        for _ in range(repeat):
            runner.graph.launch()
        end.record(stream)
        end.synchronize()
        return start.time_till(end) / repeat


def torch_graph_device_ms(graph, repeat: int, torch) -> float:
    """The same for PyTorch's captured graph."""
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeat


def torch_runners(net, x: np.ndarray, torch, compile_model: bool):
    """Callables running the network on a numpy input with the copies counted as ours are
    (page-locked staging both ways, one wait), by name; and torch.compile's compile seconds."""
    dev = "cuda"
    pinned_in = torch.empty(x.shape, dtype=torch.float32).pin_memory()
    static_in = torch.empty(x.shape, dtype=torch.float32, device=dev)
    with torch.no_grad():
        out_shape = net(static_in.copy_(torch.from_numpy(x)))[0].shape
    pinned_out = torch.empty(out_shape, dtype=torch.float32).pin_memory()
    stream = torch.cuda.current_stream()

    def with_copies(forward):
        def run():
            pinned_in.numpy()[...] = x
            static_in.copy_(pinned_in, non_blocking=True)
            with torch.no_grad():
                y = forward(static_in)
            pinned_out.copy_(y, non_blocking=True)
            stream.synchronize()
            return pinned_out.numpy().copy()
        return run

    runners = {"eager": with_copies(lambda v: net(v)[0])}
    # the CUDA graph: warm-up on a side stream (cudnn.benchmark picks its algorithms), then capture
    side = torch.cuda.Stream()
    side.wait_stream(stream)
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):
            net(static_in)
    stream.wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        graph_out = net(static_in)[0]

    def replay(v):
        graph.replay()
        return graph_out
    runners["graph"] = with_copies(replay)
    runners["graph_device"] = graph  # timed by torch_graph_device_ms, not by wall_ms
    compile_s = None
    if compile_model:
        compiled = torch.compile(lambda v: net(v)[0])
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                compiled(static_in)
            stream.synchronize()
        except Exception as e:  # noqa: BLE001 - reported, the other columns still stand
            print(f"note: torch.compile failed: {e}", file=sys.stderr)
        else:
            compile_s = time.perf_counter() - t0
            runners["compile"] = with_copies(compiled)
    return runners, compile_s


def torch_node_ms(net, x, torch, repeat: int = 10) -> dict[str, float]:
    """Median ms of every ONNX node's PyTorch op, each timed alone with CUDA events."""
    times: dict[str, list[float]] = {}
    xt = torch.from_numpy(x).cuda()

    def timed(name, fn):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        y = fn()
        end.record()
        end.synchronize()
        times.setdefault(name, []).append(start.elapsed_time(end))
        return y
    with torch.no_grad():
        for _ in range(repeat):
            net(xt, timed)
    return {k: float(np.median(v)) for k, v in times.items()}


def layer_table(layers, torch_ms: dict[str, float] | None) -> list[dict]:
    """Our kernels with the time of the PyTorch ops of the same ONNX nodes."""
    out = []
    for name, kind, ms in layers:
        if kind != "kernel":
            continue
        nodes = [st for st in name.split("+") if torch_ms is not None and st in torch_ms]
        t = sum(torch_ms[n] for n in nodes) if nodes else None
        out.append({"layer": name, "ours_ms": ms, "torch_ms": t, "torch_nodes": nodes})
    return out


def print_layers(model: str, label: str, table: list[dict], top: int) -> None:
    print(f"\n{model} ({label}): the {top} longest of {len(table)} kernels")
    print(f"{'layer':<44} {'ours ms':>9} {'torch ms':>9} {'torch/ours':>10}")
    for r in sorted(table, key=lambda r: -r["ours_ms"])[:top]:
        t = r["torch_ms"]
        print(f"{r['layer'][:44]:<44} {r['ours_ms']:9.4f} {'-' if t is None else format(t, '9.4f'):>9} "
              f"{'-' if t is None else format(t / r['ours_ms'], '10.2f'):>10}")
    ours = sum(r["ours_ms"] for r in table)
    theirs = sum(r["torch_ms"] or 0 for r in table)
    print(f"{'sum':<44} {ours:9.4f} {theirs:9.4f}")


def merged_records(paths: str, tmp: str) -> str:
    """One records file from a comma-separated list (plain or gzipped JSON lines)."""
    import gzip

    files = [p.strip() for p in paths.split(",") if p.strip()]
    if len(files) == 1:
        return files[0]
    out = os.path.join(tmp, "records.jsonl")
    with open(out, "w") as f:
        for p in files:
            with (gzip.open(p, "rt") if p.endswith(".gz") else open(p)) as g:
                for line in g:
                    f.write(line if line.endswith("\n") else line + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=("cuda", "opencl"), default="cuda")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--models", default="resnet18,resnet50,mobilenetv2")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--records", help="tuning records file(s) for the tuned rows, comma-separated "
                    "(--tune appends to the first)")
    ap.add_argument("--tune", action="store_true",
                    help="tune every distinct conv/matmul shape first, then add tuned rows")
    ap.add_argument("--trials", type=int, default=8, help="configs measured per distinct shape with --tune")
    ap.add_argument("--tune-budget-s", type=float, default=120,
                    help="with --tune, start no new shape after this many seconds per model")
    ap.add_argument("--no-unfused", action="store_true", help="leave out the unfused rows")
    ap.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    ap.add_argument("--layers", type=int, default=12, help="rows of each printed per-layer table")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16", "tf32", "3xtf32"), default="fp32",
                    help="ours with load_onnx(precision=...), PyTorch in the same precision: bf16/fp16 weights and "
                    "activations; tf32 with TF32 allowed; 3xtf32 (near f32's precision on tensor cores) against "
                    "PyTorch in fp32 with TF32 off; the faster of NCHW and channels-last")
    ap.add_argument("--conv-algorithm", choices=("auto", "direct", "gemm", "implicit", "winograd"), default="auto",
                    help="load_onnx's conv_algorithm for our rows")
    ap.add_argument("--layout", choices=("NCHW", "NHWC", "auto"), default="NCHW",
                    help="load_onnx's layout for our rows (tensorop-convert-layout)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    precision = None if args.precision == "fp32" else args.precision
    # largest error over the largest output, against onnxruntime in f32 (docs/precision.md: bf16's
    # 8-bit significand through MobileNetV2's 52 layers reaches 6e-2 in PyTorch's own bf16 run)
    tolerance = {"fp32": 1e-3, "3xtf32": 1e-3, "tf32": 1e-2, "bf16": 1e-1, "fp16": 1e-2}[args.precision]

    import onnxruntime as ort
    mm = make_models()
    tmp = tempfile.mkdtemp(prefix="bench_models_")
    if args.tune and not args.records:
        args.records = "bench_models.records.jsonl"
    records = merged_records(args.records, tmp) if args.records and not args.tune else args.records
    torch = None
    try:
        import torch
        if not torch.cuda.is_available():
            torch = None
        else:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
            torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    except ImportError:
        pass
    if torch is None:
        print("note: no torch with CUDA here; PyTorch columns are empty", file=sys.stderr)

    rows, baselines, tables = [], {}, {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = mm.MODELS[name](args.size)
        path = os.path.join(tmp, f"{name}.onnx")
        onnx.save(model, path)
        x = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
        want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        base = {}
        node_ms = None
        torch_graph_run = None
        if torch is not None:
            sys.path.insert(0, HERE)
            from onnx_torch import OnnxTwin

            for channels_last in (False, True):  # the faster layout's times are kept
                net = OnnxTwin(model, "cuda", fold_batchnorm=True)
                if args.precision in ("bf16", "fp16") or channels_last:
                    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision, torch.float32)
                    net = InPrecision(net, dtype, channels_last, torch)
                with torch.no_grad():
                    got = net(torch.from_numpy(x).cuda())[0].cpu().numpy()
                err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
                if err > tolerance:
                    raise SystemExit(f"{name}: the torch network differs from onnxruntime (relative error {err:.2e})")
                runners, compile_s = torch_runners(net, x, torch, not args.no_compile)
                graph = runners.pop("graph_device")
                times = {f"torch_{kind}_ms": wall_ms(fn, args.repeat, args.warmup) for kind, fn in runners.items()}
                times["torch_graph_device_ms"] = torch_graph_device_ms(graph, args.repeat, torch)
                times["torch_max_rel_err"] = err
                if "torch_graph_ms" not in base or times["torch_graph_ms"] < base["torch_graph_ms"]:
                    base.update(times, torch_layout="channels-last" if channels_last else "NCHW")
                    fastest = net  # its ops are the per-layer table's
                    torch_graph_run = runners["graph"]  # timed again beside each of our rows
                del runners
            xt = torch.from_numpy(x).cuda()
            with torch.no_grad():
                base["torch_fwd_ms"] = wall_ms(lambda: net(xt), args.repeat, args.warmup, torch.cuda.synchronize)
            base["torch_compile_s"] = compile_s
            node_ms = torch_node_ms(fastest, x, torch)
            print(f"{name}: torch {', '.join(f'{k} {v}' for k, v in base.items() if v is not None)}",
                  file=sys.stderr, flush=True)
        baselines[name] = base
        tune_s = None
        if args.tune:
            from sched_dsl.tuner.models import tune_model
            t0 = time.perf_counter()
            done = tune_model(path, args.records, args.target, trials=args.trials, budget_s=args.tune_budget_s,
                              precision=precision, conv_algorithm=args.conv_algorithm, layout=args.layout,
                              progress=lambda i, n, wl: print(f"{name}: tuning {i + 1}/{n} {wl.split('|')[0]} "
                                                              f"{wl.split('|')[1]}", file=sys.stderr, flush=True))
            tune_s = time.perf_counter() - t0
            print(f"{name}: tuned {len(done)} shapes in {tune_s:.0f} s", file=sys.stderr)
        variants = [(rec, fuse, graph) for rec in ([records] if records else []) + [None]
                    for fuse in ((True,) if args.no_unfused else (True, False)) for graph in (True, False)]
        for rec, fuse, graph in variants:
            t0 = time.perf_counter()
            sess = sd.load_onnx(path, target=args.target, fuse=fuse, records=rec, graph=graph, precision=precision,
                                conv_algorithm=args.conv_algorithm, layout=args.layout)
            load_s = time.perf_counter() - t0
            got = sess.run(None, {"input": x})[0]
            err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
            if err > tolerance:
                raise SystemExit(f"{name} (fuse={fuse}, graph={graph}): differs from onnxruntime "
                                 f"(relative error {err:.2e})")
            ours = wall_ms(lambda: sess.run(None, {"input": x}), args.repeat, args.warmup)
            paired = {}
            if torch_graph_run is not None:
                # PyTorch's graph and ours in alternating rounds, medians kept: the GPU's clocks
                # and the machine's load are then the same for both sides of the ratio
                rounds = [(wall_ms(torch_graph_run, args.repeat, 2),
                           wall_ms(lambda: sess.run(None, {"input": x}), args.repeat, 2)) for _ in range(ROUNDS)]
                paired = {"paired_torch_graph_ms": statistics.median(t for t, _ in rounds),
                          "paired_ours_ms": statistics.median(o for _, o in rounds)}
                paired["paired_speedup"] = paired["paired_torch_graph_ms"] / paired["paired_ours_ms"]
            layers = sess.profile({"input": x})
            table = layer_table(layers, node_ms)
            kernel_ms = sum(r["ours_ms"] for r in table)
            label = f"{'tuned' if rec else 'untuned'}, {'fused' if fuse else 'unfused'}"
            if name not in tables:
                tables[name] = (label, table)
            row = {"model": name, "size": args.size, "target": args.target, "device": sess.device.name,
                   "precision": args.precision, "conv_algorithm": args.conv_algorithm,
                   "direct_convs": sess.ir.count("tensorop.conv2d"),
                   "fusion": fuse, "tuned": rec is not None, "graph": sess.capture, "tuned_anchors": len(sess.tuned),
                   "tune_s": tune_s if rec else None, "kernels": sess.kernel_count, "ours_ms": ours,
                   "ours_kernel_sum_ms": kernel_ms, "ours_graph_device_ms": graph_device_ms(sess, args.repeat),
                   "peak_bytes": sess.peak_bytes, "memory": sess.memory,
                   "load_s": load_s, "load": sess.load_stats, "max_rel_err": err, **base,
                   "speedup_vs_torch_graph": base["torch_graph_ms"] / ours if "torch_graph_ms" in base else None,
                   **paired,
                   "layers": table}
            rows.append(row)
            gpu = row["ours_graph_device_ms"]
            print(f"{name}: {label}, graph {sess.capture}: {ours:.3f} ms ({'-' if gpu is None else f'{gpu:.3f}'} "
                  f"on the GPU, {kernel_ms:.3f} in kernels timed alone), {sess.kernel_count} kernels, "
                  f"load {load_s:.1f} s", file=sys.stderr, flush=True)
            if paired:
                print(f"{name}: {label}, graph {sess.capture}, alternating with PyTorch's graph: ours "
                      f"{paired['paired_ours_ms']:.3f} ms, PyTorch {paired['paired_torch_graph_ms']:.3f} ms, "
                      f"{paired['paired_speedup']:.2f}x", file=sys.stderr, flush=True)
            sess = None  # its device memory goes before the next load

    def fmt(v, f):
        return "-" if v is None else format(v, f)
    print(f"{'model':<12} {'tuned':<5} {'fusion':<6} {'graph':<15} {'kernels':>7} {'ours ms':>8} {'eager':>7} "
          f"{'t.graph':>7} {'compile':>7} {'t.graph/ours':>12} {'peak MB':>8} {'load s':>6}")
    for r in rows:
        print(f"{r['model']:<12} {'yes' if r['tuned'] else 'no':<5} {'on' if r['fusion'] else 'off':<6} "
              f"{r['graph']:<15} {r['kernels']:>7} {r['ours_ms']:8.3f} {fmt(r.get('torch_eager_ms'), '7.3f'):>7} "
              f"{fmt(r.get('torch_graph_ms'), '7.3f'):>7} {fmt(r.get('torch_compile_ms'), '7.3f'):>7} "
              f"{fmt(r['speedup_vs_torch_graph'], '12.2f'):>12} {r['peak_bytes'] / 2**20:8.1f} {r['load_s']:6.2f}")
    for name, (label, table) in tables.items():
        print_layers(name, label, table, args.layers)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "baselines": baselines, "repeat": args.repeat, "records": args.records,
                       "torch": None if torch is None else torch.__version__, "torch_cudnn_benchmark": torch is not None},
                      f, indent=1)


if __name__ == "__main__":
    main()
