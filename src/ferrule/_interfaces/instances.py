"""Implementations a plugin offers and the instances made from them.

An instance is a CallTarget of its own (its ``self`` pointer as the state,
its own gate) on the host table of the plugin that made it; the plugin is
reached only through the ``Owner`` protocol, which an in-process plugin
keeps. Each instance is destroyed exactly once, after every call into it,
and the plugin's shutdown waits for its last instance.
"""

from __future__ import annotations

import atexit
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from .._abi.descriptor import OfferEntry
from .._abi.ffi import ffi
from .._abi.spec import OfferSpec, PluginSpec
from .._call.contract import CallTarget, Gate, HostTable
from .._call.runner import aio_close_refusal, busy_here
from .._errors import InterfaceMismatchError, PluginClosedError
from ..idl import InterfaceSpec, spec
from .methods import method
from .offers import check_offer

if TYPE_CHECKING:
    from .._call.aio import AsyncCalls

__all__ = ["Implementation", "Instance", "InstanceTarget", "Owner", "being_created", "matching", "named", "no_implementation", "proxy_class"]

P = TypeVar("P")


class Owner(CallTarget, Protocol):
    """What an implementation needs from the plugin that offers it."""

    @property
    def spec(self) -> PluginSpec: ...

    @property
    def closed(self) -> bool: ...

    def offer_entry(self, index: int) -> OfferEntry:
        """The pointers of the plugin's offer number ``index``."""

    def new_gate(self, closed_message: str, inside_message: str) -> Gate:
        """A gate of the plugin's kind (C or cffi) for one of its instances."""

    def create(self, entry: OfferEntry, what: str) -> Any:
        """Run the offer's create; the instance's ``self`` pointer (a cffi
        pointer, or its address as an int from the C host table). ``what``
        names the instance in a failure message. Raises PluginCallError,
        PluginPanicError, or PluginClosedError once the plugin is closed."""

    def destroy(self, entry: OfferEntry, self_ptr: Any) -> None:
        """Run destroy for an instance create made (exactly once)."""

    @property
    def templates(self) -> dict[Any, Any]:
        """Where Implementation keeps its method templates, per plugin."""


class InstanceTarget:
    """The call target of one instance; its methods and plugin-to-plugin
    calls go through it."""

    def __init__(self, owner: Owner, index: int, name: str, thread_safe: bool):
        offer = owner.spec.offers[index]
        entry = owner.offer_entry(index)
        self.owner = owner
        self.entry = entry
        self.thread_safe = thread_safe
        making = _making()
        making.add((id(owner), index))  # its create may query: it is not lent itself (services.py)
        try:
            made = owner.create(entry, f"{name} {offer.name!r}")
        finally:
            making.discard((id(owner), index))
        # The C host table gives an address: the cffi pointer is made when needed.
        self.address: int = made if isinstance(made, int) else int(ffi.cast("uintptr_t", made))
        self._state = None if isinstance(made, int) else made
        messages = owner.templates.get(("gate", index, name))
        if messages is None:  # the same two texts for every instance of the offer
            what = f"{name} instance {offer.name!r} of plugin {owner.plugin_id!r}"
            messages = owner.templates[("gate", index, name)] = (
                f"{what} is closed: create another",
                f"{what}: close() from inside one of its calls (a host function); close it after the call returns")
        self._gate = owner.new_gate(*messages)
        self._finalizer = _Destroyer(self, self._gate, owner, entry, made)

    # -- the call contract

    @property
    def plugin_id(self) -> str:
        return self.owner.plugin_id

    @property
    def host_table(self) -> HostTable:
        return self.owner.host_table

    @property
    def table(self) -> Any:
        return self.owner.table

    @property
    def state(self) -> Any:
        if self._state is None:
            self._state = ffi.cast("void *", self.address)
        return self._state

    @property
    def gate(self) -> Gate:
        return self._gate

    @property
    def accelerated(self) -> bool:
        return self.owner.accelerated

    @property
    def runner(self) -> Any:
        """The thread pool of the instance's awaited calls: its plugin's."""
        return getattr(self.owner, "runner", None)

    @property
    def debug(self) -> bool:
        return self.owner.debug

    def close(self) -> None:
        """Wait for calls in flight, then destroy the instance. Idempotent."""
        if self._gate.close(True):
            self._finalizer()


_local = threading.local()


def _making() -> set[tuple[int, int]]:
    """The (owner, offer) whose create runs on this thread now."""
    made: set[tuple[int, int]] | None = getattr(_local, "making", None)
    if made is None:
        made = _local.making = set()
    return made


def being_created(owner: object, index: int) -> bool:
    return (id(owner), index) in _making()


class _Destroyer:
    """Destroys an instance once: from close(), when its target is collected,
    or at exit (the newest first), like weakref.finalize at a third of its
    cost, which counts when instances are made by the thousand."""

    __slots__ = ("args", "ref")
    live: ClassVar[dict[int, _Destroyer]] = {}
    ref: weakref.ref[InstanceTarget] | None
    registered: ClassVar[bool] = False

    def __init__(self, target: InstanceTarget, *args: Any):
        self.args = args
        self.ref = weakref.ref(target, self._collected)
        _Destroyer.live[id(self)] = self
        if not _Destroyer.registered:
            # After the plugin's weakref.finalize, so before it at exit
            # (atexit runs the last registered first): instances go first,
            # then the plugin's shutdown, which waits for them.
            _Destroyer.registered = True
            atexit.register(_Destroyer.at_exit)

    def _collected(self, ref: object) -> None:
        self()

    def __call__(self) -> None:
        if self.live.pop(id(self), None) is not None:
            self.ref = None  # no callback once destroyed (at exit it would find the module torn down)
            _destroy(*self.args)

    @staticmethod
    def at_exit() -> None:
        for destroyer in reversed(list(_Destroyer.live.values())):
            try:
                destroyer()
            except Exception:  # reported, and the others still go before the plugins' shutdown
                sys.excepthook(*sys.exc_info())


def _destroy(gate: Gate, owner: Owner, entry: OfferEntry, self_ptr: Any) -> None:
    # From close(), the garbage collector or exit; never under a call.
    if gate.close(False):
        owner.destroy(entry, self_ptr)


class Instance:
    """An instance of a host-defined interface that a plugin implements.

    Generated proxy classes (``ferrule generate --python``) derive from it
    and give the methods their types; each method is a typed callable, like
    a plugin function. ``close()`` (or leaving a ``with`` block) waits for
    calls in flight and destroys the instance; so does garbage collection.
    The plugin stays usable (its shutdown waits for its last instance).
    """

    __module__ = "ferrule"
    __ferrule_interface__: ClassVar[InterfaceSpec]
    __ferrule_fingerprint__: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        expected = cls.__dict__.get("__ferrule_fingerprint__")
        iface = cls.__dict__.get("__ferrule_interface__")
        if expected is not None and iface is not None and expected != iface.fingerprint:
            raise InterfaceMismatchError(
                f"the generated proxy {cls.__module__}.{cls.__qualname__} was made from another layout of "
                f"{iface.id}/{iface.revision} (fingerprint {expected:#018x}, the declaration has "
                f"{iface.fingerprint:#018x}): run ferrule generate again",
                iface.layout,
            )

    implementation: Implementation[Any]
    _target: InstanceTarget

    def __getattr__(self, name: str) -> Any:
        # Only for names not in the instance: an accelerated instance's
        # methods are made on first use and then kept in its __dict__.
        made = self.__dict__
        impl: Any = made.get("implementation")
        target = made.get("_target")
        lazy = impl is not None and target is not None and getattr(target, "accelerated", False)
        fn = impl._method(target, name) if lazy and not name.startswith("__") else None
        if fn is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return made.setdefault(name, fn)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {m.name for m in self.__ferrule_interface__.methods})

    def close(self) -> None:
        """Wait for calls in flight, then destroy the instance. Idempotent."""
        target = self._target
        isolated: Any = getattr(target, "plugin", None)  # a RemoteInstance's plugin
        if busy_here(target) or (isolated is not None and isolated._loop_blocked_by_close()):
            raise PluginClosedError(aio_close_refusal(repr(self), "instance"))
        target.close()

    @property
    def aio(self) -> AsyncCalls:
        """Every method as a coroutine function: ``await shapes.aio.area(r)``,
        awaited as the plugin's functions are (``Plugin.aio``)."""
        made: AsyncCalls | None = self.__dict__.get("_aio")
        if made is None:
            from .._call.aio import AsyncCalls

            iface = self.__ferrule_interface__
            made = self.__dict__.setdefault("_aio", AsyncCalls(
                self, lambda: {m.name: getattr(self, m.name) for m in iface.methods}, self.close))
        return made

    @property
    def closed(self) -> bool:
        return bool(self._target.gate.closed)

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        iface = self.__ferrule_interface__
        state = " closed" if self.closed else ""
        impl = self.implementation
        return f"<{iface.name} {iface.id}/{iface.revision} {impl.name!r} of {impl.plugin.id}{state}>"


_proxies: dict[int, type[Instance]] = {}


def proxy_class(interface: Any) -> type[Instance]:
    """The class of instances: a generated proxy, or one made for a bare declaration."""
    if isinstance(interface, type) and issubclass(interface, Instance):
        return interface
    iface = spec(interface)
    made = _proxies.get(id(iface))
    if made is None:
        made = _proxies[id(iface)] = type(iface.name, (Instance,), {"__ferrule_interface__": iface, "__doc__": iface.doc,
                                                                     "__module__": "ferrule"})
    return made


class Implementation(Generic[P]):
    """An implementation of an interface that a loaded plugin offers.

    ``create()`` makes an instance (a proxy of type P); a plugin may offer
    several implementations of one interface, each under its own name."""

    __module__ = "ferrule"

    def __init__(self, plugin: Any, owner: Owner, index: int, proxy: type[P]):
        iface: InterfaceSpec = proxy.__ferrule_interface__  # type: ignore[attr-defined]
        offer: OfferSpec = owner.spec.offers[index]
        self.plugin = plugin  # the public Plugin
        self.interface = iface
        self.name = offer.name
        self.doc = offer.doc
        self.thread_safe = iface.thread_safe or offer.thread_safe
        self._owner = owner
        self._index = index
        self._proxy = proxy

    def create(self) -> P:
        """Make an instance. Raises PluginCallError if the plugin's create
        fails, PluginClosedError once the plugin is closed."""
        target = InstanceTarget(self._owner, self._index, self.interface.name, self.thread_safe)
        proxy: Any = object.__new__(self._proxy)
        if target.accelerated:  # each method is made when first used (Instance.__getattr__)
            proxy.__dict__.update(implementation=self, _target=target)
        else:
            iface, entry = self.interface, target.entry
            proxy.__dict__.update({m.name: method(target, self.thread_safe, iface, m, entry.methods[m.index])
                                   for m in iface.methods}, implementation=self, _target=target)
        return proxy  # type: ignore[no-any-return]

    def _method(self, target: InstanceTarget, name: str) -> Any:
        """An accelerated instance's method: a copy of a template made once
        per implementation, on a target that is never called. None if the
        interface has no such method."""
        iface = self.interface
        key = (self._index, id(iface), self.thread_safe)
        found = self._owner.templates.get(key)
        if found is None or found[0] is not iface:
            entry = target.entry
            blank = _TemplateTarget(target)
            found = self._owner.templates[key] = (iface, {
                m.name: method(blank, self.thread_safe, iface, m, entry.methods[m.index]) for m in iface.methods})
        template = found[1].get(name)
        return None if template is None else template._rebound(target, target.address)

    def __repr__(self) -> str:
        return f"<ferrule.Implementation {self.interface.id}/{self.interface.revision} {self.name!r} of {self.plugin.id}>"


class _TemplateTarget:
    """The target of an implementation's method templates: the plugin's
    host table and a closed gate, no instance (a template is only copied)."""

    def __init__(self, like: InstanceTarget):
        self.plugin_id = like.plugin_id
        self.host_table = like.host_table
        self.table = like.table
        self.state = ffi.NULL
        self.accelerated = like.accelerated
        self.debug = like.debug
        self.gate = like.owner.new_gate("a method template is not callable", "a method template is not callable")
        self.gate.close(False)


def no_implementation(plugin_id: str, offers: tuple[OfferSpec, ...], interface: Any, name: str | None) -> LookupError:
    """The error of ``create`` when a plugin offers no such implementation."""
    iface = spec(interface)
    offered = [o.name for o in offers if o.key == iface.key]
    which = f" named {name!r}" if name is not None else ""
    return LookupError(f"plugin {plugin_id!r} offers no implementation of {iface.id}/{iface.revision}{which}"
                       + (f" (it offers {', '.join(map(repr, offered))})" if offered else ""))


def matching(plugin_id: str, offers: tuple[OfferSpec, ...], interface: Any) -> tuple[type[Instance], list[int]]:
    """The proxy class of ``interface`` and the indexes of the offers that
    implement it, in descriptor order, each checked against the declaration
    (InterfaceMismatchError for another layout of the same id and revision)."""
    iface = spec(interface)
    proxy = proxy_class(interface)
    indexes = []
    for index, offer in enumerate(offers):
        if offer.key == iface.key:
            check_offer(plugin_id, offer, iface)
            indexes.append(index)
    return proxy, indexes


def named(implementations: list[Implementation[P]], name: str | None) -> Implementation[P] | None:
    """The implementation called ``name`` (or the first one), or None."""
    for impl in implementations:
        if name is None or impl.name == name:
            return impl
    return None
