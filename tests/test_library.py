"""The low-level loader: open by path or bare name, look up symbols, call
them through a declared C signature."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import zlib
from pathlib import Path

import pytest

import ferrule

from .conftest import Built


def test_rust_greet_by_bare_name(built: Built) -> None:
    lib = ferrule.Library("rawgreet", search_dirs=[built.rust])
    assert lib.path == str(built.rawgreet.resolve())
    greet = lib.function("greet", "const char *(void)")
    assert greet() == b"Hello from Rust!"


def test_bare_name_is_mapped_to_platform_file_name() -> None:
    assert ferrule.library_file_name("greeter") == "libgreeter.so"


def test_bare_name_not_in_given_dirs(built: Built, tmp_path: Path) -> None:
    with pytest.raises(ferrule.LibraryNotFoundError, match=r"no librawgreet\.so in .*: check the name"):
        ferrule.Library("rawgreet", search_dirs=[tmp_path])


def test_current_directory_is_not_searched(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    """Like dlopen, a bare name never finds a file in the current directory,
    but the message says so and gives the path that would load it."""
    monkeypatch.chdir(built.rust)
    assert (Path.cwd() / "librawgreet.so").exists()
    advice = ("cannot load librawgreet.so: librawgreet.so: cannot open shared object file: No such file or "
              "directory; a bare name is looked up on the loader path, never in the current directory, but "
              "librawgreet.so is in the current directory: pass './librawgreet.so' (or its full path) to load that file")
    for name in ("rawgreet", "librawgreet.so"):
        with pytest.raises(ferrule.LibraryNotFoundError) as info:
            ferrule.Library(name)
        assert str(info.value) == advice
    assert ferrule.Library("./librawgreet.so").path == str(Path.cwd() / "librawgreet.so")


def test_bare_name_absent_from_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ferrule.LibraryNotFoundError) as info:
        ferrule.Library("libnowhere.so")
    assert str(info.value) == ("cannot load libnowhere.so: libnowhere.so: cannot open shared object file: No such "
                               "file or directory; check the name and the loader path")


def test_zlib_from_system_loader_path() -> None:
    z = ferrule.Library("z")
    assert os.path.basename(z.path).startswith("libz.so")
    version = z.function("zlibVersion", "const char *(void)")()
    assert version.decode() == zlib.ZLIB_RUNTIME_VERSION
    crc32 = z.function("crc32", "unsigned long (unsigned long, const unsigned char *, unsigned int)")
    data = bytes(range(256)) * 1000
    assert crc32(0, data, len(data)) == zlib.crc32(data)
    # Chained, over a bytearray and a memoryview slice.
    first = crc32(0, bytearray(data[:1000]), 1000)
    assert crc32(first, memoryview(data)[1000:], len(data) - 1000) == zlib.crc32(data)
    adler = z.function("adler32", "unsigned long (unsigned long, const unsigned char *, unsigned int)")
    assert adler(1, b"ferrule", 7) == zlib.adler32(b"ferrule")


def test_missing_symbol(built: Built) -> None:
    lib = ferrule.Library(built.rawgreet)
    assert "greet" in lib
    assert "no_such_symbol" not in lib
    with pytest.raises(ferrule.SymbolNotFoundError, match=r"librawgreet\.so does not export 'no_such_symbol'"):
        lib.symbol("no_such_symbol")
    with pytest.raises(ferrule.SymbolNotFoundError):
        lib.function("no_such_symbol", "int (void)")
    assert lib.function("greet", "const char *(void)")() == b"Hello from Rust!"


def test_bad_c_signature(built: Built) -> None:
    lib = ferrule.Library(built.rawgreet)
    with pytest.raises(ValueError, match="does not parse"):
        lib.function("greet", "const char *(banana)")
    with pytest.raises(ValueError, match="no return type"):
        lib.function("greet", "greet")


def test_wrong_argument_count(built: Built) -> None:
    greet = ferrule.Library(built.rawgreet).function("greet", "const char *(void)")
    with pytest.raises(TypeError, match=r"greet\(\) takes 0 arguments \(1 given\)"):
        greet(1)


def test_library_never_unloads(built: Built) -> None:
    # Opening twice gives the same mapping; dropping the objects unloads nothing.
    first = ferrule.Library(built.rawgreet)
    address = first.symbol("greet")
    del first
    assert ferrule.Library(built.rawgreet).symbol("greet") == address


def test_c_cannot_write_into_immutable_bytes() -> None:
    libc = ferrule.Library("c")  # glibc's libc.so is a linker script: resolved via ldconfig
    memset = libc.function("memset", "void *(void *, int, size_t)")
    frozen = b"immutable"
    with pytest.raises(TypeError, match="bytes is immutable, and the function may write through this void"):
        memset(frozen, 0x41, 3)  # refused, not written into a copy that is then lost
    assert frozen == b"immutable"
    buffer = bytearray(b"mutable")
    memset(buffer, 0x41, 3)
    assert buffer == bytearray(b"AAAable")
    with pytest.raises(TypeError, match="expected a buffer, a pointer from Declarations.new, an int address or None"):
        memset(True, 0, 0)


PLUGIN_NAME_RULE = ("a bare plugin name is looked up in FERRULE_PATH's directories only, never on the system loader "
                    "path or in the current directory")


@pytest.mark.parametrize("isolated", [False, True])
def test_a_bare_plugin_name_is_found_in_ferrule_path_only(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         isolated: bool) -> None:
    """Not through LD_LIBRARY_PATH (which could put another library in its
    place), not in the current directory: in FERRULE_PATH, checked before
    anything of it runs, in process and isolated."""
    monkeypatch.delenv("FERRULE_PATH", raising=False)
    monkeypatch.setenv("LD_LIBRARY_PATH", str(built.c))
    monkeypatch.chdir(built.c)
    with pytest.raises(ferrule.LibraryNotFoundError) as info:
        ferrule.load("libfixture.so", isolated=isolated)
    assert str(info.value) == (f"no plugin libfixture.so in FERRULE_PATH, which is not set: {PLUGIN_NAME_RULE}; "
                               "libfixture.so is in the current directory: pass './libfixture.so' (or its full "
                               "path) to load that file")
    empty, plugins = tmp_path / "empty", tmp_path / "plugins"
    empty.mkdir()
    plugins.mkdir()
    shutil.copy(built.fixture, plugins / "libfixture.so")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FERRULE_PATH", os.pathsep.join([str(empty), "", str(plugins)]))
    with ferrule.load("libfixture.so", isolated=isolated) as plugin:
        assert plugin.path == str(plugins / "libfixture.so")
    with ferrule.load("fixture", isolated=isolated, sha256=hashlib.sha256(built.fixture.read_bytes()).hexdigest()) as p2:
        assert p2.path == str(plugins / "libfixture.so")  # the platform's file name, and pinned by its path
    with pytest.raises(ferrule.LibraryNotFoundError) as info:
        ferrule.load("libnowhere.so", isolated=isolated)
    assert str(info.value) == (f"no plugin libnowhere.so in FERRULE_PATH ({empty}{os.pathsep}{plugins}): "
                               f"{PLUGIN_NAME_RULE}; give the plugin's path, or add its directory to FERRULE_PATH")


def test_a_bare_plugin_name_is_checked_before_it_runs(built: Built, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(built.fixture, plugins / "libfixture.so")
    (plugins / "libfixture.so").chmod(0o666)
    monkeypatch.setenv("FERRULE_PATH", str(plugins))
    with pytest.raises(ferrule.UnsafeFileError, match="writable by every user"):
        ferrule.load("libfixture.so")


def test_library_finds_a_versioned_system_library_without_running_anything(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    """libz.so (a development link) may be absent: the versioned file from
    ld.so's cache, found without running ldconfig or a compiler from PATH."""
    trap = tmp_path / "bin"
    trap.mkdir()
    marker = tmp_path / "ran"
    for tool in ("ldconfig", "gcc", "cc", "ld", "objdump"):
        (trap / tool).write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
        (trap / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(trap))
    z = ferrule.Library("z")
    assert re.search(r"libz\.so(\.\d+)*$", z.path)
    assert not marker.exists()
