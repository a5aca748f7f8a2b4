"""Distributed tuning on a Dask LocalCluster: two workers, each pinned to one of two PoCL
devices (POCL_DEVICES="pthread pthread"); every config lands in the records exactly once, also
when a worker dies in the middle of measuring it."""

from __future__ import annotations

import os
import sys
from collections import Counter

import pytest

import sched_dsl as sd
from sched_dsl import records as R

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tune_spaces import matmul_space, threads_space  # noqa: E402

import distributed  # noqa: E402,F401 - the `distributed` extra, part of `test`: missing, these tests fail
FAST = dict(repeat=2, warmup=1, timeout=30.0)


@pytest.fixture
def two_devices():
    from sched_dsl.runtime.opencl import devices

    assert len(devices()) >= 2, "tests/conftest.py sets POCL_DEVICES to two PoCL devices"
    return 2


def test_two_workers_measure_on_their_own_devices(tmp_path, two_devices):
    from sched_dsl.tuner.distributed import DaskMeasurer, close_client, local_cluster

    client = local_cluster(2, processes=False)
    try:
        c, s = matmul_space()
        rec = str(tmp_path / "r.jsonl")
        res = sd.tune(c, s, "opencl", trials=6, records=rec, client=client, strategy="random", **FAST)
        assert res.trials == 6 and res.best_ms is not None
        recs = R.load(rec)
        assert len(recs) == 6 and len({r.config_key() for r in recs}) == 6
        assert {r.workload for r in recs} == {res.workload}
        with DaskMeasurer(client, c, s, "opencl", progress_bars=False, **FAST) as m:
            assert sorted(i["ordinal"] for i in m.worker_info) == [0, 1]  # worker k on device k
            assert sum(f is not None for f in m.features([{"ti": 4, "tj": 4}, {"ti": 8, "tj": 2}])) == 2
        again = sd.tune(c, s, "opencl", trials=8, records=rec, client=client, strategy="random", **FAST)
        assert again.resumed == 6 and len(R.load(rec)) == 8  # resumed: nothing measured twice
    finally:
        close_client(client)


def test_killed_worker_records_each_config_once(tmp_path, two_devices, monkeypatch):
    import dask
    from dist_faults import KILL_ALWAYS, KILL_ONCE

    from sched_dsl.tuner.distributed import close_client, local_cluster

    monkeypatch.setenv("SCHED_DSL_FAULT_DIR", str(tmp_path))
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        client = local_cluster(2, processes=True)
    try:
        c, s = threads_space()
        rec = str(tmp_path / "r.jsonl")
        # one config in flight at a time: Dask counts a worker's death against every task queued
        # there, so a config waiting next to a killing one could be blamed too
        res = sd.tune(c, s, "opencl", trials=4, records=rec, client=client, strategy="random", batch=1,
                      hook="dist_faults:kill", **FAST)
    finally:
        close_client(client)
    recs = R.load(rec)
    assert Counter(r.config["t"] for r in recs) == {2: 1, 4: 1, 8: 1, 16: 1}  # exactly once each
    by_t = {r.config["t"]: r for r in recs}
    assert os.path.exists(tmp_path / "killed_once")
    assert by_t[KILL_ONCE].ok  # its worker died; another measured it
    assert by_t[KILL_ALWAYS].error == "runtime_error" and "killed" in by_t[KILL_ALWAYS].message
    assert by_t[2].ok and by_t[16].ok and res.trials == 4


def test_one_kind_of_device_per_tuning(two_devices):
    from sched_dsl.tuner.distributed import local_cluster

    with pytest.raises(ValueError, match="3 workers asked for, but there are 2 opencl device"):
        local_cluster(3)


def test_cli_workers_and_scheduler(tmp_path, two_devices, capsys):
    import json

    from distributed import LocalCluster

    from sched_dsl.tuner.cli import main as tune_cli

    spec = os.path.join(HERE, "tune_spaces.py") + ":matmul_space"
    assert tune_cli(["run", spec, "--workers", "3", "--trials", "2", "--no-progress"]) == 1
    assert "3 workers asked for, but there are 2 opencl device(s)" in capsys.readouterr().err
    assert tune_cli(["run", spec, "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "1", "--trials", "2"]) == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in capsys.readouterr().err
    rec = str(tmp_path / "r.jsonl")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        code = tune_cli(["run", spec, "--scheduler", cluster.scheduler_address, "--trials", "3", "--records", rec,
                         "--strategy", "random", "--no-progress", "--timeout", "30"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out.strip().splitlines()[-1])["trials"] == 3 and len(R.load(rec)) == 3
