"""C++ plugins, built for real with g++ and (when installed) clang++: the
entry point's C linkage, and the error when it is lost."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ferrule
from ferrule._loader.elf import defined_symbols

from .conftest import CC, INCLUDE, ROOT, run

CPP_DIR = ROOT / "tests" / "plugins" / "cpp"
# A C++ plugin's build flags.
FLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden", f"-I{INCLUDE}"]
CLANG_MISSING = "clang++ is not installed (apt-get install clang); g++ builds the same sources"
COMPILERS = [
    pytest.param("g++", id="g++"),
    pytest.param("clang++", id="clang++", marks=pytest.mark.skipif(shutil.which("clang++") is None, reason=CLANG_MISSING)),
]


def exported(path: Path) -> list[str]:
    out = run(["nm", "-D", "--defined-only", str(path)]).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if line.strip())


class CppBuilds:
    """One compiler's builds of the C++ plugins, each made on first use."""

    def __init__(self, compiler: str, out: Path):
        self.compiler = compiler
        self._out = out
        self._built: dict[tuple[str, tuple[str, ...]], Path] = {}

    def plugin(self, name: str, *, defines: tuple[str, ...] = ()) -> Path:
        """The library built from tests/plugins/cpp/NAME.cpp."""
        key = (name, defines)
        if key not in self._built:
            source = CPP_DIR / f"{name}.cpp"
            suffix = "".join(f"_{d.lower()}" for d in defines)
            output = self._out / f"lib{name}{suffix}.so"
            run([self.compiler, *FLAGS, *(f"-D{d}" for d in defines), str(source), "-o", str(output)])
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
    if (a[0].i64 < 0) return ferrule_fail(h, "negative");
    return ferrule_return_copy(h, r, "abc", 3);
}
static const ferrule_function ff = FERRULE_FUNCTION("f", "(x: i64) -> str", "doc", 0, f);
static const ferrule_function *const fs[] = {&ff};
static const ferrule_plugin d = {FERRULE_PLUGIN_HEAD, "a.b", "n", "1", NULL, NULL, 1, 0, fs, NULL, NULL, 0, 0, NULL};
FERRULE_ENTRY { return &d; }
"""
HEADER_USE_C = (
    '#include "ferrule.h"\n'
    'static const ferrule_plugin d = {FERRULE_PLUGIN_HEAD, "a.b", "n", "1", NULL, NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL};\n'
    "FERRULE_ENTRY { return &d; }\n"
)
CXX_STANDARDS = ["c++11", "c++14", "c++17", "c++20"]


@pytest.mark.parametrize("std", CXX_STANDARDS)
@pytest.mark.parametrize("compiler", COMPILERS)
def test_header_compiles_cleanly_as_cpp_and_the_entry_has_c_linkage(tmp_path: Path, compiler: str, std: str) -> None:
    # Its object file's symbol table shows the entry point's linkage.
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
    path = cpp.plugin("mangled")
    assert exported(path) == ["_Z16ferrule_entry_v1v"]  # what the test is about
    with pytest.raises(ferrule.NoEntryPointError) as info:
        ferrule.load(path)
    assert str(info.value) == (
        f"{path} exports the entry point only with C++ linkage, as the mangled symbol _Z16ferrule_entry_v1v, "
        "expected the C symbol ferrule_entry_v1: give it C linkage, by defining it with FERRULE_ENTRY from a "
        'current ferrule.h or declaring it extern "C"'
    )


def test_an_entry_in_a_namespace_is_named_with_its_qualified_name(cpp: CppBuilds) -> None:
    path = cpp.plugin("mangled", defines=("IN_NAMESPACE",))
    assert exported(path) == ["_ZN8myplugin16ferrule_entry_v1Ev"]
    with pytest.raises(ferrule.NoEntryPointError, match=(
        r"exports the entry point only with C\+\+ linkage, as the mangled symbol _ZN8myplugin16ferrule_entry_v1Ev "
        r"\(myplugin::ferrule_entry_v1\), expected the C symbol ferrule_entry_v1: give it C linkage"
    )):
        ferrule.load(path)


def test_an_entry_without_c_linkage_that_is_not_exported_is_named_too(cpp: CppBuilds) -> None:
    # Hidden by -fvisibility=hidden: the full symbol table still has it.
    path = cpp.plugin("mangled", defines=("HIDDEN",))
    assert exported(path) == []
    with pytest.raises(ferrule.NoEntryPointError) as info:
        ferrule.load(path)
    assert str(info.value) == (
        f"{path} defines the entry point only with C++ linkage, as the mangled symbol _Z16ferrule_entry_v1v, "
        "and does not export it, expected the exported C symbol ferrule_entry_v1: define it with FERRULE_ENTRY "
        'from a current ferrule.h (or declare it extern "C" with default visibility)'
    )


def test_the_elf_reader_lists_what_nm_lists(cpp: CppBuilds) -> None:
    for path in (cpp.plugin("mangled"), cpp.plugin("mangled", defines=("HIDDEN",))):
        assert sorted(defined_symbols(str(path))) == exported(path)
        out = run(["nm", "--defined-only", str(path)]).stdout
        assert sorted(defined_symbols(str(path), exported=False)) == sorted(
            line.split()[-1] for line in out.splitlines() if line.strip())
