"""What a "missing dependency" rejection depended on, so that installing
the dependency ends it.

A library that failed to load for want of another library is rejected
because of the state of the places the dynamic loader searched, not of
the file itself. The cache keeps, with such a rejection, the modification
times of those places (its RUNPATH directories, LD_LIBRARY_PATH's, the
system library directories and ld.so's cache, which ldconfig rewrites) and
LD_LIBRARY_PATH itself; a scan reads the library again once any of them
changes (a file added to a directory changes the directory's time). A
dependency's own RUNPATH counts too: the missing library may be its need.
"""

from __future__ import annotations

import os
import sysconfig
from typing import NamedTuple

from .._loader.elf import dynamic

__all__ = ["Depends", "changed", "stamp", "watched"]

_ARCH = sysconfig.get_config_var("MULTIARCH") or ""
_SYSTEM = ("/etc/ld.so.cache", "/lib", "/usr/lib", "/lib64", "/usr/lib64",
           *((f"/lib/{_ARCH}", f"/usr/lib/{_ARCH}") if _ARCH else ()))


class Depends(NamedTuple):
    ld_library_path: str
    paths: tuple[tuple[str, int], ...]  # (path, st_mtime_ns; -1 when absent, -2 when it changed too late to trust)


def _ld_library_path() -> str:
    return os.environ.get("LD_LIBRARY_PATH", "")


_MAX_DEPTH = 4  # plugin -> dependency -> ...: far enough for real link chains


def watched(library: str) -> tuple[str, ...]:
    """The places whose change may let ``library`` load, each once: the
    RUNPATHs of the library and of the dependencies it finds outside the
    system directories (a missing library may be a dependency's), and
    LD_LIBRARY_PATH's and the system's directories."""
    env = tuple(os.path.abspath(d) for d in _ld_library_path().split(":") if d)
    places: list[str] = []
    visited: set[str] = set()

    def visit(path: str, depth: int) -> None:
        info = dynamic(path)
        places.extend(info.runpath)
        if depth >= _MAX_DEPTH:
            return
        for name in info.needed:
            for directory in (*info.runpath, *env):  # a system library's needs are system ones
                candidate = os.path.join(directory, name)
                if os.path.isfile(candidate):
                    if candidate not in visited:
                        visited.add(candidate)
                        visit(candidate, depth + 1)
                    break

    visit(library, 0)
    real = os.path.realpath(library)
    if os.path.dirname(real) != os.path.dirname(os.path.abspath(library)):
        visit(real, 0)  # $ORIGIN is the path as opened; watch the link's target's too
    return tuple(dict.fromkeys((*places, *env, *_SYSTEM)))


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


# File times come from a coarse clock: a change this close to (or after)
# the load attempt may not show in the time read afterwards.
_MARGIN_NS = 1_000_000_000


def stamp(paths: tuple[str, ...], since_ns: int | None = None) -> Depends:
    """The places' times now. One changed after ``since_ns`` (when the load
    was tried) less a margin is stamped -2, which never matches, so the
    next scan reads the library again rather than trust a racy stamp."""
    def one(path: str) -> int:
        mtime = _mtime(path)
        return -2 if since_ns is not None and mtime >= since_ns - _MARGIN_NS else mtime

    return Depends(_ld_library_path(), tuple((p, one(p)) for p in paths))


def changed(depends: Depends | None) -> bool:
    """Whether a rejection's dependencies may have appeared since."""
    if depends is None:
        return False
    return depends.ld_library_path != _ld_library_path() or any(_mtime(p) != t for p, t in depends.paths)
