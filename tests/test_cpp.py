"""C++ plugins, built for real with g++ and (when installed) clang++: the
header compiles cleanly in every C++ standard and gives the entry point C
linkage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import CC, INCLUDE, run

CLANG_MISSING = "clang++ is not installed (apt-get install clang); g++ builds the same sources"
COMPILERS = [
    pytest.param("g++", id="g++"),
    pytest.param("clang++", id="clang++", marks=pytest.mark.skipif(shutil.which("clang++") is None, reason=CLANG_MISSING)),
]


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
