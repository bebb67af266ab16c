"""Values crossing the boundary in host callbacks, shared by the plugin
host and the interface layer: the process-wide allocator pair and the
decoding of ferrule_value slots."""

from __future__ import annotations

from typing import Any

from ._ffi import ffi, libc
from ._signature import AbiType

__all__ = ["_alloc_cb", "_free_cb", "_give_bytes", "_int_of", "_store_scalar", "_value_of"]

# The allocator pair of the host table, one for the process: memory handed
# to a plugin may be released after the instance that made it is gone.
_alloc_cb = ffi.callback("void *(*)(size_t)", lambda size: libc.malloc(max(size, 1)))
_free_cb = ffi.callback("void(*)(void *, size_t)", lambda ptr, _size: libc.free(ptr))


def _value_of(abi_type: AbiType, value: Any) -> Any:
    """A value the plugin passes to a host function, as Python sees it."""
    if abi_type.bits:
        return _int_of(abi_type, value.u64)
    kind = abi_type.name
    if kind == "bool":
        return value.u64 != 0
    if kind in ("f32", "f64"):
        return getattr(value, kind)
    ptr, length = value.bytes.ptr, value.bytes.len
    if ptr == ffi.NULL and length:
        raise ValueError("the plugin passed a NULL pointer with a non-zero length")
    data = ffi.unpack(ffi.cast("const char *", ptr), length) if length else b""
    return data if kind == "bytes" else data.decode("utf-8")


def _int_of(abi_type: AbiType, raw: int) -> int:
    raw &= (1 << abi_type.bits) - 1
    if abi_type.signed and raw >> (abi_type.bits - 1):
        raw -= 1 << abi_type.bits
    return raw


def _store_scalar(slot: Any, abi_type: AbiType, value: Any) -> None:
    if abi_type.name == "bool":
        slot.u64 = int(value)
    else:
        setattr(slot, abi_type.slot, value)



def _give_bytes(slot: Any, data: bytes) -> bool:
    """Hand data to a plugin as an owned copy in slot.bytes, released with
    the host's free. False (slot untouched) when malloc fails."""
    copy = libc.malloc(max(len(data), 1))
    if copy == ffi.NULL:
        return False
    ffi.memmove(copy, data, len(data))
    slot.bytes.ptr = copy
    slot.bytes.len = len(data)
    slot.bytes.release = _free_cb
    return True
