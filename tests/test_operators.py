"""Each operator under the default schedule, and a few hand-written schedules, against the
numpy reference on the OpenCL device; and the schedules apply-schedule refuses."""

import warnings

import pytest

import sched_dsl as sd
from gpu_cases import shared_tiled
from sched_dsl.testing.strategies import assert_equivalent


@pytest.fixture(autouse=True)
def _quiet_pyopencl():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyopencl's notes on kernel retrieval
        yield


def P(name, *shape):
    return sd.placeholder(name, shape)


OPERATORS = {
    "matmul": lambda: sd.matmul(P("A", 13, 7), P("B", 7, 11)),
    "conv2d": lambda: sd.conv2d(P("X", 2, 3, 9, 8), P("W", 5, 3, 3, 3)),
    "conv2d_strided_padded_dilated": lambda: sd.conv2d(P("X", 1, 2, 11, 10), P("W", 3, 2, 3, 2),
                                                       stride=(2, 3), padding=(1, 2, 0, 1), dilation=(2, 1)),
    "conv2d_grouped": lambda: sd.conv2d(P("X", 1, 6, 7, 7), P("W", 4, 3, 3, 3), padding=1, groups=2),
    "conv2d_depthwise": lambda: sd.conv2d(P("X", 2, 4, 7, 6), P("W", 8, 1, 3, 3), stride=2, padding=1, groups=4),
    "pool2d_max": lambda: sd.pool2d(P("X", 2, 3, 9, 7), "max", 3, stride=2, padding=1),
    "pool2d_avg": lambda: sd.pool2d(P("X", 1, 2, 7, 9), "avg", (2, 3), stride=(1, 2), padding=(1, 1, 0, 2)),
    **{f"unary_{fn}": (lambda fn=fn: sd.unary(fn, P("X", 3, 5, 7))) for fn in
       ("relu", "relu6", "sigmoid", "tanh", "exp", "neg")},
    "unary_clip": lambda: sd.clip(P("X", 11, 13), -0.25, 0.5),
    **{f"binary_{fn}": (lambda fn=fn: sd.binary(fn, P("A", 5, 1, 7), P("B", 3, 1))) for fn in
       ("add", "sub", "mul", "div", "max", "min")},
    "bias_add": lambda: sd.bias_add(P("X", 2, 5, 3, 3), P("bias", 5)),
    "bias_add_last_axis": lambda: sd.bias_add(P("X", 7, 13), P("bias", 13), axis=-1),
    "reduce_sum": lambda: sd.reduce(P("X", 5, 7, 3), "sum", (0, 2)),
    "reduce_max_keepdims": lambda: sd.reduce(P("X", 5, 7, 3), "max", -2, keepdims=True),
    "reduce_mean_all": lambda: sd.reduce(P("X", 4, 13), "mean", (0, 1)),
    "softmax": lambda: sd.softmax(P("X", 6, 11)),
    "softmax_axis0": lambda: sd.softmax(P("X", 7, 3, 2), axis=0),
    "softmax_1d": lambda: sd.softmax(P("X", 15)),
}


@pytest.mark.parametrize("name", OPERATORS)
def test_default_schedule_matches_reference(name):
    assert_equivalent(OPERATORS[name](), None)


def test_quickstart_matmul_schedule():
    assert_equivalent(*shared_tiled(sd.matmul(P("A", 256, 128), P("B", 128, 192))))


def test_conv2d_with_shared_caches():
    X, W = P("X", 1, 4, 10, 9), P("W", 6, 4, 3, 3)
    out = sd.conv2d(X, W, padding=1)
    s = sd.Schedule(out)
    n, f, y, x, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx")
    yo, yi = s.split(y, 4)
    xo, xi = s.split(x, 4)
    s.reorder(n, f, yo, xo, rc, yi, xi, ry, rx)
    nf = s.fuse(n, f)
    s.bind(nf, "block.y")
    yx = s.fuse(yo, xo)
    s.bind(yx, "block.x")
    s.bind(yi, "thread.y")
    s.bind(xi, "thread.x")
    s.cache_read(X, "shared", at=rc)
    s.cache_read(W, "shared", at=rc)
    s.unroll(rx)
    assert_equivalent(out, s)


def test_compute_at_relu_into_consumer():
    X, W = P("X", 1, 3, 8, 8), P("W", 4, 3, 3, 3)
    r = sd.relu(X)
    out = sd.conv2d(r, W, padding=1)
    s = sd.Schedule(out)
    n, f, y, x = s.loops("n", "f", "y", "x")
    s.bind(f, "block.x")
    s.bind(y, "thread.y")
    s.bind(x, "thread.x")
    s.compute_at(r, f)
    assert_equivalent(out, s)


def test_compute_at_relu_per_element():
    A = P("A", 9, 5)
    r = sd.relu(A)
    out = sd.add(r, P("B", 5))
    s = sd.Schedule(out)
    d0, d1 = s.loops("d0", "d1")
    s.bind(d0, "block.x")
    s.compute_at(r, d1)
    assert_equivalent(out, s)


def test_cache_write_local():
    A, B = P("A", 20, 9), P("B", 9, 14)
    C = sd.matmul(A, B)
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 4)
    jo, ji = s.split(j, 4)
    s.reorder(io, jo, ii, ji, k)
    s.bind(io, "block.x")
    s.bind(jo, "thread.x")
    s.cache_write("local", at=jo)
    assert_equivalent(C, s)


def test_reduction_loop_outermost():
    X = P("X", 6, 7)
    out = sd.reduce(X, "max", 0)
    s = sd.Schedule(out)
    d0, r0 = s.loops("d0", "r0")
    s.reorder(r0, d0)
    assert_equivalent(out, s)


def test_fused_reduction_loops_across_a_split():
    X = P("X", 3, 6, 5)
    out = sd.reduce(X, "sum", (1, 2))
    s = sd.Schedule(out)
    d0, r0, r1 = s.loops("d0", "r0", "r1")
    r0o, r0i = s.split(r0, 4)
    s.fuse(r0i, r1)
    s.bind(d0, "thread.x")
    assert_equivalent(out, s)


# ---- schedules that cannot be applied --------------------------------------------------------


def test_local_cache_between_block_loops_is_refused():
    A, B = P("A", 8, 8), P("B", 8, 8)
    C = sd.matmul(A, B)
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    s.bind(i, "block.y")
    s.bind(j, "block.x")
    s.cache_read(B, "local", at=i)
    with pytest.raises(sd.ScheduleError, match="a local buffer at 'i' must be inside all block loops"):
        sd.lower(C, s)


def test_compute_at_between_block_loops_is_refused():
    A = P("A", 8, 8)
    r = sd.relu(A)
    out = sd.neg(r)
    s = sd.Schedule(out)
    d0, d1 = s.loops("d0", "d1")
    s.bind(d0, "block.x")
    s.bind(d1, "block.y")
    s.compute_at(r, d0)
    with pytest.raises(sd.ScheduleError, match="compute_at at 'd0' must be inside all block loops"):
        sd.lower(out, s)


def test_cache_of_grouped_conv2d_input_is_refused():
    X, W = P("X", 1, 4, 6, 6), P("W", 4, 2, 3, 3)
    out = sd.conv2d(X, W, groups=2)
    s = sd.Schedule(out)
    f = s.loop("f")
    s.cache_read(X, "local", at=f)
    with pytest.raises(sd.ScheduleError, match="cannot cache 'X': its index is not affine"):
        sd.lower(out, s)


def test_compute_at_of_softmax_input_is_refused():
    X = P("X", 4, 5)
    r = sd.relu(X)
    out = sd.softmax(r)
    s = sd.Schedule(out)
    s.compute_at(r, s.loop("d1"))
    with pytest.raises(sd.ScheduleError, match="compute_at needs a single consumer"):
        sd.lower(out, s)


def test_unrolled_loop_around_a_thread_phase():
    """Thread loops inside serial ones; without shared memory no barrier is needed."""
    X = P("X", 1, 8, 4, 6)
    out = sd.reduce(sd.tanh(X), "mean", (0, -2, 3, -3), keepdims=True)
    s = sd.Schedule(out)
    r1o, r1i = s.split(s.loop("r1"), 6)
    r3, r2, d1, r0, d2, d0, d3 = s.loops("r3", "r2", "d1", "r0", "d2", "d0", "d3")
    s.reorder(r3, r2, d1, r0, d2, r1i, d0, r1o, d3)
    s.bind(d1, "thread.x")
    s.bind(d0, "thread.y")
    s.unroll(r3)
    s.vectorize(d3)
    assert "barrier" not in sd.lower(out, s).source
    assert_equivalent(out, s)


def test_vectorized_loop_holding_a_shared_fill():
    A, B = P("A", 6, 5), P("B", 5, 7)
    C = sd.matmul(A, B)
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    s.reorder(j, k, i)
    s.bind(j, "thread.x")
    s.cache_read(A, "shared", at=i)
    s.vectorize(i)
    assert "barrier" in sd.lower(C, s).source
    assert_equivalent(C, s)


def test_barrier_inside_a_loop_that_runs_once():
    X, W = P("X", 2, 3, 5, 2), P("W", 1, 3, 2, 1)
    out = sd.conv2d(X, W, stride=3, padding=(0, 1, 2, 1))
    s = sd.Schedule(out)
    n, f, y, x, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx")
    no, ni = s.split(n, 8)
    nf = s.fuse(no, s.fuse(ni, f))
    s.reorder(ry, rx, x, rc, nf, y)
    s.bind(x, "thread.y")
    s.unroll(ry)
    s.vectorize(y)
    s.cache_read(X, "local", at=rc)
    assert_equivalent(out, s)


def test_thread_phase_inside_reduction_loops():
    X = P("X", 4, 4)
    out = sd.reduce(sd.sigmoid(X), "mean", 0, keepdims=True)
    s = sd.Schedule(out)
    d0, d1, r0 = s.loops("d0", "d1", "r0")
    d1o, d1i = s.split(d1, 8)
    r0o, r0i = s.split(r0, 2)
    s.reorder(r0i, d0, d1o, r0o, d1i)
    s.bind(d0, "thread.x")
    s.vectorize(d1i)
    assert_equivalent(out, s)


def test_unrolled_loops_around_shared_fills():
    X, W = P("X", 2, 4, 10, 2), P("W", 3, 4, 3, 2)
    sig = sd.sigmoid(X)
    out = sd.conv2d(sig, W, stride=(1, 3), padding=(1, 2, 0, 2), dilation=(1, 2))
    s = sd.Schedule(out)
    n, f, y, x, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx")
    no, ni = s.split(n, 3)
    yo, yi = s.split(y, 4)
    xo, xi = s.split(x, 4)
    ryo, ryi = s.split(ry, 2)
    rxo, rxi = s.split(rx, 3)
    r = s.fuse(ryi, rxo)
    s.reorder(f, r, ryo, yi, yo, no, rxi, ni, xi, xo, rc)
    s.bind(xi, "thread.x")
    s.bind(no, "thread.y")
    s.unroll(r)
    s.unroll(yo)
    s.cache_read(W, "shared", at=ryo)
    s.compute_at(sig, rxi)
    assert "barrier" in sd.lower(out, s).source
    assert_equivalent(out, s)


def test_one_thread_blocks_take_no_barriers():
    """A block of one thread needs no barrier between its phases, and PoCL's compiler aborted
    on this kernel's barriers inside loops (a pool with its producer computed into a shared
    buffer, one thread, the pool's loops reordered): it runs, without a barrier."""
    x = sd.placeholder("X", (2, 2, 10, 8))
    r = sd.relu(x, name="relu")
    p = sd.pool2d(r, "max", (2, 1), (2, 3), (1, 0, 1, 0), name="pool2d")
    s = sd.Schedule(p)
    n, y, xx, c, ry, rx = s.loops("n", "y", "x", "c", "ry", "rx")
    no, ni = s.split(n, 1)
    yo, yi = s.split(y, 4)
    xo, xi = s.split(xx, 4)
    s.reorder(c, yo, ry, rx, xi, ni, yi, no, xo)
    s.bind(ni, "thread.x")
    s.compute_at(r, at=c)
    assert "barrier" not in sd.lower(p, s).source
    assert_equivalent(p, s)
