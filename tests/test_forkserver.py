"""The fork server (src/ferrule/_isolation/forkserver.py): isolated children
after the first come from one clean, pre-imported interpreter per host, are
what a fresh child would be (session, environment, directory), and a
plugin that kills the server does not take isolation down with it."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import ferrule
from ferrule._isolation import forkserver

from .conftest import C_DIR, compile_plugin
from .test_isolated import gone

pytestmark = pytest.mark.skipif(not forkserver._PIDFDS, reason="no pidfds on this kernel: every child starts fresh")


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_plugin(C_DIR / "attacker.c", tmp_path_factory.mktemp("attacker") / "libattacker.so")


@pytest.fixture
def plugins() -> Iterator[list[ferrule.IsolatedPlugin]]:
    loaded: list[ferrule.IsolatedPlugin] = []
    yield loaded
    for plugin in loaded:
        plugin.close()


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(field)


def server_pid() -> int:
    server = forkserver._server
    assert server is not None, "no fork server is running"
    return server.proc.pid


def test_children_after_the_first_come_from_one_clean_server(attacker: Path, plugins: list[ferrule.IsolatedPlugin]) -> None:
    plugins += [ferrule.load(attacker, isolated=True), ferrule.load(attacker, isolated=True)]
    server = server_pid()
    assert server != os.getpid() and parent(server) == os.getpid()
    for plugin in plugins:
        assert plugin.pid is not None and parent(plugin.pid) == server
        assert os.getsid(plugin.pid) == plugin.pid, "each child leads a session (and process group) of its own"
        assert plugin.add(2, 3) == 5
    # The server runs no plugin code and holds no thread that a fork would lose.
    assert str(attacker) not in Path(f"/proc/{server}/maps").read_text()
    assert status(server, "Threads") == "1"
    closed = plugins.pop()
    pid = closed.pid
    assert pid is not None
    closed.close()
    assert gone(pid) and str(pid) not in Path(f"/proc/{server}/task/{server}/children").read_text().split(), \
        "the server reaps a closed child"


def test_a_child_gets_the_hosts_environment_and_directory_at_its_load(
        attacker: Path, plugins: list[ferrule.IsolatedPlugin], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugins.append(ferrule.load(attacker, isolated=True))  # the server starts with the host as it was
    server = server_pid()
    monkeypatch.setenv("FORKSERVER_TEST_VALUE", "set after the server started")
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    plugin = ferrule.load(attacker, isolated=True)
    plugins.append(plugin)
    assert plugin.pid is not None and parent(plugin.pid) == server, "the same server"
    assert plugin.read_env("FORKSERVER_TEST_VALUE") == "DONE: set after the server started"
    assert plugin.read_env("HOME") == "blocked: no such variable", "unset since the server started"
    assert os.readlink(f"/proc/{plugin.pid}/cwd") == str(tmp_path)


def test_what_a_fresh_interpreter_reads_at_its_start_starts_another_server(
        attacker: Path, plugins: list[ferrule.IsolatedPlugin], monkeypatch: pytest.MonkeyPatch) -> None:
    plugins.append(ferrule.load(attacker, isolated=True))
    first = server_pid()
    # The dynamic loader reads LD_LIBRARY_PATH once, at a process's start:
    # a server started before it was set cannot give it to its children.
    monkeypatch.setenv("LD_LIBRARY_PATH", "/nonexistent")
    plugins.append(ferrule.load(attacker, isolated=True))
    second = server_pid()
    assert second != first and plugins[1].pid is not None and parent(plugins[1].pid) == second
    assert plugins[1].read_env("LD_LIBRARY_PATH") == "DONE: /nonexistent"
    plugins.pop(0).close()
    assert gone(first), "the replaced server ends with its last child"


def test_a_plugin_that_kills_the_server_does_not_take_isolation_down(
        attacker: Path, plugins: list[ferrule.IsolatedPlugin]) -> None:
    a = ferrule.load(attacker, isolated=True)
    b = ferrule.load(attacker, isolated=True)
    plugins += [a, b]
    server = server_pid()
    assert a.signal_pid(server, 9) == "DONE: signalled", "the attack itself works: same user, no sandbox"
    assert gone(server)
    assert a.add(1, 2) == 3 and b.add(3, 4) == 7, "its children carry on"
    pid = b.pid
    assert pid is not None
    b.close()  # ended through its pidfd: the server that kept its group id is gone
    plugins.remove(b)
    assert gone(pid)
    c = ferrule.load(attacker, isolated=True)  # a new server for the next load
    plugins.append(c)
    assert server_pid() != server and c.pid is not None and parent(c.pid) == server_pid() and c.add(5, 6) == 11
    # A child of the lost server that dies is still reported as it ended.
    with pytest.raises(ferrule.PluginCrashedError, match="crashed during signal_pid"):
        a.signal_pid(a.pid or 0, 9)


def test_with_the_server_switched_off_each_child_starts_fresh(
        attacker: Path, plugins: list[ferrule.IsolatedPlugin], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRULE_FORKSERVER", "0")
    plugin = ferrule.load(attacker, isolated=True)
    plugins.append(plugin)
    assert plugin.pid is not None and parent(plugin.pid) == os.getpid() and plugin.add(2, 2) == 4


FORKED_HOST = """
import os, sys, ferrule
from ferrule._isolation import forkserver
first = ferrule.load(sys.argv[1], isolated=True)
before = forkserver._server.proc.pid
pid = os.fork()
if pid == 0:  # a fork of the host: the server is the parent's, so it starts its own
    plugin = ferrule.load(sys.argv[1], isolated=True)
    mine = forkserver._server.proc.pid
    ok = plugin.add(2, 3) == 5 and mine != before
    plugin.close()
    os._exit(0 if ok else 1)
_, code = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(code), first.add(1, 1), forkserver._server.proc.pid == before)
first.close()
"""


def test_a_fork_of_the_host_starts_its_own_server(attacker: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", FORKED_HOST, str(attacker)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["0", "2", "True"], proc.stdout


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:  # a thread that just ended
            pass
    return found


def test_loads_from_many_threads_share_one_server(attacker: Path) -> None:
    ferrule.load(attacker, isolated=True).close()
    server = server_pid()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                with ferrule.load(attacker, isolated=True) as plugin:
                    assert plugin.add(i, n) == i + n
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert server_pid() == server, "a busy server is not a lost one"
    assert children_of(server) == [], "every child was reaped (a zombie would still be listed)"


def test_a_host_with_more_than_1024_descriptors_still_watches_its_children(attacker: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        with ferrule.load(attacker, isolated=True) as plugin:  # its pidfd is past select()'s 1023
            assert plugin.add(2, 2) == 4
            pid = plugin.pid
        assert pid is not None and gone(pid)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_server_a_plugin_stopped_is_killed_not_left_behind(attacker: Path, plugins: list[ferrule.IsolatedPlugin],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkserver, "_REPLY_SECONDS", 1.0)
    a = ferrule.load(attacker, isolated=True)
    server = server_pid()
    assert a.signal_pid(server, signal.SIGSTOP) == "DONE: signalled"
    pid = a.pid
    assert pid is not None
    a.close()  # the server does not answer: the child is ended through its pidfd, the server killed
    assert gone(pid) and gone(server)
    b = ferrule.load(attacker, isolated=True)
    plugins.append(b)
    assert server_pid() != server and b.add(1, 1) == 2


def test_ctrl_c_while_a_child_is_being_ended_still_ends_it(attacker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkserver, "_REPLY_SECONDS", 30.0)
    a = ferrule.load(attacker, isolated=True)
    b = ferrule.load(attacker, isolated=True)
    server, bpid = server_pid(), b.pid
    assert bpid is not None
    a.signal_pid(server, signal.SIGSTOP)  # the end of b waits for an answer that does not come
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            b.close()
    finally:
        timer.join()
    assert gone(bpid), "interrupted, the end still killed the child"
    assert gone(server), "and the server it could not ask"
    a.close()


def test_a_path_entry_json_cannot_carry_does_not_break_the_server(attacker: Path, plugins: list[ferrule.IsolatedPlugin],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    plugins.append(ferrule.load(attacker, isolated=True))
    server = server_pid()
    monkeypatch.setattr(sys, "path", [*sys.path, Path("/nonexistent")])  # not a str: the import system skips it
    plugins.append(ferrule.load(attacker, isolated=True))
    assert server_pid() == server and plugins[1].add(1, 2) == 3


def test_a_child_gets_the_hosts_umask_limits_and_c_environment(
        attacker: Path, plugins: list[ferrule.IsolatedPlugin], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    plugins.append(ferrule.load(attacker, isolated=True))
    first = server_pid()
    old = os.umask(0o077)
    try:
        libc = ctypes.CDLL(None)
        libc.setenv(b"FORKSERVER_C_ONLY", b"set in C", 1)  # os.environ does not see it; a fresh child would
        try:
            plugin = ferrule.load(attacker, isolated=True)
            plugins.append(plugin)
        finally:
            libc.unsetenv(b"FORKSERVER_C_ONLY")
    finally:
        os.umask(old)
    assert plugin.pid is not None and parent(plugin.pid) == first
    assert status(plugin.pid, "Umask") == "0077"
    assert plugin.read_env("FORKSERVER_C_ONLY") == "DONE: set in C"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), hard))
    try:
        limited = ferrule.load(attacker, isolated=True)  # a limit changed: another server, with it
        plugins.append(limited)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert limited.pid is not None and parent(limited.pid) != first
    line = next(x for x in Path(f"/proc/{limited.pid}/limits").read_text().splitlines() if x.startswith("Max open files"))
    assert line.split()[3] == str(min(soft, 512))


def test_a_host_in_a_removed_directory_still_loads(attacker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone_dir = tmp_path / "gone"
    gone_dir.mkdir()
    monkeypatch.chdir(gone_dir)
    gone_dir.rmdir()
    with ferrule.load(attacker, isolated=True) as plugin:  # a fresh child, as a fork could not enter it
        assert plugin.add(3, 3) == 6
