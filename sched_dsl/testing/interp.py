"""A small reference interpreter of the loop and gpu IR, for checking passes on small inputs.

It runs a host `func.func` whose arguments are memrefs (numpy float32 or int32 arrays) over
the ops sched-dsl's passes write: arith, math, memref, vector (float4 copies), scf, and gpu. It follows the SPMD
meaning of thread loops:

- A loop bound to `thread.*` (after `apply-schedule`) whose body holds a `gpu.barrier`
  runs its iterations as threads: each iteration is a Python generator that yields at a
  barrier, and all are stepped barrier to barrier. Nested thread loops sync together,
  since a thread loop passes the barrier on to the loop around it. Other loops, and
  thread loops without a barrier, run their iterations one after the other.
- `gpu.launch_func` runs the kernel's grid on the host: blocks one after the other, the
  threads of a block as generators stepped barrier to barrier, sharing the block's
  `#memspace.addr<shared>` buffers.

A barrier that only some threads reach, an index out of bounds, a read of a value that no
op defined, or an op it does not know end in an `InterpError` naming the op. New memory
(alloc, alloca) starts as NaN, so a read before any write shows in the result.
Performance is plain Python: fine for shapes of a few hundred elements.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
from xdsl.dialects import func, gpu, scf
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, IntegerType, MemRefType, ModuleOp, StringAttr
from xdsl.ir import Block, Operation, SSAValue

from sched_dsl.diagnostics import where
from sched_dsl.dialects.memspace import SHARED

BARRIER = "barrier"  # what a thread's generator yields at a gpu.barrier
INDEX_BITS = 64


class InterpError(Exception):
    """The IR cannot be run: names the op, and where it was written when known."""

    def __init__(self, op: Operation | None, message: str):
        prefix = f"{where(op)}{op.name}: " if op is not None else ""
        super().__init__(prefix + message)
        self.op = op


def _unsigned(v: int, op: Operation) -> int:
    """v as an unsigned number of the width of op's first operand (index: 64 bits)."""
    t = op.operands[0].type
    bits = t.width.data if isinstance(t, IntegerType) else INDEX_BITS
    return int(v) & ((1 << bits) - 1)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _div0(op: Operation, b) -> None:
    if b == 0:
        raise InterpError(op, "integer division by zero")


def _idiv(kind: str):
    def run(op, a, b):
        _div0(op, b)
        if kind == "divui":
            return _unsigned(a, op) // _unsigned(b, op)
        if kind == "remui":
            return _unsigned(a, op) % _unsigned(b, op)
        if kind == "divsi":
            return _trunc_div(a, b)
        if kind == "remsi":
            return a - b * _trunc_div(a, b)
        if kind == "floordivsi":
            return a // b
        return -(-a // b)  # ceildivsi
    return run


CMPI = ["eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge"]
CMPF = ["false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule", "une",
        "uno", "true"]
_CMP = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}


def _cmpi(op, a, b):
    pred = CMPI[op.predicate.value.data]
    if pred[0] == "u":
        a, b = _unsigned(a, op), _unsigned(b, op)
    return _CMP[pred[-2:] if pred not in ("eq", "ne") else pred](a, b)


def _cmpf(op, a, b):
    pred = CMPF[op.predicate.value.data]
    if pred in ("false", "true"):
        return pred == "true"
    unordered = math.isnan(a) or math.isnan(b)
    if pred == "ord":
        return not unordered
    if pred == "uno":
        return unordered
    if unordered:
        return pred[0] == "u"
    return _CMP[pred[1:]](a, b)


F32 = np.float32
# ops without regions: name -> f(op, *operand values) -> result value
SIMPLE = {
    "arith.addi": lambda op, a, b: a + b,
    "arith.subi": lambda op, a, b: a - b,
    "arith.muli": lambda op, a, b: a * b,
    "arith.divui": _idiv("divui"), "arith.remui": _idiv("remui"), "arith.divsi": _idiv("divsi"),
    "arith.remsi": _idiv("remsi"), "arith.floordivsi": _idiv("floordivsi"),
    "arith.ceildivsi": _idiv("ceildivsi"),
    "arith.maxsi": lambda op, a, b: max(a, b),
    "arith.minsi": lambda op, a, b: min(a, b),
    "arith.andi": lambda op, a, b: a & b,
    "arith.ori": lambda op, a, b: a | b,
    "arith.xori": lambda op, a, b: a ^ b,
    "arith.cmpi": _cmpi,
    "arith.cmpf": _cmpf,
    "arith.select": lambda op, c, a, b: a if c else b,
    "arith.addf": lambda op, a, b: F32(a + b),
    "arith.subf": lambda op, a, b: F32(a - b),
    "arith.mulf": lambda op, a, b: F32(a * b),
    "arith.divf": lambda op, a, b: F32(a / b),
    "arith.maximumf": lambda op, a, b: F32(np.maximum(a, b)),
    "arith.minimumf": lambda op, a, b: F32(np.minimum(a, b)),
    "arith.maxnumf": lambda op, a, b: F32(np.fmax(a, b)),
    "arith.minnumf": lambda op, a, b: F32(np.fmin(a, b)),
    "arith.negf": lambda op, a: F32(-a),
    "arith.index_cast": lambda op, a: int(a),
    "arith.sitofp": lambda op, a: F32(a),
    "math.exp": lambda op, a: F32(np.exp(a)),
    "math.tanh": lambda op, a: F32(np.tanh(a)),
    "math.sqrt": lambda op, a: F32(np.sqrt(a)),
    "math.absf": lambda op, a: F32(abs(a)),
    "math.log": lambda op, a: F32(np.log(a)),
    "math.floor": lambda op, a: F32(np.floor(a)),
    "math.ceil": lambda op, a: F32(np.ceil(a)),
    "math.erf": lambda op, a: F32(math.erf(a)),
    "math.powf": lambda op, a, b: F32(np.power(a, b)),
    "arith.fptosi": lambda op, a: int(a),
}


def _constant(op: Operation):
    attr = getattr(op, "value", None)
    if isinstance(attr, IntegerAttr):
        return int(attr.value.data)
    if isinstance(attr, FloatAttr):
        return F32(attr.value.data)
    raise InterpError(op, f"constant {attr} is not a scalar")


def _has_barrier(op: Operation) -> bool:
    return any(isinstance(o, gpu.BarrierOp) for o in op.walk())


def _bind(op: Operation) -> str:
    attr = op.attributes.get("sched.bind")
    return attr.data if isinstance(attr, StringAttr) else ""


def _new_buffer(op: Operation) -> np.ndarray:
    t = op.results[0].type
    if not isinstance(t, MemRefType) or any(d < 0 for d in t.get_shape()):
        raise InterpError(op, f"can only allocate static memrefs, not {t}")
    if isinstance(t.element_type, IntegerType):  # no NaN: a value no op wrote is a large one
        return np.full(tuple(t.get_shape()), np.iinfo(np.int32).min, dtype=np.int32)
    return np.full(tuple(t.get_shape()), np.nan, dtype=np.float32)


def _scalar(ref: np.ndarray, idx: tuple[int, ...]):
    v = ref[idx]
    return int(v) if ref.dtype.kind == "i" else F32(v)


class Thread:
    """The values one thread (or the one host thread) sees: SSA values, its ids, and the
    shared buffers of its block (`shared`, by alloca op, while `spmd`: inside a kernel or a
    thread loop)."""

    def __init__(self, values: dict, tid=(0, 0, 0), bid=(0, 0, 0), shared: dict | None = None, spmd=False):
        self.values, self.tid, self.bid = values, tid, bid
        self.shared = {} if shared is None else shared
        self.spmd = spmd

    def fork(self, values: dict, shared: dict) -> Thread:
        """A thread of a thread loop, sharing `shared` with its siblings."""
        return Thread(values, self.tid, self.bid, shared, True)


class Interpreter:
    def __init__(self, module: ModuleOp):
        self.module = module
        self.ops = 0  # ops run, as a guard against runaway loops
        self.max_ops = 20_000_000

    # -- entry points ------------------------------------------------------------------
    def run(self, fn: func.FuncOp, args: Sequence[np.ndarray]) -> None:
        """Runs host function `fn` on `args` (arrays, changed in place)."""
        block = fn.body.block
        if len(args) != len(block.args):
            raise InterpError(fn, f"expects {len(block.args)} arguments, got {len(args)}")
        th = Thread(dict(zip(block.args, args)))
        for _ in self.block(block, th):
            pass  # a barrier outside any thread loop orders nothing

    # -- structure ---------------------------------------------------------------------
    def value(self, th: Thread, v: SSAValue):
        try:
            return th.values[v]
        except KeyError:
            owner = v.owner if isinstance(v.owner, Operation) else None
            raise InterpError(owner, f"value {v.name_hint or ''} is used where it was not computed") from None

    def block(self, block: Block, th: Thread) -> Iterator[str]:
        """Runs the ops of `block`; yields at barriers; returns the operands of its
        terminator (scf.yield)."""
        for op in block.ops:
            self.ops += 1
            if self.ops > self.max_ops:
                raise InterpError(op, f"more than {self.max_ops} ops run; a loop that does not end?")
            name = op.name
            if name in ("scf.yield", "func.return", "gpu.return"):
                return [self.value(th, v) for v in op.operands]
            if name == "scf.for":
                yield from self.for_loop(op, th)
            elif name == "scf.if":
                c = self.value(th, op.operands[0])
                region = op.regions[0] if c else op.regions[1]
                got = []
                if region.blocks:
                    got = yield from self.block(region.block, th)
                for r, v in zip(op.results, got):
                    th.values[r] = v
            elif name == "gpu.barrier":
                yield BARRIER
            else:
                self.simple(op, th)
        return []

    def for_loop(self, op: scf.ForOp, th: Thread) -> Iterator[str]:
        lb, ub, step = (self.value(th, v) for v in (op.lb, op.ub, op.step))
        if step <= 0:
            raise InterpError(op, f"step {step} is not positive")
        carried = [self.value(th, v) for v in op.iter_args]
        body = op.body.block
        if _bind(op).startswith("thread") and (_has_barrier(op) or not th.spmd):
            if carried:
                raise InterpError(op, "a thread loop cannot carry values")
            shared = th.shared if th.spmd else {}  # the outermost thread loop starts a block
            threads = [self.block(body, th.fork({**th.values, body.args[0]: i}, shared)) for i in range(lb, ub, step)]
            if _has_barrier(op):
                yield from self.lockstep(op, threads)
            else:
                for t in threads:
                    yield from t
            return
        for i in range(lb, ub, step):
            th.values[body.args[0]] = i
            for a, v in zip(body.args[1:], carried):
                th.values[a] = v
            carried = yield from self.block(body, th)
        for r, v in zip(op.results, carried):
            th.values[r] = v

    def lockstep(self, op: Operation, threads: list[Iterator[str]]) -> Iterator[str]:
        """Steps `threads` from barrier to barrier; yields once per barrier they all
        reached, so that enclosing thread loops wait as well."""
        live = threads
        while live:
            waiting, finished = [], 0
            for t in live:
                try:
                    next(t)
                    waiting.append(t)
                except StopIteration:
                    finished += 1
            if waiting and finished:
                raise InterpError(op, f"{len(waiting)} threads wait at a barrier that {finished} others never reach")
            live = waiting
            if live:
                yield BARRIER

    # -- ops without regions -------------------------------------------------------------
    def simple(self, op: Operation, th: Thread) -> None:
        name = op.name
        if name == "arith.constant":
            th.values[op.results[0]] = _constant(op)
        elif name in SIMPLE:
            args = [self.value(th, v) for v in op.operands]
            with np.errstate(all="ignore"):
                th.values[op.results[0]] = SIMPLE[name](op, *args)
        elif name == "memref.load":
            ref, *idx = (self.value(th, v) for v in op.operands)
            th.values[op.results[0]] = _scalar(ref, self.checked(op, ref, idx))
        elif name == "memref.store":
            val, ref, *idx = (self.value(th, v) for v in op.operands)
            ref[self.checked(op, ref, idx)] = val
        elif name in ("vector.load", "vector.store"):
            stored = name == "vector.store"
            vals = [self.value(th, v) for v in op.operands]
            val, (ref, *idx) = (vals[0], vals[1:]) if stored else (None, vals)
            width = (op.operands[0] if stored else op.results[0]).type.get_shape()[-1]
            first = self.checked(op, ref, idx)
            self.checked(op, ref, idx[:-1] + [idx[-1] + width - 1])
            where_ = first[:-1] + (slice(first[-1], first[-1] + width),)
            if stored:
                ref[where_] = val
            else:
                th.values[op.results[0]] = ref[where_].copy()
        elif name == "vector.extract":
            th.values[op.results[0]] = F32(self.value(th, op.operands[0])[op.static_position.get_values()[0]])
        elif name in ("memref.alloc", "memref.alloca"):
            if op.results[0].type.memory_space == SHARED and th.spmd:
                th.values[op.results[0]] = th.shared.setdefault(op, _new_buffer(op))
            else:
                th.values[op.results[0]] = _new_buffer(op)
        elif name == "memref.dealloc":
            pass
        elif name == "gpu.thread_id":
            th.values[op.results[0]] = th.tid["xyz".index(op.dimension.data.value)]
        elif name == "gpu.block_id":
            th.values[op.results[0]] = th.bid["xyz".index(op.dimension.data.value)]
        elif name == "gpu.launch_func":
            self.launch(op, th)
        else:
            raise InterpError(op, "the interpreter does not know this op")

    def checked(self, op: Operation, ref: np.ndarray, idx: list[int]) -> tuple[int, ...]:
        if len(idx) != ref.ndim or any(not 0 <= i < n for i, n in zip(idx, ref.shape)):
            raise InterpError(op, f"index {tuple(int(i) for i in idx)} is out of bounds of a buffer of shape "
                                  f"{ref.shape}")
        return tuple(int(i) for i in idx)

    def launch(self, op: gpu.LaunchFuncOp, th: Thread) -> None:
        kernel = self.kernel(op)
        grid = [self.value(th, v) for v in (op.gridSizeX, op.gridSizeY, op.gridSizeZ)]
        size = [self.value(th, v) for v in (op.blockSizeX, op.blockSizeY, op.blockSizeZ)]
        args = [self.value(th, v) for v in op.kernelOperands]
        body = kernel.body.block
        if len(args) != len(body.args):
            raise InterpError(op, f"passes {len(args)} arguments to a kernel of {len(body.args)}")
        for bz, by, bx in itertools.product(*(range(n) for n in reversed(grid))):
            shared: dict = {}
            threads = [self.block(body, Thread(dict(zip(body.args, args)), (tx, ty, tz), (bx, by, bz), shared, True))
                       for tz, ty, tx in itertools.product(*(range(n) for n in reversed(size)))]
            for _ in self.lockstep(op, threads):
                pass

    def kernel(self, op: gpu.LaunchFuncOp) -> gpu.FuncOp:
        path = [op.kernel.root_reference.data, *[r.data for r in op.kernel.nested_references.data]]
        for kmod in self.module.ops:
            if isinstance(kmod, gpu.ModuleOp) and kmod.sym_name.data == path[0]:
                for fn in kmod.body.block.ops:
                    if isinstance(fn, gpu.FuncOp) and fn.sym_name.data == path[-1]:
                        return fn
        raise InterpError(op, f"no kernel @{'::@'.join(path)}")
