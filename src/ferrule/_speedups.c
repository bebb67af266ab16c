/* The call accelerator: a vectorcall entry for plugin functions, the host
 * table in C, and the call gate. Optional: ferrule/_plugin.py falls back to
 * its cffi path when this module is not built, and both give the same
 * results and errors.
 *
 * Only the common, valid cases are handled here. Anything unusual (keyword
 * arguments, a wrong count, an int subclass, an out-of-range value, a buffer
 * of the wrong type) goes to the Python method _call_checked, which checks
 * and normalises the arguments (or raises the error) and then comes back
 * through _call_normalized. Error messages are therefore written once, in
 * Python. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

#include "ferrule.h"

#define MAX_PARAMS 64
#define MAX_TEXT 65536

/* Type codes, as ferrule._signature.CODES lists them. */
enum { T_BOOL, T_I8, T_I16, T_I32, T_I64, T_U8, T_U16, T_U32, T_U64, T_F32, T_F64,
       T_STR, T_BYTES, T_BUF, T_MUTBUF, T_FN };

/* ------------------------------------------------------------ fork guard */

/* A plugin that forks returns from its call twice. The copy must never run
 * the host's Python code (it would serve the same pipes and memory), so a
 * call that comes back in a forked copy ends that process. The counter moves
 * only in a child of fork(); the parent's calls see it unchanged. */
static unsigned fork_generation;
static int die_with_parent;  /* set in an isolated child: forked copies get SIGKILL when it dies */

static void after_fork_in_child(void) {
    __atomic_add_fetch(&fork_generation, 1, __ATOMIC_RELAXED);
#ifdef __linux__
    if (die_with_parent) prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
}

static void forked_copy_exit(void) {
    static const char msg[] = "ferrule: a plugin forked during a call; the copy ends here, as it must not run the host\n";
    ssize_t unused = write(2, msg, sizeof msg - 1);
    (void)unused;
    _exit(70);
}

/* ---------------------------------------------------------------- errors */

/* set_error's message, per thread: a plugin reports the failure of the call
 * running on its own thread, and the host reads it right after that call. */
static _Thread_local struct {
    char *msg;
    size_t len;
    int set;
} tls_error;

/* Threads holding a message: lets the call path skip the thread-local
 * lookup (a function call in a shared object) when nobody has one. */
static int errors_pending;

static void error_clear(void) {
    if (tls_error.set) {
        free(tls_error.msg);
        tls_error.msg = NULL;
        tls_error.len = 0;
        tls_error.set = 0;
        __atomic_fetch_sub(&errors_pending, 1, __ATOMIC_RELAXED);
    }
}

/* Before a call: forget a message left by an earlier one on this thread. */
static inline void error_reset(void) {
    if (__atomic_load_n(&errors_pending, __ATOMIC_RELAXED)) {
        error_clear();
    }
}

/* The pending message as str (consumed), or the placeholder. */
static PyObject *error_take(void) {
    PyObject *text;
    if (tls_error.set && tls_error.len) {
        text = PyUnicode_DecodeUTF8(tls_error.msg, (Py_ssize_t)tls_error.len, "replace");
    } else {
        text = PyUnicode_FromString("(the plugin gave no error message)");
    }
    error_clear();
    return text;
}

/* ---------------------------------------------------------------- host */

typedef struct Frame Frame;

typedef struct {
    PyObject_HEAD
    ferrule_host table;
    PyObject *log;  /* callable(level: int, text: str) */
    Frame *frames;  /* host functions of the calls in flight; the GIL guards it */
    uintptr_t last_handle; /* handles are never reused, so a stale one matches nothing */
} HostObject;

/* A host function passed as an fn(...) argument, alive for one call. */
typedef struct {
    int nparams;
    int params[MAX_PARAMS];
    int result; /* a code, or -1 for none */
} FnSig;

struct Frame {
    Frame *next, *prev;   /* in the host's list while the call runs */
    uintptr_t handle;     /* what the plugin gets as its ferrule_fn pointer */
    PyObject *callable;
    const FnSig *sig;
    PyObject *owner;      /* the Function, for result checks */
    int index;            /* the parameter it was passed as */
    PyObject *exc_type, *exc_value, *exc_tb; /* the first failure */
};

static void host_log(const ferrule_host *host, int32_t level, const char *msg, size_t len) {
    HostObject *self = (HostObject *)host->host_data;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *text = PyUnicode_DecodeUTF8(msg ? msg : "", msg ? (Py_ssize_t)len : 0, "replace");
    if (text != NULL) {
        PyObject *res = PyObject_CallFunction(self->log, "iO", (int)level, text);
        Py_XDECREF(res);
        Py_DECREF(text);
    }
    PyErr_Clear(); /* a broken handler must not unwind into plugin code */
    PyErr_Restore(type, value, tb);
    PyGILState_Release(gil);
}

static void host_set_error(const ferrule_host *host, const char *msg, size_t len) {
    (void)host;
    error_clear();
    tls_error.set = 1;
    __atomic_fetch_add(&errors_pending, 1, __ATOMIC_RELAXED);
    if (msg == NULL || len == 0) {
        return;
    }
    if (len > MAX_TEXT) {
        len = MAX_TEXT;
    }
    tls_error.msg = malloc(len);
    if (tls_error.msg != NULL) {
        memcpy(tls_error.msg, msg, len);
        tls_error.len = len;
    }
}

static void *host_alloc(size_t size) { return malloc(size ? size : 1); }

static void host_free(void *ptr, size_t size) {
    (void)size;
    free(ptr);
}

static int encode(PyObject *self, int code, const void *spec, PyObject *obj, ferrule_value *slot,
                  Py_buffer *view, int *has_view, Frame *frame, int index);
static inline PyObject *decode_value(int code, const ferrule_value *value);

static void frame_fail(Frame *frame) {
    if (frame->exc_type == NULL) {
        PyErr_Fetch(&frame->exc_type, &frame->exc_value, &frame->exc_tb);
    } else {
        PyErr_Clear();
    }
}

static int32_t host_invoke(const ferrule_host *host, const ferrule_fn *fn, const ferrule_value *args,
                           ferrule_value *ret) {
    if (host == NULL || fn == NULL || ret == NULL) {
        return FERRULE_ERROR;
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    int32_t status = FERRULE_ERROR;
    PyObject *argv[MAX_PARAMS];
    int n = 0;
    /* Only a handle of a call in flight on this instance is dereferenced: a
     * stale or foreign one is refused, not followed. */
    Frame *frame = ((HostObject *)host->host_data)->frames;
    while (frame != NULL && frame->handle != (uintptr_t)fn) {
        frame = frame->next;
    }
    if (frame == NULL || frame->exc_type != NULL) { /* unknown, or failed before */
        goto done;
    }
    if (args == NULL && frame->sig->nparams) {
        PyErr_Format(PyExc_ValueError, "the plugin passed no arguments to a host function that takes %d",
                     frame->sig->nparams);
        frame_fail(frame);
        goto done;
    }
    for (; n < frame->sig->nparams; n++) {
        argv[n] = decode_value(frame->sig->params[n], &args[n]);
        if (argv[n] == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                /* Say which plugin and function sent it; the message is Python's. */
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyErr_NormalizeException(&type, &value, &tb);
                PyObject *error = PyObject_CallMethod(frame->owner, "_host_text_error", "iO", frame->index,
                                                      value ? value : Py_None);
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
                if (error != NULL) {
                    PyErr_SetObject((PyObject *)Py_TYPE(error), error);
                    Py_DECREF(error);
                }
            }
            frame_fail(frame);
            goto done;
        }
    }
    PyObject *res = PyObject_Vectorcall(frame->callable, argv, (size_t)n, NULL);
    if (res == NULL) {
        frame_fail(frame);
        goto done;
    }
    int code = frame->sig->result;
    if (code < 0) {
        Py_DECREF(res);
        status = FERRULE_OK;
        goto done;
    }
    /* Text and bytes go to the plugin as a malloc'd copy it releases; *ret
     * is written only on success. */
    int has_view = 0;
    Py_buffer view;
    ferrule_value out;
    int r = encode(NULL, code, NULL, res, &out, &view, &has_view, NULL, 0);
    if (r != 0) {
        /* Unusual or wrong: let Python check and normalise (or raise). */
        PyObject *fixed = PyObject_CallMethod(frame->owner, "_check_host_result", "iO", frame->index, res);
        Py_DECREF(res);
        if (fixed == NULL) {
            frame_fail(frame);
            goto done;
        }
        res = fixed;
        if (encode(NULL, code, NULL, res, &out, &view, &has_view, NULL, 0) != 0) {
            Py_DECREF(res);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "host function result could not be converted");
            }
            frame_fail(frame);
            goto done;
        }
    }
    if (code == T_STR || code == T_BYTES) {
        size_t len = out.bytes.len;
        void *copy = malloc(len ? len : 1);
        if (copy == NULL) {
            if (has_view) PyBuffer_Release(&view);
            Py_DECREF(res);
            PyErr_NoMemory();
            frame_fail(frame);
            goto done;
        }
        memcpy(copy, out.bytes.ptr, len);
        out.bytes.ptr = copy;
        out.bytes.release = host_free;
    }
    *ret = out;
    if (has_view) PyBuffer_Release(&view);
    Py_DECREF(res);
    status = FERRULE_OK;
done:
    while (n > 0) {
        Py_DECREF(argv[--n]);
    }
    PyGILState_Release(gil);
    return status;
}

static PyObject *Host_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *log;
    static char *kwlist[] = {"log", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", kwlist, &log)) {
        return NULL;
    }
    HostObject *self = (HostObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->table.struct_size = (uint32_t)sizeof(ferrule_host);
    self->table.abi_major = FERRULE_ABI_MAJOR;
    self->table.abi_minor = FERRULE_ABI_MINOR;
    self->table.host_data = self;
    self->table.log = host_log;
    self->table.set_error = host_set_error;
    self->table.alloc = host_alloc;
    self->table.free = host_free;
    self->table.invoke = host_invoke;
    Py_INCREF(log);
    self->log = log;
    return (PyObject *)self;
}

static void Host_dealloc(HostObject *self) {
    Py_XDECREF(self->log);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Host_address(HostObject *self, void *closure) {
    (void)closure;
    return PyLong_FromVoidPtr(&self->table);
}

static PyObject *Host_take_error(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return error_take();
}

static PyObject *Host_clear_error(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    error_clear();
    Py_RETURN_NONE;
}

/* The interface callbacks (ABI 1.2) live in Python (cffi callbacks): they
 * reach the host's registry, which only Python knows. */
static PyObject *Host_set_services(HostObject *self, PyObject *args) {
    unsigned long long query, call, release;
    if (!PyArg_ParseTuple(args, "KKK", &query, &call, &release)) {
        return NULL;
    }
    self->table.query = (const ferrule_object *(*)(const ferrule_host *, const char *, uint32_t, uint64_t))(uintptr_t)query;
    self->table.call = (int32_t(*)(const ferrule_host *, const ferrule_object *, uint32_t, const ferrule_value *,
                                   ferrule_value *))(uintptr_t)call;
    self->table.release = (void (*)(const ferrule_host *, const ferrule_object *))(uintptr_t)release;
    Py_RETURN_NONE;
}

static PyMethodDef Host_methods[] = {
    {"set_services", (PyCFunction)Host_set_services, METH_VARARGS, "Fill in query, call and release (addresses)."},
    {"take_error", Host_take_error, METH_NOARGS, "The calling thread's failure message (consumed)."},
    {"clear_error", Host_clear_error, METH_NOARGS, "Forget the calling thread's failure message."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Host_getset[] = {
    {"address", (getter)Host_address, NULL, "Address of the ferrule_host table.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HostType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ferrule._speedups.Host",
    .tp_basicsize = sizeof(HostObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The host callback table of one plugin instance, in C.",
    .tp_new = Host_new,
    .tp_dealloc = (destructor)Host_dealloc,
    .tp_methods = Host_methods,
    .tp_getset = Host_getset,
};

/* ---------------------------------------------------------------- gate */

/* Counts calls in flight so that shutdown never runs under one, and holds
 * the lock that serialises functions that are not thread-safe. The GIL
 * guards the counters: they change only while it is held. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t active;
    int closed;
    int waiting;
    PyThread_type_lock idle;   /* held while someone may wait for idleness */
    PyThread_type_lock serial;
    PyObject *closed_error;    /* exception class raised by enter() after close */
    PyObject *closed_message;
} GateObject;

static PyObject *Gate_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *closed_error, *closed_message;
    static char *kwlist[] = {"closed_error", "closed_message", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OU", kwlist, &closed_error, &closed_message)) {
        return NULL;
    }
    GateObject *self = (GateObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->idle = PyThread_allocate_lock();
    self->serial = PyThread_allocate_lock();
    if (self->idle == NULL || self->serial == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->closed_error = Py_NewRef(closed_error);
    self->closed_message = Py_NewRef(closed_message);
    return (PyObject *)self;
}

static void Gate_dealloc(GateObject *self) {
    if (self->idle) PyThread_free_lock(self->idle);
    if (self->serial) PyThread_free_lock(self->serial);
    Py_XDECREF(self->closed_error);
    Py_XDECREF(self->closed_message);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int gate_enter(GateObject *self) {
    if (self->closed) {
        PyErr_SetObject(self->closed_error, self->closed_message);
        return -1;
    }
    self->active++;
    return 0;
}

static void gate_leave(GateObject *self) {
    if (--self->active == 0 && self->closed && self->waiting) {
        self->waiting = 0;
        PyThread_release_lock(self->idle);
    }
}

static PyObject *Gate_enter(GateObject *self, PyObject *unused) {
    (void)unused;
    if (gate_enter(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Gate_leave(GateObject *self, PyObject *unused) {
    (void)unused;
    gate_leave(self);
    Py_RETURN_NONE;
}

/* close(wait) -> bool: refuse new calls; True if none is in flight, after
 * waiting for them when wait is true. */
static PyObject *Gate_close(GateObject *self, PyObject *wait) {
    self->closed = 1;
    if (self->active == 0) {
        Py_RETURN_TRUE;
    }
    int should_wait = PyObject_IsTrue(wait);
    if (should_wait < 0) return NULL;
    if (!should_wait) {
        Py_RETURN_FALSE;
    }
    while (self->active > 0) {
        if (!self->waiting) {
            PyThread_acquire_lock(self->idle, WAIT_LOCK);
            self->waiting = 1;
        }
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->idle, WAIT_LOCK); /* released by the last leave */
        PyThread_release_lock(self->idle);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_TRUE;
}

static PyObject *Gate_closed(GateObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->closed);
}

static PyMethodDef Gate_methods[] = {
    {"enter", (PyCFunction)Gate_enter, METH_NOARGS, "Count a call in; raises once closed."},
    {"leave", (PyCFunction)Gate_leave, METH_NOARGS, "Count a call out."},
    {"close", (PyCFunction)Gate_close, METH_O, "Refuse new calls; True when none is in flight."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Gate_getset[] = {
    {"closed", (getter)Gate_closed, NULL, "Whether close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ferrule._speedups.Gate",
    .tp_basicsize = sizeof(GateObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Calls in flight and the serial lock of one plugin instance.",
    .tp_new = Gate_new,
    .tp_dealloc = (destructor)Gate_dealloc,
    .tp_methods = Gate_methods,
    .tp_getset = Gate_getset,
};

/* ---------------------------------------------------------------- values */

typedef struct {
    int code;
    int elem;       /* buf/mutbuf: element code */
    FnSig *fn;      /* fn: the host function's signature (owned) */
} Spec;

static const struct { int64_t min, max; } SIGNED[] = {
    [T_I8] = {INT8_MIN, INT8_MAX}, [T_I16] = {INT16_MIN, INT16_MAX},
    [T_I32] = {INT32_MIN, INT32_MAX}, [T_I64] = {INT64_MIN, INT64_MAX},
};
static const uint64_t UNSIGNED_MAX[] = {
    [T_U8] = UINT8_MAX, [T_U16] = UINT16_MAX, [T_U32] = UINT32_MAX, [T_U64] = UINT64_MAX,
};
static const int BITS[] = {[T_I8] = 8, [T_I16] = 16, [T_I32] = 32, [T_I64] = 64,
                           [T_U8] = 8, [T_U16] = 16, [T_U32] = 32, [T_U64] = 64};

#define FN_ACCELERATED 0x100

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    ferrule_call_fn call;
    HostObject *host;
    GateObject *gate;
    void *state;
    int flags;
    int nparams;
    int result; /* a code, or -1 */
    int simple; /* scalars only, in and out, at most MAX_SIMPLE: the short path */
    Spec *params;
} FunctionObject;

#define MAX_SIMPLE 16

/* Does a buffer's struct-module format describe one element of code? */
static int format_matches(const char *format, Py_ssize_t itemsize, int code) {
    static const char SIGNED_CHARS[] = "bhilqn", UNSIGNED_CHARS[] = "BHILQN";
    static const Py_ssize_t SIZES[] = {[T_I8] = 1, [T_I16] = 2, [T_I32] = 4, [T_I64] = 8, [T_U8] = 1,
                                       [T_U16] = 2, [T_U32] = 4, [T_U64] = 8, [T_F32] = 4, [T_F64] = 8};
    if (format == NULL) {
        format = "B";
    }
    if (*format == '@' || *format == '=' || *format == '<' || *format == '>' || *format == '!') {
        int big = *format == '>' || *format == '!';
#if PY_LITTLE_ENDIAN
        if (big && itemsize > 1) return 0;
#else
        if (*format == '<' && itemsize > 1) return 0;
        (void)big;
#endif
        format++;
    }
    if (format[0] == '\0' || format[1] != '\0' || itemsize != SIZES[code]) {
        return 0;
    }
    char c = format[0];
    if (code == T_F32) return c == 'f';
    if (code == T_F64) return c == 'd';
    if (code >= T_I8 && code <= T_I64) return strchr(SIGNED_CHARS, c) != NULL;
    return strchr(UNSIGNED_CHARS, c) != NULL;
}

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

/* Fill slot from obj for a parameter of type code. Returns 0 on success, 1
 * when obj needs the Python path (no exception set). A buffer acquired into
 * view sets *has_view; the caller releases it after the call. */
static int encode(PyObject *self, int code, const void *spec_ptr, PyObject *obj, ferrule_value *slot,
                  Py_buffer *view, int *has_view, Frame *frame, int index) {
    const Spec *spec = (const Spec *)spec_ptr;
    switch (code) {
    case T_BOOL:
        if (obj == Py_True) slot->u64 = 1;
        else if (obj == Py_False) slot->u64 = 0;
        else return 1;
        return 0;
    case T_I8: case T_I16: case T_I32: case T_I64: {
        int overflow;
        if (!PyLong_CheckExact(obj)) return 1;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred()) || v < SIGNED[code].min || v > SIGNED[code].max) {
            PyErr_Clear();
            return 1;
        }
        slot->i64 = v;
        return 0;
    }
    case T_U8: case T_U16: case T_U32: case T_U64: {
        int overflow;
        if (!PyLong_CheckExact(obj)) return 1;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (overflow == 0 && v >= 0 && (uint64_t)v <= UNSIGNED_MAX[code]) {
            slot->u64 = (uint64_t)v;
            return 0;
        }
        if (overflow > 0 && code == T_U64) {
            unsigned long long u = PyLong_AsUnsignedLongLong(obj);
            if (!(u == (unsigned long long)-1 && PyErr_Occurred())) {
                slot->u64 = u;
                return 0;
            }
        }
        PyErr_Clear();
        return 1;
    }
    case T_F32: case T_F64: {
        double v;
        if (PyFloat_CheckExact(obj)) {
            v = PyFloat_AS_DOUBLE(obj);
        } else if (PyLong_CheckExact(obj)) {
            v = PyLong_AsDouble(obj);
            if (v == -1.0 && PyErr_Occurred()) {
                PyErr_Clear();
                return 1;
            }
        } else {
            return 1;
        }
        if (code == T_F64) {
            slot->f64 = v;
        } else {
            if (isfinite(v) && fabs(v) > FLT_MAX) return 1;
            slot->f32 = (float)v;
        }
        return 0;
    }
    case T_STR: {
        Py_ssize_t len;
        if (!PyUnicode_CheckExact(obj)) return 1;
        const char *utf8 = PyUnicode_AsUTF8AndSize(obj, &len); /* cached, NUL-terminated */
        if (utf8 == NULL) {
            PyErr_Clear();
            return 1;
        }
        slot->bytes.ptr = utf8;
        slot->bytes.len = (size_t)len;
        slot->bytes.release = NULL;
        return 0;
    }
    case T_BYTES:
        if (PyBytes_CheckExact(obj)) {
            slot->bytes.ptr = PyBytes_AS_STRING(obj);
            slot->bytes.len = (size_t)PyBytes_GET_SIZE(obj);
            slot->bytes.release = NULL;
            return 0;
        }
        if (!PyByteArray_CheckExact(obj) && !PyMemoryView_Check(obj)) return 1;
        if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) {
            PyErr_Clear();
            return 1;
        }
        *has_view = 1;
        slot->bytes.ptr = view->buf;
        slot->bytes.len = (size_t)view->len;
        slot->bytes.release = NULL;
        return 0;
    case T_BUF: case T_MUTBUF: {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (code == T_MUTBUF ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(obj, view, flags) < 0) {
            PyErr_Clear();
            return 1;
        }
        if (!format_matches(view->format, view->itemsize, spec->elem) || view->itemsize <= 0 ||
            (view->len > 0 && (uintptr_t)view->buf % (uintptr_t)view->itemsize != 0)) {
            PyBuffer_Release(view);
            return 1;
        }
        *has_view = 1;
        slot->buf.ptr = view->buf;
        slot->buf.len = (size_t)(view->len / view->itemsize);
        return 0;
    }
    case T_FN:
        if (!PyCallable_Check(obj)) return 1;
        HostObject *owner_host = ((FunctionObject *)self)->host;
        frame->prev = NULL;
        frame->next = owner_host->frames;
        if (frame->next != NULL) frame->next->prev = frame;
        owner_host->frames = frame;
        frame->handle = ++owner_host->last_handle;
        frame->callable = obj;
        frame->sig = spec->fn;
        frame->owner = self;
        frame->index = index;
        frame->exc_type = frame->exc_value = frame->exc_tb = NULL;
        slot->func = (const ferrule_fn *)frame->handle;
        return 0;
    }
    return 1;
}

static PyObject *int_value(int code, uint64_t raw) {
    int bits = BITS[code];
    if (bits < 64) {
        raw &= ((uint64_t)1 << bits) - 1;
    }
    if (code <= T_I64) {
        if (bits < 64 && (raw >> (bits - 1))) {
            return PyLong_FromLongLong((long long)raw - ((long long)1 << bits));
        }
        return PyLong_FromLongLong((long long)raw);
    }
    return PyLong_FromUnsignedLongLong(raw);
}

/* A value the plugin passes to a host function, as Python sees it. */
static inline PyObject *decode_value(int code, const ferrule_value *value) {
    switch (code) {
    case T_BOOL: return PyBool_FromLong(value->u64 != 0);
    case T_F32: return PyFloat_FromDouble(value->f32);
    case T_F64: return PyFloat_FromDouble(value->f64);
    case T_STR: case T_BYTES: {
        const char *ptr = value->bytes.ptr;
        Py_ssize_t len = (Py_ssize_t)value->bytes.len;
        if (ptr == NULL && len) {
            PyErr_SetString(PyExc_ValueError, "the plugin passed a NULL pointer with a non-zero length");
            return NULL;
        }
        if (code == T_BYTES) return PyBytes_FromStringAndSize(len ? ptr : "", len);
        return PyUnicode_DecodeUTF8(len ? ptr : "", len, "strict");
    }
    default: return int_value(code, value->u64);
    }
}

/* ---------------------------------------------------------------- function */



static void release_all(HostObject *host, Py_buffer *views, const int *has_view, Frame *frames, const Spec *params,
                        int n) {
    for (int i = 0; i < n; i++) {
        if (has_view[i]) PyBuffer_Release(&views[i]);
        if (params[i].code == T_FN) {
            Frame *f = &frames[i];
            if (f->prev != NULL) f->prev->next = f->next;
            else host->frames = f->next;
            if (f->next != NULL) f->next->prev = f->prev;
        }
    }
}

/* The result as Python sees it: a scalar, or the one copy of owned text or
 * bytes (the caller then runs its release). */
static PyObject *decode_result(FunctionObject *self, ferrule_value *ret) {
    int code = self->result;
    if (code < 0) Py_RETURN_NONE;
    if (code != T_STR && code != T_BYTES) return decode_value(code, ret);
    const char *ptr = ret->bytes.ptr;
    size_t len = ret->bytes.len;
    PyObject *out;
    if (ptr == NULL && len) {
        out = PyObject_CallMethod((PyObject *)self, "_null_result", "n", (Py_ssize_t)len);
    } else if (code == T_BYTES) {
        out = PyBytes_FromStringAndSize(len ? ptr : "", (Py_ssize_t)len); /* the one copy */
    } else {
        out = PyUnicode_DecodeUTF8(len ? ptr : "", (Py_ssize_t)len, "strict"); /* the one copy */
        if (out == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            PyObject *raw = PyBytes_FromStringAndSize(ptr, (Py_ssize_t)len);
            if (raw != NULL) {
                out = PyObject_CallMethod((PyObject *)self, "_decode_text", "O", raw);
                Py_DECREF(raw);
            }
        }
    }
    return out;
}

/* Take the per-instance serial lock without holding the GIL while waiting:
 * its holder may need the GIL (a host callback) to finish. */
static void serial_lock(GateObject *gate) {
    if (!PyThread_acquire_lock(gate->serial, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(gate->serial, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static PyObject *call_failed(FunctionObject *self, int32_t status);

/* The Python path (_call_checked): binds, checks and normalises, or raises. */
static PyObject *call_python_path(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *method = PyObject_GetAttrString(self, "_call_checked");
    if (method == NULL) return NULL;
    PyObject *out = PyObject_Vectorcall(method, args, (size_t)nargs, kwnames);
    Py_DECREF(method);
    return out;
}

/* Run the plugin's code: with the GIL kept for a QUICK function, released
 * otherwise. The caller holds the serial lock where one is needed. */
static inline int32_t call_plugin(FunctionObject *self, ferrule_value *slots, ferrule_value *ret) {
    int32_t status;
    unsigned generation = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
    if (self->flags & FERRULE_FN_QUICK) {
        status = self->call(&self->host->table, self->state, slots, ret);
    } else {
        Py_BEGIN_ALLOW_THREADS
        status = self->call(&self->host->table, self->state, slots, ret);
        Py_END_ALLOW_THREADS
    }
    if (__atomic_load_n(&fork_generation, __ATOMIC_RELAXED) != generation) {
        forked_copy_exit();
    }
    return status;
}

/* The short path: scalar arguments and result, no buffers, no frames. NULL
 * with no exception set means "take the general path". */
static inline PyObject *call_simple(FunctionObject *self, PyObject *const *args) {
    ferrule_value slots[MAX_SIMPLE + 1];
    int n = self->nparams;
    for (int i = 0; i < n; i++) {
        if (encode_scalar(self->params[i].code, args[i], &slots[i])) {
            return NULL;
        }
    }
    GateObject *gate = self->gate;
    if (gate_enter(gate) < 0) {
        return NULL;
    }
    int serial = !(self->flags & FERRULE_FN_THREAD_SAFE);
    error_reset();
    if (serial) serial_lock(gate);
    int32_t status = call_plugin(self, slots, &slots[n]);
    if (serial) PyThread_release_lock(gate->serial);
    PyObject *result;
    if (status == FERRULE_OK) {
        result = self->result < 0 ? Py_NewRef(Py_None) : decode_value(self->result, &slots[n]);
    } else {
        result = call_failed(self, status);
    }
    gate_leave(gate);
    return result;
}

/* Raise the plugin's failure: always returns NULL. */
static PyObject *call_failed(FunctionObject *self, int32_t status) {
    PyObject *message = error_take();
    if (message != NULL) {
        PyObject *r = PyObject_CallMethod((PyObject *)self, "_raise_status", "iO", (int)status, message);
        Py_XDECREF(r);
        Py_DECREF(message);
    }
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError, "ferrule: a failed call raised nothing");
    }
    return NULL;
}

static PyObject *function_call(FunctionObject *self, PyObject *const *args, Py_ssize_t nargs, int strict) {
    if (self->simple && nargs == self->nparams) {
        PyObject *result = call_simple(self, args);
        if (result != NULL || PyErr_Occurred()) {
            return result;
        }
    }
    ferrule_value slots[MAX_PARAMS + 1];
    Py_buffer views[MAX_PARAMS];
    int has_view[MAX_PARAMS];
    Frame frames[MAX_PARAMS];
    int n = self->nparams;
    if (nargs != n) {
        goto slow;
    }
    for (int i = 0; i < n; i++) {
        has_view[i] = 0;
        if (encode((PyObject *)self, self->params[i].code, &self->params[i], args[i], &slots[i], &views[i],
                   &has_view[i], &frames[i], i)) {
            release_all(self->host, views, has_view, frames, self->params, i);
            goto slow;
        }
    }
    if (gate_enter(self->gate) < 0) {
        release_all(self->host, views, has_view, frames, self->params, n);
        return NULL;
    }
    ferrule_value *ret = &slots[n];
    int32_t status;
    int quick = self->flags & FERRULE_FN_QUICK;
    int serial = !(self->flags & FERRULE_FN_THREAD_SAFE);
    error_reset();
    /* The serial lock covers the call and the release of its result, which
     * is plugin code too (and runs without the GIL unless QUICK). */
    if (serial) serial_lock(self->gate);
    status = call_plugin(self, slots, ret);
    release_all(self->host, views, has_view, frames, self->params, n);
    PyObject *result = NULL;
    /* An exception raised by a host function wins: it is the cause. */
    PyObject *etype = NULL, *evalue = NULL, *etb = NULL;
    for (int i = 0; i < n; i++) {
        if (self->params[i].code == T_FN && frames[i].exc_type != NULL) {
            if (etype == NULL) {
                etype = frames[i].exc_type;
                evalue = frames[i].exc_value;
                etb = frames[i].exc_tb;
            } else {
                Py_DECREF(frames[i].exc_type);
                Py_XDECREF(frames[i].exc_value);
                Py_XDECREF(frames[i].exc_tb);
            }
        }
    }
    if (status != FERRULE_OK) {
        if (etype == NULL) {
            call_failed(self, status);
        } else {
            error_reset();
        }
    } else {
        result = decode_result(self, ret);
        if (etype != NULL) Py_CLEAR(result);
        void (*release)(void *, size_t) = ret->bytes.release;
        if ((self->result == T_STR || self->result == T_BYTES) && release != NULL) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            if (quick) {
                release((void *)ret->bytes.ptr, ret->bytes.len);
            } else {
                Py_BEGIN_ALLOW_THREADS
                release((void *)ret->bytes.ptr, ret->bytes.len);
                Py_END_ALLOW_THREADS
            }
            PyErr_Restore(type, value, tb);
        }
    }
    if (serial) PyThread_release_lock(self->gate->serial);
    if (etype != NULL) {
        PyErr_Restore(etype, evalue, etb);
    }
    gate_leave(self->gate);
    return result;

slow:
    if (strict) {
        PyErr_SetString(PyExc_TypeError, "ferrule: a normalised argument was refused by the accelerator");
        return NULL;
    }
    return call_python_path((PyObject *)self, args, nargs, NULL);
}

static PyObject *Function_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    FunctionObject *self = (FunctionObject *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        return call_python_path(callable, args, nargs, kwnames);
    }
    return function_call(self, args, nargs, 0);
}

static PyObject *Function_call_normalized(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!(((FunctionObject *)self)->flags & FN_ACCELERATED)) {
        PyErr_SetString(PyExc_RuntimeError, "this function is not accelerated");
        return NULL;
    }
    return function_call((FunctionObject *)self, args, nargs, 1);
}

static void free_specs(Spec *specs, Py_ssize_t n) {
    if (specs == NULL) return;
    for (Py_ssize_t i = 0; i < n; i++) PyMem_Free(specs[i].fn);
    PyMem_Free(specs);
}

static int parse_fn_sig(PyObject *params, PyObject *result, FnSig *sig) {
    Py_ssize_t n = PyTuple_Size(params);
    if (n < 0 || n > MAX_PARAMS) {
        PyErr_SetString(PyExc_ValueError, "bad fn signature");
        return -1;
    }
    sig->nparams = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        sig->params[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(params, i));
    }
    sig->result = (int)PyLong_AsLong(result);
    return PyErr_Occurred() ? -1 : 0;
}

/* _accelerate(call, host, gate, state, flags, params, result): make this
 * function call through the vectorcall path. params is a tuple of
 * (code, elem_code, fn_param_codes, fn_result_code). */
static PyObject *Function_accelerate(PyObject *op, PyObject *args) {
    FunctionObject *self = (FunctionObject *)op;
    PyObject *call, *state, *params;
    HostObject *host;
    GateObject *gate;
    int flags, result;
    if (!PyArg_ParseTuple(args, "OO!O!OiO!i", &call, &HostType, &host, &GateType, &gate, &state, &flags,
                          &PyTuple_Type, &params, &result)) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(params);
    if (n > MAX_PARAMS) {
        PyErr_SetString(PyExc_ValueError, "too many parameters");
        return NULL;
    }
    void *fn = PyLong_AsVoidPtr(call);
    void *st = state == Py_None ? NULL : PyLong_AsVoidPtr(state);
    if (PyErr_Occurred()) return NULL;
    Spec *specs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Spec));
    if (specs == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *fn_params, *fn_result;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(params, i), "iiOO", &specs[i].code, &specs[i].elem, &fn_params,
                              &fn_result)) {
            free_specs(specs, i);
            return NULL;
        }
        if (specs[i].code == T_FN) {
            specs[i].fn = PyMem_Calloc(1, sizeof(FnSig));
            int no_memory = specs[i].fn == NULL;
            if (no_memory || parse_fn_sig(fn_params, fn_result, specs[i].fn) < 0) {
                free_specs(specs, i + 1);
                return no_memory ? PyErr_NoMemory() : NULL;
            }
        }
    }
    free_specs(self->params, self->nparams);
    Py_XSETREF(self->host, (HostObject *)Py_NewRef(host));
    Py_XSETREF(self->gate, (GateObject *)Py_NewRef(gate));
    memcpy(&self->call, &fn, sizeof(fn));
    self->state = st;
    self->flags = flags | FN_ACCELERATED;
    self->nparams = (int)n;
    self->params = specs;
    self->result = result;
    self->simple = n <= MAX_SIMPLE && result <= T_F64;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (specs[i].code > T_F64) self->simple = 0;
    }
    self->vectorcall = Function_vectorcall;
    Py_RETURN_NONE;
}

static PyObject *Function_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args;
    (void)kwds;
    FunctionObject *self = (FunctionObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->vectorcall = NULL; /* until _accelerate: calls go to __call__ */
        self->result = -1;
    }
    return (PyObject *)self;
}

static void Function_dealloc(FunctionObject *self) {
    free_specs(self->params, self->nparams);
    Py_XDECREF(self->host);
    Py_XDECREF(self->gate);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Function_accelerated(FunctionObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->vectorcall != NULL);
}

static PyMethodDef Function_methods[] = {
    {"_accelerate", Function_accelerate, METH_VARARGS, NULL},
    {"_call_normalized", (PyCFunction)(void (*)(void))Function_call_normalized, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Function_getset[] = {
    {"accelerated", (getter)Function_accelerated, NULL, "True when calls take the C path.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FunctionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ferrule._speedups.Function",
    .tp_basicsize = sizeof(FunctionObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Base of ferrule.PluginFunction: the C call path.",
    .tp_new = Function_new,
    .tp_dealloc = (destructor)Function_dealloc,
    .tp_vectorcall_offset = offsetof(FunctionObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = Function_methods,
    .tp_getset = Function_getset,
};

/* Python 3.11 does not pass the vectorcall flag on to a class statement's
 * subclass (3.12 does when __call__ is not overridden). The subclass keeps
 * the base's layout and vectorcall slot, so setting the flag is safe; an
 * instance whose slot is NULL still goes through tp_call, i.e. __call__. */
static PyObject *enable_vectorcall(PyObject *module, PyObject *cls) {
    (void)module;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &FunctionType)) {
        PyErr_SetString(PyExc_TypeError, "expected a subclass of Function");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    type->tp_vectorcall_offset = FunctionType.tp_vectorcall_offset;
    type->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    PyType_Modified(type);
    Py_RETURN_NONE;
}

/* --------------------------------------------------------------- channel */

/* The transport of isolated mode: a sequence word per direction in memory
 * shared with the child (0: to the child, 1: to the host). A sender bumps the
 * word and makes the futex call only when the receiver said it sleeps. A
 * receiver spins for a moment first, since answers usually come within
 * microseconds, then sleeps on the futex. */
typedef struct {
    uint32_t seq[2];
    uint32_t sleeping[2];
    /* The head of the last message (ferrule._wire.HEAD): written by its
     * sender before the sequence word moves, read by its receiver after. */
    uint32_t kind, arg;
    uint64_t base, length, size;
    /* Each receiver's spin budget in ns, adapted to how answers come: it
     * doubles when spinning caught the message, halves when it had to sleep
     * (the peer shares this CPU, or the call is slow). Only the receiver of
     * that direction writes it. */
    uint32_t budget[2];
} ChannelHead;

static int64_t monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint32_t channel_wait_for(ChannelHead *head, int which, uint32_t seen, int64_t spin_ns, int64_t timeout_ns) {
    uint32_t *word = &head->seq[which];
    uint32_t now;
    int64_t start = monotonic_ns();
    int64_t budget = head->budget[which] ? (int64_t)head->budget[which] : spin_ns;
    if (budget > spin_ns) budget = spin_ns;
    /* Spin with the pause instruction for the first microseconds, then
     * yield between looks: on a busy machine the peer may be waiting for
     * this very CPU. */
    for (unsigned i = 1;; i++) {
        now = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (now != seen) {
            int64_t grown = budget * 2 > spin_ns ? spin_ns : budget * 2;
            head->budget[which] = (uint32_t)(grown < 1000 ? 1000 : grown);
            return now;
        }
        if ((i & 63) == 0) {
            int64_t spent = monotonic_ns() - start;
            if (spent >= budget) break;
            if (spent >= 2000) sched_yield();
        }
        cpu_relax();
    }
    int64_t deadline = start + timeout_ns;
    for (;;) {
        __atomic_store_n(&head->sleeping[which], 1, __ATOMIC_SEQ_CST);
        now = __atomic_load_n(word, __ATOMIC_SEQ_CST);
        if (now != seen) break;
        int64_t left = deadline - monotonic_ns();
        if (left <= 0) break;
#ifdef __linux__
        struct timespec t = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
        syscall(SYS_futex, word, FUTEX_WAIT, seen, &t, NULL, 0);  /* woken, changed, timed out or EINTR */
#else
        struct timespec t = {0, left < 50000 ? (long)left : 50000L};
        nanosleep(&t, NULL);
#endif
    }
    __atomic_store_n(&head->sleeping[which], 0, __ATOMIC_SEQ_CST);
    /* An answer that came soon after the spin gave up says spin longer (a
     * wake-up from the futex costs far more than the spin would have); a
     * long wait says the calls are slow, and spinning is wasted. */
    int64_t waited = monotonic_ns() - start;
    if (now != seen && waited < spin_ns) {
        int64_t grown = waited * 2 > budget * 2 ? waited * 2 : budget * 2;
        head->budget[which] = (uint32_t)(grown > spin_ns ? spin_ns : grown);
    } else {
        head->budget[which] = (uint32_t)(budget / 2 < 500 ? 500 : budget / 2);
    }
    return now;
}

static PyObject *channel_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "send(address, direction, kind, arg, base, length, size)");
        return NULL;
    }
    unsigned long long v[7];
    for (int i = 0; i < 7; i++) {
        v[i] = PyLong_AsUnsignedLongLong(args[i]);
        if (v[i] == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    }
    int which = (int)v[1];
    if (which != 0 && which != 1) {
        PyErr_SetString(PyExc_ValueError, "direction must be 0 or 1");
        return NULL;
    }
    ChannelHead *head = (ChannelHead *)(uintptr_t)v[0];
    head->kind = (uint32_t)v[2];
    head->arg = (uint32_t)v[3];
    head->base = v[4];
    head->length = v[5];
    head->size = v[6];
    __atomic_add_fetch(&head->seq[which], 1, __ATOMIC_SEQ_CST);
#ifdef __linux__
    if (__atomic_load_n(&head->sleeping[which], __ATOMIC_SEQ_CST)) {
        syscall(SYS_futex, &head->seq[which], FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
#endif
    Py_RETURN_NONE;
}

static PyObject *channel_wait(PyObject *module, PyObject *args) {
    unsigned long long address;
    int which;
    unsigned int seen;
    long long spin_ns, timeout_ns;
    uint32_t now;
    (void)module;
    if (!PyArg_ParseTuple(args, "KiILL", &address, &which, &seen, &spin_ns, &timeout_ns)) return NULL;
    if (which != 0 && which != 1) {
        PyErr_SetString(PyExc_ValueError, "direction must be 0 or 1");
        return NULL;
    }
    ChannelHead *head = (ChannelHead *)(uintptr_t)address;
    Py_BEGIN_ALLOW_THREADS
    now = channel_wait_for(head, which, (uint32_t)seen, spin_ns, timeout_ns);
    Py_END_ALLOW_THREADS
    if (now == (uint32_t)seen) Py_RETURN_NONE;
    return Py_BuildValue("(kkkKKK)", (unsigned long)now, (unsigned long)head->kind, (unsigned long)head->arg,
                         (unsigned long long)head->base, (unsigned long long)head->length,
                         (unsigned long long)head->size);
}

/* The child of isolated mode ends when the host does, however the host ends:
 * a thread outside Python (a plugin may hold the GIL forever) waits for the
 * end of a pipe whose other end only the host holds. */
static void *watch_lifeline(void *arg) {
    int fd = (int)(intptr_t)arg;
    char byte;
    for (;;) {
        ssize_t got = read(fd, &byte, 1);
        if (got == 0 || (got < 0 && errno != EINTR)) _exit(0);
    }
    return NULL;
}

static PyObject *become_isolated_child(PyObject *module, PyObject *arg) {
    (void)module;
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int failed = pthread_create(&thread, &attr, watch_lifeline, (void *)(intptr_t)fd);
    pthread_attr_destroy(&attr);
    if (failed) {
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    die_with_parent = 1;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"enable_vectorcall", enable_vectorcall, METH_O, "Let a subclass of Function use its vectorcall slot."},
    {"channel_send", (PyCFunction)(void (*)(void))channel_send, METH_FASTCALL,
     "send(address, direction, kind, arg, base, length, size): write the head, bump the sequence word, wake a sleeper."},
    {"channel_wait", channel_wait, METH_VARARGS,
     "wait(address, direction, seen, spin_ns, timeout_ns): (seq, kind, arg, base, length, size), or None at the timeout."},
    {"become_isolated_child", become_isolated_child, METH_O,
     "In an isolated child: exit when the lifeline fd reaches its end; forked copies die with this process."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ferrule._speedups", "ferrule's C call path.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    if (PyType_Ready(&HostType) < 0 || PyType_Ready(&GateType) < 0 || PyType_Ready(&FunctionType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    static int fork_hook;
    if (!fork_hook) {
        fork_hook = 1;
        pthread_atfork(NULL, NULL, after_fork_in_child);
    }
    if (PyModule_AddObjectRef(m, "Host", (PyObject *)&HostType) < 0 ||
        PyModule_AddObjectRef(m, "Gate", (PyObject *)&GateType) < 0 ||
        PyModule_AddObjectRef(m, "Function", (PyObject *)&FunctionType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PARAMS", MAX_PARAMS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
