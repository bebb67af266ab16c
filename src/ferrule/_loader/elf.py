"""Read a file's header before the dynamic loader sees it.

glibc's dlopen reports a library built for another CPU as "No such file", so
the host classifies the header itself to give a message that says what was
found and what was expected.
"""

from __future__ import annotations

import functools
import platform
import struct
import sys

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


def check_header(path: str) -> None:
    """Raise NotALibraryError or WrongArchitectureError if the file at path
    cannot be a shared library for this process. Only meaningful on ELF hosts."""
    if not sys.platform.startswith("linux"):
        return
    try:
        with open(path, "rb") as f:
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
