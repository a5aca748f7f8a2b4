"""`sched-tune`: tune a schedule's knobs, and read records files.

    sched-tune run SPEC [--arg name=value ...] [--target opencl|cuda] [--trials N] [--records F]
                   [--strategy xgb|random] [--budget-s S] [--plot curve.png]
                   [--workers N | --scheduler ADDRESS] ...
    sched-tune best RECORDS [--workload TEXT]
    sched-tune merge OUT IN [IN ...]      (OUT's own records stay; one per workload and config)
    sched-tune plot RECORDS --out curve.png [--workload TEXT]

SPEC is `file.py:function` or `module:function`; the function, called with the `--arg`
values (integers where they parse), returns (output tensor(s), schedule).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import warnings

from sched_dsl.runtime.common import DeviceError
from sched_dsl.schedule import ScheduleError
from sched_dsl.records import RecordsError, best, load, merge


class CliError(Exception):
    pass


def load_spec(spec: str, args: list[str]):
    target, sep, fn_name = spec.rpartition(":")
    if not sep or not target or not fn_name:
        raise CliError(f"'{spec}' is not file.py:function or module:function")
    if target.endswith(".py"):
        if not os.path.isfile(target):
            raise CliError(f"no such file: {target}")
        mod_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(target))[0], target)
        module = importlib.util.module_from_spec(mod_spec)
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise CliError(f"cannot import '{target}': {e}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise CliError(f"'{target}' has no function '{fn_name}'")
    kwargs = {}
    for a in args:
        name, eq, value = a.partition("=")
        if not eq or not name:
            raise CliError(f"--arg '{a}' is not name=value")
        try:
            kwargs[name] = int(value)
        except ValueError:
            kwargs[name] = value
    got = fn(**kwargs)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise CliError(f"{spec} must return (output tensor(s), schedule), got {type(got).__name__}")
    return got


def _run(args) -> None:
    from sched_dsl.tuner.tuner import tune

    outputs, schedule = load_spec(args.spec, args.arg)
    bar = None

    def progress(result) -> None:
        nonlocal bar
        if args.no_progress:
            return
        from tqdm import tqdm
        if bar is None:
            bar = tqdm(total=args.trials, initial=min(result.trials, args.trials), unit="trial",
                       dynamic_ncols=True, desc="tuning")
        else:
            bar.update(min(result.trials, args.trials) - bar.n)
        errs = sum(v for k, v in result.errors.items() if k != "invalid")
        best_txt = f"{result.best_ms:.4g} ms" if result.best_ms is not None else "-"
        bar.set_postfix_str(f"best {best_txt}, errors {errs}, invalid {result.invalid}")

    client = None
    if args.workers is not None or args.scheduler:
        from sched_dsl.tuner.distributed import local_cluster
        if args.workers is not None:
            client = local_cluster(args.workers, args.target)
        else:
            from distributed import Client
            try:
                client = Client(args.scheduler, timeout=args.connect_timeout)
            except (OSError, TimeoutError) as e:
                raise CliError(f"cannot reach the Dask scheduler at {args.scheduler}: {e}") from None
    try:
        result = tune(outputs, schedule, args.target, args.trials, args.records, strategy=args.strategy,
                      batch=args.batch, seed=args.seed, transfer=args.transfer, timeout=args.timeout,
                      progress=None if client is not None else progress, budget_s=args.budget_s,
                      client=client, **({"progress_bars": not args.no_progress} if client is not None else {}))
    finally:
        if bar is not None:
            bar.close()
        if client is not None:
            from sched_dsl.tuner.distributed import close_client
            close_client(client)
    print(json.dumps({"workload": result.workload, "best_config": result.best_config, "best_ms": result.best_ms,
                      "trials": result.trials, "invalid": result.invalid, "errors": dict(result.errors),
                      "resumed": result.resumed, "out_of_time": result.out_of_time}))
    if args.plot:
        from sched_dsl.tuner.plot import plot_curves
        plot_curves({args.strategy: [result.curve]}, args.plot, title=result.workload)
        print(f"wrote {args.plot}", file=sys.stderr)


def _workload_filter(records, text: str | None):
    if text is None:
        return records
    picked = [r for r in records if text in r.workload]
    if not picked:
        raise CliError(f"no workload matches '{text}'; known: {'; '.join(sorted({r.workload for r in records}))}")
    return picked


def _best(args) -> None:
    records = load(args.records)
    if not records:
        raise CliError(f"records file '{args.records}' holds no records")
    # configs of different schedules (other knobs) of one workload never compete
    by_schedule: dict[tuple, list] = {}
    for r in _workload_filter(records, args.workload):
        by_schedule.setdefault((r.workload, tuple(sorted(r.config))), []).append(r)
    chosen = [r for group in by_schedule.values() for r in best(group).values()]
    if not chosen:
        raise CliError(f"records file '{args.records}' holds no correct measurement")
    for r in sorted(chosen, key=lambda r: (r.workload, sorted(r.config))):
        print(json.dumps({"workload": r.workload, "config": r.config, "cost_ms": r.cost_ms}))


def _merge(args) -> None:
    before = len(load(args.out)) if os.path.isfile(args.out) else 0
    n = merge(args.inputs, args.out)
    print(f"{args.out}: {n} record(s), one per workload and config ({n - before} new)", file=sys.stderr)


def _plot(args) -> None:
    from sched_dsl.tuner.plot import plot_curves, strategy_label
    from sched_dsl.tuner.tuner import TuneResult

    records = _workload_filter(load(args.records), args.workload)
    keys = sorted({r.workload for r in records})
    if len(keys) != 1:
        raise CliError(f"{len(keys)} workloads in '{args.records}'; pick one with --workload: {'; '.join(keys)}")
    res = TuneResult(keys[0])
    for r in records:
        res.add(r)
    if not res.curve:
        raise CliError(f"no measured trial for '{keys[0]}'")
    label = "+".join(sorted({r.strategy for r in records if r.strategy})) or "strategy not recorded"
    plot_curves({label: [res.curve]}, args.out, title=keys[0])
    best_txt = f"{res.best_ms:.4g} ms" if res.best_ms is not None else "no correct measurement"
    print(f"wrote {args.out}: best time so far against {res.trials} trial(s) of {keys[0]} "
          f"({strategy_label(label)}; best {best_txt})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sched-tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="tune the knobs of SPEC's schedule")
    r.add_argument("spec", help="file.py:function or module:function returning (outputs, schedule)")
    r.add_argument("--arg", action="append", default=[], help="name=value passed to the function (repeatable)")
    r.add_argument("--target", default="opencl", choices=["opencl", "cuda"])
    r.add_argument("--trials", type=int, default=64, help="configs to have measured for the workload in all")
    r.add_argument("--records", help="JSON-lines records file: appended to, and resumed from")
    r.add_argument("--strategy", default="xgb", choices=["xgb", "random"])
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--timeout", type=float, default=10.0, help="seconds one candidate may run")
    r.add_argument("--budget-s", type=float, help="start no batch after this many seconds (run again to go on)")
    r.add_argument("--transfer", action="append", default=[], help="records of other shapes to seed the model")
    r.add_argument("--plot", help="write a PNG of best-so-far against trials")
    r.add_argument("--no-progress", action="store_true")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="measure on a local Dask cluster of N workers, worker k on device k")
    where.add_argument("--scheduler", help="measure on the workers of the Dask scheduler at ADDRESS (tcp://host:port)")
    r.add_argument("--connect-timeout", type=float, default=30.0, help="seconds to wait for --scheduler")
    b = sub.add_parser("best", help="the best correct record per workload, as JSON lines")
    b.add_argument("records")
    b.add_argument("--workload", help="only workloads whose key contains this text")
    m = sub.add_parser("merge", help="merge the records of INPUTS into OUT (its own records kept), one per "
                                     "workload and config; idempotent; OUT is replaced atomically")
    m.add_argument("out")
    m.add_argument("inputs", nargs="+")
    pl = sub.add_parser("plot", help="PNG of best-so-far against trials for one workload of a records file")
    pl.add_argument("records")
    pl.add_argument("--out", required=True)
    pl.add_argument("--workload")
    args = p.parse_args(argv)
    if args.cmd == "run" and args.trials < 1:
        p.error("--trials must be >= 1")
    if args.cmd == "run" and args.workers is not None and args.workers < 1:
        p.error("--workers must be >= 1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda msg, *a, **k: print(f"sched-tune: warning: {msg}", file=sys.stderr)
            {"run": _run, "best": _best, "merge": _merge, "plot": _plot}[args.cmd](args)
    except (CliError, RecordsError, ScheduleError, DeviceError, ValueError, TypeError) as e:
        print(f"sched-tune: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
