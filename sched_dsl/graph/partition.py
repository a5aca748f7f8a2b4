"""Graph partitioning across devices and machines (d-Xenos, HiDP).

A plan says for every layer (sched_dsl.graph.simulate.Layer) which devices run it and how:
- "split": every conv2d, pool2d and matmul layer split over all devices (the batch when it has
  a row per device, else output rows for convs and pools, else output channels), the rest on
  the first device; for latency.
- "pipeline": contiguous stages of layers, one per device, balanced so that the slowest stage
  (its layers' times plus the activations it receives) is as fast as it can be; for
  throughput, with requests streaming through the stages.
- "auto": per layer, in program order, whole on one device or split one of the ways it
  allows, whichever the simulator says finishes it first (objective "latency") or loads the
  busiest device or link least (objective "throughput"); then the best, by the simulator, of
  that plan, "split", "pipeline" and everything on one device.
Hierarchical, as HiDP: with several machines, the layers are first cut into contiguous stages,
one per machine (the network is the slow link, so activations cross it once per stage), or
kept on one machine when the simulator says that is faster; then each machine's stage is
planned over that machine's devices as above.

`apply_plan` writes a plan into the model's IR (`device = k` on ops, `split` and `devices` on
split anchors) for tensorop-split and the executor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sched_dsl.graph.simulate import HOST, Assign, Layer, Plan, Simulator, State, Topology, predict

PARTITIONS = ("split", "pipeline", "auto")
OBJECTIVES = ("latency", "throughput")


def _split_mode(L: Layer, k: int) -> str | None:
    if not L.modes or k < 2:
        return None
    if "batch" in L.modes and L.out_shape[0] >= k:
        return "batch"
    if "rows" in L.modes and len(L.out_shape) == 4 and L.out_shape[2] >= k:
        return "rows"
    if "channels" in L.modes and L.out_shape[1] >= k:
        return "channels"
    return None


def _default(L: Layer, device: int) -> Assign:
    return Assign((HOST,)) if L.kind == "host" else Assign((device,))


def split_plan(layers: Sequence[Layer], devices: Sequence[int]) -> Plan:
    plan = {}
    for L in layers:
        mode = _split_mode(L, len(devices))
        plan[L.name] = Assign(tuple(devices), mode) if mode else _default(L, devices[0])
    return plan


def crossing_bytes(layers: Sequence[Layer]) -> list[float]:
    """bytes[c]: the activations that cross a cut between layer c - 1 and layer c."""
    index = {L.name: k for k, L in enumerate(layers)}
    last_use = {L.name: max([index[M.name] for M in layers if L.name in M.inputs], default=-1) for L in layers}
    out = [0.0] * (len(layers) + 1)
    for L in layers:
        for c in range(index[L.name] + 1, last_use[L.name] + 1):
            out[c] += L.out_bytes
    return out


def stages(layers: Sequence[Layer], k: int, link) -> list[int]:
    """Where k contiguous stages start (k indices, the first 0), minimising the slowest stage:
    its layers' times plus receiving what crosses into it."""
    n = len(layers)
    k = max(1, min(k, n))
    ms = [0.0 if L.kind == "host" else L.ms for L in layers]
    pre = np.concatenate([[0.0], np.cumsum(ms)])
    cross = crossing_bytes(layers)

    def cost(a: int, b: int) -> float:  # layers a .. b-1 as one stage
        return pre[b] - pre[a] + (link.ms(cross[a]) if a > 0 else 0.0)

    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(k + 1)]
    cut = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for s in range(1, k + 1):
        for b in range(1, n + 1):
            for a in range(s - 1, b):
                c = max(best[s - 1][a], cost(a, b))
                if c < best[s][b]:
                    best[s][b], cut[s][b] = c, a
    starts, b = [], n
    for s in range(k, 0, -1):
        a = cut[s][b]
        starts.append(a)
        b = a
    return sorted(starts)


def pipeline_plan(layers: Sequence[Layer], devices: Sequence[int], link) -> Plan:
    starts = stages(layers, len(devices), link) + [len(layers)]
    plan = {}
    for s, (a, b) in enumerate(zip(starts, starts[1:])):
        for L in layers[a:b]:
            plan[L.name] = _default(L, devices[s])
    return plan


def greedy_plan(layers: Sequence[Layer], devices: Sequence[int], topology: Topology, objective: str,
                context: Sequence[Layer] = ()) -> Plan:
    sim = Simulator(layers, topology, context, devices[0])
    st, plan = State(), {}
    for L in layers:
        options = [_default(L, d) for d in (devices if L.kind != "host" else devices[:1])]
        for mode in L.modes:
            if len(devices) > 1 and _fits(L, mode, len(devices)):
                options.append(Assign(tuple(devices), mode))
        scored = []
        for a in options:
            trial = st.copy()
            end = sim.place(trial, L, a)
            load = max((v for key, v in trial.busy.items() if key != HOST), default=0.0)
            scored.append(((end, load) if objective == "latency" else (load, end), a, trial))
        _, a, st = min(scored, key=lambda t: t[0])
        plan[L.name] = a
    return plan


def _fits(L: Layer, mode: str, k: int) -> bool:
    axis = {"batch": 0, "channels": 1, "rows": 2}[mode]
    return len(L.out_shape) > axis and L.out_shape[axis] >= k


def _score(layers, plan, topology, objective, context=(), entry=0) -> float:
    p = predict(layers, plan, topology, context, entry)
    return p.latency_ms if objective == "latency" else -p.throughput


def machine_plan(layers: Sequence[Layer], devices: Sequence[int], topology: Topology, partition: str,
                 objective: str, context: Sequence[Layer] = ()) -> Plan:
    """A plan of `layers` over `devices` (of one machine); `context`: the whole model's layers,
    when `layers` is a stage of it."""
    if partition == "split":
        return split_plan(layers, devices)
    if partition == "pipeline":
        return pipeline_plan(layers, devices, topology.link)
    candidates = [greedy_plan(layers, devices, topology, objective, context), split_plan(layers, devices),
                  pipeline_plan(layers, devices, topology.link), {L.name: _default(L, devices[0]) for L in layers}]
    return min(candidates, key=lambda p: _score(layers, p, topology, objective, context, devices[0]))


def plan(layers: Sequence[Layer], topology: Topology, partition: str = "auto", objective: str = "latency") -> Plan:
    """The plan of `layers` on `topology` (see the module docstring)."""
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition '{partition}'; choose from {', '.join(PARTITIONS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective '{objective}'; choose from {', '.join(OBJECTIVES)}")
    layers = list(layers)
    local = list(range(topology.devices))
    if topology.machines == 1:
        return machine_plan(layers, local, topology, partition, objective)
    # across machines first: contiguous stages, one per machine; then within each machine
    starts = stages(layers, topology.machines, topology.network) + [len(layers)]
    spread: Plan = {}
    for m, (a, b) in enumerate(zip(starts, starts[1:])):
        devices = [m * topology.devices + d for d in local]
        spread.update(machine_plan(layers[a:b], devices, topology, partition, objective, layers))
    if partition != "auto":
        return spread
    one = machine_plan(layers, local, topology, partition, objective)
    return min((spread, one), key=lambda p: _score(layers, p, topology, objective))


def machine_stages(layers: Sequence[Layer], the_plan: Plan, topology: Topology) -> list[list[Layer]]:
    """The layers of each machine, in order (a machine's are contiguous in a plan of `plan`)."""
    out: list[list[Layer]] = [[] for _ in range(topology.machines)]
    current = 0
    for L in layers:
        a = the_plan[L.name]
        if a.devices[0] != HOST:
            current = topology.machine_of(a.devices[0])
        out[current].append(L)
    return out


def apply_plan(module, layers: Sequence[Layer], the_plan: Plan, first_device: int = 0) -> None:
    """Writes the plan into the module's ops: `device = k` (k - first_device: the devices of
    one machine count from 0) on the ops of a layer on one device, `split` and `devices` on
    the anchor of a split layer (its fused elementwise ops follow the split)."""
    from xdsl.dialects.builtin import IntegerAttr, StringAttr, i64

    from sched_dsl.dialects import tensorop as T
    from sched_dsl.lowering.split import DEVICE, DEVICES, SPLIT

    ops = {o.stage_name: o for o in module.walk() if isinstance(o, T.TensorOp)}
    for L in layers:
        a = the_plan.get(L.name)
        if a is None or a.devices == (HOST,):
            continue
        local = tuple(d - first_device for d in a.devices)
        if a.mode is not None and len(local) > 1:
            op = ops[L.anchor]
            op.attributes[SPLIT] = StringAttr(a.mode)
            op.attributes[DEVICES] = T.ints(list(local))
            continue
        for name in L.members:
            if name in ops:
                ops[name].attributes[DEVICE] = IntegerAttr(local[0], i64)


def describe(layers: Sequence[Layer], the_plan: Plan) -> list[str]:
    """One line per layer: its devices and mode."""
    out = []
    for L in layers:
        a = the_plan.get(L.name, _default(L, 0))
        where = "host" if a.devices == (HOST,) else ",".join(map(str, a.devices))
        out.append(f"{L.name}: {where}" + (f" split {a.mode}" if a.mode else ""))
    return out
