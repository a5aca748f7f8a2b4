"""Whole models from examples/make_models.py, imported from ONNX and run on the default OpenCL
device, against onnxruntime (the oracle); kernel counts with and without fusion."""

import onnx
import pytest

import sched_dsl as sd
from sched_dsl.graph.executor import plan_steps, prepare
from sched_dsl.graph.onnx_import import import_onnx
from gpu_cases import needs_nvcc
from model_files import SIZE, assert_matches_onnxruntime, make_models

# model -> the arguments it is built with (input size SIZE unless given): the detectors at 64
# (YOLOv3-tiny at a quarter of its widths), so their upsampled pyramid levels are 2 x 2 and more
BUILD = {"resnet18": {}, "mobilenetv2": {}, "ssd": {}, "yolov3_tiny": dict(size=64, width=0.25, classes=4),
         "retinanet": dict(size=64)}
MODELS = list(BUILD)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    mm = make_models()
    d = tmp_path_factory.mktemp("models")
    for name, kw in BUILD.items():
        kw = dict(kw)
        onnx.save(mm.MODELS[name](kw.pop("size", SIZE), **kw), str(d / f"{name}.onnx"))
    return d


@pytest.mark.parametrize("name", MODELS)
def test_model_matches_onnxruntime(model_dir, name):
    path = model_dir / f"{name}.onnx"
    sess = sd.load_onnx(str(path), target="opencl")
    assert_matches_onnxruntime(sess, path)
    # buffers are reused: a second run with another input is right too
    assert_matches_onnxruntime(sess, path, seed=1)


def test_ssd_unfused_with_host_softmax_matches(model_dir):
    path = model_dir / "ssd.onnx"
    g = import_onnx(str(path))
    softmax = [o.stage_name for o in g.module.walk() if o.name == "tensorop.softmax"]
    sess = sd.load_onnx(str(path), fuse=False, host_ops=softmax)
    assert f'place = "host", name = "{softmax[0]}"' in sess.ir
    assert "group =" not in sess.ir
    out = assert_matches_onnxruntime(sess, path)
    selected = out[-1]
    assert selected.ndim == 2 and selected.shape[1] == 3 and len(selected) > 0


def kernel_count(path, fuse):
    fn = prepare(import_onnx(str(path)).module, fuse=fuse)
    steps, _ = plan_steps(fn, "opencl", None)
    return sum(len(s.segment.plan.launches) for s in steps if s.kind == "gpu")


@pytest.mark.parametrize("name, fused, unfused", [
    # ResNet-18: 20 convs (bias, relu, residual add fused in; the maxpool linked into the first,
    # the global pool into the last), and the classifier as split-K: the products of k slices of
    # the pooled row (the reshape into slices moves no data: no kernel), their sum+bias
    ("resnet18", 22, 24 + 20 + 17 + 8 + 1),
    # MobileNetV2: 52 convs (bias, relu6, residual add fused in; the 10 depthwise convs whose
    # projection has at most 64 channels computed inside it; the global pool linked into the
    # last conv), split-K classifier
    ("mobilenetv2", 54 - 10, 55 + 52 + 35 + 10 + 1),
])
def test_fusion_kernel_counts(model_dir, name, fused, unfused):
    path = model_dir / f"{name}.onnx"
    assert kernel_count(path, True) == fused
    assert kernel_count(path, False) == unfused


def test_batchnorm_folded_into_conv(model_dir):
    g = import_onnx(str(model_dir / "resnet18.onnx"))
    names = [o.name for o in g.module.walk()]
    assert names.count("tensorop.conv2d") == 20
    assert names.count("tensorop.bias_add") == 21  # one per conv (its folded batch norm) and the gemm
    assert "tensorop.binary" in names and names.count("tensorop.binary") == 8  # the residual adds only


@needs_nvcc
def test_model_cuda_text_compiles(model_dir, tmp_path):
    """Every segment of the models, lowered for the CUDA target with the chosen schedules,
    compiles with nvcc for sm_90 (no GPU needed)."""
    import shutil
    import subprocess

    procs = []
    for name in MODELS:
        fn = prepare(import_onnx(str(model_dir / f"{name}.onnx")).module)
        steps, _ = plan_steps(fn, "cuda", None)
        for st in steps:
            if st.kind == "gpu":
                src = tmp_path / f"{name}_{st.segment.name}.cu"
                src.write_text(st.segment.source)
                procs.append((src.name, subprocess.Popen(
                    [shutil.which("nvcc"), "-arch=sm_90", "--ptx", "-O1", str(src), "-o", str(src) + ".ptx"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    # one segment each, but ssd: two (split by the host conversion of TopK's indices to int64)
    assert len(procs) == len(MODELS) + 1
    for name, p in procs:
        log = p.stdout.read()
        assert p.wait() == 0, f"nvcc rejects {name}:\n{log}"
