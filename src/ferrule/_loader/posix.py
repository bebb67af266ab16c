"""The raw loader on POSIX systems: dlopen, dlsym, dlerror and dlinfo through
cffi, nothing else (no dlclose: ferrule never unloads). ``library.py`` builds
the safe ``Library`` on it.

A Windows layer (LoadLibraryExW, GetProcAddress) would sit beside this file
with the same four functions; macOS uses this one (it has no dlinfo, so
``loaded_path`` answers None there).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import cffi

__all__ = ["last_error", "loaded_path", "open_library", "symbol"]

_ffi = cffi.FFI()
_ffi.cdef(
    """
    void *dlopen(const char *filename, int flags);
    void *dlsym(void *handle, const char *symbol);
    char *dlerror(void);
    int dlinfo(void *handle, int request, void *info);
    struct link_map { uintptr_t l_addr; char *l_name; void *l_ld; void *l_next; void *l_prev; };
    """
)
# The process's own namespace: libc (and libdl on old glibc) live there.
_libc: Any = _ffi.dlopen(None)
# Resolve every function now: cffi looks a name up with dlsym on first use,
# and that dlsym would clear the dlerror() text of a dlopen that just failed.
for _name in ("dlopen", "dlsym", "dlerror") + (("dlinfo",) if sys.platform.startswith("linux") else ()):
    getattr(_libc, _name)

_RTLD_DI_LINKMAP = 2
# dlerror() is per thread, but dlopen+dlerror must pair up: keep them together.
_lock = threading.Lock()

def last_error() -> str:
    """The thread's pending dlerror() text, or a placeholder when there is none."""
    err = _libc.dlerror()
    if err == _ffi.NULL:
        return "(no message from the dynamic loader)"
    return str(_ffi.string(err).decode("utf-8", "replace"))


def open_library(target: str) -> tuple[int, str | None]:
    """dlopen(target, RTLD_NOW | RTLD_LOCAL): (handle, None), or (0, the loader's message)."""
    with _lock:
        handle = _libc.dlopen(os.fsencode(target), os.RTLD_NOW | os.RTLD_LOCAL)
        if handle == _ffi.NULL:
            return 0, last_error()
    return int(_ffi.cast("uintptr_t", handle)), None


def symbol(handle: int, name: str) -> int:
    """The address of an exported symbol, 0 when there is none."""
    with _lock:
        _libc.dlerror()
        address = _libc.dlsym(_ffi.cast("void *", handle), name.encode())
    return int(_ffi.cast("uintptr_t", address))


def loaded_path(handle: int) -> str | None:
    """The file the loader mapped for handle (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    link_map = _ffi.new("struct link_map **")
    if _libc.dlinfo(_ffi.cast("void *", handle), _RTLD_DI_LINKMAP, link_map) != 0 or link_map[0] == _ffi.NULL:
        return None
    name = link_map[0].l_name
    return _ffi.string(name).decode(errors="replace") if name != _ffi.NULL else None
