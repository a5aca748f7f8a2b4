"""End-to-end latency of whole models, ours against PyTorch eager (cuDNN, benchmark mode on),
in one run: ResNet-18 and MobileNetV2 from examples/make_models.py (random weights), batch 1,
with and without operator fusion.

    python benchmarks/bench_models.py --json models.json                      # CUDA, 224x224
    python benchmarks/bench_models.py --target opencl --size 32 --repeat 3    # PoCL, small

Our latency is wall-clock per `sess.run(None, {"input": x})`: input upload, every kernel and
host op, output download, synchronised. PyTorch runs the same network, built from the same
ONNX graph and weights (batch norm folded into the convs the same way), fp32 with TF32 off; its latency
includes the input copy to the GPU and the output copy back, like ours ("torch_ms"), and is
also given for the forward pass alone ("torch_fwd_ms"). Every configuration is first checked
against onnxruntime. Without torch or a CUDA GPU, the PyTorch columns are left empty.
Untuned runs use the schedules sched_dsl/graph/model_schedules.py chooses for each conv and matmul,
with its default knobs. `--tune` first tunes every distinct conv/matmul shape of the models with
the tuner (`tune_model`: `--trials` configs each, the shapes with most arithmetic first, at most
`--tune-budget-s` seconds per model) into `--records` (default bench_models.records.jsonl; a
cut-off run resumes from it); tuned rows (fused and unfused) then run the best recorded configs.
`--records FILE` alone adds tuned rows from an existing records file.

    python benchmarks/bench_models.py --tune --trials 8 --models resnet18 --json resnet18.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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


def wall_ms(fn, repeat: int, warmup: int, sync=lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3 / repeat


class TorchFromOnnx:
    """The ONNX graph run op by op with torch functional calls on the GPU (PyTorch eager)."""

    def __init__(self, model: onnx.ModelProto, device: str):
        import torch
        import torch.nn.functional as F

        from sched_dsl.graph.onnx_import import Importer, fold_batchnorm
        self.torch, self.F = torch, F
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        imp = Importer(copy)
        fold_batchnorm(imp)  # the same folding as ours: conv weights and bias absorb the batch norm
        self.graph = imp.graph
        self.scalars = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in imp.consts.items() if np.asarray(v).size == 1}
        self.consts = {k: torch.from_numpy(np.array(v)).to(device) for k, v in imp.consts.items()}
        self.attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in self.graph.node]

    def __call__(self, x):
        torch, F = self.torch, self.F
        v = dict(self.consts)
        v[self.graph.input[0].name] = x
        for n, a in zip(self.graph.node, self.attrs):
            i = [v[name] if name else None for name in n.input]
            op = n.op_type
            if op == "Conv":
                p = a.get("pads", [0, 0, 0, 0])
                assert p[0] == p[2] and p[1] == p[3], "asymmetric pads"
                y = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, a.get("strides", 1), (p[0], p[1]),
                             a.get("dilations", 1), a.get("group", 1))
            elif op == "BatchNormalization":
                y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))
            elif op == "Relu":
                y = F.relu(i[0])
            elif op == "Clip":
                y = torch.clamp(i[0], self.scalars[n.input[1]], self.scalars[n.input[2]])
            elif op == "Add":
                y = i[0] + i[1]
            elif op == "MaxPool":
                p = a.get("pads", [0, 0, 0, 0])
                y = F.max_pool2d(i[0], a["kernel_shape"], a.get("strides"), (p[0], p[1]))
            elif op == "GlobalAveragePool":
                y = F.adaptive_avg_pool2d(i[0], 1)
            elif op == "Flatten":
                y = torch.flatten(i[0], a.get("axis", 1))
            elif op == "Gemm":
                y = F.linear(i[0], i[1] if a.get("transB", 0) else i[1].t(), i[2])
            elif op == "Identity":
                y = i[0]
            else:
                raise NotImplementedError(f"bench_models: no torch mapping for {op}")
            v[n.output[0]] = y
        return [v[o.name] for o in self.graph.output]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=("cuda", "opencl"), default="cuda")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--models", default="resnet18,mobilenetv2")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--records", help="tuning records file for the tuned rows (--tune appends to it)")
    ap.add_argument("--tune", action="store_true",
                    help="tune every distinct conv/matmul shape first, then add tuned rows")
    ap.add_argument("--trials", type=int, default=8, help="configs measured per distinct shape with --tune")
    ap.add_argument("--tune-budget-s", type=float, default=120,
                    help="with --tune, start no new shape after this many seconds per model")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--torch-device", choices=("cuda", "cpu"), default="cuda",
                    help="where PyTorch runs (cpu only to try the script without a GPU)")
    args = ap.parse_args()

    import onnxruntime as ort
    mm = make_models()
    if args.tune and not args.records:
        args.records = "bench_models.records.jsonl"
    torch_dev = None
    try:
        import torch
        if args.torch_device == "cpu":
            torch_dev = "cpu"
        elif torch.cuda.is_available():
            torch_dev = "cuda"
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
    except ImportError:
        torch = None
    if torch_dev is None:
        print("note: no torch with CUDA here; PyTorch columns are empty", file=sys.stderr)
    sync = torch.cuda.synchronize if torch_dev == "cuda" else (lambda: None)

    rows = []
    tmp = tempfile.mkdtemp(prefix="bench_models_")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = mm.MODELS[name](args.size)
        path = os.path.join(tmp, f"{name}.onnx")
        onnx.save(model, path)
        x = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
        want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        torch_ms = torch_fwd = None
        if torch_dev:
            net = TorchFromOnnx(model, torch_dev)
            xt = torch.from_numpy(x).to(torch_dev)
            with torch.no_grad():
                got = net(xt)[0].cpu().numpy()
                err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
                if err > 1e-3:
                    raise SystemExit(f"{name}: the torch network differs from onnxruntime (relative error {err:.2e})")
                torch_ms = wall_ms(lambda: net(torch.from_numpy(x).to(torch_dev))[0].cpu().numpy(),
                                   args.repeat, args.warmup, sync)
                torch_fwd = wall_ms(lambda: net(xt), args.repeat, args.warmup, sync)
        variants = [(fuse, None) for fuse in (True, False)]
        tune_s = None
        if args.tune:
            from sched_dsl.tuner.models import tune_model
            t0 = time.perf_counter()
            done = tune_model(path, args.records, args.target, trials=args.trials, budget_s=args.tune_budget_s,
                              progress=lambda i, n, wl: print(f"{name}: tuning {i + 1}/{n} {wl.split('|')[0]} "
                                                              f"{wl.split('|')[1]}", file=sys.stderr, flush=True))
            tune_s = time.perf_counter() - t0
            print(f"{name}: tuned {len(done)} shapes in {tune_s:.0f} s", file=sys.stderr)
        if args.records:
            variants += [(fuse, args.records) for fuse in (True, False)]
        for fuse, records in variants:
            t0 = time.perf_counter()
            sess = sd.load_onnx(path, target=args.target, fuse=fuse, records=records)
            got = sess.run(None, {"input": x})[0]
            setup = time.perf_counter() - t0
            err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
            if err > 1e-3:
                raise SystemExit(f"{name} (fuse={fuse}): differs from onnxruntime (relative error {err:.2e})")
            ours = sess.latency({"input": x}, repeat=args.repeat, warmup=args.warmup)
            layers = sess.profile({"input": x})
            kernel_ms = sum(ms for _, kind, ms in layers if kind == "kernel")
            rows.append({"model": name, "size": args.size, "target": args.target, "device": sess.device.name,
                         "fusion": fuse, "tuned": records is not None, "tuned_anchors": len(sess.tuned),
                         "tune_s": tune_s if records else None, "config": sess.config, "kernels": sess.kernel_count,
                         "ours_ms": ours, "ours_kernel_sum_ms": kernel_ms, "torch_ms": torch_ms,
                         "torch_fwd_ms": torch_fwd, "ratio": None if torch_ms is None else ours / torch_ms,
                         "max_rel_err": err, "setup_s": setup,
                         "layers": [{"name": n, "kind": k, "ms": ms} for n, k, ms in layers]})
            del sess

    print(f"{'model':<12} {'fusion':<6} {'tuned':<5} {'kernels':>7} {'ours ms':>9} {'torch ms':>9} "
          f"{'torch fwd':>9} {'ours/torch':>10}")
    for r in rows:
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        print(f"{r['model']:<12} {'on' if r['fusion'] else 'off':<6} {'yes' if r['tuned'] else 'no':<5} "
              f"{r['kernels']:>7} {r['ours_ms']:9.3f} {fmt(r['torch_ms'], '9.3f'):>9} "
              f"{fmt(r['torch_fwd_ms'], '9.3f'):>9} {fmt(r['ratio'], '10.2f'):>10}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "repeat": args.repeat, "torch_device": torch_dev,
                       "torch_cudnn_benchmark": torch_dev == "cuda"}, f, indent=1)


if __name__ == "__main__":
    main()
