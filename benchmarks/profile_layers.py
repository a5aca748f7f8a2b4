"""Per-layer times of whole models on one device, as the JSON the simulator takes
(sched_dsl.graph.simulate.with_times): one file per model and batch, with the device's host
link (upload and download of a large buffer) and, where a second device is given, the link
between the two as the executor moves values (a peer copy where the GPUs allow it).

    python benchmarks/profile_layers.py --target cuda --models resnet50,ssd --batches 1,32 \\
        --out benchmarks/data/h200_profiles                       # one GPU: per-layer times, host link
    python benchmarks/profile_layers.py --target opencl --size 32 --models tiny --out /tmp/prof

Each file: {"model", "size", "batch", "target", "device", "repeat", "latency_ms" (end to end,
one device), "kernels", "layers": [{"name", "kind", "ms"}] (the median of --repeat profiled
runs), "host_link": {"gbps", "latency_us"}, "link": {...} or null}. The models come from
examples/make_models.py (random weights; the classifiers at --size, default 224, the detector
"ssd" at --detector-size, default 128). `benchmarks/bench_distributed.py --predict DIR` turns such files into the
simulator's predictions for 2, 4 and 8 devices.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from bench_models import make_models  # examples/make_models.py, loaded from its file




def model_proto(name: str, size: int, batch: int):
    mm = make_models()
    if name not in mm.MODELS:
        raise SystemExit(f"unknown model {name}; choose from {', '.join(mm.MODELS)}")
    return mm.MODELS[name](size, batch=batch)


def host_link(target: str, nbytes: int = 1 << 26, small: int = 4096, repeat: int = 5) -> dict:
    """Upload plus download of a buffer on the target's default device (the executor's device
    handle, as its transfers use it): the host link's bandwidth (from `nbytes`) and latency
    (from `small` bytes)."""
    from sched_dsl.graph.executor import Device

    dev = Device(target)

    def seconds(n):
        dev.activate()
        buf = dev.alloc(n)
        a = np.zeros(n // 4, np.float32)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            dev.upload(buf, a)
            a = dev.download(buf, a.shape)
            dev.finish()
            times.append((time.perf_counter() - t0) / 2)
        dev.deactivate()
        return float(np.median(times))

    t_small, t_big = seconds(small), seconds(nbytes)
    return {"gbps": (nbytes - small) / max(t_big - t_small, 1e-9) / 1e9, "latency_us": t_small * 1e6}


def profile_model(name: str, size: int, batch: int, target: str, repeat: int, records: str | None,
                  link_devices: list[int] | None) -> dict:
    import sched_dsl as sd
    from sched_dsl.graph.executor import measure_link

    model = model_proto(name, size, batch)
    sess = sd.load_onnx(model, target=target, records=records)
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(sess.shapes[sess.inputs_of[n]]).astype(np.float32) for n in sess.input_names}
    sess.run(None, feeds)
    runs = [sess.profile(feeds) for _ in range(repeat)]
    layers = [{"name": n, "kind": k, "ms": float(np.median([r[i][2] for r in runs]))}
              for i, (n, k, _) in enumerate(runs[0])]
    link = None
    if link_devices and len(link_devices) >= 2:
        link_ = measure_link(target, link_devices[:2])
        link = {"gbps": link_.gbps, "latency_us": link_.latency_us}
    return {"model": name, "size": size, "batch": batch, "target": target, "device": sess.device.name,
            "repeat": repeat, "latency_ms": sess.latency(feeds, repeat=max(3, repeat), warmup=2),
            "kernels": sess.kernel_count, "records": records, "layers": layers,
            "host_link": host_link(target), "link": link}


def estimate_profile(name: str, size: int, batch: int, results: str) -> dict:
    from sched_dsl.graph.onnx_import import import_onnx
    from sched_dsl.graph.simulate import layer_graph, with_times

    with open(results) as f:
        rows = json.load(f)["rows"]
    src = next((r for r in rows if r.get("fusion") and r.get("tuned")), rows[0])
    measured = with_times(layer_graph(import_onnx(model_proto(src["model"], src["size"], 1)).module),
                          {"layers": src["layers"]})
    anchors = sorted((L.flops, L.flops / (L.ms * 1e-3)) for L in measured if L.kind in ("conv2d", "matmul") and L.ms > 0)
    moved = lambda L: 4 * int(np.prod(L.in_shape or (1,))) + L.out_bytes  # noqa: E731 - bytes read and written
    others = [L for L in measured if L.kind not in ("conv2d", "matmul", "host") and L.ms > 0]
    big = max(others, key=moved, default=None)  # the bandwidth of the layer that moves the most bytes
    bandwidth = moved(big) / (big.ms * 1e-3) if big is not None else 1e12
    floor = min(r["ms"] for r in src["layers"] if r["kind"] == "kernel")
    log_f = np.log([f for f, _ in anchors])
    log_r = np.log([r for _, r in anchors])
    layers = []
    for L in layer_graph(import_onnx(model_proto(name, size, batch)).module):
        if L.kind == "host":
            ms = 0.05
        elif L.kind in ("conv2d", "matmul"):
            rate = float(np.exp(np.interp(np.log(max(L.flops, 1.0)), log_f, log_r)))
            ms = max(floor, L.flops / rate * 1e3)
        else:
            ms = max(floor, moved(L) / bandwidth * 1e3)
        layers.append({"name": L.name, "kind": "host" if L.kind == "host" else "kernel", "ms": ms})
    return {"model": name, "size": size, "batch": batch, "target": src.get("target"), "device": src.get("device"),
            "estimated_from": f"{results} ({src['model']}, fusion {src.get('fusion')}, tuned {src.get('tuned')})",
            "latency_ms": sum(r["ms"] for r in layers), "layers": layers,
            "host_link": {"gbps": 25.0, "latency_us": 10.0}, "link": None}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="cuda", choices=["opencl", "cuda"])
    ap.add_argument("--models", default="resnet50,ssd")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--size", type=int, default=224, help="input height and width of the classifiers")
    ap.add_argument("--detector-size", type=int, default=128, help="input height and width of the detector (ssd)")
    ap.add_argument("--repeat", type=int, default=5, help="profiled runs per model (the median is kept)")
    ap.add_argument("--records", help="tuning records: the best recorded config of every anchor")
    ap.add_argument("--link-devices", help="two device ordinals a,b: also measure the link between them")
    ap.add_argument("--estimate-from", help="a bench_models.py JSON: estimate the profiles from its measured layers")
    ap.add_argument("--out", required=True, help="directory for the JSON files")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    link_devices = [int(d) for d in args.link_devices.split(",")] if args.link_devices else None
    for name in filter(None, args.models.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            size = args.detector_size if name == "ssd" else args.size
            t0 = time.perf_counter()
            if args.estimate_from:
                prof = estimate_profile(name, size, batch, args.estimate_from)
            else:
                prof = profile_model(name, size, batch, args.target, args.repeat, args.records, link_devices)
            path = os.path.join(args.out, f"{name}_b{batch}.json")
            with open(path, "w") as f:
                json.dump(prof, f, indent=1)
            total = sum(r["ms"] for r in prof["layers"] if r["kind"] in ("kernel", "host"))
            print(f"{name} batch {batch}: {len(prof['layers'])} rows, layers sum {total:.3f} ms, end to end "
                  f"{prof['latency_ms']:.3f} ms on {prof['device']}{' (estimated)' if args.estimate_from else ''} "
                  f"({time.perf_counter() - t0:.0f} s) -> {path}",
                  flush=True)


if __name__ == "__main__":
    main()
