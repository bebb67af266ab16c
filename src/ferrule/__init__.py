"""ferrule: load native plugins (Rust, C, C++) through a stable, versioned C ABI.

    plugin = ferrule.load("target/release/libgreeter.so")
    plugin.add(2, 3)

``Library`` is the low-level loader (symbols and C signatures); ``load``
returns a ``Plugin`` with typed functions. ``ferrule.idl`` declares the
interfaces a host defines; a ``PluginHost`` provides services to plugins and
makes instances of the interfaces they implement. Every error is a subclass of
``FerruleError``; see ``ferrule._errors`` for the whole tree.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

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
if _TYPE_CHECKING:
    from . import idl
    from ._call.aio import AsyncCalls, AsyncFunction
    from ._call.function import PluginFunction
    from ._host import PluginHost
    from ._interfaces.instances import Implementation, Instance
    from ._isolation.plugin import IsolatedFunction, IsolatedPlugin
    from ._load import load
    from ._loader import Library, library_file_name
    from ._loader.cdecl import Callback, CFunction, Declarations, Owned
    from ._plugin.plugin import Plugin
    from ._ref import PluginRef
    from ._sandbox import Sandbox, SandboxReport
    from ._scan.discover import discover
    from ._scan.scan import PluginInfo, ScanProblem, ScanResult, scan

# Imported on first use, so that a process that needs only part of ferrule
# (an isolated child, a script that loads one plugin) does not pay for the
# rest: scanning, discovery, isolation and the sandbox each import more.
_LAZY = {
    "idl": ".idl",
    "AsyncCalls": "._call.aio",
    "AsyncFunction": "._call.aio",
    "PluginFunction": "._call.function",
    "PluginHost": "._host",
    "Implementation": "._interfaces.instances",
    "Instance": "._interfaces.instances",
    "IsolatedFunction": "._isolation.plugin",
    "IsolatedPlugin": "._isolation.plugin",
    "load": "._load",
    "Library": "._loader",
    "Callback": "._loader.cdecl",
    "CFunction": "._loader.cdecl",
    "Declarations": "._loader.cdecl",
    "Owned": "._loader.cdecl",
    "library_file_name": "._loader",
    "Plugin": "._plugin.plugin",
    "PluginRef": "._ref",
    "Sandbox": "._sandbox",
    "SandboxReport": "._sandbox",
    "discover": "._scan.discover",
    "PluginInfo": "._scan.scan",
    "ScanProblem": "._scan.scan",
    "ScanResult": "._scan.scan",
    "scan": "._scan.scan",
}


def __getattr__(name: str) -> _Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'ferrule' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(where, __name__)
    value = module if name == "idl" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

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
    "AsyncCalls",
    "AsyncFunction",
    "BadMagicError",
    "CFunction",
    "CallCancelledError",
    "Callback",
    "Declarations",
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
    "Owned",
    "Plugin",
    "PluginCallError",
    "PluginClosedError",
    "PluginCrashedError",
    "PluginFunction",
    "PluginHost",
    "PluginInfo",
    "PluginInitError",
    "PluginRef",
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
