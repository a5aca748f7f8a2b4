"""sched-dsl: tensor operators and declarative schedules, lowered through xDSL to OpenCL C
and CUDA C."""

from sched_dsl.build import Kernel, Lowered, build, lower
from sched_dsl.dialects.tensorop import ShapeError
from sched_dsl.graph.executor import GraphError, Session, load_onnx
from sched_dsl.reference import evaluate
from sched_dsl.schedule import Knob, Loop, Schedule, ScheduleError
from sched_dsl.tensor import (
    Tensor,
    add,
    argsort,
    bias_add,
    binary,
    cast,
    clip,
    concat,
    conv2d,
    cumsum,
    div,
    exp,
    matmul,
    maximum,
    minimum,
    mul,
    neg,
    nms,
    placeholder,
    pool2d,
    reduce,
    relu,
    relu6,
    reshape,
    sigmoid,
    softmax,
    sub,
    tanh,
    topk,
    unary,
)
from sched_dsl.records import RecordsError
from sched_dsl.tuner import TuneResult, tune

__all__ = [
    "GraphError", "Kernel", "Knob", "Loop", "Lowered", "RecordsError", "Schedule", "ScheduleError", "Session",
    "ShapeError", "Tensor", "TuneResult", "add", "argsort", "bias_add", "binary", "build", "cast", "clip",
    "concat", "conv2d", "cumsum", "div", "evaluate", "exp", "load_onnx", "lower", "matmul", "maximum", "minimum",
    "mul",
    "neg", "nms", "placeholder", "pool2d", "reduce", "relu", "relu6", "reshape", "sigmoid", "softmax", "sub",
    "tanh", "topk", "tune", "unary",
]
