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
    └── PluginClosedError             a call after close() (of a plugin or an instance)

    ThreadContractWarning (a RuntimeWarning): a debug host saw a plugin break
    the thread contract, e.g. set_error from a thread not running a call.

Argument mistakes (wrong count, type or range) raise the built-in TypeError
and ValueError, naming the function and the parameter.
"""

from __future__ import annotations

__all__ = [
    "AbiVersionError",
    "BadMagicError",
    "DescriptorError",
    "DescriptorTooSmallError",
    "FerruleError",
    "InterfaceMismatchError",
    "LibraryError",
    "LibraryNotFoundError",
    "MetadataError",
    "MissingDependencyError",
    "NoEntryPointError",
    "NotALibraryError",
    "PluginCallError",
    "PluginClosedError",
    "PluginInitError",
    "PluginPanicError",
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
