"""The callables of an instance's methods.

Each method is a PluginFunction on the instance's target, called through
the vtable with the method's call-layer signature (a struct travels as the
bytes of its C layout, a struct result through a trailing out buffer, a
handle as a u64). Where the declaration has structs or handles, a thin
wrapper binds arguments against the *declared* signature, so that keyword
arguments, arity errors and struct errors name the method's own parameters
and types, as for a function. With the accelerator, a MethodFunction takes
the declared arguments in C and packs them itself, and hands anything
unusual to that wrapper.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._abi import cdef as abi
from .._abi.spec import FunctionSpec
from .._call.checks import bind
from .._call.contract import CallTarget
from .._call.function import PluginFunction
from .._call.accelerator import speedups
from ..idl import InterfaceSpec, MethodSpec, TypeSpec
from .structs import codec

__all__ = ["declared_signature", "method", "method_spec", "wrap_method"]


def method(target: CallTarget, thread_safe: bool, iface: InterfaceSpec, m: MethodSpec, call: Any) -> Any:
    """The callable for method ``m`` of an instance: the PluginFunction
    itself when nothing needs converting."""
    spec = method_spec(thread_safe, iface, m)
    fn = PluginFunction(target, spec, call)
    wrapped = wrap_method(fn, iface, m)
    if wrapped is fn or not fn.accelerated:
        return wrapped
    return MethodFunction(target, spec, call, wrapped, m)


def method_spec(thread_safe: bool, iface: InterfaceSpec, m: MethodSpec) -> FunctionSpec:
    """A method as the call layer sees it: its name, its call-layer signature, its flags."""
    return FunctionSpec(f"{iface.name}.{m.name}", m.signature.text, m.doc, abi.FN_THREAD_SAFE if thread_safe else 0)


def wrap_method(fn: Any, iface: InterfaceSpec, m: MethodSpec) -> Any:
    """The method's callable around ``fn``, its call-layer callable (in
    process or isolated): packs structs and handles where it has them."""
    needs = [p.type for p in m.params] + ([m.result] if m.result is not None else [])
    if not any(t.kind in ("struct", "handle") for t in needs):
        return fn
    return _wrapped(fn, f"{iface.name}.{m.name}", m)


class MethodFunction(PluginFunction):
    """A method with structs or handles on the accelerated path: called with
    its declared arguments, which C packs; ``wrapper`` (the Python path)
    does anything else, through the call-layer function."""

    __module__ = "ferrule"

    def __init__(self, target: CallTarget, spec: FunctionSpec, call: Any, wrapper: Callable[..., Any], m: MethodSpec):
        super().__init__(target, spec, call)
        self._wrapper = wrapper
        self.__name__ = self.__qualname__ = m.name
        self.__doc__ = wrapper.__doc__
        self.__signature__ = wrapper.__signature__  # type: ignore[attr-defined]
        packers = tuple(codec(p.type.struct).native if p.type.struct is not None else
                        p.type.handle if p.type.kind == "handle" else None for p in m.params)
        result = m.result
        out = codec(result.struct).native if result is not None and result.struct is not None else None
        handle = result.handle if result is not None and result.kind == "handle" else None
        self._accelerate_method(packers, out, handle)  # type: ignore[attr-defined]

    def _call_checked(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(*args, **kwargs)

    __call__ = _call_checked


def declared_signature(m: MethodSpec) -> str:
    """A method's signature as declared: ``(r: Rect, by: u32) -> Rect``."""
    text = "(" + ", ".join(f"{p.name}: {_declared(p.type)}" for p in m.params) + ")"
    return text + (f" -> {_declared(m.result)}" if m.result is not None else "")


def _declared(t: TypeSpec) -> str:
    return t.name if t.kind in ("struct", "handle") else t.abi


def _wrapped(fn: Any, name: str, m: MethodSpec) -> Callable[..., Any]:
    """The callable of a method with structs or handles: a plain function
    (cheaper to call than an object's __call__)."""
    names = [p.name for p in m.params]
    count = len(names)
    display = f"{name}{declared_signature(m)}"
    structs = [(i, codec(p.type.struct), f"{name}() argument {p.name!r}")
               for i, p in enumerate(m.params) if p.type.kind == "struct" and p.type.struct is not None]
    result = m.result
    out_codec = codec(result.struct) if result is not None and result.struct is not None else None
    handle = result.handle if result is not None and result.kind == "handle" else None

    def call_method(*args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != count:
            args = bind(display, names, args, kwargs)
        values = list(args)
        for i, c, where in structs:
            values[i] = c.pack(values[i], where)
        if out_codec is not None:
            out = bytearray(out_codec.size)
            fn(*values, out)
            return out_codec.unpack(out)
        raw = fn(*values)
        return handle(raw) if handle is not None else raw

    call_method.__name__ = call_method.__qualname__ = m.name
    call_method.__doc__ = f"{display}\n\n{m.doc}" if m.doc else display
    call_method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return call_method


if speedups is not None:
    speedups.enable_vectorcall(MethodFunction)
