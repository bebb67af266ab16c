"""Build every fixture plugin once per test session: the Rust workspace with
cargo, the C plugins and their broken variants with the C compiler."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Fuzz tests (marked "fuzz") share one budget: a fixed, derandomised number of
# examples in CI; bench/fuzz.py raises it through FERRULE_FUZZ_EXAMPLES.
settings.register_profile(
    "ferrule",
    max_examples=int(os.environ.get("FERRULE_FUZZ_EXAMPLES", "200")),
    derandomize=not os.environ.get("FERRULE_FUZZ_RANDOM"),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
settings.load_profile("ferrule")

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "sdk" / "c" / "include"
C_DIR = ROOT / "tests" / "plugins" / "c"
GENERATED = ROOT / "tests" / "plugins" / "generated"
CC = os.environ.get("CC", "cc")

# Every -DVARIANT_<NAME> of tests/plugins/c/fixture.c that builds a broken plugin.
C_VARIANTS = [
    "BAD_MAGIC",
    "ABI_MAJOR_2",
    "ABI_MAJOR_0",
    "ENTRY_V2",
    "SMALL_DESCRIPTOR",
    "BAD_SIGNATURE",
    "INIT_FAILS",
    "NO_ENTRY",
    "ENTRY_NULL",
    "NON_UTF8_NAME",
    "DUPLICATE_NAMES",
]


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a build command; on failure show its output in the test report."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc  # type: ignore[no-any-return]


def exported(path: Path) -> list[str]:
    """The symbols a library exports (what nm -D --defined-only lists), sorted."""
    out = run(["nm", "-D", "--defined-only", str(path)]).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if line.strip())


def compile_plugin(source: Path, output: Path, *flags: str) -> Path:
    run([CC, "-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-std=c99", "-Wall", "-Wextra",
         "-pedantic", "-Werror", f"-I{INCLUDE}", str(source), "-o", str(output), *flags])
    return output


@dataclass(frozen=True)
class Built:
    rust: Path  # cargo's release directory
    c: Path  # directory of the C builds

    @property
    def greeter(self) -> Path:
        return self.rust / "libgreeter.so"

    @property
    def kitchen(self) -> Path:
        return self.rust / "libkitchen.so"

    @property
    def rawgreet(self) -> Path:
        return self.rust / "librawgreet.so"

    @property
    def calc(self) -> Path:
        return self.c / "libcalc.so"

    @property
    def cdata(self) -> Path:
        return self.c / "libcdata.so"

    @property
    def fixture(self) -> Path:
        return self.c / "libfixture.so"

    def variant(self, name: str) -> Path:
        return self.c / f"libfixture_{name.lower()}.so"

    @property
    def missing_dep(self) -> Path:
        return self.c / "libfixture_missing_dep.so"

    @property
    def hostile(self) -> Path:
        return self.c / "libhostile.so"

    @property
    def ifaces_rust(self) -> Path:
        return self.rust / "libifaces.so"

    @property
    def declared(self) -> Path:
        return self.rust / "libdeclared.so"

    @property
    def declared_layouts(self) -> Path:
        return self.rust / "declared-layouts"

    @property
    def declared_host(self) -> Path:
        return self.rust / "declared-host"

    @property
    def ifaces_c(self) -> Path:
        return self.c / "libifaces_c.so"

    @property
    def parity(self) -> Path:
        return self.c / "libparity.so"

    @property
    def kernels(self) -> Path:
        return self.c / "libkernels.so"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if shutil.which("cargo") is None or shutil.which(CC) is None:
        pytest.fail("cargo and a C compiler are required to build the test plugins (see README)")
    run(["cargo", "build", "--workspace", "--release", "--quiet"], cwd=ROOT)
    metadata = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    rust = Path(json.loads(metadata)["target_directory"]) / "release"  # CARGO_TARGET_DIR included
    c = tmp_path_factory.mktemp("c-plugins")
    compile_plugin(ROOT / "examples" / "c_plugin" / "calc.c", c / "libcalc.so", "-lm")
    compile_plugin(C_DIR / "fixture.c", c / "libfixture.so")
    compile_plugin(C_DIR / "cdata.c", c / "libcdata.so")
    compile_plugin(C_DIR / "ifaces.c", c / "libifaces_c.so", f"-I{GENERATED}")
    compile_plugin(C_DIR / "parity.c", c / "libparity.so", f"-I{GENERATED}")
    compile_plugin(C_DIR / "hostile.c", c / "libhostile.so")
    compile_plugin(C_DIR / "kernels.c", c / "libkernels.so")
    for name in C_VARIANTS:
        compile_plugin(C_DIR / "fixture.c", c / f"libfixture_{name.lower()}.so", f"-DVARIANT_{name}")
    # Link against a dependency, then delete it: loading must name what is missing.
    dep_dir = tmp_path_factory.mktemp("dep")
    compile_plugin(C_DIR / "dep.c", dep_dir / "libferrule_dep.so")
    compile_plugin(C_DIR / "fixture.c", c / "libfixture_missing_dep.so", "-DVARIANT_MISSING_DEP",
                   f"-L{dep_dir}", "-lferrule_dep")
    (dep_dir / "libferrule_dep.so").unlink()
    return Built(rust=rust, c=c)


@pytest.fixture(params=["c", "python"], ids=["c-path", "python-path"])
def call_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once through the C accelerator and once through the cffi
    fallback: plugins loaded inside the test take that path."""
    from ferrule._call import accelerator

    if request.param == "c":
        if os.environ.get("FERRULE_PURE_PYTHON"):
            pytest.skip("FERRULE_PURE_PYTHON is set: the C accelerator is disabled on purpose")
        if accelerator.speedups is None:
            pytest.fail("the C accelerator is not built: run the README's install command "
                        "(FERRULE_PURE_PYTHON=1 disables it on purpose)")
        monkeypatch.setattr(accelerator, "enabled", True)
    else:
        monkeypatch.setattr(accelerator, "enabled", False)
    return str(request.param)


@pytest.fixture(scope="session")
def corpus(built: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every input of the bad-plugin corpus (tests/corpus.py), by kind id."""
    from .corpus import build_all  # here: corpus.py imports this module
    return build_all(built, tmp_path_factory.mktemp("corpus"))


def copy_checkout(dest: Path) -> Path:
    """The tracked files of this checkout (as a clean clone has them, with
    the working tree's edits), so a build cannot see local build products."""
    files = run(["git", "ls-files", "-z"], cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        source, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    return dest


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ferrule's sdist, and a wheel built from that sdist (python -m build
    does both, in isolated build environments, as a release does)."""
    tmp = tmp_path_factory.mktemp("dists")
    source = copy_checkout(tmp / "source")
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], capture_output=True,
                          text=True, env=dict(os.environ, FERRULE_REQUIRE_C="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # setuptools frames each deprecation (e.g. the old license table) in a banner of stars.
    assert "*" * 40 not in proc.stdout + proc.stderr, "the build warned:\n" + proc.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel, "out": out}
