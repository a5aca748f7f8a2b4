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
    conv_transpose2d,
    cumsum,
    div,
    exp,
    expand,
    gather,
    gelu,
    im2col,
    leaky_relu,
    log_softmax,
    matmul,
    maximum,
    minimum,
    mul,
    neg,
    nms,
    normalize,
    pad,
    placeholder,
    pool2d,
    power,
    prelu,
    reduce,
    relu,
    relu6,
    remap,
    reshape,
    resize,
    sigmoid,
    slice_,
    softmax,
    sub,
    tanh,
    tile,
    topk,
    transpose,
    unary,
    winograd_input,
    winograd_output,
    winograd_weights,
)
from sched_dsl.records import RecordsError
from sched_dsl.tuner import TuneResult, tune

__all__ = [
    "GraphError", "Kernel", "Knob", "Loop", "Lowered", "RecordsError", "Schedule", "ScheduleError", "Session",
    "ShapeError", "Tensor", "TuneResult", "add", "argsort", "bias_add", "binary", "build", "cast", "clip", "concat",
    "conv2d", "conv_transpose2d", "cumsum", "div", "evaluate", "exp", "expand", "gather", "gelu", "im2col", "leaky_relu",
    "load_onnx", "log_softmax", "lower", "matmul", "maximum", "minimum", "mul", "neg", "nms", "normalize", "pad",
    "placeholder", "pool2d", "power", "prelu", "reduce", "relu", "relu6", "remap", "reshape", "resize", "sigmoid",
    "slice_", "softmax", "sub", "tanh", "tile", "topk", "transpose", "tune", "unary",
    "winograd_input", "winograd_output", "winograd_weights",
]
