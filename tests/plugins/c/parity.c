/* The parity plugin: the implementations behind the parity table
 * (tests/parity/cases.json). One set of functions in the uniform calling
 * convention serves every path:
 *   - exported as plugin functions (the C accelerator, cffi and isolated paths);
 *   - as the vtable of its Parity implementation "direct" (interface methods);
 *   - ParityValues "relay" forwards every method to the host's ParityValues
 *     service through host->call (the Python service path).
 * The interfaces are declared in tests/parity_api.py; parity_api.h is
 * generated from it and gives the ids, fingerprints and method numbers. */

#include <stdlib.h>
#include <string.h>

#include "ferrule.h"
#include "parity_api.h"

#define ARGS const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret
#define UNUSED (void)host, (void)state, (void)args, (void)ret

/* ------------------------------------------------------- scalars and text */

static int32_t echo_scalar(ARGS) {
    UNUSED;
    *ret = args[0]; /* every scalar travels in its slot unchanged */
    return FERRULE_OK;
}

static int32_t echo_text(ARGS) {
    UNUSED;
    return ferrule_return_copy(host, ret, args[0].bytes.ptr, args[0].bytes.len);
}

static int32_t add(ARGS) {
    UNUSED;
    ret->i64 = (int64_t)((uint64_t)args[0].i64 + (uint64_t)args[1].i64);
    return FERRULE_OK;
}

static int32_t mixed(ARGS) {
    UNUSED;
    ret->f64 = (double)(int8_t)args[0].i64 + (double)(uint16_t)args[1].u64 + (double)args[2].f32 +
               (double)(args[3].u64 != 0) + args[4].f64;
    return FERRULE_OK;
}

static int32_t nothing(ARGS) {
    UNUSED;
    return FERRULE_OK;
}

/* ---------------------------------------------------------------- buffers */

#define SUM(T, name)                                      \
    static int32_t name(ARGS) {                           \
        UNUSED;                                           \
        const T *data = (const T *)args[0].buf.ptr;       \
        double total = 0;                                 \
        for (size_t i = 0; i < args[0].buf.len; i++) {    \
            total += (double)data[i];                     \
        }                                                 \
        ret->f64 = total;                                 \
        return FERRULE_OK;                                \
    }
#define DOUBLE(T, name)                                   \
    static int32_t name(ARGS) {                           \
        UNUSED;                                           \
        T *data = (T *)args[0].buf.ptr;                   \
        for (size_t i = 0; i < args[0].buf.len; i++) {    \
            data[i] = (T)(data[i] * 2);                   \
        }                                                 \
        return FERRULE_OK;                                \
    }
SUM(int8_t, sum_i8) SUM(int16_t, sum_i16) SUM(int32_t, sum_i32) SUM(int64_t, sum_i64)
SUM(uint8_t, sum_u8) SUM(uint16_t, sum_u16) SUM(uint32_t, sum_u32) SUM(uint64_t, sum_u64)
SUM(float, sum_f32) SUM(double, sum_f64)
DOUBLE(int8_t, double_i8) DOUBLE(int16_t, double_i16) DOUBLE(int32_t, double_i32) DOUBLE(int64_t, double_i64)
DOUBLE(uint8_t, double_u8) DOUBLE(uint16_t, double_u16) DOUBLE(uint32_t, double_u32) DOUBLE(uint64_t, double_u64)
DOUBLE(float, double_f32) DOUBLE(double, double_f64)

/* --------------------------------------------------------------- failures */

static int32_t fail(ARGS) {
    UNUSED;
    host->set_error(host, (const char *)args[0].bytes.ptr, args[0].bytes.len);
    return FERRULE_ERROR;
}

/* Sets its failure message, then logs (a log handler may call the host back
 * into this plugin), then fails: the message must survive the handler. */
static int32_t log_then_fail(ARGS) {
    UNUSED;
    ferrule_fail(host, "logged failure");
    host->log(host, FERRULE_LOG_WARN, (const char *)args[0].bytes.ptr, args[0].bytes.len);
    return FERRULE_ERROR;
}

static int32_t fail_silent(ARGS) {
    UNUSED;
    return FERRULE_ERROR;
}

static int32_t panic(ARGS) {
    UNUSED;
    host->set_error(host, (const char *)args[0].bytes.ptr, args[0].bytes.len);
    return FERRULE_PANIC;
}

static int32_t odd_status(ARGS) {
    UNUSED;
    ferrule_fail(host, "status seven");
    return 7;
}

static int32_t unset(ARGS) { /* OK, and the result slot never written */
    UNUSED;
    return FERRULE_OK;
}

static int32_t null_str(ARGS) {
    UNUSED;
    ret->bytes.ptr = NULL;
    ret->bytes.len = 3;
    ret->bytes.release = NULL;
    return FERRULE_OK;
}

static int32_t int_as_str(ARGS) { /* a str function written like an integer one */
    UNUSED;
    ret->i64 = 42;
    return FERRULE_OK;
}

static int32_t bad_text(ARGS) {
    UNUSED;
    ret->bytes.ptr = "ok \xff\xfe";
    ret->bytes.len = 5;
    ret->bytes.release = NULL;
    return FERRULE_OK;
}

static int32_t static_str(ARGS) {
    UNUSED;
    ret->bytes.ptr = "static text";
    ret->bytes.len = 11;
    ret->bytes.release = NULL;
    return FERRULE_OK;
}

/* -------------------------------------------------------- structs, handles */

static int32_t area(ARGS) {
    UNUSED;
    tpar_rect r;
    if (args[0].bytes.len != sizeof r) return ferrule_fail(host, "area: a Rect of the wrong size");
    memcpy(&r, args[0].bytes.ptr, sizeof r);
    ret->u64 = (uint64_t)r.width * r.height + (r.filled ? r.area_hint : 0);
    return FERRULE_OK;
}

static int32_t grow(ARGS) {
    UNUSED;
    tpar_rect r;
    if (args[0].bytes.len != sizeof r || args[2].buf.len != sizeof r) {
        return ferrule_fail(host, "grow: a Rect of the wrong size");
    }
    memcpy(&r, args[0].bytes.ptr, sizeof r);
    uint32_t by = (uint32_t)args[1].u64;
    r.origin.x -= (int32_t)by;
    r.origin.y -= (int32_t)by;
    r.width += 2 * by;
    r.height += 2 * by;
    r.filled = !r.filled;
    memcpy(args[2].buf.ptr, &r, sizeof r);
    return FERRULE_OK;
}

static int32_t tag(ARGS) {
    UNUSED;
    ret->u64 = args[0].u64 + 1;
    return FERRULE_OK;
}

/* --------------------------------------------------------- host functions */

static int32_t apply(ARGS) { /* f(x) */
    UNUSED;
    return ferrule_invoke(host, args[0].func, &args[1], ret);
}

static int32_t apply_f64(ARGS) { /* f(a, b) */
    UNUSED;
    return ferrule_invoke(host, args[0].func, &args[1], ret);
}

static int32_t apply_text(ARGS) { /* f(s) + "!" */
    UNUSED;
    ferrule_value got;
    int32_t status = ferrule_invoke(host, args[0].func, &args[1], &got);
    if (status != FERRULE_OK) return status;
    size_t len = got.bytes.len;
    char *out = (char *)host->alloc(len + 1);
    if (out == NULL) {
        if (got.bytes.release) got.bytes.release((void *)got.bytes.ptr, len);
        return ferrule_fail(host, "out of memory");
    }
    if (len) memcpy(out, got.bytes.ptr, len);
    out[len] = '!';
    if (got.bytes.release) got.bytes.release((void *)got.bytes.ptr, len);
    ret->bytes.ptr = out;
    ret->bytes.len = len + 1;
    ret->bytes.release = host->free;
    return FERRULE_OK;
}

static int32_t apply_bool(ARGS) { /* not f(v) */
    UNUSED;
    ferrule_value got;
    int32_t status = ferrule_invoke(host, args[0].func, &args[1], &got);
    if (status != FERRULE_OK) return status;
    ret->u64 = got.u64 == 0;
    return FERRULE_OK;
}

static int32_t apply_bytes(ARGS) { /* f(b), handed on as it came */
    UNUSED;
    return ferrule_invoke(host, args[0].func, &args[1], ret);
}

static int32_t call_none(ARGS) {
    UNUSED;
    return ferrule_invoke(host, args[0].func, NULL, ret);
}

/* Sets its failure message first, then calls f, then fails: the message must
 * survive whatever f runs in the host (other calls into this plugin too). */
static int32_t outer_error(ARGS) {
    UNUSED;
    ferrule_fail(host, "outer message");
    ferrule_value got;
    int32_t status = ferrule_invoke(host, args[0].func, NULL, &got);
    return status == FERRULE_OK ? FERRULE_ERROR : status;
}

/* ------------------------------------------------------ exported functions */

#define THREAD_SAFE FERRULE_FN_THREAD_SAFE
#define FN(name, sig, flags, call) \
    static const ferrule_function fn_##name = FERRULE_FUNCTION(#name, sig, "parity: " #name, flags, call)

FN(echo_bool, "(v: bool) -> bool", THREAD_SAFE, echo_scalar);
FN(echo_i8, "(v: i8) -> i8", THREAD_SAFE, echo_scalar);
FN(echo_i16, "(v: i16) -> i16", THREAD_SAFE, echo_scalar);
FN(echo_i32, "(v: i32) -> i32", THREAD_SAFE, echo_scalar);
FN(echo_i64, "(v: i64) -> i64", THREAD_SAFE | FERRULE_FN_QUICK, echo_scalar);
FN(echo_u8, "(v: u8) -> u8", THREAD_SAFE, echo_scalar);
FN(echo_u16, "(v: u16) -> u16", THREAD_SAFE, echo_scalar);
FN(echo_u32, "(v: u32) -> u32", THREAD_SAFE, echo_scalar);
FN(echo_u64, "(v: u64) -> u64", THREAD_SAFE, echo_scalar);
FN(echo_f32, "(v: f32) -> f32", THREAD_SAFE, echo_scalar);
FN(echo_f64, "(v: f64) -> f64", THREAD_SAFE, echo_scalar);
FN(echo_str, "(s: str) -> str", 0, echo_text);
FN(echo_bytes, "(b: bytes) -> bytes", THREAD_SAFE, echo_text);
FN(add, "(a: i64, b: i64) -> i64", 0, add);
FN(mixed, "(a: i8, b: u16, c: f32, d: bool, e: f64) -> f64", THREAD_SAFE, mixed);
FN(nothing, "()", THREAD_SAFE, nothing);
FN(sum_i8, "(data: buf[i8]) -> f64", THREAD_SAFE, sum_i8);
FN(sum_i16, "(data: buf[i16]) -> f64", THREAD_SAFE, sum_i16);
FN(sum_i32, "(data: buf[i32]) -> f64", THREAD_SAFE, sum_i32);
FN(sum_i64, "(data: buf[i64]) -> f64", THREAD_SAFE, sum_i64);
FN(sum_u8, "(data: buf[u8]) -> f64", THREAD_SAFE, sum_u8);
FN(sum_u16, "(data: buf[u16]) -> f64", THREAD_SAFE, sum_u16);
FN(sum_u32, "(data: buf[u32]) -> f64", THREAD_SAFE, sum_u32);
FN(sum_u64, "(data: buf[u64]) -> f64", THREAD_SAFE, sum_u64);
FN(sum_f32, "(data: buf[f32]) -> f64", THREAD_SAFE, sum_f32);
FN(sum_f64, "(data: buf[f64]) -> f64", THREAD_SAFE, sum_f64);
FN(double_i8, "(data: mutbuf[i8])", THREAD_SAFE, double_i8);
FN(double_i16, "(data: mutbuf[i16])", THREAD_SAFE, double_i16);
FN(double_i32, "(data: mutbuf[i32])", THREAD_SAFE, double_i32);
FN(double_i64, "(data: mutbuf[i64])", THREAD_SAFE, double_i64);
FN(double_u8, "(data: mutbuf[u8])", THREAD_SAFE, double_u8);
FN(double_u16, "(data: mutbuf[u16])", THREAD_SAFE, double_u16);
FN(double_u32, "(data: mutbuf[u32])", THREAD_SAFE, double_u32);
FN(double_u64, "(data: mutbuf[u64])", THREAD_SAFE, double_u64);
FN(double_f32, "(data: mutbuf[f32])", THREAD_SAFE, double_f32);
FN(double_f64, "(data: mutbuf[f64])", THREAD_SAFE, double_f64);
FN(fail, "(message: str) -> i64", THREAD_SAFE, fail);
FN(fail_silent, "() -> i64", THREAD_SAFE, fail_silent);
FN(log_then_fail, "(message: str) -> i64", THREAD_SAFE, log_then_fail);
FN(panic, "(message: str) -> i64", THREAD_SAFE, panic);
FN(odd_status, "() -> i64", THREAD_SAFE, odd_status);
FN(unset_str, "() -> str", THREAD_SAFE, unset);
FN(unset_bytes, "() -> bytes", THREAD_SAFE, unset);
FN(null_str, "() -> str", THREAD_SAFE, null_str);
FN(int_as_str, "() -> str", THREAD_SAFE, int_as_str);
FN(bad_text, "() -> str", THREAD_SAFE, bad_text);
FN(static_str, "() -> str", THREAD_SAFE, static_str);
FN(apply, "(f: fn(i64) -> i64, x: i64) -> i64", 0, apply);
FN(apply_text, "(f: fn(str) -> str, s: str) -> str", THREAD_SAFE, apply_text);
FN(apply_f64, "(f: fn(f64, f64) -> f64, a: f64, b: f64) -> f64", THREAD_SAFE, apply_f64);
FN(apply_bool, "(f: fn(bool) -> bool, v: bool) -> bool", THREAD_SAFE, apply_bool);
FN(apply_bytes, "(f: fn(bytes) -> bytes, b: bytes) -> bytes", THREAD_SAFE, apply_bytes);
FN(call_none, "(f: fn())", THREAD_SAFE, call_none);
FN(outer_error, "(f: fn() -> i64) -> i64", 0, outer_error);

static const ferrule_function *const functions[] = {
    &fn_echo_bool, &fn_echo_i8, &fn_echo_i16, &fn_echo_i32, &fn_echo_i64, &fn_echo_u8, &fn_echo_u16,
    &fn_echo_u32, &fn_echo_u64, &fn_echo_f32, &fn_echo_f64, &fn_echo_str, &fn_echo_bytes, &fn_add, &fn_mixed,
    &fn_nothing, &fn_sum_i8, &fn_sum_i16, &fn_sum_i32, &fn_sum_i64, &fn_sum_u8, &fn_sum_u16, &fn_sum_u32,
    &fn_sum_u64, &fn_sum_f32, &fn_sum_f64, &fn_double_i8, &fn_double_i16, &fn_double_i32, &fn_double_i64,
    &fn_double_u8, &fn_double_u16, &fn_double_u32, &fn_double_u64, &fn_double_f32, &fn_double_f64, &fn_fail,
    &fn_fail_silent, &fn_panic, &fn_odd_status, &fn_unset_str, &fn_unset_bytes, &fn_null_str, &fn_bad_text,
    &fn_static_str, &fn_apply, &fn_apply_text, &fn_apply_f64, &fn_apply_bool, &fn_apply_bytes, &fn_call_none,
    &fn_outer_error, &fn_log_then_fail, &fn_int_as_str,
};

/* ------------------------------------------------- Parity, implemented here */

/* The methods both interfaces share, by their numbers in either (the
 * values come first in Parity too). */
#define VALUE_METHODS(P)                                                                      \
    [P##_ECHO_BOOL] = echo_scalar, [P##_ECHO_I8] = echo_scalar, [P##_ECHO_I16] = echo_scalar,  \
    [P##_ECHO_I32] = echo_scalar, [P##_ECHO_I64] = echo_scalar, [P##_ECHO_U8] = echo_scalar,   \
    [P##_ECHO_U16] = echo_scalar, [P##_ECHO_U32] = echo_scalar, [P##_ECHO_U64] = echo_scalar,  \
    [P##_ECHO_F32] = echo_scalar, [P##_ECHO_F64] = echo_scalar, [P##_ECHO_STR] = echo_text,    \
    [P##_ECHO_BYTES] = echo_text, [P##_ADD] = add, [P##_MIXED] = mixed, [P##_NOTHING] = nothing, \
    [P##_SUM_I8] = sum_i8, [P##_SUM_I16] = sum_i16, [P##_SUM_I32] = sum_i32, [P##_SUM_I64] = sum_i64, \
    [P##_SUM_U8] = sum_u8, [P##_SUM_U16] = sum_u16, [P##_SUM_U32] = sum_u32, [P##_SUM_U64] = sum_u64, \
    [P##_SUM_F32] = sum_f32, [P##_SUM_F64] = sum_f64, [P##_DOUBLE_I8] = double_i8,              \
    [P##_DOUBLE_I16] = double_i16, [P##_DOUBLE_I32] = double_i32, [P##_DOUBLE_I64] = double_i64, \
    [P##_DOUBLE_U8] = double_u8, [P##_DOUBLE_U16] = double_u16, [P##_DOUBLE_U32] = double_u32,  \
    [P##_DOUBLE_U64] = double_u64, [P##_DOUBLE_F32] = double_f32, [P##_DOUBLE_F64] = double_f64, \
    [P##_FAIL] = fail, [P##_FAIL_SILENT] = fail_silent, [P##_PANIC] = panic,                    \
    [P##_ODD_STATUS] = odd_status, [P##_UNSET_STR] = unset, [P##_UNSET_BYTES] = unset,          \
    [P##_NULL_STR] = null_str, [P##_BAD_TEXT] = bad_text, [P##_STATIC_STR] = static_str,        \
    [P##_AREA] = area, [P##_GROW] = grow, [P##_TAG] = tag

static const ferrule_call_fn parity_methods[TPAR_PARITY_N_METHODS] = {
    VALUE_METHODS(TPAR_PARITY_METHOD),
    [TPAR_PARITY_METHOD_APPLY] = apply, [TPAR_PARITY_METHOD_APPLY_TEXT] = apply_text,
    [TPAR_PARITY_METHOD_APPLY_F64] = apply_f64, [TPAR_PARITY_METHOD_APPLY_BOOL] = apply_bool,
    [TPAR_PARITY_METHOD_APPLY_BYTES] = apply_bytes, [TPAR_PARITY_METHOD_CALL_NONE] = call_none,
    [TPAR_PARITY_METHOD_OUTER_ERROR] = outer_error,
};

static int32_t direct_create(const ferrule_host *host, void *plugin_state, void **self) {
    (void)plugin_state;
    *self = malloc(1);
    return *self != NULL ? FERRULE_OK : ferrule_fail(host, "out of memory");
}

static void direct_destroy(const ferrule_host *host, void *plugin_state, void *self) {
    (void)host, (void)plugin_state;
    free(self);
}

static const ferrule_interface parity_direct = {
    sizeof(ferrule_interface), TPAR_PARITY_FLAGS, TPAR_PARITY_ID, TPAR_PARITY_REVISION, TPAR_PARITY_N_METHODS,
    TPAR_PARITY_FINGERPRINT, TPAR_PARITY_LAYOUT, "direct", "The parity functions as methods.", parity_methods,
    direct_create, direct_destroy,
};

/* ------------------------------------ ParityValues, relayed to the service */

typedef struct {
    const ferrule_object *service;
} Relay;

static int32_t relay_create(const ferrule_host *host, void *plugin_state, void **self) {
    (void)plugin_state;
    Relay *relay = (Relay *)malloc(sizeof *relay);
    if (relay == NULL) return ferrule_fail(host, "out of memory");
    relay->service = host->query(host, TPAR_PARITY_VALUES_ID, TPAR_PARITY_VALUES_REVISION,
                                 TPAR_PARITY_VALUES_FINGERPRINT);
    if (relay->service == NULL) {
        free(relay);
        return ferrule_fail(host, "the host provides no ParityValues service");
    }
    *self = relay;
    return FERRULE_OK;
}

static void relay_destroy(const ferrule_host *host, void *plugin_state, void *self) {
    (void)plugin_state;
    host->release(host, ((Relay *)self)->service);
    free(self);
}

/* Method `index` of the service, with this call's arguments; its result (or
 * its failure message) is handed on as it came. */
static int32_t relay(const ferrule_host *host, void *self, uint32_t index, const ferrule_value *args,
                     ferrule_value *ret) {
    int32_t status = host->call(host, ((Relay *)self)->service, index, args, ret);
    if (status != FERRULE_OK) {
        host->set_error(host, (const char *)ret->bytes.ptr, ret->bytes.ptr != NULL ? ret->bytes.len : 0);
        if (ret->bytes.release != NULL) ret->bytes.release((void *)ret->bytes.ptr, ret->bytes.len);
    }
    return status;
}

#define RELAY(i)                                                                        \
    static int32_t relay_##i(const ferrule_host *host, void *self, const ferrule_value *args, \
                             ferrule_value *ret) {                                         \
        return relay(host, self, i, args, ret);                                            \
    }
#define RELAYS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) \
    X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23) X(24) X(25) X(26) X(27) X(28) X(29) X(30) X(31)     \
    X(32) X(33) X(34) X(35) X(36) X(37) X(38) X(39) X(40) X(41) X(42) X(43) X(44) X(45) X(46) X(47)     \
    X(48) X(49) X(50) X(51) X(52) X(53) X(54) X(55) X(56) X(57) X(58) X(59) X(60) X(61) X(62) X(63)
RELAYS(RELAY)
#define RELAY_ENTRY(i) relay_##i,
static const ferrule_call_fn relays[64] = {RELAYS(RELAY_ENTRY)};
TPAR_CHECK(relay_count, TPAR_PARITY_VALUES_N_METHODS <= 64);

static const ferrule_interface values_relay = {
    sizeof(ferrule_interface), TPAR_PARITY_VALUES_FLAGS, TPAR_PARITY_VALUES_ID, TPAR_PARITY_VALUES_REVISION,
    TPAR_PARITY_VALUES_N_METHODS, TPAR_PARITY_VALUES_FINGERPRINT, TPAR_PARITY_VALUES_LAYOUT, "relay",
    "Every method forwarded to the host's ParityValues service.", relays, relay_create, relay_destroy,
};

static const ferrule_interface *const interfaces[] = {&parity_direct, &values_relay};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.ferrule.tests.parity", "Parity", "1.0.0",
    "The parity table's plugin: every type, failure and path.", "MIT",
    (uint32_t)(sizeof functions / sizeof functions[0]), 0, functions, NULL, NULL,
    (uint32_t)(sizeof interfaces / sizeof interfaces[0]), 0, interfaces,
};

FERRULE_ENTRY { return &descriptor; }
