"""The C accelerator and the cffi fallback give the same result or raise the
same exception with the same message, case by case, for valid and invalid
arguments alike."""

from __future__ import annotations

import array
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferrule
from ferrule._call import accelerator

from .conftest import Built


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # the class and message are what must agree
        return (type(exc).__name__, str(exc))


class IntLike:
    def __index__(self) -> int:
        return 7


class Text(str):
    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        raise AssertionError("the host must not call a subclass's encode")


CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("add", (2, 3), {}),
    ("add", (), {"a": 2, "b": 3}),
    ("add", (2,), {"b": 3}),
    ("add", (2,), {}),
    ("add", (2, 3, 4), {}),
    ("add", (2,), {"c": 3}),
    ("add", (2, 3), {"a": 1}),
    ("add", (2**63, 0), {}),
    ("add", (True, 0), {}),
    ("add", (2.0, 0), {}),
    ("add", (IntLike(), np.int64(5)), {}),
    ("echo_u64", (2**64 - 1,), {}),
    ("echo_u64", (-1,), {}),
    ("echo_u8", (256,), {}),
    ("echo_i8", (-129,), {}),
    ("echo_i32", (np.int32(-5),), {}),
    ("echo_bool", (True,), {}),
    ("echo_bool", (1,), {}),
    ("echo_f64", (1.5,), {}),
    ("echo_f64", (3,), {}),
    ("echo_f64", (10**400,), {}),
    ("echo_f64", ("1",), {}),
    ("echo_f32", (1e39,), {}),
    ("echo_f32", (float("inf"),), {}),
    ("echo_str", ("héllo",), {}),
    ("echo_str", (Text("sub"),), {}),
    ("echo_str", ("\ud800",), {}),
    ("echo_str", (b"x",), {}),
    ("echo_bytes", (b"\x00\xff",), {}),
    ("echo_bytes", (bytearray(b"ab"),), {}),
    ("echo_bytes", (memoryview(b"abcd")[::2],), {}),
    ("echo_bytes", ("x",), {}),
    ("mixed", (-3, 2.5, "abc", True), {}),
    ("fail", ("boom",), {}),
    ("upper", ("abc",), {}),
    ("nothing", (), {}),
    ("sum_f64", (array.array("d", [1.0, 2.5]),), {}),
    ("sum_f64", (b"12345678",), {}),
    ("sum_f64", (memoryview(array.array("d", [1.0, 2.0, 3.0]))[::2],), {}),
    ("sum_f64", (np.arange(4.0),), {}),
    ("sum_f64", (np.arange(4.0)[::2],), {}),
    ("sum_f64", (np.arange(4, dtype=np.float32),), {}),
    ("sum_f64", (np.arange(4.0).astype(">f8"),), {}),
    ("sum_f64", (3,), {}),
    ("sum_i64", (np.arange(6).reshape(2, 3),), {}),
    ("double_u8", (b"abc",), {}),
    ("apply", (lambda x: x * 2, 21), {}),
    ("apply", (lambda x: "no", 1), {}),
    ("apply", (lambda x: 2**64, 1), {}),
    ("apply", (None, 1), {}),
    ("apply_text", (lambda s: s + "?", "hi"), {}),
    ("apply_text", (lambda s: 5, "hi"), {}),
    ("apply_f64", (lambda a, b: a * b, 1.5, 4), {}),
]


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_c_path_and_python_path_agree(built: Built, case: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.environ.get("FERRULE_PURE_PYTHON"):
        pytest.skip("FERRULE_PURE_PYTHON is set: there is no C path to compare")
    assert accelerator.speedups is not None, "the C accelerator is not built: run the README's install command"
    name, args, kwargs = CASES[case]
    results = []
    for accelerate in (True, False):
        monkeypatch.setattr(accelerator, "enabled", accelerate)
        with ferrule.load(built.kitchen, config="ok") as plugin:
            results.append(outcome(plugin.functions[name], *args, **kwargs))
    assert results[0] == results[1]
