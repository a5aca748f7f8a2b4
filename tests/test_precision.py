"""Reduced precision (f16, bf16, tf32) end to end on the OpenCL device: exact casts, sums
kept in f32, the element types in records, and the diagnostics for bad combinations."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import warnings

import ml_dtypes
import numpy as np
import pytest
from gpu_cases import needs_nvcc

import sched_dsl as sd
from sched_dsl import testing as sdt
from sched_dsl.records import workload_of
from sched_dsl.reference import numpy_dtype, round_tf32


def run(out, *arrays, schedule=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sd.build(out, schedule)(*arrays)


# values that exercise rounding: ties, values between neighbours, f16 subnormals, large ones
EDGES = np.array([1 + 2**-8, 1 + 3 * 2**-9, 1 + 2**-11, 1 + 3 * 2**-12, 3e-6, 6e-8, -2.5e-7, 60000.0,
                  -1e-3, 0.1, 1 / 3, 0.0, -0.0, 2.0**-20], dtype=np.float32)


@pytest.mark.parametrize("src,dst", [("f32", "bf16"), ("f32", "f16"), ("bf16", "f32"), ("f16", "f32"),
                                     ("bf16", "f16"), ("f16", "bf16")])
def test_casts_round_to_nearest_even_exactly(src, dst):
    x = sd.placeholder("X", EDGES.shape, src)
    y = sd.cast(x, dst)
    values = EDGES.astype(numpy_dtype(src))  # inputs are arrays of their type (runtime dtype policy)
    got = np.asarray(run(y, values), np.float64)
    want = sd.evaluate(y, {"X": values})
    np.testing.assert_array_equal(got, want)
    numpy_type = {"bf16": ml_dtypes.bfloat16, "f16": np.float16, "f32": np.float32}[dst]
    assert run(y, values).dtype == numpy_type


def test_reference_rounds_as_ml_dtypes():
    x = sd.placeholder("X", EDGES.shape, "bf16")
    assert np.array_equal(sd.evaluate(sd.cast(x, "f32"), {"X": EDGES}),
                          EDGES.astype(ml_dtypes.bfloat16).astype(np.float64))
    # tf32: 10 mantissa bits, ties away from zero
    assert list(round_tf32(np.array([1 + 2**-11, 1 + 2**-12, -1 - 2**-11]))) == [1 + 2**-10, 1.0, -1 - 2**-10]


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_sums_accumulate_in_f32(dtype):
    """1024 ones: a bf16 accumulator would stop at 256 (256 + 1 rounds back to 256), an f16
    one at 2048 only later; f32 gets 1024 exactly, under the default schedule and under one
    whose reduction loop is outermost (the accumulator then sits in a loop of its own)."""
    x = sd.placeholder("X", (4, 1024), dtype)
    total = sd.reduce(x, "sum", 1)
    one = numpy_dtype(dtype)
    assert list(run(total, np.ones((4, 1024), one))) == [1024.0] * 4
    a, b = sd.placeholder("A", (2, 1024), dtype), sd.placeholder("B", (1024, 3), dtype)
    c = sd.matmul(a, b)
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    s.reorder(k, i, j)
    got = run(c, np.ones((2, 1024), one), np.ones((1024, 3), one), schedule=s)
    np.testing.assert_array_equal(np.asarray(got, np.float64), np.full((2, 3), 1024.0))


def test_f32_result_of_bf16_products():
    a, b = sd.placeholder("A", (3, 300), "bf16"), sd.placeholder("B", (300, 2), "bf16")
    c = sd.matmul(a, b, out_dtype="f32")
    rng = np.random.default_rng(1)
    va = rng.uniform(0.5, 1.5, (3, 300)).astype(ml_dtypes.bfloat16)
    vb = rng.uniform(0.5, 1.5, (300, 2)).astype(ml_dtypes.bfloat16)
    got = run(c, va, vb)
    assert got.dtype == np.float32
    # bf16 inputs, products exact in f32, sums in f32: far closer than one bf16 ulp of the result
    np.testing.assert_allclose(got, sd.evaluate(c, {"A": va, "B": vb}), rtol=1e-5)


def test_tolerances_come_from_the_types():
    f = sd.placeholder("X", (3,))
    assert sdt.tolerance(sd.relu(f)) == (1e-4, 1e-5)
    assert sdt.tolerance(sd.relu(sd.placeholder("X", (3,), "bf16"))) == (8 * 2**-8, 4 * 2**-8)
    assert sdt.tolerance(sd.relu(sd.placeholder("X", (3,), "f16"))) == (8 * 2**-11, 4 * 2**-11)
    tf = sd.matmul(sd.placeholder("A", (2, 2)), sd.placeholder("B", (2, 2)), precision="tf32")
    assert sdt.tolerance(tf) == (4 * 2**-10, 2 * 2**-10)


def test_the_derived_tolerance_rejects_a_wrong_result():
    """The tolerance is not vacuous: a bf16 product off by 10% lies outside it."""
    x, scale = sd.placeholder("X", (8,), "bf16"), sd.placeholder("S", (8,), "bf16")
    y = sd.mul(x, scale)
    ones = np.ones(8, ml_dtypes.bfloat16)
    got = run(y, ones, ones).astype(np.float64)
    want = sd.evaluate(y, {"X": ones, "S": np.full(8, 1.1, np.float32)})
    rtol, atol = sdt.tolerance(y)
    assert np.all(np.abs(got - want) > atol + rtol * np.abs(want))


@pytest.mark.parametrize("make,message", [
    (lambda: sd.add(sd.placeholder("A", (2,), "bf16"), sd.placeholder("B", (2,))),
     "binary 'add': operands are bf16 and f32; give them one element type with an explicit cast"),
    (lambda: sd.matmul(sd.placeholder("A", (2, 2), "f16"), sd.placeholder("B", (2, 2), "f16"), precision="tf32"),
     "matmul: compute mode tf32 is for f32 tensors, the operands are f16"),
    (lambda: sd.matmul(sd.placeholder("A", (2, 2), "f16"), sd.placeholder("B", (2, 2), "f16"), out_dtype="bf16"),
     "result type bf16 must be the operands' type f16 or f32"),
    (lambda: sd.cast(sd.placeholder("A", (2,)), "i32"), "cast: dtype 'i32' is not one of f32, f16, bf16"),
    (lambda: sd.matmul(sd.placeholder("A", (2, 2)), sd.placeholder("B", (2, 2)), precision="fp8"),
     "precision 'fp8' is not supported"),
])
def test_bad_type_combinations_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bound_loop_inside_a_bf16_sum_is_a_schedule_error():
    c = sd.matmul(sd.placeholder("A", (4, 8), "bf16"), sd.placeholder("B", (8, 4), "bf16"), name="C")
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    s.reorder(k, i, j)
    s.bind(j, "thread.x")
    with pytest.raises(sd.ScheduleError, match="stage 'C' sums into a bf16 output: bound loop 'j' lies inside "
                       "reduction loop 'k'"):
        sd.lower(c, s)


def test_element_types_are_part_of_the_workload():
    def key(dtype, **kw):
        a, b = sd.placeholder("A", (4, 8), dtype), sd.placeholder("B", (8, 4), dtype)
        return workload_of([sd.matmul(a, b, **kw)], "cuda", "H200").key

    assert key("f32") == "matmul|A=4x8,B=8x4|cuda|H200"  # f32 keys are as before
    keys = {key("f32"), key("bf16"), key("f16"), key("bf16", out_dtype="f32"), key("f32", precision="tf32")}
    assert len(keys) == 5
    assert key("bf16") == "matmul|A=4x8:bf16,B=8x4:bf16->bf16|cuda|H200"


@needs_nvcc
def test_reduced_precision_cuda_text_compiles(tmp_path):
    x = sd.placeholder("X", (2, 3, 6, 6), "bf16")
    w = sd.placeholder("W", (4, 3, 3, 3), "bf16")
    y = sd.softmax(sd.relu(sd.conv2d(x, w, padding=1)), axis=1)
    h = sd.cast(sd.reduce(sd.cast(y, "f16"), "mean", (2, 3)), "f32")
    src = sd.lower(h, target="cuda").source
    assert "__nv_bfloat16" in src and "__half" in src and "#include <cuda_bf16.h>" in src
    path = tmp_path / "k.cu"
    path.write_text(src)
    r = subprocess.run(["nvcc", "-arch=sm_90", "--ptx", "-O1", str(path), "-o", str(tmp_path / "k.ptx")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- whole models in reduced precision (load_onnx(precision=...), tensorop-precision) -----------

@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    import onnx
    from model_files import make_models

    mm = make_models()
    d = tmp_path_factory.mktemp("models")
    onnx.save(mm.MODELS["tiny"](32), str(d / "tiny.onnx"))
    onnx.save(mm.MODELS["ssd"](32), str(d / "ssd.onnx"))
    return d


# largest error over the largest output value, against onnxruntime's f32 (measured on these
# randomly initialised models: tiny 3.8e-3 / 5.9e-4, ssd 5.4e-3 / 6.3e-4 in bf16 / fp16;
# tf32 runs as f32 on the CPU device)
MODEL_TOLERANCE = {"bf16": 3e-2, "fp16": 4e-3, "tf32": 1e-3}


@pytest.mark.parametrize("precision", ["bf16", "fp16", "tf32"])
def test_small_model_in_reduced_precision_matches_onnxruntime(small_models, precision):
    from model_files import assert_matches_onnxruntime

    path = small_models / "tiny.onnx"
    sess = sd.load_onnx(str(path), precision=precision)
    tol = MODEL_TOLERANCE[precision]
    assert_matches_onnxruntime(sess, path, rtol=tol, atol=tol)
    if precision != "tf32":
        dtype = "bf16" if precision == "bf16" else "f16"
        assert f"xf32>) -> tensor<" in sess.ir and f"x{dtype}>" in sess.ir
        assert "tensorop.cast" in sess.ir  # the f32 input enters, and the result leaves, through casts
    else:
        assert 'compute = "tf32"' in sess.ir


def tail_model():
    """conv, relu, global average pool (an f32 reduction in reduced precision), gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype(np.float32), n)
             for n, s in (("w", (32, 16, 3, 3)), ("b", (32,)), ("fw", (10, 32)), ("fb", (10,)))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="c"),
             helper.make_node("Relu", ["c"], ["r"], name="r"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="g"),
             helper.make_node("Flatten", ["g"], ["f"], name="f"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1, name="y")]
    graph = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_casts_fuse_into_the_kernel_before_them(tmp_path, precision):
    """The casts around an f32 reduction join their producers' kernels: 4 kernels (7 when casts
    did not fuse, 10 unfused)."""
    import onnx
    from model_files import assert_matches_onnxruntime

    path = tmp_path / "tail.onnx"
    onnx.save(tail_model(), str(path))
    x = np.random.default_rng(1).standard_normal((1, 16, 8, 8)).astype(np.float32)
    sess = sd.load_onnx(str(path), precision=precision)
    low = "bf16" if precision == "bf16" else "f16"
    layers = [layer for layer, kind, _ in sess.profile({"x": x}) if kind == "kernel"]
    assert layers == [f"x_{low}", "c+c_bias+r+r_f32", f"g+g_{low}", "y+y_bias+y_bias_f32"]
    assert sd.load_onnx(str(path), precision=precision, fuse=False).kernel_count == 10
    assert_matches_onnxruntime(sess, path, rtol=MODEL_TOLERANCE[precision], atol=MODEL_TOLERANCE[precision])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_fused_cast_rounds_where_the_ops_apart_would(tmp_path, precision):
    """relu(x) * 3 in reduced precision is one kernel (the input's cast, relu, mul, the
    output's cast), and it rounds as each op storing its result would: the product 3r is
    rounded to the low type before the f32 output takes it (exact, as 3r and its rounding are)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"), helper.make_node("Mul", ["r", "three"], ["y"], name="y")]
    graph = helper.make_graph(nodes, "relu3", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])],
                              [numpy_helper.from_array(np.array(3, np.float32), "three")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32) * 100
    sess = sd.load_onnx(str(tmp_path / "m.onnx"), precision=precision)
    assert sess.kernel_count == 1
    low = ml_dtypes.bfloat16 if precision == "bf16" else np.float16
    r = np.maximum(x.astype(low).astype(np.float32), 0)
    want = (3 * r).astype(low).astype(np.float32)
    assert not np.array_equal(3 * r, want)  # the rounding is there to be missed
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], want)


def test_detection_model_keeps_softmax_and_nms_in_f32(small_models):
    """bf16 convs, f32 softmax and NMS. The float outputs match onnxruntime within bf16's
    tolerance; the indices (top-k, NMS) are those of our own scores and boxes: a bf16 rounding
    may rightly change which of two close boxes is kept, and a device with FMA contraction
    rounds differently from one without."""
    import onnxruntime as ort
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    path = small_models / "ssd.onnx"
    sess = sd.load_onnx(str(path), precision="bf16")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    boxes, scores, values, indices, selected = sess.run(None, {"input": x})
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    tol = MODEL_TOLERANCE["bf16"]
    for got, ref in zip((boxes, scores, values), want[:3]):
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    assert indices.dtype == selected.dtype == np.int64
    best = scores.max(axis=1)
    np.testing.assert_array_equal(np.take_along_axis(best, indices, 1), values)
    assert values.min() >= np.delete(best[0], indices[0]).max(initial=-np.inf)
    nms = helper.make_model(helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["b", "s", "m", "i", "t"], ["y"])], "nms",
        [helper.make_tensor_value_info(n, 1, None) for n in "bsit"] + [helper.make_tensor_value_info("m", 7, None)],
        [helper.make_tensor_value_info("y", 7, None)]), opset_imports=[helper.make_opsetid("", 13)])
    (ref_selected,) = ReferenceEvaluator(nms).run(None, {"b": boxes, "s": scores, "m": np.array([5], np.int64),
                                                        "i": np.array([0.5], np.float32),
                                                        "t": np.array([0.05], np.float32)})
    np.testing.assert_array_equal(selected, ref_selected)
    softmax = next(line for line in sess.ir.splitlines() if "tensorop.softmax" in line)
    assert "xbf16" not in softmax


def test_precision_pass_refuses_what_it_cannot_mean(small_models):
    with pytest.raises(sd.GraphError, match="precision 'fp8' is not one of bf16, fp16, tf32"):
        sd.load_onnx(str(small_models / "tiny.onnx"), precision="fp8")


def test_sched_run_precision(small_models):
    sched_run = str(pathlib.Path(sys.executable).parent / "sched-run")
    r = subprocess.run([sched_run, str(small_models / "tiny.onnx"), "--precision", "bf16", "--repeat", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_check_each_pass_runs_bf16_ir():
    from sched_dsl.testing.check import check_each_pass

    c = sd.relu(sd.matmul(sd.placeholder("A", (8, 16), "bf16"), sd.placeholder("B", (16, 8), "bf16")))
    results = check_each_pass(sd.Schedule(c).module(), "tensorop-to-loops,apply-schedule,loops-to-gpu")
    assert len(results) == 4 and all(r.ok and r.checked for r in results)


def test_reduced_precision_inputs_follow_the_dtype_policy():
    """An f16/bf16 input takes arrays of its type (or small integers); float32 would round, so
    it is refused with the fix."""
    y = sd.relu(sd.placeholder("X", (4,), "bf16"))
    with pytest.raises(TypeError, match=r"input 'X' has dtype float32, expected bfloat16 .*ml_dtypes\.bfloat16"):
        run(y, np.ones(4, np.float32))
    assert run(y, np.arange(4, dtype=np.int8)).tolist() == [0.0, 1.0, 2.0, 3.0]


def as_fp16(model):
    """The model as an fp16 exporter writes it: float16 weights, inputs and outputs."""
    import onnx
    from onnx import TensorProto, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for k, t in enumerate(m.graph.initializer):
        if t.data_type == TensorProto.FLOAT:
            m.graph.initializer[k].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for v in [*m.graph.input, *m.graph.output]:
        v.type.tensor_type.elem_type = TensorProto.FLOAT16
    del m.graph.value_info[:]
    return m


def test_fp16_model_imports_as_it_is(small_models):
    """An fp16 model runs at precision fp16 without being asked: float16 in and out, and
    within fp16's tolerance of onnxruntime on the f32 model it came from."""
    import onnx
    import onnxruntime as ort

    f32_model = onnx.load(str(small_models / "tiny.onnx"))
    sess = sd.load_onnx(as_fp16(f32_model))
    assert "xf16>" in sess.ir and "tensorop.cast" in sess.ir
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float16)
    (got,) = sess.run(None, {"input": x})
    assert got.dtype == np.float16
    (want,) = ort.InferenceSession(f32_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.astype(np.float32)})
    tol = MODEL_TOLERANCE["fp16"] * np.abs(want).max()
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=0, atol=tol)
    # asked for another precision, it runs at that one
    assert "xbf16>" in sd.load_onnx(as_fp16(f32_model), precision="bf16").ir
