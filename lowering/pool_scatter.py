"""A pooling linked into the kernel of the conv that makes its input (fuse.link_pools): the
conv's epilogue scatters each final value of its group into every pool output whose window
holds it, by atomics, so the conv's output never goes to memory.

tensorop-to-loops gives the conv's output a buffer marked `sched.scatter` (a ScatterSpec: the
pool's buffer, how values combine, the windows); apply-schedule writes the conv's stage as
its schedule says, the write-back of its register accumulator storing each final value once
into that buffer; `write_scatters` then replaces every such store with the scatter and drops
the buffer. Output row oy's window holds input row y when oy*s - p <= y < oy*s - p + k, so the
rows to update run down from min((y + p) // s, OH - 1), at most ceil(k / s) of them, kept
where oy >= 0 and y + p - oy*s < k; likewise columns.

- max: `memref.atomic_rmw` maximumf tagged `sched.nonnegative`, which the printer writes as
  an atomic max on the float's bits read as a signed int: right only for values >= 0, which
  the link's rule guarantees (fuse.link_pools);
- average: an atomic add of value / the window's count (its elements inside the input, or
  with count_include_pad inside the padded input); sum: of the value.

Atomics accumulate onto what the buffer holds: a host plan zeroes every buffer a kernel
updates by atomics before it launches the kernel (host_plan.Launch.zeroed).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import func, memref
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, StringAttr, UnitAttr, i64
from xdsl.ir import SSAValue
from xdsl.utils.exceptions import DiagnosticException

from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.emit import Emitter, const_value, value_bounds

SCATTER = "sched.scatter"  # on the buffer of a conv's output that is scattered into a pool's
NONNEGATIVE = "sched.nonnegative"  # on an atomic max whose values are known to be >= 0
ATOMIC_ADDF, ATOMIC_MAXIMUMF = 0, 3  # memref.atomic_rmw kinds (MLIR's AtomicRMWKind)


@dataclass(frozen=True)
class ScatterSpec:
    into: str  # the pool's buffer
    combine: str  # "max" or "add"
    divide: str  # "none", "inside" (the window's elements inside the input) or "padded" (count_include_pad)
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]

    def attr(self) -> DictionaryAttr:
        return DictionaryAttr({"into": StringAttr(self.into), "combine": StringAttr(self.combine),
                               "divide": StringAttr(self.divide), "kernel": T.ints(self.kernel),
                               "stride": T.ints(self.stride), "padding": T.ints(self.padding)})

    @staticmethod
    def of_attr(a: DictionaryAttr) -> ScatterSpec:
        d = a.data
        return ScatterSpec(d["into"].data, d["combine"].data, d["divide"].data, tuple(d["kernel"].get_values()),
                           tuple(d["stride"].get_values()), tuple(d["padding"].get_values()))


def scatter_spec(op: T.TensorOp, into: str) -> ScatterSpec | None:
    """The scatter that computes pool2d or reduce `op` from its input's values, or None when
    `op` is not a form it covers: a pool2d without dilation, or a reduce (sum, max, mean) over
    the two spatial axes of an NCHW tensor (a window of the whole image)."""
    if isinstance(op, T.Pool2dOp) and op.dilations() == (1, 1):
        kind = "max" if op.kind.data == "max" else "add"
        divide = "none" if kind == "max" else "padded" if op.includes_pad() else "inside"
        return ScatterSpec(into, kind, divide, tuple(op.kernel.get_values()), tuple(op.stride.get_values()),
                           tuple(op.padding.get_values()))
    if isinstance(op, T.ReduceOp) and len(T.shape_of(op.input)) == 4 and op.reduced_axes() == (2, 3):
        h, w = T.shape_of(op.input)[2:]
        fn = op.fn.data
        return ScatterSpec(into, "max" if fn == "max" else "add", "inside" if fn == "mean" else "none",
                           (h, w), (1, 1), (0, 0, 0, 0))
    return None


def every_window_holds_input(spec: ScatterSpec, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Whether each output's window holds at least one element of the input (not only padding,
    which a ceil_mode window or a pad as wide as the kernel can reach)."""
    for size, out, k, s, p in zip(in_hw, out_hw, spec.kernel, spec.stride, spec.padding[:2]):
        if any(o * s - p + k <= 0 or o * s - p >= size for o in range(out)):
            return False
    return True


def window_count(em: Emitter, o: SSAValue, s: int, p: int, k: int, size: int, pad_hi: int,
                 include_pad: bool) -> SSAValue:
    """Rows (or columns) of output o's window inside the input (with `include_pad`, inside the
    padded input): min(o*s-p+k, end) - max(o*s-p, start)."""
    at = const_value(o)
    if at is not None:  # one output (a global pool): the count is a constant
        lo, hi = (at * s - p, min(at * s - p + k, size + pad_hi)) if include_pad else \
            (max(at * s - p, 0), min(at * s - p + k, size))
        return em.index(hi - lo)
    start = em.sub(em.mul(o, s), p)
    if include_pad:
        return em.sub(em.min(em.add(start, k), size + pad_hi), start)
    return em.sub(em.min(em.add(start, k), size), em.max(start, 0))


def atomic(em: Emitter, kind: int, v: SSAValue, ref: SSAValue, idx: list[SSAValue], nonnegative: bool = False) -> None:
    op = memref.AtomicRMWOp.create(operands=[v, ref, *idx], result_types=[v.type],
                                   properties={"kind": IntegerAttr(kind, i64)})
    if nonnegative:
        op.attributes[NONNEGATIVE] = UnitAttr()
    em.op(op)


def scatter(em: Emitter, spec: ScatterSpec, target: SSAValue, in_hw: tuple[int, int], v: SSAValue,
            idx: list[SSAValue]) -> None:
    """Combines value v of input element idx (n, c, y, x) into every output of `target` whose
    window holds it."""
    n, c, y, x = idx
    out_shape = target.type.get_shape()
    out_hw = tuple(out_shape[2:]) if len(out_shape) == 4 else (1, 1)
    outs, conds = [], []
    for i, size, out, k, s, p in zip((y, x), in_hw, out_hw, spec.kernel, spec.stride, spec.padding[:2]):
        top = em.index(0) if out == 1 else em.min(em.floordiv(em.add(i, p), s), out - 1)
        count = min(-(-k // s), out)
        if count > 1:  # a rolled loop over the rows (columns) that can hold it: the C compiler unrolls it
            _, j, em = em.loop(count)
            o = em.sub(top, j)
            conds.append(em.cmpi("sge", o, 0))
        else:
            o = top
        tap = em.sub(em.add(i, p), em.mul(o, s))  # the row of o's window that i is
        known = value_bounds(tap)
        if known is None or known[1] >= k:
            conds.append(em.cmpi("slt", tap, k))
        outs.append(o)
    cond = em.all_of(conds)
    if cond is not None:
        em = em.if_(cond)
    at = [n, c, *outs] if len(out_shape) == 4 else [n, c]
    if spec.combine == "max":
        atomic(em, ATOMIC_MAXIMUMF, v, target, at, nonnegative=True)
        return
    if spec.divide != "none":
        counts = [window_count(em, o, s, p, k, size, hi, spec.divide == "padded")
                  for o, s, p, k, size, hi in zip(outs, spec.stride, spec.padding[:2], spec.kernel, in_hw,
                                                  spec.padding[2:])]
        v = em.fbin("div", v, em.index_to_f32(em.mul(counts[0], counts[1])))
    atomic(em, ATOMIC_ADDF, v, target, at)


def write_scatters(fn: func.FuncOp) -> None:
    """Replaces the stores into every buffer marked `sched.scatter` with the scatter into its
    pool's buffer, and drops the buffer (after apply-schedule: see the module docstring)."""
    named = {a.name_hint: a for a in fn.body.block.args if a.name_hint}
    named.update({op.memref.name_hint: op.memref for op in fn.body.block.ops
                  if isinstance(op, memref.AllocOp) and op.memref.name_hint})
    for alloc in [op for op in fn.body.block.ops if isinstance(op, memref.AllocOp) and SCATTER in op.attributes]:
        spec = ScatterSpec.of_attr(alloc.attributes[SCATTER])
        buf = alloc.memref
        if spec.into not in named:
            raise DiagnosticException(f"stage '{buf.name_hint}' scatters into '{spec.into}', which is no buffer")
        in_hw = tuple(buf.type.get_shape()[2:])
        for use in list(buf.uses):
            store = use.operation
            if not isinstance(store, memref.StoreOp) or store.value is buf:
                raise DiagnosticException(
                    f"stage '{buf.name_hint}' is linked with the pooling '{spec.into}' but reads its own output "
                    f"({store.name}): the link needs the stage's accumulator in registers (cache_write local)")
            scatter(Emitter(store.parent_block(), store), spec, named[spec.into], in_hw, store.value,
                    list(store.indices))
            store.detach()
            store.erase()
        alloc.detach()
        alloc.erase()
