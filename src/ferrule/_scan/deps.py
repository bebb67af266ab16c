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

``locate`` searches those places in the loader's order, for ``ferrule
validate`` to tell a dependency that will be missing before a load fails.
"""

from __future__ import annotations

import os
import sysconfig
from typing import NamedTuple

from .._loader.elf import dynamic
from .._loader.ldcache import LD_CACHE, ld_cache, usable

__all__ = ["Depends", "Located", "changed", "locate", "stamp", "watched"]

_ARCH = sysconfig.get_config_var("MULTIARCH") or ""
_SYSTEM = (LD_CACHE, "/lib", "/usr/lib", "/lib64", "/usr/lib64",
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


class Located(NamedTuple):
    path: str  # the file the loader would open
    via: str  # "RPATH", "LD_LIBRARY_PATH", "RUNPATH", "ld.so.cache", "system directory" or "path"
    directory: str  # the searched directory it is in ("" for ld.so.cache and a NEEDED path)


def locate(name: str, *, rpath: tuple[str, ...] = (), runpath: tuple[str, ...] = ()) -> Located | None:
    """Where the dynamic loader would find the NEEDED entry ``name`` of a
    library whose DT_RPATH or DT_RUNPATH is given (directories, $ORIGIN
    expanded; a library has one of the two), or None where it would fail
    with "cannot open shared object file". The order is ld.so(8)'s: a name
    with a slash is a path; else DT_RPATH, LD_LIBRARY_PATH, DT_RUNPATH,
    /etc/ld.so.cache, the system directories. As the loader does, a file
    built for another word size or machine is passed over. Left out: the
    RPATH of the program that loads the library, and a library of that
    name already loaded (the loader reuses it without a search)."""
    if "/" in name:
        return Located(name, "path", "") if usable(name) else None
    env = tuple(d for d in _ld_library_path().replace(";", ":").split(":") if d)
    for via, dirs in (("RPATH", rpath), ("LD_LIBRARY_PATH", env), ("RUNPATH", runpath)):
        for directory in dirs:
            candidate = os.path.join(directory, name)
            if usable(candidate):
                return Located(candidate, via, directory)
    for candidate in ld_cache().get(name, ()):
        if usable(candidate):
            return Located(candidate, "ld.so.cache", "")
    for directory in _SYSTEM[1:]:
        candidate = os.path.join(directory, name)
        if usable(candidate):
            return Located(candidate, "system directory", directory)
    return None
