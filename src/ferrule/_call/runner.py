"""The thread pools that awaited in-process calls run on (aio.py): one per
PluginHost, and one shared by plugins loaded without a host. Kept apart
from aio.py so that a host that never awaits does not import asyncio."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["DEFAULT_RUNNER", "DEFAULT_WORKERS", "Runner", "aio_close_refusal", "busy", "busy_here"]

# The thread pool's size when none is given: concurrent.futures' own default.
DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)


_numbers = itertools.count(1)


class Runner:
    """The bounded thread pool that a host's awaited in-process calls run on
    (made when first needed)."""

    def __init__(self, workers: int | None = None):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"async_workers must be a positive number of threads or None, got {workers!r}")
        self.workers = workers or DEFAULT_WORKERS
        self.name = f"ferrule-aio-{next(_numbers)}"  # its threads' names start with this
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        executor = self._executor
        if executor is None or self._pid != os.getpid():  # (a forked copy has no threads)
            with self._lock:
                if self._executor is None or self._pid != os.getpid():
                    self._executor = concurrent.futures.ThreadPoolExecutor(self.workers, self.name)
                    self._pid = os.getpid()
                executor = self._executor
        return executor


DEFAULT_RUNNER = Runner()  # plugins loaded without a PluginHost share it


# Per call target (a plugin's core, an instance): the threads of event loops
# with awaited calls of it in flight, and how many. close() on such a thread
# would wait for calls that need that very loop to finish.
_busy: weakref.WeakKeyDictionary[Any, dict[int, int]] = weakref.WeakKeyDictionary()
_busy_lock = threading.Lock()


@contextmanager
def busy(target: Any) -> Iterator[None]:
    """An awaited call of ``target`` in flight on this (the loop's) thread."""
    me = threading.get_ident()
    with _busy_lock:
        counts = _busy.setdefault(target, {})
        counts[me] = counts.get(me, 0) + 1
    try:
        yield
    finally:
        with _busy_lock:
            counts[me] -= 1
            if not counts[me]:
                del counts[me]


def busy_here(target: Any) -> bool:
    """Whether this thread's event loop has an awaited call of ``target`` in flight."""
    counts = _busy.get(target)
    return bool(counts) and threading.get_ident() in counts  # type: ignore[operator]


def aio_close_refusal(what: str, name: str = "plugin") -> str:
    return (f"{what}: close() on the event loop's thread while an awaited call of it is in flight, which needs this "
            f"loop to finish: use await {name}.aio.close(), which waits without blocking the loop")
