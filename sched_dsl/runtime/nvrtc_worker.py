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

_HEADER = struct.Struct("<Q")


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


def main() -> None:
    from sched_dsl.runtime.common import DeviceError
    from sched_dsl.runtime.cuda import _nvrtc, _nvrtc_cubin

    nvrtc = _nvrtc()
    while (request := receive(sys.stdin.buffer)) is not None:
        source, arch = request
        if nvrtc is None:
            send(sys.stdout.buffer, ("error", "cuda-python's NVRTC binding is not installed"))
            continue
        try:
            send(sys.stdout.buffer, ("ok", _nvrtc_cubin(nvrtc, source, arch)))
        except DeviceError as e:
            send(sys.stdout.buffer, ("error", str(e)))


if __name__ == "__main__":
    main()
