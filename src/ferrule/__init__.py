"""ferrule: load native plugins (Rust, C, C++) through a stable, versioned C ABI.

    plugin = ferrule.load("target/release/libgreeter.so")
    plugin.add(2, 3)

``Library`` is the low-level loader (symbols and C signatures); ``load``
returns a ``Plugin`` with typed functions. ``ferrule.idl`` declares the
interfaces a host defines; a ``PluginHost`` provides services to plugins and
makes instances of the interfaces they implement. Every error is a subclass of
``FerruleError``; see ``ferrule._errors`` for the whole tree.
"""

from ._abi.cdef import ABI_MAJOR, ABI_MINOR
from ._errors import (
    AbiVersionError,
    AcceleratorWarning,
    BadMagicError,
    CallCancelledError,
    DescriptorError,
    DescriptorTooSmallError,
    FerruleError,
    InterfaceMismatchError,
    IsolationError,
    LibraryError,
    LibraryNotFoundError,
    MetadataError,
    MissingDependencyError,
    NoEntryPointError,
    PinMismatchError,
    UnsafeFileError,
    NotALibraryError,
    PluginCallError,
    PluginClosedError,
    PluginCrashedError,
    PluginInitError,
    PluginPanicError,
    PluginTimeoutError,
    SandboxError,
    SignatureError,
    SymbolNotFoundError,
    ThreadContractWarning,
    WrongArchitectureError,
)
from . import idl
from ._call.function import PluginFunction
from ._interfaces.instances import Implementation, Instance
from ._isolation.plugin import IsolatedFunction, IsolatedPlugin
from ._load import load
from ._loader import Library, library_file_name
from ._host import PluginHost
from ._plugin.plugin import Plugin
from ._sandbox import Sandbox, SandboxReport
from ._scan.discover import discover
from ._scan.scan import PluginInfo, ScanProblem, ScanResult, scan

__version__ = "0.1.0"


def get_include() -> str:
    """The directory holding ``ferrule.h`` (and the ``ferrule.map`` version
    script), for building a C or C++ plugin against this installed ferrule:
    ``cc -I "$(ferrule --include)" ...``."""
    import os

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


__all__ = [
    "ABI_MAJOR",
    "ABI_MINOR",
    "AbiVersionError",
    "AcceleratorWarning",
    "BadMagicError",
    "CallCancelledError",
    "DescriptorError",
    "DescriptorTooSmallError",
    "FerruleError",
    "Implementation",
    "Instance",
    "InterfaceMismatchError",
    "IsolatedFunction",
    "IsolatedPlugin",
    "IsolationError",
    "Library",
    "LibraryError",
    "LibraryNotFoundError",
    "MetadataError",
    "MissingDependencyError",
    "NoEntryPointError",
    "PinMismatchError",
    "UnsafeFileError",
    "NotALibraryError",
    "Plugin",
    "PluginCallError",
    "PluginClosedError",
    "PluginCrashedError",
    "PluginFunction",
    "PluginHost",
    "PluginInfo",
    "PluginInitError",
    "PluginPanicError",
    "PluginTimeoutError",
    "Sandbox",
    "SandboxError",
    "SandboxReport",
    "ScanProblem",
    "ScanResult",
    "SignatureError",
    "SymbolNotFoundError",
    "ThreadContractWarning",
    "WrongArchitectureError",
    "discover",
    "get_include",
    "idl",
    "library_file_name",
    "load",
    "scan",
]
