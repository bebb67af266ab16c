"""The plugin spec: what a plugin's descriptor says, as one frozen,
serialisable value.

Descriptor validation (descriptor.py) produces it once per library. The
in-process plugin, the isolated child (which sends it to the host, and whose
restart the host checks against it), the scan worker and its cache, and the
CLI's ``inspect --json`` all use this one description. ``to_json`` /
``from_json`` are its only serial form; ``from_json`` trusts nothing (the
data may come from a hostile isolated child) and raises SpecError for
anything ``to_json`` would not write.

JSON form::

    {"path": str, "id": str, "name": str, "version": str, "description": str,
     "license": str, "abi_version": [major, minor],
     "functions": [[name, signature, doc, flags], ...],
     "offers": [[id, revision, name, doc, flags, fingerprint, layout, method_count], ...]}
"""

from __future__ import annotations

import functools
import operator
import re
from itertools import chain
from typing import Any, NamedTuple

from .cdef import FN_QUICK, FN_THREAD_SAFE, IFACE_THREAD_SAFE
from .signature import Signature, parse_signature

__all__ = ["FunctionSpec", "ID_RE", "MAX_METHODS", "OfferSpec", "PluginSpec", "SpecError", "is_function_name"]

# Plugin and interface ids: reverse-DNS. Used with fullmatch ($ would let "\n" through).
ID_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
MAX_METHODS = 256  # of one interface
_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1


def is_function_name(name: str) -> bool:
    """A plugin function's name: an identifier (Python's rule, as attributes need)."""
    return name.isidentifier()


class SpecError(ValueError):
    """Data that is not a plugin spec's JSON form."""


class FunctionSpec(NamedTuple):
    """One exported function: name, signature, doc and FERRULE_FN_* flags.

    The signature is kept as its canonical text and parsed (once, cached) by
    ``signature``: a tuple of plain values costs the garbage collector
    nothing, and a warm scan makes thousands."""

    name: str
    text: str  # the signature's canonical text
    doc: str = ""
    flags: int = 0

    @property
    def signature(self) -> Signature:
        return parse_signature(self.text)

    @property
    def thread_safe(self) -> bool:
        return bool(self.flags & FN_THREAD_SAFE)

    @property
    def quick(self) -> bool:
        return bool(self.flags & FN_QUICK)


class OfferSpec(NamedTuple):
    """One implementation of a host-defined interface that a plugin offers."""

    id: str
    revision: int
    name: str
    doc: str
    flags: int
    fingerprint: int
    layout: str
    method_count: int

    @property
    def thread_safe(self) -> bool:
        return bool(self.flags & IFACE_THREAD_SAFE)

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.revision)

    def __repr__(self) -> str:
        return f"<offer {self.id}/{self.revision} {self.name!r}>"


class PluginSpec(NamedTuple):
    """A plugin as its descriptor describes it, and the file it was read from.
    (A named tuple, like its parts: cheap to make by the thousand, and of no
    cost to the garbage collector once it holds only plain values.)"""

    path: str
    id: str
    name: str
    version: str
    description: str
    license: str
    abi_version: tuple[int, int]
    functions: tuple[FunctionSpec, ...]
    offers: tuple[OfferSpec, ...]

    @property
    def listing(self) -> tuple[tuple[str, str], ...]:
        """(name, signature text) of each function, as listings show them."""
        return function_listing(self.functions)

    @property
    def offer_listing(self) -> tuple[tuple[str, int, str], ...]:
        """(interface id, revision, implementation name) of each offer."""
        return offer_listing(self.offers)

    def function(self, name: str) -> FunctionSpec:
        """The function called name. Raises KeyError."""
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "license": self.license,
            "abi_version": list(self.abi_version),
            "functions": [list(f) for f in self.functions],
            "offers": [[o.id, o.revision, o.name, o.doc, o.flags, o.fingerprint, o.layout, o.method_count]
                       for o in self.offers],
        }

    @classmethod
    def from_own_json(cls, data: Any) -> PluginSpec:
        """The spec of JSON that ``to_json`` of this ferrule is known to have
        written (the scan cache proves it with a digest), made without
        from_json's checks. Raises ValueError or another plain error when the
        proof was wrong."""
        return tuple.__new__(cls, (*_TEXTS(data), tuple(data["abi_version"]), tuple(map(_make_function, data["functions"])),
                                   tuple(map(_make_offer, data["offers"]))))

    @classmethod
    def from_json(cls, data: Any) -> PluginSpec:
        """The spec ``to_json`` wrote. Raises SpecError for anything else.

        A warm scan reads a thousand of these, so the type checks run over
        whole columns (``set(map(type, ...))``) rather than item by item."""
        if type(data) is not dict or data.keys() != _KEYS:
            raise SpecError(f"expected an object with fields {sorted(_KEYS)}, got {_short(data)}")
        texts = _TEXTS(data)
        if not {*map(type, texts)} <= _STR:
            raise SpecError("path, id, name, version, description and license must be strings")
        if not ID_RE.fullmatch(texts[1]):
            raise SpecError(f"plugin id {_short(texts[1])} is not reverse-DNS")
        version = data["abi_version"]
        if not (type(version) is list and len(version) == 2 and {*map(type, version)} <= _INT
                and 0 <= min(version) and max(version) <= 0xFFFF):
            raise SpecError(f"abi_version {_short(version)}, expected [major, minor]")
        names, signatures, docs, flags = _columns(data["functions"], 4, "functions must be [name, signature, doc, flags]")
        if not ({*map(type, chain(names, signatures, docs))} <= _STR and {*map(type, flags)} <= _INT
                and (not flags or (min(flags) >= 0 and max(flags) <= _U32))):
            raise SpecError("a function holds a value of the wrong type")
        if len(set(names)) != len(names) or not all(map(is_function_name, names)):
            raise SpecError(f"function names {_short(list(names))} are not distinct identifiers")
        try:
            parsed = tuple(map(parse_signature, signatures))
        except ValueError as exc:
            raise SpecError(f"a function signature does not parse: {exc}") from None
        if tuple(map(_TEXT, parsed)) != signatures:
            raise SpecError("a function signature is not in its canonical form")
        functions = tuple(map(_make_function, zip(names, signatures, docs, flags)))
        ids = revisions = offer_names = offer_docs = layouts = ()
        offers: tuple[OfferSpec, ...] = ()
        if data["offers"] != []:
            columns = _columns(data["offers"], 8, "offers must be [id, revision, name, doc, flags, fingerprint, "
                                                  "layout, method_count]")
            ids, revisions, offer_names, offer_docs, offer_flags, fingerprints, layouts, counts = columns
            small = (*revisions, *offer_flags, *counts)
            if not ({*map(type, chain(ids, offer_names, offer_docs, layouts))} <= _STR
                    and {*map(type, chain(small, fingerprints))} <= _INT):
                raise SpecError("an offer holds a value of the wrong type")
            if not (min(small) >= 0 and max(small) <= _U32 and min(fingerprints) >= 0 and max(fingerprints) <= _U64
                    and all(map(ID_RE.fullmatch, ids))):
                raise SpecError("an offer holds a value out of range")
            offers = tuple(map(_make_offer, zip(*columns)))
        try:
            # Descriptor text was decoded from UTF-8: a lone surrogate (from a
            # JSON "\ud800" escape) is not something a descriptor said.
            "".join(chain(texts[1:], names, docs, ids, offer_names, offer_docs, layouts)).encode("utf-8")
        except UnicodeEncodeError:
            raise SpecError("text holds a lone surrogate, which is not UTF-8") from None
        return tuple.__new__(cls, (*texts, (version[0], version[1]), functions, offers))


# Made from checked rows at C speed (no Python-level __new__ per item).
_make_function = functools.partial(tuple.__new__, FunctionSpec)
_make_offer = functools.partial(tuple.__new__, OfferSpec)
_TEXT = operator.attrgetter("text")
_NAME_AND_TEXT = operator.itemgetter(0, 1)
_OFFER_KEY = operator.itemgetter(0, 1, 2)  # id, revision, name


def function_listing(rows: Any) -> tuple[tuple[str, str], ...]:
    """(name, signature text) of function rows: FunctionSpecs, or their JSON
    lists (the same order of fields)."""
    return tuple(map(_NAME_AND_TEXT, rows))


def offer_listing(rows: Any) -> tuple[tuple[str, int, str], ...]:
    """(interface id, revision, implementation name) of offer rows, specs or JSON."""
    return tuple(map(_OFFER_KEY, rows))
_TEXTS = operator.itemgetter("path", "id", "name", "version", "description", "license")
_FIELDS = ("path", "id", "name", "version", "description", "license", "abi_version", "functions", "offers")
_KEYS = frozenset(_FIELDS)
_STR = {str}
_INT = {int}  # type() is int: a JSON true is a bool, not an int


def _columns(rows: Any, width: int, complaint: str) -> tuple[tuple[Any, ...], ...]:
    """A list of ``width``-long lists, transposed; () columns when empty.
    (A row that is a string or an object gets through as its characters or
    keys; the type checks of the columns refuse it.)"""
    if type(rows) is not list:
        raise SpecError(complaint)
    if not rows:
        return ((),) * width
    try:
        columns = tuple(zip(*rows, strict=True))
    except (TypeError, ValueError):
        raise SpecError(complaint) from None
    if len(columns) != width:
        raise SpecError(complaint)
    return columns


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
