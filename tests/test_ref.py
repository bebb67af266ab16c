"""ferrule.PluginRef: a picklable reference that loads its plugin once per
process, pinned to the library's content hash, from its own path or from a
shipped copy (ferrule.dask.ship), with errors that say where it looked.

Each test gets its own copy of the kernels plugin (a file the dynamic
loader maps apart, so its init counter starts at zero) and an empty cache
of loaded refs."""

from __future__ import annotations

import array
import hashlib
import json
import os
import pickle
import shutil
import signal
import threading
from pathlib import Path

import pytest

import ferrule
from ferrule import _ref
from ferrule import PluginRef
from ferrule._ref import add_shipped_dir

from .conftest import Built


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's loaded refs and shipped directories, empty for each test."""
    monkeypatch.setattr(_ref, "_cache", {})
    monkeypatch.setattr(_ref, "_locks", {})
    monkeypatch.setattr(_ref, "_shipped", [])


@pytest.fixture()
def kernels(built: Built, tmp_path: Path) -> Path:
    folder = tmp_path / "lib"
    folder.mkdir(mode=0o700)
    return Path(shutil.copy(built.kernels, folder / "libkernels.so"))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- what a ref is


def test_a_ref_holds_the_hash_of_the_file_and_pickles_without_touching_it(kernels: Path) -> None:
    ref = PluginRef(kernels, config={"scale": 2, "name": "ü"})
    assert ref.path == str(kernels) and ref.entry_point is None
    assert ref.sha256 == sha256_of(kernels)
    assert ref.config == '{"name":"ü","scale":2}'  # canonical: sorted keys, no spaces
    assert ref == PluginRef(str(kernels), config={"name": "ü", "scale": 2})  # the same mapping, in another order
    assert ref != PluginRef(kernels, config={"scale": 3})
    kernels.unlink()  # unpickling reads nothing: the other side may not have the file yet
    copy = pickle.loads(pickle.dumps(ref))
    assert copy == ref and hash(copy) == hash(ref) and repr(copy) == repr(ref)
    with pytest.raises(AttributeError):
        ref.config = "other"  # type: ignore[misc]


def test_the_config_reaches_the_plugin_as_given(kernels: Path) -> None:
    plugin = PluginRef(kernels, config={"b": [1, 2], "a": None}).load()
    assert json.loads(plugin.config()) == {"a": None, "b": [1, 2]}
    assert plugin.config() == '{"a":null,"b":[1,2]}'


def test_arguments_are_checked_when_the_ref_is_made(kernels: Path) -> None:
    with pytest.raises(TypeError, match="exactly one of them: got neither"):
        PluginRef()
    with pytest.raises(TypeError, match="exactly one of them: got both"):
        PluginRef(kernels, entry_point="kernels")
    with pytest.raises(TypeError, match="timeout: these apply only to an isolated plugin; pass isolated=True"):
        PluginRef(kernels, timeout=1.0)
    with pytest.raises(ValueError, match="timeout=.*positive number of seconds"):
        PluginRef(kernels, isolated=True, timeout=0)
    with pytest.raises(ValueError, match="sha256 must be 64 hex digits"):
        PluginRef(kernels, sha256="abc")
    with pytest.raises(TypeError, match="mapping of JSON values"):
        PluginRef(kernels, config={"f": object()})
    with pytest.raises(ferrule.LibraryNotFoundError, match="no file at .*nothing.so.*pass sha256="):
        PluginRef(kernels.parent / "nothing.so")
    # With the hash given, the file need not be here: it is looked for where the ref loads.
    ref = PluginRef(kernels.parent / "nothing.so", sha256="sha256:" + "AB" * 32)
    assert ref.sha256 == "ab" * 32


def test_a_sandboxed_ref_pickles(kernels: Path) -> None:
    sandbox = ferrule.Sandbox(env={"LANG": "C.UTF-8"}, read=["/usr/share"], memory=512 << 20)
    ref = PluginRef(kernels, isolated=True, sandbox=sandbox, timeout=5)
    copy = pickle.loads(pickle.dumps(ref))
    assert copy == ref and copy.sandbox == sandbox and copy._key == ref._key
    assert copy.timeout == 5.0
    assert PluginRef(kernels, isolated=True, sandbox=True).sandbox == ferrule.Sandbox()


def test_plugins_refuse_pickling_and_point_at_the_ref(kernels: Path) -> None:
    with ferrule.load(kernels) as plugin:
        with pytest.raises(TypeError, match=r"Pickle a ferrule.PluginRef instead"):
            pickle.dumps(plugin)
    with ferrule.load(kernels, isolated=True) as isolated:
        with pytest.raises(TypeError, match=r"IsolatedPlugin cannot be pickled.*ferrule.PluginRef"):
            pickle.dumps(isolated)


# -- one load per process


def test_threads_racing_load_the_plugin_once(kernels: Path) -> None:
    ref = PluginRef(kernels)
    start = threading.Barrier(8)
    got: list[object] = []

    def load() -> None:
        start.wait()
        got.append(pickle.loads(pickle.dumps(ref)).load())  # each thread with a ref of its own

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and all(p is got[0] for p in got)
    assert got[0].inits() == 1  # type: ignore[attr-defined]
    assert ref.load() is got[0]


def test_one_plugin_per_contents_config_and_mode(kernels: Path, tmp_path: Path) -> None:
    plugin = PluginRef(kernels).load()
    other_place = Path(shutil.copy(kernels, tmp_path / "libsame.so"))
    assert PluginRef(other_place).load() is plugin  # the same contents: the same plugin
    configured = PluginRef(kernels, config="x").load()
    assert configured is not plugin and configured.config() == "x"
    isolated = PluginRef(kernels, isolated=True).load()
    assert isinstance(isolated, ferrule.IsolatedPlugin) and isolated.pid != os.getpid()
    assert plugin.inits() == 2  # the file mapped once here, its init run for each of the two in-process plugins


def test_a_closed_plugin_is_loaded_again(kernels: Path) -> None:
    ref = PluginRef(kernels)
    first = ref.load()
    first.close()
    second = ref.load()
    assert second is not first and not second.closed
    assert second.inits() == 2


def test_an_isolated_plugin_that_crashed_serves_the_next_call(kernels: Path) -> None:
    ref = PluginRef(kernels, isolated=True, timeout=30)
    plugin = ref.load()
    before = plugin.functions["pid"]()
    with pytest.raises(ferrule.PluginCrashedError) as crashed:
        plugin.crash()
    assert crashed.value.signal == signal.SIGSEGV
    assert ref.load() is plugin  # not loaded again: the plugin starts a new child itself
    after = plugin.functions["pid"]()
    assert after != before and after != os.getpid()


# -- where the library is found


def test_a_changed_file_is_refused(kernels: Path, built: Built) -> None:
    ref = PluginRef(kernels)
    kernels.unlink()
    shutil.copy(built.cdata, kernels)  # another library in its place
    with pytest.raises(ferrule.PinMismatchError) as refused:
        ref.load()
    message = str(refused.value)
    assert ref.sha256 in message and sha256_of(kernels) in message and str(kernels) in message
    assert "never runs" in message


def test_a_missing_file_says_where_it_looked_and_what_to_do(kernels: Path) -> None:
    ref = PluginRef(kernels)
    kernels.unlink()
    with pytest.raises(ferrule.LibraryNotFoundError) as missing:
        ref.load()
    message = str(missing.value)
    assert f"{kernels}: no such file" in message and ref.sha256 in message
    assert "no shipped copies are registered" in message and "ferrule.dask.ship(client, ref)" in message
    assert isinstance(missing.value, FileNotFoundError)


def test_a_shipped_copy_serves_a_ref_whose_file_is_gone(kernels: Path, tmp_path: Path) -> None:
    ref = PluginRef(kernels)
    shipped = tmp_path / "shipped"
    (shipped / ref.sha256).mkdir(parents=True, mode=0o700)
    shipped.chmod(0o700)
    copy = shipped / ref.sha256 / "libkernels.so"
    shutil.copy(kernels, copy)
    kernels.unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    add_shipped_dir(empty)
    add_shipped_dir(shipped)
    add_shipped_dir(shipped)  # once is enough
    assert _ref.shipped_dirs() == (str(empty), str(shipped))
    plugin = ref.load()
    assert plugin.path == str(copy) and plugin.inits() == 1
    assert plugin.sum(array.array("d", [1.5, 2.5])) == 4.0


def test_a_shipped_copy_with_other_contents_never_runs(kernels: Path, tmp_path: Path, built: Built) -> None:
    ref = PluginRef(kernels)
    kernels.unlink()
    shipped = tmp_path / "shipped"
    (shipped / ref.sha256).mkdir(parents=True, mode=0o700)
    shutil.copy(built.hostile, shipped / ref.sha256 / "libkernels.so")
    add_shipped_dir(shipped)
    with pytest.raises(ferrule.PinMismatchError) as refused:
        ref.load()
    message = str(refused.value)
    assert f"{kernels}: no such file" in message
    copy = shipped / ref.sha256 / "libkernels.so"
    assert f"{copy}: has other contents (SHA-256 {sha256_of(built.hostile)})" in message


def test_a_bare_name_is_looked_up_in_ferrule_path(kernels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRULE_PATH", str(kernels.parent))
    ref = PluginRef("libkernels.so")
    assert ref.path == str(kernels)
    assert ref.load().path == str(kernels)


# -- entry points


def install(site: Path, library: Path, name: str) -> Path:
    """What pip leaves of a plugin wheel: the library in a package, and a dist-info."""
    target = site / "ferrule_kernels" / library.name
    target.parent.mkdir(parents=True)
    shutil.copy(library, target)
    info = site / "ferrule_kernels-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ferrule-kernels\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ferrule.plugins]\n{name} = ferrule_kernels:{library.name}\n")
    (info / "RECORD").write_text("")
    return target


def test_an_entry_point_ref(kernels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    installed = install(site, kernels, "kernels")
    ref = PluginRef(entry_point="kernels", config="ep")
    assert ref.path is None and ref.entry_point == "kernels" and ref.sha256 == sha256_of(kernels)
    copy = pickle.loads(pickle.dumps(ref))
    plugin = copy.load()
    assert plugin.path == str(installed) and plugin.config() == "ep"
    with pytest.raises(ferrule.LibraryNotFoundError, match="no entry point 'nope' in group 'ferrule.plugins'"):
        PluginRef(entry_point="nope")


def test_an_entry_point_uninstalled_where_it_loads(kernels: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    install(site, kernels, "kernels")
    ref = PluginRef(entry_point="kernels")
    shutil.rmtree(site / "ferrule_kernels")
    shutil.rmtree(site / "ferrule_kernels-1.0.dist-info")
    with pytest.raises(ferrule.LibraryNotFoundError, match="entry point 'kernels' of group 'ferrule.plugins': not "
                                                           "installed.*ferrule.dask.ship"):
        ref.load()


def test_a_scanned_plugin_makes_a_ref_pinned_to_what_was_scanned(kernels: Path, tmp_path: Path, built: Built,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRULE_CACHE_DIR", str(tmp_path / "cache"))
    (info,) = [p for p in ferrule.scan([kernels.parent]).plugins if p.path == str(kernels)]
    assert PluginRef(info).load().id == "org.ferrule.tests.kernels"
    kernels.unlink()
    shutil.copy(built.cdata, kernels)  # changed after the scan: the ref pins what was scanned, not what is there
    ref = PluginRef(info, config="after")
    assert ref.sha256 == info.sha256 != sha256_of(kernels) and ref.path == str(kernels)
    with pytest.raises(ferrule.PinMismatchError):
        ref.load()


def test_an_unsafe_file_at_the_path_leaves_the_shipped_copy_to_serve(kernels: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    library = Path(shutil.copy(kernels, shared / "libkernels.so"))
    ref = PluginRef(library, config="unsafe-path")
    shared.chmod(0o775)  # the group may write there: the loader refuses it
    with pytest.raises(ferrule.UnsafeFileError, match=r"refused, as the directory of .* writable by its group.*"
                                                      r"make it and its directory writable only by their owner"):
        ref.load()
    shipped = tmp_path / "shipped"
    copy = shipped / ref.sha256 / "libkernels.so"
    copy.parent.mkdir(parents=True, mode=0o700)
    shipped.chmod(0o700)
    shutil.copy(kernels, copy)
    add_shipped_dir(shipped)
    try:
        assert ref.load().config() == "unsafe-path"
        assert ref.load().path == str(copy)
    finally:
        _ref._shipped.remove(str(shipped))

