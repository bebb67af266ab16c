"""PluginHost, the host: one application's plugins, the services it provides to them,
and the interfaces they implement for it and for each other."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, overload

from ._call.runner import Runner
from ._interfaces.instances import Implementation, named, proxy_class
from ._interfaces.services import Services
from ._isolation.plugin import IsolatedPlugin
from ._loader.pin import plugin_library
from ._sandbox import Sandbox
from .idl import spec
from ._plugin.plugin import Plugin

__all__ = ["PluginHost"]

P = TypeVar("P")


class PluginHost:
    """The host side of host-defined interfaces.

    - ``provide(Interface, obj)`` offers a Python object as a service that
      plugins find with ``host->query`` (by id and revision);
    - ``load(path)`` loads a plugin that sees those services and the
      implementations other plugins of this host offer;
    - ``implementations(Interface)`` lists what the loaded plugins offer.

    ``async_workers`` bounds the threads that its in-process plugins'
    awaited calls (``await plugin.aio.f(...)``) run on; by default
    concurrent.futures' own bound.

    ``debug=True`` runs plugins on the checked Python call path and reports
    thread-contract violations as ``ThreadContractWarning`` (see
    docs/interfaces.md); it is slower, for development.
    """

    __module__ = "ferrule"

    def __init__(self, *, debug: bool = False, async_workers: int | None = None):
        self._services = Services(debug, Runner(async_workers))
        self._plugins: list[Plugin | IsolatedPlugin] = []
        self._kept = 0  # how many were open at the last pruning

    @property
    def debug(self) -> bool:
        return self._services.debug

    def provide(self, interface: Any, implementation: object) -> None:
        """Offer ``implementation`` (any object with the interface's methods)
        to plugins as ``interface``'s id and revision, replacing an earlier
        one. Its methods get Python values (memoryview for buffers, struct
        instances, handles) and return the declared result type; an exception
        becomes the failure message the plugin receives. Calls are serialised
        unless the interface is declared thread-safe."""
        self._services.provide(spec(interface), implementation)

    def withdraw(self, interface: Any) -> None:
        """Stop offering a service; objects already lent keep working."""
        self._services.withdraw(spec(interface))

    def service(self, interface: Any) -> Any | None:
        """The object provided for ``interface``, or None."""
        found = self._services.services.get(spec(interface).key)
        return found[1] if found is not None else None

    @overload
    def load(self, path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None,
             sha256: str | None = None, strict_permissions: bool = True, isolated: Literal[False] = False) -> Plugin: ...

    @overload
    def load(self, path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None,
             sha256: str | None = None, strict_permissions: bool = True, isolated: Literal[True],
             timeout: float | None = None, restart: bool = True, memory_limit: int | None = None,
             cpu_limit: float | None = None, sandbox: Sandbox | bool | None = None) -> IsolatedPlugin: ...

    def load(self, path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None,
             sha256: str | None = None, strict_permissions: bool = True, isolated: bool = False,
             **isolation: Any) -> Plugin | IsolatedPlugin:
        """Load a plugin into this host (see ``ferrule.load``, also for ``sha256``,
        ``strict_permissions``, ``isolated`` and its options such as ``sandbox``).

        An isolated plugin queries this host's Python services through its
        channel, and its implementations make instances in its child; other
        plugins are not lent its implementations, nor it theirs, across the
        process boundary."""
        if isolated:
            isolated_plugin = IsolatedPlugin(path, config=config, sha256=sha256, strict_permissions=strict_permissions,
                                             _services=self._services, **isolation)
            with self._services.lock:
                self._plugins.append(isolated_plugin)
                self._prune_now_and_then()
            return isolated_plugin
        if isolation:
            raise TypeError(f"load() got {', '.join(sorted(isolation))}: these apply only with isolated=True")
        plugin = Plugin(plugin_library(path, sha256, strict_permissions), config=config, _services=self._services)
        with self._services.lock:
            self._plugins.append(plugin)
            self._services.plugins.append(plugin._core)
            self._prune_now_and_then()
        return plugin

    @property
    def plugins(self) -> tuple[Plugin | IsolatedPlugin, ...]:
        """The plugins loaded through this host that are not closed."""
        with self._services.lock:
            self._prune()
            return tuple(self._plugins)

    def _prune(self) -> None:
        self._plugins = [p for p in self._plugins if not p.closed]
        self._services.plugins = [p._core for p in self._plugins if isinstance(p, Plugin)]
        self._kept = len(self._plugins)

    def _prune_now_and_then(self) -> None:
        # Closed plugins are dropped whenever the list has doubled since the
        # last time: a host that loads and closes plugins for ever stays the
        # same size, at a constant cost per load.
        if len(self._plugins) > 2 * self._kept + 16:
            self._prune()

    def implementations(self, interface: type[P]) -> list[Implementation[P]]:
        """Every implementation of ``interface`` among the loaded plugins, in
        load order. Raises InterfaceMismatchError for one generated from
        another layout."""
        proxy_class(interface)
        found: list[Implementation[P]] = []
        for plugin in self.plugins:
            found.extend(plugin.implementations(interface))
        return found

    def create(self, interface: type[P], name: str | None = None) -> P | None:
        """An instance of the first implementation of ``interface`` (called
        ``name``, if given) among the loaded plugins, or None when none has it."""
        impl = named(self.implementations(interface), name)
        return impl.create() if impl is not None else None

    def __repr__(self) -> str:
        services = ", ".join(f"{k[0]}/{k[1]}" for k in self._services.services)
        return f"<ferrule.PluginHost plugins={[p.id for p in self.plugins]} services=[{services}]>"
