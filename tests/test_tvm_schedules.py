"""Schedules a TVM user writes: split loops bound to blocks and threads without a reorder (the
block loops move outermost), and `vectorize` as vector loads and stores (float2/float4/...),
or a remark saying why a loop stays a loop. The kernels run on the default OpenCL device (PoCL
on CPU machines); the CUDA text of gpu_cases' *_tvm_vectorized cases compiles with nvcc in
test_cuda_text.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sched_dsl as sd
from sched_dsl import testing as sdt
from sched_dsl.lowering.targets.c_family import VectorizeRemark

pytestmark = pytest.mark.filterwarnings("ignore::sched_dsl.lowering.targets.c_family.VectorizeRemark")
SETTINGS = settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def tvm_matmul(m, n, k, ti, tj, width):
    """io, ii, jo, jt bound in that order (no reorder); with `width`, jt's inner part jv is
    vectorized (k moved out of it: the one reorder a vectorized loop needs)."""
    c = sd.matmul(sd.placeholder("A", (m, k)), sd.placeholder("B", (k, n)), name="C")
    s = sd.Schedule(c)
    i, j, kk = s.loops("i", "j", "k")
    io, ii = s.split(i, ti)
    jo, jt = s.split(j, tj)
    if width:
        jt, jv = s.split(jt, width)
        s.reorder(kk, jv)
        s.vectorize(jv)
    s.bind(io, "block.y")
    s.bind(ii, "thread.y")
    s.bind(jo, "block.x")
    s.bind(jt, "thread.x")
    return c, s


def tvm_elementwise(rows, cols, tr, width, fn):
    x = sd.placeholder("X", (rows, cols))
    out = fn(x, sd.placeholder("Y", (rows, cols)))
    s = sd.Schedule(out)
    d0, d1 = s.loops("d0", "d1")
    d0o, d0i = s.split(d0, tr)
    d1o, d1i = s.split(d1, width)
    s.bind(d0o, "block.x")
    s.bind(d0i, "thread.y")
    s.bind(d1o, "thread.x")
    s.vectorize(d1i)
    return out, s


def lower_quietly(out, s, target):
    """The lowered kernel and the vectorize remarks it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VectorizeRemark)
        lowered = sd.lower(out, s, target=target)
    return lowered, [str(w.message) for w in caught if issubclass(w.category, VectorizeRemark)]


@SETTINGS
@given(m=st.integers(1, 24), n=st.integers(1, 40), k=st.integers(1, 12), ti=st.sampled_from([1, 2, 4]),
       tj=st.sampled_from([4, 8, 16]), width=st.sampled_from([0, 2, 4]))
def test_matmul_with_tvm_binding_and_vectorize(m, n, k, ti, tj, width):
    c, s = tvm_matmul(m, n, k, ti, tj, width)
    sdt.assert_equivalent(c, s)


@SETTINGS
@given(rows=st.integers(1, 12), cols=st.integers(1, 24), tr=st.sampled_from([1, 2, 4]),
       width=st.sampled_from([2, 4, 8]), fn=st.sampled_from([sd.add, sd.mul, sd.maximum]))
def test_elementwise_with_tvm_binding_and_vectorize(rows, cols, tr, width, fn):
    out, s = tvm_elementwise(rows, cols, tr, width, fn)
    sdt.assert_equivalent(out, s)


def test_vectorized_loops_load_and_store_vectors():
    c, s = tvm_matmul(32, 64, 24, 8, 16, 4)
    ocl, remarks = lower_quietly(c, s, "opencl")
    assert remarks == []
    assert ocl.source.count("iterations as one float4") == 2  # the zeroing of C and the update
    assert "*(__global const float4*)(&v_B[" in ocl.source and "*(__global float4*)(&v_C[" in ocl.source
    assert "(float4)(v_t" in ocl.source  # A's element, the same for the 4 outputs, broadcast
    cuda, remarks = lower_quietly(c, s, "cuda")
    assert remarks == [] and "*(const float4*)(&v_B[" in cuda.source and "make_float4(v_t" in cuda.source
    # the blocks became the grid although io, ii, jo, jt were bound in that order
    assert [ln.grid for ln in ocl.launches] == [(4, 4, 1)] and [ln.block for ln in ocl.launches] == [(4, 8, 1)]
    out, s = tvm_elementwise(8, 32, 2, 8, sd.add)
    ocl, remarks = lower_quietly(out, s, "opencl")
    assert remarks == [] and "float8" in ocl.source
    _, remarks = lower_quietly(out, s, "cuda")
    assert remarks == ["loop 'd1i' of stage 'add' is not vectorized: its extent 8 is not a vector width of the "
                       "target (2, 4); it is unrolled"]


def transposed():
    x = sd.placeholder("X", (16, 12))
    y = sd.relu(x)
    s = sd.Schedule(y)
    d0, d1 = s.loops("d0", "d1")
    d0o, d0i = s.split(d0, 4)
    s.reorder(d1, d0o, d0i)
    s.bind(d1, "block.x")
    s.bind(d0o, "thread.x")
    s.vectorize(d0i)
    return y, s


def pool_unaligned():
    """max pool, stride 1: the input window starts at x + rx, not known to be a multiple of 4."""
    p = sd.pool2d(sd.placeholder("X", (1, 2, 9, 9)), "max", kernel=2, stride=1)
    s = sd.Schedule(p)
    n, c, y, x, ry, rx = s.loops("n", "c", "y", "x", "ry", "rx")
    xo, xi = s.split(x, 4)
    s.reorder(n, c, y, xo, ry, rx, xi)
    s.bind(c, "block.x")
    s.bind(y, "thread.y")
    s.bind(xo, "thread.x")
    s.vectorize(xi)
    return p, s


@pytest.mark.parametrize("make, target, remark", [
    (transposed, "opencl", "its accesses to 'X' are not contiguous: they move by [1, 0] (per dimension) per "
                           "iteration, not by one element of the last dimension"),
    (lambda: tvm_elementwise(6, 9, 2, 3, sd.add), "opencl", "its extent 3 is not a vector width of the target"),
    (lambda: tvm_elementwise(6, 10, 2, 4, sd.add), "opencl", "(a guard: does the split factor divide the extent?)"),
    (pool_unaligned, "cuda", "its accesses to 'X' are not known to be aligned to 16 bytes"),
    (pool_unaligned, "opencl", None),  # OpenCL reads it with vload4
])
def test_vectorize_says_why_a_loop_stays_a_loop(make, target, remark):
    out, s = make()
    lowered, remarks = lower_quietly(out, s, target)
    if remark is None:
        assert remarks == [] and "vload4(0, &v_X[" in lowered.source
    else:
        assert remarks and all(remark in r and r.endswith("; it is unrolled") for r in remarks), remarks
        assert "// not vectorized: " in lowered.source
    if target == "opencl":
        sdt.assert_equivalent(out, s)


def test_a_vectorized_loop_cannot_be_bound():
    y = sd.relu(sd.placeholder("X", (4, 8)))
    s = sd.Schedule(y)
    d0, d1 = s.loops("d0", "d1")
    s.bind(d0, "block.x")
    s.bind(d1, "thread.x")
    s.vectorize(d1)
    with pytest.raises(sd.ScheduleError, match="cannot vectorize loop 'd1': it is bound to thread.x"):
        sd.lower(y, s)


def test_tvm_binding_and_vectorize_check_at_every_stage():
    from sched_dsl.lowering.pipeline import DEFAULT_PIPELINE
    from sched_dsl.testing.check import check_each_pass

    c, s = tvm_matmul(16, 32, 8, 4, 16, 4)
    results = check_each_pass(s.module(), DEFAULT_PIPELINE)
    assert [r.ok and r.checked for r in results] == [True] * 4
    np.testing.assert_array_less([r.max_error for r in results], 1e-4)
