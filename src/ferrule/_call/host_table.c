/* The accelerator's host table: the ferrule_host struct one plugin instance
 * gets, its C callbacks (log, set_error, alloc, free, invoke), and the
 * per-thread error slot behind set_error. The cffi path's twin is
 * ferrule/_call/table.py; both keep the contract of contract.HostTable. */

#include "speedups.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- error slot */

static _Thread_local struct {
    char *msg;
    size_t len;
    int set;
} tls_error;

int errors_pending;

void error_clear(void) {
    if (tls_error.set) {
        free(tls_error.msg);
        tls_error.msg = NULL;
        tls_error.len = 0;
        tls_error.set = 0;
        __atomic_fetch_sub(&errors_pending, 1, __ATOMIC_RELAXED);
    }
}

PyObject *error_take(void) {
    PyObject *text;
    if (tls_error.set && tls_error.len) {
        text = PyUnicode_DecodeUTF8(tls_error.msg, (Py_ssize_t)tls_error.len, "replace");
    } else {
        text = PyUnicode_FromString("(the plugin gave no error message)");
    }
    error_clear();
    return text;
}

SavedError error_stash(void) {
    SavedError saved = {NULL, 0, 0};
    if (__atomic_load_n(&errors_pending, __ATOMIC_RELAXED) && tls_error.set) {
        saved.msg = tls_error.msg;
        saved.len = tls_error.len;
        saved.set = 1;
        tls_error.msg = NULL;
        tls_error.len = 0;
        tls_error.set = 0;
        __atomic_fetch_sub(&errors_pending, 1, __ATOMIC_RELAXED);
    }
    return saved;
}

void error_restore(SavedError saved) {
    error_reset(); /* the thread-local slot is touched only when a message is pending somewhere */
    if (saved.set) {
        tls_error.msg = saved.msg;
        tls_error.len = saved.len;
        tls_error.set = 1;
        __atomic_fetch_add(&errors_pending, 1, __ATOMIC_RELAXED);
    }
}

/* ---------------------------------------------------------- callbacks */

/* Whether logging already knows that the plugin's logger drops this level:
 * its own answer, kept in the logger's isEnabledFor cache (cleared by
 * logging on every setLevel or disable). Anything else asks Python. */
static inline int known_dropped(HostTableObject *self, int32_t level) {
    if (self->levels == NULL) return 0;
    if (level < FERRULE_LOG_TRACE) level = FERRULE_LOG_TRACE;
    if (level > FERRULE_LOG_ERROR) level = FERRULE_LOG_ERROR;
    PyObject *key = PyTuple_GET_ITEM(self->levels, level - FERRULE_LOG_TRACE);
    PyObject *enabled = PyDict_GetItem(self->level_cache, key); /* borrowed; an int key cannot fail */
    return enabled == Py_False;
}

static void host_log(const ferrule_host *host, int32_t level, const char *msg, size_t len) {
    HostTableObject *self = (HostTableObject *)host->host_data;
    PyGILState_STATE gil = PyGILState_Ensure();
    if (known_dropped(self, level)) { /* a message below the level costs a lookup, not a Python call */
        PyGILState_Release(gil);
        return;
    }
    SavedError saved = error_stash(); /* a handler may call plugins */
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
    error_restore(saved);
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

void host_free(void *ptr, size_t size) {
    (void)size;
    free(ptr);
}

static void frame_fail(Frame *frame) {
    if (frame->exc_type == NULL) {
        PyErr_Fetch(&frame->exc_type, &frame->exc_value, &frame->exc_tb);
    } else {
        PyErr_Clear();
    }
}

/* A text argument that is not UTF-8: the error names plugin and function. */
static void text_error(Frame *frame) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *error = PyObject_CallMethod(frame->owner, "_host_text_error", "iO", frame->index, value ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (error != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
    }
}

int give_copy(ferrule_value *slot, const void *data, size_t len) {
    void *copy = malloc(len ? len : 1);
    if (copy == NULL) return -1;
    memcpy(copy, data, len);
    slot->bytes.ptr = copy;
    slot->bytes.len = len;
    slot->bytes.release = host_free;
    return 0;
}

int encode_owned(int code, PyObject *obj, ferrule_value *slot) {
    if (code <= T_LAST_SCALAR) return encode_scalar(code, obj, slot); /* nothing to copy */
    int has_view = 0;
    Py_buffer view;
    ferrule_value out;
    if (encode(NULL, code, NULL, obj, &out, &view, &has_view, NULL, 0) != 0) return 1;
    int failed = (code == T_STR || code == T_BYTES) && give_copy(&out, out.bytes.ptr, out.bytes.len) < 0;
    if (has_view) PyBuffer_Release(&view);
    if (failed) {
        PyErr_NoMemory();
        return -1;
    }
    *slot = out;
    return 0;
}

/* Call the host function: 0 with *ret filled, -1 with the frame failed. */
static int invoke_frame(Frame *frame, const ferrule_value *args, ferrule_value *ret) {
    PyObject *argv[MAX_PARAMS];
    int n = 0, status = -1;
    if (args == NULL && frame->sig->nparams) {
        PyErr_Format(PyExc_ValueError, "the plugin passed no arguments to a host function that takes %d",
                     frame->sig->nparams);
        frame_fail(frame);
        return -1;
    }
    for (; n < frame->sig->nparams; n++) {
        argv[n] = decode_value(frame->sig->params[n], &args[n]);
        if (argv[n] == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) text_error(frame);
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
        status = 0;
        goto done;
    }
    /* Text and bytes go to the plugin as a malloc'd copy it releases; *ret
     * is written only on success. */
    int encoded = encode_owned(code, res, ret);
    if (encoded > 0) {
        /* Unusual or wrong: let Python check and normalise (or raise). */
        PyObject *fixed = PyObject_CallMethod(frame->owner, "_check_host_result", "iO", frame->index, res);
        Py_DECREF(res);
        if (fixed == NULL) {
            frame_fail(frame);
            goto done;
        }
        res = fixed;
        encoded = encode_owned(code, res, ret);
        if (encoded > 0) {
            PyErr_SetString(PyExc_TypeError, "host function result could not be converted");
        }
    }
    Py_DECREF(res);
    if (encoded != 0) {
        frame_fail(frame);
        goto done;
    }
    status = 0;
done:
    while (n > 0) {
        Py_DECREF(argv[--n]);
    }
    return status;
}

static int32_t host_invoke(const ferrule_host *host, const ferrule_fn *fn, const ferrule_value *args,
                           ferrule_value *ret) {
    if (host == NULL || fn == NULL || ret == NULL) {
        return FERRULE_ERROR;
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    int32_t status = FERRULE_ERROR;
    /* Only a handle of a call in flight on this instance is dereferenced: a
     * stale or foreign one is refused, not followed. (A plugin thread still
     * inside invoke when the call that passed fn returns breaks the ABI's
     * rule, "before that call returns", and is not protected against.) */
    Frame *frame = ((HostTableObject *)host->host_data)->frames;
    while (frame != NULL && frame->handle != (uintptr_t)fn) {
        frame = frame->next;
    }
    if (frame != NULL && frame->exc_type == NULL) { /* else unknown, or failed before */
        SavedError saved = error_stash(); /* the plugin's pending message survives what the host function calls */
        if (invoke_frame(frame, args, ret) == 0) status = FERRULE_OK;
        error_restore(saved);
    }
    PyGILState_Release(gil);
    return status;
}

/* ---------------------------------------------------------- the type */

static PyObject *HostTable_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *log, *cache = Py_None, *levels = Py_None;
    static char *kwlist[] = {"log", "level_cache", "levels", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO", kwlist, &log, &cache, &levels)) {
        return NULL;
    }
    if ((cache == Py_None) != (levels == Py_None) ||
        (cache != Py_None && (!PyDict_CheckExact(cache) || !PyTuple_Check(levels) ||
                              PyTuple_GET_SIZE(levels) != FERRULE_LOG_ERROR - FERRULE_LOG_TRACE + 1))) {
        PyErr_SetString(PyExc_TypeError, "level_cache is a dict and levels a tuple of one logging level per FERRULE_LOG_*");
        return NULL;
    }
    HostTableObject *self = (HostTableObject *)type->tp_alloc(type, 0);
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
    self->log = Py_NewRef(log);
    if (cache != Py_None) {
        self->level_cache = Py_NewRef(cache);
        self->levels = Py_NewRef(levels);
    }
    return (PyObject *)self;
}

static void HostTable_dealloc(HostTableObject *self) {
    Py_XDECREF(self->log);
    Py_XDECREF(self->level_cache);
    Py_XDECREF(self->levels);
    Py_XDECREF(self->lent);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *HostTable_address(HostTableObject *self, void *closure) {
    (void)closure;
    return PyLong_FromVoidPtr(&self->table);
}

static PyObject *HostTable_take_error(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return error_take();
}

/* A saved message travels to Python as bytes (b"" for a message-less
 * set_error), or None when there was none. */
static PyObject *HostTable_stash_error(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    SavedError saved = error_stash();
    if (!saved.set) Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(saved.msg ? saved.msg : "", (Py_ssize_t)saved.len);
    free(saved.msg);
    return out;
}

static PyObject *HostTable_restore_error(PyObject *self, PyObject *saved) {
    (void)self;
    error_clear();
    if (saved == Py_None) Py_RETURN_NONE;
    if (!PyBytes_Check(saved)) {
        PyErr_SetString(PyExc_TypeError, "restore_error() takes what stash_error() returned");
        return NULL;
    }
    host_set_error(NULL, PyBytes_AS_STRING(saved), (size_t)PyBytes_GET_SIZE(saved));
    Py_RETURN_NONE;
}

/* The interface callbacks (ABI 1.2) live in Python (cffi callbacks): they
 * reach the host's registry, which only Python knows. */
/* set_services(query, call, release, lent=None): with lent (a dict, token
 * -> Lent) host->call takes the C path of services.c first. */
static PyObject *HostTable_set_services(HostTableObject *self, PyObject *args) {
    unsigned long long query, call, release;
    PyObject *lent = Py_None;
    if (!PyArg_ParseTuple(args, "KKK|O", &query, &call, &release, &lent)) {
        return NULL;
    }
    if (lent != Py_None && !PyDict_CheckExact(lent)) {
        PyErr_SetString(PyExc_TypeError, "lent must be a dict");
        return NULL;
    }
    self->table.query = (const ferrule_object *(*)(const ferrule_host *, const char *, uint32_t, uint64_t))(uintptr_t)query;
    self->table.call = (int32_t(*)(const ferrule_host *, const ferrule_object *, uint32_t, const ferrule_value *,
                                   ferrule_value *))(uintptr_t)call;
    self->table.release = (void (*)(const ferrule_host *, const ferrule_object *))(uintptr_t)release;
    if (lent != Py_None) {
        self->py_call = self->table.call;
        self->table.call = host_call;
        Py_XSETREF(self->lent, Py_NewRef(lent));
    }
    Py_RETURN_NONE;
}

/* run_create(create, plugin_state): an offer's create, without the GIL (it
 * is plugin code), on a clean error slot that gets back a message pending
 * before it (as running() does in Python): (status, the instance's self
 * address, the plugin's failure message or None). */
static PyObject *HostTable_run_create(HostTableObject *self, PyObject *args) {
    unsigned long long fn, state;
    if (!PyArg_ParseTuple(args, "KK", &fn, &state)) return NULL;
    int32_t (*create)(const ferrule_host *, void *, void **);
    void *address = (void *)(uintptr_t)fn;
    memcpy(&create, &address, sizeof create);
    void *made = NULL;
    int32_t status;
    SavedError saved = error_stash();
    Py_BEGIN_ALLOW_THREADS
    status = create(&self->table, (void *)(uintptr_t)state, &made);
    Py_END_ALLOW_THREADS
    PyObject *message = status == FERRULE_OK ? Py_NewRef(Py_None) : error_take();
    error_restore(saved);
    if (message == NULL) return NULL;
    return Py_BuildValue("iKN", (int)status, (unsigned long long)(uintptr_t)made, message);
}

/* run_destroy(destroy, plugin_state, self): an offer's destroy, without the
 * GIL, the error slot kept as run_create keeps it. */
static PyObject *HostTable_run_destroy(HostTableObject *self, PyObject *args) {
    unsigned long long fn, state, instance;
    if (!PyArg_ParseTuple(args, "KKK", &fn, &state, &instance)) return NULL;
    void (*destroy)(const ferrule_host *, void *, void *);
    void *address = (void *)(uintptr_t)fn;
    memcpy(&destroy, &address, sizeof destroy);
    SavedError saved = error_stash();
    Py_BEGIN_ALLOW_THREADS
    destroy(&self->table, (void *)(uintptr_t)state, (void *)(uintptr_t)instance);
    Py_END_ALLOW_THREADS
    error_restore(saved);
    Py_RETURN_NONE;
}

static PyMethodDef HostTable_methods[] = {
    {"run_create", (PyCFunction)HostTable_run_create, METH_VARARGS, "Run an offer's create: (status, self address)."},
    {"run_destroy", (PyCFunction)HostTable_run_destroy, METH_VARARGS, "Run an offer's destroy."},
    {"set_services", (PyCFunction)HostTable_set_services, METH_VARARGS, "Fill in query, call and release (addresses)."},
    {"take_error", HostTable_take_error, METH_NOARGS, "The calling thread's failure message (consumed)."},
    {"stash_error", HostTable_stash_error, METH_NOARGS, "Take the calling thread's pending message away."},
    {"restore_error", HostTable_restore_error, METH_O, "Put back what stash_error() took."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef HostTable_getset[] = {
    {"address", (getter)HostTable_address, NULL, "Address of the ferrule_host table.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject HostTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ferrule._call._speedups.HostTable",
    .tp_basicsize = sizeof(HostTableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The host table of one plugin instance, in C.",
    .tp_new = HostTable_new,
    .tp_dealloc = (destructor)HostTable_dealloc,
    .tp_methods = HostTable_methods,
    .tp_getset = HostTable_getset,
};
