"""Hostile inputs end in a clear error of ours (with a location where there is one), never in
a traceback, another library's exception, a hang or a silent wrong answer (issue 15, items
8-12). The last tests run a small slice of scripts/adversarial.py's generated cases."""

from __future__ import annotations

import json
import re

import pytest
from test_cli import MATMUL  # the matmul with a bound schedule the CLI tests use

from sched_dsl.cli.opt import sched_opt_main

PIPELINE = "tensorop-to-loops,apply-schedule,loops-to-gpu"


def opt(tmp_path, capsys, text: str | bytes, *args: str):
    """Runs sched-opt in this process on `text`; (exit code, stdout, stderr)."""
    path = tmp_path / "in.mlir"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    code = sched_opt_main([str(path), *args])
    out, err = capsys.readouterr()
    return code, out, err, str(path)


def nested_generic(depth: int) -> str:
    return '"builtin.module"() ({\n' * depth + "builtin.module {}\n" + "}) : () -> ()\n" * depth


def nested_custom(depth: int, op: str = "builtin.module") -> str:
    return f"{op} {{\n" * depth + "}\n" * depth


# -- item 8: sched-opt on deep, wide and undecodable input ---------------------------------------

@pytest.mark.parametrize("text", [nested_generic(100), nested_custom(200)], ids=["generic100", "custom200"])
def test_moderately_deep_nesting_is_read(tmp_path, capsys, text):
    code, out, err, _ = opt(tmp_path, capsys, text)
    assert code == 0, err
    assert out.count("builtin.module") >= 100


@pytest.mark.parametrize("text", [nested_generic(1000), nested_custom(1000), nested_custom(500, "sched.schedule"),
                                  "builtin.module attributes {x = " + "[" * 100_000 + "]" * 100_000 + "} {}\n"],
                         ids=["generic1000", "custom1000", "schedule500", "attribute100000"])
def test_too_deep_nesting_is_a_located_error(tmp_path, capsys, text):
    code, out, err, path = opt(tmp_path, capsys, text)
    assert code == 1, err
    assert out == ""
    assert err.startswith(f"{path}:") and "nested" in err, err
    assert "internal error" not in err and "Recursion" not in err


@pytest.mark.parametrize("width", [17179869184, 16777216])
def test_absurd_integer_width_is_a_located_error(tmp_path, capsys, width):
    code, _, err, path = opt(tmp_path, capsys, f"builtin.module attributes {{x = 5 : i{width}}} {{}}\n")
    assert code == 1
    assert f"{path}:1:" in err and str(width) in err and "16777215" in err, err


def test_wide_but_legal_integer_type_is_read(tmp_path, capsys):
    code, out, err, _ = opt(tmp_path, capsys, "builtin.module attributes {x = 5 : i4096} {}\n")
    assert code == 0, err
    assert "i4096" in out


def test_invalid_utf8_is_a_located_error(tmp_path, capsys):
    code, out, err, path = opt(tmp_path, capsys, b'builtin.module {\n  %x = \xff\xfe "x"\n}\n')
    assert code == 1
    assert err.startswith(f"{path}:2:8: error:") and "UTF-8" in err and "0xff" in err, err


def test_load_with_too_few_indices_is_a_located_error(tmp_path, capsys):
    # xDSL's memref.load verifier raises a plain Exception here, not a VerifyException
    text = """func.func @main(%A: memref<2xf32>, %B: memref<2x2xf32>) {
  %0 = arith.constant 0 : index
  %1 = memref.load %A[%0, %0] : memref<2xf32>
  memref.store %1, %B[%0, %0] : memref<2x2xf32>
  func.return
}
"""
    code, _, err, path = opt(tmp_path, capsys, text, "-p", "loops-to-gpu", "-t", "opencl")
    assert code == 1
    assert err.startswith(f"{path}:3:3: error: expected an index for each dimension"), err


def test_integer_literal_too_long_is_a_located_error(tmp_path, capsys):
    code, _, err, path = opt(tmp_path, capsys, "builtin.module attributes {x = " + "9" * 5000 + " : i64} {}\n")
    assert code == 1
    assert err.startswith(f"{path}:1:") and "internal error" not in err, err


def test_knob_of_a_huge_extent_verifies_at_once(tmp_path, capsys):
    text = """builtin.module {
  sched.schedule {
    %t = sched.knob "t" [4, 3] divisors of 9223372036854775806
  }
}
"""
    code, _, err, path = opt(tmp_path, capsys, text)
    assert code == 1
    assert f"{path}:3:" in err and "[4]" in err, err


# -- item 9: Python API misuse ends in our errors, naming the value --------------------------------

def matmul_schedule():
    import sched_dsl as sd

    A, B = sd.placeholder("A", (64, 32)), sd.placeholder("B", (32, 48))
    C = sd.matmul(A, B, name="C")
    return C, sd.Schedule(C)


@pytest.mark.parametrize("factor", [2**64, 2**63, 2.5, True, "4"], ids=["2**64", "2**63", "2.5", "True", "str"])
def test_split_factor_out_of_range_or_not_an_int(factor):
    from sched_dsl.schedule import ScheduleError

    _, s = matmul_schedule()
    with pytest.raises(ScheduleError, match=re.escape(repr(factor))):
        s.split(s.loop("i"), factor)


@pytest.mark.parametrize("fx, fy", [(2.5, 2), (2, 2**64), (0, 4), (4, None)])
def test_tile_factors_out_of_range_or_not_ints(fx, fy):
    from sched_dsl.schedule import ScheduleError

    _, s = matmul_schedule()
    i, j = s.loops("i", "j")
    with pytest.raises(ScheduleError, match="tile"):
        s.tile(i, j, fx, fy)


def test_split_factor_may_be_a_numpy_integer():
    import numpy as np

    import sched_dsl as sd

    C, s = matmul_schedule()
    s.split(s.loop("i"), np.int64(16))
    assert "sched.split %i by 16" in s.ir()
    assert "__kernel" in sd.lower(C, s).source


@pytest.mark.parametrize("name", ["a,b=3", "t=4", "", "1x", "a b", "x\n"])
def test_knob_name_must_be_an_identifier(name):
    from sched_dsl.schedule import ScheduleError

    _, s = matmul_schedule()
    with pytest.raises(ScheduleError, match="knob name"):
        s.knob(name, [2, 4])
    with pytest.raises(ScheduleError, match="knob name"):
        s.split_knob(name, 64)


@pytest.mark.parametrize("name", ["x\n", None, 3], ids=["newline", "None", "int"])
def test_placeholder_name_must_be_a_whole_identifier(name):
    import sched_dsl as sd

    with pytest.raises(ValueError, match="name"):
        sd.placeholder(name, (2,))
    with pytest.raises(ValueError, match="name"):
        sd.relu(sd.placeholder("X", (2,)), name=name if name is not None else "a b")


def test_stage_name_with_a_newline_is_refused_in_ir(tmp_path, capsys):
    text = MATMUL.replace('{name = "C"}', '{name = "C\\0A"}').replace('"C" "i"', '"C\\0A" "i"')
    code, _, err, path = opt(tmp_path, capsys, text, "-p", PIPELINE)
    assert code == 1 and err.startswith(f"{path}:3:"), err


@pytest.mark.parametrize("stride", [2**64, -(2**64)])
def test_operator_attribute_beyond_64_bits(stride):
    import sched_dsl as sd

    A, W = sd.placeholder("A", (1, 1, 8, 8)), sd.placeholder("W", (4, 1, 3, 3))
    with pytest.raises(sd.ShapeError, match=str(abs(stride))):
        sd.conv2d(A, W, stride=stride, name="C")


LONG_NAMES = """
import numpy as np, sched_dsl as sd
X = sd.placeholder("X", (1, 8))
Y = sd.relu(X, name="a" * 300)
s = sd.Schedule(Y)
s.fuse(*s.loops("d0", "d1"))
kernel = sd.build(Y, s)
longest = max(len(line.split("void ")[1].split("(")[0]) for line in kernel.source.splitlines() if "__kernel" in line)
x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
assert np.array_equal(kernel(x), np.maximum(x, 0)), "wrong answer"
print("longest kernel name", longest)
"""


def test_long_stage_names_give_kernel_names_the_device_takes(tmp_path):
    import subprocess
    import sys

    # PoCL aborts the process on kernel names of 253 characters or more: run it apart
    proc = subprocess.run([sys.executable, "-c", LONG_NAMES], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) <= 202


def test_knob_candidates_beyond_64_bits():
    from sched_dsl.schedule import ScheduleError

    _, s = matmul_schedule()
    with pytest.raises(ScheduleError, match=str(2**64)):
        s.knob("t", [2, 2**64])


def test_split_knob_of_a_huge_extent_is_refused_at_once():
    from sched_dsl.schedule import ScheduleError

    _, s = matmul_schedule()
    with pytest.raises(ScheduleError, match=str(2**62)):
        s.split_knob("t", 2**62)


@pytest.mark.parametrize("make", ["relu", "matmul"])
def test_tensor_larger_than_the_device_buffer_limit(make):
    import sched_dsl as sd
    from sched_dsl.runtime.common import DeviceError

    if make == "relu":  # 2**36 elements: 256 GiB
        Y = sd.relu(sd.placeholder("X", (2**36,)), name="Y")
    else:  # an input of 2**36 elements, a small output
        Y = sd.matmul(sd.placeholder("X", (2**18, 2**18)), sd.placeholder("W", (2**18, 4)), name="Y")
    with pytest.raises(DeviceError, match=r"buffer 'X' of 274877906944 bytes exceeds"):
        sd.build(Y)


# -- item 10: sched-run and load_onnx on malformed or huge models ----------------------------------

def onnx_model(nodes, inputs, outputs, initializers=(), opset=13):
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, f32, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, f32, s) for n, s in outputs], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def sched_run(tmp_path, capsys, model, *args):
    import onnx

    from sched_dsl.cli.run import main

    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    code = main([str(path), "--repeat", "1", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_reshape_with_a_shape_attribute_at_opset_4(tmp_path, capsys):
    from onnx import helper

    m = onnx_model([helper.make_node("Reshape", ["x"], ["y"], shape=[3, 4])], [("x", [2, 6])], [("y", [3, 4])], opset=4)
    code, out, err = sched_run(tmp_path, capsys, m)
    assert code == 0, err
    assert "output y: shape (3, 4)" in out


def test_reshape_without_its_shape_input(tmp_path, capsys):
    from onnx import helper

    m = onnx_model([helper.make_node("Reshape", ["x"], ["y"])], [("x", [2, 6])], [("y", [3, 4])])
    code, _, err = sched_run(tmp_path, capsys, m)
    assert code == 1
    assert "Reshape node 'y'" in err and "Traceback" not in err, err


def test_model_too_large_for_the_device(tmp_path, capsys):
    from onnx import helper

    shape = [2**18, 2**18]  # 2**36 elements: 256 GiB
    m = onnx_model([helper.make_node("Relu", ["x"], ["y"], name="act")], [("x", shape)], [("y", shape)])
    code, _, err = sched_run(tmp_path, capsys, m)
    assert code == 2
    assert "buffer '" in err and "exceeds" in err and "Traceback" not in err, err


def test_huge_conv_is_refused_before_its_schedule_is_worked_out():
    # a 2**40 row dimension: the conv's tile defaults once enumerated its divisors for ever
    import numpy as np
    from onnx import helper, numpy_helper

    import sched_dsl as sd
    from sched_dsl.runtime.common import DeviceError

    w = numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "w")
    m = onnx_model([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                   [("x", [1, 2, 2**40, 4])], [("c", [1, 3, 2**40, 4])], [w])
    with pytest.raises(DeviceError, match="buffer 'x' of 35184372088832 bytes exceeds"):
        sd.load_onnx(m)


def test_name_that_is_not_utf8_is_an_import_error():
    from onnx import helper

    import sched_dsl as sd
    from sched_dsl.graph.onnx_import import OnnxImportError

    m = onnx_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [4])], [("y", [4])])
    data = m.SerializeToString().replace(b"\x12\x01y", b"\x12\x01\xab").replace(b"\n\x01y", b"\n\x01\xab")
    with pytest.raises(OnnxImportError, match=r"name b'\\xab' is not UTF-8 text"):
        sd.load_onnx(type(m).FromString(data))


def test_truncated_initializer_names_the_tensor(tmp_path):
    import numpy as np
    from onnx import helper, numpy_helper

    import sched_dsl as sd
    from sched_dsl.graph.onnx_import import OnnxImportError

    w = numpy_helper.from_array(np.ones(4, np.float32), "weights")
    w.raw_data = w.raw_data[:7]
    m = onnx_model([helper.make_node("Add", ["x", "weights"], ["y"])], [("x", [4])], [("y", [4])], [w])
    with pytest.raises(OnnxImportError, match="initializer 'weights'"):
        sd.load_onnx(m)


# -- item 11: a pass given IR of the wrong level says so; only targets that work on our IR ----------


def lowered_to(tmp_path, capsys, passes: str) -> str:
    if not passes:
        return MATMUL
    code, out, err, _ = opt(tmp_path, capsys, MATMUL, "-p", passes)
    assert code == 0, err
    return out


@pytest.mark.parametrize("done, run, says", [
    ("", "loops-to-gpu", "operator level"),
    ("", "apply-schedule", "operator level"),
    ("tensorop-to-loops", "loops-to-gpu", "run apply-schedule first"),
    ("tensorop-to-loops", "tensorop-to-loops", "loop level"),
    ("tensorop-to-loops", "tensorop-fuse", "loop level"),
    ("tensorop-to-loops,apply-schedule,loops-to-gpu", "loops-to-gpu", "gpu level"),
    ("tensorop-to-loops,apply-schedule,loops-to-gpu", "apply-schedule", "gpu level"),
    ("tensorop-to-loops,apply-schedule,loops-to-gpu", "tensorop-to-loops", "gpu level"),
    ("tensorop-to-loops,apply-schedule,loops-to-gpu", "tensorop-place", "gpu level"),
])
def test_pass_given_ir_of_the_wrong_level(tmp_path, capsys, done, run, says):
    text = lowered_to(tmp_path, capsys, done)
    code, out, err, path = opt(tmp_path, capsys, text, "-p", run)
    assert code == 1, (out, err)
    assert out == ""
    assert err.startswith(f"{path}:") and f"{run}:" in err and says in err, err


def test_targets_are_only_those_that_work_on_our_ir(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:  # argparse's usage error
        opt(tmp_path, capsys, MATMUL, "-t", "mps")
    assert exit.value.code == 2
    assert "choose from mlir, opencl, cuda" in capsys.readouterr().err
    text = lowered_to(tmp_path, capsys, "tensorop-to-loops,apply-schedule,loops-to-gpu")
    for target, marker in (("mlir", "gpu.module"), ("opencl", "__kernel"), ("cuda", "__global__")):
        code, out, err, _ = opt(tmp_path, capsys, text, "-t", target)
        assert code == 0 and marker in out, err


# -- a slice of scripts/adversarial.py (the long run is documented in docs/robustness.md) -------------

def harness():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "adversarial.py"
    spec = importlib.util.spec_from_file_location("adversarial", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cls, n", [("ir", 16), ("api", 12), ("onnx", 8), ("records", 16), ("kernels", 3)])
def test_adversarial_slice(cls, n):
    adv = harness()
    counts, failures = adv.run([cls], {cls: n}, seed=0, timeout=120, save=None)
    assert counts[cls]["cases"] == n
    assert counts[cls]["ok"] + counts[cls]["error"] == n, "\n\n".join(
        f"{f['outcome']}: {f['detail']}\n{json.dumps({k: v for k, v in f.items() if k not in ('detail', 'bytes')})}"
        for f in failures)


def test_harness_tells_our_errors_from_other_libraries():
    adv = harness()
    from sched_dsl.schedule import ScheduleError

    def raised(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            return adv.classify(e)

    def schedule_error():
        raise ScheduleError("split of 'i': factor must be an int >= 1 or a knob, got 0")

    assert raised(schedule_error) == "error"
    assert raised(lambda: int("x")) == "traceback"  # a ValueError, but not raised by our code
    assert raised(lambda: [][1]) == "traceback"
    import sched_dsl as sd
    assert raised(lambda: sd.placeholder("a b", (2,))) == "error"  # ValueError raised in sched_dsl


# -- item 12: a kernel that never finishes is stopped with a clear error, not a silent hang -----------

HANGING_KERNEL = r"""
import os, re, numpy as np, sched_dsl as sd
from sched_dsl.runtime.opencl import OpenCLKernel
low = sd.lower(sd.relu(sd.placeholder("X", (4,)), name="Y"))
# the kernel spins on its input (volatile: the compiler may not drop the loop)
spin = "volatile __global float* spin = v_X; while (spin[0] == spin[0]) {}"
source = re.sub(r"(__kernel[^{]*\{)", lambda m: m.group(1) + spin, low.source, count=1)
kernel = OpenCLKernel(source, low.plan)  # built under the default limit (a busy machine builds slowly)
os.environ["SCHED_DSL_KERNEL_TIMEOUT"] = "3"
kernel.run(np.ones(4, np.float32))
print("finished")
"""


def stopped_by_the_watchdog(script: str, cwd, timeout: int):
    """Runs `script` in a fresh interpreter, which the watchdog must stop (exit 124) before it
    prints "finished"; returns the finished process."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert proc.returncode == 124, proc.stderr
    assert "finished" not in proc.stdout
    return proc


def test_a_kernel_that_never_finishes_stops_the_process_with_an_error(tmp_path):
    proc = stopped_by_the_watchdog(HANGING_KERNEL, tmp_path, 300)
    assert "kernel main_Y on" in proc.stderr and "did not finish within 3 s" in proc.stderr
    assert "SCHED_DSL_KERNEL_TIMEOUT" in proc.stderr and "Traceback" not in proc.stderr


def test_kernel_timeout_setting(monkeypatch):
    from sched_dsl.runtime.common import DeviceError, kernel_timeout

    monkeypatch.delenv("SCHED_DSL_KERNEL_TIMEOUT", raising=False)
    assert kernel_timeout() == 600
    monkeypatch.setenv("SCHED_DSL_KERNEL_TIMEOUT", "0")
    assert kernel_timeout() is None
    monkeypatch.setenv("SCHED_DSL_KERNEL_TIMEOUT", "soon")
    with pytest.raises(DeviceError, match="SCHED_DSL_KERNEL_TIMEOUT='soon'"):
        kernel_timeout()


NESTED_WATCHES = """
import os, time
from sched_dsl.runtime.common import _WATCHER, watchdog
for _ in range(100):
    with watchdog("a quick call"):
        pass
assert not _WATCHER.deadlines, _WATCHER.deadlines
with watchdog("the outer call"):  # the watcher now sleeps until this one's deadline
    os.environ["SCHED_DSL_KERNEL_TIMEOUT"] = "1"
    with watchdog("the inner call"):  # an earlier deadline must wake it
        time.sleep(30)
print("finished")
"""


def test_an_earlier_deadline_inside_a_later_one_still_stops_the_process(tmp_path):
    proc = stopped_by_the_watchdog(NESTED_WATCHES, tmp_path, 120)
    assert "the inner call did not finish within 1 s" in proc.stderr
