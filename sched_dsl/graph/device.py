"""The devices a model runs on (OpenCL through pyopencl, CUDA through pycuda): buffers, kernels
compiled from the segments' kernel texts, and runners that execute one piece of the model.

A piece is what runs between two host operators: copies of host values into device buffers,
kernel launches, copies of device values back, in order (`Action`s). A launch whose kernel
updates buffers by atomics (`Launch.zeroed`: a pooling linked into its conv) zeroes them
first: a fill in the OpenCL queue, a memset in the CUDA stream (and so in its graph). Its runner stages the
host side of every copy in host buffers of its own (page-locked on CUDA), so the copies are
asynchronous and the whole piece can be recorded once and replayed:

- CUDA, graph on: the piece's copies and launches are captured from a stream into a CUDA
  graph (runtime/cuda.py's CudaGraph) once; a run copies the inputs into the staging buffers,
  launches the graph, waits once, and copies the outputs out of the staging buffers.
- OpenCL, graph on, where the device has cl_khr_command_buffer: each run of launches between
  two copies is one command buffer recorded once; else every kernel's arguments are set once
  and a run only enqueues the launches. Either way one wait per piece.
- graph off: every launch is issued with its arguments, in order, on the same queue or stream,
  with the same staged copies and one wait per piece.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from sched_dsl.lowering.host_plan import Launch
from sched_dsl.lowering.targets.c_family import CUDA, OPENCL, compile_unit
from sched_dsl.runtime.common import DeviceError, watchdog


@dataclass
class Action:
    kind: str  # "upload", "launch" or "download"
    buffer: str = ""  # the device buffer an upload writes or a download reads
    host: str = ""  # the host value an upload reads or a download writes
    layer: str = ""  # a launch's layer name (a fused group: its stages joined by +)
    launch: Launch | None = None
    kernel: object = None


@dataclass(frozen=True)
class HostLayout:
    """Shapes and element types of the values the executor moves (by value name)."""

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, type]


def make_device(target: str):
    return OpenCLDevice() if target == "opencl" else CudaDevice()


class OpenCLDevice:
    target = "opencl"

    def __init__(self):
        import pyopencl as cl

        from sched_dsl.runtime.opencl import _context_and_queue, default_device, has_command_buffer
        self.cl = cl
        self.dev = default_device()
        self.name = self.dev.name
        self.ctx, self.queue = _context_and_queue()
        # sub-buffers of the arena start at multiples of the device's base address alignment
        self.alignment = max(256, self.dev.mem_base_addr_align // 8)
        self.graph_mode = "command buffer" if has_command_buffer(self.dev) else "preset arguments"

    @property
    def limits(self):
        from sched_dsl.runtime.opencl import device_limits
        return device_limits(self.dev)

    def alloc(self, nbytes: int):
        return self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE, size=max(nbytes, 4))

    def view(self, arena, offset: int, nbytes: int):
        return arena.get_sub_region(offset, max(nbytes, 4))

    def write(self, buf, a: np.ndarray) -> None:
        self.cl.enqueue_copy(self.queue, buf, a)

    def finish(self) -> None:
        with watchdog(f"kernels on {self.name}"):
            self.queue.finish()

    def kernels(self, units: list[tuple[str, str]]) -> dict[str, object]:
        """Kernel objects by C name, one per launch name in `units` ((name, kernel text))."""
        from sched_dsl.runtime.opencl import build_programs

        programs = build_programs([compile_unit(OPENCL, text) for _, text in units])
        return {name: self.cl.Kernel(p, name) for (name, _), p in zip(units, programs)}

    def runner(self, actions: list[Action], buffers: dict, layout: HostLayout, graph: bool):
        return OpenCLRunner(self, actions, buffers, layout, graph)


def _staging(actions: list[Action], layout: HostLayout, empty) -> dict[str, np.ndarray]:
    return {a.buffer: empty(layout.shapes[a.buffer], layout.dtypes[a.buffer])
            for a in actions if a.kind in ("upload", "download")}


def _stage_in(stage: np.ndarray, value) -> None:
    np.copyto(stage, np.asarray(value).reshape(stage.shape), casting="unsafe")


class OpenCLRunner:
    def __init__(self, device: OpenCLDevice, actions: list[Action], buffers: dict, layout: HostLayout, graph: bool):
        from sched_dsl.runtime.opencl import CommandBuffer

        self.device, self.actions, self.buffers = device, actions, buffers
        self.stage = _staging(actions, layout, np.empty)
        self.mode = device.graph_mode if graph else "off"
        self.calls = []  # per launch: (kernel, global size, local size, argument buffers)
        for a in actions:
            if a.kind == "launch":
                glob = tuple(g * b for g, b in zip(a.launch.grid, a.launch.block))
                self.calls.append((a.kernel, glob, a.launch.block, [buffers[n] for n in a.launch.args]))
        if self.mode != "off":
            for kern, _, _, args in self.calls:
                kern.set_args(*args)
        # the run: copies, and launches grouped into command buffers where there are some
        self.program: list[tuple] = []
        pending: list[tuple] = []
        calls = iter(self.calls)
        for a in actions + [Action("end")]:
            if a.kind == "launch" and not a.launch.zeroed:
                pending.append(next(calls))
                continue
            if pending and self.mode == "command buffer":
                self.program.append(("commands", CommandBuffer(device.queue, [c[:3] for c in pending])))
            elif pending:
                self.program += [("launch", c) for c in pending]
            pending = []
            if a.kind == "launch":  # buffers it updates by atomics are zeroed first: a fill, then the launch
                self.program.append(("fill", a))
                pending.append(next(calls))
            elif a.kind != "end":
                self.program.append((a.kind, a))

    def run(self, host: dict) -> None:
        cl, queue = self.device.cl, self.device.queue
        for kind, item in self.program:
            if kind == "upload":
                _stage_in(self.stage[item.buffer], host[item.host])
                cl.enqueue_copy(queue, self.buffers[item.buffer], self.stage[item.buffer], is_blocking=False)
            elif kind == "download":
                cl.enqueue_copy(queue, self.stage[item.buffer], self.buffers[item.buffer], is_blocking=False)
            elif kind == "commands":
                item.enqueue()
            elif kind == "fill":
                self.zero(item)
            elif self.mode == "off":
                kern, glob, local, args = item
                kern(queue, glob, local, *args)
            else:
                cl.enqueue_nd_range_kernel(queue, item[0], item[1], item[2])
        with watchdog(f"kernels on {self.device.name}"):
            queue.finish()
        for a in self.actions:
            if a.kind == "download":
                host[a.host] = self.stage[a.buffer].copy()

    def zero(self, a: Action) -> None:
        """Sets the buffers launch `a` updates by atomics to zero, in the queue's order."""
        from sched_dsl.runtime.opencl import enqueue_zero

        for name in a.launch.zeroed:
            enqueue_zero(self.device.queue, self.buffers[name])

    def profile(self, host: dict) -> list[tuple[str, str, float]]:
        """Runs the piece one action at a time: (layer, kind, ms) of each, kernels timed by
        profiling events, copies by the wall clock."""
        cl, queue = self.device.cl, self.device.queue
        out = []
        calls = iter(self.calls)
        for a in self.actions:
            t0 = time.perf_counter()
            if a.kind == "launch":
                kern, glob, local, args = next(calls)
                self.zero(a)
                with watchdog(f"kernel {a.layer} on {self.device.name}"):
                    ev = kern(queue, glob, local, *args)
                    ev.wait()
                out.append((a.layer, "kernel", (ev.profile.end - ev.profile.start) * 1e-6))
                continue
            if a.kind == "upload":
                _stage_in(self.stage[a.buffer], host[a.host])
                cl.enqueue_copy(queue, self.buffers[a.buffer], self.stage[a.buffer])
            else:
                cl.enqueue_copy(queue, self.stage[a.buffer], self.buffers[a.buffer])
                host[a.host] = self.stage[a.buffer].copy()
            with watchdog(f"a copy on {self.device.name}"):
                queue.finish()
            out.append((f"{a.buffer}->{a.kind}", a.kind, (time.perf_counter() - t0) * 1e3))
        return out


class CudaDevice:
    target = "cuda"

    def __init__(self):
        from sched_dsl.runtime.cuda import _driver, default_device, has_cuda_graphs
        self.drv = _driver()
        self.dev = default_device()
        self.name = self.dev.name()
        self.stream = self.drv.Stream()
        self.alignment = 256
        self.graph_mode = "cuda graph" if has_cuda_graphs() else "off"
        self.allocations: list = []

    @property
    def limits(self):
        from sched_dsl.runtime.cuda import device_limits
        return device_limits(self.dev)

    def alloc(self, nbytes: int):
        return self.drv.mem_alloc(max(nbytes, 4))

    def view(self, arena, offset: int, nbytes: int) -> int:
        return int(arena) + offset

    def write(self, buf, a: np.ndarray) -> None:
        self.drv.memcpy_htod(buf, a)

    def finish(self) -> None:
        self.wait(self.drv.Context.synchronize)

    def wait(self, sync) -> None:
        try:
            with watchdog(f"kernels on {self.name}"):
                sync()
        except self.drv.Error as e:
            raise DeviceError(f"a kernel or copy failed on {self.name}: {e}") from None

    def kernels(self, units: list[tuple[str, str]]) -> dict[str, object]:
        from sched_dsl.runtime.cuda import load_modules

        modules = load_modules([compile_unit(CUDA, text) for _, text in units])
        return {name: m.get_function(name) for (name, _), m in zip(units, modules)}

    def runner(self, actions: list[Action], buffers: dict, layout: HostLayout, graph: bool):
        return CudaRunner(self, actions, buffers, layout, graph)


class CudaRunner:
    def __init__(self, device: CudaDevice, actions: list[Action], buffers: dict, layout: HostLayout, graph: bool):
        from sched_dsl.runtime.cuda import CudaGraph

        drv = device.drv
        self.device, self.actions, self.buffers = device, actions, buffers
        self.uploads = [a for a in actions if a.kind == "upload"]  # run() is on every request's path
        self.downloads = [a for a in actions if a.kind == "download"]
        self.stage = _staging(actions, layout, drv.pagelocked_empty)
        self.ptrs = {name: int(b) for name, b in buffers.items()}
        self.nbytes = {name: int(np.prod(layout.shapes[name])) * np.dtype(layout.dtypes[name]).itemsize
                       for a in actions if a.kind == "launch" for name in a.launch.zeroed}
        fa = drv.function_attribute
        for a in actions:
            if a.kind == "launch":
                most = a.kernel.get_attribute(fa.MAX_THREADS_PER_BLOCK)
                if a.launch.threads > most:
                    raise DeviceError(f"kernel {a.launch.kernel}: {a.launch.threads} threads per block exceed the "
                                      f"{most} that {device.name} can run with its "
                                      f"{a.kernel.get_attribute(fa.NUM_REGS)} registers per thread")
                a.kernel.prepare("P" * len(a.launch.args))
                if a.launch.dynamic_shared:
                    a.kernel.set_attribute(fa.MAX_DYNAMIC_SHARED_SIZE_BYTES, a.launch.dynamic_shared)
        self.mode = device.graph_mode if graph else "off"
        self.graph = None
        self.timing_graphs: dict[int, object] = {}  # launch_ms's, by action
        if self.mode == "cuda graph":
            try:
                self.graph = CudaGraph(device.stream, self.issue)
            except DeviceError as e:  # the driver refused the capture: run the piece from Python
                warnings.warn(f"{device.name}: no CUDA graph for this piece ({e}); its launches are issued "
                              "one by one", RuntimeWarning, stacklevel=2)
                self.mode = "off"

    def issue_one(self, a: Action) -> None:
        drv, stream = self.device.drv, self.device.stream
        if a.kind == "upload":
            drv.memcpy_htod_async(self.ptrs[a.buffer], self.stage[a.buffer], stream)
        elif a.kind == "download":
            drv.memcpy_dtoh_async(self.stage[a.buffer], self.ptrs[a.buffer], stream)
        else:
            ln = a.launch
            if ln.zeroed:  # buffers the kernel updates by atomics start at zero
                from sched_dsl.runtime.cuda import zero_async
                for name in ln.zeroed:
                    zero_async(self.ptrs[name], self.nbytes[name], stream)
            a.kernel.prepared_async_call(ln.grid, ln.block, stream, *[self.ptrs[n] for n in ln.args],
                                         shared_size=ln.dynamic_shared)

    def issue(self) -> None:
        for a in self.actions:
            self.issue_one(a)

    def run(self, host: dict) -> None:
        for a in self.uploads:
            _stage_in(self.stage[a.buffer], host[a.host])
        if self.graph is not None:
            self.graph.launch()
        else:
            self.issue()
        self.device.wait(self.device.stream.synchronize)
        for a in self.downloads:
            host[a.host] = self.stage[a.buffer].copy()

    def profile(self, host: dict) -> list[tuple[str, str, float]]:
        drv = self.device.drv
        out = []
        for a in self.actions:
            t0 = time.perf_counter()
            if a.kind == "upload":
                _stage_in(self.stage[a.buffer], host[a.host])
            if a.kind == "launch" and self.mode == "cuda graph":
                out.append((a.layer, "kernel", self.launch_ms(a)))
                continue
            start, end = drv.Event(), drv.Event()
            start.record(self.device.stream)
            self.issue_one(a)
            end.record(self.device.stream)
            self.device.wait(end.synchronize)
            if a.kind == "launch":
                out.append((a.layer, "kernel", start.time_till(end)))
                continue
            if a.kind == "download":
                host[a.host] = self.stage[a.buffer].copy()
            out.append((f"{a.buffer}->{a.kind}", a.kind, (time.perf_counter() - t0) * 1e3))
        if self.mode == "cuda graph":  # the repeated launches may have run in-place kernels again
            self.run(host)
        return out

    def launch_ms(self, a: Action, repeat: int = 20) -> float:
        """One kernel's time, launched `repeat` times back to back from a CUDA graph: timing a
        single launch from Python between two events would count the gap while the launch is
        issued, often longer than the kernel itself."""
        from sched_dsl.runtime.cuda import CudaGraph

        graph = self.timing_graphs.get(id(a))
        if graph is None:  # captured once: a profile is often asked for many runs
            graph = self.timing_graphs[id(a)] = CudaGraph(self.device.stream,
                                                          lambda: [self.issue_one(a) for _ in range(repeat)])
        start, end = self.device.drv.Event(), self.device.drv.Event()
        graph.launch()
        start.record(self.device.stream)
        graph.launch()
        end.record(self.device.stream)
        self.device.wait(end.synchronize)
        return start.time_till(end) / repeat
