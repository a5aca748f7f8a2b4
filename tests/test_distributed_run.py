"""Inference across Dask workers: two workers of a LocalCluster, each with one PoCL device,
each holding one stage of the detector; activations pass between them as Dask task results."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from model_files import SIZE, make_models

import distributed  # noqa: E402,F401 - the `distributed` extra, part of `test`: missing, these tests fail


def test_two_workers_hold_a_stage_each(tmp_path):
    from distributed import Client, LocalCluster

    from sched_dsl.graph.distributed import DistributedSession

    path = str(tmp_path / "ssd.onnx")
    onnx.save(make_models().MODELS["ssd"](SIZE), path)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    xs = [np.random.default_rng(s).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32) for s in range(3)]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        ds = DistributedSession(client, path, partition="pipeline")
        try:
            assert len(ds.stages) == 2 and ds.stages[0][0] != ds.stages[1][0]  # a stage on each worker
            assert ds.stages[1][2] == [0]  # the second reads the first's activations
            got = [ds.run(None, {"input": xs[0]})] + ds.run_many(None, [{"input": x} for x in xs[1:]])
        finally:
            ds.close()
    for x, outs in zip(xs, got):
        for g, e in zip(outs, ref.run(None, {"input": x})):
            assert g.shape == e.shape and g.dtype == e.dtype
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(e).max())))


def test_one_worker_with_two_devices(tmp_path):
    """Hierarchical: the one machine's stage is split over that worker's two devices."""
    from distributed import Client, LocalCluster

    from sched_dsl.graph.distributed import DistributedSession

    model = make_models().MODELS["tiny"](SIZE, batch=2)
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        ds = DistributedSession(client, model, devices_per_worker=2, partition="split")
        try:
            assert any(line.endswith("0,1 split batch") for line in ds.plan), ds.plan
            got = ds.run(None, {"input": x})
        finally:
            ds.close()
    np.testing.assert_allclose(got[0], want[0], rtol=1e-3, atol=1e-4)
