"""Plugin discovery: ``ferrule.scan`` and ``ferrule list``.

A scan lists the libraries in some directories and says what each one's
descriptor holds, without loading any of them into this process: opening a
library runs its static constructors and entry point, so a worker process
(``_scan_worker``) reads the descriptors. A library that crashes or hangs the
worker is blocklisted and the scan goes on in a fresh worker.

Results are cached in one JSON file per host ABI, keyed on each file's path,
size and modification time, so that a scan of unchanged directories is a
directory listing, one stat per file and one file read.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any, Literal, NamedTuple

from . import _cdef as abi
from ._errors import IsolationError
from ._library import library_file_name
from ._spawn import python_command, signal_name

__all__ = ["PluginInfo", "ScanProblem", "ScanResult", "scan"]

log = logging.getLogger("ferrule.scan")

ProblemKind = Literal["rejected", "crashed", "hung"]

_HOST_ABI = (abi.ABI_MAJOR, abi.ABI_MINOR)
_SUFFIX = os.path.splitext(library_file_name("x"))[1]  # .so, .dylib or .dll
_FORMAT = 1  # of the cache file; bump when its shape changes
# A worker gets this long to start up and read its path list; each library
# then gets the scan's own timeout.
_STARTUP_TIMEOUT = 60.0
_TAIL_LINES = 5  # of a crashed worker's stderr, quoted in the problem


@dataclass(frozen=True)
class PluginInfo:
    """A plugin found by ``scan``: what its descriptor says.

    ``functions`` holds (name, signature) pairs, ``interfaces`` (interface
    id, revision, implementation name) triples, both in descriptor order.
    """

    path: str
    id: str
    name: str
    version: str
    description: str
    license: str
    abi_version: tuple[int, int]
    functions: tuple[tuple[str, str], ...]
    interfaces: tuple[tuple[str, int, str], ...]


@dataclass(frozen=True)
class ScanProblem:
    """A library that ``scan`` could not list as a plugin.

    ``kind`` is "rejected" (not a library, or its descriptor failed a
    check; ``error`` is the exception class name), "crashed" (``error`` is
    the signal name, or "exit status N") or "hung" (``error`` is "timeout").
    Crashed and hung libraries are blocklisted until the file changes.
    """

    path: str
    kind: ProblemKind
    error: str
    message: str


@dataclass(frozen=True)
class ScanResult:
    """What ``scan`` found, each tuple sorted by path. ``directories`` are
    the directories that were listed, in search order."""

    plugins: tuple[PluginInfo, ...]
    problems: tuple[ScanProblem, ...]
    directories: tuple[str, ...]

    @property
    def rejected(self) -> tuple[ScanProblem, ...]:
        """Libraries that are not plugins, or whose descriptor failed a check."""
        return tuple(p for p in self.problems if p.kind == "rejected")

    @property
    def blocked(self) -> tuple[ScanProblem, ...]:
        """Libraries that crashed or hung the scan worker (the blocklist)."""
        return tuple(p for p in self.problems if p.kind != "rejected")


def scan(dirs: Iterable[str | os.PathLike[str]] | None = None, *, timeout: float = 10.0, cache: bool = True,
         refresh: bool = False) -> ScanResult:
    """Find the plugins in ``dirs`` and in ``$FERRULE_PATH``, without loading them.

    Lists the files whose names end in the platform's library suffix in
    each directory (not in subdirectories): ``dirs`` first, then the
    ``os.pathsep``-separated entries of ``FERRULE_PATH``, each directory once.
    A directory in ``dirs`` that does not exist raises FileNotFoundError;
    one in ``FERRULE_PATH`` is skipped.

    Descriptors are read in a worker process; a library that crashes it,
    or keeps it busy longer than ``timeout`` seconds, is blocklisted. With
    ``cache`` results and the blocklist are kept in the user's cache
    directory; ``refresh`` reads every library again (retrying blocklisted
    ones) and replaces what the cache held.
    """
    if isinstance(dirs, (str, bytes, os.PathLike)):
        raise TypeError(f"scan() takes an iterable of directories, got the single path {dirs!r}: wrap it in a list")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"scan() timeout must be a number of seconds, got {type(timeout).__name__}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"scan() timeout must be a positive number of seconds, got {timeout!r}")

    found: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns)
    listed: list[str] = []
    for directory, explicit in _directories(dirs):
        files = _list_directory(directory, explicit)
        if files is not None:
            found.update(files)
            listed.append(directory)

    cache_file = _cache_file()
    entries, changed = _load_cache(cache_file) if cache else ({}, False)
    results: dict[str, PluginInfo | ScanProblem] = {}
    pending: list[str] = []
    for path, stamp in found.items():
        entry = entries.get(path)
        if entry is not None and not refresh and (entry.size, entry.mtime_ns) == stamp:
            results[path] = entry.result
        else:
            pending.append(path)

    if pending:
        for path, (result, keep) in _read_descriptors(sorted(pending), timeout).items():
            results[path] = result
            if keep:
                entries[path] = _Entry(*found[path], result)
                changed = True
            elif entries.pop(path, None) is not None:
                changed = True
    # Forget files gone from the directories just listed.
    searched = set(listed)
    gone = [p for p in entries if p not in found and os.path.dirname(p) in searched]
    for path in gone:
        del entries[path]
    if cache and (changed or gone):
        _save_cache(cache_file, entries)

    ordered = sorted(results.items())
    return ScanResult(
        plugins=tuple(r for _, r in ordered if isinstance(r, PluginInfo)),
        problems=tuple(r for _, r in ordered if isinstance(r, ScanProblem)),
        directories=tuple(listed),
    )


# -- which files


def _directories(dirs: Iterable[str | os.PathLike[str]] | None) -> list[tuple[str, bool]]:
    """(absolute directory, given explicitly) in search order, each once."""
    wanted: list[tuple[str, bool]] = []
    for d in dirs if dirs is not None else ():
        text = os.fspath(d)
        if not isinstance(text, str):
            raise TypeError(f"scan() directories must be str or os.PathLike[str], got {d!r}")
        wanted.append((text, True))
    # Empty entries mean nothing: the current directory is never searched implicitly.
    wanted += [(p, False) for p in os.environ.get("FERRULE_PATH", "").split(os.pathsep) if p]
    seen: set[str] = set()
    out = []
    for text, explicit in wanted:
        directory = os.path.abspath(os.path.expanduser(text))
        if directory not in seen:
            seen.add(directory)
            out.append((directory, explicit))
    return out


def _list_directory(directory: str, explicit: bool) -> dict[str, tuple[int, int]] | None:
    """The library files in one directory with their (size, mtime_ns), or
    None for a FERRULE_PATH directory that cannot be listed."""
    try:
        with os.scandir(directory) as it:
            files: dict[str, tuple[int, int]] = {}
            for entry in it:
                if not entry.name.endswith(_SUFFIX):
                    continue
                try:
                    if not entry.is_file():  # follows symlinks; a dangling one is skipped
                        continue
                    st = entry.stat()
                except OSError:  # removed while we looked
                    continue
                files[entry.path] = (st.st_size, st.st_mtime_ns)
            return files
    except FileNotFoundError:
        if explicit:
            exc = FileNotFoundError(errno.ENOENT, f"no plugin directory at {directory}: check the path, or create it")
            exc.filename = directory
            raise exc from None
        return None
    except NotADirectoryError:
        if explicit:
            exc2 = NotADirectoryError(errno.ENOTDIR, f"{directory} is not a directory: scan() takes the directories "
                                      "that hold plugins (ferrule inspect reads one file)")
            exc2.filename = directory
            raise exc2 from None
        log.warning("FERRULE_PATH entry %s is not a directory; skipped it", directory)
        return None
    except OSError as exc3:
        if explicit:
            raise
        log.warning("cannot list FERRULE_PATH entry %s (%s); skipped it", directory, exc3.strerror or exc3)
        return None


# -- the cache


class _Entry(NamedTuple):
    size: int
    mtime_ns: int
    result: PluginInfo | ScanProblem


class _Malformed(Exception):
    """A value in the cache file or from a worker is not what was written."""


def _cache_file() -> str:
    base = os.environ.get("FERRULE_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        # The XDG spec says to ignore a relative XDG_CACHE_HOME.
        root = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(root, "ferrule")
    return os.path.join(base, f"scan-abi{_HOST_ABI[0]}.{_HOST_ABI[1]}.json")


def _load_cache(cache_file: str) -> tuple[dict[str, _Entry], bool]:
    """The cache's entries, and whether the file needs rewriting."""
    try:
        with open(cache_file, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}, False
    except OSError as exc:
        log.warning("cannot read the scan cache %s (%s); reading every plugin again", cache_file, exc)
        return {}, False
    return _parse_cache(data, cache_file)


def _parse_cache(data: bytes, source: str = "<cache>") -> tuple[dict[str, _Entry], bool]:
    """The entries of a cache file, and whether anything was dropped. Never
    raises: a file that is not what _dump_cache writes is dropped whole, a
    malformed entry alone, with a warning; the scan then rewrites the file."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # also non-UTF-8 and absurdly long numbers
        log.warning("the scan cache %s is not valid JSON (%s); rebuilding it", source, _short(exc))
        return {}, True
    if not isinstance(doc, dict) or doc.keys() != {"format", "abi", "entries"}:
        log.warning("the scan cache %s does not have the expected format, abi and entries fields; rebuilding it",
                    source)
        return {}, True
    if not (type(doc["format"]) is int and doc["format"] == _FORMAT):
        log.warning("the scan cache %s has format %s, this ferrule writes %d; rebuilding it", source,
                    _short(doc["format"]), _FORMAT)
        return {}, True
    stored_abi = doc["abi"]
    if not (type(stored_abi) is list and {*map(type, stored_abi)} <= _INT and tuple(stored_abi) == _HOST_ABI):
        log.warning("the scan cache %s was written for ABI %s, this host speaks %d.%d; rebuilding it", source,
                    _short(stored_abi), *_HOST_ABI)
        return {}, True
    raw = doc["entries"]
    if not isinstance(raw, dict):
        log.warning("the scan cache %s has entries of type %s, expected an object; rebuilding it", source,
                    type(raw).__name__)
        return {}, True
    entries: dict[str, _Entry] = {}
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


_PLUGIN_ENTRY = frozenset({"size", "mtime_ns", "plugin"})
_PROBLEM_ENTRY = frozenset({"size", "mtime_ns", "problem"})
_PLUGIN_FIELDS = frozenset({"id", "name", "version", "description", "license", "abi", "functions", "interfaces"})
_PROBLEM_FIELDS = frozenset({"kind", "error", "message"})
_PROBLEM_KINDS = ("rejected", "crashed", "hung")
_STR = {str}
_INT = {int}  # type() is int: a JSON true is a bool, not an int


def _parse_entry(path: str, value: Any) -> _Entry:
    if not os.path.isabs(path) or "\0" in path:
        raise _Malformed("the key is not an absolute path")
    if type(value) is not dict:
        raise _Malformed(f"expected an object, found {type(value).__name__}")
    keys = value.keys()
    if keys == _PLUGIN_ENTRY:
        result: PluginInfo | ScanProblem = _parse_plugin(path, value["plugin"])
    elif keys == _PROBLEM_ENTRY:
        result = _parse_problem(path, value["problem"])
    else:
        raise _Malformed(f"fields {sorted(value)}, expected size, mtime_ns and plugin or problem")
    size, mtime_ns = value["size"], value["mtime_ns"]
    if not (type(size) is int and size >= 0 and type(mtime_ns) is int):
        raise _Malformed(f"size {_short(size)} and mtime_ns {_short(mtime_ns)}, expected integers")
    return _Entry(size, mtime_ns, result)


def _parse_plugin(path: str, value: Any) -> PluginInfo:
    """A PluginInfo from its JSON form (the cache's, and the worker's).

    A warm scan parses a thousand of these, so the checks run over whole
    columns at C speed (set(map(type, ...))) rather than item by item."""
    if type(value) is not dict or value.keys() != _PLUGIN_FIELDS:
        raise _Malformed(f"plugin is {_short(value)}, expected an object with fields {sorted(_PLUGIN_FIELDS)}")
    texts = (value["id"], value["name"], value["version"], value["description"], value["license"])
    if not {*map(type, texts)} <= _STR:
        raise _Malformed("plugin id, name, version, description and license must be strings")
    version = value["abi"]
    if not (type(version) is list and len(version) == 2 and {*map(type, version)} <= _INT and min(version) >= 0):
        raise _Malformed(f"plugin abi {_short(version)}, expected [major, minor]")
    names, signatures = _columns(value["functions"], 2, "plugin functions must be [name, signature] pairs")
    ids, revisions, offers = _columns(value["interfaces"], 3, "plugin interfaces must be [id, revision, name] triples")
    if not ({*map(type, names)} | {*map(type, signatures)} | {*map(type, ids)} | {*map(type, offers)} <= _STR
            and {*map(type, revisions)} <= _INT):
        raise _Malformed("plugin functions and interfaces hold a value of the wrong type")
    try:
        # Descriptor text was decoded from UTF-8: a lone surrogate (from a
        # JSON "\ud800" escape) is not something a descriptor said.
        "".join((*texts, *names, *signatures, *ids, *offers)).encode("utf-8")
    except UnicodeEncodeError:
        raise _Malformed("plugin text holds a lone surrogate, which is not UTF-8") from None
    return PluginInfo(path, texts[0], texts[1], texts[2], texts[3], texts[4], (version[0], version[1]),
                      tuple(zip(names, signatures)), tuple(zip(ids, revisions, offers)))


def _columns(rows: Any, width: int, complaint: str) -> tuple[tuple[Any, ...], ...]:
    """A list of ``width``-long lists, transposed; () columns when empty."""
    if type(rows) is not list or not {*map(type, rows)} <= {list} or not {*map(len, rows)} <= {width}:
        raise _Malformed(complaint)
    return tuple(zip(*rows)) if rows else ((),) * width


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


def _plugin_json(info: PluginInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "license": info.license,
        "abi": list(info.abi_version),
        "functions": [list(f) for f in info.functions],
        "interfaces": [list(i) for i in info.interfaces],
    }


def _dump_cache(entries: dict[str, _Entry]) -> bytes:
    out: dict[str, Any] = {}
    for path, entry in sorted(entries.items()):
        result = entry.result
        if isinstance(result, PluginInfo):
            body: dict[str, Any] = {"plugin": _plugin_json(result)}
        else:
            body = {"problem": {"kind": result.kind, "error": result.error, "message": result.message}}
        out[path] = {"size": entry.size, "mtime_ns": entry.mtime_ns, **body}
    doc = {"format": _FORMAT, "abi": list(_HOST_ABI), "entries": out}
    # ASCII with escapes: file names that are not UTF-8 round-trip.
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def _save_cache(cache_file: str, entries: dict[str, _Entry]) -> None:
    """Replace the cache file atomically: a reader sees the old or the new
    file, never half of one. Two scans at once: the last one wins."""
    data = _dump_cache(entries)
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


# -- the worker


_Outcome = tuple[PluginInfo | ScanProblem, bool]  # the result, and whether to cache it


def _read_descriptors(paths: list[str], timeout: float) -> dict[str, _Outcome]:
    """Every path's outcome: one worker reads them in order; after a crash
    or hang the next worker starts after the library to blame."""
    done: dict[str, _Outcome] = {}
    todo = paths
    while todo:
        _run_worker(todo, timeout, done)
        todo = [p for p in todo if p not in done]
    return done


def _start_worker(paths: list[str], stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    # The worker imports ferrule from wherever this process did.
    proc = subprocess.Popen(python_command("ferrule._scan_worker"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=stderr, start_new_session=True)
    assert proc.stdin is not None
    try:
        with proc.stdin:
            proc.stdin.write(json.dumps(paths).encode("ascii"))
    except BrokenPipeError:  # died at once: the reading loop reports it
        pass
    return proc


def _run_worker(paths: list[str], timeout: float, done: dict[str, _Outcome]) -> None:
    """Read descriptors in one worker until it finishes, crashes or hangs.
    Adds an outcome to ``done`` for every path it got through, and a
    blocklist entry for the one it crashed or hung on. Raises IsolationError
    when the worker fails before reading any library."""
    before = len(done)
    wanted = set(paths)
    with tempfile.TemporaryFile() as errors:
        proc = _start_worker(paths, errors)
        assert proc.stdout is not None
        current: str | None = None
        status: int | None = None
        hung = False
        buffer = b""
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        hung = True
                        break
                    if not selector.select(left):
                        continue
                    chunk = os.read(proc.stdout.fileno(), 1 << 16)
                    if not chunk:
                        break
                    *lines, buffer = (buffer + chunk).split(b"\n")
                    for line in lines:
                        current = _take(line, current, wanted, done)
                    deadline = time.monotonic() + timeout
            if not hung:
                status = _finish(proc, timeout)
        finally:
            _kill(proc)
        tail = _tail(errors)
    if current is not None:
        problem = _hung(current, timeout) if hung else _crashed(current, status, tail)
        log.warning("%s", problem.message)
        done[current] = (problem, True)
    elif len(done) == before:
        how = f"sent nothing for {_STARTUP_TIMEOUT:g} s" if hung else f"ended ({_status_text(status)})"
        raise IsolationError(
            f"the scan worker ({sys.executable}) {how} before reading any library"
            + (f"; its last output: {' | '.join(tail)}" if tail else "")
            + ": check that this Python can import ferrule in a fresh process",
            status,
            tuple(tail),
        )


def _take(line: bytes, current: str | None, wanted: set[str], done: dict[str, _Outcome]) -> str | None:
    """Apply one worker message; returns the library now being read.
    Anything else is ignored: only a worker bug could send it."""
    try:
        message = json.loads(line)
    except ValueError:
        return current
    if not isinstance(message, dict) or len(message) != 1:
        return current
    (kind, body), = message.items()
    if kind == "start" and isinstance(body, str) and body in wanted:
        return body
    if current is None:
        return None
    if kind == "plugin":
        try:
            done[current] = (_parse_plugin(current, body), True)
        except _Malformed as exc:
            done[current] = (ScanProblem(current, "rejected", "ValueError", f"{current}: the scan worker sent {exc}"),
                             False)
        return None
    if kind == "rejected" and isinstance(body, dict):
        error, text, keep = body.get("error"), body.get("message"), body.get("cache")
        if isinstance(error, str) and isinstance(text, str):
            done[current] = (ScanProblem(current, "rejected", error, text), keep is True)
            return None
    return current


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The worker's exit status once its output ended, or None if it is
    still running (the caller kills it)."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            # The worker leads its own process group: this also ends
            # anything a library started.
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _tail(errors: IO[bytes]) -> list[str]:
    errors.seek(0, os.SEEK_END)
    errors.seek(max(0, errors.tell() - 4096))
    text = errors.read().decode("utf-8", "replace")
    return [line.strip() for line in text.splitlines() if line.strip()][-_TAIL_LINES:]


def _status_text(status: int | None) -> str:
    if status is None:
        return "still running"
    if status < 0:
        return signal_name(-status)
    return f"exit status {status}"


_RETRY = ("it is blocklisted until the file changes: fix or remove it, or scan with refresh=True "
          "(ferrule list --refresh) to try it again")


def _crashed(path: str, status: int | None, tail: list[str]) -> ScanProblem:
    error = _status_text(status)
    message = (f"reading the descriptor of {path} ended the scan worker ({error}): the library crashes in its "
               f"static constructors or its entry point; {_RETRY}")
    if tail:
        message += f". Its last output: {' | '.join(tail)}"
    return ScanProblem(path, "crashed", error, message)


def _hung(path: str, timeout: float) -> ScanProblem:
    message = (f"reading the descriptor of {path} took longer than {timeout:g} s: the library hangs in its static "
               f"constructors or its entry point; {_RETRY} (with a longer timeout if it is only slow)")
    return ScanProblem(path, "hung", "timeout", message)
