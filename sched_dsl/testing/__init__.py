"""Correctness tools: Hypothesis strategies and assert_equivalent (strategies.py), the
per-pass equivalence check (check.py) and its loop-IR interpreter (interp.py), fuzzing
(fuzz.py). `from sched_dsl import testing as sdt` gives the strategies' names."""

from sched_dsl.testing.strategies import (
    COVERAGE_KINDS,
    DTYPES,
    INDIRECT_KINDS,
    OPERATOR_KINDS,
    assert_equivalent,
    describe,
    inputs,
    loop_extents,
    operators,
    random_inputs,
    schedules,
    shapes,
    sizes,
    tolerance,
    tolerance_excess,
)

__all__ = ["COVERAGE_KINDS", "DTYPES", "INDIRECT_KINDS", "OPERATOR_KINDS", "assert_equivalent", "describe", "inputs",
           "loop_extents", "operators", "random_inputs", "schedules", "shapes", "sizes", "tolerance",
           "tolerance_excess"]
