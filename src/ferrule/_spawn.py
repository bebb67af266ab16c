"""How ferrule starts its helper processes (the scan worker, isolated
children) and names how they ended."""

from __future__ import annotations

import signal
import sys


def python_command(module: str, *args: str) -> list[str]:
    # The exact sys.path, not PYTHONPATH: that would put site-packages ahead
    # of the standard library in the child.
    code = f"import sys; sys.path[:] = {sys.path!r}; from {module} import main; main()"
    return [sys.executable, "-c", code, *args]


def signal_name(number: int) -> str:
    """SIGSEGV for 11; "signal N" for a number this platform does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
