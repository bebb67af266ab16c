"""The isolated child's side of host-defined interfaces: the services a
plugin queries live in the host process, so the child's host table forwards
``host->query``, ``host->call`` and ``host->release`` over the channel
(QUERY, SCALL, RELEASE), and the child makes and destroys the instances the
host asks for (CREATE, DESTROY).

A host->call's arguments cross as the method's call-layer values (a struct
as the bytes of its C layout, a struct result through a trailing out buffer,
a handle as a u64), which the host puts into ``ferrule_value`` slots of its
own and hands to the same Services code an in-process plugin reaches: the
same checks, the same messages. A mutbuf argument crosses as shared memory
and the host's writes are copied back into the plugin's buffer.

The channel is one conversation: only the thread running the host's
request can use it. A plugin thread of its own that queries gets only the
plugin's own implementations, and its calls to host services fail.
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import Any

from .._abi import cdef as abi
from .._abi.ffi import ffi
from .._abi.signature import parse_signature
from .._abi.types import AbiType
from .._call.marshal import give_bytes, scalar_of, store_scalar, value_of
from .._interfaces.services import Services, _fail
from . import wire
from .protocol import QUERY, QUERY_RESULT, RELEASE, SCALL, SCALL_RESULT

__all__ = ["HostServices", "SCALL_HEAD", "NULL_ARGS", "from_slot", "signed"]

_UINTPTR = ffi.typeof("uintptr_t")
SCALL_HEAD = struct.Struct("=II")  # method index, flags; the arguments follow at offset 8
NULL_ARGS = 1  # the plugin passed args == NULL
_log = logging.getLogger("ferrule")


def signed(status: int) -> int:
    """A status carried in a message's unsigned arg, as int32 again."""
    return status - (1 << 32) if status >= 1 << 31 else status


def from_slot(t: AbiType, slot: Any) -> Any:
    """A call-layer value the plugin passed, as the wire carries it: numbers,
    str and bytes copied; buffers as views of the plugin's own memory."""
    if t.kind in ("int", "bool", "float"):
        return scalar_of(t, slot)
    if t.slot == "bytes":
        return value_of(t, slot)
    assert t.elem is not None
    if slot.buf.ptr == ffi.NULL:
        if slot.buf.len:
            raise ValueError(f"NULL pointer with length {slot.buf.len}")
        return memoryview(bytearray())
    return memoryview(ffi.buffer(slot.buf.ptr, slot.buf.len * t.elem.size))


class _Remote:
    __slots__ = ("token", "codecs")

    def __init__(self, token: int, codecs: list[wire.Codec]):
        self.token = token  # the host's
        self.codecs = codecs


class HostServices(Services):
    """The child's registry: the host's services through the channel, and,
    for a plugin loaded through a PluginHost, its own implementations last
    (as in process)."""

    def __init__(self, server: Any, hosted: bool):  # child._Server (which imports this module)
        super().__init__(debug=False)
        self.server = server
        self.hosted = hosted
        self.remote: dict[int, _Remote] = {}
        self.unreleased: list[int] = []  # host tokens released on another thread, sent at the next chance

    def _reachable(self) -> bool:
        server = self.server
        return bool(server.busy) and threading.get_ident() == server.main

    # -- the host table's callbacks (on a plugin thread, with the GIL; none may raise)

    def _query(self, host: Any, id_ptr: Any, revision: int, fingerprint: int) -> Any:
        caller = self._caller(host)
        try:
            if caller is None or id_ptr == ffi.NULL or not self.hosted:
                return ffi.NULL
            ident = ffi.string(id_ptr, 256).decode("utf-8", "replace")
            if self._reachable():
                found = self._ask(ident, revision, fingerprint)
                if found is not None:
                    token = next(self.tokens)
                    self.remote[token] = found
                    return ffi.cast("const ferrule_object *", token)
            else:
                logging.getLogger(f"ferrule.plugin.{caller.plugin_id}").warning(
                    "host->query from a thread of the plugin's own: an isolated plugin reaches the host's services "
                    "only from the thread the host called it on; looked among its own implementations only")
            token = self.lend(caller, (ident, revision), fingerprint)  # its own offers, last
            return ffi.cast("const ferrule_object *", token) if token else ffi.NULL
        except Exception as exc:  # never unwind into plugin code
            _log.error("query failed in the isolated child: %s", exc)
            return ffi.NULL

    def _call(self, host: Any, obj: Any, method: int, args: Any, ret: Any) -> int:
        found = self.remote.get(int(ffi.cast(_UINTPTR, obj)))
        if found is None:
            return super()._call(host, obj, method, args, ret)
        if ret == ffi.NULL:
            return abi.ERROR
        if not self._reachable():
            return _fail(ret, abi.ERROR, "host->call: an isolated plugin calls the host's services only from the "
                                         "thread the host called it on, not from a thread of its own")
        try:
            return self._forward(found, method, args, ret)
        except BaseException as exc:
            return _fail(ret, abi.ERROR, f"{type(exc).__name__}: {exc}")

    def _release(self, host: Any, obj: Any) -> None:
        if obj == ffi.NULL:
            return
        found = self.remote.pop(int(ffi.cast(_UINTPTR, obj)), None)
        if found is None:
            super()._release(host, obj)
            return
        self.unreleased.append(found.token)
        if self._reachable():
            self.send_releases()

    def release_all(self, table_address: int) -> int:
        count = super().release_all(table_address) + len(self.remote)
        self.unreleased += [r.token for r in self.remote.values()]
        self.remote.clear()
        if self._reachable():
            self.send_releases()
        return count

    # -- the channel

    def _ask(self, ident: str, revision: int, fingerprint: int) -> _Remote | None:
        server = self.server
        server.flush()
        start = server.base
        try:
            request = {"id": ident, "revision": revision, "fingerprint": fingerprint}
            kind, _arg, base, length = server.exchange(QUERY, 0, server.area.write_json(start, request))
            if kind != QUERY_RESULT:
                raise wire.WireError(f"answered a query with message kind {kind}")
            answer = server.area.read_json(base, length)
            token, texts = answer.get("token"), answer.get("signatures")
            if not token:
                return None
            return _Remote(int(token), [wire.Codec(parse_signature(t)) for t in texts])
        finally:
            server.base = start

    def _forward(self, found: _Remote, method: int, args: Any, ret: Any) -> int:
        server = self.server
        area = server.area
        codecs = found.codecs
        codec = codecs[method] if 0 <= method < len(codecs) else None
        null = args == ffi.NULL
        values = [] if codec is None or null else [from_slot(t, args[i]) for i, t in enumerate(codec.types)]
        server.flush()
        start = server.base
        try:
            area.ensure(start + SCALL_HEAD.size)
            SCALL_HEAD.pack_into(area.data, start, method & 0xFFFFFFFF, NULL_ARGS if null else 0)
            n, back = (0, []) if codec is None or null else codec.write_args(area, start + SCALL_HEAD.size, values)
            kind, status, base, length = server.exchange(SCALL, found.token, SCALL_HEAD.size + n)
            if kind != SCALL_RESULT:
                raise wire.WireError(f"answered host->call with message kind {kind}")
            for offset, view in back:  # the host's writes into mutbuf arguments
                view[:] = area.data[offset : offset + len(view)]
            status = signed(status)
            if status != abi.OK or codec is None:
                area.check(base, length)
                if not give_bytes(ret, bytes(area.data[base : base + length])):
                    ret.bytes.ptr, ret.bytes.len, ret.bytes.release = ffi.NULL, 0, ffi.NULL
                return status if status != abi.OK else abi.ERROR
            result = codec.sig.result
            if result is not None:
                value = codec.read_result(area, base, length)
                if result.slot == "bytes":
                    if not give_bytes(ret, str.encode(value, "utf-8") if result.kind == "str" else value):
                        raise MemoryError
                else:
                    store_scalar(ret, result, value)
            return abi.OK
        finally:
            server.base = start

    def send_releases(self) -> None:
        server = self.server
        while self.unreleased:
            token = self.unreleased.pop()
            start = server.base
            server.exchange(RELEASE, token, 0)
            server.base = start
