"""Run every fuzz test (pytest marker "fuzz") with a long example budget.

    python3 bench/fuzz.py                     # 20,000 examples per test, the fixed CI seeds
    python3 bench/fuzz.py --examples 2000     # a shorter run
    python3 bench/fuzz.py --random            # fresh random seeds: finds what the fixed ones miss
    python3 bench/fuzz.py -- -k descriptor    # anything after -- goes to pytest

Runs `pytest -m fuzz tests/` with FERRULE_FUZZ_EXAMPLES set (tests/conftest.py
reads it into the "ferrule" hypothesis profile) and, with --random,
FERRULE_FUZZ_RANDOM=1. The marked tests of every file run: the plugin-data
parsers (tests/test_fuzz.py), the scan cache and the isolation protocol.
pytest's output shows any failing example, minimised; the last line gives
the time taken and the outcome. Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTCOMES = {0: "every fuzz test passed", 1: "some fuzz tests failed", 5: "no fuzz test was collected"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=20_000, help="examples per test (default 20000)")
    parser.add_argument("--random", action="store_true", help="fresh random seeds instead of the fixed ones")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = parser.parse_args()
    if args.examples < 1:
        parser.error("--examples must be at least 1")

    env = dict(os.environ, FERRULE_FUZZ_EXAMPLES=str(args.examples))
    env.pop("FERRULE_FUZZ_RANDOM", None)
    if args.random:
        env["FERRULE_FUZZ_RANDOM"] = "1"
    command = [sys.executable, "-m", "pytest", "-m", "fuzz", "-q", "-p", "no:cacheprovider", "tests/",
               *args.pytest_args]
    seeds = "fresh random seeds" if args.random else "the fixed seeds"
    print(f"fuzz: {args.examples} examples per test, {seeds}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    status = subprocess.run(command, cwd=ROOT, env=env).returncode
    elapsed = time.perf_counter() - start
    outcome = OUTCOMES.get(status, f"pytest stopped with status {status}")
    print(f"fuzz: {elapsed:.1f} s, {outcome}")
    return status


if __name__ == "__main__":
    sys.exit(main())
