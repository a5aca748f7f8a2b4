"""Inference across machines on Dask (`dask.distributed`): each worker stands for one machine
and holds its partition of the model (a Session on that worker's devices); activations go from
worker to worker as Dask moves task results, never through the client.

The partitioner (sched_dsl.graph.partition, hierarchical) cuts the layers into contiguous
stages, one per worker, then plans each stage over its worker's devices. Worker k (in the
order of `workers`, default the cluster's by name) runs stage k. A worker's devices are
`SCHED_DSL_WORKER_DEVICES` ("0,1") in its environment, else `devices_per_worker` ordinals
starting at its name (an integer, as a LocalCluster names them) times that count, modulo the
devices of its host.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence

import numpy as np

WORKER_DEVICES_VARIABLE = "SCHED_DSL_WORKER_DEVICES"


def worker_devices(target: str, count: int = 1) -> list[int]:
    """The device ordinals of the current Dask worker (see the module docstring)."""
    from distributed import get_worker

    from sched_dsl.runtime import device_count

    wanted = os.environ.get(WORKER_DEVICES_VARIABLE)
    if wanted is not None:
        items = [t.strip() for t in wanted.split(",") if t.strip()]
        if not items or not all(t.isdigit() for t in items):
            raise ValueError(f"{WORKER_DEVICES_VARIABLE}={wanted!r} is not a list of device ordinals")
        return [int(t) for t in items]
    name = get_worker().name
    first = int(name) * count if isinstance(name, int) or (isinstance(name, str) and name.isdigit()) else 0
    have = max(1, device_count(target))
    return [(first + j) % have for j in range(count)]


_SESSIONS: dict[tuple[str, str], object] = {}  # (token, worker address) -> its Session


def _stage_session(token: str, spec: dict):
    from distributed import get_worker

    key = (token, get_worker().address)
    if key not in _SESSIONS:
        from xdsl.parser import Parser

        from sched_dsl.context import make_context
        from sched_dsl.graph.executor import Session

        module = Parser(make_context(), spec["ir"]).parse_module()
        devices = worker_devices(spec["target"], spec["devices"])
        _SESSIONS[key] = Session(module, spec["weights"], spec["inputs"], spec["outputs"], spec["target"],
                                 spec["fuse"], spec["host"], spec["config"], None, None,
                                 devices=devices if len(devices) > 1 else [devices[0]])
    return _SESSIONS[key]


def _run_stage(token: str, spec: dict, feeds: dict, *earlier: dict) -> dict[str, np.ndarray]:
    """Runs one stage on this worker; its inputs come from the model's feeds or earlier stages'
    results; returns its outputs by name."""
    sess = _stage_session(token, spec)
    have = dict(feeds)
    for r in earlier:
        have.update(r)
    mine = {n: np.asarray(have[n], dtype=np.float32) for n in sess.input_names}
    return dict(zip(sess.output_names, sess.run(None, mine)))


def _ready(token: str, spec: dict) -> str:
    return _stage_session(token, spec).device.name


def _close(token: str) -> int:
    keys = [k for k in _SESSIONS if k[0] == token]
    for k in keys:
        del _SESSIONS[k]
    return len(keys)


class DistributedSession:
    """A model spread over the workers of a Dask cluster, called like a Session:
    `run(None, {"input": x})`, and `run_many` for a stream of requests (the stages work on
    different requests at once)."""

    def __init__(self, client, model, target: str = "opencl", *, workers: Sequence[str] | None = None,
                 devices_per_worker: int = 1, partition: str = "auto", objective: str = "throughput",
                 profile=None, link=None, network=None, fuse: bool = True, host_ops: Sequence[str] = (),
                 config: Mapping[str, int] | None = None):
        from xdsl.dialects import func
        from xdsl.dialects.builtin import ModuleOp

        from sched_dsl.graph.executor import GraphError, function_of, name_of
        from sched_dsl.graph.onnx_import import import_onnx
        from sched_dsl.graph.partition import apply_plan, describe, machine_stages, plan
        from sched_dsl.graph.simulate import Link, Topology, layer_graph, with_times

        self.client = client
        self.workers = list(workers) if workers else sorted(
            client.scheduler_info()["workers"], key=lambda a: str(client.scheduler_info()["workers"][a].get("name")))
        if not self.workers:
            raise GraphError("the Dask cluster has no workers")
        g = import_onnx(model)
        layers = layer_graph(g.module, host_ops)
        if profile is not None:
            layers = with_times(layers, profile)
        else:
            for L in layers:
                L.ms = L.flops * 1e-6
        topology = Topology(len(self.workers), devices_per_worker, link or Link(), network or Link(gbps=1.25, latency_us=50))
        the_plan = plan(layers, topology, partition, objective)
        self.plan = describe(layers, the_plan)
        staged = [s for s in machine_stages(layers, the_plan, topology)]
        [fn] = [f for f in g.module.ops if isinstance(f, func.FuncOp)]
        ops_of = {}
        for op in fn.body.block.ops:
            if not isinstance(op, func.ReturnOp):
                ops_of[op.stage_name] = op
        returned = [name_of(v) for v in fn.body.block.last_op.operands]
        self.input_names, self.output_names = list(g.inputs), list(g.outputs)
        feed_of = dict(zip(g.input_args, g.inputs))  # argument name -> feed name
        self.result_of = dict(zip(g.outputs, returned))
        self.token = uuid.uuid4().hex
        self.stages: list[tuple[str, object, list[int]]] = []  # (worker, spec future, earlier stages it reads)
        made: dict[str, int] = {}  # value name -> the stage that makes it
        self.specs: list[dict] = []
        for m, stage_layers in enumerate(staged):
            if not stage_layers:
                continue
            apply_plan(g.module, stage_layers, the_plan, first_device=m * devices_per_worker)
            members = {n for L in stage_layers for n in L.members}
            ops = [o for n, o in ops_of.items() if n in members]
            sub = function_of(ops, f"stage{m}")
            args = [name_of(a) for a in sub.body.block.args]
            outs = [name_of(v) for v in sub.body.block.last_op.operands]
            inputs = [a for a in args if a not in g.weights]
            spec = {"ir": str(ModuleOp([sub])), "weights": {a: g.weights[a] for a in args if a in g.weights},
                    "inputs": inputs, "outputs": outs, "target": target, "devices": devices_per_worker,
                    "fuse": fuse, "host": [h for h in host_ops if h in members], "config": dict(config or {})}
            reads = sorted({made[a] for a in inputs if a in made})
            for o in outs:
                made[o] = len(self.specs)
            self.specs.append(spec)
            worker = self.workers[min(m, len(self.workers) - 1)]
            self.stages.append((worker, client.scatter([spec], workers=[worker])[0], reads))
        self.feed_args = {a: f for a, f in feed_of.items()}
        self.made = made
        # build every stage's session on its worker now (compiling there)
        self.device_names = client.gather([client.submit(_ready, self.token, spec, workers=[w], pure=False)
                                           for w, spec, _ in self.stages])

    def _submit(self, feeds: Mapping[str, np.ndarray]):
        args = {a: np.ascontiguousarray(feeds[f], dtype=np.float32) for a, f in self.feed_args.items()}
        futures = []
        for worker, spec, reads in self.stages:
            futures.append(self.client.submit(_run_stage, self.token, spec, args, *[futures[k] for k in reads],
                                              workers=[worker], pure=False))
        return futures

    def _outputs(self, results: list[dict], names: list[str]) -> list[np.ndarray]:
        out = []
        for n in names:
            v = self.result_of[n]
            out.append(results[self.made[v]][v])
        return out

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        names = self.output_names if output_names is None else list(output_names)
        return self._outputs(self.client.gather(self._submit(feeds)), names)

    def run_many(self, output_names, feeds_list) -> list[list[np.ndarray]]:
        names = self.output_names if output_names is None else list(output_names)
        all_futures = [self._submit(f) for f in feeds_list]
        return [self._outputs(self.client.gather(fs), names) for fs in all_futures]

    def close(self) -> None:
        try:
            self.client.run(_close, self.token)
        except Exception:  # noqa: BLE001 - a cluster already gone holds nothing
            pass
