"""C++ plugins, built for real with g++ and (when installed) clang++: the
entry point's C linkage and the error when it is lost, the version script
that exports the entry alone, ferrule::guard at the ABI boundary, and the
example plugin (examples/cpp_plugin)."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import ferrule
from ferrule._loader.elf import defined_symbols

from .conftest import CC, INCLUDE, ROOT, exported, run

CPP_DIR = ROOT / "tests" / "plugins" / "cpp"
EXAMPLE = ROOT / "examples" / "cpp_plugin" / "wordstat.cpp"
VERSION_SCRIPT = INCLUDE / "ferrule.map"
# The example README's build command, without the version script.
FLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden", f"-I{INCLUDE}"]
WITH_MAP = [f"-Wl,--version-script={VERSION_SCRIPT}"]
CLANG_MISSING = "clang++ is not installed (apt-get install clang); g++ builds the same sources"
COMPILERS = [
    pytest.param("g++", id="g++"),
    pytest.param("clang++", id="clang++", marks=pytest.mark.skipif(shutil.which("clang++") is None, reason=CLANG_MISSING)),
]
WORDSTAT_LOGGER = "ferrule.plugin.org.ferrule.examples.wordstat"
THROWS_LOGGER = "ferrule.plugin.org.ferrule.tests.throws"


class CppBuilds:
    """One compiler's builds of the C++ plugins, each made on first use."""

    def __init__(self, compiler: str, out: Path):
        self.compiler = compiler
        self._out = out
        self._built: dict[tuple[str, bool, tuple[str, ...]], Path] = {}

    def plugin(self, name: str, *, version_script: bool = True, defines: tuple[str, ...] = ()) -> Path:
        """The library built from examples/cpp_plugin/wordstat.cpp ("wordstat")
        or tests/plugins/cpp/NAME.cpp, with the example's flags."""
        key = (name, version_script, defines)
        if key not in self._built:
            source = EXAMPLE if name == "wordstat" else CPP_DIR / f"{name}.cpp"
            suffix = "".join(f"_{d.lower()}" for d in defines) + ("" if version_script else "_no_map")
            output = self._out / f"lib{name}{suffix}.so"
            run([self.compiler, *FLAGS, *(f"-D{d}" for d in defines), str(source), "-o", str(output),
                 *(WITH_MAP if version_script else [])])
            self._built[key] = output
        return self._built[key]


@pytest.fixture(scope="module", params=COMPILERS)
def cpp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CppBuilds:
    compiler = str(request.param)
    if shutil.which(compiler) is None:
        pytest.fail(f"{compiler} is required to build the C++ test plugins")
    return CppBuilds(compiler, tmp_path_factory.mktemp(f"cpp-{compiler}"))


# -- the header alone, in every standard

HEADER_USE = r"""
#include "ferrule.h"
static int32_t f(const ferrule_host *h, void *s, const ferrule_value *a, ferrule_value *r) {
    (void)s;
    return ferrule::guard(h, [&] { r->i64 = a[0].i64; });
}
static int32_t g(const ferrule_host *h, void *s, const ferrule_value *a, ferrule_value *r) {
    (void)s;
    return ferrule::guard(h, [&]() -> int32_t {
        if (a[0].i64 < 0) return ferrule_fail(h, "negative");
        return ferrule_return_copy(h, r, "abc", 3);
    });
}
static void down(const ferrule_host *h, void *s) { ferrule::guard_cleanup(h, [&] { (void)s; }); }
static const ferrule_function ff = FERRULE_FUNCTION("f", "(x: i64) -> i64", "doc", 0, f);
static const ferrule_function fg = FERRULE_FUNCTION("g", "(x: i64) -> str", "doc", 0, g);
static const ferrule_function *const fs[] = {&ff, &fg};
static const ferrule_plugin d = {FERRULE_PLUGIN_HEAD, "a.b", "n", "1", NULL, NULL, 2, 0, fs, NULL, down, 0, 0, NULL};
FERRULE_ENTRY { return &d; }
"""
HEADER_USE_C = (
    '#include "ferrule.h"\n'
    'static const ferrule_plugin d = {FERRULE_PLUGIN_HEAD, "a.b", "n", "1", NULL, NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL};\n'
    "FERRULE_ENTRY { return &d; }\n"
)
CXX_STANDARDS = ["c++11", "c++14", "c++17", "c++20"]


@pytest.mark.parametrize("std", [*CXX_STANDARDS, "c++17 -fno-exceptions"])
@pytest.mark.parametrize("compiler", COMPILERS)
def test_header_compiles_cleanly_as_cpp_and_the_entry_has_c_linkage(tmp_path: Path, compiler: str, std: str) -> None:
    # An object file, not -fsyntax-only, so the guards' templates are
    # instantiated; its symbol table shows the entry point's linkage.
    source, obj = tmp_path / "use.cpp", tmp_path / "use.o"
    source.write_text(HEADER_USE)
    run([compiler, *(f"-std={std}".split()), "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{INCLUDE}", "-c",
         str(source), "-o", str(obj)])
    symbols = run(["nm", "--defined-only", str(obj)]).stdout.split()
    assert "ferrule_entry_v1" in symbols and not [s for s in symbols if "ferrule_entry" in s and s.startswith("_Z")]


@pytest.mark.parametrize("std", ["c99", "c11"])
@pytest.mark.parametrize("compiler", [CC, "clang"])
def test_header_compiles_cleanly_as_c(tmp_path: Path, compiler: str, std: str) -> None:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    source = tmp_path / "use.c"
    source.write_text(HEADER_USE_C)
    run([compiler, f"-std={std}", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{INCLUDE}", "-c", str(source),
         "-o", str(tmp_path / "use.o")])


# -- linkage: an entry point without extern "C" is named in the error


def test_an_entry_without_c_linkage_is_named_with_what_to_do(cpp: CppBuilds) -> None:
    path = cpp.plugin("mangled", version_script=False)
    assert exported(path) == ["_Z16ferrule_entry_v1v"]  # what the test is about
    with pytest.raises(ferrule.NoEntryPointError) as info:
        ferrule.load(path)
    assert str(info.value) == (
        f"{path} exports the entry point only with C++ linkage, as the mangled symbol _Z16ferrule_entry_v1v, "
        "expected the C symbol ferrule_entry_v1: give it C linkage, by defining it with FERRULE_ENTRY from a "
        'current ferrule.h or declaring it extern "C"'
    )


def test_an_entry_in_a_namespace_is_named_with_its_qualified_name(cpp: CppBuilds) -> None:
    path = cpp.plugin("mangled", version_script=False, defines=("IN_NAMESPACE",))
    assert exported(path) == ["_ZN8myplugin16ferrule_entry_v1Ev"]
    with pytest.raises(ferrule.NoEntryPointError, match=(
        r"exports the entry point only with C\+\+ linkage, as the mangled symbol _ZN8myplugin16ferrule_entry_v1Ev "
        r"\(myplugin::ferrule_entry_v1\), expected the C symbol ferrule_entry_v1: give it C linkage"
    )):
        ferrule.load(path)


@pytest.mark.parametrize(("version_script", "defines"), [(False, ("HIDDEN",)), (True, ())],
                         ids=["hidden-visibility", "version-script"])
def test_an_entry_without_c_linkage_that_is_not_exported_is_named_too(
        cpp: CppBuilds, version_script: bool, defines: tuple[str, ...]) -> None:
    # Hidden by -fvisibility=hidden, or made local by the version script
    # (which exports only the C name): the full symbol table still has it.
    path = cpp.plugin("mangled", version_script=version_script, defines=defines)
    assert exported(path) == []
    with pytest.raises(ferrule.NoEntryPointError) as info:
        ferrule.load(path)
    assert str(info.value) == (
        f"{path} defines the entry point only with C++ linkage, as the mangled symbol _Z16ferrule_entry_v1v, "
        "and does not export it, expected the exported C symbol ferrule_entry_v1: define it with FERRULE_ENTRY "
        'from a current ferrule.h (or declare it extern "C" with default visibility)'
    )


def test_the_elf_reader_lists_what_nm_lists(cpp: CppBuilds) -> None:
    for path in (cpp.plugin("wordstat"), cpp.plugin("wordstat", version_script=False), cpp.plugin("mangled")):
        assert sorted(defined_symbols(str(path))) == exported(path)
        out = run(["nm", "--defined-only", str(path)]).stdout
        assert sorted(defined_symbols(str(path), exported=False)) == sorted(
            line.split()[-1] for line in out.splitlines() if line.strip())


# -- visibility: the version script


@pytest.mark.parametrize("name", ["wordstat", "throws"])
def test_the_version_script_exports_the_entry_alone(cpp: CppBuilds, name: str) -> None:
    assert exported(cpp.plugin(name)) == ["ferrule_entry_v1"]
    # Without it, -fvisibility=hidden leaves the standard library's inline
    # and template code (std::string's, std::map's) exported.
    without = exported(cpp.plugin(name, version_script=False))
    assert "ferrule_entry_v1" in without
    extra = [symbol for symbol in without if symbol != "ferrule_entry_v1"]
    assert extra and all(symbol.startswith("_Z") for symbol in extra), without
    assert any("basic_string" in symbol for symbol in extra), extra


# -- exceptions at the boundary


@pytest.mark.parametrize(("kind", "message"), [
    ("std", "index 9 is out of range (size 3)"),
    ("bad_alloc", "out of memory (std::bad_alloc): an allocation in the plugin failed"),
    ("int", "unknown C++ exception (not derived from std::exception): throw a std::exception subclass so that its "
            "what() becomes the error message"),
    ("empty", "a C++ exception with an empty what()"),
    ("status", "failed by status, no exception"),
])
def test_guard_turns_an_exception_into_a_call_error(cpp: CppBuilds, kind: str, message: str) -> None:
    with ferrule.load(cpp.plugin("throws")) as plugin:
        with pytest.raises(ferrule.PluginCallError) as info:
            plugin.guarded(kind)
        assert type(info.value) is ferrule.PluginCallError
        assert info.value.plugin_message == message
        assert plugin.guarded("ok") == 7  # the instance goes on


def test_guard_turns_an_exception_in_init_into_an_init_error(cpp: CppBuilds) -> None:
    with pytest.raises(ferrule.PluginInitError) as info:
        ferrule.load(cpp.plugin("throws"), config="throw in init")
    assert info.value.plugin_message == "config 'throw in init' is refused"


def test_guard_cleanup_logs_an_exception_in_shutdown(cpp: CppBuilds, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=THROWS_LOGGER)
    ferrule.load(cpp.plugin("throws"), config="throw in shutdown").close()
    ferrule.load(cpp.plugin("throws"), config="throw long in shutdown").close()
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == THROWS_LOGGER]
    prefix = "exception escaped shutdown or destroy, ignored: "
    assert records[:3] == [
        (logging.INFO, "throws: shutdown"),
        (logging.ERROR, prefix + "flushing failed in shutdown"),
        (logging.INFO, "throws: shutdown"),
    ]
    # A long message is cut to fit one log line of 512 bytes, between characters:
    # 464 bytes are left after the prefix, 154 whole 3-byte characters.
    level, cut = records[3]
    assert level == logging.ERROR and len(records) == 4
    assert cut == prefix + "\u20ac" * 154 and len(cut.encode()) == 510


def test_an_exception_without_the_guard_aborts_the_whole_process(cpp: CppBuilds) -> None:
    # What docs/cpp.md promises happens in process: std::terminate, SIGABRT.
    code = "import ferrule, sys\nferrule.load(sys.argv[1]).unguarded()\nprint('survived')\n"
    proc = subprocess.run([sys.executable, "-c", code, str(cpp.plugin("throws"))], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    assert "survived" not in proc.stdout
    assert "terminate called after throwing an instance of 'std::runtime_error'" in proc.stderr


def test_an_exception_without_the_guard_kills_only_the_isolated_child(cpp: CppBuilds) -> None:
    with ferrule.load(cpp.plugin("throws"), isolated=True, timeout=30) as plugin:
        with pytest.raises(ferrule.PluginCrashedError) as info:
            plugin.unguarded()
        assert info.value.signal == signal.SIGABRT
        assert "crashed during unguarded(): killed by SIGABRT (signal 6)" in str(info.value)
        assert "escaped without a guard" in str(info.value)  # std::terminate's last words, from the child's stderr
        assert plugin.guarded("ok") == 7  # a new child


# -- the example plugin


def test_example_counts_words_and_returns_strings(cpp: CppBuilds, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=WORDSTAT_LOGGER)
    with ferrule.load(cpp.plugin("wordstat"), config="the a of") as stats:
        assert stats.add("The cat and the hat; a Cat, of course. Café café!") == 7
        assert (stats.count("cat"), stats.count("CAT"), stats.count("the"), stats.count("café")) == (2, 2, 0, 2)
        assert stats.distinct() == 5
        assert stats.top(3) == "café 2\ncat 2\nand 1\n"
        assert stats.top(0) == ""
        assert stats.load("dog 5\nhat 2\n") == 2
        assert (stats.count("dog"), stats.count("hat")) == (5, 3)
        listing = stats.top(100)
        assert listing.splitlines() == ["dog 5", "hat 3", "café 2", "cat 2", "and 1", "course 1"]
    # shutdown deleted the state: its destructor logged, once.
    messages = [r.getMessage() for r in caplog.records if r.name == WORDSTAT_LOGGER]
    assert messages == ["wordstat ready, 3 stopwords", "wordstat: state destroyed, 6 distinct words"]


def test_example_turns_its_exceptions_into_errors(cpp: CppBuilds) -> None:
    with ferrule.load(cpp.plugin("wordstat")) as stats:
        stats.add("dog")
        with pytest.raises(ferrule.PluginCallError) as info:
            stats.load("dog 1\nbad line\n")
        assert str(info.value) == (
            "plugin 'org.ferrule.examples.wordstat' function 'load' failed: line 2 'bad line': expected "
            "'word count', a word, a space and a decimal count"
        )
        # std::stoull's own std::out_of_range, rethrown with the line.
        with pytest.raises(ferrule.PluginCallError, match=r"^.*: line 1 'dog 99999999999999999999': the count does "
                           r"not fit in 64 bits$"):
            stats.load("dog 99999999999999999999")
        assert stats.count("dog") == 1  # a failed load counts nothing
    with pytest.raises(ferrule.PluginInitError) as init:
        ferrule.load(cpp.plugin("wordstat"), config="the a,b")
    assert init.value.plugin_message == "stopword 'a,b' is not a word: give the stopwords as words separated by spaces"


def test_example_readme_builds_what_the_tests_build() -> None:
    readme = (ROOT / "examples" / "cpp_plugin" / "README.md").read_text()
    for flag in FLAGS[:-1] + ["-Wl,--version-script="]:
        assert flag in readme, flag


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize(("returns", "compiles"), [("void", True), ("int32_t", True), ("int", True),
                                                   ("size_t", False), ("int64_t", False), ("bool", False)])
def test_guard_takes_only_a_status_from_its_body(tmp_path: Path, compiler: str, returns: str, compiles: bool) -> None:
    # A wider integer would be truncated into a status: a count of 1 << 32 would read as FERRULE_OK.
    value = "" if returns == "void" else f"static_cast<{returns}>(0)"
    source = tmp_path / "body.cpp"
    source.write_text('#include "ferrule.h"\n'
                      f"int32_t f(const ferrule_host *h) {{ return ferrule::guard(h, [&]() -> {returns} "
                      f"{{ return {value}; }}); }}\n")
    proc = subprocess.run([compiler, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}", "-c",
                           str(source), "-o", str(tmp_path / "body.o")], capture_output=True, text=True)
    assert (proc.returncode == 0) == compiles, proc.stderr
    if not compiles:
        assert "the body must return void (FERRULE_OK) or an int32_t status" in proc.stderr
