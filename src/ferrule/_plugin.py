"""The plugin host: load a ferrule plugin, check its descriptor, run its
lifecycle and call its functions with typed, checked arguments."""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import json
import logging
import math
import operator
import os
import re
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

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
from ._ffi import ffi
from ._library import Library
from ._interfaces import Implementation, Offer, Services, check_offer, proxy_class
from ._signature import ELEMENT_SIZE, AbiType, Signature, parse_signature
from ._values import _alloc_cb, _free_cb, _give_bytes, _int_of, _store_scalar, _value_of
from .idl import spec as _spec

if TYPE_CHECKING:
    from ._isolated import IsolatedPlugin

__all__ = ["Plugin", "PluginFunction", "load"]

P = TypeVar("P")
ENTRY_SYMBOL = f"ferrule_entry_v{abi.ABI_MAJOR}"
_PLUGIN_V1_SIZE = ffi.offsetof("ferrule_plugin", "interface_count")  # ABI 1.0's size
_FUNCTION_V1_SIZE = ffi.sizeof("ferrule_function")
_PLUGIN_V12_SIZE = ffi.offsetof("ferrule_plugin", "interfaces") + ffi.sizeof("void *")
_INTERFACE_SIZE = ffi.sizeof("ferrule_interface")
_MAX_FUNCTIONS = 4096
_MAX_TEXT = 1 << 16
_ID_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")  # used with fullmatch: $ would let "\n" through
_LOG_LEVELS = {
    abi.LOG_TRACE: 5,
    abi.LOG_DEBUG: logging.DEBUG,
    abi.LOG_INFO: logging.INFO,
    abi.LOG_WARN: logging.WARNING,
    abi.LOG_ERROR: logging.ERROR,
}
_F32_MAX = 3.4028234663852886e38


@overload
def load(path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None,
         isolated: Literal[False] = False) -> Plugin: ...


@overload
def load(path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None,
         isolated: Literal[True], timeout: float | None = None, restart: bool = True,
         memory_limit: int | None = None, cpu_limit: float | None = None) -> IsolatedPlugin: ...


def load(path: str | os.PathLike[str], *, config: str | Mapping[str, Any] | None = None, isolated: bool = False,
         **isolation: Any) -> Plugin | IsolatedPlugin:
    """Load the plugin at ``path``, check its descriptor and run its init.

    ``config`` reaches the plugin's init as UTF-8 text; a mapping is sent as
    JSON. Raises a subclass of ferrule.FerruleError on any failure. The
    plugin gets a host of its own; load through a ``PluginHost`` to share
    services and interfaces between plugins.

    ``isolated=True`` runs the plugin in a child process behind the same
    API (see ``IsolatedPlugin``): a crash, hang or runaway allocation there
    becomes an exception here. Only then are ``timeout`` (seconds per call),
    ``restart`` (start a new child on the next call after a failure),
    ``memory_limit`` (bytes of address space) and ``cpu_limit`` (CPU
    seconds) accepted.
    """
    if isolated:
        from ._isolated import IsolatedPlugin

        return IsolatedPlugin(path, config=config, **isolation)
    if isolation:
        raise TypeError(f"load() got {', '.join(sorted(isolation))}: these apply only with isolated=True")
    return Plugin(Library(path), config=config)


_speedups: types.ModuleType | None
try:
    if os.environ.get("FERRULE_PURE_PYTHON"):
        raise ImportError("FERRULE_PURE_PYTHON is set")
    from . import _speedups
except ImportError:  # not built: the cffi path below does every job
    _speedups = None

# Whether new plugins take the C path (tests switch it to compare paths).
_ACCELERATE = _speedups is not None


_PID = os.getpid()


def _reset_pid() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_reset_pid)  # a fork by Python code is the host's own


def _fork_guard() -> None:
    """The cffi path's twin of the accelerator's check: a plugin that forked
    during a call returns twice, and the copy must not go on running the host."""
    if os.getpid() != _PID:
        os.write(2, b"ferrule: a plugin forked during a call; the copy ends here, as it must not run the host\n")
        os._exit(70)


def _log_sink(logger: logging.Logger) -> Callable[[int, str], None]:
    def log(level: int, text: str) -> None:
        logger.log(_LOG_LEVELS[min(max(level, abi.LOG_TRACE), abi.LOG_ERROR)], "%s", text)

    return log


class _Frame:
    """A host function passed to one call, on the cffi path."""

    __slots__ = ("callable", "sig", "owner", "index", "error", "key")

    def __init__(self, function: Callable[..., Any], sig: Signature, owner: PluginFunction, index: int):
        self.callable = function
        self.sig = sig
        self.owner = owner
        self.index = index
        self.error: BaseException | None = None
        self.key = 0  # its handle, once registered with the host


class _Host:
    """The host callback table handed to one plugin instance on the cffi path,
    and the Python side of its callbacks. Kept alive until shutdown."""

    def __init__(self, logger: logging.Logger, debug: bool = False):
        self.log = _log_sink(logger)
        self.debug = debug
        self.inside: dict[int, int] = {}  # debug: thread id -> calls into the plugin it is running
        self.errors = threading.local()
        self.frames: dict[int, _Frame] = {}
        self.keys = itertools.count(1)
        self.log_cb = ffi.callback("void(*)(const ferrule_host *, int32_t, const char *, size_t)", self._log)
        self.error_cb = ffi.callback("void(*)(const ferrule_host *, const char *, size_t)", self._set_error)
        self.invoke_cb = ffi.callback(
            "int32_t(*)(const ferrule_host *, const ferrule_fn *, const ferrule_value *, ferrule_value *)", self._invoke
        )
        table = ffi.new("ferrule_host *")
        table.struct_size = ffi.sizeof("ferrule_host")
        table.abi_major = abi.ABI_MAJOR
        table.abi_minor = abi.ABI_MINOR
        table.log = self.log_cb
        table.set_error = self.error_cb
        table.alloc = _alloc_cb
        table.free = _free_cb
        table.invoke = self.invoke_cb
        self.table = table

    def _log(self, _host: Any, level: int, msg: Any, length: int) -> None:
        try:
            self.log(level, ffi.unpack(msg, length).decode("utf-8", "replace") if msg != ffi.NULL else "")
        except Exception:  # a broken handler must not unwind into plugin code
            pass

    def _set_error(self, _host: Any, msg: Any, length: int) -> None:
        if self.debug:
            self.check_thread("set_error")
        if msg == ffi.NULL:
            self.errors.message = ""
        else:
            self.errors.message = ffi.unpack(msg, min(length, _MAX_TEXT)).decode("utf-8", "replace")

    def _invoke(self, _host: Any, handle: Any, args: Any, ret: Any) -> int:
        if self.debug:
            self.check_thread("invoke")
        frame = self.frames.get(int(ffi.cast("uintptr_t", handle)))
        if frame is None or frame.error is not None or ret == ffi.NULL:
            return abi.ERROR
        try:
            if args == ffi.NULL and frame.sig.params:
                raise ValueError(f"the plugin passed no arguments to a host function that takes {len(frame.sig.params)}")
            try:
                argv = [_value_of(p.type, args[i]) for i, p in enumerate(frame.sig.params)]
            except UnicodeDecodeError as exc:
                raise frame.owner._host_text_error(frame.index, exc) from None
            result = frame.callable(*argv)
            if frame.sig.result is not None:
                result = frame.owner._check_host_result(frame.index, result)
                kind = frame.sig.result.name
                if kind in ("str", "bytes"):
                    if not _give_bytes(ret, str.encode(result, "utf-8") if kind == "str" else bytes(result)):
                        raise MemoryError
                else:
                    _store_scalar(ret, frame.sig.result, result)
            return abi.OK
        except BaseException as exc:  # re-raised by the call that passed the function
            frame.error = exc
            return abi.ERROR

    def set_services(self, query: int, call: int, release: int) -> None:
        table = self.table
        table.query = ffi.cast(ffi.typeof(table.query), query)
        table.call = ffi.cast(ffi.typeof(table.call), call)
        table.release = ffi.cast(ffi.typeof(table.release), release)

    def enter(self) -> None:
        ident = threading.get_ident()
        self.inside[ident] = self.inside.get(ident, 0) + 1

    def leave(self) -> None:
        ident = threading.get_ident()
        left = self.inside[ident] - 1
        if left:
            self.inside[ident] = left
        else:
            del self.inside[ident]

    def check_thread(self, what: str) -> None:
        """Debug mode: a per-call callback must come from a thread that runs
        a call into this plugin (the error or handle belongs to that call)."""
        if threading.get_ident() not in self.inside:
            import warnings

            from ._errors import ThreadContractWarning

            warnings.warn(
                ThreadContractWarning(
                    f"{self.plugin_id!r} called host->{what} from thread {threading.current_thread().name!r}, "
                    "which is not running a call into the plugin: per-call callbacks belong to the calling thread"
                ),
                stacklevel=1,
            )

    plugin_id = "?"

    def open_frame(self, frame: _Frame) -> Any:
        frame.key = next(self.keys)
        self.frames[frame.key] = frame
        return ffi.cast("ferrule_fn *", frame.key)

    def clear_error(self) -> None:
        self.errors.message = None

    def take_error(self) -> str:
        message: str = getattr(self.errors, "message", "") or "(the plugin gave no error message)"
        self.errors.message = None
        return message


def _format_matches(fmt: str, itemsize: int, elem: AbiType) -> bool:
    """Does a buffer's struct-module format describe one element of elem?
    The same rule as format_matches() in _speedups.c."""
    if fmt[:1] in ("@", "=", "<", ">", "!"):
        big = fmt[0] in (">", "!")
        if itemsize > 1 and (big if sys.byteorder == "little" else fmt[0] == "<"):
            return False
        fmt = fmt[1:]
    if len(fmt) != 1 or itemsize != ELEMENT_SIZE[elem.name]:
        return False
    if elem.name == "f32":
        return fmt == "f"
    if elem.name == "f64":
        return fmt == "d"
    return fmt in ("bhilqn" if elem.signed else "BHILQN")


def _text(ptr: Any, what: str, required: bool = True) -> str:
    """A NUL-terminated UTF-8 string of a descriptor. At most _MAX_TEXT bytes
    are read, so that a missing NUL cannot run on through memory; a longer
    string is cut there, before the character the limit falls in."""
    if ptr == ffi.NULL:
        if required:
            raise MetadataError(f"{what} is NULL, expected a UTF-8 string: fill it in the descriptor")
        return ""
    raw = ffi.string(ptr, _MAX_TEXT)
    try:
        return str(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        if len(raw) == _MAX_TEXT and exc.reason == "unexpected end of data":
            return str(raw[:exc.start].decode("utf-8"))  # the cut, not the plugin, split a character
        shown = repr(raw)
        if len(raw) > 120:  # the bytes around the error, not all 64 KiB
            low = max(exc.start - 40, 0)
            shown = f"{raw[low:low + 80]!r} (bytes {low} to {min(low + 80, len(raw))} of {len(raw)})"
        raise MetadataError(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start}): {shown}") from None


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
    return _check_descriptor(desc, lib.path)


def _check_descriptor(desc: Any, where: str) -> Any:
    """Check a descriptor's magic, ABI major and size; ``where`` (the
    library's path) starts the messages. Apart from the entry point so that
    tests can feed descriptors built in memory."""
    if desc.magic != abi.MAGIC:
        raise BadMagicError(
            f"{where}: descriptor starts with {desc.magic:#018x}, expected the magic "
            f"{abi.MAGIC:#018x}: the entry point returns something that is not a ferrule descriptor"
        )
    found = (desc.abi_major, desc.abi_minor)
    host = (abi.ABI_MAJOR, abi.ABI_MINOR)
    if desc.abi_major != abi.ABI_MAJOR:
        raise AbiVersionError(
            f"{where} was built for ferrule ABI {found[0]}.{found[1]}, this host speaks ABI "
            f"{host[0]}.{host[1]}: rebuild the plugin against ABI {host[0]}",
            found,
            host,
        )
    if desc.struct_size < _PLUGIN_V1_SIZE:
        raise DescriptorTooSmallError(
            f"{where}: descriptor struct_size is {desc.struct_size} bytes, ABI {host[0]}.0 needs at "
            f"least {_PLUGIN_V1_SIZE}: rebuild the plugin with the current SDK"
        )
    return desc


if TYPE_CHECKING:
    _FunctionBase = object
elif _speedups is None:
    _FunctionBase = object
else:
    _FunctionBase = _speedups.Function


class PluginFunction(_FunctionBase):
    """A typed callable for one exported function of a loaded plugin."""

    __module__ = "ferrule"

    def __init__(self, plugin: Plugin, info: _FunctionInfo):
        self._plugin = plugin
        self._call = info.call
        self.__name__ = self.__qualname__ = self.name = info.name
        self.signature = signature = info.signature
        self.thread_safe = bool(info.flags & abi.FN_THREAD_SAFE)
        self.quick = bool(info.flags & abi.FN_QUICK)
        self.doc = info.doc
        self.__doc__ = _doc_text(info)
        self._names = [p.name for p in signature.params]
        self._types = [p.type for p in signature.params]

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        return _python_signature(self.signature)

    def _attach(self, host: Any, gate: Any, state: Any) -> None:
        """Route calls through the C accelerator (once the state exists)."""
        specs = tuple(
            (
                t.code,
                t.elem.code if t.elem else -1,
                tuple(p.type.code for p in t.fn.params) if t.fn else (),
                t.fn.result.code if t.fn and t.fn.result else -1,
            )
            for t in self._types
        )
        flags = (abi.FN_THREAD_SAFE if self.thread_safe else 0) | (abi.FN_QUICK if self.quick else 0)
        result = self.signature.result.code if self.signature.result else -1
        address = int(ffi.cast("uintptr_t", self._call))
        self._accelerate(address, host, gate, int(ffi.cast("uintptr_t", state)), flags, specs, result)  # type: ignore[attr-defined]

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

    def _call_checked(self, *args: Any, **kwargs: Any) -> Any:
        """The Python call path: bind and check every argument, then call
        through the accelerator (normalised values) or through cffi."""
        values = self._bind(args, kwargs)
        if getattr(self, "accelerated", False):
            return self._call_normalized(*[self._check(i, v) for i, v in enumerate(values)])  # type: ignore[attr-defined]
        count = len(values)
        types = self._types
        checked = [
            v if t.bits and type(v) is int and t.min <= v <= t.max else self._check(i, v)  # ints inline
            for i, (v, t) in enumerate(zip(values, types))
        ]
        slots = ffi.new(_VALUES, count + 1)  # the arguments, then the result
        keep: list[Any] = []  # encoded text and buffers must outlive the call
        frames: list[_Frame] = []
        plugin = self._plugin
        host = plugin._host
        try:
            for i, (value, abi_type) in enumerate(zip(checked, types)):
                self._store(slots[i], abi_type, value, keep, frames, host, i)
            ret = slots + count
            # Results are read and released before leaving the gate (shutdown
            # must not run in between) and the serial lock (release is plugin code).
            plugin._life.enter()
            if host.debug:
                host.enter()
            try:
                host.clear_error()
                if self.thread_safe:
                    status = self._call(plugin._table, plugin._state, slots, ret)
                    _fork_guard()
                    return self._finish(status, ret, frames)
                with plugin._serial:
                    status = self._call(plugin._table, plugin._state, slots, ret)
                    _fork_guard()
                    return self._finish(status, ret, frames)
            finally:
                if host.debug:
                    host.leave()
                plugin._life.leave()
        finally:
            for frame in frames:
                host.frames.pop(frame.key, None)

    __call__ = _call_checked

    def _store(self, slot: Any, abi_type: AbiType, value: Any, keep: list[Any], frames: list[_Frame], host: _Host, i: int) -> None:
        kind = abi_type.slot
        if kind in ("i64", "u64", "f32", "f64"):
            _store_scalar(slot, abi_type, value)
        elif kind == "func":
            assert abi_type.fn is not None
            frame = _Frame(value, abi_type.fn, self, i)
            frames.append(frame)
            slot.func = host.open_frame(frame)
        elif kind == "buf":
            view = value  # a memoryview, from _check
            cdata = ffi.from_buffer("char[]", view, require_writable=abi_type.writable)
            slot.buf.ptr = cdata
            slot.buf.len = view.nbytes // view.itemsize
            keep.append(cdata)
        else:
            data = str.encode(value, "utf-8") if abi_type.name == "str" else value
            cdata = ffi.from_buffer(data)  # bytes keep their trailing NUL
            slot.bytes.ptr = cdata
            slot.bytes.len = len(cdata)
            keep.append((data, cdata))

    def _finish(self, status: int, ret: Any, frames: list[_Frame]) -> Any:
        errors = [f.error for f in frames if f.error is not None]
        if errors:  # a host function raised: that is the cause
            if status == abi.OK:
                self._release(ret)
            raise errors[0]
        if status != abi.OK:
            self._raise_status(status, self._plugin._host.take_error())
        return self._decode(ret)

    def _raise_status(self, status: int, message: str) -> None:
        where = f"plugin {self._plugin.id!r} function {self.name!r}"
        if status == abi.PANIC:
            raise PluginPanicError(f"{where} panicked: {message}", message)
        raise PluginCallError(f"{where} failed: {message}", message)

    def _check(self, i: int, value: Any) -> Any:
        """Check one argument and return it in the form both call paths take
        (an exact int, float, bool, str, a bytes-like, a memoryview, a
        callable); raise TypeError or ValueError naming the parameter."""
        return self._check_value(self._types[i], value, f"{self.name}() argument {self._names[i]!r}")

    def _host_text_error(self, i: int, exc: UnicodeDecodeError) -> PluginCallError:
        """The plugin passed a host function text that is not UTF-8."""
        return PluginCallError(
            f"plugin {self._plugin.id!r} function {self.name!r} passed text that is not valid UTF-8 ({exc.reason} at "
            f"byte {exc.start}) to the host function given as argument {self._names[i]!r}; expected str"
        )

    def _check_host_result(self, i: int, value: Any) -> Any:
        """Check what a host function passed as argument i returned."""
        fn = self._types[i].fn
        assert fn is not None and fn.result is not None
        return self._check_value(fn.result, value, f"the result of the host function passed as {self.name}() argument {self._names[i]!r}")

    @staticmethod
    def _check_value(abi_type: AbiType, value: Any, what: str) -> Any:
        kind = abi_type.name

        def wrong(expected: str) -> TypeError:
            return TypeError(f"{what} must be {expected} ({kind}), got {type(value).__name__}")

        if abi_type.bits:
            if isinstance(value, bool):
                raise wrong("int")
            try:
                number = operator.index(value)
            except TypeError:
                raise wrong("int") from None
            if not abi_type.min <= number <= abi_type.max:
                shown = number if number.bit_length() <= 128 else f"a {number.bit_length()}-bit integer"
                raise ValueError(f"{what}: {shown} is out of range for {kind} ({abi_type.min} to {abi_type.max})")
            return int(number)
        if kind == "bool":
            if not isinstance(value, bool):
                raise wrong("bool")
            return value
        if kind in ("f32", "f64"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise wrong("float")
            try:
                real = float(value)
            except OverflowError:
                raise ValueError(f"{what}: integer too large for {kind}") from None
            if kind == "f32" and math.isfinite(real) and abs(real) > _F32_MAX:
                raise ValueError(f"{what}: {real} is out of range for f32")
            return real
        if kind == "str":
            if not isinstance(value, str):
                raise wrong("str")
            try:
                str.encode(value, "utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"{what}: cannot encode as UTF-8: {exc.reason}") from None
            return str.__str__(value)  # an exact str, even from a subclass
        if kind == "bytes":
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise wrong("bytes-like object")
            if isinstance(value, memoryview) and not value.c_contiguous:
                raise ValueError(f"{what}: memoryview is not contiguous")
            return value if type(value) is bytes else memoryview(value)
        if abi_type.fn is not None:
            if not callable(value):
                raise TypeError(f"{what} must be callable ({kind}), got {type(value).__name__}")
            return value
        return _check_buffer(abi_type, value, what)

    def _null_result(self, length: int) -> Any:
        raise PluginCallError(f"plugin {self._plugin.id!r} function {self.name!r} returned NULL with length {length}")

    def _decode_text(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PluginCallError(
                f"plugin {self._plugin.id!r} function {self.name!r} returned text that is not valid "
                f"UTF-8 ({exc.reason} at byte {exc.start}); expected str"
            ) from None

    def _release(self, ret: Any) -> None:
        result = self.signature.result
        if result is not None and result.slot == "bytes" and ret.bytes.release != ffi.NULL:
            ret.bytes.release(ffi.cast("void *", ret.bytes.ptr), ret.bytes.len)

    def _decode(self, ret: Any) -> Any:
        result = self.signature.result
        if result is None:
            return None
        if result.bits:
            return _int_of(result, ret.u64)
        if result.name == "bool":
            return ret.u64 != 0
        if result.name == "f32":
            return ret.f32
        if result.name == "f64":
            return ret.f64
        ptr, length = ret.bytes.ptr, ret.bytes.len
        try:
            if ptr == ffi.NULL and length:
                self._null_result(length)
            view = ffi.buffer(ffi.cast("const char *", ptr), length) if length else b""
            if result.name == "bytes":
                return bytes(view)  # the one copy
            try:
                return str(view, "utf-8")  # decoding is the one copy
            except UnicodeDecodeError:
                return self._decode_text(bytes(view))
        finally:
            self._release(ret)


def _check_buffer(abi_type: AbiType, value: Any, what: str) -> memoryview:
    elem = abi_type.elem
    assert elem is not None
    kind = abi_type.name
    try:
        view = memoryview(value)
    except TypeError:
        raise TypeError(
            f"{what} must be a buffer of {elem.name} ({kind}), such as array.array or a numpy array, "
            f"got {type(value).__name__}"
        ) from None
    if abi_type.writable and view.readonly:
        raise TypeError(
            f"{what} is a read-only {type(value).__name__}, {kind} needs a writable buffer: "
            "pass a bytearray, an array.array or a writable numpy array"
        )
    if not view.c_contiguous:
        raise ValueError(
            f"{what} is not C-contiguous (shape {view.shape}, strides {view.strides}), {kind} needs "
            "contiguous memory: pass numpy.ascontiguousarray(x) or a copy"
        )
    if not _format_matches(view.format, view.itemsize, elem):
        raise TypeError(
            f"{what} has elements of format {view.format!r} ({view.itemsize} byte{'s' if view.itemsize != 1 else ''} each), {kind} needs "
            f"{elem.name}: convert it, e.g. numpy's x.astype(numpy.{_NUMPY_NAMES[elem.name]})"
        )
    if view.nbytes and int(ffi.cast("uintptr_t", ffi.from_buffer(view))) % view.itemsize:
        raise ValueError(
            f"{what} is not aligned for {elem.name} (its address is not a multiple of {view.itemsize}), "
            f"{kind} needs aligned memory: pass a copy, e.g. numpy.array(x) or bytes(x)"
        )
    return view


_NUMPY_NAMES = {"i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64", "u8": "uint8", "u16": "uint16",
                "u32": "uint32", "u64": "uint64", "f32": "float32", "f64": "float64"}


if _speedups is not None:
    _speedups.enable_vectorcall(PluginFunction)


_MISSING: Any = object()
_VALUES = ffi.typeof("ferrule_value[]")


class _FunctionInfo:
    """One function of a descriptor, read and checked once per library."""

    __slots__ = ("name", "signature", "doc", "flags", "call")

    def __init__(self, name: str, signature: Signature, doc: str, flags: int, call: Any):
        self.name = name
        self.signature = signature
        self.doc = doc
        self.flags = flags
        self.call = call


class _Descriptor:
    """What a plugin's static descriptor says, read and checked once per
    library (it never changes while the library is mapped, which is always),
    and the Plugin subclass that documents its functions."""

    def __init__(self, library: Library | None, raw: Any = None, where: str = ""):
        """Read library's descriptor. With library None, check raw instead:
        a ``ferrule_plugin *`` built elsewhere (the fuzz tests), named
        ``where`` in messages; whatever it points to must stay alive."""
        if library is not None:
            raw, where = _read_descriptor(library), library.path
        else:
            raw = _check_descriptor(raw, where)
        self.abi_version: tuple[int, int] = (raw.abi_major, raw.abi_minor)
        self.id = _text(raw.id, "plugin id")
        if not _ID_RE.fullmatch(self.id):
            raise MetadataError(
                f"{where}: plugin id {self.id!r} is not reverse-DNS (like 'org.example.greeter'): fix the descriptor"
            )
        self.name = _text(raw.name, f"plugin {self.id!r} name")
        self.version = _text(raw.version, f"plugin {self.id!r} version")
        self.description = _text(raw.description, f"plugin {self.id!r} description", required=False)
        self.license = _text(raw.license, f"plugin {self.id!r} license", required=False)
        self.functions = self._read_functions(raw)
        self.offers = self._read_offers(raw)
        self.init = raw.init
        self.shutdown = raw.shutdown
        # Each plugin gets its own subclass: its functions are attributes
        # there, so help(plugin) documents them; each instance makes its own
        # callables on first use (see _FunctionSlot).
        namespace: dict[str, Any] = {
            n: _FunctionSlot(info) for n, info in self.functions.items() if not n.startswith("_") and n not in _RESERVED
        }
        namespace["__doc__"] = f"{self.name} {self.version} ({self.id}): {self.description}"
        namespace["__module__"] = "ferrule"
        namespace["__qualname__"] = f"Plugin[{self.id}]"
        namespace["__slots__"] = ()
        namespace["_desc"] = self
        self.cls: type[Plugin] = type(namespace["__qualname__"], (Plugin,), namespace)

    def _read_functions(self, desc: Any) -> dict[str, _FunctionInfo]:
        count = desc.function_count
        if count > _MAX_FUNCTIONS:
            raise MetadataError(f"plugin {self.id!r} declares {count} functions, at most {_MAX_FUNCTIONS} allowed")
        if count and desc.functions == ffi.NULL:
            raise DescriptorError(f"plugin {self.id!r} declares {count} functions but its function table is NULL")
        functions: dict[str, _FunctionInfo] = {}
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
            functions[name] = _FunctionInfo(name, signature, doc, raw.flags, raw.call)
        return functions


    def _read_offers(self, desc: Any) -> tuple[Offer, ...]:
        if desc.struct_size < _PLUGIN_V12_SIZE or desc.interface_count == 0:
            return ()
        count = desc.interface_count
        if count > _MAX_FUNCTIONS:
            raise MetadataError(f"plugin {self.id!r} declares {count} interface implementations, at most {_MAX_FUNCTIONS} allowed")
        if desc.interfaces == ffi.NULL:
            raise DescriptorError(f"plugin {self.id!r} declares {count} interface implementations but its table is NULL")
        offers: list[Offer] = []
        seen: set[tuple[str, int, str]] = set()
        for i in range(count):
            raw = desc.interfaces[i]
            where = f"plugin {self.id!r} interface implementation #{i}"
            if raw == ffi.NULL:
                raise DescriptorError(f"{where} is NULL, expected a ferrule_interface")
            if raw.struct_size < _INTERFACE_SIZE:
                raise DescriptorTooSmallError(
                    f"{where}: struct_size is {raw.struct_size} bytes, ABI {abi.ABI_MAJOR}.2 needs at least "
                    f"{_INTERFACE_SIZE}: rebuild the plugin with the current SDK"
                )
            ident = _text(raw.id, f"{where} id")
            if not _ID_RE.fullmatch(ident):
                raise MetadataError(f"{where}: interface id {ident!r} is not reverse-DNS")
            name = _text(raw.name, f"{where} name")
            if not name:
                raise MetadataError(f"{where} ({ident}) has an empty name")
            key = (ident, raw.revision, name)
            if key in seen:
                raise MetadataError(f"plugin {self.id!r} offers two implementations of {ident}/{raw.revision} named {name!r}")
            seen.add(key)
            where = f"plugin {self.id!r} implementation {name!r} of {ident}/{raw.revision}"
            if raw.method_count > 256:
                raise MetadataError(f"{where} has {raw.method_count} methods, at most 256 allowed")
            if raw.method_count and raw.methods == ffi.NULL:
                raise DescriptorError(f"{where} has {raw.method_count} methods but a NULL method table")
            for m in range(raw.method_count):
                if raw.methods[m] == ffi.NULL:
                    raise DescriptorError(f"{where}: method #{m} is NULL")
            if raw.create == ffi.NULL or raw.destroy == ffi.NULL:
                raise DescriptorError(f"{where} has a NULL create or destroy")
            layout = _text(raw.layout, f"{where} layout", required=False)
            doc = _text(raw.doc, f"{where} doc", required=False)
            offers.append(Offer(ident, raw.revision, name, doc, raw.flags, raw.fingerprint, layout, raw.method_count,
                                raw.methods, raw.create, raw.destroy))
        return tuple(offers)


# Keyed on the dlopen handle: one entry per mapped library, never evicted
# because ferrule never unmaps a library.
_descriptors: dict[int, _Descriptor] = {}
_descriptors_lock = threading.Lock()


def _describe(library: Library) -> _Descriptor:
    key = int(ffi.cast("uintptr_t", library._handle))
    desc = _descriptors.get(key)
    if desc is None:
        with _descriptors_lock:
            desc = _descriptors.get(key)
            if desc is None:
                desc = _descriptors[key] = _Descriptor(library)
    return desc


class _FunctionSlot:
    """A plugin function as an attribute of the plugin's class: documents it,
    and makes the instance's PluginFunction when first looked up there. Not a
    data descriptor, so afterwards the instance's own attribute wins."""

    def __init__(self, info: _FunctionInfo):
        self.info = info
        self.__name__ = info.name
        self.__doc__ = _doc_text(info)

    @property
    def __signature__(self) -> inspect.Signature:
        return _python_signature(self.info.signature)

    def __get__(self, instance: Plugin | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance._function(self.info.name)


def _doc_text(info: _FunctionInfo) -> str:
    head = f"{info.name}{info.signature}"
    return f"{head}\n\n{info.doc}" if info.doc else head


def _python_signature(sig: Signature) -> inspect.Signature:
    return inspect.Signature(
        [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=p.type.python) for p in sig.params],
        return_annotation=sig.result.python if sig.result else None,
    )


class Plugin:
    """A loaded, initialised plugin instance.

    Functions are attributes (``plugin.add(2, 3)``) and are listed in
    ``plugin.functions``. Use as a context manager or call ``close()``; the
    plugin's shutdown runs exactly once. The library stays mapped afterwards.
    """

    __module__ = "ferrule"
    _desc: _Descriptor  # set on each plugin's own subclass

    def __init__(self, library: Library, *, config: str | Mapping[str, Any] | None = None,
                 _services: Services | None = None):
        desc = _describe(library)
        self.__class__ = desc.cls
        self.library = library
        self.path = library.path
        self.abi_version = desc.abi_version
        self.id = desc.id
        self.name = desc.name
        self.version = desc.version
        self.description = desc.description
        self.license = desc.license
        self._made: dict[str, PluginFunction] = {}
        self._host: Any
        self._life: Any
        services = _services if _services is not None else Services(debug=False)
        self._services = services
        self._debug = services.debug
        self._accelerated = _ACCELERATE and _speedups is not None and not self._debug
        self._create_lock = threading.Lock()  # create and destroy run one at a time
        self._count_lock = threading.Lock()
        self._instances = 0
        self._shutdown_pending = False
        if self._accelerated:
            assert _speedups is not None
            self._host = _speedups.Host(_log_sink(logging.getLogger(f"ferrule.plugin.{self.id}")))
            self._table = ffi.cast("ferrule_host *", self._host.address)
        else:
            self._host = _Host(logging.getLogger(f"ferrule.plugin.{self.id}"), debug=self._debug)
            self._host.plugin_id = self.id
            self._table = self._host.table
        self._serial: Any
        self._life, self._serial = _gate(self._accelerated, f"plugin {self.id!r} is closed: load it again to call it")
        self._host.set_services(*services.addresses())
        table_address = int(ffi.cast("uintptr_t", self._table))
        services.attach(self, table_address)
        self._state = self._init(desc.init, config)
        self._finalizer = weakref.finalize(self, _shutdown, self._life, desc.shutdown, self._host, self._table, self._state,
                                           services, table_address)

    def _calling(self) -> Any:
        """Debug mode: mark this thread as running a call into the plugin."""
        return _Inside(self._host) if self._debug else contextlib.nullcontext()

    def _instance_made(self) -> None:
        with self._count_lock:
            self._instances += 1

    def _instance_gone(self) -> None:
        with self._count_lock:
            self._instances -= 1
            run = self._instances == 0 and self._shutdown_pending
        if run:
            self._finalizer()

    # -- interfaces

    @property
    def interfaces(self) -> tuple[Offer, ...]:
        """Every implementation the plugin offers (id, revision, name, doc,
        fingerprint), as its descriptor lists them."""
        return self._desc.offers

    def implementations(self, interface: type[P]) -> list[Implementation[P]]:
        """The plugin's implementations of an interface revision, in
        descriptor order; empty when it offers none. ``interface`` is a
        generated proxy class (typed instances) or an @idl.interface class.

        Raises InterfaceMismatchError when an implementation was generated
        from another layout of the same id and revision."""
        iface = _spec(interface)
        proxy = proxy_class(interface)
        found = []
        for offer in self._desc.offers:
            if (offer.id, offer.revision) == iface.key:
                check_offer(self.id, offer, iface)
                found.append(Implementation(self, offer, proxy))
        return found  # type: ignore[return-value]

    def implementation(self, interface: type[P], name: str | None = None) -> Implementation[P] | None:
        """The implementation called ``name`` (or the first one), or None."""
        for impl in self.implementations(interface):
            if name is None or impl.name == name:
                return impl
        return None

    def create(self, interface: type[P], name: str | None = None) -> P:
        """Make an instance of the implementation called ``name`` (or the
        first). Raises LookupError when the plugin offers none."""
        impl = self.implementation(interface, name)
        if impl is None:
            iface = _spec(interface)
            offered = [o.name for o in self._desc.offers if (o.id, o.revision) == iface.key]
            which = f" named {name!r}" if name is not None else ""
            raise LookupError(
                f"plugin {self.id!r} offers no implementation of {iface.id}/{iface.revision}{which}"
                + (f" (it offers {', '.join(map(repr, offered))})" if offered else "")
            )
        return impl.create()

    def _function(self, name: str) -> PluginFunction:
        fn = self._made.get(name)
        if fn is None:
            fn = PluginFunction(self, self._desc.functions[name])
            if self._accelerated:
                fn._attach(self._host, self._life, self._state)
            fn = self._made.setdefault(name, fn)  # another thread may have won
            if name in type(self).__dict__ and name not in self.__dict__:
                self.__dict__[name] = fn  # later lookups skip the slot
        return fn

    @property
    def functions(self) -> Mapping[str, PluginFunction]:
        """Every exported function by name, including names that are not
        attributes (a leading underscore, or the name of a Plugin attribute)."""
        return MappingProxyType({name: self._function(name) for name in self._desc.functions})

    def _init(self, init: Any, config: str | Mapping[str, Any] | None) -> Any:
        if init == ffi.NULL:
            return ffi.NULL
        if config is None:
            data = b""
        elif isinstance(config, str):
            data = str.encode(config, "utf-8")
        elif isinstance(config, Mapping):
            data = json.dumps(dict(config)).encode()
        else:
            raise TypeError(f"config must be str, a mapping (sent as JSON) or None, got {type(config).__name__}")
        state = ffi.new("void **")
        self._host.clear_error()
        with self._calling():
            status = init(self._table, data, len(data), state)
        if status != abi.OK:
            message = self._host.take_error()
            verb = "panicked in init" if status == abi.PANIC else "failed to initialise"
            raise PluginInitError(f"plugin {self.id!r} {verb}: {message}")
        return state[0]

    @property
    def closed(self) -> bool:
        return bool(self._life.closed)

    def close(self) -> None:
        """Wait for calls in flight, then run the plugin's shutdown. Idempotent.

        Instances the plugin made stay usable: shutdown then runs when the
        last of them is closed or collected."""
        if self._life.close(True):
            with self._count_lock:
                self._shutdown_pending = self._instances > 0
            if not self._shutdown_pending:
                self._finalizer()

    def __enter__(self) -> Plugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> PluginFunction:
        desc = type(self).__dict__.get("_desc")
        if desc is not None and name in desc.functions and "_made" in self.__dict__:
            return self._function(name)
        raise AttributeError(f"plugin {desc.id if desc else '?'!r} has no function {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._desc.functions))

    def __iter__(self) -> Iterator[PluginFunction]:
        return iter(self.functions.values())

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        lines = [f"<ferrule.Plugin {self.id} {self.name!r} {self.version}{state}, ABI {self.abi_version[0]}.{self.abi_version[1]}"]
        for info in self._desc.functions.values():
            doc = info.doc.splitlines()[0] if info.doc else ""
            lines.append(f"    {info.name}{info.signature}" + (f"  # {doc}" if doc else ""))
        return "\n".join(lines) + ">"


# Names a function cannot take as a plugin attribute (it stays in .functions).
_RESERVED = frozenset(dir(Plugin)) | {"library", "path", "abi_version", "id", "name", "version", "description", "license"}


def _gate(accelerated: bool, closed_message: str) -> tuple[Any, threading.Lock | None]:
    """What guards one plugin or instance: the count of calls in flight and
    the lock that serialises calls to its non-thread-safe functions (inside
    the C Gate on the accelerated path)."""
    if accelerated:
        assert _speedups is not None
        return _speedups.Gate(PluginClosedError, closed_message), None
    return _Lifecycle(closed_message), threading.Lock()


class _Lifecycle:
    """Counts calls in flight so that shutdown never runs under one."""

    def __init__(self, closed_message: str) -> None:
        self.closed_message = closed_message
        self.lock = threading.Lock()
        self.idle = threading.Event()  # set once closed with no call in flight
        self.active = 0
        self.closed = False

    def enter(self) -> None:
        with self.lock:
            if self.closed:
                raise PluginClosedError(self.closed_message)
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


def _shutdown(life: Any, shutdown: Callable[[Any, Any], None], host: Any, table: Any, state: Any,
              services: Services, table_address: int) -> None:
    # Runs from close(), the last instance's destroy, the garbage collector
    # or interpreter exit. At exit a daemon thread may still be inside a
    # call: then shutdown is skipped rather than run under it. Holding host
    # keeps the callbacks alive.
    if not life.close(False):
        return
    left = services.release_all(table_address)
    if left:
        logging.getLogger("ferrule").warning("a plugin shut down holding %d objects from host->query; released them", left)
    if shutdown != ffi.NULL:
        with _Inside(host) if getattr(host, "debug", False) else contextlib.nullcontext():
            shutdown(table, state)


class _Inside:
    """Debug mode: the thread runs a call into the plugin (init, create...)."""

    def __init__(self, host: Any):
        self.host = host

    def __enter__(self) -> None:
        self.host.enter()

    def __exit__(self, *exc: object) -> None:
        self.host.leave()
