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


# -- the table of value types (src/ferrule/_abi/types.py) against the header,
# the struct module, numpy, the Rust SDK and the C accelerator


def test_type_table_matches_the_header_and_the_struct_module() -> None:
    import struct

    import numpy as np

    from ferrule._abi.types import BASE, CODES, TYPES

    members = {name for name, _ in ffi.typeof("ferrule_value").fields}
    assert [t.code for t in BASE] == list(range(len(BASE))) and CODES == tuple(t.name for t in BASE)
    for t in BASE:
        assert t.slot in members, t
        struct.calcsize("=" + t.wire)  # a valid format for the isolated wire
        if t.kind in ("int", "float"):
            assert ffi.sizeof(t.c) == t.size == struct.calcsize("=" + t.struct) == np.dtype(t.numpy).itemsize, t
            assert np.dtype(t.numpy).kind == {"int": "i" if t.signed else "u", "float": "f"}[t.kind], t
        if t.kind == "int":
            assert (t.min, t.max) == (np.iinfo(t.numpy).min, np.iinfo(t.numpy).max) and t.bits == 8 * t.size, t
    assert TYPES["bool"].size == struct.calcsize("?") == ffi.sizeof("_Bool")


def test_type_table_matches_the_rust_sdk(built: object) -> None:
    from ferrule._abi.types import ARRAYS, TYPES

    rust = json.loads(run([str(ROOT / "target" / "release" / "layout_probe"), "types"]).stdout)
    expected = {t.rust: {"abi": t.name, "size": t.size if t.kind in ("int", "float", "bool") else 0}
                for t in TYPES.values()}
    # Arrays: &[T] and &mut [T] (the table's spellings with T filled in); &[u8] is bytes.
    for a in ARRAYS.values():
        assert a.elem is not None
        spelling = a.rust.replace("T", a.elem.name)
        if spelling != TYPES["bytes"].rust:
            expected[spelling] = {"abi": a.name, "size": 0}
    assert rust == expected
