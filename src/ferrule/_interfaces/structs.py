"""Struct values of host-defined interfaces: an @idl.struct instance packed
into its C layout (natural alignment) and back.

With the accelerator, the plain valid case is packed and every value built
in C (``speedups.StructCodec``); ``struct`` does the rest here, and every
refusal is worded here."""

from __future__ import annotations

import dataclasses
import math
import operator
import struct as _struct
from collections.abc import Callable, Iterator
from typing import Any

from .._abi.types import TYPES
from .._call import accelerator
from .._call.accelerator import speedups
from .._call.checks import F32_MAX
from ..idl import StructSpec, TypeSpec

__all__ = ["StructCodec", "codec"]

# A field's struct format: a number's or bool's from the ABI table; a handle is a u64.
_FORMATS = {name: t.struct for name, t in TYPES.items() if t.struct} | {"handle": TYPES["u64"].struct}


class StructCodec:
    """Packs an @idl.struct value into its C layout and back."""

    def __init__(self, s: StructSpec):
        self.spec = s
        self.size = s.size
        # The fast path reads the flat fields with one getter each; anything
        # odd goes to _flatten, which checks every field and names the bad one.
        paths: list[tuple[str, str]] = []
        fmt, self._build = self._plan(s, 0, "", paths)
        self._struct = _struct.Struct("=" + fmt)
        assert self._struct.size == s.size, (fmt, s)
        # Nested structs need their types checked: _flatten does that.
        flat = all(f.type.kind != "struct" for f in s.fields)
        self._get = operator.attrgetter(*[p for p, _ in paths]) if len(paths) > 1 and flat else None
        self._bools = [i for i, (_, kind) in enumerate(paths) if kind == "bool"]
        self._ints = [i for i, (_, kind) in enumerate(paths) if kind in ("int", "handle")]
        self._cls = s.cls
        self.native: Any = speedups.StructCodec(s.size, _native_plan(s)) if speedups is not None else None

    @classmethod
    def _plan(cls, s: StructSpec, base: int, prefix: str,
              paths: list[tuple[str, str]]) -> tuple[str, Callable[[Iterator[Any]], Any]]:
        """The struct format of s placed at offset base, the function that
        builds s from unpacked values, and (into paths) each flat field's
        dotted attribute path and kind."""
        fmt = ""
        at = base
        makers: list[Callable[[Iterator[Any]], Any]] = []
        for f in s.fields:
            pad = base + f.offset - at
            fmt += "x" * pad
            at += pad
            t = f.type
            if t.kind == "struct":
                assert t.struct is not None
                inner, make = cls._plan(t.struct, at, f"{prefix}{f.name}.", paths)
                fmt += inner
                at += t.struct.size
                makers.append(make)
            else:
                fmt += _FORMATS[t.name if t.kind == "number" else t.kind]
                at += t.size
                makers.append(_scalar_maker(t))
                kind = "float" if t.name in ("f32", "f64") else "int" if t.kind == "number" else t.kind
                paths.append((f"{prefix}{f.name}", kind))
        fmt += "x" * (base + s.size - at)
        made = s.cls

        def build(values: Iterator[Any]) -> Any:
            return made(*[m(values) for m in makers])

        return fmt, build

    def flat(self, value: Any, where: str) -> Any:
        if type(value) is not self._cls:
            raise TypeError(f"{where} must be {self.spec.name}, got {type(value).__name__}")
        if self._get is not None:
            try:
                values = self._get(value)
            except AttributeError:
                pass
            else:
                for i in self._bools:
                    if type(values[i]) is not bool:
                        break
                else:
                    for i in self._ints:
                        if type(values[i]) is bool:
                            break
                    else:
                        return values  # struct.pack checks the numbers themselves
        out: list[Any] = []
        _flatten(self.spec, value, out, where)
        return out

    def pack(self, value: Any, where: str) -> bytes:
        if self.native is not None and accelerator.enabled:
            data: bytes | None = self.native.pack(value)
            if data is not None:
                return data
        try:
            return self._struct.pack(*self.flat(value, where))
        except (_struct.error, OverflowError):  # OverflowError: an f32 out of range
            return self._struct.pack(*self._checked(value, where))

    def pack_into(self, target: Any, value: Any, where: str) -> None:
        try:
            self._struct.pack_into(target, 0, *self.flat(value, where))
        except (_struct.error, OverflowError):
            self._struct.pack_into(target, 0, *self._checked(value, where))

    def _checked(self, value: Any, where: str) -> list[Any]:
        """The slow path after struct refused a value: _flatten names the field."""
        out: list[Any] = []
        _flatten(self.spec, value, out, where)
        return out

    def unpack(self, data: Any) -> Any:
        if self.native is not None and accelerator.enabled:
            return self.native.unpack(data)
        return self._build(iter(self._struct.unpack(data)))


# Field kinds of the C codec beyond the ABI's number and bool codes (structs.c).
_K_HANDLE = 100
_K_STRUCT = 101


def _native_plan(s: StructSpec) -> tuple[Any, ...]:
    """s as the C codec takes it: (class, direct, ((name, offset, kind, extra), ...))."""
    fields: list[tuple[str, int, int, Any]] = []
    for f in s.fields:
        t = f.type
        if t.kind == "struct":
            assert t.struct is not None
            fields.append((f.name, f.offset, _K_STRUCT, _native_plan(t.struct)))
        elif t.kind == "handle":
            fields.append((f.name, f.offset, _K_HANDLE, t.handle))
        else:
            fields.append((f.name, f.offset, TYPES[t.name if t.kind == "number" else t.kind].code, None))
    return (s.cls, _plain_dataclass(s.cls), tuple(fields))


def _plain_dataclass(cls: type) -> bool:
    """Whether building cls by putting its fields in a new instance's
    __dict__ (what its generated __init__ does, through object.__setattr__)
    is the same as calling it with the values in order: no __init__,
    __post_init__, __new__ or metaclass __call__ of the author's own, an
    instance __dict__ (no __slots__), every field a positional __init__
    argument, and no descriptor in the way of a field."""
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    if code is None or code.co_filename != "<string>":  # dataclasses makes __init__ with exec
        return False
    if cls.__new__ is not object.__new__ or hasattr(cls, "__post_init__"):  # type: ignore[comparison-overlap]
        return False
    if type(cls).__call__ is not type.__call__ or any("__slots__" in vars(base) for base in cls.__mro__[:-1]):
        return False
    fields = dataclasses.fields(cls)
    if any(not f.init or f.kw_only for f in fields):
        return False
    return not any(hasattr(type(getattr(base, f.name, None)), "__set__") for f in fields for base in cls.__mro__[1:-1])


def _scalar_maker(t: TypeSpec) -> Callable[[Iterator[Any]], Any]:
    if t.kind == "handle":
        cls = t.handle
        assert cls is not None
        return lambda values: cls(next(values))
    return lambda values: next(values)


def _flatten(s: StructSpec, value: Any, out: list[Any], where: str, path: str = "") -> None:
    """Append the flat field values of value, checking each; ``where`` starts
    the messages (the argument or result being packed), and a field is named
    by its path from the outer struct (``Rect.origin.x``)."""
    path = path or s.name
    for f in s.fields:
        v = getattr(value, f.name)
        field = f"{path}.{f.name}"
        t = f.type
        if t.kind == "struct":
            assert t.struct is not None
            if type(v) is not t.struct.cls:
                raise TypeError(f"{where}: {field} must be {t.struct.name}, got {type(v).__name__}")
            _flatten(t.struct, v, out, where, field)
        elif t.kind == "bool":
            if not isinstance(v, bool):
                raise TypeError(f"{where}: {field} must be bool, got {type(v).__name__}")
            out.append(v)
        elif t.kind == "number" and t.name in ("f32", "f64"):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{where}: {field} must be float, got {type(v).__name__}")
            try:
                real = float(v)
            except OverflowError:
                raise ValueError(f"{where}: {field} is an integer too large for {t.name}") from None
            if t.name == "f32" and math.isfinite(real) and abs(real) > F32_MAX:
                raise ValueError(f"{where}: {field} is {real}, out of range for f32")
            out.append(real)
        else:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{where}: {field} must be int, got {type(v).__name__}")
            number = TYPES["u64" if t.kind == "handle" else t.name]
            if not number.min <= v <= number.max:
                shown = int(v) if v.bit_length() <= 128 else f"a {v.bit_length()}-bit integer"
                raise ValueError(f"{where}: {field} is {shown}, out of range for {number.name} "
                                 f"({number.min} to {number.max})")
            out.append(int(v))


_codecs: dict[int, StructCodec] = {}


def codec(s: StructSpec) -> StructCodec:
    found = _codecs.get(id(s))
    if found is None or found.spec is not s:
        found = _codecs[id(s)] = StructCodec(s)
    return found
