"""Host-defined interfaces at run time: the implementations a plugin offers,
their instances, the services the host provides, and the host table's
query / call / release that plugins use to reach both."""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import struct as _struct
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from . import _cdef as abi
from ._errors import InterfaceMismatchError, PluginCallError, PluginPanicError, ThreadContractWarning
from ._ffi import ffi
from ._signature import STRUCT_FORMATS, TYPES
from ._values import _give_bytes, _int_of, _store_scalar, _value_of
from .idl import InterfaceSpec, MethodSpec, StructSpec, TypeSpec, first_difference, spec

if TYPE_CHECKING:
    from ._plugin import Plugin

__all__ = ["Implementation", "Instance", "Offer"]

P = TypeVar("P")
_log = logging.getLogger("ferrule")
_UINTPTR = ffi.typeof("uintptr_t")
_MAX_MESSAGE = 1 << 16


class Offer:
    """One implementation a plugin's descriptor lists, as read at load."""

    __slots__ = ("id", "revision", "name", "doc", "flags", "fingerprint", "layout", "method_count", "methods",
                 "create", "destroy")

    def __init__(self, id: str, revision: int, name: str, doc: str, flags: int, fingerprint: int, layout: str,
                 method_count: int, methods: Any, create: Any, destroy: Any):
        self.id = id
        self.revision = revision
        self.name = name
        self.doc = doc
        self.flags = flags
        self.fingerprint = fingerprint
        self.layout = layout
        self.method_count = method_count
        self.methods = methods
        self.create = create
        self.destroy = destroy

    def __repr__(self) -> str:
        return f"<offer {self.id}/{self.revision} {self.name!r}>"


def check_offer(plugin_id: str, offer: Offer, iface: InterfaceSpec) -> None:
    """Raise InterfaceMismatchError unless offer was generated from iface."""
    if offer.fingerprint == iface.fingerprint and offer.method_count == len(iface.methods):
        return
    if offer.fingerprint == iface.fingerprint:
        detail = f"it has {offer.method_count} methods, the declaration {len(iface.methods)}"
    elif offer.layout:
        detail = "first difference: " + first_difference(iface.layout, offer.layout)
    else:
        detail = "the plugin gives no layout text"
    found = offer.layout or "(not given)\n"
    raise InterfaceMismatchError(
        f"plugin {plugin_id!r} implementation {offer.name!r} of {iface.id}/{iface.revision} has layout fingerprint "
        f"{offer.fingerprint:#018x}, the host's declaration {iface.name} has {iface.fingerprint:#018x}; {detail}. "
        f"Regenerate the plugin's code from the host's declaration (ferrule generate), or declare the changed "
        f"interface as a new revision.\nhost layout:\n{_indent(iface.layout)}plugin layout:\n{_indent(found)}",
        iface.layout,
        offer.layout,
    )


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())


# ------------------------------------------------------------------ structs

_FORMATS = {**STRUCT_FORMATS, "bool": "?", "handle": "Q"}


class StructCodec:
    """Packs an @idl.struct value into its C layout and back."""

    def __init__(self, s: StructSpec):
        self.spec = s
        self.size = s.size
        # The fast path reads the flat fields with one getter each; anything
        # odd goes to _flatten, which checks every field and names the bad one.
        paths: list[tuple[str, str]] = []
        fmt, self._build = self._plan(s, 0, "", paths)
        self._struct = _struct.Struct("=" + fmt)
        assert self._struct.size == s.size, (fmt, s)
        self._get = operator.attrgetter(*[p for p, _ in paths]) if len(paths) > 1 else None
        self._bools = [i for i, (_, kind) in enumerate(paths) if kind == "bool"]
        self._ints = [i for i, (_, kind) in enumerate(paths) if kind in ("int", "handle")]
        self._cls = s.cls

    @classmethod
    def _plan(cls, s: StructSpec, base: int, prefix: str,
              paths: list[tuple[str, str]]) -> tuple[str, Callable[[Iterator[Any]], Any]]:
        """The struct format of s placed at offset base, the function that
        builds s from unpacked values, and (into paths) each flat field's
        dotted attribute path and kind."""
        fmt = ""
        at = base
        makers: list[Callable[[Iterator[Any]], Any]] = []
        for f in s.fields:
            pad = base + f.offset - at
            fmt += "x" * pad
            at += pad
            t = f.type
            if t.kind == "struct":
                assert t.struct is not None
                inner, make = cls._plan(t.struct, at, f"{prefix}{f.name}.", paths)
                fmt += inner
                at += t.struct.size
                makers.append(make)
            else:
                fmt += _FORMATS[t.name if t.kind == "number" else t.kind]
                at += t.size
                makers.append(_scalar_maker(t))
                kind = "float" if t.name in ("f32", "f64") else "int" if t.kind == "number" else t.kind
                paths.append((f"{prefix}{f.name}", kind))
        fmt += "x" * (base + s.size - at)
        made = s.cls

        def build(values: Iterator[Any]) -> Any:
            return made(*[m(values) for m in makers])

        return fmt, build

    def flat(self, value: Any, where: str) -> Any:
        if type(value) is not self._cls:
            raise TypeError(f"{where} must be {self.spec.name}, got {type(value).__name__}")
        if self._get is not None:
            try:
                values = self._get(value)
            except AttributeError:
                pass
            else:
                for i in self._bools:
                    if type(values[i]) is not bool:
                        break
                else:
                    for i in self._ints:
                        if type(values[i]) is bool:
                            break
                    else:
                        return values  # struct.pack checks the numbers themselves
        out: list[Any] = []
        _flatten(self.spec, value, out)
        return out

    def pack(self, value: Any, where: str) -> bytes:
        try:
            return self._struct.pack(*self.flat(value, where))
        except _struct.error:
            return self._struct.pack(*self._checked(value, where))

    def pack_into(self, target: Any, value: Any, where: str) -> None:
        try:
            self._struct.pack_into(target, 0, *self.flat(value, where))
        except _struct.error:
            self._struct.pack_into(target, 0, *self._checked(value, where))

    def _checked(self, value: Any, where: str) -> list[Any]:
        """The slow path after struct refused a value: name the field."""
        out: list[Any] = []
        _flatten(self.spec, value, out)
        try:
            self._struct.pack(*out)
        except _struct.error as exc:
            raise ValueError(f"{where}: a field of {self.spec.name} is out of range ({exc})") from None
        return out

    def unpack(self, data: Any) -> Any:
        return self._build(iter(self._struct.unpack(data)))


def _scalar_maker(t: TypeSpec) -> Callable[[Iterator[Any]], Any]:
    if t.kind == "handle":
        cls = t.handle
        assert cls is not None
        return lambda values: cls(next(values))
    return lambda values: next(values)


def _flatten(s: StructSpec, value: Any, out: list[Any]) -> None:
    for f in s.fields:
        v = getattr(value, f.name)
        t = f.type
        if t.kind == "struct":
            assert t.struct is not None
            if type(v) is not t.struct.cls:
                raise TypeError(f"{s.name}.{f.name} must be {t.struct.name}, got {type(v).__name__}")
            _flatten(t.struct, v, out)
        elif t.kind == "bool":
            if not isinstance(v, bool):
                raise TypeError(f"{s.name}.{f.name} must be bool, got {type(v).__name__}")
            out.append(v)
        elif t.kind == "number" and t.name in ("f32", "f64"):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{s.name}.{f.name} must be float, got {type(v).__name__}")
            out.append(float(v))
        else:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{s.name}.{f.name} must be int, got {type(v).__name__}")
            out.append(int(v))


_codecs: dict[int, StructCodec] = {}


def codec(s: StructSpec) -> StructCodec:
    found = _codecs.get(id(s))
    if found is None or found.spec is not s:
        found = _codecs[id(s)] = StructCodec(s)
    return found


# ------------------------------------------------------------------ instances


class Instance:
    """An instance of a host-defined interface that a plugin implements.

    Generated proxy classes (``ferrule generate --python``) derive from it
    and give the methods their types; each method is a typed callable, like
    a plugin function. ``close()`` (or leaving a ``with`` block) waits for
    calls in flight and destroys the instance; so does garbage collection.
    The plugin stays usable (its shutdown waits for its last instance).
    """

    __module__ = "ferrule"
    __ferrule_interface__: ClassVar[InterfaceSpec]
    __ferrule_fingerprint__: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        expected = cls.__dict__.get("__ferrule_fingerprint__")
        iface = cls.__dict__.get("__ferrule_interface__")
        if expected is not None and iface is not None and expected != iface.fingerprint:
            raise InterfaceMismatchError(
                f"the generated proxy {cls.__module__}.{cls.__qualname__} was made from another layout of "
                f"{iface.id}/{iface.revision} (fingerprint {expected:#018x}, the declaration has "
                f"{iface.fingerprint:#018x}): run ferrule generate again",
                iface.layout,
            )

    implementation: Implementation[Any]
    _target: _Target

    def close(self) -> None:
        """Wait for calls in flight, then destroy the instance. Idempotent."""
        self._target.close()

    @property
    def closed(self) -> bool:
        return bool(self._target.life.closed)

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        iface = self.__ferrule_interface__
        state = " closed" if self.closed else ""
        return f"<{iface.name} {iface.id}/{iface.revision} {self.implementation.name!r} of {self.implementation.plugin.id}{state}>"


_proxies: dict[int, type[Instance]] = {}


def proxy_class(interface: Any) -> type[Instance]:
    """The class of instances: a generated proxy, or one made for a bare declaration."""
    if isinstance(interface, type) and issubclass(interface, Instance):
        return interface
    iface = spec(interface)
    made = _proxies.get(id(iface))
    if made is None:
        made = _proxies[id(iface)] = type(iface.name, (Instance,), {"__ferrule_interface__": iface, "__doc__": iface.doc,
                                                                     "__module__": "ferrule"})
    return made


class _Target:
    """What an instance's methods need from their owner (it stands in for the
    plugin in PluginFunction): the host, the instance pointer, its own gate."""

    def __init__(self, plugin: Plugin, offer: Offer, name: str, self_ptr: Any, thread_safe: bool):
        from ._plugin import _gate

        self.plugin = plugin
        self.offer = offer
        self.iface: InterfaceSpec | None = None
        self.id = plugin.id
        self._host = plugin._host
        self._table = plugin._table
        self._state = self_ptr
        self.thread_safe = thread_safe
        message = f"{name} instance {offer.name!r} of plugin {plugin.id!r} is closed: create another"
        self.life, self._serial = _gate(plugin._accelerated, message)
        self._life = self.life  # the name PluginFunction looks for
        self.cross = threading.Lock()  # serialises calls that other plugins make through the host
        self.finalizer = weakref.finalize(self, _destroy, self.life, offer.destroy, plugin, self_ptr, offer.name)

    def close(self) -> None:
        if self.life.close(True):
            self.finalizer()


def _destroy(life: Any, destroy: Any, plugin: Plugin, self_ptr: Any, name: str) -> None:
    # From close(), the garbage collector or exit; never under a call.
    if not life.close(False):
        return
    try:
        with plugin._create_lock, plugin._calling():
            destroy(plugin._table, plugin._state, self_ptr)
    finally:
        plugin._instance_gone()


def _make_target(plugin: Plugin, offer: Offer, name: str, thread_safe: bool) -> _Target:
    """Run the offer's create; the instance it makes, without a proxy."""
    out = ffi.new("void **")
    plugin._life.enter()
    try:
        with plugin._create_lock, plugin._calling():
            plugin._host.clear_error()
            status = offer.create(plugin._table, plugin._state, out)
            if status != abi.OK:
                message = plugin._host.take_error()
                what = f"plugin {plugin.id!r} could not create {name} {offer.name!r}: {message}"
                if status == abi.PANIC:
                    raise PluginPanicError(what, message)
                raise PluginCallError(what, message)
            plugin._instance_made()
    finally:
        plugin._life.leave()
    return _Target(plugin, offer, name, out[0], thread_safe)


class Implementation(Generic[P]):
    """An implementation of an interface that a loaded plugin offers.

    ``create()`` makes an instance (a proxy of type P); a plugin may offer
    several implementations of one interface, each under its own name."""

    __module__ = "ferrule"

    def __init__(self, plugin: Plugin, offer: Offer, proxy: type[P]):
        iface = proxy.__ferrule_interface__  # type: ignore[attr-defined]
        self.plugin = plugin
        self.interface: InterfaceSpec = iface
        self.name = offer.name
        self.doc = offer.doc
        self.thread_safe = iface.thread_safe or bool(offer.flags & abi.IFACE_THREAD_SAFE)
        self._offer = offer
        self._proxy = proxy

    def create(self) -> P:
        """Make an instance. Raises PluginCallError if the plugin's create
        fails, PluginClosedError once the plugin is closed."""
        target = _make_target(self.plugin, self._offer, self.interface.name, self.thread_safe)
        target.iface = self.interface
        proxy: Any = object.__new__(self._proxy)
        proxy.implementation = self
        proxy._target = target
        for m in self.interface.methods:
            setattr(proxy, m.name, _method(target, m, self._offer.methods[m.index]))
        return proxy  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<ferrule.Implementation {self.interface.id}/{self.interface.revision} {self.name!r} of {self.plugin.id}>"


def _method(target: _Target, m: MethodSpec, call: Any) -> Callable[..., Any]:
    """The callable for one method: a PluginFunction, wrapped only where a
    struct or handle needs converting."""
    from ._plugin import PluginFunction, _FunctionInfo

    iface = target.iface
    assert iface is not None
    flags = abi.FN_THREAD_SAFE if target.thread_safe else 0
    info = _FunctionInfo(f"{iface.name}.{m.name}", m.signature, m.doc, flags, call)
    fn = PluginFunction(target, info)  # type: ignore[arg-type]
    if target.plugin._accelerated:
        fn._attach(target._host, target.life, target._state)
    structs = [(i, codec(p.type.struct), f"{info.name}() argument {p.name!r}")
               for i, p in enumerate(m.params) if p.type.kind == "struct" and p.type.struct is not None]
    result = m.result
    if not structs and (result is None or result.kind not in ("struct", "handle")):
        return fn
    count = len(m.params)
    out_codec = codec(result.struct) if result is not None and result.struct is not None else None
    handle = result.handle if result is not None and result.kind == "handle" else None

    def call_method(*args: Any) -> Any:
        if len(args) != count:
            raise TypeError(f"{info.name}{m.signature} takes {count} argument{'s' if count != 1 else ''}, {len(args)} given")
        values = list(args)
        for i, c, where in structs:
            values[i] = c.pack(values[i], where)
        if out_codec is not None:
            out = bytearray(out_codec.size)
            fn(*values, out)
            return out_codec.unpack(out)
        raw = fn(*values)
        return handle(raw) if handle is not None else raw

    call_method.__name__ = call_method.__qualname__ = m.name
    call_method.__doc__ = fn.__doc__
    return call_method


# ------------------------------------------------------------------ the host side of query/call/release


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
        self.target: _Target | None = None
        self.busy = 0  # threads inside (debug mode checks)


class Services:
    """The registry behind a PluginHost: provided services, loaded plugins,
    objects lent to plugins, and the three host-table callbacks."""

    def __init__(self, debug: bool):
        self.debug = debug
        self.lock = threading.RLock()
        self.services: dict[tuple[str, int], tuple[InterfaceSpec, Any, Any]] = {}
        self.plugins: list[Plugin] = []
        self.tables: dict[int, weakref.ref[Plugin]] = {}
        self.lent: dict[int, _Lent] = {}
        self.tokens = itertools.count(1)
        self.query_cb = ffi.callback("const ferrule_object *(*)(const ferrule_host *, const char *, uint32_t, uint64_t)",
                                     self._query)
        self.call_cb = ffi.callback(
            "int32_t(*)(const ferrule_host *, const ferrule_object *, uint32_t, const ferrule_value *, ferrule_value *)",
            self._call)
        self.release_cb = ffi.callback("void(*)(const ferrule_host *, const ferrule_object *)", self._release)

    def addresses(self) -> tuple[int, int, int]:
        return tuple(int(ffi.cast(_UINTPTR, cb)) for cb in (self.query_cb, self.call_cb, self.release_cb))  # type: ignore[return-value]

    def attach(self, plugin: Plugin, table_address: int) -> None:
        with self.lock:
            self.tables[table_address] = weakref.ref(plugin)

    def provide(self, iface: InterfaceSpec, implementation: Any) -> None:
        missing = [m.name for m in iface.methods if not callable(getattr(implementation, m.name, None))]
        if missing:
            raise TypeError(f"{implementation!r} lacks method{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                            f"of {iface.name} ({iface.id}/{iface.revision})")
        for m in iface.methods:
            if any(p.type.kind == "fn" for p in m.params):
                raise TypeError(f"{iface.name}.{m.name} takes a callable: plugins cannot pass one, so the host "
                                "cannot provide this interface (only plugins implement it)")
        lock = None if iface.thread_safe else threading.Lock()
        with self.lock:
            self.services[iface.key] = (iface, implementation, lock)

    def withdraw(self, iface: InterfaceSpec) -> None:
        with self.lock:
            self.services.pop(iface.key, None)

    # -- callbacks: each runs on a plugin's thread with the GIL; none may raise

    def _caller(self, host: Any) -> Plugin | None:
        ref = self.tables.get(int(ffi.cast(_UINTPTR, host)))
        return ref() if ref is not None else None

    def _query(self, host: Any, id_ptr: Any, revision: int, fingerprint: int) -> Any:
        caller = self._caller(host)
        try:
            if caller is None or id_ptr == ffi.NULL:
                return ffi.NULL
            ident = ffi.string(id_ptr, 256).decode("utf-8", "replace")
            key = (ident, revision)
            lent = self._find(caller, key, fingerprint)
            if lent is None:
                return ffi.NULL
            token = next(self.tokens)
            with self.lock:
                self.lent[token] = lent
            return ffi.cast("const ferrule_object *", token)
        except Exception as exc:  # never unwind into plugin code
            _logger(caller).error("query failed in the host: %s", exc)
            return ffi.NULL

    def _find(self, caller: Plugin, key: tuple[str, int], fingerprint: int) -> _Lent | None:
        table = int(ffi.cast(_UINTPTR, caller._table))
        with self.lock:
            service = self.services.get(key)
            plugins = list(self.plugins)
        if service is not None:
            iface, impl, lock = service
            if iface.fingerprint != fingerprint:
                _logger(caller).warning(
                    "plugin %r asked for %s/%d with layout fingerprint %#018x, the host's %s has %#018x: "
                    "regenerate the plugin's code from the host's declaration\nhost layout:\n%s",
                    caller.id, key[0], key[1], fingerprint, iface.name, iface.fingerprint, _indent(iface.layout))
                return None
            lent = _Lent(iface.name, len(iface.methods), iface.thread_safe, table)
            lent.iface, lent.service, lent.lock = iface, impl, lock
            return lent
        # Another plugin's implementation first; the caller's own last.
        ordered = [p for p in plugins if p is not caller] + ([caller] if caller in plugins else [])
        for plugin in ordered:
            for offer in plugin._desc.offers:
                if (offer.id, offer.revision) != key:
                    continue
                if offer.fingerprint != fingerprint:
                    _logger(caller).warning(
                        "plugin %r asked for %s/%d with layout fingerprint %#018x, plugin %r implements it as %r "
                        "with %#018x: skipped", caller.id, key[0], key[1], fingerprint, plugin.id, offer.name,
                        offer.fingerprint)
                    continue
                if plugin.closed:
                    continue
                thread_safe = bool(offer.flags & abi.IFACE_THREAD_SAFE)
                lent = _Lent(f"{offer.id}/{offer.revision}", offer.method_count, thread_safe, table)
                lent.target = _make_target(plugin, offer, lent.name, thread_safe)
                return lent
        return None

    def _call(self, host: Any, obj: Any, method: int, args: Any, ret: Any) -> int:
        caller = self._caller(host)
        if ret == ffi.NULL:
            return abi.ERROR
        try:
            lent = self.lent.get(int(ffi.cast(_UINTPTR, obj)))
            if lent is None:
                self._violation(caller, "call on an unknown or released object")
                return _fail(ret, abi.ERROR, "host->call: unknown or released object")
            if not 0 <= method < lent.methods:
                return _fail(ret, abi.ERROR, f"host->call: {lent.name} has no method number {method}")
            if self.debug and caller is not None:
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
        argv = [_decode_arg(p.type, args[i], f"{lent.name}.{m.name}() argument {p.name!r}")
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
        _encode_result(m, result, args, ret, f"the result of {lent.name}.{m.name}()")
        return abi.OK

    def _call_instance(self, lent: _Lent, method: int, args: Any, ret: Any) -> int:
        target = lent.target
        assert target is not None
        plugin = target.plugin
        empty = None
        if args == ffi.NULL:  # a method without parameters; plugins may rely on a non-NULL args
            args = empty = ffi.new("ferrule_value[1]")
        target.life.enter()
        try:
            with target.cross if not target.thread_safe else contextlib.nullcontext(), plugin._calling():
                plugin._host.clear_error()
                status = target.offer.methods[method](plugin._table, target._state, args, ret)
                if status != abi.OK:
                    message = plugin._host.take_error()
                    return _fail(ret, abi.PANIC if status == abi.PANIC else abi.ERROR, message)
                return abi.OK
        finally:
            target.life.leave()
            del empty

    def _release(self, host: Any, obj: Any) -> None:
        caller = self._caller(host)
        if obj == ffi.NULL:
            return
        try:
            with self.lock:
                lent = self.lent.pop(int(ffi.cast(_UINTPTR, obj)), None)
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
            objects = [self.lent.pop(k) for k in mine]
        for lent in objects:
            if lent.target is not None:
                lent.target.close()
        return len(objects)

    def _violation(self, caller: Plugin | None, what: str) -> None:
        if self.debug:
            who = caller.id if caller is not None else "?"
            warnings.warn(ThreadContractWarning(f"plugin {who!r}: {what}"), stacklevel=1)


def _logger(plugin: Plugin | None) -> logging.Logger:
    return logging.getLogger(f"ferrule.plugin.{plugin.id}") if plugin is not None else _log


def _fail(ret: Any, status: int, message: str) -> int:
    """A failed host->call: the message goes to the caller as owned bytes."""
    if not _give_bytes(ret, message.encode("utf-8", "replace")[:_MAX_MESSAGE]):
        ret.bytes.ptr = ffi.NULL
        ret.bytes.len = 0
        ret.bytes.release = ffi.NULL
    return status


def _decode_arg(t: TypeSpec, slot: Any, where: str) -> Any:
    """An argument a plugin passes to a host service, as Python sees it."""
    kind = t.kind
    if kind == "number" or kind in ("bool", "str", "bytes"):
        return _value_of(TYPES[t.name if kind == "number" else kind], slot)
    if kind == "handle":
        assert t.handle is not None
        return t.handle(_int_of(TYPES["u64"], slot.u64))
    if kind in ("buf", "mutbuf"):
        size = _struct.calcsize(STRUCT_FORMATS[t.elem])
        if slot.buf.ptr == ffi.NULL:
            if slot.buf.len:
                raise ValueError(f"{where}: NULL pointer with length {slot.buf.len}")
            return memoryview(b"").cast(STRUCT_FORMATS[t.elem])  # type: ignore[call-overload]
        raw: Any = memoryview(ffi.buffer(slot.buf.ptr, slot.buf.len * size)).cast("B")
        view: memoryview = raw.cast(STRUCT_FORMATS[t.elem])
        return view if kind == "mutbuf" else view.toreadonly()
    if kind == "struct":
        assert t.struct is not None
        c = codec(t.struct)
        if slot.bytes.len != c.size or slot.bytes.ptr == ffi.NULL:
            raise ValueError(f"{where}: {t.struct.name} needs {c.size} bytes, got {slot.bytes.len}")
        return c.unpack(ffi.buffer(ffi.cast("const char *", slot.bytes.ptr), c.size))
    raise TypeError(f"{where}: {t.layout} cannot come from a plugin")


def _encode_result(m: MethodSpec, result: Any, args: Any, ret: Any, where: str) -> None:
    from ._plugin import PluginFunction

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
    value = PluginFunction._check_value(abi_type, result, where)
    if t.kind in ("str", "bytes"):
        if not _give_bytes(ret, str.encode(value, "utf-8") if t.kind == "str" else bytes(value)):
            raise MemoryError
        return
    _store_scalar(ret, abi_type, value)
