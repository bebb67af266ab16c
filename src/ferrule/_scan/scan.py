"""Plugin discovery: ``ferrule.scan`` and ``ferrule list``.

A scan lists the libraries in some directories and says what each one's
descriptor holds, without loading any of them into this process: opening a
library runs its static constructors and entry point, so a worker process
(worker.py) reads the descriptors. A library that crashes or hangs the
worker is blocklisted and the scan goes on in a fresh worker.

Results are cached (cache.py) keyed on each file's path, size,
modification and change times and inode, so that a scan of unchanged directories is a directory
listing, one stat per file and one file read.
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
from collections.abc import Callable, Iterable
from typing import IO

from .._abi.spec import PluginSpec, SpecError
from .._errors import IsolationError
from .._loader import LIBRARY_SUFFIX
from .._spawn import python_command, signal_name
from .cache import Entry, Stamp, StoredSpec, cache_file, load_cache, save_cache, stamp_of
from .deps import Depends, stamp
from .deps import changed as dependencies_changed
from .results import PluginInfo, ScanProblem, ScanResult, info

__all__ = ["PluginInfo", "Results", "ScanProblem", "ScanResult", "check_timeout", "result_of", "scan", "scan_files"]

log = logging.getLogger("ferrule.scan")

# A worker gets this long to start up and read its path list; each library
# then gets the scan's own timeout.
_STARTUP_TIMEOUT = 60.0
_TAIL_LINES = 5  # of a crashed worker's stderr, quoted in the problem


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
    check_timeout("scan()", timeout)

    found: dict[str, Stamp] = {}
    listed: list[str] = []
    for directory, explicit in _directories(dirs):
        files = _list_directory(directory, explicit)
        if files is not None:
            found.update(files)
            listed.append(directory)

    searched = set(listed)  # cache entries of files gone from these are forgotten
    results = scan_files(found, timeout=timeout, cache=cache, refresh=refresh,
                         forget=lambda path: os.path.dirname(path) in searched)
    return result_of(results, tuple(listed))


Results = dict[str, "PluginSpec | StoredSpec | ScanProblem"]


def describe_file(path: str, timeout: float = 10.0) -> PluginSpec | ScanProblem:
    """One library's spec, read in a worker as scan reads it (its
    constructors and entry point run there; its init never runs), or the
    problem: for ``ferrule inspect``, which must not run plugin code in the
    shell's own process."""
    path = os.path.abspath(path) if os.sep in path else path  # as load has it, for the same messages
    return _read_descriptors([path], timeout, _INSPECT_RETRY)[path][0]


def check_timeout(caller: str, timeout: object) -> None:
    """The per-library timeout of scan() and discover(): positive seconds."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{caller} timeout must be a number of seconds, got {type(timeout).__name__}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"{caller} timeout must be a positive number of seconds, got {timeout!r}")


def scan_files(found: dict[str, Stamp], *, timeout: float, cache: bool, refresh: bool,
               forget: Callable[[str], bool]) -> Results:
    """Each found file's spec or problem (path -> its stat stamp in),
    from the cache where the file is unchanged, else from a worker. Cache
    entries of files not found for which ``forget`` is true are dropped."""
    path_of_cache = cache_file()
    entries, changed = load_cache(path_of_cache) if cache else ({}, False)
    results: Results = {}
    pending: list[str] = []
    for path, stamp in found.items():
        entry = entries.get(path)
        if (entry is not None and not refresh and entry.stamp == stamp
                and not dependencies_changed(entry.depends)):
            results[path] = entry.result
        else:
            pending.append(path)

    if pending:
        for path, (result, keep, depends) in _read_descriptors(sorted(pending), timeout).items():
            results[path] = result
            if keep:
                size, mtime_ns, ctime_ns, ino = found[path]
                entries[path] = Entry(size, mtime_ns, result, depends, ctime_ns, ino)
                changed = True
            elif entries.pop(path, None) is not None:
                changed = True
    gone = [p for p in entries if p not in found and forget(p)]
    for path in gone:
        del entries[path]
    if cache and (changed or gone):
        save_cache(path_of_cache, entries)
    return results


def result_of(results: Results, directories: tuple[str, ...]) -> ScanResult:
    ordered = sorted(results.items())
    return ScanResult(
        plugins=tuple(r.info() if isinstance(r, StoredSpec) else info(r) for _, r in ordered
                      if not isinstance(r, ScanProblem)),
        problems=tuple(r for _, r in ordered if isinstance(r, ScanProblem)),
        directories=directories,
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


def _list_directory(directory: str, explicit: bool) -> dict[str, Stamp] | None:
    """The library files in one directory with their stat stamps, or
    None for a FERRULE_PATH directory that cannot be listed."""
    try:
        with os.scandir(directory) as it:
            files: dict[str, Stamp] = {}
            for entry in it:
                if not entry.name.endswith(LIBRARY_SUFFIX):
                    continue
                try:
                    if not entry.is_file():  # follows symlinks; a dangling one is skipped
                        continue
                    st = entry.stat()
                except OSError:  # removed while we looked
                    continue
                files[entry.path] = stamp_of(st)
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


# -- the worker


# The result, whether to cache it, and what a missing-dependency rejection depended on.
_Outcome = tuple["PluginSpec | ScanProblem", bool, "Depends | None"]


def _read_descriptors(paths: list[str], timeout: float, retry: str | None = None) -> dict[str, _Outcome]:
    """Every path's outcome: one worker reads them in order; after a crash
    or hang the next worker starts after the library to blame."""
    done: dict[str, _Outcome] = {}
    todo = paths
    while todo:
        _run_worker(todo, timeout, done, retry)
        todo = [p for p in todo if p not in done]
    return done


def _start_worker(paths: list[str], stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    # The worker imports ferrule from wherever this process did.
    proc = subprocess.Popen(python_command("ferrule._scan.worker"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=stderr, start_new_session=True)
    assert proc.stdin is not None
    try:
        with proc.stdin:
            proc.stdin.write(json.dumps(paths).encode("ascii"))
    except BrokenPipeError:  # died at once: the reading loop reports it
        pass
    return proc


def _run_worker(paths: list[str], timeout: float, done: dict[str, _Outcome], retry: str | None = None) -> None:
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
        advice = _RETRY if retry is None else retry
        problem = _hung(current, timeout, advice) if hung else _crashed(current, status, tail, advice)
        if retry is None:  # a scan's problem; a caller with its own advice reports it itself
            log.warning("%s", problem.message)
        done[current] = (problem, True, None)
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
            spec = PluginSpec.from_json(body)
            if spec.path != current and os.sep in current:  # (a bare name: where the loader found it)
                raise SpecError(f"the spec of {spec.path}")
            done[current] = (spec, True, None)
        except SpecError as exc:
            done[current] = (ScanProblem(current, "rejected", "ValueError", f"{current}: the scan worker sent {exc}"),
                             False, None)
        return None
    if kind == "rejected" and isinstance(body, dict):
        error, text, keep, watched = body.get("error"), body.get("message"), body.get("cache"), body.get("depends")
        if isinstance(error, str) and isinstance(text, str):
            depends = None
            since = body.get("since")
            if isinstance(watched, list) and all(isinstance(w, str) for w in watched) and type(since) is int:
                depends = stamp(tuple(watched), since)
            done[current] = (ScanProblem(current, "rejected", error, text), keep is True, depends)
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
          "(ferrule list --refresh) to try it again (with a longer timeout if it is only slow)")
_INSPECT_RETRY = "fix it; ferrule validate shows more (the last call and output before the end)"


def _crashed(path: str, status: int | None, tail: list[str], retry: str) -> ScanProblem:
    error = _status_text(status)
    message = (f"reading the descriptor of {path} ended the scan worker ({error}): the library crashes in its "
               f"static constructors or its entry point; {retry}")
    if tail:
        message += f". Its last output: {' | '.join(tail)}"
    return ScanProblem(path, "crashed", error, message)


def _hung(path: str, timeout: float, retry: str) -> ScanProblem:
    message = (f"reading the descriptor of {path} took longer than {timeout:g} s: the library hangs in its static "
               f"constructors or its entry point; {retry}")
    return ScanProblem(path, "hung", "timeout", message)
