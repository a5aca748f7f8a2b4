"""tensorop-split: conv2d, pool2d and matmul split across devices by rows (with halos),
channels or batch, elementwise ops following their producer's split; the split function means
what the unsplit one meant (numpy reference, no device), and the moves are explicit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.utils.exceptions import DiagnosticException

import sched_dsl as sd
from sched_dsl.context import make_context
from sched_dsl.lowering.fuse import TensoropFusePass
from sched_dsl.lowering.place import TensoropPlacePass
from sched_dsl.lowering.split import TensoropSplitPass, shares
from sched_dsl.tensor import module_of
from sched_dsl.testing.check import evaluate


def split_and_compare(outputs, devices, mode, seed=0):
    module, placeholders, _ = module_of(outputs)
    rng = np.random.default_rng(seed)
    inputs = {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in placeholders}
    want = list(evaluate(module, inputs).values())
    TensoropSplitPass(devices=devices, mode=mode).apply(make_context(), module)
    module.verify()
    got = list(evaluate(module, inputs).values())
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    return module


def test_shares_cover_the_range():
    assert shares(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert shares(2, 3) == [(0, 1), (1, 2), (2, 2)]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_conv_pool_chains_split_mean_the_same(data):
    n = data.draw(st.integers(1, 3), label="batch")
    c = data.draw(st.integers(1, 4), label="channels")
    h = data.draw(st.integers(5, 13), label="rows")
    k = data.draw(st.integers(1, 3), label="kernel")
    stride = data.draw(st.integers(1, 2), label="stride")
    pad = data.draw(st.integers(0, 2), label="padding")
    dil = data.draw(st.integers(1, 2), label="dilation")
    depthwise = data.draw(st.booleans(), label="depthwise")
    mode = data.draw(st.sampled_from(["rows", "batch"] + ([] if depthwise else ["channels"])), label="mode")
    devices = data.draw(st.integers(2, 3), label="devices")
    f = c if depthwise else data.draw(st.integers(2, 5), label="filters")
    x = sd.placeholder("x", (n, c, h, h + 1))
    w = sd.placeholder("w", (f, 1 if depthwise else c, k, k))
    y = sd.relu(sd.conv2d(x, w, stride=stride, padding=(pad, 1, max(0, pad - 1), 0), dilation=dil,
                          groups=c if depthwise else 1, name="conv"), name="act")
    if data.draw(st.booleans(), label="then pool"):
        z = sd.pool2d(y, data.draw(st.sampled_from(["max", "avg"])), kernel=2, stride=1, padding=(1, 0, 0, 1),
                      name="pool")
    else:
        w2 = sd.placeholder("w2", (3, f, 3, 3))
        z = sd.conv2d(y, w2, stride=data.draw(st.integers(1, 2)), padding=1, name="conv_b")
    split_and_compare([z], devices, mode)


@pytest.mark.parametrize("mode", ["rows", "channels", "batch"])
def test_matmul_and_residual_add_split(mode):
    a, b = sd.placeholder("A", (6, 5)), sd.placeholder("B", (5, 7))
    c = sd.matmul(a, b, name="mm")
    d = sd.add(sd.relu(c, name="r"), sd.placeholder("R", (6, 7)), name="res")
    split_and_compare([d], 2, mode)


def test_moves_are_explicit_in_the_ir():
    x, w, w2 = sd.placeholder("x", (1, 3, 9, 8)), sd.placeholder("w", (4, 3, 3, 3)), sd.placeholder("w2", (5, 4, 3, 3))
    y = sd.relu(sd.conv2d(x, w, padding=1, name="c1"), name="r1")
    module = split_and_compare([sd.conv2d(y, w2, stride=2, padding=1, name="c2")], 2, "rows")
    text = str(module)
    assert 'name = "x_scatter0", axis = 2 : i64, start = 0 : i64, stop = 6 : i64' in text  # rows 0..5 with halo
    assert "padding = array<i64: 1, 1, 0, 1>" in text and "padding = array<i64: 0, 1, 1, 1>" in text
    assert 'name = "r1_halo0", axis = 2 : i64, start = 0 : i64, stop = 1 : i64' in text  # the halo of device 1
    assert 'name = "c2_gather0"' in text  # the gather before the return
    TensoropPlacePass().apply(make_context(), module)
    TensoropFusePass().apply(make_context(), module)
    module.verify()
    text = str(module)
    assert "tensorop.transfer %r1_halo0 {src = 1 : i64, dst = 0 : i64}" in text
    assert "tensorop.transfer %c2_part1 {src = 1 : i64, dst = 0 : i64}" in text
    assert 'group = "c1_part1", name = "r1_part1"' in text  # the epilogue fuses with its part


def test_bad_splits_are_named_errors():
    x, w = sd.placeholder("x", (1, 4, 8, 8)), sd.placeholder("w", (4, 1, 3, 3))
    module, _, _ = module_of([sd.conv2d(x, w, padding=1, groups=4, name="dw")])
    with pytest.raises(DiagnosticException, match="'dw': a grouped conv2d splits by rows or batch"):
        TensoropSplitPass(devices=2, mode="channels").apply(make_context(), module)
    with pytest.raises(DiagnosticException, match='mode "diagonal" is not one of'):
        TensoropSplitPass(devices=2, mode="diagonal").apply(make_context(), module)


def test_sched_opt_runs_the_pass(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    x, w = sd.placeholder("x", (1, 2, 6, 6)), sd.placeholder("w", (2, 2, 3, 3))
    module, _, _ = module_of([sd.conv2d(x, w, padding=1, name="c")])
    path = tmp_path / "c.mlir"
    path.write_text(str(module))
    exe = str(Path(sys.executable).parent / "sched-opt")
    proc = subprocess.run([exe, str(path), "-p", 'tensorop-split{devices=2 mode="rows"},tensorop-place'],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tensorop.transfer" in proc.stdout and '"c_part1"' in proc.stdout
