"""The host side of a lowered module, read off its host function: which buffers exist and
which kernels run in what order with what launch configuration."""

from __future__ import annotations

import hashlib
import re
from dataclasses import astuple, dataclass, fields

from xdsl.dialects import func, gpu, memref
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
    Float32Type,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
)
from xdsl.ir import Attribute, SSAValue

from sched_dsl.dialects import tensorcore as tc
from sched_dsl.dialects.memspace import SHARED
from sched_dsl.lowering.emit import const_value

IDENT_CHARS = re.compile(r"[A-Za-z0-9_]+")
HEX_PAIR = re.compile(r"[0-9a-fA-F]{2}")
# longer identifiers are shortened: OpenCL compilers (PoCL among them) use a kernel's name in
# file names, which a file system caps at 255 bytes
MAX_IDENT = 64
SAFE_IN_COMMENT = re.compile(r"[A-Za-z0-9_ .,:;=+\-()\[\]{}<>@#$&*/'\"|~^!`]")


def c_name(text: str | None, fallback: str) -> str:
    """The one C identifier of an IR name, used by the printers and the runtimes alike.

    A name of [A-Za-z0-9_] keeps its spelling behind the prefix `v_` (no C keyword or
    reserved name starts with it). Any other name becomes `x_` and its UTF-8 bytes: letters,
    digits and `_` as they are, every other byte as `_` and two hex digits (`.` is `_2e`);
    a `_` that two hex digits would follow is written `_5f`. The spelling can be read back,
    so two IR names never share a C name. A spelling longer than MAX_IDENT keeps its first
    characters and ends in a hash of the whole name."""
    text = text or fallback
    name = _spelled(text)
    if len(name) > MAX_IDENT:
        name = f"{name[:MAX_IDENT - 20]}_h{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    return name


def _spelled(text: str) -> str:
    if IDENT_CHARS.fullmatch(text):
        return f"v_{text}"
    spelled = ""
    for b in reversed(text.encode()):  # from the end: a `_` depends on what follows it
        c = chr(b)
        if c == "_" and not HEX_PAIR.match(spelled):
            spelled = c + spelled
        else:
            spelled = (c if c.isascii() and c.isalnum() else f"_{b:02x}") + spelled
    return f"x_{spelled}"


def c_comment(text: str) -> str:
    """IR text as it may stand inside a `//` comment: printable ASCII but backslash (a line
    splice), `?` (trigraphs) and `%`; every other character as `%` and the hex digits of
    its UTF-8 bytes, so no name ends the comment or continues it onto the next line."""
    return "".join(c if SAFE_IN_COMMENT.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


@dataclass(frozen=True)
class Buffer:
    name: str  # as in the IR (the tensor or stage name)
    shape: tuple[int, ...]
    role: str  # "input", "output" or "temp"
    dtype: str = "f32"  # "f32", "f16", "bf16" or "i32"

    @property
    def numpy_dtype(self):
        import numpy as np
        if self.dtype == "bf16":
            import ml_dtypes
            return ml_dtypes.bfloat16
        return {"f32": np.float32, "f16": np.float16, "i32": np.int32}[self.dtype]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype in ("f16", "bf16") else 4

    @property
    def nbytes(self) -> int:
        return self.itemsize * self.size

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


# CUDA's limit on static __shared__ arrays per block; a kernel with more takes its shared
# buffers from dynamic shared memory (the CUDA printer and runtime), up to the device's opt-in
STATIC_SHARED_BYTES = 48 * 1024


@dataclass(frozen=True)
class Launch:
    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: tuple[str, ...]  # buffer names
    shared_bytes: int = 0  # the kernel's shared buffers, each 16-byte aligned
    zeroed: tuple[str, ...] = ()  # buffers set to zero before the launch: those the kernel updates by atomics

    @property
    def dynamic_shared(self) -> int:
        """Bytes of dynamic shared memory a CUDA launch asks for (0: static arrays only)."""
        return self.shared_bytes if self.shared_bytes > STATIC_SHARED_BYTES else 0

    @property
    def threads(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]


@dataclass(frozen=True)
class TensorMap:
    """A TMA descriptor (tc.tensor_map) kernels take as a 128-byte buffer: the runtime encodes
    it for `tensor`'s buffer once that is allocated, for copies of `box` (one extent per
    dimension, outermost first) in the 128-byte swizzled layout."""

    name: str
    tensor: str
    box: tuple[int, ...]

    nbytes = 8 * tc.TMA_MAP_WORDS


@dataclass(frozen=True)
class HostPlan:
    function: str
    buffers: tuple[Buffer, ...]
    launches: tuple[Launch, ...]
    tensor_maps: tuple[TensorMap, ...] = ()

    def to_json(self) -> dict:
        """Every field of the plan, its buffers and launches (a cache stores them: a field left
        out would come back as its default, e.g. no dynamic shared memory for a kernel that
        needs it)."""
        return {"function": self.function, "buffers": [list(astuple(b)) for b in self.buffers],
                "launches": [list(astuple(ln)) for ln in self.launches],
                "tensor_maps": [list(astuple(m)) for m in self.tensor_maps]}

    @staticmethod
    def from_json(d: dict) -> HostPlan:
        """The plan to_json wrote; a ValueError where the record is of another shape."""
        def rows(cls, items):
            width = len(fields(cls))
            if any(len(r) != width for r in items):
                raise ValueError(f"{cls.__name__} records of another shape")
            return tuple(cls(*(tuple(v) if isinstance(v, list) else v for v in r)) for r in items)
        return HostPlan(d["function"], rows(Buffer, d["buffers"]), rows(Launch, d["launches"]),
                        rows(TensorMap, d.get("tensor_maps", [])))

    @property
    def inputs(self) -> list[Buffer]:
        return [b for b in self.buffers if b.role == "input"]

    @property
    def outputs(self) -> list[Buffer]:
        return [b for b in self.buffers if b.role == "output"]

    def describe(self) -> str:
        lines = [f"// host function {c_comment(self.function)}"]
        for b in self.buffers:
            lines.append(f"//   {b.role} {c_comment(b.name)}: {'x'.join(map(str, b.shape))} {b.dtype}")
        for m in self.tensor_maps:
            lines.append(f"//   tensor map {c_comment(m.name)}: {c_comment(m.tensor)}, boxes of {'x'.join(map(str, m.box))}")
        for ln in self.launches:
            args = ", ".join(c_comment(a) for a in ln.args)
            zeroed = f" zeroed=({', '.join(c_comment(a) for a in ln.zeroed)})" if ln.zeroed else ""
            lines.append(f"//   launch {c_comment(ln.kernel)} grid={ln.grid} block={ln.block} args=({args}){zeroed}")
        return "\n".join(lines)


def buffer_alignment(op: memref.AllocaOp) -> int:
    """Bytes a kernel buffer's start is aligned to: 16 (vector copies), or its `sched.align`."""
    align = op.attributes.get("sched.align")
    return align.value.data if isinstance(align, IntegerAttr) else 16


def shared_layout(fn: gpu.FuncOp) -> dict:
    """Byte offset of each shared buffer of a kernel (each at its alignment), the total and
    the largest alignment."""
    offsets, total, largest = {}, 0, 16
    for op in fn.walk():
        if isinstance(op, memref.AllocaOp) and op.memref.type.memory_space == SHARED:
            t = op.memref.type
            align = buffer_alignment(op)
            largest = max(largest, align)
            total = -(-total // align) * align
            offsets[op.memref] = total
            size = element_bytes(t.element_type)
            for d in t.get_shape():
                size *= d
            total += -(-size // 16) * 16
    return {"offsets": offsets, "total": total, "align": largest}


def element_bytes(t: Attribute) -> int:
    if isinstance(t, (Float16Type, BFloat16Type)):
        return 2
    return 8 if isinstance(t, IntegerType) and t.width.data == 64 else 4


def dtype_name(t: MemRefType) -> str:
    e = t.element_type
    if isinstance(e, Float16Type):
        return "f16"
    if isinstance(e, BFloat16Type):
        return "bf16"
    return "f32" if isinstance(e, Float32Type) else "i32"


def atomic_targets(kernel: gpu.FuncOp | None, args: tuple[str, ...]) -> tuple[str, ...]:
    """The buffers (of `args`, the launch's) that the kernel updates by atomics: they start at
    zero (pool_scatter)."""
    if kernel is None:
        return ()
    params = list(kernel.body.block.args)
    found = {params.index(op.memref) for op in kernel.walk() if isinstance(op, memref.AtomicRMWOp)}
    return tuple(args[k] for k in sorted(found))


def host_plan(module: ModuleOp) -> HostPlan:
    fns = [f for f in module.ops if isinstance(f, func.FuncOp)]
    if len(fns) != 1:
        raise ValueError(f"expected one host function, found {len(fns)}")
    fn = fns[0]
    n_in = fn.attributes.get("sched.num_inputs")
    if not isinstance(n_in, IntegerAttr):
        raise ValueError(f"func '{fn.sym_name.data}' has no sched.num_inputs: lower it with "
                         "tensorop-to-loops first")
    n_in = n_in.value.data
    names: dict[SSAValue, str] = {}
    buffers = []
    for k, a in enumerate(fn.body.block.args):
        names[a] = a.name_hint or f"arg{k}"
        buffers.append(Buffer(names[a], tuple(a.type.get_shape()), "input" if k < n_in else "output",
                              dtype_name(a.type)))
    kernels = {k.sym_name.data: k for m in module.ops if isinstance(m, gpu.ModuleOp)
               for k in m.body.block.ops if isinstance(k, gpu.FuncOp)}
    launches, maps = [], []
    for op in fn.body.block.ops:
        if isinstance(op, tc.TensorMapOp):
            name = op.result.name_hint or f"map{len(maps)}"
            while name in names.values():  # a name of its own among the buffers'
                name += "_"
            names[op.result] = name
            maps.append(TensorMap(names[op.result], names[op.tensor], tuple(op.box_shape())))
        elif isinstance(op, memref.AllocOp):
            names[op.memref] = op.memref.name_hint or f"tmp{len(names)}"
            buffers.append(Buffer(names[op.memref], tuple(op.memref.type.get_shape()), "temp",
                                  dtype_name(op.memref.type)))
        elif isinstance(op, gpu.LaunchFuncOp):
            grid = tuple(const_value(v) for v in (op.gridSizeX, op.gridSizeY, op.gridSizeZ))
            block = tuple(const_value(v) for v in (op.blockSizeX, op.blockSizeY, op.blockSizeZ))
            name = op.kernel.nested_references.data[-1].data
            shared = shared_layout(kernels[name])["total"] if name in kernels else 0
            args = tuple(names[v] for v in op.kernelOperands)
            launches.append(Launch(name, grid, block, args, shared, atomic_targets(kernels.get(name), args)))
    return HostPlan(fn.sym_name.data, tuple(buffers), tuple(launches), tuple(maps))
