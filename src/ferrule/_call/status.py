"""A plugin's status code as an exception: the one mapping, for calls,
init, create and plugin-to-plugin calls alike.

FERRULE_OK is success; FERRULE_PANIC is a caught panic; every other value
is a failure (FERRULE_ERROR, or any code a plugin invents).
"""

from __future__ import annotations

from typing import Literal

from .._abi import cdef as abi
from .._errors import FerruleError, PluginCallError, PluginInitError, PluginPanicError

__all__ = ["Step", "callee_status", "status_error"]

Step = Literal["call", "init", "create"]

# For each step: (class, text) on failure, then on a panic.
_OUTCOMES: dict[str, tuple[type[PluginCallError] | type[PluginInitError], str, type[PluginCallError]
                           | type[PluginInitError], str]] = {
    "call": (PluginCallError, "{subject} failed: {message}", PluginPanicError, "{subject} panicked: {message}"),
    "init": (PluginInitError, "{subject} failed to initialise: {message}", PluginInitError,
             "{subject} panicked in init: {message}"),
    "create": (PluginCallError, "{subject}: {message}", PluginPanicError, "{subject}: {message}"),
}


def status_error(status: int, message: str, subject: str, step: Step = "call") -> FerruleError:
    """The exception for a failed step. ``subject`` names what failed, e.g.
    ``plugin 'x' function 'f'``; ``message`` is the plugin's own."""
    cls, text, panic_cls, panic_text = _OUTCOMES[step]
    if status == abi.PANIC:
        cls, text = panic_cls, panic_text
    return cls(text.format(subject=subject, message=message), message)


def callee_status(status: int) -> int:
    """The status a plugin gets back from host->call when the callee failed
    with ``status``: a panic stays a panic, anything else is FERRULE_ERROR."""
    return abi.PANIC if status == abi.PANIC else abi.ERROR
