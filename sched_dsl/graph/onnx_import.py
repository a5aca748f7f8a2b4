"""ONNX import: an ONNX model (the `onnx` package) becomes a `func.func @main` of tensorop ops.

The function's arguments are the model inputs, then the weights (initializers and Constant
nodes that an operator reads as a tensor); small constants that only configure an operator
(a Reshape's shape, Clip's bounds, TopK's k) are read at import. A BatchNormalization after a
Conv whose output has no other use is folded into the conv's weights and bias; one elsewhere
becomes a per-channel mul and add. Operators without a GPU lowering that can run on the host
become `tensorop.host_call` ops (HOST_ONLY below). Anything else unsupported, or an attribute
the importer cannot honour, ends in one OnnxImportError listing every such node.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

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


class HostOnly(Exception):
    """A node of a GPU-lowerable operator in a form its GPU lowering does not cover: it runs
    on the host instead (a row of HOST_ONLY)."""


# ---- host operators: ONNX op type -> result types from (node, input types, constants) ----
# Transpose runs only here; CumSum, TopK and NonMaxSuppression have GPU handlers (GPU_OPS) and
# come here for the forms those do not cover (HostOnly).


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


def _transpose_types(node, types, consts):
    shape = list(types[0].get_shape())
    perm = attr(node, "perm", list(reversed(range(len(shape)))))
    return [TensorType(types[0].element_type, [shape[p] for p in perm])]


HOST_ONLY: dict[str, Callable] = {
    "CumSum": _cumsum_types,
    "TopK": _topk_types,
    "NonMaxSuppression": _nms_types,
    "Transpose": _transpose_types,
}


def attr(node, name: str, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def ident(text: str) -> str:
    """A name usable as a stage, SSA and C name. xDSL drops a `_<digits>` ending from SSA names,
    so names never end that way."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or "v"
    s = re.sub(r"_(\d+)$", r"\1", s)
    return s if s[0].isalpha() else "v" + s


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
        self.consts: dict[str, np.ndarray] = {i.name: initializer_array(i) for i in self.graph.initializer}
        self.values: dict[str, SSAValue] = {}
        self.weight_args: dict[str, SSAValue] = {}  # const name -> func argument
        self.weights: dict[str, np.ndarray] = {}
        self.used_names: set[str] = set()
        self.errors: list[str] = []
        self.block = Block()

    # -- names and values --------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = ident(base)
        name, k = base, 0
        while name in self.used_names:
            k += 1
            name = f"{base}v{k}"
        self.used_names.add(name)
        return name

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def value(self, name: str) -> SSAValue:
        """The SSA value of an ONNX tensor; a constant becomes a weight argument."""
        if name in self.values:
            return self.values[name]
        if name in self.consts:
            if name not in self.weight_args:
                a = np.ascontiguousarray(self.consts[name])
                if a.dtype == np.float64:
                    a = a.astype(np.float32)
                if a.ndim == 0:
                    a = a.reshape(1)
                arg = self.block.insert_arg(TensorType(element_type(a.dtype), list(a.shape)), len(self.block.args))
                arg.name_hint = self.fresh(name)
                self.weight_args[name] = arg
                self.weights[arg.name_hint] = a
            return self.weight_args[name]
        raise Unsupported(f"input '{name}' is not produced by any supported node")

    def fresh_const(self, base: str, a: np.ndarray) -> str:
        """A new constant's name (it becomes a weight argument when used)."""
        key = self.fresh(base)
        self.consts[key] = a
        return key

    def new_weight(self, base: str, a: np.ndarray) -> SSAValue:
        key = self.fresh(base)
        self.consts[key] = np.asarray(a, dtype=np.float32)
        return self.value(key)

    def add(self, op, out_name: str | None = None) -> SSAValue:
        self.block.add_op(op)
        op.result.name_hint = op.stage_name
        if out_name is not None:
            self.values[out_name] = op.result
        return op.result

    # -- the model -----------------------------------------------------------------------------
    def run(self) -> Graph:
        init = set(self.consts)
        inputs = [i for i in self.graph.input if i.name not in init]
        for i in inputs:
            tt = i.type.tensor_type
            if tt.elem_type != self.onnx.TensorProto.FLOAT:
                raise OnnxImportError(f"model input '{i.name}' is not float32 "
                                      f"({self.onnx.TensorProto.DataType.Name(tt.elem_type)})")
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if not dims or any(d is None or d < 1 for d in dims):
                raise OnnxImportError(f"model input '{i.name}' needs a static shape, got "
                                      f"{[d.dim_param or d.dim_value for d in tt.shape.dim]}")
            arg = self.block.insert_arg(T.tensor_type(dims), len(self.block.args))
            arg.name_hint = self.fresh(i.name)
            self.values[i.name] = arg
        fold_batchnorm(self)
        for node in self.graph.node:
            try:
                if node.op_type == "Constant":
                    self.consts[node.output[0]] = constant_value(node)
                    continue
                self.node(node)
            except (Unsupported, T.ShapeError) as e:
                self.errors.append(f"{node_label(node)}: {e}")
            except (IndexError, KeyError, TypeError, ValueError) as e:  # a malformed node: inputs or attributes missing
                self.errors.append(f"{node_label(node)}: malformed ({type(e).__name__}: {e})")
        outs = []
        for o in self.graph.output:
            if o.name not in self.values:
                if not self.errors:
                    self.errors.append(f"output '{o.name}' is not computed by an operator")
                continue
            outs.append(self.values[o.name])
        if self.errors:
            raise OnnxImportError("the model has nodes sched-dsl cannot run:\n  " + "\n  ".join(self.errors))
        self.block.add_op(func.ReturnOp(*outs))
        fn = func.FuncOp("main", ([a.type for a in self.block.args], [v.type for v in outs]), Region(self.block))
        return Graph(ModuleOp([fn]), self.weights, [i.name for i in inputs],
                     [ident_of(self, i.name) for i in inputs], [o.name for o in self.graph.output])

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


def ident_of(imp: Importer, onnx_name: str) -> str:
    return imp.values[onnx_name].name_hint


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


def no_auto_pad(node) -> None:
    ap = attr(node, "auto_pad", b"NOTSET")
    if (ap.decode() if isinstance(ap, bytes) else ap) not in ("NOTSET", "VALID"):
        raise Unsupported(f"auto_pad={ap!r} is not supported (give explicit pads)")


def conv(imp: Importer, node) -> None:
    no_auto_pad(node)
    x = f32_input(imp, node.input[0])
    w = f32_input(imp, node.input[1])
    pads = ints_attr(node, "pads", (0, 0, 0, 0))
    if len(pads) != 4:
        raise Unsupported("only 2-D convolutions are supported")
    name = stage(imp, node, "conv")
    y = T.Conv2dOp(x, w, name, ints_attr(node, "strides", (1, 1)), pads,
                   ints_attr(node, "dilations", (1, 1)), attr(node, "group", 1))
    if len(node.input) > 2 and node.input[2]:
        imp.add(y)
        y = T.BiasAddOp(y.result, f32_input(imp, node.input[2]), imp.fresh(name + "_bias"), 1)
    imp.add(y, node.output[0])


def gemm(imp: Importer, node) -> None:
    a = f32_input(imp, node.input[0])
    if attr(node, "transA", 0):
        raise Unsupported("transA=1 is not supported")
    b_const = imp.const(node.input[1])
    alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    if attr(node, "transB", 0) or alpha != 1.0:
        if b_const is None:
            raise Unsupported("transB=1 or alpha != 1 needs a constant B")
        b_const = (b_const.T if attr(node, "transB", 0) else b_const) * np.float32(alpha)
        b = imp.new_weight(node.input[1] + "_t", b_const)
    else:
        b = f32_input(imp, node.input[1])
    name = stage(imp, node, "gemm")
    y = T.MatmulOp(a, b, name)
    if len(node.input) > 2 and node.input[2]:
        imp.add(y)
        c = imp.const(node.input[2])
        n = T.shape_of(y.result)[1]
        if c is not None and (beta != 1.0 or c.shape in ((n,), (1, n))):
            c = (np.asarray(c, dtype=np.float32) * np.float32(beta))
            if c.size == n:
                y = T.BiasAddOp(y.result, imp.new_weight(node.input[2] + "_b", c.reshape(n)), imp.fresh(name + "_bias"), 1)
            else:
                y = T.BinaryOp(y.result, imp.new_weight(node.input[2] + "_b", c), imp.fresh(name + "_c"), "add")
        elif beta == 1.0:
            y = T.BinaryOp(y.result, f32_input(imp, node.input[2]), imp.fresh(name + "_c"), "add")
        else:
            raise Unsupported("beta != 1 needs a constant C")
    imp.add(y, node.output[0])


def matmul(imp: Importer, node) -> None:
    a, b = f32_input(imp, node.input[0]), f32_input(imp, node.input[1])
    if len(T.shape_of(a)) != 2 or len(T.shape_of(b)) != 2:
        raise Unsupported("only 2-D MatMul is supported")
    imp.add(T.MatmulOp(a, b, stage(imp, node, "matmul")), node.output[0])


UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Neg": "neg"}
BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min"}


def unary(imp: Importer, node) -> None:
    fn = UNARY[node.op_type]
    imp.add(T.UnaryOp(f32_input(imp, node.input[0]), stage(imp, node, fn), fn), node.output[0])


def clip(imp: Importer, node) -> None:
    if imp.opset < 11:
        lo, hi = attr(node, "min", -3.4e38), attr(node, "max", 3.4e38)
    else:
        bounds = []
        for k, default in ((1, -3.4e38), (2, 3.4e38)):
            name = node.input[k] if len(node.input) > k else ""
            c = imp.const(name)
            if name and c is None:
                raise Unsupported("min and max must be constants")
            bounds.append(default if c is None else float(np.asarray(c).reshape(-1)[0]))
        lo, hi = bounds
    x = f32_input(imp, node.input[0])
    name = stage(imp, node, "clip")
    op = T.UnaryOp(x, name, "relu6") if (lo, hi) == (0.0, 6.0) else T.UnaryOp(x, name, "clip", lo, hi)
    imp.add(op, node.output[0])


def binary(imp: Importer, node) -> None:
    fn = BINARY[node.op_type]
    if len(node.input) != 2:
        raise Unsupported(f"{node.op_type} with {len(node.input)} inputs is not supported (2 are)")
    ca, cb = imp.const(node.input[0]), imp.const(node.input[1])
    if ca is not None and cb is not None:
        from sched_dsl.reference import BINARY as NP
        imp.consts[node.output[0]] = NP[fn](ca, cb)
        return
    imp.add(T.BinaryOp(f32_input(imp, node.input[0]), f32_input(imp, node.input[1]), stage(imp, node, fn), fn),
            node.output[0])


def batchnorm(imp: Importer, node) -> None:
    """A BatchNormalization that was not folded into a conv: x * scale + shift per channel."""
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


def pool(imp: Importer, node) -> None:
    no_auto_pad(node)
    if attr(node, "ceil_mode", 0):
        raise Unsupported("ceil_mode=1 is not supported")
    if any(d != 1 for d in attr(node, "dilations", [1, 1])):
        raise Unsupported("dilations are not supported")
    kernel = attr(node, "kernel_shape")
    pads = ints_attr(node, "pads", (0, 0, 0, 0))
    kind = "max" if node.op_type == "MaxPool" else "avg"
    if kind == "avg" and attr(node, "count_include_pad", 0) and any(pads):
        raise Unsupported("count_include_pad=1 with padding is not supported")
    if len(node.output) > 1 and node.output[1]:
        raise Unsupported("the Indices output is not supported")
    op = T.Pool2dOp(f32_input(imp, node.input[0]), stage(imp, node, kind + "pool"), kind, kernel,
                    ints_attr(node, "strides", (1, 1)), pads)
    imp.add(op, node.output[0])


def global_pool(imp: Importer, node) -> None:
    fn = "mean" if node.op_type == "GlobalAveragePool" else "max"
    x = f32_input(imp, node.input[0])
    axes = list(range(2, len(T.shape_of(x))))
    imp.add(T.ReduceOp(x, stage(imp, node, "global_" + fn), fn, axes, True), node.output[0])


def reduce(imp: Importer, node) -> None:
    fn = {"ReduceMean": "mean", "ReduceMax": "max", "ReduceSum": "sum"}[node.op_type]
    x = f32_input(imp, node.input[0])
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        c = imp.const(node.input[1])
        if c is None:
            raise Unsupported("axes must be a constant")
        axes = [int(a) for a in c.reshape(-1)]
    if axes is None:
        axes = list(range(len(T.shape_of(x))))
    imp.add(T.ReduceOp(x, stage(imp, node, "reduce_" + fn), fn, axes, bool(attr(node, "keepdims", 1))),
            node.output[0])


def reshape_to(imp: Importer, node, shape) -> None:
    x = f32_input(imp, node.input[0])
    imp.add(T.ReshapeOp(x, stage(imp, node, "reshape"), shape), node.output[0])


def flatten(imp: Importer, node) -> None:
    shape = T.shape_of(imp.value(node.input[0]))
    axis = attr(node, "axis", 1) % (len(shape) + 1) if shape else 0
    reshape_to(imp, node, (int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))))


def reshape(imp: Importer, node) -> None:
    if imp.opset < 5:  # the shape was an attribute before opset 5
        target = attr(node, "shape")
        if target is None:
            raise Unsupported("needs a shape attribute (before opset 5)")
        target = np.asarray(target, dtype=np.int64)
    else:
        if len(node.input) < 2 or not node.input[1]:
            raise Unsupported("needs a shape input")
        target = imp.const(node.input[1])
        if target is None:
            raise Unsupported("the shape must be a constant")
    shape = T.shape_of(imp.value(node.input[0]))
    out = [shape[k] if d == 0 and not attr(node, "allowzero", 0) else int(d) for k, d in enumerate(target.reshape(-1))]
    if out.count(-1) == 1:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = int(np.prod(shape)) // max(known, 1)
    reshape_to(imp, node, out)


def concat(imp: Importer, node) -> None:
    xs = [f32_input(imp, n) for n in node.input]
    imp.add(T.ConcatOp(xs, stage(imp, node, "concat"), attr(node, "axis")), node.output[0])


def softmax(imp: Importer, node) -> None:
    x = f32_input(imp, node.input[0])
    rank = len(T.shape_of(x))
    axis = attr(node, "axis", -1 if imp.opset >= 13 else 1)
    if imp.opset < 13 and axis % rank != rank - 1:
        raise Unsupported(f"Softmax before opset 13 with axis={axis} (not the last) is not supported")
    imp.add(T.SoftmaxOp(x, stage(imp, node, "softmax"), axis), node.output[0])


def identity(imp: Importer, node) -> None:
    if node.input[0] in imp.consts and node.input[0] not in imp.values:
        imp.consts[node.output[0]] = imp.consts[node.input[0]]
    else:
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
    "Conv": conv, "Gemm": gemm, "MatMul": matmul, "Clip": clip, "BatchNormalization": batchnorm,
    "MaxPool": pool, "AveragePool": pool, "GlobalAveragePool": global_pool, "GlobalMaxPool": global_pool,
    "ReduceMean": reduce, "ReduceMax": reduce, "ReduceSum": reduce, "Flatten": flatten, "Reshape": reshape,
    "Concat": concat, "Softmax": softmax, "Identity": identity, "Dropout": identity,
    **{k: unary for k in UNARY}, **{k: binary for k in BINARY},
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
        if w is None:
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
    return Importer(model).run()
