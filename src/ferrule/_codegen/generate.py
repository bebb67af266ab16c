"""``ferrule generate``: Rust, C and Python code from interface declarations,
and the lock file that keeps published revisions immutable."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ..idl import InterfaceSpec, first_difference, spec

__all__ = ["GenerateError", "declarations", "declared", "generate", "import_module"]


class GenerateError(Exception):
    """A declaration module, lock or output problem, reported in one line."""


def import_module(module_name: str) -> ModuleType:
    """Import a declaration module, found from the current directory, then
    sys.path. Raises GenerateError saying what is missing and where to run."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name != missing and not module_name.startswith(missing + "."):
            # The module itself exists: something it imports does not.
            raise GenerateError(f"cannot import {module_name!r}: {exc}") from None
        parent, _, last = missing.rpartition(".")
        if parent in sys.modules:
            where = os.path.dirname(str(getattr(sys.modules[parent], "__file__", None) or "")) or parent
            raise GenerateError(f"cannot import {module_name!r}: package {parent} ({where}) has no module "
                                f"{last!r}") from None
        raise GenerateError(f"cannot import {module_name!r}: no module {missing!r} in the current directory or on "
                            "sys.path: run ferrule from the directory that holds it, or add that directory to "
                            "PYTHONPATH") from None
    except ImportError as exc:
        raise GenerateError(f"cannot import {module_name!r}: {exc}") from None


def declared(module: ModuleType) -> list[InterfaceSpec]:
    """The interfaces a module declares itself (not those it imports), in
    declaration order; possibly none."""
    found = []
    for value in vars(module).values():
        iface = getattr(value, "__ferrule_interface__", None)
        if isinstance(iface, InterfaceSpec) and getattr(value, "__module__", None) == module.__name__:
            found.append(spec(value))
    return found


def declarations(module_name: str) -> list[InterfaceSpec]:
    """Every interface declared in a module, in declaration order. Raises
    GenerateError when there is none or one (id, revision) is declared twice."""
    found = declared(import_module(module_name))
    if not found:
        raise GenerateError(f"{module_name} declares no interfaces (decorate classes with @ferrule.idl.interface)")
    keys = [s.key for s in found]
    for key in keys:
        if keys.count(key) > 1:
            raise GenerateError(f"{module_name} declares {key[0]}/{key[1]} twice")
    return found


def _lock_path(module_name: str, given: str | None) -> Path:
    if given:
        return Path(given)
    module = sys.modules[module_name]
    return Path(str(module.__file__)).with_suffix(".ferrule-lock")


def _check_lock(specs: list[InterfaceSpec], path: Path) -> dict[str, Any]:
    """Refuse a published revision whose layout changed; return the updated lock."""
    lock: dict[str, Any] = {}
    if path.exists():
        try:
            lock = json.loads(path.read_text())
            if not isinstance(lock, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise GenerateError(f"{path} is not a valid lock file ({exc}): restore it from version control") from None
    for s in specs:
        key = f"{s.id}/{s.revision}"
        entry = lock.get(key)
        if entry is None:
            lock[key] = {"fingerprint": f"{s.fingerprint:#018x}", "layout": s.layout.splitlines()}
            continue
        if entry.get("fingerprint") != f"{s.fingerprint:#018x}":
            published = "\n".join(entry.get("layout", [])) + "\n"
            raise GenerateError(
                f"{key} ({s.name}) changed since it was published in {path} (fingerprint {entry.get('fingerprint')} "
                f"is now {s.fingerprint:#018x}; {first_difference(published, s.layout).replace('host has', 'published has').replace('plugin has', 'declaration has')}): "
                f"published revisions are immutable, declare the change as revision {s.revision + 1}. "
                f"If {key} was never released, delete its entry from the lock file."
            )
    return dict(sorted(lock.items()))


def generate(args: argparse.Namespace) -> int:
    specs = declarations(args.module)
    outputs: list[tuple[Path, str]] = []
    if args.rust:
        from . import rust

        outputs.append((Path(args.rust), rust.render(specs, args.module)))
    if args.rust_host:
        from . import rust

        outputs.append((Path(args.rust_host), rust.render(specs, args.module, host=True)))
    if args.c:
        prefix = args.c_prefix or Path(args.c).stem.replace("-", "_")
        if not prefix.isidentifier():
            raise GenerateError(f"C prefix {prefix!r} is not an identifier: pass --c-prefix")
        from . import c

        outputs.append((Path(args.c), c.render(specs, args.module, prefix.lower())))
    if args.python:
        from . import python

        py = Path(args.python)
        outputs.append((py, python.render_py(specs, args.module)))
        outputs.append((py.with_suffix(".pyi"), python.render_pyi(specs, args.module)))
    lock_path = _lock_path(args.module, args.lock)
    lock = _check_lock(specs, lock_path)
    lock_text = json.dumps(lock, indent=2) + "\n"
    if not args.no_lock:
        outputs.append((lock_path, lock_text))
    stale = [path for path, text in outputs if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"ferrule: {path} is not current: run ferrule generate", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs:
        if path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {os.path.relpath(path)}")
    for s in specs:
        print(f"{s.id}/{s.revision} {s.name}: fingerprint {s.fingerprint:#018x}")
    return 0


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "generate",
        help="generate Rust, C and Python code from interface declarations",
        description="Import MODULE (a dotted name, found from the current directory), collect its "
        "@ferrule.idl.interface declarations and write the requested outputs. Every (id, revision) "
        "is recorded in a lock file next to the module (MODULE.ferrule-lock); a recorded revision "
        "whose layout changed is refused.",
    )
    cmd.add_argument("module", help="the declaration module, e.g. myapp.interfaces")
    cmd.add_argument("--rust", metavar="FILE", help="write the Rust module (for plugins using ferrule-sdk)")
    cmd.add_argument("--rust-host", metavar="FILE",
                     help="write the Rust module for a host using ferrule-host (clients, services), plugin side too")
    cmd.add_argument("--c", metavar="FILE", help="write the C header")
    cmd.add_argument("--c-prefix", metavar="PREFIX", help="prefix of C names (default: the header's file name)")
    cmd.add_argument("--python", metavar="FILE", help="write typed proxies FILE and FILE's .pyi")
    cmd.add_argument("--lock", metavar="FILE", help="the lock file (default: next to the module)")
    cmd.add_argument("--no-lock", action="store_true", help="check against the lock, but do not write it")
    cmd.add_argument("--check", action="store_true", help="write nothing; exit 1 if an output is not current")
    cmd.set_defaults(run=generate)
