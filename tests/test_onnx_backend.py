"""The onnx wheel's backend test data on PoCL: every operator case within sched-dsl's operator
families imports and matches its expected outputs; every case outside them (3-D convolutions
and pooling, float64, integer arithmetic, sequences, strings, training operators, shapes known
only at run time) is an import error naming the operator or input and the reason, never a
traceback. The light models (full-size ImageNet networks whose weights are ConstantOfShape
nodes) run as shipped: AlexNet here; all nine with

    SCHED_DSL_ONNX_FULL=1 .venv/bin/python -m pytest tests/test_onnx_backend.py

(docs/coverage.md has the table).
"""

import os

import pytest

from sched_dsl.testing.onnx_backend import OUTSIDE, light_cases, operator_cases, run_case

FULL = os.environ.get("SCHED_DSL_ONNX_FULL") == "1"
CI_LIGHT = {"light_bvlc_alexnet"}  # LRN, Dropout's mask, Gemm, folded ConstantOfShape weights

CASES = operator_cases()


def test_the_data_is_there():
    """The onnx wheel ships the cases (an empty list would pass every test below)."""
    assert len(CASES) > 100
    assert {c.name for c in CASES} >= set(OUTSIDE)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_operator_case(case):
    r = run_case(case)
    if case.outside is not None:
        assert r.status == "unsupported", f"{case.name} is listed as outside but ran ({r.status})"
        assert case.outside in r.message and "Traceback" not in r.message
    else:
        assert r.status == "pass", f"{case.name}: {r.status}: {r.message}"


@pytest.mark.parametrize("case", light_cases(), ids=[c.name for c in light_cases()])
def test_light_model(case):
    if case.name not in CI_LIGHT and not FULL:
        pytest.skip("a full-size network: SCHED_DSL_ONNX_FULL=1 runs all nine (see docs/coverage.md)")
    r = run_case(case)
    assert r.status == "pass", f"{case.name}: {r.status}: {r.message}"
