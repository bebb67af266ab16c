"""The sandbox's attack suite: a hostile plugin (tests/plugins/c/attacker.c)
tries, from a sandboxed isolated child, what docs/isolation.md's threat model
says the sandbox stops. Each attack must fail, the host must be alive and
unchanged, and nothing of the plugin may remain afterwards. Where an attack
is harmless to the test process it also runs without the sandbox, where it
must work: the attack itself is real.

ATTACKS is the threat model; test_the_docs_threat_model_is_the_attack_suite
holds docs/isolation.md's table to it.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ferrule
from ferrule._sandbox import launch

from .conftest import C_DIR, CC, INCLUDE, Built, compile_plugin

# id: (the attack, what blocks it, the kernel feature it needs)
ATTACKS: dict[str, tuple[str, str, str]] = {
    "proc-mem-read": ("read the host's memory through /proc/PID/mem", "pid namespace", "user namespaces"),
    "proc-mem-write": ("rewrite the host's memory through /proc/PID/mem", "pid namespace", "user namespaces"),
    "vm-read": ("read the host's memory with process_vm_readv", "seccomp; pid namespace", "seccomp"),
    "vm-write": ("write the host's memory with process_vm_writev", "seccomp; pid namespace", "seccomp"),
    "ptrace": ("attach to the host with ptrace", "seccomp; pid namespace", "seccomp"),
    "signal-host": ("SIGKILL a process of the host's", "pid namespace", "user namespaces"),
    "environment": ("read a secret from the host's environment", "empty environment", "-"),
    "files-outside": ("read a file outside the grant", "mount namespace", "user namespaces"),
    "home": ("list the user's home directory", "mount namespace", "user namespaces"),
    "write-outside": ("write outside the granted paths (and into its own directory)", "mount namespace (read-only binds)",
                      "user namespaces"),
    "tcp": ("connect to a TCP port on the host's loopback", "seccomp (socket families); network namespace",
            "seccomp"),
    "udp": ("send a UDP datagram to the host's loopback", "seccomp (socket families); network namespace", "seccomp"),
    "netlink": ("open a netlink socket to the kernel", "seccomp (socket families)", "seccomp"),
    "fork-bomb": ("fork without bound", "pids cgroup (or RLIMIT_NPROC)", "a writable pids cgroup, or a non-root host"),
    "daemon": ("leave a setsid daemon behind after close()", "pid namespace; pids cgroup", "user namespaces"),
    "host-exit": ("outlive the host (the host is SIGKILLed)", "pid namespace; --die-with-parent", "user namespaces"),
    "setuid": ("gain privileges by running a set-user-id program", "no new privileges; user namespace", "-"),
    "keyring": ("use the kernel keyring", "seccomp", "seccomp"),
    "mount": ("mount a file system", "seccomp; user namespace without capabilities", "seccomp"),
    "new-namespace": ("make a new user namespace (kernel attack surface)", "seccomp", "seccomp"),
    "io-uring": ("use io_uring (which reaches sockets past the filter)", "seccomp", "seccomp"),
    "compat-syscall": ("a 32-bit system call (int 0x80) past an x86-64 filter", "seccomp (kills the process)",
                       "seccomp"),
    "fds": ("use a file descriptor inherited from the host", "fds closed but the channel's", "-"),
    "shared-memory": ("exhaust the host's memory through the shared area", "bounded data area; address-space limit",
                      "-"),
    "channel-growth": ("store more than the bound in the channel's memfd, unmapped", "the memfd sealed at its bound",
                       "-"),
    "memfd": ("hoard memory the address-space limit does not see, in a memfd", "seccomp", "seccomp"),
    "sysv-shm": ("hoard memory in a System V shared memory segment", "seccomp", "seccomp"),
    "sysctl": ("change a kernel setting through /proc/sys (as root to the kernel, on a root host)",
               "/proc/sys bound read-only", "user namespaces"),
    "unix-socket": ("connect to a daemon's Unix socket in a read-only path", "seccomp (no sockets)", "seccomp"),
    "announce": ("announce a huge message so the host allocates it", "bounded data area", "-"),
    "memory-hogs": ("hold more memory in many processes than the sandbox's bound, each within its own limit",
                    "memory cgroup", "a writable memory cgroup (v2 delegated, or v1 as root)"),
    "scan-forge": ("forge another library's scan result from a constructor",
                   "a result pipe per library; the worker not dumpable; pid namespace", "user namespaces"),
    "scan-plant": ("write a file into the user's cache directory while being scanned", "mount namespace",
                   "user namespaces"),
    "scan-daemon": ("leave a daemon behind after a scan", "the worker a child subreaper; pid namespace", "-"),
}

AVAILABLE, WHY = launch.bwrap()
needs_namespaces = pytest.mark.skipif(AVAILABLE is None, reason=f"no namespaces here: {WHY}")
MiB = 1 << 20


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("attacker")
    return compile_plugin(C_DIR / "attacker.c", out / "libattacker.so")


@pytest.fixture
def sandboxed(attacker: Path) -> Iterator[Callable[..., ferrule.IsolatedPlugin]]:
    """Sandboxed attackers, each checked after its test: closed, and nothing
    of it left running."""
    made: list[ferrule.IsolatedPlugin] = []

    def make(**policy: Any) -> ferrule.IsolatedPlugin:
        plugin = ferrule.load(attacker, isolated=True, timeout=30, sandbox=ferrule.Sandbox(**policy))
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        plugin.close()
    assert_nothing_remains()


def leftovers() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if comm in ("ferrule-bomb", "ferrule-daemon") or b"libattacker" in cmdline:  # noqa: SIM102
            found.append(f"{entry} {comm}")
    return found


def assert_nothing_remains() -> None:
    deadline = time.monotonic() + 5
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert leftovers() == []
    for parent in launch.cgroup_parents():  # every cgroup of this process's children is gone
        assert not [d for d in os.listdir(parent) if d.startswith(f"ferrule-{os.getpid()}-")]


def daemon_runs() -> bool:
    deadline = time.monotonic() + 5
    while not any("ferrule-daemon" in p for p in leftovers()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return any("ferrule-daemon" in p for p in leftovers())


def blocked(result: str) -> bool:
    return result.startswith("blocked: ")


# --------------------------------------------------------------- the attacks

SECRET = b"ferrule-secret-" + os.urandom(8).hex().encode()


def _address(obj: bytes) -> int:
    return id(obj) + sys.getsizeof(b"") - 1  # CPython: the bytes' data follow the object header


@needs_namespaces
def test_proc_mem_read(sandboxed: Callable[..., ferrule.IsolatedPlugin], attacker: Path) -> None:
    with ferrule.load(attacker, isolated=True) as plain:  # the attack works without the sandbox
        assert plain.proc_mem_read(os.getpid(), _address(SECRET), len(SECRET)) == "DONE: " + SECRET.hex()
    result = sandboxed().proc_mem_read(os.getpid(), _address(SECRET), len(SECRET))
    assert blocked(result), result


@needs_namespaces
def test_proc_mem_write(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    target = b"ferrule-immutable-" + os.urandom(4).hex().encode()
    before = bytes(target)
    result = sandboxed().proc_mem_write(os.getpid(), _address(target), b"X" * 8)
    assert blocked(result), result
    assert target == before


@needs_namespaces
def test_vm_read(sandboxed: Callable[..., ferrule.IsolatedPlugin], attacker: Path) -> None:
    with ferrule.load(attacker, isolated=True) as plain:
        assert plain.vm_read(os.getpid(), _address(SECRET), 8) == "DONE: " + SECRET[:8].hex()
    result = sandboxed().vm_read(os.getpid(), _address(SECRET), 8)
    assert result == "blocked: process_vm_readv: Operation not permitted"  # seccomp's EPERM


@needs_namespaces
def test_vm_write(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    target = b"ferrule-immutable-" + os.urandom(4).hex().encode()
    before = bytes(target)
    assert sandboxed().vm_write(os.getpid(), _address(target), b"X" * 8) == \
        "blocked: process_vm_writev: Operation not permitted"
    assert target == before


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the host's user that the plugin must not reach."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


@needs_namespaces
def test_ptrace(sandboxed: Callable[..., ferrule.IsolatedPlugin], bystander: subprocess.Popen[bytes]) -> None:
    for pid in (os.getpid(), bystander.pid):
        assert sandboxed().ptrace_attach(pid) == "blocked: ptrace(PTRACE_ATTACH): Operation not permitted"
    assert bystander.poll() is None


@needs_namespaces
def test_signal_host(sandboxed: Callable[..., ferrule.IsolatedPlugin], bystander: subprocess.Popen[bytes]) -> None:
    plugin = sandboxed()
    assert plugin.signal_pid(bystander.pid, 9).startswith("blocked: kill"), "the pid is not in the sandbox's namespace"
    assert plugin.signal_pid(os.getpid(), 0).startswith("blocked: kill")
    time.sleep(0.1)
    assert bystander.poll() is None
    assert plugin.add(2, 3) == 5


@needs_namespaces
def test_environment(sandboxed: Callable[..., ferrule.IsolatedPlugin], attacker: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRULE_TEST_SECRET", "hunter2")
    with ferrule.load(attacker, isolated=True) as plain:
        assert plain.read_env("FERRULE_TEST_SECRET") == "DONE: hunter2"
    plugin = sandboxed(env={"GIVEN": "yes"})
    assert plugin.read_env("FERRULE_TEST_SECRET") == "blocked: no such variable"
    assert plugin.read_env("HOME") == "blocked: no such variable"
    assert plugin.read_env("GIVEN") == "DONE: yes"  # what the caller passes, and only that


@needs_namespaces
def test_files_outside(sandboxed: Callable[..., ferrule.IsolatedPlugin], attacker: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    with ferrule.load(attacker, isolated=True) as plain:
        assert plain.read_file(str(secret)) == "DONE: the host's secret"
    assert sandboxed().read_file(str(secret)) == "blocked: open: No such file or directory"
    assert sandboxed(read=[tmp_path]).read_file(str(secret)) == "DONE: the host's secret"  # a grant shows it
    assert sandboxed().read_file(str(attacker)).startswith("DONE: \x7fELF")  # its own directory, read-only


@needs_namespaces
def test_home(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    home = Path.home()
    shown = sandboxed().list_dir(str(home))
    visible = set(shown.removeprefix("DONE: ").split()) if not blocked(shown) else set()
    # Only the way down to the Python running the child (it may live under $HOME).
    allowed = {Path(p).relative_to(home).parts[0] for p in [*launch._python_paths(), str(Path(__file__).parent.parent)]
               if Path(p).is_relative_to(home)}
    assert visible <= allowed, shown


@needs_namespaces
def test_write_outside(sandboxed: Callable[..., ferrule.IsolatedPlugin], attacker: Path, tmp_path: Path) -> None:
    granted = tmp_path / "granted"
    granted.mkdir()
    other = tmp_path / "elsewhere"
    other.mkdir()
    plugin = sandboxed(write=[granted])
    assert plugin.write_file(str(granted / "out.txt"), b"fine") == "DONE: written"
    assert (granted / "out.txt").read_bytes() == b"fine"
    assert blocked(plugin.write_file(str(other / "x"), b"no"))
    assert blocked(plugin.write_file(str(attacker.parent / "libevil.so"), b"no"))  # its directory is read-only
    assert blocked(plugin.write_file("/usr/evil", b"no"))
    assert not (other / "x").exists() and not (attacker.parent / "libevil.so").exists()
    assert blocked(plugin.write_file("/dev/shm/hoard", b"no"))
    assert plugin.write_file("/tmp/scratch", b"private").startswith("DONE")  # a /tmp of its own
    assert not Path("/tmp/scratch").exists()


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, socket.socket]]:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    tcp.settimeout(0.3)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.3)
    yield tcp, udp
    tcp.close()
    udp.close()


@needs_namespaces
def test_tcp(sandboxed: Callable[..., ferrule.IsolatedPlugin], attacker: Path,
             listener: tuple[socket.socket, socket.socket]) -> None:
    tcp, _ = listener
    port = tcp.getsockname()[1]
    with ferrule.load(attacker, isolated=True) as plain:
        assert plain.tcp_connect(port) == "DONE: connected"
        tcp.accept()[0].close()
    assert sandboxed().tcp_connect(port) == "blocked: socket(AF_INET, SOCK_STREAM): Address family not supported by protocol"
    with pytest.raises(TimeoutError):
        tcp.accept()
    # Granted, the socket call passes; the network namespace (loopback down) still stops it unless shared.
    assert sandboxed(network=True).tcp_connect(port) == "DONE: connected"
    tcp.accept()[0].close()


@needs_namespaces
def test_udp(sandboxed: Callable[..., ferrule.IsolatedPlugin], listener: tuple[socket.socket, socket.socket]) -> None:
    _, udp = listener
    assert blocked(sandboxed().udp_send(udp.getsockname()[1]))
    with pytest.raises(TimeoutError):
        udp.recv(100)


@needs_namespaces
def test_netlink(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    assert sandboxed().netlink() == "blocked: socket(AF_NETLINK): Address family not supported by protocol"


@needs_namespaces
def test_fork_bomb(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    plugin = sandboxed(processes=40)
    if plugin.sandbox is not None and plugin.sandbox.process_limit == "none":  # pragma: no cover - see Launch
        pytest.skip("no process limit here: " + "; ".join(plugin.sandbox.notes))
    result = plugin.fork_bomb(500)
    made = int(re.match(r"blocked: forked (\d+), then Resource temporarily unavailable", result).group(1))  # type: ignore[union-attr]
    assert 0 < made < 40  # the child's own threads count too
    assert plugin.add(2, 3) == 5


@needs_namespaces
def test_daemon(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    plugin = sandboxed()
    assert plugin.leave_daemon() == "DONE: a daemon runs"  # it may start one ...
    assert daemon_runs()
    plugin.close()
    assert_nothing_remains()  # ... which ends with the plugin


@needs_namespaces
def test_host_exit(attacker: Path, tmp_path: Path) -> None:
    """A host SIGKILLed while its sandboxed plugin left a daemon: both go."""
    script = tmp_path / "host.py"
    script.write_text(
        "import sys, time, ferrule\n"
        f"p = ferrule.load({str(attacker)!r}, isolated=True, sandbox=True)\n"
        "print(p.leave_daemon(), flush=True)\n"
        "time.sleep(60)\n")
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None and host.stdout.readline().strip() == "DONE: a daemon runs"
        assert daemon_runs()
    finally:
        host.kill()
        host.wait()
    assert_nothing_remains()


@needs_namespaces
def test_setuid(sandboxed: Callable[..., ferrule.IsolatedPlugin], tmp_path: Path, attacker: Path) -> None:
    helper = attacker.parent / "whoami"
    if not helper.exists():
        source = tmp_path / "whoami.c"
        source.write_text('#include <stdio.h>\n#include <unistd.h>\nint main(void) { char line[128]; FILE *f = '
                          'fopen("/proc/self/status", "r"); printf("euid=%d", (int)geteuid()); while (f && '
                          'fgets(line, sizeof line, f)) if (line[0] == \'C\' && line[3] == \'E\') printf(" %s", line);'
                          ' return 0; }\n')
        subprocess.run([CC, "-O2", str(source), "-o", str(helper)], check=True)
    os.chmod(helper, 0o4755)  # set-user-id, owned by the test's user (root on CI)
    result = sandboxed().exec_setuid(str(helper))
    assert result.startswith(f"euid={launch.SANDBOX_UID} CapEff:\t0000000000000000"), result


@needs_namespaces
def test_keyring(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    assert sandboxed().keyring() == "blocked: add_key: Operation not permitted"


@needs_namespaces
def test_mount(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    assert sandboxed().mount_tmpfs() == "blocked: mount: Operation not permitted"


@needs_namespaces
def test_new_namespace(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    assert sandboxed().new_userns() == "blocked: unshare(CLONE_NEWUSER): Operation not permitted"


@needs_namespaces
def test_io_uring(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    assert sandboxed().io_uring() == "blocked: io_uring_setup: Operation not permitted"


@needs_namespaces
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="int 0x80 is x86's 32-bit gate")
def test_compat_syscall(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    plugin = sandboxed()
    with pytest.raises(ferrule.PluginCrashedError, match=r"killed by SIGSYS") as info:
        plugin.compat_syscall()
    assert info.value.signal == 31
    assert plugin.add(2, 3) == 5  # restarted, still sandboxed
    assert plugin.sandbox is not None and plugin.sandbox.seccomp


@needs_namespaces
def test_fds(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    with open(__file__) as held:  # an fd of the host's, not marked close-on-exec
        os.set_inheritable(held.fileno(), True)
        listing = sandboxed().fds()
    targets = dict(line.split("=", 1) for line in listing.splitlines())
    assert targets.pop("0") == "/dev/null"
    for fd, target in targets.items():  # stdout, stderr, the lifeline, the notifier; the channel's memfd
        assert target.startswith("pipe:") or target.startswith("/memfd:ferrule-isolated"), (fd, target)


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@needs_namespaces
def test_shared_memory(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    plugin = sandboxed(memory=256 * MiB)
    before = _rss()
    with pytest.raises(ferrule.FerruleError) as info:
        plugin.big_result(1 << 30)
    assert isinstance(info.value, (ferrule.PluginCallError, ferrule.IsolationError)), info.value
    assert _rss() - before < 64 * MiB  # the host copied nothing of it
    assert plugin.add(2, 3) == 5


@needs_namespaces
def test_announce(tmp_path: Path) -> None:
    path = compile_plugin(C_DIR / "forge.c", tmp_path / "libforge.so", "-lpthread")
    limit = 256 * MiB
    with ferrule.load(path, isolated=True, sandbox=ferrule.Sandbox(memory=limit)) as plugin:
        with pytest.raises(ferrule.IsolationError) as info:
            for _ in range(50):  # the forging thread races the child's own head
                plugin.forge(8 << 30)
        assert f"more than the {limit} bytes the host maps for it" in str(info.value)


@needs_namespaces
def test_memory_hogs(sandboxed: Callable[..., ferrule.IsolatedPlugin], attacker: Path) -> None:
    """Eight processes of 100 MiB each: every one stays under the 384 MiB
    address-space limit, together they are twice that."""
    if launch._cgroup_parent("memory") is None:
        pytest.skip("no memory cgroup is writable here (cgroup v2 delegated with the memory controller, or v1 as "
                    "root): the sandbox bounds each process only, and its report says so")
    with ferrule.load(attacker, isolated=True, memory_limit=384 * MiB, timeout=60) as plain:
        assert plain.memory_hogs(8, 100) == "8 of 8 held 100 MiB"  # the attack is real
    plugin = sandboxed(memory=384 * MiB)
    assert plugin.sandbox is not None and plugin.sandbox.memory_limit == "memory cgroup"
    held = int(plugin.memory_hogs(8, 100).split()[0])
    assert held <= 3  # 384 MiB for the child's Python and its processes together
    assert plugin.add(2, 3) == 5  # the cgroup's OOM killer took the hogs, not the child


@needs_namespaces
def test_channel_growth(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    plugin = sandboxed(memory=256 * MiB)
    assert plugin.channel_fill(200) == "DONE: stored"  # within the bound: its to use
    assert plugin.channel_fill(1024) == "blocked: pwrite: Operation not permitted"  # the seal
    assert plugin.add(2, 3) == 5


@needs_namespaces
def test_memfd(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    assert sandboxed().memfd_fill(512) == "blocked: memfd_create: Operation not permitted"


@needs_namespaces
def test_sysv_shm(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    assert sandboxed().sysv_shm(512) == "blocked: shmget: Operation not permitted"


@needs_namespaces
def test_sysctl(sandboxed: Callable[..., ferrule.IsolatedPlugin]) -> None:
    plugin = sandboxed()
    for setting in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sys/kernel/randomize_va_space"):
        result = plugin.open_write(setting)
        assert result.startswith("blocked: open for writing: "), (setting, result)
        assert result.endswith(("Read-only file system", "Permission denied")), result


@needs_namespaces
def test_unix_socket(sandboxed: Callable[..., ferrule.IsolatedPlugin], attacker: Path, tmp_path: Path) -> None:
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = tmp_path / "daemon.sock"
    daemon.bind(str(path))
    daemon.listen()
    daemon.settimeout(0.3)
    try:
        with ferrule.load(attacker, isolated=True) as plain:
            assert plain.unix_connect(str(path)) == "DONE: connected"
            daemon.accept()[0].close()
        result = sandboxed(read=[tmp_path]).unix_connect(str(path))
        assert result == "blocked: socket(AF_UNIX): Address family not supported by protocol"
        with pytest.raises(TimeoutError):
            daemon.accept()
    finally:
        daemon.close()


# --------------------------------------------- attacks on ferrule.scan

_SCAN = """
import ferrule, json, sys
sandbox = {"auto": None, "on": True, "off": False}[sys.argv[2]]
result = ferrule.scan([sys.argv[1]], sandbox=sandbox, timeout=20)
with open(sys.argv[3], "w") as out:
    json.dump({"plugins": [[p.path, p.id] for p in result.plugins],
               "problems": [[p.path, p.error, p.message] for p in result.problems]}, out)
"""


def scan_elsewhere(directory: Path, sandbox: str, tmp_path: Path) -> dict[str, Any]:
    """A scan in a process of its own (the attacker writes into its pipes),
    with its own cache directory."""
    out = tmp_path / f"scan-{sandbox}.json"
    env = {**os.environ, "FERRULE_CACHE_DIR": str(tmp_path / f"cache-{sandbox}")}
    proc = subprocess.run([sys.executable, "-c", _SCAN, str(directory), sandbox, str(out), "ferrule-scan-target"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.fixture
def victim_dir(tmp_path: Path, built: Built) -> Path:
    directory = tmp_path / "plugins"
    directory.mkdir()
    shutil.copy(built.greeter, directory / "libzz_victim.so")
    return directory


def scan_attacker(directory: Path, *defines: str) -> Path:
    return compile_plugin(C_DIR / "scan_attacker.c", directory / "libaa_attacker.so", *defines)


@needs_namespaces
def test_scan_forge(victim_dir: Path, tmp_path: Path) -> None:
    victim = victim_dir / "libzz_victim.so"
    scan_attacker(victim_dir, "-DATTACK_FORGE", f'-DVICTIM="{victim}"')
    plain = scan_elsewhere(victim_dir, "off", tmp_path)
    if os.geteuid() == 0:  # the scanning process is the user's: a plain worker's library reaches it
        assert [str(victim), "ForgedError", "forged by the attacker"] in plain["problems"]
    safe = scan_elsewhere(victim_dir, "on", tmp_path)
    assert safe["plugins"] == [[str(victim), "org.ferrule.examples.greeter"]]
    (attacker_problem,) = safe["problems"]
    assert attacker_problem[0].endswith("libaa_attacker.so") and attacker_problem[1] != "ForgedError"


@needs_namespaces
def test_scan_plant(victim_dir: Path, tmp_path: Path) -> None:
    planted = tmp_path / "cache-on" / "planted"
    scan_attacker(victim_dir, "-DATTACK_CACHE", f'-DCACHE="{planted}"')
    (tmp_path / "cache-on").mkdir()
    result = scan_elsewhere(victim_dir, "on", tmp_path)
    assert [p[1] for p in result["plugins"]] == ["org.ferrule.examples.greeter"]
    assert not planted.exists()
    plain = tmp_path / "cache-off" / "planted"
    scan_attacker(victim_dir, "-DATTACK_CACHE", f'-DCACHE="{plain}"')
    (tmp_path / "cache-off").mkdir()
    scan_elsewhere(victim_dir, "off", tmp_path)
    assert plain.exists()  # the attack is real


@pytest.mark.parametrize("mode", ["on", "off"])
def test_scan_daemon(victim_dir: Path, tmp_path: Path, mode: str) -> None:
    if mode == "on" and AVAILABLE is None:
        pytest.skip(f"no namespaces here: {WHY}")
    scan_attacker(victim_dir, "-DATTACK_DAEMON")
    result = scan_elsewhere(victim_dir, mode, tmp_path)
    assert [p[1] for p in result["plugins"]] == ["org.ferrule.examples.greeter"]
    assert_nothing_remains()


def test_every_attack_has_a_test() -> None:
    names = {name.removeprefix("test_").replace("_", "-") for name in globals() if name.startswith("test_")}
    assert set(ATTACKS) <= names


def test_the_docs_threat_model_is_the_attack_suite() -> None:
    text = (Path(__file__).parent.parent / "docs" / "isolation.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (.+?) \| (.+?) \| (.+?) \|$", text, re.M)
    assert {r[0]: (r[1], r[2], r[3]) for r in rows} == ATTACKS


# ------------------------------------------------------- the sandbox itself


@needs_namespaces
def test_the_report_says_what_is_in_force(sandboxed: Callable[..., ferrule.IsolatedPlugin], tmp_path: Path) -> None:
    plugin = sandboxed(read=[tmp_path], memory=300 * MiB, cpu_time=5, processes=20)
    report = plugin.sandbox
    assert report is not None
    assert set(report.namespaces) == {"user", "pid", "mount", "network", "ipc", "uts"}
    assert report.seccomp and report.no_new_privileges and not report.network
    assert report.read == (str(tmp_path.resolve()),) and report.write == ()
    assert (report.memory, report.cpu_time, report.processes) == (300 * MiB, 5, 20)
    cgroup = launch._cgroup_parent("memory") is not None
    assert report.memory_limit == ("memory cgroup" if cgroup else "RLIMIT_AS")
    assert ("for all of the sandbox's processes together" if cgroup else "no memory cgroup is writable") in str(report)
    assert ("the host runs as root" in str(report)) == (os.geteuid() == 0)
    shared = sandboxed(network=True).sandbox
    assert shared is not None and "network" not in shared.namespaces and shared.network


@needs_namespaces
def test_host_functions_and_logging_work_in_the_sandbox(sandboxed: Callable[..., ferrule.IsolatedPlugin],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    plugin = sandboxed()
    with caplog.at_level("INFO", logger="ferrule.plugin"):
        assert plugin.greet_host(lambda x: x * 10, 4) == 40
    assert "calling the host back" in caplog.text


def test_without_bubblewrap_a_required_sandbox_fails_clearly(attacker: Path, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    launch.bwrap.cache_clear()
    try:
        with pytest.raises(ferrule.SandboxError) as info:
            ferrule.load(attacker, isolated=True, sandbox=True)
        assert info.value.missing == "namespaces"
        assert str(info.value) == (
            "the sandbox cannot give new user, pid, mount, network, IPC and UTS namespaces (bubblewrap): bubblewrap "
            "(bwrap) is not installed: install it with your system's package manager (the package is 'bubblewrap' "
            "on Debian, Ubuntu, Fedora and Arch). To load without it, allow it with Sandbox(optional={'namespaces'})")
        assert leftovers() == []  # nothing started
        # Allowed to degrade: the rest still holds.
        with ferrule.load(attacker, isolated=True, sandbox=ferrule.Sandbox(optional={"namespaces"})) as plugin:
            report = plugin.sandbox
            assert report is not None and report.missing == ("namespaces",) and report.namespaces == ()
            assert plugin.ptrace_attach(os.getpid()) == "blocked: ptrace(PTRACE_ATTACH): Operation not permitted"
            assert plugin.read_env("PATH") == "blocked: no such variable"
    finally:
        launch.bwrap.cache_clear()


@pytest.mark.parametrize(("facts", "missing"), [
    ({"seccomp": 0, "no_new_privs": 1, "seccomp_error": "libseccomp is not installed"}, "seccomp"),
    ({"seccomp": 2, "no_new_privs": 0}, "no-new-privileges"),
])
def test_a_protection_the_child_lacks_fails_the_load(facts: dict[str, Any], missing: str, attacker: Path) -> None:
    """What the child reads off its /proc decides, before the plugin loads."""
    plan = launch.prepare(ferrule.Sandbox(optional={"namespaces", "process-limit"}), str(attacker))
    try:
        with pytest.raises(ferrule.SandboxError) as info:
            plan.check({"ns": launch.facts()["ns"], **facts})
        assert info.value.missing == missing
        assert f"Sandbox(optional={{{missing!r}}})" in str(info.value)
    finally:
        plan.close()


@pytest.mark.parametrize(("policy", "message"), [
    ({"read": "/etc"}, "takes a list of paths, got a single path '/etc'"),
    ({"memory": 0}, "Sandbox(memory=...) must be a positive number of bytes"),
    ({"processes": 2}, "too few for the child's own threads"),
    ({"optional": {"seccom"}}, "names 'seccom', not a protection"),
    ({"env": {"A=B": "c"}}, "mapping of variable names"),
])
def test_policy_mistakes(policy: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        ferrule.Sandbox(**policy)


def test_load_mistakes(attacker: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("give the limits in it: Sandbox(memory=..., cpu_time=...)")):
        ferrule.load(attacker, isolated=True, sandbox=True, memory_limit=1 << 30)
    with pytest.raises(ferrule.LibraryNotFoundError, match="no plugin libattacker.so in FERRULE_PATH"):
        ferrule.load("libattacker.so", isolated=True, sandbox=True)
    with pytest.raises(TypeError, match="apply only with isolated=True"):
        ferrule.load(attacker, sandbox=True)  # type: ignore[call-overload]


@needs_namespaces
def test_the_cli_calls_in_the_sandbox(attacker: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ferrule", "call", "--sandbox", str(attacker), "read_env", "PATH"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("'blocked: no such variable'", "blocked: no such variable")
