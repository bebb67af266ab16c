"""The ABI has one source of truth (sdk/c/include/ferrule.h): the Python view
is generated from it, and the C and Rust compilers must lay every struct out
exactly as the Python host reads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ferrule
from ferrule._abi import cdef as _cdef
from ferrule._abi.ffi import ffi

from .conftest import CC, INCLUDE, ROOT, run

FIELDS = {
    "ferrule_bytes": ["ptr", "len", "release"],
    "ferrule_buf": ["ptr", "len"],
    "ferrule_value": ["i64", "u64", "f64", "f32", "bytes", "buf", "func"],
    "ferrule_host": ["struct_size", "abi_major", "abi_minor", "host_data", "log", "set_error", "alloc", "free",
                     "invoke", "query", "call", "release"],
    "ferrule_function": ["struct_size", "flags", "name", "signature", "doc", "call"],
    "ferrule_plugin": ["magic", "struct_size", "abi_major", "abi_minor", "id", "name", "version", "description",
                       "license", "function_count", "flags", "functions", "init", "shutdown", "interface_count",
                       "reserved", "interfaces"],
    "ferrule_interface": ["struct_size", "flags", "id", "revision", "method_count", "fingerprint", "layout", "name",
                          "doc", "methods", "create", "destroy"],
}
CONSTANTS = ["ABI_MAJOR", "ABI_MINOR", "MAGIC", "OK", "ERROR", "PANIC", "LOG_TRACE", "LOG_DEBUG", "LOG_INFO",
             "LOG_WARN", "LOG_ERROR", "FN_THREAD_SAFE", "FN_QUICK",
             "IFACE_THREAD_SAFE"]


def python_view() -> dict[str, object]:
    structs = {
        name: {
            "size": ffi.sizeof(name),
            "align": ffi.alignof(name),
            "fields": {field: ffi.offsetof(name, field) for field in fields},
        }
        for name, fields in FIELDS.items()
    }
    constants = {f"FERRULE_{c}": getattr(_cdef, c) for c in CONSTANTS}
    return {"structs": structs, "constants": constants}


def test_generated_cdef_is_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_abi.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_python_view_covers_every_field() -> None:
    # A field added to the header but not to FIELDS would escape the probes.
    for name, fields in FIELDS.items():
        assert [f for f, _ in ffi.typeof(name).fields] == fields


def test_c_layout_matches(tmp_path: Path) -> None:
    exe = tmp_path / "probe"
    run([CC, "-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{INCLUDE}",
         str(ROOT / "tests" / "plugins" / "c" / "layout_probe.c"), "-o", str(exe)])
    assert json.loads(run([str(exe)]).stdout) == python_view()


def test_rust_layout_matches(built: object) -> None:
    out = run([str(ROOT / "target" / "release" / "layout_probe")]).stdout
    assert json.loads(out) == python_view()


@pytest.mark.parametrize(
    ("compiler", "std"),
    [("cc", "c99"), ("cc", "c11"), ("c++", "c++11"), ("c++", "c++17")],
)
def test_header_compiles_cleanly(tmp_path: Path, compiler: str, std: str) -> None:
    # Use every helper so unused-function or conversion warnings would show.
    source = tmp_path / ("use.c" if compiler == "cc" else "use.cpp")
    source.write_text(
        '#include "ferrule.h"\n'
        "static int32_t call(const ferrule_host *h, void *s, const ferrule_value *a, ferrule_value *r) {\n"
        "    (void)s; ferrule_log(h, FERRULE_LOG_INFO, \"x\");\n"
        "    if (ferrule_invoke(h, a[0].func, NULL, r) != FERRULE_OK) return FERRULE_ERROR;\n"
        "    return ferrule_return_copy(h, r, \"abc\", 3) == FERRULE_OK ? FERRULE_OK : ferrule_fail(h, \"no\");\n"
        "}\n"
        "static const ferrule_function f = FERRULE_FUNCTION(\"f\", \"(g: fn()) -> str\", \"doc\", 0, call);\n"
        "static const ferrule_function *const fs[] = {&f};\n"
        "static const ferrule_plugin d = {FERRULE_PLUGIN_HEAD, \"a.b\", \"n\", \"1\", NULL, NULL, 1, 0, fs, NULL, NULL, 0, 0, NULL};\n"
        "FERRULE_ENTRY { return &d; }\n"
    )
    run([compiler, f"-std={std}", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{INCLUDE}",
         "-fsyntax-only", str(source)])


def test_host_reports_its_abi() -> None:
    assert (ferrule.ABI_MAJOR, ferrule.ABI_MINOR) == (1, 2)
