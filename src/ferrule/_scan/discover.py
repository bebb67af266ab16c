"""``ferrule.discover``: the plugins installed as Python distributions.

A plugin wheel (``ferrule.build``) declares an entry point in the group
``ferrule.plugins``::

    greeter = ferrule_greeter:libgreeter.so [org.example.text.transform/1]

the name, where the library is inside the distribution (a package path,
dots for slashes, and the file name) and, optionally, the interfaces it
implements as ``id/revision``. Discovery reads only installed metadata:
nothing is imported or loaded. The libraries found then go through the same
worker, cache and blocklist as ``scan``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
import os
import re
import sys
from collections.abc import Iterable
from typing import NamedTuple

from .._abi.spec import ID_RE
from .._loader.pin import allowlist
from .cache import Stamp, stamp_of
from .results import PluginInfo, ScanProblem, ScanResult
from .._sandbox import Sandbox
from .scan import _policy, check_timeout, result_of, scan_files

__all__ = ["DEFAULT_GROUP", "InstalledPlugin", "discover", "installed", "parse_value"]

DEFAULT_GROUP = "ferrule.plugins"

# package path, library file name, optional [id/revision, ...]
_VALUE = re.compile(r"\s*(?P<package>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*:\s*(?P<file>[^\s\[\]/:]+)"
                    r"\s*(?:\[(?P<interfaces>[^\]]*)\])?\s*$")
_INTERFACE = re.compile(rf"(?P<id>{ID_RE.pattern})/(?P<revision>\d+)")  # the ids descriptors may hold


class InstalledPlugin(NamedTuple):
    """One entry point of the group: which distribution, and where its library is."""

    name: str
    distribution: str
    path: str
    interfaces: tuple[tuple[str, int], ...]


def parse_value(value: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """(library path inside the distribution, declared interfaces) of an
    entry point value; ValueError saying what is wrong."""
    match = _VALUE.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not 'package.path:library-file [interface/revision, ...]'")
    interfaces = []
    for item in filter(None, (i.strip() for i in (match["interfaces"] or "").split(","))):
        one = _INTERFACE.fullmatch(item)
        if one is None:
            raise ValueError(f"interface {item!r} in {value!r} is not 'id/revision', e.g. org.example.text.transform/1")
        interfaces.append((one["id"], int(one["revision"])))
    return "/".join(match["package"].split(".")) + "/" + match["file"], tuple(interfaces)


def installed(group: str = DEFAULT_GROUP) -> tuple[list[InstalledPlugin], list[ScanProblem]]:
    """The group's entry points, each located in its distribution."""
    found: list[InstalledPlugin] = []
    problems: list[ScanProblem] = []
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: (e.name, e.value)):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        who = f"entry point {ep.name!r} of {dist_name} {dist.version if dist is not None else ''}".rstrip()
        try:
            relative, interfaces = parse_value(ep.value)
        except ValueError as exc:
            where = str(dist.locate_file("")) if dist is not None else ""
            problems.append(ScanProblem(where, "rejected", "MetadataError",
                                        f"{who} in group {group!r}: {exc}; ask its author to rebuild the wheel"))
            continue
        if dist is None:  # only an entry point made by hand has no distribution
            continue
        path = os.path.abspath(str(dist.locate_file(relative)))
        if not os.path.isfile(path):
            problems.append(ScanProblem(path, "rejected", "LibraryNotFoundError",
                                        f"{who} names {relative}, which is not installed: reinstall it "
                                        f"(pip install --force-reinstall {dist_name})"))
            continue
        found.append(InstalledPlugin(ep.name, dist_name, path, interfaces))
    return found, problems


def discover(group: str = DEFAULT_GROUP, *, timeout: float = 10.0, cache: bool = True,
             refresh: bool = False, sandbox: Sandbox | bool | None = None,
             allow: Iterable[str] | None = None) -> ScanResult:
    """Find the plugins installed as Python distributions, without loading them.

    Reads the entry points of ``group`` (``importlib.metadata``; nothing is
    imported) and reads each library's descriptor in a worker process, as
    ``scan`` does, with the same cache and blocklist: a wheel installed,
    upgraded or uninstalled since the last call is seen. Each PluginInfo
    has its ``entry_point`` and ``distribution`` set; a library that does
    not implement an interface its entry point declares is a problem.
    ``sandbox`` and ``allow`` (an allowlist of SHA-256 digests) are as for
    ``scan``. ``ferrule.load(info)`` loads one, pinned to its hash.
    """
    check_timeout("discover()", timeout)
    _policy(sandbox)
    allowed = None if allow is None else allowlist(allow)
    if not isinstance(group, str) or not group:
        raise TypeError(f"discover() group must be an entry-point group name, got {group!r}")
    plugins, problems = installed(group)
    found: dict[str, Stamp] = {}
    for plugin in plugins:
        try:
            st = os.stat(plugin.path)
        except OSError:  # uninstalled while we looked
            continue
        found[plugin.path] = stamp_of(st)
    # Entries of uninstalled plugins (files gone from the import path) leave the cache.
    site = tuple(os.path.join(os.path.abspath(p), "") for p in sys.path if p)
    results, digests = scan_files(found, timeout=timeout, cache=cache, refresh=refresh, allow=allowed,
                                  forget=lambda path: path.startswith(site) and not os.path.exists(path), sandbox=sandbox)
    scanned = result_of(results, (), digests)
    by_path = {info.path: info for info in scanned.plugins}
    infos: list[PluginInfo] = []
    for plugin in plugins:
        info = by_path.get(plugin.path)
        if info is None:
            continue  # its problem is in scanned.problems
        offered = {(ident, revision) for ident, revision, _name in info.interfaces}
        missing = [f"{i}/{r}" for i, r in plugin.interfaces if (i, r) not in offered]
        if missing:
            problems.append(ScanProblem(
                plugin.path, "rejected", "MetadataError",
                f"entry point {plugin.name!r} of {plugin.distribution} declares {', '.join(missing)}, which "
                f"{plugin.path} does not implement: the wheel is stale or was edited; rebuild it"))
            continue
        infos.append(dataclasses.replace(info, entry_point=plugin.name, distribution=plugin.distribution))
    return ScanResult(plugins=tuple(infos), problems=tuple(sorted((*problems, *scanned.problems),
                                                                  key=lambda p: p.path)),
                      directories=())
