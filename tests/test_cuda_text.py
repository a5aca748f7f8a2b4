"""The CUDA C text of every case in gpu_cases compiles with nvcc for sm_90 (sm_90a with wgmma; no GPU needed),
and the CUDA runtime's checks that need no GPU give clear errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from gpu_cases import CASES, needs_nvcc

import sched_dsl as sd
from sched_dsl.lowering.host_plan import HostPlan, Launch
from sched_dsl.runtime.common import DeviceError, DeviceLimits, check_limits, compile_error, shared_bytes
from sched_dsl.runtime.cuda import source_arch

NVCC = shutil.which("nvcc")


def _lowered_all():
    return {c.id: sd.lower(*c.make(), target="cuda") for c in CASES}


@pytest.fixture(scope="module")
def lowered():
    return _lowered_all()


@pytest.fixture(scope="module")
def compiled(lowered, tmp_path_factory):
    """One nvcc run per case, all started at once: case id -> (returncode, log)."""
    tmp = tmp_path_factory.mktemp("cuda")
    procs = {}
    for cid, lw in lowered.items():
        src = tmp / f"{cid}.cu"
        src.write_text(lw.source)
        arch = source_arch(lw.source, "sm_90")
        procs[cid] = subprocess.Popen([NVCC, f"-arch={arch}", "--ptx", "-O1", str(src), "-o", str(tmp / f"{cid}.ptx")],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return {cid: (p.wait(), p.stdout.read()) for cid, p in procs.items()}


@needs_nvcc
@pytest.mark.parametrize("case", [c.id for c in CASES])
def test_cuda_text_compiles(case, lowered, compiled):
    rc, log = compiled[case]
    assert rc == 0, f"nvcc rejects the CUDA text of {case}:\n{log}\n{lowered[case].source}"
    assert "warning" not in log.lower(), log


def test_every_kernel_of_the_plan_is_in_the_text(lowered):
    for cid, lw in lowered.items():
        assert lw.source.count("__global__ void") == len(lw.plan.launches), cid
        assert lw.source.count("extern \"C\" {") == 1, cid
        for ln in lw.launches:
            assert f"__launch_bounds__({ln.threads}) v_{ln.kernel}(" in lw.source, cid


def test_shared_bytes_per_kernel(lowered):
    lw = lowered["matmul_register_blocked"]
    # 32x8 tile of A and 8x32 tile of B
    assert shared_bytes(lw.source) == {f"v_{lw.launches[0].kernel}": 4 * (32 * 8 + 8 * 32)}
    ocl = sd.lower(*[c for c in CASES if c.id == "matmul_register_blocked"][0].make(), target="opencl")
    assert shared_bytes(ocl.source) == shared_bytes(lw.source)


H200 = DeviceLimits("NVIDIA H200", 1024, (1024, 1024, 64), 48 * 1024, (2**31 - 1, 65535, 65535))


def _plan(grid, block):
    return HostPlan("main", (), (Launch("main_k", grid, block, ()),))


def test_limits_accept_a_legal_launch():
    check_limits(_plan((4, 4, 1), (32, 32, 1)), "", H200)


@pytest.mark.parametrize("grid, block, message", [
    ((1, 1, 1), (64, 32, 1), "2048 threads per block (64x32x1) exceed NVIDIA H200's limit of 1024"),
    ((1, 1, 1), (1, 1, 65), "block dimension z = 65 exceeds NVIDIA H200's limit of 64"),
    ((1, 70000, 1), (1, 1, 1), "grid dimension y = 70000 exceeds NVIDIA H200's limit of 65535"),
])
def test_limits_reject_a_launch_beyond_the_device(grid, block, message):
    with pytest.raises(DeviceError, match=re.escape(message)):
        check_limits(_plan(grid, block), "", H200)


def test_limits_reject_too_much_shared_memory():
    a = sd.placeholder("A", (256, 256))
    c = sd.matmul(a, sd.placeholder("B", (256, 256)))
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 16)
    s.reorder(io, ii, j, k)
    s.bind(io, "block.x")
    s.bind(ii, "thread.x")
    s.cache_read(c.inputs[1], "shared", at=io)  # all of B: 256 KiB
    lw = sd.lower(c, s, target="cuda")
    with pytest.raises(DeviceError, match=r"262144 bytes of shared memory per block exceed NVIDIA H200's limit of 49152"):
        check_limits(lw.plan, lw.source, H200)


@needs_nvcc
def test_compile_error_quotes_the_log_and_the_offending_line(tmp_path):
    source = 'extern "C" {\n__global__ void k(float* x) {\n  x[0] = undefined_name;\n}\n}\n'
    (tmp_path / "k.cu").write_text(source)
    p = subprocess.run([NVCC, "-arch=sm_90", "--ptx", str(tmp_path / "k.cu"), "-o", str(tmp_path / "k.ptx")],
                       capture_output=True, text=True)
    assert p.returncode != 0
    err = compile_error("nvcc", p.stderr, source)
    assert "undefined_name" in str(err) and "is undefined" in str(err)
    assert "line 3: x[0] = undefined_name;" in str(err)


def test_pycuda_missing_is_a_clear_error(monkeypatch):
    import sched_dsl.runtime.cuda as rt
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    rt.default_device.cache_clear()
    try:
        lw = sd.lower(sd.relu(sd.placeholder("X", (4,))), target="cuda")
        with pytest.raises(DeviceError, match=r"pycuda is not installed.*sched-dsl\[cuda\]"):
            rt.CudaKernel(lw.source, lw.plan)
    finally:
        rt.default_device.cache_clear()


def test_compiler_process_answers_with_a_clear_error_without_nvrtc():
    # NVRTC runs in a subprocess of its own; where cuda-python is missing (as here) it
    # answers with an error instead of a cubin, and the process stays usable
    from sched_dsl.runtime.cuda import _CompilerProcess, _has_nvrtc

    if _has_nvrtc():
        pytest.skip("NVRTC is installed here: tests/test_gpu_targets.py compiles through it")
    compiler = _CompilerProcess()
    for _ in range(2):
        with pytest.raises(DeviceError, match="NVRTC binding is not installed"):
            compiler.compile('extern "C" __global__ void k() {}', "sm_90")
    assert compiler.proc.poll() is None
    compiler.proc.kill()
