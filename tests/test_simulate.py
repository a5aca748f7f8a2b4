"""The simulator and the partitioner on hand-made layers and on the layers of the models of
examples/make_models.py (no device needed)."""

from __future__ import annotations

import pytest
from model_files import SIZE, make_models

from sched_dsl.graph.partition import apply_plan, crossing_bytes, plan, split_plan, stages
from sched_dsl.graph.simulate import HOST, Assign, Layer, Link, Topology, layer_graph, predict, with_times

FAST = Link(gbps=100.0, latency_us=1.0, launch_ms=0.001)
SLOW = Link(gbps=0.001, latency_us=1000.0, launch_ms=0.001)


def conv(name, inputs, ms, rows=64, channels=64):
    shape = (1, channels, rows, rows)
    return Layer(name, name, "conv2d", [name], list(inputs), shape, 4 * channels * rows * rows, shape,
                 (3, 1), 1e9, ms, ("batch", "rows", "channels"))


def chain(n, ms=1.0):
    return [conv(f"c{k}", [f"c{k - 1}"] if k else [], ms) for k in range(n)]


def test_one_device_is_the_sum_of_its_layers():
    layers = chain(4, 2.0)
    p = predict(layers, {}, Topology(link=FAST))
    out_move = FAST.ms(layers[-1].out_bytes)  # the output goes to the host
    busy = 4 * (2.0 + FAST.launch_ms)  # each layer: its kernel and one launch
    assert p.latency_ms == pytest.approx(busy + out_move)
    assert p.throughput == pytest.approx(1e3 / busy)


def test_a_row_split_halves_the_compute_and_moves_halos():
    layers = chain(2, 10.0)
    both = split_plan(layers, [0, 1])
    assert all(a == Assign((0, 1), "rows") for a in both.values())
    p = predict(layers, both, Topology(devices=2, link=FAST))
    # each part: 5 ms + launch per layer; device 1 first gets its 33 input rows (32 and a halo row),
    # before the second layer one halo row each way, at the end its 32 output rows go to the host
    row = 4 * 64 * 64
    low = 10.0 + 2 * FAST.launch_ms  # two layers, each a launch per part
    assert low < p.latency_ms <= low + FAST.ms(33 * row) + FAST.ms(row) + FAST.ms(32 * row) + 1e-9
    assert p.throughput == pytest.approx(1e3 / (10.0 + 2 * FAST.launch_ms), rel=0.01)


def test_a_pipeline_doubles_throughput_not_latency():
    layers = chain(4, 1.0)
    top = Topology(devices=2, link=FAST)
    piped = plan(layers, top, "pipeline")
    assert [piped[L.name].devices for L in layers] == [(0,), (0,), (1,), (1,)]
    one, two = predict(layers, {}, top), predict(layers, piped, top)
    assert two.throughput == pytest.approx(2 * one.throughput, rel=0.05)
    assert two.latency_ms >= one.latency_ms


def test_stages_balance_and_count_what_crosses():
    layers = chain(4) + [conv("add", ["c1", "c3"], 1.0)]  # c1 crosses every cut after it
    assert crossing_bytes(layers)[2:5] == [layers[0].out_bytes * n for n in (1, 2, 2)]
    assert stages([conv(f"x{k}", [], ms) for k, ms in enumerate([3, 1, 1, 1, 3])], 2, FAST) == [0, 2]


def test_auto_splits_on_a_fast_link_and_not_on_a_slow_one():
    layers = chain(3, 10.0)
    fast = plan(layers, Topology(devices=2, link=FAST), "auto")
    assert all(len(a.devices) == 2 for a in fast.values())
    slow = plan(layers, Topology(devices=2, link=SLOW, host=FAST), "auto")
    assert {a.devices for a in slow.values()} == {(0,)}
    for top in (Topology(devices=2, link=FAST), Topology(devices=2, link=SLOW, host=FAST)):  # never worse
        best = predict(layers, plan(layers, top, "auto"), top).latency_ms
        for other in ("split", "pipeline"):
            assert best <= predict(layers, plan(layers, top, other), top).latency_ms + 1e-9


def test_hierarchical_machines_first():
    layers = chain(8, 1.0)
    top = Topology(machines=2, devices=2, link=FAST, network=Link(gbps=10.0, latency_us=20.0))
    p = plan(layers, top, "pipeline", "throughput")
    machines = [top.machine_of(p[L.name].devices[0]) for L in layers]
    assert machines == [0] * 4 + [1] * 4  # contiguous per machine, then pipelined inside each
    assert {p[L.name].devices for L in layers[4:]} == {(2,), (3,)}
    lonely = plan(layers, Topology(machines=2, devices=2, link=FAST, network=SLOW), "auto", "latency")
    assert {top.machine_of(a.devices[0]) for a in lonely.values()} == {0}  # a slow network is not worth it


def test_layers_of_a_model_and_profile_names():
    import onnx  # noqa: F401 - make_models needs it

    g = __import__("sched_dsl.graph.onnx_import", fromlist=["import_onnx"]).import_onnx(
        make_models().MODELS["ssd"](SIZE))
    layers = layer_graph(g.module)
    names = [L.name for L in layers]
    assert "conv2+conv2_bias+relu8" in names and layers[0].kind == "conv2d" and layers[0].window == (3, 2)
    host = [L for L in layers if L.kind == "host"]
    assert host and all(L.modes == () for L in host)
    timed = with_times(layers, [("conv2+conv2_bias+relu8", "kernel", 0.5), ("softmax60_max", "kernel", 0.1),
                                ("softmax60", "kernel", 0.2), ("input->upload", "upload", 9.0)])
    by = {L.name: L.ms for L in timed}
    assert by["conv2+conv2_bias+relu8"] == 0.5 and by["softmax60"] == pytest.approx(0.3)
    assert {L.name: L.kernels for L in timed}["softmax60"] == 2  # each kernel row is a launch
    the_plan = plan(timed, Topology(devices=2, link=FAST), "split")
    apply_plan(g.module, timed, the_plan)
    text = str(g.module)
    assert 'split = "rows"' in text and "devices = array<i64: 0, 1>" in text
    assert all(the_plan[L.name].devices == (HOST,) for L in host)


def test_devices_that_share_a_processor_take_turns():
    layers = chain(2, 10.0)
    both = split_plan(layers, [0, 1])
    apart = predict(layers, both, Topology(devices=2, link=FAST))
    shared = predict(layers, both, Topology(devices=2, link=FAST, shared=True))
    assert shared.latency_ms >= 20.0 > apart.latency_ms
