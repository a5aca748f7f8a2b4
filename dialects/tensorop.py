"""The `tensorop` dialect: tensor operators, the payload that schedules act on.

Every op carries a `name` (its stage name, which schedules address) and computes one
tensor result. Shape rules live here, in one place, and serve both the verifiers and the
Python front end (`sched_dsl`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

from xdsl.dialects.builtin import (
    DenseArrayBase,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    bf16,
    f16,
    f32,
    i32,
    i64,
)
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

UNARY_FNS = ("relu", "relu6", "clip", "sigmoid", "tanh", "exp", "neg", "abs", "sqrt", "reciprocal", "floor",
             "ceil", "sign", "erf", "log", "softplus", "softsign", "leaky_relu", "elu", "selu", "hard_sigmoid",
             "hard_swish", "gelu", "gelu_tanh", "shrink")
# the float parameters a unary fn needs (clip: lo, hi; the others: alpha, beta): leaky_relu and
# elu: alpha; selu: alpha, gamma = beta; hard_sigmoid: max(0, min(1, alpha * x + beta));
# shrink: lambd = alpha, bias = beta
UNARY_PARAMS = {"clip": ("lo", "hi"), "leaky_relu": ("alpha",), "elu": ("alpha",), "selu": ("alpha", "beta"),
                "hard_sigmoid": ("alpha", "beta"), "shrink": ("alpha", "beta")}
BINARY_FNS = ("add", "sub", "mul", "div", "max", "min", "pow", "prelu")  # prelu(x, slope)
REDUCE_FNS = ("sum", "max", "mean")
POOL_KINDS = ("max", "avg")
# data layouts of conv2d and pool2d: batch, channels, rows, columns ("NCHW", the default) or
# batch, rows, columns, channels ("NHWC", channels last); conv2d's weights stay F, C, KH, KW
LAYOUTS = ("NCHW", "NHWC")
TO_NHWC = (0, 2, 3, 1)  # the permutation that takes an NCHW tensor to NHWC (a transpose_remap perm)
TO_NCHW = (0, 3, 1, 2)  # and back
# stage names become buffer and kernel names: identifiers only, as in the Python API
STAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # matched whole


class ShapeError(ValueError):
    """An operator was given operands whose shapes or attributes do not fit."""


def ints(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


DTYPES = {"f32": f32, "f16": f16, "bf16": bf16, "i32": i32}
FLOAT_DTYPES = ("f32", "f16", "bf16")
# compute modes of matmul and conv2d, both for f32 tensors on NVIDIA's tensor cores: "tf32"
# multiplies at TF32 precision (inputs rounded to 10 mantissa bits, products summed in f32);
# "3xtf32" splits each input into a TF32 part and a TF32 remainder and sums three of those
# products (big*big + big*small + small*big), within about 2^-20 of the f32 product
COMPUTE_MODES = ("tf32", "3xtf32")


def fresh_name(used: set[str], base: str, joint: str = "") -> str:
    """The first of base, base<joint>1, base<joint>2, ... that `used` lacks; `used` then holds
    it. (xDSL drops a `_<digits>` ending from a value's name hint: value names join with "" or
    a letter.)"""
    name, k = base, 0
    while name in used:
        k += 1
        name = f"{base}{joint}{k}"
    used.add(name)
    return name


def tensor_type(shape: Sequence[int], dtype: str = "f32") -> TensorType:
    return TensorType(DTYPES[dtype], [int(d) for d in shape])


def element_dtype(elem: Attribute) -> str | None:
    """The dtype name of an element type (f32, f16, bf16, i32), or None for another type."""
    return next((name for name, e in DTYPES.items() if e == elem), None)


def dtype_of(value: SSAValue | Attribute) -> str:
    t = value.type if isinstance(value, SSAValue) else value
    name = element_dtype(t.element_type) if isinstance(t, TensorType) else None
    if name is None:
        raise ShapeError(f"expected a tensor of {', '.join(DTYPES)}, got {t}")
    return name


def common_float_dtype(what: str, dtypes: Sequence[str]) -> str:
    """The one float element type of an operator's float operands; a ShapeError naming the
    operator when they differ or one is not a float type (no implicit conversions: casts
    are explicit, sd.cast / tensorop.cast)."""
    for d in dtypes:
        if d not in FLOAT_DTYPES:
            raise ShapeError(f"{what}: operand is {d}; it takes float tensors ({', '.join(FLOAT_DTYPES)})")
    if len(set(dtypes)) > 1:
        raise ShapeError(f"{what}: operands are {' and '.join(dict.fromkeys(dtypes))}; give them one element "
                         "type with an explicit cast (sd.cast)")
    return dtypes[0] if dtypes else "f32"


def product_result_dtype(what: str, in_dtype: str, out_dtype: str | None, compute: str | None) -> str:
    """The result dtype of matmul/conv2d: the inputs' type unless `out_dtype` says f32 (the
    accumulator's type); a `compute` mode (tf32, 3xtf32) applies to f32 inputs only."""
    if compute is not None and compute not in COMPUTE_MODES:
        raise ShapeError(f"{what}: compute mode '{compute}' is not one of {', '.join(COMPUTE_MODES)}")
    if compute is not None and in_dtype != "f32":
        raise ShapeError(f"{what}: compute mode {compute} is for f32 tensors, the operands are {in_dtype}")
    out = in_dtype if out_dtype is None else out_dtype
    if out not in (in_dtype, "f32"):
        raise ShapeError(f"{what}: result type {out} must be the operands' type {in_dtype} or f32")
    return out


def shape_of(value: SSAValue | Attribute) -> tuple[int, ...]:
    t = value.type if isinstance(value, SSAValue) else value
    if not isinstance(t, TensorType):
        raise ShapeError(f"expected a tensor, got {t}")
    return tuple(t.get_shape())


# ---- shape rules ------------------------------------------------------------------------

# the most elements a tensor may have: its size in bytes (4 per element) fits a signed 64-bit int
MAX_ELEMENTS = 2**61 - 1


def check_size(shape: Sequence[int], what: str) -> None:
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_ELEMENTS:
        raise ShapeError(f"{what}: shape {tuple(shape)} has {n} elements, more than the {MAX_ELEMENTS} (2**61 - 1) "
                         "a tensor can have")



def matmul_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """numpy's matmul of operands of rank >= 2: the leading (batch) dimensions broadcast."""
    if len(a) < 2 or len(b) < 2:
        raise ShapeError(f"matmul needs operands of rank 2 or more, got {tuple(a)} and {tuple(b)}")
    if a[-1] != b[-2]:
        raise ShapeError(f"matmul inner dimensions differ: {tuple(a)} @ {tuple(b)}")
    try:
        batch = broadcast_shape(a[:-2], b[:-2])
    except ShapeError:
        raise ShapeError(f"matmul batch dimensions do not broadcast: {tuple(a)} @ {tuple(b)}") from None
    return (*batch, a[-2], b[-1])


def matmul_columns(shape: tuple[int, ...], columns: int | None) -> tuple[int, ...]:
    """The product's shape cut to its first `columns` columns (None: all of them)."""
    if columns is None:
        return shape
    if not 1 <= columns <= shape[-1]:
        raise ShapeError(f"matmul columns={columns} must be between 1 and the product's {shape[-1]} columns")
    return (*shape[:-1], columns)


def window_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dil: int) -> int:
    return (size + pad_lo + pad_hi - dil * (kernel - 1) - 1) // stride + 1


def check_layout(layout: str, what: str) -> None:
    if layout not in LAYOUTS:
        raise ShapeError(f"{what}: layout '{layout}' is not one of {', '.join(LAYOUTS)}")


def as_nchw(shape: Sequence[int], layout: str) -> tuple[int, ...]:
    """A 4-D shape of `layout` with its dimensions in NCHW order."""
    return tuple(shape[p] for p in TO_NCHW) if layout == "NHWC" else tuple(shape)


def in_layout(nchw: Sequence[int], layout: str) -> tuple[int, ...]:
    """An NCHW shape with its dimensions in `layout`'s order."""
    return tuple(nchw[p] for p in TO_NHWC) if layout == "NHWC" else tuple(nchw)


def conv2d_shape(
    x: Sequence[int],
    w: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    layout: str = "NCHW",
) -> tuple[int, ...]:
    """The result shape of a conv2d of input `x` (in `layout`) and FCHW weights `w`."""
    check_layout(layout, "conv2d")
    if len(x) != 4 or len(w) != 4:
        raise ShapeError(f"conv2d needs {layout} input and FCHW weights, got {tuple(x)}, {tuple(w)}")
    x = as_nchw(x, layout)
    if len(stride) != 2 or len(dilation) != 2 or len(padding) != 4:
        raise ShapeError("conv2d needs 2 strides, 2 dilations and 4 paddings (top, left, bottom, right)")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ShapeError(f"conv2d stride/dilation must be >= 1 and padding >= 0, got "
                         f"stride={tuple(stride)} dilation={tuple(dilation)} padding={tuple(padding)}")
    n, c, h, wd = x
    f, cg, kh, kw = w
    if groups < 1 or c % groups or f % groups:
        raise ShapeError(f"conv2d groups={groups} must divide input channels {c} and filters {f}")
    if cg != c // groups:
        raise ShapeError(f"conv2d weights have {cg} channels per group, input gives {c}/{groups}")
    oh = window_out(h, kh, stride[0], padding[0], padding[2], dilation[0])
    ow = window_out(wd, kw, stride[1], padding[1], padding[3], dilation[1])
    if oh < 1 or ow < 1:
        raise ShapeError(f"conv2d output would be empty for input {in_layout(x, layout)} and weights {tuple(w)}")
    return in_layout((n, f, oh, ow), layout)


def pool_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dil: int, ceil_mode: bool) -> int:
    """Output length of a pooling window; with ceil_mode a last partial window counts when it
    starts inside the input or its leading padding (ONNX and PyTorch's rule)."""
    span = size + pad_lo + pad_hi - dil * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= size + pad_lo else out


def pool2d_shape(x: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                 dilation: Sequence[int] = (1, 1), ceil_mode: bool = False, layout: str = "NCHW") -> tuple[int, ...]:
    check_layout(layout, "pool2d")
    if len(x) != 4:
        raise ShapeError(f"pool2d needs an {layout} input, got {tuple(x)}")
    given, x = tuple(x), as_nchw(x, layout)
    if len(kernel) != 2 or len(stride) != 2 or len(padding) != 4 or len(dilation) != 2:
        raise ShapeError("pool2d needs 2 kernel sizes, 2 strides, 2 dilations and 4 paddings")
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0 or min(dilation) < 1:
        raise ShapeError(f"pool2d kernel/stride/dilation must be >= 1 and padding >= 0, got "
                         f"kernel={tuple(kernel)} stride={tuple(stride)} dilation={tuple(dilation)} "
                         f"padding={tuple(padding)}")
    span = [dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1]
    if padding[0] >= span[0] or padding[1] >= span[1] or padding[2] >= span[0] or padding[3] >= span[1]:
        raise ShapeError(f"pool2d padding {tuple(padding)} must be smaller than the kernel {tuple(span)}")
    n, c, h, w = x
    oh = pool_out(h, kernel[0], stride[0], padding[0], padding[2], dilation[0], ceil_mode)
    ow = pool_out(w, kernel[1], stride[1], padding[1], padding[3], dilation[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise ShapeError(f"pool2d output would be empty for input {given}")
    return in_layout((n, c, oh, ow), layout)


def broadcast_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            raise ShapeError(f"shapes {tuple(a)} and {tuple(b)} do not broadcast")
        out.append(max(da, db))
    return tuple(reversed(out))


def normalize_axes(axes: Sequence[int], rank: int, what: str) -> tuple[int, ...]:
    norm = []
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"{what}: axis {a} is out of range for rank {rank}")
        norm.append(a % rank)
    if len(set(norm)) != len(norm):
        raise ShapeError(f"{what}: repeated axis in {tuple(axes)}")
    return tuple(sorted(norm))


def reduce_shape(x: Sequence[int], axes: Sequence[int], keepdims: bool) -> tuple[int, ...]:
    axes = normalize_axes(axes, len(x), "reduce")
    if not axes:
        raise ShapeError("reduce needs at least one axis")
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def axis_of(shape: Sequence[int], axis: int, what: str) -> int:
    return normalize_axes([axis], len(shape), what)[0]


def topk_shape(x: Sequence[int], k: int, axis: int) -> tuple[int, ...]:
    a = axis_of(x, axis, "topk")
    if not 1 <= k <= x[a]:
        raise ShapeError(f"topk: k={k} must be between 1 and the size {x[a]} of axis {axis}")
    return tuple(k if i == a else d for i, d in enumerate(x))


def take_along_axis_shape(x: Sequence[int], idx: Sequence[int], axis: int) -> tuple[int, ...]:
    a = axis_of(x, axis, "take_along_axis")
    if len(idx) != len(x) or any(i != a and di != dx for i, (di, dx) in enumerate(zip(idx, x))):
        raise ShapeError(f"take_along_axis: indices {tuple(idx)} must match {tuple(x)} except on axis {axis}")
    return tuple(idx)


def nms_shape(boxes: Sequence[int], scores: Sequence[int], max_output: int, iou_threshold: float,
              score_threshold: float) -> tuple[int, ...]:
    if len(boxes) != 2 or boxes[1] != 4:
        raise ShapeError(f"nms: boxes must have shape (N, 4), got {tuple(boxes)}")
    if tuple(scores) != (boxes[0],):
        raise ShapeError(f"nms: scores must have shape ({boxes[0]},) to match the boxes, got {tuple(scores)}")
    if max_output < 1:
        raise ShapeError(f"nms: max_output must be >= 1, got {max_output}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ShapeError(f"nms: iou_threshold must be in [0, 1], got {iou_threshold}")
    if score_threshold != score_threshold:
        raise ShapeError("nms: score_threshold is NaN")
    return (max_output,)


# ---- ops --------------------------------------------------------------------------------


class TensorOp(IRDLOperation, ABC):
    """Common part: a stage name, one tensor result, a check that it has the right shape."""

    stage = prop_def(StringAttr, prop_name="name")
    result = result_def(TensorType)
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    @property
    def stage_name(self) -> str:
        return self.stage.data

    @abstractmethod
    def expected_shape(self) -> tuple[int, ...]:
        """The result shape the operands and attributes call for (ShapeError if none)."""

    def operand_dtypes(self) -> tuple[str, ...]:
        """The element type each operand must have: "float" (any of FLOAT_DTYPES, one for all
        such operands) unless an op says otherwise."""
        return ("float",) * len(self.operands)

    def float_dtype(self) -> str:
        """The float element type of the "float" operands (ShapeError when they differ)."""
        dts = [dtype_of(v) for v, want in zip(self.operands, self.operand_dtypes()) if want == "float"]
        return common_float_dtype(f"{self.name} '{self.stage_name}'", dts)

    def result_dtype(self) -> str:
        return self.float_dtype()

    def verify_(self) -> None:
        label = f"{self.name} '{self.stage_name}'"
        if not STAGE_NAME.fullmatch(self.stage_name):
            raise VerifyException(f"{self.name}: stage name {self.stage_name!r} must be an identifier "
                                  "(letters, digits, _)")
        try:
            for k, (v, want) in enumerate(zip(self.operands, self.operand_dtypes())):
                got = dtype_of(v)
                if want == "float" and got not in FLOAT_DTYPES:
                    raise ShapeError(f"operand {k} must be a float tensor ({', '.join(FLOAT_DTYPES)}), got {v.type}")
                if want != "float" and got != want:
                    raise ShapeError(f"operand {k} must be an {want} tensor, got {v.type}")
            self.float_dtype()
            want_result = self.result_dtype()
            expected = self.expected_shape()
        except ShapeError as e:
            text = str(e)
            raise VerifyException(text if text.startswith(label) else f"{label}: {text}") from None
        got = shape_of(self.result)
        try:
            check_size(got, "result")
        except ShapeError as e:
            raise VerifyException(f"{self.name} '{self.stage_name}': {e}") from None
        if got != expected:
            raise VerifyException(
                f"{label}: result shape {got} should be {expected}"
            )
        if element_dtype(self.result.type.element_type) != want_result:
            raise VerifyException(f"{label}: result must be an {want_result} tensor, got {self.result.type}")


def _float_of(*values: SSAValue) -> str:
    """The element type of the first float operand (the result type elementwise ops take)."""
    for v in values:
        d = element_dtype(v.type.element_type) if isinstance(v.type, TensorType) else None
        if d in FLOAT_DTYPES:
            return d
    return "f32"


def _props(name: str, **kw: Attribute | None) -> dict[str, Attribute]:
    props: dict[str, Attribute] = {"name": StringAttr(name)}
    props.update({k: v for k, v in kw.items() if v is not None})
    return props


class ProductOp(TensorOp):
    """matmul and conv2d: products summed in f32 (any input type), the result in the inputs'
    type unless it is declared f32; `compute = "tf32"` or `"3xtf32"` (f32 inputs only) lets
    the products be taken on tensor cores (COMPUTE_MODES)."""

    compute = opt_prop_def(StringAttr)

    def compute_mode(self) -> str | None:
        return None if self.compute is None else self.compute.data

    def result_dtype(self) -> str:
        return product_result_dtype(f"{self.name} '{self.stage_name}'", self.float_dtype(),
                                    element_dtype(self.result.type.element_type), self.compute_mode())


def _product_props(name: str, compute: str | None, **kw) -> dict[str, Attribute]:
    return _props(name, compute=None if compute is None else StringAttr(compute), **kw)


@irdl_op_definition
class MatmulOp(ProductOp):
    """C[i, j] = sum_k A[i, k] * B[k, j]; loops i, j and reduction k. With `columns`, C is the
    first `columns` of the product's columns (B's others, padding that lets the product take
    a tensor-core tile, are never read)."""

    name = "tensorop.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    columns = opt_prop_def(IntegerAttr)
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue, name: str, compute: str | None = None,
                 out_dtype: str | None = None, columns: int | None = None):
        out = matmul_columns(matmul_shape(shape_of(lhs), shape_of(rhs)), columns)
        super().__init__(operands=[lhs, rhs], result_types=[tensor_type(out, out_dtype or _float_of(lhs, rhs))],
                         properties=_product_props(name, compute,
                                                   columns=None if columns is None else IntegerAttr(columns, i64)))

    def column_count(self) -> int | None:
        return None if self.columns is None else self.columns.value.data

    def expected_shape(self):
        return matmul_columns(matmul_shape(shape_of(self.lhs), shape_of(self.rhs)), self.column_count())


def _layout_prop(layout: str) -> StringAttr | None:
    """The `layout` property of a conv2d or pool2d: none for NCHW (the default)."""
    return None if layout == "NCHW" else StringAttr(layout)


class WindowOp(TensorOp):
    """conv2d and pool2d: an optional `layout`, "NCHW" when absent or "NHWC" (LAYOUTS), of
    their input and result."""

    layout = opt_prop_def(StringAttr)

    def data_layout(self) -> str:
        return "NCHW" if self.layout is None else self.layout.data

    def nchw_input_shape(self) -> tuple[int, ...]:
        """The input's shape in NCHW order, whatever its layout."""
        return as_nchw(shape_of(self.input), self.data_layout())

    def nchw_result_shape(self) -> tuple[int, ...]:
        return as_nchw(shape_of(self.result), self.data_layout())


@irdl_op_definition
class Conv2dOp(ProductOp, WindowOp):
    """Input and result in `layout` (NCHW by default; NHWC: channels last), weights FCHW
    (ONNX's OIHW) in either layout; loops n, f, y, x and reductions rc, ry, rx in both
    layouts (only the indexing differs)."""

    name = "tensorop.conv2d"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)
    dilation = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr)
    assembly_format = "$input `,` $weight attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, w: SSAValue, name: str, stride, padding, dilation, groups: int,
                 compute: str | None = None, out_dtype: str | None = None, layout: str = "NCHW"):
        out = conv2d_shape(shape_of(x), shape_of(w), stride, padding, dilation, groups, layout)
        super().__init__(
            operands=[x, w],
            result_types=[tensor_type(out, out_dtype or _float_of(x, w))],
            properties=_product_props(name, compute, stride=ints(stride), padding=ints(padding),
                                      dilation=ints(dilation), groups=IntegerAttr(groups, i64),
                                      layout=_layout_prop(layout)),
        )

    def expected_shape(self):
        return conv2d_shape(shape_of(self.input), shape_of(self.weight), self.stride.get_values(),
                            self.padding.get_values(), self.dilation.get_values(), self.groups.value.data,
                            self.data_layout())


@irdl_op_definition
class Pool2dOp(WindowOp):
    """Max or average pooling over `layout` (NCHW by default, or NHWC); loops n, c, y, x and
    reductions ry, rx in both layouts.

    Optional: `dilation` (default 1, 1), `ceil_mode` (a last partial window, see pool_out) and
    `count_include_pad` (average pooling divides by the window's size inside the padded
    input; by default it divides by the number of in-bounds elements)."""

    name = "tensorop.pool2d"
    input = operand_def(TensorType)
    kind = prop_def(StringAttr)
    kernel = prop_def(DenseArrayBase)
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)
    dilation = opt_prop_def(DenseArrayBase)
    ceil_mode = opt_prop_def(IntegerAttr)
    count_include_pad = opt_prop_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, kind: str, kernel, stride, padding, dilation=(1, 1),
                 ceil_mode: bool = False, count_include_pad: bool = False, layout: str = "NCHW"):
        out = pool2d_shape(shape_of(x), kernel, stride, padding, dilation, ceil_mode, layout)
        super().__init__(
            operands=[x],
            result_types=[tensor_type(out, _float_of(x))],
            properties=_props(name, kind=StringAttr(kind), kernel=ints(kernel), stride=ints(stride),
                              padding=ints(padding),
                              dilation=None if tuple(dilation) == (1, 1) else ints(dilation),
                              ceil_mode=_flag(True) if ceil_mode else None,
                              count_include_pad=_flag(True) if count_include_pad else None,
                              layout=_layout_prop(layout)),
        )

    def dilations(self) -> tuple[int, int]:
        return (1, 1) if self.dilation is None else tuple(self.dilation.get_values())

    def is_ceil_mode(self) -> bool:
        return self.ceil_mode is not None and bool(self.ceil_mode.value.data)

    def includes_pad(self) -> bool:
        return self.count_include_pad is not None and bool(self.count_include_pad.value.data)

    def expected_shape(self):
        if self.kind.data not in POOL_KINDS:
            raise ShapeError(f"kind '{self.kind.data}' is not one of {', '.join(POOL_KINDS)}")
        if self.kind.data == "avg" and self.dilations() != (1, 1):
            raise ShapeError("average pooling with dilations is not supported")
        return pool2d_shape(shape_of(self.input), self.kernel.get_values(), self.stride.get_values(),
                            self.padding.get_values(), self.dilations(), self.is_ceil_mode(), self.data_layout())


@irdl_op_definition
class UnaryOp(TensorOp):
    """Elementwise fn(x) for fn in UNARY_FNS; `clip` uses lo/hi, the fns of UNARY_PARAMS
    alpha/beta (relu6 is clip(0, 6)). Loops d0, d1, ..."""

    name = "tensorop.unary"
    input = operand_def(TensorType)
    fn = prop_def(StringAttr)
    lo = opt_prop_def(Attribute)
    hi = opt_prop_def(Attribute)
    alpha = opt_prop_def(Attribute)
    beta = opt_prop_def(Attribute)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, fn: str, lo: float | None = None, hi: float | None = None,
                 alpha: float | None = None, beta: float | None = None):
        def f(v):
            return None if v is None else FloatAttr(float(v), f32)

        super().__init__(
            operands=[x],
            result_types=[tensor_type(shape_of(x), _float_of(x))],
            properties=_props(name, fn=StringAttr(fn), lo=f(lo), hi=f(hi), alpha=f(alpha), beta=f(beta)),
        )

    def bounds(self) -> tuple[float, float]:
        """(lo, hi) of clip; relu6 is clip(0, 6)."""
        if self.fn.data == "relu6":
            return 0.0, 6.0
        return float(self.lo.value.data), float(self.hi.value.data)

    def params(self) -> dict[str, float]:
        """The fn's float parameters by name (those UNARY_PARAMS lists; lo/hi of relu6 too)."""
        if self.fn.data in ("clip", "relu6"):
            return dict(zip(("lo", "hi"), self.bounds()))
        return {p: float(getattr(self, p).value.data) for p in UNARY_PARAMS.get(self.fn.data, ())}

    def expected_shape(self):
        if self.fn.data not in UNARY_FNS:
            raise ShapeError(f"fn '{self.fn.data}' is not one of {', '.join(UNARY_FNS)}")
        for p in UNARY_PARAMS.get(self.fn.data, ()):
            if getattr(self, p) is None:
                names = UNARY_PARAMS[self.fn.data]
                raise ShapeError(f"{self.fn.data} needs {'both ' if len(names) == 2 else ''}{' and '.join(names)}")
            if not isinstance(getattr(self, p), FloatAttr):
                raise ShapeError(f"{self.fn.data}: {p} must be an f32 float, got {getattr(self, p)}")
        if self.fn.data == "clip":
            lo, hi = self.bounds()
            if lo > hi:
                raise ShapeError(f"clip lo {lo} is above hi {hi}")
        return shape_of(self.input)


@irdl_op_definition
class BinaryOp(TensorOp):
    """Elementwise fn(a, b) with numpy broadcasting (prelu: a < 0 ? b * a : a, b the slope).
    Loops d0, d1, ..."""

    name = "tensorop.binary"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    fn = prop_def(StringAttr)
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"

    def __init__(self, a: SSAValue, b: SSAValue, name: str, fn: str):
        out = broadcast_shape(shape_of(a), shape_of(b))
        super().__init__(operands=[a, b], result_types=[tensor_type(out, _float_of(a, b))],
                         properties=_props(name, fn=StringAttr(fn)))

    def expected_shape(self):
        if self.fn.data not in BINARY_FNS:
            raise ShapeError(f"fn '{self.fn.data}' is not one of {', '.join(BINARY_FNS)}")
        return broadcast_shape(shape_of(self.lhs), shape_of(self.rhs))


@irdl_op_definition
class BiasAddOp(TensorOp):
    """out = x + bias broadcast along `axis` (bias is 1-D of x's size there). Loops d0, ..."""

    name = "tensorop.bias_add"
    input = operand_def(TensorType)
    bias = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    assembly_format = "$input `,` $bias attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, b: SSAValue, name: str, axis: int):
        super().__init__(operands=[x, b], result_types=[tensor_type(shape_of(x), _float_of(x))],
                         properties=_props(name, axis=IntegerAttr(axis, i64)))

    def expected_shape(self):
        x, b = shape_of(self.input), shape_of(self.bias)
        (axis,) = normalize_axes([self.axis.value.data], len(x), "bias_add")
        if b != (x[axis],):
            raise ShapeError(f"bias shape {b} should be ({x[axis]},) for axis {axis} of {x}")
        return x


@irdl_op_definition
class ReduceOp(TensorOp):
    """sum/max/mean over `axes`; loops d<k> over the output, reductions r<k> over the axes."""

    name = "tensorop.reduce"
    input = operand_def(TensorType)
    fn = prop_def(StringAttr)
    axes = prop_def(DenseArrayBase)
    keepdims = prop_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, fn: str, axes: Sequence[int], keepdims: bool):
        out = reduce_shape(shape_of(x), axes, keepdims)
        super().__init__(operands=[x], result_types=[tensor_type(out, _float_of(x))],
                         properties=_props(name, fn=StringAttr(fn), axes=ints(axes),
                                           keepdims=IntegerAttr(int(keepdims), i64)))

    def reduced_axes(self) -> tuple[int, ...]:
        return normalize_axes(self.axes.get_values(), len(shape_of(self.input)), "reduce")

    def expected_shape(self):
        if self.fn.data not in REDUCE_FNS:
            raise ShapeError(f"fn '{self.fn.data}' is not one of {', '.join(REDUCE_FNS)}")
        return reduce_shape(shape_of(self.input), self.axes.get_values(), bool(self.keepdims.value.data))


@irdl_op_definition
class SoftmaxOp(TensorOp):
    """exp(x - max) / sum(exp(x - max)) along `axis`; with `log` set, the log-softmax
    x - max - log(sum(exp(x - max))).

    Lowers to three stages: `<name>.max`, `<name>.sum` (loops d<k>, reduction r0) and
    `<name>` (loops d0, d1, ...)."""

    name = "tensorop.softmax"
    input = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    log = opt_prop_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, axis: int, log: bool = False):
        super().__init__(operands=[x], result_types=[tensor_type(shape_of(x), _float_of(x))],
                         properties=_props(name, axis=IntegerAttr(axis, i64), log=_flag(True) if log else None))

    def softmax_axis(self) -> int:
        return normalize_axes([self.axis.value.data], len(shape_of(self.input)), "softmax")[0]

    def is_log(self) -> bool:
        return self.log is not None and bool(self.log.value.data)

    def expected_shape(self):
        self.softmax_axis()
        return shape_of(self.input)


@irdl_op_definition
class NormalizeOp(TensorOp):
    """(x - mean) / sqrt(var + epsilon), mean and (biased) variance over `axes`: the core of
    LayerNormalization, InstanceNormalization and GroupNormalization (their scale and bias are
    elementwise ops after it).

    Lowers to three stages: `<name>.mean`, `<name>.var` (loops d<k> over the kept axes,
    reductions r<k>) and `<name>` (loops d0, d1, ...)."""

    name = "tensorop.normalize"
    input = operand_def(TensorType)
    axes = prop_def(DenseArrayBase)
    epsilon = prop_def(FloatAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, axes: Sequence[int], epsilon: float):
        reduce_shape(shape_of(x), axes, False)
        super().__init__(operands=[x], result_types=[tensor_type(shape_of(x), _float_of(x))],
                         properties=_props(name, axes=ints(axes), epsilon=FloatAttr(float(epsilon), f32)))

    def reduced_axes(self) -> tuple[int, ...]:
        return normalize_axes(self.axes.get_values(), len(shape_of(self.input)), "normalize")

    def expected_shape(self):
        reduce_shape(shape_of(self.input), self.axes.get_values(), False)
        if not float(self.epsilon.value.data) >= 0:
            raise ShapeError(f"epsilon must be >= 0, got {self.epsilon.value.data}")
        return shape_of(self.input)


def _flag(v: bool) -> IntegerAttr:
    return IntegerAttr(int(v), i64)


@irdl_op_definition
class ScanOp(TensorOp):
    """Prefix sum along `axis` (ONNX CumSum): out[i] = sum of x[j] for j <= i (j < i when
    `exclusive`; j >= i / j > i when `reverse`).

    Lowers to ceil(log2 n) Hillis-Steele steps (at least one): stages `<name>.step0`, ...,
    `<name>.step<K-2>` into buffers of their own, then `<name>`; each step is elementwise
    (loops d0, d1, ...) and adds the element 2^k places back."""

    name = "tensorop.scan"
    input = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    exclusive = prop_def(IntegerAttr)
    reverse = prop_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, axis: int, exclusive: bool = False, reverse: bool = False):
        super().__init__(operands=[x], result_types=[tensor_type(shape_of(x), _float_of(x))],
                         properties=_props(name, axis=IntegerAttr(axis, i64), exclusive=_flag(exclusive),
                                           reverse=_flag(reverse)))

    def scan_axis(self) -> int:
        return axis_of(shape_of(self.input), self.axis.value.data, "scan")

    def expected_shape(self):
        self.scan_axis()
        return shape_of(self.input)


@irdl_op_definition
class ArgsortOp(TensorOp):
    """i32 indices that sort x along `axis`, stable (equal values keep their index order).

    Stages `<name>.rank` (i32; loops d0, ..., reduction j: how many elements come before
    element i) and `<name>` (loops d0, ...: out[rank[i]] = i, a scatter)."""

    name = "tensorop.argsort"
    input = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    descending = prop_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, axis: int, descending: bool = True):
        super().__init__(operands=[x], result_types=[tensor_type(shape_of(x), "i32")],
                         properties=_props(name, axis=IntegerAttr(axis, i64), descending=_flag(descending)))

    def result_dtype(self) -> str:
        return "i32"

    def sort_axis(self) -> int:
        return axis_of(shape_of(self.input), self.axis.value.data, "argsort")

    def expected_shape(self):
        self.sort_axis()
        return shape_of(self.input)


@irdl_op_definition
class TopkOp(TensorOp):
    """i32 indices of the k largest (`largest`) or smallest elements along `axis`, in sorted
    order, ties by lower index (ONNX TopK's indices; its values are `take_along_axis`).

    Stages `<name>.rank` as in argsort and `<name>` (loops d0, ... over the input:
    out[rank[i]] = i where rank[i] < k)."""

    name = "tensorop.topk"
    input = operand_def(TensorType)
    k = prop_def(IntegerAttr)
    axis = prop_def(IntegerAttr)
    largest = prop_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, k: int, axis: int, largest: bool = True):
        super().__init__(operands=[x], result_types=[tensor_type(topk_shape(shape_of(x), k, axis), "i32")],
                         properties=_props(name, k=IntegerAttr(k, i64), axis=IntegerAttr(axis, i64),
                                           largest=_flag(largest)))

    def result_dtype(self) -> str:
        return "i32"

    def sort_axis(self) -> int:
        return axis_of(shape_of(self.input), self.axis.value.data, "topk")

    def expected_shape(self):
        return topk_shape(shape_of(self.input), self.k.value.data, self.axis.value.data)


@irdl_op_definition
class TakeAlongAxisOp(TensorOp):
    """out[..., t, ...] = x[..., indices[..., t, ...], ...] along `axis` (numpy's
    take_along_axis; the indices, i32, must lie in [0, n)). Loops d0, d1, ... over out."""

    name = "tensorop.take_along_axis"
    input = operand_def(TensorType)
    indices = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    assembly_format = "$input `,` $indices attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, idx: SSAValue, name: str, axis: int):
        out = take_along_axis_shape(shape_of(x), shape_of(idx), axis)
        super().__init__(operands=[x, idx], result_types=[tensor_type(out, _float_of(x))],
                         properties=_props(name, axis=IntegerAttr(axis, i64)))

    def operand_dtypes(self) -> tuple[str, ...]:
        return ("float", "i32")

    def gather_axis(self) -> int:
        return axis_of(shape_of(self.input), self.axis.value.data, "take_along_axis")

    def expected_shape(self):
        return take_along_axis_shape(shape_of(self.input), shape_of(self.indices), self.axis.value.data)


@irdl_op_definition
class NmsOp(TensorOp):
    """Greedy non-maximum suppression of one batch and class, as ONNX NonMaxSuppression with
    center_point_box=0: boxes (N, 4) as [y1, x1, y2, x2] (either corner order), scores (N,);
    the i32 result (max_output,) holds the kept box indices by decreasing score (ties: lower
    index first), padded with -1. A box is a candidate when score > score_threshold (every
    box when it is -inf); a candidate is kept unless its IoU with a kept box of higher
    rank is > iou_threshold.

    Stages: `<name>.rank` and `<name>.order` (the boxes sorted by score, as argsort),
    `<name>.supp` (loop `step`, sequential, then `box`: whether the box of each rank is
    suppressed), `<name>.pos` (exclusive scan of the kept flags, as scan) and `<name>`
    (loop m, reduction `rank`)."""

    name = "tensorop.nms"
    boxes = operand_def(TensorType)
    scores = operand_def(TensorType)
    max_output = prop_def(IntegerAttr)
    iou_threshold = prop_def(FloatAttr)
    score_threshold = prop_def(FloatAttr)
    assembly_format = "$boxes `,` $scores attr-dict `:` functional-type(operands, results)"

    def __init__(self, boxes: SSAValue, scores: SSAValue, name: str, max_output: int, iou_threshold: float,
                 score_threshold: float = float("-inf")):
        out = nms_shape(shape_of(boxes), shape_of(scores), max_output, iou_threshold, score_threshold)
        super().__init__(operands=[boxes, scores], result_types=[tensor_type(out, "i32")],
                         properties=_props(name, max_output=IntegerAttr(max_output, i64),
                                           iou_threshold=FloatAttr(float(iou_threshold), f32),
                                           score_threshold=FloatAttr(float(score_threshold), f32)))

    def result_dtype(self) -> str:
        return "i32"

    def thresholds(self) -> tuple[float, float]:
        return float(self.iou_threshold.value.data), float(self.score_threshold.value.data)

    def expected_shape(self):
        return nms_shape(shape_of(self.boxes), shape_of(self.scores), self.max_output.value.data,
                         *self.thresholds())
@irdl_op_definition
class CastOp(TensorOp):
    """The same values in another float element type (f32, f16, bf16), rounded to nearest
    even where the target has fewer bits. Loops d0, d1, ..."""

    name = "tensorop.cast"
    input = operand_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, to: str):
        super().__init__(operands=[x], result_types=[tensor_type(shape_of(x), to)], properties=_props(name))

    def result_dtype(self) -> str:
        self.float_dtype()
        to = element_dtype(self.result.type.element_type)
        if to not in FLOAT_DTYPES:
            raise ShapeError(f"casts to {self.result.type.element_type}; the result must be one of "
                             f"{', '.join(FLOAT_DTYPES)}")
        return to

    def expected_shape(self):
        return shape_of(self.input)


# ops computed element by element from their chained input: a fused group's epilogue members
ELEMENTWISE = (UnaryOp, BinaryOp, BiasAddOp, CastOp)


# ---- graph-level ops (whole models): reshape, concat, host calls, copies ------------------------


def reshape_shape(x: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if not shape or min(shape) < 1:
        raise ShapeError(f"reshape target {shape} must have dimensions >= 1")
    if _prod(x) != _prod(shape):
        raise ShapeError(f"reshape of {tuple(x)} ({_prod(x)} elements) to {shape} ({_prod(shape)} elements)")
    return shape


def concat_shape(xs: Sequence[Sequence[int]], axis: int) -> tuple[int, ...]:
    if not xs:
        raise ShapeError("concat needs at least one operand")
    rank = len(xs[0])
    (ax,) = normalize_axes([axis], rank, "concat")
    for x in xs:
        if len(x) != rank or any(a != b for k, (a, b) in enumerate(zip(x, xs[0])) if k != ax):
            raise ShapeError(f"concat along axis {axis}: shapes {[tuple(s) for s in xs]} differ off that axis")
    out = list(xs[0])
    out[ax] = sum(x[ax] for x in xs)
    return tuple(out)


def _prod(xs: Sequence[int]) -> int:
    n = 1
    for d in xs:
        n *= int(d)
    return n


@irdl_op_definition
class ReshapeOp(TensorOp):
    """The same elements (row-major order) in another shape, f32 or i32. Loops d0, d1, ...
    over the output."""

    name = "tensorop.reshape"
    input = operand_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, shape: Sequence[int]):
        out = reshape_shape(shape_of(x), shape)
        super().__init__(operands=[x], result_types=[tensor_type(out, dtype_of(x))], properties=_props(name))

    def operand_dtypes(self) -> tuple[str, ...]:
        return ("i32",) if dtype_of(self.input) == "i32" else ("float",)

    def result_dtype(self) -> str:
        return dtype_of(self.input)

    def expected_shape(self):
        return reshape_shape(shape_of(self.input), shape_of(self.result))


@irdl_op_definition
class ConcatOp(TensorOp):
    """Operands joined along `axis`. Loops d0, d1, ... over the output."""

    name = "tensorop.concat"
    inputs = var_operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    assembly_format = "$inputs attr-dict `:` functional-type(operands, results)"

    def __init__(self, xs: Sequence[SSAValue], name: str, axis: int):
        out = concat_shape([shape_of(x) for x in xs], axis)
        super().__init__(operands=[list(xs)], result_types=[tensor_type(out, _float_of(*xs))],
                         properties=_props(name, axis=IntegerAttr(axis, i64)))

    def concat_axis(self) -> int:
        return normalize_axes([self.axis.value.data], len(shape_of(self.result)), "concat")[0]

    def expected_shape(self):
        return concat_shape([shape_of(x) for x in self.inputs], self.axis.value.data)


REMAP_MODES = ("strict", "constant", "edge", "reflect", "wrap")


def remap_ranges(x: Sequence[int], out: Sequence[int], source: Sequence[int], step: Sequence[int],
                 offset: Sequence[int], mode: str) -> None:
    """Checks a remap (see RemapOp): for every input dimension, the indices it reads must lie
    in the input (strict), within one reflection of it (reflect); any for the other modes."""
    x, out = tuple(x), tuple(out)
    if mode not in REMAP_MODES:
        raise ShapeError(f"mode '{mode}' is not one of {', '.join(REMAP_MODES)}")
    if not out or min(out) < 1:
        raise ShapeError(f"remap result {out} must have dimensions >= 1")
    if not len(source) == len(step) == len(offset) == len(x):
        raise ShapeError(f"remap needs a source, step and offset for each of the {len(x)} input dimensions")
    for d, (n, src, st, off) in enumerate(zip(x, source, step, offset)):
        if not -1 <= src < len(out):
            raise ShapeError(f"remap: input dimension {d} follows output dimension {src}, which {out} lacks")
        last = off if src < 0 else off + st * (out[src] - 1)
        lo, hi = min(off, last), max(off, last)
        if mode == "strict" and (lo < 0 or hi >= n):
            raise ShapeError(f"remap: input dimension {d} (size {n}) is read at {lo}..{hi}")
        if mode == "reflect" and (lo < -(n - 1) or hi > 2 * (n - 1)):
            raise ShapeError(f"remap: reflect reads input dimension {d} (size {n}) at {lo}..{hi}, "
                             "more than one reflection away")


# The remaps of common data-movement operators: (output shape, source, step, offset).
Remap = tuple[tuple[int, ...], list[int], list[int], list[int]]


def transpose_remap(x: Sequence[int], perm: Sequence[int]) -> Remap:
    if sorted(perm) != list(range(len(x))):
        raise ShapeError(f"transpose: {tuple(perm)} is not a permutation of the {len(x)} dimensions of {tuple(x)}")
    return tuple(x[p] for p in perm), [list(perm).index(d) for d in range(len(x))], [1] * len(x), [0] * len(x)


def slice_remap(x: Sequence[int], starts: Sequence[int], ends: Sequence[int], axes: Sequence[int],
                steps: Sequence[int]) -> Remap:
    """numpy's (and ONNX Slice's) x[start:end:step] on each of `axes`, the bounds clamped."""
    out, offset, step = list(x), [0] * len(x), [1] * len(x)
    axes_n = [axis_of(x, a, "slice") for a in axes]
    if len(set(axes_n)) != len(axes_n):
        raise ShapeError(f"slice: repeated axis in {tuple(axes)}")
    for a, b, e, st in zip(axes_n, starts, ends, steps):
        if st == 0:
            raise ShapeError("slice: a step is 0")
        lo, hi, st = slice(int(b), int(e), int(st)).indices(x[a])
        out[a] = len(range(lo, hi, st))
        if out[a] == 0:
            raise ShapeError(f"slice of axis {a} (size {x[a]}) from {b} to {e} by {st} is empty")
        offset[a], step[a] = lo, st
    return tuple(out), list(range(len(x))), step, offset


def pad_remap(x: Sequence[int], pads: Sequence[int]) -> Remap:
    """pads as ONNX gives them: all the leading pads, then all the trailing ones (negative
    pads crop)."""
    r = len(x)
    if len(pads) != 2 * r:
        raise ShapeError(f"pad needs {2 * r} pads for {tuple(x)}, got {len(pads)}")
    out = tuple(n + int(pads[d]) + int(pads[d + r]) for d, n in enumerate(x))
    return out, list(range(r)), [1] * r, [-int(p) for p in pads[:r]]


def tile_remap(x: Sequence[int], repeats: Sequence[int]) -> Remap:
    if len(repeats) != len(x) or min(repeats, default=1) < 1:
        raise ShapeError(f"tile needs one repeat >= 1 per dimension of {tuple(x)}, got {tuple(repeats)}")
    return tuple(n * int(k) for n, k in zip(x, repeats)), list(range(len(x))), [1] * len(x), [0] * len(x)


def expand_remap(x: Sequence[int], shape: Sequence[int]) -> Remap:
    """Broadcast x to broadcast_shape(x, shape) (ONNX Expand)."""
    out = broadcast_shape(x, shape)
    lead = len(out) - len(x)
    source = [-1 if n == 1 and out[lead + d] != 1 else lead + d for d, n in enumerate(x)]
    return out, source, [1] * len(x), [0] * len(x)


@irdl_op_definition
class RemapOp(TensorOp):
    """Data movement by an index map: out[o] = x[i] where, for every input dimension d,
    i[d] = offset[d] + step[d] * o[source[d]] (just offset[d] when source[d] = -1). Output
    dimensions no input dimension follows are broadcast. Transpose, Slice (any step), Split,
    Expand, Tile, Pad and Gather at a constant index are remaps.

    Indices outside the input follow `mode`: "strict" (none may be), "constant" (read
    `value`), "edge" (the nearest element), "reflect" (mirrored at the ends, without repeating
    them) or "wrap" (modulo the size). Loops d0, d1, ... over the output."""

    name = "tensorop.remap"
    input = operand_def(TensorType)
    source = prop_def(DenseArrayBase)
    step = prop_def(DenseArrayBase)
    offset = prop_def(DenseArrayBase)
    mode = prop_def(StringAttr)
    value = opt_prop_def(FloatAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, shape: Sequence[int], source: Sequence[int], step: Sequence[int],
                 offset: Sequence[int], mode: str = "strict", value: float = 0.0):
        remap_ranges(shape_of(x), shape, source, step, offset, mode)
        super().__init__(operands=[x], result_types=[tensor_type(shape, _float_of(x))],
                         properties=_props(name, source=ints(source), step=ints(step), offset=ints(offset),
                                           mode=StringAttr(mode),
                                           value=FloatAttr(float(value), f32) if mode == "constant" else None))

    def fill(self) -> float:
        return 0.0 if self.value is None else float(self.value.value.data)

    def expected_shape(self):
        remap_ranges(shape_of(self.input), shape_of(self.result), self.source.get_values(), self.step.get_values(),
                     self.offset.get_values(), self.mode.data)
        return shape_of(self.result)


def gather_shape(x: Sequence[int], idx: Sequence[int], axis: int) -> tuple[int, ...]:
    a = axis_of(x, axis, "gather")
    return (*x[:a], *idx, *x[a + 1:])


@irdl_op_definition
class GatherOp(TensorOp):
    """ONNX Gather: out[a.., j.., b..] = x[a.., indices[j..], b..] along `axis`, the i32
    indices in [-n, n) (negative ones count from the end; others are clamped into range, so
    no read leaves the input). Loops d0, d1, ... over the output."""

    name = "tensorop.gather"
    input = operand_def(TensorType)
    indices = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    assembly_format = "$input `,` $indices attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, idx: SSAValue, name: str, axis: int):
        out = gather_shape(shape_of(x), shape_of(idx), axis)
        super().__init__(operands=[x, idx], result_types=[tensor_type(out, _float_of(x))],
                         properties=_props(name, axis=IntegerAttr(axis, i64)))

    def operand_dtypes(self) -> tuple[str, ...]:
        return ("float", "i32")

    def gather_axis(self) -> int:
        return axis_of(shape_of(self.input), self.axis.value.data, "gather")

    def expected_shape(self):
        return gather_shape(shape_of(self.input), shape_of(self.indices), self.axis.value.data)


def im2col_shape(x: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                 dilation: Sequence[int], rows: int = 0, width: int = 0, columns: int = 0) -> tuple[int, ...]:
    """[rows, columns] for an NCHW input: rows >= c * kh * kw (0: exactly that), width >= ow
    (0: exactly ow) and columns >= n * oh * width (0: exactly that), the conv2d output's oh x
    ow for this window."""
    if len(x) != 4:
        raise ShapeError(f"im2col needs an NCHW input, got {tuple(x)}")
    if len(kernel) != 2 or min(kernel) < 1:
        raise ShapeError(f"im2col needs 2 kernel sizes >= 1, got {tuple(kernel)}")
    n, c, h, w = x
    try:
        _, _, oh, ow = conv2d_shape(x, (1, c, *kernel), stride, padding, dilation, 1)
    except ShapeError as e:
        raise ShapeError(f"im2col: {str(e).replace('conv2d ', '')}") from None
    k = c * kernel[0] * kernel[1]
    if rows and rows < k or width and width < ow:
        raise ShapeError(f"im2col rows={rows} and width={width} must be at least the window's {k} rows and the "
                         f"output's {ow} columns")
    least = n * oh * (width or ow)
    if columns and columns < least:
        raise ShapeError(f"im2col columns={columns} must be at least the {least} windows")
    return (rows or k, columns or least)


@irdl_op_definition
class Im2colOp(TensorOp):
    """The windows of conv2d as the columns of a matrix, so that conv2d (groups 1) is a
    matmul of its weights reshaped to [f, c * kh * kw] by this: out[k, p] = x[b, ch, y * sh +
    ry * dh - pt, xx * sw + rx * dw - pl] (0 outside the input) for k = (ch * kh + ry) * kw +
    rx and p = (b * oh + y) * width + xx. Rows beyond c * kh * kw, columns xx beyond ow and
    columns p beyond n * oh * width (`rows`, `width` and the result's columns: padding that
    lets the product fit a tensor-core tile) are 0. Loops d0 (rows) and d1 (columns)."""

    name = "tensorop.im2col"
    input = operand_def(TensorType)
    kernel = prop_def(DenseArrayBase)
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)
    dilation = prop_def(DenseArrayBase)
    width = prop_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, kernel, stride, padding, dilation, rows: int = 0, width: int = 0,
                 columns: int = 0):
        out = im2col_shape(shape_of(x), kernel, stride, padding, dilation, rows, width, columns)
        ow = conv2d_shape(shape_of(x), (1, shape_of(x)[1], *kernel), stride, padding, dilation, 1)[3]
        super().__init__(operands=[x], result_types=[tensor_type(out, _float_of(x))],
                         properties=_props(name, kernel=ints(kernel), stride=ints(stride), padding=ints(padding),
                                           dilation=ints(dilation), width=IntegerAttr(width or ow, i64)))

    def window(self) -> tuple[tuple[int, ...], ...]:
        """(kernel, stride, padding, dilation)."""
        return tuple(tuple(a.get_values()) for a in (self.kernel, self.stride, self.padding, self.dilation))

    def expected_shape(self):
        rows, columns = shape_of(self.result)
        return im2col_shape(shape_of(self.input), *self.window(), rows, self.width.value.data, columns)


# Winograd's minimal filtering F(m x m, 3 x 3) (Lavin and Gray): a 3 x 3 conv's m x m output
# tile is A^T [(G g G^T) * (B^T d B)] A for the (m + 2) x (m + 2) input tile d: (B^T, G, A^T)
WINOGRAD = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def winograd_tiles(out: Sequence[int], tile: int) -> tuple[int, int]:
    """Tiles of `tile` x `tile` outputs down and across an oh x ow output."""
    if tile not in WINOGRAD:
        raise ShapeError(f"winograd tile {tile} is not one of {', '.join(map(str, WINOGRAD))}")
    return -(-out[0] // tile), -(-out[1] // tile)


def winograd_input_tiles(x: Sequence[int], tile: int, padding: Sequence[int]) -> tuple[int, int]:
    """Tiles down and across the output of a 3 x 3, stride-1 conv of an NCHW input."""
    if len(x) != 4:
        raise ShapeError(f"winograd_input needs an NCHW input, got {tuple(x)}")
    try:
        _, _, oh, ow = conv2d_shape(x, (1, x[1], 3, 3), (1, 1), padding, (1, 1), 1)
    except ShapeError as e:
        raise ShapeError(f"winograd_input: {str(e).replace('conv2d ', '')}") from None
    return winograd_tiles((oh, ow), tile)


def winograd_input_shape(x: Sequence[int], tile: int, padding: Sequence[int]) -> tuple[int, ...]:
    """[(tile + 2)^2, c, n * tiles] for a 3 x 3, stride-1 conv's NCHW input."""
    th, tw = winograd_input_tiles(x, tile, padding)
    return ((tile + 2) ** 2, x[1], x[0] * th * tw)


def winograd_weights_shape(w: Sequence[int], tile: int) -> tuple[int, ...]:
    if len(w) != 4 or tuple(w[2:]) != (3, 3):
        raise ShapeError(f"winograd_weights needs 3 x 3 FCHW weights, got {tuple(w)}")
    winograd_tiles((1, 1), tile)
    return ((tile + 2) ** 2, w[0], w[1])


def winograd_output_shape(m: Sequence[int], tile: int, size: Sequence[int]) -> tuple[int, ...]:
    """[n, f, oh, ow] from the products [(tile + 2)^2, f, n * tiles] of an oh x ow output."""
    th, tw = winograd_tiles(size, tile)
    if len(m) != 3 or m[0] != (tile + 2) ** 2 or m[2] % (th * tw):
        raise ShapeError(f"winograd_output needs [{(tile + 2) ** 2}, f, n * {th * tw}] products for a "
                         f"{size[0]} x {size[1]} output in {tile} x {tile} tiles, got {tuple(m)}")
    return (m[2] // (th * tw), m[1], *size)


class WinogradOp(TensorOp):
    """Winograd's transforms (WINOGRAD) of a 3 x 3, stride-1 conv in `tile` x `tile` output
    tiles; a tile index p = (b * th + ty) * tw + tx counts the image and the tile down and
    across."""

    input = operand_def(TensorType)
    tile = prop_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def tile_size(self) -> int:
        return self.tile.value.data


@irdl_op_definition
class WinogradInputOp(WinogradOp):
    """out[xi * a + nu, c, p] = (B^T d B)[xi, nu] for the a x a input tile d at rows ty *
    tile - pt and columns tx * tile - pl of image b, channel c (0 outside the input), a =
    tile + 2. Loops d0 d1 d2."""

    name = "tensorop.winograd_input"
    padding = prop_def(DenseArrayBase)

    def __init__(self, x: SSAValue, name: str, tile: int, padding: Sequence[int]):
        out = winograd_input_shape(shape_of(x), tile, padding)
        super().__init__(operands=[x], result_types=[tensor_type(out, _float_of(x))],
                         properties=_props(name, tile=IntegerAttr(tile, i64), padding=ints(padding)))

    def expected_shape(self):
        return winograd_input_shape(shape_of(self.input), self.tile_size(), self.padding.get_values())


@irdl_op_definition
class WinogradWeightsOp(WinogradOp):
    """out[xi * a + nu, f, c] = (G g G^T)[xi, nu] for the 3 x 3 filter g = w[f, c]. Loops d0
    d1 d2."""

    name = "tensorop.winograd_weights"

    def __init__(self, w: SSAValue, name: str, tile: int):
        out = winograd_weights_shape(shape_of(w), tile)
        super().__init__(operands=[w], result_types=[tensor_type(out, _float_of(w))],
                         properties=_props(name, tile=IntegerAttr(tile, i64)))

    def expected_shape(self):
        return winograd_weights_shape(shape_of(self.input), self.tile_size())


@irdl_op_definition
class WinogradOutputOp(WinogradOp):
    """out[b, f, y, x] = (A^T M A)[y % tile, x % tile] for the a x a products M[xi, nu] =
    input[xi * a + nu, f, p] of tile p = (b * th + y / tile) * tw + x / tile; `size` is (oh,
    ow). Loops d0 d1 d2 d3 (n, f, y, x)."""

    name = "tensorop.winograd_output"
    size = prop_def(DenseArrayBase)

    def __init__(self, m: SSAValue, name: str, tile: int, size: Sequence[int]):
        out = winograd_output_shape(shape_of(m), tile, size)
        super().__init__(operands=[m], result_types=[tensor_type(out, _float_of(m))],
                         properties=_props(name, tile=IntegerAttr(tile, i64), size=ints(size)))

    def expected_shape(self):
        return winograd_output_shape(shape_of(self.input), self.tile_size(), self.size.get_values())


def conv_transpose2d_shape(x: Sequence[int], w: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                           dilation: Sequence[int], output_padding: Sequence[int], groups: int) -> tuple[int, ...]:
    if len(x) != 4 or len(w) != 4:
        raise ShapeError(f"conv_transpose2d needs NCHW input and CFHW weights, got {tuple(x)}, {tuple(w)}")
    if len(stride) != 2 or len(dilation) != 2 or len(padding) != 4 or len(output_padding) != 2:
        raise ShapeError("conv_transpose2d needs 2 strides, 2 dilations, 4 paddings and 2 output paddings")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or min(output_padding) < 0:
        raise ShapeError(f"conv_transpose2d stride/dilation must be >= 1 and paddings >= 0, got stride="
                         f"{tuple(stride)} dilation={tuple(dilation)} padding={tuple(padding)} "
                         f"output_padding={tuple(output_padding)}")
    if any(p >= max(s, d) for p, s, d in zip(output_padding, stride, dilation)):
        raise ShapeError(f"conv_transpose2d output_padding {tuple(output_padding)} must be smaller than the "
                         f"stride {tuple(stride)} or the dilation {tuple(dilation)}")
    n, c, h, wd = x
    cw, fg, kh, kw = w
    if groups < 1 or c % groups:
        raise ShapeError(f"conv_transpose2d groups={groups} must divide the input channels {c}")
    if cw != c:
        raise ShapeError(f"conv_transpose2d weights have {cw} input channels, the input {c}")
    oh = (h - 1) * stride[0] - padding[0] - padding[2] + dilation[0] * (kh - 1) + output_padding[0] + 1
    ow = (wd - 1) * stride[1] - padding[1] - padding[3] + dilation[1] * (kw - 1) + output_padding[1] + 1
    if oh < 1 or ow < 1:
        raise ShapeError(f"conv_transpose2d output would be empty for input {tuple(x)} and weights {tuple(w)}")
    return (n, fg * groups, oh, ow)


@irdl_op_definition
class ConvTranspose2dOp(TensorOp):
    """The transpose (gradient) of conv2d, as ONNX ConvTranspose: NCHW input, weights
    (C, F / groups, KH, KW); out[n, f, y, x] sums x[n, c, iy, ix] * w[c, f', ry, rx] over the
    input channels c of f's group and the window, where y = iy * stride - pad_top + ry * dil.
    Loops n, f, y, x and reductions rc, ry, rx."""

    name = "tensorop.conv_transpose2d"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)
    dilation = prop_def(DenseArrayBase)
    output_padding = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr)
    assembly_format = "$input `,` $weight attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, w: SSAValue, name: str, stride, padding, dilation, output_padding,
                 groups: int):
        out = conv_transpose2d_shape(shape_of(x), shape_of(w), stride, padding, dilation, output_padding, groups)
        super().__init__(operands=[x, w], result_types=[tensor_type(out, _float_of(x, w))],
                         properties=_props(name, stride=ints(stride), padding=ints(padding), dilation=ints(dilation),
                                           output_padding=ints(output_padding), groups=IntegerAttr(groups, i64)))

    def expected_shape(self):
        return conv_transpose2d_shape(shape_of(self.input), shape_of(self.weight), self.stride.get_values(),
                                      self.padding.get_values(), self.dilation.get_values(),
                                      self.output_padding.get_values(), self.groups.value.data)


RESIZE_MODES = ("nearest", "linear")
RESIZE_COORDS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn")
RESIZE_ROUNDING = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@irdl_op_definition
class ResizeOp(TensorOp):
    """ONNX Resize (and Upsample) of every dimension by `scales`, the output shape given:
    `mode` nearest or linear (multilinear over the dimensions that change), the output
    coordinate mapped back to the input by `coordinate` (ONNX coordinate_transformation_mode)
    and, for nearest, rounded by `rounding` (ONNX nearest_mode). Loops d0, d1, ..."""

    name = "tensorop.resize"
    input = operand_def(TensorType)
    mode = prop_def(StringAttr)
    coordinate = prop_def(StringAttr)
    rounding = prop_def(StringAttr)
    scales = prop_def(DenseArrayBase)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, shape: Sequence[int], scales: Sequence[float], mode: str = "nearest",
                 coordinate: str = "half_pixel", rounding: str = "round_prefer_floor"):
        super().__init__(operands=[x], result_types=[tensor_type(shape, _float_of(x))],
                         properties=_props(name, mode=StringAttr(mode), coordinate=StringAttr(coordinate),
                                           rounding=StringAttr(rounding),
                                           scales=DenseArrayBase.from_list(f32, [float(v) for v in scales])))

    def scale_values(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.scales.get_values())

    def expected_shape(self):
        for what, v, allowed in (("mode", self.mode.data, RESIZE_MODES),
                                 ("coordinate", self.coordinate.data, RESIZE_COORDS),
                                 ("rounding", self.rounding.data, RESIZE_ROUNDING)):
            if v not in allowed:
                raise ShapeError(f"{what} '{v}' is not one of {', '.join(allowed)}")
        x, out = shape_of(self.input), shape_of(self.result)
        if len(self.scales.get_values()) != len(x) or len(out) != len(x):
            raise ShapeError(f"resize needs one scale and one output size per dimension of {x}")
        if self.scales.get_element_type() != f32 or min(self.scale_values()) <= 0:
            raise ShapeError(f"resize scales must be f32 values > 0, got {self.scale_values()}")
        if min(out) < 1:
            raise ShapeError(f"resize result {out} must have dimensions >= 1")
        return out


def slice_shape(x: Sequence[int], axis: int, start: int, stop: int) -> tuple[int, ...]:
    (ax,) = normalize_axes([axis], len(x), "slice")
    if not 0 <= start < stop <= x[ax]:
        raise ShapeError(f"slice [{start}, {stop}) of axis {axis} (size {x[ax]}) must be a non-empty range inside it")
    out = list(x)
    out[ax] = stop - start
    return tuple(out)


@irdl_op_definition
class SliceOp(TensorOp):
    """The elements of `input` whose index along `axis` is in [start, stop) (the scatter and
    halo pieces of tensorop-split). Loops d0, d1, ... over the output."""

    name = "tensorop.slice"
    input = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    start = prop_def(IntegerAttr)
    stop = prop_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, name: str, axis: int, start: int, stop: int):
        out = slice_shape(shape_of(x), axis, start, stop)
        super().__init__(operands=[x], result_types=[tensor_type(out, _float_of(x))],
                         properties=_props(name, axis=IntegerAttr(axis, i64), start=IntegerAttr(start, i64),
                                           stop=IntegerAttr(stop, i64)))

    def slice_axis(self) -> int:
        return normalize_axes([self.axis.value.data], len(shape_of(self.input)), "slice")[0]

    def expected_shape(self):
        return slice_shape(shape_of(self.input), self.axis.value.data, self.start.value.data, self.stop.value.data)


@irdl_op_definition
class HostCallOp(IRDLOperation):
    """An operator that runs on the host (numpy), named by `callee` (an ONNX op type) with its
    attributes in `params`. Operands and results are tensors of any element type; a result
    dimension may be dynamic (`?`), e.g. the number of boxes NonMaxSuppression keeps."""

    name = "tensorop.host_call"
    args = var_operand_def(TensorType)
    outs = var_result_def(TensorType)
    stage = prop_def(StringAttr, prop_name="name")
    callee = prop_def(StringAttr)
    params = prop_def(DictionaryAttr)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$args attr-dict `:` functional-type($args, $outs)"

    def __init__(self, args: Sequence[SSAValue], result_types: Sequence[TensorType], name: str, callee: str,
                 params: dict[str, Attribute]):
        super().__init__(operands=[list(args)], result_types=[list(result_types)],
                         properties={"name": StringAttr(name), "callee": StringAttr(callee),
                                     "params": DictionaryAttr(params)})

    @property
    def stage_name(self) -> str:
        return self.stage.data


@irdl_op_definition
class CopyOp(IRDLOperation):
    """Moves a tensor between host and device memory: `to` is "host" or "device"."""

    name = "tensorop.copy"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    to = prop_def(StringAttr)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, to: str):
        super().__init__(operands=[x], result_types=[x.type], properties={"to": StringAttr(to)})

    def verify_(self) -> None:
        if self.to.data not in ("host", "device"):
            raise VerifyException(f"tensorop.copy: 'to' must be \"host\" or \"device\", got \"{self.to.data}\"")
        if self.input.type != self.result.type:
            raise VerifyException(f"tensorop.copy: result type {self.result.type} differs from {self.input.type}")


@irdl_op_definition
class TransferOp(IRDLOperation):
    """Moves a tensor from the memory of device `src` to that of device `dst` (devices of one
    machine, numbered from 0; a peer copy where the devices allow it, else through the host)."""

    name = "tensorop.transfer"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    src = prop_def(IntegerAttr)
    dst = prop_def(IntegerAttr)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, src: int, dst: int):
        super().__init__(operands=[x], result_types=[x.type],
                         properties={"src": IntegerAttr(src, i64), "dst": IntegerAttr(dst, i64)})

    def verify_(self) -> None:
        src, dst = self.src.value.data, self.dst.value.data
        if src < 0 or dst < 0 or src == dst:
            raise VerifyException(f"tensorop.transfer: src {src} and dst {dst} must be different devices >= 0")
        if self.input.type != self.result.type:
            raise VerifyException(f"tensorop.transfer: result type {self.result.type} differs from {self.input.type}")


GRAPH_OPS = [ReshapeOp, ConcatOp, SliceOp, HostCallOp, CopyOp, TransferOp]


TensorOpDialect = Dialect(
    "tensorop",
    [MatmulOp, Conv2dOp, Pool2dOp, UnaryOp, BinaryOp, BiasAddOp, ReduceOp, SoftmaxOp, NormalizeOp, CastOp,
     ScanOp, ArgsortOp, TopkOp, TakeAlongAxisOp, NmsOp, RemapOp, GatherOp, ConvTranspose2dOp, ResizeOp,
     Im2colOp, WinogradInputOp, WinogradWeightsOp, WinogradOutputOp, *GRAPH_OPS],
)
