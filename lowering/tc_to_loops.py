"""tc-to-loops: the `tc` ops (warp- and warpgroup-level mma, asynchronous copies) rewritten into the plain
loops that are their meaning, for devices without tensor cores (PoCL, CPUs, other GPUs).

Each lane computes its own 4 results of an mma from the shared operand tiles its fragments
were loaded from (the fragment loads themselves go away), an asynchronous copy becomes
element copies (a TMA copy: the issuing thread's loops over its box), and commits, waits
and mbarriers go away (a plain copy is complete at once; the block barriers the schedule
placed remain). Tensor maps stay: kernels take them as (unread) buffers. See dialects/tensorcore.py for the ops' meaning.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from sched_dsl.dialects import tensorcore as tc
from sched_dsl.lowering.emit import Emitter

UNROLL = {"sched.unroll": UnitAttr()}


def _moved(em: Emitter, idx: Sequence[SSAValue], dims: Sequence[int], offsets: Sequence[SSAValue]) -> list[SSAValue]:
    """idx with offsets[n] added to dimension dims[n]."""
    out = list(idx)
    for d, off in zip(dims, offsets):
        out[d] = em.add(out[d], off)
    return out


def expand_mma(op: tc.MmaOp) -> None:
    a, b = op.a.owner, op.b.owner
    assert isinstance(a, tc.LoadFragmentOp) and isinstance(b, tc.LoadFragmentOp)
    _, _, depth = tc.SHAPES[op.intrinsic]
    em = Emitter(op.parent_block(), op)
    g, t = em.floordiv(op.lane, 4), em.rem(op.lane, 4)
    _, e, body = em.loop(tc.ACCUMULATORS, UNROLL)
    _, n, _ = tc.SHAPES[op.intrinsic]
    row = body.add(g, body.mul(body.floordiv(e, 2), 8))
    col = body.add(body.add(body.mul(t, 2), body.rem(e, 2)), n * op.b_tile.value.data)
    acc_idx = list(op.indices[:-1]) + [body.add(op.indices[-1], e)]
    _, kk, inner = body.loop(depth, UNROLL)
    av = inner.load_value(a.buffer, _moved(inner, a.indices, a.dims.get_values(), [row, kk]))
    bv = inner.load_value(b.buffer, _moved(inner, b.indices, b.dims.get_values(), [kk, col]))
    total = inner.fbin("add", inner.load(op.acc, acc_idx), inner.fbin("mul", av, bv))
    inner.store(total, op.acc, acc_idx)


def swizzled_index(em: Emitter, r: SSAValue, c: SSAValue, rows: int, cols: int) -> tuple[SSAValue, SSAValue]:
    """tc.swizzled_position in IR: where element (r, c) of a rows x cols wgmma operand
    buffer lies."""
    span, within = em.floordiv(c, tc.SWIZZLE_SPAN), em.rem(c, tc.SWIZZLE_SPAN)
    chunk = em.xor(em.floordiv(within, 8), em.rem(r, 8))
    flat = em.add(em.add(em.mul(span, rows * tc.SWIZZLE_SPAN), em.mul(r, tc.SWIZZLE_SPAN)),
                  em.add(em.mul(chunk, 8), em.rem(within, 8)))
    return em.floordiv(flat, cols), em.rem(flat, cols)


def swizzled_load(em: Emitter, ref: SSAValue, origin: Sequence[SSAValue], r: SSAValue, c: SSAValue) -> SSAValue:
    """Element (r, c) of the tile at `origin` (its last two dims) of a swizzled buffer, in f32."""
    rows, cols = ref.type.get_shape()[-2:]
    pos = swizzled_index(em, em.add(origin[-2], r), em.add(origin[-1], c), rows, cols)
    return em.load_value(ref, list(origin[:-2]) + list(pos))


def expand_wgmma(op: tc.WgmmaOp) -> None:
    em = Emitter(op.parent_block(), op)
    _, n, depth = op.shape()
    warp, lane = em.floordiv(op.lane, 32), em.rem(op.lane, 32)
    g, t = em.floordiv(lane, 4), em.rem(lane, 4)
    _, e, body = em.loop(n // 2, UNROLL)
    row = body.add(body.add(body.mul(warp, 16), g), body.mul(body.rem(body.floordiv(e, 2), 2), 8))
    col = body.add(body.add(body.mul(body.floordiv(e, 4), 8), body.mul(t, 2)), body.rem(e, 2))
    acc_idx = list(op.acc_indices[:-1]) + [body.add(op.acc_indices[-1], e)]
    _, kk, inner = body.loop(depth, UNROLL)
    av = swizzled_load(inner, op.a, op.a_indices, row, kk)
    bv = swizzled_load(inner, op.b, op.b_indices, kk, col)
    inner.store(inner.fbin("add", inner.load(op.acc, acc_idx), inner.fbin("mul", av, bv)), op.acc, acc_idx)


def expand_copy(op: tc.CopyAsyncOp) -> None:
    em = Emitter(op.parent_block(), op)
    for q in range(op.elements.value.data):
        src = list(op.src_indices[:-1]) + [em.add(op.src_indices[-1], q)]
        dst = list(op.dst_indices[:-1]) + [em.add(op.dst_indices[-1], q)]
        if op.valid is None:
            em.store(em.load(op.src, src), op.dst, dst)
        else:
            em.store(em.if_value(op.valid, lambda t, src=src: t.load(op.src, src),
                                 lambda f: f.const(0, op.src.type.element_type)), op.dst, dst)


def expand_tma_load(op: tc.TmaLoadOp) -> None:
    """The box copied by the issuing thread, element by element: 0 past the tensor's edge,
    each element to its swizzled place."""
    em = Emitter(op.parent_block(), op)
    box = op.box_shape()
    shape = op.src.type.get_shape()
    offsets = []
    for extent in box:
        _, off, em = em.loop(extent)
        offsets.append(off)
    src = [em.add(s, o) for s, o in zip(op.src_indices, offsets)]
    valid = em.all_of([c for d, v in enumerate(src) for c in em.in_range(v, 0, shape[d])])
    lead = len(op.dst_indices) - len(box)
    dst = list(op.dst_indices[:lead]) + [em.add(d, o) for d, o in zip(op.dst_indices[lead:-2], offsets[:-2])]
    rows, cols = op.dst.type.get_shape()[-2:]
    r, c = (em.add(d, o) for d, o in zip(op.dst_indices[-2:], offsets[-2:]))
    dst += list(swizzled_index(em, r, c, rows, cols))
    if valid is None:
        em.store(em.load(op.src, src), op.dst, dst)
    else:
        em.store(em.if_value(valid, lambda t: t.load(op.src, src),
                             lambda f: f.const(0, op.src.type.element_type)), op.dst, dst)


def expand_store_pair(op: tc.StorePairOp) -> None:
    em = Emitter(op.parent_block(), op)
    em.store_value(op.first, op.out, op.indices)
    em.store_value(op.second, op.out, [*op.indices[:-1], em.add(op.indices[-1], 1)])


def _erase(op: Operation) -> None:
    op.detach()
    op.erase()


class TcToLoopsPass(ModulePass):
    """Rewrites every tc op into plain loops (see the module docstring)."""

    name = "tc-to-loops"

    def apply(self, ctx: Context, module: ModuleOp) -> None:
        ops = [op for op in module.walk() if tc.in_kernels(op)]  # (kernels take the host's tensor maps)
        for op in ops:
            if isinstance(op, tc.MmaOp):
                expand_mma(op)
            elif isinstance(op, tc.CopyAsyncOp):
                expand_copy(op)
            elif isinstance(op, tc.WgmmaOp):
                expand_wgmma(op)
            elif isinstance(op, tc.TmaLoadOp):
                expand_tma_load(op)
            elif isinstance(op, tc.StorePairOp):
                expand_store_pair(op)
        for op in ops:
            if not isinstance(op, tc.LoadFragmentOp):
                _erase(op)
        for op in ops:
            if isinstance(op, tc.LoadFragmentOp):
                _erase(op)
