/* bench/anchor.c - the C work every benchmarked call path does.
 *
 * One file, three builds (bench/run.py makes all of them, all with -O2):
 *
 *   default          libanchor.so: the core as plain exported functions (for
 *                    ctypes and cffi ABI mode) and a ferrule plugin whose
 *                    functions call the same core.
 *                      cc -shared -fPIC -O2 -fvisibility=hidden -I sdk/c/include anchor.c
 *   ANCHOR_CORE_ONLY the core only, as static functions; the cffi API-mode
 *                    module #includes this file (ffi.set_source).
 *   ANCHOR_PYEXT     the core plus a CPython extension module "anchor_ext"
 *                    with METH_FASTCALL functions calling it.
 *                      cc -shared -fPIC -O2 -DANCHOR_PYEXT -I <python include> anchor.c
 *
 * So every path runs the same loops; what differs is only how Python gets
 * there (argument conversion, GIL handling, call dispatch).
 */
#if defined(ANCHOR_PYEXT)
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first, as Python.h asks */
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define ANCHOR_UNUSED __attribute__((unused))
#else
#define ANCHOR_UNUSED
#endif

/* Exported from libanchor.so; static (and maybe unused) where included. */
#if defined(ANCHOR_PYEXT) || defined(ANCHOR_CORE_ONLY)
#define ANCHOR_API static ANCHOR_UNUSED
#elif defined(__GNUC__)
#define ANCHOR_API __attribute__((visibility("default")))
#else
#define ANCHOR_API
#endif

/* ------------------------------------------------------------------ core */

ANCHOR_API int64_t anchor_add(int64_t a, int64_t b) {
    return (int64_t)((uint64_t)a + (uint64_t)b); /* wrapping, like Rust's quick_add */
}

ANCHOR_API double anchor_muladd(double x, double y) { return x * y + 1.0; }

ANCHOR_API bool anchor_xor(bool a, bool b) { return a != b; }

ANCHOR_API double anchor_mixed(int32_t a, double x, bool flag) {
    return flag ? (double)a * x : (double)a + x;
}

/* One accumulator, in order: the same additions, in the same order, as the
 * Rust kitchen plugin's data.iter().sum(), so every path (Rust included)
 * returns the bit-identical result. */
ANCHOR_API double anchor_sum(const double *data, size_t n) {
    double total = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        total += data[i];
    }
    return total;
}

/* f(0) + f(1) + ... + f(n - 1), wrapping, stopping at the first failure
 * (cb returns non-zero). cb is how each caller reaches its own function:
 * a plain C function pointer, ferrule's host->invoke, or a Python call. */
typedef int (*anchor_cb)(void *ctx, int64_t x, int64_t *out);

ANCHOR_API int anchor_apply_sum_with(anchor_cb cb, void *ctx, int64_t n, int64_t *out) {
    uint64_t total = 0;
    int64_t i;
    for (i = 0; i < n; i++) {
        int64_t y;
        if (cb(ctx, i, &y) != 0) {
            return -1;
        }
        total += (uint64_t)y;
    }
    *out = (int64_t)total;
    return 0;
}

/* The plain-C-callback entry for ctypes CFUNCTYPE, cffi ffi.callback and
 * cffi extern "Python". */
typedef int64_t (*anchor_fn)(int64_t);

struct anchor_plain_ctx {
    anchor_fn f;
};

static ANCHOR_UNUSED int anchor_plain_cb(void *ctx, int64_t x, int64_t *out) {
    *out = ((struct anchor_plain_ctx *)ctx)->f(x);
    return 0;
}

ANCHOR_API int64_t anchor_apply_sum(anchor_fn f, int64_t n) {
    struct anchor_plain_ctx ctx;
    int64_t out = 0;
    ctx.f = f;
    anchor_apply_sum_with(anchor_plain_cb, &ctx, n, &out);
    return out;
}

/* ------------------------------------------------------------ the plugin */
#if !defined(ANCHOR_PYEXT) && !defined(ANCHOR_CORE_ONLY)
#include "ferrule.h"

static int32_t p_add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->i64 = anchor_add(args[0].i64, args[1].i64);
    return FERRULE_OK;
}

static int32_t p_muladd(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->f64 = anchor_muladd(args[0].f64, args[1].f64);
    return FERRULE_OK;
}

static int32_t p_xor(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->u64 = anchor_xor(args[0].u64 != 0, args[1].u64 != 0) ? 1 : 0;
    return FERRULE_OK;
}

static int32_t p_mixed(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->f64 = anchor_mixed((int32_t)args[0].i64, args[1].f64, args[2].u64 != 0);
    return FERRULE_OK;
}

static int32_t p_sum(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->f64 = anchor_sum((const double *)args[0].buf.ptr, args[0].buf.len);
    return FERRULE_OK;
}

struct anchor_invoke_ctx {
    const ferrule_host *host;
    const ferrule_fn *fn;
};

static int anchor_invoke_cb(void *ctx, int64_t x, int64_t *out) {
    const struct anchor_invoke_ctx *c = (const struct anchor_invoke_ctx *)ctx;
    ferrule_value arg, ret;
    arg.i64 = x;
    if (ferrule_invoke(c->host, c->fn, &arg, &ret) != FERRULE_OK) {
        return -1;
    }
    *out = ret.i64;
    return 0;
}

static int32_t p_apply_sum(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    struct anchor_invoke_ctx ctx;
    (void)state;
    ctx.host = host;
    ctx.fn = args[0].func;
    if (anchor_apply_sum_with(anchor_invoke_cb, &ctx, args[1].i64, &ret->i64) != 0) {
        return ferrule_fail(host, "apply_sum: the host function failed");
    }
    return FERRULE_OK;
}

/* n log calls at FERRULE_LOG_DEBUG, below the logger's default level. */
static int32_t p_log_below(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    (void)ret;
    for (int64_t i = 0; i < args[0].i64; i++) {
        ferrule_log(host, FERRULE_LOG_DEBUG, "below the level");
    }
    return FERRULE_OK;
}

#define TS FERRULE_FN_THREAD_SAFE
#define QUICK FERRULE_FN_QUICK

static const ferrule_function f_add = FERRULE_FUNCTION(
    "add", "(a: i64, b: i64) -> i64", "a + b, wrapping; quick (the host keeps the GIL)", TS | QUICK, p_add);
static const ferrule_function f_add_released = FERRULE_FUNCTION(
    "add_released", "(a: i64, b: i64) -> i64", "add, not quick: the host releases the GIL", TS, p_add);
static const ferrule_function f_muladd = FERRULE_FUNCTION(
    "muladd", "(x: f64, y: f64) -> f64", "x * y + 1", TS | QUICK, p_muladd);
static const ferrule_function f_xor = FERRULE_FUNCTION(
    "xor", "(a: bool, b: bool) -> bool", "a != b", TS | QUICK, p_xor);
static const ferrule_function f_mixed = FERRULE_FUNCTION(
    "mixed", "(a: i32, x: f64, flag: bool) -> f64", "a * x if flag else a + x", TS | QUICK, p_mixed);
static const ferrule_function f_sum_quick = FERRULE_FUNCTION(
    "sum_quick", "(data: buf[f64]) -> f64", "sum of the elements; quick, for short arrays", TS | QUICK, p_sum);
static const ferrule_function f_sum = FERRULE_FUNCTION(
    "sum", "(data: buf[f64]) -> f64", "sum of the elements; releases the GIL", TS, p_sum);
static const ferrule_function f_apply_sum = FERRULE_FUNCTION(
    "apply_sum", "(f: fn(i64) -> i64, n: i64) -> i64", "f(0) + ... + f(n - 1), wrapping", TS, p_apply_sum);
static const ferrule_function f_apply_sum_quick = FERRULE_FUNCTION(
    "apply_sum_quick", "(f: fn(i64) -> i64, n: i64) -> i64", "apply_sum, quick: the GIL stays held",
    TS | QUICK, p_apply_sum);
static const ferrule_function f_log_below = FERRULE_FUNCTION(
    "log_below", "(n: i64)", "n debug messages (below the default level); releases the GIL", TS, p_log_below);
static const ferrule_function f_log_below_quick = FERRULE_FUNCTION(
    "log_below_quick", "(n: i64)", "log_below, quick: the GIL stays held", TS | QUICK, p_log_below);

static const ferrule_function *const anchor_functions[] = {
    &f_add, &f_add_released, &f_muladd, &f_xor, &f_mixed,
    &f_sum_quick, &f_sum, &f_apply_sum, &f_apply_sum_quick, &f_log_below, &f_log_below_quick,
};

static const ferrule_plugin anchor_descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.ferrule.bench.anchor",
    "Benchmark anchor",
    "1.0.0",
    "the benchmark's C work, as a ferrule plugin",
    "MIT",
    sizeof anchor_functions / sizeof anchor_functions[0],
    0,
    anchor_functions,
    NULL,
    NULL,
    0, /* interfaces (ABI 1.2): none */
    0,
    NULL,
};

FERRULE_ENTRY { return &anchor_descriptor; }
#endif /* the plugin */

/* ------------------------------------------------- the CPython extension */
#if defined(ANCHOR_PYEXT)

static int ext_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t want) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments, %zd given", name, want, nargs);
        return -1;
    }
    return 0;
}

static int ext_bool(PyObject *obj, bool *out) {
    if (!PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "expected bool, got %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = obj == Py_True;
    return 0;
}

static int ext_double(PyObject *obj, double *out) {
    if (PyFloat_CheckExact(obj)) {
        *out = PyFloat_AS_DOUBLE(obj);
        return 0;
    }
    *out = PyFloat_AsDouble(obj);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int ext_i64(PyObject *obj, int64_t *out) {
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static PyObject *ext_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t a, b;
    (void)self;
    if (ext_nargs("add", nargs, 2) || ext_i64(args[0], &a) || ext_i64(args[1], &b)) {
        return NULL;
    }
    return PyLong_FromLongLong(anchor_add(a, b));
}

static PyObject *ext_muladd(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    double x, y;
    (void)self;
    if (ext_nargs("muladd", nargs, 2) || ext_double(args[0], &x) || ext_double(args[1], &y)) {
        return NULL;
    }
    return PyFloat_FromDouble(anchor_muladd(x, y));
}

static PyObject *ext_xor(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bool a, b;
    (void)self;
    if (ext_nargs("xor", nargs, 2) || ext_bool(args[0], &a) || ext_bool(args[1], &b)) {
        return NULL;
    }
    return PyBool_FromLong(anchor_xor(a, b));
}

static PyObject *ext_mixed(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t a;
    double x;
    bool flag;
    (void)self;
    if (ext_nargs("mixed", nargs, 3) || ext_i64(args[0], &a) || ext_double(args[1], &x) ||
        ext_bool(args[2], &flag)) {
        return NULL;
    }
    if (a < INT32_MIN || a > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a does not fit in i32");
        return NULL;
    }
    return PyFloat_FromDouble(anchor_mixed((int32_t)a, x, flag));
}

static int ext_is_f64(const char *format) {
    if (format == NULL) {
        return 0;
    }
    if (*format == '@' || *format == '=' || *format == '<') { /* native is little-endian here */
        format++;
    }
    return format[0] == 'd' && format[1] == '\0';
}

/* A float64 buffer, as ferrule checks it: C-contiguous, format "d". */
static PyObject *ext_sum(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    double total;
    (void)self;
    if (ext_nargs("sum", nargs, 1) || PyObject_GetBuffer(args[0], &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        return NULL;
    }
    if (view.itemsize != (Py_ssize_t)sizeof(double) || !ext_is_f64(view.format)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "sum() needs a buffer of float64");
        return NULL;
    }
    total = anchor_sum((const double *)view.buf, (size_t)(view.len / view.itemsize));
    PyBuffer_Release(&view);
    return PyFloat_FromDouble(total);
}

static int ext_py_cb(void *ctx, int64_t x, int64_t *out) {
    PyObject *arg = PyLong_FromLongLong(x);
    PyObject *res;
    if (arg == NULL) {
        return -1;
    }
    res = PyObject_Vectorcall((PyObject *)ctx, &arg, 1, NULL);
    Py_DECREF(arg);
    if (res == NULL) {
        return -1;
    }
    if (ext_i64(res, out) != 0) {
        Py_DECREF(res);
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static PyObject *ext_apply_sum(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t n, out;
    (void)self;
    if (ext_nargs("apply_sum", nargs, 2) || ext_i64(args[1], &n)) {
        return NULL;
    }
    if (!PyCallable_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "apply_sum() needs a callable");
        return NULL;
    }
    if (anchor_apply_sum_with(ext_py_cb, args[0], n, &out) != 0) {
        return NULL;
    }
    return PyLong_FromLongLong(out);
}

static PyMethodDef ext_methods[] = {
    {"add", (PyCFunction)(void (*)(void))ext_add, METH_FASTCALL, "a + b"},
    {"muladd", (PyCFunction)(void (*)(void))ext_muladd, METH_FASTCALL, "x * y + 1"},
    {"xor", (PyCFunction)(void (*)(void))ext_xor, METH_FASTCALL, "a != b"},
    {"mixed", (PyCFunction)(void (*)(void))ext_mixed, METH_FASTCALL, "a * x if flag else a + x"},
    {"sum", (PyCFunction)(void (*)(void))ext_sum, METH_FASTCALL, "sum of a float64 buffer"},
    {"apply_sum", (PyCFunction)(void (*)(void))ext_apply_sum, METH_FASTCALL, "f(0) + ... + f(n - 1)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ext_module = {
    PyModuleDef_HEAD_INIT, "anchor_ext", "The benchmark's C work as a CPython extension.", -1, ext_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_anchor_ext(void) { return PyModule_Create(&ext_module); }

#endif /* ANCHOR_PYEXT */
