"""tensorop-split: operator split across devices (Xenos' horizontal split).

An op marked `split = "rows" | "channels" | "batch"` (by the partitioner, by hand, or every
conv2d, matmul and pool2d through the pass option `mode`) becomes one op per device, each
computing an even share of the output along that axis: output rows (axis 2 of NCHW; the
input rows each part reads, its halo included, and its own padding), output channels (axis 1:
a slice of the weights' filters; matmul: columns of B), or the batch (axis 0). The devices are
`devices = array<i64: ...>` on the op, else 0 .. N-1 for the pass option `devices=N`.

Everything that moves is explicit in the IR: a part's input is a `tensorop.slice` of the
producer where the producer is whole (the scatter), the part itself where the producer was
split the same way, or a `tensorop.concat` of pieces of neighbouring parts (the halo exchange:
a slice of the neighbour's part, on the neighbour's device). A split value that an unsplit op
or the function's return uses is joined by a `tensorop.concat` on that op's device (the
gather). Elementwise ops (unary, binary, bias_add) whose input is split are split the same
way, so a conv's epilogue stays with its part. Every new op carries `device = k`;
`tensorop-place` then inserts the `tensorop.transfer` for every value used on another device.
Ops without a split keep their `device` (0 when absent).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, i64
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.diagnostics import where
from sched_dsl.dialects import tensorop as T

SPLIT, DEVICE, DEVICES = "split", "device", "devices"
AXES = {"batch": 0, "channels": 1, "rows": 2}
SPLITTABLE = (T.Conv2dOp, T.MatmulOp, T.Pool2dOp)
ANY_AXIS = (T.UnaryOp, T.BinaryOp, T.BiasAddOp)  # elementwise ops, split along any axis


def device_of(op: Operation | None) -> int:
    """The device an op runs on (its `device` attribute; 0 without one)."""
    if op is not None and DEVICE in op.attributes:
        return op.attributes[DEVICE].value.data
    return 0


def shares(n: int, k: int) -> list[tuple[int, int]]:
    """[lo, hi) of k nearly even shares of range(n) (the first n % k one larger)."""
    out, lo = [], 0
    for i in range(k):
        hi = lo + n // k + (1 if i < n % k else 0)
        out.append((lo, hi))
        lo = hi
    return out


@dataclass
class Part:
    device: int
    value: SSAValue
    lo: int
    hi: int


@dataclass
class Split:
    axis: int
    parts: list[Part]


def _error(op: Operation, msg: str) -> DiagnosticException:
    return DiagnosticException(f"{where(op)}error: tensorop-split: {op.name} '{op.stage_name}': {msg}")


class Splitter:
    def __init__(self, fn: func.FuncOp, devices: int, mode: str):
        self.block: Block = fn.body.block
        self.devices, self.mode = devices, mode
        self.split: dict[SSAValue, Split] = {}
        self.gathered: dict[tuple[SSAValue, int], SSAValue] = {}
        self.names = {o.stage_name for o in self.block.ops if isinstance(o, T.TensorOp)}
        self.here: Operation | None = None  # new ops go before this one

    def fresh(self, base: str) -> str:
        k = 0
        while f"{base}{k}" in self.names:
            k += 1
        self.names.add(f"{base}{k}")
        return f"{base}{k}"

    def emit(self, op: T.TensorOp, device: int) -> SSAValue:
        op.attributes[DEVICE] = IntegerAttr(device, i64)
        op.result.name_hint = op.stage_name
        Rewriter.insert_op(op, InsertPoint.before(self.here))
        return op.result

    # -- what a value looks like on a device ----------------------------------------------------------
    def whole(self, v: SSAValue, device: int) -> SSAValue:
        """v whole, for an op on `device`: a split v is joined there (once per device)."""
        s = self.split.get(v)
        if s is None:
            return v
        if (v, device) not in self.gathered:
            base = v.name_hint or "v"
            cat = T.ConcatOp([p.value for p in s.parts], self.fresh(f"{base}_gather"), s.axis)
            self.gathered[(v, device)] = self.emit(cat, device)
        return self.gathered[(v, device)]

    def piece(self, v: SSAValue, axis: int, lo: int, hi: int, device: int) -> SSAValue:
        """v[lo:hi] along `axis`, for an op on `device`: a part of v itself, a concat of pieces of
        its parts (a halo exchange), or a slice of the whole value where it lives (a scatter)."""
        n = T.shape_of(v)[axis]
        s = self.split.get(v)
        base = v.name_hint or "v"
        if s is not None and s.axis == axis:
            pieces = []
            for p in s.parts:
                a, b = max(lo, p.lo), min(hi, p.hi)
                if a >= b:
                    continue
                if (a, b) == (p.lo, p.hi):
                    pieces.append(p.value)
                else:
                    sl = T.SliceOp(p.value, self.fresh(f"{base}_halo"), axis, a - p.lo, b - p.lo)
                    pieces.append(self.emit(sl, p.device))
            if len(pieces) == 1:
                return pieces[0]
            return self.emit(T.ConcatOp(pieces, self.fresh(f"{base}_join"), axis), device)
        if s is not None:  # split along another axis: join it first, where its first part is
            v = self.whole(v, s.parts[0].device)
        if (lo, hi) == (0, n):
            return v
        home = device_of(v.owner) if isinstance(v.owner, Operation) else 0  # arguments live on device 0
        return self.emit(T.SliceOp(v, self.fresh(f"{base}_scatter"), axis, lo, hi), home)

    # -- splitting one op -----------------------------------------------------------------------------
    def mode_of(self, op: T.TensorOp) -> str | None:
        if SPLIT in op.attributes:
            mode = op.attributes[SPLIT].data
            if mode not in AXES:
                raise _error(op, f"split = \"{mode}\" is not one of {', '.join(AXES)}")
            return mode
        lead = self.leading_operand(op)
        if lead is not None:
            return {0: "batch", 1: "channels"}.get(self.split[lead].axis, "rows")
        if self.mode and isinstance(op, SPLITTABLE):
            if self.mode == "auto":
                return "channels" if isinstance(op, T.MatmulOp) else "rows"
            return self.mode
        return None

    def leading_operand(self, op: T.TensorOp) -> SSAValue | None:
        """The split operand of an elementwise op whose parts its own parts follow (one of the
        result's shape), if any."""
        if not isinstance(op, ANY_AXIS) or SPLIT in op.attributes:
            return None
        for v in op.operands:
            if v in self.split and T.shape_of(v) == T.shape_of(op.result):
                return v
        return None

    def devices_of(self, op: T.TensorOp) -> list[int]:
        if DEVICES in op.attributes:
            return list(op.attributes[DEVICES].get_values())
        return list(range(self.devices))

    def split_op(self, op: T.TensorOp, mode: str) -> None:
        out = T.shape_of(op.result)
        axis = AXES[mode]
        if isinstance(op, T.MatmulOp):
            axis = {"batch": 0, "rows": 0, "channels": 1}[mode]
        if axis >= len(out):
            raise _error(op, f"cannot split a rank-{len(out)} result along {mode}")
        if isinstance(op, T.WindowOp) and op.data_layout() != "NCHW":
            raise _error(op, f"tensorop-split splits NCHW convs and pools; this one is {op.data_layout()}")
        if isinstance(op, T.Conv2dOp) and mode == "channels" and op.groups.value.data != 1:
            raise _error(op, "a grouped conv2d splits by rows or batch, not channels")
        lead = self.leading_operand(op)
        if lead is not None:
            axis = self.split[lead].axis
            devs = [p.device for p in self.split[lead].parts]
            ranges = [(p.lo, p.hi) for p in self.split[lead].parts]
        else:
            devs = self.devices_of(op)
            ranges = shares(out[axis], len(devs))
            # a part whose window lies all in the padding reads no row: split over fewer devices
            while mode == "rows" and isinstance(op, T.Conv2dOp | T.Pool2dOp) and len(devs) > 1 and any(
                    lo < hi and self.rows_read(op, lo, hi)[0] >= self.rows_read(op, lo, hi)[1] for lo, hi in ranges):
                devs = devs[:-1]
                ranges = shares(out[axis], len(devs))
        # every part's inputs first (scatter, halo exchange), then the parts: nothing moves between
        # a part and the elementwise ops that follow it, so they fuse
        built = [(d, lo, hi, self.part_op(op, mode, axis, lo, hi, d)) for d, (lo, hi) in zip(devs, ranges) if lo < hi]
        parts = []
        for d, lo, hi, new in built:
            new.attributes.update({k: v for k, v in op.attributes.items()
                                   if k not in (SPLIT, DEVICES, DEVICE) and k not in new.properties})
            parts.append(Part(d, self.emit(new, d), lo, hi))
        self.split[op.result] = Split(axis, parts)

    @staticmethod
    def rows_read(op: T.Conv2dOp | T.Pool2dOp, lo: int, hi: int, clip: bool = True) -> tuple[int, int]:
        """The input rows [first, last) that output rows [lo, hi) of a conv or pool read
        (unclipped: padding rows are < 0 or >= the input's height)."""
        k = T.shape_of(op.weight)[2] if isinstance(op, T.Conv2dOp) else op.kernel.get_values()[0]
        dil = op.dilation.get_values()[0] if isinstance(op, T.Conv2dOp) else 1
        stride, pad = op.stride.get_values()[0], op.padding.get_values()[0]
        first, last = lo * stride - pad, (hi - 1) * stride - pad + dil * (k - 1) + 1
        if clip:
            first, last = max(first, 0), min(last, T.shape_of(op.input)[2])
        return first, last

    def part_op(self, op: T.TensorOp, mode: str, axis: int, lo: int, hi: int, d: int) -> T.TensorOp:
        name = self.fresh(f"{op.stage_name}_part")
        if isinstance(op, T.Conv2dOp | T.Pool2dOp):
            x = op.input
            stride, padding = list(op.stride.get_values()), list(op.padding.get_values())
            if mode == "rows":
                first, last = self.rows_read(op, lo, hi, clip=False)
                h = T.shape_of(x)[2]
                x = self.piece(x, 2, max(first, 0), min(last, h), d)
                padding = [max(0, -first), padding[1], max(0, last - h), padding[3]]
            elif mode == "batch":
                x = self.piece(x, 0, lo, hi, d)
            elif isinstance(op, T.Pool2dOp):  # channels of a pool: the same channels of its input
                x = self.piece(x, 1, lo, hi, d)
            else:
                x = self.whole(x, d)
            if isinstance(op, T.Pool2dOp):
                return T.Pool2dOp(x, name, op.kind.data, op.kernel.get_values(), stride, padding)
            w = self.piece(op.weight, 0, lo, hi, d) if mode == "channels" else self.whole(op.weight, d)
            return T.Conv2dOp(x, w, name, stride, padding, op.dilation.get_values(), op.groups.value.data)
        if isinstance(op, T.MatmulOp):
            if axis == 0:
                return T.MatmulOp(self.piece(op.lhs, 0, lo, hi, d), self.whole(op.rhs, d), name)
            return T.MatmulOp(self.whole(op.lhs, d), self.piece(op.rhs, 1, lo, hi, d), name)
        if isinstance(op, T.UnaryOp):
            bounds = [None if b is None else b.value.data for b in (op.lo, op.hi)]
            return T.UnaryOp(self.piece(op.input, axis, lo, hi, d), name, op.fn.data, *bounds)
        if isinstance(op, T.BiasAddOp):
            b_axis = op.axis.value.data % len(T.shape_of(op.result))
            b = self.piece(op.bias, 0, lo, hi, d) if b_axis == axis else self.whole(op.bias, d)
            return T.BiasAddOp(self.piece(op.input, axis, lo, hi, d), b, name, op.axis.value.data)
        if isinstance(op, T.BinaryOp):
            out = T.shape_of(op.result)
            args = []
            for v in op.operands:
                shape = T.shape_of(v)
                a = axis - (len(out) - len(shape))
                args.append(self.piece(v, a, lo, hi, d) if a >= 0 and shape[a] == out[axis] else self.whole(v, d))
            return T.BinaryOp(*args, name, op.fn.data)
        raise _error(op, "only conv2d, matmul, pool2d and elementwise ops split")

    def run(self) -> None:
        for op in list(self.block.ops):
            self.here = op
            if isinstance(op, func.ReturnOp):
                for k, v in enumerate(op.operands):
                    op.operands[k] = self.whole(v, 0)
                continue
            mode = self.mode_of(op) if isinstance(op, T.TensorOp) else None
            if mode is None:
                for k, v in enumerate(op.operands):
                    if v in self.split:
                        op.operands[k] = self.whole(v, device_of(op))
                continue
            self.split_op(op, mode)
        for op in reversed(list(self.block.ops)):
            if isinstance(op, T.TensorOp) and op.result in self.split:
                if op.result.uses.get_length():
                    raise _error(op, "internal: a split op still has uses")
                Rewriter.erase_op(op)


@dataclass(frozen=True)
class TensoropSplitPass(ModulePass):
    """Splits ops across devices (see the module docstring)."""

    name = "tensorop-split"
    devices: int = 2
    mode: str = ""  # "": only ops marked split; "rows", "channels", "batch" or "auto": every conv2d, matmul, pool2d

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.devices < 1:
            raise DiagnosticException(f"tensorop-split: devices must be >= 1, got {self.devices}")
        if self.mode not in ("", "auto", *AXES):
            raise DiagnosticException(f"tensorop-split: mode \"{self.mode}\" is not one of auto, {', '.join(AXES)}")
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                Splitter(fn, self.devices, self.mode).run()
