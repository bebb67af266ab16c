"""In-process plugins.

``Plugin`` is the public face: metadata, functions as attributes, the
implementations the plugin offers, close(). ``PluginCore`` is the live side
behind it: the host table, the state init returned, the gate and the
lifecycle. The core is the CallTarget of the plugin's functions and the
Owner of its interface instances; its shutdown runs exactly once, after
every call and the last instance, when the plugin is closed or collected.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from .._abi import cdef as abi
from .._abi.descriptor import Descriptor, OfferEntry, describe
from .._abi.ffi import ffi
from .._abi.spec import FunctionSpec, OfferSpec, PluginSpec
from .._call import accelerator
from .._call.contract import Gate, HostTable
from .._call.function import PluginFunction, doc_text, python_signature
from .._call.gate import new_gate
from .._call.runner import aio_close_refusal, busy_here
from .._call.status import status_error
from .._errors import PluginClosedError
from .._call.table import HostTable as CffiHostTable
from .._call.table import level_cache, log_sink, running
from .._interfaces.instances import Implementation, matching, named, no_implementation
from .._interfaces.services import Services
from .._loader import Library

if TYPE_CHECKING:
    from .._call.aio import AsyncCalls
    from .._call.runner import Runner

__all__ = ["Plugin", "PluginCore"]

P = TypeVar("P")


class PluginCore:
    """The live side of one loaded, initialised plugin."""

    def __init__(self, desc: Descriptor, config: str | Mapping[str, Any] | None, services: Services):
        spec = desc.spec
        self.spec: PluginSpec = spec
        self._desc = desc
        self.plugin_id = spec.id
        self.debug = services.debug
        self.runner: Runner = services.runner  # the thread pool of its awaited calls
        self.accelerated = accelerator.enabled and accelerator.speedups is not None and not self.debug
        accelerator.warn_if_slow()
        logger = logging.getLogger(f"ferrule.plugin.{spec.id}")
        host: HostTable
        if self.accelerated:
            assert accelerator.speedups is not None
            host = accelerator.speedups.HostTable(log_sink(logger), **level_cache(logger))
        else:
            host = CffiHostTable(spec.id, logger, debug=self.debug)
        self.host_table = host
        self.table = ffi.cast("ferrule_host *", host.address)
        self.gate = self.new_gate(
            f"plugin {spec.id!r} is closed: load it again to call it",
            f"plugin {spec.id!r}: close() from inside one of its calls (a host function); close it after the call returns",
        )
        # create and destroy run one at a time, re-entrant (a create may query, a destroy release), and one
        # lock for all the plugins of a host: two plugins whose creates query each other cannot deadlock
        self._create_lock = services.create_lock
        self._count_lock = threading.Lock()
        self._instances = 0
        self._shutdown_pending = False
        self.templates: dict[Any, Any] = {}  # each implementation's method templates (instances.py)
        self._addresses: dict[int, tuple[OfferEntry, tuple[int, int, int]]] = {}
        # Accelerated, host->call serves what it can in C (services.c).
        host.set_services(*services.addresses(), services.fast if self.accelerated else None)
        services.attach(self)
        self.state: Any = ffi.NULL
        try:
            self.state = self._init(desc.init, config)
        except BaseException:
            services.detach(host.address)  # init failed: no shutdown will
            services.release_all(host.address)  # what its init got from queries
            raise
        self._finalizer = weakref.finalize(self, _shutdown, self.gate, desc.shutdown, host, self.table, self.state,
                                           services, self.debug)

    def _init(self, init: Any, config: str | Mapping[str, Any] | None) -> Any:
        if config is None:
            data = b""
        elif isinstance(config, str):
            data = str.encode(config, "utf-8")
        elif isinstance(config, Mapping):
            data = json.dumps(dict(config)).encode()
        else:
            raise TypeError(f"config must be str, a mapping (sent as JSON) or None, got {type(config).__name__}")
        if init == ffi.NULL:
            return ffi.NULL
        state = ffi.new("void **")
        with running(self.host_table, self.debug):
            status = init(self.table, data, len(data), state)
            if status != abi.OK:
                raise status_error(status, self.host_table.take_error(), f"plugin {self.plugin_id!r}", "init")
        return state[0]

    # -- the Owner of interface instances

    @property
    def closed(self) -> bool:
        return bool(self.gate.closed)

    def offer_entry(self, index: int) -> OfferEntry:
        return self._desc.offer_entries[index]

    def new_gate(self, closed_message: str, inside_message: str) -> Gate:
        return new_gate(self.accelerated, closed_message, inside_message)

    def _entry_addresses(self, entry: OfferEntry) -> tuple[int, int, int]:
        """create's, destroy's and the plugin state's addresses, for the C host table."""
        found = self._addresses.get(id(entry))
        if found is None or found[0] is not entry:
            found = self._addresses[id(entry)] = (entry, (
                int(ffi.cast("uintptr_t", entry.create)), int(ffi.cast("uintptr_t", entry.destroy)),
                int(ffi.cast("uintptr_t", self.state))))
        return found[1]

    def create(self, entry: OfferEntry, what: str) -> Any:
        mark = self.gate.enter()
        try:
            with self._create_lock:
                if self.accelerated:  # never in debug mode: nothing to mark, C keeps the error slot
                    create, _, state = self._entry_addresses(entry)
                    status, made, message = self.host_table.run_create(create, state)  # type: ignore[attr-defined]
                else:
                    out = ffi.new("void **")
                    with running(self.host_table, self.debug):
                        status = entry.create(self.table, self.state, out)
                        message = self.host_table.take_error() if status != abi.OK else None
                    made = out[0]
                if status != abi.OK:
                    raise status_error(status, message or "", f"plugin {self.plugin_id!r} could not create {what}",
                                       "create")
                with self._count_lock:
                    self._instances += 1
        finally:
            self.gate.leave(mark)
        return made

    def destroy(self, entry: OfferEntry, self_ptr: Any) -> None:
        try:
            with self._create_lock:
                if isinstance(self_ptr, int):  # made by the C host table
                    _, destroy, state = self._entry_addresses(entry)
                    self.host_table.run_destroy(destroy, state, self_ptr)  # type: ignore[attr-defined]
                else:
                    with running(self.host_table, self.debug):
                        entry.destroy(self.table, self.state, self_ptr)
        finally:
            with self._count_lock:
                self._instances -= 1
                run = self._instances == 0 and self._shutdown_pending
            if run:
                self._finalizer()

    # -- lifecycle

    def close(self) -> None:
        if self.gate.close(True):
            with self._count_lock:
                self._shutdown_pending = self._instances > 0
            if not self._shutdown_pending:
                self._finalizer()


def _shutdown(gate: Gate, shutdown: Any, host: HostTable, table: Any, state: Any, services: Services,
              debug: bool) -> None:
    # Runs from close(), the last instance's destroy, the garbage collector
    # or interpreter exit. At exit a daemon thread may still be inside a
    # call: then shutdown is skipped rather than run under it. Holding host
    # keeps the callbacks alive.
    if not gate.close(False):
        return
    left = services.release_all(host.address)
    if left:
        logging.getLogger("ferrule").warning("a plugin shut down holding %d objects from host->query; released them", left)
    services.detach(host.address)  # its queries from now on find nothing
    try:
        if shutdown != ffi.NULL:
            with running(host, debug):
                shutdown(table, state)
    finally:
        services.release_all(host.address)


class _FunctionSlot:
    """A plugin function as an attribute of the plugin's class: documents it,
    and makes the instance's PluginFunction when first looked up there. Not a
    data descriptor, so afterwards the instance's own attribute wins."""

    def __init__(self, spec: FunctionSpec):
        self.spec = spec
        self.__name__ = spec.name
        self.__doc__ = doc_text(spec.name, spec.signature, spec.doc)

    @property
    def __signature__(self) -> inspect.Signature:
        return python_signature(self.spec.signature)

    def __get__(self, instance: Plugin | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance._function(self.spec.name)


class Plugin:
    """A loaded, initialised plugin instance.

    Functions are attributes (``plugin.add(2, 3)``) and are listed in
    ``plugin.functions``. Use as a context manager or call ``close()``; the
    plugin's shutdown runs exactly once. The library stays mapped afterwards.
    """

    __module__ = "ferrule"
    _spec: PluginSpec  # these two on each plugin's own subclass
    _calls: Mapping[str, Any]  # function name -> its call pointer

    def __init__(self, library: Library, *, config: str | Mapping[str, Any] | None = None,
                 _services: Services | None = None):
        desc = describe(library)
        self.__class__ = plugin_class(desc)
        spec = desc.spec
        self.library = library
        self.path = library.path
        self.abi_version = spec.abi_version
        self.id = spec.id
        self.name = spec.name
        self.version = spec.version
        self.description = spec.description
        self.license = spec.license
        self._spec = spec
        self._made: dict[str, PluginFunction] = {}
        self._matching: dict[int, tuple[Any, type[Any], list[int]]] = {}  # id(interface) -> (it, proxy, offers)
        self._for_create: dict[tuple[int, str | None], tuple[Any, dict[str, Any]]] = {}
        self._core = PluginCore(desc, config, _services if _services is not None else Services(debug=False))

    # -- interfaces

    @property
    def interfaces(self) -> tuple[OfferSpec, ...]:
        """Every implementation the plugin offers (id, revision, name, doc,
        fingerprint), as its descriptor lists them."""
        return self._spec.offers

    def implementations(self, interface: type[P]) -> list[Implementation[P]]:
        """The plugin's implementations of an interface revision, in
        descriptor order; empty when it offers none. ``interface`` is a
        generated proxy class (typed instances) or an @idl.interface class.

        Raises InterfaceMismatchError when an implementation was generated
        from another layout of the same id and revision."""
        proxy, indexes = self._matched(interface)
        return [Implementation(self, self._core, index, proxy) for index in indexes]

    def implementation(self, interface: type[P], name: str | None = None) -> Implementation[P] | None:
        """The implementation called ``name`` (or the first one), or None."""
        return named(self.implementations(interface), name)

    def _matched(self, interface: Any) -> tuple[type[Any], list[int]]:
        # Keyed by identity: hashing an InterfaceSpec walks every field.
        found = self._matching.get(id(interface))
        if found is None or found[0] is not interface:  # the offers are checked once per interface
            found = self._matching[id(interface)] = (interface, *matching(self.id, self._spec.offers, interface))
        return found[1], found[2]

    def create(self, interface: type[P], name: str | None = None) -> P:
        """Make an instance of the implementation called ``name`` (or the
        first). Raises LookupError when the plugin offers none."""
        found = self._for_create.get((id(interface), name))
        if found is None or found[0] is not interface:
            impl = self.implementation(interface, name)
            if impl is None:
                raise no_implementation(self.id, self._spec.offers, interface, name)
            fields = dict(vars(impl), plugin=None)  # not the Plugin: a cycle would delay a dropped plugin's shutdown
            found = self._for_create[(id(interface), name)] = (interface, fields)
        made: Implementation[P] = object.__new__(Implementation)  # a copy of the one made above, for this plugin
        made.__dict__.update(found[1], plugin=self)
        return made.create()

    # -- functions

    def _function(self, name: str) -> PluginFunction:
        fn = self._made.get(name)
        if fn is None:
            fn = PluginFunction(self._core, self._spec.function(name), type(self)._calls[name])
            fn = self._made.setdefault(name, fn)  # another thread may have won
            if name in type(self).__dict__ and name not in self.__dict__:
                self.__dict__[name] = fn  # later lookups skip the slot
        return fn

    @property
    def functions(self) -> Mapping[str, PluginFunction]:
        """Every exported function by name, including names that are not
        attributes (a leading underscore, or the name of a Plugin attribute)."""
        return MappingProxyType({f.name: self._function(f.name) for f in self._spec.functions})

    @property
    def aio(self) -> AsyncCalls:
        """Every function as a coroutine function: ``await plugin.aio.add(2, 3)``.
        Calls run on the host's bounded thread pool (QUICK ones inline), so
        the event loop never blocks; host functions may be ``async def``."""
        made = self.__dict__.get("_aio")
        if made is None:
            from .._call.aio import AsyncCalls

            made = self.__dict__.setdefault("_aio", AsyncCalls(self, lambda: self.functions, self.close))
        return made  # type: ignore[no-any-return]

    # -- lifecycle

    @property
    def closed(self) -> bool:
        return self._core.closed

    def close(self) -> None:
        """Wait for calls in flight, then run the plugin's shutdown. Idempotent.

        Instances the plugin made stay usable: shutdown then runs when the
        last of them is closed or collected. Raises PluginClosedError when
        called from inside one of the plugin's own calls (a host function):
        that call would wait for itself, and on an event loop's thread while
        an awaited call of it is in flight there (use ``await plugin.aio.close()``)."""
        if busy_here(self._core):
            raise PluginClosedError(aio_close_refusal(f"plugin {self.id!r}"))
        self._core.close()

    def __reduce__(self) -> Any:
        raise TypeError(NOT_PICKLED.format(cls="Plugin", id=self.id))

    def __enter__(self) -> Plugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> PluginFunction:
        spec = type(self).__dict__.get("_spec")
        if spec is not None and "_made" in self.__dict__ and name in type(self).__dict__["_calls"]:
            return self._function(name)
        raise AttributeError(f"plugin {spec.id if spec else '?'!r} has no function {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {f.name for f in self._spec.functions})

    def __iter__(self) -> Iterator[PluginFunction]:
        return iter(self.functions.values())

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        lines = [f"<ferrule.Plugin {self.id} {self.name!r} {self.version}{state}, ABI {self.abi_version[0]}.{self.abi_version[1]}"]
        for f in self._spec.functions:
            doc = f.doc.splitlines()[0] if f.doc else ""
            lines.append(f"    {f.name}{f.signature}" + (f"  # {doc}" if doc else ""))
        return "\n".join(lines) + ">"


# A loaded plugin is its library mapped into this process and the state its
# init returned there: nothing another process could rebuild from bytes.
NOT_PICKLED = ("a ferrule.{cls} cannot be pickled: it is plugin {id!r} loaded into this process. Pickle a "
                "ferrule.PluginRef instead (ferrule.PluginRef(path, config=...)), which loads the plugin once in "
                "each process that unpickles it, with the same checks")

# Names a function cannot take as a plugin attribute (it stays in .functions).
RESERVED = frozenset(dir(Plugin)) | {"library", "path", "abi_version", "id", "name", "version", "description", "license"}

# One subclass per descriptor, which lives as long as the process (see describe).
_classes: dict[int, tuple[Descriptor, type[Plugin]]] = {}
_classes_lock = threading.Lock()


def plugin_class(desc: Descriptor) -> type[Plugin]:
    """The plugin's own subclass of Plugin: its functions are attributes
    there, so help(plugin) documents them; each plugin makes its own
    callables on first use (see _FunctionSlot)."""
    found = _classes.get(id(desc))
    if found is not None and found[0] is desc:
        return found[1]
    spec = desc.spec
    namespace: dict[str, Any] = {
        f.name: _FunctionSlot(f) for f in spec.functions if not f.name.startswith("_") and f.name not in RESERVED
    }
    namespace["__doc__"] = f"{spec.name} {spec.version} ({spec.id}): {spec.description}"
    namespace["__module__"] = "ferrule"
    namespace["__qualname__"] = f"Plugin[{spec.id}]"
    namespace["__slots__"] = ()
    namespace["_spec"] = spec
    namespace["_calls"] = MappingProxyType({f.name: call for f, call in zip(spec.functions, desc.calls)})
    cls: type[Plugin] = type(namespace["__qualname__"], (Plugin,), namespace)
    with _classes_lock:
        _classes[id(desc)] = (desc, cls)
    return cls
