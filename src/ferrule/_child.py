"""The child process of isolated mode: loads one plugin in process, the
ordinary way, and serves the host's calls over the channel (see _wire).

    python -m ferrule._child FD LIFELINE MEMORY_LIMIT CPU_LIMIT

It ends when the host says CLOSE, when the lifeline pipe from the host
reaches its end (the host is gone, however it ended), or with the plugin.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from typing import Any

from . import _wire as wire

SPIN_NS = 100_000  # stay awake this long for the next call before sleeping


def main() -> None:
    fd, lifeline, memory_limit, cpu_limit = (int(a) for a in sys.argv[1:5])
    _watch(lifeline)
    _limit(memory_limit, cpu_limit)
    _Server(wire.Area(fd)).run()


def _watch(lifeline: int) -> None:
    from . import _speedups

    _speedups.become_isolated_child(lifeline)


def _limit(memory: int, cpu: int) -> None:
    import resource

    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    if cpu > 0:
        # The soft limit sends SIGXCPU, the hard one a second later SIGKILL.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


class HostFunctionFailed(Exception):
    """A host function raised in the host; the host re-raises its own exception."""


class _Forward(logging.Handler):
    """The plugin's log records, sent to the host: at once from the thread
    running a call (so they outlive a crash), else queued for the next message."""

    def __init__(self, server: _Server):
        super().__init__(level=logging.NOTSET)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        self.server.log(record.levelno, record.name, record.getMessage())


class _Server:
    def __init__(self, area: wire.Area):
        from . import _speedups

        self.area = area
        self.send_raw = _speedups.channel_send
        self.wait_raw = _speedups.channel_wait
        self.seen = 0
        self.main = threading.get_ident()
        self.busy = False  # running the host's request on the main thread
        self.pending: deque[tuple[int, str, str]] = deque(maxlen=1000)
        self.functions: list[Any] = []
        self.codecs: list[wire.Codec] = []
        self.base = 0  # where the next message goes: after the one being answered

    # -- the channel

    def post(self, kind: int, arg: int, length: int) -> None:
        area = self.area
        self.send_raw(area.address, wire.TO_HOST, kind, arg, self.base, length, area.size)

    def wait(self) -> tuple[int, int, int, int]:
        got = None
        while got is None:
            got = self.wait_raw(self.area.address, wire.TO_CHILD, self.seen, SPIN_NS, 1_000_000_000)
        self.seen, kind, arg, base, length, size = got
        self.base = self.area.take(base, length, size)
        return kind, arg, base, length

    def exchange(self, kind: int, arg: int, length: int) -> tuple[int, int, int, int]:
        """Post a message written at self.base; return the answer, serving
        calls the host makes first (from a host function)."""
        self.post(kind, arg, length)
        while True:
            answer = self.wait()
            if answer[0] != wire.CALL:
                return answer
            self.serve_call(*answer[1:])

    def log(self, level: int, name: str, text: str) -> None:
        self.pending.append((level, name, text))
        if self.busy and threading.get_ident() == self.main:
            self.flush()

    def flush(self) -> None:
        while self.pending and threading.get_ident() == self.main:
            level, name, text = self.pending.popleft()
            start = self.base
            self.exchange(wire.LOG, level, self.area.write_json(start, [name, text]))
            self.base = start  # the ACK is read: the next message may reuse the room

    # -- serving

    def run(self) -> None:
        self.post(wire.ACK, 0, 0)  # started: the host's load timeout counts from here
        kind, _arg, base, length = self.wait()
        if kind != wire.LOAD:
            os._exit(2)
        request = self.area.read_json(base, length)
        root = logging.getLogger("ferrule.plugin")
        root.addHandler(_Forward(self))
        root.setLevel(int(request["log_level"]))
        root.propagate = False
        self.busy = True
        try:
            from ._library import Library
            from ._plugin import Plugin

            plugin = Plugin(Library(request["path"]), config=request["config"])
        except BaseException as exc:  # the host raises the same class and message
            self.flush()
            self.post(wire.FAILED, 0, self.area.write_json(self.base, wire.error_payload(exc)))
            self.wait()
            os._exit(0)
        desc = plugin._desc
        self.functions = [plugin._function(name) for name in desc.functions]
        self.codecs = [wire.Codec(info.signature) for info in desc.functions.values()]
        meta = {
            "path": plugin.path,
            "id": desc.id,
            "name": desc.name,
            "version": desc.version,
            "description": desc.description,
            "license": desc.license,
            "abi_version": list(desc.abi_version),
            "functions": [[i.name, str(i.signature), i.doc, i.flags] for i in desc.functions.values()],
            "interfaces": [[o.id, o.revision, o.name, o.doc, o.flags, o.fingerprint] for o in desc.offers],
        }
        self.flush()
        self.busy = False
        self.post(wire.READY, 0, self.area.write_json(self.base, meta))
        while True:
            kind, arg, base, length = self.wait()
            if kind == wire.CALL:
                self.serve_call(arg, base, length)
            elif kind == wire.CLOSE:
                self.busy = True
                plugin.close()
                self.flush()
                self.post(wire.CLOSED, 0, 0)
                os._exit(0)
            else:
                os._exit(2)

    def serve_call(self, index: int, base: int, length: int) -> None:
        outer = self.busy
        self.busy = True
        codec = self.codecs[index]
        try:
            if codec.simple and length == codec.fixed.size:
                args: Any = codec.fixed.unpack_from(self.area.data, base)
            else:
                args = codec.read_args(self.area, base, length, self.host_function)
            value = self.functions[index](*args)
            failure = None
        except BaseException as exc:
            failure = exc
        self.busy = outer
        if self.pending:
            self.flush()
        if failure is None:
            self.post(wire.RESULT, 0, codec.write_result(self.area, self.base, value))
        else:
            self.post(wire.ERROR, 0, self.area.write_json(self.base, wire.error_payload(failure)))

    def host_function(self, index: int, sig: Any) -> Any:
        codec = wire.Codec(sig)

        def call(*args: Any) -> Any:
            self.flush()
            start = self.base
            n, _ = codec.write_args(self.area, start, args)
            kind, _arg, base, length = self.exchange(wire.INVOKE, index, n)
            try:
                if kind == wire.INVOKE_RESULT:
                    return codec.read_result(self.area, base, length)
                raise HostFunctionFailed(self.area.read_json(base, length)["message"])
            finally:
                self.base = start  # the answer is read: later messages of this call reuse the room

        return call


if __name__ == "__main__":
    main()
