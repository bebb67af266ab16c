"""What plugin authors and host authors are promised about the artefacts:
plugins export only the entry point, link no Rust std dylib, and the Python
API is small, typed and mypy-clean."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ferrule

from .conftest import ROOT, Built, copy_checkout, exported, run


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
            "MetadataError", "MissingDependencyError", "NoEntryPointError", "NotALibraryError", "PinMismatchError", "UnsafeFileError", "Plugin",
            "Sandbox", "SandboxError", "SandboxReport",
            "PluginCallError", "PluginClosedError", "PluginFunction", "PluginInitError", "PluginPanicError",
            "SignatureError", "SymbolNotFoundError", "WrongArchitectureError", "library_file_name", "load",
            "Implementation", "Instance", "InterfaceMismatchError", "PluginHost", "ThreadContractWarning", "idl",
            "IsolationError", "PluginCrashedError", "PluginTimeoutError", "CallCancelledError", "IsolatedPlugin",
            "IsolatedFunction", "scan", "ScanResult", "PluginInfo", "ScanProblem", "get_include", "AcceleratorWarning", "discover",
            "Declarations", "CFunction", "Callback", "Owned", "PluginRef", "AsyncCalls", "AsyncFunction",
        ]
    )
    assert ferrule.idl.__name__ == "ferrule.idl"  # a public module: declarations
    # The other: the build backend of plugin wheels. Frontends import it by
    # name, so it is neither imported by ferrule nor in __all__.
    # So is ferrule.dask, which needs the dask extra.
    code = ("import sys, ferrule; print('ferrule.build' in sys.modules, hasattr(ferrule, 'build'), "
            "'ferrule.dask' in sys.modules, hasattr(ferrule, 'dask'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "False", "False", "False"]
    assert importlib.import_module("ferrule.build").__name__ == "ferrule.build"
    assert importlib.import_module("ferrule.dask").__name__ == "ferrule.dask"
    assert "build" not in ferrule.__all__ and "dask" not in ferrule.__all__
    public_modules = [m for m in dir(ferrule) if not m.startswith("_") and m not in ferrule.__all__]
    assert public_modules == ["build", "dask"], "internals must be private modules"
    assert (ROOT / "src" / "ferrule" / "py.typed").exists()


def test_mypy_strict_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "src/ferrule"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rust_sdk_own_tests_pass(built: Built) -> None:
    # The SDK's unit, integration and doc tests drive plugin! through a fake host.
    proc = subprocess.run(["cargo", "test", "--quiet", "-p", "ferrule-sdk"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_install_without_a_c_compiler_runs_every_mode(built: Built, tmp_path: Path) -> None:
    # What a machine without a compiler gets: no accelerator, no C channel,
    # and still in-process and isolated plugins (the cffi paths).
    source = copy_checkout(tmp_path / "source")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    env = dict(os.environ, CC="false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("FERRULE_PURE_PYTHON", None)
    env.pop("PYTHONPATH", None)  # the venv's ferrule, not a tree's
    proc = subprocess.run([python, "-m", "pip", "install", "--quiet", str(source)], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code = (
        "import ferrule, pathlib, sys\n"
        "from ferrule._call import accelerator\n"
        "from ferrule._isolation import channel\n"
        "package = pathlib.Path(ferrule.__file__).parent\n"
        "print(sorted(str(p.relative_to(package)) for p in package.rglob('*.so')), accelerator.speedups, channel.IMPLEMENTATION)\n"
        "with ferrule.load(sys.argv[1]) as local:\n"
        "    print(local.add(2, 3))\n"
        "with ferrule.load(sys.argv[1], isolated=True, timeout=20) as iso:\n"
        "    print(iso.add(2, 3), iso.apply(lambda x: -x, 9))\n"
        "    try:\n"
        "        iso.abort()\n"
        "    except ferrule.PluginCrashedError as exc:\n"
        "        print(type(exc).__name__, exc.signal)\n"
        "    print(iso.add(1, 1))\n"
    )
    proc = subprocess.run([python, "-c", code, str(built.hostile)], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[] None cffi", "5", "5 -9", "PluginCrashedError 6", "2"]
    # Said once each, loudly, with the reason and the fix; not in the child.
    warnings = [line for line in proc.stderr.splitlines() if "AcceleratorWarning" in line]
    assert len(warnings) == 2, proc.stderr
    assert "ferrule._call._speedups was not built when ferrule was installed" in warnings[0]
    assert "ferrule._isolation._channel was not built" in warnings[1]
    assert all("pip install --force-reinstall --no-cache-dir ferrule" in w for w in warnings)
    assert all(w.startswith("<string>:") for w in warnings), "the warning points at the user's line"
    version = subprocess.run([str(venv / "bin" / "ferrule"), "--version"], capture_output=True, text=True, env=env)
    assert version.stdout.splitlines()[1].startswith("accelerator: off (ferrule._call._speedups was not built")


def test_the_sdist_holds_what_the_build_reads(dists: dict[str, Path]) -> None:
    import tarfile

    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("src/ferrule/include/ferrule.h", "src/ferrule/_call/speedups.h", "src/ferrule/_call/_abi_types.h",
                   "src/ferrule/_call/_speedups.c", "src/ferrule/_call/host_table.c", "src/ferrule/_call/gate.c",
                   "src/ferrule/_call/structs.c", "src/ferrule/_call/services.c", "src/ferrule/_loader/_ccall.c",
                   "src/ferrule/_isolation/_channel.c", "setup.py", "pyproject.toml", "LICENSE", "README.md"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("tests/", "sdk/", "target/")) or n.endswith(".so")]


def test_a_wheel_from_the_sdist_has_its_c_code_and_header(dists: dict[str, Path], tmp_path: Path) -> None:
    import zipfile

    wheel = dists["wheel"]
    assert wheel.name.startswith(f"ferrule-{ferrule.__version__}-cp3{sys.version_info[1]}-cp3{sys.version_info[1]}-linux_")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"ferrule-{ferrule.__version__}.dist-info/METADATA").decode()
    assert {"ferrule/include/ferrule.h", "ferrule/py.typed", "ferrule/_call/_speedups.pyi"} <= names
    assert [n for n in names if n.startswith("ferrule/_call/_speedups.") and n.endswith(".so")]
    assert [n for n in names if n.startswith("ferrule/_isolation/_channel.") and n.endswith(".so")]
    assert [n for n in names if n.startswith("ferrule/_loader/_ccall.") and n.endswith(".so")]
    assert "License-Expression: MIT" in metadata.splitlines()
    # Installed into a fresh venv, away from the checkout: the accelerator is
    # on and a plugin built against get_include() runs in process and isolated.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("FERRULE_PURE_PYTHON", None)
    env.pop("PYTHONPATH", None)
    run([python, "-m", "pip", "install", "--quiet", str(wheel)], env=env)
    check = run([python, str(ROOT / "tools" / "wheel_check.py")], cwd=tmp_path, env=env)
    assert "accelerator, C channel and Library's C path on" in check.stdout
    if shutil.which("bwrap"):  # the sandbox binds a venv's Python and packages
        assert "runs in process, isolated and sandboxed" in check.stdout
    version = run([str(venv / "bin" / "ferrule"), "--version"], cwd=tmp_path, env=env)
    assert version.stdout.splitlines() == [f"ferrule {ferrule.__version__}", "accelerator: on", "isolation channel: on"]
    include = run([str(venv / "bin" / "ferrule"), "--include"], cwd=tmp_path, env=env).stdout.strip()
    assert Path(include, "ferrule.h").read_bytes() == (ROOT / "src" / "ferrule" / "include" / "ferrule.h").read_bytes()
    assert str(venv) in include


def test_auditwheel_accepts_the_wheel_and_gives_it_a_manylinux_tag(dists: dict[str, Path], tmp_path: Path) -> None:
    import re

    shown = run([sys.executable, "-m", "auditwheel", "show", str(dists["wheel"])]).stdout
    tag = re.search(r'platform\s+tag:\s+"(manylinux_\d+_\d+_\w+)"', " ".join(shown.split()))
    assert tag, shown
    run([sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", str(tmp_path), str(dists["wheel"])])
    (repaired,) = tmp_path.glob("*.whl")
    assert "manylinux" in repaired.name, repaired.name
    print(f"auditwheel: {dists['wheel'].name} -> {repaired.name}")


def test_sdk_crate_publishes_cleanly() -> None:
    # What `cargo publish` checks, without uploading: metadata, the packaged
    # file list (no path outside the crate) and a build of the package alone.
    proc = subprocess.run(["cargo", "publish", "--dry-run", "--allow-dirty", "-p", "ferrule-sdk"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: aborting upload due to dry run"], proc.stderr
    manifest = (ROOT / "sdk" / "rust" / "Cargo.toml").read_text()
    for key in ("repository", "keywords", "categories", "license", "description", "readme"):
        assert f"\n{key} = " in manifest, key
