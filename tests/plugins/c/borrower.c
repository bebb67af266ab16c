/* A second hostile plugin for host/rust/tests/lending.rs: a Counter whose
 * create can call the host's Store service (set(1, 1)) or take the plugin's
 * own mutex (set(2, 1)); twice(us), a call that uses its loan before and
 * after a sleep; locked_query, which queries while holding that mutex; and a
 * worker thread of its own that calls a lent service. It counts shutdowns
 * and shutdowns that ran while its worker was inside a host callback. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ferrule.h"
#include "iface_api.h"

static pthread_mutex_t M = PTHREAD_MUTEX_INITIALIZER;
static volatile int g_create_calls = 0, g_create_locks = 0;
static const ferrule_object *volatile g_token = NULL;
static volatile long g_shutdowns = 0, g_viol = 0;
typedef struct counter { int64_t total; } counter;
static void nap(uint64_t us) { struct timespec t = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 }; nanosleep(&t, NULL); }

static int32_t call_add(const ferrule_host *host, const ferrule_object *o, int64_t n, char *err, size_t errlen) {
    ferrule_value a[1], r;
    a[0].i64 = n;
    memset(&r, 0, sizeof r);
    int32_t st = host->call(host, o, 0, a, &r);
    if (st != FERRULE_OK) {
        snprintf(err, errlen, "%.*s", r.bytes.ptr ? (int)r.bytes.len : 0, r.bytes.ptr ? (const char *)r.bytes.ptr : "");
        if (r.bytes.release) r.bytes.release((void *)r.bytes.ptr, r.bytes.len);
    }
    return st;
}

static volatile int g_in_cb = 0;
static const ferrule_host *volatile g_host = NULL;
static void *worker_main(void *arg) {
    (void)arg;
    char err[256];
    g_in_cb = 1;
    call_add(g_host, g_token, 1, err, sizeof err);
    g_in_cb = 0;
    return NULL;
}

static int32_t rc_create(const ferrule_host *host, void *ps, counter **self) {
    (void)ps;
    if (g_create_locks) { pthread_mutex_lock(&M); pthread_mutex_unlock(&M); }
    if (g_create_calls) {
        const ferrule_object *o = host->query(host, TAPI_STORE_ID, TAPI_STORE_REVISION, TAPI_STORE_FINGERPRINT);
        if (o) {
            ferrule_value a[2], r;
            memset(a, 0, sizeof a); memset(&r, 0, sizeof r);
            a[0].bytes.ptr = "k"; a[0].bytes.len = 1; a[1].bytes.ptr = "v"; a[1].bytes.len = 1;
            int32_t st = host->call(host, o, TAPI_STORE_METHOD_PUT, a, &r);
            if (st != FERRULE_OK && r.bytes.release) r.bytes.release((void *)r.bytes.ptr, r.bytes.len);
            host->release(host, o);
        }
    }
    *self = calloc(1, sizeof(counter));
    return FERRULE_OK;
}
static void rc_destroy(const ferrule_host *h, void *ps, counter *s) { (void)h; (void)ps; free(s); }
static int32_t rc_add(const ferrule_host *h, counter *s, int64_t n, int64_t *r) { (void)h; s->total += n; *r = s->total; return FERRULE_OK; }
static int32_t rc_total(const ferrule_host *h, counter *s, int64_t *r) { (void)h; *r = s->total; return FERRULE_OK; }
static int32_t rc_slow_add(const ferrule_host *h, counter *s, int64_t n, uint32_t us, int64_t *r) { (void)us; return rc_add(h, s, n, r); }
static int32_t rc_name(const ferrule_host *h, counter *s, ferrule_bytes *r) { (void)h; (void)s; r->ptr = "r"; r->len = 1; return FERRULE_OK; }
static int32_t rc_fail(const ferrule_host *h, counter *s, const char *m, size_t len) { (void)s; h->set_error(h, m, len); return FERRULE_ERROR; }
TAPI_COUNTER_IMPLEMENT(rc, counter, "r-counter", NULL);

static int32_t f_set(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)ret;
    int v = (int)args[1].u64;
    switch (args[0].u64) { case 1: g_create_calls = v; break; case 2: g_create_locks = v; break; }
    return FERRULE_OK;
}
static int32_t f_grab(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state; (void)args;
    g_token = host->query(host, TAPI_COUNTER_ID, TAPI_COUNTER_REVISION, TAPI_COUNTER_FINGERPRINT);
    ret->u64 = (uint64_t)(uintptr_t)g_token;
    return FERRULE_OK;
}
/* twice(us) -> i64: add(1) on g_token, sleep us, add(1) again */
static int32_t f_twice(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    char err[256];
    if (call_add(host, g_token, 1, err, sizeof err) != FERRULE_OK) return ferrule_fail(host, "first call failed");
    nap(args[0].u64);
    if (call_add(host, g_token, 1, err, sizeof err) != FERRULE_OK) {
        char msg[400];
        int n = snprintf(msg, sizeof msg, "second call failed: %s", err);
        host->set_error(host, msg, (size_t)n);
        return FERRULE_ERROR;
    }
    ret->i64 = 2;
    return FERRULE_OK;
}
/* locked_query(us) -> bool: hold M, sleep, query a Counter, release it */
static int32_t f_locked_query(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    pthread_mutex_lock(&M);
    nap(args[0].u64);
    const ferrule_object *o = host->query(host, TAPI_COUNTER_ID, TAPI_COUNTER_REVISION, TAPI_COUNTER_FINGERPRINT);
    host->release(host, o);
    pthread_mutex_unlock(&M);
    ret->u64 = o != NULL;
    return FERRULE_OK;
}
static int32_t f_worker(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state; (void)args; (void)ret;
    pthread_t t;
    g_host = host;
    pthread_create(&t, NULL, worker_main, NULL);
    pthread_detach(t);
    return FERRULE_OK;
}
static int32_t f_viol(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args; ret->i64 = g_viol; return FERRULE_OK;
}
static int32_t f_shutdowns(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state; (void)args; ret->i64 = g_shutdowns; return FERRULE_OK;
}
static int32_t init(const ferrule_host *host, const char *config, size_t len, void **state) {
    (void)host; (void)config; (void)len; *state = NULL; return FERRULE_OK;
}
static void shutdown_(const ferrule_host *host, void *state) { (void)host; (void)state; if (g_in_cb) __sync_fetch_and_add(&g_viol, 1); __sync_fetch_and_add(&g_shutdowns, 1); }

static const ferrule_function fn_set = FERRULE_FUNCTION("set", "(what: u32, value: u32)", NULL, FERRULE_FN_THREAD_SAFE, f_set);
static const ferrule_function fn_grab = FERRULE_FUNCTION("grab", "() -> u64", NULL, FERRULE_FN_THREAD_SAFE, f_grab);
static const ferrule_function fn_twice = FERRULE_FUNCTION("twice", "(us: u32) -> i64", NULL, FERRULE_FN_THREAD_SAFE, f_twice);
static const ferrule_function fn_lq = FERRULE_FUNCTION("locked_query", "(us: u32) -> bool", NULL, FERRULE_FN_THREAD_SAFE, f_locked_query);
static const ferrule_function fn_sd = FERRULE_FUNCTION("shutdowns", "() -> i64", NULL, FERRULE_FN_THREAD_SAFE, f_shutdowns);
static const ferrule_function fn_worker = FERRULE_FUNCTION("worker", "()", NULL, FERRULE_FN_THREAD_SAFE, f_worker);
static const ferrule_function fn_viol = FERRULE_FUNCTION("viol", "() -> i64", NULL, FERRULE_FN_THREAD_SAFE, f_viol);
static const ferrule_function *const functions[] = {&fn_set, &fn_grab, &fn_twice, &fn_lq, &fn_sd, &fn_worker, &fn_viol};
static const ferrule_interface *const interfaces[] = {&rc_interface};
static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.review.two", "review2", "0.1.0", NULL, "MIT",
    sizeof functions / sizeof functions[0], 0, functions, init, shutdown_,
    sizeof interfaces / sizeof interfaces[0], 0, interfaces,
};
FERRULE_ENTRY { return &descriptor; }
