"""The `onnx` wheel's backend test data as cases sched-dsl runs: the operator cases of
onnx/backend/test/data/{node,pytorch-converted,pytorch-operator,simple} (a model.onnx and
test_data_set_*/ with inputs and expected outputs) and the nine light models of
onnx/backend/test/data/light (weights as ConstantOfShape nodes, fed as onnx's backend runner
feeds them: arange(n) / n in the input's shape, against light_<name>_output_0.pb).

OUTSIDE lists the cases outside sched-dsl's operator families, each with the words its import
error must contain; every other case must import and match its expected outputs.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass

import numpy as np

KINDS = ("node", "pytorch-converted", "pytorch-operator", "simple")
RTOL, ATOL = 1e-3, 1e-5  # onnx's runner uses rtol 1e-3; atol 1e-5 allows float32 sums in another order

# case name -> what its import error says (the reason it is outside)
OUTSIDE = {
    **{f"test_{op}3d{suffix}": "only 1-D and 2-D" for op, suffix in (
        ("AvgPool", ""), ("AvgPool", "_stride"), ("AvgPool", "_stride1_pad0_gpu_input"), ("MaxPool", ""),
        ("MaxPool", "_stride"), ("MaxPool", "_stride_padding"))},
    **{f"test_Conv3d{suffix}": "only 1-D and 2-D" for suffix in (
        "", "_dilated", "_dilated_strided", "_groups", "_no_bias", "_stride", "_stride_padding")},
    # float64 tensors (computing them in f32 could change results)
    **{f"test_operator_add{suffix}": "is DOUBLE" for suffix in (
        "_broadcast", "_size1_broadcast", "_size1_right_broadcast", "_size1_singleton_broadcast")},
    "test_operator_addconstant": "is DOUBLE",
    # integer arithmetic at run time
    "test_operator_non_float_params": "GPU operators take static float32 tensors",
    # Expand to a shape that is a model input (a shape known only at run time)
    **{f"test_expand_shape_model{k}": "must be a constant" for k in range(1, 5)},
    "test_gradient_of_add": "domain 'ai.onnx.preview.training'",
    "test_gradient_of_add_and_mul": "domain 'ai.onnx.preview.training'",
    **{f"test_sequence_model{k}": "sequences are not supported" for k in range(1, 8)},
    "test_sequence_model8": "needs a static shape",
    **{f"test_strnorm_model_{s}": "is STRING" for s in (
        "monday_casesensintive_lower", "monday_casesensintive_nochangecase", "monday_casesensintive_upper",
        "monday_empty_output", "monday_insensintive_upper_twodim", "nostopwords_nochangecase")},
}

LIGHT_MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
                "squeezenet", "vgg19", "zfnet512")


def data_dir() -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


@dataclass(frozen=True)
class Case:
    name: str  # test_<...> or light_<model>
    kind: str  # one of KINDS, or "light"
    path: str  # the case's folder, or the light model's .onnx file

    @property
    def outside(self) -> str | None:
        return OUTSIDE.get(self.name)


def operator_cases() -> list[Case]:
    cases = []
    for kind in KINDS:
        for d in sorted(glob.glob(os.path.join(data_dir(), kind, "test_*"))):
            if os.path.isfile(os.path.join(d, "model.onnx")):
                cases.append(Case(os.path.basename(d), kind, d))
    return cases


def light_cases() -> list[Case]:
    return [Case(f"light_{m}", "light", os.path.join(data_dir(), "light", f"light_{m}.onnx")) for m in LIGHT_MODELS]


def _tensor(path: str) -> np.ndarray:
    import onnx

    return onnx.numpy_helper.to_array(onnx.load_tensor(path))


def feeds_and_expected(case: Case) -> list[tuple[dict[str, np.ndarray], list[np.ndarray]]]:
    """(inputs by name, expected outputs) of each data set of the case."""
    import onnx

    if case.kind == "light":
        m = onnx.load(case.path, load_external_data=False)
        init = {i.name for i in m.graph.initializer}
        feeds = {}
        for i in m.graph.input:
            if i.name not in init:
                shape = tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
                n = int(np.prod(shape))
                feeds[i.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
        return [(feeds, [_tensor(case.path[:-len(".onnx")] + "_output_0.pb")])]
    m = onnx.load(os.path.join(case.path, "model.onnx"), load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    names = [i.name for i in m.graph.input if i.name not in init]
    sets = []
    for ds in sorted(glob.glob(os.path.join(case.path, "test_data_set_*"))):
        ins = [_tensor(f) for f in sorted(glob.glob(os.path.join(ds, "input_*.pb")))]
        outs = [_tensor(f) for f in sorted(glob.glob(os.path.join(ds, "output_*.pb")))]
        sets.append((dict(zip(names, ins)), outs))
    return sets


@dataclass
class Result:
    case: Case
    status: str  # "pass", "fail" (wrong numbers or shapes), "unsupported" (an import error)
    message: str = ""
    seconds: float = 0.0


def run_case(case: Case, target: str = "opencl") -> Result:
    """Imports and runs the case on `target`, compares every output (shape, dtype, values
    within RTOL/ATOL, NaN where expected)."""
    from sched_dsl.graph.executor import load_onnx
    from sched_dsl.graph.onnx_import import OnnxImportError

    t0 = time.perf_counter()
    model = case.path if case.kind == "light" else os.path.join(case.path, "model.onnx")
    try:
        sess = load_onnx(model, target=target)
    except OnnxImportError as e:
        return Result(case, "unsupported", str(e), time.perf_counter() - t0)
    for feeds, expected in feeds_and_expected(case):
        got = sess.run(None, feeds)
        for k, (g, e) in enumerate(zip(got, expected)):
            if g.shape != e.shape or g.dtype != e.dtype:
                return Result(case, "fail", f"output {k}: {g.dtype}{g.shape}, expected {e.dtype}{e.shape}",
                              time.perf_counter() - t0)
            if not np.allclose(g, e, rtol=RTOL, atol=ATOL, equal_nan=True):
                err = np.abs(g.astype(np.float64) - e)
                return Result(case, "fail", f"output {k}: largest difference {np.nanmax(err):.3g}",
                              time.perf_counter() - t0)
    return Result(case, "pass", "", time.perf_counter() - t0)
