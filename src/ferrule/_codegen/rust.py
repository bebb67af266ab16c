"""The Rust module ``ferrule generate`` writes for interface declarations.

One file per declaration module, depending only on the ``ferrule-sdk`` crate.
The machinery it calls (thunks, struct layout, argument encoding) is the
crate's hidden ``ferrule_sdk::__private::iface``, imported as ``iface``; the
items a plugin author also sees (``HostFn``, ``HostRef``, ``Object``,
``CallError``, ``host()``, ``abi``) are named by their public paths. A plugin
includes it as a module, e.g. ``#[path = "generated/api.rs"] mod api;``. It
holds:

- the structs of the declarations (``#[repr(C)]``, with compile-time checks
  of the declared layout) and the handle newtypes (``#[repr(transparent)]``
  over ``u64``), shared by all interfaces;
- per interface revision a module named after the declaring class in snake
  case (``Store2`` -> ``store2``) with:
  - ``ID``, ``REVISION``, ``FINGERPRINT``, ``LAYOUT`` and ``SPEC`` (all four
    plus the thread contract);
  - the trait to implement, named like the class. Methods take ``&mut self``
    (the host serialises calls per instance) or, for a thread-safe interface,
    ``&self`` (the trait then requires ``Sync``). Each returns
    ``Result<R, Self::Error>``; ``Self::Error: Display`` is the failure
    message. ``create() -> Result<Self, Self::Error>`` makes an instance;
    ``Drop`` is the destructor;
  - ``Vtable``, the ``#[repr(C)]`` method table, and the private thunks;
  - ``export::<T>(name, doc)``, an item of ``plugin!``'s ``interfaces: [...]``;
  - ``Client``, a typed caller through the host (``Client::query()``), whose
    methods return ``Result<R, ferrule_sdk::CallError>``. Methods that take a
    host function are left out: only the Python host can pass one.

Rust types: numbers and ``bool`` as themselves; parameters ``str`` ->
``&str``, ``bytes`` -> ``&[u8]``, ``buf[T]`` -> ``&[T]``, ``mutbuf[T]`` ->
``&mut [T]``, a struct by value, a handle as its newtype, ``fn(..)`` ->
``ferrule_sdk::HostFn<'_, fn(..) -> R>``; results ``str`` -> ``String``,
``bytes`` -> ``Vec<u8>``, none -> ``()``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .._abi.types import BASE, CODES, TYPES
from ..idl import InterfaceSpec, MethodSpec, StructSpec, TypeSpec

__all__ = ["ident", "render", "snake", "trait_method"]

# Keywords of every edition; `r#` cannot be used for the last group.
_KEYWORDS = frozenset("""
    as break const continue else enum extern false fn for if impl in let loop match mod move mut pub ref
    return static struct trait true type unsafe use where while async await dyn abstract become box do
    final macro override priv typeof unsized virtual yield try gen union
""".split())
_NOT_RAW = frozenset({"self", "Self", "super", "crate", "_"})

# Locals of the generated thunks and client methods: parameters with these
# names get a trailing underscore.
_LOCALS = frozenset({"this", "slots", "args", "out", "host", "ret"})

# Names the generated items take in each interface module.
_RESERVED_METHODS = frozenset({"create", "query", "query_in", "object", "of", "new", "into_inner"})
_RESERVED_TYPES = frozenset({"C", "Client", "Vtable", "Spec", "ID", "REVISION", "FINGERPRINT", "LAYOUT", "SPEC"})

_HOSTFN_TYPES = {"str": "String", "bytes": "Vec<u8>"}


def snake(name: str) -> str:
    """``Store2`` -> ``store2``, ``ImageFilter`` -> ``image_filter``, ``HTTPServer`` -> ``http_server``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _ident(name: str) -> str:
    """A Rust identifier for a declared name (``type`` -> ``r#type``)."""
    if name in _NOT_RAW:
        return name + "_"
    if name in _KEYWORDS:
        return "r#" + name
    return name


def ident(name: str) -> str:
    """The Rust name of a declared method or field (``type`` -> ``r#type``)."""
    return _ident(name)


def _param(name: str) -> str:
    """A Rust parameter / local name that clashes with no generated local."""
    if name in _LOCALS or name in _NOT_RAW:
        return name + "_"
    return _ident(name)


def _str(text: str) -> str:
    """A Rust string literal."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _doc(text: str, indent: str) -> list[str]:
    """``///`` lines for a docstring (none if empty)."""
    if not text:
        return []
    return [f"{indent}///{' ' + line if line else ''}".rstrip() for line in text.splitlines()]


def _hex(n: int) -> str:
    digits = f"{n:016x}"
    return "0x" + "_".join(digits[i:i + 4] for i in range(0, 16, 4))


# ------------------------------------------------------------------ types


def _param_type(t: TypeSpec, types: str = "") -> str:
    """The Rust type of a parameter in the trait and the client: the ABI
    table's Rust spelling, with T an array's element type; ``types`` is the
    path of the bindings before a struct or handle name (``api::``)."""
    if t.kind in ("number", "bool", "str", "bytes"):
        return TYPES[t.name if t.kind == "number" else t.kind].rust
    if t.kind in ("buf", "mutbuf"):
        return BASE[CODES.index(t.kind)].rust.replace("T", t.elem)
    if t.kind in ("struct", "handle"):
        return types + t.name
    if t.kind == "fn":
        params = ", ".join(_HOSTFN_TYPES.get(p.layout, p.layout) for p in t.fn_params)
        result = f" -> {_HOSTFN_TYPES.get(t.fn_result.layout, t.fn_result.layout)}" if t.fn_result else ""
        return f"ferrule_sdk::HostFn<'_, fn({params}){result}>"
    raise ValueError(f"no Rust type for {t.layout}")


def _result_type(t: TypeSpec | None, types: str = "") -> str:
    if t is None:
        return "()"
    if t.kind == "str":
        return "String"
    if t.kind == "bytes":
        return "Vec<u8>"
    return _param_type(t, types)


def trait_method(spec: InterfaceSpec, m: MethodSpec, types: str = "", error: str = "Self::Error",
                 unused: bool = False) -> str:
    """The signature of method ``m`` in ``spec``'s trait, ``fn name(&mut self,
    a: T) -> Result<R, E>``, as the trait declares it and an impl writes it:
    ``types`` is the path of the bindings for struct and handle names
    (``api::``), ``error`` the error type, and ``unused`` starts the
    parameter names with ``_`` (a stub's, which uses none)."""
    receiver = "&self" if spec.thread_safe else "&mut self"
    params = []
    for p in m.params:
        name = _param(p.name)
        name = "_" + name.removeprefix("r#") if unused else name
        params.append(f"{name}: {_param_type(p.type, types)}")
    return f"fn {_ident(m.name)}({', '.join([receiver] + params)}) -> Result<{_result_type(m.result, types)}, {error}>"


def _borrow(t: TypeSpec) -> str:
    """The ``ArgBorrow`` of a parameter's slot."""
    if t.kind in ("str", "bytes", "struct"):
        return "iface::ArgBorrow::Bytes"
    if t.kind in ("buf", "mutbuf"):
        size = TYPES[t.elem].size
        kind = "Buf" if t.kind == "buf" else "MutBuf"
        return f"iface::ArgBorrow::{kind} {{ elem_size: {size} }}"
    return "iface::ArgBorrow::None"


def _decode(t: TypeSpec, slot: str, name: str) -> str:
    """The thunk expression that decodes one argument (before ``?``)."""
    if t.kind == "struct":
        return f"iface::struct_arg::<{t.name}>({slot}, {_str(name)})"
    if t.kind == "handle":
        return f"iface::arg::<u64>({slot}, {_str(name)}).map({t.name})"
    return f"iface::arg::<{_param_type(t)}>({slot}, {_str(name)})"


def _encode(t: TypeSpec, name: str) -> tuple[list[str], str]:
    """Client: statements that prepare an argument, and its slot expression."""
    if t.kind in ("number", "bool"):
        return [], f"iface::scalar({name})"
    if t.kind == "handle":
        return [], f"iface::scalar({name}.0)"
    if t.kind == "str":
        return [f"let {name} = iface::StrArg::new({name});"], f"{name}.value()"
    if t.kind == "bytes":
        return [], f"iface::bytes({name})"
    if t.kind == "buf":
        return [], f"iface::buf({name})"
    if t.kind == "mutbuf":
        return [], f"iface::mutbuf({name})"
    if t.kind == "struct":
        return [
            f"let mut {name}_bytes = [0u8; <{t.name} as iface::Struct>::SIZE];",
            f"iface::Struct::write(&{name}, &mut {name}_bytes);",
        ], f"iface::bytes(&{name}_bytes)"
    raise ValueError(f"a client cannot pass {t.layout}")


# ------------------------------------------------------------------ rendering


def _collect_types(specs: Sequence[InterfaceSpec]) -> tuple[list[StructSpec], list[tuple[str, str]]]:
    """Every struct and handle of ``specs`` once, in first-use order; two
    different types of one name are refused."""
    structs: dict[str, StructSpec] = {}
    handles: dict[str, tuple[str, str]] = {}
    for s in specs:
        for st in s.structs:
            seen = structs.get(st.name)
            if seen is not None and (seen.fields, seen.size, seen.align) != (st.fields, st.size, st.align):
                raise ValueError(f"two different structs are named {st.name!r}: rename one")
            structs.setdefault(st.name, st)
        for h in s.handles:
            entry = (h.__name__, _handle_doc(h))
            seen_h = handles.get(h.__name__)
            if seen_h is not None and seen_h != entry:
                raise ValueError(f"two different handles are named {h.__name__!r}: rename one")
            handles.setdefault(h.__name__, entry)
    clash = set(structs) & set(handles)
    if clash:
        raise ValueError(f"a struct and a handle are both named {sorted(clash)[0]!r}")
    return list(structs.values()), list(handles.values())


def _handle_doc(h: type) -> str:
    import inspect

    doc = h.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if doc else ""


def _render_struct(st: StructSpec) -> list[str]:
    name = st.name
    lines = _doc(st.doc, "")
    lines += ["#[repr(C)]", "#[derive(Clone, Copy, Debug, Default, PartialEq)]", f"pub struct {name} {{"]
    for f in st.fields:
        lines.append(f"    pub {_ident(f.name)}: {_param_type(f.type)},")
    lines += ["}", ""]
    lines += [
        f"impl iface::Struct for {name} {{",
        f"    const NAME: &'static str = {_str(name)};",
        f"    const SIZE: usize = {st.size};",
        "",
        "    fn read(bytes: &[u8]) -> Result<Self, String> {",
        f"        Ok({name} {{",
    ]
    for f in st.fields:
        lines.append(f"            {_ident(f.name)}: iface::Field::read_at(bytes, {f.offset})?,")
    lines += ["        })", "    }", "", "    fn write(&self, bytes: &mut [u8]) {"]
    for f in st.fields:
        lines.append(f"        iface::Field::write_at(&self.{_ident(f.name)}, bytes, {f.offset});")
    lines += ["    }", "}", ""]
    lines += [
        "// The layout the declaration gives, checked at compile time.",
        "const _: () = {",
        f"    assert!(core::mem::size_of::<{name}>() == {st.size});",
        f"    assert!(core::mem::align_of::<{name}>() == {st.align});",
    ]
    for f in st.fields:
        lines.append(f"    assert!(core::mem::offset_of!({name}, {_ident(f.name)}) == {f.offset});")
    lines += ["};", ""]
    return lines


def _render_handle(name: str, doc: str) -> list[str]:
    lines = _doc(doc, "")
    lines += [
        "#[repr(transparent)]",
        "#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]",
        f"pub struct {name}(pub u64);",
        "",
        f"impl iface::Field for {name} {{",
        "    fn read_at(bytes: &[u8], offset: usize) -> Result<Self, String> {",
        f"        <u64 as iface::Field>::read_at(bytes, offset).map({name})",
        "    }",
        "",
        "    fn write_at(&self, bytes: &mut [u8], offset: usize) {",
        "        iface::Field::write_at(&self.0, bytes, offset);",
        "    }",
        "}",
        "",
    ]
    return lines


def _check_names(spec: InterfaceSpec) -> None:
    where = f"interface {spec.name} ({spec.id}/{spec.revision})"
    for m in spec.methods:
        if m.name in _RESERVED_METHODS:
            raise ValueError(f"{where}: method {m.name!r} clashes with a generated Rust name; rename it")
        if m.name in _NOT_RAW:
            raise ValueError(f"{where}: method {m.name!r} cannot be a Rust method name; rename it")
    used = {st.name for st in spec.structs} | {h.__name__ for h in spec.handles}
    for n in sorted(used | {spec.name}):
        if n in _RESERVED_TYPES:
            raise ValueError(f"{where}: the name {n!r} clashes with a generated Rust name; rename it")
    if spec.name in used:
        raise ValueError(f"{where}: a struct or handle has the interface's own name {spec.name!r}")


def _signature_comment(m: MethodSpec) -> str:
    return f"// {m.name}{m.signature}"


def _render_thunk(spec: InterfaceSpec, m: MethodSpec) -> list[str]:
    trait = spec.name
    n_slots = len(m.params) + (1 if m.result is not None and m.result.kind == "struct" else 0)
    entries = [f"({_str(p.name)}, {_borrow(p.type)})" for p in m.params]
    if n_slots > len(m.params):
        entries.append('("out", iface::ArgBorrow::MutBuf { elem_size: 1 })')
    has_ret = "true" if m.result is not None and m.result.kind != "struct" else "false"
    runner, this_type = ("run_shared", "&T") if spec.thread_safe else ("run_exclusive", "&mut T")
    slots = "slots" if n_slots else "_slots"
    lines = [
        f"    {_signature_comment(m)}",
        f"    pub(super) unsafe extern \"C\" fn {_ident(m.name)}<T: {trait}>(",
        "        host: *const Host,",
        "        this: *mut c_void,",
        "        args: *const Value,",
        "        ret: *mut Value,",
        "    ) -> i32 {",
    ]
    spec_line = f"        const SPEC: iface::MethodSpec<{n_slots}> = iface::MethodSpec::new([{', '.join(entries)}], {has_ret});"
    if len(spec_line) <= 110:
        lines.append(spec_line)
    else:
        lines.append(f"        const SPEC: iface::MethodSpec<{n_slots}> = iface::MethodSpec::new(")
        lines.append("            [")
        lines += [f"                {e}," for e in entries]
        lines.append("            ],")
        lines.append(f"            {has_ret},")
        lines.append("        );")
    lines += [
        "        // SAFETY: the host calls the method as ferrule_call_fn says, on an",
        "        // instance that create made, with slots as SPEC describes.",
        "        unsafe {",
        f"            iface::{runner}(&SPEC, host, this, args, ret, |this: {this_type}, {slots}| {{",
    ]
    call_args = []
    for i, p in enumerate(m.params):
        local = _param(p.name)
        lines.append(f"                let {local} = {_decode(p.type, f'&slots[{i}]', p.name)}?;")
        call_args.append(local)
    call = f"this.{_ident(m.name)}({', '.join(call_args)})"
    if m.result is not None and m.result.kind == "struct":
        lines.append(f"                let out = iface::out_arg::<{m.result.name}>(&slots[{len(m.params)}])?;")
        lines.append(f"                iface::struct_ret({call}, out)")
    elif m.result is not None and m.result.kind == "handle":
        lines.append(f"                iface::ret({call}.map(|handle| handle.0))")
    else:
        lines.append(f"                iface::ret({call})")
    lines += ["            })", "        }", "    }", ""]
    return lines


def _render_client_method(spec: InterfaceSpec, m: MethodSpec) -> list[str]:
    if any(p.type.kind == "fn" for p in m.params):
        return [
            f"    // No `{m.name}`: it takes a host function, which only the Python host can pass.",
            "",
        ]
    receiver = "&self" if spec.thread_safe else "&mut self"
    params = [f"{_param(p.name)}: {_param_type(p.type)}" for p in m.params]
    result = _result_type(m.result)
    lines = _doc(m.doc, "    ")
    lines.append(
        f"    pub fn {_ident(m.name)}({', '.join([receiver] + params)}) -> Result<{result}, C::Error> {{"
    )
    slots = []
    for p in m.params:
        prep, slot = _encode(p.type, _param(p.name))
        lines += [f"        {s}" for s in prep]
        slots.append(slot)
    struct_result = m.result is not None and m.result.kind == "struct"
    if struct_result:
        assert m.result is not None
        lines.append(f"        let mut out = [0u8; <{m.result.name} as iface::Struct>::SIZE];")
        slots.append("iface::mutbuf(&mut out)")
    args = "&args" if slots else "&[]"
    if slots:
        lines.append(f"        let args = [{', '.join(slots)}];")
    lines.append(f"        // SAFETY: the slots match {m.name}{m.signature}.")
    index = m.index
    if struct_result:
        assert m.result is not None
        lines.append(f"        unsafe {{ iface::call::<C, ()>(&self.object, {index}, {args}) }}?;")
        lines.append("        Ok(iface::struct_result(&out)?)")
    elif m.result is not None and m.result.kind == "handle":
        lines.append(f"        unsafe {{ iface::call::<C, u64>(&self.object, {index}, {args}) }}.map({m.result.name})")
    else:
        lines.append(f"        unsafe {{ iface::call(&self.object, {index}, {args}) }}")
    lines += ["    }", ""]
    return lines


def _direct_types(spec: InterfaceSpec) -> list[str]:
    """Structs and handles that a method of ``spec`` names itself (not only
    inside another struct), in declaration order."""
    named = set()
    for m in spec.methods:
        for t in [p.type for p in m.params] + ([m.result] if m.result else []):
            if t.kind in ("struct", "handle"):
                named.add(t.name)
    order = [st.name for st in spec.structs] + [h.__name__ for h in spec.handles]
    return [n for n in order if n in named]


def _render_interface(spec: InterfaceSpec, host: bool = False) -> list[str]:
    mod = snake(spec.name)
    trait = spec.name
    used = _direct_types(spec)
    contract = (
        ["Thread-safe: the host may call one instance from several threads at", "once, so methods take `&self`."]
        if spec.thread_safe
        else ["Not thread-safe: the host serialises the calls into each instance, so", "methods take `&mut self`."]
    )
    lines = _doc(spec.doc, "")
    if spec.doc:
        lines.append("///")
    lines += [f"/// `{spec.id}` revision {spec.revision}.", f"pub mod {mod} {{"]
    lines += ["    use ferrule_sdk::__private::iface;", "    use ferrule_sdk::abi::CallFn;", ""]
    if used:
        lines += [f"    use super::{{{', '.join(used)}}};" if len(used) > 1 else f"    use super::{used[0]};", ""]
    lines += [
        "    /// The interface id.",
        f"    pub const ID: &str = {_str(spec.id)};",
        "    /// The revision of the interface these bindings implement and call.",
        f"    pub const REVISION: u32 = {spec.revision};",
        "    /// The fingerprint of [`LAYOUT`]; the host refuses an implementation or",
        "    /// query whose fingerprint differs from its declaration's.",
        f"    pub const FINGERPRINT: u64 = {_hex(spec.fingerprint)};",
        "    /// The canonical layout text of this revision.",
        "    pub const LAYOUT: &str = concat!(",
    ]
    lines += [f"        {_str(line + chr(10))}," for line in spec.layout.splitlines()]
    lines += [
        "    );",
        "    /// Everything above, the thread contract and the methods' call-layer signatures.",
        "    pub const SPEC: iface::Spec = iface::Spec {",
        f"        name: {_str(spec.name)},",
        "        id: ID,",
        "        revision: REVISION,",
        "        fingerprint: FINGERPRINT,",
        "        layout: LAYOUT,",
        f"        thread_safe: {'true' if spec.thread_safe else 'false'},",
        "        methods: &[",
        *[f"            ({_str(m.name)}, {_str(m.signature.text)})," for m in spec.methods],
        "        ],",
        "    };",
        "",
    ]
    # The trait.
    lines += _doc(spec.doc, "    ")
    if spec.doc:
        lines.append("    ///")
    lines += [
        f"    /// Implement it for a type and list `{mod}::export::<Type>(\"name\", \"doc\")` in",
        "    /// `plugin!`'s `interfaces: [...]`. The host makes instances with `create` and drops",
        "    /// them when it destroys them (put cleanup in `Drop`).",
        f"    /// {contract[0]}",
        f"    /// {contract[1]}",
        "    ///",
        "    /// `Err(e)` fails a call (or the creation) with `e.to_string()` as the message; a panic",
        "    /// fails it with `FERRULE_PANIC`.",
    ]
    bounds = "Sized + Send + Sync + 'static" if spec.thread_safe else "Sized + Send + 'static"
    lines += [
        f"    pub trait {trait}: {bounds} {{",
        "        /// The error of `create` and of every method; its `to_string()` is the message.",
        "        type Error: core::fmt::Display;",
        "",
        "        /// Make an instance (the host asked for one).",
        "        fn create() -> Result<Self, Self::Error>;",
    ]
    for m in spec.methods:
        lines.append("")
        lines += _doc(m.doc, "        ")
        lines.append(f"        {trait_method(spec, m)};")
    lines += ["    }", ""]
    # The vtable.
    lines += [
        "    /// The method table (`ferrule_interface.methods`): one thunk per method, in",
        "    /// declaration order.",
        "    #[repr(C)]",
        "    #[derive(Clone, Copy)]",
        "    pub struct Vtable {",
    ]
    for m in spec.methods:
        lines.append(f"        pub {_ident(m.name)}: CallFn,")
    lines += [
        "    }",
        "",
        "    // SAFETY: #[repr(C)] with CallFn fields only.",
        "    unsafe impl iface::Vtable for Vtable {}",
        "",
        "    impl Vtable {",
        "        /// The thunks that call implementation `T`.",
        f"        pub fn of<T: {trait}>() -> Vtable {{",
        "            Vtable {",
    ]
    for m in spec.methods:
        lines.append(f"                {_ident(m.name)}: thunk::{_ident(m.name)}::<T>,")
    lines += [
        "            }",
        "        }",
        "    }",
        "",
        f"    /// Implementation `T` of {trait}, named `name` (unique in the plugin among the",
        "    /// implementations of [`ID`]), with a description `doc` (`\"\"` for none): an item of",
        "    /// `plugin!`'s `interfaces: [...]`.",
        f"    pub fn export<T: {trait}>(name: &'static str, doc: &'static str) -> iface::Export {{",
        "        iface::Export::new(&SPEC, name, doc, Vtable::of::<T>(), thunk::create::<T>, iface::destroy::<T>)",
        "    }",
        "",
        f"    /// `value` as an implementation of {trait} that a Rust host provides as a service",
        "    /// (ferrule-host's `Service::new`).",
        f"    pub fn provided<T: {trait}>(value: T) -> iface::Provided {{",
        "        // SAFETY: Vtable::of::<T>() holds the thunks of T, for this interface.",
        "        unsafe { iface::Provided::new(&SPEC, Vtable::of::<T>(), value) }",
        "    }",
        "",
    ]
    # The thunks.
    lines += [
        "    /// The `extern \"C\"` side of an implementation.",
        "    mod thunk {",
        "        use core::ffi::c_void;",
        "",
        "        use ferrule_sdk::__private::iface;",
        "        use ferrule_sdk::abi::{Host, Value};",
        "",
        f"        use super::{trait};",
    ]
    if used:
        lines.append(f"        use super::{{{', '.join(used)}}};" if len(used) > 1 else f"        use super::{used[0]};")
    lines += [
        "",
        f"        pub(super) unsafe extern \"C\" fn create<T: {trait}>(",
        "            host: *const Host,",
        "            _plugin_state: *mut c_void,",
        "            this: *mut *mut c_void,",
        "        ) -> i32 {",
        "            // SAFETY: the host calls it as ferrule_interface.create says.",
        f"            unsafe {{ iface::run_create(host, this, <T as {trait}>::create) }}",
        "        }",
        "",
    ]
    for m in spec.methods:
        lines += ["    " + line if line else "" for line in _render_thunk(spec, m)]
    if lines[-1] == "":
        lines.pop()
    lines += ["    }", ""]
    # The client.
    lines += [
        f"    /// A caller of {trait}: in a plugin, an object the host lends (a service of the",
        "    /// host, or an instance of another plugin's implementation), called through the",
        "    /// host; dropping it gives it back, before the plugin shuts down. In a Rust host,",
        "    /// an instance that ferrule-host made (`Client::new(plugin.create(&SPEC, None)?)`).",
        *([] if spec.thread_safe else ["    /// Not thread-safe: methods take `&mut self`."]),
        "    #[derive(Debug)]",
        "    pub struct Client<C: ferrule_sdk::Callee = ferrule_sdk::Object> {",
        "        object: C,",
        "    }",
        "",
        "    impl<C: ferrule_sdk::Callee> Client<C> {",
        "        /// A client of `callee`, or `Err(callee)` when its implementation has another",
        "        /// layout fingerprint than [`FINGERPRINT`].",
        "        pub fn new(callee: C) -> Result<Client<C>, C> {",
        "            if callee.fingerprint() == FINGERPRINT {",
        "                Ok(Client { object: callee })",
        "            } else {",
        "                Err(callee)",
        "            }",
        "        }",
        "",
        "        /// The callee behind the client.",
        "        pub fn object(&self) -> &C {",
        "            &self.object",
        "        }",
        "",
        "        /// The callee, given back.",
        "        pub fn into_inner(self) -> C {",
        "            self.object",
        "        }",
        "",
    ]
    for m in spec.methods:
        lines += ["    " + line if line else "" for line in _render_client_method(spec, m)]
    if lines[-1] == "":
        lines.pop()
    lines += [
        "    }",
        "",
        "    impl Client {",
        "        /// Ask the host of the current call, init or create for an implementation of",
        "        /// this revision; `None` when it has none (or outside of a call, or when the",
        "        /// host is older than ABI 1.2).",
        "        pub fn query() -> Option<Client> {",
        "            ferrule_sdk::host().and_then(Client::query_in)",
        "        }",
        "",
        "        /// Like [`Client::query`], with a host kept from earlier (e.g. on another thread).",
        "        pub fn query_in(host: ferrule_sdk::HostRef) -> Option<Client> {",
        "            ferrule_sdk::Object::query(host, ID, REVISION, FINGERPRINT).map(|object| Client { object })",
        "        }",
        "    }",
    ]
    if host:
        lines += _render_host_side(spec)
    lines += ["}", ""]
    return lines


def _render_host_side(spec: InterfaceSpec) -> list[str]:
    """What ``--rust-host`` adds to an interface's module: making instances
    of a loaded plugin's implementation, and providing a service."""
    lines = [
        "",
        "    /// An instance of `plugin`'s implementation called `name` (or its first), checked",
        "    /// against this declaration (`ferrule_host::ErrorKind::InterfaceMismatch` when it was",
        "    /// generated from another layout).",
        "    pub fn create(",
        "        plugin: &ferrule_host::Plugin,",
        "        name: Option<&str>,",
        "    ) -> Result<Client<ferrule_host::Instance>, ferrule_host::Error> {",
        "        plugin.create(&SPEC, name).map(|object| Client { object })",
        "    }",
    ]
    if any(p.type.kind == "fn" for m in spec.methods for p in m.params):
        return lines + ["", f"    // No `service`: {spec.name} takes host functions, which plugins cannot pass."]
    return lines + [
        "",
        f"    /// `value` as the {spec.name} service that plugins loaded by a",
        "    /// `ferrule_host::PluginHost` get when they query this revision.",
        f"    pub fn service<T: {spec.name}>(value: T) -> ferrule_host::Service {{",
        "        ferrule_host::Service::new(provided(value))",
        "    }",
    ]


_PLUGIN_HEADER = [
    "// Rust bindings for ferrule-sdk. Include it as a module of a plugin crate, e.g.",
    "// `#[path = \"api.rs\"] mod api;`, implement a trait and list",
    "// `api::<interface>::export::<Type>(\"name\", \"doc\")` in `plugin!`'s",
    "// `interfaces: [...]`; call implementations with `api::<interface>::Client`.",
]
_HOST_HEADER = [
    "// Rust bindings for a host using ferrule-host (and ferrule-sdk). Include it as a",
    "// module, e.g. `#[path = \"api.rs\"] mod api;`; make instances of a plugin's",
    "// implementation with `api::<interface>::create(&plugin, None)` and provide",
    "// services with `api::<interface>::service(value)`. The plugin side (traits,",
    "// `export`, `Client::query`) is here too.",
]


def render(specs: Sequence[InterfaceSpec], source: str, host: bool = False) -> str:
    """The Rust module for ``specs``, declared in module ``source`` (a dotted
    name, for the header comment). ``host``: also the Rust host's side
    (ferrule-host), for ``--rust-host``."""
    structs, handles = _collect_types(specs)
    mods = [snake(s.name) for s in specs]
    for m in mods:
        if mods.count(m) > 1:
            raise ValueError(f"two interfaces map to the Rust module {m!r}: rename one class")
    for s in specs:
        _check_names(s)
    lines = [
        f"// Generated by `ferrule generate` from {source}; do not edit.",
        "//",
        *(_HOST_HEADER if host else _PLUGIN_HEADER),
        "// `iface` is the SDK's hidden machinery for this code, not an API.",
        "",
        # A plugin uses only part of the bindings (the trait or the client,
        # some structs), so unused items are expected here.
        "#![allow(dead_code)]",
        "",
    ]
    # Only the structs and handles at this level use `iface` (each interface
    # module imports its own): an unused import fails `-D warnings` builds.
    if structs or handles:
        lines += ["use ferrule_sdk::__private::iface;", ""]
    for st in structs:
        lines += _render_struct(st)
    for name, doc in handles:
        lines += _render_handle(name, doc)
    for s in specs:
        lines += _render_interface(s, host)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
