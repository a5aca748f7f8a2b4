"""The models of examples/make_models.py, built once per test session at a small input size."""

import importlib.util
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).parent.parent
SIZE = 32


def make_models():
    spec = importlib.util.spec_from_file_location("make_models", ROOT / "examples" / "make_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_matches_onnxruntime(sess, path, seed=0, rtol=1e-3, atol=1e-4):
    """Runs both on the same random input; every output agrees (shape, dtype, values)."""
    import onnxruntime as ort

    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal(ref.get_inputs()[0].shape).astype(np.float32)
    feeds = {ref.get_inputs()[0].name: x}
    expected = ref.run(None, feeds)
    got = sess.run(None, feeds)
    assert len(got) == len(expected)
    for out, g, e in zip(ref.get_outputs(), got, expected):
        assert g.dtype == e.dtype, out.name
        assert g.shape == e.shape, out.name
        scale = max(float(np.abs(e).max()), 1.0) if e.size else 1.0
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol * scale, err_msg=out.name)
    return got
