"""Runs lowered kernels through pyopencl on any OpenCL device (PoCL on a CPU, NVIDIA...).

The device is the first GPU, else the first device of any kind; `SCHED_DSL_OPENCL_DEVICE`
picks another by a piece of its platform or device name (e.g. "NVIDIA", "pthread"), or by its
ordinal (digits: the position in `devices()`, every platform's devices in order), which tells
apart devices of one name (`POCL_DEVICES="pthread pthread"` gives two).
"""

from __future__ import annotations

import os
import threading
import warnings
from functools import lru_cache

import numpy as np

from sched_dsl.lowering.host_plan import HostPlan, c_name
from sched_dsl.runtime.common import (DeviceError, DeviceLimits, check_limits, checked_inputs, compile_error,
                                      watchdog)

__all__ = ["DeviceError", "OpenCLKernel", "default_device", "device_limits", "has_tensor_cores"]


def _pyopencl():
    try:
        import pyopencl as cl
    except ImportError as e:  # pragma: no cover - pyopencl is a dependency
        raise DeviceError(f"pyopencl is not installed: {e}") from None
    return cl


def enqueue_zero(queue, buf, nbytes: int | None = None) -> None:
    """Sets a buffer (its first `nbytes`) to zero in the queue's order: one that a kernel
    updates by atomics (host_plan.Launch.zeroed)."""
    _pyopencl().enqueue_fill_buffer(queue, buf, np.zeros(1, np.float32), 0, buf.size if nbytes is None else nbytes)


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


def has_tensor_cores(d=None) -> bool:
    """Whether the OpenCL device is an NVIDIA GPU of compute capability 8.0 or later, whose
    compiler takes the tensor-core instructions (mma.sync, ldmatrix, cp.async) as inline PTX.
    `SCHED_DSL_TENSOR_CORES=0` turns them off (plain loops; to compare)."""
    if os.environ.get("SCHED_DSL_TENSOR_CORES") == "0":
        return False
    d = default_device() if d is None else d
    if "nvidia" not in d.platform.name.lower():
        return False
    try:
        return d.compute_capability_major_nv >= 8
    except Exception:  # noqa: BLE001 - a driver without the cl_nv_device_attribute_query extension
        return False


def device_limits(d) -> DeviceLimits:
    sizes = tuple(d.max_work_item_sizes) + (1,) * (3 - len(d.max_work_item_sizes))
    return DeviceLimits(d.name, d.max_work_group_size, sizes[:3], d.local_mem_size,
                        max_buffer_bytes=d.max_mem_alloc_size, memory_bytes=d.global_mem_size)


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
            with watchdog(f"building {source.count('__kernel ')} OpenCL kernel(s)"):
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
        self.buffers = {b.name: cl.Buffer(self.ctx, mf.READ_WRITE, size=max(b.nbytes, 4)) for b in plan.buffers}
        # TMA descriptors: only CUDA reads them (OpenCL runs a TMA copy as plain loops)
        self.buffers.update({m.name: cl.Buffer(self.ctx, mf.READ_WRITE, size=m.nbytes) for m in plan.tensor_maps})
        self.last_times_ms: list[float] = []
        # one call at a time: calls share the buffers and the kernels' arguments
        self.lock = threading.Lock()

    def check_limits(self) -> None:
        check_limits(self.plan, self.source, device_limits(self.device))

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """The outputs for `arrays`; safe to call from several threads at once."""
        cl = _pyopencl()
        inputs = checked_inputs(self.plan, arrays)
        with self.lock:
            for b, a in zip(self.plan.inputs, inputs):
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
            for name in ln.zeroed:  # updated by atomics: starts at zero
                enqueue_zero(self.queue, self.buffers[name])
            with watchdog(f"kernel {ln.kernel} on {self.device.name}"):
                ev = kern(self.queue, glob, ln.block, *[self.buffers[n] for n in ln.args])
                ev.wait()
            times.append((ev.profile.end - ev.profile.start) * 1e-6)
        return times

    def bench(self, repeat: int = 20, warmup: int = 3) -> float:
        """Mean device time in ms of all the plan's kernels, over `repeat` runs on the buffers
        as the last `run` left them (profiling events; no host copies are timed)."""
        with self.lock:
            for _ in range(warmup):
                self._launch_all()
            return sum(sum(self._launch_all()) for _ in range(repeat)) / repeat



# ---- whole models: programs compiled in parallel and cached on disk; command buffers ----------

def device_key(d) -> tuple[str, ...]:
    """What a compiled program depends on besides its source: platform, device, driver."""
    return (d.platform.name, d.platform.version, d.name, d.version, d.driver_version)


def build_programs(sources: list[str]) -> list:
    """Built programs of `sources` on the default device: binaries from the disk cache where
    it has them, the others compiled in parallel (threads: the build releases the GIL)."""
    from sched_dsl.runtime.cache import cached_compile

    cl = _pyopencl()
    ctx, _ = _context_and_queue()
    dev = default_device()

    def compile_one(source: str):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cl.CompilerWarning)
                with watchdog(f"building {source.count('__kernel ')} OpenCL kernel(s)"):
                    prog = cl.Program(ctx, source).build()
        except cl.RuntimeError as e:
            raise compile_error("OpenCL", str(e), source) from None
        (binary,) = prog.get_info(cl.program_info.BINARIES)
        return bytes(binary), prog

    def load(binary: bytes):
        try:
            return cl.Program(ctx, [dev], [binary]).build()
        except cl.Error:
            return None  # a binary this driver no longer takes: compiled again

    return cached_compile("cl", sources, device_key(dev), compile_one, load, os.cpu_count() or 1)


class CommandBuffer:
    """A recorded sequence of kernel launches (cl_khr_command_buffer), replayed with one call.

    pyopencl does not wrap the extension, so its entry points are looked up through the ICD
    loader with ctypes. Each launch waits for the one before it (a sync point), and the
    kernel's arguments are those set when it is recorded."""

    def __init__(self, queue, launches: list[tuple[object, tuple[int, ...], tuple[int, ...]]]):
        import ctypes as C

        self.C = C
        fns = _command_buffer_functions(queue.device.platform.int_ptr)
        if fns is None:
            raise DeviceError(f"{queue.device.name} has no cl_khr_command_buffer")
        self.fns, self.queue = fns, queue
        self.queues = (C.c_void_p * 1)(queue.int_ptr)
        err = C.c_int32()
        self.handle = fns["create"](1, self.queues, None, C.byref(err))
        _check(err.value, "clCreateCommandBufferKHR")
        previous = None
        for kernel, glob, local in launches:
            n = len(glob)
            sync = C.c_uint32()
            wait = (C.c_uint32 * 1)(previous.value) if previous is not None else None
            _check(fns["ndrange"](self.handle, None, None, kernel.int_ptr, n, None, (C.c_size_t * n)(*glob),
                                  (C.c_size_t * n)(*local), 0 if wait is None else 1, wait, C.byref(sync), None),
                   "clCommandNDRangeKernelKHR")
            previous = sync
        _check(fns["finalize"](self.handle), "clFinalizeCommandBufferKHR")

    def enqueue(self) -> None:
        _check(self.fns["enqueue"](1, self.queues, self.handle, 0, None, None), "clEnqueueCommandBufferKHR")

    def __del__(self):
        if getattr(self, "handle", None):
            self.fns["release"](self.handle)
            self.handle = None


def _check(err: int, what: str) -> None:
    if err != 0:
        raise DeviceError(f"{what} failed with OpenCL error {err}")


def has_command_buffer(d) -> bool:
    return "cl_khr_command_buffer" in d.extensions.split() and \
        _command_buffer_functions(d.platform.int_ptr) is not None


@lru_cache(maxsize=4)
def _command_buffer_functions(platform: int) -> dict | None:
    import ctypes as C
    import ctypes.util

    name = ctypes.util.find_library("OpenCL") or "libOpenCL.so.1"
    try:
        lib = C.CDLL(name)
    except OSError:
        return None
    get = lib.clGetExtensionFunctionAddressForPlatform
    get.restype, get.argtypes = C.c_void_p, [C.c_void_p, C.c_char_p]
    vp, i32, u32 = C.c_void_p, C.c_int32, C.c_uint32
    size_p, u32_p = C.POINTER(C.c_size_t), C.POINTER(C.c_uint32)
    types = {
        "create": ("clCreateCommandBufferKHR", vp, u32, C.POINTER(vp), vp, C.POINTER(i32)),
        "finalize": ("clFinalizeCommandBufferKHR", i32, vp),
        "release": ("clReleaseCommandBufferKHR", i32, vp),
        "enqueue": ("clEnqueueCommandBufferKHR", i32, u32, C.POINTER(vp), vp, u32, vp, vp),
        # command buffer, queue, properties, kernel, work_dim, offset, global, local,
        # number of sync points waited for, their list, the new sync point, mutable handle
        "ndrange": ("clCommandNDRangeKernelKHR", i32, vp, vp, vp, vp, u32, vp, size_p, size_p, u32, u32_p, u32_p, vp),
    }
    fns = {}
    for key, (fname, restype, *args) in types.items():
        addr = get(platform, fname.encode())
        if not addr:
            return None
        fns[key] = C.CFUNCTYPE(restype, *args)(addr)
    return fns
