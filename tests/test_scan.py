"""ferrule.scan and `ferrule list`: discovery without loading, the worker's
blocklist for libraries that crash or hang it, and the cache."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferrule
from ferrule._sandbox import launch
from ferrule._abi.descriptor import describe
from ferrule._abi.spec import FunctionSpec, OfferSpec, PluginSpec
from ferrule._abi.signature import parse_signature
from ferrule._loader import Library
from ferrule._scan import cache as _cache
from ferrule._scan import deps as _deps
from ferrule._scan import scan as _scan

from .conftest import Built, compile_plugin

CRASH_ENTRY = r"""
#include "ferrule.h"
FERRULE_ENTRY { *(volatile int *)0 = 0; return NULL; }
"""

HANG_ENTRY = r"""
#include "ferrule.h"
FERRULE_ENTRY { volatile int spin = 1; while (spin) {} return NULL; }
"""

ABORT_CONSTRUCTOR = r"""
#include <stdio.h>
#include <stdlib.h>
#include "ferrule.h"
__attribute__((constructor)) static void boom(void) { fprintf(stderr, "about to fail\n"); abort(); }
FERRULE_ENTRY { return NULL; }
"""

# A good plugin whose constructor writes worker-protocol lookalikes to stdout
# and reads stdin: neither may confuse the scan.
NOISY = r"""
#include <stdio.h>
#include "ferrule.h"
static int32_t one(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->i64 = 1;
    return FERRULE_OK;
}
static const ferrule_function f_one = FERRULE_FUNCTION("one", "() -> i64", "One.", FERRULE_FN_THREAD_SAFE, one);
static const ferrule_function *const functions[] = {&f_one};
static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.ferrule.tests.noisy", "Noisy", "2.0.0", "Prints while loading.", "MIT",
    1, 0, functions, NULL, NULL, 0, 0, NULL,
};
__attribute__((constructor)) static void chatter(void) {
    char line[64];
    puts("{\"plugin\": {}}");
    puts("{\"start\": \"/elsewhere.so\"}");
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) != NULL) puts(line);
}
FERRULE_ENTRY { return &descriptor; }
"""

GOOD = {
    "libgreeter.so": "org.ferrule.examples.greeter",
    "libkitchen.so": "org.ferrule.tests.kitchen",
    "libcalc.so": "org.ferrule.examples.calc",
    "libifaces_c.so": "org.ferrule.test.ifaces_c",
}
REJECTED = {
    "libbad_magic.so": "BadMagicError",
    "libentry_null.so": "NoEntryPointError",
    "libno_entry.so": "NoEntryPointError",
    "libabi_major_2.so": "AbiVersionError",
    "libbad_signature.so": "SignatureError",
    "x.so": "NotALibraryError",
    "empty.so": "NotALibraryError",
}


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache and no FERRULE_PATH of the user's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FERRULE_CACHE_DIR", str(cache))
    monkeypatch.delenv("FERRULE_PATH", raising=False)
    return cache


def cache_file() -> Path:
    return Path(_cache.cache_file())


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Libraries that crash, hang or shout while their descriptor is read."""
    out = tmp_path_factory.mktemp("bad-plugins")
    built = {}
    for name, source in [("crash", CRASH_ENTRY), ("hang", HANG_ENTRY), ("abort", ABORT_CONSTRUCTOR), ("noisy", NOISY)]:
        c_file = out / f"{name}.c"
        c_file.write_text(source)
        built[name] = compile_plugin(c_file, out / f"lib{name}.so")
    return built


@pytest.fixture
def plugins(built: Built, tmp_path: Path) -> Path:
    """A directory of good plugins, rejected libraries and files a scan ignores."""
    d = tmp_path / "plugins"
    d.mkdir()
    sources = {
        "libgreeter.so": built.greeter,
        "libkitchen.so": built.kitchen,
        "libcalc.so": built.calc,
        "libifaces_c.so": built.ifaces_c,
        "libbad_magic.so": built.variant("BAD_MAGIC"),
        "libentry_null.so": built.variant("ENTRY_NULL"),
        "libno_entry.so": built.variant("NO_ENTRY"),
        "libabi_major_2.so": built.variant("ABI_MAJOR_2"),
        "libbad_signature.so": built.variant("BAD_SIGNATURE"),
    }
    for name, source in sources.items():
        shutil.copy(source, d / name)
    (d / "x.so").write_text("not a library\n")
    (d / "empty.so").write_bytes(b"")
    # Ignored: other suffixes, subdirectories, a directory named like a
    # library, a dangling symlink.
    shutil.copy(built.calc, d / "libcalc.so.bak")
    (d / "notes.txt").write_text("not a plugin")
    (d / "nested").mkdir()
    shutil.copy(built.greeter, d / "nested" / "libnested.so")
    (d / "libdir.so").mkdir()
    (d / "libgone.so").symlink_to(d / "no-such-target.so")
    return d


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The path list of every worker the scans start."""
    started: list[list[str]] = []
    real = _scan._start_worker

    def spy(paths: list[str], *rest: Any) -> subprocess.Popen[bytes]:
        started.append(list(paths))
        return real(paths, *rest)

    monkeypatch.setattr(_scan, "_start_worker", spy)
    return started


def no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(paths: list[str], *rest: Any) -> subprocess.Popen[bytes]:
        raise AssertionError(f"a worker was started for {paths}")

    monkeypatch.setattr(_scan, "_start_worker", refuse)


def names(items: Any) -> list[str]:
    return [os.path.basename(i.path) for i in items]


def in_process_error(path: Path) -> ferrule.FerruleError:
    with pytest.raises(ferrule.FerruleError) as caught:
        describe(Library(path))
    return caught.value


# -- a library that needs another one

NEEDS_A_LIBRARY = r"""
#include "ferrule.h"
int ferrule_test_dep(void);
static int32_t dep(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->i64 = ferrule_test_dep();
    return FERRULE_OK;
}
static const ferrule_function f_dep = FERRULE_FUNCTION("dep", "() -> i64", "From libferdep.", 0, dep);
static const ferrule_function *const fns[] = {&f_dep};
static const ferrule_plugin desc = {FERRULE_PLUGIN_HEAD, "org.ferrule.test.needy", "needy", "1", 0, 0, 1, 0, fns,
                                    0, 0, 0, 0, 0};
FERRULE_ENTRY { return &desc; }
"""


@pytest.fixture
def needy(tmp_path: Path) -> tuple[Path, Path]:
    """A plugin linked against libferdep.so, looked for in $ORIGIN/deps (its
    RUNPATH), and that library, not yet installed."""
    lib_dir, plugin_dir = tmp_path / "dep-build", tmp_path / "needy"
    lib_dir.mkdir()
    plugin_dir.mkdir()
    (lib_dir / "dep.c").write_text('__attribute__((visibility("default"))) int ferrule_test_dep(void) { return 42; }\n')
    dep = compile_plugin(lib_dir / "dep.c", lib_dir / "libferdep.so")
    (plugin_dir / "needy.c").write_text(NEEDS_A_LIBRARY)
    compile_plugin(plugin_dir / "needy.c", plugin_dir / "libneedy.so", f"-L{lib_dir}", "-lferdep",
                   "-Wl,-rpath,$ORIGIN/deps")
    (plugin_dir / "needy.c").unlink()
    return plugin_dir, dep


def test_a_missing_dependency_stays_rejected_only_until_it_is_installed(needy: tuple[Path, Path],
                                                                       workers: list[list[str]]) -> None:
    plugin_dir, dep = needy
    (problem,) = ferrule.scan([plugin_dir]).problems
    assert (problem.kind, problem.error) == ("rejected", "MissingDependencyError")
    assert "libferdep.so" in problem.message
    assert ferrule.scan([plugin_dir]).problems == (problem,)
    assert len(workers) == 1, "nothing changed: the rejection comes from the cache"
    (plugin_dir / "deps").mkdir()
    shutil.copy(dep, plugin_dir / "deps" / dep.name)  # installed where the plugin's RUNPATH looks
    (found,) = ferrule.scan([plugin_dir]).plugins
    assert found.id == "org.ferrule.test.needy" and len(workers) == 2
    with ferrule.load(found.path) as plugin:
        assert plugin.dep() == 42


def test_a_missing_dependency_found_through_ld_library_path(needy: tuple[Path, Path], workers: list[list[str]],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_dir, dep = needy
    assert ferrule.scan([plugin_dir]).rejected
    monkeypatch.setenv("LD_LIBRARY_PATH", str(dep.parent))  # the worker, a new process, sees it
    assert [p.id for p in ferrule.scan([plugin_dir]).plugins] == ["org.ferrule.test.needy"]
    assert len(workers) == 2


def test_other_rejections_are_not_read_again(plugins: Path, workers: list[list[str]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A bad magic does not depend on where libraries are searched for.
    assert ferrule.scan([plugins]).rejected
    monkeypatch.setenv("LD_LIBRARY_PATH", str(plugins))
    assert ferrule.scan([plugins]).rejected
    assert len(workers) == 1


# -- a cold scan


def test_cold_scan_lists_plugins_and_problems_without_loading_them(plugins: Path, workers: list[list[str]]) -> None:
    result = ferrule.scan([plugins])
    mapped = Path("/proc/self/maps").read_text()
    assert str(plugins) not in mapped, "a scanned library was mapped into the scanning process"

    assert names(result.plugins) == sorted(GOOD)
    assert {p.id for p in result.plugins} == set(GOOD.values())
    assert names(result.problems) == sorted(REJECTED)
    assert all(p.kind == "rejected" for p in result.problems)
    assert result.rejected == result.problems and result.blocked == ()
    assert result.directories == (str(plugins),)
    assert len(workers) == 1  # one worker read every library

    greeter = result.plugins[names(result.plugins).index("libgreeter.so")]
    assert greeter.path == str(plugins / "libgreeter.so")
    assert (greeter.name, greeter.version, greeter.license) == ("Greeter", "0.1.0", "MIT")
    assert greeter.abi_version == (1, 2)
    assert ("add", "(a: i64, b: i64) -> i64") in greeter.functions
    assert ("greet", "(name: str) -> str") in greeter.functions
    assert greeter.interfaces == ()

    # Every field matches what the in-process reader says of the same file.
    for info in result.plugins:
        desc = describe(Library(info.path)).spec
        assert (info.id, info.name, info.version, info.description, info.license, info.abi_version) == (
            desc.id, desc.name, desc.version, desc.description, desc.license, desc.abi_version)
        assert info.functions == tuple((f.name, str(f.signature)) for f in desc.functions)
        assert info.interfaces == tuple((o.id, o.revision, o.name) for o in desc.offers)
    ifaces = result.plugins[names(result.plugins).index("libifaces_c.so")]
    assert ifaces.interfaces and all(rev >= 1 for _, rev, _ in ifaces.interfaces)


def test_rejected_libraries_carry_the_readers_class_and_message(plugins: Path) -> None:
    result = ferrule.scan([plugins])
    for problem in result.problems:
        expected = in_process_error(Path(problem.path))
        assert problem.error == REJECTED[os.path.basename(problem.path)] == type(expected).__name__
        assert problem.message == str(expected)


def test_a_scan_survives_libraries_that_crash_or_hang(bad: dict[str, Path], built: Built, tmp_path: Path,
                                                      workers: list[list[str]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    # Sorted names put each bad library before some good ones.
    for name, source in [("libaa_crash.so", bad["crash"]), ("libab_hang.so", bad["hang"]),
                         ("libac_abort.so", bad["abort"]), ("libgreeter.so", built.greeter),
                         ("libnoisy.so", bad["noisy"])]:
        shutil.copy(source, d / name)

    start = time.monotonic()
    result = ferrule.scan([d], timeout=1.0)
    cold = time.monotonic() - start

    assert names(result.plugins) == ["libgreeter.so", "libnoisy.so"]
    noisy = result.plugins[1]
    assert (noisy.id, noisy.version, noisy.functions) == ("org.ferrule.tests.noisy", "2.0.0", (("one", "() -> i64"),))
    crash, hang, abort = result.problems
    assert (crash.kind, crash.error) == ("crashed", "SIGSEGV")
    assert (hang.kind, hang.error) == ("hung", "timeout")
    assert (abort.kind, abort.error) == ("crashed", "SIGABRT")
    assert result.blocked == result.problems
    assert "longer than 1 s" in hang.message and "refresh" in hang.message
    assert str(d / "libaa_crash.so") in crash.message and "blocklisted" in crash.message
    assert "about to fail" in abort.message  # the worker's last stderr lines
    all_paths = [str(d / n) for n in sorted(os.listdir(d))]
    if launch.bwrap()[0] is not None:  # sandboxed: one worker for all, each library in a process of its own
        assert workers == [all_paths]
    else:  # a fresh worker after each bad library, starting just after it
        assert workers == [all_paths, all_paths[1:], all_paths[2:], all_paths[3:]]
    assert 1.0 <= cold < 15.0

    # The blocklist is remembered: no worker, and the hang costs nothing.
    no_worker(monkeypatch)
    start = time.monotonic()
    assert ferrule.scan([d], timeout=1.0) == result
    assert time.monotonic() - start < 0.5


def test_refresh_retries_blocklisted_libraries(bad: dict[str, Path], tmp_path: Path,
                                               workers: list[list[str]]) -> None:
    d = tmp_path / "one"
    d.mkdir()
    shutil.copy(bad["crash"], d / "libcrash.so")
    first = ferrule.scan([d])
    assert [p.kind for p in first.problems] == ["crashed"]
    assert ferrule.scan([d]) == first
    assert len(workers) == 1
    assert ferrule.scan([d], refresh=True) == first
    assert workers == [[str(d / "libcrash.so")]] * 2


# -- the cache


def test_warm_scan_starts_no_worker(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ferrule.scan([plugins])
    assert cache_file().is_file()
    no_worker(monkeypatch)
    assert ferrule.scan([plugins]) == first


def test_a_changed_file_is_read_again(plugins: Path, bad: dict[str, Path], workers: list[list[str]]) -> None:
    crash = plugins / "libcrash.so"
    shutil.copy(bad["crash"], crash)
    first = ferrule.scan([plugins])
    assert "libcrash.so" in names(first.blocked)
    greeter = plugins / "libgreeter.so"
    st = greeter.stat()
    os.utime(greeter, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    shutil.copy(plugins / "libcalc.so", crash)  # rebuilt: gets another chance
    workers.clear()
    second = ferrule.scan([plugins])
    assert workers == [[str(crash), str(greeter)]]
    assert second.blocked == ()
    assert [p.id for p in second.plugins if p.path == str(crash)] == ["org.ferrule.examples.calc"]


def test_a_deleted_file_leaves_the_cache(plugins: Path) -> None:
    ferrule.scan([plugins])
    (plugins / "libgreeter.so").unlink()
    result = ferrule.scan([plugins])
    assert "libgreeter.so" not in names(result.plugins)
    assert str(plugins / "libgreeter.so") not in json.loads(cache_file().read_bytes())["entries"]


def test_entries_of_other_directories_are_kept(plugins: Path, built: Built, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(built.calc, other / "libcalc.so")
    ferrule.scan([plugins])
    ferrule.scan([other])
    no_worker(monkeypatch)
    assert names(ferrule.scan([plugins, other]).plugins) == ["libcalc.so", *sorted(GOOD)]


def test_no_cache_neither_reads_nor_writes(plugins: Path, workers: list[list[str]],
                                           caplog: pytest.LogCaptureFixture) -> None:
    first = ferrule.scan([plugins], cache=False)
    assert not cache_file().exists()
    cache_file().parent.mkdir()
    cache_file().write_bytes(b"garbage")
    assert ferrule.scan([plugins], cache=False) == first
    assert len(workers) == 2
    assert cache_file().read_bytes() == b"garbage"
    assert not caplog.records


def valid_cache(plugins: Path) -> dict[str, Any]:
    ferrule.scan([plugins])
    doc: dict[str, Any] = json.loads(cache_file().read_bytes())
    return doc


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "garbage bytes": lambda data: b"\x00\xff\xfe garbage \x80",
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "a list": lambda data: b"[1, 2, 3]",
    "another format": lambda data: data.replace(b'"format":%d' % _cache.FORMAT, b'"format":%d' % (_cache.FORMAT + 1)),
    "format true": lambda data: data.replace(b'"format":%d' % _cache.FORMAT, b'"format":true'),
    "another ABI": lambda data: data.replace(b'"abi":[1,2],', b'"abi":[1,99],', 1),
    "entries a list": lambda data: json.dumps({"format": _cache.FORMAT, "abi": [1, 2], "entries": []}).encode(),
    "deep nesting": lambda data: b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_cache_is_rebuilt(plugins: Path, corrupt: Callable[[bytes], bytes], workers: list[list[str]],
                                    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ferrule.scan([plugins])
    file = cache_file()
    good = file.read_bytes()
    bad_data = corrupt(good)
    assert bad_data != good
    file.write_bytes(bad_data)
    workers.clear()
    with caplog.at_level(logging.WARNING, logger="ferrule.scan"):
        assert ferrule.scan([plugins]) == first
    assert [r.name for r in caplog.records] == ["ferrule.scan"]
    assert str(file) in caplog.records[0].getMessage()
    assert len(workers) == 1 and len(workers[0]) == len(GOOD) + len(REJECTED)
    # Rewritten whole: the next scan trusts it, with no warning.
    caplog.clear()
    no_worker(monkeypatch)
    assert ferrule.scan([plugins]) == first
    assert not caplog.records


def test_malformed_entries_are_read_again_alone(plugins: Path, workers: list[list[str]],
                                                caplog: pytest.LogCaptureFixture) -> None:
    doc = valid_cache(plugins)
    greeter, calc, x = (str(plugins / n) for n in ("libgreeter.so", "libcalc.so", "x.so"))
    doc["entries"][greeter]["size"] = str(doc["entries"][greeter]["size"])  # a string
    doc["entries"][calc]["plugin"]["functions"] = [["mul", 5]]  # a number for a signature
    doc["entries"][x]["problem"]["kind"] = "fine"  # not a kind
    doc["entries"]["relative.so"] = doc["entries"].pop(str(plugins / "libkitchen.so"))  # not an absolute path
    cache_file().write_text(json.dumps(doc))
    workers.clear()
    with caplog.at_level(logging.WARNING, logger="ferrule.scan"):
        result = ferrule.scan([plugins])
    assert workers == [sorted([calc, greeter, str(plugins / "libkitchen.so"), x])]
    assert "4 malformed entries" in caplog.text
    assert names(result.plugins) == sorted(GOOD)
    assert "relative.so" not in json.loads(cache_file().read_bytes())["entries"]


def test_a_malformed_entry_of_another_directory_is_dropped_once(plugins: Path, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    doc = valid_cache(plugins)
    doc["entries"][str(tmp_path / "elsewhere" / "libx.so")] = {"size": -1, "mtime_ns": 0, "problem": None}
    cache_file().write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="ferrule.scan"):
        ferrule.scan([plugins])
        assert "1 malformed entry (first" in caplog.text
        caplog.clear()
        ferrule.scan([plugins])  # the first scan rewrote the file without it
    assert not caplog.records


def test_a_host_of_another_abi_ignores_the_cache(plugins: Path, workers: list[list[str]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ferrule.scan([plugins])
    first_file = cache_file()
    monkeypatch.setattr(_cache, "HOST_ABI", (1, 99))
    assert cache_file() != first_file
    ferrule.scan([plugins])
    assert len(workers) == 2
    assert json.loads(cache_file().read_bytes())["abi"] == [1, 99]
    assert first_file.exists()  # the other host's cache is left alone


def test_an_unwritable_cache_only_warns(plugins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FERRULE_CACHE_DIR", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger="ferrule.scan"):
        result = ferrule.scan([plugins])
    assert names(result.plugins) == sorted(GOOD)
    assert "cannot write the scan cache" in caplog.text


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_cache_that_is_no_file_neither_hangs_nor_is_read(plugins: Path, kind: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A FIFO (no writer: open would wait) or a link to /dev/zero (read would
    never end) in the cache's place: the scan warns, reads every plugin and
    writes a real cache over it."""
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with caplog.at_level(logging.WARNING, logger="ferrule.scan"):
        result = ferrule.scan([plugins])
    assert names(result.plugins) == sorted(GOOD)
    expected = "is a FIFO (named pipe), not a file" if kind == "fifo" else "is a character device, not a file"
    assert "cannot read the scan cache" in caplog.text and expected in caplog.text
    assert path.is_file() and not path.is_symlink() and json.loads(path.read_bytes())["entries"]


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name = "scan-abi%d.%d.json" % (ferrule.ABI_MAJOR, ferrule.ABI_MINOR)
    assert cache_file() == Path(os.environ["FERRULE_CACHE_DIR"]) / name
    monkeypatch.delenv("FERRULE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_file() == tmp_path / "xdg" / "ferrule" / name
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_file() == tmp_path / "home" / ".cache" / "ferrule" / name


def test_cache_file_is_private_and_leaves_no_temp_files(plugins: Path) -> None:
    ferrule.scan([plugins])
    assert [p.name for p in cache_file().parent.iterdir()] == [cache_file().name]  # no temp files left
    assert oct(cache_file().stat().st_mode & 0o777) == oct(0o600)


# -- directories


def test_ferrule_path(plugins: Path, built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(built.calc, other / "libcalc2.so")
    missing = tmp_path / "missing"
    monkeypatch.setenv("FERRULE_PATH", os.pathsep.join([str(other), "", str(missing), str(plugins)]))
    result = ferrule.scan()
    assert result.directories == (str(other), str(plugins))
    assert names(result.plugins) == ["libcalc2.so", *sorted(GOOD)]  # sorted by path: other/ < plugins/
    # Given directories come first; one listed twice is read once.
    assert ferrule.scan([plugins]).directories == (str(plugins), str(other))


def test_no_directories_at_all() -> None:
    result = ferrule.scan()
    assert result == ferrule.ScanResult((), (), ())


def test_bad_arguments(tmp_path: Path, plugins: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no plugin directory at .*missing: check the path"):
        ferrule.scan([tmp_path / "missing"])
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        ferrule.scan([plugins / "libcalc.so"])
    with pytest.raises(TypeError, match="wrap it in a list"):
        ferrule.scan(str(plugins))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive number of seconds"):
        ferrule.scan([plugins], timeout=0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        ferrule.scan([plugins], timeout=float("nan"))


def test_worker_that_cannot_start_is_an_isolation_error(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(paths: list[str], timeout: float, stderr: IO[bytes], launch: Any) -> subprocess.Popen[bytes]:
        code = "import sys; sys.stderr.write('no ferrule here\\n'); sys.exit(3)"
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr)

    monkeypatch.setattr(_scan, "_start_worker", broken)
    with pytest.raises(ferrule.IsolationError, match="exit status 3.*no ferrule here") as caught:
        ferrule.scan([plugins])
    assert caught.value.exit_status == 3


# -- the command


def ferrule_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferrule", *map(str, args)], capture_output=True, text=True)


def test_list_text(plugins: Path) -> None:
    proc = ferrule_cli("list", plugins)
    assert proc.returncode == 0, proc.stderr  # problems are reported, not failures
    lines = proc.stdout.splitlines()
    greeter = next(line for line in lines if "org.ferrule.examples.greeter" in line)
    assert greeter.split() == ["org.ferrule.examples.greeter", "0.1.0", str(plugins / "libgreeter.so")]
    assert f"{len(REJECTED)} problems:" in lines
    assert f"  rejected  {plugins / 'libbad_magic.so'}" in lines
    assert any(line.strip().startswith("BadMagicError: ") for line in lines)
    assert cache_file().is_file()


def test_list_json(plugins: Path) -> None:
    proc = ferrule_cli("list", "--json", "--no-cache", plugins)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["directories"] == [str(plugins)]
    calc = next(p for p in doc["plugins"] if p["id"] == "org.ferrule.examples.calc")
    assert calc["path"] == str(plugins / "libcalc.so")
    assert calc["abi"] == {"major": 1, "minor": 2}
    assert {"name": "mul", "signature": "(a: i64, b: i64) -> i64"} in calc["functions"]
    assert sorted(os.path.basename(p["path"]) for p in doc["problems"]) == sorted(REJECTED)
    assert {p["kind"] for p in doc["problems"]} == {"rejected"}
    assert not cache_file().exists()


def test_list_missing_directory(tmp_path: Path) -> None:
    proc = ferrule_cli("list", tmp_path / "missing")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"ferrule: no plugin directory at {tmp_path / 'missing'}")


# -- fuzzing the cache-file parser

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
texts = st.text(max_size=30)
paths = st.text(st.characters(blacklist_characters="\0"), max_size=20).map(lambda s: "/" + s)
ids = st.from_regex(r"[a-z0-9_-]{1,8}(\.[a-z0-9_-]{1,8}){1,3}", fullmatch=True)
signatures = st.sampled_from(["()", "(a: i64, b: i64) -> i64", "(s: str) -> str", "(d: buf[f64], f: fn(i64) -> bool)"])
function_specs = st.lists(
    st.tuples(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), signatures, texts, st.integers(0, 2**32 - 1)),
    max_size=4, unique_by=lambda f: f[0],
).map(lambda fs: tuple(FunctionSpec(n, parse_signature(s).text, d, f) for n, s, d, f in fs))
offer_specs = st.lists(
    st.builds(OfferSpec, id=ids, revision=st.integers(0, 2**32 - 1), name=texts, doc=texts,
              flags=st.integers(0, 2**32 - 1), fingerprint=st.integers(0, 2**64 - 1), layout=texts,
              method_count=st.integers(0, 256)),
    max_size=3,
).map(tuple)
plugin_infos = st.builds(
    PluginSpec, path=st.just(""), id=ids, name=texts, version=texts, description=texts, license=texts,
    abi_version=st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1)),
    functions=function_specs, offers=offer_specs,
)
problems = st.builds(ferrule.ScanProblem, path=st.just(""), kind=st.sampled_from(["rejected", "crashed", "hung"]),
                     error=texts, message=texts)
depends = st.none() | st.builds(_deps.Depends, texts, st.lists(st.tuples(paths, st.integers()), max_size=3).map(tuple))
entries = st.dictionaries(paths, st.tuples(st.integers(min_value=0), st.integers(), plugin_infos | problems, depends),
                          max_size=5)


def entry_map(raw: dict[str, tuple[int, int, Any, Any]]) -> dict[str, Any]:
    from dataclasses import replace

    def at(result: Any, path: str) -> Any:
        return result._replace(path=path) if isinstance(result, PluginSpec) else replace(result, path=path)

    # Only a rejection has depends.
    return {path: _cache.Entry(size, mtime, at(result, path), None if isinstance(result, PluginSpec) else deps)
            for path, (size, mtime, result, deps) in raw.items()}


def parse(data: bytes) -> dict[str, Any]:
    entries, dirty = _cache.parse_cache(data)
    assert isinstance(dirty, bool)
    return entries


def assert_valid(parsed: dict[str, Any]) -> None:
    """What the parser returns is what the writer can write and read back."""
    assert isinstance(parsed, dict)
    for path, entry in parsed.items():
        assert isinstance(entry, _cache.Entry) and entry.result.path == path
    assert _cache.parse_cache(_cache.dump_cache(parsed)) == (parsed, False)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the hundreds of expected warnings."""
    logger = logging.getLogger("ferrule.scan")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@pytest.mark.fuzz
@given(data=st.binary(max_size=200))
def test_fuzz_any_bytes(data: bytes) -> None:
    with quiet():
        assert_valid(parse(data))


@pytest.mark.fuzz
@given(value=json_values, where=st.sampled_from(["top", "entries", "entry", "plugin", "problem", "depends"]),
       path=paths)
def test_fuzz_any_json(value: Any, where: str, path: str) -> None:
    # Put the value at each level of an otherwise well-formed file.
    entry: Any = {"size": 1, "mtime_ns": 2, "plugin": value} if where == "plugin" else value
    if where == "problem":
        entry = {"size": 1, "mtime_ns": 2, "problem": value}
    if where == "depends":
        entry = {"size": 1, "mtime_ns": 2, "problem": {"kind": "rejected", "error": "E", "message": "m"},
                 "depends": value}
    body: Any = value if where == "entries" else {path: entry}
    doc = value if where == "top" else {"format": _cache.FORMAT, "abi": list(_cache.HOST_ABI), "entries": body}
    with quiet():
        assert_valid(parse(json.dumps(doc).encode()))


@pytest.mark.fuzz
@given(raw=entries)
def test_fuzz_valid_entries_round_trip(raw: dict[str, tuple[int, int, Any, Any]]) -> None:
    parsed = entry_map(raw)
    with quiet():
        assert _cache.parse_cache(_cache.dump_cache(parsed)) == (parsed, False)


@pytest.mark.fuzz
@given(raw=entries, cut=st.integers(min_value=0), byte=st.integers(0, 255))
def test_fuzz_damaged_valid_file(raw: dict[str, tuple[int, int, Any, Any]], cut: int, byte: int) -> None:
    data = bytearray(_cache.dump_cache(entry_map(raw)))
    data[cut % len(data)] = byte
    with quiet():
        assert_valid(parse(bytes(data)))
        assert_valid(parse(bytes(data[: cut % len(data)])))


def test_file_names_that_are_not_utf8_round_trip() -> None:
    path = "/plugins/lib\udcff.so"  # how Python spells the byte 0xff of a file name
    parsed = {path: _cache.Entry(1, 2, ferrule.ScanProblem(path, "rejected", "NotALibraryError", f"{path}: no"))}
    assert _cache.parse_cache(_cache.dump_cache(parsed)) == (parsed, False)


def test_a_cache_with_its_digest_reads_the_same_as_one_checked_entry_by_entry(plugins: Path) -> None:
    # The digest lets the reader skip checking each entry; it must change
    # nothing but the speed, and a file changed after writing is checked.
    ferrule.scan([plugins])
    data = Path(_cache.cache_file()).read_bytes()
    trusted, dirty = _cache.parse_cache(data)
    assert not dirty and trusted
    head, _, rest = data.partition(b',"digest":"')
    unsigned = head + b"," + rest.split(b'",', 1)[1]
    checked, dirty = _cache.parse_cache(unsigned)
    assert not dirty and checked == trusted
    assert all(e.result.info() == _scan.info(checked[p].result) for p, e in trusted.items()
               if isinstance(e.result, _cache.StoredSpec))
    # Tampered after writing, the digest left as it was: every entry is checked again.
    path = next(p for p, e in trusted.items() if isinstance(e.result, _cache.StoredSpec))
    entry = json.loads(data)["entries"][path]
    tampered = data.replace(json.dumps(entry, separators=(",", ":")).encode(),
                            json.dumps({**entry, "plugin": {**entry["plugin"], "id": "not reverse dns"}},
                                       separators=(",", ":")).encode())
    assert tampered != data
    with quiet():
        entries, dirty = _cache.parse_cache(tampered)
    assert dirty and path not in entries and len(entries) == len(trusted) - 1


def test_a_dependency_of_a_dependency(tmp_path: Path, workers: list[list[str]]) -> None:
    # plugin -> libmid (found through the plugin's RUNPATH) -> libleaf
    # (looked for in libmid's RUNPATH): installing libleaf there ends it.
    mid_dir, plugin_dir, build = tmp_path / "mid", tmp_path / "plugins", tmp_path / "build"
    for d in (mid_dir, plugin_dir, build):
        d.mkdir()
    (build / "leaf.c").write_text('__attribute__((visibility("default"))) int leaf(void) { return 41; }\n')
    leaf = compile_plugin(build / "leaf.c", build / "libferleaf.so")
    (build / "mid.c").write_text('int leaf(void);\n'
                                 '__attribute__((visibility("default"))) int ferrule_test_dep(void) '
                                 '{ return leaf() + 1; }\n')
    compile_plugin(build / "mid.c", mid_dir / "libferdep.so", f"-L{build}", "-lferleaf", "-Wl,-rpath,$ORIGIN/leaf")
    (build / "needy.c").write_text(NEEDS_A_LIBRARY)
    compile_plugin(build / "needy.c", plugin_dir / "libneedy.so", f"-L{mid_dir}", "-lferdep",
                   f"-Wl,-rpath,{mid_dir}")
    (problem,) = ferrule.scan([plugin_dir]).problems
    assert problem.error == "MissingDependencyError"
    assert f"a library that {plugin_dir / 'libneedy.so'} links against needs libferleaf.so" in problem.message
    (mid_dir / "leaf").mkdir()
    shutil.copy(leaf, mid_dir / "leaf" / leaf.name)
    (found,) = ferrule.scan([plugin_dir]).plugins
    with ferrule.load(found) as plugin:
        assert plugin.dep() == 42


def test_origin_is_the_directory_of_the_path_as_given(needy: tuple[Path, Path], tmp_path: Path) -> None:
    # A symlinked plugin: the loader expands $ORIGIN from the link's directory.
    plugin_dir, dep = needy
    links = tmp_path / "links"
    links.mkdir()
    (links / "libneedy.so").symlink_to(plugin_dir / "libneedy.so")
    assert ferrule.scan([links]).rejected
    (links / "deps").mkdir()
    shutil.copy(dep, links / "deps" / dep.name)
    assert [p.id for p in ferrule.scan([links]).plugins] == ["org.ferrule.test.needy"]


def test_a_stamp_taken_during_a_change_is_not_trusted(tmp_path: Path) -> None:
    place = tmp_path / "place"
    place.mkdir()
    now = time.time_ns()
    assert _deps.stamp((str(place),), now).paths == ((str(place), -2),)
    assert _deps.changed(_deps.stamp((str(place),), now))
    os.utime(place, ns=(now - 60 * 10**9, now - 60 * 10**9))  # last changed a minute before the attempt
    settled = _deps.stamp((str(place),), now)
    assert settled.paths == ((str(place), now - 60 * 10**9),) and not _deps.changed(settled)


def test_a_replaced_file_with_the_same_size_and_mtime_is_read_again(built: Built, tmp_path: Path) -> None:
    # unzip keeps a wheel's fixed 1980 times: an upgrade can look unchanged
    # by size and mtime. Its ctime and inode still differ.
    d = tmp_path / "same"
    d.mkdir()
    first = d / "libsame.so"
    shutil.copy(built.variant("BAD_MAGIC"), first)
    other = tmp_path / "other.so"
    shutil.copy(built.variant("ABI_MAJOR_2"), other)
    assert first.stat().st_size == other.stat().st_size, "the two fixture variants differ in one field only"
    old = 315532800 * 10**9  # 1980-01-01
    os.utime(first, ns=(old, old))
    os.utime(other, ns=(old, old))
    assert [p.error for p in ferrule.scan([d]).problems] == ["BadMagicError"]
    os.replace(other, first)  # same size, same mtime, new file
    assert [p.error for p in ferrule.scan([d]).problems] == ["AbiVersionError"]
