"""Measuring configs: lowering in a process pool, running in an isolated worker process.

- Build: a pool of worker processes lowers configs in parallel (xDSL passes, kernel text,
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

Both kinds of worker are `python -m sched_dsl.tuner.worker` subprocesses (worker.py), never
multiprocessing children, so they never import the user's script: `sd.tune` works from a plain
script. A worker that dies is reported with its exit code and the end of its stderr.

`hook="module:function"` lets tests inject faults: it is called as
`hook("build", config, None)` in the build pool before lowering, and in the run worker as
`hook("source", config, source) -> source` before compiling and
`hook("run", config, outputs) -> outputs` after the correctness run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import numpy as np

from sched_dsl.runtime.common import DeviceError


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


# -- worker processes --------------------------------------------------------------------------

STDERR_TAIL = 2000  # characters of a dead worker's stderr quoted in the error


class WorkerProcess:
    """`python -m sched_dsl.tuner.worker` (see worker.py) and the connection to it; its stderr
    goes to a temporary file, quoted when it dies."""

    def __init__(self, role: str, args: tuple, what: str):
        self.what = what
        self.log = tempfile.TemporaryFile()
        ours, theirs = socket.socketpair()
        try:
            # PYTHONSAFEPATH: the working directory does not go first on the path, so a folder
            # named sched_dsl there (another checkout) is not taken for the package
            self.proc = subprocess.Popen([sys.executable, "-m", "sched_dsl.tuner.worker", str(theirs.fileno()),
                                          str(os.getpid())],
                                         pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stderr=self.log,
                                         env=dict(os.environ, PYTHONSAFEPATH="1"))
        except OSError as e:
            ours.close()
            self.log.close()
            raise DeviceError(f"the {what} cannot be started: {e}") from None
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        try:
            self.conn.send((role, sys.path, args))
        except OSError:
            pass  # it died at once: first_answer says why

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - STDERR_TAIL))
        text = self.log.read().decode(errors="replace").strip()
        return ("..." if size > STDERR_TAIL else "") + text

    def died(self, when: str = "") -> str:
        """Why it ended: exit code and the end of its stderr."""
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        err = self.stderr()
        return f"the {self.what} died{when} (exit code {code})" + (f"; its stderr:\n{err}" if err else "")

    def first_answer(self, timeout: float):
        """The first message, or DeviceError saying why none came."""
        if not self.conn.poll(timeout):
            self.kill()
            raise DeviceError(f"the {self.what} did not start within {timeout:g} s")
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            message = self.died(" at start")
            self.kill()
            raise DeviceError(message) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.conn.close()
        self.log.close()


class BuildPool:
    """`n` build workers; `map` runs a task over configs, each with a timeout."""

    def __init__(self, n: int, args: tuple, start_timeout: float):
        self.args, self.start_timeout = args, start_timeout
        procs = [WorkerProcess("build", args, "build process") for _ in range(n)]
        try:
            for p in procs:
                self._ready(p)
        except BaseException:
            for p in procs:
                p.kill()
            raise
        self.procs = procs

    def _ready(self, proc: WorkerProcess) -> WorkerProcess:
        proc.first_answer(self.start_timeout)  # start-up and imports do not count against a task's timeout
        return proc

    def _replace(self, proc: WorkerProcess) -> WorkerProcess:
        proc.kill()
        new = self._ready(WorkerProcess("build", self.args, "build process"))
        self.procs[self.procs.index(proc)] = new
        return new

    def map(self, task: str, configs: list[dict], timeout: float, on_fail):
        """Results of `task` over `configs`, in order. A config whose task runs past `timeout`
        seconds or kills its process gets on_fail(config, "timeout" | "died", message); its
        process is replaced. An exception raised by a task is raised here."""
        results: dict[int, object] = {}
        todo = list(enumerate(configs))[::-1]
        idle = list(self.procs)
        busy: dict[Connection, tuple[WorkerProcess, int, dict, float]] = {}
        while todo or busy:
            while idle and todo:
                proc, (k, config) = idle.pop(), todo.pop()
                try:
                    proc.conn.send((task, config))
                except OSError:  # it died while idle
                    todo.append((k, config))
                    idle.append(self._replace(proc))
                    continue
                busy[proc.conn] = (proc, k, config, time.monotonic())
            first_deadline = min(t for *_, t in busy.values()) + timeout
            for conn in wait(list(busy), max(0.0, first_deadline - time.monotonic())):
                proc, k, config, _ = busy.pop(conn)
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):
                    results[k] = on_fail(config, "died", proc.died(" while building"))
                    idle.append(self._replace(proc))
                    continue
                if kind == "raise":
                    raise value
                results[k] = value
                idle.append(proc)
            now = time.monotonic()
            for conn, (proc, k, config, started) in list(busy.items()):
                if now - started >= timeout:
                    del busy[conn]
                    results[k] = on_fail(config, "timeout", f"took longer than {timeout:g} s")
                    idle.append(self._replace(proc))
        return [results[k] for k in range(len(configs))]

    def reinit(self, args: tuple) -> None:
        """Every worker (and every one started later) takes `args` as its workload, keeping
        its process and imports; a worker that fails to is replaced."""
        self.args = args
        for proc in list(self.procs):
            try:
                proc.conn.send(("init", args))
                if proc.conn.poll(self.start_timeout) and proc.conn.recv()[0] == "ok":
                    continue
            except (EOFError, OSError):
                pass
            self._replace(proc)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
        self.procs = []

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

    def _pool_args(self) -> tuple:
        return (self.outputs, self.schedule, self.target, self.info["limits"], self.max_local_bytes,
                self.info["arch"], self.hook)

    def _new_pool(self) -> BuildPool:
        return BuildPool(self.workers, self._pool_args(), max(self.timeout, 60.0))

    def retarget(self, outputs, schedule) -> None:
        """Measures another workload from now on, in the processes already started (starting
        a worker and a pool costs seconds: a model's tuning moves through many workloads)."""
        from sched_dsl.tensor import Tensor

        self.outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
        self.schedule, self._data = schedule, None
        if self.info is None:
            return
        if self._pool is not None:
            self._pool.reinit(self._pool_args())
        if self._proc is not None and self._proc.alive():
            self._send_data()

    def _start_worker(self) -> None:
        self._proc = WorkerProcess("run", (self.target, self.hook, self.device), f"{self.target} measuring process")
        kind, payload = self._proc.first_answer(max(self.timeout, 60.0))
        if kind == "fatal":
            self._kill_worker()
            raise DeviceError(payload)
        self._conn = self._proc.conn
        self.info = payload
        self._send_data()

    def _send_data(self) -> None:
        from sched_dsl.reference import numpy_dtype, tolerance

        if self._data is None:
            from sched_dsl.reference import evaluate
            from sched_dsl.tensor import topological
            rng = np.random.default_rng(self.seed)
            placeholders = [t for t in topological(list(self.outputs)) if t.kind == "placeholder"]
            inputs = {t.name: rng.standard_normal(t.shape).astype(np.float32).astype(numpy_dtype(t.dtype))
                      for t in placeholders}
            want = evaluate(list(self.outputs), inputs)
            self._data = ([inputs[t.name] for t in placeholders], want)
        # f16/bf16/tf32 outputs are right within their types' tolerance
        tol = max(self.tol, tolerance(list(self.outputs))[0])
        self._conn.send(("data", self._data[0], self._data[1], tol))
        if not self._conn.poll(max(self.timeout, 60.0)):
            raise DeviceError("the measuring process did not take the inputs in time")
        self._conn.recv()

    def _kill_worker(self) -> None:
        if self._proc is not None:
            self._proc.kill()
        self._proc = self._conn = None

    def close(self) -> None:
        if self._proc is not None and self._proc.alive():
            try:
                self._conn.send(("stop",))
                self._proc.proc.wait(2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill_worker()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Measurer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- building -------------------------------------------------------------------------------
    def _map(self, task: str, configs: list[dict], on_fail):
        self.start()
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return self._pool.map(task, configs, self.build_timeout, on_fail)
        except BaseException:
            self._pool.close()  # answers still on their way would be taken for the next tasks'
            self._pool = None
            raise

    def build(self, configs: list[dict[str, int]]) -> list[Built]:
        def failed(config, why, message):
            if why == "timeout":
                return Built(config, error="timeout", message=f"building took longer than {self.build_timeout:g} s")
            return Built(config, error="compile_error", message=message)
        return self._map("build", configs, failed)

    def features(self, configs: list[dict[str, int]]) -> list[list[float] | None]:
        return self._map("features", configs, lambda config, why, message: None)

    # -- running ----------------------------------------------------------------------------------
    def run(self, built: Built) -> Measured:
        """Runs one built config in the worker; never raises for a failing candidate."""
        if built.error:
            return Measured(None, built.error, built.message)
        self.start()
        if self._proc is None or not self._proc.alive():
            self._restart_worker()
        try:
            self._conn.send(("run", built.config, built.source, built.plan, built.binary, self.timing))
        except OSError:
            self._restart_worker()
            return Measured(None, "runtime_error", "the measuring process was gone; restarted it")
        if not self._conn.poll(self.timeout):
            self._restart_worker()
            return Measured(None, "timeout", f"no result within {self.timeout:g} s; the measuring process was killed")
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            message = self._proc.died()
            self._restart_worker()
            return Measured(None, "runtime_error", message)
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
