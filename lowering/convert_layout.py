"""tensorop-convert-layout: runs regions of a model in NHWC (channels last), with the transposes
explicit.

A region is a connected set of 4-D ops that compute the same in either layout once their
layout or axis is changed: conv2d and pool2d (NCHW, which become `layout = "NHWC"`) and the
ops between them: unary, cast, binary (its other operand brought to NHWC too), bias_add and
concat (their `axis` moved to where that dimension is in NHWC). Two such ops are in one
region when one reads the other's result; a region is converted only when it holds a conv2d
or pool2d (and, with `layout = "auto"`, when `region_pays` says so).

Inside a converted region every value is NHWC and no transpose runs. At its boundary, a
`tensorop.remap` transposes each NCHW value the region reads into NHWC (`<value>_nhwc`; an
operand of lower rank is first reshaped to 4-D, one whose dimensions are all 1 broadcasts
as it is), and each region value that an op outside the region or the function's return
reads is transposed back (`<op>_nchw`), once per value. Function arguments and results keep
their NCHW meaning, so the rewritten function computes what it did. A transpose of weights
alone is done once at load by the model executor (fold_weight_moves).

Conv2d weights stay F, C / groups, KH, KW (ONNX's OIHW). A conv marked with an algorithm
that refuses NHWC (tensorop-conv-to-gemm's "winograd", or "gemm"/"implicit" for a conv that
is not 1x1, stride 1, unpadded) stays NCHW and outside any region.

Option `layout`: "NHWC" (the default) converts every region, "auto" the regions that
`region_pays` accepts, "NCHW" none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, TensorType, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.conv_to_gemm import ALGORITHM, is_pointwise
from sched_dsl.lowering.level import require_operator_level

LAYOUT_CHOICES = ("NCHW", "NHWC", "auto")
# multiply-adds one transposed element is worth (region_pays): a transpose reads and writes
# every element once, one side of it strided; a GPU does tens of multiply-adds in that time
TRANSPOSE_COST = 32
FOLLOWERS = (T.UnaryOp, T.CastOp, T.BinaryOp, T.BiasAddOp, T.ConcatOp)  # ops a region may hold between convs


def check_layout_choice(layout: str) -> None:
    if layout not in LAYOUT_CHOICES:
        raise DiagnosticException(f"tensorop-convert-layout: layout '{layout}' is not one of "
                                  f"{', '.join(LAYOUT_CHOICES)}")


def keeps_nchw(op: T.Conv2dOp) -> bool:
    """Whether the conv's marked algorithm (if any) would refuse it in NHWC."""
    algorithm = op.attributes.get(ALGORITHM)
    if not isinstance(algorithm, StringAttr):
        return False
    return algorithm.data == "winograd" or algorithm.data in ("gemm", "implicit") and not is_pointwise(op)


def can_join(op: Operation) -> bool:
    """Whether `op` computes the same in NHWC, its layout or axis changed."""
    if isinstance(op, T.WindowOp):
        return op.data_layout() == "NCHW" and not (isinstance(op, T.Conv2dOp) and keeps_nchw(op))
    return isinstance(op, FOLLOWERS) and len(T.shape_of(op.result)) == 4


def data_operands(op: T.TensorOp) -> list[int]:
    """Positions of the operands that take the op's layout (not conv2d's weights nor bias_add's
    bias vector)."""
    if isinstance(op, (T.WindowOp, T.BiasAddOp, T.UnaryOp, T.CastOp)):
        return [0]
    return list(range(len(op.operands)))


def regions(ops: list[Operation]) -> list[list[T.TensorOp]]:
    """The connected sets of ops that can join (can_join), linked producer to consumer through
    data operands, that hold a conv2d or pool2d; each in block order."""
    joinable = [op for op in ops if can_join(op)]
    parent = {op: op for op in joinable}

    def root(op):
        while parent[op] is not op:
            parent[op] = parent[parent[op]]
            op = parent[op]
        return op

    for op in joinable:
        for k in data_operands(op):
            p = op.operands[k].owner
            if p in parent:
                parent[root(p)] = root(op)
    groups: dict[Operation, list[T.TensorOp]] = {}
    for op in joinable:
        groups.setdefault(root(op), []).append(op)
    return [g for g in groups.values() if any(isinstance(op, T.WindowOp) for op in g)]


def boundary(region: list[T.TensorOp]) -> tuple[list[SSAValue], list[SSAValue]]:
    """(NCHW values the region reads from outside and must transpose in, region values read
    outside it), each once."""
    inside = set(region)
    ins: list[SSAValue] = []
    outs: list[SSAValue] = []
    for op in region:
        for k in data_operands(op):
            v = op.operands[k]
            if v.owner not in inside and v not in ins and max(T.shape_of(v), default=1) > 1:
                ins.append(v)
        if any(u.operation not in inside for u in op.result.uses):
            outs.append(op.result)
    return ins, outs


def work(op: T.TensorOp) -> int:
    """Multiply-adds of a conv2d, window reads of a pool2d, 0 for other ops."""
    out = math.prod(T.shape_of(op.result))
    if isinstance(op, T.Conv2dOp):
        return out * math.prod(T.shape_of(op.weight)[1:])
    if isinstance(op, T.Pool2dOp):
        return out * math.prod(op.kernel.get_values())
    return 0


def prefers_nhwc(op: T.TensorOp) -> bool:
    """A conv whose matmul form (tensorop-conv-to-gemm) exists only in NHWC: a 1x1, stride-1,
    unpadded conv of groups 1 at batch > 1 is one product [n * h * w, c] x [c, f] in NHWC,
    while in NCHW the product's columns are one image's pixels (batch 1 only)."""
    return isinstance(op, T.Conv2dOp) and is_pointwise(op) and T.shape_of(op.input)[0] > 1


def region_pays(region: list[T.TensorOp]) -> bool:
    """layout="auto"'s rule: convert a region when (1) it holds a conv that prefers NHWC
    (prefers_nhwc: its matmul form needs channels last) and (2) the boundary transposes are
    cheap against the region's work: TRANSPOSE_COST times the elements they move is at most
    the multiply-adds of its convs plus the window reads of its pools. Without (1) NHWC buys
    nothing this compiler can use; without (2) the transposes would cost more than the
    region's own arithmetic."""
    if not any(prefers_nhwc(op) for op in region):
        return False
    ins, outs = boundary(region)
    moved = sum(math.prod(T.shape_of(v)) for v in ins + outs)
    return TRANSPOSE_COST * moved <= sum(work(op) for op in region)


class Names:
    """Fresh stage and value names for the transposes (no `_<digits>` ending, which xDSL drops)."""

    def __init__(self, fn: func.FuncOp):
        self.used = {a.name_hint for a in fn.body.block.args}
        for op in fn.body.block.ops:
            self.used.update(r.name_hint for r in op.results)
            if isinstance(op, T.TensorOp):
                self.used.add(op.stage_name)

    def fresh(self, base: str) -> str:
        return T.fresh_name(self.used, base)


def nhwc_type(t: TensorType) -> TensorType:
    return TensorType(t.element_type, T.in_layout(t.get_shape(), "NHWC"))


def add_before(op: T.TensorOp, at: Operation) -> SSAValue:
    Rewriter.insert_op(op, InsertPoint.before(at))
    op.result.name_hint = op.stage_name
    return op.result


def to_nhwc(v: SSAValue, at: Operation, names: Names) -> SSAValue:
    """`v`, an NCHW value (or one of lower rank broadcast against NCHW), in NHWC, made before `at`."""
    shape = T.shape_of(v)
    base = v.name_hint or "value"
    if max(shape, default=1) == 1:
        return v  # broadcasts the same in any layout
    if len(shape) < 4:
        full = (1,) * (4 - len(shape)) + tuple(shape)
        v = add_before(T.ReshapeOp(v, names.fresh(f"{base}_4d"), full), at)
        shape = full
    return add_before(T.RemapOp(v, names.fresh(f"{base}_nhwc"), *T.transpose_remap(shape, T.TO_NHWC)), at)


def convert_region(region: list[T.TensorOp], names: Names) -> None:
    """Rewrites the region's ops in NHWC (see the module docstring)."""
    inside = set(region)
    moved: dict[SSAValue, SSAValue] = {}  # NCHW value -> its NHWC value
    for op in region:
        operands = list(op.operands)
        for k in data_operands(op):
            v = operands[k]
            if v not in moved:
                moved[v] = to_nhwc(v, op, names)
            operands[k] = moved[v]
        props = dict(op.properties)
        if isinstance(op, T.WindowOp):
            props["layout"] = StringAttr("NHWC")
        if isinstance(op, (T.BiasAddOp, T.ConcatOp)):
            props["axis"] = IntegerAttr(T.TO_NHWC.index(op.axis.value.data % 4), i64)
        new = type(op).create(operands=operands, result_types=[nhwc_type(op.result.type)], properties=props,
                              attributes=dict(op.attributes))
        Rewriter.insert_op(new, InsertPoint.before(op))
        new.result.name_hint = op.result.name_hint
        moved[op.result] = new.result
        outside = [u for u in op.result.uses if u.operation not in inside]
        if outside:
            back = T.RemapOp(new.result, names.fresh(f"{op.stage_name}_nchw"),
                             *T.transpose_remap(T.shape_of(new.result), T.TO_NCHW))
            Rewriter.insert_op(back, InsertPoint.after(new))
            back.result.name_hint = back.stage_name
            for u in outside:
                u.operation.operands[u.index] = back.result
    for op in reversed(region):
        op.detach()
        op.erase()


def convert_function(fn: func.FuncOp, layout: str) -> int:
    """Converts the function's regions (all with "NHWC", those region_pays accepts with
    "auto"); returns how many."""
    check_layout_choice(layout)
    if layout == "NCHW":
        return 0
    names = Names(fn)
    chosen = [r for r in regions(list(fn.body.block.ops)) if layout == "NHWC" or region_pays(r)]
    for region in chosen:
        convert_region(region, names)
    return len(chosen)


@dataclass(frozen=True)
class TensoropConvertLayoutPass(ModulePass):
    """Runs the regions of conv2d/pool2d and the ops between them in NHWC (see the module
    docstring)."""

    name = "tensorop-convert-layout"
    layout: str = "NHWC"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        require_operator_level(op, self.name)
        check_layout_choice(self.layout)
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                convert_function(fn, self.layout)
