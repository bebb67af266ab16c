"""Property-based fuzzing of what the in-process host reads from a plugin:
signature text, the descriptor structs (ferrule_plugin, ferrule_function,
ferrule_interface), their metadata strings, the interface offers they
describe, a library file's header, and the bytes a plugin hands to host
callbacks or returns (through both call paths, built from the C source below).

Every parser must give back what was written, or raise its documented
error (docs/errors.md) with a message; never another exception, never a
crash. Descriptors are built in memory with cffi: every pointer in them
points to memory the test allocated and keeps alive, or is NULL, and every
count matches its table, except counts over the limits, which the reader
must refuse before reading anything.

The example budget comes from the "ferrule" hypothesis profile
(tests/conftest.py); bench/fuzz.py runs these tests with a larger one.
"""

from __future__ import annotations

import keyword

import ast
import codecs
import logging
import re
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferrule
from ferrule._abi import cdef as abi
from ferrule._abi import signature as _signature
from ferrule._call import accelerator
from ferrule._loader import elf as _elf
from ferrule._plugin import plugin as _plugin
from ferrule._errors import (
    AbiVersionError,
    BadMagicError,
    DescriptorError,
    DescriptorTooSmallError,
    InterfaceMismatchError,
    MetadataError,
    NotALibraryError,
    PluginCallError,
    SignatureError,
    WrongArchitectureError,
)
from ferrule._loader.elf import check_header
from ferrule._abi.ffi import ffi
from ferrule._abi.descriptor import MAX_FUNCTIONS as _MAX_FUNCTIONS
from ferrule._abi.descriptor import MAX_TEXT as _MAX_TEXT
from ferrule._abi.descriptor import Descriptor as _Descriptor
from ferrule._abi.descriptor import text as _text
from ferrule._abi.signature import Signature, parse_signature
from ferrule._abi.types import NUMBERS, TYPES
from ferrule._interfaces.offers import check_offer
from ferrule.idl import spec

from .conftest import compile_plugin
from .iface_api import Counter

pytestmark = pytest.mark.fuzz

NULL = ffi.NULL
PLUGIN_V1_SIZE = ffi.offsetof("ferrule_plugin", "interface_count")
PLUGIN_V12_SIZE = ffi.sizeof("ferrule_plugin")
FUNCTION_SIZE = ffi.sizeof("ferrule_function")
INTERFACE_SIZE = ffi.sizeof("ferrule_interface")
MAX_METHODS = 256
REVERSE_DNS = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+")
WHERE = "/fuzz/libmemory.so"  # the "library path" messages name
COUNTER = spec(Counter)

# ------------------------------------------------------------------ signatures

VALUES = list(TYPES)
UTF8 = st.characters(codec="utf-8")  # what str.encode() takes: no lone surrogates
NOT_NUL = st.characters(codec="utf-8", exclude_characters="\x00")
SPACE = st.sampled_from(["", "", "", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000"])
# Names are ASCII identifiers that are not Python keywords (they become keyword arguments).
PARAM_NAMES = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(lambda n: not keyword.iskeyword(n)),
    st.sampled_from(["fn", "buf", "mutbuf", "i64", "str", "bool", "_", "match"]),
)


@st.composite
def signature_texts(draw: st.DrawFn, max_params: int = 6) -> tuple[str, str]:
    """A well-formed signature: its canonical form, and the same signature
    with random whitespace between all its tokens."""

    def spaced(tokens: list[str]) -> str:
        return "".join(draw(SPACE) + token for token in tokens) + draw(SPACE)

    def commas(parts: list[list[str]]) -> list[str]:
        out: list[str] = []
        for i, part in enumerate(parts):
            out += ([","] if i else []) + part
        return out

    params_tokens: list[list[str]] = []
    params_canonical: list[str] = []
    for name in draw(st.lists(PARAM_NAMES, max_size=max_params, unique=True)):
        kind = draw(st.sampled_from(["value", "value", "array", "fn"]))
        if kind == "value":
            value = draw(st.sampled_from(VALUES))
            tokens, canonical = [value], value
        elif kind == "array":
            array, elem = draw(st.sampled_from(["buf", "mutbuf"])), draw(st.sampled_from(NUMBERS))
            tokens, canonical = [array, "[", elem, "]"], f"{array}[{elem}]"
        else:
            inner = draw(st.lists(st.sampled_from(VALUES), max_size=4))
            result = draw(st.none() | st.sampled_from(VALUES))
            tokens = ["fn", "(", *commas([[v] for v in inner]), ")"] + (["->", result] if result else [])
            canonical = f"fn({', '.join(inner)})" + (f" -> {result}" if result else "")
        params_tokens.append([name, ":", *tokens])
        params_canonical.append(f"{name}: {canonical}")
    result = draw(st.none() | st.sampled_from(VALUES))
    tokens = ["(", *commas(params_tokens), ")"] + (["->", result] if result else [])
    canonical = f"({', '.join(params_canonical)})" + (f" -> {result}" if result else "")
    return canonical, spaced(tokens)


JUNK = ["(", ")", ",", ":", "->", "-", ">", "[", "]", "fn", "buf", "mutbuf", "i64", "u8", "str", "x", " ", "é",
        "\x00", "0", "a:", "(", "fn("]


@st.composite
def mutated_signatures(draw: st.DrawFn) -> str:
    """A well-formed signature with a few characters or tokens deleted,
    inserted or replaced."""
    text = draw(signature_texts())[1]
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(JUNK) | UTF8)
        op = draw(st.sampled_from(["delete", "insert", "replace"]))
        if op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 3)):]
        elif op == "insert":
            text = text[:at] + piece + text[at:]
        else:
            text = text[:at] + piece + text[at + 1:]
    return text


def parse_outcome(text: str) -> Signature | str:
    """parse_signature's result (bypassing its cache), or its ValueError's
    message. Also checks what must hold of either: limits on a result, a
    column that points at the token an error names, and that the regex fast
    path and the full parser agree."""
    sig: Signature | str
    try:
        sig = parsed = parse_signature.__wrapped__(text)
    except ValueError as exc:
        sig = message = str(exc)
        assert message
        where = re.search(r" at column (\d+), found (.+)$", message)
        if where:
            column, token = int(where.group(1)), ast.literal_eval(where.group(2))
            assert text[column - 1:column - 1 + len(token)] == token, (text, message)
    else:
        assert len(text) <= _signature._MAX_LENGTH
        assert len(parsed.params) <= _signature._MAX_PARAMS
        assert len({p.name for p in parsed.params}) == len(parsed.params)
        for p in parsed.params:
            assert p.name.isidentifier()
            assert p.type.fn is None or len(p.type.fn.params) <= _signature._MAX_PARAMS
    quick = _signature._quick_parse(text) if len(text) <= _signature._MAX_LENGTH else None
    if quick is not None:
        assert quick == sig, text
    with mock.patch.object(_signature, "_quick_parse", lambda _text: None):
        try:
            full: Signature | str = parse_signature.__wrapped__(text)
        except ValueError as exc:
            full = str(exc)
    assert full == sig, text
    return sig


def assert_round_trip(sig: Signature) -> None:
    """str(sig) is canonical: it parses back to the same signature and is
    its own canonical form."""
    canonical = str(sig)
    again = parse_outcome(canonical)
    assert again == sig
    assert str(again) == canonical


@given(st.text(max_size=300) | st.text(alphabet="()[],:->fnbuti8643 \n", max_size=300))
def test_any_text_is_a_signature_or_a_value_error(text: str) -> None:
    sig = parse_outcome(text)
    if isinstance(sig, Signature):
        assert_round_trip(sig)


@given(st.builds(lambda piece, n: piece * n, st.sampled_from(["(", "a: i64, ", "fn(", "é", " ", "(a: buf[u8]"]),
                 st.integers(0, 3000)))
def test_long_and_repetitive_text(text: str) -> None:
    parse_outcome(text)


@given(signature_texts())
def test_generated_signatures_parse_and_round_trip(texts: tuple[str, str]) -> None:
    canonical, spaced = texts
    sig = parse_outcome(spaced)
    assert isinstance(sig, Signature), sig
    assert str(sig) == canonical
    assert_round_trip(sig)


@given(mutated_signatures())
def test_mutated_signatures_parse_or_say_where(text: str) -> None:
    sig = parse_outcome(text)
    if isinstance(sig, Signature):
        assert_round_trip(sig)


@given(st.integers(0, 100), st.integers(0, 100), st.integers(1, 60))
def test_parameter_and_length_limits(params: int, fn_params: int, name_length: int) -> None:
    names = [f"p{i}".ljust(name_length, "x") for i in range(params)]
    text = "(" + ", ".join(f"{n}: u8" for n in names) + (", " if names else "")
    text += "f: fn(" + ", ".join(["i8"] * fn_params) + "))"
    sig = parse_outcome(text)
    fits = params + 1 <= _signature._MAX_PARAMS and fn_params <= _signature._MAX_PARAMS
    if len(text) > _signature._MAX_LENGTH:
        assert sig == f"signature is {len(text)} characters long, at most {_signature._MAX_LENGTH} allowed"
    elif fits:
        assert isinstance(sig, Signature) and len(sig.params) == params + 1
    else:
        assert sig == f"more than {_signature._MAX_PARAMS} parameters"


# ------------------------------------------------------------------ metadata strings

BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\x80", b"\xc0\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xed\xbf\xbf",
            b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe0\x80\xaf"]


def long_texts() -> st.SearchStrategy[bytes]:
    """Texts of one repeated character around _MAX_TEXT bytes long, so that
    the reader's limit falls inside a character as often as between two."""
    def repeated(char: str) -> st.SearchStrategy[bytes]:
        width = len(char.encode())
        return st.integers((_MAX_TEXT - 8) // width, (_MAX_TEXT + 8) // width).map(lambda n: (char * n).encode())

    return st.one_of([repeated(char) for char in ["a", "é", "€", "𝄞"]])


def good_text(text: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[bytes]:
    """UTF-8 without NUL; sometimes followed by a NUL and anything at all,
    which the reader must not see."""
    text = text if text is not None else st.text(NOT_NUL, max_size=30)
    return st.one_of(
        text.map(str.encode),
        st.tuples(text.map(str.encode), st.binary(max_size=8)).map(lambda parts: parts[0] + b"\0" + parts[1]),
    )


def bad_text() -> st.SearchStrategy[bytes]:
    """Bytes that are mostly not UTF-8 (a NUL before the bad part makes them
    valid again, which the expectations take into account)."""
    return st.one_of(
        st.tuples(st.text(UTF8, max_size=8).map(str.encode), st.sampled_from(BAD_UTF8), st.binary(max_size=8))
        .map(b"".join),
        st.binary(max_size=40),
    )


def any_text() -> st.SearchStrategy[bytes | None]:
    return st.one_of(st.none(), good_text(), bad_text(), long_texts())


class Refused(Exception):
    """What the expectations say the reader must raise."""

    def __init__(self, error: type[DescriptorError]):
        super().__init__(error.__name__)
        self.error = error


def expected_text(raw: bytes | None, required: bool) -> str:
    """What _text must read from a NUL-terminated copy of raw: the text up to
    the first NUL, at most _MAX_TEXT bytes of it; where that limit falls
    inside a character, the text before that character."""
    if raw is None:
        if required:
            raise Refused(MetadataError)
        return ""
    data = raw.split(b"\0", 1)[0]
    cut = len(data) >= _MAX_TEXT
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(data[:_MAX_TEXT], final=not cut)
    except UnicodeDecodeError:
        raise Refused(MetadataError) from None
    return text


def c_text(keep: list[Any], raw: bytes | None) -> Any:
    if raw is None:
        return NULL
    cdata = ffi.new("char[]", raw)  # adds the terminating NUL
    keep.append(cdata)
    return cdata


@given(any_text(), st.booleans())
def test_metadata_text_is_str_or_metadata_error(raw: bytes | None, required: bool) -> None:
    keep: list[Any] = []
    try:
        expected = expected_text(raw, required)
    except Refused:
        with pytest.raises(MetadataError) as info:
            _text(c_text(keep, raw), "plugin 'a.b' name", required)
        message = str(info.value)
        if raw is None:
            assert message == "plugin 'a.b' name is NULL, expected a UTF-8 string: fill it in the descriptor"
        else:
            data = raw.split(b"\0", 1)[0]
            error = re.fullmatch(r"plugin 'a\.b' name is not valid UTF-8 \((.+) at byte (\d+)\): (.+)", message, re.S)
            assert error, message
            with pytest.raises(UnicodeDecodeError) as decoding:
                data.decode("utf-8")
            assert (error.group(1), int(error.group(2))) == (decoding.value.reason, decoding.value.start)
            assert len(message) < 500  # the bytes around the error, not all of them
    else:
        assert _text(c_text(keep, raw), "plugin 'a.b' name", required) == expected


# ------------------------------------------------------------------ descriptors

# Never called: the reader only checks that these pointers are not NULL.
CALL = ffi.callback("ferrule_call_fn", lambda host, state, args, ret: abi.ERROR)
CREATE = ffi.callback("int32_t(*)(const ferrule_host *, void *, void **)", lambda host, state, self: abi.ERROR)
DESTROY = ffi.callback("void(*)(const ferrule_host *, void *, void *)", lambda host, state, self: None)
INIT = ffi.callback("ferrule_init_fn", lambda host, config, length, state: abi.ERROR)
SHUTDOWN = ffi.callback("ferrule_shutdown_fn", lambda host, state: None)


@dataclass
class FunctionModel:
    entry: bool  # False: a NULL entry in the table
    struct_size: int
    flags: int
    name: bytes | None
    signature: bytes | None
    doc: bytes | None
    call: bool


@dataclass
class InterfaceModel:
    entry: bool
    struct_size: int
    flags: int
    id: bytes | None
    revision: int
    fingerprint: int
    layout: bytes | None
    name: bytes | None
    doc: bytes | None
    methods: list[bool] | None  # None: a NULL table; False: a NULL method
    method_count: int  # len(methods), or over the limit
    create: bool
    destroy: bool


@dataclass
class PluginModel:
    magic: int
    struct_size: int
    abi_major: int
    abi_minor: int
    id: bytes | None
    name: bytes | None
    version: bytes | None
    description: bytes | None
    license: bytes | None
    flags: int
    functions: list[FunctionModel] | None  # None: a NULL table
    function_count: int  # len(functions), or over the limit
    interfaces: list[InterfaceModel] | None
    interface_count: int
    init: bool
    shutdown: bool


U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
IDS = st.from_regex(r"[A-Za-z0-9_-]{1,6}(\.[A-Za-z0-9_-]{1,6}){1,3}", fullmatch=True)
FUNCTION_NAMES = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.sampled_from(["add", "f", "_private", "__len__", "close", "name", "class", "é", "名前"]),
)
# How often a field is broken: never, or about one in 150, 40, 12 or 4
# fields, so that some descriptors break early, some late and some not at all.
ODDS = (0, 150, 40, 12, 4)
BREAK = {odds: st.sampled_from([False] * (odds - 1) + [True]) for odds in ODDS if odds}
# What happens to a table as a whole (wrong descriptors only).
TABLE = st.sampled_from(["as is"] * 17 + ["too many", "NULL table", "first twice"])
YES, NO = st.just(True), st.just(False)
GOOD, BAD, LONG = good_text(), bad_text(), long_texts()
REQUIRED_TEXT, OPTIONAL_TEXT = GOOD | LONG, st.none() | GOOD | LONG
BAD_REQUIRED_TEXT = st.none() | BAD
NOT_REVERSE_DNS = st.one_of(
    st.sampled_from(["", "greeter", ".a.b", "a..b", "a.b.", "a b.c", "a.b\n", "\na.b", "a.é"]),
    st.tuples(IDS, st.sampled_from(["\n", ".", " ", "é", "\x00x", "/"])).map("".join),
    st.text(UTF8, max_size=12),
).map(str.encode)
GOOD_ID, BAD_ID = IDS.map(str.encode), st.none() | BAD | NOT_REVERSE_DNS
GOOD_SIGNATURE = signature_texts().map(lambda texts: texts[1].encode())
BAD_SIGNATURE = st.one_of(st.none(), BAD, mutated_signatures().map(str.encode),
                          st.text(UTF8, max_size=20).map(str.encode))
GOOD_FUNCTION_NAME = FUNCTION_NAMES.map(str.encode)
BAD_FUNCTION_NAME = st.none() | BAD | st.sampled_from([b"", b"1a", b"a b", b"a-b", "é!".encode()])
# Often the host's own interface, so that check_offer accepts some.
LAYOUT = st.one_of(st.none(), st.just(COUNTER.layout.encode()), good_text(st.text(UTF8, max_size=60)))
OFFER_NAME = st.sampled_from([b"c-counter", b"other"]) | st.text(NOT_NUL, min_size=1, max_size=10).map(str.encode)
OFFER_ID = st.just(COUNTER.id.encode()) | GOOD_ID


def often(draw: st.DrawFn, valid: st.SearchStrategy[Any], broken: st.SearchStrategy[Any], odds: int) -> Any:
    """A valid value, or one in odds times (never for 0) a broken one."""
    if odds and draw(BREAK[odds]):
        return draw(broken)
    return draw(valid)


@st.composite
def functions(draw: st.DrawFn, odds: int) -> FunctionModel:
    return FunctionModel(
        entry=often(draw, YES, NO, odds),
        struct_size=often(draw, st.integers(FUNCTION_SIZE, 2**32 - 1), st.integers(0, FUNCTION_SIZE - 1), odds),
        flags=draw(U32),
        name=often(draw, GOOD_FUNCTION_NAME, BAD_FUNCTION_NAME, odds),
        signature=often(draw, GOOD_SIGNATURE, BAD_SIGNATURE, odds),
        doc=often(draw, OPTIONAL_TEXT, BAD, odds),
        call=often(draw, YES, NO, odds),
    )


@st.composite
def interfaces(draw: st.DrawFn, odds: int) -> InterfaceModel:
    methods: list[bool] | None
    if often(draw, NO, YES, odds):  # too many methods: refused before the table is read
        count = draw(st.integers(MAX_METHODS + 1, 2**32 - 1))
        methods = draw(st.none() | st.lists(YES, max_size=2))
    else:
        methods = [often(draw, YES, NO, odds) for _ in range(draw(st.integers(0, 8)))]
        if often(draw, NO, YES, odds):
            methods = None  # a NULL table
        count = len(methods) if methods is not None else draw(st.integers(0, MAX_METHODS))
    return InterfaceModel(
        entry=often(draw, YES, NO, odds),
        struct_size=often(draw, st.integers(INTERFACE_SIZE, 2**32 - 1), st.integers(0, INTERFACE_SIZE - 1), odds),
        flags=draw(U32),
        id=often(draw, OFFER_ID, BAD_ID, odds),
        revision=draw(st.just(COUNTER.revision) | U32),
        fingerprint=draw(st.just(COUNTER.fingerprint) | U64),
        layout=often(draw, LAYOUT, BAD, odds),
        name=often(draw, OFFER_NAME, st.none() | st.just(b"") | BAD, odds),
        doc=often(draw, OPTIONAL_TEXT, BAD, odds),
        methods=methods,
        method_count=count,
        create=often(draw, YES, NO, odds),
        destroy=often(draw, YES, NO, odds),
    )


def offer_key(model: InterfaceModel) -> tuple[bytes | None, int, bytes | None]:
    return (model.id, model.revision, model.name)


# Distinct names: "first twice" makes the duplicates.
FUNCTION_LISTS = {odds: st.lists(functions(odds), max_size=5, unique_by=lambda f: f.name) for odds in ODDS}
INTERFACE_LISTS = {odds: st.lists(interfaces(odds), max_size=3, unique_by=None if odds else offer_key)
                   for odds in ODDS}


@st.composite
def plugins(draw: st.DrawFn, wrong: str) -> PluginModel:
    """A descriptor: valid ("nowhere"), or with fields broken in every
    documented way "anywhere" or only in its "tables" (functions, offers)."""
    table_odds = draw(st.sampled_from(ODDS[1:])) if wrong != "nowhere" else 0
    odds = table_odds if wrong == "anywhere" else 0
    fn_list = draw(FUNCTION_LISTS[table_odds])
    fn_table: list[FunctionModel] | None = fn_list
    fn_count = len(fn_list)
    table = draw(TABLE) if table_odds else "as is"
    if table == "too many":
        fn_count = draw(st.integers(_MAX_FUNCTIONS + 1, 2**32 - 1))  # refused before the table is read
    elif table == "NULL table":
        fn_table = None
        fn_count = draw(st.integers(0, _MAX_FUNCTIONS))
    elif table == "first twice" and fn_list:
        fn_list.append(fn_list[0])  # its name twice
        fn_count += 1
    iface_list = draw(INTERFACE_LISTS[table_odds])
    iface_table: list[InterfaceModel] | None = iface_list
    iface_count = len(iface_list)
    table = draw(TABLE) if table_odds else "as is"
    if table == "too many":
        iface_count = draw(st.integers(_MAX_FUNCTIONS + 1, 2**32 - 1))
    elif table == "NULL table":
        iface_table = None
        iface_count = draw(st.integers(0, _MAX_FUNCTIONS))
    elif table == "first twice" and iface_list:
        iface_list.append(iface_list[0])  # the same implementation twice
        iface_count += 1
    size = st.sampled_from([PLUGIN_V1_SIZE, PLUGIN_V12_SIZE]) | st.integers(PLUGIN_V1_SIZE, 2**32 - 1)
    return PluginModel(
        magic=often(draw, st.just(abi.MAGIC), U64, odds),
        struct_size=often(draw, size, st.integers(0, PLUGIN_V1_SIZE - 1), odds),
        abi_major=often(draw, st.just(abi.ABI_MAJOR), st.integers(0, 2**16 - 1), odds),
        abi_minor=draw(st.integers(0, 2**16 - 1)),
        id=often(draw, GOOD_ID, BAD_ID, odds),
        name=often(draw, REQUIRED_TEXT, BAD_REQUIRED_TEXT, odds),
        version=often(draw, REQUIRED_TEXT, BAD_REQUIRED_TEXT, odds),
        description=often(draw, OPTIONAL_TEXT, BAD, odds),
        license=often(draw, OPTIONAL_TEXT, BAD, odds),
        flags=draw(U32),
        functions=fn_table,
        function_count=fn_count,
        interfaces=iface_table,
        interface_count=iface_count,
        init=draw(st.booleans()),
        shutdown=draw(st.booleans()),
    )


def build(model: PluginModel, keep: list[Any]) -> Any:
    """The model as a ferrule_plugin in memory; keep holds every allocation."""
    raw = ffi.new("ferrule_plugin *")
    keep.append(raw)
    raw.magic = model.magic
    raw.struct_size = model.struct_size
    raw.abi_major = model.abi_major
    raw.abi_minor = model.abi_minor
    raw.id = c_text(keep, model.id)
    raw.name = c_text(keep, model.name)
    raw.version = c_text(keep, model.version)
    raw.description = c_text(keep, model.description)
    raw.license = c_text(keep, model.license)
    raw.flags = model.flags
    raw.function_count = model.function_count
    raw.interface_count = model.interface_count
    raw.init = INIT if model.init else NULL
    raw.shutdown = SHUTDOWN if model.shutdown else NULL
    if model.functions is not None:
        table = ffi.new("ferrule_function *[]", max(len(model.functions), 1))
        keep.append(table)
        for i, f in enumerate(model.functions):
            if f.entry:
                entry = table[i] = ffi.new("ferrule_function *")
                keep.append(entry)
                entry.struct_size = f.struct_size
                entry.flags = f.flags
                entry.name = c_text(keep, f.name)
                entry.signature = c_text(keep, f.signature)
                entry.doc = c_text(keep, f.doc)
                entry.call = CALL if f.call else NULL
        raw.functions = table
    if model.interfaces is not None:
        table = ffi.new("ferrule_interface *[]", max(len(model.interfaces), 1))
        keep.append(table)
        for i, m in enumerate(model.interfaces):
            if m.entry:
                entry = table[i] = ffi.new("ferrule_interface *")
                keep.append(entry)
                entry.struct_size = m.struct_size
                entry.flags = m.flags
                entry.id = c_text(keep, m.id)
                entry.revision = m.revision
                entry.method_count = m.method_count
                entry.fingerprint = m.fingerprint
                entry.layout = c_text(keep, m.layout)
                entry.name = c_text(keep, m.name)
                entry.doc = c_text(keep, m.doc)
                if m.methods is not None:
                    methods = ffi.new("ferrule_call_fn[]", [CALL if ok else NULL for ok in m.methods] or [NULL])
                    keep.append(methods)
                    entry.methods = methods
                entry.create = CREATE if m.create else NULL
                entry.destroy = DESTROY if m.destroy else NULL
        raw.interfaces = table
    return raw


@dataclass
class ExpectedOffer:
    id: str
    revision: int
    name: str
    doc: str
    flags: int
    fingerprint: int
    layout: str
    method_count: int


@dataclass
class Expected:
    id: str
    name: str
    version: str
    description: str
    license: str
    functions: dict[str, tuple[Signature, str, int]]  # name: signature, doc, flags
    offers: list[ExpectedOffer]


def expected_read(m: PluginModel) -> Expected:
    """What reading the model must give, following docs/errors.md and
    docs/abi.md; raises Refused with the error the reader must raise."""
    if m.magic in (0, abi.MAGIC) and m.struct_size == 0:  # a head left out of the initialiser
        raise Refused(BadMagicError if m.magic == 0 else DescriptorTooSmallError)
    if m.magic != abi.MAGIC:
        raise Refused(BadMagicError)
    if m.abi_major != abi.ABI_MAJOR:
        raise Refused(AbiVersionError)
    if m.struct_size < PLUGIN_V1_SIZE:
        raise Refused(DescriptorTooSmallError)
    ident = expected_text(m.id, True)
    if not REVERSE_DNS.fullmatch(ident):
        raise Refused(MetadataError)
    out = Expected(ident, expected_text(m.name, True), expected_text(m.version, True),
                   expected_text(m.description, False), expected_text(m.license, False), {}, [])
    if m.function_count > _MAX_FUNCTIONS:
        raise Refused(MetadataError)
    if m.function_count and m.functions is None:
        raise Refused(DescriptorError)
    for f in m.functions or []:
        if not f.entry:
            raise Refused(DescriptorError)
        if f.struct_size < FUNCTION_SIZE:
            raise Refused(DescriptorTooSmallError)
        name = expected_text(f.name, True)
        if not name.isidentifier() or name in out.functions:
            raise Refused(MetadataError)
        try:
            signature = parse_signature(expected_text(f.signature, True))
        except ValueError:
            raise Refused(SignatureError) from None
        if not f.call:
            raise Refused(DescriptorError)
        out.functions[name] = (signature, expected_text(f.doc, False), f.flags)
    if m.struct_size < PLUGIN_V12_SIZE or m.interface_count == 0:
        return out
    if m.interface_count > _MAX_FUNCTIONS:
        raise Refused(MetadataError)
    if m.interfaces is None:
        raise Refused(DescriptorError)
    for i in m.interfaces:
        if not i.entry:
            raise Refused(DescriptorError)
        if i.struct_size < INTERFACE_SIZE:
            raise Refused(DescriptorTooSmallError)
        iface_id = expected_text(i.id, True)
        if not REVERSE_DNS.fullmatch(iface_id):
            raise Refused(MetadataError)
        name = expected_text(i.name, True)
        if not name or any((o.id, o.revision, o.name) == (iface_id, i.revision, name) for o in out.offers):
            raise Refused(MetadataError)
        if i.method_count > MAX_METHODS:
            raise Refused(MetadataError)
        if i.method_count and (i.methods is None or not all(i.methods)) or not (i.create and i.destroy):
            raise Refused(DescriptorError)
        out.offers.append(ExpectedOffer(iface_id, i.revision, name, expected_text(i.doc, False), i.flags,
                                        i.fingerprint, expected_text(i.layout, False), i.method_count))
    return out


def address(cdata: Any) -> int:
    return int(ffi.cast("uintptr_t", cdata))


def read(model: PluginModel, keep: list[Any]) -> tuple[_Descriptor | DescriptorError, Expected | Refused]:
    """Build the model, read it, and say what the reader should have done.
    What was read points into keep: hold it until done with the result."""
    raw = build(model, keep)
    try:
        expected: Expected | Refused = expected_read(model)
    except Refused as refused:
        expected = refused
    try:
        got: _Descriptor | DescriptorError = _Descriptor(raw, WHERE)
    except DescriptorError as exc:  # anything else fails the test
        got = exc
    return got, expected


def assert_read_back(desc: _Descriptor, expected: Expected, model: PluginModel) -> None:
    spec = desc.spec
    assert spec.abi_version == (model.abi_major, model.abi_minor)
    assert (spec.id, spec.name, spec.version, spec.description, spec.license) == (
        expected.id, expected.name, expected.version, expected.description, expected.license)
    assert [f.name for f in spec.functions] == list(expected.functions)
    cls = _plugin.plugin_class(desc)
    for info, call in zip(spec.functions, desc.calls):
        name = info.name
        signature, doc, flags = expected.functions[name]
        assert (info.name, info.signature, info.doc, info.flags) == (name, signature, doc, flags)
        assert address(call) == address(CALL)
        slot = cls.__dict__.get(name)
        if not name.startswith("_") and name not in _plugin.RESERVED:
            assert isinstance(slot, _plugin._FunctionSlot) and slot.spec is info
        else:
            assert not isinstance(slot, _plugin._FunctionSlot)
    found = [ExpectedOffer(o.id, o.revision, o.name, o.doc, o.flags, o.fingerprint, o.layout, o.method_count)
             for o in spec.offers]
    assert found == expected.offers
    for offer, entry in zip(spec.offers, desc.offer_entries):
        assert address(entry.create) == address(CREATE) and address(entry.destroy) == address(DESTROY)
        assert all(address(entry.methods[n]) == address(CALL) for n in range(offer.method_count))
    assert address(desc.init) == (address(INIT) if model.init else 0)
    assert address(desc.shutdown) == (address(SHUTDOWN) if model.shutdown else 0)
    assert issubclass(cls, ferrule.Plugin)


@given(plugins(wrong="nowhere"))
def test_valid_descriptors_read_back_what_was_written(model: PluginModel) -> None:
    keep: list[Any] = []
    desc, expected = read(model, keep)
    assert isinstance(expected, Expected), expected
    assert isinstance(desc, _Descriptor), desc
    assert_read_back(desc, expected, model)


@given(plugins(wrong="anywhere") | plugins(wrong="tables"))
def test_any_descriptor_reads_back_or_raises_the_documented_error(model: PluginModel) -> None:
    keep: list[Any] = []
    desc, expected = read(model, keep)
    if isinstance(expected, Refused):
        assert type(desc) is expected.error, (desc, expected.error)  # the class docs/errors.md names
        assert str(desc).strip()
    else:
        assert isinstance(desc, _Descriptor), desc
        assert_read_back(desc, expected, model)


@given(st.sampled_from(["magic", "abi_major", "struct_size"]), U64, st.integers(0, 2**16 - 1))
def test_a_bad_header_is_refused_first(field: str, value: int, minor: int) -> None:
    # The rest is a valid descriptor: reading on would succeed.
    keep: list[Any] = []
    raw = build(PluginModel(abi.MAGIC, PLUGIN_V12_SIZE, abi.ABI_MAJOR, minor, b"org.fuzz.header", b"n", b"1", None,
                            None, 0, [], 0, [], 0, False, False), keep)
    expected: tuple[type[DescriptorError], str]
    if field == "magic":
        raw.magic = value if value != abi.MAGIC else 0
        expected = (BadMagicError, f"{WHERE}: descriptor starts with {raw.magic:#018x}, expected the magic")
        if raw.magic == 0:
            expected = (BadMagicError, f"{WHERE}: descriptor starts with zeros where FERRULE_MAGIC")
        elif raw.magic == 0x21454C5552524546:
            expected = (BadMagicError, f"{WHERE}: descriptor starts with {raw.magic:#018x}, the magic")
    elif field == "abi_major":
        raw.abi_major = value % 2**16 if value % 2**16 != abi.ABI_MAJOR else 0
        expected = (AbiVersionError, f"{WHERE} was built for ferrule ABI {raw.abi_major}.{minor}, this host speaks")
    else:
        raw.struct_size = value % PLUGIN_V1_SIZE
        expected = (DescriptorTooSmallError, f"{WHERE}: descriptor struct_size is {raw.struct_size} bytes")
        if raw.struct_size == 0:
            expected = (DescriptorTooSmallError, f"{WHERE}: the descriptor's head (magic, struct_size, abi_major, "
                                                 "abi_minor) is not filled in: struct_size is 0")
    with pytest.raises(DescriptorError) as info:
        _Descriptor(raw, WHERE)
    assert (type(info.value), str(info.value)[:len(expected[1])]) == expected
    if isinstance(info.value, AbiVersionError):
        assert info.value.plugin_version == (raw.abi_major, minor)
        assert info.value.host_version == (abi.ABI_MAJOR, abi.ABI_MINOR)


@given(st.one_of(GOOD_ID, NOT_REVERSE_DNS, st.binary(max_size=12)))
def test_plugin_ids_are_reverse_dns(ident: bytes) -> None:
    keep: list[Any] = []
    model = PluginModel(abi.MAGIC, PLUGIN_V12_SIZE, abi.ABI_MAJOR, 0, ident, b"n", b"1", None, None, 0, [], 0, [], 0,
                        False, False)
    desc, _ = read(model, keep)
    try:
        text = expected_text(ident, True)
    except Refused:
        assert isinstance(desc, MetadataError) and "plugin id is not valid UTF-8" in str(desc)
        return
    if REVERSE_DNS.fullmatch(text):
        assert isinstance(desc, _Descriptor) and desc.spec.id == text
    else:
        assert isinstance(desc, MetadataError)
        assert str(desc) == (f"{WHERE}: plugin id {text!r} is not reverse-DNS (like 'org.example.greeter'): "
                             "fix the descriptor")


@given(GOOD_SIGNATURE | BAD_SIGNATURE.filter(lambda raw: raw is not None))
def test_function_signatures_parse_or_raise_signature_error(raw: bytes) -> None:
    keep: list[Any] = []
    function = FunctionModel(True, FUNCTION_SIZE, 0, b"f", raw, None, True)
    model = PluginModel(abi.MAGIC, PLUGIN_V12_SIZE, abi.ABI_MAJOR, 2, b"org.fuzz.sig", b"n", b"1", None, None, 0,
                        [function], 1, [], 0, False, False)
    desc, _ = read(model, keep)
    try:
        text = expected_text(raw, True)
    except Refused:
        assert type(desc) is MetadataError and "function 'f' signature is not valid UTF-8" in str(desc)
        return
    outcome = parse_outcome(text)
    if isinstance(outcome, Signature):
        assert isinstance(desc, _Descriptor) and desc.spec.function("f").signature == outcome
    else:
        assert type(desc) is SignatureError
        assert str(desc) == (f"plugin 'org.fuzz.sig' function 'f' has a malformed signature {text!r}: {outcome}; "
                             "expected e.g. '(a: i64, b: i64) -> i64'")


@given(st.lists(interfaces(0), min_size=1, max_size=3, unique_by=offer_key))
def test_offers_are_accepted_or_refused_by_their_layout(models: list[InterfaceModel]) -> None:
    # check_offer on what a descriptor offers: a match of fingerprint and
    # method count, or InterfaceMismatchError carrying both layouts.
    plugin = PluginModel(abi.MAGIC, PLUGIN_V12_SIZE, abi.ABI_MAJOR, 2, b"org.fuzz.offers", b"n", b"1", None, None, 0,
                         [], 0, models, len(models), False, False)
    keep: list[Any] = []
    desc, _ = read(plugin, keep)
    assert isinstance(desc, _Descriptor), desc
    for offer in desc.spec.offers:
        if (offer.id, offer.revision) != COUNTER.key:
            continue  # the host checks only offers of the interface it asks for
        if offer.fingerprint == COUNTER.fingerprint and offer.method_count == len(COUNTER.methods):
            check_offer(desc.spec.id, offer, COUNTER)
            continue
        with pytest.raises(InterfaceMismatchError) as info:
            check_offer(desc.spec.id, offer, COUNTER)
        assert (info.value.expected_layout, info.value.found_layout) == (COUNTER.layout, offer.layout)
        message = str(info.value)
        assert message.startswith(f"plugin 'org.fuzz.offers' implementation {offer.name!r} of {COUNTER.id}/1 ")
        if offer.fingerprint == COUNTER.fingerprint:
            detail = f"it has {offer.method_count} methods, the declaration {len(COUNTER.methods)}"
        elif offer.layout:
            detail = "first difference: "
        else:
            detail = "the plugin gives no layout text"
        assert detail in message


# ------------------------------------------------------------------ library file headers

@st.composite
def elf_headers(draw: st.DrawFn) -> bytes:
    """64 bytes that start like an ELF file, for this machine or another."""
    order = draw(st.sampled_from([1, 2]))
    head = bytearray(draw(st.binary(min_size=64, max_size=64)))
    head[:4] = b"\x7fELF"
    head[4] = draw(st.sampled_from([1, 2, 2, 0, 7]))  # 32-bit, 64-bit, nonsense
    head[5] = order
    e_type = draw(st.sampled_from([1, 2, 3, 3, 3, 4]) | st.integers(0, 2**16 - 1))
    e_machine = draw(st.sampled_from([62, 62, 62, 183, 3, 40]) | st.integers(0, 2**16 - 1))
    head[16:20] = struct.pack("<HH" if order == 1 else ">HH", e_type, e_machine)
    return bytes(head[:draw(st.sampled_from([64, 64, 64, 19, 20, 4]))])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("headers") / "libfuzz.so"


MACHO_AND_PE = st.sampled_from([b"MZ", b"\xcf\xfa\xed\xfe"]).map(lambda magic: magic + b"\0" * 30)


@given(st.one_of(st.binary(max_size=64), elf_headers(), MACHO_AND_PE))
def test_library_file_headers_are_classified(scratch: Path, head: bytes) -> None:
    # What the host reads of a plugin file that dlopen refused: None only
    # for a shared library of this machine, otherwise a LibraryError naming the file.
    scratch.write_bytes(head)
    usable = False
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        e_type, e_machine = struct.unpack_from("<HH" if head[5] == 1 else ">HH", head, 16)
        elf_class = 2 if struct.calcsize("P") == 8 else 1
        usable = head[4] == elf_class and e_type == 3 and e_machine == _elf._host_machine()
    try:
        check_header(str(scratch))
    except (NotALibraryError, WrongArchitectureError) as exc:
        assert not usable, exc
        assert str(exc).startswith(f"{scratch} ")
    else:
        assert usable, head


# ------------------------------------------------------------------ bytes through host callbacks

ECHO_SOURCE = r"""
/* Hands the host whatever bytes the test passes: as a str result, a log
 * message, a failure message, and a str argument of a host function. */
#include <string.h>

#include "ferrule.h"

static int32_t f_text(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    return ferrule_return_copy(host, ret, args[0].bytes.ptr, args[0].bytes.len);
}

static int32_t f_log(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    (void)ret;
    host->log(host, (int32_t)args[0].i64, (const char *)args[1].bytes.ptr, args[1].bytes.len);
    return FERRULE_OK;
}

static int32_t f_fail(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    (void)ret;
    host->set_error(host, (const char *)args[0].bytes.ptr, args[0].bytes.len);
    return FERRULE_ERROR;
}

static int32_t f_give(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value arg, out;
    (void)state;
    memset(&arg, 0, sizeof arg);
    memset(&out, 0, sizeof out);
    arg.bytes.ptr = args[1].bytes.ptr;
    arg.bytes.len = args[1].bytes.len;
    if (host->invoke(host, args[0].func, &arg, &out) != FERRULE_OK) {
        return ferrule_fail(host, "the host function failed");
    }
    ret->i64 = out.i64;
    return FERRULE_OK;
}

static const ferrule_function fn_text = FERRULE_FUNCTION("text", "(data: bytes) -> str", "", 0, f_text);
static const ferrule_function fn_log = FERRULE_FUNCTION("log", "(level: i32, data: bytes)", "", 0, f_log);
static const ferrule_function fn_fail = FERRULE_FUNCTION("fail", "(data: bytes)", "", 0, f_fail);
static const ferrule_function fn_give = FERRULE_FUNCTION(
    "give", "(f: fn(str) -> i64, data: bytes) -> i64", "", 0, f_give);
static const ferrule_function *const functions[] = {&fn_text, &fn_log, &fn_fail, &fn_give};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.ferrule.tests.echo", "Echo", "1.0", "", "MIT",
    sizeof functions / sizeof functions[0], 0, functions, NULL, NULL, 0, 0, NULL,
};

FERRULE_ENTRY { return &descriptor; }
"""

PLACEHOLDER = "(the plugin gave no error message)"
LEVELS = {abi.LOG_TRACE: 5, abi.LOG_DEBUG: logging.DEBUG, abi.LOG_INFO: logging.INFO, abi.LOG_WARN: logging.WARNING,
          abi.LOG_ERROR: logging.ERROR}


T = TypeVar("T")


def on_each_call_path(make: Callable[[], T]) -> dict[str, T]:
    """make() with the C accelerator on (when built) and off: plugins loaded
    inside take that path. Keyed "c" and "python"."""
    made: dict[str, T] = {}
    saved = accelerator.enabled
    try:
        for name, accelerate in (("c", True), ("python", False)):
            if accelerate and accelerator.speedups is None:
                continue
            accelerator.enabled = accelerate
            made[name] = make()
    finally:
        accelerator.enabled = saved
    return made


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ferrule.Plugin]]:
    """The echo plugin loaded once per call path: through the C accelerator
    (when built) and through cffi."""
    source = tmp_path_factory.mktemp("echo") / "echo.c"
    source.write_text(ECHO_SOURCE)
    path = compile_plugin(source, source.with_name("libecho.so"))
    loaded = on_each_call_path(lambda: ferrule.load(path))
    for name, plugin in loaded.items():
        assert plugin._core.accelerated == (name == "c")
    yield loaded
    for plugin in loaded.values():
        plugin.close()


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except Exception as exc:
        return (type(exc).__name__, str(exc))


PAYLOADS = st.one_of(st.binary(max_size=200), bad_text(), good_text(), long_texts())


@given(PAYLOADS)
def test_text_results_decode_or_raise_plugin_call_error(echo: dict[str, ferrule.Plugin], data: bytes) -> None:
    outcomes = {path: outcome(lambda: plugin.text(data)) for path, plugin in echo.items()}
    try:
        expected: tuple[str, Any] = ("ok", data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        expected = ("PluginCallError", f"plugin 'org.ferrule.tests.echo' function 'text' returned text that is not "
                                       f"valid UTF-8 ({exc.reason} at byte {exc.start}); expected str")
    assert outcomes == {path: expected for path in echo}


@given(PAYLOADS)
def test_failure_messages_are_kept_as_text(echo: dict[str, ferrule.Plugin], data: bytes) -> None:
    message = data[:_MAX_TEXT].decode("utf-8", "replace") or PLACEHOLDER
    for plugin in echo.values():
        with pytest.raises(PluginCallError) as info:
            plugin.fail(data)
        assert info.value.plugin_message == message
        assert str(info.value) == f"plugin 'org.ferrule.tests.echo' function 'fail' failed: {message}"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@given(st.integers(-(2**31), 2**31 - 1) | st.integers(-2, 6), PAYLOADS)
def test_log_messages_are_decoded_with_replacement(echo: dict[str, ferrule.Plugin], level: int, data: bytes) -> None:
    logger = logging.getLogger("ferrule.plugin.org.ferrule.tests.echo")
    handler = Records()
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(1)
    try:
        for plugin in echo.values():
            plugin.log(level, data)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    message = data.decode("utf-8", "replace")
    levelno = LEVELS[min(max(level, abi.LOG_TRACE), abi.LOG_ERROR)]
    assert [(r.levelno, r.getMessage()) for r in handler.records] == [(levelno, message)] * len(echo)


@given(PAYLOADS)
def test_text_arguments_of_host_functions(echo: dict[str, ferrule.Plugin], data: bytes) -> None:
    # The host function sees the plugin's text only when it is UTF-8; both
    # call paths fail the same way otherwise.
    seen: list[str] = []

    def host_fn(text: str) -> int:
        seen.append(text)
        return len(text)

    outcomes = {path: outcome(lambda: plugin.give(host_fn, data)) for path, plugin in echo.items()}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert seen == []
        assert len(set(outcomes.values())) == 1 and all(o[0] != "ok" for o in outcomes.values()), outcomes
    else:
        assert seen == [text] * len(echo)
        assert outcomes == {path: ("ok", len(text)) for path in echo}


# ------------------------------------------------------------------ findings not fixed yet
# Each fails today; when its fix lands, strict=True turns the pass into a failure: drop the mark.

def test_an_interface_id_with_a_trailing_newline_is_refused() -> None:
    keep: list[Any] = []
    offer = InterfaceModel(True, INTERFACE_SIZE, 0, b"org.fuzz.counter\n", 1, 0, None, b"c", None, [], 0, True, True)
    model = PluginModel(abi.MAGIC, PLUGIN_V12_SIZE, abi.ABI_MAJOR, 2, b"org.fuzz.ids", b"n", b"1", None, None, 0,
                        [], 0, [offer], 1, False, False)
    desc, _ = read(model, keep)
    assert isinstance(desc, MetadataError)


def test_trailing_whitespace_parses_in_linear_time() -> None:
    text = "(a: int)" + " " * (_signature._MAX_LENGTH - 8)  # malformed: the full parser tokenizes it all
    times = []
    for _ in range(2):
        start = time.perf_counter()
        with pytest.raises(ValueError, match="found 'int'"):
            parse_signature.__wrapped__(text)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.02, f"{min(times):.3f} s for {len(text)} characters"


def test_non_utf8_text_for_a_host_function_is_a_plugin_call_error(echo: dict[str, ferrule.Plugin]) -> None:
    for plugin in echo.values():
        with pytest.raises(PluginCallError, match="org.ferrule.tests.echo"):
            plugin.give(len, b"\xff")


# -- struct and handle arguments of interface methods: the C packing against the Python one


@pytest.fixture(scope="module")
def parity_methods(built: Any) -> Iterator[dict[str, Any]]:
    """The parity plugin's Parity instance "direct", made once on each call
    path: the C accelerator packs structs in C, the cffi path in Python."""
    from tests import parity_api

    plugins = on_each_call_path(lambda: ferrule.PluginHost().load(built.parity))
    made = {name: plugin.create(parity_api.Parity, "direct") for name, plugin in plugins.items()}
    yield made
    for instance in made.values():
        instance.close()
    for plugin in plugins.values():
        plugin.close()


FIELD_VALUES = st.one_of(
    st.integers(-(2**31), 2**32), st.integers(-(2**70), 2**70), st.booleans(), st.floats(allow_nan=False),
    st.sampled_from([None, "3", b"3"]),
)


@st.composite
def rects(draw: Any) -> Any:
    from tests import parity_api

    def field(likely: Any) -> Any:
        return draw(likely | FIELD_VALUES) if draw(st.integers(0, 5)) == 0 else draw(likely)

    x, y = field(st.integers(-(2**31), 2**31 - 1)), field(st.integers(-(2**31), 2**31 - 1))
    if draw(st.integers(0, 9)) == 0:
        origin: Any = draw(st.sampled_from([None, (x, y), parity_api.Rect]))
    else:
        origin = parity_api.Point(x, y)
    return parity_api.Rect(origin, field(st.integers(0, 2**16)), field(st.integers(0, 2**16)),
                           field(st.booleans()), field(st.integers(0, 2**64 - 1)))


@given(rects(), st.integers(0, 2**16) | FIELD_VALUES)
def test_struct_methods_give_the_same_result_or_error_on_every_path(parity_methods: dict[str, Any], rect: Any,
                                                                    by: Any) -> None:
    for method in ("area", "grow"):
        def call(instance: Any) -> Any:
            return getattr(instance, method)(rect) if method == "area" else instance.grow(rect, by)

        outcomes = {path: outcome(lambda: call(instance)) for path, instance in parity_methods.items()}
        assert len(set(map(repr, outcomes.values()))) == 1, outcomes
