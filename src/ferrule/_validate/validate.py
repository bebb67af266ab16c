"""``ferrule validate``: the file checks here, the rest in a child process
(or in process with --in-process), gathered into one Report.

The child is watched: a crash or a call that outlasts the timeout fails the
check it happened in, naming the call and its arguments, and a new child
goes on with the checks not yet done.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import json
import os
import queue
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from .._errors import LibraryNotFoundError
from .._loader.library import plugin_file
from .._spawn import python_command, signal_name
from .files import file_checks
from .report import STATUSES, Check, Report
from .runner import LEVELS, Options, Runner, repeats_for

__all__ = ["add_parser", "validate"]

MAX_RESTARTS = 20
_TAIL = 20  # lines of the child's output kept for a crash report


def validate(path: str, *, level: int = 3, seed: int | None = None, repeats: int | None = None,
             timeout: float = 10.0, config: str | None = None, interfaces: tuple[str, ...] = (),
             only: tuple[str, ...] = (), in_process: bool = False, glibc: str | None = None,
             memory_limit: int = 4096) -> Report:
    """Check the plugin library at path. ``timeout`` bounds each call (and
    each step of a lifecycle check); ``seed`` None picks one, which the
    report gives for --seed."""
    if not 1 <= level <= 5:
        raise ValueError(f"level must be 1 to 5, got {level}")
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    start = time.perf_counter()
    report = Report(path, level, seed, repeats_for(level, repeats), "in-process" if in_process else "child")
    report.checks.extend(_file_checks(path, glibc))
    options = Options(os.path.abspath(path) if os.sep in path else path, level, seed, repeats, config,
                      tuple(interfaces), tuple(only), 0 if in_process else memory_limit)
    if timeout <= 0:
        raise ValueError(f"timeout must be more than 0 seconds, got {timeout:g}")
    if repeats is not None and repeats < 0:
        raise ValueError(f"repeats must be 0 or more, got {repeats}")
    if memory_limit < 0:
        raise ValueError(f"memory limit must be 0 (none) or more MiB, got {memory_limit}")
    unselected: set[str] = set()  # the ids --only left out, for a typo's message
    if in_process:
        report.checks.extend(_in_process(options, timeout, unselected))
    else:
        report.checks.extend(_in_children(options, timeout, unselected))
    ran = [c.id for c in report.checks]
    for pattern in only:
        if not any(fnmatch.fnmatchcase(i, pattern) for i in ran):
            report.checks.append(Check("validator.only", f"--only {pattern!r} selects a check", "fail",
                                       f"--only {pattern!r} matched no check, so nothing it meant was checked; the "
                                       "ids it could choose at this level are listed below",
                                       sorted(set(ran) | unselected)))
    report.seconds = time.perf_counter() - start
    return report


def _file_checks(path: str, glibc: str | None) -> list[Check]:
    """The file checks, of the file load opens: for a bare name, the one in
    FERRULE_PATH (never one on the loader path or in the current directory)."""
    try:
        found = plugin_file(path)
    except LibraryNotFoundError as exc:
        return [Check("file.elf", "an ELF shared library for this interpreter", "skip", f"not run: {exc}")]
    checks = file_checks(found, glibc=glibc)
    if os.sep not in path:
        checks[0].details.insert(0, f"{path} is {found}, found through FERRULE_PATH: the file load opens")
    return checks


def _reproduce(options: Options, check_id: str, in_process: bool) -> str:
    return (f"reproduce with: ferrule validate {shlex.quote(options.path)} --level {options.level} --seed "
            f"{options.seed}{' --in-process' if in_process else ''} --only {shlex.quote(check_id)}")


def _lost(options: Options, check_id: str, title: str, what: str, how: str, tail: list[str], after: str = "",
          in_process: bool = False) -> Check:
    """The failure of a check whose process crashed or hung."""
    message = (f"{how} during {what}" if what else how) + after
    return Check(check_id, title, "fail", f"{message}\n{_reproduce(options, check_id, in_process)}",
                 [f"output: {line}" for line in tail])


class _BadEvent(Exception):
    """The channel carried something the child's runner did not write."""


_KEYS = {"start": str, "tick": str, "check": dict, "done": bool, "unselected": str}
_LINE_MAX = 4096  # bytes kept of one line of the plugin's output


def _event(line: bytes, pid: int) -> dict[str, Any]:
    """One event, checked: a plugin that writes to the channel's descriptor
    gets a failure, not a crash of the validator or a forged pass."""
    try:
        event = json.loads(line)
    except ValueError:
        raise _BadEvent(f"a line that is not one of its events ({line[:60]!r}): the plugin writes to a file "
                        "descriptor it did not open") from None
    if not isinstance(event, dict) or event.get("pid") != pid:
        if isinstance(event, dict) and isinstance(event.get("pid"), int):
            raise _BadEvent(f"an event from process {event['pid']}, not {pid}: the plugin forked, and the copy went on "
                            "running the checks")
        raise _BadEvent(f"a line that is not one of its events ({line[:60]!r}): the plugin writes to a file "
                        "descriptor it did not open")
    kinds = [k for k in _KEYS if k in event]
    if len(kinds) != 1 or not isinstance(event[kinds[0]], _KEYS[kinds[0]]):
        raise _BadEvent(f"a malformed event ({line[:60]!r})")
    if kinds[0] == "check":
        body = event["check"]
        if body.get("status") not in STATUSES or not isinstance(body.get("id"), str):
            raise _BadEvent(f"a malformed check ({line[:60]!r})")
    return event


class _Child:
    """One child process, the events it sends and the tail of its output."""

    def __init__(self, options: Options):
        read, write = os.pipe()
        self.proc = subprocess.Popen(python_command("ferrule._validate.child", json.dumps(options.to_json()),
                                                    str(write)),
                                     pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        os.close(write)
        assert self.proc.stdout is not None
        self.events = read
        self.output = self.proc.stdout.fileno()
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL)
        self._partial = {read: b"", self.output: b""}
        self._open = {read, self.output}

    def _line(self, data: bytes) -> None:
        text = data[-_LINE_MAX:].decode("utf-8", "replace")
        self.tail.append(text if len(text) <= 300 else text[:300] + f"... ({len(text)} characters)")

    def read(self, deadline: float) -> list[dict[str, Any]] | None:
        """The events that arrive before deadline; None at the deadline, []
        once the child closed the channel. Raises _BadEvent."""
        while self.events in self._open:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select(list(self._open), [], [], left)
            if self.events in ready:  # events first: a start event must not clear output that came after it
                ready = [self.events]
            events: list[dict[str, Any]] = []
            for fd in ready:
                lines = self._take(fd)
                if fd == self.events:
                    events.extend(_event(line, self.proc.pid) for line in lines)
                else:
                    for line in lines:
                        self._line(line)
            if events:
                return events
        return []

    def _take(self, fd: int) -> list[bytes]:
        """One read of fd: the lines it completes (and at the end of the
        plugin's output, its last line without a newline)."""
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            self._open.discard(fd)
            rest, self._partial[fd] = self._partial[fd], b""
            return [rest] if rest and fd == self.output else []
        *lines, rest = (self._partial[fd] + chunk).split(b"\n")
        # A line without an end is kept to its last bytes: output with no
        # newline costs neither memory nor time.
        self._partial[fd] = rest if fd == self.events else rest[-_LINE_MAX:]
        return lines

    def drain(self) -> None:
        """What the child wrote before it ended, without waiting for a
        process the plugin started that still holds the pipe."""
        while self.output in self._open and select.select([self.output], [], [], 0)[0]:
            for line in self._take(self.output):
                self._line(line)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def close(self) -> None:
        self.kill()  # also what the plugin left running in the child's process group
        os.close(self.events)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _ended(returncode: int) -> str:
    if returncode < 0:
        return f"the plugin crashed the process ({signal_name(-returncode)})"
    return f"the process exited with status {returncode}"


class _Progress:
    """What a run's events say so far: the checks reported, and the check
    under way with its last step, to name when a process crashes or hangs."""

    def __init__(self, unselected: set[str]):
        self.checks: list[Check] = []
        self.unselected = unselected
        self.current: tuple[str, str] | None = None  # (id, title)
        self.what = ""
        self.finished = False

    def apply(self, event: dict[str, Any]) -> None:
        if "start" in event:
            self.current, self.what = (event["start"], str(event.get("title", ""))), ""
        elif "tick" in event:
            self.what = str(event.get("what", ""))
        elif "check" in event:
            self.checks.append(Check.from_json(event["check"]))
            self.current = None
        elif "unselected" in event:
            self.unselected.add(event["unselected"])
        elif event.get("done"):
            self.finished = True


def _in_children(options: Options, timeout: float, unselected: set[str]) -> list[Check]:
    run = _Progress(unselected)
    checks = run.checks
    for _ in range(MAX_RESTARTS + 1):
        # What is reported (a crashed check too) is done: the next child skips it.
        child = _Child(replace(options, done=frozenset(c.id for c in checks)))
        run.current, run.what, run.finished = None, "", False
        lost = ""  # why the child's run ended early, when it did not crash
        try:
            deadline = time.monotonic() + timeout + 30  # the first event waits for the interpreter to start
            while not run.finished:
                try:
                    events = child.read(deadline)
                except _BadEvent as exc:
                    child.kill()
                    lost = f"the validator's channel received {exc}"
                    break
                if events is None:  # hung
                    child.kill()
                    lost = f"no answer within {timeout:g} s (--timeout)"
                    break
                if not events:  # the channel closed: the child ended
                    break
                for event in events:
                    if "start" in event:
                        child.tail.clear()  # the output of this check on
                    run.apply(event)
                deadline = time.monotonic() + timeout
            code = child.wait(timeout) if not lost else child.proc.returncode
            child.drain()
        finally:
            child.close()
        current = run.current
        if run.finished:
            if code is None:
                checks.append(Check("lifecycle.exit", "the process exits cleanly after the checks", "fail",
                                    f"the process did not exit within {timeout:g} s after every check: it hangs at "
                                    "exit, in a static destructor or an atexit handler of the plugin, or waiting for a "
                                    "thread the plugin left running", list(child.tail)))
            elif code != 0:
                checks.append(Check("lifecycle.exit", "the process exits cleanly after the checks", "fail",
                                    f"{_ended(code)} at exit, after every check: a static destructor or an atexit "
                                    "handler of the plugin, or a thread it left running", list(child.tail)))
            return checks
        if code is None and not lost:
            lost = "the process closed the validator's channel and did not exit"
        if current is None:
            how = lost or _ended(code if code is not None else 0)
            checks.append(Check("validator", "the validator's process runs", "fail",
                                f"{how}, outside any check", list(child.tail)))
            return checks
        checks.append(_lost(options, *current, run.what, lost or _ended(code if code is not None else 0),
                            list(child.tail)))
        if current[0] == "load":
            return checks
    checks.append(Check("validator", "the validator's process runs", "fail",
                        f"stopped after {MAX_RESTARTS} crashes or hangs; the checks not yet run were not run"))
    return checks


def _in_process(options: Options, timeout: float, unselected: set[str]) -> list[Check]:
    """The runner on a thread of this process, watched for hangs (a crash
    ends this process: --in-process is for a debugger)."""
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    runner = Runner(options, events.put)
    # The plugin's output goes to stderr meanwhile, so that stdout carries
    # the report alone (--json).
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        threading.Thread(target=runner.run, name="ferrule-validate", daemon=True).start()
        return _watch(events, options, timeout, unselected)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _watch(events: queue.Queue[dict[str, Any]], options: Options, timeout: float,
           unselected: set[str]) -> list[Check]:
    run = _Progress(unselected)
    while not run.finished:
        try:
            run.apply(events.get(timeout=timeout))
        except queue.Empty:
            _hung.set()
            if run.current is None:
                run.checks.append(Check("validator", "the validator's checks run", "fail",
                                        f"no word from the checks for {timeout:g} s outside any check"))
            else:
                run.checks.append(_lost(options, *run.current, run.what, f"no answer within {timeout:g} s "
                                        "(--timeout)", [], "; the call is still running, so no further checks ran",
                                        in_process=True))
            break
    return run.checks


# Set when an in-process check hung: its thread is still inside the plugin,
# so the CLI leaves with os._exit rather than wait for it at exit.
_hung = threading.Event()


# -- the command

def _run(args: argparse.Namespace) -> int:
    report = validate(args.path, level=args.level, seed=args.seed, repeats=args.repeats, timeout=args.timeout,
                      config=args.config, interfaces=tuple(args.interfaces), only=tuple(args.only),
                      in_process=args.in_process, glibc=args.glibc, memory_limit=args.memory_limit)
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(report.junit())
    print(report.json() if args.json else report.text(verbose=args.verbose))
    status = 0 if report.passed and not (args.strict and report.counts()["warn"]) else 1
    if _hung.is_set():
        sys.stdout.flush()
        os._exit(status)
    return status


def _level(text: str) -> int:
    if text not in ("1", "2", "3", "4", "5"):
        raise argparse.ArgumentTypeError(f"must be 1 to 5, got {text!r}")
    return int(text)


def add_parser(sub: Any) -> None:
    levels = "; ".join(f"{n}: {what}" for n, what in LEVELS.items())
    cmd = sub.add_parser(
        "validate",
        help="check that a built plugin conforms: file, descriptor, calls, threads, lifecycle",
        description="Check a built plugin library the way hosts will use it, in a child process (a crash or hang "
        f"fails the check it happened in). Levels: {levels}. Exit status 0 when no check fails.",
    )
    cmd.add_argument("path", metavar="PATH", help="the plugin's shared library (a bare name is not searched for in "
                     "the current directory: pass ./libx.so)")
    cmd.add_argument("--level", type=_level, default=3, help="how thorough, 1 (quick) to 5 (thorough); default 3")
    cmd.add_argument("--seed", type=int, default=None, help="the seed of generated arguments (default: a new one, "
                     "printed in the report)")
    cmd.add_argument("--repeats", type=int, default=None, metavar="N", help="calls per function and method "
                     "(default by level: 0, 1, 10, 25, 50)")
    cmd.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                     help="longest wait for one call or step (default 10)")
    cmd.add_argument("--config", default=None, help="the config string passed to the plugin's init")
    cmd.add_argument("--interfaces", action="append", default=[], metavar="MODULE",
                     help="a module declaring interfaces (repeatable): check the plugin's implementations of them")
    cmd.add_argument("--only", action="append", default=[], metavar="PATTERN",
                     help="run only the checks whose id matches (glob, repeatable), e.g. 'function.add'")
    cmd.add_argument("--glibc", default=None, metavar="X.Y",
                     help="fail when the plugin needs a glibc newer than this (e.g. 2.28 for manylinux_2_28)")
    cmd.add_argument("--memory-limit", type=int, default=4096, metavar="MIB",
                     help="address space of the child process, in MiB (default 4096; 0 for none)")
    cmd.add_argument("--in-process", action="store_true",
                     help="run the checks in this process (for a debugger: a crash ends the validator)")
    cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    cmd.add_argument("--junit", default=None, metavar="FILE", help="also write the report as JUnit XML to FILE")
    cmd.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    cmd.add_argument("-v", "--verbose", action="store_true", help="list passed checks too")
    cmd.set_defaults(run=_run)
