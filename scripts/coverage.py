"""Measures which ONNX operators and which models sched-dsl runs, on which targets, and writes
docs/coverage.md (the tables and how to rerun them) and its summary table in README.md.

    .venv/bin/python scripts/coverage.py                # operators, backend cases, example models
    .venv/bin/python scripts/coverage.py --light        # also the nine light models (an hour on PoCL)
    .venv/bin/python scripts/coverage.py --only light   # one part again, the others as recorded
    .venv/bin/python scripts/coverage.py --render-only  # the tables again from the recorded results

Every supported ONNX operator runs as a one-node model (SAMPLES below) on PoCL against
onnxruntime, and its CUDA C text is compiled with `nvcc -arch=sm_90` where nvcc is installed.
The onnx wheel's backend cases run as tests/test_onnx_backend.py runs them; the models of
examples/make_models.py, and torchvision exports in models/torchvision/ (when present), against
onnxruntime. H200 timings come from benchmarks/data/h200_results/coverage_models.json (written
by benchmarks/bench_coverage.py on the GPU machine) when it exists. Results are recorded in
benchmarks/data/coverage.json; a part not rerun keeps its recorded results.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "data", "coverage.json")
H200 = os.path.join(ROOT, "benchmarks", "data", "h200_results", "coverage_models.json")
DOC = os.path.join(ROOT, "docs", "coverage.md")
TORCHVISION = os.path.join(ROOT, "models", "torchvision")

X = (1, 4, 6, 6)  # the default input of a sample


def i64(*v):
    return np.array(v, np.int64)


def f32(*shape, lo=-1.0, hi=1.0, seed=1):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


# ONNX operator -> (what it becomes, sample: attributes, constant inputs after x (None: absent),
# opset, input shape). The table's "runs as" column; a sample of every operator the importer maps.
SAMPLES = {
    "Abs": ("unary abs", {}, [], 13, X), "Ceil": ("unary ceil", {}, [], 13, X),
    "Elu": ("unary elu", {"alpha": 0.7}, [], 13, X), "Erf": ("unary erf", {}, [], 13, X),
    "Exp": ("unary exp", {}, [], 13, X), "Floor": ("unary floor", {}, [], 13, X),
    "Gelu": ("unary gelu (exact) / gelu_tanh", {}, [], 20, X),
    "HardSigmoid": ("unary hard_sigmoid", {"alpha": 0.3}, [], 13, X),
    "HardSwish": ("unary hard_swish", {}, [], 14, X),
    "LeakyRelu": ("unary leaky_relu", {"alpha": 0.1}, [], 13, X), "Log": ("unary log", {}, [], 13, X),
    "Neg": ("unary neg", {}, [], 13, X), "Reciprocal": ("unary reciprocal", {}, [], 13, X),
    "Relu": ("unary relu", {}, [], 13, X), "Selu": ("unary selu", {}, [], 13, X),
    "Shrink": ("unary shrink", {"lambd": 0.3, "bias": 0.1}, [], 13, X), "Sigmoid": ("unary sigmoid", {}, [], 13, X),
    "Sign": ("unary sign", {}, [], 13, X), "Softplus": ("unary softplus", {}, [], 13, X),
    "Softsign": ("unary softsign", {}, [], 13, X), "Sqrt": ("unary sqrt", {}, [], 13, X),
    "Tanh": ("unary tanh", {}, [], 13, X),
    "Clip": ("unary clip (relu6 for 0..6)", {}, [np.float32(-0.5), np.float32(0.5)], 13, X),
    "Add": ("binary add", {}, [f32(4, 1, 1)], 13, X), "Sub": ("binary sub", {}, [f32(6)], 13, X),
    "Mul": ("binary mul", {}, [f32(1, 6)], 13, X), "Div": ("binary div", {}, [f32(6, lo=1, hi=2)], 13, X),
    "Pow": ("binary pow", {}, [f32(6, lo=0.5, hi=2)], 13, X),
    "PRelu": ("binary prelu", {}, [f32(4, 1, 1)], 13, X),
    "Max": ("binary max (a chain for more inputs)", {}, [f32(6), f32(1, 6)], 13, X),
    "Min": ("binary min (a chain)", {}, [f32(6), f32(1, 6)], 13, X),
    "Sum": ("binary add (a chain)", {}, [f32(6), f32(1, 6)], 13, X),
    "Mean": ("binary add chain, then mul", {}, [f32(6), f32(1, 6)], 13, X),
    "BatchNormalization": ("conv2d weights when it follows a conv, else binary mul, add", {"epsilon": 1e-3},
                           [f32(4), f32(4), f32(4), f32(4, lo=0.5, hi=1.5)], 13, X),
    "Conv": ("conv2d (+ bias_add); 1-D through 2-D", {"kernel_shape": [3, 3], "pads": [1, 0, 1, 2], "group": 2},
             [f32(6, 2, 3, 3), f32(6)], 13, X),
    "ConvTranspose": ("conv_transpose2d (+ bias_add); 1-D through 2-D", {"kernel_shape": [3, 3], "strides": [2, 2]},
                      [f32(4, 3, 3, 3)], 13, X),
    "Gemm": ("matmul (+ bias_add); transposes at import or remap", {"transB": 1, "alpha": 0.5},
             [f32(5, 6), f32(5)], 13, (3, 6)),
    "MatMul": ("matmul, batched and broadcast; 1-D operands reshaped", {}, [f32(2, 6, 5)], 13, (3, 1, 4, 6)),
    "MaxPool": ("pool2d max (dilations, ceil_mode); 1-D through 2-D",
                {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1, "dilations": [1, 2]}, [], 12, X),
    "AveragePool": ("pool2d avg (count_include_pad, ceil_mode); 1-D through 2-D",
                    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 0, 0], "count_include_pad": 1}, [],
                    13, X),
    "GlobalAveragePool": ("reduce mean", {}, [], 13, X), "GlobalMaxPool": ("reduce max", {}, [], 13, X),
    "ReduceMean": ("reduce mean", {"axes": [1, 3]}, [], 13, X),
    "ReduceMax": ("reduce max", {"axes": [2]}, [], 13, X),
    "ReduceSum": ("reduce sum", {"keepdims": 0}, [i64(1)], 13, X),
    "Softmax": ("softmax (before opset 13 on its 2-D view)", {"axis": 1}, [], 11, X),
    "LogSoftmax": ("softmax log", {"axis": 2}, [], 13, X),
    "LRN": ("binary mul, reshape, pool2d avg, binary mul/add/pow/div", {"size": 3}, [], 13, X),
    "LayerNormalization": ("normalize + binary mul, add", {"axis": -2}, [f32(6, 6), f32(6, 6)], 17, X),
    "InstanceNormalization": ("normalize + binary mul, add", {}, [f32(4), f32(4)], 13, X),
    "GroupNormalization": ("reshape, normalize, reshape + binary mul, add", {"num_groups": 2},
                           [f32(4), f32(4)], 21, X),
    "Flatten": ("reshape", {"axis": 2}, [], 13, X), "Reshape": ("reshape", {}, [i64(4, -1)], 13, X),
    "Squeeze": ("reshape", {}, [i64(0)], 13, X), "Unsqueeze": ("reshape", {}, [i64(1)], 13, X),
    "Concat": ("concat", {"axis": 1}, [f32(1, 2, 6, 6)], 13, X),
    "Transpose": ("remap", {"perm": [0, 2, 3, 1]}, [], 13, X),
    "Slice": ("remap", {}, [i64(5, 0), i64(0, 6), i64(2, 3), i64(-2, 2)], 13, X),
    "Split": ("remap per output", {"axis": 1}, [i64(1, 3)], 13, X),
    "Expand": ("remap", {}, [i64(2, 4, 6, 6)], 13, X), "Tile": ("remap (wrap)", {}, [i64(1, 1, 2, 1)], 13, X),
    "Pad": ("remap (constant, edge, reflect, wrap)", {"mode": "reflect"}, [i64(0, 0, 2, 1, 0, 0, 1, 3)], 13, X),
    "Gather": ("remap (a scalar index) or gather", {"axis": 1}, [i64(3, -1, 0)], 13, X),
    "DepthToSpace": ("reshape, remap, reshape", {"blocksize": 2}, [], 13, X),
    "SpaceToDepth": ("reshape, remap, reshape", {"blocksize": 2}, [], 13, X),
    "Resize": ("resize (nearest, linear)", {"mode": "linear"}, [None, np.array([1, 1, 2, 1.5], np.float32)], 13, X),
    "Upsample": ("resize (nearest, linear)", {"mode": "nearest"}, [np.array([1, 1, 2, 2], np.float32)], 9, X),
    "Identity": ("nothing (the input)", {}, [], 13, X), "Dropout": ("nothing (inference)", {}, [], 13, X),
    "Cast": ("nothing (float to float)", {"to": 1}, [], 13, X),
    "CumSum": ("scan (host for a non-constant axis)", {}, [i64(2)], 13, X),
    "TopK": ("topk, take_along_axis (host for a non-constant k)", {}, [i64(3)], 13, X),
    "NonMaxSuppression": ("nms per class (host for batches, centre boxes)", {}, None, 13, None),
}


def sample_model(op: str):
    from onnx import TensorProto, helper, numpy_helper

    _, attrs, consts, opset, shape = SAMPLES[op]
    if op == "NonMaxSuppression":  # boxes and scores inputs, constant limits
        boxes = np.random.default_rng(0).integers(0, 6, (1, 10, 4)).astype(np.float32)
        inputs = [("boxes", boxes.shape), ("scores", (1, 2, 10))]
        names = ["boxes", "scores", "k", "iou", "score"]
        inits = [("k", i64(3)), ("iou", np.array([0.3], np.float32)), ("score", np.array([0.1], np.float32))]
        feeds = {"boxes": boxes, "scores": f32(1, 2, 10, lo=0, hi=1)}
    else:
        inputs = [("x", shape)]
        names, inits = ["x"], []
        for k, c in enumerate(consts):
            names.append("" if c is None else f"c{k}")
            if c is not None:
                inits.append((f"c{k}", np.asarray(c)))
        lo = 0.1 if op in ("Sqrt", "Log", "Reciprocal", "Pow") else -1.0
        feeds = {"x": f32(*shape, lo=lo, hi=1.0, seed=2)}
    outs = ["y", "i"] if op == "TopK" else ["y"]
    node = helper.make_node(op, names, outs, **attrs)
    nodes = [node]
    if op == "Split":
        node.output[:] = ["y", "y2"]
        outs = ["y", "y2"]
    if op == "Gelu":
        nodes.append(helper.make_node("Gelu", ["x"], ["t"], approximate="tanh"))
        outs.append("t")
    g = helper.make_graph(nodes, op, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(o, TensorProto.INT64 if o == "i" or op == "NonMaxSuppression"
                                                         else TensorProto.FLOAT, None) for o in outs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m, feeds


def compare(got, want, rtol=1e-3, atol=1e-4) -> str | None:
    """None when every output matches (shape, dtype, values), else what differs."""
    for k, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape or g.dtype != w.dtype:
            return f"output {k}: {g.dtype}{g.shape}, onnxruntime {w.dtype}{w.shape}"
        # the output's own scale (random networks can end in tiny logits)
        scale = max(float(np.abs(w).max()), 1e-12) if w.size and w.dtype.kind == "f" else 1.0
        if not np.allclose(g, w, rtol=rtol, atol=atol * scale, equal_nan=True):
            return f"output {k}: largest difference {np.abs(g.astype(np.float64) - w).max():.3g}"
    return None


def nvcc_compiles(sources: list[str]) -> str:
    """"yes" when nvcc -arch=sm_90 compiles every segment's CUDA text, "no nvcc" without the
    toolkit, else the first error."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "no nvcc"
    with tempfile.TemporaryDirectory() as d:
        for k, src in enumerate(sources):
            path = os.path.join(d, f"seg{k}.cu")
            with open(path, "w") as f:
                f.write(src)
            r = subprocess.run([nvcc, "-arch=sm_90", "--ptx", "-O1", path, "-o", path + ".ptx"],
                               capture_output=True, text=True)
            if r.returncode:
                return "error: " + (r.stderr.strip().splitlines() or ["?"])[0][:120]
    return "yes"


def cuda_sources(model) -> list[str]:
    from sched_dsl.graph.executor import plan_steps, prepare
    from sched_dsl.graph.onnx_import import import_onnx

    steps, _ = plan_steps(prepare(import_onnx(model).module), "cuda", None)
    return [s.segment.source for s in steps if s.kind == "gpu"]


def run_model(model, feeds) -> tuple[str, float]:
    """("pass" | what differs | the error, seconds) of the model on PoCL against onnxruntime."""
    import onnxruntime as ort

    import sched_dsl as sd

    t0 = time.perf_counter()
    raw = model.SerializeToString() if not isinstance(model, str) else model
    want = ort.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(None, feeds)
    try:
        got = sd.load_onnx(model).run(None, feeds)
    except Exception as e:  # noqa: BLE001 - recorded in the table
        return f"{type(e).__name__}: {str(e).splitlines()[0][:150]}", time.perf_counter() - t0
    return compare(got, want) or "pass", time.perf_counter() - t0


def operators() -> dict:
    from sched_dsl.graph.onnx_import import GPU_OPS

    missing = sorted(set(GPU_OPS) - set(SAMPLES))
    if missing:
        raise SystemExit(f"coverage.py: no SAMPLES entry for {', '.join(missing)}")
    rows = {}
    for op in sorted(SAMPLES):
        model, feeds = sample_model(op)
        status, secs = run_model(model, feeds)
        rows[op] = {"runs_as": SAMPLES[op][0], "opencl": status, "cuda_text": nvcc_compiles(cuda_sources(model))}
        print(f"  {op}: opencl {status}, cuda text {rows[op]['cuda_text']} ({secs:.1f}s)", flush=True)
    return rows


def backend(cases) -> dict:
    from sched_dsl.testing.onnx_backend import run_case

    out = {}
    for case in cases:
        r = run_case(case)
        out[case.name] = {"kind": case.kind, "status": r.status, "outside": case.outside,
                          "message": r.message.replace("the model has nodes sched-dsl cannot run:", "").strip()[:200],
                          "seconds": round(r.seconds, 1)}
        print(f"  {case.name}: {r.status} ({r.seconds:.1f}s)", flush=True)
    return out


# model -> (how it is built, arguments): as tests/test_models.py builds them
EXAMPLE_MODELS = {"resnet18": {"size": 32}, "mobilenetv2": {"size": 32}, "ssd": {"size": 32},
                  "yolov3_tiny": {"size": 64, "width": 0.25, "classes": 4}, "retinanet": {"size": 64}}


def models() -> dict:
    spec = importlib.util.spec_from_file_location("make_models", os.path.join(ROOT, "examples", "make_models.py"))
    mm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mm)
    rows = {}
    for name, kw in EXAMPLE_MODELS.items():
        kw = dict(kw)
        size = kw.pop("size")
        model = mm.MODELS[name](size, **kw)
        feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)}
        status, secs = run_model(model, feeds)
        rows[name] = {"source": f"examples/make_models.py ({size}x{size}{', ' if kw else ''}"
                                f"{', '.join(f'{k}={v}' for k, v in kw.items())})",
                      "opencl": status, "cuda_text": nvcc_compiles(cuda_sources(model))}
        print(f"  {name}: {status} ({secs:.1f}s)", flush=True)
    for path in sorted(glob.glob(os.path.join(TORCHVISION, "*.onnx"))):
        import onnx

        name = os.path.basename(path)[:-5]
        m = onnx.load(path)
        shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
        feeds = {m.graph.input[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        status, secs = run_model(path, feeds)
        rows[name] = {"source": TORCHVISION_SOURCES.get(name, "torchvision") + ", random weights, torch.onnx.export "
                                "(opset 17), 224x224", "opencl": status,
                      "cuda_text": nvcc_compiles(cuda_sources(path))}
        print(f"  {name}: {status} ({secs:.1f}s)", flush=True)
    return rows


TORCHVISION_SOURCES = {"convnext_narrow": "torchvision's ConvNeXt, stages of 32/64/128/256 channels",
                       "googlenet": "torchvision's GoogLeNet (MaxPool with ceil_mode), without the training-only "
                                    "auxiliary classifiers",
                       "vit_tiny": "torchvision's VisionTransformer, 4 layers, 4 heads, width 128"}


def unsupported_ops() -> list[str]:
    """ai.onnx operators (latest schemas) the importer does not map."""
    import onnx

    from sched_dsl.graph.onnx_import import GPU_OPS, HOST_ONLY

    names = {s.name for s in onnx.defs.get_all_schemas() if s.domain in ("", "ai.onnx") and not s.deprecated}
    return sorted(names - set(GPU_OPS) - set(HOST_ONLY) - {"Constant"})


def mark(s: str) -> str:
    return "yes" if s in ("pass", "yes") else s


H200_NOTE = """PyTorch's side: the torchvision network itself; for the detectors (built with onnx.helper),
their PyTorch twin (`benchmarks/onnx_torch.py`: the network replayed as a CUDA graph, NMS eager,
as torchvision's detectors run it). In the recorded runs cuDNN's default TF32 was on for
PyTorch, so its convs ran at TF32 while ours ran at fp32 (this favours PyTorch;
`bench_coverage.py` now turns TF32 off). RetinaNet's time is its NonMaxSuppression: 63 of
67 ms in a per-layer profile (`benchmarks/profile_layers.py --models retinanet
--detector-size 256`) are the eight per-class suppression kernels, each a sequential pass over
the 4,032 boxes with a barrier per step."""


README = os.path.join(ROOT, "README.md")
H200_MODELS = os.path.join(ROOT, "benchmarks", "data", "h200_results", "models_split_k.json")
README_BEGIN, README_END = "<!-- coverage table: scripts/coverage.py writes it -->", "<!-- end of coverage table -->"


def readme_table(results: dict) -> str:
    """The README's summary of docs/coverage.md: counts per kind of model and case."""
    h200 = {k: v for k, v in (json.load(open(H200)) if os.path.isfile(H200) else {}).items() if isinstance(v, dict)}
    ops = results.get("operators", {})
    be = results.get("backend", {})
    cases = [r for r in be.values() if r["kind"] != "light"]
    within = [r for r in cases if not r["outside"]]
    light = [r for r in be.values() if r["kind"] == "light"]
    models = results.get("models", {})

    def count(rows, key):
        return sum(1 for r in rows if mark(r[key]) == "yes")

    # bench_models.py's rows check their outputs against onnxruntime too
    for r in (json.load(open(H200_MODELS)).get("rows", []) if os.path.isfile(H200_MODELS) else []):
        if r.get("max_rel_err", 1.0) < 1e-3:
            h200.setdefault(r["model"], {"status": "pass"})

    def on_h200(names):
        return sum(1 for n in names if h200.get(n, {}).get("status") == "pass")

    tv = [n for n, r in models.items() if r["source"].startswith("torchvision")]
    ours = [n for n in models if n not in tv]
    rows = [
        ("ONNX operators, one-node models", f"{count(ops.values(), 'opencl')} of {len(ops)}",
         f"{count(ops.values(), 'cuda_text')} of {len(ops)}", ""),
        ("onnx wheel backend cases within our operators' families", f"{sum(r['status'] == 'pass' for r in within)} "
         f"of {len(within)} (the {len(cases) - len(within)} outside: a named import error)", "", ""),
        ("onnx wheel light models (ImageNet networks), as shipped",
         f"{sum(r['status'] == 'pass' for r in light)} of {len(light)}" if light else "not run", "", ""),
        ("torchvision exports (torch.onnx, opset 17)", f"{count([models[n] for n in tv], 'opencl')} of {len(tv)}",
         f"{count([models[n] for n in tv], 'cuda_text')} of {len(tv)}", f"{on_h200(tv)} of {len(tv)}"),
        ("examples/make_models.py (ResNet, MobileNetV2, SSD, YOLOv3-tiny, RetinaNet)",
         f"{count([models[n] for n in ours], 'opencl')} of {len(ours)}",
         f"{count([models[n] for n in ours], 'cuda_text')} of {len(ours)}", f"{on_h200(ours)} of {len(ours)}"),
    ]
    lines = ["| | OpenCL (PoCL), matching onnxruntime | CUDA C compiles (nvcc) | runs on an H200 |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def write_readme_table(results: dict) -> None:
    text = open(README).read()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{README} has no coverage table markers ({README_BEGIN} ... {README_END})")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    with open(README, "w") as f:
        f.write(f"{head}{README_BEGIN}\n{readme_table(results)}\n{README_END}{tail}")


def render(results: dict) -> str:
    from sched_dsl.testing.onnx_backend import ATOL, RTOL

    h200 = {k: v for k, v in (json.load(open(H200)) if os.path.isfile(H200) else {}).items() if isinstance(v, dict)}
    lines = [HEAD.format(rtol=RTOL, atol=ATOL, when=results.get("when", "?"))]
    ops = results.get("operators", {})
    lines += ["## ONNX operators", "",
              "Each supported operator as a one-node model (SAMPLES in scripts/coverage.py): its result on "
              "PoCL against onnxruntime, and whether nvcc -arch=sm_90 compiles its CUDA C. \"Runs as\" names the "
              "tensorop ops it becomes; all of them run on the GPU (the host only for the forms named).", "",
              "| ONNX operator | Runs as (tensorop) | OpenCL (PoCL) | CUDA C compiles |", "|---|---|---|---|"]
    for op, r in ops.items():
        lines.append(f"| {op} | {r['runs_as']} | {mark(r['opencl'])} | {mark(r['cuda_text'])} |")
    lines += ["", "Folded at import: Shape and Size always (shapes are static), and any operator whose inputs "
              "are all constants (ConstantOfShape, Range, Cast, Equal, Where, ... : whatever onnx's reference "
              "implementation evaluates), once, in numpy.", "",
              "Not mapped to kernels (an import error naming the node, unless its inputs are all constants): "
              f"{', '.join(op for op in unsupported_ops() if op not in ('Shape', 'Size'))}.", ""]
    be = results.get("backend", {})
    kinds = {}
    for name, r in be.items():
        k = kinds.setdefault(r["kind"], {"pass": 0, "outside": 0, "fail": 0, "total": 0})
        k["total"] += 1
        k["pass" if r["status"] == "pass" else "outside" if r["outside"] and r["status"] == "unsupported" else "fail"] += 1
    lines += ["## The onnx wheel's backend data", "",
              "tests/test_onnx_backend.py; every case within our families must pass, every case outside them "
              "must be an import error naming the node (or input) and the reason. (This onnx wheel ships no "
              "node/ cases.)", "",
              "| Folder | Cases | Pass | Outside (clear import error) | Failing |", "|---|---|---|---|---|"]
    for kind, k in sorted(kinds.items()):
        lines.append(f"| {kind} | {k['total']} | {k['pass']} | {k['outside']} | {k['fail']} |")
    lines += ["", "Outside our families:", ""]
    for name, r in be.items():
        if r["outside"]:
            lines.append(f"- `{name}`: {r['message'].splitlines()[0] if r['message'] else r['outside']}")
    failing = [n for n, r in be.items() if r["status"] != "pass" and not r["outside"]]
    lines += ["", f"Failing: {', '.join(failing) if failing else 'none'}.", ""]
    lines += ["## Models", "",
              "On PoCL against onnxruntime (random input; the light models as onnx's runner feeds them, "
              "against their shipped outputs); \"CUDA C compiles\": every segment's text with nvcc -arch=sm_90; "
              "\"H200\": an end-to-end run on CUDA, its time beside PyTorch's under a CUDA graph, where measured.",
              "", "| Model | Source | OpenCL (PoCL) | CUDA C compiles | H200 (ours / PyTorch CUDA graph, ms) |",
              "|---|---|---|---|---|"]
    for name, r in be.items():
        if r["kind"] == "light":
            lines.append(f"| {name[6:]} | onnx wheel, light/ (as shipped) | {mark(r['status'])} | | |")
    for name, r in results.get("models", {}).items():
        t = h200.get(name)
        timing = ""
        if t and t.get("ours_ms") is not None:
            torch_ms = f"{t['torch_graph_ms']:.2f}" if t.get("torch_graph_ms") else "no PyTorch twin"
            timing = f"{t['status']}: {t['ours_ms']:.2f} / {torch_ms} at {t.get('size', '?')}"
        elif t:
            timing = t.get("status", "")
        lines.append(f"| {name} | {r['source']} | {mark(r['opencl'])} | {mark(r['cuda_text'])} | {timing} |")
    lines += ["", H200_NOTE, "", TAIL]
    return "\n".join(lines) + "\n"


HEAD = """# Model coverage

Which ONNX operators and which models sched-dsl runs, on which targets. Generated by
`scripts/coverage.py` (results recorded in `benchmarks/data/coverage.json`, last run {when});
outputs are compared within rtol {rtol} and atol {atol} (scaled by the output's largest value
for whole models).

Targets: **OpenCL** runs here on PoCL (the CPU); **CUDA C** is the same kernels printed for
CUDA, compiled with `nvcc -arch=sm_90` on this machine and run on an H200 where the table
says so. Import turns a model into tensorop ops: constants are folded first (ConstantOfShape,
Shape/Gather/Unsqueeze/Concat chains, ...), so every tensor has a static shape; rank-0 tensors
stay rank 0 at the model's boundary. float64 tensors, integer arithmetic at run time, 3-D
convolution and pooling, sequences, strings and control flow are import errors that name the
node and the reason, never a traceback.
"""

TAIL = """## Semantics worth knowing

- Gather's indices are checked at import when they are constants; indices that are model
  inputs are clamped into range on the device (a read never leaves the tensor), where
  onnxruntime raises an error.
- SAME padding of a dilated pooling window follows the ONNX text (the dilated window);
  onnxruntime pads for the undilated kernel, so the two differ there. A ConvTranspose with
  SAME that needs no padding has its natural size, as in onnxruntime.
- LRN takes even sizes too (onnxruntime only odd ones); Resize's cubic mode,
  tf_crop_and_resize, antialias and exclude_outside, and AveragePool with dilations, are
  import errors.
- float64 model inputs are import errors: computing them in float32 could change results.
- A Dropout's mask output, when used, is a constant of ones (inference); training mode is
  an import error.

## Running the suites

The operator cases of the onnx wheel and one light model (AlexNet) run with the test suite:

```sh
# long run
.venv/bin/python -m pytest -q tests/test_onnx_backend.py tests/test_onnx_operators.py
```

All nine light models (full-size ImageNet networks: an hour on two CPU cores, less once PoCL
has cached the kernels), and the Hypothesis operator tests with more examples:

```sh
# long run
SCHED_DSL_ONNX_FULL=1 .venv/bin/python -m pytest -q tests/test_onnx_backend.py
SCHED_DSL_ONNX_EXAMPLES=50 .venv/bin/python -m pytest -q tests/test_onnx_operators.py
```

This page again (add `--light` to rerun the light models, `--render-only` to rewrite it from
the recorded results):

```sh
# long run
.venv/bin/python scripts/coverage.py
```

The torchvision rows need the exported files in `models/torchvision/` (not in git; torch is not
needed here, only to export): on a machine with torch and torchvision,

```sh
# long run
python benchmarks/bench_coverage.py --export models/torchvision
```

writes squeezenet1_1, mobilenet_v3_small, shufflenet_v2_x0_5 and the other exports there; on a
CUDA machine `python benchmarks/bench_coverage.py --run` times them against PyTorch under a
CUDA graph into `benchmarks/data/h200_results/coverage_models.json`."""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--light", action="store_true", help="also run the nine light models (long)")
    ap.add_argument("--only", choices=("operators", "backend", "light", "models"),
                    help="rerun this part only, keep the recorded results of the others")
    ap.add_argument("--render-only", action="store_true", help="only rewrite docs/coverage.md from the results")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    from sched_dsl.testing.onnx_backend import light_cases, operator_cases

    results = json.load(open(RESULTS)) if os.path.isfile(RESULTS) else {}
    results.setdefault("backend", {})
    if args.render_only and not results.get("operators"):
        ap.error(f"no recorded results in {RESULTS}: run without --render-only first")
    parts = [] if args.render_only else [args.only] if args.only else \
        ["operators", "backend", "models"] + (["light"] if args.light else [])
    for part in parts:
        print(f"{part}:")
        if part == "operators":
            results["operators"] = operators()
        elif part in ("backend", "light"):
            results["backend"].update(backend(operator_cases() if part == "backend" else light_cases()))
        else:
            results["models"] = models()
    if parts:
        results["when"] = time.strftime("%Y-%m-%d")
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "w") as f:
            json.dump(results, f, indent=1)
    with open(DOC, "w") as f:
        f.write(render(results))
    write_readme_table(results)
    print(f"wrote {DOC} and the table in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
