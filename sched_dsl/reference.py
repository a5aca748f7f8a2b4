"""The numpy meaning of every operator: the one reference all tests compare against.

Values are float64. A tensor of f16 or bf16 holds values of that type: placeholders are
rounded to it on the way in, and each operator computes in float64 from its (rounded)
inputs and rounds its result to its type, round to nearest even (f32 results are not
rounded). An operator with compute mode tf32 rounds its inputs to TF32 (10 mantissa bits,
to nearest, ties away from zero, as cvt.rna.tf32.f32) before multiplying.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sched_dsl.tensor import Tensor, topological


def numpy_dtype(dtype: str):
    """The numpy type that holds a tensor of `dtype` (ml_dtypes' bfloat16 for bf16)."""
    if dtype == "bf16":
        import ml_dtypes
        return ml_dtypes.bfloat16
    return {"f32": np.float32, "f16": np.float16, "i32": np.int32}[dtype]


def round_to(x, dtype: str) -> np.ndarray:
    """x (float64) rounded to the values of `dtype`; f32 and i32 are left as they are."""
    x = np.asarray(x)
    if dtype in ("f16", "bf16"):
        return x.astype(numpy_dtype(dtype)).astype(np.float64)
    return x


def round_tf32(x) -> np.ndarray:
    """x rounded to TF32 (the f32 exponent, 10 mantissa bits), to nearest, ties away from zero."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    finite = (bits & 0x7F800000) != 0x7F800000
    rounded = np.where(finite, (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000), bits)
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


def _spatial(layout: str) -> tuple[int, int]:
    """The axes of the rows and columns of a 4-D array in `layout` (NCHW or NHWC)."""
    return (1, 2) if layout == "NHWC" else (2, 3)


def _pad_hw(x: np.ndarray, padding, fill=0.0, layout: str = "NCHW") -> np.ndarray:
    """x padded with `fill`: (top, left, bottom, right) on its rows and columns."""
    pt, pl, pb, pr = padding
    width = [(0, 0)] * 4
    ah, aw = _spatial(layout)
    width[ah], width[aw] = (pt, pb), (pl, pr)
    return np.pad(x, width, constant_values=fill)


def _windows(x: np.ndarray, kernel, stride, padding, dilation=(1, 1), fill=0.0, layout: str = "NCHW") -> np.ndarray:
    """The windows of a 4-D array, padded with `fill`: (N, C, OH, OW, KH, KW) for NCHW,
    (N, OH, OW, C, KH, KW) for NHWC."""
    xp = _pad_hw(x, padding, fill, layout)
    kh, kw = kernel
    dh, dw = dilation
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=_spatial(layout))
    if layout == "NHWC":
        return win[:, ::stride[0], ::stride[1], :, ::dh, ::dw]
    return win[:, :, ::stride[0], ::stride[1], ::dh, ::dw]


def conv2d(x, w, stride, padding, dilation, groups, layout: str = "NCHW"):
    """conv2d of an input in `layout` and FCHW weights; the result in `layout`."""
    c = x.shape[3 if layout == "NHWC" else 1]
    f = w.shape[0]
    win = _windows(x, w.shape[2:], stride, padding, dilation, layout=layout)
    cg, fg = c // groups, f // groups
    if layout == "NHWC":
        outs = [np.einsum("nyxchw,fchw->nyxf", win[:, :, :, g * cg:(g + 1) * cg], w[g * fg:(g + 1) * fg])
                for g in range(groups)]
        return np.concatenate(outs, axis=3)
    outs = [np.einsum("ncyxhw,fchw->nfyx", win[:, g * cg:(g + 1) * cg], w[g * fg:(g + 1) * fg])
            for g in range(groups)]
    return np.concatenate(outs, axis=1)


def im2col(x, kernel, stride, padding, dilation, rows, width, columns=0):
    """tensorop.im2col: the windows as columns, zero rows and columns beyond the window's."""
    win = _windows(x, kernel, stride, padding, dilation)  # (n, c, oh, ow, kh, kw)
    n, c, oh, ow, kh, kw = win.shape
    cols = np.zeros((c, kh, kw, n, oh, width), dtype=x.dtype)
    cols[..., :ow] = win.transpose(1, 4, 5, 0, 2, 3)
    out = np.zeros((rows, max(columns, n * oh * width)), dtype=x.dtype)
    out[:c * kh * kw, :n * oh * width] = cols.reshape(c * kh * kw, -1)
    return out


def winograd_input(x, tile, padding):
    """tensorop.winograd_input: B^T d B of every input tile, zeros outside the input."""
    from sched_dsl.dialects.tensorop import WINOGRAD, winograd_input_tiles

    bt = np.array(WINOGRAD[tile][0], dtype=np.float64)
    a = tile + 2
    n, c, h, w = x.shape
    th, tw = winograd_input_tiles(x.shape, tile, padding)
    pt, pl = padding[0], padding[1]
    grown = np.zeros((n, c, th * tile + 2, tw * tile + 2))
    rows, cols = min(h, th * tile + 2 - pt), min(w, tw * tile + 2 - pl)
    grown[:, :, pt:pt + rows, pl:pl + cols] = x[:, :, :rows, :cols]
    d = np.stack([np.stack([grown[:, :, ty * tile:ty * tile + a, tx * tile:tx * tile + a] for tx in range(tw)], 2)
                  for ty in range(th)], 2)  # n, c, th, tw, a, a
    v = np.einsum("xi,ncuvij,yj->xycnuv", bt, d, bt)
    return v.reshape(a * a, c, n * th * tw)


def winograd_weights(w, tile):
    from sched_dsl.dialects.tensorop import WINOGRAD

    g = np.array(WINOGRAD[tile][1], dtype=np.float64)
    u = np.einsum("xi,fcij,yj->xyfc", g, w, g)
    return u.reshape((tile + 2) ** 2, *w.shape[:2])


def winograd_output(m, tile, size):
    from sched_dsl.dialects.tensorop import WINOGRAD, winograd_tiles

    at = np.array(WINOGRAD[tile][2], dtype=np.float64)
    a = tile + 2
    th, tw = winograd_tiles(size, tile)
    f = m.shape[1]
    prods = m.reshape(a, a, f, -1, th, tw)
    y = np.einsum("rx,xyfnuv,sy->nfurvs", at, prods, at)  # n, f, th, tile, tw, tile
    return y.reshape(y.shape[0], f, th * tile, tw * tile)[:, :, :size[0], :size[1]]


def pool2d(x, kind, kernel, stride, padding, dilation=(1, 1), ceil_mode=False, count_include_pad=False,
           layout: str = "NCHW"):
    from sched_dsl.dialects.tensorop import as_nchw, pool2d_shape

    oh, ow = as_nchw(pool2d_shape(x.shape, kernel, stride, padding, dilation, ceil_mode, layout), layout)[2:]
    h, w = (x.shape[a] for a in _spatial(layout))
    # ceil_mode's last windows may reach past the padding: pad further with the fill, then
    # take the first oh x ow windows
    pt, pl, pb, pr = padding
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    extra_h = max(0, (oh - 1) * stride[0] + span[0] - (h + pt + pb))
    extra_w = max(0, (ow - 1) * stride[1] + span[1] - (w + pl + pr))
    grown = (pt, pl, pb + extra_h, pr + extra_w)

    def window_sums(a, pads, fill=0.0, reduce=np.sum):
        win = _windows(a, kernel, stride, pads, dilation, fill, layout)
        return reduce(win[:, :oh, :ow] if layout == "NHWC" else win[:, :, :oh, :ow], axis=(4, 5))

    if kind == "max":
        return window_sums(x, grown, -np.inf, np.max)
    total = window_sums(x, grown)
    inside = np.ones_like(x)
    if count_include_pad:  # the padded input counts, the ceil-mode overhang does not
        inside = _pad_hw(inside, padding, 1, layout)
        grown = (0, 0, extra_h, extra_w)
    return total / window_sums(inside, grown)


def _erf(x):
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x)


def _where_neg(x, neg):
    return np.where(x < 0, neg, x)


UNARY = {
    "relu": lambda x, p: np.maximum(x, 0),
    "relu6": lambda x, p: np.clip(x, 0, 6),
    "clip": lambda x, p: np.clip(x, p["lo"], p["hi"]),
    "sigmoid": lambda x, p: 1 / (1 + np.exp(-x)),
    "tanh": lambda x, p: np.tanh(x),
    "exp": lambda x, p: np.exp(x),
    "neg": lambda x, p: -x,
    "abs": lambda x, p: np.abs(x),
    "sqrt": lambda x, p: np.sqrt(x),
    "reciprocal": lambda x, p: 1 / x,
    "floor": lambda x, p: np.floor(x),
    "ceil": lambda x, p: np.ceil(x),
    "sign": lambda x, p: np.sign(x),
    "erf": lambda x, p: _erf(x),
    "log": lambda x, p: np.log(x),
    "softplus": lambda x, p: np.logaddexp(0, x),
    "softsign": lambda x, p: x / (1 + np.abs(x)),
    "leaky_relu": lambda x, p: _where_neg(x, p["alpha"] * x),
    "elu": lambda x, p: _where_neg(x, p["alpha"] * (np.exp(x) - 1)),
    "selu": lambda x, p: p["beta"] * np.where(x <= 0, p["alpha"] * (np.exp(x) - 1), x),
    "hard_sigmoid": lambda x, p: np.clip(p["alpha"] * x + p["beta"], 0, 1),
    "hard_swish": lambda x, p: x * np.clip(x / 6 + 0.5, 0, 1),
    "gelu": lambda x, p: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "gelu_tanh": lambda x, p: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
    "shrink": lambda x, p: np.where(x < -p["alpha"], x + p["beta"], np.where(x > p["alpha"], x - p["beta"], 0)),
}
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
          "max": np.maximum, "min": np.minimum, "pow": np.power,
          "prelu": lambda x, slope: np.where(x < 0, x * slope, x)}
REDUCE = {"sum": np.sum, "max": np.max, "mean": np.mean}


def normalize(x, axes, epsilon):
    mean = x.mean(axis=tuple(axes), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=tuple(axes), keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon)


def remap(x, shape, source, step, offset, mode, value):
    """The index map of tensorop.remap, in numpy."""
    grids = np.indices(shape)
    idx = []
    inside = np.ones(shape, dtype=bool)
    for n, s, st, off in zip(x.shape, source, step, offset):
        i = np.full(shape, off) if s < 0 else off + st * grids[s]
        if mode == "constant":
            inside &= (i >= 0) & (i < n)
            i = np.clip(i, 0, n - 1)
        elif mode == "edge":
            i = np.clip(i, 0, n - 1)
        elif mode == "reflect" and n > 1:
            i = np.abs(i)
            i = np.where(i > n - 1, 2 * (n - 1) - i, i)
        elif mode == "wrap":
            i = np.mod(i, n)
        idx.append(i)
    out = x[tuple(idx)] if x.ndim else np.broadcast_to(x, shape)
    return np.where(inside, out, value)


def gather(x, indices, axis):
    n = x.shape[axis]
    idx = np.clip(np.where(indices < 0, indices + n, indices), 0, n - 1)
    return np.take(x, idx.astype(np.int64), axis=axis)


def conv_transpose2d(x, w, stride, padding, dilation, output_padding, groups):
    """Scatter form: every input element adds its weighted window to the output."""
    from sched_dsl.dialects.tensorop import conv_transpose2d_shape

    n, f, oh, ow = conv_transpose2d_shape(x.shape, w.shape, stride, padding, dilation, output_padding, groups)
    c, h, wd = x.shape[1:]
    fg, kh, kw = w.shape[1:]
    cg = c // groups
    pt, pl = padding[0], padding[1]
    full = np.zeros((n, f, (h - 1) * stride[0] + (kh - 1) * dilation[0] + 1 + oh,
                     (wd - 1) * stride[1] + (kw - 1) * dilation[1] + 1 + ow))
    for g in range(groups):
        xs, ws = x[:, g * cg:(g + 1) * cg], w[g * cg:(g + 1) * cg]
        for ry in range(kh):
            for rx in range(kw):
                contrib = np.einsum("nchw,cf->nfhw", xs, ws[:, :, ry, rx])
                y0, x0 = ry * dilation[0], rx * dilation[1]
                full[:, g * fg:(g + 1) * fg, y0:y0 + (h - 1) * stride[0] + 1:stride[0],
                     x0:x0 + (wd - 1) * stride[1] + 1:stride[1]] += contrib
    return full[:, :, pt:pt + oh, pl:pl + ow]


def resize(x, shape, scales, mode, coordinate, rounding):
    """ONNX Resize (nearest and linear, as onnxruntime computes them), one dimension at a time."""
    out = np.asarray(x, dtype=np.float64)
    for d, (n, m, s) in enumerate(zip(x.shape, shape, scales)):
        if n == m and s == 1.0:
            continue
        o = np.arange(m, dtype=np.float32)
        s32 = np.float32(s)
        if coordinate == "align_corners":
            v = np.zeros(m, np.float32) if m == 1 else o * np.float32(n - 1) / np.float32(m - 1)
        elif coordinate == "asymmetric":
            v = o / s32
        elif coordinate == "tf_half_pixel_for_nn":
            v = (o + np.float32(0.5)) / s32
        elif coordinate == "pytorch_half_pixel" and m == 1:
            v = np.zeros(1, np.float32)
        else:
            v = (o + np.float32(0.5)) / s32 - np.float32(0.5)
        if mode == "nearest":
            r = {"round_prefer_floor": lambda t: np.ceil(t - 0.5), "round_prefer_ceil": lambda t: np.floor(t + 0.5),
                 "floor": np.floor, "ceil": np.ceil}[rounding](v)
            out = np.take(out, np.clip(r, 0, n - 1).astype(np.int64), axis=d)
            continue
        v = np.clip(v, 0, n - 1)
        i1 = np.minimum(v.astype(np.int64), n - 1)
        i2 = np.minimum(i1 + 1, n - 1)
        w2 = np.where(i1 == i2, 0.5, v - i1)
        w1 = np.where(i1 == i2, 0.5, 1 - (v - i1))
        bshape = [1] * out.ndim
        bshape[d] = m
        out = np.take(out, i1, axis=d) * w1.reshape(bshape) + np.take(out, i2, axis=d) * w2.reshape(bshape)
    return out


def cumsum(x, axis, exclusive, reverse):
    """ONNX CumSum."""
    if reverse:
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis)
    if exclusive:
        out = out - x
    return np.flip(out, axis) if reverse else out


def argsort(x, axis, descending):
    """Stable: equal values keep their index order (also when descending)."""
    return np.argsort(-x if descending else x, axis=axis, kind="stable").astype(np.int32)


def topk_indices(x, k, axis, largest):
    return np.take(argsort(x, axis, largest), np.arange(k), axis=axis)


def _suppresses(a, b, iou_threshold):
    """ONNX's (onnxruntime's SuppressByIOU) test of two [y1, x1, y2, x2] boxes, in float32."""
    (ay0, ay1), (ax0, ax1) = sorted(a[[0, 2]]), sorted(a[[1, 3]])
    (by0, by1), (bx0, bx1) = sorted(b[[0, 2]]), sorted(b[[1, 3]])
    ix0, ix1 = max(ax0, bx0), min(ax1, bx1)
    iy0, iy1 = max(ay0, by0), min(ay1, by1)
    if ix1 <= ix0 or iy1 <= iy0:
        return False
    inter = (ix1 - ix0) * (iy1 - iy0)
    area_a, area_b = (ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0)
    union = area_a + area_b - inter
    if inter <= 0 or area_a <= 0 or area_b <= 0 or union <= 0:
        return False
    return inter / union > iou_threshold


def nms(boxes, scores, max_output, iou_threshold, score_threshold):
    """Greedy NMS as onnxruntime's NonMaxSuppression for one batch and class: candidates
    (score > score_threshold; all boxes when it is -inf) by decreasing score, ties by lower
    index; a candidate is kept unless it overlaps a kept one by IoU > iou_threshold."""
    boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
    thr = np.float32(iou_threshold)
    kept: list[int] = []
    for i in argsort(scores, 0, True):
        if len(kept) == max_output:
            break
        if score_threshold != -np.inf and not scores[i] > np.float32(score_threshold):
            continue
        if not any(_suppresses(boxes[j], boxes[i], thr) for j in kept):
            kept.append(int(i))
    return np.array(kept + [-1] * (max_output - len(kept)), dtype=np.int32)


# unit roundoff (half the distance from 1 to the next value) of the reduced-precision types
UNIT_ROUNDOFF = {"f16": 2.0**-11, "bf16": 2.0**-8}
F32_TOLERANCE = (1e-4, 1e-5)


def tolerance(out: Tensor | Sequence[Tensor]) -> tuple[float, float]:
    """(rtol, atol) for comparing a kernel's `out` with `evaluate`, derived from the element
    types of the graph (docs/precision.md): f32 graphs (1e-4, 1e-5); otherwise rtol 8u and
    atol 4u, u the largest unit roundoff among its f16/bf16 tensors (2^-11, 2^-8): the kernel
    (in f32) and the reference (in float64) round nearly the same value, each to a
    neighbouring value of the type, one ulp (2u) apart at the output and at each rounded
    intermediate, on inputs of magnitude about 1. A tf32 matmul/conv2d counts as u = 2^-11:
    each product comes from inputs rounded to 10 mantissa bits (cvt.rna on tensor cores), within
    2 * 2^-10 = 4u relative, and sums of same-sign products keep that bound. A 3xtf32 one
    counts as u = 2^-19: each input is a TF32 part plus a TF32 remainder (within 2^-21 of
    it), and the small*small product is left out (within 2^-22)."""
    graph = topological([out] if isinstance(out, Tensor) else list(out))
    us = [UNIT_ROUNDOFF[t.dtype] for t in graph if t.dtype in UNIT_ROUNDOFF]
    if any(t.attrs.get("compute") == "tf32" for t in graph):
        us.append(2.0**-11)  # each product: inputs within 2^-11 relative each, within 4u
    if any(t.attrs.get("compute") == "3xtf32" for t in graph):
        us.append(2.0**-19)  # each product: within about 3 * 2^-21 relative, about 4u
    if not us:
        return F32_TOLERANCE
    u = max(us)
    return 8 * u, 4 * u


def apply(t: Tensor, args: list[np.ndarray]) -> np.ndarray:
    """The operator's value in float64, rounded to its element type."""
    if t.attrs.get("compute") == "tf32":
        args = [round_tf32(x) for x in args]
    out = _apply(t, args)
    return round_to(out, t.dtype) if t.dtype != "i32" else out


def _apply(t: Tensor, args: list[np.ndarray]) -> np.ndarray:
    a = t.attrs
    if t.kind == "cast":
        return args[0]
    if t.kind == "matmul":
        return np.matmul(args[0], args[1])[..., :t.shape[-1]]
    if t.kind == "conv2d":
        return conv2d(*args, a["stride"], a["padding"], a["dilation"], a["groups"], a.get("layout", "NCHW"))
    if t.kind == "winograd_input":
        return winograd_input(args[0], a["tile"], a["padding"])
    if t.kind == "winograd_weights":
        return winograd_weights(args[0], a["tile"])
    if t.kind == "winograd_output":
        return winograd_output(args[0], a["tile"], t.shape[2:])
    if t.kind == "im2col":
        return im2col(args[0], a["kernel"], a["stride"], a["padding"], a["dilation"], t.shape[0], a["width"],
                      t.shape[1])
    if t.kind == "pool2d":
        return pool2d(args[0], a["kind"], a["kernel"], a["stride"], a["padding"], a.get("dilation", (1, 1)),
                      a.get("ceil_mode", False), a.get("count_include_pad", False), a.get("layout", "NCHW"))
    if t.kind == "unary":
        return UNARY[a["fn"]](args[0], a.get("params", {}))
    if t.kind == "binary":
        return BINARY[a["fn"]](args[0], args[1])
    if t.kind == "bias_add":
        shape = [1] * args[0].ndim
        shape[a["axis"] % args[0].ndim] = -1
        return args[0] + args[1].reshape(shape)
    if t.kind == "reduce":
        return REDUCE[a["fn"]](args[0], axis=tuple(a["axes"]), keepdims=a["keepdims"])
    if t.kind == "softmax":
        x = args[0]
        shifted = x - x.max(axis=a["axis"], keepdims=True)
        total = np.exp(shifted).sum(axis=a["axis"], keepdims=True)
        return shifted - np.log(total) if a.get("log") else np.exp(shifted) / total
    if t.kind == "normalize":
        return normalize(args[0], a["axes"], a["epsilon"])
    if t.kind == "remap":
        return remap(args[0], t.shape, a["source"], a["step"], a["offset"], a["mode"], a.get("value", 0.0))
    if t.kind == "gather":
        return gather(args[0], args[1], a["axis"])
    if t.kind == "conv_transpose2d":
        return conv_transpose2d(*args, a["stride"], a["padding"], a["dilation"], a["output_padding"], a["groups"])
    if t.kind == "resize":
        return resize(args[0], t.shape, a["scales"], a["mode"], a["coordinate"], a["rounding"])
    if t.kind == "scan":
        return cumsum(args[0], a["axis"], a["exclusive"], a["reverse"])
    if t.kind == "argsort":
        return argsort(args[0], a["axis"], a["descending"])
    if t.kind == "topk":
        return topk_indices(args[0], a["k"], a["axis"], a["largest"])
    if t.kind == "take_along_axis":
        return np.take_along_axis(args[0], args[1].astype(np.int64), axis=a["axis"])
    if t.kind == "nms":
        return nms(args[0], args[1], a["max_output"], a["iou_threshold"], a["score_threshold"])
    if t.kind == "reshape":
        return args[0].reshape(t.shape)
    if t.kind == "concat":
        return np.concatenate(args, axis=a["axis"])
    if t.kind == "slice":
        index = [slice(None)] * args[0].ndim
        index[a["axis"] % args[0].ndim] = slice(a["start"], a["stop"])
        return args[0][tuple(index)]
    raise ValueError(f"no reference for {t.kind}")


def evaluate(outputs: Tensor | list[Tensor], inputs: Mapping[str, np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """The value of `outputs` for placeholder values `inputs` (by name), in float64 (i32
    tensors as integers; f16 and bf16 tensors hold values rounded to their type)."""
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    values: dict[int, np.ndarray] = {}
    for t in topological(outs):
        if t.kind == "placeholder":
            if t.name not in inputs:
                raise KeyError(f"no value for input '{t.name}'")
            if t.dtype == "i32":
                values[id(t)] = np.asarray(inputs[t.name], dtype=np.int32)
            else:
                values[id(t)] = round_to(np.asarray(inputs[t.name], dtype=np.float64), t.dtype)
        else:
            values[id(t)] = apply(t, [values[id(i)] for i in t.inputs])
    result = [values[id(t)] for t in outs]
    return result[0] if isinstance(outputs, Tensor) else result
