"""sched.tensorize and the tensor-core GEMM template: the same schedule gives the reference
result through plain loops on the OpenCL CPU device (tc-to-loops), prints mma.sync / ldmatrix
/ cp.async for NVIDIA (tests/test_cuda_text.py compiles the gpu_cases ones with nvcc),
rejects what the instruction cannot take, and is a space the tuner searches."""

from __future__ import annotations

import warnings

import pytest
from gpu_cases import _tc_gemm, implicit_gemm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sched_dsl as sd
from sched_dsl import testing as sdt
from sched_dsl.graph.model_schedules import anchor_workload, tc_gemm_defaults, tc_gemm_tiles
from sched_dsl.tensor import module_of
from sched_dsl.tuner.features import FEATURE_NAMES, loop_only_features
from sched_dsl.tuner.space import Space


def opencl_shared_bytes() -> int:
    from sched_dsl.runtime.opencl import default_device, device_limits
    return device_limits(default_device()).max_shared_bytes


def equivalent(c, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdt.assert_equivalent(c, s)


@pytest.mark.parametrize("dtype,shape,tiles,out_dtype", [
    ("bf16", (64, 64, 64), (64, 64, 32, 32, 32, 2), None),
    ("f16", (32, 48, 48), (32, 16, 16, 16, 8, 3), "f32"),  # one mma per warp, 3 stages
    ("bf16", (128, 64, 96), (64, 64, 32, 64, 32, 3), None),  # B tiles in pairs, k slices of two steps
    ("tf32", (64, 32, 64), (32, 32, 16, 16, 16, 4), None),  # m16n8k8, 4 stages
    ("3xtf32", (64, 48, 32), (32, 16, 16, 16, 16, 2), None),  # three m16n8k8 a tile
    pytest.param("bf16", (256, 128, 64), (128, 128, 32, 64, 64, 3), None,  # over 48 KiB: dynamic on CUDA
                 marks=pytest.mark.skipif(opencl_shared_bytes() < 56832, reason="the OpenCL device has less "
                                          "__local memory (the error is tested below; CUDA in test_gpu_targets)")),
])
def test_tensorized_gemm_matches_reference(dtype, shape, tiles, out_dtype):
    c, s = _tc_gemm(*shape, dtype, tiles, out_dtype=out_dtype)
    equivalent(c, s)


@pytest.mark.parametrize("dtype,shape,tiles,columns", [
    ("bf16", (80, 56, 64), (64, 64, 32, 32, 32, 3), 49),  # remainders at the block and the warp tiles
    ("bf16", (64, 200, 48), (32, 64, 16, 32, 32, 2), 196),  # the last block tile reaches past B: by element
    ("bf16", (48, 40, 32), (32, 32, 16, 16, 16, 2), None),  # remainders in both, no columns cut
    ("tf32", (48, 56, 32), (32, 32, 16, 16, 16, 2), 50),  # m16n8k8, B fragments by plain loads
])
def test_tensorized_gemm_with_tiles_that_do_not_divide(dtype, shape, tiles, columns):
    """Tiles past the output compute on zeros (copies beyond the operands fill them) and are
    not written back; where only some block tiles reach past B, the others still copy in
    whole chunks."""
    c, s = _tc_gemm(*shape, dtype, tiles, columns=columns)
    equivalent(c, s)
    cuda = sd.lower(c, s, target="cuda").source
    assert "cp.async.cg.shared.global" in cuda and "mma.sync" in cuda


def test_a_tile_that_reaches_past_the_tensor_copies_zero_filled_chunks():
    """B of 200 columns in 64-wide tiles, and of 56 columns in one (the 49 outputs of a 7 x 7
    conv): the chunks past the edge are zero-filled cp.async copies (nothing read), so every
    tile copies asynchronously, at as many copy sites as a B that the tiles divide (A's and
    B's, at the pipeline's start and in its steps); a dividing B needs no zero fill."""
    def copies(n, columns, k=48, tiles=(32, 64, 16, 32, 32, 2)):
        text = sd.lower(*_tc_gemm(64, n, k, "bf16", tiles, columns=columns), target="cuda").source
        return text.count("cp.async.cg.shared.global"), text.count("], 16, %2;")

    assert copies(192, None) == (4, 0)
    assert copies(200, 196) == (4, 2)  # B's, at the start and in the steps
    assert copies(56, 49, 64, (64, 64, 32, 32, 32, 3)) == (4, 2)


def test_shared_memory_beyond_the_opencl_limit_is_a_clear_error(monkeypatch):
    """A tile over a device's 48 KiB of __local (NVIDIA's OpenCL) is refused before launching,
    with the kernel and the limit named; CUDA takes it as dynamic shared memory (above)."""
    from sched_dsl.runtime.common import DeviceError, DeviceLimits

    c, s = _tc_gemm(256, 128, 64, "bf16", (128, 128, 32, 64, 64, 3))
    small = DeviceLimits(name="a 48 KiB device", max_threads_per_block=1024, max_block_dims=(1024, 1024, 64),
                         max_shared_bytes=48 * 1024, max_grid_dims=None, max_buffer_bytes=1 << 30,
                         memory_bytes=1 << 32)
    monkeypatch.setattr("sched_dsl.runtime.opencl.device_limits", lambda d: small)
    with pytest.raises(DeviceError, match="kernel main_C: 56832 bytes of shared memory per block exceed "
                                          "a 48 KiB device's limit of 49152"):
        sd.build(c, s, target="opencl")


@st.composite
def tc_problems(draw):
    dtype = draw(st.sampled_from(["bf16", "f16", "tf32", "3xtf32"]))
    wm, wn = draw(st.sampled_from([16, 32])), draw(st.sampled_from([8, 16, 32]))
    bm, bn = wm * draw(st.integers(1, 2)), wn * draw(st.integers(1, 2))
    step = 8 if dtype in ("tf32", "3xtf32") else 16
    bk = step * draw(st.integers(1, 2))
    m, n, k = bm * draw(st.integers(1, 2)), bn * draw(st.integers(1, 2)), bk * draw(st.integers(1, 3))
    return (m, n, k), dtype, (bm, bn, bk, wm, wn, draw(st.integers(2, 4)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tc_problems())
def test_random_tensor_core_tiles_match_reference(problem):
    shape, dtype, tiles = problem
    c, s = _tc_gemm(*shape, dtype, tiles)
    equivalent(c, s)


def test_tensor_core_instructions_in_both_languages_and_loops_elsewhere():
    c, s = _tc_gemm(128, 128, 64, "bf16", (64, 64, 32, 32, 32, 3))
    cuda = sd.lower(c, s, target="cuda").source
    for text in ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", "ldmatrix.sync.aligned.m8n8.x4.shared.b16",
                 "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", "cp.async.cg.shared.global",
                 "cp.async.wait_group 1", "__cvta_generic_to_shared"):
        assert text in cuda, text
    opencl = sd.lower(c, s, target="opencl", tensor_cores=True).source
    assert "mma.sync.aligned.m16n8k16" in opencl and "(uint)(size_t)(&v_A_shared" in opencl
    plain = sd.lower(c, s, target="opencl").source  # no tensor cores: tc-to-loops
    assert "asm" not in plain and "mma" not in plain
    tf32 = sd.lower(*_tc_gemm(64, 64, 32, "tf32", (64, 64, 16, 32, 32, 2)), target="cuda").source
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in tf32 and "__float_as_uint" in tf32


WGMMA = {"intrinsic": "wgmma.m64n128k16"}
# a wgmma's stages (at least 3 of 64-deep tiles) take more than the 48 KiB of __local memory NVIDIA's
# OpenCL gives (a clear error there); PoCL runs them, and CUDA in test_gpu_targets
SHARED_96K = pytest.mark.skipif(opencl_shared_bytes() < 100 * 1024, reason="the OpenCL device has less __local "
                                "memory than the wgmma stages take")


@SHARED_96K
def test_wgmma_gemm_matches_reference_through_its_meaning(monkeypatch):
    """Hopper's warpgroup mma where there is none (PoCL; on NVIDIA's OpenCL, with its tensor
    cores turned off): tc-to-loops runs its meaning, reading the swizzled buffers the copies
    wrote; a row remainder in the last block tile."""
    monkeypatch.setenv("SCHED_DSL_TENSOR_CORES", "0")
    c, s = _tc_gemm(192, 128, 128, "bf16", (128, 128, 64, 64, 128, 3), **WGMMA)
    equivalent(c, s)


def test_wgmma_in_cuda_text_and_a_clear_error_in_opencl():
    c, s = _tc_gemm(128, 128, 128, "bf16", (128, 128, 64, 64, 128, 3), **WGMMA)
    cuda = sd.lower(c, s, target="cuda").source
    for text in ("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16", "wgmma.fence.sync.aligned",
                 "wgmma.commit_group.sync.aligned", "wgmma.wait_group.sync.aligned 1",
                 "wgmma.wait_group.sync.aligned 0", "fence.proxy.async.shared::cta", "__align__(1024)",
                 "cp.async.wait_group 0", " ^ "):
        assert text in cuda, text
    assert "ldmatrix" not in cuda and "mma.sync" not in cuda
    # results stored in pairs: converted one by one, ptxas serializes the wgmmas (C7514)
    assert "*(__nv_bfloat162*)&v_C[" in cuda and "__floats2bfloat162_rn(" in cuda
    with pytest.raises(Exception, match="prints only as CUDA"):
        sd.lower(c, s, target="opencl", tensor_cores=True)


def test_swizzled_position_permutes_the_tile_and_spreads_a_column_over_the_banks():
    from sched_dsl.dialects.tensorcore import swizzled_position
    rows, cols = 16, 128
    assert len({swizzled_position(r, c, rows, cols) for r in range(rows) for c in range(cols)}) == rows * cols
    # chunk 0 of 8 consecutive rows: 8 different 16-byte chunks of their 128-byte rows
    assert len({swizzled_position(r, 0, rows, cols)[1] % 64 // 8 for r in range(8)}) == 8


def test_wgmma_schedule_errors():
    schedule_error(lambda: _tc_gemm(128, 128, 128, "bf16", (128, 128, 64, 64, 128, 2), **WGMMA),
                   "with stages >= 3")
    schedule_error(lambda: _tc_gemm(128, 128, 128, "bf16", (128, 128, 32, 64, 128, 3), **WGMMA),
                   "rows of a multiple of 64 elements")
    schedule_error(lambda: _tc_gemm(128, 128, 128, "f16", (128, 128, 64, 64, 64, 3), **WGMMA),
                   "takes tiles of N = 128")


TMA = {**WGMMA, "tma": True}


@SHARED_96K
def test_wgmma_with_tma_copies_matches_reference_through_its_meaning(monkeypatch):
    """Stages filled by TMA where there is none (PoCL): the thread that starts a tile's copies
    copies its boxes into the swizzled layout, zeros past the tensors' edges (remainders in
    both the rows and the columns of the last blocks), and the block barriers order them."""
    monkeypatch.setenv("SCHED_DSL_TENSOR_CORES", "0")
    c, s = _tc_gemm(192, 192, 128, "bf16", (128, 128, 64, 64, 128, 3), **TMA)
    equivalent(c, s)


def test_tma_copies_in_cuda_text_a_tensor_map_a_tensor_and_a_clear_error_in_opencl():
    from sched_dsl.lowering.host_plan import HostPlan

    c, s = _tc_gemm(256, 320, 256, "bf16", (128, 256, 64, 64, 256, 4), intrinsic="wgmma.m64n256k16", tma=True)
    lowered = sd.lower(c, s, target="cuda")
    cuda, plan = lowered.source, lowered.plan
    # A: one box of 128 rows a k step; B: four of 64 columns (one swizzled span each); 4 k steps,
    # the first two started before the loop and the others in it, one a step ahead of the wgmmas
    assert [(m.tensor, m.box) for m in plan.tensor_maps] == [("A", (128, 64)), ("B", (64, 64))]
    assert plan.launches[0].args[-2:] == tuple(m.name for m in plan.tensor_maps)
    assert cuda.count("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes") == 3 * 5
    # each stage's barrier expects both tiles' bytes: 2 * (128 * 64 + 64 * 256)
    assert cuda.count("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], 49152;") == 3
    assert cuda.count("mbarrier.init.shared::cta.b64 [%0], 1;") == 4 and "fence.mbarrier_init" in cuda
    assert "mbarrier.try_wait.parity.shared::cta.b64" in cuda and "wgmma.wait_group.sync.aligned 1" in cuda
    assert "cp.async.cg" not in cuda and "cp.async.wait_group" not in cuda  # no per-thread copies
    assert HostPlan.from_json(plan.to_json()) == plan
    with pytest.raises(Exception, match="prints only as CUDA"):
        sd.lower(c, s, target="opencl", tensor_cores=True)


@SHARED_96K
def test_check_each_pass_runs_tma_ir_and_its_text_parses_back():
    """The per-pass checker runs TMA copies as the loops they mean (the host's tensor maps are
    buffers no loop reads), and the gpu-level IR with tensor maps, mbarriers and TMA copies
    prints and parses back to the same text."""
    from io import StringIO

    from xdsl.parser import Parser
    from xdsl.printer import Printer

    from sched_dsl.context import make_context
    from sched_dsl.lowering.pipeline import run_default_pipeline
    from sched_dsl.testing.check import check_each_pass

    # one warpgroup of 64 x 64, one k step (the interpreter runs the copying thread alone, slowly)
    _, s = _tc_gemm(64, 64, 64, "bf16", (64, 64, 64, 64, 64, 3), out_dtype="f32", intrinsic="wgmma.m64n64k16",
                    tma=True)
    results = check_each_pass(s.module(), "tensorop-to-loops,apply-schedule,loops-to-gpu,tc-to-loops")
    assert all(r.ok and r.checked for r in results), [(r.name, r.ok, r.checked) for r in results]
    module = s.module()
    run_default_pipeline(make_context(), module, tensor_cores=True, stop_after="loops-to-gpu")
    text = StringIO()
    Printer(stream=text).print_op(module)
    for op in ("tc.tensor_map", "tc.mbarrier_init", "tc.mbarrier_expect", "tc.tma_load", "tc.mbarrier_wait"):
        assert op in text.getvalue(), op
    again = StringIO()
    Printer(stream=again).print_op(Parser(make_context(), text.getvalue()).parse_module())
    assert again.getvalue() == text.getvalue()


def test_wgmma_tma_template_is_a_space_of_tiles_and_stages():
    """Knobs in the TMA template: each point of the space lowers to TMA copies, the boxes
    following the block tile and the barriers the stage count."""
    import itertools

    a, b = sd.placeholder("A", (256, 256), "bf16"), sd.placeholder("B", (256, 256), "bf16")
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    bm, stages = s.knob("bm", [128, 256]), s.knob("stages", [3, 4])
    tc_gemm_tiles(s, c, a, b, bm, 128, 64, 64, 128, stages, "wgmma.m64n128k16", tma=True)
    space = Space.of(s)
    assert space.candidates_by_name() == {"bm": (128, 256), "stages": (3, 4)}
    for point in itertools.product(range(2), range(2)):
        config = space.config(point)
        lowered = sd.lower(c, s, target="cuda", config=config)
        assert [m.box for m in lowered.plan.tensor_maps] == [(config["bm"], 64), (64, 64)]
        assert lowered.source.count("mbarrier.init.shared::cta.b64") == config["stages"]


def test_tma_schedule_errors():
    with pytest.raises(sd.ScheduleError, match="give stages"):
        a = sd.placeholder("A", (64, 64), "bf16")
        s = sd.Schedule(sd.matmul(a, a, name="C"))
        s.cache_read(a, "shared", at=s.loops("k")[0], tma=True)

    def only_a():
        c, s = _tc_gemm(128, 128, 128, "bf16", (128, 128, 64, 64, 128, 3), **WGMMA)
        s.actions = [(kind, args[:-1] + (args[0].name == "A",))
                     if kind == "cache_read" else (kind, args) for kind, args in s.actions]
        return c, s

    schedule_error(only_a, "give it tma too")

    def mma_sync():
        c, s = _tc_gemm(64, 64, 64, "bf16", (64, 64, 32, 32, 32, 3))
        s.actions = [(kind, args[:-2] + (0, True)) if kind == "cache_read" else (kind, args) for kind, args in s.actions]
        return c, s

    schedule_error(mma_sync, "fill the operands of a wgmma")


def test_3xtf32_splits_each_operand_once_and_takes_three_mmas_a_tile():
    """Each fragment register becomes a TF32 part and a TF32 remainder (cvt.rna) where it is
    loaded, not at each mma that reads it; each tile's mma is three, the small terms first,
    summed from zero and added to the accumulator; the same schedule at tf32 rounds each
    register once and takes one mma. In both languages."""
    import re

    tiles = (32, 32, 16, 16, 16, 2)  # a warp: one A fragment, two B tiles, two k steps
    for target, extra in (("cuda", {}), ("opencl", {"tensor_cores": True})):
        text = sd.lower(*_tc_gemm(64, 64, 32, "3xtf32", tiles), target=target, **extra).source
        plain = sd.lower(*_tc_gemm(64, 64, 32, "tf32", tiles), target=target, **extra).source
        # each mma's A and B registers, by name
        mmas = [(regs[0], regs[-1]) for line in text.splitlines() if "mma.sync" in line
                for regs in [re.findall(r'"r"\((\w+)\[', line)]]
        assert len(mmas) == 3 * plain.count("mma.sync") > 0
        for (a1, b1), (a2, b2), (a, b) in zip(mmas[0::3], mmas[1::3], mmas[2::3]):
            assert (a1, b1, a2, b2) == (a + "_lo", b, a, b + "_lo") and not a.endswith("_lo")
        assert text.count("+= v_mma_sum[") == 4 * plain.count("mma.sync") and "v_mma_sum" not in plain
        # one per register: A 4 a fragment, B 2 a tile, per k step and warp tile; at tf32 the
        # same registers are rounded (to nearest, as the reference does), not split
        assert text.count("cvt.rna.tf32.f32 h") == 2 * (4 + 2 * 2) == plain.count("cvt.rna.tf32.f32 %0, %1")
        assert "cvt.rna.tf32.f32 h" not in plain and "_lo[" not in plain


def test_3xtf32_mma_only_on_f32_operands():
    from xdsl.dialects.builtin import StringAttr
    from xdsl.utils.exceptions import VerifyException

    from sched_dsl.dialects import tensorcore as tc

    c, s = _tc_gemm(32, 32, 32, "bf16", (32, 32, 16, 16, 16, 2))
    module = sd.lower(c, s, target="cuda").module
    mma = next(op for op in module.walk() if isinstance(op, tc.MmaOp))
    mma.verify()
    mma.properties["compute"] = StringAttr("3xtf32")
    with pytest.raises(VerifyException, match='only m16n8k8 \\(f32 operands\\) takes compute "3xtf32"'):
        mma.verify()


@pytest.mark.parametrize("kw", [
    {"c": 16, "h": 10, "f": 32},  # 3x3, stride 1, windows past the edges
    {"c": 16, "h": 13, "f": 32, "stride": 2, "columns": 56, "keep": 49, "tiles": (32, 64, 16, 16, 32, 3)},
    {"c": 3, "h": 16, "f": 32, "k": 7, "stride": 2, "padding": 3, "rows": 160,  # rows padded
     "tiles": (32, 32, 32, 16, 16, 2)},
    {"c": 32, "h": 7, "f": 16, "k": 1, "stride": 2, "padding": 0, "columns": 16,  # 1x1, stride 2
     "tiles": (16, 16, 32, 16, 8, 2)},
    {"c": 8, "h": 9, "f": 32, "dtype": "3xtf32", "tiles": (32, 32, 8, 16, 16, 2)},  # f32, m16n8k8
])
def test_implicit_gemm_matches_reference(kw):
    """B = im2col(X) computed where the product reads it (compute_at ... double_buffer): each
    thread gathers its elements of the next k step's tile into registers before the mmas and
    stores them after them."""
    y, s = implicit_gemm(**kw)
    equivalent(y, s)
    lw = sd.lower(y, s, target="cuda")
    assert len(lw.launches) == 1  # the im2col has no kernel of its own
    assert "v_cols_next" in lw.source and "v_X[" in lw.source and "v_cols[" not in lw.source


def test_computed_operand_needs_two_shared_buffers():
    from sched_dsl.schedule import ScheduleError

    x = sd.placeholder("X", (1, 16, 8, 8), "bf16")
    w = sd.placeholder("W", (32, 144), "bf16")
    cols = sd.im2col(x, (3, 3), padding=1, name="cols")
    y = sd.matmul(w, cols, name="Y")
    s = sd.Schedule(y)
    with pytest.raises(ScheduleError, match="compute_at: pad=4 needs an int >= 0 and double_buffer"):
        s.compute_at(cols, s.loops("k")[0], pad=4)
    from sched_dsl.graph.model_schedules import tc_gemm_tiles
    tc_gemm_tiles(s, y, w, cols, 32, 32, 16, 16, 16, 2, "mma.m16n8k16", implicit_b=True)
    s.actions = [a if a[0] != "compute_at" else ("compute_at", (*a[1][:2], False, None)) for a in s.actions]
    with pytest.raises(ScheduleError, match=r"tensorize reads its operands from shared memory: cache 'cols' \(B\) "
                                            r"with cache_read\(\.\.\., 'shared'\) and no layout, or "
                                            r"compute_at\(\.\.\., double_buffer=True\)"):
        sd.lower(y, s, target="cuda")


def test_shared_buffers_beyond_48k_are_dynamic_on_cuda():
    c, s = _tc_gemm(256, 256, 64, "bf16", (128, 256, 32, 64, 64, 3))
    lw = sd.lower(c, s, target="cuda")
    (launch,) = lw.launches
    assert launch.shared_bytes == 3 * 2 * (128 * 40 + 32 * 264) and launch.dynamic_shared == launch.shared_bytes
    assert "extern __shared__ __align__(16) unsigned char v_dynamic_shared[];" in lw.source
    small = sd.lower(*_tc_gemm(64, 64, 64, "bf16", (64, 64, 32, 32, 32, 2)), target="cuda")
    assert small.launches[0].dynamic_shared == 0 and "v_dynamic_shared" not in small.source


def schedule_error(make, match: str) -> None:
    c, s = make()
    with pytest.raises(sd.ScheduleError, match=match):
        sd.lower(c, s)


def tiled(m=64, n=64, k=64, dtype="bf16", bind_x=False, shared=True, tile=(16, 8, 16), ksplit=32, threads=(2, 2),
          precision=None):
    a, b = sd.placeholder("A", (m, k), dtype), sd.placeholder("B", (k, n), dtype)
    c = sd.matmul(a, b, name="C", precision=precision)
    s = sd.Schedule(c)
    i, j, kk = s.loops("i", "j", "k")
    io, i1 = s.split(i, 16 * threads[0] if not bind_x else 32)
    jo, j1 = s.split(j, 8 * threads[1])
    iw, ii = s.split(i1, tile[0])
    jw, ji = s.split(j1, tile[1])
    ko, k1 = s.split(kk, ksplit)
    kt, ki = s.split(k1, tile[2])
    s.reorder(io, jo, iw, jw, ko, kt, ii, ji, ki)
    s.bind(io, "block.y")
    s.bind(jo, "block.x")
    s.bind(iw, "thread.x" if bind_x else "thread.z")
    s.bind(jw, "thread.y")
    if shared:
        s.cache_read(a, "shared", at=ko)
        s.cache_read(b, "shared", at=ko)
    s.tensorize(ii, ji, ki)
    return c, s


def test_tile_shapes_types_and_warps_the_instruction_cannot_take():
    schedule_error(lambda: tiled(tile=(16, 8, 8)), "loop 'kii' has 8 iterations; mma.m16n8k16 takes tiles of K = 16")
    schedule_error(lambda: tiled(tile=(32, 8, 16)), "loop 'iii' has 32 iterations; mma.m16n8k16 takes tiles of M = 16")
    schedule_error(lambda: tiled(bind_x=True), "thread.x is the warp's lanes in a tensorized stage")
    schedule_error(lambda: tiled(shared=False), "tensorize reads its operands from shared memory: cache 'A'")
    schedule_error(lambda: tiled(k=80), r"tensorize needs reduction splits that divide; 'k' \(80\) split by 32")
    schedule_error(lambda: tiled(n=1024, threads=(2, 32)), "64 warps of 32 lanes exceed 1024 threads per block")
    with pytest.raises(sd.ScheduleError, match="multiplies f32 tensors at full precision"):
        tiled(dtype="f32")
    with pytest.raises(sd.ScheduleError, match="relu 'R' is not a matmul|unary 'R' is not a matmul"):
        x = sd.placeholder("X", (16, 16), "bf16")
        r = sd.relu(x, name="R")
        s = sd.Schedule(r)
        d0, d1 = s.loops("d0", "d1")
        s.tensorize(d0, d1, d1)


def test_an_f32_matmul_tensorized_by_name_must_be_tf32():
    """The intrinsic named for a stage given by name is checked against the payload."""
    a, b = sd.placeholder("A", (32, 32)), sd.placeholder("B", (32, 32))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    with pytest.raises(sd.ScheduleError, match="mma.m16n8k8 does not take f32 operands"):
        tc_gemm_tiles(s, "C", "A", "B", 32, 32, 16, 16, 16, 2, "mma.m16n8k8")
        sd.lower(c, s)


def test_features_see_tensor_core_use():
    c, s = _tc_gemm(128, 128, 64, "bf16", (64, 64, 32, 32, 32, 2))
    f = dict(zip(FEATURE_NAMES, loop_only_features(c, s, {})))
    mma = 2 ** f["mma_thread"] - 1
    assert mma == 2 * 2 * 4 * 2  # k slices x k steps x mma tiles (2 x 4) per warp
    assert 2 ** f["mma_flops_total"] - 1 == pytest.approx(2 * 128 * 128 * 64)
    assert f["fragment_loads_thread"] > 0 and f["async_copies_thread"] > 0
    m = sd.matmul(sd.placeholder("A", (64, 64)), sd.placeholder("B", (64, 64)))
    plain = dict(zip(FEATURE_NAMES, loop_only_features(m, sd.Schedule(m), {})))
    assert plain["mma_thread"] == 0


def test_features_see_wgmma_and_tma_copies():
    """A wgmma counts as its warpgroup's flops, issued by each of its threads; a TMA copy,
    started by one thread of each block, as the 16-byte chunks its box holds."""
    c, s = _tc_gemm(256, 256, 128, "bf16", (128, 128, 64, 64, 128, 3), **TMA)
    f = {name: 2 ** v - 1 for name, v in zip(FEATURE_NAMES, loop_only_features(c, s, {}))}
    assert f["mma_flops_total"] == pytest.approx(2 * 256 * 256 * 128)
    assert f["mma_thread"] == pytest.approx(2 * 4)  # k slices x k steps, one wgmma of 64 x 128 a warpgroup each
    # 4 blocks, each a tile of A (128 x 64, one box) and of B (64 x 128, two boxes) before the
    # loop and one in each of its 2 iterations (counted as the cp.async copies are: at each)
    tile_chunks = (128 * 64 + 64 * 128) * 2 / 16
    stores = 256 * 256  # the results, in pairs
    assert f["flops_per_global_access"] == pytest.approx(2 * 256 * 256 * 128 / (stores + 4 * 3 * tile_chunks))
    assert f["async_copies_thread"] == pytest.approx(3 * 3)  # thread 0's: 3 boxes a tile


def test_reduced_precision_matmuls_get_the_tensor_core_template():
    a, b = sd.placeholder("A", (128, 256), "bf16"), sd.placeholder("B", (256, 64), "bf16")
    module, _, _ = module_of([sd.matmul(a, b, name="C")])
    op = next(o for o in module.walk() if o.name == "tensorop.matmul")
    c, s = anchor_workload(op)
    knobs = Space.of(s).candidates_by_name()
    assert set(knobs) == {"bm", "bn", "bk", "wm", "wn", "stages"}
    d = tc_gemm_defaults(128, 64, 256, "mma.m16n8k16")
    assert [knobs[k][0] for k in ("bm", "bn", "bk", "wm", "wn", "stages")] == [d[k] for k in knobs]
    assert "sched.tensorize" in s.ir()
    assert tc_gemm_defaults(1, 1000, 512, "mma.m16n8k16") is None  # a shape that is no multiple of the tile


def test_the_tuner_measures_tensor_core_configs(tmp_path):
    a, b = sd.placeholder("A", (64, 64), "bf16"), sd.placeholder("B", (64, 64), "bf16")
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    bm, wm = s.knob("bm", [32, 64]), s.knob("wm", [16, 32])
    stages = s.knob("stages", [2, 3])
    tc_gemm_tiles(s, c, a, b, bm, 32, 32, wm, 16, stages, "mma.m16n8k16")
    result = sd.tune(c, s, trials=3, records=str(tmp_path / "r.jsonl"), strategy="random", batch=3, timeout=300)
    assert result.best_config is not None and result.best_ms > 0, [(r.error, r.message[:300]) for r in result.records]
    ok = [r for r in result.records if r.ok]
    assert ok and all(r.features[FEATURE_NAMES.index("mma_thread")] > 0 for r in ok)


def test_check_each_pass_runs_tensor_core_ir(monkeypatch):
    """The per-pass checker runs tc ops as the loops they mean; text with tensor-core
    instructions is not run on a device without them, and the summary says why."""
    from sched_dsl.testing.check import check_each_pass, summary

    _, s = _tc_gemm(32, 32, 32, "bf16", (32, 32, 16, 16, 16, 2))
    results = check_each_pass(s.module(), "tensorop-to-loops,apply-schedule,loops-to-gpu,tc-to-loops")
    assert [r.name for r in results][-1] == "emitted OpenCL text" and all(r.ok and r.checked for r in results)
    monkeypatch.setenv("SCHED_DSL_TENSOR_CORES", "0")  # as on a device without them
    results = check_each_pass(s.module(), "tensorop-to-loops,apply-schedule,loops-to-gpu")
    assert all(r.ok for r in results) and not results[-1].checked
    assert "not run here: emitted OpenCL text (its text uses tensor-core instructions" in summary(results)
