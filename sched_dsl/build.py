"""lower() and build(): from tensors and a schedule to kernel text, and to a callable."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import StringIO

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from sched_dsl.context import make_context
from sched_dsl.lowering.host_plan import HostPlan, host_plan
from sched_dsl.lowering.pipeline import parse_pipeline, run_default_pipeline
from sched_dsl.lowering.targets.c_family import CUDA, OPENCL, print_kernels
from sched_dsl.schedule import Schedule, ScheduleError
from sched_dsl.tensor import Tensor

TARGETS = {"opencl": OPENCL, "cuda": CUDA}


@dataclass
class Lowered:
    """Kernel text and what the host does with it; no device is touched."""

    target: str
    source: str
    plan: HostPlan
    module: ModuleOp  # the gpu-dialect module the text was printed from

    @property
    def launches(self):
        return self.plan.launches


def _schedule_for(outputs: tuple[Tensor, ...], schedule: Schedule | None) -> Schedule:
    if schedule is None:
        return Schedule(*outputs)
    if not isinstance(schedule, Schedule):
        raise TypeError(f"expected a Schedule, got {type(schedule).__name__}")
    if tuple(schedule.outputs) != outputs:
        raise ScheduleError("the schedule was made for other output tensors")
    return schedule


def lower(outputs: Tensor | tuple[Tensor, ...], schedule: Schedule | None = None, target: str = "opencl",
          config: Mapping[str, int] | None = None, after: Callable[[str, ModuleOp], None] | None = None,
          pipeline=None, tensor_cores: bool | None = None) -> Lowered:
    """Lowers to `target` ("opencl" or "cuda") text. `config` picks knob values; a knob
    it does not name takes its first candidate. Without a schedule, every stage gets the
    default one. `after(pass_name, module)`, when given, sees the IR after each pass.
    `pipeline` (a pass spec string or pass instances ending at the gpu level, e.g. with a
    pass of your own) replaces the default pipeline; knobs then come from its apply-schedule.
    `tensor_cores`: whether tensorized stages use NVIDIA's tensor-core instructions (inline
    PTX) or plain loops; by default they do for "cuda" and not for "opencl" (build() asks
    the OpenCL device)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}")
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    s = _schedule_for(outputs, schedule)
    module = s.module()
    try:
        module.verify()
        if tensor_cores is None:
            tensor_cores = target == "cuda"
        if pipeline is None:
            run_default_pipeline(make_context(), module, dict(config or {}), after, tensor_cores=tensor_cores)
        else:
            ctx = make_context()
            for p in parse_pipeline(pipeline):
                p.apply(ctx, module)
                module.verify()
                if after is not None:
                    after(p.name, module)
        text = StringIO()
        print_kernels(module, TARGETS[target], text)
    except (DiagnosticException, VerifyException) as e:
        raise ScheduleError(str(e)) from None
    return Lowered(target, text.getvalue(), host_plan(module), module)


def best_recorded_config(outputs, schedule: Schedule | None, target: str, records: str) -> dict[str, int]:
    """The config of the fastest correct record in `records` for this workload (operator,
    shapes, target and device) that fits the schedule's knobs."""
    from sched_dsl.records import best_config, workload_of
    from sched_dsl.runtime import device_name

    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}")
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    s = _schedule_for(outputs, schedule)
    workload = workload_of(outputs, target, device_name(target))
    return best_config(records, workload, s.knob_candidates())


class Kernel:
    """A built module: call it with the inputs (positionally, in `input_names` order, or by
    name) to get the output array (a list when there are several)."""

    def __init__(self, lowered: Lowered, runner):
        self.lowered, self.runner = lowered, runner

    @property
    def source(self) -> str:
        return self.lowered.source

    @property
    def input_names(self) -> list[str]:
        return [b.name for b in self.lowered.plan.inputs]

    def __call__(self, *arrays: np.ndarray, **named: np.ndarray):
        if named:
            unknown = [n for n in named if n not in self.input_names]
            if unknown:
                raise TypeError(f"unknown input '{unknown[0]}'; the inputs are {', '.join(self.input_names)}")
            missing = [n for n in self.input_names if n not in named]
            if arrays or missing:
                raise TypeError(f"pass all inputs by position or all by name; missing {missing}")
            arrays = tuple(named[n] for n in self.input_names)
        outs = self.runner.run(*arrays)
        return outs[0] if len(outs) == 1 else outs


def build(outputs: Tensor | tuple[Tensor, ...], schedule: Schedule | None = None, target: str = "opencl",
          config: Mapping[str, int] | None = None, records: str | None = None, pipeline=None) -> Kernel:
    """Lowers, compiles and loads the kernels on the target's default device. With
    `records` (a tuning records file) the knobs take the best recorded config of this
    workload on this device; `config` and `records` exclude each other. `pipeline`: see lower()."""
    if records is not None:
        if config is not None:
            raise ValueError("give either config or records, not both")
        config = best_recorded_config(outputs, schedule, target, records)
    from sched_dsl.runtime import tensor_cores as device_has_tensor_cores

    lowered = lower(outputs, schedule, target, config, pipeline=pipeline,
                    tensor_cores=device_has_tensor_cores(target))
    if target == "opencl":
        from sched_dsl.runtime.opencl import OpenCLKernel
        return Kernel(lowered, OpenCLKernel(lowered.source, lowered.plan))
    from sched_dsl.runtime.cuda import CudaKernel
    return Kernel(lowered, CudaKernel(lowered.source, lowered.plan))
