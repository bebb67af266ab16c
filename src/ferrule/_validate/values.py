"""Arguments made from a signature, and results checked against it, for the
calls ``ferrule validate`` makes.

Values are drawn from a ``random.Random`` seeded per function and call, so a
seed printed by one run reproduces every argument of another. Integers stay
in -1000..1000 (plus the full range of types up to 16 bits, and 0, 1, -1)
because a plugin's integer is often a count or a size: drawing from the
whole i64 range would make ``repeat(n)`` run for ever, a test of patience,
not of conformance.
"""

from __future__ import annotations

import array
import math
import random
import struct
import zlib
from collections.abc import Callable
from typing import Any

from .. import idl
from .._abi.signature import parse_signature
from .._abi.types import AbiType, Signature

__all__ = ["Draw", "check_result", "check_typed", "describe", "rng_for"]

SMALL = 1000
_TEXTS = ("", "a", "Ada", "hello, world", "ünïcödé ✓", "日本語のテキスト", "tab\tand\nnewline", "x" * 300, "🦀 crab")
_FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 1e300, math.inf, -math.inf, math.nan)
_ARRAY_CODES = {"i8": "b", "i16": "h", "i32": "i", "i64": "q", "u8": "B", "u16": "H", "u32": "I", "u64": "Q",
                "f32": "f", "f64": "d"}


def rng_for(seed: int, *parts: object) -> random.Random:
    """A generator for one call, independent of every other call's draws."""
    key = ":".join(str(p) for p in (seed, *parts)).encode()
    return random.Random(zlib.crc32(key) << 32 | zlib.crc32(key[::-1]))


class Draw:
    """Draws values of ABI types. ``edges`` mixes in extremes: empty text,
    NaN and infinities, the limits of narrow integers, long text."""

    def __init__(self, rng: random.Random, edges: bool):
        self.rng = rng
        self.edges = edges
        self.host_calls = 0  # times the plugin called a host function made here

    def _edge(self) -> bool:
        return self.edges and self.rng.random() < 0.25

    def integer(self, bits: int, signed: bool) -> int:
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if self._edge():
            choices = [0, 1] + ([-1] if signed else [])
            if bits <= 16:
                choices += [low, high]
            return int(self.rng.choice(choices))
        return self.rng.randint(max(low, -SMALL), min(high, SMALL))

    def real(self, single: bool) -> float:
        value = self.rng.choice(_FLOATS) if self._edge() else self.rng.uniform(-SMALL, SMALL)
        if single and math.isfinite(value) and abs(value) > 3.4e38:
            value = math.copysign(math.inf, value)
        return struct.unpack("f", struct.pack("f", value))[0] if single else value

    def text(self) -> str:
        if self._edge():
            return self.rng.choice(_TEXTS)
        alphabet = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789-_.é"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, 24)))

    def blob(self) -> bytes:
        size = self.rng.choice((0, 1, 4096)) if self._edge() else self.rng.randint(0, 48)
        return bytes(self.rng.getrandbits(8) for _ in range(size))

    def array(self, elem: AbiType) -> array.array[Any]:
        size = self.rng.choice((0, 1, 1024)) if self._edge() else self.rng.randint(1, 32)
        code = _ARRAY_CODES[elem.name]
        if elem.kind == "float":
            return array.array(code, (self.real(elem.name == "f32") for _ in range(size)))
        return array.array(code, (self.integer(elem.bits, elem.signed) for _ in range(size)))

    def value(self, t: AbiType) -> Any:
        """A value the host's argument checks accept for t."""
        if t.kind == "int":
            return self.integer(t.bits, t.signed)
        if t.kind == "float":
            return self.real(t.name == "f32")
        if t.kind == "bool":
            return self.rng.random() < 0.5
        if t.kind == "str":
            return self.text()
        if t.kind == "bytes":
            return self.blob()
        if t.kind in ("buf", "mutbuf"):
            assert t.elem is not None
            return self.array(t.elem)
        if t.kind == "fn":
            assert t.fn is not None
            return self.host_function(t.fn)
        raise ValueError(f"no values for {t.name}")

    def host_function(self, sig: Signature) -> Callable[..., Any]:
        """A host function that returns values of its declared result type,
        drawn up front so that calls from several plugin threads agree."""
        answers = [None if sig.result is None else self.value(sig.result) for _ in range(8)]

        def host(*args: Any) -> Any:
            self.host_calls += 1
            return answers[len(args) % len(answers)]

        return host

    def args(self, sig: Signature) -> tuple[Any, ...]:
        return tuple(self.value(p.type) for p in sig.params)

    # -- interface methods: idl types

    def typed(self, t: idl.TypeSpec) -> Any:
        """A value for a declared type: a handle or struct object, else the
        value of the call-layer type it travels as."""
        if t.kind == "handle":
            assert t.handle is not None
            return t.handle(self.rng.randint(0, SMALL))
        if t.kind == "struct":
            assert t.struct is not None
            return t.struct.cls(**{f.name: self.typed(f.type) for f in t.struct.fields})
        return self.value(_abi_type(t))

    def method_args(self, method: idl.MethodSpec) -> tuple[Any, ...]:
        return tuple(self.typed(p.type) for p in method.params)


def _abi_type(t: idl.TypeSpec) -> AbiType:
    """The call-layer type a declared type travels as (``TypeSpec.abi``)."""
    return parse_signature(f"(x: {t.abi})").params[0].type


def check_result(t: AbiType | None, value: Any) -> str | None:
    """None when value is what a call declared ``-> t`` returns in Python,
    else what is wrong with it."""
    if t is None:
        return None if value is None else f"returned {value!r} from a function declared without a result"
    expected: tuple[type, ...] = {"int": (int,), "float": (float,), "bool": (bool,), "str": (str,),
                                  "bytes": (bytes,)}.get(t.kind, (object,))
    if not isinstance(value, expected) or (t.kind == "int" and isinstance(value, bool)):
        return f"returned a {type(value).__name__} ({describe(value)}) for a {t.name} result"
    return None  # an integer is in range: the host reads the declared width's bits only


def check_typed(t: idl.TypeSpec | None, value: Any) -> str | None:
    """check_result for an interface method's result."""
    if t is None or t.kind in ("number", "bool", "str", "bytes"):
        return check_result(None if t is None else _abi_type(t), value)
    if t.kind == "handle" and not isinstance(value, int):
        return f"returned a {type(value).__name__} for a handle {t.name}"
    if t.kind == "struct" and t.struct is not None and not isinstance(value, t.struct.cls):
        return f"returned a {type(value).__name__} for a struct {t.name}"
    return None


def describe(value: Any, limit: int = 60) -> str:
    """A short, exact-enough picture of a value for a report."""
    if isinstance(value, array.array):
        items = value.tolist()
        shown = repr(items[:6])[:-1] + (", ...]" if len(items) > 6 else "]")
        return f"array('{value.typecode}', {len(items)} items: {shown})"
    if callable(value) and not isinstance(value, type):
        return "<host function>"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 12]}... ({len(value) if hasattr(value, '__len__') else '?'} long)"


def same(a: Any, b: Any) -> bool:
    """Results equal, NaN equal to NaN (a thread check compares results)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)
