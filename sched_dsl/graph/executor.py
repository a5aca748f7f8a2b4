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
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from io import StringIO

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, i32, i64
from xdsl.ir import Block, Region, SSAValue
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from sched_dsl.context import make_context
from sched_dsl.dialects import sched as S
from sched_dsl.dialects import tensorop as T
from sched_dsl.graph.device import Action, HostLayout, make_device
from sched_dsl.graph.host_ops import HOST_CALLS, run_host
from sched_dsl.graph.model_schedules import anchor_ops, anchor_template, anchor_workload
from sched_dsl.lowering.fuse import PLACE, TensoropFusePass
from sched_dsl.lowering.host_plan import Buffer, HostPlan, Launch, c_name, host_plan
from sched_dsl.lowering.pipeline import run_default_pipeline
from sched_dsl.lowering.place import TensoropPlacePass
from sched_dsl.lowering.plan_memory import ARENA, TensoropPlanMemoryPass, arena_offsets, value_bytes
from sched_dsl.lowering.targets.c_family import CUDA, OPENCL, kernel_texts, print_kernels
from sched_dsl.runtime.cache import COUNTS, compiler_fingerprint, default_cache, key_of
from sched_dsl.runtime.common import checked_array

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
    kind: str  # "gpu", "host", "upload" or "download"
    segment: Segment | None = None
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


def prepare(module: ModuleOp, fuse: bool = True, host: Sequence[str] = ()) -> func.FuncOp:
    """Runs tensorop-place (and tensorop-fuse) on the module; returns its one function.
    (tensorop-plan-memory runs once the device is known: the segments do not depend on it.)"""
    ctx = make_context()
    try:
        TensoropPlacePass(host=",".join(host)).apply(ctx, module)
        if fuse:
            TensoropFusePass().apply(ctx, module)
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
    inside = set(ops)
    defined = {op.result for op in ops}
    args: list[SSAValue] = []
    for op in ops:
        for v in op.operands:
            if v not in defined and v not in args:
                args.append(v)
    outs = [op.result for op in ops if any(u.operation not in inside for u in op.result.uses)]
    block = Block(arg_types=[a.type for a in args])
    mapping: dict[SSAValue, SSAValue] = {}
    for a, b in zip(args, block.args):
        b.name_hint = name_of(a)
        mapping[a] = b
    for op in ops:
        new = op.clone(value_mapper=mapping)
        new.result.name_hint = op.result.name_hint
        mapping[op.result] = new.result
        block.add_op(new)
    block.add_op(func.ReturnOp(*[mapping[v] for v in outs]))
    fn = func.FuncOp(name, ([a.type for a in block.args], [v.type for v in outs]), Region(block))
    return ModuleOp([fn, model_schedule(list(block.ops), config or {})])


THREAD_CANDIDATES = (64, 128, 256, 32)  # threads per block of pool and reduce stages; the first is the default


def model_schedule(ops, config: Mapping[str, int]) -> S.ScheduleOp:
    """The schedule models run under. A conv2d or matmul (a fused group is its anchor's stage)
    gets the schedule `sched_dsl.graph.model_schedules` chooses from its shape, knobs named
    `<stage>.<knob>`; a pool2d or reduce the default mapping (spatial loops fused, split by the
    knob `<stage>.threads`, bound to block.x/thread.x) plus a register accumulator (cache_write
    at the thread loop). With a register accumulator a fused epilogue runs once per output, at
    the write-back. Other stages keep apply-schedule's default."""
    sched_ops: list = []
    for op in ops:
        chosen = anchor_ops(op)
        if chosen is not None:
            sched_ops += chosen
            continue
        if isinstance(op, T.ReduceOp):
            loops = [f"d{k}" for k in range(len(T.shape_of(op.result)))]
        elif isinstance(op, T.Pool2dOp):
            loops = ["n", "c", "y", "x"]
        else:
            continue
        handles = []
        for axis in loops:
            h = S.LoopOp(op.stage_name, axis)
            sched_ops.append(h)
            handles.append(h.result)
        fused = handles[0]
        for h in handles[1:]:
            f = S.FuseOp(fused, h)
            sched_ops.append(f)
            fused = f.results[0]
        knob = S.KnobOp(f"{op.stage_name}.threads", THREAD_CANDIDATES)
        knob.result.name_hint = "threads"
        split = S.SplitOp(fused, knob.result)
        sched_ops += [knob, split, S.BindOp(split.outer, "block.x"), S.BindOp(split.inner, "thread.x"),
                      S.CacheWriteOp("local", split.inner)]
    return S.ScheduleOp(sched_ops)


def lowered(module: ModuleOp, target: str, config: dict[str, int], name: str
            ) -> tuple[str, list[tuple[str, str]], HostPlan]:
    """(kernel text, (C name, text) per kernel, host plan) of a segment module lowered through
    the default pipeline with `config`; taken from the disk cache when this compiler has
    lowered the same module before."""
    cache = default_cache()
    key = key_of("lowered", compiler_fingerprint(), target, str(module), json.dumps(sorted(config.items())))
    data = cache.get("lowered", key) if cache is not None else None
    if data is not None:
        try:
            d = json.loads(data)
            plan = HostPlan(d["function"], tuple(Buffer(n, tuple(sh), r, t) for n, sh, r, t in d["buffers"]),
                            tuple(Launch(k, tuple(g), tuple(b), tuple(a)) for k, g, b, a in d["launches"]))
            return d["source"], [tuple(u) for u in d["units"]], plan
        except (ValueError, KeyError, TypeError):
            pass  # written by something else: lowered again and overwritten
    try:
        run_default_pipeline(make_context(), module, config)
        text = StringIO()
        print_kernels(module, TARGETS[target], text)
        units = kernel_texts(module, TARGETS[target])
    except (DiagnosticException, VerifyException) as e:
        raise GraphError(f"segment {name}: {e}") from None
    plan = host_plan(module)
    COUNTS["lowered"] += 1
    if cache is not None:
        d = {"source": text.getvalue(), "units": units, "function": plan.function,
             "buffers": [[b.name, b.shape, b.role, b.dtype] for b in plan.buffers],
             "launches": [[ln.kernel, ln.grid, ln.block, ln.args] for ln in plan.launches]}
        cache.put("lowered", key, json.dumps(d).encode())
    return text.getvalue(), units, plan


def plan_steps(fn: func.FuncOp, target: str, config: Mapping[str, int] | None) -> tuple[list[Step], list[str]]:
    steps: list[Step] = []
    pending: list[T.TensorOp] = []

    config = dict(config or {})
    used: set[str] = set()

    def flush():
        if not pending:
            return
        name = f"seg{sum(s.kind == 'gpu' for s in steps)}"
        module = segment_module(list(pending), name, config)
        knobs = {o.knob_name.data for o in module.walk() if isinstance(o, S.KnobOp)}
        used.update(knobs & set(config))
        source, units, plan = lowered(module, target, {k: v for k, v in config.items() if k in knobs}, name)
        # a fused kernel is named after its anchor; its layer name lists the whole group
        groups: dict[str, list[str]] = {}
        for op in pending:
            if "group" in op.attributes:
                groups.setdefault(op.attributes["group"].data, []).append(op.stage_name)
        stages = [ln.kernel[len(name) + 1:] for ln in plan.launches]
        stages = ["+".join(groups.get(st, [st])) for st in stages]
        steps.append(Step("gpu", Segment(name, source, plan, stages, sorted(knobs), units)))
        pending.clear()

    returned: list[str] = []
    for op in fn.body.block.ops:
        if isinstance(op, func.ReturnOp):
            flush()
            returned = [name_of(v) for v in op.arguments]
        elif isinstance(op, T.CopyOp):
            flush()
            steps.append(Step("upload" if op.to.data == "device" else "download",
                              src=name_of(op.input), dst=name_of(op.result)))
        elif isinstance(op, T.HostCallOp) or is_host(op):
            if isinstance(op, T.HostCallOp) and op.callee.data not in HOST_CALLS:
                raise GraphError(f"host_call '{op.stage_name}': no host implementation of '{op.callee.data}'; "
                                 f"there are {', '.join(sorted(HOST_CALLS))}")
            flush()
            steps.append(Step("host", op=op, args=[name_of(v) for v in op.operands],
                              outs=[name_of(v) for v in op.results]))
        else:
            pending.append(op)
    unknown = sorted(set(config) - used)
    if unknown:
        known = sorted({k for s in steps if s.kind == "gpu" for k in s.segment.knobs})
        raise GraphError(f"config names unknown knob(s) {', '.join(unknown)}; the model has {len(known)} knobs, "
                         f"<stage>.<knob> as in {', '.join(known[:6])}{' ...' if len(known) > 6 else ''}")
    return steps, returned


def _np_dtype(t) -> type:
    """numpy's type for a tensor type's elements (device buffers hold f32 or i32)."""
    e = t.element_type
    return np.int32 if e == i32 else np.int64 if e == i64 else np.float32


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


class GraphExecutor:
    """A model ready to run: segments compiled, buffers allocated, weights uploaded, every
    piece recorded for replay (`graph=True`, where the device allows)."""

    def __init__(self, module: ModuleOp, weights: Mapping[str, np.ndarray], inputs: Sequence[str],
                 outputs: Sequence[str], target: str = "opencl", fuse: bool = True,
                 host: Sequence[str] = (), config: Mapping[str, int] | None = None,
                 input_args: Sequence[str] | None = None, records: str | None = None,
                 graph: bool = True, plan_memory: bool = True):
        if target not in TARGETS:
            raise GraphError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}")
        t0 = time.perf_counter()
        counts0 = COUNTS.copy()
        self.target, self.fuse = target, fuse
        self.lock = threading.RLock()  # one run at a time: runs share the buffers and staging arrays
        fn = prepare(module, fuse, host)
        self.tuned: list[str] = []  # anchors whose knobs come from the records file
        if records is not None:
            recorded, self.tuned = records_config(fn, target, records)
            config = {**recorded, **(config or {})}
        self.config = dict(config or {})
        self.steps, returned = plan_steps(fn, target, config)
        self.device = make_device(target)
        if plan_memory:
            TensoropPlanMemoryPass(alignment=self.device.alignment).apply(make_context(), module)
        self.ir = str(module)  # the placed, fused and planned graph, as text
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
        self.host_weights = dict(weights)  # copies of weights to the host read these
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

    def allocate(self, fn: func.FuncOp, weights: Mapping[str, np.ndarray], plan_memory: bool) -> dict[str, object]:
        """Device buffers by value name: arguments (weights, inputs) each their own, planned
        intermediates views into one arena; weights uploaded."""
        dev = self.device
        types = {name_of(v): v.type for v in [*fn.body.block.args, *(r for op in fn.body.block.ops for r in op.results)]}
        wanted: dict[str, int] = {name_of(a): value_bytes(a.type) for a in fn.body.block.args
                                  if a.type.element_type in (f32, i32)}
        for st in self.steps:
            if st.kind == "gpu":
                for b in st.segment.plan.buffers:
                    wanted.setdefault(b.name, 4 * b.size)
            elif st.kind == "upload":
                wanted.setdefault(st.dst, value_bytes(types[st.dst]))
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
        for name, w in weights.items():
            if name in buffers:
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
            t = self.input_types[self.inputs_of[n]]
            try:  # the dtype policy of built kernels (docs/robustness.md)
                out[n] = checked_array(n, feeds[n], T.dtype_of(t), tuple(t.get_shape()))
            except (TypeError, ValueError) as e:
                raise GraphError(str(e)) from None
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
        return [host[self.result_of[n]] for n in names]

    def stats(self) -> dict:
        """Kernels, launches recorded for replay, device memory and load time, as a dict."""
        return {"kernels": self.kernel_count, "pieces": sum(isinstance(p, Piece) for p in self.pieces),
                "capture": self.capture, "peak_bytes": self.peak_bytes, "memory": dict(self.memory),
                "load": dict(self.load_stats)}


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
              plan_memory: bool = True) -> Session:
    """Imports an ONNX model (a path or a ModelProto) and prepares it on `target` ("opencl" or
    "cuda"). `fuse=False` leaves every operator its own kernel; `host_ops` names operators
    (stage names, as in `sess.ir`) to run on the host; `config` fixes knob values; `records`
    (a tuning records file, see `tune_model`) gives every anchor with records its best config
    (`config` wins where both name a knob). `graph=False` launches every kernel from Python on
    each run instead of replaying a recorded CUDA graph or command buffer; `plan_memory=False`
    gives every intermediate value a buffer of its own instead of a place in one arena."""
    from sched_dsl.graph.onnx_import import import_onnx

    g = import_onnx(model)
    return Session(g.module, g.weights, g.inputs, g.outputs, target, fuse, host_ops, config, g.input_args, records,
                   graph, plan_memory)


def lower_ahead(model, target: str = "cuda", fuse: bool = True, host_ops: Sequence[str] = (),
                config: Mapping[str, int] | None = None, records: str | None = None,
                device: str | None = None) -> int:
    """Lowers a model as `load_onnx` would, without a device, so that its lowered segments are
    in the disk cache when `load_onnx` runs on the device (same sched-dsl, same arguments).
    `device` is the device's name as tuning records give it (needed with `records`). Returns
    the number of kernels."""
    from sched_dsl.graph.onnx_import import import_onnx

    if target not in TARGETS:
        raise GraphError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}")
    g = import_onnx(model)
    fn = prepare(g.module, fuse, host_ops)
    if records is not None:
        if device is None:
            raise GraphError("lower_ahead with records needs the device's name (device=...)")
        config = {**records_config(fn, target, records, device)[0], **(config or {})}
    steps, _ = plan_steps(fn, target, config)
    return sum(len(st.segment.plan.launches) for st in steps if st.kind == "gpu")


def anchors(fn: func.FuncOp) -> list[T.TensorOp]:
    """The GPU ops of a prepared model function that get a chosen schedule (conv2d, matmul)."""
    return [op for op in fn.body.block.ops
            if isinstance(op, T.TensorOp) and not is_host(op) and anchor_template(op) is not None]


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
