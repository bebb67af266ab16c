"""Isolated mode: the same plugin, behind the same Python API, in a child
process (child.py, started and watched by process.py), so that a crash, a
hang or a runaway allocation there becomes an exception here.

The child loads the plugin the ordinary way and sends its spec; calls cross
shared memory (wire.py) with futex wake-ups (channel.py). Arguments are
checked here with the same checks, and errors come back as the same class
and message, as in process.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import logging
import os
import struct
import threading
import time
import types
import weakref
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from .._abi import cdef as abi
from .._abi.ffi import ffi
from .._abi.signature import parse_signature
from .._abi.spec import FunctionSpec, OfferSpec, PluginSpec, SpecError
from .._abi.types import TYPES
from .._call.marshal import release_borrowed, release_result, store_borrowed, store_scalar, value_of
from .._interfaces.instances import Implementation, matching, named, no_implementation
from .._interfaces.services import Services, _fail
from .._plugin.plugin import NOT_PICKLED
from .._call.checks import bind, check_value, not_awaited
from .._call.runner import aio_close_refusal
from .._call.function import doc_text, python_signature
from .._call import accelerator
from .._call.gate import new_gate
from .._sandbox import Sandbox, SandboxReport
from .._sandbox.launch import prepare
from .._loader.pin import check_permissions, check_pin, identity, pin_of, resolved, same_file
from .._errors import (
    CallCancelledError,
    IsolationError,
    PluginClosedError,
    PluginCrashedError,
    from_payload,
)
from .. import _spawn
from . import channel, wire
from .process import Child, Interrupts
from .instances import IsolatedImplementation, RemoteInstance
from .protocol import (ACK, CALL, CLOSE, CREATE, DESTROY, ERROR, FAILED, INVOKE, INVOKE_ERROR, INVOKE_RESULT, LOAD, LOG,
                       QUERY, QUERY_RESULT, READY, RELEASE, RESULT, SCALL, SCALL_RESULT)
from .remote import NULL_ARGS, SCALL_HEAD

if TYPE_CHECKING:
    from .._call.aio import AsyncCalls

__all__ = ["IsolatedFunction", "IsolatedPlugin"]

P = TypeVar("P")
class _HostCall:
    """An async host function being awaited inside a call of ``plugin``. The
    calls of that plugin its coroutine makes (in its own task or in tasks it
    starts, which copy its context) nest inside that call, one at a time."""

    def __init__(self, plugin: Any):
        import asyncio

        self.plugin = plugin
        self.active = True  # False once the host function returned: later calls are not nested
        self.lock = asyncio.Lock()


_INSIDE: contextvars.ContextVar[_HostCall | None] = contextvars.ContextVar("ferrule_isolated_inside", default=None)
BYTES = TYPES["bytes"]
MAX_LENT = 1 << 16  # objects one isolated plugin may hold from host->query at once: a child cannot grow the host without bound


@functools.lru_cache(maxsize=256)
def _service_codec(text: str) -> wire.Codec:
    """The wire codec of a service method's call-layer signature (a few per host)."""
    return wire.Codec(parse_signature(text))


class _Borrower:
    """An isolated plugin as its host's Services see a caller: its id and a
    key of its own for what is lent to it (no host table lives here)."""

    _keys = itertools.count(1)

    def __init__(self, name: str):
        self.plugin_id = name
        self.debug = False
        self.lent = 0  # objects it holds now
        self.warned = False  # that it holds too many
        self.host_table = types.SimpleNamespace(address=-next(self._keys))  # never a real table's address

AIO_TURN = 0.002  # how long a plain call gives way to an awaited one waiting for the serial lock (s)
STARTUP_SECONDS = 60.0  # a fresh interpreter; generous for a loaded machine
CLOSE_SECONDS = 5.0
# Errors only the host may decide on: a child cannot claim it crashed.
_HOST_ONLY = frozenset({"IsolationError", "PluginCrashedError", "PluginTimeoutError", "CallCancelledError", "SandboxError"})


def _rebuild(payload: Any) -> BaseException:
    """The exception an ERROR or FAILED message describes: the same class,
    message and fields it had in the child."""
    try:
        return from_payload(payload, refuse=_HOST_ONLY)
    except ValueError as exc:
        raise wire.WireError(str(exc)) from None


class IsolatedFunction:
    """A typed callable for one function of an isolated plugin: the same
    checks, results and errors as a PluginFunction, one process away."""

    __module__ = "ferrule"

    def __init__(self, plugin: IsolatedPlugin, index: int, spec: FunctionSpec, instance: RemoteInstance | None = None):
        self._plugin = plugin
        self._index = index
        self._spec = spec
        self._instance = instance  # a method of this instance in the child
        name, signature = spec.name, spec.signature
        self.__name__ = self.__qualname__ = self.name = name
        self.signature = signature
        self.doc = spec.doc
        self.thread_safe = spec.thread_safe
        self.quick = spec.quick
        self.__doc__ = doc_text(name, signature, spec.doc)
        self._names = [p.name for p in signature.params]
        self._types = [p.type for p in signature.params]
        self._count = len(self._names)
        self._display = f"{name}{signature}"
        self._during = f"{name}()"
        self._codec = wire.Codec(signature)
        # The exact Python type each parameter takes without conversion; None
        # where every value goes through the in-process checks (buffers, callables).
        self._exact = tuple(t.python if t.python in (int, float, bool, str, bytes) else None for t in self._types)

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        return python_signature(self.signature)

    def __repr__(self) -> str:
        return f"<ferrule isolated function {self._plugin.id}.{self.name}{self.signature}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != self._count:
            args = bind(self._display, self._names, args, kwargs)
        instance = self._instance
        if instance is None:
            return self._plugin._call(self, args, self._plugin.timeout)
        gate = instance.gate
        mark = gate.enter()  # the instance's own gate: close() waits for this call, and refuses from inside it
        try:
            return self._plugin._call(self, args, self._plugin.timeout, instance)
        finally:
            gate.leave(mark)

    async def _acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The awaited call (AsyncFunction): answered on the channel, on the loop."""
        if kwargs or len(args) != self._count:
            args = bind(self._display, self._names, args, kwargs)
        return await self._plugin._acall(self, tuple(args), self._plugin.timeout, self._instance)

    def _checked(self, values: tuple[Any, ...], full: bool = False) -> list[Any]:
        """Values as the in-process checks leave them: TypeError and ValueError
        with the same messages. The child checks ranges again, as in process."""
        out = list(values)
        for i, (value, exact) in enumerate(zip(values, self._exact)):
            if full or type(value) is not exact or exact is None:
                out[i] = check_value(self._types[i], value, f"{self.name}() argument {self._names[i]!r}")
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

    ``sandbox`` (a ``ferrule.Sandbox``, or True for its defaults) runs the
    child in namespaces of its own under a seccomp filter, for a plugin
    that is not trusted; ``sandbox`` on the object reports what was in force.

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
    abi_version: tuple[int, int]
    interfaces: tuple[OfferSpec, ...]
    _spec: PluginSpec
    _functions: dict[str, IsolatedFunction]

    def __init__(self, path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None,
                 timeout: float | None = None, restart: bool = True, memory_limit: int | None = None,
                 cpu_limit: float | None = None, sha256: str | None = None, strict_permissions: bool = True,
                 sandbox: Sandbox | bool | None = None, _services: Services | None = None):
        for name, value in (("timeout", timeout), ("cpu_limit", cpu_limit)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
        if memory_limit is not None and (isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit <= 0):
            raise ValueError(f"memory_limit must be a positive number of bytes or None, got {memory_limit!r}")
        policy = Sandbox() if sandbox is True else None if sandbox is False else sandbox
        if policy is not None:
            if not isinstance(policy, Sandbox):
                raise TypeError(f"sandbox must be a ferrule.Sandbox, True or None, got {type(policy).__name__}")
            if memory_limit is not None or cpu_limit is not None:
                raise ValueError("with a sandbox, give the limits in it: Sandbox(memory=..., cpu_time=...), "
                                 "not memory_limit= or cpu_limit=")
            memory_limit, cpu_limit = policy.memory, policy.cpu_time
        self._policy: Sandbox | None = policy
        self._report: SandboxReport | None = None
        if config is not None and not isinstance(config, (str, Mapping)):
            raise TypeError(f"config must be str, a mapping (sent as JSON) or None, got {type(config).__name__}")
        # Resolved once: a restart after os.chdir must not find another file
        # by the same relative name.
        self._request_path = resolved(path)
        self._identity: tuple[int, int, int, int] | None = None  # of the file first loaded
        sha256 = pin_of(path, sha256)
        self._sha256 = sha256
        self._strict = strict_permissions
        if strict_permissions:
            check_permissions(self._request_path)
        self._pinned = None if sha256 is None else check_pin(self._request_path, sha256)  # before anything starts
        self._config = dict(config) if isinstance(config, Mapping) else config
        self.timeout = timeout
        self.restart = restart
        self.memory_limit = memory_limit
        self.cpu_limit = cpu_limit
        self._state_lock = threading.Lock()  # guards _child for cancel()
        self._child: Child | None = None
        self._calls = 0  # in flight; changes under the gate's serial lock only
        self._depth = 0
        self._failure: IsolationError | None = None
        self._pid = os.getpid()  # the host: a fork of it must not talk to (or end) this child
        self._awaiting = False  # an awaited call waits for the child's answer (see _send_call)
        # The threads of event loops whose awaited calls wait for the serial
        # lock, and how many on each (_serial_enter); the loops' threads that
        # have awaited calls in flight (close() refuses there).
        self._aio_waiting: dict[int, int] = {}
        self._aio_busy: dict[int, int] = {}
        self._host_sync = 0  # a plain host function of an awaited call runs (on the loop's thread)
        self._aio_counts = threading.Lock()
        self._aio_locks: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # event loop -> asyncio.Lock
        self._shut = False  # close() has run
        self._finalizer: weakref.finalize[Any, Any] | None = None
        # Its host's services, which the child's host->query reaches through the channel.
        self._services = _services
        self._borrower = _Borrower(os.fspath(path))
        self._doomed: list[tuple[Child, int]] = []  # instances collected unclosed: destroyed at the next request
        self._who = f"isolated plugin {self._request_path!r}"
        accelerator.warn_if_slow()
        accelerator.warn_missing(channel.MISSING, "Isolated calls wake the child through cffi, about 3x slower")
        self._start()
        # The call contract's gate, as in process: calls in flight, one call at
        # a time per process (re-entrant for host functions), close() from
        # inside a call refused.
        self._gate = new_gate(accelerator.speedups is not None, f"plugin {self.id!r} is closed: load it again to call it",
                              f"plugin {self.id!r}: close() from inside one of its calls (a host function); close it "
                              "after the call returns")

    # -- the process

    def _start(self) -> Child:
        if self._identity is not None:  # a restart: the trust checks again, before it runs
            if self._strict:
                check_permissions(self.path)
            if self._sha256 is not None:
                check_pin(self.path, self._sha256)
        if self._identity is not None and identity(self.path) != self._identity:
            # Before any of it runs: a restart runs the file that was loaded, or nothing.
            raise IsolationError(
                f"{self._who}: {self.path} is no longer the file that was loaded (its device, inode, size or "
                "modification time changed), so ferrule did not restart it: load it again to run the new file")
        with Interrupts() as interrupts:  # from the fork until the child can be stopped again
            launch = None if self._policy is None else prepare(self._policy, self._request_path)
            child = Child(self.memory_limit, self.cpu_limit, logging.getLogger("ferrule.plugin"), launch)
            if self._finalizer is not None:
                self._finalizer.detach()
            self._finalizer = weakref.finalize(self, child.stopper.kill)
            with self._state_lock:
                self._child = child
        started = False
        try:
            interrupts.check()
            kind, _arg, base, length = child.receive(time.monotonic() + STARTUP_SECONDS, "start-up", self._who)
            if kind != ACK:
                raise wire.WireError("did not start with ACK")
            if launch is not None:  # before the plugin runs: what the child's own /proc says
                self._report = launch.check(child.area.read_json(base, length))
            path = self._request_path if self._identity is None else self.path  # a restart: the file found first
            request = {"path": path, "config": self._config, "hosted": self._services is not None,
                       "log_level": min(logging.getLogger("ferrule.plugin").getEffectiveLevel(), logging.INFO)}
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            kind, _arg, base, length = self._exchange(child, LOAD, 0, 0, child.area.write_json(0, request), deadline, "load")
            if kind == FAILED:
                error = _rebuild(child.area.read_json(base, length))
                self._stop(child)
                raise error
            if kind != READY:
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
        else:
            started = True
        finally:
            if not started:  # ended: its descriptors and mappings go now, not at the next collection
                child.close_channel()
        child.logger = self._logger
        return child

    def _describe(self, meta: Any) -> None:
        """Take the spec the child sent; a restarted child must send the same."""
        try:
            spec = PluginSpec.from_json(meta)
        except SpecError as exc:
            raise wire.WireError(f"sent a plugin description that is not one ({exc})") from None
        if "_spec" in self.__dict__:
            if spec != self._spec:
                raise wire.WireError(
                    f"restarted as another plugin ({spec.id} {spec.version}): the file changed since it "
                    "was loaded; load it again"
                )
            return
        self._spec = spec
        self._borrower.plugin_id = spec.id
        self._identity = identity(spec.path)
        if self._pinned is not None and self._identity != self._pinned:
            same_file(spec.path, self._pinned)  # raises: the child loaded another file than the one hashed
        self.path, self.id, self.name = spec.path, spec.id, spec.name
        self.version, self.description, self.license = spec.version, spec.description, spec.license
        self.abi_version = spec.abi_version
        self.interfaces = spec.offers
        self._functions = {f.name: IsolatedFunction(self, i, f) for i, f in enumerate(spec.functions)}
        self._logger = logging.getLogger(f"ferrule.plugin.{self.id}")
        self._who = f"isolated plugin {self.id!r} ({self.path})"

    def _broken(self, child: Child, exc: wire.WireError) -> IsolationError:
        error = child.failure(IsolationError, f"{self._who} broke the isolation protocol: it {exc}; ferrule ended its process")
        self._lost(child, error)
        return error

    def _failed(self, child: Child, exc: BaseException, during: str) -> BaseException:
        """What an exchange that failed raises, once the child is ended: the
        IsolationError a broken protocol makes, or ``exc`` itself. Interrupted
        mid-exchange (KeyboardInterrupt, a signal handler), the child may
        still answer later, so it must not serve the next request either."""
        if isinstance(exc, wire.WireError):
            return self._broken(child, exc)
        if isinstance(exc, IsolationError):
            self._lost(child, exc)
        else:
            self._lost(child, IsolationError(f"{self._who}: {during} was interrupted ({type(exc).__name__}); "
                                             "ferrule ended its process"))
        return exc

    def _lost(self, child: Child, failure: IsolationError) -> None:
        """End the child and remember why, for restart=False and the next
        call: the first reason it ended (a later request of it only learns
        that it had)."""
        if not child.stopper.done or self._failure is None:
            self._failure = failure
        self._stop(child)

    def _stop(self, child: Child) -> None:
        """End the child; the next call (if any) starts another. What it
        borrowed from the host's services is given back."""
        with self._state_lock:
            if self._child is child:
                self._child = None
        child.stopper.kill()
        if self._services is not None:
            self._services.release_all(self._borrower.host_table.address)
            self._borrower.lent = 0

    def _live_child(self) -> Child:
        child = self._child
        if child is not None and not child.stopper.done:
            return child
        if child is not None and not self._depth:
            child.close_channel()  # ended between requests (cancel(), a crash): its mappings go now
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

    def _exchange(self, child: Child, kind: int, arg: int, base: int, length: int, deadline: float | None, during: str,
                  fn: IsolatedFunction | None = None, callables: list[Any] | None = None,
                  errors: list[BaseException] | None = None) -> tuple[int, int, int, int]:
        """Post a message and return the answer, serving the child's log lines
        and host-function calls that come first."""
        child.post(kind, arg, base, length)
        while True:
            got = child.receive(deadline, during, self._who)
            kind, arg, base, length = got
            if kind in (LOG, INVOKE) and deadline is not None:
                child.check(deadline, during, self._who)  # a stream of messages must not outrun the timeout
            if kind == INVOKE and fn is not None and callables is not None and errors is not None:
                self._invoke(child, fn, callables, errors, arg, base, length)
            elif not self._serve(child, got):
                return got

    def _serve(self, child: Child, got: tuple[int, int, int, int]) -> bool:
        """Serve a message the child sends during a request (a log line, or
        its host->query, call or release); False for any other."""
        kind, arg, base, length = got
        if kind == LOG:
            self._log(child, arg, child.area.read_json(base, length))
            child.post(ACK, 0, child.base, 0)
        elif kind == QUERY:
            self._serve_query(child, base, length)
        elif kind == SCALL:
            self._serve_scall(child, arg, base, length)
        elif kind == RELEASE:
            if self._services is not None and self._services.release_for(self._borrower, arg):
                self._borrower.lent -= 1
            child.post(ACK, 0, child.base, 0)
        else:
            return False
        return True

    def _log(self, child: Child, level: int, record: Any) -> None:
        if not (isinstance(record, list) and len(record) == 2 and all(isinstance(x, str) for x in record)):
            raise wire.WireError(f"a log record of the wrong shape: {record!r:.200}")
        name, text = record
        own = child.logger.name  # the child may name its plugin's logger or one below it, no other
        logger = logging.getLogger(name) if name == own or name.startswith(own + ".") else child.logger
        child.last.append(f"log {logging.getLevelName(level)}: {text}")
        logger.log(level, "%s", text)

    def _serve_query(self, child: Child, base: int, length: int) -> None:
        """The child's host->query: a token for one of the host's Python
        services, with its methods' call-layer signatures (0: none)."""
        request = child.area.read_json(base, length)
        if not (isinstance(request, dict) and isinstance(request.get("id"), str)
                and all(type(request.get(k)) is int for k in ("revision", "fingerprint"))):
            raise wire.WireError(f"a query of the wrong shape: {request!r:.200}")
        services = self._services
        borrower = self._borrower
        token = 0
        if services is not None and borrower.lent < MAX_LENT:
            token = services.lend(borrower, (request["id"], request["revision"]), request["fingerprint"],
                                  services_only=True)
            borrower.lent += token != 0
        elif services is not None and not borrower.warned:
            borrower.warned = True  # once: a plugin that keeps asking must not flood the log
            logging.getLogger("ferrule").error("%s holds %d objects from host->query, the most an isolated plugin "
                                               "may: refused more until it releases some", self._who, borrower.lent)
        answer = {"token": token, "signatures": (services.signatures(token) if services is not None and token else None)}
        child.post(QUERY_RESULT, 0, child.base, child.area.write_json(child.base, answer))

    def _serve_scall(self, child: Child, token: int, base: int, length: int) -> None:
        """The child's host->call: the arguments into ferrule_value slots of
        this process, then the same Services code an in-process plugin's
        call reaches. Buffers stay in the shared memory, so a service's
        writes to a mutbuf reach the child."""
        area = child.area
        area.check(base, length)
        if length < SCALL_HEAD.size:
            raise wire.WireError(f"a host->call of {length} bytes")
        method, flags = SCALL_HEAD.unpack_from(area.data, base)
        services = self._services
        texts = services.signatures(token) if services is not None else None
        codec = _service_codec(texts[method]) if texts is not None and method < len(texts) else None
        ret = ffi.new("ferrule_value *")
        keep: list[Any] = []
        args: Any = ffi.NULL
        if codec is not None and not flags & NULL_ARGS:
            values = codec.read_args(area, base + SCALL_HEAD.size, length - SCALL_HEAD.size)
            args = ffi.new("ferrule_value[]", max(1, len(values)))
            for i, (t, v) in enumerate(zip(codec.types, values)):
                if t.slot in ("buf", "bytes"):
                    store_borrowed(args[i], t, v, keep)
                else:
                    store_scalar(args[i], t, v)
        try:
            if services is None:
                status = _fail(ret, abi.ERROR, "host->call: unknown or released object")
            else:
                status = services.call_for(self._borrower, token, method, args, ret)
        finally:
            release_borrowed(keep)
        out = child.base
        if status == abi.OK and codec is not None:
            result = codec.sig.result
            value = None if result is None else value_of(result, ret)
            release_result(result, ret)
            try:
                child.post(SCALL_RESULT, 0, out, codec.write_result(area, out, value))
                return
            except wire.TooLargeError as exc:  # nothing was sent: this host->call fails, the child carries on
                status, message = abi.ERROR, (
                    f"host->call: the result takes {exc.needed} bytes of shared memory, more than the {exc.bound} the "
                    "isolated plugin may map (memory_limit, else 4 GiB)").encode()
        else:
            message = value_of(BYTES, ret) if ret.bytes.ptr != ffi.NULL else b""
            release_result(BYTES, ret)
        area.ensure(out + len(message))
        area.data[out : out + len(message)] = message
        child.post(SCALL_RESULT, (status if status != abi.OK else abi.ERROR) & 0xFFFFFFFF, out, len(message))


    def _invoke_args(self, child: Child, fn: IsolatedFunction, callables: list[Any], index: int, base: int,
                     length: int) -> tuple[wire.Codec, int, tuple[Any, ...]]:
        """What an INVOKE asks: the host function's codec and parameter, and its arguments."""
        if not 0 <= index < len(callables):
            raise wire.WireError(f"called host function #{index}; the call passed {len(callables)}")
        param = fn._codec.callables[index]
        sig = fn._types[param].fn
        assert sig is not None
        codec = wire.Codec(sig)
        return codec, param, tuple(codec.read_args(child.area, base, length, copy=True))

    def _invoke_reply(self, child: Child, fn: IsolatedFunction, codec: wire.Codec, param: int, result: Any,
                      errors: list[BaseException], exc: BaseException | None) -> None:
        """Answer an INVOKE with the host function's result, or its failure."""
        out = child.base
        if exc is None:
            try:
                if codec.sig.result is not None:
                    what = f"the result of the host function passed as {fn.name}() argument {fn._names[param]!r}"
                    result = check_value(codec.sig.result, result, what)
                n = codec.write_result(child.area, out, result)
            except BaseException as failed:
                exc = failed
        if exc is not None:
            if not errors:
                errors.append(exc)
            child.post(INVOKE_ERROR, 0, out, child.area.write_json(out, {"message": str(exc)}))
        else:
            child.post(INVOKE_RESULT, 0, out, n)

    def _invoke(self, child: Child, fn: IsolatedFunction, callables: list[Any], errors: list[BaseException],
                index: int, base: int, length: int) -> None:
        codec, param, args = self._invoke_args(child, fn, callables, index, base, length)
        result, exc = None, None
        try:
            if errors:
                raise errors[0]  # the first failure stands; the plugin only learns it failed
            result = callables[index](*args)
            if inspect.isawaitable(result):
                raise not_awaited(result, f"the host function passed as {fn.name}() argument {fn._names[param]!r}",
                                  fn.name)
        except BaseException as failed:
            exc = failed
        self._invoke_reply(child, fn, codec, param, result, errors, exc)

    def _send_call(self, fn: IsolatedFunction, values: tuple[Any, ...], checked: Any,
                   instance: RemoteInstance | None) -> tuple[Child, int, int, Any, list[Any]]:
        """Under the serial lock: the live child, with the call's arguments
        written (base, length), the mutbuf views to copy back, and the host
        functions it passes."""
        if _spawn.current_pid != self._pid:
            raise IsolationError(
                f"{self._who} was loaded by process {self._pid}; this is a fork of it ({os.getpid()}), and the "
                "plugin's process answers only the host that started it: load the plugin again in this process")
        if self._awaiting:
            raise RuntimeError(
                f"{self._who}: {fn._during} was called without await on the event loop thread while an awaited call "
                "of the same plugin waits for its process: await it through plugin.aio, or call from another thread")
        child = self._child
        if instance is not None:
            if instance.lost(child):  # its process ended: no restart brings it back
                raise IsolationError(f"{instance.what} was lost when the plugin's process ended (after a "
                                     "crash, a timeout or cancel()): create another")
        elif child is None or child.stopper.done:
            child = self._live_child()
        assert child is not None
        if self._doomed and not self._depth:
            self._destroy_doomed(child)
        area = child.area
        codec = fn._codec
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
        except wire.TooLargeError as exc:  # nothing was sent: the child carries on
            raise IsolationError(
                f"{self._who}: the arguments of {fn._during} take {exc.needed} bytes of shared memory, more "
                f"than the {exc.bound} the child may map (memory_limit, else 4 GiB): pass less at a time, or "
                "raise memory_limit") from None
        except wire.WireError as exc:
            raise self._broken(child, exc) from None
        return child, base, length, back, [checked[i] for i in codec.callables] if codec.callables else []

    def _call_answer(self, child: Child, fn: IsolatedFunction, got: tuple[int, int, int, int], back: Any) -> Any:
        """The result of a call the child answered, or the error it rebuilt."""
        kind, _arg, rbase, rlength = got
        area = child.area
        for offset, view in back:  # the plugin's writes into mutbuf arguments
            view[:] = area.data[offset : offset + len(view)]
        if kind == RESULT:
            return fn._codec.read_result(area, rbase, rlength)
        if kind == ERROR:
            return _rebuild(area.read_json(rbase, rlength))
        raise wire.WireError(f"answered a call with message kind {kind}")

    def _call(self, fn: IsolatedFunction, values: tuple[Any, ...], timeout: float | None,
              instance: RemoteInstance | None = None) -> Any:
        checked = values if tuple(map(type, values)) == fn._exact else fn._checked(values)
        gate = self._gate
        mark = gate.enter()
        try:
            self._serial_enter(gate)
            try:
                child, base, length, back, callables = self._send_call(fn, values, checked, instance)
                errors: list[BaseException] = []
                deadline = None if timeout is None else time.monotonic() + timeout
                self._calls += 1
                self._depth += 1
                try:
                    got = self._exchange(child, CALL, fn._index, base, length, deadline, fn._during, fn, callables,
                                         errors)
                    result = self._call_answer(child, fn, got, back)
                except BaseException as exc:
                    failure = self._failed(child, exc, fn._during)
                    if failure is exc:
                        raise
                    raise failure from None
                finally:
                    self._depth -= 1
                    self._calls -= 1
                    self._release_ended(child)
            finally:
                gate.serial_leave()
        finally:
            gate.leave(mark)
        if got[0] == ERROR:
            raise errors[0] if errors else result  # a host function's own exception comes first
        return result

    def _serial_enter(self, gate: Any) -> None:
        """The serial lock for a plain call. An awaited call that waits for it
        can only poll, and a thread calling back to back would starve it: the
        plain call gives way to it for up to AIO_TURN seconds (not when this
        is that loop's own thread, which the waiting call needs)."""
        gate.serial_enter()  # may be interrupted while it waits: then nothing is held
        if not self._aio_waiting or self._depth:
            return
        me = threading.get_ident()
        until = time.monotonic() + AIO_TURN
        while self._aio_waiting and me not in self._aio_waiting and time.monotonic() < until:
            gate.serial_leave()
            time.sleep(0.0002)
            gate.serial_enter()

    def _count(self, counts: dict[int, int], step: int) -> None:
        me = threading.get_ident()
        with self._aio_counts:
            left = counts.get(me, 0) + step
            if left:
                counts[me] = left
            else:
                counts.pop(me, None)

    def _release_ended(self, child: Child) -> None:
        """After the outermost request: the mappings of a child that ended go
        now. A failure's traceback holds the child in a cycle, and the
        collector may clear a view of the area before what it exports (a crash)."""
        if not self._depth and child.stopper.done and self._child is not child:
            child.close_channel()

    # -- awaited calls: the same steps, the answers awaited on the channel

    async def _acall(self, fn: IsolatedFunction, values: tuple[Any, ...], timeout: float | None,
                     instance: RemoteInstance | None = None) -> Any:
        """_call for an event loop: one awaited call at a time per plugin
        (an asyncio lock, so waiting tasks hold no thread), its answer awaited
        on the channel's notifier pipe. A cancelled task ends the child, as
        cancel() does."""
        import asyncio

        checked = values if tuple(map(type, values)) == fn._exact else fn._checked(values)
        inside = _INSIDE.get()
        lock = self._aio_lock(asyncio.get_running_loop())
        if inside is not None and inside.plugin is self and inside.active:  # nested in a host function's call
            await inside.lock.acquire()
            if inside.active:
                lock = inside.lock
            else:  # the host function returned meanwhile: its call is over, this one is not nested
                inside.lock.release()
                await lock.acquire()
        else:
            await lock.acquire()
        self._count(self._aio_busy, 1)
        marks: list[tuple[Any, Any]] = []
        try:
            if instance is not None:  # the instance's own gate first, as IsolatedFunction.__call__ does
                marks.append((instance.gate, instance.gate.enter()))
            gate = self._gate
            marks.append((gate, gate.enter()))
            if not gate.serial_try_enter():  # a plain call from another thread runs: wait for it, not blocking
                self._count(self._aio_waiting, 1)  # and plain calls give way for a turn (_serial_enter)
                try:
                    pause = 0.0001
                    while not gate.serial_try_enter():
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, 0.001)
                finally:
                    self._count(self._aio_waiting, -1)
            try:
                child, base, length, back, callables = self._send_call(fn, values, checked, instance)
                errors: list[BaseException] = []
                deadline = None if timeout is None else time.monotonic() + timeout
                self._calls += 1
                self._depth += 1
                try:
                    got = await self._aexchange(child, fn._index, base, length, deadline, fn, callables, errors)
                    result = self._call_answer(child, fn, got, back)
                except BaseException as exc:
                    if isinstance(exc, asyncio.CancelledError):
                        if not child.stopper.done:
                            # As cancel(): the host's doing, so even restart=False starts a new process next time.
                            child.cancelled = True
                            self._lost(child, child.failure(CallCancelledError, f"{self._who}: {fn._during} was "
                                                            "cancelled (its task was); ferrule ended its process"))
                        raise  # (ended already, by a call inside this one: its reason stands)
                    failure = self._failed(child, exc, fn._during)
                    if failure is exc:
                        raise
                    raise failure from None
                finally:
                    self._awaiting = False
                    self._depth -= 1
                    self._calls -= 1
                    self._release_ended(child)
            finally:
                gate.serial_leave()
        finally:
            for held, mark in reversed(marks):
                held.leave(mark)
            lock.release()
            self._count(self._aio_busy, -1)
        if got[0] == ERROR:
            raise errors[0] if errors else result
        return result

    def _loop_blocked_by_close(self) -> bool:
        """Whether close() here would block the event loop an awaited call of
        this plugin needs: on that loop's thread, and not from inside one of
        the call's host functions (the gate refuses that, in its own words)."""
        if not self._aio_busy.get(threading.get_ident()) or self._host_sync:
            return False
        frame = _INSIDE.get()
        return not (frame is not None and frame.plugin is self and frame.active)

    def _aio_lock(self, loop: Any) -> Any:
        import asyncio

        lock = self._aio_locks.get(loop)
        if lock is None:
            lock = self._aio_locks[loop] = asyncio.Lock()
        return lock

    async def _aexchange(self, child: Child, index: int, base: int, length: int, deadline: float | None,
                         fn: IsolatedFunction, callables: list[Any], errors: list[BaseException]
                         ) -> tuple[int, int, int, int]:
        """_exchange for an event loop; a host function's awaitable result
        is awaited here, on the loop."""
        import asyncio

        child.post(CALL, index, base, length)
        while True:
            self._awaiting = True  # a call without await from this thread now would break the exchange
            got = await child.areceive(deadline, fn._during, self._who)
            self._awaiting = False
            kind, arg, mbase, mlength = got
            if kind in (LOG, INVOKE) and deadline is not None:
                child.check(deadline, fn._during, self._who)
            if kind != INVOKE:
                if not self._serve(child, got):
                    return got
                continue
            codec, param, args = self._invoke_args(child, fn, callables, arg, mbase, mlength)
            result: Any = None
            exc: BaseException | None = None
            try:
                if errors:
                    raise errors[0]
                self._host_sync += 1  # (no other task runs meanwhile: close() here is from inside the call)
                try:
                    result = callables[arg](*args)
                finally:
                    self._host_sync -= 1
                if inspect.isawaitable(result):
                    frame = _HostCall(self)
                    token = _INSIDE.set(frame)  # the calls of this plugin it makes nest
                    try:
                        result = await result
                    finally:
                        _INSIDE.reset(token)
                        async with frame.lock:  # its nested calls still in flight (in tasks it started) end first
                            frame.active = False
            except asyncio.CancelledError as failed:
                task = asyncio.current_task()
                if task is None or getattr(task, "cancelling", lambda: 1)():
                    raise  # this task is being cancelled: so is the call
                exc = failed  # the host function's own (a task it awaited was cancelled): its failure
            except Exception as failed:
                exc = failed
            if child.stopper.done:  # a call made inside ended the process (or cancel() did): nothing to answer
                if exc is not None:
                    raise exc
                child.check(None, fn._during, self._who)
                raise child.failure(IsolationError, f"{self._who}: {fn._during} was cut short: a call made inside "
                                                    "it ended the plugin's process")
            self._invoke_reply(child, fn, codec, param, result, errors, exc)

    def call(self, name: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Call the function ``name`` with a timeout of its own (seconds;
        None: the plugin's ``timeout``)."""
        fn = self.functions[name]
        if kwargs or len(args) != fn._count:
            args = bind(fn._display, fn._names, args, kwargs)
        return self._call(fn, args, self.timeout if timeout is None else timeout)

    def cancel(self) -> bool:
        """End the call in flight, from another thread: it raises
        CallCancelledError. False when no call was running."""
        with self._state_lock:
            child = self._child
            if child is None or self._calls == 0:
                return False
            child.cancelled = True
        child.stopper.kill()
        return True

    @functools.cached_property
    def aio(self) -> AsyncCalls:
        """Every function as a coroutine function: ``await plugin.aio.add(2, 3)``.
        The answer is awaited on the event loop, with no thread per call;
        cancelling the task (or ``asyncio.timeout``) ends the process as
        ``cancel()`` does. Host functions may be ``async def``."""
        from .._call.aio import AsyncCalls

        def inside() -> bool:
            frame = _INSIDE.get()
            return frame is not None and frame.plugin is self and frame.active

        return AsyncCalls(self, lambda: self._functions, self.close, inside)

    @property
    def sandbox(self) -> SandboxReport | None:
        """What the sandbox of the current (or last) child had in force,
        read off it before the plugin ran; None when not sandboxed."""
        return self._report

    @property
    def pid(self) -> int | None:
        """The child process's id, or None when none runs."""
        child = self._child
        return child.pid if child is not None and not child.stopper.done else None

    @property
    def functions(self) -> Mapping[str, IsolatedFunction]:
        """Every exported function by name."""
        return MappingProxyType(self._functions)

    # -- interfaces, across the process boundary

    def implementations(self, interface: type[P]) -> list[Implementation[P]]:
        """As ``Plugin.implementations``: the instances live in the child."""
        proxy, indexes = matching(self.id, self._spec.offers, interface)
        return [IsolatedImplementation(self, index, proxy) for index in indexes]  # type: ignore[arg-type]

    def implementation(self, interface: type[P], name: str | None = None) -> Implementation[P] | None:
        """The implementation called ``name`` (or the first one), or None."""
        return named(self.implementations(interface), name)

    def create(self, interface: type[P], name: str | None = None) -> P:
        """As ``Plugin.create``: an instance made in the child, its methods
        called through the channel. It is lost if the child's process ends."""
        impl = self.implementation(interface, name)
        if impl is None:
            raise no_implementation(self.id, self._spec.offers, interface, name)
        return impl.create()

    def _control(self, kind: int, arg: int, request: Any, during: str,
                 child: Child | None = None) -> tuple[Child, int, int, int]:
        """One CREATE or DESTROY, under the gate like a call: (the child,
        answer kind, payload base and length)."""
        gate = self._gate
        mark = gate.enter()
        try:
            gate.serial_enter()
            try:
                if child is None:
                    child = self._child
                    if child is None or child.stopper.done:
                        child = self._live_child()
                elif child is not self._child or child.stopper.done:
                    return child, 0, 0, 0  # gone already, and what it held with it
                if self._doomed and not self._depth:
                    self._destroy_doomed(child)
                base = child.base if self._depth else 0
                length = 0 if request is None else child.area.write_json(base, request)
                deadline = None if self.timeout is None else time.monotonic() + self.timeout
                self._depth += 1
                try:
                    answer = self._exchange(child, kind, arg, base, length, deadline, during)
                except BaseException as exc:
                    failure = self._failed(child, exc, during)
                    if failure is exc:
                        raise
                    raise failure from None
                finally:
                    self._depth -= 1
                return (child, *answer[:1], *answer[2:])
            finally:
                gate.serial_leave()
        finally:
            gate.leave(mark)

    def _create_instance(self, offer: int, request: Any) -> tuple[Child, int]:
        child, kind, base, length = self._control(CREATE, offer, request, "create")
        try:
            if kind == ERROR:
                error = _rebuild(child.area.read_json(base, length))
            elif kind == RESULT:
                answer = child.area.read_json(base, length)
                first = answer.get("first") if isinstance(answer, dict) else None
                if type(first) is not int or first < 0:
                    raise wire.WireError(f"answered create with {answer!r:.100}")
                return child, first
            else:
                raise wire.WireError(f"answered create with message kind {kind}")
        except wire.WireError as exc:
            raise self._broken(child, exc) from None
        raise error

    def _destroy_instance(self, child: Child, first: int) -> None:
        if not self._shut:
            self._control(DESTROY, first, None, "destroy", child)

    def _method(self, index: int, spec: FunctionSpec, instance: RemoteInstance) -> IsolatedFunction:
        return IsolatedFunction(self, index, spec, instance)

    def _doom(self, child: Child, first: int) -> None:
        # An instance collected without close(): its finalizer may run on any
        # thread, in the middle of a call; the next request destroys it.
        self._doomed.append((child, first))

    def _destroy_doomed(self, child: Child) -> None:
        """Destroy in the child the instances collected unclosed, as a call:
        under the plugin's timeout, cancellable, and a failure ends the
        child as a call's would."""
        while self._doomed:
            held, first = self._doomed.pop()  # one at a time: a finalizer may append meanwhile
            if held is not child or child.stopper.done:
                continue  # gone with its process
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            self._calls += 1
            try:
                self._exchange(child, DESTROY, first, 0, 0, deadline, "destroy")
            except BaseException as exc:
                failure = self._failed(child, exc, "destroy")
                if failure is exc:
                    raise
                raise failure from None
            finally:
                self._calls -= 1

    # -- lifecycle

    @property
    def closed(self) -> bool:
        return self._gate.closed

    def close(self) -> None:
        """Wait for calls in flight, run the plugin's shutdown in the child
        and end the process. Idempotent. Raises PluginClosedError when called
        from inside one of the plugin's calls (a host function)."""
        if self._loop_blocked_by_close():
            raise PluginClosedError(aio_close_refusal(f"plugin {self.id!r}"))
        gate = self._gate
        gate.close(True)
        gate.serial_enter()
        try:
            if self._shut:
                return
            self._shut = True
            child = self._child
            if child is None or _spawn.current_pid != self._pid:  # (a fork of the host: the child is the host's)
                return
            try:
                self._exchange(child, CLOSE, 0, 0, 0, time.monotonic() + CLOSE_SECONDS, "close")
            except (IsolationError, wire.WireError):
                pass  # it is ended either way
            finally:
                self._stop(child)  # the process group: whatever the plugin forked goes too
                child.close_channel()  # no call is in flight: the mappings go now, not at the next collection
        finally:
            gate.serial_leave()

    def __reduce__(self) -> Any:
        raise TypeError(NOT_PICKLED.format(cls="IsolatedPlugin", id=self.id))

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
        state = " closed" if self.closed else (f" pid {self.pid}" if self._child else " failed")
        lines = [f"<ferrule.IsolatedPlugin {self.id} {self.name!r} {self.version}{state}, ABI {self.abi_version[0]}.{self.abi_version[1]}"]
        for fn in self._functions.values():
            doc = fn.doc.splitlines()[0] if fn.doc else ""
            lines.append(f"    {fn.name}{fn.signature}" + (f"  # {doc}" if doc else ""))
        return "\n".join(lines) + ">"

