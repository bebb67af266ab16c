"""What a "missing dependency" rejection depended on, so that installing
the dependency ends it.

A library that failed to load for want of another library is rejected
because of the state of the places the dynamic loader searched, not of
the file itself. The cache keeps, with such a rejection, the modification
times of those places (its RUNPATH directories, LD_LIBRARY_PATH's, the
system library directories and ld.so's cache, which ldconfig rewrites) and
LD_LIBRARY_PATH itself; a scan reads the library again once any of them
changes (a file added to a directory changes the directory's time).
"""

from __future__ import annotations

import os
import sysconfig
from typing import NamedTuple

from .._loader.elf import runpath

__all__ = ["Depends", "changed", "stamp", "watched"]

_ARCH = sysconfig.get_config_var("MULTIARCH") or ""
_SYSTEM = ("/etc/ld.so.cache", "/lib", "/usr/lib", "/lib64", "/usr/lib64",
           *((f"/lib/{_ARCH}", f"/usr/lib/{_ARCH}") if _ARCH else ()))


class Depends(NamedTuple):
    ld_library_path: str
    paths: tuple[tuple[str, int], ...]  # (path, st_mtime_ns, or -1 when absent)


def _ld_library_path() -> str:
    return os.environ.get("LD_LIBRARY_PATH", "")


def watched(library: str) -> tuple[str, ...]:
    """The places whose change may let ``library`` load, each once."""
    env = tuple(os.path.abspath(d) for d in _ld_library_path().split(":") if d)
    return tuple(dict.fromkeys((*runpath(library), *env, *_SYSTEM)))


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def stamp(paths: tuple[str, ...]) -> Depends:
    return Depends(_ld_library_path(), tuple((p, _mtime(p)) for p in paths))


def changed(depends: Depends | None) -> bool:
    """Whether a rejection's dependencies may have appeared since."""
    if depends is None:
        return False
    return depends.ld_library_path != _ld_library_path() or any(_mtime(p) != t for p, t in depends.paths)
