"""The `sched` dialect: schedules as IR, kept apart from the payload.

A `sched.schedule` region holds the schedule of a module's stages. Loops are addressed by
`!sched.loop` handles: `sched.loop` names a loop of a stage's nest by its axis name, and the
transformations consume handles and produce new ones, as in MLIR's transform dialect.
`apply-schedule` interprets these ops on the loop nests that `tensorop-to-loops` made.

Checks that need only the schedule (a factor < 1, a handle used after it was split, one
loop bound twice, a reorder across stages) are made here; those that need the payload (an
unknown axis, vectorizing a loop that is not innermost) are made by `apply-schedule`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from math import isqrt

from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, StringAttr, UnitAttr, i64
from xdsl.ir import Dialect, Operation, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import NoTerminator
from xdsl.utils.exceptions import VerifyException

BIND_TAGS = ("block.x", "block.y", "block.z", "thread.x", "thread.y", "thread.z")
SCOPES = ("shared", "local")
# knob names: what a config (`name=value,...`) can spell, e.g. `ti` or `conv1.ti`
KNOB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.$-]*")


class ScheduleVerifyException(VerifyException):
    """A check of sched.schedule that is about one op in it: `op` is where to report it."""

    def __init__(self, op: Operation, msg: str):
        super().__init__(msg)
        self.op = op


@irdl_attr_definition
class LoopType(ParametrizedAttribute, TypeAttribute):
    """A handle to one loop of a stage's nest."""

    name = "sched.loop"


@irdl_attr_definition
class KnobType(ParametrizedAttribute, TypeAttribute):
    """A tunable integer, fixed to one of its candidates when the schedule is applied."""

    name = "sched.knob"


def _loop_result():
    return result_def(LoopType)


@irdl_op_definition
class ScheduleOp(IRDLOperation):
    """Holds the schedule ops of a module; they run in order."""

    name = "sched.schedule"
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = "attr-dict-with-keyword $body"

    def __init__(self, ops: Sequence[Operation] = ()):
        from xdsl.ir import Block, Region

        super().__init__(regions=[Region(Block(ops))])

    def verify_(self) -> None:
        consumed: dict[SSAValue, Operation] = {}
        bound: dict[SSAValue, str] = {}
        defined: set[SSAValue] = set()
        for op in self.body.ops:
            if not isinstance(op, SchedOp):
                raise ScheduleVerifyException(op, f"sched.schedule may hold only sched ops, found {op.name}")
            for k, v in enumerate(op.operands):
                if v not in defined:  # a handle of this op or a later one: it would have no origin
                    name = f"%{v.name_hint}" if v.name_hint else f"operand {k}"
                    raise ScheduleVerifyException(op, f"{op.name}: {name} is used before it is defined")
            defined.update(op.results)
            handles = [v for v in op.operands if isinstance(v.type, LoopType)]
            for h in handles:
                if h in consumed:
                    raise ScheduleVerifyException(
                        op, f"{op.name}: loop {loop_label(h)} was already replaced by {consumed[h].name}"
                    )
            if isinstance(op, (SplitOp, FuseOp, TileOp)):
                for h in handles:
                    consumed[h] = op
            if isinstance(op, BindOp):
                if op.loop in bound:
                    raise ScheduleVerifyException(
                        op, f"sched.bind: loop {loop_label(op.loop)} is already bound to {bound[op.loop]}"
                    )
                bound[op.loop] = op.tag.data
            stages = {loop_stage(h) for h in handles}
            if len(stages) > 1:
                raise ScheduleVerifyException(
                    op, f"{op.name}: loops of different nests ({', '.join(sorted(stages))}) cannot be combined"
                )


class SchedOp(IRDLOperation):
    """Base of the ops that may stand in a sched.schedule."""

    irdl_options = (ParsePropInAttrDict(),)


def loop_origin(handle: SSAValue) -> LoopOp:
    """The sched.loop op a handle descends from (through splits, fuses, tiles)."""
    op = handle.owner
    while not isinstance(op, LoopOp):
        assert isinstance(op, (SplitOp, FuseOp, TileOp)), op
        op = op.operands[0].owner
    return op


def loop_stage(handle: SSAValue) -> str:
    return loop_origin(handle).stage.data


def loop_label(handle: SSAValue) -> str:
    hint = handle.name_hint
    return f"'{hint}'" if hint else f"of stage '{loop_stage(handle)}'"


@irdl_op_definition
class LoopOp(SchedOp):
    """`%i = sched.loop "C" "i"`: the loop of stage C over axis i."""

    name = "sched.loop"
    stage = prop_def(StringAttr)
    axis = prop_def(StringAttr)
    result = _loop_result()
    assembly_format = "$stage $axis attr-dict"

    def __init__(self, stage: str, axis: str):
        super().__init__(properties={"stage": StringAttr(stage), "axis": StringAttr(axis)},
                         result_types=[LoopType()])


KNOB_DERIVATIONS = ("divisors", "pow2")
MAX_INT = 2**63 - 1  # factors and candidates are i64 in the IR


def knob_name_problem(name) -> str | None:
    """Why `name` cannot name a knob, or None."""
    if not isinstance(name, str) or not KNOB_NAME.fullmatch(name):
        return (f"knob name {name!r}: a knob name is a letter or _, then letters, digits and _ . $ - "
                "(a config names knobs as name=value,...)")
    return None


MAX_DERIVED_EXTENT = 1 << 40  # listing the divisors of a larger extent takes too long


def derived_candidates(kind: str, extent: int) -> list[int]:
    """The split factors a knob of this kind may take for a loop of `extent`: its divisors,
    or the powers of two up to it."""
    if kind not in KNOB_DERIVATIONS:
        raise ValueError(f"unknown knob kind '{kind}'; choose from {', '.join(KNOB_DERIVATIONS)}")
    if extent > MAX_DERIVED_EXTENT:
        raise ValueError(f"extent {extent} is larger than {MAX_DERIVED_EXTENT}")
    if kind == "pow2":
        return [1 << p for p in range(extent.bit_length()) if 1 << p <= extent]
    small = [d for d in range(1, isqrt(extent) + 1) if extent % d == 0]
    return sorted(set(small + [extent // d for d in small]))


def is_derived_candidate(kind: str, extent: int, value: int) -> bool:
    """Whether `value` is one of derived_candidates(kind, extent), without listing them."""
    if kind == "divisors":
        return 1 <= value <= extent and extent % value == 0
    return 1 <= value <= extent and value & (value - 1) == 0


@irdl_op_definition
class KnobOp(SchedOp):
    """`%t = sched.knob "ti" [4, 8, 16]`: a named tunable value; the first candidate is the default.

    A split-factor knob also records where its candidates come from,
    `%t = sched.knob "ti" [8, 16, 32] divisors of 64` (or `pow2 of 64`): they must be
    divisors (powers of two) of that extent."""

    name = "sched.knob"
    knob_name = prop_def(StringAttr, prop_name="knob")
    candidates = prop_def(DenseArrayBase)
    derive = opt_prop_def(StringAttr)
    extent = opt_prop_def(IntegerAttr)
    result = result_def(KnobType)

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_string_literal(self.knob_name.data)
        printer.print_string(" [" + ", ".join(str(v) for v in self.candidates.get_values()) + "]")
        if self.derive is not None and self.extent is not None:
            printer.print_string(f" {self.derive.data} of {self.extent.value.data}")

    @classmethod
    def parse(cls, parser: Parser) -> KnobOp:
        name = parser.parse_str_literal("knob name")
        values = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)
        derive = parser.parse_optional_identifier()
        if derive is None:
            return cls(name, values)
        parser.parse_keyword("of")
        return cls(name, values, derive, parser.parse_integer())

    def __init__(self, name: str, candidates: Sequence[int], derive: str | None = None, extent: int | None = None):
        props = {"knob": StringAttr(name), "candidates": DenseArrayBase.from_list(i64, list(candidates))}
        if derive is not None:
            props["derive"] = StringAttr(derive)
        if extent is not None:
            props["extent"] = IntegerAttr(extent, i64)
        super().__init__(properties=props, result_types=[KnobType()])

    def verify_(self) -> None:
        name = self.knob_name.data
        values = self.candidates.get_values()
        if not KNOB_NAME.fullmatch(name):
            raise VerifyException(f"sched.knob {name!r}: a knob name is a letter or _, then letters, digits "
                                  "and _ . $ - (a config names knobs as name=value,...)")
        if not values:
            raise VerifyException(f"sched.knob '{name}': needs at least one candidate")
        if min(values) < 1:
            raise VerifyException(f"sched.knob '{name}': candidates must be >= 1, got {list(values)}")
        if len(set(values)) != len(values):
            raise VerifyException(f"sched.knob '{name}': a candidate is listed twice in {list(values)}")
        if (self.derive is None) != (self.extent is None):
            raise VerifyException(f"sched.knob '{name}': a derived knob needs both its kind and its extent")
        if self.derive is None:
            return
        kind, extent = self.derive.data, self.extent.value.data
        if kind not in KNOB_DERIVATIONS:
            raise VerifyException(f"sched.knob '{name}': kind '{kind}' is not one of {', '.join(KNOB_DERIVATIONS)}")
        if extent < 1:
            raise VerifyException(f"sched.knob '{name}': extent must be >= 1, got {extent}")
        bad = [v for v in values if not is_derived_candidate(kind, extent, v)]
        if bad:
            what = f"divisors of {extent}" if kind == "divisors" else f"powers of two up to {extent}"
            raise VerifyException(f"sched.knob '{name}': {bad} are not {what}")


@irdl_op_definition
class SplitOp(SchedOp):
    """`%o, %i = sched.split %l by 16` (or `by %knob`): outer and inner loops.

    A factor that does not divide the extent is legal; the generated code is guarded."""

    name = "sched.split"
    loop = operand_def(LoopType)
    knob = opt_operand_def(KnobType)
    factor = opt_prop_def(IntegerAttr)
    outer = _loop_result()
    inner = _loop_result()

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_operand(self.loop)
        printer.print_string(" by ")
        if self.knob is not None:
            printer.print_operand(self.knob)
        else:
            printer.print_string(str(self.factor.value.data))

    @classmethod
    def parse(cls, parser: Parser) -> SplitOp:
        loop = parser.resolve_operand(parser.parse_unresolved_operand(), LoopType())
        parser.parse_keyword("by")
        factor = parser.parse_optional_integer()
        if factor is None:
            factor = parser.resolve_operand(parser.parse_unresolved_operand(), KnobType())
        return cls(loop, factor)

    def __init__(self, loop: SSAValue, factor: int | SSAValue):
        if isinstance(factor, SSAValue):
            super().__init__(operands=[loop, factor], result_types=[LoopType(), LoopType()])
        else:
            super().__init__(operands=[loop, None], properties={"factor": IntegerAttr(factor, i64)},
                             result_types=[LoopType(), LoopType()])

    def verify_(self) -> None:
        if (self.knob is None) == (self.factor is None):
            raise VerifyException("sched.split: give exactly one of a factor or a knob")
        if self.factor is not None and self.factor.value.data < 1:
            raise VerifyException(f"sched.split: factor must be >= 1, got {self.factor.value.data}")


@irdl_op_definition
class TileOp(SchedOp):
    """`%xo, %yo, %xi, %yi = sched.tile %x, %y by 8, 8`: two splits and a reorder."""

    name = "sched.tile"
    x = operand_def(LoopType)
    y = operand_def(LoopType)
    factors = prop_def(DenseArrayBase)
    x_outer = _loop_result()
    y_outer = _loop_result()
    x_inner = _loop_result()
    y_inner = _loop_result()

    def print(self, printer: Printer) -> None:
        fx, fy = self.factors.get_values()
        printer.print_string(" ")
        printer.print_operand(self.x)
        printer.print_string(", ")
        printer.print_operand(self.y)
        printer.print_string(f" by {fx}, {fy}")

    @classmethod
    def parse(cls, parser: Parser) -> TileOp:
        x = parser.resolve_operand(parser.parse_unresolved_operand(), LoopType())
        parser.parse_punctuation(",")
        y = parser.resolve_operand(parser.parse_unresolved_operand(), LoopType())
        parser.parse_keyword("by")
        fx = parser.parse_integer()
        parser.parse_punctuation(",")
        return cls(x, y, fx, parser.parse_integer())

    def __init__(self, x: SSAValue, y: SSAValue, fx: int, fy: int):
        super().__init__(operands=[x, y], properties={"factors": DenseArrayBase.from_list(i64, [fx, fy])},
                         result_types=[LoopType()] * 4)

    def verify_(self) -> None:
        f = self.factors.get_values()
        if len(f) != 2 or min(f) < 1:
            raise VerifyException(f"sched.tile: needs two factors >= 1, got {list(f)}")


@irdl_op_definition
class FuseOp(SchedOp):
    """`%f = sched.fuse %outer, %inner`: two adjacent loops become one."""

    name = "sched.fuse"
    outer = operand_def(LoopType)
    inner = operand_def(LoopType)
    fused = _loop_result()
    assembly_format = "$outer `,` $inner attr-dict"

    def __init__(self, outer: SSAValue, inner: SSAValue):
        super().__init__(operands=[outer, inner], result_types=[LoopType()])


@irdl_op_definition
class ReorderOp(SchedOp):
    """`sched.reorder %a, %b, %c`: these loops take their places in this order."""

    name = "sched.reorder"
    loops = var_operand_def(LoopType)
    assembly_format = "$loops attr-dict"

    def __init__(self, loops: Sequence[SSAValue]):
        super().__init__(operands=[list(loops)])

    def verify_(self) -> None:
        if len(set(self.loops)) != len(self.loops):
            raise VerifyException("sched.reorder: a loop is named twice")


@irdl_op_definition
class BindOp(SchedOp):
    """`sched.bind %l "block.x"`: the loop runs across GPU blocks or threads."""

    name = "sched.bind"
    loop = operand_def(LoopType)
    tag = prop_def(StringAttr)
    assembly_format = "$loop $tag attr-dict"

    def __init__(self, loop: SSAValue, tag: str):
        super().__init__(operands=[loop], properties={"tag": StringAttr(tag)})

    def verify_(self) -> None:
        if self.tag.data not in BIND_TAGS:
            raise VerifyException(f"sched.bind: '{self.tag.data}' is not one of {', '.join(BIND_TAGS)}")


@irdl_op_definition
class UnrollOp(SchedOp):
    name = "sched.unroll"
    loop = operand_def(LoopType)
    assembly_format = "$loop attr-dict"

    def __init__(self, loop: SSAValue):
        super().__init__(operands=[loop])


@irdl_op_definition
class VectorizeOp(SchedOp):
    """Marks an innermost loop of constant extent to run as vector lanes."""

    name = "sched.vectorize"
    loop = operand_def(LoopType)
    assembly_format = "$loop attr-dict"

    def __init__(self, loop: SSAValue):
        super().__init__(operands=[loop])


def _check_scope(op: IRDLOperation, scope: str) -> None:
    if scope not in SCOPES:
        raise VerifyException(f"{op.name}: scope '{scope}' is not one of {', '.join(SCOPES)}")


@irdl_op_definition
class CacheReadOp(SchedOp):
    """`sched.cache_read "A" "shared" at %ko`: each iteration of %ko first copies the part
    of input A that the loops inside it read into a shared or local buffer.

    Options: `layout = array<i64: 1, 0>` orders the buffer's dimensions (buffer dimension d
    holds dimension layout[d] of A; e.g. A's tile stored transposed); `double_buffer` (shared
    only) keeps two buffers, so each thread loads the next iteration's part into registers
    before the inner loops and stores it after them, one barrier per iteration.
    `stages = N` (shared, N >= 2; or `stages %knob`) keeps N buffers filled by asynchronous copies (cp.async on
    NVIDIA, plain copies elsewhere): the copies for the next N - 1 iterations are in flight
    while one iteration computes. `pad = P` adds P elements to each row of a shared buffer
    (its last dimension), so that the rows of a tile fall in different memory banks.
    `tma` (with stages; CUDA on Hopper, a wgmma's operands) fills the stages by the tensor memory
    accelerator: one thread starts each tile's copy (`cp.async.bulk.tensor`), which the
    hardware writes in the swizzled layout, and an mbarrier a stage says when it is in."""

    name = "sched.cache_read"
    tensor = prop_def(StringAttr)
    scope = prop_def(StringAttr)
    layout = opt_prop_def(DenseArrayBase)
    double_buffer = opt_prop_def(UnitAttr)
    stages = opt_prop_def(IntegerAttr)
    pad = opt_prop_def(IntegerAttr)
    tma = opt_prop_def(UnitAttr)
    at = operand_def(LoopType)
    stages_knob = opt_operand_def(KnobType)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$tensor $scope `at` $at (`stages` $stages_knob^)? attr-dict"

    def __init__(self, tensor: str, scope: str, at: SSAValue, layout: Sequence[int] | None = None,
                 double_buffer: bool = False, stages: int | SSAValue | None = None, pad: int | None = None,
                 tma: bool = False):
        props: dict = {"tensor": StringAttr(tensor), "scope": StringAttr(scope)}
        if tma:
            props["tma"] = UnitAttr()
        if layout is not None:
            props["layout"] = DenseArrayBase.from_list(i64, list(layout))
        if double_buffer:
            props["double_buffer"] = UnitAttr()
        knob = stages if isinstance(stages, SSAValue) else None
        if stages is not None and knob is None:
            props["stages"] = IntegerAttr(stages, i64)
        if pad is not None:
            props["pad"] = IntegerAttr(pad, i64)
        super().__init__(operands=[at, knob], properties=props)

    def stage_count(self) -> int | None:
        return None if self.stages is None else self.stages.value.data

    def padding(self) -> int:
        return 0 if self.pad is None else self.pad.value.data

    def layout_order(self) -> list[int] | None:
        return None if self.layout is None else list(self.layout.get_values())

    def verify_(self) -> None:
        _check_scope(self, self.scope.data)
        order = self.layout_order()
        if order is not None and sorted(order) != list(range(len(order))):
            raise ScheduleVerifyException(self, f"cache_read of '{self.tensor.data}': layout {order} is not a "
                                          "permutation of the tensor's dimensions")
        if self.double_buffer is not None and self.scope.data != "shared":
            raise ScheduleVerifyException(self, f"cache_read of '{self.tensor.data}': double_buffer needs "
                                          "scope 'shared'")
        stages = self.stage_count()
        if stages is not None and self.stages_knob is not None:
            raise ScheduleVerifyException(self, f"cache_read of '{self.tensor.data}': give stages as a number or "
                                          "a knob, not both")
        if self.stages_knob is not None and (self.scope.data != "shared" or self.double_buffer is not None):
            raise ScheduleVerifyException(self, f"cache_read of '{self.tensor.data}': stages need scope 'shared' "
                                          "and no double_buffer")
        if stages is not None and (self.scope.data != "shared" or stages < 2 or self.double_buffer is not None):
            raise ScheduleVerifyException(self, f"cache_read of '{self.tensor.data}': stages = {stages} needs scope "
                                          "'shared', at least 2 stages and no double_buffer (stages = 2 is one)")
        if self.padding() < 0 or (self.pad is not None and self.scope.data != "shared"):
            raise ScheduleVerifyException(self, f"cache_read of '{self.tensor.data}': pad = {self.padding()} must be "
                                          ">= 0, on a shared buffer")
        if self.tma is not None and (stages is None and self.stages_knob is None or self.padding()):
            raise ScheduleVerifyException(self, f"cache_read of '{self.tensor.data}': tma fills the stages of a "
                                          "pipeline: give stages, and no pad (the copies swizzle instead)")


# warp-level intrinsics sched.tensorize maps a tile to, and their (M, N, K) tile shapes
TENSOR_INTRINSICS = {"mma.m16n8k16": (16, 8, 16), "mma.m16n8k8": (16, 8, 8),
                     "wgmma.m64n64k16": (64, 64, 16), "wgmma.m64n128k16": (64, 128, 16),
                     "wgmma.m64n256k16": (64, 256, 16)}


@irdl_op_definition
class TensorizeOp(SchedOp):
    """`sched.tensorize %ii, %ji, %ki "mma.m16n8k16"`: the innermost (i, j, k) tile of a
    matmul stage, of the intrinsic's shape (16 x 8 x 16 for f16/bf16 operands, 16 x 8 x 8
    for f32 at tf32), is computed by one warp-level matrix multiply-accumulate. The 32 lanes
    of the warp become a loop bound to thread.x; its results are kept in registers.
    "wgmma.m64nNk16" (N = 64, 128, 256; f16/bf16, CUDA on Hopper): a 64 x N x 16 tile by
    the 128 threads of a warpgroup, its operands read from shared buffers that the schedule
    fills by pipelined copies (cache_read with `stages`), laid out swizzled."""

    name = "sched.tensorize"
    i = operand_def(LoopType)
    j = operand_def(LoopType)
    k = operand_def(LoopType)
    intrinsic = prop_def(StringAttr)
    assembly_format = "$i `,` $j `,` $k $intrinsic attr-dict"

    def __init__(self, i: SSAValue, j: SSAValue, k: SSAValue, intrinsic: str):
        super().__init__(operands=[i, j, k], properties={"intrinsic": StringAttr(intrinsic)})

    def shape(self) -> tuple[int, int, int]:
        return TENSOR_INTRINSICS[self.intrinsic.data]

    def verify_(self) -> None:
        if self.intrinsic.data not in TENSOR_INTRINSICS:
            raise ScheduleVerifyException(self, f"sched.tensorize: intrinsic '{self.intrinsic.data}' is not one of "
                                          f"{', '.join(TENSOR_INTRINSICS)}")
        if len({self.i, self.j, self.k}) != 3:
            raise ScheduleVerifyException(self, "sched.tensorize: takes three different loops (i, j, k)")


@irdl_op_definition
class CacheWriteOp(SchedOp):
    """`sched.cache_write "local" at %l`: the outputs written inside %l accumulate in a
    buffer of that scope and are stored once at the end of each iteration of %l."""

    name = "sched.cache_write"
    scope = prop_def(StringAttr)
    at = operand_def(LoopType)
    assembly_format = "$scope `at` $at attr-dict"

    def __init__(self, scope: str, at: SSAValue):
        super().__init__(operands=[at], properties={"scope": StringAttr(scope)})

    def verify_(self) -> None:
        _check_scope(self, self.scope.data)


@irdl_op_definition
class ComputeAtOp(SchedOp):
    """`sched.compute_at "B" at %l`: stage B is computed inside loop %l of its consumer,
    for the region the consumer reads there, instead of as a nest of its own.

    Options, as cache_read's: `double_buffer` keeps two shared buffers (%l inside all of the
    block's thread loops): each thread computes its elements of the next iteration's region
    into registers before the inner loops and stores them after them, so the loads behind
    them overlap the inner loops' work; `pad = P` adds P elements to each row of the shared
    buffer. Elements outside B's extent are zero. This is how a matmul reads its B operand
    as an implicit GEMM: B = im2col(X), each tile gathered from X where it is needed."""

    name = "sched.compute_at"
    producer = prop_def(StringAttr)
    double_buffer = opt_prop_def(UnitAttr)
    pad = opt_prop_def(IntegerAttr)
    at = operand_def(LoopType)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$producer `at` $at attr-dict"

    def __init__(self, producer: str, at: SSAValue, double_buffer: bool = False, pad: int | None = None):
        props: dict = {"producer": StringAttr(producer)}
        if double_buffer:
            props["double_buffer"] = UnitAttr()
        if pad is not None:
            props["pad"] = IntegerAttr(pad, i64)
        super().__init__(operands=[at], properties=props)

    def verify_(self) -> None:
        if self.producer.data == loop_stage(self.at):
            raise VerifyException(f"sched.compute_at: stage '{self.producer.data}' cannot be computed inside itself")


SchedDialect = Dialect(
    "sched",
    [ScheduleOp, LoopOp, KnobOp, SplitOp, TileOp, FuseOp, ReorderOp, BindOp, UnrollOp, VectorizeOp,
     CacheReadOp, TensorizeOp, CacheWriteOp, ComputeAtOp],
    [LoopType, KnobType],
)
