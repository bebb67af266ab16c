"""The C API of the Rust host (host/capi: libferrule_host.so/.a and
include/ferrule_host.h) held to the Python host: tests/c_host/host.c, built
against the shared and the static library, hosts the demo's plugins (and
hostile.c for bytes and f32), and every result, error code and message it
prints is compared with what `import ferrule` does for the same call or load."""

from __future__ import annotations

import array
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

import ferrule

from .conftest import C_VARIANTS, CC, ROOT, Built, exported, run

CAPI = ROOT / "host" / "capi"
HEADER = CAPI / "include" / "ferrule_host.h"
HOST_C = ROOT / "tests" / "c_host" / "host.c"
WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"]


@pytest.fixture(scope="module")
def libs(built: Built) -> Path:
    """cargo's release directory, holding libferrule_host.so and .a."""
    run(["cargo", "build", "--release", "--quiet", "-p", "ferrule-host-capi"], cwd=ROOT)
    for name in ("libferrule_host.so", "libferrule_host.a"):
        assert (built.rust / name).is_file(), name
    return built.rust


@pytest.fixture(scope="module")
def hosts(libs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """host.c linked against the shared library (found through its rpath) and statically."""
    out = tmp_path_factory.mktemp("c-host")
    common = [CC, *WARNINGS, f"-I{HEADER.parent}", str(HOST_C)]
    run([*common, f"-L{libs}", "-lferrule_host", f"-Wl,-rpath,{libs}", "-o", str(out / "host_shared")])
    run([*common, str(libs / "libferrule_host.a"), "-lpthread", "-ldl", "-lm", "-o", str(out / "host_static")])
    return {"shared": out / "host_shared", "static": out / "host_static"}


def not_plugins(tmp: Path, built: Built) -> dict[str, Path]:
    """Files that are no plugin (or a broken one), each failing its own way."""
    made = {"missing": tmp / "libmissing.so", "directory": tmp / "libdir.so", "text": tmp / "libtext.so",
            "empty": tmp / "libempty.so", "executable": tmp / "libexe.so", "unsafe": tmp / "shared" / "libunsafe.so"}
    made["directory"].mkdir()
    made["text"].write_text("hello, this is text\n")
    made["empty"].write_bytes(b"")
    shutil.copy("/bin/true", made["executable"])
    made["unsafe"].parent.mkdir()
    shutil.copy(built.calc, made["unsafe"])
    made["unsafe"].parent.chmod(0o775)  # the group may write: refused before it runs
    made.update({f"fixture {v}": built.variant(v) for v in C_VARIANTS})
    made["missing dependency"] = built.missing_dep
    return made


def run_host(exe: Path, built: Built, loads: list[Path]) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "FERRULE_PATH"}
    proc = subprocess.run([str(exe), str(built.greeter), str(built.calc), str(built.hostile), *map(str, loads)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[-1].get("done") is True, lines[-1]
    return lines


@pytest.fixture(scope="module")
def outputs(hosts: dict[str, Path], built: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    loads = not_plugins(tmp_path_factory.mktemp("not-plugins"), built)
    return {"loads": loads, **{kind: run_host(exe, built, list(loads.values())) for kind, exe in hosts.items()}}


def python_class(code_name: str) -> str:
    """The Python host's exception class for a C code name."""
    special = {"TYPE": "TypeError", "VALUE": "ValueError", "NO_SUCH_FUNCTION": "AttributeError",
               "NO_IMPLEMENTATION": "LookupError"}
    word = code_name.removeprefix("FERRULE_HOST_E_")
    return special.get(word) or "".join(part.capitalize() for part in word.split("_")) + "Error"


def outcome(call: Callable[[], Any]) -> dict[str, Any]:
    """What the Python host does: the result, or the exception's class and message."""
    try:
        result = call()
    except (ferrule.FerruleError, TypeError, ValueError, AttributeError) as exc:
        got = {"error": type(exc).__name__, "message": str(exc)}
        if getattr(exc, "plugin_message", None):  # (a failure the host found has "" here, the Rust host's None)
            got["plugin_message"] = exc.plugin_message
        return got
    if isinstance(result, bytes):
        return {"result": result.hex()}
    if isinstance(result, array.array):
        return {"result": result.tolist()}
    return {"result": result}


def c_outcome(line: dict[str, Any]) -> dict[str, Any]:
    """The C host's line in outcome()'s form."""
    assert line.get("same_code", True), line  # the code returned is the error's
    if "error" in line:
        got = {"error": python_class(line["error"]), "message": line["message"]}
        if "plugin_message" in line:
            got["plugin_message"] = line["plugin_message"]
        return got
    return {"result": line["result"]}


def python_scenario(built: Built) -> dict[str, dict[str, Any]]:
    """host.c's calls, in its order, on the Python host; by case name. Cases
    whose message advises in the host's own language (Rust's &[f64] against
    Python's array.array) are marked to compare the class only."""
    want: dict[str, dict[str, Any]] = {}
    g = ferrule.load(str(built.greeter), config='{"lang": "en"}')
    want["greeter.add(2, 3) by index"] = outcome(lambda: g.add(2, 3))
    want["greeter.greet('Ada')"] = outcome(lambda: g.greet("Ada"))
    want["greeter.divide(1.0, 8.0)"] = outcome(lambda: g.divide(1.0, 8.0))
    want["greeter.divide(1.0, 0.0)"] = outcome(lambda: g.divide(1.0, 0.0))
    want["greeter.add(1, 'two')"] = outcome(lambda: g.add(1, "two"))
    want["greeter.add(1)"] = outcome(lambda: g.add(1))
    want["greeter.add(1, 2.5)"] = outcome(lambda: g.add(1, 2.5))
    want["greeter.shout('ferrule')"] = outcome(lambda: g.shout("ferrule"))
    values = array.array("d", [1.0, 2.0, 6.0])
    want["greeter.mean([1.0, 2.0, 6.0])"] = outcome(lambda: g.mean(values))
    want["greeter.mean([])"] = outcome(lambda: g.mean(array.array("d")))
    want["greeter.scale(values, 10.0)"] = outcome(lambda: g.scale(values, 10.0))
    want["values after scale"] = {"result": values.tolist()}
    want["greeter.scale(read-only values, 10.0)"] = {
        **outcome(lambda: g.scale(memoryview(values).toreadonly(), 10.0)), "class only": True}
    want["greeter.mean(f32 values)"] = {**outcome(lambda: g.mean(array.array("f", [1.0, 2.0]))), "class only": True}
    seen: list[int] = []
    want["greeter.count_if(odd, 10)"] = outcome(lambda: g.count_if(lambda i: seen.append(i) or i % 2 == 1, 10))
    want["odd was called"] = {"result": len(seen)}

    def refuse_three(i: int) -> bool:
        if i == 3:
            raise ValueError("the host refuses 3")
        return True

    want["greeter.count_if(refuse_three, 10)"] = outcome(lambda: g.count_if(refuse_three, 10))
    want["greeter.count_if(not_a_bool, 10)"] = outcome(lambda: g.count_if(lambda i: 1, 10))
    want["greeter.nope()"] = outcome(lambda: g.nope())
    g.close()
    want["greeter.add(2, 3) after close"] = outcome(lambda: g.add(2, 3))

    with ferrule.load(str(built.calc)) as calc:
        want["calc.mul(6, 7)"] = outcome(lambda: calc.mul(6, 7))
        want["calc.hypot(3.0, 4.0)"] = outcome(lambda: calc.hypot(3.0, 4.0))
        want["calc.reverse('stressed')"] = outcome(lambda: calc.reverse("stressed"))
        want["calc.checked_div(1, 0)"] = outcome(lambda: calc.checked_div(1, 0))
        want["calc.mul(9223372036854775808, 1)"] = outcome(lambda: calc.mul(9223372036854775808, 1))
        want["calc.reverse('a\\u00e9b')"] = outcome(lambda: calc.reverse("a\u00e9b"))
        want["calc.reverse('a\\u0000b')"] = outcome(lambda: calc.reverse("a\0b"))
        want["calc.calls()"] = outcome(lambda: calc.calls())

    with ferrule.load(str(built.hostile)) as h:
        want["hostile.reverse_bytes(b'\\x00\\xff\\x10')"] = outcome(lambda: h.reverse_bytes(b"\x00\xff\x10"))
        want["hostile.halve(3.0)"] = outcome(lambda: h.halve(3.0))
        want["hostile.halve(1e39)"] = outcome(lambda: h.halve(1e39))
        want["hostile.negate(True)"] = outcome(lambda: h.negate(True))
        want["hostile.fail('no way')"] = outcome(lambda: h.fail("no way"))
        want["hostile.int_as_str()"] = outcome(lambda: h.int_as_str())
        ints = array.array("i", [1, -2, 3])
        want["hostile.scale(ints, -3)"] = outcome(lambda: h.scale(ints, -3))
        want["ints after scale"] = {"result": ints.tolist()}
        want["hostile.scale(f64 values, 2)"] = {**outcome(lambda: h.scale(values, 2)), "class only": True}
    return want


def python_load(path: Path) -> dict[str, Any]:
    def load() -> str:
        ferrule.load(str(path)).close()
        return "loaded"
    return outcome(load)


@pytest.mark.parametrize("kind", ["shared", "static"])
def test_the_c_host_gets_the_python_hosts_results_and_errors(outputs: dict[str, Any], built: Built, kind: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRULE_PATH", raising=False)
    lines = outputs[kind]
    cases = {line["case"]: line for line in lines if "case" in line}
    assert len(cases) == len([line for line in lines if "case" in line]), "case names are unique"
    want = python_scenario(built)
    compared = 0
    for name, expected in want.items():
        got = c_outcome(cases[name])
        if expected.pop("class only", False):
            assert (got["error"], "message" in got) == (expected["error"], True), name
        else:
            assert got == expected, name
        compared += 1
    # Loads: the same class and the same message, byte for byte.
    for label, path in outputs["loads"].items():
        assert c_outcome(cases[f"load {path}"]) == python_load(path), label
        compared += 1
    assert compared >= 55, compared
    load_errors = {cases[f"load {p}"]["error"] for p in outputs["loads"].values()}
    assert len(load_errors) >= 8, load_errors  # many kinds reached, not one


def test_results_carry_their_tags_and_ownership(outputs: dict[str, Any]) -> None:
    cases = {line["case"]: line for line in outputs["shared"] if "case" in line}
    tags = {name: (cases[name]["tag"], cases[name]["owned"]) for name in
            ["greeter.greet('Ada')", "greeter.divide(1.0, 8.0)", "calc.calls()", "calc.mul(6, 7)",
             "hostile.reverse_bytes(b'\\x00\\xff\\x10')", "hostile.halve(3.0)", "hostile.negate(True)",
             "greeter.scale(values, 10.0)"]}
    # STR 6 and BYTES 7 are the library's memory; numbers are not; no result is NONE.
    assert tags == {"greeter.greet('Ada')": (6, True), "greeter.divide(1.0, 8.0)": (5, False),
                    "calc.calls()": (3, False), "calc.mul(6, 7)": (2, False),
                    "hostile.reverse_bytes(b'\\x00\\xff\\x10')": (7, True), "hostile.halve(3.0)": (4, False),
                    "hostile.negate(True)": (1, False), "greeter.scale(values, 10.0)": (0, False)}
    assert not [line for line in outputs["shared"] if "did not reset" in line.get("case", "")]


def test_misuse_of_the_c_api_has_its_own_code_and_says_what_to_do(outputs: dict[str, Any]) -> None:
    cases = {line["case"]: line for line in outputs["shared"] if "case" in line}
    misuse = {name: cases[name]["message"] for name in
              ["NULL plugin", "add with NULL args", "add with tag 99", "plugin_info with struct_size 4",
               "function_info 99", "open NULL"]}
    assert all(cases[name]["error"] == "FERRULE_HOST_E_INVALID_ARGUMENT" for name in misuse)
    assert misuse["plugin_info with struct_size 4"] == (
        "ferrule_host_get_plugin_info: info->struct_size is 4, at least 72 expected: set it to "
        "sizeof(ferrule_host_plugin_info) before the call")
    assert misuse["function_info 99"].endswith("function index 99 is out of range: plugin "
                                               "'org.ferrule.examples.greeter' has 7 functions (0 to 6)")
    assert misuse["open NULL"] == "ferrule_host_open: path is NULL, expected the plugin's path or name"
    assert "tag 99" in misuse["add with tag 99"]


def test_plugin_logs_reach_the_c_sink_as_they_reach_python_logging(outputs: dict[str, Any], built: Built,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    got = [(line["log"], line["plugin"], line["target"], line["message"]) for line in outputs["shared"]
           if "log" in line]
    assert outputs["shared"][-1]["logs"] == len(got) > 0
    levels = {logging.DEBUG: 1, logging.INFO: 2, logging.WARNING: 3, logging.ERROR: 4}
    with caplog.at_level(logging.INFO, logger="ferrule.plugin"):
        python_scenario(built)
    want = [(levels[r.levelno], r.name.removeprefix("ferrule.plugin."), r.name, r.getMessage())
            for r in caplog.records if r.name.startswith("ferrule.plugin.")]
    assert got == want
    assert (2, "org.ferrule.examples.greeter", "ferrule.plugin.org.ferrule.examples.greeter", "greeting Ada") in got


def test_inspection_is_the_python_hosts(outputs: dict[str, Any], built: Built) -> None:
    cases = {line["case"]: line for line in outputs["shared"] if "case" in line}
    for case, path, config in [("greeter info", built.greeter, '{"lang": "en"}'), ("calc info", built.calc, None)]:
        got = cases[case]
        with ferrule.load(str(path), config=config) as p:
            assert (got["id"], got["name"], got["version"], got["abi"]) == (p.id, p.name, p.version,
                                                                            list(p.abi_version))
            assert [(f["name"], f["signature"], f["doc"]) for f in got["functions"]] == [
                (f.name, str(f.signature), f.doc) for f in p.functions.values()]
            assert got["path"] == str(Path(path).resolve())
    greeter = {f["name"]: f for f in cases["greeter info"]["functions"]}
    # [name, type, tag, FERRULE_HOST_TYPE_*]: BUF 8 of F64 11, FN 10, I64 2 of I64 5
    assert greeter["mean"]["params"] == [["values", "buf[f64]", 8, 11]]
    assert greeter["count_if"]["params"] == [["keep", "fn(i64) -> bool", 10, 0], ["n", "i64", 2, 5]]
    assert greeter["scale"]["result_tag"] == 0 and greeter["greet"]["result_tag"] == 6
    assert greeter["add"]["flags"] & 1  # FERRULE_FN_THREAD_SAFE
    assert cases["greeter info after close"]["functions"] == cases["greeter info"]["functions"]


def test_both_links_behave_alike(outputs: dict[str, Any]) -> None:
    assert outputs["static"] == outputs["shared"]


def test_the_header_sizes_and_codes_are_the_librarys(outputs: dict[str, Any]) -> None:
    head = outputs["shared"][0]
    assert head["sizes"] and all(c == lib for c, lib in head["sizes"].values()), head["sizes"]
    assert head["unknown_size"] == 0
    text = HEADER.read_text()
    declared = {m[0]: int(m[1]) for m in re.findall(r"\b(FERRULE_HOST_(?:OK|E_[A-Z_]+)) = (\d+)", text)}
    assert declared == head["codes"]  # the header's enum is the library's table, name for name
    kinds = [name for name, code in declared.items() if 1 <= code < 100]
    assert len(kinds) == 22
    classes = {python_class(name) for name in kinds}
    for cls in classes - {"TypeError", "ValueError", "AttributeError", "LookupError"}:
        assert issubclass(getattr(ferrule, cls), ferrule.FerruleError), cls


def test_the_shared_library_exports_the_c_api_only(libs: Path) -> None:
    symbols = exported(libs / "libferrule_host.so")
    assert symbols and all(s.startswith("ferrule_host_") for s in symbols), symbols
    declared = set(re.findall(r"\b(ferrule_host_[a-z_]+)\(", HEADER.read_text()))
    inline = set(re.findall(r"static inline ferrule_host_value (ferrule_host_[a-z0-9_]+)\(", HEADER.read_text()))
    assert set(symbols) == declared - inline  # every declared function is there, and nothing else


def test_the_header_compiles_as_c_and_cxx(tmp_path: Path) -> None:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on PATH to check the header's extern \"C\" guards")
    for std in ("c++11", "c++17"):
        run([cxx, f"-std={std}", "-Wall", "-Wextra", "-pedantic", "-Werror", "-fsyntax-only", "-x", "c++",
             str(HEADER)])
    run([CC, *WARNINGS, "-fsyntax-only", "-x", "c", str(HEADER)])
    # Both headers in one translation unit: the plugin ABI's and the host API's names do not clash.
    both = tmp_path / "both.c"
    both.write_text('#include "ferrule.h"\n#include "ferrule_host.h"\nint main(void) { return 0; }\n')
    run([CC, *WARNINGS, f"-I{ROOT / 'sdk' / 'c' / 'include'}", f"-I{HEADER.parent}", "-fsyntax-only", str(both)])


def test_the_crate_tests_and_lints_clean(libs: Path) -> None:
    test = subprocess.run(["cargo", "test", "--release", "-q", "-p", "ferrule-host-capi"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    assert "test result: ok" in test.stdout, test.stdout
    doc = subprocess.run(["cargo", "rustdoc", "-q", "--lib", "-p", "ferrule-host-capi"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, env={**os.environ, "RUSTDOCFLAGS": "-D warnings"})
    assert doc.returncode == 0, doc.stderr[-3000:]
    if subprocess.run(["cargo", "clippy", "--version"], capture_output=True).returncode != 0:
        pytest.skip("cargo clippy is not installed here (rustup component add clippy); cargo test and rustdoc passed")
    clippy = subprocess.run(["cargo", "clippy", "--release", "-q", "-p", "ferrule-host-capi", "--all-targets", "--",
                             "-D", "warnings"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert clippy.returncode == 0, clippy.stderr[-3000:]


def test_the_readme_example_runs(libs: Path, built: Built, tmp_path: Path) -> None:
    """host/capi/README.md's C example, as written, against the calculator."""
    (code,) = re.findall(r"```c\n(.*?)```", (CAPI / "README.md").read_text(), re.S)
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quickstart for host authors: C"):]
    assert re.search(r"```c\n(.*?)```", section, re.S).group(1) == code, "the README's C host quickstart is this example"  # type: ignore[union-attr]
    (tmp_path / "app.c").write_text(code)
    run([CC, *WARNINGS, f"-I{HEADER.parent}", str(tmp_path / "app.c"), f"-L{libs}", "-lferrule_host",
         f"-Wl,-rpath,{libs}", "-o", str(tmp_path / "app")])
    (tmp_path / "build").mkdir()
    shutil.copy(built.calc, tmp_path / "build" / "libcalc.so")
    out = subprocess.run([str(tmp_path / "app")], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "mul(6, 7) = 42\nreverse = desserts\n"), out.stderr
