"""Each failure mode has its own exception class and a message that says what
was found, what was expected and what to do. Every case is a real file the
tests built or wrote, not a mock."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

import ferrule
from ferrule import _errors

from .conftest import Built


def patched_copy(src: Path, dst: Path, offset: int, data: bytes) -> Path:
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return dst


def assert_host_usable(built: Built) -> None:
    with ferrule.load(built.fixture) as plugin:
        assert plugin.add(2, 3) == 5


def test_tree_is_documented_and_rooted() -> None:
    classes = [getattr(ferrule, name) for name in _errors.__all__]
    assert len(set(classes)) == len(classes)
    for cls in classes:
        assert issubclass(cls, ferrule.FerruleError) or cls is ferrule.ThreadContractWarning
        assert cls.__name__ in (_errors.__doc__ or ""), f"{cls.__name__} missing from the tree drawing"
        assert repr(cls).startswith("<class 'ferrule.")


def test_missing_file(built: Built, tmp_path: Path) -> None:
    with pytest.raises(ferrule.LibraryNotFoundError, match=r"no file at .*nope\.so: check the path") as info:
        ferrule.load(tmp_path / "nope.so")
    assert isinstance(info.value, FileNotFoundError)
    assert_host_usable(built)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is a text file\n", r"is not a shared library \(no ELF header; starts with b'this is "),
        (b"", r"is an empty file, expected an ELF shared library for x86_64"),
        (b"\x7fELF\x02\x01", r"truncated ELF file \(6 bytes\)"),
    ],
    ids=["text", "empty", "truncated"],
)
def test_not_a_library(built: Built, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "libfake.so"
    path.write_bytes(content)
    with pytest.raises(ferrule.NotALibraryError, match=message):
        ferrule.load(path)
    assert_host_usable(built)


def test_object_file_is_not_a_library(built: Built, tmp_path: Path) -> None:
    import subprocess

    obj = tmp_path / "fixture.o"
    subprocess.run(["cc", "-c", "-I", str(built.fixture.parent), "-x", "c", "-", "-o", str(obj)],
                   input=b"int x;\n", check=True)
    with pytest.raises(ferrule.NotALibraryError, match=r"is a relocatable object \(\.o\).*link it with -shared"):
        ferrule.load(obj)


@pytest.mark.parametrize(
    ("offset", "data", "found"),
    [(18, struct.pack("<H", 183), r"aarch64 \(64-bit\)"), (4, b"\x01", r"x86_64 \(32-bit\)")],
    ids=["aarch64", "elfclass32"],
)
def test_wrong_architecture(built: Built, tmp_path: Path, offset: int, data: bytes, found: str) -> None:
    # A real x86_64 plugin whose header says another machine, as a cross build would.
    path = patched_copy(built.fixture, tmp_path / "libforeign.so", offset, data)
    with pytest.raises(ferrule.WrongArchitectureError, match=f"was built for {found}, expected an ELF shared library "
                       r"for x86_64 \(64-bit linux\); rebuild it for this platform"):
        ferrule.load(path)
    assert_host_usable(built)


def test_missing_dependency(built: Built) -> None:
    with pytest.raises(ferrule.MissingDependencyError, match=r"needs libferrule_dep\.so, which the loader cannot find"):
        ferrule.load(built.missing_dep)
    assert_host_usable(built)


CASES = [
    ("NO_ENTRY", ferrule.NoEntryPointError, r"does not export ferrule_entry_v1, expected by every ferrule plugin: export it"),
    ("ENTRY_NULL", ferrule.NoEntryPointError, r"ferrule_entry_v1 in .* returned NULL, expected a descriptor"),
    ("BAD_MAGIC", ferrule.BadMagicError, r"descriptor starts with 0x7f454c4600000000, expected the magic 0x46455252554c4521"),
    ("ABI_MAJOR_2", ferrule.AbiVersionError, r"built for ferrule ABI 2\.2, this host speaks ABI 1\.2: rebuild the plugin against ABI 1"),
    ("ABI_MAJOR_0", ferrule.AbiVersionError, r"built for ferrule ABI 0\.2, this host speaks ABI 1\.2"),
    ("ENTRY_V2", ferrule.AbiVersionError, r"exports ferrule_entry_v2 \(ABI 2\), this host speaks ABI 1"),
    ("SMALL_DESCRIPTOR", ferrule.DescriptorTooSmallError, r"struct_size is 24 bytes, ABI 1\.0 needs at least 88"),
    ("BAD_SIGNATURE", ferrule.SignatureError,
     r"function 'add' has a malformed signature '\(a: i64, b: int\) -> i64': expected a type \(bool, .*\) at column 13, found 'int'"),
    ("INIT_FAILS", ferrule.PluginInitError,
     r"plugin 'org\.ferrule\.tests\.fixture' failed to initialise: cannot open the model file: /nonexistent/model\.bin"),
    ("NON_UTF8_NAME", ferrule.MetadataError, r"name is not valid UTF-8"),
    ("DUPLICATE_NAMES", ferrule.MetadataError, r"exports two functions named 'add'"),
]


@pytest.mark.parametrize(("variant", "cls", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_plugin(built: Built, variant: str, cls: type[Exception], message: str) -> None:
    with pytest.raises(cls, match=message) as info:
        ferrule.load(built.variant(variant))
    # Each case is its own class, not merely a shared parent.
    assert type(info.value) is cls
    assert_host_usable(built)


def test_abi_error_carries_both_versions(built: Built) -> None:
    with pytest.raises(ferrule.AbiVersionError) as info:
        ferrule.load(built.variant("ABI_MAJOR_2"))
    assert info.value.plugin_version == (2, 2)
    assert info.value.host_version == (ferrule.ABI_MAJOR, ferrule.ABI_MINOR)


def test_call_failure_carries_plugin_message(built: Built) -> None:
    with ferrule.load(built.calc) as calc:
        with pytest.raises(ferrule.PluginCallError) as info:
            calc.checked_div(1, 0)
        assert str(info.value) == "plugin 'org.ferrule.examples.calc' function 'checked_div' failed: checked_div: division by zero"
        assert info.value.plugin_message == "checked_div: division by zero"
        assert calc.checked_div(9, 3) == 3


def test_failure_without_message_and_bad_text(built: Built) -> None:
    with ferrule.load(built.fixture) as plugin:
        with pytest.raises(ferrule.PluginCallError, match="failed: \\(the plugin gave no error message\\)"):
            plugin.silent_fail()
        with pytest.raises(ferrule.PluginCallError, match="returned text that is not valid UTF-8"):
            plugin.bad_text()
        assert plugin.add(1, 1) == 2


def test_docs_list_every_class() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "errors.md").read_text()
    for name in _errors.__all__:
        assert f"`{name}`" in doc, f"docs/errors.md does not list {name}"


def test_message_set_by_a_successful_call_does_not_leak(built: Built) -> None:
    with ferrule.load(built.fixture) as plugin:
        plugin.note_ok()
        with pytest.raises(ferrule.PluginCallError, match=r"failed: \(the plugin gave no error message\)$"):
            plugin.silent_fail()


def test_special_python_names_stay_out_of_the_class(built: Built) -> None:
    with ferrule.load(built.fixture) as plugin:
        assert "__len__" in plugin.functions
        with pytest.raises(TypeError):
            len(plugin)  # type: ignore[arg-type]
        with pytest.raises(ferrule.PluginCallError, match="not valid UTF-8"):
            plugin.functions["__len__"]()


# -- errors across the process boundary (isolated mode sends them as data)

SAMPLES = {str: "a text", int: 7, tuple: (1, 2)}


def sample(cls: type[BaseException], field: str) -> object:
    import inspect

    default = inspect.signature(cls.__init__).parameters[field].default
    if field == "last_lines":
        return ("first line", "last line")
    if field == "status":
        return -11
    if field == "missing":
        return "seccomp"
    return SAMPLES[type(default)]


@pytest.mark.parametrize("name", [n for n in _errors.__all__ if n != "ThreadContractWarning"])
def test_every_error_crosses_the_process_boundary_with_its_fields(name: str) -> None:
    # A field is a keyword parameter of __init__, kept under its own name; the
    # transport is derived from that, so a new field crosses without more code.
    import json

    cls = getattr(_errors, name)
    fields = _errors.fields(cls)
    values = {f: sample(cls, f) for f in fields}
    error = cls(f"{name} happened", **values)
    assert {f: getattr(error, f) for f in fields} == values
    back = _errors.from_payload(json.loads(json.dumps(_errors.to_payload(error))))
    assert type(back) is cls and str(back) == str(error)
    assert {f: getattr(back, f) for f in fields} == values


def test_builtin_and_unknown_errors_cross_as_the_nearest_class_they_may() -> None:
    import json

    class Private(KeyError):
        pass

    for error, cls in ((ValueError("bad"), ValueError), (Private("k"), KeyError), (RuntimeError("x"), ferrule.FerruleError)):
        back = _errors.from_payload(json.loads(json.dumps(_errors.to_payload(error))))
        assert type(back) is cls and str(back) == str(error)
    for bad in ({"class": "SystemExit", "message": "", "fields": {}},
                {"class": "PluginCallError", "message": "m", "fields": {"plugin_message": 5}},
                {"class": "PluginCallError", "message": "m", "fields": {}},
                {"class": "AbiVersionError", "message": "m", "fields": {"plugin_version": [1], "host_version": [1, 2]}},
                {"class": "PluginCrashedError", "message": "m", "fields": {"status": True, "last_lines": []}},
                ["not", "an", "object"]):
        with pytest.raises(ValueError):
            _errors.from_payload(bad)
    with pytest.raises(ValueError, match="unknown class"):
        _errors.from_payload(_errors.to_payload(ferrule.PluginCrashedError("m")), refuse=frozenset({"PluginCrashedError"}))
