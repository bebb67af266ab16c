"""The child process of isolated mode: loads one plugin in process, the
ordinary way, sends its spec, and serves the host's calls over the channel
(see protocol.py).

    python -c "...from ferrule._isolation.child import main; main()" FD LIFELINE NOTIFY MEMORY_LIMIT CPU_LIMIT [SANDBOX]

or forked by the fork server (forkserver.py), which calls serve() itself.

SANDBOX (JSON) is the part of a sandbox's policy the child applies itself,
before the plugin is loaded: its seccomp filter and process limit. It then
tells the host, with its first message, what its own /proc says is in force.

It ends when the host says CLOSE, when the lifeline pipe from the host
reaches its end (the host is gone, however it ended), or with the plugin.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections import deque
from typing import Any

from .._errors import to_payload
from . import wire
from .channel import become_isolated_child
from .protocol import (ACK, CALL, CLOSE, CLOSED, CREATE, DESTROY, ERROR, FAILED, INVOKE, INVOKE_RESULT, LOAD, LOG, READY,
                       RESULT, TO_CHILD, TO_HOST)

SPIN_NS = 100_000  # stay awake this long for the next call before sleeping


def main() -> None:
    fd, lifeline, notify, memory_limit, cpu_limit = (int(a) for a in sys.argv[1:6])
    serve(fd, lifeline, notify, memory_limit, cpu_limit, json.loads(sys.argv[6]) if len(sys.argv) > 6 else None)


def serve(fd: int, lifeline: int, notify: int, memory_limit: int, cpu_limit: int,
          policy: dict[str, Any] | None = None) -> None:
    """Be the child, on the channel in ``fd``, until the host is done: from
    main() in a fresh interpreter, or in a process the fork server forked."""
    become_isolated_child(lifeline)
    _limit(memory_limit, cpu_limit)
    sandbox = None
    if policy is not None:  # (imported only then: a plain child starts without it)
        from .._sandbox.launch import confine

        sandbox = confine(policy)
    try:
        area = wire.Area(fd, memory_limit or None)  # bounded: it grows no further than it may map
        area.channel.set_notify(notify)
        _Server(area, sandbox).run()
    except wire.WireError as exc:  # one line the host shows, not a traceback of ferrule's
        hint = (f" under memory_limit ({memory_limit} bytes, this Python included): raise it, or pass less at a time"
                if memory_limit and "cannot be mapped" in str(exc) else "")
        print(f"ferrule: the isolated child cannot go on: {exc}{hint}", file=sys.stderr, flush=True)
        os._exit(3)


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
    def __init__(self, area: wire.Area, sandbox: dict[str, Any] | None = None):
        self.area = area
        self.sandbox = sandbox
        self.send_raw = area.channel.send
        self.wait_raw = area.channel.wait
        self.seen = 0
        self.main = threading.get_ident()
        self.busy = False  # running the host's request on the main thread
        self.pending: deque[tuple[int, str, str]] = deque(maxlen=1000)
        self.functions: list[Any] = []  # the plugin's functions, then each instance's methods (None once destroyed)
        self.codecs: list[wire.Codec | None] = []
        self.instances: dict[int, tuple[Any, int]] = {}  # first method's index -> (its target, method count)
        self.spare: dict[int, list[int]] = {}  # method count -> first indexes of destroyed instances
        self.services: Any = None
        self.plugin: Any = None
        self.base = 0  # where the next message goes: after the one being answered

    # -- the channel

    def post(self, kind: int, arg: int, length: int) -> None:
        area = self.area
        self.send_raw(TO_HOST, kind, arg, self.base, length, area.size)

    def wait(self) -> tuple[int, int, int, int]:
        got = None
        while got is None:
            got = self.wait_raw(TO_CHILD, self.seen, SPIN_NS, 1_000_000_000)
        self.seen, kind, arg, base, length, size = got
        self.base = self.area.take(base, length, size)
        return kind, arg, base, length

    def exchange(self, kind: int, arg: int, length: int) -> tuple[int, int, int, int]:
        """Post a message written at self.base; return the answer, serving
        calls the host makes first (from a host function)."""
        self.post(kind, arg, length)
        while True:
            answer = self.wait()
            if answer[0] == CALL:
                self.serve_call(*answer[1:])
            elif answer[0] == CREATE:
                self.serve_create(*answer[1:])
            elif answer[0] == DESTROY:
                self.serve_destroy(answer[1])
            else:
                return answer

    def log(self, level: int, name: str, text: str) -> None:
        self.pending.append((level, name, text))
        if self.busy and threading.get_ident() == self.main:
            self.flush()

    def flush(self) -> None:
        if self.services is not None and self.services.unreleased and threading.get_ident() == self.main:
            self.services.send_releases()
        while self.pending and threading.get_ident() == self.main:
            level, name, text = self.pending.popleft()
            start = self.base
            self.exchange(LOG, level, self.area.write_json(start, [name, text]))
            self.base = start  # the ACK is read: the next message may reuse the room

    # -- serving

    def run(self) -> None:
        # Started: the host's load timeout counts from here.
        self.post(ACK, 0, 0 if self.sandbox is None else self.area.write_json(0, self.sandbox))
        kind, _arg, base, length = self.wait()
        if kind != LOAD:
            os._exit(2)
        request = self.area.read_json(base, length)
        root = logging.getLogger("ferrule.plugin")
        root.addHandler(_Forward(self))
        root.setLevel(int(request["log_level"]))
        root.propagate = False
        self.busy = True
        try:
            import warnings

            from .._errors import AcceleratorWarning
            from .._loader import Library
            from .._plugin.plugin import Plugin

            # The host said so already if the accelerator is missing.
            warnings.simplefilter("ignore", AcceleratorWarning)

            from .remote import HostServices

            self.services = services = HostServices(self, bool(request.get("hosted")))
            plugin = Plugin(Library(request["path"]), config=request["config"], _services=services)
            if services.hosted:  # as in a PluginHost: its own implementations are lent last
                services.plugins.append(plugin._core)
            self.plugin = plugin
        except BaseException as exc:  # the host raises the same class and message
            self.flush()
            self.post(FAILED, 0, self.area.write_json(self.base, to_payload(exc)))
            self.wait()
            os._exit(0)
        spec = plugin._spec
        self.functions = [plugin.functions[f.name] for f in spec.functions]
        self.codecs = [wire.Codec(f.signature) for f in spec.functions]
        self.flush()
        self.busy = False
        self.post(READY, 0, self.area.write_json(self.base, spec.to_json()))
        while True:
            kind, arg, base, length = self.wait()
            if kind == CALL:
                self.serve_call(arg, base, length)
            elif kind == CREATE:
                self.serve_create(arg, base, length)
            elif kind == DESTROY:
                self.serve_destroy(arg)
            elif kind == CLOSE:
                self.busy = True
                for target, _count in list(self.instances.values()):  # the host closed the plugin: they end with it,
                    target.close()  # destroyed before its shutdown, which in process waits for them
                self.instances.clear()
                plugin.close()
                self.flush()
                self.post(CLOSED, 0, 0)
                os._exit(0)
            else:
                os._exit(2)

    def serve_call(self, index: int, base: int, length: int) -> None:
        outer = self.busy
        self.busy = True
        codec = self.codecs[index] if 0 <= index < len(self.codecs) else None
        if codec is None:
            os._exit(2)  # the host never calls what it did not make or already destroyed
        try:
            if codec.simple and length == codec.fixed.size:
                args: Any = codec.fixed.unpack_from(self.area.data, base)
            else:
                args = codec.read_args(self.area, base, length, self.host_function)
            value = self.functions[index](*args)
            failure = None
        except BaseException as exc:
            failure = exc
        if not self.answered(outer, failure):
            self.post(RESULT, 0, codec.write_result(self.area, self.base, value))

    def answered(self, outer: bool, failure: BaseException | None) -> bool:
        """After serving a request: the log lines it left, then the ERROR of
        ``failure``, if any (True); the caller posts its own RESULT otherwise."""
        self.busy = outer
        if self.pending:
            self.flush()
        if failure is None:
            return False
        self.post(ERROR, 0, self.area.write_json(self.base, to_payload(failure)))
        return True

    def serve_create(self, offer: int, base: int, length: int) -> None:
        """An instance of the plugin's offer number ``offer``: its methods take
        the next function indexes, the first of which the host is told."""
        from .._abi.signature import parse_signature
        from .._abi.spec import FunctionSpec
        from .._call.function import PluginFunction
        from .._interfaces.instances import InstanceTarget

        outer = self.busy
        self.busy = True
        try:
            request = self.area.read_json(base, length)
            target = InstanceTarget(self.plugin._core, offer, request["name"], bool(request["thread_safe"]))
            methods = request["methods"]
            spare = self.spare.get(len(methods))
            first = spare.pop() if spare else len(self.functions)  # a destroyed instance's indexes, if of its size
            if first == len(self.functions):
                self.functions += [None] * len(methods)
                self.codecs += [None] * len(methods)
            for i, (slot, name, text, flags) in enumerate(methods):
                spec = FunctionSpec(name, text, "", flags)
                self.functions[first + i] = PluginFunction(target, spec, target.entry.methods[slot])
                self.codecs[first + i] = wire.Codec(parse_signature(text))
            self.instances[first] = (target, len(methods))
            failure = None
        except BaseException as exc:
            failure = exc
        if not self.answered(outer, failure):
            self.post(RESULT, 0, self.area.write_json(self.base, {"first": first}))

    def serve_destroy(self, first: int) -> None:
        outer = self.busy
        self.busy = True
        found = self.instances.pop(first, None)
        if found is not None:
            target, count = found
            self.functions[first : first + count] = [None] * count
            self.codecs[first : first + count] = [None] * count
            self.spare.setdefault(count, []).append(first)  # for the next instance with as many methods
            try:
                target.close()
            except BaseException as exc:  # a destroy that fails is the plugin's to log; the host goes on
                logging.getLogger("ferrule").error("destroying an instance failed: %s", exc)
        self.answered(outer, None)
        self.post(RESULT, 0, 0)

    def host_function(self, index: int, sig: Any) -> Any:
        codec = wire.Codec(sig)

        def call(*args: Any) -> Any:
            self.flush()
            start = self.base
            n, _ = codec.write_args(self.area, start, args)
            kind, _arg, base, length = self.exchange(INVOKE, index, n)
            try:
                if kind == INVOKE_RESULT:
                    return codec.read_result(self.area, base, length)
                raise HostFunctionFailed(self.area.read_json(base, length)["message"])
            finally:
                self.base = start  # the answer is read: later messages of this call reuse the room

        return call


if __name__ == "__main__":
    main()
