"""Runs lowered kernels through pyopencl on any OpenCL device (PoCL on a CPU, NVIDIA...).

The device is the first GPU, else the first device of any kind; `SCHED_DSL_OPENCL_DEVICE`
picks another by a piece of its platform or device name (e.g. "NVIDIA", "pthread"), or by its
ordinal (digits: the position in `devices()`, every platform's devices in order), which tells
apart devices of one name (`POCL_DEVICES="pthread pthread"` gives two).
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache

import numpy as np

from sched_dsl.lowering.host_plan import HostPlan, c_name
from sched_dsl.runtime.common import DeviceError, DeviceLimits, check_limits, checked_inputs, compile_error

__all__ = ["DeviceError", "OpenCLKernel", "default_device", "device_limits"]


def _pyopencl():
    try:
        import pyopencl as cl
    except ImportError as e:  # pragma: no cover - pyopencl is a dependency
        raise DeviceError(f"pyopencl is not installed: {e}") from None
    return cl


def devices() -> list:
    """(platform, device) of every OpenCL device, every platform's in order (the ordinals)."""
    cl = _pyopencl()
    try:
        platforms = cl.get_platforms()
    except cl.Error as e:
        raise DeviceError(f"no OpenCL platform found ({e}); install an OpenCL driver, e.g. "
                          "Debian's pocl-opencl-icd for the CPU") from None
    found = [(p, d) for p in platforms for d in p.get_devices()]
    if not found:
        raise DeviceError("OpenCL platforms exist but list no device")
    return found


def device_at(ordinal: int):
    """The OpenCL device of that ordinal (see `devices()`)."""
    found = devices()
    if not 0 <= ordinal < len(found):
        raise DeviceError(f"OpenCL device {ordinal} asked for, but there are {len(found)} device(s): "
                          + "; ".join(f"{k}: {d.name}" for k, (_, d) in enumerate(found)))
    return found[ordinal][1]


@lru_cache(maxsize=1)
def default_device():
    cl = _pyopencl()
    devices_ = devices()
    wanted = os.environ.get("SCHED_DSL_OPENCL_DEVICE")
    if wanted and wanted.strip().isdigit():
        return device_at(int(wanted))
    if wanted:
        match = [pd for pd in devices_ if wanted.lower() in f"{pd[0].name} {pd[1].name}".lower()]
        if not match:
            names = "; ".join(f"{p.name}: {d.name}" for p, d in devices_)
            raise DeviceError(f"SCHED_DSL_OPENCL_DEVICE='{wanted}' matches none of: {names}")
        return match[0][1]
    gpus = [d for _, d in devices_ if d.type & cl.device_type.GPU]
    return gpus[0] if gpus else devices_[0][1]


def device_limits(d) -> DeviceLimits:
    sizes = tuple(d.max_work_item_sizes) + (1,) * (3 - len(d.max_work_item_sizes))
    return DeviceLimits(d.name, d.max_work_group_size, sizes[:3], d.local_mem_size)


@lru_cache(maxsize=1)
def _context_and_queue():
    cl = _pyopencl()
    ctx = cl.Context([default_device()])
    return ctx, cl.CommandQueue(ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)


@lru_cache(maxsize=64)
def _program(source: str):
    return build_program(_context_and_queue()[0], source)


def build_program(ctx, source: str):
    """The OpenCL program of `source`, built for the devices of `ctx`."""
    cl = _pyopencl()
    try:
        with warnings.catch_warnings():
            # NVIDIA's compiler reports informational output on success
            warnings.simplefilter("ignore", cl.CompilerWarning)
            return cl.Program(ctx, source).build()
    except cl.RuntimeError as e:
        raise compile_error("OpenCL", str(e), source) from None


class OpenCLKernel:
    """Compiled kernels of one lowered module, called like a function of its inputs."""

    def __init__(self, source: str, plan: HostPlan):
        self.source, self.plan = source, plan
        cl = _pyopencl()
        self.device = default_device()
        self.check_limits()
        self.program = _program(source)
        self.ctx, self.queue = _context_and_queue()
        self.kernels = [cl.Kernel(self.program, c_name(ln.kernel, "kernel")) for ln in plan.launches]
        mf = cl.mem_flags
        self.buffers = {b.name: cl.Buffer(self.ctx, mf.READ_WRITE, size=4 * b.size) for b in plan.buffers}
        self.last_times_ms: list[float] = []

    def check_limits(self) -> None:
        check_limits(self.plan, self.source, device_limits(self.device))

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        cl = _pyopencl()
        for b, a in zip(self.plan.inputs, checked_inputs(self.plan, arrays)):
            cl.enqueue_copy(self.queue, self.buffers[b.name], a)
        self.last_times_ms = self._launch_all()
        outs = []
        for b in self.plan.outputs:
            out = np.empty(b.shape, dtype=b.numpy_dtype)
            cl.enqueue_copy(self.queue, out, self.buffers[b.name])
            outs.append(out)
        self.queue.finish()
        return outs

    def _launch_all(self) -> list[float]:
        """Runs every launch of the plan once, in order; each kernel's time in ms."""
        times = []
        for ln, kern in zip(self.plan.launches, self.kernels):
            glob = tuple(g * b for g, b in zip(ln.grid, ln.block))
            ev = kern(self.queue, glob, ln.block, *[self.buffers[n] for n in ln.args])
            ev.wait()
            times.append((ev.profile.end - ev.profile.start) * 1e-6)
        return times

    def bench(self, repeat: int = 20, warmup: int = 3) -> float:
        """Mean device time in ms of all the plan's kernels, over `repeat` runs on the buffers
        as the last `run` left them (profiling events; no host copies are timed)."""
        for _ in range(warmup):
            self._launch_all()
        return sum(sum(self._launch_all()) for _ in range(repeat)) / repeat

