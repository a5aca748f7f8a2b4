"""The Python front end: building, lowering without a device, knobs, and clear errors."""

import subprocess
import sys

import numpy as np
import pytest

import sched_dsl as sd


def small_matmul():
    A = sd.placeholder("A", (20, 12))
    B = sd.placeholder("B", (12, 9))
    return A, B, sd.matmul(A, B, name="C")


def test_lower_gives_text_and_launches_without_a_device():
    A, B, C = small_matmul()
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 8)
    s.bind(io, "block.x")
    s.bind(ii, "thread.x")
    for target, marker in (("opencl", "__kernel"), ("cuda", "__global__")):
        low = sd.lower(C, s, target=target)
        assert marker in low.source
        (launch,) = low.launches
        assert launch.grid == (3, 1, 1) and launch.block == (8, 1, 1)
        assert launch.args == ("A", "B", "C")


def test_knobs_default_to_first_candidate_and_config_picks():
    A, B, C = small_matmul()
    s = sd.Schedule(C)
    i, _, _ = s.loops("i", "j", "k")
    t = s.knob("ti", [4, 5])
    io, ii = s.split(i, t)
    s.bind(io, "block.x")
    s.bind(ii, "thread.x")
    assert sd.lower(C, s).launches[0].block == (4, 1, 1)
    assert sd.lower(C, s, config={"ti": 5}).launches[0].block == (5, 1, 1)
    with pytest.raises(sd.ScheduleError, match="knob 'ti' = 3 is not one of"):
        sd.lower(C, s, config={"ti": 3})
    with pytest.raises(sd.ScheduleError, match="unknown knob"):
        sd.lower(C, s, config={"tj": 4})


def test_build_runs_and_checks_its_inputs():
    A, B, C = small_matmul()
    kern = sd.build(C)
    a = np.random.rand(20, 12).astype(np.float32)
    b = np.random.rand(12, 9).astype(np.float32)
    np.testing.assert_allclose(kern(a, b), a @ b, rtol=1e-5)
    np.testing.assert_allclose(kern(A=a, B=b), a @ b, rtol=1e-5)
    with pytest.raises(ValueError, match="input 'B' has shape"):
        kern(a, b.T)
    with pytest.raises(TypeError, match="expected 2 inputs"):
        kern(a)


@pytest.mark.parametrize("make, message", [
    (lambda: sd.placeholder("A", (0, 3)), "dimensions >= 1"),
    (lambda: sd.placeholder("A b", (2, 3)), "must be an identifier"),
    (lambda: sd.placeholder("A", (2, 3), "f64"), "dtype 'f64' is not supported"),
    (lambda: sd.matmul(sd.placeholder("A", (2, 3)), sd.placeholder("B", (4, 5))), "inner dimensions differ"),
    (lambda: sd.conv2d(sd.placeholder("X", (1, 3, 8, 8)), sd.placeholder("W", (4, 2, 3, 3))), "channels per group"),
    (lambda: sd.add(sd.placeholder("A", (2, 3)), sd.placeholder("B", (4, 3))), "do not broadcast"),
    (lambda: sd.reduce(sd.placeholder("A", (2, 3)), "sum", 2), "out of range"),
    (lambda: sd.pool2d(sd.placeholder("A", (1, 1, 4, 4)), "min", 2), "not one of"),
])
def test_bad_operators_are_rejected_with_the_reason(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_schedule_errors_name_the_problem():
    _, _, C = small_matmul()
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    with pytest.raises(sd.ScheduleError, match="factor must be an int >= 1"):
        s.split(i, 0)
    with pytest.raises(sd.ScheduleError, match="has no loop 'q'"):
        s.loop("q")
    with pytest.raises(sd.ScheduleError, match="not one of"):
        s.bind(i, "warp.x")
    io, ii = s.split(i, 4)
    with pytest.raises(sd.ScheduleError, match="already split"):
        s.split(i, 2)


@pytest.mark.parametrize("apply, message", [
    (lambda s, i, j, k: (s.vectorize(i)), "not innermost"),
    (lambda s, i, j, k: (s.bind(i, "thread.x"), s.bind(j, "thread.x")), "already bound"),
    (lambda s, i, j, k: (s.bind(k, "block.x")), "reduction loop"),
    (lambda s, i, j, k: (s.bind(i, "block.y"), s.bind(j, "block.x"), s.cache_read("B", "local", at=i)),
     "must be inside all block loops"),
    (lambda s, i, j, k: (s.fuse(i, k)), "not adjacent"),
    (lambda s, i, j, k: (s.cache_write("local", at=k)), "inside reduction loop"),
])
def test_illegal_schedules_fail_at_lowering(apply, message):
    _, _, C = small_matmul()
    s = sd.Schedule(C)
    apply(s, *s.loops("i", "j", "k"))
    with pytest.raises(sd.ScheduleError, match=message):
        sd.lower(C, s)


def test_schedule_ir_reads_back_through_sched_opt(tmp_path):
    A, B, C = small_matmul()
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 8)
    s.bind(io, "block.x")
    s.bind(ii, "thread.x")
    s.cache_read(A, "shared", at=io)
    path = tmp_path / "mm.mlir"
    path.write_text(s.ir())
    run = subprocess.run([sys.executable, "-m", "sched_dsl.cli.opt", str(path), "-p",
                          "tensorop-to-loops,apply-schedule,loops-to-gpu", "-t", "opencl"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("__kernel") == 1 and "__local float v_A_shared" in run.stdout


def test_cache_read_options_are_checked_where_they_are_given():
    A, B = sd.placeholder("A", (16, 8)), sd.placeholder("B", (8, 12))
    C = sd.matmul(A, B)
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    with pytest.raises(sd.ScheduleError, match=r"layout \[0, 0\] is not a permutation"):
        s.cache_read(A, "shared", at=k, layout=(0, 0))
    with pytest.raises(sd.ScheduleError, match="double_buffer needs scope 'shared'"):
        s.cache_read(A, "local", at=k, double_buffer=True)
    s.cache_read(A, "shared", at=k, double_buffer=True)  # no thread loop outside k
    with pytest.raises(sd.ScheduleError, match="double_buffer of 'A': loop 'k' must be a sequential loop"):
        sd.lower(C, s)


def test_transposed_double_buffered_tiles_match_numpy():
    A, B = sd.placeholder("A", (40, 28)), sd.placeholder("B", (28, 36))
    C = sd.matmul(A, B)
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    io, jo, ii, ji = s.tile(i, j, 8, 8)
    ko, ki = s.split(k, 8)  # 28 = 3 * 8 + 4: the last tile runs past A's and B's ends
    s.bind(io, "block.y"); s.bind(jo, "block.x"); s.bind(ii, "thread.y"); s.bind(ji, "thread.x")
    s.cache_read(A, "shared", at=ko, layout=(1, 0), double_buffer=True)
    s.cache_read(B, "shared", at=ko, double_buffer=True)
    s.cache_write("local", at=ji)
    a = np.random.default_rng(0).random((40, 28), dtype=np.float32)
    b = np.random.default_rng(1).random((28, 36), dtype=np.float32)
    np.testing.assert_allclose(sd.build(C, s)(a, b), a @ b, rtol=1e-5)
