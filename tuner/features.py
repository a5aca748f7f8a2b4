"""Features of a config, read from the loop IR that apply-schedule produces for it.

The vector is the same length for every shape of an operator, so a model fitted on one
shape ranks configs of another: launch shape (extents bound to each block/thread axis),
serial and unrolled loop extents, arithmetic op counts, loads/stores per memory level and per
global buffer (per thread and in total), shared/local bytes allocated, barriers, guards
(non-dividing splits), reuse ratios (flops per global or shared access), tensor-core use
(warp-level mma ops per thread and their flops in total, fragment loads, asynchronous copies),
then the log2 of each knob's value. Counts are log2(1 + x).

`lower_with_features` lowers once and returns both the kernel text and the features.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping

from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from sched_dsl.build import Lowered, lower
from sched_dsl.context import make_context
from sched_dsl.dialects import tensorcore as tc
from sched_dsl.dialects.memspace import LOCAL, SHARED
from sched_dsl.lowering.apply_schedule import ApplySchedulePass
from sched_dsl.lowering.emit import const_value
from sched_dsl.lowering.host_plan import element_bytes
from sched_dsl.lowering.pipeline import run_default_pipeline
from sched_dsl.schedule import Schedule, ScheduleError

BIND_TAGS = ("block.x", "block.y", "block.z", "thread.x", "thread.y", "thread.z")
LEVELS = ("global", "shared", "local")
FLOAT_OPS = arith.FloatingPointLikeBinaryOperation
MAX_BUFFERS = 3  # per-buffer features for the first global buffers (inputs, then outputs)

FEATURE_NAMES = (
    [f"extent_{t}" for t in BIND_TAGS]
    + ["threads_per_block", "blocks", "serial_loops", "serial_extent", "innermost_extent", "unrolled_extent",
       "vector_width", "flops_thread", "int_ops_thread", "flops_total"]
    + [f"{io}_{lv}_thread" for lv in LEVELS for io in ("loads", "stores")]
    + [f"{io}_{lv}_total" for lv in LEVELS for io in ("loads", "stores")]
    + [f"accesses_buf{b}_thread" for b in range(MAX_BUFFERS)]
    + [f"accesses_buf{b}_total" for b in range(MAX_BUFFERS)]
    + ["shared_bytes", "local_bytes", "barriers_thread", "guards_thread",
       "flops_per_global_access", "flops_per_shared_access", "local_per_global_access"]
    + ["mma_thread", "mma_flops_total", "fragment_loads_thread", "async_copies_thread"]
)


def _log(x: float) -> float:
    return math.log2(1.0 + max(x, 0.0))


def _trip_count(loop: scf.ForOp) -> int:
    lb, ub, step = (const_value(v) for v in (loop.lb, loop.ub, loop.step))
    if ub is None or step is None or step <= 0:
        return 1
    lb = lb if lb is not None else 0  # a cooperative copy loop starts at the thread's index
    return max(0, -(-(ub - lb) // step))


def loop_features(module: ModuleOp) -> list[float]:
    """The IR part of the feature vector of a module after apply-schedule."""
    bound = dict.fromkeys(BIND_TAGS, 1)
    acc = defaultdict(float)
    serial: list[int] = []  # extents of the stage loops that run inside one thread, outermost first
    buffers = {}
    for fn in module.ops:
        if isinstance(fn, func.FuncOp):
            for k, a in enumerate(fn.body.block.args):
                buffers[a] = k

    def level(v) -> str:
        space = getattr(v.type, "memory_space", None)
        return "shared" if space == SHARED else "local" if space == LOCAL else "global"

    def walk(block, per_thread: float, total: float, unrolled: float) -> None:
        for op in block.ops:
            if isinstance(op, scf.ForOp):
                n = _trip_count(op)
                tag = op.attributes.get("sched.bind")
                if tag is not None:
                    bound[tag.data] = max(bound[tag.data], n)
                    walk(op.body.block, per_thread, total * n, unrolled)
                    continue
                if "sched.axis" in op.attributes:
                    serial.append(n)
                if "sched.vectorize" in op.attributes:
                    acc["vector_width"] = max(acc["vector_width"], n)
                unroll = n if "sched.unroll" in op.attributes else 1
                acc["unrolled_extent"] = max(acc["unrolled_extent"], unrolled * unroll)
                walk(op.body.block, per_thread * n, total * n, unrolled * unroll)
                continue
            if isinstance(op, FLOAT_OPS):
                acc["flops_thread"] += per_thread
                acc["flops_total"] += total
            elif isinstance(op, arith.SignlessIntegerBinaryOperation):
                acc["int_ops_thread"] += per_thread
            elif isinstance(op, (memref.LoadOp, memref.StoreOp)):
                io = "loads" if isinstance(op, memref.LoadOp) else "stores"
                lv = level(op.memref)
                acc[f"{io}_{lv}_thread"] += per_thread
                acc[f"{io}_{lv}_total"] += total
                b = buffers.get(op.memref)
                if b is not None and b < MAX_BUFFERS:
                    acc[f"accesses_buf{b}_thread"] += per_thread
                    acc[f"accesses_buf{b}_total"] += total
            elif isinstance(op, tc.MmaOp):
                m, n, k = tc.SHAPES[op.intrinsic]
                acc["mma_thread"] += per_thread
                acc["mma_flops_total"] += total * 2 * m * n * k / tc.LANES  # each lane issues the warp's op
            elif isinstance(op, tc.WgmmaOp):
                m, n, k = op.shape()
                acc["mma_thread"] += per_thread
                acc["mma_flops_total"] += total * 2 * m * n * k / tc.WARPGROUP  # each thread issues its group's
            elif isinstance(op, tc.StorePairOp):  # two neighbouring results of a wgmma, to global memory
                acc["stores_global_thread"] += 2 * per_thread
                acc["stores_global_total"] += 2 * total
            elif isinstance(op, tc.TmaLoadOp):  # a box, counted as the 16-byte chunks cp.async would copy
                acc["async_copies_thread"] += per_thread
                acc["async_copies_total"] += total * 2 * math.prod(op.box_shape()) / 16
            elif isinstance(op, tc.LoadFragmentOp):
                acc["fragment_loads_thread"] += per_thread
            elif isinstance(op, tc.CopyAsyncOp):
                acc["async_copies_thread"] += per_thread
                acc["async_copies_total"] += total  # global reads, for the reuse ratio
            elif isinstance(op, memref.AllocaOp):
                n_bytes = element_bytes(op.memref.type.element_type) * math.prod(op.memref.type.get_shape())
                acc["shared_bytes" if level(op.memref) == "shared" else "local_bytes"] += n_bytes
            elif isinstance(op, scf.IfOp):
                acc["guards_thread"] += per_thread
                if "sched.one_thread" in op.attributes:  # taken by one thread of each block
                    block_threads = bound["thread.x"] * bound["thread.y"] * bound["thread.z"]
                    for b in op.true_region.blocks:
                        walk(b, per_thread, total / block_threads, unrolled)
                    continue
            elif op.name == "gpu.barrier":
                acc["barriers_thread"] += per_thread
            for region in op.regions:
                for b in region.blocks:
                    walk(b, per_thread, total, unrolled)

    for fn in module.ops:
        if isinstance(fn, func.FuncOp):
            walk(fn.body.block, 1.0, 1.0, 1.0)
    threads = bound["thread.x"] * bound["thread.y"] * bound["thread.z"]
    blocks = bound["block.x"] * bound["block.y"] * bound["block.z"]
    acc["threads_per_block"], acc["blocks"] = threads, blocks
    acc["serial_loops"] = len(serial)
    acc["serial_extent"] = math.prod(serial) if serial else 1
    acc["innermost_extent"] = serial[-1] if serial else 1
    for t in BIND_TAGS:
        acc[f"extent_{t}"] = bound[t]
    glob = acc["loads_global_total"] + acc["stores_global_total"]
    shared = acc["loads_shared_total"] + acc["stores_shared_total"]
    local = acc["loads_local_total"] + acc["stores_local_total"]
    flops = acc["flops_total"] + acc["mma_flops_total"]
    acc["flops_per_global_access"] = flops / max(glob + acc["async_copies_total"], 1)
    acc["flops_per_shared_access"] = flops / max(shared, 1)
    acc["local_per_global_access"] = local / max(glob, 1)
    return [_log(acc[name]) for name in FEATURE_NAMES]


def knob_features(config: Mapping[str, int], names: list[str]) -> list[float]:
    return [math.log2(config[n]) for n in names]


def loop_only_features(outputs, schedule: Schedule, config: Mapping[str, int]) -> list[float]:
    """The feature vector, lowering only as far as the loop IR. Raises ScheduleError when
    the config does not lower."""
    module = schedule.module()
    try:
        module.verify()
        run_default_pipeline(make_context(), module, dict(config), stop_after=ApplySchedulePass.name)
    except (DiagnosticException, VerifyException) as e:
        raise ScheduleError(str(e)) from None
    return loop_features(module) + knob_features(config, list(config))


def lower_with_features(outputs, schedule: Schedule, target: str, config: Mapping[str, int]
                        ) -> tuple[Lowered, list[float]]:
    """sd.lower's result for `config`, and the config's feature vector (loop IR + knobs),
    from one lowering. Raises ScheduleError when the config does not lower."""
    feats: list[float] = []

    def after(name: str, module) -> None:
        if name == ApplySchedulePass.name:
            feats.extend(loop_features(module) + knob_features(config, list(config)))
    return lower(outputs, schedule, target, config, after), feats
