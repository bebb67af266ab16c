"""The fast call layer: both call paths agree, typed buffers are zero-copy
and checked, owned results are released by their rule, the GIL is released,
and host functions can be called from plugins (Rust and C)."""

from __future__ import annotations

import array
import ctypes
import gc
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import ferrule
from ferrule._call import accelerator

from .conftest import Built

pytestmark = pytest.mark.usefixtures("call_path")

ELEMENTS = {
    "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
    "u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64,
    "f32": np.float32, "f64": np.float64,
}
ARRAY_CODES = {"i8": "b", "i16": "h", "i32": "i", "i64": "q", "u8": "B", "u16": "H", "u32": "I", "u64": "Q",
               "f32": "f", "f64": "d"}


@pytest.fixture()
def kitchen(built: Built) -> Iterator[ferrule.Plugin]:
    with ferrule.load(built.kitchen, config="ok") as plugin:
        yield plugin


@pytest.fixture()
def cdata(built: Built) -> Iterator[ferrule.Plugin]:
    with ferrule.load(built.cdata) as plugin:
        yield plugin


def test_the_path_under_test_is_the_one_taken(kitchen: ferrule.Plugin, call_path: str) -> None:
    assert getattr(kitchen.add, "accelerated", False) is (call_path == "c")
    assert kitchen.add(2, 3) == 5


def test_accelerator_is_built_by_the_install() -> None:
    if os.environ.get("FERRULE_PURE_PYTHON"):
        pytest.skip("FERRULE_PURE_PYTHON is set: the C accelerator is disabled on purpose")
    assert accelerator.speedups is not None, "pip install did not build ferrule._call._speedups"


def test_errors_raised_by_the_checks(kitchen: ferrule.Plugin) -> None:
    # The messages the table above compares, pinned once.
    with pytest.raises(TypeError, match=r"add\(\) argument 'a' must be int \(i64\), got bool"):
        kitchen.add(True, 0)
    with pytest.raises(ValueError, match=r"echo_u8\(\) argument 'value' is out of range|256 is out of range for u8"):
        kitchen.echo_u8(256)


# ---------------------------------------------------------------- buffers

@pytest.mark.parametrize("elem", [e for e in ELEMENTS if e != "u8"])
def test_every_element_type_reaches_the_plugin(kitchen: ferrule.Plugin, elem: str) -> None:
    data = np.array([1, 2, 3, 100], dtype=ELEMENTS[elem])
    total = float(data.astype(np.float64).sum())
    sum_fn = kitchen.functions[f"sum_{elem}"]
    assert str(sum_fn.signature) == f"(data: buf[{elem}]) -> f64"
    assert sum_fn(data) == total
    assert sum_fn(array.array(ARRAY_CODES[elem], [1, 2, 3, 100])) == total
    assert sum_fn(memoryview(data)) == total
    assert sum_fn(np.array([], dtype=ELEMENTS[elem])) == 0.0
    other = "f64" if elem != "f64" else "i64"
    with pytest.raises(TypeError, match=rf"sum_{elem}\(\) argument 'data' has elements of format .* buf\[{elem}\] needs {elem}"):
        sum_fn(np.ones(3, dtype=ELEMENTS[other]))


@pytest.mark.parametrize("elem", list(ELEMENTS))
def test_writable_buffers_are_written_in_place(kitchen: ferrule.Plugin, elem: str) -> None:
    data = np.array([1, 2, 3], dtype=ELEMENTS[elem])
    double = kitchen.functions[f"double_{elem}"]
    assert str(double.signature) == f"(data: mutbuf[{elem}])"
    assert double(data) is None
    assert data.tolist() == [2, 4, 6]
    arr = array.array(ARRAY_CODES[elem], [5])
    double(arr)
    assert arr.tolist() == [10]
    with pytest.raises(TypeError, match=rf"double_{elem}\(\) argument 'data' is a read-only ndarray, mutbuf\[{elem}\] needs a writable buffer"):
        frozen = np.ones(2, dtype=ELEMENTS[elem])
        frozen.flags.writeable = False
        double(frozen)


def test_read_only_bytes_refused_by_a_writable_parameter(kitchen: ferrule.Plugin) -> None:
    with pytest.raises(TypeError, match=r"double_u8\(\) argument 'data' is a read-only bytes, mutbuf\[u8\] needs a writable buffer"):
        kitchen.double_u8(b"abc")
    out = bytearray(b"\x01\x02")
    kitchen.double_u8(out)
    assert out == bytearray(b"\x02\x04")


def test_non_contiguous_and_non_buffers_are_refused(kitchen: ferrule.Plugin) -> None:
    with pytest.raises(ValueError, match=r"sum_f64\(\) argument 'data' is not C-contiguous .*numpy.ascontiguousarray"):
        kitchen.sum_f64(np.arange(10.0)[::2])
    with pytest.raises(ValueError, match=r"not C-contiguous"):
        kitchen.sum_f64(np.asfortranarray(np.ones((3, 4))))
    with pytest.raises(TypeError, match=r"sum_f64\(\) argument 'data' must be a buffer of f64 \(buf\[f64\]\).*got list"):
        kitchen.sum_f64([1.0, 2.0])
    with pytest.raises(TypeError, match=r"format '>d'"):
        kitchen.sum_f64(np.arange(3.0).astype(">f8"))
    # A C-contiguous 2-D array is one run of elements.
    assert kitchen.sum_i64(np.arange(6, dtype=np.int64).reshape(2, 3)) == 15.0


def test_the_plugin_sees_the_callers_own_memory(kitchen: ferrule.Plugin, cdata: ferrule.Plugin) -> None:
    data = np.arange(1000.0)
    assert kitchen.addr_f64(data) == data.ctypes.data
    assert kitchen.addr_f64(data[10:]) == data.ctypes.data + 80
    block = bytearray(64)
    address = ctypes.addressof((ctypes.c_char * 64).from_buffer(block))
    assert kitchen.addr_u8(block) == address
    assert cdata.addr(block) == address
    raw = b"immutable bytes are passed without a copy too"
    assert kitchen.addr_bytes(raw) == cdata.addr(raw)
    assert kitchen.addr_bytes(raw) == kitchen.addr_bytes(raw)


def test_a_large_sum_allocates_nothing_proportional(kitchen: ferrule.Plugin, cdata: ferrule.Plugin) -> None:
    data = np.ones(10_000_000)  # 80 MB
    for fn in (kitchen.sum_f64, cdata.sum):
        fn(data)  # warm
        tracemalloc.start()
        try:
            assert fn(data) == 10_000_000.0
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024, f"{fn.name} allocated {peak} bytes for an 80 MB input"


def test_misaligned_buffers_are_refused(kitchen: ferrule.Plugin, cdata: ferrule.Plugin) -> None:
    raw = bytearray(8 * 4 + 1)
    shifted = np.frombuffer(raw, dtype=np.float64, count=4, offset=1)
    for fn in (kitchen.sum_f64, cdata.sum):
        with pytest.raises(ValueError, match=rf"{fn.name}\(\) argument 'data' is not aligned for f64 .*pass a copy"):
            fn(shifted)
        assert fn(shifted.copy()) == 0.0


def test_c_plugin_fills_a_caller_buffer(cdata: ferrule.Plugin) -> None:
    out = np.zeros(5)
    cdata.fill(out, 0.5)
    assert out.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert cdata.sum(out) == 5.0


# ---------------------------------------------------------------- outputs

def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_owned_results_are_released_by_their_rule(cdata: ferrule.Plugin) -> None:
    assert cdata.live() == 0
    assert cdata.make(30) == b"abcdefghijklmnopqrstuvwxyzabcd"
    assert cdata.make_text(3) == "abc"
    assert cdata.make(0) == b""
    assert cdata.live() == 0
    for _ in range(1000):
        cdata.make(100)
    assert cdata.live() == 0


def test_a_hundred_thousand_results_leave_rss_flat(kitchen: ferrule.Plugin, cdata: ferrule.Plugin) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads RSS from /proc")
    for fn in (kitchen.make_text, cdata.make_text):
        for _ in range(10_000):  # warm the allocators
            fn(1000)
        gc.collect()
        before = rss_bytes()
        for _ in range(100_000):
            assert len(fn(1000)) == 1000
        gc.collect()
        grown = rss_bytes() - before
        # A leak of one 1000-byte result per call would be 100 MB.
        assert grown < 8 * 1024 * 1024, f"{fn.name}: RSS grew by {grown} bytes over 100k calls"
    assert cdata.live() == 0


# ---------------------------------------------------------------- threads

def test_two_threads_run_a_plugin_function_in_parallel(kitchen: ferrule.Plugin) -> None:
    # Two calls of a thread-safe function are in flight at once: their time
    # spans overlap. Held by the GIL they would run one after the other.
    # Spans, not speed-up: a loaded machine shares its CPUs but still overlaps.
    n = 20_000_000
    kitchen.spin(n // 10)
    barrier = threading.Barrier(2)
    spans: list[tuple[float, float]] = []

    def worker() -> None:
        barrier.wait()
        start = time.perf_counter()
        kitchen.spin(n)
        spans.append((start, time.perf_counter()))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = spans
    overlap = min(a1, b1) - max(a0, b0)
    shorter = min(a1 - a0, b1 - b0)
    assert overlap > 0.5 * shorter, f"calls {spans} overlap {overlap:.3f}s of {shorter:.3f}s"


def test_results_are_released_under_the_serial_lock(cdata: ferrule.Plugin) -> None:
    # release is plugin code: for a function that is not thread-safe it must
    # not overlap another call into the instance.
    def worker() -> None:
        for _ in range(3000):
            assert cdata.serial_make(8) == b"abcdefgh"

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cdata.overlaps() == 0
    assert cdata.live() == 0


def test_quick_functions_still_serialise_when_not_thread_safe(cdata: ferrule.Plugin) -> None:
    assert cdata.quick_add.quick and cdata.quick_add.thread_safe
    assert cdata.serial_quick_add.quick and not cdata.serial_quick_add.thread_safe
    results: list[int] = []

    def worker() -> None:
        results.extend(cdata.serial_quick_add(i, 1) for i in range(2000))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(list(range(1, 2001)) * 4)


# ---------------------------------------------------------------- host functions

def test_plugins_call_host_functions(kitchen: ferrule.Plugin, cdata: ferrule.Plugin) -> None:
    assert str(kitchen.functions["apply"].signature) == "(f: fn(i64) -> i64, x: i64) -> i64"
    assert kitchen.apply(lambda x: x * 2, 21) == 42
    assert kitchen.apply_sum(lambda x: x + 1, 100) == sum(range(1, 101))
    assert kitchen.apply_text(lambda s: s.upper(), "hé") == "HÉ!"
    assert kitchen.apply_f64(lambda a, b: a / b, 1.0, 4.0) == 0.25
    seen: list[int] = []
    assert kitchen.call_none(lambda: seen.append(1)) is None
    assert seen == [1]
    assert cdata.apply(lambda x: -x, 5) == -5
    assert cdata.shout(lambda s: s + ", world", "hello") == "HELLO, WORLD"


def test_an_exception_in_a_host_function_is_raised_by_the_call(kitchen: ferrule.Plugin, cdata: ferrule.Plugin) -> None:
    class Boom(Exception):
        pass

    def explode(x: int) -> int:
        raise Boom(f"no {x}")

    for fn in (kitchen.apply, cdata.apply):
        with pytest.raises(Boom, match="no 3"):
            fn(explode, 3)
    calls: list[int] = []

    def once(x: int) -> int:
        calls.append(x)
        raise Boom("first")

    with pytest.raises(Boom, match="first"):
        kitchen.apply_sum(once, 50)
    assert calls == [0]  # the plugin stops at the first failure
    with pytest.raises(TypeError, match=r"the result of the host function passed as apply\(\) argument 'f' must be int \(i64\), got str"):
        kitchen.apply(lambda x: "text", 1)
    with pytest.raises(TypeError, match=r"apply\(\) argument 'f' must be callable \(fn\(i64\) -> i64\), got int"):
        kitchen.apply(5, 1)
    assert kitchen.apply(lambda x: x, 9) == 9  # the host is still usable


def test_a_handle_kept_past_its_call_is_refused(cdata: ferrule.Plugin) -> None:
    cdata.keep(lambda x: x + 1000)
    with pytest.raises(ferrule.PluginCallError, match="the kept handle was refused"):
        cdata.use_kept(lambda x: -x)


def test_a_refused_call_leaves_no_host_function_behind(built: Built) -> None:
    plugin = ferrule.load(built.kitchen, config="ok")
    with pytest.raises(TypeError):
        plugin.apply(lambda x: x, "not an int")
    plugin.close()
    with pytest.raises(ferrule.PluginClosedError):
        plugin.apply(lambda x: x, 1)
    alive = weakref.ref(plugin)
    del plugin
    gc.collect()
    assert alive() is None  # nothing kept the plugin (or the lambdas) alive


def test_host_function_results_are_released_by_the_plugin(cdata: ferrule.Plugin) -> None:
    # shout copies the host's text and then calls its release; a leak of
    # one 10 KB string per call would show as ~1 GB.
    text = "x" * 10_000
    for _ in range(2000):
        cdata.shout(lambda s: s, "a")
    gc.collect()
    before = rss_bytes()
    for _ in range(100_000):
        cdata.shout(lambda s: text, "a")
    gc.collect()
    assert rss_bytes() - before < 16 * 1024 * 1024


def test_pure_python_switch_runs_without_the_accelerator(built: Built) -> None:
    # What a machine without a C compiler gets: the same API on cffi.
    code = (
        "import ferrule, ferrule._call.accelerator as a, array\n"
        "assert a.speedups is None\n"
        f"k = ferrule.load({str(built.kitchen)!r}, config='ok')\n"
        "assert not getattr(k.add, 'accelerated', False)\n"
        "print(k.add(2, 3), k.sum_f64(array.array('d', [1.5, 2.0])), k.apply(lambda x: x + 1, 1))\n"
    )
    env = dict(os.environ, FERRULE_PURE_PYTHON="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["5", "3.5", "2"]


@pytest.mark.parametrize("mode", ["in-process", "isolated"])
def test_a_log_handler_that_calls_the_plugin_keeps_its_failure_message(built: Built, call_path: str, mode: str) -> None:
    # set_error, then host->log, then FERRULE_ERROR: a handler that calls the
    # same plugin on the way must not replace the message the call fails with.
    import logging

    plugin: Any = ferrule.load(built.parity, isolated=mode == "isolated")
    seen: list[int] = []

    class CallsBack(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(plugin.add(20, 22))

    logger = logging.getLogger("ferrule.plugin.org.ferrule.tests.parity")
    handler = CallsBack()
    logger.addHandler(handler)
    try:
        with pytest.raises(ferrule.PluginCallError) as info:
            plugin.log_then_fail("calling back")
    finally:
        logger.removeHandler(handler)
        plugin.close()
    assert seen == [42]
    assert info.value.plugin_message == "logged failure"


CYCLE = """
import array, gc, sys, ferrule
plugin = ferrule.PluginHost(debug=True).load(sys.argv[1]) if sys.argv[2] == "debug" else ferrule.load(sys.argv[1])
for _ in range(20):
    try:
        plugin.mean(array.array("d"))
    except ferrule.PluginCallError as exc:
        exc.cycle = exc  # the failure, its traceback and the call's frame: one garbage cycle
    gc.collect()
print("survived")
"""


@pytest.mark.parametrize("path", ["debug", "pure-python"])
def test_a_failed_call_with_a_buffer_in_a_garbage_cycle_is_collected_safely(built: Built, path: str) -> None:
    """On the checked path, the cffi view of a buffer argument outlived the
    call in the frame that a failure's traceback keeps; the collector then
    cleared the memoryview it exported from first and the process crashed
    (found by ferrule validate's thread checks). Run in a fresh interpreter:
    the bug is a crash."""
    env = dict(os.environ, FERRULE_PURE_PYTHON="1") if path == "pure-python" else None
    proc = subprocess.run([sys.executable, "-c", CYCLE, str(built.greeter), path], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "survived", (proc.returncode, proc.stderr[-2000:])


def test_a_plugin_log_follows_every_level_change_at_once(built: Built, call_path: str) -> None:
    # The C host table drops a message that logging already decided to drop
    # (the logger's own isEnabledFor cache); every setLevel and disable must
    # take effect on the next message, on both paths.
    import logging

    plugin: Any = ferrule.load(built.greeter)
    logger = logging.getLogger(f"ferrule.plugin.{plugin.id}")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    parent = logger.parent
    assert parent is not None
    old, old_parent = logger.level, parent.level
    try:
        logger.setLevel(logging.WARNING)
        for _ in range(3):
            plugin.greet("below")  # info! below WARNING: dropped, and cached as dropped
        logger.setLevel(logging.INFO)
        plugin.greet("at")
        logging.disable(logging.INFO)
        plugin.greet("disabled")
        logging.disable(logging.NOTSET)
        plugin.greet("again")
        logger.setLevel(logging.ERROR)
        plugin.greet("above")
        parent.setLevel(logging.DEBUG)
        logger.setLevel(logging.NOTSET)  # now the parent's level decides
        plugin.greet("parent")
    finally:
        logging.disable(logging.NOTSET)
        logger.setLevel(old)
        parent.setLevel(old_parent)
        logger.removeHandler(handler)
        plugin.close()
    assert seen == ["greeting at", "greeting again", "greeting parent"]


def test_a_null_text_passed_to_a_host_function_fails_the_call(cdata: ferrule.Plugin) -> None:
    """A plugin passing a str with ptr NULL and a non-zero length: the call
    fails before the host function runs (host/rust/tests/cdata.rs holds the
    Rust host to the same error)."""
    seen: list[str] = []
    with pytest.raises(ValueError, match="^the plugin passed a NULL pointer with a non-zero length$"):
        cdata.null_text(lambda s: seen.append(s) or 1)
    assert seen == []
