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
