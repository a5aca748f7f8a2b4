"""A reference interpreter of the loop and gpu IR, for checking passes on small inputs.

It runs a host `func.func` whose arguments are memrefs (numpy float32 or int32 arrays; f16 and
bf16 memory holds float32 numbers of that type, which arith.truncf rounds to) over
the ops sched-dsl's passes write: arith, math, memref, vector (float4 copies), scf, and gpu.
Its meaning is that of running every loop in order, with the SPMD meaning of thread loops:

- A loop bound to `thread.*` (after `apply-schedule`) whose body holds a `gpu.barrier`
  runs its iterations as threads, stepped barrier to barrier (each thread up to the next
  barrier, one after the other). Nested thread loops sync together, since a thread loop
  passes the barrier on to the loop around it. Other loops, and thread loops without a
  barrier, run their iterations one after the other.
- `gpu.launch_func` runs the kernel's grid on the host: blocks one after the other, the
  threads of a block stepped barrier to barrier, sharing the block's
  `#memspace.addr<shared>` buffers.

To be fast, loops whose iterations are independent by their meaning (loops bound to blocks
or threads, a kernel's blocks and threads, and the spatial loops `tensorop-to-loops` writes:
`sched.axis` without `sched.reduce` or `sched.sequential`) run all their iterations at once
as numpy arrays ("lanes"): one interpreted op computes every iteration. That gives the same
result as running them one after the other as long as no iteration reads or writes an
element another iteration wrote, or writes one another iteration read; every access to a
buffer the loop writes is checked for that (between barriers, for threads), and where it
happens the loop runs again from a copy of the memory taken before it, one iteration after
the other (threads: stepped barrier to barrier). So does an error raised while running as
lanes (a lane may have read an element before another wrote it); a real error happens again.
So lanes change the speed, never the result.

A barrier that only some threads reach, an index out of bounds, a read of a value that no
op defined, or an op it does not know end in an `InterpError` naming the op. New memory
(alloc, alloca) starts as NaN, so a read before any write shows in the result. A run that
needs more steps than its budget (one per op run, plus one per 1024 lanes it computes) stops
with `BudgetExceeded`, which says nothing about the IR.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
from xdsl.dialects import arith, func, gpu, memref, scf, vector
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, IntegerType, MemRefType, ModuleOp, StringAttr
from xdsl.ir import Block, BlockArgument, Operation, SSAValue

from sched_dsl.diagnostics import where
from sched_dsl.dialects.memspace import SHARED
from sched_dsl.lowering.emit import const_value, value_bounds

BARRIER = "barrier"  # what a thread's generator yields at a gpu.barrier
INDEX_BITS = 64
DEFAULT_BUDGET = 5_000_000  # interpreter steps: a step takes a few microseconds
LANES_PER_STEP = 1024  # an op computed for n lanes counts 1 + n // 1024 steps: about its time
MAX_LANES = 1 << 20  # iterations computed at once, at most


class InterpError(Exception):
    """The IR cannot be run: names the op, and where it was written when known."""

    def __init__(self, op: Operation | None, message: str):
        prefix = f"{where(op)}{op.name}: " if op is not None else ""
        super().__init__(prefix + message)
        self.op = op


class BudgetExceeded(Exception):
    """The run needs more interpreter steps than its budget: a limit of the interpreter,
    not an error of the IR."""

    def __init__(self, budget: int):
        super().__init__(f"more than {budget} interpreter steps")
        self.budget = budget


class _Conflict(Exception):
    """Lanes of `region` touched the same element: it runs again, one iteration at a time."""

    def __init__(self, region: Region):
        super().__init__()
        self.region = region


def _unsigned(v, op: Operation):
    """v as an unsigned number of the width of op's first operand (index: 64 bits)."""
    t = op.operands[0].type
    bits = t.width.data if isinstance(t, IntegerType) else INDEX_BITS
    if isinstance(v, np.ndarray):
        if bits < 64:
            return v & ((1 << bits) - 1)
        return v.astype(np.uint64) if (v < 0).any() else v
    return int(v) & ((1 << bits) - 1)


def _trunc_div(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        q = np.abs(a) // np.abs(b)
        return np.where((np.asarray(a) >= 0) == (np.asarray(b) >= 0), q, -q)
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _idiv(kind: str):
    def run(op, a, b):
        if kind == "divui":
            a, b = _unsigned(a, op), _unsigned(b, op)
            q = a // b
            return q.astype(np.int64) if isinstance(q, np.ndarray) else q
        if kind == "remui":
            a, b = _unsigned(a, op), _unsigned(b, op)
            r = a % b
            return r.astype(np.int64) if isinstance(r, np.ndarray) else r
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
    unordered = np.isnan(a) | np.isnan(b)
    if pred == "ord":
        return ~unordered
    if pred == "uno":
        return unordered
    ordered = _CMP[pred[1:]](a, b)
    return (ordered | unordered) if pred[0] == "u" else (ordered & ~unordered)


def _select(op, c, a, b):
    if isinstance(c, np.ndarray):
        return np.where(c, a, b)
    return a if c else b


def _int(v):
    return v.astype(np.int64) if isinstance(v, np.ndarray) else int(v)


F32 = np.float32
_ERF = np.frompyfunc(math.erf, 1, 1)


def _erf(a):
    """math.erf of a scalar or of lanes."""
    return _ERF(a).astype(F32) if isinstance(a, np.ndarray) else F32(math.erf(a))


def _round_to(a, t):
    """a (float32, a scalar or lanes) rounded to f16 or bf16, kept as float32."""
    from sched_dsl.dialects.tensorop import element_dtype
    from sched_dsl.reference import numpy_dtype

    dtype = element_dtype(t)
    if dtype not in ("f16", "bf16"):
        raise InterpError(None, f"arith.truncf to {t}: the interpreter rounds to f16 and bf16")
    return F32(np.asarray(a, np.float32).astype(numpy_dtype(dtype)).astype(np.float32))
# ops without regions: name -> f(op, *operand values) -> result value; values are scalars or
# arrays over lanes, and each function works on both
SIMPLE = {
    "arith.addi": lambda op, a, b: a + b,
    "arith.subi": lambda op, a, b: a - b,
    "arith.muli": lambda op, a, b: a * b,
    "arith.divui": _idiv("divui"), "arith.remui": _idiv("remui"), "arith.divsi": _idiv("divsi"),
    "arith.remsi": _idiv("remsi"), "arith.floordivsi": _idiv("floordivsi"),
    "arith.ceildivsi": _idiv("ceildivsi"),
    "arith.maxsi": lambda op, a, b: np.maximum(a, b),
    "arith.minsi": lambda op, a, b: np.minimum(a, b),
    "arith.andi": lambda op, a, b: a & b,
    "arith.ori": lambda op, a, b: a | b,
    "arith.xori": lambda op, a, b: a ^ b,
    "arith.cmpi": _cmpi,
    "arith.cmpf": _cmpf,
    "arith.select": _select,
    "arith.addf": lambda op, a, b: F32(a + b),
    "arith.subf": lambda op, a, b: F32(a - b),
    "arith.mulf": lambda op, a, b: F32(a * b),
    "arith.divf": lambda op, a, b: F32(a / b),
    "arith.maximumf": lambda op, a, b: F32(np.maximum(a, b)),
    "arith.minimumf": lambda op, a, b: F32(np.minimum(a, b)),
    "arith.maxnumf": lambda op, a, b: F32(np.fmax(a, b)),
    "arith.minnumf": lambda op, a, b: F32(np.fmin(a, b)),
    "arith.negf": lambda op, a: F32(-a),
    "arith.index_cast": lambda op, a: _int(a),
    "arith.sitofp": lambda op, a: F32(a),
    # f16/bf16 values are float32 numbers of that type (memory of those types holds them too)
    "arith.extf": lambda op, a: F32(a),
    "arith.truncf": lambda op, a: _round_to(a, op.result.type),
    "math.exp": lambda op, a: F32(np.exp(a)),
    "math.tanh": lambda op, a: F32(np.tanh(a)),
    "math.sqrt": lambda op, a: F32(np.sqrt(a)),
    "math.absf": lambda op, a: F32(np.abs(a)),
    "math.log": lambda op, a: F32(np.log(a)),
    "math.floor": lambda op, a: F32(np.floor(a)),
    "math.ceil": lambda op, a: F32(np.ceil(a)),
    "math.erf": lambda op, a: _erf(a),
    "math.powf": lambda op, a, b: F32(np.power(a, b)),
    "arith.fptosi": lambda op, a: _int(np.trunc(a)),
}
INT_DIVISIONS = {"arith.divui", "arith.remui", "arith.divsi", "arith.remsi", "arith.floordivsi", "arith.ceildivsi"}


def _constant(op: Operation):
    attr = getattr(op, "value", None)
    if isinstance(attr, IntegerAttr):
        return int(attr.value.data)
    if isinstance(attr, FloatAttr):
        return F32(attr.value.data)
    raise InterpError(op, f"constant {attr} is not a scalar")


_BARRIERS: dict[Operation, bool] = {}


def _has_barrier(op: Operation) -> bool:
    if op not in _BARRIERS:
        if len(_BARRIERS) > 100_000:
            _BARRIERS.clear()
        _BARRIERS[op] = any(isinstance(o, gpu.BarrierOp) for o in op.walk())
    return _BARRIERS[op]


def _bind(op: Operation) -> str:
    attr = op.attributes.get("sched.bind")
    return attr.data if isinstance(attr, StringAttr) else ""


def _new_array(op: Operation, lanes: tuple[int, ...] = ()) -> np.ndarray:
    t = op.results[0].type
    if not isinstance(t, MemRefType) or any(d < 0 for d in t.get_shape()):
        raise InterpError(op, f"can only allocate static memrefs, not {t}")
    shape = lanes + tuple(t.get_shape())
    if isinstance(t.element_type, IntegerType):  # no NaN: a value no op wrote is a large one
        return np.full(shape, np.iinfo(np.int32).min, dtype=np.int32)
    return np.full(shape, np.nan, dtype=np.float32)


def _parallel_kind(op: scf.ForOp) -> str | None:
    """"block" or "thread" for a loop bound to them; "plain" for a spatial loop of
    tensorop-to-loops (its iterations write disjoint outputs) without barriers; else None."""
    bind = _bind(op)
    if bind.startswith(("block", "thread")):
        return bind.split(".")[0]
    attrs = op.attributes
    if not bind and "sched.axis" in attrs and "sched.reduce" not in attrs and "sched.sequential" not in attrs \
            and not _has_barrier(op):
        return "plain"
    return None


def _merge(cond, a, b):
    """a where cond holds, else b (either may be None: the other is taken)."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, list):
        return [np.where(cond, x, y) for x, y in zip(a, b)]
    return np.where(cond, a, b)


class Laned:
    """A buffer with one copy per lane of the lane levels `levels` (its leading dimensions)."""

    def __init__(self, data: np.ndarray, levels: tuple[int, ...]):
        self.data, self.levels = data, levels


def _stored(op: Operation) -> frozenset[SSAValue]:
    """The memrefs that ops inside `op` store to."""
    out = set()
    for o in op.walk():
        if isinstance(o, memref.StoreOp):
            out.add(o.memref)
        elif isinstance(o, vector.StoreOp):
            out.add(o.base)
    return frozenset(out)


_AFFINE: dict[SSAValue, tuple[dict, int] | None] = {}


def _affine(v: SSAValue) -> tuple[dict, int] | None:
    """v as (terms {key: coefficient}, constant), the keys being loops (their variable) and
    ("tid" | "bid", dim); None when it is not affine in them."""
    if v in _AFFINE:
        return _AFFINE[v]
    if len(_AFFINE) > 100_000:
        _AFFINE.clear()
    out = None
    if isinstance(v, BlockArgument):
        loop = v.block.parent_op()
        if isinstance(loop, scf.ForOp) and v.index == 0:
            out = ({loop: 1}, 0)
    elif isinstance(v.owner, arith.ConstantOp) and isinstance(v.owner.value, IntegerAttr):
        out = ({}, v.owner.value.value.data)
    elif isinstance(v.owner, (gpu.ThreadIdOp, gpu.BlockIdOp)):
        out = ({("tid" if isinstance(v.owner, gpu.ThreadIdOp) else "bid", v.owner.dimension.data.value): 1}, 0)
    elif isinstance(v.owner, arith.IndexCastOp):
        out = _affine(v.owner.input)
    elif isinstance(v.owner, (arith.AddiOp, arith.SubiOp, arith.MuliOp)):
        a, b = _affine(v.owner.lhs), _affine(v.owner.rhs)
        if a is not None and b is not None:
            if isinstance(v.owner, arith.MuliOp):
                if not a[0] or not b[0]:
                    (terms, c), k = (b, a[1]) if not a[0] else (a, b[1])
                    out = ({key: k * x for key, x in terms.items()}, k * c)
            else:
                sign = 1 if isinstance(v.owner, arith.AddiOp) else -1
                terms = dict(a[0])
                for key, x in b[0].items():
                    terms[key] = terms.get(key, 0) + sign * x
                out = ({key: x for key, x in terms.items() if x}, a[1] + sign * b[1])
    _AFFINE[v] = out
    return out


def _accesses(op: Operation, ref: SSAValue) -> list[tuple[list[SSAValue], int]]:
    """(indices, width) of every load and store of `ref` inside `op`."""
    out = []
    for o in op.walk():
        if isinstance(o, (memref.LoadOp, memref.StoreOp)) and o.memref is ref:
            out.append((list(o.indices), 1))
        elif isinstance(o, vector.LoadOp) and o.base is ref:
            out.append((list(o.indices), o.result.type.get_shape()[-1]))
        elif isinstance(o, vector.StoreOp) and o.base is ref:
            out.append((list(o.indices), o.vector.type.get_shape()[-1]))
    return out


def lanes_never_meet(op: Operation, ref: SSAValue, levels: Sequence[tuple[object, int, int]], depth: int,
                     separate: Sequence[int]) -> bool:
    """Whether no two lanes can touch one element of `ref` inside `op`, from the indices of
    its accesses: each is affine in the lane variables `levels` ((key, step, count) per
    level; those from `depth` on are lanes inside the region), every access places each lane
    variable the same way (one dimension, one coefficient, with the same other terms), and
    in each dimension the lane terms, taken by their stride, each step further than all
    smaller terms and the loops inside `op` together reach (a mixed radix), so an element
    names its lane. Levels in `separate` have a copy of the buffer each and need no proof."""
    lanes = {key: (step, n) for k, (key, step, n) in enumerate(levels[:depth]) if k not in separate and n > 1}
    if not lanes:
        return True  # one lane, or a copy per lane
    inner = {key: (step, n) for key, step, n in levels[depth:]}
    shape, low, high = None, None, None
    for indices, width in _accesses(op, ref):
        forms = [_affine(v) for v in indices]
        if any(f is None for f in forms):
            return False
        placed, fixed = {}, set()
        lo, hi = [0] * len(forms), [width - 1 if d == len(forms) - 1 else 0 for d in range(len(forms))]
        for d, (terms, const) in enumerate(forms):
            fixed.add((d, "const", const))
            for key, c in terms.items():
                if key in lanes:
                    if key in placed:
                        return False
                    placed[key] = (d, c)
                elif isinstance(key, scf.ForOp) and op.is_ancestor(key) or key in inner:  # a range
                    if isinstance(key, scf.ForOp):
                        bounds = value_bounds(key.body.block.args[0])
                    else:
                        bounds = (0, inner[key][0] * (inner[key][1] - 1))
                    if bounds is None:
                        return False
                    ends = (c * bounds[0], c * bounds[1])
                    lo[d], hi[d] = lo[d] + min(ends), hi[d] + max(ends)
                elif isinstance(key, scf.ForOp) and not all(
                        const_value(x) is not None for x in (key.lb, key.ub, key.step)):
                    return False  # a loop outside whose variable may differ between lanes
                else:
                    fixed.add((d, key, c))  # the same for every lane
        if set(placed) != set(lanes):
            return False
        if shape is None:
            shape, low, high = (placed, fixed), lo, hi
        elif (placed, fixed) != shape:
            return False
        else:
            low, high = [min(a, b) for a, b in zip(low, lo)], [max(a, b) for a, b in zip(high, hi)]
    if shape is None:
        return True
    for d in range(len(low)):
        reach = high[d] - low[d]
        for stride, span in sorted((abs(c) * lanes[key][0], abs(c) * lanes[key][0] * (lanes[key][1] - 1))
                                   for key, (dd, c) in shape[0].items() if dd == d):
            if stride <= reach:
                return False
            reach += span
    return True


class Region:
    """A loop band (or a kernel's blocks or threads) running as lanes: its levels are
    first..depth-1. Where the indices do not prove that its lanes never meet on a buffer's
    element (lanes_never_meet), it records per element which lane wrote it and which lane
    read it (-2: several) and raises _Conflict when one lane writes an element another
    touched. Reads before the first write of a buffer are only kept, and looked at when a
    write follows (a barrier between threads forgets them)."""

    def __init__(self, op: Operation, kind: str, first: int, stored: frozenset[SSAValue]):
        self.op, self.kind, self.first, self.depth = op, kind, first, first
        self.stored = stored
        self.band: set[Operation] = set()
        self.proven: dict[SSAValue, bool] = {}
        self.writer: dict[int, np.ndarray] = {}
        self.reader: dict[int, np.ndarray] = {}
        self.pending: dict[int, list] = {}
        self.keep: dict[int, np.ndarray] = {}  # the buffers looked at, so that their ids stay theirs
        self._lid = None

    def add_level(self) -> None:
        self.depth += 1
        self._lid = None

    def reset(self) -> None:
        self.writer.clear()
        self.reader.clear()
        self.pending.clear()

    def lid(self, th: Thread) -> np.ndarray:
        """The lane number of each lane, over levels 0..depth-1."""
        if self._lid is None:
            lid, stride = 0, 1
            for k in reversed(range(self.depth)):
                lid = lid + th.iota(k) * stride
                stride *= th.lanes[k]
            self._lid = np.asarray(lid)
        return self._lid

    def _lanes_and_elements(self, th_lid: np.ndarray, mask, data: np.ndarray, index: tuple):
        parts = list(np.broadcast_arrays(th_lid, *index, *(() if mask is None else (mask,))))
        if mask is not None:
            keep = parts.pop()
            parts = [p[keep] for p in parts]
        else:
            parts = [p.ravel() for p in parts]
        return parts[0], np.ravel_multi_index(parts[1:], data.shape)

    def access(self, th: Thread, data: np.ndarray, index: tuple, store: bool) -> None:
        key = id(data)
        self.keep[key] = data
        if not store and key not in self.writer:
            reads = self.pending.setdefault(key, [])
            reads.append((self.lid(th), th.mask, index))
            if len(reads) > 32:
                self._fold_reads(data)
            return
        if key in self.pending:
            self._fold_reads(data)
        writer = self.writer.get(key)
        if writer is None:
            writer = self.writer[key] = np.full(data.size, -1, dtype=np.int64)
        reader = self.reader.get(key)
        lanes, elems = self._lanes_and_elements(self.lid(th), th.mask, data, index)
        w = writer[elems]
        if ((w != -1) & (w != lanes)).any():
            raise _Conflict(self)
        if store:
            if reader is not None:
                r = reader[elems]
                if ((r != -1) & (r != lanes)).any():
                    raise _Conflict(self)
            writer[elems] = lanes
            if (writer[elems] != lanes).any():  # two lanes wrote one element
                raise _Conflict(self)
        else:
            self._read(data, lanes, elems)

    def _read(self, data: np.ndarray, lanes: np.ndarray, elems: np.ndarray) -> None:
        reader = self.reader.get(id(data))
        if reader is None:
            reader = self.reader[id(data)] = np.full(data.size, -1, dtype=np.int64)
        r = reader[elems]
        new = np.where((r == -1) | (r == lanes), lanes, -2)
        reader[elems] = new
        several = reader[elems] != new
        if several.any():
            reader[elems[several]] = -2

    def _fold_reads(self, data: np.ndarray) -> None:
        for lid, mask, index in self.pending.pop(id(data)):
            self._read(data, *self._lanes_and_elements(lid, mask, data, index))


class Thread:
    """What one thread of execution sees: SSA values, its ids, the shared buffers of its
    block (`shared`, by alloca op, while `spmd`: inside a kernel or a thread loop), and the
    lanes it runs as: `lanes` (the sizes of its levels, outermost first; level k is numpy
    axis -(k+1) of every value), their kinds, the active lanes (`mask`, None: all) and the
    regions checking them. `stepped`: a thread of a group stepped barrier to barrier."""

    def __init__(self, values: dict, tid=(0, 0, 0), bid=(0, 0, 0), shared: dict | None = None, spmd=False):
        self.values, self.tid, self.bid = values, tid, bid
        self.shared = {} if shared is None else shared
        self.spmd, self.stepped = spmd, False
        self.lanes: tuple[int, ...] = ()
        self.kinds: tuple[str, ...] = ()
        self.keys: tuple[tuple[object, int], ...] = ()  # per level: its variable (a loop, or ("tid", "x")...) and step
        self.mask = None
        self.regions: tuple[Region, ...] = ()
        self.width = 1  # number of lanes

    def child(self, **changes) -> Thread:
        th = object.__new__(Thread)
        th.__dict__.update(self.__dict__)
        th.__dict__.update(changes)
        if "lanes" in changes:
            th.width = math.prod(th.lanes)
        return th

    def fork(self, values: dict, shared: dict) -> Thread:
        """A thread of a thread loop stepped barrier to barrier, sharing `shared` with its siblings."""
        return self.child(values=values, shared=shared, spmd=True, stepped=True)

    def iota(self, k: int) -> np.ndarray:
        """The iteration numbers of level k."""
        return _iota(self.lanes[k], k)


@functools.lru_cache(maxsize=256)
def _iota(n: int, k: int) -> np.ndarray:
    out = np.arange(n, dtype=np.int64).reshape((n,) + (1,) * k)
    out.flags.writeable = False
    return out


class Interpreter:
    def __init__(self, module: ModuleOp, budget: int = DEFAULT_BUDGET, lanes: bool = True):
        self.module = module
        self.steps = 0
        self.budget = budget
        self.use_lanes = lanes  # False: every loop one iteration after the other
        self._stored: dict[Operation, frozenset[SSAValue]] = {}
        self._proofs: dict[tuple, bool] = {}

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

    def stored(self, op: Operation) -> frozenset[SSAValue]:
        if op not in self._stored:
            self._stored[op] = _stored(op)
        return self._stored[op]

    @staticmethod
    def mine(e: Exception, region: Region) -> bool:
        """Whether `region` runs again in order for `e`: its own conflict, or an error, which
        lanes may have caused by reading an element before another lane wrote it (the write
        comes later in program order, so the conflict would show only there). A real error
        happens again in order."""
        return e.region is region if isinstance(e, _Conflict) else True

    def not_in_lanes(self, th: Thread, op: Operation, why: str):
        """Something lanes cannot express: the innermost region runs again without lanes."""
        if th.regions:
            raise _Conflict(th.regions[-1])
        raise InterpError(op, why)

    def block(self, block: Block, th: Thread) -> Iterator[str]:
        """Runs the ops of `block`; yields at barriers; returns the operands of its
        terminator (scf.yield)."""
        cost = 1 + th.width // LANES_PER_STEP
        for op in block.ops:
            self.steps += cost
            if self.steps > self.budget:
                raise BudgetExceeded(self.budget)
            name = op.name
            if name in ("scf.yield", "func.return", "gpu.return"):
                return [self.value(th, v) for v in op.operands]
            if name == "scf.for":
                yield from self.for_loop(op, th)
            elif name == "scf.if":
                yield from self.if_op(op, th)
            elif name == "gpu.barrier":
                if th.stepped:
                    yield BARRIER
                elif th.spmd and th.regions:
                    self.lane_barrier(op, th)
            else:
                self.simple(op, th)
        return []

    def if_op(self, op: scf.IfOp, th: Thread) -> Iterator[str]:
        c = self.value(th, op.operands[0])
        if not isinstance(c, np.ndarray):
            region = op.regions[0] if c else op.regions[1]
            got = []
            if region.blocks:
                got = yield from self.block(region.block, th)
            for r, v in zip(op.results, got):
                th.values[r] = v
            return
        got = []
        for region, cond in ((op.regions[0], c), (op.regions[1], ~c)):
            mask = cond if th.mask is None else cond & th.mask
            if region.blocks and mask.any():
                got.append((yield from self.block(region.block, th.child(mask=mask))))
            else:
                got.append([None] * len(op.results))
        for r, a, b in zip(op.results, *got):
            th.values[r] = _merge(c, a, b)

    def lane_kind(self, op: scf.ForOp, th: Thread) -> str | None:
        """"block", "thread" or "plain" where the iterations of `op` may run as lanes."""
        if not self.use_lanes or op.iter_args:
            return None
        kind = _parallel_kind(op)
        if kind == "block" and (th.spmd or th.stepped) or kind == "thread" and th.stepped:
            return None  # inside threads stepped barrier to barrier, thread loops are stepped too
        return kind

    def for_loop(self, op: scf.ForOp, th: Thread) -> Iterator[str]:
        lb, ub, step = (self.value(th, v) for v in (op.lb, op.ub, op.step))
        kind = self.lane_kind(op, th)
        if kind and not any(isinstance(v, np.ndarray) for v in (lb, ub, step)) and step > 0:
            n = len(range(lb, ub, step))
            # threads running as lanes take a thread loop of one iteration as lanes too: it
            # may hold a barrier they all reach
            if (n > 1 or n == 1 and kind == "thread") and th.width * n <= MAX_LANES:
                yield from self.lane_loop(op, th, kind, lb, ub, step, n)
                return
        yield from self.loop_in_order(op, th, lb, ub, step)

    def loop_in_order(self, op: scf.ForOp, th: Thread, lb, ub, step) -> Iterator[str]:
        body = op.body.block
        if _bind(op).startswith("thread") and (_has_barrier(op) or not th.spmd):
            if op.iter_args:
                raise InterpError(op, "a thread loop cannot carry values")
            if th.spmd and not th.stepped and th.regions:
                self.not_in_lanes(th, op, "a thread loop too large for lanes inside threads running as lanes")
            if any(isinstance(v, np.ndarray) for v in (lb, ub, step)):
                self.not_in_lanes(th, op, "thread loop bounds differ between lanes")
            if step <= 0:
                raise InterpError(op, f"step {step} is not positive")
            shared = th.shared if th.spmd else {}  # the outermost thread loop starts a block
            threads = [self.block(body, th.fork({**th.values, body.args[0]: i}, shared)) for i in range(lb, ub, step)]
            if _has_barrier(op):
                yield from self.lockstep(op, threads)
            else:
                for t in threads:
                    yield from t
            return
        carried = [self.value(th, v) for v in op.iter_args]
        if not any(isinstance(v, np.ndarray) for v in (lb, ub, step)):
            if step <= 0:
                raise InterpError(op, f"step {step} is not positive")
            for i in range(lb, ub, step):
                th.values[body.args[0]] = i
                for a, v in zip(body.args[1:], carried):
                    th.values[a] = v
                carried = yield from self.block(body, th)
        else:  # bounds that differ between lanes: each lane runs its own iterations
            active = True if th.mask is None else th.mask
            if np.any((np.asarray(step) <= 0) & active):
                raise InterpError(op, "step is not positive")
            for t in itertools.count():
                iv = lb + step * t
                mask = (iv < ub) & active
                if not mask.any():
                    break
                th.values[body.args[0]] = iv
                for a, v in zip(body.args[1:], carried):
                    th.values[a] = v
                new = yield from self.block(body, th.child(mask=mask))
                carried = [_merge(mask, a, b) for a, b in zip(new, carried)]
        for r, v in zip(op.results, carried):
            th.values[r] = v

    def lane_loop(self, op: scf.ForOp, th: Thread, kind: str, lb, ub, step, n: int) -> Iterator[str]:
        """All iterations of `op` at once, as a new lane level; the loop runs again in order
        when its lanes meet on an element."""
        inner = th.regions[-1] if th.regions else None
        level = len(th.lanes)
        if inner is not None and op in inner.band and inner.depth == level:
            inner.add_level()  # a loop of the band: one more level of the same region
            sub = th.child(lanes=th.lanes + (n,), kinds=th.kinds + (kind,), keys=th.keys + ((op, step),))
            sub.values[op.body.block.args[0]] = lb + step * sub.iota(level)
            yield from self.block(op.body.block, sub)
            return
        region = Region(op, kind, level, self.stored(op))
        region.band = self.band(op, kind)
        saved = self.snapshot(region, th)
        spmd = th.spmd or kind == "thread"
        shared = th.shared if th.spmd else {}
        sub = th.child(lanes=th.lanes + (n,), kinds=th.kinds + (kind,), keys=th.keys + ((op, step),),
                       regions=th.regions + (region,), spmd=spmd, shared=shared)
        region.add_level()
        sub.values[op.body.block.args[0]] = lb + step * sub.iota(level)
        try:
            yield from self.block(op.body.block, sub)
        except (_Conflict, InterpError) as e:
            if not self.mine(e, region):
                raise
            self.restore(saved)
            yield from self.loop_in_order(op, th, lb, ub, step)

    def band(self, op: scf.ForOp, kind: str) -> set[Operation]:
        """The loops of `kind` perfectly nested in `op` (only pure ops between them)."""
        out = set()
        while True:
            ops = [o for o in op.body.block.ops if not isinstance(o, scf.YieldOp)]
            loops = [o for o in ops if isinstance(o, scf.ForOp)]
            pure = all(o is loops[0] or o.name in SIMPLE or o.name == "arith.constant" for o in ops) if loops else False
            if len(loops) != 1 or not pure or _parallel_kind(loops[0]) != kind or loops[0].iter_args:
                return out
            op = loops[0]
            out.add(op)

    def snapshot(self, region: Region, th: Thread) -> list[tuple[np.ndarray, np.ndarray]]:
        """Copies of the buffers defined outside the region that it stores to."""
        out, seen = [], set()
        for v in region.stored:
            ref = th.values.get(v)
            data = ref.data if isinstance(ref, Laned) else ref
            if isinstance(data, np.ndarray) and id(data) not in seen:
                seen.add(id(data))
                out.append((data, data.copy()))
        return out

    @staticmethod
    def restore(saved: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for data, copy in saved:
            data[...] = copy

    def lane_barrier(self, op: Operation, th: Thread) -> None:
        """A barrier reached by threads running as lanes: they are all there at once, unless
        only some of a block's threads reach it."""
        if th.mask is not None:
            thread_axes = tuple(-(k + 1) for k, kind in enumerate(th.kinds) if kind == "thread")
            mask = np.broadcast_to(th.mask, tuple(reversed(th.lanes)))
            if (mask.any(axis=thread_axes) != mask.all(axis=thread_axes)).any():
                self.not_in_lanes(th, op, "a barrier only some threads reach")
        for r in th.regions:
            if r.kind == "thread":
                r.reset()

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
            if name in INT_DIVISIONS:
                args[1] = self.divisor(op, th, args[1])
            with np.errstate(all="ignore"):
                th.values[op.results[0]] = SIMPLE[name](op, *args)
        elif name == "memref.load":
            ref, *idx = op.operands
            th.values[op.results[0]] = self.load(op, th, ref, [self.value(th, v) for v in idx])
        elif name == "memref.store":
            val, ref, *idx = op.operands
            self.store(op, th, ref, [self.value(th, v) for v in idx], self.value(th, val))
        elif name == "vector.load":
            ref, *idx = op.operands
            idx = [self.value(th, v) for v in idx]
            width = op.results[0].type.get_shape()[-1]
            self.address(op, th, self.value(th, ref), idx[:-1] + [idx[-1] + width - 1])
            th.values[op.results[0]] = [self.load(op, th, ref, idx[:-1] + [idx[-1] + p]) for p in range(width)]
        elif name == "vector.store":
            val, ref, *idx = op.operands
            idx = [self.value(th, v) for v in idx]
            parts = self.value(th, val)
            self.address(op, th, self.value(th, ref), idx[:-1] + [idx[-1] + len(parts) - 1])
            for p, part in enumerate(parts):
                self.store(op, th, ref, idx[:-1] + [idx[-1] + p], part)
        elif name == "vector.extract":
            th.values[op.results[0]] = F32(self.value(th, op.operands[0])[op.static_position.get_values()[0]])
        elif name in ("memref.alloc", "memref.alloca", "tc.tensor_map"):
            # (a TMA descriptor: a buffer kernels take, and as loops never read)
            th.values[op.results[0]] = self.alloc(op, th)
        elif name == "memref.dealloc":
            pass
        elif name == "gpu.thread_id":
            th.values[op.results[0]] = th.tid["xyz".index(op.dimension.data.value)]
        elif name == "gpu.block_id":
            th.values[op.results[0]] = th.bid["xyz".index(op.dimension.data.value)]
        elif name == "gpu.launch_func":
            if th.lanes:
                self.not_in_lanes(th, op, "a launch inside a loop")
            self.launch(op, th)
        else:
            raise InterpError(op, "the interpreter does not know this op")

    def divisor(self, op: Operation, th: Thread, b):
        zero = b == 0
        if isinstance(b, np.ndarray):
            if (zero if th.mask is None else zero & th.mask).any():
                raise InterpError(op, "integer division by zero")
            return np.where(zero, 1, b)  # lanes that are not active
        if zero:
            raise InterpError(op, "integer division by zero")
        return b

    def alloc(self, op: Operation, th: Thread):
        shared = op.results[0].type.memory_space == SHARED and th.spmd
        if not th.lanes:
            return th.shared.setdefault(op, _new_array(op)) if shared else _new_array(op)
        # one buffer per lane; a shared one per block: not per thread
        levels = tuple(k for k, kind in enumerate(th.kinds) if not (shared and kind == "thread"))
        make = lambda: Laned(_new_array(op, tuple(th.lanes[k] for k in levels)), levels)  # noqa: E731
        return th.shared.setdefault(op, make()) if shared else make()

    # -- memory --------------------------------------------------------------------------
    def address(self, op: Operation, th: Thread, ref, idx: list) -> tuple[np.ndarray, tuple]:
        """The array and the numpy index of ref[idx], bounds-checked over the active lanes."""
        if isinstance(ref, Laned):
            data, lane_index = ref.data, tuple(th.iota(k) for k in ref.levels)
        else:
            data, lane_index = ref, ()
        shape = data.shape[len(lane_index):]
        if len(idx) != len(shape):
            raise InterpError(op, f"index {tuple(idx)} has {len(idx)} dimensions for a buffer of shape {shape}")
        bad = None
        for i, n in zip(idx, shape):
            out = (i < 0) | (i >= n)
            bad = out if bad is None else bad | out
        if th.mask is not None and isinstance(bad, np.ndarray):
            bad = bad & th.mask
        if np.any(bad):
            shown = tuple(int(i) for i in idx) if not isinstance(bad, np.ndarray) else None
            if shown is None:  # the index of the first lane out of bounds
                lanes = np.broadcast_shapes(bad.shape, *(np.shape(i) for i in idx))
                at = np.unravel_index(np.argmax(np.broadcast_to(bad, lanes)), lanes)
                shown = tuple(int(np.broadcast_to(i, lanes)[at]) for i in idx)
            raise InterpError(op, f"index {shown} is out of bounds of a buffer of shape {shape}")
        if th.mask is not None:  # inactive lanes may hold any index
            idx = [np.where(th.mask, i, 0) if isinstance(i, np.ndarray) else i for i in idx]
        return data, lane_index + tuple(idx)

    def track(self, th: Thread, ref_value: SSAValue, ref, data: np.ndarray, index: tuple, store: bool) -> None:
        for r in th.regions:
            if ref_value not in r.stored:
                continue
            proven = r.proven.get(ref_value)
            if proven is None:
                separate = ref.levels if isinstance(ref, Laned) else ()
                levels = tuple((key, step, n) for (key, step), n in zip(th.keys, th.lanes))
                cache = (r.op, ref_value, levels, r.depth, separate)
                if cache not in self._proofs:
                    self._proofs[cache] = lanes_never_meet(r.op, ref_value, levels, r.depth, separate)
                proven = r.proven[ref_value] = self._proofs[cache]
            if not proven:
                r.access(th, data, index, store)

    def load(self, op: Operation, th: Thread, ref_value: SSAValue, idx: list):
        ref = self.value(th, ref_value)
        data, index = self.address(op, th, ref, idx)
        if th.regions:
            self.track(th, ref_value, ref, data, index, False)
        got = data[index]
        if isinstance(got, np.ndarray):
            return got
        return int(got) if data.dtype.kind == "i" else F32(got)

    def store(self, op: Operation, th: Thread, ref_value: SSAValue, idx: list, val) -> None:
        ref = self.value(th, ref_value)
        data, index = self.address(op, th, ref, idx)
        if th.regions:
            self.track(th, ref_value, ref, data, index, True)
        if th.mask is None and not isinstance(val, np.ndarray):
            data[index] = val
            return
        parts = list(np.broadcast_arrays(*index, val, *(() if th.mask is None else (th.mask,))))
        if th.mask is not None:
            keep = parts.pop()
            parts = [p[keep] for p in parts]
        if not index:  # a 0-d buffer: the last lane's value stays, as in order
            data[()] = parts[-1].ravel()[-1]
            return
        data[tuple(parts[:-1])] = parts[-1]

    # -- kernels -------------------------------------------------------------------------
    def launch(self, op: gpu.LaunchFuncOp, th: Thread) -> None:
        kernel = self.kernel(op)
        grid = [self.value(th, v) for v in (op.gridSizeX, op.gridSizeY, op.gridSizeZ)]
        size = [self.value(th, v) for v in (op.blockSizeX, op.blockSizeY, op.blockSizeZ)]
        args = [self.value(th, v) for v in op.kernelOperands]
        body = kernel.body.block
        if len(args) != len(body.args):
            raise InterpError(op, f"passes {len(args)} arguments to a kernel of {len(body.args)}")
        values = dict(zip(body.args, args))
        if self.use_lanes and math.prod(grid) * math.prod(size) <= MAX_LANES:
            region = Region(kernel, "block", 0, self.stored(kernel))
            saved = self.snapshot(region, Thread(values))
            blocks = Thread(dict(values), spmd=True).child(
                lanes=tuple(reversed(grid)), kinds=("block",) * 3, regions=(region,),
                keys=((("bid", "z"), 1), (("bid", "y"), 1), (("bid", "x"), 1)))
            blocks.bid = (blocks.iota(2), blocks.iota(1), blocks.iota(0))
            region.depth = 3
            try:
                self.block_threads(op, kernel, blocks, size)
                return
            except (_Conflict, InterpError) as e:
                if not self.mine(e, region):
                    raise
                self.restore(saved)
        for bz, by, bx in itertools.product(*(range(n) for n in reversed(grid))):
            self.block_threads(op, kernel, Thread(dict(values), bid=(bx, by, bz), spmd=True), size)

    def block_threads(self, op: gpu.LaunchFuncOp, kernel: gpu.FuncOp, th: Thread, size: list[int]) -> None:
        """The threads of a block (or of blocks running as lanes): as lanes, else stepped
        barrier to barrier."""
        body = kernel.body.block
        if self.use_lanes and th.width * math.prod(size) <= MAX_LANES:
            level = len(th.lanes)
            region = Region(kernel, "thread", level, self.stored(kernel))
            saved = self.snapshot(region, th)
            sub = th.child(lanes=th.lanes + tuple(reversed(size)), kinds=th.kinds + ("thread",) * 3,
                           keys=th.keys + ((("tid", "z"), 1), (("tid", "y"), 1), (("tid", "x"), 1)),
                           regions=th.regions + (region,), shared={})
            sub.tid = (sub.iota(level + 2), sub.iota(level + 1), sub.iota(level))
            region.depth = level + 3
            try:
                for _ in self.block(body, sub):
                    pass
                return
            except (_Conflict, InterpError) as e:
                if not self.mine(e, region):
                    raise
                self.restore(saved)
        shared: dict = {}
        threads = [self.block(body, th.child(values=dict(th.values), tid=(tx, ty, tz), shared=shared, stepped=True))
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
