"""Checks a pipeline pass by pass: after every pass, the IR still computes what the input
did, on small random inputs.

    from sched_dsl.testing.check import check_each_pass
    report = check_each_pass(module, "tensorop-to-loops,apply-schedule,loops-to-gpu")

The meaning of the input is the numpy reference of its `tensorop` ops (`sched_dsl.reference`);
an input already lowered is run by the interpreter instead. The IR after each pass is run at
its level:

- tensorop: the reference of its tensorop ops;
- loops (scf/arith/math/memref, thread loops SPMD) and gpu (launch grid simulated on the
  host, barriers included): `sched_dsl.testing.interp`;
- when the pipeline ends at the gpu level, the emitted OpenCL text on the default OpenCL
  device (PoCL on a CPU).

The first pass whose result differs raises `EquivalenceError`, naming the pass and showing the
inputs, the expected and actual values and the IR before and after the pass.

Running a stage's IR takes interpreter steps (see interp.py); one that needs more than
`budget` is "not checked: too large for the budget", a result of its own (`checked` False),
never a broken pass: the check goes on with the next stage, and `summary(results)` lists the
stages checked and not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, IntegerType, MemRefType, ModuleOp, TensorType
from xdsl.passes import ModulePass

from sched_dsl import reference
from sched_dsl.context import make_context
from sched_dsl.dialects import tensorop as T
from sched_dsl.lowering.level import levels_of
from sched_dsl.lowering.pipeline import parse_pipeline
from sched_dsl.testing.interp import DEFAULT_BUDGET, BudgetExceeded, Interpreter, InterpError
from sched_dsl.tensor import Tensor, tensor_of_op

RTOL, ATOL = 1e-4, 1e-5
TEXT_STAGE = "emitted OpenCL text"


class CheckError(ValueError):
    """The module cannot be checked (e.g. no host function, or a level not known)."""


@dataclass
class StageResult:
    """One point of the pipeline: after pass `name`, at `level`. `checked` is False where
    running the IR needed more interpreter steps than the budget (then `ok` says nothing)."""

    name: str
    level: str
    max_error: float  # largest |actual - expected| over all outputs
    ok: bool = True
    message: str = ""
    checked: bool = True

    def __str__(self) -> str:
        if not self.checked:
            return f"{self.name}: {self.level} level, not checked: {self.message}"
        state = "ok" if self.ok else "BROKEN"
        return f"{self.name}: {self.level} level, {state}, max |error| {self.max_error:.3g}{self.message}"


def summary(results: Sequence[StageResult]) -> str | None:
    """A line naming the stages checked and those too large for the budget; None when all were checked."""
    unchecked = [r for r in results if not r.checked]
    if not unchecked:
        return None
    checked = ", ".join(r.name for r in results if r.checked) or "none"
    budget = [r.name for r in unchecked if "budget" in r.message]
    elsewhere = "; ".join(f"{r.name} ({r.message})" for r in unchecked if "budget" not in r.message)
    if not budget:
        return f"not every stage was checked: not run here: {elsewhere}; checked: {checked}"
    return (f"not every stage was checked: too large for the interpreter's budget: {', '.join(budget)}; "
            + (f"not run here: {elsewhere}; " if elsewhere else "")
            + f"checked: {checked} (raise the budget with --check-budget, or check_each_pass(budget=...))")


class EquivalenceError(AssertionError):
    """A pass changed what the IR computes. `stage` names the pass; the message holds the
    inputs, the expected and actual values and the IR before and after it."""

    def __init__(self, message: str, stage: str, results: list[StageResult]):
        super().__init__(message)
        self.stage, self.results = stage, results


# ---- the module's function and its level --------------------------------------------------


def host_function(module: ModuleOp) -> func.FuncOp:
    fns = [op for op in module.ops if isinstance(op, func.FuncOp) and op.body.blocks]
    if len(fns) != 1:
        raise CheckError(f"--check-each-pass needs one host func.func in the module, found {len(fns)}")
    return fns[0]


def level_of(module: ModuleOp) -> str:
    """'tensorop', 'loops' or 'gpu': how far the module is lowered."""
    fn = host_function(module)
    found = levels_of(module)
    if "operator" in found:
        return "tensorop"
    if "gpu" in found:
        return "gpu"
    if all(isinstance(a.type, MemRefType) for a in fn.body.block.args):
        return "loops"
    raise CheckError(f"func '{fn.sym_name.data}' is neither tensorop ops nor loops over memrefs")


def _arg_names(fn: func.FuncOp) -> list[str]:
    names = fn.attributes.get("sched.arg_names")
    if isinstance(names, ArrayAttr):
        return [n.data for n in names.data]
    return [a.name_hint or f"arg{k}" for k, a in enumerate(fn.body.block.args)]


def _num_inputs(fn: func.FuncOp) -> int:
    """Arguments before this index are inputs, the rest outputs; without sched.num_inputs
    every argument is both."""
    n = fn.attributes.get("sched.num_inputs")
    return n.value.data if isinstance(n, IntegerAttr) else 0


# ---- the tensorop level ------------------------------------------------------------------------


def graph_of(fn: func.FuncOp) -> tuple[list[Tensor], dict[str, Tensor]]:
    """The tensor graph of a func of tensorop ops: its placeholders in argument order and its
    outputs by stage name."""
    values = {}
    placeholders = []
    for k, a in enumerate(fn.body.block.args):
        if not isinstance(a.type, TensorType):
            raise CheckError(f"func '{fn.sym_name.data}': argument {k} is {a.type}, not a tensor")
        dtype = "i32" if isinstance(a.type.element_type, IntegerType) else T.dtype_of(a)
        values[a] = Tensor("placeholder", T.shape_of(a), name=a.name_hint or f"arg{k}", dtype=dtype)
        placeholders.append(values[a])
    outputs: dict[str, Tensor] = {}
    for op in fn.body.block.ops:
        if isinstance(op, T.TensorOp):
            values[op.result] = tensor_of_op(op, tuple(values[v] for v in op.operands))
        elif isinstance(op, func.ReturnOp):
            for v in op.operands:
                t = values[v]
                outputs[t.name] = t
        else:
            raise CheckError(f"cannot evaluate {op.name} next to tensorop ops")
    return placeholders, outputs


def _evaluate_tensorop(fn: func.FuncOp, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    _, outputs = graph_of(fn)
    got = reference.evaluate(list(outputs.values()), inputs)
    return dict(zip(outputs, got))


# ---- running a module -------------------------------------------------------------------------


def evaluate(module: ModuleOp, inputs: Mapping[str, np.ndarray], budget: int = DEFAULT_BUDGET
             ) -> dict[str, np.ndarray]:
    """The outputs of `module`'s host function for `inputs` (by argument name), at whatever
    level it is; the inputs are not changed. Raises BudgetExceeded when running the IR needs
    more than `budget` interpreter steps."""
    fn = host_function(module)
    if level_of(module) == "tensorop":
        return _evaluate_tensorop(fn, inputs)
    if any(op.dialect_name() == "tc" for op in module.walk()):
        # tensor-core ops run as what they mean: the loops tc-to-loops writes for them
        from sched_dsl.lowering.tc_to_loops import TcToLoopsPass
        module = module.clone()
        TcToLoopsPass().apply(make_context(), module)
        fn = host_function(module)
    names, n_in = _arg_names(fn), _num_inputs(fn)
    args = []
    for k, (name, a) in enumerate(zip(names, fn.body.block.args)):
        shape = tuple(a.type.get_shape())
        if k < n_in or n_in == 0:
            if name not in inputs:
                raise CheckError(f"no value for argument '{name}'")
            dtype = T.element_dtype(a.type.element_type)  # f16/bf16 inputs: values of that type
            args.append(reference.round_to(np.array(inputs[name], dtype=np.float64), dtype or "f32")
                        .astype(np.float32).reshape(shape))
        else:
            args.append(np.full(shape, np.nan, dtype=np.float32))
    Interpreter(module, budget).run(fn, args)
    return {name: arr for k, (name, arr) in enumerate(zip(names, args)) if k >= n_in}


def run_opencl_text(module: ModuleOp, source: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs OpenCL text printed from gpu-level `module` on the default OpenCL device."""
    from sched_dsl.lowering.host_plan import host_plan
    from sched_dsl.runtime.opencl import OpenCLKernel

    plan = host_plan(module)
    kernel = OpenCLKernel(source, plan)
    outs = kernel.run(*[np.asarray(inputs[b.name], dtype=np.float32).astype(b.numpy_dtype) for b in plan.inputs])
    return {b.name: np.asarray(o) for b, o in zip(plan.outputs, outs)}


def print_opencl(module: ModuleOp) -> str:
    from sched_dsl.lowering.targets.c_family import OPENCL, print_kernels

    text = StringIO()
    print_kernels(module, OPENCL, text)
    return text.getvalue()


def random_inputs_of(module: ModuleOp, seed: int = 0) -> dict[str, np.ndarray]:
    """Well-conditioned inputs for `module`'s host function (see sched_dsl.testing.random_inputs);
    for a module already lowered, values in [-1, 1]."""
    from sched_dsl.testing.strategies import random_inputs

    fn = host_function(module)
    if level_of(module) == "tensorop":
        placeholders, outputs = graph_of(fn)
        values = random_inputs(list(outputs.values()), seed)
        # a placeholder no output reads still is an argument
        rng = np.random.default_rng(seed)
        for p in placeholders:
            values.setdefault(p.name, rng.uniform(-1, 1, p.shape).astype(np.float32))
        return values
    rng = np.random.default_rng(seed)
    n_in = _num_inputs(fn) or len(fn.body.block.args)
    return {name: rng.uniform(-1, 1, tuple(a.type.get_shape())).astype(np.float32)
            for name, a in list(zip(_arg_names(fn), fn.body.block.args))[:n_in]}


# ---- comparing ----------------------------------------------------------------------------------


def _compare(want: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], rtol: float, atol: float
             ) -> tuple[float, str | None]:
    """(max |error|, None) when `got` matches `want`, else (.., what differs)."""
    worst_err = 0.0
    for name, w in want.items():
        if name not in got:
            return np.inf, f"output '{name}' is missing (outputs: {', '.join(got) or 'none'})"
        g = np.asarray(got[name], dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            return np.inf, f"output '{name}' has shape {g.shape}, expected {w.shape}"
        err = np.where(np.isnan(g) & ~np.isnan(w), np.inf, np.abs(g - w))
        err = np.where(np.isnan(g) & np.isnan(w), 0.0, err)
        excess = err - (atol + rtol * np.abs(w))
        if err.size:
            worst_err = max(worst_err, float(np.nanmax(err)))
        if excess.size and np.nanmax(excess) > 0:
            at = np.unravel_index(np.nanargmax(excess), excess.shape)
            bad = int((excess > 0).sum())
            return worst_err, (f"{bad} of {excess.size} elements of '{name}' differ (rtol={rtol}, atol={atol}); "
                               f"worst at {tuple(int(i) for i in at)}: expected {w[at]:.6g}, got {g[at]:.6g}")
    return worst_err, None


def _arrays(values: Mapping[str, np.ndarray]) -> str:
    with np.printoptions(precision=4, suppress=True, threshold=256, linewidth=100):
        return "\n".join(f"  {n} =\n{np.asarray(v)!r}" for n, v in values.items())


# ---- the check --------------------------------------------------------------------------------


def check_each_pass(module: ModuleOp, pipeline: str | Sequence[ModulePass], *, ctx: Context | None = None,
                    seed: int = 0, inputs: Mapping[str, np.ndarray] | None = None,
                    passes: Sequence[type[ModulePass]] = (),
                    emit: Callable[[ModuleOp], str] | None = print_opencl,
                    rtol: float = RTOL, atol: float = ATOL, budget: int = DEFAULT_BUDGET,
                    log: Callable[[StageResult], None] | None = None) -> list[StageResult]:
    """Applies `pipeline` (a pass spec such as "tensorop-to-loops,apply-schedule", or pass
    instances) to `module` in place, checking after every pass that the IR computes what
    the input did on `inputs` (default: well-conditioned random values from `seed`).
    `passes` adds pass classes (by their `name`) that a spec may use; `emit` prints gpu-level IR as OpenCL
    text, which is run on the default OpenCL device at the end (None: skip). Returns one
    StageResult per point (each also given to `log`); a stage whose IR needs more than
    `budget` interpreter steps to run is not checked (`checked` False; see `summary`).
    Raises EquivalenceError at the first pass that broke equivalence."""
    if not isinstance(budget, int) or budget < 1:
        raise CheckError(f"the check budget must be a number of interpreter steps >= 1, got {budget!r}")
    ctx = ctx or make_context()
    steps = parse_pipeline(pipeline, passes)
    values = dict(random_inputs_of(module, seed) if inputs is None else inputs)
    if level_of(module) == "tensorop" and (rtol, atol) == (RTOL, ATOL):
        # f16/bf16/tf32 graphs: the tolerance their types give (docs/precision.md)
        rtol, atol = reference.tolerance(list(graph_of(host_function(module))[1].values()))
    level = level_of(module)
    too_large = f"too large for the budget of {budget} interpreter steps"
    try:
        want = evaluate(module, values, budget)
    except InterpError as e:
        raise CheckError(f"the input module cannot be run: {e}") from None
    except BudgetExceeded:
        want, too_large = None, f"the input module itself is {too_large}"
    results: list[StageResult] = []

    def unchecked(name: str, lvl: str) -> None:
        results.append(StageResult(name, lvl, np.nan, True, too_large, checked=False))
        if log is not None:
            log(results[-1])

    def record(name: str, lvl: str, got: dict | None, error: str | None, before: str, after: str) -> None:
        err, diff = (np.inf, error) if got is None else _compare(want, got, rtol, atol)
        res = StageResult(name, lvl, err, diff is None, "" if diff is None else f": {diff}")
        results.append(res)
        if log is not None:
            log(res)
        if diff is None:
            return
        shown = "" if got is None else f"actual:\n{_arrays(got)}\n"
        skipped = []
        for r in reversed(results[:-1]):
            if r.checked:
                break
            skipped.insert(0, r.name)
        note = (f" (not checked before it, too large for the budget: {', '.join(skipped)}; "
                "the change may have come from there)") if skipped else ""
        raise EquivalenceError(
            f"check-each-pass: '{name}' broke equivalence ({lvl} level){note}: {diff}\n"
            f"inputs:\n{_arrays(values)}\nexpected:\n{_arrays(want)}\n{shown}"
            f"IR before {name}:\n{before}\nIR after {name}:\n{after}", name, results)

    before = str(module)
    for p in steps:
        p.apply(ctx, module)
        module.verify()
        after = str(module)
        level = level_of(module)
        if want is None:
            unchecked(p.name, level)
            continue
        try:
            got, error = evaluate(module, values, budget), None
        except InterpError as e:
            got, error = None, f"running its result failed: {e}"
        except BudgetExceeded:
            unchecked(p.name, level)
            before = after
            continue
        record(p.name, level, got, error, before, after)
        before = after
    if level == "gpu" and emit is not None:
        source = emit(module)
        if want is None:
            unchecked(TEXT_STAGE, "text")
            return results
        from sched_dsl.dialects.tensorcore import in_kernels
        from sched_dsl.runtime.common import DeviceError
        from sched_dsl.runtime.opencl import has_tensor_cores

        if any(in_kernels(op) for op in module.walk()) and not has_tensor_cores():
            too_large = ("its text uses tensor-core instructions, which this OpenCL device does not have "
                         "(end the pipeline with tc-to-loops to run it here)")
            unchecked(TEXT_STAGE, "text")
            return results

        try:
            got, error = run_opencl_text(module, source, values), None
        except DeviceError as e:
            got, error = None, f"the OpenCL text did not build or run: {e}"
        record(TEXT_STAGE, "text", got, error, before, source)
    return results
