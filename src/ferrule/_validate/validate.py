"""``ferrule validate``: the file checks here, the rest in a child process
(or in process with --in-process), gathered into one Report.

The child is watched: a crash or a call that outlasts the timeout fails the
check it happened in, naming the call and its arguments, and a new child
goes on with the checks not yet done.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from .._spawn import python_command, signal_name
from .report import Check, Report
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
    from .files import file_checks
    report.checks.extend(file_checks(path, glibc=glibc))
    options = Options(os.path.abspath(path) if os.sep in path else path, level, seed, repeats, config,
                      tuple(interfaces), tuple(only), 0 if in_process else memory_limit)
    if in_process:
        report.checks.extend(_in_process(options, timeout))
    else:
        report.checks.extend(_in_children(options, timeout))
    report.seconds = time.perf_counter() - start
    return report


def _reproduce(options: Options, check_id: str) -> str:
    return f"reproduce with: ferrule validate {options.path} --level {options.level} --seed {options.seed} " \
           f"--only '{check_id}'"


def _lost(options: Options, check_id: str, title: str, what: str, how: str, tail: list[str], after: str = "") -> Check:
    """The failure of a check whose process crashed or hung."""
    message = (f"{how} during {what}" if what else how) + after
    return Check(check_id, title, "fail", f"{message}\n{_reproduce(options, check_id)}",
                 [f"output: {line}" for line in tail])


class _Child:
    """One child process and the events it sends."""

    def __init__(self, options: Options):
        read, write = os.pipe()
        self.proc = subprocess.Popen(python_command("ferrule._validate.child", json.dumps(options.to_json()),
                                                    str(write)),
                                     pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        os.close(write)
        self.events = read
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL)
        self._buffers = {read: b"", self.proc.stdout.fileno() if self.proc.stdout else -1: b""}

    def read(self, deadline: float) -> list[dict[str, Any]] | None:
        """The events that arrive before deadline; None at the deadline, []
        once the child closed its end and exited."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.fileno()
        while True:
            open_fds = [fd for fd in (self.events, out) if fd in self._buffers]
            if not open_fds:
                self.proc.wait()
                return []
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select(open_fds, [], [], left)
            if self.events in ready:  # events first: a start event must not clear output that came after it
                ready = [self.events]
            events: list[dict[str, Any]] = []
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    rest = self._buffers.pop(fd)
                    if fd == out and rest:
                        self.tail.append(rest.decode("utf-8", "replace"))
                    continue
                data = self._buffers[fd] + chunk
                *lines, self._buffers[fd] = data.split(b"\n")
                for line in lines:
                    if fd == self.events:
                        events.append(json.loads(line))
                    else:
                        self.tail.append(line.decode("utf-8", "replace"))
            if events:
                return events

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


def _in_children(options: Options, timeout: float) -> list[Check]:
    checks: list[Check] = []
    done: set[str] = set()
    for _ in range(MAX_RESTARTS + 1):
        child = _Child(replace(options, done=frozenset(done)))
        current: tuple[str, str] | None = None  # (id, title)
        what = ""
        finished = False
        try:
            deadline = time.monotonic() + timeout + 30  # the first event waits for the interpreter to start
            while True:
                events = child.read(deadline)
                if events is None:  # hung
                    child.kill()
                    if current is None:
                        checks.append(Check("validator", "the validator's process runs", "fail",
                                            f"no word from the process for {timeout:g} s outside any check",
                                            list(child.tail)))
                        return checks
                    checks.append(_lost(options, *current, what, f"no answer within {timeout:g} s (--timeout)",
                                        list(child.tail)))
                    break
                if not events:  # exited
                    break
                for event in events:
                    if "start" in event:
                        current, what = (event["start"], event["title"]), ""
                        child.tail.clear()
                    elif "tick" in event:
                        what = event["what"]
                    elif "check" in event:
                        checks.append(Check.from_json(event["check"]))
                        done.add(event["check"]["id"])
                        current = None
                    elif event.get("done"):
                        finished = True
                deadline = time.monotonic() + timeout
        finally:
            child.close()
        code = child.proc.wait()
        if finished:
            if code != 0:
                checks.append(Check("lifecycle.exit", "the process exits cleanly after the checks", "fail",
                                    f"{_ended(code)} at exit, after every check: a static destructor or an atexit "
                                    "handler of the plugin, or a thread it left running", list(child.tail)))
            return checks
        if current is None:
            if code != 0 or not checks:
                checks.append(Check("validator", "the validator's process runs", "fail",
                                    f"{_ended(code)} outside any check", list(child.tail)))
            return checks
        if not checks or checks[-1].id != current[0]:
            checks.append(_lost(options, *current, what, _ended(code), list(child.tail)))
        done.add(current[0])
        if current[0] == "load":
            return checks
    checks.append(Check("validator", "the validator's process runs", "fail",
                        f"stopped after {MAX_RESTARTS} crashes or hangs; the checks not yet run were not run"))
    return checks


def _in_process(options: Options, timeout: float) -> list[Check]:
    """The runner on a thread of this process, watched for hangs (a crash
    ends this process: --in-process is for a debugger)."""
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    runner = Runner(options, events.put)
    threading.Thread(target=runner.run, name="ferrule-validate", daemon=True).start()
    checks: list[Check] = []
    current: tuple[str, str] | None = None
    what = ""
    while True:
        try:
            event = events.get(timeout=timeout)
        except queue.Empty:
            assert current is not None
            checks.append(_lost(options, *current, what, f"no answer within {timeout:g} s (--timeout)", [],
                                "; the call is still running, so no further checks ran"))
            _hung.set()
            return checks
        if "start" in event:
            current, what = (event["start"], event["title"]), ""
        elif "tick" in event:
            what = event["what"]
        elif "check" in event:
            checks.append(Check.from_json(event["check"]))
            current = None
        elif event.get("done"):
            return checks


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
