"""Interfaces across the process boundary, the host's side: implementations
an isolated plugin offers, their instances (made and destroyed in the child:
CREATE, DESTROY) and their methods (IsolatedFunctions on the child's
function indexes of that instance, wrapped like in-process methods so that
structs and handles are packed here, with the same checks and messages).

An instance lives in one child process: if that process ends (a crash, a
timeout, cancel()), the instance is lost with it, and its calls raise
IsolationError; the plugin itself restarts as usual.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from .._abi.spec import OfferSpec
from .._call import accelerator
from .._call.gate import new_gate
from .._interfaces.instances import Implementation
from .._interfaces.methods import method_spec, wrap_method
from ..idl import InterfaceSpec

if TYPE_CHECKING:
    from .process import Child

IsolatedPlugin = Any  # (plugin.py imports this module)

__all__ = ["IsolatedImplementation", "RemoteInstance"]

P = TypeVar("P")


class _Offers:
    """What Implementation reads of its owner: the plugin's spec."""

    def __init__(self, plugin: IsolatedPlugin):
        self.spec = plugin._spec


class RemoteInstance:
    """The host's handle on an instance in the child: its gate (calls in
    flight, close from inside refused), the child that holds it and the
    function index of its first method there."""

    def __init__(self, plugin: IsolatedPlugin, index: int, iface: InterfaceSpec, offer: OfferSpec, thread_safe: bool):
        what = f"{iface.name} instance {offer.name!r} of plugin {plugin.id!r}"
        self.what = what
        self.plugin = plugin
        self.gate = new_gate(accelerator.speedups is not None, f"{what} is closed: create another",
                             f"{what}: close() from inside one of its calls (a host function); close it after the "
                             "call returns")
        methods = []
        for m in iface.methods:  # the child's PluginFunction of each: vtable slot, name, call-layer signature, flags
            spec = method_spec(thread_safe, iface, m)
            methods.append([m.index, spec.name, spec.text, spec.flags])
        self.child, self.first = plugin._create_instance(index, {"name": iface.name, "thread_safe": thread_safe,
                                                                 "methods": methods})
        self._finalizer = weakref.finalize(self, plugin._doom, self.child, self.first)

    def close(self) -> None:
        """Wait for calls in flight, then destroy the instance in the child. Idempotent."""
        if self.gate.close(True):
            self._finalizer.detach()
            self.plugin._destroy_instance(self.child, self.first)

    def lost(self, child: Child | None) -> bool:
        return child is not self.child or child.stopper.done


class IsolatedImplementation(Implementation[P]):
    """An implementation an isolated plugin offers: ``create()`` makes the
    instance in the child; its methods are called through the channel."""

    def __init__(self, plugin: IsolatedPlugin, index: int, proxy: type[P]):
        super().__init__(plugin, _Offers(plugin), index, proxy)  # type: ignore[arg-type]

    def _method(self, target: Any, name: str) -> Any:
        return None  # create() makes every method up front

    def create(self) -> P:
        plugin: IsolatedPlugin = self.plugin
        offer = plugin._spec.offers[self._index]
        target = RemoteInstance(plugin, self._index, self.interface, offer, self.thread_safe)
        proxy: Any = object.__new__(self._proxy)
        proxy.implementation = self
        proxy._target = target
        for i, m in enumerate(self.interface.methods):
            fn = plugin._method(target.first + i, method_spec(self.thread_safe, self.interface, m), target)
            setattr(proxy, m.name, wrap_method(fn, self.interface, m))
        return proxy  # type: ignore[no-any-return]
