"""sched-opt's exit codes and error output, and sched-dsl's registration with plain xdsl-opt."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SCHED_OPT = str(BIN / "sched-opt")
XDSL_OPT = str(BIN / "xdsl-opt")
PIPELINE = "tensorop-to-loops,apply-schedule,loops-to-gpu"

MATMUL = """builtin.module {
  func.func @main(%A: tensor<64x32xf32>, %B: tensor<32x48xf32>) -> tensor<64x48xf32> {
    %C = tensorop.matmul %A, %B {name = "C"} : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    func.return %C : tensor<64x48xf32>
  }
  sched.schedule {
    %i = sched.loop "C" "i"
    %io, %ii = sched.split %i by 16
    sched.bind %io "block.x"
    sched.bind %ii "thread.x"
  }
}
"""


def run(exe, path, *args):
    return subprocess.run([exe, str(path), *args], capture_output=True, text=True, timeout=120)


def write(tmp_path, text, name="in.mlir"):
    path = tmp_path / name
    path.write_text(text)
    return path


MALFORMED = {
    "truncated": MATMUL[: MATMUL.index("sched.schedule")],
    "unknown_op": MATMUL.replace("tensorop.matmul", "tensorop.matmult"),
    "missing_property": MATMUL.replace('{name = "C"}', ""),
    "bad_handle_arity": MATMUL.replace("%io, %ii = sched.split", "%io = sched.split"),
    "undefined_value": MATMUL.replace("sched.bind %ii", "sched.bind %jj"),
    "garbage": "this is not IR at all }}}",
    "empty_split_factor": MATMUL.replace("by 16", "by"),
    "wrong_result_type": MATMUL.replace("-> tensor<64x48xf32>\n    func", "-> tensor<64x47xf32>\n    func"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_exits_1_without_traceback(tmp_path, case):
    proc = run(SCHED_OPT, write(tmp_path, MALFORMED[case]), "-p", PIPELINE, "-t", "opencl")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "in.mlir:" in proc.stderr  # the error says where
    assert proc.stdout == ""


BAD_SCHEDULES = {
    "factor": ("by 16", "by 0", "error: sched.split: factor must be >= 1, got 0", 8),
    "unknown_axis": ('"C" "i"', '"C" "q"', "error: sched.loop: stage 'C' has no loop 'q'", 7),
    "reduction_bind": ('"C" "i"', '"C" "k"', "error: sched.bind: cannot bind reduction loop 'io' to block.x", 9),
}


@pytest.mark.parametrize("case", sorted(BAD_SCHEDULES))
def test_schedule_error_is_one_located_line(tmp_path, case):
    old, new, message, line = BAD_SCHEDULES[case]
    proc = run(SCHED_OPT, write(tmp_path, MATMUL.replace(old, new)), "-p", PIPELINE)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{tmp_path / 'in.mlir'}:{line}:5: ")
    assert message in lines[0]


def test_usage_errors_exit_1(tmp_path):
    path = write(tmp_path, MATMUL)
    for args in (["-p", "no-such-pass"], ["-p", 'apply-schedule{config="t=x"}']):
        proc = run(SCHED_OPT, path, *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    proc = run(SCHED_OPT, tmp_path / "missing.mlir")
    assert proc.returncode == 1
    assert "No such file" in proc.stderr and "Traceback" not in proc.stderr


def test_good_input_exits_0(tmp_path):
    proc = run(SCHED_OPT, write(tmp_path, MATMUL), "-p", PIPELINE, "-t", "opencl")
    assert proc.returncode == 0, proc.stderr
    assert "__kernel" in proc.stdout and proc.stderr == ""


def test_xdsl_opt_lists_our_passes_and_targets():
    proc = subprocess.run([XDSL_OPT, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    help_text = "".join(proc.stdout.split())  # argparse wraps the lists
    for name in ("tensorop-to-loops", "apply-schedule", "loops-to-gpu", "opencl", "cuda"):
        assert name in help_text


@pytest.mark.parametrize("target, marker", [("opencl", "__kernel"), ("cuda", "__global__")])
def test_xdsl_opt_runs_our_pipeline(tmp_path, target, marker):
    proc = run(XDSL_OPT, write(tmp_path, MATMUL), "-p", PIPELINE, "-t", target)
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout
    assert "launch main_C grid=(4, 1, 1) block=(16, 1, 1)" in proc.stdout


def test_xdsl_opt_parses_our_dialects(tmp_path):
    proc = run(XDSL_OPT, write(tmp_path, MATMUL))
    assert proc.returncode == 0, proc.stderr
    assert "tensorop.matmul" in proc.stdout and "sched.split %i by 16" in proc.stdout
