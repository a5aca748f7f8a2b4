"""Runs lowered kernels through pyopencl on any OpenCL device (PoCL on a CPU, NVIDIA...).

The device is the first GPU, else the first device of any kind; `SCHED_DSL_OPENCL_DEVICE`
picks another by a piece of its platform or device name (e.g. "NVIDIA", "pthread").
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

import numpy as np

from sched_dsl.lowering.host_plan import HostPlan, c_name


class DeviceError(RuntimeError):
    """No usable device, a kernel that does not compile, or a launch the device cannot run."""


def _pyopencl():
    try:
        import pyopencl as cl
    except ImportError as e:  # pragma: no cover - pyopencl is a dependency
        raise DeviceError(f"pyopencl is not installed: {e}") from None
    return cl


@lru_cache(maxsize=1)
def default_device():
    cl = _pyopencl()
    try:
        platforms = cl.get_platforms()
    except cl.Error as e:
        raise DeviceError(f"no OpenCL platform found ({e}); install an OpenCL driver, e.g. "
                          "Debian's pocl-opencl-icd for the CPU") from None
    devices = [(p, d) for p in platforms for d in p.get_devices()]
    if not devices:
        raise DeviceError("OpenCL platforms exist but list no device")
    wanted = os.environ.get("SCHED_DSL_OPENCL_DEVICE")
    if wanted:
        match = [pd for pd in devices if wanted.lower() in f"{pd[0].name} {pd[1].name}".lower()]
        if not match:
            names = "; ".join(f"{p.name}: {d.name}" for p, d in devices)
            raise DeviceError(f"SCHED_DSL_OPENCL_DEVICE='{wanted}' matches none of: {names}")
        return match[0][1]
    gpus = [d for _, d in devices if d.type & cl.device_type.GPU]
    return gpus[0] if gpus else devices[0][1]


@lru_cache(maxsize=1)
def _context_and_queue():
    cl = _pyopencl()
    ctx = cl.Context([default_device()])
    return ctx, cl.CommandQueue(ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)


@lru_cache(maxsize=64)
def _program(source: str):
    cl = _pyopencl()
    ctx, _ = _context_and_queue()
    try:
        return cl.Program(ctx, source).build()
    except cl.RuntimeError as e:
        raise DeviceError(f"the OpenCL kernel does not compile:\n{e}") from None


class OpenCLKernel:
    """Compiled kernels of one lowered module, called like a function of its inputs."""

    def __init__(self, source: str, plan: HostPlan):
        self.source, self.plan = source, plan
        cl = _pyopencl()
        self.device = default_device()
        self.check_limits()
        self.program = _program(source)
        self.ctx, self.queue = _context_and_queue()
        self.kernels = [getattr(self.program, c_name(ln.kernel, "kernel")) for ln in plan.launches]
        mf = cl.mem_flags
        self.buffers = {b.name: cl.Buffer(self.ctx, mf.READ_WRITE, size=4 * b.size) for b in plan.buffers}
        self.last_times_ms: list[float] = []

    def check_limits(self) -> None:
        d = self.device
        for ln in self.plan.launches:
            if ln.threads > d.max_work_group_size:
                raise DeviceError(f"kernel {ln.kernel}: {ln.threads} threads per block exceed "
                                  f"{d.name}'s limit of {d.max_work_group_size}")
            for k, n in enumerate(ln.block):
                if n > d.max_work_item_sizes[k]:
                    raise DeviceError(f"kernel {ln.kernel}: block dimension {k} = {n} exceeds "
                                      f"{d.name}'s limit of {d.max_work_item_sizes[k]}")
        shared = _shared_bytes(self.source)
        if shared > d.local_mem_size:
            raise DeviceError(f"kernels use {shared} bytes of shared memory; {d.name} has {d.local_mem_size}")

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        cl = _pyopencl()
        inputs = self.plan.inputs
        if len(arrays) != len(inputs):
            raise TypeError(f"expected {len(inputs)} inputs ({', '.join(b.name for b in inputs)}), got {len(arrays)}")
        for b, a in zip(inputs, arrays):
            a = np.ascontiguousarray(a, dtype=np.float32)
            if a.shape != b.shape:
                raise ValueError(f"input '{b.name}' has shape {a.shape}, expected {b.shape}")
            cl.enqueue_copy(self.queue, self.buffers[b.name], a)
        self.last_times_ms = []
        for ln, kern in zip(self.plan.launches, self.kernels):
            glob = tuple(g * b for g, b in zip(ln.grid, ln.block))
            ev = kern(self.queue, glob, ln.block, *[self.buffers[n] for n in ln.args])
            ev.wait()
            self.last_times_ms.append((ev.profile.end - ev.profile.start) * 1e-6)
        outs = []
        for b in self.plan.outputs:
            out = np.empty(b.shape, dtype=np.float32)
            cl.enqueue_copy(self.queue, out, self.buffers[b.name])
            outs.append(out)
        self.queue.finish()
        return outs


def _shared_bytes(source: str) -> int:
    """Largest shared memory a kernel of the text declares (each is `__local float x[N];`)."""
    per_kernel = [0]
    for line in source.splitlines():
        if line.startswith("__kernel"):
            per_kernel.append(0)
        m = re.match(r"\s*__local float \w+\[(\d+)\];", line)
        if m:
            per_kernel[-1] += 4 * int(m.group(1))
    return max(per_kernel)
