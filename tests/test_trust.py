"""The trust checks before a plugin runs: load(..., sha256=) runs a file only
if it is the one whose hash was vetted, and a file or directory others could
write is refused; in process, isolated (at every restart) and in a host."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ferrule

from .conftest import C_DIR, Built, compile_plugin


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_right_hash_loads_everywhere(built: Built) -> None:
    pin = sha256(built.fixture)
    with ferrule.load(built.fixture, sha256=pin) as plugin:
        assert plugin.add(2, 3) == 5
    with ferrule.load(built.fixture, sha256="sha256:" + pin.upper(), isolated=True) as isolated:
        assert isolated.add(2, 3) == 5
    host = ferrule.PluginHost()
    assert host.load(built.fixture, sha256=pin).add(1, 1) == 2


PROBE = """
import sys, ferrule
try:
    ferrule.load(sys.argv[1], sha256="0" * 64)
except ferrule.PinMismatchError as exc:
    print("refused:", exc)
"""


def test_a_wrong_hash_is_refused_before_any_of_the_library_runs(tmp_path: Path) -> None:
    """The library's constructor would end the process: it never runs."""
    path = compile_plugin(C_DIR / "corpus.c", tmp_path / "libexits.so", "-DKIND_CONSTRUCTOR_EXITS")
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"refused: {path} has SHA-256 {sha256(path)}, not the {'0' * 64} it is pinned to")
    assert "none of it ran" in proc.stdout


def test_a_pinned_isolated_plugin_is_not_restarted_from_changed_contents(built: Built, tmp_path: Path) -> None:
    path = tmp_path / "libpinned.so"
    path.write_bytes(built.hostile.read_bytes())
    plugin = ferrule.load(path, isolated=True, sha256=sha256(path))
    try:
        with pytest.raises(ferrule.PluginCrashedError):
            plugin.segfault()
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF  # the same file, one byte changed in place
        with open(path, "r+b") as f:
            f.write(data)
        with pytest.raises(ferrule.PinMismatchError, match="it is pinned to"):
            plugin.add(2, 3)
    finally:
        plugin.close()


@pytest.mark.parametrize(("value", "message"), [
    ("abc", "sha256 must be 64 hex digits"),
    (b"0" * 64, "sha256 must be 64 hex digits"),
])
def test_a_bad_pin_is_a_value_error(built: Built, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ferrule.load(built.fixture, sha256=value)  # type: ignore[arg-type]


def test_a_pinned_bare_name_is_the_file_in_ferrule_path(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRULE_PATH", str(built.fixture.parent))
    with pytest.raises(ferrule.PinMismatchError, match=f"{re.escape(str(built.fixture))} has SHA-256"):
        ferrule.load("libfixture.so", sha256="0" * 64)


# -- permissions


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Path:
    directory = tmp_path / "plugins"
    directory.mkdir(mode=0o755)
    path = directory / "libfixture.so"
    shutil.copyfile(built.fixture, path)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(("what", "mode", "message"), [
    ("file", 0o777, "libfixture.so is writable by every user (mode 0777)"),
    ("file", 0o775, "libfixture.so is writable by its group (mode 0775)"),
    ("directory", 0o777, "plugins, is writable by every user (mode 0777), so others could replace the plugin"),
    ("directory", 0o775, "plugins, is writable by its group (mode 0775)"),
])
def test_a_file_others_could_write_is_refused_unless_allowed(copy: Path, what: str, mode: int, message: str) -> None:
    (copy if what == "file" else copy.parent).chmod(mode)
    for isolated in (False, True):
        with pytest.raises(ferrule.UnsafeFileError, match=re.escape(message)) as info:
            ferrule.load(copy, isolated=isolated)
        assert "none of it ran" in str(info.value) and "strict_permissions=False" in str(info.value)
        with ferrule.load(copy, isolated=isolated, strict_permissions=False) as plugin:
            assert plugin.add(2, 3) == 5
    with pytest.raises(ferrule.UnsafeFileError):
        ferrule.PluginHost().load(copy)


@pytest.mark.parametrize("link", ["file", "directory"])
def test_the_directory_checked_is_the_one_that_holds_the_file(copy: Path, tmp_path: Path, link: str) -> None:
    # A link from a safe directory, to the file or to its directory, does not
    # hide that the directory holding the file is writable by everyone.
    copy.parent.chmod(0o777)
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o755)
    if link == "file":
        named = safe / "libfixture.so"
        named.symlink_to(copy)
    else:
        (safe / "linked").symlink_to(copy.parent, target_is_directory=True)
        named = safe / "linked" / "libfixture.so"
    with pytest.raises(ferrule.UnsafeFileError, match=re.escape(f"the directory of {copy}, {copy.parent}, is writable "
                                                                "by every user")):
        ferrule.load(named)
    copy.parent.chmod(0o755)
    with ferrule.load(named) as plugin:
        assert plugin.add(2, 3) == 5


def test_a_sticky_directory_like_tmp_is_allowed(copy: Path) -> None:
    copy.parent.chmod(0o1777)  # others may add files, but not replace this one
    with ferrule.load(copy) as plugin:
        assert plugin.add(2, 3) == 5


def test_another_users_file_is_refused(copy: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    os.chown(copy, 4242, 4242)
    with pytest.raises(ferrule.UnsafeFileError, match=r"is owned by another user \(uid 4242\)"):
        ferrule.load(copy)


def test_an_isolated_plugin_is_not_restarted_from_a_file_made_writable(built: Built, tmp_path: Path) -> None:
    path = tmp_path / "libhostile.so"
    shutil.copyfile(built.hostile, path)
    plugin = ferrule.load(path, isolated=True)
    try:
        with pytest.raises(ferrule.PluginCrashedError):
            plugin.segfault()
        path.chmod(0o666)
        with pytest.raises(ferrule.UnsafeFileError, match="writable by every user"):
            plugin.add(2, 3)
    finally:
        plugin.close()


# -- allowlists for scans and discovery


@pytest.fixture
def vetted(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """A plugin directory with the fixture and a library whose constructor
    leaves a marker file behind whenever anything opens it."""
    monkeypatch.setenv("FERRULE_CACHE_DIR", str(tmp_path / "cache"))
    directory = tmp_path / "plugins"
    directory.mkdir()
    shutil.copy(built.fixture, directory / "libfixture.so")
    marker = tmp_path / "opened"
    compile_plugin(C_DIR / "scan_attacker.c", directory / "libunvetted.so", "-DATTACK_CACHE", f'-DCACHE="{marker}"')
    return directory, directory / "libunvetted.so", marker


@pytest.mark.parametrize("sandbox", [False, None])
def test_a_scan_with_an_allowlist_never_opens_what_it_does_not_hold(vetted: tuple[Path, Path, Path],
                                                                      sandbox: bool | None) -> None:
    directory, unvetted, marker = vetted
    good = directory / "libfixture.so"
    result = ferrule.scan([directory], allow=[sha256(good)], sandbox=sandbox)
    assert [p.path for p in result.plugins] == [str(good)]
    assert result.plugins[0].sha256 == sha256(good)
    (problem,) = result.problems
    assert (problem.path, problem.kind, problem.error) == (str(unvetted), "rejected", "PinMismatchError")
    assert problem.message == (f"{unvetted} has SHA-256 {sha256(unvetted)}, which is not in the allowlist, so none of "
                               f"it ran: vet it, then add its hash (sha256sum {unvetted})")
    assert not marker.exists()
    # Warm, from the cache: the hashes are the cache's, and still checked.
    again = ferrule.scan([directory], allow=["sha256:" + sha256(good).upper()], sandbox=sandbox)
    assert again.plugins == result.plugins and [p.error for p in again.problems] == ["PinMismatchError"]
    assert not marker.exists()
    # Allowed, it is opened (the attack is real) and blocklisted or rejected as before.
    ferrule.scan([directory], allow=[sha256(good), sha256(unvetted)], sandbox=sandbox)
    assert marker.exists() == (sandbox is False or not _bwrap())  # the sandbox hides the marker's directory


def _bwrap() -> bool:
    from ferrule._sandbox import launch

    return launch.bwrap()[0] is not None


def test_load_of_a_scanned_plugin_is_pinned_to_what_was_scanned(vetted: tuple[Path, Path, Path],
                                                                 built: Built) -> None:
    directory, _, _ = vetted
    (info,) = ferrule.scan([directory], sandbox=False).plugins
    assert info.sha256 == sha256(directory / "libfixture.so")
    with ferrule.load(info) as plugin:
        assert plugin.add(2, 3) == 5
    # Replaced after the scan, as an install does (a new file renamed over it: writing into the
    # loaded file itself would change the code this process has mapped).
    shutil.copy(built.greeter, directory / "libnew.tmp")
    os.replace(directory / "libnew.tmp", directory / "libfixture.so")
    for load in (lambda: ferrule.load(info), lambda: ferrule.load(info, isolated=True),
                 lambda: ferrule.PluginHost().load(info)):
        with pytest.raises(ferrule.PinMismatchError, match=f"not the {info.sha256} it is pinned to"):
            load()


def test_ferrule_list_takes_an_allowlist_as_sha256sum_writes_it(vetted: tuple[Path, Path, Path],
                                                                tmp_path: Path) -> None:
    directory, unvetted, marker = vetted
    good = directory / "libfixture.so"
    allowed = tmp_path / "allowed.sha256"
    allowed.write_text(subprocess.run(["sha256sum", str(good)], capture_output=True, text=True, check=True).stdout
                       + "# vetted on 2026-12-01\n\n")
    proc = subprocess.run([sys.executable, "-m", "ferrule", "list", str(directory), "--allow", str(allowed), "--json",
                           "--sandbox", "off"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = __import__("json").loads(proc.stdout)
    assert [(p["path"], p["sha256"]) for p in doc["plugins"]] == [(str(good), sha256(good))]
    assert [p["error"] for p in doc["problems"]] == ["PinMismatchError"]
    assert not marker.exists()
    allowed.write_text("not-a-digest  libfixture.so\n")
    proc = subprocess.run([sys.executable, "-m", "ferrule", "list", str(directory), "--allow", str(allowed)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"{allowed}, line 1: 'not-a-digest  libfixture.so' does not start with a SHA-256 digest" in proc.stderr


@pytest.mark.parametrize(("allow", "error", "message"), [
    ("0" * 64, TypeError, "allow= takes an iterable of SHA-256 digests"),
    (["abc"], ValueError, "sha256 must be 64 hex digits"),
])
def test_allowlist_mistakes(tmp_path: Path, allow: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ferrule.scan([tmp_path], allow=allow)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        ferrule.discover(allow=allow)  # type: ignore[arg-type]
