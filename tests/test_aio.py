"""Awaited calls (plugin.aio, instance.aio) with real plugins, in process
and isolated: many at once, cancellation mid-call, timeouts, async host
functions, the loop kept free during a long call, and the admission of
calls that are not thread-safe. The parity table (test_parity.py, the aio-*
paths) holds every awaited path to the same results and errors."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import ferrule
from tests import iface_api as api
from tests import iface_proxies as proxies

from .conftest import Built

MODES = ["in-process", "isolated"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def hostile(built: Built, mode: str) -> Iterator[Any]:
    with ferrule.load(built.hostile, isolated=mode == "isolated") as plugin:  # type: ignore[call-overload]
        yield plugin


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_awaited_results_match_plain_calls(hostile: Any) -> None:
    data = np.arange(10, dtype=np.float64)
    scaled = np.arange(5, dtype=np.int32)

    async def main() -> list[Any]:
        aio = hostile.aio
        return [await aio.add(2, 3), await aio.add_slow(4, 5), await aio.mix(2, 1.5, True, 3),
                await aio.reverse("abc"), await aio.reverse_bytes(b"xyz"), await aio.sum(data),
                await aio.scale(scaled, 3), await aio.add(a=1, b=2)]

    assert run(main()) == [5, 9, 7.0, "cba", b"zyx", 45.0, None, 3]
    assert scaled.tolist() == [0, 3, 6, 9, 12]  # the plugin's writes reach the caller's array
    with pytest.raises(TypeError) as info:
        run(hostile.aio.add(1, "2"))
    with pytest.raises(TypeError) as plain:
        hostile.add(1, "2")
    assert str(info.value) == str(plain.value)
    with pytest.raises(ferrule.PluginCallError, match="no way"):
        run(hostile.aio.fail("no way"))
    with pytest.raises(AttributeError, match="no function 'nope'"):
        hostile.aio.nope


def test_many_concurrent_awaits(hostile: Any) -> None:
    async def main() -> list[int]:
        return await asyncio.gather(*[hostile.aio.add_slow(i, i) for i in range(300)])

    assert run(main()) == [2 * i for i in range(300)]


def test_the_loop_keeps_running_during_a_long_call(hostile: Any) -> None:
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main() -> float:
        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        start = time.monotonic()
        await hostile.aio.sleep_ms(400)
        beat.cancel()
        return start

    start = run(main())
    during = [t for t in ticks if t > start]
    assert len(during) >= 10, f"the loop ticked {len(during)} times during a 400 ms call"
    gaps = np.diff(during)
    assert gaps.max() < 0.2, f"the loop stalled for {gaps.max():.3f} s"


def test_cancelling_an_in_process_call_drops_its_result(built: Built) -> None:
    with ferrule.load(built.hostile) as plugin:
        async def main() -> float:
            task = asyncio.create_task(plugin.aio.sleep_ms(300))
            await asyncio.sleep(0.05)
            task.cancel()
            start = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - start

        assert run(main()) < 0.2  # the await ends now; the call finishes on its thread
        assert plugin.add(1, 2) == 3


def test_cancelling_an_isolated_call_ends_its_process(built: Built) -> None:
    # As cancel() does: even with restart=False the next call gets a new process.
    with ferrule.load(built.hostile, isolated=True, restart=False) as plugin:
        first = plugin.pid

        async def main() -> float:
            task = asyncio.create_task(plugin.aio.sleep_ms(10_000))
            await asyncio.sleep(0.1)
            start = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - start

        assert run(main()) < 2.0
        assert plugin.pid is None  # ended
        assert run(plugin.aio.add(2, 2)) == 4
        assert plugin.pid not in (None, first)


def test_asyncio_timeout(hostile: Any, mode: str) -> None:
    async def main() -> float:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await hostile.aio.sleep_ms(3_000 if mode == "isolated" else 600)
        return time.monotonic() - start

    took = run(main())
    assert took < 1.0
    assert run(hostile.aio.add(5, 5)) == 10


def test_async_host_functions(hostile: Any) -> None:
    seen: list[str] = []

    async def slow_double(x: int) -> int:
        await asyncio.sleep(0.02)  # really on the loop: a thread could not await
        seen.append(asyncio.current_task().get_name() if asyncio.current_task() else "?")
        return x * 2

    async def nested(x: int) -> int:
        return int(await hostile.aio.add_slow(x, 100))  # back into the same plugin, awaited

    async def failing(x: int) -> int:
        raise KeyError("from the coroutine")

    async def main() -> list[Any]:
        out = [await hostile.aio.apply(slow_double, 21), await hostile.aio.apply(nested, 1),
               await hostile.aio.count_if(lambda n: n % 2 == 0, 10), await hostile.aio.apply(lambda x: x + 1, 1)]
        with pytest.raises(KeyError, match="from the coroutine"):
            await hostile.aio.apply(failing, 1)
        return out

    assert run(main()) == [42, 101, 5, 2]
    assert len(seen) == 1


def test_an_async_host_function_needs_an_awaited_call(hostile: Any) -> None:
    async def double(x: int) -> int:
        return x * 2

    with pytest.raises(TypeError) as info:
        hostile.apply(double, 1)
    assert str(info.value) == (
        "the host function passed as apply() argument 'f' returned coroutine, an awaitable: an async def host "
        "function works only when the plugin call is awaited (await plugin.aio.apply(...)); pass a plain function "
        "otherwise")
    assert hostile.apply(lambda x: x, 3) == 3


def test_a_plain_call_from_the_loop_during_an_awaited_isolated_call_is_refused(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        async def main() -> None:
            task = asyncio.create_task(plugin.aio.sleep_ms(200))
            await asyncio.sleep(0.05)
            with pytest.raises(RuntimeError, match="without await on the event loop thread"):
                plugin.add(1, 1)
            await task

        run(main())
        assert plugin.add(1, 1) == 2


def test_a_plain_call_from_another_thread_waits_its_turn(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        results: list[int] = []

        def other() -> None:
            results.append(plugin.add_slow(1, 2))

        async def main() -> list[int]:
            task = asyncio.create_task(plugin.aio.sleep_ms(150))
            await asyncio.sleep(0.02)
            thread = threading.Thread(target=other)
            thread.start()
            await task
            both = await asyncio.gather(*[plugin.aio.add(i, 1) for i in range(20)])
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
            return both

        assert run(main()) == [i + 1 for i in range(20)]
        assert results == [3]


@pytest.mark.parametrize("lang", ["rust", "c"])
def test_interface_methods_awaited(built: Built, mode: str, lang: str) -> None:
    path = built.ifaces_rust if lang == "rust" else built.ifaces_c
    host = ferrule.PluginHost(async_workers=8)
    plugin = host.load(path, isolated=mode == "isolated")
    try:
        shapes = plugin.create(proxies.Shapes)
        counter = plugin.create(proxies.Counter)
        rect = api.Rect(api.Point(1, 2), 3, 4, True, 0)

        async def main() -> tuple[Any, ...]:
            grown = await shapes.aio.grow(rect, 1)
            area = await shapes.aio.area(rect)
            # slow_add reads, waits, then writes: awaited calls must still be serialised.
            await asyncio.gather(*[counter.aio.slow_add(1, 300) for _ in range(40)])
            return grown, area, await counter.aio.total()

        grown, area, total = run(main())
        assert grown == shapes.grow(rect, 1)
        assert area == 12
        assert total == 40
        counter.close()
        shapes.close()
    finally:
        plugin.close()


def test_not_thread_safe_calls_queue_on_the_loop_not_on_threads(built: Built) -> None:
    # Twenty 10 ms calls of one not thread-safe instance on a pool of two
    # threads: they take one thread at a time, so a thread-safe call awaited
    # behind them finds the other thread free. Submitted all at once, they
    # would fill the pool's queue and the thread-safe call would wait ~200 ms.
    host = ferrule.PluginHost(async_workers=2)
    plugin = host.load(built.ifaces_c)
    counter = plugin.create(proxies.Counter)
    shapes = plugin.create(proxies.Shapes)
    try:
        async def main() -> float:
            calls = [asyncio.create_task(counter.aio.slow_add(1, 10_000)) for _ in range(20)]
            await asyncio.sleep(0.005)
            start = time.monotonic()
            assert await shapes.aio.sum(np.ones(1000)) == 1000.0
            waited = time.monotonic() - start
            await asyncio.gather(*calls)
            return waited

        waited = run(main())
        assert counter.total() == 20
        assert waited < 0.1, f"a thread-safe call waited {waited * 1000:.0f} ms behind a not thread-safe instance"
    finally:
        counter.close()
        shapes.close()
        plugin.close()


def test_aio_close_waits_for_an_awaited_call(built: Built, mode: str) -> None:
    plugin: Any = ferrule.load(built.hostile, isolated=mode == "isolated")  # type: ignore[call-overload]

    async def main() -> None:
        task = asyncio.create_task(plugin.aio.sleep_ms(100))
        await asyncio.sleep(0.02)
        await plugin.aio.close()  # the loop keeps running the call meanwhile
        assert task.done() and task.result() is None

    run(main())
    assert plugin.closed
    with pytest.raises(ferrule.PluginClosedError):
        run(plugin.aio.add(1, 1))


def test_async_workers_is_checked() -> None:
    with pytest.raises(ValueError, match="async_workers must be a positive number of threads or None, got 0"):
        ferrule.PluginHost(async_workers=0)


def test_crashes_of_awaited_calls_leave_nothing_for_the_collector(built: Built) -> None:
    # A failure's traceback holds the dead child in a cycle; the collector
    # once cleared a view of its shared memory before what exported it.
    script = f"""
import asyncio, gc, ferrule
with ferrule.load({str(built.hostile)!r}, isolated=True, timeout=0.2) as p:
    async def fail(how):
        try:
            await (p.aio.segfault() if how else p.aio.sleep_ms(1000))
        except (ferrule.PluginCrashedError, ferrule.PluginTimeoutError):
            pass
    for i in range(6):
        asyncio.run(fail(i % 2)); gc.collect()
    print(p.add(2, 3))
"""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout.strip()) == (0, "5"), proc.stderr[-2000:]


def test_nested_awaited_calls_from_tasks_of_an_async_host_function(hostile: Any) -> None:
    async def both(x: int) -> int:  # gather and wait_for run the nested calls in tasks of their own
        a, b = await asyncio.gather(hostile.aio.add_slow(x, 1), hostile.aio.add_slow(x, 2))
        return int(a + b + await asyncio.wait_for(hostile.aio.add_slow(x, 3), 5))

    async def main() -> int:
        return int(await asyncio.wait_for(hostile.aio.apply(both, 10), 10))

    assert run(main()) == 11 + 12 + 13


def test_an_awaited_call_gets_its_turn_beside_a_busy_thread(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                plugin.add_slow(1, 2)

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            async def main() -> list[int]:
                return [await asyncio.wait_for(plugin.aio.add_slow(i, 1), 5) for i in range(10)]

            assert run(main()) == [i + 1 for i in range(10)]
        finally:
            stop.set()
            thread.join()


def test_aio_close_from_inside_a_call_is_refused(hostile: Any) -> None:
    async def closing(x: int) -> int:
        with pytest.raises(ferrule.PluginClosedError, match=r"aio.close\(\) from inside one of its calls"):
            await hostile.aio.close()
        return x

    assert run(hostile.aio.apply(closing, 4)) == 4
    assert not hostile.closed


# -- a second hostile pass


def test_a_plain_call_on_the_loop_thread_does_not_wait_for_an_awaited_one_there(built: Built) -> None:
    # The awaited call polls for the serial lock on this loop; the plain call
    # must not give way to it (it could only run once this call returns).
    with ferrule.load(built.hostile, isolated=True) as plugin:
        async def main() -> tuple[int, int]:
            thread = threading.Thread(target=plugin.sleep_ms, args=(200,))
            thread.start()
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(plugin.aio.add(1, 2))
            await asyncio.sleep(0.02)
            plain = plugin.add_slow(3, 4)
            result = await waiting
            thread.join()
            return plain, result

        assert run(asyncio.wait_for(main(), 10)) == (7, 3)


def test_plain_and_awaited_callers_both_progress(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        counts = {"plain": 0, "awaited": 0}
        stop = threading.Event()

        def plain() -> None:
            while not stop.is_set():
                plugin.add_slow(1, 2)
                counts["plain"] += 1

        def awaited() -> None:
            async def loop() -> None:
                async def task() -> None:
                    while not stop.is_set():
                        await plugin.aio.add_slow(1, 2)
                        counts["awaited"] += 1
                await asyncio.gather(task(), task())
            run(loop())

        threads = [threading.Thread(target=plain), threading.Thread(target=awaited), threading.Thread(target=awaited)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(10)
        assert counts["plain"] >= 50 and counts["awaited"] >= 50, counts


def test_nested_calls_that_outlive_their_host_function(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True, timeout=10) as plugin:
        async def main() -> list[Any]:
            started: list[Any] = []

            async def leave_them(x: int) -> int:
                started.append(asyncio.create_task(plugin.aio.sleep_ms(100)))
                started.append(asyncio.create_task(plugin.aio.add_slow(x, 100)))
                await asyncio.sleep(0.01)
                return x * 2

            first = await plugin.aio.apply(leave_them, 21)
            return [first, *[await t for t in started], await plugin.aio.add(1, 1)]

        assert run(main()) == [42, None, 121, 2]


def test_what_a_nested_call_that_ends_the_process_leaves(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True, restart=False) as plugin:
        async def timed(x: int) -> int:
            await asyncio.wait_for(plugin.aio.sleep_ms(1000), 0.05)  # cancelled: the process is ended
            return x

        with pytest.raises(TimeoutError):  # the host function's own exception
            run(plugin.aio.apply(timed, 1))
        assert run(plugin.aio.add(2, 3)) == 5  # a cancel is the host's doing: a new process, restart=False or not

        async def crashes(x: int) -> int:
            await plugin.aio.segfault()
            return x

        with pytest.raises(ferrule.PluginCrashedError, match=r"crashed during segfault\(\): killed by SIGSEGV"):
            run(plugin.aio.apply(crashes, 1))


def test_cancel_from_another_thread_only_cancels(built: Built) -> None:
    with ferrule.load(built.hostile, isolated=True) as plugin:
        stop = threading.Event()

        def canceller() -> None:
            while not stop.is_set():
                time.sleep(0.003)
                plugin.cancel()

        async def main() -> collections.Counter[str]:
            seen: collections.Counter[str] = collections.Counter()

            async def nested(v: int) -> int:
                return int(await plugin.aio.add_slow(v, 1)) * 2

            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                try:
                    assert await plugin.aio.apply(nested, 3) == 8
                    seen["ok"] += 1
                except ferrule.CallCancelledError:
                    seen["cancelled"] += 1
            return seen

        thread = threading.Thread(target=canceller)
        thread.start()
        try:
            seen = run(main())
        finally:
            stop.set()
            thread.join()
        assert seen["ok"] > 0 and seen["cancelled"] > 0, seen
        assert run(plugin.aio.add(1, 1)) == 2


def test_close_on_the_loop_thread_with_an_awaited_call_in_flight(hostile: Any) -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.1)
        return x

    async def main() -> int:
        task = asyncio.create_task(hostile.aio.apply(slow, 4))
        await asyncio.sleep(0.03)
        with pytest.raises(ferrule.PluginClosedError, match=r"close\(\) on the event loop's thread while an awaited "
                                                             r"call of it is in flight.*await plugin\.aio\.close\(\)"):
            hostile.close()  # in process it would deadlock: the call's thread waits for this loop
        return int(await task)

    assert run(main()) == 4
    assert not hostile.closed


@pytest.mark.parametrize("mode", [0, 1, 2], ids=["closed", "flooded", "replaced"])
def test_a_child_tampering_with_its_notifier(built: Built, tmp_path: Any, mode: int) -> None:
    import resource

    from .conftest import C_DIR, compile_plugin

    path = compile_plugin(C_DIR / "notifier.c", tmp_path / "libnotifier.so", "-lpthread")
    with ferrule.load(path, isolated=True) as plugin:
        async def main() -> float:
            assert await plugin.aio.tamper(mode) >= 0
            used = resource.getrusage(resource.RUSAGE_SELF)
            await plugin.aio.sleep_ms(500)
            after = resource.getrusage(resource.RUSAGE_SELF)
            assert [await plugin.aio.add(i, 1) for i in range(20)] == [i + 1 for i in range(20)]
            return (after.ru_utime + after.ru_stime) - (used.ru_utime + used.ru_stime)

        cpu = run(main())
        assert cpu < 0.1, f"the host spent {cpu:.2f} s of CPU awaiting a 0.5 s call"
