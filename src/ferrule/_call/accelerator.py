"""The optional C accelerator (``_speedups``): the vectorcall entry of plugin
functions, with its own host table and gate. Only a speed-up: every path
works without it, on cffi, with the same results and errors.

``speedups`` is None when it is not built or ``FERRULE_PURE_PYTHON`` is set;
``enabled`` says whether plugins loaded from now on take the C path (the
tests switch it to compare the paths). ``missing`` says why it is absent,
None when it is there or was declined on purpose; ``warn_missing`` turns such
a reason into one AcceleratorWarning per module and process.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import warnings

from .._errors import AcceleratorWarning

__all__ = ["enabled", "missing", "speedups", "warn_if_slow", "warn_missing", "why_missing"]

PURE = bool(os.environ.get("FERRULE_PURE_PYTHON"))


def why_missing(module: str, error: ImportError) -> str:
    """Why an optional C module did not import, in words a user can act on."""
    if isinstance(error, ModuleNotFoundError) and error.name == module:  # no such file
        return (f"{module} was not built when ferrule was installed (no C compiler or Python headers then, or "
                "an sdist without its C sources)")
    return f"{module} is installed but does not import ({error}): it was built for another Python or system"


speedups: types.ModuleType | None = None
missing: str | None = None
if not PURE:
    try:
        speedups = importlib.import_module(f"{__package__}._speedups")
    except ImportError as exc:  # not built: the cffi path does every job
        missing = why_missing(f"{__package__}._speedups", exc)

enabled = speedups is not None

_warned: set[str] = set()


def warn_if_slow() -> None:
    """Warn once that plugin calls run without the accelerator, if so; the
    isolated child's calls too, so an isolated host says it as well."""
    warn_missing(missing, "Plugin calls take the cffi path, about 100x slower (in the isolated child too)")


def _outside_ferrule() -> int:
    """The stacklevel of the first caller outside the ferrule package."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).startswith("ferrule."):
        frame = frame.f_back
        level += 1
    return level


def warn_missing(reason: str | None, cost: str) -> None:
    """Warn once per process that a C module is missing, with the fix; the
    warning points at the user's line that loaded the plugin."""
    if reason is None or reason in _warned:
        return
    _warned.add(reason)
    if "does not import" in reason:
        fix = "reinstall ferrule with this Python: pip install --force-reinstall --no-cache-dir ferrule"
    else:
        fix = ("install a C compiler and the Python headers (e.g. gcc and python3-dev) and reinstall: "
               "pip install --force-reinstall --no-cache-dir ferrule")
    warnings.warn(
        f"ferrule runs without its C code: {reason}. {cost}. To fix it, {fix}. "
        "Set FERRULE_PURE_PYTHON=1 to choose the cffi paths and silence this.",
        AcceleratorWarning,
        stacklevel=_outside_ferrule(),
    )
