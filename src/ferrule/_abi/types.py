"""The ABI's value types, one row each: the only place a type's facts are
written down.

Each row gives a type's signature name, the accelerator's type code, the
``ferrule_value`` member that carries it, its range, its size and formats
(as an array element and a struct field), its Python type, and its C and
Rust spellings. What else needs these facts reads them here: argument checks,
the isolated wire, the struct codec, ``idl``, the code generators; the C
accelerator's tables (``_call/_abi_types.h``) are generated from this file by
tools/gen_abi.py, and tests hold the Rust SDK and the C header to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ARRAYS", "AbiType", "BASE", "CODES", "NUMBERS", "Param", "Signature", "TYPES", "Unnamed", "array", "host_fn"]


@dataclass(frozen=True)
class AbiType:
    """One type of the call layer."""

    name: str  # as a signature spells it: "i64", "str", "buf[f64]", "fn(i64) -> i64"
    kind: str  # "bool", "int", "float", "str", "bytes", "buf", "mutbuf" or "fn"
    code: int  # the accelerator's type code; never renumber (see CODES)
    slot: str  # member of ferrule_value: i64, u64, f64, f32, bytes, buf or func
    python: object  # what a Python caller passes and receives
    c: str = ""  # C spelling of a value (or an element) of this type
    rust: str = ""  # Rust spelling of a plugin-function parameter (T for an element)
    size: int = 0  # bytes, as an array element or a struct field; 0 for neither
    struct: str = ""  # struct-module format of one element or field (native order)
    wire: str = ""  # struct-module format in an isolated call's fixed part
    numpy: str = ""  # numpy's name of the element type, for advice in messages
    bits: int = 0  # integer width; 0 for non-integers
    signed: bool = False
    min: int = 0  # integer range, inclusive
    max: int = 0
    elem: AbiType | None = field(default=None, compare=False)  # buf[T] and mutbuf[T]: T
    fn: Signature | None = None  # fn(...): the host function's signature

    @property
    def writable(self) -> bool:
        """A mutbuf[T]: the callee may write the caller's memory."""
        return self.kind == "mutbuf"


def _int(name: str, code: int, bits: int, signed: bool, struct: str, numpy: str) -> AbiType:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    member = "i64" if signed else "u64"
    return AbiType(name, "int", code, member, int, c=f"{'' if signed else 'u'}int{bits}_t", rust=name, size=bits // 8,
                   struct=struct, wire="q" if signed else "Q", numpy=numpy, bits=bits, signed=signed, min=low, max=high)


# The rows, in code order. The codes are shared with the C accelerator.
BASE: tuple[AbiType, ...] = (
    AbiType("bool", "bool", 0, "u64", bool, c="bool", rust="bool", size=1, struct="?", wire="?"),
    _int("i8", 1, 8, True, "b", "int8"),
    _int("i16", 2, 16, True, "h", "int16"),
    _int("i32", 3, 32, True, "i", "int32"),
    _int("i64", 4, 64, True, "q", "int64"),
    _int("u8", 5, 8, False, "B", "uint8"),
    _int("u16", 6, 16, False, "H", "uint16"),
    _int("u32", 7, 32, False, "I", "uint32"),
    _int("u64", 8, 64, False, "Q", "uint64"),
    AbiType("f32", "float", 9, "f32", float, c="float", rust="f32", size=4, struct="f", wire="d", numpy="float32"),
    AbiType("f64", "float", 10, "f64", float, c="double", rust="f64", size=8, struct="d", wire="d", numpy="float64"),
    AbiType("str", "str", 11, "bytes", str, c="const char *", rust="&str", wire="QQ"),
    AbiType("bytes", "bytes", 12, "bytes", bytes, c="const uint8_t *", rust="&[u8]", wire="QQ"),
    AbiType("buf", "buf", 13, "buf", memoryview, c="const T *", rust="&[T]", wire="QQ"),
    AbiType("mutbuf", "mutbuf", 14, "buf", memoryview, c="T *", rust="&mut [T]", wire="QQ"),
    AbiType("fn", "fn", 15, "func", Callable, c="const ferrule_fn *", rust="HostFn<'_, fn(..) -> R>", wire="I"),
)
CODES = tuple(t.name for t in BASE)
NUMBERS = ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64")

# The types a parameter, a result or a host function's value may have alone.
TYPES: dict[str, AbiType] = {t.name: t for t in BASE if t.kind not in ("buf", "mutbuf", "fn")}


def array(kind: str, elem: str) -> AbiType:
    """buf[T] or mutbuf[T] for a number type T."""
    base = BASE[CODES.index(kind)]
    return AbiType(f"{kind}[{elem}]", kind, base.code, "buf", memoryview, c=base.c, rust=base.rust, wire=base.wire,
                   elem=TYPES[elem])


ARRAYS: dict[str, AbiType] = {f"{kind}[{n}]": array(kind, n) for kind in ("buf", "mutbuf") for n in NUMBERS}


def host_fn(sig: Signature) -> AbiType:
    """fn(...) of a host function's signature."""
    base = BASE[CODES.index("fn")]
    return AbiType(f"fn{sig}", "fn", base.code, "func", Callable, c=base.c, rust=base.rust, wire=base.wire, fn=sig)


# ------------------------------------------------------------------ signatures
# (parsed by signature.py)


@dataclass(frozen=True)
class Param:
    name: str
    type: AbiType

    def __str__(self) -> str:
        return f"{self.name}: {self.type.name}"


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]
    result: AbiType | None
    # The canonical text, made once: a warm scan lists thousands of signatures.
    text: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        text = "(" + ", ".join(str(p) for p in self.params) + ")"
        object.__setattr__(self, "text", text + (f" -> {self.result.name}" if self.result else ""))

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Unnamed(Param):
    """A parameter of an fn(...) type, which has no name."""

    def __str__(self) -> str:
        return self.type.name
