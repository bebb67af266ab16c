"""How ferrule starts its helper processes (the scan worker, isolated
children): this interpreter, this process's module path, one module's main()."""

from __future__ import annotations

import sys


def python_command(module: str, *args: str) -> list[str]:
    # The exact sys.path, not PYTHONPATH: that would put site-packages ahead
    # of the standard library in the child.
    code = f"import sys; sys.path[:] = {sys.path!r}; from {module} import main; main()"
    return [sys.executable, "-c", code, *args]
