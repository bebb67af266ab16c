"""Call and load costs of ferrule's current (pure-Python, cffi) call path,
against ctypes and cffi ABI mode calling the same C work, measured in one run.

    python3 bench/run.py

Builds what it needs (cargo, cc). Medians of repeated timings after a
warm-up; min and max shown. Not a test: nothing here asserts speed.
"""

from __future__ import annotations

import ctypes
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import cffi

import ferrule

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 7


def per_call_ns(fn: Callable[[], object], number: int) -> list[float]:
    timer = timeit.Timer(fn)
    timer.timeit(number // 10)  # warm-up
    return [t / number * 1e9 for t in timer.repeat(REPEATS, number)]


def load_us(fn: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e6)
    return out


def table(title: str, unit: str, rows: list[tuple[str, list[float]]], anchor: str) -> None:
    base = statistics.median(dict(rows)[anchor])
    print(f"\n{title} ({unit}, median of {REPEATS}; ratio to {anchor})")
    print(f"  {'path':<34}{'median':>10}{'min':>10}{'max':>10}{'ratio':>8}")
    for name, values in rows:
        med = statistics.median(values)
        print(f"  {name:<34}{med:>10.1f}{min(values):>10.1f}{max(values):>10.1f}{med / base:>8.2f}")


def main() -> None:
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "greeter"], cwd=ROOT, check=True)
    greeter_path = ROOT / "target" / "release" / "libgreeter.so"
    tmp = Path(tempfile.mkdtemp())
    anchor_path = tmp / "libanchor.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", str(ROOT / "bench" / "anchor.c"), "-o", str(anchor_path)], check=True)

    print(f"machine: {platform.machine()}, {platform.processor() or '?'}; Python {sys.version.split()[0]}; "
          f"cffi {cffi.__version__}; ferrule {ferrule.__version__}")

    c_lib = ctypes.CDLL(str(anchor_path))
    c_add = c_lib.anchor_add
    c_add.argtypes = [ctypes.c_int64, ctypes.c_int64]
    c_add.restype = ctypes.c_int64
    ffi = cffi.FFI()
    ffi.cdef("int64_t anchor_add(int64_t a, int64_t b);")
    f_add = ffi.dlopen(str(anchor_path)).anchor_add
    plugin = ferrule.load(greeter_path)
    p_add = plugin.add

    def py_add(a: int, b: int) -> int:
        return a + b

    n = 200_000
    table("add(i64, i64) -> i64", "ns per call", [
        ("Python function", per_call_ns(lambda: py_add(2, 3), n)),
        ("cffi ABI mode", per_call_ns(lambda: f_add(2, 3), n)),
        ("ctypes with argtypes", per_call_ns(lambda: c_add(2, 3), n)),
        ("ferrule plugin (pure-Python path)", per_call_ns(lambda: p_add(2, 3), n // 4)),
    ], "ctypes with argtypes")

    greet = plugin.greet
    table("greet(str) -> str", "ns per call", [
        ("ferrule plugin (pure-Python path)", per_call_ns(lambda: greet("Ada"), n // 4)),
    ], "ferrule plugin (pure-Python path)")

    # dlopen caches a loaded library, so both sides measure the repeat cost on a
    # mapped file; ferrule's extra is header checks, descriptor reading and init.
    table("load", "us", [
        ("ctypes.CDLL", load_us(lambda: ctypes.CDLL(str(greeter_path)))),
        ("ferrule.Library", load_us(lambda: ferrule.Library(greeter_path))),
        ("ferrule.load + close", load_us(lambda: ferrule.load(greeter_path).close())),
    ], "ctypes.CDLL")
    plugin.close()


if __name__ == "__main__":
    main()
