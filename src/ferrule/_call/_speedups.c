/* The call accelerator: a vectorcall entry for plugin functions, with the
 * value conversions it needs. Optional: without it every call takes the cffi
 * path (ferrule/_call/function.py), with the same results and errors. Its
 * host table is host_table.c, its gate gate.c.
 *
 * Only the common, valid cases are handled here. Anything unusual (keyword
 * arguments, a wrong count, an int subclass, an out-of-range value, a buffer
 * of the wrong type) goes to the Python method _call_checked, which checks
 * and normalises the arguments (or raises the error) and then comes back
 * through _call_normalized. Error messages are therefore written once, in
 * Python. */

#include "speedups.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ fork guard */

/* A plugin that forks returns from its call twice. The copy must never run
 * the host's Python code (it would serve the same pipes and memory), so a
 * call that comes back in a forked copy ends that process. The counter moves
 * only in a child of fork(); the parent's calls see it unchanged. */
static unsigned fork_generation;

static void after_fork_in_child(void) { __atomic_add_fetch(&fork_generation, 1, __ATOMIC_RELAXED); }

static void forked_copy_exit(void) {
    static const char msg[] = "ferrule: a plugin forked during a call; the copy ends here, as it must not run the host\n";
    ssize_t unused = write(2, msg, sizeof msg - 1);
    (void)unused;
    _exit(70);
}

/* ---------------------------------------------------------------- values */

typedef struct {
    int code;
    int elem;       /* buf/mutbuf: element code */
    FnSig *fn;      /* fn: the host function's signature (owned) */
} Spec;

#define FN_ACCELERATED 0x100

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    ferrule_call_fn call;
    HostTableObject *host;
    GateObject *gate;
    void *state;
    int flags;
    int nparams;
    int result; /* a code, or -1 */
    int simple; /* scalars only, in and out, at most MAX_SIMPLE: the short path */
    Spec *params;
    /* An interface method with structs or handles (_accelerate_method): the
     * caller passes the declared arguments, nargs of them. */
    int method;
    int nargs;
    PyObject *method_plan; /* (per-parameter StructCodec, handle class or None, out codec, result handle class) */
    PyObject **packers;    /* items of the plan's first tuple, borrowed; NULL for a plain parameter */
    PyObject *out_codec;   /* a struct result, written by the plugin into a trailing out buffer */
    PyObject *result_handle;
    /* A copy made by _rebind: params and packers are the original's. */
    PyObject *original;
    int shared; /* copies exist (or this is one): the plan may not change */
} FunctionObject;

/* Room on the stack for a method's struct arguments and result. */
#define SCRATCH 1024
#define SCRATCH_ALIGN 16

#define MAX_SIMPLE 16

/* Does a buffer's struct-module format describe one element of code? */
static int format_matches(const char *format, Py_ssize_t itemsize, int code) {
    static const char SIGNED_CHARS[] = "bhilqn", UNSIGNED_CHARS[] = "BHILQN";
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
    if (format[0] == '\0' || format[1] != '\0' || itemsize != ELEMENT_SIZE[code]) {
        return 0;
    }
    char c = format[0];
    if (code == T_F32) return c == 'f';
    if (code == T_F64) return c == 'd';
    if (code >= T_I8 && code <= T_I64) return strchr(SIGNED_CHARS, c) != NULL;
    return strchr(UNSIGNED_CHARS, c) != NULL;
}

/* Fill slot from obj for a parameter of type code. Returns 0 on success, 1
 * when obj needs the Python path (no exception set). A buffer acquired into
 * view sets *has_view; the caller releases it after the call. */
int encode(PyObject *self, int code, const void *spec_ptr, PyObject *obj, ferrule_value *slot, Py_buffer *view,
           int *has_view, Frame *frame, int index) {
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
        if (len > 0 && memchr(utf8, 0, (size_t)len) != NULL) return 1; /* an embedded NUL: checks.py refuses it */
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
        HostTableObject *owner_host = ((FunctionObject *)self)->host;
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
static inline PyObject *decode_inline(int code, const ferrule_value *value) {
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

PyObject *decode_value(int code, const ferrule_value *value) { return decode_inline(code, value); }

/* ---------------------------------------------------------------- function */

/* Put in a str or bytes result slot before a call: still there afterwards,
 * the plugin returned OK without writing its result. */
static const char unset_mark;

static void release_all(HostTableObject *host, Py_buffer *views, const int *has_view, Frame *frames, const Spec *params,
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

/* A str or bytes result whose pointer is below this cannot be an address
 * (the first page is never mapped): most likely an integer the plugin wrote
 * into ret. Must equal function.py's NO_ADDRESS. */
#define NO_ADDRESS 4096
/* No real result is this long; must equal function.py's MAX_RESULT_LEN. */
#define MAX_RESULT_LEN ((size_t)1 << 48)

/* A str or bytes result at a pointer below NO_ADDRESS or longer than
 * MAX_RESULT_LEN: function.py's _check_result decides (a NULL or dangling
 * pointer with len 0 is fine) in the cffi path's words. A refused result's
 * release is cleared: its pointer is not one release could take. Out of line,
 * so that the common path stays as it was. */
static __attribute__((noinline, cold)) int check_result(FunctionObject *self, ferrule_value *ret) {
    PyObject *out = PyObject_CallMethod((PyObject *)self, "_check_result", "KK",
                                        (unsigned long long)(uintptr_t)ret->bytes.ptr,
                                        (unsigned long long)ret->bytes.len);
    if (out == NULL) {
        ret->bytes.release = NULL;
        return -1;
    }
    Py_DECREF(out);
    return 0;
}

/* The result as Python sees it: a scalar, or the one copy of owned text or
 * bytes (the caller then runs its release). */
static PyObject *decode_result(FunctionObject *self, ferrule_value *ret) {
    int code = self->result;
    if (code < 0) Py_RETURN_NONE;
    if (code != T_STR && code != T_BYTES) return decode_inline(code, ret);
    const char *ptr = ret->bytes.ptr;
    size_t len = ret->bytes.len;
    PyObject *out;
    if (ptr == &unset_mark) {
        out = PyObject_CallMethod((PyObject *)self, "_unset_result", NULL);
        Py_XDECREF(out);
        return NULL;
    }
    /* Two comparisons per result before its memory is read. */
    if (((uintptr_t)ptr < NO_ADDRESS || len > MAX_RESULT_LEN) && check_result(self, ret) < 0) return NULL;
    if (code == T_BYTES) {
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

static PyObject *call_failed(FunctionObject *self, int32_t status);

/* A method's parameter i: a struct packed into scratch, a handle, or the
 * out buffer of a struct result. 0 when done, 2 when it is a plain
 * parameter (encode's job), 1 when the Python path must decide, -1 with an
 * exception. */
static int method_arg(FunctionObject *self, int i, PyObject *const *args, ferrule_value *slot, unsigned char *scratch,
                      int *at, Py_ssize_t *out_at) {
    if (i == self->nargs) { /* the out buffer: always the last parameter */
        Py_ssize_t size = codec_size(self->out_codec);
        *out_at = *at;
        *at += (int)((size + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN);
        slot->buf.ptr = scratch + *out_at;
        slot->buf.len = (size_t)size;
        return 0;
    }
    PyObject *packer = self->packers[i];
    if (packer == NULL) return 2;
    PyObject *obj = args[i];
    if (Py_TYPE(packer) == &CodecType) {
        Py_ssize_t size = codec_size(packer);
        unsigned char *place = scratch + *at;
        *at += (int)((size + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN);
        int status = codec_pack(packer, obj, place);
        if (status != 0) return status;
        slot->bytes.ptr = place;
        slot->bytes.len = (size_t)size;
        slot->bytes.release = NULL;
        return 0;
    }
    if ((PyObject *)Py_TYPE(obj) != packer) return 1; /* a handle of the declared class only */
    unsigned long long u = PyLong_AsUnsignedLongLong(obj);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 1;
    }
    slot->u64 = u;
    return 0;
}

/* A method's result as declared: a struct built from the out buffer, or a
 * handle around the u64. Steals raw. */
static PyObject *method_result(FunctionObject *self, PyObject *raw, const unsigned char *out) {
    if (self->out_codec != NULL) {
        Py_DECREF(raw);
        return codec_unpack(self->out_codec, out);
    }
    if (self->result_handle != NULL) {
        PyObject *made = PyObject_CallOneArg(self->result_handle, raw);
        Py_DECREF(raw);
        return made;
    }
    return raw;
}

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
    if (gate_enter(gate, slots) < 0) {
        return NULL;
    }
    int serial = !(self->flags & FERRULE_FN_THREAD_SAFE);
    error_reset();
    slots[n].u64 = 0; /* a plugin that writes no result returns 0, as on the cffi path */
    if (serial) serial_lock(gate);
    int32_t status = call_plugin(self, slots, &slots[n]);
    if (serial) serial_unlock(gate);
    PyObject *result;
    if (status == FERRULE_OK) {
        result = self->result < 0 ? Py_NewRef(Py_None) : decode_inline(self->result, &slots[n]);
    } else {
        result = call_failed(self, status);
    }
    gate_leave(gate, slots);
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
    _Alignas(SCRATCH_ALIGN) unsigned char scratch[SCRATCH];
    Py_ssize_t out_at = 0;
    int n = self->nparams;
    if (nargs != (self->method ? self->nargs : n)) {
        goto slow;
    }
    for (int i = 0, at = 0; i < n; i++) {
        has_view[i] = 0;
        if (self->method) {
            int status = method_arg(self, i, args, &slots[i], scratch, &at, &out_at);
            if (status < 0) {
                release_all(self->host, views, has_view, frames, self->params, i);
                return NULL;
            }
            if (status == 0) continue;
            if (status == 1) {
                release_all(self->host, views, has_view, frames, self->params, i);
                goto slow;
            }
        }
        if (encode((PyObject *)self, self->params[i].code, &self->params[i], args[i], &slots[i], &views[i],
                   &has_view[i], &frames[i], i)) {
            release_all(self->host, views, has_view, frames, self->params, i);
            goto slow;
        }
    }
    if (gate_enter(self->gate, slots) < 0) {
        release_all(self->host, views, has_view, frames, self->params, n);
        return NULL;
    }
    ferrule_value *ret = &slots[n];
    int32_t status;
    int quick = self->flags & FERRULE_FN_QUICK;
    int serial = !(self->flags & FERRULE_FN_THREAD_SAFE);
    error_reset();
    memset(ret, 0, sizeof *ret);
    if (self->result == T_STR || self->result == T_BYTES) ret->bytes.ptr = &unset_mark;
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
        if ((self->result == T_STR || self->result == T_BYTES) && release != NULL && ret->bytes.ptr != &unset_mark) {
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
    if (serial) serial_unlock(self->gate);
    /* A struct or handle result is built outside the serial lock (its class
     * may run Python code), as on the Python path; scratch is still ours. */
    if (self->method && result != NULL) result = method_result(self, result, scratch + out_at);
    if (etype != NULL) {
        PyErr_Restore(etype, evalue, etb);
    }
    gate_leave(self->gate, slots);
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
    HostTableObject *host;
    GateObject *gate;
    int flags, result;
    if (!PyArg_ParseTuple(args, "OO!O!OiO!i", &call, &HostTableType, &host, &GateType, &gate, &state, &flags,
                          &PyTuple_Type, &params, &result)) {
        return NULL;
    }
    if (self->shared || self->method) {
        PyErr_SetString(PyExc_RuntimeError, "this function's plan is fixed: it has copies, or is a method");
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
    Py_XSETREF(self->host, (HostTableObject *)Py_NewRef(host));
    Py_XSETREF(self->gate, (GateObject *)Py_NewRef(gate));
    memcpy(&self->call, &fn, sizeof(fn));
    self->state = st;
    self->flags = flags | FN_ACCELERATED;
    self->nparams = (int)n;
    self->params = specs;
    self->result = result;
    self->simple = n <= MAX_SIMPLE && result <= T_LAST_SCALAR;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (specs[i].code > T_LAST_SCALAR) self->simple = 0;
    }
    self->vectorcall = Function_vectorcall;
    Py_RETURN_NONE;
}

/* _accelerate_method(packers, out_codec, result_handle), after _accelerate:
 * the function takes a method's declared arguments. packers has one item per
 * parameter but the out buffer: a StructCodec, a handle class, or None. */
static PyObject *Function_accelerate_method(PyObject *op, PyObject *args) {
    FunctionObject *self = (FunctionObject *)op;
    PyObject *packers, *out_codec, *handle;
    if (!(self->flags & FN_ACCELERATED)) {
        PyErr_SetString(PyExc_RuntimeError, "_accelerate first");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!OO", &PyTuple_Type, &packers, &out_codec, &handle)) return NULL;
    if (self->shared || self->method) {
        PyErr_SetString(PyExc_RuntimeError, "this function's plan is fixed: it has copies, or is a method");
        return NULL;
    }
    int with_out = out_codec != Py_None;
    Py_ssize_t count = PyTuple_GET_SIZE(packers);
    if (count + with_out != self->nparams || (with_out && (Py_TYPE(out_codec) != &CodecType ||
                                                           self->params[count].code != T_MUTBUF))) {
        PyErr_SetString(PyExc_ValueError, "the method plan does not fit the call-layer signature");
        return NULL;
    }
    if (with_out && codec_size(out_codec) <= 0) {
        PyErr_SetString(PyExc_ValueError, "a StructCodec that was not made");
        return NULL;
    }
    Py_ssize_t room = with_out ? (codec_size(out_codec) + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN : 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *p = PyTuple_GET_ITEM(packers, i);
        if (p == Py_None) continue;
        if (Py_TYPE(p) == &CodecType) {
            if (self->params[i].code != T_BYTES || codec_size(p) <= 0) {
                PyErr_SetString(PyExc_ValueError, "a struct travels as bytes, with a StructCodec that was made");
                return NULL;
            }
            room += (codec_size(p) + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;
        } else if (!PyType_Check(p) || self->params[i].code != T_U64) {
            PyErr_SetString(PyExc_ValueError, "a handle travels as u64");
            return NULL;
        }
    }
    if (room > SCRATCH) {
        PyErr_SetString(PyExc_ValueError, "the method's structs are too large for the C path");
        return NULL;
    }
    PyObject *plan = Py_BuildValue("(OOO)", packers, out_codec, handle); /* keeps what packers point at */
    if (plan == NULL) return NULL;
    PyObject **items = PyMem_Calloc((size_t)(count ? count : 1), sizeof(PyObject *));
    if (items == NULL) {
        Py_DECREF(plan);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *p = PyTuple_GET_ITEM(packers, i);
        items[i] = p == Py_None ? NULL : p;
    }
    self->packers = items;
    self->method_plan = plan;
    self->out_codec = with_out ? out_codec : NULL;
    self->result_handle = handle == Py_None ? NULL : handle;
    self->nargs = (int)count;
    self->method = 1;
    self->simple = 0;
    Py_RETURN_NONE;
}

/* _rebind(target, state, gate): this function for another instance of the
 * same implementation (same vtable, same signature): a copy that shares the
 * conversion plan and the instance dict's contents, with its own state,
 * gate and _target. Far cheaper than building the function again. */
static PyObject *Function_rebind(PyObject *op, PyObject *args) {
    FunctionObject *self = (FunctionObject *)op;
    PyObject *target, *state;
    GateObject *gate;
    if (!PyArg_ParseTuple(args, "OOO!", &target, &state, &GateType, &gate)) return NULL;
    if (!(self->flags & FN_ACCELERATED)) {
        PyErr_SetString(PyExc_RuntimeError, "this function is not accelerated");
        return NULL;
    }
    void *st = state == Py_None ? NULL : PyLong_AsVoidPtr(state);
    if (PyErr_Occurred()) return NULL;
    PyObject *dict = PyObject_GenericGetDict(op, NULL);
    if (dict == NULL) return NULL;
    PyObject *copied = PyDict_Copy(dict);
    Py_DECREF(dict);
    if (copied == NULL || PyDict_SetItemString(copied, "_target", target) < 0) {
        Py_XDECREF(copied);
        return NULL;
    }
    PyTypeObject *type = Py_TYPE(op);
    FunctionObject *made = (FunctionObject *)type->tp_alloc(type, 0);
    if (made == NULL) {
        Py_DECREF(copied);
        return NULL;
    }
    made->vectorcall = self->vectorcall;
    made->call = self->call;
    made->host = (HostTableObject *)Py_NewRef(self->host);
    made->gate = (GateObject *)Py_NewRef(gate);
    made->state = st;
    made->flags = self->flags;
    made->nparams = self->nparams;
    made->result = self->result;
    made->simple = self->simple;
    made->params = self->params;
    made->method = self->method;
    made->nargs = self->nargs;
    made->method_plan = Py_XNewRef(self->method_plan);
    made->packers = self->packers;
    made->out_codec = self->out_codec;
    made->result_handle = self->result_handle;
    made->original = Py_NewRef(self->original != NULL ? self->original : op);
    made->shared = 1;
    self->shared = 1;
    int failed = PyObject_GenericSetDict((PyObject *)made, copied, NULL);
    Py_DECREF(copied);
    if (failed) {
        Py_DECREF(made);
        return NULL;
    }
    return (PyObject *)made;
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
    if (self->original == NULL) {
        free_specs(self->params, self->nparams);
        PyMem_Free(self->packers);
    }
    Py_XDECREF(self->original);
    Py_XDECREF(self->method_plan);
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
    {"_accelerate_method", Function_accelerate_method, METH_VARARGS, NULL},
    {"_rebind", Function_rebind, METH_VARARGS, NULL},
    {"_call_normalized", (PyCFunction)(void (*)(void))Function_call_normalized, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Function_getset[] = {
    {"accelerated", (getter)Function_accelerated, NULL, "True when calls take the C path.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FunctionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ferrule._call._speedups.Function",
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

static PyMethodDef module_methods[] = {
    {"enable_vectorcall", enable_vectorcall, METH_O, "Let a subclass of Function use its vectorcall slot."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ferrule._call._speedups", "ferrule's C call path.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    if (PyType_Ready(&HostTableType) < 0 || PyType_Ready(&GateType) < 0 || PyType_Ready(&FunctionType) < 0 ||
        PyType_Ready(&CodecType) < 0 || PyType_Ready(&LentType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    if (PyModule_AddFunctions(m, lent_functions) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    static int fork_hook;
    if (!fork_hook) {
        fork_hook = 1;
        pthread_atfork(NULL, NULL, after_fork_in_child);
    }
    if (PyModule_AddObjectRef(m, "HostTable", (PyObject *)&HostTableType) < 0 ||
        PyModule_AddObjectRef(m, "Gate", (PyObject *)&GateType) < 0 ||
        PyModule_AddObjectRef(m, "Function", (PyObject *)&FunctionType) < 0 ||
        PyModule_AddObjectRef(m, "StructCodec", (PyObject *)&CodecType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PARAMS", MAX_PARAMS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
