"""``ferrule new``: write a plugin project (Rust, C or C++) that builds,
tests and packages as it is, so a plugin author starts from something that
works rather than from a copied example.

The templates are strings here, not package data: they are small, and a
string cannot go missing from an install.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._abi.spec import ID_RE
from .interfaces import Bindings, python_path, resolve, titles
from .interfaces import fields as interface_fields

__all__ = ["LANGUAGES", "ScaffoldError", "Names", "add_parser", "find_sdk", "names", "scaffold"]

LANGUAGES = ("rust", "c", "cpp")

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_NAME_MAX = 64  # the crate registry's limit; also keeps file names reasonable
# Names cargo refuses for a package: Rust keywords and the built-in crates.
_RUST_RESERVED = frozenset("""
    as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move
    mut pub ref return self static struct super trait true type unsafe use where while abstract become box do final
    macro override priv typeof unsized virtual yield try gen union Self
    std core alloc proc_macro proc-macro test
""".split())


class ScaffoldError(Exception):
    """The project cannot be written where asked (the message says why)."""


@dataclass(frozen=True)
class Names:
    """What the templates call the plugin."""

    name: str  # as given: the crate, project and directory name
    ident: str  # a C identifier: the prefix of C names, and the library's stem
    library: str  # the file the build makes, relative to the project
    plugin_id: str


def names(name: str, lang: str, plugin_id: str | None = None) -> Names:
    """Check name (and the plugin id) and derive the rest. Raises ValueError
    saying what is wrong."""
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_-"))})
        why = (f"it holds {', '.join(repr(c) for c in bad)}" if bad
               else "it is empty" if not name else "it does not start with a letter")
        raise ValueError(f"plugin name {name!r} is not usable: {why}. The name becomes a crate name, a C "
                         "identifier and a file name, so it must be letters, digits, _ and -, starting with a "
                         "letter (e.g. my_plugin or word-count)")
    if len(name) > _NAME_MAX:
        raise ValueError(f"plugin name {name!r} is {len(name)} characters long; at most {_NAME_MAX} are allowed")
    if name in _RUST_RESERVED:
        raise ValueError(f"plugin name {name!r} is a Rust keyword or a built-in crate's name, which cargo refuses "
                         "as a crate name: choose another (e.g. my_" + name.replace("-", "_") + ")")
    if re.sub(r"[-_.]+", "_", name).lower() == "ferrule":
        raise ValueError(f"plugin name {name!r} would make a Python package named ferrule, clashing with ferrule "
                         "itself: choose another")
    ident = name.replace("-", "_")
    plugin_id = plugin_id if plugin_id is not None else f"org.example.{name}"
    if not ID_RE.fullmatch(plugin_id):
        raise ValueError(f"plugin id {plugin_id!r} is not reverse-DNS: give at least two dot-separated parts of "
                         "letters, digits, _ and -, like org.example.greeter")
    library = f"target/release/lib{ident}.so" if lang == "rust" else f"build/lib{ident}.so"
    return Names(name, ident, library, plugin_id)


def find_sdk() -> str | None:
    """The Rust SDK of the checkout ferrule runs from (src/ferrule/../../sdk/rust),
    or None for an installed ferrule, which carries no Rust sources."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # src/ferrule
    sdk = os.path.normpath(os.path.join(package, os.pardir, os.pardir, "sdk", "rust"))
    return sdk if os.path.isfile(os.path.join(sdk, "Cargo.toml")) else None


def _toml(text: str) -> str:
    """text as a TOML literal string when it can be one (paths: no escapes
    needed for backslashes), else a basic string."""
    if "'" not in text and "\n" not in text:
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- Rust

_CARGO = """\
[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
{sdk_dependency}

# A workspace of its own, so that it builds also when created inside another
# cargo workspace (which would otherwise claim it as a member).
[workspace]
"""

_LIB_RS = """\
//! {name}: a ferrule plugin. Build with `cargo build --release`: the
//! plugin is `{library}`.

{rust_modules}// The plain functions hold the logic, so that the unit tests below call them
// directly, without a host.
fn greeting(name: &str) -> String {{
    format!("Hello, {{name}}!")
}}

fn checked_divide(a: f64, b: f64) -> Result<f64, String> {{
    if b == 0.0 {{
        Err("division by zero: b must not be 0".to_string())
    }} else {{
        Ok(a / b)
    }}
}}

{rust_impls}ferrule_sdk::plugin! {{
    id: {id},  // reverse-DNS and yours: change it before you publish
    name: {name_str},
    version: env!("CARGO_PKG_VERSION"),
    description: "A ferrule plugin.",
    functions: {{
        /// Greet someone by name.
        fn greet(name: &str) -> String {{
            greeting(name)
        }}

        /// Divide a by b; fails when b is 0 (an Err becomes a PluginCallError in Python).
        fn divide(a: f64, b: f64) -> Result<f64, String> {{
            checked_divide(a, b)
        }}
    }}{rust_exports}
}}

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn greets() {{
        assert_eq!(greeting("Ada"), "Hello, Ada!");
    }}

    #[test]
    fn divides_and_refuses_zero() {{
        assert_eq!(checked_divide(1.0, 4.0), Ok(0.25));
        assert!(checked_divide(1.0, 0.0).unwrap_err().contains("division by zero"));
    }}
{rust_tests}}}
"""

_RUST_README = """\
# {name}

A ferrule plugin in Rust, made by `ferrule new`. Its id, `{plugin_id}`, is in
`src/lib.rs`: change it to a reverse-DNS name of your own.

```sh
cargo build --release      # the plugin: {library}
cargo test                 # the unit tests of the plain functions in src/lib.rs
ferrule inspect {library}
ferrule call {library} greet Ada
ferrule validate {library}   # conformance checks (--level 5: also threads and leaks)
pip wheel . -w dist/       # a wheel that ferrule hosts find once installed
```

{sdk_note}
{interfaces_section}"""

_SDK_PATH_NOTE = """\
`Cargo.toml` depends on the ferrule SDK by a path into the ferrule checkout it
was made from; a wheel's sdist does not carry that path along."""

_SDK_VERSION_NOTE = """\
`Cargo.toml` asks for `ferrule-sdk = "0.1"`, but the crate is not published to
the crate registry yet: until it is, point it at a ferrule checkout's SDK,
`ferrule-sdk = {{ path = "/path/to/ferrule/sdk/rust" }}`."""

_RUST_GITIGNORE = """\
/target/
/dist/
*.whl
__pycache__/
"""


# -- C and C++

_C_SOURCE = """\
/* {name}: a ferrule plugin in C. Build with `make`: the plugin is {library}. */
#include <stdio.h>
#include <stdlib.h>

#include "ferrule.h"
{c_includes}
typedef struct {ident}_state {{
    uint64_t calls; /* a plain counter: the functions are not marked thread-safe,
                       so the host serialises calls into one instance */
}} {ident}_state;

static int32_t {ident}_init(const ferrule_host *host, const char *config, size_t config_len, void **state) {{
    {ident}_state *s = ({ident}_state *)calloc(1, sizeof *s);
    (void)config;
    (void)config_len;
    if (s == NULL) {{
        return ferrule_fail(host, "out of memory");
    }}
    *state = s;
    return FERRULE_OK;
}}

static void {ident}_shutdown(const ferrule_host *host, void *state) {{
    (void)host;
    free(state);
}}

/* The result is a host-allocated copy, which the host frees. */
static int32_t {ident}_greet(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {{
    char text[256];
    int n;
    ((({ident}_state *)state)->calls)++;
    n = snprintf(text, sizeof text, "Hello, %.*s!", (int)(args[0].bytes.len > 200 ? 200 : args[0].bytes.len),
                 (const char *)args[0].bytes.ptr);
    if (n < 0) {{
        return ferrule_fail(host, "greet: cannot format the greeting");
    }}
    return ferrule_return_copy(host, ret, text, (size_t)n);
}}

static int32_t {ident}_divide(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {{
    ((({ident}_state *)state)->calls)++;
    if (args[1].f64 == 0.0) {{
        return ferrule_fail(host, "division by zero: b must not be 0"); /* a PluginCallError in Python */
    }}
    ret->f64 = args[0].f64 / args[1].f64;
    return FERRULE_OK;
}}

static const ferrule_function f_greet =
    FERRULE_FUNCTION("greet", "(name: str) -> str", "Greet someone by name (up to 200 bytes of it).", 0, {ident}_greet);
static const ferrule_function f_divide =
    FERRULE_FUNCTION("divide", "(a: f64, b: f64) -> f64", "Divide a by b; fails when b is 0.", 0, {ident}_divide);

static const ferrule_function *const functions[] = {{&f_greet, &f_divide}};
{c_impls}
static const ferrule_plugin descriptor = {{
    FERRULE_PLUGIN_HEAD,
    {id}, /* reverse-DNS and yours: change it before you publish */
    {name_str},
    "0.1.0",
    "A ferrule plugin.",
    NULL, /* license */
    sizeof functions / sizeof functions[0],
    0,
    functions,
    {ident}_init,
    {ident}_shutdown,
{c_interface_fields}
}};

FERRULE_ENTRY {{ return &descriptor; }}
"""

_CPP_SOURCE = """\
// {name}: a ferrule plugin in C++17. Build with `make`: the plugin is {library}.
// Its state is a C++ object made in init and deleted in shutdown, its text
// results are std::strings, and every entry from the host runs inside
// ferrule::guard, so that an exception becomes an error in Python instead of
// aborting the process.
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "ferrule.h"
{c_includes}
namespace {{

std::string_view text_arg(const ferrule_value &value) {{
    return {{static_cast<const char *>(value.bytes.ptr), value.bytes.len}};
}}

// One instance's state; its members free themselves.
class Plugin {{
public:
    explicit Plugin(std::string_view config) : config_(config) {{}}

    std::string greet(std::string_view name) {{
        calls_++;
        return "Hello, " + std::string(name) + "!";
    }}

    double divide(double a, double b) {{
        calls_++;
        if (b == 0.0) {{
            throw std::invalid_argument("division by zero: b must not be 0");  // a PluginCallError in Python
        }}
        return a / b;
    }}

private:
    std::string config_;
    uint64_t calls_ = 0;  // plain: the functions are not thread-safe, so the host serialises calls
}};

Plugin &plugin(void *state) {{ return *static_cast<Plugin *>(state); }}

int32_t {ident}_init(const ferrule_host *host, const char *config, size_t config_len, void **state) {{
    return ferrule::guard(host, [&] {{ *state = std::make_unique<Plugin>(std::string_view(config, config_len)).release(); }});
}}

void {ident}_shutdown(const ferrule_host *host, void *state) {{
    ferrule::guard_cleanup(host, [&] {{ delete static_cast<Plugin *>(state); }});
}}

int32_t {ident}_greet(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {{
    return ferrule::guard(host, [&] {{
        std::string text = plugin(state).greet(text_arg(args[0]));
        return ferrule_return_copy(host, ret, text.data(), text.size());  // the host copies, then frees
    }});
}}

int32_t {ident}_divide(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {{
    return ferrule::guard(host, [&] {{ ret->f64 = plugin(state).divide(args[0].f64, args[1].f64); }});
}}

const ferrule_function f_greet =
    FERRULE_FUNCTION("greet", "(name: str) -> str", "Greet someone by name.", 0, {ident}_greet);
const ferrule_function f_divide =
    FERRULE_FUNCTION("divide", "(a: f64, b: f64) -> f64", "Divide a by b; fails when b is 0.", 0, {ident}_divide);

const ferrule_function *const functions[] = {{&f_greet, &f_divide}};
{c_impls}
const ferrule_plugin descriptor = {{
    FERRULE_PLUGIN_HEAD,
    {id},  // reverse-DNS and yours: change it before you publish
    {name_str},
    "0.1.0",
    "A ferrule plugin.",
    nullptr,  // license
    sizeof functions / sizeof functions[0],
    0,
    functions,
    {ident}_init,
    {ident}_shutdown,
{c_interface_fields}
}};

}}  // namespace

FERRULE_ENTRY {{ return &descriptor; }}
"""

_MAKEFILE = """\
# Builds {library} against the header of the installed ferrule; ferrule.build
# (pip wheel .) sets FERRULE_INCLUDE itself.
FERRULE_INCLUDE ?= $(shell ferrule --include)
ifeq ($(strip $(FERRULE_INCLUDE)),)
$(error cannot find ferrule.h: install ferrule (pip install ferrule) or run make FERRULE_INCLUDE=/path/to/include)
endif
PYTHON ?= python3
{host_vars}{compiler_var}
FLAGS = -shared -fPIC -fvisibility=hidden -Wall -Wextra -Werror
LIBRARY = {library}

all: $(LIBRARY)

$(LIBRARY): {source}{headers} $(FERRULE_INCLUDE)/ferrule.h
\t@mkdir -p $(dir $@)
\t{compile}

# Loads the plugin with ferrule and calls its functions.
test: $(LIBRARY)
\t{with_host}$(PYTHON) test_plugin.py $(LIBRARY)
{generate_target}
clean:
\trm -rf build

.PHONY: all test clean{generate_phony}
"""

_C_COMPILE = '$(CC) -std=c99 $(FLAGS) $(CFLAGS) -I"$(FERRULE_INCLUDE)" {source} -o $@ $(LDFLAGS)'
# The version script keeps the weak symbols of std::string & co. from being
# exported despite -fvisibility=hidden: the entry stays the only export.
_CPP_COMPILE = ('$(CXX) -std=c++17 $(FLAGS) $(CXXFLAGS) -I"$(FERRULE_INCLUDE)" '
                '-Wl,--version-script="$(FERRULE_INCLUDE)/ferrule.map" {source} -o $@ $(LDFLAGS)')

_TEST_PLUGIN = '''\
"""{test_doc}"""

{test_stdlib}
import ferrule
{test_declarations}

{test_helper}def main(path: str) -> None:
    with ferrule.load(path) as plugin:
        assert plugin.greet("Ada") == "Hello, Ada!", plugin.greet("Ada")
        assert plugin.divide(1.0, 4.0) == 0.25
        try:
            plugin.divide(1.0, 0.0)
        except ferrule.PluginCallError as exc:
            assert "division by zero" in str(exc), exc
        else:
            raise AssertionError("divide(1, 0) did not fail")
{test_checks}        print(f"ok: {{plugin.id}} {{plugin.version}}: greet and divide work{test_stubs}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else {library!r})
'''

_NATIVE_README = """\
# {name}

A ferrule plugin in {language}, made by `ferrule new`. Its id, `{plugin_id}`, is in
`{source}`: change it to a reverse-DNS name of your own.

```sh
make                       # the plugin: {library} (needs ferrule installed, for ferrule.h)
make test                  # loads it with ferrule and calls its functions (test_plugin.py)
ferrule inspect {library}
ferrule validate {library}   # conformance checks (--level 5: also threads and leaks)
pip wheel . -w dist/       # a wheel that ferrule hosts find once installed
```
{interfaces_section}"""

_NATIVE_GITIGNORE = """\
/build/
/dist/
*.whl
__pycache__/
"""

_PYPROJECT = """\
# Packages the plugin as a wheel that ferrule hosts find through the
# "ferrule.plugins" entry point: pip wheel . -w dist/
[build-system]
requires = ["ferrule[build]"]
build-backend = "ferrule.build"

[project]
name = "{name}"
version = "0.1.0"
description = "A ferrule plugin."
requires-python = ">=3.10"

[tool.ferrule.plugin]
build = {build}
library = "{library}"
"""


def _files(n: Names, lang: str, sdk: str | None, directory: str,
           bindings: Sequence[Bindings] = ()) -> dict[str, str]:
    """The project's files: relative path -> contents."""
    fields: dict[str, Any] = {"name": n.name, "ident": n.ident, "library": n.library, "plugin_id": n.plugin_id,
                              "id": _c_string(n.plugin_id), "name_str": _c_string(n.name)}
    fields.update(interface_fields(lang, n.name, n.ident, n.library, directory, bindings))
    if lang == "rust":
        dependency = f"ferrule-sdk = {{ path = {_toml(sdk)} }}" if sdk else 'ferrule-sdk = "0.1"'
        # The target dir is given so the library lands here even when
        # CARGO_TARGET_DIR or a config points elsewhere.
        build = '["cargo", "build", "--release", "--target-dir", "target"]'
        return {
            "Cargo.toml": _CARGO.format(sdk_dependency=dependency, **fields),
            "src/lib.rs": _LIB_RS.format(**fields),
            **{b.rust_file: b.rust() for b in bindings},
            "pyproject.toml": _PYPROJECT.format(build=build, **fields),
            "README.md": _RUST_README.format(sdk_note=_SDK_PATH_NOTE if sdk else _SDK_VERSION_NOTE.format(),
                                             **fields),
            ".gitignore": _RUST_GITIGNORE,
        }
    source = "plugin.c" if lang == "c" else "plugin.cpp"
    compile_line = (_C_COMPILE if lang == "c" else _CPP_COMPILE).format(source=source)
    compiler_var = "CFLAGS ?= -O2" if lang == "c" else "CXXFLAGS ?= -O2"
    return {
        source: (_C_SOURCE if lang == "c" else _CPP_SOURCE).format(**fields),
        **{b.c_file: b.c() for b in bindings},
        "Makefile": _MAKEFILE.format(source=source, compile=compile_line, compiler_var=compiler_var, **fields),
        "test_plugin.py": _TEST_PLUGIN.format(**fields),
        "pyproject.toml": _PYPROJECT.format(build='["make"]', **fields),
        "README.md": _NATIVE_README.format(language="C" if lang == "c" else "C++", source=source, **fields),
        ".gitignore": _NATIVE_GITIGNORE,
    }


def scaffold(name: str, lang: str, directory: str | None = None, plugin_id: str | None = None,
             sdk: str | None = None, interfaces: Sequence[Bindings] = ()) -> tuple[str, Names]:
    """Write the project for name into directory (default ./name); sdk is the
    Rust SDK's directory for a path dependency, None for a version one;
    interfaces (from interfaces.resolve) are what it implements, with stubs.
    Returns the directory and the names used. Raises ValueError for a bad
    name or id, ScaffoldError for a directory that cannot be used."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    n = names(name, lang, plugin_id)
    directory = directory if directory is not None else name
    if os.path.lexists(directory):
        if not os.path.isdir(directory):
            raise ScaffoldError(f"{directory} exists and is not a directory: choose another with --dir")
        if os.listdir(directory):
            raise ScaffoldError(f"{directory} exists and is not empty: ferrule new writes only into a new or empty "
                                "directory, so that it overwrites nothing; choose another with --dir")
    files = _files(n, lang, sdk, directory, interfaces)
    for rel, text in files.items():
        path = os.path.join(directory, *rel.split("/"))
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "x", encoding="utf-8") as f:  # "x": never overwrite, even in a race
            f.write(text)
    return directory, n


def _next_steps(directory: str, lang: str, n: Names, bindings: Sequence[Bindings] = ()) -> str:
    build, test = ("cargo build --release", "cargo test") if lang == "rust" else ("make", "make test")
    language = {"rust": "Rust", "c": "C", "cpp": "C++"}[lang]
    implemented = titles(bindings)
    source = {"rust": "src/lib.rs", "c": "plugin.c", "cpp": "plugin.cpp"}[lang]
    validate_args = "".join(f" --interfaces {b.module}" for b in bindings)
    pythonpath = python_path(bindings, directory) if bindings else None
    validate_env = f"PYTHONPATH={shlex.quote(pythonpath)} " if pythonpath else ""  # where the declarations import from
    stubs = (f"It implements {', '.join(implemented)}: every method is a stub that fails until you write it in "
             f"{source}.\n" if implemented else "")
    return (f"Wrote a {language} ferrule plugin, {n.plugin_id}, in {directory}. {stubs}Next:\n"
            f"  cd {shlex.quote(directory)}\n"
            f"  {build:<22}  # builds {n.library}\n"
            f"  {test:<22}  # runs its tests\n"
            f"  ferrule inspect {n.library}\n"
            f"  {validate_env}ferrule validate {n.library}{validate_args}\n"
            f"  pip wheel . -w dist/    # packages it as a wheel\n"
            f"Change the plugin id ({n.plugin_id}) to one of your own: see README.md.")


def _run(args: argparse.Namespace) -> int:
    sdk = find_sdk() if args.lang == "rust" else None
    names(args.name, args.lang, args.id)  # a bad name is reported before the modules are imported
    bindings = resolve(args.interface or [])
    directory, n = scaffold(args.name, args.lang, args.dir, args.id, sdk, bindings)
    print(_next_steps(directory, args.lang, n, bindings))
    if args.lang == "rust" and sdk is None:
        print('Note: Cargo.toml asks for ferrule-sdk = "0.1", which is not published yet: see README.md.')
    return 0


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "new",
        help="write a plugin project (Rust, C or C++) that builds, tests and packages as it is",
        description="Write a plugin project named NAME into DIR (default ./NAME), which must be new or empty: "
        "the sources with two example functions, a test, the build file (Cargo.toml or a Makefile) and a "
        "pyproject.toml that packages it as a wheel with ferrule.build. With --interface it also implements "
        "interfaces the host declares: the bindings ferrule generate writes from the declarations, and an "
        "implementation of each whose methods are stubs that fail, naming themselves, until written.",
    )
    cmd.add_argument("name", metavar="NAME", help="the plugin's name: letters, digits, _ and -, starting with a letter")
    cmd.add_argument("--lang", required=True, choices=LANGUAGES, help="the plugin's language")
    cmd.add_argument("--dir", default=None, metavar="DIR", help="where to write it (default ./NAME)")
    cmd.add_argument("--id", default=None, metavar="ID", help="the plugin id, reverse-DNS (default org.example.NAME)")
    cmd.add_argument("--interface", action="append", metavar="MODULE[:Interface]",
                     help="implement a host-defined interface: Interface, declared with @ferrule.idl.interface in "
                     "MODULE (imported from the current directory, then sys.path, as ferrule generate does); "
                     "MODULE alone: every interface it declares. Writes the generated bindings and an "
                     "implementation whose methods are stubs. Repeatable")
    cmd.set_defaults(run=_run)
