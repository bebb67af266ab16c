"""Argument checks, shared by every call path: bind positional and keyword
arguments to a signature, then check each value against its ABI type and
return it in the one form the paths take (an exact int, float, bool or str,
a bytes-like, a memoryview, a callable). Each refusal is a TypeError or
ValueError naming the function and the parameter.

The C accelerator takes the common valid cases itself and sends everything
else here, so every message is written once.
"""

from __future__ import annotations

import inspect
import math
import operator
import sys
from collections.abc import Sequence
from typing import Any

from .._abi.types import AbiType
from .marshal import address_of

__all__ = ["F32_MAX", "MISSING", "bind", "check_buffer", "check_value", "format_matches", "not_awaited"]

MISSING: Any = object()
F32_MAX = 3.4028234663852886e38


def bind(display: str, names: Sequence[str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The values of args and kwargs in parameter order. ``display`` is the
    function as messages show it, name and signature: ``add(a: i64, b: i64) -> i64``."""
    count = len(names)
    if not kwargs:
        if len(args) != count:
            raise TypeError(f"{display} takes {count} argument{'s' if count != 1 else ''}, {len(args)} given")
        return args
    if len(args) > count:
        raise TypeError(f"{display} takes {count} argument{'s' if count != 1 else ''}, {len(args)} given")
    values = list(args) + [MISSING] * (count - len(args))
    name = display.partition("(")[0]
    for key, value in kwargs.items():
        if key not in names:
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
        index = names.index(key)
        if values[index] is not MISSING:
            raise TypeError(f"{name}() got multiple values for argument {key!r}")
        values[index] = value
    missing = [n for n, v in zip(names, values) if v is MISSING]
    if missing:
        raise TypeError(f"{name}() missing argument{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    return tuple(values)


def check_value(abi_type: AbiType, value: Any, what: str) -> Any:
    """Check one value; ``what`` names it in messages (``f() argument 'x'``)."""
    kind = abi_type.kind
    name = abi_type.name

    def wrong(expected: str) -> TypeError:
        return TypeError(f"{what} must be {expected} ({name}), got {type(value).__name__}")

    if kind == "int":
        if isinstance(value, bool):
            raise wrong("int")
        try:
            number = operator.index(value)
        except TypeError:
            raise wrong("int") from None
        if not abi_type.min <= number <= abi_type.max:
            shown = number if number.bit_length() <= 128 else f"a {number.bit_length()}-bit integer"
            raise ValueError(f"{what}: {shown} is out of range for {name} ({abi_type.min} to {abi_type.max})")
        return int(number)
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong("bool")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("float")
        try:
            real = float(value)
        except OverflowError:
            raise ValueError(f"{what}: integer too large for {name}") from None
        if abi_type.size == 4 and math.isfinite(real) and abs(real) > F32_MAX:
            raise ValueError(f"{what}: {real} is out of range for f32")
        return real
    if kind == "str":
        if not isinstance(value, str):
            raise wrong("str")
        try:
            str.encode(value, "utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what}: cannot encode as UTF-8: {exc.reason}") from None
        if "\0" in value:  # C would read a prefix of it (strlen): refuse, rather than cut it silently
            raise ValueError(f"{what}: contains a NUL character (at index {value.index(chr(0))}); a str reaches the "
                             "plugin as NUL-terminated text, which would end there: pass bytes for data with NULs")
        return str.__str__(value)  # an exact str, even from a subclass
    if kind == "bytes":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise wrong("bytes-like object")
        if isinstance(value, memoryview) and not value.c_contiguous:
            raise ValueError(f"{what}: memoryview is not contiguous")
        return value if type(value) is bytes else memoryview(value)
    if kind == "fn":
        if not callable(value):
            raise TypeError(f"{what} must be callable ({name}), got {type(value).__name__}")
        return value
    return check_buffer(abi_type, value, what)


def check_buffer(abi_type: AbiType, value: Any, what: str) -> memoryview:
    """A buf[T] or mutbuf[T] argument: a C-contiguous, aligned buffer of T
    (writable for mutbuf), as a memoryview."""
    elem = abi_type.elem
    assert elem is not None
    kind = abi_type.name
    try:
        view = memoryview(value)
    except TypeError:
        raise TypeError(
            f"{what} must be a buffer of {elem.name} ({kind}), such as array.array or a numpy array, "
            f"got {type(value).__name__}"
        ) from None
    if abi_type.writable and view.readonly:
        raise TypeError(
            f"{what} is a read-only {type(value).__name__}, {kind} needs a writable buffer: "
            "pass a bytearray, an array.array or a writable numpy array"
        )
    if not view.c_contiguous:
        raise ValueError(
            f"{what} is not C-contiguous (shape {view.shape}, strides {view.strides}), {kind} needs "
            "contiguous memory: pass numpy.ascontiguousarray(x) or a copy"
        )
    if not format_matches(view.format, view.itemsize, elem):
        raise TypeError(
            f"{what} has elements of format {view.format!r} ({view.itemsize} byte{'s' if view.itemsize != 1 else ''} "
            f"each), {kind} needs {elem.name}: convert it, e.g. numpy's x.astype(numpy.{elem.numpy})"
        )
    if view.nbytes and address_of(view) % view.itemsize:
        raise ValueError(
            f"{what} is not aligned for {elem.name} (its address is not a multiple of {view.itemsize}), "
            f"{kind} needs aligned memory: pass a copy, e.g. numpy.array(x) or bytes(x)"
        )
    return view


# struct-module codes of each integer kind, any size: the size is checked apart.
_SIGNED, _UNSIGNED = "bhilqn", "BHILQN"


def format_matches(fmt: str, itemsize: int, elem: AbiType) -> bool:
    """Does a buffer's struct-module format describe one element of elem?
    The same rule as format_matches() in _speedups.c."""
    if fmt[:1] in ("@", "=", "<", ">", "!"):
        big = fmt[0] in (">", "!")
        if itemsize > 1 and (big if sys.byteorder == "little" else fmt[0] == "<"):
            return False
        fmt = fmt[1:]
    if len(fmt) != 1 or itemsize != elem.size:
        return False
    if elem.kind == "float":
        return fmt == elem.struct
    return fmt in (_SIGNED if elem.signed else _UNSIGNED)


def not_awaited(value: Any, what: str, name: str) -> TypeError:
    """The error for a host function that returned an awaitable to a call
    that was not awaited: nothing would run it."""
    close = getattr(value, "close", None)
    if inspect.iscoroutine(value) and close is not None:
        close()  # no "coroutine was never awaited" warning on top of this error
    return TypeError(f"{what} returned {type(value).__name__}, an awaitable: an async def host function works only "
                     f"when the plugin call is awaited (await plugin.aio.{name}(...)); pass a plain function otherwise")
