"""tensorop-to-loops: each operator becomes named scf.for nests over memrefs.

The function takes its inputs and then its outputs as memrefs (destination passing);
intermediate results get a `memref.alloc`. Every loop carries `sched.stage` and
`sched.axis`, reduction loops also `sched.reduce`. A nest is perfect: all work sits in the
innermost body, which refers only to the loop variables, the memrefs, and values it
defines itself, so `apply-schedule` can move it anywhere.

A reduction body reads the output, and on the first reduction iteration (all reduction
variables 0) replaces the read value with the reduction's initial value. That select is
tagged `sched.init`, so `apply-schedule` can hoist the initialisation; the nest as written
is correct in any loop order.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import (
    ArrayAttr,
    FunctionType,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    TensorType,
    UnitAttr,
    f32,
    i32,
)
from xdsl.ir import Block, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.diagnostics import where
from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.emit import Emitter, is_half
from sched_dsl.lowering.level import require_operator_level
from sched_dsl.lowering.pool_scatter import SCATTER, scatter_spec, window_count

NEG_INF = float("-inf")


def memref_of(t: TensorType) -> MemRefType:
    return MemRefType(t.element_type, t.get_shape())


@dataclass
class NestBuilder:
    """Emits one stage's loop nest into a function body."""

    em: Emitter
    stage: str

    def build(self, spatial: Sequence[tuple[str, int]], reduce: Sequence[tuple[str, int]],
              body: Callable[[Emitter, dict[str, SSAValue]], None], sequential: Sequence[str] = (),
              compute: str | None = None) -> None:
        em, ivs = self.em, {}
        # sequential loops go outermost: their iterations run in order, each after the last
        loops = [*spatial, *reduce]
        loops = [lp for lp in loops if lp[0] in sequential] + [lp for lp in loops if lp[0] not in sequential]
        for k, (name, extent) in enumerate(loops):
            attrs = {"sched.stage": StringAttr(self.stage), "sched.axis": StringAttr(name)}
            if compute is not None and k == 0:  # the operator's compute mode (tf32), for tensorize
                attrs["sched.compute"] = StringAttr(compute)
            if (name, extent) in reduce:
                attrs["sched.reduce"] = UnitAttr()
            if name in sequential:
                attrs["sched.sequential"] = UnitAttr()
            _, ivs[name], em = em.loop(extent, attrs)
            ivs[name].name_hint = name
        body(em, ivs)


Epilogue = Callable[[Emitter, SSAValue, list[SSAValue]], SSAValue]


def accumulate(em: Emitter, ivs: dict[str, SSAValue], reduce: Sequence[str], out: SSAValue,
               idx: Sequence[SSAValue], combine: str, init: float, value: SSAValue,
               extents: Sequence[int] = (), epilogue: Epilogue | None = None) -> None:
    """out[idx] = combine(first ? init : out[idx], value), in f32 or i32 as `value` is (an
    f16/bf16 output is read extended to f32 and written rounded; apply-schedule keeps such an
    accumulation in an f32 register, so it is rounded once); with a
    fused epilogue, the last reduction iteration (every reduction variable at extent - 1, which
    comes last in any loop order) stores epilogue(accumulated value) instead."""
    first = em.all_of([em.cmpi("eq", ivs[r], 0) for r in reduce])
    old = em.load_value(out, idx)
    select = em.select(first, em.const(init, value.type), old)
    select.owner.attributes["sched.init"] = UnitAttr()
    new = em.combine(combine, select, value)
    if epilogue is not None:
        last = em.all_of([em.cmpi("eq", ivs[r], n - 1) for r, n in zip(reduce, extents)])
        new = em.if_value(last, lambda e: epilogue(e, new, list(idx)), lambda e: new)
        # apply-schedule moves this into the write-back when the output has a register accumulator
        new.owner.attributes["sched.epilogue"] = UnitAttr()
    em.store_value(new, out, idx)


def coefficient(em: Emitter, matrix, row: SSAValue, col: int) -> SSAValue:
    """matrix[row][col] for a row index known only at run time: a chain of selects on it."""
    rows = [float(r[col]) for r in matrix]
    v = em.f32(rows[-1])
    for k in range(len(rows) - 2, -1, -1):
        v = em.select(em.cmpi("eq", row, k), em.f32(rows[k]), v)
    return v


def transformed(em: Emitter, matrix, row: SSAValue, col: SSAValue, n: int,
                load: Callable[[int, int], SSAValue]) -> SSAValue:
    """(M D M^T)[row, col] = sum over i < n of M[row][i] (sum over j < n of M[col][j] D[i, j]),
    D[i, j] = load(i, j): one pass along each dimension, n (n + 1) products and 2 n
    coefficients chosen, not 2 n^2 of each."""
    col_coefficients = [coefficient(em, matrix, col, j) for j in range(n)]

    def total(terms):
        return functools.reduce(lambda u, t: em.fbin("add", u, t), terms)

    rows = [total([em.fbin("mul", c, load(i, j)) for j, c in enumerate(col_coefficients)]) for i in range(n)]
    return total([em.fbin("mul", coefficient(em, matrix, row, i), r) for i, r in enumerate(rows)])


def padded_load(em: Emitter, ref: SSAValue, idx: Sequence[SSAValue], guard: Sequence[SSAValue],
                fill: float) -> SSAValue:
    """ref[idx] where all guard conditions hold, else fill."""
    cond = em.all_of(guard)
    if cond is None:
        return em.load_value(ref, idx)
    return em.if_value(cond, lambda e: e.load_value(ref, idx), lambda e: e.f32(fill))


def apply_unary(em: Emitter, op: T.UnaryOp, x: SSAValue) -> SSAValue:
    fn, p = op.fn.data, op.params()
    f = em.f32

    def mul(a, b):
        return em.fbin("mul", a, b)

    def add(a, b):
        return em.fbin("add", a, b)

    def below(v, bound):  # v < bound (false for NaN, so NaN takes the other branch)
        return em.cmpf("olt", v, f(bound))

    if fn == "relu":
        return em.fbin("max", x, f(0.0))
    if fn in ("relu6", "clip"):
        return em.fbin("min", em.fbin("max", x, f(p["lo"])), f(p["hi"]))
    if fn == "sigmoid":
        one = f(1.0)
        return em.fbin("div", one, add(one, em.exp(em.neg(x))))
    if fn == "tanh":
        return em.tanh(x)
    if fn == "exp":
        return em.exp(x)
    if fn == "neg":
        return em.neg(x)
    if fn in ("abs", "sqrt", "floor", "ceil", "erf", "log"):
        return em.math(fn, x)
    if fn == "reciprocal":
        return em.fbin("div", f(1.0), x)
    if fn == "sign":
        neg_or_x = em.select(below(x, 0.0), f(-1.0), x)  # x keeps 0 and NaN
        return em.select(em.cmpf("ogt", x, f(0.0)), f(1.0), neg_or_x)
    if fn == "softplus":  # log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)), without overflow
        return add(em.fbin("max", x, f(0.0)), em.math("log", add(f(1.0), em.exp(em.neg(em.math("abs", x))))))
    if fn == "softsign":
        return em.fbin("div", x, add(f(1.0), em.math("abs", x)))
    if fn == "leaky_relu":
        return em.select(below(x, 0.0), mul(x, f(p["alpha"])), x)
    if fn == "elu":
        return em.select(below(x, 0.0), mul(f(p["alpha"]), em.fbin("sub", em.exp(x), f(1.0))), x)
    if fn == "selu":
        neg = mul(f(p["alpha"]), em.fbin("sub", em.exp(x), f(1.0)))
        return mul(f(p["beta"]), em.select(em.cmpf("ole", x, f(0.0)), neg, x))
    if fn in ("hard_sigmoid", "hard_swish"):
        alpha, beta = (p["alpha"], p["beta"]) if fn == "hard_sigmoid" else (1 / 6, 0.5)
        hs = em.fbin("min", em.fbin("max", add(mul(x, f(alpha)), f(beta)), f(0.0)), f(1.0))
        return hs if fn == "hard_sigmoid" else mul(x, hs)
    if fn == "gelu":  # x * (1 + erf(x / sqrt 2)) / 2
        return mul(mul(x, f(0.5)), add(f(1.0), em.math("erf", mul(x, f(0.7071067811865476)))))
    if fn == "gelu_tanh":  # x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))) / 2
        inner = mul(f(0.7978845608028654), add(x, mul(f(0.044715), mul(x, mul(x, x)))))
        return mul(mul(x, f(0.5)), add(f(1.0), em.tanh(inner)))
    assert fn == "shrink", fn
    lambd, bias = p["alpha"], p["beta"]
    above = em.select(em.cmpf("ogt", x, f(lambd)), em.fbin("sub", x, f(bias)), f(0.0))
    return em.select(below(x, -lambd), add(x, f(bias)), above)


def apply_binary(em: Emitter, fn: str, a: SSAValue, b: SSAValue) -> SSAValue:
    if fn == "pow":
        return em.math("pow", a, b)
    if fn == "prelu":
        return em.select(em.cmpf("olt", a, em.f32(0.0)), em.fbin("mul", a, b), a)
    return em.fbin(fn, a, b)


def dims(shape: Sequence[int], prefix: str = "d") -> list[tuple[str, int]]:
    return [(f"{prefix}{k}", n) for k, n in enumerate(shape)]


def broadcast_index(ivs: list[SSAValue], shape: Sequence[int], em: Emitter) -> list[SSAValue]:
    """Indices into an operand of `shape` broadcast against loops `ivs` (numpy rules)."""
    lead = len(ivs) - len(shape)
    return [em.index(0) if n == 1 else ivs[lead + k] for k, n in enumerate(shape)]


class OpLowering:
    """Lowers one tensorop op, given memrefs for its operands and its result."""

    def __init__(self, em: Emitter, op: T.TensorOp, args: list[SSAValue], out: SSAValue,
                 epilogue: Epilogue | None = None):
        self.em, self.op, self.args, self.out = em, op, args, out
        self.stage = op.stage_name
        self.epilogue = epilogue

    def finish(self, em: Emitter, v: SSAValue, idx: list[SSAValue]) -> SSAValue:
        """The value an elementwise nest stores: v, or the fused epilogue of v."""
        return v if self.epilogue is None else self.epilogue(em, v, idx)

    def acc(self, em, iv, reduce, idx, combine, init, v) -> None:
        extents = [n for _, n in reduce]
        accumulate(em, iv, [r for r, _ in reduce], self.out, idx, combine, init, v, extents, self.epilogue)

    def nest(self, stage: str, spatial, reduce, body, sequential=()) -> None:
        compute = self.op.compute_mode() if isinstance(self.op, T.ProductOp) and stage == self.stage else None
        NestBuilder(self.em, stage).build(spatial, reduce, body, sequential, compute)

    def alloc(self, name: str, shape: Sequence[int], element=i32) -> SSAValue:
        buf = self.em.val(memref.AllocOp.get(element, shape=list(shape)))
        buf.name_hint = name
        return buf

    def run(self) -> None:
        getattr(self, "lower_" + self.op.name.split(".")[1])()

    def lower_matmul(self) -> None:
        """Loops b0, b1, ... over the batch dimensions (if any), then i, j and reduction k."""
        out = T.shape_of(self.op.result)
        batch, (m, n), k = out[:-2], out[-2:], T.shape_of(self.op.lhs)[-1]
        a, b = self.args
        bdims = dims(batch, "b")

        def body(em, iv):
            bi = [iv[name] for name, _ in bdims]
            ia = broadcast_index(bi, T.shape_of(self.op.lhs)[:-2], em) + [iv["i"], iv["k"]]
            ib = broadcast_index(bi, T.shape_of(self.op.rhs)[:-2], em) + [iv["k"], iv["j"]]
            v = em.fbin("mul", em.load_value(a, ia), em.load_value(b, ib))
            self.acc(em, iv, [("k", k)], [*bi, iv["i"], iv["j"]], "add", 0.0, v)

        self.nest(self.stage, [*bdims, ("i", m), ("j", n)], [("k", k)], body)

    def lower_conv2d(self) -> None:
        """Loops n, f, y, x and reductions rc, ry, rx in either layout; an NHWC conv reads and
        writes its tensors at [n, y, x, channel]."""
        op = self.op
        x, w = self.args
        n, f, oh, ow = op.nchw_result_shape()
        _, c, h, wd = op.nchw_input_shape()
        nhwc = op.data_layout() == "NHWC"
        _, cg, kh, kw = T.shape_of(op.weight)
        sh, sw = op.stride.get_values()
        pt, pl, _, _ = op.padding.get_values()
        dh, dw = op.dilation.get_values()
        fg = f // op.groups.value.data

        def body(em, iv):
            # channel of the input = group of the filter * channels per group + rc
            chan = iv["rc"] if fg == f else em.add(em.mul(em.floordiv(iv["f"], fg), cg), iv["rc"])
            iy = em.sub(em.add(em.mul(iv["y"], sh), em.mul(iv["ry"], dh)), pt)
            ix = em.sub(em.add(em.mul(iv["x"], sw), em.mul(iv["rx"], dw)), pl)
            guard = [*em.in_range(iy, 0, h), *em.in_range(ix, 0, wd)] if max(op.padding.get_values()) else []
            xv = padded_load(em, x, [iv["n"], iy, ix, chan] if nhwc else [iv["n"], chan, iy, ix], guard, 0.0)
            v = em.fbin("mul", xv, em.load_value(w, [iv["f"], iv["rc"], iv["ry"], iv["rx"]]))
            self.acc(em, iv, [("rc", cg), ("ry", kh), ("rx", kw)], [iv[a] for a in ("nyxf" if nhwc else "nfyx")],
                     "add", 0.0, v)

        self.nest(self.stage, [("n", n), ("f", f), ("y", oh), ("x", ow)],
                  [("rc", cg), ("ry", kh), ("rx", kw)], body)

    def lower_pool2d(self) -> None:
        """Loops n, c, y, x and reductions ry, rx in either layout (NHWC: tensors at [n, y, x, c])."""
        op = self.op
        (x,) = self.args
        n, c, oh, ow = op.nchw_result_shape()
        h, wd = op.nchw_input_shape()[2:]
        order = "nyxc" if op.data_layout() == "NHWC" else "ncyx"
        kh, kw = op.kernel.get_values()
        sh, sw = op.stride.get_values()
        dh, dw = op.dilations()
        pt, pl, pb, pr = op.padding.get_values()
        is_max = op.kind.data == "max"

        # a ceil_mode window may reach past the padding: those taps are guarded too
        overhang = op.is_ceil_mode() and ((oh - 1) * sh + (kh - 1) * dh >= h + pt or
                                          (ow - 1) * sw + (kw - 1) * dw >= wd + pl)

        def body(em, iv):
            iy = em.sub(em.add(em.mul(iv["y"], sh), em.mul(iv["ry"], dh)), pt)
            ix = em.sub(em.add(em.mul(iv["x"], sw), em.mul(iv["rx"], dw)), pl)
            guarded = max(op.padding.get_values()) or overhang
            guard = [*em.in_range(iy, 0, h), *em.in_range(ix, 0, wd)] if guarded else []
            fill = NEG_INF if is_max else 0.0
            at = {"n": iv["n"], "c": iv["c"], "y": iy, "x": ix}
            v = padded_load(em, x, [at[a] for a in order], guard, fill)
            if not is_max:
                count = em.mul(window_count(em, iv["y"], sh, pt, kh, h, pb, op.includes_pad()),
                               window_count(em, iv["x"], sw, pl, kw, wd, pr, op.includes_pad()))
                v = em.fbin("div", v, em.index_to_f32(count))
            idx = [iv[a] for a in order]
            self.acc(em, iv, [("ry", kh), ("rx", kw)], idx, "max" if is_max else "add",
                     NEG_INF if is_max else 0.0, v)

        self.nest(self.stage, [("n", n), ("c", c), ("y", oh), ("x", ow)], [("ry", kh), ("rx", kw)], body)

    def lower_unary(self) -> None:
        (x,) = self.args
        shape = T.shape_of(self.op.result)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            em.store_value(self.finish(em, apply_unary(em, self.op, em.load_value(x, idx)), idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_binary(self) -> None:
        a, b = self.args
        shape = T.shape_of(self.op.result)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            va = em.load_value(a, broadcast_index(idx, T.shape_of(self.op.lhs), em))
            vb = em.load_value(b, broadcast_index(idx, T.shape_of(self.op.rhs), em))
            em.store_value(self.finish(em, apply_binary(em, self.op.fn.data, va, vb), idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_bias_add(self) -> None:
        x, b = self.args
        shape = T.shape_of(self.op.result)
        axis = self.op.axis.value.data % len(shape)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            em.store_value(self.finish(em, em.fbin("add", em.load_value(x, idx), em.load_value(b, [idx[axis]])), idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def reduction(self, stage: str, x: SSAValue, out: SSAValue, in_shape: Sequence[int],
                  axes: Sequence[int], keepdims: bool, combine: str, init: float,
                  value: Callable[[Emitter, SSAValue, list[SSAValue]], SSAValue],
                  epilogue: Epilogue | None = None) -> None:
        """out = combine over `axes` of value(x[...]), with `epilogue` fused into the last
        accumulation; loops d<k> over out, r<k> over axes."""
        out_shape = T.reduce_shape(in_shape, axes, keepdims)
        red = [(f"r{k}", in_shape[a]) for k, a in enumerate(axes)]

        def body(em, iv):
            out_idx = [iv[f"d{k}"] for k in range(len(out_shape))]
            kept = iter([iv[f"d{k}"] for k, d in enumerate(out_shape)])
            rs = iter([iv[name] for name, _ in red])
            in_idx = []
            for a in range(len(in_shape)):
                if a in axes:
                    in_idx.append(next(rs))
                    if keepdims:
                        next(kept)
                else:
                    in_idx.append(next(kept))
            v = value(em, em.load_value(x, in_idx), out_idx)
            accumulate(em, iv, [name for name, _ in red], out, out_idx, combine, init, v,
                       [n for _, n in red], epilogue)

        self.nest(stage, dims(out_shape), red, body)

    def lower_reduce(self) -> None:
        op = self.op
        (x,) = self.args
        shape = T.shape_of(op.input)
        axes = op.reduced_axes()
        fn = op.fn.data
        count = 1
        for a in axes:
            count *= shape[a]

        def value(em, v, _):
            return em.fbin("mul", v, em.f32(1.0 / count)) if fn == "mean" else v

        self.reduction(self.stage, x, self.out, shape, axes, bool(op.keepdims.value.data),
                       "max" if fn == "max" else "add", NEG_INF if fn == "max" else 0.0, value, self.epilogue)

    def lower_softmax(self) -> None:
        (x,) = self.args
        shape = T.shape_of(self.op.input)
        axis = self.op.softmax_axis()
        red_shape = T.reduce_shape(shape, [axis], False)
        mx = self.alloc(f"{self.stage}.max", red_shape, f32)
        sm = self.alloc(f"{self.stage}.sum", red_shape, f32)
        self.reduction(f"{self.stage}.max", x, mx, shape, [axis], False, "max", NEG_INF, lambda em, v, _: v)
        self.reduction(f"{self.stage}.sum", x, sm, shape, [axis], False, "add", 0.0,
                       lambda em, v, oi: em.exp(em.fbin("sub", v, em.load_value(mx, oi))))

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            red_idx = [v for k, v in enumerate(idx) if k != axis]
            shifted = em.fbin("sub", em.load_value(x, idx), em.load_value(mx, red_idx))
            if self.op.is_log():
                y = em.fbin("sub", shifted, em.math("log", em.load_value(sm, red_idx)))
            else:
                y = em.fbin("div", em.exp(shifted), em.load_value(sm, red_idx))
            em.store_value(self.finish(em, y, idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_normalize(self) -> None:
        (x,) = self.args
        shape = T.shape_of(self.op.input)
        axes = self.op.reduced_axes()
        red_shape = T.reduce_shape(shape, axes, False)
        inv_count = 1.0 / math.prod(shape[a] for a in axes)
        mean = self.alloc(f"{self.stage}.mean", red_shape, f32)
        var = self.alloc(f"{self.stage}.var", red_shape, f32)
        self.reduction(f"{self.stage}.mean", x, mean, shape, axes, False, "add", 0.0,
                       lambda em, v, _: em.fbin("mul", v, em.f32(inv_count)))

        def square_dev(em, v, oi):
            d = em.fbin("sub", v, em.load_value(mean, oi))
            return em.fbin("mul", em.fbin("mul", d, d), em.f32(inv_count))

        self.reduction(f"{self.stage}.var", x, var, shape, axes, False, "add", 0.0, square_dev)
        eps = float(self.op.epsilon.value.data)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            red_idx = [v for k, v in enumerate(idx) if k not in axes]
            d = em.fbin("sub", em.load_value(x, idx), em.load_value(mean, red_idx))
            den = em.math("sqrt", em.fbin("add", em.load_value(var, red_idx), em.f32(eps)))
            em.store_value(self.finish(em, em.fbin("div", d, den), idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    # ---- data movement, transposed convolution, resize ------------------------------------------

    def lower_remap(self) -> None:
        op = self.op
        (x,) = self.args
        out_shape, in_shape = T.shape_of(op.result), T.shape_of(op.input)
        mode = op.mode.data
        fields = list(zip(op.source.get_values(), op.step.get_values(), op.offset.get_values(), in_shape))

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(out_shape)]
            src, guard = [], []
            for s, st, off, n in fields:
                i = em.index(off) if s < 0 else em.add(em.mul(idx[s], st), off)
                if mode == "constant":
                    guard += em.in_range(i, 0, n)
                elif mode == "edge":
                    i = em.max(em.min(i, n - 1), 0)
                elif mode == "reflect" and n > 1:
                    i = em.select(em.cmpi("slt", i, 0), em.sub(em.index(0), i), i)
                    i = em.select(em.cmpi("sgt", i, n - 1), em.sub(em.index(2 * (n - 1)), i), i)
                elif mode == "wrap":
                    last = off if s < 0 else off + st * (out_shape[s] - 1)
                    lift = -(min(off, last) // n) * n if min(off, last) < 0 else 0
                    i = em.rem(em.add(i, lift), n)
                src.append(i)
            v = padded_load(em, x, src, guard, op.fill())
            em.store_value(self.finish(em, v, idx), self.out, idx)

        self.nest(self.stage, dims(out_shape), [], body)

    def lower_im2col(self) -> None:
        op = self.op
        (x,) = self.args
        rows, cols = T.shape_of(op.result)
        n_img, c, h, w = T.shape_of(op.input)
        (kh, kw), (sh, sw), (pt, pl, _, _), (dh, dw) = op.window()
        width = op.width.value.data
        _, _, oh, ow = T.conv2d_shape(T.shape_of(op.input), (1, c, kh, kw), (sh, sw), op.window()[2], (dh, dw), 1)

        def body(em, iv):
            k, p = iv["d0"], iv["d1"]
            ch, ry, rx = em.floordiv(k, kh * kw), em.rem(em.floordiv(k, kw), kh), em.rem(k, kw)
            b, y, xx = em.floordiv(p, oh * width), em.rem(em.floordiv(p, width), oh), em.rem(p, width)
            iy = em.add(em.mul(y, sh), em.sub(em.mul(ry, dh), em.index(pt)))
            ix = em.add(em.mul(xx, sw), em.sub(em.mul(rx, dw), em.index(pl)))
            guard = em.in_range(iy, 0, h) + em.in_range(ix, 0, w)
            if rows > c * kh * kw:
                guard += em.in_range(k, 0, c * kh * kw)
            if width > ow:
                guard += em.in_range(xx, 0, ow)
            if cols > n_img * oh * width:
                guard += em.in_range(p, 0, n_img * oh * width)
            v = padded_load(em, x, [b, ch, iy, ix], guard, 0.0)
            em.store_value(self.finish(em, v, [k, p]), self.out, [k, p])

        self.nest(self.stage, [("d0", rows), ("d1", cols)], [], body)

    # ---- Winograd's transforms (T.WINOGRAD): sums of input tile elements times constants that
    # depend on the output's place in its tile, chosen by a compare-and-select on it (constant
    # once the schedule unrolls that place)

    def lower_winograd_input(self) -> None:
        op = self.op
        (x,) = self.args
        tile, (pt, pl, _, _) = op.tile_size(), op.padding.get_values()
        a, bt = tile + 2, T.WINOGRAD[tile][0]
        _, _, h, w = T.shape_of(op.input)
        th, tw = T.winograd_input_tiles(T.shape_of(op.input), tile, op.padding.get_values())

        def body(em, iv):
            xi, nu = em.floordiv(iv["d0"], a), em.rem(iv["d0"], a)
            p = iv["d2"]
            b, ty, tx = em.floordiv(p, th * tw), em.rem(em.floordiv(p, tw), th), em.rem(p, tw)
            y0, x0 = em.sub(em.mul(ty, tile), em.index(pt)), em.sub(em.mul(tx, tile), em.index(pl))

            def load(i, j):
                iy, ix = em.add(y0, em.index(i)), em.add(x0, em.index(j))
                return padded_load(em, x, [b, iv["d1"], iy, ix], em.in_range(iy, 0, h) + em.in_range(ix, 0, w), 0.0)

            idx = [iv["d0"], iv["d1"], p]
            em.store_value(self.finish(em, transformed(em, bt, xi, nu, a, load), idx), self.out, idx)

        self.nest(self.stage, dims(T.shape_of(op.result)), [], body)

    def lower_winograd_weights(self) -> None:
        op = self.op
        (w,) = self.args
        a, g = op.tile_size() + 2, T.WINOGRAD[op.tile_size()][1]

        def body(em, iv):
            xi, nu = em.floordiv(iv["d0"], a), em.rem(iv["d0"], a)
            v = transformed(em, g, xi, nu, 3,
                            lambda i, j: em.load_value(w, [iv["d1"], iv["d2"], em.index(i), em.index(j)]))
            idx = [iv["d0"], iv["d1"], iv["d2"]]
            em.store_value(self.finish(em, v, idx), self.out, idx)

        self.nest(self.stage, dims(T.shape_of(op.result)), [], body)

    def lower_winograd_output(self) -> None:
        op = self.op
        (m,) = self.args
        tile = op.tile_size()
        a, at = tile + 2, T.WINOGRAD[tile][2]
        shape = T.shape_of(op.result)
        th, tw = T.winograd_tiles(shape[2:], tile)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            b, f, y, xx = idx
            r, c = em.rem(y, tile), em.rem(xx, tile)
            p = em.add(em.mul(em.add(em.mul(b, th), em.floordiv(y, tile)), tw), em.floordiv(xx, tile))
            v = transformed(em, at, r, c, a, lambda xi, nu: em.load_value(m, [em.index(xi * a + nu), f, p]))
            em.store_value(self.finish(em, v, idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_gather(self) -> None:
        x, indices = self.args
        shape, axis = T.shape_of(self.op.result), self.op.gather_axis()
        n = T.shape_of(self.op.input)[axis]
        k = len(T.shape_of(self.op.indices))

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            i = em.to_index(em.load(indices, idx[axis:axis + k]))
            i = em.select(em.cmpi("slt", i, 0), em.add(i, n), i)
            i = em.max(em.min(i, n - 1), 0)
            em.store_value(self.finish(em, em.load_value(x, [*idx[:axis], i, *idx[axis + k:]]), idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_conv_transpose2d(self) -> None:
        op = self.op
        x, w = self.args
        n, f, oh, ow = T.shape_of(op.result)
        c, h, wd = T.shape_of(op.input)[1:]
        fg, kh, kw = T.shape_of(op.weight)[1:]
        cg = c // op.groups.value.data
        sh, sw = op.stride.get_values()
        pt, pl, _, _ = op.padding.get_values()
        dh, dw = op.dilation.get_values()

        def source(em, o, r, s, p, d, k, size):
            """(input position, conditions): o = i * s - p + r * d, so i = (o + p - r * d) / s
            where that divides and lies in the input. A multiple of s added keeps it >= 0."""
            lift = -(-(d * (k - 1)) // s) * s
            num = em.sub(em.add(o, p + lift), em.mul(r, d))
            i = em.sub(em.floordiv(num, s), lift // s)
            conds = em.in_range(i, 0, size)
            if s > 1:
                conds.append(em.cmpi("eq", em.rem(num, s), 0))
            return i, conds

        def body(em, iv):
            iy, cy = source(em, iv["y"], iv["ry"], sh, pt, dh, kh, h)
            ix, cx = source(em, iv["x"], iv["rx"], sw, pl, dw, kw, wd)
            chan = iv["rc"] if cg == c else em.add(em.mul(em.floordiv(iv["f"], fg), cg), iv["rc"])
            wf = iv["f"] if fg == f else em.rem(iv["f"], fg)
            xv = padded_load(em, x, [iv["n"], chan, iy, ix], [*cy, *cx], 0.0)
            v = em.fbin("mul", xv, em.load_value(w, [chan, wf, iv["ry"], iv["rx"]]))
            self.acc(em, iv, [("rc", cg), ("ry", kh), ("rx", kw)], [iv[a] for a in "n f y x".split()], "add", 0.0, v)

        self.nest(self.stage, [("n", n), ("f", f), ("y", oh), ("x", ow)], [("rc", cg), ("ry", kh), ("rx", kw)],
                  body)

    def lower_resize(self) -> None:
        op = self.op
        (x,) = self.args
        out_shape, in_shape = T.shape_of(op.result), T.shape_of(op.input)
        scales = op.scale_values()
        mode, coord, rounding = op.mode.data, op.coordinate.data, op.rounding.data

        def original(em, o, n, m, s):
            """The input coordinate (f32) of output coordinate o, as ONNX's coordinate modes say."""
            of = em.index_to_f32(o)
            if coord == "align_corners":
                return em.f32(0.0) if m == 1 else em.fbin("div", em.fbin("mul", of, em.f32(n - 1)), em.f32(m - 1))
            if coord == "asymmetric":
                return em.fbin("div", of, em.f32(s))
            centre = em.fbin("div", em.fbin("add", of, em.f32(0.5)), em.f32(s))
            if coord == "tf_half_pixel_for_nn":
                return centre
            if coord == "pytorch_half_pixel" and m == 1:
                return em.f32(0.0)
            return em.fbin("sub", centre, em.f32(0.5))

        def nearest(em, v, n):
            if rounding == "round_prefer_floor":  # ceil(v - 0.5): halves go down
                r = em.math("ceil", em.fbin("sub", v, em.f32(0.5)))
            elif rounding == "round_prefer_ceil":
                r = em.math("floor", em.fbin("add", v, em.f32(0.5)))
            else:
                r = em.math(rounding, v)
            r = em.fbin("min", em.fbin("max", r, em.f32(0.0)), em.f32(n - 1))
            return em.f32_to_index(r)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(out_shape)]
            # per dimension: a list of (input index, weight or None)
            taps = []
            for d, (o, n, m, s) in enumerate(zip(idx, in_shape, out_shape, scales)):
                if n == m and s == 1.0:
                    taps.append([(o, None)])
                elif mode == "nearest":
                    taps.append([(nearest(em, original(em, o, n, m, s), n), None)])
                else:  # onnxruntime's linear: clamp, take the two neighbours, weight by distance
                    v = em.fbin("min", em.fbin("max", original(em, o, n, m, s), em.f32(0.0)), em.f32(n - 1))
                    i1 = em.min(em.f32_to_index(v), n - 1)
                    i2 = em.min(em.add(i1, 1), n - 1)
                    d1 = em.fbin("sub", v, em.index_to_f32(i1))  # the weight of i2
                    same = em.cmpi("eq", i1, i2)
                    w1 = em.select(same, em.f32(0.5), em.fbin("sub", em.f32(1.0), d1))
                    w2 = em.select(same, em.f32(0.5), d1)
                    taps.append([(i1, w1), (i2, w2)])
            total = None
            for corner in itertools.product(*taps):
                v = em.load_value(x, [i for i, _ in corner])
                for _, wt in corner:
                    if wt is not None:
                        v = em.fbin("mul", v, wt)
                total = v if total is None else em.fbin("add", total, v)
            em.store_value(self.finish(em, total, idx), self.out, idx)

        self.nest(self.stage, dims(out_shape), [], body)

    # ---- detection operators ----------------------------------------------------------------

    def scan(self, base: str, shape: Sequence[int], axis: int, exclusive: bool, reverse: bool,
             load: Callable[[Emitter, list[SSAValue]], SSAValue], out: SSAValue) -> None:
        """out = prefix sums along `axis` of load(idx), in ceil(log2 n) Hillis-Steele steps
        (at least one): step k adds the element 2^k places back (forward when `reverse`) to
        each element. Every step is an elementwise nest, so each runs fully parallel; the
        work is n log n rather than n, for log n launches instead of a sequential loop.
        Steps write buffers of their own (`<base>.step<k>`); the last one writes `out`."""
        n = shape[axis]
        steps = max(1, (n - 1).bit_length())
        # f16/bf16 scans add in f32: the steps' own buffers are f32, the last one rounds
        elem = f32 if is_half(out.type.element_type) else out.type.element_type

        def neighbour(em: Emitter, idx: list[SSAValue], offset: int, read) -> SSAValue:
            """read(idx moved `offset` places back along axis), or 0 past the end."""
            p = em.add(idx[axis], offset) if reverse else em.sub(idx[axis], offset)
            moved = [p if k == axis else v for k, v in enumerate(idx)]
            cond = em.cmpi("slt", p, n) if reverse else em.cmpi("sge", p, 0)
            return em.if_value(cond, lambda e: read(e, moved), lambda e: e.const(0, elem))

        def first(em: Emitter, idx: list[SSAValue]) -> SSAValue:
            # the exclusive scan is the inclusive scan of the input moved one place
            return neighbour(em, idx, 1, load) if exclusive else load(em, idx)

        src = None
        for k in range(steps):
            dst = out if k == steps - 1 else self.alloc(f"{base}.step{k}", shape, elem)

            def body(em, iv, src=src, dst=dst, offset=1 << k):
                idx = [iv[name] for name, _ in dims(shape)]
                read = first if src is None else (lambda e, i, src=src: e.load_value(src, i))
                em.store_value(em.combine("add", read(em, idx), neighbour(em, idx, offset, read)), dst, idx)

            self.nest(base if dst is out else f"{base}.step{k}", dims(shape), [], body)
            src = dst

    def rank(self, stage: str, x: SSAValue, shape: Sequence[int], axis: int, descending: bool,
             out: SSAValue) -> None:
        """out[.., i, ..] = how many elements of x's row come before element i in the stable
        order: larger (smaller) values first, equal values by index. A reduction over j
        (loops d0, ..., reduction j), so every element's rank is computed in parallel."""

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            other = [iv["j"] if k == axis else v for k, v in enumerate(idx)]
            xi, xj = em.load_value(x, idx), em.load_value(x, other)
            before = em.val(arith.OrIOp(em.cmpf("ogt" if descending else "olt", xj, xi), em.all_of(
                [em.cmpf("oeq", xj, xi), em.cmpi("slt", iv["j"], idx[axis])])))
            accumulate(em, iv, ["j"], out, idx, "add", 0, em.select(before, em.i32(1), em.i32(0)))

        self.nest(stage, dims(shape), [("j", shape[axis])], body)

    def scatter_ranks(self, stage: str, ranks: SSAValue, shape: Sequence[int], axis: int, out: SSAValue,
                      k: int | None = None) -> None:
        """out[.., rank[i], ..] = i (where rank[i] < k when k is given): ranks are a
        permutation, so every output element is written by exactly one iteration."""

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            r = em.load_value(ranks, idx)
            target = [em.to_index(r) if d == axis else v for d, v in enumerate(idx)]
            if k is not None:
                em = em.if_(em.val(arith.CmpiOp(r, em.i32(k), "slt")))
            em.store_value(em.to_i32(idx[axis]), out, target)

        self.nest(stage, dims(shape), [], body)

    def lower_scan(self) -> None:
        op = self.op
        (x,) = self.args
        self.scan(self.stage, T.shape_of(op.input), op.scan_axis(), bool(op.exclusive.value.data),
                  bool(op.reverse.value.data), lambda em, idx: em.load_value(x, idx), self.out)

    def lower_argsort(self) -> None:
        (x,) = self.args
        shape, axis = T.shape_of(self.op.input), self.op.sort_axis()
        ranks = self.alloc(f"{self.stage}.rank", shape)
        self.rank(f"{self.stage}.rank", x, shape, axis, bool(self.op.descending.value.data), ranks)
        self.scatter_ranks(self.stage, ranks, shape, axis, self.out)

    def lower_topk(self) -> None:
        (x,) = self.args
        shape, axis = T.shape_of(self.op.input), self.op.sort_axis()
        ranks = self.alloc(f"{self.stage}.rank", shape)
        self.rank(f"{self.stage}.rank", x, shape, axis, bool(self.op.largest.value.data), ranks)
        self.scatter_ranks(self.stage, ranks, shape, axis, self.out, self.op.k.value.data)

    def lower_take_along_axis(self) -> None:
        x, indices = self.args
        shape, axis = T.shape_of(self.op.result), self.op.gather_axis()

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            src = [em.to_index(em.load_value(indices, idx)) if d == axis else v for d, v in enumerate(idx)]
            em.store_value(em.load_value(x, src), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_nms(self) -> None:
        op = self.op
        boxes, scores = self.args
        n = T.shape_of(op.scores)[0]
        iou_threshold, score_threshold = op.thresholds()
        name = self.stage
        ranks, order = self.alloc(f"{name}.rank", [n]), self.alloc(f"{name}.order", [n])
        supp, pos = self.alloc(f"{name}.supp", [n]), self.alloc(f"{name}.pos", [n])

        # 1. the boxes by decreasing score, ties by index: order[t] is the box of rank t
        self.rank(f"{name}.rank", scores, [n], 0, True, ranks)
        self.scatter_ranks(f"{name}.order", ranks, [n], 0, order)

        def candidate(em: Emitter, box: SSAValue) -> SSAValue | None:
            """score > score_threshold (None: every box is a candidate)."""
            if score_threshold == NEG_INF:
                return None
            return em.cmpf("ogt", em.load_value(scores, [box]), em.f32(score_threshold))

        def suppresses(em: Emitter, a: SSAValue, b: SSAValue) -> SSAValue:
            """IoU(box a, box b) > iou_threshold, with onnxruntime's rules: corners in either
            order; no overlap, an empty box or an empty union never suppresses."""
            def side(box, lo, hi):
                p, q = em.load_value(boxes, [box, em.index(lo)]), em.load_value(boxes, [box, em.index(hi)])
                return em.fbin("min", p, q), em.fbin("max", p, q)
            (ay0, ay1), (ax0, ax1) = side(a, 0, 2), side(a, 1, 3)
            (by0, by1), (bx0, bx1) = side(b, 0, 2), side(b, 1, 3)
            ix0, ix1 = em.fbin("max", ax0, bx0), em.fbin("min", ax1, bx1)
            iy0, iy1 = em.fbin("max", ay0, by0), em.fbin("min", ay1, by1)
            inter = em.fbin("mul", em.fbin("sub", ix1, ix0), em.fbin("sub", iy1, iy0))
            area_a = em.fbin("mul", em.fbin("sub", ax1, ax0), em.fbin("sub", ay1, ay0))
            area_b = em.fbin("mul", em.fbin("sub", bx1, bx0), em.fbin("sub", by1, by0))
            union = em.fbin("sub", em.fbin("add", area_a, area_b), inter)
            zero = em.f32(0.0)
            return em.all_of([em.cmpf("ogt", ix1, ix0), em.cmpf("ogt", iy1, iy0), em.cmpf("ogt", inter, zero),
                              em.cmpf("ogt", area_a, zero), em.cmpf("ogt", area_b, zero),
                              em.cmpf("ogt", union, zero),
                              em.cmpf("ogt", em.fbin("div", inter, union), em.f32(iou_threshold))])

        # 2. the greedy pass over the sorted boxes: step s (in order) lets the box of rank s,
        # when it is a kept candidate, suppress every later box it overlaps (supp[r] = 1).
        # The steps run in order (loop `step` is sequential); within a step the later boxes
        # are independent, so loop `box` runs in parallel. IoUs are computed as needed
        # rather than kept in an N x N matrix, so memory stays O(N).
        def greedy(em, iv):
            s, r = iv["step"], iv["box"]
            bs = em.to_index(em.load_value(order, [s]))
            br = em.to_index(em.load_value(order, [r]))
            # supp[s] is final after steps 0..s-1 (and not yet written before step 0); the
            # thread of box s rewrites it in step s, with the value it already holds
            s_supp = em.if_value(em.cmpi("sgt", s, 0), lambda e: e.load_value(supp, [s]), lambda e: e.i32(0))
            pushes = em.all_of([c for c in (em.cmpi("slt", s, r), candidate(em, bs),
                                            em.val(arith.CmpiOp(s_supp, em.i32(0), "eq"))) if c is not None])
            hit = em.if_value(pushes, lambda e: e.select(suppresses(e, bs, br), e.i32(1), e.i32(0)),
                              lambda e: e.i32(0))
            accumulate(em, iv, ["step"], supp, [r], "max", 0, hit)

        self.nest(f"{name}.supp", [("box", n)], [("step", n)], greedy, sequential=["step"])

        def kept(em: Emitter, r: SSAValue) -> SSAValue:
            box = em.to_index(em.load_value(order, [r]))
            return em.all_of([c for c in (candidate(em, box), em.val(
                arith.CmpiOp(em.load_value(supp, [r]), em.i32(0), "eq"))) if c is not None])

        # 3. pos[r] = how many boxes before rank r are kept (an exclusive scan)
        self.scan(f"{name}.pos", [n], 0, True, False,
                  lambda em, idx: em.select(kept(em, idx[0]), em.i32(1), em.i32(0)), pos)

        # 4. out[m] = the box of the kept rank r with pos[r] == m, else -1
        def output(em, iv):
            m, r = iv["m"], iv["rank"]
            hit = em.all_of([kept(em, r), em.cmpi("eq", em.to_index(em.load_value(pos, [r])), m)])
            value = em.if_value(hit, lambda e: e.load_value(order, [r]), lambda e: e.i32(-1))
            accumulate(em, iv, ["rank"], self.out, [m], "max", -1, value)

        self.nest(name, [("m", op.max_output.value.data)], [("rank", n)], output)
    def lower_cast(self) -> None:
        (x,) = self.args
        shape = T.shape_of(self.op.result)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            v = em.load_value(x, idx)
            if self.epilogue is not None:  # the cast itself, before its epilogue (the store rounds otherwise)
                v = self.epilogue(em, em.rounded(v, self.op.result.type.element_type), idx)
            em.store_value(v, self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_reshape(self) -> None:
        (x,) = self.args
        out_shape, in_shape = T.shape_of(self.op.result), T.shape_of(self.op.input)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(out_shape)]
            flat = em.index(0)
            for v, n in zip(idx, out_shape):
                flat = em.add(em.mul(flat, n), v)
            src = []
            for n in reversed(in_shape):
                src.append(em.rem(flat, n))
                flat = em.floordiv(flat, n)
            em.store_value(self.finish(em, em.load_value(x, list(reversed(src))), idx), self.out, idx)

        self.nest(self.stage, dims(out_shape), [], body)

    def lower_slice(self) -> None:
        (x,) = self.args
        shape = T.shape_of(self.op.result)
        axis, start = self.op.slice_axis(), self.op.start.value.data

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            src = [em.add(v, start) if a == axis and start else v for a, v in enumerate(idx)]
            em.store(em.load(x, src), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_concat(self) -> None:
        shape = T.shape_of(self.op.result)
        axis = self.op.concat_axis()
        parts, start = [], 0
        for ref, v in zip(self.args, self.op.inputs):
            parts.append((ref, start, T.shape_of(v)[axis]))
            start += T.shape_of(v)[axis]

        def pick(em, idx, k):
            ref, lo, n = parts[k]
            src = [em.sub(v, lo) if a == axis and lo else v for a, v in enumerate(idx)]
            if k == len(parts) - 1:
                return em.load_value(ref, src)
            return em.if_value(em.cmpi("slt", idx[axis], lo + n), lambda e: e.load_value(ref, src),
                               lambda e: pick(e, idx, k + 1))

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            em.store_value(self.finish(em, pick(em, idx, 0), idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)


def epilogue_of(members: Sequence[T.TensorOp], chain_in: SSAValue,
                buffers: dict[SSAValue, SSAValue]) -> Epilogue:
    """The elementwise ops fused after an anchor, as one function of the anchor's value at an
    output index: each member takes the previous one's value for its chained operand and loads
    its other operand (bias, residual, broadcast constant) from memory."""

    def epilogue(em: Emitter, v: SSAValue, idx: list[SSAValue]) -> SSAValue:
        prev = chain_in
        for m in members:
            if isinstance(m, T.UnaryOp):
                v = apply_unary(em, m, v)
            elif isinstance(m, T.CastOp):  # rounded as the unfused ops would store it, then to its type
                v = em.rounded(em.rounded(v, m.input.type.element_type), m.result.type.element_type)
            elif isinstance(m, T.BiasAddOp):
                axis = m.axis.value.data % len(idx)
                v = em.fbin("add", v, em.load_value(buffers[m.bias], [idx[axis]]))
            else:
                assert isinstance(m, T.BinaryOp), m.name
                chained_lhs = m.lhs == prev
                other = m.rhs if chained_lhs else m.lhs
                w = em.load_value(buffers[other], broadcast_index(idx, T.shape_of(other), em))
                v = apply_binary(em, m.fn.data, v, w) if chained_lhs else apply_binary(em, m.fn.data, w, v)
            prev = m.result
        return v

    return epilogue


GROUP = "group"  # attribute the tensorop-fuse pass sets: the stage name of the group's anchor


def fusion_groups(block: Block) -> dict[str, list[T.TensorOp]]:
    """Fused groups by anchor name, each [anchor, members...] in block order."""
    groups: dict[str, list[T.TensorOp]] = {}
    for op in block.ops:
        if isinstance(op, T.TensorOp) and GROUP in op.attributes:
            groups.setdefault(op.attributes[GROUP].data, []).append(op)
    for name, chain in groups.items():
        if chain[0].stage_name != name:
            raise DiagnosticException(f"fused group '{name}' does not start with its anchor '{name}'")
        if linked_pool(chain) is not None:
            chain = chain[:-1]
            if chain[-1].result.uses.get_length() != 1:
                raise DiagnosticException(f"fused group '{name}': the pooling linked into it must be the only reader "
                                          f"of '{chain[-1].stage_name}'")
        for prev, m in zip(chain, chain[1:]):
            if not isinstance(m, T.ELEMENTWISE) or prev.result not in m.operands:
                raise DiagnosticException(f"fused group '{name}': '{m.stage_name}' is not an elementwise op "
                                          f"of '{prev.stage_name}'")
            if prev.result.uses.get_length() != 1 or T.shape_of(m.result) != T.shape_of(chain[0].result):
                raise DiagnosticException(f"fused group '{name}': '{prev.stage_name}' must have one use and "
                                          "every member the anchor's shape")
    return groups


def linked_pool(chain: Sequence[T.TensorOp]) -> T.TensorOp | None:
    """The pooling that ends a conv's group (fuse.link_pools), or None."""
    last = chain[-1]
    if len(chain) > 1 and isinstance(chain[0], T.Conv2dOp) and isinstance(last, (T.Pool2dOp, T.ReduceOp)):
        if chain[-2].result not in last.operands or scatter_spec(last, "") is None:
            raise DiagnosticException(f"fused group '{chain[0].stage_name}': '{last.stage_name}' is not a pooling "
                                      f"of '{chain[-2].stage_name}' that a conv's epilogue can scatter into")
        return last
    return None


def check_input_names(fn: func.FuncOp) -> None:
    """Stages and inputs name buffers: one name for both would make the output overwrite the
    input (the host plan passes the same buffer twice)."""
    inputs = {a.name_hint or f"arg{k}": k for k, a in enumerate(fn.body.block.args)}
    for name, k in inputs.items():
        t = fn.body.block.args[k].type
        if isinstance(t, TensorType):
            try:
                T.check_size(t.get_shape(), f"input '{name}' of func '{fn.sym_name.data}'")
            except T.ShapeError as e:
                loc = where(fn)
                raise DiagnosticException(f"{loc}{'error: ' if loc else ''}{e}") from None
    for op in fn.body.block.ops:
        if isinstance(op, T.TensorOp) and op.stage_name in inputs:
            loc = where(op)
            raise DiagnosticException(
                f"{loc}{'error: ' if loc else ''}{op.name}: stage '{op.stage_name}' has the name of input "
                f"'{op.stage_name}' (argument {inputs[op.stage_name]} of func '{fn.sym_name.data}'); stages "
                "and inputs need distinct names")


def check_distinct_buffers(fn: func.FuncOp, block: Block) -> None:
    """Every buffer of the lowered function has a name of its own (the host plan and the
    schedule address buffers by name)."""
    seen: set[str] = set()
    for k, a in enumerate(block.args):
        seen.add(a.name_hint or f"arg{k}")
    for op in block.ops:
        if isinstance(op, memref.AllocOp) and op.memref.name_hint:
            name = op.memref.name_hint
            if name in seen:
                raise DiagnosticException(f"tensorop-to-loops: func '{fn.sym_name.data}' has two buffers named "
                                          f"'{name}' (a stage's buffer and an input or another stage's)")
            seen.add(name)


def lower_function(fn: func.FuncOp) -> None:
    """Rewrites a func of tensorop ops into loop nests over memrefs, in place."""
    old_block = fn.body.block
    returned = old_block.last_op
    assert isinstance(returned, func.ReturnOp)
    results = list(returned.arguments)
    for v in results:
        if not isinstance(v.owner, T.TensorOp):
            raise DiagnosticException(
                f"func '{fn.sym_name.data}': returns {v.type} not made by a tensorop op"
            )
    arg_types = [memref_of(a.type) for a in old_block.args] + [memref_of(v.type) for v in results]
    block = Block(arg_types=arg_types)
    em = Emitter(block)
    buffers: dict[SSAValue, SSAValue] = {}
    for old, new in zip(old_block.args, block.args):
        new.name_hint = old.name_hint
        buffers[old] = new
    for v, new in zip(results, block.args[len(old_block.args):]):
        new.name_hint = v.owner.stage_name
        buffers[v] = new
    groups = fusion_groups(old_block)
    for op in old_block.ops:
        if isinstance(op, func.ReturnOp):
            continue
        if not isinstance(op, T.TensorOp):
            raise DiagnosticException(f"tensorop-to-loops: cannot lower {op.name} in func '{fn.sym_name.data}'")
        chain = groups.get(op.attributes[GROUP].data if GROUP in op.attributes else "", [op])
        if op is not chain[-1]:
            continue  # a fused group is lowered where its last op stands, when all its operands exist
        if op.result not in buffers:
            alloc = em.val(memref.AllocOp.get(op.result.type.element_type, shape=T.shape_of(op.result)))
            alloc.name_hint = op.stage_name
            buffers[op.result] = alloc
        anchor, members, out = chain[0], chain[1:], buffers[op.result]
        pool = linked_pool(chain)
        if pool is not None:  # the conv's output goes to a buffer whose stores become the pool's scatter
            members = members[:-1]
            out = em.val(memref.AllocOp.get(anchor.result.type.element_type, shape=T.shape_of(anchor.result)))
            out.name_hint = anchor.stage_name
            out.owner.attributes[SCATTER] = scatter_spec(pool, buffers[op.result].name_hint).attr()
        epilogue = epilogue_of(members, anchor.result, buffers) if members else None
        OpLowering(em, anchor, [buffers[v] for v in anchor.operands], out, epilogue).run()
    em.op(func.ReturnOp())
    check_distinct_buffers(fn, block)
    names = [StringAttr(a.name_hint or f"arg{k}") for k, a in enumerate(block.args)]
    fn.body.detach_block(old_block)
    fn.body.add_block(block)
    fn.function_type = FunctionType.from_lists(arg_types, [])
    fn.arg_attrs = None
    fn.attributes["sched.arg_names"] = ArrayAttr(names)
    fn.attributes["sched.num_inputs"] = IntegerAttr(len(old_block.args), 64)


class TensoropToLoopsPass(ModulePass):
    """Lowers every func of tensorop ops to named loop nests (see the module docstring)."""

    name = "tensorop-to-loops"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        require_operator_level(op, self.name)
        stages: dict[str, object] = {}
        for t in op.walk():
            if isinstance(t, T.TensorOp):
                if t.stage_name in stages:
                    raise DiagnosticException(f"{t.name}: stage name '{t.stage_name}' is used twice")
                stages[t.stage_name] = t
        for fn in op.ops:
            if isinstance(fn, func.FuncOp) and fn.body.blocks:
                check_input_names(fn)
        for fn in list(op.ops):
            if isinstance(fn, func.FuncOp) and any(isinstance(o, T.TensorOp) for o in fn.walk()):
                lower_function(fn)
