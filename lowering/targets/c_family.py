"""One printer for OpenCL C and CUDA C: the gpu.module of a lowered module as kernel text.

The two languages differ only in the spellings collected in `Spelling`; everything else
(statements, expressions, indexing, names) is shared. Every identifier comes from
`c_name`, so no name in the IR can put text of its own into a kernel.

A loop marked `sched.vectorize` runs its iterations as one vector (floatN) where it can
(`vector_plan`): its extent is a vector width of the target (OpenCL 2, 4, 8, 16; CUDA 2, 4),
its body is straight-line float arithmetic, and each buffer access either does not move with
the loop (a scalar, broadcast) or moves by one element of its last dimension per iteration
(a vector load or store). A vector access whose address is proven a multiple of the vector's
size (the buffer's alignment, and the index's known divisors) is a floatN pointer access;
otherwise OpenCL uses vloadN/vstoreN, and CUDA, which has no unaligned vector access, keeps
the loop. A loop that stays a loop is unrolled, with a comment in the text and a
`VectorizeRemark` warning saying why.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from io import StringIO
from typing import IO

from xdsl.context import Context
from xdsl.dialects import arith, gpu
from xdsl.dialects import math as mathd
from xdsl.dialects import memref, scf, vector
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
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

from sched_dsl.dialects import tensorcore as tc
from sched_dsl.dialects.memspace import LOCAL, SHARED
from sched_dsl.lowering.emit import const_value, known_divisor
from sched_dsl.lowering.host_plan import STATIC_SHARED_BYTES, buffer_alignment, c_name, host_plan, shared_layout
from sched_dsl.lowering.pool_scatter import ATOMIC_ADDF, ATOMIC_MAXIMUMF, NONNEGATIVE


class VectorizeRemark(UserWarning):
    """A loop marked sched.vectorize that is printed as an unrolled loop, and why."""


@dataclass(frozen=True)
class Spelling:
    prelude: str
    kernel: str  # before the kernel's name; {threads} is the block size
    global_ptr: str  # a global buffer parameter; {type} (float or int), {name}
    shared_array: str  # a block-shared array {name} of {size} elements of {type}, {align}-byte aligned (16: vector loads)
    local_array: str  # a thread's own array of a multiple of 4 elements, also aligned
    thread_id: str  # {d} is 0, 1, 2 / x, y, z; {index} the index type
    block_id: str
    wide_index: str  # a 64-bit signed integer: the index type of kernels with large sizes
    wide_literal: str  # the suffix that gives an integer literal that type
    barrier: str
    global_barrier: str  # also orders global memory among the block's threads
    vload: str  # a float{w} read at the aligned address {addr}, in address space {space}
    vstore: str  # {value} written as a float{w} at {addr}
    vload_any: str | None  # a float{w} read at any float address; None: the target has none
    vstore_any: str | None
    vector_widths: tuple[int, ...]
    broadcast: str | None  # a float{w} of scalar {x}; None: vector arithmetic is written per component
    make_vector: str  # a float{w} of the components {parts}
    spaces: tuple[str, str, str]  # pointer qualifiers of global, shared and local (private) memory
    fmax: str
    fmin: str
    exp: str
    tanh: str
    inf: str
    dims: tuple[str, str, str]
    # f16 and bf16: the element types, {x} converted to and from float, a constant of bits
    # {bits}, and what the text needs before the kernels when it uses them
    half_types: tuple[str, str]  # (f16, bf16)
    to_float: tuple[str, str]
    from_float: tuple[str, str]
    half_bits: tuple[str, str]
    half_prelude: str
    # tensor cores (inline PTX, the same in both languages on NVIDIA): a 32-bit unsigned
    # type, the .shared address of the shared-memory pointer {ptr}, a global address for
    # cp.async, and a float's bits
    u32: str
    dynamic_shared: str | None  # the one dynamic shared array, where the language has one
    shared_address: str
    global_address: str
    float_bits: str
    # atomics on a float of global memory at {addr}: add {value}, and max of values >= 0 only
    # (a float's bits read as a signed int order as the floats do when both are >= 0)
    atomic_add: str
    atomic_max_nonnegative: str
    math_suffix: str = ""  # CUDA's float versions of the C math functions end in f (logf, ...)
    wgmma: bool = False  # Hopper's warpgroup mma (sm_90a): CUDA only, NVIDIA's OpenCL compiles for sm_90


OPENCL = Spelling(
    prelude="",
    kernel="__kernel __attribute__((reqd_work_group_size({bx}, {by}, {bz}))) void",
    global_ptr="__global {type}* restrict {name}",
    shared_array="__local {type} {name}[{size}] __attribute__((aligned({align})));",
    local_array="{type} {name}[{size}] __attribute__((aligned(16)));",
    thread_id="({index})get_local_id({d})",
    block_id="({index})get_group_id({d})",
    wide_index="long", wide_literal="L",
    barrier="barrier(CLK_LOCAL_MEM_FENCE);",
    global_barrier="barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);",
    # a float4 pointer, not vload4: vload4 promises only float alignment, so NVIDIA's
    # compiler splits it into four loads
    vload="*({space}const float{w}*)({addr})", vstore="*({space}float{w}*)({addr}) = {value};",
    vload_any="vload{w}(0, {addr})", vstore_any="vstore{w}({value}, 0, {addr});",
    vector_widths=(2, 4, 8, 16), broadcast="(float{w})({x})", make_vector="(float{w})({parts})",
    spaces=("__global ", "__local ", ""),
    fmax="fmax", fmin="fmin", exp="exp", tanh="tanh",
    inf="INFINITY",
    dims=("0", "1", "2"),
    # 16-bit values are kept as their bit patterns (ushort): f16 converts through
    # vload_half/vstore_half_rte, which need no cl_khr_fp16 (all arithmetic is in float)
    half_types=("ushort", "ushort"),
    to_float=("sd_f16_to_float({x})", "sd_bf16_to_float({x})"),
    from_float=("sd_float_to_f16({x})", "sd_float_to_bf16({x})"),
    half_bits=("((ushort){bits})", "((ushort){bits})"),
    u32="uint",
    dynamic_shared=None,
    # NVIDIA's OpenCL: a __local pointer is the address in the shared window (address space 3)
    shared_address="(uint)(size_t)({ptr})",
    global_address="(ulong)({ptr})",
    float_bits="as_uint({x})",
    # OpenCL 1.x has no float atomics: a compare-and-swap loop on the bits
    atomic_add="{{ volatile __global int* sd_p = (volatile __global int*)({addr}); int sd_seen, sd_old = *sd_p; "
               "do {{ sd_seen = sd_old; sd_old = atomic_cmpxchg(sd_p, sd_seen, as_int(as_float(sd_seen) + ({value}))); "
               "}} while (sd_old != sd_seen); }}",
    atomic_max_nonnegative="atomic_max((volatile __global int*)({addr}), as_int({value}));",
    half_prelude="""inline float sd_f16_to_float(ushort h) { return vload_half(0, (const __private half*)&h); }
inline ushort sd_float_to_f16(float f) { ushort h; vstore_half_rte(f, 0, (__private half*)&h); return h; }
inline float sd_bf16_to_float(ushort b) { return as_float((uint)b << 16); }
inline ushort sd_float_to_bf16(float f) {
  const uint u = as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);  /* NaN stays NaN */
  return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  /* round to nearest even */
}

""",
)

CUDA = Spelling(
    prelude='extern "C" {\n',
    kernel="__global__ void __launch_bounds__({threads})",
    global_ptr="{type}* __restrict__ {name}",
    shared_array="__shared__ __align__({align}) {type} {name}[{size}];",
    local_array="__align__(16) {type} {name}[{size}];",
    thread_id="({index})threadIdx.{d}",
    block_id="({index})blockIdx.{d}",
    wide_index="long long", wide_literal="LL",
    barrier="__syncthreads();",
    global_barrier="__syncthreads();",
    vload="*({space}const float{w}*)({addr})", vstore="*({space}float{w}*)({addr}) = {value};",
    vload_any=None, vstore_any=None,
    vector_widths=(2, 4), broadcast=None, make_vector="make_float{w}({parts})",
    spaces=("", "", ""),
    fmax="fmaxf", fmin="fminf", exp="expf", tanh="tanhf",
    inf="__int_as_float(0x7f800000)",
    dims=("x", "y", "z"),
    half_types=("__half", "__nv_bfloat16"),
    to_float=("__half2float({x})", "__bfloat162float({x})"),
    from_float=("__float2half_rn({x})", "__float2bfloat16_rn({x})"),
    half_bits=("__ushort_as_half((unsigned short){bits})", "__ushort_as_bfloat16((unsigned short){bits})"),
    half_prelude="#include <cuda_fp16.h>\n#include <cuda_bf16.h>\n",
    u32="unsigned",
    dynamic_shared="extern __shared__ __align__({align}) unsigned char v_dynamic_shared[];",
    shared_address="(unsigned)__cvta_generic_to_shared({ptr})",
    global_address="({ptr})",
    float_bits="__float_as_uint({x})",
    atomic_add="atomicAdd({addr}, {value});",
    atomic_max_nonnegative="atomicMax((int*)({addr}), __float_as_int({value}));",
    math_suffix="f",
    wgmma=True,
)

CMP = {"eq": "==", "ne": "!=", "slt": "<", "sle": "<=", "sgt": ">", "sge": ">=",
       "ult": "<", "ule": "<=", "ugt": ">", "uge": ">=", "oeq": "==", "one": "!=", "olt": "<",
       "ole": "<=", "ogt": ">", "oge": ">="}
INT_BINARY = {arith.AddiOp: "+", arith.SubiOp: "-", arith.MuliOp: "*", arith.DivUIOp: "/",
              arith.DivSIOp: "/", arith.RemUIOp: "%", arith.RemSIOp: "%", arith.AndIOp: "&&",
              arith.OrIOp: "||", arith.XOrIOp: "^"}
# the tc ops of Hopper's warpgroup mma and TMA copies, which only CUDA prints (Spelling.wgmma)
WGMMA_OPS = (tc.WgmmaOp, tc.WgmmaFenceOp, tc.WgmmaCommitOp, tc.WgmmaWaitOp, tc.ProxyFenceOp, tc.StorePairOp)
TMA_OPS = (tc.TmaLoadOp, tc.MbarrierInitOp, tc.MbarrierExpectOp, tc.MbarrierWaitOp)
HOPPER_OPS = WGMMA_OPS + TMA_OPS
FLOAT_BINARY = {arith.AddfOp: "+", arith.SubfOp: "-", arith.MulfOp: "*", arith.DivfOp: "/"}
# math ops printed as C math functions (CUDA adds Spelling.math_suffix)
MATH_CALLS = {mathd.LogOp: "log", mathd.SqrtOp: "sqrt", mathd.AbsFOp: "fabs", mathd.FloorOp: "floor",
              mathd.CeilOp: "ceil", mathd.ErfOp: "erf", mathd.PowFOp: "pow"}


# Index arithmetic is 32-bit (`int`, fast on GPUs) in kernels whose sizes, constants and
# thread counts all stay below this, else 64-bit. The margin keeps intermediate values (a
# split's last block overshooting its loop, a window reaching past a padded edge) in range.
WIDE_INDEX_FROM = 2**30


def is_half_type(t: Attribute) -> bool:
    return isinstance(t, (Float16Type, BFloat16Type))


def c_type(t: Attribute, index: str = "int", sp: Spelling | None = None) -> str:
    if isinstance(t, (Float16Type, BFloat16Type)) and sp is not None:
        return sp.half_types[isinstance(t, BFloat16Type)]
    if isinstance(t, IndexType):
        return index
    if isinstance(t, IntegerType) and t.width.data == 32:
        return "int"
    if isinstance(t, IntegerType) and t.width.data == 1:
        return "bool"
    if isinstance(t, IntegerType) and t.width.data == 64:  # mbarriers, tensor maps
        return sp.wide_index if sp is not None else "long long"
    if isinstance(t, Float32Type):
        return "float"
    if isinstance(t, VectorType) and isinstance(t.element_type, Float32Type) and t.get_shape() == (4,):
        return "float4"
    raise DiagnosticException(f"no C type for {t}")


def half_bits(v: float, t: Attribute) -> str:
    """The bit pattern of v in f16 or bf16 (rounded to nearest even), as hex."""
    import numpy as np

    if isinstance(t, BFloat16Type):
        import ml_dtypes
        bits = np.array(v, dtype=ml_dtypes.bfloat16).view(np.uint16)
    else:
        bits = np.array(v, dtype=np.float16).view(np.uint16)
    return f"0x{int(bits):04x}"


def uses_half(module: Operation) -> bool:
    for op in module.walk():
        for v in (*op.results, *(a for r in op.regions for b in r.blocks for a in b.args)):
            t = v.type.element_type if isinstance(v.type, MemRefType) else v.type
            if isinstance(t, (Float16Type, BFloat16Type)):
                return True
    return False


def float_literal(v: float, sp: Spelling) -> str:
    if math.isinf(v):
        return sp.inf if v > 0 else f"(-{sp.inf})"
    if math.isnan(v):
        raise DiagnosticException("NaN constant in a kernel")
    return f"{float(v)!r}f"


def needs_wide_index(fn: gpu.FuncOp, threads: int) -> bool:
    """Whether index values of kernel `fn`, launched with `threads` threads in all, can reach
    WIDE_INDEX_FROM: a buffer that large, an index constant that large, or that many threads."""
    if threads >= WIDE_INDEX_FROM:
        return True
    for v in [*fn.body.block.args, *(r for op in fn.walk() for r in op.results)]:
        if isinstance(v.type, MemRefType) and math.prod(v.type.get_shape()) >= WIDE_INDEX_FROM:
            return True
        if isinstance(v.type, IndexType) and isinstance(v.owner, arith.ConstantOp):
            if abs(v.owner.value.value.data) >= WIDE_INDEX_FROM:
                return True
    return False


class KernelPrinter:
    def __init__(self, sp: Spelling, out: IO[str]):
        self.sp, self.out = sp, out
        self.names: dict[SSAValue, str] = {}
        self.taken: set[str] = set()
        self.indent = 1
        self.index_type = "int"  # the C type of index values; kernel() picks it
        self.dynamic: dict[SSAValue, int] = {}  # shared buffers placed in dynamic shared memory

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
            if isinstance(attr, FloatAttr) and isinstance(attr.type, (Float16Type, BFloat16Type)):
                t = attr.type
                return self.sp.half_bits[isinstance(t, BFloat16Type)].format(bits=half_bits(attr.value.data, t))
            if isinstance(attr, FloatAttr):
                return float_literal(attr.value.data, self.sp)
            if isinstance(attr, IntegerAttr):
                if isinstance(attr.type, IntegerType) and attr.type.width.data == 1:
                    return "true" if attr.value.data else "false"
                if isinstance(attr.type, IndexType) and self.index_type != "int":
                    return f"{attr.value.data}{self.sp.wide_literal}"
                return str(attr.value.data)
        return self.name(v)

    def c_type(self, t: Attribute) -> str:
        return c_type(t, self.index_type, self.sp)

    def kernel(self, fn: gpu.FuncOp, block_size: tuple[int, int, int], grid: tuple[int, int, int]) -> None:
        sp = self.sp
        self.index_type = sp.wide_index if needs_wide_index(fn, math.prod(block_size) * math.prod(grid)) else "int"
        params = []
        for a in fn.body.block.args:
            if not isinstance(a.type, MemRefType):
                raise DiagnosticException(f"kernel {fn.sym_name.data}: argument of type {a.type}")
            params.append(sp.global_ptr.format(type=self.c_type(a.type.element_type), name=self.name(a)))
        bx, by, bz = block_size
        head = sp.kernel.format(threads=bx * by * bz, bx=bx, by=by, bz=bz)
        self.out.write(f"{head} {c_name(fn.sym_name.data, 'kernel')}({', '.join(params)}) {{\n")
        layout = shared_layout(fn)
        if sp.dynamic_shared is not None and layout["total"] > STATIC_SHARED_BYTES:
            self.dynamic = layout["offsets"]
            self.line(sp.dynamic_shared.format(align=layout["align"]))
        self.block(fn.body.block)
        self.out.write("}\n\n")

    def block(self, block: Block) -> None:
        for op in block.ops:
            self.op(op)

    def assign(self, op: Operation, text: str) -> None:
        r = op.results[0]
        self.line(f"const {self.c_type(r.type)} {self.name(r)} = {text};")

    def index(self, ref: SSAValue, indices, offsets: dict[int, str] | None = None) -> str:
        """ref[indices] flattened; `offsets` adds a C expression to some dimensions."""
        shape = ref.type.get_shape()
        flat = ""
        for k, (i, n) in enumerate(zip(indices, shape)):
            term = self.expr(i) if not offsets or k not in offsets else f"{self.expr(i)} + {offsets[k]}"
            flat = term if k == 0 else f"({flat}) * {n} + {term}"
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
            self.assign(op, arith_expr(op, e, sp))
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
            self.assign(op, f"({self.c_type(op.result.type)}){e(op.input)}")
        elif isinstance(op, arith.ExtFOp):
            if not isinstance(op.result.type, Float32Type):
                raise DiagnosticException(f"arith.extf to {op.result.type}: kernels compute in f32")
            self.assign(op, sp.to_float[isinstance(op.input.type, BFloat16Type)].format(x=e(op.input)))
        elif isinstance(op, arith.TruncFOp):
            if not isinstance(op.input.type, Float32Type):
                raise DiagnosticException(f"arith.truncf from {op.input.type}: kernels compute in f32")
            self.assign(op, sp.from_float[isinstance(op.result.type, BFloat16Type)].format(x=e(op.input)))
        elif isinstance(op, mathd.ExpOp):
            self.assign(op, f"{sp.exp}({e(op.operand)})")
        elif isinstance(op, mathd.TanhOp):
            self.assign(op, f"{sp.tanh}({e(op.operand)})")
        elif isinstance(op, memref.LoadOp):
            self.assign(op, self.index(op.memref, op.indices))
        elif isinstance(op, memref.StoreOp):
            self.line(f"{self.index(op.memref, op.indices)} = {e(op.value)};")
        elif isinstance(op, memref.AtomicRMWOp):
            self.atomic(op)
        elif isinstance(op, arith.MinSIOp):
            self.assign(op, f"min({e(op.lhs)}, {e(op.rhs)})")
        elif isinstance(op, vector.ExtractOp) and len(op.static_position) == 1 and not op.dynamic_position:
            self.assign(op, f"{e(op.vector)}.{'xyzw'[op.static_position.get_values()[0]]}")
        elif isinstance(op, vector.LoadOp):
            self.assign(op, sp.vload.format(w=4, space=self.space(op.base),
                                            addr="&" + self.index(op.base, op.indices)))
        elif isinstance(op, vector.StoreOp):
            self.line(sp.vstore.format(w=4, space=self.space(op.base), value=e(op.vector),
                                       addr="&" + self.index(op.base, op.indices)))
        elif isinstance(op, memref.AllocaOp):
            t = op.memref.type
            size = 1
            for d in t.get_shape():
                size *= d
            space = t.memory_space
            if space not in (SHARED, LOCAL):
                raise DiagnosticException(f"memref.alloca in a kernel must be shared or local, got {t}")
            if op.memref in self.dynamic:
                ctype = self.c_type(t.element_type)
                self.line(f"{ctype}* const {self.name(op.memref)} = ({ctype}*)(v_dynamic_shared + "
                          f"{self.dynamic[op.memref]});")
                return
            # vector copies need 16-byte alignment; arrays of other sizes never get them
            decl = sp.shared_array if space == SHARED else sp.local_array if size % 4 == 0 else "{type} {name}[{size}];"
            self.line(decl.format(type=self.c_type(t.element_type), name=self.name(op.memref), size=size,
                                  align=buffer_alignment(op)))
        elif isinstance(op, gpu.ThreadIdOp):
            self.assign(op, sp.thread_id.format(d=sp.dims["xyz".index(op.dimension.data.value)], index=self.index_type))
        elif isinstance(op, gpu.BlockIdOp):
            self.assign(op, sp.block_id.format(d=sp.dims["xyz".index(op.dimension.data.value)], index=self.index_type))
        elif isinstance(op, gpu.BarrierOp):
            fence = op.attributes.get("sched.fence")
            self.line(sp.global_barrier if fence is not None and fence.data == "global" else sp.barrier)
        elif op.dialect_name() == "tc":
            self.tensor_core(op)
        elif isinstance(op, scf.ForOp):
            self.for_loop(op)
        elif isinstance(op, scf.IfOp):
            self.if_op(op)
        else:
            raise DiagnosticException(f"the C printer cannot print {op.name}")

    def atomic(self, op: memref.AtomicRMWOp) -> None:
        """An atomic update of a float in global memory (its result unused): add, or the max
        of values known to be >= 0 (`sched.nonnegative`, pool_scatter)."""
        kind = op.kind.value.data
        t = op.memref.type
        if self.space(op.memref) != self.sp.spaces[0] or not isinstance(t.element_type, Float32Type) or op.result.uses:
            raise DiagnosticException(f"the C printer writes memref.atomic_rmw only on f32 global memory, its "
                                      f"result unused; got {t}")
        addr = "&" + self.index(op.memref, op.indices)
        if kind == ATOMIC_ADDF:
            self.line(self.sp.atomic_add.format(addr=addr, value=self.expr(op.value)))
        elif kind == ATOMIC_MAXIMUMF and NONNEGATIVE in op.attributes:
            self.line(self.sp.atomic_max_nonnegative.format(addr=addr, value=self.expr(op.value)))
        else:
            raise DiagnosticException(f"the C printer writes memref.atomic_rmw addf, and maximumf of values marked "
                                      f"{NONNEGATIVE}; got kind {kind}")

    # tensor cores: inline PTX (ldmatrix, mma.sync, cp.async), sm_80 and later
    def tensor_core(self, op: Operation) -> None:
        sp = self.sp
        if isinstance(op, HOPPER_OPS) and not sp.wgmma:
            raise DiagnosticException(f"{op.name} prints only as CUDA (Hopper's wgmma and TMA, sm_90a); on OpenCL "
                                      "tensorize with mma.m16n8k16 and cp.async copies")
        if isinstance(op, tc.LoadFragmentOp):
            self.fragment(op)
        elif isinstance(op, tc.MmaOp):
            t = op.a.type.element
            kind = "bf16" if isinstance(t, BFloat16Type) else "f16" if isinstance(t, Float16Type) else "tf32"
            acc = self.index(op.acc, op.indices)[:-1]  # "name[flat" : the lane's 4 results follow
            outs = ", ".join(f'"+f"({acc} + {q}])' for q in range(tc.ACCUMULATORS))
            fa, fb = self.name(op.a), self.name(op.b)
            na, nb = 4, 2
            first_b = nb * op.b_tile.value.data  # a pair of B tiles holds 4 registers
            regs_a = ",".join(f"%{4 + q}" for q in range(na))
            regs_b = ",".join(f"%{4 + na + q}" for q in range(nb))
            pairs = [(fa, fb)]
            if op.split:
                # 3xtf32: the small terms first, then the large one (fragment() split the operands),
                # summed from zero and added to the accumulator here: the tensor cores' own f32
                # additions round toward zero, which over a long k loop costs more than the split
                # gains; one addition a k step, rounded to nearest, does not
                pairs = [(f"{fa}_lo", fb), (fa, f"{fb}_lo"), (fa, fb)]
                self.line("{")
                self.line(f"float v_mma_sum[{tc.ACCUMULATORS}] = {{0.0f, 0.0f, 0.0f, 0.0f}};")
                sums = ", ".join(f'"+f"(v_mma_sum[{q}])' for q in range(tc.ACCUMULATORS))
            for ra, rb in pairs:
                ins = ", ".join([f'"r"({ra}[{q}])' for q in range(na)] +
                                [f'"r"({rb}[{first_b + q}])' for q in range(nb)])
                self.line(f'asm volatile("mma.sync.aligned.{op.intrinsic}.row.col.f32.{kind}.{kind}.f32 '
                          f'{{%0,%1,%2,%3}}, {{{regs_a}}}, {{{regs_b}}}, {{%0,%1,%2,%3}};\\n" : '
                          f'{sums if op.split else outs} : {ins});')
            if op.split:
                for q in range(tc.ACCUMULATORS):
                    self.line(f"{acc} + {q}] += v_mma_sum[{q}];")
                self.line("}")
        elif isinstance(op, tc.CopyAsyncOp):
            dst = sp.shared_address.format(ptr="&" + self.index(op.dst, op.dst_indices))
            src = sp.global_address.format(ptr="&" + self.index(op.src, op.src_indices))
            if op.valid is None:
                self.line(f'asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\\n" :: "r"({dst}), "l"({src}) '
                          ': "memory");')
            else:  # reads src-size bytes, 0 outside the tensor, and fills the rest of the 16 with zeros
                self.line(f'asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\\n" :: "r"({dst}), '
                          f'"l"({src}), "r"({self.expr(op.valid)} ? 16 : 0) : "memory");')
        elif isinstance(op, tc.WgmmaOp):
            self.wgmma(op)
        elif isinstance(op, tc.StorePairOp):
            bf16 = isinstance(op.out.type.element_type, BFloat16Type)
            pair, make = ("__nv_bfloat162", "__floats2bfloat162_rn") if bf16 else ("__half2", "__floats2half2_rn")
            self.line(f"*({pair}*)&{self.index(op.out, op.indices)} = {make}({self.expr(op.first)}, "
                      f"{self.expr(op.second)});")
        elif isinstance(op, TMA_OPS):
            self.tma(op)
        elif isinstance(op, WGMMA_OPS):  # the fences, the commit and the wait
            text = {tc.WgmmaFenceOp: "wgmma.fence.sync.aligned", tc.WgmmaCommitOp: "wgmma.commit_group.sync.aligned",
                    tc.ProxyFenceOp: "fence.proxy.async.shared::cta"}.get(type(op))
            if isinstance(op, tc.WgmmaWaitOp):
                text = f"wgmma.wait_group.sync.aligned {int(op.pending.value.data)}"
            self.line(f'asm volatile("{text};\\n" ::: "memory");')
        elif isinstance(op, tc.CopyCommitOp):
            self.line('asm volatile("cp.async.commit_group;\\n" ::: "memory");')
        elif isinstance(op, tc.CopyWaitOp):
            self.line(f'asm volatile("cp.async.wait_group {int(op.pending.value.data)};\\n" ::: "memory");')
        else:
            raise DiagnosticException(f"the C printer cannot print {op.name}")

    def swizzled_address(self, ref: SSAValue, origin) -> str:
        """The shared address of a tile's start at `origin` of a swizzled buffer
        (tc.swizzled_position): its first row, at its column span and its column there."""
        rows, cols = ref.type.get_shape()[-2:]
        r, c = self.expr(origin[-2]), self.expr(origin[-1])
        return (f"{self.sp.shared_address.format(ptr='&' + self.index(ref, origin))} + 2 * ({c} / {tc.SWIZZLE_SPAN} * "
                f"{rows * tc.SWIZZLE_SPAN} + {r} * {tc.SWIZZLE_SPAN} + {c} % {tc.SWIZZLE_SPAN} - {r} * {cols} - {c})")

    def wgmma_descriptor(self, ref: SSAValue, origin, leading: int) -> str:
        """The shared memory descriptor of the operand tile at `origin` of a swizzled buffer:
        its start address, `leading` the bytes between column spans (B; A's tiles lie in
        one span), 1024 between groups of 8 rows, 128-byte swizzling."""
        fixed = (leading >> 4) << 16 | (tc.SWIZZLE_ALIGN >> 4) << 32 | 1 << 62
        return f"((unsigned long long)((({self.swizzled_address(ref, origin)}) & 0x3FFFF) >> 4) | {fixed}ull)"

    def tma(self, op: Operation) -> None:
        """TMA copies and the mbarriers that say when they are in (PTX of sm_90)."""
        addr = self.sp.shared_address
        if isinstance(op, tc.MbarrierInitOp):
            for b in range(op.bars.type.get_shape()[0]):
                self.line(f'asm volatile("mbarrier.init.shared::cta.b64 [%0], {int(op.count.value.data)};\\n" :: '
                          f'"r"({addr.format(ptr=f"&{self.name(op.bars)}[{b}]")}) : "memory");')
            self.line('asm volatile("fence.mbarrier_init.release.cluster;\\n" ::: "memory");')
            return
        bar = addr.format(ptr="&" + self.index(op.bars, [op.bar]))
        if isinstance(op, tc.MbarrierExpectOp):
            self.line(f'asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], {int(op.bytes.value.data)};'
                      f'\\n" :: "r"({bar}) : "memory");')
        elif isinstance(op, tc.MbarrierWaitOp):
            self.line("{")
            self.line("unsigned sd_done;")
            self.line('do { asm volatile("{\\n.reg .pred p;\\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;'
                      '\\nselp.u32 %0, 1, 0, p;\\n}\\n" : "=r"(sd_done) : '
                      f'"r"({bar}), "r"((unsigned)({self.expr(op.parity)})) : "memory"); }} while (!sd_done);')
            self.line("}")
        else:  # coordinates innermost first
            n = len(op.src_indices)
            coords = ", ".join(f"%{2 + d}" for d in range(n))
            ins = ", ".join(f'"r"((int)({self.expr(v)}))' for v in reversed(op.src_indices))
            self.line(f'asm volatile("cp.async.bulk.tensor.{n}d.shared::cluster.global.mbarrier::complete_tx::bytes '
                      f'[%0], [%1, {{{coords}}}], [%{2 + n}];\\n" :: "r"({self.swizzled_address(op.dst, op.dst_indices)}), '
                      f'"l"({self.name(op.map)}), {ins}, "r"({bar}) : "memory");')

    def wgmma(self, op: tc.WgmmaOp) -> None:
        """wgmma.mma_async: A (K-major) and B (N-major, taken transposed) read by descriptor."""
        _, n, _ = op.shape()
        kind = "bf16" if isinstance(op.a.type.element_type, BFloat16Type) else "f16"
        acc = self.index(op.acc, op.acc_indices)[:-1]
        outs = ", ".join(f'"+f"({acc} + {q}])' for q in range(n // 2))
        regs = ",".join(f"%{q}" for q in range(n // 2))
        da = self.wgmma_descriptor(op.a, op.a_indices, 16)
        db = self.wgmma_descriptor(op.b, op.b_indices, op.b.type.get_shape()[-2] * 2 * tc.SWIZZLE_SPAN)
        r = n // 2
        self.line(f'asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{r + 2}, 0;\\n'
                  f'wgmma.mma_async.sync.aligned.{op.intrinsic.data}.f32.{kind}.{kind} {{{regs}}}, %{r}, %{r + 1}, '
                  f'p, 1, 1, 0, 1;\\n}}\\n" : {outs} : "l"({da}), "l"({db}), "r"(1));')

    @staticmethod
    def regs(frag: tc.LoadFragmentOp) -> int:
        """32-bit registers a lane holds of the fragment: A 4, B 2 a tile (in both mma shapes)."""
        return 4 if frag.role.data == "a" else 2 * frag.tiles.value.data

    def fragment(self, op: tc.LoadFragmentOp) -> None:
        """The lane's registers of an operand tile: ldmatrix from shared memory, which hands
        each lane the elements of the mma fragment layout (A row-major 16 x K; B stored
        K x N row-major, transposed on the way); tf32's B by two plain loads."""
        sp = self.sp
        name = self.name(op.result)
        n = self.regs(op)
        self.line(f"{sp.u32} {name}[{n}];")
        lane = self.expr(op.lane)
        d0, d1 = op.dims.get_values()
        half = is_half_type(op.buffer.type.element_type)
        outs = ", ".join(f'"=r"({name}[{q}])' for q in range(n))
        regs = ",".join(f"%{q}" for q in range(n))
        if op.role.data == "b" and not half:  # tf32 B, 8 x 8: k = t and t + 4, column g
            for q in range(2):
                elem = self.index(op.buffer, op.indices, {d0: f"{lane} % 4 + {4 * q}", d1: f"{lane} / 4"})
                self.line(f"{name}[{q}] = {sp.float_bits.format(x=elem)};")
            self.round_tf32(op)
            return
        if op.role.data == "a":
            # lanes 0-15 give rows 0-15 of the left 8 columns (16-bit) or 4 (f32), lanes 16-31 the right
            offsets = {d0: f"{lane} % 16", d1: f"{lane} / 16 * {8 if half else 4}"}
            shape = "x4"
        elif n == 4:  # two 16 x 8 tiles: lanes 16-31 give the rows of the right one
            offsets = {d0: f"{lane} % 16", d1: f"{lane} / 16 * 8"}
            shape = "x4.trans"
        else:
            offsets = {d0: f"{lane} % 16"}  # rows k = 0..15 of the 16 x 8 tile, transposed
            shape = "x2.trans"
        addr = sp.shared_address.format(ptr="&" + self.index(op.buffer, op.indices, offsets))
        # volatile keeps it after the barriers and copy waits; no memory clobber, as in CUTLASS, so
        # the compiler keeps the accumulators in registers around it
        self.line(f'asm volatile("ldmatrix.sync.aligned.m8n8.{shape}.shared.b16 {{{regs}}}, [%{n}];\\n" : {outs} '
                  f': "r"({addr}));')
        self.round_tf32(op)

    def round_tf32(self, op: tc.LoadFragmentOp) -> None:
        """An f32 fragment's registers rounded to TF32, to nearest (cvt.rna; the mma itself
        would drop the low bits, a bias that sums over k). For 3xtf32 mmas each register x
        becomes hi = tf32(x), and name_lo holds lo = tf32(x - hi)."""
        if is_half_type(op.buffer.type.element_type):
            return
        name, n = self.name(op.result), self.regs(op)
        if not any(isinstance(u.operation, tc.MmaOp) and u.operation.split for u in op.result.uses):
            for q in range(n):
                self.line(f'asm("cvt.rna.tf32.f32 %0, %1;" : "=r"({name}[{q}]) : "r"({name}[{q}]));')
            return
        self.line(f"{self.sp.u32} {name}_lo[{n}];")
        for q in range(n):
            # x is read before either output is written (an output may share its register)
            self.line(f'asm("{{ .reg .b32 h;\\n cvt.rna.tf32.f32 h, %2;\\n sub.f32 %1, %2, h;\\n '
                      f'cvt.rna.tf32.f32 %1, %1;\\n mov.b32 %0, h;\\n}}" : "=r"({name}[{q}]), "=r"({name}_lo[{q}]) '
                      f': "r"({name}[{q}]));')

    def for_loop(self, op: scf.ForOp) -> None:
        iv = op.body.block.args[0]
        if "sched.vectorize" in op.attributes:
            plan = vector_plan(op, self.sp)
            if isinstance(plan, VectorPlan):
                self.vector_loop(op, plan)
                return
            stage, axis = (op.attributes.get(k) for k in ("sched.stage", "sched.axis"))
            what = f"loop '{axis.data if axis else self.name(iv)}'" + (f" of stage '{stage.data}'" if stage else "")
            warnings.warn(f"{what} is not vectorized: {plan}; it is unrolled", VectorizeRemark, stacklevel=2)
            self.line(f"// not vectorized: {plan}")
        if "sched.unroll" in op.attributes or "sched.vectorize" in op.attributes:
            self.line("#pragma unroll")
        v = self.name(iv)
        self.line(f"for ({self.index_type} {v} = {self.expr(op.lb)}; {v} < {self.expr(op.ub)}; {v} += {self.expr(op.step)}) {{")
        self.nested(op.body.block)
        self.line("}")

    # -- a loop run as one vector (see vector_plan) -----------------------------------------
    def vector_loop(self, op: scf.ForOp, plan: VectorPlan) -> None:
        w, iv = plan.width, op.body.block.args[0]
        self.line(f"{{  // {self.name(iv)}: {w} iterations as one float{w}")
        self.indent += 1
        self.line(f"const {self.index_type} {self.name(iv)} = {self.expr(op.lb)};")
        for o in op.body.block.ops:
            if isinstance(o, memref.LoadOp) and o in plan.access:
                self.assign_vector(o, self.vector_access(o.memref, o.indices, plan.access[o], w), w)
            elif isinstance(o, memref.StoreOp) and o in plan.access:
                self.vector_store(o, plan, w)
            elif o.results and o.results[0] in plan.vectors:
                self.assign_vector(o, self.vector_expr(o, plan, w), w)
            else:
                self.op(o)
        self.indent -= 1
        self.line("}")

    def assign_vector(self, op: Operation, text: str, w: int) -> None:
        self.line(f"const float{w} {self.name(op.results[0])} = {text};")

    def vector_access(self, ref: SSAValue, indices, aligned: bool, w: int) -> str:
        addr = "&" + self.index(ref, indices)
        if aligned:
            return self.sp.vload.format(w=w, space=self.space(ref), addr=addr)
        return self.sp.vload_any.format(w=w, addr=addr)

    def vector_store(self, op: memref.StoreOp, plan: VectorPlan, w: int) -> None:
        value = self.vector_operand(op.value, plan, w)
        addr = "&" + self.index(op.memref, op.indices)
        if plan.access[op]:
            self.line(self.sp.vstore.format(w=w, space=self.space(op.memref), value=value, addr=addr))
        else:
            self.line(self.sp.vstore_any.format(w=w, value=value, addr=addr))

    def vector_operand(self, v: SSAValue, plan: VectorPlan, w: int) -> str:
        """`v` as a float{w}: a vector value by name, a scalar broadcast."""
        if v in plan.vectors:
            return self.expr(v)
        if self.sp.broadcast is not None:
            return self.sp.broadcast.format(w=w, x=self.expr(v))
        return self.sp.make_vector.format(w=w, parts=", ".join([self.expr(v)] * w))

    def vector_expr(self, op: Operation, plan: VectorPlan, w: int) -> str:
        """The float{w} an arithmetic op computes: in OpenCL C one vector expression, in CUDA
        (whose float2/float4 have no arithmetic) one expression per component."""
        sp = self.sp
        if sp.broadcast is not None:
            return arith_expr(op, lambda v: self.vector_operand(v, plan, w) if isinstance(v.type, Float32Type)
                              else self.expr(v), sp)
        parts = []
        for k in range(w):
            part = lambda v, k=k: f"{self.expr(v)}.{'xyzw'[k]}" if v in plan.vectors else self.expr(v)  # noqa: E731
            parts.append(arith_expr(op, part, sp))
        return sp.make_vector.format(w=w, parts=", ".join(parts))

    def if_op(self, op: scf.IfOp) -> None:
        for r in op.results:
            self.line(f"{self.c_type(r.type)} {self.name(r)};")
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


def nan_propagating(fn: str, a: SSAValue, b: SSAValue, operand) -> str:
    """fn(a, b) (fmax or fmin) with MLIR's maximumf/minimumf meaning, numpy's maximum/minimum:
    NaN when either operand is NaN, where C's fmax/fmin return the other operand. `x != x`
    holds for NaN alone; constants are never NaN (float_literal refuses it). The same text
    works on OpenCL vectors, whose `!=`, `||` and `?:` act per component."""
    x, y = operand(a), operand(b)
    call = f"{fn}({x}, {y})"
    maybe_nan = [t for v, t in ((a, x), (b, y)) if not isinstance(v.owner, arith.ConstantOp)]
    if len(maybe_nan) == 1:
        (z,) = maybe_nan
        return f"{z} != {z} ? {z} : {call}"
    if len(maybe_nan) == 2:
        return f"{x} != {x} || {y} != {y} ? {x} + {y} : {call}"
    return call


def arith_expr(op: Operation, operand, sp: Spelling) -> str:
    """The C expression of float arithmetic `op` (one of VECTOR_ARITH), its operands written
    by operand(value)."""
    t = type(op)
    if t in FLOAT_BINARY:
        return f"{operand(op.lhs)} {FLOAT_BINARY[t]} {operand(op.rhs)}"
    if isinstance(op, (arith.MaximumfOp, arith.MinimumfOp)):
        return nan_propagating(sp.fmax if isinstance(op, arith.MaximumfOp) else sp.fmin, op.lhs, op.rhs, operand)
    if isinstance(op, arith.NegfOp):
        return f"-{operand(op.operand)}"
    if isinstance(op, mathd.ExpOp):
        return f"{sp.exp}({operand(op.operand)})"
    if isinstance(op, mathd.TanhOp):
        return f"{sp.tanh}({operand(op.operand)})"
    assert isinstance(op, arith.SelectOp), op.name
    return f"{operand(op.cond)} ? {operand(op.lhs)} : {operand(op.rhs)}"


VECTOR_ARITH = (*FLOAT_BINARY, arith.MaximumfOp, arith.MinimumfOp, arith.NegfOp, mathd.ExpOp, mathd.TanhOp,
                arith.SelectOp)
ADDRESS_ARITH = (arith.AddiOp, arith.SubiOp, arith.MuliOp)


@dataclass
class VectorPlan:
    """How a loop runs as one vector: its width, the values that are vectors, and for each
    load and store that moves with the loop whether its address is aligned to the vector."""

    width: int
    vectors: set[SSAValue] = field(default_factory=set)
    access: dict[Operation, bool] = field(default_factory=dict)


def _coefficient(v: SSAValue, iv: SSAValue, moving: set[SSAValue]) -> int | None:
    """How far `v` moves per step of `iv` (0: not at all); None when not affine in it."""
    if v is iv:
        return 1
    if v not in moving:
        return 0
    op = v.owner
    if isinstance(op, (arith.AddiOp, arith.SubiOp)):
        a, b = _coefficient(op.lhs, iv, moving), _coefficient(op.rhs, iv, moving)
        if a is None or b is None:
            return None
        return a + b if isinstance(op, arith.AddiOp) else a - b
    if isinstance(op, arith.MuliOp):
        for x, y in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            c = const_value(y)
            if isinstance(c, int):
                a = _coefficient(x, iv, moving)
                return None if a is None else a * c
    return None


def _divisor(v: SSAValue, iv: SSAValue, moving: set[SSAValue]) -> int:
    """A number that `v` at the loop's first iteration is a multiple of (0: it is 0)."""
    if v is iv:
        return 0
    if v not in moving:
        return known_divisor(v) if const_value(v) != 0 else 0
    op = v.owner
    if isinstance(op, (arith.AddiOp, arith.SubiOp)):
        return math.gcd(_divisor(op.lhs, iv, moving), _divisor(op.rhs, iv, moving))
    assert isinstance(op, arith.MuliOp)
    return _divisor(op.lhs, iv, moving) * _divisor(op.rhs, iv, moving)


def _base_alignment(ref: SSAValue) -> int:
    """Bytes the start of buffer `ref` is aligned to, as the printer declares it (global
    buffers come from the runtimes' allocations, aligned to far more)."""
    t = ref.type
    if t.memory_space == SHARED:
        return 16
    if t.memory_space == LOCAL:
        return 16 if math.prod(t.get_shape()) % 4 == 0 else 4
    return 128


def vector_plan(loop: scf.ForOp, sp: Spelling) -> VectorPlan | str:
    """How `loop` (marked sched.vectorize) runs as one vector on target `sp`, or why it cannot."""
    lb, ub, step = (const_value(v) for v in (loop.lb, loop.ub, loop.step))
    if not all(isinstance(x, int) for x in (lb, ub, step)) or step != 1:
        return "its bounds are not constants with step 1"
    w = ub - lb
    if w not in sp.vector_widths:
        return f"its extent {w} is not a vector width of the target ({', '.join(map(str, sp.vector_widths))})"
    iv = loop.body.block.args[0]
    plan = VectorPlan(w)
    moving = {iv}  # values that change with the loop's variable
    for op in loop.body.block.ops:
        if isinstance(op, scf.YieldOp):
            continue
        if op.regions:
            return f"its body holds {op.name} (a guard: does the split factor divide the extent?)"
        if isinstance(op, (gpu.BarrierOp, memref.AllocaOp, vector.LoadOp, vector.StoreOp)):
            return f"its body holds {op.name}"
        uses = [v for v in op.operands if v in moving]
        if isinstance(op, (memref.LoadOp, memref.StoreOp)):
            ref = op.memref
            steps = [_coefficient(i, iv, moving) for i in op.indices]
            name = ref.name_hint or "a buffer"
            if None in steps:
                return f"an index of '{name}' is not an affine function of the loop variable"
            if isinstance(op, memref.StoreOp) and not any(steps):
                return f"every iteration writes the same element of '{name}' (a reduction along the loop)"
            if any(steps):
                if steps[:-1] != [0] * (len(steps) - 1) or steps[-1] != 1:
                    return (f"its accesses to '{name}' are not contiguous: they move by {steps} "
                            "(per dimension) per iteration, not by one element of the last dimension")
                if not isinstance(ref.type.element_type, Float32Type):
                    return f"'{name}' holds {ref.type.element_type}, not f32"
                shape = ref.type.get_shape()
                offset = 0
                for k, i in enumerate(op.indices):
                    offset = math.gcd(offset, _divisor(i, iv, moving) * math.prod(shape[k + 1:]))
                aligned = offset % w == 0 and _base_alignment(ref) % (4 * w) == 0
                if not aligned and sp.vload_any is None:
                    return (f"its accesses to '{name}' are not known to be aligned to {4 * w} bytes (the first "
                            f"iteration's element is a multiple of {offset or w}, not of {w})")
                plan.access[op] = aligned
                if isinstance(op, memref.LoadOp):
                    plan.vectors.add(op.res)
        elif uses and isinstance(op, ADDRESS_ARITH):
            moving.add(op.results[0])
        elif uses:
            guard = " (a guard: does the split factor divide the extent?)" if isinstance(op, arith.CmpiOp) else ""
            return f"the loop variable reaches {op.name}, not only the indices of loads and stores{guard}"
        elif isinstance(op, VECTOR_ARITH) and any(v in plan.vectors for v in op.operands):
            if isinstance(op, arith.SelectOp) and op.cond in plan.vectors:
                return "a select whose condition changes with the loop"
            plan.vectors.add(op.results[0])
        elif any(v in plan.vectors for v in op.operands):
            return f"{op.name} of values that change with the loop"
    # a buffer the loop writes is read and written at one place per iteration: no iteration
    # reads what another wrote, so all may load before any stores
    places: dict[SSAValue, set[tuple]] = {}
    for op in loop.body.block.ops:
        if isinstance(op, (memref.LoadOp, memref.StoreOp)):
            places.setdefault(op.memref, set()).add(tuple(op.indices))
    for op in loop.body.block.ops:
        if isinstance(op, memref.StoreOp) and len(places[op.memref]) > 1:
            return (f"it reads and writes '{op.memref.name_hint or 'a buffer'}' at different elements: an iteration "
                    "could read what another wrote")
    for op in loop.body.block.ops:  # an address is only used as an index
        for v in op.operands:
            if v in moving and v is not iv and not isinstance(op, (memref.LoadOp, memref.StoreOp, *ADDRESS_ARITH)):
                return f"the loop variable reaches {op.name}, not only the indices of loads and stores"
            if v in moving and isinstance(op, memref.StoreOp) and v is op.value:
                return "the loop variable is stored as a value"
    return plan


def kernel_texts(module: ModuleOp, sp: Spelling) -> list[tuple[str, str]]:
    """(C name, text) of every kernel of the lowered module, in order; each text is complete
    once wrapped in `sp.prelude` (and its closing brace): see `compile_unit`."""
    kmods = [op for op in module.ops if isinstance(op, gpu.ModuleOp)]
    if not kmods:
        raise DiagnosticException("no gpu.module to print: run the lowering pipeline first "
                                  "(tensorop-to-loops,apply-schedule,loops-to-gpu)")
    plan = host_plan(module)
    launches = {ln.kernel: ln for ln in plan.launches}
    out = []
    for kmod in kmods:
        for fn in kmod.body.block.ops:
            if isinstance(fn, gpu.FuncOp):
                text = StringIO()
                ln = launches.get(fn.sym_name.data)
                KernelPrinter(sp, text).kernel(fn, ln.block if ln else (1, 1, 1), ln.grid if ln else (1, 1, 1))
                out.append((c_name(fn.sym_name.data, "kernel"), text.getvalue()))
    return out


def half_prelude(sp: Spelling, text: str) -> str:
    """The f16/bf16 prelude (headers or conversion functions) when `text` uses them, else ""."""
    markers = [t for t in sp.half_types if t != "ushort"] + [f.split("(")[0] for f in sp.to_float + sp.from_float]
    return sp.half_prelude if any(m in text for m in markers) else ""


def compile_unit(sp: Spelling, text: str) -> str:
    """One kernel's text as a program of its own (kernels share nothing but the preludes)."""
    return half_prelude(sp, text) + sp.prelude + text + ("}\n" if sp.prelude else "")


def print_kernels(module: ModuleOp, sp: Spelling, out: IO[str]) -> None:
    texts = kernel_texts(module, sp)
    out.write(host_plan(module).describe() + "\n")
    if uses_half(module):
        out.write(sp.half_prelude)
    out.write(sp.prelude)
    for _, text in texts:
        out.write(text)
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
