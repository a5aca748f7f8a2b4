"""The `memspace` dialect: a GPU address-space attribute for memref types.

`memref<16x8xf32, #memspace.addr<shared>>` is shared by the threads of a block (OpenCL
`__local`, CUDA `__shared__`); `#memspace.addr<local>` is private to a thread (registers).
A memref without it lives in global memory."""

from __future__ import annotations

from xdsl.dialects.utils import EnumAttribute
from xdsl.ir import Dialect, SpacedOpaqueSyntaxAttribute
from xdsl.irdl import irdl_attr_definition
from xdsl.utils.str_enum import StrEnum


class AddressSpace(StrEnum):
    SHARED = "shared"
    LOCAL = "local"


@irdl_attr_definition
class AddressSpaceAttr(EnumAttribute[AddressSpace], SpacedOpaqueSyntaxAttribute):
    name = "memspace.addr"


SHARED = AddressSpaceAttr(AddressSpace.SHARED)
LOCAL = AddressSpaceAttr(AddressSpace.LOCAL)

MemSpaceDialect = Dialect("memspace", [], [AddressSpaceAttr])
