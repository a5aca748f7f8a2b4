"""apply-schedule, phase 2: the `sched` ops interpreted on the stage models, and the
scheduled models checked (bindings, caches, legality)."""

from __future__ import annotations

import math

from xdsl.dialects import memref
from xdsl.ir import Operation, SSAValue

from sched_dsl.dialects import sched as S
from sched_dsl.dialects import tensorop as T
from sched_dsl.dialects.tensorcore import LANES, WARPGROUP, WGMMA_SHAPES, intrinsic_for
from sched_dsl.lowering.emit import is_half
from sched_dsl.lowering.apply_schedule.model import (
    DEFAULT_THREADS,
    ITEMS,
    ITEMS_FROM,
    SEQUENTIAL_THREADS,
    WIDE_FROM,
    WIDE_THREADS,
    Axis,
    Cache,
    Fuse,
    Split,
    Stage,
    Tensorize,
    fail,
)

# ---- interpreting the schedule -----------------------------------------------------------


class Interpreter:
    def __init__(self, stages: dict[str, Stage], buffers: dict[str, SSAValue], config: dict[str, int]):
        self.stages, self.buffers, self.config = stages, buffers, config
        self.handles: dict[SSAValue, tuple[Stage, Axis]] = {}
        self.knobs: dict[SSAValue, int] = {}
        self.knob_names: set[str] = set()

    def run(self, schedule: S.ScheduleOp) -> None:
        for op in schedule.body.ops:
            getattr(self, "op_" + op.name.split(".")[1])(op)
        unknown = set(self.config) - self.knob_names
        if unknown:
            raise fail(None, f"config names unknown knob(s) {sorted(unknown)}; the schedule has {sorted(self.knob_names)}")

    def get(self, handle: SSAValue, op: Operation) -> tuple[Stage, Axis]:
        stage, axis = self.handles[handle]
        stage.leaf(axis, op)
        if axis.sequential:
            raise fail(op, f"loop '{axis.name}' of stage '{stage.name}' is sequential (each iteration "
                       "reads what the earlier ones wrote): it stays the outermost loop, unsplit and unbound")
        return stage, axis

    def no_sequential(self, stage: Stage, op: Operation, what: str) -> None:
        if stage.sequential is not None:
            raise fail(op, f"stage '{stage.name}' has sequential loop '{stage.sequential.name}': {what} "
                       "would keep values across its steps that other threads write")

    def new(self, handle: SSAValue, stage: Stage, axis: Axis) -> None:
        if handle.name_hint:
            axis.name = handle.name_hint
        self.handles[handle] = (stage, axis)

    def op_loop(self, op: S.LoopOp) -> None:
        sname, aname = op.stage.data, op.axis.data
        if sname not in self.stages:
            raise fail(op, f"no stage '{sname}'; stages are {', '.join(self.stages)}")
        stage = self.stages[sname]
        matches = [a for a in stage.roots if a.name == aname]
        if not matches:
            raise fail(op, f"stage '{sname}' has no loop '{aname}'; its loops are "
                       f"{', '.join(a.name for a in stage.roots)}")
        stage.scheduled = True
        self.handles[op.result] = (stage, matches[0])

    def op_knob(self, op: S.KnobOp) -> None:
        name, cands = op.knob_name.data, list(op.candidates.get_values())
        if name in self.knob_names:
            raise fail(op, f"knob '{name}' is defined twice")
        self.knob_names.add(name)
        value = self.config.get(name, cands[0])
        if value not in cands:
            raise fail(op, f"knob '{name}' = {value} is not one of its candidates {cands}")
        self.knobs[op.result] = value

    def split(self, stage: Stage, axis: Axis, factor: int, op: Operation) -> tuple[Axis, Axis]:
        pos = stage.leaf(axis, op)
        inner = Axis(f"{axis.name}.i", min(factor, axis.extent), axis.reduce)
        outer = Axis(f"{axis.name}.o", math.ceil(axis.extent / inner.extent), axis.reduce)
        stage.leaves[pos:pos + 1] = [outer, inner]
        stage.relations.append(Split(axis, outer, inner, inner.extent))
        return outer, inner

    def op_split(self, op: S.SplitOp) -> None:
        stage, axis = self.get(op.loop, op)
        factor = self.knobs[op.knob] if op.knob is not None else op.factor.value.data
        outer, inner = self.split(stage, axis, factor, op)
        self.new(op.outer, stage, outer)
        self.new(op.inner, stage, inner)

    def op_tile(self, op: S.TileOp) -> None:
        stage, x = self.get(op.x, op)
        _, y = self.get(op.y, op)
        fx, fy = op.factors.get_values()
        xo, xi = self.split(stage, x, fx, op)
        yo, yi = self.split(stage, y, fy, op)
        self.reorder(stage, [xo, yo, xi, yi], op)
        for h, a in zip(op.results, (xo, yo, xi, yi)):
            self.new(h, stage, a)

    def op_fuse(self, op: S.FuseOp) -> None:
        stage, outer = self.get(op.outer, op)
        _, inner = self.get(op.inner, op)
        pos = stage.leaves.index(outer)
        if pos + 1 >= len(stage.leaves) or stage.leaves[pos + 1] is not inner:
            raise fail(op, f"loops '{outer.name}' and '{inner.name}' are not adjacent (outer, then inner)")
        if outer.reduce != inner.reduce:
            raise fail(op, f"cannot fuse spatial and reduction loops '{outer.name}', '{inner.name}'")
        fused = Axis(f"{outer.name}_{inner.name}", outer.extent * inner.extent, outer.reduce)
        stage.leaves[pos:pos + 2] = [fused]
        stage.relations.append(Fuse(outer, inner, fused))
        self.new(op.fused, stage, fused)

    def reorder(self, stage: Stage, axes: list[Axis], op: Operation) -> None:
        slots = sorted(stage.leaf(a, op) for a in axes)
        for slot, a in zip(slots, axes):
            stage.leaves[slot] = a

    def op_reorder(self, op: S.ReorderOp) -> None:
        pairs = [self.get(h, op) for h in op.loops]
        self.reorder(pairs[0][0], [a for _, a in pairs], op)

    def op_bind(self, op: S.BindOp) -> None:
        stage, axis = self.get(op.loop, op)
        tag = op.tag.data
        if axis.reduce:
            raise fail(op, f"cannot bind reduction loop '{axis.name}' to {tag}: "
                       "its iterations update the same outputs")
        for other in stage.leaves:
            if other.bind == tag:
                raise fail(op, f"{tag} is already bound to loop '{other.name}' of stage '{stage.name}'")
        axis.bind = tag
        axis.marked_by["bind"] = op

    def op_unroll(self, op: S.UnrollOp) -> None:
        self.get(op.loop, op)[1].unroll = True

    def op_vectorize(self, op: S.VectorizeOp) -> None:
        axis = self.get(op.loop, op)[1]
        axis.vectorize = True
        axis.marked_by["vectorize"] = op

    def tensor(self, name: str, op: Operation) -> SSAValue:
        if name not in self.buffers:
            raise fail(op, f"no tensor '{name}'; tensors are {', '.join(self.buffers)}")
        return self.buffers[name]

    def op_cache_read(self, op: S.CacheReadOp) -> None:
        stage, at = self.get(op.at, op)
        ref = self.tensor(op.tensor.data, op)
        self.no_sequential(stage, op, "cache_read")
        if ref == stage.output:
            # a copy of the output read at `at` would take the updates and never write them back
            raise fail(op, f"stage '{stage.name}' cannot cache_read its own output '{op.tensor.data}'; "
                       "cache_write keeps the output in a local buffer and writes it back")
        if not stage.reads(ref):
            raise fail(op, f"stage '{stage.name}' does not read '{op.tensor.data}'")
        if any(c.memref == ref and c.kind != "write" for c in stage.caches):
            raise fail(op, f"'{op.tensor.data}' is already cached in stage '{stage.name}'")
        layout = op.layout_order()
        rank = len(ref.type.get_shape())
        if layout is not None and len(layout) != rank:
            raise fail(op, f"layout {layout} of '{op.tensor.data}' does not have its {rank} dimensions")
        stages = op.stage_count() if op.stages_knob is None else self.knobs[op.stages_knob]
        if stages is not None and stages < 2:
            raise fail(op, f"cache_read of '{op.tensor.data}': stages = {stages}; a pipeline needs at least 2")
        stage.caches.append(Cache("read", ref, op.scope.data, at, op, layout=layout,
                                  double_buffer=op.double_buffer is not None, stages=stages, pad=op.padding(),
                                  tma=op.tma is not None))

    def op_tensorize(self, op: S.TensorizeOp) -> None:
        stage, m = self.get(op.i, op)
        _, n = self.get(op.j, op)
        _, k = self.get(op.k, op)
        if stage.tensorize is not None:
            raise fail(op, f"stage '{stage.name}' is already tensorized")
        names = [a.name for a in stage.roots]
        batch = names[:-3]
        if (names[-3:] != ["i", "j", "k"] or not stage.roots[-1].reduce
                or batch != [f"b{d}" for d in range(len(batch))]):
            raise fail(op, f"stage '{stage.name}' is not a matmul (loops i, j and reduction k, after batch loops "
                       "b0, b1, ...); tensor cores compute matmul tiles")
        roots = dict(zip(names, stage.roots))
        for axis, want in ((m, "i"), (n, "j"), (k, "k")):
            if stage.root_of(axis) is not roots[want]:
                raise fail(op, f"stage '{stage.name}': loop '{axis.name}' must be split from loop '{want}' "
                           "(the tile's loops are i, j, k in this order, without fuses)")
        iv = dict(zip(names, stage.root_ivs))
        # A[.., i, k] and B[.., k, j]: the batch indices (or none, for a broadcast operand) before
        loads = {tuple(ld.indices[-2:]): ld for b in stage.body for ld in b.walk() if isinstance(ld, memref.LoadOp)}
        a, b = loads.get((iv["i"], iv["k"])), loads.get((iv["k"], iv["j"]))
        if a is None or b is None:
            raise fail(op, f"stage '{stage.name}' does not read A[i, k] and B[k, j]")
        intrinsic = op.intrinsic.data.split(".")[1]
        element = a.memref.type.element_type
        want = "m16n8k16" if intrinsic in WGMMA_SHAPES else intrinsic
        if intrinsic_for(element) != want or (intrinsic == "m16n8k8" and stage.compute not in T.COMPUTE_MODES):
            what = f"{element} at {stage.compute}" if stage.compute else str(element)
            raise fail(op, f"stage '{stage.name}': {op.intrinsic.data} does not take {what} operands; "
                       "mma.m16n8k16 and wgmma take f16/bf16, mma.m16n8k8 f32 matmuls at precision tf32 or 3xtf32")
        for axis, extent, what in zip((m, n, k), op.shape(), "MNK"):
            if axis.extent != extent:
                raise fail(op, f"stage '{stage.name}': loop '{axis.name}' has {axis.extent} iterations; "
                           f"{op.intrinsic.data} takes tiles of {what} = {extent}")
        stage.tensorize = Tensorize(m, n, k, intrinsic, a, b, op)

    def op_cache_write(self, op: S.CacheWriteOp) -> None:
        stage, at = self.get(op.at, op)
        if any(c.kind == "write" for c in stage.caches):
            raise fail(op, f"stage '{stage.name}' already has a cache_write")
        self.no_sequential(stage, op, "cache_write")
        if not stage.stores_at_loop_indices():
            raise fail(op, f"stage '{stage.name}' writes its output at computed indices (a scatter); "
                       "cache_write cannot keep it in registers")
        stage.caches.append(Cache("write", stage.output, op.scope.data, at, op))

    def op_compute_at(self, op: S.ComputeAtOp) -> None:
        stage, at = self.get(op.at, op)
        pname = op.producer.data
        if pname not in self.stages:
            raise fail(op, f"no stage '{pname}'")
        producer = self.stages[pname]
        self.no_sequential(stage, op, "compute_at")
        self.no_sequential(producer, op, "computing it at another stage")
        if not stage.reads(producer.output):
            raise fail(op, f"stage '{stage.name}' does not read stage '{pname}'")
        if is_half(producer.output.type.element_type) and producer.init_select is not None:
            raise fail(op, f"stage '{pname}' sums into a {producer.output.type.element_type} output, which it "
                       "does in an f32 register of its own nest: it cannot be computed at another stage")
        if producer.attached_to is not None:
            raise fail(op, f"stage '{pname}' is already computed at stage '{producer.attached_to.name}'")
        producer.attached_to = stage
        double = op.double_buffer is not None
        pad = op.pad.value.data if op.pad is not None else 0
        stage.caches.append(Cache("compute", producer.output, "shared" if double else "", at, op, producer,
                                  double_buffer=double, pad=pad))


# ---- checking the scheduled model ----------------------------------------------------------


def default_schedule(stage: Stage) -> None:
    spatial = [a for a in stage.leaves if not a.reduce]
    if not spatial:
        return
    fused = spatial[0]
    interp = Interpreter({}, {}, {})
    for nxt in spatial[1:]:
        merged = Axis(f"{fused.name}_{nxt.name}", fused.extent * nxt.extent, False)
        pos = stage.leaves.index(fused)
        stage.leaves[pos:pos + 2] = [merged]
        stage.relations.append(Fuse(fused, nxt, merged))
        fused = merged
    if stage.sequential is not None:
        # one block: its threads share the parallel loops, the sequential loop outside them
        _, inner = interp.split(stage, fused, SEQUENTIAL_THREADS, None)
        inner.bind = "thread.x"
        return
    outer, inner = interp.split(stage, fused, WIDE_THREADS if fused.extent >= WIDE_FROM else DEFAULT_THREADS, None)
    if fused.extent >= ITEMS_FROM and not any(a.reduce for a in stage.leaves):
        outer, items = interp.split(stage, outer, ITEMS, None)
        interp.reorder(stage, [outer, inner, items], None)
        items.unroll = True
    outer.bind, inner.bind = "block.x", "thread.x"
    if stage.epilogue is not None and any(a.reduce for a in stage.leaves):
        # a fused reduction accumulates in a register and runs its epilogue once, at the write-back
        stage.caches.append(Cache("write", stage.output, "local", inner, None))


MAX_THREADS = 1024  # threads a block may have on the GPUs with tensor cores


def place_tensorize(stage: Stage) -> None:
    """Checks a tensorized stage and lays out its warp: the tile's three loops innermost
    (m, n, k), the warp's other tile loops (spatial, from i or j, unbound) just outside
    them, every split of i, j, k dividing, A and B in shared memory; then the lane loop
    (32, thread.x) inside all other bound loops, with the register accumulator at it."""
    tz = stage.tensorize
    if tz is None:
        return
    op, leaves = tz.op, stage.leaves
    if set(leaves[-3:]) != {tz.m, tz.n, tz.k}:
        raise fail(op, f"stage '{stage.name}': the tensorized loops '{tz.m.name}', '{tz.n.name}', '{tz.k.name}' "
                   f"must be the three innermost; order is {', '.join(a.name for a in leaves)}")
    leaves[-3:] = [tz.m, tz.n, tz.k]
    for a in (tz.m, tz.n, tz.k):
        if a.bind or a.vectorize:
            raise fail(op, f"stage '{stage.name}': tensorized loop '{a.name}' cannot be bound or vectorized")
    for r in stage.relations:  # a spatial remainder is computed on zeros and not written back
        if isinstance(r, Split) and r.parent.reduce and r.outer.extent * r.inner.extent != r.parent.extent:
            raise fail(op, f"stage '{stage.name}': tensorize needs reduction splits that divide; "
                       f"'{r.parent.name}' ({r.parent.extent}) split by {r.inner.extent} leaves a remainder")
    # the warp's tile loops: the unbound loops inside every bound loop and every cache's loop
    # (written unrolled, the k steps outermost, each step's fragments loaded during the last)
    cache_loops = {c.at for c in stage.caches}
    pos = len(leaves) - 3
    while pos > 0 and not leaves[pos - 1].bind and leaves[pos - 1] not in cache_loops:
        pos -= 1
    for a in leaves[pos:-3]:
        if stage.root_of(a) is None:
            raise fail(op, f"stage '{stage.name}': loop '{a.name}' of the warp's tile fuses loops; split i, j "
                       "and k only")
    bound = [k for k, a in enumerate(leaves) if a.bind]
    if bound and bound[-1] > pos:
        raise fail(op, f"stage '{stage.name}': bound loop '{leaves[bound[-1]].name}' lies inside the warp's tile")
    taken = [a for a in leaves if a.bind == "thread.x"]
    if taken:
        raise fail(taken[0].marked_by.get("bind"), f"stage '{stage.name}': thread.x is the warp's lanes in a "
                   f"tensorized stage; bind loop '{taken[0].name}' to thread.y or thread.z")
    group = WARPGROUP if tz.wide else LANES
    warps = 1
    for a in stage.thread_leaves():
        warps *= a.extent
    if warps * group > MAX_THREADS:
        what = f"warpgroups of {WARPGROUP} threads" if tz.wide else f"warps of {LANES} lanes"
        raise fail(op, f"stage '{stage.name}': {warps} {what} exceed {MAX_THREADS} threads per block")
    for ld, what in ((tz.a, "A"), (tz.b, "B")):
        # a shared copy, or a producer computed into two shared buffers (an implicit GEMM)
        cached = [c for c in stage.caches if c.kind in ("read", "compute") and c.memref == ld.memref]
        if not cached or cached[0].scope != "shared" or cached[0].layout not in (None, [0, 1]):
            raise fail(op, f"stage '{stage.name}': tensorize reads its operands from shared memory: cache "
                       f"'{ld.memref.name_hint}' ({what}) with cache_read(..., 'shared') and no layout, or "
                       "compute_at(..., double_buffer=True)")
        if leaves.index(cached[0].at) >= pos:
            raise fail(op, f"stage '{stage.name}': the shared tile of '{ld.memref.name_hint}' must be read "
                       "outside the warp's tile loops")
        if tz.wide:
            mark_swizzled(stage, cached[0], what)
    # the lanes: a thread loop inside every other bound loop, the warp's registers at it
    lane = Axis(f"{stage.name}_lane", group, False, "thread.x")
    at = bound[-1] + 1 if bound else 0
    leaves.insert(at, lane)
    tz.lane, tz.start = lane, pos + 1
    writes = [c for c in stage.caches if c.kind == "write"]
    if writes and writes[0].at not in leaves[max(at - 1, 0):at + 1]:
        raise fail(writes[0].op, f"stage '{stage.name}': a tensorized stage keeps its results in registers at "
                   "the innermost bound loop; put cache_write there or leave it out")
    if writes:
        writes[0].at = lane
    else:
        stage.caches.append(Cache("write", stage.output, "local", lane, None))


def mark_swizzled(stage: Stage, cache: Cache, what: str) -> None:
    """A wgmma operand: a pipelined shared copy (cache_read with stages) without pad, of whole
    swizzled spans (its tile's columns a multiple of 64 elements, rows of 8); marks it
    swizzled (its copies write tc.swizzled_position's layout)."""
    op = stage.tensorize.op
    if cache.kind != "read" or not cache.stages or cache.stages < 3 or cache.pad:
        raise fail(op, f"stage '{stage.name}': a wgmma reads {what} from a pipelined shared copy: cache_read "
                   f"'{cache.memref.name_hint}' with stages >= 3 (one stage's wgmmas run on while the next "
                   "copies) and no pad")
    cache.swizzled = True


def check_tma(stage: Stage) -> None:
    """TMA copies (cache_read ... tma): the wgmma operands of a tensorized stage, unpermuted
    tiles whose leading dims hold one element, of a tensor whose rows are whole 16 bytes; the
    other pipelined caches at their loop copied by TMA too (one kind of wait a stage)."""
    tz = stage.tensorize
    for cache in stage.caches:
        if not cache.tma:
            continue
        name = cache.memref.name_hint
        if tz is None or not tz.wide or cache.memref not in (tz.a.memref, tz.b.memref):
            raise fail(cache.op, f"stage '{stage.name}': TMA copies of '{name}' fill the operands of a wgmma "
                       "(tensorize with a wgmma intrinsic)")
        if cache.layout is not None and cache.layout != sorted(cache.layout):
            raise fail(cache.op, f"stage '{stage.name}': TMA copies '{name}' as it lies; leave out layout")
        if cache.memref.type.get_shape()[-1] % 8:
            raise fail(cache.op, f"stage '{stage.name}': TMA reads rows of whole 16 bytes; '{name}' has rows of "
                       f"{cache.memref.type.get_shape()[-1]} elements")
        mixed = [c for c in stage.caches if c.at is cache.at and c.stages and not c.tma]
        if mixed:
            raise fail(mixed[0].op, f"stage '{stage.name}': '{mixed[0].memref.name_hint}' is pipelined at the "
                       f"same loop as '{name}', which TMA copies: give it tma too")


def f32_accumulator(stage: Stage) -> None:
    """A reduction into an f16/bf16 output sums in f32: where the schedule keeps no register
    accumulator (cache_write local), one goes at the innermost spatial loop outside every
    reduction loop and inside every bound loop (at a loop of one iteration put around the
    nest when a reduction loop is outermost), so the sum is rounded to the output type once."""
    if not is_half(stage.output.type.element_type) or stage.init_select is None or stage.attached_to is not None:
        return
    if any(c.kind == "write" for c in stage.caches):
        return
    leaves = stage.leaves
    first_reduce = next(k for k, a in enumerate(leaves) if a.reduce)
    bound = [k for k, a in enumerate(leaves) if a.bind]
    if bound and bound[-1] > first_reduce:
        a = leaves[bound[-1]]
        raise fail(a.marked_by.get("bind"), f"stage '{stage.name}' sums into a {stage.output.type.element_type} "
                   f"output: bound loop '{a.name}' lies inside reduction loop '{leaves[first_reduce].name}', so no "
                   "f32 register can hold the sum; keep reduction loops inside the bound loops")
    if first_reduce == 0:  # a loop of one iteration around the nest holds the register
        leaves.insert(0, Axis(f"{stage.name}_acc", 1, False))
        first_reduce = 1
    stage.caches.append(Cache("write", stage.output, "local", leaves[first_reduce - 1], None))


def hoist_block_loops(stage: Stage) -> None:
    """Moves the loops bound to blocks outermost, keeping their order and that of the others,
    as TVM does (`io, ii, jo, ji` with io, jo on blocks runs as `io, jo, ii, ji`). This keeps
    the result: a block loop is spatial (bind refuses reduction loops), so its iterations
    write disjoint outputs, and moving it out of a reduction loop leaves the order of each
    output's reduction steps as it was. A sequential loop is never crossed: a stage with one
    has no block loops (check refuses them)."""
    blocks = [a for a in stage.leaves if a.bind and a.bind.startswith("block")]
    stage.leaves[:] = blocks + [a for a in stage.leaves if a not in blocks]


def check(stage: Stage) -> None:
    check_tma(stage)
    leaves = stage.leaves
    for k, a in enumerate(leaves):
        if a.vectorize and a.bind:
            raise fail(a.marked_by.get("vectorize"), f"stage '{stage.name}': cannot vectorize loop '{a.name}': "
                       f"it is bound to {a.bind}")
        if a.vectorize and k != len(leaves) - 1:
            raise fail(a.marked_by.get("vectorize"), f"stage '{stage.name}': cannot vectorize loop '{a.name}': "
                       f"it is not innermost (loop '{leaves[-1].name}' is inside it)")
    blocks = [k for k, a in enumerate(leaves) if a.bind and a.bind.startswith("block")]
    if blocks and stage.sequential is not None:
        raise fail(leaves[blocks[0]].marked_by.get("bind"), f"stage '{stage.name}': its sequential loop "
                   f"'{stage.sequential.name}' runs in one block; bind its other loops to threads, not blocks")
    if blocks:
        hoist_block_loops(stage)
        blocks = list(range(len(blocks)))
    for c in stage.caches:
        if c.at not in leaves:
            raise fail(c.op, f"stage '{stage.name}': loop '{c.at.name}' is split or fused after the cache is "
                       "placed at it; split and fuse first")
        q = leaves.index(c.at)
        if c.kind == "write":
            inside_reduce = [a.name for a in leaves[:q + 1] if a.reduce]
            if inside_reduce:
                raise fail(c.op, f"stage '{stage.name}': cache_write at '{c.at.name}' is inside "
                           f"reduction loop '{inside_reduce[0]}'; put it at a loop outside every reduction loop")
            threads_inside = [a.name for a in leaves[q + 1:] if a.bind]
            if threads_inside:
                raise fail(c.op, f"stage '{stage.name}': cache_write at '{c.at.name}' encloses bound loop "
                           f"'{threads_inside[0]}'; put it at or inside the innermost bound loop")
        threads = [k for k, a in enumerate(leaves) if a.bind and a.bind.startswith("thread")]
        pipes = {x.stages for x in stage.caches if x.at is c.at and x.stages}
        if len(pipes) > 1:
            raise fail(c.op, f"stage '{stage.name}': the pipelined caches at loop '{c.at.name}' have different "
                       f"stage counts {sorted(pipes)}")
        if (c.double_buffer or c.stages) and (c.at.bind or not threads or threads[-1] > q):
            what = "double_buffer" if c.double_buffer else f"stages = {c.stages}"
            raise fail(c.op, f"stage '{stage.name}': {what} of '{c.memref.name_hint}': loop '{c.at.name}' "
                       "must be a sequential loop inside all of the block's thread loops")
        if blocks and q < blocks[-1]:
            # block loops become the launch grid: nothing can run between them
            what = {"read": f"a {c.scope} buffer", "write": "a cache_write", "compute": "compute_at"}[c.kind]
            raise fail(c.op, f"stage '{stage.name}': {what} at '{c.at.name}' must be inside all block loops")
