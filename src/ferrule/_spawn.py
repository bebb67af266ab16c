"""How ferrule starts its helper processes (the scan worker, isolated
children) and names how they ended."""

from __future__ import annotations

import os
import signal
import sys
from typing import IO

# This process's id, kept current across forks: a check on every call
# (isolated mode's "is this a fork of the host?") reads it without a system call.
current_pid = os.getpid()


def _forked() -> None:
    global current_pid
    current_pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def python_command(module: str, *args: str, path: list[str] | None = None) -> list[str]:
    # The exact sys.path, not PYTHONPATH: that would put site-packages ahead
    # of the standard library in the child. No site (-S): the path already
    # holds what site added, and site's .pth files can cost a fresh
    # interpreter tens of milliseconds. ferrule's own root is added when an
    # import hook (an editable install's finder), not a path entry, found it.
    # With ``path`` (a sandbox's), Python runs isolated (-I): no environment,
    # user site or script directory.
    entries = [p for p in (sys.path if path is None else path) if isinstance(p, str)]  # what the import system reads
    if _ROOT not in entries:
        entries.append(_ROOT)
    code = f"import sys; sys.path[:] = {entries!r}; from {module} import main; main()"
    return [sys.executable, "-S", *([] if path is None else ["-I"]), "-c", code, *args]


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def signal_name(number: int) -> str:
    """SIGSEGV for 11; "signal N" for a number this platform does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def last_lines(output: IO[bytes], count: int = 5) -> list[str]:
    """The last non-blank lines of a process's output file (its last 4 KiB),
    stripped, to quote in the error that says how it ended."""
    output.seek(0, os.SEEK_END)
    output.seek(max(0, output.tell() - 4096))
    text = output.read().decode("utf-8", "replace")
    return [line.strip() for line in text.splitlines() if line.strip()][-count:]
