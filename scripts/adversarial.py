#!/usr/bin/env python3
"""Adversarial runs: hostile inputs of five classes, each case run in a worker process under
a time limit, its outcome counted.

    nice -n 10 .venv/bin/python scripts/adversarial.py --cases 10000

Classes (--classes, comma-separated):
  ir       sched-opt on malformed, mutated and over-deep IR and illegal schedules
           (sched_dsl/testing/fuzz.py), and valid IR with hostile names, lowered and run
  api      Python API calls with hostile values (floats, huge ints, odd names, bad inputs);
           what is accepted is built, run and compared with the reference
  onnx     small ONNX models, mutated (shapes, opsets, attributes, initializers, bytes); what
           is accepted is run and compared with onnxruntime
  records  records files with bad lines and special paths, failing writes (full disk),
           concurrent and killed tuners (a replayed device)
  kernels  drawn legal schedules built and run on the OpenCL device, against the reference

Outcomes: ok (accepted, and right where it can be checked), error (a clear error of ours),
and the failures: wrong (a silent wrong answer), traceback (another library's exception or
an internal error), hang (no result within --timeout, with nothing of ours timing it out),
crash (the worker died), lost (records lost or duplicated). Prints a table of counts per
class; failing cases are saved under --save as JSON and replay with --replay FILE. Exits 1
if any case failed.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import errno
import io
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

CLASSES = ("ir", "api", "onnx", "records", "kernels")
SHARES = {"ir": 0.4, "api": 0.2, "onnx": 0.15, "records": 0.15, "kernels": 0.1}
OUTCOMES = ("ok", "error", "wrong", "traceback", "hang", "crash", "lost")
FAILURES = ("wrong", "traceback", "hang", "crash", "lost")
PIPELINE = "tensorop-to-loops,apply-schedule,loops-to-gpu"


class WrongAnswer(Exception):
    """An accepted case whose result differs from the reference."""


class Lost(Exception):
    """Records that were written are gone, or a config was measured twice."""


# ---- telling our errors from other libraries' -------------------------------------------------------

def _package_dirs() -> tuple[str, ...]:
    import sched_dsl
    import sched_dsl.dialects
    import sched_dsl.lowering
    import sched_dsl.tuner
    return tuple(os.path.dirname(m.__file__) + os.sep for m in (sched_dsl, sched_dsl.dialects, sched_dsl.lowering,
                                                                sched_dsl.tuner))


NEVER_DELIBERATE = (RecursionError, MemoryError, AssertionError, AttributeError, IndexError, ZeroDivisionError,
                    UnicodeError, OverflowError, NameError, NotImplementedError)


def classify(e: BaseException) -> str:
    """'error' for a clear error of ours: a non-empty message, in an exception class of ours
    or raised by our code as ValueError, TypeError, KeyError, RuntimeError or a diagnostic;
    anything else is a 'traceback'."""
    from xdsl.utils.exceptions import DiagnosticException

    if isinstance(e, NEVER_DELIBERATE) or not str(e).strip():
        return "traceback"
    if type(e).__module__.split(".")[0] == "sched_dsl":
        return "error"
    if isinstance(e, (ValueError, TypeError, KeyError, RuntimeError, DiagnosticException)):
        frames = traceback.extract_tb(e.__traceback__)
        if frames and frames[-1].filename.startswith(_package_dirs()):
            return "error"
    return "traceback"


def compare(got, want, rtol=1e-4, atol=1e-5) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise WrongAnswer(f"shape {got.shape}, reference {want.shape}")
    same_nan = np.isnan(got) & np.isnan(want)
    err = np.where(same_nan, 0.0, np.abs(got - want))
    bad = np.isnan(err) | (err > atol + rtol * np.abs(np.where(np.isnan(want), 0, want)))
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise WrongAnswer(f"{int(bad.sum())} of {bad.size} elements differ; at {at}: got {got[at]}, reference {want[at]}")


# ---- ir: sched-opt on hostile text, and hostile names lowered and run --------------------------------

HOSTILE_NAMES = ["a b", "x*/y", "/*", "a\\0Ab", "a\\0D#define x 1", "#define get_group_id(x) 0", "int", "v_A", "0a",
                 "a.b", "a-b", "a$b", "kernel(", "x;}", "\\\\", "__global", "A\\C3\\A9", "main\\0A#define x 0\\0A//",
                 "trailing\\\\", "nul\\00cut", "\\09tab", "if", "float", "return", "A" * 300]


def names_case(rng: random.Random, text: str) -> str:
    """Valid IR with its function or a stage name replaced by a hostile one (the schedule's
    references to the stage follow)."""
    import re

    hostile = rng.choice(HOSTILE_NAMES)
    if rng.random() < 0.5:
        return text.replace("func.func @main", f'func.func @"{hostile}"', 1)
    stages = sorted(set(re.findall(r'name = "([^"]*)"', text)))
    if not stages:
        return text
    stage = rng.choice(stages)
    return text.replace(f'"{stage}"', f'"{hostile}"')


def deep_case(rng: random.Random) -> bytes:
    kind = rng.choice(["generic", "custom", "schedule", "attribute", "width", "utf8", "literal"])
    depth = rng.choice([10, 100, 255, 256, 257, 1000, 5000])
    if kind == "generic":
        return ('"builtin.module"() ({\n' * depth + "builtin.module {}\n" + "}) : () -> ()\n" * depth).encode()
    if kind in ("custom", "schedule"):
        op = "builtin.module" if kind == "custom" else "sched.schedule"
        return (f"{op} {{\n" * depth + "}\n" * depth).encode()
    if kind == "attribute":
        n = rng.choice([10, 1000, 100_000])
        return ("builtin.module attributes {x = " + "[" * n + "]" * n + "} {}\n").encode()
    if kind == "width":
        w = rng.choice([1, 64, 4096, 16777215, 16777216, 2**34, 10**30])
        return f"builtin.module attributes {{x = {rng.choice([0, 5, -1])} : {rng.choice('isu')}{w}}} {{}}\n".encode()
    if kind == "literal":
        return ("builtin.module attributes {x = " + "9" * rng.choice([10, 5000, 100_000]) + " : i64} {}\n").encode()
    text = bytearray(b'builtin.module {\n  %x = "x"\n}\n')
    for _ in range(rng.randint(1, 3)):
        text.insert(rng.randrange(len(text) + 1), rng.choice([0xff, 0xfe, 0xc0, 0x80, 0xed, 0x00]))
    return bytes(text)


def run_ir(case: dict) -> tuple[str, str]:
    from sched_dsl.testing import fuzz

    if case["kind"] == "names":
        return run_kernel_text(case["text"])
    text = case["text"] if "text" in case else base64.b64decode(case["bytes"]).decode("utf-8", "surrogateescape")
    o = fuzz.run_case(text, case["args"], timeout=3600)  # the worker's limit is the harness's
    if o.kind == "hang":
        return "hang", o.output
    if o.kind == "traceback":
        return "traceback", o.output
    return ("ok" if o.kind == "ok" else "error"), o.output[-400:]


def run_kernel_text(text: str) -> tuple[str, str]:
    """Parses, lowers and runs IR text on the OpenCL device, against its reference meaning."""
    from xdsl.parser import Parser
    from xdsl.utils.exceptions import ParseError, VerifyException

    from sched_dsl.context import make_context
    from sched_dsl.lowering.pipeline import run_default_pipeline
    from sched_dsl.testing.check import evaluate, print_opencl, random_inputs_of, run_opencl_text

    ctx = make_context()
    try:
        module = Parser(ctx, text).parse_module()
        module.verify()
    except (ParseError, VerifyException) as e:  # sched-opt reports these at their location
        return "error", str(e)[-2000:]
    try:
        values = random_inputs_of(module)
        want = evaluate(module, values)
        run_default_pipeline(ctx, module)
        got = run_opencl_text(module, print_opencl(module), values)
    except Exception as e:  # noqa: BLE001 - every failure is an outcome
        return classify(e), f"{type(e).__name__}: {e}"[-2000:]
    try:
        for name, w in want.items():
            compare(got[name], w)
    except WrongAnswer as e:
        return "wrong", str(e)
    return "ok", ""


# ---- api: hostile values for the Python API -------------------------------------------------------------

VALUES = {
    "int": ["1", "2", "3", "4", "7", "0", "-1", "2.5", "True", "None", "'3'", "2**31", "2**63", "2**64", "-2**63",
            "float('nan')", "float('inf')", "np.int64(4)", "np.float32(2)", "[]", "(2,)", "''"],
    "name": ["'A'", "'C'", "'out'", "''", "'a b'", "'a,b=3'", "'t=4'", "'1x'", "'x\\n'", "'é'", "'C'", "None", "3",
             "'a' * 300", "'main'", "'__global'", "'#define'"],
    "dim": ["1", "3", "8", "16", "0", "-2", "2.5", "'3'", "None", "True", "2**36", "2**40", "2**64", "np.int32(4)"],
    "tag": ["'block.x'", "'thread.x'", "'block.y'", "'thread.y'", "'warp.x'", "''", "None", "'block.x '", "0"],
    "scope": ["'shared'", "'local'", "'global'", "''", "None"],
    "array": ["x", "x.astype(np.float64)", "x.astype(np.complex64)", "x.astype(object)", "x[..., :1]", "x.T",
              "np.full_like(x, np.nan)", "x.astype(np.int32)", "None", "x.tolist()", "np.ma.masked_array(x)",
              "x[::-1]", "np.float32(1)", "x.astype(np.float16)", "np.zeros((0,))"],
    "config": ["{}", "{'t': 4}", "{'t': 2.7}", "{'t': '8,t=4'}", "{'t=4,u': 2}", "{'nope': 1}", "{'t': -1}",
               "{'t': 2**64}", "{'t': None}", "None"],
    "dtype": ["'f32'", "'i32'", "'f64'", "'bf16'", "''", "None", "np.float32"],
}


def _value(rng: random.Random, kind: str, good: str) -> str:
    return rng.choice(VALUES[kind]) if rng.random() < 0.3 else good


def api_case(rng: random.Random) -> str:
    """A few lines of API use: an operator, a schedule, a build, a call; about every third
    argument hostile."""
    v = lambda kind, good: _value(rng, kind, good)  # noqa: E731
    m, k, n = (rng.choice([1, 3, 8, 16]) for _ in range(3))
    op = rng.choice(["matmul", "relu", "add", "reduce", "softmax", "pool2d", "conv2d"])
    lines = []
    if op == "matmul":
        lines += [f"A = sd.placeholder({v('name', repr('A'))}, ({v('dim', str(m))}, {v('dim', str(k))}))",
                  f"B = sd.placeholder({v('name', repr('B'))}, ({k}, {v('dim', str(n))}))",
                  f"C = sd.matmul(A, B, name={v('name', repr('C'))})"]
        loops = ["i", "j", "k"]
    elif op in ("relu", "add", "softmax", "reduce"):
        lines.append(f"A = sd.placeholder({v('name', repr('A'))}, ({v('dim', str(m))}, {v('dim', str(n))}), "
                     f"dtype={v('dtype', repr('f32'))})")
        if op == "add":
            lines += [f"B = sd.placeholder({v('name', repr('B'))}, ({v('dim', '1')}, {n}))",
                      f"C = sd.add(A, B, name={v('name', repr('C'))})"]
        elif op == "reduce":
            lines.append(f"C = sd.reduce(A, {rng.choice(['sum', 'max', 'mean', 'min', 'prod'])!r}, "
                         f"{v('int', '1')}, name={v('name', repr('C'))})")
        else:
            lines.append(f"C = sd.{op}(A, name={v('name', repr('C'))})")
        loops = ["d0", "d1", "r0"]
    elif op == "pool2d":
        lines += [f"A = sd.placeholder('A', (1, {m}, {v('dim', '8')}, 8))",
                  f"C = sd.pool2d(A, {rng.choice(['max', 'avg', 'min'])!r}, {v('int', '2')}, "
                  f"stride={v('int', '2')}, padding={v('int', '0')}, name='C')"]
        loops = ["n", "c", "y", "x", "ry"]
    else:
        lines += [f"A = sd.placeholder('A', (1, {m}, 8, {v('dim', '8')}))",
                  f"W = sd.placeholder('W', ({v('dim', '4')}, {m}, 3, 3))",
                  f"C = sd.conv2d(A, W, stride={v('int', '1')}, padding={v('int', '1')}, "
                  f"dilation={v('int', '1')}, groups={v('int', '1')}, name='C')"]
        loops = ["n", "f", "y", "x", "rc"]
    lines.append("s = sd.Schedule(C)")
    handles = []
    for _ in range(rng.randint(0, 4)):
        act = rng.choice(["split", "tile", "knob", "bind", "reorder", "unroll", "vectorize", "cache_read", "fuse"])
        loop = v("name", repr(rng.choice(loops)))
        h = f"h{len(handles)}"
        if act == "split":
            lines.append(f"{h}, {h}i = s.split(s.loop({loop}), {v('int', rng.choice(['2', '4', '3']))})")
            handles += [h, h + "i"]
        elif act == "tile":
            lines.append(f"{h}, {h}b, {h}c, {h}d = s.tile(*s.loops({loop}, {repr(rng.choice(loops))}), "
                         f"{v('int', '4')}, {v('int', '2')})")
            handles += [h, h + "b", h + "c", h + "d"]
        elif act == "knob":
            lines.append(f"kn = s.knob({v('name', repr('t'))}, [{v('int', '2')}, {v('int', '4')}])")
            lines.append(f"{h}, {h}i = s.split(s.loop({loop}), kn)")
            handles += [h, h + "i"]
        elif act == "fuse":
            lines.append(f"{h} = s.fuse(*s.loops({repr(loops[0])}, {repr(loops[1])}))")
            handles.append(h)
        elif handles:
            target = rng.choice(handles)
            if act == "bind":
                lines.append(f"s.bind({target}, {v('tag', repr('block.x'))})")
            elif act == "reorder":
                lines.append(f"s.reorder({', '.join(rng.sample(handles, min(len(handles), 2)))})")
            elif act == "cache_read":
                lines.append(f"s.cache_read({v('name', repr('A'))}, {v('scope', repr('shared'))}, at={target})")
            else:
                lines.append(f"s.{act}({target})")
    lines.append(f"kern = sd.build(C, s, config={v('config', '{}')})")
    lines.append("check(kern, C, lambda x: " + v("array", "x") + ")")
    return "\n".join(lines)


def run_api(case: dict) -> tuple[str, str]:
    import ml_dtypes

    import sched_dsl as sd
    from sched_dsl.tensor import topological
    from sched_dsl.testing.strategies import random_inputs

    def check(kern, out, transform) -> None:
        values = random_inputs(out)
        for t in topological([out]):
            if t.kind == "placeholder" and t.dtype == "i32":
                values[t.name] = np.round(values[t.name] * 3).astype(np.int32)
        fed = {n: transform(values[n]) for n in kern.input_names}
        got = kern(**fed)
        # accepted: the reference of the values passed, read as real numbers
        ref = {}
        for n, v in fed.items():
            a = np.asarray(v)
            real = a.dtype.kind in "fiub" or a.dtype == ml_dtypes.bfloat16  # bf16's numpy kind is 'V'
            if not real or isinstance(v, np.ma.MaskedArray):
                raise WrongAnswer(f"input '{n}' of dtype {a.dtype} ({type(v).__name__}) was accepted")
            ref[n] = a
        compare(got, sd.evaluate(out, ref))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(case["code"], {"sd": sd, "np": np, "check": check})  # noqa: S102 - the case is generated here
    except WrongAnswer as e:
        return "wrong", str(e)
    except Exception as e:  # noqa: BLE001
        return classify(e), f"{type(e).__name__}: {e}"[-2000:]
    return "ok", ""


# ---- onnx: mutated small models -----------------------------------------------------------------------

def onnx_base(rng: random.Random):
    from onnx import TensorProto, helper, numpy_helper

    f32 = TensorProto.FLOAT
    rnd = np.random.default_rng(rng.randrange(2**32))
    kind = rng.choice(["relu", "add", "conv", "matmul", "reshape", "softmax", "pool", "concat", "gemm", "transpose"])
    x = [1, 2, 4, 4]
    inits, nodes, y = [], [], list(x)
    if kind == "relu":
        nodes = [helper.make_node("Relu", ["x"], ["y"], name="act")]
    elif kind == "add":
        inits = [numpy_helper.from_array(rnd.standard_normal(x).astype(np.float32), "w")]
        nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="add")]
    elif kind == "conv":
        inits = [numpy_helper.from_array(rnd.standard_normal((3, 2, 3, 3)).astype(np.float32), "w"),
                 numpy_helper.from_array(rnd.standard_normal(3).astype(np.float32), "b")]
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
                 helper.make_node("Relu", ["c"], ["y"], name="act")]
        y = [1, 3, 4, 4]
    elif kind == "matmul":
        x = [4, 8]
        inits = [numpy_helper.from_array(rnd.standard_normal((8, 5)).astype(np.float32), "w")]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
        y = [4, 5]
    elif kind == "reshape":
        inits = [numpy_helper.from_array(np.array([2, 16], np.int64), "shape")]
        nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")]
        y = [2, 16]
    elif kind == "softmax":
        nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=-1, name="softmax")]
    elif kind == "pool":
        nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], name="pool")]
        y = [1, 2, 2, 2]
    elif kind == "concat":
        nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["x", "r"], ["y"], axis=1)]
        y = [1, 4, 4, 4]
    elif kind == "gemm":
        x = [4, 8]
        inits = [numpy_helper.from_array(rnd.standard_normal((5, 8)).astype(np.float32), "w"),
                 numpy_helper.from_array(rnd.standard_normal(5).astype(np.float32), "b")]
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="gemm")]
        y = [4, 5]
    else:
        nodes = [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1], name="t")]
        y = [1, 4, 4, 2]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f32, x)],
                              [helper.make_tensor_value_info("y", f32, y)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def onnx_case(rng: random.Random) -> bytes:
    """A small model with 1 to 3 mutations, serialized (or its bytes damaged)."""
    from onnx import TensorProto, helper

    m = onnx_base(rng)
    g = m.graph
    for _ in range(rng.randint(1, 3)):
        how = rng.choice(["dim", "opset", "attr", "input", "init", "dtype", "op", "output", "duplicate", "bytes"])
        if how == "dim":
            vi = rng.choice([g.input[0], g.output[0]])
            d = rng.choice(vi.type.tensor_type.shape.dim)
            if rng.random() < 0.2:
                d.dim_param = "N"
            else:
                d.dim_value = rng.choice([0, 1, 3, 2**20, 2**31, 2**40, 2**62])
        elif how == "opset":
            m.opset_import[0].version = rng.choice([1, 4, 5, 7, 10, 11, 12, 13, 17, 21, 99])
        elif how == "attr" and g.node:
            node = rng.choice(g.node)
            name = rng.choice(["kernel_shape", "strides", "pads", "axis", "perm", "shape", "group", "dilations",
                               "transB", "alpha", "auto_pad"])
            value = rng.choice([[0], [1, 1], [-1, 2], [2, 2, 2, 2], [2**40, 1], 0, -7, 99, 2.5, "SAME_UPPER", [3, 3]])
            for a in list(node.attribute):
                if a.name == name:
                    node.attribute.remove(a)
            node.attribute.append(helper.make_attribute(name, value))
        elif how == "input" and g.node:
            node = rng.choice(g.node)
            if node.input and rng.random() < 0.5:
                del node.input[rng.randrange(len(node.input))]
            else:
                node.input.append(rng.choice(["x", "nope", "", "y"]))
        elif how == "init" and g.initializer:
            t = rng.choice(g.initializer)
            if t.raw_data:
                t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]
            else:
                t.dims.append(rng.choice([0, 2, 7]))
        elif how == "dtype":
            vi = rng.choice([g.input[0], g.output[0], *g.initializer])
            elem = rng.choice([TensorProto.DOUBLE, TensorProto.INT64, TensorProto.FLOAT16, TensorProto.STRING,
                               TensorProto.BOOL])
            if hasattr(vi, "data_type"):
                vi.data_type = elem
            else:
                vi.type.tensor_type.elem_type = elem
        elif how == "op" and g.node:
            rng.choice(g.node).op_type = rng.choice(["Relu", "Tanh", "Nope", "Conv", "Add", "If", "Loop", ""])
        elif how == "output":
            g.output[0].name = rng.choice(["nope", "x", "c"])
        elif how == "duplicate" and g.node:
            g.node.append(g.node[rng.randrange(len(g.node))])
    data = bytearray(m.SerializeToString())
    if rng.random() < 0.1:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.05:
        data = data[: rng.randrange(len(data))]
    return bytes(data)


def run_onnx(case: dict) -> tuple[str, str]:
    import onnxruntime as ort

    from sched_dsl.graph.executor import load_onnx

    data = base64.b64decode(case["bytes"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        with open(path, "wb") as f:
            f.write(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sess = load_onnx(path)
                x = np.random.default_rng(0).standard_normal(sess.shapes[sess.inputs_of[sess.input_names[0]]])
                got = sess.run(None, {sess.input_names[0]: x.astype(np.float32)})
        except Exception as e:  # noqa: BLE001
            return classify(e), f"{type(e).__name__}: {e}"[-2000:]
        try:  # the reference, where onnxruntime takes the model
            ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            want = ref.run(None, {ref.get_inputs()[0].name: x.astype(np.float32)})
        except Exception:  # noqa: BLE001 - no reference: accepted, not checked
            return "ok", "accepted; onnxruntime refuses the model"
    try:
        for g, w in zip(got, want):
            compare(g, w, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(w).max()) if np.size(w) else 1.0))
    except WrongAnswer as e:
        return "wrong", str(e)
    return "ok", ""


# ---- records: bad lines, special paths, failing writes, concurrent and killed tuners -----------------------

def replay_space():
    """A 16-config matmul space and records of made-up costs for all its configs (a fake device)."""
    import sched_dsl as sd
    from sched_dsl.records import Record
    from sched_dsl.tuner.features import loop_only_features
    from sched_dsl.tuner.space import Space

    a, b = sd.placeholder("A", (32, 16)), sd.placeholder("B", (16, 32))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    i, j, _ = s.loops("i", "j", "k")
    io, ii = s.split(i, s.split_knob("ti", 32, "pow2", lo=2, hi=16))
    jo, ji = s.split(j, s.split_knob("tj", 32, "pow2", lo=2, hi=16))
    s.reorder(io, jo, ii, ji)
    s.bind(io, "block.y")
    s.bind(jo, "block.x")
    wl = "matmul|A=32x16,B=16x32|opencl|replayed"
    recs = [Record(wl, cfg, 1.0 + k, None, "", loop_only_features([c], s, cfg))
            for k, cfg in enumerate(Space.of(s).config(p) for p in Space.of(s).all_points())]
    return c, s, wl, recs


_REPLAY: list = []


def _replay():
    if not _REPLAY:
        _REPLAY.append(replay_space())
    return _REPLAY[0]


BROKEN_LINES = ["{oops", "[1, 2]", "null", '{"workload":' + "[" * 100_000 + "]" * 100_000 + "}", "\x00\x01",
                "\udcff", "9" * 5000, ""]


def _bad_line(rng: random.Random, good: str) -> str:
    """A record line made bad in one way (or, edit 11, a valid record of another schedule)."""
    d = json.loads(good)
    edit = rng.randrange(13)
    if edit == 0:
        d["cost_ms"] = float("nan")
    elif edit == 1:
        d["cost_ms"] = -1.0
    elif edit == 2:
        d["cost_ms"] = float("inf")
    elif edit == 3:
        d["cost_ms"] = True
    elif edit == 4:
        d["config"]["ti"] = 2.5
    elif edit == 5:
        d["config"]["ti"] = "8,t=4"
    elif edit == 6:
        d["config"] = {"t=4,u": 1}
    elif edit == 7:
        d["features"] = [float("nan")]
    elif edit == 8:
        d["trial"] = -3
    elif edit == 9:
        d["error"] = "exploded"
    elif edit == 10:
        d["config"]["ti"] = 10**40
    elif edit == 11:
        d["config"], d["cost_ms"] = {"threads": 64}, 1e-6
    else:
        return rng.choice(BROKEN_LINES) or good[: len(good) // 2]
    return json.dumps(d)


def records_case(rng: random.Random) -> dict:
    kind = rng.choices(["bad_line", "special_path", "write_fault", "concurrent", "kill"], [5, 2, 3, 1, 0.3])[0]
    case = {"kind": kind, "seed": rng.randrange(2**32), "n": rng.randint(0, 10)}
    if kind == "bad_line":
        case["reader"] = rng.choice(["load", "best", "plot", "merge", "build", "tune", "transfer"])
        case["last_cut"] = rng.random() < 0.2
    elif kind == "special_path":
        case["path"] = rng.choice(["/dev/zero", "/dev/null", "fifo", "dir", "link", "missing_dir", "bad\nname.jsonl",
                                   "gz"])
        case["reader"] = rng.choice(["load", "writer", "tune", "best", "merge_out"])
    elif kind == "write_fault":
        case["errno"] = rng.choice([errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS, errno.EACCES])
        case["at"] = rng.choice(["open", "write", "fsync"])
        case["after"] = rng.randint(0, 400)
        case["via"] = rng.choice(["append", "tune"])
    return case


def run_records(case: dict) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detail = RECORDS_RUNNERS[case["kind"]](case, Path(tmp), random.Random(case["seed"]))
        except Lost as e:
            return "lost", str(e)
        except WrongAnswer as e:
            return "wrong", str(e)
        except Exception as e:  # noqa: BLE001
            return classify(e), f"{type(e).__name__}: {e}"[-2000:]
    return ("error" if detail.startswith("error") else "ok"), detail


def _good_records(rng: random.Random, n: int):
    _, _, wl, recs = _replay()
    return rng.sample(recs, min(n, len(recs)))


def _write(path: Path, recs) -> None:
    path.write_text("".join(r.to_json() + "\n" for r in recs))


def _cli(argv: list[str]) -> str:
    from sched_dsl.tuner.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    text = err.getvalue()
    if code not in (0, 1) or "Traceback" in text:
        raise RuntimeError(f"sched-tune exit {code}: {text}")  # classified as a traceback below
    if code == 1 and "error:" not in text:
        raise AssertionError(f"sched-tune exit 1 without a message: {text}")
    return f"error: {text.strip()}" if code == 1 else "ok"


def _tune(path, trials=6, seed=0, transfer=(), progress=None):
    """Tunes the replayed space (no device) into `path`."""
    import sched_dsl as sd
    from sched_dsl.tuner.replay import ReplayMeasurer

    c, s, wl, recs = _replay()
    return sd.tune(c, s, trials=trials, records=path, strategy="random", batch=2, seed=seed,
                   measurer=ReplayMeasurer(recs, wl), transfer=transfer, progress=progress)


def _keys(path) -> list:
    from sched_dsl.records import load
    return [(r.workload, r.config_key()) for r in load(str(path))] if Path(path).exists() else []


def _records_bad_line(case, tmp: Path, rng) -> str:
    from sched_dsl.records import RecordsError, load

    import sched_dsl as sd

    good = _good_records(rng, case["n"] + 1)
    path = tmp / "r.jsonl"
    lines = [r.to_json() for r in good]
    if case["last_cut"]:
        text = "\n".join(lines) + "\n" + lines[0][: rng.randrange(1, len(lines[0]))]
    else:
        lines.insert(rng.randrange(len(lines) + 1), _bad_line(rng, lines[0]))
        text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    before = path.read_bytes()
    reader = case["reader"]
    try:
        if reader == "load":
            load(str(path))
        elif reader in ("best", "plot", "merge"):
            argv = {"best": ["best", str(path)], "plot": ["plot", str(path), "--out", str(tmp / "p.png")],
                    "merge": ["merge", str(tmp / "out.jsonl"), str(path)]}[reader]
            result = _cli(argv)
            if result.startswith("error"):
                return result
        elif reader == "build":
            c, s, _, _ = _replay()
            sd.build(c, s, records=str(path))
        elif reader == "tune":
            _tune(str(path))
        else:
            _tune(None, transfer=[str(path)])
    except RecordsError as e:
        if ":" not in str(e):
            raise AssertionError(f"a records error without file:line: {e}") from None
        result = f"error: {e}"
    else:
        result = "ok"
    after = path.read_bytes()
    whole = before[: before.rfind(b"\n") + 1]
    cut = before[len(whole):]
    partial = tmp / "r.jsonl.partial"
    set_aside = partial.exists() and partial.read_bytes() == cut + b"\n"
    if not (after.startswith(before) or (after.startswith(whole) and set_aside)):
        raise Lost("the records file lost content it held")
    return result


def _records_special_path(case, tmp: Path, rng) -> str:
    from sched_dsl.records import RecordsWriter, load

    kind = case["path"]
    if kind == "fifo":
        path = str(tmp / "fifo")
        os.mkfifo(path)
    elif kind == "dir":
        path = str(tmp)
    elif kind == "link":
        path = str(tmp / "r.jsonl")
        os.symlink("/dev/zero", path)
    elif kind == "missing_dir":
        path = str(tmp / "no" / "r.jsonl")
    elif kind == "gz":
        path = str(tmp / "r.jsonl.gz")
    elif kind.startswith("/dev/"):
        path = kind
    else:
        path = str(tmp / kind)
    reader = case["reader"]
    if reader == "load":
        load(path)
    elif reader == "writer":
        with RecordsWriter(path) as w:
            w.append(_good_records(rng, 2))
    elif reader == "tune":
        _tune(path)
    elif reader == "best":
        return _cli(["best", path])
    else:
        src = tmp / "src.jsonl"
        _write(src, _good_records(rng, 3))
        return _cli(["merge", path, str(src)])
    return "ok"


def _records_write_fault(case, tmp: Path, rng) -> str:
    from sched_dsl import records as R

    path = tmp / "r.jsonl"
    before_recs = _good_records(rng, case["n"])
    _write(path, before_recs)
    before = path.read_bytes()
    real_open, real_write, real_fsync = os.open, os.write, os.fsync
    budget = [case["after"]]
    fault = OSError(case["errno"], os.strerror(case["errno"]))

    def is_records(fd) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            return False

    def fake_open(name, flags, *a, **k):
        if case["at"] == "open" and os.fspath(name) == str(path) and flags & (os.O_WRONLY | os.O_RDWR):
            raise fault
        return real_open(name, flags, *a, **k)

    def fake_write(fd, data):
        if case["at"] == "write" and is_records(fd):
            n = min(len(data), budget[0])
            budget[0] -= n
            if n < len(data):
                real_write(fd, bytes(data[:n]))
                raise fault
        return real_write(fd, data)

    def fake_fsync(fd):
        if case["at"] == "fsync" and is_records(fd):
            raise fault
        return real_fsync(fd)

    result = "ok"
    os.open, os.write, os.fsync = fake_open, fake_write, fake_fsync
    try:
        if case["via"] == "append":
            with R.RecordsWriter(str(path)) as w:
                w.append(_good_records(random.Random(1), 4))
        else:
            _tune(str(path), trials=len(before_recs) + 4)
    except R.RecordsError as e:
        result = f"error: {e}"
    finally:
        os.open, os.write, os.fsync = real_open, real_write, real_fsync
    after = path.read_bytes()
    if not after.startswith(before):
        raise Lost("records written before the fault are gone")
    R.load(str(path))  # raises if a torn line was left in the middle
    if not after.endswith(b"\n") and after:
        raise Lost("a torn last record was left behind")
    keys = _keys(path)
    if len(keys) != len(set(keys)):
        raise Lost("a config was recorded twice")
    return result


def _records_concurrent(case, tmp: Path, rng) -> str:
    from sched_dsl.records import RecordsError

    path = str(tmp / "r.jsonl")
    outcomes = []
    _replay()  # made once, before the threads

    def one(seed):
        try:
            _tune(path, trials=8, seed=seed)
            outcomes.append("tuned")
        except RecordsError as e:
            outcomes.append("refused" if "another tuner" in str(e) else f"error {e}")
    threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = _keys(path)
    if len(keys) != len(set(keys)):
        raise Lost(f"two tuners recorded a config twice ({outcomes})")
    if len(keys) != 8:
        raise Lost(f"{len(keys)} records after two tuners of 8 trials ({outcomes})")
    return "ok " + ",".join(sorted(outcomes))


def _records_kill(case, tmp: Path, rng) -> str:
    path = tmp / "r.jsonl"
    script = ("import sys, time; sys.path.insert(0, %r)\nimport adversarial as a\n"
              "a._tune(%r, trials=16, seed=%d, progress=lambda r: time.sleep(0.05))\n"
              % (os.path.dirname(os.path.abspath(__file__)), str(path), case["seed"] % 1000))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    want = rng.randint(0, 12)
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= want:
            break
        time.sleep(0.01)
    proc.kill()
    err = proc.communicate()[1]
    if "Traceback" in err:
        raise RuntimeError(f"the killed tuner wrote a traceback: {err[-1000:]}")
    before = path.read_bytes() if path.exists() else b""
    _tune(str(path), trials=16, seed=1)
    after = path.read_bytes()
    whole = before[: before.rfind(b"\n") + 1]
    if not after.startswith(whole):
        raise Lost("records written before the kill are gone")
    keys = _keys(path)
    if len(keys) != len(set(keys)) or len(keys) != 16:
        raise Lost(f"{len(keys)} records, {len(set(keys))} distinct, after resuming to 16")
    return f"ok (killed after {before.count(10)} records)"


RECORDS_RUNNERS = {"bad_line": _records_bad_line, "special_path": _records_special_path,
                   "write_fault": _records_write_fault, "concurrent": _records_concurrent, "kill": _records_kill}


# ---- kernels: drawn legal schedules ---------------------------------------------------------------------

def run_kernels(case: dict) -> tuple[str, str]:
    return run_kernel_text(case["text"])


RUNNERS = {"ir": run_ir, "api": run_api, "onnx": run_onnx, "records": run_records, "kernels": run_kernels}


# ---- the worker and the driver ----------------------------------------------------------------------------

def run_one(case: dict) -> tuple[str, str]:
    try:
        return RUNNERS[case["cls"]](case)
    except BaseException as e:  # noqa: BLE001 - the runner itself failed: count it, keep going
        return "traceback", "".join(traceback.format_exception(e))[-2000:]


def worker() -> None:
    """Answers one JSON line per case line on stdin; what cases print goes to stderr."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        outcome, detail = run_one(json.loads(line))
        proto.write(json.dumps({"outcome": outcome, "detail": detail}) + "\n")
        proto.flush()


class Worker:
    """A worker process; a case that takes longer than `timeout` kills it (a hang)."""

    def __init__(self, timeout: float, log):
        self.timeout, self.log = timeout, log
        self.proc = None

    def _start(self) -> None:
        # our own limit on kernel builds and runs ends a hung kernel before the harness's does
        env = {**os.environ, "SCHED_DSL_KERNEL_TIMEOUT": f"{self.timeout / 2:g}"}
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True,
                                     env=env)

    def run(self, case: dict) -> tuple[str, str]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line:
            got = json.loads(line)
            return got["outcome"], got["detail"]
        if not ready:
            self.stop()
            return "hang", f"no result within {self.timeout:g} s"
        code = self.proc.wait()
        self.stop()
        if code == 124:  # stopped by SCHED_DSL_KERNEL_TIMEOUT, with its error
            return "error", "a kernel did not finish; stopped by SCHED_DSL_KERNEL_TIMEOUT"
        return "crash", f"the worker died (exit code {code})"

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def hypothesis_cases(cls: str, count: int, seed: int):
    """`count` cases of class `cls` drawn by Hypothesis (ir, kernels), as a list."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from sched_dsl.testing import fuzz
    from sched_dsl.testing import strategies as sdt

    out = []
    if cls == "kernels":
        strategy = sdt.operators().flatmap(lambda t: sdt.schedules(t)).map(lambda s: {"text": s.ir()})
    else:
        kinds = [*fuzz.KINDS, "names", "deep"]
        strategy = st.sampled_from(kinds).flatmap(
            lambda k: st.tuples(st.just(k), fuzz.valid_modules() if k == "names" else st.just("") if k == "deep"
                                else fuzz.cases(k), st.randoms(use_true_random=False)))

        def ir_case(t):
            kind, drawn, r = t
            if kind == "names":
                return {"kind": kind, "text": names_case(r, drawn)}
            if kind == "deep":
                return {"kind": kind, "bytes": base64.b64encode(deep_case(r)).decode(), "args": []}
            return {"kind": kind, "text": drawn[0], "args": drawn[1]}
        strategy = strategy.map(ir_case)

    @hseed(seed)
    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(case):
        out.append(case)

    draw()
    return [{"cls": cls, **c} for c in out[:count]]


def make_cases(cls: str, count: int, seed: int) -> list[dict]:
    if cls in ("ir", "kernels"):
        return hypothesis_cases(cls, count, seed)
    cases = []
    for k in range(count):
        rng = random.Random(f"{seed}:{cls}:{k}")
        if cls == "api":
            cases.append({"cls": cls, "code": api_case(rng)})
        elif cls == "onnx":
            cases.append({"cls": cls, "bytes": base64.b64encode(onnx_case(rng)).decode()})
        else:
            cases.append({"cls": cls, **records_case(rng)})
    return cases


def run(classes, cases_per_class: dict[str, int], seed: int, timeout: float, save: Path | None, progress=None):
    """Runs the cases; returns (counts per class, failing cases)."""
    counts = {c: collections.Counter() for c in classes}
    failures = []
    log = tempfile.TemporaryFile(mode="w+")
    w = Worker(timeout, log)
    done = 0
    try:
        for cls in classes:
            for case in make_cases(cls, cases_per_class[cls], seed):
                outcome, detail = w.run(case)
                counts[cls]["cases"] += 1
                counts[cls][outcome] += 1
                done += 1
                if outcome in FAILURES:
                    failures.append({**case, "outcome": outcome, "detail": detail})
                    if save is not None:
                        save.mkdir(parents=True, exist_ok=True)
                        name = f"{cls}-{outcome}-{len(failures)}.json"
                        (save / name).write_text(json.dumps(failures[-1], indent=1))
                if progress:
                    progress(done, cls, outcome)
    finally:
        w.stop()
    return counts, failures


def table(counts: dict[str, collections.Counter]) -> str:
    head = f"{'class':8s} {'cases':>6s} " + " ".join(f"{o:>9s}" for o in OUTCOMES)
    rows = [head]
    total = collections.Counter()
    for cls, c in counts.items():
        total.update(c)
        rows.append(f"{cls:8s} {c['cases']:6d} " + " ".join(f"{c[o]:9d}" for o in OUTCOMES))
    rows.append(f"{'all':8s} {total['cases']:6d} " + " ".join(f"{total[o]:9d}" for o in OUTCOMES))
    rows.append(f"silent wrong answers: {total['wrong']}, tracebacks: {total['traceback']}, "
                f"hangs without a timeout: {total['hang']}, worker crashes: {total['crash']}, "
                f"records lost or duplicated: {total['lost']}")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10000, help="cases in all, shared out over the classes")
    ap.add_argument("--classes", default=",".join(CLASSES), help=f"comma-separated, of {', '.join(CLASSES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--save", type=Path, default=Path("adversarial-failures"), help="folder for failing cases")
    ap.add_argument("--replay", type=Path, help="run one saved case (JSON) in this process and print its outcome")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker()
        return 0
    if args.replay:
        outcome, detail = run_one(json.loads(args.replay.read_text()))
        print(f"{outcome}: {detail}")
        return 1 if outcome in FAILURES else 0
    classes = [c for c in args.classes.split(",") if c]
    for c in classes:
        if c not in CLASSES:
            ap.error(f"unknown class '{c}'; choose from {', '.join(CLASSES)}")
    share = sum(SHARES[c] for c in classes)
    per_class = {c: max(1, round(args.cases * SHARES[c] / share)) for c in classes}
    start = time.time()

    def progress(done, cls, outcome):
        if done % 250 == 0:
            print(f"... {done} cases ({cls}), {time.time() - start:.0f} s", file=sys.stderr, flush=True)

    counts, failures = run(classes, per_class, args.seed, args.timeout, args.save, progress)
    for f in failures:
        print(f"===== {f['cls']} {f['outcome']}: {f['detail'][:1000]}")
    print(f"adversarial: {sum(c['cases'] for c in counts.values())} cases in {time.time() - start:.0f} s "
          f"(seed {args.seed}, timeout {args.timeout:g} s)")
    print(table(counts))
    if failures:
        print(f"failing cases saved under {args.save}/; replay one with --replay FILE")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
