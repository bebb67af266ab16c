"""Pinning: ``load(path, sha256=...)`` runs a library only if its contents
are the ones the caller vetted.

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

from .._errors import PinMismatchError
from .elf import open_regular
from .library import Library

__all__ = ["Identity", "check_pin", "identity", "pinned_library", "same_file"]

Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _expected(sha256: object) -> str:
    if not isinstance(sha256, str) or not _HEX.fullmatch(sha256.removeprefix("sha256:")):
        raise ValueError(f"sha256 must be 64 hex digits (the SHA-256 of the file, as sha256sum prints it), "
                         f"got {sha256!r}")
    return sha256.removeprefix("sha256:").lower()


def check_pin(path: str, sha256: object) -> Identity:
    """Raise PinMismatchError unless the file at path has this SHA-256 (hex,
    optionally prefixed "sha256:"); return the identity of the file hashed.
    A bare name is refused: the loader would choose the file."""
    expected = _expected(sha256)
    if os.sep not in path:
        raise ValueError(f"sha256 pins a file: give {path!r} as a path (./{path} or a full path), not a bare name the "
                         "loader looks up")
    digest = hashlib.sha256()
    with open_regular(path) as f:
        st = os.fstat(f.fileno())
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    found = digest.hexdigest()
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


def pinned_library(path: str | os.PathLike[str], sha256: str | None) -> Library:
    """Library(path), its hash checked first when sha256 is given."""
    if sha256 is None:
        return Library(path)
    given = os.fspath(path)
    given = os.path.abspath(given) if os.sep in given else given
    checked = check_pin(given, sha256)
    library = Library(given)
    same_file(library.path, checked)
    return library
