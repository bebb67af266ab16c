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

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
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

    sock.send(b"ready")
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 4)
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


def _fork(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    # The child: nothing here may return into the server's loop.
    try:
        area, lifeline, out, err = fds
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
        sys.path[:] = request["path"]
        _set_dumpable(True)  # as a fresh child is
        from .child import serve

        serve(area, lifeline, int(request["memory_limit"]), int(request["cpu_limit"]))
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
    """The server did not answer: it died (perhaps killed by a child) or hangs."""


class _Server:
    """The host's end of one fork server."""

    def __init__(self, key: tuple[Any, ...]):
        from .._spawn import python_command

        self.key = key
        self.lock = threading.Lock()
        self.lost = False
        self.children = 0
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
        except (OSError, _Lost):
            self.close()
            raise _Lost("the fork server did not start") from None

    def ask(self, request: dict[str, Any], fds: tuple[int, ...] = ()) -> dict[str, Any]:
        with self.lock:
            if self.lost:  # once out of step (or stopped, or dead), never asked again
                raise _Lost("the fork server was lost")
            self.lost = True  # until the answer is in: an interrupted exchange leaves it out of step
            try:
                self.sock.settimeout(_REPLY_SECONDS)
                socket.send_fds(self.sock, [json.dumps(request).encode()], list(fds))
                reply = self.sock.recv(1 << 16)
            except OSError as exc:
                raise _Lost(str(exc)) from None
            if not reply:
                raise _Lost("the fork server is gone")
            answer: dict[str, Any] = json.loads(reply)
            self.lost = False
            return answer

    def alive(self) -> bool:
        return not self.lost and self.proc.poll() is None

    def close(self) -> None:
        self.sock.close()  # the server sees the end of its socket and exits
        try:
            self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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
        if self.pidfd < 0:
            return True
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def end(self) -> None:
        """Kill its process group and reap it (through the server), once."""
        if self.pidfd < 0:
            return
        try:
            self.returncode = self.server.ask({"op": "end", "pid": self.pid})["status"]
        except _Lost:
            # The server is gone, and with it what kept the group id ours:
            # kill this process alone, through its pidfd, which cannot miss.
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            select.select([self.pidfd], [], [], _END_SECONDS)
        finally:
            os.close(self.pidfd)
            self.pidfd = -1
            with _lock:
                self.server.children -= 1
                if _server is not self.server and self.server.children == 0:
                    self.server.close()  # replaced meanwhile, and now unused


_lock = threading.Lock()
_server: _Server | None = None
_failed = False  # a server failed to start here: later loads start their children fresh
_ENV_PREFIXES = ("PYTHON", "FERRULE_", "LD_", "GLIBC_", "MALLOC_")


def _key() -> tuple[Any, ...]:
    """What a fresh interpreter takes from the host at its start and the
    server's children would otherwise inherit from an older host state:
    with any of it changed, a new server is started."""
    return (sys.executable, tuple(sorted((k, v) for k, v in os.environ.items()
                                         if k.startswith(_ENV_PREFIXES) and k != "FERRULE_FORKSERVER")))


def _pidfds() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))  # Linux 5.3, and not refused by a seccomp policy
    except (AttributeError, OSError):
        return False
    return hasattr(socket, "send_fds")


_PIDFDS = _pidfds()


def spawn(fds: tuple[int, int], memory_limit: int, cpu_limit: int) -> ForkedProcess | None:
    """A child for an isolated load, on channel fds[0] with lifeline fds[1];
    None when there is no fork server to ask (start one fresh instead)."""
    global _server, _failed
    if _failed or not _PIDFDS or os.environ.get("FERRULE_FORKSERVER") == "0":
        return None
    key = _key()
    request = {"op": "fork", "environ": dict(os.environ), "cwd": os.getcwd(), "path": sys.path,
               "memory_limit": memory_limit, "cpu_limit": cpu_limit}
    for attempt in range(2):  # a lost server is replaced once
        with _lock:
            server = _server
            if server is None or server.key != key or not server.alive():
                old, server = server, None
                try:
                    server = _server = _Server(key)
                except (OSError, _Lost):
                    _failed = True
                    _server = None
                if old is not None and old.children == 0:
                    old.close()
                if server is None:
                    return None
            server.children += 1
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = int(server.ask(request, (*fds, out_w, err_w))["pid"])
        except _Lost:
            os.close(out_r)
            os.close(err_r)
            with _lock:
                server.children -= 1
                if _server is server:
                    _server = None
            continue
        finally:
            os.close(out_w)
            os.close(err_w)
        try:
            return ForkedProcess(server, pid, open(out_r, "rb"), open(err_r, "rb"))
        except OSError:  # pragma: no cover - the pid is the server's unreaped child
            os.close(out_r)
            os.close(err_r)
            server.ask({"op": "end", "pid": pid})
            with _lock:
                server.children -= 1
            raise
    return None


def _forget() -> None:
    """In a fork of the host: the server is the parent's (os.register_at_fork)."""
    global _server, _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    if _server is not None:
        _server.sock.close()
    _server = None


os.register_at_fork(after_in_child=_forget)
