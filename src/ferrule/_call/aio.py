"""Awaitable calls: ``await plugin.aio.add(2, 3)``.

``AsyncCalls`` is the ``aio`` view of a plugin or an instance; each of its
attributes is an ``AsyncFunction``. How a call is awaited depends on where
the plugin runs:

- isolated (the function has ``_acall``): the answer is awaited on the
  channel, on the event loop itself, with no thread per call;
- in process: the call runs on the host's bounded thread pool (a
  ``Runner``), so the loop never blocks. A QUICK function runs inline: it is
  shorter than a hand-off to a thread. Functions that are not thread-safe are
  admitted one at a time per plugin or instance (an asyncio semaphore), so a
  thousand awaits queue on the loop, not as a thousand threads on one lock.

A host function passed to an awaited call may be an ``async def``: the
plugin's thread waits while the coroutine runs on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import queue
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .runner import DEFAULT_RUNNER, Runner, busy

__all__ = ["AsyncCalls", "AsyncFunction"]

# Per call target (a plugin's core or an instance) and event loop: the
# semaphore that admits its not thread-safe calls one at a time.
_serials: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary())
_serials_lock = threading.Lock()


def _serial(target: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
    with _serials_lock:
        per_loop = _serials.get(target)
        if per_loop is None:
            per_loop = _serials[target] = weakref.WeakKeyDictionary()
        found = per_loop.get(loop)
        if found is None:
            found = per_loop[loop] = asyncio.Semaphore(1)
        return found


class _Waiting:
    """A plugin's thread waiting for the coroutine its host function returned.
    The awaited calls that coroutine makes run on this thread, as a plain
    host function's calls would: the serial lock is this thread's, and a
    thread of the pool would wait for it for ever."""

    def __init__(self, owner: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner  # the plugin or instance whose call waits
        self.loop = loop
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.open = True

    def post(self, job: Callable[[], None]) -> bool:
        with self.lock:
            if self.open:
                self.jobs.put(job)
            return self.open

    def finish(self, _future: Any = None) -> None:
        with self.lock:
            self.open = False
            self.jobs.put(None)

    def serve(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=0.1)
            except queue.Empty:
                if self.loop.is_closed():  # the coroutine will never finish
                    raise RuntimeError("the event loop closed before the host function's coroutine finished") from None
                continue
            if job is None:
                return
            job()


# Set in the context of a host function's coroutine: the plugin thread that waits for it.
_WAITING: contextvars.ContextVar[_Waiting | None] = contextvars.ContextVar("ferrule_aio_waiting", default=None)


def _bridge(fn: Callable[..., Any], owner: Any, loop: asyncio.AbstractEventLoop,
            running: list[concurrent.futures.Future[Any]]) -> Callable[..., Any]:
    """A host function as the plugin's thread calls it: a coroutine it
    returns runs on ``loop`` while that thread waits (and runs the awaited
    calls the coroutine makes). ``running`` collects the coroutines' futures,
    for a cancelled call to cancel."""

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        result = fn(*args)
        if not inspect.isawaitable(result):
            return result
        waiting = _Waiting(owner, loop)
        token = _WAITING.set(waiting)  # the task made for the coroutine copies this context
        try:
            future = asyncio.run_coroutine_threadsafe(_awaited(result), loop)
        finally:
            _WAITING.reset(token)
        running.append(future)
        future.add_done_callback(waiting.finish)
        waiting.serve()
        return future.result()

    return call


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class AsyncFunction:
    """One plugin function (or instance method) as a coroutine function:
    ``await f(*args)`` has the checks, result and errors of ``f``'s plain
    call. Cancelling the awaiting task cancels the call: an isolated plugin's
    process is ended, as ``cancel()`` does; an in-process call, which nothing
    can interrupt, finishes on its thread and its result is dropped."""

    __module__ = "ferrule"

    def __init__(self, function: Any, owner: Any = None):
        self.function = function  # the plain callable
        self._owner = owner
        self.__name__ = self.__qualname__ = function.__name__
        self.__doc__ = function.__doc__
        inner = getattr(function, "__wrapped__", function)  # a method's call-layer function
        self._inner = inner
        sig = inner.signature
        self._callables = tuple((i, p.name) for i, p in enumerate(sig.params) if p.type.fn is not None)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.function)

    def __repr__(self) -> str:
        return f"<awaitable {self.function!r}>"

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        acall = getattr(self.function, "_acall", None)
        if acall is not None:  # isolated: awaited on the channel
            return await acall(args, kwargs)
        inner = self._inner
        if inner.quick and inner.thread_safe and not self._callables and _WAITING.get() is None:
            # Shorter than any hand-off to a thread. (Not thread-safe, it could wait for the serial lock.)
            return self.function(*args, **kwargs)
        loop = asyncio.get_running_loop()
        running: list[concurrent.futures.Future[Any]] = []  # the coroutines of async host functions
        if self._callables:
            args, kwargs = self._bridged(args, kwargs, loop, running)
        try:
            with busy(inner._target):  # close() on this thread now would wait for the loop it blocks
                return await self._in_process(inner, loop, args, kwargs)
        except asyncio.CancelledError:
            for future in running:  # the call's thread waits for them: they end, and so does it
                future.cancel()
            raise

    async def _in_process(self, inner: Any, loop: asyncio.AbstractEventLoop, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> Any:
        waiting = _WAITING.get()
        if waiting is not None:  # inside a host function's coroutine: on the plugin thread that waits for it
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()
            if waiting.post(functools.partial(_run_into, done, self.function, args, kwargs)):
                return await asyncio.wrap_future(done)
        target = inner._target
        serial = None if inner.thread_safe else _serial(target, loop)
        if serial is not None:
            await serial.acquire()  # (cancelled while waiting: nothing held)
        try:
            runner: Runner = getattr(target, "runner", DEFAULT_RUNNER)
            context = contextvars.copy_context()
            future = runner.executor().submit(context.run, self.function, *args, **kwargs)
        except BaseException:
            if serial is not None:
                serial.release()
            raise
        if serial is not None:
            # Held until the thread is done, not until the await ends: a
            # cancelled await must not let the next call pile onto the lock.
            future.add_done_callback(functools.partial(_release_on, loop, serial))
        return await asyncio.wrap_future(future)

    def _bridged(self, args: tuple[Any, ...], kwargs: dict[str, Any], loop: asyncio.AbstractEventLoop,
                 running: list[concurrent.futures.Future[Any]]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        values = list(args)
        for i, name in self._callables:
            if i < len(values):
                if callable(values[i]):
                    values[i] = _bridge(values[i], self._owner, loop, running)
            elif name in kwargs and callable(kwargs[name]):
                kwargs = dict(kwargs, **{name: _bridge(kwargs[name], self._owner, loop, running)})
        return tuple(values), kwargs


def _run_into(done: concurrent.futures.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> None:
    if not done.set_running_or_notify_cancel():
        return
    try:
        done.set_result(fn(*args, **kwargs))
    except BaseException as exc:
        done.set_exception(exc)


def _release_on(loop: asyncio.AbstractEventLoop, serial: asyncio.Semaphore, _future: Any) -> None:
    try:
        loop.call_soon_threadsafe(serial.release)
    except RuntimeError:  # the loop is closed: nothing waits on it any more
        pass


class AsyncCalls:
    """``plugin.aio`` (or ``instance.aio``): each function as a coroutine
    function, ``await plugin.aio.add(2, 3)``, and ``await aio.close()``."""

    __module__ = "ferrule"

    def __init__(self, owner: Any, functions: Callable[[], Mapping[str, Any]], close: Callable[[], None],
                 inside: Callable[[], bool] | None = None):
        self._owner = owner
        self._functions = functions
        self._close = close
        self._inside = inside  # whether this task runs inside one of the owner's calls (isolated)
        self._made: dict[str, AsyncFunction] = {}

    def __getattr__(self, name: str) -> AsyncFunction:
        made = self._made.get(name)
        if made is None:
            fn = None if name.startswith("__") else self._functions().get(name)
            if fn is None:
                raise AttributeError(f"{self._owner!r} has no function {name!r}")
            made = self._made.setdefault(name, AsyncFunction(fn, self._owner))
        return made

    def __getitem__(self, name: str) -> AsyncFunction:
        """The function called ``name``, also one that is not an attribute
        of the plugin (a leading underscore, or a reserved name)."""
        if name not in self._functions():
            raise KeyError(name)
        return self.__getattr__(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._functions())

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._functions()))

    async def close(self) -> None:
        """close(), off the event loop: it waits for calls in flight, which
        may need the loop to finish (an awaited isolated call). Refused with
        PluginClosedError from inside one of those calls (an async host
        function): it would wait for itself."""
        waiting = _WAITING.get()
        if (waiting is not None and waiting.owner is self._owner) or (self._inside is not None and self._inside()):
            from .._errors import PluginClosedError

            owner = self._owner
            what = f"plugin {owner.id!r}" if isinstance(getattr(owner, "id", None), str) else repr(owner)
            raise PluginClosedError(f"{what}: aio.close() from inside one of its calls (an async host function); "
                                    "close it after the call returns")
        await asyncio.get_running_loop().run_in_executor(None, self._close)

    def __repr__(self) -> str:
        return f"<awaitable calls of {self._owner!r}>"
