"""The graph executor: runs a placed, fused tensorop function on one device.

The function is cut into steps at its host ops: a run of GPU ops between two host steps is one
segment, lowered through the default pipeline to one program of kernels; a host op runs in
numpy (sched_dsl.graph.host_ops); `tensorop.copy` ops become uploads and downloads. Device buffers
(weights, inputs, every intermediate tensor) are allocated once, when the session is made, and
reused by every run; the weights are uploaded once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
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
from sched_dsl.graph.host_ops import HOST_CALLS, run_host
from sched_dsl.lowering.fuse import PLACE, TensoropFusePass
from sched_dsl.lowering.host_plan import HostPlan, c_name, host_plan
from sched_dsl.lowering.pipeline import run_default_pipeline
from sched_dsl.lowering.place import TensoropPlacePass
from sched_dsl.lowering.targets.c_family import CUDA, OPENCL, print_kernels
from sched_dsl.graph.model_schedules import anchor_ops, anchor_template, anchor_workload

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
    """Runs tensorop-place (and tensorop-fuse) on the module; returns its one function."""
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
    `<stage>.<knob>`; a pool2d or reduce, and the row reductions of softmax and normalize
    (`<name>.max`, `<name>.sum`, `<name>.mean`, `<name>.var`), the default mapping (spatial
    loops fused, split by the knob `<stage>.threads`, bound to block.x/thread.x) plus a
    register accumulator (cache_write at the thread loop). With a register accumulator a fused
    epilogue runs once per output, at the write-back. Other stages keep apply-schedule's
    default."""
    sched_ops: list = []
    for op in ops:
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
        try:
            run_default_pipeline(make_context(), module, {k: v for k, v in config.items() if k in knobs})
            text = StringIO()
            print_kernels(module, TARGETS[target], text)
        except (DiagnosticException, VerifyException) as e:
            raise GraphError(f"segment {name}: {e}") from None
        plan = host_plan(module)
        # a fused kernel is named after its anchor; its layer name lists the whole group
        groups: dict[str, list[str]] = {}
        for op in pending:
            if "group" in op.attributes:
                groups.setdefault(op.attributes["group"].data, []).append(op.stage_name)
        stages = [ln.kernel[len(name) + 1:] for ln in plan.launches]
        stages = ["+".join(groups.get(st, [st])) for st in stages]
        steps.append(Step("gpu", Segment(name, text.getvalue(), plan, stages, sorted(knobs))))
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


class Device:
    """Buffers, uploads, downloads and launches on one device (OpenCL or CUDA)."""

    def __init__(self, target: str):
        self.target = target
        if target == "opencl":
            import pyopencl as cl

            from sched_dsl.runtime.opencl import _context_and_queue, default_device
            self.cl = cl
            self.name = default_device().name
            self.ctx, self.queue = _context_and_queue()
        else:
            from sched_dsl.runtime.cuda import _driver, default_device
            self.drv = _driver()
            self.name = default_device().name()

    def alloc(self, nbytes: int):
        if self.target == "opencl":
            return self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE, size=max(nbytes, 4))
        return self.drv.mem_alloc(max(nbytes, 4))

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

    def kernels(self, seg: Segment) -> list:
        names = [c_name(ln.kernel, "kernel") for ln in seg.plan.launches]
        if self.target == "opencl":
            from sched_dsl.runtime.opencl import _program
            prog = _program(seg.source)
            return [self.cl.Kernel(prog, n) for n in names]
        from sched_dsl.runtime.cuda import compile_module, default_device
        module, _ = compile_module(seg.source, default_device())
        fns = [module.get_function(n) for n in names]
        for fn, ln in zip(fns, seg.plan.launches):
            fn.prepare("P" * len(ln.args))
        return fns

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
            kern.prepared_call(ln.grid, ln.block, *[int(b) for b in bufs])
            end.record()
            end.synchronize()
            return start.time_till(end)
        kern.prepared_async_call(ln.grid, ln.block, None, *[int(b) for b in bufs])
        return None

    def finish(self) -> None:
        if self.target == "opencl":
            self.queue.finish()
        else:
            self.drv.Context.synchronize()


class GraphExecutor:
    """A model ready to run: segments compiled, buffers allocated, weights uploaded."""

    def __init__(self, module: ModuleOp, weights: Mapping[str, np.ndarray], inputs: Sequence[str],
                 outputs: Sequence[str], target: str = "opencl", fuse: bool = True,
                 host: Sequence[str] = (), config: Mapping[str, int] | None = None,
                 input_args: Sequence[str] | None = None, records: str | None = None,
                 boundary: Mapping[str, Mapping] | None = None):
        if target not in TARGETS:
            raise GraphError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}")
        self.target, self.fuse = target, fuse
        fn = prepare(module, fuse, host)
        self.tuned: list[str] = []  # anchors whose knobs come from the records file
        if records is not None:
            recorded, self.tuned = records_config(fn, target, records)
            config = {**recorded, **(config or {})}
        self.config = dict(config or {})
        self.ir = str(module)  # the placed (and fused) graph, as text
        self.steps, returned = plan_steps(fn, target, config)
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
        # (a scalar is one element inside; float64 computes as f32, int64 indices as i32)
        boundary = boundary or {}
        self.feed_shapes = dict(boundary.get("input_shapes", {}))
        self.feed_dtypes = {n: np.dtype(d) for n, d in boundary.get("input_dtypes", {}).items()}
        self.result_shapes = dict(boundary.get("output_shapes", {}))
        self.result_dtypes = {n: np.dtype(d) for n, d in boundary.get("output_dtypes", {}).items()}
        self.device = Device(target)
        self.buffers: dict[str, object] = {}
        self.host_weights = dict(weights)  # copies of weights to the host read these
        for a in fn.body.block.args:
            if a.type.element_type in (f32, i32):
                self.buffers[name_of(a)] = self.device.alloc(4 * element_count(a.type))
        for st in self.steps:
            if st.kind == "gpu":
                for b in st.segment.plan.buffers:
                    if b.name not in self.buffers:
                        self.buffers[b.name] = self.device.alloc(4 * b.size)
            elif st.kind == "upload" and st.dst not in self.buffers:
                self.buffers[st.dst] = self.device.alloc(4 * int(np.prod(self.shapes[st.dst])))
        self.kernels = {id(st): self.device.kernels(st.segment) for st in self.steps if st.kind == "gpu"}
        for name, w in weights.items():
            if name in self.buffers:
                self.device.upload(self.buffers[name], np.ascontiguousarray(w, dtype=self.dtypes[name]))
        self.device.finish()
        self.last_profile: list[tuple[str, str, float]] = []

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
            a = np.asarray(feeds[n])
            arg = self.input_types[self.inputs_of[n]]
            inside = tuple(arg.get_shape())
            want = self.feed_shapes.get(n, inside)
            want_dtype = self.feed_dtypes.get(n, np.dtype(_np_dtype(arg)))
            if a.dtype != want_dtype:
                raise GraphError(f"input '{n}' has dtype {a.dtype}, expected {want_dtype}")
            if a.shape != want:
                raise GraphError(f"input '{n}' has shape {a.shape}, expected {want}")
            if a.dtype.kind == "i" and a.size and (a.min() < -2**31 or a.max() >= 2**31):
                raise GraphError(f"input '{n}' has values outside the int32 range the device computes in")
            out[n] = np.ascontiguousarray(a.reshape(inside), dtype=_np_dtype(arg))
        return out

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray],
            profile: bool = False) -> list[np.ndarray]:
        """onnxruntime's call shape: the outputs named (all when None), as numpy arrays. With
        profile=True, `last_profile` gets (layer, kind, ms) for every kernel, host op and copy."""
        names = self.output_names if output_names is None else list(output_names)
        bad = [n for n in names if n not in self.result_of]
        if bad:
            raise GraphError(f"unknown output(s) {', '.join(bad)}; the model's outputs are "
                             f"{', '.join(self.output_names)}")
        feeds = self.check_feeds(feeds)
        dev = self.device
        for n, a in feeds.items():
            dev.upload(self.buffers[self.inputs_of[n]], a)
        host: dict[str, np.ndarray] = {}
        prof: list[tuple[str, str, float]] = []
        for st in self.steps:
            t0 = time.perf_counter()
            if st.kind == "gpu":
                for stage, ln, kern in zip(st.segment.stages, st.segment.plan.launches, self.kernels[id(st)]):
                    ms = dev.launch(kern, ln, [self.buffers[a] for a in ln.args], profile)
                    if profile:
                        prof.append((stage, "kernel", ms))
                continue
            if st.kind == "download" and st.src in self.host_weights:
                host[st.dst] = self.host_weights[st.src]
            elif st.kind == "download":
                host[st.dst] = dev.download(self.buffers[st.src], self.shapes[st.src], self.dtypes[st.src])
            elif st.kind == "upload":
                a = np.ascontiguousarray(host[st.src], dtype=self.dtypes[st.dst])
                dev.upload(self.buffers[st.dst], a)
                dev.finish()
            else:
                try:
                    results = run_host(st.op, [host[a] for a in st.args])
                except Exception as e:  # noqa: BLE001 - a host op's numpy error, named
                    raise GraphError(f"host op '{st.op.stage_name}' failed: {e}") from None
                host.update(zip(st.outs, results))
            if profile:
                prof.append((st.op.stage_name if st.kind == "host" else f"{st.src}->{st.kind}",
                             st.kind, (time.perf_counter() - t0) * 1e3))
        dev.finish()
        self.last_profile = prof
        results = []
        for n in names:
            r = host[self.result_of[n]]
            if n in self.result_shapes:
                r = r.reshape(self.result_shapes[n])
            if n in self.result_dtypes:
                r = r.astype(self.result_dtypes[n])
            results.append(r)
        return results


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
        self.run(None, feeds, profile=True)
        return self.last_profile


def load_onnx(model, target: str = "opencl", fuse: bool = True, host_ops: Sequence[str] = (),
              config: Mapping[str, int] | None = None, records: str | None = None) -> Session:
    """Imports an ONNX model (a path or a ModelProto) and prepares it on `target` ("opencl" or
    "cuda"). `fuse=False` leaves every operator its own kernel; `host_ops` names operators
    (stage names, as in `sess.ir`) to run on the host; `config` fixes knob values; `records`
    (a tuning records file, see `tune_model`) gives every anchor with records its best config
    (`config` wins where both name a knob)."""
    from sched_dsl.graph.onnx_import import import_onnx

    g = import_onnx(model)
    boundary = {"input_shapes": g.input_shapes, "input_dtypes": g.input_dtypes, "output_shapes": g.output_shapes,
                "output_dtypes": g.output_dtypes}
    return Session(g.module, g.weights, g.inputs, g.outputs, target, fuse, host_ops, config, g.input_args, records,
                   boundary)


def anchors(fn: func.FuncOp) -> list[T.TensorOp]:
    """The GPU ops of a prepared model function that get a chosen schedule (conv2d, matmul)."""
    return [op for op in fn.body.block.ops
            if isinstance(op, T.TensorOp) and not is_host(op) and anchor_template(op) is not None]


def records_config(fn: func.FuncOp, target: str, records: str) -> tuple[dict[str, int], list[str]]:
    """Knob values from a tuning records file: for every anchor whose workload (the anchor
    alone: operator, attributes, shapes, target, device) has a correct record there, the best
    config, its knobs named `<stage>.<knob>`. Returns (config, the stages it covers). A records
    file that is missing or malformed is a RecordsError; anchors without records keep their
    default knobs."""
    from sched_dsl.records import RecordsError, best_config, load, workload_of
    from sched_dsl.runtime import device_name

    load(records)  # a missing or malformed file is an error, not "no records"
    device = device_name(target)
    config: dict[str, int] = {}
    tuned: list[str] = []
    best: dict[str, dict[str, int] | None] = {}
    for op in anchors(fn):
        y, s = anchor_workload(op)
        key = workload_of([y], target, device).key
        if key not in best:
            try:
                best[key] = best_config(records, workload_of([y], target, device), s.knob_candidates())
            except RecordsError:
                best[key] = None
        if best[key] is not None:
            tuned.append(op.stage_name)
            config.update({f"{op.stage_name}.{k}": v for k, v in best[key].items()})
    return config, tuned
