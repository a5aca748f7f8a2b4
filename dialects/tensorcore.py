"""The `tc` dialect: warp-level matrix multiply-accumulate (NVIDIA's mma.sync) and
asynchronous global-to-shared copies, as ops with a plain meaning.

`apply-schedule` writes these for a tensorized stage (`sched.tensorize`) and for pipelined
shared caches (`sched.cache_read ... stages`). On NVIDIA the printers emit the instructions
(`ldmatrix`, `mma.sync`, `cp.async`); elsewhere `tc-to-loops` rewrites each op into the
loops that are its meaning, so one schedule runs on every device.

The 32 lanes of a warp execute these ops together (`lane` is the lane's index, 0..31).
Meaning of each op, for lane l, with g = l / 4 and t = l % 4:

- `%f = tc.load_fragment "a" %lane, %buf[%i, %j] {intrinsic, dims}`: the operand tile of
  the warp's next mma, element (r, c) at buf[.., i + r, .., j + c, ..] (the buffer dims
  `dims` = (rows, cols) of the tile): A is M x K (row-major), B is K x N; with `tiles = 2`
  (B only) two neighbouring B tiles, columns 0..N-1 and N..2N-1.
- `tc.mma %a, %b, %lane, %acc[%i..] {b_tile}`: acc[.., q + e] += sum_k A(row, k) * B(k, col)
  for e = 0..3, row = g + 8 * (e / 2), col = 2 t + e % 2 (+ N for b_tile 1 of a pair),
  where q is the last index: each lane holds 4 of the 16 x 8 f32 results (the C fragment
  layout of mma.m16n8kK). With `compute = "3xtf32"` (m16n8k8 only) the products keep
  f32's precision to about 2^-20: each operand x is taken as hi = tf32(x) plus
  lo = tf32(x - hi), and the mma is three, lo*hi + hi*lo + hi*hi (lo*lo is left out).
- `tc.copy_async %dst[..], %src[..] {elements}`: dst[.., q + e] = src[.., p + e] for
  e < elements (16 bytes), complete once a later `tc.copy_wait` leaves fewer groups pending
  than were committed after it (`tc.copy_commit` closes a group). With `if %valid` (i1):
  where %valid is false, dst[.., q + e] = 0 and src is not read (a chunk past the tensor's
  edge: cp.async's zero fill).

Intrinsics: "m16n8k16" (f16 or bf16 operands) and "m16n8k8" (tf32: f32 operands taken at
TF32 precision, or as two TF32 parts with compute "3xtf32"); results are f32.

Warpgroup-level mma (Hopper's `wgmma.mma_async`, "m64n64k16", "m64n128k16", "m64n256k16",
f16/bf16 operands): the 128 threads of a warpgroup (4 consecutive warps) compute a 64 x N
tile together, reading both operands straight from shared memory.

- `tc.wgmma %lane, %a[%i..], %b[%j..], %acc[%q..] {intrinsic}`: for thread l of the
  warpgroup (w = l / 32, g = l % 32 / 4, t = l % 4), acc[.., q + e] += sum_k A(row, k) *
  B(k, col) for e < N / 2, row = 16 w + g + 8 ((e / 2) % 2), col = 8 (e / 4) + 2 t + e % 2,
  k < 16; A is the 64 x 16 tile at the origin %i.. of %a (its last two dims: rows, k), B
  the 16 x N tile at %j.. of %b (k, columns). Both buffers hold their tiles in the
  swizzled layout (see `swizzled_position`): the element (r, c) of a R x C buffer lies
  at `swizzled_position(r, c, R, C)`. Async: complete after
  `tc.wgmma_commit` and a `tc.wgmma_wait` that leaves fewer groups pending; `tc.wgmma_fence`
  goes before the first wgmma that reads registers other instructions wrote, and
  `tc.proxy_fence` between shared memory written by copies and a wgmma that reads it.

- `tc.store_pair %v0, %v1, %out[%i..]`: out[.., j] = v0 and out[.., j + 1] = v1 (j the last
  index, even), rounded to out's f16/bf16: two neighbouring results of a wgmma's
  accumulator, which CUDA stores as one 4-byte pair (converted one by one, ptxas serializes
  the wgmmas that write them).

Copies by Hopper's tensor memory accelerator (TMA), into the swizzled layout a wgmma reads:

- `%map = tc.tensor_map %A {box}` (in the host function): the descriptor of global tensor A
  that TMA copies of `box`-shaped tiles (one extent per dimension, the last 64 elements of
  2 bytes: one swizzled span) read through; the runtime encodes it once A is allocated, and
  kernels take it as a 128-byte buffer.
- `tc.tma_load %dst[%d..], %map, %A[%s..], %bars[%b]`: the box at %s.. of A (elements past A's
  edge read as 0) lands in the swizzled buffer %dst: element (r, c) of the box (its last two
  dims) at `swizzled_position(d_r + r, d_c + c, R, C)` of %dst's last two dims R x C, the
  leading indices %d..; %d_c starts a span, %d_r a group of 8 rows. Complete once the
  barrier %bars[%b] that it reports its bytes to completes.
- `tc.mbarrier_init %bars {count}`: every barrier of %bars (shared, i64) starts its phase 0,
  to complete after `count` arrivals.
- `tc.mbarrier_expect %bars[%b] {bytes}`: one arrival, and the phase also waits for `bytes`
  that copies report to the barrier.
- `tc.mbarrier_wait %bars[%b], %parity`: waits until the phase of parity %parity (0 or 1;
  phase n has parity n % 2) of the barrier has completed.

Elsewhere a tc.tma_load is a plain copy by the thread that issues it (complete at once), and
the barriers go away: the block barrier the schedule places before each use still orders it.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import (
    BFloat16Type,
    IntAttr,
    DenseArrayBase,
    Float16Type,
    Float32Type,
    IndexType,
    IntegerAttr,
    MemRefType,
    StringAttr,
    i1,
    i64,
)
from xdsl.ir import Attribute, Dialect, Operation, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    var_operand_def,
)
from xdsl.utils.exceptions import VerifyException

from sched_dsl.dialects.memspace import LOCAL, SHARED

# intrinsic -> (M, N, K)
SHAPES = {"m16n8k16": (16, 8, 16), "m16n8k8": (16, 8, 8)}
LANES = 32
ACCUMULATORS = 4  # f32 results per lane of one mma
# warpgroup mma: intrinsic -> (M, N, K), 128 threads, f32 results per thread N / 2
WGMMA_SHAPES = {"m64n64k16": (64, 64, 16), "m64n128k16": (64, 128, 16), "m64n256k16": (64, 256, 16)}
WARPGROUP = 128
SWIZZLE_SPAN = 64  # elements of 2 bytes in a swizzled row: 128 bytes, eight 16-byte chunks
SWIZZLE_ALIGN = 1024  # bytes: a swizzled buffer starts at an atom (8 rows of 128 bytes)


def swizzled_position(r: int, c: int, rows: int, cols: int) -> tuple[int, int]:
    """Where element (r, c) of a rows x cols shared operand tile of a wgmma lies (cols a multiple
    of 64, rows of 8): the tile is cut into column spans of 64 elements (128 bytes), each
    stored whole (rows x 64, row-major) after the last, and in each row the 16-byte chunks
    are permuted: chunk h of row r is stored as chunk h XOR (r % 8). This is the layout
    the hardware reads with 128-byte swizzling (eight rows of 128 bytes an atom), so the
    eight rows a copy writes and an mma reads at once fall in different banks.
    Returned as (row, column) of the same rows x cols buffer."""
    span, within = divmod(c, SWIZZLE_SPAN)
    flat = span * rows * SWIZZLE_SPAN + r * SWIZZLE_SPAN + 8 * ((within // 8) ^ (r % 8)) + within % 8
    return divmod(flat, cols)


def wgmma_accumulators(intrinsic: str) -> int:
    return WGMMA_SHAPES[intrinsic][1] // 2


def intrinsic_for(element: Attribute) -> str | None:
    """The mma shape that takes operands of this element type (f32 means tf32), or None."""
    if isinstance(element, (Float16Type, BFloat16Type)):
        return "m16n8k16"
    if isinstance(element, Float32Type):
        return "m16n8k8"
    return None


@irdl_attr_definition
class FragmentType(ParametrizedAttribute, TypeAttribute):
    """A warp's operand tile of one mma, spread over its lanes' registers."""

    name = "tc.frag"
    role: StringAttr  # "a" or "b"
    intrinsic: StringAttr
    element: Attribute
    tiles: IntAttr  # operand tiles held (B: 1, or 2 neighbouring ones)


def _check_indices(op: IRDLOperation, ref: SSAValue, indices: Sequence[SSAValue], what: str) -> None:
    if not isinstance(ref.type, MemRefType):
        raise VerifyException(f"{op.name}: {what} must be a memref, got {ref.type}")
    if len(indices) != len(ref.type.get_shape()):
        raise VerifyException(f"{op.name}: {what} has {len(ref.type.get_shape())} dimensions, "
                              f"indexed with {len(indices)}")


def _check_accumulator(op: IRDLOperation, acc: SSAValue, indices: Sequence[SSAValue], group: int) -> None:
    """A thread's own f32 buffer, whose last dimension holds whole groups of `group` results."""
    _check_indices(op, acc, indices, "the accumulator")
    t = acc.type
    if not isinstance(t.element_type, Float32Type) or t.memory_space != LOCAL:
        raise VerifyException(f"{op.name}: the accumulator must be a thread's own f32 buffer, got {t}")
    if t.get_shape()[-1] % group:
        raise VerifyException(f"{op.name}: the accumulator's last dimension must hold groups of {group}")


@irdl_op_definition
class LoadFragmentOp(IRDLOperation):
    name = "tc.load_fragment"
    lane = operand_def(IndexType)
    buffer = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    role = prop_def(StringAttr)
    intrinsic = prop_def(StringAttr)
    dims = prop_def(DenseArrayBase)
    tiles = prop_def(IntegerAttr)
    result = result_def(FragmentType)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = ("$role $lane `,` $buffer `[` $indices `]` attr-dict `:` type($buffer) `->` type($result)")

    def __init__(self, role: str, lane: SSAValue, buffer: SSAValue, indices: Sequence[SSAValue], intrinsic: str,
                 dims: Sequence[int], tiles: int = 1):
        element = buffer.type.element_type
        super().__init__(operands=[lane, buffer, list(indices)],
                         properties={"role": StringAttr(role), "intrinsic": StringAttr(intrinsic),
                                     "dims": DenseArrayBase.from_list(i64, list(dims)),
                                     "tiles": IntegerAttr(tiles, i64)},
                         result_types=[FragmentType(StringAttr(role), StringAttr(intrinsic), element, IntAttr(tiles))])

    def tile(self) -> tuple[int, int]:
        m, n, k = SHAPES[self.intrinsic.data]
        return (m, k) if self.role.data == "a" else (k, n)

    def verify_(self) -> None:
        if self.role.data not in ("a", "b"):
            raise VerifyException(f"tc.load_fragment: role must be \"a\" or \"b\", got \"{self.role.data}\"")
        if self.intrinsic.data not in SHAPES:
            raise VerifyException(f"tc.load_fragment: intrinsic '{self.intrinsic.data}' is not one of "
                                  f"{', '.join(SHAPES)}")
        _check_indices(self, self.buffer, self.indices, "the buffer")
        t = self.buffer.type
        if intrinsic_for(t.element_type) != self.intrinsic.data:
            raise VerifyException(f"tc.load_fragment: {self.intrinsic.data} does not take {t.element_type} operands")
        if t.memory_space != SHARED:
            raise VerifyException("tc.load_fragment: the operand tile must be in shared memory")
        dims = list(self.dims.get_values())
        if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < len(t.get_shape()) for d in dims):
            raise VerifyException(f"tc.load_fragment: dims {dims} must name two dimensions of the buffer")
        tiles = self.tiles.value.data
        if tiles not in (1, 2) or (tiles == 2 and (self.role.data != "b" or self.intrinsic.data != "m16n8k16")):
            raise VerifyException(f"tc.load_fragment: {tiles} tiles; a B fragment of m16n8k16 may hold 2, "
                                  "others 1")
        if self.result.type != FragmentType(self.role, self.intrinsic, t.element_type, IntAttr(tiles)):
            raise VerifyException(f"tc.load_fragment: result type {self.result.type} does not match the operand")


@irdl_op_definition
class MmaOp(IRDLOperation):
    name = "tc.mma"
    a = operand_def(FragmentType)
    b = operand_def(FragmentType)
    lane = operand_def(IndexType)
    acc = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    b_tile = prop_def(IntegerAttr)
    compute = opt_prop_def(StringAttr)  # "3xtf32": three TF32 mmas, near f32's precision
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = ("$a `,` $b `,` $lane `,` $acc `[` $indices `]` attr-dict `:` type($a) `,` type($b) `,` "
                       "type($acc)")

    def __init__(self, a: SSAValue, b: SSAValue, lane: SSAValue, acc: SSAValue, indices: Sequence[SSAValue],
                 b_tile: int = 0, compute: str | None = None):
        props = {"b_tile": IntegerAttr(b_tile, i64)}
        if compute is not None:
            props["compute"] = StringAttr(compute)
        super().__init__(operands=[a, b, lane, acc, list(indices)], properties=props)

    @property
    def intrinsic(self) -> str:
        return self.a.type.intrinsic.data

    @property
    def split(self) -> bool:
        """Each operand taken as a TF32 part and a TF32 remainder (compute "3xtf32")."""
        return self.compute is not None

    def verify_(self) -> None:
        a, b = self.a.type, self.b.type
        if a.role.data != "a" or b.role.data != "b":
            raise VerifyException("tc.mma: takes an \"a\" fragment, then a \"b\" fragment")
        if a.intrinsic != b.intrinsic or a.element != b.element:
            raise VerifyException(f"tc.mma: fragments of different mma shapes or types: {a} and {b}")
        if self.compute is not None and (self.compute.data != "3xtf32" or a.intrinsic.data != "m16n8k8"):
            raise VerifyException(f"tc.mma: compute \"{self.compute.data}\" with {a.intrinsic.data}; only "
                                  "m16n8k8 (f32 operands) takes compute \"3xtf32\"")
        if not 0 <= self.b_tile.value.data < b.tiles.data:
            raise VerifyException(f"tc.mma: b_tile {self.b_tile.value.data} of a fragment of {b.tiles.data} tile(s)")
        _check_accumulator(self, self.acc, self.indices, ACCUMULATORS)


@irdl_op_definition
class CopyAsyncOp(IRDLOperation):
    name = "tc.copy_async"
    dst = operand_def(MemRefType)
    dst_indices = var_operand_def(IndexType)
    src = operand_def(MemRefType)
    src_indices = var_operand_def(IndexType)
    valid = opt_operand_def(i1)
    elements = prop_def(IntegerAttr)
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = ("$dst `[` $dst_indices `]` `,` $src `[` $src_indices `]` (`if` $valid^)? attr-dict `:` "
                       "type($dst) `,` type($src)")

    def __init__(self, dst: SSAValue, dst_indices: Sequence[SSAValue], src: SSAValue,
                 src_indices: Sequence[SSAValue], elements: int, valid: SSAValue | None = None):
        super().__init__(operands=[dst, list(dst_indices), src, list(src_indices), [valid] if valid else []],
                         properties={"elements": IntegerAttr(elements, i64)})

    def verify_(self) -> None:
        _check_indices(self, self.dst, self.dst_indices, "the destination")
        _check_indices(self, self.src, self.src_indices, "the source")
        if self.dst.type.element_type != self.src.type.element_type:
            raise VerifyException("tc.copy_async: source and destination hold different element types")
        if self.dst.type.memory_space != SHARED or self.src.type.memory_space in (SHARED, LOCAL):
            raise VerifyException("tc.copy_async: copies from global to shared memory")
        width = 2 if isinstance(self.dst.type.element_type, (Float16Type, BFloat16Type)) else 4
        if self.elements.value.data * width != 16:
            raise VerifyException(f"tc.copy_async: copies 16 bytes, not {self.elements.value.data} elements "
                                  f"of {width} bytes")


@irdl_op_definition
class CopyCommitOp(IRDLOperation):
    name = "tc.copy_commit"
    assembly_format = "attr-dict"


class GroupWaitOp(IRDLOperation):
    """Waits until at most `pending` of the committed groups are still in flight."""

    pending = prop_def(IntegerAttr)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$pending attr-dict"

    def __init__(self, pending: int):
        super().__init__(properties={"pending": IntegerAttr(pending, i64)})


@irdl_op_definition
class CopyWaitOp(GroupWaitOp):
    name = "tc.copy_wait"


@irdl_op_definition
class WgmmaOp(IRDLOperation):
    name = "tc.wgmma"
    lane = operand_def(IndexType)
    a = operand_def(MemRefType)
    a_indices = var_operand_def(IndexType)
    b = operand_def(MemRefType)
    b_indices = var_operand_def(IndexType)
    acc = operand_def(MemRefType)
    acc_indices = var_operand_def(IndexType)
    intrinsic = prop_def(StringAttr)
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = ("$lane `,` $a `[` $a_indices `]` `,` $b `[` $b_indices `]` `,` $acc `[` $acc_indices `]` "
                       "attr-dict `:` type($a) `,` type($b) `,` type($acc)")

    def __init__(self, lane: SSAValue, a: SSAValue, a_indices: Sequence[SSAValue], b: SSAValue,
                 b_indices: Sequence[SSAValue], acc: SSAValue, acc_indices: Sequence[SSAValue], intrinsic: str):
        super().__init__(operands=[lane, a, list(a_indices), b, list(b_indices), acc, list(acc_indices)],
                         properties={"intrinsic": StringAttr(intrinsic)})

    def shape(self) -> tuple[int, int, int]:
        return WGMMA_SHAPES[self.intrinsic.data]

    def verify_(self) -> None:
        if self.intrinsic.data not in WGMMA_SHAPES:
            raise VerifyException(f"tc.wgmma: intrinsic '{self.intrinsic.data}' is not one of {', '.join(WGMMA_SHAPES)}")
        m, n, k = self.shape()
        for ref, idx, what, (rows, cols) in ((self.a, self.a_indices, "A", (m, k)), (self.b, self.b_indices, "B", (k, n))):
            _check_indices(self, ref, idx, what)
            t = ref.type
            if not isinstance(t.element_type, (Float16Type, BFloat16Type)) or t.memory_space != SHARED:
                raise VerifyException(f"tc.wgmma: {what} must be an f16/bf16 shared buffer, got {t}")
            shape = t.get_shape()
            if len(shape) < 2 or shape[-1] % SWIZZLE_SPAN or shape[-2] % 8 or shape[-2] < rows or shape[-1] < cols:
                raise VerifyException(f"tc.wgmma: {what}'s buffer {list(shape)} must end in rows of 8 and columns "
                                      f"of {SWIZZLE_SPAN} (its swizzled layout), holding a {rows} x {cols} tile")
        if self.a.type.element_type != self.b.type.element_type:
            raise VerifyException("tc.wgmma: A and B hold different element types")
        _check_accumulator(self, self.acc, self.acc_indices, n // 2)


@irdl_op_definition
class WgmmaFenceOp(IRDLOperation):
    name = "tc.wgmma_fence"
    assembly_format = "attr-dict"


@irdl_op_definition
class WgmmaCommitOp(IRDLOperation):
    name = "tc.wgmma_commit"
    assembly_format = "attr-dict"


@irdl_op_definition
class WgmmaWaitOp(GroupWaitOp):
    name = "tc.wgmma_wait"


@irdl_op_definition
class ProxyFenceOp(IRDLOperation):
    name = "tc.proxy_fence"
    assembly_format = "attr-dict"


@irdl_op_definition
class StorePairOp(IRDLOperation):
    name = "tc.store_pair"
    first = operand_def(Float32Type)
    second = operand_def(Float32Type)
    out = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$first `,` $second `,` $out `[` $indices `]` attr-dict `:` type($out)"

    def __init__(self, first: SSAValue, second: SSAValue, out: SSAValue, indices: Sequence[SSAValue]):
        super().__init__(operands=[first, second, out, list(indices)])

    def verify_(self) -> None:
        _check_indices(self, self.out, self.indices, "the output")
        t = self.out.type
        if not isinstance(t.element_type, (Float16Type, BFloat16Type)) or t.get_shape()[-1] % 2:
            raise VerifyException(f"tc.store_pair: stores pairs into an f16/bf16 buffer of rows of an even length, "
                                  f"got {t}")


TMA_MAP_WORDS = 16  # a tensor map: 128 bytes, kept in a global buffer of 16 i64


def _check_barrier(op: IRDLOperation, bars: SSAValue, what: str) -> None:
    t = bars.type
    if not isinstance(t, MemRefType) or t.memory_space != SHARED or t.element_type != i64 or len(t.get_shape()) != 1:
        raise VerifyException(f"{op.name}: {what} must be a 1-d shared buffer of i64 (mbarriers), got {t}")


@irdl_op_definition
class TensorMapOp(IRDLOperation):
    name = "tc.tensor_map"
    tensor = operand_def(MemRefType)
    box = prop_def(DenseArrayBase)
    result = result_def(MemRefType)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$tensor attr-dict `:` type($tensor) `->` type($result)"

    def __init__(self, tensor: SSAValue, box: Sequence[int]):
        super().__init__(operands=[tensor], properties={"box": DenseArrayBase.from_list(i64, list(box))},
                         result_types=[MemRefType(i64, [TMA_MAP_WORDS])])

    def box_shape(self) -> list[int]:
        return list(self.box.get_values())

    def verify_(self) -> None:
        t = self.tensor.type
        shape, box = t.get_shape(), self.box_shape()
        if not isinstance(t.element_type, (Float16Type, BFloat16Type)) or t.memory_space in (SHARED, LOCAL):
            raise VerifyException(f"tc.tensor_map: TMA copies read an f16/bf16 global tensor, got {t}")
        if not 2 <= len(shape) <= 5 or len(box) != len(shape):
            raise VerifyException(f"tc.tensor_map: a box {box} for a tensor of {len(shape)} dims (2 to 5)")
        if box[-1] != SWIZZLE_SPAN or any(not 1 <= b <= 256 for b in box) or box[-2] % 8:
            raise VerifyException(f"tc.tensor_map: box {box} must end in {SWIZZLE_SPAN} elements (one swizzled "
                                  "span of 128 bytes) after rows of a multiple of 8, each extent 1..256")
        if shape[-1] % 8:
            raise VerifyException(f"tc.tensor_map: rows of {shape[-1]} elements are not a multiple of 16 bytes, "
                                  "which TMA needs between rows")


@irdl_op_definition
class TmaLoadOp(IRDLOperation):
    name = "tc.tma_load"
    dst = operand_def(MemRefType)
    dst_indices = var_operand_def(IndexType)
    map = operand_def(MemRefType)
    src = operand_def(MemRefType)
    src_indices = var_operand_def(IndexType)
    bars = operand_def(MemRefType)
    bar = operand_def(IndexType)
    box = prop_def(DenseArrayBase)  # the map's box (inside a kernel the map is a parameter)
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = ("$dst `[` $dst_indices `]` `,` $map `,` $src `[` $src_indices `]` `,` $bars `[` $bar `]` "
                       "attr-dict `:` type($dst) `,` type($map) `,` type($src) `,` type($bars)")

    def __init__(self, dst: SSAValue, dst_indices: Sequence[SSAValue], tensor_map: SSAValue, src: SSAValue,
                 src_indices: Sequence[SSAValue], bars: SSAValue, bar: SSAValue, box: Sequence[int]):
        super().__init__(operands=[dst, list(dst_indices), tensor_map, src, list(src_indices), bars, bar],
                         properties={"box": DenseArrayBase.from_list(i64, list(box))})

    def box_shape(self) -> list[int]:
        return list(self.box.get_values())

    def verify_(self) -> None:
        _check_indices(self, self.dst, self.dst_indices, "the destination")
        _check_indices(self, self.src, self.src_indices, "the source")
        _check_barrier(self, self.bars, "the barrier")
        if self.map.type != MemRefType(i64, [TMA_MAP_WORDS]):
            raise VerifyException(f"tc.tma_load: the map must be a tc.tensor_map's {TMA_MAP_WORDS} x i64, "
                                  f"got {self.map.type}")
        t = self.dst.type
        if t.memory_space != SHARED or t.element_type != self.src.type.element_type:
            raise VerifyException("tc.tma_load: copies into a shared buffer of the source's element type")
        if isinstance(self.map.owner, TensorMapOp) and self.map.owner.box_shape() != self.box_shape():
            raise VerifyException(f"tc.tma_load: box {self.box_shape()} is not its map's {self.map.owner.box_shape()}")
        if t.get_shape()[-1] % SWIZZLE_SPAN or t.get_shape()[-2] % 8:
            raise VerifyException(f"tc.tma_load: the destination {list(t.get_shape())} must end in rows of 8 and "
                                  f"columns of {SWIZZLE_SPAN} (its swizzled layout)")


class MbarrierOp(IRDLOperation):
    """An op on a stage's mbarriers, a 1-d shared buffer of i64 (`bars`, each op's first operand)."""

    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        _check_barrier(self, self.bars, "the barriers")


@irdl_op_definition
class MbarrierInitOp(MbarrierOp):
    name = "tc.mbarrier_init"
    bars = operand_def(MemRefType)
    count = prop_def(IntegerAttr)
    assembly_format = "$bars attr-dict `:` type($bars)"

    def __init__(self, bars: SSAValue, count: int):
        super().__init__(operands=[bars], properties={"count": IntegerAttr(count, i64)})


@irdl_op_definition
class MbarrierExpectOp(MbarrierOp):
    name = "tc.mbarrier_expect"
    bars = operand_def(MemRefType)
    bar = operand_def(IndexType)
    bytes = prop_def(IntegerAttr)
    assembly_format = "$bars `[` $bar `]` attr-dict `:` type($bars)"

    def __init__(self, bars: SSAValue, bar: SSAValue, nbytes: int):
        super().__init__(operands=[bars, bar], properties={"bytes": IntegerAttr(nbytes, i64)})


@irdl_op_definition
class MbarrierWaitOp(MbarrierOp):
    name = "tc.mbarrier_wait"
    bars = operand_def(MemRefType)
    bar = operand_def(IndexType)
    parity = operand_def(IndexType)
    assembly_format = "$bars `[` $bar `]` `,` $parity attr-dict `:` type($bars)"

    def __init__(self, bars: SSAValue, bar: SSAValue, parity: SSAValue):
        super().__init__(operands=[bars, bar, parity])


def in_kernels(op: Operation) -> bool:
    """A tc op of kernel code: every one but tc.tensor_map, which stays in the host function."""
    return op.dialect_name() == "tc" and not isinstance(op, TensorMapOp)


TensorCoreDialect = Dialect("tc", [LoadFragmentOp, MmaOp, CopyAsyncOp, CopyCommitOp, CopyWaitOp, WgmmaOp,
                                   WgmmaFenceOp, WgmmaCommitOp, WgmmaWaitOp, ProxyFenceOp, TensorMapOp, TmaLoadOp,
                                   MbarrierInitOp, MbarrierExpectOp, MbarrierWaitOp, StorePairOp], [FragmentType])
