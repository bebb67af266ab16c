/* A hostile lender and borrower for host/rust/tests/lending.rs: a Counter
 * implementation (offered twice, once with -DONE_OFFER) that counts live
 * instances, overlapping calls and calls into a plugin state after its
 * shutdown; creates, destroys, shutdowns and adds that query and release at
 * the worst moments (set()); and client functions that abuse
 * host->query/call/release (raw, forged, release_raw). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferrule.h"
#include "iface_api.h"

typedef struct pstate {
    volatile int dead;
    int serial;
    volatile long live;
} pstate;

static volatile int g_serial = 0;
static volatile long g_live = 0, g_shutdowns = 0, g_viol = 0, g_overlap = 0, g_destroys = 0, g_creates = 0;
static volatile long g_in_call = 0;
/* behaviour switches */
static volatile int g_create_queries = 0;   /* create queries a Counter (and keeps it in the instance) */
static volatile int g_destroy_releases = 0; /* destroy releases g_token */
static volatile int g_shutdown_queries = 0; /* shutdown queries a Counter and keeps it */
static volatile int g_add_hook = 0;         /* add(n==777) calls g_token's add(1) (re-entry) */
static volatile int g_add_query = 0;        /* add(n==778) queries a Counter into g_token */
static const ferrule_object *volatile g_token = NULL;
static const ferrule_host *volatile g_host = NULL;

static void spin(uint32_t us) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000L + (now.tv_nsec - start.tv_nsec) / 1000 < (long)us);
}

typedef struct counter {
    pstate *ps;
    int64_t total;
    const ferrule_object *held;
    const ferrule_host *host;
    volatile long in_call;
} counter;

static void check_alive(pstate *ps) {
    if (ps == NULL || ps->dead) __sync_fetch_and_add(&g_viol, 1);
}

static int32_t hc_create(const ferrule_host *host, void *plugin_state, counter **self) {
    counter *c = calloc(1, sizeof *c);
    check_alive(plugin_state);
    c->ps = plugin_state;
    c->host = host;
    if (g_create_queries) {
        c->held = host->query(host, TAPI_COUNTER_ID, TAPI_COUNTER_REVISION, TAPI_COUNTER_FINGERPRINT);
    }
    __sync_fetch_and_add(&g_live, 1);
    __sync_fetch_and_add(&c->ps->live, 1);
    __sync_fetch_and_add(&g_creates, 1);
    *self = c;
    return FERRULE_OK;
}

static void hc_destroy(const ferrule_host *host, void *plugin_state, counter *self) {
    check_alive(plugin_state);
    if (self->held) host->release(host, self->held);
    if (g_destroy_releases && g_token) {
        const ferrule_object *t = g_token;
        g_token = NULL;
        host->release(host, t);
    }
    __sync_fetch_and_sub(&g_live, 1);
    __sync_fetch_and_sub(&self->ps->live, 1);
    __sync_fetch_and_add(&g_destroys, 1);
    free(self);
}

static int32_t hc_add(const ferrule_host *host, counter *self, int64_t n, int64_t *result) {
    check_alive(self->ps);
    if (__sync_add_and_fetch(&self->in_call, 1) > 1) __sync_fetch_and_add(&g_overlap, 1);
    if (n == 777 && g_add_hook && g_token) {
        ferrule_value a[1], r;
        a[0].i64 = 1;
        memset(&r, 0, sizeof r);
        __sync_sub_and_fetch(&self->in_call, 1);
        int32_t st = host->call(host, g_token, 0, a, &r);
        __sync_add_and_fetch(&self->in_call, 1);
        if (st != FERRULE_OK) {
            if (r.bytes.release) r.bytes.release((void *)r.bytes.ptr, r.bytes.len);
            __sync_sub_and_fetch(&self->in_call, 1);
            return ferrule_fail(host, "re-entrant call failed");
        }
        n = 0;
    }
    if (n == 779 && g_add_hook && g_token) { /* re-enter without leaving: counts as overlap */
        ferrule_value a[1], r;
        a[0].i64 = 1;
        memset(&r, 0, sizeof r);
        int32_t st = host->call(host, g_token, 0, a, &r);
        if (st != FERRULE_OK && r.bytes.release) r.bytes.release((void *)r.bytes.ptr, r.bytes.len);
        n = 0;
    }
    if (n == 778 && g_add_query) {
        g_token = host->query(host, TAPI_COUNTER_ID, TAPI_COUNTER_REVISION, TAPI_COUNTER_FINGERPRINT);
        fprintf(stderr, "evil: add(778) query got %p\n", (void *)g_token);
        n = 0;
    }
    spin(20);
    self->total += n;
    *result = self->total;
    __sync_sub_and_fetch(&self->in_call, 1);
    return FERRULE_OK;
}

static int32_t hc_total(const ferrule_host *host, counter *self, int64_t *result) {
    (void)host;
    check_alive(self->ps);
    *result = self->total;
    return FERRULE_OK;
}

static int32_t hc_slow_add(const ferrule_host *host, counter *self, int64_t n, uint32_t us, int64_t *result) {
    (void)host;
    check_alive(self->ps);
    if (__sync_add_and_fetch(&self->in_call, 1) > 1) __sync_fetch_and_add(&g_overlap, 1);
    int64_t seen = self->total;
    spin(us);
    self->total = seen + n;
    *result = self->total;
    __sync_sub_and_fetch(&self->in_call, 1);
    return FERRULE_OK;
}

static int32_t hc_name(const ferrule_host *host, counter *self, ferrule_bytes *result) {
    (void)host;
    check_alive(self->ps);
    result->ptr = "h";
    result->len = 1;
    return FERRULE_OK;
}

static int32_t hc_fail(const ferrule_host *host, counter *self, const char *m, size_t len) {
    (void)self;
    host->set_error(host, m, len);
    return FERRULE_ERROR;
}

TAPI_COUNTER_IMPLEMENT(hc, counter, "h-counter", NULL);

static int32_t hc2_create(const ferrule_host *h, void *ps, counter **s) { return hc_create(h, ps, s); }
static void hc2_destroy(const ferrule_host *h, void *ps, counter *s) { hc_destroy(h, ps, s); }
static int32_t hc2_add(const ferrule_host *h, counter *s, int64_t n, int64_t *r) { return hc_add(h, s, n, r); }
static int32_t hc2_total(const ferrule_host *h, counter *s, int64_t *r) { return hc_total(h, s, r); }
static int32_t hc2_slow_add(const ferrule_host *h, counter *s, int64_t n, uint32_t us, int64_t *r) {
    return hc_slow_add(h, s, n, us, r);
}
static int32_t hc2_name(const ferrule_host *h, counter *s, ferrule_bytes *r) { return hc_name(h, s, r); }
static int32_t hc2_fail(const ferrule_host *h, counter *s, const char *m, size_t l) { return hc_fail(h, s, m, l); }
TAPI_COUNTER_IMPLEMENT(hc2, counter, "h-counter-2", NULL);

/* ---------------------------------------------------------------- functions */

static int32_t f_stats(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    char buf[256];
    (void)state;
    (void)args;
    int n = snprintf(buf, sizeof buf, "live=%ld shut=%ld viol=%ld overlap=%ld creates=%ld destroys=%ld", g_live,
                     g_shutdowns, g_viol, g_overlap, g_creates, g_destroys);
    return ferrule_return_copy(host, ret, buf, (size_t)n);
}

static int32_t f_alive(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    (void)args;
    check_alive(state);
    ret->i64 = 1;
    return FERRULE_OK;
}

/* set(what: u32, value: u32) */
static int32_t f_set(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    (void)state;
    (void)ret;
    int v = (int)args[1].u64;
    switch (args[0].u64) {
    case 1: g_create_queries = v; break;
    case 2: g_destroy_releases = v; break;
    case 3: g_shutdown_queries = v; break;
    case 4: g_add_hook = v; break;
    case 5: g_add_query = v; break;
    case 9: g_live = g_shutdowns = g_viol = g_overlap = g_creates = g_destroys = 0; break;
    }
    return FERRULE_OK;
}

/* grab() -> u64: query a Counter, keep it as g_token; the token (0: none). */
static int32_t f_grab(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    (void)args;
    g_host = host;
    g_token = host->query(host, TAPI_COUNTER_ID, TAPI_COUNTER_REVISION, TAPI_COUNTER_FINGERPRINT);
    ret->u64 = (uint64_t)(uintptr_t)g_token;
    return FERRULE_OK;
}

/* poke(n: i64) -> i64: g_token's add(n). */
static int32_t f_poke(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value a[1], r;
    (void)state;
    a[0].i64 = args[0].i64;
    memset(&r, 0, sizeof r);
    int32_t st = host->call(host, g_token, 0, a, &r);
    if (st != FERRULE_OK) {
        host->set_error(host, (const char *)r.bytes.ptr, r.bytes.ptr ? r.bytes.len : 0);
        if (r.bytes.release) r.bytes.release((void *)r.bytes.ptr, r.bytes.len);
        return st;
    }
    ret->i64 = r.i64;
    return FERRULE_OK;
}

/* drop_token(): release g_token */
static int32_t f_drop_token(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    (void)args;
    (void)ret;
    const ferrule_object *t = g_token;
    g_token = NULL;
    host->release(host, t);
    return FERRULE_OK;
}

/* raw(token: u64, method: u32, null_args: bool, null_ret: bool) -> str: host->call result description */
static int32_t f_raw(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value a[4], r;
    char buf[512];
    (void)state;
    memset(a, 0, sizeof a);
    memset(&r, 0, sizeof r);
    int32_t st = host->call(host, (const ferrule_object *)(uintptr_t)args[0].u64, (uint32_t)args[1].u64,
                            args[2].u64 ? NULL : a, args[3].u64 ? NULL : &r);
    int n;
    if (st == FERRULE_OK) {
        n = snprintf(buf, sizeof buf, "ok %lld", (long long)r.i64);
    } else {
        n = snprintf(buf, sizeof buf, "status %d: %.*s", st, r.bytes.ptr ? (int)r.bytes.len : 0,
                     r.bytes.ptr ? (const char *)r.bytes.ptr : "");
        if (r.bytes.release) r.bytes.release((void *)r.bytes.ptr, r.bytes.len);
    }
    return ferrule_return_copy(host, ret, buf, (size_t)n);
}

/* release_raw(token: u64) */
static int32_t f_release_raw(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    (void)ret;
    host->release(host, (const ferrule_object *)(uintptr_t)args[0].u64);
    return FERRULE_OK;
}

/* forged(token: u64) -> str: host->call with a copy of the host table (same host_data) */
static int32_t f_forged(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_host copy = *host;
    ferrule_value a[1], r;
    char buf[512];
    (void)state;
    a[0].i64 = 1;
    memset(&r, 0, sizeof r);
    int32_t st = host->call(&copy, (const ferrule_object *)(uintptr_t)args[0].u64, 0, a, &r);
    int n = snprintf(buf, sizeof buf, "status %d: %.*s", st, st && r.bytes.ptr ? (int)r.bytes.len : 0,
                     st && r.bytes.ptr ? (const char *)r.bytes.ptr : "");
    if (st && r.bytes.release) r.bytes.release((void *)r.bytes.ptr, r.bytes.len);
    return ferrule_return_copy(host, ret, buf, (size_t)n);
}

static int32_t init(const ferrule_host *host, const char *config, size_t len, void **state) {
    (void)host;
    if (len == 10 && memcmp(config, "query-fail", 10) == 0) {
        const ferrule_object *o = host->query(host, TAPI_COUNTER_ID, TAPI_COUNTER_REVISION, TAPI_COUNTER_FINGERPRINT);
        fprintf(stderr, "evil: init queried %p, now fails\n", (void *)o);
        return ferrule_fail(host, "init fails after a query");
    }
    pstate *ps = calloc(1, sizeof *ps);
    ps->serial = __sync_add_and_fetch(&g_serial, 1);
    *state = ps;
    return FERRULE_OK;
}

static void shutdown_(const ferrule_host *host, void *state) {
    pstate *ps = state;
    if (ps->dead) __sync_fetch_and_add(&g_viol, 1000); /* twice */
    if (ps->live > 0) __sync_fetch_and_add(&g_viol, 1000000); /* its instances still alive */
    if (g_shutdown_queries) {
        const ferrule_object *o = host->query(host, TAPI_COUNTER_ID, TAPI_COUNTER_REVISION, TAPI_COUNTER_FINGERPRINT);
        fprintf(stderr, "evil: shutdown query got %p\n", (void *)o);
    }
    ps->dead = 1; /* leaked on purpose, to detect use after shutdown */
    __sync_fetch_and_add(&g_shutdowns, 1);
}

static const ferrule_function fn_stats = FERRULE_FUNCTION("stats", "() -> str", NULL, FERRULE_FN_THREAD_SAFE, f_stats);
static const ferrule_function fn_set = FERRULE_FUNCTION("set", "(what: u32, value: u32)", NULL, FERRULE_FN_THREAD_SAFE, f_set);
static const ferrule_function fn_alive = FERRULE_FUNCTION("alive", "() -> i64", NULL, FERRULE_FN_THREAD_SAFE, f_alive);
static const ferrule_function fn_grab = FERRULE_FUNCTION("grab", "() -> u64", NULL, FERRULE_FN_THREAD_SAFE, f_grab);
static const ferrule_function fn_poke = FERRULE_FUNCTION("poke", "(n: i64) -> i64", NULL, FERRULE_FN_THREAD_SAFE, f_poke);
static const ferrule_function fn_drop_token =
    FERRULE_FUNCTION("drop_token", "()", NULL, FERRULE_FN_THREAD_SAFE, f_drop_token);
static const ferrule_function fn_raw = FERRULE_FUNCTION(
    "raw", "(token: u64, method: u32, null_args: bool, null_ret: bool) -> str", NULL, FERRULE_FN_THREAD_SAFE, f_raw);
static const ferrule_function fn_release_raw =
    FERRULE_FUNCTION("release_raw", "(token: u64)", NULL, FERRULE_FN_THREAD_SAFE, f_release_raw);
static const ferrule_function fn_forged =
    FERRULE_FUNCTION("forged", "(token: u64) -> str", NULL, FERRULE_FN_THREAD_SAFE, f_forged);

static const ferrule_function *const functions[] = {&fn_stats, &fn_set, &fn_grab, &fn_poke,
                                                     &fn_drop_token, &fn_raw, &fn_release_raw, &fn_forged, &fn_alive};
#ifdef ONE_OFFER
static const ferrule_interface *const interfaces[] = {&hc_interface};
#else
static const ferrule_interface *const interfaces[] = {&hc_interface, &hc2_interface};
#endif

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.review.hostile",
    "hostile",
    "0.1.0",
    NULL,
    "MIT",
    sizeof functions / sizeof functions[0],
    0,
    functions,
    init,
    shutdown_,
    sizeof interfaces / sizeof interfaces[0],
    0,
    interfaces,
};

FERRULE_ENTRY { return &descriptor; }
