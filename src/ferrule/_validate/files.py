"""The file checks of ``ferrule validate``: what the library file says about
itself, read with pyelftools. Nothing of the plugin runs, and nothing is
loaded: the checks read its ELF headers, dynamic section, dynamic symbol
table and symbol versions, and look names up in this process.

Each check is one ``Check`` (ids ``file.*``). When the file is not an ELF
shared library for this interpreter, ``file.elf`` fails with the message
``ferrule.load`` gives and the other checks are skipped.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
from elftools.elf.sections import SymbolTableSection

from .._abi import cdef as abi
from .._abi.descriptor import ENTRY_SYMBOL, _refuse_a_cxx_entry
from .._errors import LibraryError, NoEntryPointError
from .._loader.elf import check_header, host_description
from .._loader.library import _not_found
from .._scan.deps import Located, locate
from .report import Check, timed

__all__ = ["file_checks"]

# What a pyelftools read of a damaged file raises: the check it belongs to fails.
_MALFORMED = (ELFError, ConstructError, OSError, ValueError, LookupError, struct.error)

# What a dynamic lookup can find (the loader's rules; elf.defined_symbols
# uses the same): bindings GLOBAL, WEAK and GNU_UNIQUE (pyelftools' STB_LOOS),
# visibilities DEFAULT and PROTECTED.
_EXPORTED_BINDINGS = {"STB_GLOBAL", "STB_WEAK", "STB_LOOS"}
_EXPORTED_VISIBILITIES = {"STV_DEFAULT", "STV_PROTECTED"}
# Symbols the linker itself defines. GNU ld up to about 2.35 exported these
# from every shared library; the binutils 2.40 (gcc 12), g++ and rustc
# (lld) here export none of them. Harmless: every library has its own.
_LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start", "__bss_start__", "__bss_end__",
                   "_bss_end__", "__end__"}

_DF_TEXTREL, _DF_STATIC_TLS = 0x4, 0x10  # DT_FLAGS
_DF_1_PIE = 0x08000000  # DT_FLAGS_1: a position-independent executable (glibc's dlopen refuses it since 2.30)

# The libraries a manylinux wheel may link against without bundling them:
# they are part of every Linux distribution the manylinux policies cover.
# Source: PEP 599 (the manylinux2014 list) and PEP 600, as auditwheel's
# policy file (auditwheel/policy/manylinux-policy.json, "lib_whitelist") has
# it for manylinux_2_28 and later (libexpat, libz, libmvec, libatomic and
# libanl were added to PEP 599's list there). The dynamic loader itself
# (ld-linux*.so, ld64.so.*) is also always there: auditwheel skips it.
_EVERYWHERE = frozenset({
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
    "libresolv.so.2", "libnsl.so.1", "libanl.so.1", "libmvec.so.1", "libgcc_s.so.1", "libstdc++.so.6",
    "libatomic.so.1", "libz.so.1", "libexpat.so.1", "libX11.so.6", "libXext.so.6", "libXrender.so.1",
    "libICE.so.6", "libSM.so.6", "libGL.so.1", "libgobject-2.0.so.0", "libgthread-2.0.so.0",
    "libglib-2.0.so.0",
})
_LOADERS = re.compile(r"ld-linux.*\.so(\.\d+)*|ld64\.so\.\d+")
_RUST_STD = re.compile(r"lib(std|test)-[0-9a-f]+\.so")
_GLIBC_VERSION = re.compile(r"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?")
# An entry point that lost its name to Rust's mangling: a function without
# #[no_mangle] (legacy mangling: _ZN...16ferrule_entry_v117h<hash>E; v0: _R...).
_RUST_MANGLED = re.compile(r"_ZN.*16ferrule_entry_v117h[0-9a-f]{16}E|_R.*ferrule_entry_v1.*")

_CHECKS: tuple[tuple[str, str], ...] = (
    ("file.entry", f"exports the entry point {ENTRY_SYMBOL}"),
    ("file.exports", "exports nothing else"),
    ("file.needed", "the libraries it needs are found, and found on other machines too"),
    ("file.symbol-versions", "the glibc (and libstdc++, libgcc) versions it needs"),
    ("file.exec-stack", "does not ask for an executable stack"),
    ("file.textrel", "no text relocations"),
    ("file.static-tls", "no static TLS"),
)


def file_checks(path: str, *, glibc: str | None = None) -> list[Check]:
    """The file checks of the library at ``path``, in a fixed order.

    ``glibc``, e.g. "2.28" (or "manylinux_2_28"), is the oldest glibc the
    plugin must load on: needing a newer one fails file.symbol-versions.
    Raises ValueError for a ``glibc`` that is no such version.
    """
    target = None if glibc is None else _parse_glibc(glibc)
    path = os.path.abspath(os.path.expanduser(path))  # as load has it, for the same messages
    first = Check("file.elf", "an ELF shared library for this interpreter")
    checks = [first]
    with timed(first):
        library = _open(path, first)
    if library is None:
        reason = ("not run: ELF file checks run on Linux only" if first.status == "skip"
                  else "not run: the file is not an ELF shared library for this interpreter (file.elf)")
        checks.extend(Check(check_id, title, "skip", reason) for check_id, title in _CHECKS)
        return checks
    runs: dict[str, Callable[[_Library, Check], None]] = {
        "file.entry": _entry,
        "file.exports": _exports,
        "file.needed": _needed,
        "file.symbol-versions": functools.partial(_symbol_versions, target=target),
        "file.exec-stack": _exec_stack,
        "file.textrel": _textrel,
        "file.static-tls": _static_tls,
    }
    with library:
        for check_id, title in _CHECKS:
            check = Check(check_id, title)
            with timed(check), _malformed(check, library.name):
                runs[check_id](library, check)
            checks.append(check)
    return checks


def _parse_glibc(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(?:manylinux_)?(\d+)[._](\d+)", text.strip())
    if match is None:
        raise ValueError(f"glibc version {text!r}: expected MAJOR.MINOR, e.g. 2.28 (or manylinux_2_28)")
    return int(match[1]), int(match[2])


@contextmanager
def _malformed(check: Check, name: str) -> Iterator[None]:
    """A table pyelftools cannot read fails the check that reads it, not the run."""
    try:
        yield
    except _MALFORMED as exc:
        check.status = "fail"
        check.message = (f"{name} is damaged: the part of it this check reads could not be read "
                         f"({type(exc).__name__}: {exc}); the dynamic loader may refuse it too: rebuild it")
        check.details = []


# -- the file, read once --------------------------------------------------


@dataclass(frozen=True)
class _Symbol:
    name: str
    bind: str  # STB_GLOBAL, STB_WEAK, STB_LOOS (GNU_UNIQUE), STB_LOCAL
    type: str  # STT_FUNC, STT_OBJECT, ...
    visibility: str
    section: int | str  # an index, or SHN_UNDEF, SHN_ABS
    index: int  # in its table

    @property
    def defined(self) -> bool:
        return self.section != "SHN_UNDEF"

    @property
    def exported(self) -> bool:
        return (self.defined and self.bind in _EXPORTED_BINDINGS and self.visibility in _EXPORTED_VISIBILITIES
                and self.type not in ("STT_SECTION", "STT_FILE") and bool(self.name))


class _Library:
    """One open ELF file and what the checks read of it, each part read on
    first use (so that its time counts to the check that needs it)."""

    def __init__(self, path: str, stream: IO[bytes]):
        self.path = path
        self.name = os.path.basename(path)
        self.origin = os.path.dirname(os.path.abspath(path))  # $ORIGIN: the path as given, as glibc has it
        self._stream = stream
        self.elf = ELFFile(stream)

    def __enter__(self) -> _Library:
        return self

    def __exit__(self, *_: object) -> None:
        self._stream.close()

    @functools.cached_property
    def dynamic(self) -> DynamicSegment | None:
        """PT_DYNAMIC, as the loader reads it (section headers may be stripped)."""
        for segment in self.elf.iter_segments():
            if isinstance(segment, DynamicSegment):
                return segment
        return None

    @functools.cached_property
    def tags(self) -> list[tuple[str, Any]]:
        """(d_tag, the tag object) of the dynamic section, in order."""
        if self.dynamic is None:
            return []
        return [(tag.entry.d_tag, tag) for tag in self.dynamic.iter_tags()]

    def tag_value(self, name: str) -> int:
        return next((int(tag.entry.d_val) for d_tag, tag in self.tags if d_tag == name), 0)

    @property
    def needed(self) -> list[str]:
        return [str(tag.needed) for d_tag, tag in self.tags if d_tag == "DT_NEEDED"]

    def search_path(self, kind: str) -> list[str]:
        """DT_RUNPATH's or DT_RPATH's entries, as written."""
        attribute = {"DT_RUNPATH": "runpath", "DT_RPATH": "rpath"}[kind]
        for d_tag, tag in self.tags:
            if d_tag == kind:
                return [d for d in str(getattr(tag, attribute)).split(":") if d]
        return []

    def expand(self, entry: str) -> str:
        return os.path.normpath(entry.replace("${ORIGIN}", self.origin).replace("$ORIGIN", self.origin))

    @functools.cached_property
    def symbols(self) -> list[_Symbol]:
        """The dynamic symbol table (else PT_DYNAMIC's, when section headers are stripped)."""
        table = next((s for s in self.elf.iter_sections() if isinstance(s, SymbolTableSection)
                      and s["sh_type"] == "SHT_DYNSYM"), None)
        source: Any = table if table is not None else self.dynamic
        if source is None:
            return []
        return [_Symbol(symbol.name, symbol["st_info"]["bind"], symbol["st_info"]["type"],
                        symbol["st_other"]["visibility"], symbol["st_shndx"], index)
                for index, symbol in enumerate(source.iter_symbols())]

    @functools.cached_property
    def _versym(self) -> GNUVerSymSection | None:
        return next((s for s in self.elf.iter_sections() if isinstance(s, GNUVerSymSection)), None)

    def version_of(self, symbol: _Symbol) -> int:
        """The symbol's .gnu.version index (0 local, 1 global; -1 without
        versions). Read one at a time: the whole table of a large library
        takes pyelftools tens of milliseconds."""
        if self._versym is None or symbol.index >= self._versym.num_symbols():
            return -1
        ndx = self._versym.get_symbol(symbol.index)["ndx"]
        if isinstance(ndx, str):
            return {"VER_NDX_LOCAL": 0, "VER_NDX_GLOBAL": 1}.get(ndx, -1)
        return int(ndx) & 0x7FFF  # without the hidden bit

    def local_symbols(self) -> list[_Symbol]:
        """The full symbol table's defined symbols ([] when stripped)."""
        table = next((s for s in self.elf.iter_sections() if isinstance(s, SymbolTableSection)
                      and s["sh_type"] == "SHT_SYMTAB"), None)
        if table is None:
            return []
        return [_Symbol(s.name, s["st_info"]["bind"], s["st_info"]["type"], s["st_other"]["visibility"],
                        s["st_shndx"], index) for index, s in enumerate(table.iter_symbols())
                if s["st_shndx"] != "SHN_UNDEF"]

    @functools.cached_property
    def version_needs(self) -> dict[int, tuple[str, str]]:
        """.gnu.version_r: version index -> (library, version name)."""
        section = next((s for s in self.elf.iter_sections() if isinstance(s, GNUVerNeedSection)), None)
        needs: dict[int, tuple[str, str]] = {}
        if section is not None:
            for need, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    needs[int(aux["vna_other"]) & 0x7FFF] = (str(need.name), str(aux.name))
        return needs

    @functools.cached_property
    def version_definitions(self) -> set[str]:
        """The names of the versions the library defines (.gnu.version_d)."""
        section = next((s for s in self.elf.iter_sections() if isinstance(s, GNUVerDefSection)), None)
        names: set[str] = set()
        if section is not None:
            for _, auxiliaries in section.iter_versions():
                names.update(str(aux.name) for aux in auxiliaries)
        return names

    @functools.cached_property
    def language(self) -> str:
        """"rust", "c++" or "c": who built it, for advice in its terms."""
        comment = self.elf.get_section_by_name(".comment")
        if comment is not None and b"rustc version" in comment.data():
            return "rust"
        if any(n in ("libstdc++.so.6", "libc++.so.1") for n in self.needed) or any(
                s.name.startswith("_Z") for s in self.symbols if s.exported):
            return "c++"
        return "c"

    @property
    def is_rust_dylib(self) -> bool:
        """crate-type = "dylib": rustc puts the crate's metadata in .rustc."""
        return self.elf.get_section_by_name(".rustc") is not None


def _open(path: str, check: Check) -> _Library | None:
    """file.elf: the header checks load makes, then the rest of what makes
    a library dlopen can load. None unless the file can be checked further."""
    if not sys.platform.startswith("linux"):
        check.status, check.message = "skip", "not run: ELF file checks run on Linux only"
        return None
    check.status = "fail"
    try:
        check_header(path)
        stream = open(path, "rb")
    except LibraryError as exc:  # NotALibraryError, WrongArchitectureError: load's own message
        check.message = str(exc)
        return None
    except FileNotFoundError:  # load's words, too
        check.message = (f"{path} is a symbolic link to {os.readlink(path)!r}, which does not exist: fix or "
                         "remove the link" if os.path.islink(path) else _not_found(path))
        return None
    except OSError as exc:
        check.message = f"cannot read {path}: {exc.strerror or exc}"
        return None
    try:
        library = _Library(path, stream)
        problem = _not_loadable(library)
    except _MALFORMED as exc:
        problem = (f"{path} has a damaged ELF structure ({type(exc).__name__}: {exc}), expected a shared "
                   "library the dynamic loader can read: rebuild it")
    if problem is not None:
        stream.close()
        check.message = problem
        return None
    check.status = "pass"
    check.message = f"{library.name} is an ELF shared library for {host_description()}, as this interpreter is"
    soname = next((str(tag.soname) for d_tag, tag in library.tags if d_tag == "DT_SONAME"), None)
    check.details = [f"SONAME {soname}" if soname else "no SONAME (fine for a plugin: it is loaded by path)"]
    return library


def _not_loadable(library: _Library) -> str | None:
    """Why dlopen refuses an ELF file of type ET_DYN for this machine, if it does."""
    if library.tag_value("DT_FLAGS_1") & _DF_1_PIE:
        return (f"{library.path} is a position-independent executable (PIE), expected a shared library; dlopen "
                "refuses executables (glibc 2.30 and later): link it with -shared "
                '(a Rust crate: crate-type = ["cdylib"])')
    if library.dynamic is None:
        return (f"{library.path} has no dynamic section (PT_DYNAMIC), expected a shared library: it was linked "
                "statically; link it with -shared -fPIC")
    return None


# -- file.entry -----------------------------------------------------------


def _entry(library: _Library, check: Check) -> None:
    path = library.path
    found = [s for s in library.symbols if s.name == ENTRY_SYMBOL]
    defined = [s for s in found if s.defined]
    if defined:
        symbol = defined[0]
        if not symbol.exported:
            _entry_not_exported(check, path, f"its dynamic symbol has {_describe(symbol)}")
        elif symbol.type not in ("STT_FUNC", "STT_LOOS"):  # STT_LOOS: GNU_IFUNC, a function too
            kind = {"STT_OBJECT": "a variable (data object)", "STT_TLS": "a thread-local variable"}.get(
                symbol.type, f"a symbol of type {symbol.type.removeprefix('STT_')}")
            check.status = "fail"
            check.message = (f"{path} exports {ENTRY_SYMBOL} as {kind}, expected the function the host calls: "
                             "define it with the C header's FERRULE_ENTRY (or the Rust SDK's plugin! macro)")
        elif symbol.bind == "STB_WEAK":
            check.status = "warn"
            check.message = (f"{library.name} exports {ENTRY_SYMBOL} as a weak symbol: it loads, but a weak "
                             "entry point is unusual (a __attribute__((weak)) or a default left in a library); "
                             "define it with FERRULE_ENTRY, which makes it a plain global function")
        else:
            check.message = f"{library.name} exports the function {ENTRY_SYMBOL} ({_describe(symbol)})"
        return
    if found:  # in the table, but undefined: a reference
        check.status = "fail"
        check.message = (f"{path} refers to {ENTRY_SYMBOL} but does not define it (declared, never defined), "
                         "expected by every ferrule plugin: define it with the C header's FERRULE_ENTRY or the "
                         "Rust SDK's plugin! macro")
        return
    check.status = "fail"
    exported = {s.name for s in library.symbols if s.exported}
    others = sorted(n for n in exported if re.fullmatch(r"ferrule_entry_v\d+", n))
    if others:  # the words of the AbiVersionError load raises
        major = int(others[0].rsplit("v", 1)[1])
        check.message = (f"{path} exports {others[0]} (ABI {major}), this host speaks ABI {abi.ABI_MAJOR}: "
                         f"rebuild the plugin against ABI {abi.ABI_MAJOR} or use a matching ferrule")
        return
    try:
        _refuse_a_cxx_entry(path)  # load's words for an entry point that lost its C linkage
    except NoEntryPointError as exc:
        check.message = str(exc)
        return
    local = library.local_symbols()
    if any(s.name == ENTRY_SYMBOL for s in local):
        _entry_not_exported(check, path, "it is local (hidden visibility, or local: in a version script)")
        return
    rust = sorted(s.name for s in local if _RUST_MANGLED.fullmatch(s.name))
    if rust:
        check.message = (f"{path} defines the entry point only as the Rust-mangled symbol {', '.join(rust)}, "
                         f"expected the exported C symbol {ENTRY_SYMBOL}: let the Rust SDK's plugin! macro "
                         "define it (by hand it needs #[no_mangle] and extern \"C\")")
        return
    check.message = (f"{path} does not export {ENTRY_SYMBOL}, expected by every ferrule plugin: export it "
                     "with the Rust SDK's plugin! macro or the C header's FERRULE_ENTRY")


def _entry_not_exported(check: Check, path: str, why: str) -> None:
    check.status = "fail"
    check.message = (f"{path} defines {ENTRY_SYMBOL} but does not export it: {why}; expected an exported "
                     "function: define it with the C header's FERRULE_ENTRY, which exports it also under "
                     "-fvisibility=hidden (a version script must list it under global:), or the Rust SDK's "
                     "plugin! macro")


def _describe(symbol: _Symbol) -> str:
    binding = {"STB_LOOS": "GNU_UNIQUE"}.get(symbol.bind, symbol.bind.removeprefix("STB_"))
    kind = {"STT_LOOS": "GNU_IFUNC"}.get(symbol.type, symbol.type.removeprefix("STT_"))
    return f"{kind}, {binding}, {symbol.visibility.removeprefix('STV_')} visibility".lower()


# -- file.exports ---------------------------------------------------------


def _exports(library: _Library, check: Check) -> None:
    extra = [s for s in library.symbols if s.exported and s.name != ENTRY_SYMBOL and s.name not in _LINKER_SYMBOLS
             and not (s.section == "SHN_ABS" and s.name in library.version_definitions)]
    if not extra:
        check.message = f"{library.name} exports {ENTRY_SYMBOL} and nothing else"
        return
    names = list(dict.fromkeys(s.name for s in extra))
    # A protected symbol is bound inside the plugin: only a default one can be interposed.
    interposable = {s.name for s in extra if s.visibility == "STV_DEFAULT"}
    clashes = {name: owner for name in names
               if name in interposable and (owner := _defined_elsewhere(name, library.path)) is not None}
    check.details = [f"{name}: also defined by {clashes[name]}, which this process has loaded" if name in clashes
                     else name for name in names]
    if clashes:
        first = next(iter(clashes))
        owner = os.path.basename(clashes[first])
        listed = ", ".join(f"{n} ({os.path.basename(o)})" for n, o in clashes.items())
        check.status = "fail"
        check.message = (
            f"{library.name} exports {_count(len(clashes), 'symbol')} that a library already loaded in this process "
            f"also defines: {listed}. With default visibility, the dynamic loader binds a name to the first "
            f"definition in the process's global scope, before the plugin's own: the plugin's calls to {first} "
            f"and its function pointers to it reach {owner}'s {first}, not the plugin's (symbol interposition). "
            f"{_fix_clash(library)}"
            + (f" Its other exports (all are in the details) only warn: {_fix_exports(library)}"
               if len(names) > len(clashes) else ""))
        return
    check.status = "warn"
    check.message = (f"{library.name} exports {_count(len(names), 'symbol')} besides {ENTRY_SYMBOL}: other "
                     "libraries and the host can bind to them, and the plugin's calls to them can be bound to "
                     f"another library's symbol of the same name. {_fix_exports(library)}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fix_clash(library: _Library) -> str:
    if library.language == "rust":
        return ("Rename the function, or drop #[no_mangle] from it (the host finds the plugin through "
                f"{ENTRY_SYMBOL} alone).")
    return ("Make it static (in C++ also: an anonymous namespace), or hide it: -fvisibility=hidden, or link "
            "with the version script ferrule.map (-Wl,--version-script=\"$(ferrule --include)/ferrule.map\").")


def _fix_exports(library: _Library) -> str:
    if library.is_rust_dylib:
        return ('It is a Rust dylib (crate-type = ["dylib"]), which exports the whole crate: build it with '
                'crate-type = ["cdylib"].')
    if library.language == "rust":
        return ("A Rust cdylib exports only the entry point by itself: these are #[no_mangle] items (of the "
                "crate or a dependency); drop #[no_mangle] from those the host need not find by name.")
    if library.language == "c++":
        return ("-fvisibility=hidden does not hide the inline and template functions a C++ plugin instantiates "
                "from the standard library: link with the version script ferrule.map, which exports the entry "
                "point alone (-Wl,--version-script=\"$(ferrule --include)/ferrule.map\"), and make the plugin's "
                "own functions static or put them in an anonymous namespace.")
    return ("Make them static, or compile with -fvisibility=hidden (FERRULE_ENTRY still exports the entry "
            "point), or link with the version script ferrule.map "
            "(-Wl,--version-script=\"$(ferrule --include)/ferrule.map\").")


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


@functools.cache
def _dl() -> tuple[Callable[..., Any], Callable[..., Any] | None, int]:
    """dlsym and dladdr (libc since glibc 2.34, libdl before), and the handle
    of the process's global scope: dlopen(NULL), ctypes.CDLL(None)."""
    scope = ctypes.CDLL(None)
    dl = scope
    try:
        dl.dlsym
    except AttributeError:
        dl = ctypes.CDLL("libdl.so.2")
    dlsym = dl.dlsym
    dlsym.restype, dlsym.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
    try:
        dladdr = dl.dladdr
        dladdr.restype, dladdr.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    except AttributeError:
        dladdr = None
    return dlsym, dladdr, int(scope._handle)


def _defined_elsewhere(name: str, path: str) -> str | None:
    """The file of the library in this process's global scope (the program,
    libc, libm, ... and any library opened RTLD_GLOBAL) that defines
    ``name``, or None. Looks the name up only: nothing of the plugin runs."""
    dlsym, dladdr, scope = _dl()
    try:
        address = dlsym(scope, name.encode())
    except (UnicodeEncodeError, ValueError):
        return None
    if not address:
        return None
    info = _DlInfo()
    if dladdr is None or not dladdr(address, ctypes.byref(info)):
        return "another library"
    owner = os.fsdecode(info.dli_fname or b"") or sys.executable  # the program's own map may have no name
    if os.path.exists(owner) and os.path.samefile(owner, path):
        return None  # the plugin itself, opened RTLD_GLOBAL by someone
    return owner


# -- file.needed ----------------------------------------------------------


def _needed(library: _Library, check: Check) -> None:
    needed = library.needed
    if not needed:
        check.message = f"{library.name} needs no other library (no DT_NEEDED entries)"
        return
    runpath = library.search_path("DT_RUNPATH")
    rpath = [] if runpath else library.search_path("DT_RPATH")  # DT_RUNPATH, when present, replaces DT_RPATH
    raw = {library.expand(entry): entry for entry in (*runpath, *rpath)}
    expanded = tuple(raw)
    fails: list[str] = []
    warns: list[str] = []
    details: list[str] = []
    for name in needed:
        found = locate(name, rpath=expanded if rpath else (), runpath=expanded if runpath else ())
        if _RUST_STD.fullmatch(os.path.basename(name)):
            details.append(f"{name}: the Rust standard library as a shared library"
                           + (f" ({found.path})" if found else ", not found"))
            fails.append(
                f"{library.name} needs {name}, the Rust standard library as a shared library: the crate was built "
                "with -C prefer-dynamic or as crate-type dylib. That file belongs to the Rust toolchain that built "
                "it and is on no user's machine: build the plugin with crate-type = [\"cdylib\"] and without "
                "-C prefer-dynamic (look in RUSTFLAGS and .cargo/config.toml), which links std into the plugin")
            continue
        if found is None:
            details.append(f"{name}: not found")
            where = "its RUNPATH, " if runpath else "its RPATH, " if rpath else ""
            fails.append(
                f"{library.name} needs {name}, which the dynamic loader cannot find (searched {where}"
                "LD_LIBRARY_PATH, /etc/ld.so.cache and the system directories): loading fails with "
                f"MissingDependencyError; install it or add its directory to LD_LIBRARY_PATH (or the library's "
                "RUNPATH)")
            continue
        details.append(f"{name}: {found.path} ({_via(found, raw)})")
        problem = _not_portable(library, name, found, raw)
        if problem:
            warns.append(problem)
    check.details = details
    if fails:
        check.status = "fail"
        check.message = "\n".join(fails + warns)
    elif warns:
        check.status = "warn"
        check.message = "\n".join(warns)
    else:
        check.message = (f"{library.name} needs {len(needed)} {'library' if len(needed) == 1 else 'libraries'}, each found here and part of "
                         "every Linux (the manylinux policy) or shipped beside the plugin")


def _via(found: Located, raw: dict[str, str]) -> str:
    if found.via in ("RUNPATH", "RPATH"):
        return f"through its {found.via} {raw.get(found.directory, found.directory)}"
    if found.via == "LD_LIBRARY_PATH":
        return f"through LD_LIBRARY_PATH ({found.directory})"
    if found.via == "path":
        return "the NEEDED entry is a path"
    return f"in the {found.via}"


_SHIP = ("ship it beside the plugin and link with -Wl,-rpath,'$ORIGIN' (RUNPATH $ORIGIN), link it statically, "
         "or let auditwheel repair bundle it into the plugin's wheel (ferrule.build wheels)")


def _not_portable(library: _Library, name: str, found: Located, raw: dict[str, str]) -> str | None:
    """Why a dependency found here will be missing elsewhere, or None."""
    if found.via in ("RUNPATH", "RPATH"):
        entry = raw.get(found.directory, found.directory)
        if "$ORIGIN" in entry or "${ORIGIN}" in entry:
            return None  # shipped with the plugin, wherever it is installed
        inside = os.path.commonpath([found.directory, library.origin]) == library.origin
        where = "in the plugin's own directory, but" if inside else "outside the plugin's directory, and"
        return (f"{name} is found only through the absolute {found.via} {entry}, {where} that path will not "
                f"exist on other machines: {_SHIP}"
                + (f"; for a library beside the plugin, write $ORIGIN instead of {entry}" if inside else ""))
    if found.via == "LD_LIBRARY_PATH":
        return (f"{name} is found only through LD_LIBRARY_PATH ({found.directory}), which the plugin's users "
                f"will not have set: {_SHIP}")
    if found.via == "path":
        return (f"{library.name} names its dependency by path ({name}): linked against a library without a "
                f"SONAME; that path will not exist on other machines: {_SHIP}")
    if os.path.basename(name) in _EVERYWHERE or _LOADERS.fullmatch(name):
        return None
    return (f"{name} is installed here ({found.path}) but is not among the libraries every Linux has (the "
            f"manylinux policy, PEP 600): it will be missing, or another version, on other machines: {_SHIP}")


# -- file.symbol-versions -------------------------------------------------


def _host_glibc() -> tuple[int, int] | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    match = re.fullmatch(r"glibc (\d+)\.(\d+).*", text)
    return (int(match[1]), int(match[2])) if match else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _symbol_versions(library: _Library, check: Check, *, target: tuple[int, int] | None) -> None:
    needs = library.version_needs
    if not needs:
        check.message = f"{library.name} needs no versioned symbols (no .gnu.version_r): it names no glibc version"
        return
    by_library: dict[str, list[str]] = {}
    for file, version in needs.values():
        by_library.setdefault(file, []).append(version)
    check.details = [f"{file}: {', '.join(sorted(set(versions), key=_version_key))}"
                     for file, versions in by_library.items()]
    glibc = [(m, version) for _, version in needs.values() if (m := _GLIBC_VERSION.fullmatch(version))]
    private = sorted({version for _, version in needs.values() if version == "GLIBC_PRIVATE"})
    if not glibc:
        check.message = f"{library.name} needs no glibc symbol versions"
        return
    highest_match, _ = max(glibc, key=lambda g: _version_key(g[1]))
    needed = (int(highest_match[1]), int(highest_match[2]))
    text = f"{needed[0]}.{needed[1]}"
    loads_on = f"manylinux_{needed[0]}_{max(needed[1], 5) if needed[0] == 2 else needed[1]}"
    check.message = f"{library.name} needs glibc {text} or newer: it loads on {loads_on} hosts and later"
    host = _host_glibc()
    problems = []
    if target is not None and needed > target:
        problems.append(_too_new(library, needed, target, "asked for (--glibc)",
                                 f"build it on a system with glibc {target[0]}.{target[1]}, e.g. in a "
                                 f"manylinux_{target[0]}_{target[1]} container or with cibuildwheel (which builds "
                                 "in those containers)"))
    if host is not None and needed > host:
        problems.append(_too_new(library, needed, host, "of this machine",
                                 f"build it on a system with glibc {host[0]}.{host[1]} or older, e.g. in a "
                                 f"manylinux_{host[0]}_{host[1]} container"))
    if problems:
        check.status = "fail"
        check.message = "\n".join(problems)
    elif private:
        check.status = "warn"
        check.message += (f"; it also needs {', '.join(private)}: glibc's internal symbols, which change with every "
                          "glibc release: do not call glibc internals (__libc_*, _dl_*)")
    elif target is not None:
        check.message += f", within the glibc {target[0]}.{target[1]} asked for"


def _too_new(library: _Library, needed: tuple[int, int], limit: tuple[int, int], whose: str, fix: str) -> str:
    """The message for needing a newer glibc than ``limit``, naming the symbols that need it."""
    newer: dict[str, list[str]] = {}
    for symbol in library.symbols:
        need = None if symbol.defined else library.version_needs.get(library.version_of(symbol))
        if need is None:
            continue
        match = _GLIBC_VERSION.fullmatch(need[1])
        if match and (int(match[1]), int(match[2])) > limit:
            newer.setdefault(need[1], []).append(symbol.name)
    listed = "; ".join(f"{version}: {', '.join(sorted(names))}"
                       for version, names in sorted(newer.items(), key=lambda item: _version_key(item[0])))
    rust = (f"; for Rust, also cargo zigbuild --target {_rust_triple(library)}.{limit[0]}.{limit[1]}"
            if library.language == "rust" else "")
    return (f"{library.name} needs glibc {needed[0]}.{needed[1]}, newer than the glibc {limit[0]}.{limit[1]} {whose}: "
            f"there, loading fails with \"version `GLIBC_{needed[0]}.{needed[1]}' not found\". The symbols that need "
            f"it were linked against the newer glibc of the build machine ({listed or 'see the details'}): {fix}"
            f"{rust}")


def _rust_triple(library: _Library) -> str:
    arch = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_386": "i686"}.get(library.elf["e_machine"], "ARCH")
    return f"{arch}-unknown-linux-gnu"


# -- file.exec-stack, file.textrel, file.static-tls -----------------------


def _exec_stack(library: _Library, check: Check) -> None:
    stack = next((s for s in library.elf.iter_segments() if s["p_type"] == "PT_GNU_STACK"), None)
    if stack is not None and not stack["p_flags"] & 0x1:  # PF_X
        check.message = f"{library.name} has a non-executable stack (PT_GNU_STACK without PF_X)"
        return
    found = ("has no PT_GNU_STACK header, which the loader takes as a request for an executable stack"
             if stack is None else "asks for an executable stack (PT_GNU_STACK with PF_X, RWE)")
    host = _host_glibc()
    refused = host is not None and host >= (2, 41)
    check.status = "fail" if refused else "warn"
    rust = (" In a Rust crate it comes from C or assembly that a build script compiles (the cc crate): fix that "
            "source, or add -C link-arg=-Wl,-z,noexecstack to RUSTFLAGS." if library.language == "rust" else "")
    check.message = (
        f"{library.name} {found}: glibc 2.41 and later refuse to dlopen it (\"cannot enable executable stack as "
        "shared object requires: Invalid argument\")"
        + (", as this machine's glibc does" if refused else "; older glibc makes the whole process's stack "
           "executable") + ". A plugin almost never needs it: the linker marks it when one object lacks a "
        ".note.GNU-stack section, usually an assembly file (.s, .S): add "
        '.section .note.GNU-stack,"",@progbits to it, or link with -Wl,-z,noexecstack. (In C, a GCC nested '
        f"function whose address is taken needs it for real: its trampoline runs on the stack.){rust}")


def _textrel(library: _Library, check: Check) -> None:
    if not (library.tag_value("DT_FLAGS") & _DF_TEXTREL or any(t == "DT_TEXTREL" for t, _ in library.tags)):
        check.message = f"{library.name} has no text relocations"
        return
    check.status = "warn"
    check.message = (f"{library.name} has text relocations (DT_TEXTREL): some of its code was compiled without "
                     "-fPIC (an object, a static library linked in, or assembly using absolute addresses), so "
                     "the loader must write into its code at load time. SELinux systems (Fedora, RHEL) refuse "
                     "that, and the code is not shared between processes: rebuild every object and static "
                     "library in it with -fPIC (ld -z text makes this an error at link time)")


def _static_tls(library: _Library, check: Check) -> None:
    if not library.tag_value("DT_FLAGS") & _DF_STATIC_TLS:
        check.message = f"{library.name} uses no static TLS (no DF_STATIC_TLS)"
        return
    tls = next((s for s in library.elf.iter_segments() if s["p_type"] == "PT_TLS"), None)
    size = f" ({tls['p_memsz']} bytes)" if tls is not None else ""
    check.status = "warn"
    check.message = (f"{library.name} uses the initial-exec TLS model (DF_STATIC_TLS){size}: a library loaded with "
                     "dlopen gets that thread-local storage from a small reserve that other libraries share, and "
                     "once it is used up, loading fails with \"cannot allocate memory in static TLS block\". "
                     "Compile with -fPIC and without -ftls-model=initial-exec or "
                     "__attribute__((tls_model(\"initial-exec\"))) on its thread-local variables")

