/* A plugin that loads and works, but is flawed in the one way chosen with
 * -DFLAW_<NAME>, for the tests of ferrule validate (tests/test_validate.py):
 * each flaw is something load cannot see and validate must. Without a FLAW
 * it passes validate at every level. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferrule.h"

typedef struct flawed_state {
    char *scratch;
} flawed_state;

#ifdef FLAW_THREAD_LEAK
static void *idle(void *arg) {
    (void)arg;
    for (;;) {
        pause();
    }
    return NULL;
}
#endif

static int32_t init(const ferrule_host *host, const char *config, size_t config_len, void **state) {
    flawed_state *s = (flawed_state *)calloc(1, sizeof *s);
    (void)config;
    (void)config_len;
    if (s == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    s->scratch = (char *)malloc(8192);
    if (s->scratch == NULL) {
        free(s);
        return ferrule_fail(host, "out of memory");
    }
#ifdef FLAW_THREAD_LEAK /* a worker thread that shutdown never stops */
    {
        pthread_t thread;
        if (pthread_create(&thread, NULL, idle, NULL) == 0) {
            pthread_detach(thread);
        }
    }
#endif
#ifdef FLAW_FD_LEAK /* a file that shutdown never closes */
    (void)open("/dev/null", O_RDONLY | O_CLOEXEC);
#endif
#ifdef FLAW_DAEMON /* a helper process, detached, that shutdown never stops */
    if (fork() == 0) {
        setsid();
        if (fork() == 0) {
            for (;;) {
                pause();
            }
        }
        _exit(0);
    }
#endif
#ifdef FLAW_CHANNEL /* writes a line to every descriptor it did not open */
    {
        int fd;
        for (fd = 3; fd < 1024; fd++) {
            (void)!write(fd, "garbage\n", 8);
        }
    }
#endif
    *state = s;
    return FERRULE_OK;
}

#ifdef FLAW_EXIT_HANG /* a static destructor that never returns */
__attribute__((destructor)) static void at_unload(void) {
    for (;;) {
        pause();
    }
}
#endif

static void shutdown_plugin(const ferrule_host *host, void *state) {
    flawed_state *s = (flawed_state *)state;
    (void)host;
#ifdef FLAW_SHUTDOWN_CRASH
    s = NULL;
    s->scratch = NULL; /* a write through NULL */
#endif
#ifndef FLAW_LEAK_STATE /* else: the scratch buffer is never freed */
    free(s->scratch);
#endif
    free(s);
}

static int32_t add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    (void)state;
#ifdef FLAW_HANG /* never returns (sleeping, not spinning) */
    for (;;) {
        pause();
    }
#endif
    ret->i64 = (int64_t)((uint64_t)args[0].i64 + (uint64_t)args[1].i64);
    return FERRULE_OK;
}

/* The text, upper-cased ASCII, in memory the host frees (or, with
 * FLAW_LEAK_RESULT, malloc'd memory nobody releases). */
static int32_t shout(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    size_t i, n = args[0].bytes.len;
    const char *text = (const char *)args[0].bytes.ptr;
#ifdef FLAW_LEAK_RESULT
    char *out = (char *)malloc(n + 1);
#else
    char *out = (char *)host->alloc(n + 1);
#endif
    (void)state;
    if (out == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    for (i = 0; i < n; i++) {
        out[i] = (text[i] >= 'a' && text[i] <= 'z') ? (char)(text[i] - 32) : text[i];
#ifdef FLAW_WRITES_TEXT /* upper-cases the caller's own (immutable) string too */
        ((char *)text)[i] = out[i];
#endif
    }
    ret->bytes.ptr = out;
    ret->bytes.len = n;
#ifdef FLAW_LEAK_RESULT
    ret->bytes.release = NULL; /* "static": the host copies it and lets it be */
#else
    ret->bytes.release = host->free;
#endif
    return FERRULE_OK;
}

/* Sum of the bytes; with FLAW_WRITES_INPUT it also clears the caller's
 * read-only buffer. */
static int32_t checksum(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    size_t i;
    uint64_t sum = 0;
    unsigned char *data = (unsigned char *)args[0].buf.ptr;
    (void)host;
    (void)state;
    for (i = 0; i < args[0].buf.len; i++) {
        sum += data[i];
#ifdef FLAW_WRITES_INPUT
        data[i] = 0;
#endif
    }
    ret->u64 = sum;
    return FERRULE_OK;
}

/* x * 3, through one static slot: with FLAW_RACE that slot is shared by all
 * threads, although the function is flagged thread-safe. */
static int32_t triple(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
#ifdef FLAW_RACE
    static volatile int64_t slot;
    struct timespec pause_for = {0, 20000};
    slot = args[0].i64;
    nanosleep(&pause_for, NULL); /* another thread overwrites slot meanwhile */
    ret->i64 = slot * 3;
#else
    ret->i64 = args[0].i64 * 3;
#endif
    (void)host;
    (void)state;
    return FERRULE_OK;
}

#ifdef FLAW_NO_MESSAGE
#define FAIL_MESSAGE(host, text) FERRULE_ERROR
#else
#define FAIL_MESSAGE(host, text) ferrule_fail(host, text)
#endif

static int32_t ratio(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    (void)state;
    if (args[1].f64 == 0.0) {
        return FAIL_MESSAGE(host, "ratio: b must not be 0");
    }
    ret->f64 = args[0].f64 / args[1].f64;
    return FERRULE_OK;
}

#ifndef TRIPLE_FLAGS
#define TRIPLE_FLAGS FERRULE_FN_THREAD_SAFE
#endif

#ifdef FLAW_NO_DOCS
#define DOC(text) NULL
#else
#define DOC(text) text
#endif

static const ferrule_function f_add =
    FERRULE_FUNCTION("add", "(a: i64, b: i64) -> i64", DOC("a + b, wrapping"), FERRULE_FN_THREAD_SAFE, add);
static const ferrule_function f_shout =
    FERRULE_FUNCTION("shout", "(text: str) -> str", DOC("the text upper-cased"), FERRULE_FN_THREAD_SAFE, shout);
static const ferrule_function f_checksum =
    FERRULE_FUNCTION("checksum", "(data: buf[u8]) -> u64", DOC("sum of the bytes"), FERRULE_FN_THREAD_SAFE, checksum);
static const ferrule_function f_triple =
    FERRULE_FUNCTION("triple", "(x: i64) -> i64", DOC("x * 3"), TRIPLE_FLAGS, triple);
static const ferrule_function f_ratio =
    FERRULE_FUNCTION("ratio", "(a: f64, b: f64) -> f64", DOC("a / b; fails when b is 0"), 0, ratio);

static const ferrule_function *const functions[] = {&f_add, &f_shout, &f_checksum, &f_triple, &f_ratio};

#ifdef FLAW_METADATA
#define DESCRIPTION ""
#define LICENSE "MIT-ish"
#define ID "org.example.flawed"
#else
#define DESCRIPTION "works, or is flawed in one chosen way"
#define LICENSE "MIT"
#define ID "org.ferrule.tests.flawed"
#endif

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    ID,
    "Flawed",
    "1.0.0",
    DESCRIPTION,
    LICENSE,
    sizeof functions / sizeof functions[0],
    0,
    functions,
    init,
    shutdown_plugin,
    0,
    0,
    NULL,
};

FERRULE_ENTRY { return &descriptor; }
