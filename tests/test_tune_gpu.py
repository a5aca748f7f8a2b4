"""The tuner on an NVIDIA GPU through the CUDA target: measuring (cubins compiled in the build
pool), every error class through injected faults, and sd.build(records=...). Skips, saying why,
without a CUDA device; tests/test_tune.py covers the same on OpenCL (PoCL on CPU machines)."""

from __future__ import annotations

import numpy as np
import pytest
from test_gpu_targets import unavailable
from tune_spaces import fault_space, matmul_space

import sched_dsl as sd
from sched_dsl import records as R

pytestmark = pytest.mark.skipif(unavailable("cuda") is not None, reason=str(unavailable("cuda")))


def test_tune_on_cuda_and_build_the_best(tmp_path):
    c, s = matmul_space(64, 64, 32)
    path = tmp_path / "cuda.jsonl"
    result = sd.tune(c, s, target="cuda", trials=8, records=str(path), batch=4, workers=2)
    assert result.trials == 8 and result.best_ms > 0 and not result.errors.get("wrong_answer")
    assert all(r.workload.split("|")[2] == "cuda" for r in R.load(str(path)))
    kern = sd.build(c, s, target="cuda", records=str(path))
    a, b = np.random.rand(64, 32).astype(np.float32), np.random.rand(32, 64).astype(np.float32)
    np.testing.assert_allclose(kern(a, b), a @ b, rtol=1e-4)


def test_every_error_class_on_cuda(tmp_path):
    c, s = fault_space()
    path = tmp_path / "faults.jsonl"
    result = sd.tune(c, s, target="cuda", trials=8, records=str(path), strategy="random", batch=9,
                     hook="tune_faults:inject", workers=2, repeat=1, warmup=0, timeout=10.0, build_timeout=10.0)
    by_t = {r.config["t"]: r.error for r in R.load(str(path))}
    assert by_t == {2: "compile_error", 4: "runtime_error", 8: "wrong_answer", 16: "timeout", 32: "runtime_error",
                    64: None, 128: None, 256: "timeout", 8192: "invalid"}
    assert result.best_config in ({"t": 64}, {"t": 128})
