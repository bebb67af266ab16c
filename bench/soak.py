"""The soak of isolated mode, as long as you like: threads call a plugin
that crashes at random; every call must return the right value or raise the
crash exception, nothing may hang, and the calls accounted for must equal
the calls issued. tests/test_soak.py runs the same driver for 15 s.

    python3 bench/soak.py                       # 5 minutes, 2 threads, 1% of calls crash
    python3 bench/soak.py --seconds 3600 --threads 4 --crash-rate 0.05
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.soak import soak  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crash-rate", type=float, default=0.01, help="share of calls that crash the child")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ferrule-soak-"))
    try:
        plugin = tmp / "libhostile.so"
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-I", str(ROOT / "sdk" / "c" / "include"),
                        str(ROOT / "tests" / "plugins" / "c" / "hostile.c"), "-o", str(plugin)], check=True)
        print(f"soak: {opts.seconds:.0f} s, {opts.threads} threads, crash rate {opts.crash_rate}, seed {opts.seed}")
        started = time.monotonic()
        tally = soak(plugin, opts.seconds, seed=opts.seed, threads=opts.threads, crash_rate=opts.crash_rate)
        took = time.monotonic() - started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"issued {tally.issued}, returned {tally.returned}, crashed {tally.crashed}, accounted {tally.accounted}; "
          f"{tally.restarts} restarts; {took:.0f} s ({tally.issued / took:.0f} calls/s)")
    for line in tally.wrong[:20]:
        print(f"  wrong: {line}")
    ok = not tally.wrong and tally.accounted == tally.issued
    print("soak: " + ("passed" if ok else f"FAILED ({len(tally.wrong)} wrong outcomes)"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
