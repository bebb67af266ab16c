"""PluginFunction: a typed callable for one plugin function (or interface
method) on a CallTarget.

Two paths, one behaviour. Accelerated, the call is a vectorcall into
_speedups, which handles the common valid cases in C and hands anything
unusual to ``_call_checked`` here. Otherwise ``_call_checked`` does the
whole call through cffi. Messages are written once, in Python (checks.py,
status.py, and the methods below that the C path calls).
"""

from __future__ import annotations

import functools
import inspect
import os
import struct
from typing import TYPE_CHECKING, Any

from .._abi import cdef as abi
from .._abi.ffi import ffi
from .._abi.signature import Signature
from .._abi.spec import FunctionSpec
from .._errors import PluginCallError
from .accelerator import speedups
from .checks import bind, check_value, not_awaited
from .contract import CallTarget
from .marshal import UNSET, int_of, release_borrowed, release_result, scalar_of, store_borrowed, store_scalar
from .status import status_error
from .table import Frame, HostTable

__all__ = ["PluginFunction", "doc_text", "python_signature"]

_VALUES = ffi.typeof("ferrule_value[]")
_PID = os.getpid()
# A str or bytes result pointer below this is no address (the first page is
# never mapped), most likely an integer written into ret; no result is longer
# than MAX_RESULT_LEN. The C path has the same two numbers (_speedups.c).
NO_ADDRESS = 4096
MAX_RESULT_LEN = 1 << 48


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


_SLOT = ffi.sizeof("ferrule_value")
_SLOT_FORMATS = {"i64": "q", "u64": "Q", "f32": "f", "f64": "d"}


class _ScalarPlan:
    """How the cffi path lays out a function whose parameters and result are
    numbers and bools: each value at its slot's offset, with ``struct``; slot
    arrays kept for reuse (one per call in flight, so nested calls get their own)."""

    def __init__(self, sig: Signature):
        self.count = len(sig.params)
        fmt = "".join(_SLOT_FORMATS[p.type.slot] + "x" * (_SLOT - struct.calcsize(_SLOT_FORMATS[p.type.slot]))
                      for p in sig.params)
        self.args = struct.Struct("=" + fmt + "Q")  # and the result slot's first 8 bytes, zeroed
        self.pool: list[tuple[Any, Any, Any]] = []
        result = sig.result
        self.result: Any = (lambda memory: None) if result is None else self._reader(result)

    @classmethod
    def of(cls, sig: Signature) -> _ScalarPlan | None:
        scalar = ("int", "bool", "float")
        if any(p.type.kind not in scalar for p in sig.params) or (sig.result is not None and
                                                                    sig.result.kind not in scalar):
            return None
        return cls(sig)

    def new(self) -> tuple[Any, Any, Any]:
        """A slot array: the arguments' slots, the result's, and its memory."""
        slots = ffi.new(_VALUES, self.count + 1)
        return slots, slots + self.count, ffi.buffer(slots)

    def _reader(self, t: Any) -> Any:
        at = self.count * _SLOT
        if t.kind == "float":
            unpack = struct.Struct("=" + _SLOT_FORMATS[t.slot]).unpack_from
            return lambda memory: unpack(memory, at)[0]
        raw = struct.Struct("=Q").unpack_from
        if t.kind == "bool":
            return lambda memory: raw(memory, at)[0] != 0
        return lambda memory: int_of(t, raw(memory, at)[0])


def doc_text(name: str, signature: Signature | str, doc: str) -> str:
    """A function's docstring: its signature line, then its doc."""
    head = f"{name}{signature}"
    return f"{head}\n\n{doc}" if doc else head


def python_signature(sig: Signature) -> inspect.Signature:
    """What inspect and help() show for a plugin function."""
    return inspect.Signature(
        [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=p.type.python)
         for p in sig.params],
        return_annotation=sig.result.python if sig.result else None,
    )


if TYPE_CHECKING or speedups is None:
    _FunctionBase = object
else:
    _FunctionBase = speedups.Function


class PluginFunction(_FunctionBase):
    """A typed callable for one exported function of a loaded plugin."""

    __module__ = "ferrule"

    def __init__(self, target: CallTarget, spec: FunctionSpec, call: Any):
        self._target = target
        self._call = call
        self.__name__ = self.__qualname__ = self.name = spec.name
        self.signature = signature = spec.signature
        self.thread_safe = spec.thread_safe
        self.quick = spec.quick
        self.doc = spec.doc
        self.__doc__ = doc_text(spec.name, signature, spec.doc)
        self._names = [p.name for p in signature.params]
        self._types = [p.type for p in signature.params]
        self._display = f"{spec.name}{signature}"
        self._where = f"plugin {target.plugin_id!r} function {spec.name!r}"
        self._flags = spec.flags & (abi.FN_THREAD_SAFE | abi.FN_QUICK)
        self._scalars: _ScalarPlan | None = None
        if target.accelerated:
            self._attach()
        else:
            self._scalars = _ScalarPlan.of(signature)

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        return python_signature(self.signature)

    def _attach(self) -> None:
        """Route calls through the C accelerator."""
        target = self._target
        specs = tuple(
            (
                t.code,
                t.elem.code if t.elem else -1,
                tuple(p.type.code for p in t.fn.params) if t.fn else (),
                t.fn.result.code if t.fn and t.fn.result else -1,
            )
            for t in self._types
        )
        result = self.signature.result.code if self.signature.result else -1
        address = int(ffi.cast("uintptr_t", self._call))
        state = int(ffi.cast("uintptr_t", target.state))
        self._accelerate(address, target.host_table, target.gate, state, self._flags, specs, result)  # type: ignore[attr-defined]

    def _rebound(self, target: CallTarget, state: int) -> PluginFunction:
        """This function for another target with the same vtable and host
        table (an instance of the same implementation), whose state is at
        address ``state``: a C copy that shares everything but the state, the
        gate and _target."""
        return self._rebind(target, state, target.gate)  # type: ignore[attr-defined,no-any-return]

    def __repr__(self) -> str:
        return f"<ferrule function {self._target.plugin_id}.{self.name}{self.signature}>"

    def __get__(self, instance: object, owner: type | None = None) -> PluginFunction:
        # Not bound to the plugin: a class attribute of the plugin's own class
        # (see _plugin.plugin), which also makes help() list it as a routine.
        return self

    # -- the Python path

    def _call_checked(self, *args: Any, **kwargs: Any) -> Any:
        """Bind and check every argument, then call through the accelerator
        (normalised values) or through cffi."""
        plan = self._scalars
        if plan is not None and not kwargs and len(args) == plan.count:
            return self._call_scalars(plan, args)
        values = bind(self._display, self._names, args, kwargs)
        if getattr(self, "accelerated", False):
            return self._call_normalized(*[self._check(i, v) for i, v in enumerate(values)])  # type: ignore[attr-defined]
        count = len(values)
        types = self._types
        checked: list[Any] = [
            v if t.kind == "int" and type(v) is int and t.min <= v <= t.max else self._check(i, v)  # ints inline
            for i, (v, t) in enumerate(zip(values, types))
        ]
        target = self._target
        host = target.host_table
        assert isinstance(host, HostTable)
        slots = ffi.new(_VALUES, count + 1)  # the arguments, then the result
        keep: list[Any] = []  # encoded text and buffers must outlive the call
        frames: list[Frame] = []
        try:
            for i, (value, abi_type) in enumerate(zip(checked, types)):
                slot = slots[i]
                if abi_type.slot in ("i64", "u64", "f32", "f64"):
                    store_scalar(slot, abi_type, value)
                elif abi_type.fn is not None:
                    frame = Frame(value, abi_type.fn, self, i)
                    frames.append(frame)
                    slot.func = host.open_frame(frame)
                else:
                    store_borrowed(slot, abi_type, value, keep)
            ret = slots + count
            result = self.signature.result
            if result is not None and result.slot == "bytes":
                ret.bytes.ptr = UNSET
            return self._run(slots, ret, lambda status: self._finish(status, ret, frames, host))
        finally:
            for frame in frames:
                host.frames.pop(frame.key, None)
            # No export of the caller's buffers may outlive the call: when a
            # failure's traceback keeps this frame in a reference cycle, the
            # collector would otherwise clear the memoryview before the cffi
            # buffer that still exports it, and free memory in use (a crash).
            release_borrowed(keep)

    __call__ = _call_checked

    def _run(self, slots: Any, ret: Any, finish: Any) -> Any:
        """The cffi call itself, under the gate and (unless thread-safe) the
        serial lock; ``finish(status)`` reads the result before either is
        left: shutdown must not run in between, and releasing a result is
        plugin code too."""
        target = self._target
        host: Any = target.host_table
        gate = target.gate
        mark = gate.enter()
        if target.debug:
            host.enter()
        try:
            host.clear_error()
            if not self.thread_safe:
                gate.serial_enter()
            try:
                status = self._call(target.table, target.state, slots, ret)
                _fork_guard()
                return finish(status)
            finally:
                if not self.thread_safe:
                    gate.serial_leave()
        finally:
            if target.debug:
                host.leave()
            gate.leave(mark)

    def _call_scalars(self, plan: _ScalarPlan, args: tuple[Any, ...]) -> Any:
        """The cffi path of a function of numbers and bools: the arguments
        packed into a reused slot array with one struct call."""
        values = list(args)
        for i, t in enumerate(self._types):
            v = values[i]
            kind = t.kind
            if kind == "int":
                if type(v) is not int or not t.min <= v <= t.max:
                    values[i] = self._check(i, v)
            elif kind == "bool":
                values[i] = int(v) if type(v) is bool else int(self._check(i, v))
            elif type(v) is not float or t.size == 4:
                values[i] = self._check(i, v)
        pool = plan.pool
        try:
            slots, ret, memory = pool.pop()
        except IndexError:  # every array in use (calls in flight on other threads, or nested)
            slots, ret, memory = plan.new()
        try:
            plan.args.pack_into(memory, 0, *values, 0)  # the result slot zeroed: a plugin may write none
            status = self._run(slots, ret, int)
            if status != abi.OK:
                self._raise_status(status, self._target.host_table.take_error())
            return plan.result(memory)
        finally:
            pool.append((slots, ret, memory))

    def _finish(self, status: int, ret: Any, frames: list[Frame], host: HostTable) -> Any:
        errors = [f.error for f in frames if f.error is not None]
        if errors:  # a host function raised: that is the cause
            if status == abi.OK:
                self._discard(ret)
            raise errors[0]
        if status != abi.OK:
            self._raise_status(status, host.take_error())
        return self._decode(ret)

    def _check(self, i: int, value: Any) -> Any:
        return check_value(self._types[i], value, f"{self.name}() argument {self._names[i]!r}")

    def _decode(self, ret: Any) -> Any:
        result = self.signature.result
        if result is None:
            return None
        kind = result.kind
        if kind in ("int", "bool", "float"):
            return scalar_of(result, ret)
        ptr, length = ret.bytes.ptr, ret.bytes.len
        if ptr == UNSET:
            self._unset_result()
        address = int(ffi.cast("uintptr_t", ptr))
        if address < NO_ADDRESS or length > MAX_RESULT_LEN:
            self._check_result(address, length)  # raises, and then nothing is released
        try:
            view = ffi.buffer(ffi.cast("const char *", ptr), length) if length else b""
            if kind == "bytes":
                return bytes(view)  # the one copy
            try:
                return str(view, "utf-8")  # decoding is the one copy
            except UnicodeDecodeError:
                return self._decode_text(bytes(view))
        finally:
            release_result(result, ret)

    def _discard(self, ret: Any) -> None:
        """Release a result that will not be returned (a host function failed)."""
        if ret.bytes.ptr != UNSET and not self._refused(ret):
            release_result(self.signature.result, ret)

    # -- messages, shared with the C path (it calls these)

    def _raise_status(self, status: int, message: str) -> None:
        raise status_error(status, message, self._where)

    def _unset_result(self) -> None:
        result = self.signature.result
        assert result is not None
        raise PluginCallError(
            f"{self._where} returned FERRULE_OK without writing its {result.name} result: "
            "fill in ret->bytes (ptr, len, release), or return a failure status"
        )

    def _refused(self, ret: Any) -> bool:
        """Whether _decode would refuse the str or bytes result in ret."""
        result = self.signature.result
        if result is None or result.slot != "bytes":
            return False
        try:
            self._check_result(int(ffi.cast("uintptr_t", ret.bytes.ptr)), ret.bytes.len)
        except PluginCallError:
            return True
        return False

    def _check_result(self, address: int, length: int) -> None:
        """Refuse a str or bytes result that cannot be one, before its memory
        is read; called (by both paths) only when address < NO_ADDRESS or
        length > MAX_RESULT_LEN."""
        if length == 0 and address <= 1:
            return  # NULL, or the dangling pointer of an empty Rust box: len 0 is never read
        result = self.signature.result
        assert result is not None
        found = f"{self._where} returned a {result.name} result with ptr {address:#x} and len {length}"
        with_what = ""
        if length > MAX_RESULT_LEN:
            why = "len is more than any real result (2^48 bytes)"
            with_what = " with len the data's size in bytes"
        elif address == 0:
            why = "ptr is NULL with a non-zero len (NULL is allowed only with len 0)"
            with_what = " with ptr pointing at the data"
        else:
            why = f"ptr is not an address (below {NO_ADDRESS}), as when an integer is written to ret->i64 or ret->u64"
        how = (f"a {result.name} result must set ret->bytes (ptr, len, release){with_what}, e.g. with "
               "ferrule_return_copy(host, ret, data, len)")
        raise PluginCallError(f"{found}; {why}: {how}")

    def _decode_text(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PluginCallError(
                f"{self._where} returned text that is not valid UTF-8 ({exc.reason} at byte {exc.start}); expected str"
            ) from None

    def _host_text_error(self, i: int, exc: UnicodeDecodeError) -> PluginCallError:
        """The plugin passed a host function text that is not UTF-8."""
        return PluginCallError(
            f"{self._where} passed text that is not valid UTF-8 ({exc.reason} at byte {exc.start}) to the host "
            f"function given as argument {self._names[i]!r}; expected str"
        )

    def _check_host_result(self, i: int, value: Any) -> Any:
        """Check what a host function passed as argument i returned."""
        fn = self._types[i].fn
        assert fn is not None and fn.result is not None
        if inspect.isawaitable(value):
            raise not_awaited(value, f"the host function passed as {self.name}() argument {self._names[i]!r}", self.name)
        return check_value(fn.result, value, f"the result of the host function passed as {self.name}() argument "
                                             f"{self._names[i]!r}")


if speedups is not None:
    speedups.enable_vectorcall(PluginFunction)
