/* A C test plugin of numeric kernels, for ferrule.PluginRef and ferrule.dask:
 * elementwise kernels that fill a caller's buffer, a per-block reduction,
 * and probes that tell the tests which process a call ran in and how many
 * times this copy of the library ran its init (one load per process). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "ferrule.h"

/* Inits run by this copy of the library: the library is mapped once per
 * process (and file), so this counts the loads of the plugin there. */
static long long init_count;

/* The config the last init received (at most 255 bytes of it). */
static char last_config[256];
static size_t last_config_len;

static int32_t init(const ferrule_host *host, const char *text, size_t len, void **state) {
    (void)host; (void)state;
    last_config_len = len < sizeof last_config ? len : sizeof last_config - 1;
    if (last_config_len) {
        memcpy(last_config, text, last_config_len);
    }
    __atomic_fetch_add(&init_count, 1, __ATOMIC_SEQ_CST);
    return FERRULE_OK;
}

/* out[i] = k * x[i] + c */
static int32_t scale_add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    const double *x = (const double *)args[0].buf.ptr;
    double *out = (double *)args[1].buf.ptr;
    double k = args[2].f64, c = args[3].f64;
    size_t i, n = args[0].buf.len;
    (void)state; (void)ret;
    if (args[1].buf.len != n) {
        return ferrule_fail(host, "scale_add: out must have as many elements as x");
    }
    for (i = 0; i < n; i++) {
        out[i] = k * x[i] + c;
    }
    return FERRULE_OK;
}

/* out[i] = a * x[i] + y[i] */
static int32_t axpy(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    const double *x = (const double *)args[0].buf.ptr;
    const double *y = (const double *)args[1].buf.ptr;
    double *out = (double *)args[2].buf.ptr;
    double a = args[3].f64;
    size_t i, n = args[0].buf.len;
    (void)state; (void)ret;
    if (args[1].buf.len != n || args[2].buf.len != n) {
        return ferrule_fail(host, "axpy: x, y and out must have the same number of elements");
    }
    for (i = 0; i < n; i++) {
        out[i] = a * x[i] + y[i];
    }
    return FERRULE_OK;
}

static int32_t sum(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    const double *x = (const double *)args[0].buf.ptr;
    double total = 0.0;
    size_t i;
    (void)host; (void)state;
    for (i = 0; i < args[0].buf.len; i++) {
        total += x[i];
    }
    ret->f64 = total;
    return FERRULE_OK;
}

/* The address of the memory the plugin was given: equal to the caller's
 * array's address when the buffer was passed without a copy. */
static int32_t addr(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->u64 = (uint64_t)(uintptr_t)args[0].buf.ptr;
    return FERRULE_OK;
}

static int32_t inits(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->i64 = __atomic_load_n(&init_count, __ATOMIC_SEQ_CST);
    return FERRULE_OK;
}

static int32_t config(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->bytes.ptr = last_config;
    ret->bytes.len = last_config_len;
    ret->bytes.release = NULL; /* static */
    return FERRULE_OK;
}

static int32_t pid(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->i64 = (int64_t)getpid();
    return FERRULE_OK;
}

static int32_t crash(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    volatile int *volatile nowhere = NULL;
    (void)host; (void)state; (void)args; (void)ret;
    *nowhere = 1;
    return FERRULE_OK;
}

#define FN(name, sig, doc, flags) \
    static const ferrule_function fn_##name = FERRULE_FUNCTION(#name, sig, doc, flags, name)

FN(scale_add, "(x: buf[f64], out: mutbuf[f64], k: f64, c: f64)", "out = k * x + c", FERRULE_FN_THREAD_SAFE);
FN(axpy, "(x: buf[f64], y: buf[f64], out: mutbuf[f64], a: f64)", "out = a * x + y", FERRULE_FN_THREAD_SAFE);
FN(sum, "(x: buf[f64]) -> f64", "the sum of the elements", FERRULE_FN_THREAD_SAFE);
FN(addr, "(x: buf[f64]) -> u64", "the address of the memory received", FERRULE_FN_THREAD_SAFE | FERRULE_FN_QUICK);
FN(inits, "() -> i64", "how many times this copy of the library ran init", FERRULE_FN_THREAD_SAFE | FERRULE_FN_QUICK);
FN(config, "() -> str", "the config the last init received", FERRULE_FN_THREAD_SAFE | FERRULE_FN_QUICK);
FN(pid, "() -> i64", "the process the plugin runs in", FERRULE_FN_THREAD_SAFE | FERRULE_FN_QUICK);
FN(crash, "()", "writes through NULL", FERRULE_FN_THREAD_SAFE);

static const ferrule_function *const functions[] = {
    &fn_scale_add, &fn_axpy, &fn_sum, &fn_addr, &fn_inits, &fn_config, &fn_pid, &fn_crash,
};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.ferrule.tests.kernels",
    "Kernels",
    "1.0.0",
    "numeric kernels over buffers, and probes of the process they run in",
    "MIT",
    sizeof functions / sizeof functions[0],
    0,
    functions,
    init,
    NULL,
    0, /* interfaces (ABI 1.2): none */
    0,
    NULL,
};

FERRULE_ENTRY { return &descriptor; }
