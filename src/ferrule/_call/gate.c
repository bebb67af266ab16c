/* The accelerator's gate (see speedups.h for the fields and the inline
 * enter, leave and serial lock; contract.Gate for the behaviour). The cffi
 * path's twin is ferrule/_call/gate.py. */

#include "speedups.h"

#include <pthread.h>

int gate_grow(GateObject *self) {
    Py_ssize_t cap = self->inside_cap ? self->inside_cap * 2 : 4;
    const void **grown = PyMem_Realloc(self->inside, (size_t)cap * sizeof(void *));
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->inside = grown;
    self->inside_cap = cap;
    return 0;
}

/* Take lock without the GIL, waking every 50 ms to run signal handlers: a
 * wait from Python stays interruptible (Ctrl-C). -1 with the handler's
 * exception set, the lock not taken. */
static int wait_for(PyThread_type_lock lock) {
    for (;;) {
        PyLockStatus got;
        Py_BEGIN_ALLOW_THREADS
        got = PyThread_acquire_lock_timed(lock, 50000, 0);
        Py_END_ALLOW_THREADS
        if (got == PY_LOCK_ACQUIRED) return 0;
        if (PyErr_CheckSignals() < 0) return -1;
    }
}

static PyObject *Gate_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *closed_error, *closed_message, *inside_message;
    static char *kwlist[] = {"closed_error", "closed_message", "inside_message", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OUU", kwlist, &closed_error, &closed_message, &inside_message)) {
        return NULL;
    }
    GateObject *self = (GateObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->idle = PyThread_allocate_lock();
    self->serial = PyThread_allocate_lock();
    if (self->idle == NULL || self->serial == NULL || gate_grow(self) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->closed_error = Py_NewRef(closed_error);
    self->closed_message = Py_NewRef(closed_message);
    self->inside_message = Py_NewRef(inside_message);
    return (PyObject *)self;
}

static void Gate_dealloc(GateObject *self) {
    if (self->idle) PyThread_free_lock(self->idle);
    if (self->serial) PyThread_free_lock(self->serial);
    PyMem_Free(self->inside);
    Py_XDECREF(self->closed_error);
    Py_XDECREF(self->closed_message);
    Py_XDECREF(self->inside_message);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* From Python: enter() returns the call's mark (an address on this
 * thread's stack, see gate_enter) for the matching leave(mark). */
static PyObject *Gate_enter(GateObject *self, PyObject *unused) {
    (void)unused;
    char here;
    if (gate_enter(self, &here) < 0) return NULL;
    return PyLong_FromVoidPtr(&here);
}

static PyObject *Gate_leave(GateObject *self, PyObject *mark) {
    void *at = PyLong_AsVoidPtr(mark);
    if (at == NULL && PyErr_Occurred()) return NULL;
    gate_leave(self, at);
    Py_RETURN_NONE;
}

/* Whether one of the calls in flight runs on this thread: its mark lies in
 * this thread's stack. */
static int inside_this_thread(GateObject *self) {
#if defined(__linux__) && defined(__GLIBC__)
    pthread_attr_t attr;
    void *low;
    size_t size;
    if (self->active == 0 || pthread_getattr_np(pthread_self(), &attr) != 0) return 0;
    int found = 0;
    if (pthread_attr_getstack(&attr, &low, &size) == 0) {
        for (Py_ssize_t i = 0; i < self->active; i++) {
            uintptr_t at = (uintptr_t)self->inside[i];
            if (at >= (uintptr_t)low && at - (uintptr_t)low < size) found = 1;
        }
    }
    pthread_attr_destroy(&attr);
    return found;
#else
    (void)self;
    return 0; /* no portable stack bounds: close() from inside a call would wait */
#endif
}

/* close(wait) -> bool: refuse new calls; True if none is in flight, after
 * waiting for them when wait is true. Waiting from inside a call would wait
 * for this very thread: refused instead. */
static PyObject *Gate_close(GateObject *self, PyObject *wait) {
    int should_wait = PyObject_IsTrue(wait);
    if (should_wait < 0) return NULL;
    if (should_wait && inside_this_thread(self)) {
        PyErr_SetObject(self->closed_error, self->inside_message);
        return NULL;
    }
    self->closed = 1;
    if (self->active == 0) {
        Py_RETURN_TRUE;
    }
    if (!should_wait) {
        Py_RETURN_FALSE;
    }
    while (self->active > 0) {
        if (!self->waiting) {
            PyThread_acquire_lock(self->idle, WAIT_LOCK); /* free: only a waiter takes it */
            self->waiting = 1;
        }
        if (wait_for(self->idle) < 0) return NULL; /* released by the last leave */
        PyThread_release_lock(self->idle);
    }
    Py_RETURN_TRUE;
}

/* The serial lock for Python code (a plugin-to-plugin call, an isolated
 * call): re-entrant, and interruptible while it waits. */
static PyObject *Gate_serial_enter(GateObject *self, PyObject *unused) {
    (void)unused;
    unsigned long me = PyThread_get_thread_ident();
    if (self->serial_owner == me) {
        self->serial_depth++;
        Py_RETURN_NONE;
    }
    if (!PyThread_acquire_lock(self->serial, NOWAIT_LOCK) && wait_for(self->serial) < 0) return NULL;
    self->serial_owner = me;
    self->serial_depth = 1;
    Py_RETURN_NONE;
}

/* serial_try_enter() -> bool: the serial lock if it is free (or this
 * thread's), without waiting: an event loop must not block on it. */
static PyObject *Gate_serial_try_enter(GateObject *self, PyObject *unused) {
    (void)unused;
    unsigned long me = PyThread_get_thread_ident();
    if (self->serial_owner == me) {
        self->serial_depth++;
        Py_RETURN_TRUE;
    }
    if (!PyThread_acquire_lock(self->serial, NOWAIT_LOCK)) Py_RETURN_FALSE;
    self->serial_owner = me;
    self->serial_depth = 1;
    Py_RETURN_TRUE;
}

static PyObject *Gate_serial_leave(GateObject *self, PyObject *unused) {
    (void)unused;
    if (self->serial_owner != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "serial_leave() by a thread that does not hold the serial lock");
        return NULL;
    }
    serial_unlock(self);
    Py_RETURN_NONE;
}

static PyObject *Gate_closed(GateObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->closed);
}

static PyMethodDef Gate_methods[] = {
    {"enter", (PyCFunction)Gate_enter, METH_NOARGS, "Count a call in (its mark); raises once closed."},
    {"leave", (PyCFunction)Gate_leave, METH_O, "Count the call of enter()'s mark out."},
    {"close", (PyCFunction)Gate_close, METH_O, "Refuse new calls; True when none is in flight."},
    {"serial_enter", (PyCFunction)Gate_serial_enter, METH_NOARGS, "Take the serial lock (re-entrant)."},
    {"serial_try_enter", (PyCFunction)Gate_serial_try_enter, METH_NOARGS,
     "Take the serial lock if that needs no wait; True if taken."},
    {"serial_leave", (PyCFunction)Gate_serial_leave, METH_NOARGS, "Give the serial lock back."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Gate_getset[] = {
    {"closed", (getter)Gate_closed, NULL, "Whether close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ferrule._call._speedups.Gate",
    .tp_basicsize = sizeof(GateObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Calls in flight and the serial lock of one plugin or instance.",
    .tp_new = Gate_new,
    .tp_dealloc = (destructor)Gate_dealloc,
    .tp_methods = Gate_methods,
    .tp_getset = Gate_getset,
};
