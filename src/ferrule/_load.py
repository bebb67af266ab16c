"""The front door: ``load`` loads a plugin in process, or isolated in a
child process, behind one signature."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, overload

from ._isolation.plugin import IsolatedPlugin  # (its annotations must resolve: typing.get_type_hints(load))
from ._loader import Library
from ._loader.pin import plugin_library
from ._plugin.plugin import Plugin
from ._sandbox import Sandbox

__all__ = ["load"]


@overload
def load(path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None,
         isolated: Literal[False] = False, sha256: str | None = None, strict_permissions: bool = True) -> Plugin: ...


@overload
def load(path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None,
         isolated: Literal[True], sha256: str | None = None, strict_permissions: bool = True,
         timeout: float | None = None, restart: bool = True,
         memory_limit: int | None = None, cpu_limit: float | None = None,
         sandbox: Sandbox | bool | None = None) -> IsolatedPlugin: ...


def load(path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None, isolated: bool = False,
         sha256: str | None = None, strict_permissions: bool = True, **isolation: Any) -> Plugin | IsolatedPlugin:
    """Load the plugin at ``path``, check its descriptor and run its init.

    ``path`` is a path, or a bare name (``"libx.so"``, or ``"x"``) looked up
    in the ``FERRULE_PATH`` directories only: never on the system loader's
    path or in the current directory.

    ``config`` reaches the plugin's init as UTF-8 text; a mapping is sent as
    JSON. Raises a subclass of ferrule.FerruleError on any failure. The
    plugin gets a host of its own; load through a ``PluginHost`` to share
    services and interfaces between plugins.

    ``isolated=True`` runs the plugin in a child process behind the same
    API (see ``IsolatedPlugin``): a crash, hang or runaway allocation there
    becomes an exception here. Only then are ``timeout`` (seconds per call),
    ``restart`` (start a new child on the next call after a failure),
    ``memory_limit`` (bytes of address space) and ``cpu_limit`` (CPU
    seconds) accepted, and ``sandbox``: a ``ferrule.Sandbox`` (or True for
    its defaults) for a plugin that is not trusted (docs/isolation.md).

    ``sha256`` pins the file: unless its SHA-256 (hex, as ``sha256sum``
    prints it) is this one, load raises PinMismatchError before any of it
    runs, also when an isolated plugin restarts. A plugin file or directory
    that others than its owner could write (or that another user owns) is
    refused with UnsafeFileError, as ssh refuses such keys, unless
    ``strict_permissions=False``.
    """
    if isolated:
        return IsolatedPlugin(path, config=config, sha256=sha256, strict_permissions=strict_permissions, **isolation)
    if isolation:
        raise TypeError(f"load() got {', '.join(sorted(isolation))}: these apply only with isolated=True")
    return Plugin(plugin_library(path, sha256, strict_permissions), config=config)
