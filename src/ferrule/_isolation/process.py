"""The child process of isolated mode, seen from the host: start it with
its channel and lifeline, drain its output, wait for its messages (noticing
when it dies, is cancelled or runs out of time), and end it.

The child cannot outlive the host: it watches a pipe only the host holds
(channel.become_isolated_child), and runs in a process group of its own
that ferrule kills on close, so forks inside it die with it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import selectors
import signal
import subprocess
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

from .._errors import CallCancelledError, IsolationError, PluginCrashedError, PluginTimeoutError
from .._sandbox.launch import Launch
from .._spawn import python_command, signal_name
from . import forkserver, wire
from .protocol import TO_CHILD, TO_HOST

__all__ = ["Child", "Interrupts", "Stopper", "describe_status"]

SPIN_NS = 50_000  # how long a waiting host spins before it sleeps
SLICE_NS = 5_000_000  # while asleep, how often it checks the child is alive
AWAIT_SPIN_NS = 20_000  # how long an awaiting event loop spins: most answers come sooner
AWAIT_SLICE = 0.01  # while an event loop awaits, how often it checks the child is alive (s)
NOTIFY_IDLE = 16  # wake-ups by the notifier with no message before it is no longer watched
CLOSE_SECONDS = 5.0
LAST_LINES = 20
_LINE_BYTES = 4096


class Interrupts:
    """Holds back Ctrl-C while a child is being started, so that it cannot
    land between the fork and the moment the host can stop the child again
    (inside subprocess.Popen, which does not reap a child it was interrupted
    after forking). ``check()`` raises the KeyboardInterrupt that came, where
    the caller stops the child. Only the main thread gets KeyboardInterrupt,
    and only with Python's own handler installed: elsewhere this does nothing."""

    def __init__(self) -> None:
        self.pending = False
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def check(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


class Child:
    """One child process: its channel, its output and how it ended."""

    def __init__(self, memory_limit: int | None, cpu_limit: float | None, logger: logging.Logger,
                 launch: Launch | None = None):
        self.logger = logger
        self.launch = launch
        self.last: deque[str] = deque(maxlen=LAST_LINES)
        cpu = 0 if cpu_limit is None else max(1, int(-(-cpu_limit // 1)))
        held: list[int] = []  # closed again if the start fails half-way
        try:
            self.area = wire.Area.create(memory_limit or wire.DEFAULT_BOUND)
            lifeline, self.lifeline = os.pipe()  # the child's end closes with this process
            held += [lifeline, self.lifeline]
            # What the child writes when an event loop here awaits its answer (areceive): a pipe,
            # so that the child holds only its own end and cannot change how this one reads.
            self.notify, notify_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            held += [self.notify, notify_w]
            fds = (self.area.fd, lifeline, notify_w)
            args = (*map(str, fds), str(memory_limit or 0), str(cpu))
            # Forked by the fork server when there is one, else a fresh interpreter (always, sandboxed).
            forked = None if launch is not None else forkserver.spawn(fds, memory_limit or 0, cpu)
            if forked is not None:
                self.proc: subprocess.Popen[bytes] | forkserver.ForkedProcess = forked
            else:
                if launch is None:
                    argv = python_command("ferrule._isolation.child", *args)
                else:
                    argv = launch.prefix + python_command("ferrule._isolation.child", *args,
                                                          json.dumps(launch.child_policy()), path=launch.sys_path)
                self.proc = subprocess.Popen(
                    argv, pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, start_new_session=True,
                    env=None if launch is None else launch.env, preexec_fn=None if launch is None else launch.preexec,
                )
            os.close(lifeline)
            os.close(notify_w)
            self.area.drop_fd()  # the child has its own now
        except BaseException as exc:
            area = self.__dict__.get("area")
            if area is not None:
                held.append(area.fd)
                area.fd = -1
            for fd in held:
                try:
                    if fd >= 0:
                        os.close(fd)
                except OSError:
                    pass
            if area is not None:
                area.close()
            if launch is not None:
                launch.close()
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                whose = "this process" if exc.errno == errno.EMFILE else "the system"
                raise IsolationError(
                    f"cannot start an isolated plugin's process: {whose} has no file descriptors left "
                    f"({errno.errorcode[exc.errno]}; this process may open {soft}). Each isolated plugin holds 5 while "
                    "it runs: close the plugins no longer needed, or raise the limit (ulimit -n)") from None
            raise
        self.pid = self.proc.pid
        self.open_pipes = 2
        self.drained = threading.Event()  # both pipes at their end: the child's last words are in
        OUTPUTS.watch(self)
        self.seen = 0
        self.base = 0  # where an answer goes: after the message it answers
        self.cancelled = False
        self.notify_open = True  # watch the notifier (until its end, or a flood of it)
        # Closed with the channel (close_channel), not by the Stopper: another
        # thread may end the child while an event loop still watches this fd.
        self._notify_closer = weakref.finalize(self, os.close, self.notify)
        self.stopper = Stopper(self.proc, self.lifeline, self.area, launch)

    def close_channel(self) -> None:
        """Unmap the shared area and close the notifier, once nothing uses
        them: the child has ended and no request of it is in flight."""
        self.notify_open = False
        self.area.close()
        self._notify_closer()

    def output_line(self, name: str, raw: bytes) -> None:
        """A line the child wrote (OUTPUTS' thread): kept for the error that
        reports a crash, and logged."""
        line = raw.decode("utf-8", "replace").rstrip("\n")
        self.last.append(f"{name}: {line}")
        self.logger.debug("%s: %s", name, line)

    def output_closed(self) -> None:
        self.open_pipes -= 1
        if self.open_pipes == 0:
            self.drained.set()

    # -- the channel

    def post(self, kind: int, arg: int, base: int, length: int) -> None:
        area = self.area
        area.channel.send(TO_CHILD, kind, arg, base, length, area.size)

    def receive(self, deadline: float | None, during: str, who: str) -> tuple[int, int, int, int]:
        wait = self.area.channel.wait
        got = wait(TO_HOST, self.seen, SPIN_NS, SLICE_NS if deadline is None else 0)
        while got is None:
            slice_ns = SLICE_NS
            if deadline is not None:
                slice_ns = max(0, min(slice_ns, int((deadline - time.monotonic()) * 1e9)))
            got = wait(TO_HOST, self.seen, SPIN_NS, slice_ns)
            if got is not None:
                break
            self.check(deadline, during, who)
        self.seen, kind, arg, base, length, size = got
        self.base = self.area.take(base, length, size)
        return kind, arg, base, length

    async def areceive(self, deadline: float | None, during: str, who: str) -> tuple[int, int, int, int]:
        """receive() for an event loop: after a short spin, the loop waits on
        the pipe the child writes when it posts to an armed channel, and
        checks on the child every AWAIT_SLICE seconds meanwhile. Nothing
        blocks the loop but the spin."""
        channel = self.area.channel
        got = channel.wait(TO_HOST, self.seen, AWAIT_SPIN_NS, 0)
        if got is None:
            import asyncio  # (imported already by whoever awaits: not at ferrule's import)

            loop = asyncio.get_running_loop()
            idle = 0  # wake-ups in a row that brought no message
            while got is None:
                if self.stopper.done:  # ended meanwhile (cancel() from another thread, a call made inside this one)
                    self.check(deadline, during, who)
                    raise self.failure(IsolationError, f"{who}: {during} was cut short: its process was ended")
                try:
                    if not channel.arm(TO_HOST, self.seen):
                        waiter = loop.create_future()
                        wait = AWAIT_SLICE if deadline is None else max(0.0, min(AWAIT_SLICE, deadline - time.monotonic()))
                        timer = loop.call_later(wait, _wake, waiter)
                        watched = self.notify_open
                        if watched:
                            loop.add_reader(self.notify, _wake, waiter)
                        try:
                            await waiter
                        finally:
                            timer.cancel()
                            if watched:
                                loop.remove_reader(self.notify)
                finally:
                    channel.disarm(TO_HOST)
                if self.notify_open:
                    try:
                        # The end of the pipe: the child exited, or closed its end (then the slices alone watch it).
                        self.notify_open = os.read(self.notify, 1 << 16) != b""
                    except BlockingIOError:
                        pass
                got = channel.wait(TO_HOST, self.seen, 0, 0)
                if got is None:
                    idle += 1
                    if idle > NOTIFY_IDLE:  # a child writing the pipe without posting: the slices alone watch it
                        self.notify_open = False
                    self.check(deadline, during, who)
        if self.stopper.done:  # ended as the message came: what it says is not to be trusted now
            self.check(deadline, during, who)
            raise self.failure(IsolationError, f"{who}: {during} was cut short: its process was ended")
        self.seen, kind, arg, base, length, size = got
        self.base = self.area.take(base, length, size)
        return kind, arg, base, length

    def check(self, deadline: float | None, during: str, who: str) -> None:
        """Raise if the call was cancelled, the child died, or time is up."""
        if self.cancelled:
            raise self.failure(CallCancelledError, f"{who}: {during} was cancelled; ferrule ended its process")
        if self.stopper.exited():
            raise self.failure(PluginCrashedError, f"{who} crashed during {during}")
        if deadline is not None and time.monotonic() >= deadline:
            raise self.failure(PluginTimeoutError, f"{who}: {during} timed out; ferrule ended its process")

    def failure(self, cls: type[IsolationError], text: str) -> IsolationError:
        """End the process (if it still runs) and describe how it ended."""
        running = not self.stopper.exited()
        self.stopper.kill()
        self.drained.wait(0.5)  # its last words
        status = self.proc.returncode
        if status is not None and self.launch is not None and self.launch.prefix and 128 < status < 128 + 65:
            status = 128 - status  # bubblewrap exits with 128 + the signal that ended the child
        if running and cls is PluginCrashedError:
            status = None
        if cls is PluginCrashedError and status is not None:
            text += ": " + describe_status(status)
        lines = tuple(self.last)
        if lines:
            text += "\nlast output:\n" + "\n".join("  " + line for line in lines)
        return cls(text, status if cls is PluginCrashedError else None, lines)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Outputs:
    """One thread reads the stdout and stderr of every isolated child, to
    the end, so that a flood never blocks a child and no child costs a
    thread of its own. Lines longer than _LINE_BYTES come in pieces."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self._pid = 0  # the process that started the thread (a fork has none)

    def watch(self, child: Child) -> None:
        with self._lock:
            if self._selector is None or self._pid != os.getpid():
                self._selector = selectors.DefaultSelector()
                self._pid = os.getpid()
                threading.Thread(target=self._run, args=(self._selector,), daemon=True, name="ferrule-output").start()
            for pipe, name in ((child.proc.stdout, "stdout"), (child.proc.stderr, "stderr")):
                assert pipe is not None
                os.set_blocking(pipe.fileno(), False)
                self._selector.register(pipe.fileno(), selectors.EVENT_READ, (child, name, pipe, bytearray()))

    def _run(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                ready = selector.select(1.0)  # (a timeout: pipes registered meanwhile are seen within it anyway)
            except OSError:  # pragma: no cover - the selector itself failed
                time.sleep(0.1)
                continue
            for key, _events in ready:
                child, name, pipe, buf = key.data
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                try:
                    if chunk:
                        buf += chunk
                        _lines(child, name, buf, final=False)
                        continue
                    _lines(child, name, buf, final=True)
                except Exception:  # pragma: no cover - a logging handler's failure must not stop the reader
                    pass
                with self._lock:
                    selector.unregister(key.fd)
                pipe.close()
                child.output_closed()


def _lines(child: Child, name: str, buf: bytearray, final: bool) -> None:
    while buf:
        end = buf.find(b"\n", 0, _LINE_BYTES)
        if end >= 0:
            cut = end + 1
        elif len(buf) >= _LINE_BYTES:
            cut = _LINE_BYTES
        elif final:
            cut = len(buf)
        else:
            return
        child.output_line(name, bytes(buf[:cut]))
        del buf[:cut]


OUTPUTS = _Outputs()


class Stopper:
    """Ends a child; kept apart from IsolatedPlugin so a finalizer can run it."""

    def __init__(self, proc: subprocess.Popen[bytes] | forkserver.ForkedProcess, lifeline: int, area: wire.Area,
                 launch: Launch | None = None):
        self.proc = proc
        self.lifeline = lifeline
        self.area = area
        self.launch = launch
        self.done = False
        self.lock = threading.Lock()
        self.owner = os.getpid()  # a fork of the host inherits this object, not the child

    def exited(self) -> bool:
        """Whether the child has ended, without reaping it: while it is a
        zombie its process group id cannot be reused, so killpg stays safe."""
        if isinstance(self.proc, forkserver.ForkedProcess):
            return self.proc.exited()
        if self.proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def kill(self) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
            try:
                if os.getpid() != self.owner:
                    pass  # a fork of the host (its finalizers run at its exit): the child is the host's to end
                elif isinstance(self.proc, forkserver.ForkedProcess):
                    self.proc.end()  # the fork server kills the group and reaps
                else:
                    if self.proc.returncode is None:  # not reaped: the group id is still this child's
                        try:
                            os.killpg(self.proc.pid, signal.SIGKILL)  # forks of the plugin too
                        except (ProcessLookupError, PermissionError):
                            pass
                    try:
                        self.proc.wait(CLOSE_SECONDS)
                    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
                        pass
            finally:  # even when interrupted (Ctrl-C) while it waits: the lifeline ends the child anyway
                os.close(self.lifeline)
                if self.area.fd >= 0:
                    os.close(self.area.fd)
                    self.area.fd = -1
                if self.launch is not None and os.getpid() == self.owner:
                    self.launch.close()  # ends what is left in its cgroup


def describe_status(status: int) -> str:
    if status < 0:
        return f"killed by {signal_name(-status)} (signal {-status})"
    return f"exited with status {status}"
