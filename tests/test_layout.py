"""Layouts: conv2d and pool2d in NHWC (channels last) against their numpy meaning, on PoCL, and
tensorop-convert-layout on models (its IR in tests/filecheck/graph/convert_layout.mlir)."""

import numpy as np
import onnx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import sched_dsl as sd
from sched_dsl import reference
from sched_dsl.dialects import tensorop as T
from sched_dsl.graph.model_schedules import choose_conv_algorithm
from sched_dsl.lowering.conv_to_gemm import gemm_refusal, mark, winograd_refusal
from sched_dsl.lowering.convert_layout import convert_function, region_pays, regions
from sched_dsl.records import workload_of
from sched_dsl.tensor import module_of
from tests.model_files import assert_matches_onnxruntime

rng = np.random.default_rng(0)


def nhwc(a):
    return a.transpose(0, 2, 3, 1)


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    cg, fg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if draw(st.booleans()):
        cg, fg = 1, 1  # depthwise
    return {"n": draw(st.integers(1, 2)), "c": groups * cg, "f": groups * fg, "groups": groups,
            "h": draw(st.integers(1, 7)), "w": draw(st.integers(1, 7)),
            "k": (draw(st.integers(1, 3)), draw(st.integers(1, 3))), "stride": (draw(st.integers(1, 3)),) * 2,
            "dilation": (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
            "padding": tuple(draw(st.integers(0, 2)) for _ in range(4))}


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_nhwc_conv_meaning_is_the_nchw_meaning_transposed(case):
    try:
        T.conv2d_shape((case["n"], case["c"], case["h"], case["w"]), (case["f"], case["c"] // case["groups"],
                       *case["k"]), case["stride"], case["padding"], case["dilation"], case["groups"])
    except T.ShapeError:
        assume(False)
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    w = rng.standard_normal((case["f"], case["c"] // case["groups"], *case["k"]))
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    want = nhwc(reference.conv2d(x, w, *args))
    got = reference.conv2d(nhwc(x), w, *args, layout="NHWC")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert T.conv2d_shape(nhwc(x).shape, w.shape, *args, layout="NHWC") == got.shape


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["max", "avg"]), k=st.integers(1, 3), stride=st.integers(1, 3), pad=st.integers(0, 2),
       dil=st.integers(1, 2), ceil_mode=st.booleans(), include_pad=st.booleans(), h=st.integers(1, 7),
       w=st.integers(1, 7))
def test_nhwc_pool_meaning_is_the_nchw_meaning_transposed(kind, k, stride, pad, dil, ceil_mode, include_pad, h, w):
    dil = 1 if kind == "avg" else dil
    window = ((k, k), (stride, stride), (pad, pad, pad, pad), (dil, dil), ceil_mode)
    try:
        T.pool2d_shape((1, 3, h, w), *window)
    except T.ShapeError:
        assume(False)
    x = rng.standard_normal((2, 3, h, w))
    want = nhwc(reference.pool2d(x, kind, *window[:4], ceil_mode, include_pad))
    got = reference.pool2d(nhwc(x), kind, *window[:4], ceil_mode, include_pad, layout="NHWC")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


CONVS = [  # (x NCHW, w, stride, padding, dilation, groups)
    ((2, 4, 7, 6), (6, 2, 3, 3), (2, 1), (1, 0, 2, 1), (1, 1), 2),  # grouped, strided, uneven padding
    ((1, 5, 6, 6), (5, 1, 3, 3), 1, 1, 1, 5),  # depthwise
    ((1, 3, 8, 7), (4, 3, 2, 3), 1, (0, 2, 1, 0), 2, 1),  # dilated
    ((2, 6, 5, 5), (8, 6, 1, 1), 1, 0, 1, 1),  # 1x1
]


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", CONVS)
def test_nhwc_conv_on_pocl_matches_numpy(x_shape, w_shape, stride, padding, dilation, groups):
    x = sd.placeholder("x", nhwc(np.empty(x_shape)).shape)
    w = sd.placeholder("w", w_shape)
    y = sd.conv2d(x, w, stride, padding, dilation, groups, name="y", layout="NHWC")
    xa, wa = rng.standard_normal(x.shape, dtype=np.float32), rng.standard_normal(w_shape, dtype=np.float32)
    got = sd.build(y)(xa, wa)
    want = sd.evaluate(y, {"x": xa, "w": wa})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # the same conv in NCHW, transposed
    xn = sd.placeholder("x", x_shape)
    np.testing.assert_allclose(got, nhwc(sd.evaluate(sd.conv2d(xn, w, stride, padding, dilation, groups),
                                                     {"x": xa.transpose(0, 3, 1, 2), "w": wa})), rtol=1e-4, atol=1e-5)


POOLS = [  # kind, kernel, stride, padding, dilation, ceil_mode, count_include_pad
    ("max", 3, 2, 1, 1, True, False),
    ("max", 2, 1, 0, 2, False, False),
    ("avg", 3, 2, (1, 0, 1, 1), 1, True, False),
    ("avg", 2, 2, 1, 1, False, True),
]


@pytest.mark.parametrize("kind,kernel,stride,padding,dilation,ceil_mode,include_pad", POOLS)
def test_nhwc_pool_on_pocl_matches_numpy(kind, kernel, stride, padding, dilation, ceil_mode, include_pad):
    x = sd.placeholder("x", (2, 7, 6, 3))
    y = sd.pool2d(x, kind, kernel, stride, padding, name="y", dilation=dilation, ceil_mode=ceil_mode,
                  count_include_pad=include_pad, layout="NHWC")
    xa = rng.standard_normal(x.shape, dtype=np.float32)
    np.testing.assert_allclose(sd.build(y)(xa), sd.evaluate(y, {"x": xa}), rtol=1e-5, atol=1e-6)


def test_nhwc_conv_with_bias_and_relu_fused_on_pocl():
    """bias_add along axis 3 of an NHWC conv, fused into the conv's write-back."""
    x, w, b = sd.placeholder("x", (1, 5, 5, 4)), sd.placeholder("w", (6, 4, 3, 3)), sd.placeholder("b", (6,))
    y = sd.relu(sd.bias_add(sd.conv2d(x, w, padding=1, layout="NHWC", name="c"), b, axis=3), name="y")
    kern = sd.build(y, pipeline="tensorop-fuse,tensorop-to-loops,apply-schedule,loops-to-gpu")
    assert len(kern.lowered.plan.launches) == 1  # one kernel: the chain fused
    feeds = {"x": rng.standard_normal(x.shape, dtype=np.float32), "w": rng.standard_normal(w.shape, dtype=np.float32),
             "b": rng.standard_normal(6, dtype=np.float32)}
    np.testing.assert_allclose(kern(feeds["x"], feeds["w"], feeds["b"]), sd.evaluate(y, feeds), rtol=1e-4, atol=1e-5)


def test_bad_layouts_are_errors_naming_the_choices():
    x, w = sd.placeholder("x", (1, 4, 4, 3)), sd.placeholder("w", (2, 3, 1, 1))
    with pytest.raises(ValueError, match=r"conv2d: layout 'NWHC' is not one of NCHW, NHWC"):
        sd.conv2d(x, w, layout="NWHC")
    with pytest.raises(ValueError, match=r"pool2d: layout 'nhwc' is not one of NCHW, NHWC"):
        sd.pool2d(x, "max", 2, layout="nhwc")
    with pytest.raises(T.ShapeError, match=r"conv2d weights have 3 channels per group, input gives 4/1"):
        sd.conv2d(sd.placeholder("x", (1, 4, 4, 3)), sd.placeholder("w", (2, 3, 1, 1)))  # read as NCHW: 4 channels


def test_layout_is_part_of_the_workload_key():
    x, w = sd.placeholder("X", (1, 4, 4, 3)), sd.placeholder("W", (2, 3, 1, 1))
    key = workload_of([sd.conv2d(x, w, name="Y", layout="NHWC")], "opencl", "dev").key
    assert "layout=NHWC" in key
    assert "layout" not in workload_of([sd.conv2d(sd.placeholder("X", (1, 3, 4, 4)), w, name="Y")], "opencl",
                                       "dev").key  # NCHW keys stay as they were


def convs_of(*outputs):
    module, _, _ = module_of(list(outputs))
    return module, [op for op in module.walk() if isinstance(op, T.Conv2dOp)]


def test_gemm_and_winograd_refuse_nhwc_convs_and_the_choice_falls_back():
    x, w3, w1 = sd.placeholder("x", (2, 6, 6, 4)), sd.placeholder("w3", (4, 4, 3, 3)), sd.placeholder("w1", (8, 4, 1, 1))
    _, (c3, c1) = convs_of(sd.conv2d(x, w3, padding=1, layout="NHWC"), sd.conv2d(x, w1, layout="NHWC"))
    assert "NHWC" in gemm_refusal(c3) and "NCHW" in winograd_refusal(c3)
    assert choose_conv_algorithm(c3, "winograd", False) == "direct"
    assert choose_conv_algorithm(c3, "gemm", False) == "direct"
    # a 1x1 NHWC conv is one product at any batch; in NCHW, batch 2 is refused
    assert gemm_refusal(c1) is None and choose_conv_algorithm(c1, "gemm", False) == "gemm"
    _, (n1,) = convs_of(sd.conv2d(sd.placeholder("x", (2, 4, 6, 6)), w1))
    assert "batch is 2" in gemm_refusal(n1)


def test_auto_leaves_regions_whose_transposes_outweigh_their_work():
    # a 1x1 conv at batch 2 prefers NHWC, but 8 -> 8 channels do 4 multiply-adds per element moved
    x, w = sd.placeholder("x", (2, 8, 4, 4)), sd.placeholder("w", (8, 8, 1, 1))
    module, _ = convs_of(sd.relu(sd.conv2d(x, w, name="c"), name="y"))
    fn = module.ops.first
    (region,) = regions(list(fn.body.block.ops))
    assert [op.stage_name for op in region] == ["c", "y"] and not region_pays(region)
    assert convert_function(fn, "auto") == 0
    assert convert_function(fn, "NHWC") == 1
    module.verify()
    assert [op.name for op in fn.body.block.ops][:4] == ["tensorop.remap", "tensorop.conv2d", "tensorop.unary",
                                                         "tensorop.remap"]


def test_a_conv_marked_winograd_stays_nchw():
    x, w = sd.placeholder("x", (1, 4, 6, 6)), sd.placeholder("w", (4, 4, 3, 3))
    module, (conv,) = convs_of(sd.conv2d(x, w, padding=1, name="c"))
    mark(conv, "winograd")
    assert convert_function(module.ops.first, "NHWC") == 0
    assert conv.data_layout() == "NCHW"


def small_model(path):
    """Batch 2: a conv with bias and relu, a max pool, a 1x1 conv and a depthwise conv
    concatenated along the channels, a ceil-mode average pool, a softmax over the channels."""
    def w(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], kernel_shape=[1, 1], name="conv2"),
             helper.make_node("Conv", ["p1", "w3"], ["c3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8,
                              name="dw"),
             helper.make_node("Concat", ["c2", "c3"], ["cc"], axis=1, name="cat"),
             helper.make_node("AveragePool", ["cc"], ["p2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              ceil_mode=1, name="pool2"),
             helper.make_node("Softmax", ["p2"], ["y"], axis=1, name="sm")]
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [w("w1", 8, 4, 3, 3), w("b1", 8), w("w2", 8, 8, 1, 1), w("w3", 8, 1, 3, 3)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.mark.parametrize("layout,conv_algorithm", [("NHWC", "direct"), ("auto", "gemm")])
def test_model_in_nhwc_matches_onnxruntime(tmp_path, layout, conv_algorithm):
    path = small_model(tmp_path / "small.onnx")
    sess = sd.load_onnx(path, layout=layout, conv_algorithm=conv_algorithm)
    assert_matches_onnxruntime(sess, path)
    # one transpose in (x), one out (before the softmax); the 3 convs and 2 pools in NHWC
    assert sess.ir.count("tensorop.remap") == 2 and sess.ir.count('layout = "NHWC"') == 5 - (conv_algorithm == "gemm")
    if conv_algorithm == "gemm":  # the 1x1 conv at batch 2 is one product, its weights transposed at load
        assert "%conv2_gemm = tensorop.matmul %conv2_rows, %conv2_wt" in sess.ir


def test_load_onnx_rejects_bad_layouts(tmp_path):
    path = small_model(tmp_path / "small.onnx")
    with pytest.raises(sd.GraphError, match=r"layout 'nhwc' is not one of NCHW, NHWC, auto"):
        sd.load_onnx(path, layout="nhwc")
    with pytest.raises(sd.GraphError, match=r"layout 'NHWC' runs on one device"):
        sd.load_onnx(path, layout="NHWC", devices=2)


def test_sched_run_layout(tmp_path, capsys):
    from sched_dsl.cli.run import main

    path = small_model(tmp_path / "small.onnx")
    assert main([str(path), "--layout", "NHWC", "--repeat", "1", "--print-ir"]) == 0
    out = capsys.readouterr().out
    assert '%x_nhwc = tensorop.remap %x' in out and "output y: shape (2, 16, 3, 3) float32" in out
    with pytest.raises(SystemExit):
        main([str(path), "--layout", "NWHC"])
    assert "argument --layout: invalid choice: 'NWHC'" in capsys.readouterr().err
