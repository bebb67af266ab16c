"""Check an installed ferrule the way a user gets it: its C code is there,
its header builds a plugin, and that plugin runs in process and isolated.

Run by cibuildwheel on each built wheel and by tests/test_packaging.py on a
wheel built from the sdist; it must not import anything from a checkout.
Needs a C compiler (``$CC``, default ``cc``)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ferrule
from ferrule._call import accelerator
from ferrule._isolation import channel
from ferrule._loader import cdecl

PLUGIN = r"""
#include "ferrule.h"
static int32_t add(const ferrule_host *h, void *s, const ferrule_value *a, ferrule_value *r) {
    (void)h; (void)s; r->i64 = a[0].i64 + a[1].i64; return FERRULE_OK;
}
static const ferrule_function add_fn = FERRULE_FUNCTION("add", "(a: i64, b: i64) -> i64", 0, 0, add);
static const ferrule_function *const fns[] = {&add_fn};
static const ferrule_plugin desc = {FERRULE_PLUGIN_HEAD, "org.ferrule.wheelcheck", "check", "1", 0, 0, 1, 0, fns,
                                    0, 0, 0, 0, 0};
FERRULE_ENTRY { return &desc; }
"""


def check(ok: bool, problem: str) -> None:
    if not ok:  # not assert: python -O must not skip the checks
        raise SystemExit(f"wheel check failed: {problem}")


def main() -> int:
    installed = Path(ferrule.__file__).resolve().parent
    check("site-packages" in installed.parts, f"ferrule imported from {installed}, not from an install")
    check(accelerator.speedups is not None, f"no accelerator: {accelerator.missing}")
    check(channel.IMPLEMENTATION == "c", f"no C channel: {channel.MISSING}")
    check(cdecl._ccall is not None, "no C path for Library functions (ferrule._loader._ccall)")
    cos = ferrule.Library("m").function("cos", "double (double)")
    registers = platform.machine().lower() in ("x86_64", "amd64")  # the ABI its register calls are tested on
    check(getattr(cos, "_accelerated", False) == registers and cos(0.0) == 1.0, "Library's cos on its C path")
    with tempfile.TemporaryDirectory() as tmp:
        source, library = Path(tmp, "check.c"), Path(tmp, "libcheck.so")
        source.write_text(PLUGIN)
        subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-fvisibility=hidden", "-std=c99", "-Wall",
                        "-Werror", "-I", ferrule.get_include(), str(source), "-o", str(library)], check=True)
        with ferrule.load(library) as plugin:
            check(plugin.add(2, 3) == 5, "add(2, 3) in process")
        with ferrule.load(library, isolated=True, timeout=30) as isolated:
            check(isolated.add(40, 2) == 42, "add(40, 2) isolated")
        where = "in process and isolated"
        if shutil.which("bwrap"):  # the sandbox shows the child this install's Python and packages only
            with ferrule.load(library, isolated=True, timeout=30, sandbox=True) as boxed:
                check(boxed.add(1, 2) == 3, "add(1, 2) sandboxed")
                check(boxed.sandbox is not None and boxed.sandbox.seccomp, f"sandbox report: {boxed.sandbox}")
            where = "in process, isolated and sandboxed"
    print(f"ferrule {ferrule.__version__} from {installed}: accelerator, C channel and Library's C path on, a plugin built "
          f"against get_include() runs {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
