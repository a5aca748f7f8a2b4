"""Tensors and operator constructors: the Python way to write the payload.

A `Tensor` is a node of an expression graph; `module_of` turns the graph into a func of
`tensorop` ops. Shapes are checked as the graph is built, by the same rules the dialect's
verifiers use.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, ModuleOp
from xdsl.ir import Block, Region, SSAValue

from sched_dsl.dialects import tensorop as T

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # matched whole (fullmatch: no newline after it)


@dataclass(eq=False)
class Tensor:
    kind: str  # "placeholder" or an operator
    shape: tuple[int, ...]
    inputs: tuple[Tensor, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    dtype: str = "f32"  # "f32", "f16", "bf16" or "i32"

    def __repr__(self) -> str:
        dt = "" if self.dtype == "f32" else f", dtype={self.dtype}"
        return f"Tensor({self.name or self.kind}, shape={self.shape}{dt})"

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _check_name(name: str | None) -> None:
    if name is not None and not (isinstance(name, str) and NAME.fullmatch(name)):
        raise ValueError(f"tensor name {name!r} must be an identifier (letters, digits, _)")


def placeholder(name: str, shape: Sequence[int], dtype: str = "f32") -> Tensor:
    if name is None:
        raise ValueError("a placeholder needs a name (an identifier: letters, digits, _)")
    _check_name(name)
    if dtype not in T.DTYPES:
        raise ValueError(f"placeholder '{name}': dtype '{dtype}' is not supported; use one of {', '.join(T.DTYPES)}")
    shape = _ints(shape, f"placeholder '{name}': dimension")
    if not shape or min(shape) < 1:
        raise ValueError(f"placeholder '{name}': shape {shape} must have dimensions >= 1")
    T.check_size(shape, f"placeholder '{name}'")
    return Tensor("placeholder", shape, name=name, dtype=dtype)


def _ints(v: Any, what: str) -> tuple[int, ...]:
    """One int or several, as a tuple: 2.5 or "3" is an error, not 2 or 3."""
    if isinstance(v, (str, bytes)):
        raise T.ShapeError(f"{what} must be an int, got {v!r}")
    try:
        items = list(v)
    except TypeError:
        return (_integer(v, what),)
    return tuple(_integer(x, what) for x in items)


def _pair(v: int | Sequence[int], what: str) -> tuple[int, int]:
    v = _ints(v, what)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ValueError(f"{what} takes one int or two, got {v}")
    return v


def _padding(p: int | Sequence[int]) -> tuple[int, int, int, int]:
    """An int, (pad_h, pad_w) or (top, left, bottom, right)."""
    p = _ints(p, "padding")
    if len(p) == 1:
        return (p[0],) * 4
    if len(p) == 2:
        return (p[0], p[1], p[0], p[1])
    if len(p) == 4:
        return p
    raise ValueError(f"padding takes one int, two or four, got {p}")


def _op(kind: str, shape, inputs, name, /, dtype: str = "f32", **attrs) -> Tensor:
    _check_name(name)
    return Tensor(kind, tuple(shape), tuple(inputs), attrs, name, dtype)


def _tensors(*xs: Any, op: str = "this operator") -> str:
    """Every operand is a Tensor of one float element type (f32, f16 or bf16), which is
    returned: operators convert nothing implicitly (sd.cast does)."""
    for x in xs:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a sched_dsl Tensor, got {type(x).__name__}")
        if x.dtype not in T.FLOAT_DTYPES:
            raise T.ShapeError(f"{op}: operand {x!r} is {x.dtype}; {op} takes float tensors "
                               f"({', '.join(T.FLOAT_DTYPES)})")
    return T.common_float_dtype(op, [x.dtype for x in xs])


def _product(op: str, a: Tensor, b: Tensor, precision: str | None, out_dtype: str | None
             ) -> tuple[str, dict[str, str]]:
    """The result dtype of matmul/conv2d and its attributes: {"compute": precision} for
    precision "tf32" (f32 tensors multiplied at TF32 precision) or "3xtf32" (as three TF32
    products, within about 2^-20 of f32's), else none."""
    in_dtype = _tensors(a, b, op=op)
    if precision not in (None, *T.COMPUTE_MODES):
        raise ValueError(f"{op}: precision '{precision}' is not supported; use None, 'tf32' or '3xtf32' "
                         "(f16/bf16 come from the tensors' own dtypes)")
    if out_dtype is not None and out_dtype not in T.FLOAT_DTYPES:
        raise ValueError(f"{op}: out_dtype '{out_dtype}' is not one of {', '.join(T.FLOAT_DTYPES)}")
    dtype = T.product_result_dtype(op, in_dtype, out_dtype, precision)
    return dtype, ({"compute": precision} if precision else {})


def matmul(a: Tensor, b: Tensor, name: str | None = None, precision: str | None = None,
           out_dtype: str | None = None, columns: int | None = None) -> Tensor:
    """a @ b, products summed in f32. The result has the inputs' type, or f32 with
    out_dtype="f32"; precision="tf32" lets f32 products be taken at TF32 precision, "3xtf32"
    as three TF32 products (near f32's precision, on tensor cores); `columns`
    keeps the product's first columns only."""
    dtype, attrs = _product("matmul", a, b, precision, out_dtype)
    shape = T.matmul_columns(T.matmul_shape(a.shape, b.shape), columns)
    if columns is not None:
        attrs["columns"] = int(columns)
    return _op("matmul", shape, (a, b), name, dtype=dtype, **attrs)


def _layout(layout: str, op: str) -> dict[str, str]:
    """The attributes a conv2d or pool2d of `layout` takes: none for NCHW (the default), so
    NCHW graphs and their workload keys stay as they were."""
    if layout not in T.LAYOUTS:
        raise ValueError(f"{op}: layout {layout!r} is not one of {', '.join(T.LAYOUTS)}")
    return {} if layout == "NCHW" else {"layout": layout}


def conv2d(x: Tensor, w: Tensor, stride=1, padding=0, dilation=1, groups: int = 1, name: str | None = None,
           precision: str | None = None, out_dtype: str | None = None, layout: str = "NCHW") -> Tensor:
    """Convolution of an NCHW input (layout="NHWC": N, H, W, C, channels last; the result in
    the same layout) with F, C / groups, KH, KW weights in either layout; types as matmul's."""
    dtype, attrs = _product("conv2d", x, w, precision, out_dtype)
    attrs.update(_layout(layout, "conv2d"))
    stride, dilation, padding = _pair(stride, "stride"), _pair(dilation, "dilation"), _padding(padding)
    shape = T.conv2d_shape(x.shape, w.shape, stride, padding, dilation, groups, layout)
    return _op("conv2d", shape, (x, w), name, dtype=dtype, stride=stride, padding=padding, dilation=dilation,
               groups=groups, **attrs)


def im2col(x: Tensor, kernel, stride=1, padding=0, dilation=1, rows: int = 0, width: int = 0,
           name: str | None = None, columns: int = 0) -> Tensor:
    """conv2d's windows over an NCHW input as the columns of a [c * kh * kw, n * oh * ow]
    matrix (see tensorop.Im2colOp): conv2d(x, w) at batch 1 is matmul(w reshaped to [f, c *
    kh * kw], im2col(x)) reshaped. `rows`, `width` and `columns` (>= the window's rows, ow
    and n * oh * width) pad with 0."""
    dtype = _tensors(x, op="im2col")
    kernel, stride, dilation, padding = (_pair(kernel, "kernel"), _pair(stride, "stride"), _pair(dilation, "dilation"),
                                         _padding(padding))
    shape = T.im2col_shape(x.shape, kernel, stride, padding, dilation, int(rows), int(width), int(columns))
    width = int(width) or T.conv2d_shape(x.shape, (1, x.shape[1], *kernel), stride, padding, dilation, 1)[3]
    return _op("im2col", shape, (x,), name, dtype=dtype, kernel=kernel, stride=stride, padding=padding,
               dilation=dilation, width=width)


def winograd_input(x: Tensor, tile: int, padding=0, name: str | None = None) -> Tensor:
    """B^T d B of every (tile + 2)-square input tile of a 3 x 3, stride-1 conv (see
    tensorop.WinogradInputOp): [(tile + 2)^2, c, n * tiles]."""
    dtype = _tensors(x, op="winograd_input")
    padding = _padding(padding)
    return _op("winograd_input", T.winograd_input_shape(x.shape, int(tile), padding), (x,), name, dtype=dtype,
               tile=int(tile), padding=padding)


def winograd_weights(w: Tensor, tile: int, name: str | None = None) -> Tensor:
    """G g G^T of every 3 x 3 filter: [(tile + 2)^2, f, c]."""
    dtype = _tensors(w, op="winograd_weights")
    return _op("winograd_weights", T.winograd_weights_shape(w.shape, int(tile)), (w,), name, dtype=dtype,
               tile=int(tile))


def winograd_output(m: Tensor, tile: int, size, name: str | None = None) -> Tensor:
    """A^T M A of the products [(tile + 2)^2, f, n * tiles]: the conv's [n, f, oh, ow],
    `size` = (oh, ow). conv2d(x, w, padding=p) = winograd_output(matmul(winograd_weights(w,
    t), winograd_input(x, t, p)), t, (oh, ow))."""
    dtype = _tensors(m, op="winograd_output")
    size = _pair(size, "size")
    return _op("winograd_output", T.winograd_output_shape(m.shape, int(tile), size), (m,), name, dtype=dtype,
               tile=int(tile))


def cast(x: Tensor, dtype: str, name: str | None = None) -> Tensor:
    """x in another float element type (f32, f16, bf16), rounded to nearest even."""
    _tensors(x, op="cast")
    if dtype not in T.FLOAT_DTYPES:
        raise ValueError(f"cast: dtype '{dtype}' is not one of {', '.join(T.FLOAT_DTYPES)}")
    return _op("cast", x.shape, (x,), name, dtype=dtype)


def pool2d(x: Tensor, kind: str, kernel, stride=None, padding=0, name: str | None = None, *, dilation=1,
           ceil_mode: bool = False, count_include_pad: bool = False, layout: str = "NCHW") -> Tensor:
    """Max or average pooling of an NCHW input (layout="NHWC": channels last, the result
    too); `ceil_mode` keeps a last partial window, `count_include_pad` makes an average
    divide by the window's size within the padded input."""
    dtype = _tensors(x, op="pool2d")
    if kind not in T.POOL_KINDS:
        raise ValueError(f"pool2d kind '{kind}' is not one of {', '.join(T.POOL_KINDS)}")
    layout_attrs = _layout(layout, "pool2d")
    kernel = _pair(kernel, "kernel")
    stride = kernel if stride is None else _pair(stride, "stride")
    padding, dilation = _padding(padding), _pair(dilation, "dilation")
    if kind == "avg" and dilation != (1, 1):
        raise T.ShapeError("average pooling with dilations is not supported")
    shape = T.pool2d_shape(x.shape, kernel, stride, padding, dilation, ceil_mode, layout)
    return _op("pool2d", shape, (x,), name, dtype=dtype, kind=kind, kernel=kernel, stride=stride, padding=padding,
               dilation=dilation, ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
               **layout_attrs)


def unary(fn: str, x: Tensor, lo: float | None = None, hi: float | None = None, name: str | None = None, *,
          alpha: float | None = None, beta: float | None = None) -> Tensor:
    """Elementwise fn(x), fn one of tensorop.UNARY_FNS; clip takes lo and hi, leaky_relu and
    elu alpha, selu alpha and beta (gamma), hard_sigmoid alpha and beta, shrink alpha
    (lambd) and beta (bias)."""
    dtype = _tensors(x, op="unary")
    if fn not in T.UNARY_FNS:
        raise ValueError(f"unary fn '{fn}' is not one of {', '.join(T.UNARY_FNS)}")
    if fn == "clip" and (lo is None or hi is None or lo > hi):
        raise ValueError(f"clip needs lo <= hi, got lo={lo}, hi={hi}")
    given = {"lo": lo, "hi": hi, "alpha": alpha, "beta": beta}
    params = {k: float(given[k]) for k in T.UNARY_PARAMS.get(fn, ())}
    missing = [k for k in T.UNARY_PARAMS.get(fn, ()) if given[k] is None]
    if missing:
        raise ValueError(f"{fn} needs {' and '.join(T.UNARY_PARAMS[fn])}")
    return _op("unary", x.shape, (x,), name, dtype=dtype, fn=fn, params=params)


def relu(x, name=None): return unary("relu", x, name=name)
def relu6(x, name=None): return unary("relu6", x, name=name)
def clip(x, lo, hi, name=None): return unary("clip", x, lo, hi, name=name)
def sigmoid(x, name=None): return unary("sigmoid", x, name=name)
def tanh(x, name=None): return unary("tanh", x, name=name)
def exp(x, name=None): return unary("exp", x, name=name)
def neg(x, name=None): return unary("neg", x, name=name)
def leaky_relu(x, alpha=0.01, name=None): return unary("leaky_relu", x, name=name, alpha=alpha)
def gelu(x, name=None): return unary("gelu", x, name=name)


def binary(fn: str, a: Tensor, b: Tensor, name: str | None = None) -> Tensor:
    dtype = _tensors(a, b, op=f"binary '{fn}'")
    if fn not in T.BINARY_FNS:
        raise ValueError(f"binary fn '{fn}' is not one of {', '.join(T.BINARY_FNS)}")
    return _op("binary", T.broadcast_shape(a.shape, b.shape), (a, b), name, dtype=dtype, fn=fn)


def add(a, b, name=None): return binary("add", a, b, name)
def sub(a, b, name=None): return binary("sub", a, b, name)
def mul(a, b, name=None): return binary("mul", a, b, name)
def div(a, b, name=None): return binary("div", a, b, name)
def maximum(a, b, name=None): return binary("max", a, b, name)
def minimum(a, b, name=None): return binary("min", a, b, name)
def power(a, b, name=None): return binary("pow", a, b, name)
def prelu(x, slope, name=None): return binary("prelu", x, slope, name)


def bias_add(x: Tensor, bias: Tensor, axis: int = 1, name: str | None = None) -> Tensor:
    dtype = _tensors(x, bias, op="bias_add")
    (ax,) = T.normalize_axes([axis], x.ndim, "bias_add")
    if bias.shape != (x.shape[ax],):
        raise T.ShapeError(f"bias shape {bias.shape} should be ({x.shape[ax]},) for axis {axis} of {x.shape}")
    return _op("bias_add", x.shape, (x, bias), name, dtype=dtype, axis=axis)


def reduce(x: Tensor, fn: str, axes: int | Sequence[int], keepdims: bool = False, name: str | None = None) -> Tensor:
    dtype = _tensors(x, op="reduce")
    if fn not in T.REDUCE_FNS:
        raise ValueError(f"reduce fn '{fn}' is not one of {', '.join(T.REDUCE_FNS)}")
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return _op("reduce", T.reduce_shape(x.shape, axes, keepdims), (x,), name, dtype=dtype, fn=fn, axes=axes, keepdims=keepdims)


def softmax(x: Tensor, axis: int = -1, name: str | None = None, *, log: bool = False) -> Tensor:
    dtype = _tensors(x, op="softmax")
    T.normalize_axes([axis], x.ndim, "softmax")
    return _op("softmax", x.shape, (x,), name, dtype=dtype, axis=axis, log=bool(log))


def log_softmax(x: Tensor, axis: int = -1, name: str | None = None) -> Tensor:
    return softmax(x, axis, name, log=True)


def normalize(x: Tensor, axes: int | Sequence[int], epsilon: float = 1e-5, name: str | None = None) -> Tensor:
    """(x - mean) / sqrt(var + epsilon) over `axes` (layer, instance and group normalization
    without their scale and bias)."""
    dtype = _tensors(x, op="normalize")
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    T.reduce_shape(x.shape, axes, False)
    return _op("normalize", x.shape, (x,), name, dtype=dtype, axes=axes, epsilon=float(epsilon))


def _integer(v: Any, what: str) -> int:
    """An int (numpy integers too, as model files give them), else a ShapeError."""
    if isinstance(v, bool):
        raise T.ShapeError(f"{what} must be an int, got {v!r}")
    try:
        v = operator.index(v)
    except TypeError:
        raise T.ShapeError(f"{what} must be an int, got {v!r}") from None
    if abs(v) > 2**63 - 1:  # attributes are i64 in the IR
        raise T.ShapeError(f"{what} must be between -(2**63-1) and 2**63-1, got {v}")
    return v


def cumsum(x: Tensor, axis: int, exclusive: bool = False, reverse: bool = False, name: str | None = None) -> Tensor:
    """Prefix sum along `axis` with ONNX CumSum's `exclusive` and `reverse`; same shape."""
    dtype = _tensors(x, op="cumsum")
    T.axis_of(x.shape, axis, "cumsum")
    return _op("scan", x.shape, (x,), name, dtype=dtype, axis=int(axis), exclusive=bool(exclusive), reverse=bool(reverse))


def argsort(x: Tensor, axis: int = -1, descending: bool = True, name: str | None = None) -> Tensor:
    """i32 indices sorting `x` along `axis`; stable: equal values keep their index order."""
    _tensors(x, op="argsort")
    T.axis_of(x.shape, axis, "argsort")
    return _op("argsort", x.shape, (x,), name, dtype="i32", axis=int(axis), descending=bool(descending))


def topk(x: Tensor, k: int, axis: int = -1, largest: bool = True, name: str | None = None) -> tuple[Tensor, Tensor]:
    """(values, indices) of the k largest (or smallest) elements along `axis`, sorted, ties
    by lower index, like ONNX TopK. Two tensors of the graph: the indices (i32, operator
    `topk`, named `name`) and the values (operator `take_along_axis` reading x at them,
    named `<name>_values`)."""
    _tensors(x, op="topk")
    k = _integer(k, "topk: k")
    shape = T.topk_shape(x.shape, k, axis)
    idx = _op("topk", shape, (x,), name, dtype="i32", k=k, axis=int(axis), largest=bool(largest))
    values = _op("take_along_axis", shape, (x, idx), None if name is None else f"{name}_values",
                 dtype=x.dtype, axis=int(axis))
    return values, idx


def nms(boxes: Tensor, scores: Tensor, max_output: int, iou_threshold: float,
        score_threshold: float = float("-inf"), name: str | None = None) -> Tensor:
    """Greedy non-maximum suppression as ONNX NonMaxSuppression for one batch and class
    (center_point_box=0): boxes (N, 4) as [y1, x1, y2, x2], scores (N,); returns i32
    (max_output,) indices of kept boxes by decreasing score (ties: lower index first),
    padded with -1. See docs/detection.md for the exact rules."""
    _tensors(boxes, scores, op="nms")
    max_output = _integer(max_output, "nms: max_output")
    shape = T.nms_shape(boxes.shape, scores.shape, max_output, float(iou_threshold), float(score_threshold))
    return _op("nms", shape, (boxes, scores), name, dtype="i32", max_output=max_output,
               iou_threshold=float(iou_threshold), score_threshold=float(score_threshold))


# ---- the graph as IR ---------------------------------------------------------------------


def topological(outputs: Sequence[Tensor]) -> list[Tensor]:
    order, seen = [], set()

    def visit(t: Tensor) -> None:
        if id(t) in seen:
            return
        seen.add(id(t))
        for i in t.inputs:
            visit(i)
        order.append(t)

    for t in outputs:
        visit(t)
    return order


def stage_names(order: Sequence[Tensor]) -> dict[Tensor, str]:
    """Given names stay; others are the operator kind, numbered when it repeats (relu, relu1)."""
    names: dict[Tensor, str] = {}
    named: dict[str, Tensor] = {}
    for t in order:
        if t.name is not None:
            other = named.get(t.name)
            if other is not None:
                # an input and a stage of one name would share one buffer
                (inp, stage) = (other, t) if other.kind == "placeholder" else (t, other)
                if inp.kind == "placeholder" and stage.kind != "placeholder":
                    raise ValueError(f"{stage.kind} stage '{t.name}' has the name of input '{t.name}'; "
                                     "stages and inputs need distinct names")
                raise ValueError(f"two tensors are named '{t.name}'")
            named[t.name] = t
            names[t] = t.name
    used = set(named)
    for t in order:
        if t not in names:
            base = t.attrs.get("fn", t.kind) if t.kind in ("unary", "binary") else t.kind
            name, k = base, 0
            while name in used:
                k += 1
                name = f"{base}{k}"  # not _<k>: xDSL drops such a suffix from value names
            used.add(name)
            names[t] = name
    return names


def _build_op(t: Tensor, args: list[SSAValue], name: str) -> T.TensorOp:
    a = t.attrs
    if t.kind == "matmul":
        return T.MatmulOp(*args, name, a.get("compute"), t.dtype, a.get("columns"))
    if t.kind == "conv2d":
        return T.Conv2dOp(*args, name, a["stride"], a["padding"], a["dilation"], a["groups"], a.get("compute"),
                          t.dtype, a.get("layout", "NCHW"))
    if t.kind == "cast":
        return T.CastOp(*args, name, t.dtype)
    if t.kind == "pool2d":
        return T.Pool2dOp(*args, name, a["kind"], a["kernel"], a["stride"], a["padding"], a["dilation"],
                          a["ceil_mode"], a["count_include_pad"], a.get("layout", "NCHW"))
    if t.kind == "unary":
        return T.UnaryOp(*args, name, a["fn"], **a["params"])
    if t.kind == "binary":
        return T.BinaryOp(*args, name, a["fn"])
    if t.kind == "bias_add":
        return T.BiasAddOp(*args, name, a["axis"])
    if t.kind == "reduce":
        return T.ReduceOp(*args, name, a["fn"], a["axes"], a["keepdims"])
    if t.kind == "softmax":
        return T.SoftmaxOp(*args, name, a["axis"], a["log"])
    if t.kind == "normalize":
        return T.NormalizeOp(*args, name, a["axes"], a["epsilon"])
    if t.kind == "scan":
        return T.ScanOp(*args, name, a["axis"], a["exclusive"], a["reverse"])
    if t.kind == "argsort":
        return T.ArgsortOp(*args, name, a["axis"], a["descending"])
    if t.kind == "topk":
        return T.TopkOp(*args, name, a["k"], a["axis"], a["largest"])
    if t.kind == "take_along_axis":
        return T.TakeAlongAxisOp(*args, name, a["axis"])
    if t.kind == "nms":
        return T.NmsOp(*args, name, a["max_output"], a["iou_threshold"], a["score_threshold"])
    if t.kind == "reshape":
        return T.ReshapeOp(*args, name, t.shape)
    if t.kind == "concat":
        return T.ConcatOp(args, name, a["axis"])
    if t.kind == "remap":
        return T.RemapOp(*args, name, t.shape, a["source"], a["step"], a["offset"], a["mode"], a["value"])
    if t.kind == "gather":
        return T.GatherOp(*args, name, a["axis"])
    if t.kind == "conv_transpose2d":
        return T.ConvTranspose2dOp(*args, name, a["stride"], a["padding"], a["dilation"], a["output_padding"],
                                   a["groups"])
    if t.kind == "resize":
        return T.ResizeOp(*args, name, t.shape, a["scales"], a["mode"], a["coordinate"], a["rounding"])
    if t.kind == "slice":
        return T.SliceOp(*args, name, a["axis"], a["start"], a["stop"])
    if t.kind == "winograd_input":
        return T.WinogradInputOp(*args, name, a["tile"], a["padding"])
    if t.kind == "winograd_weights":
        return T.WinogradWeightsOp(*args, name, a["tile"])
    if t.kind == "winograd_output":
        return T.WinogradOutputOp(*args, name, a["tile"], t.shape[2:])
    if t.kind == "im2col":
        return T.Im2colOp(*args, name, a["kernel"], a["stride"], a["padding"], a["dilation"], t.shape[0], a["width"],
                          t.shape[1])
    raise ValueError(f"unknown operator kind {t.kind}")


def tensor_of_op(op: T.TensorOp, inputs: tuple[Tensor, ...] = ()) -> Tensor:
    """The Tensor node a tensorop op stands for (the inverse of _build_op): its kind,
    attributes, stage name and dtype, over the given input nodes."""
    kind = op.name.split(".", 1)[1]
    attrs: dict = {}
    if isinstance(op, (T.Conv2dOp, T.ConvTranspose2dOp)):
        attrs = dict(stride=tuple(op.stride.get_values()), padding=tuple(op.padding.get_values()),
                     dilation=tuple(op.dilation.get_values()), groups=op.groups.value.data)
        if isinstance(op, T.ConvTranspose2dOp):
            attrs["output_padding"] = tuple(op.output_padding.get_values())
    if isinstance(op, T.ProductOp) and op.compute_mode() is not None:
        attrs["compute"] = op.compute_mode()
    if isinstance(op, T.MatmulOp) and op.column_count() is not None:
        attrs["columns"] = op.column_count()
    if isinstance(op, T.Pool2dOp):
        attrs = dict(kind=op.kind.data, kernel=tuple(op.kernel.get_values()), stride=tuple(op.stride.get_values()),
                     padding=tuple(op.padding.get_values()), dilation=op.dilations(), ceil_mode=op.is_ceil_mode(),
                     count_include_pad=op.includes_pad())
    elif isinstance(op, T.UnaryOp):
        params = op.params() if op.fn.data != "relu6" else {}
        attrs = dict(fn=op.fn.data, params=params)
    elif isinstance(op, T.BinaryOp):
        attrs = dict(fn=op.fn.data)
    elif isinstance(op, T.BiasAddOp):
        attrs = dict(axis=op.axis.value.data)
    elif isinstance(op, T.ReduceOp):
        attrs = dict(fn=op.fn.data, axes=tuple(op.axes.get_values()), keepdims=bool(op.keepdims.value.data))
    elif isinstance(op, T.SoftmaxOp):
        attrs = dict(axis=op.axis.value.data, log=op.is_log())
    elif isinstance(op, T.NormalizeOp):
        attrs = dict(axes=tuple(op.axes.get_values()), epsilon=float(op.epsilon.value.data))
    elif isinstance(op, (T.ConcatOp, T.GatherOp)):
        attrs = dict(axis=op.axis.value.data)
    elif isinstance(op, T.RemapOp):
        attrs = dict(source=tuple(op.source.get_values()), step=tuple(op.step.get_values()),
                     offset=tuple(op.offset.get_values()), mode=op.mode.data, value=op.fill())
    elif isinstance(op, T.ResizeOp):
        attrs = dict(scales=op.scale_values(), mode=op.mode.data, coordinate=op.coordinate.data,
                     rounding=op.rounding.data)
    elif isinstance(op, T.SliceOp):
        attrs = dict(axis=op.axis.value.data, start=op.start.value.data, stop=op.stop.value.data)
    elif isinstance(op, T.WinogradOp):
        attrs = dict(tile=op.tile_size())
        if isinstance(op, T.WinogradInputOp):
            attrs["padding"] = tuple(op.padding.get_values())
    elif isinstance(op, T.Im2colOp):
        attrs = dict(zip(("kernel", "stride", "padding", "dilation"), op.window()), width=op.width.value.data)
    elif isinstance(op, (T.ScanOp, T.ArgsortOp, T.TopkOp, T.TakeAlongAxisOp, T.NmsOp)):
        attrs = {k: v.value.data for k, v in op.properties.items() if isinstance(v, (IntegerAttr, FloatAttr))}
        attrs.update({k: bool(attrs[k]) for k in ("exclusive", "reverse", "descending", "largest") if k in attrs})
    if isinstance(op, T.WindowOp) and op.data_layout() != "NCHW":
        attrs["layout"] = op.data_layout()
    dtype = T.dtype_of(op.result)
    return Tensor(kind, T.shape_of(op.result), inputs, attrs, op.stage_name, dtype=dtype)


def module_of(outputs: Sequence[Tensor], fn_name: str = "main") -> tuple[ModuleOp, list[Tensor], dict[Tensor, str]]:
    """A module with one func computing `outputs` from the placeholders they use; returns
    it, the placeholders in argument order, and the stage name of every tensor."""
    order = topological(outputs)
    names = stage_names(order)
    inputs = [t for t in order if t.kind == "placeholder"]
    if any(t.kind == "placeholder" for t in outputs):
        raise ValueError("an output must be computed by an operator, not be a placeholder")
    block = Block(arg_types=[T.tensor_type(t.shape, t.dtype) for t in inputs])
    values: dict[Tensor, SSAValue] = {}
    for t, arg in zip(inputs, block.args):
        arg.name_hint = names[t]
        values[t] = arg
    for t in order:
        if t.kind != "placeholder":
            op = _build_op(t, [values[i] for i in t.inputs], names[t])
            op.result.name_hint = names[t]
            block.add_op(op)
            values[t] = op.result
    block.add_op(func.ReturnOp(*[values[t] for t in outputs]))
    fn = func.FuncOp(fn_name, ([a.type for a in block.args], [values[t].type for t in outputs]), Region(block))
    return ModuleOp([fn]), inputs, names


# ---- graph-level operators (whole models) -------------------------------------------------


def reshape(x: Tensor, shape: Sequence[int], name: str | None = None) -> Tensor:
    dtype = _tensors(x, op="reshape")
    return _op("reshape", T.reshape_shape(x.shape, _ints(shape, "reshape: shape")), (x,), name, dtype=dtype)


def slice_along(x: Tensor, axis: int, start: int, stop: int, name: str | None = None) -> Tensor:
    """x's elements whose index along `axis` is in [start, stop)."""
    dtype = _tensors(x, op="slice")
    return _op("slice", T.slice_shape(x.shape, axis, start, stop), (x,), name, dtype=dtype, axis=axis, start=start,
               stop=stop)


def concat(xs: Sequence[Tensor], axis: int = 1, name: str | None = None) -> Tensor:
    dtype = _tensors(*xs, op="concat")
    return _op("concat", T.concat_shape([x.shape for x in xs], axis), tuple(xs), name, dtype=dtype, axis=axis)


def remap(x: Tensor, shape: Sequence[int], source: Sequence[int], step: Sequence[int], offset: Sequence[int],
          mode: str = "strict", value: float = 0.0, name: str | None = None) -> Tensor:
    """out[o] = x[i], i[d] = offset[d] + step[d] * o[source[d]] (see tensorop.RemapOp)."""
    dtype = _tensors(x, op="remap")
    shape = tuple(int(d) for d in shape)
    T.remap_ranges(x.shape, shape, source, step, offset, mode)
    return _op("remap", shape, (x,), name, dtype=dtype, source=tuple(source), step=tuple(step), offset=tuple(offset),
               mode=mode, value=float(value))


def _remap(x: Tensor, r: T.Remap, name: str | None, mode: str = "strict", value: float = 0.0) -> Tensor:
    return remap(x, *r, mode=mode, value=value, name=name)


def transpose(x: Tensor, perm: Sequence[int] | None = None, name: str | None = None) -> Tensor:
    _tensors(x, op="transpose")
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(perm)
    return _remap(x, T.transpose_remap(x.shape, perm), name)


def slice_(x: Tensor, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int] | None = None,
           steps: Sequence[int] | None = None, name: str | None = None) -> Tensor:
    """x[start:end:step] along `axes` (all, in order, by default), numpy's clamping."""
    _tensors(x, op="slice")
    axes = tuple(range(len(starts))) if axes is None else tuple(axes)
    steps = (1,) * len(starts) if steps is None else tuple(steps)
    return _remap(x, T.slice_remap(x.shape, starts, ends, axes, steps), name)


def pad(x: Tensor, pads: Sequence[int], mode: str = "constant", value: float = 0.0, name: str | None = None) -> Tensor:
    """ONNX Pad: `pads` lists the leading pads of every dimension, then the trailing ones;
    mode constant (with `value`), edge, reflect or wrap."""
    _tensors(x, op="pad")
    if mode not in ("constant", "edge", "reflect", "wrap"):
        raise ValueError(f"pad mode '{mode}' is not one of constant, edge, reflect, wrap")
    return _remap(x, T.pad_remap(x.shape, pads), name, mode, value)


def tile(x: Tensor, repeats: Sequence[int], name: str | None = None) -> Tensor:
    _tensors(x, op="tile")
    return _remap(x, T.tile_remap(x.shape, repeats), name, "wrap")


def expand(x: Tensor, shape: Sequence[int], name: str | None = None) -> Tensor:
    _tensors(x, op="expand")
    return _remap(x, T.expand_remap(x.shape, shape), name)


def gather(x: Tensor, indices: Tensor, axis: int = 0, name: str | None = None) -> Tensor:
    """ONNX Gather with i32 indices (negative ones count from the end)."""
    dtype = _tensors(x, op="gather")
    if not isinstance(indices, Tensor) or indices.dtype != "i32":
        raise T.ShapeError(f"gather: indices must be an i32 tensor, got {indices!r}")
    return _op("gather", T.gather_shape(x.shape, indices.shape, axis), (x, indices), name, dtype=dtype, axis=int(axis))


def conv_transpose2d(x: Tensor, w: Tensor, stride=1, padding=0, dilation=1, output_padding=0, groups: int = 1,
                     name: str | None = None) -> Tensor:
    """ONNX ConvTranspose over NCHW with weights (C, F / groups, KH, KW)."""
    dtype = _tensors(x, w, op="conv_transpose2d")
    stride, dilation, padding = _pair(stride, "stride"), _pair(dilation, "dilation"), _padding(padding)
    output_padding = _pair(output_padding, "output_padding")
    shape = T.conv_transpose2d_shape(x.shape, w.shape, stride, padding, dilation, output_padding, groups)
    return _op("conv_transpose2d", shape, (x, w), name, dtype=dtype, stride=stride, padding=padding, dilation=dilation,
               output_padding=output_padding, groups=groups)


def resize(x: Tensor, scales: Sequence[float], mode: str = "nearest", coordinate: str = "half_pixel",
           rounding: str = "round_prefer_floor", shape: Sequence[int] | None = None, name: str | None = None) -> Tensor:
    """ONNX Resize by `scales` (one per dimension); the output shape is floor(size * scale)
    unless `shape` gives it."""
    dtype = _tensors(x, op="resize")
    if len(scales) != x.ndim:
        raise T.ShapeError(f"resize needs {x.ndim} scales for {x.shape}, got {tuple(scales)}")
    shape = tuple(int(n * s) for n, s in zip(x.shape, scales)) if shape is None else tuple(int(d) for d in shape)
    for what, v, allowed in (("mode", mode, T.RESIZE_MODES), ("coordinate", coordinate, T.RESIZE_COORDS),
                             ("rounding", rounding, T.RESIZE_ROUNDING)):
        if v not in allowed:
            raise ValueError(f"resize {what} '{v}' is not one of {', '.join(allowed)}")
    if min(scales) <= 0 or min(shape) < 1:
        raise T.ShapeError(f"resize: scales {tuple(scales)} must be > 0 and the output {shape} not empty")
    return _op("resize", shape, (x,), name, dtype=dtype, scales=tuple(float(v) for v in scales), mode=mode,
               coordinate=coordinate, rounding=rounding)
