/* ferrule._loader._ccall, the C path of ferrule.Library's functions
 * (CFunction, cdecl.py), an optional module of its own:
 * a vectorcall entry for C functions of any library whose arguments all
 * travel in registers: integers, bool, float, double and pointers, at most
 * six integer-class and eight floating-point ones, and a number, pointer
 * or void result.
 *
 * How it calls a function of any such type without libffi: on the ABI
 * this is built for (x86-64 System V; AArch64 would do too), integer-class and
 * floating-point arguments are assigned registers in two independent
 * sequences, and registers a callee does not read are ignored. So every
 * such function can be called through one type taking six int64 and eight
 * double arguments: each argument goes to the next register of its class,
 * narrow integers extended as their C type says, a float as the low half of
 * its register (its bits in a double). An integer result comes back in the
 * first integer register and is cut to its C type; a float one is the low
 * half of the first floating-point register. Variadic functions are never
 * called this way (x86-64 passes the vector-register count in al for them).
 * Elsewhere this path is off and every call takes the Python one.
 *
 * Only plain valid arguments go here: an int or float of the declared kind
 * in range; for a pointer None, an int address, bytes (to const) or a
 * buffer that passes the Python path's checks. Anything else (a cffi value,
 * a callable, a value out of range, a buffer it would refuse) takes the
 * Python path, _call_python, which converts it or raises
 * the error, with the same messages. While a ferrule.Callback is alive the
 * Python path takes every call, so that its exceptions reach the call in
 * flight. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_abi_types.h"

/* AArch64 (AAPCS64) assigns its two register files the same way, so the
 * same call would hold there; it is off until a test has run it there. */
#if defined(__x86_64__) && !defined(_WIN32)
#define CCALL_REGISTERS 1
#else
#define CCALL_REGISTERS 0
#endif

#define GP_REGS 6
#define FP_REGS 8
#define MAX_CPARAMS (GP_REGS + FP_REGS)

/* Parameter kinds: the scalar codes of _abi_types.h, then these. */
enum { PK_PTR = 32, PK_CONST_PTR = 33 };
/* Result kinds besides the scalar codes. */
enum { RK_VOID = -1, RK_PTR = 32, RK_CHAR_PTR = 33 };

typedef int64_t (*gp_call)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double, double, double,
                           double, double, double, double);
typedef double (*fp_call)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double, double, double,
                          double, double, double, double);

static int live_callbacks; /* ferrule.Callback objects not yet closed (the GIL guards it) */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    void *fn;
    int nparams;
    int result;
    unsigned char kind[MAX_CPARAMS];
    unsigned char reg[MAX_CPARAMS]; /* its register within its class */
    Py_ssize_t need[MAX_CPARAMS];   /* a pointer: the size of what it points at (0: any, as void or char) */
    Py_ssize_t align[MAX_CPARAMS];  /* and its alignment */
} CCallObject;

/* The buffers a call holds until C returns. */
typedef struct {
    Py_buffer view[MAX_CPARAMS];
    int n;
} Views;

static void release_views(Views *views) {
    while (views->n > 0) PyBuffer_Release(&views->view[--views->n]);
}

static PyObject *python_path(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    PyObject *method = PyObject_GetAttrString(self, "_call_python");
    if (method == NULL) return NULL;
    PyObject *out = PyObject_Vectorcall(method, args, nargsf, kwnames);
    Py_DECREF(method);
    return out;
}

/* The Python path's checks of a buffer for a pointer parameter (1: it
 * fails one, and the Python path raises): at least one element long, or
 * empty for a pointer to const; aligned. A buffer is also writable unless
 * the pointer is to const, and C-contiguous (put_buffer asks for both). */
static inline int unfit(const CCallObject *self, int i, const void *buf, Py_ssize_t len) {
    Py_ssize_t need = self->need[i];
    int writable = self->kind[i] == PK_PTR;
    if ((len > 0 && len < need) || (len == 0 && writable && need > 0)) return 1;
    return need > 1 && len > 0 && (uintptr_t)buf % (uintptr_t)self->align[i];
}

static int put_buffer(const CCallObject *self, int i, PyObject *obj, int64_t *slot, Views *views) {
    Py_buffer *view = &views->view[views->n];
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (self->kind[i] == PK_PTR ? PyBUF_WRITABLE : 0)) < 0) {
        PyErr_Clear();
        return 1;
    }
    views->n++;
    if (unfit(self, i, view->buf, view->len)) return 1;
    *slot = (int64_t)(uintptr_t)view->buf;
    return 0;
}

/* One argument into its register; 1 when the Python path must take it. */
static inline int put(const CCallObject *self, int i, PyObject *obj, int64_t *gp, double *fp, Views *views) {
    int kind = self->kind[i];
    int r = self->reg[i];
    switch (kind) {
    case T_BOOL:
        if (obj == Py_True) gp[r] = 1;
        else if (obj == Py_False) gp[r] = 0;
        else return 1;
        return 0;
    case T_I8: case T_I16: case T_I32: case T_I64: {
        if (!PyLong_CheckExact(obj)) return 1;
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 1;
        }
        if (v < SIGNED[kind].min || v > SIGNED[kind].max) return 1;
        gp[r] = v;
        return 0;
    }
    case T_U8: case T_U16: case T_U32: case T_U64: {
        if (!PyLong_CheckExact(obj)) return 1;
        unsigned long long v = PyLong_AsUnsignedLongLong(obj);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 1;
        }
        if (v > UNSIGNED_MAX[kind]) return 1;
        gp[r] = (int64_t)v;
        return 0;
    }
    case T_F64:
        if (PyFloat_CheckExact(obj)) fp[r] = PyFloat_AS_DOUBLE(obj);
        else return 1;
        return 0;
    case T_F32: {
        if (!PyFloat_CheckExact(obj)) return 1;
        union { double d; float f; uint64_t u; } bits;
        bits.u = 0;
        bits.f = (float)PyFloat_AS_DOUBLE(obj);
        fp[r] = bits.d;
        return 0;
    }
    case PK_PTR: case PK_CONST_PTR:
        if (obj == Py_None) {
            gp[r] = 0;
            return 0;
        }
        if (PyLong_CheckExact(obj)) { /* an address: 0 to the largest; anything else is the Python path's error */
            unsigned long long p = PyLong_AsUnsignedLongLong(obj);
            if (p == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Clear();
                return 1;
            }
            if (p > UINTPTR_MAX) return 1;
            gp[r] = (int64_t)(uintptr_t)p;
            return 0;
        }
        if (PyBytes_CheckExact(obj)) { /* no view to take or release; NUL-terminated, as C text needs */
            if (kind != PK_CONST_PTR) return 1; /* immutable, where C may write: the Python path refuses it */
            if (unfit(self, i, PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj))) return 1;
            gp[r] = (int64_t)(uintptr_t)PyBytes_AS_STRING(obj);
            return 0;
        }
        if (PyObject_CheckBuffer(obj)) return put_buffer(self, i, obj, &gp[r], views);
        return 1;
    }
    return 1;
}

static PyObject *result_of(int kind, int64_t g, double f) {
    switch (kind) {
    case RK_VOID: Py_RETURN_NONE;
    case T_BOOL: return PyBool_FromLong((g & 0xff) != 0);
    case T_I8: return PyLong_FromLong((int8_t)g);
    case T_I16: return PyLong_FromLong((int16_t)g);
    case T_I32: return PyLong_FromLong((int32_t)g);
    case T_I64: return PyLong_FromLongLong(g);
    case T_U8: return PyLong_FromUnsignedLong((uint8_t)g);
    case T_U16: return PyLong_FromUnsignedLong((uint16_t)g);
    case T_U32: return PyLong_FromUnsignedLong((uint32_t)g);
    case T_U64: return PyLong_FromUnsignedLongLong((uint64_t)g);
    case T_F64: return PyFloat_FromDouble(f);
    case T_F32: {
        union { double d; float f; } bits;
        bits.d = f;
        return PyFloat_FromDouble(bits.f);
    }
    case RK_PTR:
        if (g == 0) Py_RETURN_NONE;
        return PyLong_FromVoidPtr((void *)(uintptr_t)g);
    case RK_CHAR_PTR:
        if (g == 0) Py_RETURN_NONE;
        return PyBytes_FromString((const char *)(uintptr_t)g); /* borrowed text: copied */
    }
    PyErr_SetString(PyExc_SystemError, "ferrule: a bad C result kind");
    return NULL;
}

static PyObject *CCall_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    CCallObject *self = (CCallObject *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (self->fn == NULL || live_callbacks || nargs != self->nparams || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        return python_path(callable, args, nargsf, kwnames);
    }
    int64_t gp[GP_REGS] = {0};
    double fp[FP_REGS] = {0};
    Views views;
    views.n = 0;
    for (int i = 0; i < self->nparams; i++) {
        if (put(self, i, args[i], gp, fp, &views)) {
            release_views(&views);
            return python_path(callable, args, nargsf, kwnames);
        }
    }
    int64_t g = 0;
    double f = 0;
    int floating = self->result == T_F64 || self->result == T_F32;
    Py_BEGIN_ALLOW_THREADS
    if (floating) {
        f = ((fp_call)self->fn)(gp[0], gp[1], gp[2], gp[3], gp[4], gp[5], fp[0], fp[1], fp[2], fp[3], fp[4], fp[5],
                                fp[6], fp[7]);
    } else {
        g = ((gp_call)self->fn)(gp[0], gp[1], gp[2], gp[3], gp[4], gp[5], fp[0], fp[1], fp[2], fp[3], fp[4], fp[5],
                                fp[6], fp[7]);
    }
    Py_END_ALLOW_THREADS
    release_views(&views);
    return result_of(self->result, g, f);
}

static PyObject *CCall_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args;
    (void)kwds;
    CCallObject *self = (CCallObject *)type->tp_alloc(type, 0);
    if (self != NULL) self->vectorcall = CCall_vectorcall;
    return (PyObject *)self;
}

/* _accelerate(address, kinds, needs, result): True when this function is
 * called here from now on, False when its type does not fit the registers
 * (or this platform has no register path). kinds are parameter kinds,
 * needs a (size, alignment) pair for each: what a pointer points at. */
static PyObject *CCall_accelerate(CCallObject *self, PyObject *args) {
    unsigned long long address;
    PyObject *kinds, *needs;
    int result;
    if (!PyArg_ParseTuple(args, "KO!O!i", &address, &PyBytes_Type, &kinds, &PyTuple_Type, &needs, &result)) return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(kinds);
    if (!CCALL_REGISTERS || n > MAX_CPARAMS || PyTuple_GET_SIZE(needs) != n || address == 0) Py_RETURN_FALSE;
    int gp = 0, fp = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int kind = (unsigned char)PyBytes_AS_STRING(kinds)[i];
        int floating = kind == T_F32 || kind == T_F64;
        int integral = (kind >= T_BOOL && kind <= T_U64) || kind == PK_PTR || kind == PK_CONST_PTR;
        if (!floating && !integral) Py_RETURN_FALSE;
        if (floating ? fp >= FP_REGS : gp >= GP_REGS) Py_RETURN_FALSE;
        self->kind[i] = (unsigned char)kind;
        self->reg[i] = (unsigned char)(floating ? fp++ : gp++);
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(needs, i), "nn", &self->need[i], &self->align[i])) return NULL;
        if (self->align[i] < 1) self->align[i] = 1;
    }
    if (!(result == RK_VOID || (result >= T_BOOL && result <= T_F64) || result == RK_PTR || result == RK_CHAR_PTR)) {
        Py_RETURN_FALSE;
    }
    self->nparams = (int)n;
    self->result = result;
    self->fn = (void *)(uintptr_t)address;
    Py_RETURN_TRUE;
}

static PyObject *CCall_accelerated(CCallObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->fn != NULL);
}

static PyMethodDef CCall_methods[] = {
    {"_accelerate", (PyCFunction)CCall_accelerate, METH_VARARGS, "Call this C function here when its type fits."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef CCall_getset[] = {
    {"_accelerated", (getter)CCall_accelerated, NULL, "Whether calls take the C path.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ferrule._loader._ccall.CCall",
    .tp_basicsize = sizeof(CCallObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Base of ferrule.CFunction: the C path of a library function.",
    .tp_new = CCall_new,
    .tp_vectorcall_offset = offsetof(CCallObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = CCall_methods,
    .tp_getset = CCall_getset,
};

/* callbacks(delta): count ferrule.Callback objects made (+1) and closed (-1). */
static PyObject *ccall_callbacks(PyObject *module, PyObject *delta) {
    (void)module;
    long d = PyLong_AsLong(delta);
    if (d == -1 && PyErr_Occurred()) return NULL;
    live_callbacks += (int)d;
    return PyLong_FromLong(live_callbacks);
}

/* Let a subclass of CCall use its vectorcall slot (Python 3.11 does not
 * pass the flag on to a class statement's subclass). */
static PyObject *ccall_enable_vectorcall(PyObject *module, PyObject *cls) {
    (void)module;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &CCallType)) {
        PyErr_SetString(PyExc_TypeError, "expected a subclass of CCall");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    type->tp_vectorcall_offset = CCallType.tp_vectorcall_offset;
    type->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    Py_RETURN_NONE;
}

static PyMethodDef module_functions[] = {
    {"callbacks", ccall_callbacks, METH_O, "Count live ferrule.Callback objects."},
    {"enable_vectorcall", ccall_enable_vectorcall, METH_O, "Let a subclass of CCall use its vectorcall slot."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ferrule._loader._ccall", "The C path of ferrule.Library's functions.", -1,
    module_functions, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ccall(void) {
    if (PyType_Ready(&CCallType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    /* The codes _accelerate takes, from the generated _abi_types.h (cdecl.py reads them here). */
    static const struct { const char *name; int value; } codes[] = {
        {"T_BOOL", T_BOOL}, {"T_I8", T_I8}, {"T_I16", T_I16}, {"T_I32", T_I32}, {"T_I64", T_I64},
        {"T_U8", T_U8}, {"T_U16", T_U16}, {"T_U32", T_U32}, {"T_U64", T_U64}, {"T_F32", T_F32},
        {"T_F64", T_F64}, {"PK_PTR", PK_PTR}, {"PK_CONST_PTR", PK_CONST_PTR}, {"RK_VOID", RK_VOID},
        {"RK_PTR", RK_PTR}, {"RK_CHAR_PTR", RK_CHAR_PTR},
    };
    int failed = PyModule_AddObjectRef(m, "CCall", (PyObject *)&CCallType) < 0;
    for (size_t i = 0; !failed && i < sizeof codes / sizeof codes[0]; i++) {
        failed = PyModule_AddIntConstant(m, codes[i].name, codes[i].value) < 0;
    }
    if (failed) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
