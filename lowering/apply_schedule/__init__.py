"""apply-schedule: interprets the `sched` ops on the loop nests of `tensorop-to-loops`.

Each stage's nest is read into a small model (root axes, the innermost body); the schedule
transforms the model (splits, fuses, order, bindings, caches); the nest is then written out
again with the body cloned at the bottom and the root loop variables rebuilt from the new
ones. Loops keep `sched.stage`/`sched.axis`, and gain `sched.bind`, `sched.unroll`,
`sched.vectorize`. The result is still scf/memref/arith, plus `gpu.barrier` around shared
caches filled inside thread loops.

Thread-bound loops have SPMD meaning from here on: the iterations of a thread loop run at
once, and `gpu.barrier` in one waits for all of them. `loops-to-gpu` relies on that.
A stage that the schedule never mentions gets the default schedule: its spatial loops fused,
split by 64, bound to block.x and thread.x.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral

from xdsl.context import Context
from xdsl.dialects import func, memref, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, SSAValue
from xdsl.passes import ModulePass
from xdsl.transforms.common_subexpression_elimination import cse
from xdsl.transforms.dead_code_elimination import dce

from sched_dsl.dialects import sched as S
from sched_dsl.lowering.apply_schedule.interpret import (
    Interpreter,
    check,
    default_schedule,
    f32_accumulator,
    place_tensorize,
)
from sched_dsl.lowering.apply_schedule.model import ScheduleError, Stage, fail, read_stage
from sched_dsl.lowering.apply_schedule.write import Writer
from sched_dsl.lowering.emit import Emitter
from sched_dsl.lowering.level import require_loop_level
from sched_dsl.lowering.pool_scatter import write_scatters

__all__ = ["ApplySchedulePass", "ScheduleError", "config_text", "parse_config"]

INTEGER = re.compile(r"-?[0-9]+")


def named_buffers(fn: func.FuncOp) -> dict[str, SSAValue]:
    buffers = {a.name_hint: a for a in fn.body.block.args if a.name_hint}
    for op in fn.body.block.ops:
        if isinstance(op, memref.AllocOp) and op.memref.name_hint:
            buffers[op.memref.name_hint] = op.memref
    return buffers


def apply_to_functions(fns: list[func.FuncOp], schedule: S.ScheduleOp | None, config: dict[str, int]) -> None:
    stages: dict[str, Stage] = {}
    buffers: dict[str, SSAValue] = {}
    for fn in fns:
        buffers.update(named_buffers(fn))
        for op in fn.body.block.ops:
            if isinstance(op, scf.ForOp) and "sched.stage" in op.attributes:
                stage = read_stage(op)
                stages[stage.name] = stage
    interp = Interpreter(stages, buffers, config)
    if schedule is not None:
        interp.run(schedule)
    for stage in stages.values():
        if not stage.scheduled and not stage.caches and stage.attached_to is None:
            default_schedule(stage)  # (a stage computed at another takes its consumer's loops)
        place_tensorize(stage)
        check(stage)
        f32_accumulator(stage)
    for stage in stages.values():
        if stage.attached_to is None:
            check_attached_outputs(stage, stages)
            Writer(stage).write(Emitter(stage.loop.parent_block(), stage.loop))
    for stage in stages.values():
        stage.loop.detach()
        stage.loop.erase()
    for fn in fns:  # a conv linked with its pooling: its stores become the pool's scatter
        write_scatters(fn)
        for op in list(fn.body.block.ops):  # the output of a stage computed only at another is never written
            if isinstance(op, memref.AllocOp) and not op.memref.uses:
                op.detach()
                op.erase()


def check_attached_outputs(stage: Stage, stages: dict[str, Stage]) -> None:
    for c in stage.caches:
        if c.kind != "compute":
            continue
        p = c.producer
        if isinstance(p.output.owner, Block):
            raise fail(c.op, f"stage '{p.name}' is a result of the function; computing it only inside "
                       f"'{stage.name}' would leave it unwritten")
        readers = [s.name for s in stages.values() if s is not p and s.reads(p.output)]
        if readers != [stage.name]:
            raise fail(c.op, f"stage '{p.name}' is read by {', '.join(readers)}; compute_at needs a single consumer")
        if p.scheduled or p.caches:
            raise fail(c.op, f"stage '{p.name}' has a schedule of its own; a stage computed at another "
                       "takes the loops of its consumer")


def parse_config(text: str) -> dict[str, int]:
    """`name=value,...` (spaces allowed around items): each knob once, each value an integer."""
    config: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, value = (p.strip() for p in item.partition("="))
        if not S.KNOB_NAME.fullmatch(name) or not INTEGER.fullmatch(value):
            raise fail(None, f"config entry '{item}' is not knob=integer")
        if name in config:
            raise fail(None, f"config sets knob '{name}' twice ('{name}={config[name]}', '{item}')")
        config[name] = int(value)
    return config


def config_text(config: Mapping[str, int]) -> str:
    """The text of a config that parse_config reads back as `config`; a knob name it cannot
    spell, or a value that is not an int, is an error (never a different config)."""
    items = []
    for name, value in config.items():
        if not isinstance(name, str) or not S.KNOB_NAME.fullmatch(name):
            raise fail(None, f"config key {name!r} is not a knob name (a letter or _, then letters, digits, "
                       "_ . $ -)")
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise fail(None, f"config value {value!r} of knob '{name}' is not an int")
        items.append(f"{name}={int(value)}")
    return ",".join(items)


@dataclass(frozen=True)
class ApplySchedulePass(ModulePass):
    """Applies the module's sched.schedule to its loop nests, then removes it.

    `config` fixes knobs, e.g. `apply-schedule{config="ti=8,tj=16"}`; a knob not named
    takes its first candidate."""

    name = "apply-schedule"
    config: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        require_loop_level(op, self.name, scheduled=False)
        schedules = [s for s in op.ops if isinstance(s, S.ScheduleOp)]
        if len(schedules) > 1:
            raise fail(schedules[1], "a module holds at most one sched.schedule")
        schedule = schedules[0] if schedules else None
        config = parse_config(self.config)
        fns = [f for f in op.ops if isinstance(f, func.FuncOp) and any(
            isinstance(o, scf.ForOp) and "sched.stage" in o.attributes for o in f.body.block.ops)]
        apply_to_functions(fns, schedule, config)
        if schedule is not None:
            schedule.detach()
            schedule.erase()
        # the writer folds index arithmetic as it goes and leaves the unused pieces behind
        cse(op)
        dce(op)
