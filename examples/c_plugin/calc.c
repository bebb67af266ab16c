/* An example ferrule plugin in C: a calculator that counts its calls.
 * Build: gcc -shared -fPIC -fvisibility=hidden -I../../sdk/c/include calc.c -o libcalc.so */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferrule.h"

typedef struct calc_state {
    uint64_t calls; /* plain counter: these functions are not marked thread-safe,
                       so the host serialises calls into one instance */
} calc_state;

static int32_t calc_init(const ferrule_host *host, const char *config, size_t config_len, void **state) {
    calc_state *s = (calc_state *)calloc(1, sizeof *s);
    char line[128];
    if (s == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    snprintf(line, sizeof line, "calc ready (config: %.*s)", (int)(config_len > 64 ? 64 : config_len), config);
    ferrule_log(host, FERRULE_LOG_INFO, line);
    *state = s;
    return FERRULE_OK;
}

static void calc_shutdown(const ferrule_host *host, void *state) {
    ferrule_log(host, FERRULE_LOG_INFO, "calc shutting down");
    free(state);
}

static int32_t calc_mul(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    ((calc_state *)state)->calls++;
    ret->i64 = args[0].i64 * args[1].i64;
    return FERRULE_OK;
}

static int32_t calc_hypot(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    ((calc_state *)state)->calls++;
    ret->f64 = sqrt(args[0].f64 * args[0].f64 + args[1].f64 * args[1].f64);
    return FERRULE_OK;
}

static int32_t calc_checked_div(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ((calc_state *)state)->calls++;
    if (args[1].i64 == 0) {
        return ferrule_fail(host, "checked_div: division by zero");
    }
    ret->i64 = args[0].i64 / args[1].i64;
    return FERRULE_OK;
}

/* Returns a host-allocated copy with its characters in reverse order. The
 * input is valid UTF-8 (the host checks a str argument), and each
 * character's bytes keep their order, so the result is valid UTF-8 too. */
static int32_t calc_reverse(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    const unsigned char *in = (const unsigned char *)args[0].bytes.ptr;
    size_t n = args[0].bytes.len, i = 0, len;
    char *out;
    ((calc_state *)state)->calls++;
    out = (char *)host->alloc(n);
    if (out == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    while (i < n) {
        len = in[i] < 0x80 ? 1 : in[i] >= 0xF0 ? 4 : in[i] >= 0xE0 ? 3 : 2;
        if (len > n - i) {
            len = n - i;
        }
        memcpy(out + (n - i - len), in + i, len);
        i += len;
    }
    ret->bytes.ptr = out;
    ret->bytes.len = n;
    ret->bytes.release = host->free;
    return FERRULE_OK;
}

static int32_t calc_calls(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    (void)args;
    ret->u64 = ++((calc_state *)state)->calls;
    return FERRULE_OK;
}

static const ferrule_function f_mul = FERRULE_FUNCTION("mul", "(a: i64, b: i64) -> i64", "Multiply two integers.", 0, calc_mul);
static const ferrule_function f_hypot = FERRULE_FUNCTION("hypot", "(x: f64, y: f64) -> f64", "Length of the vector (x, y).", 0, calc_hypot);
static const ferrule_function f_div = FERRULE_FUNCTION("checked_div", "(a: i64, b: i64) -> i64", "Integer division; fails on a zero divisor.", 0, calc_checked_div);
static const ferrule_function f_reverse = FERRULE_FUNCTION("reverse", "(text: str) -> str", "The text with its characters in reverse order.", 0, calc_reverse);
static const ferrule_function f_calls = FERRULE_FUNCTION("calls", "() -> u64", "How many calls this instance has served, this one included.", 0, calc_calls);

static const ferrule_function *const functions[] = {&f_mul, &f_hypot, &f_div, &f_reverse, &f_calls};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.ferrule.examples.calc",
    "Calculator",
    "0.1.0",
    "A C plugin: arithmetic, an error case and host-allocated text.",
    "MIT",
    sizeof functions / sizeof functions[0],
    0,
    functions,
    calc_init,
    calc_shutdown,
    0, /* interfaces (ABI 1.2): none */
    0,
    NULL,
};

FERRULE_ENTRY { return &descriptor; }
