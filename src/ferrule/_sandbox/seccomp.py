"""The sandbox's seccomp filter, built with libseccomp (through cffi, ABI
mode: the shared library every distribution ships, no headers needed) and
loaded by the isolated child before it loads the plugin.

Everything is allowed but what a plugin has no business doing and what
attacks the host or the kernel: debugging other processes, the kernel's
keyrings, modules, mounts, new namespaces, BPF, io_uring (which could reach
sockets past the filter) and, without the network grant, every socket but a
Unix one. Calls of another architecture (32-bit ``int 0x80`` on x86-64) kill
the process: their numbers would slip past the rules.
"""

from __future__ import annotations

import errno
from typing import Any

__all__ = ["DENIED", "apply"]

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "add_key", "request_key", "keyctl",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "unshare", "setns",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "syslog", "iopl", "ioperm", "open_by_handle_at",
    "name_to_handle_at", "personality", "lookup_dcookie", "vhangup",
    # memory outside the address-space limit: a memfd or System V segment of any size
    "memfd_create", "memfd_secret", "shmget", "msgget",
)

_CDEF = """
typedef void *scmp_filter_ctx;
struct scmp_arg_cmp { unsigned int arg; int op; uint64_t datum_a; uint64_t datum_b; };
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned int arg_cnt,
                           const struct scmp_arg_cmp *arg_array);
int seccomp_load(scmp_filter_ctx ctx);
"""
_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_ATTR_BADARCH, _ATTR_NNP, _ATTR_TSYNC = 2, 3, 4
_CMP_NE, _CMP_MASKED_EQ = 1, 7
_AF_UNIX = 1
_TIOCSTI = 0x5412
# clone(2) flags that make namespaces; CLONE_NEWTIME shares clone's signal byte
_CLONE_NEW = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


def _errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class SeccompUnavailable(Exception):
    """libseccomp is missing or the kernel refused the filter."""


def apply(network: bool) -> None:
    """Load the filter into this process (every thread). Raises
    SeccompUnavailable with the reason when it cannot."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    try:
        lib: Any = ffi.dlopen("libseccomp.so.2")
    except OSError as exc:
        raise SeccompUnavailable(f"libseccomp is not installed ({exc}): install libseccomp2") from None
    ctx = lib.seccomp_init(_ALLOW)
    if ctx == ffi.NULL:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        for attr, value in ((_ATTR_BADARCH, _KILL_PROCESS), (_ATTR_NNP, 1), (_ATTR_TSYNC, 1)):
            if lib.seccomp_attr_set(ctx, attr, value) < 0:
                raise SeccompUnavailable(f"seccomp_attr_set({attr}) failed")

        def rule(action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:  # not on this architecture
                return
            array = ffi.new("struct scmp_arg_cmp[]", [list(c) for c in cmps]) if cmps else ffi.NULL
            rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
            if rc < 0:
                raise SeccompUnavailable(f"seccomp_rule_add({name}) failed: {errno.errorcode.get(-rc, rc)}")

        for name in DENIED:
            rule(_errno(errno.EPERM), name)
        for flag in _CLONE_NEW:
            rule(_errno(errno.EPERM), "clone", (0, _CMP_MASKED_EQ, flag, flag))
        rule(_errno(errno.ENOSYS), "clone3")  # its flags are out of reach: libc falls back to clone
        rule(_errno(errno.EPERM), "ioctl", (1, _CMP_MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))
        if not network:
            # No socket at all: a Unix one could connect to a socket file in a
            # read-only bind (a daemon's). A connected pair reaches nothing.
            rule(_errno(errno.EAFNOSUPPORT), "socket")
            rule(_errno(errno.EPERM), "socketpair", (0, _CMP_NE, _AF_UNIX, 0))
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise SeccompUnavailable(f"the kernel refused the filter: {errno.errorcode.get(-rc, rc)}")
    finally:
        lib.seccomp_release(ctx)
