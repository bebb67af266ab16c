"""The interfaces the interface tests declare: every parameter kind, a
service in two revisions, and a counter for the threading tests.

Generated code: tests/plugins/generated/ (Rust, C) and tests/iface_proxies.py
(Python), from `ferrule generate`; test_generate.py checks they are current.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ferrule import idl


@idl.struct
class Point:
    """A point on a grid."""

    x: idl.i32
    y: idl.i32


@idl.struct
class Rect:
    """A rectangle: a nested struct, padding before a u64 and after a bool."""

    origin: Point
    width: idl.u32
    height: idl.u32
    filled: bool
    area_hint: idl.u64


class Token(idl.Handle):
    """A label the plugin keeps; the host only passes the handle on."""


@idl.interface("org.ferrule.test.counter", revision=1)
class Counter(Protocol):
    """A running total. Not thread-safe: the host serialises calls."""

    def add(self, n: idl.i64) -> idl.i64:
        """Add n and return the new total."""

    def total(self) -> idl.i64:
        """The total so far."""

    def slow_add(self, n: idl.i64, spin_us: idl.u32) -> idl.i64:
        """Read the total, wait spin_us microseconds, then write total + n:
        loses updates unless calls are serialised."""

    def name(self) -> str:
        """The implementation's name."""

    def fail(self, message: str) -> None:
        """Fail with this message."""


@idl.interface("org.ferrule.test.shapes", revision=1, thread_safe=True)
class Shapes(Protocol):
    """Every parameter kind. Thread-safe: no state."""

    def area(self, r: Rect) -> idl.u64:
        """width * height."""

    def grow(self, r: Rect, by: idl.u32) -> Rect:
        """r moved by (-by, -by), width and height + 2 * by, filled kept,
        area_hint the new area."""

    def mix(self, flag: bool, a: idl.i8, b: idl.u16, c: idl.f32, d: idl.f64, e: idl.u64) -> idl.f64:
        """a + b + c + d + e (as f64), negated when flag is false."""

    def sum(self, values: idl.buf[idl.f64]) -> idl.f64:
        """The sum of values."""

    def fill(self, target: idl.mutbuf[idl.i32], value: idl.i32) -> None:
        """Set every element of target to value."""

    def token(self, label: str) -> Token:
        """Keep label; return its handle (handles count from 1)."""

    def label(self, t: Token) -> str:
        """The label of a handle token returned; fails for an unknown one."""

    def echo(self, data: bytes) -> bytes:
        """data, unchanged."""

    def apply(self, f: Callable[[idl.i64], idl.i64], x: idl.i64) -> idl.i64:
        """f(x), through the host."""


@idl.interface("org.ferrule.test.store", revision=1, thread_safe=True)
class Store(Protocol):
    """A string store the host provides to plugins."""

    def get(self, key: str) -> str:
        """The value of key; fails when it is absent."""

    def put(self, key: str, value: str) -> None:
        """Set key to value."""


@idl.interface("org.ferrule.test.store", revision=2, thread_safe=True)
class Store2(Protocol):
    """Revision 2 of the store: adds count."""

    def get(self, key: str) -> str:
        """The value of key; fails when it is absent."""

    def put(self, key: str, value: str) -> None:
        """Set key to value."""

    def count(self) -> idl.u32:
        """How many keys are set."""
