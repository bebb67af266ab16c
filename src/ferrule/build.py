"""ferrule's PEP 517 build backend: one plugin library packaged as a wheel.

    [build-system]
    requires = ["ferrule[build]"]
    build-backend = "ferrule.build"

    [tool.ferrule.plugin]
    library = "target/release/libgreeter.so"
    build = ["cargo", "build", "--release"]

The wheel is tagged ``py3-none-<platform>``: ferrule calls a plugin through
its own C ABI, not Python's, so one wheel serves every Python version. It
holds the library as package data and declares it in the entry-point group
``ferrule.plugins``, where hosts find it without importing anything. The
guide's "Packaging a plugin as a wheel" describes every key.

Nothing here loads the library: its descriptor is read by the scan worker, a
separate process, before the wheel is written.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import csv
import fnmatch
import glob
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyproject_metadata import StandardMetadata

__all__ = [
    "BuildError",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_wheel",
]

GROUP = "ferrule.plugins"  # the default; an application may ask its plugins for a group of its own
_GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_KEYS = ("library", "build", "name", "package", "group", "platform-tag", "sdist-include", "sdist-exclude")
_SETTINGS = ("platform-tag",)
_SCAN_TIMEOUT = 60.0  # a slow CI machine opening a large library
_TAIL_LINES = 40  # of a failed build command's output, quoted in the error
_ZIP_EPOCH = 315532800  # 1980-01-01: the earliest time a zip entry can hold

# What an sdist leaves out by default: VCS data, caches, build output and
# binaries (a wheel built from the sdist makes them again).
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", ".jj", "__pycache__", ".mypy_cache", ".pytest_cache",
                        ".ruff_cache", ".tox", ".nox", ".venv", "venv", "target", "build", "dist"})
_SKIP_DIR_GLOBS = ("*.egg-info",)
_SKIP_FILE_GLOBS = ("*.so", "*.so.*", "*.dylib", "*.dll", "*.pyd", "*.o", "*.obj", "*.a", "*.lib", "*.pyc", "*.pyo",
                    "*.whl", "*.tar.gz", "*.tgz", "*.zip", ".DS_Store", ".env", ".env.*")

# The architecture a Linux platform tag names, as ELF headers say it:
# (e_machine, bits, byte order).
_TAG_ARCHES = {
    "x86_64": (62, 64, "little"),
    "i686": (3, 32, "little"),
    "i386": (3, 32, "little"),
    "aarch64": (183, 64, "little"),
    "armv7l": (40, 32, "little"),
    "armv6l": (40, 32, "little"),
    "ppc64le": (21, 64, "little"),
    "ppc64": (21, 64, "big"),
    "s390x": (22, 64, "big"),
    "riscv64": (243, 64, "little"),
    "loongarch64": (258, 64, "little"),
}
_LINUX_TAG = re.compile(r"(?:linux|manylinux1|manylinux2010|manylinux2014|(?:many|musl)linux_\d+_\d+)_(?P<arch>\w+)",
                        re.ASCII)
_ENTRY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_FILE_NAME = re.compile(r"[A-Za-z0-9_.]+")  # what an entry point's attribute part may hold


class BuildError(Exception):
    """The project cannot be packaged: the message says what was found, what
    was expected and what to change."""


# -- the PEP 517 hooks


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    """Nothing beyond [build-system] requires: the build command's tools
    (cargo, a C compiler) are not Python packages."""
    _settings(config_settings)
    return []


def get_requires_for_build_sdist(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    _settings(config_settings)
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: Mapping[str, Any] | None = None) -> str:
    """Write the wheel's .dist-info into metadata_directory.

    The entry point names the interfaces the built library implements, so
    the metadata needs the whole build: this builds the wheel too and keeps
    it beside the .dist-info, where build_wheel finds it and only copies it.
    """
    wheel = _make_wheel(os.getcwd(), config_settings)
    path = os.path.join(metadata_directory, wheel.file_name)
    _write_zip(path, wheel.files)
    for name, data, _ in wheel.files:
        if name.startswith(wheel.dist_info + "/"):
            target = os.path.join(metadata_directory, *name.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
    return wheel.dist_info


def build_wheel(wheel_directory: str, config_settings: Mapping[str, Any] | None = None,
                metadata_directory: str | None = None) -> str:
    """Run the build command, check the library is a ferrule plugin, and
    write ``<name>-<version>-py3-none-<platform>.whl`` into wheel_directory."""
    root = os.getcwd()
    if metadata_directory is not None:
        kept = _kept_wheel(root, config_settings, metadata_directory)
        if kept is not None:
            target = os.path.join(wheel_directory, os.path.basename(kept))
            if not os.path.exists(target) or not os.path.samefile(kept, target):
                shutil.copyfile(kept, target)
            return os.path.basename(kept)
    wheel = _make_wheel(root, config_settings)
    if metadata_directory is not None:
        _check_same_metadata(wheel, metadata_directory)
    _write_zip(os.path.join(wheel_directory, wheel.file_name), wheel.files)
    _say(f"wrote {wheel.file_name}")
    return wheel.file_name


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    """Write ``<name>-<version>.tar.gz``: the sources a wheel is built from,
    without running the build command."""
    _settings(config_settings)
    config = _load(os.getcwd())
    meta = _metadata(config)
    base = _base_name(meta)
    top, files = _sdist_files(config, meta)
    members: dict[str, bytes | str] = {_posix_rel(path, top): path for path in files}  # a file's path, or contents
    # Made anew, over any left in a source tree that is itself an unpacked sdist.
    members["PKG-INFO"] = meta.as_rfc822().as_bytes()
    if top != config.project:
        members["pyproject.toml"] = _moved_pyproject(config, _posix_rel(config.project, top)).encode("utf-8")
    name = base + ".tar.gz"
    _write_tar(os.path.join(sdist_directory, name), base, members)
    _say(f"wrote {name} ({len(members)} files)")
    return name


# Editable installs are left out: the entry point names a file inside the
# installed distribution, and a wheel cannot point at one in the source tree.
# During development, load the library from the build directory instead.


# -- configuration


@dataclass(frozen=True)
class _Config:
    project: str  # the directory holding the plugin's pyproject.toml
    pyproject: dict[str, Any]
    library: str  # as written, relative to the project
    build: tuple[str, ...] | None
    name: str
    package: tuple[str, ...]
    group: str  # the entry-point group hosts discover it in
    platform_tag: str | None
    sdist_include: tuple[str, ...]
    sdist_exclude: tuple[str, ...]

    @property
    def library_path(self) -> str:
        return os.path.normpath(os.path.join(self.project, self.library))


def _load(root: str) -> _Config:
    """The plugin's configuration, from root's pyproject.toml, or from the
    project directory an sdist's pyproject.toml points to."""
    data = _read_toml(os.path.join(root, "pyproject.toml"))
    project = root
    moved = _table(data, "tool", "ferrule", "sdist")
    if moved is not None:
        sub = moved.get("project-dir")
        if set(moved) != {"project-dir"} or not isinstance(sub, str) or not _inside(sub):
            raise BuildError(f"{os.path.join(root, 'pyproject.toml')}: [tool.ferrule.sdist] is written by "
                             "ferrule.build into an sdist and holds only project-dir, a relative path inside it; "
                             f"found {moved!r}")
        project = os.path.normpath(os.path.join(root, sub))
        data = _read_toml(os.path.join(project, "pyproject.toml"))
    where = os.path.join(project, "pyproject.toml")
    plugin = _table(data, "tool", "ferrule", "plugin")
    if plugin is None:
        raise BuildError(f"{where} has no [tool.ferrule.plugin] table, which ferrule.build needs to know what to "
                         'package: add one with at least library = "path/to/libname.so" (the built plugin, relative '
                         "to the project) and, to build it first, build = [\"command\", \"arg\", ...]")
    unknown = sorted(set(plugin) - set(_KEYS))
    if unknown:
        raise BuildError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)} in [tool.ferrule.plugin]; the keys are {', '.join(_KEYS)}")

    def string(key: str) -> str | None:
        value = plugin.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise BuildError(f"{where}: tool.ferrule.plugin.{key} must be a non-empty string, got {value!r}")
        return value

    def strings(key: str, hint: str) -> tuple[str, ...] | None:
        value = plugin.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise BuildError(f"{where}: tool.ferrule.plugin.{key} must be a list of non-empty strings{hint}, "
                             f"got {value!r}")
        return tuple(value)

    library = string("library")
    if library is None:
        raise BuildError(f'{where}: [tool.ferrule.plugin] needs library = "path/to/libname.so", the built plugin '
                         "relative to the project")
    if os.path.isabs(library):
        raise BuildError(f"{where}: tool.ferrule.plugin.library must be relative to the project, got {library!r}")
    file_name = posixpath.basename(library.replace(os.sep, "/"))
    suffix = _suffix()
    if not file_name.endswith(suffix) or file_name == suffix:
        raise BuildError(f"{where}: tool.ferrule.plugin.library must name a shared library file ending in {suffix}, "
                         f"got {library!r}")
    if not _FILE_NAME.fullmatch(file_name):
        raise BuildError(f"{where}: the library's file name {file_name!r} goes into the entry point, which allows "
                         "only letters, digits, _ and . in it: rename the file the build makes")
    build = strings("build", " (the command and its arguments, run without a shell; for a shell command write "
                             "[\"sh\", \"-c\", \"...\"])")
    if build is not None and not build:
        raise BuildError(f"{where}: tool.ferrule.plugin.build is empty: leave it out if the library is prebuilt")

    stem = file_name[: -len(suffix)]
    name = string("name") or (stem[3:] if stem.startswith("lib") and len(stem) > 3 else stem)
    if not _ENTRY_NAME.fullmatch(name):
        raise BuildError(f"{where}: the entry-point name {name!r} must be letters, digits, _, . and -"
                         + ("" if "name" in plugin else f" (it comes from {file_name}; set tool.ferrule.plugin.name)"))

    project_name = _table(data, "project")
    default_package = None
    if project_name is not None and isinstance(project_name.get("name"), str):
        default_package = re.sub(r"[-_.]+", "_", project_name["name"]).lower()
    package_text = string("package") or default_package or "plugin"
    package = tuple(package_text.split("."))
    if not all(part.isidentifier() and part.isascii() for part in package):
        raise BuildError(f"{where}: tool.ferrule.plugin.package must be a dotted package path such as "
                         f"ferrule_greeter or myorg.plugins.greeter, got {package_text!r}"
                         + ("" if "package" in plugin else " (from the project name; set package)"))
    if package[0] == "ferrule":
        raise BuildError(f"{where}: tool.ferrule.plugin.package {package_text!r} would put files into ferrule's own "
                         "package: choose a name of the plugin's own")
    group = string("group") or GROUP
    if not _GROUP_NAME.fullmatch(group):
        raise BuildError(f"{where}: tool.ferrule.plugin.group must be an entry-point group name such as "
                         f"{GROUP} or myapp.plugins (letters, digits, _, . and -), got {group!r}")
    if group in ("console_scripts", "gui_scripts"):
        raise BuildError(f"{where}: tool.ferrule.plugin.group {group!r} is the installers' group for commands "
                         "([project.scripts]), not one hosts discover plugins in: use "
                         f"{GROUP} or your application's own, e.g. myapp.plugins")
    return _Config(
        project=project,
        pyproject=data,
        library=library,
        build=build,
        name=name,
        package=package,
        group=group,
        platform_tag=string("platform-tag"),
        sdist_include=strings("sdist-include", " (globs relative to the project)") or (),
        sdist_exclude=strings("sdist-exclude", " (globs relative to the project)") or (),
    )


def _read_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BuildError(f"no pyproject.toml at {path}: run the build from the plugin project's directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{path} is not valid TOML: {exc}") from None


def _table(data: Mapping[str, Any], *keys: str) -> dict[str, Any] | None:
    value: Any = data
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if not isinstance(value, dict):
        raise BuildError(f"pyproject.toml: {'.'.join(keys)} must be a table, got {value!r}")
    return value


def _inside(path: str) -> bool:
    """A relative path that stays inside the directory it is relative to."""
    norm = posixpath.normpath(path.replace(os.sep, "/"))
    return not posixpath.isabs(norm) and norm != ".." and not norm.startswith("../")


def _settings(config_settings: Mapping[str, Any] | None) -> dict[str, str]:
    """The config settings (pip --config-settings, build -C), checked: a
    misspelt one would otherwise be silently ignored."""
    out = {}
    for key, value in (config_settings or {}).items():
        if key not in _SETTINGS:
            raise BuildError(f"unknown config setting {key!r}: ferrule.build takes {', '.join(_SETTINGS)} "
                             "(e.g. pip wheel . --config-settings=platform-tag=manylinux_2_17_x86_64)")
        if not isinstance(value, str) or not value:
            raise BuildError(f"config setting {key!r} must be given once, as a non-empty string; got {value!r}")
        out[key] = value
    return out


def _suffix() -> str:
    from ._loader import LIBRARY_SUFFIX

    return LIBRARY_SUFFIX


# -- core metadata


def _metadata(config: _Config) -> StandardMetadata:
    """The [project] table as core metadata (pyproject-metadata checks it)."""
    try:
        from packaging.version import Version
        from pyproject_metadata import ConfigurationError, StandardMetadata
        from pyproject_metadata.errors import ExceptionGroup
    except ImportError as exc:
        raise BuildError(f"ferrule.build needs packaging and pyproject-metadata ({exc}): install ferrule[build], "
                         'or list "ferrule[build]" in [build-system] requires') from None
    where = os.path.join(config.project, "pyproject.toml")
    try:
        meta = StandardMetadata.from_pyproject(config.pyproject, config.project, allow_extra_keys=False,
                                               all_errors=True)
    except ExceptionGroup as group:
        problems = "; ".join(str(e) for e in group.exceptions)
        raise BuildError(f"{where}: the [project] table is not valid: {problems}") from None
    except ConfigurationError as exc:
        raise BuildError(f"{where}: the [project] table is not valid: {exc}") from None
    if meta.dynamic:
        raise BuildError(f"{where}: project.dynamic lists {', '.join(meta.dynamic)}, but ferrule.build computes no "
                         "metadata: give those fields in [project] and remove dynamic")
    if config.group in meta.entrypoints:
        raise BuildError(f"{where}: [project.entry-points.\"{config.group}\"] is written by ferrule.build from "
                         "[tool.ferrule.plugin] (name, package, library): remove it from [project]")
    # 2.2 at least: an sdist's PKG-INFO is then trusted to match its wheels.
    if Version(meta.auto_metadata_version) < Version("2.2"):
        meta.metadata_version = "2.2"
    return meta


def _base_name(meta: StandardMetadata) -> str:
    """<name>-<version> as archive and .dist-info names spell it."""
    return f"{meta.canonical_name.replace('-', '_')}-{meta.version}"


# -- building and checking the library


def _run_build(config: _Config) -> None:
    """Run the build command in the project, with FERRULE_INCLUDE set, and
    stream its output; fail with its last lines if it fails."""
    if config.build is None:
        return
    from . import get_include

    command = list(config.build)
    shown = shlex.join(command)
    _say(f"running {shown} in {config.project}")
    env = dict(os.environ, FERRULE_INCLUDE=get_include())
    try:
        proc = subprocess.Popen(command, cwd=config.project, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise BuildError(f"cannot run the build command {shown} (tool.ferrule.plugin.build): {command[0]!r} is not "
                         "on PATH; install it, or change the command") from None
    except OSError as exc:
        raise BuildError(f"cannot run the build command {shown} (tool.ferrule.plugin.build): {exc}") from None
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    assert proc.stdout is not None
    with proc.stdout:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            sys.stderr.write(line)
            tail.append(line.rstrip("\r\n"))
    sys.stderr.flush()
    status = proc.wait()
    if status != 0:
        from ._spawn import signal_name

        how = f"killed by {signal_name(-status)}" if status < 0 else f"exit status {status}"
        output = ("; its last output:\n" + "\n".join(tail)) if tail else " with no output"
        raise BuildError(f"the build command {shown} (tool.ferrule.plugin.build, run in {config.project}) failed "
                         f"({how}){output}")


def _check_library(config: _Config, platform: str) -> tuple[str, ...]:
    """Check the built library against the platform tag and have the scan
    worker read it, as ferrule hosts would; returns the interfaces it
    implements, as "<interface id>/<revision>", each once, in descriptor order."""
    path = config.library_path
    if not os.path.isfile(path):
        after = (f"after the build command {shlex.join(config.build)} ran" if config.build else
                 "and there is no build command (tool.ferrule.plugin.build), so it must exist before packaging")
        raise BuildError(f"no library at {path} (tool.ferrule.plugin.library = {config.library!r}) {after}: make "
                         "library name the file the build writes (cargo: target/release/lib<crate name>.so, under "
                         "the --target-dir if one is given)")
    _check_architecture(path, platform)

    from ._errors import IsolationError
    from ._scan.results import ScanProblem, info
    from ._scan.scan import _read_descriptors

    try:
        result = _read_descriptors([path], _SCAN_TIMEOUT)[path][0]
    except IsolationError as exc:
        raise BuildError(f"could not read the descriptor of {path}: {exc}") from None
    if isinstance(result, ScanProblem):
        if result.kind == "rejected":
            raise BuildError(f"{path} is not a ferrule plugin, so it cannot be packaged as one ({result.error}): "
                             f"{result.message}")
        raise BuildError(f"{path} {result.kind} the worker process that read its descriptor ({result.error}), so it "
                         f"cannot be packaged: {result.message}")
    plugin = info(result)
    interfaces = tuple(dict.fromkeys(f"{iface}/{revision}" for iface, revision, _ in plugin.interfaces))
    _say(f"{os.path.basename(path)} is plugin {plugin.id} {plugin.version} (ABI {plugin.abi_version[0]}."
         f"{plugin.abi_version[1]})" + (f", implementing {', '.join(interfaces)}" if interfaces else ""))
    return interfaces


def _platform(config: _Config, settings: Mapping[str, str]) -> str:
    """The wheel's platform tag: the platform-tag config setting, else
    tool.ferrule.plugin.platform-tag, else this interpreter's platform."""
    tag = settings.get("platform-tag") or config.platform_tag
    if tag is None:
        tag = re.sub(r"[-.]", "_", sysconfig.get_platform())
    if not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", tag, re.ASCII) or "any" in tag.split("."):
        raise BuildError(f"platform tag {tag!r} is not one a native library can have: use e.g. linux_x86_64 or "
                         "manylinux_2_17_x86_64 (several joined by '.')")
    return ".".join(sorted(set(tag.split("."))))  # in the order auditwheel writes them


def _check_architecture(path: str, platform: str) -> None:
    """Every platform in the tag is for the library's CPU, and the library
    is for this machine's (the scan worker must open it)."""
    from ._loader.elf import file_machine, host_machine, machine_name

    found = file_machine(path)
    if found is None:  # not ELF: the scan says what it is
        return
    machine, bits, order = found
    built_for = f"{machine_name(machine)} ({bits}-bit{', big-endian' if order == 'big' else ''})"
    for tag in platform.split("."):
        match = _LINUX_TAG.fullmatch(tag)
        if match is None:
            raise BuildError(f"{path} is an ELF library for {built_for}, which belongs in a Linux wheel, but the "
                             f"platform tag is {tag!r}: use linux_<arch> or manylinux_<x>_<y>_<arch>")
        arch = match.group("arch")
        if arch not in _TAG_ARCHES:
            raise BuildError(f"platform tag {tag!r} names the architecture {arch!r}, which ferrule.build cannot check "
                             f"the library against; it knows {', '.join(_TAG_ARCHES)}")
        if _TAG_ARCHES[arch] != found:
            raise BuildError(f"{path} is built for {built_for}, but the platform tag {tag!r} is for {arch}: build the "
                             "library for that architecture, or give the tag for the one it has (config setting "
                             "platform-tag, or tool.ferrule.plugin.platform-tag)")
    host = host_machine()
    if host is not None and host != machine:
        raise BuildError(f"{path} is built for {built_for}, but ferrule.build checks a plugin by reading its "
                         f"descriptor in a worker process on this machine ({machine_name(host)}): build the wheel "
                         "on that architecture (natively or under emulation)")


# -- the wheel


@dataclass(frozen=True)
class _Wheel:
    file_name: str
    dist_info: str
    files: list[tuple[str, bytes, int]]  # (name in the archive, contents, permission bits), RECORD not included


def _make_wheel(root: str, config_settings: Mapping[str, Any] | None) -> _Wheel:
    settings = _settings(config_settings)
    config = _load(root)
    meta = _metadata(config)
    platform = _platform(config, settings)
    _run_build(config)
    interfaces = _check_library(config, platform)

    from packaging.tags import parse_tag

    from . import __version__

    dist_info = f"{_base_name(meta)}.dist-info"
    path = config.library_path
    with open(path, "rb") as f:
        library = f.read()
    mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
    file_name = os.path.basename(path)
    files = [("/".join((*config.package, file_name)), library, mode)]
    tags = sorted(str(t) for t in parse_tag(f"py3-none-{platform}"))
    wheel_text = (f"Wheel-Version: 1.0\nGenerator: ferrule.build {__version__}\nRoot-Is-Purelib: false\n"
                  + "".join(f"Tag: {t}\n" for t in tags))
    target = f"{'.'.join(config.package)}:{file_name}"
    if interfaces:
        target += f" [{', '.join(interfaces)}]"
    groups = {config.group: {config.name: target}, "console_scripts": meta.scripts,
              "gui_scripts": meta.gui_scripts, **meta.entrypoints}
    entry_points = "\n".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
                             for group, entries in groups.items() if entries)
    meta_files = [("METADATA", meta.as_rfc822().as_bytes()), ("WHEEL", wheel_text.encode()),
                  ("entry_points.txt", entry_points.encode())]
    for license_file in meta.license_files or ():
        with open(os.path.join(config.project, license_file), "rb") as f:
            meta_files.append((f"licenses/{license_file.as_posix()}", f.read()))
    files += [(f"{dist_info}/{name}", data, 0o644) for name, data in meta_files]
    return _Wheel(f"{_base_name(meta)}-py3-none-{platform}.whl", dist_info, files)


def _kept_wheel(root: str, config_settings: Mapping[str, Any] | None, metadata_directory: str) -> str | None:
    """The wheel prepare_metadata_for_build_wheel left beside this .dist-info,
    if it is the one these settings would build."""
    config = _load(root)
    meta = _metadata(config)
    name = f"{_base_name(meta)}-py3-none-{_platform(config, _settings(config_settings))}.whl"
    kept = os.path.join(os.path.dirname(os.path.abspath(metadata_directory)), name)
    same_dist = os.path.basename(os.path.normpath(metadata_directory)) == f"{_base_name(meta)}.dist-info"
    return kept if same_dist and os.path.isfile(kept) else None


def _check_same_metadata(wheel: _Wheel, metadata_directory: str) -> None:
    for name, data, _ in wheel.files:
        if name.startswith(wheel.dist_info + "/"):
            prepared = os.path.join(metadata_directory, *name.split("/")[1:])
            try:
                with open(prepared, "rb") as f:
                    same = f.read() == data
            except FileNotFoundError:
                same = False
            if not same:
                raise BuildError(f"the wheel's {name} differs from the one prepare_metadata_for_build_wheel wrote "
                                 f"into {metadata_directory}: the project changed between the two hooks; build again")


def _write_zip(path: str, files: list[tuple[str, bytes, int]]) -> None:
    """Write the wheel: package files first, then the .dist-info with RECORD
    last; fixed timestamps and modes make the bytes reproducible."""
    stamp = time.gmtime(max(_epoch(), _ZIP_EPOCH))[:6]
    dist_info = next(name.split("/")[0] for name, _, _ in files if name.split("/")[0].endswith(".dist-info"))
    ordered = sorted(files, key=lambda f: (f[0].startswith(dist_info + "/"), f[0]))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data, _ in ordered:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
        writer.writerow([name, f"sha256={digest}", len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries = [*ordered, (f"{dist_info}/RECORD", record.getvalue().encode("utf-8"), 0o644)]
    with _replacing(path) as partial, zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            member = zipfile.ZipInfo(name, date_time=stamp)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = (stat.S_IFREG | mode) << 16
            archive.writestr(member, data)


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[str]:
    """A temporary path that becomes path once written: a failed or
    interrupted build leaves no half archive under the final name."""
    partial = path + ".part"
    try:
        yield partial
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    os.replace(partial, path)


def _epoch() -> int:
    """SOURCE_DATE_EPOCH, else a fixed time: the same sources give the same
    archive bytes."""
    text = os.environ.get("SOURCE_DATE_EPOCH")
    if not text:
        return _ZIP_EPOCH
    try:
        return max(0, int(text))
    except ValueError:
        raise BuildError(f"SOURCE_DATE_EPOCH must be a number of seconds since 1970, got {text!r}") from None


# -- the sdist


def _sdist_files(config: _Config, meta: StandardMetadata) -> tuple[str, list[str]]:
    """(the directory the sdist's tree starts at, the files it holds)."""
    project = config.project
    where = os.path.join(project, "pyproject.toml")
    included: list[str] = []
    for pattern in config.sdist_include:
        parts = pattern.replace(os.sep, "/").split("/")
        ups = next((i for i, part in enumerate(parts) if part != ".."), len(parts))
        if os.path.isabs(pattern) or ".." in parts[ups:]:
            raise BuildError(f"{where}: tool.ferrule.plugin.sdist-include {pattern!r} must be relative to the project, "
                             "with any '..' only at its start")
        matches = glob.glob(pattern, root_dir=project, recursive=True)
        if not matches:
            raise BuildError(f"{where}: tool.ferrule.plugin.sdist-include {pattern!r} matches nothing")
        included += (os.path.normpath(os.path.join(project, match)) for match in matches)
    named = set(included)  # links named here are taken along below, not refused in the walk
    files = set(_walk(project, where, project, config.sdist_exclude, named))
    for path in included:
        files.update(_walk(path, where, project, config.sdist_exclude, named) if os.path.isdir(path) else [path])
    files = {f for f in files if not _excluded(_posix_rel(f, project), config.sdist_exclude)}
    # What the metadata and the build need is never left out.
    needed = [where, *(os.path.join(project, p) for p in meta.license_files or ())]
    if meta.readme is not None and meta.readme.file is not None:
        needed.append(str(meta.readme.file))
    if meta.license is not None and not isinstance(meta.license, str) and meta.license.file is not None:
        needed.append(str(meta.license.file))
    if config.build is None:  # a prebuilt library is itself a source
        needed.append(config.library_path)
    files.update(os.path.normpath(os.path.join(project, p)) for p in needed)
    top = os.path.commonpath([project, *(os.path.dirname(f) for f in files)])
    return top, sorted(files)


def _walk(top: str, where: str, project: str, exclude: tuple[str, ...], named: set[str]) -> Iterator[str]:
    """The files under top, less the default exclusions; symlinks are
    followed (the sdist holds what they point to), each directory once. A
    link that leads out of top (e.g. to .. or /etc) is an error unless
    sdist-exclude drops it: what an sdist takes from outside is named in
    sdist-include, never picked up by accident."""
    bound = os.path.join(os.path.realpath(top), "")
    seen: set[str] = set()

    def escapes(path: str) -> bool:
        if not os.path.islink(path) or os.path.join(os.path.realpath(path), "").startswith(bound):
            return False
        if path in named or _excluded(_posix_rel(path, project), exclude):
            return True
        raise BuildError(f"{where}: {_posix_rel(path, project)} is a symbolic link to {os.path.realpath(path)}, "
                         "outside the directory the sdist takes: name it in tool.ferrule.plugin.sdist-include to "
                         "take what it points to along, or in sdist-exclude to leave it out")

    for directory, dirs, names in os.walk(top, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not any(fnmatch.fnmatch(d, g)
                                                                             for g in _SKIP_DIR_GLOBS)
                         and not escapes(os.path.join(directory, d)))
        for name in names:
            path = os.path.join(directory, name)
            if (not any(fnmatch.fnmatch(name, g) for g in _SKIP_FILE_GLOBS) and os.path.isfile(path)
                    and not escapes(path)):
                yield path


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    """Whether sdist-exclude drops the file at rel (relative to the project):
    a pattern with a / matches the path or a directory it is in, one without
    matches any file or directory name along it."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.replace(os.sep, "/").rstrip("/")
        candidates = prefixes if "/" in pattern else parts
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            return True
    return False


def _posix_rel(path: str, start: str) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def _moved_pyproject(config: _Config, project_dir: str) -> str:
    """The sdist's top pyproject.toml when its tree starts above the project:
    the project's, with a table that points the build at the project."""
    with open(os.path.join(config.project, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    text += ("\n\n# Written by ferrule.build: this sdist holds files from outside the project\n"
             "# (tool.ferrule.plugin.sdist-include), so its tree starts above it; the\n"
             "# project, with its own copy of this file, is in project-dir.\n"
             f"[tool.ferrule.sdist]\nproject-dir = {json.dumps(project_dir)}\n")
    try:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - 3.10
            import tomli as tomllib
        tomllib.loads(text)
    except ValueError as exc:
        raise BuildError(f"{config.project}/pyproject.toml: cannot add [tool.ferrule.sdist] to it for the sdist "
                         f"({exc}); write [tool.ferrule.plugin] as a table, not an inline one") from None
    return text


def _write_tar(path: str, base: str, members: Mapping[str, bytes | str]) -> None:
    """A gzipped POSIX tar under one top directory; members are contents
    (bytes) or paths of files to copy (str). Fixed times, owners and modes
    make the bytes reproducible."""
    mtime = _epoch()
    with _replacing(path) as partial, open(partial, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=mtime) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            value = members[name]
            if isinstance(value, str):
                with open(value, "rb") as f:
                    data = f.read()
                mode = 0o755 if os.stat(value).st_mode & 0o111 else 0o644
            else:
                data, mode = value, 0o644
            member = tarfile.TarInfo(f"{base}/{name}")
            member.size = len(data)
            member.mtime = mtime
            member.mode = mode
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            tar.addfile(member, io.BytesIO(data))


def _say(message: str) -> None:
    """Progress for the person running the build (pip -v shows it)."""
    print(f"ferrule.build: {message}", file=sys.stderr, flush=True)
