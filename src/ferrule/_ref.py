"""``PluginRef``: a plugin named by what it is, not by a live object.

A loaded plugin is a library mapped into one process and the state its init
made there: it cannot be pickled. A PluginRef can: it holds the library's
content hash (which identifies the plugin, pins every load and names a
shipped copy), its config and how to load it (in process or isolated).
``ref.load()`` loads it once per process and hands the same plugin to every
later call, so a Dask task (``ferrule.dask``) or any other pickled job pays
for one load per worker process, not one per task.

On the loading side the library is looked for at the path the ref names (or
where the entry point is installed there), then in the directories that
``ferrule.dask.ship`` filled (``add_shipped_dir``); every candidate is
loaded pinned to the hash, so a file with other contents never runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import FerruleError, LibraryNotFoundError, PinMismatchError, UnsafeFileError
from ._isolation.plugin import IsolatedPlugin
from ._load import load
from ._loader.library import as_path
from ._loader.pin import allowlist, file_sha256, pin_of, resolved
from ._plugin.plugin import Plugin
from ._sandbox import Sandbox

__all__ = ["PluginRef", "add_shipped_dir", "shipped_dirs"]

ENTRY_POINT_GROUP = "ferrule.plugins"


@dataclass(frozen=True, init=False)
class PluginRef:
    """A picklable reference to a plugin: where its library is, its SHA-256,
    its config and its mode. ``load()`` returns this process's one loaded
    plugin for it, so pickle the ref, never the plugin.

    Give ``path`` (made absolute here, or a bare name looked up in
    FERRULE_PATH) or ``entry_point`` (a name in the ``ferrule.plugins``
    group, looked up where the ref is made and again where it is loaded).
    ``sha256`` defaults to the hash of the file as it is now; every load is
    pinned to it. ``config`` (text, or a mapping sent as canonical JSON:
    sorted keys, no spaces) reaches the plugin's init. ``isolated=True``
    loads it in a child process (``timeout``, ``memory_limit`` and
    ``sandbox`` as for ``ferrule.load``), so a crash fails the call, not
    the process that made it.
    """

    __module__ = "ferrule"

    path: str | None
    entry_point: str | None
    sha256: str
    config: str | None
    isolated: bool
    sandbox: Sandbox | None
    timeout: float | None
    memory_limit: int | None
    # The library's file name (a shipped copy's name) and the file the ref
    # was made from, which ship() sends; neither is part of what the ref is.
    _name: str = field(compare=False, repr=False)
    _source: str | None = field(compare=False, repr=False)

    def __init__(self, path: str | os.PathLike[str] | None = None, *, entry_point: str | None = None,
                 sha256: str | None = None, config: str | Mapping[str, Any] | None = None, isolated: bool = False,
                 sandbox: Sandbox | bool | None = None, timeout: float | None = None,
                 memory_limit: int | None = None):
        if (path is None) == (entry_point is None):
            raise TypeError("PluginRef() takes a path or an entry_point=, exactly one of them: "
                            f"got {'both' if path is not None else 'neither'}")
        if not isinstance(isolated, bool):
            raise TypeError(f"PluginRef(isolated=...) is True or False, got {isolated!r}")
        if sandbox is True:
            sandbox = Sandbox()
        elif sandbox is False:
            sandbox = None
        if sandbox is not None and not isinstance(sandbox, Sandbox):
            raise TypeError(f"PluginRef(sandbox=...) takes a ferrule.Sandbox, True or None, "
                            f"got {type(sandbox).__name__}")
        given = [name for name, value in (("sandbox", sandbox), ("timeout", timeout), ("memory_limit", memory_limit))
                 if value is not None]
        if given and not isolated:
            raise TypeError(f"PluginRef() got {', '.join(given)}: these apply only to an isolated plugin; "
                            "pass isolated=True as well")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise ValueError(f"PluginRef(timeout=...) must be a positive number of seconds or None, got {timeout!r}")
        if memory_limit is not None and (isinstance(memory_limit, bool) or not isinstance(memory_limit, int)
                                         or memory_limit <= 0):
            raise ValueError(f"PluginRef(memory_limit=...) must be a positive number of bytes or None, "
                             f"got {memory_limit!r}")
        if sandbox is not None and memory_limit is not None:
            raise ValueError("with a sandbox, give the memory limit in it: Sandbox(memory=...), not memory_limit=")

        pin = pin_of(path, sha256)  # a PluginInfo from a scan carries the hash it was scanned with
        source: str | None
        if entry_point is not None:
            if not isinstance(entry_point, str) or not entry_point:
                raise TypeError(f"PluginRef(entry_point=...) is an entry point name, got {entry_point!r}")
            source = _installed(entry_point)
            if source is None:
                raise LibraryNotFoundError(
                    f"no entry point {entry_point!r} in group {ENTRY_POINT_GROUP!r} is installed here: make the ref "
                    "where the plugin's distribution is installed (ferrule list --installed shows them), or make it "
                    "from the library's path")
            stored_path = None
        else:
            assert path is not None
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"PluginRef(path) is a path, got {type(path).__name__}")
            try:
                source = resolved(path)
            except LibraryNotFoundError:
                if pin is None:
                    raise
                source = None  # a bare name not in FERRULE_PATH here, pinned: it is looked up where it loads
            stored_path = source if source is not None else (as_path(path) or os.fspath(path))
        if pin is None:
            assert source is not None
            if os.path.isdir(source):
                raise LibraryNotFoundError(f"{source} is a directory: PluginRef(path) names the plugin's library file "
                                           "(e.g. .../libname.so)")
            try:
                pin = file_sha256(source)[0]
            except FileNotFoundError:
                raise LibraryNotFoundError(
                    f"no file at {source}: PluginRef hashes the library when the ref is made, so give the path of "
                    "an existing file, or pass sha256= (the hash sha256sum prints) for a library that only the "
                    "loading side has") from None
        (digest,) = allowlist([pin])  # 64 hex digits, lower case
        name = os.path.basename(source if source is not None else os.fspath(stored_path or ""))
        if not name or name in (".", ".."):
            raise ValueError(f"PluginRef(path) must name a file, got {path!r}")
        values = {"path": stored_path, "entry_point": entry_point, "sha256": digest, "config": _canonical(config),
                  "isolated": isolated, "sandbox": sandbox,
                  "timeout": None if timeout is None else float(timeout), "memory_limit": memory_limit,
                  "_name": name, "_source": source}
        for key, value in values.items():
            object.__setattr__(self, key, value)

    # -- loading

    def load(self) -> Plugin | IsolatedPlugin:
        """This process's plugin for the ref: loaded on the first call (one
        load even when threads race), the same object afterwards, and loaded
        again only after it was closed. An isolated plugin whose child
        failed starts a new child on its next call, as ever.

        Raises LibraryNotFoundError when no copy of the library is here
        (ship it: ``ferrule.dask.ship``), PinMismatchError when the only
        copies have other contents, and whatever ``ferrule.load`` raises."""
        key = self._key
        plugin = _cache.get(key)
        if plugin is not None and not plugin.closed:
            return plugin
        with _guard:
            lock = _locks.setdefault(key, threading.Lock())
        with lock:
            plugin = _cache.get(key)
            if plugin is None or plugin.closed:
                plugin = _cache[key] = self._load_here()
        return plugin

    def _load_here(self) -> Plugin | IsolatedPlugin:
        looked: list[str] = []
        mismatched = unsafe = own_changed = False
        for candidate, own in self._candidates(looked):
            if not os.path.exists(candidate):
                looked.append(f"{candidate}: no such file")
                continue
            try:
                return self._open(candidate)
            except PinMismatchError:
                try:
                    found = f"has other contents (SHA-256 {file_sha256(candidate)[0]})"
                except (OSError, FerruleError):
                    found = "changed while it was read"
                looked.append(f"{candidate}: {found}")
                mismatched = True
                own_changed = own_changed or own
            except UnsafeFileError as exc:  # refused before it ran: a shipped copy may still serve
                looked.append(f"{candidate}: refused, as {str(exc).split(': none of it ran')[0]}")
                unsafe = True
            except FileNotFoundError:  # (LibraryNotFoundError too) removed meanwhile
                looked.append(f"{candidate}: no such file")
            except IsADirectoryError:
                looked.append(f"{candidate}: a directory")
        dirs = shipped_dirs()
        where = "" if dirs else ("; no shipped copies are registered in this process (ferrule.dask.ship registers "
                                 "them on Dask workers)")
        advice = ["put the file the ref was made from at that path", "or ship it to the workers: "
                  "ferrule.dask.ship(client, ref)"]
        if own_changed:
            advice.insert(0, "the file at the ref's path changed since the ref was made: if you trust it as it is "
                             "now, make a new ref (ferrule.PluginRef(path)); else")
        if unsafe:
            advice.insert(0, "a file others could write is never loaded: make it and its directory writable only "
                             "by their owner (chmod go-w), or")
        message = (f"no copy of {self._what} with SHA-256 {self.sha256} is here: looked at {'; '.join(looked)}"
                   f"{where}. {' '.join(advice)}"
                   + ("; a file with other contents is not the one the ref pins, and never runs" if mismatched else ""))
        raise (UnsafeFileError if unsafe and not mismatched else PinMismatchError if mismatched
               else LibraryNotFoundError)(message)

    def _candidates(self, looked: list[str]) -> list[tuple[str, bool]]:
        """Where the library may be here, in order: its own place (True),
        then the shipped copies."""
        found: list[tuple[str, bool]] = []
        if self.entry_point is not None:
            installed = _installed(self.entry_point)
            if installed is None:
                looked.append(f"entry point {self.entry_point!r} of group {ENTRY_POINT_GROUP!r}: not installed")
            else:
                found.append((installed, True))
        else:
            assert self.path is not None
            try:
                found.append((resolved(self.path), True))
            except LibraryNotFoundError:
                looked.append(f"{self.path}: not in FERRULE_PATH")
        found.extend((os.path.join(directory, self.sha256, self._name), False) for directory in shipped_dirs())
        return found

    def _open(self, path: str) -> Plugin | IsolatedPlugin:
        if self.isolated:
            return load(path, config=self.config, isolated=True, sha256=self.sha256, timeout=self.timeout,
                        memory_limit=self.memory_limit, sandbox=self.sandbox)
        return load(path, config=self.config, sha256=self.sha256)

    @property
    def _what(self) -> str:
        named = self.path if self.path is not None else f"entry point {self.entry_point!r}"
        return f"plugin {self._name} ({named})"

    # -- identity

    @functools.cached_property
    def _key(self) -> tuple[Any, ...]:
        """What one loaded plugin serves: the contents, the config and the
        mode, as plain values (the same in every process)."""
        sandbox = None if self.sandbox is None else _sandbox_items(self.sandbox)
        return (self.sha256, self.config, self.isolated, self.timeout, self.memory_limit, sandbox)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        # Dask names tasks by hashing their arguments; a Sandbox's mapping
        # would not hash deterministically, the key does.
        return ("ferrule.PluginRef", self.path, self.entry_point, self._name, *self._key)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without looking at files: the other side may not have them yet.
        return (_rebuild, ((self.path, self.entry_point, self._name, self._source, *self._key),))


# Refs unpickled in this process, by their state: every task of a Dask graph
# carries its own pickled copy, and the one object keeps its cached key.
_rebuilt: dict[tuple[Any, ...], PluginRef] = {}


def _rebuild(state: tuple[Any, ...]) -> PluginRef:
    ref = _rebuilt.get(state)
    if ref is not None:
        return ref
    path, entry_point, name, source, sha256, config, isolated, timeout, memory_limit, sandbox = state
    ref = object.__new__(PluginRef)
    ref.__dict__.update(path=path, entry_point=entry_point, sha256=sha256, config=config, isolated=isolated,
                        sandbox=None if sandbox is None else _sandbox_of(sandbox), timeout=timeout,
                        memory_limit=memory_limit, _name=name, _source=source)
    if len(_rebuilt) >= 1024:  # (a process that unpickles many refs keeps the last ones only)
        _rebuilt.clear()
    return _rebuilt.setdefault(state, ref)


def _sandbox_items(sandbox: Sandbox) -> tuple[tuple[str, Any], ...]:
    """A Sandbox's fields as sorted, hashable plain values (its env is a
    read-only mapping, which pickle refuses; its optional a set, whose order
    varies between processes)."""
    items = []
    for f in dataclasses.fields(sandbox):
        value = getattr(sandbox, f.name)
        if f.name == "env":
            value = tuple(sorted(value.items()))
        elif isinstance(value, (set, frozenset)):
            value = tuple(sorted(value))
        items.append((f.name, value))
    return tuple(sorted(items))


def _sandbox_of(items: tuple[tuple[str, Any], ...]) -> Sandbox:
    fields = dict(items)
    fields["env"] = dict(fields["env"])
    fields["optional"] = frozenset(fields["optional"])
    return Sandbox(**fields)


def _canonical(config: str | Mapping[str, Any] | None) -> str | None:
    if config is None or isinstance(config, str):
        return config
    if not isinstance(config, Mapping):
        raise TypeError(f"PluginRef(config=...) is str, a mapping (sent as JSON) or None, got {type(config).__name__}")
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"PluginRef(config=...) must be a mapping of JSON values (str keys; str, numbers, bools, "
                        f"None, lists and mappings of them): {exc}; or pass the config as text") from None


def _installed(entry_point: str) -> str | None:
    """Where the entry point's library is installed in this process's environment, or None."""
    from ._scan.discover import installed  # (imports the scan machinery: only for entry-point refs)

    plugins, _problems = installed(ENTRY_POINT_GROUP)
    return next((p.path for p in plugins if p.name == entry_point), None)


# -- this process's plugins, and the shipped copies

_cache: dict[tuple[Any, ...], Plugin | IsolatedPlugin] = {}
_locks: dict[tuple[Any, ...], threading.Lock] = {}
_guard = threading.Lock()
_shipped: list[str] = []
_inherited: list[Plugin | IsolatedPlugin] = []


def add_shipped_dir(directory: str | os.PathLike[str]) -> None:
    """Look for libraries in ``directory`` too (as ``<sha256>/<file name>``):
    where ``ferrule.dask.ship`` wrote them on this worker."""
    path = os.path.abspath(os.fspath(directory))
    with _guard:
        if path not in _shipped:
            _shipped.append(path)


def shipped_dirs() -> tuple[str, ...]:
    """The directories add_shipped_dir registered, in order."""
    with _guard:
        return tuple(_shipped)


def _after_fork() -> None:
    """In a forked child: the locks may have been held by threads that are
    gone, and an isolated plugin's process belongs to the parent. Those are
    kept alive but unused (collecting one would end the parent's child);
    the fork loads its own."""
    global _guard
    _guard = threading.Lock()
    _locks.clear()
    for key, plugin in list(_cache.items()):
        if isinstance(plugin, IsolatedPlugin):
            _inherited.append(_cache.pop(key))


os.register_at_fork(after_in_child=_after_fork)
