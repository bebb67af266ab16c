"""How long ferrule.scan takes over a directory of many plugins, cold (every
descriptor read in the worker) and warm (everything from the cache).

    python3 bench/scan.py                 # 1,000 copies of the example C plugin
    python3 bench/scan.py --count 5000    # more
    python3 bench/scan.py --plugin target/release/libgreeter.so

Builds examples/c_plugin/calc.c with cc (or copies --plugin) N times into a
temporary directory, each copy with its own name and modification time, and
points FERRULE_CACHE_DIR at another temporary directory. Not a test: nothing
fails on a slow number; the last line compares the warm median with the
target (< 20 ms for 1,000 plugins), which a warm scan meets by starting no
process at all: one directory listing, one stat per file, one cache read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALC_C = ROOT / "examples" / "c_plugin" / "calc.c"
SDK_INCLUDE = ROOT / "sdk" / "c" / "include"
TARGET_MS = 20.0  # for 1,000 plugins, warm


def build_plugin(out: Path) -> Path:
    cc = os.environ.get("CC", "cc")
    target = out / "libcalc.so"
    subprocess.run([cc, "-shared", "-fPIC", "-fvisibility=hidden", "-O2", f"-I{SDK_INCLUDE}", str(CALC_C),
                    "-o", str(target), "-lm"], check=True)
    return target


def populate(directory: Path, plugin: Path, count: int) -> None:
    base = time.time_ns() - count * 1_000_000
    for i in range(count):
        copy = directory / f"libplugin{i:05d}.so"
        shutil.copyfile(plugin, copy)
        stamp = base + i * 1_000_000  # distinct, like files built one by one
        os.utime(copy, ns=(stamp, stamp))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="plugins in the directory (default 1000)")
    parser.add_argument("--repeats", type=int, default=15, help="warm scans to time (default 15)")
    parser.add_argument("--plugin", type=Path, help="copy this plugin instead of building the example C one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ferrule-scan-bench-") as tmp:
        work = Path(tmp)
        os.environ["FERRULE_CACHE_DIR"] = str(work / "cache")
        os.environ.pop("FERRULE_PATH", None)
        import ferrule
        from ferrule._scan import cache as _cache
        from ferrule._scan import scan as _scan

        plugin = args.plugin.resolve() if args.plugin else build_plugin(work)
        plugins = work / "plugins"
        plugins.mkdir()
        populate(plugins, plugin, args.count)
        print(f"{args.count} copies of {plugin.name} in {plugins}")

        from ferrule._sandbox import launch

        # Cold: plain (the worker reads every library itself), then sandboxed
        # where bubblewrap works (a process forked per library), the last one
        # filling the cache for the warm scans.
        modes = [("plain worker", False)] + ([("sandboxed worker", True)] if launch.bwrap()[0] else [])
        for label, sandbox in modes:
            start = time.perf_counter()
            cold = ferrule.scan([plugins], sandbox=sandbox, refresh=True)
            cold_time = time.perf_counter() - start
            if len(cold.plugins) != args.count:
                print(f"expected {args.count} plugins, found {len(cold.plugins)}; problems: {cold.problems[:3]}")
                return 1
            print(f"cold scan, {label}: {ms(cold_time)} ({ms(cold_time / args.count)} per plugin)")
        if len(modes) == 1:
            print(f"cold scan, sandboxed worker: not measured ({launch.bwrap()[1]})")
        cache_size = os.path.getsize(_cache.cache_file())
        print(f"cache file {cache_size / 1024:.0f} KiB")

        warm: list[float] = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = ferrule.scan([plugins])
            warm.append(time.perf_counter() - start)
            assert result == cold

        # Where a warm scan's time goes.
        start = time.perf_counter()
        listed = _scan._list_directory(str(plugins), True)
        list_time = time.perf_counter() - start
        start = time.perf_counter()
        entries, _ = _cache.load_cache(_cache.cache_file())
        load_time = time.perf_counter() - start
        assert listed is not None and len(entries) == args.count

        median = statistics.median(warm)
        print(f"warm scans ({args.repeats}): median {ms(median)}, min {ms(min(warm))}, max {ms(max(warm))}; "
              f"of which listing + stat {ms(list_time)}, reading + checking the cache {ms(load_time)}")
        target = TARGET_MS * args.count / 1000
        verdict = "meets" if median * 1000 < target else "MISSES"  # median in seconds, target in ms
        print(f"warm scan of {args.count} plugins: {ms(median)} (target < {target:g} ms: {verdict} it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
