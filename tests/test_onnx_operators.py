"""The ONNX operators of the coverage work against onnxruntime on PoCL, with Hypothesis over
shapes and attributes: elementwise functions (one model computes all of them at once),
variadic Sum/Mean/Max/Min, PRelu and Pow with broadcasting, Softmax/LogSoftmax at every
opset and axis, pooling (ceil_mode, dilations, count_include_pad, asymmetric and SAME pads,
1-D), LRN and the normalisations, the data-movement operators, batched MatMul, ConvTranspose
and Resize/Upsample. Few examples each (SCHED_DSL_ONNX_EXAMPLES runs more)."""

import os

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import sched_dsl as sd

EXAMPLES = int(os.environ.get("SCHED_DSL_ONNX_EXAMPLES", "4"))
# no shrinking: every example compiles kernels, so shrinking would take minutes; the blob
# printed with a failure reproduces it
examples = settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
                    # the same examples every run, as tests/test_properties.py; SCHED_DSL_RANDOM_EXAMPLES=1: new ones
                    derandomize=not os.environ.get("SCHED_DSL_RANDOM_EXAMPLES"),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, F, None) for n in outputs],
                          [numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def check(m, feeds, rtol=1e-4, atol=1e-5):
    """Our outputs on PoCL equal onnxruntime's (shape, dtype, values; NaN where it has NaN)."""
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = sd.load_onnx(m).run(None, feeds)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, (k, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"output {k}")


def shapes(min_rank=1, max_rank=4, max_side=5):
    return st.lists(st.integers(1, max_side), min_size=min_rank, max_size=max_rank).map(tuple)


def values(draw, shape, lo=-2.0, hi=2.0):
    seed = draw(st.integers(0, 2**31))
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


POSITIVE = {"Sqrt", "Log", "Reciprocal"}
UNARY_OPS = ["Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Abs", "Sqrt", "Reciprocal", "Floor", "Ceil", "Sign", "Erf",
             "Log", "Softplus", "Softsign", "HardSwish", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "Shrink"]


@examples
@given(data=st.data())
def test_elementwise_functions(data):
    """Every elementwise function at once on one input (|x| + 0.1 for Sqrt, Log, Reciprocal),
    with drawn alpha/beta/gamma/lambd/bias, Gelu exact and tanh (opset 20), Clip, and a chain
    fused after a matmul."""
    shape = data.draw(shapes(), label="shape")
    alpha = data.draw(st.floats(0.05, 2.0), label="alpha")
    beta = data.draw(st.floats(0.0, 1.0), label="beta")
    attrs = {"LeakyRelu": dict(alpha=alpha), "Elu": dict(alpha=alpha), "Selu": dict(alpha=alpha, gamma=1 + beta),
             "HardSigmoid": dict(alpha=alpha / 4, beta=beta), "Shrink": dict(lambd=beta, bias=alpha / 2)}
    nodes = [helper.make_node("Abs", ["x"], ["ax"]), helper.make_node("Add", ["ax", "tenth"], ["pos"])]
    outs = []
    for op in UNARY_OPS:
        nodes.append(helper.make_node(op, ["pos" if op in POSITIVE else "x"], [op.lower()], **attrs.get(op, {})))
        outs.append(op.lower())
    nodes += [helper.make_node("Gelu", ["x"], ["gelu"]), helper.make_node("Gelu", ["x"], ["gelu_t"], approximate="tanh"),
              helper.make_node("Clip", ["x", "lo", "hi"], ["clip"])]
    outs += ["gelu", "gelu_t", "clip"]
    inits = [("tenth", np.float32(0.1)), ("lo", np.float32(-beta)), ("hi", np.float32(alpha))]
    check(model(nodes, [("x", shape)], outs, inits, opset=20), {"x": values(data.draw, shape)})


@examples
@given(data=st.data())
def test_variadic_and_broadcast_binaries(data):
    """Sum, Mean, Max, Min of 1 to 4 inputs that broadcast; Pow (positive base); PRelu with a
    slope that broadcasts to the input."""
    shape = data.draw(shapes(2, 4), label="shape")
    n = data.draw(st.integers(1, 4), label="inputs")
    ins = [shape] + [tuple(1 if data.draw(st.booleans()) else d for d in shape[data.draw(st.integers(0, len(shape) - 1)):])
                     for _ in range(n - 1)]
    names = [f"x{k}" for k in range(n)]
    slope = tuple(1 if data.draw(st.booleans()) else d for d in shape[1:])
    nodes = [helper.make_node(op, names, [op.lower()]) for op in ("Sum", "Mean", "Max", "Min")]
    nodes += [helper.make_node("Abs", ["x0"], ["base"]), helper.make_node("Pow", ["base", "e"], ["pow"]),
              helper.make_node("PRelu", ["x0", "slope"], ["prelu"])]
    feeds = {nm: values(data.draw, s) for nm, s in zip(names, ins)}
    inits = [("e", values(data.draw, shape[-1:], 0.5, 2.5)), ("slope", values(data.draw, slope, 0.0, 0.5))]
    check(model(nodes, list(zip(names, ins)), ["sum", "mean", "max", "min", "pow", "prelu"], inits), feeds)


@examples
@given(data=st.data())
def test_softmax_and_log_softmax_every_opset_and_axis(data):
    shape = data.draw(shapes(1, 4), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    opset = data.draw(st.sampled_from([11, 13]), label="opset")
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=axis), helper.make_node("LogSoftmax", ["x"], ["l"], axis=axis)]
    check(model(nodes, [("x", shape)], ["s", "l"], opset=opset), {"x": values(data.draw, shape, -4, 4)})


@examples
@given(data=st.data())
def test_pooling(data):
    """MaxPool (dilations) and AveragePool (count_include_pad) with ceil_mode, asymmetric pads
    or auto_pad SAME_UPPER/SAME_LOWER, in 1-D and 2-D."""
    rank = data.draw(st.sampled_from([1, 2]), label="spatial rank")
    kind = data.draw(st.sampled_from(["MaxPool", "AveragePool"]), label="kind")
    kernel = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    strides = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    dil = [data.draw(st.integers(1, 2)) if kind == "MaxPool" else 1 for _ in range(rank)]
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    attrs = dict(kernel_shape=kernel, strides=strides, ceil_mode=int(data.draw(st.booleans(), label="ceil")))
    if kind == "MaxPool":
        attrs["dilations"] = dil
    else:
        attrs["count_include_pad"] = int(data.draw(st.booleans(), label="count_include_pad"))
    # onnxruntime leaves dilations out of SAME padding (the ONNX spec, which we follow, does not)
    # and fails where SAME needs no padding at all (a kernel smaller than the stride)
    if max(dil) == 1 and min(k - s for k, s in zip(kernel, strides)) >= 0 and data.draw(st.booleans(), label="auto_pad"):
        attrs["auto_pad"] = data.draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER"]))
        attrs.pop("ceil_mode")
    else:  # onnxruntime wants pads smaller than the kernel
        attrs["pads"] = [data.draw(st.integers(0, k - 1)) for k in kernel * 2]
    spatial = [data.draw(st.integers(s, s + 6)) for s in span]
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)), *spatial)
    nodes = [helper.make_node(kind, ["x"], ["y"], **attrs)]
    check(model(nodes, [("x", shape)], ["y"], opset=12 if kind == "MaxPool" else 11), {"x": values(data.draw, shape)})


@examples
@given(data=st.data())
def test_lrn_and_normalizations(data):
    n, c, h, w = (data.draw(st.integers(1, 2)), data.draw(st.integers(2, 6)), data.draw(st.integers(1, 4)),
                  data.draw(st.integers(1, 4)))
    shape = (n, c, h, w)
    size = data.draw(st.sampled_from([1, 3, 5]), label="lrn size")  # onnxruntime takes odd sizes only
    axis = data.draw(st.integers(-3, 3), label="layernorm axis")
    groups = data.draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]), label="groups")
    nodes = [helper.make_node("LRN", ["x"], ["lrn"], size=size, alpha=1e-2, beta=0.75, bias=2.0),
             helper.make_node("LayerNormalization", ["x", "ls", "lb"], ["ln"], axis=axis, epsilon=1e-5),
             helper.make_node("InstanceNormalization", ["x", "cs", "cb"], ["inorm"], epsilon=1e-5),
             helper.make_node("GroupNormalization", ["x", "cs", "cb"], ["gn"], num_groups=groups, epsilon=1e-5)]
    inits = [("ls", values(data.draw, shape[axis:])), ("lb", values(data.draw, shape[axis:])),
             ("cs", values(data.draw, (c,))), ("cb", values(data.draw, (c,)))]
    check(model(nodes, [("x", shape)], ["lrn", "ln", "inorm", "gn"], inits, opset=21), {"x": values(data.draw, shape)},
          rtol=1e-3, atol=1e-4)


@examples
@given(data=st.data())
def test_data_movement(data):
    """Transpose, Slice (negative steps, clamped bounds), Split, Squeeze/Unsqueeze, Expand,
    Tile, Gather (constant scalar and tensor indices, negative ones), Pad (every mode),
    Flatten and DepthToSpace, all of one input."""
    shape = data.draw(shapes(3, 4, 4), label="shape")
    r = len(shape)
    perm = data.draw(st.permutations(range(r)), label="perm")
    axes = data.draw(st.lists(st.integers(0, r - 1), min_size=1, max_size=r, unique=True), label="slice axes")
    starts = [data.draw(st.integers(-6, 6)) for _ in axes]
    ends = [data.draw(st.integers(-7, 7)) for _ in axes]
    steps = [data.draw(st.sampled_from([-2, -1, 1, 2])) for _ in axes]
    for k, a in enumerate(axes):  # not empty
        n = shape[a]
        lo, hi, st_ = slice(starts[k], ends[k], steps[k]).indices(n)
        if len(range(lo, hi, st_)) == 0:
            starts[k], ends[k] = (0, n) if steps[k] > 0 else (n - 1, -n - 1)
    split_axis = data.draw(st.integers(0, r - 1))
    cut = data.draw(st.integers(0, shape[split_axis] - 1))
    parts = [cut, shape[split_axis] - cut] if cut else [shape[split_axis]]
    reps = [data.draw(st.integers(1, 2)) for _ in range(r)]
    mode = data.draw(st.sampled_from(["constant", "edge", "reflect"]), label="pad mode")
    pads = [data.draw(st.integers(0, max(0, d - 1) if mode == "reflect" else 2)) for d in shape * 2]
    gather_axis = data.draw(st.integers(0, r - 1))
    idx = np.asarray(data.draw(st.lists(st.integers(-shape[gather_axis], shape[gather_axis] - 1), min_size=1,
                                        max_size=4)), np.int64).reshape(data.draw(st.sampled_from([(-1,), (1, -1)])))
    expand_to = [1, *[d if data.draw(st.booleans()) else 1 for d in shape]]
    expand_to[0] = 2
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=list(perm)),
             helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["sl"]),
             helper.make_node("Split", ["x", "parts"], [f"sp{k}" for k in range(len(parts))], axis=split_axis),
             helper.make_node("Unsqueeze", ["x", "uax"], ["u"]), helper.make_node("Squeeze", ["u", "uax"], ["sq"]),
             helper.make_node("Expand", ["x", "shape"], ["ex"]), helper.make_node("Tile", ["x", "reps"], ["ti"]),
             helper.make_node("Gather", ["x", "idx"], ["g"], axis=gather_axis),
             helper.make_node("Gather", ["x", "i0"], ["g0"], axis=gather_axis),
             helper.make_node("Pad", ["x", "pads", "pv"], ["pd"], mode=mode),
             helper.make_node("Flatten", ["x"], ["fl"], axis=data.draw(st.integers(0, r)))]
    outs = ["t", "sl", *[f"sp{k}" for k in range(len(parts))], "sq", "ex", "ti", "g", "g0", "pd", "fl"]
    inits = [("st", np.array(starts)), ("en", np.array(ends)), ("ax", np.array(axes)), ("sp", np.array(steps)),
             ("parts", np.array(parts)), ("uax", np.array([0, r + 1])), ("shape", np.array(expand_to)),
             ("reps", np.array(reps)), ("idx", idx), ("i0", np.array(-1)), ("pads", np.array(pads)),
             ("pv", np.float32(0.5))]
    if r == 4:
        nodes.append(helper.make_node("DepthToSpace", ["x4"], ["d2s"], blocksize=2,
                                      mode=data.draw(st.sampled_from(["DCR", "CRD"]))))
        nodes.insert(0, helper.make_node("Tile", ["x", "four"], ["x4"]))
        inits.append(("four", np.array([1, 4, 1, 1])))
        outs.append("d2s")
    check(model(nodes, [("x", shape)], outs, inits, opset=18), {"x": values(data.draw, shape)})


@examples
@given(data=st.data())
def test_batched_matmul_and_1d_operands(data):
    m, k, n = (data.draw(st.integers(1, 6)) for _ in range(3))
    batch = data.draw(shapes(0, 2, 3), label="batch")
    b_batch = tuple(1 if data.draw(st.booleans()) else d for d in batch[data.draw(st.integers(0, len(batch))):])
    nodes = [helper.make_node("MatMul", ["a", "b"], ["c"]), helper.make_node("MatMul", ["a", "v"], ["av"]),
             helper.make_node("MatMul", ["v2", "b"], ["vb"])]
    ins = [("a", (*batch, m, k)), ("b", (*b_batch, k, n)), ("v", (k,)), ("v2", (k,))]
    check(model(nodes, ins, ["c", "av", "vb"]), {nm: values(data.draw, s) for nm, s in ins})


@examples
@given(data=st.data())
def test_conv_transpose(data):
    """ConvTranspose 2-D and 1-D: strides, dilations, pads, output_padding, groups, bias, and
    output_shape / auto_pad SAME."""
    one_d = data.draw(st.booleans(), label="1-D")
    r = 1 if one_d else 2
    groups = data.draw(st.integers(1, 2))
    c, f = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    k = [data.draw(st.integers(1, 3)) for _ in range(r)]
    s = [data.draw(st.integers(1, 3)) for _ in range(r)]
    d = [data.draw(st.integers(1, 2)) for _ in range(r)]
    spatial = [data.draw(st.integers(1, 5)) for _ in range(r)]
    attrs = dict(kernel_shape=k, strides=s, dilations=d, group=groups)
    how = data.draw(st.sampled_from(["pads", "output_shape", "same"]), label="padding")
    if how == "pads":  # the output keeps at least one element
        room = [(n - 1) * ss + (kk - 1) * dd for n, ss, kk, dd in zip(spatial, s, k, d)]
        lo = [data.draw(st.integers(0, rm)) for rm in room]
        attrs["pads"] = lo + [data.draw(st.integers(0, rm - p)) for rm, p in zip(room, lo)]
        # below the stride: onnxruntime, the reference here, refuses more (ONNX allows up to the dilation)
        attrs["output_padding"] = [data.draw(st.integers(0, ss - 1)) for ss in s]
    elif how == "output_shape":
        attrs["output_shape"] = [(n - 1) * ss + (kk - 1) * dd + 1 - data.draw(st.integers(0, (n - 1) * ss + (kk - 1) * dd))
                                 for n, ss, kk, dd in zip(spatial, s, k, d)]
    else:
        attrs["auto_pad"] = data.draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER"]))
    x_shape, w_shape = (1, c, *spatial), (c, f // groups, *k)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)]
    inits = [("w", values(data.draw, w_shape)), ("b", values(data.draw, (f,)))]
    check(model(nodes, [("x", x_shape)], ["y"], inits, opset=11), {"x": values(data.draw, x_shape)})


@examples
@given(data=st.data())
def test_resize_and_upsample(data):
    """Resize nearest (every rounding) and linear in every coordinate mode, by scales or by
    sizes, up and down; Upsample (opset 9) nearest and linear."""
    shape = (1, data.draw(st.integers(1, 2)), data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5)))
    mode = data.draw(st.sampled_from(["nearest", "linear"]), label="mode")
    coord = data.draw(st.sampled_from(["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]))
    rounding = data.draw(st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]))
    scales = [1.0, 1.0] + [data.draw(st.sampled_from([0.5, 0.75, 1.0, 1.5, 2.0, 3.0])) for _ in range(2)]
    by_sizes = data.draw(st.booleans(), label="sizes")
    attrs = dict(mode=mode, coordinate_transformation_mode=coord)
    if mode == "nearest":
        attrs["nearest_mode"] = rounding
    inits = [("roi", np.zeros(0, np.float32))]
    if by_sizes:
        sizes = [max(1, int(n * s)) for n, s in zip(shape, scales)]
        node = helper.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], **attrs)
        inits.append(("sizes", np.array(sizes, np.int64)))
    else:
        scales[2:] = [max(s, 1.0 / n) for s, n in zip(scales[2:], shape[2:])]  # no empty output
        node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], **attrs)
        inits.append(("scales", np.array(scales, np.float32)))
    up = [1.0, 1.0, float(data.draw(st.integers(1, 3))), float(data.draw(st.integers(1, 3)))]
    upsample = helper.make_node("Upsample", ["x", "up"], ["u"], mode=mode)
    x = {"x": values(data.draw, shape)}
    check(model([node], [("x", shape)], ["y"], inits, opset=13), x)
    check(model([upsample], [("x", shape)], ["u"], [("up", np.array(up, np.float32))], opset=9), x)


def test_constant_subgraphs_fold_into_static_shapes():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape and ConstantOfShape chains become
    constants at import: the function has only the reshape and the add left."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("Shape", ["flat"], ["fshape"]),
             helper.make_node("ConstantOfShape", ["fshape"], ["ones"],
                              value=helper.make_tensor("v", F, [1], [1.5])),
             helper.make_node("Add", ["flat", "ones"], ["y"])]
    inits = [("zero", np.array(0)), ("axes0", np.array([0])), ("minus1", np.array([-1]))]
    m = model(nodes, [("x", (2, 3, 4))], ["y"], inits, opset=13)
    from sched_dsl.graph.onnx_import import import_onnx

    ops = [o.name for o in import_onnx(m).module.walk() if o.name.startswith("tensorop.")]
    assert ops == ["tensorop.reshape", "tensorop.binary"]
    check(m, {"x": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)})


def test_rank_0_inputs_and_outputs():
    """A scalar model input and output keep rank 0 (one element inside)."""
    nodes = [helper.make_node("Mul", ["a", "b"], ["p"]), helper.make_node("Neg", ["p"], ["y"]),
             helper.make_node("ReduceSum", ["v"], ["s"], keepdims=0)]
    m = model(nodes, [("a", ()), ("b", ()), ("v", (3,))], ["y", "s"], opset=13)
    feeds = {"a": np.array(1.5, np.float32), "b": np.array(-2.0, np.float32), "v": np.arange(3, dtype=np.float32)}
    check(m, feeds)
    with pytest.raises(sd.GraphError, match=r"input 'a' has shape \(1,\), expected \(\)"):
        sd.load_onnx(m).run(None, {**feeds, "a": np.ones(1, np.float32)})
