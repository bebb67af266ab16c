"""The cffi view of the ABI: the declarations generated from ferrule.h, and
the two libc calls behind the host's allocator (host->alloc and host->free)."""

from __future__ import annotations

from typing import Any

import cffi

from .cdef import CDEF

ffi = cffi.FFI()
ffi.cdef(CDEF)
ffi.cdef(
    """
    void *malloc(size_t size);
    void free(void *ptr);
    """
)
libc: Any = ffi.dlopen(None)
