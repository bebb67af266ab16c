"""An asyncio host: the Rust greeter in process and the C calculator in a
child process, both awaited from one event loop.

    python examples/async_host.py target/release/libgreeter.so build/libcalc.so
"""

from __future__ import annotations

import asyncio
import sys
import time

import ferrule


async def main(greeter_path: str, calc_path: str) -> None:
    host = ferrule.PluginHost(async_workers=4)  # the threads in-process awaited calls may use
    greeter = host.load(greeter_path)
    calc = host.load(calc_path, isolated=True)
    try:
        # Many calls at once: the greeter's on the host's threads, the calculator's on its channel.
        greetings, products = await asyncio.gather(
            asyncio.gather(*[greeter.aio.greet(name) for name in ("Ada", "Grace", "Edsger")]),
            asyncio.gather(*[calc.aio.mul(i, i) for i in range(1, 6)]))
        print("greetings:", greetings)
        print("squares:  ", products)

        # A host function may be a coroutine when the call is awaited.
        async def odd(n: int) -> bool:
            await asyncio.sleep(0)  # free to await anything here
            return n % 2 == 1

        print("greeter.aio.count_if(odd, 10) =", await greeter.aio.count_if(odd, 10))

        # The loop never waits for a plugin: a timeout cancels the call (an
        # isolated plugin's process is ended and the next call starts another).
        start = time.monotonic()
        try:
            async with asyncio.timeout(0.5):
                print("calc.aio.reverse('stressed') =", await calc.aio.reverse("stressed"))
        except TimeoutError:
            print("timed out")
        print(f"done in {time.monotonic() - start:.3f} s")
    finally:
        await greeter.aio.close()
        await calc.aio.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
