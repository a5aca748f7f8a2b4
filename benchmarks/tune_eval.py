"""The tuner's evaluation: XGBoost-guided search against random search with the same budget.

For SGEMM 4096^3 and three ResNet-18 3x3 convolutions (64x56x56, 128x28x28, 256x14x14, 64/128/256
filters, stride 1, padding 1) with the tunable schedules of examples/tune_spaces.py, each method
runs `--seeds` times with `--trials` trials. Every distinct config is measured once per
workload and shared by all seeds and both methods (a measurement cache: the strategies only
decide which config to ask for next; one asked for again costs nothing), so the GPU time is
spent on distinct configs only. Reported per workload and method: the best-so-far curves, the
trials each run needs to reach 95% of the speed of the best config found overall (by any run),
and the final best kernel, timed again and compared with cuBLAS/cuDNN through torch in the
same run (ratio = baseline time / our time, so 1.0 is parity and higher is faster).

    python benchmarks/tune_eval.py --json tune_eval.json --png-dir tune_eval_png [--quick]
    python benchmarks/tune_eval.py --target opencl --small --trials 12 --seeds 2   # on PoCL

`--transfer` adds a third method, xgb seeded with the records of `--pretune` workloads that are
other shapes of the same operator (each tuned once, by xgb, before the evaluated workloads, as
a user would have tuned other layers or sizes before: e.g. `--pretune sgemm2048,conv512x7`).
`--cache-dir D` keeps each workload's measurements in D/<workload>.jsonl (tuning records) and
reuses them when run again, so an interrupted evaluation resumes where it stopped. The best
config "found overall" is the best of every measurement of the workload (the runs', and
whatever the cache held: with a cache from benchmarks/measure_space.py, the whole space).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

import sched_dsl as sd  # noqa: E402
from sched_dsl import records as R  # noqa: E402
from sched_dsl.tuner.measure import Measurer  # noqa: E402
from sched_dsl.tuner.plot import fill_curve, plot_curves  # noqa: E402
from sched_dsl.tuner.replay import ReplayMeasurer  # noqa: E402
from sched_dsl.tuner.space import Space  # noqa: E402
from tune_spaces import conv3x3_space, sgemm_space  # noqa: E402

METHODS = ("xgb", "random")

# name -> (space function, args, flops); --small swaps in shapes PoCL runs in seconds
WORKLOADS = {
    "sgemm4096": (sgemm_space, dict(m=4096, n=4096, k=4096), 2 * 4096 ** 3),
    "sgemm2048": (sgemm_space, dict(m=2048, n=2048, k=2048), 2 * 2048 ** 3),  # a --pretune source
    "conv64x56": (conv3x3_space, dict(c=64, size=56, f=64), 2 * 64 * 56 * 56 * 64 * 9),
    "conv128x28": (conv3x3_space, dict(c=128, size=28, f=128), 2 * 128 * 28 * 28 * 128 * 9),
    "conv256x14": (conv3x3_space, dict(c=256, size=14, f=256), 2 * 256 * 14 * 14 * 256 * 9),
    "conv512x7": (conv3x3_space, dict(c=512, size=7, f=512), 2 * 512 * 7 * 7 * 512 * 9),  # a transfer source
}
SMALL = {
    "sgemm4096": (sgemm_space, dict(m=64, n=64, k=64, small=True), 2 * 64 ** 3),
    "sgemm2048": (sgemm_space, dict(m=32, n=32, k=32, small=True), 2 * 32 ** 3),
    "conv64x56": (conv3x3_space, dict(c=8, size=8, f=8), 2 * 8 * 8 * 8 * 8 * 9),
    "conv128x28": (conv3x3_space, dict(c=16, size=4, f=8), 2 * 16 * 4 * 4 * 8 * 9),
    "conv256x14": (conv3x3_space, dict(c=8, size=4, f=16), 2 * 8 * 4 * 4 * 16 * 9),
    "conv512x7": (conv3x3_space, dict(c=16, size=2, f=16), 2 * 16 * 2 * 2 * 16 * 9),
}


def reach(curve: list, target_ms: float) -> int | None:
    """The first trial (1-based) whose best-so-far is within `target_ms`, or None."""
    for k, v in enumerate(curve, 1):
        if v is not None and v <= target_ms:
            return k
    return None


def median_reach(values: list, budget: int) -> float | None:
    """Median trials to reach; a run that never reached counts as budget + 1 (so the median
    is a lower bound when it is above the budget)."""
    if not values:
        return None
    return float(np.median([v if v is not None else budget + 1 for v in values]))


def baseline_ms(kind: str, args: dict, repeat: int, warmup: int) -> dict:
    """cuBLAS / cuDNN times of the workload through torch (fp32, TF32 off)."""
    import torch
    from bench_kernels import torch_time

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    if kind == "sgemm":
        a = torch.randn(args["m"], args["k"], device=dev)
        b = torch.randn(args["k"], args["n"], device=dev)
        return {"cublas": torch_time(lambda: torch.mm(a, b), repeat, warmup)}
    x = torch.randn(1, args["c"], args["size"], args["size"], device=dev)
    w = torch.randn(args["f"], args["c"], 3, 3, device=dev)
    out = {}
    for bench in (False, True):
        torch.backends.cudnn.benchmark = bench
        out["cudnn_benchmark" if bench else "cudnn"] = torch_time(
            lambda: torch.nn.functional.conv2d(x, w, stride=1, padding=1), repeat, warmup)
    torch.backends.cudnn.benchmark = False
    return out


def final_kernel(out, schedule, target: str, config: dict, repeat: int, warmup: int) -> dict:
    """The best config built again and timed like the baseline (mean of back-to-back runs)."""
    kern = sd.build(out, schedule, target=target, config=config)
    rng = np.random.default_rng(1)
    values = {n: rng.standard_normal(b.shape).astype(np.float32)
              for n, b in zip(kern.input_names, kern.lowered.plan.inputs)}
    got = kern(**values)
    want = sd.evaluate(out, values)
    err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
    return {"ms": kern.runner.bench(repeat, warmup), "max_rel_err": err,
            "block": kern.lowered.launches[0].block, "grid": kern.lowered.launches[0].grid}


def random_median_reach(n_configs: int, n_good: int) -> int | None:
    """The median trials random search needs to first pick one of `n_good` configs among the
    `n_configs` that count as trials (uniform picks without replacement): the smallest t with
    P(no good config in t picks) = C(N - n, t) / C(N, t) <= 1/2. None when n_good is 0."""
    if n_good <= 0:
        return None
    p_miss = 1.0
    for t in range(1, n_configs + 1):
        p_miss *= (n_configs - n_good - t + 1) / (n_configs - t + 1)
        if p_miss <= 0.5:
            return t
    return n_configs


def replay_measurer(directory: str, name: str, out, target: str) -> ReplayMeasurer:
    """Answers from DIR/<name>.jsonl (or .jsonl.gz): the workload of `out` on `target`
    recorded there (on whichever device recorded it)."""
    path = os.path.join(directory, f"{name}.jsonl")
    if not os.path.isfile(path) and os.path.isfile(path + ".gz"):
        path += ".gz"
    if not os.path.isfile(path):
        raise SystemExit(f"--replay: no records file {path}[.gz]")
    want = R.workload_of([out], target, "")
    prefix = f"{want.op}|{want.shapes}|{target}|"
    keys = sorted({r.workload for r in R.load(path) if r.workload.startswith(prefix)})
    if len(keys) != 1:
        raise SystemExit(f"--replay: {path} holds {len(keys)} workloads of {prefix}... ({keys}); need exactly one")
    return ReplayMeasurer(path, keys[0])


def make_measurer(name: str, out, schedule, args):
    if args.replay:
        return replay_measurer(args.replay, name, out, args.target)
    return Measurer(out, schedule, args.target, timeout=args.timeout, number=args.number, repeat=args.repeat,
                    warmup=args.warmup, min_repeat_ms=args.min_repeat_ms, workers=args.workers)


def open_cache(name: str, out, space: Space, args, device: str) -> tuple[str, dict, R.RecordsWriter | None]:
    """The workload key, and the measurement cache of `name`: config key -> record, from
    --cache-dir's records file (appended to as new configs are measured)."""
    workload = R.workload_of([out], args.target, device).key
    cache: dict = {}
    path = os.path.join(args.cache_dir, f"{name}.jsonl") if args.cache_dir else None
    if path and os.path.exists(path):
        for r in R.load(path):
            if r.workload == workload and space.point(r.config) is not None:
                cache[r.config_key()] = r
    return workload, cache, (R.RecordsWriter(path) if path else None)


def cached_features(space: Space, cache: dict) -> dict:
    """Point -> features of the cached records (features depend on the config alone, so the
    model need not lower those configs again)."""
    return {space.point(r.config): r.features for r in cache.values() if r.features is not None}


def cached_tune(out, schedule, args, measurer, cache: dict, writer, features: dict, **options):
    """sd.tune that takes measurements from `cache` (and adds new ones to it and the writer)
    and features from `features`: a run's records are only the configs it asked for, whatever
    the cache holds."""
    known = set(cache)
    res = sd.tune(out, schedule, args.target, batch=args.batch, measurer=measurer, cache=cache, features=features,
                  exhaustive_limit=args.exhaustive_limit, **options)
    if writer:
        writer.append([cache[k] for k in cache if k not in known])
    return res


def pretune(name: str, spec, args, sources: list) -> None:
    """Tunes a source shape once (xgb, --pretune-trials trials, seed 0) so that --transfer has
    records of another shape of the operator; it is not evaluated. Only the records of the
    configs this run asked for become sources (not the rest of a --cache-dir file)."""
    fn, fargs, _ = spec
    out, schedule = fn(**fargs)
    t0 = time.time()
    with make_measurer(name, out, schedule, args) as measurer:
        space = Space.of(schedule)
        _, cache, writer = open_cache(name, out, space, args, measurer.info["device"])
        res = cached_tune(out, schedule, args, measurer, cache, writer, cached_features(space, cache),
                          trials=args.pretune_trials, seed=0)
    sources.extend(res.records)
    print(f"{name} (pretune, transfer source): {res.trials} trials, best {res.best_ms} ms {res.best_config}, "
          f"{time.time() - t0:.0f} s", flush=True)


def evaluate_workload(name: str, spec, args, sources: list) -> dict:
    fn, fargs, flops = spec
    kind = "sgemm" if fn is sgemm_space else "conv"
    out, schedule = fn(**fargs)
    space = Space.of(schedule)
    t0 = time.time()
    measurer = make_measurer(name, out, schedule, args)
    with measurer:
        info = measurer.info
        workload, cache, writer = open_cache(name, out, space, args, info["device"])
        features = cached_features(space, cache)
        print(f"{name}: {workload}\n  space of {len(space)} configs, {len(cache)} cached measurements", flush=True)
        family = R.workload_of([out], args.target, info["device"]).op
        transfer = [r for r in sources if r.workload.split("|")[0] == family]
        methods = METHODS + (("xgb-transfer",) if args.transfer and transfer else ())
        runs: dict[str, list] = {m: [] for m in methods}
        for seed in range(args.seeds):
            if args.budget_s and seed >= 1 and time.time() - t0 > args.budget_s / len(args.names):
                print(f"  time share of --budget-s used up: stopping after {seed} seed(s)", flush=True)
                break
            for method in methods:
                res = cached_tune(out, schedule, args, measurer, cache, writer, features, trials=args.trials,
                                  strategy=method.split("-")[0], seed=seed,
                                  transfer=transfer if method == "xgb-transfer" else ())
                runs[method].append(res)
                if not args.quiet:
                    print(f"  {method:6s} seed {seed}: best {res.best_ms} ms {res.best_config}, "
                          f"{res.invalid} invalid, errors {dict(res.errors)}; {len(cache)} distinct configs so far, "
                          f"{time.time() - t0:.0f} s", flush=True)
    # the configs this evaluation's runs asked for (the cache may hold more from other runs)
    asked = {r.config_key() for res in runs.values() for run in res for r in run.records}
    asked_records = [cache[k] for k in asked]
    measured = [r for r in asked_records if r.error != "invalid"]
    # every measurement of the workload: the replayed (restricted) space, or the cache (these
    # runs' and what it held before them); its best is the best found overall
    everything = list(measurer.by_config.values()) if args.replay else list(cache.values())
    ok = [r for r in everything if r.ok]
    if not ok:
        return {"workload": workload, "error": "no config measured correctly"}
    best = min(ok, key=lambda r: r.cost_ms)
    target95 = best.cost_ms / 0.95
    row = {"workload": workload, "seeds_done": len(runs["xgb"]), "space_size": len(space),
           "space_measured": len(everything),
           "distinct_measured": len(measured),
           "distinct_invalid": len(asked_records) - len(measured), "best_overall_ms": best.cost_ms,
           "best_config": best.config, "best_tflops": flops / best.cost_ms / 1e9, "methods": {}}
    errors: dict[str, int] = {}
    for r in asked_records:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    row["errors_distinct"] = errors
    # random search's median trials to 95%, exactly, from every config of the space measured
    counted = [r for r in everything if r.error != "invalid"]
    row["space_complete"] = len(everything) == len(space)
    row["good_configs"] = sum(1 for r in counted if r.ok and r.cost_ms <= target95)
    row["random_expected_median_reach95"] = random_median_reach(len(counted), row["good_configs"])
    for method, results in runs.items():
        reached = [reach(r.curve, target95) for r in results]
        row["methods"][method] = {
            "reach95": reached, "median_reach95": median_reach(reached, args.trials),
            "final_best_ms": [r.best_ms for r in results],
            "curves": [r.curve for r in results],
            "median_curve": [float(v) if np.isfinite(v) else None for v in
                             np.nanmedian(np.vstack([fill_curve(r.curve, args.trials) for r in results]), axis=0)]
            if any(r.curve for r in results) else [],
        }
    x, r_ = row["methods"]["xgb"]["median_reach95"], row["methods"]["random"]["median_reach95"]
    row["xgb_vs_random_reach95"] = (x / r_) if x and r_ else None
    if "xgb-transfer" in row["methods"]:
        t = row["methods"]["xgb-transfer"]["median_reach95"]
        row["xgb_transfer_vs_random_reach95"] = (t / r_) if t and r_ else None
    medians = ", ".join(f"{m} {v['median_reach95']}" for m, v in row["methods"].items())
    exact = (f"; random's exact median over the whole space {row['random_expected_median_reach95']} "
             f"({row['good_configs']} of {len(counted)} configs within 95%)" if row["space_complete"] else "")
    print(f"  best overall {best.cost_ms:.4f} ms ({row['best_tflops']:.2f} TFLOP/s) {best.config}; "
          f"median trials to 95% ({len(runs['xgb'])} seeds, {args.trials} trials, never = {args.trials + 1}): "
          f"{medians}{exact}", flush=True)
    if args.png_dir:
        os.makedirs(args.png_dir, exist_ok=True)
        png = os.path.join(args.png_dir, f"{name}.png")
        try:
            plot_curves({m: [r.curve for r in res] for m, res in runs.items()}, png,
                        title=f"{name} ({args.target}): best so far, {args.seeds} seeds; "
                              f"95% of best = {target95:.4g} ms")
            row["png"] = png
        except ImportError as e:  # the curves are in the JSON too
            print(f"  no PNG: {e}", flush=True)
    if args.target == "cuda" and not args.no_baseline and not args.replay:
        row["final"] = final_kernel(out, schedule, args.target, best.config, args.final_repeat, 5)
        row["final"]["tflops"] = flops / row["final"]["ms"] / 1e9
        row["baseline_ms"] = baseline_ms(kind, fargs, args.final_repeat, 5)
        row["ratio_vs_baseline"] = {k: v / row["final"]["ms"] for k, v in row["baseline_ms"].items()}
        print(f"  final {row['final']['ms']:.4f} ms; baseline {row['baseline_ms']}; "
              f"ratio (baseline/ours) {row['ratio_vs_baseline']}", flush=True)
    else:
        row["final"] = None
        row["baseline_note"] = "cuBLAS/cuDNN baselines need the cuda target and torch"
    row["wall_s"] = time.time() - t0
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="cuda", choices=["cuda", "opencl"])
    p.add_argument("--trials", type=int, default=48)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--batch", type=int, default=4, help="configs per model refit")
    p.add_argument("--quick", action="store_true", help="24 trials per run and fewer timing repeats")
    p.add_argument("--small", action="store_true", help="small shapes (for CPU OpenCL)")
    p.add_argument("--workloads", default="sgemm4096,conv64x56,conv128x28,conv256x14", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--number", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--min-repeat-ms", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=None, help="build processes (default: cores - 1, at most 8)")
    p.add_argument("--exhaustive-limit", type=int, default=4096,
                   help="the model scores spaces up to this size whole; larger ones by simulated annealing")
    p.add_argument("--final-repeat", type=int, default=50)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--transfer", action="store_true",
                   help="also run xgb seeded with the records of the --pretune workloads of the same operator")
    p.add_argument("--pretune", default="",
                   help="comma-separated workloads tuned once first (xgb, --pretune-trials) only as --transfer sources, "
                        "e.g. sgemm2048 for sgemm4096")
    p.add_argument("--pretune-trials", type=int, default=32)
    p.add_argument("--budget-s", type=float, default=0.0,
                   help="wall-clock budget: a workload past its share starts no further seed (both methods "
                        "keep the same seeds)")
    p.add_argument("--cache-dir")
    p.add_argument("--replay", metavar="DIR",
                   help="measure nothing: answer from the records DIR/<workload>.jsonl[.gz] (the space is restricted "
                        "to the configs recorded there; 95%% is of the best of them), e.g. "
                        "benchmarks/data/h200_space (every config of each space, measured on an H200)")
    p.add_argument("--quiet", action="store_true", help="no line per run")
    p.add_argument("--json")
    p.add_argument("--png-dir")
    args = p.parse_args()
    if args.quick:
        args.trials, args.repeat, args.final_repeat = 24, 2, 20
    if args.trials < 1 or args.seeds < 1:
        p.error("--trials and --seeds must be >= 1")
    if args.replay and args.cache_dir:
        p.error("--replay measures nothing, so it takes no --cache-dir")
    if args.cache_dir:
        os.makedirs(args.cache_dir, exist_ok=True)
    table = SMALL if args.small else WORKLOADS
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    pre = [n.strip() for n in args.pretune.split(",") if n.strip()]
    unknown = [n for n in names + pre if n not in table]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; choose from {', '.join(table)}")
    args.names = names
    t0 = time.time()
    sources: list = []  # the --pretune records, for --transfer
    report = {"target": args.target, "trials": args.trials, "seeds": args.seeds, "batch": args.batch,
              "exhaustive_limit": args.exhaustive_limit,
              "small": args.small, "workloads": {}}
    for name in pre:
        pretune(name, table[name], args, sources)
    for name in names:
        report["workloads"][name] = evaluate_workload(name, table[name], args, sources)
        report["wall_s"] = time.time() - t0
        if args.json:  # written after every workload, so a cut-off run keeps what it did
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
