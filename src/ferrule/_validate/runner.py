"""The checks that run plugin code: load, the descriptor's warnings, calls
with generated arguments, thread-safety claims, interfaces and lifecycle.

They run in the validator's child process (child.py), or in process with
--in-process. Either way they report through ``emit``: ``start`` before a
check, ``tick`` before each call (what the parent names when the call
crashes or hangs), ``check`` with the result. A crash ends the process; the
parent then starts another that skips what is done.
"""

from __future__ import annotations

import array
import ctypes
import fnmatch
import gc
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .. import idl
from .._abi.spec import FunctionSpec, OfferSpec, PluginSpec
from .._call.table import NO_MESSAGE
from .._errors import FerruleError, PluginCallError, PluginInitError, PluginPanicError, ThreadContractWarning
from .._interfaces.offers import check_offer
from .._load import load
from .._host import PluginHost
from .._plugin.plugin import Plugin
from .report import Check, timed
from .values import Draw, check_result, check_typed, describe, rng_for, same

__all__ = ["LEVELS", "Options", "Runner", "repeats_for"]

Emit = Callable[[dict[str, Any]], None]

# What each level adds (docs/validate.md has the table): the calls made per
# function, and the load/close cycles of the leak checks.
LEVELS: dict[int, str] = {
    1: "file, load, descriptor warnings, interface fingerprints, shutdown",
    2: "+ each function and interface method called once",
    3: "+ repeated calls with edge values (empty, NaN, limits, long text)",
    4: "+ thread-safety: thread-safe functions and interfaces called from several threads",
    5: "+ lifecycle: repeated load/close and create/destroy, and per-function heap, thread and fd leaks",
}
_REPEATS = {1: 0, 2: 1, 3: 10, 4: 25, 5: 50}
THREADS = 4
CYCLES = 1000  # level 5: load/close and create/destroy cycles measured (after a warm-up)
CALL_CYCLES = 1000  # level 5: calls of each function measured for leaks
_WARMUP = 10


def repeats_for(level: int, given: int | None) -> int:
    return given if given is not None else _REPEATS[level]


@dataclass
class Options:
    path: str
    level: int = 3
    seed: int = 0
    repeats: int | None = None
    config: str | None = None
    interfaces: tuple[str, ...] = ()  # declaration modules
    only: tuple[str, ...] = ()  # fnmatch patterns of check ids; empty: all
    memory_limit: int = 0  # MiB of address space for the child; 0: none
    done: frozenset[str] = field(default_factory=frozenset)  # ids a previous child finished

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "level": self.level, "seed": self.seed, "repeats": self.repeats,
                "config": self.config, "interfaces": list(self.interfaces), "only": list(self.only),
                "memory_limit": self.memory_limit,
                "done": sorted(self.done)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Options:
        return cls(d["path"], d["level"], d["seed"], d["repeats"], d["config"], tuple(d["interfaces"]),
                   tuple(d["only"]), d["memory_limit"], frozenset(d["done"]))


class _Skip(Exception):
    """A check that cannot run; the message says why."""


class _Logged(logging.Handler):
    """Keeps the plugin's warnings and errors, for the check that caused them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"logged {record.levelname}: {record.getMessage()}")




def _outcome(call: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """("ok", result), ("error", PluginCallError), ("panic", PluginPanicError)
    or ("bad", another exception)."""
    try:
        result: tuple[str, Any] = ("ok", call(*args))
    except PluginPanicError as exc:
        result = ("panic", exc)
    except PluginCallError as exc:
        # Without a plugin message it is the host refusing what the plugin
        # returned (a str that is no pointer, text that is not UTF-8).
        result = ("error", exc) if exc.plugin_message else ("bad", exc)
    except Exception as exc:  # a FerruleError for a bad result, or worse
        result = ("bad", exc)
    return result  # (a copy forked in a call never gets here: the call path ends it)


def _key(outcome: tuple[str, Any]) -> tuple[str, Any]:
    """What two runs of the same call are compared by."""
    kind, value = outcome
    return (kind, value) if kind == "ok" else (kind, f"{type(value).__name__}: {value}")


def _fresh(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Copies of the mutable arguments, so that a call that writes its
    mutbuf leaves the next call the same input."""
    return tuple(array.array(a.typecode, a) if isinstance(a, array.array) else a for a in args)


def _contents(value: Any) -> bytes:
    """A copy of what a read-only argument holds (a str's own UTF-8 bytes)."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(bytearray(value))


def _shown(args: tuple[Any, ...]) -> str:
    return "(" + ", ".join(describe(a) for a in args) + ")"


class _Heap:
    """Bytes malloc has handed out and not had back (glibc's mallinfo2),
    threads and open file descriptors of this process."""

    def __init__(self) -> None:
        self._mallinfo: Any = None
        try:
            libc = ctypes.CDLL(None)  # the process's own symbols, libc's among them
            fn = libc.mallinfo2

            class Mallinfo2(ctypes.Structure):
                _fields_ = [(n, ctypes.c_size_t) for n in
                            ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                             "fordblks", "keepcost")]

            fn.restype = Mallinfo2
            fn.argtypes = []
            self._mallinfo = fn
        except (OSError, AttributeError):
            pass

    @property
    def available(self) -> bool:
        return self._mallinfo is not None

    def bytes(self) -> int:
        if self._mallinfo is None:
            return 0
        info = self._mallinfo()
        return int(info.uordblks + info.hblkhd)

    @staticmethod
    def threads() -> int:
        return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else threading.active_count()

    @staticmethod
    def fds() -> int:
        return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0

    def snapshot(self) -> tuple[int, int, int]:
        gc.collect()
        return self.bytes(), self.threads(), self.fds()


# Heap growth that counts as a leak over a measured run: more than this
# many bytes per cycle on average, and more than the slack in total
# (Python's own caches and free lists move by a few KiB).
LEAK_PER_CYCLE = 16
LEAK_SLACK = 16 * 1024


def _leaks(before: tuple[int, int, int], after: tuple[int, int, int], cycles: int, what: str) -> list[str]:
    """What grew over cycles repetitions of what, as report lines."""
    found = []
    heap, threads, fds = (a - b for a, b in zip(after, before))
    if heap > LEAK_SLACK and heap > LEAK_PER_CYCLE * cycles:
        found.append(f"the heap grew by {heap} bytes over {cycles} {what} (about {heap // cycles} bytes each): memory "
                     "is allocated and never freed")
    if threads > 0:
        found.append(f"{threads} more threads ran after {cycles} {what} than before: threads are started and never "
                     "joined (join them in shutdown or destroy)")
    if fds > 0:
        found.append(f"{fds} more file descriptors were open after {cycles} {what} than before: files or sockets are "
                     "opened and never closed")
    return found


def _rounds(repeats: int, inputs: int) -> int:
    """How often each thread makes every call of a thread check: each thread
    makes about 4 calls per repeat, so level 4 makes about 400 concurrent
    calls in all and level 5 800."""
    return max(1, THREADS * repeats // inputs)


def _children() -> list[tuple[int, str]]:
    """This process's live child processes (not zombies): pid and command line."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    alive = []
    for pid in sorted(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        alive.append((pid, command or "?"))
    return alive


class Runner:
    """Runs the checks of one plugin and emits what it finds."""

    def __init__(self, options: Options, emit: Emit, own_process: bool = False):
        self.o = options
        self.own_process = own_process  # the validator's child: every child process is the plugin's
        self.emit = emit
        self.repeats = repeats_for(options.level, options.repeats)
        self.heap = _Heap()
        self.logged = _Logged()
        self.plugin: Plugin | None = None
        self.debug_plugin: Plugin | None = None  # for the thread checks (_checked)
        self.spec: PluginSpec | None = None
        self.declared: list[idl.InterfaceSpec] = []

    # -- running one check

    def _wanted(self, check_id: str) -> bool:
        if check_id in self.o.done:
            return False
        return not self.o.only or any(fnmatch.fnmatchcase(check_id, p) for p in self.o.only) or check_id == "load"

    def _run(self, check_id: str, title: str, body: Callable[[Check], None]) -> Check | None:
        if not self._wanted(check_id):
            if check_id not in self.o.done:
                self.emit({"unselected": check_id})  # what --only could have chosen, for a typo's message
            return None
        check = Check(check_id, title)
        self.emit({"start": check_id, "title": title})
        self.logged.lines.clear()
        with timed(check):
            try:
                body(check)
            except _Skip as exc:
                check.status, check.message = "skip", str(exc)
            except Exception as exc:  # a bug of the validator itself: say so, go on
                check.status = "fail"
                check.message = f"the validator failed: {type(exc).__name__}: {exc}"
        check.details.extend(self.logged.lines)
        self.emit({"check": check.to_json()})
        return check

    def tick(self, check_id: str, what: str) -> None:
        self.emit({"tick": check_id, "what": what})

    @staticmethod
    def fail(check: Check, message: str) -> None:
        check.status = "fail"
        check.message = message if not check.message else check.message + "\n" + message

    @staticmethod
    def warn(check: Check, message: str) -> None:
        if check.status == "pass":
            check.status = "warn"
        check.message = message if not check.message else check.message + "\n" + message

    # -- the whole run

    def run(self) -> None:
        logging.getLogger("ferrule").addHandler(self.logged)
        try:
            self._all()
        finally:
            logging.getLogger("ferrule").removeHandler(self.logged)
        self.emit({"done": True})

    def _all(self) -> None:
        title = "the plugin loads: the file, its entry point, descriptor and init"
        if "load" in self.o.done:  # a later process, after a crash: load again, quietly
            again = Check("load.again", "the plugin loads again after a crash")
            self._load(again)
            if again.status != "pass":
                again.message = "it loaded in an earlier process but not in this one: " + again.message
                self.emit({"check": again.to_json()})
        else:
            self._run("load", title, self._load)
        if self.plugin is None:
            return
        spec = self.spec
        assert spec is not None
        self._run("descriptor.metadata", "metadata: description, license, id and version", self._metadata)
        self._run("descriptor.docs", "every function and implementation has a doc", self._docs)
        self._interfaces(spec)
        level = self.o.level
        if level >= 2:
            for fn in spec.functions:
                self._run(f"function.{fn.name}", f"{fn.name}{fn.signature}: {self.repeats} calls with generated "
                          "arguments", partial(self._calls, fn=fn))
            for offer, iface in self._matched(spec):
                self._run(f"interface.{offer.id}/{offer.revision}.{offer.name}", f"{iface.name} {offer.name!r}: every method called "
                          f"{self.repeats} times", partial(self._methods, offer=offer, iface=iface))
        if level >= 4:
            if not any(fn.thread_safe for fn in spec.functions) and not any(
                    i.thread_safe or o.thread_safe for o, i in self._matched(spec)):
                self._run("threads", "thread-safety claims hold", self._none_thread_safe)
            for fn in spec.functions:
                if fn.thread_safe:
                    self._run(f"threads.function.{fn.name}", f"{fn.name} is thread-safe: {THREADS} threads call it at "
                              "once and agree with serial calls", partial(self._threads, fn=fn))
            for offer, iface in self._matched(spec):
                if iface.thread_safe or offer.thread_safe:
                    self._run(f"threads.interface.{offer.id}/{offer.revision}.{offer.name}", f"{iface.name} {offer.name!r} is "
                              f"thread-safe: {THREADS} threads call one instance at once",
                              partial(self._instance_threads, offer=offer, iface=iface))
        if level >= 5:
            self._run("lifecycle.load-close", f"{CYCLES} load/close cycles (init and shutdown) leak nothing",
                      self._load_cycles)
            for offer, iface in self._matched(spec):
                self._run(f"lifecycle.instances.{offer.id}/{offer.revision}.{offer.name}", f"{CYCLES} create/destroy cycles of "
                          f"{iface.name} {offer.name!r} leak nothing", partial(self._instance_cycles, offer=offer, iface=iface))
            for fn in spec.functions:
                self._run(f"leaks.function.{fn.name}", f"{CALL_CYCLES} calls of {fn.name} leak nothing",
                          partial(self._call_leaks, fn=fn))
        self._run("lifecycle.shutdown", "close() runs shutdown cleanly", self._shutdown)
        if self.own_process:
            self._run("lifecycle.processes", "no process the plugin started outlives close()", self._processes)

    # -- load and the descriptor

    def _load(self, check: Check) -> None:
        self.tick("load", "load")
        try:
            self.plugin = load(self.o.path, config=self.o.config)
        except FerruleError as exc:
            check.status, check.message = "fail", str(exc)
            check.details.append(f"raised {type(exc).__name__}")
            if isinstance(exc, PluginInitError) and self.o.config is None:
                check.details.append("init ran with no config: if the plugin needs one, pass it with --config")
            if self.o.memory_limit and any(w in str(exc).lower() for w in ("map segment", "memory")):
                check.details.append(f"the validator's child has {self.o.memory_limit} MiB of address space "
                                     "(--memory-limit): give it more if the plugin needs it")
            return
        self.spec = self.plugin._spec
        s = self.spec
        check.message = (f"{s.name} {s.version} ({s.id}), ABI {s.abi_version[0]}.{s.abi_version[1]}: "
                         f"{len(s.functions)} functions, {len(s.offers)} implementations")

    def _metadata(self, check: Check) -> None:
        s = self.spec
        assert s is not None
        if not s.description.strip():
            self.warn(check, "the description is empty: hosts and `ferrule list` show it; say in a line what the "
                             "plugin does")
        if not s.license:
            self.warn(check, "no license: set an SPDX expression (e.g. MIT or Apache-2.0 OR MIT), so that hosts and "
                             "packagers know the terms")
        else:
            from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
            try:
                canonical = canonicalize_license_expression(s.license)
            except InvalidLicenseExpression:
                self.warn(check, f"license {s.license!r} is not an SPDX expression: use identifiers from the SPDX "
                                 "list joined by AND/OR (e.g. MIT, Apache-2.0 OR MIT, LicenseRef-Proprietary)")
            else:
                if canonical != s.license:
                    self.warn(check, f"license {s.license!r} is an SPDX expression better written {canonical!r}")
        if s.id.startswith("org.example."):
            self.warn(check, f"the id {s.id!r} is the example one: change it to a reverse-DNS name of your own "
                             "before you publish, since hosts tell plugins apart by it")
        from packaging.version import InvalidVersion, Version
        try:
            Version(s.version)
        except InvalidVersion:
            self.warn(check, f"version {s.version!r} is not a version number (like 1.2.0): hosts and wheel builds "
                             "compare versions")

    def _docs(self, check: Check) -> None:
        s = self.spec
        assert s is not None
        bare = [f.name for f in s.functions if not (f.doc or "").strip()]
        if bare:
            self.warn(check, f"{len(bare)} of {len(s.functions)} functions have no doc: hosts show it in help() and "
                             "`ferrule inspect`; write one (a /// comment in Rust, the doc argument of "
                             "FERRULE_FUNCTION in C)")
            check.details.extend(f"no doc: {name}" for name in bare)
        bare_offers = [f"{o.id} {o.name!r}" for o in s.offers if not (o.doc or "").strip()]
        if bare_offers:
            self.warn(check, f"{len(bare_offers)} implementations have no doc")
            check.details.extend(f"no doc: {name}" for name in bare_offers)

    # -- interfaces

    def _interfaces(self, spec: PluginSpec) -> None:
        if not self.o.interfaces:
            if spec.offers:
                self._run("interfaces", "implementations match the host's declarations", self._no_modules)
            return
        for module in self.o.interfaces:
            # Imported whether or not its check is reported (--only, or a
            # later child after a crash): the interface checks need it.
            check = Check(f"interfaces.module.{module}", f"the declarations of {module} import")
            try:
                from .._codegen.generate import declarations
                found = declarations(module)
            except Exception as exc:  # GenerateError, or the module's own error
                check.status, check.message = "fail", f"{type(exc).__name__}: {exc}"
            else:
                self.declared.extend(found)
                check.message = f"{module} declares " + ", ".join(f"{i.id}/{i.revision}" for i in found)
            if self._wanted(check.id):
                self.emit({"start": check.id, "title": check.title})
                self.emit({"check": check.to_json()})
        keys = {i.key: i for i in self.declared}
        for offer in spec.offers:
            iface = keys.get(offer.key)
            self._run(f"interfaces.{offer.id}/{offer.revision}.{offer.name}.fingerprint",
                      f"{offer.id}/{offer.revision} {offer.name!r} has its declaration's layout",
                      partial(self._fingerprint, offer=offer, iface=iface))

    def _none_thread_safe(self, check: Check) -> None:
        raise _Skip("nothing is flagged thread-safe, so hosts serialise every call into an instance and there is no "
                    "claim to check; flag the functions that are (FERRULE_FN_THREAD_SAFE in C and C++; Rust plugin "
                    "functions always are) and hosts may call them from several threads at once")

    def _no_modules(self, check: Check) -> None:
        raise _Skip("the plugin offers implementations, but no declarations were given: pass --interfaces MODULE "
                    "(the host's declaration module) to check their layouts and call their methods")

    def _fingerprint(self, check: Check, offer: OfferSpec, iface: idl.InterfaceSpec | None) -> None:
        assert self.spec is not None
        if iface is None:
            self.warn(check, f"no module given declares {offer.id}/{offer.revision}, so nothing checks its layout: "
                             "pass the module that declares it with --interfaces")
            return
        try:
            check_offer(self.spec.id, offer, iface)
        except FerruleError as exc:
            check.status, check.message = "fail", str(exc)
            return
        check.message = f"fingerprint {offer.fingerprint:#018x}, {offer.method_count} methods"

    def _matched(self, spec: PluginSpec) -> Iterator[tuple[OfferSpec, idl.InterfaceSpec]]:
        """Offers whose declaration was given and matches."""
        keys = {i.key: i for i in self.declared}
        for offer in spec.offers:
            iface = keys.get(offer.key)
            if iface is not None and offer.fingerprint == iface.fingerprint and offer.method_count == len(iface.methods):
                yield offer, iface

    def _implementation(self, offer: OfferSpec, iface: idl.InterfaceSpec) -> Any:
        assert self.plugin is not None
        impl: Any = self.plugin.implementation(iface.cls, offer.name)
        assert impl is not None
        return impl

    # -- calls

    def _judge(self, check: Check, what: str, args: tuple[Any, ...], outcome: tuple[str, Any],
               problem: Callable[[Any], str | None], counts: dict[str, int]) -> bool:
        """Record one call's outcome; False when it failed the check."""
        kind, value = outcome
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "ok":
            wrong = problem(value)
            if wrong is None:
                return True
            self.fail(check, f"{what}{_shown(args)} {wrong}")
        elif kind == "error":  # the plugin's own, declared failure
            if value.plugin_message == NO_MESSAGE and "without a message" not in check.message:
                self.warn(check, f"{what}{_shown(args)} failed without a message: call host->set_error (ferrule_fail "
                                 "in C) before returning a failure status, so that the caller learns why")
            return True
        elif kind == "panic":
            self.fail(check, f"{what}{_shown(args)} panicked: {value.plugin_message or value}. A panic is a bug: "
                             "return an error (Err(...) in Rust) for input the function does not accept")
        else:
            self.fail(check, f"{what}{_shown(args)} raised {type(value).__name__}: {value}")
        return False

    def _inputs(self, name: str, count: int, make: Callable[[Draw], tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        out = []
        for i in range(count):
            draw = Draw(rng_for(self.o.seed, name, i), edges=self.o.level >= 3 and i > 0)
            out.append(make(draw))
        return out

    def _calls(self, check: Check, fn: FunctionSpec) -> None:
        assert self.plugin is not None
        if self.repeats == 0:
            raise _Skip("--repeats 0")
        call = self.plugin.functions[fn.name]
        sig = fn.signature
        # str, bytes and buf arguments are the caller's own memory, lent read-only.
        readonly = [i for i, p in enumerate(sig.params) if p.type.kind in ("buf", "str", "bytes")]
        counts: dict[str, int] = {}
        for i, args in enumerate(self._inputs(fn.name, self.repeats, lambda d: d.args(sig))):
            self.tick(check.id, f"call {i + 1} of {self.repeats}: {fn.name}{_shown(args)}")
            before = [_contents(args[j]) for j in readonly]
            outcome = _outcome(call, *args)
            ok = self._judge(check, fn.name, args, outcome, partial(check_result, sig.result), counts)
            for j, old in zip(readonly, before):
                if _contents(args[j]) != old:
                    param = sig.params[j]
                    fix = ("declare it mutbuf, or write a copy" if param.type.kind == "buf" else
                           "it is the caller's own (immutable) object: write a copy")
                    self.fail(check, f"{fn.name}{_shown(args)} wrote into its read-only parameter {param.name!r} "
                                     f"({param.type.name}): {fix}")
                    ok = False
            if not ok:
                break
        check.message = check.message or self._summary(counts)

    @staticmethod
    def _summary(counts: dict[str, int]) -> str:
        parts = [f"{counts.get('ok', 0)} returned"]
        if counts.get("error"):
            parts.append(f"{counts['error']} failed with the plugin's own error (allowed)")
        return ", ".join(parts)

    def _methods(self, check: Check, offer: OfferSpec, iface: idl.InterfaceSpec) -> None:
        if self.repeats == 0:
            raise _Skip("--repeats 0")
        self.tick(check.id, f"create {iface.name} {offer.name!r}")
        outcome = _outcome(self._implementation(offer, iface).create)
        if outcome[0] != "ok":
            self._judge(check, f"create {iface.name} {offer.name!r}", (), outcome, lambda v: None, {})
            if outcome[0] == "error":
                self.fail(check, f"create {iface.name} {offer.name!r} failed: {outcome[1]}")
            return
        counts: dict[str, int] = {}
        with outcome[1] as instance:
            for m in iface.methods:
                bound = getattr(instance, m.name)
                what = f"{iface.name}.{m.name}"
                for i, args in enumerate(self._inputs(f"{offer.id}/{offer.revision}.{offer.name}.{m.name}", self.repeats,
                                                      partial(Draw.method_args, method=m))):
                    self.tick(check.id, f"call {i + 1} of {self.repeats}: {what}{_shown(args)}")
                    result = _outcome(bound, *args)
                    if not self._judge(check, what, args, result, partial(check_typed, m.result), counts):
                        break
            self.tick(check.id, f"destroy {iface.name} {offer.name!r}")
        check.message = check.message or self._summary(counts)

    # -- threads

    def _agree(self, check: Check, what: str, call: Callable[..., Any], inputs: list[tuple[Any, ...]],
               rounds: int) -> None:
        def serially(a: tuple[Any, ...]) -> tuple[str, Any]:
            self.tick(check.id, f"serial call {what}{_shown(a)}")
            return _key(_outcome(call, *_fresh(a)))

        serial = [serially(a) for a in inputs]
        again = [serially(a) for a in inputs]
        deterministic = all(x[0] == y[0] and same(x[1], y[1]) for x, y in zip(serial, again))
        problems: list[str] = []
        lock = threading.Lock()

        start = threading.Barrier(THREADS)

        def worker(index: int) -> None:
            order = list(range(len(inputs)))
            rng_for(self.o.seed, what, "thread", index).shuffle(order)
            start.wait()  # all at once: a thread that finished before the next began would test nothing
            for _ in range(rounds):
                for j in order:
                    self.tick(check.id, f"thread {index}: {what}{_shown(inputs[j])}")
                    got = _key(_outcome(call, *_fresh(inputs[j])))
                    if deterministic and not (got[0] == serial[j][0] and same(got[1], serial[j][1])):
                        with lock:
                            problems.append(f"{what}{_shown(inputs[j])} gave {got[1]!r} from thread {index}, "
                                            f"{serial[j][1]!r} serially")
                        return

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", ThreadContractWarning)
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        broken = sorted({str(w.message) for w in seen if issubclass(w.category, ThreadContractWarning)})
        if broken:
            self.fail(check, "the plugin breaks the thread contract (docs/interfaces.md, \"Threads\"):")
            check.details.extend(broken[:10])
        if problems:
            self.fail(check, f"called from {THREADS} threads at once, it disagrees with serial calls, although it is "
                             "flagged thread-safe: guard its shared state, or drop the thread-safe flag")
            check.details.extend(problems[:10])
        elif not deterministic:
            check.message = ("no crash; serial calls with the same arguments give different results, so concurrent "
                             "results were not compared")
        else:
            check.message = f"{THREADS} threads, {THREADS * rounds * len(inputs)} calls, all equal to serial results"

    def _checked(self) -> Plugin:
        """The plugin once more, in a debug host: its calls take the checked
        path, which releases the GIL also for QUICK functions (so threads
        really overlap) and reports breaches of the thread contract."""
        if self.debug_plugin is None:
            self.debug_plugin = PluginHost(debug=True).load(self.o.path, config=self.o.config)
        return self.debug_plugin

    def _threads(self, check: Check, fn: FunctionSpec) -> None:
        if self.repeats == 0:
            raise _Skip("--repeats 0")
        sig = fn.signature
        inputs = self._inputs(fn.name, min(8, max(self.repeats, 1)), lambda d: d.args(sig))
        self._agree(check, fn.name, self._checked().functions[fn.name], inputs, _rounds(self.repeats, len(inputs)))

    def _instance_threads(self, check: Check, offer: OfferSpec, iface: idl.InterfaceSpec) -> None:
        if self.repeats == 0:
            raise _Skip("--repeats 0")
        impl: Any = self._checked().implementation(iface.cls, offer.name)
        with impl.create() as instance:
            for m in iface.methods:
                inputs = self._inputs(f"{offer.id}/{offer.revision}.{offer.name}.{m.name}", min(8, max(self.repeats, 1)),
                                      partial(Draw.method_args, method=m))
                self._agree(check, f"{iface.name}.{m.name}", getattr(instance, m.name), inputs,
                            _rounds(self.repeats, len(inputs)))
                if check.status == "fail":
                    return
        check.message = f"{len(iface.methods)} methods, {THREADS} threads each"

    # -- lifecycle and leaks

    def _measure(self, check: Check, what: str, once: Callable[[], None], cycles: int = CYCLES) -> None:
        for i in range(_WARMUP):
            self.tick(check.id, f"warm-up {what} {i + 1}")
            once()
        before = self.heap.snapshot()
        for i in range(cycles):
            self.tick(check.id, f"{what} {i + 1} of {cycles}")
            once()
        after = self.heap.snapshot()
        found = _leaks(before, after, cycles, what)
        for line in found:
            self.fail(check, line)
        if not found:
            grew = after[0] - before[0]
            check.message = (f"heap {grew:+d} bytes, threads {after[1] - before[1]:+d}, fds {after[2] - before[2]:+d} "
                             f"over {cycles} {what}") if self.heap.available else "heap not measured (no mallinfo2)"

    def _load_cycles(self, check: Check) -> None:
        def once() -> None:
            load(self.o.path, config=self.o.config).close()
        self._measure(check, "load/close cycles", once)

    def _instance_cycles(self, check: Check, offer: OfferSpec, iface: idl.InterfaceSpec) -> None:
        impl: Any = self._implementation(offer, iface)
        self._measure(check, "create/destroy cycles", lambda: impl.create().close())

    def _call_leaks(self, check: Check, fn: FunctionSpec) -> None:
        assert self.plugin is not None
        call = self.plugin.functions[fn.name]
        # The inputs of the call check, edge values and error paths included, in turn.
        inputs = self._inputs(fn.name, min(_WARMUP, max(self.repeats, 1)), lambda d: d.args(fn.signature))
        turn = iter(range(1 << 62))

        def once() -> None:
            _outcome(call, *_fresh(inputs[next(turn) % len(inputs)]))

        self._measure(check, "calls", once, CALL_CYCLES)

    def _shutdown(self, check: Check) -> None:
        assert self.plugin is not None
        self.tick("lifecycle.shutdown", "close")
        try:
            if self.debug_plugin is not None:
                self.debug_plugin.close()
            self.plugin.close()
        except FerruleError as exc:
            self.fail(check, f"close() raised {type(exc).__name__}: {exc}")
        if self.logged.lines:
            self.warn(check, "the plugin logged warnings or errors while shutting down")

    def _processes(self, check: Check) -> None:
        """Processes the plugin started and left running: this process is
        their subreaper (child.py), so also double-forked ones are its children."""
        self.tick(check.id, "waiting for the plugin's processes")
        deadline = time.monotonic() + 0.5
        while True:
            alive = _children()
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        for pid, _ in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:  # reap what ended, killed or not
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if alive:
            self.fail(check, f"{len(alive)} processes the plugin started were still running after close (the "
                             "validator killed them): stop and wait for them in shutdown")
            check.details.extend(f"pid {pid}: {command}" for pid, command in alive)
        else:
            check.message = "none left running"
