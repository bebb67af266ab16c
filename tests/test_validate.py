"""ferrule validate against real plugins: the examples pass the highest
level, each flaw of tests/plugins/c/flawed.c fails (or warns) the check made
for it, every corpus case that load rejects fails with load's own message,
and crashes and hangs fail the check they happen in while the run goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

import ferrule
from ferrule._validate.report import Report
from ferrule._validate.validate import validate

from .conftest import C_DIR, INCLUDE, ROOT, Built, compile_plugin, run
from .corpus import KINDS, Kind
from .test_corpus import in_process_error, target

FLAWS = ["THREAD_LEAK", "FD_LEAK", "LEAK_STATE", "LEAK_RESULT", "WRITES_INPUT", "WRITES_TEXT", "RACE", "NO_MESSAGE",
         "NO_DOCS", "METADATA", "HANG", "DAEMON", "CHANNEL", "EXIT_HANG", "SHUTDOWN_CRASH"]


@pytest.fixture(scope="module")
def flawed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("flawed")
    made = {"OK": compile_plugin(C_DIR / "flawed.c", out / "libflawed.so", "-lpthread")}
    for flaw in FLAWS:
        made[flaw] = compile_plugin(C_DIR / "flawed.c", out / f"libflawed_{flaw.lower()}.so", f"-DFLAW_{flaw}",
                                    "-lpthread")
    return made


@pytest.fixture(scope="module")
def examples(built: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("examples")
    calc = compile_plugin(ROOT / "examples" / "c_plugin" / "calc.c", out / "libcalc.so", "-lm")
    wordstat = out / "libwordstat.so"
    run(["c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden", "-O2",
         f"-I{INCLUDE}", f"-Wl,--version-script={INCLUDE / 'ferrule.map'}",
         str(ROOT / "examples" / "cpp_plugin" / "wordstat.cpp"), "-o", str(wordstat)])
    return {"greeter": built.greeter, "calc": calc, "wordstat": wordstat}


def statuses(report: Report) -> dict[str, str]:
    return {c.id: c.status for c in report.checks}


def check(report: Report, check_id: str) -> Any:
    found = [c for c in report.checks if c.id == check_id]
    assert found, f"no check {check_id} in {[c.id for c in report.checks]}"
    return found[0]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferrule", "validate", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


# -- good plugins pass


@pytest.mark.parametrize("name", ["greeter", "calc", "wordstat"])
def test_the_examples_pass_the_highest_level_without_a_warning(examples: dict[str, Path], name: str) -> None:
    report = validate(str(examples[name]), level=5, seed=1)
    assert report.passed and report.counts()["warn"] == 0, report.text()
    ids = statuses(report)
    # Every kind of check ran, and every function was called.
    with ferrule.load(examples[name]) as plugin:
        names = list(plugin.functions)
    for fn in names:
        assert ids[f"function.{fn}"] == "pass" and ids[f"leaks.function.{fn}"] == "pass"
    for group in ("file.", "load", "descriptor.", "threads", "lifecycle.load-close", "lifecycle.shutdown"):
        assert any(i.startswith(group) for i in ids), (group, ids)


def test_the_interface_example_passes_with_its_declarations(built: Built) -> None:
    pipeline = ROOT / "examples" / "pipeline"
    result = cli(str(ROOT / "target" / "release" / "libtextkit.so"), "--level", "5", "--seed", "2", "--json",
                 "--interfaces", "pipeline_api", "--strict", cwd=pipeline)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    ids = {c["id"]: c["status"] for c in report["checks"]}
    offers = [i for i in ids if i.startswith("interface.")]
    assert offers and all(ids[i] == "pass" for i in offers)
    assert any(i.startswith("lifecycle.instances.") for i in ids)
    assert all(ids[i] == "pass" for i in ids if i.endswith(".fingerprint"))


def test_every_level_adds_its_checks(examples: dict[str, Path]) -> None:
    greeter = str(examples["greeter"])
    groups = {}
    for level in range(1, 6):
        report = validate(greeter, level=level, seed=1)
        assert report.passed, report.text()
        groups[level] = {c.id.split(".")[0] for c in report.checks}
        calls = check(report, "function.add").message if level >= 2 else ""
        if level >= 2:
            assert calls.startswith(f"{report.repeats} returned")
    assert groups[1] == {"file", "load", "descriptor", "lifecycle"}
    assert groups[2] - groups[1] == {"function"}
    assert groups[4] - groups[3] == {"threads"}
    assert groups[5] - groups[4] == {"leaks"}


# -- each flaw is found


@pytest.mark.parametrize("flaw, check_id, status, message", [
    ("THREAD_LEAK", "lifecycle.load-close", "fail", "more threads ran after 1000 load/close cycles than before"),
    ("FD_LEAK", "lifecycle.load-close", "fail", "more file descriptors were open after 1000 load/close cycles"),
    ("LEAK_STATE", "lifecycle.load-close", "fail", "the heap grew by"),
    ("LEAK_RESULT", "leaks.function.shout", "fail", "over 1000 calls"),
    ("WRITES_INPUT", "function.checksum", "fail", "wrote into its read-only parameter 'data' (buf[u8])"),
    ("WRITES_TEXT", "function.shout", "fail", "wrote into its read-only parameter 'text' (str): it is the caller's"),
    ("RACE", "threads.function.triple", "fail", "disagrees with serial calls, although it is flagged thread-safe"),
    ("DAEMON", "lifecycle.processes", "fail", "processes the plugin started were still running after close"),
    ("NO_MESSAGE", "function.ratio", "warn", "failed without a message: call host->set_error"),
    ("NO_DOCS", "descriptor.docs", "warn", "5 of 5 functions have no doc"),
    ("METADATA", "descriptor.metadata", "warn", "license 'MIT-ish' is not an SPDX expression"),
])
def test_each_flaw_fails_its_check(flawed: dict[str, Path], flaw: str, check_id: str, status: str,
                                   message: str) -> None:
    report = validate(str(flawed[flaw]), level=5, seed=4)
    found = check(report, check_id)
    assert found.status == status and message in found.message, found
    # ... and only that check: the other checks pass on the same plugin.
    others = {c.id: c.status for c in report.checks if c.id != check_id and c.status not in ("pass", "skip")}
    assert others == {}, report.text()
    assert report.passed == (status != "fail")


def test_the_flawless_build_passes(flawed: dict[str, Path]) -> None:
    report = validate(str(flawed["OK"]), level=5, seed=4)
    assert report.passed and report.counts()["warn"] == 0, report.text()


def test_a_metadata_warning_names_each_problem(flawed: dict[str, Path]) -> None:
    message = check(validate(str(flawed["METADATA"]), level=1, seed=1), "descriptor.metadata").message
    assert "the description is empty" in message
    assert "the id 'org.example.flawed' is the example one" in message


@pytest.mark.parametrize("in_process", [False, True], ids=["child", "in-process"])
def test_a_hang_fails_its_check_and_names_the_call(flawed: dict[str, Path], in_process: bool) -> None:
    args = [str(flawed["HANG"]), "--timeout", "1", "--seed", "5", "--json"] + (["--in-process"] if in_process else [])
    result = cli(*args)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    add = next(c for c in report["checks"] if c["id"] == "function.add")
    assert add["status"] == "fail" and "no answer within 1 s (--timeout) during call 1 of" in add["message"]
    assert "add(" in add["message"] and "--seed 5 " in add["message"] and add["message"].endswith("--only function.add")
    assert ("--in-process" in add["message"]) == in_process
    ids = {c["id"]: c["status"] for c in report["checks"]}
    if in_process:  # the call still runs: nothing after it
        assert "function.ratio" not in ids
    else:  # a new child carried on
        assert ids["function.ratio"] == "pass" and ids["lifecycle.shutdown"] == "pass"


def test_crashes_fail_their_checks_and_the_run_goes_on(built: Built) -> None:
    only = ["function.segfault", "function.abort", "function.exit", "function.spin", "function.add",
            "function.last_words", "lifecycle.shutdown"]
    report = validate(str(built.hostile), level=2, seed=1, timeout=2, only=tuple(only))
    got = {c.id: c for c in report.checks}
    assert "crashed the process (SIGSEGV) during call 1 of 1: segfault()" in got["function.segfault"].message
    assert "(SIGABRT)" in got["function.abort"].message
    assert "the process exited with status" in got["function.exit"].message
    assert "no answer within 2 s" in got["function.spin"].message
    assert "output: stderr: " in "\n".join(got["function.last_words"].details)  # what the plugin wrote last
    assert got["function.add"].status == "pass" and got["lifecycle.shutdown"].status == "pass"
    assert [c for c in report.checks if c.status == "fail"] == [got[i] for i in only[:-1] if i != "function.add"]


def test_a_panic_is_a_failure_that_says_to_return_an_error(built: Built) -> None:
    found = check(validate(str(built.kitchen), level=2, seed=1, only=("function.boom",)), "function.boom")
    assert found.status == "fail" and "panicked" in found.message and "return an error (Err(...)" in found.message


def test_a_result_the_host_refuses_is_a_failure(built: Built) -> None:
    found = check(validate(str(built.hostile), level=2, seed=1, only=("function.int_as_str",)), "function.int_as_str")
    assert found.status == "fail" and "ptr is not an address" in found.message


# -- interfaces


def test_an_implementation_of_another_layout_fails_with_loads_message(built: Built, tmp_path: Path) -> None:
    (tmp_path / "changed_api.py").write_text(textwrap.dedent("""\
        from typing import Protocol
        from ferrule import idl

        @idl.interface("org.ferrule.test.counter", revision=1)
        class Counter(Protocol):
            def add(self, n: idl.i32) -> idl.i64: ...
        """))
    result = cli(str(built.ifaces_rust), "--level", "2", "--json", "--interfaces", "changed_api", cwd=tmp_path)
    assert result.returncode == 1
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    fingerprints = [c for i, c in checks.items() if i.startswith("interfaces.org.ferrule.test.counter/1.")]
    assert fingerprints and all(c["status"] == "fail" for c in fingerprints)
    sys.path.insert(0, str(tmp_path))
    try:
        import changed_api
        with ferrule.load(built.ifaces_rust) as plugin, pytest.raises(ferrule.InterfaceMismatchError) as info:
            plugin.implementations(changed_api.Counter)
    finally:
        sys.path.remove(str(tmp_path))
    assert str(info.value) in [c["message"] for c in fingerprints]
    # Its methods are not called: their layout is not the declared one.
    assert not any(i.startswith("interface.org.ferrule.test.counter/1.") for i in checks)


def test_offers_without_declarations_are_skipped_with_the_option_to_give(built: Built) -> None:
    found = check(validate(str(built.ifaces_rust), level=1, seed=1), "interfaces")
    assert found.status == "skip" and "pass --interfaces MODULE" in found.message


# -- the corpus: load's failure is validate's


def load_failures() -> list[Any]:
    return [pytest.param(kind, id=kind.id) for kind in KINDS
            if kind.call is None and kind.in_process is not None and kind.in_process.error is not None
            and not kind.bug]


@pytest.mark.parametrize("kind", load_failures())
def test_a_corpus_case_fails_validate_with_the_message_load_gives(kind: Kind, corpus: dict[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = corpus[kind.id]
    if kind.bare_name:
        monkeypatch.chdir(path.parent)
        monkeypatch.delenv("FERRULE_PATH", raising=False)
    expected = in_process_error(path, kind)
    report = validate(str(target(kind, path)), level=1, seed=1, config=kind.config)
    load = check(report, "load")
    assert not report.passed
    assert load.status == "fail" and load.message == str(expected), (load.message, str(expected))
    assert f"raised {type(expected).__name__}" in load.details


@pytest.mark.parametrize("kind", [pytest.param(k, id=k.id) for k in KINDS
                                  if k.in_process is None and k.call is None])
def test_a_corpus_case_that_would_take_the_host_down_fails_in_the_child(kind: Kind, corpus: dict[str, Path]) -> None:
    report = validate(str(corpus[kind.id]), level=1, seed=1, timeout=3, config=kind.config)
    load = check(report, "load")
    assert load.status == "fail" and any(text in load.message for text in ("crashed", "exited", "no answer")), load


# -- output


def test_json_junit_and_exit_status(flawed: dict[str, Path], tmp_path: Path) -> None:
    junit = tmp_path / "report.xml"
    result = cli(str(flawed["RACE"]), "--level", "4", "--seed", "9", "--json", "--junit", str(junit))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["passed"] is False and report["seed"] == 9 and report["level"] == 4 and report["mode"] == "child"
    assert report["counts"]["fail"] == 1
    suite = ElementTree.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "1"
    assert int(suite.get("tests", "0")) == len(report["checks"])
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["threads.function.triple"]

    ok = cli(str(flawed["OK"]), "--level", "2")
    assert ok.returncode == 0 and "passed:" in ok.stdout and "(reproduce with --seed" in ok.stdout
    warned = cli(str(flawed["NO_DOCS"]), "--level", "1")
    assert warned.returncode == 0 and "WARN  descriptor.docs" in warned.stdout
    assert cli(str(flawed["NO_DOCS"]), "--level", "1", "--strict").returncode == 1
    assert cli(str(flawed["OK"]), "--level", "6").returncode == 2


def test_a_seed_reproduces_the_arguments(flawed: dict[str, Path]) -> None:
    def message(seed: int) -> str:
        report = validate(str(flawed["WRITES_INPUT"]), level=3, seed=seed, only=("function.checksum",))
        return str(check(report, "function.checksum").message)

    assert message(11) == message(11)
    assert len({message(s) for s in (11, 12, 13)}) > 1


def test_in_process_mode_finds_what_the_child_finds(flawed: dict[str, Path]) -> None:
    child = validate(str(flawed["RACE"]), level=4, seed=2)
    inside = validate(str(flawed["RACE"]), level=4, seed=2, in_process=True)
    assert inside.mode == "in-process"
    # Only the child looks for processes the plugin left: it is their subreaper.
    assert statuses(child) == {**statuses(inside), "lifecycle.processes": "pass"}


def test_a_non_static_shutdown_is_found_twice(tmp_path: Path) -> None:
    """The interposition trap end to end: the export binds the descriptor's
    shutdown to libc's shutdown(2), so the plugin's own never runs and its
    state leaks on every close. The file check names the cause, the
    lifecycle check its effect."""
    source = tmp_path / "shut.c"
    source.write_text(textwrap.dedent("""\
        #include <stdlib.h>
        #include "ferrule.h"
        static int32_t init(const ferrule_host *h, const char *c, size_t n, void **state) {
            (void)h; (void)c; (void)n; *state = malloc(64); return *state ? FERRULE_OK : FERRULE_ERROR;
        }
        void shutdown(const ferrule_host *h, void *state) { (void)h; free(state); }
        static const ferrule_function *const fns[] = {NULL};
        static const ferrule_plugin d = {FERRULE_PLUGIN_HEAD, "org.ferrule.tests.shut", "Shut", "1.0.0",
            "leaks through libc", "MIT", 0, 0, fns, init, shutdown, 0, 0, NULL};
        FERRULE_ENTRY { return &d; }
        """))
    path = tmp_path / "libshut.so"
    run(["cc", "-shared", "-fPIC", "-O2", "-std=c99", f"-I{INCLUDE}", str(source), "-o", str(path)])
    report = validate(str(path), level=5, seed=1)
    exports = check(report, "file.exports")
    assert exports.status == "fail" and "shutdown (libc.so.6)" in exports.message
    cycles = check(report, "lifecycle.load-close")
    assert cycles.status == "fail" and "the heap grew by" in cycles.message


def test_a_race_in_a_quick_function_is_found_too(tmp_path: Path) -> None:
    """A QUICK call keeps the GIL on the fast path, which would serialise the
    threads; the thread check runs in a debug host, whose path releases it."""
    path = compile_plugin(C_DIR / "flawed.c", tmp_path / "libquick_race.so", "-DFLAW_RACE",
                          "-DTRIPLE_FLAGS=FERRULE_FN_THREAD_SAFE|FERRULE_FN_QUICK", "-lpthread")
    with ferrule.load(path) as plugin:
        assert plugin.functions["triple"].quick
    assert check(validate(str(path), level=4, seed=4), "threads.function.triple").status == "fail"


def test_writes_to_the_channel_fail_the_check_not_the_validator(flawed: dict[str, Path]) -> None:
    result = cli(str(flawed["CHANNEL"]), "--level", "2", "--json")
    assert result.returncode == 1, result.stderr
    load = next(c for c in json.loads(result.stdout)["checks"] if c["id"] == "load")
    assert load["status"] == "fail" and "the plugin writes to a file descriptor it did not open" in load["message"]


def test_a_hang_at_exit_fails_lifecycle_exit(flawed: dict[str, Path]) -> None:
    report = validate(str(flawed["EXIT_HANG"]), level=1, seed=1, timeout=2)
    found = check(report, "lifecycle.exit")
    assert found.status == "fail" and "did not exit within 2 s after every check: it hangs at exit" in found.message


def test_plugin_text_cannot_break_the_reports(tmp_path: Path) -> None:
    """A panic message with control characters and invalid UTF-8 stays
    valid JUnit XML, and the text report shows the characters escaped."""
    from ferrule._validate.report import Check as ReportCheck
    report = Report("libx.so", 2, 1, 1, "child", [ReportCheck("function.f", "f", "fail", "bad \x01\x1b[2J\udcff end")])
    ElementTree.fromstring(report.junit().split("\n", 1)[1])
    assert "bad \\x01\\x1b[2J\\udcff end" in report.text()


def test_bad_options_are_refused(flawed: dict[str, Path]) -> None:
    for args, message in [(["--repeats", "-5"], "repeats must be 0 or more"),
                          (["--timeout", "0"], "timeout must be more than 0 seconds"),
                          (["--memory-limit", "-1"], "memory limit must be 0")]:
        result = cli(str(flawed["OK"]), *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    typo = cli(str(flawed["OK"]), "--only", "function.shuot", "--json")
    assert typo.returncode == 1
    only = next(c for c in json.loads(typo.stdout)["checks"] if c["id"] == "validator.only")
    assert "--only 'function.shuot' matched no check" in only["message"] and "function.shout" in only["details"]


def test_in_process_json_stays_json_when_the_plugin_prints(built: Built) -> None:
    result = cli(str(built.hostile), "--in-process", "--json", "--level", "2", "--only", "function.flood")
    report = json.loads(result.stdout)  # the plugin's lines went to stderr
    assert {c["id"] for c in report["checks"]} >= {"load", "function.flood"}
    assert "flood line" in result.stderr


def test_a_bare_name_is_checked_where_load_finds_it(flawed: dict[str, Path], tmp_path: Path) -> None:
    """In FERRULE_PATH, as load has it: LD_LIBRARY_PATH does not count."""
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "libbare.so").write_bytes(flawed["OK"].read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "FERRULE_PATH"}
    command = [sys.executable, "-m", "ferrule", "validate", "libbare.so", "--level", "1", "--json"]
    absent = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env=dict(env, LD_LIBRARY_PATH=str(tmp_path / "here")))
    checks = {c["id"]: c for c in json.loads(absent.stdout)["checks"]}
    assert checks["file.elf"]["status"] == "skip" and "no plugin libbare.so in FERRULE_PATH" in checks["file.elf"]["message"]
    assert checks["load"]["status"] == "fail" and absent.returncode != 0
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env=dict(env, FERRULE_PATH=str(tmp_path / "here")))
    elf = next(c for c in json.loads(result.stdout)["checks"] if c["id"] == "file.elf")
    assert elf["status"] == "pass" and elf["details"][0] == (f"libbare.so is {tmp_path / 'here' / 'libbare.so'}, found "
                                                             "through FERRULE_PATH: the file load opens")
    assert result.returncode == 0


def test_a_crash_in_shutdown_is_reported_once(flawed: dict[str, Path]) -> None:
    """The next child, which runs what is left, does not run the plugin's
    shutdown again at its exit (a second, misleading lifecycle.exit)."""
    report = validate(str(flawed["SHUTDOWN_CRASH"]), level=1, seed=1)
    found = check(report, "lifecycle.shutdown")
    assert found.status == "fail" and "the plugin crashed the process (SIGSEGV) during close" in found.message
    assert [c.id for c in report.checks if c.status == "fail"] == ["lifecycle.shutdown"], report.text()
