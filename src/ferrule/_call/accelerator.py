"""The optional C accelerator (``_speedups``): the vectorcall entry of plugin
functions, with its own host table and gate. Only a speed-up: every path
works without it, on cffi, with the same results and errors.

``speedups`` is None when it is not built or ``FERRULE_PURE_PYTHON`` is set;
``enabled`` says whether plugins loaded from now on take the C path (the
tests switch it to compare the paths).
"""

from __future__ import annotations

import os
import types

__all__ = ["enabled", "speedups"]

speedups: types.ModuleType | None
try:
    if os.environ.get("FERRULE_PURE_PYTHON"):
        raise ImportError("FERRULE_PURE_PYTHON is set")
    from . import _speedups as speedups
except ImportError:  # not built: the cffi path does every job
    speedups = None

enabled = speedups is not None
