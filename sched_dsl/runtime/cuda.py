"""Runs lowered kernels through pycuda on an NVIDIA GPU (the optional `cuda` extra).

The CUDA C text is compiled with NVRTC when cuda-python's binding of it can be imported
(in a compiler process of its own, no temporary files), else with nvcc through
pycuda.compiler.SourceModule.
Compiled modules are kept per process, keyed by the text's hash and the device.
`SCHED_DSL_CUDA_DEVICE` picks a device by its ordinal (default 0).
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import math
import os
import pickle
import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from sched_dsl.lowering.host_plan import HostPlan, c_name
from sched_dsl.runtime import nvrtc_worker
from sched_dsl.runtime.common import DeviceError, DeviceLimits, check_limits, checked_inputs, compile_error

__all__ = ["CudaKernel", "DeviceError", "default_device", "device_limits"]

def _driver():
    try:
        import pycuda.driver as drv
    except ImportError as e:
        raise DeviceError(f"pycuda is not installed ({e}); the CUDA target needs it: "
                          "pip install 'sched-dsl[cuda]' (builds against the CUDA toolkit)") from None
    return drv


@lru_cache(maxsize=1)
def default_device():
    """The pycuda Device the runtime uses, with its primary context made current."""
    drv = _driver()
    try:
        drv.init()
        count = drv.Device.count()
    except drv.Error as e:
        raise DeviceError(f"CUDA is not usable here ({e}): no NVIDIA driver or no device") from None
    if count == 0:
        raise DeviceError("the CUDA driver lists no device")
    wanted = os.environ.get("SCHED_DSL_CUDA_DEVICE", "0")
    try:
        ordinal = int(wanted)
    except ValueError:
        raise DeviceError(f"SCHED_DSL_CUDA_DEVICE='{wanted}' is not a device ordinal") from None
    if not 0 <= ordinal < count:
        raise DeviceError(f"SCHED_DSL_CUDA_DEVICE={ordinal}, but there are {count} CUDA device(s)")
    dev = drv.Device(ordinal)
    ctx = dev.retain_primary_context()
    ctx.push()
    atexit.register(ctx.pop)
    _PRIMARY.append(ctx)
    return dev


_PRIMARY: list = []  # the context default_device made current (in the thread that first asked)


@contextmanager
def current_context():
    """The runtime's context made current in the calling thread while the block runs (a
    pycuda context is current in one thread; calls may come from others)."""
    drv = _driver()
    default_device()
    if drv.Context.get_current() is not None:
        yield
        return
    _PRIMARY[0].push()
    try:
        yield
    finally:
        drv.Context.pop()


def device_limits(dev) -> DeviceLimits:
    a = _driver().device_attribute
    return DeviceLimits(
        name=dev.name(),
        max_threads_per_block=dev.get_attribute(a.MAX_THREADS_PER_BLOCK),
        max_block_dims=(dev.get_attribute(a.MAX_BLOCK_DIM_X), dev.get_attribute(a.MAX_BLOCK_DIM_Y),
                        dev.get_attribute(a.MAX_BLOCK_DIM_Z)),
        # static __shared__ arrays are capped at 48 KiB; a kernel with more buffers takes them
        # from dynamic shared memory, up to the device's opt-in limit
        max_shared_bytes=max(dev.get_attribute(a.MAX_SHARED_MEMORY_PER_BLOCK),
                             dev.get_attribute(a.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)),
        max_grid_dims=(dev.get_attribute(a.MAX_GRID_DIM_X), dev.get_attribute(a.MAX_GRID_DIM_Y),
                       dev.get_attribute(a.MAX_GRID_DIM_Z)),
        max_buffer_bytes=dev.total_memory(),
        memory_bytes=dev.total_memory(),
    )


def _installed(*modules: str) -> bool:
    """Whether one of `modules` is installed (found, not imported)."""
    for name in modules:
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except ImportError:
            pass
    return False


def _has_nvrtc() -> bool:
    """Whether cuda-python's NVRTC binding is installed (not imported: importing it here could
    load NVRTC into this process)."""
    return _installed("cuda.bindings.nvrtc", "cuda.nvrtc")


class _CompilerProcess:
    """NVRTC in a subprocess of its own (see nvrtc_worker.py for why)."""

    def __init__(self):
        self.proc = None

    def compile(self, source: str, arch: str) -> bytes:
        if self.proc is None or self.proc.poll() is not None:
            # the working directory leaves sys.path ("" under -c; absent with PYTHONSAFEPATH): a
            # checkout's sched_dsl/ folder is not the package
            start = ("import sys; sys.path = [p for p in sys.path if p != '']; "
                     "from sched_dsl.runtime.nvrtc_worker import main; main()")
            self.proc = subprocess.Popen([sys.executable, "-c", start], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            atexit.register(self.proc.kill)
        try:
            nvrtc_worker.send(self.proc.stdin, (source, arch))
            answer = nvrtc_worker.receive(self.proc.stdout)
        except (BrokenPipeError, EOFError, pickle.UnpicklingError):
            answer = None
        if answer is None:
            self.proc.kill()
            raise DeviceError("the NVRTC compiler process ended while compiling the kernel text")
        kind, value = answer
        if kind == "error":
            raise DeviceError(value)
        return value


_COMPILER = _CompilerProcess()


_MODULES: dict[tuple[str, str], tuple[object, str]] = {}


def nvrtc_cubin(source: str, arch: str) -> bytes | None:
    """The cubin NVRTC compiles `source` to for `arch` (e.g. "sm_90"), or None without
    cuda-python's NVRTC; needs no GPU, so other processes can compile ahead."""
    nvrtc = nvrtc_worker.load_nvrtc()
    return None if nvrtc is None else nvrtc_worker.compile_cubin(nvrtc, source, arch)


def zero_async(ptr: int, nbytes: int, stream=None) -> None:
    """Sets `nbytes` (a multiple of 4) at device address `ptr` to zero in `stream`'s order (and
    so in a graph captured from it): a buffer that a kernel updates by atomics."""
    _driver().memset_d32_async(ptr, 0, nbytes // 4, stream)


# CUtensorMapDataType, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B
TENSOR_MAP_TYPES = {"f16": 6, "bf16": 9}
SWIZZLE_128B, L2_PROMOTION_128B = 3, 2


def encode_tensor_map(address: int, shape: tuple[int, ...], dtype: str, box: tuple[int, ...]) -> np.ndarray:
    """The 128 bytes of a TMA descriptor (cuTensorMapEncodeTiled) of the row-major tensor at
    `address`, for copies of `box` (outermost dimension first) into the 128-byte swizzled
    layout; past the tensor's edge a copy reads zeros. pycuda binds no tensor maps: the
    driver's entry is called directly."""
    import ctypes

    rank = len(shape)
    itemsize = 2
    strides = [itemsize * math.prod(shape[d + 1:]) for d in range(rank - 1)]  # bytes, of dims 1.. innermost first
    raw = np.zeros(192, np.uint8)
    at = (-raw.ctypes.data) % 64  # the descriptor is 64-byte aligned
    u64, u32 = ctypes.c_uint64 * rank, ctypes.c_uint32 * rank
    try:
        encode = ctypes.CDLL("libcuda.so.1").cuTensorMapEncodeTiled
    except (OSError, AttributeError) as e:
        raise DeviceError(f"TMA copies need the CUDA driver's cuTensorMapEncodeTiled (CUDA 12 or later): {e}") from None
    status = encode(ctypes.c_void_p(raw.ctypes.data + at), TENSOR_MAP_TYPES[dtype], rank, ctypes.c_void_p(address),
                    u64(*reversed(shape)), (ctypes.c_uint64 * max(rank - 1, 1))(*reversed(strides)),
                    u32(*reversed(box)), u32(*[1] * rank), 0, SWIZZLE_128B, L2_PROMOTION_128B, 0)
    if status != 0:
        raise DeviceError(f"cuTensorMapEncodeTiled refused a {dtype} tensor of shape {shape} with boxes {box} "
                          f"(CUresult {status})")
    return raw[at:at + 128].copy()


def source_arch(source: str, arch: str) -> str:
    """The architecture to compile `source` for on a device of `arch` ("sm_90"): Hopper's
    arch-specific one (sm_90a) where the text uses wgmma."""
    return arch + "a" if arch == "sm_90" and "wgmma." in source else arch


def device_arch(dev) -> str:
    major, minor = dev.compute_capability()
    return f"sm_{major}{minor}"


def compile_module(source: str, dev, cubin: bytes | None = None) -> tuple[object, str]:
    """(pycuda Module, name of the compiler used) for `source` on `dev`, compiled once per
    process; `cubin`, when given, is `source` compiled ahead (nvrtc_cubin) and only loaded."""
    key = (hashlib.sha256(source.encode()).hexdigest(), dev.pci_bus_id())
    if key in _MODULES:
        return _MODULES[key]
    drv = _driver()
    arch = source_arch(source, device_arch(dev))
    if cubin is None and _has_nvrtc():
        cubin = _COMPILER.compile(source, arch)
    if cubin is not None:
        try:
            module = drv.module_from_buffer(cubin)
        except drv.Error as e:
            raise DeviceError(f"the NVRTC-compiled module does not load on {dev.name()}: {e}") from None
        result = (module, "nvrtc")
    else:
        from pycuda.compiler import SourceModule
        try:
            module = SourceModule(source, no_extern_c=True, arch=arch, options=["-lineinfo"])
        except drv.CompileError as e:
            raise compile_error("nvcc", e.stderr or e.msg, source) from None
        result = (module, "nvcc")
    _MODULES[key] = result
    return result


class CudaKernel:
    """Compiled kernels of one lowered module, called like a function of its inputs."""

    def __init__(self, source: str, plan: HostPlan):
        self.source, self.plan = source, plan
        with current_context():  # this thread may not be the one the context was made current in
            self._load(source, plan)
        self.last_times_ms: list[float] = []
        # one call at a time: calls share the buffers
        self.lock = threading.Lock()

    def _load(self, source: str, plan: HostPlan) -> None:
        """Compiles and loads the kernels, allocates the buffers, prepares the launches."""
        drv = _driver()
        self.device = default_device()
        self.limits = device_limits(self.device)
        check_limits(plan, source, self.limits)
        self.module, self.compiler = compile_module(source, self.device)
        self.functions = [self.module.get_function(c_name(ln.kernel, "kernel")) for ln in plan.launches]
        fa = drv.function_attribute
        for ln, fn in zip(plan.launches, self.functions):
            # registers can lower a kernel's limit below the device's
            most = fn.get_attribute(fa.MAX_THREADS_PER_BLOCK)
            if ln.threads > most:
                raise DeviceError(f"kernel {ln.kernel}: {ln.threads} threads per block exceed the {most} "
                                  f"that {self.limits.name} can run with its {fn.get_attribute(fa.NUM_REGS)} "
                                  "registers per thread")
        self.buffers = {b.name: drv.mem_alloc(max(b.nbytes, 4)) for b in plan.buffers}
        by_name = {b.name: b for b in plan.buffers}
        for m in plan.tensor_maps:  # TMA descriptors of the buffers just allocated, in buffers of their own
            t = by_name[m.tensor]
            self.buffers[m.name] = drv.to_device(encode_tensor_map(int(self.buffers[m.tensor]), t.shape, t.dtype, m.box))
        # prepared launches: every argument is a device pointer
        self.calls = []
        for ln, fn in zip(plan.launches, self.functions):
            fn.prepare("P" * len(ln.args))
            if ln.dynamic_shared:
                fn.set_attribute(fa.MAX_DYNAMIC_SHARED_SIZE_BYTES, ln.dynamic_shared)
            self.calls.append((fn, tuple(ln.grid), tuple(ln.block), [int(self.buffers[n]) for n in ln.args],
                               ln.dynamic_shared))
        # per launch: (pointer, bytes) of each buffer it updates by atomics, which start at zero
        nbytes = {b.name: b.nbytes for b in plan.buffers}
        self.zeroed = [[(int(self.buffers[n]), nbytes[n]) for n in ln.zeroed] for ln in plan.launches]
        self.last_times_ms: list[float] = []

    def _launch(self, k: int, stream=None) -> None:
        fn, grid, block, args, shared = self.calls[k]
        for ptr, nbytes in self.zeroed[k]:
            zero_async(ptr, nbytes, stream)
        fn.prepared_async_call(grid, block, stream, *args, shared_size=shared)

    def _wait(self, event) -> None:
        from sched_dsl.runtime.common import watchdog

        try:
            with watchdog(f"kernels of {self.plan.function} on {self.limits.name}"):
                event.synchronize()
        except _driver().Error as e:
            raise DeviceError(f"a kernel failed on {self.limits.name}: {e}") from None

    def _launch_all(self) -> list[float]:
        """Runs every launch of the plan once, in order; each kernel's time in ms (CUDA events)."""
        drv = _driver()
        events = []
        for k in range(len(self.calls)):
            start, end = drv.Event(), drv.Event()
            start.record()
            self._launch(k)
            end.record()
            events.append((start, end))
        if events:
            self._wait(events[-1][1])
        return [s.time_till(e) for s, e in events]

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """The outputs for `arrays`; safe to call from several threads at once."""
        drv = _driver()
        inputs = checked_inputs(self.plan, arrays)
        with self.lock, current_context():
            for b, a in zip(self.plan.inputs, inputs):
                drv.memcpy_htod(self.buffers[b.name], a)
            self.last_times_ms = self._launch_all()
            outs = []
            for b in self.plan.outputs:
                out = np.empty(b.shape, dtype=b.numpy_dtype)
                drv.memcpy_dtoh(out, self.buffers[b.name])
                outs.append(out)
        return outs

    def bench(self, repeat: int = 20, warmup: int = 3) -> float:
        """Mean device time in ms of all the plan's kernels, over at least `repeat` back-to-back
        runs on the buffers as the last `run` left them (CUDA events around them). Where
        cuda-python is installed the runs are replayed from a CUDA graph of enough of them to
        last about GRAPH_US, captured once, and the timed replays queue behind one untimed
        replay: a short kernel launched alone from Python, or first after the start event, would
        be timed with the gap while its launch is issued."""
        drv = _driver()
        with self.lock, current_context():
            for _ in range(warmup):
                self._launch_all()
            if not has_cuda_graphs():
                start, end = drv.Event(), drv.Event()
                start.record()
                for _ in range(repeat):
                    for k in range(len(self.calls)):
                        self._launch(k)
                end.record()
                self._wait(end)
                return start.time_till(end) / repeat
            if getattr(self, "_graph", None) is None:  # captured at the first call, replayed at every one
                one_us = 1e3 * sum(self._launch_all())  # an upper bound: each kernel timed with its launch gap
                per_graph = max(1, min(GRAPH_RUNS, math.ceil(GRAPH_US / max(one_us, 1.0))))
                stream = drv.Stream()
                graph = CudaGraph(stream, lambda: [self._launch(k, stream) for _ in range(per_graph)
                                                   for k in range(len(self.calls))])
                self._graph = (per_graph, graph, stream)
            per_graph, graph, stream = self._graph
            launches = -(-repeat // per_graph)
            start, end = drv.Event(), drv.Event()
            graph.launch()  # untimed: the GPU works on it while the timed replays are queued
            start.record(stream)
            for _ in range(launches):
                graph.launch()
            end.record(stream)
            self._wait(end)
            return start.time_till(end) / (launches * per_graph)


GRAPH_RUNS, GRAPH_US = 50, 200  # CudaKernel.bench: at most 50 runs in its graph, enough for 200 us


# ---- whole models: modules compiled in parallel and cached on disk; CUDA graphs -------------

_SPARE_COMPILERS: list[_CompilerProcess] = []  # one NVRTC process of the last batch, kept for the next


def _nvrtc_version() -> str:
    """The cuda-python release whose NVRTC binding compiles (asked of the package metadata:
    loading NVRTC here would break NVIDIA's OpenCL in this process, see nvrtc_worker.py)."""
    from importlib import metadata

    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return f"nvrtc {dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            pass
    return "nvrtc ?"


def load_modules(sources: list[str]) -> list[object]:
    """pycuda Modules of `sources` on the default device: cubins from the disk cache where it
    has them, the others compiled in parallel (NVRTC in several compiler processes, else nvcc)."""
    import queue

    from sched_dsl.runtime.cache import cached_compile

    drv = _driver()
    dev = default_device()
    arch = device_arch(dev)
    use_nvrtc = _has_nvrtc()
    workers = min(os.cpu_count() or 1, 16)
    compilers: queue.Queue[_CompilerProcess] = queue.Queue()
    for c in _SPARE_COMPILERS:
        compilers.put(c)

    def compile_one(source: str):
        source_target = source_arch(source, arch)
        if use_nvrtc:
            try:
                proc = compilers.get_nowait()
            except queue.Empty:
                proc = _CompilerProcess()
            try:
                cubin = proc.compile(source, source_target)
            finally:
                compilers.put(proc)
        else:
            from pycuda.compiler import compile as nvcc_compile
            try:
                cubin = nvcc_compile(source, no_extern_c=True, arch=source_target, options=["-lineinfo"],
                                     cache_dir=False)
            except drv.CompileError as e:
                raise compile_error("nvcc", e.stderr or e.msg, source) from None
        return cubin, cubin

    key = (dev.name(), arch, str(drv.get_driver_version()), _nvrtc_version() if use_nvrtc else "nvcc")
    cubins = cached_compile("cubin", sources, key, compile_one, lambda b: b, workers)
    # one compiler process stays for later loads; the others end (each holds an interpreter)
    procs = list(compilers.queue)
    _SPARE_COMPILERS[:] = procs[:1]
    for c in procs[1:]:
        if c.proc is not None:
            c.proc.kill()
            c.proc.wait()
    modules = []
    for cubin in cubins:
        try:
            modules.append(drv.module_from_buffer(cubin))
        except drv.Error as e:
            raise DeviceError(f"a compiled module does not load on {dev.name()}: {e}") from None
    return modules


def _cuda_bindings():
    """cuda-python's driver API (CUDA graphs): pycuda has no binding of stream capture."""
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver  # cuda-python before 12.6
        except ImportError as e:
            raise DeviceError(f"cuda-python is not installed ({e}); CUDA graphs need it: "
                              "pip install 'sched-dsl[cuda]', or load the model with graph=False") from None
    return driver


def has_cuda_graphs() -> bool:
    return _installed("cuda.bindings.driver", "cuda.cuda")


class CudaGraph:
    """Everything `record()` issues on `stream` (pycuda launches and async copies), captured
    once into a CUDA graph and instantiated; `launch()` replays it on the stream."""

    def __init__(self, stream, record):
        cu = self.cu = _cuda_bindings()
        self.stream = cu.CUstream(stream.handle)
        _cu_check(cu, cu.cuInit(0), "cuInit")
        _cu_check(cu, cu.cuStreamBeginCapture(self.stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
                  "cuStreamBeginCapture")
        try:
            record()
        except BaseException:
            cu.cuStreamEndCapture(self.stream)
            raise
        self.graph = _cu_check(cu, cu.cuStreamEndCapture(self.stream), "cuStreamEndCapture")
        instantiate = getattr(cu, "cuGraphInstantiateWithFlags", None) or cu.cuGraphInstantiate
        self.exec = _cu_check(cu, instantiate(self.graph, 0), "cuGraphInstantiate")

    def launch(self) -> None:
        _cu_check(self.cu, self.cu.cuGraphLaunch(self.exec, self.stream), "cuGraphLaunch")

    def __del__(self):
        cu = getattr(self, "cu", None)
        if cu is not None and getattr(self, "exec", None) is not None:
            cu.cuGraphExecDestroy(self.exec)
            cu.cuGraphDestroy(self.graph)
            self.exec = None


def _cu_check(cu, result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != cu.CUresult.CUDA_SUCCESS:
        name = cu.cuGetErrorName(err)[1]
        raise DeviceError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return rest[0] if len(rest) == 1 else rest
