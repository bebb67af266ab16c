"""Descriptor validation: read a plugin's descriptor through its entry point,
check it field by field in the order ABI 1.x defines, and turn it into a
PluginSpec plus the pointers the call path needs.

Every check raises a DescriptorError subclass whose message says what was
found, what was expected and what to do. Nothing here calls plugin code other
than the entry point (init runs later, in _plugin).
"""

from __future__ import annotations

import threading
from typing import Any

from .._errors import (
    AbiVersionError,
    BadMagicError,
    DescriptorError,
    DescriptorTooSmallError,
    MetadataError,
    NoEntryPointError,
    SignatureError,
)
from .._loader import Library
from .._loader.elf import defined_symbols
from . import cdef as abi
from .ffi import ffi
from .signature import parse_signature
from .spec import ID_RE, MAX_METHODS, FunctionSpec, OfferSpec, PluginSpec, is_function_name

__all__ = ["ENTRY_SYMBOL", "Descriptor", "OfferEntry", "describe"]

ENTRY_SYMBOL = f"ferrule_entry_v{abi.ABI_MAJOR}"
PLUGIN_V10_SIZE = ffi.offsetof("ferrule_plugin", "interface_count")  # ABI 1.0's size
PLUGIN_V12_SIZE = ffi.offsetof("ferrule_plugin", "interfaces") + ffi.sizeof("void *")
FUNCTION_V10_SIZE = ffi.sizeof("ferrule_function")
INTERFACE_V12_SIZE = ffi.sizeof("ferrule_interface")
MAX_FUNCTIONS = 4096  # also the most interface implementations
MAX_TEXT = 1 << 16  # bytes read of one descriptor string


class OfferEntry:
    """The pointers of one interface implementation: its vtable, create and destroy."""

    __slots__ = ("methods", "create", "destroy")

    def __init__(self, methods: Any, create: Any, destroy: Any):
        self.methods = methods
        self.create = create
        self.destroy = destroy


class Descriptor:
    """A checked descriptor: its spec, and for the call path the function
    pointers (parallel to spec.functions), the offers' pointers (parallel to
    spec.offers), init and shutdown. Read once per mapped library; it never
    changes while the library is mapped, which is always."""

    __slots__ = ("spec", "calls", "offer_entries", "init", "shutdown")

    def __init__(self, raw: Any, where: str, path: str = ""):
        """Check ``raw``, a ``ferrule_plugin *``; ``where`` starts the
        messages (the library's path). Whatever raw points to must stay alive."""
        _check_head(raw, where)
        ident = text(raw.id, "plugin id")
        if not ID_RE.fullmatch(ident):
            raise MetadataError(
                f"{where}: plugin id {ident!r} is not reverse-DNS (like 'org.example.greeter'): fix the descriptor"
            )
        name = text(raw.name, f"plugin {ident!r} name")
        version = text(raw.version, f"plugin {ident!r} version")
        description = text(raw.description, f"plugin {ident!r} description", required=False)
        license = text(raw.license, f"plugin {ident!r} license", required=False)
        functions, self.calls = _read_functions(raw, ident)
        offers, self.offer_entries = _read_offers(raw, ident)
        self.init = raw.init
        self.shutdown = raw.shutdown
        self.spec = PluginSpec(path, ident, name, version, description, license, (raw.abi_major, raw.abi_minor),
                               functions, offers)


def describe(library: Library) -> Descriptor:
    """The checked descriptor of a loaded library (cached per mapping)."""
    desc = _descriptors.get(library.handle)
    if desc is None:
        with _descriptors_lock:
            desc = _descriptors.get(library.handle)
            if desc is None:
                desc = _descriptors[library.handle] = Descriptor(_entry(library), library.path, library.path)
    return desc


# Keyed on the loader's handle: one entry per mapped library, never evicted
# because ferrule never unmaps a library.
_descriptors: dict[int, Descriptor] = {}
_descriptors_lock = threading.Lock()


def _entry(lib: Library) -> Any:
    """Call the entry point; the descriptor pointer it returns."""
    if ENTRY_SYMBOL not in lib:
        others = [f"ferrule_entry_v{n}" for n in range(0, 10) if n != abi.ABI_MAJOR and f"ferrule_entry_v{n}" in lib]
        if others:
            major = int(others[0].rsplit("v", 1)[1])
            raise AbiVersionError(
                f"{lib.path} exports {others[0]} (ABI {major}), this host speaks ABI {abi.ABI_MAJOR}: "
                f"rebuild the plugin against ABI {abi.ABI_MAJOR} or use a matching ferrule",
                (major, 0),
                (abi.ABI_MAJOR, abi.ABI_MINOR),
            )
        _refuse_a_cxx_entry(lib.path)
        raise NoEntryPointError(
            f"{lib.path} does not export {ENTRY_SYMBOL}, expected by every ferrule plugin: export it "
            "with the Rust SDK's plugin! macro or the C header's FERRULE_ENTRY"
        )
    entry = ffi.cast("ferrule_entry_fn", lib.symbol(ENTRY_SYMBOL))
    desc = entry()
    if desc == ffi.NULL:
        raise NoEntryPointError(f"{ENTRY_SYMBOL} in {lib.path} returned NULL, expected a descriptor")
    return desc


def _refuse_a_cxx_entry(path: str) -> None:
    """Raise NoEntryPointError if the library defines the entry point only
    under a C++-mangled name, exported or not: declared without extern "C"
    (by hand, or with the macro of a header older than its C++ fix)."""
    for exported in (True, False):
        found = [(symbol, parts) for symbol in defined_symbols(path, exported=exported)
                 if (parts := _cxx_name(symbol)) is not None and parts[-1] == ENTRY_SYMBOL]
        if not found:
            continue
        names = ", ".join(symbol if len(parts) == 1 else f"{symbol} ({'::'.join(parts)})" for symbol, parts in found)
        if exported:
            raise NoEntryPointError(
                f"{path} exports the entry point only with C++ linkage, as the mangled symbol {names}, "
                f"expected the C symbol {ENTRY_SYMBOL}: give it C linkage, by defining it with FERRULE_ENTRY "
                'from a current ferrule.h or declaring it extern "C"'
            )
        raise NoEntryPointError(
            f"{path} defines the entry point only with C++ linkage, as the mangled symbol {names}, and does "
            f"not export it, expected the exported C symbol {ENTRY_SYMBOL}: define it with FERRULE_ENTRY from "
            'a current ferrule.h (or declare it extern "C" with default visibility)'
        )


def _cxx_name(symbol: str) -> list[str] | None:
    """The qualified name, as parts, of a C++ function symbol in the Itanium
    mangling (g++, clang++): ["ferrule_entry_v1"] for _Z16ferrule_entry_v1v,
    ["ns", "ferrule_entry_v1"] for _ZN2ns16ferrule_entry_v1Ev. None for any
    other symbol, and for names this small reader does not follow (templates,
    operators, substitutions other than std::): it only has to recognise an
    entry point that lost its C linkage."""
    if not symbol.startswith("_Z"):
        return None
    pos = 2

    def source_name() -> str | None:
        """<length><identifier>, then any ABI tags (B<length><identifier>)."""
        nonlocal pos
        end = pos
        while end < len(symbol) and symbol[end] in "0123456789":
            end += 1
        if end == pos or symbol[pos] == "0":
            return None
        name = symbol[end:end + int(symbol[pos:end])]
        if len(name) != int(symbol[pos:end]):
            return None
        pos = end + len(name)
        while symbol.startswith("B", pos):
            pos += 1
            if source_name() is None:
                return None
        return name

    parts = []
    nested = symbol.startswith("N", pos)
    if nested:
        pos += 1
        while pos < len(symbol) and symbol[pos] in "rVKRO":  # cv- and ref-qualifiers of a member
            pos += 1
    if symbol.startswith("St", pos):
        parts.append("std")
        pos += 2
    while True:
        name = source_name()
        if name is None:
            return None
        parts.append(name)
        if not nested:
            return parts
        if symbol.startswith("E", pos):
            return parts


def _check_head(desc: Any, where: str) -> None:
    """Magic, ABI major and size: checked before any other field is read."""
    if desc.magic in (0, abi.MAGIC) and desc.struct_size == 0:
        # A designated initialiser without FERRULE_PLUGIN_HEAD: the fields it
        # leaves out are zero, and no SDK ever writes struct_size 0.
        _head_not_filled(desc, where)
    if desc.magic == 0:
        raise BadMagicError(
            f"{where}: descriptor starts with zeros where FERRULE_MAGIC ({abi.MAGIC:#018x}) belongs: fill the "
            "head with FERRULE_PLUGIN_HEAD (or set .magic = FERRULE_MAGIC)"
        )
    if desc.magic == _SWAPPED_MAGIC:
        raise BadMagicError(
            f"{where}: descriptor starts with {desc.magic:#018x}, the magic {abi.MAGIC:#018x} with its bytes "
            "reversed: FERRULE_MAGIC is a native-endian integer; set it as the integer (FERRULE_PLUGIN_HEAD "
            "does), not as the bytes \"FERRULE!\", and build the plugin for this machine"
        )
    if desc.magic != abi.MAGIC:
        raise BadMagicError(
            f"{where}: descriptor starts with {desc.magic:#018x}, expected the magic "
            f"{abi.MAGIC:#018x}: the entry point returns something that is not a ferrule descriptor"
        )
    found = (desc.abi_major, desc.abi_minor)
    host = (abi.ABI_MAJOR, abi.ABI_MINOR)
    if desc.abi_major != abi.ABI_MAJOR:
        raise AbiVersionError(
            f"{where} was built for ferrule ABI {found[0]}.{found[1]}, this host speaks ABI "
            f"{host[0]}.{host[1]}: rebuild the plugin against ABI {host[0]}",
            found,
            host,
        )
    if desc.struct_size < PLUGIN_V10_SIZE:
        raise DescriptorTooSmallError(
            f"{where}: descriptor struct_size is {desc.struct_size} bytes, ABI {host[0]}.0 needs at "
            f"least {PLUGIN_V10_SIZE}: rebuild the plugin with the current SDK"
        )


_SWAPPED_MAGIC = int.from_bytes(abi.MAGIC.to_bytes(8, "little"), "big")


def _head_not_filled(desc: Any, where: str) -> None:
    """Raise for a descriptor whose head was left out of its initialiser,
    naming the fields found zero."""
    fields = [("magic", desc.magic), ("struct_size", desc.struct_size), ("abi_major", desc.abi_major),
              ("abi_minor", desc.abi_minor)]
    zero = [name for name, value in fields if value == 0]
    if desc.abi_major != 0 and "abi_minor" in zero:  # minor 0 is a real version (1.0)
        zero.remove("abi_minor")
    error = BadMagicError if desc.magic == 0 else DescriptorTooSmallError
    raise error(
        f"{where}: the descriptor's head (magic, struct_size, abi_major, abi_minor) is not filled in: "
        f"{', '.join(zero)} {'is' if len(zero) == 1 else 'are'} 0: start the initialiser with "
        "FERRULE_PLUGIN_HEAD (or set .magic = FERRULE_MAGIC, .struct_size = sizeof(ferrule_plugin), "
        ".abi_major = FERRULE_ABI_MAJOR, .abi_minor = FERRULE_ABI_MINOR)"
    )


def text(ptr: Any, what: str, required: bool = True) -> str:
    """A NUL-terminated UTF-8 string of a descriptor. At most MAX_TEXT bytes
    are read, so that a missing NUL cannot run on through memory; a longer
    string is cut there, before the character the limit falls in."""
    if ptr == ffi.NULL:
        if required:
            raise MetadataError(f"{what} is NULL, expected a UTF-8 string: fill it in the descriptor")
        return ""
    raw = ffi.string(ptr, MAX_TEXT)
    try:
        return str(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        if len(raw) == MAX_TEXT and exc.reason == "unexpected end of data":
            return str(raw[:exc.start].decode("utf-8"))  # the cut, not the plugin, split a character
        shown = repr(raw)
        if len(raw) > 120:  # the bytes around the error, not all 64 KiB
            low = max(exc.start - 40, 0)
            shown = f"{raw[low:low + 80]!r} (bytes {low} to {min(low + 80, len(raw))} of {len(raw)})"
        raise MetadataError(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start}): {shown}") from None


def _read_functions(desc: Any, plugin: str) -> tuple[tuple[FunctionSpec, ...], tuple[Any, ...]]:
    count = desc.function_count
    if count > MAX_FUNCTIONS:
        raise MetadataError(f"plugin {plugin!r} declares {count} functions, at most {MAX_FUNCTIONS} allowed")
    if count and desc.functions == ffi.NULL:
        raise DescriptorError(f"plugin {plugin!r} declares {count} functions but its function table is NULL")
    specs: list[FunctionSpec] = []
    calls: list[Any] = []
    seen: set[str] = set()
    for i in range(count):
        raw = desc.functions[i]
        where = f"plugin {plugin!r} function #{i}"
        if raw == ffi.NULL:
            raise DescriptorError(f"{where} is NULL, expected a ferrule_function")
        if raw.struct_size == 0:
            # Built without FERRULE_FUNCTION (a designated initialiser without
            # .struct_size): the struct is whole, so its name is where it belongs.
            raise DescriptorTooSmallError(
                f"plugin {plugin!r} function {_name_if_readable(raw.name, i)}: its ferrule_function has "
                "struct_size 0: build each entry with FERRULE_FUNCTION(...) (or set "
                ".struct_size = sizeof(ferrule_function))"
            )
        if raw.struct_size < FUNCTION_V10_SIZE:
            raise DescriptorTooSmallError(
                f"{where}: struct_size is {raw.struct_size} bytes, ABI {abi.ABI_MAJOR}.0 needs at least "
                f"{FUNCTION_V10_SIZE}: rebuild the plugin with the current SDK"
            )
        name = text(raw.name, f"{where} name")
        if not is_function_name(name):
            raise MetadataError(f"{where} name {name!r} is not an identifier")
        if name in seen:
            raise MetadataError(f"plugin {plugin!r} exports two functions named {name!r}")
        seen.add(name)
        signature_text = text(raw.signature, f"plugin {plugin!r} function {name!r} signature")
        try:
            signature = parse_signature(signature_text)
        except ValueError as exc:
            raise SignatureError(
                f"plugin {plugin!r} function {name!r} has a malformed signature {signature_text!r}: {exc}; "
                "expected e.g. '(a: i64, b: i64) -> i64'"
            ) from None
        if raw.call == ffi.NULL:
            raise DescriptorError(f"plugin {plugin!r} function {name!r} has a NULL call pointer")
        doc = text(raw.doc, f"plugin {plugin!r} function {name!r} doc", required=False)
        specs.append(FunctionSpec(name, signature.text, doc, raw.flags))
        calls.append(raw.call)
    return tuple(specs), tuple(calls)


def _name_if_readable(ptr: Any, index: int) -> str:
    """'name' (#index) if the name is a valid identifier, else #index."""
    try:
        name = text(ptr, "name")
    except MetadataError:
        return f"#{index}"
    return f"{name!r} (#{index})" if is_function_name(name) else f"#{index}"


def _read_offers(desc: Any, plugin: str) -> tuple[tuple[OfferSpec, ...], tuple[OfferEntry, ...]]:
    if desc.struct_size < PLUGIN_V12_SIZE or desc.interface_count == 0:
        return (), ()
    count = desc.interface_count
    if count > MAX_FUNCTIONS:
        raise MetadataError(f"plugin {plugin!r} declares {count} interface implementations, at most {MAX_FUNCTIONS} allowed")
    if desc.interfaces == ffi.NULL:
        raise DescriptorError(f"plugin {plugin!r} declares {count} interface implementations but its table is NULL")
    offers: list[OfferSpec] = []
    entries: list[OfferEntry] = []
    seen: set[tuple[str, int, str]] = set()
    for i in range(count):
        raw = desc.interfaces[i]
        where = f"plugin {plugin!r} interface implementation #{i}"
        if raw == ffi.NULL:
            raise DescriptorError(f"{where} is NULL, expected a ferrule_interface")
        if raw.struct_size < INTERFACE_V12_SIZE:
            raise DescriptorTooSmallError(
                f"{where}: struct_size is {raw.struct_size} bytes, ABI {abi.ABI_MAJOR}.2 needs at least "
                f"{INTERFACE_V12_SIZE}: rebuild the plugin with the current SDK"
            )
        ident = text(raw.id, f"{where} id")
        if not ID_RE.fullmatch(ident):
            raise MetadataError(f"{where}: interface id {ident!r} is not reverse-DNS")
        name = text(raw.name, f"{where} name")
        if not name:
            raise MetadataError(f"{where} ({ident}) has an empty name")
        key = (ident, raw.revision, name)
        if key in seen:
            raise MetadataError(f"plugin {plugin!r} offers two implementations of {ident}/{raw.revision} named {name!r}")
        seen.add(key)
        where = f"plugin {plugin!r} implementation {name!r} of {ident}/{raw.revision}"
        if raw.method_count > MAX_METHODS:
            raise MetadataError(f"{where} has {raw.method_count} methods, at most {MAX_METHODS} allowed")
        if raw.method_count and raw.methods == ffi.NULL:
            raise DescriptorError(f"{where} has {raw.method_count} methods but a NULL method table")
        for m in range(raw.method_count):
            if raw.methods[m] == ffi.NULL:
                raise DescriptorError(f"{where}: method #{m} is NULL")
        if raw.create == ffi.NULL or raw.destroy == ffi.NULL:
            raise DescriptorError(f"{where} has a NULL create or destroy")
        layout = text(raw.layout, f"{where} layout", required=False)
        doc = text(raw.doc, f"{where} doc", required=False)
        offers.append(OfferSpec(ident, raw.revision, name, doc, raw.flags, raw.fingerprint, layout, raw.method_count))
        entries.append(OfferEntry(raw.methods, raw.create, raw.destroy))
    return tuple(offers), tuple(entries)
