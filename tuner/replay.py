"""Replaying recorded measurements: a stand-in for `Measurer` that answers from a records file.

`ReplayMeasurer(records, workload)` restricts the space to the configs recorded for one
workload: their recorded features are the features, "measuring" one returns the recorded cost
or error class, and a config that was never recorded is `invalid` (it does not count as a
trial, and the model never scores it, since it has no features). With it a search strategy
can be evaluated offline, over many seeds, on real device measurements
(`benchmarks/tune_eval.py --replay DIR`); tests use it as a fake device.
"""

from __future__ import annotations

from collections.abc import Sequence

from sched_dsl.runtime.common import DeviceLimits
from sched_dsl.tuner.measure import Built, Measured
from sched_dsl.records import Record, RecordsError, load

NOT_RECORDED = "not in the replayed records"


class ReplayMeasurer:
    def __init__(self, records: str | Sequence[Record], workload: str, *,
                 limits: DeviceLimits | None = None, max_local_bytes: int | None = 1024):
        """`records`: a records file or records; `workload`: the key of the workload to replay
        (its device part names the device). `limits` (default: 1024 threads per block, 48 KiB
        of shared memory) feed the tuner's check of features against the device limits."""
        recs = load(records) if isinstance(records, str) else list(records)
        self.by_config = {r.config_key(): r for r in recs if r.workload == workload}
        if not self.by_config:
            where = records if isinstance(records, str) else "the records given"
            raise RecordsError(f"{where}: no records of workload '{workload}' to replay")
        self.workload = workload
        device = workload.split("|")[-1]
        self.limits = limits or DeviceLimits(device, 1024, (1024, 1024, 64), 48 * 1024)
        self.max_local_bytes = max_local_bytes
        self.info = {"device": device, "limits": self.limits, "arch": None}

    def start(self) -> dict:
        return self.info

    def close(self) -> None:
        pass

    def __enter__(self) -> ReplayMeasurer:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _get(self, config: dict[str, int]) -> Record | None:
        return self.by_config.get(tuple(sorted(config.items())))

    def features(self, configs: list[dict[str, int]]) -> list[list[float] | None]:
        return [r.features if (r := self._get(c)) is not None else None for c in configs]

    def build(self, configs: list[dict[str, int]]) -> list[Built]:
        out = []
        for c in configs:
            r = self._get(c)
            if r is None:
                out.append(Built(dict(c), error="invalid", message=NOT_RECORDED))
            else:
                out.append(Built(dict(c), features=r.features, error=r.error, message=r.message))
        return out

    def run(self, built: Built) -> Measured:
        if built.error:
            return Measured(None, built.error, built.message)
        r = self._get(built.config)
        return Measured(r.cost_ms, r.error, r.message)

    def measure(self, configs: list[dict[str, int]]) -> list[tuple[Built, Measured]]:
        return [(b, self.run(b)) for b in self.build(configs)]
