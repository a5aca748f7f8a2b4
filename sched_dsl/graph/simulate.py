"""A model of running a network on N devices of M machines: the layers (with their measured
times on one device), a plan (which devices run each layer, split how), and links (bandwidth
and latency between devices of one machine, and between machines) give the predicted latency
of one request and the throughput of a stream of requests. The partitioner
(sched_dsl.graph.partition) plans with it; docs/distributed.md shows its predictions.

- A layer is a fused group (its kernels' names joined by `+`, as `Session.profile` names them)
  or a host op. `layer_graph(module)` reads them off a model, `with_times(layers, profile)`
  adds the times of a profile (`benchmarks/profile_layers.py` writes one as JSON).
- A layer whole on one device takes its time there plus `Link.launch_ms` per kernel launch;
  split k ways, each part takes time / k plus its launches (the parts run at once, unless the
  topology's devices are `shared`: parts of one processor, as PoCL's devices on one CPU, which
  then take turns).
- What moves: a value used on another device than the one it was made on (its bytes; the
  model's input starts on device 0, its outputs end on the host), the
  input rows of a row-split part (its share plus the halo), a whole input for every part of a
  channel split, a share of the batch; a split value a whole layer uses is gathered. Each move
  takes latency + bytes / bandwidth on its link, one move at a time per link and direction.
- Latency: each device runs its work in the layers' order, as soon as its inputs have arrived.
  Throughput (requests/s): 1 / the busiest device's or link's time per request, as in a
  stream every device and link works on some request at all times.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

HOST = -1  # the device index of the host (host ops)


@dataclass
class Layer:
    name: str  # as a profile names it: a fused group's stages joined by '+', a host op's stage
    anchor: str  # the stage whose `split` / `device` attributes a plan sets
    kind: str  # "conv2d", "pool2d", "matmul", "elementwise", "host" or "other"
    members: list[str]
    inputs: list[str]  # the layers whose outputs it reads
    out_shape: tuple[int, ...]
    out_bytes: int
    in_shape: tuple[int, ...] = ()  # its first activation input
    window: tuple[int, int] = (1, 1)  # (kernel rows, stride) of a conv or pool
    flops: float = 0.0
    ms: float = 0.0  # time on one device
    modes: tuple[str, ...] = ()  # the ways it may be split: "batch", "rows", "channels"
    kernels: int = 1  # launches per run (with_times counts a profile's rows; host ops: 0)


@dataclass(frozen=True)
class Link:
    """Bandwidth (GB/s) and latency (µs) of one move between two devices."""

    gbps: float = 25.0
    latency_us: float = 10.0
    launch_ms: float = 0.005  # the cost of one kernel launch, beyond the kernel's own time

    def ms(self, nbytes: float) -> float:
        return self.latency_us * 1e-3 + nbytes / (self.gbps * 1e9) * 1e3 if nbytes > 0 else 0.0


@dataclass(frozen=True)
class Topology:
    machines: int = 1
    devices: int = 1  # per machine
    link: Link = Link()  # between devices of one machine
    network: Link = Link(gbps=1.25, latency_us=50.0)  # between machines
    host: Link | None = None  # between a device and its host (default: `link`)
    shared: bool = False  # the devices of a machine share one processor (PoCL devices on one CPU)

    @property
    def count(self) -> int:
        return self.machines * self.devices

    def machine_of(self, device: int) -> int:
        return 0 if device == HOST else device // self.devices

    def link_between(self, a: int, b: int) -> Link:
        if a == HOST or b == HOST:
            return self.host or self.link
        return self.link if self.machine_of(a) == self.machine_of(b) else self.network


@dataclass(frozen=True)
class Assign:
    """Where a layer runs: one device, or split `mode` over several."""

    devices: tuple[int, ...]
    mode: str | None = None


Plan = dict  # layer name -> Assign


# -- the layers of a model --------------------------------------------------------------------------

def layer_graph(module, host: Sequence[str] = ()) -> list[Layer]:
    """The layers of an imported model's module (a copy is placed and fused; the module is
    not changed), in program order."""
    from xdsl.dialects import func

    from sched_dsl.context import make_context
    from sched_dsl.dialects import tensorop as T
    from sched_dsl.lowering.fuse import TensoropFusePass
    from sched_dsl.lowering.place import TensoropPlacePass

    copy = module.clone()
    TensoropPlacePass(host=",".join(host)).apply(make_context(), copy)
    TensoropFusePass().apply(make_context(), copy)
    [fn] = [f for f in copy.ops if isinstance(f, func.FuncOp)]
    layers: dict[str, Layer] = {}
    layer_of: dict[object, str] = {}  # value -> the layer that made it
    last: dict[str, int] = {}  # layer -> position of its last op (a fused group runs there)
    for pos, op in enumerate(fn.body.block.ops):
        if isinstance(op, func.ReturnOp):
            continue
        if isinstance(op, T.CopyOp):
            if op.input in layer_of:
                layer_of[op.result] = layer_of[op.input]
            continue
        key = op.attributes["group"].data if "group" in op.attributes else op.stage_name
        if key not in layers:
            layers[key] = Layer(key, op.stage_name, _kind(op), [], [], (), 0)
        L = layers[key]
        L.members.append(op.stage_name)
        last[key] = pos
        for v in op.operands:
            src = layer_of.get(v)
            if src is not None and src != key and src not in L.inputs:
                L.inputs.append(src)
        for r in op.results:
            layer_of[r] = key
        shape = tuple(op.results[0].type.get_shape())
        L.out_shape = shape
        L.out_bytes = 4 * int(np.prod([max(d, 1) for d in shape]))
        if op.stage_name == L.anchor:
            _anchor_facts(L, op, _kind(op) == "host")
    keys = sorted(layers, key=lambda k: last[k])
    out = [layers[k] for k in keys]
    for L in out:
        if len(L.members) > 1:
            L.name = "+".join(L.members)
    rename = {key: L.name for key, L in zip(keys, out)}
    for L in out:
        L.inputs = [rename[i] for i in L.inputs]
    return out


def _kind(op) -> str:
    from sched_dsl.dialects import tensorop as T
    from sched_dsl.lowering.fuse import PLACE

    if isinstance(op, T.HostCallOp) or (PLACE in op.attributes and op.attributes[PLACE].data == "host"):
        return "host"
    for cls, name in ((T.Conv2dOp, "conv2d"), (T.Pool2dOp, "pool2d"), (T.MatmulOp, "matmul"),
                      (T.UnaryOp, "elementwise"), (T.BinaryOp, "elementwise"), (T.BiasAddOp, "elementwise")):
        if isinstance(op, cls):
            return name
    return "other"


def _anchor_facts(L: Layer, op, on_host: bool) -> None:
    from sched_dsl.dialects import tensorop as T

    out = L.out_shape
    if on_host:
        return
    if isinstance(op, T.Conv2dOp | T.Pool2dOp):
        L.in_shape = T.shape_of(op.input)
        k = T.shape_of(op.weight)[2] if isinstance(op, T.Conv2dOp) else op.kernel.get_values()[0]
        dil = op.dilation.get_values()[0] if isinstance(op, T.Conv2dOp) else 1
        L.window = (dil * (k - 1) + 1, op.stride.get_values()[0])
        per_out = (T.shape_of(op.weight)[1] * k * T.shape_of(op.weight)[3]) if isinstance(op, T.Conv2dOp) else k * k
        L.flops = 2.0 * float(np.prod(out)) * per_out
        L.modes = ("batch", "rows") + (("channels",) if isinstance(op, T.Pool2dOp) or op.groups.value.data == 1 else ())
    elif isinstance(op, T.MatmulOp):
        L.in_shape = T.shape_of(op.lhs)
        L.flops = 2.0 * float(np.prod(out)) * T.shape_of(op.lhs)[1]
        L.modes = ("batch", "channels")
    else:
        if op.operands:
            L.in_shape = T.shape_of(op.operands[0])
        L.flops = float(np.prod(out))


def with_times(layers: Sequence[Layer], profile: Mapping | str | Sequence) -> list[Layer]:
    """The layers with `ms` from a profile: a JSON file or dict with "layers": [{"name", "ms"}],
    or (name, kind, ms) rows as `Session.profile` returns. A kernel row counts for the layer of
    that name, else for the layer with a member its name starts with (multi-kernel ops);
    copies are left out (the link model covers them). A layer the profile does not name keeps
    its time."""
    if isinstance(profile, str):
        with open(profile) as f:
            profile = json.load(f)
    rows = profile["layers"] if isinstance(profile, Mapping) else [{"name": n, "kind": k, "ms": ms}
                                                                   for n, k, ms in profile]
    out = [replace(L, ms=0.0, kernels=0) for L in layers]
    by_name = {L.name: L for L in out}
    by_member = sorted(((m, L) for L in out for m in L.members), key=lambda p: -len(p[0]))
    seen = set()
    for r in rows:
        if r.get("kind") in ("upload", "download", "transfer"):
            continue
        L = by_name.get(r["name"])
        if L is None:
            first = r["name"].split("+")[0]
            L = next((L for m, L in by_member if first == m or first.startswith(m + "_")), None)
        if L is not None:
            L.ms += float(r["ms"])
            L.kernels += r.get("kind", "kernel") == "kernel"
            seen.add(L.name)
    for L, old in zip(out, layers):
        if L.name not in seen:
            L.ms, L.kernels = old.ms, old.kernels
    return out


# -- the simulation ---------------------------------------------------------------------------------

@dataclass
class State:
    """Where the simulation stands: when each device and link is next free, where each
    layer's output is (its parts and when each is ready), and every resource's busy time."""

    free: dict = field(default_factory=dict)  # device or (a, b) link -> time free
    busy: dict = field(default_factory=dict)  # device or link -> total busy ms
    at: dict = field(default_factory=dict)  # layer -> (Assign, [ready time per part])
    finish: float = 0.0

    def copy(self) -> State:
        return State(dict(self.free), dict(self.busy), dict(self.at), self.finish)


def _share(n: int, k: int, i: int) -> tuple[int, int]:
    lo = i * (n // k) + min(i, n % k)
    return lo, lo + n // k + (1 if i < n % k else 0)


class Simulator:
    """Simulates `layers` (a whole model, or a stage of one: then the layers of `context` it
    reads are taken to be on device `entry` when it starts)."""

    def __init__(self, layers: Sequence[Layer], topology: Topology, context: Sequence[Layer] = (), entry: int = 0):
        self.layers = list(layers)
        self.by_name = {L.name: L for L in [*context, *self.layers]}
        self.top, self.entry = topology, entry

    def move(self, st: State, a: int, b: int, nbytes: float, ready: float) -> float:
        """A move of `nbytes` from device a to b, its data ready at `ready`: when it arrives."""
        if a == b or nbytes <= 0:
            return ready
        link = self.top.link_between(a, b)
        start = max(ready, st.free.get((a, b), 0.0))
        t = link.ms(nbytes)
        st.free[(a, b)] = start + t
        st.busy[(a, b)] = st.busy.get((a, b), 0.0) + t
        return start + t

    def wanted(self, L: Layer, src: Layer, a: Assign, i: int) -> tuple[int | None, float, float]:
        """The part of src's output that part i of L reads: (axis, from, to) as fractions of
        that axis; axis None: all of it."""
        k = len(a.devices)
        if k == 1 or a.mode is None or len(src.out_shape) < 3 and a.mode != "batch":
            return None, 0.0, 1.0
        axis = {"batch": 0, "channels": 1, "rows": 2}[a.mode]
        if a.mode == "channels" and L.kind in ("conv2d", "matmul"):
            return None, 0.0, 1.0  # every part reads every input channel
        n = src.out_shape[axis]
        lo, hi = _share(L.out_shape[axis], k, i)
        if a.mode == "rows" and L.kind in ("conv2d", "pool2d"):
            kr, s = L.window
            lo, hi = max(lo * s - (kr - 1) // 2, 0), min((hi - 1) * s - (kr - 1) // 2 + kr, n)
        return axis, lo / max(n, 1), hi / max(n, 1)

    def needs(self, st: State, L: Layer, src: Layer, a: Assign, i: int) -> list[tuple[int, float, float]]:
        """(from device, bytes, ready time) of what part i of L reads of src's output."""
        sa, ready = st.at[src.name]
        axis, f0, f1 = self.wanted(L, src, a, i)
        m = len(sa.devices)
        src_axis = {"batch": 0, "channels": 1, "rows": 2}.get(sa.mode) if m > 1 else None
        out = []
        for j, d in enumerate(sa.devices):
            if src_axis is not None and src_axis == axis:  # split the same way: the overlap
                p0, p1 = (x / max(src.out_shape[axis], 1) for x in _share(src.out_shape[axis], m, j))
                frac = max(0.0, min(p1, f1) - max(p0, f0))
                if frac <= 0:
                    continue
                out.append((d, src.out_bytes * frac, ready[j]))
            else:
                out.append((d, src.out_bytes / m * (f1 - f0), ready[j]))
        return out

    def place(self, st: State, L: Layer, a: Assign) -> float:
        """Runs L under `a` in state `st` (changed); returns when its last part ends."""
        k = len(a.devices)
        ends = []
        sources = [self.by_name[n] for n in L.inputs]
        for src in sources:
            st.at.setdefault(src.name, (Assign((self.entry,)), [0.0]))  # made before this stage
        if not sources and L.in_shape and L.kind != "host":  # it reads the model's input, on device 0
            sources = [Layer("<input>", "", "other", [], [], L.in_shape, 4 * int(np.prod(L.in_shape)))]
            st.at.setdefault("<input>", (Assign((self.entry,)), [0.0]))
        for i, d in enumerate(a.devices):
            arrive = 0.0
            for src in sources:
                for frm, nbytes, ready in self.needs(st, L, src, a, i):
                    if frm == d:
                        arrive = max(arrive, ready)
                    else:
                        arrive = max(arrive, self.move(st, frm, d, nbytes, ready))
            t = L.ms / k + (0 if L.kind == "host" else L.kernels * self.top.link.launch_ms)
            unit = self.top.machine_of(d) * self.top.devices if self.top.shared and d != HOST else d
            start = max(arrive, st.free.get(unit, 0.0))
            st.free[unit] = start + t
            st.busy[unit] = st.busy.get(unit, 0.0) + t
            ends.append(start + t)
        st.at[L.name] = (a, ends)
        st.finish = max(st.finish, max(ends))
        return max(ends)

    def run(self, plan: Plan) -> State:
        st = State()
        for L in self.layers:
            self.place(st, L, plan.get(L.name, Assign((HOST,) if L.kind == "host" else (self.entry,))))
        # the outputs go to the host
        for L in self.layers:
            if not any(L.name in M.inputs for M in self.layers):
                a, ready = st.at[L.name]
                for d, r in zip(a.devices, ready):
                    st.finish = max(st.finish, self.move(st, d, HOST, L.out_bytes / len(a.devices), r))
        return st


@dataclass
class Prediction:
    latency_ms: float
    throughput: float  # requests per second, streaming
    busiest: str  # the resource that bounds the throughput

    def as_dict(self) -> dict:
        return {"latency_ms": self.latency_ms, "throughput_per_s": self.throughput, "busiest": self.busiest}


def predict(layers: Sequence[Layer], plan: Plan, topology: Topology, context: Sequence[Layer] = (),
            entry: int = 0) -> Prediction:
    st = Simulator(layers, topology, context, entry).run(plan)
    busy = {k: v for k, v in st.busy.items() if k != HOST}
    name, most = max(busy.items(), key=lambda kv: kv[1]) if busy else ("-", st.finish)
    throughput = 1e3 / max(most, 1e-9)
    label = f"device {name}" if isinstance(name, int) else f"link {name[0]}->{name[1]}"
    return Prediction(st.finish, throughput, label)
