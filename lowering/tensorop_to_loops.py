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

from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.emit import Emitter

NEG_INF = float("-inf")


def memref_of(t: TensorType) -> MemRefType:
    return MemRefType(f32, t.get_shape())


@dataclass
class NestBuilder:
    """Emits one stage's loop nest into a function body."""

    em: Emitter
    stage: str

    def build(self, spatial: Sequence[tuple[str, int]], reduce: Sequence[tuple[str, int]],
              body: Callable[[Emitter, dict[str, SSAValue]], None]) -> None:
        em, ivs = self.em, {}
        for name, extent in [*spatial, *reduce]:
            attrs = {"sched.stage": StringAttr(self.stage), "sched.axis": StringAttr(name)}
            if (name, extent) in reduce:
                attrs["sched.reduce"] = UnitAttr()
            _, ivs[name], em = em.loop(extent, attrs)
            ivs[name].name_hint = name
        body(em, ivs)


Epilogue = Callable[[Emitter, SSAValue, list[SSAValue]], SSAValue]


def accumulate(em: Emitter, ivs: dict[str, SSAValue], reduce: Sequence[str], out: SSAValue,
               idx: Sequence[SSAValue], combine: str, init: float, value: SSAValue,
               extents: Sequence[int] = (), epilogue: Epilogue | None = None) -> None:
    """out[idx] = combine(first ? init : out[idx], value); with a fused epilogue, the last
    reduction iteration (every reduction variable at extent - 1, which comes last in any loop
    order) stores epilogue(accumulated value) instead."""
    first = em.all_of([em.cmpi("eq", ivs[r], 0) for r in reduce])
    old = em.load(out, idx)
    select = em.select(first, em.f32(init), old)
    select.owner.attributes["sched.init"] = UnitAttr()
    new = em.fbin(combine, select, value)
    if epilogue is not None:
        last = em.all_of([em.cmpi("eq", ivs[r], n - 1) for r, n in zip(reduce, extents)])
        new = em.if_value(last, lambda e: epilogue(e, new, list(idx)), lambda e: new)
        # apply-schedule moves this into the write-back when the output has a register accumulator
        new.owner.attributes["sched.epilogue"] = UnitAttr()
    em.store(new, out, idx)


def padded_load(em: Emitter, ref: SSAValue, idx: Sequence[SSAValue], guard: Sequence[SSAValue],
                fill: float) -> SSAValue:
    """ref[idx] where all guard conditions hold, else fill."""
    cond = em.all_of(guard)
    if cond is None:
        return em.load(ref, idx)
    return em.if_value(cond, lambda e: e.load(ref, idx), lambda e: e.f32(fill))


def apply_unary(em: Emitter, op: T.UnaryOp, x: SSAValue) -> SSAValue:
    fn = op.fn.data
    if fn == "relu":
        return em.fbin("max", x, em.f32(0.0))
    if fn in ("relu6", "clip"):
        lo, hi = op.bounds()
        return em.fbin("min", em.fbin("max", x, em.f32(lo)), em.f32(hi))
    if fn == "sigmoid":
        one = em.f32(1.0)
        return em.fbin("div", one, em.fbin("add", one, em.exp(em.neg(x))))
    if fn == "tanh":
        return em.tanh(x)
    if fn == "exp":
        return em.exp(x)
    assert fn == "neg", fn
    return em.neg(x)


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

    def nest(self, stage: str, spatial, reduce, body) -> None:
        NestBuilder(self.em, stage).build(spatial, reduce, body)

    def run(self) -> None:
        getattr(self, "lower_" + self.op.name.split(".")[1])()

    def lower_matmul(self) -> None:
        (m, n), k = T.shape_of(self.op.result), T.shape_of(self.op.lhs)[1]
        a, b = self.args

        def body(em, iv):
            v = em.fbin("mul", em.load(a, [iv["i"], iv["k"]]), em.load(b, [iv["k"], iv["j"]]))
            self.acc(em, iv, [("k", k)], [iv["i"], iv["j"]], "add", 0.0, v)

        self.nest(self.stage, [("i", m), ("j", n)], [("k", k)], body)

    def lower_conv2d(self) -> None:
        op = self.op
        x, w = self.args
        n, f, oh, ow = T.shape_of(op.result)
        _, c, h, wd = T.shape_of(op.input)
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
            xv = padded_load(em, x, [iv["n"], chan, iy, ix], guard, 0.0)
            v = em.fbin("mul", xv, em.load(w, [iv["f"], iv["rc"], iv["ry"], iv["rx"]]))
            self.acc(em, iv, [("rc", cg), ("ry", kh), ("rx", kw)], [iv[a] for a in "n f y x".split()], "add", 0.0, v)

        self.nest(self.stage, [("n", n), ("f", f), ("y", oh), ("x", ow)],
                  [("rc", cg), ("ry", kh), ("rx", kw)], body)

    def lower_pool2d(self) -> None:
        op = self.op
        (x,) = self.args
        n, c, oh, ow = T.shape_of(op.result)
        h, wd = T.shape_of(op.input)[2:]
        kh, kw = op.kernel.get_values()
        sh, sw = op.stride.get_values()
        pt, pl, _, _ = op.padding.get_values()
        is_max = op.kind.data == "max"

        def window_count(em, o, s, p, k, size):
            # in-bounds rows (or columns) of the window: min(o*s-p+k, size) - max(o*s-p, 0)
            start = em.sub(em.mul(o, s), p)
            hi = em.val(arith.MinSIOp(em.add(start, k), em.index(size)))
            lo = em.val(arith.MaxSIOp(start, em.index(0)))
            return em.sub(hi, lo)

        def body(em, iv):
            iy = em.sub(em.add(em.mul(iv["y"], sh), iv["ry"]), pt)
            ix = em.sub(em.add(em.mul(iv["x"], sw), iv["rx"]), pl)
            guard = [*em.in_range(iy, 0, h), *em.in_range(ix, 0, wd)] if max(op.padding.get_values()) else []
            fill = NEG_INF if is_max else 0.0
            v = padded_load(em, x, [iv["n"], iv["c"], iy, ix], guard, fill)
            if not is_max:
                count = em.mul(window_count(em, iv["y"], sh, pt, kh, h), window_count(em, iv["x"], sw, pl, kw, wd))
                cnt = em.val(arith.SIToFPOp(em.val(arith.IndexCastOp(count, i32)), f32))
                v = em.fbin("div", v, cnt)
            idx = [iv[a] for a in "n c y x".split()]
            self.acc(em, iv, [("ry", kh), ("rx", kw)], idx, "max" if is_max else "add",
                     NEG_INF if is_max else 0.0, v)

        self.nest(self.stage, [("n", n), ("c", c), ("y", oh), ("x", ow)], [("ry", kh), ("rx", kw)], body)

    def lower_unary(self) -> None:
        (x,) = self.args
        shape = T.shape_of(self.op.result)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            em.store(self.finish(em, apply_unary(em, self.op, em.load(x, idx)), idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_binary(self) -> None:
        a, b = self.args
        shape = T.shape_of(self.op.result)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            va = em.load(a, broadcast_index(idx, T.shape_of(self.op.lhs), em))
            vb = em.load(b, broadcast_index(idx, T.shape_of(self.op.rhs), em))
            em.store(self.finish(em, em.fbin(self.op.fn.data, va, vb), idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def lower_bias_add(self) -> None:
        x, b = self.args
        shape = T.shape_of(self.op.result)
        axis = self.op.axis.value.data % len(shape)

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            em.store(self.finish(em, em.fbin("add", em.load(x, idx), em.load(b, [idx[axis]])), idx), self.out, idx)

        self.nest(self.stage, dims(shape), [], body)

    def reduction(self, stage: str, x: SSAValue, out: SSAValue, in_shape: Sequence[int],
                  axes: Sequence[int], keepdims: bool, combine: str, init: float,
                  value: Callable[[Emitter, SSAValue, list[SSAValue]], SSAValue]) -> None:
        """out = combine over `axes` of value(x[...]); loops d<k> over out, r<k> over axes."""
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
            v = value(em, em.load(x, in_idx), out_idx)
            accumulate(em, iv, [name for name, _ in red], out, out_idx, combine, init, v)

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
                       "max" if fn == "max" else "add", NEG_INF if fn == "max" else 0.0, value)

    def lower_softmax(self) -> None:
        (x,) = self.args
        shape = T.shape_of(self.op.input)
        axis = self.op.softmax_axis()
        red_shape = T.reduce_shape(shape, [axis], False)
        mx = self.em.val(memref.AllocOp.get(f32, shape=red_shape))
        sm = self.em.val(memref.AllocOp.get(f32, shape=red_shape))
        mx.name_hint, sm.name_hint = f"{self.stage}.max", f"{self.stage}.sum"
        self.reduction(f"{self.stage}.max", x, mx, shape, [axis], False, "max", NEG_INF, lambda em, v, _: v)
        self.reduction(f"{self.stage}.sum", x, sm, shape, [axis], False, "add", 0.0,
                       lambda em, v, oi: em.exp(em.fbin("sub", v, em.load(mx, oi))))

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            red_idx = [v for k, v in enumerate(idx) if k != axis]
            e = em.exp(em.fbin("sub", em.load(x, idx), em.load(mx, red_idx)))
            em.store(em.fbin("div", e, em.load(sm, red_idx)), self.out, idx)

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
            em.store(em.load(x, list(reversed(src))), self.out, idx)

        self.nest(self.stage, dims(out_shape), [], body)

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
                return em.load(ref, src)
            return em.if_value(em.cmpi("slt", idx[axis], lo + n), lambda e: e.load(ref, src),
                               lambda e: pick(e, idx, k + 1))

        def body(em, iv):
            idx = [iv[name] for name, _ in dims(shape)]
            em.store(pick(em, idx, 0), self.out, idx)

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
            elif isinstance(m, T.BiasAddOp):
                axis = m.axis.value.data % len(idx)
                v = em.fbin("add", v, em.load(buffers[m.bias], [idx[axis]]))
            else:
                assert isinstance(m, T.BinaryOp), m.name
                chained_lhs = m.lhs == prev
                other = m.rhs if chained_lhs else m.lhs
                w = em.load(buffers[other], broadcast_index(idx, T.shape_of(other), em))
                v = em.fbin(m.fn.data, v, w) if chained_lhs else em.fbin(m.fn.data, w, v)
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
        for prev, m in zip(chain, chain[1:]):
            if not isinstance(m, (T.UnaryOp, T.BinaryOp, T.BiasAddOp)) or prev.result not in m.operands:
                raise DiagnosticException(f"fused group '{name}': '{m.stage_name}' is not an elementwise op "
                                          f"of '{prev.stage_name}'")
            if prev.result.uses.get_length() != 1 or T.shape_of(m.result) != T.shape_of(chain[0].result):
                raise DiagnosticException(f"fused group '{name}': '{prev.stage_name}' must have one use and "
                                          "every member the anchor's shape")
    return groups


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
            alloc = em.val(memref.AllocOp.get(f32, shape=T.shape_of(op.result)))
            alloc.name_hint = op.stage_name
            buffers[op.result] = alloc
        anchor, members = chain[0], chain[1:]
        epilogue = epilogue_of(members, anchor.result, buffers) if members else None
        OpLowering(em, anchor, [buffers[v] for v in anchor.operands], buffers[op.result], epilogue).run()
    em.op(func.ReturnOp())
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
        stages: dict[str, object] = {}
        for t in op.walk():
            if isinstance(t, T.TensorOp):
                if t.stage_name in stages:
                    raise DiagnosticException(f"{t.name}: stage name '{t.stage_name}' is used twice")
                stages[t.stage_name] = t
        for fn in list(op.ops):
            if isinstance(fn, func.FuncOp) and any(isinstance(o, T.TensorOp) for o in fn.walk()):
                lower_function(fn)
