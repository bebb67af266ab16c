"""Isolated mode: the same plugin behind the same API in a child process.
Crash kinds are in the corpus (test_corpus.py); this file covers what the
API promises besides: parity with in-process results and errors, shared
memory buffers, host functions, logging, restart, timeouts, cancellation,
threads, no orphans, and a host that distrusts what the child writes."""

from __future__ import annotations

import array
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferrule
from ferrule._isolation import wire
from ferrule._isolation.plugin import _rebuild
from ferrule._abi.signature import parse_signature

from .conftest import Built

np = pytest.importorskip("numpy", reason="numpy is in the test extra: run the README's install command")


@pytest.fixture(scope="module")
def iso(built: Built) -> Any:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        yield plugin


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether the process has ended (a zombie counts: it runs no code)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


# -- the same API


def test_metadata_matches_in_process(built: Built, iso: Any) -> None:
    with ferrule.load(built.hostile) as local:
        for attr in ("path", "id", "name", "version", "description", "license", "abi_version"):
            assert getattr(iso, attr) == getattr(local, attr), attr
        assert list(iso.functions) == list(local.functions)
        for name, fn in iso.functions.items():
            assert str(fn.signature) == str(local.functions[name].signature)
            assert fn.doc == local.functions[name].doc
            assert fn.__signature__ == local.functions[name].__signature__
    assert isinstance(iso, ferrule.IsolatedPlugin) and isinstance(iso.add, ferrule.IsolatedFunction)
    assert "add(a: i64, b: i64) -> i64" in repr(iso) and f"pid {iso.pid}" in repr(iso)
    assert "scale" in dir(iso)


CALLS = [
    ("add", (2, 3), {}),
    ("add", (), {"a": -7, "b": 2}),
    ("add_slow", (1 << 40, 1), {}),
    ("mix", (3, 0.5, True, 200), {}),
    ("negate", (False,), {}),
    ("halve", (0.1,), {}),
    ("reverse", ("plugin",), {}),
    ("reverse", ("",), {}),
    ("reverse_bytes", (bytearray(b"\x00\x01\xff"),), {}),
    ("sum", (array.array("d", [0.25] * 1000),), {}),
]


@pytest.mark.parametrize("name, args, kwargs", CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)])
def test_results_match_in_process(built: Built, iso: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with ferrule.load(built.hostile) as local:
        expected = local.functions[name](*args, **kwargs)
    got = iso.functions[name](*args, **kwargs)
    assert got == expected and type(got) is type(expected)


BAD_CALLS = [
    ("add", (1,), {}),
    ("add", (1, 2, 3), {}),
    ("add", (1,), {"c": 2}),
    ("add", (1, "2"), {}),
    ("add", (True, 2), {}),
    ("add", (1, 1 << 63), {}),
    ("add", (1, 1 << 80), {}),
    ("mix", (1, 1.0, True, 256), {}),
    ("mix", (1, 1.0, 1, 2), {}),
    ("halve", (1e39,), {}),
    ("reverse", ("\ud800",), {}),
    ("reverse", (b"x",), {}),
    ("sum", (array.array("f", [1.0]),), {}),
    ("scale", (b"read-only", 2), {}),
    ("apply", (42, 1), {}),
    ("fail", ("the plugin's own words",), {}),
]


@pytest.mark.parametrize("name, args, kwargs", BAD_CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_CALLS)])
def test_errors_match_in_process(built: Built, iso: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with ferrule.load(built.hostile) as local:
        with pytest.raises(Exception) as here:
            local.functions[name](*args, **kwargs)
    with pytest.raises(Exception) as there:
        iso.functions[name](*args, **kwargs)
    assert type(there.value) is type(here.value)
    assert str(there.value) == str(here.value)
    assert iso.add(1, 1) == 2


def test_plugin_message_attribute_survives_the_trip(iso: Any) -> None:
    with pytest.raises(ferrule.PluginCallError) as info:
        iso.fail("out of cheese")
    assert info.value.plugin_message == "out of cheese"


# -- buffers through shared memory


def test_buffers_cross_through_shared_memory_and_writes_come_back(iso: Any) -> None:
    data = np.arange(3_000_000, dtype=np.int32)  # 12 MB: the data area grows past its first 1 MiB
    iso.scale(data, 3)
    assert data[:3].tolist() == [0, 3, 6] and int(data[-1]) == 3 * 2_999_999
    values = np.linspace(0.0, 1.0, 2_000_001)
    assert iso.sum(values) == pytest.approx(float(values.sum()))
    small = array.array("i", [1, -2, 3])
    iso.scale(small, -1)
    assert small.tolist() == [-1, 2, -3]
    empty = array.array("i")
    iso.scale(empty, 5)
    assert iso.reverse("x" * 5_000_000) == "x" * 5_000_000
    assert iso.add(2, 2) == 4


def test_a_failing_call_still_returns_its_writes(built: Built, iso: Any) -> None:
    # In process a mutbuf is the caller's memory; isolated, the copy comes back either way.
    view = memoryview(bytearray(8)).cast("i")
    iso.scale(view, 7)
    assert view.tolist() == [0, 0]


# -- host functions, logging


def test_host_functions_run_in_the_host(iso: Any) -> None:
    seen: list[int] = []

    def double(x: int) -> int:
        seen.append(os.getpid())
        return x * 2

    assert iso.apply(double, 21) == 42
    assert seen == [os.getpid()]


def test_a_host_function_exception_is_raised_from_the_call(iso: Any) -> None:
    class Oops(Exception):
        pass

    def boom(x: int) -> int:
        raise Oops(f"no {x}")

    with pytest.raises(Oops, match="no 5"):
        iso.apply(boom, 5)
    with pytest.raises(TypeError, match=r"the result of the host function passed as apply\(\) argument 'f' must be int"):
        iso.apply(lambda x: "text", 5)
    assert iso.add(1, 2) == 3


def test_a_host_function_may_call_the_plugin_again(iso: Any) -> None:
    assert iso.apply(lambda x: iso.add(x, 100) + iso.apply(lambda y: y + 1, 1), 1) == 103


def test_plugin_log_lines_reach_the_host_logger(built: Built, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ferrule.plugin")
    with ferrule.load(built.hostile, isolated=True) as plugin:
        plugin.say(3, "careful now")
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if not r.getMessage().startswith(("stdout", "stderr"))]
    assert ("ferrule.plugin.org.ferrule.tests.hostile", logging.INFO, "hostile plugin ready") in records
    assert ("ferrule.plugin.org.ferrule.tests.hostile", logging.WARNING, "careful now") in records


# -- failures, restart, timeouts, cancellation


def test_a_crash_carries_the_signal_and_the_last_lines_and_restart_gives_a_new_process(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        first = plugin.pid
        with pytest.raises(ferrule.PluginCrashedError) as info:
            plugin.last_words("goodbye")
        error = info.value
        assert error.signal == signal.SIGSEGV and error.exit_status is None and error.status == -signal.SIGSEGV
        assert "stderr: stderr: goodbye" in error.last_lines and "log ERROR: log: going down" in error.last_lines
        assert "killed by SIGSEGV (signal 11)" in str(error) and "stderr: goodbye" in str(error)
        assert plugin.pid is None and gone(first)
        assert plugin.add(1, 2) == 3
        assert plugin.pid not in (None, first)


def test_restart_false_stays_failed(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True, restart=False) as plugin:
        with pytest.raises(ferrule.PluginCrashedError):
            plugin.exit(9)
        for _ in range(2):
            with pytest.raises(ferrule.PluginCrashedError, match="failed earlier and restart=False: load it again") as info:
                plugin.add(1, 2)
            assert info.value.exit_status == 9


def test_timeouts_per_plugin_and_per_call(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True, timeout=0.5) as plugin:
        assert plugin.call("sleep_ms", 10) is None
        start = time.monotonic()
        with pytest.raises(ferrule.PluginTimeoutError, match=r"sleep_ms\(\) timed out; ferrule ended its process") as info:
            plugin.sleep_ms(10_000)
        assert time.monotonic() - start < 5 and isinstance(info.value, TimeoutError)
        assert plugin.call("sleep_ms", 800, timeout=3) is None  # longer than the plugin's timeout
        with pytest.raises(ferrule.PluginTimeoutError):
            plugin.call("spin", timeout=0.2)
        assert plugin.add(2, 2) == 4


def test_cancel_from_another_thread(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        assert plugin.cancel() is False  # nothing running
        timer = threading.Timer(0.3, plugin.cancel)
        timer.start()
        start = time.monotonic()
        with pytest.raises(ferrule.CallCancelledError, match=r"sleep_ms\(\) was cancelled"):
            plugin.sleep_ms(20_000)
        assert time.monotonic() - start < 10
        timer.join()
        assert plugin.add(3, 4) == 7


def test_calls_from_many_threads_are_serialised(iso: Any) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(200):
            value = iso.add(k * 1000, i)
            with lock:
                results.append(value)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(k * 1000 + i for k in range(4) for i in range(200))


def test_argument_checks_of_load(built: Built) -> None:
    with pytest.raises(TypeError, match="timeout: these apply only with isolated=True"):
        ferrule.load(built.hostile, timeout=1)  # type: ignore[call-overload]
    for bad in ({"timeout": -1}, {"cpu_limit": 0}, {"memory_limit": 1.5}, {"timeout": True}):
        with pytest.raises(ValueError):
            ferrule.load(built.hostile, isolated=True, **bad)


def test_a_plugin_without_interfaces_offers_none_isolated(iso: Any) -> None:
    from tests import iface_proxies as proxies

    assert iso.interfaces == () and iso.implementations(proxies.Counter) == []
    with pytest.raises(LookupError, match="offers no implementation of org.ferrule.test.counter/1"):
        iso.create(proxies.Counter)


def test_an_isolated_instance_is_lost_with_its_process(built: Built, caplog: pytest.LogCaptureFixture) -> None:
    """Its state was in the child: after the child ends, its calls raise and
    the plugin's restart does not bring it back; a new instance works."""
    from tests import iface_proxies as proxies

    host = ferrule.PluginHost()
    plugin = host.load(built.ifaces_c, isolated=True, timeout=30)
    assert plugin in host.plugins
    assert [i.name for i in host.implementations(proxies.Counter)] == ["c-counter", "c-counter-b"]
    counter = host.create(proxies.Counter)
    assert counter is not None and counter.add(5) == 5
    pid = plugin.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ferrule.PluginCrashedError):
        counter.add(1)
    with pytest.raises(ferrule.IsolationError, match="Counter instance 'c-counter' of plugin 'org.ferrule.test.ifaces_c' "
                                                     "was lost when the plugin's process ended"):
        counter.add(1)
    again = plugin.create(proxies.Counter)  # a fresh child
    assert plugin.pid != pid and again.add(2) == 2
    counter.close()  # nothing to destroy: it went with its process
    again.close()
    plugin.close()
    assert plugin not in host.plugins


def test_an_isolated_instance_collected_unclosed_is_destroyed(built: Built, caplog: pytest.LogCaptureFixture) -> None:
    from tests import iface_proxies as proxies

    caplog.set_level(logging.INFO, logger="ferrule.plugin")
    with ferrule.PluginHost().load(built.ifaces_c, isolated=True, timeout=30) as plugin:
        counter = plugin.create(proxies.Counter, "c-counter-b")
        assert counter.add(3) == 3
        del counter
        gc.collect()
        assert plugin.query_missing() is True  # the next request destroys it first, in the child
        assert "destroy c-counter-b" in [r.getMessage() for r in caplog.records]


def test_closing_an_isolated_plugin_ends_its_instances(built: Built) -> None:
    from tests import iface_proxies as proxies

    plugin = ferrule.PluginHost().load(built.ifaces_c, isolated=True, timeout=30)
    counter = plugin.create(proxies.Counter)
    plugin.close()
    with pytest.raises(ferrule.PluginClosedError, match="plugin 'org.ferrule.test.ifaces_c' is closed"):
        counter.add(1)
    counter.close()


def test_closed_plugin_refuses_calls(built: Built) -> None:
    plugin = ferrule.load(built.hostile, isolated=True)
    pid = plugin.pid
    assert pid is not None
    plugin.close()
    plugin.close()
    assert plugin.closed and plugin.pid is None and gone(pid)
    with pytest.raises(ferrule.PluginClosedError, match="is closed: load it again"):
        plugin.add(1, 2)


# -- no orphans


def test_a_dropped_plugin_ends_its_child(built: Built) -> None:
    plugin = ferrule.load(built.hostile, isolated=True)
    pid = plugin.pid
    assert pid is not None
    del plugin
    gc.collect()
    assert gone(pid)


HOST = """
import sys, time, ferrule
plugin = ferrule.load(sys.argv[1], isolated=True)
print(plugin.pid, flush=True)
if sys.argv[2] == "wait":
    time.sleep(120)
"""


@pytest.mark.parametrize("how", ["killed", "exits"])
def test_the_child_never_outlives_the_host(built: Built, how: str) -> None:
    host = subprocess.Popen([sys.executable, "-c", HOST, str(built.hostile), "wait" if how == "killed" else "exit"],
                            stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    child = int(host.stdout.readline())
    if how == "killed":
        assert not gone(child, within=0.2)
        host.kill()  # SIGKILL: no atexit, no finalizers; only the lifeline closes
    host.wait(30)
    assert gone(child), f"child {child} outlived its host ({how})"


SPINNING_HOST = """
import sys, threading, time, ferrule
plugin = ferrule.load(sys.argv[1], isolated=True)
print(plugin.pid, flush=True)
threading.Thread(target=plugin.spin, daemon=True).start()
time.sleep(120)
"""


def test_a_child_that_holds_its_gil_forever_still_dies_with_the_host(built: Built) -> None:
    host = subprocess.Popen([sys.executable, "-c", SPINNING_HOST, str(built.hostile)], stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    child = int(host.stdout.readline())
    time.sleep(0.5)  # the child is now inside spin(), a QUICK function: it keeps the GIL
    host.kill()
    host.wait(30)
    assert gone(child), "the lifeline watcher must not need the child's GIL"


# -- the host distrusts what the child writes (fuzzing the wire parsers)


SIGNATURES = ["() -> i64", "() -> u8", "() -> bool", "() -> f32", "() -> str", "() -> bytes", "()",
              "(a: str, b: bytes, c: i32)", "(a: buf[f64], b: u64)"]


@pytest.mark.fuzz
@given(sig=st.sampled_from(SIGNATURES), payload=st.binary(max_size=256), base=st.integers(0, 1 << 64 - 1),
       length=st.integers(0, 1 << 64 - 1))
def test_fuzz_results_and_arguments_from_the_child(sig: str, payload: bytes, base: int, length: int) -> None:
    area = _area()
    area.data[: len(payload)] = payload
    codec = wire.Codec(parse_signature(sig))
    for b, n in ((base, length), (0, len(payload)), (base % 64, length % 300)):
        try:
            codec.read_result(area, b, n)
        except wire.WireError:
            pass
        try:
            codec.read_args(area, b, n, copy=True)
        except wire.WireError:
            pass


@pytest.mark.fuzz
@given(payload=st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["class", "message", "plugin_message", "plugin_version", "host_version", "functions", "id", "path",
         "abi_version", "interfaces", "name", "version", "description", "license"]) | st.text(max_size=5), inner, max_size=6),
    max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_fuzz_error_reports_and_descriptions_from_the_child(payload: bytes) -> None:
    area = _area()
    area.data[: len(payload)] = payload
    try:
        value = area.read_json(0, len(payload))
    except wire.WireError:
        return
    try:
        error = _rebuild(value)
    except wire.WireError:
        pass
    else:
        assert isinstance(error, BaseException) and str(error) == value["message"]
    shell = ferrule.IsolatedPlugin.__new__(ferrule.IsolatedPlugin)
    try:
        shell._describe(value)
    except wire.WireError:
        pass


_AREAS: list[wire.Area] = []


def _area() -> wire.Area:
    if not _AREAS:
        _AREAS.append(wire.Area.create())
    return _AREAS[0]


# -- what the review of isolated mode found


def test_a_child_cannot_shrink_the_shared_memory_under_the_host(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        assert plugin.shrink_memfds() >= 1  # sealed: the kernel refuses
        assert plugin.reverse("x" * 2_000_000) == "x" * 2_000_000  # a host still alive to check it


def test_host_function_calls_do_not_grow_the_shared_memory(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        assert plugin.count_if(lambda i: i % 3 == 0, 100_000) == 33_334
        child = plugin._child
        assert child is not None and child.area.size == wire.INITIAL_DATA


def test_an_interrupted_call_never_hands_its_answer_to_the_next(built: Built) -> None:
    class Interrupt(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Interrupt

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        with ferrule.load(built.hostile, isolated=True) as plugin:
            first = plugin.pid
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(Interrupt):
                plugin.sleep_ms(3000)
            assert gone(first)  # its answer would have been the next call's
            assert plugin.add(2, 3) == 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_cancel_racing_the_end_of_a_call_is_never_a_crash(built: Built) -> None:
    outcomes: dict[str, int] = {}
    with ferrule.load(built.hostile, isolated=True, restart=False) as plugin:
        for i in range(40):
            timer = threading.Timer(0.002 * (i % 8), plugin.cancel)
            timer.start()
            try:
                plugin.sleep_ms(8)
                outcome = "returned"
            except ferrule.CallCancelledError:
                outcome = "cancelled"
            timer.join()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            assert plugin.add(1, 1) == 2  # restart=False, yet a cancel is no failure
    assert sum(outcomes.values()) == 40, outcomes


def test_a_host_function_raising_an_isolation_error_leaves_its_caller_healthy(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as a, ferrule.load(built.hostile, isolated=True) as b:
        pid = a.pid
        with pytest.raises(ferrule.PluginCrashedError, match=r"crashed during segfault\(\)"):
            a.apply(lambda x: b.segfault() or x, 1)
        assert a.pid == pid and a.add(1, 2) == 3  # b crashed, not a
        assert b.add(1, 2) == 3


def test_a_restart_refuses_a_file_that_became_another_plugin(built: Built, tmp_path: Path) -> None:
    path = tmp_path / "libswapped.so"
    path.write_bytes(built.hostile.read_bytes())
    with ferrule.load(path, isolated=True) as plugin:
        with pytest.raises(ferrule.PluginCrashedError):
            plugin.segfault()
        path.unlink()
        path.write_bytes(built.calc.read_bytes())
        # Refused before it runs: another inode at the path (a spec that differs is refused after, too).
        with pytest.raises(ferrule.IsolationError, match="is no longer the file that was loaded"):
            plugin.add(1, 2)


def test_close_from_inside_a_host_function_is_refused(iso: Any) -> None:
    with pytest.raises(ferrule.PluginClosedError, match=r"close\(\) from inside one of its calls"):
        iso.apply(lambda x: iso.close() or x, 1)
    assert not iso.closed and iso.add(1, 1) == 2


# -- isolated mode without ferrule's C code (no compiler, or FERRULE_PURE_PYTHON)

ISOLATED_SCRIPT = """
import os, sys, ferrule
from ferrule._call import accelerator
from ferrule._isolation import channel
if sys.argv[2] == "c-child":
    del os.environ["FERRULE_PURE_PYTHON"]  # this host is pure; its child is not
plugin = ferrule.load(sys.argv[1], isolated=True, timeout=20)
maps = open(f"/proc/{plugin.pid}/maps").read()
child = "c" if "_channel" in maps else "cffi"
print(channel.IMPLEMENTATION, child, accelerator.speedups is None, "_speedups" in maps)
print(plugin.add(2, 3), plugin.apply(lambda x: x * 10, 4), plugin.reverse("abc"))
try:
    plugin.segfault()
except ferrule.PluginCrashedError as exc:
    print("crashed", exc.signal)
print(plugin.add(1, 1))
plugin.close()
"""


@pytest.mark.parametrize("mode", ["pure", "c-child", "cffi-child"])
def test_isolated_mode_runs_without_ferrules_c_code(built: Built, mode: str) -> None:
    # pure: no C extension of ferrule in host or child, as on an install without
    # a compiler. The other two mix the channel's C and cffi implementations.
    env = dict(os.environ)
    env.pop("FERRULE_PURE_PYTHON", None)
    code = ISOLATED_SCRIPT
    if mode != "cffi-child":
        env["FERRULE_PURE_PYTHON"] = "1"
    else:  # a C host whose child starts pure
        code = code.replace("plugin = ferrule.load", "os.environ['FERRULE_PURE_PYTHON'] = '1'\nplugin = ferrule.load")
    proc = subprocess.run([sys.executable, "-c", code, str(built.hostile), mode], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    host, child = {"pure": ("cffi", "cffi"), "c-child": ("cffi", "c"), "cffi-child": ("c", "cffi")}[mode]
    assert lines[0].split() == [host, child, str(mode != "cffi-child"), str(child == "c")]
    assert lines[1:] == ["5 40 cba", f"crashed {signal.SIGSEGV}", "2"]


def test_the_channel_head_has_one_layout() -> None:
    from ferrule._isolation import channel, protocol

    if channel._native is None:
        pytest.skip("the C channel is not built (FERRULE_PURE_PYTHON, or no compiler): only the cffi one runs")
    assert channel._native.HEAD_LAYOUT == protocol.HEAD_FIELDS


PING_PONG = """
import mmap, os, sys
from ferrule._isolation import channel as module
from ferrule._isolation.channel import Channel
host_native, child_native, rounds = sys.argv[1] == "c", sys.argv[2] == "c", int(sys.argv[3])
if sys.argv[4:] == ["fenced"]:
    module._IN_ORDER = False  # the path of CPUs that reorder stores, run here too
fd = os.memfd_create("ping-pong")
os.ftruncate(fd, mmap.PAGESIZE)
pid = os.fork()
channel = Channel(mmap.mmap(fd, mmap.PAGESIZE), native=child_native if pid == 0 else host_native)
inbox, outbox = (0, 1) if pid == 0 else (1, 0)
seen = 0
for i in range(rounds):
    if pid != 0:
        channel.send(outbox, 4, i, i, 2 * i, 3 * i)
    got = None
    while got is None:
        got = channel.wait(inbox, seen, 20_000, 1_000_000_000)
    seen, kind, arg, base, length, size = got
    if (kind, arg, base, length, size) != (5 if pid != 0 else 4, i, i, 2 * i, 3 * i):
        print("round", i, "got", got, flush=True)
        os._exit(1)
    if pid == 0:
        channel.send(outbox, 5, i, i, 2 * i, 3 * i)
if pid == 0:
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("ok" if status == 0 else "child failed")
"""


@pytest.mark.parametrize("sides", ["cffi-cffi", "c-cffi", "cffi-c", "c-c", "cffi-cffi-fenced"])
def test_the_channel_never_shows_a_half_written_head(sides: str) -> None:
    # Thousands of round trips, every head checked: a torn read of a sequence
    # word (what struct.pack_into's zeroing caused) shows here within seconds.
    from ferrule._isolation import channel

    host, child, *fenced = sides.split("-")
    if "c" in (host, child) and channel._native is None:
        pytest.skip("the C channel is not built (FERRULE_PURE_PYTHON, or no compiler): only the cffi one runs")
    proc = subprocess.run([sys.executable, "-c", PING_PONG, host, child, "30000", *fenced], capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stdout + proc.stderr


INTERRUPTED = """
import signal, sys, threading, time, ferrule
plugin = ferrule.load(sys.argv[1], isolated=True, timeout=20)
started = threading.Event()

def slow(x):
    started.set()
    time.sleep(0.6)
    return x

holder = threading.Thread(target=lambda: plugin.apply(slow, 1))
holder.start()
started.wait()
signal.setitimer(signal.ITIMER_REAL, 0.2)  # SIGALRM while this thread waits for the call in flight
signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
try:
    plugin.add(1, 2)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
holder.join()
print(plugin.add(2, 3))  # nothing left held: the next call and close() go through
plugin.close()
print("closed")
"""


@pytest.mark.parametrize("pure", [False, True], ids=["c-gate", "cffi-gate"])
def test_an_interrupted_wait_for_an_isolated_call_leaves_nothing_held(built: Built, pure: bool) -> None:
    env = dict(os.environ)
    env.pop("FERRULE_PURE_PYTHON", None)
    if pure:
        env["FERRULE_PURE_PYTHON"] = "1"
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED, str(built.hostile)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.stdout.split() == ["interrupted", "5", "closed"], proc.stdout + proc.stderr


def test_an_isolated_host_hears_of_a_missing_accelerator(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    # The child runs the plugin's calls on the cffi path then too; it stays
    # quiet, so the host must say it (only the channel could be built: it
    # needs no header).
    from ferrule._call import accelerator

    monkeypatch.setattr(accelerator, "missing", "ferrule._call._speedups was not built (test)")
    monkeypatch.setattr(accelerator, "_warned", set())
    with pytest.warns(ferrule.AcceleratorWarning, match=r"_speedups was not built \(test\).*isolated child too"):
        with ferrule.load(built.greeter, isolated=True, timeout=30) as plugin:
            assert plugin.add(1, 2) == 3


def test_a_child_that_announces_a_huge_data_area_is_refused_before_the_host_maps_it(tmp_path: Path) -> None:
    """The child grows the memfd sparsely (RLIMIT_AS does not count it) and
    forges the size in the channel head: the host refuses any size beyond
    memory_limit, before it maps or copies anything."""
    from .conftest import C_DIR, compile_plugin
    path = compile_plugin(C_DIR / "forge.c", tmp_path / "libforge.so", "-lpthread")
    limit = 512 << 20
    plugin = ferrule.load(path, isolated=True, memory_limit=limit)
    try:
        with pytest.raises(ferrule.IsolationError) as info:
            for _ in range(50):  # the forging thread races the child's own head; it wins within a call or two
                plugin.forge(8 << 30)
        assert type(info.value) is ferrule.IsolationError
        assert (f"it announced a data area of {8 << 30} bytes, more than the {limit} bytes the host maps for it"
                in str(info.value))
    finally:
        plugin.close()


def test_deeply_nested_json_from_the_child_is_a_wire_error() -> None:
    area = wire.Area.create()
    try:
        data = b"[" * 200_000 + b"]" * 200_000
        area.ensure(len(data))
        area.data[: len(data)] = data
        with pytest.raises(wire.WireError, match="nested too deeply"):
            area.read_json(0, len(data))
    finally:
        os.close(area.fd)  # the mappings go with the object


def test_a_restart_runs_the_file_that_was_loaded(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative path is resolved once: after os.chdir a restart must not
    load another file of the same name. A file replaced in place is not
    restarted at all, before any of it runs."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "libp.so").write_bytes(built.hostile.read_bytes())
    (second / "libp.so").write_bytes(built.fixture.read_bytes())  # another plugin, same relative name
    monkeypatch.chdir(first)
    plugin = ferrule.load(os.path.join(".", "libp.so"), isolated=True)
    try:
        assert plugin.path == str(first / "libp.so")
        monkeypatch.chdir(second)
        with pytest.raises(ferrule.PluginCrashedError):
            plugin.segfault()
        assert plugin.add(2, 3) == 5 and plugin.id == "org.ferrule.tests.hostile"  # restarted from first/
        os.replace(second / "libp.so", first / "libp.so")
        with pytest.raises(ferrule.PluginCrashedError):
            plugin.segfault()
        with pytest.raises(ferrule.IsolationError, match="is no longer the file that was loaded"):
            plugin.add(2, 3)
    finally:
        plugin.close()


def _mapped_bytes(inode: int) -> int:
    """Bytes of the memfd with this inode that this process maps."""
    total = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[4] == str(inode) and "memfd:ferrule-isolated" in line:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                total += end - start
    return total


def test_close_unmaps_the_shared_area_at_once(built: Built) -> None:
    plugin = ferrule.load(built.hostile, isolated=True)
    assert plugin._child is not None
    inode = plugin._child.area.inode
    data = array.array("d", bytes(64 << 20))  # a 64 MiB argument grows the area
    assert plugin.sum(data) == 0.0
    assert _mapped_bytes(inode) >= 64 << 20
    plugin.close()
    assert _mapped_bytes(inode) <= 1 << 16  # the control page may stay until collected


EMFILE = """
import resource, sys, ferrule
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
plugins = []
try:
    for _ in range(100):
        plugins.append(ferrule.load(sys.argv[1], isolated=True))
except ferrule.IsolationError as exc:
    print("refused:", exc)
for plugin in plugins:
    plugin.close()
print("then:", ferrule.load(sys.argv[1], isolated=True).add(2, 3))
"""


def test_running_out_of_file_descriptors_is_a_clear_error_that_leaks_none(built: Built) -> None:
    proc = subprocess.run([sys.executable, "-c", EMFILE, str(built.fixture)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    refused, then = proc.stdout.splitlines()
    assert refused.startswith("refused: cannot start an isolated plugin's process: this process has no file "
                              "descriptors left (EMFILE; this process may open 64)")
    assert "ulimit -n" in refused
    assert then == "then: 5"  # the failed start left nothing open


def test_arguments_beyond_the_memory_limit_are_refused_before_they_are_sent(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True, memory_limit=256 << 20) as plugin:
        pid = plugin.pid
        with pytest.raises(ferrule.IsolationError, match=r"the arguments of sum\(\) take \d+ bytes of shared memory, "
                                                         r"more than the 268435456 the child may map"):
            plugin.sum(array.array("d", bytes(300 << 20)))
        assert plugin.add(2, 3) == 5 and plugin.pid == pid  # nothing was sent: the same child carries on
        assert plugin.sum(array.array("d", [1.0] * 1000)) == 1000.0


_INTERRUPTED_LOADS = """
import json, os, random, signal, sys, threading, time
import ferrule

path, sandbox, rounds = sys.argv[1], sys.argv[2] == "on", int(sys.argv[3])

from ferrule._isolation import forkserver

def children(pid="self"):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += f.read().split()
        except OSError:  # a thread that just ended
            pass
    # The fork server stays (it serves the next load); what it forked must not.
    server = forkserver._server
    if pid == "self" and server is not None and str(server.proc.pid) in found:
        found.remove(str(server.proc.pid))
        found += children(server.proc.pid)
    return found

def fds():
    return sorted(os.listdir("/proc/self/fd"))

ferrule.load(path, isolated=True, sandbox=sandbox or None).close()  # (the first also starts the fork server)
start = time.monotonic()
ferrule.load(path, isolated=True, sandbox=sandbox or None).close()
span = time.monotonic() - start  # how long one load takes: interrupts land all over it
base = len(fds())
report = {"in_load": 0, "after": 0, "leaks": []}
for i in range(rounds):
    delay = random.uniform(0, span * 1.2)
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    plugin = None
    loading = False
    try:
        timer.start()  # (a short delay may interrupt this already)
        loading = True
        plugin = ferrule.load(path, isolated=True, sandbox=sandbox or None)
        time.sleep(span)
    except KeyboardInterrupt:
        if loading:
            report["in_load" if plugin is None else "after"] += 1
    while timer.is_alive():  # a load quicker than the one measured: the interrupt may land after the try
        try:
            timer.join()
        except KeyboardInterrupt:
            report["after"] += 1
    if plugin is not None:
        plugin.close()
    deadline = time.monotonic() + 5  # the output readers finish once the child is gone
    while (children() or len(fds()) > base) and time.monotonic() < deadline:
        time.sleep(0.01)
    if children() or len(fds()) > base:
        report["leaks"].append([i, round(delay, 3), children(), len(fds()) - base])
print(json.dumps(report))
"""


@pytest.mark.parametrize("mode", ["off", "on"])
def test_ctrl_c_at_any_moment_of_a_load_leaves_nothing(built: Built, mode: str) -> None:
    """SIGINT timed all over an isolated (or sandboxed) load, in a process of
    its own: no child, zombie or descriptor outlives the interrupted load,
    without waiting for the garbage collector."""
    if mode == "on":
        from ferrule._sandbox import launch

        if launch.bwrap()[0] is None:
            pytest.skip(f"no sandbox here: {launch.bwrap()[1]}")
    proc = subprocess.run([sys.executable, "-c", _INTERRUPTED_LOADS, str(built.greeter), mode, "25"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["leaks"] == []
    assert report["in_load"] >= 5, report  # the interrupts did land inside loads


def test_a_create_that_queries_its_own_interface_is_not_lent_itself(built: Built, capfd: pytest.CaptureFixture[str],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The parity relay's create asks the host for ParityValues, which the
    relay itself implements: with no service provided, the create fails
    once, with its own message, instead of recursing through the host."""
    from tests import parity_api as api

    for isolated in (False, True):
        host = ferrule.PluginHost()
        plugin = host.load(built.parity, isolated=isolated)  # type: ignore[call-overload]
        with pytest.raises(ferrule.PluginCallError) as info:
            plugin.create(api.ParityValues, "relay")
        assert str(info.value) == ("plugin 'org.ferrule.tests.parity' could not create ParityValues 'relay': the host "
                                   "provides no ParityValues service")
        plugin.close()
    assert "Exception ignored" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class _BigService:
    """ParityValues whose echo_bytes answers "big" with more than the child may map."""

    def __getattr__(self, name: str) -> Any:
        from tests.test_parity import ParityService

        return getattr(ParityService(), name)

    def echo_bytes(self, data: bytes) -> bytes:
        return b"x" * (300 << 20) if data == b"big" else data


def test_a_service_result_beyond_the_childs_bound_fails_that_call_only(built: Built) -> None:
    from tests import parity_api as api

    host = ferrule.PluginHost()
    host.provide(api.ParityValues, _BigService())
    plugin = host.load(built.parity, isolated=True, memory_limit=256 << 20, timeout=30)
    relay = plugin.create(api.ParityValues, "relay")
    pid = plugin.pid
    with pytest.raises(ferrule.PluginCallError, match=r"host->call: the result takes \d+ bytes of shared memory, more "
                                                      r"than the 268435456 the isolated plugin may map"):
        relay.echo_bytes(b"big")
    assert plugin.pid == pid and relay.echo_bytes(b"ok") == b"ok"  # the child, and the instance, carry on
    plugin.close()


def test_an_isolated_plugin_that_used_a_service_is_collected(built: Built) -> None:
    from tests import parity_api as api
    from tests.test_parity import ParityService

    host = ferrule.PluginHost()
    host.provide(api.ParityValues, ParityService())
    plugin = host.load(built.parity, isolated=True, timeout=30)
    relay = plugin.create(api.ParityValues, "relay")
    assert relay.add(2, 3) == 5
    pid, ref = plugin.pid, weakref.ref(plugin)
    relay.close()
    del relay, plugin, host
    gc.collect()
    assert ref() is None
    assert pid is not None and gone(pid)


def test_a_fork_of_the_host_leaves_the_isolated_child_alone(built: Built) -> None:
    """A forked copy of the host inherits the IsolatedPlugin object: it may
    not call the child (the answers would go astray), and closing it or
    exiting (its finalizers run) must not end the host's child."""
    script = f"""
import os, sys, ferrule
plugin = ferrule.load({str(built.greeter)!r}, isolated=True)
child = plugin.pid
assert plugin.add(1, 2) == 3
pid = os.fork()
if pid == 0:
    try:
        plugin.add(1, 2)
        sys.exit(1)
    except ferrule.IsolationError as exc:
        assert "this is a fork of it" in str(exc), exc
    if sys.argv[1] == "close":
        plugin.close()
    sys.exit(0)  # a normal exit: the finalizers run
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert plugin.pid == child and plugin.add(2, 3) == 5
print("ok")
"""
    for how in ("close", "exit"):
        proc = subprocess.run([sys.executable, "-c", script, how], capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stdout.strip()) == (0, "ok"), proc.stderr[-2000:]
