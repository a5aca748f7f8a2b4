"""apply-schedule, phase 2: the `sched` ops interpreted on the stage models, and the
scheduled models checked (bindings, caches, legality)."""

from __future__ import annotations

import math

from xdsl.ir import Operation, SSAValue

from sched_dsl.dialects import sched as S
from sched_dsl.lowering.apply_schedule.model import (
    DEFAULT_THREADS,
    SEQUENTIAL_THREADS,
    Axis,
    Cache,
    Fuse,
    Split,
    Stage,
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
        stage.caches.append(Cache("read", ref, op.scope.data, at, op, layout=layout,
                                  double_buffer=op.double_buffer is not None))

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
        if producer.attached_to is not None:
            raise fail(op, f"stage '{pname}' is already computed at stage '{producer.attached_to.name}'")
        producer.attached_to = stage
        stage.caches.append(Cache("compute", producer.output, "", at, op, producer))


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
    outer, inner = interp.split(stage, fused, DEFAULT_THREADS, None)
    outer.bind, inner.bind = "block.x", "thread.x"
    if stage.epilogue is not None and any(a.reduce for a in stage.leaves):
        # a fused reduction accumulates in a register and runs its epilogue once, at the write-back
        stage.caches.append(Cache("write", stage.output, "local", inner, None))


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
        if c.double_buffer and (c.at.bind or not threads or threads[-1] > q):
            raise fail(c.op, f"stage '{stage.name}': double_buffer of '{c.memref.name_hint}': loop '{c.at.name}' "
                       "must be a sequential loop inside all of the block's thread loops")
        if blocks and q < blocks[-1]:
            # block loops become the launch grid: nothing can run between them
            what = {"read": f"a {c.scope} buffer", "write": "a cache_write", "compute": "compute_at"}[c.kind]
            raise fail(c.op, f"stage '{stage.name}': {what} at '{c.at.name}' must be inside all block loops")
