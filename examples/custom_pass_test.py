"""A pass of your own, registered and property-tested in a few lines.

`interchange-loops` swaps perfectly nested sequential loops after `apply-schedule` (e.g.
a conv2d's unbound reduction loops ry and rx): each element is still computed from the
same terms, only their order changes. It is tested with sched_dsl.testing's strategies: random
operators, legal random schedules and well-conditioned inputs, checked after every pass
(check_each_pass) and end to end on the OpenCL device (assert_equivalent).

    python examples/custom_pass_test.py          # runs the property test
    python -m pytest examples/custom_pass_test.py
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xdsl.context import Context
from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

import sched_dsl as sd
from sched_dsl import testing as sdt
from sched_dsl.testing.check import check_each_pass
from sched_dsl.lowering.pipeline import PASSES


class InterchangeLoops(ModulePass):
    """Swaps each pair of perfectly nested sequential loops (neither bound to a block or
    thread nor holding a bound loop, whose barriers must stay where every thread meets them;
    no values carried; nothing but constants between them) after apply-schedule."""

    name = "interchange-loops"

    def apply(self, ctx: Context, module: ModuleOp) -> None:
        done: set[scf.ForOp] = set()
        for outer in [op for op in module.walk() if self.sequential(op)]:
            ops = [op for op in outer.body.block.ops if not isinstance(op, (arith.ConstantOp, scf.YieldOp))]
            inner = ops[0] if len(ops) == 1 and self.sequential(ops[0]) else None
            if inner is None or outer in done or inner in done:
                continue
            if any(v.owner.parent_op() is outer and not isinstance(v.owner, arith.ConstantOp)
                   for v in (inner.lb, inner.ub, inner.step)):
                continue  # a bound computed inside the outer loop: it cannot move out
            done |= {outer, inner}
            for v in (inner.lb, inner.ub, inner.step):  # constants: move them out for the outer loop
                if v.owner.parent_op() is outer:
                    v.owner.detach()
                    outer.parent_block().insert_op_before(v.owner, outer)
            outer_bounds = [outer.lb, outer.ub, outer.step]
            outer.operands = [inner.lb, inner.ub, inner.step]
            inner.operands = outer_bounds
            # the outer loop now runs the inner axis and the other way round
            i, j = outer.body.block.args[0], inner.body.block.args[0]
            uses_i, uses_j = list(i.uses), list(j.uses)
            for use in uses_i:
                use.operation.operands[use.index] = j
            for use in uses_j:
                use.operation.operands[use.index] = i
            i.name_hint, j.name_hint = j.name_hint, i.name_hint
            outer.attributes, inner.attributes = dict(inner.attributes), dict(outer.attributes)

    @staticmethod
    def sequential(op) -> bool:
        return (isinstance(op, scf.ForOp) and not op.iter_args and "sched.vectorize" not in op.attributes
                and not any(isinstance(o, scf.ForOp) and "sched.bind" in o.attributes for o in op.walk()))


# register it: for pass specs here (sched-opt and xdsl-opt find passes through an
# `xdsl.universe` entry point instead, see docs/passes.md)
PASSES[InterchangeLoops.name] = InterchangeLoops
PIPELINE = "tensorop-to-loops,apply-schedule,interchange-loops,loops-to-gpu"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_interchange_keeps_every_operator_right(data):
    out = data.draw(sdt.operators(["matmul", "conv2d", "pool2d", "reduce"]))
    schedule = data.draw(sdt.schedules(out))
    values = data.draw(sdt.inputs(out))
    # the IR after every pass against the operator's reference; names the pass that broke it
    check_each_pass(schedule.module(), PIPELINE, inputs=values, emit=None)
    # and the kernels of the whole pipeline on the OpenCL device
    sdt.assert_equivalent(out, schedule, inputs=values, pipeline=PIPELINE)


def test_interchange_swaps_the_reduction_loops_of_conv2d():
    x, w = sd.placeholder("X", (1, 2, 6, 6)), sd.placeholder("W", (3, 2, 3, 3))
    module = sd.Schedule(sd.conv2d(x, w)).module()
    check_each_pass(module, PIPELINE)  # also runs the emitted OpenCL text
    kernel = next(op for op in module.walk() if op.name == "gpu.func")
    axes = [op.attributes["sched.axis"].data for op in kernel.walk() if isinstance(op, scf.ForOp)]
    assert axes == ["ry", "rc", "rx"], axes  # rc, ry swapped; then rc is paired with rx no more


if __name__ == "__main__":
    test_interchange_swaps_the_reduction_loops_of_conv2d()
    test_interchange_keeps_every_operator_right()
    print("interchange-loops: equivalent on every drawn operator and schedule")
