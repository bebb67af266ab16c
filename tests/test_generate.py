"""`ferrule generate`: committed outputs are current, output is deterministic,
published revisions stay immutable, and the Python proxies type-check calls."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ferrule import idl
from ferrule._codegen import c as _gen_c
from ferrule._codegen import python as _gen_python
from ferrule._codegen import rust as _gen_rust
from ferrule._codegen.generate import declarations
from tests import iface_api as api

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "examples" / "pipeline"

# The committed outputs and the commands that make them (also in the README files).
TARGETS = [
    (ROOT, ["tests.iface_api", "--rust", "tests/plugins/generated/iface_api.rs", "--rust-host",
            "tests/plugins/generated/iface_host.rs", "--c",
            "tests/plugins/generated/iface_api.h", "--c-prefix", "tapi", "--python", "tests/iface_proxies.py"]),
    (PIPELINE, ["pipeline_api", "--rust", "generated/pipeline_api.rs", "--rust-host", "generated/pipeline_host.rs",
                "--c", "generated/pipeline_api.h",
                "--c-prefix", "pipeline", "--python", "pipeline_proxies.py"]),
    (ROOT, ["tests.parity_api", "--c", "tests/plugins/generated/parity_api.h", "--c-prefix", "tpar", "--rust-host",
            "tests/plugins/generated/parity_host.rs"]),
]


def generate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # src first: the generator of this tree, not whichever ferrule is installed.
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return subprocess.run([sys.executable, "-m", "ferrule", "generate", *args], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})


@pytest.mark.parametrize(("cwd", "args"), TARGETS, ids=["tests", "pipeline", "parity"])
def test_committed_code_is_current(cwd: Path, args: list[str]) -> None:
    proc = generate(cwd, *args, "--check")
    assert proc.returncode == 0, proc.stderr + "\nrun: ferrule generate " + " ".join(args)


def test_check_reports_a_stale_output(tmp_path: Path) -> None:
    proc = generate(ROOT, "tests.iface_api", "--python", str(tmp_path / "proxies.py"), "--check")
    assert proc.returncode == 1
    assert f"{tmp_path / 'proxies.py'} is not current" in proc.stderr


def test_output_is_deterministic() -> None:
    specs = declarations("tests.iface_api")
    again = [idl.spec(c) for c in (api.Counter, api.Shapes, api.Store, api.Store2)]
    assert [s.fingerprint for s in specs] == [s.fingerprint for s in again]
    for render in (lambda s: _gen_rust.render(s, "tests.iface_api"), lambda s: _gen_c.render(s, "tests.iface_api", "tapi"),
                   lambda s: _gen_python.render_py(s, "tests.iface_api"), lambda s: _gen_python.render_pyi(s, "tests.iface_api")):
        assert render(specs) == render(again)


def test_published_revision_is_immutable(tmp_path: Path) -> None:
    source = (ROOT / "tests" / "iface_api.py").read_text()
    (tmp_path / "api_copy.py").write_text(source.replace("def add(self, n: idl.i64)", "def add(self, n: idl.i32)"))
    shutil.copy(ROOT / "tests" / "iface_api.ferrule-lock", tmp_path / "api_copy.ferrule-lock")
    proc = generate(tmp_path, "api_copy", "--python", "out.py")
    assert proc.returncode == 1
    assert "org.ferrule.test.counter/1 (Counter) changed since it was published" in proc.stderr
    assert "published has 'method 0 add(i64) -> i64', declaration has 'method 0 add(i32) -> i64'" in proc.stderr
    assert "declare the change as revision 2" in proc.stderr
    assert not (tmp_path / "out.py").exists()
    # The same change as a new revision is fine, and is recorded.
    (tmp_path / "api_copy.py").write_text(source.replace(
        '@idl.interface("org.ferrule.test.counter", revision=1)', '@idl.interface("org.ferrule.test.counter", revision=3)'
    ).replace("def add(self, n: idl.i64)", "def add(self, n: idl.i32)"))
    proc = generate(tmp_path, "api_copy", "--python", "out.py")
    assert proc.returncode == 0, proc.stderr
    assert '"org.ferrule.test.counter/3"' in (tmp_path / "api_copy.ferrule-lock").read_text()


def test_declaration_errors_are_specific() -> None:
    with pytest.raises(TypeError, match="say its width, e.g. idl.i64"):
        @idl.interface("org.example.bad", revision=1)
        class Bad:
            def f(self, x: int) -> None: ...
    with pytest.raises(TypeError, match="struct fields must be numbers, bool, handles or structs"):
        @idl.struct
        class BadStruct:
            name: str
    with pytest.raises(ValueError, match="not reverse-DNS"):
        idl.interface("nodots", revision=1)
    with pytest.raises(TypeError, match="returns buf\\[u8\\]"):
        @idl.interface("org.example.bad", revision=1)
        class BadResult:
            def f(self) -> idl.buf[idl.u8]: ...


def test_proxies_type_check_calls(tmp_path: Path) -> None:
    use = tmp_path / "use_proxies.py"
    use.write_text(
        "import ferrule\n"
        "from tests import iface_api as api, iface_proxies as px\n\n"
        "def run(plugin: ferrule.Plugin) -> int:\n"
        "    counter = plugin.create(px.Counter)\n"
        "    shapes = plugin.create(px.Shapes)\n"
        "    rect: api.Rect = shapes.grow(api.Rect(api.Point(0, 0), 1, 1, False, 0), 2)\n"
        "    token: api.Token = shapes.token('a')\n"
        "    counter.add('five')\n"
        "    return counter.add(rect.width) + len(shapes.label(token))\n"
    )
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(use)], cwd=ROOT,
                          capture_output=True, text=True)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, proc.stdout
    assert 'use_proxies.py:9: error: Argument 1 to "add" of "Counter" has incompatible type "str"; expected "int"' in errors[0]


# -- generated Rust builds warning-free (a plugin may build with -D warnings)

@idl.interface("org.ferrule.test.tally", revision=1)
class Tally:
    """Scalars and text only: no struct or handle at the top of the file."""

    def add(self, n: idl.i64) -> idl.i64: ...
    def label(self, name: str) -> str: ...
    def reset(self) -> None: ...


# A plugin that implements Tally and calls one through the host.
TALLY_PLUGIN = """
use api::tally;

struct Mine(i64);

impl tally::Tally for Mine {
    type Error = String;
    fn create() -> Result<Self, String> { Ok(Mine(0)) }
    fn add(&mut self, n: i64) -> Result<i64, String> { self.0 += n; Ok(self.0) }
    fn label(&mut self, name: &str) -> Result<String, String> { Ok(format!("{name}: {}", self.0)) }
    fn reset(&mut self) -> Result<(), String> { self.0 = 0; Ok(()) }
}

fn via_host(n: i64) -> Result<i64, String> {
    let mut other = tally::Client::query().ok_or("no tally")?;
    other.add(n).map_err(|e| e.to_string())
}
"""

RUST_CASES = [
    pytest.param([idl.spec(Tally)], TALLY_PLUGIN, "functions: { fn add_there(n: i64) -> Result<i64, String> "
                 "{ via_host(n) } }, interfaces: [tally::export::<Mine>(\"mine\", \"\")]", id="scalar-and-str"),
    pytest.param(declarations("tests.iface_api"), "", "functions: {}", id="iface_api"),
]


@pytest.fixture(scope="module")
def rust_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cargo") is None:
        pytest.fail("cargo is required to build the generated Rust code (see README)")
    return tmp_path_factory.mktemp("rust-target")  # shared: the SDK is built once


@pytest.mark.parametrize(("specs", "code", "plugin"), RUST_CASES)
def test_generated_rust_has_no_warnings(specs: list[idl.InterfaceSpec], code: str, plugin: str, tmp_path: Path,
                                        rust_target: Path) -> None:
    crate = tmp_path / "crate"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "generated_check"\nversion = "0.1.0"\nedition = "2021"\npublish = false\n\n'
        '[lib]\ncrate-type = ["cdylib"]\n\n'
        f'[dependencies]\nferrule-sdk = {{ path = "{ROOT / "sdk" / "rust"}" }}\n\n'
        "[workspace]\n"  # its own workspace: not a member of ferrule's
    )
    (crate / "src" / "api.rs").write_text(_gen_rust.render(specs, "tests.test_generate"))
    (crate / "src" / "lib.rs").write_text(
        '#[path = "api.rs"]\nmod api;\n' + code +
        f'\nferrule_sdk::plugin! {{ id: "org.ferrule.tests.generated_check", name: "check", version: "1", {plugin} }}\n'
    )
    env = dict(os.environ, CARGO_TARGET_DIR=str(rust_target))
    clippy = subprocess.run(["cargo", "clippy", "--version"], capture_output=True, env=env).returncode == 0
    # Clippy's lints when it is installed, the compiler's otherwise; any warning fails.
    cmd = ["cargo", "clippy", "--quiet", "--", "-D", "warnings"] if clippy else ["cargo", "build", "--quiet"]
    if not clippy:
        env["RUSTFLAGS"] = "-D warnings"
    proc = subprocess.run(cmd, cwd=crate, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("method", ["new", "into_inner", "query", "object"])
def test_a_method_named_like_the_clients_own_is_refused(method: str) -> None:
    """The client has new, into_inner, query and object of its own: a method of
    that name would not compile, so the generator says to rename it."""
    from typing import Protocol

    cls = type(f"Clash_{method}", (Protocol,), {method: lambda self: None, "__annotations__": {}})
    cls.__dict__[method].__annotations__ = {"return": None}
    spec = idl.spec(idl.interface(f"org.ferrule.test.clash{method.replace('_', '')}", revision=1)(cls))
    with pytest.raises(ValueError, match=f"method '{method}' clashes with a generated Rust name; rename it"):
        _gen_rust.render([spec], "clash")


def test_a_struct_named_like_the_clients_type_parameter_is_refused() -> None:
    from typing import Protocol

    C = idl.struct(type("C", (), {"__annotations__": {"x": idl.i32}}))
    cls = type("UsesC", (Protocol,), {"get": lambda self: None})
    cls.__dict__["get"].__annotations__ = {"return": C}
    spec = idl.spec(idl.interface("org.ferrule.test.usesc", revision=1)(cls))
    with pytest.raises(ValueError, match="the name 'C' clashes with a generated Rust name"):
        _gen_rust.render([spec], "clash")
