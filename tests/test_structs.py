"""The C struct codec (structs.c) against the Python one (struct module).

The C codec packs only what the Python codec would pack to the same bytes,
and returns None for everything else, so that the Python codec raises its
own error; it builds values equal to the Python codec's. Both are held to
each other here on a struct with every field kind, with values drawn by
hypothesis, in range and out of it.
"""

from __future__ import annotations

import math
import struct as _struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ferrule
from ferrule import idl
from ferrule._call.accelerator import speedups
from ferrule._interfaces.structs import codec

pytestmark = pytest.mark.skipif(speedups is None, reason="the C accelerator is not built (FERRULE_PURE_PYTHON?)")


class Ticket(idl.Handle):
    """A handle inside a struct."""


@idl.struct
class Inner:
    a: idl.u8
    b: idl.f32


@idl.struct
class Every:
    flag: bool
    i8: idl.i8
    i16: idl.i16
    i32: idl.i32
    i64: idl.i64
    u8: idl.u8
    u16: idl.u16
    u32: idl.u32
    u64: idl.u64
    f32: idl.f32
    f64: idl.f64
    ticket: Ticket
    inner: Inner


def ints(name: str, wide: bool) -> st.SearchStrategy[int]:
    bits = int(name[1:])
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if name[0] == "i" else (0, (1 << bits) - 1)
    if wide:
        return st.integers(lo - 3, hi + 3) | st.integers(-(1 << 70), 1 << 70)
    return st.integers(lo, hi)


def any_value(kind: str) -> st.SearchStrategy[Any]:
    """Mostly right values, sometimes wrong types."""
    wrong = st.sampled_from([None, "1", 1.5, True, 2, 1 << 65])
    if kind == "bool":
        return st.booleans() | wrong
    if kind in ("f32", "f64"):
        return st.floats(allow_nan=True) | st.integers(-(1 << 60), 1 << 60) | wrong
    return ints(kind, True) | wrong


def every(draw: Any, right: bool) -> Every:
    def pick(kind: str) -> Any:
        if right:
            if kind == "bool":
                return draw(st.booleans())
            if kind == "f32":
                return draw(st.floats(width=32, allow_nan=False))
            if kind == "f64":
                return draw(st.floats(allow_nan=False))
            return draw(ints(kind, False))
        return draw(any_value(kind))

    names = ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"]
    nums = {n: pick(n) for n in names}
    ticket = Ticket(draw(ints("u64", False))) if right or draw(st.booleans()) else draw(any_value("u64"))
    inner = Inner(pick("u8"), pick("f32")) if right or draw(st.booleans()) else draw(st.sampled_from([None, 3]))
    return Every(pick("bool"), f32=pick("f32"), f64=pick("f64"), ticket=ticket, inner=inner, **nums)


@st.composite
def right_values(draw: Any) -> Every:
    return every(draw, True)


@st.composite
def mixed_values(draw: Any) -> Every:
    return every(draw, False)


def python_pack(c: Any, value: Any) -> bytes | BaseException:
    try:
        flat = c._checked(value, "v")
        return c._struct.pack(*flat)
    except (TypeError, ValueError, AttributeError, _struct.error, OverflowError) as exc:
        return exc


def same(a: Any, b: Any) -> bool:
    """Field by field, floats bit for bit."""
    if isinstance(a, float) and isinstance(b, float):
        return _struct.pack("=d", a) == _struct.pack("=d", b) or (math.isnan(a) and math.isnan(b))
    if dataclass_like(a):
        return type(a) is type(b) and all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return type(a) is type(b) and a == b


def dataclass_like(v: Any) -> bool:
    return hasattr(v, "__dataclass_fields__")


@settings(max_examples=400, deadline=None)
@given(right_values())
def test_c_and_python_pack_a_valid_struct_to_the_same_bytes_and_back(value: Every) -> None:
    c = codec(Every.__ferrule_struct__)
    data = c.native.pack(value)
    assert data == python_pack(c, value)
    built = c.native.unpack(data)
    assert same(built, c._build(iter(c._struct.unpack(data))))
    assert same(built, value)
    assert built == value and hash(built) == hash(value)  # a real frozen dataclass instance
    with pytest.raises(AttributeError):
        built.u8 = 1  # type: ignore[misc]


@settings(max_examples=800, deadline=None)
@given(mixed_values())
def test_c_packs_only_what_python_packs_and_leaves_every_refusal_to_python(value: Every) -> None:
    c = codec(Every.__ferrule_struct__)
    data = c.native.pack(value)
    expected = python_pack(c, value)
    if data is not None:
        assert data == expected  # never a value Python would refuse, never other bytes
    # When C declines, Python decides (the parity table checks its messages).


def test_a_struct_with_its_own_init_is_built_by_calling_it() -> None:
    seen: list[int] = []

    @idl.struct
    class Checked:
        x: idl.i32

        def __post_init__(self) -> None:
            seen.append(self.x)

    c = codec(Checked.__ferrule_struct__)
    assert c.native.unpack(_struct.pack("=i", 7)) == Checked(7)
    assert seen == [7, 7]


def test_padding_travels_as_zeros() -> None:
    @idl.struct
    class Padded:
        flag: bool
        big: idl.u64

    c = codec(Padded.__ferrule_struct__)
    assert c.native.pack(Padded(True, 5)) == b"\x01" + b"\0" * 7 + (5).to_bytes(8, "little")


def test_a_subclass_or_look_alike_is_not_packed_in_c() -> None:
    @dataclass(frozen=True)
    class Like:
        a: int
        b: float

    c = codec(Inner.__ferrule_struct__)
    assert c.native.pack(Like(1, 2.0)) is None
    assert c.native.pack(Inner(1, 2.0)) is not None


def test_a_struct_with_slots_or_keyword_fields_is_built_as_python_builds_it() -> None:
    @idl.struct
    class Slotted:
        __slots__ = ("x", "y")
        x: idl.i32
        y: idl.i32

    c = codec(Slotted.__ferrule_struct__)
    assert c.native.unpack(_struct.pack("=ii", 1, 2)) == Slotted(1, 2)


def test_an_f32_field_out_of_range_is_a_value_error_that_names_it() -> None:
    @idl.struct
    class Ratio:
        a: idl.f32

    with pytest.raises(ValueError, match=r"arg: Ratio.a is 1e\+39, out of range for f32"):
        codec(Ratio.__ferrule_struct__).pack(Ratio(1e39), "arg")


def test_a_codec_is_made_once_and_never_used_unmade() -> None:
    made = speedups.StructCodec.__new__(speedups.StructCodec)
    with pytest.raises(RuntimeError, match="not made"):
        made.unpack(b"")
    c = codec(Inner.__ferrule_struct__).native
    with pytest.raises(RuntimeError, match="made once"):
        c.__init__(1 << 20, ())


def test_a_function_with_copies_keeps_its_plan(built: Any) -> None:
    # Copies (one per instance) share the original's conversion plan: it can
    # no longer be replaced under them.
    plugin: Any = ferrule.load(built.fixture)
    fn = plugin.add
    from ferrule._abi.ffi import ffi

    copy = fn._rebind(fn._target, int(ffi.cast("uintptr_t", fn._target.state)), fn._target.gate)
    with pytest.raises(RuntimeError, match="plan is fixed"):
        fn._accelerate(0, fn._target.host_table, fn._target.gate, None, 0, (), -1)
    with pytest.raises(RuntimeError, match="plan is fixed"):
        copy._accelerate(0, fn._target.host_table, fn._target.gate, None, 0, (), -1)
    assert copy(2, 3) == 5  # a copy on the plugin's own state and gate calls the same function
    plugin.close()
