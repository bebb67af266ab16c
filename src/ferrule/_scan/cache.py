"""The scan cache: one JSON file per host ABI in the user's cache directory,
an entry per library file keyed on its path, with the size and modification
time it had when read, and the plugin spec (or the problem) found.

Reading never raises: a file that is not what ``dump_cache`` writes is
dropped whole, a malformed entry alone, with a warning; the scan then
rewrites the file. Writing replaces the file atomically. The file carries a
CRC-32 of its entries (a check against damage and edits, not against a
forger: the file is the user's own): when it matches, they are what this
ferrule wrote, and are read without checking each (a warm scan of a
thousand plugins reads them all).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import zlib
from typing import Any, NamedTuple

from .._abi import cdef as abi
from .._abi.spec import PluginSpec, SpecError, function_listing, offer_listing
from .._errors import NotALibraryError
from .._loader.elf import open_regular
from .deps import Depends
from .results import PluginInfo, ScanProblem

__all__ = ["Entry", "Stamp", "StoredSpec", "stamp_of", "cache_file", "dump_cache", "load_cache", "parse_cache", "save_cache"]

log = logging.getLogger("ferrule.scan")

HOST_ABI = (abi.ABI_MAJOR, abi.ABI_MINOR)
FORMAT = 3  # of the cache file; bump when its shape changes (2: plugin specs; 3: a rejection's depends)


class StoredSpec:
    """A plugin spec as the cache file holds it, proven intact by the file's
    digest. It becomes a PluginSpec only when asked (``spec``): a warm scan
    needs only what PluginInfo shows, read straight from the JSON, and makes
    no objects it would throw away."""

    __slots__ = ("json",)

    def __init__(self, json: dict[str, Any]):
        self.json = json

    @property
    def spec(self) -> PluginSpec:
        return PluginSpec.from_own_json(self.json)

    @property
    def path(self) -> str:
        return str(self.json["path"])

    def info(self, sha256: str | None = None) -> PluginInfo:
        data = self.json
        return PluginInfo(data["path"], data["id"], data["name"], data["version"], data["description"], data["license"],
                          tuple(data["abi_version"]), function_listing(data["functions"]),
                          offer_listing(data["offers"]), sha256=sha256)

    def __eq__(self, other: object) -> bool:
        mine = self.spec
        return mine == (other.spec if isinstance(other, StoredSpec) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<stored spec of {self.path}>"


Stamp = tuple[int, int, int, int]  # st_size, st_mtime_ns, st_ctime_ns, st_ino


def stamp_of(st: os.stat_result) -> Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class Entry(NamedTuple):
    size: int
    mtime_ns: int
    result: PluginSpec | StoredSpec | ScanProblem
    depends: Depends | None = None  # a missing-dependency rejection's watched places (deps.py)
    # With size and mtime, the key of the file's content: a tool can set an
    # mtime back (unzip keeps a wheel's fixed 1980 times), not a ctime.
    ctime_ns: int = 0
    ino: int = 0
    sha256: str = ""  # of the file read (hex); "" in an entry written before ferrule kept it

    @property
    def stamp(self) -> Stamp:
        return (self.size, self.mtime_ns, self.ctime_ns, self.ino)


class _Malformed(Exception):
    """A value in the cache file or from a worker is not what was written."""


def cache_file() -> str:
    base = os.environ.get("FERRULE_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        # The XDG spec says to ignore a relative XDG_CACHE_HOME.
        root = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(root, "ferrule")
    return os.path.join(base, f"scan-abi{HOST_ABI[0]}.{HOST_ABI[1]}.json")


MAX_CACHE_BYTES = 256 << 20  # about a million plugins' entries; a larger file is not one of ours


def load_cache(cache_file: str) -> tuple[dict[str, Entry], bool]:
    """The cache's entries, and whether the file needs rewriting."""
    try:
        with open_regular(cache_file) as f:  # a FIFO or a link to /dev/zero must not hang a scan
            data = f.read(MAX_CACHE_BYTES + 1)
    except FileNotFoundError:
        return {}, False
    except (OSError, NotALibraryError) as exc:
        log.warning("cannot read the scan cache %s (%s); reading every plugin again", cache_file,
                    str(exc).replace(": load the shared library file itself", ""))
        return {}, True
    if len(data) > MAX_CACHE_BYTES:
        log.warning("the scan cache %s is larger than %d bytes, more than any scan writes; rebuilding it", cache_file,
                    MAX_CACHE_BYTES)
        return {}, True
    return parse_cache(data, cache_file)


def parse_cache(data: bytes, source: str = "<cache>") -> tuple[dict[str, Entry], bool]:
    """The entries of a cache file, and whether anything was dropped. Never
    raises: a file that is not what _dump_cache writes is dropped whole, a
    malformed entry alone, with a warning; the scan then rewrites the file."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # also non-UTF-8 and absurdly long numbers
        log.warning("the scan cache %s is not valid JSON (%s); rebuilding it", source, _short(exc))
        return {}, True
    if not isinstance(doc, dict) or not _HEAD <= doc.keys() <= _HEAD | {"digest"}:
        log.warning("the scan cache %s does not have the expected format, abi and entries fields; rebuilding it",
                    source)
        return {}, True
    if not (type(doc["format"]) is int and doc["format"] == FORMAT):
        log.warning("the scan cache %s has format %s, this ferrule writes %d; rebuilding it", source,
                    _short(doc["format"]), FORMAT)
        return {}, True
    stored_abi = doc["abi"]
    if not (type(stored_abi) is list and {*map(type, stored_abi)} <= _INT and tuple(stored_abi) == HOST_ABI):
        log.warning("the scan cache %s was written for ABI %s, this host speaks %d.%d; rebuilding it", source,
                    _short(stored_abi), *HOST_ABI)
        return {}, True
    raw = doc["entries"]
    digest = doc.get("digest")
    if digest is not None and digest == _digest(data):  # the entries are what dump_cache wrote: no need to check each
        try:
            return {path: _own_entry(path, value) for path, value in raw.items()}, False
        except Exception:  # the proof was wrong after all: check every entry
            pass
    if not isinstance(raw, dict):
        log.warning("the scan cache %s has entries of type %s, expected an object; rebuilding it", source,
                    type(raw).__name__)
        return {}, True
    entries: dict[str, Entry] = {}
    dropped: list[str] = []
    for path, value in raw.items():
        try:
            entries[path] = _parse_entry(path, value)
        except _Malformed as exc:
            dropped.append(f"{path!r}: {exc}")
    if dropped:
        count = "1 malformed entry" if len(dropped) == 1 else f"{len(dropped)} malformed entries"
        log.warning("the scan cache %s had %s (first: %s); reading those plugins again", source, count, dropped[0])
    return entries, bool(dropped)


_HEAD = frozenset({"format", "abi", "entries"})
_ENTRIES = b',"entries":'


def _digest(data: bytes) -> str | None:
    """The digest of the entries text of a file dump_cache wrote (it ends
    the file, before the closing brace); None for another shape."""
    at = data.find(_ENTRIES)
    if at < 0 or not data.endswith(b"}"):
        return None
    return f"crc32:{zlib.crc32(memoryview(data)[at + len(_ENTRIES):-1]):08x}"


def _own_entry(path: str, value: dict[str, Any]) -> Entry:
    times = value.get("ctime_ns", 0), value.get("ino", 0), value.get("sha256", "")
    if "plugin" in value:
        return Entry(value["size"], value["mtime_ns"], StoredSpec(value["plugin"]), None, *times)
    problem = value["problem"]
    depends = value.get("depends")
    return Entry(value["size"], value["mtime_ns"], ScanProblem(path, problem["kind"], problem["error"],
                                                               problem["message"]),
                 None if depends is None else Depends(depends["env"], tuple(map(tuple, depends["paths"]))), *times)


_PLUGIN_ENTRY = frozenset({"size", "mtime_ns", "plugin"})
_PROBLEM_ENTRY = frozenset({"size", "mtime_ns", "problem"})
_OPTIONAL = frozenset({"ctime_ns", "ino", "depends", "sha256"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PROBLEM_FIELDS = frozenset({"kind", "error", "message"})
_PROBLEM_KINDS = ("rejected", "crashed", "hung")
_INT = {int}  # type() is int: a JSON true is a bool, not an int


def _parse_entry(path: str, value: Any) -> Entry:
    if not os.path.isabs(path) or "\0" in path:
        raise _Malformed("the key is not an absolute path")
    if type(value) is not dict:
        raise _Malformed(f"expected an object, found {type(value).__name__}")
    keys = value.keys() - _OPTIONAL
    if keys == _PLUGIN_ENTRY:
        try:
            result: PluginSpec | ScanProblem = PluginSpec.from_json(value["plugin"])
        except SpecError as exc:
            raise _Malformed(f"plugin: {exc}") from None
        if result.path != path:
            raise _Malformed(f"plugin path {_short(result.path)} differs from its key")
    elif keys == _PROBLEM_ENTRY:
        result = _parse_problem(path, value["problem"])
    else:
        raise _Malformed(f"fields {sorted(value)}, expected size, mtime_ns and plugin or problem (and depends)")
    if "depends" in value and "problem" not in value:
        raise _Malformed("depends belongs to a problem entry")
    size, mtime_ns = value["size"], value["mtime_ns"]
    ctime_ns, ino = value.get("ctime_ns", 0), value.get("ino", 0)
    if not (type(size) is int and size >= 0 and type(mtime_ns) is int and type(ctime_ns) is int
            and type(ino) is int and ino >= 0):
        raise _Malformed(f"size {_short(size)}, mtime_ns {_short(mtime_ns)}, ctime_ns {_short(ctime_ns)} and ino "
                         f"{_short(ino)}, expected integers")
    sha256 = value.get("sha256", "")
    if not (type(sha256) is str and (sha256 == "" or _SHA256.fullmatch(sha256))):
        raise _Malformed(f"sha256 {_short(sha256)}, expected 64 lowercase hex digits")
    return Entry(size, mtime_ns, result, _parse_depends(value["depends"]) if "depends" in value else None,
                 ctime_ns, ino, sha256)


def _parse_depends(value: Any) -> Depends:
    if type(value) is dict and value.keys() == {"env", "paths"} and type(value["env"]) is str:
        paths = value["paths"]
        if type(paths) is list and all(type(p) is list and len(p) == 2 and type(p[0]) is str and type(p[1]) is int
                                       for p in paths):
            return Depends(value["env"], tuple((p[0], p[1]) for p in paths))
    raise _Malformed(f"depends is {_short(value)}, expected an object with env and paths [[path, mtime_ns], ...]")


def _parse_problem(path: str, value: Any) -> ScanProblem:
    if type(value) is not dict or value.keys() != _PROBLEM_FIELDS:
        raise _Malformed(f"problem is {_short(value)}, expected an object with fields error, kind and message")
    kind, error, message = value["kind"], value["error"], value["message"]
    if kind not in _PROBLEM_KINDS or type(error) is not str or type(message) is not str:
        raise _Malformed(f"problem kind {_short(kind)}, expected one of {', '.join(_PROBLEM_KINDS)}, with string "
                         "error and message")
    return ScanProblem(path, kind, error, message)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def dump_cache(entries: dict[str, Entry]) -> bytes:
    out: dict[str, Any] = {}
    for path, entry in sorted(entries.items()):
        result = entry.result
        if isinstance(result, PluginSpec):
            body: dict[str, Any] = {"plugin": result.to_json()}
        elif isinstance(result, StoredSpec):
            body = {"plugin": result.json}
        else:
            body = {"problem": {"kind": result.kind, "error": result.error, "message": result.message}}
            if entry.depends is not None:
                body["depends"] = {"env": entry.depends.ld_library_path, "paths": [list(p) for p in entry.depends.paths]}
        out[path] = {"size": entry.size, "mtime_ns": entry.mtime_ns, "ctime_ns": entry.ctime_ns, "ino": entry.ino,
                     **({"sha256": entry.sha256} if entry.sha256 else {}), **body}
    # ASCII with escapes: file names that are not UTF-8 round-trip. The
    # digest of the entries text lets the reader skip checking each entry.
    text = json.dumps(out, separators=(",", ":")).encode("ascii")
    head = json.dumps({"format": FORMAT, "abi": list(HOST_ABI)}, separators=(",", ":")).encode("ascii")
    digest = f"crc32:{zlib.crc32(text):08x}"
    return head[:-1] + b',"digest":"' + digest.encode("ascii") + b'"' + _ENTRIES + text + b"}"


def save_cache(cache_file: str, entries: dict[str, Entry]) -> None:
    """Replace the cache file atomically: a reader sees the old or the new
    file, never half of one. Two scans at once: the last one wins."""
    data = dump_cache(entries)
    directory = os.path.dirname(cache_file)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".scan-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, cache_file)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as exc:
        log.warning("cannot write the scan cache %s (%s); the next scan reads every plugin again", cache_file, exc)
