"""ferrule.Library: open a shared library, look up symbols, call them through
a declared C signature. The safe layer over dlopen/dlsym, never dlclose."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import (
    LibraryError,
    LibraryNotFoundError,
    MissingDependencyError,
    NotALibraryError,
    SymbolNotFoundError,
    WrongArchitectureError,
)
from .elf import check_header, dynamic, is_rust_library, refuse_non_file
from .ldcache import versioned
from .posix import loaded_path, open_library  # the raw layer; a Windows one would be chosen here
from .posix import symbol as find_symbol

if TYPE_CHECKING:
    from .cdecl import CFunction, Declarations

__all__ = ["Library", "as_path", "ferrule_path", "library_file_name", "plugin_file"]



def library_file_name(name: str) -> str:
    """The platform's file name for a bare library name: libNAME.so, libNAME.dylib, NAME.dll."""
    if sys.platform == "win32":
        return f"{name}.dll"
    if sys.platform == "darwin":
        return f"lib{name}.dylib"
    return f"lib{name}.so"


# What the platform's library files end in: .so, .dylib or .dll.
LIBRARY_SUFFIX = os.path.splitext(library_file_name("x"))[1]


def _looks_like_file_name(name: str) -> bool:
    return name.endswith((".so", ".dylib", ".dll")) or ".so." in name


def _classify(path: str, message: str) -> LibraryError:
    """Turn a dlopen failure message into the specific error class."""
    text = f"cannot load {path}: {message}"
    own_file = message.startswith(path + ":") or message.startswith(os.path.basename(path) + ":")
    if "cannot open shared object file" in message and not own_file:
        dep = message.split(":", 1)[0]
        if dep in dynamic(path).needed:
            return MissingDependencyError(
                f"{text}; {path} needs {dep}, which the loader cannot find: install it or add its "
                "directory to LD_LIBRARY_PATH (or the library's RUNPATH)"
            )
        return MissingDependencyError(
            f"{text}; a library that {path} links against needs {dep}, which the loader cannot find: install "
            f"it or add its directory to LD_LIBRARY_PATH (or the RUNPATH of the library that needs it; "
            f"ldd {path} shows which)"
        )
    if "undefined symbol" in message:
        return MissingDependencyError(
            f"{text}; a library it depends on is missing that symbol (too old, or not linked)"
        )
    if "wrong ELF class" in message or "ELF file data encoding" in message:
        return WrongArchitectureError(f"{text}; rebuild it for this platform")
    if "invalid ELF header" in message or "file too short" in message or "position-independent" in message:
        return NotALibraryError(f"{text}; expected a shared library")
    if "cannot open shared object file" in message:
        return LibraryNotFoundError(f"{text}; check the name and the loader path")
    return LibraryError(text)


def _not_found(path: str) -> str:
    """The message for a library path with no file, which may be where a
    Rust crate built without crate-type cdylib would have put one."""
    directory, base = os.path.split(path)
    for prefix, suffix in (("lib", ".so"), ("lib", ".dylib"), ("", ".dll")):
        if base.startswith(prefix) and base.endswith(suffix) and len(base) > len(prefix + suffix):
            rlib = os.path.join(directory, f"lib{base[len(prefix):-len(suffix)]}.rlib")
            if is_rust_library(rlib):
                return (f"no file at {path}, but {rlib} is there: the crate was built as a Rust library only; "
                        'add [lib] crate-type = ["cdylib"] to its Cargo.toml and rebuild')
            break
    return f"no file at {path}: check the path, or build the library first"


def as_path(name: str | os.PathLike[str]) -> str | None:
    """The absolute path a name opens when it is one (a path-like object, or
    text with a slash), else None: a bare name, for the loader to look up."""
    text = os.fspath(name)
    if isinstance(name, os.PathLike) or os.sep in text or (os.altsep and os.altsep in text):
        return os.path.abspath(os.path.expanduser(text))
    return None


def ferrule_path() -> list[str]:
    """The FERRULE_PATH directories, absolute, in order; an empty entry means
    nothing (never the current directory)."""
    return [os.path.abspath(os.path.expanduser(d)) for d in os.environ.get("FERRULE_PATH", "").split(os.pathsep) if d]


def plugin_file(name: str | os.PathLike[str]) -> str:
    """The file a plugin name opens: a path (absolute from here on), or for a
    bare name (``libx.so``, or ``x``) the file of that name in the first of
    FERRULE_PATH's directories that has one. Never the system loader's path
    (LD_LIBRARY_PATH or ld.so's cache could put another library in its place)
    nor the current directory. LibraryNotFoundError when there is none."""
    text = as_path(name)
    if text is not None:
        return text
    text = os.fspath(name)
    if not text:
        raise LibraryNotFoundError("empty plugin name: give the plugin's path")
    file_name = text if _looks_like_file_name(text) else library_file_name(text)
    dirs = ferrule_path()
    for directory in dirs:
        candidate = os.path.join(directory, file_name)
        if os.path.lexists(candidate):
            return candidate
    where = f"in FERRULE_PATH ({os.pathsep.join(dirs)})" if dirs else "in FERRULE_PATH, which is not set"
    advice = (f"{file_name} is in the current directory: pass './{file_name}' (or its full path) to load that file"
              if os.path.lexists(file_name) else "give the plugin's path, or add its directory to FERRULE_PATH")
    raise LibraryNotFoundError(f"no plugin {file_name} {where}: a bare plugin name is looked up in FERRULE_PATH's "
                               f"directories only, never on the system loader path or in the current directory; {advice}")


class Library:
    """A shared library opened with RTLD_NOW | RTLD_LOCAL.

    ``Library("path/to/libfoo.so")`` opens a file; a bare name such as
    ``Library("z")`` becomes the platform's file name (``libz.so``) and is
    looked up in ``search_dirs`` if given, otherwise on the system loader path.
    The current directory is never searched implicitly.

    The library is never unloaded: unloading code that registered thread-local
    destructors or still has threads running crashes the process later.
    """

    __module__ = "ferrule"

    def __init__(self, name: str | os.PathLike[str], *, search_dirs: Iterable[str | os.PathLike[str]] | None = None,
                 declarations: Declarations | str | None = None):
        self._handle, self.path = self._open(name, search_dirs)
        self._decls: Declarations | None = None
        if declarations is not None:
            self._decls = declarations if not isinstance(declarations, str) else _declarations(declarations)

    @property
    def declarations(self) -> Declarations:
        """The C declarations this library's functions are read against: its
        own unless one was passed in (made on first use)."""
        if self._decls is None:
            self._decls = _declarations()
        return self._decls

    def cdef(self, text: str) -> None:
        """Declare C text (say, the library's header: typedefs, structs,
        enums, prototypes) in this library's declarations. A declared
        prototype makes the signature of ``function`` optional."""
        self.declarations.cdef(text)

    @property
    def handle(self) -> int:
        """The loader's handle (dlopen's), as an int: one per mapped library."""
        return self._handle

    @staticmethod
    def _open(name: str | os.PathLike[str], search_dirs: Iterable[str | os.PathLike[str]] | None) -> tuple[int, str]:
        text = as_path(name)
        if text is not None:
            return Library._open_file(text)
        text = os.fspath(name)
        if not text:
            raise LibraryNotFoundError("empty library name")
        file_name = text if _looks_like_file_name(text) else library_file_name(text)
        if search_dirs is not None:
            dirs = [Path(d) for d in search_dirs]
            for directory in dirs:
                candidate = directory / file_name
                if candidate.exists():
                    return Library._open_file(os.path.abspath(candidate))
            listed = ", ".join(str(d) for d in dirs) or "(no directories)"
            raise LibraryNotFoundError(f"no {file_name} in {listed}: check the name, or add the directory that holds it")
        # System loader path. The unversioned dev file may be absent, or a
        # linker script (glibc's libc.so): fall back to what ldconfig knows.
        handle, error = open_library(file_name)
        if not handle and error is not None and (
            ("cannot open shared object file" in error and error.startswith(file_name)) or "invalid ELF header" in error
        ):
            found = versioned(file_name)
            if found:
                handle, error = open_library(found)
        if not handle:
            failure = _classify(file_name, error or "")
            if isinstance(failure, LibraryNotFoundError) and os.path.isfile(file_name):
                # dlopen does not look in the current directory for a bare
                # name, and neither do we: say so, as the file is right there.
                raise LibraryNotFoundError(
                    f"cannot load {file_name}: {error}; a bare name is looked up on the loader path, never in the current directory, "
                    f"but {file_name} is in the current directory: pass './{file_name}' (or its full path) to load that file"
                )
            raise failure
        return handle, loaded_path(handle) or file_name

    @classmethod
    def _of_file(cls, path: str, mode: int | None) -> Library:
        """Library(path) for an absolute path whose st_mode the caller has
        just read (None: not known), without reading it again."""
        library = cls.__new__(cls)
        library._handle, library.path = cls._open_file(path, mode)
        library._decls = None
        return library

    @staticmethod
    def _open_file(path: str, mode: int | None = None) -> tuple[int, str]:
        try:  # the dynamic loader would block for ever opening a FIFO with no writer
            if mode is None:
                mode = os.stat(path).st_mode
        except OSError:
            pass  # dlopen and the checks below say what is wrong
        else:
            refuse_non_file(path, mode)
        handle, error = open_library(path)
        if not handle:
            # Explain the failure from the file itself where the loader's
            # message is vague (a wrong machine reads "cannot open").
            if not os.path.lexists(path):
                raise LibraryNotFoundError(_not_found(path))
            try:
                check_header(path)
            except FileNotFoundError:
                raise LibraryNotFoundError(
                    f"{path} is a symbolic link to {os.readlink(path)!r}, which does not exist: fix or remove the link"
                ) from None
            except OSError as exc:
                raise LibraryError(f"cannot read {path}: {exc.strerror or exc}; check the file and its permissions") from None
            raise _classify(path, error or "")
        return handle, path

    def __repr__(self) -> str:
        return f"<ferrule.Library {self.path!r}>"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and find_symbol(self._handle, name) != 0

    def symbol(self, name: str) -> int:
        """The address of an exported symbol. Raises SymbolNotFoundError."""
        address = find_symbol(self._handle, name)
        if not address:
            raise SymbolNotFoundError(
                f"{self.path} does not export {name!r}: check the spelling, and that the symbol is "
                "exported (nm -D --defined-only)"
            )
        return address

    def function(self, name: str, signature: str | None = None, *, free: Callable[[Any], Any] | None = None) -> CFunction:
        """Look up ``name`` and return it as a Python callable of C type ``signature``.

        ``signature`` is a C function type without the name, e.g.
        ``"unsigned long (unsigned long, const unsigned char *, unsigned int)"``,
        and may use the types declared with ``cdef``; leave it out for a
        function whose prototype ``cdef`` declared. Arguments are checked
        and converted (see docs/calling-c.md): numbers; for pointers None, an
        int address, a value from ``declarations.new``, or a buffer (one
        that is immutable only where the parameter is const, and at least
        one element long); for function pointers a Python callable (alive
        for the call) or a ``Callback``; variadic extras as ``(type, value)``.

        A ``char *`` result is copied to bytes (None for NULL), a declared
        struct pointer stays a cffi pointer, a function pointer becomes a
        callable, any other pointer an int address. With ``free`` (say,
        ``libc.function("free", "void (void *)")``) a pointer result is the
        caller's: it comes back as ``Owned``, freed with that function.
        """
        from .cdecl import CFunction

        decls = self.declarations
        const: tuple[bool, ...] | None
        if signature is None:
            declared = decls._declared(name)
            if declared is None:
                raise ValueError(f"no prototype of {name!r} is declared: pass its signature, e.g. "
                                 f"lib.function({name!r}, \"int (int)\"), or declare it with lib.cdef(...)")
            ctype, const, signature = declared
        else:
            ctype, const = decls._signature(signature)
        pointer = decls.ffi.cast(ctype, self.symbol(name))
        return CFunction(decls, name, signature, pointer, ctype, const, free)


def _declarations(text: str = "") -> Declarations:
    from .cdecl import Declarations

    return Declarations(text)
