"""What the OpenCL and CUDA runtimes share: the error type, input checking, and the check of a
host plan's launches against a device's limits (read before anything is compiled or run)."""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from sched_dsl.lowering.host_plan import HostPlan, c_name


class DeviceError(RuntimeError):
    """No usable device, a kernel that does not compile, or a launch the device cannot run."""


@dataclass(frozen=True)
class DeviceLimits:
    """What one device allows a single launch."""

    name: str
    max_threads_per_block: int
    max_block_dims: tuple[int, int, int]
    max_shared_bytes: int  # shared (OpenCL: __local) memory per block: static, or CUDA's opt-in dynamic limit
    max_grid_dims: tuple[int, int, int] | None = None  # None: no limit worth checking
    max_buffer_bytes: int | None = None  # the largest single buffer (OpenCL: max_mem_alloc_size)
    memory_bytes: int | None = None  # all buffers together

# a kernel's first line in either spelling, and a shared array declaration in either spelling
_KERNEL_HEAD = re.compile(r"^(?:__kernel|__global__)\b.*?\b([vx]_\w+)\(")
_SHARED_DECL = re.compile(r"^\s*(?:__local|__shared__)(?: __align__\(\d+\))? (float|int|ushort|__half|__nv_bfloat16) "
                          r"\w+\[(\d+)\]")
_ELEMENT_BYTES = {"float": 4, "int": 4, "ushort": 2, "__half": 2, "__nv_bfloat16": 2}


def shared_bytes(source: str) -> dict[str, int]:
    """Shared memory each kernel of the printed text declares, by the kernel's C name."""
    per_kernel: dict[str, int] = {}
    current = None
    for line in source.splitlines():
        m = _KERNEL_HEAD.match(line)
        if m:
            current = m.group(1)
            per_kernel[current] = 0
            continue
        m = _SHARED_DECL.match(line)
        if m and current is not None:
            per_kernel[current] += _ELEMENT_BYTES[m.group(1)] * int(m.group(2))
    return per_kernel


def check_limits(plan: HostPlan, source: str, limits: DeviceLimits) -> None:
    """Raises DeviceError naming the kernel and the limit when a launch of `plan` exceeds
    `limits` (threads per block, a block or grid dimension, shared memory per block), or a
    buffer of it does not fit the device."""
    check_buffers({b.name: 4 * b.size for b in plan.buffers}, limits)
    shared = shared_bytes(source)
    axes = "xyz"
    for ln in plan.launches:
        if ln.threads > limits.max_threads_per_block:
            raise DeviceError(f"kernel {ln.kernel}: {ln.threads} threads per block ({'x'.join(map(str, ln.block))}) "
                              f"exceed {limits.name}'s limit of {limits.max_threads_per_block}")
        for k, n in enumerate(ln.block):
            if n > limits.max_block_dims[k]:
                raise DeviceError(f"kernel {ln.kernel}: block dimension {axes[k]} = {n} exceeds "
                                  f"{limits.name}'s limit of {limits.max_block_dims[k]}")
        if limits.max_grid_dims is not None:
            for k, n in enumerate(ln.grid):
                if n > limits.max_grid_dims[k]:
                    raise DeviceError(f"kernel {ln.kernel}: grid dimension {axes[k]} = {n} exceeds "
                                      f"{limits.name}'s limit of {limits.max_grid_dims[k]}")
        used = max(shared.get(c_name(ln.kernel, "kernel"), 0), ln.shared_bytes)
        if used > limits.max_shared_bytes:
            raise DeviceError(f"kernel {ln.kernel}: {used} bytes of shared memory per block exceed "
                              f"{limits.name}'s limit of {limits.max_shared_bytes}")


# The input dtype policy, by the element type the input is declared with: an array of the
# declared dtype, or of a dtype whose every value converts to it exactly (no rounding, no
# wrap-around); anything else is refused, float64 included (float32 would round it).
ACCEPTED_DTYPES = {
    "f32": ("float32", "float16", "int8", "uint8", "int16", "uint16"),
    "f16": ("float16", "int8", "uint8"),
    "bf16": ("bfloat16", "int8", "uint8"),  # ml_dtypes.bfloat16
    "i32": ("int32", "int8", "uint8", "int16", "uint16"),
}


def _bfloat16():
    import ml_dtypes
    return ml_dtypes.bfloat16


NUMPY_DTYPES = {"f32": np.float32, "f16": np.float16, "bf16": _bfloat16(), "i32": np.int32}


def checked_array(name: str, a, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Input `name` as a contiguous array of element type `dtype` ("f32", "i32"), after
    checking it against the policy above and `shape`: TypeError for what is not an array
    of an accepted dtype, ValueError for a wrong shape."""
    want = NUMPY_DTYPES[dtype]
    if type(a) is np.ndarray and a.dtype == want and a.shape == tuple(shape) and a.flags.c_contiguous:
        return a  # what every well-formed request gives: nothing to check further or convert
    module = "ml_dtypes" if dtype == "bf16" else "np"
    fix = f"pass a numpy array of {np.dtype(want).name}, e.g. np.asarray(x, dtype={module}.{np.dtype(want).name})"
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"input '{name}' is a masked array, whose mask a kernel would ignore; "
                        "pass a.filled(value) instead")
    if not isinstance(a, np.ndarray) and not hasattr(a, "__array__"):
        raise TypeError(f"input '{name}' is {'None' if a is None else 'a ' + type(a).__name__}; {fix}")
    a = np.asarray(a)
    if a.dtype.fields is not None or a.dtype.subdtype is not None:
        raise TypeError(f"input '{name}' has the structured dtype {a.dtype}; {fix}")
    if a.dtype.name not in ACCEPTED_DTYPES[dtype]:
        exact = ", ".join(ACCEPTED_DTYPES[dtype][1:])
        raise TypeError(f"input '{name}' has dtype {a.dtype.name}, expected {np.dtype(want).name} (or {exact}, "
                        f"which convert exactly); {fix}")
    if a.shape != tuple(shape):
        raise ValueError(f"input '{name}' has shape {a.shape}, expected {tuple(shape)}")
    return np.ascontiguousarray(a, dtype=want)


def checked_inputs(plan: HostPlan, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The inputs as contiguous arrays of their declared element types (f16 as float16, bf16 as
    ml_dtypes' bfloat16), after checking their number, dtypes (checked_array) and shapes."""
    inputs = plan.inputs
    if len(arrays) != len(inputs):
        raise TypeError(f"expected {len(inputs)} inputs ({', '.join(b.name for b in inputs)}), got {len(arrays)}")
    return [checked_array(b.name, a, b.dtype, b.shape) for b, a in zip(inputs, arrays)]


# nvcc / NVRTC: "file.cu(12): error: ..."; clang-based OpenCL compilers: "<source>:12:5: error: ..."
_LOG_LINE = re.compile(r"(?:\((\d+)\)|:(\d+):\d+): (?:fatal |catastrophic )?error")


def compile_error(compiler: str, log: str, source: str) -> DeviceError:
    """A DeviceError with the compiler's log and, for each line it reports an error on, that
    line of the source."""
    lines = source.splitlines()
    quoted = []
    for n in dict.fromkeys(int(m.group(1) or m.group(2)) for m in _LOG_LINE.finditer(log)):
        if 1 <= n <= len(lines):
            quoted.append(f"  line {n}: {lines[n - 1].strip()}")
    where = ("\noffending source line(s):\n" + "\n".join(quoted)) if quoted else ""
    return DeviceError(f"the kernel text does not compile ({compiler}):\n{log.strip()}{where}")


def check_buffers(sizes: dict[str, int], limits: DeviceLimits) -> None:
    """Raises DeviceError naming the buffer when one of `sizes` (bytes by buffer name) is
    larger than the device allows, or all of them together exceed its memory."""
    for name, nbytes in sizes.items():
        if limits.max_buffer_bytes is not None and nbytes > limits.max_buffer_bytes:
            raise DeviceError(f"buffer '{name}' of {nbytes} bytes exceeds {limits.name}'s largest buffer "
                              f"of {limits.max_buffer_bytes} bytes")
    total = sum(sizes.values())
    if limits.memory_bytes is not None and total > limits.memory_bytes:
        largest = max(sizes, key=sizes.get)
        raise DeviceError(f"buffers of {total} bytes (the largest, '{largest}', {sizes[largest]}) exceed "
                          f"{limits.name}'s memory of {limits.memory_bytes} bytes")


KERNEL_TIMEOUT_ENV = "SCHED_DSL_KERNEL_TIMEOUT"
DEFAULT_KERNEL_TIMEOUT_S = 600.0


def kernel_timeout() -> float | None:
    """Seconds one build or run of kernels may take (SCHED_DSL_KERNEL_TIMEOUT, default 600;
    0 turns the limit off)."""
    text = os.environ.get(KERNEL_TIMEOUT_ENV)
    if text is None:
        return DEFAULT_KERNEL_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        raise DeviceError(f"{KERNEL_TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    return seconds if seconds > 0 else None


class _Watcher:
    """One daemon thread that stops the process when a watched call outlives its deadline.
    Entering and leaving a watch is a dict update under a lock: a model's run waits on the
    device this way for every request, and starting a timer thread each time cost more than
    its kernels (hundreds of microseconds)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.deadlines: dict[int, tuple[float, str, float]] = {}  # token: (deadline, what, seconds)
        self.thread: threading.Thread | None = None
        self.tokens = itertools.count()
        self.wake_at: float | None = None  # when the watcher wakes next (None: when notified)

    def enter(self, what: str, seconds: float) -> int:
        with self.cond:
            token = next(self.tokens)
            deadline = time.monotonic() + seconds
            self.deadlines[token] = (deadline, what, seconds)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.watch, name="sched-dsl watchdog", daemon=True)
                self.thread.start()
            elif self.wake_at is None or deadline < self.wake_at:
                # only a deadline before the watcher's next wake-up wakes it (a thread switch
                # on every request otherwise): one after it is seen when the watcher wakes
                self.cond.notify()
            return token

    def leave(self, token: int) -> None:
        with self.cond:
            del self.deadlines[token]

    def watch(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                late = [(w, s) for d, w, s in self.deadlines.values() if d <= now]
                if late:
                    what, seconds = late[0]
                    message = (f"sched-dsl: error: {what} did not finish within {seconds:g} s; a device call "
                               f"cannot be interrupted, so the process stops ({KERNEL_TIMEOUT_ENV} sets the "
                               "limit, 0 turns it off)\n")
                    os.write(2, message.encode(errors="replace"))
                    os._exit(124)
                self.wake_at = min((d for d, _, _ in self.deadlines.values()), default=None)
                self.cond.wait(None if self.wake_at is None else self.wake_at - now)


_WATCHER = _Watcher()
# a forked child has no watcher thread, and the parent's watches are not its own
os.register_at_fork(after_in_child=lambda: _WATCHER.__init__())


@contextmanager
def watchdog(what: str):
    """Building or running kernels calls into the device driver, which Python cannot
    interrupt: when `what` has not finished within kernel_timeout() seconds, the process
    stops with exit code 124 and an error that says so, instead of hanging silently."""
    seconds = kernel_timeout()
    if seconds is None:
        yield
        return
    token = _WATCHER.enter(what, seconds)
    try:
        yield
    finally:
        _WATCHER.leave(token)
