"""The graph executor: runs a placed, fused, memory-planned tensorop function on one device.

The function is cut into steps at its host ops: a run of GPU ops between two host steps is one
segment, lowered through the default pipeline to kernels; a host op runs in numpy
(sched_dsl.graph.host_ops); `tensorop.copy` ops become uploads and downloads. The steps between
two host ops form a piece, which sched_dsl.graph.device records once (a CUDA graph, OpenCL
command buffers or preset kernel arguments) and replays on every run. Device buffers are made
once, when the session is made: weights and inputs each have their own, every intermediate
value lives in one arena at the offset tensorop-plan-memory gave it. Lowered segments and
compiled kernels are kept in the on-disk cache (sched_dsl.runtime.cache), so a second load of
a model compiles nothing.

With several devices (`devices=[...]`; ops carry `device = k` from tensorop-split or the
partitioner, sched_dsl.graph.partition), each device runs its own GPU ops, a segment being its
ops between two of its own transfers, copies or host steps; `tensorop.transfer` moves values
between devices (a CUDA peer copy where the two GPUs allow it, else through the host). A run
starts one thread per device: each runs its own steps in program order and hands values to
the others through FIFO channels, so the devices work at once (the parts of a split layer) and
`run_many` streams requests through them (the stages of a pipeline). Slices of weights are cut
once at load time, and weights are uploaded straight to every device that uses them. (Several
devices launch every kernel from Python, buffers of their own per value: no replay, no arena.)
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from io import StringIO

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, i32, i64
from xdsl.ir import Block, Region, SSAValue
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from sched_dsl.context import make_context
from sched_dsl.dialects import sched as S
from sched_dsl.dialects import tensorop as T
from sched_dsl.graph.device import Action, HostLayout, make_device
from sched_dsl.graph.host_ops import HOST_CALLS, run_host
from sched_dsl.graph.model_schedules import (CONV_ALGORITHMS, anchor_ops, anchor_template, anchor_workload, gathers_b,
                                             choose_conv_algorithm, gemm_split)
from sched_dsl.lowering.conv_to_gemm import ALGORITHM, TensoropConvToGemmPass, mark
from sched_dsl.lowering.fuse import (COMPUTED_AT, PLACE, TensoropFusePass, link_depthwise, link_pools,
                                    mark_implicit_gemms)
from sched_dsl.lowering.host_plan import HostPlan, c_name, host_plan
from sched_dsl.lowering.pipeline import run_default_pipeline
from sched_dsl.lowering.place import TensoropPlacePass, device_holding
from sched_dsl.lowering.plan_memory import (ARENA, IN_PLACE, OFFSET, TensoropPlanMemoryPass, arena_offsets,
                                            reshape_aliases, value_bytes)
from sched_dsl.lowering.split import TensoropSplitPass, device_of
from sched_dsl.lowering.targets.c_family import CUDA, OPENCL, kernel_texts, print_kernels
from sched_dsl.runtime import tensor_cores as device_has_tensor_cores
from sched_dsl.runtime.cache import COUNTS, compiler_fingerprint, default_cache, key_of
from sched_dsl.runtime.common import checked_array
from sched_dsl import reference
from sched_dsl.reference import numpy_dtype
from sched_dsl.tensor import Tensor, tensor_of_op

TARGETS = {"opencl": OPENCL, "cuda": CUDA}


class GraphError(ValueError):
    """A model the executor cannot run, or inputs that do not fit it."""


@dataclass
class Segment:
    name: str
    source: str
    plan: HostPlan
    stages: list[str]  # layer names of the kernels (a fused group: its stages joined by +), in launch order
    knobs: list[str] = field(default_factory=list)  # knob names of the segment's schedule
    units: list[tuple[str, str]] = field(default_factory=list)  # (C name, text) of each kernel


@dataclass
class Step:
    kind: str  # "gpu", "host", "upload", "download", "transfer" or "copy" (a slice or concat on one device)
    segment: Segment | None = None
    device: int = 0  # the device it runs on (a transfer: the device it leaves)
    to_device: int = 0  # a transfer's destination
    op: object = None
    src: str = ""
    dst: str = ""
    args: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)


def name_of(v: SSAValue) -> str:
    if not v.name_hint:
        raise GraphError(f"a value of type {v.type} has no name")
    return v.name_hint


def is_host(op) -> bool:
    return PLACE in op.attributes and op.attributes[PLACE].data == "host"


def prepare(module: ModuleOp, fuse: bool = True, host: Sequence[str] = (), devices: int = 1,
            conv_algorithm: str = "direct", tensor_cores: bool = False,
            recorded_ms: Callable[[Tensor], float | None] | None = None) -> func.FuncOp:
    """Runs tensorop-split (with several devices), tensorop-conv-to-gemm on the convs that
    `conv_algorithm` picks (see model_schedules.conv_algorithm; `tensor_cores`: the device's,
    `recorded_ms`: a records file's times), tensorop-place (and tensorop-fuse, with the implicit
    GEMMs the schedules take: fuse.mark_implicit_gemms, and the pools linked into their convs:
    fuse.link_pools) on the module;
    returns its one function. (tensorop-plan-memory runs once the device is known: the
    segments do not depend on it.)"""
    if conv_algorithm not in CONV_ALGORITHMS:
        raise GraphError(f"conv_algorithm '{conv_algorithm}' is not one of {', '.join(CONV_ALGORITHMS)}")
    ctx = make_context()
    try:
        if devices > 1:
            TensoropSplitPass(devices=devices).apply(ctx, module)
        if conv_algorithm != "direct":
            for op in module.walk():
                if isinstance(op, T.Conv2dOp) and ALGORITHM not in op.attributes:
                    mark(op, choose_conv_algorithm(op, conv_algorithm, tensor_cores, recorded_ms), gemm_split(op))
        TensoropConvToGemmPass().apply(ctx, module)
        TensoropPlacePass(host=",".join(host)).apply(ctx, module)
        if fuse:
            TensoropFusePass().apply(ctx, module)
            for fn in [f for f in module.ops if isinstance(f, func.FuncOp)]:
                mark_implicit_gemms(fn, gathers_b)
                link_pools(fn)
                link_depthwise(fn)
        module.verify()
    except (DiagnosticException, VerifyException) as e:
        raise GraphError(str(e)) from None
    fns = [f for f in module.ops if isinstance(f, func.FuncOp)]
    if len(fns) != 1:
        raise GraphError(f"expected one function in the model, found {len(fns)}")
    return fns[0]


def segment_module(ops: list[T.TensorOp], name: str, config: Mapping[str, int] | None = None) -> ModuleOp:
    """A function of the GPU ops `ops`: arguments are the values they use from outside,
    results the values used outside (by later steps or the return)."""
    fn = function_of(ops, name)
    return ModuleOp([fn, model_schedule(list(fn.body.block.ops)[:-1], config or {})])


def function_of(ops: list, name: str) -> func.FuncOp:
    """A function of copies of `ops`: arguments are the values they use from outside (named as
    they were), results the values used outside them (by later ops or the return)."""
    inside = set(ops)
    defined = {r for op in ops for r in op.results}
    args: list[SSAValue] = []
    for op in ops:
        for v in op.operands:
            if v not in defined and v not in args:
                args.append(v)
    outs = [r for op in ops for r in op.results if any(u.operation not in inside for u in r.uses)]
    block = Block(arg_types=[a.type for a in args])
    mapping: dict[SSAValue, SSAValue] = {}
    for a, b in zip(args, block.args):
        b.name_hint = name_of(a)
        mapping[a] = b
    for op in ops:
        new = op.clone(value_mapper=mapping)
        for planned in (OFFSET, IN_PLACE):  # the graph's memory plan, not the kernel's business
            new.attributes.pop(planned, None)
        for r, old in zip(new.results, op.results):
            r.name_hint = old.name_hint
            mapping[old] = r
        block.add_op(new)
    block.add_op(func.ReturnOp(*[mapping[v] for v in outs]))
    return func.FuncOp(name, ([a.type for a in block.args], [v.type for v in outs]), Region(block))


THREAD_CANDIDATES = (64, 128, 256, 32)  # threads per block of pool and reduce stages; the first is the default


def model_schedule(ops, config: Mapping[str, int]) -> S.ScheduleOp:
    """The schedule models run under. A conv2d or matmul (a fused group is its anchor's stage)
    gets the schedule `sched_dsl.graph.model_schedules` chooses from its shape, knobs named
    `<stage>.<knob>`; a pool2d or reduce, and the row reductions of softmax and normalize
    (`<name>.max`, `<name>.sum`, `<name>.mean`, `<name>.var`), the default mapping (spatial
    loops fused, split by the knob `<stage>.threads`, bound to block.x/thread.x) plus a
    register accumulator (cache_write at the thread loop). With a register accumulator a fused
    epilogue runs once per output, at the write-back. Other stages keep apply-schedule's
    default."""
    sched_ops: list = []
    for op in ops:
        if "group" in op.attributes and op.attributes["group"].data != op.stage_name or COMPUTED_AT in op.attributes:
            continue  # a member of a fused group (a pooling linked into a conv among them): the anchor's schedule;
            # a stage computed at another (fuse.link_depthwise): the other's
        chosen = anchor_ops(op)
        if chosen is not None:
            sched_ops += chosen
            continue
        for stage, loops in reduction_stages(op):
            sched_ops += threads_and_register(stage, loops)
    return S.ScheduleOp(sched_ops)


def reduction_stages(op) -> list[tuple[str, list[str]]]:
    """(stage, its spatial loops) of the reductions that get the threads-and-register schedule:
    reduce, pool2d, and the row reductions of softmax (max, sum) and normalize (mean, var)."""
    if isinstance(op, T.ReduceOp):
        return [(op.stage_name, [f"d{k}" for k in range(len(T.shape_of(op.result)))])]
    if isinstance(op, T.Pool2dOp):
        return [(op.stage_name, ["n", "c", "y", "x"])]
    if isinstance(op, (T.SoftmaxOp, T.NormalizeOp)):
        kept = len(T.shape_of(op.input)) - (1 if isinstance(op, T.SoftmaxOp) else len(op.reduced_axes()))
        parts = ("max", "sum") if isinstance(op, T.SoftmaxOp) else ("mean", "var")
        return [(f"{op.stage_name}.{p}", [f"d{k}" for k in range(kept)]) for p in parts] if kept else []
    return []


def threads_and_register(stage: str, loops: list[str]) -> list:
    """Spatial loops fused, split by the knob `<stage>.threads`, bound to block.x/thread.x; the
    accumulator in a register (cache_write at the thread loop)."""
    if not loops:
        return []
    sched_ops: list = []
    handles = []
    for axis in loops:
        h = S.LoopOp(stage, axis)
        sched_ops.append(h)
        handles.append(h.result)
    fused = handles[0]
    for h in handles[1:]:
        f = S.FuseOp(fused, h)
        sched_ops.append(f)
        fused = f.results[0]
    knob = S.KnobOp(f"{stage}.threads", THREAD_CANDIDATES)
    knob.result.name_hint = "threads"
    split = S.SplitOp(fused, knob.result)
    sched_ops += [knob, split, S.BindOp(split.outer, "block.x"), S.BindOp(split.inner, "thread.x"),
                  S.CacheWriteOp("local", split.inner)]
    return sched_ops


def lowered(module: ModuleOp, target: str, config: dict[str, int], name: str, tensor_cores: bool = False
            ) -> tuple[str, list[tuple[str, str]], HostPlan]:
    """(kernel text, (C name, text) per kernel, host plan) of a segment module lowered through
    the default pipeline with `config` (tensorized stages on tensor cores, or as plain loops);
    taken from the disk cache when this compiler has lowered the same module before."""
    cache = default_cache()
    key = key_of("lowered", compiler_fingerprint(), target, str(module), json.dumps(sorted(config.items())),
                 "tensor cores" if tensor_cores else "")
    data = cache.get("lowered", key) if cache is not None else None
    if data is not None:
        try:
            d = json.loads(data)
            return d["source"], [tuple(u) for u in d["units"]], HostPlan.from_json(d["plan"])
        except (ValueError, KeyError, TypeError):
            pass  # written by something else: lowered again and overwritten
    try:
        run_default_pipeline(make_context(), module, config, tensor_cores=tensor_cores)
        text = StringIO()
        print_kernels(module, TARGETS[target], text)
        units = kernel_texts(module, TARGETS[target])
    except (DiagnosticException, VerifyException) as e:
        raise GraphError(f"segment {name}: {e}") from None
    plan = host_plan(module)
    if plan.tensor_maps:
        raise GraphError(f"segment {name}: TMA copies (cache_read ... tma) run in kernels built alone (sd.build); "
                         "a model's runners take no tensor maps")
    COUNTS["lowered"] += 1
    if cache is not None:
        d = {"source": text.getvalue(), "units": units, "plan": plan.to_json()}
        cache.put("lowered", key, json.dumps(d).encode())
    return text.getvalue(), units, plan


def check_value_sizes(fn: func.FuncOp, limits) -> None:
    """DeviceError naming the first value larger than the device's largest buffer."""
    from sched_dsl.runtime.common import check_buffers

    for v in [*fn.body.block.args, *(r for op in fn.body.block.ops for r in op.results)]:
        if isinstance(v.type, TensorType) and T.element_dtype(v.type.element_type) is not None:
            check_buffers({name_of(v): value_bytes(v.type)}, limits)


def plan_steps(fn: func.FuncOp, target: str, config: Mapping[str, int] | None, tensor_cores: bool = False
               ) -> tuple[list[Step], list[str]]:
    steps: list[Step] = []
    pending: dict[int, list[T.TensorOp]] = {}  # per device: its GPU ops not yet in a segment

    config = dict(config or {})
    used: set[str] = set()

    def flush(device: int):
        ops = pending.pop(device, [])
        if not ops:
            return
        name = f"seg{sum(s.kind == 'gpu' for s in steps)}"
        module = segment_module(list(ops), name, config)
        knobs = {o.knob_name.data for o in module.walk() if isinstance(o, S.KnobOp)}
        used.update(knobs & set(config))
        source, units, plan = lowered(module, target, {k: v for k, v in config.items() if k in knobs}, name,
                                      tensor_cores)
        # a fused kernel is named after its anchor; its layer name lists the whole group
        groups: dict[str, list[str]] = {}
        for op in ops:
            if "group" in op.attributes:
                groups.setdefault(op.attributes["group"].data, []).append(op.stage_name)
        stages = [ln.kernel[len(name) + 1:] for ln in plan.launches]
        stages = ["+".join(groups.get(st, [st])) for st in stages]
        steps.append(Step("gpu", Segment(name, source, plan, stages, sorted(knobs), units), device=device))

    def flush_all():
        for d in sorted(pending):
            flush(d)

    returned: list[str] = []
    aliases = reshape_aliases(fn)
    for op in fn.body.block.ops:
        if op.results and op.results[0] in aliases or IN_PLACE in op.attributes:
            continue  # a second name of its input's buffer (GraphExecutor.aliases), or a concat
            # its operands' kernels wrote in place (tensorop-plan-memory): no kernel
        if isinstance(op, func.ReturnOp):
            flush_all()
            returned = [name_of(v) for v in op.arguments]
        elif isinstance(op, T.CopyOp):
            d = device_of(op) if op.to.data == "device" else device_holding(op.input)
            flush(d)
            steps.append(Step("upload" if op.to.data == "device" else "download",
                              src=name_of(op.input), dst=name_of(op.result), device=d))
        elif isinstance(op, T.TransferOp):
            src, dst = op.src.value.data, op.dst.value.data
            flush(src)
            flush(dst)
            steps.append(Step("transfer", src=name_of(op.input), dst=name_of(op.result), device=src, to_device=dst))
        elif isinstance(op, T.SliceOp | T.ConcatOp) and "device" in op.attributes and not is_host(op):
            d = device_of(op)
            flush(d)
            steps.append(Step("copy", op=copy_rects(op), args=[name_of(v) for v in op.operands],
                              dst=name_of(op.result), device=d))
        elif isinstance(op, T.HostCallOp) or is_host(op):
            if isinstance(op, T.HostCallOp) and op.callee.data not in HOST_CALLS:
                raise GraphError(f"host_call '{op.stage_name}': no host implementation of '{op.callee.data}'; "
                                 f"there are {', '.join(sorted(HOST_CALLS))}")
            flush_all()
            steps.append(Step("host", op=op, args=[name_of(v) for v in op.operands],
                              outs=[name_of(v) for v in op.results]))
        else:
            pending.setdefault(device_of(op), []).append(op)
    unknown = sorted(set(config) - used)
    if unknown:
        known = sorted({k for s in steps if s.kind == "gpu" for k in s.segment.knobs})
        raise GraphError(f"config names unknown knob(s) {', '.join(unknown)}; the model has {len(known)} knobs, "
                         f"<stage>.<knob> as in {', '.join(known[:6])}{' ...' if len(known) > 6 else ''}")
    return steps, returned


@dataclass(frozen=True)
class Rect:
    """One 2-D copy between two buffers of one device: `height` rows of `width` bytes, the
    source's rows `src_pitch` bytes apart from byte `src_offset` on, the destination's likewise."""

    src: int  # which operand of the op
    width: int
    height: int
    src_offset: int
    src_pitch: int
    dst_offset: int
    dst_pitch: int


def copy_rects(op: T.SliceOp | T.ConcatOp) -> list[Rect]:
    """A slice or concat as 2-D copies (in bytes): along an axis, a row-major tensor
    is prod(shape[:axis]) rows of shape[axis] * prod(shape[axis + 1:]) elements."""
    out = T.shape_of(op.result)
    axis = op.slice_axis() if isinstance(op, T.SliceOp) else op.concat_axis()
    outer = int(np.prod(out[:axis]))
    itemsize = max(getattr(op.result.type.element_type, "bitwidth", 32) // 8, 1)
    inner = itemsize * int(np.prod(out[axis + 1:]))
    if isinstance(op, T.SliceOp):
        n_in, start = T.shape_of(op.input)[axis], op.start.value.data
        return [Rect(0, out[axis] * inner, outer, start * inner, n_in * inner, 0, out[axis] * inner)]
    rects, at = [], 0
    for k, v in enumerate(op.inputs):
        n = T.shape_of(v)[axis]
        rects.append(Rect(k, n * inner, outer, 0, n * inner, at * inner, out[axis] * inner))
        at += n
    return rects


# data movement (exact on the host, reference.apply) and Winograd's transform of filters (in
# float64 there, then rounded): done once for weights alone
WEIGHT_MOVES = (T.ReshapeOp, T.SliceOp, T.RemapOp, T.ConcatOp, T.WinogradWeightsOp)


def fold_weight_moves(fn: func.FuncOp, weights: dict[str, np.ndarray]) -> None:
    """Does every data movement of weights alone (reshape, slice, remap: pad, transpose, ...;
    concat) and their Winograd transform once, now, on the host: its result becomes a new
    weight (a new argument of the function, named after the op), added to `weights`; weights
    nothing reads any more are dropped. Model inputs are moved on the device at every run."""
    block = fn.body.block
    for op in list(block.ops):
        if not isinstance(op, WEIGHT_MOVES) or not all(isinstance(v.owner, Block) and name_of(v) in weights
                                                       for v in op.operands):
            continue
        value = reference.apply(tensor_of_op(op), [np.asarray(weights[name_of(v)]) for v in op.operands])
        weights[op.stage_name] = np.ascontiguousarray(value, dtype=_np_dtype(op.result.type))
        arg = block.insert_arg(op.result.type, len(block.args))
        arg.name_hint = op.stage_name
        op.result.replace_all_uses_with(arg)
        op.detach()
        op.erase()
    for arg in list(block.args):
        if not arg.uses and arg.name_hint in weights:
            weights.pop(arg.name_hint)
            block.erase_arg(arg)
    fn.function_type = FunctionType.from_lists([a.type for a in block.args], fn.function_type.outputs.data)


def _np_dtype(t) -> type:
    """numpy's type for a tensor type's elements (device buffers hold f32, f16, bf16 or i32)."""
    e = t.element_type
    if e == i32 or e == i64:
        return np.int32 if e == i32 else np.int64
    dtype = T.element_dtype(e)
    return numpy_dtype(dtype) if dtype in ("f16", "bf16") else np.float32


def _itemsize(t) -> int:
    return np.dtype(_np_dtype(t)).itemsize


@dataclass
class Piece:
    """The steps between two host ops, run by one runner of the device (see device.py)."""

    actions: list[Action]
    weight_reads: list[tuple[str, str]]  # (weight, host value): downloads the host weights serve
    runner: object = None


def pieces_of(steps: list[Step], feeds: list[str], weights: Mapping[str, np.ndarray]) -> list[Piece | Step]:
    """The steps as pieces and host steps, in order; the feeds are uploaded by the first piece."""
    out: list[Piece | Step] = [Piece([Action("upload", buffer=f, host=f) for f in feeds], [])]
    for st in steps:
        if st.kind == "host":
            out.append(st)
            continue
        if not isinstance(out[-1], Piece):
            out.append(Piece([], []))
        piece = out[-1]
        if st.kind == "gpu":
            piece.actions += [Action("launch", layer=stage, launch=ln)
                              for stage, ln in zip(st.segment.stages, st.segment.plan.launches)]
        elif st.kind == "download" and st.src in weights:
            piece.weight_reads.append((st.src, st.dst))
        elif st.kind == "download":
            piece.actions.append(Action("download", buffer=st.src, host=st.dst))
        else:
            piece.actions.append(Action("upload", buffer=st.dst, host=st.src))
    return out


class Device:
    """One device of a session on several devices (sched_dsl.graph.device serves sessions on
    one): buffers, uploads, downloads, 2-D copies, peer copies and launches on the device of
    that ordinal (OpenCL: `opencl.devices()`; CUDA: pycuda's), or the target's default device."""

    def __init__(self, target: str, ordinal: int | None = None):
        self.target, self.ordinal = target, ordinal
        self.cuda_ctx = None
        if target == "opencl":
            import pyopencl as cl

            from sched_dsl.runtime.opencl import _context_and_queue, default_device, device_at
            self.cl = cl
            if ordinal is None:
                self.dev = default_device()
                self.ctx, self.queue = _context_and_queue()
            else:
                self.dev = device_at(ordinal)
                self.ctx = cl.Context([self.dev])
                self.queue = cl.CommandQueue(self.ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
            self.name = self.dev.name
        else:
            from sched_dsl.runtime.cuda import _driver, default_device
            self.drv = _driver()
            if ordinal is None:
                self.dev = default_device()
            else:
                default_device()  # initialises CUDA
                if not 0 <= ordinal < self.drv.Device.count():
                    raise GraphError(f"CUDA device {ordinal} asked for, but there are {self.drv.Device.count()}")
                self.dev = self.drv.Device(ordinal)
                self.cuda_ctx = self.dev.retain_primary_context()
            self.name = self.dev.name()

    @property
    def limits(self):
        if self.target == "opencl":
            from sched_dsl.runtime.opencl import device_limits
        else:
            from sched_dsl.runtime.cuda import device_limits
        return device_limits(self.dev)

    def activate(self) -> None:
        """Makes the device current in the calling thread (CUDA contexts are per thread)."""
        if self.cuda_ctx is not None:
            self.cuda_ctx.push()

    def deactivate(self) -> None:
        if self.cuda_ctx is not None:
            self.drv.Context.pop()

    def alloc(self, nbytes: int):
        if self.target == "opencl":
            return self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE, size=max(nbytes, 4))
        self.activate()  # CUDA allocates in the current context: this device's
        try:
            return self.drv.mem_alloc(max(nbytes, 4))
        finally:
            self.deactivate()

    def upload(self, buf, a: np.ndarray) -> None:
        if self.target == "opencl":
            self.cl.enqueue_copy(self.queue, buf, a)
        else:
            self.drv.memcpy_htod(buf, a)

    def download(self, buf, shape, dtype=np.float32) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        if self.target == "opencl":
            self.cl.enqueue_copy(self.queue, out, buf)
        else:
            self.drv.memcpy_dtoh(out, buf)
        return out

    def copy_rects(self, dst, srcs: list, rects: list[Rect]) -> None:
        """The 2-D copies of a slice or concat, in this device's order of work."""
        for r in rects:
            if self.target == "opencl":
                self.cl.enqueue_copy(self.queue, dst, srcs[r.src], src_origin=(r.src_offset, 0, 0),
                                     dst_origin=(r.dst_offset, 0, 0), region=(r.width, r.height, 1),
                                     src_pitches=(r.src_pitch, 0), dst_pitches=(r.dst_pitch, 0))
            else:
                c = self.drv.Memcpy2D()
                c.set_src_device(int(srcs[r.src]) + r.src_offset)
                c.set_dst_device(int(dst) + r.dst_offset)
                c.src_pitch, c.dst_pitch, c.width_in_bytes, c.height = r.src_pitch, r.dst_pitch, r.width, r.height
                c(aligned=False)

    def can_copy_from(self, other: Device) -> bool:
        """Whether a peer copy from `other`'s memory to this device's works (CUDA GPUs with
        peer access); otherwise transfers go through the host."""
        if self.target != "cuda" or other.target != "cuda" or self.cuda_ctx is None or other.cuda_ctx is None:
            return False
        return bool(self.dev.can_access_peer(other.dev))

    def copy_from(self, other: Device, dst, src, nbytes: int) -> None:
        self.drv.memcpy_peer(dst, src, nbytes, self.cuda_ctx, other.cuda_ctx)

    def kernels(self, seg: Segment) -> list:
        names = [c_name(ln.kernel, "kernel") for ln in seg.plan.launches]
        if self.target == "opencl":
            from sched_dsl.runtime.opencl import _program, build_program
            prog = _program(seg.source) if self.ordinal is None else build_program(self.ctx, seg.source)
            return [self.cl.Kernel(prog, n) for n in names]
        from sched_dsl.runtime.cuda import compile_module
        module, _ = compile_module(seg.source, self.dev)
        fns = [module.get_function(n) for n in names]
        for fn, ln in zip(fns, seg.plan.launches):
            fn.prepare("P" * len(ln.args))
            if ln.dynamic_shared:
                fn.set_attribute(self.drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, ln.dynamic_shared)
        return fns

    def zero(self, buf, nbytes: int) -> None:
        """Sets a buffer a kernel updates by atomics to zero, before that kernel."""
        if self.target == "opencl":
            from sched_dsl.runtime.opencl import enqueue_zero
            enqueue_zero(self.queue, buf, nbytes)
        else:
            from sched_dsl.runtime.cuda import zero_async
            zero_async(buf, nbytes)

    def launch(self, kern, ln, bufs: list, timed: bool) -> float | None:
        if self.target == "opencl":
            glob = tuple(g * b for g, b in zip(ln.grid, ln.block))
            ev = kern(self.queue, glob, ln.block, *bufs)
            if timed:
                ev.wait()
                return (ev.profile.end - ev.profile.start) * 1e-6
            return None
        if timed:
            start, end = self.drv.Event(), self.drv.Event()
            start.record()
            kern.prepared_call(ln.grid, ln.block, *[int(b) for b in bufs], shared_size=ln.dynamic_shared)
            end.record()
            end.synchronize()
            return start.time_till(end)
        kern.prepared_async_call(ln.grid, ln.block, None, *[int(b) for b in bufs], shared_size=ln.dynamic_shared)
        return None

    def finish(self) -> None:
        if self.target == "opencl":
            self.queue.finish()
        else:
            self.drv.Context.synchronize()


class GraphExecutor:
    """A model ready to run: segments compiled, buffers allocated, weights uploaded, every
    piece recorded for replay (`graph=True`, where the device allows)."""

    def __init__(self, module: ModuleOp, weights: Mapping[str, np.ndarray], inputs: Sequence[str],
                 outputs: Sequence[str], target: str = "opencl", fuse: bool = True,
                 host: Sequence[str] = (), config: Mapping[str, int] | None = None,
                 input_args: Sequence[str] | None = None, records: str | None = None,
                 graph: bool = True, plan_memory: bool = True, devices: int | Sequence[int] | None = None,
                 boundary: Mapping[str, Mapping] | None = None, conv_algorithm: str = "auto"):
        if target not in TARGETS:
            raise GraphError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}")
        t0 = time.perf_counter()
        counts0 = COUNTS.copy()
        self.target, self.fuse = target, fuse
        self.lock = threading.RLock()  # one run at a time: runs share the buffers and staging arrays
        ordinals = device_ordinals(devices)
        self.tensor_cores = device_has_tensor_cores(target)
        timed = recorded_times(target, records) if records is not None and conv_algorithm == "auto" else None
        fn = prepare(module, fuse, host, len(ordinals), conv_algorithm, self.tensor_cores, timed)
        self.tuned: list[str] = []  # anchors whose knobs come from the records file
        if records is not None:
            recorded, self.tuned = records_config(fn, target, records)
            config = {**recorded, **(config or {})}
        self.config = dict(config or {})
        weights = dict(weights)
        fold_weight_moves(fn, weights)
        self.several = ordinals != [None]  # devices named: the path of sessions on several devices
        if self.several:
            self.devices = [Device(target, o) for o in ordinals]
            self.device = self.devices[0]
        else:
            self.device = make_device(target)
            self.devices = [self.device]  # one device (sched-run prints their count)
        check_value_sizes(fn, self.device.limits)  # before any schedule is worked out for them
        if not self.several and plan_memory:  # before the steps: in-place concats need no kernel
            TensoropPlanMemoryPass(alignment=self.device.alignment).apply(make_context(), module)
        self.steps, returned = plan_steps(fn, target, config, self.tensor_cores)
        # reshapes that move no data: value name -> the name owning its buffer
        self.aliases = {name_of(a): name_of(root) for a, root in reshape_aliases(fn).items()}
        used = {st.device for st in self.steps} | {st.to_device for st in self.steps if st.kind == "transfer"}
        if max(used, default=0) >= len(ordinals):
            raise GraphError(f"the model's ops use device {max(used)}, but {len(ordinals)} device(s) were given")
        self.plan: list[str] = []  # the partition plan, one line per layer (load_onnx with devices)
        self.ir = str(module)  # the placed, fused (and planned, or split) graph, as text
        self.input_names, self.output_names = list(inputs), list(outputs)
        self.result_of = dict(zip(outputs, returned))  # model output name -> host value name
        self.input_types = {name_of(a): a.type for a in fn.body.block.args}
        values = [*fn.body.block.args, *(r for op in fn.body.block.ops for r in op.results)]
        self.shapes = {name_of(v): tuple(v.type.get_shape()) for v in values}
        self.dtypes = {name_of(v): _np_dtype(v.type) for v in values}
        if len(self.shapes) != len(values):
            raise GraphError("the model's values need distinct names (SSA name hints), and names must not "
                             "end in _<digits>, which xDSL drops")
        self.inputs_of = dict(zip(inputs, input_args or inputs))  # feed name -> argument name
        # the model's own shapes and dtypes at its boundary where they differ from the function's
        # (a scalar is one element inside; int64 indices compute as i32)
        boundary = boundary or {}
        self.feed_shapes = dict(boundary.get("input_shapes", {}))
        self.feed_dtypes = {n: np.dtype(d) for n, d in boundary.get("input_dtypes", {}).items()}
        self.result_shapes = dict(boundary.get("output_shapes", {}))
        self.result_dtypes = {n: np.dtype(d) for n, d in boundary.get("output_dtypes", {}).items()}
        # per feed: (element type, the shape the caller gives, the shape inside), read once here
        # rather than from the IR's types on every request
        self.feed_specs = {}
        for n in self.input_names:
            t = self.input_types[self.inputs_of[n]]
            inside = tuple(t.get_shape())
            self.feed_specs[n] = (T.dtype_of(t), tuple(self.feed_shapes.get(n, inside)), inside)
        self.host_weights = weights  # copies of weights to the host read these
        self.last_profile: list[tuple[str, str, float]] = []
        if self.several:
            self._set_up_devices(weights)
            counts = COUNTS - counts0
            self.load_stats = {"seconds": time.perf_counter() - t0, "lowered": counts["lowered"],
                               "lowered from cache": counts["lowered hit"]}
            return
        self.buffers = self.allocate(fn, weights, plan_memory)
        units = {u for st in self.steps if st.kind == "gpu" for u in st.segment.units}
        kernels = self.device.kernels(sorted(units))
        self.pieces = pieces_of(self.steps, [self.inputs_of[n] for n in inputs], weights)
        self.graph = graph and self.device.graph_mode != "off"
        layout = HostLayout(self.shapes, self.dtypes)
        for piece in self.pieces:
            if isinstance(piece, Piece):
                for a in piece.actions:
                    if a.kind == "launch":
                        a.kernel = kernels[c_name(a.launch.kernel, "kernel")]
                piece.runner = self.device.runner(piece.actions, self.buffers, layout, self.graph)
        modes = {piece.runner.mode for piece in self.pieces if isinstance(piece, Piece)}
        self.capture = modes.pop() if len(modes) == 1 else ", ".join(sorted(modes))
        self.last_profile: list[tuple[str, str, float]] = []
        counts = COUNTS - counts0
        self.load_stats = {"seconds": time.perf_counter() - t0, "lowered": counts["lowered"],
                           "lowered from cache": counts["lowered hit"],
                           "compiled": sum(v for k, v in counts.items() if k.endswith(" compiled")),
                           "compiled from cache": sum(v for k, v in counts.items()
                                                      if k.endswith(" hit") and k != "lowered hit")}

    def _set_up_devices(self, weights: Mapping[str, np.ndarray]) -> None:
        """Buffers (each value its own, on the device that makes or receives it), kernels per
        device, weights uploaded once to every device that uses them."""
        self.buffers: dict[str, object] = {}
        self.buffer_device: dict[str, int] = {}  # the device each buffer lives on
        self.pieces, self.graph, self.capture = [], False, f"off ({len(self.devices)} devices)"

        def need(name: str, device: int, nbytes: int | None = None) -> None:
            if name in self.aliases:
                name, nbytes = self.aliases[name], None
            if name not in self.buffers:
                size = nbytes if nbytes is not None else (np.dtype(self.dtypes[name]).itemsize
                                                          * int(np.prod(self.shapes[name])))
                self.buffers[name] = self.devices[device].alloc(size)
                self.buffer_device[name] = device

        for st in self.steps:
            if st.kind == "gpu":
                for b in st.segment.plan.buffers:
                    need(b.name, st.device, b.nbytes)
            elif st.kind == "upload":
                need(st.dst, st.device)
            elif st.kind == "download" and st.src not in weights:
                need(st.src, st.device)
            elif st.kind == "transfer":
                need(st.dst, st.to_device)
            elif st.kind == "copy":
                for a in st.args:
                    need(a, st.device)
                need(st.dst, st.device)
        for name, root in self.aliases.items():
            if root in self.buffers:
                self.buffers[name], self.buffer_device[name] = self.buffers[root], self.buffer_device[root]
        self.kernels = {}
        for st in self.steps:
            if st.kind == "gpu":
                dev = self.devices[st.device]
                dev.activate()
                try:
                    self.kernels[id(st)] = dev.kernels(st.segment)
                finally:
                    dev.deactivate()
        # weights go once to every device that uses them, a transfer of a weight included
        self.static = {id(st) for st in self.steps if st.kind == "transfer" and st.src in weights}
        uploads = [(n, n) for n in weights if n in self.buffers]
        uploads += [(st.src, st.dst) for st in self.steps if id(st) in self.static]
        for src, dst in uploads:
            dev = self.devices[self.buffer_device[dst]]
            dev.activate()
            try:
                dev.upload(self.buffers[dst], np.ascontiguousarray(weights[src], dtype=self.dtypes[dst]))
                dev.finish()
            finally:
                dev.deactivate()
        nbytes = sum(4 * int(np.prod(self.shapes.get(n, (1,)))) for n in self.buffers)
        self.memory = {"weights": 0, "inputs": 0, "arena": 0, "other intermediates": nbytes,
                       "intermediates unplanned": nbytes}

    def allocate(self, fn: func.FuncOp, weights: Mapping[str, np.ndarray], plan_memory: bool) -> dict[str, object]:
        """Device buffers by value name: arguments (weights, inputs) each their own, planned
        intermediates views into one arena; weights uploaded."""
        dev = self.device
        types = {name_of(v): v.type for v in [*fn.body.block.args, *(r for op in fn.body.block.ops for r in op.results)]}
        wanted: dict[str, int] = {name_of(a): value_bytes(a.type) for a in fn.body.block.args
                                  if T.element_dtype(a.type.element_type) is not None}
        for st in self.steps:
            if st.kind == "gpu":
                for b in st.segment.plan.buffers:
                    if b.name not in self.aliases:  # an alias gets its root's buffer (below)
                        wanted.setdefault(b.name, b.nbytes)
            elif st.kind == "upload":
                wanted.setdefault(st.dst, value_bytes(types[st.dst]))
        for root in self.aliases.values():  # also a root that only its aliases read
            wanted.setdefault(root, value_bytes(types[root]))
        offsets = {name_of(v): off for v, off in arena_offsets(fn).items()} if plan_memory else {}
        arena_size = fn.attributes[ARENA].value.data if plan_memory and ARENA in fn.attributes else 0
        # what does not fit the device is an error before anything is allocated or compiled
        from sched_dsl.runtime.common import check_buffers

        sizes = {name: size for name, size in wanted.items() if not (name in offsets and arena_size)}
        if arena_size:
            sizes["the arena of intermediates"] = arena_size
        check_buffers(sizes, dev.limits)
        buffers: dict[str, object] = {}
        self.arena = dev.alloc(arena_size) if arena_size else None
        args = {name_of(a) for a in fn.body.block.args}
        own = {"weights": 0, "inputs": 0, "intermediates": 0}
        for name, size in wanted.items():
            if name in offsets and self.arena is not None:
                buffers[name] = dev.view(self.arena, offsets[name], size)
                continue
            buffers[name] = dev.alloc(size)
            kind = "weights" if name in weights else "inputs" if name in args else "intermediates"
            own[kind] += size
        for name, root in self.aliases.items():
            buffers[name] = buffers[root]
        for name, w in weights.items():
            if name in buffers and name not in self.aliases:
                dev.write(buffers[name], np.ascontiguousarray(w, dtype=self.dtypes[name]))
        dev.finish()
        unplanned = sum(size for n, size in wanted.items() if n not in args)
        self.memory = {"weights": own["weights"], "inputs": own["inputs"], "arena": arena_size,
                       "other intermediates": own["intermediates"], "intermediates unplanned": unplanned}
        return buffers

    @property
    def peak_bytes(self) -> int:
        """Device memory the session holds (weights, inputs, the arena, other buffers): its peak,
        since nothing is allocated while it runs."""
        m = self.memory
        return m["weights"] + m["inputs"] + m["arena"] + m["other intermediates"]

    @property
    def knobs(self) -> list[str]:
        """Names of the knobs `config` can set (`<stage>.<knob>`)."""
        return [k for st in self.steps if st.kind == "gpu" for k in st.segment.knobs]

    @property
    def kernel_count(self) -> int:
        return sum(len(st.segment.plan.launches) for st in self.steps if st.kind == "gpu")

    @property
    def sources(self) -> list[str]:
        return [st.segment.source for st in self.steps if st.kind == "gpu"]

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            raise GraphError(f"inputs must be a dict of input name -> array, got {type(feeds).__name__}")
        unknown = [n for n in feeds if n not in self.input_names]
        missing = [n for n in self.input_names if n not in feeds]
        if unknown or missing:
            raise GraphError(f"the model's inputs are {', '.join(self.input_names)}; "
                             + (f"unknown: {', '.join(unknown)}" if unknown else "")
                             + ("; " if unknown and missing else "")
                             + (f"missing: {', '.join(missing)}" if missing else ""))
        out = {}
        for n in self.input_names:
            dtype, shape, inside = self.feed_specs[n]
            a = feeds[n]
            if n in self.feed_dtypes and isinstance(a, np.ndarray) and a.dtype == self.feed_dtypes[n] == np.int64:
                # the model's int64 indices: the device computes them in int32
                if a.size and (a.min() < -2**31 or a.max() >= 2**31):
                    raise GraphError(f"input '{n}' has values outside the int32 range the device computes in")
                a = a.astype(np.int32)
            try:  # the dtype policy of built kernels (docs/robustness.md)
                arr = checked_array(n, a, dtype, shape)
            except (TypeError, ValueError) as e:
                raise GraphError(str(e)) from None
            out[n] = arr.reshape(inside)
        return out

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray],
            profile: bool = False) -> list[np.ndarray]:
        """onnxruntime's call shape: the outputs named (all when None), as numpy arrays. With
        profile=True every action runs alone and `last_profile` gets (layer, kind, ms) for every
        kernel, host op and copy."""
        names = self.output_names if output_names is None else list(output_names)
        bad = [n for n in names if n not in self.result_of]
        if bad:
            raise GraphError(f"unknown output(s) {', '.join(bad)}; the model's outputs are "
                             f"{', '.join(self.output_names)}")
        feeds = self.check_feeds(feeds)
        if self.several:
            with self.lock:
                return self._run_parallel([feeds], names, profile)[0]
        with self.lock, self._device_thread():
            return self._run(names, feeds, profile)

    def _device_thread(self):
        """Makes the device usable from the calling thread while a run lasts."""
        if self.target != "cuda":
            return nullcontext()
        from sched_dsl.runtime.cuda import current_context
        return current_context()

    def _run(self, names: list[str], feeds: dict[str, np.ndarray], profile: bool) -> list[np.ndarray]:
        host: dict[str, np.ndarray] = {self.inputs_of[n]: a for n, a in feeds.items()}
        prof: list[tuple[str, str, float]] = []
        for piece in self.pieces:
            if isinstance(piece, Piece):
                for weight, dst in piece.weight_reads:
                    host[dst] = self.host_weights[weight]
                if profile:
                    prof += piece.runner.profile(host)
                else:
                    piece.runner.run(host)
                continue
            t0 = time.perf_counter()
            try:
                results = run_host(piece.op, [host[a] for a in piece.args])
            except Exception as e:  # noqa: BLE001 - a host op's numpy error, named
                raise GraphError(f"host op '{piece.op.stage_name}' failed: {e}") from None
            host.update(zip(piece.outs, results))
            prof.append((piece.op.stage_name, "host", (time.perf_counter() - t0) * 1e3))
        if profile:
            self.last_profile = prof
        return [self.as_model_gives(n, host[self.result_of[n]]) for n in names]

    def as_model_gives(self, name: str, r: np.ndarray) -> np.ndarray:
        """Output `name` in the model's own shape and dtype (a scalar back to rank 0)."""
        if name in self.result_shapes:
            r = r.reshape(self.result_shapes[name])
        if name in self.result_dtypes:
            r = r.astype(self.result_dtypes[name])
        return r

    def run_many(self, output_names: Sequence[str] | None, feeds_list: Sequence[Mapping[str, np.ndarray]]
                 ) -> list[list[np.ndarray]]:
        """Runs several requests; with several devices they stream through them (while one
        device works on request k, the device before it in a pipeline works on k + 1)."""
        names = self.output_names if output_names is None else list(output_names)
        checked = [self.check_feeds(f) for f in feeds_list]
        if not self.several:
            return [self.run(names, f) for f in checked]
        with self.lock:
            return self._run_parallel(checked, names, False)

    def _run_parallel(self, requests: list[dict[str, np.ndarray]], names: list[str],
                      profile: bool) -> list[list[np.ndarray]]:
        """One thread per device runs that device's steps, request after request, in program
        order; the calling thread runs the host steps. Values cross between them through one
        FIFO queue per (from, to) pair; as every thread follows one topological order, each
        wait ends."""
        host_end = len(self.devices)
        ends = range(host_end + 1)
        channels = {(a, b): queue.Queue() for a in ends for b in ends if a != b}
        abort = threading.Event()
        errors: list[BaseException] = []
        prof: list[tuple[str, str, float]] = []
        feed_args = {self.inputs_of[n] for n in self.input_names}

        def get(a: int, b: int):
            while True:
                try:
                    return channels[(a, b)].get(timeout=0.05)
                except queue.Empty:
                    if abort.is_set():
                        raise _Aborted() from None

        def wait(done: threading.Event) -> None:
            while not done.wait(0.05):
                if abort.is_set():
                    raise _Aborted()

        def device_loop(d: int) -> None:
            dev = self.devices[d]
            dev.activate()
            try:
                for feeds in requests:
                    for n, a in feeds.items():
                        arg = self.inputs_of[n]
                        if self.buffer_device.get(arg) == d:
                            dev.upload(self.buffers[arg], a)
                    args_of = {self.inputs_of[n]: a for n, a in feeds.items()}
                    for st in self.steps:
                        if id(st) in self.static:
                            continue
                        if st.kind == "gpu" and st.device == d:
                            for stage, ln, kern in zip(st.segment.stages, st.segment.plan.launches, self.kernels[id(st)]):
                                for name in ln.zeroed:  # updated by atomics: starts at zero
                                    dev.zero(self.buffers[name], int(np.prod(self.shapes[name]))
                                             * np.dtype(self.dtypes[name]).itemsize)
                                ms = dev.launch(kern, ln, [self.buffers[a] for a in ln.args], profile)
                                if profile:
                                    prof.append((stage, "kernel", ms))
                        elif st.kind == "copy" and st.device == d:
                            dev.copy_rects(self.buffers[st.dst], [self.buffers[a] for a in st.args], st.op)
                        elif st.kind == "upload" and st.device == d:
                            a = get(host_end, d)
                            dev.upload(self.buffers[st.dst], np.ascontiguousarray(a, dtype=self.dtypes[st.dst]))
                        elif st.kind == "download" and st.device == d and st.src not in self.host_weights:
                            channels[(d, host_end)].put(dev.download(self.buffers[st.src], self.shapes[st.src],
                                                                     self.dtypes[st.src]))
                        elif st.kind == "transfer" and st.src in feed_args:
                            if st.to_device == d:  # a model input goes straight to the device that needs it
                                dev.upload(self.buffers[st.dst], args_of[st.src])
                        elif st.kind == "transfer" and st.device == d:
                            t0 = time.perf_counter()
                            other = self.devices[st.to_device]
                            if other.can_copy_from(dev):
                                dev.finish()
                                done = threading.Event()
                                channels[(d, st.to_device)].put(("peer", self.buffers[st.src], done))
                                wait(done)
                            else:
                                a = dev.download(self.buffers[st.src], self.shapes[st.src], self.dtypes[st.src])
                                channels[(d, st.to_device)].put(("array", a, None))
                            if profile:
                                prof.append((f"{st.src}->device{st.to_device}", "transfer",
                                             (time.perf_counter() - t0) * 1e3))
                        elif st.kind == "transfer" and st.to_device == d:
                            how, payload, done = get(st.device, d)
                            if how == "peer":
                                nbytes = np.dtype(self.dtypes[st.dst]).itemsize * int(np.prod(self.shapes[st.dst]))
                                dev.copy_from(self.devices[st.device], self.buffers[st.dst], payload, nbytes)
                                done.set()
                            else:
                                dev.upload(self.buffers[st.dst], payload)
                    dev.finish()
            except _Aborted:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the calling thread, which raises it
                errors.append(e)
                abort.set()
            finally:
                dev.deactivate()

        threads = [threading.Thread(target=device_loop, args=(d,), daemon=True) for d in range(len(self.devices))]
        for t in threads:
            t.start()
        results = []
        try:
            for _ in requests:
                host: dict[str, np.ndarray] = {}
                for st in self.steps:
                    if st.kind == "download":
                        host[st.dst] = (self.host_weights[st.src] if st.src in self.host_weights
                                        else get(st.device, host_end))
                    elif st.kind == "upload":
                        channels[(host_end, st.device)].put(host[st.src])
                    elif st.kind == "host":
                        t0 = time.perf_counter()
                        try:
                            host.update(zip(st.outs, run_host(st.op, [host[a] for a in st.args])))
                        except Exception as e:  # noqa: BLE001 - a host op's numpy error, named
                            raise GraphError(f"host op '{st.op.stage_name}' failed: {e}") from None
                        if profile:
                            prof.append((st.op.stage_name, "host", (time.perf_counter() - t0) * 1e3))
                results.append([self.as_model_gives(n, host[self.result_of[n]]) for n in names])
        except _Aborted:
            pass
        except BaseException:
            abort.set()
            raise
        finally:
            for t in threads:
                t.join()
        if errors:
            raise errors[0]
        self.last_profile = prof
        return results


    def stats(self) -> dict:
        """Kernels, launches recorded for replay, device memory and load time, as a dict."""
        return {"kernels": self.kernel_count, "pieces": sum(isinstance(p, Piece) for p in self.pieces),
                "capture": self.capture, "peak_bytes": self.peak_bytes, "memory": dict(self.memory),
                "load": dict(self.load_stats)}


class _Aborted(Exception):
    """Another thread of a parallel run failed: this one stops."""


def device_ordinals(devices: int | Sequence[int] | None) -> list[int | None]:
    """[None] (the target's default device) for None; 0 .. N-1 for N; the ordinals given."""
    if devices is None:
        return [None]
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices < 1:
            raise GraphError(f"devices must be >= 1, got {devices}")
        return list(range(devices)) if devices > 1 else [None]
    ordinals = list(devices)
    if ordinals == [None]:
        return ordinals
    if not ordinals or not all(isinstance(o, int) and o >= 0 for o in ordinals) or len(set(ordinals)) != len(ordinals):
        raise GraphError(f"devices must be a count or a list of distinct device ordinals >= 0, got {devices!r}")
    return ordinals


def element_count(t: TensorType) -> int:
    n = 1
    for d in t.get_shape():
        n *= d
    return n


class Session(GraphExecutor):
    """An imported model ready to run, called like onnxruntime's InferenceSession:
    `sess.run(None, {"input": x})` -> list of numpy arrays."""

    def latency(self, feeds: Mapping[str, np.ndarray], repeat: int = 20, warmup: int = 3) -> float:
        """Mean wall-clock ms of one end-to-end run (upload, kernels, host ops, download)."""
        for _ in range(warmup):
            self.run(None, feeds)
        t0 = time.perf_counter()
        for _ in range(repeat):
            self.run(None, feeds)
        return (time.perf_counter() - t0) * 1e3 / repeat

    def profile(self, feeds: Mapping[str, np.ndarray]) -> list[tuple[str, str, float]]:
        """(layer, kind, ms) of every kernel, host op and copy of one run (kernels timed alone)."""
        with self.lock:
            self.run(None, feeds, profile=True)
            return self.last_profile


def load_onnx(model, target: str = "opencl", fuse: bool = True, host_ops: Sequence[str] = (),
              config: Mapping[str, int] | None = None, records: str | None = None, graph: bool = True,
              plan_memory: bool = True, devices: int | Sequence[int] | None = None, partition: str = "auto",
              profile=None, link=None, objective: str = "latency", precision: str | None = None,
              conv_algorithm: str = "auto", layout: str = "NCHW") -> Session:
    """Imports an ONNX model (a path or a ModelProto) and prepares it on `target` ("opencl" or
    "cuda"). `fuse=False` leaves every operator its own kernel; `host_ops` names operators
    (stage names, as in `sess.ir`) to run on the host; `config` fixes knob values; `records`
    (a tuning records file, see `tune_model`) gives every anchor with records its best config
    (`config` wins where both name a knob). `graph=False` launches every kernel from Python on
    each run instead of replaying a recorded CUDA graph or command buffer; `plan_memory=False`
    gives every intermediate value a buffer of its own instead of a place in one arena.

    `devices` (a count N for ordinals 0 .. N-1, or a list of ordinals) runs the model on
    several devices of this machine, partitioned by `partition` ("split", "pipeline" or "auto",
    see sched_dsl.graph.partition) for `objective` ("latency" or "throughput"). The planner's
    layer times come from `profile` (a profile JSON file or dict, or Session.profile rows),
    else: "auto" measures them on the first device, "pipeline" estimates them from the
    arithmetic; the link between devices is `link` (a simulate.Link), else measured ("auto")..

    `precision` "bf16" or "fp16" runs the f32 model in that type (weights converted once, sums
    in f32, softmax and reductions on f32 values, inputs and outputs f32: the
    tensorop-precision pass); "tf32" multiplies at TF32; "3xtf32" keeps f32's precision
    (within about 2^-20 a product) on tensor cores, each product as three TF32 ones. A model that stores float16 tensors
    (an fp16 export) runs at "fp16" unless `precision` says otherwise; its float16 inputs and
    outputs are float16 arrays.

    `conv_algorithm` says how convs compute: "direct" with the conv templates, "gemm" as a
    matmul of the weights and the windows (groups 1, batch 1: tensorop-conv-to-gemm),
    "implicit" as such a matmul that, on tensor cores and unsplit, gathers the windows tile by
    tile where it reads them (an implicit GEMM: no columns matrix, no im2col kernel),
    "winograd" with Winograd's transforms and a batched matmul (3 x 3, stride 1), or
    "auto": per conv, the faster form where `records` time both (1x1 convs, tuned both ways),
    else "gemm" where the product runs on the device's tensor cores (f16, bf16, tf32, 3xtf32 on an
    NVIDIA GPU of compute capability 8.0 or later) and "direct" otherwise.

    `layout` "NHWC" runs the model's convs and pools, and the ops between them, channels last
    (tensorop-convert-layout: transposes at the edges of each such region; the model's inputs
    and outputs keep their NCHW meaning); "auto" only the regions where that pays (the pass's
    rule, region_pays); "NCHW" (the default) leaves the model as it is. One device only."""
    from sched_dsl.graph.onnx_import import import_onnx

    g = import_onnx(model)
    in_precision(g, precision)
    ordinals = device_ordinals(devices)
    if layout != "NCHW" and len(ordinals) > 1:
        raise GraphError(f"layout '{layout}' runs on one device; tensorop-split splits NCHW models")
    in_layout(g, layout)
    planned = None
    if len(ordinals) > 1:
        planned = partition_model(g, target, ordinals, partition, profile, link, objective, fuse, host_ops)
    boundary = {"input_shapes": g.input_shapes, "input_dtypes": g.input_dtypes, "output_shapes": g.output_shapes,
                "output_dtypes": g.output_dtypes}
    sess = Session(g.module, g.weights, g.inputs, g.outputs, target, fuse, host_ops, config, g.input_args, records,
                   graph, plan_memory, devices=ordinals, boundary=boundary, conv_algorithm=conv_algorithm)
    if planned is not None:
        sess.layers, sess.partition_plan, sess.topology = planned
        sess.plan = describe_plan(sess.layers, sess.partition_plan)
    return sess


def in_precision(g, precision: str | None) -> None:
    """Runs tensorop-precision on the imported model `g` at `precision` ("bf16", "fp16",
    "tf32", "3xtf32"); a model that stores float16 tensors runs at "fp16" when `precision` is None, as
    it was exported: products in f16, sums in f32."""
    from sched_dsl.lowering.precision import PRECISIONS, lower_precision

    precision = "fp16" if precision is None and g.half else precision
    if precision is None:
        return
    if precision not in PRECISIONS:
        raise GraphError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    lower_precision(g.module, precision, set(g.input_args))


def in_layout(g, layout: str) -> None:
    """Runs tensorop-convert-layout on the imported model `g` with `layout` ("NCHW": nothing,
    "NHWC", "auto")."""
    from sched_dsl.lowering.convert_layout import LAYOUT_CHOICES, convert_function

    if layout not in LAYOUT_CHOICES:
        raise GraphError(f"layout '{layout}' is not one of {', '.join(LAYOUT_CHOICES)}")
    for fn in [f for f in g.module.ops if isinstance(f, func.FuncOp)]:
        convert_function(fn, layout)


def describe_plan(layers, the_plan) -> list[str]:
    from sched_dsl.graph.partition import describe
    return describe(layers, the_plan)


def partition_model(g, target: str, ordinals: Sequence[int], partition: str, profile, link, objective: str,
                    fuse: bool = True, host_ops: Sequence[str] = ()) -> tuple:
    """Plans the imported model `g` over `ordinals` and writes the plan into its module;
    returns (layers with their times, the plan, the topology planned for)."""
    from sched_dsl.graph.partition import OBJECTIVES, PARTITIONS, apply_plan, plan
    from sched_dsl.graph.simulate import Link, Topology, layer_graph, with_times

    if partition not in PARTITIONS:
        raise GraphError(f"unknown partition '{partition}'; choose from {', '.join(PARTITIONS)}")
    if objective not in OBJECTIVES:
        raise GraphError(f"unknown objective '{objective}'; choose from {', '.join(OBJECTIVES)}")
    layers = layer_graph(g.module, host_ops)
    if profile is None and partition == "auto":
        profile = layer_times(g, target, ordinals[0], fuse, host_ops)
    if profile is not None:
        layers = with_times(layers, profile)
    else:
        for L in layers:
            L.ms = L.flops * 1e-6  # 1 GFLOP/s: only the ratios matter to a pipeline's balance
    if link is None:
        link = measure_link(target, ordinals[:2]) if partition == "auto" else Link()
    topology = Topology(1, len(ordinals), link)
    the_plan = plan(layers, topology, partition, objective)
    apply_plan(g.module, layers, the_plan)
    return layers, the_plan, topology


def layer_times(g, target: str, ordinal: int | None, fuse: bool = True, host_ops: Sequence[str] = (),
                repeat: int = 3) -> list[tuple[str, str, float]]:
    """(layer, kind, ms) of the imported model `g` on one device: the median of `repeat`
    profiled runs (after one warm-up), as Session.profile names them."""
    sess = Session(g.module.clone(), g.weights, g.inputs, g.outputs, target, fuse, host_ops, None, g.input_args,
                   devices=None if ordinal is None else [ordinal])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(sess.input_types[sess.inputs_of[n]].get_shape()).astype(np.float32)
             for n in sess.input_names}
    sess.run(None, feeds)
    runs = [sess.profile(feeds) for _ in range(repeat)]
    return [(name, kind, float(np.median([r[k][2] for r in runs]))) for k, (name, kind, _) in enumerate(runs[0])]


def measure_launch_ms(dev: Device, launches: int = 50) -> float:
    """The cost of one kernel launch on `dev` beyond the kernel's own time: a one-element
    kernel launched `launches` times back to back, wall clock per launch less its device time."""
    from sched_dsl.build import lower
    from sched_dsl.tensor import placeholder, relu

    probe = lower(relu(placeholder("x", (1,)), name="y"), target=dev.target)
    seg = Segment("probe", probe.source, probe.plan, ["y"])
    dev.activate()
    try:
        [kern] = dev.kernels(seg)
        [ln] = probe.plan.launches
        bufs = {b.name: dev.alloc(4 * b.size) for b in probe.plan.buffers}
        args = [bufs[a] for a in ln.args]
        device_ms = min(dev.launch(kern, ln, args, True) for _ in range(5))
        dev.finish()
        t0 = time.perf_counter()
        for _ in range(launches):
            dev.launch(kern, ln, args, False)
        dev.finish()
        return max(0.0, (time.perf_counter() - t0) * 1e3 / launches - device_ms)
    finally:
        dev.deactivate()


def measure_link(target: str, ordinals: Sequence[int | None], small: int = 4096, large: int = 1 << 22,
                 repeat: int = 5):
    """The link between two devices as the executor uses it (a peer copy where the devices
    allow it, else through the host): latency from a small move, bandwidth from a large one;
    with the cost of a kernel launch on the first device."""
    from sched_dsl.graph.simulate import Link

    a, b = (Device(target, o) for o in ordinals[:2])

    def seconds(nbytes: int) -> float:
        src, dst = a.alloc(nbytes), b.alloc(nbytes)
        host = np.zeros(nbytes // 4, np.float32)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            if b.can_copy_from(a):
                b.copy_from(a, dst, src, nbytes)
            else:
                a.activate()
                host = a.download(src, host.shape)
                a.deactivate()
                b.activate()
                b.upload(dst, host)
                b.finish()
                b.deactivate()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    t_small, t_large = seconds(small), seconds(large)
    gbps = (large - small) / max(t_large - t_small, 1e-9) / 1e9
    return Link(gbps=gbps, latency_us=t_small * 1e6, launch_ms=measure_launch_ms(a))


def lower_ahead(model, target: str = "cuda", fuse: bool = True, host_ops: Sequence[str] = (),
                config: Mapping[str, int] | None = None, records: str | None = None,
                device: str | None = None, conv_algorithm: str = "auto", tensor_cores: bool | None = None,
                precision: str | None = None, layout: str = "NCHW") -> int:
    """Lowers a model as `load_onnx` would, without a device, so that its lowered segments are
    in the disk cache when `load_onnx` runs on the device (same sched-dsl, same arguments).
    `device` is the device's name as tuning records give it (needed with `records`);
    `tensor_cores` whether it has them (default: for "cuda", as `sd.lower`); `precision` and
    `layout` as load_onnx's. Returns the number of kernels."""
    from sched_dsl.graph.onnx_import import import_onnx

    if target not in TARGETS:
        raise GraphError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}")
    if records is not None and device is None:
        raise GraphError("lower_ahead with records needs the device's name (device=...)")
    tensor_cores = target == "cuda" if tensor_cores is None else tensor_cores
    g = import_onnx(model)
    in_precision(g, precision)
    in_layout(g, layout)
    timed = recorded_times(target, records, device) if records is not None and conv_algorithm == "auto" else None
    fn = prepare(g.module, fuse, host_ops, 1, conv_algorithm, tensor_cores, timed)
    if records is not None:
        config = {**records_config(fn, target, records, device)[0], **(config or {})}
    if target == "cuda":  # as load_onnx plans memory on a CUDA device (256-byte alignment)
        TensoropPlanMemoryPass(alignment=256).apply(make_context(), g.module)
    steps, _ = plan_steps(fn, target, config, tensor_cores)
    return sum(len(st.segment.plan.launches) for st in steps if st.kind == "gpu")


def anchors(fn: func.FuncOp) -> list[T.TensorOp]:
    """The GPU ops of a prepared model function that get a chosen schedule (conv2d, matmul)."""
    return [op for op in fn.body.block.ops
            if isinstance(op, T.TensorOp) and not is_host(op) and anchor_template(op) is not None]


def recorded_times(target: str, records: str, device: str | None = None) -> Callable[[Tensor], float | None]:
    """The fastest correct time (ms) a records file holds for a workload (its output tensor)
    on the target's device, or None when it holds none: what conv_algorithm "auto" compares."""
    from sched_dsl.records import best, load, workload_of
    from sched_dsl.runtime import device_name

    fastest = best(load(records))  # a missing or malformed file is an error, not "no records"
    device = device or device_name(target)

    def time_of(y: Tensor) -> float | None:
        r = fastest.get(workload_of([y], target, device).key)
        return None if r is None else r.cost_ms

    return time_of


def records_config(fn: func.FuncOp, target: str, records: str, device: str | None = None
                   ) -> tuple[dict[str, int], list[str]]:
    """Knob values from a tuning records file: for every anchor whose workload (the anchor
    alone: operator, attributes, shapes, target, device) has a correct record there, the best
    config, its knobs named `<stage>.<knob>`. Returns (config, the stages it covers). A records
    file that is missing or malformed is a RecordsError; anchors without records keep their
    default knobs. `device` names the device as the records do (default: the target's)."""
    from sched_dsl.records import RecordsError, best_config, load, workload_of
    from sched_dsl.runtime import device_name

    loaded = load(records)  # a missing or malformed file is an error, not "no records"
    device = device or device_name(target)
    config: dict[str, int] = {}
    tuned: list[str] = []
    best: dict[str, dict[str, int] | None] = {}
    for op in anchors(fn):
        y, s = anchor_workload(op)
        key = workload_of([y], target, device).key
        if key not in best:
            try:
                best[key] = best_config(records, workload_of([y], target, device), s.knob_candidates(), loaded)
            except RecordsError:
                best[key] = None
        if best[key] is not None:
            tuned.append(op.stage_name)
            config.update({f"{op.stage_name}.{k}": v for k, v in best[key].items()})
    return config, tuned
