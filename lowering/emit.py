"""A small op builder shared by the passes: appends arith/memref/scf ops to a block.

Index arithmetic folds constants as it goes, so the loop IR stays readable and the
emitted C text stays short.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import gcd

from xdsl.dialects import arith, math, memref, scf, vector
from xdsl.dialects.builtin import (
    AnyFloat,
    BFloat16Type,
    Float16Type,
    Float32Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    MemRefType,
    VectorType,
    f32,
    i1,
    i32,
)
from xdsl.ir import Attribute, Block, BlockArgument, Operation, Region, SSAValue

INDEX = IndexType()
MATH_FNS = {"log": math.LogOp, "sqrt": math.SqrtOp, "abs": math.AbsFOp, "floor": math.FloorOp,
            "ceil": math.CeilOp, "erf": math.ErfOp, "pow": math.PowFOp}


def is_half(t: Attribute) -> bool:
    """Whether t is a 16-bit float type (f16 or bf16): stored as such, computed in f32."""
    return isinstance(t, (Float16Type, BFloat16Type))


def const_value(v: SSAValue) -> int | float | None:
    """The value of an arith.constant, else None."""
    op = v.owner
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, (IntegerAttr, FloatAttr)):
        return op.value.value.data
    return None


def value_bounds(v: SSAValue) -> tuple[int, int] | None:
    """Smallest and largest value an index can take, from constants, the bounds of the
    enclosing scf.for loops and index arithmetic; None when unknown."""
    c = const_value(v)
    if c is not None:
        return (c, c) if isinstance(c, int) else None
    if isinstance(v, BlockArgument):
        loop = v.block.parent_op()
        if isinstance(loop, scf.ForOp) and v.index == 0:
            lb, ub = value_bounds(loop.lb), value_bounds(loop.ub)
            if lb is not None and ub is not None and ub[1] > lb[0]:
                return lb[0], ub[1] - 1
        return None
    op = v.owner
    if not isinstance(op, (arith.AddiOp, arith.SubiOp, arith.MuliOp, arith.DivUIOp, arith.RemUIOp, arith.MinSIOp,
                           arith.XOrIOp)):
        return None
    a, b = value_bounds(op.lhs), value_bounds(op.rhs)
    if a is None or b is None:
        return None
    if isinstance(op, arith.XOrIOp):  # of non-negative values below 2^n: below 2^n
        return (0, (1 << max(a[1], b[1]).bit_length()) - 1) if min(a[0], b[0]) >= 0 else None
    if isinstance(op, arith.MinSIOp):
        return min(a[0], b[0]), min(a[1], b[1])
    if isinstance(op, arith.AddiOp):
        return a[0] + b[0], a[1] + b[1]
    if isinstance(op, arith.SubiOp):
        return a[0] - b[1], a[1] - b[0]
    if isinstance(op, arith.MuliOp):
        products = [x * y for x in a for y in b]
        return min(products), max(products)
    if a[0] < 0 or b[0] <= 0:  # unsigned division of a possibly negative value
        return None
    if isinstance(op, arith.DivUIOp):
        return a[0] // b[1], a[1] // b[0]
    return (0, b[1] - 1) if a[1] >= b[0] else a


def known_divisor(v: SSAValue) -> int:
    """A number that `v` is known to be a multiple of (1 when nothing is known)."""
    c = const_value(v)
    if isinstance(c, int):
        return abs(c) or 1 << 30
    if value_bounds(v) == (0, 0):
        return 1 << 30  # always 0: e.g. a tile's base along a loop of one iteration
    if isinstance(v, BlockArgument):
        loop = v.block.parent_op()
        if isinstance(loop, scf.ForOp) and v.index == 0:
            return gcd(known_divisor(loop.lb), known_divisor(loop.step))
        return 1
    op = v.owner
    if isinstance(op, (arith.AddiOp, arith.SubiOp)):
        return gcd(known_divisor(op.lhs), known_divisor(op.rhs))
    if isinstance(op, arith.MuliOp):
        return known_divisor(op.lhs) * known_divisor(op.rhs)
    return 1


class Emitter:
    """Appends ops to `block` (before `before`, when given)."""

    def __init__(self, block: Block, before: Operation | None = None):
        self.block = block
        self.before = before

    def op(self, op: Operation) -> Operation:
        if self.before is None:
            self.block.add_op(op)
        else:
            self.block.insert_op_before(op, self.before)
        return op

    def val(self, op: Operation) -> SSAValue:
        return self.op(op).results[0]

    # -- constants and index arithmetic ------------------------------------------------
    def index(self, v: int) -> SSAValue:
        return self.val(arith.ConstantOp(IntegerAttr(int(v), INDEX)))

    def f32(self, v: float) -> SSAValue:
        return self.val(arith.ConstantOp(FloatAttr(float(v), f32)))

    def i32(self, v: int) -> SSAValue:
        return self.val(arith.ConstantOp(IntegerAttr(int(v), i32)))

    def const(self, v: int | float, t: Attribute) -> SSAValue:
        """A constant of element type t (a float type or i32)."""
        if isinstance(t, Float32Type):
            return self.f32(v)
        if isinstance(t, AnyFloat):
            return self.val(arith.ConstantOp(FloatAttr(float(v), t)))
        return self.i32(v)

    def bool(self, v: bool) -> SSAValue:
        return self.val(arith.ConstantOp(IntegerAttr(int(v), i1)))

    def add(self, a: SSAValue, b: SSAValue | int) -> SSAValue:
        b = self._as_index(b)
        if const_value(b) == 0:
            return a
        if const_value(a) == 0:
            return b
        ca, cb = const_value(a), const_value(b)
        if ca is not None and cb is not None:
            return self.index(ca + cb)
        return self.val(arith.AddiOp(a, b))

    def sub(self, a: SSAValue, b: SSAValue | int) -> SSAValue:
        b = self._as_index(b)
        if const_value(b) == 0:
            return a
        ca, cb = const_value(a), const_value(b)
        if ca is not None and cb is not None:
            return self.index(ca - cb)
        return self.val(arith.SubiOp(a, b))

    def mul(self, a: SSAValue, b: SSAValue | int) -> SSAValue:
        b = self._as_index(b)
        ca, cb = const_value(a), const_value(b)
        if cb == 1:
            return a
        if ca == 1:
            return b
        if ca == 0 or cb == 0:
            return self.index(0)
        if ca is not None and cb is not None:
            return self.index(ca * cb)
        return self.val(arith.MuliOp(a, b))

    def floordiv(self, a: SSAValue, b: int) -> SSAValue:
        if b == 1:
            return a
        known = value_bounds(a)
        if known is not None and 0 <= known[0] and known[1] < b:
            return self.index(0)
        return self.val(arith.DivUIOp(a, self.index(b)))

    def rem(self, a: SSAValue, b: int) -> SSAValue:
        if b == 1:
            return self.index(0)
        known = value_bounds(a)
        if known is not None and 0 <= known[0] and known[1] < b:
            return a
        return self.val(arith.RemUIOp(a, self.index(b)))

    def xor(self, a: SSAValue, b: SSAValue | int) -> SSAValue:
        return self.val(arith.XOrIOp(a, self._as_index(b)))

    def min(self, a: SSAValue, b: SSAValue | int) -> SSAValue:
        return self.val(arith.MinSIOp(a, self._as_index(b)))

    def max(self, a: SSAValue, b: SSAValue | int) -> SSAValue:
        return self.val(arith.MaxSIOp(a, self._as_index(b)))

    def _as_index(self, v: SSAValue | int) -> SSAValue:
        return self.index(v) if isinstance(v, int) else v

    # -- conditions ----------------------------------------------------------------------
    def cmpi(self, pred: str, a: SSAValue, b: SSAValue | int) -> SSAValue:
        return self.val(arith.CmpiOp(a, self._as_index(b), pred))

    def all_of(self, conds: Sequence[SSAValue]) -> SSAValue | None:
        result = None
        for c in conds:
            result = c if result is None else self.val(arith.AndIOp(result, c))
        return result

    def in_range(self, v: SSAValue, lo: int, hi: int) -> list[SSAValue]:
        """Conditions for lo <= v < hi (signed), omitting what value_bounds proves."""
        known = value_bounds(v)
        if known is not None and known[0] == known[1]:
            return [] if lo <= known[0] < hi else [self.bool(False)]
        conds = []
        if known is None or known[0] < lo:
            conds.append(self.cmpi("sge", v, lo))
        if known is None or known[1] >= hi:
            conds.append(self.cmpi("slt", v, hi))
        return conds

    # -- memory and floats ---------------------------------------------------------------
    def load(self, ref: SSAValue, idx: Sequence[SSAValue]) -> SSAValue:
        return self.val(memref.LoadOp.get(ref, list(idx)))

    def store(self, v: SSAValue, ref: SSAValue, idx: Sequence[SSAValue]) -> Operation:
        return self.op(memref.StoreOp.get(v, ref, list(idx)))

    def load_value(self, ref: SSAValue, idx: Sequence[SSAValue]) -> SSAValue:
        """ref[idx] as a value to compute with: an f16/bf16 element extended to f32."""
        v = self.load(ref, idx)
        return self.val(arith.ExtFOp(v, f32)) if is_half(v.type) else v

    def rounded(self, v: SSAValue, elem) -> SSAValue:
        """An f32 value rounded to f16/bf16 `elem` and extended back (as storing it in such a
        buffer and loading it would give); v itself for other types."""
        if not is_half(elem) or v.type == elem:
            return v
        return self.val(arith.ExtFOp(self.val(arith.TruncFOp(v, elem)), f32))

    def store_value(self, v: SSAValue, ref: SSAValue, idx: Sequence[SSAValue]) -> Operation:
        """Stores a computed value, rounded to the buffer's element type (f16/bf16)."""
        elem = ref.type.element_type
        if is_half(elem) and v.type != elem:
            v = self.val(arith.TruncFOp(v, elem))
        return self.store(v, ref, idx)

    def vload(self, ref: SSAValue, idx: Sequence[SSAValue], width: int) -> SSAValue:
        """`width` consecutive elements along the last dimension, as one vector."""
        return self.val(vector.LoadOp(ref, list(idx), VectorType(f32, [width])))

    def extract(self, v: SSAValue, position: int) -> SSAValue:
        return self.val(vector.ExtractOp(v, [position], f32))

    def vstore(self, v: SSAValue, ref: SSAValue, idx: Sequence[SSAValue]) -> Operation:
        return self.op(vector.StoreOp(v, ref, list(idx)))

    def fbin(self, fn: str, a: SSAValue, b: SSAValue) -> SSAValue:
        ops = {"add": arith.AddfOp, "sub": arith.SubfOp, "mul": arith.MulfOp, "div": arith.DivfOp,
               "max": arith.MaximumfOp, "min": arith.MinimumfOp}
        return self.val(ops[fn](a, b))

    def combine(self, fn: str, a: SSAValue, b: SSAValue) -> SSAValue:
        """fn ("add", "max", ...) of two f32 or two i32 values."""
        if isinstance(a.type, Float32Type):
            return self.fbin(fn, a, b)
        ops = {"add": arith.AddiOp, "sub": arith.SubiOp, "max": arith.MaxSIOp, "min": arith.MinSIOp}
        return self.val(ops[fn](a, b))

    def cmpf(self, pred: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.val(arith.CmpfOp(a, b, pred))

    def to_index(self, v: SSAValue) -> SSAValue:
        return self.val(arith.IndexCastOp(v, INDEX))

    def to_i32(self, v: SSAValue) -> SSAValue:
        return self.val(arith.IndexCastOp(v, i32))

    def exp(self, a: SSAValue) -> SSAValue:
        return self.val(math.ExpOp(a))

    def tanh(self, a: SSAValue) -> SSAValue:
        return self.val(math.TanhOp(a))

    def neg(self, a: SSAValue) -> SSAValue:
        return self.val(arith.NegfOp(a))

    def math(self, fn: str, *args: SSAValue) -> SSAValue:
        """A float function of the math dialect by name (MATH_FNS: log, sqrt, abs, erf, ...)."""
        return self.val(MATH_FNS[fn](*args))

    def index_to_f32(self, v: SSAValue) -> SSAValue:
        return self.val(arith.SIToFPOp(self.to_i32(v), f32))

    def f32_to_index(self, v: SSAValue) -> SSAValue:
        """An f32 value truncated toward zero, as an index."""
        return self.to_index(self.val(arith.FPToSIOp(v, i32)))

    def select(self, c: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.val(arith.SelectOp(c, a, b))

    def alloca(self, shape: Sequence[int], space: Attribute, attrs: dict[str, Attribute] | None = None,
               element: Attribute = f32) -> SSAValue:
        op = memref.AllocaOp.get(element, shape=list(shape), memory_space=space)
        op.attributes.update(attrs or {})
        return self.val(op)

    # -- structure -----------------------------------------------------------------------
    def loop(self, extent: int | SSAValue, attrs: dict[str, Attribute] | None = None,
             start: int | SSAValue = 0, step: int | SSAValue = 1) -> tuple[scf.ForOp, SSAValue, Emitter]:
        """A scf.for from start to extent by step; returns it, its induction variable and an
        emitter for its body."""
        lb, ub, st = (self._as_index(v) for v in (start, extent, step))
        body = Block(arg_types=[INDEX])
        yield_op = scf.YieldOp()
        body.add_op(yield_op)
        loop = scf.ForOp(lb, ub, st, [], body)
        loop.attributes.update(attrs or {})
        self.op(loop)
        return loop, body.args[0], Emitter(body, yield_op)

    def if_(self, cond: SSAValue) -> Emitter:
        """A scf.if without results; returns an emitter for its then-block."""
        then = Block()
        y = scf.YieldOp()
        then.add_op(y)
        self.op(scf.IfOp(cond, [], Region(then), Region(Block([scf.YieldOp()]))))
        return Emitter(then, y)

    def if_value(self, cond: SSAValue, then_fn: Callable[[Emitter], SSAValue],
                 else_fn: Callable[[Emitter], SSAValue]) -> SSAValue:
        """cond ? then_fn() : else_fn(), each side computed only when taken."""
        blocks = []
        for fn in (then_fn, else_fn):
            b = Block()
            y = scf.YieldOp()
            b.add_op(y)
            v = fn(Emitter(b, y))
            y.operands = [v]
            blocks.append(b)
        result = blocks[0].last_op.operands[0].type
        return self.val(scf.IfOp(cond, [result], Region(blocks[0]), Region(blocks[1])))


def memref_shape(v: SSAValue) -> tuple[int, ...]:
    assert isinstance(v.type, MemRefType)
    return tuple(v.type.get_shape())
