"""The Schedule builder: Python calls that write `sched` IR.

Calls are checked as they are made where the schedule alone decides (a factor < 1, an
unknown loop, a loop used after it was split); the rest is checked by `apply-schedule`
when the schedule is lowered. `Schedule.ir()` prints payload and schedule as text that
`sched-opt` reads back.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue

from sched_dsl.dialects import sched as S
from sched_dsl.dialects import tensorop as T
from sched_dsl.tensor import Tensor, module_of


class ScheduleError(ValueError):
    """A schedule that cannot mean anything for its operator."""


def loop_names(t: Tensor) -> list[str]:
    """The loops tensorop-to-loops gives the operator's (main) stage, outermost first."""
    spatial = [f"d{k}" for k in range(len(t.shape))]
    return {
        "matmul": [f"b{k}" for k in range(len(t.shape) - 2)] + ["i", "j", "k"],
        "conv2d": ["n", "f", "y", "x", "rc", "ry", "rx"],
        "conv_transpose2d": ["n", "f", "y", "x", "rc", "ry", "rx"],
        "pool2d": ["n", "c", "y", "x", "ry", "rx"],
        "reduce": spatial + [f"r{k}" for k in range(len(t.attrs.get("axes", ())))],
        "nms": ["m", "rank"],
    }.get(t.kind, spatial)


def tensor_intrinsic(t: Tensor) -> str:
    """The warp-level intrinsic that computes tiles of matmul `t`, by its types."""
    if t.kind != "matmul":
        raise ScheduleError(f"tensorize: {t.kind} '{t.name or t.kind}' is not a matmul; tensor cores compute "
                            "matmul tiles")
    dtype = t.inputs[0].dtype
    if dtype in ("f16", "bf16"):
        return "mma.m16n8k16"
    if t.attrs.get("compute") in T.COMPUTE_MODES:
        return "mma.m16n8k8"
    raise ScheduleError(f"tensorize: matmul '{t.name or t.kind}' multiplies {dtype} tensors at full precision; "
                        "tensor cores take f16/bf16 tensors, or f32 ones with precision='tf32' or '3xtf32'")


def _factor(value, what: str) -> int:
    """A split or tile factor as an int, checked: an integer from 1 to 2**63-1 (i64 in the IR)."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or operator.index(value) < 1:
        raise ScheduleError(f"{what} must be an int >= 1 or a knob, got {value!r}")
    if operator.index(value) > S.MAX_INT:
        raise ScheduleError(f"{what} must be at most 2**63-1, got {value!r}")
    return operator.index(value)


def _check_knob_name(name) -> None:
    if (problem := S.knob_name_problem(name)) is not None:
        raise ScheduleError(problem)


@dataclass(eq=False)
class Loop:
    """A handle to a loop of one stage."""

    stage: Tensor | str
    name: str
    parent: Loop | None = None
    consumed_by: str | None = None

    def __repr__(self) -> str:
        return f"Loop({self.name})"


@dataclass(eq=False)
class Knob:
    name: str
    candidates: tuple[int, ...]
    derive: str | None = None  # "divisors" or "pow2" of `extent`, for split-factor knobs
    extent: int | None = None


class Schedule:
    def __init__(self, *outputs: Tensor):
        if not outputs or not all(isinstance(t, Tensor) for t in outputs):
            raise TypeError("Schedule(...) takes the output tensor(s) it schedules")
        self.outputs = outputs
        self.actions: list[tuple[str, tuple]] = []
        self.knobs: dict[str, Knob] = {}

    # -- handles ----------------------------------------------------------------------------
    def loop(self, name: str, stage: Tensor | str | None = None) -> Loop:
        stage = self.outputs[0] if stage is None else stage
        if isinstance(stage, Tensor):
            if stage.kind == "placeholder":
                raise ScheduleError(f"'{stage.name}' is an input; it has no loops")
            names = loop_names(stage)
            if name not in names:
                raise ScheduleError(f"{stage.kind} has no loop '{name}'; its loops are {', '.join(names)}")
        return Loop(stage, name)

    def loops(self, *names: str, stage: Tensor | str | None = None) -> tuple[Loop, ...]:
        return tuple(self.loop(n, stage) for n in names)

    def knob(self, name: str, candidates: Sequence[int]) -> Knob:
        bad = [c for c in candidates if isinstance(c, bool) or not hasattr(c, "__index__")]
        if bad:
            raise ScheduleError(f"knob '{name}': candidates must be ints, got {bad[0]!r}")
        candidates = tuple(operator.index(c) for c in candidates)
        if name in self.knobs:
            raise ScheduleError(f"knob '{name}' is defined twice")
        _check_knob_name(name)
        if not candidates or min(candidates) < 1:
            raise ScheduleError(f"knob '{name}' needs candidates >= 1, got {list(candidates)}")
        if max(candidates) > S.MAX_INT:
            raise ScheduleError(f"knob '{name}': candidate {max(candidates)} is larger than 2**63-1")
        k = Knob(name, candidates)
        self.knobs[name] = k
        self.actions.append(("knob", (k,)))
        return k

    def knob_candidates(self) -> dict[str, tuple[int, ...]]:
        """Every knob's candidates, by knob name."""
        return {k.name: k.candidates for k in self.knobs.values()}

    def split_knob(self, name: str, extent: int, kind: str = "divisors", lo: int = 1, hi: int | None = None) -> Knob:
        """A knob over split factors of a loop of `extent`: its divisors (kind="divisors") or
        the powers of two up to it (kind="pow2"), kept between `lo` and `hi`."""
        if name in self.knobs:
            raise ScheduleError(f"knob '{name}' is defined twice")
        _check_knob_name(name)
        if not isinstance(extent, int) or extent < 1:
            raise ScheduleError(f"split_knob '{name}': extent must be an int >= 1, got {extent!r}")
        try:
            derived = S.derived_candidates(kind, extent)
        except ValueError as e:
            raise ScheduleError(f"split_knob '{name}': {e}") from None
        hi = extent if hi is None else hi
        candidates = tuple(v for v in derived if lo <= v <= hi)
        if not candidates:
            raise ScheduleError(f"split_knob '{name}': no {kind} of {extent} lies in [{lo}, {hi}]")
        k = Knob(name, candidates, kind, extent)
        self.knobs[name] = k
        self.actions.append(("knob", (k,)))
        return k

    def _use(self, *loops: Loop) -> None:
        for lp in loops:
            if not isinstance(lp, Loop):
                raise TypeError(f"expected a loop handle, got {type(lp).__name__}")
            if lp.consumed_by:
                raise ScheduleError(f"loop '{lp.name}' was already {lp.consumed_by}; use the loops that replaced it")

    # -- primitives --------------------------------------------------------------------------
    def split(self, loop: Loop, factor: int | Knob) -> tuple[Loop, Loop]:
        self._use(loop)
        if isinstance(factor, Knob):
            if self.knobs.get(factor.name) is not factor:
                raise ScheduleError(f"knob '{factor.name}' belongs to another schedule")
        else:
            factor = _factor(factor, f"split of '{loop.name}': factor")
        loop.consumed_by = "split"
        outer, inner = Loop(loop.stage, loop.name + "o", loop), Loop(loop.stage, loop.name + "i", loop)
        self.actions.append(("split", (loop, factor, outer, inner)))
        return outer, inner

    def tile(self, x: Loop, y: Loop, fx: int, fy: int) -> tuple[Loop, Loop, Loop, Loop]:
        self._use(x, y)
        fx, fy = _factor(fx, f"tile of '{x.name}': factor"), _factor(fy, f"tile of '{y.name}': factor")
        x.consumed_by = y.consumed_by = "tiled"
        res = tuple(Loop(h.stage, h.name + s, h) for h, s in ((x, "o"), (y, "o"), (x, "i"), (y, "i")))
        self.actions.append(("tile", (x, y, fx, fy, res)))
        return res

    def fuse(self, outer: Loop, inner: Loop) -> Loop:
        self._use(outer, inner)
        outer.consumed_by = inner.consumed_by = "fused"
        fused = Loop(outer.stage, f"{outer.name}_{inner.name}", outer)
        self.actions.append(("fuse", (outer, inner, fused)))
        return fused

    def reorder(self, *loops: Loop) -> None:
        self._use(*loops)
        self.actions.append(("reorder", loops))

    def bind(self, loop: Loop, tag: str) -> None:
        self._use(loop)
        if tag not in S.BIND_TAGS:
            raise ScheduleError(f"bind: '{tag}' is not one of {', '.join(S.BIND_TAGS)}")
        self.actions.append(("bind", (loop, tag)))

    def unroll(self, loop: Loop) -> None:
        self._use(loop)
        self.actions.append(("unroll", (loop,)))

    def vectorize(self, loop: Loop) -> None:
        self._use(loop)
        self.actions.append(("vectorize", (loop,)))

    def cache_read(self, tensor: Tensor | str, scope: str, at: Loop, layout: Sequence[int] | None = None,
                   double_buffer: bool = False, stages: int | Knob | None = None, pad: int | None = None,
                   tma: bool = False) -> None:
        """Copy the part of `tensor` read inside `at` to a `scope` buffer first. `layout`
        orders the buffer's dimensions (e.g. (1, 0): the tile transposed); `double_buffer`
        (shared) overlaps loading the next iteration's part with this one's work; `stages`
        (shared, >= 2) keeps that many buffers filled by asynchronous copies (cp.async on
        NVIDIA), the next stages - 1 iterations' parts in flight; `pad` adds elements to each
        row of a shared buffer so that its rows fall in different memory banks. `tma` (with
        `stages`; CUDA on Hopper, the operands of a wgmma) has the tensor memory accelerator
        fill the stages: one thread starts each tile's copy, an mbarrier per stage waits for it."""
        self._use(at)
        if scope not in S.SCOPES:
            raise ScheduleError(f"cache_read: scope '{scope}' is not one of {', '.join(S.SCOPES)}")
        if layout is not None:
            layout = [int(d) for d in layout]
            if sorted(layout) != list(range(len(layout))):
                raise ScheduleError(f"cache_read: layout {layout} is not a permutation of the tensor's dimensions")
        if double_buffer and scope != "shared":
            raise ScheduleError("cache_read: double_buffer needs scope 'shared'")
        if isinstance(stages, Knob):
            if self.knobs.get(stages.name) is not stages:
                raise ScheduleError(f"knob '{stages.name}' belongs to another schedule")
            if min(stages.candidates) < 2 or scope != "shared" or double_buffer:
                raise ScheduleError(f"cache_read: stages knob '{stages.name}' needs candidates >= 2, scope 'shared' "
                                    "and no double_buffer")
        elif stages is not None and (not isinstance(stages, int) or stages < 2 or scope != "shared" or double_buffer):
            raise ScheduleError(f"cache_read: stages={stages!r} needs an int >= 2, scope 'shared' and no "
                                "double_buffer (stages=2 is one)")
        if pad is not None and (not isinstance(pad, int) or pad < 0 or scope != "shared"):
            raise ScheduleError(f"cache_read: pad={pad!r} needs an int >= 0 and scope 'shared'")
        if tma and (stages is None or pad):
            raise ScheduleError("cache_read: tma=True fills the stages of a pipeline: give stages, and no pad "
                                "(the copies swizzle instead)")
        self.actions.append(("cache_read", (tensor, scope, at, layout, bool(double_buffer), stages, pad, bool(tma))))

    def tensorize(self, i: Loop, j: Loop, k: Loop, intrinsic: str | None = None) -> None:
        """Computes the innermost (i, j, k) tile of a matmul stage with one warp-level
        matrix instruction: mma.m16n8k16 for f16/bf16 tensors (tile 16 x 8 x 16), mma.m16n8k8
        for f32 tensors multiplied at tf32 (16 x 8 x 8). The warp's 32 lanes become a loop
        bound to thread.x (leave thread.x free); A and B must be cached in shared memory; the
        results stay in registers until the tile's outputs are written. `intrinsic` follows
        from the stage's types; name it for a stage given by name."""
        self._use(i, j, k)
        if intrinsic is None:
            if not isinstance(i.stage, Tensor):
                raise ScheduleError("tensorize: name the intrinsic for a stage given by name")
            intrinsic = tensor_intrinsic(i.stage)
        if intrinsic not in S.TENSOR_INTRINSICS:
            raise ScheduleError(f"tensorize: intrinsic '{intrinsic}' is not one of {', '.join(S.TENSOR_INTRINSICS)}")
        self.actions.append(("tensorize", (i, j, k, intrinsic)))

    def cache_write(self, scope: str, at: Loop) -> None:
        self._use(at)
        if scope != "local":
            raise ScheduleError(f"cache_write: scope '{scope}' is not supported; use 'local'")
        self.actions.append(("cache_write", (scope, at)))

    def compute_at(self, producer: Tensor | str, at: Loop, double_buffer: bool = False, pad: int | None = None
                   ) -> None:
        """Computes stage `producer` inside loop `at` of its consumer, for the region read
        there. `double_buffer` and `pad` as in cache_read: two shared buffers, the next
        iteration's elements computed into registers before the inner loops and stored after
        them (an implicit GEMM: a matmul's B = im2col(X) gathered tile by tile)."""
        self._use(at)
        if pad is not None and (not isinstance(pad, int) or pad < 0 or not double_buffer):
            raise ScheduleError(f"compute_at: pad={pad!r} needs an int >= 0 and double_buffer")
        self.actions.append(("compute_at", (producer, at, bool(double_buffer), pad)))

    # -- IR -------------------------------------------------------------------------------------
    def module(self) -> ModuleOp:
        """The payload func and the sched.schedule, as one module."""
        module, _, names = module_of(self.outputs)
        module.body.block.add_op(self.schedule_op(names))
        return module

    def schedule_op(self, names: dict[Tensor, str]) -> S.ScheduleOp:
        ops = []
        handles: dict[int, SSAValue] = {}
        knobs: dict[str, SSAValue] = {}

        def stage_name(stage: Tensor | str) -> str:
            if isinstance(stage, str):
                return stage
            if stage not in names:
                raise ScheduleError(f"{stage!r} is not part of the scheduled computation")
            return names[stage]

        def handle(lp: Loop) -> SSAValue:
            if id(lp) not in handles:
                op = S.LoopOp(stage_name(lp.stage), lp.name)
                op.result.name_hint = lp.name
                ops.append(op)
                handles[id(lp)] = op.result
            return handles[id(lp)]

        def results(op, loops) -> None:
            ops.append(op)
            for r, lp in zip(op.results, loops):
                r.name_hint = lp.name
                handles[id(lp)] = r

        for kind, args in self.actions:
            if kind == "knob":
                op = S.KnobOp(args[0].name, args[0].candidates, args[0].derive, args[0].extent)
                op.result.name_hint = args[0].name
                knobs[args[0].name] = op.result
                ops.append(op)
            elif kind == "split":
                loop, factor, outer, inner = args
                f = knobs[factor.name] if isinstance(factor, Knob) else factor
                results(S.SplitOp(handle(loop), f), (outer, inner))
            elif kind == "tile":
                x, y, fx, fy, res = args
                results(S.TileOp(handle(x), handle(y), fx, fy), res)
            elif kind == "fuse":
                outer, inner, fused = args
                results(S.FuseOp(handle(outer), handle(inner)), (fused,))
            elif kind == "reorder":
                ops.append(S.ReorderOp([handle(lp) for lp in args]))
            elif kind == "bind":
                ops.append(S.BindOp(handle(args[0]), args[1]))
            elif kind == "unroll":
                ops.append(S.UnrollOp(handle(args[0])))
            elif kind == "vectorize":
                ops.append(S.VectorizeOp(handle(args[0])))
            elif kind == "cache_read":
                tensor, scope, at, layout, double_buffer, stages, pad, tma = args
                stages = knobs[stages.name] if isinstance(stages, Knob) else stages
                ops.append(S.CacheReadOp(stage_name(tensor), scope, handle(at), layout, double_buffer, stages, pad,
                                         tma))
            elif kind == "tensorize":
                i, j, k, intrinsic = args
                ops.append(S.TensorizeOp(handle(i), handle(j), handle(k), intrinsic))
            elif kind == "cache_write":
                ops.append(S.CacheWriteOp(args[0], handle(args[1])))
            elif kind == "compute_at":
                producer, at, double_buffer, pad = args
                ops.append(S.ComputeAtOp(stage_name(producer), handle(at), double_buffer, pad))
        return S.ScheduleOp(ops)

    def ir(self) -> str:
        """Payload and schedule as text (parseable by sched-opt)."""
        return str(self.module())
