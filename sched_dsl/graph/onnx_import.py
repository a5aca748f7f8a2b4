"""ONNX import: an ONNX model (the `onnx` package) becomes a `func.func @main` of tensorop ops.

The function's arguments are the model inputs, then the weights (initializers, Constant nodes
and folded constants that an operator reads as a tensor); small constants that only configure
an operator (a Reshape's shape, Clip's bounds, TopK's k) are read at import.

Before anything is mapped, constants are folded: every node whose inputs are all constants
(ConstantOfShape, Range, Cast, Concat of shapes, ...) is evaluated once, in numpy (onnx's
reference implementation), and so is Shape (and Size) of any tensor, whose shape is static
here. Shape-computing subgraphs (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) thus end
as constants and every tensor has a static shape. onnx's shape inference gives the rank of
each value, so rank-0 (scalar) tensors keep their rank at the model's boundary (inside, they
are tensors of one element).

A BatchNormalization after a Conv whose output has no other use is folded into the conv's
weights and bias; one elsewhere becomes a per-channel mul and add. LRN, LayerNormalization,
InstanceNormalization, GroupNormalization, variadic Sum/Mean/Max/Min, 1-D convolutions and
pooling (through 2-D), Softmax before opset 13 (on its 2-D view) and the data-movement
operators (Transpose, Slice, Split, Squeeze/Unsqueeze, Expand, Tile, Gather, Pad, Flatten,
DepthToSpace) become compositions of tensorop ops. Operators without a GPU lowering that can
run on the host become `tensorop.host_call` ops (HOST_ONLY below). Anything else unsupported,
or an attribute the importer cannot honour, ends in one OnnxImportError listing every such
node by operator and name.

Element types: float32 tensors compute in f32; int64 and int32 model inputs become i32 (the
indices of a Gather); float64 (and other types) at run time are import errors, since computing
them in f32 could change the results.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    TensorType,
    f32,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Region, SSAValue

from sched_dsl.dialects import tensorop as T


class OnnxImportError(ValueError):
    """A model file that cannot be read, or one with operators the importer cannot map."""


@dataclass
class Graph:
    module: ModuleOp  # func.func @main of tensorop ops
    weights: dict[str, np.ndarray]  # argument name -> value, for every argument after the inputs
    inputs: list[str]  # model input names (the first arguments)
    input_args: list[str]  # their argument names in the function
    outputs: list[str]  # model output names, in the order the function returns them
    # the model's own shape and dtype of each input and output where they differ from the
    # function's (a rank-0 tensor is a tensor of one element inside; float64 computes as f32)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_dtypes: dict[str, np.dtype] = field(default_factory=dict)
    output_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    output_dtypes: dict[str, np.dtype] = field(default_factory=dict)
    # the model stores float16 tensors (held as f32 here): load_onnx runs it at precision fp16
    half: bool = False


class Constants(dict):
    """Constant tensors by name. float16 ones (an fp16 model's weights) are kept as float32,
    which holds them exactly; `half` notes that the model had any."""

    half = False

    def __setitem__(self, name: str, a) -> None:
        if isinstance(a, np.ndarray) and a.dtype == np.float16:
            self.half, a = True, a.astype(np.float32)
        super().__setitem__(name, a)


def element_type(dtype) -> Attribute:
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return f32
    if dtype == np.int64:
        return i64
    if dtype == np.int32:
        return i32
    raise Unsupported(f"tensors of {dtype} are not supported (float32, int32 and int64 are)")


class Unsupported(Exception):
    """One node the importer cannot map; collected, then reported together."""


class Downstream(Exception):
    """A node that reads the output of a node already reported: not reported again."""


class HostOnly(Exception):
    """A node of a GPU-lowerable operator in a form its GPU lowering does not cover: it runs
    on the host instead (a row of HOST_ONLY)."""


# ---- host operators: ONNX op type -> result types from (node, input types, constants) ----
# CumSum, TopK and NonMaxSuppression have GPU handlers (GPU_OPS) and come here for the forms
# those do not cover (HostOnly).


def _cumsum_types(node, types, consts):
    return [types[0]]


def _topk_types(node, types, consts):
    k = consts[1]
    if k is None:
        raise Unsupported("k must be a constant")
    shape = list(types[0].get_shape())
    axis = attr(node, "axis", -1) % len(shape)
    shape[axis] = int(np.asarray(k).reshape(-1)[0])
    return [TensorType(types[0].element_type, shape), TensorType(i64, shape)]


def _nms_types(node, types, consts):
    return [TensorType(i64, [DYNAMIC_INDEX, 3])]


HOST_ONLY: dict[str, Callable] = {
    "CumSum": _cumsum_types,
    "TopK": _topk_types,
    "NonMaxSuppression": _nms_types,
}

# never folded, though their inputs may all be constants: their values are not fixed
NOT_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
ONNX_FLOAT, ONNX_DOUBLE, ONNX_INT32, ONNX_INT64, ONNX_FLOAT16 = 1, 11, 6, 7, 10


def attr(node, name: str, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def ident(text: str) -> str:
    """A name usable as a stage, SSA and C name. xDSL drops a `_<digits>` ending from SSA names,
    so names never end that way."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or "v"
    s = re.sub(r"_(\d+)$", r"\1", s)
    return s if s[0].isalpha() else "v" + s


def _static_shape(type_proto) -> tuple[int, ...] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = type_proto.tensor_type.shape.dim
    if any(not d.HasField("dim_value") for d in dims):
        return None
    return tuple(d.dim_value for d in dims)


def node_label(node) -> str:
    name = node.name or next((o for o in node.output if o), "")
    return f"{node.op_type} node '{name}'"


def initializer_array(tensor) -> np.ndarray:
    import onnx

    try:
        return onnx.numpy_helper.to_array(tensor)
    except Exception as e:  # noqa: BLE001 - onnx raises ValueError, TypeError, struct errors...
        raise OnnxImportError(f"initializer '{tensor.name}' cannot be read: {e}") from None


class Importer:
    def __init__(self, model):
        import onnx

        self.onnx = onnx
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.consts = Constants()
        for i in self.graph.initializer:
            self.consts[i.name] = initializer_array(i)
        self.values: dict[str, SSAValue] = {}
        self.weight_args: dict[str, SSAValue] = {}  # const name -> func argument
        self.weights: dict[str, np.ndarray] = {}
        self.used_names: set[str] = set()
        self.errors: list[str] = []
        self.block = Block()
        self.folded: set[tuple[str, ...]] = set()  # outputs of the nodes evaluated at import
        self.failed: set[str] = set()  # outputs of the nodes reported as errors
        self.declared = self.inferred_shapes(model)  # value name -> static shape, where known

    def inferred_shapes(self, model) -> dict[str, tuple[int, ...]]:
        """Static shapes of the model's values, as declared or from onnx's shape inference
        (used for ranks only: which one-element tensors are scalars)."""
        try:
            inferred = self.onnx.shape_inference.infer_shapes(model, data_prop=True).graph
        except Exception:  # noqa: BLE001 - inference is a help here, not a requirement
            inferred = model.graph
        shapes = {}
        for vi in [*inferred.value_info, *inferred.input, *inferred.output]:
            shape = _static_shape(vi.type)
            if shape is not None:
                shapes[vi.name] = shape
        return shapes

    # -- names and values --------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        return T.fresh_name(self.used_names, ident(base), "v")

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def value(self, name: str) -> SSAValue:
        """The SSA value of an ONNX tensor; a constant becomes a weight argument (float64 as
        f32, int64 as i32, a scalar as one element)."""
        if name in self.values:
            return self.values[name]
        if name in self.consts:
            if name not in self.weight_args:
                a = np.ascontiguousarray(self.consts[name])
                if a.dtype == np.float64:
                    a = a.astype(np.float32)
                if a.dtype == np.int64:
                    a = a.astype(np.int32)
                if a.ndim == 0:
                    a = a.reshape(1)
                if a.size == 0:
                    raise Unsupported(f"constant '{name}' is empty")
                arg = self.block.insert_arg(TensorType(element_type(a.dtype), list(a.shape)), len(self.block.args))
                arg.name_hint = self.fresh(name)
                self.weight_args[name] = arg
                self.weights[arg.name_hint] = a
            return self.weight_args[name]
        if name in self.failed:
            raise Downstream(name)
        raise Unsupported(f"input '{name}' is not produced by any node")

    def shape(self, name: str) -> tuple[int, ...]:
        """The ONNX shape of a tensor (a scalar's is (), though inside it has one element)."""
        if name in self.consts:
            return tuple(self.consts[name].shape)
        ours = T.shape_of(self.value(name))
        return () if ours == (1,) and self.declared.get(name) == () else ours

    def fresh_const(self, base: str, a: np.ndarray) -> str:
        """A new constant's name (it becomes a weight argument when used)."""
        key = self.fresh(base)
        self.consts[key] = a
        return key

    def new_weight(self, base: str, a: np.ndarray) -> SSAValue:
        key = self.fresh(base)
        self.consts[key] = np.asarray(a, dtype=np.float32)
        return self.value(key)

    def scalar(self, base: str, v: float) -> SSAValue:
        return self.new_weight(base, np.array([v], np.float32))

    def add(self, op, out_name: str | None = None) -> SSAValue:
        self.block.add_op(op)
        op.result.name_hint = op.stage_name
        if out_name is not None:
            self.values[out_name] = op.result
        return op.result

    def reshape(self, x: SSAValue, base: str, shape: Sequence[int], out_name: str | None = None) -> SSAValue:
        """x in `shape` (a tensor of one element for shape ()); no op when it has it already."""
        shape = tuple(int(d) for d in shape) or (1,)
        if isinstance(x.owner, T.ReshapeOp):  # a reshape of a reshape is one (the first may go dead)
            x = x.owner.input
        if T.shape_of(x) == shape:
            if out_name is not None:
                self.values[out_name] = x
            return x
        return self.add(T.ReshapeOp(x, self.fresh(base), shape), out_name)

    # -- the model -----------------------------------------------------------------------------
    def run(self) -> Graph:
        init = set(self.consts)
        inputs = [i for i in self.graph.input if i.name not in init]
        in_shapes, in_dtypes = {}, {}
        for i in inputs:
            try:
                arg = self.model_input(i)
            except Unsupported as e:  # reported with the nodes' errors
                self.errors.append(f"model input '{i.name}' {e}")
                self.failed.add(i.name)
                continue
            if _static_shape(i.type) == ():
                in_shapes[i.name] = ()
            in_dtypes[i.name] = np.dtype(self.onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
            self.values[i.name] = arg
        self.prefold()
        fold_batchnorm(self)
        for node in self.graph.node:
            if tuple(node.output) in self.folded:
                continue
            try:
                if node.op_type == "Constant":
                    self.consts[node.output[0]] = constant_value(node)
                elif not self.fold(node):
                    self.node(node)
            except (Unsupported, T.ShapeError) as e:
                self.errors.append(f"{node_label(node)}: {e}")
                self.failed.update(node.output)
            except Downstream:
                self.failed.update(node.output)
            except (IndexError, KeyError, TypeError, ValueError) as e:  # a malformed node: inputs or attributes missing
                self.errors.append(f"{node_label(node)}: malformed ({type(e).__name__}: {e})")
                self.failed.update(node.output)
        outs, out_shapes, out_dtypes = [], {}, {}
        for o in self.graph.output:
            if o.name in self.failed:
                continue
            if o.name not in self.values:
                if o.name in self.consts and not self.errors:
                    self.errors.append(f"output '{o.name}' is a constant; a model output must be computed by an operator")
                elif not self.errors:
                    self.errors.append(f"output '{o.name}' is not computed by an operator")
                continue
            outs.append(self.values[o.name])
            if self.shape(o.name) == ():
                out_shapes[o.name] = ()
            if o.type.tensor_type.elem_type == ONNX_FLOAT16:
                out_dtypes[o.name] = np.dtype(np.float16)
                self.consts.half = True
        if self.errors:
            raise OnnxImportError("the model has nodes sched-dsl cannot run:\n  " + "\n  ".join(self.errors))
        self.block.add_op(func.ReturnOp(*outs))
        for op in reversed(list(self.block.ops)):  # operators nothing reads (ONNX dead ends, bypassed reshapes)
            if isinstance(op, T.TensorOp) and not op.result.uses:
                self.block.erase_op(op)
        fn = func.FuncOp("main", ([a.type for a in self.block.args], [v.type for v in outs]), Region(self.block))
        return Graph(ModuleOp([fn]), self.weights, [i.name for i in inputs],
                     [self.values[i.name].name_hint for i in inputs], [o.name for o in self.graph.output],
                     in_shapes, {k: v for k, v in in_dtypes.items() if v != np.float32}, out_shapes, out_dtypes,
                     half=self.consts.half)

    def model_input(self, i) -> SSAValue:
        tt = i.type.tensor_type
        if not i.type.HasField("tensor_type"):
            raise Unsupported("is not a tensor (sequences, maps and optionals are not supported)")
        kinds = {ONNX_FLOAT: "f32", ONNX_FLOAT16: "f32", ONNX_INT64: "i32", ONNX_INT32: "i32"}
        if tt.elem_type == ONNX_FLOAT16:  # an fp16 model: f32 inside, through the precision pass
            self.consts.half = True
        if tt.elem_type not in kinds:
            raise Unsupported(f"is {self.onnx.TensorProto.DataType.Name(tt.elem_type)}; float32 inputs (and int64 "
                              "or int32 indices) are supported")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if not tt.HasField("shape") or any(d is None or d < 1 for d in dims):
            raise Unsupported(f"needs a static shape, got {[d.dim_param or d.dim_value for d in tt.shape.dim]}")
        arg = self.block.insert_arg(T.tensor_type(dims or [1], kinds[tt.elem_type]), len(self.block.args))
        arg.name_hint = self.fresh(i.name)
        return arg

    # -- constant folding ------------------------------------------------------------------------
    def prefold(self) -> None:
        """Folds the nodes computable from initializers and constants alone, before anything
        else looks at the graph (so BatchNormalization folding sees ConstantOfShape weights)."""
        for node in self.graph.node:
            try:
                if node.op_type == "Constant":
                    self.consts[node.output[0]] = constant_value(node)
                    self.folded.add(tuple(node.output))
                elif self.fold(node, shapes=False):
                    self.folded.add(tuple(node.output))
            except (Unsupported, T.ShapeError, IndexError, KeyError, TypeError, ValueError):
                pass  # reported when the main pass reaches the node

    def fold(self, node, shapes: bool = True) -> bool:
        """Evaluates a node at import when it can be: Shape and Size of a tensor (its shape
        is static), anything whose inputs are all constants. True when folded."""
        if node.domain not in ("", "ai.onnx") or node.op_type in NOT_FOLDED:
            return False
        if shapes and node.op_type in ("Shape", "Size") and node.input[0] not in self.consts:
            shape = self.shape(node.input[0])
            if node.op_type == "Size":
                self.consts[node.output[0]] = np.array(math.prod(shape), np.int64)
            else:
                start, end = attr(node, "start", 0), attr(node, "end", None)
                self.consts[node.output[0]] = np.array(shape[slice(start, end)], np.int64)
            return True
        inputs = [n for n in node.input if n]
        if not inputs or any(n not in self.consts for n in inputs):
            return False
        if node.op_type in ("Identity", "Dropout") and len(node.output) == 1:
            self.consts[node.output[0]] = self.consts[node.input[0]]
            return True
        from onnx.reference import ReferenceEvaluator

        helper = self.onnx.helper
        g = helper.make_graph([node], "fold", [self.onnx.ValueInfoProto(name=n) for n in inputs],
                              [self.onnx.ValueInfoProto(name=n) for n in node.output if n])
        try:
            results = ReferenceEvaluator(g, opsets={"": self.opset}).run(None, {n: self.consts[n] for n in inputs})
        except Exception as e:  # noqa: BLE001 - the reference raises many kinds
            raise Unsupported(f"cannot evaluate it on its constant inputs ({type(e).__name__}: {e})") from None
        for name, r in zip([n for n in node.output if n], results):
            self.consts[name] = np.asarray(r)
        return True

    # -- nodes -----------------------------------------------------------------------------------
    def node(self, node) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise Unsupported(f"domain '{node.domain}' is not supported")
        if op in GPU_OPS:
            try:
                GPU_OPS[op](self, node)
                return
            except HostOnly:
                if op not in HOST_ONLY:
                    raise
            self.host_call(node)
        elif op in HOST_ONLY:
            self.host_call(node)
        elif op in WHY_NOT:
            raise Unsupported(WHY_NOT[op])
        else:
            raise Unsupported("operator not supported")

    def internal_call(self, callee: str, args: list[SSAValue], result_type, base: str) -> SSAValue:
        """A host step of the importer's own (HOST_CALLS[callee]), e.g. converting results to
        the types ONNX gives them."""
        op = T.HostCallOp(args, [result_type], self.fresh(base), callee, {})
        self.block.add_op(op)
        op.results[0].name_hint = op.stage_name
        return op.results[0]

    def host_call(self, node) -> None:
        args, types, consts = [], [], []
        for name in node.input:
            if not name:
                consts.append(None)
                continue
            v = self.value(name)
            args.append(v)
            types.append(v.type)
            consts.append(self.const(name))
        params = {}
        for a in node.attribute:
            v = self.onnx.helper.get_attribute_value(a)
            if isinstance(v, int):
                params[a.name] = IntegerAttr(v, i64)
            elif isinstance(v, float):
                params[a.name] = FloatAttr(v, f32)
            elif isinstance(v, list) and all(isinstance(x, int) for x in v):
                params[a.name] = ArrayAttr([IntegerAttr(x, i64) for x in v])
            else:
                raise Unsupported(f"attribute '{a.name}' of this kind is not supported")
        result_types = HOST_ONLY[node.op_type](node, types, consts)
        name = self.fresh(node.name or node.op_type.lower())
        op = T.HostCallOp(args, result_types, name, node.op_type, params)
        self.block.add_op(op)
        for k, (r, out) in enumerate(zip(op.results, node.output)):
            r.name_hint = name if k == 0 else self.fresh(f"{name}_out{k}")
            if out:
                self.values[out] = r


def constant_value(node) -> np.ndarray:
    import onnx

    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if a.name == "value":
            return onnx.numpy_helper.to_array(v)
        if a.name in ("value_float", "value_floats"):
            return np.asarray(v, dtype=np.float32)
        if a.name in ("value_int", "value_ints"):
            return np.asarray(v, dtype=np.int64)
    raise Unsupported("only value, value_float(s) and value_int(s) constants are supported")


# ---- GPU-lowerable operators ---------------------------------------------------------------


def stage(imp: Importer, node, kind: str) -> str:
    return imp.fresh(node.name or kind)


def f32_input(imp: Importer, name: str) -> SSAValue:
    v = imp.value(name)
    if not isinstance(v.type, TensorType) or v.type.element_type != f32 or DYNAMIC_INDEX in v.type.get_shape():
        raise Unsupported(f"input '{name}' is {v.type}; GPU operators take static float32 tensors")
    return v


def ints_attr(node, name, default):
    v = attr(node, name, None)
    return tuple(default if v is None else v)


def const_input(imp: Importer, node, k: int, what: str, default=None) -> np.ndarray | None:
    """The constant at input k (None, or `default`, when the input is absent)."""
    if len(node.input) <= k or not node.input[k]:
        return default
    c = imp.const(node.input[k])
    if c is None:
        raise Unsupported(f"{what} must be a constant (or computable at import)")
    return c


def const_ints(imp: Importer, node, k: int, what: str, default=None) -> list[int] | None:
    c = const_input(imp, node, k, what, None)
    return default if c is None else [int(v) for v in np.asarray(c).reshape(-1)]


def single_output(node) -> None:
    extra = [o for o in node.output[1:] if o]
    if extra:
        raise Unsupported(f"its optional output(s) {', '.join(extra)} are not supported")


def spatial_pads(node, x_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int]) -> list[int]:
    """Explicit pads (all leading, then all trailing) from `pads` or `auto_pad`."""
    ap = attr(node, "auto_pad", "NOTSET")
    r = len(x_spatial)
    if ap in ("NOTSET", ""):
        return list(ints_attr(node, "pads", (0,) * (2 * r)))
    if ap == "VALID":
        return [0] * (2 * r)
    if ap not in ("SAME_UPPER", "SAME_LOWER"):
        raise Unsupported(f"auto_pad={ap!r} is not supported")
    lo, hi = [], []
    for n, k, s, d in zip(x_spatial, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, big = total // 2, total - total // 2
        lo.append(small if ap == "SAME_UPPER" else big)
        hi.append(big if ap == "SAME_UPPER" else small)
    return lo + hi


def as_2d(imp: Importer, node, x: SSAValue, what: str) -> tuple[SSAValue, bool]:
    """An NC(L) tensor as NC1L (1-D operators run as 2-D ones); (x, whether it was 1-D)."""
    rank = len(T.shape_of(x))
    if rank == 3:
        n, c, length = T.shape_of(x)
        return imp.reshape(x, f"{node.name or what}_2d", (n, c, 1, length)), True
    if rank != 4:
        raise Unsupported(f"only 1-D and 2-D {what} is supported (the input is {rank - 2}-D)")
    return x, False


def pads_2d(pads: Sequence[int], one_d: bool) -> list[int]:
    """ONNX pads (leading..., trailing...) as (top, left, bottom, right)."""
    return [0, pads[0], 0, pads[1]] if one_d else list(pads)


def finish_spatial(imp: Importer, node, y, one_d: bool) -> None:
    """Adds op y; a 1-D operator's NC1L result goes back to NCL."""
    if not one_d:
        imp.add(y, node.output[0])
        return
    r = imp.add(y)
    n, c, _, length = T.shape_of(r)
    imp.reshape(r, f"{r.name_hint}_1d", (n, c, length), node.output[0])


def conv(imp: Importer, node) -> None:
    x, one_d = as_2d(imp, node, f32_input(imp, node.input[0]), "convolution")
    w_name = node.input[1]
    w = imp.const(w_name)
    if one_d:
        if w is None:
            raise Unsupported("a 1-D convolution needs constant weights")
        w_name = imp.fresh_const(w_name + "_2d", w[:, :, None, :])
    wv = f32_input(imp, w_name)
    kernel = T.shape_of(wv)[2:]
    k1 = kernel[1:] if one_d else kernel
    strides, dilations = ints_attr(node, "strides", (1,) * len(k1)), ints_attr(node, "dilations", (1,) * len(k1))
    pads = spatial_pads(node, T.shape_of(x)[3 if one_d else 2:], k1, strides, dilations)
    if one_d:
        strides, dilations = (1, *strides), (1, *dilations)
    name = stage(imp, node, "conv")
    y = T.Conv2dOp(x, wv, name, strides, pads_2d(pads, one_d), dilations, attr(node, "group", 1))
    if len(node.input) > 2 and node.input[2]:
        imp.add(y)
        y = T.BiasAddOp(y.result, f32_input(imp, node.input[2]), imp.fresh(name + "_bias"), 1)
    finish_spatial(imp, node, y, one_d)


def conv_transpose(imp: Importer, node) -> None:
    x, one_d = as_2d(imp, node, f32_input(imp, node.input[0]), "transposed convolution")
    w_name = node.input[1]
    if one_d:
        w = imp.const(w_name)
        if w is None:
            raise Unsupported("a 1-D transposed convolution needs constant weights")
        w_name = imp.fresh_const(w_name + "_2d", w[:, :, None, :])
    wv = f32_input(imp, w_name)
    spatial = T.shape_of(x)[3 if one_d else 2:]
    k = T.shape_of(wv)[3 if one_d else 2:]
    r = len(k)
    strides, dilations = ints_attr(node, "strides", (1,) * r), ints_attr(node, "dilations", (1,) * r)
    out_pad = list(ints_attr(node, "output_padding", (0,) * r))
    out_shape = attr(node, "output_shape", None)
    ap = attr(node, "auto_pad", "NOTSET")
    if out_shape is not None or ap in ("SAME_UPPER", "SAME_LOWER"):
        # ONNX: total padding = stride * (in - 1) + output_padding + (k - 1) * dil + 1 - out
        want = list(out_shape)[-r:] if out_shape is not None else [n * s for n, s in zip(spatial, strides)]
        total = [s * (n - 1) + op + (kk - 1) * d + 1 - o
                 for s, n, op, kk, d, o in zip(strides, spatial, out_pad, k, dilations, want)]
        if out_shape is not None and min(total) < 0:
            raise T.ShapeError(f"output_shape {tuple(want)} is larger than the transposed convolution gives")
        total = [max(t, 0) for t in total]  # SAME where no padding is needed: the natural size, as onnxruntime
        # the odd element of padding goes at the end for SAME_UPPER, at the start otherwise
        upper = ap == "SAME_UPPER"
        pads = [t // 2 if upper else t - t // 2 for t in total] + [t - t // 2 if upper else t // 2 for t in total]
    elif ap in ("NOTSET", "", "VALID"):
        pads = list(ints_attr(node, "pads", (0,) * (2 * r))) if ap != "VALID" else [0] * (2 * r)
    else:
        raise Unsupported(f"auto_pad={ap!r} is not supported")
    if one_d:
        strides, dilations, out_pad = (1, *strides), (1, *dilations), [0, *out_pad]
    name = stage(imp, node, "convtranspose")
    y = T.ConvTranspose2dOp(x, wv, name, strides, pads_2d(pads, one_d), dilations, out_pad, attr(node, "group", 1))
    if len(node.input) > 2 and node.input[2]:
        imp.add(y)
        y = T.BiasAddOp(y.result, f32_input(imp, node.input[2]), imp.fresh(name + "_bias"), 1)
    finish_spatial(imp, node, y, one_d)


def transposed(imp: Importer, name: str, base: str) -> SSAValue:
    """The transpose of a 2-D tensor: of a constant at import, else a remap."""
    c = imp.const(name)
    if c is not None:
        return imp.new_weight(base, np.ascontiguousarray(c.T))
    x = f32_input(imp, name)
    return imp.add(T.RemapOp(x, imp.fresh(base), *T.transpose_remap(T.shape_of(x), (1, 0))))


SPLIT_K_CHUNK = 64  # k per slice of a split-K row product


def split_k_slices(m: int, k: int) -> int:
    """How many slices a one-row product's k loop is cut into: one thread per output would run
    all of k serially (a classifier's 1x2048 by 2048x1000 is latency-bound at 1000 threads), so
    the slices run in parallel and a reduce sums them. 1 where it does not pay."""
    if m != 1 or k < 4 * SPLIT_K_CHUNK:
        return 1
    return max(d for d in range(1, k // SPLIT_K_CHUNK + 1) if k % d == 0)


def const_product(imp: Importer, a: SSAValue, b_const: np.ndarray, b_name: str, name: str) -> T.TensorOp:
    """a (m, k) times the constant b (k, n): a matmul, or for one row a split-K product (a batched
    matmul over k slices, the weight stored sliced, then a sum over the slices)."""
    (m, k), n = T.shape_of(a), b_const.shape[1]
    slices = split_k_slices(m, k)
    if slices == 1:
        return T.MatmulOp(a, imp.new_weight(b_name, b_const), name)
    rows = imp.reshape(a, name + "_slices", (slices, 1, k // slices))
    w = imp.new_weight(b_name + "_slices", np.ascontiguousarray(b_const.reshape(slices, k // slices, n)))
    partial = imp.add(T.MatmulOp(rows, w, imp.fresh(name + "_partial")))
    return T.ReduceOp(partial, name, "sum", (0,), False)


def gemm(imp: Importer, node) -> None:
    alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    a = transposed(imp, node.input[0], node.input[0] + "_t") if attr(node, "transA", 0) else f32_input(imp, node.input[0])
    b_const = imp.const(node.input[1])
    name = stage(imp, node, "gemm")
    if b_const is not None and b_const.ndim == 2:
        b_const = np.asarray(b_const.T if attr(node, "transB", 0) else b_const, np.float32) * np.float32(alpha)
        y, alpha = const_product(imp, a, b_const, node.input[1] + "_t", name), 1.0
    else:
        b = transposed(imp, node.input[1], node.input[1] + "_t") if attr(node, "transB", 0) else f32_input(imp, node.input[1])
        y = T.MatmulOp(a, b, name)
    if alpha != 1.0:
        imp.add(y)
        y = T.BinaryOp(y.result, imp.scalar(name + "_alpha", alpha), imp.fresh(name + "_scaled"), "mul")
    if len(node.input) > 2 and node.input[2]:
        imp.add(y)
        c = imp.const(node.input[2])
        n = T.shape_of(y.result)[1]
        if c is not None and (beta != 1.0 or c.shape in ((n,), (1, n))):
            c = (np.asarray(c, dtype=np.float32) * np.float32(beta))
            if c.size == n and c.ndim <= 2 and c.shape[-1:] == (n,):
                y = T.BiasAddOp(y.result, imp.new_weight(node.input[2] + "_b", c.reshape(n)), imp.fresh(name + "_bias"), 1)
            else:
                y = T.BinaryOp(y.result, imp.new_weight(node.input[2] + "_b", c), imp.fresh(name + "_c"), "add")
        elif beta == 1.0:
            y = T.BinaryOp(y.result, f32_input(imp, node.input[2]), imp.fresh(name + "_c"), "add")
        else:
            c = imp.add(T.BinaryOp(f32_input(imp, node.input[2]), imp.scalar(name + "_beta", beta),
                                   imp.fresh(name + "_cb"), "mul"))
            y = T.BinaryOp(y.result, c, imp.fresh(name + "_c"), "add")
    imp.add(y, node.output[0])


def matmul(imp: Importer, node) -> None:
    """numpy's matmul: batched, broadcast; a 1-D operand is a row (left) or a column (right)."""
    sa, sb = imp.shape(node.input[0]), imp.shape(node.input[1])
    if not sa or not sb:
        raise Unsupported("MatMul of a scalar is not defined")
    a = f32_input(imp, node.input[0])
    name = stage(imp, node, "matmul")
    if len(sa) == 1:
        a = imp.reshape(a, name + "_row", (1, sa[0]))
    b_const = imp.const(node.input[1])
    if b_const is not None and len(sb) == 2 and len(T.shape_of(a)) == 2:
        y = imp.add(const_product(imp, a, np.asarray(b_const, np.float32), node.input[1] + "_w", name))
    else:
        b = f32_input(imp, node.input[1])
        if len(sb) == 1:
            b = imp.reshape(b, name + "_col", (sb[0], 1))
        y = imp.add(T.MatmulOp(a, b, name))
    out = list(T.shape_of(y))
    if len(sb) == 1:
        del out[-1]
    if len(sa) == 1:
        del out[-1 if len(sb) == 1 else -2]
    imp.reshape(y, name + "_out", out, node.output[0])


# ---- elementwise -------------------------------------------------------------------------------

# ONNX op -> (unary fn, {tensorop param: (ONNX attribute, default)})
UNARY: dict[str, tuple[str, dict[str, tuple[str, float]]]] = {
    "Relu": ("relu", {}), "Sigmoid": ("sigmoid", {}), "Tanh": ("tanh", {}), "Exp": ("exp", {}), "Neg": ("neg", {}),
    "Abs": ("abs", {}), "Sqrt": ("sqrt", {}), "Reciprocal": ("reciprocal", {}), "Floor": ("floor", {}),
    "Ceil": ("ceil", {}), "Sign": ("sign", {}), "Erf": ("erf", {}), "Log": ("log", {}),
    "Softplus": ("softplus", {}), "Softsign": ("softsign", {}), "HardSwish": ("hard_swish", {}),
    "LeakyRelu": ("leaky_relu", {"alpha": ("alpha", 0.01)}),
    "Elu": ("elu", {"alpha": ("alpha", 1.0)}),
    "Selu": ("selu", {"alpha": ("alpha", 1.67326319217681884765625), "beta": ("gamma", 1.05070102214813232421875)}),
    "HardSigmoid": ("hard_sigmoid", {"alpha": ("alpha", 0.2), "beta": ("beta", 0.5)}),
    "Shrink": ("shrink", {"alpha": ("lambd", 0.5), "beta": ("bias", 0.0)}),
}
BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min", "Pow": "pow",
          "PRelu": "prelu"}


def unary(imp: Importer, node) -> None:
    fn, params = UNARY[node.op_type]
    kw = {p: float(attr(node, a, default)) for p, (a, default) in params.items()}
    imp.add(T.UnaryOp(f32_input(imp, node.input[0]), stage(imp, node, fn), fn, **kw), node.output[0])


def gelu(imp: Importer, node) -> None:
    approx = attr(node, "approximate", "none")
    if approx not in ("none", "tanh"):
        raise Unsupported(f"approximate={approx!r} is not supported")
    fn = "gelu" if approx == "none" else "gelu_tanh"
    imp.add(T.UnaryOp(f32_input(imp, node.input[0]), stage(imp, node, fn), fn), node.output[0])


def clip(imp: Importer, node) -> None:
    if imp.opset < 11:
        lo, hi = attr(node, "min", -3.4e38), attr(node, "max", 3.4e38)
    else:
        bounds = []
        for k, default in ((1, -3.4e38), (2, 3.4e38)):
            c = const_input(imp, node, k, "min and max")
            bounds.append(default if c is None else float(np.asarray(c).reshape(-1)[0]))
        lo, hi = bounds
    x = f32_input(imp, node.input[0])
    name = stage(imp, node, "clip")
    op = T.UnaryOp(x, name, "relu6") if (lo, hi) == (0.0, 6.0) else T.UnaryOp(x, name, "clip", lo, hi)
    imp.add(op, node.output[0])


def binary(imp: Importer, node) -> None:
    """Add, Sub, Mul, Div, Pow, PRelu; Max, Min, Sum and Mean of any number of inputs (a chain
    of binary ops, Mean then scaled)."""
    names = [n for n in node.input if n]
    if node.op_type in ("Sum", "Mean", "Max", "Min"):
        fn = {"Sum": "add", "Mean": "add", "Max": "max", "Min": "min"}[node.op_type]
    else:
        fn = BINARY[node.op_type]
        if len(names) != 2:
            raise Unsupported(f"{node.op_type} needs 2 inputs, got {len(names)}")
    if not names:
        raise Unsupported("no inputs")
    base = stage(imp, node, fn)
    if len(names) == 1:
        imp.values[node.output[0]] = f32_input(imp, names[0])
        return
    y = f32_input(imp, names[0])
    last = len(names) - 1 if node.op_type != "Mean" else len(names)
    for k, n in enumerate(names[1:], 1):
        name = base if k == last else imp.fresh(f"{base}_{k}")
        y = imp.add(T.BinaryOp(y, legacy_broadcast(imp, node, n, y), name, fn))
    if node.op_type == "Mean":
        y = imp.add(T.BinaryOp(y, imp.scalar(base + "_n", 1.0 / len(names)), base, "mul"))
    if node.op_type == "PRelu" and T.shape_of(y) != imp.shape(node.input[0]) and \
            math.prod(T.shape_of(y)) != math.prod(imp.shape(node.input[0])):
        raise Unsupported(f"the slope {imp.shape(node.input[1])} must broadcast to the input {imp.shape(node.input[0])}")
    imp.values[node.output[0]] = y


def legacy_broadcast(imp: Importer, node, name: str, x: SSAValue) -> SSAValue:
    """The second operand: before opset 7, `broadcast=1` aligns it with x at `axis` (by default
    at the end) and PRelu's 1-D slope of x's channel count is per channel."""
    v = f32_input(imp, name)
    if imp.opset >= 7:
        return v
    rank, shape = len(T.shape_of(x)), imp.shape(name)
    if attr(node, "broadcast", 0):
        axis = attr(node, "axis", rank - len(shape)) % rank
    elif node.op_type == "PRelu" and len(shape) == 1 and rank > 2 and shape[0] == T.shape_of(x)[1] > 1:
        axis = 1
    else:
        return v
    return imp.reshape(v, name + "_aligned", (1,) * axis + tuple(shape) + (1,) * (rank - axis - len(shape)))


def cast(imp: Importer, node) -> None:
    """Cast between float types of a float tensor: nothing to do (floats compute in f32; a cast
    to float16 marks an fp16 model, which load_onnx runs at precision fp16)."""
    to = attr(node, "to")
    v = imp.value(node.input[0])
    if to in (ONNX_FLOAT, ONNX_DOUBLE, ONNX_FLOAT16) and v.type.element_type == f32:
        imp.consts.half |= to == ONNX_FLOAT16
        imp.values[node.output[0]] = v
    elif to in (ONNX_INT64, ONNX_INT32) and v.type.element_type == i32:
        imp.values[node.output[0]] = v
    else:
        raise Unsupported(f"cast of {v.type} to {imp.onnx.TensorProto.DataType.Name(to)} at run time is not supported")


def batchnorm(imp: Importer, node) -> None:
    """A BatchNormalization that was not folded into a conv: x * scale + shift per channel."""
    single_output(node)
    scale, shift = bn_scale_shift(imp, node)
    x = f32_input(imp, node.input[0])
    shape = [1] * len(T.shape_of(x))
    shape[1] = -1
    name = stage(imp, node, "bn")
    y = imp.add(T.BinaryOp(x, imp.new_weight(name + "_scale", scale.reshape(shape)), name + "_mul", "mul"))
    imp.used_names.add(name + "_mul")
    imp.add(T.BinaryOp(y, imp.new_weight(name + "_shift", shift.reshape(shape)), name, "add"), node.output[0])


def bn_scale_shift(imp: Importer, node) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (imp.const(n) for n in node.input[1:5])
    if any(c is None for c in (gamma, beta, mean, var)):
        raise Unsupported("scale, bias, mean and var must be constants")
    scale = gamma / np.sqrt(var + attr(node, "epsilon", 1e-5))
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


# ---- pooling, reductions, normalisation ----------------------------------------------------------


def pool(imp: Importer, node) -> None:
    single_output(node)
    kind = "max" if node.op_type == "MaxPool" else "avg"
    x, one_d = as_2d(imp, node, f32_input(imp, node.input[0]), "pooling")
    kernel = list(attr(node, "kernel_shape"))
    r = len(kernel)
    strides, dilations = ints_attr(node, "strides", (1,) * r), ints_attr(node, "dilations", (1,) * r)
    pads = spatial_pads(node, T.shape_of(x)[3 if one_d else 2:], kernel, strides, dilations)
    if one_d:
        kernel, strides, dilations = [1, *kernel], (1, *strides), (1, *dilations)
    if kind == "avg" and any(d != 1 for d in dilations):
        raise Unsupported("AveragePool with dilations is not supported")
    op = T.Pool2dOp(x, stage(imp, node, kind + "pool"), kind, kernel, strides, pads_2d(pads, one_d), dilations,
                    bool(attr(node, "ceil_mode", 0)), bool(attr(node, "count_include_pad", 0)))
    finish_spatial(imp, node, op, one_d)


def global_pool(imp: Importer, node) -> None:
    fn = "mean" if node.op_type == "GlobalAveragePool" else "max"
    x = f32_input(imp, node.input[0])
    axes = list(range(2, len(T.shape_of(x))))
    imp.add(T.ReduceOp(x, stage(imp, node, "global_" + fn), fn, axes, True), node.output[0])


def reduce(imp: Importer, node) -> None:
    fn = {"ReduceMean": "mean", "ReduceMax": "max", "ReduceSum": "sum"}[node.op_type]
    x = f32_input(imp, node.input[0])
    shape = imp.shape(node.input[0])
    axes = attr(node, "axes")
    if axes is None:
        axes = const_ints(imp, node, 1, "axes")
    if not axes:
        if attr(node, "noop_with_empty_axes", 0):
            imp.values[node.output[0]] = x
            return
        axes = list(range(len(shape)))
    keep = bool(attr(node, "keepdims", 1))
    name = stage(imp, node, "reduce_" + fn)
    out = T.reduce_shape(shape, axes, keep)
    if len(shape) != len(T.shape_of(x)) or not out:  # a scalar in or out: reduce with keepdims, then reshape
        y = imp.add(T.ReduceOp(imp.reshape(x, name + "_in", shape), name, fn, axes, True))
        imp.reshape(y, name + "_out", out, node.output[0])
    else:
        imp.add(T.ReduceOp(x, name, fn, axes, keep), node.output[0])


def softmax(imp: Importer, node) -> None:
    """Softmax and LogSoftmax; before opset 13 they act on the 2-D view (outer, inner) at the
    axis, so a reshape surrounds them unless the axis is the last."""
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    rank = len(shape)
    axis = attr(node, "axis", -1 if imp.opset >= 13 else 1)
    T.axis_of(shape, axis, node.op_type)
    log = node.op_type == "LogSoftmax"
    name = stage(imp, node, "logsoftmax" if log else "softmax")
    if imp.opset >= 13 or axis % rank == rank - 1:
        imp.add(T.SoftmaxOp(x, name, axis, log), node.output[0])
        return
    a = axis % rank
    flat = imp.reshape(x, name + "_2d", (math.prod(shape[:a]), math.prod(shape[a:])))
    y = imp.add(T.SoftmaxOp(flat, name, 1, log))
    imp.reshape(y, name + "_nd", shape, node.output[0])


def lrn(imp: Importer, node) -> None:
    """x / (bias + alpha / size * sum of x^2 over the `size` channels around)^beta: the sum is
    an average pool (count_include_pad) over the channels of x^2 viewed as (N, 1, C, H*W)."""
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    if len(shape) < 3:
        raise Unsupported(f"LRN needs an input of rank 3 or more, got {shape}")
    size = int(attr(node, "size"))
    alpha, beta, bias = attr(node, "alpha", 1e-4), attr(node, "beta", 0.75), attr(node, "bias", 1.0)
    name = stage(imp, node, "lrn")
    n, c = shape[:2]
    sq = imp.add(T.BinaryOp(x, x, imp.fresh(name + "_sq"), "mul"))
    view = imp.reshape(sq, name + "_view", (n, 1, c, math.prod(shape[2:])))
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    avg = imp.add(T.Pool2dOp(view, imp.fresh(name + "_sum"), "avg", (size, 1), (1, 1), (lo, 0, hi, 0),
                             count_include_pad=True))
    avg = imp.reshape(avg, name + "_back", shape)
    d = imp.add(T.BinaryOp(avg, imp.scalar(name + "_alpha", alpha), imp.fresh(name + "_scaled"), "mul"))
    d = imp.add(T.BinaryOp(d, imp.scalar(name + "_bias", bias), imp.fresh(name + "_shift"), "add"))
    d = imp.add(T.BinaryOp(d, imp.scalar(name + "_beta", beta), imp.fresh(name + "_pow"), "pow"))
    imp.add(T.BinaryOp(x, d, name, "div"), node.output[0])


def scale_shift(imp: Importer, node, y: SSAValue, name: str, scale: str | None, bias: str | None,
                shape: Sequence[int], out: str) -> None:
    """y * scale + bias, scale and bias broadcast from `shape` (constants reshaped to it)."""
    for k, (what, fn) in enumerate(((scale, "mul"), (bias, "add"))):
        if not what:
            continue
        c = imp.const(what)
        v = imp.new_weight(f"{name}_{fn}", c.reshape(shape)) if c is not None else f32_input(imp, what)
        last = k == 1 or not bias
        y = imp.add(T.BinaryOp(y, v, name if last else imp.fresh(f"{name}_{fn}"), fn))
    imp.values[out] = y


def layer_norm(imp: Importer, node) -> None:
    single_output(node)
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    axis = T.axis_of(shape, attr(node, "axis", -1), "LayerNormalization")
    name = stage(imp, node, "layernorm")
    y = imp.add(T.NormalizeOp(x, imp.fresh(name + "_norm"), range(axis, len(shape)), attr(node, "epsilon", 1e-5)))
    bias = node.input[2] if len(node.input) > 2 else None
    scale_shift(imp, node, y, name, node.input[1], bias, shape[axis:], node.output[0])


def instance_norm(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    name = stage(imp, node, "instancenorm")
    y = imp.add(T.NormalizeOp(x, imp.fresh(name + "_norm"), range(2, len(shape)), attr(node, "epsilon", 1e-5)))
    per_channel = (shape[1],) + (1,) * (len(shape) - 2)
    scale_shift(imp, node, y, name, node.input[1], node.input[2], per_channel, node.output[0])


def group_norm(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    groups = int(attr(node, "num_groups"))
    n, c = shape[:2]
    if c % groups:
        raise Unsupported(f"num_groups={groups} does not divide the {c} channels")
    name = stage(imp, node, "groupnorm")
    view = imp.reshape(x, name + "_groups", (n, groups, math.prod(shape[1:]) // groups))
    y = imp.add(T.NormalizeOp(view, imp.fresh(name + "_norm"), [2], attr(node, "epsilon", 1e-5)))
    y = imp.reshape(y, name + "_back", shape)
    per_channel = (c,) + (1,) * (len(shape) - 2)
    names = []
    for k in (1, 2):  # scale and bias per group (opset 18) become per channel
        cst = imp.const(node.input[k])
        if cst is None:
            raise Unsupported("scale and bias must be constants")
        cst = np.asarray(cst, np.float32).reshape(-1)
        names.append(imp.fresh_const(f"{name}_p{k}", np.repeat(cst, c // cst.size) if cst.size == groups else cst))
    scale_shift(imp, node, y, name, names[0], names[1], per_channel, node.output[0])


# ---- shapes and data movement --------------------------------------------------------------------


def remap(imp: Importer, node, x: SSAValue, r: T.Remap, out: str, mode: str = "strict", value: float = 0.0,
          kind: str = "remap") -> None:
    shape, source, step, offset = r
    if tuple(shape) == T.shape_of(x) and source == list(range(len(shape))) and step == [1] * len(shape) \
            and not any(offset):
        imp.values[out] = x  # the identity
        return
    imp.add(T.RemapOp(x, stage(imp, node, kind), *r, mode=mode, value=value), out)


def reshape_to(imp: Importer, node, shape) -> None:
    x = imp.value(node.input[0])
    imp.reshape(x, node.name or "reshape", shape, node.output[0])


def flatten(imp: Importer, node) -> None:
    shape = imp.shape(node.input[0])
    axis = attr(node, "axis", 1) % (len(shape) + 1) if shape else 0
    reshape_to(imp, node, (math.prod(shape[:axis]), math.prod(shape[axis:])))


def reshape(imp: Importer, node) -> None:
    if imp.opset < 5:  # the shape was an attribute before opset 5
        target = attr(node, "shape")
        if target is None:
            raise Unsupported("needs a shape attribute (before opset 5)")
        target = np.asarray(target, dtype=np.int64)
    else:
        target = const_input(imp, node, 1, "the shape")
        if target is None:
            raise Unsupported("needs a shape input")
    shape = imp.shape(node.input[0])
    out = [shape[k] if d == 0 and not attr(node, "allowzero", 0) else int(d) for k, d in enumerate(target.reshape(-1))]
    if out.count(-1) == 1:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(shape) // max(known, 1)
    if math.prod(out) != math.prod(shape) or min(out, default=1) < 1:
        raise T.ShapeError(f"cannot reshape {shape} to {tuple(int(d) for d in target.reshape(-1))}")
    reshape_to(imp, node, out)


def squeeze(imp: Importer, node) -> None:
    shape = imp.shape(node.input[0])
    axes = attr(node, "axes") if imp.opset < 13 else const_ints(imp, node, 1, "axes")
    axes = [a for a, d in enumerate(shape) if d == 1] if axes is None else T.normalize_axes(axes, len(shape), "squeeze")
    if any(shape[a] != 1 for a in axes):
        raise T.ShapeError(f"squeeze of axes {tuple(axes)} of {shape}, which are not all 1")
    reshape_to(imp, node, [d for a, d in enumerate(shape) if a not in axes])


def unsqueeze(imp: Importer, node) -> None:
    shape = list(imp.shape(node.input[0]))
    axes = attr(node, "axes") if imp.opset < 13 else const_ints(imp, node, 1, "axes")
    if not axes:
        raise Unsupported("axes must be given")
    rank = len(shape) + len(axes)
    for a in T.normalize_axes(axes, rank, "unsqueeze"):
        shape.insert(a, 1)
    reshape_to(imp, node, shape)


def concat(imp: Importer, node) -> None:
    xs = [f32_input(imp, n) for n in node.input if n]
    if len(xs) == 1:
        imp.values[node.output[0]] = xs[0]
        return
    imp.add(T.ConcatOp(xs, stage(imp, node, "concat"), attr(node, "axis")), node.output[0])


def transpose(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    rank = len(T.shape_of(x))
    perm = attr(node, "perm", list(reversed(range(rank))))
    remap(imp, node, x, T.transpose_remap(T.shape_of(x), perm), node.output[0], kind="transpose")


def slice_(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    if imp.opset < 10:
        starts, ends = attr(node, "starts"), attr(node, "ends")
        axes, steps = attr(node, "axes", list(range(len(starts)))), [1] * len(starts)
    else:
        starts, ends = const_ints(imp, node, 1, "starts"), const_ints(imp, node, 2, "ends")
        axes = const_ints(imp, node, 3, "axes", list(range(len(starts))))
        steps = const_ints(imp, node, 4, "steps", [1] * len(starts))
    remap(imp, node, x, T.slice_remap(shape, starts, ends, axes, steps), node.output[0], kind="slice")


def split(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    axis = T.axis_of(shape, attr(node, "axis", 0), "split")
    outs = list(node.output)
    sizes = attr(node, "split") if imp.opset < 13 else const_ints(imp, node, 1, "split")
    if sizes is None:
        parts = attr(node, "num_outputs", len(outs))
        each = -(-shape[axis] // parts)
        sizes = [min(each, shape[axis] - k * each) for k in range(parts)]
    if sum(sizes) != shape[axis] or len(sizes) != len(outs) or min(sizes) < 1:
        raise T.ShapeError(f"split of axis {axis} (size {shape[axis]}) into {sizes} for {len(outs)} outputs")
    start = 0
    for size, out in zip(sizes, outs):
        if out:
            remap(imp, node, x, T.slice_remap(shape, [start], [start + size], [axis], [1]), out, kind="split")
        start += size


def expand(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    target = const_ints(imp, node, 1, "the shape")
    remap(imp, node, x, T.expand_remap(imp.shape(node.input[0]) or (1,), target), node.output[0], kind="expand")


def tile(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    repeats = const_ints(imp, node, 1, "repeats")
    remap(imp, node, x, T.tile_remap(T.shape_of(x), repeats), node.output[0], mode="wrap", kind="tile")


def pad(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    mode = attr(node, "mode", "constant")
    if imp.opset < 11:
        pads, value = list(attr(node, "pads")), float(attr(node, "value", 0.0))
    else:
        pads = const_ints(imp, node, 1, "pads")
        c = const_input(imp, node, 2, "the constant value")
        value = 0.0 if c is None or c.size == 0 else float(np.asarray(c).reshape(-1)[0])
        axes = const_ints(imp, node, 3, "axes")
        if axes is not None:  # pads only for `axes`: spread them over every dimension
            full = [0] * (2 * len(shape))
            for k, a in enumerate(T.normalize_axes(axes, len(shape), "pad")):
                full[a], full[a + len(shape)] = pads[k], pads[k + len(axes)]
            pads = full
    if mode not in ("constant", "edge", "reflect", "wrap"):
        raise Unsupported(f"mode={mode!r} is not supported")
    remap(imp, node, x, T.pad_remap(shape, pads), node.output[0], mode=mode, value=value, kind="pad")


def gather(imp: Importer, node) -> None:
    """Gather at a constant scalar index is a remap; otherwise a tensorop.gather with i32
    indices (constant or a model input)."""
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    axis = T.axis_of(shape, attr(node, "axis", 0), "gather")
    idx = imp.const(node.input[1])
    if idx is not None and idx.ndim == 0:
        i = int(idx) + (shape[axis] if int(idx) < 0 else 0)
        if not 0 <= i < shape[axis]:
            raise T.ShapeError(f"index {int(idx)} is out of range for axis {axis} of {shape}")
        out = [d for k, d in enumerate(shape) if k != axis] or [1]
        source = [-1 if k == axis else (k if k < axis else k - 1) for k in range(len(shape))]
        offset = [i if k == axis else 0 for k in range(len(shape))]
        remap(imp, node, x, (tuple(out), source if len(shape) > 1 else [-1], [1] * len(shape), offset),
              node.output[0], kind="gather")
        return
    if idx is not None and (idx.min() < -shape[axis] or idx.max() >= shape[axis]):
        raise T.ShapeError(f"indices {idx.min()}..{idx.max()} are out of range for axis {axis} of {shape}")
    iv = imp.value(node.input[1])
    if iv.type.element_type != i32:
        raise Unsupported(f"indices of type {iv.type} are not supported")
    imp.add(T.GatherOp(x, iv, stage(imp, node, "gather"), axis), node.output[0])


def depth_to_space(imp: Importer, node) -> None:
    """DepthToSpace and SpaceToDepth: reshape, transpose, reshape."""
    x = f32_input(imp, node.input[0])
    n, c, h, w = T.shape_of(x)
    b = int(attr(node, "blocksize"))
    name = stage(imp, node, node.op_type.lower())
    if node.op_type == "DepthToSpace":
        if attr(node, "mode", "DCR") == "DCR":
            view, perm = (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
        else:
            view, perm = (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
        out = (n, c // (b * b), h * b, w * b)
    else:
        view, perm = (n, c, h // b, b, w // b, b), (0, 3, 5, 1, 2, 4)
        out = (n, c * b * b, h // b, w // b)
    v = imp.reshape(x, name + "_view", view)
    t = imp.add(T.RemapOp(v, imp.fresh(name + "_perm"), *T.transpose_remap(view, perm)))
    imp.reshape(t, name, out, node.output[0])


def resize(imp: Importer, node) -> None:
    """Resize (opset 10 and later) and Upsample: nearest and linear."""
    x = f32_input(imp, node.input[0])
    shape = T.shape_of(x)
    mode = attr(node, "mode", "nearest")
    if mode in ("bilinear", "trilinear"):
        mode = "linear"
    if mode not in T.RESIZE_MODES:
        raise Unsupported(f"mode={mode!r} is not supported (nearest and linear are)")
    for a, ok in (("exclude_outside", 0), ("antialias", 0)):
        if attr(node, a, ok) != ok:
            raise Unsupported(f"{a}={attr(node, a)} is not supported")
    if attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Unsupported(f"keep_aspect_ratio_policy={attr(node, 'keep_aspect_ratio_policy')!r} is not supported")
    sizes = None
    if node.op_type == "Upsample" and imp.opset < 9:
        scales = attr(node, "scales")
    elif node.op_type == "Upsample" or imp.opset < 11:
        scales = const_input(imp, node, 1, "scales")
    else:
        scales = const_input(imp, node, 2, "scales")
        sizes = const_ints(imp, node, 3, "sizes")
    axes = attr(node, "axes", None)
    axes = list(range(len(shape))) if axes is None else [T.axis_of(shape, a, "resize") for a in axes]
    full_scales, out = [1.0] * len(shape), list(shape)
    if sizes is not None:
        for a, m in zip(axes, sizes):
            full_scales[a], out[a] = float(np.float32(m) / np.float32(shape[a])), int(m)
    elif scales is not None and np.asarray(scales).size:
        for a, s in zip(axes, np.asarray(scales, np.float32).reshape(-1)):
            full_scales[a], out[a] = float(s), int(math.floor(shape[a] * float(s)))
    else:
        raise Unsupported("needs scales or sizes")
    if imp.opset < 11 or node.op_type == "Upsample":
        coord = "asymmetric"
        ups = [s >= 1 for s, n, m in zip(full_scales, shape, out) if s != 1]
        if not all(ups) and any(ups):
            raise Unsupported("nearest up- and downsampling at once is not supported before opset 11")
        rounding = "floor" if all(ups) else "ceil"
    else:
        coord = attr(node, "coordinate_transformation_mode", "half_pixel")
        rounding = attr(node, "nearest_mode", "round_prefer_floor")
        if coord not in T.RESIZE_COORDS:
            raise Unsupported(f"coordinate_transformation_mode={coord!r} is not supported")
    imp.add(T.ResizeOp(x, stage(imp, node, "resize"), out, full_scales, mode, coord, rounding), node.output[0])


def identity(imp: Importer, node) -> None:
    """Identity, and Dropout in inference: its output is its input, its mask all true."""
    if node.op_type == "Dropout":
        training = const_input(imp, node, 2, "training_mode")
        if attr(node, "is_test", 1) == 0 or (training is not None and bool(np.asarray(training).reshape(-1)[0])):
            raise Unsupported("Dropout in training mode is not supported")
        if len(node.output) > 1 and node.output[1]:
            imp.consts[node.output[1]] = np.ones(imp.shape(node.input[0]), dtype=bool)
    imp.values[node.output[0]] = imp.value(node.input[0])


# ---- detection operators ---------------------------------------------------------------------


def scalar_const(imp: Importer, node, k: int, what: str, default=None):
    if len(node.input) <= k or not node.input[k]:
        return default
    c = imp.const(node.input[k])
    if c is None:
        raise HostOnly(f"{what} is not a constant")
    return c.reshape(-1)[0].item()


def cumsum(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    axis = scalar_const(imp, node, 1, "axis")
    imp.add(T.ScanOp(x, stage(imp, node, "cumsum"), int(axis), bool(attr(node, "exclusive", 0)),
                     bool(attr(node, "reverse", 0))), node.output[0])


def topk(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    k, axis = int(scalar_const(imp, node, 1, "k")), attr(node, "axis", -1)
    name = stage(imp, node, "topk")
    idx = imp.add(T.TopkOp(x, name, k, axis, bool(attr(node, "largest", 1))))
    imp.add(T.TakeAlongAxisOp(x, idx, imp.fresh(name + "_values"), axis), node.output[0])
    if len(node.output) > 1 and node.output[1]:
        imp.values[node.output[1]] = imp.internal_call("ToInt64", [idx], TensorType(i64, T.shape_of(idx)),
                                                       name + "_indices")


def nms(imp: Importer, node) -> None:
    """One batch: per class, the scores' row (a gather of row c) goes through tensorop.nms;
    a host step turns the padded index lists into ONNX's [batch, class, box] rows."""
    boxes, scores = f32_input(imp, node.input[0]), f32_input(imp, node.input[1])
    (b, n, _), (_, classes, _) = T.shape_of(boxes), T.shape_of(scores)
    max_out = int(scalar_const(imp, node, 2, "max_output_boxes_per_class", 0))
    iou = float(scalar_const(imp, node, 3, "iou_threshold", 0.0))
    score = scalar_const(imp, node, 4, "score_threshold", None)
    if b != 1 or attr(node, "center_point_box", 0) or max_out < 1:
        raise HostOnly("batches, center-point boxes and max_output_boxes_per_class < 1 run on the host")
    max_out = min(max_out, n)
    name = stage(imp, node, "nms")
    flat_boxes = imp.add(T.ReshapeOp(boxes, imp.fresh(name + "_boxes"), (n, 4)))
    rows = imp.add(T.ReshapeOp(scores, imp.fresh(name + "_scores"), (classes, n)))
    picks = []
    for c in range(classes):
        row = rows
        if classes > 1:
            which = imp.value(imp.fresh_const(f"{name}_class{c}", np.full((1, n), c, np.int32)))
            row = imp.add(T.TakeAlongAxisOp(rows, which, imp.fresh(f"{name}_row{c}"), 0))
        row = imp.add(T.ReshapeOp(row, imp.fresh(f"{name}_s{c}"), (n,)))
        picks.append(imp.add(T.NmsOp(flat_boxes, row, imp.fresh(f"{name}_c{c}"), max_out, iou,
                                     -np.inf if score is None else float(score))))
    imp.values[node.output[0]] = imp.internal_call("NmsRows", picks, TensorType(i64, [DYNAMIC_INDEX, 3]), name)


GPU_OPS: dict[str, Callable[[Importer, object], None]] = {
    "CumSum": cumsum, "TopK": topk, "NonMaxSuppression": nms,
    "Conv": conv, "ConvTranspose": conv_transpose, "Gemm": gemm, "MatMul": matmul, "Clip": clip,
    "BatchNormalization": batchnorm, "MaxPool": pool, "AveragePool": pool, "GlobalAveragePool": global_pool,
    "GlobalMaxPool": global_pool, "ReduceMean": reduce, "ReduceMax": reduce, "ReduceSum": reduce,
    "Flatten": flatten, "Reshape": reshape, "Squeeze": squeeze, "Unsqueeze": unsqueeze, "Concat": concat,
    "Transpose": transpose, "Slice": slice_, "Split": split, "Expand": expand, "Tile": tile, "Pad": pad,
    "Gather": gather, "DepthToSpace": depth_to_space, "SpaceToDepth": depth_to_space,
    "Softmax": softmax, "LogSoftmax": softmax, "LRN": lrn, "LayerNormalization": layer_norm,
    "InstanceNormalization": instance_norm, "GroupNormalization": group_norm,
    "Resize": resize, "Upsample": resize, "Identity": identity, "Dropout": identity, "Cast": cast,
    "Gelu": gelu, "Sum": binary, "Mean": binary,
    **{k: unary for k in UNARY}, **{k: binary for k in BINARY},
}

# operators outside the supported families, with the reason given in the import error
WHY_NOT = {
    **{op: "sequences are not supported" for op in (
        "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
        "SplitToSequence", "ConcatFromSequence", "SequenceMap")},
    **{op: "string tensors are not supported" for op in ("StringNormalizer", "StringConcat", "StringSplit",
                                                         "RegexFullMatch", "TfIdfVectorizer")},
    "Gradient": "training operators are not supported",
    "Loop": "control flow (Loop, If, Scan) is not supported", "If": "control flow (Loop, If, Scan) is not supported",
    "Scan": "control flow (Loop, If, Scan) is not supported",
}


def fold_batchnorm(imp: Importer) -> None:
    """Rewrites Conv -> BatchNormalization (the conv's output used only there) into one Conv
    with scaled weights and a bias, in the graph being imported."""
    uses: dict[str, int] = {}
    for n in imp.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    for o in imp.graph.output:
        uses[o.name] = uses.get(o.name, 0) + 1
    producer = {n.output[0]: n for n in imp.graph.node if n.output}
    for bn in list(imp.graph.node):
        if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1:
            continue
        conv_node = producer.get(bn.input[0])
        if conv_node is None or conv_node.op_type != "Conv" or uses.get(bn.input[0]) != 1:
            continue
        w = imp.const(conv_node.input[1])
        try:
            scale, shift = bn_scale_shift(imp, bn)
        except Unsupported:
            continue
        if w is None or w.ndim != 4:
            continue
        b = imp.const(conv_node.input[2]) if len(conv_node.input) > 2 and conv_node.input[2] else np.zeros(w.shape[0], np.float32)
        if b is None:
            continue
        wname, bname = imp.fresh(conv_node.input[1] + "_bn"), imp.fresh(bn.output[0] + "_bias")
        imp.consts[wname] = (w * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
        imp.consts[bname] = (b * scale + shift).astype(np.float32)
        imp.used_names.discard(wname)
        imp.used_names.discard(bname)
        del conv_node.input[1:]
        conv_node.input.extend([wname, bname])
        conv_node.output[0] = bn.output[0]
        imp.graph.node.remove(bn)


def import_onnx(model) -> Graph:
    """An ONNX model (a path or an onnx.ModelProto) as a tensorop function and its weights."""
    import onnx

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise OnnxImportError(f"{path}: no such file")
        try:
            model = onnx.load(path)
        except Exception as e:  # noqa: BLE001 - protobuf raises several kinds
            raise OnnxImportError(f"{path}: not an ONNX model ({type(e).__name__}: {e})") from None
        if not model.graph.node:
            raise OnnxImportError(f"{path}: not an ONNX model (no graph nodes)")
    else:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    check_names(model.graph)
    return Importer(model).run()


def check_names(graph) -> None:
    """ONNX names are UTF-8 text; protobuf hands other bytes over as bytes: an import error
    naming where, not a failure deep inside the importer."""
    named = [("input", i.name) for i in graph.input] + [("output", o.name) for o in graph.output]
    named += [("initializer", i.name) for i in graph.initializer]
    for n in graph.node:
        named += [("node", n.name), ("op type", n.op_type)] + [("value", v) for v in [*n.input, *n.output]]
    for what, name in named:
        if isinstance(name, bytes):
            raise OnnxImportError(f"the model's {what} name {name!r} is not UTF-8 text")
