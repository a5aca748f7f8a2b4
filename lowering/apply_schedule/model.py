"""apply-schedule, phase 1: each stage's loop nest read into a small model (root axes,
splits, fuses, caches, the innermost body)."""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import StringAttr
from xdsl.ir import Operation, SSAValue
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.diagnostics import where
from sched_dsl.dialects.tensorcore import WGMMA_SHAPES
from sched_dsl.lowering.emit import const_value

# the default schedule: one output per thread, DEFAULT_THREADS per block; a stage of at least
# WIDE_FROM outputs takes WIDE_THREADS per block, and one of at least ITEMS_FROM outputs
# ITEMS per thread (consecutive blocks of threads), so that large copies and casts are not
# limited by how fast the GPU starts small blocks
DEFAULT_THREADS = 64
WIDE_THREADS, WIDE_FROM = 256, 256 * 132
ITEMS, ITEMS_FROM = 4, 4 * 4 * 256 * 132
# a stage with a sequential loop runs in one block (its steps wait for each other with
# barriers), so its default schedule gives that block more threads
SEQUENTIAL_THREADS = 256


class ScheduleError(DiagnosticException):
    """A schedule that cannot be applied to its payload."""


def fail(op: Operation | None, msg: str) -> ScheduleError:
    """`file:line:col: error: sched.op: msg` (location and op as far as known)."""
    if op is None:
        return ScheduleError(f"apply-schedule: {msg}")
    loc = where(op)
    return ScheduleError(f"{loc}{'error: ' if loc else ''}{op.name}: {msg}")


# ---- the model ---------------------------------------------------------------------------


@dataclass(eq=False)
class Axis:
    name: str
    extent: int
    reduce: bool
    bind: str | None = None
    unroll: bool = False
    vectorize: bool = False
    sequential: bool = False  # iterations run in order, each seeing what the last wrote
    marked_by: dict[str, Operation] = field(default_factory=dict)  # "bind"/"vectorize" -> its sched op


@dataclass(eq=False)
class Split:
    parent: Axis
    outer: Axis
    inner: Axis
    factor: int


@dataclass(eq=False)
class Fuse:
    outer: Axis
    inner: Axis
    fused: Axis


@dataclass
class Cache:
    """A buffer filled at the start of each iteration of `at`: a cached input, a computed
    producer stage (compute_at), or the accumulator of the output (cache_write)."""

    kind: str  # "read", "compute", "write"
    memref: SSAValue
    scope: str
    at: Axis
    op: Operation
    producer: Stage | None = None
    layout: list[int] | None = None  # buffer dimension d holds dimension layout[d] of memref
    double_buffer: bool = False
    stages: int | None = None  # a pipeline of this many shared buffers filled by asynchronous copies
    pad: int = 0  # elements added to each row (last dimension) of a shared buffer
    swizzled: bool = False  # a wgmma operand: its copies write tc.swizzled_position's layout
    tma: bool = False  # its stages filled by the tensor memory accelerator (tc.tma_load), not per thread


@dataclass(eq=False)
class Tensorize:
    """A matmul stage's innermost (m, n, k) tile computed by one warp-level mma: `lane` is
    the warp's lane loop (thread.x) and `a`, `b` the loads of the operands in the body;
    `start` is the position of the first leaf of the warp's tile loops (set by check)."""

    m: Axis
    n: Axis
    k: Axis
    intrinsic: str  # "m16n8k16", "m16n8k8" or a wgmma's "m64nNk16"
    a: memref.LoadOp
    b: memref.LoadOp
    op: Operation
    lane: Axis | None = None
    start: int = 0

    @property
    def wide(self) -> bool:
        """A warpgroup's mma (wgmma): 128 threads, operands read from swizzled shared buffers."""
        return self.intrinsic in WGMMA_SHAPES


@dataclass(eq=False)
class Stage:
    name: str
    loop: scf.ForOp  # outermost loop of the nest as tensorop-to-loops wrote it
    roots: list[Axis]
    root_ivs: list[SSAValue]
    body: list[Operation]
    leaves: list[Axis] = field(default_factory=list)
    relations: list[Split | Fuse] = field(default_factory=list)
    caches: list[Cache] = field(default_factory=list)
    scheduled: bool = False
    attached_to: Stage | None = None
    compute: str | None = None  # the operator's compute mode ("tf32")
    tensorize: Tensorize | None = None

    def __post_init__(self):
        self.leaves = list(self.roots)

    @property
    def output_store(self) -> memref.StoreOp:
        # a scatter may store under a condition, inside an scf.if
        stores = [op for b in self.body for op in b.walk() if isinstance(op, memref.StoreOp)]
        assert len(stores) == 1, self.name
        return stores[0]

    @property
    def output(self) -> SSAValue:
        return self.output_store.memref

    @property
    def epilogue(self) -> scf.IfOp | None:
        """The fused epilogue (tensorop-fuse) at the last reduction iteration: an scf.if whose
        then-branch maps the accumulated value (its else-branch's result) to the stored one."""
        v = self.output_store.value
        if isinstance(v.owner, arith.TruncFOp):  # an f16/bf16 output: the value rounded at the store
            v = v.owner.input
        if isinstance(v.owner, scf.IfOp) and "sched.epilogue" in v.owner.attributes:
            return v.owner
        return None

    @property
    def init_select(self) -> arith.SelectOp | None:
        for op in self.body:
            if isinstance(op, arith.SelectOp) and "sched.init" in op.attributes:
                return op
        return None

    def leaf(self, axis: Axis, op: Operation) -> int:
        if axis not in self.leaves:
            raise fail(op, f"loop '{axis.name}' of stage '{self.name}' was already split or fused")
        return self.leaves.index(axis)

    @property
    def sequential(self) -> Axis | None:
        return next((a for a in self.roots if a.sequential), None)

    def stores_at_loop_indices(self) -> bool:
        """Whether the output is written at the loop variables themselves (not a scatter)."""
        return all(v in self.root_ivs for v in self.output_store.indices)

    def root_of(self, axis: Axis) -> Axis | None:
        """The root axis `axis` was split from (itself for a root), None through a fuse."""
        parents = {r.outer: r.parent for r in self.relations if isinstance(r, Split)}
        parents.update({r.inner: r.parent for r in self.relations if isinstance(r, Split)})
        fused = {r.fused for r in self.relations if isinstance(r, Fuse)}
        while axis in parents:
            axis = parents[axis]
        return None if axis in fused else axis

    def thread_leaves(self) -> list[Axis]:
        return [a for a in self.leaves if a.bind and a.bind.startswith("thread")]

    def reads(self, ref: SSAValue) -> list[memref.LoadOp]:
        return [op for b in self.body for op in b.walk() if isinstance(op, memref.LoadOp) and op.memref == ref]


def read_stage(loop: scf.ForOp) -> Stage:
    """The model of a perfect nest written by tensorop-to-loops."""
    name = loop.attributes["sched.stage"]
    if not isinstance(name, StringAttr):
        raise fail(loop, f"sched.stage must be a string, not {name}")
    name = name.data
    roots, ivs = [], []
    current = loop
    while True:
        lb, ub = const_value(current.lb), const_value(current.ub)
        if lb != 0 or not isinstance(ub, int) or ub < 1 or const_value(current.step) != 1:
            raise fail(current, f"stage '{name}': loops must run from 0 by 1 to a constant of at least 1")
        axis = current.attributes.get("sched.axis")
        if not isinstance(axis, StringAttr) or not SSAValue.is_valid_name(axis.data) or current.iter_args:
            raise fail(current, f"stage '{name}': every loop of the nest needs a sched.axis name (letters, "
                       "digits, _ . $ -) and no loop-carried values")
        roots.append(Axis(axis.data, ub, "sched.reduce" in current.attributes,
                          sequential="sched.sequential" in current.attributes))
        ivs.append(current.body.block.args[0])
        ops = [op for op in current.body.block.ops if not isinstance(op, scf.YieldOp)]
        inner = [op for op in ops if isinstance(op, scf.ForOp)]
        if not inner:
            # a scatter may store under a condition, inside an scf.if
            stores = sum(isinstance(o, memref.StoreOp) for op in ops for o in op.walk())
            if stores != 1:
                raise fail(current, f"stage '{name}': the innermost body must store the stage's output once, "
                           f"not {stores} times")
            compute = loop.attributes.get("sched.compute")
            return Stage(name, loop, roots, ivs, ops, compute=compute.data if isinstance(compute, StringAttr) else None)
        if len(inner) != 1 or any(not isinstance(op, (scf.ForOp, arith.ConstantOp)) for op in ops):
            raise fail(current, f"stage '{name}': the nest is not perfect")
        current = inner[0]
