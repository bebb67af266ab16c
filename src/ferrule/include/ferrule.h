/*
 * ferrule.h - the ferrule plugin ABI, version 1.
 *
 * This header is the single source of truth for the ABI. The Python host's
 * view (src/ferrule/_abi/cdef.py) is generated from the block between the
 * FERRULE-ABI-BEGIN and FERRULE-ABI-END markers by tools/gen_abi.py; the
 * Rust SDK (sdk/rust/src/abi.rs) is held to it by a layout test. Inside that
 * block: plain declarations and integer #defines only, no other macros.
 *
 * Rules that hold for every struct below:
 *   - It starts with its own size (struct_size) where it can grow; fields
 *     are only ever appended. A reader uses what struct_size covers and
 *     treats later fields as absent.
 *   - Only fixed-width integers, pointers and doubles; no C enums, no
 *     packing, natural alignment.
 *   - Strings are UTF-8. "static" means: valid until the library is
 *     unloaded, which a ferrule host never does implicitly.
 *
 * See docs/abi.md for the full contract (ownership, threads, signatures).
 */
#ifndef FERRULE_H
#define FERRULE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* FERRULE-ABI-BEGIN */

/* Version of this header. A host refuses a plugin whose major differs. */
#define FERRULE_ABI_MAJOR 1
#define FERRULE_ABI_MINOR 2

/* First field of every descriptor, a native-endian u64 (the ASCII of
 * "FERRULE!" when written big-endian). Compare the integer, not bytes. */
#define FERRULE_MAGIC 0x46455252554C4521

/* Status returned by init and by every exported function. Any value other
 * than FERRULE_OK is a failure; FERRULE_PANIC marks a caught Rust panic. */
#define FERRULE_OK 0
#define FERRULE_ERROR 1
#define FERRULE_PANIC 2

/* Log levels for ferrule_host.log. */
#define FERRULE_LOG_TRACE 0
#define FERRULE_LOG_DEBUG 1
#define FERRULE_LOG_INFO 2
#define FERRULE_LOG_WARN 3
#define FERRULE_LOG_ERROR 4

/* ferrule_function.flags: the function may run on several threads at once.
 * Without it the host serialises calls into the plugin instance. */
#define FERRULE_FN_THREAD_SAFE 1
/* ferrule_function.flags (ABI 1.1): the function is short and never blocks
 * (no I/O, no locks, no waiting on other threads), so the host may keep its
 * own locks held across the call. A Python host then keeps the GIL, which
 * saves its release and re-acquire on tiny calls; other Python threads do not
 * run meanwhile. Host callbacks stay allowed on the calling thread, but a
 * QUICK function must not wait for another thread that calls the host: that
 * thread would wait for the GIL forever. Without the flag the host releases
 * the GIL during the call. */
#define FERRULE_FN_QUICK 2

/* ferrule_interface.flags (ABI 1.2): the implementation's instances may be
 * called from several threads at once. Without it the host serialises calls
 * into each instance (each instance has its own lock). */
#define FERRULE_IFACE_THREAD_SAFE 1

typedef struct ferrule_host ferrule_host;

/* Opaque handle to an object the host lends a plugin (ABI 1.2): a service
 * the host implements, or an instance of an interface another plugin
 * provides. Got from host->query, used with host->call, given back with
 * host->release. */
typedef struct ferrule_object ferrule_object;

/* Opaque handle to a host function passed as an "fn(...)" argument (ABI
 * 1.1). Call it with host->invoke; valid until the call that received it
 * returns. */
typedef struct ferrule_fn ferrule_fn;

/* A run of bytes.
 * As an argument: borrowed from the host for the duration of the call;
 *   release is NULL. A "str" argument is also NUL-terminated (len excludes
 *   the NUL); a "bytes" argument need not be.
 * As a return value: the host copies len bytes from ptr once, then calls
 *   release(ptr, len) if release is not NULL. NULL release means the bytes
 *   are static. Use host->alloc with release = host->free, or your own
 *   allocator with your own release function. A result with len 0 may
 *   carry any ptr: the host does not read it, but still calls release. */
typedef struct ferrule_bytes {
    const void *ptr;
    size_t len;
    void (*release)(void *ptr, size_t len);
} ferrule_bytes;

/* A typed array the caller owns (ABI 1.1): a "buf[T]" or "mutbuf[T]"
 * argument. ptr is the caller's own memory, not a copy, borrowed for the
 * call and aligned for T; len counts elements of T, not bytes. Only a
 * "mutbuf" may be written. ptr may be NULL when len is 0. The caller may
 * pass one buffer to several parameters (the Rust SDK refuses a mutbuf that
 * overlaps another argument), and must not write or resize it from another
 * thread during the call. */
typedef struct ferrule_buf {
    void *ptr;
    size_t len;
} ferrule_buf;

/* One argument or return slot. Integers of every width travel sign- or
 * zero-extended in i64/u64; bool is u64 0 or 1; f32 uses its own member.
 * str and bytes use bytes; buf[T] and mutbuf[T] use buf; fn(...) uses func. */
typedef union ferrule_value {
    int64_t i64;
    uint64_t u64;
    double f64;
    float f32;
    ferrule_bytes bytes;
    ferrule_buf buf;
    const ferrule_fn *func;
} ferrule_value;

/* Callbacks the host hands to the plugin at init and to every call. The
 * table and host_data stay valid until shutdown returns. No callback that
 * struct_size covers is NULL. All may be called from any thread while the instance
 * is alive, except set_error (see below). Messages are length-delimited
 * UTF-8, not necessarily NUL-terminated. */
struct ferrule_host {
    uint32_t struct_size;   /* sizeof as the host built it; check before using
                               any field added after ABI 1.0 */
    uint16_t abi_major;     /* the host's ABI version */
    uint16_t abi_minor;
    void *host_data;        /* opaque; the host's own */
    /* Log a message (borrowed for the call) at a FERRULE_LOG_* level; levels
     * above ERROR are logged as ERROR, below TRACE as TRACE. */
    void (*log)(const ferrule_host *host, int32_t level, const char *msg, size_t len);
    /* Set the failure message of the current call or init, on the thread
     * that runs it, before returning a non-OK status. The host copies msg. */
    void (*set_error)(const ferrule_host *host, const char *msg, size_t len);
    /* Allocate memory for a value handed back to the host; aligned for any
     * type; a unique non-NULL pointer even for size 0. Returns NULL only on
     * failure. Free it with free(ptr, size), the same size. No host
     * argument, so that free fits ferrule_bytes.release. */
    void *(*alloc)(size_t size);
    void (*free)(void *ptr, size_t size);
    /* ABI 1.1 (present when struct_size covers it). Call the host function
     * fn, received as an "fn(...)" argument of the current call, from any
     * thread before that call returns. args holds one slot per parameter of
     * fn's signature, borrowed by the host for the invoke (NULL allowed when
     * there are none). On FERRULE_OK, *ret holds a result of the declared
     * type, already range-checked by the host; a str or bytes result is owned
     * by the plugin afterwards and must be given to its release (when not
     * NULL). Returns FERRULE_ERROR when the host function failed or fn is not
     * a live handle; *ret is then untouched and owns nothing. A failure is
     * final: the host raises the host function's own exception when the call
     * returns, whatever status and message the plugin gives, and later
     * invokes of fn in that call fail at once. */
    int32_t (*invoke)(const ferrule_host *host, const ferrule_fn *fn,
                      const ferrule_value *args, ferrule_value *ret);
    /* ABI 1.2 (present when struct_size covers it). Find an implementation
     * of interface id (borrowed, NUL-terminated) at exactly this revision:
     * a service the host provides, else an instance made for the caller from
     * another loaded plugin's implementation. fingerprint is the one the
     * plugin was generated with; a different one is refused (and logged with
     * both layouts). Returns NULL when nothing matches, never fails
     * otherwise. The object is the caller's until it passes it to release;
     * an object of an interface that is not thread-safe must not be called
     * from two threads at once. Allowed from any thread, also in init. */
    const ferrule_object *(*query)(const ferrule_host *host, const char *id,
                                   uint32_t revision, uint64_t fingerprint);
    /* Call method number `method` (declaration order, from 0) of object with
     * the method's arguments (borrowed, laid out as for an exported function;
     * NULL allowed when there are none). On FERRULE_OK, *ret holds the result
     * with the release rule of an exported function's result, reversed: the
     * caller owns a str or bytes result and gives it to its release. On
     * failure returns FERRULE_ERROR or FERRULE_PANIC and ret->bytes holds the
     * callee's message, owned by the caller the same way. An unknown or
     * released object, or a method out of range, is a failure too. */
    int32_t (*call)(const ferrule_host *host, const ferrule_object *object, uint32_t method,
                    const ferrule_value *args, ferrule_value *ret);
    /* Give an object back; it must not be used afterwards. NULL is ignored. */
    void (*release)(const ferrule_host *host, const ferrule_object *object);
};

/* An exported function. args holds one slot per parameter of the signature,
 * borrowed for the call (never NULL, even with no parameters); the function
 * writes its result (if any) to *ret (never NULL; an f32 result leaves the
 * other bytes unspecified). state is what init stored. Returns FERRULE_OK,
 * or a failure status after calling host->set_error. */
typedef int32_t (*ferrule_call_fn)(const ferrule_host *host, void *state,
                                   const ferrule_value *args, ferrule_value *ret);

typedef struct ferrule_function {
    uint32_t struct_size;   /* sizeof(ferrule_function) as the plugin built it */
    uint32_t flags;         /* FERRULE_FN_* bits */
    const char *name;       /* static; an identifier, unique in the plugin */
    const char *signature;  /* static; e.g. "(a: i64, b: i64) -> i64" */
    const char *doc;        /* static; may be NULL */
    ferrule_call_fn call;
} ferrule_function;

/* Creates the instance state. config is borrowed UTF-8 (len config_len,
 * NUL-terminated), empty when the host has none. On failure call
 * host->set_error and return a non-OK status; shutdown is then not called. */
typedef int32_t (*ferrule_init_fn)(const ferrule_host *host, const char *config,
                                   size_t config_len, void **state);
/* An implementation of a host-defined interface (ABI 1.2). Static. The host
 * makes instances of it with create and calls their methods through
 * methods[i](host, self, args, ret), in the uniform calling convention with
 * the instance as state. Generated code fills this in (ferrule generate);
 * see docs/interfaces.md for how each parameter type travels. */
typedef struct ferrule_interface {
    uint32_t struct_size;      /* sizeof(ferrule_interface) as the plugin built it */
    uint32_t flags;            /* FERRULE_IFACE_* bits */
    const char *id;            /* static; the interface id, e.g. "org.example.text.transform" */
    uint32_t revision;         /* the interface revision implemented */
    uint32_t method_count;     /* entries in methods */
    uint64_t fingerprint;      /* of the revision's canonical layout, as generated */
    const char *layout;        /* static; that canonical layout text, may be NULL */
    const char *name;          /* static; unique in the plugin among implementations of id */
    const char *doc;           /* static; may be NULL */
    const ferrule_call_fn *methods; /* static; the vtable, in declaration order */
    /* Make an instance: store it in *self and return FERRULE_OK, or call
     * host->set_error and return a failure status. plugin_state is what the
     * plugin's init stored. The host calls destroy exactly once per instance,
     * after every call into it has returned; the plugin's shutdown runs only
     * after every instance is destroyed. */
    int32_t (*create)(const ferrule_host *host, void *plugin_state, void **self);
    void (*destroy)(const ferrule_host *host, void *plugin_state, void *self);
} ferrule_interface;

/* Destroys the instance state; called exactly once per successful init
 * (also when init is NULL, with state NULL), after every call into the
 * instance has returned. The host table is still valid during the call. */
typedef void (*ferrule_shutdown_fn)(const ferrule_host *host, void *state);

/* The descriptor returned by the entry point. Static. The host checks magic,
 * struct_size and abi_major before it reads any other field. */
typedef struct ferrule_plugin {
    uint64_t magic;          /* FERRULE_MAGIC */
    uint32_t struct_size;    /* sizeof(ferrule_plugin) as the plugin built it */
    uint16_t abi_major;      /* FERRULE_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;
    const char *id;          /* static; reverse-DNS, e.g. "org.example.greeter" */
    const char *name;        /* static; human-readable */
    const char *version;     /* static; the plugin's own version */
    const char *description; /* static; may be NULL */
    const char *license;     /* static; SPDX expression, may be NULL */
    uint32_t function_count;
    uint32_t flags;          /* reserved, 0 */
    const ferrule_function *const *functions; /* static array of function_count */
    ferrule_init_fn init;         /* may be NULL: state is then NULL */
    ferrule_shutdown_fn shutdown; /* may be NULL */
    /* ABI 1.2 (read when struct_size covers it) */
    uint32_t interface_count;
    uint32_t reserved;       /* 0 */
    const ferrule_interface *const *interfaces; /* static array of interface_count */
} ferrule_plugin;

/* The one exported symbol, named "ferrule_entry_v1". Callable from any
 * thread, any number of times; returns the same static descriptor. */
typedef const ferrule_plugin *(*ferrule_entry_fn)(void);

/* FERRULE-ABI-END */

#define FERRULE_ENTRY_SYMBOL "ferrule_entry_v1"

#if defined(_WIN32)
#define FERRULE_EXPORT __declspec(dllexport)
#elif defined(__GNUC__)
#define FERRULE_EXPORT __attribute__((visibility("default")))
#else
#define FERRULE_EXPORT
#endif

/* C linkage for the entry point in C++ too: FERRULE_ENTRY is used outside
 * this header's extern "C" block, where a C++ compiler would otherwise export
 * a mangled name (_Z16ferrule_entry_v1v) that no host looks up. */
#ifdef __cplusplus
#define FERRULE_EXTERN_C extern "C"
#else
#define FERRULE_EXTERN_C
#endif

/* Declare (and then define) the entry point with this, at file scope:
 *   FERRULE_ENTRY { return &my_descriptor; }
 * Build with -fvisibility=hidden so that nothing else is exported. In C++
 * that is not enough (inline and template code from the standard library,
 * e.g. std::string's, stays exported as weak symbols): also link with the
 * version script beside this header, which exports ferrule_entry_v1 alone:
 *   -Wl,--version-script=DIR/ferrule.map
 * where DIR is this header's directory (ferrule.get_include() in Python). */
#define FERRULE_ENTRY FERRULE_EXTERN_C FERRULE_EXPORT const ferrule_plugin *ferrule_entry_v1(void)

/* Whether a host table has a field added after ABI 1.0, e.g.
 * FERRULE_HOST_HAS(host, query) before using host->query. */
#define FERRULE_HOST_HAS(host, field) \
    ((host)->struct_size >= offsetof(ferrule_host, field) + sizeof((host)->field))

/* Fill in the fixed head of a descriptor. */
#define FERRULE_PLUGIN_HEAD \
    FERRULE_MAGIC, (uint32_t)sizeof(ferrule_plugin), FERRULE_ABI_MAJOR, FERRULE_ABI_MINOR

/* Initialiser for a ferrule_function. */
#define FERRULE_FUNCTION(name, signature, doc, flags, call) \
    { (uint32_t)sizeof(ferrule_function), (flags), (name), (signature), (doc), (call) }

/* Report a NUL-terminated error message and return FERRULE_ERROR. */
static inline int32_t ferrule_fail(const ferrule_host *host, const char *msg) {
    size_t len = 0;
    while (msg[len] != '\0') {
        len++;
    }
    host->set_error(host, msg, len);
    return FERRULE_ERROR;
}

/* Log a NUL-terminated message. */
static inline void ferrule_log(const ferrule_host *host, int32_t level, const char *msg) {
    size_t len = 0;
    while (msg[len] != '\0') {
        len++;
    }
    host->log(host, level, msg, len);
}

/* Return a copy of len bytes allocated with the host's allocator; the host
 * frees it after copying. Returns FERRULE_ERROR if allocation fails. */
static inline int32_t ferrule_return_copy(const ferrule_host *host, ferrule_value *ret,
                                          const void *data, size_t len) {
    unsigned char *out = (unsigned char *)host->alloc(len);
    size_t i;
    if (out == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    for (i = 0; i < len; i++) {
        out[i] = ((const unsigned char *)data)[i];
    }
    ret->bytes.ptr = out;
    ret->bytes.len = len;
    ret->bytes.release = host->free;
    return FERRULE_OK;
}

/* Call the host function fn (an "fn(...)" argument) through host->invoke.
 * A host older than ABI 1.1 has no invoke: then the call's error message is
 * set and FERRULE_ERROR returned. */
static inline int32_t ferrule_invoke(const ferrule_host *host, const ferrule_fn *fn,
                                     const ferrule_value *args, ferrule_value *ret) {
    if (host->struct_size < offsetof(ferrule_host, invoke) + sizeof(host->invoke) ||
        host->invoke == NULL) {
        return ferrule_fail(host, "this host has no invoke (ABI 1.0): host functions need ABI 1.1");
    }
    return host->invoke(host, fn, args, ret);
}

#ifdef __cplusplus
}
#endif

/* C++ helpers (C++11 or later, header-only, standard library only).
 *
 * A C++ exception must not leave a function that the host calls: the host is
 * C, so the exception finds no handler and std::terminate aborts the whole
 * host process (with isolated=True only the plugin's child process dies, and
 * the host raises PluginCrashedError, signal 6). Wrap the body of every
 * function, init and create in ferrule::guard, and of shutdown and destroy in
 * ferrule::guard_cleanup:
 *
 *   static int32_t first(const ferrule_host *host, void *state,
 *                        const ferrule_value *args, ferrule_value *ret) {
 *       return ferrule::guard(host, [&] {
 *           ret->f64 = static_cast<Series *>(state)->values.at(0); // may throw
 *       });
 *   }
 *
 * These call host->set_error and host->log directly rather than the static C
 * helpers above, so that the same inline code is used in every translation
 * unit. See docs/cpp.md. */
#if defined(__cplusplus) && (__cplusplus >= 201103L || (defined(_MSVC_LANG) && _MSVC_LANG >= 201103L))

#include <cstring>
#include <exception>
#include <new>
#include <type_traits>
#include <utility>

/* With -fno-exceptions nothing throws and try/catch does not compile: the
 * guards then only run the body. */
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define FERRULE_CXX_EXCEPTIONS 1
#else
#define FERRULE_CXX_EXCEPTIONS 0
#endif

namespace ferrule {
namespace detail {

template <class Body>
inline int32_t run(Body &body, std::true_type /* body returns void */) {
    body();
    return FERRULE_OK;
}

template <class Body>
inline int32_t run(Body &body, std::false_type /* body returns a status */) {
    return static_cast<int32_t>(body());
}

inline int32_t fail(const ferrule_host *host, const char *msg) noexcept {
    host->set_error(host, msg, std::strlen(msg));
    return FERRULE_ERROR;
}

/* Log prefix + text at ERROR; text is cut to fit, at a UTF-8 boundary. */
inline void log_error(const ferrule_host *host, const char *prefix, const char *text) noexcept {
    char msg[512];
    size_t n = std::strlen(prefix), extra = std::strlen(text);
    std::memcpy(msg, prefix, n);
    if (extra > sizeof msg - n) {
        extra = sizeof msg - n;
        while (extra > 0 && (static_cast<unsigned char>(text[extra]) & 0xC0) == 0x80) {
            extra--;
        }
    }
    std::memcpy(msg + n, text, extra);
    host->log(host, FERRULE_LOG_ERROR, msg, n + extra);
}

inline const char *what_of(const std::exception &e) noexcept {
    const char *what = e.what();
    return what != nullptr && what[0] != '\0' ? what : "a C++ exception with an empty what()";
}

inline const char *unknown_exception() noexcept {
    return "unknown C++ exception (not derived from std::exception): throw a std::exception "
           "subclass so that its what() becomes the error message";
}

} /* namespace detail */

/* Run body(), which returns void (meaning FERRULE_OK) or a status
 * (FERRULE_OK, or a failure after host->set_error), and return that status;
 * never throws. An exception that escapes body becomes a failure of the call
 * (or init, or create) with FERRULE_ERROR: a std::exception's what() is the
 * message, std::bad_alloc reads "out of memory", anything else "unknown C++
 * exception". Anything body already wrote to ret is then ignored by the host,
 * so do not hand over owned memory before the last thing that may throw. */
template <class Body>
inline int32_t guard(const ferrule_host *host, Body &&body) noexcept {
    typedef decltype(std::declval<Body &>()()) result;
    /* Exactly a status: a wider integer (a size, a count) would be truncated
     * into one, and a large count could read as FERRULE_OK. */
    static_assert(std::is_void<result>::value || std::is_same<result, int32_t>::value ||
                      std::is_same<result, int>::value,
                  "ferrule::guard: the body must return void (FERRULE_OK) or an int32_t status");
#if FERRULE_CXX_EXCEPTIONS
    try {
        return detail::run(body, std::is_void<result>());
    } catch (const std::bad_alloc &) {
        return detail::fail(host, "out of memory (std::bad_alloc): an allocation in the plugin failed");
    } catch (const std::exception &e) {
        return detail::fail(host, detail::what_of(e));
    } catch (...) {
        return detail::fail(host, detail::unknown_exception());
    }
#else
    (void)host;
    return detail::run(body, std::is_void<result>());
#endif
}

/* Run body() for shutdown or destroy, which have no status to fail with:
 * an exception that escapes body is logged at FERRULE_LOG_ERROR and dropped.
 * Never throws. */
template <class Body>
inline void guard_cleanup(const ferrule_host *host, Body &&body) noexcept {
#if FERRULE_CXX_EXCEPTIONS
    try {
        body();
    } catch (const std::exception &e) {
        detail::log_error(host, "exception escaped shutdown or destroy, ignored: ", detail::what_of(e));
    } catch (...) {
        detail::log_error(host, "exception escaped shutdown or destroy, ignored: ", detail::unknown_exception());
    }
#else
    (void)host;
    body();
#endif
}

} /* namespace ferrule */

#endif /* C++11 */

#endif /* FERRULE_H */
