"""Batch-1 3x3 convolutions (stride 1, padding 1, as in ResNet-18) with a tiled schedule:
each block computes `f_block` filters over a `y_block` x `x_block` patch of the output; its
threads each accumulate `f_reg` filters x `x_reg` columns in registers (cache_write local)
while chunks of `rc_chunk` input channels of the input patch and of the weights are staged
in shared memory (double-buffered); the 3x3 window is unrolled. Also MobileNetV2's depthwise 3x3 convolution
with a flat schedule.

    python examples/resnet_conv_schedule.py [--target cuda|opencl]
"""

from __future__ import annotations

import argparse

import numpy as np

import sched_dsl as sd
from sched_dsl.graph.model_schedules import conv_tiles, depthwise_flat

# (channels=filters, size): the four 3x3 layers of ResNet-18's stages, and a schedule for each
RESNET18_3X3 = {
    (64, 56): dict(f_block=32, f_reg=4, y_block=8, x_block=14, x_reg=2, rc_chunk=8),
    (128, 28): dict(f_block=32, f_reg=4, y_block=4, x_block=14, x_reg=2, rc_chunk=8),
    (256, 14): dict(f_block=16, f_reg=2, y_block=7, x_block=14, x_reg=2, rc_chunk=16),
    (512, 7): dict(f_block=16, f_reg=2, y_block=7, x_block=7, x_reg=1, rc_chunk=16),
}


def conv3x3(c: int, h: int, w: int, f: int, f_block=32, f_reg=4, y_block=8, x_block=14, x_reg=2, rc_chunk=8,
            staged: bool = True):
    """(Y, schedule) for a 1 x c x h x w input and f 3x3 filters, stride 1, padding 1, with
    sched_dsl.graph.model_schedules.conv_tiles (the schedule whole models use). `staged=False`
    instead writes a plainer version by hand: single shared buffers, the weights' tile in
    their own layout."""
    x = sd.placeholder("X", (1, c, h, w))
    wt = sd.placeholder("W", (f, c, 3, 3))
    y = sd.conv2d(x, wt, stride=1, padding=1, name="Y")
    s = sd.Schedule(y)
    if staged:
        conv_tiles(s, y, x, wt, f_block, f_reg, y_block, x_block, x_reg, rc_chunk)
        return y, s
    n, ff, yy, xx, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx")
    fo, fr = s.split(ff, f_block)
    ft, fi = s.split(fr, f_reg)
    yo, yt = s.split(yy, y_block)
    xo, xr = s.split(xx, x_block)
    xt, xi = s.split(xr, x_reg)
    rco, rci = s.split(rc, rc_chunk)
    s.reorder(fo, yo, xo, n, ft, yt, xt, rco, rci, ry, rx, fi, xi)
    s.bind(fo, "block.z"); s.bind(yo, "block.y"); s.bind(xo, "block.x")
    s.bind(ft, "thread.z"); s.bind(yt, "thread.y"); s.bind(xt, "thread.x")
    s.cache_read(x, "shared", at=rco)
    s.cache_read(wt, "shared", at=rco)
    s.cache_write("local", at=xt)
    for lp in (ry, rx, fi, xi):
        s.unroll(lp)
    return y, s


def depthwise3x3(c: int, h: int, w: int, stride: int = 1, threads: int = 128):
    """(Y, schedule) for a depthwise 3x3 convolution, padding 1: one output element per
    thread, `threads` threads per block over the flattened output rows of a channel
    (sched_dsl.graph.model_schedules.depthwise_flat)."""
    x = sd.placeholder("X", (1, c, h, w))
    wt = sd.placeholder("W", (c, 1, 3, 3))
    y = sd.conv2d(x, wt, stride=stride, padding=1, groups=c, name="Y")
    s = sd.Schedule(y)
    depthwise_flat(s, y, threads)
    return y, s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="cuda", choices=["cuda", "opencl"])
    args = p.parse_args()
    rng = np.random.default_rng(0)
    for (c, size), cfg in RESNET18_3X3.items():
        y, s = conv3x3(c, size, size, c, **cfg)
        kern = sd.build(y, s, target=args.target)
        x = rng.standard_normal((1, c, size, size), dtype=np.float32)
        wt = rng.standard_normal((c, c, 3, 3), dtype=np.float32)
        np.testing.assert_allclose(kern(x, wt), sd.evaluate(y, {"X": x, "W": wt}), rtol=1e-3, atol=1e-2)
        ms = kern.runner.bench()
        flops = 2 * c * size * size * c * 9
        print(f"conv {c}x{size}x{size}, {c} 3x3: {ms * 1e3:.1f} us, {flops / ms / 1e9:.2f} TFLOP/s")


if __name__ == "__main__":
    main()
