"""The parity table (tests/parity/cases.json) on the C host: every case that
applies is run through libferrule_host.so's C API with ctypes, as a C program
calls it (tagged ferrule_host_value arguments, C callbacks for host functions,
error codes and messages), and must give what the table says. The C API wraps
the Rust host, so the Rust host's reasons to skip a case hold here too."""

from __future__ import annotations

import ctypes as C
import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, Built, run

HEADER = ROOT / "host" / "capi" / "include" / "ferrule_host.h"
NONE, BOOL, I64, U64, F32, F64, STR, BYTES, BUF, MUTBUF, FN = range(11)
# array module format -> FERRULE_HOST_TYPE_* and the ctypes element
ELEMENTS = {"b": (2, C.c_int8), "h": (3, C.c_int16), "i": (4, C.c_int32), "l": (5, C.c_int64), "q": (5, C.c_int64),
            "B": (6, C.c_uint8), "H": (7, C.c_uint16), "I": (8, C.c_uint32), "L": (9, C.c_uint64),
            "Q": (9, C.c_uint64), "f": (10, C.c_float), "d": (11, C.c_double)}


class Value(C.Structure):
    pass


CALLBACK = C.CFUNCTYPE(C.c_int32, C.c_void_p, C.POINTER(Value), C.c_size_t, C.POINTER(Value), C.POINTER(C.c_void_p))


class _Span(C.Structure):
    _fields_ = [("ptr", C.c_void_p), ("len", C.c_size_t)]


class _Fn(C.Structure):
    _fields_ = [("call", CALLBACK), ("user_data", C.c_void_p)]


class _Union(C.Union):
    _fields_ = [("b", C.c_bool), ("i64", C.c_int64), ("u64", C.c_uint64), ("f32", C.c_float), ("f64", C.c_double),
                ("str", _Span), ("buf", _Span), ("fn", _Fn), ("reserved_", C.c_ubyte * 32)]


Value._fields_ = [("tag", C.c_uint32), ("elem", C.c_uint16), ("flags", C.c_uint16), ("v", _Union)]


class ParamInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("tag", C.c_uint32), ("name", C.c_char_p), ("type", C.c_char_p),
                ("scalar", C.c_uint32), ("reserved_", C.c_uint32)]


class FunctionInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("flags", C.c_uint32), ("name", C.c_char_p), ("signature", C.c_char_p),
                ("doc", C.c_char_p), ("param_count", C.c_size_t), ("result_tag", C.c_uint32),
                ("result_type", C.c_uint32)]


class Skip(Exception):
    """The case cannot be written as C values; the reason."""


def python_names() -> dict[int, str]:
    """Code -> the Python host's class, from the header's comments."""
    found = re.findall(r"FERRULE_HOST_E_\w+ = (\d+),\s+/\* (\w+)", HEADER.read_text())
    return {int(code): name for code, name in found}


class CHost:
    def __init__(self, lib: C.CDLL, path: Path):
        self.lib = lib
        lib.ferrule_host_error_message.restype = C.c_char_p
        lib.ferrule_host_error_plugin_message.restype = C.c_char_p
        lib.ferrule_host_error_new.restype = C.c_void_p
        lib.ferrule_host_error_new.argtypes = [C.c_int32, C.c_char_p]
        for f in ("ferrule_host_error_code", "ferrule_host_error_message", "ferrule_host_error_plugin_message",
                  "ferrule_host_error_free"):
            getattr(lib, f).argtypes = [C.c_void_p] + ([C.c_void_p] if "message" in f else [])
        lib.ferrule_host_call.argtypes = [C.c_void_p, C.c_size_t, C.POINTER(Value), C.c_size_t, C.POINTER(Value),
                                          C.POINTER(C.c_void_p)]
        lib.ferrule_host_call_by_name.argtypes = [C.c_void_p, C.c_char_p, C.POINTER(Value), C.c_size_t,
                                                  C.POINTER(Value), C.POINTER(C.c_void_p)]
        self.plugin = C.c_void_p()
        err = C.c_void_p()
        assert lib.ferrule_host_open(str(path).encode(), None, C.byref(self.plugin), C.byref(err)) == 0, self.error(err)
        self.names = python_names()

    def error(self, err: C.c_void_p) -> tuple[str, str, str | None]:
        lib = self.lib
        code = lib.ferrule_host_error_code(err)
        message = lib.ferrule_host_error_message(err, None).decode()
        plugin_message = lib.ferrule_host_error_plugin_message(err, None)
        lib.ferrule_host_error_free(err)
        return self.names.get(code, f"code {code}"), message, None if plugin_message is None else plugin_message.decode()

    def function(self, name: str) -> tuple[int, list[ParamInfo]] | None:
        index = C.c_size_t()
        if self.lib.ferrule_host_find_function(self.plugin, name.encode(), C.byref(index), None) != 0:
            return None
        info = FunctionInfo(struct_size=C.sizeof(FunctionInfo))
        assert self.lib.ferrule_host_get_function_info(self.plugin, index, C.byref(info), None) == 0
        params = []
        for i in range(info.param_count):
            p = ParamInfo(struct_size=C.sizeof(ParamInfo))
            assert self.lib.ferrule_host_get_param_info(self.plugin, index, C.c_size_t(i), C.byref(p), None) == 0
            params.append(p)
        return index.value, params

    def call(self, index: int, args: list[Value]) -> Any:
        """The result as Python values, or (class, message, plugin message)."""
        argv = (Value * max(len(args), 1))(*args)
        out = Value()
        err = C.c_void_p()
        code = self.lib.ferrule_host_call(self.plugin, index, argv, len(args), C.byref(out), C.byref(err))
        if code != 0:
            return ("raises", *self.error(err))
        try:
            return ("returns", decode(out))
        finally:
            self.lib.ferrule_host_value_free(C.byref(out))


def decode(v: Value) -> Any:
    if v.tag == NONE:
        return None
    if v.tag == BOOL:
        return bool(v.v.b)
    if v.tag == I64:
        return v.v.i64
    if v.tag == U64:
        return v.v.u64
    if v.tag == F32:
        return ("f32", v.v.f32)
    if v.tag == F64:
        return float(v.v.f64)
    if v.tag in (STR, BYTES):
        data = C.string_at(v.v.str.ptr, v.v.str.len) if v.v.str.len else b""
        return data.decode() if v.tag == STR else data
    raise AssertionError(f"a result tagged {v.tag}")


class Encoder:
    """A case's arguments as C values; keeps their memory for the call."""

    def __init__(self, host: CHost):
        self.host = host
        self.keep: list[Any] = []
        self.arrays: dict[int, Any] = {}

    def value(self, spec: Any, param: ParamInfo | None, at: int) -> Value:
        v = Value()
        if spec is None:
            raise Skip("a C value has no None to pass")
        if isinstance(spec, bool):
            v.tag, v.v.b = BOOL, spec
        elif isinstance(spec, int):
            if -(1 << 63) <= spec < (1 << 63):
                v.tag, v.v.i64 = I64, spec
            elif 0 <= spec < (1 << 64):
                v.tag, v.v.u64 = U64, spec
            else:
                raise Skip("an integer beyond 64 bits is no C integer")
        elif isinstance(spec, float):
            v.tag, v.v.f64 = F64, spec
        elif isinstance(spec, str):
            try:
                data = spec.encode()
            except UnicodeEncodeError:
                raise Skip("a lone surrogate is no UTF-8") from None
            buf = C.create_string_buffer(data)
            self.keep.append(buf)
            v.tag, v.v.str.ptr, v.v.str.len = STR, C.addressof(buf), len(data)
        elif "float" in spec:
            v.tag, v.v.f64 = F64, float(spec["float"])
        elif "bytes" in spec:
            data = bytes.fromhex(spec["bytes"])
            buf = C.create_string_buffer(data, max(len(data), 1))
            self.keep.append(buf)
            v.tag, v.v.str.ptr, v.v.str.len = BYTES, C.addressof(buf), len(data)
        elif "array" in spec:
            if any(k in spec for k in ("step", "readonly", "misaligned")):
                raise Skip("a C array is contiguous, aligned and as writable as it is passed")
            code, ctype = ELEMENTS[spec["array"]]
            values = spec["values"]
            made = (ctype * max(len(values), 1))(*[float(x) if ctype in (C.c_float, C.c_double) else x
                                                   for x in values])
            self.keep.append(made)
            self.arrays[at] = (made, len(values))
            writable = param is not None and param.tag == MUTBUF
            v.tag, v.elem = (MUTBUF if writable else BUF), code
            v.v.buf.ptr, v.v.buf.len = C.addressof(made), len(values)
        elif "hostfn" in spec:
            fn = self.host_function(spec["hostfn"])
            self.keep.append(fn)
            v.tag = FN
            v.v.fn.call = fn
        else:
            raise Skip(f"{next(iter(spec))} values are not functions' values")
        return v

    def host_function(self, name: str) -> Any:
        host = self.host

        def result_of(out: Any, value: Any) -> None:
            r = out[0]
            if value is None:
                r.tag = NONE
            elif isinstance(value, bool):
                r.tag, r.v.b = BOOL, value
            elif isinstance(value, int):
                r.tag, r.v.i64 = I64, value
            elif isinstance(value, float):
                r.tag, r.v.f64 = F64, value
            elif isinstance(value, (str, bytes)):
                data = value.encode() if isinstance(value, str) else value
                buf = C.create_string_buffer(data, max(len(data), 1))
                self.keep.append(buf)  # copied when the callback returns
                r.tag, r.v.str.ptr, r.v.str.len = (STR if isinstance(value, str) else BYTES), C.addressof(buf), len(data)

        def reenter(fn: str, args: list[Value]) -> Any:
            argv = (Value * max(len(args), 1))(*args)
            out, err = Value(), C.c_void_p()
            code = host.lib.ferrule_host_call_by_name(host.plugin, fn.encode(), argv, len(args), C.byref(out),
                                                      C.byref(err))
            if code != 0:
                return ("raises", *host.error(err))
            try:
                return decode(out)
            finally:
                host.lib.ferrule_host_value_free(C.byref(out))

        def i64(x: int) -> Value:
            v = Value()
            v.tag, v.v.i64 = I64, x
            return v

        def body(args: list[Any], error: Any) -> Any:
            if name == "double":
                return args[0] * 2
            if name == "raise":
                error[0] = host.lib.ferrule_host_error_new(19, b"the host function failed")  # FERRULE_HOST_E_VALUE
                raise _Failed(19)
            if name == "text":
                return "no"
            if name == "upper":
                return args[0].upper()
            if name == "five":
                return 5
            if name == "multiply":
                return float(args[0]) * float(args[1])
            if name == "int_product":
                return int(float(args[0]) * float(args[1]))
            if name in ("same", "none"):
                return args[0] if name == "same" else None
            if name == "reverse":
                return bytes(reversed(args[0]))
            if name == "add_twenty":
                return reenter("add", [i64(20), i64(args[0])])
            if name == "echo":
                return reenter("echo_str", [self.value(args[0], None, -1)])
            if name == "fail_inside":
                got = reenter("fail", [self.value("inner", None, -1)])
                assert got[0] == "raises" and got[1] == "PluginCallError" and "inner" in got[2], got
                return 0
            if name == "add_inside":
                return reenter("add", [i64(1), i64(1)])
            raise AssertionError(name)

        def callback(_user: Any, args: Any, count: int, out: Any, error: Any) -> int:
            try:
                result_of(out, body([decode(args[i]) for i in range(count)], error))
                return 0
            except _Failed as failed:
                return failed.code

        if name in ("too_big", "close", "apply_double"):
            raise Skip({"too_big": "too_big returns 2**64, which no C integer holds",
                        "close": "a C host function must not close its plugin (ferrule_host.h)",
                        "apply_double": "a C host function passing a host function back is not written here"}[name])
        return CALLBACK(callback)


class _Failed(Exception):
    def __init__(self, code: int):
        self.code = code


def same(got: Any, want: Any) -> bool:
    if isinstance(want, dict) and "float" in want:
        want = float(want["float"])
    if isinstance(want, dict) and "bytes" in want:
        want = bytes.fromhex(want["bytes"])
    if isinstance(got, tuple) and got[0] == "f32":
        return isinstance(want, float) and (C.c_float(want).value == got[1] or (want != want and got[1] != got[1]))
    if isinstance(got, float) and isinstance(want, float):
        return (got != got and want != want) or (got == want and str(got)[0] == str(want)[0])
    return type(got) is type(want) and got == want


def run_case(host: CHost, case: dict[str, Any], target: str) -> str | None:
    """None when the case passed; raises Skip; otherwise what went wrong."""
    found = host.function(case["call"])
    if found is None:
        raise Skip(f"the path has no {case['call']}")
    index, params = found
    enc = Encoder(host)
    args = [enc.value(a, params[i] if i < len(params) else None, i) for i, a in enumerate(case["args"])]
    got = host.call(index, args)
    expect = case["expect"]
    name = case["call"]
    if "raises" in expect:
        plugin_message = expect.get("plugin_message", "")
        message = expect["message"].format(name=name, target=target, plugin_message=plugin_message)
        want = ("raises", expect["raises"], message)
        # (NULL where the Python host has "": a failure the host found, with no plugin message)
        ok = got[:3] == want and ("plugin_message" not in expect or (got[3] or "") == plugin_message)
        return None if ok else f"got {got}, expected {want}"
    if got[0] != "returns" or not same(got[1], expect["returns"]):
        return f"got {got}, expected {expect['returns']!r}"
    for i, spec in expect.get("after", {}).items():
        made, n = enc.arrays[int(i)]
        values = list(made)[:n]
        if [float(x) for x in values] != [float(x) for x in spec["values"]]:
            return f"argument {i} holds {values}, expected {spec['values']}"
    return None


def test_the_parity_table_on_the_c_host(built: Built) -> None:
    run(["cargo", "build", "--release", "--quiet", "-p", "ferrule-host-capi"], cwd=ROOT)
    lib = C.CDLL(str(built.rust / "libferrule_host.so"))
    host = CHost(lib, built.parity)
    table = json.loads((ROOT / "tests" / "parity" / "cases.json").read_text())
    target = "plugin 'org.ferrule.tests.parity'"
    passed, failed, skipped = 0, [], {}
    for case in table["cases"]:
        hosts = case.get("hosts")
        reason = None
        if hosts is not None and "rust" not in hosts and "c" not in hosts:
            reason = "a case for other hosts"
        reason = reason or case.get("not_on", {}).get("c-host") or case.get("not_on", {}).get("rust")
        try:
            if reason is not None:
                raise Skip(reason)
            outcome = run_case(host, case, target)
        except Skip as why:
            skipped.setdefault(str(why), []).append(case["id"])
            continue
        if outcome is None:
            passed += 1
        else:
            failed.append((case["id"], outcome))
    print(f"parity on the C host: {passed} passed; skipped: "
          + "; ".join(f"{len(ids)} {why[:60]}" for why, ids in skipped.items()))
    assert failed == [], "\n".join(f"{i}: {o}" for i, o in failed)
    assert passed >= 130
    allowed = ("a case for other hosts", "Rust has no None", "a Rust str cannot hold", "an integer beyond",
               "too_big returns", "the path has no ", "its message names Python's", "a C value has no None",
               "a lone surrogate", "a C array is contiguous", "a C host function")
    assert all(why.startswith(allowed) for why in skipped), list(skipped)
