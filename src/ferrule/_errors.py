"""Every failure ferrule raises, in one tree.

    FerruleError
    ├── LibraryError                  the shared library could not be used
    │   ├── LibraryNotFoundError      no file at the path / name not found (also FileNotFoundError)
    │   ├── NotALibraryError          the file is not a shared library
    │   ├── WrongArchitectureError    built for another CPU or word size
    │   ├── MissingDependencyError    a library it links against is missing
    │   └── SymbolNotFoundError       Library.symbol / Library.function: no such symbol
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
        └── CallCancelledError        cancel() from another thread ended the call

    ThreadContractWarning (a RuntimeWarning): a debug host saw a plugin break
    the thread contract, e.g. set_error from a thread not running a call.

Argument mistakes (wrong count, type or range) raise the built-in TypeError
and ValueError, naming the function and the parameter.
"""

from __future__ import annotations

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
    "NotALibraryError",
    "PluginCallError",
    "PluginClosedError",
    "PluginCrashedError",
    "PluginInitError",
    "PluginPanicError",
    "PluginTimeoutError",
    "SignatureError",
    "SymbolNotFoundError",
    "ThreadContractWarning",
    "WrongArchitectureError",
]


class FerruleError(Exception):
    """Base class of every error ferrule raises on its own account."""

    __module__ = "ferrule"


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

    def __init__(self, message: str, plugin_version: tuple[int, int], host_version: tuple[int, int]):
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
    """The plugin's init function reported failure; the message is the plugin's own."""

    __module__ = "ferrule"


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
