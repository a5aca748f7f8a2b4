"""Issue 15, items 1-7: no silent wrong answers. Names cannot inject text into a kernel, a
schedule cannot drop a stage's output or overwrite an input, concurrent calls of one kernel
are safe, NaN propagates as in numpy, bad inputs are refused with a message, and index
arithmetic is wide enough for the shapes it is given (see docs/robustness.md)."""

import re
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from xdsl.parser import Parser

import sched_dsl as sd
from sched_dsl import testing as sdt
from sched_dsl.context import make_context
from sched_dsl.lowering.host_plan import c_comment, c_name, host_plan
from sched_dsl.lowering.pipeline import run_default_pipeline
from sched_dsl.lowering.targets.c_family import CUDA, OPENCL, print_kernels
from sched_dsl.runtime.opencl import OpenCLKernel

SCHED_OPT = str(Path(sys.executable).parent / "sched-opt")
PIPELINE = "tensorop-to-loops,apply-schedule,loops-to-gpu"


@pytest.fixture(autouse=True)
def _quiet_pyopencl():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyopencl's notes on kernel retrieval
        yield


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def lowered_text(ir: str, target=OPENCL):
    """The module of `ir` lowered by the default pipeline, and its kernel text."""
    from io import StringIO

    module = Parser(make_context(), ir).parse_module()
    run_default_pipeline(make_context(), module)
    out = StringIO()
    print_kernels(module, target, out)
    return module, out.getvalue()


# ---- 1. names cannot inject text into the kernel -----------------------------------------

MATMUL_NAMED = """builtin.module {{
  func.func @{fn}(%A: tensor<13x7xf32>, %B: tensor<7x11xf32>) -> tensor<13x11xf32> {{
    %C = tensorop.matmul %A, %B {{name = "C"}} : (tensor<13x7xf32>, tensor<7x11xf32>) -> tensor<13x11xf32>
    func.return %C : tensor<13x11xf32>
  }}
}}
"""

# MLIR string escapes: \0A newline, \0D carriage return, \5C backslash, \00 NUL
HOSTILE_NAMES = {
    "newline_define": r'"main\0A#define get_group_id(x) 0\0A//"',
    "carriage_return": r'"main\0D#define get_local_id(x) 0\0D//"',
    "trailing_backslash": r'"main\5C"',
    "nul": r'"main\00#define x"',
    "trigraph": r'"main??/"',
    "unicode": '"main\u2028#define get_group_id(x) 0"',
}


def no_injected_text(source: str) -> None:
    for line in source.splitlines():
        assert not line.lstrip().startswith("#") or line.strip() == "#pragma unroll", line
        assert not line.rstrip().endswith("\\"), line  # a line splice would continue a comment
    assert "\0" not in source and "\r" not in source and "??/" not in source
    assert all(c == "\n" or " " <= c <= "~" for c in source), "only printable ASCII in kernel text"


@pytest.mark.parametrize("case", HOSTILE_NAMES)
def test_hostile_function_name_is_escaped_in_sched_opt_text(tmp_path, case):
    path = tmp_path / "in.mlir"
    path.write_text(MATMUL_NAMED.format(fn=HOSTILE_NAMES[case]), encoding="utf-8")
    for target in ("opencl", "cuda"):
        r = subprocess.run([SCHED_OPT, str(path), "-p", PIPELINE, "-t", target], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        no_injected_text(r.stdout)
        assert r.stdout.startswith("// host function main")


@pytest.mark.parametrize("case", ["newline_define", "carriage_return", "trailing_backslash", "nul"])
def test_hostile_function_name_runs_correctly_on_the_device(case):
    module, source = lowered_text(MATMUL_NAMED.format(fn=HOSTILE_NAMES[case]))
    no_injected_text(source)
    a, b = rand(13, 7), rand(7, 11, seed=1)
    (c,) = OpenCLKernel(source, host_plan(module)).run(a, b)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_c_names_are_identifiers_and_distinct():
    names = ["a_b", "a.b", "a-b", "a$b", "a b", "a\nb", "a\\", "a\0", "_", "9", "x_a_2e_b", "a_2eb", "é", "a__b"]
    mangled = [c_name(n, "t") for n in names]
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", m) for m in mangled), mangled
    assert len(set(mangled)) == len(names), mangled
    assert c_name("A", "t") == "v_A"  # plain names keep their spelling
    assert c_name(None, "t") == "v_t"


def test_long_names_give_short_distinct_identifiers_and_run():
    """PoCL aborts on kernel names longer than a file name may be; long names are shortened
    with a hash of the whole name, so they stay distinct."""
    long_a, long_b = "A" * 300, "A" * 299 + "B"
    assert len(c_name(long_a, "t")) <= 64 and c_name(long_a, "t") != c_name(long_b, "t")
    x = sd.placeholder("X", (4, 5))
    y = sd.relu(x, name="R" * 300)
    kern = sd.build(y)
    v = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(kern(v), np.maximum(v, 0))


def test_comment_text_is_one_printable_line():
    for text in ["a\nb", "a\rb", "a\\", "a??/", "a\0b", "a\u2028b", "100%"]:
        out = c_comment(text)
        assert all(" " <= c <= "~" for c in out) and "\\" not in out and "??" not in out, out
    assert c_comment("conv1.max") == "conv1.max"
    assert c_comment("a\nb") != c_comment("a b")


def test_gpu_level_kernel_names_do_not_collide():
    """Two kernels whose names differ only in characters C cannot spell get two C names."""
    ir = MATMUL_NAMED.format(fn="main")
    module, _ = lowered_text(ir)
    kernels = [op for op in module.walk() if op.name == "gpu.func"]
    (k,) = kernels
    names = {c_name("main.C", "kernel"), c_name("main_C", "kernel"), c_name(k.sym_name.data, "kernel")}
    assert len(names) == 2  # main_C is the kernel; main.C would be a different one


# ---- 2. cache_read of a stage's own output ------------------------------------------------


def _matmul_schedule():
    A, B = sd.placeholder("A", (8, 12)), sd.placeholder("B", (12, 8))
    C = sd.matmul(A, B, name="C")
    s = sd.Schedule(C)
    i, j, k = s.loops("i", "j", "k")
    io, ii = s.split(i, 4)
    s.bind(io, "block.x")
    s.bind(ii, "thread.x")
    ko, ki = s.split(k, 4)
    return C, s, ko


def _conv_schedule():
    X, W = sd.placeholder("X", (1, 2, 6, 6)), sd.placeholder("W", (3, 2, 3, 3))
    Y = sd.conv2d(X, W, padding=1, name="Y")
    s = sd.Schedule(Y)
    n, f, y, x, rc, ry, rx = s.loops("n", "f", "y", "x", "rc", "ry", "rx")
    s.bind(y, "block.x")
    s.bind(x, "thread.x")
    return Y, s, rc


@pytest.mark.parametrize("scope", ["shared", "local"])
@pytest.mark.parametrize("make", [_matmul_schedule, _conv_schedule], ids=["matmul", "conv2d"])
def test_cache_read_of_own_output_is_refused(make, scope):
    out, s, at = make()
    s.cache_read(out, scope, at=at)
    with pytest.raises(sd.ScheduleError, match=r"sched.cache_read: stage '(C|Y)' cannot cache_read its own "
                                               r"output"):
        sd.lower(out, s)


def test_cache_read_of_own_output_in_ir_names_the_op(tmp_path):
    path = tmp_path / "in.mlir"
    path.write_text(MATMUL_NAMED.format(fn="main").replace("  }\n}\n", """  }
  sched.schedule {
    %k = sched.loop "C" "k"
    sched.cache_read "C" "local" at %k
  }
}
"""))
    r = subprocess.run([SCHED_OPT, str(path), "-p", PIPELINE, "-t", "opencl"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert re.search(r"in.mlir:8:\d+: error: sched.cache_read: stage 'C' cannot cache_read its own output",
                     r.stderr), r.stderr


# ---- 3. a stage named like an input -------------------------------------------------------


@pytest.mark.parametrize("args,stage", [("%A: tensor<8x8xf32>, %B: tensor<8x8xf32>", "A"),
                                        ("%0: tensor<8x8xf32>, %1: tensor<8x8xf32>", "arg1")])
def test_stage_named_like_an_input_is_refused(tmp_path, args, stage):
    a, b = args.split(":")[0], args.split(", ")[1].split(":")[0]
    path = tmp_path / "in.mlir"
    path.write_text(f"""builtin.module {{
  func.func @main({args}) -> tensor<8x8xf32> {{
    %C = tensorop.matmul {a}, {b} {{name = "{stage}"}} : (tensor<8x8xf32>, tensor<8x8xf32>) -> tensor<8x8xf32>
    func.return %C : tensor<8x8xf32>
  }}
}}
""")
    r = subprocess.run([SCHED_OPT, str(path), "-p", PIPELINE, "-t", "opencl"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r.stdout
    assert re.search(rf"in.mlir:3:\d+: error: tensorop.matmul: stage '{stage}' has the name of input "
                     rf"'{stage}'", r.stderr), r.stderr


def test_stage_named_like_an_input_in_python_names_both():
    A, B = sd.placeholder("A", (8, 8)), sd.placeholder("B", (8, 8))
    with pytest.raises(ValueError, match="matmul stage 'A' has the name of input 'A'"):
        sd.lower(sd.matmul(A, B, name="A"))


# ---- 4. one kernel called from several threads ---------------------------------------------


def test_concurrent_calls_of_one_kernel_are_correct():
    A, B = sd.placeholder("A", (16, 24)), sd.placeholder("B", (24, 8))
    kern = sd.build(sd.relu(sd.matmul(A, B)))
    cases = [(rand(16, 24, seed=2 * k), rand(24, 8, seed=2 * k + 1)) for k in range(160)]

    def call(k):
        a, b = cases[k]
        return k, kern(a, b)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(160)))
    wrong = [k for k, out in results if not np.allclose(out, np.maximum(cases[k][0] @ cases[k][1], 0),
                                                      rtol=1e-4, atol=1e-5)]
    assert wrong == []


def relu_model(tmp_path, shape) -> str:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return str(path)


def test_concurrent_runs_of_one_session_are_correct(tmp_path):
    sess = sd.load_onnx(relu_model(tmp_path, (64,)))
    xs = [rand(64, seed=k) for k in range(80)]
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda x: sess.run(None, {"x": x})[0], xs))
    assert all(np.array_equal(o, np.maximum(x, 0)) for o, x in zip(outs, xs))


# ---- 5. NaN propagates -----------------------------------------------------------------------

X = np.array([[np.nan, 1.0, -2.0, 7.0], [3.0, np.nan, -np.inf, 0.5]], np.float32)


def _nan_cases():
    P = sd.placeholder
    return {
        "relu": lambda: sd.relu(P("X", (2, 4))),
        "relu6": lambda: sd.relu6(P("X", (2, 4))),
        "clip": lambda: sd.clip(P("X", (2, 4)), -1.0, 1.0),
        "maximum": lambda: sd.maximum(P("X", (2, 4)), P("Y", (2, 4))),
        "minimum": lambda: sd.minimum(P("X", (2, 4)), P("Y", (2, 4))),
        "maximum_nan_right": lambda: sd.maximum(P("Y", (2, 4)), P("X", (2, 4))),
        "max_pool": lambda: sd.pool2d(sd.reshape(P("X", (2, 4)), (1, 1, 2, 4)), "max", 2, stride=1),
        "max_pool_padded": lambda: sd.pool2d(sd.reshape(P("X", (2, 4)), (1, 1, 2, 4)), "max", 2, stride=1,
                                             padding=1),
        "reduce_max": lambda: sd.reduce(P("X", (2, 4)), "max", 1),
        "reduce_max_all": lambda: sd.reduce(P("X", (2, 4)), "max", (0, 1)),
    }


@pytest.mark.parametrize("case", list(_nan_cases()))
def test_nan_propagates_as_in_numpy(case):
    out = _nan_cases()[case]()
    feeds = {"X": X, "Y": np.zeros_like(X)}
    inputs = [t for t in sd.tensor.topological([out]) if t.kind == "placeholder"]
    kern = sd.build(out)
    got = kern(**{t.name: feeds[t.name] for t in inputs})
    want = sd.evaluate(out, feeds).astype(np.float32)
    assert np.isnan(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("fn", ["relu", "maximum", "clip"])
def test_nan_propagates_in_vectorized_loops(fn, width):
    """A vectorized loop writes max/min as vector expressions: NaN propagates there too."""
    Xp, Yp = sd.placeholder("X", (4, 8)), sd.placeholder("Y", (4, 8))
    out = {"relu": lambda: sd.relu(Xp), "maximum": lambda: sd.maximum(Xp, Yp),
           "clip": lambda: sd.clip(Xp, -0.5, 0.5)}[fn]()
    s = sd.Schedule(out)
    d0, d1 = s.loops("d0", "d1")
    d1o, d1i = s.split(d1, width)
    s.bind(d0, "block.x")
    s.bind(d1o, "thread.x")
    s.vectorize(d1i)
    x = rand(4, 8)
    x[1, 3] = x[2, 0] = np.nan
    y = rand(4, 8, seed=1)
    y[0, 5] = np.nan
    low = sd.lower(out, s)
    assert f"float{width}" in low.source
    kern = sd.build(out, s)
    got = kern(**{n: {"X": x, "Y": y}[n] for n in kern.input_names})
    want = sd.evaluate(out, {"X": x, "Y": y})
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_nan_propagates_through_a_fused_epilogue():
    A, B = sd.placeholder("A", (4, 6)), sd.placeholder("B", (6, 5))
    out = sd.clip(sd.relu(sd.matmul(A, B, name="C")), -1.0, 2.0, name="D")
    a, b = rand(4, 6), rand(6, 5, seed=1)
    a[1, 2] = np.nan
    low = sd.lower(out, pipeline="tensorop-fuse," + PIPELINE)
    assert len(low.launches) == 1  # one kernel: relu and clip are the matmul's epilogue
    got = sd.build(out, pipeline="tensorop-fuse," + PIPELINE)(a, b)
    want = sd.evaluate(out, {"A": a, "B": b})
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[1]).all() and not np.isnan(got[0]).any()


def test_nan_box_in_nms_matches_the_reference():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, np.nan], [0, 0, 1, 1.1], [5, 5, 6, 6]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    out = sd.nms(sd.placeholder("boxes", (4, 4)), sd.placeholder("scores", (4,)), 4, 0.5)
    got = sd.build(out)(boxes, scores)
    np.testing.assert_array_equal(got, sd.evaluate(out, {"boxes": boxes, "scores": scores}))


@pytest.mark.parametrize("sp", [OPENCL, CUDA], ids=["opencl", "cuda"])
def test_max_min_text_propagates_nan(sp):
    """maximumf and minimumf (NaN-propagating in MLIR) never print as bare fmax/fmin."""
    from io import StringIO

    X_ = sd.placeholder("X", (8,))
    low = sd.lower(sd.relu(X_))
    out = StringIO()
    print_kernels(low.module, sp, out)
    line = next(ln for ln in out.getvalue().splitlines() if sp.fmax + "(" in ln)
    assert re.search(r"(\w+) != \1 \?", line), line


# ---- 6. inputs accepted silently -----------------------------------------------------------


@pytest.fixture(scope="module")
def add_kernel():
    return sd.build(sd.add(sd.placeholder("A", (2, 3)), sd.placeholder("B", (2, 3))))


BAD_INPUTS = {
    "complex": (np.ones((2, 3), np.complex64), "complex64"),
    "object": (np.ones((2, 3), object), "object"),
    "structured": (np.zeros((2, 3), dtype=[("a", np.float32)]), "structured"),
    "masked": (np.ma.masked_array(np.ones((2, 3), np.float32), mask=[[0, 1, 0], [0, 0, 0]]), "masked"),
    "none": (None, "None"),
    "float64": (np.ones((2, 3)), "float64"),
    "int64": (np.ones((2, 3), np.int64), "int64"),
    "list": ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "list"),
    "bool": (np.ones((2, 3), bool), "bool"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_are_refused_by_name(add_kernel, case):
    bad, what = BAD_INPUTS[case]
    good = np.ones((2, 3), np.float32)
    with pytest.raises((TypeError, ValueError), match=rf"input 'B'.*{what}"):
        add_kernel(good, bad)


def test_lossless_inputs_are_accepted(add_kernel):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    for dt in (np.float16, np.int8, np.uint8, np.int16, np.uint16):
        np.testing.assert_array_equal(add_kernel(a, a.astype(dt)), 2 * a)
    np.testing.assert_array_equal(add_kernel(a, a.astype(">f4")), 2 * a)
    np.testing.assert_array_equal(add_kernel(a, np.asfortranarray(np.ones((3, 2), np.float32)).T), a + 1)


def test_unknown_keyword_input_is_refused(add_kernel):
    a = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="unknown input 'C'"):
        add_kernel(A=a, B=a, C=a)


def test_session_uses_the_same_policy(tmp_path):
    sess = sd.load_onnx(relu_model(tmp_path, (2, 3)))
    for case in ("complex", "masked", "none", "float64", "object"):
        bad, what = BAD_INPUTS[case]
        with pytest.raises((TypeError, ValueError), match=rf"input 'x'.*{what}"):
            sess.run(None, {"x": bad})
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    np.testing.assert_array_equal(sess.run(None, {"x": x.astype(np.float16)})[0], np.maximum(x, 0))


@pytest.mark.parametrize("shape", [(2.5, 3), ("3", 2), (2, True), (np.float32(2), 3)])
def test_placeholder_dimensions_must_be_ints(shape):
    with pytest.raises(ValueError, match="dimension"):
        sd.placeholder("A", shape)


def test_placeholder_accepts_numpy_ints():
    assert sd.placeholder("A", (np.int64(2), np.int32(3))).shape == (2, 3)


def test_knob_candidates_must_be_ints():
    s = sd.Schedule(sd.relu(sd.placeholder("A", (8,))))
    with pytest.raises(sd.ScheduleError, match="2.7"):
        s.knob("t", [2.7, 4.2])


@pytest.mark.parametrize("config,what", [({"t": "8,t=4"}, "8,t=4"), ({"t=4,u": 2}, "t=4,u"),
                                         ({"t": 2.0}, "2.0"), ({"t": True}, "True")])
def test_config_is_validated(config, what):
    X_ = sd.placeholder("X", (16,))
    Y = sd.relu(X_)
    s = sd.Schedule(Y)
    (d0,) = s.loops("d0")
    t = s.knob("t", [2, 4, 8])
    s.knob("u", [1, 2])
    o, i = s.split(d0, t)
    s.bind(o, "block.x")
    s.bind(i, "thread.x")
    with pytest.raises(sd.ScheduleError, match=re.escape(what)):
        sd.lower(Y, s, config=config)


def test_config_text_sets_each_knob_once(tmp_path):
    from sched_dsl.lowering.apply_schedule import parse_config

    assert parse_config("ti=8, conv1.tj=-1") == {"ti": 8, "conv1.tj": -1}
    for bad in ("t=8,t=4", "t", "=4", "t=4=5", "a b=3", "t=0x10"):
        with pytest.raises(Exception, match=re.escape(bad.split(",")[-1].strip() if "," in bad else bad)):
            parse_config(bad)


# ---- 7. index arithmetic wide enough for the shapes --------------------------------------------


def test_small_shapes_keep_32_bit_indices():
    low = sd.lower(sd.relu(sd.placeholder("X", (64, 64))))
    assert "long" not in low.source and "int v_" in low.source


@pytest.mark.parametrize("target,wide", [("opencl", "long"), ("cuda", "long long")])
def test_tensors_of_2_31_elements_get_64_bit_indices(target, wide):
    n = 46341  # n * n > 2**31 - 1
    X_ = sd.placeholder("X", (n, n))
    low = sd.lower(sd.relu(X_), target=target)
    src = low.source
    assert re.search(r"\bint v_", src) is None, "no 32-bit index variable"
    assert f"const {wide} v_" in src
    assert "2147488281" in src  # the guard compares a 64-bit value
    guard = next(ln for ln in src.splitlines() if "2147488281" in ln)
    var = re.search(r"(v_\w+) < 2147488281", guard).group(1)
    assert re.search(rf"const {wide} {var} =", src), src


def test_matmul_with_large_flat_index_gets_64_bit_indices():
    A, B = sd.placeholder("A", (70000, 40000)), sd.placeholder("B", (40000, 8))
    src = sd.lower(sd.matmul(A, B)).source
    assert "for (long v_k" in src and re.search(r"\bint v_", src) is None


def test_grid_beyond_the_limit_is_refused():
    X_ = sd.placeholder("X", (2**21, 2**21))  # 2^42 outputs, 1024 a block (4 for each of 256 threads)
    with pytest.raises(sd.ScheduleError, match=r"grid .* exceeds"):
        sd.lower(sd.relu(X_))


def test_tensor_beyond_2_61_elements_is_refused():
    with pytest.raises(ValueError, match="elements"):
        sd.placeholder("X", (2**40, 2**30))


def _wide_cases():
    from gpu_cases import shared_tiled

    big = sd.placeholder("X", (1, 2, 32771, 32771))
    A, B = sd.placeholder("A", (70000, 40000)), sd.placeholder("B", (40000, 64))
    return {
        "relu": (sd.relu(sd.placeholder("X", (46341, 46341))), None),
        "max_pool_padded": (sd.pool2d(big, "max", 3, stride=2, padding=1), None),
        "reduce_max": (sd.reduce(big, "max", (2, 3)), None),
        "avg_pool_padded": (sd.pool2d(big, "avg", 3, stride=2, padding=1), None),
        "matmul_shared_tiles": shared_tiled(sd.matmul(A, B, name="C")),
    }


@pytest.fixture(scope="module")
def wide_sources():
    return {name: {t: sd.lower(out, s, target=t).source for t in ("opencl", "cuda")}
            for name, (out, s) in _wide_cases().items()}


@pytest.mark.parametrize("case", ["relu", "max_pool_padded", "reduce_max", "avg_pool_padded", "matmul_shared_tiles"])
def test_wide_index_text_compiles_on_pocl(wide_sources, case):
    from sched_dsl.runtime.opencl import _program

    src = wide_sources[case]["opencl"]
    assert "long v_" in src and "for (int " not in src and "(int)get_" not in src  # i32 values stay int
    _program(src)  # compiles; nothing of that size is allocated


@pytest.mark.skipif(__import__("shutil").which("nvcc") is None, reason="nvcc is not on PATH")
def test_wide_index_text_compiles_with_nvcc(wide_sources, tmp_path):
    for case, srcs in wide_sources.items():
        path = tmp_path / f"{case}.cu"
        path.write_text(srcs["cuda"])
        r = subprocess.run(["nvcc", "-arch=sm_90", "--ptx", str(path), "-o", str(tmp_path / f"{case}.ptx")],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{case}:\n{r.stdout}{r.stderr}"
        assert "long long v_" in srcs["cuda"]


def test_64_bit_index_kernels_compute_what_32_bit_ones_do(monkeypatch):
    """Every kernel printed with 64-bit indices (the threshold lowered to 1) on small shapes:
    the same results as the reference."""
    from gpu_cases import shared_tiled
    from sched_dsl.lowering.targets import c_family
    from sched_dsl.testing.strategies import assert_equivalent

    monkeypatch.setattr(c_family, "WIDE_INDEX_FROM", 1)
    X_ = sd.placeholder("X", (2, 3, 9, 7))
    cases = [shared_tiled(sd.matmul(sd.placeholder("A", (37, 29)), sd.placeholder("B", (29, 45)), name="C")),
             (sd.pool2d(X_, "avg", 3, stride=2, padding=1), None),
             (sd.conv2d(X_, sd.placeholder("W", (4, 3, 3, 3)), padding=1), None),
             (sd.softmax(sd.placeholder("S", (6, 11))), None),
             (sd.argsort(sd.placeholder("R", (5, 9)), axis=1), None)]
    for out, s in cases:
        assert "long v_" in sd.lower(out, s).source
        assert_equivalent(out, s)


def test_assert_equivalent_matches_nan_with_nan_only():
    # (-1.137) ** -0.46 is NaN in the kernel and in numpy: equivalent
    a, b = sd.placeholder("A", (2,)), sd.placeholder("B", (2,))
    out = sd.power(sd.neg(a), b)
    sdt.assert_equivalent(out, inputs={"A": np.array([1.137, 2.0], np.float32),
                                       "B": np.array([-0.46, 2.0], np.float32)})
    # NaN against a number misses, either way round; numbers compare within tolerance
    got, want = np.array([np.nan, 1.0, np.nan, 2.0]), np.array([np.nan, np.nan, 3.0, 2.001])
    np.testing.assert_array_equal(sdt.tolerance_excess(got, want, 0.0, 0.01) > 0,
                                  [False, True, True, False])
