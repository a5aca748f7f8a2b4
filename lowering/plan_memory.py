"""tensorop-plan-memory: liveness-based reuse of intermediate device buffers.

Every value that lives in device memory and is made inside the function (the result of a GPU
op, or of a `tensorop.copy {to = "device"}`) gets a place in one arena: the op that makes it
gets `arena_offset = <bytes> : i64`, and the function gets `arena_size = <bytes> : i64`. Two
values share bytes only when their lifetimes do not overlap. Function arguments (the model's
inputs and weights) are not planned: they keep buffers of their own.

A value's lifetime runs from the launch that writes it to the last launch or copy that reads
it (to the end of the function when it is returned). A fused group (tensorop-fuse) is one
kernel, launched where its last member stands, so every member's reads happen there; members
whose result only the group itself reads never reach memory and get no offset. Lifetimes are
closed intervals, so a kernel's output never shares bytes with one of its own inputs.

A reshape that moves no data (reshape_aliases) gets no place of its own: its result names the
bytes of its input, whose lifetime then runs to the reshape result's last read.

Offsets come from the greedy-by-size heuristic: the largest values are placed first, each at
the lowest aligned offset where it fits beside the values already placed that live at the same
time. Offsets are multiples of the pass option `alignment` (bytes, default 256: CUDA's
allocation alignment, enough for float4 loads; an OpenCL device may ask for more).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, TensorType, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.place import where
from sched_dsl.lowering.tensorop_to_loops import GROUP

OFFSET = "arena_offset"
ARENA = "arena_size"


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
    of the group's last member (where the one kernel is launched)."""
    last: dict[str, int] = {}
    for k, op in enumerate(ops):
        if GROUP in op.attributes:
            last[op.attributes[GROUP].data] = k
    return {op: last[op.attributes[GROUP].data] if GROUP in op.attributes else k for k, op in enumerate(ops)}


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


def lifetimes(fn: func.FuncOp) -> list[Interval]:
    """Each planned value's interval; a value aliased by reshapes lives until their last read."""
    ops = list(fn.body.block.ops)
    time = launch_times(ops)
    end_of_function = len(ops)
    aliases = reshape_aliases(fn)
    names_of: dict[SSAValue, list[SSAValue]] = {}
    for alias, root in aliases.items():
        names_of.setdefault(root, []).append(alias)
    out = []
    for op in ops:
        if not isinstance(op, (T.TensorOp, T.CopyOp)) or stays_in_group(op) or op.results[0] in aliases:
            continue
        v = op.result
        if where(v) != "device":
            continue
        readers = [u.operation for name in (v, *names_of.get(v, ())) for u in name.uses]
        reads = [end_of_function if isinstance(r, func.ReturnOp) else time[r] for r in readers
                 if not (isinstance(r, T.ReshapeOp) and r.result in aliases)]  # an alias reads nothing
        start = time[op]
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
    intervals = lifetimes(fn)
    arena = place(intervals, alignment)
    for iv in intervals:
        iv.value.owner.attributes[OFFSET] = IntegerAttr(iv.offset, i64)
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
