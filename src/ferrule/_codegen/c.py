"""The C header ``ferrule generate`` writes for interface declarations.

One header per declaration module, on top of ``ferrule.h``. For each
interface revision it holds:

- the constants ``<P>_<NAME>_ID``, ``_REVISION``, ``_FINGERPRINT``, ``_LAYOUT``,
  ``_FLAGS``, ``_N_METHODS`` and one ``_METHOD_<M>`` index per method;
- the structs and handle types it uses, with compile-time checks that the C
  compiler lays them out as the declaration says;
- ``<p>_<name>_vtable``: the methods array viewed by name;
- ``<P>_<NAME>_IMPLEMENT(cprefix, type, "impl-name", "doc")``: the glue that
  turns typed C functions into a ``ferrule_interface`` (implementers);
- ``<p>_<name>_client`` with ``_query``, ``_release`` and one typed function
  per method (callers, through host->query/call/release).

``<P>``/``<p>`` is the prefix given (upper/lower case), ``<NAME>`` the
declaring class's name in snake case (``Store2`` -> ``store2``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .._abi.types import NUMBERS, TYPES
from ..idl import InterfaceSpec, MethodSpec, StructSpec, TypeSpec

__all__ = ["Implementer", "implementer", "render", "snake"]

# C spellings of the number types, from the ABI table.
_C_TYPES = {n: TYPES[n].c for n in NUMBERS}

# C and C++ keywords: a field or parameter named so gets a trailing underscore.
_KEYWORDS = frozenset("""
    auto break case char const continue default do double else enum extern float for goto if inline int
    long register restrict return short signed sizeof static struct switch typedef union unsigned void
    volatile while bool true false asm catch class delete explicit friend mutable namespace new operator
    private protected public template this throw try typeid typename using virtual alignas alignof
    char16_t char32_t constexpr decltype noexcept nullptr static_assert thread_local
""".split())
# ... and so does a parameter named like what the generated functions call
# their own parameters and locals.
_RESERVED_PARAMS = _KEYWORDS | {"client", "result", "error", "args", "ret", "status", "out", "host", "self"}

# Method names that would clash with the generated lifecycle names.
_RESERVED_METHODS = frozenset({"create", "destroy", "query", "release", "interface", "client", "vtable"})

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def snake(name: str) -> str:
    """``Store2`` -> ``store2``, ``ImageFilter`` -> ``image_filter``, ``HTTPServer`` -> ``http_server``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def render(specs: Sequence[InterfaceSpec], source: str, prefix: str = "ferrule_api") -> str:
    """The C header for ``specs``, declared in module ``source`` (a dotted
    name, for the header comment). ``prefix`` (a lowercase C identifier)
    starts every name the header defines."""
    if not _IDENT.match(prefix):
        raise ValueError(f"C prefix {prefix!r} must be a lowercase C identifier like 'myapp'")
    return _Header(specs, source, prefix).render()


@dataclass(frozen=True)
class Implementer:
    """What a hand-written C implementation of one interface writes, as the
    header with ``prefix`` declares it: ``macro(cprefix, type, "name", "doc")``
    defines ``cprefix_interface``; ``functions`` are, per method, the
    function's name after ``cprefix_`` and its parameters after ``host`` and
    ``self`` (``"const char *text"``, ``"size_t text_len"``, ...)."""

    macro: str
    functions: tuple[tuple[MethodSpec, str, tuple[str, ...]], ...]


def implementer(spec: InterfaceSpec, prefix: str) -> Implementer:
    """The names an implementation of ``spec`` uses in a header made with
    ``prefix`` (see render)."""
    header = _Header([spec], "", prefix)
    functions = tuple((m, header.method_name(m), tuple(header.impl_params(m, header.param_names(m))))
                      for m in spec.methods)
    return Implementer(f"{header.P}_{snake(spec.name).upper()}_IMPLEMENT", functions)


def _comment(text: str, indent: str = "") -> list[str]:
    """A block comment of ``text``; empty text gives nothing."""
    lines = [line.rstrip().replace("*/", "* /") for line in text.strip().splitlines()]
    if not lines or lines == [""]:
        return []
    if len(lines) == 1:
        return [f"{indent}/* {lines[0]} */"]
    out = [f"{indent}/* {lines[0]}"]
    out.extend(f"{indent} *{' ' + line if line else ''}" for line in lines[1:])
    out.append(f"{indent} */")
    return out


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _macro(lines: list[str]) -> list[str]:
    """Join a macro's lines with continuation backslashes, aligned up to column 100."""
    width = min(max(len(line) for line in lines[:-1]), 98) + 1
    return [(line.ljust(width) if len(line) < width else line + " ") + "\\" for line in lines[:-1]] + [lines[-1]]


def _wrap(head: str, items: list[str], tail: str, indent: str, width: int = 98) -> list[str]:
    """``head + ", ".join(items) + tail``, broken between items to keep lines
    under ``width``; continuation lines start with ``indent``."""
    lines = [head]
    on_line = 0
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else tail)
        if on_line and len(lines[-1]) + len(piece.rstrip()) > width:
            lines[-1] = lines[-1].rstrip()
            lines.append(indent)
            on_line = 0
        lines[-1] += piece
        on_line += 1
    if not items:
        lines[-1] += tail
    return lines


def _member(number: str) -> str:
    """The ferrule_value member a number travels in."""
    return {"i": "i64", "u": "u64"}.get(number[0], number)


def _read_number(number: str, slot: str) -> str:
    """The C expression reading a number of this type from a slot."""
    member = _member(number)
    if member in ("i64", "u64") and number not in ("i64", "u64"):
        return f"({_C_TYPES[number]}){slot}.{member}"
    return f"{slot}.{member}"


class _Header:
    def __init__(self, specs: Sequence[InterfaceSpec], source: str, prefix: str):
        self.specs = list(specs)
        self.source = source
        self.p = prefix
        self.P = prefix.upper()
        self.structs: dict[str, StructSpec] = {}
        self.handles: dict[str, str] = {}
        names: dict[str, str] = {}
        for s in self.specs:
            name = snake(s.name)
            if name in names:
                raise ValueError(f"interfaces {names[name]} and {s.name} both become {prefix}_{name} in C")
            names[name] = s.name
            upper = [m.name.upper() for m in s.methods]
            for m in s.methods:
                if upper.count(m.name.upper()) > 1:
                    raise ValueError(f"{s.name}: methods differing only in case clash in C ({m.name})")
            for st in s.structs:
                known = self.structs.setdefault(st.name, st)
                if known != st:
                    raise ValueError(f"two different structs named {st.name} (in {s.name}): rename one")
            for h in s.handles:
                self.handles.setdefault(h.__name__, (h.__doc__ or "").strip())

    # -- names

    def type_name(self, name: str) -> str:
        return f"{self.p}_{snake(name)}"

    def ctype(self, t: TypeSpec) -> str:
        if t.kind == "number":
            return _C_TYPES[t.name]
        if t.kind == "bool":
            return "bool"
        if t.kind in ("struct", "handle"):
            return self.type_name(t.name)
        raise AssertionError(t.kind)

    @staticmethod
    def method_name(m: MethodSpec) -> str:
        return m.name + "_" if m.name in _RESERVED_METHODS else m.name

    @staticmethod
    def param_names(m: MethodSpec) -> list[str]:
        """C names for the parameters, unique also with their ``_len`` companions."""
        taken: set[str] = set()
        out = []
        for p in m.params:
            name = p.name + "_" if p.name in _RESERVED_PARAMS else p.name
            while name in taken or (p.type.kind in ("str", "bytes", "buf", "mutbuf") and name + "_len" in taken):
                name += "_"
            taken.add(name)
            if p.type.kind in ("str", "bytes", "buf", "mutbuf"):
                taken.add(name + "_len")
            out.append(name)
        return out

    # -- the whole header

    def render(self) -> str:
        guard = re.sub(r"[^A-Z0-9]+", "_", f"{self.P}_{self.source}".upper()).strip("_") + "_H"
        names = ", ".join(s.name for s in self.specs)
        out = [
            f"/* Generated by `ferrule generate` from {self.source}; do not edit.",
            " *",
            f" * C bindings for {names}, on top of ferrule.h. For each interface:",
            f" *   {self.P}_<NAME>_ID, _REVISION, _FINGERPRINT, _LAYOUT, _FLAGS: what the host checks;",
            f" *   {self.P}_<NAME>_IMPLEMENT(cprefix, type, \"name\", \"doc\"): implement it with typed functions",
            " *     and list &cprefix_interface in the plugin descriptor's interfaces array;",
            f" *   {self.p}_<name>_client: call an implementation the host lends (host->query/call/release).",
            " *",
            " * Implementers get str and bytes arguments as a pointer and a length (a str",
            " * is also NUL-terminated), buf[T] as (const T *, size_t count), mutbuf[T] as",
            " * (T *, size_t count), structs by value, and write results through a typed",
            " * pointer. Clients pass a str as a NUL-terminated string, the rest alike.",
            " * A method fails with ferrule_fail(host, \"message\") (or host->set_error and",
            " * FERRULE_ERROR); it must then hand over no owned memory.",
            " */",
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            "#ifndef __cplusplus",
            "#include <stdbool.h>",
            "#endif",
            "#include <string.h>",
            "",
            '#include "ferrule.h"',
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
        ]
        out += self.common()
        if self.handles or self.structs:
            out += ["/* ---------------------------------------------------------------- types */", ""]
        for name, doc in self.handles.items():
            out += _comment(f"{doc}\nAn opaque handle (u64)." if doc else "An opaque handle (u64).")
            out += [f"typedef uint64_t {self.type_name(name)};", ""]
        for st in self.structs.values():
            out += self.struct(st)
        for s in self.specs:
            out += self.interface(s)
        out += [
            "#ifdef __cplusplus",
            "}",
            "#endif",
            "",
            f"#endif /* {guard} */",
        ]
        return "\n".join(out) + "\n"

    def common(self) -> list[str]:
        p, P = self.p, self.P
        return [
            f"#ifndef {P}_COMMON_",
            f"#define {P}_COMMON_",
            "",
            "/* A compile-time check (static_assert where the language has it). */",
            "#if defined(__cplusplus) && __cplusplus >= 201103L",
            f"#define {P}_CHECK(name, cond) static_assert(cond, #name)",
            "#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L",
            f"#define {P}_CHECK(name, cond) _Static_assert(cond, #name)",
            "#else",
            f"#define {P}_CHECK(name, cond) typedef char {p}_check_##name[(cond) ? 1 : -1]",
            "#endif",
            "",
            "/* Give owned bytes (a str or bytes result, an error message) to their",
            " * release function; leaves *bytes empty. Safe on empty bytes. */",
            f"static inline void {p}_bytes_release(ferrule_bytes *bytes) {{",
            "    if (bytes->release != NULL) {",
            "        bytes->release((void *)bytes->ptr, bytes->len);",
            "    }",
            "    bytes->ptr = NULL;",
            "    bytes->len = 0;",
            "    bytes->release = NULL;",
            "}",
            "",
            "/* Set a str or bytes result to a copy of len bytes made with the host's",
            " * allocator (the host frees it). For a static string set ptr and len and",
            " * leave release NULL instead. */",
            f"static inline int32_t {p}_bytes_copy(const ferrule_host *host, ferrule_bytes *result,",
            f"{' ' * (len(p) + 32)}const void *data, size_t len) {{",
            "    void *copy = host->alloc(len);",
            "    if (copy == NULL) {",
            '        return ferrule_fail(host, "out of memory");',
            "    }",
            "    if (len > 0) {",
            "        memcpy(copy, data, len);",
            "    }",
            "    result->ptr = copy;",
            "    result->len = len;",
            "    result->release = host->free;",
            "    return FERRULE_OK;",
            "}",
            "",
            "/* Fail the current call with an error message a client call gave back",
            " * (unchanged), and release it. Returns FERRULE_ERROR. */",
            f"static inline int32_t {p}_fail_with(const ferrule_host *host, ferrule_bytes *error) {{",
            "    host->set_error(host, (const char *)error->ptr, error->ptr != NULL ? error->len : 0);",
            f"    {p}_bytes_release(error);",
            "    return FERRULE_ERROR;",
            "}",
            "",
            "/* Client calls: call the method; on failure hand the message to *error",
            " * (or release it), on success leave *error empty. */",
            f"static inline int32_t {p}_call_(const ferrule_host *host, const ferrule_object *object,",
            f"{' ' * (len(p) + 29)}uint32_t method, const ferrule_value *args, ferrule_value *ret,",
            f"{' ' * (len(p) + 29)}ferrule_bytes *error) {{",
            "    int32_t status;",
            "    memset(ret, 0, sizeof(*ret));",
            "    status = host->call(host, object, method, args, ret);",
            "    if (status != FERRULE_OK && error == NULL) {",
            f"        {p}_bytes_release(&ret->bytes);",
            "    } else if (status != FERRULE_OK) {",
            "        *error = ret->bytes;",
            "    } else if (error != NULL) {",
            "        error->ptr = NULL;",
            "        error->len = 0;",
            "        error->release = NULL;",
            "    }",
            "    return status;",
            "}",
            "",
            f"{P}_CHECK(bool_is_one_byte, sizeof(bool) == 1);",
            "",
            f"#endif /* {P}_COMMON_ */",
            "",
        ]

    def struct(self, st: StructSpec) -> list[str]:
        name = self.type_name(st.name)
        doc = f"{st.doc}\n\n" if st.doc else ""
        out = _comment(f"{doc}C layout: {st.size} bytes, aligned to {st.align}.")
        out.append(f"typedef struct {name} {{")
        fields = [f.name + "_" if f.name in _KEYWORDS else f.name for f in st.fields]
        decls = [f"    {self.ctype(f.type)} {name};" for f, name in zip(st.fields, fields)]
        width = max(len(d) for d in decls) + 1
        out += [d.ljust(width) + f"/* at {f.offset} */" for d, f in zip(decls, st.fields)]
        out.append(f"}} {name};")
        out.append(f"{self.P}_CHECK({snake(st.name)}_size, sizeof({name}) == {st.size});")
        out += [f"{self.P}_CHECK({snake(st.name)}_{field}, offsetof({name}, {field}) == {f.offset});"
                for f, field in zip(st.fields, fields)]
        out.append("")
        return out

    # -- one interface

    def interface(self, s: InterfaceSpec) -> list[str]:
        N = f"{self.P}_{snake(s.name).upper()}"
        n = f"{self.p}_{snake(s.name)}"
        title = f"{s.name}: {s.id}, revision {s.revision}{' (thread-safe)' if s.thread_safe else ''}"
        out = [f"/* {'-' * 64} {s.name} */", ""]
        out += _comment(f"{title}\n\n{s.doc}" if s.doc else title)
        out += [
            f"#define {N}_ID {_c_string(s.id)}",
            f"#define {N}_REVISION {s.revision}",
            f"#define {N}_FINGERPRINT UINT64_C({s.fingerprint:#018x})",
            f"#define {N}_FLAGS {'FERRULE_IFACE_THREAD_SAFE' if s.thread_safe else '0'}",
            f"#define {N}_N_METHODS {len(s.methods)}",
        ]
        out += [f"#define {N}_METHOD_{m.name.upper()} {m.index}" for m in s.methods]
        out += ["/* The canonical layout the fingerprint hashes. */"]
        out += _macro([f"#define {N}_LAYOUT"] + [f"    {_c_string(line + chr(10))}" for line in s.layout.splitlines()])
        out += [""]
        out += self.vtable(s, n)
        out += self.implement(s, N, n)
        out += self.client(s, N, n)
        return out

    def vtable(self, s: InterfaceSpec, n: str) -> list[str]:
        out = ["/* The methods array (ferrule_interface.methods) viewed by name. */", f"typedef struct {n}_vtable {{"]
        decls = [f"    ferrule_call_fn {m.name};" for m in s.methods]
        width = max(len(d) for d in decls) + 1
        out += [d.ljust(width) + f"/* {m.name}{m.signature} */" for d, m in zip(decls, s.methods)]
        out += [f"}} {n}_vtable;",
                f"{self.P}_CHECK({n[len(self.p) + 1:]}_vtable, sizeof({n}_vtable) == "
                f"{len(s.methods)} * sizeof(ferrule_call_fn));", ""]
        return out

    # -- implementers

    def impl_params(self, m: MethodSpec, names: list[str]) -> list[str]:
        """The typed parameters of the function an implementer writes (after host and self)."""
        out = []
        for p, name in zip(m.params, names):
            k = p.type.kind
            if k == "str":
                out += [f"const char *{name}", f"size_t {name}_len"]
            elif k == "bytes":
                out += [f"const uint8_t *{name}", f"size_t {name}_len"]
            elif k == "buf":
                out += [f"const {_C_TYPES[p.type.elem]} *{name}", f"size_t {name}_len"]
            elif k == "mutbuf":
                out += [f"{_C_TYPES[p.type.elem]} *{name}", f"size_t {name}_len"]
            elif k == "fn":
                out.append(f"const ferrule_fn *{name}")
            else:
                out.append(f"{self.ctype(p.type)} {name}")
        if m.result is not None:
            out.append(f"{self.result_type(m.result)} *result")
        return out

    def result_type(self, t: TypeSpec) -> str:
        return "ferrule_bytes" if t.kind in ("str", "bytes") else self.ctype(t)

    def thunk(self, s: InterfaceSpec, m: MethodSpec) -> list[str]:
        """The body lines of one vtable entry, inside the IMPLEMENT macro."""
        where = f"{s.name}.{m.name}"
        locals_: list[str] = []
        checks: list[str] = []
        call: list[str] = []
        for i, p in enumerate(m.params):
            t, a = p.type, f"args[{i}]"
            k = t.kind
            if k == "number":
                call.append(_read_number(t.name, a))
            elif k == "bool":
                call.append(f"{a}.u64 != 0")
            elif k == "handle":
                call.append(f"({self.ctype(t)}){a}.u64")
            elif k == "str":
                call += [f"(const char *){a}.bytes.ptr", f"{a}.bytes.len"]
            elif k == "bytes":
                call += [f"(const uint8_t *){a}.bytes.ptr", f"{a}.bytes.len"]
            elif k == "buf":
                call += [f"(const {_C_TYPES[t.elem]} *){a}.buf.ptr", f"{a}.buf.len"]
            elif k == "mutbuf":
                call += [f"({_C_TYPES[t.elem]} *){a}.buf.ptr", f"{a}.buf.len"]
            elif k == "fn":
                call.append(f"{a}.func")
            elif k == "struct":
                assert t.struct is not None
                ct = self.ctype(t)
                locals_.append(f"{ct} a{i};")
                message = f"{where}: {p.name} is not a {t.struct.name} ({t.struct.size} bytes)"
                checks += [
                    f"if ({a}.bytes.len != sizeof({ct}) || {a}.bytes.ptr == NULL) {{",
                    f'    return ferrule_fail(host, "{message}");',
                    "}",
                    f"memcpy(&a{i}, {a}.bytes.ptr, sizeof({ct}));",
                ]
                call.append(f"a{i}")
        r = m.result
        finish: list[str] = []
        if r is not None and r.kind in ("str", "bytes"):
            checks += ["ret->bytes.ptr = NULL;", "ret->bytes.len = 0;", "ret->bytes.release = NULL;"]
            call.append("&ret->bytes")
        elif r is not None:
            ct = self.ctype(r)
            if r.kind == "struct":
                locals_.append(f"{ct} result;")
                checks.append("memset(&result, 0, sizeof(result));")
            else:
                locals_.append(f"{ct} result = {'false' if r.kind == 'bool' else '0'};")
            call.append("&result")
            if r.kind == "struct":
                assert r.struct is not None
                out = f"args[{len(m.params)}].buf"
                checks = [
                    f"if ({out}.len != sizeof({ct}) || {out}.ptr == NULL) {{",
                    f'    return ferrule_fail(host, "{where}: out is not a {r.struct.name} ({r.struct.size} bytes)");',
                    "}",
                ] + checks
                finish.append(f"memcpy({out}.ptr, &result, sizeof({ct}));")
            elif r.kind == "bool":
                finish.append("ret->u64 = result ? 1 : 0;")
            elif r.kind == "handle":
                finish.append("ret->u64 = result;")
            else:
                finish.append(f"ret->{_member(r.name)} = result;")
        target = f"cprefix##_{self.method_name(m)}("
        target_args = ["host", "(ctype *)self"] + call
        body = [f"static int32_t cprefix##_ferrule_thunk_{m.name}(const ferrule_host *host, void *self,",
                "        const ferrule_value *args, ferrule_value *ret) {"]
        body += [f"    {line}" for line in locals_]
        if finish:
            body.append("    int32_t status;")
        if not m.params and not (r is not None and r.kind == "struct"):
            body.append("    (void)args;")
        if r is None or r.kind == "struct":
            body.append("    (void)ret;")
        body += [f"    {line}" for line in checks]
        if finish:
            body += _wrap(f"    status = {target}", target_args, ");", " " * 12, 94)
            body.append("    if (status == FERRULE_OK) {")
            body += [f"        {line}" for line in finish]
            body += ["    }", "    return status;"]
        else:
            body += _wrap(f"    return {target}", target_args, ");", " " * 12, 94)
        body.append("}")
        return body

    def implement(self, s: InterfaceSpec, N: str, n: str) -> list[str]:
        doc = [
            f"Implement {s.name} in C. Write these functions (static, before or after",
            "the macro), where P is cprefix and T your instance type:",
            "",
            "  int32_t P_create(const ferrule_host *host, void *plugin_state, T **self);",
            "  void P_destroy(const ferrule_host *host, void *plugin_state, T *self);",
        ]
        for m in s.methods:
            params = ["const ferrule_host *host", "T *self"] + self.impl_params(m, self.param_names(m))
            doc += [""] + _wrap(f"  int32_t P_{self.method_name(m)}(", params, ");", " " * 10, 92)
            doc += [f"      {line}" if line else "" for line in m.doc.splitlines()]
        doc += [
            "",
            "Each returns FERRULE_OK, or fails with ferrule_fail(host, \"message\"). A str",
            "or bytes result is a ferrule_bytes: a static string (release NULL) or",
            f"{self.p}_bytes_copy(host, result, data, len). Then:",
            "",
            f"  {N}_IMPLEMENT(P, T, \"implementation-name\", \"doc or NULL\");",
            "",
            "defines `static const ferrule_interface P_interface` for the plugin",
            "descriptor's interfaces array. plugin_state is what the plugin's init stored.",
        ]
        if s.thread_safe:
            doc += ["Thread-safe: methods of one instance may run on several threads at once."]
        else:
            doc += ["Not thread-safe: the host never runs two methods of one instance at once on two threads",
                    "(a method that calls the host may be called back into on its own thread)."]
        fn_params = [m.name for m in s.methods if any(p.type.kind == "fn" for p in m.params)]
        if fn_params:
            doc += ["A const ferrule_fn * parameter is a host function: call it with",
                    "ferrule_invoke(host, f, args, ret) before the method returns."]
        lines = [f"#define {N}_IMPLEMENT(cprefix, ctype, impl_name, impl_doc)"]
        lines += ["    static int32_t cprefix##_create(const ferrule_host *, void *, ctype **);",
                  "    static void cprefix##_destroy(const ferrule_host *, void *, ctype *);"]
        for m in s.methods:
            types = ["const ferrule_host *", "ctype *"]
            types += [self.strip_name(p) for p in self.impl_params(m, self.param_names(m))]
            lines += _wrap(f"    static int32_t cprefix##_{self.method_name(m)}(", types, ");", " " * 12, 94)
        lines += [
            "    static int32_t cprefix##_ferrule_create(const ferrule_host *host, void *plugin_state,",
            "            void **self) {",
            "        ctype *made = NULL;",
            "        int32_t status = cprefix##_create(host, plugin_state, &made);",
            "        if (status == FERRULE_OK) {",
            "            *self = (void *)made;",
            "        }",
            "        return status;",
            "    }",
            "    static void cprefix##_ferrule_destroy(const ferrule_host *host, void *plugin_state,",
            "            void *self) {",
            "        cprefix##_destroy(host, plugin_state, (ctype *)self);",
            "    }",
        ]
        for m in s.methods:
            lines += [f"    {line}" for line in self.thunk(s, m)]
        lines.append(f"    static const ferrule_call_fn cprefix##_ferrule_methods[{N}_N_METHODS] = {{")
        lines += [f"        cprefix##_ferrule_thunk_{m.name}," for m in s.methods]
        lines += [
            "    };",
            "    static const ferrule_interface cprefix##_interface = {",
            f"        (uint32_t)sizeof(ferrule_interface), {N}_FLAGS,",
            f"        {N}_ID, {N}_REVISION, {N}_N_METHODS,",
            f"        {N}_FINGERPRINT, {N}_LAYOUT,",
            "        impl_name, impl_doc,",
            "        cprefix##_ferrule_methods, cprefix##_ferrule_create, cprefix##_ferrule_destroy,",
            "    }",
        ]
        return _comment("\n".join(doc)) + _macro(lines) + [""]

    @staticmethod
    def strip_name(param: str) -> str:
        """``const char *key`` -> ``const char *``; ``size_t n`` -> ``size_t``."""
        head, _, _name = param.rpartition(" ")
        if _name.startswith("*"):
            return head + " *"
        return head

    # -- callers

    def client(self, s: InterfaceSpec, N: str, n: str) -> list[str]:
        out = _comment(
            f"A {s.name} the host lends this plugin: a host service or another plugin's\n"
            f"implementation. {n}_query fills it in; give it back with {n}_release.\n"
            + ("It may be called from several threads at once." if s.thread_safe
               else "Do not call it from two threads at once.")
        )
        out += [
            f"typedef struct {n}_client {{",
            "    const ferrule_host *host;",
            "    const ferrule_object *object; /* NULL when absent */",
            f"}} {n}_client;",
            "",
            f"/* Ask the host for {s.id} revision {s.revision}. False (and object NULL) when",
            " * nothing matches, also on a host older than ABI 1.2. */",
            *_wrap(f"static inline bool {n}_query(", ["const ferrule_host *host", f"{n}_client *client"], ") {",
                   " " * 8),
            "    client->host = host;",
            "    client->object = NULL;",
            "    if (FERRULE_HOST_HAS(host, release)) {",
            *_wrap("        client->object = host->query(", ["host", f"{N}_ID", f"{N}_REVISION", f"{N}_FINGERPRINT"],
                   ");", " " * 16),
            "    }",
            "    return client->object != NULL;",
            "}",
            "",
            "/* Give the object back (nothing happens when it is NULL). */",
            f"static inline void {n}_release({n}_client *client) {{",
            "    if (client->object != NULL) {",
            "        client->host->release(client->host, client->object);",
            "        client->object = NULL;",
            "    }",
            "}",
            "",
        ]
        for m in s.methods:
            out += self.client_method(s, N, n, m)
        return out

    def client_method(self, s: InterfaceSpec, N: str, n: str, m: MethodSpec) -> list[str]:
        fname = f"{n}_{self.method_name(m)}"
        if any(p.type.kind == "fn" for p in m.params):
            return [f"/* {fname}: not generated, {s.name}.{m.name} takes a host function, which only the",
                    " * Python host can pass. */", ""]
        names = self.param_names(m)
        params = [f"{n}_client *client"]
        fill: list[str] = []
        for i, (p, name) in enumerate(zip(m.params, names)):
            t, a = p.type, f"args[{i}]"
            k = t.kind
            if k == "str":
                params.append(f"const char *{name}")
                fill += [f"{a}.bytes.ptr = {name};", f"{a}.bytes.len = strlen({name});", f"{a}.bytes.release = NULL;"]
            elif k == "bytes":
                params += [f"const void *{name}", f"size_t {name}_len"]
                fill += [f"{a}.bytes.ptr = {name};", f"{a}.bytes.len = {name}_len;", f"{a}.bytes.release = NULL;"]
            elif k in ("buf", "mutbuf"):
                const = "const " if k == "buf" else ""
                params += [f"{const}{_C_TYPES[t.elem]} *{name}", f"size_t {name}_len"]
                fill += [f"{a}.buf.ptr = (void *){name};", f"{a}.buf.len = {name}_len;"]
            elif k == "struct":
                params.append(f"{self.ctype(t)} {name}")
                fill += [f"{a}.bytes.ptr = &{name};", f"{a}.bytes.len = sizeof({name});", f"{a}.bytes.release = NULL;"]
            elif k == "bool":
                params.append(f"bool {name}")
                fill.append(f"{a}.u64 = {name} ? 1 : 0;")
            elif k == "handle":
                params.append(f"{self.ctype(t)} {name}")
                fill.append(f"{a}.u64 = {name};")
            else:
                params.append(f"{_C_TYPES[t.name]} {name}")
                fill.append(f"{a}.{_member(t.name)} = {name};")
        r = m.result
        n_slots = len(m.params)
        locals_ = []
        finish: list[str] = []
        if r is not None:
            params.append(f"{self.result_type(r)} *result")
            if r.kind in ("str", "bytes"):
                finish += ["if (result != NULL) {", "    *result = ret.bytes;", "} else {",
                           f"    {self.p}_bytes_release(&ret.bytes);", "}"]
            elif r.kind == "struct":
                ct = self.ctype(r)
                locals_.append(f"{ct} out;")
                fill += ["memset(&out, 0, sizeof(out));", f"args[{n_slots}].buf.ptr = &out;",
                         f"args[{n_slots}].buf.len = sizeof(out);"]
                n_slots += 1
                finish += ["if (result != NULL) {", "    *result = out;", "}"]
            else:
                if r.kind == "bool":
                    value = "ret.u64 != 0"
                elif r.kind == "handle":
                    value = f"({self.ctype(r)})ret.u64"
                else:
                    value = _read_number(r.name, "ret")
                finish += ["if (result != NULL) {", f"    *result = {value};", "}"]
        params.append("ferrule_bytes *error")
        doc = m.doc + "\n\n" if m.doc else ""
        doc += ("Returns FERRULE_OK, or the failure status with the callee's message in\n"
                f"*error (release it with {self.p}_bytes_release; a NULL error releases it).")
        if r is not None and r.kind in ("str", "bytes"):
            doc += "\nOn success *result is yours to release likewise (NULL result: released)."
        out = _comment(doc)
        out += _wrap(f"static inline int32_t {fname}(", params, ") {", " " * 8)
        if n_slots:
            out.append(f"    ferrule_value args[{n_slots}];")
        out += [f"    {line}" for line in locals_]
        out += ["    ferrule_value ret;", "    int32_t status;"]
        out += [f"    {line}" for line in fill]
        out += _wrap("    status = " + f"{self.p}_call_(",
                     ["client->host", "client->object", f"{N}_METHOD_{m.name.upper()}",
                      "args" if n_slots else "NULL", "&ret", "error"], ");", " " * 8)
        if len(finish) == 3:  # if (result != NULL) { ... }
            out += ["    if (status == FERRULE_OK && result != NULL) {", f"    {finish[1]}", "    }"]
        elif finish:
            out.append("    if (status == FERRULE_OK) {")
            out += [f"        {line}" for line in finish]
            out.append("    }")
        out += ["    return status;", "}", ""]
        return out
