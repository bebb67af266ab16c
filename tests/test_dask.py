"""ferrule.dask on a real cluster: a LocalCluster of two worker processes
(one thread each), real plugins built with cc. Plugin functions over
chunked arrays and dataframes against numpy and pandas, libraries shipped
to workers that cannot see the file (and to a worker that joins later), one
load per worker process, and an isolated plugin's crash on a worker."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy", reason="numpy is in the test extra: run the README's install command")
pd = pytest.importorskip("pandas", reason="ferrule.dask's tests need the dask extra: pip install -e '.[test]'")
da = pytest.importorskip("dask.array", reason="ferrule.dask's tests need the dask extra: pip install -e '.[test]'")
dd = pytest.importorskip("dask.dataframe", reason="ferrule.dask's tests need the dask extra: pip install -e '.[test]'")
distributed = pytest.importorskip("distributed", reason="ferrule.dask's tests need the dask extra: pip install -e "
                                                        "'.[test]'")

import dask  # noqa: E402

import ferrule  # noqa: E402
import ferrule.dask as fdask  # noqa: E402
from ferrule import PluginRef  # noqa: E402

from .conftest import ROOT, Built, compile_plugin  # noqa: E402

TIMEOUT = 60  # seconds, for any one result


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50) as cluster, distributed.Client(cluster, timeout=TIMEOUT) as c:
        c.wait_for_workers(2, timeout=TIMEOUT)
        yield c


@pytest.fixture(scope="module")
def ref(built: Built) -> PluginRef:
    return PluginRef(built.kernels)


def result(client: Any, collection: Any) -> Any:
    return client.compute(collection).result(timeout=TIMEOUT)


def load_count(ref: PluginRef) -> tuple[int, int]:
    """On a worker: (its pid, how many times the plugin's init ran there)."""
    plugin = ref.load()
    return plugin.functions["pid"](), plugin.inits()


# -- results


def test_map_blocks_matches_numpy(client: Any, ref: PluginRef) -> None:
    a = np.random.default_rng(1).random((400, 300))
    b = np.random.default_rng(2).random((400, 300))
    x = da.from_array(a, chunks=(100, 75))  # 16 blocks
    y = fdask.map_blocks(ref, "scale_add", x, 2.5, -1.0)
    assert y.shape == a.shape and y.chunks == x.chunks and y.dtype == np.float64
    np.testing.assert_allclose(result(client, y), 2.5 * a - 1.0, rtol=1e-15)
    # Two arrays chunked apart: the second is rechunked like the first.
    z = fdask.map_blocks(ref, "axpy", x, da.from_array(b, chunks=(50, 300)), 3.0)
    np.testing.assert_allclose(result(client, z), 3.0 * a + b, rtol=1e-15)


def test_map_blocks_per_block_numbers(client: Any, ref: PluginRef) -> None:
    a = np.random.default_rng(3).random(10_000)
    x = da.from_array(a, chunks=1_000)
    sums = fdask.map_blocks(ref, "sum", x, out=None)
    assert sums.shape == (10,) and sums.dtype == np.float64
    np.testing.assert_allclose(result(client, sums), a.reshape(10, 1_000).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(result(client, sums.sum()), a.sum(), rtol=1e-12)


def test_map_partitions_matches_pandas(client: Any, ref: PluginRef) -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"x": rng.random(5_000), "y": rng.random(5_000), "label": ["a", "b"] * 2_500},
                         index=np.arange(5_000) * 3)
    df = dd.from_pandas(frame, npartitions=5)
    got = result(client, fdask.map_partitions(ref, "axpy", df, 2.0, columns=["x", "y"]))
    pd.testing.assert_series_equal(got, (2.0 * frame.x + frame.y).rename("axpy"))
    scaled = result(client, fdask.map_partitions(ref, "scale_add", df.y, 10.0, 1.0, name="y10"))
    pd.testing.assert_series_equal(scaled, (10.0 * frame.y + 1.0).rename("y10"))
    sums = result(client, fdask.map_partitions(ref, "sum", df, columns="x", out=None))
    expected = [result(client, df.get_partition(i)).x.sum() for i in range(df.npartitions)]
    assert list(sums.index) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(sums.to_numpy(), expected, rtol=1e-12)


def test_map_partitions_results_index_like_what_they_hold(client: Any, ref: PluginRef) -> None:
    frame = pd.DataFrame({"a": np.ones(40)}, index=pd.date_range("2020-01-01", periods=40, freq="h"))
    df = dd.from_pandas(frame, npartitions=4)
    # A value per row keeps the partitions' own index (here datetimes), in the graph too.
    scaled = fdask.map_partitions(ref, "scale_add", df, 2.0, 1.0, columns="a")
    assert scaled.index.dtype == frame.index.dtype and scaled.known_divisions
    assert result(client, scaled.loc["2020-01-01 05:00":"2020-01-01 06:00"]).tolist() == [3.0, 3.0]
    assert result(client, scaled.index.hour.max()) == 23
    # A number per partition is indexed by partition number: the input's divisions no longer hold.
    sums = fdask.map_partitions(ref, "sum", df, columns="a", out=None)
    assert not sums.known_divisions
    assert result(client, sums.loc[1:2]).to_dict() == {1: 10.0, 2: 10.0}


def test_map_partitions_over_nullable_and_text_columns(client: Any, ref: PluginRef) -> None:
    frame = pd.DataFrame({"f": pd.array([1.0, None, 3.0, 4.0], dtype="Float64"),
                          "i": pd.array([1, None, 3, 4], dtype="Int64"), "s": ["a", "b", "c", "d"]})
    df = dd.from_pandas(frame, npartitions=2)
    got = result(client, fdask.map_partitions(ref, "scale_add", df, 2.0, 0.0, columns="f"))
    np.testing.assert_array_equal(got.to_numpy(), [2.0, np.nan, 6.0, 8.0])  # NA reaches a float buffer as NaN
    with pytest.raises(TypeError, match=r"scale_add\(x: buf\[f64\].*takes buf\[f64\] as 'x', but the data passed "
                                        r"there is int64: convert it first \(\.astype\(numpy\.float64\)\)"):
        result(client, fdask.map_partitions(ref, "scale_add", df, 2.0, 0.0, columns="i"))
    with pytest.raises(TypeError, match=r"column 's' is of dtype .*, which holds no numbers a plugin buffer could "
                                        r"take; convert it first"):
        fdask.map_partitions(ref, "scale_add", df, 2.0, 0.0, columns="s")


def test_map_blocks_says_how_to_convert_the_input(client: Any, ref: PluginRef) -> None:
    x = da.from_array(np.ones(10, dtype=np.float32), chunks=5)
    with pytest.raises(TypeError, match=r"takes buf\[f64\] as 'x', but the data passed there is float32: convert it "
                                        r"first \(\.astype\(numpy\.float64\)\)"):
        result(client, fdask.map_blocks(ref, "scale_add", x, 2.0, 1.0))
    np.testing.assert_array_equal(result(client, fdask.map_blocks(ref, "scale_add", x.astype(np.float64), 2.0, 1.0)),
                                  np.full(10, 3.0))


def block_address(block: Any) -> Any:
    """The block's address, and whether it is C-contiguous, as numpy sees it."""
    return np.array([[block.ctypes.data, block.flags.c_contiguous]], dtype=np.uint64)


def test_blocks_reach_the_plugin_without_a_copy(ref: PluginRef) -> None:
    # In this process (the synchronous scheduler), one graph: each block is
    # made once and given both to the plugin and to numpy, which report its address.
    x = da.from_array(np.arange(8_000, dtype=np.float64), chunks=1_000)
    with dask.config.set(scheduler="synchronous"):
        seen, own = dask.compute(fdask.map_blocks(ref, "addr", x, out=None, dtype=np.uint64),
                                 x.map_blocks(block_address, chunks=((1,) * 8, (2,)), new_axis=1, dtype=np.uint64))
        assert own[:, 1].all() and len(set(own[:, 0])) == 8
        assert seen.tolist() == own[:, 0].tolist()
        # Column blocks of a C-order matrix are strided: each is copied once, and the results stay right.
        m = da.from_array(np.arange(4_000, dtype=np.float64).reshape(100, 40), chunks=(100, 10))
        seen, own, scaled = dask.compute(
            fdask.map_blocks(ref, "addr", m, out=None, dtype=np.uint64),
            m.map_blocks(block_address, chunks=((1,), (2,) * 4), dtype=np.uint64),
            fdask.map_blocks(ref, "scale_add", m, 2.0, 0.0))
    assert not own.reshape(4, 2)[:, 1].any()
    assert not set(seen.ravel().tolist()) & set(own.reshape(4, 2)[:, 0].tolist())
    np.testing.assert_array_equal(scaled, 2.0 * np.arange(4_000, dtype=np.float64).reshape(100, 40))


def test_tasks_are_named_by_what_they_compute(ref: PluginRef, built: Built) -> None:
    x = da.from_array(np.zeros(100), chunks=50)
    name = fdask.map_blocks(ref, "scale_add", x, 1.0, 2.0).name
    assert name.startswith("ferrule-scale_add-")
    assert fdask.map_blocks(pickle.loads(pickle.dumps(ref)), "scale_add", x, 1.0, 2.0).name == name
    assert fdask.map_blocks(ref, "scale_add", x, 1.0, 3.0).name != name
    assert fdask.map_blocks(PluginRef(built.kernels, config="other"), "scale_add", x, 1.0, 2.0).name != name
    sandboxed = [PluginRef(built.kernels, isolated=True, sandbox=ferrule.Sandbox(env={"A": "1", "B": "2"}))
                 for _ in range(2)]
    assert dask.base.tokenize(sandboxed[0]) == dask.base.tokenize(pickle.loads(pickle.dumps(sandboxed[1])))


def test_mistakes_are_reported_with_the_signature(ref: PluginRef) -> None:
    x = da.from_array(np.zeros(100), chunks=50)
    with pytest.raises(TypeError, match="needs at least one dask array"):
        fdask.map_blocks(ref, "sum", np.zeros(3), out=None)
    with pytest.raises(TypeError, match="takes a ferrule.PluginRef first"):
        fdask.map_blocks(str(ref.path), "sum", x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must have one shape"):
        fdask.map_blocks(ref, "axpy", x, da.zeros(99, chunks=50), 1.0)
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(TypeError, match=r"scale_add\(x: buf\[f64\], out: mutbuf\[f64\], k: f64, c: f64\) has no "
                                            r"mutbuf parameter 'y'"):
            fdask.map_blocks(ref, "scale_add", x, 1.0, 2.0, out="y").compute()
        with pytest.raises(TypeError, match=r"writes f64 to 'out': pass dtype=numpy.float64"):
            fdask.map_blocks(ref, "scale_add", x, 1.0, 2.0, dtype=np.float32).compute()
        with pytest.raises(TypeError, match=r"sum\(x: buf\[f64\]\) -> f64 has no mutbuf parameter 'out'"):
            fdask.map_blocks(ref, "sum", x).compute()
        with pytest.raises(TypeError, match=r"does not return a number"):
            fdask.map_blocks(ref, "scale_add", x, 1.0, 2.0, out=None).compute()
        with pytest.raises(AttributeError, match="has no function 'nope'"):
            fdask.map_blocks(ref, "nope", x).compute()
    with pytest.raises(TypeError, match="needs columns="):
        fdask.map_partitions(ref, "sum", dd.from_pandas(pd.DataFrame({"x": [1.0]}), npartitions=1), out=None)


# -- one load per worker


def test_one_load_per_worker_process(client: Any, ref: PluginRef) -> None:
    x = da.from_array(np.ones(64_000), chunks=1_000)  # 64 tasks over the two workers
    assert result(client, fdask.map_blocks(ref, "sum", x, out=None).sum()) == 64_000.0
    workers = sorted(client.scheduler_info()["workers"])
    assert len(workers) == 2
    futures = [client.submit(load_count, ref, workers=[w], pure=False) for w in workers for _ in range(8)]
    counts = client.gather(futures)
    pids = {pid for pid, _ in counts}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {n for _, n in counts} == {1}  # each worker ran the plugin's init once, for all its tasks
    per_worker = client.run(lambda: ref.load().inits())
    assert sum(per_worker.values()) == len(workers)


# -- shipping


def shipped_state(ref: PluginRef, dask_worker: Any) -> dict[str, Any]:
    """On a worker: where its shipped copy is, its modes, and which file its plugin was loaded from."""
    copy = Path(dask_worker.local_directory) / "ferrule-plugins" / ref.sha256 / ref._name
    if not copy.exists():
        return {"copy": None}
    return {"copy": str(copy), "mode": stat.S_IMODE(copy.stat().st_mode),
            "dir_mode": stat.S_IMODE(copy.parent.stat().st_mode), "inode": copy.stat().st_ino,
            "loaded_from": ref.load().path, "local_directory": dask_worker.local_directory}


def test_ship_to_workers_that_cannot_see_the_file(client: Any, built: Built, tmp_path: Path) -> None:
    only_here = tmp_path / "only-here"
    only_here.mkdir(mode=0o700)
    library = Path(shutil.copy(built.kernels, only_here / "libkernels.so"))
    # Another config than the other tests' ref: a plugin of its own, loaded from the shipped copy.
    ref = PluginRef(library, config="shipped")
    fdask.ship(client, ref)
    shutil.rmtree(only_here)  # the workers must now use their own copies
    a = np.random.default_rng(5).random(20_000)
    y = fdask.map_blocks(ref, "scale_add", da.from_array(a, chunks=2_500), 2.0, 1.0)
    np.testing.assert_allclose(result(client, y), 2.0 * a + 1.0, rtol=1e-15)
    states = client.run(shipped_state, ref)
    assert len(states) == 2 and len({s["local_directory"] for s in states.values()}) == 2  # one directory each
    for state in states.values():
        assert state["loaded_from"] == state["copy"] and state["copy"].startswith(state["local_directory"])
        assert state["mode"] & 0o022 == 0 and state["dir_mode"] == 0o700
    assert client.run(lambda: ref.load().config()) == {w: "shipped" for w in states}
    with pytest.raises(ferrule.LibraryNotFoundError, match="cannot ship plugin libkernels.so"):
        fdask.ship(client, ref)  # nothing here to ship any more
    # A worker that joins later gets the library too; the others keep their copies untouched.
    cluster = client.cluster
    cluster.scale(3)
    client.wait_for_workers(3, timeout=TIMEOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:  # a new worker runs the shipping plugin as it starts
            later = client.run(shipped_state, ref)
            if len(later) == 3 and all(s["copy"] for s in later.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(later) == 3 and all(s["loaded_from"] == s["copy"] for s in later.values())
        assert all(later[w]["inode"] == states[w]["inode"] for w in states)
    finally:
        cluster.scale(2)
        deadline = time.monotonic() + TIMEOUT
        while len(client.scheduler_info()["workers"]) != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(client.scheduler_info()["workers"]) == 2


def damage_copy(ref: PluginRef, dask_worker: Any) -> str:
    # Replaced, not written in place: an earlier test's plugin may have this very file mapped (same
    # contents, same name), and truncating a mapped library kills its process with SIGBUS.
    path = os.path.join(dask_worker.local_directory, "ferrule-plugins", ref.sha256, ref._name)
    with open(path + ".bad", "wb") as f:
        f.write(b"not the library")
    os.replace(path + ".bad", path)
    return path


def test_shipping_again_repairs_a_damaged_copy(client: Any, built: Built, tmp_path: Path) -> None:
    # A ref to a path the workers do not have; ship() reads the bytes from the file it was made from.
    ref = PluginRef(tmp_path / "not-on-workers" / "libkernels.so", sha256=PluginRef(built.kernels).sha256,
                    config="reshipped")
    object.__setattr__(ref, "_source", str(built.kernels))
    fdask.ship(client, ref)
    client.run(damage_copy, ref)
    with pytest.raises(ferrule.PinMismatchError, match=r"has other contents .* ship it to the workers"):
        client.submit(lambda r: r.load().inits(), ref, pure=False).result(timeout=TIMEOUT)
    fdask.ship(client, ref)  # as the message says: the copies are written again
    assert set(client.run(lambda: ref.load().config()).values()) == {"reshipped"}


def test_ship_refuses_a_file_that_changed(client: Any, built: Built, tmp_path: Path) -> None:
    library = Path(shutil.copy(built.kernels, tmp_path / "libkernels.so"))
    ref = PluginRef(library)
    library.write_bytes(library.read_bytes() + b"\0")
    with pytest.raises(ferrule.PinMismatchError, match="changed since the ref was made"):
        fdask.ship(client, ref)


def test_a_shipped_copy_is_kept_when_good_and_replaced_when_damaged(built: Built, tmp_path: Path) -> None:
    data = built.kernels.read_bytes()
    ref = PluginRef(built.kernels)
    root = tmp_path / "ferrule-plugins"
    path = Path(fdask._write_copy(str(root), ref.sha256, "libkernels.so", data))
    assert path == root / ref.sha256 / "libkernels.so" and path.read_bytes() == data
    inode = path.stat().st_ino
    assert Path(fdask._write_copy(str(root), ref.sha256, "libkernels.so", data)).stat().st_ino == inode  # kept
    assert sorted(os.listdir(path.parent)) == ["libkernels.so"]  # no temporary file left behind
    path.chmod(0o700)
    path.write_bytes(data[:100])  # a torn copy
    fdask._write_copy(str(root), ref.sha256, "libkernels.so", data)
    assert path.read_bytes() == data
    with pytest.raises(ferrule.PinMismatchError, match="damaged on the way"):
        fdask._write_copy(str(root), ref.sha256, "libkernels.so", data + b"x")


# -- isolated on workers


def crash(ref: PluginRef) -> None:
    ref.load().crash()


def child_pid(ref: PluginRef) -> tuple[int, int]:
    plugin = ref.load()
    return os.getpid(), plugin.functions["pid"]()


def test_an_isolated_crash_fails_the_task_not_the_worker(client: Any, built: Built) -> None:
    ref = PluginRef(built.kernels, isolated=True, timeout=30)
    a = np.random.default_rng(6).random(8_000)
    y = fdask.map_blocks(ref, "scale_add", da.from_array(a, chunks=1_000), -1.0, 0.5)
    np.testing.assert_allclose(result(client, y), 0.5 - a, rtol=1e-15)
    before = client.run(os.getpid)
    worker = sorted(before)[0]
    first = client.submit(child_pid, ref, workers=[worker], pure=False).result(timeout=TIMEOUT)
    with pytest.raises(ferrule.PluginCrashedError) as crashed:
        client.submit(crash, ref, workers=[worker], pure=False).result(timeout=TIMEOUT)
    assert crashed.value.signal == signal.SIGSEGV and "crashed during crash()" in str(crashed.value)
    assert client.run(os.getpid) == before  # the same worker processes, none restarted
    again = client.submit(child_pid, ref, workers=[worker], pure=False).result(timeout=TIMEOUT)
    assert again[0] == first[0] == before[worker] and again[1] != first[1]  # a new child on the same worker
    np.testing.assert_allclose(result(client, y), 0.5 - a, rtol=1e-15)


def sandboxed_probe(ref: PluginRef) -> tuple[int, int, tuple[str, ...], float]:
    """On a worker: its pid, the plugin's pid as the plugin sees it, the sandbox's namespaces, a sum."""
    plugin = ref.load()
    assert isinstance(plugin, ferrule.IsolatedPlugin) and plugin.sandbox is not None
    return os.getpid(), plugin.functions["pid"](), plugin.sandbox.namespaces, plugin.sum(np.arange(5.0))


def test_a_sandboxed_plugin_on_a_worker(client: Any, built: Built) -> None:
    ref = PluginRef(built.kernels, isolated=True, sandbox=ferrule.Sandbox(), timeout=30)
    try:
        worker_pid, plugin_pid, namespaces, total = client.submit(sandboxed_probe, ref, pure=False).result(TIMEOUT)
    except ferrule.SandboxError as exc:
        pytest.skip(f"this machine cannot give the default sandbox: {exc}")
    assert total == 10.0 and "pid" in namespaces and plugin_pid != worker_pid
    assert worker_pid in client.run(os.getpid).values()


# -- the docs' example


def test_the_docs_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "dask.md").read_text()
    c_source = re.search(r"```c\n(.*?)```", text, re.S)
    script = re.search(r"```python\n(.*?)```", text, re.S)
    assert c_source is not None and script is not None
    (tmp_path / "kernels.c").write_text(c_source.group(1))
    compile_plugin(tmp_path / "kernels.c", tmp_path / "libkernels.so")
    (tmp_path / "example.py").write_text(script.group(1))
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-2:] == ["True", "PluginCrashedError SIGSEGV"], proc.stdout
