"""ferrule.discover and `ferrule list --installed`: plugins installed as
Python distributions, found by their entry points without importing or
loading anything. Here the distributions are laid out by hand in a site
directory, exactly as an installer leaves them; tests/test_plugin_wheels.py
installs real plugin wheels with pip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ferrule
from ferrule._scan import cache as _cache
from ferrule._scan.discover import parse_value

from .conftest import Built


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Own cache, and a site directory on sys.path (importlib.metadata reads it)."""
    monkeypatch.setenv("FERRULE_CACHE_DIR", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def install(site: Path, dist: str, version: str, library: Path, entry: str, package: str | None = None,
            file_name: str | None = None, group: str = "ferrule.plugins") -> Path:
    """What pip leaves for a plugin wheel: the package data and a dist-info."""
    package = package or dist.replace("-", "_")
    target = site / package / (file_name or library.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(library, target)
    # A package that must never be imported by discovery.
    (target.parent / "__init__.py").write_text("raise RuntimeError('discovery imported the plugin package')\n")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    (info / "RECORD").write_text("")
    return target


def uninstall(site: Path, dist: str, version: str) -> None:
    shutil.rmtree(site / dist.replace("-", "_"))
    shutil.rmtree(site / f"{dist.replace('-', '_')}-{version}.dist-info")


def test_entry_point_values() -> None:
    assert parse_value("ferrule_greeter:libgreeter.so") == ("ferrule_greeter/libgreeter.so", ())
    assert parse_value(" pkg.sub : libx.so [org.example.a/1, org.example.b-c/12] ") == (
        "pkg/sub/libx.so", (("org.example.a", 1), ("org.example.b-c", 12)))
    for bad in ("libx.so", "pkg:", "pkg:../libx.so", "pkg:libx.so [org.example.a]", "pkg:libx.so [a/x]", "1pkg:x.so"):
        with pytest.raises(ValueError):
            parse_value(bad)


def test_installed_plugins_are_found_without_importing_them(built: Built, environment: Path) -> None:
    install(environment, "ferrule-greeter", "0.1.0", built.greeter, "greeter = ferrule_greeter:libgreeter.so")
    install(environment, "ferrule-calc", "2.0", built.calc, "calc = ferrule_calc.lib:libcalc.so",
            package="ferrule_calc/lib")
    result = ferrule.discover()
    assert [(p.entry_point, p.distribution, p.id) for p in result.plugins] == [
        ("calc", "ferrule-calc", "org.ferrule.examples.calc"),
        ("greeter", "ferrule-greeter", "org.ferrule.examples.greeter"),
    ]
    assert result.problems == () and result.directories == ()
    assert not [m for m in sys.modules if m.startswith(("ferrule_greeter", "ferrule_calc"))]
    greeter = result.plugins[1]
    assert greeter.path == str(environment / "ferrule_greeter" / "libgreeter.so")
    with ferrule.load(greeter) as plugin:  # a PluginInfo is path-like
        assert plugin.add(2, 3) == 5
    with ferrule.load(greeter, isolated=True, timeout=30) as isolated:
        assert isolated.greet("Ada") == "Hello, Ada!"
    host = ferrule.PluginHost()
    with host.load(result.plugins[0]) as calc:
        assert calc.mul(6, 7) == 42
    assert ferrule.discover(group="someone.else") == ferrule.ScanResult((), (), ())


def test_declared_interfaces_are_checked_against_the_descriptor(built: Built, environment: Path) -> None:
    install(environment, "ifaces", "1", built.ifaces_c,
            "counters = ifaces:libifaces_c.so [org.ferrule.test.counter/1, org.ferrule.test.shapes/1]")
    install(environment, "liar", "1", built.calc, "liar = liar:libcalc.so [org.ferrule.test.counter/1]")
    result = ferrule.discover()
    assert [p.entry_point for p in result.plugins] == ["counters"]
    (problem,) = result.problems
    assert (problem.kind, problem.error) == ("rejected", "MetadataError")
    assert "declares org.ferrule.test.counter/1, which" in problem.message and "rebuild it" in problem.message


def test_broken_installs_are_problems_not_failures(built: Built, environment: Path) -> None:
    install(environment, "gone", "1", built.calc, "gone = gone:libgone.so")  # names a file not installed
    install(environment, "garbled", "1", built.calc, "garbled = not a value")
    install(environment, "bad-magic", "1", built.variant("BAD_MAGIC"), "bad = bad_magic:libfixture_bad_magic.so")
    result = ferrule.discover()
    assert result.plugins == ()
    kinds = sorted((p.error, Path(p.path).name) for p in result.problems)
    assert kinds == [("BadMagicError", "libfixture_bad_magic.so"), ("LibraryNotFoundError", "libgone.so"),
                     ("MetadataError", "site")]
    gone = next(p for p in result.problems if p.error == "LibraryNotFoundError")
    assert "entry point 'gone' of gone 1 names gone/libgone.so, which is not installed" in gone.message
    assert "pip install --force-reinstall gone" in gone.message


def test_the_cache_follows_installs_upgrades_and_uninstalls(built: Built, environment: Path) -> None:
    path = install(environment, "swap", "1", built.calc, "swap = swap:libswap.so", file_name="libswap.so")
    assert [p.id for p in ferrule.discover().plugins] == ["org.ferrule.examples.calc"]
    assert str(path) in _cache.load_cache(_cache.cache_file())[0]
    # An upgrade replaces the file: read again, not served from the cache.
    os.unlink(path)
    shutil.copy(built.greeter, path)
    assert [p.id for p in ferrule.discover().plugins] == ["org.ferrule.examples.greeter"]
    uninstall(environment, "swap", "1")
    assert ferrule.discover().plugins == ()
    assert str(path) not in _cache.load_cache(_cache.cache_file())[0], "an uninstalled plugin leaves the cache"


def test_list_installed(built: Built, environment: Path) -> None:
    install(environment, "ferrule-greeter", "0.1.0", built.greeter, "greeter = ferrule_greeter:libgreeter.so")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(environment), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "ferrule", "list", "--installed"], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["greeter", "(ferrule-greeter)", "org.ferrule.examples.greeter", "0.1.0",
                                   str(environment / "ferrule_greeter" / "libgreeter.so")]
    proc = subprocess.run([sys.executable, "-m", "ferrule", "list", "--installed", "--json"], capture_output=True,
                          text=True, env=env)
    (plugin,) = json.loads(proc.stdout)["plugins"]
    assert (plugin["entry_point"], plugin["distribution"]) == ("greeter", "ferrule-greeter")
    proc = subprocess.run([sys.executable, "-m", "ferrule", "list", "--installed", "--group", "nobody.here"],
                          capture_output=True, text=True, env=env)
    assert proc.stdout == "no plugins installed in the entry-point group 'nobody.here'\n"


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="group"):
        ferrule.discover(group="")
    with pytest.raises(ValueError, match="timeout"):
        ferrule.discover(timeout=0)


def test_group_needs_installed() -> None:
    proc = subprocess.run([sys.executable, "-m", "ferrule", "list", "--group", "myapp.plugins"], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr == "ferrule: --group chooses the entry-point group of --installed: add --installed\n"
