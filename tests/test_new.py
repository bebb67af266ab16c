"""``ferrule new``: each language's project is written, then built, tested and
packaged with its own files, as its author would, and loaded by ferrule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import ferrule
from ferrule._scaffold import find_sdk, scaffold

from .conftest import ROOT, exported


def _env() -> dict[str, str]:
    """This tree's ferrule first on the path (also for the build backend and
    make test), its header for make, and no pip version check."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", FERRULE_INCLUDE=ferrule.get_include())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


def _run(cmd: list[str], cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**_env(), **extra}, timeout=600)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _new(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferrule", "new", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=_env(), timeout=60)


@dataclass(frozen=True)
class Project:
    lang: str
    root: Path
    library: Path
    test_command: list[str]
    extra_env: dict[str, str]
    printed: str


@pytest.fixture(scope="module", params=["rust", "c", "cpp"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project written by the command and built by its own build file."""
    lang: str = request.param
    base = tmp_path_factory.mktemp(f"new-{lang}")
    if lang == "rust":
        # Inside another cargo workspace: the crate's own [workspace] keeps it out.
        (base / "Cargo.toml").write_text('[workspace]\nmembers = []\n')
    proc = _new(f"hello-{lang}", "--lang", lang, "--dir", base / "hello", cwd=base)
    assert proc.returncode == 0, proc.stderr
    root = base / "hello"
    ident = f"hello_{lang}"
    if lang == "rust":
        env = {"CARGO_TARGET_DIR": str(root / "target")}  # off the main target; the wheel build reuses it
        _run(["cargo", "build", "--release", "--quiet"], cwd=root, **env)
        return Project(lang, root, root / "target" / "release" / f"lib{ident}.so", ["cargo", "test", "--quiet"],
                       env, proc.stdout)
    _run(["make"], cwd=root)
    return Project(lang, root, root / "build" / f"lib{ident}.so", ["make", "test", f"PYTHON={sys.executable}"], {},
                   proc.stdout)


def test_prints_the_next_steps(project: Project) -> None:
    build = "cargo build --release" if project.lang == "rust" else "make"
    assert f"cd {project.root}" in project.printed
    assert build in project.printed
    assert ("cargo test" if project.lang == "rust" else "make test") in project.printed


def test_exports_only_the_entry(project: Project) -> None:
    assert exported(project.library) == ["ferrule_entry_v1"]


def test_inspect(project: Project) -> None:
    proc = _run([sys.executable, "-m", "ferrule", "inspect", "--json", str(project.library)])
    info = json.loads(proc.stdout)
    assert info["id"] == f"org.example.hello-{project.lang}"
    assert info["name"] == f"hello-{project.lang}"
    signatures = {f["name"]: f["signature"] for f in info["functions"]}
    assert signatures == {"greet": "(name: str) -> str", "divide": "(a: f64, b: f64) -> f64"}


def test_load_and_call(project: Project) -> None:
    with ferrule.load(project.library) as plugin:
        assert plugin.greet("Ada") == "Hello, Ada!"
        assert plugin.divide(1.0, 4.0) == 0.25
        with pytest.raises(ferrule.PluginCallError, match="division by zero"):
            plugin.divide(1.0, 0.0)


def test_its_own_test_command(project: Project) -> None:
    proc = _run(project.test_command, cwd=project.root, **project.extra_env)
    if project.lang == "rust":
        assert "2 passed" in proc.stdout or "test result: ok" in proc.stdout, proc.stdout
    else:
        assert "greet and divide work" in proc.stdout


def test_plugin_wheel(project: Project, tmp_path: Path) -> None:
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(project.root), "-w",
          str(tmp_path)], **project.extra_env)
    (wheel,) = tmp_path.glob("*.whl")
    ident = f"hello_{project.lang}"
    assert wheel.name.startswith(f"hello_{project.lang}-0.1.0-py3-none-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert f"hello_{project.lang}/lib{ident}.so" in names, names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(entry_points).decode()
    assert "[ferrule.plugins]" in text
    assert f"{ident} = hello_{project.lang}:lib{ident}.so" in text


def test_rust_depends_on_this_checkout_sdk(tmp_path: Path) -> None:
    sdk = find_sdk()
    assert sdk is not None and Path(sdk) == ROOT / "sdk" / "rust"
    scaffold("p", "rust", str(tmp_path / "p"), sdk=sdk)
    cargo = (tmp_path / "p" / "Cargo.toml").read_text()
    assert f"ferrule-sdk = {{ path = '{sdk}' }}" in cargo
    assert "\n[workspace]\n" in cargo and 'crate-type = ["cdylib"]' in cargo


def test_rust_without_a_checkout_asks_for_a_version(tmp_path: Path) -> None:
    # Only the files: the crate is not published, so this form cannot build yet.
    scaffold("p", "rust", str(tmp_path / "p"), sdk=None)
    assert 'ferrule-sdk = "0.1"' in (tmp_path / "p" / "Cargo.toml").read_text()
    readme = (tmp_path / "p" / "README.md").read_text()
    assert "not published" in readme and 'ferrule-sdk = { path = "/path/to/ferrule/sdk/rust" }' in readme


def test_default_directory_and_id_option(tmp_path: Path) -> None:
    proc = _new("calc", "--lang", "c", "--id", "com.acme.calc", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    source = (tmp_path / "calc" / "plugin.c").read_text()
    assert '"com.acme.calc"' in source
    assert 'library = "build/libcalc.so"' in (tmp_path / "calc" / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("1st", "does not start with a letter"),
        ("_x", "does not start with a letter"),
        ("my plugin", "holds ' '"),
        ("a.b", "holds '.'"),
        ("café", "holds 'é'"),
        ("fn", "Rust keyword"),
        ("test", "Rust keyword"),
        ("Ferrule", "clashing with ferrule"),
        ("x" * 65, "at most 64"),
    ],
)
def test_bad_names_are_refused(tmp_path: Path, name: str, why: str) -> None:
    proc = _new(name, "--lang", "c", "--dir", tmp_path / "p")
    assert proc.returncode == 2
    assert why in proc.stderr and "ferrule: plugin name" in proc.stderr, proc.stderr
    assert not (tmp_path / "p").exists()


def test_a_bad_id_is_refused(tmp_path: Path) -> None:
    proc = _new("calc", "--lang", "c", "--id", "calc", "--dir", tmp_path / "p")
    assert proc.returncode == 2
    assert "is not reverse-DNS" in proc.stderr
    assert not (tmp_path / "p").exists()


def test_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    proc = _new("calc", "--lang", "cpp", "--dir", tmp_path / "p")
    assert proc.returncode == 1
    assert "exists and is not empty" in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path / "p")) == ["notes.txt"]


def test_an_empty_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    proc = _new("calc", "--lang", "cpp", "--dir", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p" / "plugin.cpp").is_file()
