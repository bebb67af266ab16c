"""The fork server: one fresh interpreter per host process, started by the
first isolated load, that has already imported what an isolated child
needs and forks a child for each later load, so a load costs a fork, not
a Python start-up (about 100 ms).

The server is a clean process: a new interpreter (never a fork of the
host, whose memory a plugin must not see), with no threads, that runs no
plugin code itself. Each child it forks is what a fresh one would be: its
own session, the host's current environment, working directory and
sys.path, its channel, lifeline and output pipes (passed over the socket),
and the same limits and lifeline watch (child.serve).

The server keeps each child as a zombie until the host asks it to end it
(killpg, then reap, then the exit status), so the process group id the
host's kill names is never reused meanwhile; the host watches for the
exit through a pidfd. A child that kills the server costs nothing but the
server: the host kills that server's children through their pidfds and
starts another server for the next load. Sandboxed plugins never come
from here: bubblewrap starts each of them fresh.

The request socket is SOCK_SEQPACKET: one message per request, the file
descriptors with it.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

__all__ = ["ForkedProcess", "spawn"]

_END_SECONDS = 5.0  # how long the server waits for a killed child to be reaped
_REPLY_SECONDS = 10.0  # a server that does not answer in this time is lost
_START_SECONDS = 30.0


# -- in the server process


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    _set_dumpable(False)  # other processes of this user (a child's plugin) cannot ptrace or read it
    # What a child imports, imported once here (child.run() and its requests).
    import logging  # noqa: F401
    import warnings  # noqa: F401

    from .. import _errors  # noqa: F401
    from .._abi import signature, spec  # noqa: F401
    from .._call import function  # noqa: F401
    from .._interfaces import instances  # noqa: F401
    from .._loader import Library  # noqa: F401
    from .._plugin import plugin  # noqa: F401
    from . import child, remote  # noqa: F401

    _warm_cffi()
    # Every object so far is the children's too: kept out of their garbage
    # collections, which would otherwise touch (and so copy) every page
    # holding one.
    gc.collect()
    gc.freeze()
    sock.send(b"ready")
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 5)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if not message:
            os._exit(0)  # the host is gone, or done with fork servers
        request = json.loads(message)
        reply: dict[str, int | None]
        if request["op"] == "fork":
            reply = {"pid": _fork(sock, request, fds)}
        else:
            for fd in fds:
                os.close(fd)
            reply = {"status": _end(int(request["pid"]))}
        sock.send(json.dumps(reply).encode())


# The C types the load path names as text: cffi parses each (pycparser,
# about a millisecond apiece) the first time an FFI sees it, so the server
# does that once for all its children. Only speed depends on this list.
_TYPES = ("uintptr_t", "long", "void *", "void **", "const char *", "char[]", "char[1]", "const ferrule_object *",
          "ferrule_value *", "ferrule_value[]", "ferrule_value[1]", "ferrule_host *", "ferrule_fn *",
          "ferrule_entry_fn", "struct link_map **", "struct timespec *")


def _warm_cffi() -> None:
    from .._abi.ffi import ffi
    from .._loader import posix
    from . import channel

    for each in (ffi, posix._ffi, channel._ffi):
        for name in _TYPES:
            try:
                each.typeof(name)
            except Exception:  # not declared in this one
                pass


def _fork(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    # The child: nothing here may return into the server's loop.
    try:
        area, lifeline, notify, out, err = fds
        os.setsid()
        sock.close()
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (out, err):
            if fd > 2:
                os.close(fd)
        os.environb.clear()
        os.environb.update({os.fsencode(k): os.fsencode(v) for k, v in request["environ"].items()})
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        sys.path[:] = request["path"]
        _set_dumpable(True)  # as a fresh child is
        from .child import serve

        serve(area, lifeline, notify, int(request["memory_limit"]), int(request["cpu_limit"]))
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
    os._exit(70)


_unreaped: set[int] = set()  # ended children that were not gone in time: reaped later


def _end(pid: int) -> int | None:
    """Kill the child's process group (the plugin's own forks too) and reap
    the child: its exit status as subprocess gives it (-N for signal N)."""
    for kill in (os.killpg, os.kill):  # the child itself too: it may not lead its group yet (before setsid)
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _unreaped.add(pid)
    deadline = time.monotonic() + _END_SECONDS
    status = None
    while pid in _unreaped:
        for other in list(_unreaped):
            try:
                done, code = os.waitpid(other, os.WNOHANG)
            except ChildProcessError:  # pragma: no cover - only this process reaps its children
                done, code = other, 0
            if done:
                _unreaped.discard(other)
                if other == pid:
                    status = os.waitstatus_to_exitcode(code)
        if pid in _unreaped:
            if time.monotonic() >= deadline:  # pragma: no cover - stuck in the kernel: reaped by a later _end
                return None
            time.sleep(0.001)
    return status


def _set_dumpable(on: bool) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, int(on), 0, 0, 0)  # PR_SET_DUMPABLE
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


# -- in the host


class _Lost(Exception):
    """The server did not answer: it died (perhaps killed by a child), hangs,
    or an exchange with it was interrupted half-way."""


class _Server:
    """The host's end of one fork server. One exchange at a time (its lock);
    the first that fails makes it broken for good: killed, never asked again."""

    def __init__(self, key: tuple[Any, ...]):
        from .._spawn import python_command

        self.key = key
        self.lock = threading.Lock()
        self.owner = 0  # the thread in an exchange (a finalizer that runs in it must not wait for itself)
        self.broken = False
        self.children = 0
        self.deferred: list[ForkedProcess] = []  # ended by a finalizer during an exchange: finished after it
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                python_command("ferrule._isolation.forkserver", str(theirs.fileno())), pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        try:
            self.sock.settimeout(_START_SECONDS)
            if self.sock.recv(16) != b"ready":
                raise _Lost("the fork server did not start")
        except BaseException:
            self.broke()
            self.close()
            raise

    def ask(self, request: dict[str, Any], fds: tuple[int, ...] = ()) -> dict[str, Any]:
        message = json.dumps(request).encode()  # (a value JSON cannot carry fails here, before the exchange)
        try:
            with self.lock:
                self.owner = threading.get_ident()
                answered = False
                try:
                    if self.broken:
                        raise _Lost("the fork server was lost")
                    self.sock.settimeout(_REPLY_SECONDS)
                    socket.send_fds(self.sock, [message], list(fds))
                    reply = self.sock.recv(1 << 16)
                    if not reply:
                        raise _Lost("the fork server is gone")
                    answered = True
                except OSError as exc:
                    raise _Lost(str(exc)) from None
                finally:
                    self.owner = 0
                    if not answered:
                        self.broke()  # dead, stopped, or out of step after an interruption
        finally:
            while self.deferred:
                self.deferred.pop().end()
        answer: dict[str, Any] = json.loads(reply)
        return answer

    def broke(self) -> None:
        if not self.broken:
            self.broken = True
            try:  # of no use now, and a stopped one would never see its socket close
                self.proc.kill()
            except OSError:  # pragma: no cover - already reaped
                pass

    def alive(self) -> bool:
        return not self.broken and self.proc.poll() is None

    def close(self) -> None:
        self.sock.close()  # a running server sees the end of its socket and exits
        try:
            self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _exited(pidfd: int, timeout: float) -> bool:
    poller = select.poll()  # (select() refuses descriptors past 1023)
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


class ForkedProcess:
    """An isolated child forked by the fork server, with the part of
    subprocess.Popen's interface process.Child uses."""

    def __init__(self, server: _Server, pid: int, stdout: IO[bytes], stderr: IO[bytes]):
        self.server = server
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self.pidfd = os.pidfd_open(pid)  # the server has not reaped it, so this is that process

    def exited(self) -> bool:
        return self.pidfd < 0 or _exited(self.pidfd, 0)

    def end(self) -> None:
        """Kill its process group and reap it (through the server), once.
        When the server cannot do it, kill this process through its pidfd:
        the exit status is then unknown (None)."""
        if self.pidfd < 0:
            return
        server = self.server
        if server.owner == threading.get_ident():  # a finalizer, run inside this thread's exchange
            self._kill()
            server.deferred.append(self)  # killpg and reap after that exchange
            return
        try:
            self.returncode = server.ask({"op": "end", "pid": self.pid})["status"]
        except BaseException as exc:
            # Without the server, what kept the group id ours is gone: the
            # pidfd names this process and cannot miss.
            self._kill()
            _exited(self.pidfd, _END_SECONDS)
            if not isinstance(exc, _Lost):
                raise
        finally:
            os.close(self.pidfd)
            self.pidfd = -1
            _release(server)

    def _kill(self) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover - reaped already
            pass


def _release(server: _Server) -> None:
    with _lock:
        server.children -= 1
        if _server is not server and server.children == 0:
            server.close()  # replaced meanwhile, and now unused


# Re-entrant: a finalizer that ends a child may run (garbage collection)
# while this thread holds it.
_lock = threading.RLock()
_server: _Server | None = None
_failed_at: float | None = None  # when a server last failed to start: children start fresh for a while
_RETRY_SECONDS = 60.0
# Read by a new process at its start (the dynamic loader, libc, Python), so
# a server started before a change cannot pass it on.
_ENV_PREFIXES = ("PYTHON", "FERRULE_", "LD_", "GLIBC_", "MALLOC_", "LC_", "LANG")
_LIMITS = [getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")]


def _c_environ() -> dict[bytes, bytes]:
    """The process's environment as a fresh child would inherit it: libc's,
    which also holds what C code set without os.environ knowing."""
    import ctypes

    env: dict[bytes, bytes] = {}
    entries = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    i = 0
    while entries[i] is not None:
        key, _, value = entries[i].partition(b"=")
        env.setdefault(key, value)
        i += 1
    return env


def _key(environ: dict[bytes, bytes]) -> tuple[Any, ...]:
    """What a new process takes from the host at its start and the server's
    children would otherwise get from the host as it was when the server
    started: with any of it changed, a new server is started."""
    wanted = tuple(p.encode() for p in _ENV_PREFIXES)
    return (sys.executable,
            tuple(sorted((k, v) for k, v in environ.items() if k.startswith(wanted) and k != b"FERRULE_FORKSERVER")),
            tuple(resource.getrlimit(r) for r in _LIMITS), os.getpriority(os.PRIO_PROCESS, 0),
            tuple(sorted(os.sched_getaffinity(0))))


def _umask() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise OSError("no umask in /proc/self/status")  # pragma: no cover - Linux < 4.7


def _pidfds() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))  # Linux 5.3, and not refused by a seccomp policy
        _umask()
    except (AttributeError, OSError):
        return False
    return hasattr(socket, "send_fds")


_PIDFDS = _pidfds()


def spawn(fds: tuple[int, int, int], memory_limit: int, cpu_limit: int) -> ForkedProcess | None:
    """A child for an isolated load, on channel fds[0] with lifeline fds[1]
    and notifier fds[2];
    None when there is no fork server to ask (start one fresh instead)."""
    global _server, _failed_at
    if not _PIDFDS or os.environ.get("FERRULE_FORKSERVER") == "0":
        return None
    if _failed_at is not None and time.monotonic() - _failed_at < _RETRY_SECONDS:
        return None
    try:
        cwd = os.getcwd()
    except OSError:  # removed: a fresh child inherits it as it is, a forked one could not
        return None
    environ = _c_environ()
    key = _key(environ)
    request = {"op": "fork", "environ": {os.fsdecode(k): os.fsdecode(v) for k, v in environ.items()}, "cwd": cwd,
               "path": [p for p in sys.path if isinstance(p, str)], "umask": _umask(),
               "memory_limit": memory_limit, "cpu_limit": cpu_limit}
    for _attempt in range(2):  # a lost server is replaced once
        with _lock:
            server = _server
            if server is None or server.key != key or not server.alive():
                old, server = server, None
                try:
                    server = _server = _Server(key)
                except (OSError, _Lost):
                    _failed_at = time.monotonic()
                    _server = None
                if old is not None and old.children == 0:
                    old.close()
                if server is None:
                    return None
            server.children += 1
        pipes: list[int] = []
        released = False
        try:
            out_r, out_w = os.pipe()
            pipes += (out_r, out_w)
            err_r, err_w = os.pipe()
            pipes += (err_r, err_w)
            try:
                pid = int(server.ask(request, (*fds, out_w, err_w))["pid"])
            except _Lost:
                released = True
                _release(server)
                continue  # (the pipes are closed below)
            for fd in (out_w, err_w):
                os.close(fd)
                pipes.remove(fd)
            try:
                forked = ForkedProcess(server, pid, open(out_r, "rb"), open(err_r, "rb"))
            except BaseException:
                server.ask({"op": "end", "pid": pid})  # not handed on: the server's to kill and reap
                raise
            pipes.clear()
            released = True  # the ForkedProcess gives it back when it ends
            return forked
        finally:
            for fd in pipes:
                os.close(fd)
            if not released:
                _release(server)
    return None


def _forget() -> None:
    """In a fork of the host: the server is the parent's (os.register_at_fork)."""
    global _server, _lock
    _lock = threading.RLock()  # another thread may have held it at the fork
    if _server is not None:
        _server.sock.close()
    _server = None


os.register_at_fork(after_in_child=_forget)
