"""The tuner's worker processes, the child side of measure.py.

`python -m sched_dsl.tuner.worker FD` talks to its parent over the socket FD (multiprocessing
`Connection` messages). It is started as a plain subprocess of its own module, never through
multiprocessing, so it never imports the user's script: `sd.tune` works from a script without an
`if __name__ == "__main__":` guard. The first message is `(role, sys_path, args)`:

- ("run", path, (target, hook)): the run worker, which owns the device. It answers
  ("info", device info) once (or ("fatal", why)), then ("ok", None) to each ("data", inputs,
  expected, tol) and one (error class or "ok", payload) to each ("run", config, source, plan,
  binary, timing).
- ("build", path, (outputs, schedule, target, limits, max_local_bytes, arch, hook)): a build
  worker. It answers ("ready", None) once, then ("ok", result) or ("raise", exception) to each
  ("build" | "features", config), and ("ok", None) to ("init", args), which gives it another
  workload.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection

import numpy as np

from sched_dsl.runtime import device_name
from sched_dsl.runtime.common import DeviceError, check_limits
from sched_dsl.tuner.measure import Built

# -- build workers --------------------------------------------------------------------------

_STATE: dict = {}


def _build_init(outputs, schedule, target, limits, max_local_bytes, arch, hook) -> None:
    import sched_dsl.tuner.features  # noqa: F401 - the lowering passes, imported before any task is timed
    _STATE.update(outputs=outputs, schedule=schedule, target=target, limits=limits,
                  max_local_bytes=max_local_bytes, arch=arch, hook=load_hook(hook))


def build_one(config: dict[str, int]) -> Built:
    from sched_dsl.schedule import ScheduleError
    from sched_dsl.tuner.features import FEATURE_NAMES, lower_with_features

    st = _STATE
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
        from sched_dsl.runtime.cuda import nvrtc_cubin, source_arch
        try:
            built.binary = nvrtc_cubin(lowered.source, source_arch(lowered.source, st["arch"]))
        except DeviceError as e:
            built.error, built.message = "compile_error", str(e)
    return built


def features_one(config: dict[str, int]) -> list[float] | None:
    """Features of a config (lowered only as far as the loop IR), or None when it does not lower."""
    from sched_dsl.schedule import ScheduleError
    from sched_dsl.tuner.features import loop_only_features

    try:
        return loop_only_features(_STATE["outputs"], _STATE["schedule"], config)
    except ScheduleError:
        return None


def init_one(args: tuple) -> None:
    """Another workload for this build worker (Measurer.retarget)."""
    _build_init(*args)


TASKS = {"build": build_one, "features": features_one, "init": init_one}


def _build_loop(conn: Connection, args) -> None:
    _build_init(*args)
    conn.send(("ready", None))
    while True:
        try:
            task, config = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", TASKS[task](config)))
        except Exception as e:  # noqa: BLE001 - raised again in the parent
            try:
                conn.send(("raise", e))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                conn.send(("raise", RuntimeError("".join(traceback.format_exception(e)))))


# -- the run worker -------------------------------------------------------------------------

def load_hook(path: str | None):
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
    from sched_dsl.runtime.cuda import default_device, device_arch, device_limits
    dev = default_device()
    return dict(device=device_name(target), limits=device_limits(dev), arch=device_arch(dev))


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


def _run_loop(conn: Connection, target: str, hook_path: str | None, device: int | None = None) -> None:
    """Answers ("info", ...) once, then one answer per job; with `device`, on that device
    ordinal only."""
    if device is not None:
        os.environ[DEVICE_VARIABLES[target]] = str(device)
    try:
        hook = load_hook(hook_path)
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


def exit_with_parent(parent_pid: int) -> None:
    """Ends this process, quietly, when the tuner that started it is gone (killed), also in
    the middle of a long build or run."""
    try:  # Linux: the kernel kills this process when its parent dies
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        def watch():
            while os.getppid() == parent_pid:
                time.sleep(0.2)
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent_pid:  # it died before that was set up
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1:
        exit_with_parent(int(argv[1]))
    conn = Connection(int(argv[0]))
    try:
        role, path, args = conn.recv()
    except EOFError:
        return
    sys.path[:] = path  # the parent's, as multiprocessing's spawn would set it: hooks import from there
    os.environ.pop("PYTHONSAFEPATH", None)  # set for this process only (see measure.py)
    try:
        if role == "run":
            _run_loop(conn, *args)
        else:
            _build_loop(conn, args)
    except (OSError, EOFError):  # the connection to the tuner broke: no one to answer
        return


if __name__ == "__main__":
    main()
