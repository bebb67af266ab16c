"""Isolated mode: the same plugin, behind the same Python API, in a child
process, so that a crash, a hang or a runaway allocation there becomes an
exception here.

The child (ferrule._child) loads the plugin the ordinary way. Calls cross
through shared memory (ferrule._wire) with futex wake-ups; the host spins for
a few microseconds first, so a trivial call costs a few microseconds. The
child cannot outlive the host: it watches a pipe only the host holds, runs in
a process group of its own that ferrule kills on close, and forks inside it
die with it.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import logging
import os
import signal
import struct
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from . import _errors
from . import _wire as wire
from ._errors import (
    CallCancelledError,
    FerruleError,
    IsolationError,
    PluginClosedError,
    PluginCrashedError,
    PluginTimeoutError,
)
from ._interfaces import Offer
from ._plugin import PluginFunction, _python_signature
from ._signature import Signature, parse_signature
from ._spawn import python_command, signal_name

__all__ = ["IsolatedFunction", "IsolatedPlugin"]

SPIN_NS = 50_000  # how long a waiting host spins before it sleeps
SLICE_NS = 5_000_000  # while asleep, how often it checks the child is alive
STARTUP_SECONDS = 60.0  # a fresh interpreter; generous for a loaded machine
CLOSE_SECONDS = 5.0
LAST_LINES = 20
_LINE_BYTES = 4096

try:
    from . import _speedups
except ImportError:  # isolated mode needs the futex channel; load() says so
    _speedups = None  # type: ignore[assignment]


class _Child:
    """One child process: its channel, its output and how it ended."""

    def __init__(self, memory_limit: int | None, cpu_limit: float | None, logger: logging.Logger):
        if _speedups is None:
            raise FerruleError("isolated mode needs ferrule's C accelerator, which is not built: reinstall ferrule with a C compiler")
        self.area = wire.Area.create()
        self.logger = logger
        self.last: deque[str] = deque(maxlen=LAST_LINES)
        lifeline, self.lifeline = os.pipe()  # the child's end closes with this process
        cpu = 0 if cpu_limit is None else max(1, int(-(-cpu_limit // 1)))
        try:
            self.proc = subprocess.Popen(
                python_command("ferrule._child", str(self.area.fd), str(lifeline), str(memory_limit or 0), str(cpu)),
                pass_fds=(self.area.fd, lifeline), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True,
            )
        except BaseException:
            os.close(self.lifeline)
            os.close(self.area.fd)
            raise
        finally:
            os.close(lifeline)
        self.pid = self.proc.pid
        self.readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, "stdout"), daemon=True, name=f"ferrule-{self.pid}-stdout"),
            threading.Thread(target=self._drain, args=(self.proc.stderr, "stderr"), daemon=True, name=f"ferrule-{self.pid}-stderr"),
        ]
        for t in self.readers:
            t.start()
        self.seen = 0
        self.base = 0  # where an answer goes: after the message it answers
        self.cancelled = False
        self.stopper = _Stopper(self.proc, self.lifeline, self.area)

    def _drain(self, pipe: Any, name: str) -> None:
        # Read to the end whatever the plugin writes, so a flood never blocks
        # it; keep the last lines for the error that reports a crash.
        for raw in iter(functools.partial(pipe.readline, _LINE_BYTES), b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.last.append(f"{name}: {line}")
            self.logger.debug("%s: %s", name, line)
        pipe.close()

    # -- the channel

    def post(self, kind: int, arg: int, base: int, length: int) -> None:
        area = self.area
        _speedups.channel_send(area.address, wire.TO_CHILD, kind, arg, base, length, area.size)

    def receive(self, deadline: float | None, during: str, who: str) -> tuple[int, int, int, int]:
        got = _speedups.channel_wait(self.area.address, wire.TO_HOST, self.seen, SPIN_NS, SLICE_NS if deadline is None else 0)
        while got is None:
            slice_ns = SLICE_NS
            if deadline is not None:
                slice_ns = max(0, min(slice_ns, int((deadline - time.monotonic()) * 1e9)))
            got = _speedups.channel_wait(self.area.address, wire.TO_HOST, self.seen, SPIN_NS, slice_ns)
            if got is not None:
                break
            self.check(deadline, during, who)
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
        for t in self.readers:
            t.join(0.5)  # its last words
        status = self.proc.returncode
        if running and cls is PluginCrashedError:
            status = None
        if cls is PluginCrashedError and status is not None:
            text += ": " + _describe_status(status)
        lines = tuple(self.last)
        if lines:
            text += "\nlast output:\n" + "\n".join("  " + line for line in lines)
        return cls(text, status if cls is PluginCrashedError else None, lines)


class _Stopper:
    """Ends a child; kept apart from IsolatedPlugin so a finalizer can run it."""

    def __init__(self, proc: subprocess.Popen[bytes], lifeline: int, area: wire.Area):
        self.proc = proc
        self.lifeline = lifeline
        self.area = area
        self.done = False
        self.lock = threading.Lock()

    def exited(self) -> bool:
        """Whether the child has ended, without reaping it: while it is a
        zombie its process group id cannot be reused, so killpg stays safe."""
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
            if self.proc.returncode is None:  # not reaped: the group id is still this child's
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # forks of the plugin too
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                self.proc.wait(CLOSE_SECONDS)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
                pass
            os.close(self.lifeline)
            os.close(self.area.fd)


def _describe_status(status: int) -> str:
    if status < 0:
        return f"killed by {signal_name(-status)} (signal {-status})"
    return f"exited with status {status}"


def _rebuild(payload: Any) -> BaseException:
    """The exception an ERROR or FAILED message describes, as the same class
    with the same message it had in the child."""
    if not isinstance(payload, dict) or not isinstance(payload.get("class"), str) or not isinstance(payload.get("message"), str):
        raise wire.WireError(f"an error report of the wrong shape: {payload!r:.200}")
    name, message = payload["class"], payload["message"]
    if name not in wire.ERROR_CLASSES:
        raise wire.WireError(f"an error of unknown class {name!r:.100}")
    make: Any = getattr(_errors, name, None) or getattr(builtins, name, FerruleError)
    args: tuple[Any, ...] = (message,)
    try:
        if name == "AbiVersionError":
            args += (tuple(payload["plugin_version"]), tuple(payload["host_version"]))
        elif name in ("PluginCallError", "PluginPanicError"):
            args += (str(payload.get("plugin_message", "")),)
        elif name == "InterfaceMismatchError":
            args += (str(payload.get("expected_layout", "")), str(payload.get("found_layout", "")))
    except (KeyError, TypeError, ValueError):
        raise wire.WireError(f"an error report of the wrong shape: {payload!r:.200}") from None
    error: BaseException = make(*args)
    return error


class IsolatedFunction:
    """A typed callable for one function of an isolated plugin: the same
    checks, results and errors as a PluginFunction, one process away."""

    __module__ = "ferrule"

    def __init__(self, plugin: IsolatedPlugin, index: int, name: str, signature: Signature, doc: str, flags: int):
        self._plugin = plugin
        self._index = index
        self.__name__ = self.__qualname__ = self.name = name
        self.signature = signature
        self.doc = doc
        self.thread_safe = bool(flags & 1)
        self.quick = bool(flags & 2)
        self.__doc__ = f"{name}{signature}" + (f"\n\n{doc}" if doc else "")
        self._names = [p.name for p in signature.params]
        self._types = [p.type for p in signature.params]
        self._count = len(self._names)
        self._during = f"{name}()"
        self._codec = wire.Codec(signature)
        # The exact Python type each parameter takes without conversion; None
        # where every value goes through the in-process checks (buffers, callables).
        self._exact = tuple(t.python if t.python in (int, float, bool, str, bytes) else None for t in self._types)

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        return _python_signature(self.signature)

    def __repr__(self) -> str:
        return f"<ferrule isolated function {self._plugin.id}.{self.name}{self.signature}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != self._count:
            args = PluginFunction._bind(self, args, kwargs)  # type: ignore[arg-type]
        return self._plugin._call(self, args, self._plugin.timeout)

    def _checked(self, values: tuple[Any, ...], full: bool = False) -> list[Any]:
        """Values as the in-process checks leave them: TypeError and ValueError
        with the same messages. The child checks ranges again, as in process."""
        out = list(values)
        for i, (value, exact) in enumerate(zip(values, self._exact)):
            if full or type(value) is not exact or exact is None:
                out[i] = PluginFunction._check_value(self._types[i], value, f"{self.name}() argument {self._names[i]!r}")
        return out


class IsolatedPlugin:
    """A plugin running in a child process, with the API of ``Plugin``:
    functions as attributes and in ``functions``, the descriptor's metadata,
    errors as the same exception classes, and the plugin's log lines in the
    ``ferrule.plugin.<id>`` logger.

    What in process would take the host down raises instead:
    PluginCrashedError (a signal or exit, with the last output lines),
    PluginTimeoutError (``timeout`` seconds per call, or ``call(...,
    timeout=)``) and CallCancelledError (``cancel()`` from another thread).
    After one of these the next call starts a new process when ``restart``
    is true; otherwise the plugin stays failed. ``memory_limit`` (bytes of
    address space, the child's Python included: leave it 200 MB or more) and
    ``cpu_limit`` (seconds) are enforced by the kernel where it can.

    Calls are serialised: one process runs one call at a time. Load a plugin
    more than once to run calls in parallel.
    """

    __module__ = "ferrule"

    path: str
    id: str
    name: str
    version: str
    description: str
    license: str
    abi_version: tuple[int, ...]
    interfaces: tuple[Offer, ...]
    _functions: dict[str, IsolatedFunction]

    def __init__(self, path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None,
                 timeout: float | None = None, restart: bool = True, memory_limit: int | None = None,
                 cpu_limit: float | None = None):
        for name, value in (("timeout", timeout), ("cpu_limit", cpu_limit)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
        if memory_limit is not None and (isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit <= 0):
            raise ValueError(f"memory_limit must be a positive number of bytes or None, got {memory_limit!r}")
        if config is not None and not isinstance(config, (str, Mapping)):
            raise TypeError(f"config must be str, a mapping (sent as JSON) or None, got {type(config).__name__}")
        self._request_path = os.fspath(path)
        self._config = dict(config) if isinstance(config, Mapping) else config
        self.timeout = timeout
        self.restart = restart
        self.memory_limit = memory_limit
        self.cpu_limit = cpu_limit
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()  # guards _child for cancel()
        self._child: _Child | None = None
        self._calls = 0
        self._depth = 0
        self._owner = 0  # the thread running the outermost call
        self._failure: IsolationError | None = None
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._who = f"isolated plugin {self._request_path!r}"
        self._start()

    # -- the process

    def _start(self) -> _Child:
        child = _Child(self.memory_limit, self.cpu_limit, logging.getLogger("ferrule.plugin"))
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, child.stopper.kill)
        with self._state_lock:
            self._child = child
        try:
            if child.receive(time.monotonic() + STARTUP_SECONDS, "start-up", self._who)[0] != wire.ACK:
                raise wire.WireError("did not start with ACK")
            request = {"path": self._request_path, "config": self._config,
                       "log_level": min(logging.getLogger("ferrule.plugin").getEffectiveLevel(), logging.INFO)}
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            kind, _arg, base, length = self._exchange(child, wire.LOAD, 0, 0, child.area.write_json(0, request), deadline, "load")
            if kind == wire.FAILED:
                error = _rebuild(child.area.read_json(base, length))
                self._stop(child)
                raise error
            if kind != wire.READY:
                raise wire.WireError(f"answered load with message kind {kind}")
            meta = child.area.read_json(base, length)
            self._describe(meta)
        except wire.WireError as exc:
            raise self._broken(child, exc) from None
        except IsolationError as exc:
            self._lost(child, exc)
            raise
        except BaseException:
            self._stop(child)
            raise
        child.logger = self._logger
        return child

    def _describe(self, meta: Any) -> None:
        try:
            first = "_functions" not in self.__dict__
            functions: dict[str, IsolatedFunction] = {}
            for i, (name, sig, doc, flags) in enumerate(meta["functions"]):
                functions[str(name)] = IsolatedFunction(self, i, str(name), parse_signature(str(sig)), str(doc), int(flags))
            abi = tuple(int(v) for v in meta["abi_version"])
            offers = tuple(Offer(str(i), int(r), str(n), str(d), int(f), int(fp), "", 0, None, None, None)
                           for i, r, n, d, f, fp in meta["interfaces"])
            fields = {k: str(meta[k]) for k in ("path", "id", "name", "version", "description", "license")}
        except (KeyError, TypeError, ValueError) as exc:
            raise wire.WireError(f"a description of the wrong shape ({exc})") from None
        if not first:
            def shape(fns: Mapping[str, IsolatedFunction]) -> list[tuple[str, str, int, int]]:
                return [(f.name, str(f.signature), f.thread_safe, f.quick) for f in fns.values()]

            if (fields["id"], fields["version"], abi, shape(functions)) != (self.id, self.version, self.abi_version,
                                                                          shape(self._functions)):
                raise wire.WireError(
                    f"restarted as another plugin ({fields['id']} {fields['version']}): the file changed since it "
                    "was loaded; load it again"
                )
        if first:
            self.path, self.id, self.name = fields["path"], fields["id"], fields["name"]
            self.version, self.description, self.license = fields["version"], fields["description"], fields["license"]
            self.abi_version = abi
            self.interfaces = offers
            self._functions = functions
            self._logger = logging.getLogger(f"ferrule.plugin.{self.id}")
            self._who = f"isolated plugin {self.id!r} ({self.path})"

    def _broken(self, child: _Child, exc: wire.WireError) -> IsolationError:
        error = child.failure(IsolationError, f"{self._who} broke the isolation protocol: it {exc}; ferrule ended its process")
        self._lost(child, error)
        return error

    def _lost(self, child: _Child, failure: IsolationError) -> None:
        """End the child and remember why, for restart=False and the next call."""
        self._failure = failure
        self._stop(child)

    def _stop(self, child: _Child) -> None:
        """End the child; the next call (if any) starts another."""
        with self._state_lock:
            if self._child is child:
                self._child = None
        child.stopper.kill()

    def _live_child(self) -> _Child:
        if self._closed:
            raise PluginClosedError(f"plugin {self.id!r} is closed: load it again to call it")
        child = self._child
        if child is not None and not child.stopper.done:
            return child
        if child is not None and child.cancelled:  # cancel() landed just after its call ended
            with self._state_lock:
                self._child = None
            return self._start()
        if self.restart or isinstance(self._failure, CallCancelledError):  # a cancel is the host's doing, not a failure
            return self._start()
        failure = self._failure
        assert failure is not None
        raise PluginCrashedError(
            f"{self._who} failed earlier and restart=False: load it again\n{failure}", failure.status, failure.last_lines
        )

    # -- calls

    def _exchange(self, child: _Child, kind: int, arg: int, base: int, length: int, deadline: float | None, during: str,
                  fn: IsolatedFunction | None = None, callables: list[Any] | None = None,
                  errors: list[BaseException] | None = None) -> tuple[int, int, int, int]:
        """Post a message and return the answer, serving the child's log lines
        and host-function calls that come first."""
        child.post(kind, arg, base, length)
        while True:
            got = child.receive(deadline, during, self._who)
            kind, arg, base, length = got
            if kind in (wire.LOG, wire.INVOKE) and deadline is not None:
                child.check(deadline, during, self._who)  # a stream of messages must not outrun the timeout
            if kind == wire.LOG:
                self._log(child, arg, child.area.read_json(base, length))
                child.post(wire.ACK, 0, child.base, 0)
            elif kind == wire.INVOKE and fn is not None and callables is not None and errors is not None:
                self._invoke(child, fn, callables, errors, arg, base, length)
            else:
                return got

    def _log(self, child: _Child, level: int, record: Any) -> None:
        if not (isinstance(record, list) and len(record) == 2 and all(isinstance(x, str) for x in record)):
            raise wire.WireError(f"a log record of the wrong shape: {record!r:.200}")
        name, text = record
        own = child.logger.name  # the child may name its plugin's logger or one below it, no other
        logger = logging.getLogger(name) if name == own or name.startswith(own + ".") else child.logger
        child.last.append(f"log {logging.getLevelName(level)}: {text}")
        logger.log(level, "%s", text)

    def _invoke(self, child: _Child, fn: IsolatedFunction, callables: list[Any], errors: list[BaseException],
                index: int, base: int, length: int) -> None:
        if not 0 <= index < len(callables):
            raise wire.WireError(f"called host function #{index}; the call passed {len(callables)}")
        param = fn._codec.callables[index]
        sig = fn._types[param].fn
        assert sig is not None
        codec = wire.Codec(sig)
        args = codec.read_args(child.area, base, length, copy=True)
        out = child.base
        try:
            if errors:
                raise errors[0]  # the first failure stands; the plugin only learns it failed
            result = callables[index](*args)
            if sig.result is not None:
                what = f"the result of the host function passed as {fn.name}() argument {fn._names[param]!r}"
                result = PluginFunction._check_value(sig.result, result, what)
            n = codec.write_result(child.area, out, result)
        except BaseException as exc:
            if not errors:
                errors.append(exc)
            child.post(wire.INVOKE_ERROR, 0, out, child.area.write_json(out, {"class": "HostFunctionFailed", "message": str(exc)}))
        else:
            child.post(wire.INVOKE_RESULT, 0, out, n)

    def _call(self, fn: IsolatedFunction, values: tuple[Any, ...], timeout: float | None) -> Any:
        checked = values if tuple(map(type, values)) == fn._exact else fn._checked(values)
        codec = fn._codec
        with self._lock:
            child = self._child
            if child is None or self._closed or child.stopper.done:
                child = self._live_child()
            area = child.area
            nested = self._depth > 0
            base = child.base if nested else 0
            back: Any = ()
            try:
                if codec.simple and not nested:
                    codec.fixed.pack_into(area.data, 0, *checked)
                    length = codec.fixed.size
                else:
                    length, back = codec.write_args(area, base, checked)
            except (struct.error, UnicodeEncodeError, OverflowError):
                fn._checked(values, full=True)  # raises the in-process error
                raise
            except wire.WireError as exc:
                raise self._broken(child, exc) from None
            callables = [checked[i] for i in codec.callables] if codec.callables else []
            errors: list[BaseException] = []
            deadline = None if timeout is None else time.monotonic() + timeout
            self._calls += 1
            self._depth += 1
            self._owner = threading.get_ident()
            try:
                kind, _arg, rbase, rlength = self._exchange(child, wire.CALL, fn._index, base, length, deadline,
                                                            fn._during, fn, callables, errors)
                for offset, view in back:  # the plugin's writes into mutbuf arguments
                    view[:] = area.data[offset : offset + len(view)]
                if kind == wire.RESULT:
                    result = codec.read_result(area, rbase, rlength)
                elif kind == wire.ERROR:
                    result = _rebuild(area.read_json(rbase, rlength))
                else:
                    raise wire.WireError(f"answered a call with message kind {kind}")
            except wire.WireError as exc:
                raise self._broken(child, exc) from None
            except IsolationError as exc:
                self._lost(child, exc)
                raise
            except BaseException as exc:
                # Interrupted mid-exchange (KeyboardInterrupt, a signal handler): the child
                # may still answer this call later, so it must not serve the next one.
                self._lost(child, IsolationError(f"{self._who}: {fn._during} was interrupted ({type(exc).__name__}); "
                                                 "ferrule ended its process"))
                raise
            finally:
                self._depth -= 1
                self._calls -= 1
        if kind == wire.ERROR:
            raise errors[0] if errors else result  # a host function's own exception comes first
        return result

    def call(self, name: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Call the function ``name`` with a timeout of its own (seconds;
        None: the plugin's ``timeout``)."""
        fn = self.functions[name]
        if kwargs or len(args) != fn._count:
            args = PluginFunction._bind(fn, args, kwargs)  # type: ignore[arg-type]
        return self._call(fn, args, self.timeout if timeout is None else timeout)

    def cancel(self) -> bool:
        """End the call in flight, from another thread: it raises
        CallCancelledError. False when no call was running."""
        with self._state_lock:
            child = self._child
            if child is None or self._calls == 0:  # _calls changes under the call lock only
                return False
            child.cancelled = True
        child.stopper.kill()
        return True

    @property
    def pid(self) -> int | None:
        """The child process's id, or None when none runs."""
        child = self._child
        return child.pid if child is not None and not child.stopper.done else None

    @property
    def functions(self) -> Mapping[str, IsolatedFunction]:
        """Every exported function by name."""
        return MappingProxyType(self._functions)

    # -- interfaces: not across the process boundary (yet)

    def implementations(self, interface: type[Any]) -> list[Any]:
        raise FerruleError(f"{self._who}: interfaces are not available in isolated mode; load the plugin in process to use them")

    implementation = create = implementations

    # -- lifecycle

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Run the plugin's shutdown in the child and end the process. Idempotent."""
        if self._depth and self._owner == threading.get_ident():
            raise PluginClosedError(f"{self._who}: close() from inside one of its calls (a host function); close it after the call returns")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            child = self._child
            if child is None:
                return
            try:
                self._exchange(child, wire.CLOSE, 0, 0, 0, time.monotonic() + CLOSE_SECONDS, "close")
            except (IsolationError, wire.WireError):
                pass  # it is ended either way
            finally:
                self._stop(child)  # the process group: whatever the plugin forked goes too

    def __enter__(self) -> IsolatedPlugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> IsolatedFunction:
        functions = self.__dict__.get("_functions")
        if functions is not None and name in functions:
            fn: IsolatedFunction = functions[name]
            return fn
        raise AttributeError(f"plugin {self.__dict__.get('id', '?')!r} has no function {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._functions))

    def __iter__(self) -> Iterator[IsolatedFunction]:
        return iter(self._functions.values())

    def __repr__(self) -> str:
        state = " closed" if self._closed else (f" pid {self.pid}" if self._child else " failed")
        lines = [f"<ferrule.IsolatedPlugin {self.id} {self.name!r} {self.version}{state}, ABI {self.abi_version[0]}.{self.abi_version[1]}"]
        for fn in self._functions.values():
            doc = fn.doc.splitlines()[0] if fn.doc else ""
            lines.append(f"    {fn.name}{fn.signature}" + (f"  # {doc}" if doc else ""))
        return "\n".join(lines) + ">"

