/* The C test plugin for host-defined interfaces, built only from ferrule.h
 * and the header `ferrule generate` wrote from tests/iface_api.py
 * (tests/plugins/generated/iface_api.h, prefix "tapi").
 *
 * Implementations: Counter as "c-counter" and "c-counter-b", Shapes as
 * "c-shapes". Plain functions use interfaces through the host, as a client:
 * store_roundtrip, store_get, store2_count, counter_via_host, query_missing;
 * store_loop, counter_loop and counter_direct_loop for bench/run.py;
 * hold_store, call_token and release_token for the test that a plugin cannot
 * use what was lent to another;
 * error_from_thread breaks the thread contract on purpose (debug-mode test).
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferrule.h"
#include "iface_api.h"

/* ------------------------------------------------------------------ Counter */

typedef struct counter {
    const char *name; /* static: the implementation's name */
    int64_t total;
} counter;

static void log_named(const ferrule_host *host, const char *what, const char *name) {
    char line[128];
    snprintf(line, sizeof line, "%s %s", what, name);
    ferrule_log(host, FERRULE_LOG_INFO, line);
}

static int32_t counter_make(const ferrule_host *host, const char *name, counter **self) {
    counter *made = (counter *)malloc(sizeof *made);
    if (made == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    made->name = name;
    made->total = 0;
    log_named(host, "create", name);
    *self = made;
    return FERRULE_OK;
}

static int32_t counter_create(const ferrule_host *host, void *plugin_state, counter **self) {
    (void)plugin_state;
    return counter_make(host, "c-counter", self);
}

static void counter_destroy(const ferrule_host *host, void *plugin_state, counter *self) {
    (void)plugin_state;
    log_named(host, "destroy", self->name);
    free(self);
}

static int32_t counter_add(const ferrule_host *host, counter *self, int64_t n, int64_t *result) {
    (void)host;
    self->total += n;
    *result = self->total;
    return FERRULE_OK;
}

static int32_t counter_total(const ferrule_host *host, counter *self, int64_t *result) {
    (void)host;
    *result = self->total;
    return FERRULE_OK;
}

static void spin(uint32_t us) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000L + (now.tv_nsec - start.tv_nsec) / 1000 < (long)us);
}

static int32_t counter_slow_add(const ferrule_host *host, counter *self, int64_t n, uint32_t spin_us,
                                int64_t *result) {
    int64_t seen = self->total;
    (void)host;
    spin(spin_us);
    self->total = seen + n;
    *result = self->total;
    return FERRULE_OK;
}

static int32_t counter_name(const ferrule_host *host, counter *self, ferrule_bytes *result) {
    (void)host;
    result->ptr = self->name; /* static: no release */
    result->len = strlen(self->name);
    return FERRULE_OK;
}

static int32_t counter_fail(const ferrule_host *host, counter *self, const char *message, size_t message_len) {
    (void)self;
    host->set_error(host, message, message_len);
    return FERRULE_ERROR;
}

TAPI_COUNTER_IMPLEMENT(counter, counter, "c-counter", "A running total, in C.");

/* The same code offered a second time, under another name: only create differs. */
static int32_t counter_b_create(const ferrule_host *host, void *plugin_state, counter **self) {
    (void)plugin_state;
    return counter_make(host, "c-counter-b", self);
}

static void counter_b_destroy(const ferrule_host *host, void *plugin_state, counter *self) {
    counter_destroy(host, plugin_state, self);
}

static int32_t counter_b_add(const ferrule_host *host, counter *self, int64_t n, int64_t *result) {
    return counter_add(host, self, n, result);
}

static int32_t counter_b_total(const ferrule_host *host, counter *self, int64_t *result) {
    return counter_total(host, self, result);
}

static int32_t counter_b_slow_add(const ferrule_host *host, counter *self, int64_t n, uint32_t spin_us,
                                  int64_t *result) {
    return counter_slow_add(host, self, n, spin_us, result);
}

static int32_t counter_b_name(const ferrule_host *host, counter *self, ferrule_bytes *result) {
    return counter_name(host, self, result);
}

static int32_t counter_b_fail(const ferrule_host *host, counter *self, const char *message, size_t message_len) {
    return counter_fail(host, self, message, message_len);
}

TAPI_COUNTER_IMPLEMENT(counter_b, counter, "c-counter-b", "The same running total, offered twice.");

/* ------------------------------------------------------------------ Shapes */

/* Thread-safe: the labels that token() keeps are guarded by a mutex. */
typedef struct shapes {
    pthread_mutex_t lock;
    char **labels; /* NUL-terminated copies; token t is labels[t - 1] */
    size_t *lengths;
    size_t count, capacity;
} shapes;

static int32_t shapes_create(const ferrule_host *host, void *plugin_state, shapes **self) {
    shapes *made = (shapes *)calloc(1, sizeof *made);
    (void)plugin_state;
    if (made == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    pthread_mutex_init(&made->lock, NULL);
    *self = made;
    return FERRULE_OK;
}

static void shapes_destroy(const ferrule_host *host, void *plugin_state, shapes *self) {
    size_t i;
    (void)host;
    (void)plugin_state;
    for (i = 0; i < self->count; i++) {
        free(self->labels[i]);
    }
    free(self->labels);
    free(self->lengths);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

static int32_t shapes_area(const ferrule_host *host, shapes *self, tapi_rect r, uint64_t *result) {
    (void)host;
    (void)self;
    *result = (uint64_t)r.width * r.height;
    return FERRULE_OK;
}

static int32_t shapes_grow(const ferrule_host *host, shapes *self, tapi_rect r, uint32_t by, tapi_rect *result) {
    (void)host;
    (void)self;
    result->origin.x = (int32_t)(r.origin.x - (int64_t)by);
    result->origin.y = (int32_t)(r.origin.y - (int64_t)by);
    result->width = r.width + 2 * by;
    result->height = r.height + 2 * by;
    result->filled = r.filled;
    result->area_hint = (uint64_t)result->width * result->height;
    return FERRULE_OK;
}

static int32_t shapes_mix(const ferrule_host *host, shapes *self, bool flag, int8_t a, uint16_t b, float c,
                          double d, uint64_t e, double *result) {
    double sum = (double)a + (double)b + (double)c + d + (double)e;
    (void)host;
    (void)self;
    *result = flag ? sum : -sum;
    return FERRULE_OK;
}

static int32_t shapes_sum(const ferrule_host *host, shapes *self, const double *values, size_t values_len,
                          double *result) {
    double sum = 0;
    size_t i;
    (void)host;
    (void)self;
    for (i = 0; i < values_len; i++) {
        sum += values[i];
    }
    *result = sum;
    return FERRULE_OK;
}

static int32_t shapes_fill(const ferrule_host *host, shapes *self, int32_t *target, size_t target_len,
                           int32_t value) {
    size_t i;
    (void)host;
    (void)self;
    for (i = 0; i < target_len; i++) {
        target[i] = value;
    }
    return FERRULE_OK;
}

static int32_t shapes_token(const ferrule_host *host, shapes *self, const char *label, size_t label_len,
                            tapi_token *result) {
    char *copy = (char *)malloc(label_len + 1);
    int32_t status = FERRULE_OK;
    if (copy == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    memcpy(copy, label, label_len);
    copy[label_len] = '\0';
    pthread_mutex_lock(&self->lock);
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? 2 * self->capacity : 8;
        char **labels = (char **)realloc(self->labels, capacity * sizeof *labels);
        size_t *lengths = labels ? (size_t *)realloc(self->lengths, capacity * sizeof *lengths) : NULL;
        if (labels != NULL) {
            self->labels = labels;
        }
        if (lengths != NULL) {
            self->lengths = lengths;
            self->capacity = capacity;
        }
    }
    if (self->count < self->capacity) {
        self->labels[self->count] = copy;
        self->lengths[self->count] = label_len;
        self->count++;
        *result = self->count;
    } else {
        free(copy);
        status = ferrule_fail(host, "out of memory");
    }
    pthread_mutex_unlock(&self->lock);
    return status;
}

static int32_t shapes_label(const ferrule_host *host, shapes *self, tapi_token t, ferrule_bytes *result) {
    int32_t status;
    pthread_mutex_lock(&self->lock);
    if (t >= 1 && t <= self->count) {
        status = tapi_bytes_copy(host, result, self->labels[t - 1], self->lengths[t - 1]);
    } else {
        char message[64];
        snprintf(message, sizeof message, "unknown token %llu", (unsigned long long)t);
        status = ferrule_fail(host, message);
    }
    pthread_mutex_unlock(&self->lock);
    return status;
}

static int32_t shapes_echo(const ferrule_host *host, shapes *self, const uint8_t *data, size_t data_len,
                           ferrule_bytes *result) {
    (void)self;
    return tapi_bytes_copy(host, result, data, data_len);
}

static int32_t shapes_apply(const ferrule_host *host, shapes *self, const ferrule_fn *f, int64_t x,
                            int64_t *result) {
    ferrule_value arg, ret;
    (void)self;
    arg.i64 = x;
    if (ferrule_invoke(host, f, &arg, &ret) != FERRULE_OK) {
        return ferrule_fail(host, "the host function failed");
    }
    *result = ret.i64;
    return FERRULE_OK;
}

TAPI_SHAPES_IMPLEMENT(shapes, shapes, "c-shapes", "Every parameter kind, in C.");

/* ------------------------------------------------------------------ using interfaces through the host */

/* store_roundtrip(key: str, value: str) -> str: put then get through Store rev 1. */
static int32_t store_roundtrip(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    tapi_store_client store;
    ferrule_bytes error;
    int32_t status;
    (void)state;
    if (!tapi_store_query(host, &store)) {
        return ferrule_fail(host, "no org.ferrule.test.store/1");
    }
    status = tapi_store_put(&store, (const char *)args[0].bytes.ptr, (const char *)args[1].bytes.ptr, &error);
    if (status == FERRULE_OK) {
        /* The value is ours: hand it on as our own result, release and all. */
        status = tapi_store_get(&store, (const char *)args[0].bytes.ptr, &ret->bytes, &error);
    }
    tapi_store_release(&store);
    return status == FERRULE_OK ? FERRULE_OK : tapi_fail_with(host, &error);
}

/* store_get(key: str) -> str: a failure carries the store's message unchanged. */
static int32_t store_get(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    tapi_store_client store;
    ferrule_bytes error;
    int32_t status;
    (void)state;
    if (!tapi_store_query(host, &store)) {
        return ferrule_fail(host, "no org.ferrule.test.store/1");
    }
    status = tapi_store_get(&store, (const char *)args[0].bytes.ptr, &ret->bytes, &error);
    tapi_store_release(&store);
    return status == FERRULE_OK ? FERRULE_OK : tapi_fail_with(host, &error);
}

/* store2_count() -> u32: through Store revision 2. */
static int32_t store2_count(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    tapi_store2_client store;
    ferrule_bytes error;
    uint32_t count = 0;
    int32_t status;
    (void)state;
    (void)args;
    if (!tapi_store2_query(host, &store)) {
        return ferrule_fail(host, "no org.ferrule.test.store/2");
    }
    status = tapi_store2_count(&store, &count, &error);
    tapi_store2_release(&store);
    if (status != FERRULE_OK) {
        return tapi_fail_with(host, &error);
    }
    ret->u64 = count;
    return FERRULE_OK;
}

/* counter_via_host(n: i64) -> i64: whichever Counter the host picks, add n twice. */
static int32_t counter_via_host(const ferrule_host *host, void *state, const ferrule_value *args,
                                ferrule_value *ret) {
    tapi_counter_client c;
    ferrule_bytes error;
    int64_t total = 0;
    int32_t status;
    (void)state;
    if (!tapi_counter_query(host, &c)) {
        return ferrule_fail(host, "no org.ferrule.test.counter/1");
    }
    status = tapi_counter_add(&c, args[0].i64, NULL, &error);
    if (status == FERRULE_OK) {
        status = tapi_counter_add(&c, args[0].i64, NULL, &error);
    }
    if (status == FERRULE_OK) {
        status = tapi_counter_total(&c, &total, &error);
    }
    tapi_counter_release(&c);
    if (status != FERRULE_OK) {
        return tapi_fail_with(host, &error);
    }
    ret->i64 = total;
    return FERRULE_OK;
}

/* store_loop(key: str, value: str, n: i64) -> i64: one query, then n puts and
 * n gets (2n host calls), one release; n. For bench/run.py. */
static int32_t store_loop(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    tapi_store_client store;
    ferrule_bytes error, got;
    int32_t status = FERRULE_OK;
    (void)state;
    if (!tapi_store_query(host, &store)) {
        return ferrule_fail(host, "no org.ferrule.test.store/1");
    }
    for (int64_t i = 0; i < args[2].i64 && status == FERRULE_OK; i++) {
        status = tapi_store_put(&store, (const char *)args[0].bytes.ptr, (const char *)args[1].bytes.ptr, &error);
        if (status == FERRULE_OK) {
            status = tapi_store_get(&store, (const char *)args[0].bytes.ptr, &got, &error);
        }
        if (status == FERRULE_OK && got.release != NULL) {
            got.release((void *)got.ptr, got.len);
        }
    }
    tapi_store_release(&store);
    if (status != FERRULE_OK) {
        return tapi_fail_with(host, &error);
    }
    ret->i64 = args[2].i64;
    return FERRULE_OK;
}

/* counter_loop(n: i64) -> i64: one query for a Counter, n adds of 1 through
 * the host, one release; the total. For bench/run.py. */
static int32_t counter_loop(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    tapi_counter_client c;
    ferrule_bytes error;
    int64_t total = 0;
    int32_t status = FERRULE_OK;
    (void)state;
    if (!tapi_counter_query(host, &c)) {
        return ferrule_fail(host, "no org.ferrule.test.counter/1");
    }
    for (int64_t i = 0; i < args[0].i64 && status == FERRULE_OK; i++) {
        status = tapi_counter_add(&c, 1, &total, &error);
    }
    tapi_counter_release(&c);
    if (status != FERRULE_OK) {
        return tapi_fail_with(host, &error);
    }
    ret->i64 = total;
    return FERRULE_OK;
}

/* counter_direct_loop(n: i64) -> i64: n adds of 1 on a Counter of this
 * plugin's own, called through a function pointer: the floor for the above. */
static int32_t counter_direct_loop(const ferrule_host *host, void *state, const ferrule_value *args,
                                   ferrule_value *ret) {
    counter own = {"direct", 0};
    int32_t (*volatile add)(const ferrule_host *, counter *, int64_t, int64_t *) = counter_add;
    int64_t total = 0;
    (void)state;
    for (int64_t i = 0; i < args[0].i64; i++) {
        add(host, &own, 1, &total);
    }
    ret->i64 = total;
    return FERRULE_OK;
}

/* hold_store() -> u64: a Store object, kept (its token as a number): for
 * the test that another plugin cannot use it. */
static int32_t hold_store(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    (void)args;
    const ferrule_object *store = host->query(host, TAPI_STORE_ID, TAPI_STORE_REVISION, TAPI_STORE_FINGERPRINT);
    if (store == NULL) {
        return ferrule_fail(host, "no org.ferrule.test.store/1");
    }
    ret->u64 = (uint64_t)(uintptr_t)store;
    return FERRULE_OK;
}

/* call_token(token: u64) -> str: host->call on that token, method 0 with no
 * arguments; the failure message it gets, or "ok". */
static int32_t call_token(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value out;
    (void)state;
    memset(&out, 0, sizeof out);
    int32_t status = host->call(host, (const ferrule_object *)(uintptr_t)args[0].u64, 0, NULL, &out);
    if (status == FERRULE_OK) {
        if (out.bytes.release != NULL) out.bytes.release((void *)out.bytes.ptr, out.bytes.len);
        return ferrule_return_copy(host, ret, "ok", 2);
    }
    ret->bytes = out.bytes; /* the message is ours: handed on, release and all */
    return FERRULE_OK;
}

/* release_token(token: u64): host->release on that token. */
static int32_t release_token(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    (void)ret;
    host->release(host, (const ferrule_object *)(uintptr_t)args[0].u64);
    return FERRULE_OK;
}

/* query_missing() -> bool: an unknown id and an unknown revision both give NULL. */
static int32_t query_missing(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    const ferrule_object *nothing = NULL, *future = NULL;
    (void)state;
    (void)args;
    if (FERRULE_HOST_HAS(host, release)) {
        nothing = host->query(host, "org.ferrule.test.nothing", 1, 0);
        future = host->query(host, TAPI_STORE_ID, 99, TAPI_STORE_FINGERPRINT);
        host->release(host, nothing);
        host->release(host, future);
    }
    ret->u64 = nothing == NULL && future == NULL;
    return FERRULE_OK;
}

/* A worker thread for error_from_thread: calls set_error outside any call. */
static void *set_error_on_worker(void *arg) {
    const ferrule_host *host = (const ferrule_host *)arg;
    host->set_error(host, "from a worker", 13);
    return NULL;
}

/* error_from_thread() -> bool: a deliberate thread-contract violation (set_error
 * from a thread that runs no call), for the host's debug mode to report. The
 * call itself still succeeds. */
static int32_t error_from_thread(const ferrule_host *host, void *state, const ferrule_value *args,
                                 ferrule_value *ret) {
    pthread_t worker;
    (void)state;
    (void)args;
    if (pthread_create(&worker, NULL, set_error_on_worker, (void *)host) != 0) {
        return ferrule_fail(host, "could not start a thread");
    }
    pthread_join(worker, NULL);
    ret->u64 = 1;
    return FERRULE_OK;
}

static void plugin_shutdown(const ferrule_host *host, void *state) {
    (void)state;
    ferrule_log(host, FERRULE_LOG_INFO, "shutdown");
}

/* ------------------------------------------------------------------ the descriptor */

static const ferrule_function fn_store_roundtrip = FERRULE_FUNCTION(
    "store_roundtrip", "(key: str, value: str) -> str", "Put key = value in the host's store, read it back.",
    FERRULE_FN_THREAD_SAFE, store_roundtrip);
static const ferrule_function fn_store_get = FERRULE_FUNCTION(
    "store_get", "(key: str) -> str", "The store's value of key; its failure, unchanged.",
    FERRULE_FN_THREAD_SAFE, store_get);
static const ferrule_function fn_store2_count = FERRULE_FUNCTION(
    "store2_count", "() -> u32", "How many keys the store (revision 2) holds.", FERRULE_FN_THREAD_SAFE, store2_count);
static const ferrule_function fn_counter_via_host = FERRULE_FUNCTION(
    "counter_via_host", "(n: i64) -> i64", "Add n twice to a Counter the host lends; its total.",
    FERRULE_FN_THREAD_SAFE, counter_via_host);
static const ferrule_function fn_store_loop = FERRULE_FUNCTION(
    "store_loop", "(key: str, value: str, n: i64) -> i64", "n puts and n gets through one Store object; n.",
    FERRULE_FN_THREAD_SAFE, store_loop);
static const ferrule_function fn_counter_loop = FERRULE_FUNCTION(
    "counter_loop", "(n: i64) -> i64", "n adds of 1 to a Counter the host lends; its total.",
    FERRULE_FN_THREAD_SAFE, counter_loop);
static const ferrule_function fn_counter_direct_loop = FERRULE_FUNCTION(
    "counter_direct_loop", "(n: i64) -> i64", "n adds of 1 to a Counter of its own, called directly; the total.",
    FERRULE_FN_THREAD_SAFE, counter_direct_loop);
static const ferrule_function fn_hold_store = FERRULE_FUNCTION(
    "hold_store", "() -> u64", "Query a Store and keep it; its token.", FERRULE_FN_THREAD_SAFE, hold_store);
static const ferrule_function fn_call_token = FERRULE_FUNCTION(
    "call_token", "(token: u64) -> str", "host->call on a token, method 0, no arguments: the failure message, or ok.",
    FERRULE_FN_THREAD_SAFE, call_token);
static const ferrule_function fn_release_token = FERRULE_FUNCTION(
    "release_token", "(token: u64)", "host->release on a token.", FERRULE_FN_THREAD_SAFE, release_token);
static const ferrule_function fn_query_missing = FERRULE_FUNCTION(
    "query_missing", "() -> bool", "Whether querying an unknown id and an unknown revision both give NULL.",
    FERRULE_FN_THREAD_SAFE, query_missing);
static const ferrule_function fn_error_from_thread = FERRULE_FUNCTION(
    "error_from_thread", "() -> bool", "Call host->set_error from a worker thread (a contract violation); true.",
    FERRULE_FN_THREAD_SAFE, error_from_thread);

static const ferrule_function *const functions[] = {
    &fn_store_roundtrip, &fn_store_get, &fn_store2_count, &fn_counter_via_host, &fn_query_missing,
    &fn_error_from_thread, &fn_store_loop, &fn_counter_loop, &fn_counter_direct_loop, &fn_hold_store, &fn_call_token,
    &fn_release_token,
};

static const ferrule_interface *const interfaces[] = {
    &counter_interface,
    &counter_b_interface,
    &shapes_interface,
};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.ferrule.test.ifaces_c",
    "C interface test plugin",
    "0.1.0",
    "Implements Counter and Shapes in C; uses Store and Counter through the host.",
    "MIT",
    sizeof functions / sizeof functions[0],
    0,
    functions,
    NULL,
    plugin_shutdown,
    sizeof interfaces / sizeof interfaces[0],
    0,
    interfaces,
};

FERRULE_ENTRY { return &descriptor; }
