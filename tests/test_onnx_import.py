"""ONNX import of single operators and small graphs against onnxruntime, the host fallback,
and the errors for bad models and bad inputs (clear messages, no tracebacks)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sched_dsl as sd
from sched_dsl.graph.onnx_import import OnnxImportError, import_onnx
from model_files import assert_matches_onnxruntime

SCHED_RUN = str(Path(sys.executable).parent / "sched-run")
rng = np.random.default_rng(0)


def model(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                          [numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def save(m, tmp_path, name="m.onnx"):
    p = tmp_path / name
    onnx.save(m, str(p))
    return p


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


F = TensorProto.FLOAT


def test_operators_and_host_fallback_match_onnxruntime(tmp_path):
    """Standalone BatchNormalization, Gemm with transB, Reshape with 0 and -1, Concat,
    Transpose (a remap), CumSum and TopK (GPU), AveragePool, Sigmoid, Sub/Div/Max with
    constants, Softmax."""
    nodes = [
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["bn"], epsilon=1e-3),
        helper.make_node("AveragePool", ["bn"], ["ap"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["ap"], ["sg"]),
        helper.make_node("Sub", ["sg", "half"], ["sb"]),
        helper.make_node("Reshape", ["sb", "shape"], ["r"]),               # (2, 0, -1) -> (2, 3, 16)
        helper.make_node("Concat", ["r", "r"], ["cat"], axis=2),          # (2, 3, 32)
        helper.make_node("Transpose", ["cat"], ["t"], perm=[0, 2, 1]),     # (2, 32, 3), host
        helper.make_node("CumSum", ["t", "ax"], ["cs"], exclusive=1),
        helper.make_node("Div", ["cs", "four"], ["dv"]),
        helper.make_node("Max", ["dv", "zero"], ["mx"]),
        helper.make_node("Flatten", ["mx"], ["fl"], axis=1),                # (2, 96)
        helper.make_node("Gemm", ["fl", "w", "c"], ["gm"], transB=1, alpha=0.5),
        helper.make_node("Softmax", ["gm"], ["sm"], axis=-1),
        helper.make_node("TopK", ["sm", "k"], ["tv", "ti"], axis=1),
    ]
    inits = [("g", f32(3) + 2), ("b", f32(3)), ("m", f32(3)), ("v", np.abs(f32(3)) + 0.5),
             ("half", np.array(0.5, np.float32)), ("shape", np.array([2, 0, -1], np.int64)),
             ("ax", np.array(1, np.int64)), ("four", np.array([4.0], np.float32)),
             ("zero", np.array([0.0], np.float32)), ("w", f32(10, 96)), ("c", f32(10)),
             ("k", np.array([3], np.int64))]
    m = model(nodes, [("x", [2, 3, 4, 4])], [("sm", F, [2, 10]), ("tv", F, [2, 3]), ("ti", TensorProto.INT64, [2, 3])],
              inits)
    path = save(m, tmp_path)
    sess = sd.load_onnx(str(path))
    assert "tensorop.remap" in sess.ir and "tensorop.scan" in sess.ir and "tensorop.topk" in sess.ir
    assert 'callee = "ToInt64"' in sess.ir  # ONNX's int64 indices from the GPU's int32 ones
    assert 'tensorop.copy' in sess.ir
    assert_matches_onnxruntime(sess, path)


def test_conv_variants_and_pools(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2]),
        helper.make_node("Conv", ["c1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["cl"]),
        helper.make_node("MaxPool", ["cl"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["mp"], ["gp"]),
        helper.make_node("Mul", ["gp", "mp"], ["out"]),
    ]
    inits = [("w1", f32(4, 3, 3, 3)), ("w2", f32(4, 1, 3, 3)), ("b2", f32(4)),
             ("lo", np.array(-0.5, np.float32)), ("hi", np.array(1.0, np.float32))]
    path = save(model(nodes, [("x", [1, 3, 9, 9])], [("out", F, [1, 4, 2, 2])], inits), tmp_path)
    assert_matches_onnxruntime(sd.load_onnx(str(path)), path)


def test_unsupported_nodes_listed_together(tmp_path):
    """Every node the importer cannot map is named, with its reason, in one error; the nodes
    downstream of them are not reported again."""
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p", "idx"], kernel_shape=[2, 2], name="pool_indices"),
        helper.make_node("Hardmax", ["x"], ["h"], name="hardmax"),
        helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="cubic", name="cubic"),
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Add", ["c", "h"], ["out"], name="add"),
    ]
    m = model(nodes, [("x", [1, 2, 4, 4])], [("out", F, [1, 2, 4, 4])],
              [("w", f32(2, 2, 3, 3)), ("scales", np.array([1, 1, 2, 2], np.float32))])
    with pytest.raises(OnnxImportError) as err:
        import_onnx(m)
    msg = str(err.value)
    for what in ("MaxPool node 'pool_indices': its optional output(s) idx are not supported",
                 "Hardmax node 'hardmax': operator not supported",
                 "Resize node 'cubic': mode='cubic' is not supported"):
        assert what in msg
    assert "node 'add'" not in msg and "node 'conv'" not in msg
    run = subprocess.run([SCHED_RUN, str(save(m, tmp_path))], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "Hardmax node 'hardmax'" in run.stderr and "MaxPool node 'pool_indices'" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_files(tmp_path):
    with pytest.raises(OnnxImportError, match="no such file"):
        sd.load_onnx(str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\xff")
    with pytest.raises(OnnxImportError, match="not an ONNX model"):
        sd.load_onnx(str(junk))
    for path in (tmp_path / "missing.onnx", junk):
        run = subprocess.run([SCHED_RUN, str(path)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and "sched-run: error:" in run.stderr and "Traceback" not in run.stderr


def test_dynamic_input_shape_is_an_error(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["batch", 4])], [("y", F, ["batch", 4])])
    with pytest.raises(OnnxImportError, match="model input 'x' needs a static shape"):
        import_onnx(m)


def test_wrong_inputs_are_clear_errors(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", [2, 4])], [("y", F, [2, 4])])
    sess = sd.load_onnx(m)
    x = f32(2, 4)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], np.maximum(x, 0))
    with pytest.raises(sd.GraphError, match="unknown: input.*missing: x"):
        sess.run(None, {"input": x})
    with pytest.raises(sd.GraphError, match=r"input 'x' has shape \(4, 2\), expected \(2, 4\)"):
        sess.run(None, {"x": x.T.copy()})
    with pytest.raises(sd.GraphError, match="input 'x' has dtype float64, expected float32"):
        sess.run(None, {"x": x.astype(np.float64)})
    with pytest.raises(sd.GraphError, match="unknown output"):
        sess.run(["z"], {"x": x})
    with pytest.raises(sd.GraphError, match="no operator named nosuch"):
        sd.load_onnx(m, host_ops=["nosuch"])


def test_sched_run_prints_layers_and_latency(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("TopK", ["r", "k"], ["v", "i"], axis=3)]
    m = model(nodes, [("x", [1, 2, 4, 4])], [("v", F, [1, 3, 4, 2]), ("i", TensorProto.INT64, [1, 3, 4, 2])],
              [("w", f32(3, 2, 1, 1)), ("b", f32(3)), ("k", np.array([2], np.int64))])
    path = save(m, tmp_path)
    records = tmp_path / "records.jsonl"
    out_json = tmp_path / "times.json"
    run = subprocess.run([SCHED_RUN, str(path), "--repeat", "2", "--tune", "--trials", "2", "--records", str(records),
                          "--json", str(out_json)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "tuned 2 anchor shapes into" in run.stdout  # the 1x1 conv, as a conv and as its matmul
    # conv, bias and relu in one kernel; topk's ranks, its scatter and the values' gather; the
    # int64 conversion of the indices runs on the host
    assert "4 kernels" in run.stdout
    assert "end-to-end latency:" in run.stdout
    assert "host" in run.stdout and "kernel" in run.stdout
    import json
    data = json.loads(out_json.read_text())
    assert data["kernels"] == 4 and data["latency_ms"] > 0 and any(r["kind"] == "host" for r in data["layers"])
    assert len(data["tuned"]) == 1 and data["config"]
    # the records alone give the same config
    run = subprocess.run([SCHED_RUN, str(path), "--repeat", "1", "--records", str(records), "--json", str(out_json)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(out_json.read_text())["config"] == data["config"]
    bad = subprocess.run([SCHED_RUN, str(path), "--records", str(tmp_path / "none.json")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_imported_model_ir_parses_with_sched_opt(tmp_path):
    """The graph level is text that sched-opt reads back: host calls with dynamic result
    dimensions included; the graph passes run on it from the command line."""
    from model_files import make_models

    g = import_onnx(make_models().ssd(32))
    path = tmp_path / "ssd.mlir"
    path.write_text(str(g.module))
    sched_opt = str(Path(sys.executable).parent / "sched-opt")
    run = subprocess.run([sched_opt, str(path), "-p", "tensorop-place,tensorop-fuse"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "tensorop.nms" in run.stdout and 'callee = "NmsRows"' in run.stdout and "tensor<?x3xi64>" in run.stdout
    assert 'tensorop.copy' in run.stdout and 'group = "' in run.stdout


def test_sched_run_wrong_input_file(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", [2, 4])], [("y", F, [2, 4])])
    path = save(m, tmp_path)
    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((4, 2), np.float32))
    run = subprocess.run([SCHED_RUN, str(path), "--input", str(bad)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "input 'x' has shape (4, 2), expected (2, 4)" in run.stderr
    assert "Traceback" not in run.stderr


def test_knobs_per_stage(tmp_path):
    """A conv has the knobs of its chosen schedule (`<stage>.fb`, `.fr`, `.yb`, `.xb`, `.xr`,
    `.rc`), a pool `<stage>.threads`; a config picks them per stage and the results stay right;
    unknown knobs and values are clear errors."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="act"),
             helper.make_node("GlobalAveragePool", ["r"], ["y"], name="pool")]
    # r is an output too, so the pool stays a kernel of its own (not linked into the conv: fuse.link_pools)
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", F, [1, 4, 1, 1]), ("r", F, [1, 4, 8, 8])], [("w", f32(4, 3, 3, 3))])
    path = save(m, tmp_path)
    sess = sd.load_onnx(str(path), config={"conv.fr": 1, "conv.yb": 4, "conv.xb": 8, "conv.xr": 1,
                                           "pool.threads": 32})
    assert {"conv.fb", "conv.fr", "conv.yb", "conv.xb", "conv.xr", "conv.rc", "pool.threads"} == set(sess.knobs)
    blocks = {st: (ln.grid, ln.block) for s in sess.steps if s.kind == "gpu"
              for st, ln in zip(s.segment.stages, s.segment.plan.launches)}
    assert blocks["conv+act"] == ((1, 2, 1), (8, 4, 4))  # x columns, y rows, f channels per block
    assert blocks["pool"][1] == (4, 1, 1)  # the pool has only 4 outputs
    assert_matches_onnxruntime(sess, path)
    with pytest.raises(sd.GraphError, match="unknown knob.*nosuch.*conv.fb"):
        sd.load_onnx(str(path), config={"nosuch": 1})
    with pytest.raises(sd.GraphError, match="not one of its candidates"):
        sd.load_onnx(str(path), config={"conv.yb": 3})


@pytest.mark.parametrize("fr, xr", [(4, 2), (2, 1)])
def test_register_tiles_apply_the_fused_epilogue(tmp_path, fr, xr):
    """fr x xr outputs per thread in registers, also when fr does not divide the channels (6),
    the bias, relu and residual add applied at the write-back of each register; a depthwise
    conv with its flat schedule."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="act"),
             helper.make_node("Conv", ["r", "dw"], ["d"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              group=6, name="dwconv"),
             helper.make_node("Add", ["d", "d2"], ["y"], name="res")]
    m = model(nodes, [("x", [1, 3, 8, 8])], [("y", F, [1, 6, 4, 4])],
              [("w", f32(6, 3, 3, 3)), ("b", f32(6)), ("dw", f32(6, 1, 3, 3)), ("d2", f32(1, 6, 4, 4))])
    path = save(m, tmp_path)
    sess = sd.load_onnx(str(path), config={"conv.fb": 6, "conv.fr": fr, "conv.xr": xr, "dwconv.threads": 32})
    assert sess.kernel_count == 2
    assert f"float v_act_local[{fr * xr}]" in sess.sources[0]
    assert_matches_onnxruntime(sess, path)


@pytest.mark.parametrize("batches, center, on_gpu", [(1, 0, True), (2, 0, False), (1, 1, False)])
def test_nms_on_the_gpu_per_class_or_on_the_host(tmp_path, batches, center, on_gpu):
    """NonMaxSuppression of one batch runs as one tensorop.nms per class; batches and
    center-point boxes fall back to the host. Boxes on a grid make equal IoUs and ties."""
    n, classes = 12, 3
    boxes = rng.integers(0, 6, (batches, n, 4)).astype(np.float32)
    scores = (rng.integers(0, 5, (batches, classes, n)) / 4).astype(np.float32)
    nodes = [helper.make_node("Identity", ["b"], ["bi"]), helper.make_node("Identity", ["s"], ["si"]),
             helper.make_node("NonMaxSuppression", ["bi", "si", "mo", "iou", "st"], ["sel"], center_point_box=center)]
    inits = [("mo", np.array([4], np.int64)), ("iou", np.array([0.3], np.float32)),
             ("st", np.array([0.2], np.float32))]
    m = model(nodes, [("b", [batches, n, 4]), ("s", [batches, classes, n])],
              [("sel", TensorProto.INT64, ["k", 3])], inits)
    path = save(m, tmp_path)
    sess = sd.load_onnx(str(path))
    assert (sess.ir.count("tensorop.nms ") == classes) == on_gpu
    assert ('callee = "NonMaxSuppression"' in sess.ir) != on_gpu
    import onnxruntime as ort
    want = ort.InferenceSession(str(path)).run(None, {"b": boxes, "s": scores})[0]
    got = sess.run(None, {"b": boxes, "s": scores})[0]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
def test_one_row_product_is_split_k(tmp_path, op):
    """A classifier's one-row product with a long k runs as k slices in parallel and their sum
    (with the bias and a following Relu fused into the sum); a short k stays one matmul."""
    k, n = 1024, 40
    nodes = [helper.make_node(op, ["x", "w", "c"] if op == "Gemm" else ["x", "w"], ["y"]),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["z"])]  # k = 40: no split
    inits = [("w", f32(k, n)), ("w2", f32(n, 8))] + ([("c", f32(n))] if op == "Gemm" else [])
    path = save(model(nodes, [("x", [1, k])], [("z", F, [1, 8])], inits), tmp_path)
    sess = sd.load_onnx(str(path))
    assert "tensor<16x1x64xf32>" in sess.ir and 'fn = "sum", axes = array<i64: 0>' in sess.ir
    assert sess.ir.count("tensorop.matmul") == 2 and sess.ir.count("tensorop.reduce") == 1
    # the slices' products, their sum (+ bias + Relu), the short matmul; the reshape into
    # slices moves no data (a second name of the input's buffer)
    assert sess.kernel_count == 3
    assert_matches_onnxruntime(sess, path)


def test_reshapes_move_no_data(tmp_path):
    """A reshape of the model's input, one of an intermediate that is also an output, and a
    reshape of a reshape: no kernels, the right values (each is a second name of a buffer)."""
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["xr"]),           # of the input: (6, 8)
             helper.make_node("Relu", ["xr"], ["r"]),
             helper.make_node("Reshape", ["r", "s2"], ["rr"]),           # (48,), an output
             helper.make_node("Reshape", ["rr", "s3"], ["rrr"]),         # (4, 12)
             helper.make_node("Sigmoid", ["rrr"], ["y"])]
    inits = [("s1", np.array([6, 8], np.int64)), ("s2", np.array([48], np.int64)), ("s3", np.array([4, 12], np.int64))]
    path = save(model(nodes, [("x", [2, 3, 8])], [("y", F, [4, 12]), ("rr", F, [48])], inits), tmp_path)
    for plan_memory in (True, False):
        sess = sd.load_onnx(str(path), plan_memory=plan_memory)
        assert sess.kernel_count == 2  # relu, sigmoid
        assert_matches_onnxruntime(sess, path)


@pytest.mark.parametrize("channels, size, in_place, algorithm", [(16, 8, True, "direct"), (16, 8, True, "gemm"),
                                                              (3, 5, False, "direct")])
def test_concat_written_in_place(tmp_path, channels, size, in_place, algorithm):
    """An Inception-like block (three branches concatenated along channels, one of them the
    input of another, as in DenseNet): with 256-byte aligned slices the branches' kernels write
    into the concat's slices and the concat needs no kernel; otherwise it copies. Both right.
    With the convs as matmuls the concat's operands are reshapes of the products, which then
    write the slices."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "w3"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("Conv", ["p", "w1"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("Concat", ["ar", "b", "c"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "wo"], ["y"], kernel_shape=[1, 1])]
    inits = [("w1", f32(channels, 4, 1, 1)), ("w3", f32(channels, channels, 3, 3)), ("wo", f32(2, 3 * channels, 1, 1))]
    path = save(model(nodes, [("x", [1, 4, size, size])], [("y", F, [1, 2, size, size])], inits), tmp_path)
    planned = sd.load_onnx(str(path), conv_algorithm=algorithm)
    unplanned = sd.load_onnx(str(path), plan_memory=False, conv_algorithm=algorithm)
    assert ("arena_in_place" in planned.ir) == in_place
    assert ("tensorop.im2col" in planned.ir) == (algorithm == "gemm")
    assert planned.kernel_count == unplanned.kernel_count - in_place
    for sess in (planned, unplanned):
        assert_matches_onnxruntime(sess, path)
