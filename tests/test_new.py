"""``ferrule new``: each language's project, plain and with ``--interface``, is
written, then built, tested and packaged with its own files, as its author
would, and loaded by ferrule."""

from __future__ import annotations

import array
import json
import os
import shutil
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ferrule
from ferrule import idl
from ferrule._scaffold import find_sdk, resolve, scaffold

from . import iface_api
from .conftest import ROOT, exported

# The declarations of a small host, which the interface variant implements
# beside every interface of tests/iface_api.py: str and number methods, and a
# struct argument and result.
TEXTAPI = '''\
from typing import Protocol

from ferrule import idl


@idl.struct
class Span:
    start: idl.u32
    end: idl.u32


@idl.interface("org.example.text.transform", revision=1)
class Transform(Protocol):
    """Rewrites text."""

    def apply(self, text: str) -> str:
        """The rewritten text."""

    def weight(self, factor: idl.f64, count: idl.i32) -> idl.f64: ...

    def mark(self, span: Span, text: str) -> Span: ...
'''
IFACE_ARGS = ["--interface", "textapi:Transform", "--interface", "tests.iface_api"]
SOURCES = {"rust": "src/lib.rs", "c": "plugin.c", "cpp": "plugin.cpp"}


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


def _new(*args: str | Path, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferrule", "new", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**_env(), **extra}, timeout=60)


def _with_root() -> dict[str, str]:
    """PYTHONPATH for importing tests.iface_api, as a host's package found on the path."""
    return {"PYTHONPATH": os.pathsep.join((_env()["PYTHONPATH"], str(ROOT)))}


@dataclass(frozen=True)
class Project:
    lang: str
    interfaces: bool  # made with IFACE_ARGS
    root: Path
    library: Path
    test_command: list[str]
    extra_env: dict[str, str]
    printed: str


def _build(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project written by the command and built by its own build file; a
    LANG+iface one implements Transform (textapi.py, beside the project) and
    every interface of tests/iface_api.py."""
    lang, _, variant = kind.partition("+")
    interfaces = variant == "iface"
    base = tmp_path_factory.mktemp(f"new-{kind}")
    if lang == "rust":
        # Inside another cargo workspace: the crate's own [workspace] keeps it out.
        (base / "Cargo.toml").write_text('[workspace]\nmembers = []\n')
    extra: dict[str, str] = {}
    if interfaces:
        (base / "textapi.py").write_text(TEXTAPI)  # imported from the current directory
        extra = _with_root()
    proc = _new(f"hello-{lang}", "--lang", lang, "--dir", base / "hello", *(IFACE_ARGS if interfaces else []),
                cwd=base, **extra)
    assert proc.returncode == 0, proc.stderr
    root = base / "hello"
    ident = f"hello_{lang}"
    if lang == "rust":
        env = {"CARGO_TARGET_DIR": str(root / "target")}  # off the main target; the wheel build reuses it
        _run(["cargo", "build", "--release", "--quiet"], cwd=root, **env)
        return Project(lang, interfaces, root, root / "target" / "release" / f"lib{ident}.so",
                       ["cargo", "test", "--quiet"], env, proc.stdout)
    _run(["make"], cwd=root)
    return Project(lang, interfaces, root, root / "build" / f"lib{ident}.so",
                   ["make", "test", f"PYTHON={sys.executable}"], {}, proc.stdout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Project]:
    """Each kind of project, built once for all the fixtures below."""
    made: dict[str, Project] = {}

    def get(kind: str) -> Project:
        if kind not in made:
            made[kind] = _build(kind, tmp_path_factory)
        return made[kind]

    return get


@pytest.fixture(scope="module", params=["rust", "c", "cpp", "rust+iface", "c+iface", "cpp+iface"])
def project(request: pytest.FixtureRequest, built: Callable[[str], Project]) -> Project:
    return built(request.param)


@pytest.fixture(scope="module", params=["rust+iface", "c+iface", "cpp+iface"])
def iface_project(request: pytest.FixtureRequest, built: Callable[[str], Project]) -> Project:
    return built(request.param)


@pytest.fixture(scope="module", params=["rust", "rust+iface"])
def rust_project(request: pytest.FixtureRequest, built: Callable[[str], Project]) -> Project:
    return built(request.param)


@pytest.fixture(scope="module", params=["c+iface", "cpp+iface"])
def native_iface_project(request: pytest.FixtureRequest, built: Callable[[str], Project]) -> Project:
    return built(request.param)


def test_prints_the_next_steps(project: Project) -> None:
    build = "cargo build --release" if project.lang == "rust" else "make"
    assert f"cd {project.root}" in project.printed
    assert build in project.printed
    assert ("cargo test" if project.lang == "rust" else "make test") in project.printed
    stubs = (f"It implements Transform, Counter, Shapes, Store, Store2: every method is a stub that fails until you "
             f"write it in {SOURCES[project.lang]}.")
    assert (stubs in project.printed) == project.interfaces, project.printed


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
        # With interfaces, one more test per interface calls a stub and expects its panic.
        assert f"test result: ok. {7 if project.interfaces else 2} passed" in proc.stdout, proc.stdout
    else:
        assert "greet and divide work" in proc.stdout
        if project.interfaces:
            assert "; Transform, Counter, Shapes, Store, Store2 are stubs" in proc.stdout, proc.stdout


def test_validate(project: Project) -> None:
    """A new project passes ferrule validate at its highest level, warned
    only that its id is still the example one. With interfaces (and their
    declarations) the stubs are called: a Rust todo!() fails as a panic, a
    C or C++ stub's failure is the plugin's own error, which is allowed."""
    args = ["validate", str(project.library), "--level", "5", "--seed", "1", "--json"]
    if project.interfaces:
        args += ["--interfaces", "textapi", "--interfaces", "tests.iface_api"]
    proc = subprocess.run([sys.executable, "-m", "ferrule", *args], capture_output=True, text=True,
                          cwd=project.root.parent, env={**_env(), **(_with_root() if project.interfaces else {})},
                          timeout=300)
    report = json.loads(proc.stdout)
    by_status: dict[str, dict[str, str]] = {}
    for c in report["checks"]:
        by_status.setdefault(c["status"], {})[c["id"]] = c["message"]
    assert list(by_status.get("warn", {})) == ["descriptor.metadata"], by_status.get("warn")
    assert "is the example one" in by_status["warn"]["descriptor.metadata"]
    assert by_status["pass"]["function.greet"] and by_status["pass"]["leaks.function.divide"]
    failed = by_status.get("fail", {})
    if project.interfaces:
        assert all(c.endswith(".fingerprint") for c in by_status["pass"] if c.startswith("interfaces.org"))
        assert sum(c.endswith(".fingerprint") for c in by_status["pass"]) == len(_declarations())
    if project.interfaces and project.lang == "rust":
        assert proc.returncode == 1 and failed and all(c.startswith(("interface.", "threads.interface.")) for c in failed)
        assert all("panicked" in m and "not yet implemented" in m for m in failed.values()), failed
    else:
        assert proc.returncode == 0 and failed == {}, failed


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


# -- the interface variant


def _textapi() -> Any:
    """textapi, as a host of the projects has it."""
    if "textapi" not in sys.modules:
        module = types.ModuleType("textapi")
        sys.modules["textapi"] = module  # first: idl resolves the annotations in it
        exec(compile(TEXTAPI, "textapi.py", "exec"), module.__dict__)
    return sys.modules["textapi"]


def _declarations() -> list[Any]:
    return [_textapi().Transform, iface_api.Counter, iface_api.Shapes, iface_api.Store, iface_api.Store2]


def _sample(t: idl.TypeSpec) -> Any:
    """An argument of type t."""
    if t.kind == "number":
        return 0.0 if t.name.startswith("f") else 0
    if t.kind in ("buf", "mutbuf"):
        codes = {"i8": "b", "u8": "B", "i16": "h", "u16": "H", "i32": "i", "u32": "I", "i64": "q", "u64": "Q",
                 "f32": "f", "f64": "d"}
        return array.array(codes[t.elem], [0, 0])
    if t.kind == "struct":
        assert t.struct is not None
        return t.struct.cls(*(_sample(f.type) for f in t.struct.fields))
    if t.kind == "handle":
        assert t.handle is not None
        return t.handle(1)
    return {"bool": True, "str": "text", "bytes": b"data", "fn": lambda *args: 0}[t.kind]


def test_inspect_lists_the_implementations(iface_project: Project) -> None:
    proc = _run([sys.executable, "-m", "ferrule", "inspect", "--json", str(iface_project.library)])
    offers = json.loads(proc.stdout)["interfaces"]
    expected = [idl.spec(d) for d in _declarations()]
    assert [(o["id"], o["revision"], o["name"], o["fingerprint"]) for o in offers] == [
        (s.id, s.revision, f"hello-{iface_project.lang}", f"{s.fingerprint:#018x}") for s in expected]


def test_every_stub_fails_naming_its_method(iface_project: Project) -> None:
    """Each interface makes instances, and each method fails clearly: a Rust
    todo!() as a PluginPanicError (the host lives on), a C or C++ stub as a
    PluginCallError."""
    source = SOURCES[iface_project.lang]
    with ferrule.load(iface_project.library) as plugin:
        for declaration in _declarations():
            s = idl.spec(declaration)
            with plugin.create(declaration, f"hello-{iface_project.lang}") as instance:
                for m in s.methods:
                    call = getattr(instance, m.name)
                    with pytest.raises(ferrule.PluginCallError) as caught:
                        call(*(_sample(p.type) for p in m.params))
                    message = str(caught.value)
                    if iface_project.lang == "rust":
                        assert caught.type is ferrule.PluginPanicError
                        assert f"not yet implemented: {s.name}.{m.name}: write it in {source}" in message
                    else:
                        assert caught.type is ferrule.PluginCallError
                        assert caught.value.plugin_message == (
                            f"{s.name}.{m.name} is not implemented yet: write it in {source}")
        assert plugin.greet("Ada") == "Hello, Ada!"  # the plain functions still work


def test_the_bindings_are_what_generate_writes(iface_project: Project) -> None:
    """The README's regeneration commands find the bindings current; the Rust
    file is the very file the fixture plugins build against."""
    root, lang = iface_project.root, iface_project.lang
    readme = (root / "README.md").read_text()
    if lang == "rust":
        generated = (ROOT / "tests" / "plugins" / "generated" / "iface_api.rs").read_text()
        assert (root / "src" / "iface_api.rs").read_text() == generated
        outputs = [("textapi", "--rust", "src/textapi.rs"), ("tests.iface_api", "--rust", "src/iface_api.rs")]
    else:
        outputs = [("textapi", "--c", "textapi.h"), ("tests.iface_api", "--c", "iface_api.h")]
        assert "make generate" in readme
        makefile = (root / "Makefile").read_text()
        # textapi.py is in the project's parent: a relative path; tests/ is elsewhere: absolute.
        assert f"HOST_PYTHONPATH ?= ..{os.pathsep}{ROOT}\n" in makefile
    for module, flag, path in outputs:
        assert f"ferrule generate {module} {flag} {path} --no-lock" in readme
        # PYTHONPATH as the README gives it (.. and this checkout), after this tree's ferrule.
        pythonpath = os.pathsep.join((_env()["PYTHONPATH"], "..", str(ROOT)))
        _run([sys.executable, "-m", "ferrule", "generate", module, flag, path, "--no-lock", "--check"], cwd=root,
             PYTHONPATH=pythonpath)
    assert not (root.parent / "textapi.ferrule-lock").exists()  # the host's lock is the host's to write


@pytest.mark.skipif(shutil.which("cargo-clippy") is None and shutil.which("clippy-driver") is None,
                    reason="clippy is not installed")
def test_rust_passes_clippy(rust_project: Project) -> None:
    _run(["cargo", "clippy", "--quiet", "--all-targets", "--", "-D", "warnings"], cwd=rust_project.root,
         **rust_project.extra_env)


def test_make_generate_rewrites_nothing(native_iface_project: Project) -> None:
    root = native_iface_project.root
    before = {p: p.read_text() for p in root.glob("*.h")}
    proc = _run(["make", "generate", f"PYTHON={sys.executable}"], cwd=root)
    assert "wrote" not in proc.stdout, proc.stdout
    assert {p: p.read_text() for p in root.glob("*.h")} == before


# -- --interface arguments


@pytest.fixture(scope="module")
def declarations_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Declaration modules for the argument checks, with names of their own."""
    d = tmp_path_factory.mktemp("decls")
    (d / "newdecl_api.py").write_text(TEXTAPI + '''
from newdecl_other import Elsewhere


class Plain:
    pass


def helper() -> None:
    pass
''')
    (d / "newdecl_other.py").write_text('''\
from typing import Protocol

from ferrule import idl


@idl.interface("org.example.elsewhere", revision=1)
class Elsewhere(Protocol):
    def ping(self) -> None: ...
''')
    (d / "newdecl_empty.py").write_text("X = 1\n")
    (d / "newdecl_pkg").mkdir()
    (d / "newdecl_pkg" / "__init__.py").write_text("")
    (d / "newdecl_pkg" / "lib.py").write_text(TEXTAPI)
    return d


@pytest.fixture
def in_declarations(declarations_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(declarations_dir)
    monkeypatch.syspath_prepend(str(declarations_dir))
    yield declarations_dir


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["newdecl_api:"], "is not MODULE:Interface (e.g. myapp.api:Transform) or MODULE"),
        ([":Transform"], "is not MODULE:Interface"),
        (["newdecl_api:Transform:apply"], "is not MODULE:Interface"),
        (["newdecl_api:1x"], "is not MODULE:Interface"),
        (["newdecl_api/x.py"], "is not MODULE:Interface"),
        (["newdecl_nosuch:Transform"], "--interface newdecl_nosuch:Transform: cannot import 'newdecl_nosuch': no "
         "module 'newdecl_nosuch' in the current directory or on sys.path: run ferrule from the directory that "
         "holds it, or add that directory to PYTHONPATH"),
        (["newdecl_pkg.nosuch"], "package newdecl_pkg"),
        (["newdecl_api:Missing"], "newdecl_api has no Missing; it declares Transform"),
        (["newdecl_api:Span"], "newdecl_api.Span is an @idl.struct, not an interface declaration: decorate it with "
         "@ferrule.idl.interface(id, revision=...)"),
        (["newdecl_api:Plain"], "newdecl_api.Plain is a plain class, not an interface declaration"),
        (["newdecl_api:helper"], "newdecl_api.helper is a function, not an interface declaration"),
        (["newdecl_api:Elsewhere"], "newdecl_api.Elsewhere is declared in newdecl_other, which ferrule generate "
         "writes the code from: name the declaration there, --interface newdecl_other:Elsewhere"),
        (["newdecl_empty"], "newdecl_empty declares no interfaces (decorate classes with @ferrule.idl.interface)"),
        (["newdecl_empty:X"], "newdecl_empty.X is a int, not an interface declaration"),
        (["newdecl_api:Transform", "newdecl_api:Transform"], "--interface newdecl_api:Transform: "
         "org.example.text.transform/1 (Transform) is already given by --interface newdecl_api:Transform: name "
         "each interface once"),
        (["newdecl_api", "newdecl_api:Transform"], "is already given by --interface newdecl_api:"),
    ],
)
def test_bad_interface_arguments(in_declarations: Path, args: list[str], why: str) -> None:
    with pytest.raises(ValueError) as caught:
        resolve(args)
    assert why in str(caught.value)
    assert "\n" not in str(caught.value)


def test_interface_arguments(in_declarations: Path) -> None:
    (api,) = resolve(["newdecl_api"])  # MODULE alone: every interface it declares (not the imported one)
    assert [s.name for s in api.implemented] == ["Transform"] and api.stem == "newdecl_api"
    assert api.path == str(in_declarations)  # not installed: the project needs it on PYTHONPATH
    other, api = resolve(["newdecl_other:Elsewhere", "newdecl_api:Transform"])  # in the order given
    assert (other.module, api.module) == ("newdecl_other", "newdecl_api")
    (lib,) = resolve(["newdecl_pkg.lib:Transform"])
    assert lib.stem == "newdecl_pkg_lib"  # not src/lib.rs: the crate root's own file
    assert (installed_stem := resolve(["tests.iface_api:Counter"])[0]).stem == "iface_api"
    assert [s.name for s in installed_stem.declared] == ["Counter", "Shapes", "Store", "Store2"]


def test_a_bad_interface_writes_nothing(tmp_path: Path) -> None:
    proc = _new("calc", "--lang", "c", "--dir", tmp_path / "p", "--interface", "newdecl_nosuch:Transform",
                cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ferrule: --interface newdecl_nosuch:Transform: cannot import 'newdecl_nosuch'")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "p").exists()


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
