"""Tensor-core GEMMs against cuBLAS (through torch.matmul) in bf16, fp16 and tf32, on one
CUDA GPU in one run: the tensorized GEMM template (sched_dsl.graph.model_schedules.
tc_gemm_tiles) at several tile configurations, on the CUDA target and, where NVIDIA's
OpenCL platform is registered, on the OpenCL target from the same schedule.

bf16 and fp16: bf16/fp16 operands and result, f32 accumulation (cuBLAS: torch.matmul on
bf16/fp16 tensors). tf32: f32 operands and result, products at TF32 precision (cuBLAS with
torch.backends.cuda.matmul.allow_tf32). 3xtf32: f32 operands and result, each product as three
TF32 ones (near f32's precision), against cuBLAS's SGEMM (TF32 off). Times are means over back-to-back launches after
warm-ups between CUDA events, for ours (CUDA target) and cuBLAS alike; the OpenCL target's
are the sum of its kernels' profiling times. Speed = cuBLAS time / our time.

    python benchmarks/bench_precision.py --json benchmarks/data/precision_h200.json [--quick]
    python benchmarks/bench_precision.py --convs --precisions bf16 --json convs_bf16.json

`--convs` times ResNet-18's 3x3 convs instead (`--precisions` may also name fp32, and
3xtf32: ours near f32's precision on tensor cores, cuDNN in fp32 with TF32 off): cuDNN in
the precision (benchmark mode, the faster of NCHW and channels-last) against each conv run as
a one-conv model on the CUDA target, as a matmul, with Winograd's transforms and with the
direct template (see conv_rows).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import sched_dsl as sd  # noqa: E402
from bench_kernels import close, nvidia_opencl, torch_time  # noqa: E402
from sched_dsl.graph.model_schedules import tc_gemm_defaults, tc_gemm_tiles, tc_shared_bytes  # noqa: E402

PRECISIONS = ("bf16", "fp16", "tf32", "3xtf32")
DTYPE = {"bf16": "bf16", "fp16": "f16", "tf32": "f32", "3xtf32": "f32"}
INTRINSIC = {"bf16": "mma.m16n8k16", "fp16": "mma.m16n8k16", "tf32": "mma.m16n8k8", "3xtf32": "mma.m16n8k8"}
# (bm, bn, bk, wm, wn, stages); those over 48 KiB of shared memory take CUDA's dynamic shared
# memory and run on the CUDA target only (NVIDIA's OpenCL has 48 KiB of __local per block)
CONFIGS = {
    "mma.m16n8k16": [(128, 128, 32, 64, 64, 2), (128, 256, 32, 64, 64, 3), (256, 128, 32, 64, 64, 3),
                     (128, 128, 64, 64, 64, 3), (128, 128, 32, 64, 64, 4), (128, 256, 16, 64, 64, 4),
                     (64, 128, 32, 32, 64, 3), (128, 64, 32, 64, 32, 3), (64, 64, 64, 32, 32, 3)],
    "mma.m16n8k8": [(128, 128, 16, 64, 64, 2), (128, 128, 32, 64, 64, 3), (128, 256, 16, 64, 64, 3),
                    (128, 128, 16, 64, 64, 4), (128, 64, 16, 64, 32, 3), (64, 128, 16, 32, 64, 3)],
}
# Hopper's warpgroup mma (bf16/fp16, CUDA only): warpgroups of wm x wn, wgmma.m64n{wn}k16, bk 64
WGMMA_CONFIGS = [(256, 128, 64, 64, 128, 4), (128, 256, 64, 64, 256, 4), (256, 128, 64, 128, 128, 4),
                 (128, 128, 64, 64, 128, 6), (256, 128, 64, 128, 128, 3), (128, 128, 64, 64, 64, 4)]
SMALL = 1024  # at this size and below, block tiles of at most 128 x 128 (enough blocks for the SMs)
OPENCL_SHARED = 48 * 1024


def intrinsic_of(precision: str, tiles: tuple[int, ...], wgmma: bool) -> str:
    return f"wgmma.m64n{tiles[4]}k16" if wgmma else INTRINSIC[precision]


def gemm(n: int, precision: str, tiles: tuple[int, ...], intrinsic: str, tma: bool = False):
    dtype = DTYPE[precision]
    a, b = sd.placeholder("A", (n, n), dtype), sd.placeholder("B", (n, n), dtype)
    c = sd.matmul(a, b, name="C", precision=precision if precision in ("tf32", "3xtf32") else None)
    s = sd.Schedule(c)
    tc_gemm_tiles(s, c, a, b, *tiles, intrinsic, tma=tma)
    return c, s


def configs(n: int, precision: str, quick: bool, only: str | None = None,
            wgmma: bool = False) -> list[tuple[int, ...]]:
    """The default tile, then CONFIGS that divide n (or the `only` list, "128x128x32x64x64x2,...");
    with `wgmma`, WGMMA_CONFIGS that divide n."""
    intrinsic = INTRINSIC[precision]
    if only:
        return [tuple(int(v) for v in c.split("x")) for c in only.split(",")]
    if wgmma:
        return [t for t in WGMMA_CONFIGS if all(n % v == 0 for v in t[:3])][:3 if quick else None]
    d = tc_gemm_defaults(n, n, n, intrinsic)
    found = [tuple(d[k] for k in ("bm", "bn", "bk", "wm", "wn", "stages"))] if d else []
    for t in CONFIGS[intrinsic]:
        if t not in found and all(n % v == 0 for v in t[:3]) and (n > SMALL or t[0] * t[1] <= 128 * 128):
            found.append(t)
    return found[:3] if quick else found


def conv_model(c: int, size: int):
    """One 3x3 conv (padding 1, no bias) of c channels at size x size, as an ONNX model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = (np.random.default_rng(1).standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, size, size])], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), w


def conv_kernel_ms(sess, feeds, repeat: int) -> tuple[float, dict[str, float]]:
    """The conv's own kernels (the model's input and output casts left out), each timed by the
    session's profile (on CUDA: launched back to back from a CUDA graph), median over `repeat`
    runs: the total and each kernel's."""
    casts = {op.split("=")[0].strip().lstrip("%") for op in sess.ir.splitlines() if "tensorop.cast" in op}
    runs = [[(layer, ms) for layer, kind, ms in sess.profile(feeds) if kind == "kernel" and layer not in casts]
            for _ in range(repeat)]
    parts = {layer: float(np.median([run[i][1] for run in runs])) for i, (layer, _) in enumerate(runs[0])}
    return float(np.median([sum(ms for _, ms in run) for run in runs])), parts


def conv_rows(precision: str, repeat: int, warmup: int, torch, tmp: str, records: str | None = None) -> list[dict]:
    """ResNet-18's 3x3 convs in `precision` (bf16, fp16, tf32, fp32 with TF32 off, or 3xtf32
    against cuDNN in fp32 with TF32 off): cuDNN
    (benchmark mode, the faster of NCHW and channels-last) against ours as a model (load_onnx on
    CUDA): the conv as a matmul (conv_algorithm "gemm": im2col, the product, a remap where the
    output was padded; on tensor cores except in fp32), as one whose product gathers the
    windows itself ("implicit", on tensor cores), with Winograd's transforms ("winograd":
    the input transform, the batched product, the output transform) and the direct template.
    `records`: tuning records our kernels take their configs from (untuned without)."""
    import onnx

    sys.path.insert(0, os.path.join(HERE, "..", "examples"))
    from resnet_conv_schedule import RESNET18_3X3

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    # 3xtf32 keeps f32's precision: its peer is cuDNN in fp32 with TF32 off
    tdtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    rows = []
    for c, size in RESNET18_3X3:
        model, w = conv_model(c, size)
        path = os.path.join(tmp, f"conv{c}x{size}.onnx")
        onnx.save(model, path)
        x = np.random.default_rng(0).standard_normal((1, c, size, size)).astype(np.float32)
        work = f"conv {c}x{size}x{size} 3x3 {precision}"
        want = torch.nn.functional.conv2d(torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda(), padding=1)
        want = want.cpu().numpy()
        best = None
        for layout in (torch.contiguous_format, torch.channels_last):
            tx = torch.from_numpy(x).cuda().to(tdtype).contiguous(memory_format=layout)
            tw = torch.from_numpy(w).cuda().to(tdtype).contiguous(memory_format=layout)
            ms = torch_time(lambda: torch.nn.functional.conv2d(tx, tw, padding=1), repeat, warmup)
            if best is None or ms < best[0]:
                best = (ms, "NCHW" if layout is torch.contiguous_format else "channels-last",
                        close(torch.nn.functional.conv2d(tx, tw, padding=1).float().cpu().numpy(), want))
        base, layout, err = best
        rows.append(dict(workload=work, precision=precision, impl=f"cuDNN ({layout})", ms=base, speed=1.0,
                         max_rel_err=err))
        print(f"{work}: cuDNN {layout} {base * 1e3:8.1f} us  err {err:.1e}", flush=True)
        for algorithm in ("gemm", "implicit", "winograd", "direct"):
            try:
                sess = sd.load_onnx(path, target="cuda", precision=None if precision == "fp32" else precision,
                                    conv_algorithm=algorithm, records=records)
                err = close(sess.run(None, {"x": x})[0], want)
                ms, parts = conv_kernel_ms(sess, {"x": x}, repeat)
            except Exception as e:  # noqa: BLE001 - a configuration the device rejects is a result
                msg = " | ".join(line for line in str(e).splitlines() if line.strip())[:800]
                rows.append(dict(workload=work, precision=precision, impl=algorithm, error=msg))
                print(f"  {algorithm}: {type(e).__name__}: {msg}", flush=True)
                continue
            tc = any("mma.sync" in text for st in sess.steps if st.kind == "gpu" for _, text in st.segment.units)
            rows.append(dict(workload=work, precision=precision, impl=algorithm, ms=ms, speed=base / ms,
                             max_rel_err=err, tensor_cores=tc, kernels=sess.kernel_count, parts=parts))
            print(f"  {algorithm:<8} {ms * 1e3:8.1f} us  {base / ms:5.2f}x cuDNN  err {err:.1e}"
                  f"{'  (tensor cores)' if tc else ''}  [" + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in parts.items()) + "]",
                  flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default="bench_precision.json", help="where to write the results")
    p.add_argument("--sizes", default="1024,4096")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="three configurations per case")
    p.add_argument("--no-opencl", action="store_true")
    p.add_argument("--configs", help="tiles to run instead of the default list: bm x bn x bk x wm x wn x stages, "
                   "comma-separated")
    p.add_argument("--convs", action="store_true", help="ResNet-18's 3x3 convs against cuDNN instead of the GEMMs")
    p.add_argument("--records", help="with --convs: tuning records for our kernels (e.g. a model's, tuned)")
    p.add_argument("--wgmma", action="store_true", help="bf16/fp16 GEMMs on Hopper's warpgroup mma (CUDA target)")
    p.add_argument("--tma", action="store_true", help="with --wgmma: each tile also with its stages filled by TMA")
    args = p.parse_args()

    import ml_dtypes
    import torch
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch")
    opencl = nvidia_opencl() and not args.no_opencl
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; "
          f"OpenCL target: {'NVIDIA' if opencl else 'not available'}", flush=True)
    rows = []
    if args.convs:
        import tempfile
        tmp = tempfile.mkdtemp(prefix="bench_precision_")
        for precision in args.precisions.split(","):
            rows += conv_rows(precision, args.repeat, args.warmup, torch, tmp, args.records)
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
        return
    for precision in args.precisions.split(","):
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        tdtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        ndtype = {"bf16": ml_dtypes.bfloat16, "fp16": np.float16}.get(precision, np.float32)
        for n in (int(v) for v in args.sizes.split(",")):
            rng = np.random.default_rng(0)
            a = rng.standard_normal((n, n), dtype=np.float32).astype(ndtype)
            b = rng.standard_normal((n, n), dtype=np.float32).astype(ndtype)
            ta = torch.from_numpy(a.astype(np.float32)).cuda().to(tdtype)
            tb = torch.from_numpy(b.astype(np.float32)).cuda().to(tdtype)
            # the reference: f32 products of the same values, summed in f32 (TF32 off)
            torch.backends.cuda.matmul.allow_tf32 = False
            want = (ta.float() @ tb.float()).cpu().numpy()
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            flops = 2.0 * n ** 3
            work = f"GEMM {n}^3 {precision}"
            base = torch_time(lambda: ta @ tb, args.repeat, args.warmup)
            cublas_err = close((ta @ tb).float().cpu().numpy(), want)
            rows.append(dict(workload=work, precision=precision, n=n, impl="cuBLAS", ms=base,
                             tflops=flops / base / 1e9, speed=1.0, max_rel_err=cublas_err))
            print(f"{work}: cuBLAS {base * 1e3:8.1f} us {flops / base / 1e9:7.1f} TFLOP/s  err {cublas_err:.1e}",
                  flush=True)
            wgmma = args.wgmma and precision in ("bf16", "fp16")
            for tiles, tma in itertools.product(configs(n, precision, args.quick, args.configs, wgmma),
                                                (False, True) if wgmma and args.tma else (False,)):
                intrinsic = intrinsic_of(precision, tiles, wgmma)
                c, s = gemm(n, precision, tiles, intrinsic, tma)
                fits_opencl = not wgmma and tc_shared_bytes(*tiles[:3], tiles[5], intrinsic) <= OPENCL_SHARED
                for target in ("cuda", "opencl") if opencl and fits_opencl else ("cuda",):
                    name = (f"{target}:" + "x".join(map(str, tiles[:3])) + f"/w{tiles[3]}x{tiles[4]}/s{tiles[5]}"
                            + ("/tma" if tma else ""))
                    t0 = time.time()
                    try:
                        kern = sd.build(c, s, target=target)
                        got = np.asarray(kern(a, b), np.float32)
                        err = close(got, want)
                        ms = kern.runner.bench(args.repeat, args.warmup)
                    except Exception as e:  # a configuration the device rejects is a result
                        msg = " | ".join(line for line in str(e).splitlines() if line.strip())[:800]
                        rows.append(dict(workload=work, precision=precision, n=n, impl=name, error=msg))
                        print(f"  {name}: {type(e).__name__}: {msg}", flush=True)
                        continue
                    rows.append(dict(workload=work, precision=precision, n=n, impl=name, ms=ms,
                                     tflops=flops / ms / 1e9, speed=base / ms, max_rel_err=err,
                                     tensor_cores="mma" in kern.source, build_s=time.time() - t0))
                    print(f"  {name:<34} {ms * 1e3:8.1f} us {flops / ms / 1e9:7.1f} TFLOP/s  {base / ms:5.2f}x cuBLAS"
                          f"  err {err:.1e}{'' if 'mma' in kern.source else '  (no tensor cores)'}", flush=True)
    summary = []
    for work in dict.fromkeys(r["workload"] for r in rows):
        ok = [r for r in rows if r["workload"] == work and "ms" in r]
        base = next(r for r in ok if r["impl"] == "cuBLAS")
        line = {"workload": work, "cublas_ms": base["ms"]}
        for target in ("cuda", "opencl"):
            mine = [r for r in ok if r["impl"].startswith(target + ":")]
            if mine:
                best = min(mine, key=lambda r: r["ms"])
                line[target] = {"impl": best["impl"], "ms": best["ms"], "tflops": best["tflops"],
                                "speed": base["ms"] / best["ms"]}
        if "cuda" in line:
            same = [r for r in ok if r["impl"] == "opencl:" + line["cuda"]["impl"].split(":", 1)[1]]
            if same:
                line["opencl_vs_cuda"] = line["cuda"]["ms"] / same[0]["ms"]
        summary.append(line)
        print(json.dumps(line))
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows,
                   "summary": summary}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
