"""The xDSL context with every dialect sched-dsl reads or writes."""

from xdsl.context import Context
from xdsl.dialects import arith, builtin, func, gpu, math, memref, scf, vector

from sched_dsl.dialects.memspace import MemSpaceDialect
from sched_dsl.dialects.sched import SchedDialect
from sched_dsl.dialects.tensorcore import TensorCoreDialect
from sched_dsl.dialects.tensorop import TensorOpDialect


def make_context() -> Context:
    ctx = Context()
    for d in (builtin.Builtin, func.Func, arith.Arith, math.Math, memref.MemRef, scf.Scf, gpu.GPU, vector.Vector,
              TensorOpDialect, SchedDialect, MemSpaceDialect, TensorCoreDialect):
        ctx.load_dialect(d)
    return ctx
