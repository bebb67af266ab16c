/* A C test plugin for the ABI 1.1 data paths: typed buffers in and out,
 * owned results with their own counted release function, host functions
 * called through host->invoke, and the QUICK flag. */
#include <stdlib.h>
#include <string.h>

#include "ferrule.h"

/* Results handed out and not yet released, over all calls. */
static long long live_results;

static void counted_release(void *ptr, size_t len) {
    (void)len;
    __atomic_fetch_sub(&live_results, 1, __ATOMIC_SEQ_CST);
    free(ptr);
}

/* n bytes 'a', 'b', ... 'z', 'a', ... in memory this plugin owns. */
static int32_t make_letters(const ferrule_host *host, uint64_t n, ferrule_value *ret) {
    char *out = (char *)malloc(n ? n : 1);
    uint64_t i;
    if (out == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    for (i = 0; i < n; i++) {
        out[i] = (char)('a' + i % 26);
    }
    __atomic_fetch_add(&live_results, 1, __ATOMIC_SEQ_CST);
    ret->bytes.ptr = out;
    ret->bytes.len = (size_t)n;
    ret->bytes.release = counted_release;
    return FERRULE_OK;
}

/* Overlapping runs of plugin code in one instance of a function that is not
 * thread-safe: its calls and the release of its results. */
static int inside;
static long long overlaps;

static void enter_serial(void) {
    if (__atomic_fetch_add(&inside, 1, __ATOMIC_SEQ_CST) != 0) {
        __atomic_fetch_add(&overlaps, 1, __ATOMIC_SEQ_CST);
    }
}

static void leave_serial(void) { __atomic_fetch_sub(&inside, 1, __ATOMIC_SEQ_CST); }

static void serial_release(void *ptr, size_t len) {
    enter_serial();
    counted_release(ptr, len);
    leave_serial();
}

static int32_t serial_make(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    int32_t status;
    (void)state;
    enter_serial();
    status = make_letters(host, args[0].u64, ret);
    ret->bytes.release = serial_release;
    leave_serial();
    return status;
}

static int32_t overlap_count(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->i64 = __atomic_load_n(&overlaps, __ATOMIC_SEQ_CST);
    return FERRULE_OK;
}

/* A host function handle kept past its call: using it later must fail. */
static const ferrule_fn *kept;

static int32_t keep(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)ret;
    kept = args[0].func;
    return FERRULE_OK;
}

static int32_t use_kept(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value arg;
    (void)state; (void)args;
    arg.i64 = 7;
    if (ferrule_invoke(host, kept, &arg, ret) != FERRULE_OK) {
        return ferrule_fail(host, "the kept handle was refused");
    }
    return FERRULE_OK;
}

static int32_t make(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    return make_letters(host, args[0].u64, ret);
}

static int32_t live(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->i64 = __atomic_load_n(&live_results, __ATOMIC_SEQ_CST);
    return FERRULE_OK;
}

static int32_t sum(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    const double *data = (const double *)args[0].buf.ptr;
    double total = 0.0;
    size_t i;
    (void)host; (void)state;
    for (i = 0; i < args[0].buf.len; i++) {
        total += data[i];
    }
    ret->f64 = total;
    return FERRULE_OK;
}

static int32_t fill(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    double *out = (double *)args[0].buf.ptr;
    size_t i;
    (void)host; (void)state; (void)ret;
    for (i = 0; i < args[0].buf.len; i++) {
        out[i] = args[1].f64 * (double)i;
    }
    return FERRULE_OK;
}

static int32_t addr(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->u64 = (uint64_t)(uintptr_t)args[0].buf.ptr;
    return FERRULE_OK;
}

static int32_t apply(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value arg;
    (void)state;
    arg.i64 = args[1].i64;
    if (ferrule_invoke(host, args[0].func, &arg, ret) != FERRULE_OK) {
        return ferrule_fail(host, "apply: the host function failed");
    }
    return FERRULE_OK;
}

/* Calls f(s), keeps its text (releasing the host's copy by the rule) and
 * returns it in upper case. */
static int32_t shout(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value text, got;
    char *out;
    size_t i;
    (void)state;
    text = args[1];
    if (ferrule_invoke(host, args[0].func, &text, &got) != FERRULE_OK) {
        return ferrule_fail(host, "shout: the host function failed");
    }
    out = (char *)host->alloc(got.bytes.len);
    if (out != NULL) {
        for (i = 0; i < got.bytes.len; i++) {
            char c = ((const char *)got.bytes.ptr)[i];
            out[i] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
        }
    }
    if (got.bytes.release != NULL) {
        got.bytes.release((void *)got.bytes.ptr, got.bytes.len);
    }
    if (out == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    ret->bytes.ptr = out;
    ret->bytes.len = got.bytes.len;
    ret->bytes.release = host->free;
    return FERRULE_OK;
}

static int32_t add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->i64 = args[0].i64 + args[1].i64;
    return FERRULE_OK;
}

/* null_text(f: fn(str) -> i64) -> i64: passes f a str with ptr NULL and len 3 (wrong on purpose); f's status. */
static int32_t null_text(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value a[1], r;
    (void)state;
    a[0].bytes.ptr = NULL;
    a[0].bytes.len = 3;
    a[0].bytes.release = NULL;
    ret->i64 = host->invoke(host, args[0].func, a, &r);
    return FERRULE_OK;
}

static const ferrule_function fn_make = FERRULE_FUNCTION(
    "make", "(n: u64) -> bytes", "n letters in plugin-owned memory, released by a counting release",
    FERRULE_FN_THREAD_SAFE, make);
static const ferrule_function fn_make_text = FERRULE_FUNCTION(
    "make_text", "(n: u64) -> str", "make, as text", FERRULE_FN_THREAD_SAFE, make);
static const ferrule_function fn_live = FERRULE_FUNCTION(
    "live", "() -> i64", "results handed out and not yet released", FERRULE_FN_THREAD_SAFE, live);
static const ferrule_function fn_sum = FERRULE_FUNCTION(
    "sum", "(data: buf[f64]) -> f64", "sum of the elements", FERRULE_FN_THREAD_SAFE, sum);
static const ferrule_function fn_fill = FERRULE_FUNCTION(
    "fill", "(out: mutbuf[f64], step: f64)", "out[i] = step * i", FERRULE_FN_THREAD_SAFE, fill);
static const ferrule_function fn_addr = FERRULE_FUNCTION(
    "addr", "(data: buf[u8]) -> u64", "the address the plugin received", FERRULE_FN_THREAD_SAFE, addr);
static const ferrule_function fn_apply = FERRULE_FUNCTION(
    "apply", "(f: fn(i64) -> i64, x: i64) -> i64", "f(x)", FERRULE_FN_THREAD_SAFE, apply);
static const ferrule_function fn_shout = FERRULE_FUNCTION(
    "shout", "(f: fn(str) -> str, s: str) -> str", "f(s) in upper case", FERRULE_FN_THREAD_SAFE, shout);
static const ferrule_function fn_add = FERRULE_FUNCTION(
    "add", "(a: i64, b: i64) -> i64", "a + b, releasing the GIL", FERRULE_FN_THREAD_SAFE, add);
static const ferrule_function fn_quick_add = FERRULE_FUNCTION(
    "quick_add", "(a: i64, b: i64) -> i64", "a + b, keeping the GIL",
    FERRULE_FN_THREAD_SAFE | FERRULE_FN_QUICK, add);
static const ferrule_function fn_serial_quick_add = FERRULE_FUNCTION(
    "serial_quick_add", "(a: i64, b: i64) -> i64", "a + b, quick but not thread-safe", FERRULE_FN_QUICK, add);

static const ferrule_function fn_serial_make = FERRULE_FUNCTION(
    "serial_make", "(n: u64) -> bytes", "make, not thread-safe; counts overlaps with its release", 0, serial_make);
static const ferrule_function fn_overlaps = FERRULE_FUNCTION(
    "overlaps", "() -> i64", "overlapping runs of serial_make and its release", FERRULE_FN_THREAD_SAFE, overlap_count);
static const ferrule_function fn_keep = FERRULE_FUNCTION(
    "keep", "(f: fn(i64) -> i64)", "keeps the handle past the call (wrong on purpose)", FERRULE_FN_THREAD_SAFE, keep);
static const ferrule_function fn_use_kept = FERRULE_FUNCTION(
    "use_kept", "(g: fn(i64) -> i64) -> i64", "invokes the kept handle", FERRULE_FN_THREAD_SAFE, use_kept);
static const ferrule_function fn_null_text = FERRULE_FUNCTION(
    "null_text", "(f: fn(str) -> i64) -> i64", "passes f a NULL str of length 3 (wrong on purpose)",
    FERRULE_FN_THREAD_SAFE, null_text);

static const ferrule_function *const functions[] = {
    &fn_make, &fn_make_text, &fn_live, &fn_sum, &fn_fill, &fn_addr, &fn_apply, &fn_shout,
    &fn_add, &fn_quick_add, &fn_serial_quick_add, &fn_serial_make, &fn_overlaps, &fn_keep, &fn_use_kept,
    &fn_null_text,
};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.ferrule.tests.cdata",
    "C data paths",
    "1.0.0",
    "buffers, owned results and host functions from C",
    "MIT",
    sizeof functions / sizeof functions[0],
    0,
    functions,
    NULL,
    NULL,
    0, /* interfaces (ABI 1.2): none */
    0,
    NULL,
};

FERRULE_ENTRY { return &descriptor; }
