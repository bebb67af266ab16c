"""The cffi path's host table (see contract.HostTable): the ``ferrule_host``
struct one plugin instance gets, and the Python side of its callbacks. The
C accelerator has its own with the same behaviour (host_table.c)."""

from __future__ import annotations

import itertools
import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any, Protocol

from .._abi import cdef as abi
from .._abi.ffi import ffi
from .._abi.signature import Signature
from .._errors import ThreadContractWarning
from .marshal import ALLOC, FREE, give_bytes, store_scalar, value_of

__all__ = ["Frame", "HostTable", "level_cache", "log_sink", "running"]

MAX_MESSAGE = 1 << 16  # bytes kept of a set_error message
NO_MESSAGE = "(the plugin gave no error message)"  # host_table.c says the same
_LOG_LEVELS = {
    abi.LOG_TRACE: 5,
    abi.LOG_DEBUG: logging.DEBUG,
    abi.LOG_INFO: logging.INFO,
    abi.LOG_WARN: logging.WARNING,
    abi.LOG_ERROR: logging.ERROR,
}


def log_sink(logger: logging.Logger) -> Callable[[int, str], None]:
    """What host->log calls: a FERRULE_LOG_* level (clamped) and the text."""

    def log(level: int, text: str) -> None:
        logger.log(_LOG_LEVELS[min(max(level, abi.LOG_TRACE), abi.LOG_ERROR)], "%s", text)

    return log


_LEVELS_IN_ORDER = tuple(_LOG_LEVELS[lv] for lv in range(abi.LOG_TRACE, abi.LOG_ERROR + 1))


def level_cache(logger: logging.Logger) -> dict[str, Any]:
    """The accelerated host table's view of ``logger``: its isEnabledFor
    cache (logging clears it on every setLevel and disable) and the logging
    level of each FERRULE_LOG_*, so that C drops a message logging already
    knows it drops without calling Python. Empty if this logging has none."""
    cache = getattr(logger, "_cache", None)
    if type(cache) is not dict:
        return {}
    return {"level_cache": cache, "levels": _LEVELS_IN_ORDER}


class FrameOwner(Protocol):
    """The function whose call received a host function: it checks what the
    host function returns and names the call in messages."""

    def _check_host_result(self, index: int, value: Any) -> Any: ...

    def _host_text_error(self, index: int, exc: UnicodeDecodeError) -> Exception: ...


class Frame:
    """A host function passed to one call."""

    __slots__ = ("callable", "sig", "owner", "index", "error", "key")

    def __init__(self, function: Callable[..., Any], sig: Signature, owner: FrameOwner, index: int):
        self.callable = function
        self.sig = sig
        self.owner = owner
        self.index = index
        self.error: BaseException | None = None
        self.key = 0  # its handle, once registered with the host table


class HostTable:
    """Kept alive until the plugin's shutdown has returned."""

    def __init__(self, plugin_id: str, logger: logging.Logger, debug: bool = False):
        self.plugin_id = plugin_id
        self.log = log_sink(logger)
        self.debug = debug
        self.inside: dict[int, int] = {}  # debug: thread id -> calls into the plugin it is running
        self.errors = threading.local()
        self.frames: dict[int, Frame] = {}
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
        table.alloc = ALLOC
        table.free = FREE
        table.invoke = self.invoke_cb
        self.table = table
        self.address = int(ffi.cast("uintptr_t", table))

    # -- callbacks: each runs on a plugin's thread; none may raise

    def _log(self, _host: Any, level: int, msg: Any, length: int) -> None:
        saved = self.stash_error()  # a handler may call plugins: the pending message survives them
        try:
            self.log(level, ffi.unpack(msg, length).decode("utf-8", "replace") if msg != ffi.NULL else "")
        except Exception:  # a broken handler must not unwind into plugin code
            pass
        finally:
            self.restore_error(saved)

    def _set_error(self, _host: Any, msg: Any, length: int) -> None:
        if self.debug:
            self.check_thread("set_error")
        if msg == ffi.NULL:
            self.errors.message = ""
        else:
            self.errors.message = ffi.unpack(msg, min(length, MAX_MESSAGE)).decode("utf-8", "replace")

    def _invoke(self, _host: Any, handle: Any, args: Any, ret: Any) -> int:
        if self.debug:
            self.check_thread("invoke")
        frame = self.frames.get(int(ffi.cast("uintptr_t", handle)))
        if frame is None or frame.error is not None or ret == ffi.NULL:
            return abi.ERROR
        saved = self.stash_error()  # the plugin's pending message survives what the host function calls
        try:
            if args == ffi.NULL and frame.sig.params:
                raise ValueError(f"the plugin passed no arguments to a host function that takes {len(frame.sig.params)}")
            try:
                argv = [value_of(p.type, args[i]) for i, p in enumerate(frame.sig.params)]
            except UnicodeDecodeError as exc:
                raise frame.owner._host_text_error(frame.index, exc) from None
            result = frame.callable(*argv)
            if frame.sig.result is not None:
                result = frame.owner._check_host_result(frame.index, result)
                kind = frame.sig.result.kind
                if kind in ("str", "bytes"):
                    if not give_bytes(ret, str.encode(result, "utf-8") if kind == "str" else bytes(result)):
                        raise MemoryError
                else:
                    store_scalar(ret, frame.sig.result, result)
            return abi.OK
        except BaseException as exc:  # re-raised by the call that passed the function
            frame.error = exc
            return abi.ERROR
        finally:
            self.restore_error(saved)

    # -- the contract

    def set_services(self, query: int, call: int, release: int, lent: dict[int, Any] | None = None) -> None:
        table = self.table  # the cffi path has no C host->call: lent is not used
        table.query = ffi.cast(ffi.typeof(table.query), query)
        table.call = ffi.cast(ffi.typeof(table.call), call)
        table.release = ffi.cast(ffi.typeof(table.release), release)

    def stash_error(self) -> Any:
        saved = getattr(self.errors, "message", None)
        self.errors.message = None
        return saved

    def restore_error(self, saved: Any) -> None:
        self.errors.message = saved

    def clear_error(self) -> None:
        """Forget a message an earlier call left on this thread."""
        self.errors.message = None

    def take_error(self) -> str:
        message: str = getattr(self.errors, "message", "") or NO_MESSAGE
        self.errors.message = None
        return message

    # -- frames and the debug checks

    def open_frame(self, frame: Frame) -> Any:
        frame.key = next(self.keys)
        self.frames[frame.key] = frame
        return ffi.cast("ferrule_fn *", frame.key)

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
            warnings.warn(
                ThreadContractWarning(
                    f"{self.plugin_id!r} called host->{what} from thread {threading.current_thread().name!r}, "
                    "which is not running a call into the plugin: per-call callbacks belong to the calling thread"
                ),
                stacklevel=1,
            )


class running:
    """Around plugin code that Python runs outside a function call (init,
    create, destroy, shutdown, a plugin-to-plugin call) on the plugin's host
    table: a clean error slot that gives back a message pending before it,
    and in debug mode the thread marked as inside the plugin. (A class, not a
    generator: it is on the path of every plugin-to-plugin call.)"""

    __slots__ = ("host", "marked", "saved")

    def __init__(self, host: Any, debug: bool):
        self.host = host
        self.marked = debug and isinstance(host, HostTable)

    def __enter__(self) -> None:
        self.saved = self.host.stash_error()
        if self.marked:
            self.host.enter()

    def __exit__(self, *exc: object) -> None:
        if self.marked:
            self.host.leave()
        self.host.restore_error(self.saved)
