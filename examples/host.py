"""A host application: load the Rust greeter and the C calculator, call them,
then the calculator again in isolated mode, and scan the calculator's directory.

    python examples/host.py target/release/libgreeter.so build/libcalc.so
"""

from __future__ import annotations

import array
import logging
import os
import sys

import ferrule


def main(greeter_path: str, calc_path: str) -> None:
    # Plugins log through `logging`, under ferrule.plugin.<plugin id>.
    logging.basicConfig(level=logging.INFO, format="  [log %(name)s] %(message)s", stream=sys.stdout)

    with ferrule.load(greeter_path) as greeter:
        print(f"loaded {greeter.name} {greeter.version} ({greeter.id}), ABI {greeter.abi_version}")
        for fn in greeter:
            print(f"  {fn.name}{fn.signature}  # {fn.doc}")
        print("greeter.greet('Ada')      =", greeter.greet("Ada"))
        print("greeter.add(2, 3)         =", greeter.add(2, 3))
        print("greeter.divide(1.0, 8.0)  =", greeter.divide(1.0, 8.0))
        print("greeter.shout('ferrule')  =", greeter.shout("ferrule"))
        try:
            greeter.divide(1.0, 0.0)
        except ferrule.PluginCallError as exc:
            print("greeter.divide(1.0, 0.0)  raised", type(exc).__name__ + ":", exc.plugin_message)
        try:
            greeter.add(1, "two")
        except TypeError as exc:
            print("greeter.add(1, 'two')     raised TypeError:", exc)
        # Buffers pass without a copy: any buffer object (array.array, numpy, bytearray).
        values = array.array("d", [1.0, 2.0, 6.0])
        print("greeter.mean(values)      =", greeter.mean(values))
        greeter.scale(values, 10.0)
        print("after greeter.scale(values, 10.0):", values.tolist())
        # A Python function the plugin calls back.
        print("greeter.count_if(odd, 10) =", greeter.count_if(lambda i: i % 2 == 1, 10))

    with ferrule.load(calc_path, config={"precision": "high"}) as calc:
        print(f"loaded {calc.name} {calc.version} ({calc.id})")
        print("calc.mul(6, 7)            =", calc.mul(6, 7))
        print("calc.hypot(3.0, 4.0)      =", calc.hypot(3.0, 4.0))
        print("calc.reverse('stressed')  =", calc.reverse("stressed"))
        try:
            calc.checked_div(1, 0)
        except ferrule.PluginCallError as exc:
            print("calc.checked_div(1, 0)    raised", type(exc).__name__ + ":", exc.plugin_message)
        print("calc.calls()              =", calc.calls())

    # The same plugin in a child process: a crash or a hang there would
    # raise an exception here, and the next call would start a new child.
    with ferrule.load(calc_path, isolated=True, timeout=5.0, config={"precision": "high"}) as calc:
        print(f"isolated calc.mul(6, 7)   = {calc.mul(6, 7)} (host pid {os.getpid()}, plugin pid {calc.pid})")
        print("isolated calc.reverse('stressed') =", calc.reverse("stressed"))

    # Find plugins without loading them (a worker process reads them; results are cached).
    found = ferrule.scan([os.path.dirname(os.path.abspath(calc_path))], cache=False)
    print("ferrule.scan found:", ", ".join(f"{p.id} {p.version}" for p in found.plugins))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
