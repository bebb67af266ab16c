"""ferrule: load native plugins (Rust, C, C++) through a stable, versioned C ABI.

    plugin = ferrule.load("target/release/libgreeter.so")
    plugin.add(2, 3)

``Library`` is the low-level loader (symbols and C signatures); ``load``
returns a ``Plugin`` with typed functions. Every error is a subclass of
``FerruleError``; see ``ferrule._errors`` for the whole tree.
"""

from ._cdef import ABI_MAJOR, ABI_MINOR
from ._errors import (
    AbiVersionError,
    BadMagicError,
    DescriptorError,
    DescriptorTooSmallError,
    FerruleError,
    LibraryError,
    LibraryNotFoundError,
    MetadataError,
    MissingDependencyError,
    NoEntryPointError,
    NotALibraryError,
    PluginCallError,
    PluginClosedError,
    PluginInitError,
    PluginPanicError,
    SignatureError,
    SymbolNotFoundError,
    WrongArchitectureError,
)
from ._library import Library, library_file_name
from ._plugin import Plugin, PluginFunction, load

__version__ = "0.1.0"

__all__ = [
    "ABI_MAJOR",
    "ABI_MINOR",
    "AbiVersionError",
    "BadMagicError",
    "DescriptorError",
    "DescriptorTooSmallError",
    "FerruleError",
    "Library",
    "LibraryError",
    "LibraryNotFoundError",
    "MetadataError",
    "MissingDependencyError",
    "NoEntryPointError",
    "NotALibraryError",
    "Plugin",
    "PluginCallError",
    "PluginClosedError",
    "PluginFunction",
    "PluginInitError",
    "PluginPanicError",
    "SignatureError",
    "SymbolNotFoundError",
    "WrongArchitectureError",
    "library_file_name",
    "load",
]
