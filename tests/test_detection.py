"""The detection operators (cumsum, argsort, topk, nms) and i32 tensors: their meaning on
hand-picked inputs (ties, flipped corners, IoU exactly at the threshold), built on the
OpenCL device with the default schedule and with user schedules, and the errors for bad
operands and for schedules that would break the sequential loop of nms."""

import re
import warnings

import numpy as np
import pytest

import sched_dsl as sd
from sched_dsl.testing.strategies import assert_equivalent, random_inputs


@pytest.fixture(autouse=True)
def _quiet_pyopencl():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyopencl's notes on kernel retrieval
        yield


def P(name, *shape, dtype="f32"):
    return sd.placeholder(name, shape, dtype)


def run(out, **values):
    kern = sd.build(out)
    return kern(**{n: np.asarray(values[n]) for n in kern.input_names})


# ---- meaning on hand-picked inputs, on the device and in the reference ----------------------


def both(out, expected, **values):
    """The kernel and the reference both give `expected`."""
    np.testing.assert_array_equal(run(out, **values), expected)
    np.testing.assert_array_equal(sd.evaluate(out, values), expected)


def test_cumsum_onnx_modes():
    x = np.array([[1, 2, 3, 4, 5]], np.float32)
    X = P("X", 1, 5)
    both(sd.cumsum(X, 1), [[1, 3, 6, 10, 15]], X=x)
    both(sd.cumsum(X, -1, exclusive=True), [[0, 1, 3, 6, 10]], X=x)
    both(sd.cumsum(X, 1, reverse=True), [[15, 14, 12, 9, 5]], X=x)
    both(sd.cumsum(X, 1, exclusive=True, reverse=True), [[14, 12, 9, 5, 0]], X=x)


@pytest.mark.parametrize("n", [1, 2, 3, 64, 65, 300])
def test_cumsum_lengths_around_powers_of_two(n):
    X = P("X", 2, n)
    out = sd.cumsum(X, 1, exclusive=n % 2 == 1)
    steps = max(1, (n - 1).bit_length())
    assert len(sd.lower(out).launches) == steps
    assert_equivalent(out, inputs={"X": np.random.default_rng(n).integers(-3, 4, (2, n)).astype(np.float32)})


def test_argsort_is_stable_both_ways():
    x = np.array([3, 1, 3, 2, 1, 3], np.float32)
    X = P("X", 6)
    both(sd.argsort(X), [0, 2, 5, 3, 1, 4], X=x)
    both(sd.argsort(X, descending=False), [1, 4, 3, 0, 2, 5], X=x)


def test_argsort_along_a_middle_axis():
    out = sd.argsort(P("X", 3, 7, 2), axis=1, descending=False)
    assert_equivalent(out, inputs=random_inputs(out, seed=3))


def test_topk_values_and_indices_with_ties():
    x = np.array([[1, 5, 5, 2, 5], [0, -1, -1, 7, -1]], np.float32)
    X = P("X", 2, 5)
    values, indices = sd.topk(X, 3, axis=1, name="tk")
    assert (values.name, indices.name, indices.dtype) == ("tk_values", "tk", "i32")
    kern = sd.build((values, indices))
    got_v, got_i = kern(X=x)
    np.testing.assert_array_equal(got_i, [[1, 2, 4], [3, 0, 1]])
    np.testing.assert_array_equal(got_v, [[5, 5, 5], [7, 0, -1]])
    assert got_i.dtype == np.int32
    v2, i2 = sd.topk(X, 2, axis=-1, largest=False)
    both(i2, [[0, 3], [1, 2]], X=x)
    both(v2, [[1, 2], [-1, -1]], X=x)


BOXES = np.array([
    [0, 0, 2, 2],   # 0
    [0, 0, 2, 4],   # 1: IoU with 0 is 4/8 = 0.5 exactly
    [2, 2, 0, 0],   # 2: box 0 with flipped corners, IoU 1 with it
    [5, 5, 6, 6],   # 3: apart
    [5, 5, 5, 9],   # 4: empty (zero height): never suppresses nor is suppressed
    [0, 0, 1, 1],   # 5: inside box 0, IoU 1/4
], np.float32)


@pytest.mark.parametrize("scores, iou, score_thr, max_out, expected", [
    # equal scores: lower index first; IoU 0.5 is not > 0.5, so box 1 stays
    ([0.9, 0.9, 0.9, 0.5, 0.7, 0.1], 0.5, float("-inf"), 6, [0, 1, 4, 3, 5, -1]),
    # IoU 0.5 > 0.4: box 1 goes too; box 5 (IoU 0.25 with 0) stays
    ([0.9, 0.9, 0.9, 0.5, 0.7, 0.1], 0.4, float("-inf"), 8, [0, 4, 3, 5, -1, -1, -1, -1]),
    # the flipped box 2 ranks first and suppresses box 0 (IoU 1); box 5 only over 0.2
    ([0.8, 0.1, 0.9, 0.5, 0.7, 0.3], 0.2, float("-inf"), 3, [2, 4, 3]),
    # score_threshold is strict: score 0.5 is not > 0.5
    ([0.9, 0.9, 0.9, 0.5, 0.7, 0.1], 0.5, 0.5, 6, [0, 1, 4, -1, -1, -1]),
    # iou_threshold 0: any overlap suppresses (box 5 lies inside 0, 1 and 2)
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 0.0, float("-inf"), 6, [5, 4, 3, -1, -1, -1]),
])
def test_nms_onnx_semantics(scores, iou, score_thr, max_out, expected):
    out = sd.nms(P("B", 6, 4), P("S", 6), max_out, iou, score_thr)
    both(out, expected, B=BOXES, S=np.array(scores, np.float32))


def test_nms_many_boxes_runs_steps_over_several_thread_rounds():
    """300 boxes: the default schedule's 256 threads take two rounds per step."""
    rng = np.random.default_rng(7)
    corner = rng.integers(0, 40, (300, 2))
    boxes = np.concatenate([corner, corner + rng.integers(1, 12, (300, 2))], axis=1).astype(np.float32)
    scores = rng.integers(0, 50, 300).astype(np.float32)
    out = sd.nms(P("B", 300, 4), P("S", 300), 120, 0.5, 5.0)
    want = sd.evaluate(out, {"B": boxes, "S": scores})
    assert (want >= 0).sum() > 20  # many kept, many suppressed
    np.testing.assert_array_equal(run(out, B=boxes, S=scores), want)


def test_nms_kernels_and_their_launches():
    out = sd.nms(P("B", 100, 4), P("S", 100), 10, 0.5, name="nm")
    lw = sd.lower(out)
    names = [ln.kernel for ln in lw.launches]
    assert names == ["main_nm_rank", "main_nm_order", "main_nm_supp", *[f"main_nm_pos_step{k}" for k in range(6)],
                     "main_nm_pos", "main_nm"]
    supp = lw.launches[2]
    assert supp.grid == (1, 1, 1) and supp.block == (100, 1, 1)  # one block: steps wait at barriers
    assert "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);" in lw.source
    assert "i32" in lw.plan.describe()
    cuda = sd.lower(out, target="cuda").source
    assert "int* __restrict__ x_nm_2eorder" in cuda and "__syncthreads();" in cuda


# ---- user schedules ------------------------------------------------------------------------------


def test_argsort_user_schedule_on_the_rank_stage():
    out = sd.argsort(P("X", 5, 37), axis=1, name="as")
    s = sd.Schedule(out)
    d0, d1, j = s.loops("d0", "d1", "j", stage="as.rank")
    d1o, d1i = s.split(d1, 16)
    jo, ji = s.split(j, 4)
    s.reorder(d0, d1o, d1i, jo, ji)
    s.bind(d0, "block.x")
    s.bind(d1o, "block.y")
    s.bind(d1i, "thread.x")
    s.unroll(ji)
    s.cache_write("local", at=d1i)
    e0, e1 = s.loops("d0", "d1")  # the scatter stage
    s.bind(e0, "block.x")
    s.bind(e1, "thread.x")
    assert_equivalent(out, s, inputs=random_inputs(out, seed=1))


def test_topk_user_schedule_and_shared_cache_of_the_ranks():
    values, indices = sd.topk(P("X", 3, 50), 7, axis=1, name="tk")
    s = sd.Schedule(indices)
    d0, d1 = s.loops("d0", "d1")
    d1o, d1i = s.split(d1, 32)
    s.bind(d0, "block.x")
    s.bind(d1i, "thread.x")
    s.cache_read("tk.rank", "shared", at=d1o)
    assert_equivalent(indices, s, inputs=random_inputs(indices, seed=2))


def test_nms_user_schedule_threads_of_the_greedy_pass():
    out = sd.nms(P("B", 40, 4), P("S", 40), 12, 0.25, name="nm")
    s = sd.Schedule(out)
    box = s.loop("box", stage="nm.supp")
    bo, bi = s.split(box, 16)
    s.bind(bi, "thread.x")
    m, rank = s.loops("m", "rank")
    s.bind(m, "thread.x")
    s.cache_write("local", at=m)
    assert_equivalent(out, s, inputs=random_inputs(out, seed=4))


def test_cumsum_user_schedule_of_each_step():
    out = sd.cumsum(P("X", 4, 20), 1, name="cs")
    s = sd.Schedule(out)
    for stage in ("cs.step0", "cs.step1", "cs.step2", "cs.step3", "cs"):
        d0, d1 = s.loops("d0", "d1", stage=stage)
        s.bind(d0, "block.x")
        s.bind(d1, "thread.x")
    assert_equivalent(out, s, inputs=random_inputs(out, seed=5))


# ---- schedules refused -----------------------------------------------------------------------------


def _nms_schedule():
    out = sd.nms(P("B", 10, 4), P("S", 10), 4, 0.5, name="nm")
    return out, sd.Schedule(out)


SEQUENTIAL = "loop 'step' of stage 'nm.supp' is sequential"


@pytest.mark.parametrize("action, message", [
    (lambda s, step, box: s.split(step, 2), SEQUENTIAL),
    (lambda s, step, box: s.bind(step, "thread.x"), SEQUENTIAL),
    (lambda s, step, box: s.reorder(box, step), SEQUENTIAL),
    (lambda s, step, box: s.fuse(step, box), SEQUENTIAL),
    (lambda s, step, box: s.unroll(step), SEQUENTIAL),
    (lambda s, step, box: s.bind(box, "block.x"),
     "stage 'nm.supp': its sequential loop 'step' runs in one block; bind its other loops to threads, not blocks"),
    (lambda s, step, box: s.cache_write("local", at=box), "stage 'nm.supp' has sequential loop 'step': cache_write"),
    (lambda s, step, box: s.cache_read("B", "local", at=box), "stage 'nm.supp' has sequential loop 'step': cache_read"),
    (lambda s, step, box: s.compute_at("nm.order", at=box), "stage 'nm.supp' has sequential loop 'step': compute_at"),
])
def test_sequential_loop_schedule_errors(action, message):
    out, s = _nms_schedule()
    step, box = s.loops("step", "box", stage="nm.supp")
    action(s, step, box)
    with pytest.raises(sd.ScheduleError, match=re.escape(message)):
        sd.lower(out, s)


def test_cache_write_of_a_scatter_is_refused():
    out = sd.argsort(P("X", 8), name="as")
    s = sd.Schedule(out)
    s.cache_write("local", at=s.loop("d0"))
    with pytest.raises(sd.ScheduleError, match=r"stage 'as' writes its output at computed indices \(a scatter\)"):
        sd.lower(out, s)


# ---- operand errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("make, message", [
    (lambda: sd.cumsum(P("X", 3, 4), 2), "cumsum: axis 2 is out of range for rank 2"),
    (lambda: sd.argsort(P("X", 3, 4), axis=-3), "argsort: axis -3 is out of range for rank 2"),
    (lambda: sd.topk(P("X", 3, 4), 5, axis=1), "topk: k=5 must be between 1 and the size 4 of axis 1"),
    (lambda: sd.topk(P("X", 3, 4), 0), "topk: k=0 must be between 1 and the size 4 of axis -1"),
    (lambda: sd.topk(P("X", 3, 4), 2, axis=2), "topk: axis 2 is out of range for rank 2"),
    (lambda: sd.topk(P("X", 3, 4), 2.0), "topk: k must be an int, got 2.0"),
    (lambda: sd.nms(P("B", 5, 4), P("S", 5), True, 0.5), "nms: max_output must be an int, got True"),
    (lambda: sd.nms(P("B", 5, 3), P("S", 5), 2, 0.5), "nms: boxes must have shape (N, 4), got (5, 3)"),
    (lambda: sd.nms(P("B", 5, 4, 1), P("S", 5), 2, 0.5), "nms: boxes must have shape (N, 4), got (5, 4, 1)"),
    (lambda: sd.nms(P("B", 5, 4), P("S", 6), 2, 0.5), "nms: scores must have shape (5,) to match the boxes, got (6,)"),
    (lambda: sd.nms(P("B", 5, 4), P("S", 1, 5), 2, 0.5), "nms: scores must have shape (5,)"),
    (lambda: sd.nms(P("B", 5, 4), P("S", 5), 0, 0.5), "nms: max_output must be >= 1, got 0"),
    (lambda: sd.nms(P("B", 5, 4), P("S", 5), 2, 1.5), "nms: iou_threshold must be in [0, 1], got 1.5"),
    (lambda: sd.nms(P("B", 5, 4), P("S", 5), 2, 0.5, float("nan")), "nms: score_threshold is NaN"),
    (lambda: sd.argsort(P("I", 4, dtype="i32")), "argsort: operand Tensor(I, shape=(4,), dtype=i32) is i32"),
    (lambda: sd.nms(P("B", 5, 4), sd.argsort(P("S", 5)), 2, 0.5), "nms: operand Tensor(argsort"),
    (lambda: sd.matmul(P("A", 2, 2), P("B", 2, 2, dtype="i32")), "matmul: operand Tensor(B, shape=(2, 2), dtype=i32)"),
])
def test_bad_operands_raise_shape_errors_naming_the_op(make, message):
    with pytest.raises(sd.ShapeError, match=re.escape(message)):
        make()


def test_numpy_integers_are_accepted():
    """Model files give k and max_output as numpy integers."""
    values, indices = sd.topk(P("X", 3, 4), np.int64(2))
    assert indices.shape == (3, 2) and indices.attrs["k"] == 2 and type(indices.attrs["k"]) is int
    assert sd.nms(P("B", 5, 4), P("S", 5), np.int64(3), np.float32(0.5)).shape == (3,)


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype 'f64' is not supported; use one of f32, f16, bf16, i32"):
        P("X", 3, dtype="f64")


# ---- i32 tensors through the pipeline -------------------------------------------------------------


def test_i32_input_and_output_buffers():
    """An i32 placeholder (indices) feeds take_along_axis through the runtime's int32 buffers."""
    from sched_dsl.tensor import _op

    x, idx = P("X", 2, 5), P("I", 2, 3, dtype="i32")
    out = _op("take_along_axis", (2, 3), (x, idx), "G", axis=1)
    xv = np.arange(10, dtype=np.float32).reshape(2, 5)
    iv = np.array([[4, 0, 4], [1, 2, 3]], dtype=np.int32)
    kern = sd.build(out)
    assert [b.dtype for b in kern.lowered.plan.inputs] == ["f32", "i32"]
    assert "__global int* restrict v_I" in kern.source
    np.testing.assert_array_equal(kern(X=xv, I=iv), [[4, 0, 4], [6, 7, 8]])
    np.testing.assert_array_equal(sd.evaluate(out, {"X": xv, "I": iv}), [[4, 0, 4], [6, 7, 8]])


# ---- the shared GPU cases, on the OpenCL device here ------------------------------------------------


def _detection_cases():
    from gpu_cases import CASES
    return [c for c in CASES if c.id.split("_")[0] in ("scan", "argsort", "topk", "nms")]


@pytest.mark.parametrize("case", _detection_cases(), ids=lambda c: c.id)
def test_gpu_case_on_opencl(case):
    from gpu_cases import check
    check(*case.make(), "opencl")
