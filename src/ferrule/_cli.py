"""The ``ferrule`` command: inspect and call plugins from a shell, list the
plugins in directories, and generate code from interface declarations."""

from __future__ import annotations

import argparse
import array
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._abi.spec import PluginSpec
from ._abi.types import AbiType
from ._codegen import generate as _generate
from ._errors import FerruleError
from ._load import load
from ._scan.discover import DEFAULT_GROUP, discover
from ._loader.pin import read_allowlist
from ._scan.scan import PluginInfo, ScanProblem, describe_file, scan
from ._scaffold import ScaffoldError
from ._scaffold import add_parser as _add_new_parser
from ._validate.validate import add_parser as _add_validate_parser

# Exit statuses: 0 ok, 1 a ferrule error, 2 bad command line (argparse's own),
# 141 stdout closed early.
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PIPE = 128 + 13  # as if killed by SIGPIPE, as other tools are


def _head(plugin: PluginSpec | PluginInfo) -> dict[str, Any]:
    """What inspect and list both print of a plugin, before its functions."""
    return {
        "path": plugin.path,
        "id": plugin.id,
        "name": plugin.name,
        "version": plugin.version,
        "description": plugin.description,
        "license": plugin.license,
        "abi": {"major": plugin.abi_version[0], "minor": plugin.abi_version[1]},
    }


def _describe(spec: PluginSpec) -> dict[str, Any]:
    return {
        **_head(spec),
        "functions": [
            {
                "name": fn.name,
                "signature": str(fn.signature),
                "params": [{"name": p.name, "type": p.type.name} for p in fn.signature.params],
                "result": fn.signature.result.name if fn.signature.result else None,
                "thread_safe": fn.thread_safe,
                "doc": fn.doc,
            }
            for fn in spec.functions
        ],
        "interfaces": [
            {"id": o.id, "revision": o.revision, "name": o.name, "doc": o.doc, "fingerprint": f"{o.fingerprint:#018x}",
             "methods": o.method_count, "thread_safe": o.thread_safe}
            for o in spec.offers
        ],
    }


_SANDBOX_MODES = {"auto": None, "on": True, "off": False}


def _sandbox_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sandbox", choices=tuple(_SANDBOX_MODES), default="auto",
                        help="run the worker that reads descriptors in the sandbox: where this machine has one "
                        "(auto, the default), always (on: fail if it cannot), or never (off)")


def _inspect(args: argparse.Namespace) -> int:
    if args.in_process:
        with load(args.path, config=args.config) as plugin:
            info = _describe(plugin._spec)
    else:
        if args.config is not None:
            raise ValueError("--config is for the plugin's init, which inspect runs only with --in-process: add it")
        found = describe_file(args.path, sandbox=_SANDBOX_MODES[args.sandbox])
        if isinstance(found, ScanProblem):
            print(f"ferrule: {found.error}: {found.message}", file=sys.stderr)
            return EXIT_ERROR
        info = _describe(found)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['name']} {info['version']} ({info['id']})")
    print(f"  path:        {info['path']}")
    print(f"  ABI:         {info['abi']['major']}.{info['abi']['minor']}")
    if info["description"]:
        print(f"  description: {info['description']}")
    if info["license"]:
        print(f"  license:     {info['license']}")
    print(f"  functions ({len(info['functions'])}):")
    for fn in info["functions"]:
        flag = "" if fn["thread_safe"] else "  [serialised]"
        print(f"    {fn['name']}{fn['signature']}{flag}")
        if fn["doc"]:
            for line in fn["doc"].splitlines():
                print(f"        {line}")
    if info["interfaces"]:
        print(f"  implements ({len(info['interfaces'])}):")
        for o in info["interfaces"]:
            flag = "" if o["thread_safe"] else "  [serialised]"
            print(f"    {o['id']}/{o['revision']} {o['name']!r}  fingerprint {o['fingerprint']}{flag}")
            if o["doc"]:
                print(f"        {o['doc']}")
    return 0


def _parse_arg(function: str, name: str, abi_type: AbiType, text: str) -> Any:
    kind = abi_type.name
    if abi_type.fn is not None:
        raise ValueError(f"{function}() argument {name!r} is a host function ({kind}): it cannot be given on the command line")
    try:
        if abi_type.elem is not None:
            elem = abi_type.elem
            items = [x for x in text.split(",") if x.strip()]
            numbers = [float(x) if elem.python is float else int(x, 0) for x in items]
            return array.array(elem.struct, numbers)
        if abi_type.kind == "int":
            return int(text, 0)
        if kind == "bool":
            lowered = text.lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError("expected true or false")
        if abi_type.kind == "float":
            return float(text)
        if kind == "bytes":
            return bytes.fromhex(text[4:]) if text.startswith("hex:") else text.encode()
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{function}() argument {name!r}: cannot read {text!r} as {kind}: {exc}") from None
    return text




def _format(value: Any) -> str:
    if isinstance(value, array.array):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return "hex:" + value.hex()
    return str(value)


def _call(args: argparse.Namespace) -> int:
    config = args.config
    if args.timeout is not None and not (args.isolated or args.sandbox):
        print("ferrule: --timeout needs --isolated (an in-process call cannot be stopped)", file=sys.stderr)
        return EXIT_USAGE
    if args.sandbox:  # implies a child process
        opened: Any = load(args.path, config=config, isolated=True, timeout=args.timeout, sandbox=True)
    elif args.isolated:
        opened = load(args.path, config=config, isolated=True, timeout=args.timeout)
    else:
        opened = load(args.path, config=config)
    with opened as plugin:
        fn = plugin.functions.get(args.function)
        if fn is None:
            names = ", ".join(plugin.functions) or "(none)"
            print(f"ferrule: plugin {plugin.id!r} has no function {args.function!r}; it has: {names}", file=sys.stderr)
            return EXIT_ERROR
        params = fn.signature.params
        if len(args.args) != len(params):
            print(
                f"ferrule: {fn.name}{fn.signature} takes {len(params)} arguments, {len(args.args)} given",
                file=sys.stderr,
            )
            return EXIT_USAGE
        values = [_parse_arg(fn.name, p.name, p.type, text) for p, text in zip(params, args.args)]
        result = fn(*values)
    if fn.signature.result is not None:
        print(_format(result))
    for param, value in zip(params, values):
        if param.type.writable:  # show what the plugin wrote
            print(f"{param.name} = {_format(value)}")
    return 0


def _info_json(info: PluginInfo) -> dict[str, Any]:
    return {
        **_head(info),
        "functions": [{"name": name, "signature": sig} for name, sig in info.functions],
        "interfaces": [{"id": i, "revision": rev, "name": name} for i, rev, name in info.interfaces],
        **({"entry_point": info.entry_point, "distribution": info.distribution} if info.entry_point else {}),
        "sha256": info.sha256,
    }


def _problem_json(problem: ScanProblem) -> dict[str, Any]:
    return {"path": problem.path, "kind": problem.kind, "error": problem.error, "message": problem.message}


def _shown(text: str) -> str:
    # A file name that is not UTF-8 holds surrogate escapes, which print() refuses.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _list(args: argparse.Namespace) -> int:
    # Problems are reported, not failures: the exit status is 0 whenever
    # the scan itself ran, 1 for a directory that does not exist.
    if args.group != DEFAULT_GROUP and not args.installed:
        raise ValueError("--group chooses the entry-point group of --installed: add --installed")
    if args.installed and args.dirs:
        raise ValueError("list takes DIRs or --installed, not both: --installed lists the plugins installed as "
                         "Python distributions")
    try:
        allow = None if args.allow is None else read_allowlist(args.allow)
        if args.installed:
            result = discover(args.group, timeout=args.timeout, cache=not args.no_cache, refresh=args.refresh,
                              sandbox=_SANDBOX_MODES[args.sandbox], allow=allow)
        else:
            result = scan(args.dirs or None, timeout=args.timeout, cache=not args.no_cache, refresh=args.refresh,
                          sandbox=_SANDBOX_MODES[args.sandbox], allow=allow)
    except OSError as exc:  # a DIR that does not exist or cannot be listed
        text = exc.strerror or str(exc)
        if exc.filename and str(exc.filename) not in text:
            text = f"{exc.filename}: {text}"
        print(f"ferrule: {_shown(text)}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        doc = {
            "directories": list(result.directories),
            "plugins": [_info_json(p) for p in result.plugins],
            "problems": [_problem_json(p) for p in result.problems],
        }
        print(json.dumps(doc, indent=2))
        return 0
    if args.installed:
        if not result.plugins:
            print(f"no plugins installed in the entry-point group {args.group!r}")
    elif not result.directories:
        print("no plugin directories: pass some, or set FERRULE_PATH", file=sys.stderr)
    elif not result.plugins:
        print(f"no plugins in {_shown(', '.join(result.directories))}")
    rows = [((f"{p.entry_point} ({p.distribution})",) if args.installed else ()) + (p.id, p.version, _shown(p.path))
            for p in result.plugins]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []
    for row in rows:
        print("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)).rstrip())
    if result.problems:
        print(f"\n{len(result.problems)} {'problem' if len(result.problems) == 1 else 'problems'}:")
        for problem in result.problems:
            print(f"  {problem.kind:<8}  {_shown(problem.path)}")
            print(f"            {problem.error}: {_shown(problem.message)}")
    return 0


def _version() -> str:
    """``--version``: the version and which C parts this install has."""
    from . import __version__
    from ._call import accelerator
    from ._isolation import channel

    def state(missing: str | None, present: bool) -> str:
        if present:
            return "on"
        return f"off ({missing})" if missing else "off (FERRULE_PURE_PYTHON is set)"

    return (f"ferrule {__version__}\n"
            f"accelerator: {state(accelerator.missing, accelerator.speedups is not None)}\n"
            f"isolation channel: {state(channel.MISSING, channel.IMPLEMENTATION == 'c')}")


class _Print(argparse.Action):
    """A flag that prints a text and exits, like ``--version``."""

    def __init__(self, option_strings: Sequence[str], dest: str, text: Any, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)
        self.text = text

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(self.text())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    from . import get_include

    parser = argparse.ArgumentParser(prog="ferrule", description="Inspect and call ferrule plugins.")
    parser.add_argument("--version", action=_Print, text=_version,
                        help="print the version and whether the C accelerator is on, and exit")
    parser.add_argument("--include", action=_Print, text=get_include,
                        help="print the directory of ferrule.h (and ferrule.map), for cc -I, and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    inspect_cmd = sub.add_parser("inspect", help="print a plugin's metadata and functions")
    inspect_cmd.add_argument("path", help="path to the plugin's shared library")
    inspect_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    inspect_cmd.add_argument("--in-process", action="store_true",
                             help="load the plugin in this process and run its init (by default a worker process "
                             "reads the descriptor, and no init runs)")
    inspect_cmd.add_argument("--config", default=None, help="with --in-process: configuration text for the plugin's init")
    _sandbox_option(inspect_cmd)
    inspect_cmd.set_defaults(run=_inspect)
    call_cmd = sub.add_parser(
        "call",
        help="call one function, arguments parsed by its signature",
        description="Integers accept 0x/0o/0b prefixes, bools true/false, bytes 'hex:...' or text, "
        "buffers comma-separated numbers (a mutbuf is printed after the call).",
    )
    call_cmd.add_argument("path", help="path to the plugin's shared library")
    call_cmd.add_argument("function", help="function name")
    call_cmd.add_argument("args", nargs="*", help="arguments, one per parameter")
    call_cmd.add_argument("--config", default=None, help="configuration text passed to the plugin's init")
    call_cmd.add_argument("--isolated", action="store_true",
                          help="run the plugin in a child process: a crash or hang becomes an error (docs/isolation.md)")
    call_cmd.add_argument("--sandbox", action="store_true",
                          help="isolated, in ferrule.Sandbox()'s defaults: for a plugin that is not trusted")
    call_cmd.add_argument("--timeout", type=float, default=None, metavar="S", help="with --isolated: seconds for the call")
    call_cmd.set_defaults(run=_call)
    list_cmd = sub.add_parser(
        "list",
        help="find the plugins in directories and FERRULE_PATH, without loading them",
        description="Lists the plugins in each DIR and in the FERRULE_PATH directories, and the libraries that "
        "are not usable plugins. Descriptors are read in a worker process; results are cached (docs/scanning.md). "
        "Exits 0 even when some libraries have problems.",
    )
    list_cmd.add_argument("dirs", nargs="*", metavar="DIR", help="a directory of plugins (not searched recursively)")
    list_cmd.add_argument("--installed", action="store_true",
                          help="list the plugins installed as Python distributions (entry points), not directories")
    list_cmd.add_argument("--group", default=DEFAULT_GROUP, metavar="GROUP",
                          help=f"with --installed: the entry-point group (default {DEFAULT_GROUP})")
    list_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    list_cmd.add_argument("--no-cache", action="store_true", help="neither read nor write the scan cache")
    list_cmd.add_argument("--refresh", action="store_true",
                          help="read every library again, retrying blocklisted ones, and rewrite the cache")
    list_cmd.add_argument("--timeout", type=float, default=10.0, metavar="S",
                          help="seconds one library may take before it is blocklisted as hung (default 10)")
    _sandbox_option(list_cmd)
    list_cmd.add_argument("--allow", metavar="FILE", default=None,
                          help="an allowlist: list only libraries whose SHA-256 is in FILE (as sha256sum writes it); "
                          "the others are problems and never opened")
    list_cmd.set_defaults(run=_list)
    _generate.add_parser(sub)
    _add_new_parser(sub)
    _add_validate_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        status = int(args.run(args))
        sys.stdout.flush()  # here, so that a closed pipe is seen below, not at exit
        return status
    except BrokenPipeError:  # ferrule list | head: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush then goes nowhere
        return EXIT_PIPE
    except FerruleError as exc:
        print(f"ferrule: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (_generate.GenerateError, ScaffoldError) as exc:
        print(f"ferrule: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (TypeError, ValueError) as exc:
        print(f"ferrule: {exc}", file=sys.stderr)
        return EXIT_USAGE
