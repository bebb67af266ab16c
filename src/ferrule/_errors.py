"""Every failure ferrule raises, in one tree.

    FerruleError
    ├── LibraryError                  the shared library could not be used
    │   ├── LibraryNotFoundError      no file at the path / name not found (also FileNotFoundError)
    │   ├── NotALibraryError          the file is not a shared library
    │   ├── WrongArchitectureError    built for another CPU or word size
    │   ├── MissingDependencyError    a library it links against is missing
    │   ├── SymbolNotFoundError       Library.symbol / Library.function: no such symbol
    │   ├── PinMismatchError          load(..., sha256=): the file's hash is not the pinned one
    │   └── UnsafeFileError           others could write the file or its directory
    ├── DescriptorError               the library is not a usable ferrule plugin
    │   ├── NoEntryPointError         no ferrule_entry_v1 symbol, or it returned NULL
    │   ├── BadMagicError             the descriptor does not start with FERRULE_MAGIC
    │   ├── AbiVersionError           the plugin's ABI major differs from the host's
    │   ├── DescriptorTooSmallError   a struct_size smaller than ABI 1.0 requires
    │   ├── SignatureError            a function signature that does not parse
    │   ├── MetadataError             missing, non-UTF-8 or duplicate metadata
    │   └── InterfaceMismatchError    an implementation's layout differs from the host's declaration
    ├── PluginInitError               the plugin's init reported failure (or panicked)
    ├── PluginCallError               a plugin function reported failure
    │   └── PluginPanicError          a Rust panic caught at the boundary
    ├── PluginClosedError             a call after close() (of a plugin or an instance)
    └── IsolationError                an isolated plugin's child process failed
        ├── PluginCrashedError        the child died: signal or exit status, last output lines
        ├── PluginTimeoutError        a call outlived its timeout (also TimeoutError)
        ├── CallCancelledError        cancel() from another thread ended the call
        └── SandboxError              a protection the Sandbox requires is not available here

    ThreadContractWarning (a RuntimeWarning): a debug host saw a plugin break
    the thread contract, e.g. set_error from a thread not running a call.
    AcceleratorWarning (a RuntimeWarning): ferrule was installed without its
    C accelerator, so calls take the slower cffi path; said once per process.

Argument mistakes (wrong count, type or range) raise the built-in TypeError
and ValueError, naming the function and the parameter.

An error's extra attributes are its *fields*: the keyword parameters of its
``__init__`` after the message, each stored under its own name. Isolated mode
sends an error across the process boundary as its class name, message and
fields (``to_payload`` / ``from_payload``), so a field added to a class
crosses with it; tests/test_errors.py holds every class to that rule.
"""

from __future__ import annotations

import builtins
import inspect
import types
import typing
from typing import Any

__all__ = [
    "AbiVersionError",
    "BadMagicError",
    "CallCancelledError",
    "DescriptorError",
    "DescriptorTooSmallError",
    "FerruleError",
    "InterfaceMismatchError",
    "IsolationError",
    "LibraryError",
    "LibraryNotFoundError",
    "MetadataError",
    "MissingDependencyError",
    "NoEntryPointError",
    "PinMismatchError",
    "NotALibraryError",
    "PluginCallError",
    "PluginClosedError",
    "PluginCrashedError",
    "PluginInitError",
    "PluginPanicError",
    "PluginTimeoutError",
    "SandboxError",
    "SignatureError",
    "SymbolNotFoundError",
    "ThreadContractWarning",
    "UnsafeFileError",
    "WrongArchitectureError",
]

# Built-in exceptions that cross the process boundary as themselves (the
# argument checks raise the first two); anything else arrives as FerruleError.
CROSSING_BUILTINS = ("TypeError", "ValueError", "LookupError", "KeyError", "OverflowError", "MemoryError")


class FerruleError(Exception):
    """Base class of every error ferrule raises on its own account."""

    __module__ = "ferrule"

    def __init__(self, message: str = ""):
        super().__init__(message)


class LibraryError(FerruleError):
    """The shared library could not be opened or used."""

    __module__ = "ferrule"


class LibraryNotFoundError(LibraryError, FileNotFoundError):
    """No file at the given path, or a bare name found in no searched directory."""

    __module__ = "ferrule"


class NotALibraryError(LibraryError):
    """The file exists but is not a loadable shared library."""

    __module__ = "ferrule"


class WrongArchitectureError(LibraryError):
    """The library was built for another CPU architecture or word size."""

    __module__ = "ferrule"


class MissingDependencyError(LibraryError):
    """A library that this one links against cannot be found."""

    __module__ = "ferrule"


class SymbolNotFoundError(LibraryError):
    """The library does not export the requested symbol."""

    __module__ = "ferrule"


class PinMismatchError(LibraryError):
    """The file's SHA-256 is not the one ``load(..., sha256=)`` pinned;
    nothing of it ran."""

    __module__ = "ferrule"


class UnsafeFileError(LibraryError):
    """The plugin file or its directory is writable by others than its owner
    (or owned by another user), so others could put code in this process;
    nothing of it ran. ``strict_permissions=False`` loads it anyway."""

    __module__ = "ferrule"


class DescriptorError(FerruleError):
    """The library loaded, but its plugin descriptor is missing or unusable."""

    __module__ = "ferrule"


class NoEntryPointError(DescriptorError):
    """The library exports no ferrule entry point, or the entry point returned NULL."""

    __module__ = "ferrule"


class BadMagicError(DescriptorError):
    """The descriptor does not start with the ferrule magic value."""

    __module__ = "ferrule"


class AbiVersionError(DescriptorError):
    """The plugin was built for another ABI major version."""

    __module__ = "ferrule"

    def __init__(self, message: str, plugin_version: tuple[int, int] = (0, 0), host_version: tuple[int, int] = (0, 0)):
        super().__init__(message)
        self.plugin_version = plugin_version
        self.host_version = host_version


class DescriptorTooSmallError(DescriptorError):
    """A descriptor struct is smaller than ABI 1.0 requires."""

    __module__ = "ferrule"


class SignatureError(DescriptorError):
    """A function's signature string does not parse."""

    __module__ = "ferrule"


class MetadataError(DescriptorError):
    """Required metadata is missing, not UTF-8, or duplicated."""

    __module__ = "ferrule"


class InterfaceMismatchError(DescriptorError):
    """A plugin's implementation of an interface was generated from another
    layout than the host's declaration of the same id and revision."""

    __module__ = "ferrule"

    def __init__(self, message: str, expected_layout: str = "", found_layout: str = ""):
        super().__init__(message)
        self.expected_layout = expected_layout
        self.found_layout = found_layout


class PluginInitError(FerruleError):
    """The plugin's init function reported failure (or panicked);
    ``plugin_message`` is the plugin's own message."""

    __module__ = "ferrule"

    def __init__(self, message: str, plugin_message: str = ""):
        super().__init__(message)
        self.plugin_message = plugin_message


class PluginCallError(FerruleError):
    """A plugin function reported failure; the message is the plugin's own."""

    __module__ = "ferrule"

    def __init__(self, message: str, plugin_message: str = ""):
        super().__init__(message)
        self.plugin_message = plugin_message


class PluginPanicError(PluginCallError):
    """A Rust panic was caught at the boundary; the host keeps running."""

    __module__ = "ferrule"


class PluginClosedError(FerruleError):
    """The plugin was used after close()."""

    __module__ = "ferrule"


class ThreadContractWarning(RuntimeWarning):
    """A debug host (``PluginHost(debug=True)``) saw the thread contract
    broken: a host callback from a thread that must not call it, or two
    threads inside one instance that is not thread-safe."""

    __module__ = "ferrule"


class AcceleratorWarning(RuntimeWarning):
    """ferrule's optional C code is missing (built without a C compiler or
    Python headers): everything works, on the slower cffi paths. Warned once
    per process, at the first plugin that would have used it."""

    __module__ = "ferrule"


class IsolationError(FerruleError):
    """An isolated plugin's child process failed; the host is unharmed.

    ``status`` is how the child ended: a negative signal number (as in
    ``subprocess``), an exit status, or None while it still ran (it was then
    killed by ferrule). ``last_lines`` holds the plugin's last log and
    stderr lines, oldest first."""

    __module__ = "ferrule"

    def __init__(self, message: str, status: int | None = None, last_lines: tuple[str, ...] = ()):
        super().__init__(message)
        self.status = status
        self.last_lines = last_lines

    @property
    def signal(self) -> int | None:
        """The signal that ended the child, or None."""
        return -self.status if self.status is not None and self.status < 0 else None

    @property
    def exit_status(self) -> int | None:
        """The child's exit status when it exited on its own, or None."""
        return self.status if self.status is not None and self.status >= 0 else None


class PluginCrashedError(IsolationError):
    """The isolated plugin's process died (a signal, exit() or abort()), or
    failed earlier and was loaded with ``restart=False``."""

    __module__ = "ferrule"


class PluginTimeoutError(IsolationError, TimeoutError):
    """A call into an isolated plugin outlived its timeout; the child was killed."""

    __module__ = "ferrule"


class CallCancelledError(IsolationError):
    """Another thread cancelled the call (``cancel()``); the child was killed."""

    __module__ = "ferrule"


class SandboxError(IsolationError):
    """The sandbox the caller asked for cannot be given here (``missing``
    names the protection: see ``ferrule.Sandbox``); nothing of the plugin ran."""

    __module__ = "ferrule"

    def __init__(self, message: str, missing: str | None = None):
        super().__init__(message)
        self.missing = missing


# ------------------------------------------------------------------ transport


def fields(cls: type[BaseException]) -> tuple[str, ...]:
    """The names of an error class's fields: its ``__init__``'s parameters
    after the message. Built-in exceptions have none."""
    found = _fields.get(cls)
    if found is None:
        params = list(inspect.signature(cls.__init__).parameters.values())[2:] if issubclass(cls, FerruleError) else []
        found = _fields[cls] = tuple(p.name for p in params)  # [2:]: self, message
    return found


_fields: dict[type[BaseException], tuple[str, ...]] = {}


def to_payload(exc: BaseException) -> dict[str, Any]:
    """An exception as JSON-ready data: the most specific class that can cross
    (see ``from_payload``), its message and its fields."""
    cls = next((c for c in type(exc).__mro__ if _crossing(c.__name__) is c), FerruleError)
    # The constructor's text, not str(): a KeyError's str() is the repr of its key.
    message = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    return {"class": cls.__name__, "message": message,
            "fields": {name: getattr(exc, name) for name in fields(cls)}}


def from_payload(payload: Any, refuse: frozenset[str] = frozenset()) -> BaseException:
    """The exception ``to_payload`` described: the same class, message and
    fields. Raises ValueError for data of another shape, an unknown class or
    one in ``refuse``."""
    if not (isinstance(payload, dict) and payload.keys() == {"class", "message", "fields"}
            and isinstance(payload["class"], str) and isinstance(payload["message"], str)
            and isinstance(payload["fields"], dict)):
        raise ValueError(f"an error report of the wrong shape: {payload!r:.200}")
    name = payload["class"]
    cls = _crossing(name)
    if cls is None or name in refuse:
        raise ValueError(f"an error of unknown class {name!r:.100}")
    given, wanted = payload["fields"], fields(cls)
    if set(given) != set(wanted):
        raise ValueError(f"a {name} with fields {sorted(given)!r:.200}, expected {list(wanted)}")
    hints = typing.get_type_hints(cls.__init__)
    values = {}
    for key in wanted:
        value = _conform(given[key], hints[key])
        if value is _WRONG:
            raise ValueError(f"a {name} whose {key} is {given[key]!r:.100}, expected {hints[key]}")
        values[key] = value
    return cls(payload["message"], **values)


_WRONG: Any = object()


def _conform(value: Any, hint: Any) -> Any:
    """value as the field type ``hint`` holds it (JSON lists become tuples),
    or _WRONG. Covers the field types the tree uses."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            made = _conform(value, option)
            if made is not _WRONG:
                return made
        return _WRONG
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            return _WRONG
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(value):
            return _WRONG
        made = [_conform(v, k) for v, k in zip(value, kinds)]
        return _WRONG if any(m is _WRONG for m in made) else tuple(made)
    if hint is type(None):
        return value if value is None else _WRONG
    if isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    return _WRONG


def _crossing(name: str) -> type[BaseException] | None:
    found = globals().get(name) if name in __all__ else getattr(builtins, name, None) if name in CROSSING_BUILTINS else None
    if isinstance(found, type) and issubclass(found, BaseException) and not issubclass(found, Warning):
        return found
    return None
