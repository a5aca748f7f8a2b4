"""Builds ResNet-18, ResNet-50, MobileNetV2, a small SSD-style detector, a YOLOv3-tiny-style
detector and a RetinaNet-style one as ONNX files with random weights (onnx.helper only: nothing
is downloaded, no torch needed).

    python examples/make_models.py --out models --size 224
    python examples/make_models.py --out /tmp/m --size 32 --models resnet18,ssd --batch 4

Each model has one input "input" of shape (batch, 3, size, size), batch 1 unless `--batch`
says otherwise. ResNet-18, ResNet-50 (bottleneck blocks) and MobileNetV2 have
BatchNormalization after every conv (the importer folds it) and end in Gemm (transB=1) to
1000 classes. The detector is a small strided backbone with a box head and a class head on
two feature maps; its outputs are "boxes" (batch, N, 4), "scores" (batch, C, N) after Softmax over the
classes, the top-k of the best class score ("topk_values", "topk_indices"), and NonMaxSuppression's
"selected" ([batch, class, box] rows). "tiny" (a stem conv, one residual block and a 10-class
head; a few kernels) is the README tour's model. "yolov3_tiny" (80 classes, the real widths)
outputs its decoded "detections" (batch, 3 * (S/32)^2 + 3 * (S/16)^2, 85); "retinanet" (8
classes, 32 channels, three pyramid levels, opset 21 for GroupNormalization) "boxes", sigmoid
"scores" and NMS's "selected". The detectors and resnet50 are not built by default (--models
names them).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


class Builder:
    def __init__(self, seed: int, batch: int = 1):
        self.rng = np.random.default_rng(seed)
        self.batch = batch
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def const(self, base: str, a: np.ndarray) -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(a), n))
        return n

    def node(self, op: str, inputs, n_out: int = 1, **attrs) -> list[str]:
        name = self.name(op.lower())
        outs = [f"{name}_out{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs

    def conv(self, x, cin, cout, k, stride=1, groups=1, bias=False, bn=True, gain=1.0):
        fan_in = cin // groups * k * k
        w = self.const("w", (self.rng.standard_normal((cout, cin // groups, k, k)) * gain * np.sqrt(2 / fan_in)).astype(np.float32))
        ins = [x, w] + ([self.const("b", (self.rng.standard_normal(cout) * 0.1).astype(np.float32))] if bias else [])
        p = k // 2
        (y,) = self.node("Conv", ins, kernel_shape=[k, k], strides=[stride, stride], pads=[p, p, p, p], group=groups)
        if bn:
            r = self.rng
            gamma = self.const("gamma", r.uniform(0.5, 1.5, cout).astype(np.float32))
            beta = self.const("beta", (r.standard_normal(cout) * 0.1).astype(np.float32))
            mean = self.const("mean", (r.standard_normal(cout) * 0.1).astype(np.float32))
            var = self.const("var", r.uniform(0.5, 1.5, cout).astype(np.float32))
            (y,) = self.node("BatchNormalization", [y, gamma, beta, mean, var], epsilon=1e-5)
        return y

    def relu(self, x):
        return self.node("Relu", [x])[0]

    def relu6(self, x):
        lo = self.const("lo", np.array(0.0, np.float32))
        hi = self.const("hi", np.array(6.0, np.float32))
        return self.node("Clip", [x, lo, hi])[0]

    def head(self, x, cin, classes=1000):
        (y,) = self.node("GlobalAveragePool", [x])
        (y,) = self.node("Flatten", [y], axis=1)
        w = self.const("fc_w", (self.rng.standard_normal((classes, cin)) / np.sqrt(cin)).astype(np.float32))
        b = self.const("fc_b", (self.rng.standard_normal(classes) * 0.01).astype(np.float32))
        return self.node("Gemm", [y, w, b], transB=1)[0]

    def model(self, name: str, size: int, outputs: list[tuple[str, str, list | None, int]],
              opset: int = OPSET) -> onnx.ModelProto:
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [self.batch, 3, size, size])
        outs = []
        for value, out_name, shape, dtype in outputs:
            self.nodes.append(helper.make_node("Identity", [value], [out_name], name=self.name("out")))
            outs.append(helper.make_tensor_value_info(out_name, dtype, shape))
        graph = helper.make_graph(self.nodes, name, [inp], outs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="sched-dsl")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def resnet18(size: int = 224, classes: int = 1000, seed: int = 0, batch: int = 1) -> onnx.ModelProto:
    b = Builder(seed, batch)
    x = b.relu(b.conv("input", 3, 64, 7, 2))
    (x,) = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            y = b.relu(b.conv(x, cin, cout, 3, s))
            y = b.conv(y, cout, cout, 3, 1)
            skip = b.conv(x, cin, cout, 1, s) if (s != 1 or cin != cout) else x
            (x,) = b.node("Add", [y, skip])
            x = b.relu(x)
            cin = cout
    return b.model("resnet18", size, [(b.head(x, 512, classes), "logits", [batch, classes], TensorProto.FLOAT)])


def resnet50(size: int = 224, classes: int = 1000, seed: int = 0, batch: int = 1) -> onnx.ModelProto:
    """Bottleneck blocks (1x1, 3x3, 1x1 expanding 4x), the stride on the 3x3 conv as in torchvision."""
    b = Builder(seed, batch)
    x = b.relu(b.conv("input", 3, 64, 7, 2))
    (x,) = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for block in range(blocks):
            s = stride if block == 0 else 1
            y = b.relu(b.conv(x, cin, width, 1))
            y = b.relu(b.conv(y, width, width, 3, s))
            y = b.conv(y, width, 4 * width, 1)
            skip = b.conv(x, cin, 4 * width, 1, s) if (s != 1 or cin != 4 * width) else x
            (x,) = b.node("Add", [y, skip])
            x = b.relu(x)
            cin = 4 * width
    return b.model("resnet50", size, [(b.head(x, 2048, classes), "logits", [batch, classes], TensorProto.FLOAT)])


MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2(size: int = 224, classes: int = 1000, seed: int = 0, batch: int = 1) -> onnx.ModelProto:
    b = Builder(seed, batch)
    x = b.relu6(b.conv("input", 3, 32, 3, 2))
    cin = 32
    for t, c, n, s in MOBILENET_V2:
        for k in range(n):
            stride = s if k == 0 else 1
            hidden = cin * t
            y = b.relu6(b.conv(x, cin, hidden, 1)) if t != 1 else x
            y = b.relu6(b.conv(y, hidden, hidden, 3, stride, groups=hidden))
            y = b.conv(y, hidden, c, 1)
            if stride == 1 and cin == c:
                (y,) = b.node("Add", [x, y])
            x, cin = y, c
    x = b.relu6(b.conv(x, cin, 1280, 1))
    return b.model("mobilenet_v2", size, [(b.head(x, 1280, classes), "logits", [batch, classes], TensorProto.FLOAT)])


def ssd(size: int = 64, classes: int = 4, anchors: int = 2, seed: int = 0, top_k: int = 10,
        batch: int = 1) -> onnx.ModelProto:
    b = Builder(seed, batch)
    x = b.relu(b.conv("input", 3, 16, 3, 2))
    x = b.relu(b.conv(x, 16, 32, 3, 2))
    f1 = b.relu(b.conv(x, 32, 32, 3, 2))          # size/8
    f2 = b.relu(b.conv(f1, 32, 64, 3, 2))         # size/16
    boxes, scores, n = [], [], 0
    for f, cin in ((f1, 32), (f2, 64)):
        hw = (size // 8) ** 2 if f is f1 else (size // 16) ** 2
        loc = b.conv(f, cin, 4 * anchors, 3, bias=True, bn=False)
        (loc,) = b.node("Reshape", [loc, b.const("shape", np.array([batch, 4, anchors * hw], np.int64))])
        conf = b.conv(f, cin, classes * anchors, 3, bias=True, bn=False)
        (conf,) = b.node("Reshape", [conf, b.const("shape", np.array([batch, classes, anchors * hw], np.int64))])
        boxes.append(loc)
        scores.append(conf)
        n += anchors * hw
    (loc,) = b.node("Concat", boxes, axis=2)
    (conf,) = b.node("Concat", scores, axis=2)
    (loc,) = b.node("Transpose", [loc], perm=[0, 2, 1])           # (1, N, 4), on the host
    grid = b.rng.uniform(0, 1, (1, n, 2)).astype(np.float32)
    anchor_boxes = np.concatenate([grid, grid + 0.2], axis=2)      # y1, x1, y2, x2
    (loc,) = b.node("Add", [loc, b.const("anchors", anchor_boxes * 4)])
    (loc,) = b.node("Mul", [loc, b.const("scale", np.array([0.25], np.float32))])
    (conf,) = b.node("Softmax", [conf], axis=1)
    (best,) = b.node("ReduceMax", [conf], axes=[1], keepdims=0)    # (1, N)
    k = min(top_k, n)
    values, indices = b.node("TopK", [best, b.const("k", np.array([k], np.int64))], n_out=2, axis=1)
    (selected,) = b.node("NonMaxSuppression", [loc, conf, b.const("max_out", np.array([5], np.int64)),
                                               b.const("iou", np.array([0.5], np.float32)),
                                               b.const("score", np.array([0.05], np.float32))])
    return b.model("ssd", size, [
        (loc, "boxes", [batch, n, 4], TensorProto.FLOAT), (conf, "scores", [batch, classes, n], TensorProto.FLOAT),
        (values, "topk_values", [batch, k], TensorProto.FLOAT), (indices, "topk_indices", [batch, k], TensorProto.INT64),
        (selected, "selected", ["num_selected", 3], TensorProto.INT64)])


def yolo_head(b: Builder, x, cin: int, grid: int, stride: int, anchors, classes: int, batch: int = 1):
    """A YOLOv3 output layer: a 1x1 conv to 3 x (5 + classes) channels, viewed as
    (1, 3, grid, grid, 5 + classes) by Reshape and Transpose, decoded: centre = (sigmoid(xy) +
    cell) * stride, size = exp(wh) * anchor, objectness and class scores through a sigmoid.
    Returns (1, 3 * grid * grid, 5 + classes)."""
    a, k = len(anchors), 5 + classes
    y = b.conv(x, cin, a * k, 1, bias=True, bn=False, gain=0.1)  # small logits, as a trained head gives
    (y,) = b.node("Reshape", [y, b.const("shape", np.array([batch, a, k, grid, grid], np.int64))])
    (y,) = b.node("Transpose", [y], perm=[0, 1, 3, 4, 2])
    xy, wh, rest = b.node("Split", [y, b.const("split", np.array([2, 2, 1 + classes], np.int64))], n_out=3, axis=4)
    cells = np.stack(np.meshgrid(np.arange(grid), np.arange(grid)), axis=-1).astype(np.float32)  # (x, y) per cell
    (xy,) = b.node("Sigmoid", [xy])
    (xy,) = b.node("Add", [xy, b.const("grid", cells.reshape(1, 1, grid, grid, 2))])
    (xy,) = b.node("Mul", [xy, b.const("stride", np.array([stride], np.float32))])
    (wh,) = b.node("Exp", [wh])
    (wh,) = b.node("Mul", [wh, b.const("anchors", np.array(anchors, np.float32).reshape(1, a, 1, 1, 2))])
    (rest,) = b.node("Sigmoid", [rest])
    (y,) = b.node("Concat", [xy, wh, rest], axis=4)
    (y,) = b.node("Reshape", [y, b.const("shape", np.array([batch, a * grid * grid, k], np.int64))])
    return y


def yolov3_tiny(size: int = 416, classes: int = 80, seed: int = 0, width: float = 1.0, batch: int = 1) -> onnx.ModelProto:
    """YOLOv3-tiny's structure: conv + BatchNormalization + LeakyRelu(0.1) layers, max pools
    (the last with stride 1 and an asymmetric pad), an upsampled (Resize nearest x2) branch
    concatenated with the stride-16 features, and two decoded output layers. `width` scales
    the channel counts (the real network: 1)."""
    b = Builder(seed, batch)

    def ch(c):
        return max(4, int(c * width))

    def conv(x, cin, cout, k):
        y = b.conv(x, cin, cout, k)
        return b.node("LeakyRelu", [y], alpha=0.1)[0]

    x, cin = "input", 3
    for k, c in enumerate((16, 32, 64, 128, 256)):
        x = conv(x, cin, ch(c), 3)
        cin = ch(c)
        if k == 4:
            route = x  # stride 16
        (x,) = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = conv(x, cin, ch(512), 3)
    (x,) = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    x = conv(x, ch(512), ch(1024), 3)
    f = conv(x, ch(1024), ch(256), 1)
    y = conv(f, ch(256), ch(512), 3)
    big = yolo_head(b, y, ch(512), size // 32, 32, [(81, 82), (135, 169), (344, 319)], classes, batch)
    z = conv(f, ch(256), ch(128), 1)
    (z,) = b.node("Resize", [z, "", b.const("scales", np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    (z,) = b.node("Concat", [z, route], axis=1)
    z = conv(z, ch(128) + ch(256), ch(256), 3)
    small = yolo_head(b, z, ch(256), size // 16, 16, [(10, 14), (23, 27), (37, 58)], classes, batch)
    (det,) = b.node("Concat", [big, small], axis=1)
    n = 3 * ((size // 32) ** 2 + (size // 16) ** 2)
    return b.model("yolov3_tiny", size, [(det, "detections", [batch, n, 5 + classes], TensorProto.FLOAT)])


def retinanet(size: int = 256, classes: int = 8, seed: int = 0, channels: int = 32, anchors: int = 3,
              max_out: int = 10, batch: int = 1) -> onnx.ModelProto:
    """RetinaNet's structure at a small width: a strided backbone (C3, C4, C5 at strides 8, 16,
    32), a feature pyramid (1x1 laterals, top-down Resize x2 (nearest to P4, bilinear to P3)
    and add, 3x3 smoothing), a class head and a box head shared by the levels (conv +
    GroupNormalization + Relu, as torchvision's RetinaNet v2), each level's output brought to
    (1, H * W * A, k) by Reshape and Transpose; sigmoid class scores, boxes decoded from the
    anchors, and NonMaxSuppression per class."""
    b = Builder(seed, batch)
    c = channels
    x = b.relu(b.conv("input", 3, c // 2, 3, 2))
    x = b.relu(b.conv(x, c // 2, c, 3, 2))
    c3 = b.relu(b.conv(x, c, c, 3, 2))
    c4 = b.relu(b.conv(c3, c, 2 * c, 3, 2))
    c5 = b.relu(b.conv(c4, 2 * c, 2 * c, 3, 2))
    p5 = b.conv(c5, 2 * c, c, 1, bias=True, bn=False)
    (up,) = b.node("Resize", [p5, "", b.const("scales", np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    (p4,) = b.node("Add", [b.conv(c4, 2 * c, c, 1, bias=True, bn=False), up])
    (up,) = b.node("Resize", [p4, "", b.const("scales", np.array([1, 1, 2, 2], np.float32))], mode="linear",
                   coordinate_transformation_mode="half_pixel")
    (p3,) = b.node("Add", [b.conv(c3, c, c, 1, bias=True, bn=False), up])
    levels = [b.conv(p, c, c, 3, bias=True, bn=False) for p in (p3, p4, p5)]

    def shared_conv(prefix, cin, cout, gn):
        w = b.const(prefix + "_w", (b.rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(np.float32))
        bias = b.const(prefix + "_b", (b.rng.standard_normal(cout) * 0.1).astype(np.float32))
        norm = [b.const(prefix + "_gs", b.rng.uniform(0.5, 1.5, cout).astype(np.float32)),
                b.const(prefix + "_gb", (b.rng.standard_normal(cout) * 0.1).astype(np.float32))] if gn else []

        def apply(x):
            (y,) = b.node("Conv", [x, w, bias], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
            if gn:
                (y,) = b.node("GroupNormalization", [y, *norm], num_groups=4, epsilon=1e-5)
                y = b.relu(y)
            return y
        return apply

    cls_tower = [shared_conv("cls", c, c, True), shared_conv("cls", c, c, True), shared_conv("cls_out", c, anchors * classes, False)]
    box_tower = [shared_conv("box", c, c, True), shared_conv("box_out", c, anchors * 4, False)]
    logits, deltas, n = [], [], 0
    for p, stride in zip(levels, (8, 16, 32)):
        hw = (size // stride) ** 2
        for tower, k, out in ((cls_tower, classes, logits), (box_tower, 4, deltas)):
            y = p
            for layer in tower:
                y = layer(y)
            (y,) = b.node("Reshape", [y, b.const("shape", np.array([batch, anchors, k, hw], np.int64))])
            (y,) = b.node("Transpose", [y], perm=[0, 3, 1, 2])
            (y,) = b.node("Reshape", [y, b.const("shape", np.array([batch, hw * anchors, k], np.int64))])
            out.append(y)
        n += hw * anchors
    (logit,) = b.node("Concat", logits, axis=1)
    (delta,) = b.node("Concat", deltas, axis=1)
    (scores,) = b.node("Sigmoid", [logit])
    (scores_t,) = b.node("Transpose", [scores], perm=[0, 2, 1])          # (1, classes, N)
    centre = b.rng.uniform(0, size, (1, n, 2)).astype(np.float32)
    half = b.rng.uniform(size / 32, size / 8, (1, n, 2)).astype(np.float32)
    anchor_boxes = np.concatenate([centre - half, centre + half], axis=2)  # y1, x1, y2, x2
    (delta,) = b.node("Mul", [delta, b.const("delta_scale", np.array([size / 64], np.float32))])
    (boxes,) = b.node("Add", [delta, b.const("anchors", anchor_boxes)])
    (selected,) = b.node("NonMaxSuppression", [boxes, scores_t, b.const("max_out", np.array([max_out], np.int64)),
                                               b.const("iou", np.array([0.5], np.float32)),
                                               b.const("score", np.array([0.3], np.float32))])
    return b.model("retinanet", size, [
        (boxes, "boxes", [batch, n, 4], TensorProto.FLOAT), (scores, "scores", [batch, n, classes], TensorProto.FLOAT),
        (selected, "selected", ["num_selected", 3], TensorProto.INT64)], opset=21)  # GroupNormalization per channel


def tiny(size: int = 32, classes: int = 10, seed: int = 0, batch: int = 1) -> onnx.ModelProto:
    """A stem conv, one residual block and a classifier: a whole model that builds in seconds."""
    b = Builder(seed, batch)
    x = b.relu(b.conv("input", 3, 16, 3, 2))
    y = b.conv(b.relu(b.conv(x, 16, 16, 3)), 16, 16, 3)
    (x,) = b.node("Add", [y, x])
    x = b.relu(x)
    return b.model("tiny", size, [(b.head(x, 16, classes), "logits", [batch, classes], TensorProto.FLOAT)])


MODELS = {"resnet18": resnet18, "resnet50": resnet50, "mobilenetv2": mobilenet_v2, "ssd": ssd, "tiny": tiny,
          "yolov3_tiny": yolov3_tiny, "retinanet": retinanet}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models", help="directory for the .onnx files")
    ap.add_argument("--size", type=int, default=224, help="input height and width (a multiple of 32)")
    ap.add_argument("--models", default="resnet18,mobilenetv2,ssd,tiny",
                    help=f"comma-separated, from {', '.join(MODELS)} (resnet50's weights are 100 MB: not by default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1, help="the input's batch size")
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error(f"--batch {args.batch} must be >= 1")
    if args.size < 32 or args.size % 32:
        ap.error(f"--size {args.size} must be a positive multiple of 32")
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in wanted if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(MODELS)}")
    os.makedirs(args.out, exist_ok=True)
    for m in wanted:
        path = os.path.join(args.out, f"{m}.onnx")
        onnx.save(MODELS[m](args.size, seed=args.seed, batch=args.batch), path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
