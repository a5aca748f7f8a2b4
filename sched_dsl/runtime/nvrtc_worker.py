"""A compiler process for the CUDA runtime: reads (source, arch) requests on stdin and
answers each with NVRTC's cubin or its error message, as length-prefixed pickles.

NVRTC and NVIDIA's OpenCL compiler share global compiler state when loaded in one process
(once NVRTC has compiled, NVIDIA OpenCL builds fail with "Don't understand command line
argument"), so the CUDA runtime keeps NVRTC in this process of its own. It is a plain
subprocess rather than a multiprocessing worker, which would re-import the user's script.
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import BinaryIO

from sched_dsl.runtime.common import DeviceError, compile_error

_HEADER = struct.Struct("<Q")
SOURCE_NAME = "sched_dsl_kernels.cu"


def send(stream: BinaryIO, obj) -> None:
    data = pickle.dumps(obj)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO):
    """The next message, or None at the end of the stream."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    return pickle.loads(stream.read(size))


def load_nvrtc():
    """cuda-python's NVRTC binding, or None when it is not installed."""
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        try:
            from cuda import nvrtc  # cuda-python before 12.6
        except ImportError:
            return None
    return nvrtc


def cuda_include_dir() -> str | None:
    """The CUDA toolkit's include folder (for cuda_fp16.h / cuda_bf16.h), when there is one."""
    import os

    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.isfile(os.path.join(root, "include", "cuda_fp16.h")):
            return os.path.join(root, "include")
    return None


def compile_cubin(nvrtc, source: str, arch: str) -> bytes:
    ok = nvrtc.nvrtcResult.NVRTC_SUCCESS

    def call(result):
        err, *rest = result
        if err != ok:
            raise DeviceError(f"NVRTC failed: {nvrtc.nvrtcGetErrorString(err)[1].decode()}")
        return rest[0] if len(rest) == 1 else rest

    prog = call(nvrtc.nvrtcCreateProgram(source.encode(), SOURCE_NAME.encode(), 0, [], []))
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--generate-line-info", b"-std=c++17"]
        include = cuda_include_dir()
        if include is not None and "#include <cuda_" in source:
            opts.append(f"--include-path={include}".encode())
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        size = call(nvrtc.nvrtcGetProgramLogSize(prog))
        log = b" " * size
        call(nvrtc.nvrtcGetProgramLog(prog, log))
        if err != ok:
            raise compile_error("NVRTC", log.decode(errors="replace").rstrip("\x00"), source)
        size = call(nvrtc.nvrtcGetCUBINSize(prog))
        cubin = b" " * size
        call(nvrtc.nvrtcGetCUBIN(prog, cubin))
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def main() -> None:
    nvrtc = load_nvrtc()
    while (request := receive(sys.stdin.buffer)) is not None:
        source, arch = request
        if nvrtc is None:
            send(sys.stdout.buffer, ("error", "cuda-python's NVRTC binding is not installed"))
            continue
        try:
            send(sys.stdout.buffer, ("ok", compile_cubin(nvrtc, source, arch)))
        except DeviceError as e:
            send(sys.stdout.buffer, ("error", str(e)))


if __name__ == "__main__":
    main()
