"""The cffi path's Gate (see contract.Gate); the C accelerator has its own
with the same behaviour (gate.c)."""

from __future__ import annotations

import threading

from .._errors import PluginClosedError
from . import contract
from .accelerator import speedups

__all__ = ["Gate", "new_gate"]

_get_ident = threading.get_ident


def new_gate(accelerated: bool, closed_message: str, inside_message: str) -> contract.Gate:
    """The gate of one plugin or instance: the accelerator's when its calls
    take the C path (the C call path reads it directly), else this module's."""
    if accelerated:
        assert speedups is not None
        gate: contract.Gate = speedups.Gate(PluginClosedError, closed_message, inside_message)
        return gate
    return Gate(closed_message, inside_message)


class Gate:
    """Calls in flight, the threads running them, and the serial lock."""

    def __init__(self, closed_message: str, inside_message: str) -> None:
        self.closed_message = closed_message
        self.inside_message = inside_message
        self.lock = threading.Lock()
        self.idle = threading.Event()  # set once closed with no call in flight
        self.active = 0
        self.threads: list[int] = []  # the thread of each call in flight
        self.closed = False
        self.serial = threading.RLock()

    def enter(self) -> int:
        ident = _get_ident()
        with self.lock:
            if self.closed:
                raise PluginClosedError(self.closed_message)
            self.active += 1
            self.threads.append(ident)
        return ident

    def leave(self, ident: int) -> None:
        with self.lock:
            self.active -= 1
            self.threads.remove(ident)
            if self.closed and not self.active:
                self.idle.set()

    def close(self, wait: bool) -> bool:
        with self.lock:
            if wait and _get_ident() in self.threads:
                raise PluginClosedError(self.inside_message)
            self.closed = True
            busy = self.active > 0
        return not busy or (wait and self.idle.wait())

    def serial_enter(self) -> None:
        self.serial.acquire()

    def serial_try_enter(self) -> bool:
        return self.serial.acquire(blocking=False)

    def serial_leave(self) -> None:
        self.serial.release()
