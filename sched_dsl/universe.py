"""Registers sched-dsl's dialects, passes and targets with xDSL (`xdsl.universe` entry
point), so plain `xdsl-opt` sees them as `sched-opt` does."""

from xdsl.universe import Universe


def _tensorop():
    from sched_dsl.dialects.tensorop import TensorOpDialect
    return TensorOpDialect


def _sched():
    from sched_dsl.dialects.sched import SchedDialect
    return SchedDialect


def _memspace():
    from sched_dsl.dialects.memspace import MemSpaceDialect
    return MemSpaceDialect


def _tc():
    from sched_dsl.dialects.tensorcore import TensorCoreDialect
    return TensorCoreDialect


def _pass(name):
    def get():
        from sched_dsl.lowering.pipeline import PASSES
        return PASSES[name]
    return get


def _target(name):
    def get():
        from sched_dsl.lowering.targets import c_family
        return {"opencl": c_family.OpenCLTarget, "cuda": c_family.CudaTarget}[name]
    return get


SCHED_DSL_UNIVERSE = Universe(
    all_dialects={"tensorop": _tensorop, "sched": _sched, "memspace": _memspace, "tc": _tc},
    all_passes={n: _pass(n) for n in ("tensorop-to-loops", "apply-schedule", "loops-to-gpu",
                                               "tensorop-place", "tensorop-fuse", "tensorop-plan-memory",
                                               "tensorop-split", "tc-to-loops", "tensorop-precision",
                                               "tensorop-conv-to-gemm", "tensorop-convert-layout")},
    all_targets={n: _target(n) for n in ("opencl", "cuda")},
)
