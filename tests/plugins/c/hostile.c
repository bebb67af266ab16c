/* A C test plugin that misbehaves on request: it crashes, hangs, allocates
 * without bound, floods its output, forks and exits, each from one function.
 * Isolated mode must turn every one of these into an exception; its
 * well-behaved functions check that isolated calls match in-process ones.
 *
 * init reads its config: "fail" fails, "segfault" crashes, "" succeeds. */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferrule.h"

static const ferrule_host *the_host;

static void crash(void) {
    volatile int *volatile nowhere = NULL;
    *nowhere = 1;
}

static int32_t init(const ferrule_host *host, const char *config, size_t len, void **state) {
    (void)state;
    the_host = host;
    if (len == 4 && memcmp(config, "fail", 4) == 0) {
        return ferrule_fail(host, "config asked init to fail");
    }
    if (len == 8 && memcmp(config, "segfault", 8) == 0) {
        crash();
    }
    ferrule_log(host, FERRULE_LOG_INFO, "hostile plugin ready");
    return FERRULE_OK;
}

static int32_t add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->i64 = args[0].i64 + args[1].i64;
    return FERRULE_OK;
}

static int32_t mix(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->f64 = (double)args[0].i64 * args[1].f64 + (args[2].u64 ? 1.0 : 0.0) + (double)args[3].u64;
    return FERRULE_OK;
}

static int32_t negate(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->u64 = !args[0].u64;
    return FERRULE_OK;
}

static int32_t halve(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->f32 = args[0].f32 / 2.0f;
    return FERRULE_OK;
}

/* The text reversed, in host-allocated memory. */
static int32_t reverse(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    const char *in = (const char *)args[0].bytes.ptr;
    size_t n = args[0].bytes.len, i;
    char *out = (char *)host->alloc(n);
    (void)state;
    if (out == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    for (i = 0; i < n; i++) {
        out[i] = in[n - 1 - i];
    }
    ret->bytes.ptr = out;
    ret->bytes.len = n;
    ret->bytes.release = host->free;
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

static int32_t scale(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    int32_t *data = (int32_t *)args[0].buf.ptr;
    size_t i;
    (void)host; (void)state; (void)ret;
    for (i = 0; i < args[0].buf.len; i++) {
        data[i] *= (int32_t)args[1].i64;
    }
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

static int32_t fail(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state; (void)ret;
    host->set_error(host, (const char *)args[0].bytes.ptr, args[0].bytes.len);
    return FERRULE_ERROR;
}

static int32_t say(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state; (void)ret;
    host->log(host, (int32_t)args[0].i64, (const char *)args[1].bytes.ptr, args[1].bytes.len);
    return FERRULE_OK;
}

static int32_t pid(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->i64 = (int64_t)getpid();
    return FERRULE_OK;
}

static int32_t sleep_ms(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    struct timespec t;
    (void)host; (void)state; (void)ret;
    t.tv_sec = (time_t)(args[0].u64 / 1000);
    t.tv_nsec = (long)(args[0].u64 % 1000) * 1000000L;
    nanosleep(&t, NULL);
    return FERRULE_OK;
}

/* -- misbehaviour */

static int32_t segfault(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args; (void)ret;
    crash();
    return FERRULE_OK;
}

static int32_t do_abort(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args; (void)ret;
    fputs("hostile: about to abort\n", stderr);
    abort();
}

static int32_t do_exit(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)ret;
    exit((int)args[0].i64);
}

static int32_t spin(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    volatile unsigned long n = 0;
    (void)host; (void)state; (void)args; (void)ret;
    for (;;) {
        n++;
    }
    return FERRULE_OK;
}

/* Allocates and touches 16 MiB blocks until the allocator refuses, then
 * writes through the NULL it got, as careless code does. */
static int32_t hog(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args; (void)ret;
    for (;;) {
        char *block = (char *)malloc(16u << 20);
        if (block == NULL) {
            fputs("hostile: malloc returned NULL\n", stderr);
            crash();
        }
        memset(block, 1, 16u << 20);
    }
    return FERRULE_OK;
}

static uint64_t deeper(uint64_t depth) {
    volatile char frame[4096];
    frame[0] = (char)depth;
    return depth == 0 ? (uint64_t)frame[0] : deeper(depth - 1) + (uint64_t)frame[0];
}

static int32_t overflow(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->u64 = deeper(~(uint64_t)0 >> 1);
    return FERRULE_OK;
}

/* Writes n lines to stdout or stderr, then returns n. */
static int32_t flood(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    FILE *to = args[1].u64 ? stderr : stdout;
    uint64_t i;
    (void)host; (void)state;
    for (i = 0; i < args[0].u64; i++) {
        fprintf(to, "flood line %llu of %llu, padded to be a long line of output........\n",
                (unsigned long long)i, (unsigned long long)args[0].u64);
    }
    fflush(to);
    ret->u64 = args[0].u64;
    return FERRULE_OK;
}

/* Forks and returns in both processes: the copy must never run the host. */
static int32_t do_fork(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->i64 = (int64_t)fork();
    return FERRULE_OK;
}

/* Writes a line to stderr and logs one, then crashes: both must reach the error. */
static int32_t last_words(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state; (void)ret;
    fprintf(stderr, "stderr: %.*s\n", (int)args[0].bytes.len, (const char *)args[0].bytes.ptr);
    fflush(stderr);
    ferrule_log(host, FERRULE_LOG_ERROR, "log: going down");
    crash();
    return FERRULE_OK;
}

/* x + 1, or a crash of the kind x picks (segfault, abort, exit 3) when crash is set. */
static int32_t maybe_crash(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    if (args[1].u64) {
        switch (args[0].i64 % 3) {
        case 0: crash(); break;
        case 1: abort();
        default: _exit(3);
        }
    }
    ret->i64 = args[0].i64 + 1;
    return FERRULE_OK;
}

static int32_t raise_signal(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)ret;
    raise((int)args[0].i64);
    return FERRULE_OK;
}

/* Tries to shrink the shared memory of isolated mode under the host's
 * mapping (a host that allowed it would die of SIGBUS); returns how many
 * truncations the kernel refused. */
static int32_t shrink_memfds(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *entry;
    char path[300], target[256];
    int64_t refused = 0;
    (void)host; (void)state; (void)args;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        ssize_t n;
        snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
        n = readlink(path, target, sizeof target - 1);
        if (n < 0) continue;
        target[n] = '\0';
        if (strstr(target, "memfd:ferrule") != NULL && ftruncate(atoi(entry->d_name), 4096) != 0) refused++;
    }
    if (dir != NULL) closedir(dir);
    ret->i64 = refused;
    return FERRULE_OK;
}

/* How many of 0..n-1 f says yes to: n host-function calls in one call. */
static int32_t count_if(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    int64_t yes = 0, i;
    (void)state;
    for (i = 0; i < args[1].i64; i++) {
        ferrule_value arg, got;
        arg.i64 = i;
        if (ferrule_invoke(host, args[0].func, &arg, &got) != FERRULE_OK) {
            return ferrule_fail(host, "count_if: the host function failed");
        }
        yes += got.u64 != 0;
    }
    ret->i64 = yes;
    return FERRULE_OK;
}

/* The mistake of a str function written like an integer one: the 42 lands in ret->bytes.ptr. */
static int32_t int_as_str(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args;
    ret->i64 = 42;
    return FERRULE_OK;
}

/* A bytes result of any ptr and len (release NULL): what a plugin that
 * fills ret->bytes wrongly hands back. */
static int32_t wrong_bytes(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->bytes.ptr = (const void *)(uintptr_t)args[0].u64;
    ret->bytes.len = (size_t)args[1].u64;
    ret->bytes.release = NULL;
    return FERRULE_OK;
}

#define FN(name, sig, doc, flags, call) \
    static const ferrule_function fn_##name = FERRULE_FUNCTION(#name, sig, doc, flags, call)

FN(add, "(a: i64, b: i64) -> i64", "a + b", FERRULE_FN_THREAD_SAFE | FERRULE_FN_QUICK, add);
FN(add_slow, "(a: i64, b: i64) -> i64", "a + b, releasing the GIL", FERRULE_FN_THREAD_SAFE, add);
FN(mix, "(a: i64, x: f64, flag: bool, n: u8) -> f64", "a * x + flag + n", FERRULE_FN_THREAD_SAFE, mix);
FN(negate, "(b: bool) -> bool", "not b", FERRULE_FN_THREAD_SAFE, negate);
FN(halve, "(x: f32) -> f32", "x / 2 in single precision", FERRULE_FN_THREAD_SAFE, halve);
FN(reverse, "(s: str) -> str", "s reversed (ASCII)", FERRULE_FN_THREAD_SAFE, reverse);
FN(reverse_bytes, "(b: bytes) -> bytes", "b reversed", FERRULE_FN_THREAD_SAFE, reverse);
FN(sum, "(data: buf[f64]) -> f64", "sum of the elements", FERRULE_FN_THREAD_SAFE, sum);
FN(scale, "(data: mutbuf[i32], k: i32)", "data[i] *= k, in place", FERRULE_FN_THREAD_SAFE, scale);
FN(apply, "(f: fn(i64) -> i64, x: i64) -> i64", "f(x), called back in the host", FERRULE_FN_THREAD_SAFE, apply);
FN(fail, "(message: str) -> i64", "fails with the message", FERRULE_FN_THREAD_SAFE, fail);
FN(say, "(level: i32, message: str)", "logs the message", FERRULE_FN_THREAD_SAFE, say);
FN(pid, "() -> i64", "the process the plugin runs in", FERRULE_FN_THREAD_SAFE, pid);
FN(sleep_ms, "(ms: u64)", "sleeps", FERRULE_FN_THREAD_SAFE, sleep_ms);
FN(segfault, "()", "writes through NULL", FERRULE_FN_THREAD_SAFE, segfault);
FN(abort, "()", "calls abort()", FERRULE_FN_THREAD_SAFE, do_abort);
FN(exit, "(status: i32)", "calls exit(status)", FERRULE_FN_THREAD_SAFE, do_exit);
FN(spin, "()", "loops forever, holding the GIL", FERRULE_FN_THREAD_SAFE | FERRULE_FN_QUICK, spin);
FN(hog, "()", "allocates without bound", FERRULE_FN_THREAD_SAFE, hog);
FN(overflow, "() -> u64", "recurses until the stack overflows", FERRULE_FN_THREAD_SAFE, overflow);
FN(flood, "(lines: u64, to_stderr: bool) -> u64", "writes lines of output", FERRULE_FN_THREAD_SAFE, flood);
FN(fork, "() -> i64", "forks and returns in both processes", FERRULE_FN_THREAD_SAFE, do_fork);
FN(last_words, "(text: str)", "stderr, a log line, then a crash", FERRULE_FN_THREAD_SAFE, last_words);
FN(maybe_crash, "(x: i64, crash: bool) -> i64", "x + 1, or a crash", FERRULE_FN_THREAD_SAFE, maybe_crash);
FN(raise_signal, "(signal: i32)", "raises a signal", FERRULE_FN_THREAD_SAFE, raise_signal);
FN(shrink_memfds, "() -> i64", "tries to truncate isolated mode's shared memory", FERRULE_FN_THREAD_SAFE, shrink_memfds);
FN(int_as_str, "() -> str", "writes ret->i64 = 42 instead of a str", FERRULE_FN_THREAD_SAFE | FERRULE_FN_QUICK, int_as_str);
FN(wrong_bytes, "(ptr: u64, len: u64) -> bytes", "returns ret->bytes {ptr, len, NULL}", FERRULE_FN_THREAD_SAFE,
   wrong_bytes);
FN(count_if, "(f: fn(i64) -> bool, n: i64) -> i64", "how many of 0..n-1 f accepts", FERRULE_FN_THREAD_SAFE, count_if);

static const ferrule_function *const functions[] = {
    &fn_add, &fn_add_slow, &fn_mix, &fn_negate, &fn_halve, &fn_reverse, &fn_reverse_bytes, &fn_sum, &fn_scale,
    &fn_apply, &fn_fail, &fn_say, &fn_pid, &fn_sleep_ms, &fn_segfault, &fn_abort, &fn_exit, &fn_spin, &fn_hog,
    &fn_overflow, &fn_flood, &fn_fork, &fn_last_words, &fn_maybe_crash, &fn_raise_signal, &fn_shrink_memfds,
    &fn_count_if, &fn_int_as_str, &fn_wrong_bytes,
};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.ferrule.tests.hostile",
    "Hostile",
    "1.0.0",
    "misbehaves on request, for the isolation tests",
    "MIT",
    sizeof functions / sizeof functions[0],
    0,
    functions,
    init,
    NULL,
    0,
    0,
    NULL,
};

FERRULE_ENTRY { return &descriptor; }
