"""examples/app: the shared-types design as a workspace. app-api holds only
interface declarations (ferrule_sdk::interface!), app is a Rust host
(ferrule-host), app-plugin a cdylib. The plugin exports only the entry
point, carries none of the host's code and needs no Rust std dylib."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import ferrule

from .conftest import ROOT, Built, run


@pytest.fixture(scope="module")
def app(built: Built) -> tuple[Path, Path]:
    run(["cargo", "build", "--release", "--quiet", "-p", "app", "-p", "app-plugin"], cwd=ROOT)
    return built.rust / "app", built.rust / "libapp_plugin.so"


def test_the_app_runs_every_filter_of_the_plugin(app: tuple[Path, Path]) -> None:
    host, plugin = app
    out = subprocess.run([str(host), str(plugin)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "loaded App filters 0.1.0 (org.example.app.filters)",
        'shout: "PLUGINS, AT LAST!"',
        'shout: configure refused: shout has no setting "colour" (it has "suffix")',
        'reverse: "tsal ta ,snigulp"',
        'reverse: configure refused: reverse has no settings (got "colour")',
        # Each filter queried the Notes service the app implements from the same declaration.
        'notes from the plugin: ["shout: 16 chars", "reverse: done"]',
    ]


def test_the_plugin_exports_only_its_entry_point(app: tuple[Path, Path]) -> None:
    _, plugin = app
    nm = subprocess.run(["nm", "-D", "--defined-only", str(plugin)], capture_output=True, text=True, check=True)
    assert [line.split()[-1] for line in nm.stdout.splitlines()] == ["ferrule_entry_v1"]


def test_the_plugin_needs_no_rust_std_dylib(app: tuple[Path, Path]) -> None:
    _, plugin = app
    dynamic = subprocess.run(["readelf", "-d", str(plugin)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    assert needed, dynamic
    assert not [n for n in needed if n.startswith("libstd-") or "rust" in n], needed
    assert set(needed) <= {"libc.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "libm.so.6", "libpthread.so.0",
                           "libdl.so.2", "ld-linux-aarch64.so.1"}, needed


def test_the_plugin_contains_none_of_the_hosts_code(app: tuple[Path, Path]) -> None:
    host, plugin = app
    # Its crate graph has no host crate...
    tree = subprocess.run(["cargo", "tree", "-p", "app-plugin", "-e", "normal", "--prefix", "none", "--format", "{p}"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout
    crates = {line.split()[0] for line in tree.splitlines() if line.strip()}
    assert crates == {"app-plugin", "app-api", "ferrule-sdk"}, crates
    # ...and its symbols none of the host's (which the host binary has: the check can fail).
    def host_symbols(path: Path) -> list[str]:
        names = subprocess.run(["nm", "-C", str(path)], capture_output=True, text=True, check=True).stdout
        return [line for line in names.splitlines() if "ferrule_host::" in line or "libloading::" in line]
    assert host_symbols(host), "the host binary should have ferrule_host symbols"
    assert host_symbols(plugin) == []
    plugin_names = subprocess.run(["nm", "-C", str(plugin)], capture_output=True, text=True, check=True).stdout
    assert "ferrule_sdk::" in plugin_names, "the plugin's symbol table is there to read (not stripped)"


def test_the_plugin_loads_in_the_python_host_too(app: tuple[Path, Path]) -> None:
    _, plugin = app
    loaded = ferrule.load(str(plugin))
    try:
        assert [(o.id, o.revision, o.name) for o in loaded.interfaces] == [
            ("org.example.app.filter", 1, "shout"), ("org.example.app.filter", 1, "reverse")]
        assert loaded.filter_count() == 2
    finally:
        loaded.close()
