"""Operators that run on the host, in numpy: ONNX operators without a GPU lowering (by their
ONNX op type, the `callee` of a `tensorop.host_call`), and tensorop ops placed on the host
(through sched_dsl.reference, the numpy meaning of every operator).

HOST_CALLS is the one table of host-only operators. When an operator gets a GPU lowering,
the ONNX importer maps it to that op instead and its entry here is no longer used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sched_dsl import reference
from sched_dsl.dialects import tensorop as T
from sched_dsl.tensor import tensor_of_op


def cumsum(p: dict, x: np.ndarray, axis: np.ndarray) -> list[np.ndarray]:
    ax = int(np.asarray(axis).reshape(-1)[0])
    y = np.flip(x, ax) if p.get("reverse", 0) else x
    out = np.cumsum(y, axis=ax, dtype=x.dtype)
    if p.get("exclusive", 0):
        out = out - y
    return [np.flip(out, ax) if p.get("reverse", 0) else out]


def topk(p: dict, x: np.ndarray, k: np.ndarray) -> list[np.ndarray]:
    k = int(np.asarray(k).reshape(-1)[0])
    ax = p.get("axis", -1)
    largest = p.get("largest", 1)
    # stable sort on the negated values keeps the lower index first among equal values
    order = np.argsort(-x if largest else x, axis=ax, kind="stable")
    idx = np.take(order, np.arange(k), axis=ax)
    return [np.take_along_axis(x, idx, axis=ax), idx.astype(np.int64)]


def _iou(a: np.ndarray, b: np.ndarray, center: bool) -> np.ndarray:
    """IoU of box a (4,) with boxes b (n, 4), in ONNX NonMaxSuppression's box formats."""
    def corners(bx):
        if center:
            cx, cy, w, h = bx[..., 0], bx[..., 1], bx[..., 2], bx[..., 3]
            return cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2
        y1, x1, y2, x2 = bx[..., 0], bx[..., 1], bx[..., 2], bx[..., 3]
        return np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)
    ay1, ax1, ay2, ax2 = corners(a)
    by1, bx1, by2, bx2 = corners(b)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    inter = ih * iw
    union = (ay2 - ay1) * (ax2 - ax1) + (by2 - by1) * (bx2 - bx1) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def nms(p: dict, boxes: np.ndarray, scores: np.ndarray, max_out: np.ndarray | None = None,
        iou_th: np.ndarray | None = None, score_th: np.ndarray | None = None) -> list[np.ndarray]:
    """ONNX NonMaxSuppression: [batch, class, box] rows, per batch and class in score order."""
    max_out = 0 if max_out is None else int(np.asarray(max_out).reshape(-1)[0])
    iou_th = 0.0 if iou_th is None else float(np.asarray(iou_th).reshape(-1)[0])
    center = bool(p.get("center_point_box", 0))
    rows = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]
            cand = np.argsort(-s, kind="stable")
            if score_th is not None:
                cand = cand[s[cand] > float(np.asarray(score_th).reshape(-1)[0])]
            kept: list[int] = []
            for i in cand:
                if len(kept) >= max_out:
                    break
                if not kept or np.all(_iou(boxes[b, i], boxes[b, kept], center) <= iou_th):
                    kept.append(int(i))
            rows += [[b, c, i] for i in kept]
    return [np.array(rows, dtype=np.int64).reshape(-1, 3)]


def transpose(p: dict, x: np.ndarray) -> list[np.ndarray]:
    perm = p.get("perm")
    return [np.ascontiguousarray(np.transpose(x, perm))]


def nms_rows(p: dict, *picks: np.ndarray) -> list[np.ndarray]:
    """ONNX NonMaxSuppression's [batch, class, box] rows (batch 0) from tensorop.nms's padded
    index list of each class."""
    rows = [[0, c, int(i)] for c, kept in enumerate(picks) for i in kept if i >= 0]
    return [np.array(rows, dtype=np.int64).reshape(-1, 3)]


def to_int64(p: dict, x: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(x).astype(np.int64)]


HostFn = Callable[..., list[np.ndarray]]

# ONNX op type -> (numpy function of (attributes, *inputs) -> outputs)
HOST_CALLS: dict[str, HostFn] = {
    "CumSum": cumsum,
    "TopK": topk,
    "NonMaxSuppression": nms,
    "Transpose": transpose,
    # the importer's own steps around GPU operators
    "NmsRows": nms_rows,
    "ToInt64": to_int64,
}


def run_host(op, args: list[np.ndarray]) -> list[np.ndarray]:
    """Runs a host_call or a host-placed tensorop op in numpy."""
    if isinstance(op, T.HostCallOp):
        params = {k: _py(v) for k, v in op.params.data.items()}
        return HOST_CALLS[op.callee.data](params, *args)
    return [np.asarray(reference.apply(tensor_of_op(op), args), dtype=np.float32)]


def _py(attr):
    from xdsl.dialects.builtin import ArrayAttr, FloatAttr, IntegerAttr, StringAttr
    if isinstance(attr, IntegerAttr):
        return attr.value.data
    if isinstance(attr, FloatAttr):
        return attr.value.data
    if isinstance(attr, StringAttr):
        return attr.data
    if isinstance(attr, ArrayAttr):
        return [_py(a) for a in attr.data]
    raise TypeError(f"host_call parameter {attr} is not an int, float, string or list")
