"""The Rust SDK's public surface is exactly the intended list.

A plugin author uses the crate root of ferrule-sdk and its raw `abi` module;
what `plugin!` and generated interface code call lives under the hidden
`__private` module. Adding, renaming or un-hiding a public item must be a
decision, made here; sdk/rust/tests/public_surface.rs uses every listed item
by its public path. The checks read the sources, so they need no Rust
toolchain."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "sdk" / "rust" / "src"

# Name -> kind of every public item at the crate root (`use`: a re-export).
PUBLIC = {
    "abi": "mod",
    "CallError": "use",
    "Callee": "use",  # what generated clients call through: an Object, or a Rust host's instance
    "HostRef": "use",
    "Object": "use",
    "HostFn": "use",
    "HostFnError": "use",
    "Level": "enum",
    "log": "fn",
    "host": "fn",
    "host_abi_version": "fn",
}
HIDDEN = {"__private": "mod"}
PUBLIC_MACROS = {"plugin", "interface", "trace", "debug", "info", "warn", "error"}

# The raw mirror of sdk/c/include/ferrule.h; tests/test_abi.py checks the layouts.
ABI = {
    **dict.fromkeys(["ABI_MAJOR", "ABI_MINOR", "MAGIC", "OK", "ERROR", "PANIC", "LOG_TRACE", "LOG_DEBUG", "LOG_INFO",
                     "LOG_WARN", "LOG_ERROR", "FN_THREAD_SAFE", "FN_QUICK", "IFACE_THREAD_SAFE", "ENTRY_SYMBOL"],
                    "const"),
    **dict.fromkeys(["FnHandle", "Object", "Bytes", "Buf", "Host", "Function", "Interface", "Plugin"], "struct"),
    "Value": "union",
    **dict.fromkeys(["ReleaseFn", "LogFn", "SetErrorFn", "AllocFn", "FreeFn", "InvokeFn", "QueryFn", "ObjectCallFn",
                     "ReleaseObjectFn", "CallFn", "InitFn", "CreateFn", "DestroyFn", "ShutdownFn", "EntryFn"], "type"),
}

_ITEM = re.compile(
    r"(?P<attrs>(?:#\[[^\]]*\]\s*)*)"
    r"\bpub(?P<restricted>\s*\([^)]*\))?\s+(?:const\s+(?=(?:unsafe\s+)?fn\b))?(?:unsafe\s+)?(?:extern\s+\"\"\s+)?"
    r"(?P<kind>mod|use|fn|enum|struct|union|trait|type|const|static)\b\s*(?P<rest>[^;{]*)"
)
_MACRO = re.compile(r"(?P<attrs>(?:#\[[^\]]*\]\s*)*)macro_rules!\s*(?P<name>\w+)")


_CHAR = re.compile(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'")
_RAW = re.compile(r'r(#*)"')


def _clean(text: str) -> str:
    """The source without comments and with empty string and char literals,
    so that braces and brackets in them do not count."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif (raw := _RAW.match(text, i)) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = text.find('"' + raw.group(1), raw.end())
            i = n if end < 0 else end + 1 + len(raw.group(1))
            out.append('""')
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif text[i] == "'" and (char := _CHAR.match(text, i)):
            i = char.end()
            out.append("' '")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _depths(text: str) -> list[int]:
    depth, out = 0, []
    for ch in text:
        if ch == "}":
            depth -= 1
        out.append(depth)
        if ch == "{":
            depth += 1
    return out


def _use_names(tree: str) -> list[str]:
    """The names a `use` tree brings in: `a::{B, c::D as E, self}` -> B, E, a.
    A glob stays `*`, which no list accepts: the surface must be spelled out."""
    names: list[str] = []
    prefixes: list[str] = []
    leaf = ""
    for token in re.findall(r"[{},]|[^{},]+", tree + ","):
        if token == "{":
            prefixes.append(leaf.strip())
        elif token not in ",}":
            leaf += token
            continue
        else:
            leaf = " ".join(leaf.split())
            alias = re.search(r"\bas\s+(\w+)$", leaf)
            if alias:
                names.append(alias.group(1))
            elif leaf == "self":
                names.append(prefixes[-1].rstrip(":").rsplit("::", 1)[-1])
            elif leaf:
                names.append(leaf.rsplit("::", 1)[-1])
            if token == "}":
                prefixes.pop()
        leaf = ""
    return names


def top_level_items(path: Path) -> dict[str, tuple[str, bool]]:
    """Name -> (kind, doc-hidden) of every `pub` item at the top level of a file."""
    return _items(path.read_text(), path.name)


def _items(source: str, where: str) -> dict[str, tuple[str, bool]]:
    text = _clean(source)
    depth = _depths(text)
    items: dict[str, tuple[str, bool]] = {}
    for m in _ITEM.finditer(text):
        if depth[m.start()] != 0 or m.group("restricted"):
            continue
        hidden = "doc(hidden)" in m.group("attrs").replace(" ", "")
        kind = m.group("kind")
        if kind == "use":
            tree = text[m.start("rest"):text.index(";", m.start("rest"))]
            names = _use_names(tree)
        else:
            names = [re.match(r"\w+", m.group("rest")).group(0)]  # type: ignore[union-attr]
        for name in names:
            assert name not in items, f"{where}: {name} is declared twice"
            items[name] = (kind, hidden)
    return items


def exported_macros() -> dict[str, bool]:
    """Name -> doc-hidden of every `#[macro_export]` macro (exported at the crate root from any file)."""
    found = {}
    for path in sorted(SRC.glob("*.rs")):
        for m in _MACRO.finditer(_clean(path.read_text())):
            attrs = m.group("attrs").replace(" ", "")
            if "#[macro_export]" in attrs:
                found[m.group("name")] = "doc(hidden)" in attrs
    return found


def test_the_crate_root_exports_exactly_the_author_facing_items() -> None:
    items = top_level_items(SRC / "lib.rs")
    assert {n: k for n, (k, hidden) in items.items() if not hidden} == PUBLIC
    assert {n: k for n, (k, hidden) in items.items() if hidden} == HIDDEN


def test_only_the_author_facing_macros_are_visible() -> None:
    macros = exported_macros()
    assert {n for n, hidden in macros.items() if not hidden} == PUBLIC_MACROS
    helpers = {n for n, hidden in macros.items() if hidden}
    assert helpers and all(n.startswith("__ferrule_") for n in helpers), helpers


def test_the_abi_module_mirrors_the_header_and_nothing_else() -> None:
    items = top_level_items(SRC / "abi.rs")
    assert {n: k for n, (k, _) in items.items()} == ABI
    assert not any(hidden for _, hidden in items.values())


def test_the_crate_keeps_its_lints() -> None:
    text = (SRC / "lib.rs").read_text()
    assert "#![warn(missing_docs)]" in text
    assert "#![deny(unsafe_op_in_unsafe_fn)]" in text


def _paths(text: str, prefix: str) -> set[str]:
    return set(re.findall(re.escape(prefix) + r"(\w+)", text))


def test_macros_expand_to_public_or_private_paths_only() -> None:
    """`$crate::X` in a macro is a public item, a macro, or `__private`."""
    allowed = set(PUBLIC) | PUBLIC_MACROS | set(exported_macros()) | set(HIDDEN)
    for path in (SRC / "lib.rs", SRC / "macros.rs", SRC / "interface_macro.rs"):
        used = _paths(_clean(path.read_text()), "$crate::")
        assert used <= allowed, f"{path.name}: {sorted(used - allowed)}"


def test_generated_rust_names_public_items_or_the_private_iface() -> None:
    """Generated code reaches machinery through `__private::iface` only and
    names everything else by its public path (the generator's output is
    these files, see test_generate.py)."""
    generated = [ROOT / "tests" / "plugins" / "generated" / "iface_api.rs",
                 ROOT / "examples" / "pipeline" / "generated" / "pipeline_api.rs"]
    for path in generated:
        text = _clean(path.read_text())
        assert _paths(text, "ferrule_sdk::") <= set(PUBLIC) | set(HIDDEN), path
        assert _paths(text, "ferrule_sdk::__private::") == {"iface"}, path


def test_the_parser_sees_what_it_must() -> None:
    """The checks above are only as good as the parsing: it must skip nested
    and restricted items and find doc-hidden ones."""
    sample = '''
        /// doc with pub fn fake() { in a comment, the host's "quote
        pub mod a;
        #[doc(hidden)]
        #[path = "x{.rs"]
        pub mod b;
        pub(crate) fn c() {}
        pub use m::{D, e::F as G, self};
        pub unsafe extern "C" fn h<'a>(x: &'a str) -> char { '{' }
        pub const fn i() {}
        pub const J: &str = "}\\"{";
        /* pub fn block() {} */
        pub static K: &str = r#"pub fn raw() {"#;
        impl L { pub fn nested() {} }
        mod m { pub fn nested2() {} }
    '''
    assert _items(sample, "sample") == {
        "a": ("mod", False), "b": ("mod", True), "D": ("use", False), "G": ("use", False), "h": ("fn", False),
        "m": ("use", False), "i": ("fn", False), "J": ("const", False), "K": ("static", False),
    }
