/* What the accelerator's parts share: the host table (host_table.c), the
 * gate (gate.c), struct layouts (structs.c) and the function type with its
 * value conversions (_speedups.c). Only the accelerator includes this; the ABI itself is
 * ferrule.h. Hot paths (the gate, the error slot's reset) are inline here so
 * that the call path in _speedups.c keeps them inlined. */
#ifndef FERRULE_SPEEDUPS_H
#define FERRULE_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <stdint.h>

#include "ferrule.h"
#include "_abi_types.h"

#define MAX_PARAMS 64
#define MAX_TEXT 65536

#if defined(__GNUC__)
#define INTERNAL __attribute__((visibility("hidden")))
#else
#define INTERNAL
#endif

/* ---------------------------------------------------------- error slot */

/* set_error's message, per thread (host_table.c): a plugin reports the
 * failure of the call running on its own thread, and the host reads it
 * right after that call. errors_pending counts threads holding one, so a
 * call skips the thread-local lookup when nobody has one. */
INTERNAL extern int errors_pending;
INTERNAL void error_clear(void);
INTERNAL PyObject *error_take(void); /* the message as str (consumed), or the placeholder */
/* Set this thread's message aside / put it back: host code that runs in the
 * middle of a plugin call must not lose the message the plugin set. */
typedef struct {
    char *msg;
    size_t len;
    int set;
} SavedError;
INTERNAL SavedError error_stash(void);
INTERNAL void error_restore(SavedError saved);

/* Before a call: forget a message left by an earlier one on this thread. */
static inline void error_reset(void) {
    if (__atomic_load_n(&errors_pending, __ATOMIC_RELAXED)) {
        error_clear();
    }
}

/* ---------------------------------------------------------- host table */

typedef struct Frame Frame;

typedef struct {
    PyObject_HEAD
    ferrule_host table;
    PyObject *log;         /* callable(level: int, text: str) */
    PyObject *level_cache; /* the logger's isEnabledFor cache (a dict), or NULL */
    PyObject *levels;      /* the logging level of each FERRULE_LOG_*, as its keys */
    PyObject *lent;        /* token -> Lent, for host->call's C path (services.c), or NULL */
    int32_t (*py_call)(const ferrule_host *, const ferrule_object *, uint32_t, const ferrule_value *,
                       ferrule_value *); /* services.py's callback: everything the C path declines */
    Frame *frames;         /* host functions of the calls in flight; the GIL guards it */
    uintptr_t last_handle; /* handles are never reused, so a stale one matches nothing */
} HostTableObject;

INTERNAL extern PyTypeObject HostTableType;

/* A host function's signature, as codes. */
typedef struct {
    int nparams;
    int params[MAX_PARAMS];
    int result; /* a code, or -1 for none */
} FnSig;

/* A host function passed as an fn(...) argument, alive for one call. */
struct Frame {
    Frame *next, *prev;   /* in the host table's list while the call runs */
    uintptr_t handle;     /* what the plugin gets as its ferrule_fn pointer */
    PyObject *callable;
    const FnSig *sig;
    PyObject *owner;      /* the Function, for result checks and messages */
    int index;            /* the parameter it was passed as */
    PyObject *exc_type, *exc_value, *exc_tb; /* the first failure */
};

/* ---------------------------------------------------------------- gate */

/* Calls in flight into one plugin or instance, the threads running them,
 * and the re-entrant lock that serialises functions that are not
 * thread-safe. The GIL guards every field but the lock itself. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t active;
    int closed;
    int waiting;
    PyThread_type_lock idle;   /* held while someone may wait for idleness */
    PyThread_type_lock serial;
    unsigned long serial_owner; /* thread holding serial, 0 for none */
    Py_ssize_t serial_depth;
    const void **inside;       /* a mark (a stack address) of each call in flight, see gate_enter */
    Py_ssize_t inside_cap;
    PyObject *closed_error;    /* exception class raised by enter() after close */
    PyObject *closed_message;
    PyObject *inside_message;  /* raised by close(True) from inside a call */
} GateObject;

INTERNAL extern PyTypeObject GateType;
INTERNAL int gate_grow(GateObject *self); /* room for one more entry in inside; -1 with MemoryError */

/* A call in: `mark` is the address of a local of the calling function,
 * which tells the calls in flight apart and names their threads for close()
 * (gate.c): no two live frames share an address, and each thread's stack is
 * its own range. Cheaper than asking for the thread's id on every call. */
static inline int gate_enter(GateObject *self, const void *mark) {
    if (self->closed) {
        PyErr_SetObject(self->closed_error, self->closed_message);
        return -1;
    }
    if (self->active == self->inside_cap && gate_grow(self) < 0) {
        return -1;
    }
    self->inside[self->active++] = mark;
    return 0;
}

static inline void gate_leave(GateObject *self, const void *mark) {
    Py_ssize_t last = --self->active;
    if (self->inside[last] != mark) { /* another thread's call entered after this one */
        for (Py_ssize_t i = last - 1; i >= 0; i--) {
            if (self->inside[i] == mark) {
                self->inside[i] = self->inside[last];
                break;
            }
        }
    }
    if (last == 0 && self->closed && self->waiting) {
        self->waiting = 0;
        PyThread_release_lock(self->idle);
    }
}

/* Take the serial lock without holding the GIL while waiting: its holder
 * may need the GIL (a host callback) to finish. Re-entrant on one thread. */
static inline void serial_lock(GateObject *gate) {
    unsigned long me = PyThread_get_thread_ident();
    if (gate->serial_owner == me) {
        gate->serial_depth++;
        return;
    }
    if (!PyThread_acquire_lock(gate->serial, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(gate->serial, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    gate->serial_owner = me;
    gate->serial_depth = 1;
}

static inline void serial_unlock(GateObject *gate) {
    if (--gate->serial_depth == 0) {
        gate->serial_owner = 0;
        PyThread_release_lock(gate->serial);
    }
}

/* ------------------------------------------------------------- values */

/* Fill slot from obj for a parameter of type code (spec: the parameter's
 * Spec in _speedups.c, for buffers and host functions). Returns 0 on
 * success, 1 when obj needs the Python path (no exception set). */
INTERNAL int encode(PyObject *self, int code, const void *spec, PyObject *obj, ferrule_value *slot, Py_buffer *view,
                    int *has_view, Frame *frame, int index);
INTERNAL PyObject *decode_value(int code, const ferrule_value *value);

INTERNAL void host_free(void *ptr, size_t size);
/* An owned copy of data in slot->bytes, released with host_free: what the
 * plugin gets as a str or bytes result. 0, or -1 when malloc fails. */
INTERNAL int give_copy(ferrule_value *slot, const void *data, size_t len);
/* A value for the plugin in *slot (written only on success): a bool or a
 * number, or a give_copy of text or bytes. 0 when done, 1 when obj needs
 * Python's checks (no exception set), -1 with MemoryError. */
INTERNAL int encode_owned(int code, PyObject *obj, ferrule_value *slot);

/* The value of an int that fits one digit, without a call: most arguments
 * are small. 0 when the int is larger (the caller then asks CPython). */
static inline int small_int(PyObject *obj, long long *out) {
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)obj)) {
        *out = (long long)PyUnstable_Long_CompactValue((PyLongObject *)obj);
        return 1;
    }
    return 0;
#else
    Py_ssize_t size = Py_SIZE(obj);
    if (size == 0 || size == 1 || size == -1) {
        *out = size * (long long)((PyLongObject *)obj)->ob_digit[0];
        return 1;
    }
    return 0;
#endif
}

/* Fill slot for the scalar types; 1 when obj needs the general encoder. */
static inline int encode_scalar(int code, PyObject *obj, ferrule_value *slot) {
    long long v;
    switch (code) {
    case T_BOOL:
        if (obj == Py_True) slot->u64 = 1;
        else if (obj == Py_False) slot->u64 = 0;
        else return 1;
        return 0;
    case T_I8: case T_I16: case T_I32: case T_I64:
        if (!PyLong_CheckExact(obj) || !small_int(obj, &v)) break;
        if (v < SIGNED[code].min || v > SIGNED[code].max) return 1;
        slot->i64 = v;
        return 0;
    case T_U8: case T_U16: case T_U32: case T_U64:
        if (!PyLong_CheckExact(obj) || !small_int(obj, &v)) break;
        if (v < 0 || (uint64_t)v > UNSIGNED_MAX[code]) return 1;
        slot->u64 = (uint64_t)v;
        return 0;
    case T_F64:
        if (!PyFloat_CheckExact(obj)) break;
        slot->f64 = PyFloat_AS_DOUBLE(obj);
        return 0;
    }
    return encode(NULL, code, NULL, obj, slot, NULL, NULL, NULL, 0);
}

/* ------------------------------------------------------------ structs */

/* An @idl.struct's C layout (structs.c). codec_pack returns 0 when it packed
 * obj into out (codec_size bytes), 1 when the Python codec must check it. */
INTERNAL extern PyTypeObject CodecType;
INTERNAL int codec_pack(PyObject *codec, PyObject *obj, unsigned char *out);
INTERNAL PyObject *codec_unpack(PyObject *codec, const unsigned char *data);
INTERNAL Py_ssize_t codec_size(PyObject *codec);

/* ----------------------------------------------------------- services */

/* host->call served in C for what services.py lent (services.c). */
INTERNAL extern PyTypeObject LentType;
INTERNAL extern PyMethodDef lent_functions[];
INTERNAL int32_t host_call(const ferrule_host *host, const ferrule_object *object, uint32_t method,
                           const ferrule_value *args, ferrule_value *ret);

#endif
