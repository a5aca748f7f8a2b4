"""tensorop-plan-memory: liveness-based reuse of intermediate device buffers.

Every value that lives in device memory and is made inside the function (the result of a GPU
op, or of a `tensorop.copy {to = "device"}`) gets a place in one arena: the op that makes it
gets `arena_offset = <bytes> : i64`, and the function gets `arena_size = <bytes> : i64`. Two
values share bytes only when their lifetimes do not overlap. Function arguments (the model's
inputs and weights) are not planned: they keep buffers of their own.

A value's lifetime runs from the launch that writes it to the last launch or copy that reads
it (to the end of the function when it is returned). A fused group (tensorop-fuse) is one
kernel, launched where its last member stands, so every member's reads happen there; members
whose result only the group itself reads never reach memory and get no offset, nor do values
computed where they are read (`computed_at`, tensorop-fuse). Lifetimes are
closed intervals, so a kernel's output never shares bytes with one of its own inputs.

A reshape that moves no data (reshape_aliases) gets no place of its own: its result names the
bytes of its input, whose lifetime then runs to the reshape result's last read. A concat
along channels at batch 1 (in_place_concats) gets its operands written into its slices: each
operand's maker (through a reshape that moves no data, its input's maker) gets the offset of
its slice, the concat `arena_in_place` and no kernel, and
the concat's bytes live from the first operand's write to the last read of any of them.

Offsets come from the greedy-by-size heuristic: the largest values are placed first, each at
the lowest aligned offset where it fits beside the values already placed that live at the same
time. Offsets are multiples of the pass option `alignment` (bytes, default 256: CUDA's
allocation alignment, enough for float4 loads; an OpenCL device may ask for more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, TensorType, UnitAttr, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.fuse import COMPUTED_AT
from sched_dsl.lowering.place import where
from sched_dsl.lowering.tensorop_to_loops import GROUP

OFFSET = "arena_offset"
ARENA = "arena_size"
IN_PLACE = "arena_in_place"  # a concat whose operands' kernels write into its slices


@dataclass
class Interval:
    value: SSAValue
    start: int
    end: int
    size: int
    offset: int = -1


def value_bytes(t: TensorType) -> int:
    n = 1
    for d in t.get_shape():
        n *= d
    width = getattr(t.element_type, "bitwidth", 32)
    return n * max(width // 8, 1)


def launch_times(ops: list[Operation]) -> dict[Operation, int]:
    """When each op's work happens: its position, or for a fused group's members the position
    of the group's last member (where the one kernel is launched); an op that another computes
    where it reads it (`computed_at = "<stage>"`: an im2col its matmul gathers, a depthwise
    conv's group linked into a pointwise conv; tensorop-fuse) happens when that one's kernel runs."""
    last: dict[str, int] = {}
    for k, op in enumerate(ops):
        if GROUP in op.attributes:
            last[op.attributes[GROUP].data] = k
    time = {op: last[op.attributes[GROUP].data] if GROUP in op.attributes else k for k, op in enumerate(ops)}
    by_stage = {op.stage_name: op for op in ops if isinstance(op, T.TensorOp)}
    for op in ops:
        if COMPUTED_AT in op.attributes:
            time[op] = time[by_stage[op.attributes[COMPUTED_AT].data]]
    return time


def stays_in_group(op: Operation) -> bool:
    """A fused member whose result only its own group reads: it never reaches memory."""
    if GROUP not in op.attributes:
        return False
    group = op.attributes[GROUP].data
    users = [u.operation for r in op.results for u in r.uses]
    return bool(users) and all(GROUP in u.attributes and u.attributes[GROUP].data == group for u in users)


def reshape_aliases(fn: func.FuncOp) -> dict[SSAValue, SSAValue]:
    """The reshapes that move no data: a reshape on the GPU, outside any fused group, of a
    value on the device has the same bytes in the same row-major order as its input, so its
    result is a second name for the input's buffer and needs no kernel. Maps each such result
    to the value that owns the bytes (through reshapes of reshapes)."""
    out: dict[SSAValue, SSAValue] = {}
    for op in fn.body.block.ops:
        if (isinstance(op, T.ReshapeOp) and GROUP not in op.attributes and where(op.result) == "device"
                and where(op.input) == "device"):
            out[op.result] = out.get(op.input, op.input)
    return out


def in_place_concats(fn: func.FuncOp, alignment: int) -> dict[T.ConcatOp, list[tuple[SSAValue, int]]]:
    """The concats whose operands can be written straight into their slices of the result,
    with each slice's writer and byte offset in it: a concat on the GPU, outside any fused
    group, along an axis with only 1s before it (each operand one contiguous slice: channels at batch 1),
    every operand made by a GPU operator of this function (not an argument, a copy or another
    such concat; through a reshape that moves no data, the operator that made its input, which
    then writes the slice), in this concat only once and in no other such concat, and every
    slice starting at a multiple of `alignment` (arena views must)."""
    aliases = reshape_aliases(fn)
    out: dict[T.ConcatOp, list[tuple[SSAValue, int]]] = {}
    claimed: set[SSAValue] = set()
    for op in fn.body.block.ops:
        if not isinstance(op, T.ConcatOp) or GROUP in op.attributes or where(op.result) != "device":
            continue
        if math.prod(T.shape_of(op.result)[:op.concat_axis()]) != 1:
            continue
        writers = [aliases.get(v, v) for v in op.inputs]
        if len(set(writers)) != len(writers):
            continue
        slices, at = [], 0
        for v in writers:
            maker = v.owner
            if (not isinstance(maker, T.TensorOp) or maker in out or v in claimed or where(v) != "device"
                    or at % alignment):
                break
            slices.append((v, at))
            at += value_bytes(v.type)
        else:
            out[op] = slices
            claimed.update(writers)
    return out


def lifetimes(fn: func.FuncOp, in_place: dict[T.ConcatOp, list[tuple[SSAValue, int]]] | None = None
              ) -> list[Interval]:
    """Each planned value's interval. A value whose bytes other names share (reshapes that
    move no data; the operands of an in-place concat, in its result) lives from the first
    write of any of them to the last read of any of them."""
    ops = list(fn.body.block.ops)
    time = launch_times(ops)
    end_of_function = len(ops)
    aliases = reshape_aliases(fn)
    home: dict[SSAValue, SSAValue] = {v: c.result for c, slices in (in_place or {}).items() for v, _ in slices}
    for alias, root in aliases.items():
        home[alias] = home.get(root, root)
    names_of: dict[SSAValue, list[SSAValue]] = {}
    for name, owner in home.items():
        names_of.setdefault(owner, []).append(name)
    moves_nothing = {op for op in ops if op.results and op.results[0] in aliases} | set(in_place or {})
    out = []
    for op in ops:
        if not isinstance(op, (T.TensorOp, T.CopyOp)) or stays_in_group(op) or op.results[0] in home:
            continue
        if COMPUTED_AT in op.attributes:  # computed where it is read: never in memory
            continue
        v = op.result
        if where(v) != "device":
            continue
        names = [v, *names_of.get(v, ())]
        writes = [time[op]] if op not in moves_nothing else []
        writes += [time[n.owner] for n in names[1:] if n.owner not in moves_nothing]
        readers = [u.operation for n in names for u in n.uses if u.operation not in moves_nothing]
        reads = [end_of_function if isinstance(r, func.ReturnOp) else time[r] for r in readers]
        start = min(writes, default=time[op])
        out.append(Interval(v, start, max([start, *reads]), value_bytes(v.type)))
    return out


def place(intervals: list[Interval], alignment: int) -> int:
    """Gives every interval an offset (greedy by size); returns the arena's size in bytes."""
    placed: list[Interval] = []
    arena = 0
    for iv in sorted(intervals, key=lambda i: (-i.size, i.start)):
        offset = 0
        for other in sorted((p for p in placed if p.start <= iv.end and iv.start <= p.end), key=lambda p: p.offset):
            if offset + iv.size <= other.offset:
                break
            offset = max(offset, -(-(other.offset + other.size) // alignment) * alignment)
        iv.offset = offset
        placed.append(iv)
        arena = max(arena, offset + iv.size)
    return -(-arena // alignment) * alignment


def plan_function(fn: func.FuncOp, alignment: int) -> int:
    for op in fn.body.block.ops:
        op.attributes.pop(OFFSET, None)
        op.attributes.pop(IN_PLACE, None)
    in_place = in_place_concats(fn, alignment)
    intervals = lifetimes(fn, in_place)
    arena = place(intervals, alignment)
    for iv in intervals:
        iv.value.owner.attributes[OFFSET] = IntegerAttr(iv.offset, i64)
    for concat, slices in in_place.items():
        base = concat.attributes[OFFSET].value.data
        for writer, offset in slices:
            writer.owner.attributes[OFFSET] = IntegerAttr(base + offset, i64)
        concat.attributes[IN_PLACE] = UnitAttr()
    fn.attributes[ARENA] = IntegerAttr(arena, i64)
    return arena


def arena_offsets(fn: func.FuncOp) -> dict[SSAValue, int]:
    """The offsets tensorop-plan-memory wrote, by value."""
    return {op.results[0]: op.attributes[OFFSET].value.data for op in fn.body.block.ops if OFFSET in op.attributes}


@dataclass(frozen=True)
class TensoropPlanMemoryPass(ModulePass):
    """Places the function's intermediate device values in one arena (see the module docstring)."""

    name = "tensorop-plan-memory"
    alignment: int = 256

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.alignment < 1 or self.alignment & (self.alignment - 1):
            raise DiagnosticException(f"tensorop-plan-memory: alignment={self.alignment} is not a power of two")
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                plan_function(fn, self.alignment)
