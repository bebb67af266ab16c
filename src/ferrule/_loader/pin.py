"""Trust checks before a plugin runs: permissions (like ssh's StrictModes:
no file or directory that others could write) and pinning
(``load(path, sha256=...)`` runs a library only if its contents are the
ones the caller vetted).

The hash is taken of the file as opened (a regular file only, read without
blocking), before the dynamic loader sees it, and the file's identity then
is kept: a loader that opens the path again checks it is still that file.
What this cannot stop is someone who can write the file or its directory
swapping it between the check and the loader's own open; keep plugin
directories writable by their owner only.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat

from .._errors import PinMismatchError, UnsafeFileError
from .elf import open_regular
from .library import Library, plugin_file

__all__ = ["Identity", "allowlist", "check_permissions", "check_pin", "file_sha256", "identity", "pin_of", "plugin_library",
           "read_allowlist", "resolved", "same_file"]

Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _expected(sha256: object) -> str:
    if not isinstance(sha256, str) or not _HEX.fullmatch(sha256.removeprefix("sha256:")):
        raise ValueError(f"sha256 must be 64 hex digits (the SHA-256 of the file, as sha256sum prints it), "
                         f"got {sha256!r}")
    return sha256.removeprefix("sha256:").lower()


def file_sha256(path: str) -> tuple[str, os.stat_result]:
    """The SHA-256 (hex) of a regular file's contents, and its stat as
    opened: the hash is of that file, whatever the path names later."""
    digest = hashlib.sha256()
    with open_regular(path) as f:
        st = os.fstat(f.fileno())
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest(), st


def allowlist(allow: object) -> frozenset[str]:
    """The SHA-256 digests of an allowlist: an iterable of hex digests, each
    optionally "sha256:"-prefixed (ValueError for anything else)."""
    if isinstance(allow, (str, bytes)) or not hasattr(allow, "__iter__"):
        raise TypeError(f"allow= takes an iterable of SHA-256 digests (hex), got {type(allow).__name__}: "
                        "for one, write allow=[digest]")
    return frozenset(_expected(item) for item in allow)


def read_allowlist(path: str) -> frozenset[str]:
    """An allowlist file: what ``sha256sum`` prints ("<digest>  <file>" a
    line; the file names are not used), or one digest a line. Blank lines
    and lines starting with # are skipped."""
    digests = []
    with open_regular(path) as f:
        for number, raw in enumerate(f.read(64 << 20).decode("utf-8", "replace").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            first = line.split()[0].removeprefix("\\")  # sha256sum escapes names with a leading backslash
            if not _HEX.fullmatch(first.removeprefix("sha256:")):
                raise ValueError(f"{path}, line {number}: {line[:80]!r} does not start with a SHA-256 digest (64 hex "
                                 "digits); write the file with sha256sum, or one digest a line")
            digests.append(first)
    return allowlist(digests)


def check_pin(path: str, sha256: object) -> Identity:
    """Raise PinMismatchError unless the file at path has this SHA-256 (hex,
    optionally prefixed "sha256:"); return the identity of the file hashed."""
    expected = _expected(sha256)
    found, st = file_sha256(path)
    if found != expected:
        raise PinMismatchError(
            f"{path} has SHA-256 {found}, not the {expected} it is pinned to: it is not the file that was vetted, so "
            "none of it ran; find out where this one came from, and pin its hash only once you trust it")
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def identity(path: str) -> Identity | None:
    """What tells a file from another put in its place; None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def same_file(path: str, pinned: Identity) -> None:
    """Raise PinMismatchError when path is no longer the file whose hash was checked."""
    if identity(path) != pinned:
        raise PinMismatchError(f"{path} changed while it was being loaded (another file, or new contents, after its "
                               "hash was checked): load it again")


def resolved(path: str | os.PathLike[str]) -> str:
    """The plugin file a name opens, as an absolute path (plugin_file)."""
    return plugin_file(path)


def _others(st: os.stat_result, me: int) -> str | None:
    """Who besides the owner may write, or whose file it is when not ours
    (``me``: this process's effective uid)."""
    if st.st_uid not in (0, me):
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & stat.S_IWOTH:
        return f"is writable by every user (mode {stat.S_IMODE(st.st_mode):04o})"
    if st.st_mode & stat.S_IWGRP:
        return f"is writable by its group (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def check_permissions(path: str) -> int | None:
    """Raise UnsafeFileError when someone other than this user (or root)
    could change the plugin file, or replace it in its directory. A sticky
    directory (like /tmp) is allowed: there only a file's owner may rename
    or remove it. Returns the file's st_mode (None when it could not be read)."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(path)
            st = os.stat(real)
            directory = os.path.dirname(real)
        else:
            # The directory that holds the entry, however the path names it
            # (stat follows its links): two system calls, not one per component.
            real, directory = path, os.path.dirname(path) or "."
        dst = os.stat(directory)
    except OSError:
        return None  # the loader reports a missing file in its own words
    me = os.geteuid()
    file_problem, dir_problem = _others(st, me), _others(dst, me)
    if file_problem is None and dir_problem is None:
        return st.st_mode  # the usual case: no message built
    if real is path:
        real = os.path.realpath(path)  # for the message
        directory = os.path.dirname(real)
    fix = "; if that is intended, pass strict_permissions=False"
    if file_problem is not None:
        raise UnsafeFileError(f"{real} {file_problem}, so others could put code into this process: none of it ran. "
                              f"Make it the user's own and writable only by them (chmod go-w){fix}")
    if not (dst.st_mode & stat.S_ISVTX and dst.st_uid in (0, me)):
        raise UnsafeFileError(f"the directory of {real}, {directory}, {dir_problem}, so others could replace the "
                              f"plugin: none of it ran. Move it to a directory only its owner can write (or chmod "
                              f"go-w {directory}){fix}")
    return st.st_mode


def pin_of(path: object, sha256: str | None) -> str | None:
    """The pin a load uses: ``sha256`` if given, else the SHA-256 a path-like
    object carries (a PluginInfo from a scan: what was scanned is what runs)."""
    if sha256 is None and isinstance(path, os.PathLike):
        carried = getattr(path, "sha256", None)
        if isinstance(carried, str) and carried:
            return carried
    return sha256


def plugin_library(path: str | os.PathLike[str], sha256: str | None, strict_permissions: bool = True) -> Library:
    """Library(path) for a plugin, after the trust checks: the file's
    permissions (unless strict_permissions is False) and its hash (when
    sha256 is given), both before any of it runs."""
    given = resolved(path)
    mode = check_permissions(given) if strict_permissions else None
    sha256 = pin_of(path, sha256)
    checked = None if sha256 is None else check_pin(given, sha256)
    library = Library._of_file(given, mode)
    if checked is not None:
        same_file(library.path, checked)
    return library
