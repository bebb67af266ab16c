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

import dataclasses
import errno
import glob
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
from .._errors import FerruleError, IsolationError
from .._sandbox import PROTECTIONS, Sandbox
from .._sandbox.launch import Launch
from .._loader import LIBRARY_SUFFIX
from .._loader.library import ferrule_path, plugin_file
from .._loader.pin import allowlist, file_sha256
from .._spawn import last_lines, python_command, signal_name
from .cache import Entry, Stamp, StoredSpec, cache_file, load_cache, save_cache, stamp_of
from .deps import Depends, stamp, watched
from .deps import changed as dependencies_changed
from .results import PluginInfo, ScanProblem, ScanResult, info

__all__ = ["PluginInfo", "Results", "ScanProblem", "ScanResult", "check_timeout", "result_of", "scan", "scan_files"]

log = logging.getLogger("ferrule.scan")

# A worker gets this long to start up and read its path list; each library
# then gets the scan's own timeout.
_STARTUP_TIMEOUT = 60.0
_TAIL_LINES = 5  # of a crashed worker's stderr, quoted in the problem


def scan(dirs: Iterable[str | os.PathLike[str]] | None = None, *, timeout: float = 10.0, cache: bool = True,
         refresh: bool = False, sandbox: Sandbox | bool | None = None,
         allow: Iterable[str] | None = None) -> ScanResult:
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

    The worker runs in a sandbox (``ferrule.Sandbox``) that shows it the
    libraries, what they need to load, and nothing else of the host: with
    ``sandbox=None`` wherever this machine can make one, with True (or a
    Sandbox) always, or SandboxError; False runs a plain worker.

    ``allow``, SHA-256 digests (hex, as ``sha256sum`` prints them), is an
    allowlist: a library whose hash is not in it is reported as a problem
    (PinMismatchError) and never opened, not even by the worker. Each
    PluginInfo carries its file's ``sha256``, and ``load(info)`` pins it.
    """
    if isinstance(dirs, (str, bytes, os.PathLike)):
        raise TypeError(f"scan() takes an iterable of directories, got the single path {dirs!r}: wrap it in a list")
    check_timeout("scan()", timeout)
    _policy(sandbox)  # a wrong type fails now, not only when a library needs reading
    allowed = None if allow is None else allowlist(allow)

    found: dict[str, Stamp] = {}
    listed: list[str] = []
    for directory, explicit in _directories(dirs):
        files = _list_directory(directory, explicit)
        if files is not None:
            found.update(files)
            listed.append(directory)

    searched = set(listed)  # cache entries of files gone from these are forgotten
    results, digests = scan_files(found, timeout=timeout, cache=cache, refresh=refresh,
                                  forget=lambda path: os.path.dirname(path) in searched, sandbox=sandbox, allow=allowed)
    return result_of(results, tuple(listed), digests)


Results = dict[str, "PluginSpec | StoredSpec | ScanProblem"]


def describe_file(path: str, timeout: float = 10.0, sandbox: Sandbox | bool | None = None) -> PluginSpec | ScanProblem:
    """One library's spec, read in a worker as scan reads it (its
    constructors and entry point run there; its init never runs), or the
    problem: for ``ferrule inspect``, which must not run plugin code in the
    shell's own process."""
    path = plugin_file(path)  # as load finds it, for the same messages
    return _read_descriptors([path], timeout, _INSPECT_RETRY, sandbox)[path][0]


def check_timeout(caller: str, timeout: object) -> None:
    """The per-library timeout of scan() and discover(): positive seconds."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{caller} timeout must be a number of seconds, got {type(timeout).__name__}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"{caller} timeout must be a positive number of seconds, got {timeout!r}")


def scan_files(found: dict[str, Stamp], *, timeout: float, cache: bool, refresh: bool,
               forget: Callable[[str], bool], sandbox: Sandbox | bool | None = None,
               allow: frozenset[str] | None = None) -> tuple[Results, dict[str, str]]:
    """Each found file's spec or problem (path -> its stat stamp in),
    from the cache where the file is unchanged, else from a worker, and the
    SHA-256 of each file read. With ``allow`` (SHA-256 digests) a file whose
    hash is not in it is a problem and never read. Cache entries of files
    not found for which ``forget`` is true are dropped."""
    path_of_cache = cache_file()
    entries, changed = load_cache(path_of_cache) if cache else ({}, False)
    results: Results = {}
    digests: dict[str, str] = {}
    pending: list[str] = []
    for path, stamp in found.items():
        entry = entries.get(path)
        fresh = (entry is not None and not refresh and entry.stamp == stamp
                 and not dependencies_changed(entry.depends))
        digest = entry.sha256 if fresh and entry is not None else ""
        if not digest and (allow is not None or not fresh):
            # Hashed here, before any of it runs: the worker is told only of files that pass.
            try:
                digest, st = file_sha256(path)
            except (OSError, FerruleError) as exc:
                if allow is not None:
                    results[path] = ScanProblem(path, "rejected", type(exc).__name__,
                                                f"{path}: cannot read it to check it against the allowlist ({exc})")
                    continue
            else:
                if stamp_of(st) != stamp:  # changed since it was listed: what was hashed is what is read
                    found[path] = stamp = stamp_of(st)
                    fresh = False
                elif fresh and entry is not None:  # an entry from before ferrule kept hashes
                    entries[path] = entry._replace(sha256=digest)
                    changed = True
        if allow is not None and digest not in allow:
            results[path] = ScanProblem(path, "rejected", "PinMismatchError", (
                f"{path} has SHA-256 {digest}, which is not in the allowlist, so none of it ran: vet it, then add its "
                f"hash (sha256sum {path})"))
            continue
        if digest:
            digests[path] = digest
        if fresh and entry is not None:
            results[path] = entry.result
        else:
            pending.append(path)

    if pending:
        for path, (result, keep, depends) in _read_descriptors(sorted(pending), timeout, None, sandbox).items():
            try:
                now: Stamp | None = stamp_of(os.stat(path))
            except OSError:
                now = None
            if now != found[path]:  # replaced while the worker read it: the hash may be of another file
                result, keep = ScanProblem(path, "rejected", "LibraryError",
                                           f"{path} changed while it was being scanned: scan again"), False
                digests.pop(path, None)
            results[path] = result
            if keep:
                size, mtime_ns, ctime_ns, ino = found[path]
                entries[path] = Entry(size, mtime_ns, result, depends, ctime_ns, ino, digests.get(path, ""))
                changed = True
            elif entries.pop(path, None) is not None:
                changed = True
    gone = [p for p in entries if p not in found and forget(p)]
    for path in gone:
        del entries[path]
    if cache and (changed or gone):
        save_cache(path_of_cache, entries)
    return results, digests


def result_of(results: Results, directories: tuple[str, ...], digests: dict[str, str] | None = None) -> ScanResult:
    ordered = sorted(results.items())
    sha = (digests or {}).get
    return ScanResult(
        plugins=tuple(r.info(sha(p)) if isinstance(r, StoredSpec) else info(r, sha(p)) for p, r in ordered
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
    wanted += [(p, False) for p in ferrule_path()]
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


def _read_descriptors(paths: list[str], timeout: float, retry: str | None = None,
                      sandbox: Sandbox | bool | None = None) -> dict[str, _Outcome]:
    """Every path's outcome: one worker reads them in order, each library in
    a process of its own; should the worker itself end or hang, the next one
    starts after the library to blame."""
    done: dict[str, _Outcome] = {}
    todo = paths
    while todo:
        launch = _launch(todo, sandbox)
        try:
            _run_worker(todo, timeout, done, retry, launch)
        finally:
            if launch is not None:
                launch.close()
        todo = [p for p in todo if p not in done]
    return done


def _policy(sandbox: Sandbox | bool | None) -> Sandbox | None:
    if sandbox is None:  # where this machine has one: every protection optional
        return Sandbox(optional=frozenset(PROTECTIONS))
    if sandbox is True:
        return Sandbox()
    if sandbox is False:
        return None
    if not isinstance(sandbox, Sandbox):
        raise TypeError(f"sandbox must be a ferrule.Sandbox, True, False or None, got {type(sandbox).__name__}")
    return sandbox


def _launch(paths: list[str], sandbox: Sandbox | bool | None) -> Launch | None:
    """The sandbox the worker starts in: the caller's policy, plus what a
    library needs to load as it would in process (its directory, the places
    the loader searches for its dependencies, LD_LIBRARY_PATH), all read-only."""
    policy = _policy(sandbox)
    if policy is None:
        return None
    places: dict[str, None] = {}
    for path in paths:  # (paths: plugin_file made bare names into paths)
        places[os.path.dirname(path)] = None
        places[os.path.dirname(os.path.realpath(path))] = None  # where a link leads
        try:
            places.update(dict.fromkeys(p for p in watched(path) if os.path.isdir(p)))
        except OSError:
            pass
    places.update(dict.fromkeys(_ld_so_conf()))
    env = dict(policy.env)
    if "LD_LIBRARY_PATH" in os.environ and "LD_LIBRARY_PATH" not in env:
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    policy = dataclasses.replace(policy, env=env)
    launch = Launch(policy, "", extra_read=tuple(places))
    if not launch.prefix:  # no namespaces here, and the caller allowed that: a plain worker
        launch.close()
        return None
    return launch


def _ld_so_conf(path: str = "/etc/ld.so.conf", depth: int = 0) -> list[str]:
    """The directories ldconfig adds to the system's (``include`` followed),
    for a sandboxed worker to see what ld.so's cache points into."""
    out: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line.startswith("include") and depth < 4:
            pattern = line[len("include"):].strip()
            if not os.path.isabs(pattern):
                pattern = os.path.join(os.path.dirname(path), pattern)
            for included in sorted(glob.glob(pattern)):
                out += _ld_so_conf(included, depth + 1)
        elif line.startswith("/") and os.path.isdir(line):
            out.append(line)
    return out


def _start_worker(paths: list[str], timeout: float, stderr: IO[bytes], launch: Launch | None) -> subprocess.Popen[bytes]:
    # The worker imports ferrule from wherever this process did.
    if launch is None:
        argv, env, preexec = python_command("ferrule._scan.worker"), None, None
    else:
        argv = launch.prefix + python_command("ferrule._scan.worker", path=launch.sys_path)
        env, preexec = launch.env, launch.preexec
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                            start_new_session=True, env=env, preexec_fn=preexec)
    assert proc.stdin is not None
    request = {"paths": paths, "timeout": timeout,
               "sandbox": None if launch is None else {**launch.child_policy(), "memory": launch.policy.memory,
                                                       "cpu": launch.policy.cpu_time}}
    try:
        with proc.stdin:
            proc.stdin.write(json.dumps(request).encode("ascii"))
    except BrokenPipeError:  # died at once: the reading loop reports it
        pass
    return proc


# How long past a library's own timeout the worker may take to kill and report it.
_GRACE = 10.0


def _run_worker(paths: list[str], timeout: float, done: dict[str, _Outcome], retry: str | None = None,
                launch: Launch | None = None) -> None:
    """Read descriptors in one worker until it finishes, ends or hangs.
    Adds an outcome to ``done`` for every path it got through, including a
    blocklist entry for each library that crashed or hung its own process,
    and one for the library the worker itself ended or hung on. Raises
    IsolationError when the worker fails before reading any library, and
    SandboxError when a required protection is not in force."""
    before = len(done)
    wanted = set(paths)
    advice = _RETRY if retry is None else retry
    with tempfile.TemporaryFile() as errors:
        proc = _start_worker(paths, timeout, errors, launch)
        assert proc.stdout is not None
        state = _State(wanted, done, timeout, advice, retry is None, launch)
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
                        state.take(line)
                    deadline = time.monotonic() + timeout + (0.0 if launch is None else _GRACE)
            if not hung:
                status = _finish(proc, timeout)
        finally:
            _kill(proc)
        tail = last_lines(errors, _TAIL_LINES)
    current = state.current
    if current is not None:
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


class _State:
    """What the worker's messages say so far; anything that is not a message
    of the protocol is ignored (only a worker bug could send it)."""

    def __init__(self, wanted: set[str], done: dict[str, _Outcome], timeout: float, advice: str, warn: bool,
                 launch: Launch | None):
        self.wanted, self.done, self.timeout, self.advice, self.warn = wanted, done, timeout, advice, warn
        self.launch = launch
        self.current: str | None = None

    def take(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict) or len(message) != 1:
            return
        (kind, body), = message.items()
        if kind == "facts" and self.launch is not None:
            self.launch.check(body)  # a required protection missing: SandboxError, before any library
            return
        if kind == "start" and isinstance(body, str) and body in self.wanted and body not in self.done:
            self.current = body
            return
        current = self.current
        if current is None:
            return
        outcome = _outcome_of(current, kind, body, self.timeout, self.advice)
        if outcome is not None:
            if self.warn and isinstance(outcome[0], ScanProblem) and outcome[0].kind in ("crashed", "hung"):
                log.warning("%s", outcome[0].message)
            self.done[current] = outcome
            self.current = None


def _outcome_of(current: str, kind: str, body: object, timeout: float, advice: str) -> _Outcome | None:
    if kind == "plugin":
        try:
            spec = PluginSpec.from_json(body)
            if spec.path != current:
                raise SpecError(f"the spec of {spec.path}")
            return spec, True, None
        except SpecError as exc:
            return (ScanProblem(current, "rejected", "ValueError", f"{current}: the scan worker sent {exc}"),
                    False, None)
    if kind == "rejected" and isinstance(body, dict):
        error, text, keep, watched = body.get("error"), body.get("message"), body.get("cache"), body.get("depends")
        if isinstance(error, str) and isinstance(text, str):
            depends = None
            since = body.get("since")
            if isinstance(watched, list) and all(isinstance(w, str) for w in watched) and type(since) is int:
                depends = stamp(tuple(watched), since)
            return ScanProblem(current, "rejected", error, text), keep is True, depends
    if kind == "crashed" and isinstance(body, dict) and type(body.get("status")) is int:
        tail = body.get("tail")
        lines = [str(t)[:500] for t in tail[-_TAIL_LINES:]] if isinstance(tail, list) else []
        return _crashed(current, body["status"], lines, advice), True, None
    if kind == "hung":
        return _hung(current, timeout, advice), True, None
    return None


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
