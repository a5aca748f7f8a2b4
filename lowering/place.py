"""tensorop-place: decides per operator whether it runs on the GPU or on the host, and makes
the data movement explicit.

Every op gets `place = "gpu"` or `place = "host"`: `tensorop.host_call` ops (operators without
a GPU lowering) always run on the host; a tensorop op runs on the host when the pass option
`host` names it (`tensorop-place{host="conv_3,softmax"}`). Function arguments (the model input
and the weights) live on the device. A `tensorop.copy {to = "host"}` is inserted once per value
before its first host consumer (and before the return: results end on the host), a
`tensorop.copy {to = "device"}` once per host value right after its producer when a GPU op uses it.

With several devices (ops carry `device = k`, as tensorop-split and the partitioner leave them;
0 when absent), a copy to the device carries the consumer's `device`, and a value a GPU op uses
on another device than the one it lives on gets a `tensorop.transfer {src, dst}` right after
its producer (at the start of the function for arguments, which live on device 0), once per
value and device.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.fuse import PLACE
from sched_dsl.lowering.level import require_operator_level
from sched_dsl.lowering.split import DEVICE, device_of


def where(v: SSAValue) -> str:
    """Where a value lives: a copy's target, its producer's place, or the device for arguments."""
    owner = v.owner
    if isinstance(owner, T.CopyOp):
        return owner.to.data
    if isinstance(owner, T.TransferOp):
        return "device"
    if isinstance(owner, Operation) and PLACE in owner.attributes:
        return "host" if owner.attributes[PLACE].data == "host" else "device"
    return "device"


def device_holding(v: SSAValue) -> int:
    """The device a device-resident value lives on: its transfer's dst, its copy's or
    producer's `device`; arguments live on device 0."""
    owner = v.owner
    if isinstance(owner, T.TransferOp):
        return owner.dst.value.data
    return device_of(owner) if isinstance(owner, Operation) else 0


def place_function(fn: func.FuncOp, host: set[str]) -> None:
    block = fn.body.block
    for op in list(block.ops):
        if isinstance(op, T.HostCallOp):
            op.attributes[PLACE] = StringAttr("host")
        elif isinstance(op, T.TensorOp):
            op.attributes[PLACE] = StringAttr("host" if op.stage_name in host else "gpu")
    moves: dict[tuple[SSAValue, str | int], SSAValue] = {}
    for op in list(block.ops):
        if isinstance(op, T.CopyOp | T.TransferOp):
            continue
        on_host = isinstance(op, func.ReturnOp) or (PLACE in op.attributes and op.attributes[PLACE].data == "host")
        need = "host" if on_host else "device"
        for k, v in enumerate(op.operands):
            have = where(v)
            if have == need == "host":
                continue
            if have == need and device_holding(v) == device_of(op):
                continue
            key = (v, "host" if on_host else device_of(op))
            if key not in moves:
                if have != need:
                    move = T.CopyOp(v, need)
                    move.result.name_hint = f"{v.name_hint or 'v'}_{need}"
                    if need == "device" and device_of(op):
                        move.attributes[DEVICE] = IntegerAttr(device_of(op), i64)
                        move.result.name_hint += f"{device_of(op)}"
                else:
                    move = T.TransferOp(v, device_holding(v), device_of(op))
                    move.result.name_hint = f"{v.name_hint or 'v'}_dev{device_of(op)}"
                if need == "host":
                    where_to = InsertPoint.before(op)
                elif isinstance(v.owner, Operation):
                    where_to = InsertPoint.after(v.owner)
                else:
                    where_to = InsertPoint.at_start(block)
                Rewriter.insert_op(move, where_to)
                moves[key] = move.result
            op.operands[k] = moves[key]


@dataclass(frozen=True)
class TensoropPlacePass(ModulePass):
    """Marks every op gpu or host and inserts the copies between them (see the module docstring)."""

    name = "tensorop-place"
    host: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        require_operator_level(op, self.name)
        names = {n.strip() for n in self.host.split(",") if n.strip()}
        found = {o.stage_name for o in op.walk() if isinstance(o, T.TensorOp)}
        missing = sorted(names - found)
        if missing:
            raise DiagnosticException(f"tensorop-place: no operator named {', '.join(missing)}")
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                place_function(fn, names)
