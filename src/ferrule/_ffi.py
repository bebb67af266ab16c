"""The one cffi FFI instance: ABI v1 declarations plus the few libc calls the
loader needs (dlopen with explicit flags, dlsym, dlerror, malloc/free)."""

from __future__ import annotations

from typing import Any

import cffi

from ._cdef import CDEF

ffi = cffi.FFI()
ffi.cdef(CDEF)
ffi.cdef(
    """
    void *dlopen(const char *filename, int flags);
    void *dlsym(void *handle, const char *symbol);
    char *dlerror(void);
    int dlinfo(void *handle, int request, void *info);
    struct link_map { uintptr_t l_addr; char *l_name; void *l_ld; void *l_next; void *l_prev; };
    void *malloc(size_t size);
    void free(void *ptr);
    """
)

# The process's own namespace: libc (and libdl on old glibc) live there.
libc: Any = ffi.dlopen(None)
# Resolve every function now: cffi looks a name up with dlsym on first use,
# and that dlsym would clear the dlerror() text of a dlopen that just failed.
for _name in ("dlopen", "dlsym", "dlerror", "dlinfo", "malloc", "free"):
    getattr(libc, _name)


def last_dlerror() -> str:
    """The thread's pending dlerror() text, or a placeholder when there is none."""
    err = libc.dlerror()
    if err == ffi.NULL:
        return "(no message from the dynamic loader)"
    return str(ffi.string(err).decode("utf-8", "replace"))
