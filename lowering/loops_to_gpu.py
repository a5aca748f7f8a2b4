"""loops-to-gpu: outlines each scheduled stage nest into a `gpu.func` and launches it.

Loops bound to `block.*` (the outermost ones) become the launch grid and `gpu.block_id`.
Loops bound to `thread.*` become `gpu.thread_id`; the block size per dimension is the
largest such loop, and a smaller loop is guarded with `thread_id < extent`. A nest of
thread loops is a phase: every thread runs its part, and a `gpu.barrier` after the phase
keeps what it wrote in shared memory from being read, or overwritten, too early. In a
kernel with a sequential loop (`sched.sequential`), whose steps read what the threads
wrote to global memory in earlier steps, every phase is followed by a barrier that also
fences global memory (`sched.fence = "global"`).
Shared buffers move to the kernel's entry. The host function keeps the buffers and a
`gpu.launch_func` per kernel, in the order the stages ran.
"""

from __future__ import annotations

import hashlib
import math
import re

from xdsl.context import Context
from xdsl.dialects import arith, func, gpu, memref, scf
from xdsl.dialects.builtin import MemRefType, ModuleOp, StringAttr, SymbolRefAttr, UnitAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.transforms.dead_code_elimination import dce
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.diagnostics import where
from sched_dsl.dialects.memspace import SHARED
from sched_dsl.lowering.emit import Emitter, const_value
from sched_dsl.lowering.level import require_loop_level

KERNEL_MODULE = "kernels"
MAX_GRID = 2**31 - 1  # blocks along one grid dimension (CUDA's limit along x; ids fit an int)
DIMS = ("x", "y", "z")
BIND_TAGS = tuple(f"{kind}.{d}" for kind in ("block", "thread") for d in DIMS)


def bind_of(op: Operation) -> str | None:
    attr = op.attributes.get("sched.bind") if isinstance(op, scf.ForOp) else None
    return attr.data if isinstance(attr, StringAttr) else None


def extent(loop: scf.ForOp) -> int:
    return const_value(loop.ub)


def symbol(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


MAX_KERNEL_NAME = 200  # PoCL 3.1 aborts the process at kernel names of 253 characters or more


def kernel_symbol(text: str) -> str:
    """A kernel's name: `text` as an identifier, a long one cut short with a hash of the whole
    (so that two long names stay apart)."""
    name = symbol(text)
    if len(name) > MAX_KERNEL_NAME:
        name = name[:MAX_KERNEL_NAME - 17] + "_" + hashlib.sha1(text.encode()).hexdigest()[:16]
    return name


class Outliner:
    def __init__(self, host: func.FuncOp, nest: scf.ForOp, kernel_name: str):
        self.host, self.nest, self.name = host, nest, kernel_name
        self.stage = nest.attributes["sched.stage"].data

    def block_loops(self) -> tuple[list[scf.ForOp], Block]:
        """The chain of block-bound loops at the top, and the block inside the last."""
        loops, block = [], None
        current: Operation | None = self.nest
        while current is not None and (bind_of(current) or "").startswith("block"):
            loops.append(current)
            block = current.body.block
            inner = [op for op in block.ops if not isinstance(op, (scf.YieldOp, arith.ConstantOp))]
            current = inner[0] if len(inner) == 1 and isinstance(inner[0], scf.ForOp) else None
        return loops, block

    def outline(self) -> tuple[gpu.FuncOp, gpu.LaunchFuncOp]:
        loops, inner_block = self.block_loops()
        grid = {DIMS.index(bind_of(lp)[-1]): extent(lp) for lp in loops}
        if len(grid) != len(loops):
            raise DiagnosticException(f"stage '{self.stage}': a block dimension is bound twice")
        for d, n in grid.items():
            if n > MAX_GRID:
                raise DiagnosticException(
                    f"stage '{self.stage}': grid dimension {DIMS[d]} of {n} blocks exceeds {MAX_GRID}, the most a "
                    "launch has (block ids are 32-bit); give the stage's block loops fewer iterations")
        body_ops = [op for op in inner_block.ops if not isinstance(op, scf.YieldOp)] if loops else [self.nest]
        threads = self.thread_sizes(body_ops)

        # the buffers the kernel uses, in the host function's argument order
        inside = {o for op in body_ops for o in op.walk()}
        used = []
        for op in inside:
            for v in op.operands:
                if isinstance(v.type, MemRefType) and v not in used and not _defined_in(v, inside):
                    used.append(v)
        args, ops = list(self.host.body.block.args), list(self.host.body.block.ops)
        used.sort(key=lambda v: (0, args.index(v)) if v in args else (1, ops.index(v.owner)))

        kblock = Block(arg_types=[v.type for v in used])
        mapping: dict[SSAValue, SSAValue] = {}
        for old, new in zip(used, kblock.args):
            mapping[old] = new
            new.name_hint = old.name_hint
        em = Emitter(kblock)
        for lp in loops:
            bid = em.val(gpu.BlockIdOp(gpu.DimensionAttr(gpu.DimensionEnum(bind_of(lp)[-1]))))
            axis = lp.attributes.get("sched.axis")
            bid.name_hint = axis.data if isinstance(axis, StringAttr) and SSAValue.is_valid_name(axis.data) else None
            mapping[lp.body.block.args[0]] = bid
        for c in _outside_constants(inside):
            mapping[c] = em.op(c.owner.clone()).results[0]
        for op in inside:  # anything else from outside the nest cannot reach the kernel
            for v in op.operands:
                if v not in mapping and not _defined_in(v, inside):
                    loc = where(op)
                    raise DiagnosticException(
                        f"{loc}{'error: ' if loc else ''}loops-to-gpu: {op.name} in stage '{self.stage}' uses a "
                        "value computed outside the stage's loops (only buffers and constants can be)")
        for op in body_ops:
            em.op(op.clone(mapping))
        tids = {}
        for d in threads:
            tids[d] = gpu.ThreadIdOp(gpu.DimensionAttr(gpu.DimensionEnum(DIMS[d])))
            kblock.insert_op_before(tids[d], kblock.first_op)
        self.lower_thread_loops(kblock, tids, threads)
        _no_unroll_hints_around_barriers(kblock)
        for op in list(kblock.walk()):
            if isinstance(op, memref.AllocaOp) and op.memref.type.memory_space == SHARED:
                op.detach()
                kblock.insert_op_before(op, kblock.first_op)
        em.op(gpu.ReturnOp([]))

        kernel = gpu.FuncOp(self.name, ([v.type for v in used], []), Region(kblock), kernel=True)
        kernel.attributes["sched.stage"] = StringAttr(self.stage)
        host = Emitter(self.nest.parent_block(), self.nest)
        sizes = [host.index(grid.get(d, 1)) for d in range(3)], [host.index(threads.get(d, 1)) for d in range(3)]
        launch = gpu.LaunchFuncOp(SymbolRefAttr(KERNEL_MODULE, [self.name]), sizes[0], sizes[1], kernelOperands=used)
        host.op(launch)
        self.nest.detach()
        self.nest.erase()
        return kernel, launch

    def thread_sizes(self, ops: list[Operation]) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for op in ops:
            for lp in op.walk():
                tag = bind_of(lp)
                if tag and tag.startswith("block"):
                    raise DiagnosticException(
                        f"stage '{self.stage}': loop '{lp.attributes['sched.axis'].data}' is bound to {tag} "
                        "but is not among the outermost loops"
                    )
                if tag:
                    d = DIMS.index(tag[-1])
                    sizes[d] = max(sizes.get(d, 1), extent(lp))
        return sizes

    def lower_thread_loops(self, kblock: Block, tids: dict[int, Operation], threads: dict[int, int]) -> None:
        """Replaces thread loops by thread ids; a barrier follows each phase unless it
        ends the kernel, the kernel has no shared buffer, or its block is one thread (threads
        then share nothing a barrier would order, and PoCL's compiler aborts on some barriers
        inside loops, in one-thread blocks more often)."""
        several = math.prod(threads.values()) > 1
        shared = several and any(isinstance(op, memref.AllocaOp) and op.memref.type.memory_space == SHARED
                                 for op in kblock.walk())
        sequential = several and any(isinstance(op, scf.ForOp) and "sched.sequential" in op.attributes
                                     for op in kblock.walk())
        phases = [lp for lp in kblock.walk() if is_thread_loop(lp) and not _in_thread_loop(lp)]
        for phase in phases:
            for lp in [o for o in phase.walk() if is_thread_loop(o) and o is not phase]:
                self.inline(lp, tids, threads)
            last = self.inline(phase, tids, threads)
            ends_kernel = last is not None and last.parent_block() is kblock and last.next_op is None
            if (shared or sequential) and last is not None and not ends_kernel:
                barrier = gpu.BarrierOp()
                if sequential:
                    barrier.attributes["sched.fence"] = StringAttr("global")
                last.parent_block().insert_op_after(barrier, last)

    def inline(self, lp: scf.ForOp, tids: dict[int, Operation], threads: dict[int, int]) -> Operation | None:
        """Moves the body of thread loop `lp` to its place; returns the last op moved
        (or the guard around them)."""
        d = DIMS.index(bind_of(lp)[-1])
        tid = tids[d].results[0]
        em = Emitter(lp.parent_block(), lp)
        target, guard = em, None
        if extent(lp) < threads[d]:
            if any(isinstance(o, gpu.BarrierOp) for o in lp.walk()):
                raise DiagnosticException(
                    f"stage '{self.stage}': thread loop '{lp.attributes['sched.axis'].data}' "
                    f"({extent(lp)} of {threads[d]} threads) holds a barrier that not all threads would reach"
                )
            target = em.if_(em.cmpi("slt", tid, extent(lp)))
            guard = target.block.parent_op()
        body = lp.body.block
        body.args[0].replace_all_uses_with(tid)
        last = None
        for op in [o for o in body.ops if not isinstance(o, scf.YieldOp)]:
            op.detach()
            last = target.op(op)
        lp.detach()
        lp.erase()
        return guard or last


def _no_unroll_hints_around_barriers(kblock: Block) -> None:
    """Drops the unroll and vectorize hints (both print as `#pragma unroll`) of loops that
    hold a barrier: they are only hints, and PoCL's compiler aborts on a barrier inside a
    loop marked `#pragma unroll`."""
    for op in kblock.walk():
        if isinstance(op, scf.ForOp) and any(isinstance(o, gpu.BarrierOp) for o in op.walk()):
            for hint in ("sched.unroll", "sched.vectorize"):
                op.attributes.pop(hint, None)


def _check_loop(lp: Operation) -> None:
    """The sched.* attributes this pass reads, on loops written or edited by hand."""
    if not isinstance(lp, scf.ForOp):
        return
    loc = where(lp)

    def error(msg: str) -> DiagnosticException:
        return DiagnosticException(f"{loc}{'error: ' if loc else ''}loops-to-gpu: {msg}")

    for key in ("sched.stage", "sched.axis", "sched.bind"):
        if key in lp.attributes and not isinstance(lp.attributes[key], StringAttr):
            raise error(f"{key} must be a string, not {lp.attributes[key]}")
    if "sched.bind" in lp.attributes:
        if bind_of(lp) not in BIND_TAGS:
            raise error(f"loop bound to {lp.attributes['sched.bind']}, not one of {', '.join(BIND_TAGS)}")
        if const_value(lp.lb) != 0 or const_value(lp.step) != 1 or not isinstance(const_value(lp.ub), int):
            raise error("a bound loop must run from 0 by 1 to a constant")


def is_thread_loop(op: Operation) -> bool:
    return (bind_of(op) or "").startswith("thread")


def _in_thread_loop(op: Operation) -> bool:
    parent = op.parent_op()
    while parent is not None:
        if is_thread_loop(parent):
            return True
        parent = parent.parent_op()
    return False


def _defined_in(v: SSAValue, ops: set[Operation]) -> bool:
    owner = v.owner
    if isinstance(owner, Operation):
        return owner in ops
    return owner.parent_op() in ops


def _outside_constants(ops: set[Operation]) -> list[SSAValue]:
    found = []
    for op in ops:
        for v in op.operands:
            if isinstance(v.owner, arith.ConstantOp) and v.owner not in ops and v not in found:
                found.append(v)
    return found


class LoopsToGpuPass(ModulePass):
    name = "loops-to-gpu"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        require_loop_level(op, self.name, scheduled=True)
        for lp in op.walk():
            _check_loop(lp)
        kernels, taken = [], set()
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp)]:
            nests = [o for o in fn.body.block.ops if isinstance(o, scf.ForOp) and "sched.stage" in o.attributes]
            for nest in nests:
                base = kernel_symbol(f"{fn.sym_name.data}_{nest.attributes['sched.stage'].data}")
                name, k = base, 0
                while name in taken:  # stages "s.max" and "s_max" both give main_s_max
                    k += 1
                    name = f"{base}_{k}"
                taken.add(name)
                kernel, _ = Outliner(fn, nest, name).outline()
                kernels.append(kernel)
        if kernels:
            op.attributes["gpu.container_module"] = UnitAttr()
            op.body.block.add_op(gpu.ModuleOp(StringAttr(KERNEL_MODULE), Region(Block(kernels))))
        dce(op)
