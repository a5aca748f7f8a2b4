"""Models on several devices of one host, against one device in the same run, and tuning on
several Dask workers against one.

    python benchmarks/bench_distributed.py --target cuda --devices 1,2,4,8 \\
        --json benchmarks/data/distributed_h200.json                          # several GPUs of one host
    python benchmarks/bench_distributed.py --target opencl --size 32 --detector-size 32 --models tiny \\
        --batches 1 --devices 1,2 --requests 2 --tune-trials 2 --json /tmp/d.json  # two PoCL devices
    python benchmarks/bench_distributed.py --predict benchmarks/data/h200_profiles --devices 1,2,4,8 \\
        --json benchmarks/data/distributed_predicted.json                    # the simulator alone, any machine

Measured (default): for every model (ResNet-50 and the detector of examples/make_models.py,
random weights) and batch (1 and 32), one device first: its latency (`Session.latency`), its
throughput (requests per second over `--requests` requests with `run_many`) and its per-layer
profile; then every device count of `--devices` the host has, with every partition of
`--partitions`: the outputs checked against onnxruntime, latency, throughput, both speedups
over one device, and the simulator's prediction from the one-device profile and the measured
link. Then distributed tuning: a conv2d workload of the first model tuned for `--tune-trials`
configs (random search, so only measuring counts) on a Dask LocalCluster of 1 worker and of
the largest device count: configs measured per minute and the best time found.

`--predict DIR` reads the JSON files of benchmarks/profile_layers.py instead and prints the
simulator's latency, throughput and speedup for every device count and partition (NVLink-class
links between GPUs unless `--link-gbps` / `--link-latency-us` say otherwise).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from profile_layers import model_proto  # noqa: E402


def check(sess, model, feeds) -> float:
    """The largest error of the session's outputs against onnxruntime, relative to each output's scale."""
    import onnxruntime as ort

    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for g, e in zip(sess.run(None, feeds), ref.run(None, feeds)):
        if g.shape != e.shape:
            raise SystemExit(f"output shape {g.shape} != onnxruntime's {e.shape}")
        if e.size and np.issubdtype(e.dtype, np.floating):
            worst = max(worst, float(np.abs(g - e).max() / max(1.0, np.abs(e).max())))
        elif e.size and not np.array_equal(g, e):
            worst = max(worst, 1.0)
    return worst


def throughput(sess, feeds, requests: int) -> float:
    sess.run_many(None, [feeds])  # warm
    t0 = time.perf_counter()
    sess.run_many(None, [feeds] * requests)
    return requests / (time.perf_counter() - t0)


def measure(args) -> dict:
    import sched_dsl as sd
    from sched_dsl.graph.executor import measure_link
    from sched_dsl.graph.simulate import predict, with_times
    from sched_dsl.runtime import device_count

    have = device_count(args.target)
    counts = [n for n in args.devices if n <= have]
    rows = []
    for name in args.models:
        for batch in args.batches:
            size = args.detector_size if name == "ssd" else args.size
            model = model_proto(name, size, batch)
            feeds = {"input": np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)}
            one = sd.load_onnx(model, target=args.target)
            err = check(one, model, feeds)
            base_ms = one.latency(feeds, repeat=args.repeat, warmup=2)
            base_tp = throughput(one, feeds, args.requests)
            profile = one.profile(feeds)
            rows.append({"model": name, "batch": batch, "size": size, "devices": 1, "partition": None,
                         "latency_ms": base_ms, "throughput_per_s": base_tp, "max_rel_err": err,
                         "kernels": one.kernel_count})
            print(f"{name} b{batch}: 1 device {base_ms:.3f} ms, {base_tp:.1f}/s", flush=True)
            link = measure_link(args.target, [0, 1]) if max(counts, default=1) > 1 else None
            for n in (c for c in counts if c > 1):
                for partition in args.partitions:
                    sess = sd.load_onnx(model, target=args.target, devices=n, partition=partition,
                                        profile=profile, link=link, objective=args.objective)
                    err = check(sess, model, feeds)
                    ms = sess.latency(feeds, repeat=args.repeat, warmup=2)
                    tp = throughput(sess, feeds, args.requests)
                    pred = predict(with_times(sess.layers, profile), sess.partition_plan, sess.topology)
                    rows.append({"model": name, "batch": batch, "size": size, "devices": n, "partition": partition,
                                 "latency_ms": ms, "throughput_per_s": tp, "speedup_latency": base_ms / ms,
                                 "speedup_throughput": tp / base_tp, "max_rel_err": err, "kernels": sess.kernel_count,
                                 "predicted": pred.as_dict(), "plan": sess.plan})
                    print(f"{name} b{batch}: {n} devices {partition}: {ms:.3f} ms ({base_ms / ms:.2f}x), "
                          f"{tp:.1f}/s ({tp / base_tp:.2f}x); predicted {pred.latency_ms:.3f} ms, "
                          f"{pred.throughput:.1f}/s; max error {err:.2g}", flush=True)
    return {"target": args.target, "devices_here": have, "rows": rows,
            "tuning": tune_rate(args, max(counts, default=1)) if args.tune_trials else None}


def tune_rate(args, workers: int) -> list[dict]:
    """Configs measured per minute by distributed tuning on 1 worker and on `workers`."""
    import tempfile

    import sched_dsl as sd
    from sched_dsl.dialects import tensorop as T
    from sched_dsl.graph.model_schedules import anchor_workload
    from sched_dsl.graph.onnx_import import import_onnx
    from sched_dsl.tuner.distributed import close_client, local_cluster

    model = model_proto(args.models[0], args.detector_size if args.models[0] == "ssd" else args.size, 1)
    convs = [o for o in import_onnx(model).module.walk() if isinstance(o, T.Conv2dOp) and o.groups.value.data == 1]
    y, s = anchor_workload(convs[len(convs) // 2])
    out = []
    for n in sorted({1, workers}):
        client = local_cluster(n, args.target)
        try:
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                res = sd.tune(y, s, args.target, trials=args.tune_trials, records=os.path.join(d, "r.jsonl"),
                              strategy="random", batch=max(8, 2 * n), client=client, progress_bars=False,
                              timeout=args.tune_timeout)
                minutes = (time.perf_counter() - t0) / 60
        finally:
            close_client(client)
        out.append({"workers": n, "workload": res.workload, "configs": res.trials + res.invalid,
                    "configs_per_min": (res.trials + res.invalid) / minutes, "best_ms": res.best_ms})
        print(f"tuning on {n} worker(s): {out[-1]['configs_per_min']:.1f} configs/min, best {res.best_ms} ms",
              flush=True)
    return out


def predict_from_profiles(args) -> dict:
    from sched_dsl.graph.onnx_import import import_onnx
    from sched_dsl.graph.partition import plan
    from sched_dsl.graph.simulate import Link, Topology, layer_graph, predict, with_times

    files = sorted(glob.glob(os.path.join(args.predict, "*.json")))
    if not files:
        raise SystemExit(f"no profile JSON files in {args.predict}")
    rows = []
    for path in files:
        with open(path) as f:
            prof = json.load(f)
        model = model_proto(prof["model"], prof["size"], prof["batch"])
        layers = with_times(layer_graph(import_onnx(model).module), prof)
        host = Link(**prof["host_link"]) if prof.get("host_link") else None
        link = Link(gbps=args.link_gbps, latency_us=args.link_latency_us, launch_ms=args.launch_ms)
        base = predict(layers, {}, Topology(1, 1, link, host=host))
        rows.append({"model": prof["model"], "batch": prof["batch"], "devices": 1, "partition": None,
                     "measured_1_device_ms": prof["latency_ms"], **base.as_dict()})
        for n in (c for c in args.devices if c > 1):
            top = Topology(1, n, link, host=host)
            for partition in args.partitions:
                for objective in ("latency", "throughput"):
                    p = predict(layers, plan(layers, top, partition, objective), top)
                    rows.append({"model": prof["model"], "batch": prof["batch"], "devices": n, "partition": partition,
                                 "objective": objective, **p.as_dict(),
                                 "speedup_latency": base.latency_ms / p.latency_ms,
                                 "speedup_throughput": p.throughput / base.throughput})
        for r in rows[-(1 + len(args.partitions) * 2 * len([c for c in args.devices if c > 1])):]:
            print(f"{r['model']} b{r['batch']} {r['devices']} dev {r['partition'] or '-':8} {r.get('objective', ''):10} "
                  f"{r['latency_ms']:8.3f} ms {r['throughput_per_s']:9.1f}/s "
                  f"x{r.get('speedup_latency', 1):.2f} x{r.get('speedup_throughput', 1):.2f}", flush=True)
    return {"predicted_from": args.predict, "link": {"gbps": args.link_gbps, "latency_us": args.link_latency_us,
                                                     "launch_ms": args.launch_ms}, "rows": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="cuda", choices=["opencl", "cuda"])
    ap.add_argument("--models", default="resnet50,ssd")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--detector-size", type=int, default=128)
    ap.add_argument("--devices", default="1,2,4,8", help="device counts (those the host has are measured)")
    ap.add_argument("--partitions", default="split,pipeline,auto")
    ap.add_argument("--objective", default="latency", choices=["latency", "throughput"], help="for auto")
    ap.add_argument("--repeat", type=int, default=10, help="runs averaged per latency")
    ap.add_argument("--requests", type=int, default=16, help="requests streamed per throughput")
    ap.add_argument("--tune-trials", type=int, default=32, help="configs per tuning run (0: no tuning rows)")
    ap.add_argument("--tune-timeout", type=float, default=30.0, help="seconds one candidate may take to run")
    ap.add_argument("--predict", help="a directory of profile_layers.py JSON files: predict only")
    ap.add_argument("--link-gbps", type=float, default=400.0, help="with --predict: GB/s between two devices")
    ap.add_argument("--link-latency-us", type=float, default=10.0)
    ap.add_argument("--launch-ms", type=float, default=0.005, help="with --predict: the cost of one kernel launch")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.devices = [int(d) for d in args.devices.split(",") if d]
    args.partitions = [p for p in args.partitions.split(",") if p]
    result = predict_from_profiles(args) if args.predict else measure(args)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
