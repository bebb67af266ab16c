"""C declarations and calls through them, for any C library: ferrule's
equivalent of cffi's ABI mode, built on cffi (which parses and calls) with
the checks cffi leaves to the caller.

Each ``Declarations`` is a namespace of its own (one cffi FFI), so two
libraries can both declare ``struct config`` and ferrule's own types never
collide with a user's. What cffi does not keep, this module does: which
pointer parameters are ``const`` (cffi drops the qualifier), and the
prototypes declared in C text, read with pycparser (cffi's own parser).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cffi
import pycparser
from cffi import commontypes, model
from pycparser import c_ast

__all__ = ["CFunction", "Callback", "Declarations", "Owned"]

_log = logging.getLogger("ferrule")

# Names cffi knows without a declaration: pycparser must be told they are types.
_C_WORDS = {"char", "short", "int", "long", "float", "double", "signed", "unsigned", "void", "_Bool", "_Complex"}
_KNOWN_TYPES = sorted(n for n in set(commontypes.COMMON_TYPES) | set(model.PrimitiveType.ALL_PRIMITIVE_TYPES)
                      if n.isidentifier() and n not in _C_WORDS)


class _Proto:
    """A function as declared: its declaration, the type of a pointer to it
    (C text cffi reads) and which pointer parameters point at const data
    (cffi does not keep that)."""

    __slots__ = ("const", "pointer", "text")

    def __init__(self, text: str, pointer: str, const: tuple[bool, ...]):
        self.text = text
        self.pointer = pointer
        self.const = const


def _quals(node: Any, typedefs: dict[str, Any], depth: int = 0) -> tuple[bool, Any]:
    """Whether a type is const, and the type a typedef name stands for
    (followed, so ``typedef const char cchar`` makes ``cchar`` const)."""
    const = "const" in getattr(node, "quals", [])
    while depth < 32 and isinstance(node, c_ast.TypeDecl) and isinstance(node.type, c_ast.IdentifierType):
        names = node.type.names
        target = typedefs.get(names[-1]) if len(names) == 1 else None
        if target is None:
            break
        node = target
        const = const or "const" in getattr(node, "quals", [])
        depth += 1
    return const, node


def _const_target(node: Any, typedefs: dict[str, Any]) -> bool:
    """Whether a parameter's pointer (or array) points at const data,
    through typedef names on either side of the pointer."""
    _, node = _quals(node, typedefs)
    if isinstance(node, (c_ast.PtrDecl, c_ast.ArrayDecl)):
        const, _ = _quals(node.type, typedefs)
        return const
    return False


def _params_const(func: c_ast.FuncDecl, typedefs: dict[str, Any]) -> tuple[bool, ...]:
    params = func.args.params if func.args is not None else []
    out = []
    for p in params:
        if isinstance(p, c_ast.EllipsisParam):
            continue
        kind = getattr(p, "type", None)
        if isinstance(kind, c_ast.TypeDecl) and isinstance(kind.type, c_ast.IdentifierType) and kind.type.names == ["void"]:
            continue  # (void)
        out.append(_const_target(kind, typedefs))
    return tuple(out)


_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def _plain_c(text: str) -> str:
    """Text pycparser reads: without comments, preprocessor lines (joined
    across their backslashes) and the ``...`` cffi allows in a struct."""
    text = _COMMENTS.sub(lambda m: "\n" * m.group(0).count("\n") or " ", text)
    text = re.sub(r"\\\n", " ", text)
    text = re.sub(r"^\s*#.*$", "", text, flags=re.M)
    return re.sub(r",?\s*\.\.\.\s*;", ";", text)


def _statements(text: str) -> list[str]:
    """Top-level declarations, one each (split at semicolons outside braces)."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == ";" and depth == 0:
            pieces.append(text[start : i + 1])
            start = i + 1
    return pieces


def _generator() -> Any:
    from pycparser import c_generator

    return c_generator.CGenerator()


def _pointer_text(func: c_ast.FuncDecl) -> str:
    """The C type of a pointer to the declared function, without a name:
    ``int (*(*)(void))(int, int)`` for ``int (*f(void))(int, int)``."""
    import copy

    func = copy.deepcopy(func)
    inner = func
    while not isinstance(inner, c_ast.TypeDecl):
        inner = inner.type
    inner.declname = None
    return str(_generator().visit(c_ast.Typename(None, [], None, c_ast.PtrDecl([], func))))


_LINE = re.compile(r":(\d+)(?::\d+)?:")


def _pointing(text: str, message: str) -> str:
    """cffi's parse error, with the line of the user's text it names."""
    last = message.splitlines()[-1] if message else ""
    found = _LINE.search(last)
    if found is None:
        return message.replace("\n", " ")
    detail = last[found.end():].strip()
    lines = text.splitlines()
    number = int(found.group(1))
    where = f"line {number}, {lines[number - 1].strip()!r}," if 0 < number <= len(lines) else f"line {number}"
    return (f"{where} does not parse ({detail or 'a syntax error'}): check the syntax there, and that each type "
            "it names is declared first")


class Declarations:
    """C declarations (typedefs, structs, unions, enums, function types and
    prototypes), taken from C text such as a library's header, in a
    namespace of their own. A ``Library`` has one; pass one to several
    libraries to share it.

    Values are cffi objects: ``new("struct point *", [1, 2])`` allocates
    (freed with the object), fields read and write as attributes, and
    ``new("int[8]")`` makes an array."""

    __module__ = "ferrule"

    def __init__(self, text: str = ""):
        self.ffi = cffi.FFI()
        self._protos: dict[str, _Proto] = {}
        self._typedefs: dict[str, Any] = {}  # name -> the type it stands for (pycparser's)
        self._open_callbacks: set[Callback] = set()
        self._consts: Any = None
        if text:
            self.cdef(text)

    def __repr__(self) -> str:
        return f"<ferrule.Declarations: {len(self._protos)} functions, {len(self._typedefs)} typedefs>"

    # -- declaring

    def cdef(self, text: str) -> None:
        """Declare the C text's types and prototypes here (comments and
        ``#define`` constants may be in it). Raises ValueError when it does
        not parse, naming the line where the parser can tell."""
        try:
            self.ffi.cdef(text)
        except (cffi.CDefError, cffi.FFIError) as exc:
            raise ValueError(f"cannot declare this C text: {_pointing(text, str(exc))}") from None
        for node in self._parse(text):
            if isinstance(node, c_ast.Typedef):
                self._typedefs[node.name] = node.type
            elif isinstance(node, c_ast.Decl) and isinstance(node.type, c_ast.FuncDecl):
                func = node.type
                self._protos[node.name] = _Proto(_generator().visit(node), _pointer_text(func),
                                                 _params_const(func, self._typedefs))

    def _parse(self, text: str) -> list[Any]:
        """The declarations of text cffi accepted, as pycparser reads them:
        known type names declared first, and where the whole does not parse
        (a construct only cffi knows), each declaration that does. What is
        left out has no const pointers known: they refuse bytes."""
        body = _plain_c(text)
        nodes = self._parse_piece(body)
        if nodes is not None:
            return nodes
        found: list[Any] = []
        for piece in _statements(body):
            got = self._parse_piece(piece, found)
            if got:
                found += got
        return found

    def _parse_piece(self, body: str, before: list[Any] | None = None) -> list[Any] | None:
        before = before or []
        names = [*_KNOWN_TYPES, *self._typedefs, *(n.name for n in before if isinstance(n, c_ast.Typedef))]
        prelude = "".join(f"typedef int {name};\n" for name in names)
        try:
            tree = pycparser.CParser().parse(prelude + body)
        except pycparser.c_parser.ParseError:
            return None
        if before:
            for node in tree.ext:
                if isinstance(node, c_ast.Typedef):
                    self._typedefs.setdefault(node.name, node.type)
        return list(tree.ext[len(names):])

    def prototype(self, name: str) -> str | None:
        """The declaration of function ``name`` (from ``cdef``), or None."""
        proto = self._protos.get(name)
        return None if proto is None else proto.text

    def _declared(self, name: str) -> tuple[Any, tuple[bool, ...], str] | None:
        """A declared function's cffi pointer type, const flags and declaration."""
        proto = self._protos.get(name)
        if proto is None:
            return None
        return self.ffi.typeof(proto.pointer), proto.const, proto.text

    def _signature(self, signature: str) -> tuple[Any, tuple[bool, ...] | None]:
        """The cffi function type of a signature text, and its const flags."""
        cut = signature.find("(")
        if cut <= 0:
            raise ValueError(f"C signature {signature!r} has no return type and parameter list")
        text = f"{signature[:cut]}(*){signature[cut:]}"
        try:
            ctype = self.ffi.typeof(text)
        except (cffi.CDefError, cffi.FFIError) as exc:
            raise ValueError(f"C signature {signature!r} does not parse: {_pointing(text, str(exc))}") from None
        except TypeError as exc:  # a struct by value that is only named, not declared
            raise ValueError(f"C signature {signature!r}: {exc}; declare the struct's fields first "
                             "(Library.cdef or Declarations.cdef, with its definition from the header)") from None
        const = None
        nodes = self._parse_piece(_plain_c(f"{signature[:cut]} (*__ferrule_sig){signature[cut:]};"))
        if nodes and isinstance(nodes[-1].type, c_ast.PtrDecl):
            inner = nodes[-1].type.type
            if isinstance(inner, c_ast.FuncDecl):
                const = _params_const(inner, self._typedefs)
        return ctype, const

    # -- values

    def new(self, ctype: str, init: Any = None) -> Any:
        """A new C object of ``ctype`` (a pointer or array type), zeroed or
        set from ``init``; freed when the returned object is."""
        return self._typed(lambda: self.ffi.new(ctype, init), ctype)

    def cast(self, ctype: str, value: Any) -> Any:
        """``value`` as a C value of ``ctype``: a number, or an address (int)
        as a typed pointer. Also a variadic argument's type."""
        return self._typed(lambda: self.ffi.cast(ctype, value), ctype)

    def sizeof(self, ctype: str) -> int:
        return int(self._typed(lambda: self.ffi.sizeof(ctype), ctype))

    def at(self, ctype: str, address: int) -> Any:
        """The memory at ``address`` as a ``ctype`` pointer (say ``"struct tm *"``):
        read and write its fields. Borrowed: it owns nothing."""
        pointer = self.cast(ctype, address)
        if self.ffi.typeof(pointer).kind != "pointer":
            raise ValueError(f"at() needs a pointer type, got {ctype!r}: write {ctype + ' *'!r}")
        return pointer

    def string(self, pointer: Any, length: int | None = None) -> bytes:
        """The bytes of a C string (up to its NUL), or ``length`` bytes, at a
        pointer or an address."""
        if isinstance(pointer, int):
            if not pointer:
                raise ValueError("string() of a NULL address")
            pointer = self.ffi.cast("char *", pointer)
        if pointer == self.ffi.NULL:
            raise ValueError("string() of a NULL pointer")
        raw = self.ffi.string(pointer) if length is None else self.ffi.buffer(pointer, length)[:]
        return bytes(raw)

    def constant(self, name: str) -> int:
        """An integer constant declared here: an enum value, or a ``#define``
        with a number."""
        if self._consts is None:
            self._consts = self.ffi.dlopen(None)  # (constants need no symbol; never closed, as every library)
        try:
            value = getattr(self._consts, name)
        except (AttributeError, cffi.FFIError, NotImplementedError):
            value = None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"no integer constant {name!r} is declared here (an enum value, or #define {name} "
                         "with a number)")

    def address(self, pointer: Any) -> int:
        """The address a pointer (or array) holds, as an int."""
        return int(self.ffi.cast("uintptr_t", pointer))

    def _typed(self, make: Callable[[], Any], ctype: str) -> Any:
        try:
            return make()
        except (cffi.CDefError, cffi.FFIError) as exc:
            raise ValueError(f"C type {ctype!r} does not parse: {_pointing(ctype, str(exc))}") from None
        except (TypeError, ValueError) as exc:
            if "unknown size" not in str(exc):
                raise
            raise ValueError(f"C type {ctype!r}: {exc}: its fields are not declared here; declare them first "
                             "(cdef, with the definition from the header)") from None

    # -- functions

    def callback(self, signature: str, fn: Callable[..., Any]) -> Callback:
        """``fn`` as a C function pointer of type ``signature`` (``"int (const
        void *, const void *)"``), valid until ``close()``: for C that keeps
        the pointer past the call it was passed to."""
        ctype, _ = self._signature(signature)
        return Callback(self, ctype, fn, signature)

    def function_at(self, pointer: Any, signature: str | None = None, name: str = "") -> CFunction:
        """A callable for a function pointer: a struct field, a returned
        pointer, or an address (then ``signature`` is required), with the
        same argument checks as ``Library.function``."""
        if isinstance(pointer, Callback):
            pointer = pointer.pointer
        const = None
        if isinstance(pointer, self.ffi.CData):
            ctype = self.ffi.typeof(pointer)
            if ctype.kind != "function":
                raise TypeError(f"function_at() needs a function pointer, got a {ctype.cname}")
            if signature is not None:
                ctype, const = self._signature(signature)
                pointer = self.ffi.cast(ctype, pointer)
        elif isinstance(pointer, int) and not isinstance(pointer, bool):
            if signature is None:
                raise TypeError("function_at() of an address needs its signature, e.g. \"int (int, int)\"")
            ctype, const = self._signature(signature)
            pointer = self.ffi.cast(ctype, pointer)
        else:
            raise TypeError(f"function_at() needs a function pointer or an address, got {type(pointer).__name__}")
        if pointer == self.ffi.NULL:
            raise ValueError(f"{name or 'function_at()'}: the function pointer is NULL: there is nothing to call")
        return CFunction(self, name or f"the function at {self.address(pointer):#x}", signature or ctype.cname, pointer,
                         ctype, const)


# -- calls in flight, for the exceptions of callbacks made during them

_current = threading.local()


def _report(exc: BaseException, what: str) -> bool:
    """Give a callback's exception to the innermost call in flight on this
    thread, which raises it when C returns; else log it (False)."""
    stack = getattr(_current, "stack", None)
    if stack:
        stack[-1].append(exc)
        return True
    _log.error("%s raised, called from C outside any call through ferrule", what, exc_info=exc)
    return False


def _callbacks(delta: int) -> None:
    if _ccall is not None:
        _ccall.callbacks(delta)


class Callback:
    """A Python function as a C function pointer, alive until ``close()``
    (or the end of a ``with`` block), even when nothing in Python refers to
    it any more: C may still hold the pointer. An exception it raises while
    a call through ferrule runs on its thread is raised by that call when C
    returns; at other times it is logged (logger ``ferrule``) and kept in
    ``errors``. C must not call the pointer after ``close()``. While any
    Callback is open, library calls take the Python path (about 1 us)."""

    __module__ = "ferrule"

    def __init__(self, decls: Declarations, ctype: Any, fn: Callable[..., Any], signature: str):
        if not callable(fn):
            raise TypeError(f"a callback must be callable, got {type(fn).__name__}")
        self.signature = signature
        self.errors: list[BaseException] = []
        self._decls = decls
        self._fn = fn
        what = f"callback {getattr(fn, '__qualname__', fn)!r}"

        def failed(exc_type: Any, exc: BaseException | None, tb: Any) -> None:
            if exc is None:  # pragma: no cover - cffi always passes the instance
                exc = exc_type()
            assert exc is not None
            if not _report(exc.with_traceback(tb), what):
                self.errors.append(exc)

        self._pointer: Any = decls.ffi.callback(ctype, fn, onerror=failed)
        # C may hold the pointer however Python drops this object: the
        # declarations keep it until close(). While any is open, library
        # calls take the Python path, which raises a callback's exception
        # from the call in flight.
        decls._open_callbacks.add(self)
        _callbacks(+1)

    @property
    def pointer(self) -> Any:
        """The C function pointer (a cffi object)."""
        if self._pointer is None:
            raise ValueError(f"the callback for {self.signature!r} is closed")
        return self._pointer

    @property
    def address(self) -> int:
        return self._decls.address(self.pointer)

    @property
    def closed(self) -> bool:
        return self._pointer is None

    def close(self) -> None:
        """Free the C pointer's trampoline: C must not call it afterwards.
        Idempotent."""
        if self._pointer is not None:
            self._pointer = None
            self._decls._open_callbacks.discard(self)
            _callbacks(-1)

    def __enter__(self) -> Callback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"at {self.address:#x}"
        return f"<ferrule.Callback {self.signature!r} {state}>"


class Owned:
    """A pointer a C function returned whose memory the caller frees (the
    declaration said with which function): ``close()``, the end of a
    ``with`` block or garbage collection frees it, once."""

    __module__ = "ferrule"

    def __init__(self, decls: Declarations, pointer: Any, free: Callable[[Any], Any], what: str):
        self._decls = decls
        self.what = what
        self.address = decls.address(pointer)
        self._pointer = pointer
        self._finalizer = weakref.finalize(self, free, pointer)

    @property
    def pointer(self) -> Any:
        if not self._finalizer.alive:
            raise ValueError(f"{self.what} was freed")
        return self._pointer

    def read(self, length: int | None = None) -> bytes:
        """The C string it points at (up to the NUL), or ``length`` bytes."""
        return self._decls.string(self.pointer, length)

    def __bytes__(self) -> bytes:
        return self.read()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Free it now (the declared free function). Idempotent."""
        self._finalizer()

    def __enter__(self) -> Owned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ferrule.Owned {self.what} at {self.address:#x}{' (freed)' if self.closed else ''}>"


def _element_size(ffi: Any, item: Any) -> int:
    """How many bytes a buffer passed for a pointer to ``item`` must hold (if
    it holds any): one element; 0 for void, char (text of any length) and an
    opaque struct, whose size is not known here."""
    if item.kind in ("void", "function") or (item.kind == "primitive" and item.cname == "char"):
        return 0
    try:
        return int(ffi.sizeof(item))
    except (ValueError, ffi.error):
        return 0


# The optional C path (_ccall.c): None when it was not built, or with
# FERRULE_PURE_PYTHON set. C_PATH says whether functions made from now on
# take it (the tests switch it to run every case on both paths).
_ccall: Any = None
if not os.environ.get("FERRULE_PURE_PYTHON"):
    try:
        import ferrule._loader._ccall as _ccall
    except ImportError:  # not built: the Python path does every job
        _ccall = None
C_PATH = _ccall is not None

if TYPE_CHECKING or _ccall is None:
    _CFunctionBase = object
else:
    _CFunctionBase = _ccall.CCall

def _scalar_code(ffi: Any, ctype: Any) -> int | None:
    """The C path's code (_ccall.T_*, from _abi_types.h) of a C bool,
    float, double or integer type, by its size and sign; None for others."""
    name = ctype.cname
    if name in ("_Bool", "bool"):
        return int(_ccall.T_BOOL)
    if name in ("float", "double"):
        return int(_ccall.T_F32 if name == "float" else _ccall.T_F64)
    if model.PrimitiveType.ALL_PRIMITIVE_TYPES.get(name) != "i" or name == "char":
        return None  # long double, char (cffi wants bytes of one), complex types
    signed = int(ffi.cast(ctype, -1)) < 0
    bits = 8 * ffi.sizeof(ctype)
    code = getattr(_ccall, f"T_{'I' if signed else 'U'}{bits}", None)
    return None if code is None else int(code)


_FLOATS = ("float", "double", "long double")
_MAX_ADDRESS = (1 << (8 * cffi.FFI().sizeof("void *"))) - 1
_PLAIN: dict[str, type] = {name: float for name in _FLOATS}
_PLAIN.update({name: int for name in model.PrimitiveType.ALL_PRIMITIVE_TYPES
               if model.PrimitiveType.ALL_PRIMITIVE_TYPES[name] == "i" and name not in ("_Bool", "bool")})


class CFunction(_CFunctionBase):
    """A C function pointer called through its declared type: arguments are
    checked and converted (a clear TypeError or ValueError otherwise), a
    Python callable may stand for a function pointer, and results come back
    as Python values, or as ``Owned`` when the declaration names a free
    function."""

    __module__ = "ferrule"

    def __init__(self, decls: Declarations, name: str, signature: str, pointer: Any, ctype: Any,
                 const: tuple[bool, ...] | None, free: Callable[[Any], Any] | None = None):
        self.__name__ = name
        self.signature = signature
        self._decls = decls
        self._ffi = decls.ffi
        self._pointer = pointer
        self._params: tuple[Any, ...] = ctype.args
        self._variadic = bool(ctype.ellipsis)
        self._const = const if const is not None and len(const) == len(self._params) else (False,) * len(self._params)
        self._result = ctype.result
        self._free = free
        result = ctype.result
        if free is not None and result.kind != "pointer":
            raise ValueError(f"{name}: free= is for a function that returns a pointer, and {signature!r} returns "
                             f"{result.cname}")
        # Per parameter, the Python type that passes to cffi as it is (None:
        # every value is converted here): numbers for numbers.
        self._checks = [(i, _PLAIN.get(t.cname) if t.kind == "primitive" else None) for i, t in enumerate(self._params)]
        self._plain_result = result.kind == "primitive"
        if C_PATH and _ccall is not None and not self._variadic and free is None:
            plan = self._c_plan()
            if plan is not None:
                self._accelerate(self.address, *plan)  # type: ignore[attr-defined]

    def _c_plan(self) -> tuple[bytes, tuple[tuple[int, int], ...], int] | None:
        """The C path's codes for this type, or None when it takes only the Python path."""
        ffi = self._ffi
        kinds: list[int] = []
        needs: list[tuple[int, int]] = []
        for i, t in enumerate(self._params):
            need = (0, 1)
            if t.kind == "primitive":
                code = _scalar_code(ffi, t)
                if code is None:
                    return None
            elif t.kind == "pointer" and t.item.kind != "function":
                code = _ccall.PK_CONST_PTR if self._const[i] else _ccall.PK_PTR
                size = _element_size(ffi, t.item)
                if size:
                    need = (size, ffi.alignof(t.item))
            else:
                return None  # structs by value, function pointers: the Python path
            kinds.append(code)
            needs.append(need)
        r = self._result
        if r.kind == "void":
            result = _ccall.RK_VOID
        elif r.kind == "primitive":
            code = _scalar_code(ffi, r)
            if code is None:
                return None
            result = code
        elif r.kind == "pointer" and r.item.kind == "primitive" and r.item.cname == "char":
            result = _ccall.RK_CHAR_PTR
        elif r.kind == "pointer" and r.item.kind not in ("struct", "union", "function"):
            result = _ccall.RK_PTR
        else:
            return None
        return bytes(kinds), tuple(needs), result

    @property
    def address(self) -> int:
        return self._decls.address(self._pointer)

    def __int__(self) -> int:
        return self.address

    def __index__(self) -> int:
        return self.address

    def __repr__(self) -> str:
        return f"<ferrule C function {self.__name__}: {self.signature}>"

    def _call_python(self, *args: Any, **kwargs: Any) -> Any:
        """The call, checked and converted here (the C path, where there is
        one, hands over whatever it does not take itself)."""
        if kwargs:
            raise TypeError(f"{self.__name__}() takes its arguments by position only, as C does "
                            f"(got {', '.join(kwargs)}=)")
        n = len(self._params)
        if len(args) != n and not (self._variadic and len(args) > n):
            more = " or more" if self._variadic else ""
            raise TypeError(f"{self.__name__}() takes {n}{more} argument{'' if n == 1 and not more else 's'} "
                            f"({len(args)} given)")
        keep: list[Any] = []  # what must outlive the call: copies, callbacks made for it
        converted = list(args)
        for i, plain in self._checks:
            value = args[i]
            if type(value) is not plain:  # a float for a double, an int for an int: cffi checks its range
                converted[i] = self._convert(i, self._params[i], value, keep)
        if len(args) > n:
            converted[n:] = [self._extra(n + i, a, keep) for i, a in enumerate(args[n:])]
        stack = getattr(_current, "stack", None)
        if stack is None:
            stack = _current.stack = []
        errors: list[BaseException] = []
        stack.append(errors)
        try:
            result = self._pointer(*converted)
        finally:
            stack.pop()
        del keep
        if errors:
            raise errors[0]
        return result if self._plain_result else self._python_result(result)

    # -- arguments

    def _where(self, index: int) -> str:
        return f"{self.__name__}() argument {index + 1}"

    def _convert(self, index: int, ctype: Any, value: Any, keep: list[Any]) -> Any:
        ffi = self._ffi
        kind = ctype.kind
        if isinstance(value, Callback):
            value = value.pointer
        if isinstance(value, ffi.CData):
            return value  # cffi checks the type
        if kind == "function":
            if value is None:
                return ffi.NULL
            if isinstance(value, CFunction):
                return ffi.cast(ctype, value._pointer)
            if callable(value):
                made = ffi.callback(ctype, value, onerror=self._callback_failed)
                keep.append(made)  # for this call only: C must not keep it (use Declarations.callback)
                return made
            if isinstance(value, int) and not isinstance(value, bool):
                return self._address(index, ctype, value)
            raise TypeError(f"{self._where(index)}: expected a Python callable, a ferrule.Callback or None for "
                            f"{ctype.cname}, got {type(value).__name__}")
        if kind == "pointer":
            return self._pointer_arg(index, ctype, value, keep)
        if kind in ("struct", "union"):
            if isinstance(value, (dict, list, tuple)):
                made = self._decls.new(ctype.cname + " *", value)
                keep.append(made)
                return made[0]
            raise TypeError(f"{self._where(index)}: expected a {ctype.cname} (Declarations.new(...)[0]) or a dict "
                            f"or list of its fields, got {type(value).__name__}")
        if kind == "primitive" and isinstance(value, bool) and ctype.cname not in ("_Bool", "bool"):
            raise TypeError(f"{self._where(index)}: expected a number for {ctype.cname}, got bool")
        return value

    def _address(self, index: int, ctype: Any, value: int) -> Any:
        if not 0 <= value <= _MAX_ADDRESS:
            raise ValueError(f"{self._where(index)}: {value} is not an address (0 to {_MAX_ADDRESS:#x}) for "
                             f"{ctype.cname}")
        return self._ffi.cast(ctype, value)

    def _pointer_arg(self, index: int, ctype: Any, value: Any, keep: list[Any], const: bool | None = None) -> Any:
        ffi = self._ffi
        if value is None:
            return ffi.NULL
        if isinstance(value, CFunction):
            return ffi.cast(ctype, value._pointer)
        if isinstance(value, int) and not isinstance(value, bool):
            return self._address(index, ctype, value)
        if isinstance(value, Owned):
            return ffi.cast(ctype, value.pointer)
        if isinstance(value, str):
            raise TypeError(f"{self._where(index)}: expected bytes for {ctype.cname}, got str: encode it, "
                            "e.g. text.encode()")
        try:
            view = memoryview(value)
        except TypeError:
            raise TypeError(f"{self._where(index)}: expected a buffer, a pointer from Declarations.new, an int "
                            f"address or None for {ctype.cname}, got {type(value).__name__}") from None
        if const is None:
            const = self._const[index] if index < len(self._const) else False
        if view.readonly and not const:
            raise TypeError(f"{self._where(index)}: {type(value).__name__} is immutable, and the function may write "
                            f"through this {ctype.cname} (the parameter is not const): pass a bytearray, an "
                            "array.array or a writable numpy array")
        if not view.c_contiguous:
            raise ValueError(f"{self._where(index)}: the buffer is not C-contiguous: pass a contiguous copy")
        item = ctype.item
        need = _element_size(ffi, item)
        if (0 < view.nbytes < need) or (view.nbytes == 0 and need and not const):
            raise ValueError(f"{self._where(index)}: the buffer holds {view.nbytes} byte{'s' if view.nbytes != 1 else ''}, "
                             f"less than one {item.cname} ({need} bytes) that {ctype.cname} points at: pass "
                             f"Declarations.new({item.cname + ' *'!r}) or a buffer of at least {need} bytes")
        if isinstance(value, bytes) and item.kind == "primitive" and item.cname == "char":
            copy = ffi.new("char[]", value)  # NUL-terminated, as C text needs
            keep.append(copy)
            return ffi.cast(ctype, copy)
        pointer = ffi.from_buffer(ctype, value, require_writable=not const)
        if need > 1 and view.nbytes and self._decls.address(pointer) % ffi.alignof(item):
            raise ValueError(f"{self._where(index)}: the buffer is not aligned for {item.cname}: pass a copy, "
                             "e.g. bytearray(x) or numpy.array(x)")
        return pointer

    def _extra(self, index: int, value: Any, keep: list[Any]) -> Any:
        """A variadic extra argument: C has no type for it, so the caller
        gives one: a cffi value (Declarations.cast) or a (type, value) pair."""
        if isinstance(value, self._ffi.CData):
            return self._promoted(value)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            text, raw = value
            try:
                ctype = self._ffi.typeof(text)
            except (cffi.CDefError, cffi.FFIError) as exc:
                raise ValueError(f"{self._where(index)}: C type {text!r} does not parse: {exc}") from None
            if ctype.kind == "pointer":
                pointee = text[: text.rfind("*")].rsplit("*", 1)[-1]  # what the last * points at
                converted = self._pointer_arg(index, ctype, raw, keep, const="const" in pointee.split())
                return self._ffi.cast(ctype, converted)
            value = self._ffi.cast(ctype, raw)
            return self._promoted(value)
        raise TypeError(f"{self._where(index)} is a variadic extra: give its C type with it, e.g. ('int', 5), "
                        "('double', 1.5) or ('const char *', b'text'), or a Declarations.cast value")

    def _promoted(self, value: Any) -> Any:
        """C's default promotions for a variadic argument: a float goes as a
        double, an integer narrower than int as an int (printf's %f reads a
        double, whatever the caller meant)."""
        ffi = self._ffi
        ctype = ffi.typeof(value)
        if ctype.kind == "primitive":
            if ctype.cname == "float":
                return ffi.cast("double", value)
            if ctype.cname in _PLAIN and _PLAIN[ctype.cname] is int and ffi.sizeof(ctype) < ffi.sizeof("int"):
                return ffi.cast("int", value)
        return value

    def _callback_failed(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:  # pragma: no cover - cffi always passes the instance
            exc = exc_type()
        assert exc is not None
        _report(exc.with_traceback(tb), f"a callback passed to {self.__name__}()")

    # -- the result

    def _python_result(self, result: Any) -> Any:
        ctype = self._result
        kind = ctype.kind
        ffi = self._ffi
        if kind == "void":
            return None
        if kind == "pointer":
            if result == ffi.NULL:
                return None
            if self._free is not None:
                return Owned(self._decls, result, self._free, f"the result of {self.__name__}()")
            item = ctype.item
            if item.kind == "primitive" and item.cname == "char":
                return bytes(ffi.string(result))  # borrowed text: copied, the library keeps its memory
            if item.kind in ("struct", "union") and item.fields is not None:
                return result  # a declared struct: its fields, in place
            return self._decls.address(result)
        if kind == "function":
            if result == ffi.NULL:
                return None
            return CFunction(self._decls, f"the result of {self.__name__}()", ctype.cname, result, ctype, None)
        return result  # numbers, and structs by value as cffi objects

    __call__ = _call_python


if _ccall is not None:
    _ccall.enable_vectorcall(CFunction)
