"""tensorop-precision: an f32 model function run in reduced precision.

`precision` "bf16" or "fp16": every float argument but those named in `keep` (the model's
inputs) becomes a tensor of that type (the weights, converted once when they are uploaded);
each kept input is cast to it where it enters; every GPU operator then computes in that type
(products and sums still accumulate in f32), except the ones that need f32's range or
precision: softmax, reduce, cumsum, sorting, top-k and NMS run on f32 values (a cast before
them, and one back after where a 16-bit operator reads their result), and host operators take
and give f32. The function's results are cast back to f32. `precision` "tf32" or "3xtf32"
keeps every type and sets that compute mode on each matmul and conv2d. The casts are tensorop.cast ops,
explicit in the IR.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.dialects import tensorop as T

PRECISIONS = {"bf16": "bf16", "fp16": "f16", "tf32": "f32", "3xtf32": "f32"}
# operators that run on f32 values in a reduced-precision model
F32_OPS = (T.SoftmaxOp, T.ReduceOp, T.ScanOp, T.ArgsortOp, T.TopkOp, T.NmsOp, T.TakeAlongAxisOp)


def is_float(v: SSAValue) -> bool:
    return isinstance(v.type, TensorType) and T.element_dtype(v.type.element_type) in T.FLOAT_DTYPES


def with_dtype(t: TensorType, dtype: str) -> TensorType:
    return T.tensor_type(t.get_shape(), dtype)


class Converter:
    def __init__(self, fn: func.FuncOp, low: str):
        self.fn, self.low = fn, low
        self.casts: dict[tuple[SSAValue, str], SSAValue] = {}
        self.names = {op.stage_name for op in fn.walk() if isinstance(op, (T.TensorOp, T.HostCallOp))}

    def fresh(self, base: str) -> str:
        return T.fresh_name(self.names, base, "_")

    def as_type(self, v: SSAValue, dtype: str, before: Operation) -> SSAValue:
        """v in `dtype`: itself, or a tensorop.cast of it (one per value and type)."""
        if not is_float(v) or T.dtype_of(v) == dtype:
            return v
        key = (v, dtype)
        if key not in self.casts:
            base = f"{v.name_hint or 'v'}_{dtype}"
            cast = T.CastOp(v, self.fresh(base), dtype)
            cast.result.name_hint = cast.stage_name
            where = InsertPoint.after(v.owner) if isinstance(v.owner, Operation) else InsertPoint.before(before)
            Rewriter.insert_op(cast, where)
            self.casts[key] = cast.result
        return self.casts[key]

    def convert_op(self, op: Operation) -> None:
        if isinstance(op, func.ReturnOp):
            op.operands = [self.as_type(v, "f32", op) for v in op.operands]
            return
        if isinstance(op, T.HostCallOp):
            op.operands = [self.as_type(v, "f32", op) for v in op.operands]
            return
        if not isinstance(op, T.TensorOp) or isinstance(op, T.CastOp):
            return
        dtype = "f32" if isinstance(op, F32_OPS) else self.low
        kinds = op.operand_dtypes()
        operands = [self.as_type(v, dtype, op) if want == "float" else v for v, want in zip(op.operands, kinds)]
        result = op.result.type
        if is_float(op.result):
            result = with_dtype(result, dtype)
        new = type(op).create(operands=operands, result_types=[result], properties=dict(op.properties),
                              attributes=dict(op.attributes))
        new.result.name_hint = op.result.name_hint
        Rewriter.replace_op(op, new)

    def run(self, keep: set[str]) -> None:
        block = self.fn.body.block
        for a in list(block.args):
            if is_float(a) and a.name_hint not in keep:
                name = a.name_hint
                Rewriter.replace_value_with_new_type(a, with_dtype(a.type, self.low)).name_hint = name
        for op in list(block.ops):
            self.convert_op(op)
        self.fn.function_type = FunctionType.from_lists([a.type for a in block.args],
                                                        [v.type for v in block.last_op.operands])


def lower_precision(module: ModuleOp, precision: str, keep: set[str]) -> None:
    if precision not in PRECISIONS:
        raise DiagnosticException(f"tensorop-precision: precision '{precision}' is not one of "
                                  f"{', '.join(PRECISIONS)}")
    for fn in [op for op in module.ops if isinstance(op, func.FuncOp)]:
        if precision in T.COMPUTE_MODES:
            for op in fn.walk():
                if isinstance(op, (T.MatmulOp, T.Conv2dOp)) and T.dtype_of(op.result) == "f32":
                    op.properties["compute"] = StringAttr(precision)
            continue
        for a in fn.body.block.args:
            if is_float(a) and T.dtype_of(a) != "f32":
                raise DiagnosticException(f"tensorop-precision: argument '{a.name_hint}' is {T.dtype_of(a)}; "
                                          "the pass takes an f32 model")
        Converter(fn, PRECISIONS[precision]).run(keep)


@dataclass(frozen=True)
class TensoropPrecisionPass(ModulePass):
    """Runs an f32 model in reduced precision (see the module docstring):
    `tensorop-precision{precision=bf16 keep="input"}`."""

    name = "tensorop-precision"
    precision: str = "bf16"
    keep: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        lower_precision(op, self.precision, {k.strip() for k in self.keep.split(",") if k.strip()})
