"""The signature parser: the grammar of docs/abi.md, canonical forms, error
positions, and agreement between its fast path and its full parser."""

from __future__ import annotations

import random

import pytest

from ferrule._abi import signature as _signature
from ferrule._abi.signature import parse_signature


def outcome(text: str) -> tuple[str, object]:
    parse_signature.cache_clear()
    try:
        return ("ok", parse_signature(text))
    except ValueError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("(a: i64, b: i64) -> i64", "(a: i64, b: i64) -> i64"),
        ("()", "()"),
        (" ( a :i8 , b:u64 ) ->bool ", "(a: i8, b: u64) -> bool"),
        ("(d: buf[f64], o: mutbuf [ u8 ]) -> f64", "(d: buf[f64], o: mutbuf[u8]) -> f64"),
        ("(f: fn(i64,str)->str, g: fn( ))", "(f: fn(i64, str) -> str, g: fn())"),
    ],
)
def test_canonical_forms(text: str, canonical: str) -> None:
    assert str(parse_signature(text)) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(a: i64,)", "expected a parameter name (an ASCII identifier, not a Python keyword) at column 9, found ')'"),
        ("(a: i64, a: i8)", "expected a parameter name not used before at column 10, found 'a'"),
        ("(a: buf[bool])", "expected an element type (i8, i16, i32, i64, u8, u16, u32, u64, f32, f64) at column 9"),
        ("(f: fn(buf[u8]))", "expected a type (bool, i8,"),
        ("(f: fn(x: i64))", "expected a type (bool, i8,"),
        ("(a: i64) -> buf[u8]", "expected a type (bool, i8,"),
        ("(a: i64) x", "expected '->' or the end of the signature at column 10, found 'x'"),
        ("(f: fn(" + ", ".join(["i8"] * 65) + "))", "more than 64 parameters"),
        ("(a: str) ->", "expected a type (bool, i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, str, bytes), found the end"),
    ],
)
def test_errors_say_where_and_what(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_signature(text)
    assert message in str(info.value)


def random_signature(rng: random.Random) -> str:
    values = ["bool", "i8", "i64", "u16", "u64", "f32", "f64", "str", "bytes"]

    def sp() -> str:
        return rng.choice(["", "", " ", "  "])

    def param_type() -> str:
        roll = rng.random()
        if roll < 0.2:
            return f"{rng.choice(['buf', 'mutbuf'])}{sp()}[{sp()}{rng.choice(values[1:7])}{sp()}]"
        if roll < 0.35:
            inner = f"{sp()},{sp()}".join(rng.choice(values) for _ in range(rng.randint(0, 3)))
            ret = f"{sp()}->{sp()}{rng.choice(values)}" if rng.random() < 0.6 else ""
            return f"fn{sp()}({sp()}{inner}{sp()}){ret}"
        return rng.choice(values)

    names = ["a", "b", "c", "data", "x1"]
    params = f"{sp()},{sp()}".join(f"{rng.choice(names)}{sp()}:{sp()}{param_type()}" for _ in range(rng.randint(0, 4)))
    ret = f"{sp()}->{sp()}{rng.choice(values)}" if rng.random() < 0.6 else ""
    return f"{sp()}({sp()}{params}{sp()}){ret}{sp()}"


def mutate(rng: random.Random, text: str) -> str:
    junk = ["(", ")", ",", ":", "->", "[", "]", "fn", "buf", "i64", "x", " ", ""]
    for _ in range(rng.randint(1, 3)):
        cut = rng.randint(0, len(text))
        text = text[:cut] + rng.choice(junk) + text[cut + rng.randint(0, 2):]
    return text


def test_fast_path_agrees_with_the_full_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    # Well-formed signatures and mutated ones: both parsers give the same
    # signature, or the fast path defers and the error is the full parser's.
    rng = random.Random(1234)
    texts = [random_signature(rng) for _ in range(1500)]
    texts += [mutate(rng, t) for t in texts]
    texts.append("(" + ", ".join(f"p{i}: u8" for i in range(65)) + ")")
    fast = [outcome(t) for t in texts]
    monkeypatch.setattr(_signature, "_quick_parse", lambda text: None)
    full = [outcome(t) for t in texts]
    parse_signature.cache_clear()
    assert fast == full
    valid = sum(1 for o in fast if o[0] == "ok")
    assert 500 < valid < len(texts) - 500  # both kinds were exercised


@pytest.mark.parametrize("text", ["(class: i64)", "(é: i64)", "(a: i64, lambda: f64)"])
def test_parameter_names_are_ascii_identifiers_and_not_keywords(text: str) -> None:
    # They become keyword arguments and inspect.Signature parameters.
    with pytest.raises(ValueError, match=r"expected a parameter name \(an ASCII identifier, not a Python keyword\)"):
        parse_signature(text)
