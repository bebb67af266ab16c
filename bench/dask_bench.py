"""ferrule.dask on a LocalCluster: a plugin kernel over a large dask array
with one and with two worker processes, against numpy doing the same work
on the same cluster and in this process, and the cost of one task.

    python3 bench/dask_bench.py               # about a minute
    python3 bench/dask_bench.py --quick       # a smoke run: a smaller array, fewer repeats
    python3 bench/dask_bench.py --mb 256      # a larger array

Builds tests/plugins/c/kernels.c with cc (-O2) into a temporary directory.
The kernel is scale_add (out = k * x + c, one pass, the output allocated by
ferrule.dask on the worker); numpy's twin (bench/_numpy_kernels.py)
allocates once too (multiply, then add in place). The array is made and persisted on the workers first,
so a timed run is the kernel over blocks already in worker memory plus
dask's scheduling, not data transfer. Each figure is the median of the
repeats (min and max beside it). Not a test: nothing here fails on a slow
number.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, get_task_stream, wait

import ferrule
import ferrule.dask as fdask
from ferrule import PluginRef

from _numpy_kernels import block_sum as numpy_sum  # bench/_numpy_kernels.py (this script's directory is on sys.path)
from _numpy_kernels import scale_add as numpy_scale_add

ROOT = Path(__file__).resolve().parent.parent
KERNELS_C = ROOT / "tests" / "plugins" / "c" / "kernels.c"
INCLUDE = ROOT / "sdk" / "c" / "include"
CHUNK = 1 << 20  # elements per block: 8 MiB of float64
TINY_TASKS = 2_000  # blocks of the per-task case
TINY_LEN = 8  # elements per tiny block


def build(directory: Path) -> Path:
    out = directory / "libkernels.so"
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-std=c99",
                    f"-I{INCLUDE}", str(KERNELS_C), "-o", str(out)], check=True)
    return out


def timed(runs: dict[str, Callable[[int], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per run of each, the runs taking turns (so that a slow spell of
    a shared machine falls on all of them). Each run gets its own number, for
    a graph of its own: dask names tasks by their arguments, and a result
    still held from the run before would be reused, not computed."""
    for run in runs.values():
        run(0)  # warm-up: the plugin loaded on every worker, numpy's code paged in
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(1, repeats + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            inside = run(i)
            times[name].append(time.perf_counter() - start)
            if isinstance(inside, float):  # the workers' own account: seconds computing the tasks
                times.setdefault(f"{name} compute", []).append(inside)
    return times


def persist(client: Client, collection: Any) -> float:
    """Compute the collection into worker memory (then let it go); return the
    seconds the workers spent computing its tasks, from the task stream."""
    with get_task_stream(client) as stream:
        done = client.persist(collection)
        wait(done)
    del done
    return float(sum(s["stop"] - s["start"] for task in stream.data for s in task["startstops"]
                     if s["action"] == "compute"))


def row(name: str, times: list[float], unit: float = 1e3, suffix: str = "ms") -> dict[str, Any]:
    return {"name": name, "median": statistics.median(times) * unit, "min": min(times) * unit,
            "max": max(times) * unit, "suffix": suffix}


def print_table(title: str, rows: list[dict[str, Any]], ratios: list[tuple[str, float]]) -> None:
    print(f"\n{title}")
    width = max(len(r["name"]) for r in rows)
    print(f"  {'':{width}}  {'median':>10}  {'min':>10}  {'max':>10}")
    for r in rows:
        print(f"  {r['name']:{width}}  {r['median']:>8.2f}{r['suffix']:>2}  {r['min']:>8.2f}{r['suffix']:>2}  "
              f"{r['max']:>8.2f}{r['suffix']:>2}")
    for label, value in ratios:
        print(f"  {label}: {value:.2f}x")


def on_cluster(library: Path, workers: int, n: int, repeats: int, tiny: bool) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers, timeout=60)
        ref = PluginRef(library)
        x = client.persist(da.random.default_rng(0).random(n, chunks=CHUNK))
        wait(x)
        def ferrule_y(array: Any, i: int) -> Any:
            return fdask.map_blocks(ref, "scale_add", array, 2.0, float(i))

        def numpy_y(array: Any, i: int) -> Any:
            return array.map_blocks(numpy_scale_add, 2.0, float(i), dtype=np.float64)

        check_f, check_n = client.compute([ferrule_y(x, 1)[::997], numpy_y(x, 1)[::997]], sync=True)
        assert np.array_equal(check_f, check_n), "ferrule and numpy disagree"
        results.update(timed({"ferrule": lambda i: persist(client, ferrule_y(x, i)),
                              "numpy": lambda i: persist(client, numpy_y(x, i))}, repeats))
        # A sum per block, then dask's sum of those: x + 0 * i makes each run a graph of its own.
        blocks = ((1,) * x.numblocks[0],)
        total_f, total_n = client.compute([fdask.map_blocks(ref, "sum", x, out=None).sum(),
                                           x.map_blocks(numpy_sum, chunks=blocks, dtype=np.float64).sum()], sync=True)
        assert np.isclose(total_f, total_n), (total_f, total_n)
        sums = {i: client.persist(x + 0.0 * i) for i in range(repeats + 1)}
        wait(list(sums.values()))
        results.update(timed({
            "ferrule sum": lambda i: client.compute(fdask.map_blocks(ref, "sum", sums[i], out=None).sum(), sync=True),
            "numpy sum": lambda i: client.compute(sums[i].map_blocks(numpy_sum, chunks=blocks, dtype=np.float64).sum(),
                                                  sync=True),
        }, repeats))
        del sums
        if tiny:
            small = client.persist(da.ones(TINY_TASKS * TINY_LEN, chunks=TINY_LEN))
            wait(small)
            results.update(timed({"ferrule task": lambda i: persist(client, ferrule_y(small, i)),
                                  "numpy task": lambda i: persist(client, numpy_y(small, i))}, max(3, repeats // 2)))
        loads = client.run(lambda: ref.load().inits())
        assert set(loads.values()) == {1}, loads  # one load per worker, over every run
    return results


def in_process(library: Path, n: int, repeats: int) -> dict[str, list[float]]:
    a = np.random.default_rng(0).random(n)
    plugin = ferrule.load(library)

    def ferrule_run() -> None:
        out = np.empty_like(a)
        plugin.scale_add(a, out, 2.0, 1.0)

    results = timed({"ferrule": lambda i: ferrule_run(), "numpy": lambda i: numpy_scale_add(a, 2.0, 1.0)}, repeats)
    # The worker-side wrapper alone, on one tiny block: what a ferrule.dask task adds to the call.
    ref = PluginRef(library)
    block = np.ones(TINY_LEN)
    number = 20_000
    direct = timeit.repeat(lambda: plugin.scale_add(block, np.empty(TINY_LEN), 2.0, 1.0), number=number, repeat=5)
    wrapped = timeit.repeat(lambda: fdask._block(ref, "scale_add", "out", "<f8", (0,), block, 2.0, 1.0),
                            number=number, repeat=5)
    numpy_tiny = timeit.repeat(lambda: numpy_scale_add(block, 2.0, 1.0), number=number, repeat=5)
    results["call"] = [t / number for t in direct]
    results["block"] = [t / number for t in wrapped]
    results["numpy block"] = [t / number for t in numpy_tiny]
    plugin.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=128, help="size of the array, in MiB of float64 (default 128)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="16 MiB, 3 repeats")
    args = parser.parse_args()
    mb, repeats = (16, 3) if args.quick else (args.mb, args.repeats)
    n = mb * (1 << 20) // 8
    print(f"ferrule.dask bench: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}, dask {dask.__version__}")
    print(f"array: {mb} MiB of float64 ({n:,} elements) in {-(-n // CHUNK)} blocks of {CHUNK * 8 >> 20} MiB; "
          f"{repeats} repeats; workers are processes with one thread each")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        library = build(Path(tmp))
        local = in_process(library, n, repeats)
        one = on_cluster(library, 1, n, repeats, tiny=False)
        two = on_cluster(library, 2, n, repeats, tiny=True)

    med = {key: statistics.median(v) for key, v in
           [*(("local " + k, v) for k, v in local.items()), *(("1w " + k, v) for k, v in one.items()),
            *(("2w " + k, v) for k, v in two.items())]}
    print_table(f"scale_add over {mb} MiB (out = 2x + 1)", [
        row("in process: ferrule plugin.scale_add", local["ferrule"]),
        row("in process: numpy", local["numpy"]),
        row("1 worker:  ferrule.dask.map_blocks", one["ferrule"]),
        row("1 worker:  numpy map_blocks", one["numpy"]),
        row("2 workers: ferrule.dask.map_blocks", two["ferrule"]),
        row("2 workers: numpy map_blocks", two["numpy"]),
    ], [
        ("ferrule / numpy, in process", med["local ferrule"] / med["local numpy"]),
        ("ferrule / numpy, 1 worker", med["1w ferrule"] / med["1w numpy"]),
        ("ferrule / numpy, 2 workers", med["2w ferrule"] / med["2w numpy"]),
        ("ferrule, 1 worker / 2 workers (speed-up)", med["1w ferrule"] / med["2w ferrule"]),
        ("numpy, 1 worker / 2 workers (speed-up)", med["1w numpy"] / med["2w numpy"]),
        ("ferrule, 2 workers / in process", med["2w ferrule"] / med["local ferrule"]),
    ])
    print_table(f"scale_add over {mb} MiB: the time the workers spent in the tasks (task stream, summed)", [
        row("1 worker:  ferrule.dask.map_blocks", one["ferrule compute"]),
        row("1 worker:  numpy map_blocks", one["numpy compute"]),
        row("2 workers: ferrule.dask.map_blocks", two["ferrule compute"]),
        row("2 workers: numpy map_blocks", two["numpy compute"]),
    ], [
        ("ferrule / numpy, 1 worker", med["1w ferrule compute"] / med["1w numpy compute"]),
        ("ferrule / numpy, 2 workers", med["2w ferrule compute"] / med["2w numpy compute"]),
    ])
    print("  (the rest of a run's time is dask's: the graph sent, tasks scheduled, results registered)")
    print_table(f"sum over {mb} MiB (one number per block, then dask's sum)", [
        row("1 worker:  ferrule sum", one["ferrule sum"]),
        row("1 worker:  numpy sum", one["numpy sum"]),
        row("2 workers: ferrule sum", two["ferrule sum"]),
        row("2 workers: numpy sum", two["numpy sum"]),
    ], [
        ("ferrule / numpy, 1 worker", med["1w ferrule sum"] / med["1w numpy sum"]),
        ("ferrule / numpy, 2 workers", med["2w ferrule sum"] / med["2w numpy sum"]),
    ])
    per_task = {k: [t / TINY_TASKS * 1e6 for t in two[k]]
                for k in ("ferrule task", "numpy task", "ferrule task compute", "numpy task compute")}
    print_table(f"per task: {TINY_TASKS:,} blocks of {TINY_LEN} float64, 2 workers (time / tasks)", [
        row("ferrule.dask.map_blocks task", per_task["ferrule task"], 1, "us"),
        row("numpy map_blocks task", per_task["numpy task"], 1, "us"),
        row("  of which in the ferrule task (task stream)", per_task["ferrule task compute"], 1, "us"),
        row("  of which in the numpy task (task stream)", per_task["numpy task compute"], 1, "us"),
        row("in process: plugin.scale_add(block, new out)", local["call"], 1e6, "us"),
        row("in process: ferrule.dask's block wrapper", local["block"], 1e6, "us"),
        row("in process: numpy on the block", local["numpy block"], 1e6, "us"),
    ], [
        ("ferrule task / numpy task", statistics.median(per_task["ferrule task"])
         / statistics.median(per_task["numpy task"])),
    ])
    wrapper = (med["local block"] - med["local call"]) * 1e6
    print(f"  the wrapper adds {wrapper:.2f} us to a call (ref.load() from the cache, the plan, the output array)")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
