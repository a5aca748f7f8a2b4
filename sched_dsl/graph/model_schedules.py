"""Schedules for the anchors of a model's fused groups (conv2d, matmul), chosen from their shapes.

Each anchor gets a schedule template with knobs; a knob's first candidate is the default, picked
by simple rules from the shape, so an untuned model runs the default and a tuner (sd.tune, on
the anchor alone as a workload of its own) searches the rest.

- conv2d, groups 1 (any kernel, stride, padding, dilation): the tiled schedule of
  examples/resnet_conv_schedule.py generalised: a block computes `fb` output channels x `yb`
  rows x `xb` columns; its threads (f, y, x) each accumulate `fr` channels x `xr` columns in
  registers (cache_write local at the thread loop: a fused epilogue runs at the write-back);
  chunks of `rc` input channels of the input patch and of the weights (stored channels-last)
  are staged in shared memory, double-buffered; the kernel window and register tile unrolled.
- conv2d, grouped: the same tiles without the shared input patch (its channel index is not
  affine in the loops).
- depthwise conv2d: the flat schedule of depthwise3x3: a block row of `threads` outputs of
  one channel, one output per thread, the window unrolled.
- matmul of f16/bf16 tensors (or f32 at tf32) whose dimensions are multiples of the mma tile:
  the tensor-core GEMM (tc_gemm_tiles: block tile, warp tile, k slice, pipeline stages).
- other matmuls: the SGEMM schedule of examples/sgemm_schedule.py (block tile `ti` x `tj`, 4x4
  register quads strided over `si` x `sj`, k chunks `kc` double-buffered in shared memory)
  when both output dimensions are at least 32; otherwise one output per thread. A batched
  matmul takes the same templates, its batch bound to the grid's z.
- Winograd's input transform: threads over (channel, tile), `pp` of the tile's positions per
  thread (1, the default, or all of them, unrolled), the rest over the grid's y.
"""

from __future__ import annotations

import functools
import math

from collections.abc import Callable
from dataclasses import dataclass

from sched_dsl.dialects import sched as S
from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.conv_to_gemm import (gemm_refusal, is_pointwise, product_layout, winograd_refusal,
                                             winograd_tile_of)
from sched_dsl.lowering.fuse import COMPUTED_AT
from sched_dsl.schedule import Schedule
from sched_dsl.tensor import Tensor, conv2d, matmul, placeholder, tensor_of_op, winograd_input, winograd_output

SMS = 132  # streaming multiprocessors to fill (an H200); the rules want at least this many blocks
MAX_SHARED = 40 * 1024  # bytes of shared memory the default tiles may use (double buffers included)


class StageSchedule(Schedule):
    """A Schedule of stages named by strings (stages of a model's segment, not Tensors)."""

    def __init__(self):
        self.outputs, self.actions, self.knobs = (), [], {}

    def ops(self) -> list:
        """The sched ops, detached (to go into another schedule)."""
        ops = list(self.schedule_op({}).body.block.ops)
        for op in ops:
            op.detach()
        return ops


def divisors(n: int, lo: int = 1, hi: int | None = None) -> list[int]:
    """The divisors of n in [lo, hi], ascending (in O(sqrt n): extents can be huge)."""
    hi = n if hi is None else hi
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    both = sorted(set(small + [n // d for d in small]))
    return [d for d in both if lo <= d <= hi]


def candidates(default: int, others) -> list[int]:
    """`default` first, then the other candidates in increasing order."""
    return [default] + sorted(set(others) - {default})


@dataclass(frozen=True)
class ConvShape:
    n: int
    c: int
    h: int
    w: int
    f: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    layout: str = "NCHW"  # of the input and output (T.LAYOUTS); the weights are FCHW in both

    @property
    def out(self) -> tuple[int, int]:
        (sh, sw), (dh, dw), p = self.stride, self.dilation, self.padding
        return ((self.h + p[0] + p[2] - dh * (self.kh - 1) - 1) // sh + 1,
                (self.w + p[1] + p[3] - dw * (self.kw - 1) - 1) // sw + 1)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.c == self.f

    def tensors(self, dtype: str = "f32", precision: str | None = None, out_dtype: str | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        x = placeholder("X", T.in_layout((self.n, self.c, self.h, self.w), self.layout), dtype)
        wt = placeholder("W", (self.f, self.c // self.groups, self.kh, self.kw), dtype)
        y = conv2d(x, wt, self.stride, self.padding, self.dilation, self.groups, name="Y", precision=precision,
                   out_dtype=out_dtype, layout=self.layout)
        return x, wt, y


def conv_shape(op: T.Conv2dOp) -> ConvShape:
    n, c, h, w = op.nchw_input_shape()
    f, _, kh, kw = T.shape_of(op.weight)
    stride, padding, dilation = (tuple(a.get_values()) for a in (op.stride, op.padding, op.dilation))
    return ConvShape(n, c, h, w, f, kh, kw, stride, padding, dilation, op.groups.value.data, op.data_layout())


def conv_tile_defaults(sh: ConvShape, whole_filters: bool = False) -> dict[str, int]:
    """Default tile of a (grouped) conv. Among tiles dividing the output (fr channels x xr
    columns per thread, up to 4 x 2; blocks of fb channels x yb rows x xb columns) with at most
    256 threads and shared tiles under MAX_SHARED, prefer: at least 64 threads (or all there
    are), then at least SMS blocks, then the most outputs per thread, then the largest block
    tile (most reuse per load), else the most blocks. `whole_filters`: every block computes all
    the filters (fb = the group's), so an input computed into the block (a linked depthwise
    conv) is computed once."""
    ho, wo = sh.out
    fg, cg = sh.f // sh.groups, sh.c // sh.groups
    rc = max(divisors(cg, hi=8 if sh.kh * sh.kw > 1 else 16))
    (s_h, s_w), (d_h, d_w) = sh.stride, sh.dilation
    best, best_key = dict(fb=1, fr=1, yb=1, xb=1, xr=1, rc=1), None
    for fr in (v for v in (4, 2, 1) if fg % v == 0):
        for xr in (v for v in (2, 1) if wo % v == 0):
            total = sh.n * sh.f * ho * wo // (fr * xr)  # threads in all
            for fb in [fg] if whole_filters else divisors(fg, lo=fr, hi=64):
                for yb in divisors(ho, hi=16):
                    for xb in divisors(wo, hi=32):
                        if fb % fr or xb % xr:
                            continue
                        threads = (fb // fr) * yb * (xb // xr)
                        blocks = sh.n * (sh.f // fb) * (ho // yb) * (wo // xb)
                        ih = (yb - 1) * s_h + d_h * (sh.kh - 1) + 1
                        iw = (xb - 1) * s_w + d_w * (sh.kw - 1) + 1
                        shared = 2 * 4 * rc * (ih * iw + fb * sh.kh * sh.kw)
                        if threads > 256 or shared > MAX_SHARED:
                            continue
                        full = blocks >= SMS
                        key = (threads >= min(64, total), full, fr * xr if full else -fr * xr,
                               fb * yb * xb if full else blocks, xb, fb)
                        if best_key is None or key > best_key:
                            best, best_key = dict(fb=fb, fr=fr, yb=yb, xb=xb, xr=xr, rc=rc), key
    return best


def conv_tiled(s: Schedule, stage, x, wt, sh: ConvShape, prefix: str = "", computed_input: bool = False) -> None:
    """conv_tiles with knobs whose first candidates are conv_tile_defaults'; with a computed
    input (a linked depthwise conv), one block takes all the filters: its input is computed
    once, not once per block of filters."""
    d = conv_tile_defaults(sh, whole_filters=computed_input)
    ho, wo = sh.out
    fg, cg = sh.f // sh.groups, sh.c // sh.groups
    fb = s.knob(prefix + "fb", [fg] if computed_input else candidates(d["fb"], divisors(fg, lo=min(fg, 4), hi=64)))
    fr = s.knob(prefix + "fr", candidates(d["fr"], [v for v in (1, 2, 4) if v <= fg]))
    yb = s.knob(prefix + "yb", candidates(d["yb"], divisors(ho, hi=16)))
    xb = s.knob(prefix + "xb", candidates(d["xb"], divisors(wo, lo=min(wo, 4), hi=32)))
    xr = s.knob(prefix + "xr", candidates(d["xr"], [v for v in (1, 2) if v <= wo]))
    rcc = s.knob(prefix + "rc", candidates(d["rc"], divisors(cg, lo=min(cg, 4), hi=32)))
    conv_tiles(s, stage, x, wt, fb, fr, yb, xb, xr, rcc, shared_input=sh.groups == 1, computed_input=computed_input)


def conv_tiles(s: Schedule, stage, x, wt, fb, fr, yb, xb, xr, rc, shared_input: bool = True,
               computed_input: bool = False) -> None:
    """The tiled convolution schedule (factors are ints or knobs): each block computes `fb`
    filters (batch fused in, block.z) over a `yb` x `xb` patch of the output; each thread
    accumulates `fr` filters x `xr` columns in registers (cache_write local, where a fused
    epilogue is applied); chunks of `rc` input channels of the input patch (when
    `shared_input`) and of the weights (stored channels-last) are staged in shared memory,
    double-buffered; the kernel window is unrolled. `computed_input`: the input is the stage
    `x` (a depthwise conv linked into this pointwise one, fuse.link_depthwise), whose values
    for each chunk are computed into the shared buffers instead of copied."""
    n, ff, yy, xx, rcl, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx", stage=stage)
    fo, fi_ = s.split(ff, fb)
    nfo = s.fuse(n, fo)
    ft, fi = s.split(fi_, fr)
    yo, yt = s.split(yy, yb)
    xo, xr_ = s.split(xx, xb)
    xt, xi = s.split(xr_, xr)
    rco, rci = s.split(rcl, rc)
    s.reorder(nfo, yo, xo, ft, yt, xt, rco, rci, ry, rx, fi, xi)
    s.bind(nfo, "block.z")
    s.bind(yo, "block.y")
    s.bind(xo, "block.x")
    s.bind(ft, "thread.z")
    s.bind(yt, "thread.y")
    s.bind(xt, "thread.x")
    if computed_input:
        s.compute_at(x, rco, double_buffer=True)
    elif shared_input:
        s.cache_read(x, "shared", at=rco, double_buffer=True)
    s.cache_read(wt, "shared", at=rco, layout=(1, 2, 3, 0), double_buffer=True)
    s.cache_write("local", at=xt)
    for lp in (ry, rx, fi, xi):
        s.unroll(lp)


def conv_depthwise(s: Schedule, stage, x, wt, sh: ConvShape, prefix: str = "") -> None:
    ho, wo = sh.out
    default = 128 if ho * wo >= 128 else 64
    t = s.knob(prefix + "threads", candidates(default, [32, 64, 128, 256]))
    depthwise_flat(s, stage, t)


def depthwise_flat(s: Schedule, stage, threads) -> None:
    """One output per thread: `threads` per block over a channel's flattened output, one
    register accumulator each, the kernel window unrolled."""
    n, ff, yy, xx, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx", stage=stage)
    nf = s.fuse(n, ff)
    yx = s.fuse(yy, xx)
    o, ti = s.split(yx, threads)
    s.bind(nf, "block.y")
    s.bind(o, "block.x")
    s.bind(ti, "thread.x")
    s.cache_write("local", at=ti)
    s.unroll(ry)
    s.unroll(rx)


def gemm_loops(s: Schedule, stage, batch: int) -> tuple:
    """Loops i, j, k of a matmul stage, its `batch` loops b0, b1, ... fused and bound to
    block.z."""
    *bs, i, j, k = s.loops(*[f"b{d}" for d in range(batch)], "i", "j", "k", stage=stage)
    if bs:
        s.bind(functools.reduce(s.fuse, bs), "block.z")
    return i, j, k


def matmul_tiled(s: Schedule, stage, a, b, m: int, n: int, k: int, prefix: str = "",
                 batch: tuple[int, ...] = (), a_batched: bool = False) -> None:
    """The SGEMM schedule; block tile ti x tj, 4x4 quads over si x sj, k chunk kc; a batched
    matmul's batch on the grid's z."""
    def pow2(ext: int, lo: int = 16, hi: int = 128) -> list[int]:
        return [v for v in (4, 8, 16, 32, 64, 128) if lo <= v <= min(hi, ext)] or [min(ext, lo)]
    tj_d = max(pow2(n))
    ti_d = max([v for v in pow2(m) if (m // v) * (n // tj_d) >= SMS] or [min(pow2(m))])
    ti = s.knob(prefix + "ti", candidates(ti_d, pow2(m)))
    tj = s.knob(prefix + "tj", candidates(tj_d, pow2(n)))
    si = s.knob(prefix + "si", candidates(max(16, ti_d // 2), [16, 32, 64]))
    sj = s.knob(prefix + "sj", candidates(max(16, tj_d // 2), [16, 32, 64]))
    kc = s.knob(prefix + "kc", candidates(min(16, max(pow2(k, 4, 32))), pow2(k, 4, 32)))
    sgemm_tiles(s, stage, a, b, ti, tj, si, sj, kc, len(batch), a_batched)


def sgemm_tiles(s: Schedule, stage, a, b, ti, tj, si, sj, kc, batch: int = 0, a_batched: bool = False) -> None:
    """The SGEMM schedule (factors are ints or knobs): each block computes a `ti` x `tj` tile
    of C from `kc`-deep slices of A and B in shared memory, double-buffered (the next slices
    load into registers while this one is used), A's slice transposed so both are read along
    rows; each thread accumulates 4x4 quads of outputs in registers, strided by `si` rows
    and `sj` columns (si / 4 x sj / 4 threads), so neighbouring threads read neighbouring
    shared words (no bank conflicts) and each reads float4s. A batched matmul's `batch`
    loops are fused and bound to block.z (`a_batched`: A has them too)."""
    i, j, kk = gemm_loops(s, stage, batch)
    io, ir = s.split(i, ti)
    jo, jr = s.split(j, tj)
    i2, ir2 = s.split(ir, si)
    ty, i4 = s.split(ir2, 4)
    j2, jr2 = s.split(jr, sj)
    tx, j4 = s.split(jr2, 4)
    ko, ki = s.split(kk, kc)
    s.reorder(io, jo, ty, tx, ko, ki, i2, j2, i4, j4)
    s.bind(io, "block.y")
    s.bind(jo, "block.x")
    s.bind(ty, "thread.y")
    s.bind(tx, "thread.x")
    s.cache_read(a, "shared", at=ko, layout=(*range(batch), batch + 1, batch) if a_batched else (1, 0),
                 double_buffer=True)
    s.cache_read(b, "shared", at=ko, double_buffer=True)
    s.cache_write("local", at=tx)
    for lp in (ki, i2, j2, i4, j4):
        s.unroll(lp)


# tensor-core GEMM: the shared tile rows padded so that ldmatrix (16-byte rows) and tf32's
# B loads (a row of 8 lanes, 4 rows) hit 32 different banks: (A pad, B pad) in elements
TC_PADS = {"mma.m16n8k16": (8, 8), "mma.m16n8k8": (4, 8), "wgmma.m64n64k16": (0, 0), "wgmma.m64n128k16": (0, 0),
           "wgmma.m64n256k16": (0, 0)}  # wgmma's buffers are swizzled instead
TC_MAX_SHARED = 48 * 1024  # static shared memory per block, on both CUDA and NVIDIA's OpenCL


def tc_gemm_tiles(s: Schedule, stage, a, b, bm, bn, bk, wm, wn, stages, intrinsic: str, batch: int = 0,
                  implicit_b: bool = False, tma: bool = False) -> None:
    """The tensor-core GEMM (factors are ints or knobs): each block computes a `bm` x `bn`
    tile of C from `bk`-deep slices of A and B that `stages` shared buffers each receive by
    asynchronous copies (cp.async), rows padded against bank conflicts; its warps (bm / wm
    x bn / wn, bound to thread.z and thread.y; the lanes are thread.x) each compute a `wm` x
    `wn` tile of 16 x 8 mma tiles, keeping the results in registers, with the fragments of
    each 16 (8 for tf32) deep step loaded once (ldmatrix) and reused across the warp's tile.
    With a wgmma intrinsic ("wgmma.m64nNk16", CUDA on Hopper) the warps are warpgroups of
    128 threads (thread.x), each computing `wm` x `wn` from 64 x N wgmma tiles that read the
    swizzled shared buffers directly (`bk` 64: rows of 128 bytes; at least 3 stages).
    A batched matmul's `batch` loops b0, b1, ... are fused and bound to block.z.
    `implicit_b`: B is a stage computed where it is read (an implicit GEMM: B = im2col(X)),
    each tile into two shared buffers (the next one gathered into registers during the mmas).
    `tma` (wgmma only): the tensor memory accelerator fills the stages instead of every thread."""
    mt, nt, kt = S.TENSOR_INTRINSICS[intrinsic]
    pad_a, pad_b = TC_PADS[intrinsic]
    i, j, k = gemm_loops(s, stage, batch)
    io, i1 = s.split(i, bm)
    jo, j1 = s.split(j, bn)
    iw, i2 = s.split(i1, wm)
    jw, j2 = s.split(j1, wn)
    im, ii = s.split(i2, mt)
    jn, ji = s.split(j2, nt)
    ko, k1 = s.split(k, bk)
    kk, ki = s.split(k1, kt)
    s.reorder(io, jo, iw, jw, ko, kk, im, jn, ii, ji, ki)
    s.bind(io, "block.y")
    s.bind(jo, "block.x")
    s.bind(iw, "thread.z")
    s.bind(jw, "thread.y")
    copy = {"tma": True} if tma else {}
    s.cache_read(a, "shared", at=ko, stages=stages, pad=pad_a, **copy)
    if implicit_b:
        s.compute_at(b, ko, double_buffer=True, pad=pad_b)
    else:
        s.cache_read(b, "shared", at=ko, stages=stages, pad=pad_b, **copy)
    s.unroll(kk)
    s.tensorize(ii, ji, ki, intrinsic)


def tc_shared_bytes(bm: int, bn: int, bk: int, stages: int, intrinsic: str) -> int:
    pad_a, pad_b = TC_PADS[intrinsic]
    size = 4 if intrinsic == "mma.m16n8k8" else 2
    # a wgmma's buffers start at 1024-byte atoms
    return stages * size * (bm * (bk + pad_a) + bk * (bn + pad_b)) + (1024 if intrinsic.startswith("wgmma") else 0)


def column_tile_fits(n: int, bn: int) -> bool:
    """A column tile the tensor-core GEMM takes for n output columns: dividing n, or less than
    twice n (the last tile then reaches past the output and computes on zeros there)."""
    return n % bn == 0 or bn < 2 * n


def tc_gemm_defaults(m: int, n: int, k: int, intrinsic: str, count: int = 1,
                     b_columns: int | None = None) -> dict[str, int] | None:
    """A default tile of the tensor-core GEMM for `count` m x n x k matmuls (a batch), or None
    when none fits (m and k must be multiples of the 16 x 8 x 16 tile, n at least 8, and B's rows of
    `b_columns` >= n columns, default n, of 8: whole 16-byte chunks): among tiles whose
    buffers fit TC_MAX_SHARED, dividing m, and dividing n or less than twice n (the last
    column tile then reaches past the output: it computes on zeros there), prefer at least
    SMS blocks in all, then the most outputs a block computes (on average over the column
    tiles: fewer, wider column tiles read A fewer times), then 4 warps of 64 x 64 (or the
    nearest), then more stages."""
    kt = S.TENSOR_INTRINSICS[intrinsic][2]
    if m % 16 or n < 8 or (b_columns or n) % 8 or k % kt:
        return None
    best, best_key = None, None
    for bm in (v for v in (256, 128, 64, 32, 16) if m % v == 0):
        for bn in (v for v in (256, 128, 64, 32, 16, 8) if column_tile_fits(n, v)):
            for bk in (v for v in (64, 32, 16, 8) if k % v == 0 and v % kt == 0):
                for wm in (v for v in (64, 32, 16) if bm % v == 0):
                    for wn in (v for v in (64, 32, 16, 8) if bn % v == 0):
                        warps = (bm // wm) * (bn // wn)
                        for stages in (4, 3, 2):
                            if warps > 8 or tc_shared_bytes(bm, bn, bk, stages, intrinsic) > TC_MAX_SHARED:
                                continue
                            if (wm // 16) * (wn // 8) > 32:  # mma tiles (4 registers each) per warp
                                continue
                            column_tiles = -(-n // bn)
                            blocks = count * (m // bm) * column_tiles
                            key = (min(blocks, SMS), bm * n / column_tiles, -abs(warps - 4),
                                   -abs(wm * wn - 64 * 64), bk >= 32, stages)
                            if best_key is None or key > best_key:
                                best, best_key = dict(bm=bm, bn=bn, bk=bk, wm=wm, wn=wn, stages=stages), key
    return best


def matmul_tensor_cores(s: Schedule, stage, a, b, m: int, n: int, k: int, intrinsic: str, prefix: str = "",
                        batch: tuple[int, ...] = (), b_columns: int | None = None, implicit_b: bool = False) -> None:
    """The tensor-core GEMM template with its knobs (block tile, warp tile, k slice,
    stages); the first candidates are tc_gemm_defaults'. `batch`: a batched matmul's batch
    dimensions; `b_columns`: B's columns, where the product keeps fewer (n); `implicit_b`:
    B is the stage `b` computed tile by tile (tc_gemm_tiles)."""
    d = tc_gemm_defaults(m, n, k, intrinsic, math.prod(batch), b_columns)
    kt = S.TENSOR_INTRINSICS[intrinsic][2]
    bm = s.knob(prefix + "bm", candidates(d["bm"], [v for v in (32, 64, 128, 256) if m % v == 0]))
    bn = s.knob(prefix + "bn", candidates(d["bn"], [v for v in (32, 64, 128, 256) if column_tile_fits(n, v)]))
    bk = s.knob(prefix + "bk", candidates(d["bk"], [v for v in (16, 32, 64) if k % v == 0 and v % kt == 0]))
    wm = s.knob(prefix + "wm", candidates(d["wm"], [v for v in (16, 32, 64) if m % v == 0]))
    wn = s.knob(prefix + "wn", candidates(d["wn"], [16, 32, 64]))
    stages = s.knob(prefix + "stages", candidates(d["stages"], [2, 3, 4]))
    tc_gemm_tiles(s, stage, a, b, bm, bn, bk, wm, wn, stages, intrinsic, len(batch), implicit_b)


def matmul_simple(s: Schedule, stage, m: int, n: int, prefix: str = "", batch: int = 0) -> None:
    """One output per thread, `threads` per block over the flattened outputs (the `batch`
    loops b0, b1, ... of a batched matmul included)."""
    t = s.knob(prefix + "threads", candidates(64 if m * n < 64 * SMS else 128, [32, 64, 128, 256]))
    loops = s.loops(*[f"b{k}" for k in range(batch)], "i", "j", stage=stage)
    fused = loops[0]
    for lp in loops[1:]:
        fused = s.fuse(fused, lp)
    o, ti = s.split(fused, t)
    s.bind(o, "block.x")
    s.bind(ti, "thread.x")
    s.cache_write("local", at=ti)


def winograd_input_tiled(s: Schedule, stage, positions: int, prefix: str = "") -> None:
    """Winograd's input transform [positions, c, tiles]: threads over (channel, tile), `pp` of
    the positions in each thread, unrolled, the rest over the grid's y. With every position in
    a thread (pp = positions) its coefficients are constants after unrolling and the tile's
    inputs are read once; with a row of them (pp = tile + 2, the square root of positions) a
    thread reads the tile once for that row; the default, pp = 1, is one output per thread."""
    pp = s.knob(prefix + "pp", [1, math.isqrt(positions), positions])
    threads = s.knob(prefix + "threads", [256, 128, 64])
    p, c, j = s.loops("d0", "d1", "d2", stage=stage)
    po, pi = s.split(p, pp)
    blocks, t = s.split(s.fuse(c, j), threads)
    s.reorder(po, blocks, t, pi)
    s.bind(po, "block.y")
    s.bind(blocks, "block.x")
    s.bind(t, "thread.x")
    s.unroll(pi)


def winograd_input_workload(x_shape, dtype: str, tile: int, padding) -> tuple[Tensor, Schedule]:
    """The input transform alone, with the template a model gives it."""
    y = winograd_input(placeholder("X", x_shape, dtype), tile, tuple(padding), name="tiles")
    s = Schedule(y)
    winograd_input_tiled(s, y, y.shape[0])
    return y, s


def matmul_is_tiled(m: int, n: int, k: int) -> bool:
    return m >= 32 and n >= 32 and k >= 4


def tensor_intrinsic_of(op: T.MatmulOp) -> str | None:
    """The warp-level mma that takes this matmul's operands, or None (full-precision f32)."""
    return product_intrinsic(T.dtype_of(op.lhs), op.compute_mode())


def product_intrinsic(dtype: str, compute: str | None) -> str | None:
    if dtype in ("f16", "bf16"):
        return "mma.m16n8k16"
    return "mma.m16n8k8" if compute in T.COMPUTE_MODES else None


def takes_tensor_cores(m: int, n: int, k: int, intrinsic: str | None, b_columns: int | None = None) -> bool:
    """Whether an m x n x k product of operands an mma takes (`intrinsic`, None: none does)
    gets the tensor-core GEMM template (tc_gemm_defaults finds a tile)."""
    return intrinsic is not None and tc_gemm_defaults(m, n, k, intrinsic, b_columns=b_columns) is not None


def matmul_template(m: int, n: int, k: int, batch: tuple[int, ...], intrinsic: str | None, a_rank: int = 2,
                    b_columns: int | None = None, implicit_b: bool = False):
    """The schedule template of an m x n x k matmul (with `batch` dimensions before; A of
    rank `a_rank`: a 2-D A is shared by the batch; B of `b_columns` columns where the
    product keeps n of them; `implicit_b`: on tensor cores, B is a stage computed where its
    tiles are read)."""
    if takes_tensor_cores(m, n, k, intrinsic, b_columns):
        return lambda s, stage, a, b, prefix="": matmul_tensor_cores(s, stage, a, b, m, n, k, intrinsic, prefix,
                                                                     batch, b_columns, implicit_b)
    if matmul_is_tiled(m, n, k) and a_rank in (2, len(batch) + 2):
        return lambda s, stage, a, b, prefix="": matmul_tiled(s, stage, a, b, m, n, k, prefix, batch, a_rank > 2)
    return lambda s, stage, a, b, prefix="": matmul_simple(s, stage, m, n, prefix, len(batch))


def anchor_template(op: T.TensorOp) -> Callable[[Schedule, object, object, object, str], None] | None:
    """(schedule, stage, first input, second input, knob prefix) -> writes the anchor's
    schedule; None for ops that are not anchors with a chosen schedule."""
    if isinstance(op, T.Conv2dOp):
        sh = conv_shape(op)
        if depthwise_producer(op) is not None:
            return lambda s, stage, x, wt, prefix="": conv_tiled(s, stage, x, wt, sh, prefix, computed_input=True)
        fn = conv_depthwise if sh.depthwise else conv_tiled
        return lambda s, stage, x, wt, prefix="": fn(s, stage, x, wt, sh, prefix)
    if isinstance(op, T.MatmulOp):
        (m, k), n, b_columns = T.shape_of(op.lhs)[-2:], T.shape_of(op.result)[-1], T.shape_of(op.rhs)[-1]
        return matmul_template(m, n, k, T.shape_of(op.result)[:-2], tensor_intrinsic_of(op), len(T.shape_of(op.lhs)),
                               b_columns, implicit_gemm_producer(op) is not None)
    if isinstance(op, T.WinogradInputOp):
        positions = T.shape_of(op.result)[0]
        return lambda s, stage, x, _, prefix="": winograd_input_tiled(s, stage, positions, prefix)
    return None


def gathers_b(op: T.MatmulOp) -> bool:
    """Whether the product takes the tensor-core template, which can gather an im2col's
    windows tile by tile into shared memory (an implicit GEMM; fuse.mark_implicit_gemms)."""
    (m, k), n = T.shape_of(op.lhs)[-2:], T.shape_of(op.result)[-1]
    return takes_tensor_cores(m, n, k, tensor_intrinsic_of(op), T.shape_of(op.rhs)[-1])


def implicit_gemm_producer(op: T.MatmulOp) -> T.Im2colOp | None:
    """The im2col marked `computed_at` this product (whose windows it gathers), or None."""
    p = op.rhs.owner
    if isinstance(p, T.Im2colOp) and COMPUTED_AT in p.attributes:
        return p if p.attributes[COMPUTED_AT].data == op.stage_name else None
    return None


def depthwise_producer(op: T.Conv2dOp) -> T.Conv2dOp | None:
    """The depthwise conv (its group's anchor) marked `computed_at` this pointwise conv
    (fuse.link_depthwise), or None."""
    p = op.input.owner
    if not isinstance(p, T.TensorOp) or COMPUTED_AT not in p.attributes:
        return None
    if p.attributes[COMPUTED_AT].data != op.stage_name:
        return None
    anchor = p.attributes["group"].data if "group" in p.attributes else p.stage_name
    return next(o for o in p.parent_block().ops if isinstance(o, T.TensorOp) and o.stage_name == anchor)


def anchor_ops(op: T.TensorOp) -> list | None:
    """The sched ops of `op`'s schedule in a model segment (knobs named `<stage>.<knob>`), or
    None when it has no chosen schedule."""
    template = anchor_template(op)
    if template is None:
        return None
    s = StageSchedule()
    x, w = [v.name_hint for v in op.operands] + [None] * (2 - len(op.operands))
    if isinstance(op, T.MatmulOp) and implicit_gemm_producer(op) is not None:
        w = op.rhs.owner.stage_name  # computed at the product: named by its stage
    if isinstance(op, T.Conv2dOp) and depthwise_producer(op) is not None:
        x = depthwise_producer(op).stage_name
    template(s, op.stage_name, x, w, op.stage_name + ".")
    return s.ops()


def anchor_workload(op: T.TensorOp) -> tuple[Tensor, Schedule] | None:
    """The anchor alone, as tensors and the same schedule template with plain knob names: the
    task the tuner measures for every group of this anchor shape."""

    template = anchor_template(op)
    if template is None:
        return None
    if isinstance(op, T.Conv2dOp):
        x, w, y = conv_shape(op).tensors(T.dtype_of(op.input), op.compute_mode(), T.dtype_of(op.result))
        s = Schedule(y)
        template(s, y, x, w, "")
        return y, s
    if isinstance(op, T.WinogradInputOp):
        return winograd_input_workload(T.shape_of(op.input), T.dtype_of(op.input), op.tile_size(),
                                       op.padding.get_values())
    gathered = implicit_gemm_producer(op)
    if gathered is not None:  # the product with the im2col it gathers: the kernel that runs
        x = placeholder("X", T.shape_of(gathered.input), T.dtype_of(gathered.input))
        a = placeholder("A", T.shape_of(op.lhs), T.dtype_of(op.lhs))
        cols = tensor_of_op(gathered, (x,))
        y = tensor_of_op(op, (a, cols))
        s = Schedule(y)
        template(s, y, a, cols, "")
        return y, s
    # a matmul, batched or not
    return matmul_workload(T.shape_of(op.lhs), T.shape_of(op.rhs), T.dtype_of(op.lhs), op.compute_mode(),
                           T.dtype_of(op.result), op.column_count())


def matmul_workload(a_shape, b_shape, dtype: str, compute: str | None, out_dtype: str,
                    columns: int | None = None) -> tuple[Tensor, Schedule]:
    """A matmul of these shapes and types alone (its first `columns` columns kept), with the
    template a model gives it."""
    a, b = placeholder("A", a_shape, dtype), placeholder("B", b_shape, dtype)
    y = matmul(a, b, name="C", precision=compute, out_dtype=out_dtype, columns=columns)
    s = Schedule(y)
    (m, k), n = a_shape[-2:], y.shape[-1]
    matmul_template(m, n, k, tuple(y.shape[:-2]), product_intrinsic(dtype, compute), len(a_shape),
                    b_shape[-1])(s, y, a, b, "")
    return y, s


# ---- conv2d as a matmul (tensorop-conv-to-gemm): which convs ----------------------------------

CONV_ALGORITHMS = ("auto", "direct", "gemm", "implicit", "winograd")


def gemm_fits_tensor_cores(op: T.Conv2dOp) -> bool:
    """Whether the conv's product, padded as tensorop-conv-to-gemm pads it, takes the
    tensor-core GEMM template."""
    if gemm_refusal(op) is not None:
        return False
    intrinsic = product_intrinsic(T.dtype_of(op.input), op.compute_mode())
    if op.data_layout() == "NHWC":  # [n * h * w, c] x [c, f], nothing padded
        m, k = math.prod(T.shape_of(op.input)[:3]), T.shape_of(op.input)[3]
        return takes_tensor_cores(m, T.shape_of(op.weight)[0], k, intrinsic)
    rows, columns = product_layout(op)
    oh, ow = T.shape_of(op.result)[2:]
    return takes_tensor_cores(T.shape_of(op.weight)[0], oh * ow, rows, intrinsic, columns)


SPLITS = (1, 2, 4, 8, 16)
MIN_SLICE = 256  # rows of the window each slice of a split product keeps at least
# and at most, where the split allows: a block's k slices run one after another, each waiting
# for its copies, so a deep slice is a long chain (on the H200 a 1152-row slice took 9.6 us, a
# 576-row one 5.8 us, whatever the tile)
MAX_SLICE = 576


def gemm_split(op: T.Conv2dOp) -> int:
    """How many slices of the window rows the conv's tensor-core product is split into
    (tensorop-conv-to-gemm's split_k): the fewest with which the default tiles, blocks of at
    least 64 rows, fill SMS multiprocessors and each slice is at most MAX_SLICE rows deep,
    each at least MIN_SLICE rows deep; where none does, the most that keep that depth (a
    small product: its blocks in parallel)."""
    intrinsic = product_intrinsic(T.dtype_of(op.input), op.compute_mode())
    if intrinsic is None or gemm_refusal(op) is not None or op.data_layout() != "NCHW":
        return 1
    f, (oh, ow) = T.shape_of(op.weight)[0], T.shape_of(op.result)[2:]
    admissible = []
    for split in SPLITS:
        rows, columns = product_layout(op, split)
        if split > 1 and rows // split < MIN_SLICE:
            break
        d = tc_gemm_defaults(f, oh * ow, rows // split, intrinsic, split, columns)
        if d is None:
            continue
        admissible.append(split)
        fills = d["bm"] >= 64 and split * (f // d["bm"]) * -(-oh * ow // d["bn"]) >= SMS
        if fills and rows // split <= MAX_SLICE:
            return split
    return max(admissible, default=1)


def gemm_is_whole(op: T.Conv2dOp) -> bool:
    """Whether the conv's matmul form is the matmul alone (a 1x1 conv, stride 1, no padding,
    nothing padded for tensor cores): then a measured matmul is the whole cost of the form."""
    if gemm_refusal(op) is not None or not is_pointwise(op):
        return False
    sh = conv_shape(op)
    return op.data_layout() == "NHWC" or product_layout(op) == (sh.c, sh.out[0] * sh.out[1])


def gemm_workload(op: T.Conv2dOp) -> tuple[Tensor, Schedule]:
    """The matmul a 1x1 conv becomes (gemm_is_whole), alone: weights [f, c] x input [c, h * w]
    (NHWC: input [n * h * w, c] x weights [c, f])."""
    sh = conv_shape(op)
    if sh.layout == "NHWC":
        return matmul_workload((sh.n * sh.h * sh.w, sh.c), (sh.c, sh.f), T.dtype_of(op.input), op.compute_mode(),
                               T.dtype_of(op.result))
    return matmul_workload((sh.f, sh.c), (sh.c, sh.h * sh.w), T.dtype_of(op.input), op.compute_mode(),
                           T.dtype_of(op.result))


def winograd_workloads(op: T.Conv2dOp) -> list[tuple[Tensor, Schedule]]:
    """The three kernels of the conv's Winograd form (tensorop-conv-to-gemm), each alone with
    the schedule a model gives it: the input transform (its template), the batched product
    (its matmul template) and the output transform (the default schedule, no knobs). The
    filters' transform is done once at load. Tuned, their times add up to the form's cost."""
    tile, dtype, out_dtype = winograd_tile_of(op), T.dtype_of(op.input), T.dtype_of(op.result)
    tiles = winograd_input_workload(T.shape_of(op.input), dtype, tile, op.padding.get_values())
    product = matmul_workload(T.winograd_weights_shape(T.shape_of(op.weight), tile), tiles[0].shape, dtype,
                              op.compute_mode(), out_dtype)
    y = winograd_output(placeholder("M", product[0].shape, out_dtype), tile, T.shape_of(op.result)[2:], name="Y")
    return [tiles, product, (y, Schedule(y))]


def choose_conv_algorithm(op: T.Conv2dOp, policy: str, tensor_cores: bool,
                          recorded_ms: Callable[[Tensor], float | None] | None = None) -> str:
    """"gemm", "implicit", "winograd" or "direct" for this conv under `policy`: "gemm"
    ("winograd") wherever the conv can take that form, "implicit" where it can and its
    product is not split (gemm_split; else "gemm": on the H200 ResNet-18's 512 x 7 x 7 bf16
    conv took 77 us gathered unsplit, 13.8 us split with a columns matrix), "direct" never, "auto": where the records
    (`recorded_ms` of a workload, None when unrecorded) time the conv and its other form (the
    matmul of a 1x1 conv, the three kernels of Winograd's; not where a product on tensor cores
    is the default), the faster; else "gemm" where the device has tensor cores and the
    product fits their template; else, on such a GPU, "winograd" for an f32 conv that can
    take it (untuned, faster than the untuned direct template on all four 3x3 shapes of
    ResNet-18 on the H200: docs/results.md); "direct" otherwise."""
    if policy == "winograd":
        return "winograd" if winograd_refusal(op) is None else "direct"
    if policy == "direct" or gemm_refusal(op) is not None:
        return "direct"
    if policy == "gemm":
        return "gemm"
    if policy == "implicit":  # a product split in slices reads a columns matrix (gathered: unsplit, slower)
        return "implicit" if gemm_split(op) == 1 else "gemm"
    on_tensor_cores = tensor_cores and gemm_fits_tensor_cores(op)
    if recorded_ms is not None:
        direct = recorded_ms(anchor_workload(op)[0])
        if gemm_is_whole(op):
            gemm = recorded_ms(gemm_workload(op)[0])
            if direct is not None and gemm is not None:
                return "gemm" if gemm < direct else "direct"
        if winograd_refusal(op) is None and not on_tensor_cores and direct is not None:
            parts = [recorded_ms(y) for y, _ in winograd_workloads(op)]
            if None not in parts:
                return "winograd" if sum(parts) < direct else "direct"
    if on_tensor_cores:
        return "gemm"
    full_f32 = T.dtype_of(op.input) == "f32" and op.compute_mode() is None
    return "winograd" if tensor_cores and full_f32 and winograd_refusal(op) is None else "direct"

