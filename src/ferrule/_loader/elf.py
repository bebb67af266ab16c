"""Read an ELF file without the dynamic loader: nothing in it runs.

glibc's dlopen reports a library built for another CPU as "No such file", so
the host classifies the header itself to give a message that says what was
found and what was expected. Also here: the RUNPATH a missing dependency was
looked for in, and the symbols a library defines (to name an entry point
that lost its C linkage).
"""

from __future__ import annotations

import functools
import os
import platform
import re
import stat
import struct
import sys
from typing import BinaryIO, NamedTuple

from .._errors import NotALibraryError, WrongArchitectureError

# e_machine values (System V ABI) for the architectures people ship.
_MACHINES = {
    3: "x86 (i386)",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "s390",
    40: "ARM (32-bit)",
    62: "x86_64",
    183: "aarch64",
    243: "RISC-V",
    258: "LoongArch",
}
_HOST_MACHINE = {
    "x86_64": 62,
    "amd64": 62,
    "i386": 3,
    "i686": 3,
    "aarch64": 183,
    "arm64": 183,
    "armv7l": 40,
    "ppc64le": 21,
    "ppc64": 21,
    "s390x": 22,
    "riscv64": 243,
    "loongarch64": 258,
}
_MACHO_MAGICS = {b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"}


def _type_and_machine(head: bytes) -> tuple[int, int]:
    """e_type and e_machine of an ELF header of at least 20 bytes."""
    order = "<" if head[5] == 1 else ">"
    e_type, e_machine = struct.unpack_from(order + "HH", head, 16)
    return e_type, e_machine


@functools.cache
def _host_machine() -> int | None:
    """e_machine of this interpreter's own executable: platform.machine()
    names the kernel's architecture, wrong for a 32-bit Python on a 64-bit OS."""
    try:
        with open("/proc/self/exe", "rb") as f:
            head = f.read(20)
    except OSError:
        head = b""
    if head[:4] == b"\x7fELF" and len(head) == 20:
        return _type_and_machine(head)[1]
    return _HOST_MACHINE.get(platform.machine().lower())


def host_description() -> str:
    return f"{platform.machine()} ({struct.calcsize('P') * 8}-bit {sys.platform})"


_NOT_FILES = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
              (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_a_file(mode: int) -> str | None:
    """What a file of this st_mode is when it is no regular file or directory:
    opening one (a FIFO with no writer, a device) can block for ever."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _NOT_FILES if test(mode)), None)


def refuse_non_file(path: str, mode: int) -> None:
    """Raise NotALibraryError when st_mode is a FIFO, socket or device."""
    kind = not_a_file(mode)
    if kind is not None:
        raise NotALibraryError(f"{path} is {kind}, not a file: load the shared library file itself")


def open_regular(path: str) -> BinaryIO:
    """path opened for reading, refusing without blocking anything that is not
    a regular file: the open itself does not wait (O_NONBLOCK), and the
    check is of the file opened, not of the name. Raises NotALibraryError
    for a FIFO, socket or device, IsADirectoryError, or OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        refuse_non_file(path, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_header(path: str) -> None:
    """Raise NotALibraryError or WrongArchitectureError if the file at path
    cannot be a shared library for this process. Only meaningful on ELF hosts."""
    if not sys.platform.startswith("linux"):
        return
    try:
        with open_regular(path) as f:
            head = f.read(64)
    except IsADirectoryError:
        raise NotALibraryError(f"{path} is a directory, expected a shared library file") from None
    expected = f"expected an ELF shared library for {host_description()}"
    if not head:
        raise NotALibraryError(f"{path} is an empty file, {expected}; rebuild or re-download it")
    if head[:4] in _MACHO_MAGICS:
        raise WrongArchitectureError(f"{path} is a Mach-O (macOS) binary, {expected}; use the Linux build")
    if head[:2] == b"MZ":
        raise WrongArchitectureError(f"{path} is a Windows PE binary, {expected}; use the Linux build")
    if head[:8] in _AR_MAGICS:
        raise NotALibraryError(_archive_message(path, expected))
    if head[:4] != b"\x7fELF":
        raise NotALibraryError(
            f"{path} is not a shared library (no ELF header; starts with {head[:8]!r}), {expected}"
        )
    if len(head) < 20:
        raise NotALibraryError(f"{path} is a truncated ELF file ({len(head)} bytes), {expected}")
    bits = {1: 32, 2: 64}.get(head[4])
    e_type, e_machine = _type_and_machine(head)
    host_bits = struct.calcsize("P") * 8
    host_machine = _host_machine()
    if bits != host_bits or (host_machine is not None and e_machine != host_machine):
        found = f"{_MACHINES.get(e_machine, f'machine {e_machine}')} ({bits or '?'}-bit)"
        raise WrongArchitectureError(
            f"{path} was built for {found}, {expected}; rebuild it for this platform"
        )
    if e_type != 3:  # ET_DYN
        kind = {1: "a relocatable object (.o)", 2: "an executable"}.get(e_type, f"ELF type {e_type}")
        raise NotALibraryError(f"{path} is {kind}, {expected}; link it with -shared / crate-type cdylib")


# An `ar` archive: a static library (.a), or a Rust library (.rlib), which
# cargo makes for a crate without crate-type = ["cdylib"].
_AR_MAGICS = (b"!<arch>\n", b"!<thin>\n")
_RLIB_METADATA = "lib.rmeta"  # the member that holds a Rust crate's metadata
_RLIB_NAME = re.compile(r"lib(?P<name>.+?)(?P<hash>-[0-9a-f]{16})?\.rlib")


def is_rust_library(path: str) -> bool:
    """Whether the file is a Rust rlib: an ar archive with a lib.rmeta
    member (rustc puts it first, after the symbol table)."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"!<arch>\n":
                return False
            for _ in range(8):  # metadata comes early; do not walk a huge archive
                header = f.read(60)
                if len(header) < 60 or header[58:60] != b"`\n":
                    return False
                name = header[:16].decode("ascii", "replace").rstrip()
                size = int(header[48:58].decode("ascii").strip() or "0")
                skip = size + size % 2  # members are 2-byte aligned
                if name.startswith("#1/"):  # BSD: the name follows the header
                    length = int(name[3:])
                    name, skip = f.read(length).rstrip(b"\0").decode("utf-8", "replace"), skip - length
                if name.rstrip("/") == _RLIB_METADATA:
                    return True
                f.seek(skip, os.SEEK_CUR)
    except (OSError, ValueError):
        pass
    return False


def _archive_message(path: str, expected: str) -> str:
    if not is_rust_library(path):
        return (f"{path} is a static archive (ar), {expected}; a plugin must be a shared library: link it with "
                '-shared (a Rust crate: crate-type = ["cdylib"], not "staticlib")')
    directory, base = os.path.split(path)
    match = _RLIB_NAME.fullmatch(base)
    if match is None:
        shared = "the libNAME.so that cargo then writes to target/release (or target/debug)"
    else:
        # deps/libNAME-HASH.rlib is an intermediate; cargo puts the cdylib one level up.
        if match["hash"] and os.path.basename(directory) == "deps":
            directory = os.path.dirname(directory)
        shared = os.path.join(directory, f"lib{match['name']}.so")
        if os.path.exists(shared):  # crate-type = ["rlib", "cdylib"]: the wrong file of the two
            return f"{path} is a Rust library (.rlib), {expected}; load the shared library cargo built beside it: {shared}"
    return (f'{path} is a Rust library (.rlib), {expected}; the crate is built without crate-type = ["cdylib"]: '
            f'add [lib] crate-type = ["cdylib"] to its Cargo.toml, rebuild, and load {shared}')


_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NEEDED, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 1, 5, 15, 29


class Dynamic(NamedTuple):
    needed: tuple[str, ...]  # DT_NEEDED: the libraries it links against, by name
    runpath: tuple[str, ...]  # DT_RUNPATH (else DT_RPATH), $ORIGIN expanded


def dynamic(path: str) -> Dynamic:
    """What a library's dynamic section tells the loader: its NEEDED names
    and where to look for them. $ORIGIN is the directory of ``path`` as
    given (glibc does not resolve symlinks for it). Advisory: a file this
    cannot read yields empty tuples. Reads only the headers and the
    dynamic section's strings, not the whole file."""
    try:
        with open(path, "rb") as f:
            return _dynamic(f, os.path.dirname(os.path.abspath(path)))
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return Dynamic((), ())


def _dynamic(f: BinaryIO, origin: str) -> Dynamic:
    empty = Dynamic((), ())
    head = f.read(64)
    if head[:4] != b"\x7fELF" or len(head) < 64:
        return empty
    wide = head[4] == 2
    order = "<" if head[5] == 1 else ">"
    if wide:
        (phoff,) = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
        header, entry = order + "IIQQQQ", order + "qQ"  # p_type p_flags p_offset p_vaddr p_paddr p_filesz
    else:
        (phoff,) = struct.unpack_from(order + "I", head, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
        header, entry = order + "IIIII", order + "iI"  # p_type p_offset p_vaddr p_paddr p_filesz
    f.seek(phoff)
    table = f.read(min(phnum, 256) * phentsize)
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
    dyn: tuple[int, int] | None = None
    for i in range(len(table) // phentsize if phentsize else 0):
        fields = struct.unpack_from(header, table, i * phentsize)
        if wide:
            p_type, _flags, offset, vaddr, _paddr, filesz = fields
        else:
            p_type, offset, vaddr, _paddr, filesz = fields
        if p_type == _PT_LOAD:
            loads.append((vaddr, filesz, offset))
        elif p_type == _PT_DYNAMIC:
            dyn = (offset, min(filesz, 1 << 16))
    if dyn is None:
        return empty
    f.seek(dyn[0])
    section = f.read(dyn[1])
    step = struct.calcsize(entry)
    tags: list[tuple[int, int]] = []
    for at in range(0, len(section) - step + 1, step):
        tag, value = struct.unpack_from(entry, section, at)
        if tag == 0:
            break
        tags.append((tag, value))
    strtab = next((v for t, v in tags if t == _DT_STRTAB), None)
    base = None if strtab is None else next(
        (strtab - vaddr + offset for vaddr, size, offset in loads if vaddr <= strtab < vaddr + size), None)
    if base is None:
        return empty

    def string(at: int) -> str:
        f.seek(base + at)
        chunk = f.read(4096)
        end = chunk.find(b"\0")
        if end < 0:
            raise ValueError("unterminated dynamic string")
        return chunk[:end].decode()

    needed = tuple(string(v) for t, v in tags if t == _DT_NEEDED)
    path_tag = next((v for t, v in tags if t == _DT_RUNPATH), None)
    if path_tag is None:
        path_tag = next((v for t, v in tags if t == _DT_RPATH), None)
    if path_tag is None:
        return Dynamic(needed, ())
    dirs = (d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin) for d in string(path_tag).split(":"))
    return Dynamic(needed, tuple(os.path.normpath(d) for d in dirs if d))


# What a dynamic lookup can find: bindings GLOBAL, WEAK and GNU_UNIQUE with
# visibility DEFAULT or PROTECTED.
_EXPORTED_BINDINGS = {1, 2, 10}
_EXPORTED_VISIBILITIES = {0, 3}
_NOT_CODE_OR_DATA = {3, 4}  # STT_SECTION, STT_FILE: nm leaves them out too
_SHT_SYMTAB = 2
_SHT_DYNSYM = 11


def defined_symbols(path: str, *, exported: bool = True) -> list[str]:
    """The names of the symbols a library file defines, in table order: with
    ``exported``, those of its dynamic symbol table that a lookup can find
    (what ``nm -D --defined-only`` lists); without, every defined one of its
    full symbol table, local ones too (``nm --defined-only``; none when the
    file is stripped).

    A pure reader for error messages: nothing of the library runs. Returns []
    for anything it cannot read this way (not ELF, no section headers, a
    truncated or inconsistent table), since only a message depends on it.
    """
    try:
        with open(path, "rb") as f:
            return _symbols(f, _SHT_DYNSYM if exported else _SHT_SYMTAB)
    except (OSError, struct.error, ValueError):
        return []


def _symbols(f: BinaryIO, table_type: int) -> list[str]:
    def read(offset: int, size: int) -> bytes:
        f.seek(offset)
        data = f.read(size)
        if len(data) != size:
            raise ValueError("truncated")
        return data

    ident = read(0, 16)
    if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        return []
    wide = ident[4] == 2
    order = "<" if ident[5] == 1 else ">"
    if wide:
        (shoff,), (shentsize, shnum) = struct.unpack(order + "Q", read(0x28, 8)), struct.unpack(order + "HH", read(0x3A, 4))
        section, symbol = struct.Struct(order + "IIQQQQIIQQ"), struct.Struct(order + "IBBHQQ")
    else:
        (shoff,), (shentsize, shnum) = struct.unpack(order + "I", read(0x20, 4)), struct.unpack(order + "HH", read(0x2E, 4))
        section, symbol = struct.Struct(order + "IIIIIIIIII"), struct.Struct(order + "IIIBBH")
    if shoff == 0 or shentsize < section.size:
        return []

    def header(index: int) -> tuple[int, int, int, int]:
        """sh_type, sh_offset, sh_size and sh_link of a section."""
        fields = section.unpack(read(shoff + index * shentsize, section.size))
        return fields[1], fields[4], fields[5], fields[6]

    if shnum == 0:  # 0xff00 sections or more: the count is in section 0's sh_size
        shnum = header(0)[2]
    for index in range(shnum):
        kind, offset, size, link = header(index)
        if kind != table_type:
            continue
        _, strings_offset, strings_size, _ = header(link)
        strings = read(strings_offset, strings_size)
        names = []
        for entry in symbol.iter_unpack(read(offset, size - size % symbol.size)):
            name, info, other, shndx = (entry[0], entry[1], entry[2], entry[3]) if wide else (entry[0], *entry[3:])
            if shndx == 0 or name == 0 or info & 0xF in _NOT_CODE_OR_DATA:  # undefined or not a program symbol
                continue
            if table_type == _SHT_DYNSYM and (info >> 4 not in _EXPORTED_BINDINGS or other & 3 not in _EXPORTED_VISIBILITIES):
                continue
            end = strings.find(b"\0", name)
            if end < 0:
                raise ValueError("unterminated symbol name")
            names.append(strings[name:end].decode("utf-8", "replace"))
        return names
    return []


def file_machine(path: str) -> tuple[int, int, str] | None:
    """(e_machine, bits, byte order "little" or "big") of an ELF file, or None
    for a file in another format. For checks on a file this process will not
    load: ferrule.build compares it with a wheel's platform tag."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return None
    bits = {1: 32, 2: 64}.get(head[4], 0)
    return _type_and_machine(head)[1], bits, "little" if head[5] == 1 else "big"


def host_machine() -> int | None:
    """e_machine of this interpreter, None where it cannot be told."""
    return _host_machine()


def machine_name(e_machine: int) -> str:
    return _MACHINES.get(e_machine, f"machine {e_machine}")
