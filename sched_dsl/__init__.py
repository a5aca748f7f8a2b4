"""sched-dsl: tensor operators and declarative schedules, lowered through xDSL to OpenCL C
and CUDA C."""

from sched_dsl.build import Kernel, Lowered, build, lower
from sched_dsl.dialects.tensorop import ShapeError
from sched_dsl.executor import GraphError, Session, load_onnx
from sched_dsl.reference import evaluate
from sched_dsl.schedule import Knob, Loop, Schedule, ScheduleError
from sched_dsl.tensor import (
    Tensor,
    add,
    bias_add,
    binary,
    clip,
    concat,
    conv2d,
    div,
    exp,
    matmul,
    maximum,
    minimum,
    mul,
    neg,
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
    unary,
)

__all__ = [
    "GraphError", "Kernel", "Knob", "Session", "load_onnx", "Loop", "Lowered", "Schedule", "ScheduleError", "ShapeError", "Tensor", "add",
    "bias_add", "binary", "build", "clip", "concat", "conv2d", "div", "evaluate", "exp", "lower", "matmul",
    "maximum", "minimum", "mul", "neg", "placeholder", "pool2d", "reduce", "relu", "relu6", "reshape", "sigmoid",
    "softmax", "sub", "tanh", "unary",
]
