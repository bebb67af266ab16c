/* One small plugin, broken in exactly one way chosen at compile time with
 * -DVARIANT_<NAME>. With no variant it is a valid plugin. The tests build
 * every variant and check the error each one produces. */
#include <stdlib.h>

#include "ferrule.h"

#ifdef VARIANT_MISSING_DEP
/* Defined in libferrule_dep.so, which the tests build, link and then delete. */
extern int64_t ferrule_dep_value(void);
#endif

static int32_t f_add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    (void)state;
#ifdef VARIANT_MISSING_DEP
    ret->i64 = args[0].i64 + args[1].i64 + ferrule_dep_value();
#else
    ret->i64 = args[0].i64 + args[1].i64;
#endif
    return FERRULE_OK;
}

/* Returns text that is not UTF-8. */
static int32_t f_bad_text(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    static const char bad[] = "caf\xe9";
    (void)host;
    (void)state;
    (void)args;
    ret->bytes.ptr = bad;
    ret->bytes.len = sizeof bad - 1;
    ret->bytes.release = NULL;
    return FERRULE_OK;
}

/* Fails without setting a message. */
static int32_t f_silent_fail(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    (void)state;
    (void)args;
    (void)ret;
    return FERRULE_ERROR;
}

/* Sets an error message but succeeds: the message must not leak into a later failure. */
static int32_t f_note_ok(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)state;
    (void)args;
    (void)ret;
    host->set_error(host, "stale note", 10);
    return FERRULE_OK;
}

static int32_t fixture_init(const ferrule_host *host, const char *config, size_t config_len, void **state) {
    (void)config;
    (void)config_len;
    *state = NULL;
#ifdef VARIANT_INIT_FAILS
    return ferrule_fail(host, "cannot open the model file: /nonexistent/model.bin");
#else
    (void)host;
    return FERRULE_OK;
#endif
}

#ifdef VARIANT_BAD_SIGNATURE
#define ADD_SIGNATURE "(a: i64, b: int) -> i64"
#else
#define ADD_SIGNATURE "(a: i64, b: i64) -> i64"
#endif

static const ferrule_function fn_add = FERRULE_FUNCTION("add", ADD_SIGNATURE, "Add two integers.", FERRULE_FN_THREAD_SAFE, f_add);
static const ferrule_function fn_bad_text = FERRULE_FUNCTION("bad_text", "() -> str", "Return text that is not UTF-8.", 0, f_bad_text);
static const ferrule_function fn_silent = FERRULE_FUNCTION("silent_fail", "()", "Fail without a message.", 0, f_silent_fail);
static const ferrule_function fn_note_ok = FERRULE_FUNCTION("note_ok", "()", "Set an error message, then succeed.", 0, f_note_ok);
/* A name Python treats specially: reachable through plugin.functions only. */
static const ferrule_function fn_dunder = FERRULE_FUNCTION("__len__", "() -> str", "Not a length.", 0, f_bad_text);
#ifdef VARIANT_DUPLICATE_NAMES
static const ferrule_function *const functions[] = {&fn_add, &fn_bad_text, &fn_silent, &fn_note_ok, &fn_dunder, &fn_add};
#else
static const ferrule_function *const functions[] = {&fn_add, &fn_bad_text, &fn_silent, &fn_note_ok, &fn_dunder};
#endif

#if defined(VARIANT_BAD_MAGIC)
#define MAGIC 0x7F454C4600000000
#else
#define MAGIC FERRULE_MAGIC
#endif
#if defined(VARIANT_ABI_MAJOR_2)
#define MAJOR 2
#elif defined(VARIANT_ABI_MAJOR_0)
#define MAJOR 0
#else
#define MAJOR FERRULE_ABI_MAJOR
#endif
#if defined(VARIANT_SMALL_DESCRIPTOR)
#define SIZE 24
#else
#define SIZE sizeof(ferrule_plugin)
#endif
#if defined(VARIANT_NON_UTF8_NAME)
#define NAME "Fixture \xff\xfe"
#else
#define NAME "Fixture"
#endif

static const ferrule_plugin descriptor = {
    MAGIC, (uint32_t)SIZE, MAJOR, FERRULE_ABI_MINOR,
    "org.ferrule.tests.fixture",
    NAME,
    "0.0.1",
    "A valid plugin unless a VARIANT_ is defined.",
    "MIT",
    sizeof functions / sizeof functions[0],
    0,
    functions,
    fixture_init,
    NULL,
    0, /* interfaces (ABI 1.2): none */
    0,
    NULL,
};

#if defined(VARIANT_NO_ENTRY)
FERRULE_EXPORT const ferrule_plugin *plugin_descriptor(void) { return &descriptor; }
#elif defined(VARIANT_ENTRY_V2)
FERRULE_EXPORT const ferrule_plugin *ferrule_entry_v2(void) { return &descriptor; }
#elif defined(VARIANT_ENTRY_NULL)
FERRULE_ENTRY { return descriptor.magic == 0 ? &descriptor : NULL; }
#else
FERRULE_ENTRY { return &descriptor; }
#endif
