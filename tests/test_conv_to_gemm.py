"""conv2d as a matmul (tensorop-conv-to-gemm) and its windows' op (tensorop.im2col), and as
Winograd's transforms and a batched matmul: the ops' meanings and lowerings, the rewrites on
models against onnxruntime (f32 and bf16), which convs `conv_algorithm` picks, and the CUDA
text of tensor-core convs (nvcc, no GPU needed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from xdsl.ir import Block

import sched_dsl as sd
from gpu_cases import needs_nvcc
from model_files import assert_matches_onnxruntime
from sched_dsl.dialects import tensorop as T
from sched_dsl.graph.executor import GraphError, plan_steps, prepare, recorded_times
from sched_dsl.graph.model_schedules import (anchor_workload, choose_conv_algorithm, gemm_is_whole, gemm_split,
                                             gemm_workload, matmul_workload, winograd_workloads)
from sched_dsl.graph.onnx_import import import_onnx
from sched_dsl.lowering.conv_to_gemm import mark
from sched_dsl.lowering.precision import lower_precision
from sched_dsl.records import Record, RecordsWriter, workload_of
from sched_dsl.reference import conv2d as conv2d_reference


@st.composite
def windows(draw):
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    try:
        T.conv2d_shape((1, c, h, w), (1, c, kh, kw), stride, padding, dilation, 1)
    except T.ShapeError:
        return draw(windows())
    return (c, h, w, (kh, kw), stride, padding, dilation, draw(st.integers(0, 5)), draw(st.integers(0, 3)),
            draw(st.integers(0, 9)))


@settings(max_examples=12, deadline=None, derandomize=True)
@given(windows())
def test_im2col_lowers_to_its_meaning(win):
    """The kernel equals sd.evaluate's numpy meaning, zero padding rows and columns (within
    output rows, and after the last) included; and the weights' matrix times the meaning is
    conv2d's reference."""
    c, h, w, kernel, stride, padding, dilation, extra_rows, extra_width, extra_columns = win
    x = sd.placeholder("X", (1, c, h, w))
    oh, ow = T.conv2d_shape((1, c, h, w), (1, c, *kernel), stride, padding, dilation, 1)[2:]
    k = c * kernel[0] * kernel[1]
    cols = sd.im2col(x, kernel, stride, padding, dilation, rows=k + extra_rows, width=ow + extra_width, name="cols",
                     columns=oh * (ow + extra_width) + extra_columns)
    assert cols.shape == (k + extra_rows, oh * (ow + extra_width) + extra_columns)
    a = np.random.default_rng(0).standard_normal((1, c, h, w)).astype(np.float32)
    want = sd.evaluate(cols, {"X": a})
    np.testing.assert_array_equal(sd.build(cols, target="opencl")(a), want)
    wt = np.random.default_rng(1).standard_normal((3, c, *kernel))
    conv = conv2d_reference(a.astype(np.float64), wt, stride, padding, dilation, 1)
    assert not want[:, oh * (ow + extra_width):].any()
    product = (wt.reshape(3, k) @ want[:k, :oh * (ow + extra_width)]).reshape(3, oh, ow + extra_width)[:, :, :ow]
    np.testing.assert_allclose(product, conv[0], rtol=1e-10, atol=1e-10)


def test_im2col_refuses_rows_and_widths_below_the_windows():
    x = sd.placeholder("X", (1, 2, 5, 5))
    with pytest.raises(T.ShapeError, match="rows=10 and width=0 must be at least the window's 18 rows"):
        sd.im2col(x, 3, rows=10)
    with pytest.raises(T.ShapeError, match="width=2 must be at least .* the output's 3 columns"):
        sd.im2col(x, 3, width=2)
    with pytest.raises(T.ShapeError, match="im2col needs an NCHW input"):
        sd.im2col(sd.placeholder("Y", (2, 5, 5)), 3)
    with pytest.raises(T.ShapeError, match="im2col columns=8 must be at least the 9 windows"):
        sd.im2col(x, 3, columns=8)


def test_matmul_columns_keep_the_first_columns_of_the_product():
    """matmul(columns=n): the first n columns of A @ B, on the device and in the meaning; out
    of range is an error naming the bound."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal((7, 12)).astype(np.float32)
    c = sd.matmul(sd.placeholder("A", (5, 7)), sd.placeholder("B", (7, 12)), name="C", columns=9)
    assert c.shape == (5, 9)
    np.testing.assert_allclose(sd.build(c, target="opencl")(a, b), (a @ b)[:, :9], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sd.evaluate(c, {"A": a, "B": b}), (a @ b)[:, :9], rtol=1e-5, atol=1e-5)
    for bad in (0, 13):
        with pytest.raises(T.ShapeError, match=f"matmul columns={bad} must be between 1 and the product's 12"):
            sd.matmul(sd.placeholder("A", (5, 7)), sd.placeholder("B", (7, 12)), columns=bad)


def test_slice_keeps_its_input_type():
    x = Block(arg_types=[T.tensor_type((2, 8), "bf16")]).args[0]
    assert T.dtype_of(T.SliceOp(x, "s", 1, 0, 4).result) == "bf16"


# ---- models --------------------------------------------------------------------------------

def conv_model() -> onnx.ModelProto:
    """Convs of every kind the rewrite meets: 3x3 with bias, residual add and relu (the chain
    moves into the product), 1x1 (no im2col), 1x1 stride 2, 7x7 stride 2 over 3 channels (147
    rows: padded in bf16), 5x5 over 32 channels (800 rows: split-K in bf16), dilated, a
    residual that broadcasts per channel, and a grouped conv (stays a conv)."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def weight(name, shape):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name))
        return name

    def conv(name, x, w_shape, **attrs):
        nodes.append(helper.make_node("Conv", [x, weight(name + "_w", w_shape), weight(name + "_b", w_shape[:1])],
                                      [name], name=name, **attrs))
        return name

    stem = conv("stem", "x", (16, 3, 7, 7), strides=[2, 2], pads=[3, 3, 3, 3])  # 16 x 8 x 8
    a = conv("a", stem, (16, 16, 3, 3), pads=[1, 1, 1, 1])
    nodes.append(helper.make_node("Add", [a, stem], ["a_add"], name="a_add"))
    nodes.append(helper.make_node("Relu", ["a_add"], ["a_relu"], name="a_relu"))
    pw = conv("pw", "a_relu", (32, 16, 1, 1))
    nodes.append(helper.make_node("Mul", [pw, weight("scale", (1, 32, 1, 1))], ["pw_scaled"], name="pw_scaled"))
    down = conv("down", "pw_scaled", (32, 32, 1, 1), strides=[2, 2])  # 32 x 4 x 4
    deep = conv("deep", down, (32, 32, 5, 5), pads=[2, 2, 2, 2])  # 800 rows: split in 2 in bf16
    dil = conv("dil", deep, (16, 32, 3, 3), pads=[1, 1, 1, 1], dilations=[2, 2])  # 16 x 2 x 2
    grp = conv("grp", dil, (16, 4, 3, 3), pads=[1, 1, 1, 1], group=4)
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info(grp, TensorProto.FLOAT, [1, 16, 2, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def conv_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("convs") / "convs.onnx"
    onnx.save(conv_model(), str(path))
    return path


def test_gemm_convs_match_onnxruntime(conv_path):
    sess = sd.load_onnx(str(conv_path), conv_algorithm="gemm")
    assert sess.ir.count("tensorop.conv2d") == 1  # the grouped one
    assert sess.ir.count("tensorop.im2col") == 5  # all but the 1x1 stride-1 conv
    # the chain after conv a (residual add, relu) runs in the product's write-back
    assert re.search(r'tensorop.unary %a_add_gemm {[^}]*group = "a_gemm"[^}]*name = "a_relu_gemm"', sess.ir)
    assert_matches_onnxruntime(sess, conv_path)
    direct = sd.load_onnx(str(conv_path), conv_algorithm="direct")
    assert direct.ir.count("tensorop.conv2d") == 7 and "im2col" not in direct.ir
    # conv a reads the stem's output and adds it: the add stays out of a's group (a caches it)
    assert not re.search(r'tensorop.binary [^\n]*group = "a"', direct.ir)
    assert_matches_onnxruntime(direct, conv_path)


def test_gemm_convs_in_bf16_pad_for_tensor_cores(conv_path):
    """bf16 products pad the stem's 147 window rows to 160 and the dilated conv's 2 x 2 = 4
    columns to 8 (the matmul keeps the first 4, and its bias fuses into it): the same numbers,
    within bf16's rounding."""
    sess = sd.load_onnx(str(conv_path), conv_algorithm="gemm", precision="bf16")
    assert "tensor<160x64xbf16>" in sess.ir
    assert re.search(r'tensorop.matmul %dil_wmat, %dil_cols {[^}]*columns = 4 : i64} : \(tensor<16x288xbf16>, '
                     r'tensor<288x8xbf16>\) -> tensor<16x4xbf16>', sess.ir)
    # the weights' reshape and zero padding are done once, at load: new weights, no kernels
    assert "%stem_wpad: tensor<16x160xbf16>" in sess.ir and "%stem_wpad = tensorop.remap" not in sess.ir
    assert "%stem_w:" not in sess.ir  # the original weights are no longer read
    # the deep conv's 800 rows in two slices of 400: a batched product, its partial sums added
    # by a reduce into which its bias fuses; the weights' slices made once, at load
    assert "%deep_wslices: tensor<2x32x400xbf16>" in sess.ir
    assert re.search(r"tensorop.matmul %deep_wslices, %deep_cslices .* -> tensor<2x32x16xbf16>", sess.ir)
    assert re.search(r'tensorop.bias_add %deep_sum, %deep_b {[^}]*group = "deep_sum"', sess.ir)
    assert re.search(r'tensorop.bias_add %dil_gemm, %dil_b {[^}]*group = "dil_gemm"', sess.ir)
    assert "remap %dil" not in sess.ir
    assert_matches_onnxruntime(sess, conv_path, rtol=5e-2, atol=3e-2)


def test_implicit_convs_gather_their_windows_where_the_product_reads_them(conv_path):
    """conv_algorithm "implicit": products on tensor cores (bf16) gather B = im2col(X) tile by
    tile (the im2col `computed_at` the product: no kernel of its own, its input read when the
    product runs); a product split in slices (deep: 800 rows) and the ones off tensor cores
    keep their im2col kernel; the same numbers."""
    gemm = sd.load_onnx(str(conv_path), conv_algorithm="gemm", precision="bf16")
    sess = sd.load_onnx(str(conv_path), conv_algorithm="implicit", precision="bf16")
    gathered = dict(re.findall(r'%(\w+)_cols = tensorop.im2col [^\n]*computed_at = "(\w+)"', sess.ir))
    assert gathered == {"stem": "stem_gemm", "a": "a_gemm", "down": "down_gemm"}, gathered
    assert "deep_sum" in sess.ir and "computed_at" not in gemm.ir
    # the dilated conv's 4 output columns take no tensor-core tile: its windows stay a kernel
    assert re.search(r"%dil_cols = tensorop.im2col [^\n]*gather", sess.ir) and "computed_at = \"dil" not in sess.ir
    kernels = {name for step in sess.steps if step.kind == "gpu" for name, _ in step.segment.units}
    assert not any("stem_cols" in k or "a_cols" in k for k in kernels) and any("dil_cols" in k for k in kernels)
    assert sess.kernel_count < gemm.kernel_count
    assert_matches_onnxruntime(sess, conv_path, rtol=5e-2, atol=3e-2)
    f32 = sd.load_onnx(str(conv_path), conv_algorithm="implicit")  # f32 products: no tensor cores
    assert "computed_at" not in f32.ir and f32.ir.count("tensorop.im2col") == 5
    assert_matches_onnxruntime(f32, conv_path)


def test_a_gathered_im2col_reads_its_input_when_its_product_runs(conv_path):
    """tensorop-plan-memory times a `computed_at` im2col at its product's kernel (the end of
    the product's fused chain), so its input's bytes stay untouched until then."""
    from sched_dsl.lowering.fuse import COMPUTED_AT
    from sched_dsl.lowering.plan_memory import launch_times, lifetimes, reshape_aliases

    g = import_onnx(str(conv_path))
    lower_precision(g.module, "bf16", set(g.input_args))
    fn = prepare(g.module, conv_algorithm="implicit", tensor_cores=True)
    ops = list(fn.body.block.ops)
    time = launch_times(ops)
    cols = next(op for op in ops if isinstance(op, T.Im2colOp) and op.stage_name == "a_cols")
    relu = next(op for op in ops if op.stage_name == "a_relu_gemm")  # the last of a's product group
    assert cols.attributes[COMPUTED_AT].data == "a_gemm"
    assert time[cols] == time[relu] > ops.index(cols) + 1  # the product and its chain stand between
    stem_bytes = reshape_aliases(fn).get(cols.input, cols.input)  # the stem's value, reshaped
    (stem,) = [i for i in lifetimes(fn) if i.value == stem_bytes]
    assert stem.end >= time[relu]


def test_marked_conv_that_cannot_be_a_product_is_an_error(conv_path):
    g = import_onnx(str(conv_path))
    mark(next(op for op in g.module.walk() if isinstance(op, T.Conv2dOp) and op.stage_name == "grp"), "gemm")
    with pytest.raises(GraphError, match="conv2d 'grp' is marked algorithm = \"gemm\", but it has groups=4"):
        prepare(g.module)
    with pytest.raises(GraphError, match="conv_algorithm 'fast' is not one of auto, direct, gemm, implicit, winograd"):
        sd.load_onnx(str(conv_path), conv_algorithm="fast")


def convs_of(path, precision=None):
    g = import_onnx(str(path))
    if precision:
        lower_precision(g.module, precision, set(g.input_args))
    return {op.stage_name: op for op in g.module.walk() if isinstance(op, T.Conv2dOp)}


def test_auto_takes_tensor_cores_where_the_product_fits(conv_path):
    f32, bf16 = convs_of(conv_path), convs_of(conv_path, "bf16")
    # f32 on a GPU with tensor cores: Winograd where it applies (3x3, stride 1, groups 1), else direct
    assert {n: choose_conv_algorithm(op, "auto", True) for n, op in f32.items()} == {**dict.fromkeys(f32, "direct"),
                                                                                    "a": "winograd"}
    picked = {n: choose_conv_algorithm(op, "auto", True) for n, op in bf16.items()}
    # m (filters) must be a multiple of 16 and n (outputs) at least an mma tile's 8: all but the
    # grouped conv and the dilated one's 2 x 2 outputs fit
    assert picked == {**dict.fromkeys(bf16, "gemm"), "grp": "direct", "dil": "direct"}
    assert {n: gemm_split(op) for n, op in bf16.items()} == {**dict.fromkeys(bf16, 1), "deep": 2}
    assert {gemm_split(op) for op in f32.values()} == {1}  # no tensor-core tiles to fill
    assert {choose_conv_algorithm(op, "auto", False) for op in bf16.values()} == {"direct"}
    assert choose_conv_algorithm(bf16["a"], "direct", True) == "direct"
    assert choose_conv_algorithm(f32["a"], "gemm", False) == "gemm"
    assert choose_conv_algorithm(f32["grp"], "gemm", False) == "direct"  # it cannot


def test_auto_takes_the_faster_form_the_records_time(conv_path, tmp_path):
    """A 1x1 conv tuned both ways: the records' faster form wins, either way round."""
    pw = convs_of(conv_path)["pw"]
    assert gemm_is_whole(pw) and not gemm_is_whole(convs_of(conv_path)["a"])
    direct_key = workload_of([anchor_workload(pw)[0]], "opencl", "dev").key
    gemm_key = workload_of([gemm_workload(pw)[0]], "opencl", "dev").key
    for direct_ms, gemm_ms, want in ((2.0, 1.0, "gemm"), (1.0, 2.0, "direct")):
        path = tmp_path / f"r{direct_ms}.jsonl"
        with RecordsWriter(str(path)) as w:
            w.append([Record(direct_key, {"fb": 1}, direct_ms), Record(gemm_key, {"ti": 1}, gemm_ms)])
        assert choose_conv_algorithm(pw, "auto", False, recorded_times("opencl", str(path), "dev")) == want
    # one form untimed: the rule decides (no tensor cores: direct)
    path = tmp_path / "one.jsonl"
    with RecordsWriter(str(path)) as w:
        w.append([Record(gemm_key, {"ti": 1}, 0.1)])
    assert choose_conv_algorithm(pw, "auto", False, recorded_times("opencl", str(path), "dev")) == "direct"


@needs_nvcc
def test_tensor_core_convs_reach_the_model_kernels(conv_path, tmp_path):
    """bf16 convs as products on a device with tensor cores: the model's CUDA text has the mma
    instructions and compiles for sm_90."""
    g = import_onnx(str(conv_path))
    lower_precision(g.module, "bf16", set(g.input_args))
    fn = prepare(g.module, conv_algorithm="auto", tensor_cores=True)
    steps, _ = plan_steps(fn, "cuda", None, tensor_cores=True)
    sources = [s.segment.source for s in steps if s.kind == "gpu"]
    assert sum(src.count("mma.sync.aligned.m16n8k16") for src in sources) >= 5
    for k, src in enumerate(sources):
        path = tmp_path / f"seg{k}.cu"
        path.write_text(src)
        run = subprocess.run([shutil.which("nvcc"), "-arch=sm_90", "--ptx", "-O1", str(path), "-o", str(path) + ".ptx"],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]


def test_tuning_times_1x1_convs_both_ways_and_load_takes_the_faster(tmp_path):
    """tune_model (conv_algorithm "auto") tunes a 1x1 conv as a conv and as its matmul; a
    load with those records runs the form whose best record is faster."""
    from sched_dsl.records import best, load
    from sched_dsl.tuner.models import tune_model

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((32, 16, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="pw")], "pw",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 8, 8])], [w])
    path, records = tmp_path / "pw.onnx", tmp_path / "pw.jsonl"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    results = tune_model(str(path), str(records), trials=2, batch=2)
    assert sorted(r.workload.split("|")[0].split("(")[0] for r in results) == ["conv2d", "matmul"]
    fastest = {k.split("|")[0].split("(")[0]: r.cost_ms for k, r in best(load(str(records))).items()}
    sess = sd.load_onnx(str(path), records=str(records))
    assert ("tensorop.matmul" in sess.ir) == (fastest["matmul"] < fastest["conv2d"])
    assert sess.tuned == ["pw_gemm" if fastest["matmul"] < fastest["conv2d"] else "pw"]
    assert_matches_onnxruntime(sess, path)


def test_auto_takes_winograd_where_the_records_time_its_kernels_faster(conv_path, tmp_path):
    """A 3x3 conv's direct time against the sum of its Winograd kernels' times (input
    transform, batched product, output transform): the faster wins; with a part untimed, or
    where the product goes to tensor cores by default, the rule decides."""
    a, a16 = convs_of(conv_path)["a"], convs_of(conv_path, "bf16")["a"]
    key = lambda y: workload_of([y], "opencl", "dev").key  # noqa: E731
    parts = [key(y) for y, _ in winograd_workloads(a)]
    assert [k.split("(")[0].split("|")[0] for k in parts] == ["winograd_input", "matmul", "winograd_output"]
    for part_ms, want in ((0.3, "winograd"), (0.4, "direct")):
        path = tmp_path / f"w{part_ms}.jsonl"
        with RecordsWriter(str(path)) as w:
            w.append([Record(key(anchor_workload(a)[0]), {"fb": 1}, 1.0)] +
                     [Record(k, {}, part_ms) for k in parts])
        assert choose_conv_algorithm(a, "auto", False, recorded_times("opencl", str(path), "dev")) == want
    assert choose_conv_algorithm(a, "auto", False, recorded_times("opencl", str(tmp_path / "w0.3.jsonl"), "dev")
                                 ) == "winograd"
    path = tmp_path / "two.jsonl"
    with RecordsWriter(str(path)) as w:
        w.append([Record(key(anchor_workload(a)[0]), {"fb": 1}, 1.0)] + [Record(k, {}, 0.01) for k in parts[:2]])
    assert choose_conv_algorithm(a, "auto", False, recorded_times("opencl", str(path), "dev")) == "direct"
    assert choose_conv_algorithm(a16, "auto", True, recorded_times("opencl", str(tmp_path / "w0.3.jsonl"), "dev")
                                 ) == "gemm"


def test_tuning_covers_both_forms_of_the_convs_auto_chooses_between(conv_path):
    """Whether the model runs a conv direct or as Winograd without records (a GPU, f32), the
    workloads tune_model tunes are the same: both forms of the 3x3 stride-1 conv, both of the
    1x1 stride-1 conv, and every other anchor once."""
    from sched_dsl.tuner.models import model_workloads

    def kinds(tensor_cores):
        return sorted(key.split("|")[0].split("(")[0] + "|" + key.split("|")[1]
                      for key, _, _ in model_workloads(str(conv_path), tensor_cores=tensor_cores))
    assert kinds(True) == kinds(False)
    assert [k for k in kinds(False) if "16x16x3x3" in k or k.startswith(("winograd", "matmul|A=36"))] == [
        "conv2d|X=1x16x8x8,W=16x16x3x3", "matmul|A=36x16x16,B=36x16x4", "winograd_input|X=1x16x8x8",
        "winograd_output|M=36x16x4"]
    assert "matmul|A=32x16,B=16x64" in kinds(False)  # the 1x1 conv's matmul


def test_tuning_times_winograd_kernels_and_load_takes_the_faster(tmp_path):
    """tune_model ("auto") tunes a 3x3 conv directly and its Winograd kernels (the output
    transform timed as it is); a load with those records runs the faster form, with the
    tuned configs, and matches onnxruntime."""
    from sched_dsl.records import best, load
    from sched_dsl.tuner.models import tune_model

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((32, 16, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c3", pads=[1, 1, 1, 1])], "c3",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 8, 8])], [w])
    path, records = tmp_path / "c3.onnx", tmp_path / "c3.jsonl"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    results = tune_model(str(path), str(records), trials=2, batch=2)
    # the input transform and the product tuned; the output transform (no knobs) timed
    assert sorted(r.workload.split("(")[0].split("|")[0] for r in results) == ["conv2d", "matmul", "winograd_input"]
    fastest = {k.split("(")[0].split("|")[0]: r.cost_ms for k, r in best(load(str(records))).items()}
    assert set(fastest) == {"conv2d", "matmul", "winograd_input", "winograd_output"}
    winograd = fastest["winograd_input"] + fastest["matmul"] + fastest["winograd_output"]
    sess = sd.load_onnx(str(path), records=str(records))
    assert ("tensorop.winograd_input" in sess.ir) == (winograd < fastest["conv2d"])
    assert sorted(sess.tuned) == (["c3_gemm", "c3_tiles"] if winograd < fastest["conv2d"] else ["c3"])
    assert_matches_onnxruntime(sess, path)
    sess = sd.load_onnx(str(path), records=str(records), conv_algorithm="winograd")
    assert sorted(sess.tuned) == ["c3_gemm", "c3_tiles"] and "c3_tiles.pp" in sess.config
    assert_matches_onnxruntime(sess, path)


def test_sched_run_takes_the_conv_algorithm(conv_path):
    from test_onnx_import import SCHED_RUN

    run = subprocess.run([SCHED_RUN, str(conv_path), "--conv-algorithm", "gemm", "--print-ir", "--repeat", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("tensorop.im2col") == 5 and "a_gemm+a_bias_gemm+a_add_gemm+a_relu_gemm" in run.stdout
    run = subprocess.run([SCHED_RUN, str(conv_path), "--conv-algorithm", "fft"], capture_output=True, text=True)
    assert run.returncode == 2 and "invalid choice: 'fft'" in run.stderr


@pytest.mark.parametrize("attrs, message", [
    ('algorithm = "fft"', 'algorithm must be one of direct, gemm, implicit, winograd, got "fft"'),
    ('algorithm = "winograd", winograd_tile = 3 : i64', "winograd_tile must be 2 or 4, got 3"),
    ('algorithm = "gemm", split_k = 0 : i64', "split_k must be an integer >= 1, got 0"),
    ('split_k = 2 : i64', 'split_k splits the product of algorithm = "gemm"; this conv has none'),
])
def test_marks_the_pass_does_not_know_are_located_errors(tmp_path, attrs, message):
    from test_onnx_import import SCHED_RUN

    path = tmp_path / "c.mlir"
    path.write_text(
        'func.func @main(%x: tensor<1x4x8x8xf32>, %w: tensor<8x4x3x3xf32>) -> tensor<1x8x8x8xf32> {\n'
        f'  %c = tensorop.conv2d %x, %w {{name = "conv", {attrs}, stride = array<i64: 1, 1>, padding = array<i64: 1, 1, '
        '1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<8x4x3x3xf32>) -> '
        'tensor<1x8x8x8xf32>\n  func.return %c : tensor<1x8x8x8xf32>\n}\n')
    run = subprocess.run([SCHED_RUN.replace("sched-run", "sched-opt"), str(path), "-p", "tensorop-conv-to-gemm"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and f"c.mlir:2:3: error: tensorop-conv-to-gemm: conv2d 'conv': {message}" in run.stderr


# ---- Winograd -------------------------------------------------------------------------------

@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.sampled_from((2, 4)), st.integers(1, 2), st.integers(1, 3), st.integers(3, 9), st.integers(3, 9),
       st.integers(1, 4), st.tuples(*[st.integers(0, 2)] * 4))
def test_winograd_transforms_lower_to_their_meaning(tile, n, c, h, w, f, padding):
    """Each transform's kernel equals its numpy meaning, and the output transform of the
    products of the transformed filters and tiles is conv2d's reference (batches included)."""
    x, wt = sd.placeholder("X", (n, c, h, w)), sd.placeholder("W", (f, c, 3, 3))
    try:
        oh, ow = T.conv2d_shape(x.shape, wt.shape, (1, 1), padding, (1, 1), 1)[2:]
    except T.ShapeError:
        return
    tiles, filters = sd.winograd_input(x, tile, padding, name="V"), sd.winograd_weights(wt, tile, name="U")
    out = sd.winograd_output(sd.matmul(filters, tiles, name="M"), tile, (oh, ow), name="Y")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(x.shape).astype(np.float32), rng.standard_normal(wt.shape).astype(np.float32)
    got = sd.build([tiles, filters, out], target="opencl")(a, b)
    want = sd.evaluate([tiles, filters, out], {"X": a, "W": b})
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(e).max())))
    conv = conv2d_reference(a.astype(np.float64), b.astype(np.float64), (1, 1), padding, (1, 1), 1)
    np.testing.assert_allclose(want[2], conv, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shape, tile, padding, dtype", [((1, 8, 8, 8), 4, (1, 1, 1, 1), "f32"),
                                                        ((2, 5, 7, 9), 2, (1, 0, 1, 2), "f32"),
                                                        ((1, 16, 6, 6), 2, (1, 1, 1, 1), "bf16")])
def test_winograd_input_template_at_every_knob_value(shape, tile, padding, dtype):
    """The input transform's template (a model's schedule for it, and a tuner's space): every
    position of a tile in one thread (pp = all, unrolled), a row of them (pp = tile + 2) or one
    (pp = 1), at each thread count."""
    import ml_dtypes

    from sched_dsl.graph.model_schedules import winograd_input_workload

    y, s = winograd_input_workload(shape, dtype, tile, padding)
    assert s.knobs["pp"].candidates == (1, tile + 2, (tile + 2) ** 2)
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if dtype == "bf16":
        a = a.astype(ml_dtypes.bfloat16)
    want = sd.evaluate(y, {"X": a})
    for pp in s.knobs["pp"].candidates:
        for threads in (256, 64):
            kern = sd.build(y, s, "opencl", config={"pp": pp, "threads": threads})
            got = np.asarray(kern(a), np.float32)
            np.testing.assert_allclose(got, np.asarray(want, np.float32), rtol=1e-2 if dtype == "bf16" else 1e-5,
                                       atol=1e-2 if dtype == "bf16" else 1e-5)


def test_winograd_shapes_are_checked():
    with pytest.raises(T.ShapeError, match="winograd tile 3 is not one of 2, 4"):
        sd.winograd_input(sd.placeholder("X", (1, 2, 8, 8)), 3)
    with pytest.raises(T.ShapeError, match="winograd_weights needs 3 x 3 FCHW weights"):
        sd.winograd_weights(sd.placeholder("W", (4, 2, 5, 5)), 2)
    with pytest.raises(T.ShapeError, match=r"winograd_output needs \[16, f, n \* 16\] products"):
        sd.winograd_output(sd.placeholder("M", (16, 4, 10)), 2, (8, 8))


def test_winograd_convs_match_onnxruntime(conv_path):
    """The one 3 x 3 stride-1 conv takes F(4x4) in f32 and F(2x2) in bf16, its residual add
    and relu fused into the output transform, its filters transformed once, at load."""
    for precision, tile, tolerance in ((None, 4, (1e-3, 1e-4)), ("bf16", 2, (5e-2, 3e-2))):
        sess = sd.load_onnx(str(conv_path), conv_algorithm="winograd", precision=precision)
        assert sess.ir.count("tensorop.winograd_input") == 1 and sess.ir.count("tensorop.conv2d") == 6
        assert f"tile = {tile} : i64" in sess.ir and "%a_filters:" in sess.ir  # a weight now
        assert re.search(r'tensorop.unary %a_add {[^}]*group = "a"', sess.ir)
        assert_matches_onnxruntime(sess, conv_path, rtol=tolerance[0], atol=tolerance[1])


@pytest.mark.parametrize("precision, padded", [("bf16", True), ("tf32", True), (None, False)])
def test_winograd_products_are_padded_for_tensor_cores(tmp_path, precision, padded):
    """A Winograd product whose tiles are not a multiple of 8 (a 6 x 6 output: 9 tiles of
    2 x 2) gets zero columns where the rest of it takes a tensor-core tile, and the matmul
    keeps the first 9 columns of its product; the result matches onnxruntime."""
    path = tmp_path / "c.onnx"
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((16, 16, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                               helper.make_node("Relu", ["c"], ["y"], name="relu")], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 6, 6])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    sess = sd.load_onnx(str(path), conv_algorithm="winograd", precision=precision)
    product = re.search(r"%conv_gemm = tensorop.matmul .*x(\d+)x\w+>\) -> tensor<(\d+)x16x(\d+)x", sess.ir)
    # F(2x2): 16 positions, 3 x 3 tiles, padded to 16 columns
    assert product.groups() == ("16" if padded else "9", "16", "9")
    assert ("%conv_tpad" in sess.ir and "columns = 9" in sess.ir) == padded
    assert re.search(r'tensorop.unary %conv {[^}]*group = "conv"', sess.ir)  # the relu, in the output transform
    assert_matches_onnxruntime(sess, path, rtol=5e-2 if precision == "bf16" else 1e-3,
                               atol=3e-2 if precision == "bf16" else 1e-4)
    from sched_dsl.graph.executor import in_precision
    g = import_onnx(str(path))
    in_precision(g, precision)
    steps, _ = plan_steps(prepare(g.module, conv_algorithm="winograd", tensor_cores=True), "cuda", None,
                          tensor_cores=True)
    product = [text for st in steps if st.kind == "gpu" for name, text in st.segment.units if "conv_gemm" in name]
    assert len(product) == 1 and ("mma.sync" in product[0]) == padded


def test_batched_products_take_the_gemm_templates():
    """A batched f32 matmul takes the SGEMM template (its batch on the grid's z), as Winograd's
    products do; with a shared 2-D A too."""
    for a_shape in ((16, 64, 32), (64, 32)):
        y, s = matmul_workload(a_shape, (16, 32, 64), "f32", None, "f32")
        assert "ti" in s.knobs and "threads" not in s.knobs
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal(a_shape).astype(np.float32), rng.standard_normal((16, 32, 64)).astype(np.float32)
        np.testing.assert_allclose(sd.build(y, s, target="opencl")(a, b), a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("algorithm", ["gemm", "winograd"])
def test_a_conv_that_is_the_models_output(tmp_path, algorithm):
    """The op that makes the conv's value in the end (the reshape of the product, which keeps
    49 of its 56 columns; the output transform) takes the conv's value and stage name: the
    model's output is found."""
    path = tmp_path / "conv.onnx"
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((16, 16, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 7, 7])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    sess = sd.load_onnx(str(path), conv_algorithm=algorithm, precision="bf16")
    assert ("columns = 49" in sess.ir) == (algorithm == "gemm")  # 7 x 7 columns padded to 56
    assert re.search(r"%conv = tensorop\.(reshape|winograd_output)", sess.ir)
    assert_matches_onnxruntime(sess, path, rtol=5e-2, atol=3e-2)
