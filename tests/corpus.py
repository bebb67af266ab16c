"""The corpus of bad plugins and files: one table of every way a plugin can be
broken, with the exception each one raises in process and isolated.

Each input is built by the tests (tests/test_corpus.py) into a session
directory: broken C plugins from tests/plugins/c/corpus.c (-DKIND_<NAME>),
the variants of tests/plugins/c/fixture.c, the misbehaving functions of
tests/plugins/c/hostile.c and the Rust kitchen plugin, and files written or
patched here. docs/bad-plugins.md shows the table;
``python3 -m tests.corpus --markdown`` prints it and a test keeps the two equal.

A message is a fragment of the exception's message: ``...`` stands for text
that varies, ``{path}`` for the input's path and ``{host}`` for this
platform (``x86_64 (64-bit linux)``).
"""

from __future__ import annotations

import os
import re
import signal
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ferrule
from ferrule._loader.elf import host_description

from .conftest import CC, C_DIR, INCLUDE, ROOT, Built, compile_plugin, run

__all__ = ["GROUPS", "KINDS", "Kind", "Outcome", "Workshop", "build_all", "markdown", "pattern"]

MiB = 1 << 20


class Workshop:
    """Where inputs are built: the session's fixture plugins and a directory
    of our own. A builder gets the workshop and a file stem unique to its kind."""

    def __init__(self, built: Built, out: Path):
        self.built = built
        self.out = out

    def compile(self, stem: str, *flags: str) -> Path:
        return compile_plugin(C_DIR / "corpus.c", self.out / f"lib{stem}.so", *flags)

    def write(self, name: str, data: bytes) -> Path:
        path = self.out / name
        path.write_bytes(data)
        return path

    def patched(self, stem: str, offset: int, data: bytes) -> Path:
        """The valid corpus plugin with data written at offset."""
        image = bytearray(self.compile(f"{stem}_base").read_bytes())
        image[offset:offset + len(data)] = data
        return self.write(f"lib{stem}.so", bytes(image))


Builder = Callable[[Workshop, str], Path]


def corpus(kind: str | None, *flags: str) -> Builder:
    """corpus.c built with -DKIND_<kind> (and flags)."""
    return lambda w, stem: w.compile(stem, *((f"-DKIND_{kind}",) if kind else ()), *flags)


def signature(text: str) -> Builder:
    """corpus.c with add's signature replaced by text."""
    return corpus(None, f"-DADD_SIGNATURE=\"{text}\"")


def fixture(variant: str) -> Builder:
    return lambda w, stem: w.built.variant(variant)


def hostile(w: Workshop, stem: str) -> Path:
    return w.built.hostile


def kitchen(w: Workshop, stem: str) -> Path:
    return w.built.kitchen


def plain_fixture(w: Workshop, stem: str) -> Path:
    return w.built.fixture


def written(data: bytes) -> Builder:
    return lambda w, stem: w.write(f"lib{stem}.so", data)


def object_file(w: Workshop, stem: str) -> Path:
    out = w.out / f"{stem}.o"
    run([CC, "-c", "-fPIC", "-std=c99", f"-I{INCLUDE}", str(C_DIR / "corpus.c"), "-o", str(out)])
    return out


def executable(*flags: str) -> Builder:
    def build(w: Workshop, stem: str) -> Path:
        out = w.out / stem
        run([CC, *flags, "-std=c99", f"-I{INCLUDE}", str(C_DIR / "corpus.c"), "-DKIND_EXECUTABLE", "-o", str(out)])
        return out

    return build


def directory(w: Workshop, stem: str) -> Path:
    path = w.out / f"lib{stem}.so"
    path.mkdir()
    return path


def fifo(w: Workshop, stem: str) -> Path:
    path = w.out / f"lib{stem}.so"
    os.mkfifo(path)
    return path


def nothing(w: Workshop, stem: str) -> Path:
    return w.out / f"lib{stem}.so"


def symlink(target: str | None) -> Builder:
    """A symbolic link to target (relative to the build directory), or to itself."""
    def build(w: Workshop, stem: str) -> Path:
        path = w.out / f"lib{stem}.so"
        path.symlink_to(target or path.name)
        return path

    return build


def outdated_dependency(w: Workshop, stem: str) -> Path:
    """Linked against libcorpus_dep.so, which is then replaced by a build
    that lacks the symbol the plugin needs."""
    deps = w.out / f"{stem}-deps"
    deps.mkdir()
    compile_plugin(C_DIR / "corpus.c", deps / "libcorpus_dep.so", "-DKIND_DEP")
    plugin = w.compile(stem, "-DKIND_NEEDS_DEP", f"-L{deps}", "-lcorpus_dep", f"-Wl,-rpath,{deps}")
    compile_plugin(C_DIR / "corpus.c", deps / "libcorpus_dep.so", "-DKIND_DEP_STUB")
    return plugin


def missing_dependency(w: Workshop, stem: str) -> Path:
    return w.built.missing_dep


# -- Rust crates built without crate-type = ["cdylib"], and static archives

_crates: dict[tuple[Path, str], Path] = {}
_crates_lock = threading.Lock()


def rust_crate(w: Workshop, crate_type: str | None) -> Path:
    """target/release of a tiny plugin crate (name no_cdylib) that cargo
    builds with this [lib] crate-type (None: none, so an rlib only). Built
    once per workshop; not a member of ferrule's workspace."""
    with _crates_lock:
        key = (w.out, str(crate_type))
        if key not in _crates:
            crate = w.out / f"crate-{len(_crates)}"
            (crate / "src").mkdir(parents=True)
            lib = f"\n[lib]\ncrate-type = {crate_type}\n" if crate_type else ""
            (crate / "Cargo.toml").write_text(
                f'[package]\nname = "no-cdylib"\nversion = "0.1.0"\nedition = "2021"\n{lib}\n'
                f'[dependencies]\nferrule-sdk = {{ path = "{ROOT / "sdk" / "rust"}" }}\n\n[workspace]\n')
            (crate / "src" / "lib.rs").write_text(
                'ferrule_sdk::plugin! { id: "org.ferrule.tests.no_cdylib", name: "No cdylib", version: "0.1.0", '
                "functions: { fn add(a: i64, b: i64) -> i64 { a + b } } }\n")
            run(["cargo", "build", "--release", "--quiet"], cwd=crate,
                env=dict(os.environ, CARGO_TARGET_DIR=str(crate / "target")))
            _crates[key] = crate / "target" / "release"
        return _crates[key]


def rlib_file(crate_type: str | None) -> Builder:
    return lambda w, stem: rust_crate(w, crate_type) / "libno_cdylib.rlib"


def shared_path_of_rlib_crate(w: Workshop, stem: str) -> Path:
    """Where the cdylib would be; cargo made libno_cdylib.rlib only."""
    return rust_crate(w, None) / "libno_cdylib.so"


def static_archive(w: Workshop, stem: str) -> Path:
    out = w.out / f"lib{stem}.a"
    run([os.environ.get("AR", "ar"), "rcs", str(out), str(object_file(w, stem))])
    return out


@dataclass(frozen=True)
class Outcome:
    """What loading or calling does: raise ``error`` whose message contains
    ``message``, or (error None) return a result ``returns`` accepts, with
    ``message`` describing it."""

    error: type[Exception] | None
    message: str
    returns: Callable[[Any], bool] | None = None
    signals: tuple[int, ...] = ()  # PluginCrashedError: the signals that may end the child
    exit_status: int | None = None  # PluginCrashedError: the child's exit status
    last_lines: tuple[str, ...] = ()  # each is in some line of .last_lines, and in the message
    prints: tuple[str, int] | None = None  # in process: ("stdout" or "stderr", lines written)


@dataclass(frozen=True)
class Kind:
    """One bad input. ``in_process`` None: it would take the host down, so
    only the isolated mode tries it. ``call`` None: it fails at load."""

    id: str
    input: str  # what the input is, for the docs
    build: Builder
    in_process: Outcome | None
    isolated: Outcome
    call: tuple[str, tuple[Any, ...]] | None = None
    config: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # isolated load() options
    call_timeout: float | None = None  # isolated: p.call(..., timeout=call_timeout)
    bare_name: bool = False  # load the file by its bare name, from its own directory
    fresh_process: bool = False  # check "in process" in a new interpreter: the call may harm the one running pytest
    bug: str | None = None  # a known bug: the tests expect it to fail, saying why


def same(error: type[Exception], message: str) -> tuple[Outcome, Outcome]:
    """In process and isolated alike (a load-time or survivable failure)."""
    outcome = Outcome(error, message)
    return outcome, outcome


def crash(during: str, *signals: int, status: int | None = None, last_lines: tuple[str, ...] = ()) -> Outcome:
    """The child died during load or a call (``during`` is "load" or the function name)."""
    who = "'{path}'" if during == "load" else "({path})"
    during = during if during == "load" else f"{during}()"
    if len(signals) == 1:
        how = f"killed by {signal.Signals(signals[0]).name} (signal {int(signals[0])})"
    elif signals:
        how = "killed by SIG..."
    else:
        how = f"exited with status {status}"
    return Outcome(ferrule.PluginCrashedError, f"{who} crashed during {during}: {how}", signals=signals,
                   exit_status=status, last_lines=last_lines)


def timeout(during: str) -> Outcome:
    during = during if during == "load" else f"{during}()"
    return Outcome(ferrule.PluginTimeoutError, f"{during} timed out; ferrule ended its process")


def returns(value: Any, text: str) -> Outcome:
    return Outcome(None, text, returns=lambda result: bool(result == value))


EXPECTED = "expected an ELF shared library for {host}"
HOSTILE = "plugin 'org.ferrule.tests.hostile'"
CORPUS = "plugin 'org.ferrule.tests.corpus'"
FLOOD_LINES = 20000


def k(ident: str, what: str, build: Builder, outcomes: tuple[Outcome | None, Outcome], **extra: Any) -> Kind:
    return Kind(ident, what, build, outcomes[0], outcomes[1], **extra)


def isolated_only(outcome: Outcome) -> tuple[None, Outcome]:
    return None, outcome


FILES = [
    k("text_file", "a text file named libX.so", written(b"this is a text file\n"),
      same(ferrule.NotALibraryError,
           "{path} is not a shared library (no ELF header; starts with b'this is '), " + EXPECTED)),
    k("empty_file", "an empty file", written(b""),
      same(ferrule.NotALibraryError, "{path} is an empty file, " + EXPECTED + "; rebuild or re-download it")),
    k("truncated_elf", "the first 6 bytes of an ELF header", written(b"\x7fELF\x02\x01"),
      same(ferrule.NotALibraryError, "{path} is a truncated ELF file (6 bytes), " + EXPECTED)),
    k("wrong_machine", "a plugin whose header says aarch64 (e_machine 183)", lambda w, s: w.patched(s, 18, struct.pack("<H", 183)),
      same(ferrule.WrongArchitectureError,
           "{path} was built for aarch64 (64-bit), " + EXPECTED + "; rebuild it for this platform")),
    k("elf32", "a plugin whose header says 32-bit (EI_CLASS 1)", lambda w, s: w.patched(s, 4, b"\x01"),
      same(ferrule.WrongArchitectureError, "{path} was built for x86_64 (32-bit), " + EXPECTED)),
    k("mach_o", "a Mach-O (macOS) file", written(b"\xcf\xfa\xed\xfe" + bytes(60)),
      same(ferrule.WrongArchitectureError, "{path} is a Mach-O (macOS) binary, " + EXPECTED + "; use the Linux build")),
    k("pe", "a Windows PE file", written(b"MZ" + bytes(62)),
      same(ferrule.WrongArchitectureError, "{path} is a Windows PE binary, " + EXPECTED + "; use the Linux build")),
    k("object_file", "an object file (.o), not linked", object_file,
      same(ferrule.NotALibraryError,
           "{path} is a relocatable object (.o), " + EXPECTED + "; link it with -shared / crate-type cdylib")),
    k("executable", "an executable (-no-pie)", executable("-no-pie"),
      same(ferrule.NotALibraryError, "{path} is an executable, " + EXPECTED + "; link it with -shared")),
    k("pie_executable", "a position-independent executable", executable("-fPIE", "-pie"),
      same(ferrule.NotALibraryError,
           "cannot load {path}: {path}: cannot dynamically load position-independent executable; expected a shared library")),
    # Rust crates built without crate-type = ["cdylib"], and static archives
    k("rust_rlib_only", 'the libX.so path of a Rust crate built without crate-type = ["cdylib"] (cargo made libX.rlib)',
      shared_path_of_rlib_crate,
      same(ferrule.LibraryNotFoundError,
           "no file at {path}, but .../target/release/libno_cdylib.rlib is there: the crate was built as a Rust "
           'library only; add [lib] crate-type = ["cdylib"] to its Cargo.toml and rebuild')),
    k("rust_rlib", 'the libX.rlib of a Rust crate built without crate-type = ["cdylib"]', rlib_file(None),
      same(ferrule.NotALibraryError,
           "{path} is a Rust library (.rlib), " + EXPECTED + '; the crate is built without crate-type = ["cdylib"]: '
           'add [lib] crate-type = ["cdylib"] to its Cargo.toml, rebuild, and load .../target/release/libno_cdylib.so')),
    k("rust_rlib_beside_cdylib", 'the libX.rlib of a crate with crate-type = ["rlib", "cdylib"]',
      rlib_file('["rlib", "cdylib"]'),
      same(ferrule.NotALibraryError,
           "{path} is a Rust library (.rlib), " + EXPECTED + "; load the shared library cargo built beside it: "
           ".../target/release/libno_cdylib.so")),
    k("static_archive", "a static archive (.a) of the plugin's object file", static_archive,
      same(ferrule.NotALibraryError,
           "{path} is a static archive (ar), " + EXPECTED + "; a plugin must be a shared library: link it with "
           '-shared (a Rust crate: crate-type = ["cdylib"], not "staticlib")')),
    k("directory", "a directory named libX.so", directory,
      same(ferrule.NotALibraryError, "{path} is a directory, expected a shared library file")),
    k("fifo", "a FIFO (named pipe) named libX.so, which the dynamic loader would wait on for ever", fifo,
      same(ferrule.NotALibraryError, "{path} is a FIFO (named pipe), not a file: load the shared library file itself")),
    k("missing_path", "no file at the path", nothing,
      same(ferrule.LibraryNotFoundError, "no file at {path}: check the path, or build the library first")),
    k("bare_name_in_cwd", "a bare name, libX.so, of a file in the current directory", corpus(None),
      same(ferrule.LibraryNotFoundError,
           "no plugin libbare_name_in_cwd.so in FERRULE_PATH, which is not set: a bare plugin name is looked up in "
           "FERRULE_PATH's directories only, never on the system loader path or in the current directory; "
           "libbare_name_in_cwd.so is in the current directory: pass './libbare_name_in_cwd.so' (or its full "
           "path) to load that file"), bare_name=True),
    k("dangling_symlink", "a symbolic link to a file that does not exist", symlink("libnowhere.so"),
      same(ferrule.LibraryNotFoundError,
           "{path} is a symbolic link to '...libnowhere.so', which does not exist: fix or remove the link")),
    k("symlink_loop", "a symbolic link to itself", symlink(None),
      same(ferrule.LibraryError, "cannot read {path}: Too many levels of symbolic links; check the file and its permissions")),
    k("missing_dependency", "a plugin linked against a library that is gone", missing_dependency,
      same(ferrule.MissingDependencyError,
           "cannot load {path}: libferrule_dep.so: cannot open shared object file: ...; {path} needs "
           "libferrule_dep.so, which the loader cannot find: install it or add its directory to LD_LIBRARY_PATH")),
    k("outdated_dependency", "a plugin whose dependency lacks a symbol it needs", outdated_dependency,
      same(ferrule.MissingDependencyError,
           "cannot load {path}: {path}: undefined symbol: corpus_dep_value; a library it depends on is missing "
           "that symbol (too old, or not linked)")),
]

ENTRY = [
    k("no_entry", "no ferrule_entry_v1 symbol", fixture("NO_ENTRY"),
      same(ferrule.NoEntryPointError,
           "{path} does not export ferrule_entry_v1, expected by every ferrule plugin: export it with the Rust "
           "SDK's plugin! macro or the C header's FERRULE_ENTRY")),
    k("entry_v2", "only ferrule_entry_v2 exported", fixture("ENTRY_V2"),
      same(ferrule.AbiVersionError,
           "{path} exports ferrule_entry_v2 (ABI 2), this host speaks ABI 1: rebuild the plugin against ABI 1 "
           "or use a matching ferrule")),
    k("entry_null", "ferrule_entry_v1 returns NULL", fixture("ENTRY_NULL"),
      same(ferrule.NoEntryPointError, "ferrule_entry_v1 in {path} returned NULL, expected a descriptor")),
    k("entry_segfault", "ferrule_entry_v1 writes through NULL", corpus("ENTRY_SEGFAULT"),
      isolated_only(crash("load", signal.SIGSEGV))),
    k("entry_hangs", "ferrule_entry_v1 never returns", corpus("ENTRY_HANGS"),
      isolated_only(timeout("load")), options={"timeout": 1.0}),
    k("constructor_segfault", "a library constructor writes through NULL", corpus("CONSTRUCTOR_SEGFAULT"),
      isolated_only(crash("load", signal.SIGSEGV))),
    k("constructor_hangs", "a library constructor never returns", corpus("CONSTRUCTOR_HANGS"),
      isolated_only(timeout("load")), options={"timeout": 1.0}),
    k("constructor_exits", "a library constructor calls exit(3)", corpus("CONSTRUCTOR_EXITS"),
      isolated_only(crash("load", status=3))),
]

DESCRIPTOR = [
    k("bad_magic", "descriptor magic is the ELF magic", fixture("BAD_MAGIC"),
      same(ferrule.BadMagicError,
           "{path}: descriptor starts with 0x7f454c4600000000, expected the magic 0x46455252554c4521: the entry "
           "point returns something that is not a ferrule descriptor")),
    k("no_head", "descriptor written with designated initialisers, no FERRULE_PLUGIN_HEAD", corpus("NO_HEAD"),
      same(ferrule.BadMagicError,
           "{path}: the descriptor's head (magic, struct_size, abi_major, abi_minor) is not filled in: magic, "
           "struct_size, abi_major, abi_minor are 0: start the initialiser with FERRULE_PLUGIN_HEAD (or set "
           ".magic = FERRULE_MAGIC, .struct_size = sizeof(ferrule_plugin), .abi_major = FERRULE_ABI_MAJOR, "
           ".abi_minor = FERRULE_ABI_MINOR)")),
    k("magic_only_head", "descriptor with .magic set, the rest of the head left out", corpus("MAGIC_ONLY"),
      same(ferrule.DescriptorTooSmallError,
           "{path}: the descriptor's head (magic, struct_size, abi_major, abi_minor) is not filled in: "
           "struct_size, abi_major, abi_minor are 0: start the initialiser with FERRULE_PLUGIN_HEAD")),
    k("zero_magic", "descriptor magic 0, rest of the head set", corpus("ZERO_MAGIC"),
      same(ferrule.BadMagicError,
           "{path}: descriptor starts with zeros where FERRULE_MAGIC (0x46455252554c4521) belongs: fill the head "
           "with FERRULE_PLUGIN_HEAD (or set .magic = FERRULE_MAGIC)")),
    k("swapped_magic", "descriptor magic with its bytes reversed", corpus("SWAPPED_MAGIC"),
      same(ferrule.BadMagicError,
           "{path}: descriptor starts with 0x21454c5552524546, the magic 0x46455252554c4521 with its bytes "
           "reversed: FERRULE_MAGIC is a native-endian integer; set it as the integer (FERRULE_PLUGIN_HEAD "
           "does), not as the bytes \"FERRULE!\", and build the plugin for this machine")),
    k("abi_too_new", "descriptor of ABI 2.2", fixture("ABI_MAJOR_2"),
      same(ferrule.AbiVersionError,
           "{path} was built for ferrule ABI 2.2, this host speaks ABI 1.2: rebuild the plugin against ABI 1")),
    k("abi_too_old", "descriptor of ABI 0.2", fixture("ABI_MAJOR_0"),
      same(ferrule.AbiVersionError, "{path} was built for ferrule ABI 0.2, this host speaks ABI 1.2")),
    k("small_descriptor", "descriptor struct_size 24", fixture("SMALL_DESCRIPTOR"),
      same(ferrule.DescriptorTooSmallError,
           "{path}: descriptor struct_size is 24 bytes, ABI 1.0 needs at least 88: rebuild the plugin with the "
           "current SDK")),
    k("small_function", "function struct_size 16", corpus("SMALL_FUNCTION"),
      same(ferrule.DescriptorTooSmallError,
           CORPUS + " function #0: struct_size is 16 bytes, ABI 1.0 needs at least 40: rebuild the plugin with "
           "the current SDK")),
    k("function_no_size", "function 'add' written with designated initialisers, no FERRULE_FUNCTION",
      corpus("FUNCTION_NO_SIZE"),
      same(ferrule.DescriptorTooSmallError,
           CORPUS + " function 'add' (#0): its ferrule_function has struct_size 0: build each entry with "
           "FERRULE_FUNCTION(...) (or set .struct_size = sizeof(ferrule_function))")),
    k("null_id", "plugin id NULL", corpus("NULL_ID"),
      same(ferrule.MetadataError, "plugin id is NULL, expected a UTF-8 string: fill it in the descriptor")),
    k("id_not_reverse_dns", "plugin id 'corpus'", corpus("ID_NOT_REVERSE_DNS"),
      same(ferrule.MetadataError,
           "{path}: plugin id 'corpus' is not reverse-DNS (like 'org.example.greeter'): fix the descriptor")),
    k("null_name", "plugin name NULL", corpus("NULL_NAME"),
      same(ferrule.MetadataError, CORPUS + " name is NULL, expected a UTF-8 string: fill it in the descriptor")),
    k("non_utf8_name", "plugin name 'Fixture \\xff\\xfe'", fixture("NON_UTF8_NAME"),
      same(ferrule.MetadataError,
           "plugin 'org.ferrule.tests.fixture' name is not valid UTF-8 (invalid start byte at byte 8): "
           "b'Fixture \\xff\\xfe'")),
    k("non_utf8_version", "plugin version '1.0\\x80'", corpus("NON_UTF8_VERSION"),
      same(ferrule.MetadataError,
           CORPUS + " version is not valid UTF-8 (invalid start byte at byte 3): b'1.0\\x80'")),
    k("non_utf8_function_name", "function name 'add\\xc3'", corpus("NON_UTF8_FUNCTION_NAME"),
      same(ferrule.MetadataError,
           CORPUS + " function #0 name is not valid UTF-8 (unexpected end of data at byte 3): b'add\\xc3'")),
    k("null_function_name", "function name NULL", corpus("NULL_FUNCTION_NAME"),
      same(ferrule.MetadataError, CORPUS + " function #0 name is NULL, expected a UTF-8 string")),
    k("function_name_not_identifier", "function name 'add-two'", corpus("FUNCTION_NAME_NOT_IDENTIFIER"),
      same(ferrule.MetadataError, CORPUS + " function #0 name 'add-two' is not an identifier")),
    k("non_utf8_doc", "function doc with a cut UTF-8 sequence", corpus("NON_UTF8_DOC"),
      same(ferrule.MetadataError,
           CORPUS + " function 'add' doc is not valid UTF-8 (invalid continuation byte at byte 5): "
           "b'Adds \\xe2\\x82 two integers.'")),
    k("duplicate_functions", "two functions named 'add'", fixture("DUPLICATE_NAMES"),
      same(ferrule.MetadataError, "plugin 'org.ferrule.tests.fixture' exports two functions named 'add'")),
    k("null_call", "function 'add' with call NULL", corpus("NULL_CALL"),
      same(ferrule.DescriptorError, CORPUS + " function 'add' has a NULL call pointer")),
    k("null_function_entry", "a NULL entry in the function table", corpus("NULL_FUNCTION_ENTRY"),
      same(ferrule.DescriptorError, CORPUS + " function #1 is NULL, expected a ferrule_function")),
    k("null_function_table", "function table NULL, function_count 2", corpus("NULL_FUNCTION_TABLE"),
      same(ferrule.DescriptorError, CORPUS + " declares 2 functions but its function table is NULL")),
    k("absurd_function_count", "function_count 100000", corpus("ABSURD_FUNCTION_COUNT"),
      same(ferrule.MetadataError, CORPUS + " declares 100000 functions, at most 4096 allowed")),
]

SIGNATURES = [
    k("signature_unknown_type", "signature '(a: i64, b: int) -> i64'", fixture("BAD_SIGNATURE"),
      same(ferrule.SignatureError,
           "plugin 'org.ferrule.tests.fixture' function 'add' has a malformed signature '(a: i64, b: int) -> i64': "
           "expected a type (bool, ..., bytes) at column 13, found 'int'; expected e.g. '(a: i64, b: i64) -> i64'")),
    k("signature_unclosed", "signature '(a: i64, b: i64'", signature("(a: i64, b: i64"),
      same(ferrule.SignatureError,
           CORPUS + " function 'add' has a malformed signature '(a: i64, b: i64': expected ), found the end of "
           "the signature")),
    k("signature_no_colon", "signature '(a i64, b: i64) -> i64'", signature("(a i64, b: i64) -> i64"),
      same(ferrule.SignatureError, "malformed signature '(a i64, b: i64) -> i64': expected : at column 4, found 'i64'")),
    k("signature_repeated_parameter", "signature '(a: i64, a: i64) -> i64'", signature("(a: i64, a: i64) -> i64"),
      same(ferrule.SignatureError, "expected a parameter name not used before at column 10, found 'a'")),
    k("signature_buffer_of_text", "signature '(a: buf[str], b: i64) -> i64'", signature("(a: buf[str], b: i64) -> i64"),
      same(ferrule.SignatureError, "expected an element type (i8, ..., f64) at column 9, found 'str'")),
    k("signature_buffer_result", "signature '(a: i64, b: i64) -> buf[u8]'", signature("(a: i64, b: i64) -> buf[u8]"),
      same(ferrule.SignatureError, "expected a type (bool, ..., bytes) at column 21, found 'buf'")),
    k("signature_with_name", "signature 'add(a: i64, b: i64) -> i64'", signature("add(a: i64, b: i64) -> i64"),
      same(ferrule.SignatureError, "expected ( at column 1, found 'add'")),
    k("signature_65_parameters", "signature of 65 parameters",
      signature("(" + ", ".join(f"a{i}: i64" for i in range(65)) + ")"),
      same(ferrule.SignatureError, "malformed signature '(a0: i64, ...)': more than 64 parameters")),
]

INTERFACES = [
    k("interface_table_null", "interface table NULL, interface_count 2", corpus("IFACE_NULL_TABLE"),
      same(ferrule.DescriptorError, CORPUS + " declares 2 interface implementations but its table is NULL")),
    k("interface_entry_null", "a NULL entry in the interface table", corpus("IFACE_NULL_ENTRY"),
      same(ferrule.DescriptorError, CORPUS + " interface implementation #1 is NULL, expected a ferrule_interface")),
    k("interface_count_absurd", "interface_count 100000", corpus("IFACE_ABSURD_COUNT"),
      same(ferrule.MetadataError, CORPUS + " declares 100000 interface implementations, at most 4096 allowed")),
    k("interface_small", "interface struct_size 24", corpus("IFACE_SMALL"),
      same(ferrule.DescriptorTooSmallError,
           CORPUS + " interface implementation #0: struct_size is 24 bytes, ABI 1.2 needs at least 80: rebuild "
           "the plugin with the current SDK")),
    k("interface_id_not_reverse_dns", "interface id 'adder'", corpus("IFACE_BAD_ID"),
      same(ferrule.MetadataError, CORPUS + " interface implementation #0: interface id 'adder' is not reverse-DNS")),
    k("interface_name_empty", "implementation name ''", corpus("IFACE_EMPTY_NAME"),
      same(ferrule.MetadataError,
           CORPUS + " interface implementation #0 (org.ferrule.tests.adder) has an empty name")),
    k("interface_duplicate_names", "two implementations of one interface named 'plain'",
      corpus("IFACE_DUPLICATE_NAMES"),
      same(ferrule.MetadataError,
           CORPUS + " offers two implementations of org.ferrule.tests.adder/1 named 'plain'")),
    k("interface_methods_absurd", "method_count 1000", corpus("IFACE_TOO_MANY_METHODS"),
      same(ferrule.MetadataError,
           CORPUS + " implementation 'plain' of org.ferrule.tests.adder/1 has 1000 methods, at most 256 allowed")),
    k("interface_methods_null", "method table NULL, method_count 2", corpus("IFACE_NULL_METHODS"),
      same(ferrule.DescriptorError,
           CORPUS + " implementation 'plain' of org.ferrule.tests.adder/1 has 2 methods but a NULL method table")),
    k("interface_method_null", "a NULL method in the table", corpus("IFACE_NULL_METHOD"),
      same(ferrule.DescriptorError,
           CORPUS + " implementation 'plain' of org.ferrule.tests.adder/1: method #1 is NULL")),
    k("interface_create_null", "create NULL", corpus("IFACE_NULL_CREATE"),
      same(ferrule.DescriptorError,
           CORPUS + " implementation 'plain' of org.ferrule.tests.adder/1 has a NULL create or destroy")),
]

LIFECYCLE = [
    k("init_fails", "init reports failure", fixture("INIT_FAILS"),
      same(ferrule.PluginInitError,
           "plugin 'org.ferrule.tests.fixture' failed to initialise: cannot open the model file: "
           "/nonexistent/model.bin")),
    k("init_panics", "Rust init panics (kitchen, config 'panic')", kitchen,
      same(ferrule.PluginInitError,
           "plugin 'org.ferrule.tests.kitchen' panicked in init: panicked at ...: init exploded"),
      config="panic"),
    k("init_segfault", "init writes through NULL (hostile, config 'segfault')", hostile,
      isolated_only(crash("load", signal.SIGSEGV)), config="segfault"),
    k("function_fails", "a function reports failure: fail('no such user')", hostile,
      same(ferrule.PluginCallError, HOSTILE + " function 'fail' failed: no such user"),
      call=("fail", ("no such user",))),
    k("function_fails_silently", "a function fails without a message", plain_fixture,
      same(ferrule.PluginCallError,
           "plugin 'org.ferrule.tests.fixture' function 'silent_fail' failed: (the plugin gave no error message)"),
      call=("silent_fail", ())),
    k("function_returns_bad_text", "a str result that is not UTF-8", plain_fixture,
      same(ferrule.PluginCallError,
           "plugin 'org.ferrule.tests.fixture' function 'bad_text' returned text that is not valid UTF-8 "
           "(unexpected end of data at byte 3); expected str"),
      call=("bad_text", ())),
    k("function_returns_integer_as_str", "a str function that writes ret->i64 = 42", hostile,
      same(ferrule.PluginCallError,
           HOSTILE + " function 'int_as_str' returned a str result with ptr 0x2a and len 0; ptr is not an address "
           "(below 4096), as when an integer is written to ret->i64 or ret->u64: a str result must set ret->bytes "
           "(ptr, len, release), e.g. with ferrule_return_copy(host, ret, data, len)"),
      call=("int_as_str", ())),
    k("function_returns_small_pointer", "a bytes result of ptr 42, len 5", hostile,
      same(ferrule.PluginCallError,
           HOSTILE + " function 'wrong_bytes' returned a bytes result with ptr 0x2a and len 5; ptr is not an "
           "address (below 4096), as when an integer is written to ret->i64 or ret->u64: a bytes result must set "
           "ret->bytes (ptr, len, release), e.g. with ferrule_return_copy(host, ret, data, len)"),
      call=("wrong_bytes", (42, 5))),
    k("function_returns_huge_length", "a bytes result of len 2^50", hostile,
      same(ferrule.PluginCallError,
           HOSTILE + " function 'wrong_bytes' returned a bytes result with ptr 0x100000 and len 1125899906842624; "
           "len is more than any real result (2^48 bytes): a bytes result must set ret->bytes (ptr, len, release) "
           "with len the data's size in bytes, e.g. with ferrule_return_copy(host, ret, data, len)"),
      call=("wrong_bytes", (1 << 20, 1 << 50))),
    k("function_returns_wild_pointer", "a bytes result of ptr 0x8000 (unmapped but plausible), len 5", hostile,
      isolated_only(crash("wrong_bytes", signal.SIGSEGV)), call=("wrong_bytes", (0x8000, 5))),
    k("function_panics", "a Rust function panics: boom('kaboom 42')", kitchen,
      same(ferrule.PluginPanicError,
           "plugin 'org.ferrule.tests.kitchen' function 'boom' panicked: panicked at ...: kaboom 42"),
      call=("boom", ("kaboom 42",))),
    k("segfault", "a function writes through NULL", hostile, isolated_only(crash("segfault", signal.SIGSEGV)),
      call=("segfault", ())),
    k("abort", "a function calls abort()", hostile,
      isolated_only(crash("abort", signal.SIGABRT, last_lines=("hostile: about to abort",))), call=("abort", ())),
    k("exit", "a function calls exit(7)", hostile, isolated_only(crash("exit", status=7)), call=("exit", (7,))),
    k("exit_zero", "a function calls exit(0)", hostile, isolated_only(crash("exit", status=0)), call=("exit", (0,))),
    k("last_words", "a stderr line and a log line, then a segfault", hostile,
      isolated_only(crash("last_words", signal.SIGSEGV, last_lines=("stderr: famous last words", "log: going down"))),
      call=("last_words", ("famous last words",))),
    k("sigkill", "a function raises SIGKILL on its process", hostile, isolated_only(crash("raise_signal", signal.SIGKILL)),
      call=("raise_signal", (int(signal.SIGKILL),))),
    k("stack_overflow", "unbounded recursion", hostile, isolated_only(crash("overflow", signal.SIGSEGV)),
      call=("overflow", ())),
    k("spin", "an endless loop holding the GIL; call timeout 1 s", hostile, isolated_only(timeout("spin")),
      call=("spin", ()), call_timeout=1.0),
    k("blocks", "sleeps for 10 minutes; plugin timeout 1 s", hostile, isolated_only(timeout("sleep_ms")),
      call=("sleep_ms", (600_000,)), options={"timeout": 1.0}),
    k("cpu_limit", "an endless loop under cpu_limit=1", hostile,
      isolated_only(crash("spin", signal.SIGXCPU, signal.SIGKILL)), call=("spin", ()), options={"cpu_limit": 1}),
    k("memory_hog", "allocates without bound under memory_limit=512 MiB", hostile,
      isolated_only(crash("hog", signal.SIGSEGV, signal.SIGKILL)), call=("hog", ()), options={"memory_limit": 512 * MiB}),
    k("flood_stdout", f"writes {FLOOD_LINES} lines to stdout", hostile,
      (Outcome(None, f"returns {FLOOD_LINES}", returns=lambda r: bool(r == FLOOD_LINES), prints=("stdout", FLOOD_LINES)),
       returns(FLOOD_LINES, f"returns {FLOOD_LINES}")),
      call=("flood", (FLOOD_LINES, False))),
    k("flood_stderr", f"writes {FLOOD_LINES} lines to stderr", hostile,
      (Outcome(None, f"returns {FLOOD_LINES}", returns=lambda r: bool(r == FLOOD_LINES), prints=("stderr", FLOOD_LINES)),
       returns(FLOOD_LINES, f"returns {FLOOD_LINES}")),
      call=("flood", (FLOOD_LINES, True))),
    k("fork", "a function forks and returns in both processes", hostile,
      (Outcome(None, "returns the new process's pid; the copy ends", returns=lambda r: isinstance(r, int) and r > 0),
       Outcome(None, "returns the new process's pid; the copy ends", returns=lambda r: isinstance(r, int) and r > 0)),
      call=("fork", ()), fresh_process=True),
]

GROUPS = [
    ("The file", FILES),
    ("The entry point and library constructors", ENTRY),
    ("The descriptor", DESCRIPTOR),
    ("Function signatures", SIGNATURES),
    ("Interface implementations (ABI 1.2)", INTERFACES),
    ("Init and calls", LIFECYCLE),
]
KINDS: list[Kind] = [kind for _, group in GROUPS for kind in group]


def pattern(message: str, path: Path | str) -> re.Pattern[str]:
    """The regular expression a message fragment stands for."""
    text = message.replace("{path}", str(path)).replace("{host}", host_description())
    return re.compile(".*".join(re.escape(part) for part in text.split("...")), re.DOTALL)


def build_all(built: Built, out: Path) -> dict[str, Path]:
    """Build every kind's input into out; returns kind id -> path. Compiles
    run in parallel (the compiler, not Python, does the work)."""
    from concurrent.futures import ThreadPoolExecutor

    workshop = Workshop(built, out)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {kind.id: pool.submit(kind.build, workshop, kind.id) for kind in KINDS}
        paths = {name: future.result() for name, future in futures.items()}
    paths["valid"] = workshop.compile("corpus_valid")
    return paths


# -- the table in docs/bad-plugins.md

def _cell(outcome: Outcome | None, kind: Kind) -> str:
    if outcome is None:
        return "not survivable"
    if outcome.error is None:
        return "returns"
    text = f"`{outcome.error.__name__}`"
    if outcome.error is ferrule.PluginTimeoutError:
        limit = kind.call_timeout or kind.options.get("timeout")
        text += f" after {limit:g} s"
    elif outcome.signals:
        text += " (" + " or ".join(signal.Signals(s).name for s in outcome.signals) + ")"
    elif outcome.exit_status is not None:
        text += f" (exit status {outcome.exit_status})"
    return text


def _message(kind: Kind) -> str:
    outcome = kind.in_process or kind.isolated
    text = outcome.message.replace("{path}", "<path>").replace("{host}", "x86_64 (64-bit linux)")
    if outcome.last_lines:
        text += "; last lines: " + ", ".join(outcome.last_lines)
    if text == "...":
        return ""
    text = f"`{text}`" if outcome.error is not None else text
    if kind.bug:
        text += f" (**known bug**: {kind.bug})"
    return text.replace("|", "\\|")


def markdown() -> str:
    """The corpus as markdown tables, one per group, as docs/bad-plugins.md holds them."""
    rows = []
    for title, group in GROUPS:
        rows += [f"### {title}", "", "| kind | input | in process | isolated | message |", "|---|---|---|---|---|"]
        for kind in group:
            where = f"`{kind.call[0]}()`: " if kind.call else ""
            text = f"{where}{kind.input}".replace("|", "\\|")
            rows.append(f"| `{kind.id}` | {text} | {_cell(kind.in_process, kind)} | {_cell(kind.isolated, kind)} "
                        f"| {_message(kind)} |")
        rows.append("")
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python3 -m tests.corpus --markdown")
    sys.stdout.write(markdown())
