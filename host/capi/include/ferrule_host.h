/*
 * ferrule_host.h: host ferrule plugins from C or C++.
 *
 * The C API of the Rust host crate ferrule-host, in libferrule_host.so (or
 * libferrule_host.a): load the plugin binaries a Python host loads, with the
 * same checks, the same error classes (here: codes) and the same messages.
 *
 *     ferrule_host_plugin *calc;
 *     ferrule_host_error *err = NULL;
 *     if (ferrule_host_open("build/libcalc.so", NULL, &calc, &err) != FERRULE_HOST_OK) {
 *         fprintf(stderr, "%s\n", ferrule_host_error_message(err, NULL));
 *         ferrule_host_error_free(err);
 *         return 1;
 *     }
 *     ferrule_host_value args[2] = {ferrule_host_i64(6), ferrule_host_i64(7)}, out;
 *     if (ferrule_host_call_by_name(calc, "mul", args, 2, &out, &err) == FERRULE_HOST_OK)
 *         printf("%lld\n", (long long)out.v.i64);            (42)
 *     ferrule_host_plugin_free(calc);
 *
 * ERRORS. Every fallible function returns a ferrule_host_code (FERRULE_HOST_OK
 * is 0) and takes a last argument `ferrule_host_error **error`. NULL there
 * means "the code is enough". Otherwise, on failure only, *error is set to a
 * new error object the caller frees with ferrule_host_error_free; on success
 * *error is left as it was. Set it to NULL before the call (an error left in
 * it is overwritten, not freed). An error object is never shared: the
 * message it holds stays valid until it is freed, on any thread. Codes
 * FERRULE_HOST_E_LIBRARY_NOT_FOUND .. FERRULE_HOST_E_NO_IMPLEMENTATION are the
 * Rust host's ErrorKind one-to-one (and the Python host's exception
 * classes); their messages are the Rust host's (the Python host's).
 *
 * OWNERSHIP: who allocates frees.
 *   - ferrule_host_open makes a ferrule_host_plugin: ferrule_host_plugin_free.
 *   - An error object: ferrule_host_error_free (or, made by a host function
 *     with ferrule_host_error_new and handed back through *error, this library).
 *   - A call's str or bytes result is this library's memory, flagged
 *     FERRULE_HOST_VALUE_OWNED: ferrule_host_value_free (never free()).
 *   - Everything the caller passes (paths, options, argument values and what
 *     they point to) stays the caller's, borrowed for the call only.
 *   - Info strings belong to the plugin handle: valid until it is freed.
 *   - A plugin's library is never unloaded (no dlclose): code of it may still
 *     run (a thread it started), so it stays mapped for the process's life.
 *
 * THREADS. A ferrule_host_plugin may be used from any number of threads at
 * once (info, find, call, close): functions not flagged FERRULE_FN_THREAD_SAFE
 * (ferrule.h) are serialised per plugin by the library. ferrule_host_close
 * waits for calls in flight. ferrule_host_plugin_free must be the handle's
 * last use: no call in flight, no thread using it after. Host functions and
 * the log sink may be called on any thread (a plugin's own threads too), at
 * the same time for thread-safe functions: their user_data must allow that.
 *
 * STRUCTS. Every struct the caller and the library exchange by pointer starts
 * with `uint32_t struct_size`: set it to sizeof(the struct) before passing
 * it. Fields are only ever appended, so a program built with this header
 * works with later libraries. ferrule_host_value is an array element and
 * has no size field: its layout is fixed (new tags reuse its 32-byte union).
 *
 * Compiles as C99 and as C++ (extern "C").
 */
#ifndef FERRULE_HOST_H
#define FERRULE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ codes */

/* A result code: FERRULE_HOST_OK or one of FERRULE_HOST_E_*. */
typedef int32_t ferrule_host_code;

enum {
    FERRULE_HOST_OK = 0,
    /* The Rust host's ErrorKind (the Python host's exception class). */
    FERRULE_HOST_E_LIBRARY_NOT_FOUND = 1,     /* LibraryNotFoundError: no file, or a bare name not in FERRULE_PATH */
    FERRULE_HOST_E_NOT_A_LIBRARY = 2,         /* NotALibraryError: a directory, an executable, text... */
    FERRULE_HOST_E_WRONG_ARCHITECTURE = 3,    /* WrongArchitectureError: another machine or word size */
    FERRULE_HOST_E_MISSING_DEPENDENCY = 4,    /* MissingDependencyError: a library it links is missing */
    FERRULE_HOST_E_LIBRARY = 5,               /* LibraryError: the dynamic loader refused it otherwise */
    FERRULE_HOST_E_UNSAFE_FILE = 6,           /* UnsafeFileError: others than its owner could change it */
    FERRULE_HOST_E_NO_ENTRY_POINT = 7,        /* NoEntryPointError: no ferrule_entry_v1, or it returned NULL */
    FERRULE_HOST_E_BAD_MAGIC = 8,             /* BadMagicError */
    FERRULE_HOST_E_ABI_VERSION = 9,           /* AbiVersionError: built for another ABI major version */
    FERRULE_HOST_E_DESCRIPTOR_TOO_SMALL = 10, /* DescriptorTooSmallError */
    FERRULE_HOST_E_METADATA = 11,             /* MetadataError: a descriptor string missing or malformed */
    FERRULE_HOST_E_SIGNATURE = 12,            /* SignatureError: a signature does not parse */
    FERRULE_HOST_E_DESCRIPTOR = 13,           /* DescriptorError: a NULL table or pointer */
    FERRULE_HOST_E_PLUGIN_INIT = 14,          /* PluginInitError: the plugin's init failed */
    FERRULE_HOST_E_PLUGIN_CALL = 15,          /* PluginCallError: a function reported failure */
    FERRULE_HOST_E_PLUGIN_PANIC = 16,         /* PluginPanicError: a panic caught in the plugin */
    FERRULE_HOST_E_PLUGIN_CLOSED = 17,        /* PluginClosedError */
    FERRULE_HOST_E_TYPE = 18,                 /* TypeError: an argument of the wrong type or count */
    FERRULE_HOST_E_VALUE = 19,                /* ValueError: an argument out of its type's range */
    FERRULE_HOST_E_NO_SUCH_FUNCTION = 20,     /* AttributeError: no function of that name */
    FERRULE_HOST_E_INTERFACE_MISMATCH = 21,   /* InterfaceMismatchError: an implementation of another layout */
    FERRULE_HOST_E_NO_IMPLEMENTATION = 22,    /* LookupError: no implementation of that interface revision */
    /* This C API's own. */
    FERRULE_HOST_E_INVALID_ARGUMENT = 100,    /* misuse: a NULL pointer, a short struct_size, a bad tag or index */
    FERRULE_HOST_E_INTERNAL = 101,            /* a panic caught at the C boundary: a bug in this library */
    FERRULE_HOST_E_UNKNOWN = 102              /* an error kind newer than this library's table */
};

/* The C name of a code ("FERRULE_HOST_E_BAD_MAGIC"), static; NULL for a
 * number that is no code. */
const char *ferrule_host_code_name(ferrule_host_code code);

/* ----------------------------------------------------------------- errors */

typedef struct ferrule_host_error ferrule_host_error;

/* The error's code (FERRULE_HOST_E_INVALID_ARGUMENT for NULL). */
ferrule_host_code ferrule_host_error_code(const ferrule_host_error *error);

/* The whole message, NUL-terminated, owned by the error. When len is not
 * NULL, *len is its length in bytes (a plugin's message may hold a NUL). */
const char *ferrule_host_error_message(const ferrule_host_error *error, size_t *len);

/* For FERRULE_HOST_E_PLUGIN_INIT, _PLUGIN_CALL and _PLUGIN_PANIC: the
 * plugin's own message (what it passed to set_error), which the whole
 * message quotes; NULL for other errors. */
const char *ferrule_host_error_plugin_message(const ferrule_host_error *error, size_t *len);

/* Free an error. NULL is ignored. */
void ferrule_host_error_free(ferrule_host_error *error);

/* A new error, for a host function to fail with (see ferrule_host_callback).
 * message is copied (NULL: empty). Made with FERRULE_HOST_OK as its code, it
 * takes the code the host function returns. */
ferrule_host_error *ferrule_host_error_new(ferrule_host_code code, const char *message);

/* ----------------------------------------------------------------- values */

/* What a ferrule_host_value holds (its member of v). */
enum {
    FERRULE_HOST_NONE = 0,    /* no value: a function without a result */
    FERRULE_HOST_BOOL = 1,    /* v.b */
    FERRULE_HOST_I64 = 2,     /* v.i64: any integer parameter (checked against its range) */
    FERRULE_HOST_U64 = 3,     /* v.u64: the same, unsigned */
    FERRULE_HOST_F32 = 4,     /* v.f32 */
    FERRULE_HOST_F64 = 5,     /* v.f64 */
    FERRULE_HOST_STR = 6,     /* v.str: UTF-8 text, ptr + len in bytes (a NUL is refused) */
    FERRULE_HOST_BYTES = 7,   /* v.str: bytes, ptr + len */
    FERRULE_HOST_BUF = 8,     /* v.buf: a read-only array of elem, ptr + len in elements */
    FERRULE_HOST_MUTBUF = 9,  /* v.buf: a writable array of elem, written in place */
    FERRULE_HOST_FN = 10      /* v.fn: a host function (for a fn(...) parameter) */
};

/* The ABI's types, in its type-code order; 0 is none. A buffer's elem is a
 * number type (I8 .. F64). */
enum {
    FERRULE_HOST_TYPE_BOOL = 1,
    FERRULE_HOST_TYPE_I8 = 2,
    FERRULE_HOST_TYPE_I16 = 3,
    FERRULE_HOST_TYPE_I32 = 4,
    FERRULE_HOST_TYPE_I64 = 5,
    FERRULE_HOST_TYPE_U8 = 6,
    FERRULE_HOST_TYPE_U16 = 7,
    FERRULE_HOST_TYPE_U32 = 8,
    FERRULE_HOST_TYPE_U64 = 9,
    FERRULE_HOST_TYPE_F32 = 10,
    FERRULE_HOST_TYPE_F64 = 11,
    FERRULE_HOST_TYPE_STR = 12,
    FERRULE_HOST_TYPE_BYTES = 13
};

/* flags: the value's memory is this library's (a call's str or bytes
 * result); ferrule_host_value_free frees it. */
#define FERRULE_HOST_VALUE_OWNED 1u

typedef struct ferrule_host_value ferrule_host_value;

/* A host function: the plugin calls it with the values of its fn(...)
 * signature (str and bytes borrowed for the call; a str is also
 * NUL-terminated). It sets *result (preset to FERRULE_HOST_NONE) to the
 * declared result and returns FERRULE_HOST_OK, or returns another code,
 * optionally with *error = ferrule_host_error_new(code, "why"), which this
 * library then owns: the plugin's call fails with exactly that error. A str
 * or bytes result is copied when the function returns; its memory stays the
 * function's (it must still be valid then: not a local array), except a
 * value flagged OWNED (a nested call's result passed on), which this library
 * frees after the copy. May run on
 * any thread until the call it was passed to returns; it may call the same
 * plugin again, but not close or free it. It must not throw (C++) or longjmp. */
typedef ferrule_host_code (*ferrule_host_callback)(void *user_data, const ferrule_host_value *args, size_t arg_count,
                                                   ferrule_host_value *result, ferrule_host_error **error);

struct ferrule_host_value {
    uint32_t tag;    /* FERRULE_HOST_NONE .. FERRULE_HOST_FN */
    uint16_t elem;   /* FERRULE_HOST_BUF / _MUTBUF: the element type (FERRULE_HOST_TYPE_I8 .. _F64) */
    uint16_t flags;  /* FERRULE_HOST_VALUE_OWNED, set by this library only */
    union {
        bool b;
        int64_t i64;
        uint64_t u64;
        float f32;
        double f64;
        struct { const char *ptr; size_t len; } str;          /* STR, BYTES: len in bytes */
        struct { void *ptr; size_t len; } buf;                /* BUF, MUTBUF: len in elements */
        struct { ferrule_host_callback call; void *user_data; } fn;
        unsigned char reserved_[32];
    } v;
};

/* Free a value's memory if this library owns it (FERRULE_HOST_VALUE_OWNED)
 * and set it to FERRULE_HOST_NONE; a value the caller made is only reset.
 * NULL is ignored; twice is harmless. */
void ferrule_host_value_free(ferrule_host_value *value);

/* Value constructors (the value borrows what it points to). */
static inline ferrule_host_value ferrule_host_value_of_(uint32_t tag) {
    ferrule_host_value v;
    memset(&v, 0, sizeof v);
    v.tag = tag;
    return v;
}
static inline ferrule_host_value ferrule_host_bool(bool b) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_BOOL); v.v.b = b; return v;
}
static inline ferrule_host_value ferrule_host_i64(int64_t n) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_I64); v.v.i64 = n; return v;
}
static inline ferrule_host_value ferrule_host_u64(uint64_t n) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_U64); v.v.u64 = n; return v;
}
static inline ferrule_host_value ferrule_host_f32(float x) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_F32); v.v.f32 = x; return v;
}
static inline ferrule_host_value ferrule_host_f64(double x) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_F64); v.v.f64 = x; return v;
}
/* NUL-terminated UTF-8 text. */
static inline ferrule_host_value ferrule_host_str(const char *text) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_STR);
    v.v.str.ptr = text; v.v.str.len = text ? strlen(text) : 0; return v;
}
static inline ferrule_host_value ferrule_host_bytes(const void *data, size_t len) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_BYTES);
    v.v.str.ptr = (const char *)data; v.v.str.len = len; return v;
}
/* len elements of type elem (FERRULE_HOST_TYPE_I8 .. _F64), read-only. */
static inline ferrule_host_value ferrule_host_buf(uint16_t elem, const void *data, size_t len) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_BUF);
    v.elem = elem; v.v.buf.ptr = (void *)data; v.v.buf.len = len; return v;
}
/* len elements of type elem, which the plugin may write. */
static inline ferrule_host_value ferrule_host_mutbuf(uint16_t elem, void *data, size_t len) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_MUTBUF);
    v.elem = elem; v.v.buf.ptr = data; v.v.buf.len = len; return v;
}
static inline ferrule_host_value ferrule_host_fn(ferrule_host_callback call, void *user_data) {
    ferrule_host_value v = ferrule_host_value_of_(FERRULE_HOST_FN);
    v.v.fn.call = call; v.v.fn.user_data = user_data; return v;
}

/* ------------------------------------------------------------ open, close */

typedef struct ferrule_host_plugin ferrule_host_plugin;

/* options.flags: load a file (or in a directory) that others than its owner
 * could write, which is refused by default (as ssh refuses such keys). */
#define FERRULE_HOST_OPEN_LAX_PERMISSIONS 1u

/* How to open a plugin; all zero (with struct_size set) is the default. */
typedef struct ferrule_host_open_options {
    uint32_t struct_size;  /* sizeof(ferrule_host_open_options) */
    uint32_t flags;        /* FERRULE_HOST_OPEN_* */
    const char *config;    /* the text the plugin's init receives (NUL-terminated UTF-8, e.g. JSON), or NULL */
} ferrule_host_open_options;

/* Load the plugin at path (a path with a '/', or a bare name looked up in
 * FERRULE_PATH's directories only: "calc" is libcalc.so there), check its
 * descriptor and run its init. options may be NULL (the defaults). On
 * success *plugin is the new handle; on failure NULL. */
ferrule_host_code ferrule_host_open(const char *path, const ferrule_host_open_options *options,
                                    ferrule_host_plugin **plugin, ferrule_host_error **error);

/* Wait for the calls in flight, then run the plugin's shutdown; again is a
 * no-op. Calls then fail with FERRULE_HOST_E_PLUGIN_CLOSED; info still works.
 * Refused (FERRULE_HOST_E_PLUGIN_CLOSED) from inside one of its own calls. */
ferrule_host_code ferrule_host_close(ferrule_host_plugin *plugin, ferrule_host_error **error);

/* Free the handle (running the shutdown first if close was not called).
 * NULL is ignored. The library stays loaded. */
void ferrule_host_plugin_free(ferrule_host_plugin *plugin);

/* ---------------------------------------------------------------- inspect */

typedef struct ferrule_host_plugin_info {
    uint32_t struct_size;      /* sizeof(ferrule_host_plugin_info) */
    uint16_t abi_major;        /* the ABI version the plugin was built for */
    uint16_t abi_minor;
    const char *id;            /* reverse-DNS, e.g. "org.ferrule.examples.greeter" */
    const char *name;
    const char *version;
    const char *description;   /* "" when none */
    const char *license;       /* SPDX, "" when none */
    const char *path;          /* the library's absolute path */
    size_t function_count;
    size_t offer_count;        /* interface implementations (ferrule_host_offer_info) */
} ferrule_host_plugin_info;

typedef struct ferrule_host_function_info {
    uint32_t struct_size;      /* sizeof(ferrule_host_function_info) */
    uint32_t flags;            /* FERRULE_FN_* bits (ferrule.h): 1 thread-safe, 2 quick */
    const char *name;
    const char *signature;     /* canonical text: "(a: i64, b: i64) -> i64" */
    const char *doc;           /* "" when none */
    size_t param_count;
    uint32_t result_tag;       /* the tag of its result value (FERRULE_HOST_NONE: no result) */
    uint32_t result_type;      /* FERRULE_HOST_TYPE_* of the result, 0 for none */
} ferrule_host_function_info;

typedef struct ferrule_host_param_info {
    uint32_t struct_size;      /* sizeof(ferrule_host_param_info) */
    uint32_t tag;              /* the tag to pass (integers: I64 or U64 both do) */
    const char *name;
    const char *type;          /* as the signature spells it: "i64", "buf[f64]", "fn(i64) -> bool" */
    uint32_t scalar;           /* FERRULE_HOST_TYPE_*: the type, a buffer's element type; 0 for fn */
    uint32_t reserved_;
} ferrule_host_param_info;

typedef struct ferrule_host_offer_info {
    uint32_t struct_size;      /* sizeof(ferrule_host_offer_info) */
    uint32_t flags;            /* FERRULE_IFACE_* bits (ferrule.h) */
    const char *id;            /* the interface id, reverse-DNS */
    const char *name;          /* this implementation's name */
    const char *doc;
    const char *layout;        /* the canonical layout text it was generated from ("" when none) */
    uint64_t fingerprint;
    uint32_t revision;
    uint32_t method_count;
} ferrule_host_offer_info;

/* Fill *info (struct_size set by the caller). Strings belong to the handle. */
ferrule_host_code ferrule_host_get_plugin_info(const ferrule_host_plugin *plugin, ferrule_host_plugin_info *info,
                                           ferrule_host_error **error);
/* Function index (0 .. function_count - 1, in descriptor order). */
ferrule_host_code ferrule_host_get_function_info(const ferrule_host_plugin *plugin, size_t index,
                                             ferrule_host_function_info *info, ferrule_host_error **error);
/* Parameter param of function function. */
ferrule_host_code ferrule_host_get_param_info(const ferrule_host_plugin *plugin, size_t function, size_t param,
                                          ferrule_host_param_info *info, ferrule_host_error **error);
/* Offer index (0 .. offer_count - 1). */
ferrule_host_code ferrule_host_get_offer_info(const ferrule_host_plugin *plugin, size_t index,
                                          ferrule_host_offer_info *info, ferrule_host_error **error);

/* ------------------------------------------------------------------- call */

/* The index of the function called name, for ferrule_host_call; looked up
 * once, valid for the handle's life. FERRULE_HOST_E_NO_SUCH_FUNCTION if none. */
ferrule_host_code ferrule_host_find_function(const ferrule_host_plugin *plugin, const char *name, size_t *index,
                                             ferrule_host_error **error);

/* Call function index with arg_count values (args may be NULL for none),
 * each checked against the signature (FERRULE_HOST_E_TYPE, _VALUE with the
 * Rust host's messages). *result (result may be NULL: dropped; it may be
 * one of args) is written after the arguments were read: on failure
 * FERRULE_HOST_NONE, else the result: bool, I64 for signed
 * integers, U64 for unsigned, F32, F64, or an OWNED str or bytes
 * (NUL-terminated too) to release with ferrule_host_value_free. Buffers are
 * read (MUTBUF: written) in place during the call; host functions run only
 * until it returns. A failed host function's error is the call's. */
ferrule_host_code ferrule_host_call(const ferrule_host_plugin *plugin, size_t index, const ferrule_host_value *args,
                                    size_t arg_count, ferrule_host_value *result, ferrule_host_error **error);

/* ferrule_host_find_function, then ferrule_host_call. */
ferrule_host_code ferrule_host_call_by_name(const ferrule_host_plugin *plugin, const char *name,
                                            const ferrule_host_value *args, size_t arg_count,
                                            ferrule_host_value *result, ferrule_host_error **error);

/* -------------------------------------------------------------------- log */

/* A log sink: level is FERRULE_LOG_TRACE (0) .. FERRULE_LOG_ERROR (4);
 * plugin_id the logging plugin's id (NULL for a record that is not a
 * plugin's); target "ferrule.plugin.<id>"; message len bytes (also
 * NUL-terminated). All borrowed for the call. Called on the logging thread,
 * from any thread; it must not call ferrule_host_set_log_sink. */
typedef void (*ferrule_host_log_fn)(void *user_data, int32_t level, const char *plugin_id, const char *target,
                                    const char *message, size_t len);

/* Send plugin logs at min_level (a FERRULE_LOG_* level) or above to sink;
 * NULL sends them nowhere, the default. For the whole process (Rust's log
 * facade has one logger per process; if another Rust library in the program
 * has taken it this fails with FERRULE_HOST_E_INVALID_ARGUMENT). Once it
 * returns, the previous sink is no longer called. */
ferrule_host_code ferrule_host_set_log_sink(ferrule_host_log_fn sink, void *user_data, int32_t min_level,
                                            ferrule_host_error **error);

/* ------------------------------------------------------------------ build */

/* This library's version ("0.1.0"), static. */
const char *ferrule_host_version(void);

/* sizeof(type_name) in the library ("ferrule_host_value" ...; 0 for a name
 * it does not know): check that header and library agree. */
size_t ferrule_host_struct_size(const char *type_name);

#ifdef __cplusplus
}
#endif

#endif /* FERRULE_HOST_H */
