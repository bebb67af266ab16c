"""The cffi path's marshal: Python values into ferrule_value slots and back,
and the host's allocator. The C accelerator does the same in C (_speedups.c).

Who allocates frees: text and bytes the host hands a plugin (a host
function's result, a failure message of host->call) are malloc'd copies with
``FREE`` as their release; what a plugin returns is copied once and given to
the plugin's own release.
"""

from __future__ import annotations

from typing import Any

from .._abi.ffi import ffi, libc
from .._abi.types import AbiType

__all__ = ["ALLOC", "FREE", "UNSET", "address_of", "give_bytes", "int_of", "scalar_of", "store_scalar", "value_of"]

# The allocator pair of every host table, one for the process: memory handed
# to a plugin may be released after the instance that made it is gone.
ALLOC = ffi.callback("void *(*)(size_t)", lambda size: libc.malloc(max(size, 1)))
FREE = ffi.callback("void(*)(void *, size_t)", lambda ptr, _size: libc.free(ptr))

# Put in a str or bytes result slot before a call: still there afterwards,
# the plugin returned OK without writing its result.
UNSET = ffi.new("char[1]")


def address_of(view: memoryview) -> int:
    """The address of a buffer's first byte."""
    return int(ffi.cast("uintptr_t", ffi.from_buffer(view)))


def scalar_of(abi_type: AbiType, value: Any) -> Any:
    """A bool or number in a slot (an argument or a result), as Python sees it."""
    kind = abi_type.kind
    if kind == "int":
        return int_of(abi_type, value.u64)
    if kind == "bool":
        return value.u64 != 0
    return getattr(value, abi_type.slot)


def value_of(abi_type: AbiType, value: Any) -> Any:
    """A value the plugin passes to the host (a host function's argument), as Python sees it."""
    kind = abi_type.kind
    if kind in ("int", "bool", "float"):
        return scalar_of(abi_type, value)
    ptr, length = value.bytes.ptr, value.bytes.len
    if ptr == ffi.NULL and length:
        raise ValueError("the plugin passed a NULL pointer with a non-zero length")
    data = ffi.unpack(ffi.cast("const char *", ptr), length) if length else b""
    return data if kind == "bytes" else data.decode("utf-8")


def int_of(abi_type: AbiType, raw: int) -> int:
    """The integer of abi_type in a slot's 64 bits (sign- or zero-extended)."""
    raw &= (1 << abi_type.bits) - 1
    if abi_type.signed and raw >> (abi_type.bits - 1):
        raw -= 1 << abi_type.bits
    return raw


def store_scalar(slot: Any, abi_type: AbiType, value: Any) -> None:
    """A checked number or bool into its slot member."""
    if abi_type.kind == "bool":
        slot.u64 = int(value)
    else:
        setattr(slot, abi_type.slot, value)


def store_borrowed(slot: Any, abi_type: AbiType, value: Any, keep: list[Any]) -> None:
    """A checked str, bytes-like or buffer into its slot, borrowed for the
    call: what must outlive the call goes into ``keep``."""
    if abi_type.slot == "buf":
        cdata = ffi.from_buffer("char[]", value, require_writable=abi_type.writable)
        slot.buf.ptr = cdata
        slot.buf.len = value.nbytes // value.itemsize
        keep.append(cdata)
    else:
        data = str.encode(value, "utf-8") if abi_type.kind == "str" else value
        cdata = ffi.from_buffer(data)  # bytes keep their trailing NUL
        slot.bytes.ptr = cdata
        slot.bytes.len = len(cdata)
        keep.append((data, cdata))


def release_borrowed(keep: list[Any]) -> None:
    """End what store_borrowed lent, once the call is over."""
    for item in keep:
        ffi.release(item[1] if isinstance(item, tuple) else item)
    keep.clear()


def give_bytes(slot: Any, data: bytes) -> bool:
    """Hand data to a plugin as an owned copy in slot.bytes, released with
    FREE. False (slot untouched) when malloc fails."""
    copy = libc.malloc(max(len(data), 1))
    if copy == ffi.NULL:
        return False
    ffi.memmove(copy, data, len(data))
    slot.bytes.ptr = copy
    slot.bytes.len = len(data)
    slot.bytes.release = FREE
    return True


def release_result(abi_type: AbiType | None, ret: Any) -> None:
    """Give a returned str or bytes back to the plugin's release, once."""
    if abi_type is not None and abi_type.slot == "bytes" and ret.bytes.release != ffi.NULL:
        ret.bytes.release(ffi.cast("void *", ret.bytes.ptr), ret.bytes.len)
