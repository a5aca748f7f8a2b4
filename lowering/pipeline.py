"""The default lowering pipeline, written out in one place."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass, PassPipeline

from sched_dsl.lowering.apply_schedule import ApplySchedulePass, config_text
from sched_dsl.lowering.conv_to_gemm import TensoropConvToGemmPass
from sched_dsl.lowering.convert_layout import TensoropConvertLayoutPass
from sched_dsl.lowering.fuse import TensoropFusePass
from sched_dsl.lowering.loops_to_gpu import LoopsToGpuPass
from sched_dsl.lowering.place import TensoropPlacePass
from sched_dsl.lowering.plan_memory import TensoropPlanMemoryPass
from sched_dsl.lowering.precision import TensoropPrecisionPass
from sched_dsl.lowering.split import TensoropSplitPass
from sched_dsl.lowering.tc_to_loops import TcToLoopsPass
from sched_dsl.lowering.tensorop_to_loops import TensoropToLoopsPass

# tensorop + sched IR -> named loop nests -> scheduled loops -> gpu dialect
# (whole models first run the graph passes tensorop-precision (reduced precision),
# tensorop-convert-layout (layout= other than NCHW), tensorop-split (several devices), tensorop-conv-to-gemm, tensorop-place, tensorop-fuse and
# tensorop-plan-memory;
# see executor.py); for a device without tensor cores, tc-to-loops then turns the tc ops of
# tensorized stages into plain loops
DEFAULT_PIPELINE = "tensorop-to-loops,apply-schedule,loops-to-gpu"

PASSES: dict[str, type[ModulePass]] = {
    p.name: p for p in (TensoropToLoopsPass, ApplySchedulePass, LoopsToGpuPass, TensoropPlacePass,
                        TensoropFusePass, TensoropPlanMemoryPass, TensoropSplitPass, TcToLoopsPass,
                        TensoropPrecisionPass, TensoropConvToGemmPass, TensoropConvertLayoutPass)
}


def run_default_pipeline(ctx: Context, module: ModuleOp, config: dict[str, int] | None = None,
                         after: Callable[[str, ModuleOp], None] | None = None, stop_after: str | None = None,
                         tensor_cores: bool = False) -> None:
    """Lowers `module` in place to the gpu dialect; `config` fixes knob values. `after(name,
    module)` sees the module after each pass (the tuner reads features off the loop IR);
    `stop_after` ends the pipeline after the pass of that name. Without `tensor_cores` the
    tc ops of tensorized stages become plain loops (tc-to-loops)."""
    text = config_text(config or {})
    passes = [TensoropToLoopsPass(), ApplySchedulePass(config=text), LoopsToGpuPass()]
    if not tensor_cores:
        passes.append(TcToLoopsPass())
    for p in passes:
        p.apply(ctx, module)
        module.verify()
        if after is not None:
            after(p.name, module)
        if p.name == stop_after:
            return


def parse_pipeline(pipeline: str | Sequence[ModulePass], extra: Sequence[type[ModulePass]] = ()) -> list[ModulePass]:
    """Pass instances from a spec such as "tensorop-to-loops,apply-schedule" (our passes and
    the classes in `extra`, by their `name`), or `pipeline` itself when it is a list of passes."""
    if not isinstance(pipeline, str):
        return list(pipeline)
    classes = {**PASSES, **{p.name: p for p in extra}}
    available = {n: (lambda p=p: p) for n, p in classes.items()}
    return list(PassPipeline.parse_spec(available, pipeline).passes)
