"""The callables of an instance's methods.

Each method is a PluginFunction on the instance's target, called through
the vtable with the method's call-layer signature (a struct travels as the
bytes of its C layout, a struct result through a trailing out buffer, a
handle as a u64). Where the declaration has structs or handles, a thin
wrapper binds arguments against the *declared* signature, so that keyword
arguments, arity errors and struct errors name the method's own parameters
and types, as for a function.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from .._abi import cdef as abi
from .._abi.spec import FunctionSpec
from .._call.checks import bind
from .._call.contract import CallTarget
from .._call.function import PluginFunction
from ..idl import InterfaceSpec, MethodSpec, TypeSpec
from .structs import codec

__all__ = ["Method", "declared_signature", "method"]


def method(target: CallTarget, thread_safe: bool, iface: InterfaceSpec, m: MethodSpec, call: Any) -> Any:
    """The callable for method ``m`` of an instance: the PluginFunction
    itself when nothing needs converting."""
    name = f"{iface.name}.{m.name}"
    flags = abi.FN_THREAD_SAFE if thread_safe else 0
    fn = PluginFunction(target, FunctionSpec(name, m.signature, m.doc, flags), call)
    needs = [p.type for p in m.params] + ([m.result] if m.result is not None else [])
    if not any(t.kind in ("struct", "handle") for t in needs):
        return fn
    return Method(fn, name, m)


def declared_signature(m: MethodSpec) -> str:
    """A method's signature as declared: ``(r: Rect, by: u32) -> Rect``."""
    text = "(" + ", ".join(f"{p.name}: {_declared(p.type)}" for p in m.params) + ")"
    return text + (f" -> {_declared(m.result)}" if m.result is not None else "")


def _declared(t: TypeSpec) -> str:
    return t.name if t.kind in ("struct", "handle") else t.abi


class Method:
    """A method whose declaration has structs or handles."""

    def __init__(self, fn: PluginFunction, name: str, m: MethodSpec):
        self._fn = fn
        self._names = [p.name for p in m.params]
        self._display = f"{name}{declared_signature(m)}"
        self._structs = [(i, codec(p.type.struct), f"{name}() argument {p.name!r}")
                         for i, p in enumerate(m.params) if p.type.kind == "struct" and p.type.struct is not None]
        result = m.result
        self._out = codec(result.struct) if result is not None and result.struct is not None else None
        self._handle = result.handle if result is not None and result.kind == "handle" else None
        self.__name__ = self.__qualname__ = m.name
        self.__doc__ = f"{self._display}\n\n{m.doc}" if m.doc else self._display

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        values = list(bind(self._display, self._names, args, kwargs))
        for i, c, where in self._structs:
            values[i] = c.pack(values[i], where)
        if self._out is not None:
            out = bytearray(self._out.size)
            self._fn(*values, out)
            return self._out.unpack(out)
        raw = self._fn(*values)
        return self._handle(raw) if self._handle is not None else raw

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._fn).replace(parameters=[
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in self._names])

    def __repr__(self) -> str:
        return f"<ferrule method {self._display}>"
