/* The corpus of broken plugins (tests/corpus.py): a valid plugin, broken in
 * exactly one way chosen at compile time with -DKIND_<NAME>. Without a KIND
 * it loads and add(a, b) works. ADD_SIGNATURE may be redefined with -D to
 * build a malformed signature.
 *
 * KIND_DEP and KIND_DEP_STUB build the dependency of KIND_NEEDS_DEP: the
 * plugin links against the first and is then given the second, which lacks
 * the symbol it needs. KIND_EXECUTABLE adds main() for the executable kinds. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <unistd.h>

#include "ferrule.h"

#if defined(KIND_DEP)
__attribute__((visibility("default"))) int64_t corpus_dep_value(void) { return 0; }
#elif defined(KIND_DEP_STUB)
/* Same file name, but corpus_dep_value is gone: an older build of the dependency. */
__attribute__((visibility("default"))) int64_t corpus_dep_other(void) { return 0; }
#else

#ifdef KIND_NEEDS_DEP
extern int64_t corpus_dep_value(void);
#define DEP_VALUE corpus_dep_value()
#else
#define DEP_VALUE 0
#endif

/* Not every kind uses these. */
__attribute__((unused)) static void crash(void) {
    volatile int *volatile nowhere = NULL;
    *nowhere = 1;
}

/* Sleeps instead of spinning: a hang that does not take a CPU from the tests. */
__attribute__((unused)) static void hang(void) {
    for (;;) {
        pause();
    }
}

#if defined(KIND_CONSTRUCTOR_SEGFAULT)
__attribute__((constructor)) static void on_load(void) { crash(); }
#elif defined(KIND_CONSTRUCTOR_HANGS)
__attribute__((constructor)) static void on_load(void) { hang(); }
#elif defined(KIND_CONSTRUCTOR_EXITS)
__attribute__((constructor)) static void on_load(void) { exit(3); }
#endif

static int32_t add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    (void)state;
    ret->i64 = args[0].i64 + args[1].i64 + DEP_VALUE;
    return FERRULE_OK;
}

/* -- functions */

#ifndef ADD_SIGNATURE
#define ADD_SIGNATURE "(a: i64, b: i64) -> i64"
#endif
#if defined(KIND_SMALL_FUNCTION)
#define FUNCTION_SIZE 16
#else
#define FUNCTION_SIZE sizeof(ferrule_function)
#endif
#if defined(KIND_NON_UTF8_FUNCTION_NAME)
#define ADD_NAME "add\xc3"
#elif defined(KIND_FUNCTION_NAME_NOT_IDENTIFIER)
#define ADD_NAME "add-two"
#elif defined(KIND_NULL_FUNCTION_NAME)
#define ADD_NAME NULL
#else
#define ADD_NAME "add"
#endif
#if defined(KIND_NON_UTF8_DOC)
#define ADD_DOC "Adds \xe2\x82 two integers."
#else
#define ADD_DOC "Add two integers."
#endif
#if defined(KIND_NULL_CALL)
#define ADD_CALL NULL
#else
#define ADD_CALL add
#endif

#if defined(KIND_FUNCTION_NO_SIZE)
/* Designated initialisers instead of FERRULE_FUNCTION: struct_size left 0. */
static const ferrule_function fn_add = {
    .flags = FERRULE_FN_THREAD_SAFE, .name = ADD_NAME, .signature = ADD_SIGNATURE, .doc = ADD_DOC, .call = ADD_CALL,
};
#else
static const ferrule_function fn_add = {
    (uint32_t)FUNCTION_SIZE, FERRULE_FN_THREAD_SAFE, ADD_NAME, ADD_SIGNATURE, ADD_DOC, ADD_CALL,
};
#endif
static const ferrule_function fn_twice = FERRULE_FUNCTION("twice", "(a: i64) -> i64", "a + a", 0, add);

#if defined(KIND_NULL_FUNCTION_ENTRY)
static const ferrule_function *const functions[] = {&fn_add, NULL, &fn_twice};
#else
static const ferrule_function *const functions[] = {&fn_add, &fn_twice};
#endif
#if defined(KIND_NULL_FUNCTION_TABLE)
#define FUNCTIONS NULL
#else
#define FUNCTIONS functions
#endif
#if defined(KIND_ABSURD_FUNCTION_COUNT)
#define FUNCTION_COUNT 100000
#else
#define FUNCTION_COUNT (sizeof functions / sizeof functions[0])
#endif

/* -- interface implementations (ABI 1.2) */

static int32_t create(const ferrule_host *host, void *plugin_state, void **self) {
    (void)host;
    (void)plugin_state;
    *self = NULL;
    return FERRULE_OK;
}

static void destroy(const ferrule_host *host, void *plugin_state, void *self) {
    (void)host;
    (void)plugin_state;
    (void)self;
}

#if defined(KIND_IFACE_NULL_METHOD)
static const ferrule_call_fn methods[] = {add, NULL};
#else
static const ferrule_call_fn methods[] = {add, add};
#endif
#if defined(KIND_IFACE_SMALL)
#define IFACE_SIZE 24
#else
#define IFACE_SIZE sizeof(ferrule_interface)
#endif
#if defined(KIND_IFACE_BAD_ID)
#define IFACE_ID "adder"
#else
#define IFACE_ID "org.ferrule.tests.adder"
#endif
#if defined(KIND_IFACE_EMPTY_NAME)
#define IFACE_NAME ""
#else
#define IFACE_NAME "plain"
#endif
#if defined(KIND_IFACE_TOO_MANY_METHODS)
#define METHOD_COUNT 1000
#else
#define METHOD_COUNT 2
#endif
#if defined(KIND_IFACE_NULL_METHODS)
#define METHODS NULL
#else
#define METHODS methods
#endif
#if defined(KIND_IFACE_NULL_CREATE)
#define CREATE NULL
#else
#define CREATE create
#endif

static const ferrule_interface impl_plain = {
    (uint32_t)IFACE_SIZE, 0, IFACE_ID, 1, METHOD_COUNT, 0, NULL, IFACE_NAME, NULL, METHODS, CREATE, destroy,
};
/* A second implementation, of another name unless KIND_IFACE_DUPLICATE_NAMES. */
#if defined(KIND_IFACE_DUPLICATE_NAMES)
#define OTHER_NAME "plain"
#else
#define OTHER_NAME "other"
#endif
static const ferrule_interface impl_other = {
    (uint32_t)sizeof(ferrule_interface), 0, "org.ferrule.tests.adder", 1, 2, 0, NULL, OTHER_NAME, NULL, methods,
    create, destroy,
};

#if defined(KIND_IFACE_NULL_ENTRY)
static const ferrule_interface *const interfaces[] = {&impl_plain, NULL, &impl_other};
#else
static const ferrule_interface *const interfaces[] = {&impl_plain, &impl_other};
#endif
#if defined(KIND_IFACE_NULL_TABLE)
#define INTERFACES NULL
#else
#define INTERFACES interfaces
#endif
#if defined(KIND_IFACE_ABSURD_COUNT)
#define INTERFACE_COUNT 100000
#else
#define INTERFACE_COUNT (sizeof interfaces / sizeof interfaces[0])
#endif

/* -- the descriptor */

#if defined(KIND_ID_NOT_REVERSE_DNS)
#define ID "corpus"
#elif defined(KIND_NULL_ID)
#define ID NULL
#else
#define ID "org.ferrule.tests.corpus"
#endif
#if defined(KIND_NULL_NAME)
#define NAME NULL
#else
#define NAME "Corpus"
#endif
#if defined(KIND_NON_UTF8_VERSION)
#define VERSION "1.0\x80"
#else
#define VERSION "1.0.0"
#endif

#if defined(KIND_NO_HEAD) || defined(KIND_MAGIC_ONLY)
/* Designated initialisers that leave out the head (or all of it but the magic). */
static const ferrule_plugin descriptor = {
#if defined(KIND_MAGIC_ONLY)
    .magic = FERRULE_MAGIC,
#endif
    .id = ID,
    .name = NAME,
    .version = VERSION,
    .function_count = (uint32_t)FUNCTION_COUNT,
    .functions = FUNCTIONS,
    .interface_count = (uint32_t)INTERFACE_COUNT,
    .interfaces = INTERFACES,
};
#else
#if defined(KIND_ZERO_MAGIC)
#define HEAD 0, (uint32_t)sizeof(ferrule_plugin), FERRULE_ABI_MAJOR, FERRULE_ABI_MINOR
#elif defined(KIND_SWAPPED_MAGIC)
/* The magic's bytes in the wrong order, as a big-endian build or a memcpy of "FERRULE!" leaves them here. */
#define HEAD 0x21454C5552524546, (uint32_t)sizeof(ferrule_plugin), FERRULE_ABI_MAJOR, FERRULE_ABI_MINOR
#else
#define HEAD FERRULE_PLUGIN_HEAD
#endif
static const ferrule_plugin descriptor = {
    HEAD,
    ID,
    NAME,
    VERSION,
    "A valid plugin unless a KIND_ is defined.",
    "MIT",
    (uint32_t)FUNCTION_COUNT,
    0,
    FUNCTIONS,
    NULL,
    NULL,
    (uint32_t)INTERFACE_COUNT,
    0,
    INTERFACES,
};
#endif

#if defined(KIND_ENTRY_SEGFAULT)
FERRULE_ENTRY {
    crash();
    return &descriptor;
}
#elif defined(KIND_ENTRY_HANGS)
FERRULE_ENTRY {
    hang();
    return &descriptor;
}
#else
FERRULE_ENTRY { return &descriptor; }
#endif

#ifdef KIND_EXECUTABLE
int main(void) { return ferrule_entry_v1() == &descriptor ? 0 : 1; }
#endif

#endif /* not a dependency */
