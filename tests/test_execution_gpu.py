"""Whole-model execution on an NVIDIA GPU through the CUDA target: CUDA-graph replay against
onnxruntime and against graph=False, host ops splitting the graph into captured pieces, the
planned arena, the kernel cache. Skipped, saying why, where there is no CUDA device; the same
behaviour is covered on PoCL by test_execution.py."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import sched_dsl as sd
from gpu_cases import cuda_unavailable
from model_files import assert_matches_onnxruntime, make_models
from sched_dsl.graph.onnx_import import import_onnx


@pytest.fixture(autouse=True)
def needs_cuda():
    why = cuda_unavailable()
    if why:
        pytest.skip(why)


def save(tmp_path, name, size):
    path = tmp_path / f"{name}.onnx"
    onnx.save(make_models().MODELS[name](size), str(path))
    return path


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_cuda_graph_replay_matches(tmp_path, name):
    path = save(tmp_path, name, 224)
    graph = sd.load_onnx(str(path), target="cuda")
    assert graph.capture == "cuda graph"
    eager = sd.load_onnx(str(path), target="cuda", graph=False)
    assert eager.capture == "off"
    for seed in (0, 1):
        got = assert_matches_onnxruntime(graph, path, seed=seed)
        x = np.random.default_rng(seed).standard_normal((1, 3, 224, 224)).astype(np.float32)
        np.testing.assert_array_equal(got[0], eager.run(None, {"input": x})[0])
    assert graph.memory["arena"] < graph.memory["intermediates unplanned"]


def test_cuda_host_ops_split_captured_pieces(tmp_path):
    path = save(tmp_path, "ssd", 128)
    g = import_onnx(str(path))
    softmax = [o.stage_name for o in g.module.walk() if o.name == "tensorop.softmax"]
    sess = sd.load_onnx(str(path), target="cuda", host_ops=softmax)
    assert sess.capture == "cuda graph" and sess.stats()["pieces"] >= 3
    assert_matches_onnxruntime(sess, path)
    assert_matches_onnxruntime(sess, path, seed=1)


def test_cuda_second_load_compiles_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHED_DSL_CACHE", str(tmp_path / "cache"))
    path = save(tmp_path, "resnet18", 64)
    first = sd.load_onnx(str(path), target="cuda")
    assert first.load_stats["compiled"] == first.kernel_count
    second = sd.load_onnx(str(path), target="cuda")
    assert second.load_stats["compiled"] == 0 and second.load_stats["lowered"] == 0
    assert second.load_stats["compiled from cache"] == second.kernel_count
    assert_matches_onnxruntime(second, path)
