"""ld.so's cache (/etc/ld.so.cache), read as ``ldconfig -p`` lists it, and
whether a file is one the dynamic loader would take here: for ``Library("z")``
and for the scan's dependency search, without running ldconfig."""

from __future__ import annotations

import functools
import os
import struct

from .elf import file_machine, host_machine

__all__ = ["LD_CACHE", "ld_cache", "usable", "versioned"]

LD_CACHE = "/etc/ld.so.cache"


def versioned(file_name: str) -> str | None:
    """The library ld.so's cache has for ``libX.so`` when that unversioned
    name (a development link) is not installed: the first usable
    ``libX.so.N``, as ldconfig -p lists it. For Library("z"), without
    running ldconfig or a compiler as ctypes.util.find_library does."""
    prefix = file_name + "."
    for key, paths in ld_cache().items():
        if key.startswith(prefix):
            for candidate in paths:
                if usable(candidate):
                    return key
    return None


def usable(path: str) -> bool:
    """A file the loader would take: ELF, this process's word size and machine."""
    try:
        found = file_machine(path) if os.path.isfile(path) else None
    except OSError:
        return False
    if found is None:
        return False
    machine, bits, _ = found
    expected = host_machine()
    return bits == struct.calcsize("P") * 8 and (expected is None or machine == expected)


_CACHE_MAGIC = b"glibc-ld.so.cache1.1"  # the format glibc writes since 2.32 (before, after an older one)
_CACHE_HEADER = struct.Struct("=20sII4xI12x")  # magic, nlibs, len_strings, flags+pad, extension_offset
_CACHE_ENTRY = struct.Struct("=iIIIQ")  # flags, key, value, osversion, hwcap


def ld_cache() -> dict[str, tuple[str, ...]]:
    """/etc/ld.so.cache as ldconfig -p lists it: file name to paths, in the
    cache's order. Empty when it is missing or in a format not known here."""
    try:
        st = os.stat(LD_CACHE)
    except OSError:
        return {}
    return _read_ld_cache(LD_CACHE, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def _read_ld_cache(path: str, _mtime_ns: int, _size: int) -> dict[str, tuple[str, ...]]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    base = data.find(_CACHE_MAGIC)  # string offsets count from the new format's header
    if base < 0 or len(data) < base + _CACHE_HEADER.size:
        return {}
    _, count, _, _ = _CACHE_HEADER.unpack_from(data, base)

    def string(at: int) -> str:
        end = data.find(b"\0", base + at)
        return data[base + at:end].decode("utf-8", "replace") if end >= 0 else ""

    entries: dict[str, list[str]] = {}
    start = base + _CACHE_HEADER.size
    for index in range(min(count, (len(data) - start) // _CACHE_ENTRY.size)):
        _, key, value, _, _ = _CACHE_ENTRY.unpack_from(data, start + index * _CACHE_ENTRY.size)
        entries.setdefault(string(key), []).append(string(value))
    return {name: tuple(paths) for name, paths in entries.items()}
