"""A fixed set of operators, each with its default schedule and with hand-written schedules
that exercise the GPU-specific lowering: shared and local cache_read, cache_write local,
splits that do not divide their loop, unroll, vectorize and compute_at.

Used by tests/test_cuda_text.py (the CUDA text compiles), tests/test_gpu_targets.py (the
kernels compute what `sd.evaluate` computes on a GPU) and benchmarks/sanitize_kernels.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import sched_dsl as sd
from sched_dsl import testing as sdt
from sched_dsl.tensor import topological


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], tuple[sd.Tensor, sd.Schedule | None]]
    cuda_only: bool = False  # Hopper's wgmma: CUDA's text only (NVIDIA's OpenCL compiles for sm_90)


def _matmul(m=37, k=29, n=45, producer=False):
    a = sd.placeholder("A", (m, k))
    if producer:
        a = sd.relu(a, name="A_relu")
    return sd.matmul(a, sd.placeholder("B", (k, n)), name="C")


def matmul_default():
    return _matmul(), None


def shared_tiled(c):
    """The matmul schedule of docs/api.md for matmul `c`: 16x16 thread blocks, 16x8 and 8x16 tiles
    of A and B in shared memory, the k loop split by 8 and unrolled inside."""
    a, b = c.inputs
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 16)
    jo, ji = s.split(j, 16)
    ko, ki = s.split(k, 8)
    s.reorder(io, jo, ko, ii, ji, ki)
    s.bind(io, "block.y")
    s.bind(jo, "block.x")
    s.bind(ii, "thread.y")
    s.bind(ji, "thread.x")
    s.cache_read(a, "shared", at=ko)
    s.cache_read(b, "shared", at=ko)
    s.unroll(ki)
    return c, s


def matmul_shared_nondividing():
    """Shared-memory tiles of A and B with 16x16 thread blocks over 37x45 (not multiples of 16)
    and a reduction split by 8 over 29."""
    return shared_tiled(_matmul())


# the CUDA text compiles with nvcc where the toolkit is installed (CI machines have it)
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH: the CUDA text is not compiled")


def cuda_unavailable() -> str | None:
    """Why the CUDA target cannot run here, or None when it can."""
    try:
        import pycuda.driver  # noqa: F401 - only whether it imports
    except ImportError as e:
        return f"pycuda is not installed ({e})"
    from sched_dsl.runtime.cuda import DeviceError, default_device
    try:
        default_device()
    except DeviceError as e:
        return f"no CUDA device: {e}"
    return None


def matmul_register_blocked():
    """Each thread computes a 4x4 block of C in registers (cache_write local), with A and B
    tiles in shared memory; sizes divide nothing."""
    c = _matmul(67, 41, 75)
    a, b = c.inputs
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    io, ir = s.split(i, 32)
    jo, jr = s.split(j, 32)
    ty, ii = s.split(ir, 4)
    tx, ji = s.split(jr, 4)
    ko, ki = s.split(k, 8)
    s.reorder(io, jo, ty, tx, ko, ki, ii, ji)
    s.bind(io, "block.y")
    s.bind(jo, "block.x")
    s.bind(ty, "thread.y")
    s.bind(tx, "thread.x")
    s.cache_read(a, "shared", at=ko)
    s.cache_read(b, "shared", at=ko)
    s.cache_write("local", at=tx)
    s.unroll(ki)
    s.unroll(ii)
    s.vectorize(ji)
    return c, s


def matmul_local_compute_at():
    """relu(A) computed inside the matmul's loops; B cached in registers."""
    c = _matmul(13, 11, 19, producer=True)
    a_relu, b = c.inputs
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    jo, ji = s.split(j, 8)
    s.reorder(i, jo, ji, k)
    s.bind(i, "block.x")
    s.bind(ji, "thread.x")
    s.cache_read(b, "local", at=k)
    s.compute_at(a_relu, k)
    return c, s


def _conv(n=1, c=5, h=11, w=9, f=6, kh=3, kw=3, stride=1, padding=1, groups=1, producer=False):
    x = sd.placeholder("X", (n, c, h, w))
    if producer:
        x = sd.relu(x, name="X_relu")
    weight = sd.placeholder("W", (f, c // groups, kh, kw))
    return sd.conv2d(x, weight, stride=stride, padding=padding, groups=groups, name="Y")


def conv_default():
    return _conv(), None


def conv_strided_default():
    return _conv(2, 4, 13, 10, 3, 3, 2, stride=2, padding=(1, 0, 2, 1)), None


def conv_shared_tiled():
    """Padded 3x3 conv: output tile 8x8 per block, the input and weights of a channel chunk
    in shared memory, channels split by a non-divisor, the filter window unrolled."""
    y = _conv(1, 5, 11, 9, 6)
    x, wt = y.inputs
    s = sd.Schedule(y)
    n, f, yy, xx, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx")
    yo, yi = s.split(yy, 8)
    xo, xi = s.split(xx, 8)
    rco, rci = s.split(rc, 2)
    s.reorder(f, yo, xo, n, yi, xi, rco, rci, ry, rx)
    s.bind(f, "block.y")
    s.bind(yo, "block.x")
    s.bind(yi, "thread.y")
    s.bind(xi, "thread.x")
    s.cache_read(x, "shared", at=rco)
    s.cache_read(wt, "shared", at=rco)
    s.unroll(ry)
    s.unroll(rx)
    return y, s


def conv_register_blocked():
    """Each thread computes 2 filters x 2 columns in registers (cache_write local)."""
    y = _conv(1, 4, 10, 10, 8, producer=True)
    x_relu, wt = y.inputs
    s = sd.Schedule(y)
    n, f, yy, xx, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx")
    fo, fi = s.split(f, 2)
    xo, xi = s.split(xx, 2)
    s.reorder(n, fo, yy, xo, fi, xi, rc, ry, rx)
    s.bind(fo, "block.x")
    s.bind(yy, "thread.y")
    s.bind(xo, "thread.x")
    s.cache_write("local", at=xo)
    s.cache_read(wt, "local", at=rc)
    s.unroll(xi)
    s.compute_at(x_relu, rx)
    return y, s


def depthwise_default():
    return _conv(1, 6, 9, 9, 6, stride=2, padding=1, groups=6), None


def depthwise_tiled():
    y = _conv(1, 8, 12, 12, 8, padding=1, groups=8)
    s = sd.Schedule(y)
    n, f, yy, xx, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx")
    yo, yi = s.split(yy, 5)
    s.reorder(n, f, yo, yi, xx, rc, ry, rx)
    s.bind(f, "block.x")
    s.bind(yi, "thread.y")
    s.bind(xx, "thread.x")
    s.unroll(ry)
    s.unroll(rx)
    return y, s


def _pool(kind="max"):
    return sd.pool2d(sd.placeholder("X", (2, 3, 11, 10)), kind, (3, 3), stride=(2, 2),
                     padding=(1, 1, 1, 1), name="P")


def pool_max_default():
    return _pool("max"), None


def pool_avg_default():
    return _pool("avg"), None


def pool_max_threads():
    p = _pool("max")
    s = sd.Schedule(p)
    n, c, y, x, ry, rx = s.loops("n", "c", "y", "x", "ry", "rx")
    s.reorder(c, n, y, x, ry, rx)
    s.bind(c, "block.x")
    s.bind(y, "thread.y")
    s.bind(x, "thread.x")
    s.unroll(rx)
    return p, s


def unary_default():
    return sd.sigmoid(sd.placeholder("X", (7, 13)), name="U"), None


def unary_split_vectorize():
    u = sd.tanh(sd.placeholder("X", (7, 13)), name="U")
    s = sd.Schedule(u)
    d0, d1 = s.loops("d0", "d1")
    d1o, d1i = s.split(d1, 4)
    s.bind(d0, "block.x")
    s.bind(d1o, "thread.x")
    s.vectorize(d1i)
    return u, s


def matmul_tvm_vectorized():
    """TVM-style: split loops bound to blocks and threads without reordering them (io, ii, jo,
    jt run as io, jo, ii, jt); each thread computes 4 adjacent outputs as one float4 (B and C
    accessed as float4s, A broadcast)."""
    c = _matmul(32, 24, 64)
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 8)
    jo, jr = s.split(j, 16)
    jt, jv = s.split(jr, 4)
    s.reorder(k, jv)
    s.bind(io, "block.y")
    s.bind(ii, "thread.y")
    s.bind(jo, "block.x")
    s.bind(jt, "thread.x")
    s.vectorize(jv)
    return c, s


def unary_tvm_vectorized():
    """sigmoid with TVM-style bindings and its last loop as float2s."""
    u = sd.sigmoid(sd.placeholder("X", (12, 20)), name="U")
    s = sd.Schedule(u)
    d0, d1 = s.loops("d0", "d1")
    d0o, d0i = s.split(d0, 4)
    d1o, d1i = s.split(d1, 2)
    s.bind(d0o, "block.x")
    s.bind(d0i, "thread.y")
    s.bind(d1o, "thread.x")
    s.vectorize(d1i)
    return u, s


def clip_default():
    return sd.clip(sd.placeholder("X", (5, 6, 7)), -0.25, 0.5, name="U"), None


def binary_broadcast_default():
    return sd.sub(sd.placeholder("A", (4, 5, 6)), sd.placeholder("B", (5, 1)), name="D"), None


def binary_fused_threads():
    d = sd.maximum(sd.exp(sd.placeholder("A", (9, 10)), name="E"), sd.placeholder("B", (10,)), name="D")
    s = sd.Schedule(d)
    d0, d1 = s.loops("d0", "d1")
    f = s.fuse(d0, d1)
    fo, fi = s.split(f, 32)
    s.bind(fo, "block.x")
    s.bind(fi, "thread.x")
    s.compute_at(d.inputs[0], fi)
    return d, s


def bias_add_default():
    return sd.bias_add(sd.placeholder("X", (2, 5, 3, 3)), sd.placeholder("bias", (5,)), axis=1, name="Z"), None


def reduce_sum_default():
    return sd.reduce(sd.placeholder("X", (6, 7, 8)), "sum", (0, 2), name="R"), None


def reduce_max_local():
    r = sd.reduce(sd.placeholder("X", (12, 33)), "max", 1, keepdims=True, name="R")
    s = sd.Schedule(r)
    d0, d1, r0 = s.loops("d0", "d1", "r0")
    r0o, r0i = s.split(r0, 4)
    s.bind(d0, "thread.x")
    s.cache_write("local", at=d1)
    s.unroll(r0i)
    return r, s


def softmax_default():
    return sd.softmax(sd.placeholder("X", (5, 17)), axis=-1, name="S"), None


def softmax_axis0_default():
    return sd.softmax(sd.placeholder("X", (9, 4, 3)), axis=0, name="S"), None


def scan_default():
    return sd.cumsum(sd.placeholder("X", (7, 300)), 1, name="CS"), None


def scan_exclusive_reverse_axis0():
    return sd.cumsum(sd.placeholder("X", (37, 5)), 0, exclusive=True, reverse=True, name="CS"), None


def argsort_default():
    return sd.argsort(sd.placeholder("X", (4, 200)), name="AS"), None


def argsort_rank_register_blocked():
    """The rank counts in registers (cache_write local), 4 per thread, the j loop unrolled by 4."""
    out = sd.argsort(sd.placeholder("X", (3, 130)), axis=1, descending=False, name="AS")
    s = sd.Schedule(out)
    d0, d1, j = s.loops("d0", "d1", "j", stage="AS.rank")
    d1o, d1r = s.split(d1, 64)
    tx, d1i = s.split(d1r, 4)
    jo, ji = s.split(j, 4)
    s.reorder(d0, d1o, tx, jo, ji, d1i)
    s.bind(d0, "block.y")
    s.bind(d1o, "block.x")
    s.bind(tx, "thread.x")
    s.cache_write("local", at=tx)
    s.unroll(ji)
    return out, s


def topk_values_default():
    values, _ = sd.topk(sd.placeholder("X", (6, 300)), 10, axis=1, name="TK")
    return values, None


def topk_indices_smallest():
    _, indices = sd.topk(sd.placeholder("X", (50, 9)), 3, axis=0, largest=False, name="TK")
    return indices, None


def nms_default():
    return sd.nms(sd.placeholder("boxes", (1000, 4)), sd.placeholder("scores", (1000,)), 100, 0.5, 0.25,
                  name="NMS"), None


def nms_threads():
    """The greedy pass in 64 threads, the output by 32 threads with register accumulators."""
    out = sd.nms(sd.placeholder("boxes", (333, 4)), sd.placeholder("scores", (333,)), 50, 0.3, name="NMS")
    s = sd.Schedule(out)
    bo, bi = s.split(s.loop("box", stage="NMS.supp"), 64)
    s.bind(bi, "thread.x")
    m, _ = s.loops("m", "rank")
    mo, mi = s.split(m, 32)
    s.bind(mo, "block.x")
    s.bind(mi, "thread.x")
    s.cache_write("local", at=mi)
    return out, s


def _tc_gemm(m, n, k, dtype, tiles, out_dtype=None, columns=None, intrinsic=None, tma=False):
    from sched_dsl.graph.model_schedules import tc_gemm_tiles
    f32_mode = dtype in ("tf32", "3xtf32")  # f32 tensors, products in that compute mode
    store = "f32" if f32_mode else dtype
    a, b = sd.placeholder("A", (m, k), store), sd.placeholder("B", (k, n), store)
    c = sd.matmul(a, b, name="C", precision=dtype if f32_mode else None, out_dtype=out_dtype, columns=columns)
    s = sd.Schedule(c)
    intrinsic = intrinsic or ("mma.m16n8k8" if f32_mode else "mma.m16n8k16")
    tc_gemm_tiles(s, c, a, b, *tiles, intrinsic, tma=tma)
    return c, s


def tensor_core_bf16():
    """The tensor-core GEMM: 2 x 2 warps of 32 x 32 (2 x 4 mma tiles each), 3 stages of
    cp.async copies, padded shared rows."""
    return _tc_gemm(128, 96, 160, "bf16", (64, 32, 32, 32, 16, 3))


def tensor_core_bf16_remainder():
    """A product kept to its first 49 of 56 columns (a 7 x 7 conv's) in one 64-wide block tile
    and 32-wide warp tiles (remainders at both), and 80 of its rows in 64-row tiles."""
    return _tc_gemm(80, 56, 64, "bf16", (64, 64, 32, 32, 32, 3), columns=49)


def tensor_core_f16_f32_out():
    """f16 operands, an f32 result; 4 warps along i, 2 stages, a k slice of one mma."""
    return _tc_gemm(64, 64, 64, "f16", (64, 64, 16, 16, 64, 2), out_dtype="f32")


def tensor_core_tf32():
    """f32 operands at tf32 (mma.m16n8k8, B fragments by plain loads), 4 stages."""
    return _tc_gemm(64, 128, 96, "tf32", (32, 64, 16, 32, 32, 4))


def tensor_core_3xtf32():
    """f32 operands as three TF32 products each (near f32's precision), 3 stages, a remainder
    in the columns."""
    return _tc_gemm(64, 120, 64, "3xtf32", (32, 64, 16, 32, 32, 3), columns=114)


def tensor_core_wgmma_bf16():
    """Hopper's warpgroup mma: 2 warpgroups of 64 x 128 (wgmma.m64n128k16) reading swizzled
    shared tiles that 3 stages of cp.async fill, the next tile's copies running beside the
    last tile's wgmmas; a row remainder in the last block."""
    return _tc_gemm(192, 128, 192, "bf16", (128, 128, 64, 64, 128, 3), intrinsic="wgmma.m64n128k16")


def tensor_core_wgmma_tma_bf16():
    """The wgmma GEMM with its stages filled by TMA (one thread starts each tile's copies, an
    mbarrier a stage), at a tile of 64 x 256 a warpgroup; row and column remainders in the
    last blocks, which the copies fill with zeros past the tensors' edges."""
    return _tc_gemm(200, 320, 192, "bf16", (128, 256, 64, 64, 256, 4), intrinsic="wgmma.m64n256k16", tma=True)


def implicit_gemm(c, h, f, k=3, stride=1, padding=1, tiles=(32, 32, 16, 16, 16, 3), dtype="bf16", rows=0,
                  columns=0, keep=None):
    """A conv as an implicit GEMM on tensor cores: the product gathers B = im2col(X) tile by
    tile into two shared buffers (compute_at ... double_buffer) instead of reading a columns
    matrix from memory."""
    from sched_dsl.graph.model_schedules import tc_gemm_tiles
    f32_mode = dtype in ("tf32", "3xtf32")
    store = "f32" if f32_mode else dtype
    x = sd.placeholder("X", (1, c, h, h), store)
    w = sd.placeholder("W", (f, rows or c * k * k), store)
    cols = sd.im2col(x, (k, k), stride=stride, padding=padding, rows=rows, columns=columns, name="cols")
    y = sd.matmul(w, cols, name="Y", precision=dtype if f32_mode else None, columns=keep)
    s = sd.Schedule(y)
    tc_gemm_tiles(s, y, w, cols, *tiles, "mma.m16n8k8" if f32_mode else "mma.m16n8k16", implicit_b=True)
    return y, s


def tensor_core_implicit_gemm_bf16():
    """A 3x3 stride-2 conv of 16 channels over 13 x 13 as an implicit GEMM: its 49 outputs
    kept of 56 columns, windows past the input's edge zero, 3 stages for the weights."""
    return implicit_gemm(16, 13, 32, stride=2, columns=56, keep=49, tiles=(32, 64, 16, 16, 32, 3))


def conv_bf16_default():
    """A bf16 convolution: loads widened to f32, an f32 register accumulator, a bf16 store."""
    x = sd.placeholder("X", (1, 5, 9, 9), "bf16")
    return sd.conv2d(x, sd.placeholder("W", (6, 5, 3, 3), "bf16"), padding=1, name="Y"), None


CASES = [Case(f.__name__, f) for f in (
    matmul_default, matmul_shared_nondividing, matmul_register_blocked, matmul_local_compute_at,
    conv_default, conv_strided_default, conv_shared_tiled, conv_register_blocked,
    depthwise_default, depthwise_tiled,
    pool_max_default, pool_avg_default, pool_max_threads,
    matmul_tvm_vectorized, unary_default, unary_split_vectorize, unary_tvm_vectorized, clip_default,
    binary_broadcast_default, binary_fused_threads, bias_add_default,
    reduce_sum_default, reduce_max_local, softmax_default, softmax_axis0_default,
    scan_default, scan_exclusive_reverse_axis0, argsort_default, argsort_rank_register_blocked,
    topk_values_default, topk_indices_smallest, nms_default, nms_threads,
    tensor_core_bf16, tensor_core_bf16_remainder, tensor_core_f16_f32_out, tensor_core_tf32, tensor_core_3xtf32,
    tensor_core_implicit_gemm_bf16, conv_bf16_default,
)] + [Case(f.__name__, f, cuda_only=True) for f in (tensor_core_wgmma_bf16, tensor_core_wgmma_tma_bf16)]

# what compute-sanitizer runs: one of each hard kind
SANITIZE = ("matmul_shared_nondividing", "matmul_register_blocked", "conv_shared_tiled",
            "conv_strided_default", "depthwise_tiled", "pool_max_threads", "pool_avg_default",
            "softmax_default", "reduce_max_local", "argsort_rank_register_blocked", "nms_threads",
            "tensor_core_bf16", "tensor_core_bf16_remainder", "tensor_core_tf32", "tensor_core_3xtf32",
            "tensor_core_implicit_gemm_bf16", "tensor_core_wgmma_bf16", "tensor_core_wgmma_tma_bf16")


def placeholders(out: sd.Tensor) -> list[sd.Tensor]:
    seen, stack, found = set(), [out], []
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.kind == "placeholder":
            found.append(t)
        stack.extend(t.inputs)
    return found


def inputs_for(out: sd.Tensor, seed: int = 0) -> dict[str, np.ndarray]:
    graph = topological([out])
    if any(t.kind in sdt.INDIRECT_KINDS for t in graph):
        return sdt.random_inputs(out, seed)  # ties, and boxes on a grid (exact IoUs)
    if any(t.dtype in ("f16", "bf16") or t.attrs.get("compute") for t in graph):
        return sdt.random_inputs(out, seed)  # sums of one sign, as the derived tolerance assumes
    rng = np.random.default_rng(seed)
    return {t.name: rng.uniform(-1, 1, t.shape).astype(np.float32) for t in placeholders(out)}


def check(out: sd.Tensor, schedule: sd.Schedule | None, target: str, rtol=None, atol=None):
    """Builds and runs on `target`, compares with sd.evaluate within rtol/atol (by default
    the tolerance of the graph's element types, sdt.tolerance); returns the kernel."""
    values = inputs_for(out)
    kern = sd.build(out, schedule, target=target)
    got = kern(**{n: values[n] for n in kern.input_names})
    want = sd.evaluate(out, values)
    default_rtol, default_atol = sdt.tolerance(out)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=default_rtol if rtol is None else rtol,
                               atol=default_atol if atol is None else atol)
    return kern
