"""`tune()`: the loop that asks a strategy for configs, measures them and keeps records."""

from __future__ import annotations

import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sched_dsl.tensor import Tensor
from sched_dsl.tuner.features import FEATURE_NAMES
from sched_dsl.tuner.measure import Measurer
from sched_dsl.records import Record, RecordsWriter, Workload, check_record, load, workload_of
from sched_dsl.tuner.search import ModelSearch, RandomSearch
from sched_dsl.tuner.space import Space

STRATEGIES = ("xgb", "random")


@dataclass
class TuneResult:
    workload: str
    best_config: dict[str, int] | None = None
    best_ms: float | None = None
    curve: list[float | None] = field(default_factory=list)  # best cost so far after each trial
    trials: int = 0  # configs built and run (failed runs included)
    invalid: int = 0  # configs rejected before running (do not lower, exceed a device limit)
    errors: Counter = field(default_factory=Counter)  # error class -> count, invalid included
    records: list[Record] = field(default_factory=list)
    resumed: int = 0  # records of this workload found in the records file at the start
    out_of_time: bool = False  # stopped by budget_s before `trials` were measured

    def add(self, r: Record) -> None:
        self.records.append(r)
        if r.error:
            self.errors[r.error] += 1
        if r.error == "invalid":
            self.invalid += 1
            return
        self.trials += 1
        if r.ok and (self.best_ms is None or r.cost_ms < self.best_ms):
            self.best_ms, self.best_config = r.cost_ms, dict(r.config)
        self.curve.append(self.best_ms)


def transfer_groups(records: Sequence[Record], workload: Workload,
                    n_features: int | None = None) -> list[tuple[list, list]]:
    """Records of other shapes of the same operator on the same target, grouped per workload,
    as (feature rows, costs) for the model; with `n_features`, only records whose feature
    vectors have that length (those of the same schedule template and feature set)."""
    groups: dict[str, tuple[list, list]] = {}
    for r in records:
        parts = r.workload.split("|")
        if (r.workload == workload.key or r.features is None or len(parts) != 4
                or parts[0] != workload.op or parts[2] != workload.target
                or (n_features is not None and len(r.features) != n_features)):
            continue
        rows, costs = groups.setdefault(r.workload, ([], []))
        rows.append(r.features)
        costs.append(r.cost_ms if r.ok else None)
    return list(groups.values())


def tune(outputs: Tensor | Sequence[Tensor], schedule, target: str = "opencl", trials: int = 64,
         records: str | None = None, *, strategy: str = "xgb", batch: int = 8, seed: int = 0,
         transfer: Sequence[str | Record] = (), eps: float = 0.1, measurer: Measurer | None = None,
         cache: dict | None = None, features: dict | None = None, exhaustive_limit: int = 4096,
         progress: Callable[[TuneResult], None] | None = None, budget_s: float | None = None,
         client=None, **measure_options) -> TuneResult:
    """Tunes the schedule's knobs for `outputs` on `target`.

    `trials` is the number of configs of this workload to have measured in total: with a
    `records` file that already holds some (an earlier, possibly killed, run) only the rest
    are measured, and none twice. `strategy` is "xgb" (the model-guided search) or "random".
    `transfer` names more records files (or holds records) whose other shapes of the
    operator seed the model.
    `cache` (a dict shared between calls) reuses results of configs measured before instead
    of measuring them again; `features` (a dict shared between calls) keeps the features of
    the points the model has scored. With `budget_s`, no batch starts after that many seconds
    (the records keep what was measured; running again goes on from there). Other keyword
    arguments go to `Measurer` (timeout, number, repeat, warmup, min_repeat_ms, tol, workers,
    hook, max_local_bytes).
    With `client` (a dask.distributed Client), the cluster's workers build and measure, each
    on its own device (`sched_dsl.tuner.distributed`); the search and the records stay here."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy '{strategy}'; choose from {', '.join(STRATEGIES)}")
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an int >= 1, got {trials!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {budget_s!r}")
    start = time.perf_counter()
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    space = Space.of(schedule)
    # the writer checks the path, locks it against other tuners and sets a cut-short line aside
    writer = RecordsWriter(records) if records else None
    own = measurer is None
    try:
        old = load(records, missing_ok=True) if records else []
        extra = [r for t in transfer
                 for r in ([check_record(t, "transfer record")] if isinstance(t, Record) else load(t))]
        if own and client is not None:
            from sched_dsl.tuner.distributed import DaskMeasurer
            measurer = DaskMeasurer(client, outputs, schedule, target, seed=seed, **measure_options)
        elif own:
            measurer = Measurer(outputs, schedule, target, seed=seed, **measure_options)
        info = measurer.start()
        wl = workload_of(outputs, target, info["device"])
        result = TuneResult(wl.key)
        visited = set()
        mine = [r for r in old if r.workload == wl.key and space.point(r.config) is not None]
        for r in mine:
            visited.add(space.point(r.config))
            result.add(r)
        result.resumed = len(mine)
        rng = random.Random(f"{strategy}:{seed}")  # strategies draw independent streams for one seed

        def featurize(points):
            return measurer.features([space.config(p) for p in points])

        # records of other templates of the operator (other knobs) in the records file are left out
        # quietly; of the `transfer` records the user named, a warning says which are not used
        n_features = len(FEATURE_NAMES) + len(space.knobs)  # the loop-IR features, then one per knob
        groups = transfer_groups(old + extra, wl, n_features)
        named = [f for rows, _ in transfer_groups(extra, wl) for f in rows]
        usable = sum(len(f) == n_features for f in named)
        skipped = len(named) - usable
        if skipped:
            warnings.warn(f"transfer: {skipped} record(s) of other shapes of '{wl.op}' have features of another "
                          f"length than this schedule's {n_features} (another schedule template or feature set); "
                          "they are left out", stacklevel=2)
        elif extra and not usable:
            warnings.warn(f"transfer: no usable records of another shape of '{wl.op}' on target '{wl.target}' "
                          f"in {len(extra)} record(s); nothing seeds the model", stacklevel=2)
        if strategy == "random":
            search = RandomSearch(space, rng)
        else:
            search = ModelSearch(space, rng, featurize, groups, eps=eps,
                                 exhaustive_limit=exhaustive_limit, legal=_within_limits(info["limits"], measurer),
                                 features=features)
        # the model learns from the records featurized as this schedule is; those of an older
        # feature set count as measured, without features
        search.observe([space.point(r.config) for r in mine],
                       [r.features if r.features is not None and len(r.features) == n_features else None
                        for r in mine], [r.cost_ms if r.ok else None for r in mine])
        if progress:
            progress(result)
        while result.trials < trials:
            if budget_s is not None and time.perf_counter() - start > budget_s:
                result.out_of_time = True
                break
            points = search.propose(min(batch, trials - result.trials), visited)
            if not points:
                break  # every point of the space was tried
            visited.update(points)
            configs = [space.config(p) for p in points]
            new = measure_configs(measurer, wl.key, configs, cache)
            for r in new:
                r.strategy = strategy
                if r.error != "invalid":
                    r.trial = result.trials + 1
                result.add(r)
            if writer:
                writer.append(new)
            search.observe(points, [r.features for r in new], [r.cost_ms if r.ok else None for r in new])
            if progress:
                progress(result)
        return result
    finally:
        if own and measurer is not None:
            measurer.close()
        if writer:
            writer.close()


def _within_limits(limits, measurer: Measurer):
    """A check of the limits that features show (threads per block, shared and local bytes)."""
    k_threads, k_shared, k_local = (FEATURE_NAMES.index(n) for n in ("threads_per_block", "shared_bytes", "local_bytes"))
    max_local = measurer.max_local_bytes if measurer.max_local_bytes is not None else float("inf")

    def legal(f: list[float]) -> bool:
        value = lambda k: 2 ** f[k] - 1  # noqa: E731 - features are log2(1 + x)
        return (value(k_threads) <= limits.max_threads_per_block + 0.5 and value(k_shared) <= limits.max_shared_bytes + 0.5
                and value(k_local) <= max_local + 0.5)
    return legal


def measure_configs(measurer: Measurer, workload: str, configs: list[dict], cache: dict | None) -> list[Record]:
    """Records for `configs` in order: from `cache` where it has them, else built and run."""
    key = lambda c: tuple(sorted(c.items()))  # noqa: E731
    todo = [c for c in configs if cache is None or key(c) not in cache]
    fresh = {}
    if todo:
        for b, m in measurer.measure(todo):
            fresh[key(b.config)] = Record(workload, dict(b.config), m.cost_ms, m.error, m.message[:2000], b.features)
    out = []
    for c in configs:
        if key(c) in fresh:
            r = fresh[key(c)]
            if cache is not None:
                cache[key(c)] = r
        else:
            r = cache[key(c)]
        out.append(Record(workload, dict(c), r.cost_ms, r.error, r.message, r.features))
    return out

