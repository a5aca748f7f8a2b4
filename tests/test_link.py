"""Operator linking beyond elementwise fusion, on small ONNX models against onnxruntime: a
pooling scattered from its conv's epilogue (fuse.link_pools, lowering/pool_scatter.py), and a
depthwise conv computed inside the pointwise conv after it (fuse.link_depthwise)."""

from __future__ import annotations

import shutil
import subprocess

import onnx
import pytest
from gpu_cases import needs_nvcc
from model_files import assert_matches_onnxruntime, make_models
from onnx import TensorProto

import sched_dsl as sd
from sched_dsl.graph.executor import plan_steps, prepare
from sched_dsl.graph.onnx_import import import_onnx
from sched_dsl.lowering.pool_scatter import ScatterSpec, every_window_holds_input

SIZE, CHANNELS = 16, 8


def pooled_model(pool: str, relu: bool = True, features_too: bool = False) -> onnx.ModelProto:
    """conv -> (relu) -> MaxPool 3x3 stride 2 pad 1 (ResNet's stem), or conv + skip conv ->
    relu -> GlobalAveragePool (ResNet's last block); `features_too`: the pool's input is an
    output of the model as well."""
    b = make_models().Builder(0)
    x = b.conv("input", 3, CHANNELS, 3)
    if pool == "max":
        y = b.relu(x) if relu else x
        (p,) = b.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        shape = [1, CHANNELS, SIZE // 2, SIZE // 2]
    else:
        (y,) = b.node("Add", [x, b.conv("input", 3, CHANNELS, 1)])
        y = b.relu(y)
        (p,) = b.node("GlobalAveragePool", [y])
        shape = [1, CHANNELS, 1, 1]
    outs = [(p, "pooled", shape, TensorProto.FLOAT)]
    if features_too:
        outs.append((y, "features", [1, CHANNELS, SIZE, SIZE], TensorProto.FLOAT))
    return b.model("pooled", SIZE, outs)


def block_model(depthwise_out_too: bool = False, projected: int = CHANNELS) -> onnx.ModelProto:
    """A MobileNetV2 block without its residual: pw-expand -> relu6 -> dw 3x3 -> relu6 ->
    pw-project (to `projected` channels); `depthwise_out_too`: the dw's relu6 is an output of
    the model as well."""
    b = make_models().Builder(0)
    x = b.relu6(b.conv("input", 3, 2 * CHANNELS, 1))
    y = b.relu6(b.conv(x, 2 * CHANNELS, 2 * CHANNELS, 3, groups=2 * CHANNELS))
    outs = [(b.conv(y, 2 * CHANNELS, projected, 1), "projected", [1, projected, SIZE, SIZE], TensorProto.FLOAT)]
    if depthwise_out_too:
        outs.append((y, "depthwise", [1, 2 * CHANNELS, SIZE, SIZE], TensorProto.FLOAT))
    return b.model("block", SIZE, outs)


def kernels(sess) -> list[str]:
    return [stage for st in sess.steps if st.kind == "gpu" for stage in st.segment.stages]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("link")
    paths = {}
    for key, args in {"max": ("max",), "gap": ("avg",), "max_no_relu": ("max", False),
                      "max_shared": ("max", True, True)}.items():
        paths[key] = d / f"{key}.onnx"
        onnx.save(pooled_model(*args), str(paths[key]))
    for key, shared in (("block", False), ("block_shared", True)):
        paths[key] = d / f"{key}.onnx"
        onnx.save(block_model(shared), str(paths[key]))
    return paths


def test_maxpool_linked_into_conv(models):
    sess = sd.load_onnx(str(models["max"]), target="opencl")
    [linked] = kernels(sess)  # conv, bias, relu and the pool: one kernel
    assert linked.startswith("conv") and linked.endswith("maxpool9") and "relu" in linked
    [pool_line] = [line for line in sess.ir.splitlines() if "tensorop.pool2d" in line]
    assert 'group = "conv2"' in pool_line  # the IR shows the link
    [launch] = [ln for st in sess.steps if st.kind == "gpu" for ln in st.segment.plan.launches]
    assert launch.zeroed == ("maxpool9",) and "atomic_max(" in sess.sources[0]
    assert_matches_onnxruntime(sess, models["max"])
    assert_matches_onnxruntime(sess, models["max"], seed=1)  # the output starts at zero again


def test_global_average_pool_linked_into_conv(models):
    sess = sd.load_onnx(str(models["gap"]), target="opencl")
    assert len(kernels(sess)) == 2  # the skip conv, and the conv with add, relu and the pool
    assert kernels(sess)[1].endswith("+globalaveragepool17") and "atomic_cmpxchg" in sess.sources[0]
    assert_matches_onnxruntime(sess, models["gap"])
    assert_matches_onnxruntime(sess, models["gap"], seed=1)


@pytest.mark.parametrize("key", ["max_no_relu", "max_shared"])
def test_illegal_links_stay_apart(models, key):
    """A max pool of values that may be negative, and a conv output that the model also
    returns, keep the pool a kernel of its own."""
    fn = prepare(import_onnx(str(models[key])).module)
    pool = next(op for op in fn.body.block.ops if op.name == "tensorop.pool2d")
    assert "group" not in pool.attributes
    steps, _ = plan_steps(fn, "opencl", None)
    assert [s for st in steps if st.kind == "gpu" for s in st.segment.stages][-1] == pool.stage_name


@pytest.mark.parametrize("kind, attrs", [
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [1, 0, 2, 1], "ceil_mode": 1,
                     "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [2, 3], "strides": [2, 3], "pads": [1, 2, 1, 2]}),
    ("MaxPool", {"kernel_shape": [4, 3], "strides": [3, 2], "pads": [3, 1, 0, 1], "ceil_mode": 1}),
])
def test_pool_windows_scattered_right(tmp_path, kind, attrs):
    """Asymmetric pads, windows past the edge (ceil_mode), counts with and without the padding."""
    b = make_models().Builder(0)
    (p,) = b.node(kind, [b.relu(b.conv("input", 3, 4, 3))], **attrs)
    b.nodes.append(onnx.helper.make_node("Identity", [p], ["pooled"]))
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(b.nodes, "pool", [value("input", TensorProto.FLOAT, [1, 3, 9, 11])],
                                   [value("pooled", TensorProto.FLOAT, None)], b.inits)
    m = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(onnx.shape_inference.infer_shapes(m), str(tmp_path / "pool.onnx"))
    sess = sd.load_onnx(str(tmp_path / "pool.onnx"), target="opencl")
    assert len(kernels(sess)) == 1
    assert_matches_onnxruntime(sess, tmp_path / "pool.onnx")


def test_window_of_padding_only_is_not_linked():
    spec = ScatterSpec("p", "max", "none", (3, 3), (2, 2), (1, 1, 1, 1))
    assert every_window_holds_input(spec, (16, 16), (8, 8))
    assert not every_window_holds_input(spec, (16, 16), (10, 8))  # a window (ceil_mode) past the input
    wide = ScatterSpec("p", "max", "none", (2, 2), (1, 1), (2, 2, 2, 2))
    assert not every_window_holds_input(wide, (4, 4), (7, 7))  # a pad as wide as the kernel


def test_depthwise_computed_in_pointwise_conv(models):
    sess = sd.load_onnx(str(models["block"]), target="opencl")
    expand, project = kernels(sess)  # no kernel of the depthwise conv's own
    assert expand.startswith("conv2+") and project.startswith("conv22+")
    depthwise = [line for line in sess.ir.splitlines() if "groups = 16" in line or "clip20 =" in line]
    assert len(depthwise) == 2 and all('computed_at = "conv22"' in line for line in depthwise)
    # the expanded depthwise output is never in memory: only the expand conv's output and the result
    assert sess.memory["intermediates unplanned"] == 4 * (2 * CHANNELS + CHANNELS) * SIZE * SIZE
    assert_matches_onnxruntime(sess, models["block"])
    assert_matches_onnxruntime(sess, models["block"], seed=1)


@pytest.mark.parametrize("key", ["max", "block"])
def test_nhwc_ops_stay_unlinked(models, key):
    """The scatter and the depthwise tiles index NCHW: a model run channels last keeps its pool
    and its depthwise conv as kernels of their own, and its answers."""
    sess = sd.load_onnx(str(models[key]), target="opencl", layout="NHWC")
    assert 'layout = "NHWC"' in sess.ir and "computed_at" not in sess.ir
    assert not any(ln.zeroed for st in sess.steps if st.kind == "gpu" for ln in st.segment.plan.launches)
    assert len(kernels(sess)) > len(kernels(sd.load_onnx(str(models[key]), target="opencl")))
    assert_matches_onnxruntime(sess, models[key])


def test_depthwise_links_only_into_a_pointwise_conv_one_block_takes_whole():
    """More filters than one block of the tiled conv takes (LINKED_FILTERS): each block would
    compute the depthwise values again, so the pair stays apart."""
    from sched_dsl.lowering.fuse import LINKED_FILTERS
    wide = prepare(import_onnx(block_model(projected=LINKED_FILTERS + 8)).module)
    assert not any("computed_at" in op.attributes for op in wide.body.block.ops)
    narrow = prepare(import_onnx(block_model(projected=LINKED_FILTERS)).module)
    assert any("computed_at" in op.attributes for op in narrow.body.block.ops)


def test_depthwise_read_elsewhere_keeps_its_kernel(models):
    sess = sd.load_onnx(str(models["block_shared"]), target="opencl")
    assert len(kernels(sess)) == 3 and "computed_at" not in sess.ir
    assert_matches_onnxruntime(sess, models["block_shared"])


@needs_nvcc
def test_linked_cuda_text_compiles(models, tmp_path):
    for key, atomic in (("max", "atomicMax("), ("gap", "atomicAdd("), ("block", "")):
        fn = prepare(import_onnx(str(models[key])).module)
        steps, _ = plan_steps(fn, "cuda", None)
        [source] = [st.segment.source for st in steps if st.kind == "gpu"]  # one segment: every kernel
        assert atomic in source
        src = tmp_path / f"{key}.cu"
        src.write_text(source)
        run = subprocess.run([shutil.which("nvcc"), "-arch=sm_90", "--ptx", "-O1", str(src), "-o", str(src) + ".ptx"],
                             capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
