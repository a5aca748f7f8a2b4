"""The schedules chosen for model anchors (sched_dsl/graph/model_schedules.py): conv2d of many shapes
and matmul against the numpy reference on PoCL, the default rules on the shapes of ResNet-18
and MobileNetV2 at 224x224 (no device), and tuning a model's anchors into a records file that
load_onnx reuses."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sched_dsl as sd
from sched_dsl.graph.model_schedules import (
    MAX_SHARED,
    SMS,
    ConvShape,
    conv_depthwise,
    conv_tile_defaults,
    conv_tiled,
    matmul_simple,
    matmul_tiled,
)
from tests.model_files import assert_matches_onnxruntime

rng = np.random.default_rng(0)


def conv(n, c, h, w, f, k, stride=1, pad=None, dilation=1, groups=1):
    pad = k // 2 if pad is None else pad
    pad = (pad,) * 4 if isinstance(pad, int) else pad
    kh, kw = (k, k) if isinstance(k, int) else k
    return ConvShape(n, c, h, w, f, kh, kw, (stride, stride), pad, (dilation, dilation), groups)


CONVS = [
    conv(1, 8, 10, 10, 16, 3),                   # 3x3, stride 1
    conv(1, 3, 17, 17, 8, 7, stride=2),          # ResNet's stem: 7x7, stride 2, odd size
    conv(1, 16, 9, 9, 12, 1, stride=2),          # 1x1 downsample, stride 2
    conv(1, 12, 7, 7, 20, 1),                    # 1x1, 7x7 map
    conv(1, 6, 13, 11, 10, 3, stride=2),         # odd, non-square, stride 2
    conv(2, 8, 8, 8, 8, 3, groups=2),            # batch 2, grouped
    conv(1, 5, 9, 9, 7, (3, 1), pad=(1, 0, 1, 0)),  # 3x1 window, prime channels
    conv(1, 4, 12, 12, 8, 3, pad=(0, 1, 2, 1), dilation=2),  # asymmetric padding, dilated
    conv(1, 8, 11, 11, 8, 3, stride=2, groups=8),  # depthwise, stride 2
    conv(1, 16, 14, 14, 16, 3, groups=16),       # depthwise, stride 1
]


def check_conv(sh: ConvShape, config=None):
    x, w, y = sh.tensors()
    s = sd.Schedule(y)
    (conv_depthwise if sh.depthwise else conv_tiled)(s, y, x, w, sh)
    kern = sd.build(y, s, "opencl", config=config)
    xa = rng.standard_normal(x.shape, dtype=np.float32)
    wa = rng.standard_normal(w.shape, dtype=np.float32)
    np.testing.assert_allclose(kern(xa, wa), sd.evaluate(y, {"X": xa, "W": wa}), rtol=1e-3, atol=1e-3)
    return kern


@pytest.mark.parametrize("sh", CONVS, ids=lambda sh: f"{sh.c}x{sh.h}x{sh.w}-f{sh.f}-k{sh.kh}x{sh.kw}"
                         f"-s{sh.stride[0]}-g{sh.groups}-n{sh.n}")
def test_conv_default_schedule_matches_reference(sh):
    kern = check_conv(sh)
    if not sh.depthwise and sh.groups == 1:
        assert "X_shared" in kern.source and "W_shared" in kern.source  # both staged in shared memory


def test_conv_other_tiles_match_reference():
    """Tiles other than the defaults, register tiles that do not divide the block's (guards)."""
    check_conv(conv(1, 6, 13, 11, 10, 3, stride=2), {"fb": 5, "fr": 2, "yb": 7, "xb": 6, "xr": 2, "rc": 6})
    check_conv(conv(1, 16, 9, 9, 12, 1), {"fb": 6, "fr": 4, "yb": 3, "xb": 9, "xr": 2, "rc": 4})


@pytest.mark.parametrize("m, n, k, tiled", [(64, 96, 40, True), (1, 40, 24, False), (5, 33, 7, False)])
def test_matmul_schedules_match_reference(m, n, k, tiled):
    a, b = sd.placeholder("A", (m, k)), sd.placeholder("B", (k, n))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    if tiled:
        matmul_tiled(s, c, a, b, m, n, k)
    else:
        matmul_simple(s, c, m, n)
    kern = sd.build(c, s, "opencl")
    aa, ba = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    np.testing.assert_allclose(kern(aa, ba), aa @ ba, rtol=1e-3, atol=1e-3)
    assert ("A_shared" in kern.source) == tiled


# (c, size, f, kernel, stride): the convs of ResNet-18 and MobileNetV2's 1x1 convs at 224x224
NET_CONVS = [(3, 224, 64, 7, 2), (64, 56, 64, 3, 1), (64, 56, 128, 3, 2), (64, 56, 128, 1, 2),
             (128, 28, 128, 3, 1), (128, 28, 256, 3, 2), (256, 14, 256, 3, 1), (256, 14, 512, 3, 2),
             (512, 7, 512, 3, 1), (32, 112, 16, 1, 1), (96, 56, 24, 1, 1), (24, 56, 144, 1, 1),
             (320, 7, 1280, 1, 1), (160, 7, 960, 1, 1)]


@pytest.mark.parametrize("c, size, f, k, stride", NET_CONVS)
def test_default_tiles_follow_the_rules(c, size, f, k, stride):
    sh = conv(1, c, size, size, f, k, stride=stride)
    d = conv_tile_defaults(sh)
    ho, wo = sh.out
    assert f % d["fb"] == 0 and d["fb"] % d["fr"] == 0 and ho % d["yb"] == 0
    assert wo % d["xb"] == 0 and d["xb"] % d["xr"] == 0 and c % d["rc"] == 0
    threads = d["fb"] // d["fr"] * d["yb"] * d["xb"] // d["xr"]
    blocks = f // d["fb"] * ho // d["yb"] * wo // d["xb"]
    assert 64 <= threads <= 256
    assert blocks >= SMS  # every one of these layers has enough outputs to fill the GPU
    ih, iw = (d["yb"] - 1) * stride + k, (d["xb"] - 1) * stride + k
    assert 2 * 4 * d["rc"] * (ih * iw + d["fb"] * k * k) <= MAX_SHARED
    # the defaults are the knobs' first candidates: an untuned build uses them
    x, w, y = sh.tensors()
    s = sd.Schedule(y)
    conv_tiled(s, y, x, w, sh)
    assert {name: knob.candidates[0] for name, knob in s.knobs.items()} == d


def tiny_model(path):
    """Two convs of one shape (one workload), a strided conv, a depthwise conv and a Gemm."""
    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.3
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Add", ["c2", "c1"], ["a2"], name="add2"),
             helper.make_node("Conv", ["a2", "w3"], ["c3"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              name="conv3"),
             helper.make_node("Conv", ["c3", "w4"], ["c4"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8,
                              name="dw4"),
             helper.make_node("GlobalAveragePool", ["c4"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["fl"], name="flat"),
             helper.make_node("Gemm", ["fl", "wf", "bf"], ["y"], transB=1, name="fc")]
    inits = {"w1": w(8, 8, 3, 3), "w2": w(8, 8, 3, 3), "w3": w(8, 8, 3, 3), "w4": w(8, 1, 3, 3),
             "wf": w(5, 8), "bf": w(5)}
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                          [numpy_helper.from_array(a, n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_tune_model_then_reuse_records(tmp_path):
    from sched_dsl.tuner.models import tune_model

    path = tiny_model(tmp_path / "tiny.onnx")
    records = tmp_path / "tiny.jsonl"
    seen = []
    results = tune_model(str(path), str(records), trials=2, batch=2, progress=lambda i, n, wl: seen.append((i, n)))
    # conv1 and conv2 share a workload: 4 distinct (3x3, strided 3x3, depthwise, gemm), most arithmetic
    # first, the 3x3's Winograd kernels after it: the input transform and the product tuned, the
    # output transform timed
    assert len(results) == 6 and seen == [(i, 7) for i in range(7)]
    assert ["groups=1" in r.workload and "8x8x8" in r.workload.split("X=")[1] for r in results[:1]] == [True]
    assert [r.workload.split("|")[0] for r in results[1:3]] == ["winograd_input(padding=1x1x1x1,tile=4)",
                                                                "matmul"]
    assert results[2].workload.startswith("matmul|A=36x8x8,B=36x8x4|")  # F(4x4, 3x3): 36 products
    for r in results:
        assert r.best_config is not None, r.errors
        assert not set(r.errors) & {"wrong_answer", "compile_error", "runtime_error"}, r.records
    # every workload's default config (the knobs' first candidates) is measured, so tuned is never slower
    from sched_dsl.graph.executor import anchor_workload, anchors, prepare
    from sched_dsl.graph.onnx_import import import_onnx
    from sched_dsl.runtime import device_name
    from sched_dsl.records import load, workload_of
    recorded = {(r.workload, tuple(sorted(r.config.items()))) for r in load(str(records)) if r.ok}
    for op in anchors(prepare(import_onnx(str(path)).module)):
        y, s = anchor_workload(op)
        default = tuple(sorted((k.name, k.candidates[0]) for k in s.knobs.values()))
        assert (workload_of([y], "opencl", device_name("opencl")).key, default) in recorded, op.stage_name
    # a budget stops after the first (largest) workload; its records are there already: nothing is measured
    again = tune_model(str(path), str(records), trials=2, budget_s=0)
    assert [r.workload for r in again] == [results[0].workload]
    assert again[0].resumed >= 2 and again[0].trials == results[0].trials
    # the convs direct (which form auto takes from these records: tests/test_conv_to_gemm.py)
    sess = sd.load_onnx(str(path), records=str(records), conv_algorithm="direct")
    assert sorted(sess.tuned) == ["conv1", "conv2", "conv3", "dw4", "fc"]
    direct = [r for r in results if not r.workload.startswith(("winograd", "matmul|A=36"))]  # not Winograd's
    by_op = {("stride=2x2" in r.workload, "groups=8" in r.workload, "matmul" in r.workload): r for r in direct}
    by_stage = {"conv1": by_op[False, False, False], "conv2": by_op[False, False, False],
                "conv3": by_op[True, False, False], "dw4": by_op[False, True, False], "fc": by_op[False, False, True]}
    for stage, r in by_stage.items():
        assert {k: sess.config[f"{stage}.{k}"] for k in r.best_config} == r.best_config
    assert_matches_onnxruntime(sess, path)
    # an explicit config wins over the records
    sess = sd.load_onnx(str(path), records=str(records), config={"conv3.fr": 1}, conv_algorithm="direct")
    assert sess.config["conv3.fr"] == 1
    # a records file of other workloads leaves the defaults; a missing one is an error
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(line for line in records.read_text().splitlines() if "groups=8" in line) + "\n")
    sess = sd.load_onnx(str(path), records=str(other))
    assert sess.tuned == ["dw4"]
    with pytest.raises(sd.RecordsError, match="does not exist"):
        sd.load_onnx(str(path), records=str(tmp_path / "none.jsonl"))


def test_batched_matmul_anchor_is_a_tunable_workload():
    """A batched matmul (ViT's attention, ConvNeXt's MLP) is an anchor like the 2-D one: its
    one-output-per-thread template over the fused batch and output loops has the `threads`
    knob, and every candidate computes what numpy does."""
    from sched_dsl.graph.model_schedules import anchor_workload
    from sched_dsl.dialects import tensorop as T
    from sched_dsl.tensor import module_of

    a, b = sd.placeholder("A", (2, 3, 5, 4)), sd.placeholder("B", (3, 4, 6))
    module, _, _ = module_of([sd.matmul(a, b, name="C")])
    op = next(o for o in module.walk() if isinstance(o, T.MatmulOp))
    y, s = anchor_workload(op)
    assert list(s.knob_candidates()) == ["threads"]
    av, bv = rng.standard_normal((2, 3, 5, 4)).astype(np.float32), rng.standard_normal((3, 4, 6)).astype(np.float32)
    for t in s.knob_candidates()["threads"]:
        kern = sd.build(y, s, config={"threads": t})
        np.testing.assert_allclose(kern(av, bv), av @ bv, rtol=1e-5, atol=1e-5)
