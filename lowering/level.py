"""Which level of the lowering a module is at, so that a pass given IR of another level says so
instead of printing it back unchanged.

    operator   tensorop ops in a func (the input of tensorop-place, tensorop-fuse, tensorop-to-loops)
    loop       loop nests named by tensorop-to-loops (`sched.stage` on an scf.for in a func);
               the input of apply-schedule, then, with the sched.schedule applied, of loops-to-gpu
    gpu        a gpu.module of kernels (the input of the opencl and cuda targets)
"""

from __future__ import annotations

from xdsl.dialects import func, gpu, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.diagnostics import where
from sched_dsl.dialects import sched as S
from sched_dsl.dialects import tensorop as T

NEXT_STEP = {  # what to run on IR of each level to reach the level a pass wants
    ("operator", "loop"): "run tensorop-to-loops first",
    ("operator", "scheduled"): "run tensorop-to-loops,apply-schedule first",
}


def levels_of(module: ModuleOp) -> dict[str, Operation]:
    """The first op of each level found in `module` ("operator", "loop", "gpu"), and the
    sched.schedule under "schedule" when there is one."""
    found: dict[str, Operation] = {}
    for op in module.ops:
        if isinstance(op, gpu.ModuleOp):
            found.setdefault("gpu", op)
        elif isinstance(op, S.ScheduleOp):
            found.setdefault("schedule", op)
        elif isinstance(op, func.FuncOp):
            for inner in op.walk():
                if isinstance(inner, T.TensorOp):
                    found.setdefault("operator", inner)
                elif isinstance(inner, scf.ForOp) and "sched.stage" in inner.attributes:
                    found.setdefault("loop", inner)
    return found


def _wrong(pass_name: str, op: Operation, level: str, advice: str) -> DiagnosticException:
    return DiagnosticException(f"{where(op)}error: {pass_name}: the IR is at the {level} level ({op.name}); {advice}")


def require_operator_level(module: ModuleOp, pass_name: str) -> None:
    """For the passes on tensorop ops: IR with none, but loops or kernels, is of a later level."""
    found = levels_of(module)
    if "operator" in found:
        return
    for level in ("gpu", "loop"):
        if level in found:
            raise _wrong(pass_name, found[level], level, f"{pass_name} reads tensorop ops")


def require_loop_level(module: ModuleOp, pass_name: str, scheduled: bool) -> None:
    """For apply-schedule (scheduled=False) and loops-to-gpu (scheduled=True): loop nests,
    and for loops-to-gpu no sched.schedule left to apply."""
    found = levels_of(module)
    if "operator" in found:
        raise _wrong(pass_name, found["operator"], "operator",
                     NEXT_STEP[("operator", "scheduled" if scheduled else "loop")])
    if scheduled and "schedule" in found:
        op = found["schedule"]
        raise DiagnosticException(f"{where(op)}error: {pass_name}: the sched.schedule is not applied yet; "
                                  "run apply-schedule first")
    if "loop" not in found and "gpu" in found:
        raise _wrong(pass_name, found["gpu"], "gpu", "there are no loop nests left to lower")
