"""The ferrule command, run as a user runs it: a subprocess of this Python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ferrule

from .conftest import Built
from .test_errors import CASES


def ferrule_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferrule", *map(str, args)], capture_output=True, text=True)


def test_inspect_text(built: Built) -> None:
    proc = ferrule_cli("inspect", built.greeter)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Greeter 0.1.0 (org.ferrule.examples.greeter)" in out
    assert "ABI:         1.2" in out
    assert "add(a: i64, b: i64) -> i64" in out
    assert "greet(name: str) -> str" in out
    assert "divide(a: f64, b: f64) -> f64" in out


def test_inspect_json(built: Built) -> None:
    proc = ferrule_cli("inspect", "--json", built.calc)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["id"] == "org.ferrule.examples.calc"
    assert info["abi"] == {"major": 1, "minor": 2}
    mul = next(f for f in info["functions"] if f["name"] == "mul")
    assert mul == {
        "name": "mul",
        "signature": "(a: i64, b: i64) -> i64",
        "params": [{"name": "a", "type": "i64"}, {"name": "b", "type": "i64"}],
        "result": "i64",
        "thread_safe": False,
        "doc": "Multiply two integers.",
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("add", "2", "-5"), "-3"),
        (("greet", "Ada"), "Hello, Ada!"),
        (("divide", "1", "4"), "0.25"),
        (("shout", "quiet"), "QUIET"),
    ],
)
def test_call_parses_args_by_signature(built: Built, args: tuple[str, ...], expected: str) -> None:
    proc = ferrule_cli("call", built.greeter, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_call_kitchen_types(built: Built) -> None:
    assert ferrule_cli("call", built.kitchen, "echo_bool", "true").stdout.strip() == "true"
    assert ferrule_cli("call", built.kitchen, "echo_u16", "0xffff").stdout.strip() == "65535"
    assert ferrule_cli("call", built.kitchen, "echo_bytes", "hex:00ff").stdout.strip() == "hex:00ff"
    assert ferrule_cli("call", built.kitchen, "nothing").stdout == ""


def test_call_with_buffers(built: Built) -> None:
    assert ferrule_cli("call", built.kitchen, "sum_f64", "1,2,3.5").stdout.strip() == "6.5"
    # A writable buffer is printed after the call, as the plugin left it.
    assert ferrule_cli("call", built.kitchen, "double_i16", "1,-2,0x10").stdout.splitlines() == ["data = 2,-4,32"]
    line = one_line_error(ferrule_cli("call", built.kitchen, "sum_i8", "1,300"), 2)
    assert "sum_i8() argument 'data': cannot read '1,300' as buf[i8]" in line
    line = one_line_error(ferrule_cli("call", built.kitchen, "apply", "1", "2"), 2)
    assert line == "ferrule: apply() argument 'f' is a host function (fn(i64) -> i64): it cannot be given on the command line"


def test_inspect_bare_name_in_the_current_directory(built: Built) -> None:
    """`ferrule inspect libX.so` beside the file: not found, as with load, and told to write ./libX.so."""
    name = built.fixture.name
    env = {k: v for k, v in os.environ.items() if k != "FERRULE_PATH"}
    proc = subprocess.run([sys.executable, "-m", "ferrule", "inspect", name], capture_output=True, text=True,
                          cwd=built.fixture.parent, env=env)
    line = one_line_error(proc, 1)
    assert line == (f"ferrule: LibraryNotFoundError: no plugin {name} in FERRULE_PATH, which is not set: a bare plugin "
                    "name is looked up in FERRULE_PATH's directories only, never on the system loader path or in the "
                    f"current directory; {name} is in the current directory: pass './{name}' (or its full path) to "
                    "load that file")


def one_line_error(proc: subprocess.CompletedProcess[str], status: int) -> str:
    assert proc.returncode == status, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_call_failure_and_panic(built: Built) -> None:
    line = one_line_error(ferrule_cli("call", built.greeter, "divide", "1", "0"), 1)
    assert line == ("ferrule: PluginCallError: plugin 'org.ferrule.examples.greeter' function 'divide' failed: "
                    "division by zero: b must not be 0")
    line = one_line_error(ferrule_cli("call", built.kitchen, "boom", "oops"), 1)
    assert line.startswith("ferrule: PluginPanicError:") and line.endswith("oops")


def test_bad_arguments(built: Built) -> None:
    line = one_line_error(ferrule_cli("call", built.greeter, "add", "1", "x"), 2)
    assert line == "ferrule: add() argument 'b': cannot read 'x' as i64: invalid literal for int() with base 0: 'x'"
    line = one_line_error(ferrule_cli("call", built.greeter, "add", "1"), 2)
    assert "takes 2 arguments, 1 given" in line
    line = one_line_error(ferrule_cli("call", built.greeter, "nope"), 1)
    assert "has no function 'nope'; it has: add, greet, divide, shout, mean, scale, count_if" in line
    line = one_line_error(ferrule_cli("call", built.kitchen, "echo_u8", "256"), 2)
    assert "256 is out of range for u8" in line


@pytest.mark.parametrize(("variant", "cls", "message"), CASES, ids=[c[0] for c in CASES])
def test_every_error_class_is_one_line(built: Built, variant: str, cls: type, message: str) -> None:
    # inspect reads the descriptor in a worker and runs no init: an init failure shows with --in-process.
    inits = cls is ferrule.PluginInitError
    line = one_line_error(ferrule_cli("inspect", *(["--in-process"] if inits else []), built.variant(variant)), 1)
    assert line.startswith(f"ferrule: {cls.__name__}: ")
    if inits:
        assert ferrule_cli("inspect", built.variant(variant)).returncode == 0


def test_inspect_runs_no_plugin_code_in_its_own_process(built: Built, tmp_path: Path) -> None:
    """A constructor that would end the process: inspect survives it and
    reports the worker's end, as ferrule list does."""
    from .conftest import C_DIR, compile_plugin
    path = compile_plugin(C_DIR / "corpus.c", tmp_path / "libboom.so", "-DKIND_CONSTRUCTOR_SEGFAULT")
    line = one_line_error(ferrule_cli("inspect", path), 1)
    assert line.startswith("ferrule: SIGSEGV: ") and "ended the scan worker (SIGSEGV)" in line
    assert "blocklisted" not in line and "ferrule validate" in line  # the advice is for inspect, not for a scan
    assert one_line_error(ferrule_cli("inspect", "--config", "x", built.greeter), 2).endswith(
        "which inspect runs only with --in-process: add it")


@pytest.mark.parametrize(
    ("make", "cls"),
    [
        (lambda b, t: t / "missing.so", "LibraryNotFoundError"),
        (lambda b, t: (t / "text.so").write_text("hi") and t / "text.so", "NotALibraryError"),
        (lambda b, t: b.missing_dep, "MissingDependencyError"),
    ],
    ids=["missing", "not-a-library", "missing-dependency"],
)
def test_library_errors_are_one_line(built: Built, tmp_path: Path, make, cls: str) -> None:  # type: ignore[no-untyped-def]
    line = one_line_error(ferrule_cli("call", make(built, tmp_path), "f"), 1)
    assert line.startswith(f"ferrule: {cls}: ")


def test_wrong_architecture_is_one_line(built: Built, tmp_path: Path) -> None:
    from .test_errors import patched_copy

    path = patched_copy(built.fixture, tmp_path / "libarm.so", 18, (183).to_bytes(2, "little"))
    line = one_line_error(ferrule_cli("inspect", path), 1)
    assert line.startswith("ferrule: WrongArchitectureError: ")


def test_call_isolated_turns_a_crash_into_an_error(built: Built) -> None:
    ok = ferrule_cli("call", "--isolated", built.hostile, "add", "2", "40")
    assert (ok.returncode, ok.stdout) == (0, "42\n"), ok.stderr
    crashed = ferrule_cli("call", "--isolated", built.hostile, "last_words", "bye")
    assert crashed.returncode == 1
    lines = crashed.stderr.splitlines()
    assert "log: going down" in lines  # the plugin's ERROR log line, through logging's last resort
    first, *rest = lines[lines.index(next(line for line in lines if line.startswith("ferrule:"))):]
    assert first.startswith("ferrule: PluginCrashedError: isolated plugin 'org.ferrule.tests.hostile'")
    assert first.endswith("crashed during last_words(): killed by SIGSEGV (signal 11)")
    assert "  stderr: stderr: bye" in rest
    hung = ferrule_cli("call", "--isolated", "--timeout", "0.3", built.hostile, "spin")
    assert hung.returncode == 1 and "PluginTimeoutError" in hung.stderr and "spin() timed out" in hung.stderr
    refused = ferrule_cli("call", "--timeout", "1", built.hostile, "add", "1", "2")
    assert refused.returncode == 2 and "--timeout needs --isolated" in refused.stderr


def test_version_says_whether_the_c_code_is_on() -> None:
    for command in ([sys.executable, "-m", "ferrule", "--version"], ["ferrule", "--version"]):
        proc = subprocess.run(command, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["ferrule 0.1.0", "accelerator: on", "isolation channel: on"]
    pure = subprocess.run([sys.executable, "-m", "ferrule", "--version"], capture_output=True, text=True,
                          env=dict(os.environ, FERRULE_PURE_PYTHON="1"))
    assert pure.stdout.splitlines()[1] == "accelerator: off (FERRULE_PURE_PYTHON is set)"


def test_include_is_where_the_header_is() -> None:
    import ferrule

    proc = ferrule_cli("--include")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ferrule.get_include()
    assert (Path(ferrule.get_include()) / "ferrule.h").read_text().startswith("/*\n * ferrule.h")


@pytest.mark.parametrize("args", [("--version",), ("inspect", "--json", "GREETER"), ("list", "--no-cache", "DIR")])
def test_a_closed_pipe_ends_quietly(built: Built, args: tuple[str, ...]) -> None:
    # As with `ferrule list | head -1`: the reader is gone before the output.
    argv = [str(built.greeter) if a == "GREETER" else str(built.greeter.parent) if a == "DIR" else a for a in args]
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-m", "ferrule", *argv], stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == 141
