"""What a sandbox allows (``Sandbox``, the caller's policy) and what was
actually in force for one child (``SandboxReport``, read off the child
before any plugin code ran)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["PROTECTIONS", "Sandbox", "SandboxReport"]

# The protections a caller may allow to be missing (Sandbox(optional=...)).
PROTECTIONS = {
    "namespaces": "new user, pid, mount, network, IPC and UTS namespaces (bubblewrap)",
    "seccomp": "the seccomp filter (libseccomp)",
    "no-new-privileges": "PR_SET_NO_NEW_PRIVS",
    "process-limit": "the bound on processes (a pids cgroup, or RLIMIT_NPROC for a non-root host)",
}

GIB = 1 << 30


def _paths(name: str, value: Iterable[str | os.PathLike[str]]) -> tuple[str, ...]:
    if isinstance(value, (str, os.PathLike)):
        raise TypeError(f"Sandbox({name}=...) takes a list of paths, got a single path {os.fspath(value)!r}: "
                        f"write {name}=[{os.fspath(value)!r}]")
    out = []
    for p in value:
        text = os.fspath(p)
        if not isinstance(text, str) or not text:
            raise TypeError(f"Sandbox({name}=...) takes paths, got {p!r}")
        out.append(os.path.realpath(text))  # what the kernel will bind
    return tuple(out)


def _bound(name: str, value: Any, kind: type, unit: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or not value > 0:
        raise ValueError(f"Sandbox({name}=...) must be a positive number of {unit} or None (no bound), got {value!r}")


@dataclass(frozen=True)
class Sandbox:
    """The policy for an isolated plugin that is not trusted
    (``load(path, isolated=True, sandbox=ferrule.Sandbox())``).

    The defaults are for hostile code: no network; no file system but the
    Python that runs the child, the system libraries (``/usr``) and the
    plugin's directory, all read-only, plus ``read`` (read-only) and
    ``write`` (read-write) paths the caller grants; an empty environment
    plus ``env``; no new privileges; every file descriptor closed but the
    channel's; ``memory`` bytes of address space, ``cpu_time`` seconds of
    CPU and ``processes`` processes and threads. Each is loosened here,
    explicitly. A protection the kernel cannot give fails the load with
    SandboxError unless it is named in ``optional`` (see PROTECTIONS).
    """

    network: bool = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    memory: int | None = GIB
    cpu_time: float | None = 600.0
    processes: int | None = 64
    optional: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.network, bool):
            raise TypeError(f"Sandbox(network=...) is True or False, got {self.network!r}")
        object.__setattr__(self, "read", _paths("read", self.read))
        object.__setattr__(self, "write", _paths("write", self.write))
        if not isinstance(self.env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k
                                                         and "\0" not in k + v for k, v in self.env.items()):
            raise TypeError("Sandbox(env=...) is a mapping of variable names (no '=' or NUL) to str values")
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        _bound("memory", self.memory, int, "bytes")
        _bound("cpu_time", self.cpu_time, float, "seconds")
        _bound("processes", self.processes, int, "processes")
        if self.processes is not None and self.processes < 8:
            raise ValueError(f"Sandbox(processes={self.processes}) is too few for the child's own threads: give 8 or more")
        optional = frozenset([self.optional] if isinstance(self.optional, str) else self.optional)
        unknown = sorted(optional - PROTECTIONS.keys())
        if unknown:
            raise ValueError(f"Sandbox(optional=...) names {', '.join(map(repr, unknown))}, not a protection; "
                             f"the protections are {', '.join(sorted(PROTECTIONS))}")
        object.__setattr__(self, "optional", optional)

    def __hash__(self) -> int:
        return hash((self.network, self.read, self.write, tuple(sorted(self.env.items())), self.memory,
                     self.cpu_time, self.processes, self.optional))


@dataclass(frozen=True)
class SandboxReport:
    """What was in force for an isolated plugin's current child
    (``plugin.sandbox``), read from the child's own /proc before the plugin
    was loaded, and checked against the host's."""

    namespaces: tuple[str, ...]  # the child's own, not the host's: "user", "pid", "mount", ...
    seccomp: bool
    no_new_privileges: bool
    network: bool  # granted
    read: tuple[str, ...]
    write: tuple[str, ...]
    memory: int | None
    cpu_time: float | None
    processes: int | None
    process_limit: str  # how processes are bounded: "pids cgroup", "RLIMIT_NPROC" or "none"
    missing: tuple[str, ...]  # optional protections the kernel could not give
    notes: tuple[str, ...]
    memory_limit: str = "RLIMIT_AS"  # how memory is bounded: "memory cgroup" (all processes together), "RLIMIT_AS" or "none"

    def __str__(self) -> str:
        def limit(value: Any, unit: str) -> str:
            return "none" if value is None else f"{value}{unit}"

        lines = [
            f"namespaces: {', '.join(self.namespaces) or 'none'}",
            f"seccomp filter: {'on' if self.seccomp else 'OFF'}; no new privileges: {'on' if self.no_new_privileges else 'OFF'}",
            f"network: {'granted' if self.network else 'none'}",
            f"files: read-only {', '.join(self.read) or '-'}; writable {', '.join(self.write) or '-'}",
            f"limits: memory {limit(self.memory, ' bytes')} ({self.memory_limit}), CPU {limit(self.cpu_time, ' s')}, "
            f"processes {limit(self.processes, '')} ({self.process_limit})",
        ]
        if self.missing:
            lines.append(f"missing (allowed by optional=): {', '.join(self.missing)}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)
