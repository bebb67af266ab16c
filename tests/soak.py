"""The soak driver, shared by tests/test_soak.py (bounded, in CI) and
bench/soak.py (as long as you like): threads call an isolated plugin that
crashes at random, and every call is accounted for."""

from __future__ import annotations

import array
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ferrule

# maybe_crash(x, True) ends the child by x % 3: a segfault, abort(), exit(3).
EXPECTED = {0: ("signal", signal.SIGSEGV), 1: ("signal", signal.SIGABRT), 2: ("exit", 3)}


@dataclass
class Tally:
    issued: int = 0
    returned: int = 0
    crashed: int = 0
    wrong: list[str] = field(default_factory=list)
    restarts: int = 0
    pids: set[int] = field(default_factory=set)

    @property
    def accounted(self) -> int:
        return self.returned + self.crashed


def soak(path: Path, seconds: float, *, seed: int = 5, threads: int = 2, crash_rate: float = 0.01,
         call_timeout: float = 30.0) -> Tally:
    """Call for ``seconds``; a call that hangs past ``call_timeout`` is a
    wrong outcome, not a hang of the driver."""
    tally = Tally()
    lock = threading.Lock()
    plugin = ferrule.load(path, isolated=True, timeout=call_timeout)
    deadline = time.monotonic() + seconds

    def worker(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        while time.monotonic() < deadline:
            x = rng.randrange(1 << 40)
            crash = rng.random() < crash_rate
            with lock:
                tally.issued += 1
            outcome = "?"
            try:
                if rng.random() < 0.2 and not crash:
                    data = array.array("i", [x % 1000, 1, -2])
                    plugin.scale(data, 3)
                    ok = data.tolist() == [3 * (x % 1000), 3, -6]
                    outcome = "returned" if ok else f"scale gave {data.tolist()}"
                else:
                    got = plugin.maybe_crash(x, crash)
                    outcome = "returned" if not crash and got == x + 1 else f"maybe_crash({x}, {crash}) returned {got}"
            except ferrule.PluginCrashedError as exc:
                want, value = EXPECTED[x % 3]
                seen = exc.signal if want == "signal" else exc.exit_status
                # Another thread's crash can end the child under this call too.
                if crash and seen == value or not crash and "crashed during" in str(exc):
                    outcome = "crashed"
                else:
                    outcome = f"maybe_crash({x}, {crash}) raised {exc!r}"
            except Exception as exc:  # anything else is a wrong outcome, counted
                outcome = f"{type(exc).__name__}: {exc}"
            with lock:
                if outcome == "returned":
                    tally.returned += 1
                elif outcome == "crashed":
                    tally.crashed += 1
                else:
                    tally.wrong.append(outcome)
                pid = plugin.pid
                if pid is not None and pid not in tally.pids:
                    tally.pids.add(pid)

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(seconds + call_timeout * 4)
    hung = [t for t in workers if t.is_alive()]
    plugin.close()
    if hung:
        tally.wrong.append(f"{len(hung)} worker thread(s) still running after the deadline")
    tally.restarts = len(tally.pids) - 1
    return tally
