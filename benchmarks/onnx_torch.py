"""A PyTorch twin of an ONNX model: its nodes run as torch functional calls, so that a model
built with onnx.helper (examples/make_models.py) is timed the way a PyTorch user runs it, beside
sched-dsl: everything up to the first data-dependent node (NonMaxSuppression) replayed as a CUDA
graph, the rest (NMS, as torchvision's detectors do it) eagerly after it.

    twin = OnnxTwin(onnx.load("retinanet.onnx"), "cuda")
    outputs = twin.run({"input": x})          # dict of numpy arrays, as onnxruntime gives
    ms = twin.graph_ms({"input": x})          # mean ms of one captured-and-eager pass
    ys = twin(x_tensor, timed)                # the outputs as tensors; timed(node name, fn) runs each op

`fold_batchnorm=True` folds batch norms into the convs first, as sched-dsl's importer does.

Only the operators those models use are here; anything else is a NotImplementedError naming it.
"""

from __future__ import annotations

import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

DYNAMIC = {"NonMaxSuppression"}
# inputs read as host values (shapes, sizes, scales, thresholds): a device tensor there would
# be copied back during the capture
HOST_INPUTS = {"Reshape": {1}, "Split": {1}, "Resize": {1, 2, 3}, "NonMaxSuppression": {2, 3, 4}, "Clip": set()}


def _attrs(node) -> dict:
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _pool_pads(pads, rank=2):
    """ONNX pads (begin..., end...) as F.pad's (last dim first, begin/end pairs)."""
    out = []
    for d in reversed(range(rank)):
        out += [pads[d], pads[d + rank]]
    return out


def _nms(boxes, scores, max_out=None, iou=None, score_min=None, center_point_box=0):
    import torchvision

    max_out = int(max_out.reshape(-1)[0]) if max_out is not None and max_out.size else 0
    iou = float(iou.reshape(-1)[0]) if iou is not None and iou.size else 0.0
    if center_point_box:
        c, s = boxes[..., :2], boxes[..., 2:] / 2
        boxes = torch.cat([c - s, c + s], -1)
    else:  # corners in either order
        boxes = torch.cat([torch.minimum(boxes[..., :2], boxes[..., 2:]),
                           torch.maximum(boxes[..., :2], boxes[..., 2:])], -1)
    picked = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]
            idx = torch.arange(s.numel(), device=s.device)
            if score_min is not None and score_min.size:
                keep = s > float(score_min.reshape(-1)[0])
                s, idx = s[keep], idx[keep]
            order = torchvision.ops.nms(boxes[b, idx], s, iou)[:max_out]
            sel = idx[order]
            picked.append(torch.stack([torch.full_like(sel, b), torch.full_like(sel, c), sel], 1))
    return torch.cat(picked).to(torch.int64)


def _resize(x, roi, scales=None, sizes=None, mode="nearest", coordinate_transformation_mode="half_pixel", **_):
    size = ([int(s) for s in sizes[2:]] if sizes is not None and sizes.size
            else [round(d * float(s)) for d, s in zip(x.shape[2:], scales[2:])])
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=coordinate_transformation_mode == "align_corners")


def _reshape(x, shape, allowzero=0):
    dims = [x.shape[i] if d == 0 and not allowzero else int(d) for i, d in enumerate(shape.tolist())]
    return x.reshape(dims)


def _split(x, split=None, axis=0, num_outputs=None):
    if split is not None and split.size:
        return torch.split(x, split.tolist(), axis)
    return torch.chunk(x, num_outputs, axis)


def _maxpool(x, kernel_shape, strides=None, pads=None, ceil_mode=0, dilations=None, **_):
    if pads and any(pads):
        x = F.pad(x, _pool_pads(pads), value=float("-inf"))
    return F.max_pool2d(x, kernel_shape, strides or 1, 0, dilations or 1, ceil_mode=bool(ceil_mode))


def _conv(x, w, b=None, strides=None, pads=None, dilations=None, group=1, **_):
    pads = pads or [0] * 4
    if pads[:2] != pads[2:]:
        x, pads = F.pad(x, _pool_pads(pads)), [0] * 4
    return F.conv2d(x, w, b, strides or 1, pads[:2], dilations or 1, group)


def _group_norm(x, scale, bias, num_groups, epsilon=1e-5, **_):
    if scale.numel() == x.shape[1]:  # opset 21: per channel
        return F.group_norm(x, num_groups, scale, bias, epsilon)
    y = F.group_norm(x, num_groups, None, None, epsilon)
    per = x.shape[1] // num_groups
    return y * scale.repeat_interleave(per)[None, :, None, None] + bias.repeat_interleave(per)[None, :, None, None]


OPS = {
    "Conv": _conv,
    "BatchNormalization": lambda x, s, b, m, v, epsilon=1e-5, **_: F.batch_norm(x, m, v, s, b, False, 0.0, epsilon),
    "Relu": lambda x: F.relu(x),
    "LeakyRelu": lambda x, alpha=0.01: F.leaky_relu(x, alpha),
    "Sigmoid": torch.sigmoid,
    "Exp": torch.exp,
    "Add": torch.add,
    "Mul": torch.mul,
    "Sub": torch.sub,
    "Identity": lambda x: x,
    "Clip": lambda x, lo=None, hi=None, **_: torch.clamp(x, lo, hi),
    "GlobalAveragePool": lambda x: F.adaptive_avg_pool2d(x, 1),
    "Flatten": lambda x, axis=1: torch.flatten(x, axis),
    "Gemm": lambda a, b, c=None, transA=0, transB=0, alpha=1.0, beta=1.0: torch.addmm(
        c if c is not None else torch.zeros((), device=a.device), a.t() if transA else a, b.t() if transB else b,
        beta=beta if c is not None else 0.0, alpha=alpha),
    "MaxPool": _maxpool,
    "Reshape": _reshape,
    "Transpose": lambda x, perm=None: x.permute(*(perm or reversed(range(x.dim())))),
    "Concat": lambda *xs, axis: torch.cat(xs, axis),
    "Split": _split,
    "Resize": _resize,
    "GroupNormalization": _group_norm,
    "NonMaxSuppression": _nms,
}


class OnnxTwin:
    def __init__(self, model: onnx.ModelProto, device: str = "cuda", fold_batchnorm: bool = False):
        self.device = torch.device(device)
        consts, g = {}, model.graph
        if fold_batchnorm:
            from sched_dsl.graph.onnx_import import Importer
            from sched_dsl.graph.onnx_import import fold_batchnorm as fold

            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            imp = Importer(copy)
            fold(imp)  # conv weights and bias absorb the batch norm, as in sched-dsl
            g, consts = imp.graph, {k: np.asarray(v) for k, v in imp.consts.items()}
        consts.update({i.name: numpy_helper.to_array(i) for i in g.initializer if i.name not in consts})
        self.nodes = []
        for n in g.node:
            if n.op_type == "Constant":
                consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
            elif n.op_type not in OPS:
                raise NotImplementedError(f"the PyTorch twin has no {n.op_type} (node {n.name!r})")
            else:
                self.nodes.append(n)
        self.host = {k: np.asarray(v) for k, v in consts.items()}
        self.values = {k: torch.from_numpy(np.array(v)).to(self.device) for k, v in consts.items()}
        cut = next((i for i, n in enumerate(self.nodes) if n.op_type in DYNAMIC), len(self.nodes))
        self.static, self.dynamic = self.nodes[:cut], self.nodes[cut:]
        self.inputs = [i.name for i in g.input if i.name not in self.values]
        self.outputs = [o.name for o in g.output]

    def cast(self, dtype, channels_last: bool = False) -> None:
        """Float constants to `dtype` (torch.bfloat16, torch.float16), 4-D ones channels-last."""
        for k, v in self.values.items():
            if v.is_floating_point():
                v = v.to(dtype)
                self.values[k] = v.contiguous(memory_format=torch.channels_last) if channels_last and v.dim() == 4 else v

    def __call__(self, x, timed=None) -> list:
        """The outputs (tensors) for the one input x; `timed(node name, fn)` runs each op."""
        env = self._run(self.nodes, {**self.values, self.inputs[0]: x}, timed)
        return [env[o] for o in self.outputs]

    def _run(self, nodes, env, timed=None):
        for n in nodes:
            host = HOST_INPUTS.get(n.op_type, ())
            args = [None if not i else self.host[i] if k in host and i in self.host else env[i]
                    for k, i in enumerate(n.input)]
            while args and args[-1] is None:
                args.pop()
            op, attrs = OPS[n.op_type], _attrs(n)
            out = op(*args, **attrs) if timed is None else timed(n.name, lambda op=op, args=args, attrs=attrs: op(*args, **attrs))
            for name, v in zip(n.output, out if isinstance(out, (tuple, list)) else [out]):
                env[name] = v
        return env

    def _feeds(self, feeds):
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in feeds.items()}

    @torch.no_grad()
    def run(self, feeds: dict) -> dict:
        env = self._run(self.nodes, {**self.values, **self._feeds(feeds)})
        return {o: env[o].cpu().numpy() for o in self.outputs}

    @torch.no_grad()
    def graph_ms(self, feeds: dict, repeat: int = 50) -> float:
        """Mean ms of one pass: the static part replayed as a CUDA graph, the dynamic part eager."""
        env = {**self.values, **self._feeds(feeds)}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._run(self.static, dict(env))
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        static_env = dict(env)
        with torch.cuda.graph(graph):
            self._run(self.static, static_env)

        def once():
            graph.replay()
            self._run(self.dynamic, dict(static_env))

        for _ in range(3):
            once()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeat):
            once()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1e3 / repeat
