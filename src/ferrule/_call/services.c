/* host->call in C: a plugin calling a Python service the host provides, or
 * an instance of another plugin's implementation, without a cffi callback.
 *
 * services.py lends objects as before and, for each one this path can serve,
 * also puts a Lent (below) under its token in the dict the host table reads.
 * The path takes the common valid case only. Whatever it cannot do before any
 * code has run (an unknown token, an argument it does not decode, a struct)
 * goes to the Python callback; what goes wrong after a service ran (a result
 * it does not encode) goes to the Lent's Python `finish`, so that every
 * message is written once, in services.py. */

#include "speedups.h"

#include <string.h>

#define MAX_MESSAGE (1 << 16) /* services.py's _MAX_MESSAGE */
#define DECLINED (-1000)      /* not a status: take the Python path */

enum { LENT_SERVICE = 1, LENT_INSTANCE = 2 };

typedef struct {
    int nparams;
    int params[MAX_PARAMS];
    int result; /* a code, or -1 */
    int fast;   /* numbers, bool, str and bytes only */
} MethodSig;

typedef struct {
    PyObject_HEAD
    int kind;
    Py_ssize_t nmethods;
    uintptr_t owner; /* the host table it was lent to: only that plugin may call it */
    /* a Python service */
    PyObject *service;
    PyObject *names; /* tuple: each method's name, looked up on every call as services.py does */
    MethodSig *sigs;
    PyObject *acquire, *release; /* the serial lock's, or NULL when thread-safe */
    PyObject *finish;            /* finish(method, result, args_address, ret_address) -> status */
    /* another plugin's instance */
    ferrule_call_fn *fns;
    const ferrule_host *table; /* the callee's host table */
    void *self_ptr;
    GateObject *gate;
    int thread_safe;
    PyObject *keep; /* what keeps the callee alive (its instance target) */
} LentObject;

/* finish() refers back to the registry that holds the Lent: a cycle the
 * collector must see. */
static int Lent_traverse(LentObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->service);
    Py_VISIT(self->names);
    Py_VISIT(self->acquire);
    Py_VISIT(self->release);
    Py_VISIT(self->finish);
    Py_VISIT(self->gate);
    Py_VISIT(self->keep);
    return 0;
}

static int Lent_clear(LentObject *self) {
    Py_CLEAR(self->service);
    Py_CLEAR(self->names);
    Py_CLEAR(self->acquire);
    Py_CLEAR(self->release);
    Py_CLEAR(self->finish);
    Py_CLEAR(self->gate);
    Py_CLEAR(self->keep);
    self->nmethods = 0; /* a cleared Lent serves nothing */
    return 0;
}

static void Lent_dealloc(LentObject *self) {
    PyObject_GC_UnTrack(self);
    Lent_clear(self);
    PyMem_Free(self->sigs);
    PyMem_Free(self->fns);
    PyObject_GC_Del(self);
}

PyTypeObject LentType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ferrule._call._speedups.Lent",
    .tp_basicsize = sizeof(LentObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An object lent to a plugin, as host->call's C path serves it.",
    .tp_dealloc = (destructor)Lent_dealloc,
    .tp_traverse = (traverseproc)Lent_traverse,
    .tp_clear = (inquiry)Lent_clear,
};

static LentObject *lent_new(int kind, Py_ssize_t nmethods, unsigned long long owner) {
    LentObject *self = PyObject_GC_New(LentObject, &LentType);
    if (self == NULL) return NULL;
    memset((char *)self + sizeof(PyObject), 0, sizeof(LentObject) - sizeof(PyObject));
    self->kind = kind;
    self->nmethods = nmethods;
    self->owner = (uintptr_t)owner;
    PyObject_GC_Track(self);
    return self;
}

static int parse_sig(PyObject *item, MethodSig *sig) {
    PyObject *params;
    if (!PyArg_ParseTuple(item, "O!i", &PyTuple_Type, &params, &sig->result)) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(params);
    if (n > MAX_PARAMS) {
        PyErr_SetString(PyExc_ValueError, "too many parameters");
        return -1;
    }
    sig->nparams = (int)n;
    sig->fast = sig->result <= T_BYTES;
    for (Py_ssize_t i = 0; i < n; i++) {
        sig->params[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(params, i));
        if (sig->params[i] < 0 || sig->params[i] > T_BYTES) sig->fast = 0;
    }
    return PyErr_Occurred() ? -1 : 0;
}

/* lent_service(owner, service, names, sigs, lock, finish): sigs holds (param
 * codes, result code) per method, 99 for anything this path does not take
 * and -1 for no result. */
static PyObject *lent_service(PyObject *module, PyObject *args) {
    (void)module;
    unsigned long long owner;
    PyObject *service, *names, *sigs, *lock, *finish;
    if (!PyArg_ParseTuple(args, "KOO!O!OO", &owner, &service, &PyTuple_Type, &names, &PyTuple_Type, &sigs, &lock,
                          &finish)) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (PyTuple_GET_SIZE(sigs) != n) {
        PyErr_SetString(PyExc_ValueError, "one signature per method");
        return NULL;
    }
    LentObject *self = lent_new(LENT_SERVICE, n, owner);
    if (self == NULL) return NULL;
    self->service = Py_NewRef(service);
    self->names = Py_NewRef(names);
    self->finish = Py_NewRef(finish);
    self->sigs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(MethodSig));
    if (self->sigs == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (parse_sig(PyTuple_GET_ITEM(sigs, i), &self->sigs[i]) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    if (lock != Py_None) {
        self->acquire = PyObject_GetAttrString(lock, "acquire");
        self->release = PyObject_GetAttrString(lock, "release");
        if (self->acquire == NULL || self->release == NULL) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

/* lent_instance(owner, fns, table, self, gate, thread_safe, keep): the
 * method addresses of another plugin's instance, its host table and self. */
static PyObject *lent_instance(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *fns, *keep;
    unsigned long long owner, table, self_ptr;
    GateObject *gate;
    int thread_safe;
    if (!PyArg_ParseTuple(args, "KO!KKO!pO", &owner, &PyTuple_Type, &fns, &table, &self_ptr, &GateType, &gate,
                          &thread_safe, &keep)) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(fns);
    LentObject *self = lent_new(LENT_INSTANCE, n, owner);
    if (self == NULL) return NULL;
    self->fns = PyMem_Calloc((size_t)(n ? n : 1), sizeof(ferrule_call_fn));
    if (self->fns == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        void *address = PyLong_AsVoidPtr(PyTuple_GET_ITEM(fns, i));
        memcpy(&self->fns[i], &address, sizeof address);
    }
    if (PyErr_Occurred()) {
        Py_DECREF(self);
        return NULL;
    }
    self->table = (const ferrule_host *)(uintptr_t)table;
    self->self_ptr = (void *)(uintptr_t)self_ptr;
    self->gate = (GateObject *)Py_NewRef(gate);
    self->thread_safe = thread_safe;
    self->keep = Py_NewRef(keep);
    return (PyObject *)self;
}

/* ------------------------------------------------------------- calling */

/* A failed call: the message goes to the caller as owned bytes. */
static int32_t fail_with(ferrule_value *ret, int32_t status, const char *text, Py_ssize_t len) {
    if (give_copy(ret, text, (size_t)(len > MAX_MESSAGE ? MAX_MESSAGE : len)) < 0) {
        ret->bytes.ptr = NULL;
        ret->bytes.len = 0;
        ret->bytes.release = NULL;
    }
    return status;
}

/* The raised exception as services.py words it: "Type: message" (a
 * KeyError's own argument, not its repr). Consumes the exception. */
static int32_t fail_with_exception(ferrule_value *ret) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *text = NULL;
    if (value != NULL) {
        PyObject *shown = value;
        PyObject *eargs = PyObject_GetAttrString(value, "args");
        int key = PyErr_GivenExceptionMatches(type, PyExc_KeyError) && PyErr_GivenExceptionMatches(type, PyExc_Exception);
        if (key && eargs != NULL && PyTuple_Check(eargs) && PyTuple_GET_SIZE(eargs) == 1) {
            shown = PyTuple_GET_ITEM(eargs, 0);
        }
        PyErr_Clear();
        PyObject *name = PyType_GetName((PyTypeObject *)type);
        PyObject *str = name != NULL ? PyObject_Str(shown) : NULL;
        if (str != NULL) text = PyUnicode_FromFormat("%U: %U", name, str);
        Py_XDECREF(str);
        Py_XDECREF(name);
        Py_XDECREF(eargs);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    Py_ssize_t len = 0;
    const char *utf8 = text != NULL ? PyUnicode_AsUTF8AndSize(text, &len) : NULL;
    PyErr_Clear();
    int32_t status = utf8 != NULL ? fail_with(ret, FERRULE_ERROR, utf8, len)
                                  : fail_with(ret, FERRULE_ERROR, "host->call failed", 17);
    Py_XDECREF(text);
    return status;
}

/* 0 when result went into ret, 1 when finish() must decide. */
static int encode_service_result(int code, PyObject *result, ferrule_value *ret) {
    if (code < 0) return 0; /* no result: whatever came back is dropped, as in services.py */
    int encoded = encode_owned(code, result, ret);
    if (encoded < 0) PyErr_Clear(); /* out of memory: finish() fails the call in its words */
    return encoded != 0;
}

static int32_t call_service(LentObject *lent, uint32_t method, const ferrule_value *args, ferrule_value *ret) {
    const MethodSig *sig = &lent->sigs[method];
    if (!sig->fast || (sig->nparams && args == NULL)) return DECLINED;
    PyObject *argv[MAX_PARAMS];
    int n = sig->nparams;
    for (int i = 0; i < n; i++) {
        argv[i] = decode_value(sig->params[i], &args[i]);
        if (argv[i] == NULL) { /* not UTF-8, a NULL pointer: services.py says so */
            PyErr_Clear();
            for (int j = 0; j < i; j++) Py_DECREF(argv[j]);
            return DECLINED;
        }
    }
    PyObject *callable = PyObject_GetAttr(lent->service, PyTuple_GET_ITEM(lent->names, method));
    if (callable == NULL) {
        for (int i = 0; i < n; i++) Py_DECREF(argv[i]);
        return fail_with_exception(ret);
    }
    PyObject *result = NULL;
    int locked = 0;
    if (lent->acquire != NULL) {
        PyObject *got = PyObject_CallNoArgs(lent->acquire);
        locked = got != NULL;
        Py_XDECREF(got);
    }
    if (lent->acquire == NULL || locked) {
        result = PyObject_Vectorcall(callable, argv, (size_t)n, NULL);
    }
    if (locked) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *done = PyObject_CallNoArgs(lent->release);
        Py_XDECREF(done);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    for (int i = 0; i < n; i++) Py_DECREF(argv[i]);
    Py_DECREF(callable);
    if (result == NULL) return fail_with_exception(ret);
    int32_t status = FERRULE_OK;
    if (encode_service_result(sig->result, result, ret)) {
        PyObject *out = PyObject_CallFunction(lent->finish, "IOKK", method, result,
                                              (unsigned long long)(uintptr_t)args, (unsigned long long)(uintptr_t)ret);
        status = out != NULL ? (int32_t)PyLong_AsLong(out) : FERRULE_ERROR;
        Py_XDECREF(out);
        if (PyErr_Occurred()) status = fail_with_exception(ret);
    }
    Py_DECREF(result);
    return status;
}

static int32_t call_instance(LentObject *lent, uint32_t method, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value empty[1];
    if (args == NULL) { /* a method without parameters; plugins may rely on a non-NULL args */
        memset(empty, 0, sizeof empty);
        args = empty;
    }
    GateObject *gate = lent->gate;
    const void *mark = &empty;
    if (gate_enter(gate, mark) < 0) { /* closed: services.py words it */
        PyErr_Clear();
        return DECLINED;
    }
    if (!lent->thread_safe) serial_lock(gate);
    ferrule_call_fn fn = lent->fns[method];
    int32_t status;
    error_reset();
    Py_BEGIN_ALLOW_THREADS
    status = fn(lent->table, lent->self_ptr, args, ret);
    Py_END_ALLOW_THREADS
    if (status != FERRULE_OK) {
        PyObject *message = error_take();
        Py_ssize_t len = 0;
        const char *utf8 = message != NULL ? PyUnicode_AsUTF8AndSize(message, &len) : NULL;
        if (utf8 == NULL) {
            PyErr_Clear();
            utf8 = "";
            len = 0;
        }
        status = fail_with(ret, status == FERRULE_PANIC ? FERRULE_PANIC : FERRULE_ERROR, utf8, len);
        Py_XDECREF(message);
    }
    if (!lent->thread_safe) serial_unlock(gate);
    gate_leave(gate, mark);
    return status;
}

/* The table's call slot when services.py gave it a dict of Lents. */
int32_t host_call(const ferrule_host *host, const ferrule_object *object, uint32_t method, const ferrule_value *args,
                  ferrule_value *ret) {
    HostTableObject *self = (HostTableObject *)host->host_data;
    int32_t status = DECLINED;
    PyGILState_STATE gil = PyGILState_Ensure();
    if (ret != NULL && self->lent != NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb); /* nothing of this call may touch an exception pending on this thread */
        PyObject *key = PyLong_FromVoidPtr((void *)object);
        LentObject *lent = key != NULL ? (LentObject *)PyDict_GetItem(self->lent, key) : NULL; /* borrowed */
        Py_XDECREF(key);
        PyErr_Clear();
        /* Another plugin's token, a released one, a method out of range: services.py says so. */
        if (lent != NULL && lent->owner == (uintptr_t)host && (Py_ssize_t)method < lent->nmethods) {
            Py_INCREF(lent); /* a service may release it while it runs */
            SavedError saved = error_stash(); /* the caller's pending message survives what the call runs */
            status = lent->kind == LENT_SERVICE ? call_service(lent, method, args, ret)
                                                : call_instance(lent, method, args, ret);
            PyErr_Clear();
            error_restore(saved);
            Py_DECREF(lent);
        }
        PyErr_Restore(type, value, tb);
    }
    PyGILState_Release(gil);
    if (status == DECLINED) return self->py_call(host, object, method, args, ret);
    return status;
}

PyMethodDef lent_functions[] = {
    {"lent_service", lent_service, METH_VARARGS, "A Python service as host->call's C path serves it."},
    {"lent_instance", lent_instance, METH_VARARGS, "Another plugin's instance as host->call's C path serves it."},
    {NULL, NULL, 0, NULL},
};
