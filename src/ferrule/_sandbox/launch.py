"""How the host starts a sandboxed child: the bubblewrap command line that
gives it its own namespaces and file system, the cgroups that bound its
processes and their memory, and the check of what the child says was in force."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from typing import Any

from .._errors import SandboxError
from .policy import PROTECTIONS, Sandbox, SandboxReport

__all__ = ["Launch", "confine", "facts", "prepare"]

NAMESPACES = ("user", "pid", "mnt", "net", "ipc", "uts")
_NAMES = {"mnt": "mount", "net": "network"}
SANDBOX_UID = 65534  # "nobody" inside; the host's own uid outside
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
TMP_BYTES = 64 << 20  # the child's own /tmp (memory: tmpfs pages are not in its address space)


@functools.lru_cache(maxsize=1)
def bwrap() -> tuple[str | None, str]:
    """bubblewrap's path and, when it cannot make namespaces here, why."""
    path = shutil.which("bwrap")
    if path is None:
        return None, ("bubblewrap (bwrap) is not installed: install it with your system's package manager "
                      "(the package is 'bubblewrap' on Debian, Ubuntu, Fedora and Arch)")
    probe = subprocess.run([path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        why = probe.stderr.strip().splitlines()[-1:] or [f"exit status {probe.returncode}"]
        return None, (f"bubblewrap cannot create namespaces here ({why[0]}): the kernel may forbid user "
                      "namespaces to unprivileged users (sysctl kernel.unprivileged_userns_clone or "
                      "user.max_user_namespaces, or an AppArmor restriction)")
    return path, ""


@functools.lru_cache(maxsize=1)
def _python_paths() -> tuple[str, ...]:
    """What the child's Python needs to start and import ferrule and cffi
    (fixed for the life of this process)."""
    import cffi

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(sysconfig.get_path(key))
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # ferrule's own directory
    paths.add(os.path.dirname(package))
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(cffi.__file__ or ""))))
    backend = importlib.util.find_spec("_cffi_backend")  # cffi's C half, which may live apart from it
    if backend is not None and backend.origin:
        paths.add(os.path.dirname(os.path.realpath(backend.origin)))
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})
    return tuple(p for p in real if not any(p.startswith(q.rstrip("/") + "/") for q in real if q != p))


def child_sys_path(granted: list[str]) -> list[str]:
    """The host's sys.path, less what the sandbox does not show the child."""
    def inside(entry: str) -> bool:
        real = os.path.realpath(entry or ".")
        return any(real == g or real.startswith(g.rstrip("/") + "/") for g in granted)

    return [p for p in sys.path if p and inside(p)]


def _child_env(policy: Sandbox) -> dict[str, str]:
    """The child's whole environment: the caller's, and ferrule's own switch
    (so the child picks the same channel)."""
    env = dict(policy.env)
    if os.environ.get("FERRULE_PURE_PYTHON"):
        env["FERRULE_PURE_PYTHON"] = os.environ["FERRULE_PURE_PYTHON"]
    return env


def _argv(policy: Sandbox, plugin_dir: str, exe: str, extra_read: tuple[str, ...] = ()) -> list[str]:
    argv = [exe, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "ferrule-sandbox",
            "--cap-drop", "ALL", "--clearenv"]
    if not policy.network:
        argv.append("--unshare-net")
    for key, value in _child_env(policy).items():
        argv += ["--setenv", key, value]
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in _ROOT_LINKS:
        path = "/" + name
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache", "--proc", "/proc"]
    # The kernel's settings: read-only, for a sandbox user that is the host's
    # root to the kernel (a root host) could otherwise write them.
    for path in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"):
        argv += ["--ro-bind-try", path, path]
    argv += ["--dev", "/dev", "--remount-ro", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]  # no /dev/shm hoard
    for path in _python_paths():
        argv += ["--ro-bind", path, path]
    if plugin_dir:
        argv += ["--ro-bind", plugin_dir, plugin_dir]
    for path in extra_read:  # as named, which may differ from where its links lead
        argv += ["--ro-bind-try", path, path]
    for path in policy.read:
        argv += ["--ro-bind", path, path]
    for path in policy.write:
        argv += ["--bind", path, path]
    return [*argv, "--chdir", "/", "--"]


class _Cgroup:
    """The child's own cgroups, where the host may make them (cgroup v2
    delegated to this user, or writable v1 hierarchies, as for root): a pids
    one bounds its processes, a memory one the memory of all of them
    together (tmpfs and memfd pages included, which no address-space limit
    sees). On v2 both are one directory; on v1 one per hierarchy."""

    _count = 0
    _lock = threading.Lock()

    def __init__(self, paths: list[str], controllers: set[str]):
        self.paths = paths
        self.controllers = controllers  # of "pids" and "memory": what is bounded

    @classmethod
    def make(cls, processes: int | None, memory: int | None) -> _Cgroup | None:
        # controller -> (v2 file, its value, v1 file, its value), in the order written; a later file
        # may be absent (swap accounting off: nothing to bound there)
        limits: dict[str, list[tuple[str, str, str, str]]] = {}
        if processes is not None:
            limits["pids"] = [("pids.max", str(processes), "pids.max", str(processes))]
        if memory is not None:  # swap: none beyond memory (v2 bounds swap alone, v1 memory and swap together)
            limits["memory"] = [("memory.max", str(memory), "memory.limit_in_bytes", str(memory)),
                                ("memory.swap.max", "0", "memory.memsw.limit_in_bytes", str(memory))]
        with cls._lock:
            cls._count += 1
            name = f"ferrule-{os.getpid()}-{cls._count}"
        made: dict[str, str] = {}  # parent directory -> the group made there
        done: set[str] = set()
        for controller, files in limits.items():
            found = _cgroup_parent(controller)
            if found is None:
                continue
            parent, v2 = found
            path = made.get(parent)
            try:
                if path is None:
                    path = os.path.join(parent, name)
                    os.mkdir(path)
                    made[parent] = path
                for i, (v2_file, v2_value, v1_file, v1_value) in enumerate(files):
                    target = os.path.join(path, v2_file if v2 else v1_file)
                    if i and not os.path.exists(target):
                        continue
                    with open(target, "w") as f:
                        f.write(v2_value if v2 else v1_value)
                done.add(controller)
            except OSError:
                continue  # this controller's limit did not take: reported as not bounded
        if not made:
            return None
        return cls(list(made.values()), done)

    def enter(self) -> None:
        """In the forked child, before it execs: only raw system calls."""
        for path in self.paths:
            fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def remove(self) -> None:
        """End every process left in them, then remove them."""
        for path in self.paths:
            _remove_group(path)


def _remove_group(path: str) -> None:
    for _ in range(200):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            pass
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.005)


@functools.lru_cache(maxsize=4)
def _cgroup_parent(controller: str) -> tuple[str, bool] | None:
    """This process's cgroup in a hierarchy with ``controller`` ("pids" or
    "memory"), if the host may make cgroups below it, and whether it is
    cgroup v2; None otherwise."""
    try:
        with open("/proc/self/cgroup") as f:
            groups = {c: rel for _id, c, rel in (line.rstrip("\n").split(":", 2) for line in f)}
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except (OSError, ValueError):
        return None
    for fields in mounts:
        sep = fields.index("-")
        fstype, options, root, mountpoint = fields[sep + 1], fields[sep + 3].split(","), fields[3], fields[4]
        if fstype == "cgroup2":
            rel = groups.get("")
        elif fstype == "cgroup" and controller in options:
            rel = next((r for c, r in groups.items() if controller in c.split(",")), None)
        else:
            continue
        if rel is None or not rel.startswith(root):
            continue
        where = os.path.join(mountpoint, rel[len(root):].lstrip("/"))
        if fstype == "cgroup2":
            try:
                with open(os.path.join(where, "cgroup.subtree_control")) as f:
                    if controller not in f.read().split():
                        continue
            except OSError:
                continue
        if os.access(where, os.W_OK):
            return where, fstype == "cgroup2"
    return None


def cgroup_parents() -> list[str]:
    """Where this process makes its children's cgroups (for tests that check none is left)."""
    found = {_cgroup_parent(c) for c in ("pids", "memory")}
    return sorted(f[0] for f in found if f is not None)


class Launch:
    """One sandboxed start: the command prefix, what runs in the forked child
    before exec, and the child's policy."""

    def __init__(self, policy: Sandbox, plugin_dir: str, extra_read: tuple[str, ...] = ()):
        self.policy = policy
        self.missing: list[str] = []
        self.notes: list[str] = []
        exe, why = bwrap()
        if exe is None:
            self._lack("namespaces", why)
            self.prefix: list[str] = []
            granted = []
        else:
            self.prefix = _argv(policy, plugin_dir, exe, extra_read)
            granted = [*_python_paths(), *filter(None, [plugin_dir]), *extra_read, *policy.read, *policy.write]
        self.sys_path = child_sys_path(granted) if exe is not None else list(sys.path)
        self.env = _child_env(policy)  # for Popen; bubblewrap clears and sets the same itself
        self.cgroup = _Cgroup.make(policy.processes, policy.memory)
        bounded = self.cgroup.controllers if self.cgroup is not None else set()
        self.process_limit = "none"
        if policy.processes is not None:
            if "pids" in bounded:
                self.process_limit = "pids cgroup"
            elif os.geteuid() != 0:
                self.process_limit = "RLIMIT_NPROC"
            else:
                self._lack("process-limit", "the host runs as root, which RLIMIT_NPROC does not bound, and no pids "
                           "cgroup is writable here")
        self.memory_limit = "none"
        if policy.memory is not None:
            self.memory_limit = "memory cgroup" if "memory" in bounded else "RLIMIT_AS"
        if self.memory_limit == "memory cgroup":
            self.notes.append(f"memory: {policy.memory} bytes for all of the sandbox's processes together (a memory "
                              "cgroup, swap included), and as much address space per process; /tmp is "
                              f"{TMP_BYTES >> 20} MiB")
        else:
            self.notes.append("memory: bounded per process by the address-space limit, the shared area by the same "
                              f"bound and /tmp by {TMP_BYTES >> 20} MiB; no memory cgroup is writable here (cgroup v2 "
                              "delegated with the memory controller, or v1 as root), so up to `processes` processes "
                              "may each use that much, and memory the kernel holds for the child (pipes, socket "
                              "buffers) is bounded only by its file descriptors")
        if os.geteuid() == 0 and exe is not None:
            self.notes.append("the host runs as root, so the sandbox's user is root to the kernel outside its user "
                              "namespace (what bind mounts and the filter leave reachable, it may use as root): run "
                              "the host as an unprivileged user for a stronger boundary")

    def _lack(self, protection: str, why: str) -> None:
        if protection not in self.policy.optional:
            raise SandboxError(f"the sandbox cannot give {PROTECTIONS[protection]}: {why}. To load without it, "
                               f"allow it with Sandbox(optional={{{protection!r}}})", missing=protection)
        self.missing.append(protection)
        self.notes.append(f"without {protection}: {why}")

    @property
    def preexec(self) -> Callable[[], None] | None:
        return self.cgroup.enter if self.cgroup is not None else None

    def child_policy(self) -> dict[str, Any]:
        return {"network": self.policy.network,
                "nproc": self.policy.processes if self.process_limit == "RLIMIT_NPROC" else 0}

    def check(self, seen: Any) -> SandboxReport:
        """The report from what the child read off its own /proc before the
        plugin ran; a required protection that is not there fails the load."""
        if not isinstance(seen, dict):
            raise SandboxError("the sandboxed child sent no account of its sandbox")
        host = facts()["ns"]
        child_ns = seen.get("ns", {})
        new = tuple(_NAMES.get(n, n) for n in NAMESPACES if child_ns.get(n) is not None and child_ns.get(n) != host.get(n))
        wanted = tuple(_NAMES.get(n, n) for n in NAMESPACES if not (n == "net" and self.policy.network))
        if self.prefix and not set(wanted) <= set(new):
            lacking = sorted(set(wanted) - set(new))
            self._lack("namespaces", f"the child shares the host's {', '.join(lacking)} namespace")
        seccomp = seen.get("seccomp") == 2
        if not seccomp:
            self._lack("seccomp", str(seen.get("seccomp_error") or "the child runs without a filter"))
        nnp = seen.get("no_new_privs") == 1
        if not nnp:
            self._lack("no-new-privileges", "the child's NoNewPrivs flag is not set")
        p = self.policy
        return SandboxReport(new, seccomp, nnp, p.network, p.read, p.write, p.memory, p.cpu_time, p.processes,
                             self.process_limit, tuple(self.missing), tuple(self.notes), self.memory_limit)

    def close(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()


def prepare(policy: Sandbox, plugin_path: str) -> Launch:
    """A start for the plugin at ``plugin_path`` (always a path: plugin_file resolves bare names)."""
    return Launch(policy, os.path.dirname(os.path.realpath(plugin_path)))


def confine(policy: dict[str, Any]) -> dict[str, Any]:
    """In a sandboxed child, before any plugin code: its part of the sandbox
    (Launch.child_policy: the process limit, no core dumps, the seccomp
    filter); what its /proc then says holds, for Launch.check."""
    import resource

    from . import seccomp

    if policy["nproc"]:
        resource.setrlimit(resource.RLIMIT_NPROC, (policy["nproc"], policy["nproc"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    error = None
    try:
        seccomp.apply(policy["network"])
    except seccomp.SeccompUnavailable as exc:
        error = str(exc)
    found = facts()
    found["seccomp_error"] = error
    return found


def facts() -> dict[str, Any]:
    """This process's namespaces and its seccomp and no-new-privileges state."""
    ns: dict[str, int | None] = {}
    for n in NAMESPACES:
        try:
            ns[n] = os.stat(f"/proc/self/ns/{n}").st_ino
        except OSError:
            ns[n] = None
    out: dict[str, Any] = {"ns": ns}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "Seccomp":
                    out["seccomp"] = int(value)
                elif key == "NoNewPrivs":
                    out["no_new_privs"] = int(value)
    except OSError:
        pass
    return out
