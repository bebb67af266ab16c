/* Struct values of host-defined interfaces in C: an @idl.struct instance
 * packed into its C layout and built back from it, for the accelerated
 * methods (_speedups.c) and for structs.py, which keeps the Python codec for
 * everything unusual. Packing handles only the plain valid case (exact
 * types, values in range) and says "not here" otherwise, so that every
 * message stays in structs.py. */

#include "speedups.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* A field's kind: an ABI number or bool code, or one of these. */
#define K_HANDLE 100 /* a u64 in an int subclass (an idl.Handle) */
#define K_STRUCT 101 /* a nested struct, in place */

typedef struct Node Node;

typedef struct {
    PyObject *name;   /* interned attribute name */
    Py_ssize_t offset;
    int kind;
    PyObject *cls;    /* K_HANDLE: the handle class */
    Node *node;       /* K_STRUCT */
} Field;

struct Node {
    PyObject *cls;
    int direct;       /* build with object.__new__ and set fields, skipping the dataclass __init__ */
    Py_ssize_t nfields;
    Field *fields;
};

typedef struct {
    PyObject_HEAD
    Node *root;
    Py_ssize_t size;
} CodecObject;

static void node_free(Node *node) {
    if (node == NULL) return;
    for (Py_ssize_t i = 0; i < node->nfields; i++) {
        Py_XDECREF(node->fields[i].name);
        Py_XDECREF(node->fields[i].cls);
        node_free(node->fields[i].node);
    }
    Py_XDECREF(node->cls);
    PyMem_Free(node->fields);
    PyMem_Free(node);
}

/* plan: (cls, direct, ((name, offset, kind, cls_or_plan_or_None), ...)) */
static Node *node_new(PyObject *plan, Py_ssize_t base, Py_ssize_t size) {
    PyObject *cls, *fields;
    int direct;
    if (!PyArg_ParseTuple(plan, "OpO!", &cls, &direct, &PyTuple_Type, &fields)) return NULL;
    Node *node = PyMem_Calloc(1, sizeof(Node));
    if (node == NULL) return (Node *)PyErr_NoMemory();
    node->cls = Py_NewRef(cls);
    node->direct = direct;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    node->fields = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Field));
    if (node->fields == NULL) {
        node_free(node);
        return (Node *)PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Field *f = &node->fields[i];
        PyObject *name, *extra;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "UniO", &name, &f->offset, &f->kind, &extra)) goto fail;
        node->nfields = i + 1;
        f->name = Py_NewRef(name);
        PyUnicode_InternInPlace(&f->name);
        int scalar = f->kind >= T_BOOL && f->kind <= T_LAST_SCALAR;
        if (!scalar && f->kind != K_HANDLE && f->kind != K_STRUCT) {
            PyErr_Format(PyExc_ValueError, "bad struct field kind %d", f->kind);
            goto fail;
        }
        if (f->offset < 0 || f->offset > size) {
            PyErr_SetString(PyExc_ValueError, "a struct field lies outside the struct");
            goto fail;
        }
        f->offset += base;
        int width = f->kind == K_HANDLE ? 8 : scalar ? (f->kind == T_BOOL ? 1 : ELEMENT_SIZE[f->kind]) : 0;
        if (f->kind == K_STRUCT) {
            f->node = node_new(extra, f->offset, size);
            if (f->node == NULL) goto fail;
        } else {
            if (f->kind == K_HANDLE) f->cls = Py_NewRef(extra);
            if (f->offset + width > size) {
                PyErr_SetString(PyExc_ValueError, "a struct field lies outside the struct");
                goto fail;
            }
        }
    }
    return node;
fail:
    node_free(node);
    return NULL;
}

static int Codec_init(CodecObject *self, PyObject *args, PyObject *kwds) {
    (void)kwds;
    PyObject *plan;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "nO!", &size, &PyTuple_Type, &plan)) return -1;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "a struct has a size");
        return -1;
    }
    if (self->root != NULL) { /* its size is checked where it is used: it never changes */
        PyErr_SetString(PyExc_RuntimeError, "a StructCodec is made once");
        return -1;
    }
    Node *root = node_new(plan, 0, size);
    if (root == NULL) return -1;
    self->root = root;
    self->size = size;
    return 0;
}

static void Codec_dealloc(CodecObject *self) {
    node_free(self->root);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ------------------------------------------------------------------ pack */

/* 0 when packed, 1 when the Python codec must decide, -1 with an exception
 * (only MemoryError-like failures of attribute lookup itself). */
static int pack_node(const Node *node, PyObject *obj, unsigned char *out) {
    if (Py_TYPE(obj) != (PyTypeObject *)node->cls) return 1;
    for (Py_ssize_t i = 0; i < node->nfields; i++) {
        const Field *f = &node->fields[i];
        PyObject *v = PyObject_GetAttr(obj, f->name);
        if (v == NULL) {
            PyErr_Clear();
            return 1;
        }
        unsigned char *at = out + f->offset;
        int refused = 0;
        long long s;
        switch (f->kind) {
        case K_STRUCT:
            refused = pack_node(f->node, v, out);
            break;
        case T_BOOL:
            if (v == Py_True) *at = 1;
            else if (v == Py_False) *at = 0;
            else refused = 1;
            break;
        case T_I8: case T_I16: case T_I32: case T_I64: {
            int overflow;
            if (!PyLong_CheckExact(v)) { refused = 1; break; }
            s = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow || (s == -1 && PyErr_Occurred()) || s < SIGNED[f->kind].min || s > SIGNED[f->kind].max) {
                PyErr_Clear();
                refused = 1;
                break;
            }
            if (f->kind == T_I8) { int8_t x = (int8_t)s; memcpy(at, &x, 1); }
            else if (f->kind == T_I16) { int16_t x = (int16_t)s; memcpy(at, &x, 2); }
            else if (f->kind == T_I32) { int32_t x = (int32_t)s; memcpy(at, &x, 4); }
            else { int64_t x = (int64_t)s; memcpy(at, &x, 8); }
            break;
        }
        case T_U8: case T_U16: case T_U32: case T_U64: case K_HANDLE: {
            /* A handle is an int subclass; a bool never counts as a number. */
            if (f->kind == K_HANDLE ? (!PyLong_Check(v) || PyBool_Check(v)) : !PyLong_CheckExact(v)) {
                refused = 1;
                break;
            }
            unsigned long long u = PyLong_AsUnsignedLongLong(v);
            int code = f->kind == K_HANDLE ? T_U64 : f->kind;
            if ((u == (unsigned long long)-1 && PyErr_Occurred()) || u > UNSIGNED_MAX[code]) {
                PyErr_Clear();
                refused = 1;
                break;
            }
            if (code == T_U8) { uint8_t x = (uint8_t)u; memcpy(at, &x, 1); }
            else if (code == T_U16) { uint16_t x = (uint16_t)u; memcpy(at, &x, 2); }
            else if (code == T_U32) { uint32_t x = (uint32_t)u; memcpy(at, &x, 4); }
            else { uint64_t x = (uint64_t)u; memcpy(at, &x, 8); }
            break;
        }
        case T_F32: case T_F64: {
            double d;
            if (PyFloat_CheckExact(v)) {
                d = PyFloat_AS_DOUBLE(v);
            } else if (PyLong_CheckExact(v)) {
                d = PyLong_AsDouble(v);
                if (d == -1.0 && PyErr_Occurred()) { PyErr_Clear(); refused = 1; break; }
            } else {
                refused = 1;
                break;
            }
            if (f->kind == T_F64) {
                memcpy(at, &d, 8);
            } else {
                if (isfinite(d) && fabs(d) > FLT_MAX) { refused = 1; break; }
                float x = (float)d;
                memcpy(at, &x, 4);
            }
            break;
        }
        default:
            refused = 1;
        }
        Py_DECREF(v);
        if (refused) return refused;
    }
    return 0;
}

int codec_pack(PyObject *codec, PyObject *obj, unsigned char *out) {
    CodecObject *self = (CodecObject *)codec;
    memset(out, 0, (size_t)self->size); /* padding travels as zeros */
    return pack_node(self->root, obj, out);
}

Py_ssize_t codec_size(PyObject *codec) { return ((CodecObject *)codec)->size; }

/* ---------------------------------------------------------------- unpack */

static PyObject *field_value(const Field *f, const unsigned char *data);
static PyObject *empty_args; /* () for object.__new__ */

static PyObject *unpack_node(const Node *node, const unsigned char *data) {
    PyObject *values[64];
    PyObject **vals = node->nfields <= 64 ? values : PyMem_Calloc((size_t)node->nfields, sizeof(PyObject *));
    if (vals == NULL) return PyErr_NoMemory();
    PyObject *out = NULL;
    Py_ssize_t made = 0;
    for (; made < node->nfields; made++) {
        vals[made] = field_value(&node->fields[made], data);
        if (vals[made] == NULL) goto done;
    }
    if (node->direct) {
        /* What the frozen dataclass __init__ does (object.__setattr__ per field), without running Python. */
        /* object.__new__, then object.__setattr__ per field: on 3.11+ the
         * values go into the instance's inline slots, with the keys the type
         * shares among its instances, and no dict is made at all. */
        PyTypeObject *type = (PyTypeObject *)node->cls;
        if (empty_args == NULL && (empty_args = PyTuple_New(0)) == NULL) goto done;
        out = PyBaseObject_Type.tp_new(type, empty_args, NULL);
        for (Py_ssize_t i = 0; out != NULL && i < node->nfields; i++) {
            if (PyObject_GenericSetAttr(out, node->fields[i].name, vals[i]) < 0) Py_CLEAR(out);
        }
    } else {
        out = PyObject_Vectorcall(node->cls, vals, (size_t)node->nfields, NULL);
    }
done:
    for (Py_ssize_t i = 0; i < made; i++) Py_DECREF(vals[i]);
    if (vals != values) PyMem_Free(vals);
    return out;
}

static PyObject *field_value(const Field *f, const unsigned char *at_base) {
    const unsigned char *at = at_base + f->offset;
    switch (f->kind) {
    case K_STRUCT: return unpack_node(f->node, at_base);
    case T_BOOL: return PyBool_FromLong(*at != 0);
    case T_I8: { int8_t x; memcpy(&x, at, 1); return PyLong_FromLong(x); }
    case T_I16: { int16_t x; memcpy(&x, at, 2); return PyLong_FromLong(x); }
    case T_I32: { int32_t x; memcpy(&x, at, 4); return PyLong_FromLong(x); }
    case T_I64: { int64_t x; memcpy(&x, at, 8); return PyLong_FromLongLong(x); }
    case T_U8: return PyLong_FromLong(*at);
    case T_U16: { uint16_t x; memcpy(&x, at, 2); return PyLong_FromLong(x); }
    case T_U32: { uint32_t x; memcpy(&x, at, 4); return PyLong_FromUnsignedLong(x); }
    case T_U64: { uint64_t x; memcpy(&x, at, 8); return PyLong_FromUnsignedLongLong(x); }
    case T_F32: { float x; memcpy(&x, at, 4); return PyFloat_FromDouble(x); }
    case T_F64: { double x; memcpy(&x, at, 8); return PyFloat_FromDouble(x); }
    case K_HANDLE: {
        uint64_t x;
        memcpy(&x, at, 8);
        PyObject *raw = PyLong_FromUnsignedLongLong(x);
        if (raw == NULL) return NULL;
        PyObject *out = PyObject_CallOneArg(f->cls, raw);
        Py_DECREF(raw);
        return out;
    }
    }
    PyErr_SetString(PyExc_SystemError, "bad struct field kind");
    return NULL;
}

PyObject *codec_unpack(PyObject *codec, const unsigned char *data) {
    return unpack_node(((CodecObject *)codec)->root, data);
}

/* ------------------------------------------------------ Python methods */

static int made(PyObject *self) {
    if (((CodecObject *)self)->root == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the StructCodec was not made (call it with a size and a plan)");
        return 0;
    }
    return 1;
}

static PyObject *Codec_pack(PyObject *self, PyObject *obj) {
    if (!made(self)) return NULL;
    Py_ssize_t size = ((CodecObject *)self)->size;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) return NULL;
    int status = codec_pack(self, obj, (unsigned char *)PyBytes_AS_STRING(out));
    if (status != 0) {
        Py_DECREF(out);
        if (status < 0) return NULL;
        Py_RETURN_NONE; /* the Python codec decides */
    }
    return out;
}

static PyObject *Codec_unpack(PyObject *self, PyObject *arg) {
    if (!made(self)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = NULL;
    if (view.len != ((CodecObject *)self)->size) {
        PyErr_Format(PyExc_ValueError, "expected %zd bytes, got %zd", ((CodecObject *)self)->size, view.len);
    } else {
        out = codec_unpack(self, view.buf);
    }
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef Codec_methods[] = {
    {"pack", Codec_pack, METH_O, "The value's bytes, or None when the Python codec must check it."},
    {"unpack", Codec_unpack, METH_O, "The value of a struct's bytes."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject CodecType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ferrule._call._speedups.StructCodec",
    .tp_basicsize = sizeof(CodecObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A struct's C layout: pack(value) and unpack(data).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Codec_init,
    .tp_dealloc = (destructor)Codec_dealloc,
    .tp_methods = Codec_methods,
};
