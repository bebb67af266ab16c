"""ferrule.Library for any C library (src/ferrule/_loader/cdecl.py): C
declarations per library, structs by value and by pointer, out-parameters,
callbacks, calls through function pointers, variadic calls and owned
results, on real system libraries (libc, libm, zlib) and on a foreign
plugin standard written for the tests (tests/plugins/c/foreign_abi.c).
Each refusal has a test."""

from __future__ import annotations

import array
import gc
import logging
import platform
import zlib
from pathlib import Path

import numpy as np
import pytest

import ferrule
from ferrule._loader import cdecl

from .conftest import C_DIR, compile_plugin

LIBC_DECLS = """
typedef struct { int quot; int rem; } div_t;
div_t div(int numerator, int denominator);
void qsort(void *base, size_t nmemb, size_t size, int (*compar)(const void *, const void *));
int snprintf(char *str, size_t size, const char *format, ...);
char *strdup(const char *s);
void free(void *ptr);
size_t strlen(const char *s);
void *memset(void *s, int c, size_t n);
struct tm {
    int tm_sec; int tm_min; int tm_hour; int tm_mday; int tm_mon; int tm_year;
    int tm_wday; int tm_yday; int tm_isdst; long tm_gmtoff; const char *tm_zone;
};
typedef long time_t;
struct tm *gmtime_r(const time_t *timep, struct tm *result);
size_t strftime(char *s, size_t max, const char *format, const struct tm *tm);
"""

FX_DECLS = """
typedef struct fx_descriptor {
    unsigned long unique_id;
    const char *label;
    const char *name;
    unsigned long port_count;
    void *(*instantiate)(const struct fx_descriptor *descriptor, unsigned long sample_rate);
    void (*connect_port)(void *instance, unsigned long port, float *data);
    void (*run)(void *instance, unsigned long sample_count);
    void (*cleanup)(void *instance);
} fx_descriptor;
const fx_descriptor *fx_descriptor_at(unsigned long index);
void fx_set_logger(void (*log)(const char *message));
void fx_log(const char *message);
char *fx_describe(unsigned long index);
void fx_free(void *text);
int fx_frees(void);
int (*fx_adder(void))(int, int);
"""


@pytest.fixture(autouse=True, params=["c-path", "python-path"])
def call_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on both call paths: the C one (ccall.c), where a function's
    type allows it, and the Python one. Functions made in the test take it."""
    if request.param == "c-path" and cdecl._ccall is None:
        pytest.skip("the C path is not built here (FERRULE_PURE_PYTHON, or no compiler at install)")
    monkeypatch.setattr(cdecl, "C_PATH", request.param == "c-path")
    return str(request.param)


@pytest.fixture(scope="module")
def libc() -> ferrule.Library:
    lib = ferrule.Library("c")
    lib.cdef(LIBC_DECLS)
    return lib


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> ferrule.Library:
    path = compile_plugin(C_DIR / "foreign_abi.c", tmp_path_factory.mktemp("fx") / "libfx.so")
    return ferrule.Library(path, declarations=FX_DECLS)


# -- declarations


def test_each_library_declares_in_a_namespace_of_its_own() -> None:
    a, b = ferrule.Library("c"), ferrule.Library("m")
    a.cdef("struct config { int level; };")
    b.cdef("struct config { double ratio; const char *name; };")  # the same name, another layout: no collision
    assert a.declarations.sizeof("struct config") == 4
    assert b.declarations.new("struct config *", {"ratio": 0.5}).ratio == 0.5
    c = ferrule.Library("c")
    c.cdef("typedef struct { int x; } ferrule_buf;")  # ferrule's own type names are free for users
    assert c.declarations.new("ferrule_buf *", [7]).x == 7


def test_declarations_can_be_shared_between_libraries() -> None:
    shared = ferrule.Declarations("typedef struct { int quot; int rem; } div_t;")
    libc = ferrule.Library("c", declarations=shared)
    assert libc.declarations is shared
    result = libc.function("div", "div_t (int, int)")(17, 5)
    assert (result.quot, result.rem) == (3, 2)


def test_a_malformed_declaration_is_a_value_error_naming_its_line() -> None:
    lib = ferrule.Library("c")
    with pytest.raises(ValueError, match=r"line 2, 'struct s \{ int x; \}', does not parse"):
        lib.cdef("extern int a;\nstruct s { int x; }\nint g(void);")
    with pytest.raises(ValueError, match=r"line 1, 'int f\(banana x\);', does not parse \(before: x\).*declared first"):
        lib.cdef("int f(banana x);")
    with pytest.raises(ValueError, match=r"C signature 'int \(bogus\)' does not parse.*unknown type 'bogus'"):
        lib.function("abs", "int (bogus)")
    with pytest.raises(ValueError, match="has no return type and parameter list"):
        lib.function("abs", "abs")
    with pytest.raises(ValueError, match=r"C type 'struct nowhere \*'.*fields are not declared here"):
        lib.declarations.new("struct nowhere *")


def test_a_struct_by_value_that_is_only_named_is_a_value_error() -> None:
    lib = ferrule.Library("c")
    with pytest.raises(ValueError, match=r"'struct tm \(void\)'.*declare the struct's fields first"):
        lib.function("localtime", "struct tm (void)")


def test_enums_unions_constants_and_arrays_of_structs(libc: ferrule.Library) -> None:
    decls = ferrule.Declarations("""
        typedef enum { RED, GREEN = 5, BLUE } color;
        typedef union { int i; float f; } number;
        struct point { int x; int y; color c; };
        #define POINTS 4
    """)
    assert (decls.constant("GREEN"), decls.constant("BLUE"), decls.constant("POINTS")) == (5, 6, 4)
    with pytest.raises(ValueError, match="no integer constant 'PURPLE' is declared here"):
        decls.constant("PURPLE")
    n = decls.new("number *")
    n.f = 1.0
    assert n.i == 0x3F800000  # one storage, two views
    points = decls.new("struct point[]", [{"x": 3, "y": 1}, {"x": -1, "y": 2}, {"x": 2, "y": 3, "c": decls.constant("BLUE")},
                                          {"x": 0, "y": 4}])
    points[3].x = 1
    lib = ferrule.Library("c", declarations=decls)
    lib.cdef("void qsort(void *base, size_t nmemb, size_t size, int (*compar)(const void *, const void *));")

    def by_x(a: object, b: object) -> int:
        pa, pb = decls.cast("struct point *", a), decls.cast("struct point *", b)
        return (pa.x > pb.x) - (pa.x < pb.x)

    lib.function("qsort")(points, len(points), decls.sizeof("struct point"), by_x)  # an array of structs, in place
    assert [(p.x, p.y) for p in points] == [(-1, 2), (1, 4), (2, 3), (3, 1)] and points[2].c == decls.constant("BLUE")


def test_a_declared_prototype_needs_no_signature(libc: ferrule.Library) -> None:
    assert libc.declarations.prototype("strlen") == "size_t strlen(const char *s)"
    assert libc.function("strlen")(b"four") == 4
    with pytest.raises(ValueError, match=r"no prototype of 'strnlen' is declared: pass its signature"):
        libc.function("strnlen")


# -- structs, out-parameters, buffers


def test_structs_by_value_and_by_pointer(libc: ferrule.Library) -> None:
    result = libc.function("div")(-17, 5)
    assert (result.quot, result.rem) == (-3, -2)
    decls = libc.declarations
    when = decls.new("time_t *", 86400 * 365 + 3600 * 5 + 61)  # 1971-01-01 05:01:01 UTC
    tm = decls.new("struct tm *")
    back = libc.function("gmtime_r")(when, tm)  # a declared struct pointer comes back as one, fields and all
    assert (back.tm_year, back.tm_mon, back.tm_mday, back.tm_hour, back.tm_min, back.tm_sec) == (71, 0, 1, 5, 1, 1)
    out = bytearray(32)
    n = libc.function("strftime")(out, len(out), b"%Y-%m-%d %H:%M", tm)
    assert bytes(out[:n]) == b"1971-01-01 05:01"
    again = decls.at("struct tm *", decls.address(tm))  # a struct read at an address
    assert again.tm_year == 71


def test_typed_out_parameters(tmp_path: Path) -> None:
    z = ferrule.Library("z")
    z.cdef("""
        int compress(unsigned char *dest, unsigned long *destLen, const unsigned char *source, unsigned long sourceLen);
        int uncompress(unsigned char *dest, unsigned long *destLen, const unsigned char *source, unsigned long sourceLen);
    """)
    data = b"ferrule " * 100
    dest = bytearray(1024)
    length = z.declarations.new("unsigned long *", len(dest))
    assert z.function("compress")(dest, length, data, len(data)) == 0  # Z_OK
    packed = bytes(dest[: length[0]])
    assert zlib.decompress(packed) == data
    back = bytearray(len(data))
    size = z.declarations.new("unsigned long *", len(back))
    assert z.function("uncompress")(back, size, packed, len(packed)) == 0 and bytes(back) == data
    m = ferrule.Library("m")
    exponent = m.declarations.new("int *")
    assert m.function("frexp", "double (double, int *)")(8.0, exponent) == 0.5 and exponent[0] == 4


def test_buffers_are_checked_before_c_sees_them(libc: ferrule.Library) -> None:
    m = ferrule.Library("m")
    frexp = m.function("frexp", "double (double, int *)")
    with pytest.raises(ValueError, match=r"frexp\(\) argument 2: the buffer holds 1 byte, less than one int "
                                         r"\(4 bytes\).*Declarations.new\('int \*'\)"):
        frexp(1.0, bytearray(1))
    memset = libc.function("memset")
    frozen = b"immutable"
    with pytest.raises(TypeError, match=r"memset\(\) argument 1: bytes is immutable, and the function may write "
                                        r"through this void \* \(the parameter is not const\)"):
        memset(frozen, 0x41, 3)
    assert frozen == b"immutable"
    buffer = bytearray(b"mutable")
    memset(buffer, 0x41, 3)
    assert buffer == bytearray(b"AAAable")
    assert libc.function("strlen")(b"const is fine") == 13  # const char *: immutable bytes may go
    with pytest.raises(TypeError, match=r"expected bytes for char \*, got str: encode it"):
        libc.function("strlen")("text")
    with pytest.raises(TypeError, match="expected a buffer, a pointer from Declarations.new, an int address or None"):
        memset(True, 0, 0)
    with pytest.raises(ValueError, match="not C-contiguous"):
        memset(np.zeros((4, 4), dtype=np.uint8)[:, 1], 0, 1)
    with pytest.raises(TypeError, match="takes 3 arguments"):
        memset(buffer, 0)


# -- callbacks


def test_a_python_comparator_sorts_through_qsort(libc: ferrule.Library) -> None:
    decls = libc.declarations
    values = array.array("i", [5, -3, 9, 1, 0])

    def compare(a: object, b: object) -> int:
        x, y = decls.cast("int *", a)[0], decls.cast("int *", b)[0]
        return (x > y) - (x < y)

    libc.function("qsort")(values, len(values), values.itemsize, compare)
    assert list(values) == [-3, 0, 1, 5, 9]


def test_an_exception_in_a_callback_is_raised_by_the_call(libc: ferrule.Library) -> None:
    values = array.array("i", [3, 2, 1])

    def broken(a: object, b: object) -> int:
        raise RuntimeError("the comparator broke")

    with pytest.raises(RuntimeError, match="the comparator broke"):
        libc.function("qsort")(values, len(values), values.itemsize, broken)


def test_a_callback_kept_by_the_library_lives_until_closed(fx: ferrule.Library,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    heard: list[bytes] = []
    decls = fx.declarations
    set_logger, log = fx.function("fx_set_logger"), fx.function("fx_log")
    with decls.callback("void (const char *)", lambda message: heard.append(decls.string(message))) as listener:
        set_logger(listener)
        log(b"first")
        gc.collect()  # the library holds only the C pointer: the Callback keeps it alive
        log(b"second")
        set_logger(None)  # NULL is a function pointer too
        log(b"unheard")
    assert heard == [b"first", b"second"] and listener.closed
    with pytest.raises(ValueError, match="is closed"):
        set_logger(listener)

    def failing(message: object) -> None:
        raise KeyError("logger failed")

    with decls.callback("void (const char *)", failing) as bad:
        set_logger(bad)
        with pytest.raises(KeyError, match="logger failed"):  # during a call through ferrule: raised by it
            log(b"x")
        with caplog.at_level(logging.ERROR, logger="ferrule"):
            bad.pointer(decls.new("char[]", b"y"))  # called from outside any ferrule call: logged and kept
        assert [type(e) for e in bad.errors] == [KeyError] and "raised, called from C outside" in caplog.text
        set_logger(None)


def test_function_pointer_parameters_refuse_what_is_not_callable(fx: ferrule.Library) -> None:
    with pytest.raises(TypeError, match=r"fx_set_logger\(\) argument 1: expected a Python callable, a "
                                        r"ferrule.Callback or None for void\(\*\)\(char \*\), got str"):
        fx.function("fx_set_logger")("not callable")


# -- a foreign plugin standard, hosted through function pointers


def test_a_foreign_plugin_standard_enumerated_instantiated_and_run(fx: ferrule.Library) -> None:
    decls = fx.declarations
    descriptor_at = fx.function("fx_descriptor_at")
    found = []
    index = 0
    while (d := descriptor_at(index)) is not None:
        found.append(d)
        index += 1
    assert [(d.unique_id, decls.string(d.label), decls.string(d.name)) for d in found] == [
        (1001, b"gain", b"Gain"), (1002, b"offset", b"Offset")]
    signal = np.arange(8, dtype=np.float32)
    for d, control, expected in ((found[0], 2.5, signal * 2.5), (found[1], 0.25, signal + 0.25 + 48)):
        instantiate = decls.function_at(d.instantiate, name="instantiate")
        connect, run, cleanup = (decls.function_at(p) for p in (d.connect_port, d.run, d.cleanup))
        instance = instantiate(d, 48000)
        assert isinstance(instance, int) and instance != 0
        knob = np.array([control], dtype=np.float32)
        out = np.zeros_like(signal)
        for port, data in enumerate((knob, signal, out)):
            connect(instance, port, data)  # the library keeps these pointers: the arrays stay alive here
        run(instance, len(signal))
        cleanup(instance)
        np.testing.assert_allclose(out, expected)


def test_a_returned_function_pointer_is_a_callable(fx: ferrule.Library) -> None:
    add = fx.function("fx_adder")()
    assert isinstance(add, ferrule.CFunction) and add(2, 3) == 5 and int(add) == add.address
    with pytest.raises(TypeError, match="takes 2 arguments"):
        add(1)


def test_calling_through_a_pointer_checks_as_a_function_does(fx: ferrule.Library) -> None:
    decls = fx.declarations
    d = fx.function("fx_descriptor_at")(0)
    connect = decls.function_at(d.connect_port)
    with pytest.raises(TypeError, match="takes 3 arguments"):
        connect(0, 1)
    with pytest.raises(ValueError, match="the buffer holds 2 bytes, less than one float"):
        connect(0, 0, bytearray(2))
    with pytest.raises(ValueError, match="the function pointer is NULL"):
        decls.function_at(decls.cast("void (*)(void)", 0))
    with pytest.raises(TypeError, match="needs its signature"):
        decls.function_at(decls.address(d.run))
    run = decls.function_at(decls.address(d.run), "void (void *, unsigned long)")  # an address, typed
    assert run.address == decls.address(d.run)
    with pytest.raises(TypeError, match="needs a function pointer"):
        decls.function_at(d)


# -- variadic calls and owned results


def test_variadic_calls_take_the_extras_c_types_at_the_call(libc: ferrule.Library) -> None:
    snprintf = libc.function("snprintf")
    out = bytearray(64)
    n = snprintf(out, len(out), b"%d|%s|%.2f|%ld", ("int", 42), ("const char *", b"text"), ("double", 1.5),
                 libc.declarations.cast("long", -7))
    assert bytes(out[:n]) == b"42|text|1.50|-7"
    with pytest.raises(TypeError, match=r"snprintf\(\) argument 4 is a variadic extra: give its C type with it"):
        snprintf(out, len(out), b"%d", 42)
    with pytest.raises(ValueError, match=r"argument 4: C type 'integer' does not parse"):
        snprintf(out, len(out), b"%d", ("integer", 42))


def test_an_owned_result_is_freed_by_its_declared_function_once(fx: ferrule.Library, libc: ferrule.Library) -> None:
    free = fx.function("fx_free")
    describe = fx.function("fx_describe", free=free)
    frees = fx.function("fx_frees")
    start = frees()
    with describe(0) as text:
        assert text.read() == b"gain (Gain)" and bytes(text) == b"gain (Gain)" and not text.closed
    assert text.closed and frees() == start + 1
    text.close()  # once only
    assert frees() == start + 1
    with pytest.raises(ValueError, match="was freed"):
        text.read()
    dropped = describe(1)
    assert dropped.read() == b"offset (Offset)"
    del dropped
    gc.collect()
    assert frees() == start + 2, "collected: freed"
    assert describe(5) is None  # NULL: nothing to free
    assert fx.function("fx_describe")(0) == b"gain (Gain)"  # borrowed, as declared without free= (this one leaks)
    with pytest.raises(ValueError, match="free= is for a function that returns a pointer"):
        libc.function("strlen", free=free)


# -- the C path


def test_the_c_path_takes_what_fits_registers_and_nothing_else(libc: ferrule.Library, fx: ferrule.Library,
                                                                call_path: str) -> None:
    on = call_path == "c-path" and platform.machine().lower() in ("x86_64", "amd64")  # (ccall.c's one ABI so far)
    m = ferrule.Library("m")
    takes = [m.function("cos", "double (double)"), m.function("ldexpf", "float (float, int)"),
             libc.function("strlen"), libc.function("memset"), fx.function("fx_log"), fx.function("fx_frees"),
             libc.function("abs", "int (int)"), libc.function("labs", "long (long)")]
    assert [getattr(f, "_accelerated", False) for f in takes] == [on] * len(takes)
    python_only = [libc.function("snprintf"), libc.function("qsort"), libc.function("div"),
                   fx.function("fx_descriptor_at"), fx.function("fx_describe", free=fx.function("fx_free")),
                   fx.function("fx_set_logger")]
    assert not any(getattr(f, "_accelerated", False) for f in python_only)


def test_both_paths_give_the_same_results_and_errors(libc: ferrule.Library) -> None:
    m = ferrule.Library("m")
    assert m.function("ldexpf", "float (float, int)")(1.5, 3) == 12.0
    assert m.function("cos", "double (double)")(0.0) == 1.0
    assert m.function("cos", "double (double)")(0) == 1.0  # an int for a double: converted (Python path)
    abs_ = libc.function("abs", "int (int)")
    assert abs_(-7) == 7 and libc.function("labs", "long (long)")(-(2**40)) == 2**40
    with pytest.raises(OverflowError, match="integer 2147483648 does not fit 'int'"):
        abs_(2**31)
    with pytest.raises(TypeError, match=r"abs\(\) argument 1: expected a number for int, got bool"):
        abs_(True)
    with pytest.raises(TypeError, match="an integer is required|'str' object cannot be interpreted"):
        abs_("7")
    assert libc.function("strlen")(b"") == 0  # empty bytes for a pointer to const: fine
    assert libc.function("memset")(None, 0, 0) is None  # NULL in, NULL out
    toupper = libc.function("toupper", "int (int)")
    assert toupper(ord("a")) == ord("A")
    getenv = libc.function("getenv", "char *(const char *)")
    assert getenv(b"FERRULE_SURELY_UNSET_VARIABLE") is None and isinstance(getenv(b"PATH"), bytes)


# -- found by review: each one a case the first version got wrong


def test_header_text_with_comments_and_macros_keeps_its_prototypes() -> None:
    lib = ferrule.Library("c")
    lib.cdef("""
        /* from string.h */
        #define BIG \\
            64
        size_t strlen(const char *s);   // the length
        typedef const char *cstr;
        typedef const char cchar;
    """)
    assert lib.declarations.constant("BIG") == 64
    assert lib.function("strlen")(b"abc") == 3  # declared, and its const pointer known
    lib.cdef("size_t strnlen(cstr s, size_t maxlen); int atoi(cchar *nptr);")
    assert lib.function("strnlen")(b"abcdef", 4) == 4, "a typedef'd pointer to const"
    assert lib.function("atoi")(b"42") == 42, "a pointer to a typedef'd const"


def test_a_dropped_callback_stays_alive_until_closed(fx: ferrule.Library) -> None:
    import weakref

    heard: list[bytes] = []
    decls = fx.declarations
    fx.function("fx_set_logger")(decls.callback("void (const char *)", lambda m: heard.append(decls.string(m))))
    gc.collect()  # nothing in Python refers to it, but C holds the pointer
    fx.function("fx_log")(b"still here")
    assert heard == [b"still here"]
    [still] = list(decls._open_callbacks)
    ref = weakref.ref(still)
    fx.function("fx_set_logger")(None)
    still.close()
    del still
    gc.collect()
    assert ref() is None and not decls._open_callbacks


def test_function_at_a_field_knows_no_const_until_given_the_signature() -> None:
    decls = ferrule.Declarations("struct ops { size_t (*len)(const char *s); };")
    libc = ferrule.Library("c", declarations=decls)
    ops = decls.new("struct ops *")
    ops.len = decls.cast("size_t (*)(const char *)", libc.symbol("strlen"))
    field = decls.function_at(ops.len)
    with pytest.raises(TypeError, match="bytes is immutable"):  # cffi's type of the field has no const
        field(b"hello")
    assert field(bytearray(b"hello\0")) == 5
    assert decls.function_at(ops.len, "size_t (const char *)")(b"hello") == 5
    assert field.__name__.startswith("the function at 0x")


def test_a_failed_declaration_names_its_line_and_some_of_it_may_stay() -> None:
    decls = ferrule.Declarations()
    with pytest.raises(ValueError, match=r"line 3, 'struct q \{ long y; \};', does not parse \(duplicate declaration"):
        decls.cdef("extern int a;\nstruct q { int x; };\nstruct q { long y; };")


def test_variadic_extras_get_cs_default_promotions(libc: ferrule.Library) -> None:
    out = bytearray(64)
    n = libc.function("snprintf")(out, len(out), b"%f %d", ("float", 1.5), ("short", -3))
    assert bytes(out[:n]) == b"1.500000 -3"


def test_addresses_are_checked_and_keywords_refused(libc: ferrule.Library) -> None:
    memset = libc.function("memset")
    for bad in (-1, 2**64, 2**64 + 0x1000):
        with pytest.raises(ValueError, match=r"memset\(\) argument 1: .* is not an address \(0 to 0xffffffffffffffff\)"):
            memset(bad, 0, 0)
    with pytest.raises(TypeError, match=r"takes its arguments by position only, as C does \(got n=\)"):
        memset(None, 0, n=0)
    with pytest.raises(TypeError, match=r"strlen\(\) takes 1 argument \(2 given\)"):
        libc.function("strlen")(b"a", b"b")
