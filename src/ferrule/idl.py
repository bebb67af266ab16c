"""Declare the interfaces a host offers to plugins, once, in Python.

    from ferrule import idl

    @idl.struct
    class Size:
        width: idl.u32
        height: idl.u32

    @idl.interface("org.example.imaging.filter", revision=1)
    class ImageFilter:
        "Transforms an RGBA image in place."
        def apply(self, pixels: idl.mutbuf[idl.u8], size: Size) -> None: ...
        def describe(self) -> str: ...

Parameter types: ``bool``, the fixed-width numbers ``i8`` .. ``u64``, ``f32``,
``f64``, ``str``, ``bytes``, ``buf[T]`` / ``mutbuf[T]`` for a number T,
``Callable[[...], R]`` (a host function, plugin-implemented interfaces only),
``@idl.struct`` classes of numbers, bools, handles and structs, and
``idl.Handle`` subclasses (opaque 64-bit handles). Results: any of those but
buffers and callables, or ``None``.

Everything else comes from the declaration: ``ferrule generate`` writes the
Rust, C and Python code, and the host checks each plugin's implementation
against the declaration's layout fingerprint when it is offered. A published
revision is immutable: change the declaration, give it a new revision.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import hashlib
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from ._abi.signature import Signature, parse_signature
from ._abi.spec import ID_RE, MAX_METHODS
from ._abi.types import NUMBERS, TYPES

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - 3.10

    def dataclass_transform(**_kwargs: Any) -> Callable[[Any], Any]:
        return lambda f: f


__all__ = [
    "Handle",
    "InterfaceSpec",
    "MethodSpec",
    "StructSpec",
    "TypeSpec",
    "buf",
    "f32",
    "f64",
    "i8",
    "i16",
    "i32",
    "i64",
    "interface",
    "mutbuf",
    "spec",
    "struct",
    "u8",
    "u16",
    "u32",
    "u64",
]


class _Number:
    """The marker inside ``Annotated[int, ...]`` that names a number type."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"idl.{self.name}"


i8 = Annotated[int, _Number("i8")]
i16 = Annotated[int, _Number("i16")]
i32 = Annotated[int, _Number("i32")]
i64 = Annotated[int, _Number("i64")]
u8 = Annotated[int, _Number("u8")]
u16 = Annotated[int, _Number("u16")]
u32 = Annotated[int, _Number("u32")]
u64 = Annotated[int, _Number("u64")]
f32 = Annotated[float, _Number("f32")]
f64 = Annotated[float, _Number("f64")]

T = TypeVar("T")


class buf(Generic[T]):
    """``buf[T]``: a read-only array of T the caller owns, passed without a copy."""


class mutbuf(Generic[T]):
    """``mutbuf[T]``: a writable array of T the caller owns, passed without a copy."""


class Handle(int):
    """Base of opaque 64-bit handles: ``class Image(idl.Handle): "doc"``.

    The plugin decides what a handle means; the host only passes it on. A
    value of a handle type is an int, so mypy keeps handle types apart."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


# ------------------------------------------------------------------ the model


@dataclass(frozen=True)
class TypeSpec:
    """One parameter, result or field type of a declaration."""

    kind: str  # "number", "bool", "str", "bytes", "buf", "mutbuf", "struct", "handle", "fn"
    name: str = ""  # number name, struct or handle class name
    elem: str = ""  # buf/mutbuf: the number type
    struct: StructSpec | None = None
    handle: type[Handle] | None = None
    fn_params: tuple[TypeSpec, ...] = ()
    fn_result: TypeSpec | None = None

    @property
    def layout(self) -> str:
        """The type as the canonical layout writes it."""
        if self.kind in ("number",):
            return self.name
        if self.kind in ("buf", "mutbuf"):
            return f"{self.kind}[{self.elem}]"
        if self.kind == "struct":
            return f"struct {self.name}"
        if self.kind == "handle":
            return f"handle {self.name}"
        if self.kind == "fn":
            result = f" -> {self.fn_result.layout}" if self.fn_result else ""
            return f"fn({', '.join(p.layout for p in self.fn_params)}){result}"
        return self.kind

    @property
    def abi(self) -> str:
        """How the value travels in the call layer (a signature type)."""
        if self.kind == "struct":
            return "bytes"
        if self.kind == "handle":
            return "u64"
        if self.kind == "fn":
            result = f" -> {self.fn_result.abi}" if self.fn_result else ""
            return f"fn({', '.join(p.abi for p in self.fn_params)}){result}"
        return self.layout

    @property
    def size(self) -> int:
        if self.kind == "number":
            return TYPES[self.name].size
        if self.kind == "bool":
            return 1
        if self.kind == "handle":
            return 8
        if self.kind == "struct":
            assert self.struct is not None
            return self.struct.size
        raise ValueError(f"{self.layout} has no fixed size")

    @property
    def align(self) -> int:
        if self.kind == "struct":
            assert self.struct is not None
            return self.struct.align
        return self.size


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: TypeSpec
    offset: int


@dataclass(frozen=True)
class StructSpec:
    """An ``@idl.struct``: C layout with natural alignment, no packing."""

    name: str
    doc: str
    fields: tuple[FieldSpec, ...]
    size: int
    align: int
    cls: type = field(compare=False, repr=False)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: TypeSpec


@dataclass(frozen=True)
class MethodSpec:
    name: str
    doc: str
    index: int
    params: tuple[ParamSpec, ...]
    result: TypeSpec | None

    @property
    def signature(self) -> Signature:
        """The call-layer signature of the vtable entry. A struct travels as
        bytes holding its C layout; a struct result is written by the callee
        to one extra trailing ``out: mutbuf[u8]`` of exactly its size."""
        params = [f"{p.name}: {p.type.abi}" for p in self.params]
        result = ""
        if self.result is not None and self.result.kind == "struct":
            params.append("out: mutbuf[u8]")
        elif self.result is not None:
            result = f" -> {self.result.abi}"
        return parse_signature(f"({', '.join(params)}){result}")


@dataclass(frozen=True)
class InterfaceSpec:
    """Everything ``ferrule generate`` and the host need about one interface
    revision. ``layout`` is the canonical text; ``fingerprint`` its hash."""

    id: str
    revision: int
    name: str  # the declaring class's name
    doc: str
    thread_safe: bool
    methods: tuple[MethodSpec, ...]
    structs: tuple[StructSpec, ...]  # every struct used, dependencies first
    handles: tuple[type[Handle], ...]
    layout: str
    fingerprint: int
    cls: type = field(compare=False, repr=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.revision)

    def method(self, name: str) -> MethodSpec:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)


# ------------------------------------------------------------------ decorators



@dataclass_transform(frozen_default=True)
def struct(cls: type[T]) -> type[T]:
    """Declare a struct: a frozen dataclass whose fields are numbers, bools,
    handles or other structs. It travels in C layout (natural alignment)."""
    made = dataclasses.dataclass(frozen=True)(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: list[FieldSpec] = []
    offset = 0
    align = 1
    for f in dataclasses.fields(made):  # type: ignore[arg-type]
        where = f"struct {cls.__name__} field {f.name!r}"
        t = _type_of(hints[f.name], where)
        if t.kind not in ("number", "bool", "handle", "struct"):
            raise TypeError(f"{where} is {t.layout}: struct fields must be numbers, bool, handles or structs")
        offset = -(-offset // t.align) * t.align
        fields.append(FieldSpec(f.name, t, offset))
        offset += t.size
        align = max(align, t.align)
    if not fields:
        raise TypeError(f"struct {cls.__name__} has no fields")
    size = -(-offset // align) * align
    made.__ferrule_struct__ = StructSpec(cls.__name__, _doc(cls), tuple(fields), size, align, made)  # type: ignore[attr-defined]
    return made


def interface(id: str, *, revision: int, thread_safe: bool = False) -> Callable[[type[T]], type[T]]:
    """Declare an interface revision from a class whose methods carry type
    annotations (their bodies are ignored; ``...`` is usual).

    ``id`` is reverse-DNS and never changes meaning; ``revision`` counts from
    1. ``thread_safe`` says that one instance may be called from several
    threads at once; otherwise the host serialises calls per instance.
    """
    if not ID_RE.fullmatch(id):
        raise ValueError(f"interface id {id!r} is not reverse-DNS (like 'org.example.text.transform')")
    if isinstance(revision, bool) or not isinstance(revision, int) or not 1 <= revision < 1 << 32:
        raise ValueError(f"interface {id!r}: revision must be an int from 1, got {revision!r}")

    def declare(cls: type[T]) -> type[T]:
        cls.__ferrule_interface__ = _build(cls, id, revision, thread_safe)  # type: ignore[attr-defined]
        return cls

    return declare


def spec(declaration: Any) -> InterfaceSpec:
    """The InterfaceSpec of an ``@idl.interface`` class, of a generated proxy
    class, or an InterfaceSpec itself."""
    if isinstance(declaration, InterfaceSpec):
        return declaration
    found = getattr(declaration, "__ferrule_interface__", None)
    if isinstance(found, InterfaceSpec):
        return found
    raise TypeError(f"{declaration!r} is not an interface: declare it with @ferrule.idl.interface(...)")


def _doc(obj: object) -> str:
    import inspect

    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else ""


# The public attributes of ferrule.Instance (a test holds the two together).
RESERVED_METHOD_NAMES = frozenset({"aio", "close", "closed", "implementation"})


def _build(cls: type, id: str, revision: int, thread_safe: bool) -> InterfaceSpec:
    methods: list[MethodSpec] = []
    for name, member in vars(cls).items():
        if name.startswith("_") or not callable(member):
            continue
        where = f"interface {cls.__name__} method {name!r}"
        if name in RESERVED_METHOD_NAMES:
            raise TypeError(f"{where}: {name!r} is an attribute of every instance (ferrule.Instance), which a method "
                            "of that name would hide: rename the method")
        hints = typing.get_type_hints(member, include_extras=True)
        import inspect

        params: list[ParamSpec] = []
        for i, arg in enumerate(inspect.signature(member).parameters.values()):
            if i == 0:
                continue  # self
            if arg.kind not in (arg.POSITIONAL_ONLY, arg.POSITIONAL_OR_KEYWORD):
                raise TypeError(f"{where}: parameter {arg.name!r} must be a plain positional parameter")
            if arg.name not in hints:
                raise TypeError(f"{where}: parameter {arg.name!r} has no type annotation")
            if arg.name == "out":
                raise TypeError(f"{where}: 'out' is reserved for struct results, rename the parameter")
            params.append(ParamSpec(arg.name, _type_of(hints[arg.name], f"{where} parameter {arg.name!r}")))
        if "return" not in hints:
            raise TypeError(f"{where} has no return annotation: write '-> None' if it returns nothing")
        result = None if hints["return"] is type(None) else _type_of(hints["return"], f"{where} result")
        if result is not None and result.kind in ("buf", "mutbuf", "fn"):
            raise TypeError(f"{where} returns {result.layout}: results are numbers, bool, str, bytes, structs or handles")
        methods.append(MethodSpec(name, _doc(member), len(methods), tuple(params), result))
    if not methods:
        raise TypeError(f"interface {cls.__name__} ({id}) declares no methods")
    if len(methods) > MAX_METHODS:
        raise TypeError(f"interface {cls.__name__} ({id}) declares {len(methods)} methods, at most {MAX_METHODS}")
    for m in methods:
        m.signature  # noqa: B018 - refuses what the call layer cannot carry
    structs: list[StructSpec] = []
    handles: list[type[Handle]] = []

    def collect(t: TypeSpec) -> None:
        if t.kind == "struct":
            assert t.struct is not None
            for f in t.struct.fields:
                collect(f.type)
            if t.struct not in structs:
                structs.append(t.struct)
        elif t.kind == "handle":
            assert t.handle is not None
            if t.handle not in handles:
                handles.append(t.handle)
        for p in t.fn_params:
            collect(p)

    for m in methods:
        for p in m.params:
            collect(p.type)
        if m.result is not None:
            collect(m.result)
    names = [s.name for s in structs] + [h.__name__ for h in handles]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise TypeError(f"interface {cls.__name__} uses two types named {sorted(clash)[0]!r}")
    text = canonical_layout(id, revision, thread_safe, methods, structs, handles)
    fingerprint = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return InterfaceSpec(id, revision, cls.__name__, _doc(cls), thread_safe, tuple(methods), tuple(structs),
                         tuple(handles), text, fingerprint, cls)


def canonical_layout(id: str, revision: int, thread_safe: bool, methods: list[MethodSpec],
                     structs: list[StructSpec], handles: list[type[Handle]]) -> str:
    """The text a fingerprint hashes: one line per fact that binary
    compatibility depends on (parameter names and docs are not among them)."""
    lines = ["ferrule-layout 1", f"interface {id}", f"revision {revision}",
             f"thread-safe {'yes' if thread_safe else 'no'}"]
    for h in handles:
        lines.append(f"handle {h.__name__}: u64")
    for s in structs:
        lines.append(f"struct {s.name}: size {s.size}, align {s.align}")
        lines.extend(f"  field {f.name}: {f.type.layout} at {f.offset}" for f in s.fields)
    for m in methods:
        result = m.result.layout if m.result else "none"
        lines.append(f"method {m.index} {m.name}({', '.join(p.type.layout for p in m.params)}) -> {result}")
    return "\n".join(lines) + "\n"


def _type_of(hint: Any, where: str) -> TypeSpec:
    """The TypeSpec of an annotation, or a TypeError that says what fits."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, _Number):
                return TypeSpec("number", extra.name)
        return _type_of(base, where)
    if hint is bool:
        return TypeSpec("bool")
    if hint is str:
        return TypeSpec("str")
    if hint is bytes:
        return TypeSpec("bytes")
    if origin in (buf, mutbuf):
        (arg,) = typing.get_args(hint)
        elem = _type_of(arg, where)
        if elem.kind != "number":
            raise TypeError(f"{where}: {origin.__name__}[...] takes a number type like idl.u8, got {arg!r}")
        return TypeSpec(origin.__name__, elem=elem.name)
    if origin is collections.abc.Callable:
        args, result = typing.get_args(hint)
        params = tuple(_type_of(a, where) for a in args)
        ret = None if result is None or result is type(None) else _type_of(result, where)
        for t in params + ((ret,) if ret else ()):
            if t.kind not in ("number", "bool", "str", "bytes"):
                raise TypeError(f"{where}: a callable takes and returns numbers, bool, str or bytes, not {t.layout}")
        return TypeSpec("fn", fn_params=params, fn_result=ret)
    if isinstance(hint, type):
        found = getattr(hint, "__ferrule_struct__", None)
        if isinstance(found, StructSpec) and found.cls is hint:
            return TypeSpec("struct", hint.__name__, struct=found)
        if issubclass(hint, Handle) and hint is not Handle:
            return TypeSpec("handle", hint.__name__, handle=hint)
        if hint in (int, float):
            raise TypeError(f"{where} is {hint.__name__}: say its width, e.g. idl.i64 or idl.f64")
    raise TypeError(
        f"{where} has type {hint!r}, which an interface cannot carry: use bool, {', '.join('idl.' + n for n in NUMBERS)}, "
        "str, bytes, idl.buf[T], idl.mutbuf[T], Callable[..., R], an @idl.struct or an idl.Handle subclass"
    )


def first_difference(expected: str, found: str) -> str:
    """The first differing line of two canonical layouts, for error messages."""
    a, b = expected.splitlines(), found.splitlines()
    for i in range(max(len(a), len(b))):
        left = a[i] if i < len(a) else "(end)"
        right = b[i] if i < len(b) else "(end)"
        if left != right:
            return f"line {i + 1}: host has {left!r}, plugin has {right!r}"
    return "the texts are equal, the fingerprints are not: the plugin's fingerprint does not match its own layout"
