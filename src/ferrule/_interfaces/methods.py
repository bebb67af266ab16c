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
from typing import Any

from .._abi import cdef as abi
from .._abi.spec import FunctionSpec
from .._call.checks import bind
from .._call.contract import CallTarget
from .._call.function import PluginFunction
from .._call.accelerator import speedups
from ..idl import InterfaceSpec, MethodSpec, TypeSpec
from .structs import codec

__all__ = ["MethodFunction", "declared_signature", "method", "method_spec", "wrap_method"]


def method(target: CallTarget, thread_safe: bool, iface: InterfaceSpec, m: MethodSpec, call: Any) -> Any:
    """The callable for method ``m`` of an instance: the PluginFunction
    itself when nothing needs converting."""
    spec = method_spec(thread_safe, iface, m)
    fn = PluginFunction(target, spec, call)
    if not _needs_wrapper(m):
        return fn
    if getattr(fn, "accelerated", False):
        return MethodFunction(target, spec, call, fn, m)
    return wrap_method(fn, iface, m)


def method_spec(thread_safe: bool, iface: InterfaceSpec, m: MethodSpec) -> FunctionSpec:
    """A method as the call layer sees it: its name, its call-layer signature, its flags."""
    return FunctionSpec(f"{iface.name}.{m.name}", m.signature.text, m.doc, abi.FN_THREAD_SAFE if thread_safe else 0)


def wrap_method(fn: Any, iface: InterfaceSpec, m: MethodSpec) -> Any:
    """The method's callable around ``fn``, its call-layer callable (in
    process or isolated): packs structs and handles where it has them."""
    if not _needs_wrapper(m):
        return fn
    plan = _plan(f"{iface.name}.{m.name}", m)

    def call_method(*args: Any, **kwargs: Any) -> Any:
        return _call_declared(plan, fn, args, kwargs)

    call_method.__name__ = call_method.__qualname__ = m.name
    call_method.__doc__ = plan.doc
    call_method.__signature__ = plan.signature  # type: ignore[attr-defined]
    call_method.__wrapped__ = fn  # type: ignore[attr-defined]  # the call layer's flags and signature (aio.py)
    inner_acall = getattr(fn, "_acall", None)
    if inner_acall is not None:  # isolated: awaited on the channel, the structs packed here as for a plain call

        async def acall(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            values, out = _declared_args(plan, args, kwargs)
            return _declared_result(plan, await inner_acall(tuple(values), {}), out)

        call_method._acall = acall  # type: ignore[attr-defined]
    return call_method


class MethodFunction(PluginFunction):
    """A method with structs or handles on the accelerated path: called with
    its declared arguments, which C packs; anything else takes the Python
    path (_call_declared) through ``inner``, the call-layer function."""

    __module__ = "ferrule"

    def __init__(self, target: CallTarget, spec: FunctionSpec, call: Any, inner: PluginFunction, m: MethodSpec):
        super().__init__(target, spec, call)
        self._inner = inner
        self._plan = plan = _plan(spec.name, m)
        self.__name__ = self.__qualname__ = m.name
        self.__doc__ = plan.doc
        self.__signature__ = plan.signature
        out = plan.out_codec.native if plan.out_codec is not None else None
        self._accelerate_method(plan.packers, out, plan.handle)  # type: ignore[attr-defined]

    def _call_checked(self, *args: Any, **kwargs: Any) -> Any:
        return _call_declared(self._plan, self._inner, args, kwargs)

    __call__ = _call_checked

    def _rebound(self, target: CallTarget, state: int) -> PluginFunction:
        made: Any = super()._rebound(target, state)
        made._inner = self._inner._rebound(target, state)
        return made  # type: ignore[no-any-return]


def declared_signature(m: MethodSpec) -> str:
    """A method's signature as declared: ``(r: Rect, by: u32) -> Rect``."""
    text = "(" + ", ".join(f"{p.name}: {_declared(p.type)}" for p in m.params) + ")"
    return text + (f" -> {_declared(m.result)}" if m.result is not None else "")


def _declared(t: TypeSpec) -> str:
    return t.name if t.kind in ("struct", "handle") else t.abi


def _needs_wrapper(m: MethodSpec) -> bool:
    needs = [p.type for p in m.params] + ([m.result] if m.result is not None else [])
    return any(t.kind in ("struct", "handle") for t in needs)


class _Plan:
    """What calling a method with structs or handles needs, made once per
    method and shared by its instances."""

    def __init__(self, name: str, m: MethodSpec):
        self.names = [p.name for p in m.params]
        self.count = len(self.names)
        self.display = display = f"{name}{declared_signature(m)}"
        self.doc = f"{display}\n\n{m.doc}" if m.doc else display
        self.signature = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in self.names])
        self.structs = [(i, codec(p.type.struct), f"{name}() argument {p.name!r}")
                        for i, p in enumerate(m.params) if p.type.kind == "struct" and p.type.struct is not None]
        # What the C path packs each parameter with (MethodFunction): a struct's codec, a handle's class.
        self.packers = tuple(codec(p.type.struct).native if p.type.struct is not None else
                             p.type.handle if p.type.kind == "handle" else None for p in m.params)
        result = m.result
        self.out_codec = codec(result.struct) if result is not None and result.struct is not None else None
        self.handle = result.handle if result is not None and result.kind == "handle" else None


_plans: dict[tuple[str, int], tuple[MethodSpec, _Plan]] = {}


def _plan(name: str, m: MethodSpec) -> _Plan:
    found = _plans.get((name, id(m)))
    if found is None or found[0] is not m:
        found = _plans[(name, id(m))] = (m, _Plan(name, m))
    return found[1]


def _call_declared(plan: _Plan, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call the call-layer ``fn`` with a method's declared arguments, packing
    and checking its structs here (the Python path)."""
    values, out = _declared_args(plan, args, kwargs)
    return _declared_result(plan, fn(*values), out)


def _declared_args(plan: _Plan, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Any], bytearray | None]:
    """The call-layer arguments of a method call: structs packed, and the
    buffer a struct result is written to (appended) or None."""
    if kwargs or len(args) != plan.count:
        args = bind(plan.display, plan.names, args, kwargs)
    values = list(args)
    for i, c, where in plan.structs:
        values[i] = c.pack(values[i], where)
    out = None
    if plan.out_codec is not None:
        out = bytearray(plan.out_codec.size)
        values.append(out)
    return values, out


def _declared_result(plan: _Plan, raw: Any, out: bytearray | None) -> Any:
    if plan.out_codec is not None:
        assert out is not None
        return plan.out_codec.unpack(out)
    return plan.handle(raw) if plan.handle is not None else raw


if speedups is not None:
    speedups.enable_vectorcall(MethodFunction)
