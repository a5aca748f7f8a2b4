"""One printer for OpenCL C and CUDA C: the gpu.module of a lowered module as kernel text.

The two languages differ only in the spellings collected in `Spelling`; everything else
(statements, expressions, indexing, names) is shared. Every identifier comes from
`c_name`, so no name in the IR can put text of its own into a kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import IO

from xdsl.context import Context
from xdsl.dialects import arith, gpu
from xdsl.dialects import math as mathd
from xdsl.dialects import memref, scf, vector
from xdsl.dialects.builtin import (
    Float32Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
    VectorType,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.utils.exceptions import DiagnosticException
from xdsl.utils.target import Target

from sched_dsl.dialects.memspace import LOCAL, SHARED
from sched_dsl.lowering.host_plan import c_name, host_plan


@dataclass(frozen=True)
class Spelling:
    prelude: str
    kernel: str  # before the kernel's name; {threads} is the block size
    global_ptr: str  # a global buffer parameter; {type} (float or int), {name}
    shared_array: str  # a block-shared array {name} of {size} elements of {type}, 16-byte aligned for vector loads
    local_array: str  # a thread's own array of a multiple of 4 elements, also aligned
    thread_id: str  # {d} is 0, 1, 2 / x, y, z
    block_id: str
    barrier: str
    global_barrier: str  # also orders global memory among the block's threads
    vload: str  # a float4 read at the 16-byte aligned address {addr}, in address space {space}
    vstore: str  # {value} written as a float4 at {addr}
    spaces: tuple[str, str, str]  # pointer qualifiers of global, shared and local (private) memory
    fmax: str
    fmin: str
    exp: str
    tanh: str
    inf: str
    dims: tuple[str, str, str]
    math_suffix: str = ""  # CUDA's float versions of the C math functions end in f (logf, ...)


OPENCL = Spelling(
    prelude="",
    kernel="__kernel __attribute__((reqd_work_group_size({bx}, {by}, {bz}))) void",
    global_ptr="__global {type}* restrict {name}",
    shared_array="__local {type} {name}[{size}] __attribute__((aligned(16)));",
    local_array="{type} {name}[{size}] __attribute__((aligned(16)));",
    thread_id="(int)get_local_id({d})",
    block_id="(int)get_group_id({d})",
    barrier="barrier(CLK_LOCAL_MEM_FENCE);",
    global_barrier="barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);",
    # a float4 pointer, not vload4: vload4 promises only float alignment, so NVIDIA's
    # compiler splits it into four loads
    vload="*({space}const float4*)({addr})", vstore="*({space}float4*)({addr}) = {value};",
    spaces=("__global ", "__local ", ""),
    fmax="fmax", fmin="fmin", exp="exp", tanh="tanh",
    inf="INFINITY",
    dims=("0", "1", "2"),
)

CUDA = Spelling(
    prelude='extern "C" {\n',
    kernel="__global__ void __launch_bounds__({threads})",
    global_ptr="{type}* __restrict__ {name}",
    shared_array="__shared__ __align__(16) {type} {name}[{size}];",
    local_array="__align__(16) {type} {name}[{size}];",
    thread_id="(int)threadIdx.{d}",
    block_id="(int)blockIdx.{d}",
    barrier="__syncthreads();",
    global_barrier="__syncthreads();",
    vload="*({space}const float4*)({addr})", vstore="*({space}float4*)({addr}) = {value};",
    spaces=("", "", ""),
    fmax="fmaxf", fmin="fminf", exp="expf", tanh="tanhf",
    inf="__int_as_float(0x7f800000)",
    dims=("x", "y", "z"),
    math_suffix="f",
)

CMP = {"eq": "==", "ne": "!=", "slt": "<", "sle": "<=", "sgt": ">", "sge": ">=",
       "ult": "<", "ule": "<=", "ugt": ">", "uge": ">=", "oeq": "==", "one": "!=", "olt": "<",
       "ole": "<=", "ogt": ">", "oge": ">="}
INT_BINARY = {arith.AddiOp: "+", arith.SubiOp: "-", arith.MuliOp: "*", arith.DivUIOp: "/",
              arith.DivSIOp: "/", arith.RemUIOp: "%", arith.RemSIOp: "%", arith.AndIOp: "&&",
              arith.OrIOp: "||"}
FLOAT_BINARY = {arith.AddfOp: "+", arith.SubfOp: "-", arith.MulfOp: "*", arith.DivfOp: "/"}
# math ops printed as C math functions (CUDA adds Spelling.math_suffix)
MATH_CALLS = {mathd.LogOp: "log", mathd.SqrtOp: "sqrt", mathd.AbsFOp: "fabs", mathd.FloorOp: "floor",
              mathd.CeilOp: "ceil", mathd.ErfOp: "erf", mathd.PowFOp: "pow"}


def c_type(t: Attribute) -> str:
    if isinstance(t, IndexType) or (isinstance(t, IntegerType) and t.width.data == 32):
        return "int"
    if isinstance(t, IntegerType) and t.width.data == 1:
        return "bool"
    if isinstance(t, Float32Type):
        return "float"
    if isinstance(t, VectorType) and isinstance(t.element_type, Float32Type) and t.get_shape() == (4,):
        return "float4"
    raise DiagnosticException(f"no C type for {t}")


def float_literal(v: float, sp: Spelling) -> str:
    if math.isinf(v):
        return sp.inf if v > 0 else f"(-{sp.inf})"
    if math.isnan(v):
        raise DiagnosticException("NaN constant in a kernel")
    return f"{float(v)!r}f"


class KernelPrinter:
    def __init__(self, sp: Spelling, out: IO[str]):
        self.sp, self.out = sp, out
        self.names: dict[SSAValue, str] = {}
        self.taken: set[str] = set()
        self.indent = 1

    def name(self, v: SSAValue) -> str:
        if v not in self.names:
            base = c_name(v.name_hint, "t")
            name, k = base, 0
            while name in self.taken:
                k += 1
                name = f"{base}_{k}"
            self.taken.add(name)
            self.names[v] = name
        return self.names[v]

    def line(self, text: str) -> None:
        self.out.write("  " * self.indent + text + "\n")

    def expr(self, v: SSAValue) -> str:
        op = v.owner
        if isinstance(op, arith.ConstantOp):
            attr = op.value
            if isinstance(attr, FloatAttr):
                return float_literal(attr.value.data, self.sp)
            if isinstance(attr, IntegerAttr):
                if isinstance(attr.type, IntegerType) and attr.type.width.data == 1:
                    return "true" if attr.value.data else "false"
                return str(attr.value.data)
        return self.name(v)

    def kernel(self, fn: gpu.FuncOp, block_size: tuple[int, int, int]) -> None:
        sp = self.sp
        params = []
        for a in fn.body.block.args:
            if not isinstance(a.type, MemRefType):
                raise DiagnosticException(f"kernel {fn.sym_name.data}: argument of type {a.type}")
            params.append(sp.global_ptr.format(type=c_type(a.type.element_type), name=self.name(a)))
        bx, by, bz = block_size
        head = sp.kernel.format(threads=bx * by * bz, bx=bx, by=by, bz=bz)
        self.out.write(f"{head} {c_name(fn.sym_name.data, 'kernel')}({', '.join(params)}) {{\n")
        self.block(fn.body.block)
        self.out.write("}\n\n")

    def block(self, block: Block) -> None:
        for op in block.ops:
            self.op(op)

    def assign(self, op: Operation, text: str) -> None:
        r = op.results[0]
        self.line(f"const {c_type(r.type)} {self.name(r)} = {text};")

    def index(self, ref: SSAValue, indices) -> str:
        shape = ref.type.get_shape()
        flat = ""
        for k, (i, n) in enumerate(zip(indices, shape)):
            flat = self.expr(i) if k == 0 else f"({flat}) * {n} + {self.expr(i)}"
        return f"{self.name(ref)}[{flat or 0}]"

    def space(self, ref: SSAValue) -> str:
        m = ref.type.memory_space
        return self.sp.spaces[1 if m == SHARED else 2 if m == LOCAL else 0]

    def op(self, op: Operation) -> None:
        sp = self.sp
        e = self.expr
        t = type(op)
        if isinstance(op, arith.ConstantOp) or isinstance(op, (scf.YieldOp, gpu.ReturnOp)):
            return
        if t in INT_BINARY:
            self.assign(op, f"{e(op.lhs)} {INT_BINARY[t]} {e(op.rhs)}")
        elif t in FLOAT_BINARY:
            self.assign(op, f"{e(op.lhs)} {FLOAT_BINARY[t]} {e(op.rhs)}")
        elif isinstance(op, (arith.MaxSIOp, arith.MinSIOp)):
            self.assign(op, f"{'max' if isinstance(op, arith.MaxSIOp) else 'min'}({e(op.lhs)}, {e(op.rhs)})")
        elif isinstance(op, (arith.MaximumfOp, arith.MinimumfOp)):
            fn = sp.fmax if isinstance(op, arith.MaximumfOp) else sp.fmin
            self.assign(op, f"{fn}({e(op.lhs)}, {e(op.rhs)})")
        elif isinstance(op, (arith.CmpiOp, arith.CmpfOp)):
            pred = op.predicate.value.data
            names = ["eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge"] if isinstance(
                op, arith.CmpiOp) else ["false", "oeq", "ogt", "oge", "olt", "ole", "one"]
            self.assign(op, f"{e(op.lhs)} {CMP[names[pred]]} {e(op.rhs)}")
        elif isinstance(op, arith.SelectOp):
            self.assign(op, f"{e(op.cond)} ? {e(op.lhs)} : {e(op.rhs)}")
        elif isinstance(op, arith.NegfOp):
            self.assign(op, f"-{e(op.operand)}")
        elif t in MATH_CALLS:
            self.assign(op, f"{MATH_CALLS[t]}{sp.math_suffix}({', '.join(e(v) for v in op.operands)})")
        elif isinstance(op, (arith.IndexCastOp, arith.SIToFPOp, arith.FPToSIOp)):
            self.assign(op, f"({c_type(op.result.type)}){e(op.input)}")
        elif isinstance(op, mathd.ExpOp):
            self.assign(op, f"{sp.exp}({e(op.operand)})")
        elif isinstance(op, mathd.TanhOp):
            self.assign(op, f"{sp.tanh}({e(op.operand)})")
        elif isinstance(op, memref.LoadOp):
            self.assign(op, self.index(op.memref, op.indices))
        elif isinstance(op, memref.StoreOp):
            self.line(f"{self.index(op.memref, op.indices)} = {e(op.value)};")
        elif isinstance(op, arith.MinSIOp):
            self.assign(op, f"min({e(op.lhs)}, {e(op.rhs)})")
        elif isinstance(op, vector.ExtractOp) and len(op.static_position) == 1 and not op.dynamic_position:
            self.assign(op, f"{e(op.vector)}.{'xyzw'[op.static_position.get_values()[0]]}")
        elif isinstance(op, vector.LoadOp):
            self.assign(op, sp.vload.format(space=self.space(op.base), addr="&" + self.index(op.base, op.indices)))
        elif isinstance(op, vector.StoreOp):
            self.line(sp.vstore.format(space=self.space(op.base), value=e(op.vector),
                                       addr="&" + self.index(op.base, op.indices)))
        elif isinstance(op, memref.AllocaOp):
            t = op.memref.type
            size = 1
            for d in t.get_shape():
                size *= d
            space = t.memory_space
            if space not in (SHARED, LOCAL):
                raise DiagnosticException(f"memref.alloca in a kernel must be shared or local, got {t}")
            # vector copies need 16-byte alignment; arrays of other sizes never get them
            decl = sp.shared_array if space == SHARED else sp.local_array if size % 4 == 0 else "{type} {name}[{size}];"
            self.line(decl.format(type=c_type(t.element_type), name=self.name(op.memref), size=size))
        elif isinstance(op, gpu.ThreadIdOp):
            self.assign(op, sp.thread_id.format(d=sp.dims["xyz".index(op.dimension.data.value)]))
        elif isinstance(op, gpu.BlockIdOp):
            self.assign(op, sp.block_id.format(d=sp.dims["xyz".index(op.dimension.data.value)]))
        elif isinstance(op, gpu.BarrierOp):
            fence = op.attributes.get("sched.fence")
            self.line(sp.global_barrier if fence is not None and fence.data == "global" else sp.barrier)
        elif isinstance(op, scf.ForOp):
            self.for_loop(op)
        elif isinstance(op, scf.IfOp):
            self.if_op(op)
        else:
            raise DiagnosticException(f"the C printer cannot print {op.name}")

    def for_loop(self, op: scf.ForOp) -> None:
        iv = op.body.block.args[0]
        if "sched.unroll" in op.attributes or "sched.vectorize" in op.attributes:
            self.line("#pragma unroll")
        v = self.name(iv)
        self.line(f"for (int {v} = {self.expr(op.lb)}; {v} < {self.expr(op.ub)}; {v} += {self.expr(op.step)}) {{")
        self.nested(op.body.block)
        self.line("}")

    def if_op(self, op: scf.IfOp) -> None:
        for r in op.results:
            self.line(f"{c_type(r.type)} {self.name(r)};")
        self.line(f"if ({self.expr(op.cond)}) {{")
        self.branch(op, op.true_region.block)
        if op.false_region.blocks and (len(op.results) or len(op.false_region.block.ops) > 1):
            self.line("} else {")
            self.branch(op, op.false_region.block)
        self.line("}")

    def branch(self, op: scf.IfOp, block: Block) -> None:
        self.nested(block)
        y = block.last_op
        self.indent += 1
        for r, v in zip(op.results, y.operands):
            self.line(f"{self.name(r)} = {self.expr(v)};")
        self.indent -= 1

    def nested(self, block: Block) -> None:
        self.indent += 1
        self.block(block)
        self.indent -= 1


def print_kernels(module: ModuleOp, sp: Spelling, out: IO[str]) -> None:
    kmods = [op for op in module.ops if isinstance(op, gpu.ModuleOp)]
    if not kmods:
        raise DiagnosticException("no gpu.module to print: run the lowering pipeline first "
                                  "(tensorop-to-loops,apply-schedule,loops-to-gpu)")
    plan = host_plan(module)
    blocks = {ln.kernel: ln.block for ln in plan.launches}
    out.write(plan.describe() + "\n")
    out.write(sp.prelude)
    for kmod in kmods:
        for fn in kmod.body.block.ops:
            if isinstance(fn, gpu.FuncOp):
                KernelPrinter(sp, out).kernel(fn, blocks.get(fn.sym_name.data, (1, 1, 1)))
    if sp.prelude:
        out.write("}\n")


@dataclass(frozen=True)
class OpenCLTarget(Target):
    name = "opencl"

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        print_kernels(module, OPENCL, output)


@dataclass(frozen=True)
class CudaTarget(Target):
    name = "cuda"

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        print_kernels(module, CUDA, output)
