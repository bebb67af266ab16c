"""ferrule validate's file checks (src/ferrule/_validate/files.py), on real
libraries built here with the C compiler, g++ and rustc, and on the Rust
plugins of the workspace. Where load has a message for the same fault, the
check must give load's message; where a tool (nm, objdump) can say what the
file holds, the test asks it rather than the checker's own reader."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

import ferrule
from ferrule._loader.elf import host_description
from ferrule._validate import files
from ferrule._validate.files import file_checks
from ferrule._validate.report import Check

from .conftest import C_DIR, CC, INCLUDE, ROOT, Built, compile_plugin, exported, run

IDS = ["file.elf", "file.entry", "file.exports", "file.needed", "file.symbol-versions", "file.exec-stack",
       "file.textrel", "file.static-tls"]
CPP_DIR = ROOT / "tests" / "plugins" / "cpp"
CXX_FLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden", f"-I{INCLUDE}"]
VERSION_SCRIPT = INCLUDE / "ferrule.map"


def checks(path: Path, glibc: str | None = None) -> dict[str, Check]:
    result = file_checks(str(path), glibc=glibc)
    assert [c.id for c in result] == IDS
    return {c.id: c for c in result}


def statuses(found: dict[str, Check]) -> dict[str, str]:
    return {id: c.status for id, c in found.items()}


def c_library(tmp_path: Path, source: str, *flags: str, name: str = "libplugin.so") -> Path:
    """A library from C source, built with conftest's plugin flags (and these after them)."""
    src = tmp_path / (name.removesuffix(".so") + ".c")
    src.write_text(source)
    return compile_plugin(src, tmp_path / name, *flags)


def load_error(path: Path) -> ferrule.FerruleError:
    with pytest.raises(ferrule.FerruleError) as info:
        ferrule.load(path)
    return info.value


MINIMAL = """\
#include "ferrule.h"
static const ferrule_plugin descriptor = {FERRULE_PLUGIN_HEAD, "org.ferrule.tests.files", "Files", "0.1.0",
                                          NULL, NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL};
FERRULE_ENTRY { return &descriptor; }
"""


@pytest.fixture(scope="module")
def corpus_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/plugins/c/corpus.c without a KIND: a valid C plugin built as the README says."""
    return compile_plugin(C_DIR / "corpus.c", tmp_path_factory.mktemp("corpus") / "libcorpus.so")


# -- a good plugin, and the time the checks take


def test_a_valid_c_plugin_passes_every_file_check(corpus_plugin: Path) -> None:
    found = checks(corpus_plugin)
    assert statuses(found) == dict.fromkeys(IDS, "pass"), {c.id: c.message for c in found.values()}
    assert found["file.elf"].message == "libcorpus.so is an ELF shared library for " \
        f"{host_description()}, as this interpreter is"
    assert found["file.entry"].message == "libcorpus.so exports the function ferrule_entry_v1 (func, global, " \
        "default visibility)"
    assert found["file.exports"].message == "libcorpus.so exports ferrule_entry_v1 and nothing else"
    assert exported(corpus_plugin) == ["ferrule_entry_v1"]  # what makes it right
    assert [d.split(":")[0] for d in found["file.needed"].details] == needed(corpus_plugin)


def needed(path: Path) -> list[str]:
    """DT_NEEDED, as readelf lists it."""
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", run(["readelf", "-d", str(path)]).stdout)


def test_every_check_takes_under_50_ms(corpus_plugin: Path, built: Built) -> None:
    for path in (corpus_plugin, built.kitchen):
        best: dict[str, float] = {}
        for _ in range(3):  # the best of three: a loaded machine may pause one run
            for c in file_checks(str(path), glibc="2.17"):
                best[c.id] = min(best.get(c.id, 1.0), c.seconds)
        assert max(best.values()) < 0.05, best


def test_the_rust_sdk_plugin_exports_only_its_entry_and_needs_only_system_libraries(built: Built) -> None:
    found = checks(built.kitchen)
    assert statuses(found) == dict.fromkeys(IDS, "pass"), {c.id: c.message for c in found.values()}
    names = needed(built.kitchen)
    assert [d.split(":")[0] for d in found["file.needed"].details] == names
    assert not any(n.startswith("libstd-") for n in names)


# -- file.symbol-versions


def glibc_needs(path: Path) -> dict[str, tuple[int, ...]]:
    """Each undefined symbol with a GLIBC_ version, and that version, as objdump -T lists them."""
    needs = {}
    for line in run(["objdump", "-T", str(path)]).stdout.splitlines():
        match = re.search(r"\*UND\*\s+\S+\s+\(?GLIBC_([\d.]+)\)?\s+(\S+)$", line)
        if match:
            needs[match[2]] = tuple(int(p) for p in match[1].split("."))
    return needs


def test_the_highest_glibc_needed_is_stated_with_the_manylinux_tag(built: Built) -> None:
    needs = glibc_needs(built.kitchen)
    assert needs, "the Rust plugin calls into glibc"
    highest = max(needs.values())[:2]
    version = ".".join(map(str, highest))
    found = checks(built.kitchen)["file.symbol-versions"]
    assert found.status == "pass"
    assert found.message == (f"libkitchen.so needs glibc {version} or newer: it loads on "
                             f"manylinux_2_{highest[1]} hosts and later")
    libc = next(d for d in found.details if d.startswith("libc.so.6: "))
    assert f"GLIBC_{version}" in libc.split(", ")[-1]


def test_a_glibc_older_than_needed_fails_naming_the_symbols_that_need_more(built: Built) -> None:
    needs = glibc_needs(built.kitchen)
    highest = max(needs.values())[:2]
    older = (2, 17)
    assert highest > older
    found = checks(built.kitchen, glibc="2.17")["file.symbol-versions"]
    assert found.status == "fail"
    version = ".".join(map(str, highest))
    assert found.message.startswith(f"libkitchen.so needs glibc {version}, newer than the glibc 2.17 asked for "
                                    f"(--glibc): there, loading fails with \"version `GLIBC_{version}' not found\"")
    for symbol, need in needs.items():
        if need[:2] > older:
            assert re.search(rf"\b{re.escape(symbol)}\b", found.message), symbol
    for symbol, need in needs.items():
        if need[:2] <= older:
            assert not re.search(rf"[:,] {re.escape(symbol)}\b", found.message), symbol
    assert "manylinux_2_17 container" in found.message and "cibuildwheel" in found.message
    machine = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(os.uname().machine, "ARCH")
    assert f"cargo zigbuild --target {machine}-unknown-linux-gnu.2.17" in found.message


def test_a_glibc_target_that_is_met_passes_and_says_so(built: Built) -> None:
    highest = max(glibc_needs(built.kitchen).values())[:2]
    target = f"{highest[0]}.{highest[1]}"
    found = checks(built.kitchen, glibc=f"manylinux_{highest[0]}_{highest[1]}")["file.symbol-versions"]
    assert found.status == "pass" and found.message.endswith(f", within the glibc {target} asked for")


def test_a_glibc_newer_than_this_machines_fails(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.17")
    found = checks(built.kitchen)["file.symbol-versions"]
    assert found.status == "fail" and "newer than the glibc 2.17 of this machine" in found.message
    assert "build it on a system with glibc 2.17 or older, e.g. in a manylinux_2_17 container" in found.message


def test_a_bad_glibc_option_is_refused(corpus_plugin: Path) -> None:
    with pytest.raises(ValueError, match=r"glibc version 'two': expected MAJOR.MINOR, e.g. 2.28"):
        file_checks(str(corpus_plugin), glibc="two")


def test_a_cpp_plugin_lists_its_libstdcxx_versions(tmp_path: Path) -> None:
    path = cpp_library(tmp_path, CPP_HELPER, "-Wl,--version-script=" + str(VERSION_SCRIPT))
    found = checks(path)["file.symbol-versions"]
    listed = run(["readelf", "-V", str(path)]).stdout
    versions = sorted(set(re.findall(r"Name: ((?:GLIBCXX|CXXABI)_[\d.]+)", listed)))
    assert versions, "a C++ plugin that uses std::string needs libstdc++ versions"
    stdcxx = next(d for d in found.details if d.startswith("libstdc++.so.6: "))
    assert sorted(stdcxx.removeprefix("libstdc++.so.6: ").split(", ")) == versions


# -- file.elf


def test_a_file_that_is_not_elf_fails_as_load_does_and_the_rest_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "libtext.so"
    path.write_text("not a library\n")
    found = checks(path)
    assert found["file.elf"].status == "fail"
    assert found["file.elf"].message == str(load_error(path))
    assert isinstance(load_error(path), ferrule.NotALibraryError)
    for id in IDS[1:]:
        assert found[id].status == "skip"
        assert found[id].message == "not run: the file is not an ELF shared library for this interpreter (file.elf)"


def test_a_library_for_another_machine_fails_as_load_does(tmp_path: Path, corpus_plugin: Path) -> None:
    path = tmp_path / "libarm.so"
    data = bytearray(corpus_plugin.read_bytes())
    other = 183 if struct.unpack_from("<H", data, 18)[0] != 183 else 62  # aarch64, or x86_64 on aarch64
    struct.pack_into("<H", data, 18, other)
    path.write_bytes(bytes(data))
    found = checks(path)
    error = load_error(path)
    assert isinstance(error, ferrule.WrongArchitectureError)
    assert found["file.elf"].status == "fail" and found["file.elf"].message == str(error)
    assert {c.status for c in found.values() if c.id != "file.elf"} == {"skip"}


def test_a_missing_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "libnothing.so"
    found = checks(path)
    error = load_error(path)
    assert isinstance(error, ferrule.LibraryNotFoundError)
    assert found["file.elf"].status == "fail" and found["file.elf"].message == str(error)
    assert found["file.elf"].message.startswith(f"no file at {path}")


def test_a_dangling_symbolic_link_fails_as_load_does(tmp_path: Path) -> None:
    path = tmp_path / "libgone.so"
    path.symlink_to("libnowhere.so")
    found = checks(path)["file.elf"]
    assert found.status == "fail" and found.message == str(load_error(path))
    assert "is a symbolic link to 'libnowhere.so', which does not exist" in found.message


def test_a_relative_path_is_named_as_load_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   built: Built) -> None:
    shutil.copy(built.variant("NO_ENTRY"), tmp_path / "libnoentry.so")
    monkeypatch.chdir(tmp_path)
    found = checks(Path("libnoentry.so"))["file.entry"]
    assert found.message == str(load_error(Path("./libnoentry.so")))
    assert found.message.startswith(f"{tmp_path / 'libnoentry.so'} does not export ferrule_entry_v1")


def test_an_executable_fails(tmp_path: Path) -> None:
    source = tmp_path / "main.c"
    source.write_text("int main(void) { return 0; }\n")
    path = tmp_path / "libexe.so"
    run([CC, "-fPIE", "-pie", str(source), "-o", str(path)])
    found = checks(path)["file.elf"]
    assert found.status == "fail"
    assert "is a position-independent executable (PIE), expected a shared library" in found.message
    assert "link it with -shared" in found.message


def test_a_truncated_library_fails_without_raising(tmp_path: Path, corpus_plugin: Path) -> None:
    path = tmp_path / "libcut.so"
    path.write_bytes(corpus_plugin.read_bytes()[:3000])
    found = checks(path)
    assert "fail" in {c.status for c in found.values()}
    failed = next(c for c in found.values() if c.status == "fail")
    assert "damaged" in failed.message and "rebuild it" in failed.message


def test_elsewhere_than_linux_the_file_checks_are_skipped(monkeypatch: pytest.MonkeyPatch, corpus_plugin: Path) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    found = checks(corpus_plugin)
    assert statuses(found) == dict.fromkeys(IDS, "skip")
    assert found["file.entry"].message == "not run: ELF file checks run on Linux only"


# -- file.entry


def test_no_entry_point_fails_with_loads_message(built: Built) -> None:
    path = built.variant("NO_ENTRY")
    found = checks(path)
    assert found["file.entry"].status == "fail"
    assert found["file.entry"].message == str(load_error(path))
    assert found["file.exports"].status == "warn" and found["file.exports"].details == ["plugin_descriptor"]


def test_an_entry_point_of_another_abi_fails_with_loads_message(built: Built) -> None:
    path = built.variant("ENTRY_V2")
    found = checks(path)["file.entry"]
    error = load_error(path)
    assert isinstance(error, ferrule.AbiVersionError)
    assert found.status == "fail" and found.message == str(error)


@pytest.mark.parametrize("hidden", [False, True], ids=["exported", "not-exported"])
def test_a_cpp_entry_without_c_linkage_fails_with_loads_message(tmp_path: Path, hidden: bool) -> None:
    path = tmp_path / "libmangled.so"
    run(["g++", *CXX_FLAGS, *(["-DHIDDEN"] if hidden else []), str(CPP_DIR / "mangled.cpp"), "-o", str(path)])
    found = checks(path)["file.entry"]
    error = load_error(path)
    assert isinstance(error, ferrule.NoEntryPointError)
    assert found.status == "fail" and found.message == str(error)
    assert "_Z16ferrule_entry_v1v" in found.message and "FERRULE_ENTRY" in found.message
    assert 'extern "C"' in found.message


def test_an_entry_hidden_by_visibility_fails_saying_it_is_not_exported(tmp_path: Path) -> None:
    path = c_library(tmp_path, MINIMAL.replace("FERRULE_ENTRY", "const ferrule_plugin *ferrule_entry_v1(void)"))
    assert "ferrule_entry_v1" not in exported(path)
    found = checks(path)["file.entry"]
    assert found.status == "fail"
    assert found.message.startswith(f"{path} defines ferrule_entry_v1 but does not export it: it is local")
    assert "FERRULE_ENTRY" in found.message and "-fvisibility=hidden" in found.message


def test_an_entry_that_is_a_variable_fails(tmp_path: Path) -> None:
    source = MINIMAL.replace("FERRULE_ENTRY { return &descriptor; }",
                             "FERRULE_EXPORT const ferrule_plugin *ferrule_entry_v1 = &descriptor;")
    path = c_library(tmp_path, source)
    found = checks(path)["file.entry"]
    assert found.status == "fail"
    assert "exports ferrule_entry_v1 as a variable (data object), expected the function the host calls" \
        in found.message


def rustc(tmp_path: Path, source: str, *flags: str, name: str = "libtiny.so") -> Path:
    if shutil.which("rustc") is None:
        pytest.fail("rustc is required (it comes with cargo, which the test plugins need anyway)")
    src = tmp_path / (name.removeprefix("lib").removesuffix(".so") + ".rs")
    src.write_text(source)
    out = tmp_path / name
    run(["rustc", "--edition", "2021", "--crate-type", "cdylib", "-O", *flags, str(src), "-o", str(out)])
    return out


def test_a_rust_entry_without_no_mangle_fails_saying_so(tmp_path: Path) -> None:
    source = ('pub extern "C" fn ferrule_entry_v1() -> *const u8 { std::ptr::null() }\n'
              '#[no_mangle]\npub extern "C" fn keep() -> usize { ferrule_entry_v1 as usize }\n')
    path = rustc(tmp_path, source, "-C", "strip=none")
    found = checks(path)["file.entry"]
    assert found.status == "fail"
    assert "defines the entry point only as the Rust-mangled symbol _ZN" in found.message
    assert "plugin! macro" in found.message and "#[no_mangle]" in found.message


# -- file.exports


CLASH = MINIMAL + """
__attribute__((visibility("default"))) int shutdown(int fd, int how) { return fd + how; }
__attribute__((visibility("default"))) int plugin_helper(int x) { return x + 1; }
"""


def test_an_export_that_libc_also_defines_fails_explaining_interposition(tmp_path: Path) -> None:
    path = c_library(tmp_path, CLASH)
    found = checks(path)["file.exports"]
    assert found.status == "fail"
    assert "exports 1 symbol that a library already loaded in this process also defines: shutdown (libc.so.6)" \
        in found.message
    assert "calls to shutdown and its function pointers to it reach libc.so.6's shutdown" in found.message
    assert "symbol interposition" in found.message and "Make it static" in found.message
    listed = {d.split(":")[0] for d in found.details}
    assert listed == set(exported(path)) - {"ferrule_entry_v1"} == {"shutdown", "plugin_helper"}
    shutdown = next(d for d in found.details if d.startswith("shutdown:"))
    assert re.fullmatch(r"shutdown: also defined by /\S*libc\.so\.6, which this process has loaded", shutdown)
    assert "Its other exports (all are in the details) only warn: Make them static" in found.message


def test_a_protected_export_that_libc_also_defines_only_warns(tmp_path: Path) -> None:
    # Protected visibility binds the plugin's own references inside it: no interposition.
    source = CLASH.replace('visibility("default"))) int shutdown', 'visibility("protected"))) int shutdown')
    path = c_library(tmp_path, source)
    found = checks(path)["file.exports"]
    assert found.status == "warn" and sorted(found.details) == ["plugin_helper", "shutdown"]


def test_other_exports_of_a_c_plugin_warn_with_the_c_advice(tmp_path: Path) -> None:
    path = c_library(tmp_path, MINIMAL + "int plugin_helper(int x);\nint plugin_helper(int x) { return x + 1; }\n",
                     "-fvisibility=default")
    found = checks(path)["file.exports"]
    assert found.status == "warn"
    assert found.details == ["plugin_helper"] == sorted(set(exported(path)) - {"ferrule_entry_v1"})
    assert "exports 1 symbol besides ferrule_entry_v1: other libraries and the host can bind to them" in found.message
    assert "Make them static, or compile with -fvisibility=hidden" in found.message
    assert "ferrule.map" in found.message


CPP_HELPER = """\
#include "ferrule.h"
#include <string>
static const ferrule_plugin descriptor = {FERRULE_PLUGIN_HEAD, "org.ferrule.tests.cpp", "Cpp", "0.1.0",
                                          nullptr, nullptr, 0, 0, nullptr, nullptr, nullptr, 0, 0, nullptr};
FERRULE_EXPORT std::size_t word_length(const std::string &word) { return std::string(word).size(); }
FERRULE_ENTRY { return word_length("x") ? &descriptor : nullptr; }
"""


def cpp_library(tmp_path: Path, source: str, *flags: str) -> Path:
    src, out = tmp_path / "plugin.cpp", tmp_path / "libcpp.so"
    src.write_text(source)
    run(["g++", *CXX_FLAGS, str(src), "-o", str(out), *flags])
    return out


def test_a_cpp_plugin_without_the_version_script_warns_with_the_cpp_advice(tmp_path: Path) -> None:
    path = cpp_library(tmp_path, CPP_HELPER)
    found = checks(path)["file.exports"]
    assert found.status == "warn"
    assert sorted(found.details) == sorted(set(exported(path)) - {"ferrule_entry_v1"})
    assert any(d.startswith("_Z11word_length") for d in found.details)
    assert "-fvisibility=hidden does not hide the inline and template functions" in found.message
    assert "-Wl,--version-script=\"$(ferrule --include)/ferrule.map\"" in found.message


def test_a_cpp_plugin_with_the_version_script_exports_only_its_entry(tmp_path: Path) -> None:
    path = cpp_library(tmp_path, CPP_HELPER, f"-Wl,--version-script={VERSION_SCRIPT}")
    found = checks(path)
    assert found["file.exports"].status == "pass" and found["file.entry"].status == "pass"


def test_the_symbol_of_a_named_version_node_is_not_an_export(tmp_path: Path) -> None:
    script = tmp_path / "named.map"
    script.write_text("MYPLUGIN_1.0 { global: ferrule_entry_v1; local: *; };\n")
    path = c_library(tmp_path, MINIMAL, f"-Wl,--version-script={script}")
    assert "MYPLUGIN_1.0" in exported(path)  # what the linker adds for the node
    found = checks(path)
    assert found["file.exports"].status == "pass" and found["file.entry"].status == "pass"


RUST_WITH_HELPER = """\
#[no_mangle]
pub extern "C" fn ferrule_entry_v1() -> *const u8 { println!("{}", plugin_helper()); std::ptr::null() }
#[no_mangle]
pub extern "C" fn plugin_helper() -> i32 { 3 }
"""


def test_a_rust_cdylib_with_no_mangle_helpers_warns_with_the_rust_advice(tmp_path: Path) -> None:
    path = rustc(tmp_path, RUST_WITH_HELPER)
    found = checks(path)
    assert found["file.needed"].status == "pass"
    assert found["file.exports"].status == "warn" and found["file.exports"].details == ["plugin_helper"]
    assert "A Rust cdylib exports only the entry point by itself" in found["file.exports"].message
    assert "#[no_mangle]" in found["file.exports"].message


# -- file.needed


def test_a_rust_std_dylib_dependency_fails(tmp_path: Path) -> None:
    path = rustc(tmp_path, RUST_WITH_HELPER, "-C", "prefer-dynamic")
    std = [n for n in needed(path) if re.fullmatch(r"libstd-[0-9a-f]+\.so", n)]
    assert len(std) == 1, "rustc -C prefer-dynamic links libstd-HASH.so"
    found = checks(path)["file.needed"]
    assert found.status == "fail"
    assert found.message.startswith(f"libtiny.so needs {std[0]}, the Rust standard library as a shared library: "
                                    "the crate was built with -C prefer-dynamic or as crate-type dylib")
    assert 'crate-type = ["cdylib"] and without -C prefer-dynamic' in found.message


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """corpus.c's dependency, in a directory of its own, under a name of its
    own: a test here loads a plugin that needs it into this process, where a
    library of the corpus's name (libcorpus_dep.so) would then stand in for
    the corpus's outdated one."""
    out = tmp_path_factory.mktemp("dep")
    return compile_plugin(C_DIR / "corpus.c", out / "libvalidate_dep.so", "-DKIND_DEP")


def needs_dep(out: Path, dep: Path, *flags: str) -> Path:
    """corpus.c's plugin that calls into libvalidate_dep.so."""
    out.mkdir(exist_ok=True)
    return compile_plugin(C_DIR / "corpus.c", out / "libneeds.so", "-DKIND_NEEDS_DEP", f"-L{dep.parent}",
                          "-lvalidate_dep", *flags)


@pytest.mark.parametrize("tag", ["RUNPATH", "RPATH"])
def test_a_dependency_found_through_an_absolute_runpath_warns(tmp_path: Path, dep: Path, tag: str) -> None:
    dtags = "--enable-new-dtags" if tag == "RUNPATH" else "--disable-new-dtags"
    path = needs_dep(tmp_path / "plugin", dep, f"-Wl,-rpath,{dep.parent}", f"-Wl,{dtags}")
    assert f"({tag})" in run(["readelf", "-d", str(path)]).stdout
    found = checks(path)["file.needed"]
    assert found.status == "warn"
    assert found.message == (
        f"libvalidate_dep.so is found only through the absolute {tag} {dep.parent}, outside the plugin's directory, "
        "and that path will not exist on other machines: ship it beside the plugin and link with "
        "-Wl,-rpath,'$ORIGIN' (RUNPATH $ORIGIN), link it statically, or let auditwheel repair bundle it into the "
        "plugin's wheel (ferrule.build wheels)")
    assert f"libvalidate_dep.so: {dep} (through its {tag} {dep.parent})" in found.details
    assert ferrule.load(path).name == "Corpus"  # it does load, here


def test_an_absolute_runpath_to_the_plugins_own_directory_says_to_write_origin(tmp_path: Path, dep: Path) -> None:
    out = tmp_path / "plugin"
    out.mkdir()
    shutil.copy(dep, out / dep.name)
    path = needs_dep(out, dep, f"-Wl,-rpath,{out}")
    found = checks(path)["file.needed"]
    assert found.status == "warn"
    assert "in the plugin's own directory, but that path will not exist on other machines" in found.message
    assert found.message.endswith(f"write $ORIGIN instead of {out}")


def test_a_dependency_shipped_beside_the_plugin_with_origin_passes(tmp_path: Path, dep: Path) -> None:
    out = tmp_path / "plugin"
    (out / "libs").mkdir(parents=True)
    shutil.copy(dep, out / "libs" / dep.name)
    path = needs_dep(out, dep, "-Wl,-rpath,$ORIGIN/libs")
    found = checks(path)["file.needed"]
    assert found.status == "pass", found.message
    assert f"libvalidate_dep.so: {out / 'libs' / dep.name} (through its RUNPATH $ORIGIN/libs)" in found.details


def test_a_dependency_found_only_through_ld_library_path_warns(tmp_path: Path, dep: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = needs_dep(tmp_path / "plugin", dep)
    monkeypatch.setenv("LD_LIBRARY_PATH", str(dep.parent))
    found = checks(path)["file.needed"]
    assert found.status == "warn"
    assert found.message.startswith(f"libvalidate_dep.so is found only through LD_LIBRARY_PATH ({dep.parent}), "
                                    "which the plugin's users will not have set")


def test_a_dependency_the_loader_cannot_find_fails_as_load_does(built: Built) -> None:
    path = built.missing_dep
    found = checks(path)["file.needed"]
    error = load_error(path)
    assert isinstance(error, ferrule.MissingDependencyError) and "libferrule_dep.so" in str(error)
    assert found.status == "fail"
    assert found.message.startswith("libfixture_missing_dep.so needs libferrule_dep.so, which the dynamic loader "
                                    "cannot find")
    assert "MissingDependencyError" in found.message and "LD_LIBRARY_PATH" in found.message
    assert "libferrule_dep.so: not found" in found.details


def cached(name: str) -> bool:
    return f"\t{name} (" in run(["/sbin/ldconfig", "-p"]).stdout


@pytest.mark.parametrize("name, status", [("libffi.so.8", "warn"), ("libz.so.1", "pass"), ("libm.so.6", "pass")])
def test_a_system_library_outside_the_manylinux_policy_warns(tmp_path: Path, name: str, status: str) -> None:
    if not cached(name):
        pytest.skip(f"{name} is not installed here")
    path = c_library(tmp_path, MINIMAL, "-Wl,--no-as-needed", f"-l:{name}")
    assert name in needed(path)
    found = checks(path)["file.needed"]
    assert found.status == status, found.message
    if status == "warn":
        assert found.message.startswith(f"{name} is installed here (")
        assert "is not among the libraries every Linux has (the manylinux policy, PEP 600)" in found.message
        assert "auditwheel repair" in found.message


# -- file.exec-stack, file.textrel, file.static-tls


def test_an_executable_stack_warns_naming_glibc_241(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = c_library(tmp_path, MINIMAL, "-Wl,-z,execstack")
    assert "RWE" in next(line for line in run(["readelf", "-lW", str(path)]).stdout.splitlines() if "GNU_STACK" in line)
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    found = checks(path)["file.exec-stack"]
    assert found.status == "warn"
    assert found.message.startswith("libplugin.so asks for an executable stack (PT_GNU_STACK with PF_X, RWE): "
                                    "glibc 2.41 and later refuse to dlopen it (\"cannot enable executable stack as "
                                    "shared object requires: Invalid argument\"); older glibc makes")
    assert "-Wl,-z,noexecstack" in found.message and ".note.GNU-stack" in found.message
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.41")
    found = checks(path)["file.exec-stack"]
    assert found.status == "fail" and ", as this machine's glibc does." in found.message


def test_a_missing_gnu_stack_header_warns(tmp_path: Path, corpus_plugin: Path) -> None:
    path = tmp_path / "libnostack.so"
    data = bytearray(corpus_plugin.read_bytes())
    with open(corpus_plugin, "rb") as f:
        elf = ELFFile(f)
        phoff, phentsize = elf["e_phoff"], elf["e_phentsize"]
        index = next(i for i, s in enumerate(elf.iter_segments()) if s["p_type"] == "PT_GNU_STACK")
    struct.pack_into("<I", data, phoff + index * phentsize, 0)  # PT_NULL
    path.write_bytes(bytes(data))
    assert "GNU_STACK" not in run(["readelf", "-lW", str(path)]).stdout
    found = checks(path)["file.exec-stack"]
    assert found.status in ("warn", "fail")
    assert found.message.startswith("libnostack.so has no PT_GNU_STACK header, which the loader takes as a request "
                                    "for an executable stack: glibc 2.41 and later refuse to dlopen it")


def test_text_relocations_warn(tmp_path: Path) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("the test's absolute-address assembly is x86_64")
    source = MINIMAL + ("int plugin_value = 3;\n"
                        "int plugin_get(void);\n"
                        "int plugin_get(void) {\n"
                        '    int *p; __asm__("movabs $plugin_value, %0" : "=r"(p)); return *p;\n'
                        "}\n")
    path = c_library(tmp_path, source, "-Wl,-z,notext")
    assert "TEXTREL" in run(["readelf", "-d", str(path)]).stdout
    found = checks(path)["file.textrel"]
    assert found.status == "warn"
    assert found.message.startswith("libplugin.so has text relocations (DT_TEXTREL): some of its code was compiled "
                                    "without -fPIC")
    assert "SELinux" in found.message


def test_initial_exec_tls_warns(tmp_path: Path) -> None:
    source = MINIMAL + ('static __thread int counter __attribute__((tls_model("initial-exec")));\n'
                        "int plugin_count(void);\n"
                        "int plugin_count(void) { return ++counter; }\n")
    path = c_library(tmp_path, source, "-std=gnu11")
    assert "STATIC_TLS" in run(["readelf", "-d", str(path)]).stdout
    found = checks(path)["file.static-tls"]
    assert found.status == "warn"
    assert found.message.startswith("libplugin.so uses the initial-exec TLS model (DF_STATIC_TLS) (4 bytes)")
    assert "cannot allocate memory in static TLS block" in found.message


def test_no_check_runs_plugin_code(tmp_path: Path) -> None:
    # A constructor that would kill the process: the file checks only read the file.
    source = MINIMAL + "#include <stdlib.h>\n__attribute__((constructor)) static void boom(void) { abort(); }\n"
    path = c_library(tmp_path, source)
    proc = subprocess.run([sys.executable, "-c", f"from ferrule._validate.files import file_checks as f; "
                           f"print(len(f({str(path)!r})))"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / 'src'),
                                                                                      os.environ.get('PYTHONPATH')]))))
    assert proc.returncode == 0 and proc.stdout.strip() == str(len(IDS)), proc.stderr
