"""Tuning across devices and machines on Dask (`dask.distributed`).

Each Dask worker owns one device and builds and measures there, through a `Measurer` of its
own (its build pool and its run process, pinned to the worker's device). The client keeps
the search, the cost model and the records: `tune(..., client=client)` hands a batch of
configs to the workers, one task per config, and writes each result once, when it comes back.

- The device of a worker: the first of `SCHED_DSL_WORKER_DEVICES` ("2", or "2,3") in the
  worker's environment, else the worker's name when it is an integer (a LocalCluster names its
  workers 0, 1, ...), modulo the number of devices of the target on its host; else device 0.
- All workers must show one device (the device is part of the workload key, so records of
  different devices never mix); a cluster of several kinds of device is refused with the
  kinds named. A result that comes back from a worker of another device (one that joined
  later) is recorded as a `runtime_error` naming that device, never as a cost.
- A worker that dies while measuring: Dask runs the task again on another worker; a config
  that has killed `distributed.scheduler.allowed-failures` + 1 workers is recorded as a
  `runtime_error` ("killed N workers"). Either way it lands in the records exactly once.
- Worker processes must be allowed children (the Measurer's processes): `local_cluster()`
  sets `distributed.worker.daemon` to False; for a cluster started by hand, start the workers
  with `DASK_DISTRIBUTED__WORKER__DAEMON=False`.
"""

from __future__ import annotations

import uuid

from sched_dsl.runtime import device_count
from sched_dsl.tuner.measure import Built, Measured, Measurer
from sched_dsl.tuner.worker import load_hook

# -- on the workers ------------------------------------------------------------------------------

_MEASURERS: dict[tuple[str, str], Measurer] = {}  # (token, worker address) -> its Measurer


def worker_device(target: str) -> int:
    """The device ordinal the current Dask worker measures on: the first of
    sched_dsl.graph.distributed.worker_devices (see the module docstring)."""
    from sched_dsl.graph.distributed import worker_devices

    return worker_devices(target, 1)[0]


def _measurer(token: str, spec: tuple) -> Measurer:
    from distributed import get_worker

    key = (token, get_worker().address)
    m = _MEASURERS.get(key)
    if m is None:
        outputs, schedule, target, options = spec
        m = Measurer(outputs, schedule, target, device=worker_device(target), **options)
        m.start()
        _MEASURERS[key] = m
    return m


def _worker_info(token: str, spec: tuple) -> dict:
    from distributed import get_worker

    m = _measurer(token, spec)
    return {**m.info, "worker": str(get_worker().name), "ordinal": m.device}


def _measure_task(token: str, spec: tuple, config: dict[str, int]) -> tuple[str, str, Built, Measured]:
    from distributed import get_worker

    m = _measurer(token, spec)
    hook = load_hook(spec[3].get("hook"))
    if hook is not None:
        hook("measure", config, None)  # tests: a fault in the Dask worker itself
    [(built, measured)] = m.measure([config])
    slim = Built(built.config, features=built.features, error=built.error, message=built.message)
    return str(get_worker().name), m.info["device"], slim, measured


def _features_task(token: str, spec: tuple, configs: list[dict[str, int]]) -> list:
    return _measurer(token, spec).features(configs)


def _close_task(token: str) -> int:
    closed = 0
    for key in [k for k in _MEASURERS if k[0] == token]:
        _MEASURERS.pop(key).close()
        closed += 1
    return closed


# -- on the client -------------------------------------------------------------------------------

def local_cluster(workers: int, target: str = "opencl", processes: bool = True):
    """A LocalCluster of `workers` one-thread workers, worker k on device k of `target`
    (an error when the host has fewer devices), and a Client of it. Returns the client;
    `client.cluster` is closed by `client.close()` when the client made it."""
    import dask
    from distributed import Client, LocalCluster

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    have = device_count(target)
    if workers > have:
        raise ValueError(f"{workers} workers asked for, but there are {have} {target} device(s) here "
                         "(each worker owns one device)")
    # the Measurer's processes are children of the worker: workers (restarted ones too) must not be daemons
    dask.config.set({"distributed.worker.daemon": False})
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None)
    client = Client(cluster)
    client._sched_dsl_owns_cluster = True
    return client


def close_client(client) -> None:
    cluster = client.cluster if getattr(client, "_sched_dsl_owns_cluster", False) else None
    client.close()
    if cluster is not None:
        cluster.close()


class WorkerProgress:
    """One tqdm bar per worker: configs measured there, and the best time it found."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.bars, self.best = enabled, {}, {}
        self.counts: dict[str, int] = {}

    def update(self, worker: str, device: str, measured: Measured) -> None:
        self.counts[worker] = self.counts.get(worker, 0) + 1
        if measured.cost_ms is not None and measured.error is None:
            self.best[worker] = min(self.best.get(worker, float("inf")), measured.cost_ms)
        if not self.enabled:
            return
        from tqdm import tqdm
        if worker not in self.bars:
            self.bars[worker] = tqdm(desc=f"worker {worker} ({device})", unit="config", position=len(self.bars),
                                     dynamic_ncols=True, leave=True)
        bar = self.bars[worker]
        bar.update(1)
        if worker in self.best:
            bar.set_postfix_str(f"best {self.best[worker]:.4g} ms")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class DaskMeasurer:
    """Measures configs on a Dask cluster's workers; the Measurer's interface for `tune`."""

    def __init__(self, client, outputs, schedule, target: str = "opencl", *, progress_bars: bool = True,
                 **measure_options):
        from sched_dsl.tensor import Tensor

        if "device" in measure_options or "workers" in measure_options:
            raise ValueError("with a Dask client each worker's device and build pool are its own: "
                             "do not pass device= or workers=")
        self.client = client
        self.outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
        self.target = target
        # one build process per worker: the workers' builds already run side by side
        self.spec = (self.outputs, schedule, target, {"workers": 1, **measure_options})
        self.token = uuid.uuid4().hex
        self.max_local_bytes = measure_options.get("max_local_bytes", 1024)
        self.progress = WorkerProgress(progress_bars)
        self.info: dict | None = None
        self.worker_info: list[dict] = []

    def start(self) -> dict:
        if self.info is not None:
            return self.info
        workers = sorted(self.client.scheduler_info()["workers"])
        if not workers:
            raise ValueError("the Dask cluster has no workers")
        futures = [self.client.submit(_worker_info, self.token, self.spec, workers=[w], pure=False)
                   for w in workers]
        self.worker_info = self.client.gather(futures)
        kinds = sorted({i["device"] for i in self.worker_info})
        if len(kinds) > 1:
            self.close()
            raise ValueError(f"the Dask workers have {len(kinds)} kinds of device ({'; '.join(kinds)}); records "
                             "are per device: tune on a cluster of one kind of device at a time")
        self.info = dict(self.worker_info[0])
        return self.info

    def measure(self, configs: list[dict[str, int]]) -> list[tuple[Built, Measured]]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        self.start()
        futures = {self.client.submit(_measure_task, self.token, self.spec, c, pure=False): k
                   for k, c in enumerate(configs)}
        out: list = [None] * len(configs)
        for fut in as_completed(list(futures)):
            k = futures[fut]
            try:
                worker, device, built, measured = fut.result()
            except KilledWorker as e:
                out[k] = (Built(dict(configs[k])),
                          Measured(None, "runtime_error", f"measuring it killed the Dask workers it ran on ({e})"))
                continue
            except Exception as e:  # noqa: BLE001 - a failure on the worker is this config's result
                out[k] = (Built(dict(configs[k])),
                          Measured(None, "runtime_error", f"on the Dask worker: {type(e).__name__}: {e}"[:2000]))
                continue
            if device != self.info["device"]:
                measured = Measured(None, "runtime_error", f"measured by worker {worker} on another device "
                                                           f"({device}); not a cost of {self.info['device']}")
            self.progress.update(worker, device, measured)
            out[k] = (built, measured)
        return out

    def features(self, configs: list[dict[str, int]]) -> list[list[float] | None]:
        self.start()
        n = max(1, len(self.worker_info))
        chunk = max(1, -(-len(configs) // n))
        parts = [configs[i:i + chunk] for i in range(0, len(configs), chunk)]
        futures = [self.client.submit(_features_task, self.token, self.spec, p, pure=False) for p in parts]
        return [f for part in self.client.gather(futures) for f in part]

    def close(self) -> None:
        self.progress.close()
        try:
            self.client.run(_close_task, self.token)
        except Exception:  # noqa: BLE001 - a cluster already gone has nothing left to close
            pass

    def __enter__(self) -> DaskMeasurer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
