"""Models beyond our own builders: torchvision classification networks exported by torch.onnx,
and the detectors of examples/make_models.py, on sched-dsl.

    python benchmarks/bench_coverage.py --export models/torchvision            # torch + torchvision, any machine
    python benchmarks/bench_coverage.py --export /tmp/tv --run --json out.json  # and on a CUDA GPU: run and time

--export writes <name>.onnx for every network of TORCHVISION (random weights: torchvision's
trained weights are a download, and a random network checks the same operators; opset 17,
batch 1, 224 x 224). --run then runs each exported file and the detectors on sched-dsl's CUDA
target, checks every output against onnxruntime (CPU), and times one end-to-end run
(`Session.latency`: upload, kernels, host steps, download) beside the PyTorch network's under
a CUDA graph (a replay of the captured forward pass; the detectors, built with onnx.helper, run
as their PyTorch twin of benchmarks/onnx_torch.py: the network captured, NMS eager). `--budget-s` stops starting new models after that many seconds; the
JSON file is rewritten after each model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> torchvision constructor and its arguments; ConvNeXt and ViT at small widths (their
# real sizes are 110 MB and more), built from torchvision's own classes
TORCHVISION = ["squeezenet1_1", "googlenet", "mobilenet_v3_small", "shufflenet_v2_x0_5", "mnasnet0_5", "mobilenet_v2",
               "convnext_narrow", "vit_tiny"]


def torchvision_model(name: str):
    import torch
    import torchvision

    torch.manual_seed(0)
    if name == "convnext_narrow":
        from torchvision.models.convnext import CNBlockConfig, ConvNeXt

        cfg = [CNBlockConfig(32, 64, 2), CNBlockConfig(64, 128, 2), CNBlockConfig(128, 256, 2), CNBlockConfig(256, None, 2)]
        return ConvNeXt(cfg, num_classes=1000).eval()
    if name == "vit_tiny":
        from torchvision.models.vision_transformer import VisionTransformer

        return VisionTransformer(image_size=224, patch_size=16, num_layers=4, num_heads=4, hidden_dim=128,
                                 mlp_dim=256, num_classes=1000).eval()
    if name == "googlenet":  # without the auxiliary classifiers, which only training uses
        return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).eval()
    return getattr(torchvision.models, name)(weights=None).eval()


def export(name: str, path: str):
    import torch

    model = torchvision_model(name)
    x = torch.randn(1, 3, 224, 224)
    kwargs = dict(opset_version=17, input_names=["input"], output_names=["logits"])
    try:
        torch.onnx.export(model, (x,), path, dynamo=False, **kwargs)
    except TypeError:  # a torch without the dynamo switch
        torch.onnx.export(model, (x,), path, **kwargs)
    return model


def detectors() -> dict:
    from bench_models import make_models

    mm = make_models()
    return {"yolov3_tiny": mm.yolov3_tiny(416), "retinanet": mm.retinanet(256)}


def torch_graph_ms(model, x, repeat: int = 50) -> float:
    """Mean ms of one forward pass replayed as a CUDA graph."""
    import torch

    model = model.cuda()
    xs = x.cuda()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(stream):
        for _ in range(3):
            model(xs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        model(xs)
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        graph.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3 / repeat


def twin_timing(proto, feeds: dict) -> dict:
    """The detector's PyTorch twin (benchmarks/onnx_torch.py): its outputs against onnxruntime's
    and its time, the network as a CUDA graph and NMS eager."""
    import onnxruntime as ort

    sys.path.insert(0, HERE)
    from onnx_torch import OnnxTwin

    twin = OnnxTwin(proto, "cuda")
    got = twin.run(feeds)
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    same = all(g.shape == w.shape and np.allclose(g, w, rtol=1e-3, atol=1e-3) for g, w in zip(got.values(), want))
    return {"torch_twin_matches_onnxruntime": bool(same), "torch_graph_ms": twin.graph_ms(feeds)}


def check(path: str, feeds: dict, target: str) -> dict:
    import onnxruntime as ort

    import sched_dsl as sd

    t0 = time.perf_counter()
    sess = sd.load_onnx(path, target=target)
    setup = time.perf_counter() - t0
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = sess.run(None, feeds)
    worst = 0.0
    for g, w in zip(got, want):
        if g.shape != w.shape or g.dtype != w.dtype:
            return {"status": f"shape {g.shape} vs onnxruntime {w.shape}", "kernels": sess.kernel_count}
        if w.dtype.kind == "f":
            worst = max(worst, float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-12)))  # relative to the output's scale
        elif not np.array_equal(g, w):
            return {"status": "integer outputs differ", "kernels": sess.kernel_count}
    status = "pass" if worst < 1e-3 else f"largest relative difference {worst:.3g}"
    return {"status": status, "max_rel_err": worst, "kernels": sess.kernel_count, "setup_s": setup,
            "ours_ms": sess.latency(feeds, repeat=20), "sess": sess}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", required=True, help="folder for the exported .onnx files")
    ap.add_argument("--run", action="store_true", help="run and time on CUDA (needs a CUDA GPU)")
    ap.add_argument("--target", default="cuda", choices=("cuda", "opencl"), help="the target --run uses")
    ap.add_argument("--json", help="results file (with --run)")
    ap.add_argument("--models", default=",".join(TORCHVISION + ["yolov3_tiny", "retinanet"]))
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no model after this many seconds")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    os.makedirs(args.export, exist_ok=True)
    if args.run and args.target == "cuda":
        import torch

        # the peer in our precision (fp32: cuDNN's default TF32 off) at its fastest algorithms
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    results = {}
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    dets = detectors() if any(m in ("yolov3_tiny", "retinanet") for m in wanted) else {}
    for name in wanted:
        if time.perf_counter() - start > args.budget_s:
            results[name] = {"status": "not run (time budget)"}
            continue
        path = os.path.join(args.export, f"{name}.onnx")
        model = None
        if name in dets:
            import onnx

            onnx.save(dets[name], path)
        else:
            model = export(name, path)
            print(f"exported {path} ({os.path.getsize(path) / 2**20:.1f} MiB)", flush=True)
        if not args.run:
            continue
        size = 416 if name == "yolov3_tiny" else 256 if name == "retinanet" else 224
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        try:
            r = check(path, {"input": x}, args.target)
        except Exception as e:  # noqa: BLE001 - recorded per model
            r = {"status": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        r.pop("sess", None)
        r["size"] = size
        if model is not None and args.target == "cuda":
            import torch

            r["torch_graph_ms"] = torch_graph_ms(model, torch.from_numpy(x))
        elif name in dets and args.target == "cuda":
            try:
                r.update(twin_timing(dets[name], {"input": x}))
            except Exception as e:  # noqa: BLE001 - ours is still recorded
                r["torch_twin"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        results[name] = r
        print(name, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
