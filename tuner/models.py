"""Tuning whole models: every distinct anchor workload (conv2d or matmul shape, Winograd's input
transform) of an ONNX model through sd.tune into one records file, which load_onnx(...,
records=) then reads."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from sched_dsl.dialects import tensorop as T
from sched_dsl.graph.executor import anchors, element_count, in_layout, in_precision, prepare
from sched_dsl.graph.model_schedules import (
    anchor_workload,
    gemm_fits_tensor_cores,
    gemm_is_whole,
    gemm_workload,
    winograd_workloads,
)
from sched_dsl.graph.onnx_import import import_onnx
from sched_dsl.lowering.conv_to_gemm import winograd_refusal
from sched_dsl.records import RecordsWriter, load, workload_of
from sched_dsl.runtime import device_name
from sched_dsl.runtime import tensor_cores as device_has_tensor_cores
from sched_dsl.schedule import Schedule
from sched_dsl.tensor import Tensor
from sched_dsl.tuner.measure import Measurer
from sched_dsl.tuner.tuner import measure_configs, tune


def tune_model(model, records: str, target: str = "opencl", fuse: bool = True, host_ops: Sequence[str] = (),
               trials: int = 16, budget_s: float | None = None, progress=None, precision: str | None = None,
               conv_algorithm: str = "auto", layout: str = "NCHW", **tune_options) -> list:
    """Tunes the model's anchors with sd.tune: every distinct anchor workload (conv2d or
    matmul shape; the fused epilogue is left out) once, `trials` configs each, appending to
    the `records` file (an interrupted run resumes), the workloads with the most arithmetic in
    the model first; with `budget_s`, no workload after the first is started after that many
    seconds.
    `load_onnx(model, records=records)` then runs the best configs. Returns the TuneResult of
    every workload tuned; `progress(i, n, workload)` is called before each. `precision` as
    load_onnx's (the anchors are then workloads of that type), `layout` too (NHWC anchors are
    workloads of their own). `conv_algorithm` as load_onnx's;
    with "auto", the convs auto could run another way are tuned directly and in that form too
    (a 1x1 conv as its matmul; a 3x3, stride-1 conv whose product would not take tensor cores
    as its Winograd kernels, the output transform only timed), so that load_onnx with these
    records picks the faster form."""
    tasks = model_workloads(model, target, fuse, host_ops, precision, conv_algorithm, layout=layout)
    tune_options.setdefault("exhaustive_limit", 256)  # larger spaces: annealing, not featurizing every point
    start = time.perf_counter()
    results = []
    measurer = None  # one for all the workloads, retargeted: its processes are started once
    try:
        for i, (key, y, s) in enumerate(tasks):
            if i and budget_s is not None and time.perf_counter() - start > budget_s:
                break
            if progress:
                progress(i, len(tasks), key)
            if measurer is None:
                measurer = Measurer(y, s, target, seed=tune_options.get("seed", 0),
                                    **{k: v for k, v in tune_options.items() if k in MEASURE_OPTIONS})
            else:
                measurer.retarget(y, s)
            _measure_default(measurer, key, s, records)
            if not s.knobs:  # a kernel with its one schedule (Winograd's output transform): timed, nothing to tune
                continue
            results.append(tune(y, s, target=target, trials=trials, records=records, measurer=measurer,
                                **{k: v for k, v in tune_options.items() if k not in MEASURE_OPTIONS}))
    finally:
        if measurer is not None:
            measurer.close()
    return results


def model_workloads(model, target: str = "opencl", fuse: bool = True, host_ops: Sequence[str] = (),
                    precision: str | None = None, conv_algorithm: str = "auto",
                    tensor_cores: bool | None = None, layout: str = "NCHW") -> list[tuple[str, Tensor, Schedule]]:
    """(key, output, schedule) of every distinct workload tune_model tunes for the model, the
    most arithmetic in the model first: the anchors as the model runs without records, and
    with "auto" the other forms of the convs auto chooses between (see tune_model).
    `tensor_cores`: whether the device takes them (default: ask the target's device)."""
    tensor_cores = device_has_tensor_cores(target) if tensor_cores is None else tensor_cores
    device = device_name(target)
    tasks: dict[str, tuple] = {}
    work: dict[str, int] = {}

    g = import_onnx(model)
    in_precision(g, precision)
    in_layout(g, layout)

    def anchors_of(policy: str) -> list:  # prepare rewrites the module: each policy has a copy
        return anchors(prepare(g.module.clone(), fuse, host_ops, 1, policy, tensor_cores))

    def add(y, s, op, first: dict[str, tuple] | None = None) -> None:
        key = workload_of([y], target, device).key
        if first is not None and key in first:  # tuned as the model runs without records already
            return
        tasks.setdefault(key, (y, s))
        work[key] = work.get(key, 0) + arithmetic(op)

    for op in anchors_of(conv_algorithm):
        add(*anchor_workload(op), op)
    if conv_algorithm == "auto":
        first = dict(tasks)
        for op in anchors_of("direct"):
            if not isinstance(op, T.Conv2dOp):
                continue
            forms = [gemm_workload(op)] if gemm_is_whole(op) else []
            if winograd_refusal(op) is None and not (tensor_cores and gemm_fits_tensor_cores(op)):
                forms += winograd_workloads(op)
            for y, s in [anchor_workload(op), *forms] if forms else []:
                add(y, s, op, first)
    return [(key, *tasks[key]) for key in sorted(tasks, key=lambda k: -work[k])]


def arithmetic(op: T.TensorOp) -> int:
    """Multiply-adds of a conv or matmul; other ops: their outputs."""
    if isinstance(op, T.Conv2dOp):
        reduce = T.shape_of(op.weight)[1:]
    elif isinstance(op, T.MatmulOp):
        reduce = T.shape_of(op.lhs)[-1:]
    else:
        reduce = ()
    return element_count(op.result.type) * int(np.prod(reduce))


MEASURE_OPTIONS = {"timeout", "build_timeout", "workers", "number", "repeat", "warmup", "min_repeat_ms", "tol",
                   "hook", "max_local_bytes"}


def _measure_default(measurer, workload: str, s, records: str) -> None:
    """Measures the default config (every knob's first candidate) into the records first,
    unless they have it, so the tuned config is never slower than the untuned one."""
    default = {k.name: k.candidates[0] for k in s.knobs.values()}
    with RecordsWriter(records) as writer:  # read and appended under the records' lock
        if any(r.workload == workload and r.config == default for r in load(records, missing_ok=True)):
            return
        measurer.start()
        recs = measure_configs(measurer, workload, [default], None)
        for r in recs:
            r.trial = 0 if r.error == "invalid" else 1
        writer.append(recs)
