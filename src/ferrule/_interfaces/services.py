"""Services: the registry behind a PluginHost, and the host side of the host
table's query / call / release (ABI 1.2).

A plugin queries an interface id and revision; the host lends it either a
Python service it provides, or an instance of another loaded plugin's
implementation. Calls to a lent instance go through that instance's call
target (its gate and serial lock), so a plugin calling another plugin meets
the same rules as Python calling it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import warnings
import weakref
from typing import Any, Protocol

from .._abi import cdef as abi
from .._call.runner import DEFAULT_RUNNER, Runner
from .._abi.ffi import ffi
from .._abi.types import TYPES
from .._call.accelerator import speedups
from .._call.checks import check_value
from .._call.marshal import give_bytes, int_of, store_scalar, value_of
from .._call.status import callee_status
from .._call.table import running
from .._errors import ThreadContractWarning
from ..idl import InterfaceSpec, MethodSpec, TypeSpec
from .instances import InstanceTarget, Owner, being_created
from .offers import indent
from .structs import codec

__all__ = ["Services"]

_log = logging.getLogger("ferrule")
_UINTPTR = ffi.typeof("uintptr_t")
_MAX_MESSAGE = 1 << 16


class Caller(Protocol):
    """Who queries and calls: a plugin loaded here (an Owner), or an isolated
    plugin's stand-in in its host (key: its host_table's address)."""

    @property
    def plugin_id(self) -> str: ...

    @property
    def debug(self) -> bool: ...

    @property
    def host_table(self) -> Any: ...


class _Lent:
    """An object lent to a plugin by host->query: a Python service (with its
    declaration) or an instance of another plugin's implementation (which
    the host routes to without needing a declaration)."""

    __slots__ = ("name", "methods", "thread_safe", "owner", "iface", "service", "lock", "target", "busy")

    def __init__(self, name: str, methods: int, thread_safe: bool, owner: int):
        self.name = name
        self.methods = methods
        self.thread_safe = thread_safe
        self.owner = owner  # the borrowing plugin's host table address
        self.iface: InterfaceSpec | None = None
        self.service: Any = None
        self.lock: Any = None
        self.target: InstanceTarget | None = None
        self.busy = 0  # threads inside (debug mode checks)


class Services:
    """The registry behind a PluginHost: provided services, loaded plugins,
    objects lent to plugins, and the three host-table callbacks."""

    def __init__(self, debug: bool, runner: Runner | None = None):
        self.debug = debug
        self.runner = runner if runner is not None else DEFAULT_RUNNER  # awaited in-process calls run there
        self.lock = threading.RLock()
        self.create_lock = threading.RLock()  # of every plugin it serves (plugin.py)
        self.services: dict[tuple[str, int], tuple[InterfaceSpec, Any, Any]] = {}
        self.plugins: list[Owner] = []  # the loaded plugins a query may lend from, in load order
        self.tables: dict[int, weakref.ref[Owner]] = {}  # host table address -> its plugin
        self.lent: dict[int, _Lent] = {}
        self.fast: dict[int, Any] = {}  # token -> speedups.Lent: what the C host table's host->call serves itself
        self.tokens = itertools.count(1)

    def addresses(self) -> tuple[int, int, int]:
        """query, call and release for a host table: shared by every registry
        (made once, not per load), each finds the registry by the table."""
        return _ADDRESSES

    def attach(self, plugin: Owner) -> None:
        """A plugin whose host table carries the callbacks, served by this registry."""
        address = plugin.host_table.address
        with self.lock:
            self.tables[address] = weakref.ref(plugin)
        _SERVING[address] = weakref.ref(self)

    def detach(self, table_address: int) -> None:
        """The plugin of that host table has shut down."""
        with self.lock:
            self.tables.pop(table_address, None)
        _SERVING.pop(table_address, None)

    def provide(self, iface: InterfaceSpec, implementation: Any) -> None:
        missing = [m.name for m in iface.methods if not callable(getattr(implementation, m.name, None))]
        if missing:
            raise TypeError(f"{implementation!r} lacks method{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                            f"of {iface.name} ({iface.id}/{iface.revision})")
        for m in iface.methods:
            if any(p.type.kind == "fn" for p in m.params):
                raise TypeError(f"{iface.name}.{m.name} takes a callable: plugins cannot pass one, so the host "
                                "cannot provide this interface (only plugins implement it)")
        # The serial lock of the call contract: re-entrant, so that a service
        # may call a plugin that calls the same service again on this thread.
        lock = None if iface.thread_safe else threading.RLock()
        with self.lock:
            self.services[iface.key] = (iface, implementation, lock)

    def withdraw(self, iface: InterfaceSpec) -> None:
        with self.lock:
            self.services.pop(iface.key, None)

    # -- callbacks: each runs on a plugin's thread with the GIL; none may raise

    def _caller(self, host: Any) -> Owner | None:
        ref = self.tables.get(int(ffi.cast(_UINTPTR, host)))
        return ref() if ref is not None else None

    def _query(self, host: Any, id_ptr: Any, revision: int, fingerprint: int) -> Any:
        caller = self._caller(host)
        try:
            if caller is None or id_ptr == ffi.NULL:
                return ffi.NULL
            ident = ffi.string(id_ptr, 256).decode("utf-8", "replace")
            token = self.lend(caller, (ident, revision), fingerprint)
            return ffi.cast("const ferrule_object *", token) if token else ffi.NULL
        except Exception as exc:  # never unwind into plugin code
            _logger(caller).error("query failed in the host: %s", exc)
            return ffi.NULL

    def lend(self, caller: Caller, key: tuple[str, int], fingerprint: int, services_only: bool = False) -> int:
        """The token of what ``caller`` may use as ``key``, or 0. With
        ``services_only`` (a caller in another process) only Python services."""
        lent = self._find(caller, key, fingerprint, services_only)
        if lent is None:
            return 0
        token = next(self.tokens)
        fast = self._fast(lent)
        with self.lock:
            self.lent[token] = lent
            if fast is not None:
                self.fast[token] = fast
        return token

    def _fast(self, lent: _Lent) -> Any:
        """The lent object as the C path of host->call serves it, or None."""
        if speedups is None or self.debug:
            return None
        if lent.service is not None:
            assert lent.iface is not None
            methods = lent.iface.methods
            sigs = tuple((tuple(_fast_code(p.type) for p in m.params),
                          -1 if m.result is None else _fast_code(m.result)) for m in methods)
            names = tuple(m.name for m in methods)

            def finish(method: int, result: Any, args: int, ret: int) -> int:
                return self._finish(lent, methods[method], result, args, ret)

            return speedups.lent_service(lent.owner, lent.service, names, sigs, lent.lock, finish)
        target = lent.target
        if target is None or not target.accelerated:
            return None
        fns = tuple(int(ffi.cast(_UINTPTR, target.entry.methods[i])) for i in range(lent.methods))
        return speedups.lent_instance(lent.owner, fns, int(ffi.cast(_UINTPTR, target.table)), target.address,
                                      target.gate, target.thread_safe, target)

    def _finish(self, lent: _Lent, m: MethodSpec, result: Any, args: int, ret: int) -> int:
        """A service's result the C path did not encode: checked here, in these words."""
        slot = ffi.cast("ferrule_value *", ret)
        try:
            encode_result(m, result, ffi.cast("ferrule_value *", args), slot, f"the result of {lent.name}.{m.name}()")
        except BaseException as exc:
            return _fail(slot, abi.ERROR, f"{type(exc).__name__}: {exc}")
        return abi.OK

    def signatures(self, token: int) -> list[str] | None:
        """The call-layer signatures of a lent service's methods."""
        lent = self.lent.get(token)
        if lent is None or lent.iface is None:
            return None
        return [m.signature.text for m in lent.iface.methods]

    def call_for(self, caller: Caller, token: int, method: int, args: Any, ret: Any) -> int:
        """host->call for a caller in another process: only on what was lent to it."""
        lent = self.lent.get(token)
        if lent is None or lent.owner != caller.host_table.address:
            return _fail(ret, abi.ERROR, "host->call: unknown or released object")
        return self._call_lent(caller, ffi.cast("const ferrule_object *", token), method, args, ret)

    def release_for(self, caller: Caller, token: int) -> bool:
        """host->release for a caller in another process; whether it held ``token``."""
        lent = self.lent.get(token)
        if lent is None or lent.owner != caller.host_table.address:
            return False
        self._release_token(caller, token)
        return True

    def _find(self, caller: Caller, key: tuple[str, int], fingerprint: int,
              services_only: bool = False) -> _Lent | None:
        table = caller.host_table.address
        with self.lock:
            service = self.services.get(key)
            plugins = list(self.plugins)
        if service is not None:
            iface, impl, lock = service
            if iface.fingerprint != fingerprint:
                _logger(caller).warning(
                    "plugin %r asked for %s/%d with layout fingerprint %#018x, the host's %s has %#018x: "
                    "regenerate the plugin's code from the host's declaration\nhost layout:\n%s",
                    caller.plugin_id, key[0], key[1], fingerprint, iface.name, iface.fingerprint, indent(iface.layout))
                return None
            lent = _Lent(iface.name, len(iface.methods), iface.thread_safe, table)
            lent.iface, lent.service, lent.lock = iface, impl, lock
            return lent
        if services_only:
            return None
        # Another plugin's implementation first; the caller's own last.
        ordered = [p for p in plugins if p is not caller] + [p for p in plugins if p is caller]
        for plugin in ordered:
            for index, offer in enumerate(plugin.spec.offers):
                if offer.key != key:
                    continue
                if offer.fingerprint != fingerprint:
                    _logger(caller).warning(
                        "plugin %r asked for %s/%d with layout fingerprint %#018x, plugin %r implements it as %r "
                        "with %#018x: skipped", caller.plugin_id, key[0], key[1], fingerprint, plugin.plugin_id,
                        offer.name, offer.fingerprint)
                    continue
                if plugin.closed or being_created(plugin, index):  # (its own create asking for itself: no recursion)
                    continue
                lent = _Lent(f"{offer.id}/{offer.revision}", offer.method_count, offer.thread_safe, table)
                lent.target = InstanceTarget(plugin, index, lent.name, offer.thread_safe)
                return lent
        return None

    def _call(self, host: Any, obj: Any, method: int, args: Any, ret: Any) -> int:
        caller = self._caller(host)
        if ret == ffi.NULL:
            return abi.ERROR
        if caller is None:
            return _fail(ret, abi.ERROR, "host->call: unknown host table")
        with running(caller.host_table, caller.debug):  # the caller's pending message survives what the call runs
            return self._call_lent(caller, obj, method, args, ret)

    def _call_lent(self, caller: Caller, obj: Any, method: int, args: Any, ret: Any) -> int:
        try:
            lent = self.lent.get(int(ffi.cast(_UINTPTR, obj)))
            if lent is None or lent.owner != caller.host_table.address:  # what was lent to another is not there
                self._violation(caller, "call on an unknown or released object")
                return _fail(ret, abi.ERROR, "host->call: unknown or released object")
            if not 0 <= method < lent.methods:
                return _fail(ret, abi.ERROR, f"host->call: {lent.name} has no method number {method}")
            if self.debug:
                if not lent.thread_safe and lent.busy:
                    self._violation(caller, f"two threads inside one {lent.name} object (not thread-safe) at once")
            lent.busy += 1
            try:
                if lent.service is not None:
                    assert lent.iface is not None
                    m = lent.iface.methods[method]
                    if args == ffi.NULL and (m.params or (m.result is not None and m.result.kind == "struct")):
                        return _fail(ret, abi.ERROR, f"host->call: {lent.name}.{m.name} needs arguments, got NULL")
                    return self._call_service(lent, m, args, ret)
                return self._call_instance(lent, method, args, ret)
            finally:
                lent.busy -= 1
        except BaseException as exc:
            return _fail(ret, abi.ERROR, f"{type(exc).__name__}: {exc}")

    def _call_service(self, lent: _Lent, m: MethodSpec, args: Any, ret: Any) -> int:
        argv = [decode_arg(p.type, args[i], f"{lent.name}.{m.name}() argument {p.name!r}")
                for i, p in enumerate(m.params)]
        try:
            method = getattr(lent.service, m.name)
            if lent.lock is not None:
                with lent.lock:
                    result = method(*argv)
            else:
                result = method(*argv)
        except Exception as exc:
            # KeyError's str() is the repr of its key; show the key or message as given.
            text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
            return _fail(ret, abi.ERROR, f"{type(exc).__name__}: {text}")
        encode_result(m, result, args, ret, f"the result of {lent.name}.{m.name}()")
        return abi.OK

    def _call_instance(self, lent: _Lent, method: int, args: Any, ret: Any) -> int:
        """Another plugin's instance: through its gate and serial lock, as a
        call from Python would go."""
        target = lent.target
        assert target is not None
        empty = None
        if args == ffi.NULL:  # a method without parameters; plugins may rely on a non-NULL args
            args = empty = ffi.new("ferrule_value[1]")
        gate = target.gate
        mark = gate.enter()
        try:
            if not target.thread_safe:
                gate.serial_enter()  # may be interrupted while it waits: then nothing is held
            try:
                with running(target.host_table, target.debug):
                    status = target.entry.methods[method](target.table, target.state, args, ret)
                    if status != abi.OK:
                        return _fail(ret, callee_status(status), target.host_table.take_error())
                return abi.OK
            finally:
                if not target.thread_safe:
                    gate.serial_leave()
        finally:
            gate.leave(mark)
            del empty

    def _release(self, host: Any, obj: Any) -> None:
        if obj == ffi.NULL:
            return
        caller = self._caller(host)
        token = int(ffi.cast(_UINTPTR, obj))
        lent = self.lent.get(token)
        if lent is not None and (caller is None or lent.owner != caller.host_table.address):
            self._violation(caller, "release of an object lent to another plugin")  # and it stays lent
            return
        self._release_token(caller, token)

    def _release_token(self, caller: Caller | None, token: int) -> None:
        try:
            with self.lock:
                self.fast.pop(token, None)
                lent = self.lent.pop(token, None)
            if lent is None:
                self._violation(caller, "release of an unknown or already released object")
                return
            if lent.target is not None:
                lent.target.close()
        except Exception as exc:
            _logger(caller).error("release failed in the host: %s", exc)

    def release_all(self, table_address: int) -> int:
        """Give back what a plugin never released (at its shutdown)."""
        with self.lock:
            mine = [k for k, v in self.lent.items() if v.owner == table_address]
            for k in mine:
                self.fast.pop(k, None)
            objects = [self.lent.pop(k) for k in mine]
        for lent in objects:
            if lent.target is not None:
                lent.target.close()
        return len(objects)

    def _violation(self, caller: Caller | None, what: str) -> None:
        if self.debug:
            who = caller.plugin_id if caller is not None else "?"
            warnings.warn(ThreadContractWarning(f"plugin {who!r}: {what}"), stacklevel=1)


def _fast_code(t: TypeSpec) -> int:
    """A parameter's or result's code for the C path: numbers, bool, str and
    bytes; 99 for anything it leaves to this module."""
    if t.kind == "number" or t.kind in ("bool", "str", "bytes"):
        return TYPES[t.name if t.kind == "number" else t.kind].code
    return 99


def _logger(plugin: Caller | None) -> logging.Logger:
    return logging.getLogger(f"ferrule.plugin.{plugin.plugin_id}") if plugin is not None else _log


# -- the host-table callbacks, one set for every registry

_SERVING: dict[int, weakref.ref[Services]] = {}  # host table address -> the registry serving it


def _serving(host: Any) -> Services | None:
    ref = _SERVING.get(int(ffi.cast(_UINTPTR, host)))
    return ref() if ref is not None else None


def _query_entry(host: Any, id_ptr: Any, revision: int, fingerprint: int) -> Any:
    services = _serving(host)
    return services._query(host, id_ptr, revision, fingerprint) if services is not None else ffi.NULL


def _call_entry(host: Any, obj: Any, method: int, args: Any, ret: Any) -> int:
    services = _serving(host)
    if services is not None:
        return services._call(host, obj, method, args, ret)
    return _fail(ret, abi.ERROR, "host->call: unknown host table") if ret != ffi.NULL else abi.ERROR


def _release_entry(host: Any, obj: Any) -> None:
    services = _serving(host)
    if services is not None:
        services._release(host, obj)


_query_cb = ffi.callback("const ferrule_object *(*)(const ferrule_host *, const char *, uint32_t, uint64_t)",
                         _query_entry)
_call_cb = ffi.callback(
    "int32_t(*)(const ferrule_host *, const ferrule_object *, uint32_t, const ferrule_value *, ferrule_value *)",
    _call_entry)
_release_cb = ffi.callback("void(*)(const ferrule_host *, const ferrule_object *)", _release_entry)
_ADDRESSES: tuple[int, int, int] = tuple(  # type: ignore[assignment]
    int(ffi.cast(_UINTPTR, cb)) for cb in (_query_cb, _call_cb, _release_cb))


def _fail(ret: Any, status: int, message: str) -> int:
    """A failed host->call: the message goes to the caller as owned bytes."""
    if not give_bytes(ret, message.encode("utf-8", "replace")[:_MAX_MESSAGE]):
        ret.bytes.ptr = ffi.NULL
        ret.bytes.len = 0
        ret.bytes.release = ffi.NULL
    return status


def decode_arg(t: TypeSpec, slot: Any, where: str) -> Any:
    """An argument a plugin passes to a host service, as Python sees it."""
    kind = t.kind
    if kind == "number" or kind in ("bool", "str", "bytes"):
        return value_of(TYPES[t.name if kind == "number" else kind], slot)
    if kind == "handle":
        assert t.handle is not None
        return t.handle(int_of(TYPES["u64"], slot.u64))
    if kind in ("buf", "mutbuf"):
        elem = TYPES[t.elem]
        if slot.buf.ptr == ffi.NULL:
            if slot.buf.len:
                raise ValueError(f"{where}: NULL pointer with length {slot.buf.len}")
            return memoryview(b"").cast(elem.struct)  # type: ignore[call-overload]
        raw: Any = memoryview(ffi.buffer(slot.buf.ptr, slot.buf.len * elem.size)).cast("B")
        view: memoryview = raw.cast(elem.struct)
        return view if kind == "mutbuf" else view.toreadonly()
    if kind == "struct":
        assert t.struct is not None
        c = codec(t.struct)
        if slot.bytes.len != c.size or slot.bytes.ptr == ffi.NULL:
            raise ValueError(f"{where}: {t.struct.name} needs {c.size} bytes, got {slot.bytes.len}")
        return c.unpack(ffi.buffer(ffi.cast("const char *", slot.bytes.ptr), c.size))
    raise TypeError(f"{where}: {t.layout} cannot come from a plugin")


def encode_result(m: MethodSpec, result: Any, args: Any, ret: Any, where: str) -> None:
    t = m.result
    if t is None:
        return
    if t.kind == "struct":
        assert t.struct is not None
        c = codec(t.struct)
        out = args[len(m.params)].buf
        if out.ptr == ffi.NULL or out.len != c.size:
            raise ValueError(f"{where}: the out buffer holds {out.len} bytes, {t.struct.name} needs {c.size}")
        c.pack_into(ffi.buffer(out.ptr, c.size), result, where)
        return
    if t.kind == "handle":
        assert t.handle is not None
        if not isinstance(result, t.handle):
            raise TypeError(f"{where} must be {t.handle.__name__}, got {type(result).__name__}")
        ret.u64 = int(result)
        return
    abi_type = TYPES[t.name if t.kind == "number" else t.kind]
    value = check_value(abi_type, result, where)
    if t.kind in ("str", "bytes"):
        if not give_bytes(ret, str.encode(value, "utf-8") if t.kind == "str" else bytes(value)):
            raise MemoryError
        return
    store_scalar(ret, abi_type, value)
