"""The plugin host: load a ferrule plugin, check its descriptor, run its
lifecycle and call its functions with typed, checked arguments."""

from __future__ import annotations

import inspect
import json
import logging
import math
import operator
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from . import _cdef as abi
from ._errors import (
    AbiVersionError,
    BadMagicError,
    DescriptorError,
    DescriptorTooSmallError,
    MetadataError,
    NoEntryPointError,
    PluginCallError,
    PluginClosedError,
    PluginInitError,
    PluginPanicError,
    SignatureError,
)
from ._ffi import ffi, libc
from ._library import Library
from ._signature import AbiType, Signature, parse_signature

__all__ = ["Plugin", "PluginFunction", "load"]

ENTRY_SYMBOL = f"ferrule_entry_v{abi.ABI_MAJOR}"
_PLUGIN_V1_SIZE = ffi.sizeof("ferrule_plugin")
_FUNCTION_V1_SIZE = ffi.sizeof("ferrule_function")
_MAX_FUNCTIONS = 4096
_MAX_TEXT = 1 << 16
_ID_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")
_LOG_LEVELS = {
    abi.LOG_TRACE: 5,
    abi.LOG_DEBUG: logging.DEBUG,
    abi.LOG_INFO: logging.INFO,
    abi.LOG_WARN: logging.WARNING,
    abi.LOG_ERROR: logging.ERROR,
}
_F32_MAX = 3.4028234663852886e38


def load(path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None) -> Plugin:
    """Load the plugin at ``path``, check its descriptor and run its init.

    ``config`` reaches the plugin's init as UTF-8 text; a mapping is sent as
    JSON. Raises a subclass of ferrule.FerruleError on any failure.
    """
    return Plugin(Library(path), config=config)


class _Host:
    """The host callback table handed to one plugin instance, and the Python
    side of its callbacks. Kept alive until the instance has shut down."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self.errors = threading.local()
        self.log_cb = ffi.callback("void(*)(const ferrule_host *, int32_t, const char *, size_t)", self._log)
        self.error_cb = ffi.callback("void(*)(const ferrule_host *, const char *, size_t)", self._set_error)
        self.alloc_cb = ffi.callback("void *(*)(size_t)", self._alloc)
        self.free_cb = ffi.callback("void(*)(void *, size_t)", self._free)
        table = ffi.new("ferrule_host *")
        table.struct_size = ffi.sizeof("ferrule_host")
        table.abi_major = abi.ABI_MAJOR
        table.abi_minor = abi.ABI_MINOR
        table.log = self.log_cb
        table.set_error = self.error_cb
        table.alloc = self.alloc_cb
        table.free = self.free_cb
        self.table = table

    def _log(self, _host: Any, level: int, msg: Any, length: int) -> None:
        try:
            text = ffi.unpack(msg, length).decode("utf-8", "replace") if msg != ffi.NULL else ""
            self.logger.log(_LOG_LEVELS[min(max(level, abi.LOG_TRACE), abi.LOG_ERROR)], "%s", text)
        except Exception:  # a broken handler must not unwind into plugin code
            pass

    def _set_error(self, _host: Any, msg: Any, length: int) -> None:
        if msg == ffi.NULL:
            self.errors.message = ""
        else:
            self.errors.message = ffi.unpack(msg, min(length, _MAX_TEXT)).decode("utf-8", "replace")

    @staticmethod
    def _alloc(size: int) -> Any:
        return libc.malloc(max(size, 1))

    @staticmethod
    def _free(ptr: Any, _size: int) -> None:
        libc.free(ptr)

    def take_error(self) -> str:
        message: str = getattr(self.errors, "message", "") or "(the plugin gave no error message)"
        self.errors.message = None
        return message


def _text(ptr: Any, what: str, required: bool = True) -> str:
    if ptr == ffi.NULL:
        if required:
            raise MetadataError(f"{what} is NULL, expected a UTF-8 string: fill it in the descriptor")
        return ""
    raw = ffi.string(ptr, _MAX_TEXT)
    try:
        return str(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start}): {raw!r}") from None


def _read_descriptor(lib: Library) -> Any:
    if ENTRY_SYMBOL not in lib:
        others = [f"ferrule_entry_v{n}" for n in range(0, 10) if n != abi.ABI_MAJOR and f"ferrule_entry_v{n}" in lib]
        if others:
            major = int(others[0].rsplit("v", 1)[1])
            raise AbiVersionError(
                f"{lib.path} exports {others[0]} (ABI {major}), this host speaks ABI {abi.ABI_MAJOR}: "
                f"rebuild the plugin against ABI {abi.ABI_MAJOR} or use a matching ferrule",
                (major, 0),
                (abi.ABI_MAJOR, abi.ABI_MINOR),
            )
        raise NoEntryPointError(
            f"{lib.path} does not export {ENTRY_SYMBOL}, expected by every ferrule plugin: export it "
            "with the Rust SDK's plugin! macro or the C header's FERRULE_ENTRY"
        )
    entry = ffi.cast("ferrule_entry_fn", lib.symbol(ENTRY_SYMBOL))
    desc = entry()
    if desc == ffi.NULL:
        raise NoEntryPointError(f"{ENTRY_SYMBOL} in {lib.path} returned NULL, expected a descriptor")
    if desc.magic != abi.MAGIC:
        raise BadMagicError(
            f"{lib.path}: descriptor starts with {desc.magic:#018x}, expected the magic "
            f"{abi.MAGIC:#018x}: the entry point returns something that is not a ferrule descriptor"
        )
    found = (desc.abi_major, desc.abi_minor)
    host = (abi.ABI_MAJOR, abi.ABI_MINOR)
    if desc.abi_major != abi.ABI_MAJOR:
        raise AbiVersionError(
            f"{lib.path} was built for ferrule ABI {found[0]}.{found[1]}, this host speaks ABI "
            f"{host[0]}.{host[1]}: rebuild the plugin against ABI {host[0]}",
            found,
            host,
        )
    if desc.struct_size < _PLUGIN_V1_SIZE:
        raise DescriptorTooSmallError(
            f"{lib.path}: descriptor struct_size is {desc.struct_size} bytes, ABI {host[0]}.0 needs at "
            f"least {_PLUGIN_V1_SIZE}: rebuild the plugin with the current SDK"
        )
    return desc


class PluginFunction:
    """A typed callable for one exported function of a loaded plugin."""

    __module__ = "ferrule"

    def __init__(self, plugin: Plugin, raw: Any, signature: Signature, doc: str):
        self._plugin = plugin
        self._call = raw.call
        self.__name__ = self.__qualname__ = self.name = ffi.string(raw.name).decode()
        self.signature = signature
        self.thread_safe = bool(raw.flags & abi.FN_THREAD_SAFE)
        self.doc = doc
        self.__doc__ = f"{self.name}{signature}\n\n{doc}" if doc else f"{self.name}{signature}"
        self.__signature__ = inspect.Signature(
            [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=p.type.python) for p in signature.params],
            return_annotation=signature.result.python if signature.result else None,
        )
        self._names = [p.name for p in signature.params]
        self._types = [p.type for p in signature.params]

    def __repr__(self) -> str:
        return f"<ferrule function {self._plugin.id}.{self.name}{self.signature}>"

    def __get__(self, instance: object, owner: type | None = None) -> PluginFunction:
        # Not bound to the plugin: a class attribute of the plugin's own class
        # (see Plugin.__init__), which also makes help() list it as a routine.
        return self

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        count = len(self._names)
        if not kwargs:
            if len(args) != count:
                raise TypeError(f"{self.name}{self.signature} takes {count} argument{'s' if count != 1 else ''}, {len(args)} given")
            return args
        if len(args) > count:
            raise TypeError(f"{self.name}{self.signature} takes {count} arguments, {len(args)} given")
        values = list(args) + [_MISSING] * (count - len(args))
        for key, value in kwargs.items():
            if key not in self._names:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {key!r}")
            index = self._names.index(key)
            if values[index] is not _MISSING:
                raise TypeError(f"{self.name}() got multiple values for argument {key!r}")
            values[index] = value
        missing = [n for n, v in zip(self._names, values) if v is _MISSING]
        if missing:
            raise TypeError(f"{self.name}() missing argument{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        return tuple(values)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        values = self._bind(args, kwargs)
        count = len(values)
        slots = ffi.new(_VALUES, count + 1)  # the arguments, then the result
        keep = []  # encoded text and buffers must outlive the call
        for i, (value, abi_type) in enumerate(zip(values, self._types)):
            if abi_type.bits and type(value) is int and abi_type.min <= value <= abi_type.max:
                setattr(slots[i], abi_type.slot, value)  # the common case, checked inline
            else:
                keep.append(self._encode(slots, i, value, abi_type))
        ret = slots + count
        plugin = self._plugin
        host = plugin._host
        # Results are read and released before leaving the gate (shutdown
        # must not run in between) and the serial lock (release is plugin code).
        plugin._life.enter(plugin.id)
        try:
            host.errors.message = None
            if self.thread_safe:
                return self._finish(self._call(host.table, plugin._state, slots, ret), ret)
            with plugin._serial:
                return self._finish(self._call(host.table, plugin._state, slots, ret), ret)
        finally:
            plugin._life.leave()

    def _finish(self, status: int, ret: Any) -> Any:
        if status != abi.OK:
            message = self._plugin._host.take_error()
            where = f"plugin {self._plugin.id!r} function {self.name!r}"
            if status == abi.PANIC:
                raise PluginPanicError(f"{where} panicked: {message}", message)
            raise PluginCallError(f"{where} failed: {message}", message)
        return self._decode(ret)

    def _encode(self, slots: Any, i: int, value: Any, abi_type: AbiType) -> Any:
        slot = slots[i]
        kind = abi_type.name
        if abi_type.bits:
            if isinstance(value, bool):
                raise self._type_error(i, "int", value)
            try:
                number = operator.index(value)
            except TypeError:
                raise self._type_error(i, "int", value) from None
            if not abi_type.min <= number <= abi_type.max:
                shown = number if number.bit_length() <= 128 else f"a {number.bit_length()}-bit integer"
                raise ValueError(
                    f"{self.name}() argument {self._names[i]!r}: {shown} is out of range for {kind} "
                    f"({abi_type.min} to {abi_type.max})"
                )
            setattr(slot, abi_type.slot, number)
            return None
        if kind == "bool":
            if not isinstance(value, bool):
                raise self._type_error(i, "bool", value)
            slot.u64 = int(value)
            return None
        if kind in ("f32", "f64"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self._type_error(i, "float", value)
            try:
                real = float(value)
            except OverflowError:
                raise ValueError(f"{self.name}() argument {self._names[i]!r}: integer too large for {kind}") from None
            if kind == "f32" and math.isfinite(real) and abs(real) > _F32_MAX:
                raise ValueError(f"{self.name}() argument {self._names[i]!r}: {real} is out of range for f32")
            setattr(slot, kind, real)
            return None
        data: object
        if kind == "str":
            if not isinstance(value, str):
                raise self._type_error(i, "str", value)
            try:
                data = str.encode(value, "utf-8")  # not a subclass's own encode()
            except UnicodeEncodeError as exc:
                raise ValueError(f"{self.name}() argument {self._names[i]!r}: cannot encode as UTF-8: {exc.reason}") from None
            buffer = ffi.from_buffer(data)  # bytes keep their trailing NUL
        else:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise self._type_error(i, "bytes-like object", value)
            if isinstance(value, memoryview) and not value.c_contiguous:
                raise ValueError(f"{self.name}() argument {self._names[i]!r}: memoryview is not contiguous")
            data = value
            buffer = ffi.from_buffer(value)
        slot.bytes.ptr = buffer
        slot.bytes.len = len(buffer)
        return (data, buffer)

    def _type_error(self, i: int, expected: str, value: Any) -> TypeError:
        return TypeError(
            f"{self.name}() argument {self._names[i]!r} must be {expected} "
            f"({self._types[i].name}), got {type(value).__name__}"
        )

    def _decode(self, ret: Any) -> Any:
        result = self.signature.result
        if result is None:
            return None
        if result.bits:
            raw = ret.u64 & ((1 << result.bits) - 1)
            if result.signed and raw >> (result.bits - 1):
                raw -= 1 << result.bits
            return raw
        if result.name == "bool":
            return ret.u64 != 0
        if result.name == "f32":
            return ret.f32
        if result.name == "f64":
            return ret.f64
        ptr, length, release = ret.bytes.ptr, ret.bytes.len, ret.bytes.release
        try:
            if ptr == ffi.NULL:
                if length:
                    raise PluginCallError(f"plugin {self._plugin.id!r} function {self.name!r} returned NULL with length {length}")
                data = b""
            else:
                data = ffi.unpack(ffi.cast("const char *", ptr), length)
        finally:
            if release != ffi.NULL:
                release(ffi.cast("void *", ptr), length)
        if result.name == "bytes":
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PluginCallError(
                f"plugin {self._plugin.id!r} function {self.name!r} returned text that is not valid "
                f"UTF-8 ({exc.reason} at byte {exc.start}); expected str"
            ) from None


_MISSING: Any = object()
_VALUES = ffi.typeof("ferrule_value[]")


class Plugin:
    """A loaded, initialised plugin instance.

    Functions are attributes (``plugin.add(2, 3)``) and are listed in
    ``plugin.functions``. Use as a context manager or call ``close()``; the
    plugin's shutdown runs exactly once. The library stays mapped afterwards.
    """

    __module__ = "ferrule"

    def __init__(self, library: Library, *, config: str | Mapping[str, Any] | None = None):
        desc = _read_descriptor(library)
        self.library = library
        self.path = library.path
        self.abi_version: tuple[int, int] = (desc.abi_major, desc.abi_minor)
        self.id = _text(desc.id, "plugin id")
        if not _ID_RE.match(self.id):
            raise MetadataError(
                f"{library.path}: plugin id {self.id!r} is not reverse-DNS (like 'org.example.greeter'): fix the descriptor"
            )
        self.name = _text(desc.name, f"plugin {self.id!r} name")
        self.version = _text(desc.version, f"plugin {self.id!r} version")
        self.description = _text(desc.description, f"plugin {self.id!r} description", required=False)
        self.license = _text(desc.license, f"plugin {self.id!r} license", required=False)
        self._functions = self._read_functions(desc)
        self.functions: Mapping[str, PluginFunction] = MappingProxyType(self._functions)
        # Each plugin gets its own subclass holding its functions, so that
        # plugin.add is a plain attribute lookup and help(plugin) documents them.
        namespace: dict[str, Any] = {
            n: f for n, f in self._functions.items() if not n.startswith("_") and not hasattr(Plugin, n)
        }
        namespace["__doc__"] = f"{self.name} {self.version} ({self.id}): {self.description}"
        namespace["__module__"] = "ferrule"
        namespace["__qualname__"] = f"Plugin[{self.id}]"
        self.__class__ = type(namespace["__qualname__"], (Plugin,), namespace)

        self._host = _Host(logging.getLogger(f"ferrule.plugin.{self.id}"))
        self._serial = threading.Lock()
        self._life = _Lifecycle()
        self._state = self._init(desc, config)
        self._finalizer = weakref.finalize(self, _shutdown, self._life, desc.shutdown, self._host, self._state)

    def _read_functions(self, desc: Any) -> dict[str, PluginFunction]:
        count = desc.function_count
        if count > _MAX_FUNCTIONS:
            raise MetadataError(f"plugin {self.id!r} declares {count} functions, at most {_MAX_FUNCTIONS} allowed")
        if count and desc.functions == ffi.NULL:
            raise DescriptorError(f"plugin {self.id!r} declares {count} functions but its function table is NULL")
        functions: dict[str, PluginFunction] = {}
        for i in range(count):
            raw = desc.functions[i]
            where = f"plugin {self.id!r} function #{i}"
            if raw == ffi.NULL:
                raise DescriptorError(f"{where} is NULL, expected a ferrule_function")
            if raw.struct_size < _FUNCTION_V1_SIZE:
                raise DescriptorTooSmallError(
                    f"{where}: struct_size is {raw.struct_size} bytes, ABI {abi.ABI_MAJOR}.0 needs at least "
                    f"{_FUNCTION_V1_SIZE}: rebuild the plugin with the current SDK"
                )
            name = _text(raw.name, f"{where} name")
            if not name.isidentifier():
                raise MetadataError(f"{where} name {name!r} is not an identifier")
            if name in functions:
                raise MetadataError(f"plugin {self.id!r} exports two functions named {name!r}")
            text = _text(raw.signature, f"plugin {self.id!r} function {name!r} signature")
            try:
                signature = parse_signature(text)
            except ValueError as exc:
                raise SignatureError(
                    f"plugin {self.id!r} function {name!r} has a malformed signature {text!r}: {exc}; "
                    "expected e.g. '(a: i64, b: i64) -> i64'"
                ) from None
            if raw.call == ffi.NULL:
                raise DescriptorError(f"plugin {self.id!r} function {name!r} has a NULL call pointer")
            doc = _text(raw.doc, f"plugin {self.id!r} function {name!r} doc", required=False)
            functions[name] = PluginFunction(self, raw, signature, doc)
        return functions

    def _init(self, desc: Any, config: str | Mapping[str, Any] | None) -> Any:
        state = ffi.new("void **")
        if desc.init == ffi.NULL:
            return ffi.NULL
        if config is None:
            text = ""
        elif isinstance(config, str):
            text = config
        elif isinstance(config, Mapping):
            text = json.dumps(dict(config))
        else:
            raise TypeError(f"config must be str, a mapping (sent as JSON) or None, got {type(config).__name__}")
        data = str.encode(text, "utf-8")
        self._host.errors.message = None
        status = desc.init(self._host.table, data, len(data), state)
        if status != abi.OK:
            message = self._host.take_error()
            verb = "panicked in init" if status == abi.PANIC else "failed to initialise"
            raise PluginInitError(f"plugin {self.id!r} {verb}: {message}")
        return state[0]

    @property
    def closed(self) -> bool:
        return self._life.closed

    def close(self) -> None:
        """Wait for calls in flight, then run the plugin's shutdown. Idempotent."""
        if self._life.close(wait=True):
            self._finalizer()

    def __enter__(self) -> Plugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> PluginFunction:
        functions = self.__dict__.get("_functions")
        if functions is not None and name in functions:
            return functions[name]  # type: ignore[no-any-return]
        raise AttributeError(f"plugin {self.__dict__.get('id', '?')!r} has no function {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._functions))

    def __iter__(self) -> Iterator[PluginFunction]:
        return iter(self._functions.values())

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        lines = [f"<ferrule.Plugin {self.id} {self.name!r} {self.version}{state}, ABI {self.abi_version[0]}.{self.abi_version[1]}"]
        for fn in self._functions.values():
            doc = fn.doc.splitlines()[0] if fn.doc else ""
            lines.append(f"    {fn.name}{fn.signature}" + (f"  # {doc}" if doc else ""))
        return "\n".join(lines) + ">"


class _Lifecycle:
    """Counts calls in flight so that shutdown never runs under one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle = threading.Event()  # set once closed with no call in flight
        self.active = 0
        self.closed = False

    def enter(self, plugin_id: str) -> None:
        with self.lock:
            if self.closed:
                raise PluginClosedError(f"plugin {plugin_id!r} is closed: load it again to call it")
            self.active += 1

    def leave(self) -> None:
        with self.lock:
            self.active -= 1
            if self.closed and not self.active:
                self.idle.set()

    def close(self, wait: bool) -> bool:
        """Refuse new calls. True if none is in flight (after waiting for them
        if wait). That shutdown runs once is weakref.finalize's guarantee."""
        with self.lock:
            self.closed = True
            busy = self.active > 0
        return not busy or (wait and self.idle.wait())


def _shutdown(life: _Lifecycle, shutdown: Callable[[Any, Any], None], host: _Host, state: Any) -> None:
    # Runs from close(), the garbage collector or interpreter exit. At exit a
    # daemon thread may still be inside a call: then shutdown is skipped
    # rather than run under it. Holding host keeps the callbacks alive.
    if not life.close(wait=False):
        return
    if shutdown != ffi.NULL:
        shutdown(host.table, state)
