"""check_each_pass and `sched-opt --check-each-pass`: a deliberately broken pass at each
level (tensorop, loops, gpu, emitted text) is caught and named; the interpreter's SPMD
meaning of thread loops and barriers."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xdsl.dialects import arith, gpu, scf
from xdsl.dialects.builtin import IntegerAttr, ModuleOp
from xdsl.parser import Parser
from xdsl.passes import ModulePass

import sched_dsl as sd
from sched_dsl import testing as sdt
from sched_dsl.testing.check import (
    TEXT_STAGE,
    EquivalenceError,
    _arg_names,
    _num_inputs,
    check_each_pass,
    evaluate,
    host_function,
    print_opencl,
    summary,
)
from sched_dsl.cli.opt import SchedOptMain, sched_opt_main
from sched_dsl.context import make_context
from sched_dsl.dialects import tensorop as T
from sched_dsl.testing.interp import BudgetExceeded, Interpreter, InterpError
from sched_dsl.lowering.emit import INDEX
from sched_dsl.lowering.pipeline import DEFAULT_PIPELINE, PASSES


def shared_matmul(threads_outside: bool) -> sd.Schedule:
    """8x8 relu(A) @ B in 4x4 tiles, B cached in shared memory per k tile. With the thread
    loops outside the k tile loop, apply-schedule puts barriers inside thread loops."""
    a, b = sd.placeholder("A", (8, 8)), sd.placeholder("B", (8, 8))
    c = sd.matmul(sd.relu(a), b)
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 4)
    jo, ji = s.split(j, 4)
    ko, ki = s.split(k, 4)
    s.reorder(io, jo, ii, ji, ko, ki) if threads_outside else s.reorder(io, jo, ko, ii, ji, ki)
    s.bind(io, "block.y"), s.bind(jo, "block.x"), s.bind(ii, "thread.y"), s.bind(ji, "thread.x")
    s.cache_read(b, "shared", at=ko)
    return s


def module(threads_outside: bool = True) -> ModuleOp:
    return shared_matmul(threads_outside).module()


def default_passes() -> list[ModulePass]:
    return [PASSES[n]() for n in DEFAULT_PIPELINE.split(",")]


# ---- deliberately broken passes ---------------------------------------------------------------


class SwapSubOperands(ModulePass):
    """tensorop level: a - b becomes b - a."""
    name = "swap-sub-operands"

    def apply(self, ctx, m):
        for op in m.walk():
            if isinstance(op, T.BinaryOp) and op.fn.data == "sub":
                op.operands = [op.operands[1], op.operands[0]]


class ReductionBoundOffByOne(ModulePass):
    """loops level: every reduction loop stops `delta` early (or late)."""
    name = "reduction-bound-off-by-one"
    delta = -1

    def apply(self, ctx, m):
        for op in list(m.walk()):
            if isinstance(op, scf.ForOp) and "sched.reduce" in op.attributes:
                bound = arith.ConstantOp(IntegerAttr(op.ub.owner.value.value.data + self.delta, INDEX))
                op.parent_block().insert_op_before(bound, op)
                op.operands = [op.lb, bound.result, op.step, *op.iter_args]
                return


class ReductionBoundOverrun(ReductionBoundOffByOne):
    name = "reduction-bound-overrun"
    delta = 1


class DropBarriers(ModulePass):
    """loops or gpu level: removes every gpu.barrier."""
    name = "drop-barriers"

    def apply(self, ctx, m):
        for op in list(m.walk()):
            if isinstance(op, gpu.BarrierOp):
                op.detach()
                op.erase()


class WrongBlockIndex(ModulePass):
    """gpu level: every kernel reads block.x where it meant block.y."""
    name = "wrong-block-index"

    def apply(self, ctx, m):
        for op in list(m.walk()):
            if isinstance(op, gpu.BlockIdOp) and op.dimension.data.value == "y":
                new = gpu.BlockIdOp(gpu.DimensionAttr(gpu.DimensionEnum("x")))
                op.parent_block().insert_op_before(new, op)
                op.results[0].replace_all_uses_with(new.results[0])
                op.detach()
                op.erase()


def caught(steps, m=None, **kw) -> EquivalenceError:
    with pytest.raises(EquivalenceError) as info:
        check_each_pass(m or module(), steps, **kw)
    return info.value


# ---- the check at every level --------------------------------------------------------------------


@pytest.mark.parametrize("threads_outside", [True, False])
def test_default_pipeline_is_equivalent_at_every_level(threads_outside):
    results = check_each_pass(module(threads_outside), DEFAULT_PIPELINE)
    assert [(r.name, r.level) for r in results] == [
        ("tensorop-to-loops", "loops"), ("apply-schedule", "loops"), ("loops-to-gpu", "gpu"), (TEXT_STAGE, "text")]
    assert all(r.ok and r.max_error < 1e-4 for r in results)


def test_broken_tensorop_pass_is_named():
    a, b = sd.placeholder("A", (3, 5)), sd.placeholder("B", (3, 5))
    m = sd.Schedule(sd.sub(a, b)).module()
    e = caught([SwapSubOperands(), *default_passes()], m)
    assert e.stage == "swap-sub-operands"
    assert "(tensorop level)" in str(e)
    assert [r.ok for r in e.results] == [False]


def test_off_by_one_loop_bound_is_named_with_inputs_values_and_ir():
    steps = default_passes()
    steps.insert(1, ReductionBoundOffByOne())
    e = caught(steps)
    assert e.stage == "reduction-bound-off-by-one"
    text = str(e)
    assert "(loops level)" in text and "elements of 'matmul' differ" in text
    for part in ("inputs:\n  A =", "\n  B =", "expected:\n  matmul =", "actual:\n  matmul =",
                 "IR before reduction-bound-off-by-one:", "IR after reduction-bound-off-by-one:"):
        assert part in text
    before, after = text.split("IR after reduction-bound-off-by-one:")
    assert "arith.constant 7 : index" in after and "arith.constant 7 : index" not in before.split("IR before")[1]
    assert [r.name for r in e.results] == ["tensorop-to-loops", "reduction-bound-off-by-one"]


def test_out_of_bounds_access_is_named():
    steps = default_passes()
    steps.insert(1, ReductionBoundOverrun())
    e = caught(steps)
    assert e.stage == "reduction-bound-overrun"
    assert "out of bounds" in str(e)


def test_dropped_barrier_is_caught_at_loop_level():
    steps = default_passes()
    steps.insert(2, DropBarriers())  # after apply-schedule: barriers inside thread loops
    e = caught(steps, module(threads_outside=True))
    assert (e.stage, e.results[-1].level) == ("drop-barriers", "loops")


@pytest.mark.parametrize("threads_outside", [True, False])
def test_dropped_barrier_is_caught_at_gpu_level(threads_outside):
    e = caught([*default_passes(), DropBarriers()], module(threads_outside))
    assert (e.stage, e.results[-1].level) == ("drop-barriers", "gpu")


def test_wrong_block_index_is_caught_at_gpu_level():
    e = caught([*default_passes(), WrongBlockIndex()])
    assert (e.stage, e.results[-1].level) == ("wrong-block-index", "gpu")


def test_broken_printer_is_caught_in_the_emitted_text():
    def off_by_one(m):  # the printer ends the innermost reduction loop one step early
        return re.sub(r"v_ki < 4;", "v_ki < 3;", print_opencl(m))

    e = caught(DEFAULT_PIPELINE, emit=off_by_one)
    assert e.stage == TEXT_STAGE
    assert [r.ok for r in e.results] == [True, True, True, False]


def test_custom_inputs_and_pass_names():
    values = {"A": np.eye(8, dtype=np.float32), "B": np.arange(64, dtype=np.float32).reshape(8, 8)}
    results = check_each_pass(module(), "tensorop-to-loops,apply-schedule", inputs=values, emit=None)
    assert [r.name for r in results] == ["tensorop-to-loops", "apply-schedule"]
    e = caught("tensorop-to-loops,reduction-bound-off-by-one", passes=[ReductionBoundOffByOne], emit=None)
    assert e.stage == "reduction-bound-off-by-one"


# ---- the interpreter --------------------------------------------------------------------------------

DIVERGENT = """builtin.module {
  func.func @main(%a: memref<4xf32>) attributes {sched.arg_names = ["a"], sched.num_inputs = 0 : i64} {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c2 = arith.constant 2 : index
    %c4 = arith.constant 4 : index
    scf.for %t = %c0 to %c4 step %c1 {
      %p = arith.cmpi slt, %t, %c2 : index
      scf.if %p {
        "gpu.barrier"() : () -> ()
      }
    } {sched.bind = "thread.x"}
    func.return
  }
}
"""

# thread t writes s[t], waits, then reads its neighbour's s[(t + 1) % 4]
NEIGHBOUR = """builtin.module {
  func.func @main(%a: memref<4xf32>) attributes {sched.arg_names = ["a"], sched.num_inputs = 0 : i64} {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c4 = arith.constant 4 : index
    scf.for %t = %c0 to %c4 step %c1 {
      %s = memref.alloca() : memref<4xf32, #memspace<addr shared>>
      %v = memref.load %a[%t] : memref<4xf32>
      memref.store %v, %s[%t] : memref<4xf32, #memspace<addr shared>>
      "gpu.barrier"() : () -> ()
      %n = arith.addi %t, %c1 : index
      %m = arith.remui %n, %c4 : index
      %w = memref.load %s[%m] : memref<4xf32, #memspace<addr shared>>
      "gpu.barrier"() : () -> ()
      memref.store %w, %a[%t] : memref<4xf32>
    } {sched.bind = "thread.x"}
    func.return
  }
}
"""


def parse(text):
    return Parser(make_context(), text).parse_module()


def test_barrier_only_some_threads_reach_is_an_error():
    with pytest.raises(InterpError, match="barrier that 2 others never reach"):
        evaluate(parse(DIVERGENT), {"a": np.zeros(4)})


def test_thread_loop_with_barriers_runs_threads_in_lockstep():
    a = np.array([1, 2, 3, 4], dtype=np.float32)
    assert evaluate(parse(NEIGHBOUR), {"a": a})["a"].tolist() == [2, 3, 4, 1]
    racy = NEIGHBOUR.replace('"gpu.barrier"() : () -> ()\n      %n', "%n", 1)
    assert np.isnan(evaluate(parse(racy), {"a": a})["a"]).any()  # read before the neighbour wrote


# ---- lanes: parallel loops run as numpy arrays, with the result of running them in order -----------------

def readme_matmul() -> ModuleOp:
    """The README's matmul: 256x128x192 in 16x16 tiles, A and B cached in shared memory."""
    a, b = sd.placeholder("A", (256, 128)), sd.placeholder("B", (128, 192))
    c = sd.matmul(a, b)
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 16)
    jo, ji = s.split(j, 16)
    ko, ki = s.split(k, 8)
    s.reorder(io, jo, ko, ii, ji, ki)
    s.bind(io, "block.y"), s.bind(jo, "block.x"), s.bind(ii, "thread.y"), s.bind(ji, "thread.x")
    s.cache_read(a, "shared", at=ko)
    s.cache_read(b, "shared", at=ko)
    s.unroll(ki)
    return s.module()


def test_readme_matmul_is_checked_at_every_stage():
    results = check_each_pass(readme_matmul(), DEFAULT_PIPELINE)
    assert [(r.name, r.checked, r.ok) for r in results] == [
        ("tensorop-to-loops", True, True), ("apply-schedule", True, True), ("loops-to-gpu", True, True),
        (TEXT_STAGE, True, True)]
    assert summary(results) is None


def test_a_stage_too_large_for_the_budget_is_not_checked_never_broken(tmp_path, capsys):
    results = check_each_pass(readme_matmul(), DEFAULT_PIPELINE, budget=1000)
    assert [(r.name, r.checked) for r in results] == [
        ("tensorop-to-loops", False), ("apply-schedule", False), ("loops-to-gpu", False), (TEXT_STAGE, True)]
    assert "not checked: too large for the budget of 1000 interpreter steps" in str(results[0])
    assert summary(results).startswith("not every stage was checked: too large for the interpreter's budget: "
                                       "tensorop-to-loops, apply-schedule, loops-to-gpu; checked: emitted OpenCL text")
    # a broken stage after unchecked ones is named, with them
    steps = default_passes()
    steps.insert(1, ReductionBoundOffByOne())
    e = caught(steps, budget=30)  # the 8x8 matmul: its loop IR needs more than 30 steps, the input is tensorop
    assert e.stage == TEXT_STAGE and "not checked before it, too large for the budget: tensorop-to-loops, " \
        "reduction-bound-off-by-one, apply-schedule, loops-to-gpu" in str(e)
    path = tmp_path / "mm.mlir"
    path.write_text(shared_matmul(True).ir())
    assert sched_opt_main([str(path), "-p", DEFAULT_PIPELINE, "--check-each-pass", "--check-budget", "30"]) == 0
    err = capsys.readouterr().err
    assert err.count("not checked: too large for the budget of 30 interpreter steps") == 3
    assert "check-each-pass: not every stage was checked" in err and "--check-budget" in err
    assert sched_opt_main([str(path), "-p", DEFAULT_PIPELINE, "--check-each-pass", "--check-budget", "0"]) == 1
    assert "the check budget must be a number of interpreter steps >= 1, got 0" in capsys.readouterr().err


def run_both_ways(m: ModuleOp, values: dict) -> None:
    """Runs `m` as lanes and in order; the outputs must be the same, bit for bit."""
    got = []
    for lanes in (True, False):
        fn = host_function(m)
        args = [np.array(values[n], np.float32) if k < _num_inputs(fn) else
                np.full(tuple(a.type.get_shape()), np.nan, np.float32)
                for k, (n, a) in enumerate(zip(_arg_names(fn), fn.body.block.args))]
        Interpreter(m, lanes=lanes).run(fn, args)
        got.append(args)
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", sdt.OPERATOR_KINDS)
@settings(max_examples=2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_lanes_give_the_result_of_running_in_order(kind, data):
    out = data.draw(sdt.operators(kind))
    m = data.draw(sdt.schedules(out)).module()
    values = data.draw(sdt.inputs(out))
    ctx = make_context()
    for name in DEFAULT_PIPELINE.split(","):
        PASSES[name]().apply(ctx, m)
        run_both_ways(m, values)


# a loop marked spatial whose iterations depend on each other: a[i] = a[i - 1] + a[i]
DEPENDENT = """builtin.module {
  func.func @main(%a: memref<64xf32>) attributes {sched.arg_names = ["a"], sched.num_inputs = 0 : i64} {
    %c1 = arith.constant 1 : index
    %c64 = arith.constant 64 : index
    scf.for %i = %c1 to %c64 step %c1 {
      %p = arith.subi %i, %c1 : index
      %x = memref.load %a[%p] : memref<64xf32>
      %y = memref.load %a[%i] : memref<64xf32>
      %z = arith.addf %x, %y : f32
      memref.store %z, %a[%i] : memref<64xf32>
    } {sched.stage = "a", sched.axis = "i"BIND}
    func.return
  }
}
"""


@pytest.mark.parametrize("bind", ["", ', sched.bind = "block.x"', ', sched.bind = "thread.x"'])
def test_iterations_that_meet_on_an_element_run_in_order(bind):
    m = parse(DEPENDENT.replace("BIND", bind))
    a = np.arange(64, dtype=np.float32)
    assert evaluate(m, {"a": a})["a"].tolist() == np.cumsum(a).tolist()


def test_the_budget_counts_steps():
    m = parse(DEPENDENT.replace("BIND", ""))
    with pytest.raises(BudgetExceeded, match="more than 100 interpreter steps"):
        evaluate(m, {"a": np.zeros(64, np.float32)}, budget=100)


# ---- the CLI --------------------------------------------------------------------------------------


def test_cli_check_each_pass(tmp_path, capsys):
    path = tmp_path / "mm.mlir"
    path.write_text(shared_matmul(True).ir())
    assert sched_opt_main([str(path), "-p", DEFAULT_PIPELINE, "--check-each-pass", "-t", "opencl"]) == 0
    out, err = capsys.readouterr()
    assert "__kernel" in out
    assert err.count(", ok, ") == 4 and "emitted OpenCL text: text level, ok" in err


def test_cli_names_the_broken_pass(tmp_path, capsys, monkeypatch):
    register = SchedOptMain.register_all_passes

    def with_broken(self):
        register(self)
        self.register_pass(ReductionBoundOffByOne.name, lambda: ReductionBoundOffByOne)

    monkeypatch.setattr(SchedOptMain, "register_all_passes", with_broken)
    path = tmp_path / "mm.mlir"
    path.write_text(shared_matmul(False).ir())
    rc = sched_opt_main([str(path), "-p", "tensorop-to-loops,reduction-bound-off-by-one,apply-schedule",
                         "--check-each-pass"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert "check-each-pass: 'reduction-bound-off-by-one' broke equivalence (loops level)" in err
    assert "Traceback" not in err


def test_sched_opt_process_check_each_pass(tmp_path):
    path = tmp_path / "mm.mlir"
    path.write_text(shared_matmul(True).ir())
    exe = str(Path(sys.executable).parent / "sched-opt")
    r = subprocess.run([exe, str(path), "-p", DEFAULT_PIPELINE, "--check-each-pass", "--check-seed", "3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(", ok, ") == 4


# ---- no false alarms: the default pipeline on random operators and schedules --------------------------

@pytest.mark.parametrize("kind", sdt.OPERATOR_KINDS)
@settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_default_pipeline_checks_clean_on_random_schedules(kind, data):
    out = data.draw(sdt.operators(kind))
    schedule = data.draw(sdt.schedules(out))
    results = check_each_pass(schedule.module(), DEFAULT_PIPELINE, inputs=data.draw(sdt.inputs(out)), emit=None)
    assert [r.level for r in results] == ["loops", "loops", "gpu"]


def _new_operator_cases():
    x = sd.placeholder("X", (1, 2, 4, 5))
    return {
        "pad_reflect": sd.pad(x, [0, 0, 1, 2, 0, 0, 2, 1], "reflect"),
        "resize_linear": sd.resize(x, (1, 1, 1.5, 2), "linear", "half_pixel"),
        "conv_transpose": sd.conv_transpose2d(x, sd.placeholder("W", (2, 3, 3, 3)), stride=2, padding=1,
                                              output_padding=1),
        "normalize_gelu": sd.gelu(sd.normalize(x, (2, 3))),
        "log_softmax_pool": sd.log_softmax(sd.pool2d(x, "avg", (3, 2), stride=2, padding=(1, 0, 0, 1), ceil_mode=True,
                                                     count_include_pad=True), 1),
        "gather": sd.gather(x, sd.placeholder("I", (3,), "i32"), 3),
    }


@pytest.mark.parametrize("name", list(_new_operator_cases()))
def test_new_operators_check_each_pass(name):
    """The coverage operators (remap, resize, conv_transpose2d, normalize, log-softmax, ceil-mode
    pooling, gather; erf, log, floor, pow in their bodies) keep their meaning through every
    pass, in the interpreter and as OpenCL text."""
    from sched_dsl.tensor import module_of

    module, _, _ = module_of([_new_operator_cases()[name]])
    inputs = None
    if name == "gather":
        inputs = {"X": np.random.default_rng(0).random((1, 2, 4, 5), np.float32), "I": np.array([4, -1, 0], np.int32)}
    assert len(check_each_pass(module, DEFAULT_PIPELINE, inputs=inputs)) == 4
