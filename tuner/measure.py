"""Measuring configs: lowering in a process pool, running in an isolated worker process.

- Build: a pool of "spawn" processes lowers configs in parallel (xDSL passes, kernel text,
  and for CUDA with NVRTC the cubin), each with a timeout, and checks the launches against the
  device's limits (threads per block, block/grid dimensions, shared memory per block, local
  memory per thread). A config that does not lower or exceeds a limit is `invalid` and is
  never run.
- Run: one worker process owns the device. It compiles the text (a failure is
  `compile_error`), runs it once on fixed random inputs and compares with the numpy reference
  (`wrong_answer`), then times it: warm-up runs, then `repeat` measurements of `number`
  back-to-back runs each, `number` raised until one measurement takes `min_repeat_ms`; the
  cost is the smallest per-run time. An exception is `runtime_error`; a worker that does not
  answer within the timeout is killed (`timeout`), one that dies is `runtime_error`; either
  way a fresh worker takes over and tuning goes on.

`hook="module:function"` lets tests inject faults: it is called as
`hook("build", config, None)` in the build pool before lowering, and in the run worker as
`hook("source", config, source) -> source` before compiling and
`hook("run", config, outputs) -> outputs` after the correctness run.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass

import numpy as np

from sched_dsl.runtime import device_name
from sched_dsl.runtime.common import DeviceError, check_limits

SPAWN = mp.get_context("spawn")


@dataclass
class Built:
    """The outcome of building one config."""

    config: dict[str, int]
    source: str | None = None
    plan: object = None
    features: list[float] | None = None
    binary: bytes | None = None  # a CUDA cubin compiled in the pool
    error: str | None = None  # "invalid", "compile_error" or "timeout"
    message: str = ""


@dataclass
class Measured:
    cost_ms: float | None = None
    error: str | None = None
    message: str = ""


# -- the build pool -------------------------------------------------------------------------

_POOL_STATE: dict = {}


def _pool_init(outputs, schedule, target, limits, max_local_bytes, arch, hook) -> None:
    import sched_dsl.tuner.features  # noqa: F401 - the lowering passes, imported before any task is timed
    _POOL_STATE.update(outputs=outputs, schedule=schedule, target=target, limits=limits,
                       max_local_bytes=max_local_bytes, arch=arch, hook=_load_hook(hook))


def _build_one(config: dict[str, int]) -> Built:
    from sched_dsl.schedule import ScheduleError
    from sched_dsl.tuner.features import FEATURE_NAMES, lower_with_features

    st = _POOL_STATE
    if st["hook"] is not None:
        st["hook"]("build", config, None)
    try:
        lowered, feats = lower_with_features(st["outputs"], st["schedule"], st["target"], config)
    except ScheduleError as e:
        return Built(config, error="invalid", message=str(e))
    built = Built(config, lowered.source, lowered.plan, feats)
    try:
        check_limits(lowered.plan, lowered.source, st["limits"])
    except DeviceError as e:
        built.error, built.message = "invalid", str(e)
        return built
    local = 2 ** feats[FEATURE_NAMES.index("local_bytes")] - 1
    if st["max_local_bytes"] is not None and local > st["max_local_bytes"] + 0.5:
        built.error = "invalid"
        built.message = f"{round(local)} bytes of local (register) buffers per thread exceed the limit of {st['max_local_bytes']}"
        return built
    if st["arch"]:
        from sched_dsl.runtime.cuda import nvrtc_cubin
        try:
            built.binary = nvrtc_cubin(lowered.source, st["arch"])
        except DeviceError as e:
            built.error, built.message = "compile_error", str(e)
    return built


def _ready() -> bool:
    return True


def _features_one(config: dict[str, int]) -> list[float] | None:
    """Features of a config (lowered only as far as the loop IR), or None when it does not lower."""
    from sched_dsl.schedule import ScheduleError
    from sched_dsl.tuner.features import loop_only_features

    st = _POOL_STATE
    try:
        return loop_only_features(st["outputs"], st["schedule"], config)
    except ScheduleError:
        return None


# -- the run worker -------------------------------------------------------------------------

def _load_hook(path: str | None):
    if not path:
        return None
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _max_rel_error(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        return float("inf")
    scale = max(float(np.abs(want).max()), 1e-30)
    err = np.abs(got.astype(np.float64) - want)
    return float("inf") if not np.all(np.isfinite(got)) else float(err.max() / scale)


def _device_info(target: str) -> dict:
    if target == "opencl":
        from sched_dsl.runtime.opencl import default_device, device_limits
        return dict(device=device_name(target), limits=device_limits(default_device()), arch=None)
    from sched_dsl.runtime.cuda import default_device, device_limits
    dev = default_device()
    major, minor = dev.compute_capability()
    return dict(device=device_name(target), limits=device_limits(dev), arch=f"sm_{major}{minor}")


def _make_kernel(target: str, source: str, plan, binary: bytes | None):
    from sched_dsl.build import Kernel, Lowered

    if target == "opencl":
        from sched_dsl.runtime.opencl import OpenCLKernel
        return Kernel(Lowered(target, source, plan, None), OpenCLKernel(source, plan))
    from sched_dsl.runtime import cuda
    if binary is not None:  # compiled in the build pool: only loaded here (and cached for CudaKernel)
        cuda.compile_module(source, cuda.default_device(), binary)
    return Kernel(Lowered(target, source, plan, None), cuda.CudaKernel(source, plan))


def _time(runner, number: int, repeat: int, warmup: int, min_repeat_ms: float) -> float:
    """Smallest per-run time in ms over `repeat` measurements of `number` runs each."""
    if warmup:
        runner.bench(repeat=warmup, warmup=0)
    first = runner.bench(repeat=number, warmup=0)
    while first * number < min_repeat_ms and number < 1_000_000:
        number = min(1_000_000, max(number * 2, int(number * min_repeat_ms / max(first * number, 1e-6)) + 1))
        first = runner.bench(repeat=number, warmup=0)
    times = [first] + [runner.bench(repeat=number, warmup=0) for _ in range(repeat - 1)]
    return min(times)


DEVICE_VARIABLES = {"opencl": "SCHED_DSL_OPENCL_DEVICE", "cuda": "SCHED_DSL_CUDA_DEVICE"}


def _worker(conn, target: str, hook_path: str | None, device: int | None = None) -> None:
    """The run worker's loop: answers ("info", ...) once, then one answer per job."""
    if device is not None:  # this process measures on that device only
        os.environ[DEVICE_VARIABLES[target]] = str(device)
    try:
        hook = _load_hook(hook_path)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("fatal", f"the hook '{hook_path}' cannot be loaded: {type(e).__name__}: {e}"))
        return
    try:
        conn.send(("info", _device_info(target)))
    except Exception as e:  # noqa: BLE001
        conn.send(("fatal", f"no {target} device to measure on: {type(e).__name__}: {e}"))
        return
    inputs = expected = None
    tol = 1e-3
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "stop":
            return
        if msg[0] == "data":
            _, inputs, expected, tol = msg
            conn.send(("ok", None))
            continue
        _, config, source, plan, binary, timing = msg
        try:
            if hook is not None:
                source = hook("source", config, source)
                binary = None
            try:
                kern = _make_kernel(target, source, plan, binary)
            except DeviceError as e:
                text = str(e)
                cls = "compile_error" if "does not compile" in text or "NVRTC" in text else "invalid"
                conn.send((cls, text))
                continue
            outs = kern(*inputs)
            outs = list(outs) if isinstance(outs, list) else [outs]
            if hook is not None:
                outs = hook("run", config, outs)
            errs = [_max_rel_error(np.asarray(g), w) for g, w in zip(outs, expected)]
            if max(errs) > tol:
                conn.send(("wrong_answer", f"largest error {max(errs):.3g} relative to the output's magnitude "
                                           f"(tolerance {tol:g})"))
                continue
            conn.send(("ok", _time(kern.runner, **timing)))
        except Exception as e:  # noqa: BLE001 - every failure of a candidate is a result
            last = traceback.extract_tb(e.__traceback__)[-1:]
            where = f" at {os.path.basename(last[0].filename)}:{last[0].lineno}" if last else ""
            conn.send(("runtime_error", f"{type(e).__name__}: {e}{where}"))


class Measurer:
    """Builds configs in a pool and runs them in a worker process; see the module doc."""

    def __init__(self, outputs, schedule, target: str = "opencl", *, timeout: float = 10.0,
                 build_timeout: float = 120.0, workers: int | None = None, number: int = 1, repeat: int = 3,
                 warmup: int = 1, min_repeat_ms: float = 0.0, tol: float = 1e-3, hook: str | None = None,
                 max_local_bytes: int | None = 1024, seed: int = 0, device: int | None = None):
        from sched_dsl.build import TARGETS
        from sched_dsl.tensor import Tensor

        if target not in TARGETS:
            raise ValueError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}")
        if timeout <= 0 or build_timeout <= 0:
            raise ValueError("timeouts must be > 0 seconds")
        self.outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
        self.schedule, self.target = schedule, target
        self.timeout, self.build_timeout = timeout, build_timeout
        self.workers = workers or max(1, min(16, (os.cpu_count() or 2) - 1))
        self.timing = dict(number=number, repeat=repeat, warmup=warmup, min_repeat_ms=min_repeat_ms)
        self.tol, self.hook, self.max_local_bytes, self.seed = tol, hook, max_local_bytes, seed
        self.device = device  # the device ordinal to measure on (None: the target's default device)
        self.info: dict | None = None
        self._proc = self._conn = self._pool = None
        self._data = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> dict:
        """Starts the run worker (reading the device) and the build pool; returns the device info."""
        if self.info is None:
            self._start_worker()
            self._pool = self._new_pool()
        return self.info

    def _new_pool(self):
        pool = SPAWN.Pool(self.workers, _pool_init, (self.outputs, self.schedule, self.target, self.info["limits"],
                                                     self.max_local_bytes, self.info["arch"], self.hook))
        pool.apply(_ready)  # process start-up and imports do not count against a task's timeout
        return pool

    def _start_worker(self) -> None:
        parent, child = SPAWN.Pipe()
        self._proc = SPAWN.Process(target=_worker, args=(child, self.target, self.hook, self.device),
                                   daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(max(self.timeout, 60.0)):
            self._kill_worker()
            raise DeviceError(f"the {self.target} measuring process did not start in time")
        try:
            kind, payload = parent.recv()
        except EOFError:
            raise DeviceError(f"the {self.target} measuring process died at start "
                              f"(exit code {self._proc.exitcode})") from None
        if kind == "fatal":
            self._kill_worker()
            raise DeviceError(payload)
        self.info = payload
        self._send_data()

    def _send_data(self) -> None:
        if self._data is None:
            from sched_dsl.reference import evaluate
            from sched_dsl.tensor import topological
            rng = np.random.default_rng(self.seed)
            placeholders = [t for t in topological(list(self.outputs)) if t.kind == "placeholder"]
            inputs = {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in placeholders}
            want = evaluate(list(self.outputs), inputs)
            self._data = ([inputs[t.name] for t in placeholders], want)
        self._conn.send(("data", self._data[0], self._data[1], self.tol))
        if not self._conn.poll(max(self.timeout, 60.0)):
            raise DeviceError("the measuring process did not take the inputs in time")
        self._conn.recv()

    def _kill_worker(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(5)
        self._proc = None

    def close(self) -> None:
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self._proc.join(2)
        self._kill_worker()
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Measurer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- building -------------------------------------------------------------------------------
    def _map(self, fn, configs: list[dict], timeout: float, on_timeout):
        """fn over configs in the pool, results in order. A task that has not finished
        `timeout` seconds after the tasks before it gets on_timeout(config); the pool is then
        replaced (its process may be stuck) and the unfinished tasks run again."""
        self.start()
        results: dict[int, object] = {}
        pending = list(enumerate(configs))
        while pending:
            jobs = [(k, c, self._pool.apply_async(fn, (c,))) for k, c in pending]
            pending, stuck = [], False
            for k, c, job in jobs:
                if stuck:
                    if job.ready():
                        results[k] = job.get()
                    else:
                        pending.append((k, c))
                    continue
                try:
                    results[k] = job.get(timeout)
                except mp.TimeoutError:
                    results[k] = on_timeout(c)
                    stuck = True
            if stuck:
                self._pool.terminate()
                self._pool.join()
                self._pool = self._new_pool()
        return [results[k] for k in range(len(configs))]

    def build(self, configs: list[dict[str, int]]) -> list[Built]:
        return self._map(_build_one, configs, self.build_timeout,
                         lambda c: Built(c, error="timeout", message=f"building took longer than {self.build_timeout:g} s"))

    def features(self, configs: list[dict[str, int]]) -> list[list[float] | None]:
        return self._map(_features_one, configs, self.build_timeout, lambda c: None)

    # -- running ----------------------------------------------------------------------------------
    def run(self, built: Built) -> Measured:
        """Runs one built config in the worker; never raises for a failing candidate."""
        if built.error:
            return Measured(None, built.error, built.message)
        self.start()
        if self._proc is None or not self._proc.is_alive():
            self._start_worker()
        try:
            self._conn.send(("run", built.config, built.source, built.plan, built.binary, self.timing))
        except (BrokenPipeError, OSError):
            self._restart_worker()
            return Measured(None, "runtime_error", "the measuring process was gone; restarted it")
        if not self._conn.poll(self.timeout):
            self._restart_worker()
            return Measured(None, "timeout", f"no result within {self.timeout:g} s; the measuring process was killed")
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            code = self._proc.exitcode
            self._restart_worker()
            return Measured(None, "runtime_error", f"the measuring process died (exit code {code})")
        if kind == "ok":
            return Measured(float(payload))
        if kind == "runtime_error" and self.target == "cuda":
            self._restart_worker()  # a failed launch can leave the CUDA context unusable
        return Measured(None, kind, str(payload))

    def measure(self, configs: list[dict[str, int]]) -> list[tuple[Built, Measured]]:
        """Builds `configs` and runs each built one, in order."""
        return [(b, self.run(b)) for b in self.build(configs)]

    def _restart_worker(self) -> None:
        self._kill_worker()
        self._start_worker()
