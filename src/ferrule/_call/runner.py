"""The thread pools that awaited in-process calls run on (aio.py): one per
PluginHost, and one shared by plugins loaded without a host. Kept apart
from aio.py so that a host that never awaits does not import asyncio."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading

__all__ = ["DEFAULT_RUNNER", "DEFAULT_WORKERS", "Runner"]

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
