"""tensorop-fuse: operator linking. Groups an anchor (conv2d, matmul, conv_transpose2d, pool2d,
softmax, normalize, a data-movement op such as im2col, Winograd's transforms, or an
elementwise op: ANCHORS) with the chain of elementwise ops (unary, binary, bias_add, and
float casts, which reduced-precision models put around f32 operators) that follows it, so the
group lowers to one loop nest and one kernel (a multi-stage anchor: its last stage's kernel), and intermediate tensors
never go to memory.

The result is visible in the printed IR: every op of a group carries `group = "<anchor>"`.
tensorop-to-loops writes the members as an epilogue at the anchor's write-back (after the
reduction, at the last reduction iteration), in the anchor's stage, so the anchor's schedule
(and tuning) covers the whole group.

An op joins its producer's group only when
- the producer's result has exactly one use (this op): a producer with two consumers, or one
  that the function returns, keeps its own buffer and is never fused into both,
- the op keeps the producer's shape (a broadcast that grows the tensor would recompute it),
- the op reads no other input of the group's anchor (whose schedule may cache that input in
  shared memory: read again by the epilogue at other indices, it cannot be),
- both are placed on the GPU (no `place = "host"`) and no host op or copy to the host stands
  between them (the executor runs the GPU ops between two host steps as one launch sequence),
- both run on the same device (`device`, see tensorop-split) and no transfer to or from that
  device, nor a slice or concat of tensorop-split on it (the executor copies those), stands
  between them (ops of other devices may: the executor runs each device's GPU
  ops between two of its own transfers or host steps as one launch sequence).

`mark_implicit_gemms` (which the model executor runs after this pass, with its schedules'
rule for which products take the tensor-core template) gives an im2col marked `gather`
(tensorop-conv-to-gemm, conv algorithm "implicit") and read only as the B operand of such a
2-D matmul, under the same conditions, `computed_at = "<matmul>"`: the
product gathers its windows tile by tile where it reads them (an implicit GEMM), no kernel of
the im2col's own runs, and its input is read when the matmul runs (tensorop-plan-memory keeps
it alive until then).

`link_pools` (the model executor's too, after this pass) makes a pooling of a conv's output
the last member of the conv's group, computed by atomics from the conv's epilogue, and
`link_depthwise` marks a depthwise conv's group `computed_at` the pointwise conv after it;
their docstrings state when that is legal.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass

from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.conv_to_gemm import GATHER, is_pointwise
from sched_dsl.lowering.level import require_operator_level
from sched_dsl.lowering.pool_scatter import every_window_holds_input, scatter_spec
from sched_dsl.lowering.tensorop_to_loops import GROUP

# ops whose lowering applies a fused epilogue where it writes its (last stage's) result
ANCHORS = (T.Conv2dOp, T.MatmulOp, T.UnaryOp, T.BinaryOp, T.BiasAddOp, T.Pool2dOp, T.ConvTranspose2dOp,
           T.SoftmaxOp, T.NormalizeOp, T.RemapOp, T.GatherOp, T.ResizeOp, T.ConcatOp, T.ReshapeOp, T.ReduceOp,
           T.Im2colOp, T.WinogradInputOp, T.WinogradWeightsOp, T.WinogradOutputOp, T.CastOp)
PLACE = "place"
COMPUTED_AT = "computed_at"  # an im2col a tensor-core matmul may compute where it reads it


def _device(op) -> int:
    return op.attributes["device"].value.data if "device" in op.attributes else 0


def on_gpu(op) -> bool:
    return isinstance(op, T.TensorOp) and (PLACE not in op.attributes or op.attributes[PLACE].data == "gpu")


def chained_operand(op: T.TensorOp, position: dict, anchors: dict[str, T.TensorOp]) -> T.TensorOp | None:
    """The producer `op` may join, if any (see the module docstring)."""
    for v in op.operands if not isinstance(op, T.BiasAddOp) else [op.input]:
        p = v.owner
        if not isinstance(p, ANCHORS) or not on_gpu(p):
            continue
        if p.result.uses.get_length() != 1 or T.shape_of(op.result) != T.shape_of(p.result):
            continue
        if sum(1 for w in op.operands if w == v) != 1 or _device(p) != _device(op):
            continue
        anchor = anchors.get(p.attributes[GROUP].data, p) if GROUP in p.attributes else p
        if any(w != v and w in anchor.operands for w in op.operands):
            continue  # the anchor's schedule may cache that input: read again elsewhere, it stays apart
        if one_launch_sequence(p, op, position):
            return p
    return None


def one_launch_sequence(p: T.TensorOp, op: T.TensorOp, position: dict) -> bool:
    """No host op, copy to the host, transfer or split copy on op's device between p and op."""
    between = list(position)[position[p] + 1:position[op]]
    if any(not (on_gpu(o) or isinstance(o, T.CopyOp) and o.to.data == "device") for o in between):
        return False
    # a move or a copy on this device runs between two of its launch sequences
    return not any(isinstance(o, T.TransferOp) and _device(op) in (o.src.value.data, o.dst.value.data)
                   or isinstance(o, T.SliceOp | T.ConcatOp) and "device" in o.attributes and _device(o) == _device(op)
                   for o in between)


def mark_implicit_gemms(fn: func.FuncOp, gathers: Callable[[T.MatmulOp], bool]) -> None:
    """`computed_at` on each im2col that a 2-D matmul for which `gathers` holds computes where
    it reads B (see the module docstring)."""
    ops = list(fn.body.block.ops)
    position = {o: k for k, o in enumerate(ops)}
    for op in ops:
        if not (isinstance(op, T.MatmulOp) and on_gpu(op) and len(T.shape_of(op.result)) == 2 and gathers(op)):
            continue
        p = op.rhs.owner
        if (isinstance(p, T.Im2colOp) and GATHER in p.attributes and on_gpu(p) and GROUP not in p.attributes
                and p.result.uses.get_length() == 1 and _device(p) == _device(op)
                and one_launch_sequence(p, op, position)):
            p.attributes[COMPUTED_AT] = StringAttr(op.stage_name)


def nonnegative(op: T.TensorOp) -> bool:
    """Whether every value op makes is >= 0 (or NaN): relu, or relu6 / clip with lo >= 0."""
    return isinstance(op, T.UnaryOp) and (op.fn.data == "relu" or op.fn.data in ("relu6", "clip")
                                          and op.params()["lo"] >= 0)


def link_pools(fn: func.FuncOp) -> None:
    """Links each pooling that the rule below allows into the kernel of the conv that makes its
    input: the pool joins the conv's group as its last member (`group = "<conv>"`), the conv's
    epilogue scatters every final value into the pool outputs whose windows hold it, by atomics
    into a pool output zeroed before the launch (lowering/pool_scatter.py), and the conv's output
    (and its chain's) never goes to memory. The model executor runs this after tensorop-fuse;
    its conv schedules keep the accumulator in registers, which the scatter needs.

    The rule: a pool2d (max or average, no dilation) or a reduce (mean, sum, max) over the two
    spatial axes, on the GPU, of f32, with no group of its own (nothing fused after it), links
    into its producer when
    - the producer is a direct NCHW conv2d or the last member of one's group, f32, and
      the pool is its only reader (a conv output read elsewhere too is written as before, and
      the pool stays a kernel of its own); same device, one launch sequence, as for fusion;
    - for a max, every value is >= 0: the chain ends in relu, or relu6 / clip with lo >= 0 (the
      atomic max compares the floats' bits as signed ints, which orders floats >= 0 only);
    - every window holds at least one element of the input, none only padding (a ceil_mode
      window or a pad as wide as the kernel can): the output's zero start is then never the
      answer in place of the window's own values."""
    ops = list(fn.body.block.ops)
    position = {o: k for k, o in enumerate(ops)}
    anchors = {o.stage_name: o for o in ops if isinstance(o, T.TensorOp) and GROUP in o.attributes
               and o.attributes[GROUP].data == o.stage_name}
    for pool in ops:
        spec = scatter_spec(pool, pool.stage_name) if isinstance(pool, T.TensorOp) else None
        if spec is None or not on_gpu(pool) or GROUP in pool.attributes:
            continue
        p = pool.operands[0].owner
        anchor = anchors.get(p.attributes[GROUP].data) if isinstance(p, T.TensorOp) and GROUP in p.attributes else p
        if not (isinstance(anchor, T.Conv2dOp) and on_gpu(p)):  # a conv left after tensorop-conv-to-gemm: direct
            continue
        if not all(o.data_layout() == "NCHW" for o in (anchor, pool) if isinstance(o, T.WindowOp)):
            continue  # the scatter's window arithmetic is NCHW's
        if {T.dtype_of(anchor.result), T.dtype_of(p.result), T.dtype_of(pool.result)} != {"f32"}:
            continue
        if p.result.uses.get_length() != 1 or _device(p) != _device(pool) or not one_launch_sequence(p, pool, position):
            continue
        if spec.combine == "max" and not nonnegative(p):
            continue
        out_hw = T.shape_of(pool.result)[2:] if len(T.shape_of(pool.result)) == 4 else (1, 1)
        if not every_window_holds_input(spec, T.shape_of(p.result)[2:], out_hw):
            continue
        for o in (anchor, p, pool):
            o.attributes[GROUP] = StringAttr(anchor.stage_name)


def is_depthwise(op: T.Conv2dOp) -> bool:
    c, f = T.shape_of(op.input)[1], T.shape_of(op.result)[1]
    return op.groups.value.data == c == f > 1


LINKED_FILTERS = 64  # a pointwise conv whose filters one block of the tiled conv takes (its fb)


def link_depthwise(fn: func.FuncOp) -> None:
    """`computed_at = "<pw>"` on every member of a depthwise conv's group (the conv, its bias,
    its relu6) whose result only a pointwise conv reads (a MobileNet block's dw 3x3 ->
    relu6 -> pw 1x1): the pointwise conv's schedule computes the depthwise values of each
    input tile into shared memory where it would have copied them (compute_at in
    model_schedules.conv_tiles), so the wide expanded tensor is neither written nor read
    back, and no kernel of the depthwise conv's own runs. Legal when the depthwise group ends
    in a value with one reader, the pointwise conv (a direct conv2d, 1x1, stride 1, no padding,
    no groups) of at most LINKED_FILTERS filters, both NCHW and f32 on the GPU, on one device,
    in one launch sequence. (Its schedule takes all the filters in each block, so the depthwise
    values are computed once: with blocks of some of the filters each block computed them
    again, and MobileNetV2 ran at 0.83x PyTorch fp32 on the H200 instead of 1.30x.) The model
    executor runs this after tensorop-fuse and link_pools; tensorop-plan-memory times the
    group at the pointwise conv's launch."""
    ops = list(fn.body.block.ops)
    position = {o: k for k, o in enumerate(ops)}
    for pw in ops:
        if not (isinstance(pw, T.Conv2dOp) and on_gpu(pw) and is_pointwise(pw)):
            continue
        p = pw.input.owner
        if not isinstance(p, T.TensorOp) or not on_gpu(p) or p.result.uses.get_length() != 1:
            continue
        group = p.attributes[GROUP].data if GROUP in p.attributes else p.stage_name
        members = [o for o in ops if isinstance(o, T.TensorOp) and (o is p or GROUP in o.attributes
                                                                     and o.attributes[GROUP].data == group)]
        dw = members[0]
        if not (isinstance(dw, T.Conv2dOp) and dw.stage_name == group and is_depthwise(dw)
                and all(isinstance(o, T.ELEMENTWISE) for o in members[1:])):  # (no pool linked into it)
            continue
        if dw.data_layout() != "NCHW" or pw.data_layout() != "NCHW" or T.shape_of(pw.weight)[0] > LINKED_FILTERS:
            continue
        if {T.dtype_of(o.result) for o in (*members, pw)} != {"f32"} or _device(p) != _device(pw):
            continue
        if one_launch_sequence(p, pw, position):
            for o in members:
                o.attributes[COMPUTED_AT] = StringAttr(pw.stage_name)


def fuse_function(fn: func.FuncOp) -> None:
    ops = list(fn.body.block.ops)
    position = {o: k for k, o in enumerate(ops)}
    anchors: dict[str, T.TensorOp] = {}
    for op in ops:
        if not isinstance(op, T.ELEMENTWISE) or not on_gpu(op) or GROUP in op.attributes:
            continue
        p = chained_operand(op, position, anchors)
        if p is None:
            continue
        anchor = p.attributes[GROUP].data if GROUP in p.attributes else p.stage_name
        anchors.setdefault(anchor, p)
        p.attributes[GROUP] = StringAttr(anchor)
        op.attributes[GROUP] = StringAttr(anchor)


class TensoropFusePass(ModulePass):
    """Groups anchors with their elementwise epilogues (see the module docstring)."""

    name = "tensorop-fuse"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        require_operator_level(op, self.name)
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                fuse_function(fn)
