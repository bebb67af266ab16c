"""What a scan finds: PluginInfo, ScanProblem and ScanResult (public)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Literal

from .._abi.spec import PluginSpec

__all__ = ["PluginInfo", "ProblemKind", "ScanProblem", "ScanResult", "info"]

ProblemKind = Literal["rejected", "crashed", "hung"]


@dataclass(frozen=True)
class PluginInfo:
    """A plugin found by ``scan``: what its descriptor says.

    ``functions`` holds (name, signature) pairs, ``interfaces`` (interface
    id, revision, implementation name) triples, both in descriptor order.
    ``entry_point`` and ``distribution`` name the entry point and the
    installed distribution it came from (``discover``), None from ``scan``.
    ``sha256`` is the SHA-256 of the file whose descriptor was read. A
    PluginInfo is path-like: ``ferrule.load(info)`` loads its library, pinned
    to that hash (a file replaced since the scan raises PinMismatchError).
    """

    path: str
    id: str
    name: str
    version: str
    description: str
    license: str
    abi_version: tuple[int, int]
    functions: tuple[tuple[str, str], ...]
    interfaces: tuple[tuple[str, int, str], ...]
    entry_point: str | None = None
    distribution: str | None = None
    sha256: str | None = None  # of the file the descriptor was read from; load(info) pins it

    def __fspath__(self) -> str:
        return self.path


@dataclass(frozen=True)
class ScanProblem:
    """A library that ``scan`` could not list as a plugin.

    ``kind`` is "rejected" (not a library, or its descriptor failed a
    check; ``error`` is the exception class name), "crashed" (``error`` is
    the signal name, or "exit status N") or "hung" (``error`` is "timeout").
    Crashed and hung libraries are blocklisted until the file changes.
    """

    path: str
    kind: ProblemKind
    error: str
    message: str


@dataclass(frozen=True)
class ScanResult:
    """What ``scan`` found, each tuple sorted by path. ``directories`` are
    the directories that were listed, in search order."""

    plugins: tuple[PluginInfo, ...]
    problems: tuple[ScanProblem, ...]
    directories: tuple[str, ...]

    @property
    def rejected(self) -> tuple[ScanProblem, ...]:
        """Libraries that are not plugins, or whose descriptor failed a check."""
        return tuple(p for p in self.problems if p.kind == "rejected")

    @property
    def blocked(self) -> tuple[ScanProblem, ...]:
        """Libraries that crashed or hung the scan worker (the blocklist)."""
        return tuple(p for p in self.problems if p.kind != "rejected")


def info(spec: PluginSpec, sha256: str | None = None) -> PluginInfo:
    """The public view of a plugin spec."""
    made = object.__new__(PluginInfo)  # the fields at once: a frozen dataclass's __init__ sets them one by one
    made.__dict__.update(zip(_INFO_FIELDS, _SPEC_FIELDS(spec)), entry_point=None, distribution=None, sha256=sha256)
    return made


_INFO_FIELDS = ("path", "id", "name", "version", "description", "license", "abi_version", "functions", "interfaces")
_SPEC_FIELDS = operator.attrgetter("path", "id", "name", "version", "description", "license", "abi_version",
                                   "listing", "offer_listing")
