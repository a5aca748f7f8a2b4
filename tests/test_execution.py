"""Whole-model execution on the default OpenCL device (PoCL here): pieces recorded once and
replayed (command buffers or preset arguments), intermediates in the planned arena, the
on-disk kernel cache (hits, racing processes, the size bound), sched-run --stats; and the
CUDA runner's capture logic with a stand-in driver (the real one runs in
test_execution_gpu.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import sched_dsl as sd
from model_files import assert_matches_onnxruntime, make_models
from sched_dsl.graph.onnx_import import import_onnx
from sched_dsl.runtime import cache as kc

LAYERS = 5
SIZE = 12


def chain_model(layers: int = LAYERS) -> onnx.ModelProto:
    """conv 3x3 + batch norm + relu, `layers` times, 8 channels at 12x12, then a global max
    pool, linked into the last conv (a max, unlike an average's atomic adds, comes out the
    same whatever order the atomics run in: the tests below compare runs bit for bit)."""
    mm = make_models()
    b = mm.Builder(seed=3)
    x, cin = "input", 3
    for _ in range(layers):
        x, cin = b.relu(b.conv(x, cin, 8, 3)), 8
    (y,) = b.node("GlobalMaxPool", [x])
    return b.model("chain", SIZE, [(y, "pooled", [1, 8, 1, 1], TensorProto.FLOAT)])


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    path = tmp_path_factory.mktemp("chain") / "chain.onnx"
    onnx.save(chain_model(), str(path))
    return path


def feeds(seed=0):
    return {"input": np.random.default_rng(seed).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)}


# ---- memory planning ---------------------------------------------------------------------------

def test_planned_arena_keeps_results_and_lowers_peak_memory(chain):
    planned = sd.load_onnx(str(chain))
    unplanned = sd.load_onnx(str(chain), plan_memory=False)
    assert "arena_offset = " in planned.ir and "arena_size = " in planned.ir
    assert "arena_offset" not in unplanned.ir
    for seed in (0, 1):
        got = assert_matches_onnxruntime(planned, chain, seed=seed)
        np.testing.assert_array_equal(got[0], unplanned.run(None, feeds(seed))[0])
    # each fused conv but the last (which writes the pool) writes 8x12x12 floats; in a chain
    # only two are alive at once
    one = 8 * SIZE * SIZE * 4
    aligned = -(-one // planned.device.alignment) * planned.device.alignment
    assert planned.memory["arena"] == 2 * aligned
    assert planned.memory["intermediates unplanned"] == (LAYERS - 1) * one + 8 * 4
    assert unplanned.memory["arena"] == 0
    assert unplanned.peak_bytes - planned.peak_bytes >= (LAYERS - 3) * one
    assert planned.peak_bytes == planned.memory["weights"] + planned.memory["inputs"] + planned.memory["arena"]


# ---- capture and replay ------------------------------------------------------------------------

def count_calls(monkeypatch, owner, name):
    calls = []
    real = getattr(owner, name)

    def counted(*args, **kw):
        calls.append(name)
        return real(*args, **kw)
    monkeypatch.setattr(owner, name, counted)
    return calls


def test_pieces_are_recorded_once_and_replayed(chain, monkeypatch):
    import pyopencl as cl

    from sched_dsl.runtime import opencl

    sess = sd.load_onnx(str(chain))
    has_cb = opencl.has_command_buffer(opencl.default_device())
    assert sess.capture == ("command buffer" if has_cb else "preset arguments")
    launches = count_calls(monkeypatch, cl, "enqueue_nd_range_kernel")
    replays = count_calls(monkeypatch, opencl.CommandBuffer, "enqueue")
    for seed in (0, 1, 2):  # replayed with new inputs each time
        assert_matches_onnxruntime(sess, chain, seed=seed)
    if has_cb:  # two command buffers a run: the fill that zeroes the pool linked into the last conv stands between
        assert (len(launches), len(replays)) == (0, 2 * 3)
    else:
        assert (len(launches), len(replays)) == (3 * sess.kernel_count, 0)


def test_preset_arguments_without_command_buffers(chain, monkeypatch):
    import pyopencl as cl

    from sched_dsl.runtime import opencl

    monkeypatch.setattr(opencl, "has_command_buffer", lambda d: False)
    sess = sd.load_onnx(str(chain))
    assert sess.capture == "preset arguments"
    launches = count_calls(monkeypatch, cl, "enqueue_nd_range_kernel")
    assert_matches_onnxruntime(sess, chain, seed=4)
    assert len(launches) == sess.kernel_count


def test_graph_off_launches_every_kernel_with_its_arguments(chain, monkeypatch):
    from sched_dsl.runtime import opencl

    sess = sd.load_onnx(str(chain), graph=False)
    assert sess.capture == "off" and sess.stats()["capture"] == "off"
    replays = count_calls(monkeypatch, opencl.CommandBuffer, "enqueue")
    assert_matches_onnxruntime(sess, chain, seed=5)
    assert replays == []


def test_host_ops_split_the_model_into_pieces(chain):
    g = import_onnx(str(chain))
    convs = [o.stage_name for o in g.module.walk() if o.name == "tensorop.conv2d"]
    sess = sd.load_onnx(str(chain), host_ops=[convs[2]])
    # uploads and the first two convs | conv 3 on the host | the rest
    assert sess.stats()["pieces"] == 2
    assert_matches_onnxruntime(sess, chain, seed=6)
    layers = sess.profile(feeds())
    kinds = [k for _, k, _ in layers]
    assert kinds.count("host") == 1 and kinds.count("kernel") == sess.kernel_count
    assert kinds.index("host") < len(kinds) - 1


# ---- the kernel cache --------------------------------------------------------------------------

@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("SCHED_DSL_CACHE", str(d))
    return d


def test_second_load_compiles_nothing(chain, fresh_cache):
    first = sd.load_onnx(str(chain))
    n = first.kernel_count
    assert first.load_stats["lowered"] == 1 and first.load_stats["compiled"] == n
    assert first.load_stats["compiled from cache"] == 0
    second = sd.load_onnx(str(chain))
    assert second.load_stats["lowered"] == 0 and second.load_stats["lowered from cache"] == 1
    assert second.load_stats["compiled"] == 0 and second.load_stats["compiled from cache"] == n
    assert_matches_onnxruntime(second, chain)
    assert len(list(fresh_cache.iterdir())) == n + 1  # a binary per kernel and the lowered segment


def test_two_processes_racing_on_one_cache(chain, fresh_cache, tmp_path):
    script = textwrap.dedent(f"""
        import sys, numpy as np
        import sched_dsl as sd
        x = np.random.default_rng(0).standard_normal((1, 3, {SIZE}, {SIZE})).astype(np.float32)
        np.save(sys.argv[1], sd.load_onnx({str(chain)!r}).run(None, {{"input": x}})[0])
    """)
    env = {**os.environ, "SCHED_DSL_CACHE": str(fresh_cache)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"out{k}.npy")], env=env,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for k in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    outs = [np.load(tmp_path / f"out{k}.npy") for k in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    sess = sd.load_onnx(str(chain))  # the cache both wrote serves a third load whole
    assert sess.load_stats["compiled"] == 0 and sess.load_stats["lowered"] == 0
    np.testing.assert_array_equal(sess.run(None, feeds())[0], outs[0])
    assert not [p for p in fresh_cache.iterdir() if p.name.startswith(".tmp-")]


def test_cache_keeps_its_bound_and_evicts_the_least_recently_used(tmp_path):
    c = kc.DiskCache(tmp_path, max_bytes=3 * 1100)
    for k in range(3):
        c.put("x", f"k{k}", bytes([k]) * 1000)
        t = time.time() - 100 + k
        os.utime(c.path("x", f"k{k}"), (t, t))
    assert c.get("x", "k0") == bytes([0]) * 1000  # used now: k1 is the oldest
    c.put("x", "k3", b"3" * 1000)
    assert c.size() <= 3 * 1100
    assert c.get("x", "k1") is None
    assert [c.get("x", k) is not None for k in ("k0", "k2", "k3")] == [True, True, True]
    c.put("x", "big", b"b" * 5000)  # larger than the whole bound: nothing stays
    assert c.size() == 0


def test_damaged_entry_is_a_miss_and_is_rewritten(chain, fresh_cache):
    sd.load_onnx(str(chain))
    for p in fresh_cache.iterdir():
        p.write_bytes(p.read_bytes()[:-7])  # cut short: the checksum no longer matches
    sess = sd.load_onnx(str(chain))
    assert sess.load_stats["lowered"] == 1 and sess.load_stats["compiled"] == sess.kernel_count
    assert_matches_onnxruntime(sess, chain)
    again = sd.load_onnx(str(chain))
    assert again.load_stats["compiled"] == 0 and again.load_stats["lowered"] == 0


def test_cache_off_and_bad_bound(chain, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHED_DSL_CACHE", "off")
    assert kc.default_cache() is None
    sess = sd.load_onnx(str(chain))
    assert sess.load_stats["compiled"] == sess.kernel_count and sess.load_stats["compiled from cache"] == 0
    monkeypatch.setenv("SCHED_DSL_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("SCHED_DSL_CACHE_MAX_MB", "lots")
    with pytest.raises(ValueError, match="SCHED_DSL_CACHE_MAX_MB='lots' is not a number of megabytes"):
        kc.default_cache()


# ---- sched-run --stats -------------------------------------------------------------------------

def test_sched_run_stats(chain, tmp_path):
    exe = Path(sys.executable).parent / "sched-run"
    proc = subprocess.run([str(exe), str(chain), "--stats", "--repeat", "2"], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"kernels: {LAYERS} in 1 piece(s), replayed as: " in out  # the pool linked into the last conv
    assert "peak device memory: " in out and "without planning" in out
    assert "load: " in out and "kernels compiled" in out
    layer_lines = [ln for ln in out.splitlines() if ln.split()[1:2] == ["kernel"]]
    assert len(layer_lines) == LAYERS


# ---- the CUDA runner's logic, with a stand-in driver ---------------------------------------------

class FakeDriver:
    """Records what the runner asks of pycuda; device memory is a dict of arrays."""

    class function_attribute:  # noqa: N801 - pycuda's name
        MAX_THREADS_PER_BLOCK, NUM_REGS = "max", "regs"

    def __init__(self):
        self.log: list[tuple] = []
        self.memory: dict[int, np.ndarray] = {}

    def pagelocked_empty(self, shape, dtype):
        return np.zeros(shape, dtype)

    def memcpy_htod_async(self, ptr, a, stream):
        self.log.append(("htod", ptr, a.copy()))

    def memcpy_dtoh_async(self, a, ptr, stream):
        self.log.append(("dtoh", ptr))
        self.pending_out = (a, ptr)


class FakeKernel:
    def __init__(self, drv, name):
        self.drv, self.name = drv, name

    def get_attribute(self, what):
        return 1024 if what == "max" else 32

    def prepare(self, sig):
        self.sig = sig

    def prepared_async_call(self, grid, block, stream, *ptrs, shared_size=0):
        self.drv.log.append(("launch", self.name, ptrs))


class FakeGraph:
    made: list[FakeGraph] = []

    def __init__(self, stream, record):
        self.drv = stream.drv
        start = len(self.drv.log)
        record()
        self.nodes = self.drv.log[start:]
        del self.drv.log[start:]
        FakeGraph.made.append(self)

    def launch(self):
        self.drv.log.append(("graph",))


def fake_cuda_piece(drv):
    """A stand-in CUDA device and a piece of it: upload x, two launches, download z."""
    from sched_dsl.graph.device import Action, HostLayout
    from sched_dsl.lowering.host_plan import Launch

    class Stream:
        def __init__(self):
            self.drv = drv

        def synchronize(self):
            drv.log.append(("sync",))

    class Device:
        name, graph_mode, stream = "fake", "cuda graph", Stream()

        def __init__(self):
            self.drv = drv

        def wait(self, sync):
            sync()

    k1, k2 = FakeKernel(drv, "k1"), FakeKernel(drv, "k2")
    actions = [Action("upload", buffer="x", host="x"),
               Action("launch", layer="a", launch=Launch("a", (2, 1, 1), (32, 1, 1), ("x", "y")), kernel=k1),
               Action("launch", layer="b", launch=Launch("b", (1, 1, 1), (64, 1, 1), ("y", "z")), kernel=k2),
               Action("download", buffer="z", host="z_host")]
    buffers = {"x": 1000, "y": 2000, "z": 3000}
    layout = HostLayout({"x": (2,), "z": (3,)}, {"x": np.float32, "z": np.float32})
    return Device, (actions, buffers, layout), (k1, k2)


def test_cuda_runner_captures_once_and_replays(monkeypatch):
    from sched_dsl.graph.device import CudaRunner
    from sched_dsl.runtime import cuda

    drv = FakeDriver()
    monkeypatch.setattr(cuda, "CudaGraph", FakeGraph)
    FakeGraph.made.clear()
    Device, (actions, buffers, layout), (k1, k2) = fake_cuda_piece(drv)
    runner = CudaRunner(Device(), actions, buffers, layout, graph=True)
    assert runner.mode == "cuda graph"
    (graph,) = FakeGraph.made
    assert [n[0] for n in graph.nodes] == ["htod", "launch", "launch", "dtoh"]
    assert graph.nodes[1][1:] == ("k1", (1000, 2000)) and graph.nodes[2][1:] == ("k2", (2000, 3000))
    assert drv.log == [] and k1.sig == "PP"  # capturing ran nothing
    host = {"x": np.array([1.0, 2.0], np.float32)}
    runner.stage["z"][:] = [7, 8, 9]  # what the graph's download would leave there
    runner.run(host)
    assert drv.log == [("graph",), ("sync",)]  # one replay, one wait, no launch from Python
    np.testing.assert_array_equal(runner.stage["x"], [1.0, 2.0])  # the input was staged first
    np.testing.assert_array_equal(host["z_host"], [7, 8, 9])
    assert host["z_host"] is not runner.stage["z"]  # the caller gets a copy of the staging buffer
    drv.log.clear()
    FakeGraph.made.clear()
    eager = CudaRunner(Device(), actions, buffers, layout, graph=False)
    assert FakeGraph.made == []
    eager.run(host)
    assert [e[0] for e in drv.log] == ["htod", "launch", "launch", "dtoh", "sync"]


def test_cuda_runner_falls_back_when_capture_fails(monkeypatch):
    from sched_dsl.graph.device import CudaRunner
    from sched_dsl.runtime import cuda
    from sched_dsl.runtime.common import DeviceError

    def refuse(stream, record):
        raise DeviceError("cuStreamBeginCapture failed: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED")
    monkeypatch.setattr(cuda, "CudaGraph", refuse)
    drv = FakeDriver()
    Device, (actions, buffers, layout), _ = fake_cuda_piece(drv)
    with pytest.warns(RuntimeWarning, match="no CUDA graph for this piece .*CAPTURE_UNSUPPORTED"):
        runner = CudaRunner(Device(), actions, buffers, layout, graph=True)
    assert runner.mode == "off"
    runner.run({"x": np.zeros(2, np.float32)})
    assert [e[0] for e in drv.log] == ["htod", "launch", "launch", "dtoh", "sync"]


def test_a_cached_plan_keeps_every_launch_field(fresh_cache, monkeypatch):
    """A segment lowered from the cache launches as the one lowered afresh: dynamic shared
    memory included (a kernel over 48 KiB launched without it reads past its shared buffers;
    the cache once dropped it)."""
    import dataclasses

    from sched_dsl.graph import executor
    from sched_dsl.lowering.host_plan import HostPlan, Launch
    from sched_dsl.tensor import module_of

    real = executor.host_plan

    def with_big_tiles(module):
        plan = real(module)
        return dataclasses.replace(plan, launches=tuple(dataclasses.replace(ln, shared_bytes=57344)
                                                        for ln in plan.launches))

    monkeypatch.setattr(executor, "host_plan", with_big_tiles)
    x = sd.placeholder("X", (4, 8))
    fresh, _, first = executor.lowered(module_of([sd.relu(x, name="R")])[0], "cuda", {}, "seg")
    count = executor.COUNTS["lowered"]
    again, _, second = executor.lowered(module_of([sd.relu(x, name="R")])[0], "cuda", {}, "seg")
    assert executor.COUNTS["lowered"] == count and again == fresh  # from the cache
    assert second == first and {ln.dynamic_shared for ln in second.launches} == {57344}
    assert HostPlan.from_json(first.to_json()) == first
    with pytest.raises(ValueError, match="Launch records of another shape"):
        HostPlan.from_json({**first.to_json(), "launches": [["k", [1, 1, 1], [1, 1, 1], ["X"]]]})
    assert Launch("k", (1, 1, 1), (1, 1, 1), ()).dynamic_shared == 0
