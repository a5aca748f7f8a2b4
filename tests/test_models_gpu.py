"""The three models at 224x224 (the detector at 128x128) on an NVIDIA GPU through the CUDA
target, against onnxruntime; skipped, saying why, where there is no CUDA device."""

from __future__ import annotations

import onnx
import pytest

import sched_dsl as sd
from gpu_cases import cuda_unavailable
from model_files import assert_matches_onnxruntime, make_models


@pytest.mark.parametrize("name, size", [("resnet18", 224), ("mobilenetv2", 224), ("ssd", 128)])
@pytest.mark.parametrize("fuse", [True, False])
def test_model_on_cuda_matches_onnxruntime(tmp_path, name, size, fuse):
    why = cuda_unavailable()
    if why:
        pytest.skip(why)
    path = tmp_path / f"{name}.onnx"
    onnx.save(make_models().MODELS[name](size), str(path))
    sess = sd.load_onnx(str(path), target="cuda", fuse=fuse)
    assert_matches_onnxruntime(sess, path)
