"""How long ``ferrule validate`` takes at each level, on the example plugins.

    python3 bench/validate_levels.py [--runs 3]

Builds the examples (cargo for the greeter, cc and c++ for calc and
wordstat) into a temporary directory, then runs ``ferrule validate --level
N`` as a user would (a new process each time, the checks in its child) and
prints the median wall time of each level and plugin, with the number of
checks. A figure, not a test: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ferrule
from _cargo import release_dir  # bench/_cargo.py

ROOT = Path(__file__).resolve().parent.parent


def build(out: Path) -> dict[str, Path]:
    include = ferrule.get_include()
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "greeter"], cwd=ROOT, check=True)
    calc, wordstat = out / "libcalc.so", out / "libwordstat.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-std=c99", f"-I{include}",
                    str(ROOT / "examples" / "c_plugin" / "calc.c"), "-lm", "-o", str(calc)], check=True)
    subprocess.run(["c++", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-O2", f"-I{include}",
                    f"-Wl,--version-script={os.path.join(include, 'ferrule.map')}",
                    str(ROOT / "examples" / "cpp_plugin" / "wordstat.cpp"), "-o", str(wordstat)], check=True)
    return {"greeter (Rust)": release_dir(ROOT) / "libgreeter.so", "calc (C)": calc, "wordstat (C++)": wordstat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per level and plugin; the median is shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plugins = build(Path(tmp))
        print(f"ferrule {ferrule.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
              f"median of {args.runs} runs, wall time of the whole command")
        print(f"{'plugin':<16} " + " ".join(f"{'level ' + str(n):>14}" for n in range(1, 6)))
        for name, path in plugins.items():
            cells = []
            for level in range(1, 6):
                times, checks = [], 0
                for run in range(args.runs):
                    start = time.perf_counter()
                    proc = subprocess.run([sys.executable, "-m", "ferrule", "validate", str(path), "--level",
                                           str(level), "--seed", str(run), "--json"], capture_output=True, text=True)
                    times.append(time.perf_counter() - start)
                    report = json.loads(proc.stdout)
                    if not report["passed"]:
                        sys.exit(f"{name} failed level {level}:\n{proc.stdout}")
                    checks = len(report["checks"])
                cells.append(f"{statistics.median(times):6.2f} s ({checks:>3})")
            print(f"{name:<16} " + " ".join(f"{c:>14}" for c in cells))
        print("(in parentheses: the number of checks)")


if __name__ == "__main__":
    main()
