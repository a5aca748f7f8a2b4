"""reshape and concat, and the graph executor on a graph built with the Python API: fused and
unfused runs agree with the numpy reference, fusion takes kernels away, host placement works."""

import numpy as np
import pytest

import sched_dsl as sd
from sched_dsl.graph.executor import GraphExecutor
from sched_dsl.tensor import module_of

rng = np.random.default_rng(0)


def test_reshape_and_concat_against_reference():
    x = sd.placeholder("x", (2, 3, 4))
    y = sd.placeholder("y", (2, 5, 4))
    out = sd.reshape(sd.concat([x, y, x], axis=1), (4, 22))
    a, b = rng.random((2, 3, 4), np.float32), rng.random((2, 5, 4), np.float32)
    kern = sd.build(out)
    np.testing.assert_array_equal(kern(a, b), np.concatenate([a, b, a], axis=1).reshape(4, 22))
    np.testing.assert_array_equal(sd.evaluate(out, {"x": a, "y": b}), np.concatenate([a, b, a], 1).reshape(4, 22))


def test_shape_errors():
    x = sd.placeholder("x", (2, 3, 4))
    with pytest.raises(sd.ShapeError, match="24 elements.*25 elements"):
        sd.reshape(x, (5, 5))
    with pytest.raises(sd.ShapeError, match="differ off that axis"):
        sd.concat([x, sd.placeholder("y", (2, 4, 5))], axis=1)
    with pytest.raises(sd.ShapeError, match="out of range"):
        sd.concat([x, x], axis=3)


def residual_block():
    x = sd.placeholder("x", (1, 3, 8, 8))
    w = sd.placeholder("w", (4, 3, 3, 3))
    b = sd.placeholder("b", (4,))
    w2 = sd.placeholder("w2", (4, 3, 1, 1))
    c = sd.relu(sd.bias_add(sd.conv2d(x, w, padding=1, name="conv"), b, name="bias"), name="act")
    y = sd.relu(sd.add(c, sd.conv2d(x, w2, name="skip"), name="res"), name="out")
    z = sd.reshape(sd.reduce(y, "mean", (2, 3), keepdims=True, name="pool"), (1, 4), name="flat")
    return sd.softmax(z, name="prob")


@pytest.mark.parametrize("fuse, host, kernels", [
    # flat (a reshape of pool on the device) moves no data: a second name of pool's buffer
    (False, (), 10),             # conv bias act skip res out pool prob.max prob.sum prob
    (True, (), 5),               # bias, act, res and out join conv, and pool is linked into it
    (True, ("res", "prob"), 4),  # on the host: conv+bias+act, skip, out, pool remain
])
def test_executor_matches_reference(fuse, host, kernels):
    out = residual_block()
    module, inputs, _ = module_of([out])
    values = {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in inputs}
    weights = {k: v for k, v in values.items() if k != "x"}
    ex = GraphExecutor(module, weights, ["x"], ["prob"], fuse=fuse, host=host)
    assert ex.kernel_count == kernels
    for name in host:
        assert f'place = "host", name = "{name}"' in ex.ir
    got = ex.run(None, {"x": values["x"]}, profile=True)[0]
    np.testing.assert_allclose(got, sd.evaluate(out, values), rtol=1e-4, atol=1e-6)
    kinds = {k for _, k, _ in ex.last_profile}
    assert "kernel" in kinds and ("host" in kinds) == bool(host)


@pytest.mark.parametrize("cache_write", [False, True])
def test_fused_epilogue_under_a_hand_written_schedule(cache_write):
    """Without cache_write the epilogue runs at the last reduction iteration inside the nest;
    with it, at the register's write-back. Both agree with the reference."""
    from io import StringIO

    from sched_dsl.context import make_context
    from sched_dsl.lowering.fuse import TensoropFusePass
    from sched_dsl.lowering.host_plan import host_plan
    from sched_dsl.lowering.pipeline import run_default_pipeline
    from sched_dsl.lowering.targets.c_family import OPENCL, print_kernels
    from sched_dsl.runtime.opencl import OpenCLKernel

    A, B = sd.placeholder("A", (20, 12)), sd.placeholder("B", (12, 9))
    c = sd.placeholder("c", (9,))
    out = sd.sigmoid(sd.bias_add(sd.matmul(A, B, name="C"), c, name="D"), name="E")
    s = sd.Schedule(out)
    i, j, k = s.loops("i", "j", "k", stage="C")
    ko, ki = s.split(k, 5)
    s.reorder(i, j, ko, ki)
    s.bind(i, "block.x")
    s.bind(j, "thread.x")
    if cache_write:
        s.cache_write("local", at=j)
    module = s.module()
    TensoropFusePass().apply(make_context(), module)
    run_default_pipeline(make_context(), module)
    text = StringIO()
    print_kernels(module, OPENCL, text)
    plan = host_plan(module)
    assert len(plan.launches) == 1
    vals = {"A": rng.standard_normal((20, 12)).astype(np.float32),
            "B": rng.standard_normal((12, 9)).astype(np.float32), "c": rng.standard_normal(9).astype(np.float32)}
    (got,) = OpenCLKernel(text.getvalue(), plan).run(*[vals[b.name] for b in plan.inputs])
    np.testing.assert_allclose(got, sd.evaluate(out, vals), rtol=1e-5, atol=1e-6)
