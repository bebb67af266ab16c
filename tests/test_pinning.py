"""load(..., sha256=): a pinned plugin runs only if its file is the one whose
hash was vetted, in process, isolated (at every restart) and in a host."""

from __future__ import annotations

import hashlib
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


def test_a_pin_needs_a_path_not_a_bare_name() -> None:
    with pytest.raises(ValueError, match="sha256 pins a file: give 'libfixture.so' as a path"):
        ferrule.load("libfixture.so", sha256="0" * 64)
