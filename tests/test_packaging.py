"""What plugin authors and host authors are promised about the artefacts:
plugins export only the entry point, link no Rust std dylib, and the Python
API is small, typed and mypy-clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ferrule

from .conftest import ROOT, Built, run


def exported(path: Path) -> list[str]:
    out = run(["nm", "-D", "--defined-only", str(path)]).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if line.strip())


@pytest.mark.parametrize("name", ["greeter", "kitchen", "calc"])
def test_plugins_export_only_the_entry_point(built: Built, name: str) -> None:
    assert exported(getattr(built, name)) == ["ferrule_entry_v1"]


@pytest.mark.parametrize("name", ["greeter", "kitchen"])
def test_rust_plugins_link_no_std_dylib(built: Built, name: str) -> None:
    dynamic = run(["readelf", "-d", str(getattr(built, name))]).stdout
    needed = [line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert needed, dynamic
    assert not [lib for lib in needed if lib.startswith("libstd") or "rust" in lib], needed


def test_sdk_crate_has_no_dependencies() -> None:
    manifest = (ROOT / "sdk" / "rust" / "Cargo.toml").read_text()
    section = manifest.split("[dependencies]", 1)[1].split("\n[", 1)[0] if "[dependencies]" in manifest else ""
    assert not [line for line in section.splitlines() if line.strip() and not line.startswith("#")]


def test_public_api_is_exactly_this() -> None:
    assert sorted(ferrule.__all__) == sorted(
        [
            "ABI_MAJOR", "ABI_MINOR", "AbiVersionError", "BadMagicError", "DescriptorError",
            "DescriptorTooSmallError", "FerruleError", "Library", "LibraryError", "LibraryNotFoundError",
            "MetadataError", "MissingDependencyError", "NoEntryPointError", "NotALibraryError", "Plugin",
            "PluginCallError", "PluginClosedError", "PluginFunction", "PluginInitError", "PluginPanicError",
            "SignatureError", "SymbolNotFoundError", "WrongArchitectureError", "library_file_name", "load",
            "Implementation", "Instance", "InterfaceMismatchError", "PluginHost", "ThreadContractWarning", "idl",
            "IsolationError", "PluginCrashedError", "PluginTimeoutError", "CallCancelledError", "IsolatedPlugin",
            "IsolatedFunction", "scan", "ScanResult", "PluginInfo", "ScanProblem",
        ]
    )
    assert ferrule.idl.__name__ == "ferrule.idl"  # the one public module: declarations
    public_modules = [m for m in dir(ferrule) if not m.startswith("_") and m not in ferrule.__all__]
    assert public_modules == [], "internals must be private modules"
    assert (ROOT / "src" / "ferrule" / "py.typed").exists()


def test_mypy_strict_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "src/ferrule"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rust_sdk_own_tests_pass(built: Built) -> None:
    # The SDK's unit, integration and doc tests drive plugin! through a fake host.
    proc = subprocess.run(["cargo", "test", "--quiet", "-p", "ferrule-sdk"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
