"""The call contract: what every caller of plugin code relies on, declared.

A ``CallTarget`` is anything plugin functions are called on: an in-process
plugin, an instance of an interface it implements. It hands out the host
table the plugin was given, the state pointer its calls receive, and its
``Gate``. Plugin functions, interface methods and plugin-to-plugin calls
depend on this contract, never on ``Plugin`` itself; mypy checks that each
target keeps it.

Each protocol has two implementations with the same behaviour: the C
accelerator's (``_speedups.HostTable``, ``_speedups.Gate``) and the cffi
path's (``table.HostTable``, ``gate.Gate``).

Callers that have no host table in this process keep the rest of the
contract: an isolated plugin counts and serialises its calls through a Gate
of its own (and so refuses close() from inside a call alike), and a Python
service lent to plugins serialises with the same re-entrant rule.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CallTarget", "Gate", "HostTable"]


class Gate(Protocol):
    """Counts calls in flight into one plugin or instance, so that its
    shutdown or destroy never runs under one, and serialises the calls that
    are not thread-safe.

    The serial lock is re-entrant: a host function may call back into the
    same instance on the thread that is already inside it."""

    @property
    def closed(self) -> bool: ...

    def enter(self) -> Any:
        """Count a call in; returns its mark for ``leave``. Raises
        PluginClosedError once closed."""

    def leave(self, mark: Any) -> None:
        """Count the call of ``mark`` out."""

    def close(self, wait: bool) -> bool:
        """Refuse new calls; True when none is in flight (after waiting for
        them if ``wait``). With ``wait``, raises PluginClosedError when this
        thread is itself inside a call (it would wait for itself)."""

    def serial_enter(self) -> None:
        """Take the serial lock (without holding the GIL while waiting)."""

    def serial_try_enter(self) -> bool:
        """Take the serial lock if that needs no wait (an event loop must
        not block on it); True if taken."""

    def serial_leave(self) -> None: ...


class HostTable(Protocol):
    """The ``ferrule_host`` table handed to one plugin instance, and the host
    side of its callbacks. The failure message a plugin reports with
    set_error is kept per thread."""

    @property
    def address(self) -> int:
        """Where the ``ferrule_host`` struct lives."""

    def set_services(self, query: int, call: int, release: int, lent: dict[int, Any] | None = None) -> None:
        """Fill in the ABI 1.2 callbacks (addresses of C functions). With
        ``lent`` (token -> speedups.Lent), host->call serves those in C first."""

    def stash_error(self) -> Any:
        """Take this thread's pending message away (it is restored by
        ``restore_error``), leaving none: a call starts clean without losing
        the message of a call it is nested in."""

    def restore_error(self, saved: Any) -> None: ...

    def take_error(self) -> str:
        """The message of the call that just failed on this thread (consumed)."""


class CallTarget(Protocol):
    """What a plugin function needs from whatever it calls into."""

    @property
    def plugin_id(self) -> str:
        """For messages: the plugin the code belongs to."""

    @property
    def host_table(self) -> HostTable: ...

    @property
    def table(self) -> Any:
        """The host table as a ``ferrule_host *`` (cffi)."""

    @property
    def state(self) -> Any:
        """The ``void *`` every call receives: the plugin's state, or an instance."""

    @property
    def gate(self) -> Gate: ...

    @property
    def accelerated(self) -> bool:
        """Whether its functions take the C path (its host table and gate are then C's)."""

    @property
    def debug(self) -> bool:
        """Whether calls mark the thread for thread-contract checks (cffi path)."""
