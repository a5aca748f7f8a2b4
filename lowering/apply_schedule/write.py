"""apply-schedule, phase 3: each scheduled model written back as a loop nest, the body
cloned at the bottom and the root loop variables rebuilt from the new ones; shared and
local caches, their copies and barriers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from xdsl.dialects import arith, gpu, memref, scf
from xdsl.dialects.builtin import IntegerAttr, StringAttr, UnitAttr, f32, i64
from xdsl.ir import Attribute, Operation, SSAValue

from sched_dsl.dialects.memspace import LOCAL, SHARED
from sched_dsl.dialects.tensorcore import (
    ACCUMULATORS,
    SWIZZLE_ALIGN,
    SWIZZLE_SPAN,
    CopyAsyncOp,
    CopyCommitOp,
    CopyWaitOp,
    LoadFragmentOp,
    MbarrierExpectOp,
    MbarrierInitOp,
    MbarrierWaitOp,
    MmaOp,
    ProxyFenceOp,
    StorePairOp,
    TensorMapOp,
    TmaLoadOp,
    WgmmaCommitOp,
    WgmmaFenceOp,
    WgmmaOp,
    WgmmaWaitOp,
    wgmma_accumulators,
)
from sched_dsl.lowering.apply_schedule.model import (
    Axis,
    Cache,
    Fuse,
    Split,
    Stage,
    fail,
)
from sched_dsl.lowering.emit import Emitter, const_value, is_half, known_divisor, value_bounds
from sched_dsl.lowering.tc_to_loops import swizzled_index

# ---- affine index analysis -------------------------------------------------------------------

Form = tuple[dict[int, int], int]  # root position -> coefficient, constant


def affine(v: SSAValue, ivs: Sequence[SSAValue]) -> Form | None:
    if v in ivs:
        return {ivs.index(v): 1}, 0
    c = const_value(v)
    if isinstance(c, int):
        return {}, c
    op = v.owner
    if isinstance(op, (arith.AddiOp, arith.SubiOp)):
        a, b = affine(op.lhs, ivs), affine(op.rhs, ivs)
        if a is None or b is None:
            return None
        sign = 1 if isinstance(op, arith.AddiOp) else -1
        coef = dict(a[0])
        for k, x in b[0].items():
            coef[k] = coef.get(k, 0) + sign * x
        return coef, a[1] + sign * b[1]
    if isinstance(op, arith.MuliOp):
        a, b = affine(op.lhs, ivs), affine(op.rhs, ivs)
        if a is None or b is None:
            return None
        if not a[0]:
            a, b = b, a
        if b[0]:
            return None
        return {k: x * b[1] for k, x in a[0].items()}, a[1] * b[1]
    return None


# ---- writing the scheduled nest ------------------------------------------------------------

def delinearize(em: Emitter, flat: SSAValue, exts: Sequence[int]) -> list[SSAValue]:
    """The row-major index of `exts` whose position is `flat`."""
    loc, rest = [], flat
    for n in reversed(exts):
        loc.append(em.rem(rest, n))
        rest = em.floordiv(rest, n)
    return list(reversed(loc))


class Writer:
    """Writes one stage's scheduled nest."""

    def __init__(self, stage: Stage):
        self.stage = stage
        self.env: dict[Axis, SSAValue] = {}
        self.redirect: dict[SSAValue, tuple[SSAValue, list[SSAValue]]] = {}
        self.split_of = {r.parent: r for r in stage.relations if isinstance(r, Split)}
        self.fuse_of = {}
        for r in stage.relations:
            if isinstance(r, Fuse):
                self.fuse_of[r.outer] = r
                self.fuse_of[r.inner] = r
        write = [c for c in stage.caches if c.kind == "write"]
        self.cache_write = write[0] if write else None
        reduce_pos = [k for k, a in enumerate(stage.leaves) if a.reduce]
        self.first_reduce = reduce_pos[0] if reduce_pos and stage.init_select is not None else None
        # with a reduction loop outermost there is no loop to hoist the initialisation into;
        # the body keeps its select on the first reduction iteration
        self.hoist_init = bool(self.first_reduce)
        # shared fills emitted since the last barrier (fills at one loop share their barriers)
        self.fills_unfenced = False
        # wgmma groups left running into the next k iteration (the pipeline copies one tile less ahead)
        self.mma_overlap = 1 if stage.tensorize is not None and stage.tensorize.wide else 0

    # values of axes from leaf loop variables
    def value(self, em: Emitter, axis: Axis) -> SSAValue:
        if axis in self.env:
            return self.env[axis]
        if axis in self.split_of:
            r = self.split_of[axis]
            return em.add(em.mul(self.value(em, r.outer), r.factor), self.value(em, r.inner))
        r = self.fuse_of[axis]
        f = self.value(em, r.fused)
        return em.floordiv(f, r.inner.extent) if axis is r.outer else em.rem(f, r.inner.extent)

    def guards(self, em: Emitter, axes: Sequence[Axis]) -> list[SSAValue]:
        """parent < extent for every split under `axes` whose factor does not divide."""
        conds = []
        for r in self.stage.relations:
            if isinstance(r, Split) and r.outer.extent * r.inner.extent != r.parent.extent:
                roots = self.roots_of(r.parent)
                if all(root in axes and self.covered(root) for root in roots):
                    conds.append(em.cmpi("slt", self.value(em, r.parent), r.parent.extent))
        return conds

    def roots_of(self, axis: Axis) -> list[Axis]:
        """The root axes `axis` derives from: a fused axis has those of both its parts."""
        for r in self.stage.relations:
            if isinstance(r, Split) and axis in (r.outer, r.inner):
                return self.roots_of(r.parent)
            if isinstance(r, Fuse) and axis is r.fused:
                return self.roots_of(r.outer) + self.roots_of(r.inner)
        return [axis]

    # ranges of axes over the loops in `varying`
    def range(self, em: Emitter, axis: Axis, varying: set[Axis]) -> tuple[SSAValue, int]:
        if axis in self.stage.leaves:
            return (em.index(0), axis.extent) if axis in varying else (self.env[axis], 1)
        if axis in self.split_of:
            r = self.split_of[axis]
            ob, oe = self.range(em, r.outer, varying)
            ib, ie = self.range(em, r.inner, varying)
            return em.add(em.mul(ob, r.factor), ib), (oe - 1) * r.factor + ie
        r = self.fuse_of[axis]
        fb, fe = self.range(em, r.fused, varying)
        if fe == 1:
            return (em.floordiv(fb, r.inner.extent) if axis is r.outer else em.rem(fb, r.inner.extent)), 1
        return em.index(0), axis.extent

    def footprint(self, em: Emitter, cache: Cache, varying: set[Axis]) -> tuple[list[SSAValue], list[int]]:
        """Base index and extent per dimension of `cache.memref` over the loops in `varying`."""
        st = self.stage
        if cache.kind == "write":
            accesses = [st.output_store.indices]
        else:
            accesses = [ld.indices for ld in st.reads(cache.memref)]
        forms = []
        for idx in accesses:
            fs = [affine(v, st.root_ivs) for v in idx]
            if any(f is None for f in fs):
                raise fail(cache.op, f"stage '{st.name}': cannot cache '{cache.memref.name_hint}': "
                           "its index is not affine in the loops")
            forms.append(fs)
        bases, exts = [], []
        ranges = {k: self.range(em, root, varying) for k, root in enumerate(st.roots)}
        for d in range(len(forms[0])):
            coefs = {tuple(sorted(f[d][0].items())) for f in forms}
            if len(coefs) != 1:
                raise fail(cache.op, f"stage '{st.name}': cannot cache '{cache.memref.name_hint}': "
                           "it is read at differently shaped indices")
            coef = forms[0][d][0]
            if any(c < 0 for c in coef.values()):
                raise fail(cache.op, f"stage '{st.name}': cannot cache '{cache.memref.name_hint}': negative stride")
            consts = [f[d][1] for f in forms]
            base = em.index(min(consts))
            ext = 1 + max(consts) - min(consts)
            for k, c in coef.items():
                b, e = ranges[k]
                base = em.add(base, em.mul(b, c))
                ext += c * (e - 1)
            bases.append(base)
            exts.append(ext)
        return bases, exts

    # the nest
    def write(self, em: Emitter) -> None:
        self.level(em, 0)

    def loop(self, em: Emitter, axis: Axis) -> tuple[SSAValue, Emitter]:
        attrs: dict[str, Attribute] = {"sched.stage": StringAttr(self.stage.name), "sched.axis": StringAttr(axis.name)}
        if axis.reduce:
            attrs["sched.reduce"] = UnitAttr()
        if axis.bind:
            attrs["sched.bind"] = StringAttr(axis.bind)
        if axis.unroll:
            attrs["sched.unroll"] = UnitAttr()
        if axis.vectorize:
            attrs["sched.vectorize"] = UnitAttr()
        if axis.sequential:
            attrs["sched.sequential"] = UnitAttr()
        _, iv, inner = em.loop(axis.extent, attrs)
        iv.name_hint = axis.name
        return iv, inner

    def level(self, em: Emitter, k: int) -> None:
        leaves = self.stage.leaves
        if self.hoist_init and self.cache_write is None and k == self.first_reduce:
            self.init_nest(em, [a for a in leaves[k:] if not a.reduce])
        tz = self.stage.tensorize
        if tz is not None and k == tz.start:
            self.fence(em)
            self.tensor_tile(em, k)
            return
        if k == len(leaves):
            self.body(em)
            return
        axis = leaves[k]
        here = [c for c in self.stage.caches if c.at is axis]
        staged = {id(c): self.first_part(em, c, k) for c in here if c.double_buffer}
        piped = [c for c in here if c.stages]
        pipeline = self.pipeline_start(em, piped, k) if piped else None
        self.fence(em)
        self.env[axis], inner = self.loop(em, axis)
        after = []
        if piped:
            self.pipeline_step(inner, piped, k, pipeline)
        for cache in here:
            if cache.stages:
                continue
            after += self.next_part(inner, cache, k, staged[id(cache)]) if cache.double_buffer else self.fill(inner, cache, k)
        self.fence(inner)
        self.level(inner, k + 1)
        for fn in after:
            fn(inner)
        self.fence(inner)

    def fence(self, em: Emitter) -> None:
        """One barrier after all the shared copies emitted since the last one."""
        if self.fills_unfenced:
            barrier(em)
            self.fills_unfenced = False

    def init_nest(self, em: Emitter, axes: list[Axis]) -> None:
        """Stores the reduction's initial value into the outputs the loops `axes` cover."""
        for a in axes:
            self.env[a], em = self.loop(em, a)
        em = self.guarded(em, self.stage.roots)
        mapping = self.root_mapping(em)
        store = self.stage.output_store
        for op in self.slice_of(store.indices):
            em.op(op.clone(mapping))
        init = self.stage.init_select.lhs
        em.store_value(em.const(const_value(init), init.type), store.memref,
                       [mapping.get(v, v) for v in store.indices])
        for a in axes:
            del self.env[a]

    def slice_of(self, values: Sequence[SSAValue]) -> list[Operation]:
        """Body ops computing `values`, in body order."""
        needed: set[Operation] = set()
        work = [v.owner for v in values if isinstance(v.owner, Operation) and v.owner in self.stage.body]
        while work:
            op = work.pop()
            if op in needed:
                continue
            needed.add(op)
            work += [v.owner for v in op.operands if isinstance(v.owner, Operation) and v.owner in self.stage.body]
        return [op for op in self.stage.body if op in needed]

    def guarded(self, em: Emitter, roots: Sequence[Axis]) -> Emitter:
        cond = em.all_of(self.guards(em, roots))
        return em if cond is None else em.if_(cond)

    def root_mapping(self, em: Emitter) -> dict[SSAValue, SSAValue]:
        return {iv: self.value(em, root) for iv, root in zip(self.stage.root_ivs, self.stage.roots)
                if self.covered(root)}

    def covered(self, root: Axis) -> bool:
        """Whether every leaf below this root axis has a loop variable now."""
        leaves = [a for a in self.stage.leaves if root in self.roots_of(a)]
        return all(a in self.env for a in leaves)

    def body(self, em: Emitter) -> None:
        em = self.guarded(em, self.stage.roots)
        mapping = self.root_mapping(em)
        cloned = [op.clone(mapping) for op in self.stage.body]
        for op in cloned:
            em.op(op)
        if self.hoist_init:
            sel = mapping[self.stage.init_select.result]
            sel.replace_all_uses_with(sel.owner.rhs)
            sel.owner.detach()
            sel.owner.erase()
        if self.cache_write is not None and self.stage.epilogue is not None:
            # the register holds the plain accumulation; the write-back applies the epilogue
            epi = mapping[self.stage.epilogue.results[0]].owner
            acc = epi.false_region.block.last_op.operands[0]
            epi.results[0].replace_all_uses_with(acc)
            epi.detach()
            epi.erase()
        for op in cloned:
            for inner in list(op.walk()):
                self.retarget(inner)

    def retarget(self, op: Operation) -> None:
        """Points a load or store of a cached buffer at the cache."""
        if not isinstance(op, (memref.LoadOp, memref.StoreOp)) or op.memref not in self.redirect:
            return
        buf, index = self.redirect[op.memref]
        em = Emitter(op.parent_block(), op)
        idx = index(em, op.indices)
        # an f32 register accumulator of an f16/bf16 output: the extension after the load and
        # the rounding before the store go away
        widened = buf.type.element_type != op.memref.type.element_type
        if isinstance(op, memref.LoadOp):
            new = memref.LoadOp.get(buf, idx)
            em.op(new)
            old = op.results[0]
            if widened:
                for use in list(old.uses):
                    ext = use.operation
                    assert isinstance(ext, arith.ExtFOp), ext.name
                    ext.results[0].replace_all_uses_with(new.results[0])
                    ext.detach()
                    ext.erase()
            else:
                old.replace_all_uses_with(new.results[0])
        else:
            value = op.value
            if widened:
                assert isinstance(value.owner, arith.TruncFOp), value.owner
                value = value.owner.input
            em.op(memref.StoreOp.get(value, buf, idx))
        op.detach()
        op.erase()

    # caches
    def varying(self, k: int, scope: str) -> set[Axis]:
        leaves = self.stage.leaves
        inside = set(leaves[k + 1:])
        if scope == "shared":
            inside |= set(self.stage.thread_leaves())
        return inside

    def fill(self, em: Emitter, cache: Cache, k: int) -> list:
        """Emits the buffer of `cache` at the start of leaf k's body; returns what must
        follow the inner loops."""
        if cache.kind == "write":
            return self.accumulator(em, k)
        scope = cache.scope
        if cache.kind == "compute":
            threads_inside = [a for a in self.stage.leaves[k + 1:] if a.bind]
            scope = "shared" if threads_inside else "local"
        bases, exts = self.footprint(em, cache, self.varying(k, scope))
        buf = self.cache_buffer(em, cache, scope, exts, [])
        self.redirect[cache.memref] = (buf, self.buffer_index(cache, bases, lambda e: []))
        if cache.kind == "read":
            copy = Copy(cache, buf, bases, exts, 4 if scope == "shared" else 1)
            element = lambda e, loc: copy.put(e, copy.fetch(e, loc), loc, [])  # noqa: E731
            exts = copy.chunks
        else:
            element = ProducerFill(cache.producer, buf, bases, list(cache.memref.type.get_shape())).element
        if scope == "local":
            self.for_each(em, exts, element)
            return []
        return self.shared_fill(em, exts, element)

    def cache_buffer(self, em: Emitter, cache: Cache, scope: str, exts: list[int], parts: list[int]) -> SSAValue:
        order = cache.layout or list(range(len(exts)))
        shape = parts + [exts[d] for d in order]
        shape[-1] += cache.pad if scope == "shared" else 0
        attrs = None
        if cache.swizzled:
            if len(exts) < 2 or exts[-1] % SWIZZLE_SPAN or exts[-2] % 8:
                raise fail(self.stage.tensorize.op, f"stage '{self.stage.name}': a wgmma operand's shared tile of "
                           f"'{cache.memref.name_hint}' is {' x '.join(map(str, exts))}; it needs rows of a multiple "
                           f"of {SWIZZLE_SPAN} elements (128 bytes) and a multiple of 8 rows")
            attrs = {"sched.align": IntegerAttr(SWIZZLE_ALIGN, i64)}  # its 1024-byte atoms, as the hardware swizzles
        buf = em.alloca(shape, SHARED if scope == "shared" else LOCAL, attrs, element=cache.memref.type.element_type)
        buf.name_hint = f"{cache.memref.name_hint or 'buf'}_{scope}"
        return buf

    @staticmethod
    def buffer_index(cache: Cache, bases: list[SSAValue], part):
        """Maps an index into cache.memref to one into its buffer: offset from the tile's
        base, in the buffer's layout, after the part index of a double buffer."""
        def index(e: Emitter, idx: Sequence[SSAValue]) -> list[SSAValue]:
            rel = [e.sub(v, b) for v, b in zip(idx, bases)]
            return part(e) + ([rel[d] for d in cache.layout] if cache.layout else rel)
        return index

    # double-buffered shared copies
    def first_part(self, em: Emitter, cache: Cache, k: int) -> tuple[SSAValue, list[int]]:
        """Before the loop: two buffers, and the copy for the loop's first iteration in part 0."""
        axis = self.stage.leaves[k]
        self.env[axis] = em.index(0)
        bases, exts = self.footprint(em, cache, self.varying(k, "shared"))
        del self.env[axis]
        buf = self.cache_buffer(em, cache, "shared", exts, [2])
        copy = copier(cache, buf, bases, exts)
        self.shared_fill(em, copy.chunks, lambda e, loc: copy.put(e, copy.fetch(e, loc), loc, [e.index(0)]))
        return buf, exts

    def next_part(self, em: Emitter, cache: Cache, k: int, staged: tuple[SSAValue, list[int]]) -> list:
        """In iteration i: the inner loops read part i % 2; each thread loads its elements of
        iteration i + 1's tile into registers before them and stores them to the other part
        after them (the last iteration reloads its own tile, which nothing reads)."""
        axis = self.stage.leaves[k]
        buf, exts = staged
        iv = self.env[axis]
        part = em.rem(iv, 2)
        varying = self.varying(k, "shared")
        bases, _ = self.footprint(em, cache, varying)
        self.redirect[cache.memref] = (buf, self.buffer_index(cache, bases, lambda e: [part]))
        self.env[axis] = em.min(em.add(iv, 1), axis.extent - 1)
        next_bases, _ = self.footprint(em, cache, varying)
        self.env[axis] = iv
        copy = copier(cache, buf, next_bases, exts)
        tid, count = self.thread_id(em)
        total = math.prod(copy.chunks)
        per_thread = -(-total // count)
        regs = em.alloca([per_thread * copy.width], LOCAL, element=cache.memref.type.element_type)
        regs.name_hint = f"{cache.memref.name_hint or 'buf'}_next"

        # a computed producer with a reduction of its own (a depthwise conv's window) keeps the
        # loop over a thread's elements rolled: unrolled, the copies of its window take minutes to compile
        rolled = cache.kind == "compute" and any(r.reduce for r in cache.producer.roots)

        def each(e: Emitter, fn) -> None:
            _, m, e = e.loop(per_thread, {} if rolled else {"sched.unroll": UnitAttr()})
            t = e.add(tid, e.mul(m, count))
            if total % count:
                e = e.if_(e.cmpi("slt", t, total))
            fn(e, m, copy.unflatten(e, t))

        def load(e: Emitter, m: SSAValue, loc: list[SSAValue]) -> None:
            v, slot = copy.fetch(e, loc), [e.mul(m, copy.width)]
            e.vstore(v, regs, slot) if copy.width > 1 else e.store(v, regs, slot)

        def store(e: Emitter, m: SSAValue, loc: list[SSAValue]) -> None:
            slot = [e.mul(m, copy.width)]
            v = e.vload(regs, slot, copy.width) if copy.width > 1 else e.load(regs, slot)
            copy.put(e, v, loc, [e.sub(e.index(1), part)])

        each(em, load)

        def after(e: Emitter) -> None:
            each(e, store)
            self.fills_unfenced = True
        return [after]

    def thread_id(self, em: Emitter) -> tuple[SSAValue, int]:
        """The block's linear thread id (thread loops are all outside) and the thread count."""
        tid, count = em.index(0), 1
        for a in self.stage.thread_leaves():
            tid = em.add(em.mul(tid, a.extent), self.env[a])
            count *= a.extent
        return tid, count

    def accumulator(self, em: Emitter, k: int) -> list:
        """cache_write: one register per iteration of the spatial loops inside leaf k, which
        the body accumulates into; stored to the output after the inner loops."""
        st = self.stage
        if st.tensorize is not None:
            return self.fragment_accumulator(em, k)
        inner = [a for a in st.leaves[k + 1:] if not a.reduce]
        element = st.output.type.element_type
        buf = em.alloca([a.extent for a in inner] or [1], LOCAL, element=f32 if is_half(element) else element)
        buf.name_hint = f"{st.output.name_hint or 'out'}_local"
        self.redirect[st.output] = (buf, lambda e, idx: [self.env[a] for a in inner] or [e.index(0)])
        init = st.init_select
        if init is not None:
            self.for_each(em, [a.extent for a in inner], lambda e, loc: e.store(e.const(const_value(init.lhs), init.lhs.type), buf, loc or [e.index(0)]))

        def write_back(e: Emitter) -> None:
            saved = {a: self.env[a] for a in inner}
            for a in inner:
                _, self.env[a], e = e.loop(a.extent, {"sched.unroll": UnitAttr()})
            spatial = [r for r in st.roots if not r.reduce]
            e = self.guarded(e, spatial)
            mapping = {iv: self.value(e, r) for iv, r in zip(st.root_ivs, st.roots) if not r.reduce}
            store = st.output_store
            for op in self.slice_of(store.indices):
                e.op(op.clone(mapping))
            loc = [self.env[a] for a in inner] or [e.index(0)]
            value = e.load(buf, loc)
            if st.epilogue is not None:
                value = self.epilogue_at_write_back(e, mapping, value)
            e.store_value(value, st.output, [mapping.get(v, v) for v in store.indices])
            self.env.update(saved)
        return [write_back]

    # tensorized stages: the warp's tile of mma results, in each lane's registers
    def fragment_accumulator(self, em: Emitter, k: int) -> list:
        """The lane's 4 f32 results of each mma of the warp's tile (the spatial loops inside
        leaf k but the tile's own), zero to start; written out after the inner loops at the
        positions the mma result layout gives them: row g + 8 (e / 2), column 2 t + e % 2
        of the 16 x 8 tile for result e, lane = 4 g + t. A wgmma's N / 2 results a thread
        at its layout (dialects/tensorcore.py), after waiting for the last wgmmas."""
        st, tz = self.stage, self.stage.tensorize
        inner = [a for a in st.leaves[k + 1:] if not a.reduce and a not in (tz.m, tz.n)]
        results = wgmma_accumulators(tz.intrinsic) if tz.wide else ACCUMULATORS
        buf = em.alloca([a.extent for a in inner] + [results], LOCAL, element=f32)
        buf.name_hint = f"{st.output.name_hint or 'out'}_frag"
        self.tile_acc = (buf, inner)
        self.for_each(em, [a.extent for a in inner] + [results], lambda e, loc: e.store(e.f32(0.0), buf, loc))

        # a wgmma's f16/bf16 results in pairs of neighbouring columns (tc.store_pair)
        store = st.output_store
        j_root = st.root_ivs[[a.name for a in st.roots].index("j")]
        paired = (tz.wide and is_half(st.output.type.element_type) and st.epilogue is None
                  and store.indices[-1] is j_root and st.output.type.get_shape()[-1] % 2 == 0)

        def write_back(e: Emitter) -> None:
            saved = dict(self.env)
            if tz.wide:
                e.op(WgmmaWaitOp(0))
            for a in inner:
                _, self.env[a], e = e.loop(a.extent, {"sched.unroll": UnitAttr()})
            _, r, e = e.loop(results // 2 if paired else results, {"sched.unroll": UnitAttr()})
            if paired:
                r = e.mul(r, 2)
            lane = self.env[tz.lane]
            if tz.wide:  # and 16 rows a warp, 8 columns each 4 results
                warp, lane = e.floordiv(lane, 32), e.rem(lane, 32)
                self.env[tz.m] = e.add(e.add(e.mul(warp, 16), e.floordiv(lane, 4)), e.mul(e.rem(e.floordiv(r, 2), 2), 8))
                self.env[tz.n] = e.add(e.add(e.mul(e.rem(lane, 4), 2), e.rem(r, 2)), e.mul(e.floordiv(r, 4), 8))
            else:
                self.env[tz.m] = e.add(e.floordiv(lane, 4), e.mul(e.floordiv(r, 2), 8))
                self.env[tz.n] = e.add(e.mul(e.rem(lane, 4), 2), e.rem(r, 2))
            e = self.guarded(e, [root for root in st.roots if not root.reduce])  # a tile past the output
            mapping = {iv: self.value(e, root) for iv, root in zip(st.root_ivs, st.roots) if not root.reduce}
            for op in self.slice_of(store.indices):
                e.op(op.clone(mapping))
            value = e.load(buf, [self.env[a] for a in inner] + [r])
            if paired:
                second = e.load(buf, [self.env[a] for a in inner] + [e.add(r, 1)])
                e.op(StorePairOp(value, second, st.output, [mapping.get(v, v) for v in store.indices]))
                self.env = saved
                return
            if st.epilogue is not None:
                value = self.epilogue_at_write_back(e, mapping, value)
            e.store_value(value, st.output, [mapping.get(v, v) for v in store.indices])
            self.env = saved
        return [write_back]

    def tensor_tile(self, em: Emitter, k: int) -> None:
        """The warp's tile at leaf k, unrolled: for each step of its k loops, the A fragment
        of each row tile and the B fragment of each column tile (pairs of neighbouring column
        tiles in one load), read from their shared buffers while the last step's mmas run,
        then one mma per (row tile, column tile)."""
        st, tz = self.stage, self.stage.tensorize
        i_root, j_root, k_root = st.roots[-3:]
        tile = st.leaves[k:-3]
        rows = [a for a in tile if st.root_of(a) is i_root]
        cols = [a for a in tile if st.root_of(a) is j_root]
        steps = [a for a in tile if st.root_of(a) is k_root]
        lane = self.env[tz.lane]
        saved = dict(self.env)
        for a in (tz.m, tz.n, tz.k):
            self.env[a] = em.index(0)
        root_of_iv = dict(zip(st.root_ivs, st.roots))
        # column tiles c and c + 1 of the innermost column loop lie 8 columns apart: one ldmatrix.x4
        inner_col = next((r.outer for r in st.relations if isinstance(r, Split) and r.inner is tz.n), None)
        paired = (tz.intrinsic == "m16n8k16" and cols and cols[-1] is inner_col and inner_col.extent % 2 == 0)

        def combos(loops: list[Axis]) -> list[tuple[int, ...]]:
            return list(itertools.product(*[range(a.extent) for a in loops]))

        def operand(load: memref.LoadOp, fixed: dict[Axis, int]) -> tuple[SSAValue, list[SSAValue]]:
            """The shared buffer of an operand, and the index of its tile's origin there."""
            for a, v in fixed.items():
                self.env[a] = em.index(v)
            origin = [self.value(em, root_of_iv[v]) for v in load.indices]
            buf, index = self.redirect[load.memref]
            return buf, index(em, origin)

        def fragment(role: str, load: memref.LoadOp, fixed: dict[Axis, int], tiles: int = 1) -> SSAValue:
            buf, origin = operand(load, fixed)
            rank = len(buf.type.get_shape())  # the tile's rows and columns are its last two dims
            frag = em.val(LoadFragmentOp(role, lane, buf, origin, tz.intrinsic, [rank - 2, rank - 1], tiles))
            frag.name_hint = f"{role}_frag"
            return frag

        def load_step(kc: tuple[int, ...]) -> tuple[dict, dict]:
            ks = dict(zip(steps, kc))
            a_frags = {rc: fragment("a", tz.a, {**ks, **dict(zip(rows, rc))}) for rc in combos(rows)}
            b_frags = {}
            for cc in combos(cols):
                if paired and cc[-1] % 2:
                    b_frags[cc] = (b_frags[cc[:-1] + (cc[-1] - 1,)][0], 1)
                else:
                    b_frags[cc] = (fragment("b", tz.b, {**ks, **dict(zip(cols, cc))}, 2 if paired else 1), 0)
            return a_frags, b_frags

        acc, acc_loops = self.tile_acc
        k_steps = combos(steps)
        if tz.wide:
            em.op(WgmmaFenceOp())
            for kc in k_steps:
                for rc in combos(rows):
                    for cc in combos(cols):
                        fixed = {**dict(zip(steps, kc)), **dict(zip(rows, rc)), **dict(zip(cols, cc))}
                        a_buf, a_idx = operand(tz.a, fixed)
                        b_buf, b_idx = operand(tz.b, fixed)
                        em.op(WgmmaOp(lane, a_buf, a_idx, b_buf, b_idx, acc,
                                      [self.env[a] for a in acc_loops] + [em.index(0)], tz.intrinsic))
            em.op(WgmmaCommitOp())
            em.op(WgmmaWaitOp(self.mma_overlap))
            self.env = saved
            return
        loaded = load_step(k_steps[0])
        for s_idx in range(len(k_steps)):
            current = loaded
            if s_idx + 1 < len(k_steps):
                loaded = load_step(k_steps[s_idx + 1])
            a_frags, b_frags = current
            for rc, fa in a_frags.items():
                for cc, (fb, half) in b_frags.items():
                    for a, v in (*zip(rows, rc), *zip(cols, cc)):
                        self.env[a] = em.index(v)
                    em.op(MmaOp(fa, fb, lane, acc, [self.env[a] for a in acc_loops] + [em.index(0)], half,
                                "3xtf32" if st.compute == "3xtf32" else None))
        self.env = saved

    # pipelined shared caches: `stages` buffers filled by asynchronous copies
    def copies_ahead(self, stages: int) -> int:
        """Tiles whose copies run ahead of the one computed: stages - 1, one less where wgmmas
        are left running into the next iteration (their part is not free yet)."""
        return stages - 1 - self.mma_overlap

    def pipeline_start(self, em: Emitter, caches: list[Cache], k: int) -> dict:
        """Before loop k: each cache's buffers, and the copies of the first stages - 1
        iterations' tiles, one commit group per iteration (TMA: one thread starts them, a
        barrier per stage)."""
        axis = self.stage.leaves[k]
        stages = caches[0].stages
        if caches[0].tma:  # check_tma: all of a loop's pipelined caches, or none
            return self.tma_start(em, caches, k)
        bufs = {}
        for s in range(self.copies_ahead(stages)):
            self.env[axis] = em.index(s)
            for c in caches:
                bases, exts = self.footprint(em, c, self.varying(k, "shared"))
                if id(c) not in bufs:
                    bufs[id(c)] = (self.cache_buffer(em, c, "shared", exts, [stages]), exts)
                if s < axis.extent:
                    self.async_fill(em, c, bufs[id(c)][0], bases, exts, s)
            em.op(CopyCommitOp())
        del self.env[axis]
        return bufs

    def pipeline_step(self, em: Emitter, caches: list[Cache], k: int, bufs: dict) -> None:
        """At the top of iteration t of loop k: wait for tile t's copies, a barrier (every
        thread's copies are in, and every thread is done with iteration t - 1), then start
        the copies of tile t + stages - 1 into the part iteration t - 1 used; the inner
        loops read part t % stages. With wgmmas left running into the next iteration
        (mma_overlap = 1), tile t + stages - 2 into the part of iteration t - 2, which the
        barrier shows every warpgroup done with. TMA: the barrier, then one thread starts
        the copies, then every thread waits on tile t's mbarrier."""
        axis = self.stage.leaves[k]
        stages = caches[0].stages
        ahead_by = self.copies_ahead(stages)
        iv = self.env[axis]
        tma = caches[0].tma
        if tma:
            barrier(em)
            self.tma_ahead(em, caches, k, bufs)
            em.op(MbarrierWaitOp(bufs["full"], em.rem(iv, stages), em.rem(em.floordiv(iv, stages), 2)))
        else:
            em.op(CopyWaitOp(ahead_by - 1))
            if any(c.swizzled for c in caches):  # the copies' writes, seen by the wgmmas' reads
                em.op(ProxyFenceOp())
            barrier(em)
        varying = self.varying(k, "shared")
        for c in caches:
            bases, _ = self.footprint(em, c, varying)
            part = em.rem(iv, stages)
            self.redirect[c.memref] = (bufs[id(c)][0], self.buffer_index(c, bases, lambda e, part=part: [part]))
        if tma:
            return
        ahead = em.add(iv, ahead_by)
        if axis.extent > ahead_by:
            then = em.if_(em.cmpi("slt", ahead, axis.extent))
            # the same index, bounded where the compiler (and value_bounds) can see it
            self.env[axis] = then.min(ahead, axis.extent - 1)
            for c in caches:
                bases, exts = self.footprint(then, c, varying)
                self.async_fill(then, c, bufs[id(c)][0], bases, exts, then.rem(ahead, stages))
            self.env[axis] = iv
        em.op(CopyCommitOp())

    # pipelined shared caches filled by the tensor memory accelerator (Hopper)
    def tma_start(self, em: Emitter, caches: list[Cache], k: int) -> dict:
        """Before loop k: each cache's buffers and tensor map, the stages' mbarriers (one
        arrival each: the thread that starts a tile's copies, and their bytes), and the
        copies of the first tiles, started by thread 0."""
        axis = self.stage.leaves[k]
        stages = caches[0].stages
        self.env[axis] = em.index(0)
        bufs: dict = {}
        for c in caches:
            _, exts = self.footprint(em, c, self.varying(k, "shared"))
            buf = self.cache_buffer(em, c, "shared", exts, [stages])
            bufs[id(c)] = (buf, exts, self.tensor_map(em, c, exts))
        full = em.alloca([stages], SHARED, {"sched.align": IntegerAttr(8, i64)}, element=i64)
        full.name_hint = f"{axis.name}_full"
        bufs["full"] = full
        tid, _ = self.thread_id(em)
        one_thread(em, em.cmpi("eq", tid, 0)).op(MbarrierInitOp(full, 1))
        barrier(em)  # every thread sees the barriers initialised
        first = one_thread(em, em.cmpi("eq", tid, 0))
        for s in range(min(self.copies_ahead(stages), axis.extent)):
            self.env[axis] = first.index(s)
            self.tma_fill(first, caches, k, bufs, first.index(s))
        del self.env[axis]
        return bufs

    def tma_ahead(self, em: Emitter, caches: list[Cache], k: int, bufs: dict) -> None:
        """Thread 0 starts the copies of tile t + stages - 1 - mma_overlap (t: loop k's
        iteration), where there is one."""
        axis = self.stage.leaves[k]
        stages = caches[0].stages
        ahead_by = self.copies_ahead(stages)
        if axis.extent <= ahead_by:
            return
        iv = self.env[axis]
        ahead = em.add(iv, ahead_by)
        tid, _ = self.thread_id(em)
        then = one_thread(em, em.all_of([em.cmpi("eq", tid, 0), em.cmpi("slt", ahead, axis.extent)]))
        self.env[axis] = then.min(ahead, axis.extent - 1)
        self.tma_fill(then, caches, k, bufs, then.rem(ahead, stages))
        self.env[axis] = iv

    def tma_fill(self, em: Emitter, caches: list[Cache], k: int, bufs: dict, part: SSAValue) -> None:
        """The copies of the tiles at loop k's current iteration into part `part`, a box a
        swizzled span (64 columns), their bytes announced to the part's barrier first."""
        full = bufs["full"]
        em.op(MbarrierExpectOp(full, part, sum(2 * math.prod(bufs[id(c)][1]) for c in caches)))
        varying = self.varying(k, "shared")
        for c in caches:
            buf, exts, tensor_map = bufs[id(c)]
            bases, _ = self.footprint(em, c, varying)
            box = [*exts[:-1], SWIZZLE_SPAN]
            for col in range(0, exts[-1], SWIZZLE_SPAN):
                src = [*bases[:-1], em.add(bases[-1], col)]
                dst = [part, *[em.index(0)] * (len(exts) - 1), em.index(col)]
                em.op(TmaLoadOp(buf, dst, tensor_map, c.memref, src, full, part, box))

    def tensor_map(self, em: Emitter, cache: Cache, exts: list[int]) -> SSAValue:
        """The tensor map of `cache.memref` for boxes of its tile's rows and one swizzled span,
        made in the host function before the stage's nest (a kernel takes it as a buffer)."""
        name = cache.memref.name_hint
        if any(e != 1 for e in exts[:-2]) or exts[-2] > 256:
            raise fail(cache.op, f"stage '{self.stage.name}': TMA copies a tile of one matrix of at most 256 rows; "
                       f"the tile of '{name}' is {' x '.join(map(str, exts))}")
        block, op = em.block, em.before
        host = self.stage.loop.parent_block()
        while block is not host:
            op = block.parent_op()
            block = op.parent_block()
        tensor_map = Emitter(host, op).val(TensorMapOp(cache.memref, [*exts[:-1], SWIZZLE_SPAN]))
        tensor_map.name_hint = f"{name}_map"
        return tensor_map

    def async_fill(self, em: Emitter, cache: Cache, buf: SSAValue, bases: list[SSAValue], exts: list[int],
                   part: int | SSAValue) -> None:
        """All threads copy the tile at `bases` into part `part` of `buf`: 16 bytes per
        tc.copy_async where its rows allow, a chunk past the tensor's edge (a tile that does
        not divide it) zero-filled without a read; else element by element (a plain copy,
        complete at once, zero outside)."""
        width = 16 // (2 if is_half(cache.memref.type.element_type) else 4)
        # the rows hold whole chunks: each chunk lies all inside the tensor or all outside it
        copy = Copy(cache, buf, bases, exts, width, any_element=True, assume_inside=True)
        if copy.width == 1:
            copy = Copy(cache, buf, bases, exts, 1, any_element=True)
        part_index = [em.index(part) if isinstance(part, int) else part]
        outside = copy.outside_dims()

        def element(e: Emitter, loc: list[SSAValue]) -> None:
            if copy.width == 1:
                v = copy.fetch(e, loc)
                if cache.swizzled:
                    loc = loc[:-2] + list(swizzled_index(e, loc[-2], loc[-1], exts[-2], exts[-1]))
                copy.put(e, v, loc, part_index)
                return
            src = [e.add(b, v) for b, v in zip(bases, copy._elements(e, loc))]
            valid = e.all_of([c for d in outside for c in e.in_range(src[d], 0, copy.shape[d])])
            if valid is not None:  # an address inside the tensor, though nothing is read from it
                src = [e.select(valid, s, e.index(0)) if d in outside else s for d, s in enumerate(src)]
            dst = copy._elements(e, loc)
            if cache.swizzled:
                dst = dst[:-2] + list(swizzled_index(e, dst[-2], dst[-1], exts[-2], exts[-1]))
            e.op(CopyAsyncOp(buf, part_index + dst, cache.memref, src, copy.width, valid))

        self.spread(em, copy.chunks, element)

    def spread(self, em: Emitter, exts: Sequence[int], element) -> None:
        """element(emitter, index) for every index of `exts`, shared by the block's threads
        (all of whose loops are outside): thread t takes t, t + T, ... When T divides the
        count, as a loop of constant extent, unrolled (straight-line copies whose addresses
        the compiler computes once outside the loops around them)."""
        tid, count = self.thread_id(em)
        total = math.prod(exts)
        if total % count == 0:
            _, m, body = em.loop(total // count, {"sched.unroll": UnitAttr()})
            e = body.add(tid, body.mul(m, count))
        else:
            _, e, body = em.loop(total, start=tid, step=count)
        element(body, delinearize(body, e, exts))

    def epilogue_at_write_back(self, e: Emitter, mapping: dict, acc: SSAValue) -> SSAValue:
        """The fused epilogue's then-branch, applied to the accumulated value `acc`."""
        epi = self.stage.epilogue
        block = epi.true_region.block
        inner = {o for op in block.ops for o in op.walk()}
        outside = [v for op in inner for v in op.operands
                   if isinstance(v.owner, Operation) and v.owner not in inner]
        mapping = dict(mapping)
        mapping[epi.false_region.block.last_op.operands[0]] = acc
        for op in self.slice_of([v for v in outside if v not in mapping]):
            if op.results and op.results[0] not in mapping:
                e.op(op.clone(mapping))
        for op in block.ops:
            if isinstance(op, scf.YieldOp):
                return mapping.get(op.operands[0], op.operands[0])
            e.op(op.clone(mapping))
        raise AssertionError("epilogue without a yield")

    def for_each(self, em: Emitter, exts: Sequence[int], fn) -> None:
        """fn(emitter, local index) for every element of a small buffer, unrolled."""
        loc = []
        for n in exts:
            _, iv, em = em.loop(n, {"sched.unroll": UnitAttr()})
            loc.append(iv)
        fn(em, loc)

    def shared_fill(self, em: Emitter, exts: Sequence[int], element) -> list:
        """All threads of the block share the copy: thread t takes elements t, t + T, ...
        A barrier goes before the copy (threads may still read the buffer's last contents)
        and, from level(), after the last copy at that loop."""
        threads = self.stage.thread_leaves()
        outside = [a for a in threads if a in self.env]
        if outside and not self.fills_unfenced:
            barrier(em)
        phase = em
        ivs = {}
        for a in threads:
            if a in self.env:
                ivs[a] = self.env[a]
            else:
                ivs[a], phase = self.loop(phase, Axis(a.name, a.extent, False, a.bind))
        saved = dict(self.env)
        self.env.update(ivs)
        tid, count = self.thread_id(phase)
        self.env = saved
        total = math.prod(exts)
        _, e, body = phase.loop(total, start=tid, step=count)
        element(body, delinearize(body, e, exts))
        self.fills_unfenced = bool(outside)
        return []


def barrier(em: Emitter) -> None:
    """A gpu.barrier at the emitter's point, unless one precedes it with only index
    arithmetic or allocations in between (back-to-back shared fills share their barriers)."""
    op = em.before.prev_op if em.before is not None else em.block.last_op
    while op is not None and (op.name.startswith("arith.") or isinstance(op, memref.AllocaOp)):
        op = op.prev_op
    if not isinstance(op, gpu.BarrierOp):
        em.op(gpu.BarrierOp())


def one_thread(em: Emitter, cond: SSAValue) -> Emitter:
    """A scf.if that one thread of the block takes (`cond` holds for thread 0 alone), marked
    `sched.one_thread` for the tuner's features; an emitter for its then-block."""
    then = em.if_(cond)
    then.block.parent_op().attributes["sched.one_thread"] = UnitAttr()
    return then


def in_bounds(em: Emitter, v: SSAValue, n: int) -> list[SSAValue]:
    return em.in_range(v, 0, n)


class Copy:
    """Copies a tile of a cached input (base `bases`, extent `exts` per dimension) into its
    buffer: element by element, or by aligned vectors of `width` along the last dimension
    when the tile lies inside the input and rows allow it."""

    def __init__(self, cache: Cache, buf: SSAValue, bases: list[SSAValue], exts: list[int], width: int,
                 any_element: bool = False, assume_inside: bool = False):
        """`any_element`: chunks of any element type (tc.copy_async), else float4 vectors.
        `assume_inside`: chunks wherever the tile would lie inside the tensor (`inside()` is
        the condition for that, to be checked at run time)."""
        self.cache, self.buf, self.bases, self.exts = cache, buf, bases, exts
        self.shape = list(cache.memref.type.get_shape())
        self.element = cache.memref.type.element_type
        ok_type = any_element or self.element == f32
        self.width = width if width > 1 and ok_type and self.vectorizable(width, assume_inside) else 1
        if self.width > 1 and any_element and (cache.layout not in (None, sorted(cache.layout or [])) or cache.pad % width):
            self.width = 1  # chunks go to consecutive, aligned elements of a row
        self.chunks = exts[:-1] + [exts[-1] // self.width]

    def vectorizable(self, width: int, assume_inside: bool = False) -> bool:
        if self.exts[-1] % width or self.shape[-1] % width or known_divisor(self.bases[-1]) % width:
            return False
        return assume_inside or not self.outside_dims()

    def outside_dims(self) -> list[int]:
        """The dimensions along which the tile is not known to lie inside the tensor."""
        out = []
        for d, (b, ext, n) in enumerate(zip(self.bases, self.exts, self.shape)):
            known = value_bounds(b)
            if known is None or known[0] < 0 or known[1] + ext > n:
                out.append(d)
        return out

    def unflatten(self, em: Emitter, t: SSAValue) -> list[SSAValue]:
        loc = []
        for n in reversed(self.chunks):
            loc.append(em.rem(t, n))
            t = em.floordiv(t, n)
        return list(reversed(loc))

    def _elements(self, em: Emitter, loc: list[SSAValue]) -> list[SSAValue]:
        return loc[:-1] + [em.mul(loc[-1], self.width)]

    def fetch(self, em: Emitter, loc: list[SSAValue]) -> SSAValue:
        """The chunk at `loc` of the tile, read from the input (0 outside it)."""
        ref = self.cache.memref
        src = [em.add(b, v) for b, v in zip(self.bases, self._elements(em, loc))]
        if self.width > 1:
            return em.vload(ref, src, self.width)
        cond = em.all_of([c for s, n in zip(src, self.shape) for c in in_bounds(em, s, n)])
        return em.load(ref, src) if cond is None else em.if_value(
            cond, lambda t: t.load(ref, src), lambda f: f.const(0, self.element))

    def put(self, em: Emitter, v: SSAValue, loc: list[SSAValue], part: list[SSAValue]) -> None:
        """Stores chunk `v` at `loc` of the tile into the buffer (after the index `part`)."""
        order = self.cache.layout or list(range(len(loc)))
        loc = self._elements(em, loc)
        if self.width == 1 or order[-1] == len(loc) - 1:
            dst = part + [loc[d] for d in order]
            em.vstore(v, self.buf, dst) if self.width > 1 else em.store(v, self.buf, dst)
            return
        for q in range(self.width):  # a layout that moves the last dimension: one element at a time
            lq = loc[:-1] + [em.add(loc[-1], q)]
            em.store(em.extract(v, q), self.buf, part + [lq[d] for d in order])


def copier(cache: Cache, buf: SSAValue, bases: list[SSAValue], exts: list[int]) -> Copy:
    """What fills a double buffer's part: copies of a cached input (float4 vectors where they
    fit), or a computed producer's elements."""
    return ProducerCopy(cache, buf, bases, exts) if cache.kind == "compute" else Copy(cache, buf, bases, exts, 4)


class ProducerCopy(Copy):
    """Copy's element by element interface for a producer computed at a double buffer: each
    element fetched is the producer's value there (zero outside its output), computed into a
    register."""

    def __init__(self, cache: Cache, buf: SSAValue, bases: list[SSAValue], exts: list[int]):
        self.cache, self.buf, self.bases, self.exts = cache, buf, bases, exts
        self.shape = list(cache.memref.type.get_shape())
        self.element = cache.memref.type.element_type
        self.width, self.chunks = 1, list(exts)

    def fetch(self, em: Emitter, loc: list[SSAValue]) -> SSAValue:
        value = em.alloca([1], LOCAL, element=self.element)
        zero = [em.index(0)]
        em.store(em.const(0, self.element), value, zero)
        ProducerFill(self.cache.producer, value, self.bases, self.shape, lambda e, rel: zero).element(em, loc)
        return em.load(value, zero)


class ProducerFill:
    """Computes elements of a producer stage into a buffer (compute_at): element `loc` of the
    region at `bases` goes to buf[index(loc)], by default buf[loc]."""

    def __init__(self, producer: Stage, buf: SSAValue, bases: list[SSAValue], shape: list[int], index=None):
        self.p, self.buf, self.bases, self.shape = producer, buf, bases, shape
        self.index = index or (lambda e, rel: rel)

    def element(self, em: Emitter, loc: list[SSAValue]) -> None:
        p = self.p
        out_idx = [em.add(b, v) for b, v in zip(self.bases, loc)]
        cond = em.all_of([c for s, n in zip(out_idx, self.shape) for c in in_bounds(em, s, n)])
        if cond is not None:
            em = em.if_(cond)
        mapping: dict[SSAValue, SSAValue] = {}
        if any(v not in p.root_ivs for v in p.output_store.indices):
            raise fail(None, f"stage '{p.name}' writes its output at computed indices; it cannot be computed at another stage")
        for iv, v in zip(p.output_store.indices, out_idx):
            mapping[iv] = v
        init = p.init_select
        if init is not None:
            em.store_value(em.const(const_value(init.lhs), init.lhs.type), self.buf, self.index(em, loc))
        for iv, root in zip(p.root_ivs, p.roots):
            if root.reduce:
                _, mapping[iv], em = em.loop(root.extent)
        cloned = [op.clone(mapping) for op in p.body]
        for op in cloned:
            em.op(op)
        if init is not None:
            sel = mapping[init.result]
            sel.replace_all_uses_with(sel.owner.rhs)
            sel.owner.detach()
            sel.owner.erase()
        for op in cloned:
            for inner in list(op.walk()):
                if isinstance(inner, (memref.LoadOp, memref.StoreOp)) and inner.memref == p.output:
                    e = Emitter(inner.parent_block(), inner)
                    idx = self.index(e, [e.sub(v, b) for v, b in zip(inner.indices, self.bases)])
                    if isinstance(inner, memref.LoadOp):
                        new = e.load(self.buf, idx)
                        inner.results[0].replace_all_uses_with(new)
                    else:
                        e.store(inner.value, self.buf, idx)
                    inner.detach()
                    inner.erase()
