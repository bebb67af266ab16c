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

import re
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class FunctionSpec:
    """One exported function: name, parsed signature, doc and FERRULE_FN_* flags."""

    name: str
    signature: Signature
    doc: str = ""
    flags: int = 0

    @property
    def thread_safe(self) -> bool:
        return bool(self.flags & FN_THREAD_SAFE)

    @property
    def quick(self) -> bool:
        return bool(self.flags & FN_QUICK)


@dataclass(frozen=True)
class OfferSpec:
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


@dataclass(frozen=True)
class PluginSpec:
    """A plugin as its descriptor describes it, and the file it was read from."""

    path: str
    id: str
    name: str
    version: str
    description: str
    license: str
    abi_version: tuple[int, int]
    functions: tuple[FunctionSpec, ...]
    offers: tuple[OfferSpec, ...]

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
            "functions": [[f.name, str(f.signature), f.doc, f.flags] for f in self.functions],
            "offers": [[o.id, o.revision, o.name, o.doc, o.flags, o.fingerprint, o.layout, o.method_count]
                       for o in self.offers],
        }

    @classmethod
    def from_json(cls, data: Any) -> PluginSpec:
        """The spec ``to_json`` wrote. Raises SpecError for anything else.

        A warm scan reads a thousand of these, so the type checks run over
        whole columns (``set(map(type, ...))``) rather than item by item."""
        if type(data) is not dict or data.keys() != _KEYS:
            raise SpecError(f"expected an object with fields {sorted(_KEYS)}, got {_short(data)}")
        texts = (data["path"], data["id"], data["name"], data["version"], data["description"], data["license"])
        if not {*map(type, texts)} <= _STR:
            raise SpecError("path, id, name, version, description and license must be strings")
        if not ID_RE.fullmatch(texts[1]):
            raise SpecError(f"plugin id {_short(texts[1])} is not reverse-DNS")
        version = data["abi_version"]
        if not (type(version) is list and len(version) == 2 and {*map(type, version)} <= _INT
                and 0 <= min(version) and max(version) <= 0xFFFF):
            raise SpecError(f"abi_version {_short(version)}, expected [major, minor]")
        names, signatures, docs, flags = _columns(data["functions"], 4, "functions must be [name, signature, doc, flags]")
        if not ({*map(type, names)} | {*map(type, signatures)} | {*map(type, docs)} <= _STR
                and {*map(type, flags)} <= _INT and all(0 <= f <= _U32 for f in flags)):
            raise SpecError("a function holds a value of the wrong type")
        if len(set(names)) != len(names) or not all(map(is_function_name, names)):
            raise SpecError(f"function names {_short(list(names))} are not distinct identifiers")
        try:
            parsed = [parse_signature(s) for s in signatures]
        except ValueError as exc:
            raise SpecError(f"a function signature does not parse: {exc}") from None
        functions = tuple(map(FunctionSpec, names, parsed, docs, flags))
        columns = _columns(data["offers"], 8, "offers must be [id, revision, name, doc, flags, fingerprint, layout, "
                                              "method_count]")
        ids, revisions, offer_names, offer_docs, offer_flags, fingerprints, layouts, counts = columns
        if not ({*map(type, ids)} | {*map(type, offer_names)} | {*map(type, offer_docs)} | {*map(type, layouts)} <= _STR
                and {*map(type, revisions)} | {*map(type, offer_flags)} | {*map(type, fingerprints)}
                | {*map(type, counts)} <= _INT):
            raise SpecError("an offer holds a value of the wrong type")
        if not (all(0 <= v <= _U32 for v in (*revisions, *offer_flags, *counts))
                and all(0 <= v <= _U64 for v in fingerprints) and all(ID_RE.fullmatch(i) for i in ids)):
            raise SpecError("an offer holds a value out of range")
        offers = tuple(map(OfferSpec, ids, revisions, offer_names, offer_docs, offer_flags, fingerprints, layouts, counts))
        try:
            # Descriptor text was decoded from UTF-8: a lone surrogate (from a
            # JSON "\ud800" escape) is not something a descriptor said.
            "".join((*texts[1:], *names, *docs, *ids, *offer_names, *offer_docs, *layouts)).encode("utf-8")
        except UnicodeEncodeError:
            raise SpecError("text holds a lone surrogate, which is not UTF-8") from None
        return cls(texts[0], texts[1], texts[2], texts[3], texts[4], texts[5], (version[0], version[1]), functions,
                   offers)


_KEYS = frozenset({"path", "id", "name", "version", "description", "license", "abi_version", "functions", "offers"})
_STR = {str}
_INT = {int}  # type() is int: a JSON true is a bool, not an int


def _columns(rows: Any, width: int, complaint: str) -> tuple[tuple[Any, ...], ...]:
    """A list of ``width``-long lists, transposed; () columns when empty."""
    if type(rows) is not list or not {*map(type, rows)} <= {list} or not {*map(len, rows)} <= {width}:
        raise SpecError(complaint)
    return tuple(zip(*rows)) if rows else ((),) * width


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
