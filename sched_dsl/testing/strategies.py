"""Hypothesis strategies and a checker for testing sched-dsl lowering, and your own passes.

The pieces compose into a property test: draw a small operator, a legal random schedule
for it and well-conditioned inputs, build, run, and compare with the numpy reference::

    from hypothesis import given, strategies as st
    from sched_dsl import testing as sdt

    @given(st.data())
    def test_lowering(data):
        out = data.draw(sdt.operators())
        schedule = data.draw(sdt.schedules(out))
        sdt.assert_equivalent(out, schedule, inputs=data.draw(sdt.inputs(out)))

`schedules` only draws what `apply-schedule` accepts; the rules it follows are listed in
its docstring. To test a pass of your own, give `assert_equivalent` a `pipeline` that holds
it, and run `sched_dsl.testing.check.check_each_pass` on `schedule.module()` to learn which pass
broke a case (examples/custom_pass_test.py). Everything is kept small (dimensions up to about a dozen) so that a kernel
builds and runs on a CPU OpenCL device in a fraction of a second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from sched_dsl import tensor as ops
from sched_dsl.build import build
from sched_dsl.reference import evaluate, numpy_dtype, tolerance
from sched_dsl.schedule import Loop, Schedule
from sched_dsl.dialects import tensorop as T
from sched_dsl.schedule import loop_names
from sched_dsl.tensor import Tensor, topological

# sizes tried first: ones, primes and sizes that typical split factors do not divide
SIZES = (1, 2, 3, 4, 5, 7, 8, 11, 13, 16)
MAX_THREADS = 256
OPERATOR_KINDS = ("matmul", "conv2d", "pool2d", "unary", "binary", "bias_add", "reduce", "softmax",
                  "scan", "argsort", "topk", "nms")
# operators whose main stage reads its inputs at computed indices, or not at all (the first
# stages do): their inputs are not cached and their producers not computed at them
INDIRECT_KINDS = ("scan", "argsort", "topk", "take_along_axis", "nms")
IOU_THRESHOLDS = (0.0, 0.25, 0.5, 0.75, 1.0)
PRODUCER_FNS = ("relu", "neg", "exp", "sigmoid", "tanh")


# ---- shapes and operators ------------------------------------------------------------------

# element types the operator strategies draw in: the tensor types, and the compute modes of f32
# tensors ("tf32": matmul and conv2d multiply at TF32 precision; "3xtf32": as three TF32 products)
DTYPES = ("f32", "f16", "bf16", *T.COMPUTE_MODES)


def _storage(dtype: str) -> str:
    return "f32" if dtype in T.COMPUTE_MODES else dtype


def _precision(dtype: str) -> str | None:
    return dtype if dtype in T.COMPUTE_MODES else None



def sizes(max_size: int = 16) -> st.SearchStrategy[int]:
    """One dimension: small sizes, mostly primes and sizes no split factor divides."""
    return st.one_of(st.sampled_from([s for s in SIZES if s <= max_size]), st.integers(1, max_size))


def shapes(min_dims: int = 1, max_dims: int = 4, max_size: int = 16, max_elements: int = 2048
           ) -> st.SearchStrategy[tuple[int, ...]]:
    """Small shapes of min_dims..max_dims dimensions with at most max_elements elements."""
    return (st.integers(min_dims, max_dims)
            .flatmap(lambda n: st.tuples(*[sizes(max_size)] * n))
            .filter(lambda s: math.prod(s) <= max_elements))


@st.composite
def _maybe_producer(draw, x: Tensor) -> Tensor:
    """x, or an elementwise stage computing from x (so graphs have more than one stage)."""
    if draw(st.booleans()):
        return x
    return ops.unary(draw(st.sampled_from(PRODUCER_FNS)), x)


@st.composite
def _matmul(draw, dtype: str = "f32") -> Tensor:
    m, k, n = draw(sizes()), draw(sizes()), draw(sizes())
    a = draw(_maybe_producer(ops.placeholder("A", (m, k), _storage(dtype))))
    columns = draw(st.none() | st.integers(1, n))  # the product's first columns only
    return ops.matmul(a, ops.placeholder("B", (k, n), _storage(dtype)), precision=_precision(dtype), columns=columns)


@st.composite
def _conv2d(draw, dtype: str = "f32") -> Tensor:
    batch = draw(st.integers(1, 2))
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    if kind == "plain":
        groups, cg, fg = 1, draw(st.integers(1, 4)), draw(st.integers(1, 4))
    elif kind == "grouped":
        groups, cg, fg = draw(st.integers(2, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    else:
        groups, cg, fg = draw(st.integers(1, 4)), 1, draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    span_h, span_w = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    h = draw(st.integers(max(1, span_h - padding[0] - padding[2]), 10))
    w = draw(st.integers(max(1, span_w - padding[1] - padding[3]), 10))
    layout = draw(st.sampled_from(T.LAYOUTS))
    x = draw(_maybe_producer(ops.placeholder("X", T.in_layout((batch, groups * cg, h, w), layout), _storage(dtype))))
    weight = ops.placeholder("W", (groups * fg, cg, kh, kw), _storage(dtype))
    return ops.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation, groups=groups,
                      precision=_precision(dtype), layout=layout)


@st.composite
def _pool2d(draw, dtype: str = "f32") -> Tensor:
    kind = draw(st.sampled_from(T.POOL_KINDS))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] - 1)), draw(st.integers(0, kernel[1] - 1)),
               draw(st.integers(0, kernel[0] - 1)), draw(st.integers(0, kernel[1] - 1)))
    h = draw(st.integers(max(1, kernel[0] - padding[0] - padding[2]), 11))
    w = draw(st.integers(max(1, kernel[1] - padding[1] - padding[3]), 11))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    layout = draw(st.sampled_from(T.LAYOUTS))
    x = draw(_maybe_producer(ops.placeholder("X", T.in_layout((n, c, h, w), layout), _storage(dtype))))
    return ops.pool2d(x, kind, kernel, stride=stride, padding=padding, layout=layout)


@st.composite
def _unary(draw, dtype: str = "f32") -> Tensor:
    fn = draw(st.sampled_from(T.UNARY_FNS))
    x = ops.placeholder("X", draw(shapes()), _storage(dtype))
    if fn == "clip":
        lo = draw(st.floats(-1, 1, width=32))
        hi = draw(st.floats(lo, 1, width=32))
        return ops.clip(x, lo, hi)
    params = {p: draw(st.floats(0.0625, 2, width=32)) for p in T.UNARY_PARAMS.get(fn, ())}
    return ops.unary(fn, x, **params)


@st.composite
def _broadcast_operand(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that numpy broadcasts to `shape`: some leading dimensions dropped, some set to 1."""
    lead = draw(st.integers(0, len(shape) - 1))
    return tuple(1 if draw(st.booleans()) and draw(st.booleans()) else d for d in shape[lead:])


@st.composite
def _binary(draw, dtype: str = "f32") -> Tensor:
    fn = draw(st.sampled_from(T.BINARY_FNS))
    shape = draw(shapes())
    sa, sb = draw(_broadcast_operand(shape)), draw(_broadcast_operand(shape))
    if draw(st.booleans()):
        sa = shape
    elif draw(st.booleans()):
        sb = shape
    a = draw(_maybe_producer(ops.placeholder("A", sa, _storage(dtype))))
    return ops.binary(fn, a, ops.placeholder("B", sb, _storage(dtype)))


@st.composite
def _bias_add(draw, dtype: str = "f32") -> Tensor:
    shape = draw(shapes())
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    x = draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype))))
    return ops.bias_add(x, ops.placeholder("bias", (shape[axis],), _storage(dtype)), axis=axis)


@st.composite
def _reduce(draw, dtype: str = "f32") -> Tensor:
    shape = draw(shapes())
    rank = len(shape)
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    axes = [a - rank if draw(st.booleans()) else a for a in axes]
    x = draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype))))
    return ops.reduce(x, draw(st.sampled_from(T.REDUCE_FNS)), axes, keepdims=draw(st.booleans()))


@st.composite
def _softmax(draw, dtype: str = "f32") -> Tensor:
    shape = draw(shapes(max_dims=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    x = draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype))))
    return ops.softmax(x, axis=axis)


@st.composite
def _scan(draw, dtype: str = "f32") -> Tensor:
    shape = draw(shapes(max_dims=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    x = draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype))))
    return ops.cumsum(x, axis, exclusive=draw(st.booleans()), reverse=draw(st.booleans()))


@st.composite
def _argsort(draw, dtype: str = "f32") -> Tensor:
    shape = draw(shapes(max_dims=3, max_elements=512))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    x = draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype))))
    return ops.argsort(x, axis, descending=draw(st.booleans()))


@st.composite
def _topk(draw, dtype: str = "f32") -> Tensor:
    """The indices or the values of a top-k."""
    shape = draw(shapes(max_dims=3, max_elements=512))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    x = draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype))))
    values, indices = ops.topk(x, draw(st.integers(1, shape[axis])), axis, largest=draw(st.booleans()))
    return draw(st.sampled_from([indices, values]))


@st.composite
def _nms(draw, dtype: str = "f32") -> Tensor:
    n = draw(sizes(12))
    boxes, scores = ops.placeholder("boxes", (n, 4), _storage(dtype)), ops.placeholder("scores", (n,), _storage(dtype))
    score_threshold = draw(st.sampled_from([float("-inf"), 0.0, 0.25, 0.5]))
    return ops.nms(boxes, scores, draw(st.integers(1, n + 2)), draw(st.sampled_from(IOU_THRESHOLDS)),
                  score_threshold)


# ---- the operators of the ONNX coverage (COVERAGE_KINDS) ---------------------------------------


@st.composite
def _batch_matmul(draw, dtype: str = "f32") -> Tensor:
    m, k, n = draw(sizes(8)), draw(sizes(8)), draw(sizes(8))
    batch = draw(shapes(1, 2, 4))
    b_batch = tuple(1 if draw(st.booleans()) else d for d in batch[draw(st.integers(0, len(batch))):])
    a = draw(_maybe_producer(ops.placeholder("A", (*batch, m, k), _storage(dtype))))
    return ops.matmul(a, ops.placeholder("B", (*b_batch, k, n), _storage(dtype)))


@st.composite
def _remap(draw, dtype: str = "f32") -> Tensor:
    """A transpose, slice (any step), pad (every mode) or tile."""
    shape = draw(shapes(1, 4, 8, 512))
    x = draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype))))
    r = len(shape)
    how = draw(st.sampled_from(["transpose", "slice", "pad", "tile"]))
    if how == "transpose":
        return ops.transpose(x, draw(st.permutations(range(r))))
    if how == "slice":
        starts, ends, steps = [], [], []
        for n in shape:
            step = draw(st.sampled_from([-2, -1, 1, 2, 3]))
            a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
            lo, hi = min(a, b), max(a, b)
            starts.append(lo if step > 0 else hi)
            ends.append(hi + 1 if step > 0 else lo - 1 - n)  # a negative end below -n: to the start
            steps.append(step)
        return ops.slice_(x, starts, ends, steps=steps)
    if how == "pad":
        mode = draw(st.sampled_from(["constant", "edge", "reflect", "wrap"]))
        pads = [draw(st.integers(0, max(0, n - 1) if mode == "reflect" else 3)) for n in shape * 2]
        return ops.pad(x, pads, mode, value=draw(st.floats(-1, 1, width=32)))
    return ops.tile(x, [draw(st.integers(1, 3)) for _ in shape])


@st.composite
def _gather(draw, dtype: str = "f32") -> Tensor:
    shape = draw(shapes(1, 3, 8))
    axis = draw(st.integers(0, len(shape) - 1))
    idx = ops.placeholder("I", draw(shapes(1, 2, 4)), "i32")
    return ops.gather(draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype)))), idx, axis)


@st.composite
def _normalize(draw, dtype: str = "f32") -> Tensor:
    shape = draw(shapes(2, 4, 8))
    axes = draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape) - 1, unique=True))
    return ops.normalize(draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype)))), axes)


@st.composite
def _conv_transpose2d(draw, dtype: str = "f32") -> Tensor:
    groups = draw(st.integers(1, 2))
    c, fg = groups * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride, dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3))), (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    room = [(h - 1) * stride[0] + (k[0] - 1) * dil[0], (w - 1) * stride[1] + (k[1] - 1) * dil[1]]
    top, left = draw(st.integers(0, room[0])), draw(st.integers(0, room[1]))
    pad = (top, left, draw(st.integers(0, room[0] - top)), draw(st.integers(0, room[1] - left)))
    out_pad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dil))
    x = draw(_maybe_producer(ops.placeholder("X", (draw(st.integers(1, 2)), c, h, w), _storage(dtype))))
    wt = ops.placeholder("W", (c, fg, *k), _storage(dtype))
    return ops.conv_transpose2d(x, wt, stride, pad, dil, out_pad, groups)


@st.composite
def _resize(draw, dtype: str = "f32") -> Tensor:
    shape = (1, draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    scales = (1.0, 1.0, *(draw(st.sampled_from([0.5, 0.75, 1.5, 2.0, 3.0])) for _ in range(2)))
    scales = (1.0, 1.0, *(max(s, 1.0 / n) for s, n in zip(scales[2:], shape[2:])))
    return ops.resize(draw(_maybe_producer(ops.placeholder("X", shape, _storage(dtype)))), scales,
                      draw(st.sampled_from(T.RESIZE_MODES)), draw(st.sampled_from(T.RESIZE_COORDS[:4])),
                      draw(st.sampled_from(T.RESIZE_ROUNDING)))


# the coverage operators: drawn by tests/test_properties.py with fewer examples than OPERATOR_KINDS
COVERAGE_KINDS = ("batch_matmul", "remap", "gather", "normalize", "conv_transpose2d", "resize")

_OPERATORS = {"matmul": _matmul, "conv2d": _conv2d, "pool2d": _pool2d, "unary": _unary, "binary": _binary,
              "bias_add": _bias_add, "reduce": _reduce, "softmax": _softmax, "scan": _scan,
              "argsort": _argsort, "topk": _topk, "nms": _nms, "batch_matmul": _batch_matmul, "remap": _remap,
              "gather": _gather, "normalize": _normalize, "conv_transpose2d": _conv_transpose2d, "resize": _resize}


def operators(kinds: str | Sequence[str] = OPERATOR_KINDS, dtype: str = "f32") -> st.SearchStrategy[Tensor]:
    """A small operator graph, returned as its output tensor: one operator of `kinds` on
    tensors of `dtype` (f32, f16, bf16, or a compute mode, tf32 or 3xtf32: f32 tensors whose
    products take that mode)
    (matmul, conv2d with stride/padding/dilation/groups/depthwise and pool2d max/avg, in NCHW
    or NHWC, unary fns, binary with numpy broadcasting, bias_add, reduce sum/max/mean, softmax, scan
    (cumsum, exclusive/reverse), argsort, topk (its indices or its values), nms), whose
    first input is sometimes computed by an elementwise producer stage."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = set(kinds) - set(_OPERATORS)
    if unknown:
        raise ValueError(f"unknown operator kind(s) {sorted(unknown)}; choose from {', '.join(_OPERATORS)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype '{dtype}'; choose from {', '.join(DTYPES)}")
    return st.one_of(*[_OPERATORS[k](dtype) for k in kinds])


# ---- schedules --------------------------------------------------------------------------------


def loop_extents(t: Tensor) -> list[tuple[str, int, bool]]:
    """(name, extent, is_reduction) of the loops of `t`'s main stage, outermost first."""
    names = loop_names(t)
    a = t.attrs
    if t.kind == "matmul":
        extents = [*t.shape, t.inputs[0].shape[-1]]
        reduce = 1
    elif t.kind == "conv2d":  # loops n f y x in either layout
        extents = [*T.as_nchw(t.shape, a.get("layout", "NCHW")), *t.inputs[1].shape[1:]]
        reduce = 3
    elif t.kind == "conv_transpose2d":
        extents = [*t.shape, t.inputs[0].shape[1] // a["groups"], *t.inputs[1].shape[2:]]
        reduce = 3
    elif t.kind == "pool2d":
        extents = [*T.as_nchw(t.shape, a.get("layout", "NCHW")), *a["kernel"]]
        reduce = 2
    elif t.kind == "reduce":
        x = t.inputs[0].shape
        axes = T.normalize_axes(a["axes"], len(x), "reduce")
        extents = [*t.shape, *[x[k] for k in axes]]
        reduce = len(axes)
    elif t.kind == "topk":
        extents, reduce = list(t.inputs[0].shape), 0  # the scatter runs over the input
    elif t.kind == "nms":
        extents, reduce = [t.shape[0], t.inputs[1].shape[0]], 1
    else:
        extents, reduce = list(t.shape), 0
    return [(n, e, k >= len(names) - reduce) for k, (n, e) in enumerate(zip(names, extents))]


def _affine_reads(out: Tensor, t: Tensor) -> bool:
    """Whether `out` reads input `t` at indices affine in its loops, as caches need. A grouped
    conv2d reads input channel f // (filters per group) + rc, which is not."""
    if out.kind == "conv2d" and t is out.inputs[0]:
        return out.attrs["groups"] == 1 or out.inputs[1].shape[0] == out.attrs["groups"]
    if out.kind == "take_along_axis":
        return t is out.inputs[1]
    if out.kind in ("remap", "gather", "resize", "conv_transpose2d"):  # indices computed (select, rem, floor)
        return False
    return out.kind not in INDIRECT_KINDS


@dataclass(eq=False)
class _Leaf:
    loop: Loop
    extent: int
    reduce: bool
    bind: str | None = None


@st.composite
def schedules(draw, out: Tensor) -> Schedule:
    """A random schedule of `out`'s stage that `apply-schedule` accepts.

    It splits loops by random factors (dividing or not), fuses adjacent loops of the same
    kind, reorders all loops, binds spatial loops to block.x/y (outermost only) and
    thread.x/y (at most MAX_THREADS threads per block), unrolls, vectorizes the innermost
    loop, caches inputs in shared (in a random layout, double-buffered where legal) or local memory, caches the output locally (at a spatial
    loop that encloses every reduction loop and is at or inside the innermost bound loop),
    and computes an elementwise producer at a loop. Every buffer sits at or inside the
    innermost block loop, and inputs read at non-affine indices (grouped conv2d) are not
    cached. For the detection operators it schedules the operator's own (last) stage; their
    inputs are not cached there (that stage reads them at loaded indices, or not at all), and
    a scatter (argsort, topk) gets no cache_write."""
    s = Schedule(out)
    leaves = [_Leaf(s.loop(n), e, r) for n, e, r in loop_extents(out)]

    # split
    uneven = False  # a split whose factor does not divide: the body is guarded
    for leaf in list(leaves):
        if leaf.extent > 1 and draw(st.booleans()):
            factor = draw(st.one_of(st.sampled_from([2, 3, 4, 8]), st.integers(1, leaf.extent + 1)))
            outer, inner = s.split(leaf.loop, factor)
            fi = min(factor, leaf.extent)
            uneven |= leaf.extent % fi != 0
            pos = leaves.index(leaf)
            leaves[pos:pos + 1] = [_Leaf(outer, -(-leaf.extent // fi), leaf.reduce), _Leaf(inner, fi, leaf.reduce)]

    # fuse adjacent loops of one kind
    for _ in range(draw(st.integers(0, 2))):
        pairs = [k for k in range(len(leaves) - 1) if leaves[k].reduce == leaves[k + 1].reduce]
        if not pairs:
            break
        k = draw(st.sampled_from(pairs))
        a, b = leaves[k], leaves[k + 1]
        leaves[k:k + 2] = [_Leaf(s.fuse(a.loop, b.loop), a.extent * b.extent, a.reduce)]

    # reorder
    if len(leaves) > 1 and draw(st.booleans()):
        leaves = draw(st.permutations(leaves))
        s.reorder(*[lf.loop for lf in leaves])

    # bind: blocks to a prefix of spatial loops, threads to later spatial loops
    n_blocks = 0
    for tag in ("block.x", "block.y"):
        if n_blocks < len(leaves) and not leaves[n_blocks].reduce and draw(st.booleans()):
            leaves[n_blocks].bind = tag
            s.bind(leaves[n_blocks].loop, tag)
            n_blocks += 1
        else:
            break
    threads = 1
    # an f16/bf16 sum keeps an f32 register per thread: no bound loop inside a reduction loop
    f32_register = out.dtype in ("f16", "bf16") and any(lf.reduce for lf in leaves)
    first_reduce = next((k for k, lf in enumerate(leaves) if lf.reduce), len(leaves))
    for tag in ("thread.x", "thread.y"):
        free = [lf for k, lf in enumerate(leaves) if k >= n_blocks and not lf.reduce and lf.bind is None
                and threads * lf.extent <= MAX_THREADS and not (f32_register and k > first_reduce)]
        if free and draw(st.booleans()):
            leaf = draw(st.sampled_from(free))
            leaf.bind = tag
            threads *= leaf.extent
            s.bind(leaf.loop, tag)

    # unroll, vectorize
    for leaf in leaves:
        if leaf.bind is None and draw(st.integers(0, 4)) == 0:
            s.unroll(leaf.loop)
    if leaves and leaves[-1].bind is None and draw(st.booleans()):
        s.vectorize(leaves[-1].loop)

    # cache_read of inputs
    cached: dict[Tensor, str] = {}
    at = leaves[max(n_blocks - 1, 0):]  # buffers go inside every block loop
    for t in dict.fromkeys(out.inputs):
        if not leaves or not draw(st.booleans()):
            continue
        if not _affine_reads(out, t):
            continue
        scope = draw(st.sampled_from(["shared", "local"]))
        where = draw(st.sampled_from(at))
        layout, double = None, False
        if scope == "shared":
            if draw(st.booleans()):
                layout = draw(st.permutations(range(len(t.shape))))
            # double buffering needs a sequential loop with all thread loops outside it
            k = leaves.index(where)
            threads = [j for j, lf in enumerate(leaves) if (lf.bind or "").startswith("thread")]
            if where.bind is None and threads and max(threads) < k:
                double = draw(st.booleans())
        s.cache_read(t, scope, at=where.loop, layout=layout, double_buffer=double)
        cached[t] = scope

    # cache_write at a spatial loop inside every bound loop and outside every reduction loop
    bound = [k for k, lf in enumerate(leaves) if lf.bind]
    first_reduce = next((k for k, lf in enumerate(leaves) if lf.reduce), len(leaves))
    spots = [lf for lf in leaves[bound[-1] if bound else 0:first_reduce] if not lf.reduce]
    # PoCL computes wrong results for a private accumulator updated under the guard of an
    # uneven split between the barriers of a shared cache, so that combination is left out
    pocl_miscompiles = uneven and "shared" in cached.values()
    scatter = out.kind in ("argsort", "topk")  # writes at computed indices: no registers to keep
    if spots and not pocl_miscompiles and not scatter and draw(st.booleans()):
        s.cache_write("local", at=draw(st.sampled_from(spots)).loop)

    # compute an elementwise producer at one of the loops (softmax reads its input in three
    # stages, and compute_at needs a single consumer)
    producers = [t for t in out.inputs if t.kind == "unary" and t not in cached and out.kind not in ("softmax", "normalize")
                 and _affine_reads(out, t)]
    if producers and leaves and draw(st.booleans()):
        s.compute_at(producers[0], draw(st.sampled_from(at)).loop)
    return s


# ---- inputs and the check ----------------------------------------------------------------------


SUMS = {"matmul", "conv2d", "conv_transpose2d"}  # operators that sum products; also reduce sum/mean, avg pooling
POSITIVE_DOMAIN = ("sqrt", "log", "reciprocal")  # unary fns defined (and finite) for x > 0


def _sums(t: Tensor) -> bool:
    return (t.kind in SUMS or (t.kind == "reduce" and t.attrs["fn"] in ("sum", "mean"))
            or (t.kind == "pool2d" and t.attrs["kind"] == "avg"))


def _positive_inputs(outs: Sequence[Tensor]) -> set[str]:
    """Placeholders that feed a divisor or a sum; they get values of one sign."""
    names: set[str] = set()
    for t in topological(list(outs)):
        feeds = [t.inputs[1]] if t.kind == "binary" and t.attrs["fn"] == "div" else list(t.inputs) if _sums(t) else []
        if t.kind == "binary" and t.attrs["fn"] == "pow" or t.kind == "unary" and t.attrs["fn"] in POSITIVE_DOMAIN:
            feeds = [t.inputs[0]]
        for f in feeds:
            names |= {p.name for p in topological([f]) if p.kind == "placeholder"}
    return names


def random_inputs(out: Tensor | Sequence[Tensor], seed: int = 0) -> dict[str, np.ndarray]:
    """Well-conditioned values for every placeholder of `out` (one output or several), by
    name, as float32 arrays (float16 / ml_dtypes.bfloat16 for f16 / bf16 placeholders): finite (no NaN or Inf), in [-1, 1] so that both branches of relu,
    max, clip and padding are taken, and in [0.5, 1.5] for placeholders that feed a divisor
    (away from 0) or a sum (matmul, conv2d, reduce sum/mean, average pooling), so that
    reductions do not cancel to a value small against their rounding error. Sorts and
    scans get integers in [-2, 2], so equal values (ties) are common and sums exact; nms
    gets boxes with corners on a 0..7 grid (in either order, so areas and IoUs are exact
    and often equal) and scores in quarters."""
    outs = [out] if isinstance(out, Tensor) else list(out)
    rng = np.random.default_rng(seed)
    positive = _positive_inputs(outs)
    graph = topological(outs)
    kinds = {t.kind for t in graph}
    values = {}
    for t in graph:
        if t.kind == "nms":
            boxes, scores = t.inputs
            values[boxes.name] = rng.integers(0, 8, boxes.shape).astype(np.float32)
            values[scores.name] = (rng.integers(0, 4, scores.shape) / 4).astype(np.float32)
    for t in graph:
        if t.kind == "placeholder" and t.name in values:
            continue
        if t.kind == "placeholder" and kinds & set(INDIRECT_KINDS):
            values[t.name] = rng.integers(-2, 3, t.shape).astype(np.float32)
        elif t.kind == "placeholder":
            lo, hi = (0.5, 1.5) if t.name in positive else (-1.0, 1.0)
            values[t.name] = rng.uniform(lo, hi, t.shape).astype(np.float32)
    for t in graph:  # gather's i32 indices: in [-n, n) of its axis (negative ones count from the end)
        if t.kind == "gather":
            n = t.inputs[0].shape[t.attrs["axis"]]
            values[t.inputs[1].name] = rng.integers(-n, n, t.inputs[1].shape).astype(np.int32)
    for t in graph:  # f16/bf16 inputs: arrays of that type (what the kernels take)
        if t.kind == "placeholder" and t.dtype in ("f16", "bf16"):
            values[t.name] = values[t.name].astype(numpy_dtype(t.dtype))
    return values


def inputs(out: Tensor) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """Well-conditioned inputs of `out` (arrays of their types) by placeholder name, drawn from a random
    seed: no NaN/Inf, divisors away from 0, sums over values of one sign (see random_inputs)."""
    return st.integers(0, 2**32 - 1).map(lambda seed: random_inputs(out, seed))


def describe(out: Tensor) -> str:
    """The operator graph of `out` in one line per stage."""
    lines = []
    for t in topological([out]):
        shapes_in = ", ".join(str(i.shape) for i in t.inputs)
        attrs = ", ".join(f"{k}={v}" for k, v in t.attrs.items() if v is not None)
        lines.append(f"{t.name or t.kind}: {t.kind}({shapes_in}{', ' if attrs and shapes_in else ''}{attrs}) -> {t.shape}")
    return "\n".join(lines)


def tolerance_excess(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """By how much each element of `got` misses `want` (> 0: a mismatch). NaN matches NaN (kernels
    follow numpy's NaN propagation); NaN against a number is an infinite miss."""
    both_nan = np.isnan(got) & np.isnan(want)
    one_nan = np.isnan(got) ^ np.isnan(want)
    with np.errstate(invalid="ignore"):
        excess = np.abs(got - want) - (atol + rtol * np.abs(want))
    return np.where(both_nan, 0.0, np.where(one_nan, np.inf, excess))


def assert_equivalent(out: Tensor, schedule: Schedule | None = None, target: str = "opencl",
                      rtol: float | None = None, atol: float | None = None,
                      inputs: Mapping[str, np.ndarray] | None = None, pipeline=None) -> None:
    """Builds `out` with `schedule`, runs it on `inputs` (random_inputs(out) when not given)
    and checks it against `evaluate` within `rtol`/`atol` (by default `tolerance(out)`, from
    its element types); on a mismatch the message names the operator, the schedule IR and
    the worst element. `pipeline` (a pass spec string or a list of pass instances, e.g. with
    a pass of your own) replaces the default lowering pipeline."""
    default_rtol, default_atol = tolerance(out)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    values = dict(random_inputs(out) if inputs is None else inputs)
    kernel = build(out, schedule, target=target, pipeline=pipeline)
    got = np.asarray(kernel(**{n: values[n] for n in kernel.input_names}), dtype=np.float64)
    want = np.asarray(evaluate(out, values), dtype=np.float64)
    ir = schedule.ir() if schedule is not None else "(default schedule)"
    if got.shape != want.shape:
        raise AssertionError(f"operator:\n{describe(out)}\nschedule:\n{ir}\n"
                             f"output shape {got.shape}, reference {want.shape}")
    excess = tolerance_excess(got, want, rtol, atol)
    if excess.size and excess.max() > 0:
        worst = np.unravel_index(np.argmax(excess), excess.shape)
        bad = int((excess > 0).sum())
        raise AssertionError(
            f"operator:\n{describe(out)}\nschedule:\n{ir}\n"
            f"{bad} of {excess.size} elements differ (rtol={rtol}, atol={atol}); worst at {tuple(int(i) for i in worst)}: "
            f"got {got[worst]!r}, reference {want[worst]!r}")
