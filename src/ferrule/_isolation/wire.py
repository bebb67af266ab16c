"""The wire format of isolated mode, shared by the host and the child: the
memfd area both sides map (see protocol.py) and the packing of arguments and
results in its data area.

Arguments and results are packed with ``struct`` at fixed offsets, in each
type's wire format (_abi.types), variable-sized values (text, bytes,
buffers) after them; nothing is pickled.

The host trusts nothing the child writes: ``Codec.read_result`` checks every
offset and length against the area and raises ``WireError``.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import struct
from typing import Any

from .._abi.signature import Signature
from .._errors import IsolationError
from .channel import Channel
from .protocol import CONTROL_SIZE

__all__ = ["Area", "Codec", "TooLargeError", "WireError"]

INITIAL_DATA = 1 << 20
# The largest data area the host maps when the child announces a larger one
# and no memory_limit says otherwise: the host copies what a message holds,
# so what the child may announce bounds what the host allocates.
DEFAULT_BOUND = 4 << 30
ANSWER_ROOM = 64 << 10
_SLOT = struct.Struct("=QQ")  # offset and length of a variable-sized value


class WireError(Exception):
    """The other side wrote something that does not follow the format."""


class TooLargeError(IsolationError):
    """A message this side would send does not fit the bound of the data
    area (memory_limit), which the other side could not map: nothing was sent."""

    def __init__(self, needed: int, bound: int):
        super().__init__(f"a message of {needed} bytes does not fit the {bound} bytes of shared memory the child may "
                         "map (memory_limit, else 4 GiB): pass less at a time, or raise memory_limit")
        self.needed, self.bound = needed, bound


def align(n: int) -> int:
    return (n + 7) & ~7


class Area:
    """One side's mapping of the channel memfd: the control page and the data
    area. The child maps the data area as far as the last message needs
    (its address space is limited) and remaps it when the other side grew
    the file. The host, whose file is its bound from the start, maps it
    whole once (address space only: pages cost nothing until written) and
    needs the descriptor no more: one mapping, no remapping."""

    def __init__(self, fd: int, bound: int | None = None, whole: bool = False):
        self.fd = fd
        self.bound = bound  # the most the other side may announce (the host's side); None: any
        self.size = 0  # what the last message announced: the data area both sides agree on
        self._whole: mmap.mmap | None = None
        st = os.fstat(fd)
        self.file_size = st.st_size - CONTROL_SIZE
        self.inode = st.st_ino  # which memfd it is, after the descriptor is closed
        if whole:
            try:
                self._whole = mmap.mmap(fd, CONTROL_SIZE + self.file_size)
            except (OSError, OverflowError, ValueError):
                pass  # (an address-space limit on the host): map as the child does
        if self._whole is not None:
            self.control: Any = memoryview(self._whole)[:CONTROL_SIZE]
            self.data: Any = memoryview(self._whole)[CONTROL_SIZE:]
            self.channel = Channel(self.control)
            self.size = min(self.file_size, INITIAL_DATA)
            return
        self.control = mmap.mmap(fd, CONTROL_SIZE)
        self.channel = Channel(self.control)
        self.data = self.control  # replaced by _map
        self._map(min(self.file_size, INITIAL_DATA))  # the file may be larger: see create

    @classmethod
    def create(cls, bound: int | None = DEFAULT_BOUND) -> Area:
        """The host's side: a new memfd that can grow but never shrink, so a
        child cannot truncate it under the host's mapping (SIGBUS). The
        child may announce a data area of at most ``bound`` bytes. With a
        bound the file is that large from the start (sparse: pages cost
        nothing until written) and sealed against growing too, so a child
        cannot store more than the bound in it, mapped or not."""
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("ferrule-isolated", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            os.ftruncate(fd, CONTROL_SIZE + (INITIAL_DATA if bound is None else max(bound, INITIAL_DATA)))
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | (0 if bound is None else fcntl.F_SEAL_GROW))
        else:  # pragma: no cover - platforms without memfd
            import tempfile

            with tempfile.TemporaryFile() as f:
                fd = os.dup(f.fileno())
            os.ftruncate(fd, CONTROL_SIZE + INITIAL_DATA)
        return cls(fd, bound, whole=bound is not None)

    def drop_fd(self) -> None:
        """Close the descriptor once the child has its own, where nothing
        here needs it again (a whole mapping)."""
        if self._whole is not None and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _map(self, size: int) -> None:
        try:
            self.data = mmap.mmap(self.fd, size, offset=CONTROL_SIZE)
        except (OSError, OverflowError, ValueError) as exc:
            raise WireError(f"a data area of {size} bytes cannot be mapped here ({exc})") from None
        self.size = size

    def release(self) -> None:
        """Unmap the data area (the control page stays: the channel holds
        it). Only when no message is being read or written."""
        if self._whole is not None:
            return  # one mapping with the control page: close() unmaps it
        try:
            self.data.close()
        except BufferError:  # a view of it is still alive somewhere: the collector frees it
            return
        self.size = 0

    def close(self) -> None:
        """Unmap the control page too, and with it the descriptor the mapping
        holds: for a channel that no one uses again (its child is gone and no
        call is in flight), so that nothing waits for the collector. Idempotent."""
        if self.__dict__.get("_closed"):
            return
        self._closed = True
        self.release()
        self.channel.detach()
        whole = self._whole
        try:
            if whole is not None:
                self.data.release()
                self.control.release()
                whole.close()
            else:
                self.control.close()
        except BufferError:  # pragma: no cover - a view of it is still alive: the collector frees it
            pass
        self.size = 0

    def ensure(self, needed: int) -> None:
        """Grow the data area to hold ``needed`` bytes (the sender's side).
        Raises TooLargeError beyond the bound, which the other side could
        not map."""
        if self.bound is not None and needed > self.bound:
            raise TooLargeError(needed, self.bound)
        if needed > self.size:
            # Room for the answer after the message, so that the other side
            # need not grow (and map) the area again for a small one.
            # Never less than the other side maps: it announced its size
            # with its last message, which this side followed.
            size = max(needed + ANSWER_ROOM, self.size * 2)
            if self.bound is not None:
                size = min(size, self.bound)  # needed fits: checked above
            if self._whole is not None:  # all mapped already: only what both sides agree on grows
                self.size = min(size, self.file_size)
                return
            held = os.fstat(self.fd).st_size - CONTROL_SIZE
            if needed <= held:
                size = min(size, held)  # a file sealed at its bound (create)
            try:
                if held < size:  # a bounded file is already full size
                    os.ftruncate(self.fd, CONTROL_SIZE + size)
            except OSError as exc:  # the other side sealed or broke the file
                raise WireError(f"left a data area that cannot grow to {size} bytes ({exc.strerror})") from None
            self._map(size)

    def follow(self, size: int) -> None:
        """Map the larger size the other side announced (the receiver's side)."""
        if size != self.size:
            if self.bound is not None and size > max(self.bound, self.size):
                raise WireError(f"announced a data area of {size} bytes, more than the {self.bound} bytes the host "
                                "maps for it (memory_limit, else 4 GiB); the host allocated nothing for it")
            actual = self.file_size if self._whole is not None else os.fstat(self.fd).st_size - CONTROL_SIZE
            if not self.size < size <= actual:
                raise WireError(f"announced a data area of {size} bytes; this side maps {self.size}, the file holds {actual}")
            if self._whole is not None:
                self.size = size
            else:
                self._map(size)

    def take(self, base: int, length: int, size: int) -> int:
        """Accept a message's head: map the size it announces, check its
        payload lies inside, and return where an answer to it goes."""
        if size != self.size:
            self.follow(size)
        if base + length > size:
            self.check(base, length)
        return align(base + length)

    def check(self, base: int, length: int) -> None:
        if not 0 <= base <= base + length <= self.size:
            raise WireError(f"a message at {base}+{length} in a data area of {self.size} bytes")

    def write_json(self, base: int, value: Any) -> int:
        data = json.dumps(value).encode()
        self.ensure(base + len(data))
        self.data[base : base + len(data)] = data
        return len(data)

    def read_json(self, base: int, length: int) -> Any:
        self.check(base, length)
        try:
            return json.loads(bytes(self.data[base : base + length]))
        except ValueError as exc:
            raise WireError(f"a message that is not JSON: {exc}") from None
        except RecursionError:
            raise WireError("a JSON message nested too deeply to read") from None


class Codec:
    """Packs one signature's arguments (host) and result (child), and
    unpacks them on the other side."""

    def __init__(self, sig: Signature):
        self.sig = sig
        self.types = [p.type for p in sig.params]
        self.fixed = struct.Struct("=" + "".join(t.wire for t in self.types))
        self.start = align(self.fixed.size)
        self.variable = [i for i, t in enumerate(self.types) if t.wire == "QQ"]
        self.callables = [i for i, t in enumerate(self.types) if t.fn is not None]
        self.simple = not self.variable and not self.callables  # fixed-size arguments only
        # Where each parameter's value sits in the fixed tuple.
        self.positions: list[int] = []
        n = 0
        for t in self.types:
            self.positions.append(n)
            n += 2 if t.wire == "QQ" else 1
        result = sig.result
        self.result_format = struct.Struct("=" + (result.wire if result else ""))

    # -- arguments

    def write_args(self, area: Area, base: int, values: tuple[Any, ...] | list[Any]) -> tuple[int, list[tuple[int, memoryview]]]:
        """Pack checked values at ``base``. Returns the payload length and the
        writable buffers to copy back after the call as (offset, view)."""
        if self.simple:
            area.ensure(base + self.fixed.size)
            self.fixed.pack_into(area.data, base, *values)
            return self.fixed.size, []
        items: list[Any] = []
        blobs: list[tuple[int, Any]] = []
        back: list[tuple[int, memoryview]] = []
        offset = self.start
        calls = 0
        for t, v in zip(self.types, values):
            fmt = t.wire
            if fmt == "I":
                items.append(calls)
                calls += 1
            elif fmt != "QQ":
                items.append(v)
            else:
                data: Any = str.encode(v, "utf-8") if t.name == "str" else v
                raw = memoryview(data).cast("B") if not isinstance(data, bytes) else data
                n = len(raw)
                items += (offset, n)
                blobs.append((offset, raw))
                if t.writable:
                    back.append((offset, raw))  # type: ignore[arg-type]
                offset = align(offset + n)
        area.ensure(base + offset)
        mm = area.data
        self.fixed.pack_into(mm, base, *items)
        for at, raw in blobs:
            mm[base + at : base + at + len(raw)] = raw
        return offset, [(base + at, view) for at, view in back]

    def read_args(self, area: Area, base: int, length: int, host_function: Any = None, copy: bool = False) -> list[Any]:
        """Unpack arguments: a call's in the child, a host function's in the
        host, which checks them (WireError). Buffers and bytes are views of
        the shared memory (the plugin reads and writes it in place) unless
        ``copy`` is set, when bytes are copied out."""
        area.check(base, length)
        if length < self.fixed.size:
            raise WireError(f"arguments of {length} bytes, expected at least {self.fixed.size}")
        items = self.fixed.unpack_from(area.data, base)
        if self.simple:
            return list(items)
        values: list[Any] = []
        for t, at in zip(self.types, self.positions):
            fmt = t.wire
            if fmt == "I":
                assert t.fn is not None
                values.append(host_function(items[at], t.fn))
            elif fmt != "QQ":
                values.append(items[at])
            else:
                offset, n = items[at], items[at + 1]
                if not self.start <= offset <= offset + n <= length:
                    raise WireError(f"a {t.name} argument at {offset}+{n} in a message of {length} bytes")
                view = memoryview(area.data)[base + offset : base + offset + n]
                if t.name == "str":
                    try:
                        values.append(str(view, "utf-8"))
                    except UnicodeDecodeError as exc:
                        raise WireError(f"a str argument that is not UTF-8 ({exc.reason})") from None
                    finally:
                        view.release()
                elif t.elem is not None:
                    values.append(view.cast(t.elem.struct))  # type: ignore[call-overload]
                else:
                    values.append(bytes(view) if copy else view)
        return values

    # -- results

    def write_result(self, area: Area, base: int, value: Any) -> int:
        """Pack a result at ``base``: a plugin function's (child side) or a
        host function's (host side)."""
        result = self.sig.result
        if result is None:
            return 0
        if result.slot != "bytes":
            area.ensure(base + self.result_format.size)
            self.result_format.pack_into(area.data, base, value)
            return self.result_format.size
        data = str.encode(value, "utf-8") if result.name == "str" else value
        start = _SLOT.size
        area.ensure(base + start + len(data))
        _SLOT.pack_into(area.data, base, start, len(data))
        area.data[base + start : base + start + len(data)] = data
        return start + len(data)

    def read_result(self, area: Area, base: int, length: int) -> Any:
        """Unpack a result, checking what the other side wrote (WireError)."""
        result = self.sig.result
        if result is None:
            return None
        area.check(base, length)
        if result.slot != "bytes":
            if length != self.result_format.size:
                raise WireError(f"a {result.name} result of {length} bytes, expected {self.result_format.size}")
            value = self.result_format.unpack_from(area.data, base)[0]
            if result.bits and not result.min <= value <= result.max:
                raise WireError(f"a {result.name} result out of range: {value}")
            return value
        if length < _SLOT.size:
            raise WireError(f"a {result.name} result of {length} bytes, shorter than its head")
        offset, n = _SLOT.unpack_from(area.data, base)
        if offset != _SLOT.size or n != length - offset:
            raise WireError(f"a {result.name} result at {offset}+{n} in a message of {length} bytes")
        data = bytes(area.data[base + offset : base + offset + n])
        if result.name == "bytes":
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireError(f"str result is not UTF-8 ({exc.reason} at byte {exc.start})") from None
