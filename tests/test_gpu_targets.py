"""Every case of gpu_cases, and random operators and schedules, run on an NVIDIA GPU through
both GPU targets (CUDA via pycuda, OpenCL via the NVIDIA platform) and compared with the numpy
reference. Each target skips, saying why, where it has no device; tests/test_cuda_text.py
checks the CUDA text on machines without one."""

from __future__ import annotations

import os
from functools import lru_cache

import pytest
from gpu_cases import CASES, check, cuda_unavailable, shared_tiled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sched_dsl as sd
from sched_dsl.runtime import tensor_cores

TARGETS = ("cuda", "opencl-nvidia")


@lru_cache(maxsize=None)
def unavailable(target: str) -> str | None:
    """Why `target` cannot run here, or None when it can (and is then selected)."""
    if target == "cuda":
        return cuda_unavailable()
    import pyopencl as cl

    from sched_dsl.runtime import opencl
    try:
        names = [f"{p.name}: {d.name}" for p in cl.get_platforms() for d in p.get_devices()]
    except cl.Error as e:
        return f"no OpenCL platform ({e})"
    if not any("nvidia" in n.lower() for n in names):
        return f"no NVIDIA OpenCL platform (found: {'; '.join(names) or 'none'})"
    os.environ["SCHED_DSL_OPENCL_DEVICE"] = "NVIDIA"
    for cached in (opencl.default_device, opencl._context_and_queue, opencl._program):
        cached.cache_clear()
    try:  # the platform can be listed while its compiler is missing from the driver install
        opencl._program("__kernel void probe(__global float* x) { x[0] = 1.0f; }")
    except opencl.DeviceError as e:
        return f"the NVIDIA OpenCL platform cannot build a trivial kernel: {e}"
    return None


def sd_target(target: str) -> str:
    reason = unavailable(target)
    if reason:
        pytest.skip(reason)
    return "cuda" if target == "cuda" else "opencl"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("target", TARGETS)
def test_case_matches_reference(target, case):
    out, schedule = case.make()
    if case.cuda_only and target != "cuda" and tensor_cores(sd_target(target)):
        # where OpenCL prints tensor-core instructions, wgmma is a clear error (elsewhere its loops run)
        with pytest.raises(Exception, match="prints only as CUDA"):
            sd.build(out, schedule, target="opencl")
        return
    kern = check(out, schedule, sd_target(target))
    times = kern.runner.last_times_ms
    assert len(times) == len(kern.lowered.plan.launches) and all(t >= 0 for t in times)


@pytest.mark.parametrize("target", TARGETS)
def test_quickstart_schedule_at_larger_size(target):
    """A 16x16-thread shared-memory matmul over sizes that are not multiples of the tiles."""
    import sched_dsl as sd
    c, s = shared_tiled(sd.matmul(sd.placeholder("A", (333, 257)), sd.placeholder("B", (257, 190))))
    check(c, s, sd_target(target), rtol=1e-4, atol=1e-4)


def test_cuda_rejects_a_block_beyond_the_device_before_launching():
    import sched_dsl as sd
    from sched_dsl.runtime.cuda import DeviceError
    sd_target("cuda")
    x = sd.placeholder("X", (2048,))
    y = sd.relu(x)
    s = sd.Schedule(y)
    (d0,) = s.loops("d0")
    s.bind(d0, "thread.x")  # 2048 threads in one block
    with pytest.raises(DeviceError, match="2048 threads per block"):
        sd.build(y, s, target="cuda")


from sched_dsl import testing as sdt

EXAMPLES = int(os.environ.get("SCHED_DSL_GPU_EXAMPLES", "60"))


@pytest.mark.parametrize("target", TARGETS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_operator_and_schedule(target, data):
    t = sd_target(target)
    out = data.draw(sdt.operators())
    schedule = data.draw(sdt.schedules(out))
    sdt.assert_equivalent(out, schedule, target=t, inputs=data.draw(sdt.inputs(out)))


PRECISION_EXAMPLES = int(os.environ.get("SCHED_DSL_GPU_PRECISION_EXAMPLES", "20"))


@pytest.mark.parametrize("dtype", ["f16", "bf16", "tf32", "3xtf32"])
@pytest.mark.parametrize("target", TARGETS)
@settings(max_examples=PRECISION_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_reduced_precision_operator_and_schedule(target, dtype, data):
    """Every operator in f16 and bf16 (matmul and conv2d also at tf32 and 3xtf32), both
    targets, within the tolerance derived from the types."""
    t = sd_target(target)
    kinds = ("matmul", "conv2d") if dtype in ("tf32", "3xtf32") else sdt.OPERATOR_KINDS
    out = data.draw(sdt.operators(kinds, dtype))
    schedule = data.draw(sdt.schedules(out))
    sdt.assert_equivalent(out, schedule, target=t, inputs=data.draw(sdt.inputs(out)))
