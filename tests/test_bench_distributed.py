"""benchmarks/bench_distributed.py on two PoCL devices (the tiny model, few requests; its
tuning rows are sd.tune(client=...), which tests/test_distributed_tune.py covers), and its
--predict path on a profile file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = str(ROOT / "benchmarks" / "bench_distributed.py")


def run(*args, timeout=900):
    proc = subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "POCL_DEVICES": "pthread pthread"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_measures_on_two_pocl_devices(tmp_path):
    out = tmp_path / "d.json"
    run("--target", "opencl", "--size", "32", "--models", "tiny", "--batches", "1", "--devices", "1,2",
        "--partitions", "auto", "--requests", "2", "--repeat", "2", "--tune-trials", "0", "--json", str(out))
    data = json.loads(out.read_text())
    one, two = data["rows"]
    assert (one["devices"], two["devices"], two["partition"]) == (1, 2, "auto")
    assert one["max_rel_err"] < 1e-3 and two["max_rel_err"] < 1e-3
    assert two["speedup_latency"] > 0 and two["predicted"]["latency_ms"] > 0 and two["plan"]
    assert data["tuning"] is None


def test_predicts_from_profiles(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from profile_layers import model_proto

    from sched_dsl.graph.onnx_import import import_onnx
    from sched_dsl.graph.simulate import layer_graph

    layers = layer_graph(import_onnx(model_proto("tiny", 32, 4)).module)
    prof = {"model": "tiny", "size": 32, "batch": 4, "latency_ms": 1.0, "host_link": {"gbps": 20.0, "latency_us": 10},
            "layers": [{"name": L.name, "kind": "kernel", "ms": 0.1} for L in layers]}
    (tmp_path / "prof").mkdir()
    (tmp_path / "prof" / "tiny_b4.json").write_text(json.dumps(prof))
    out = tmp_path / "p.json"
    run("--predict", str(tmp_path / "prof"), "--devices", "1,2,4", "--partitions", "split,pipeline",
        "--json", str(out), timeout=300)
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 + 2 * 2 * 2
    split4 = [r for r in rows if r["devices"] == 4 and r["partition"] == "split" and r["objective"] == "latency"][0]
    assert split4["speedup_latency"] > 1.5  # batch 4 over 4 devices: each takes one image


def test_profile_layers_writes_what_predict_reads(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_layers.py"), "--target", "opencl",
                           "--size", "32", "--models", "tiny", "--batches", "2", "--repeat", "2",
                           "--out", str(tmp_path / "prof")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prof = json.loads((tmp_path / "prof" / "tiny_b2.json").read_text())
    assert prof["batch"] == 2 and prof["latency_ms"] > 0 and prof["host_link"]["gbps"] > 0
    assert prof["layers"] and all(layer["ms"] >= 0 for layer in prof["layers"])
    run("--predict", str(tmp_path / "prof"), "--devices", "1,2", "--partitions", "split",
        "--json", str(tmp_path / "p.json"), timeout=300)
    assert len(json.loads((tmp_path / "p.json").read_text())["rows"]) == 1 + 2
