"""The channel: how one side of isolated mode posts a message head and wakes
the other, and how it waits for the answer. Spin for a few microseconds
(answers usually come that fast), then sleep on a futex on the direction's
sequence word.

Two implementations of one protocol (protocol.HEAD): the small C module
``_channel`` when it is built, else cffi calls of the futex system call from
Python. They can talk to each other. The C one is faster (it spins without
the GIL and wakes only a sleeping peer); the cffi one always wakes, because
without a C memory fence it cannot be sure the peer is awake, and off x86 it
orders the head and its sequence word with a mutex (see _fence). Neither needs
the call accelerator. ``FERRULE_PURE_PYTHON=1`` chooses the cffi one.

Also here: ``become_isolated_child``, the child's lifeline to the host.
"""

from __future__ import annotations

import functools
import importlib
import os
import platform
import struct
import sys
import threading
import time
import types
from typing import Any

import cffi

from .._call import accelerator
from .protocol import HEAD_FIELDS

__all__ = ["IMPLEMENTATION", "MISSING", "Channel", "become_isolated_child"]

Head = tuple[int, int, int, int, int, int]  # seq, kind, arg, base, length, size

_native: types.ModuleType | None = None
MISSING: str | None = None  # why the C channel is absent (None: present, or declined)
if not accelerator.PURE:
    try:
        _native = importlib.import_module(f"{__package__}._channel")
    except ImportError as exc:
        MISSING = accelerator.why_missing(f"{__package__}._channel", exc)

IMPLEMENTATION = "c" if _native is not None else "cffi"

_SEQ, _SLEEPING, _KIND = HEAD_FIELDS["seq"], HEAD_FIELDS["sleeping"], HEAD_FIELDS["kind"]


# -- the cffi implementation's system calls

_HEAD_BODY = struct.Struct("=IIQQQ")  # kind, arg, base, length, size
assert _HEAD_BODY.size == HEAD_FIELDS["budget"] - _KIND

_ffi = cffi.FFI()
_ffi.cdef("long syscall(long number, ...); struct timespec { long tv_sec; long tv_nsec; };"
          "int pthread_mutex_lock(void *m); int pthread_mutex_unlock(void *m);")
_libc: Any = _ffi.dlopen(None)

# The head must be seen before the sequence word that announces it. x86
# keeps stores, and loads, in order. Elsewhere the C module's atomics have
# no Python twin, so an unlock and a lock of a mutex this thread holds stand
# in for a fence: the unlock (a release) comes after every access before
# it, the lock (an acquire) before every access after it.
_IN_ORDER = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_held = threading.local()


def _fence() -> None:
    mutex = getattr(_held, "mutex", None)
    if mutex is None:
        mutex = _held.mutex = _ffi.new("char[256]")  # zeroed: a default mutex
        _libc.pthread_mutex_lock(mutex)
    _libc.pthread_mutex_unlock(mutex)
    _libc.pthread_mutex_lock(mutex)

def _full_fence() -> None:
    """Order a store before a later load (which x86 alone does not): a mutex's
    unlock and lock are locked instructions there, full barriers elsewhere."""
    mutex = getattr(_held, "mutex", None)
    if mutex is None:
        _fence()
        mutex = _held.mutex
    _libc.pthread_mutex_unlock(mutex)
    _libc.pthread_mutex_lock(mutex)


AWAITING = 2  # a sleeping flag saying the receiver is an event loop waiting on a pipe (see _channel.c)


def _write_event(fd: int) -> None:
    try:
        os.write(fd, b"\1")
    except (BlockingIOError, InterruptedError):  # full: the peer is woken anyway
        pass
    except OSError:  # the host's end is gone: so is the host
        pass


# SYS_futex on the Linux architectures ferrule runs on; elsewhere the wait
# polls with short sleeps and the wake is nothing.
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98, "riscv64": 98, "ppc64le": 221,
              "ppc64": 221, "s390x": 238, "i686": 240, "i386": 240, "armv7l": 240, "loongarch64": 98}.get(
    platform.machine().lower()) if sys.platform.startswith("linux") else None
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_INT_MAX = (1 << 31) - 1


def _futex_wait(address: int, seen: int, timeout_ns: int) -> None:
    if _SYS_FUTEX is None:
        time.sleep(min(timeout_ns, 50_000) / 1e9)
        return
    t = _ffi.new("struct timespec *", (timeout_ns // 1_000_000_000, timeout_ns % 1_000_000_000))
    _libc.syscall(_SYS_FUTEX, _ffi.cast("long", address), _ffi.cast("long", _FUTEX_WAIT), _ffi.cast("long", seen),
                  _ffi.cast("long", int(_ffi.cast("uintptr_t", t))), _ffi.cast("long", 0), _ffi.cast("long", 0))


def _futex_wake(address: int) -> None:
    if _SYS_FUTEX is not None:
        _libc.syscall(_SYS_FUTEX, _ffi.cast("long", address), _ffi.cast("long", _FUTEX_WAKE),
                      _ffi.cast("long", _INT_MAX), _ffi.cast("long", 0), _ffi.cast("long", 0), _ffi.cast("long", 0))


def _detached(*args: Any) -> Any:
    raise ValueError("the isolated plugin's channel is closed")


class Channel:
    """One side's end of the channel whose head is at the start of ``control``.
    ``native=False`` takes the cffi implementation even where the C one is built."""

    def __init__(self, control: Any, native: bool = True):
        self._control = control
        # The sequence words and sleeping flags as native u32s: one indexing is
        # one aligned load or store. (struct.pack_into zeroes its target before
        # writing, and unpack_from assembles bytes one by one: a peer reading
        # at that moment sees a value that was never written.)
        self._words = memoryview(control)[:_KIND].cast("I")
        self._anchor = _ffi.from_buffer(control)
        self.address = int(_ffi.cast("uintptr_t", self._anchor))
        self._notify = -1  # the pipe to write when the receiver awaits on it (an isolated child's)
        if native and _native is not None:  # the C functions themselves, bound to this address: no Python frame per message
            self.send = functools.partial(_native.send, self.address)  # type: ignore[method-assign]
            self.wait = functools.partial(_native.wait, self.address)  # type: ignore[method-assign]
            self.arm = functools.partial(_native.arm, self.address)  # type: ignore[method-assign]
            self.disarm = functools.partial(_native.disarm, self.address)  # type: ignore[method-assign]
            self._native = True
        else:
            self._native = False

    def set_notify(self, fd: int) -> None:
        """In the child: the pipe the host's event loop waits on when it
        awaits a message (arm) instead of sleeping on the futex."""
        self._notify = fd
        if self._native:
            assert _native is not None
            _native.set_notify(fd)

    def detach(self) -> None:
        """Let go of the control page (for its unmapping): the channel cannot
        be used again."""
        self.send = self.wait = self.arm = self.disarm = _detached  # type: ignore[method-assign,assignment]
        self._words.release()
        del self._anchor
        self.address = 0

    def send(self, direction: int, kind: int, arg: int, base: int, length: int, size: int) -> None:
        """Post a message head to ``direction`` and wake its receiver."""
        _HEAD_BODY.pack_into(self._control, _KIND, kind, arg, base, length, size)
        if not _IN_ORDER:
            _fence()
        words, at = self._words, _SEQ // 4 + direction
        words[at] = (words[at] + 1) & 0xFFFFFFFF
        _futex_wake(self.address + 4 * at)
        if self._notify >= 0:
            _full_fence()  # the sequence word, then the flag: see arm()
            if words[_SLEEPING // 4 + direction] == AWAITING:
                _write_event(self._notify)

    def arm(self, direction: int, seen: int) -> bool:
        """Say that an event loop is about to wait for the next message of
        ``direction`` on the notifier pipe, then look at the sequence word
        once more: either this look sees the message or its sender sees the
        flag (a full fence on each side between its store and its load).
        True when the message came meanwhile."""
        self._words[_SLEEPING // 4 + direction] = AWAITING
        _full_fence()
        return bool(self._words[_SEQ // 4 + direction] != seen)

    def disarm(self, direction: int) -> None:
        self._words[_SLEEPING // 4 + direction] = 0

    def wait(self, direction: int, seen: int, spin_ns: int, timeout_ns: int) -> Head | None:
        """The next head of ``direction`` after sequence ``seen``, or None
        when timeout_ns passed first."""
        words, at = self._words, _SEQ // 4 + direction
        start = time.perf_counter_ns()
        now = words[at]
        while now == seen and time.perf_counter_ns() - start < spin_ns:
            now = words[at]
        if now == seen:
            deadline = start + timeout_ns
            flag = _SLEEPING // 4 + direction
            words[flag] = 1
            while True:
                now = words[at]
                left = deadline - time.perf_counter_ns()
                if now != seen or left <= 0:
                    break
                _futex_wait(self.address + 4 * at, seen, left)
            words[flag] = 0
            if now == seen:
                return None
        if not _IN_ORDER:
            _fence()
        kind, arg, base, length, size = _HEAD_BODY.unpack_from(self._control, _KIND)
        return now, kind, arg, base, length, size


def become_isolated_child(lifeline: int) -> None:
    """In the child: exit as soon as the lifeline pipe from the host reaches
    its end, however the host ended. The C module watches from a thread
    outside Python (a QUICK plugin call may hold the GIL forever) and makes
    the plugin's own forks die with the child; the cffi path watches from a
    Python thread, which runs because the cffi call path releases the GIL
    during every plugin call."""
    if _native is not None:
        _native.become_isolated_child(lifeline)
        return

    def watch() -> None:
        while True:
            try:
                if not os.read(lifeline, 1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        os._exit(0)

    threading.Thread(target=watch, name="ferrule-lifeline", daemon=True).start()
