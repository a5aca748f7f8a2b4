"""tensorop-conv-to-gemm: conv2d as a matmul, an algorithm choice made at the operator level.

A conv2d with groups 1 at batch 1 is the product of its weights, reshaped to [f, c * kh * kw],
and its input's windows as columns (tensorop.im2col, [c * kh * kw, oh * ow]); for a 1x1 conv
with stride 1 and no padding the input reshaped to [c, h * w] is that matrix, and no im2col
runs. The product [f, oh * ow] is the conv's NCHW output, so the matmul's schedules (the
SGEMM template; the tensor-core GEMM for f16, bf16 and tf32 products) serve the conv.

The elementwise chain after the conv (bias, activation, residual add: what tensorop-fuse would
join to it) moves into the product's [f, oh * ow] shape, its other operands reshaped (a
reshape moves no data), so it still runs in the matmul's write-back; the reshape to NCHW
follows the chain.

Tensor-core tiles take B operands whose rows are whole 16-byte chunks and k a multiple of 16
(8 at tf32): for f16/bf16 and tf32 convs the pass pads the window's rows with zeros up to k
(the weights' columns with them) and the columns matrix with zero columns up to a multiple of
8; the matmul keeps the first oh * ow columns of the product (its `columns`), so the chain
still fuses into it.

`split_k = S` on a conv (the executor sets it where the product alone would leave the GPU's
multiprocessors idle) splits the window rows into S slices: the weights become [S, f, rows / S]
(a transpose of weights alone, which the executor does once at load), the columns [S, rows /
S, columns] (a reshape), and the product a batched matmul whose S partial products (in the
conv's type) a `tensorop.reduce` sums; the chain then fuses into that reduce.

New ops are named after the conv (`<conv>_cols`, `<conv>_gemm`, ...) and chain members after
themselves (`<member>_gemm`); the op that makes the conv's (or the chain's) value in the end
takes that value's name and its maker's stage name.

A conv marked `algorithm = "winograd"` (3 x 3, stride 1, dilation 1, groups 1, any batch)
takes Winograd's minimal filtering F(t x t, 3 x 3) instead (tensorop.WINOGRAD): its input's
(t + 2)-square tiles and its filters transformed (`tensorop.winograd_input`,
`tensorop.winograd_weights`), their (t + 2)^2 products one batched matmul, and
`tensorop.winograd_output` the conv's NCHW output, into which the chain fuses as it did into
the conv. t is `winograd_tile` (2 or 4), by default 4 for f32 outputs of at least 8 x 8, else
2 (t = 4 takes 2.25 times fewer products than t = 2 and loses more to rounding). In f16,
bf16 and tf32 the tiles are padded with zero columns to a multiple of 8 (where the filters
and channels fit the mma tile too) and the matmul keeps the product's first columns, so that
it takes the tensor cores.

An NHWC conv (layout = "NHWC") is a matmul without any gather when it is 1x1, stride 1 and
unpadded (groups 1, any batch): its input reshaped to [n * h * w, c] times its weights as
[c, f] (a transpose of weights alone, done once at load) is its output [n * h * w, f], the
NHWC result reshaped; the chain moves into that shape (bias along the product's columns).
Other NHWC convs stay direct (im2col and Winograd's transforms gather NCHW windows):
gemm_refusal and winograd_refusal say so, and the executor's choice falls back to "direct".

A conv marked `algorithm = "implicit"` is written as for "gemm" (without split-K), and its
im2col gets `gather`: where its product runs on tensor cores, that product gathers the windows
tile by tile where it reads them (an implicit GEMM; see tensorop-fuse's mark_implicit_gemms)
and the im2col makes no columns matrix of its own.

Which convs: those marked `algorithm = "gemm"`, `"implicit"` or `"winograd"` (load_onnx's `conv_algorithm`
marks them), or with `all=true` also every unmarked conv that can be written as a matmul. A
marked conv that cannot (grouped, batch above 1; for Winograd: not a 3 x 3 stride-1 conv) is
an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, UnitAttr, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.diagnostics import where
from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.level import require_operator_level

ALGORITHM = "algorithm"  # on a conv2d: "direct" (its own templates), "gemm", "implicit" or "winograd" (this pass)
SPLIT_K = "split_k"  # on a conv2d written as a matmul: slices of the window rows (default 1)
WINOGRAD_TILE = "winograd_tile"  # on a conv2d of algorithm "winograd": output tile 2 or 4 (default: by shape)
ALGORITHMS = ("direct", "gemm", "implicit", "winograd")
GATHER = "gather"  # on an im2col of an "implicit" conv: its product may gather the windows (tensorop-fuse)
PLANNED = ("group", "arena_offset", "arena_in_place")  # later passes' marks: they redo them


def winograd_refusal(op: T.Conv2dOp) -> str | None:
    """Why the conv cannot take Winograd's transforms, or None."""
    if op.data_layout() != "NCHW":
        return f"Winograd's transforms take NCHW convs; it is {op.data_layout()}"
    kernel = tuple(T.shape_of(op.weight)[2:])
    stride, dilation = tuple(op.stride.get_values()), tuple(op.dilation.get_values())
    if op.groups.value.data != 1 or kernel != (3, 3) or stride != (1, 1) or dilation != (1, 1):
        return (f"Winograd's transforms take 3 x 3 kernels at stride 1, dilation 1, groups 1; it has kernel "
                f"{kernel}, stride {stride}, dilation {dilation}, groups {op.groups.value.data}")
    return None


def winograd_tile_of(op: T.Conv2dOp) -> int:
    """F(4 x 4, 3 x 3) for f32 outputs of at least 8 x 8, else F(2 x 2, 3 x 3): the larger
    tile's transforms lose more to rounding, too much for f16 and bf16 tiles."""
    if WINOGRAD_TILE in op.attributes:
        return op.attributes[WINOGRAD_TILE].value.data
    oh, ow = op.nchw_result_shape()[2:]
    return 4 if T.dtype_of(op.input) == "f32" and min(oh, ow) >= 8 else 2


def rewrite_winograd(conv: T.Conv2dOp, b: Builder) -> None:
    """conv = winograd_output(matmul(winograd_weights(w), winograd_input(x))): the batched
    product of the (tile + 2)^2 transformed weights and tiles; the chain after the conv stays
    and fuses into winograd_output."""
    tile, name = winograd_tile_of(conv), conv.stage_name
    tiles = b.add(T.WinogradInputOp(conv.input, f"{name}_tiles", tile, conv.padding.get_values()))
    filters = b.add(T.WinogradWeightsOp(conv.weight, f"{name}_filters", tile))
    positions, c, columns = T.shape_of(tiles)
    wide = winograd_columns(conv, columns)
    if wide > columns:  # zero columns, so that the product takes a tensor-core tile; it keeps the others
        tiles = b.add(T.RemapOp(tiles, f"{name}_tpad", *T.pad_remap((positions, c, columns),
                                                                     (0, 0, 0, 0, 0, wide - columns)),
                                mode="constant"))
    product = b.add(T.MatmulOp(filters, tiles, f"{name}_gemm", conv.compute_mode(), T.dtype_of(conv.result),
                               columns if wide > columns else None))
    out = b.add(T.WinogradOutputOp(product, name, tile, T.shape_of(conv.result)[2:]))
    replace_value(conv.result, out)


def winograd_columns(conv: T.Conv2dOp, columns: int) -> int:
    """The columns (tiles) of the Winograd product: a multiple of 8 where the rest of its
    shape takes a tensor-core tile (f16, bf16, tf32; filters a multiple of 16, channels of the
    mma's k), else as many as there are tiles."""
    multiples = mma_multiples(conv)
    f, c = T.shape_of(conv.weight)[:2]
    if multiples is None or f % 16 or c % multiples[1]:
        return columns
    return round_up(columns, multiples[0])


def is_pointwise(op: T.Conv2dOp) -> bool:
    """A 1x1 conv at stride 1 without padding or groups: each output pixel is its input pixel's
    channels times the weights."""
    stride, padding = tuple(op.stride.get_values()), tuple(op.padding.get_values())
    return (op.groups.value.data == 1 and tuple(T.shape_of(op.weight)[2:]) == (1, 1) and stride == (1, 1)
            and padding == (0, 0, 0, 0))


def gemm_refusal(op: T.Conv2dOp) -> str | None:
    """Why the conv cannot be a matmul, or None."""
    if op.groups.value.data != 1:
        return f"it has groups={op.groups.value.data} (a product per group)"
    if op.data_layout() == "NHWC":
        if not is_pointwise(op):
            return ("it is NHWC and not a 1x1, stride-1 unpadded conv (im2col gathers NCHW windows; an NHWC "
                    "conv is a matmul only where its input needs no gather)")
        return None  # [n * h * w, c] x [c, f]: any batch
    if T.shape_of(op.input)[0] != 1:
        return f"its batch is {T.shape_of(op.input)[0]} (the product's columns are one image's outputs)"
    return None


def mma_multiples(op: T.Conv2dOp) -> tuple[int, int] | None:
    """(n, k) multiples a tensor-core tile takes for this conv's products, or None (f32)."""
    if T.dtype_of(op.input) in ("f16", "bf16"):
        return 8, 16
    return (8, 8) if op.compute_mode() in T.COMPUTE_MODES else None


def round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def split_of(op: T.Conv2dOp) -> int:
    return op.attributes[SPLIT_K].value.data if SPLIT_K in op.attributes else 1


def product_layout(op: T.Conv2dOp, split: int | None = None) -> tuple[int, int]:
    """(rows, columns) of the columns matrix: the window's c * kh * kw rows and the output's
    oh * ow columns, or more where a tensor-core tile needs them (rows: in each of `split`
    slices, default the op's split_k)."""
    c, (f, _, kh, kw), (_, _, oh, ow) = T.shape_of(op.input)[1], T.shape_of(op.weight), T.shape_of(op.result)
    multiples = mma_multiples(op)
    split = split_of(op) if split is None else split
    if multiples is None:
        return round_up(c * kh * kw, split), oh * ow
    return round_up(c * kh * kw, multiples[1] * split), round_up(oh * ow, multiples[0])


def channel_view(shape: tuple[int, ...], f: int, hw: tuple[int, int]) -> tuple[int, int] | None:
    """The [f or 1, hw or 1] shape an operand broadcast against the NCHW output [1, f, *hw]
    takes against the product [f, h * w], or None when it broadcasts otherwise."""
    full = (1,) * (4 - len(shape)) + tuple(shape)
    if len(full) != 4 or full[0] != 1 or full[1] not in (1, f) or full[2:] not in ((1, 1), hw):
        return None
    return full[1], 1 if full[2:] == (1, 1) else hw[0] * hw[1]


def rows_view(shape: tuple[int, ...], out: tuple[int, ...]) -> tuple[int, int] | None:
    """The [n * h * w or 1, f or 1] shape an operand broadcast against the NHWC output `out`
    [n, h, w, f] takes against the product [n * h * w, f], or None when it broadcasts
    otherwise."""
    full = (1,) * (4 - len(shape)) + tuple(shape)
    if len(full) != 4 or full[:3] not in ((1, 1, 1), tuple(out[:3])) or full[3] not in (1, out[3]):
        return None
    return 1 if full[:3] == (1, 1, 1) else out[0] * out[1] * out[2], full[3]


def operand_view(conv: T.Conv2dOp, shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The shape an operand of the conv's chain takes against its product (NCHW: [f, oh * ow],
    NHWC: [n * oh * ow, f]), or None."""
    out = T.shape_of(conv.result)
    if conv.data_layout() == "NHWC":
        return rows_view(shape, out)
    return channel_view(shape, out[1], out[2:])


def fusable_chain(conv: T.Conv2dOp) -> list[T.TensorOp]:
    """The elementwise ops after the conv that keep its shape, each the one use of the last."""
    chain: list[T.TensorOp] = []
    v = conv.result
    shape = T.shape_of(conv.result)
    channels = 3 if conv.data_layout() == "NHWC" else 1
    while v.uses.get_length() == 1:
        user = next(iter(v.uses)).operation
        if not isinstance(user, (T.UnaryOp, T.BinaryOp, T.BiasAddOp)) or T.shape_of(user.result) != shape:
            break
        if isinstance(user, T.BiasAddOp):
            if user.input != v or user.axis.value.data % 4 != channels:
                break
        elif isinstance(user, T.BinaryOp):
            other = user.rhs if user.lhs == v else user.lhs
            if other == v or operand_view(conv, T.shape_of(other)) is None:
                break
        chain.append(user)
        v = user.result
    return chain


class Builder:
    """Inserts new ops before `at`, named `<base>_<suffix>`, on the conv's device."""

    def __init__(self, at: Operation, base: str, device):
        self.at, self.base, self.device = at, base, device

    def add(self, op: T.TensorOp, hint: str | None = None) -> SSAValue:
        if self.device is not None:
            op.attributes["device"] = self.device
        Rewriter.insert_op(op, InsertPoint.before(self.at))
        op.result.name_hint = hint or op.stage_name
        return op.result

    def reshape(self, v: SSAValue, shape, suffix: str) -> SSAValue:
        return self.add(T.ReshapeOp(v, f"{self.base}_{suffix}", shape))


def rewrite_conv(conv: T.Conv2dOp, b: Builder) -> None:
    if conv.data_layout() == "NHWC":
        return rewrite_pointwise_nhwc(conv, b)
    x, w = conv.input, conv.weight
    _, c, h, wd = T.shape_of(x)
    f, _, kh, kw = T.shape_of(w)
    _, _, oh, ow = T.shape_of(conv.result)
    stride, padding, dilation = (tuple(a.get_values()) for a in (conv.stride, conv.padding, conv.dilation))
    k = c * kh * kw
    rows, columns = product_layout(conv)
    name = conv.stage_name
    n = oh * ow
    if (kh, kw, stride, padding, rows, columns) == (1, 1, (1, 1), (0, 0, 0, 0), k, n):
        cols = b.reshape(x, (c, h * wd), "cols")
    else:
        cols = b.add(T.Im2colOp(x, f"{name}_cols", (kh, kw), stride, padding, dilation, rows, ow, columns))
        if conv.attributes.get(ALGORITHM) == StringAttr("implicit"):
            cols.owner.attributes[GATHER] = UnitAttr()
    weights = b.reshape(w, (f, k), "wmat")
    if rows > k:
        weights = b.add(T.RemapOp(weights, f"{name}_wpad", *T.pad_remap((f, k), (0, 0, 0, rows - k)),
                                  mode="constant"))
    n_kept = None if columns == n else n  # the matmul keeps the product's first n columns
    split = split_of(conv)
    if split == 1:
        product = b.add(T.MatmulOp(weights, cols, f"{name}_gemm", conv.compute_mode(), T.dtype_of(conv.result),
                                   n_kept))
    else:  # split-K: the products of `split` slices of the rows (a batch), then their sum
        depth = rows // split
        weights = b.reshape(weights, (f, split, depth), "wsplit")
        weights = b.add(T.RemapOp(weights, f"{name}_wslices", *T.transpose_remap((f, split, depth), (1, 0, 2))))
        cols = b.reshape(cols, (split, depth, columns), "cslices")
        partial = b.add(T.MatmulOp(weights, cols, f"{name}_gemm", conv.compute_mode(), T.dtype_of(conv.result),
                                   n_kept))
        product = b.add(T.ReduceOp(partial, f"{name}_sum", "sum", [0], False))
    move_chain(conv, product, 0, b)


def rewrite_pointwise_nhwc(conv: T.Conv2dOp, b: Builder) -> None:
    """An NHWC 1x1 conv as [n * h * w, c] x [c, f]: the product is the NHWC output."""
    n, h, wd, c = T.shape_of(conv.input)
    f = T.shape_of(conv.weight)[0]
    rows = b.reshape(conv.input, (n * h * wd, c), "rows")
    weights = b.reshape(conv.weight, (f, c), "wmat")
    weights = b.add(T.RemapOp(weights, f"{conv.stage_name}_wt", *T.transpose_remap((f, c), (1, 0))))
    product = b.add(T.MatmulOp(rows, weights, f"{conv.stage_name}_gemm", conv.compute_mode(),
                               T.dtype_of(conv.result)))
    move_chain(conv, product, 1, b)


def move_chain(conv: T.Conv2dOp, product: SSAValue, bias_axis: int, b: Builder) -> None:
    """Moves the conv's fusable chain onto its 2-D `product` (the bias along `bias_axis`, other
    operands reshaped to operand_view), then reshapes the last value to the conv's shape."""
    last = conv.result
    value = product
    for member in fusable_chain(conv):
        b.at = member  # its other operand may be made after the conv
        operands = []
        for v in member.operands:
            if v == last:
                operands.append(value)
            elif isinstance(member, T.BiasAddOp):
                operands.append(v)  # the bias vector, along the product's rows (NHWC: columns) now
            else:
                operands.append(b.add(T.ReshapeOp(v, f"{member.stage_name}_view", operand_view(conv, T.shape_of(v)))))
        props = dict(member.properties, name=StringAttr(f"{member.stage_name}_gemm"))
        if isinstance(member, T.BiasAddOp):
            props["axis"] = IntegerAttr(bias_axis, i64)
        kept = {k: v for k, v in member.attributes.items() if k not in PLANNED}
        moved = type(member).create(operands=operands, result_types=[T.tensor_type(T.shape_of(product),
                                                                                    T.dtype_of(member.result))],
                                    properties=props, attributes=kept)
        value = b.add(moved)
        last = member.result
    b.at = last.owner
    out = b.add(T.ReshapeOp(value, last.owner.stage_name, T.shape_of(conv.result)))
    replace_value(last, out)


def replace_value(old: SSAValue, new: SSAValue) -> None:
    """`new` (made by an op named as `old`'s maker: model outputs, buffers and layers go by
    names) takes `old`'s uses and name; the ops that made `old` and the chain before it are
    erased once nothing uses them."""
    name = old.name_hint
    old.replace_all_uses_with(new)
    new.name_hint = name
    op = old.owner
    while isinstance(op, T.TensorOp) and not op.result.uses:
        inputs = [v.owner for v in op.operands]
        op.detach()
        op.erase()
        op = next((p for p in inputs if isinstance(p, T.TensorOp) and not p.result.uses), None)


def located(op: T.Conv2dOp, what: str) -> DiagnosticException:
    """The error `what` about the conv, at its location."""
    loc = where(op)
    return DiagnosticException(f"{loc}{'error: ' if loc else ''}tensorop-conv-to-gemm: conv2d '{op.stage_name}'{what}")


def check_marks(op: T.Conv2dOp) -> None:
    """The conv's algorithm and split_k attributes, if any, are ones this pass knows."""
    algorithm = op.attributes.get(ALGORITHM)
    if algorithm is not None and (not isinstance(algorithm, StringAttr) or algorithm.data not in ALGORITHMS):
        raise located(op, f": algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm}")
    tile = op.attributes.get(WINOGRAD_TILE)
    if tile is not None and (not isinstance(tile, IntegerAttr) or tile.value.data not in T.WINOGRAD):
        raise located(op, f": winograd_tile must be 2 or 4, got {tile}")
    split = op.attributes.get(SPLIT_K)
    if split is not None and (not isinstance(split, IntegerAttr) or split.value.data < 1):
        raise located(op, f": split_k must be an integer >= 1, got {split}")
    if split is not None and split.value.data > 1 and (algorithm is None or algorithm.data != "gemm"):
        raise located(op, ": split_k splits the product of algorithm = \"gemm\"; this conv has none")
    if split is not None and split.value.data > 1 and op.data_layout() != "NCHW":
        raise located(op, ": split_k splits the window rows of an NCHW conv's product; this conv is NHWC")


def convert_function(fn: func.FuncOp, every: bool) -> int:
    count = 0
    for op in list(fn.body.block.ops):
        if not isinstance(op, T.Conv2dOp):
            continue
        check_marks(op)
        algorithm = op.attributes[ALGORITHM].data if ALGORITHM in op.attributes else None
        if algorithm == "direct" or algorithm is None and not every:
            continue
        algorithm = algorithm or "gemm"
        why = (winograd_refusal if algorithm == "winograd" else gemm_refusal)(op)
        if why is not None:
            if ALGORITHM in op.attributes:
                raise located(op, f" is marked algorithm = \"{algorithm}\", but {why}")
            continue
        builder = Builder(op, op.stage_name, op.attributes.get("device"))
        (rewrite_winograd if algorithm == "winograd" else rewrite_conv)(op, builder)
        count += 1
    return count


@dataclass(frozen=True)
class TensoropConvToGemmPass(ModulePass):
    """Writes marked conv2d ops (every one with `all`) as im2col and matmul (see the module
    docstring)."""

    name = "tensorop-conv-to-gemm"
    all: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        require_operator_level(op, self.name)
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                convert_function(fn, self.all)


def mark(op: T.Conv2dOp, algorithm: str, split: int = 1) -> None:
    """Sets the conv's algorithm (ALGORITHMS) and, for "gemm", its split_k."""
    op.attributes[ALGORITHM] = StringAttr(algorithm)
    if algorithm == "gemm" and split > 1:
        op.attributes[SPLIT_K] = IntegerAttr(split, i64)
