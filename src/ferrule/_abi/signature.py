"""Parse and describe the machine-readable signature of an exported function.

Grammar (whitespace between tokens is free):

    signature := "(" [ param { "," param } ] ")" [ "->" result ]
    param     := name ":" ( value | array | hostfn )   (name: an ASCII identifier, not a Python keyword)
    value     := number | "bool" | "str" | "bytes"
    number    := "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "f32" | "f64"
    array     := ( "buf" | "mutbuf" ) "[" number "]"          (ABI 1.1)
    hostfn    := "fn" "(" [ value { "," value } ] ")" [ "->" value ]   (ABI 1.1)
    result    := value

Canonical form, as ``str(Signature)`` prints it: ``(a: i64, b: i64) -> i64``,
``(data: buf[f64]) -> f64``, ``(f: fn(i64) -> i64, x: i64) -> i64``.
"""

from __future__ import annotations

import functools
import re
from keyword import iskeyword

from .types import ARRAYS, NUMBERS, TYPES, AbiType, Param, Signature, Unnamed, host_fn

__all__ = ["Param", "Signature", "parse_signature"]


_TOKEN = re.compile(r"\s*(?:(->)|([A-Za-z_][A-Za-z0-9_]*)|(\S))")
_MAX_LENGTH = 4096
_MAX_PARAMS = 64


def _tokens(text: str) -> list[tuple[str, int]]:
    out = []
    # Up to the trailing whitespace only: _TOKEN's leading \s* would try the
    # whole run again at each of its positions (quadratic time).
    for match in _TOKEN.finditer(text, 0, len(text.rstrip())):
        token = match.group(1) or match.group(2) or match.group(3)
        if token is None:  # trailing whitespace
            continue
        out.append((token, match.start(match.lastindex or 0)))
    return out


# A well-formed signature matches these; the token parser below is only
# needed to say where a malformed one goes wrong (and is ~10x slower).
_VALUE = "(?:" + "|".join(TYPES) + ")"
_NUMBER = "(?:" + "|".join(NUMBERS) + ")"
_PARAM_TYPE = (
    rf"(?:{_VALUE}|(?:buf|mutbuf)\s*\[\s*{_NUMBER}\s*\]"
    rf"|fn\s*\(\s*(?:{_VALUE}(?:\s*,\s*{_VALUE})*)?\s*\)(?:\s*->\s*{_VALUE})?)"
)
_PARAM = rf"\s*[A-Za-z_][A-Za-z0-9_]*\s*:\s*{_PARAM_TYPE}\s*"
_WHOLE = re.compile(rf"\s*\(((?:{_PARAM}(?:,{_PARAM})*)?)\)\s*(?:->\s*({_VALUE})\s*)?")
_EACH = re.compile(rf"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*({_PARAM_TYPE})\s*(?:,|$)")
_FN = re.compile(rf"fn\s*\(\s*((?:{_VALUE}(?:\s*,\s*{_VALUE})*)?)\s*\)(?:\s*->\s*({_VALUE}))?")


def _quick_parse(text: str) -> Signature | None:
    """The signature of well-formed text, None when it needs the full parser
    (malformed, or a duplicate name, or too many parameters)."""
    whole = _WHOLE.fullmatch(text)
    if whole is None:
        return None
    params: list[Param] = []
    for match in _EACH.finditer(whole.group(1)):
        name, kind = match.group(1), match.group(2)
        if kind.startswith("fn"):
            inner = _FN.fullmatch(kind)
            assert inner is not None
            values = [TYPES[v.strip()] for v in inner.group(1).split(",") if v.strip()]
            if len(values) > _MAX_PARAMS:
                return None
            ret = TYPES[inner.group(2)] if inner.group(2) else None
            abi_type = host_fn(Signature(tuple(Unnamed("", v) for v in values), ret))
        else:
            abi_type = TYPES.get(kind) or ARRAYS["".join(kind.split())]
        params.append(Param(name, abi_type))
    if len(params) > _MAX_PARAMS or len({p.name for p in params}) != len(params) or any(iskeyword(p.name) for p in params):
        return None
    return Signature(tuple(params), TYPES[whole.group(2)] if whole.group(2) else None)


@functools.lru_cache(maxsize=1024)
def parse_signature(text: str) -> Signature:
    """Parse a signature string. Raises ValueError saying where and what was expected."""
    if len(text) > _MAX_LENGTH:
        raise ValueError(f"signature is {len(text)} characters long, at most {_MAX_LENGTH} allowed")
    quick = _quick_parse(text)
    if quick is not None:
        return quick
    tokens = _tokens(text)
    pos = 0

    def fail(expected: str) -> ValueError:
        if pos < len(tokens):
            token, col = tokens[pos]
            return ValueError(f"expected {expected} at column {col + 1}, found {token!r}")
        return ValueError(f"expected {expected}, found the end of the signature")

    def take(expected: str, predicate: object = None) -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise fail(expected)
        token = tokens[pos][0]
        if (predicate is None and token != expected) or (callable(predicate) and not predicate(token)):
            raise fail(expected)
        pos += 1
        return token

    def value_type() -> AbiType:
        return TYPES[take("a type (" + ", ".join(TYPES) + ")", lambda t: t in TYPES)]

    def param_type() -> AbiType:
        if pos < len(tokens) and tokens[pos][0] in ("buf", "mutbuf"):
            kind = take("buf or mutbuf", lambda t: t in ("buf", "mutbuf"))
            take("[")
            elem = take("an element type (" + ", ".join(NUMBERS) + ")", lambda t: t in NUMBERS)
            take("]")
            return ARRAYS[f"{kind}[{elem}]"]
        if pos < len(tokens) and tokens[pos][0] == "fn":
            take("fn")
            return host_fn(parameters(named=False))
        return value_type()

    def parameters(named: bool) -> Signature:
        nonlocal pos
        take("(")
        params: list[Param] = []
        seen: set[str] = set()
        if pos < len(tokens) and tokens[pos][0] != ")":
            while True:
                if named:
                    name = take("a parameter name (an ASCII identifier, not a Python keyword)",
                                lambda t: t.isascii() and t.isidentifier() and not iskeyword(t))
                    if name in seen:
                        pos -= 1
                        raise fail("a parameter name not used before")
                    seen.add(name)
                    take(":")
                    params.append(Param(name, param_type()))
                else:
                    params.append(Unnamed("", value_type()))
                if len(params) > _MAX_PARAMS:
                    raise ValueError(f"more than {_MAX_PARAMS} parameters")
                if pos < len(tokens) and tokens[pos][0] == ",":
                    pos += 1
                    continue
                break
        take(")")
        result = None
        if pos < len(tokens) and tokens[pos][0] == "->":
            take("->")
            result = value_type()
        return Signature(tuple(params), result)

    signature = parameters(named=True)
    if pos < len(tokens):
        raise fail("the end of the signature" if signature.result else "'->' or the end of the signature")
    return signature
