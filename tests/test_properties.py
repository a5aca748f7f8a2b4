"""Property tests: every operator kind, at random small shapes, under random legal
schedules, gives on the OpenCL device what the numpy reference gives.

The number of examples per operator is PROPERTY_EXAMPLES below; set SCHED_DSL_EXAMPLES to
run more. A failure prints the operator, the schedule IR, the worst element and a
reproduction blob.
"""

import os
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sched_dsl import testing as sdt

PROPERTY_EXAMPLES = 25

settings.register_profile(
    "sched-dsl-properties",
    max_examples=int(os.environ.get("SCHED_DSL_EXAMPLES", PROPERTY_EXAMPLES)),
    # the same examples on every run (a suite that passes stays green); SCHED_DSL_RANDOM_EXAMPLES=1
    # draws new ones, which is how the searches find bugs (docs/testing.md)
    derandomize=not os.environ.get("SCHED_DSL_RANDOM_EXAMPLES"),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
properties = settings.get_profile("sched-dsl-properties")


@pytest.mark.parametrize("kind", sdt.OPERATOR_KINDS)
@properties
@given(data=st.data())
def test_scheduled_operator_matches_reference(kind, data):
    check_drawn(data, kind)


def check_drawn(data, kind: str, dtype: str = "f32") -> None:
    """Draws an operator of `kind` in `dtype`, a legal schedule and inputs; the built kernel
    matches the operator's numpy meaning."""
    out = data.draw(sdt.operators(kind, dtype), label="operator")
    schedule = data.draw(sdt.schedules(out), label="schedule")
    values = data.draw(sdt.inputs(out), label="inputs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyopencl's notes on kernel retrieval
        sdt.assert_equivalent(out, schedule, inputs=values)


@pytest.mark.parametrize("kind", sdt.OPERATOR_KINDS)
@properties
@given(data=st.data())
def test_schedules_lower_to_cuda(kind, data):
    """The CUDA printer accepts every schedule the OpenCL one does (no device needed)."""
    import sched_dsl as sd

    out = data.draw(sdt.operators(kind), label="operator")
    source = sd.lower(out, data.draw(sdt.schedules(out), label="schedule"), target="cuda").source
    assert "__global__" in source


# reduced precision: every operator in f16 and bf16 (and matmul/conv2d at tf32 and 3xtf32), compared
# within the tolerance derived from the element types (sdt.tolerance, docs/precision.md)
PRECISION_EXAMPLES = 6
precision_properties = settings(properties, max_examples=int(os.environ.get("SCHED_DSL_EXAMPLES", PRECISION_EXAMPLES)))
PRECISION_CASES = [(k, d) for d in ("f16", "bf16") for k in sdt.OPERATOR_KINDS] + [
    ("matmul", "tf32"), ("conv2d", "tf32"), ("matmul", "3xtf32"), ("conv2d", "3xtf32")]


@pytest.mark.parametrize("kind,dtype", PRECISION_CASES)
@precision_properties
@given(data=st.data())
def test_reduced_precision_operator_matches_reference(kind, dtype, data):
    check_drawn(data, kind, dtype)


# the operators of the ONNX coverage (batched matmul, remap, gather, normalize,
# conv_transpose2d, resize) under random legal schedules: fewer examples, as they join late
COVERAGE_EXAMPLES = 8
coverage_properties = settings(properties, max_examples=int(os.environ.get("SCHED_DSL_EXAMPLES", COVERAGE_EXAMPLES)))


@pytest.mark.parametrize("kind", sdt.COVERAGE_KINDS)
@coverage_properties
@given(data=st.data())
def test_scheduled_coverage_operator_matches_reference(kind, data):
    check_drawn(data, kind)
