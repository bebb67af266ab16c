"""The process that reads plugin descriptors for ``ferrule.scan``.

Run by scan.py in a fresh interpreter (in the sandbox, where the machine has
one). It reads a JSON request on stdin: ``{"paths": [...], "timeout": s,
"sandbox": {...} or null}``, and writes one JSON object a line on stdout:
``{"facts": ...}`` first when sandboxed (what /proc says is in force), then
for each library ``{"start": path}`` and one of ``{"plugin": <the plugin
spec's JSON>}``, ``{"rejected": {...}}`` (with ``depends``, the places
searched, for a missing dependency), ``{"crashed": {"status": N, "tail":
[...]}}`` or ``{"hung": {}}``.

In the sandbox each library is opened in a process forked for it alone,
which holds only its own pipe to this one: a library's constructors can
report nothing but their own result (this process is not dumpable, so its
fds are out of reach of a child of the same user without capabilities, and
the sandbox hides the scanning process). Without the sandbox a library runs
as the user and could reach the scanner itself, so this process reads each
library itself, which is faster, and a crash or hang ends it (the scanner
then starts another after the library to blame). After each library every
process it left is killed: this process is a child subreaper, so orphaned
daemons become its children. The plugin's init never runs; the processes
leave with ``os._exit`` so that no static destructors run either.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import select
import signal
import sys
import tempfile
import time
from typing import IO, Any

from .._abi.descriptor import describe as read_descriptor
from .._errors import FerruleError, MissingDependencyError
from .._loader import Library
from .._spawn import last_lines
from .deps import watched

_PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 4, 36
RESULT_LIMIT = 16 << 20  # bytes of one library's result: far beyond any real descriptor


def describe(path: str) -> dict[str, Any]:
    """One library's plugin spec, as JSON."""
    return read_descriptor(Library(path)).spec.to_json()


def _outcome(path: str) -> dict[str, Any]:
    tried = time.time_ns()
    try:
        return {"plugin": describe(path)}
    except MissingDependencyError as exc:  # remembered until one of the places searched changes
        return {"rejected": {"error": type(exc).__name__, "message": str(exc), "cache": True,
                             "depends": list(watched(path)), "since": tried}}
    except FerruleError as exc:
        return {"rejected": {"error": type(exc).__name__, "message": str(exc), "cache": True}}
    except Exception as exc:  # a ferrule bug or a passing OS failure: report it, do not remember it
        return {"rejected": {"error": type(exc).__name__, "message": f"{path}: {exc}", "cache": False}}


def _send(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()  # the scanner must see "start" before anything goes wrong


def _prctl(option: int, value: int) -> bool:
    import cffi

    ffi = cffi.FFI()
    ffi.cdef("int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);")
    return bool(ffi.dlopen(None).prctl(option, value, 0, 0, 0) == 0)


def _children() -> list[int]:
    pids: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def _end_all() -> None:
    """Kill and reap every process left below this one (orphans included: a
    subreaper inherits them), until none is left."""
    while True:
        left = _children()
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in left:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    while True:  # zombies the listing did not show
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break


def _in_child(path: str, out: int, errors: int) -> None:
    """Runs in the forked process: only ``out`` (its result) and ``errors``
    (its stdout and stderr) stay open."""
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # a library reading stdin gets EOF
        os.dup2(errors, 1)
        os.dup2(errors, 2)
        keep = sorted({0, 1, 2, out})
        for low, high in zip(keep, [*keep[1:], resource.getrlimit(resource.RLIMIT_NOFILE)[0]]):
            os.closerange(low + 1, high)
        data = (json.dumps(_outcome(path)) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]
    finally:
        os._exit(0)


def _read_one(path: str, timeout: float) -> dict[str, Any]:
    """The outcome of one library, read in a process of its own."""
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as errors:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            gc.disable()  # a collection would touch, and so copy, every page the child shares
            os.close(read_end)
            _in_child(path, write_end, errors.fileno())
        os.close(write_end)
        data = bytearray()
        deadline = time.monotonic() + timeout
        hung = too_big = False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    hung = True
                    break
                if not select.select([read_end], [], [], left)[0]:
                    continue
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                data += chunk
                if len(data) > RESULT_LIMIT:
                    too_big = True
                    break
        finally:
            os.close(read_end)
        if hung or too_big:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        _end_all()
        if hung:
            return {"hung": {}}
        if too_big:
            return {"rejected": {"error": "TooLargeError", "cache": True,
                                 "message": f"{path}: reading its descriptor produced more than {RESULT_LIMIT >> 20} "
                                            "MiB: the library's constructors write into the scan's channel"}}
        code = os.waitstatus_to_exitcode(status)
        try:
            message = json.loads(data)
        except ValueError:
            message = None
        if isinstance(message, dict) and len(message) == 1 and {"plugin", "rejected"} & message.keys():
            return message
        if code == 0 and data:
            return {"rejected": {"error": "ValueError", "cache": True,
                                 "message": f"{path}: its static constructors or entry point wrote into the scan's "
                                            "result channel, which no library may use: fix or remove it"}}
        # Ended before it wrote its result: a crash, or an exit in a constructor.
        return {"crashed": {"status": code, "tail": last_lines(errors)}}


def _confine(policy: dict[str, Any]) -> dict[str, Any]:
    """The sandbox's part that this process applies to itself (and so to
    every child it forks) before any library is opened, as an isolated
    child does, and its limits; what /proc then says holds."""
    from .._sandbox.launch import confine

    if policy.get("memory"):
        resource.setrlimit(resource.RLIMIT_AS, (policy["memory"], policy["memory"]))
    if policy.get("cpu"):
        seconds = max(1, int(policy["cpu"]))
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
    return confine(policy)


def main() -> None:
    # Keep the protocol on a private copy of stdout; whatever this process
    # prints to fd 1 goes to stderr instead of corrupting it.
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    request = json.load(sys.stdin)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    _prctl(_PR_SET_DUMPABLE, 0)  # its fds and memory: out of a same-user child's reach
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    policy = request.get("sandbox")
    if policy is not None:
        _send(channel, {"facts": _confine(policy)})
        gc.freeze()  # what is here now stays shared with each forked child
    for path in request["paths"]:
        _send(channel, {"start": path})
        if policy is None:  # in this process: a library could reach the scanner anyway (same user, no sandbox)
            outcome = _outcome(path)
            _end_all()
        else:
            outcome = _read_one(path, float(request["timeout"]))
        _send(channel, outcome)
    _end_all()
    channel.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
