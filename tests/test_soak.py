"""A bounded soak (about 15 s): an isolated plugin crashing at random under
two calling threads. Every call returns the right value or raises the crash
exception, nothing hangs, and the calls accounted for equal the calls
issued. bench/soak.py runs the same driver for longer."""

from __future__ import annotations

from .conftest import Built
from .soak import soak


def test_soak_with_random_crashes(built: Built) -> None:
    tally = soak(built.hostile, seconds=15, threads=2, crash_rate=0.01)
    assert tally.wrong == []
    assert tally.accounted == tally.issued
    assert tally.crashed >= 5 and tally.returned >= 1000, tally
    assert tally.restarts >= tally.crashed // 2, tally  # two threads may see one crash
