"""``ferrule new --interface MODULE[:Interface]``: the host-defined interfaces a
new project implements.

``resolve`` imports each declaration module as ``ferrule generate`` does and
picks its interfaces (``MODULE`` alone: every one it declares). ``plan``
names an implementation of each for a plugin. The ``rust_*``, ``c_*`` and
``python_*`` functions write what the project templates add for them: the
bindings (the text ``ferrule generate`` writes, so that it regenerates them
unchanged), an implementation whose methods are stubs that fail naming
themselves, the descriptor's list of implementations, a test that calls a
stub, and the README's part.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import site
import sysconfig
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from .._codegen import c as gen_c
from .._codegen import rust as gen_rust
from .._codegen.generate import GenerateError, declarations, declared, import_module
from ..idl import InterfaceSpec, MethodSpec, TypeSpec

__all__ = ["Bindings", "Implementation", "PythonNames", "plan", "resolve"]

_MODULE_RE = re.compile(r"[^\W\d]\w*(\.[^\W\d]\w*)*")
# File stems that would clash with the project's own files or, as a Rust
# module of the crate root, with crates and the template's items.
# test_plugin.py imports each module under its stem: the names it uses are
# out too.
_RESERVED_STEMS = frozenset({"lib", "main", "tests", "plugin", "ferrule", "ferrule_sdk", "std", "core", "alloc",
                             "greeting", "checked_divide", "sys", "array", "path", "instance", "expect_stub"})
_ARRAY_CODES = {"i8": "b", "u8": "B", "i16": "h", "u16": "H", "i32": "i", "u32": "I", "i64": "q", "u64": "Q",
                "f32": "f", "f64": "d"}


@dataclass(frozen=True)
class Bindings:
    """One declaration module: its generated code in the project, and the
    interfaces the project implements from it."""

    module: str  # the dotted name
    stem: str  # of the generated file (src/STEM.rs, STEM.h), the Rust module and the C prefix
    declared: tuple[InterfaceSpec, ...]  # everything ferrule generate renders from the module
    implemented: tuple[InterfaceSpec, ...]
    path: str | None  # the directory it imports from when it is not installed (for PYTHONPATH)

    @property
    def rust_file(self) -> str:
        return f"src/{self.stem}.rs"

    @property
    def c_file(self) -> str:
        return f"{self.stem}.h"

    def rust(self) -> str:
        return gen_rust.render(self.declared, self.module)

    def c(self) -> str:
        return gen_c.render(self.declared, self.module, self.stem)


@dataclass(frozen=True)
class Implementation:
    """The project's implementation of one interface."""

    bindings: Bindings
    spec: InterfaceSpec
    type_name: str  # the Rust and C++ type, CamelCase: HelloCounter
    c_prefix: str  # the C type and the prefix of its functions: hello_counter

    @property
    def where(self) -> str:
        """The interface as Python names it: myapp.api.Counter."""
        return f"{self.bindings.module}.{self.spec.name}"


def resolve(args: Sequence[str]) -> list[Bindings]:
    """The declaration modules and interfaces that ``--interface`` arguments
    name, in the order given. Raises ValueError with the fix for an argument
    that is malformed, names nothing importable or no interface, or repeats
    an interface."""
    chosen: dict[str, list[InterfaceSpec]] = {}
    given: dict[tuple[str, int], str] = {}
    for arg in args:
        module_name, _, name = arg.partition(":")
        if not _MODULE_RE.fullmatch(module_name) or (name and not name.isidentifier()) or arg.endswith(":"):
            raise ValueError(f"--interface {arg!r} is not MODULE:Interface (e.g. myapp.api:Transform) or MODULE "
                             "(every interface MODULE declares): MODULE is a dotted module name, Interface a class "
                             "in it")
        try:
            module = import_module(module_name)
            specs = declarations(module_name) if not name else declared(module)
        except GenerateError as exc:
            raise ValueError(f"--interface {arg}: {exc}") from None
        if name:
            specs = [_one(arg, module_name, name, getattr(module, name, None), specs)]
        for s in specs:
            if s.key in given:
                raise ValueError(f"--interface {arg}: {s.id}/{s.revision} ({s.name}) is already given by --interface "
                                 f"{given[s.key]}: name each interface once")
            given[s.key] = arg
        chosen.setdefault(module_name, []).extend(specs)
    out: list[Bindings] = []
    stems: set[str] = set()
    for module_name, specs in chosen.items():
        try:
            everything = declarations(module_name)  # what ferrule generate renders, also for one interface
        except GenerateError as exc:
            raise ValueError(f"--interface {module_name}: {exc}") from None
        stem = _stem(module_name, stems)
        stems.add(stem)
        order = [s.key for s in everything]
        specs.sort(key=lambda s: order.index(s.key))
        out.append(Bindings(module_name, stem, tuple(everything), tuple(specs), _import_root(module_name)))
    return out


def _one(arg: str, module_name: str, name: str, value: object, specs: list[InterfaceSpec]) -> InterfaceSpec:
    """The declaration that MODULE:Name names, or a ValueError saying what it is instead."""
    found = [s.name for s in specs]
    listed = (f"it declares {', '.join(found)}" if found
              else "it declares no interfaces (decorate classes with @ferrule.idl.interface)")
    if value is None:
        raise ValueError(f"--interface {arg}: {module_name} has no {name}; {listed}")
    iface = getattr(value, "__ferrule_interface__", None)
    if not isinstance(iface, InterfaceSpec):
        what = ("an @idl.struct" if hasattr(value, "__ferrule_struct__")
                else "a plain class" if isinstance(value, type) else f"a {type(value).__name__}")
        raise ValueError(f"--interface {arg}: {module_name}.{name} is {what}, not an interface declaration: "
                         f"decorate it with @ferrule.idl.interface(id, revision=...), or choose another; {listed}")
    home, declaration = iface.cls.__module__, iface.cls.__name__
    if iface.cls is not value or home != module_name:
        how = "is declared" if iface.cls is value else f"is made from the declaration {declaration}"
        raise ValueError(f"--interface {arg}: {module_name}.{name} {how} in {home}, which ferrule generate writes "
                         f"the code from: name the declaration there, --interface {home}:{declaration}")
    return iface


def _stem(module_name: str, taken: set[str]) -> str:
    """The generated file's stem: the module's last name (api for myapp.api),
    else its whole dotted name, when that is taken or reserved."""
    def usable(stem: str) -> bool:
        return stem not in taken and stem not in _RESERVED_STEMS and gen_rust.ident(stem) == stem

    candidates = [module_name.rpartition(".")[2], module_name.replace(".", "_")]
    candidates = [re.sub(r"\W", "_", c.lower(), flags=re.ASCII) for c in candidates]
    for stem in candidates:
        if usable(stem):
            return stem
    n = 1
    while not usable(f"{candidates[-1]}_api{n if n > 1 else ''}"):
        n += 1
    return f"{candidates[-1]}_api{n if n > 1 else ''}"


def _import_root(module_name: str) -> str | None:
    """The sys.path directory the module was imported from, when that is not
    the interpreter's own (site-packages, the standard library): a project
    then needs it on PYTHONPATH to import the declarations again."""
    module = import_module(module_name)
    file = str(getattr(module, "__file__", None) or "")
    if not file:
        return None  # a namespace package
    path = os.path.dirname(file) if os.path.basename(file).startswith("__init__.") else file
    root = os.path.abspath(path)
    for _ in module_name.split("."):
        root = os.path.dirname(root)
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    installed.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    installed.add(site.getusersitepackages())
    if any(os.path.abspath(d) == root for d in installed):
        return None
    return root


# ------------------------------------------------------------------ naming


def titles(bindings: Sequence[Bindings]) -> list[str]:
    """The implemented interfaces by class name, or by dotted name where two
    classes share one."""
    specs = [(b.module, s.name) for b in bindings for s in b.implemented]
    short = [name for _, name in specs]
    return [name if short.count(name) == 1 else f"{module}.{name}" for module, name in specs]


def camel(name: str) -> str:
    """hello-rust -> HelloRust."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]+", name) if part)


def plan(bindings: Sequence[Bindings], name: str, ident: str) -> list[Implementation]:
    """One implementation per interface, its names clear of each other's, of
    the generated headers' and of the templates' (plugin name, C ident)."""
    c_taken = {f"{ident}_{x}" for x in ("state", "init", "shutdown", "greet", "divide")}
    for b in bindings:
        c_taken.update(f"{b.stem}_{x}" for x in ("bytes", "fail", "call", "check"))
        for s in b.declared:
            c_taken.add(f"{b.stem}_{gen_c.snake(s.name)}")
            c_taken.update(f"{b.stem}_{gen_c.snake(t)}" for t in [st.name for st in s.structs]
                           + [h.__name__ for h in s.handles])
    types_taken = {"Plugin"}
    out = []
    for b in bindings:
        for s in b.implemented:
            type_name = _free(camel(name) + s.name, types_taken, "")
            c_prefix = _free(f"{ident}_{gen_c.snake(s.name)}", c_taken, "_impl")
            out.append(Implementation(b, s, type_name, c_prefix))
    return out


def _free(name: str, taken: set[str], suffix: str) -> str:
    """The first of name, name + suffix, name + suffix + 2, ... not taken yet; marks it taken."""
    candidates = itertools.chain([name, name + suffix], (f"{name}{suffix}{n}" for n in itertools.count(2)))
    free = next(c for c in candidates if c not in taken)
    taken.add(free)
    return free


def _stub_message(impl: Implementation, m: MethodSpec, source: str) -> str:
    return f"{impl.spec.name}.{m.name} is not implemented yet: write it in {source}"


def _doc(impl: Implementation, name: str) -> str:
    """The implementation's description in the descriptor."""
    return f"{impl.spec.name}, by {name}."


def _wrap(head: str, items: Sequence[str], tail: str, indent: str, width: int = 110) -> list[str]:
    """head + ", ".join(items) + tail on one line, or broken after commas."""
    one = head + ", ".join(items) + tail
    if len(one) <= width:
        return [one]
    lines = [head]
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else tail)
        if len(lines[-1]) + len(piece.rstrip()) > width and lines[-1].strip() and lines[-1] != head:
            lines[-1] = lines[-1].rstrip()
            lines.append(indent)
        lines[-1] += piece
    return lines


# ------------------------------------------------------------------ Rust


def rust_modules(bindings: Sequence[Bindings]) -> str:
    lines = ["// What `ferrule generate` wrote from the host's interface declarations: do not",
             "// edit it; regenerate it when they change (README.md says how)."]
    lines += [f"mod {b.stem}; // from {b.module}" for b in bindings]
    return "\n".join(lines) + "\n\n"


def _rust_sample(t: TypeSpec, stem: str) -> str | None:
    """A Rust argument of type t for a test call (None: a host function, which a test cannot make)."""
    if t.kind == "number":
        return "0.0" if t.name.startswith("f") else "0"
    if t.kind in ("struct", "handle"):
        return f"crate::{stem}::{t.name}::default()"
    return {"bool": "false", "str": '""', "bytes": "&[]", "buf": "&[]", "mutbuf": "&mut []"}.get(t.kind)


def rust_impls(impls: Sequence[Implementation]) -> str:
    """The implementations: a type and the trait impl, with stub methods."""
    out: list[str] = []
    for impl in impls:
        s, stem = impl.spec, impl.bindings.stem
        trait = f"{stem}::{gen_rust.snake(s.name)}::{s.name}"
        contract = (["/// Thread-safe: the host may call one instance from several threads at once, so",
                     "/// methods take `&self` (put mutable state behind a Mutex)."]
                    if s.thread_safe else
                    ["/// Not thread-safe: the host serialises the calls into each instance, so methods",
                     "/// take `&mut self`."])
        out += [
            f"// ---- {s.name}: {s.id} revision {s.revision}, from {impl.bindings.module}",
            "",
            f"/// An instance of {s.name}: `create` makes it, the host drops it when it destroys",
            "/// it (put cleanup in `Drop`).",
            *contract,
            f"struct {impl.type_name} {{}}",
            "",
            f"impl {trait} for {impl.type_name} {{",
            "    type Error = String; // any Display: an Err fails the call with its text",
            "",
            "    fn create() -> Result<Self, String> {",
            f"        Ok({impl.type_name} {{}})",
            "    }",
        ]
        for m in s.methods:
            out.append("")
            out += [f"    ///{' ' + line if line else ''}" for line in m.doc.splitlines()]
            signature = gen_rust.trait_method(s, m, types=f"{stem}::", error="String", unused=True)
            out += [f"    {signature} {{", f"        todo!({_quoted(f'{s.name}.{m.name}: write it in src/lib.rs')})",
                    "    }"]
        out += ["}", ""]
    return "\n".join(out) + "\n"


def rust_exports(impls: Sequence[Implementation], name: str) -> str:
    """The `interfaces: [...]` of plugin!, after its functions."""
    lines = [",", "    interfaces: ["]
    for impl in impls:
        module = f"{impl.bindings.stem}::{gen_rust.snake(impl.spec.name)}"
        lines.append(f"        {module}::export::<{impl.type_name}>({_quoted(name)}, {_quoted(_doc(impl, name))}),")
    lines.append("    ],")
    return "\n".join(lines)


def rust_tests(impls: Sequence[Implementation]) -> str:
    """Unit tests that call a stub of each implementation directly."""
    out: list[str] = []
    for impl in impls:
        s, stem = impl.spec, impl.bindings.stem
        for m in s.methods:
            args = [_rust_sample(p.type, stem) for p in m.params]
            if None not in args:
                break
        else:
            continue  # every method takes a host function
        trait = f"crate::{stem}::{gen_rust.snake(s.name)}::{s.name}"
        binding = "instance" if s.thread_safe else "mut instance"
        out += [
            "",
            f"    // A stub: once {s.name}.{m.name} is written, test what it does instead.",
            "    #[test]",
            f"    #[should_panic(expected = {_quoted(f'{s.name}.{m.name}: write it')})]",
            f"    fn {gen_rust.snake(impl.type_name)}_{m.name.lower()}_is_a_stub() {{",
            f"        use {trait};",
            f"        let {binding} = {impl.type_name}::create().unwrap();",
            f"        let _ = instance.{gen_rust.ident(m.name)}({', '.join(a for a in args if a is not None)});",
            "    }",
        ]
    return "\n".join(out) + ("\n" if out else "")


# ------------------------------------------------------------------ C and C++


def c_includes(bindings: Sequence[Bindings], cpp: bool) -> str:
    comment = "ferrule generate wrote it from {}: do not edit"
    comment = f"// {comment}" if cpp else f"/* {comment} */"
    return "".join(f'#include "{b.c_file}" {comment.format(b.module)}\n' for b in bindings)


def _unused(params: Sequence[str]) -> list[str]:
    """(void) casts of the parameters ("const char *text" -> text), which a stub does not use."""
    return ["    (void)" + re.sub(r"^.*?(\w+)$", r"\1", p) + ";" for p in params]


def c_impls(impls: Sequence[Implementation], name: str, ident: str) -> str:
    """The C implementations: a type, the IMPLEMENT macro, create, destroy and the stubs."""
    out: list[str] = []
    for impl in impls:
        s, p = impl.spec, impl.c_prefix
        spec = gen_c.implementer(s, impl.bindings.stem)
        contract = ("Thread-safe: methods of one instance may run on several threads at once."
                    if s.thread_safe else "Not thread-safe: the host never runs two methods of one instance at once.")
        out += [
            f"/* ---- {s.name}: {s.id} revision {s.revision}, from {impl.bindings.module} */",
            "",
            f"/* An instance of {s.name}, made by {p}_create.",
            f" * {contract} */",
            f"typedef struct {p} {{",
            "    int unused; /* the instance's state: your fields here */",
            f"}} {p};",
            "",
            f"/* Turns the {p}_* functions below into {p}_interface, for the descriptor. */",
            f"{spec.macro}({p}, {p}, {_quoted(name)}, {_quoted(_doc(impl, name))});",
            "",
            f"static int32_t {p}_create(const ferrule_host *host, void *plugin_state, {p} **self) {{",
            f"    (void)plugin_state; /* what {ident}_init stored */",
            f"    *self = ({p} *)calloc(1, sizeof **self);",
            "    if (*self == NULL) {",
            '        return ferrule_fail(host, "out of memory");',
            "    }",
            "    return FERRULE_OK;",
            "}",
            "",
            f"static void {p}_destroy(const ferrule_host *host, void *plugin_state, {p} *self) {{",
            "    (void)host;",
            "    (void)plugin_state;",
            "    free(self);",
            "}",
        ]
        for m, fname, params in spec.functions:
            out.append("")
            out += _c_comment(m.doc)
            out += _wrap(f"static int32_t {p}_{fname}(", ["const ferrule_host *host", f"{p} *self", *params], ") {",
                         " " * len(f"static int32_t {p}_{fname}("))
            out += _unused(["self", *params])
            out.append(f"    return ferrule_fail(host, {_quoted(_stub_message(impl, m, 'plugin.c'))});")
            out.append("}")
        out.append("")
    return "\n".join(out) + "\n"


def cpp_impls(impls: Sequence[Implementation], name: str, ident: str) -> str:
    """The C++ implementations: a class, the IMPLEMENT macro, create, destroy
    and the stubs, each inside ferrule::guard."""
    out: list[str] = [
        "// What a stub throws; ferrule::guard makes it a PluginCallError with this message.",
        "std::logic_error not_implemented(const char *method) {",
        '    return std::logic_error(std::string(method) + " is not implemented yet: write it in plugin.cpp");',
        "}",
        "",
    ]
    for impl in impls:
        s, p, cls = impl.spec, impl.c_prefix, impl.type_name
        spec = gen_c.implementer(s, impl.bindings.stem)
        contract = ("// Thread-safe: methods of one instance may run on several threads at once\n"
                    "// (protect its state with a std::mutex)."
                    if s.thread_safe else
                    "// Not thread-safe: the host never runs two methods of one instance at once.")
        out += [
            f"// ---- {s.name}: {s.id} revision {s.revision}, from {impl.bindings.module}",
            "",
            f"// An instance of {s.name}: made in {p}_create, deleted in {p}_destroy.",
            *contract.splitlines(),
            f"class {cls} {{",
            "    // the instance's state: your members here",
            "};",
            "",
            f"// Turns the {p}_* functions below into {p}_interface, for the descriptor.",
            f"{spec.macro}({p}, {cls}, {_quoted(name)}, {_quoted(_doc(impl, name))});",
            "",
            f"int32_t {p}_create(const ferrule_host *host, void *plugin_state, {cls} **self) {{",
            f"    (void)plugin_state;  // what {ident}_init stored",
            f"    return ferrule::guard(host, [&] {{ *self = new {cls}(); }});",
            "}",
            "",
            f"void {p}_destroy(const ferrule_host *host, void *plugin_state, {cls} *self) {{",
            "    (void)plugin_state;",
            "    ferrule::guard_cleanup(host, [&] { delete self; });",
            "}",
        ]
        for m, fname, params in spec.functions:
            out.append("")
            out += [f"//{' ' + line if line else ''}" for line in m.doc.splitlines()]
            out += _wrap(f"int32_t {p}_{fname}(", ["const ferrule_host *host", f"{cls} *self", *params], ") {",
                         " " * len(f"int32_t {p}_{fname}("))
            out += _unused(["self", *params])
            method = _quoted(f"{s.name}.{m.name}")
            out.append(f"    return ferrule::guard(host, [&] {{ throw not_implemented({method}); }});")
            out.append("}")
        out.append("")
    return "\n".join(out) + "\n"


def c_array(impls: Sequence[Implementation], cpp: bool) -> str:
    static = "" if cpp else "static "
    items = [f"&{impl.c_prefix}_interface" for impl in impls]
    return "\n".join(_wrap(f"{static}const ferrule_interface *const interfaces[] = {{", items, "};", "    ")) + "\n"


def _quoted(text: str) -> str:
    """A C, C++ or Rust string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _c_comment(text: str) -> list[str]:
    lines = [line.replace("*/", "* /") for line in text.splitlines()]
    if not lines:
        return []
    if len(lines) == 1:
        return [f"/* {lines[0]} */"]
    return [f"/* {lines[0]}"] + [f" *{' ' + line if line else ''}" for line in lines[1:]] + [" */"]


# ------------------------------------------------------------------ Python


class PythonNames:
    """How Python code in the project names the declarations: each
    declaration module under its stem (import tests.iface_api as iface_api),
    any other module a struct or handle comes from under _dotted_name."""

    def __init__(self, bindings: Sequence[Bindings]):
        self.aliases = {b.module: b.stem for b in bindings}
        self.used: dict[str, str] = {}

    def of(self, cls: type) -> str:
        module = cls.__module__
        alias = self.aliases.get(module) or "_" + module.replace(".", "_")
        self.used[module] = alias
        return f"{alias}.{cls.__qualname__}"

    def sample(self, t: TypeSpec) -> str:
        """A Python argument of type t."""
        if t.kind == "number":
            return "0.0" if t.name.startswith("f") else "0"
        if t.kind in ("buf", "mutbuf"):
            self.used["array"] = "array"
            return f"array.array({_ARRAY_CODES[t.elem]!r})"
        if t.kind == "struct":
            assert t.struct is not None
            return f"{self.of(t.struct.cls)}({', '.join(self.sample(f.type) for f in t.struct.fields)})"
        if t.kind == "handle":
            assert t.handle is not None
            return f"{self.of(t.handle)}(0)"
        return {"bool": "False", "str": '""', "bytes": 'b""', "fn": "lambda *args: 0"}[t.kind]

    def call(self, impl: Implementation, instance: str) -> str:
        """A call of the implementation's first method on instance."""
        m = impl.spec.methods[0]
        return f"{instance}.{m.name}({', '.join(self.sample(p.type) for p in m.params)})"

    def imports(self) -> list[str]:
        return [f"import {module}" if module == alias else f"import {module} as {alias}"
                for module, alias in sorted(self.used.items())]


def python_checks(impls: Sequence[Implementation], name: str, names: PythonNames) -> str:
    """test_plugin.py's checks that each implementation's first method is a stub."""
    lines = ["        # Each interface: an instance, and a call of a stub. Once a method is written,",
             "        # test what it does instead."]
    for impl in impls:
        call = names.call(impl, "instance")
        lines += [f'        with plugin.create({names.of(impl.spec.cls)}, "{name}") as instance:',
                  f'            expect_stub(lambda: {call}, "{impl.spec.name}.{impl.spec.methods[0].name}")']
    return "\n".join(lines) + "\n"


def python_path(bindings: Sequence[Bindings], directory: str) -> str | None:
    """What PYTHONPATH the project needs to import the declarations again,
    relative to the project when it is inside the directory they import from;
    None when they are installed."""
    roots: list[str] = []
    for b in bindings:
        if b.path is not None and b.path not in roots:
            roots.append(b.path)
    if not roots:
        return None
    project = os.path.abspath(directory)
    shown = []
    for root in roots:
        inside = project == root or project.startswith(root.rstrip(os.sep) + os.sep)
        shown.append(os.path.relpath(root, project) if inside else root)
    return os.pathsep.join(shown)


# ------------------------------------------------------------------ the templates' fields

_README = """
## Interfaces

It implements interfaces that the host declares, each as the implementation
`{name}`:

| interface | id / revision | layout fingerprint | declared in |
|---|---|---|---|
{table}

{stubs}

```sh
{regenerate}
```

A host makes instances of the implementations:

```python
import ferrule
{imports}

with ferrule.load("{library}") as plugin:
    with plugin.create({interface}, "{name}") as instance:
        {call}  # a stub, until you write it: {error}
```

`{validate}` checks the implementations against the declarations and calls
every method with generated arguments.
"""

_FAILURE = {
    "rust": "`todo!()`, a panic, which the host raises as `ferrule.PluginPanicError`",
    "c": "`ferrule_fail`, which the host raises as `ferrule.PluginCallError`",
    "cpp": "a `std::logic_error`, which `ferrule::guard` makes a `ferrule.PluginCallError`",
}

_TEST_HELPER = '''\
def expect_stub(call: Callable[[], object], method: str) -> None:
    """Check that a method is still the stub ferrule new wrote."""
    try:
        call()
    except ferrule.PluginCallError as exc:
        assert f"{method} is not implemented yet" in str(exc), exc
    else:
        raise AssertionError(f"{method} did not fail: it is written now, so test what it does instead")


'''

_TEST_DECLARATIONS = """
try:  # the host's interface declarations (make test sets PYTHONPATH for them)
{imports}
except ImportError as exc:
    sys.exit(f"test_plugin.py: {{exc}}: run make test, or put the directory that the host's declarations import "
             "from on PYTHONPATH")
"""


def fields(lang: str, name: str, ident: str, library: str, directory: str,
           bindings: Sequence[Bindings]) -> dict[str, str]:
    """What the project templates put in for the interfaces: every field is
    empty without any."""
    keys = ["rust_modules", "rust_impls", "rust_exports", "rust_tests", "c_includes", "c_impls", "host_vars",
            "headers", "with_host", "generate_target", "generate_phony",
            "test_declarations", "test_helper", "test_checks", "test_stubs", "interfaces_section"]
    out = dict.fromkeys(keys, "")
    out["test_stdlib"] = "import sys\n"
    out["test_doc"] = f"Load the plugin with ferrule and call its functions: python3 test_plugin.py {library}"
    out["c_interface_fields"] = ("    0, /* interfaces (ABI 1.2): none */\n    0,\n    NULL," if lang == "c"
                                 else "    0,  // interfaces (ABI 1.2): none\n    0,\n    nullptr,")
    if not bindings:
        return out
    impls = plan(bindings, name, ident)
    pythonpath = python_path(bindings, directory)
    env = f"PYTHONPATH={shlex.quote(pythonpath)} " if pythonpath else ""
    source = {"rust": "src/lib.rs", "c": "plugin.c", "cpp": "plugin.cpp"}[lang]
    if lang == "rust":
        out.update(rust_modules=rust_modules(bindings), rust_impls=rust_impls(impls),
                   rust_exports=rust_exports(impls, name), rust_tests=rust_tests(impls))
        regenerate = [f"{env}ferrule generate {b.module} --rust {b.rust_file} --no-lock" for b in bindings]
        files = [b.rust_file for b in bindings]
    else:
        comment = "/* interfaces (ABI 1.2) */" if lang == "c" else "// interfaces (ABI 1.2)"
        out.update(
            c_includes=c_includes(bindings, cpp=lang == "cpp"),
            c_impls="\n" + (c_impls(impls, name, ident) if lang == "c" else cpp_impls(impls, name, ident))
            + c_array(impls, cpp=lang == "cpp"),
            c_interface_fields=f"    sizeof interfaces / sizeof interfaces[0], {comment}\n    0,\n    interfaces,",
            headers="".join(f" {b.c_file}" for b in bindings),
            generate_phony=" generate",
        )
        with_host = ""
        if pythonpath:
            out["host_vars"] = ("# Where the host's interface declarations import from (make test and make generate"
                                f" import them).\nHOST_PYTHONPATH ?= {pythonpath.replace('$', '$$')}\n"
                                'WITH_HOST = PYTHONPATH="$(HOST_PYTHONPATH)$${PYTHONPATH:+:$$PYTHONPATH}"\n')
            with_host = out["with_host"] = "$(WITH_HOST) "
        out["generate_target"] = (
            "\n# Rewrites the interface headers from the host's declarations, after they change.\ngenerate:\n"
            + "".join(f"\t{with_host}$(PYTHON) -m ferrule generate {b.module} --c {b.c_file} --no-lock\n"
                      for b in bindings))
        names = PythonNames(bindings)
        checks = python_checks(impls, name, names)
        imports = names.imports()
        out.update(
            test_doc=("Load the plugin with ferrule, call its functions and make an instance of each\ninterface it "
                      f"implements: python3 test_plugin.py {library}"),
            test_stdlib=("import array\n" if "import array" in imports else "")
            + "import sys\nfrom collections.abc import Callable\n",
            test_declarations=_TEST_DECLARATIONS.format(
                imports="\n".join(f"    {line}" for line in imports if line != "import array")),
            test_helper=_TEST_HELPER,
            test_checks=checks,
            test_stubs=f"; {', '.join(titles(bindings))} {'are stubs' if len(impls) > 1 else 'is a stub'}",
        )
        regenerate = [f"{'make generate' if i == 0 else '':<16} # {env}ferrule generate {b.module} --c {b.c_file} "
                      "--no-lock" for i, b in enumerate(bindings)]
        files = [b.c_file for b in bindings]
    names = PythonNames(bindings)
    first = impls[0]
    call = names.call(first, "instance")
    interface = names.of(first.spec.cls)
    plural = len(files) > 1
    them, they_are = ("them", "they are") if plural else ("it", "it is")
    held = (", ".join(f"`{f}`" for f in files[:-1]) + f" and `{files[-1]}` hold" if plural
            else f"`{files[0]}` holds")
    stubs = textwrap.fill(
        f"Every method is a stub that fails, naming itself ({_FAILURE[lang]}): write them in `{source}`. {held} "
        f"what `ferrule generate` wrote from the host's declarations: do not edit {them}. When the declarations "
        f"change, regenerate {them} from this directory (`--no-lock` leaves the host's lock file alone; `--check` "
        f"only tests that {they_are} current, for CI):", 80, break_on_hyphens=False, break_long_words=False)
    out["interfaces_section"] = _README.format(
        name=name, library=library, stubs=stubs, error="PluginPanicError" if lang == "rust" else "PluginCallError",
        table="\n".join(f"| `{i.spec.name}` | `{i.spec.id}/{i.spec.revision}` | `{i.spec.fingerprint:#018x}` | "
                        f"`{i.bindings.module}` |" for i in impls),
        regenerate="\n".join(regenerate), imports="\n".join(names.imports()), interface=interface,
        call=call, validate=f"{env}ferrule validate {library}" + "".join(f" --interfaces {b.module}" for b in bindings))
    return out
