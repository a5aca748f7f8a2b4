"""A fast slice of the fuzzing (scripts/fuzz.py is the long run): malformed IR, mutated IR
at every pipeline level and illegal schedules end in exit 0 or a diagnostic with exit 1,
never a traceback or a hang; hostile names cannot put text into a kernel."""

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from sched_dsl.testing import fuzz
from sched_dsl.testing.check import check_each_pass
from sched_dsl.context import make_context
from sched_dsl.lowering.host_plan import c_name
from sched_dsl.lowering.pipeline import DEFAULT_PIPELINE

SCHED_OPT = str(Path(sys.executable).parent / "sched-opt")
FAST = settings(max_examples=300, deadline=None, database=None, phases=[Phase.generate], derandomize=True,
                suppress_health_check=list(HealthCheck))


def check(outcome: fuzz.Outcome, text: str) -> None:
    assert not outcome.bad, f"{outcome.kind} for input:\n{text}\n---\n{outcome.output}"
    if outcome.kind == "diagnostic":
        assert outcome.output.strip()


@FAST
@given(fuzz.cases("malformed"))
def test_malformed_text_gets_a_located_diagnostic(case):
    text, args = case
    o = fuzz.run_case(text, args)
    check(o, text)
    if o.kind == "diagnostic":
        assert o.located, o.output


@FAST
@given(fuzz.cases("mutation"))
def test_mutated_ir_never_ends_in_a_traceback(case):
    text, args = case
    check(fuzz.run_case(text, args), text)


@FAST
@given(fuzz.cases("schedule"))
def test_illegal_schedules_get_a_diagnostic(case):
    text, args = case
    check(fuzz.run_case(text, args), text)


def test_a_case_past_its_time_limit_is_a_hang(monkeypatch):
    monkeypatch.setattr(fuzz, "sched_opt_main", lambda args: time.sleep(5))
    assert fuzz.run_case("", [], timeout=0.2).kind == "hang"


def test_an_internal_error_is_a_traceback(monkeypatch):
    def crash(args):
        raise RuntimeError("bug")
    monkeypatch.setattr(fuzz, "sched_opt_main", crash)
    assert fuzz.run_case("", []).kind == "traceback"


# ---- real processes --------------------------------------------------------------------------------

MM = """builtin.module {
  func.func @main(%A: tensor<4x4xf32>, %B: tensor<4x4xf32>) -> tensor<4x4xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
    func.return %C : tensor<4x4xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    sched.bind %i "thread.x"
  }
}
"""

PROCESS_CASES = {
    "token_soup": "builtin.module { func.func @main( %A : -> sched.split by }",
    "bad_split": MM.replace('sched.bind %i "thread.x"', "%a, %b = sched.split %i by 0"),
    "bind_twice": MM.replace('sched.bind %i "thread.x"', 'sched.bind %i "thread.x"\n    sched.bind %i "block.x"'),
    "hostile_stage_name": MM.replace('name = "C"', r'name = "C*/\n#error x\n/*"'),
    "truncated": MM[:150],
}


@pytest.mark.parametrize("case", sorted(PROCESS_CASES))
def test_sched_opt_process_reports_a_diagnostic(tmp_path, case):
    path = tmp_path / "in.mlir"
    path.write_text(PROCESS_CASES[case])
    r = subprocess.run([SCHED_OPT, str(path), "-p", DEFAULT_PIPELINE, "-t", "opencl"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert re.search(r"in\.mlir:\d+:\d+", r.stderr), r.stderr


# ---- names cannot inject text into kernels ---------------------------------------------------------


@pytest.mark.parametrize("name", fuzz.HOSTILE + ["a\nb", "x */ #define y", "\x00", "é", "1a"])
def test_c_name_is_a_plain_prefixed_identifier(name):
    assert re.fullmatch(r"[vx]_[A-Za-z0-9_]+", c_name(name, "t"))


def test_hostile_stage_name_is_a_located_verifier_error():
    text = MM.replace('name = "C"', r'name = "C */ #define float int"')
    o = fuzz.run_case(text, ["-p", DEFAULT_PIPELINE, "-t", "opencl"])
    assert o.kind == "diagnostic" and o.located
    assert "must be an identifier" in o.output


# value names use every character the IR allows; all become distinct C names, and so do the
# kernels of softmax "s" (main_s_max for its stage s.max) and of stage "s_max"
ODD_NAMES = """builtin.module {
  func.func @main(%a.b: tensor<3x5xf32>, %a_b: tensor<3x5xf32>, %a$b: tensor<3x5xf32>, %a-b: tensor<3x5xf32>, %int: tensor<3x5xf32>) -> tensor<3x5xf32> {
    %x = tensorop.binary %a.b, %a_b {name = "q", fn = "sub"} : (tensor<3x5xf32>, tensor<3x5xf32>) -> tensor<3x5xf32>
    %y = tensorop.binary %x, %a$b {name = "s_max", fn = "div"} : (tensor<3x5xf32>, tensor<3x5xf32>) -> tensor<3x5xf32>
    %z = tensorop.binary %y, %a-b {name = "v_a_b", fn = "max"} : (tensor<3x5xf32>, tensor<3x5xf32>) -> tensor<3x5xf32>
    %w = tensorop.softmax %z {name = "s", axis = 1 : i64} : (tensor<3x5xf32>) -> tensor<3x5xf32>
    %o = tensorop.binary %w, %int {name = "float", fn = "mul"} : (tensor<3x5xf32>, tensor<3x5xf32>) -> tensor<3x5xf32>
    func.return %o : tensor<3x5xf32>
  }
}
"""


def test_odd_value_names_give_distinct_c_names_and_right_results():
    from xdsl.parser import Parser

    module = Parser(make_context(), ODD_NAMES).parse_module()
    results = check_each_pass(module, DEFAULT_PIPELINE)  # runs the OpenCL text too
    assert all(r.ok for r in results) and results[-1].level == "text"
    from sched_dsl.testing.check import print_opencl
    source = print_opencl(module)
    params = re.findall(r"__global float\* restrict (\w+)", source.split("v_main_float(")[1].split(")")[0])
    assert len(params) == len(set(params))
    assert np.isfinite(results[-1].max_error)


# ---- bugs the fuzzing found, each once -------------------------------------------------------------

SPLIT_AFTER_CACHE = MM.replace('sched.bind %i "thread.x"', 'sched.cache_write "local" at %i\n    %a, %b = sched.split %i by 2')
LOOP_IR = """builtin.module {
  func.func @main(%A: memref<4xf32>, %B: memref<4xf32>) attributes {sched.arg_names = ["A", "B"], sched.num_inputs = 1 : i64} {
    %0 = arith.constant 0 : index
    %1 = arith.constant 4 : index
    %2 = arith.constant 1 : index
    scf.for %d0 = %0 to %1 step %2 {
      %3 = memref.load %A[%d0] : memref<4xf32>
      memref.store %3, %B[%d0] : memref<4xf32>
    } {sched.stage = "copy", sched.axis = "d0", sched.bind = "thread.x"}
    func.return
  }
}
"""
FOUND = {
    "split_after_cache_write": (SPLIT_AFTER_CACHE, DEFAULT_PIPELINE, ":8:5: error: sched.cache_write: stage 'C': loop 'i' is split"),
    "unknown_bind_tag": (LOOP_IR.replace('"thread.x"', '"#define"'), "loops-to-gpu",
                         ':6:5: error: loops-to-gpu: loop bound to "#define"'),
    "value_used_before_definition": (LOOP_IR.replace("    %0 = arith.constant 0 : index\n", "").replace(
        "step %2 {\n", "step %2 {\n      %0 = arith.constant 0 : index\n"),
        "loops-to-gpu", ":5:5: error: scf.for: operand 0 is used before it is defined"),
    "region_without_terminator": (LOOP_IR.replace("    func.return\n", ""), "loops-to-gpu",
                                  "terminates block in single-block region but is not a terminator"),
    "terminator_of_another_op": (LOOP_IR.replace("      memref.store %3, %B[%d0] : memref<4xf32>\n",
                                                 "      memref.store %3, %B[%d0] : memref<4xf32>\n      func.return\n"),
                                 "loops-to-gpu", "terminates with operation func.return instead of scf.yield"),
    "self_referring_split": (MM.replace('sched.bind %i "thread.x"', "%a, %b = sched.split %a by 2"), DEFAULT_PIPELINE,
                             ":8:5: error: sched.split: %a is used before it is defined"),
    "loop_of_no_iterations": (LOOP_IR.replace("%1 = arith.constant 4", "%1 = arith.constant 0"), "apply-schedule",
        "loops must run from 0 by 1 to a constant of at least 1"),
    "body_without_store": (LOOP_IR.replace("      memref.store %3, %B[%d0] : memref<4xf32>\n", ""),
                           "apply-schedule", "the innermost body must store the stage's output once, not 0 times"),
    "stage_attribute_not_a_string": (LOOP_IR.replace('sched.stage = "copy"', "sched.stage = 3"), "loops-to-gpu",
                                     "sched.stage must be a string"),
    "bound_loop_to_a_variable": (LOOP_IR.replace("scf.for %d0 = %0 to %1", "scf.for %d0 = %0 to %2").replace(
        "%2 = arith.constant 1 : index", "%2 = arith.addi %1, %0 : index"), "loops-to-gpu",
        "a bound loop must run from 0 by 1 to a constant"),
    "axis_name_not_a_name": (LOOP_IR.replace('sched.axis = "d0"', 'sched.axis = "/*"'), "apply-schedule",
                             "every loop of the nest needs a sched.axis name"),
    "kernel_uses_a_host_value": (LOOP_IR.replace("memref.store %3, %B[%d0]", "memref.store %3, %B[%1]")
                                 .replace("%1 = arith.constant 4 : index", "%1 = arith.addi %2, %2 : index")
                                 .replace("to %1 step", "to %2 step"), "loops-to-gpu",
                                 ":8:7: error: loops-to-gpu: memref.store in stage 'copy' uses a value computed outside"),
}


def test_unterminated_string_is_rejected_in_linear_time():
    # xDSL's own string pattern backtracks exponentially on this (minutes for 60 characters)
    o = fuzz.run_case('"' + "a b " * 5000, ["-p", DEFAULT_PIPELINE], timeout=10)
    assert o.kind == "diagnostic" and "closing string literal" in o.output


@pytest.mark.parametrize("case", sorted(FOUND))
def test_found_by_fuzzing_ends_in_a_located_diagnostic(case):
    text, pipeline, message = FOUND[case]
    o = fuzz.run_case(text, ["-p", pipeline, "-t", "opencl"])
    assert o.kind == "diagnostic" and o.located, o.output
    assert message in o.output, o.output
    assert fuzz.run_case(LOOP_IR, ["-p", "loops-to-gpu", "-t", "opencl"]).kind == "ok"
