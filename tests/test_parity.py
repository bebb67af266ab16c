"""The parity table: every case of tests/parity/cases.json on every call path
of the Python host, each with the same result or the same exception class
and message (see tests/parity/README.md for the file's format).

The paths:
- ``c``: an in-process plugin through the C accelerator;
- ``cffi``: the same plugin on the cffi path (the accelerator off);
- ``isolated``: the plugin in a child process;
- ``sandboxed``: the same, in the default ferrule.Sandbox();
- ``method``: the same functions as methods of an interface instance
  (the parity plugin's Parity implementation "direct");
- ``service``: methods of its ParityValues implementation "relay", which
  forwards every call through host->call to a Python service (below) that
  computes what the C functions compute;
- ``isolated-method`` and ``isolated-service``: the same two, the plugin
  loaded through a PluginHost with isolated=True: the instances live in the
  child and the relay's host->call crosses the channel to the service here;
- ``sandboxed-service``: the relay again, in the default ferrule.Sandbox();
- ``aio-<path>``: the same plugins and instances, every call awaited
  (``plugin.aio``, ``instance.aio``) on one event loop: in process on the
  host's thread pool, isolated on the channel. Host functions that call back
  into the plugin are ``async def`` there and await their calls.

A case runs on a path unless the path lacks the function (structs exist only
as methods; a service takes no host functions) or the case says why not
(``not_on``). Every case runs somewhere, and each path runs most of them.
"""

from __future__ import annotations

import array
import asyncio
import json
import math
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ferrule
from ferrule._call import accelerator
from ferrule._sandbox import launch

from . import parity_api as api
from .conftest import Built

TABLE = json.loads((Path(__file__).parent / "parity" / "cases.json").read_text())
assert TABLE["format"] == 1
CASES: list[dict[str, Any]] = TABLE["cases"]
PLUGIN_ID = "org.ferrule.tests.parity"
PLAIN = ["c", "cffi", "isolated", "sandboxed", "method", "service", "isolated-method", "isolated-service",
         "sandboxed-service"]
AWAITED = ["aio-c", "aio-cffi", "aio-isolated", "aio-sandboxed", "aio-method", "aio-service", "aio-isolated-method",
           "aio-isolated-service"]
PATHS = PLAIN + AWAITED
# Below these, a path has lost cases it should run (the table has 200).
MINIMUM = {"c": 170, "cffi": 170, "isolated": 170, "sandboxed": 170, "method": 190, "service": 150,
           "isolated-method": 190, "isolated-service": 150, "sandboxed-service": 150}
MINIMUM.update({f"aio-{name}": MINIMUM[name] for name in PLAIN})
NO_SANDBOX = launch.bwrap()[1]  # why the sandboxed path cannot run here, or ""


# ------------------------------------------------------------ the paths


class CallPath:
    """One way of calling the parity functions."""

    def __init__(self, name: str, owner: Any, target: str, prefix: str = "", service_errors: bool = False):
        self.name = name
        # The path whose not_on reasons hold here too: an isolated method is a method.
        self.family = name.rsplit("-", 1)[-1]
        self.owner = owner  # the plugin or instance its callables belong to
        self.target = target  # how close() refusals name it
        self.prefix = prefix  # "Parity." for methods
        self.service_errors = service_errors

    def function(self, call: str) -> Callable[..., Any] | None:
        if self.prefix:
            return getattr(self.owner, call, None)
        fn: Callable[..., Any] | None = self.owner.functions.get(call)
        return fn

    def close(self) -> None:
        self.owner.close()

    def plugin_message(self, message: str) -> str:
        # A Python service's exception reaches the plugin as "Class: message"
        # (PluginHost.provide); the relay hands that on as its own failure.
        return f"ValueError: {message}" if self.service_errors else message


class AwaitedPath(CallPath):
    """A path's functions awaited, each call run to its end on ``loop``."""

    def __init__(self, name: str, plain: CallPath, loop: asyncio.AbstractEventLoop):
        super().__init__(name, plain.owner, plain.target, plain.prefix, plain.service_errors)
        self.family = plain.family
        self.loop = loop

    def awaited(self, call: str) -> Callable[..., Any]:
        aio = self.owner.aio
        return getattr(aio, call) if self.prefix else aio[call]  # type: ignore[no-any-return]

    def function(self, call: str) -> Callable[..., Any] | None:
        if super().function(call) is None:
            return None
        afn = self.awaited(call)
        return lambda *args, **kwargs: self.loop.run_until_complete(afn(*args, **kwargs))


class ParityService:
    """ParityValues in Python: what parity.c computes, computed here."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("echo_"):
            return lambda v: v
        if name.startswith("sum_"):
            return lambda data: _sum(data)
        if name.startswith("double_"):
            return lambda data: _double(name.removeprefix("double_"), data)
        raise AttributeError(name)

    def add(self, a: int, b: int) -> int:
        return _wrap(a + b, 64, True)

    def mixed(self, a: int, b: int, c: float, d: bool, e: float) -> float:
        return float(a) + float(b) + c + float(d) + e

    def nothing(self) -> None:
        return None

    def fail(self, message: str) -> int:
        raise ValueError(message)

    def static_str(self) -> str:
        return "static text"

    def area(self, r: api.Rect) -> int:
        return r.width * r.height + (r.area_hint if r.filled else 0)

    def grow(self, r: api.Rect, by: int) -> api.Rect:
        origin = api.Point(r.origin.x - by, r.origin.y - by)
        return api.Rect(origin, r.width + 2 * by, r.height + 2 * by, not r.filled, r.area_hint)

    def tag(self, t: api.Tag) -> api.Tag:
        return api.Tag(t + 1)

    def _cannot(self, *args: Any) -> Any:
        raise NotImplementedError("not run on the service path (see not_on in the table)")

    fail_silent = panic = odd_status = unset_str = unset_bytes = null_str = bad_text = _cannot


def _sum(data: memoryview) -> float:
    total = 0.0
    for x in data.tolist():
        total += float(x)
    return total


def _double(elem: str, data: memoryview) -> None:
    for i, x in enumerate(data.tolist()):
        data[i] = x * 2 if elem.startswith("f") else _wrap(x * 2, int(elem[1:]), elem[0] == "i")


def _wrap(n: int, bits: int, signed: bool) -> int:
    n &= (1 << bits) - 1
    return n - (1 << bits) if signed and n >> (bits - 1) else n


@pytest.fixture(scope="module")
def paths(built: Built) -> Iterator[dict[str, CallPath]]:
    made: dict[str, CallPath] = {}
    target = f"plugin {PLUGIN_ID!r}"
    saved = accelerator.enabled
    try:
        if accelerator.speedups is not None:
            accelerator.enabled = True
            made["c"] = CallPath("c", ferrule.load(built.parity), target)
        accelerator.enabled = False
        made["cffi"] = CallPath("cffi", ferrule.load(built.parity), target)
    finally:
        accelerator.enabled = saved
    made["isolated"] = CallPath("isolated", ferrule.load(built.parity, isolated=True, timeout=30), target)
    if not NO_SANDBOX:
        made["sandboxed"] = CallPath("sandboxed", ferrule.load(built.parity, isolated=True, timeout=30, sandbox=True),
                                     target)
    plugin = ferrule.load(built.parity)
    direct = plugin.create(api.Parity, "direct")
    made["method"] = CallPath("method", direct, f"Parity instance 'direct' of {target}", "Parity.")
    host = ferrule.PluginHost()
    host.provide(api.ParityValues, ParityService())
    relay = host.load(built.parity).create(api.ParityValues, "relay")
    made["service"] = CallPath("service", relay, f"ParityValues instance 'relay' of {target}", "ParityValues.",
                               service_errors=True)
    isolated_host = ferrule.PluginHost()
    isolated_host.provide(api.ParityValues, ParityService())
    isolated = isolated_host.load(built.parity, isolated=True, timeout=30)
    made["isolated-method"] = CallPath("isolated-method", isolated.create(api.Parity, "direct"),
                                       f"Parity instance 'direct' of {target}", "Parity.")
    made["isolated-service"] = CallPath("isolated-service", isolated.create(api.ParityValues, "relay"),
                                        f"ParityValues instance 'relay' of {target}", "ParityValues.",
                                        service_errors=True)
    if not NO_SANDBOX:
        sandboxed = isolated_host.load(built.parity, isolated=True, timeout=30, sandbox=True)
        made["sandboxed-service"] = CallPath("sandboxed-service", sandboxed.create(api.ParityValues, "relay"),
                                             f"ParityValues instance 'relay' of {target}", "ParityValues.",
                                             service_errors=True)
    loop = asyncio.new_event_loop()
    for name in AWAITED:
        plain = made.get(name.removeprefix("aio-"))
        if plain is not None:
            made[name] = AwaitedPath(name, plain, loop)
    yield made
    loop.close()
    for path in [p for p in made.values() if not isinstance(p, AwaitedPath)]:
        path.close()
    plugin.close()
    for loaded in isolated_host.plugins:  # their children, and a sandbox's cgroup
        loaded.close()


# ------------------------------------------------------------ values


class Index:
    """An int-like object (has __index__) that is not an int."""

    def __init__(self, value: int):
        self.value = value

    def __index__(self) -> int:
        return self.value


class Text(str):
    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        raise AssertionError("the host must not call a subclass's encode")


def value(spec: Any, path: CallPath) -> Any:
    """A case's value as Python passes it."""
    if not isinstance(spec, dict):
        return spec
    if "float" in spec:
        return float(spec["float"])
    if "bytes" in spec:
        return bytes.fromhex(spec["bytes"])
    if "bytearray" in spec:
        return bytearray.fromhex(spec["bytearray"])
    if "memoryview" in spec:
        return memoryview(bytes.fromhex(spec["memoryview"]))[:: spec.get("step", 1)]
    if "array" in spec:
        made = array.array(spec["array"], spec["values"])
        if spec.get("misaligned"):
            raw = bytearray(len(made) * made.itemsize + 1)
            view = memoryview(raw)[1:]
            view[:] = made.tobytes()
            return view.cast(spec["array"])
        view = memoryview(made)[:: spec.get("step", 1)]
        if spec.get("readonly"):
            return view.toreadonly()
        return made if spec.get("step", 1) == 1 else view
    if "numpy" in spec:
        n = spec["numpy"]
        if "scalar" in n:
            return np.dtype(n["dtype"]).type(n["scalar"])
        return np.array(n["values"], dtype=n["dtype"]).reshape(n.get("shape", [-1]))
    if "python" in spec:
        if spec["python"] == "namespace":  # a look-alike of a struct: the right fields, not the type
            return types.SimpleNamespace(**{k: value(v, path) for k, v in spec["fields"].items()})
        return {"index": Index, "str_subclass": Text}[spec["python"]](spec["value"])
    if "struct" in spec:
        cls = getattr(api, spec["struct"])
        return cls(**{k: value(v, path) for k, v in spec["fields"].items()})
    if "handle" in spec:
        return getattr(api, spec["handle"])(spec["value"])
    if "hostfn" in spec:
        return host_function(spec["hostfn"], path)
    raise ValueError(f"unknown value {spec!r}")


def host_function(name: str, path: CallPath) -> Callable[..., Any]:
    """The host functions the table names. Some call back into the same
    plugin or instance on the path under test."""

    def raises(*args: Any) -> Any:
        raise ValueError("the host function failed")

    def fail_inside() -> int:
        with pytest.raises(ferrule.PluginCallError, match="inner"):
            call("fail")("inner")
        return 0

    def call(name: str) -> Callable[..., Any]:
        fn = path.function(name)
        assert fn is not None
        return fn

    if isinstance(path, AwaitedPath):  # calls back into the plugin awaited, from a coroutine
        awaited = path.awaited

        async def fail_inside_awaited() -> int:
            with pytest.raises(ferrule.PluginCallError, match="inner"):
                await awaited("fail")("inner")
            return 0

        async def add_twenty(x: int) -> Any:
            return await awaited("add")(20, x)

        async def apply_double(x: int) -> Any:
            return await awaited("apply")(lambda y: y * 2, x)

        async def echo(s: str) -> Any:
            return await awaited("echo_str")(s)

        async def add_inside() -> Any:
            return await awaited("add")(1, 1)

        calling: dict[str, Callable[..., Any]] = {"add_twenty": add_twenty, "apply_double": apply_double, "echo": echo,
                                                  "fail_inside": fail_inside_awaited, "add_inside": add_inside}
        if name in calling:
            return calling[name]

    table: dict[str, Callable[..., Any]] = {
        "double": lambda x: x * 2,
        "raise": raises,
        "text": lambda x: "no",
        "too_big": lambda x: 2**64,
        "upper": lambda s: s.upper(),
        "five": lambda v: 5,
        "multiply": lambda a, b: a * b,
        "int_product": lambda a, b: int(a * b),
        "same": lambda v: v,
        "reverse": lambda b: b[::-1],
        "none": lambda: None,
        "add_twenty": lambda x: call("add")(20, x),
        "apply_double": lambda x: call("apply")(lambda y: y * 2, x),
        "echo": lambda s: call("echo_str")(s),
        "fail_inside": fail_inside,
        "add_inside": lambda: call("add")(1, 1),
        "close": lambda x: path.close(),
    }
    return table[name]


def same(got: Any, want: Any) -> bool:
    """Equal and of the same type; floats bit for bit (NaN equals NaN)."""
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        return math.isnan(got) and math.isnan(want) or (got == want and math.copysign(1, got) == math.copysign(1, want))
    return bool(got == want)


def contents(buffer: Any) -> list[Any]:
    return buffer.tolist() if hasattr(buffer, "tolist") else list(buffer)


# ------------------------------------------------------------ the runner


def applies(case: dict[str, Any], path: CallPath) -> str | None:
    """Why the case does not run on the path, or None."""
    if "python" not in case.get("hosts", ["python"]):
        return "a case for other hosts"
    not_on = case.get("not_on", {})
    reason: str | None = not_on.get(path.name, not_on.get(path.family))
    if reason is not None:
        return reason
    if path.function(case["call"]) is None:
        return f"the path has no {case['call']}"
    return None


def run(case: dict[str, Any], path: CallPath) -> None:
    fn = path.function(case["call"])
    assert fn is not None
    args = [value(a, path) for a in case["args"]]
    kwargs = {k: value(v, path) for k, v in case.get("kwargs", {}).items()}
    expect = case["expect"]
    name = path.prefix + case["call"]
    if "raises" in expect:
        with pytest.raises(BaseException) as info:
            fn(*args, **kwargs)
        error = info.value
        plugin_message = path.plugin_message(expect.get("plugin_message", ""))
        message = expect["message"].format(name=name, target=path.target, plugin_message=plugin_message)
        assert (type(error).__name__, str(error)) == (expect["raises"], message)
        if "plugin_message" in expect:
            assert getattr(error, "plugin_message", None) == plugin_message
        return
    got = fn(*args, **kwargs)
    want = value(expect["returns"], path)
    assert same(got, want), (got, want)
    for index, spec in expect.get("after", {}).items():
        written, wanted = args[int(index)], value(spec, path)
        assert type(written) is type(wanted) and contents(written) == contents(wanted)


PAIRS = [(case, p) for case in CASES for p in PATHS]


@pytest.mark.parametrize(("case", "path_name"), PAIRS, ids=[f"{p}-{c['id']}" for c, p in PAIRS])
def test_case(paths: dict[str, CallPath], case: dict[str, Any], path_name: str) -> None:
    if path_name == "c" and path_name not in paths:
        pytest.fail("the C accelerator is not built: run the README's install command")
    if path_name == "sandboxed" and path_name not in paths:
        pytest.skip(f"no sandbox here: {NO_SANDBOX}")
    if path_name in ("sandboxed-service", "aio-sandboxed") and path_name not in paths:
        pytest.skip(f"no sandbox here: {NO_SANDBOX}")
    if path_name == "aio-c" and path_name not in paths:
        pytest.fail("the C accelerator is not built: run the README's install command")
    path = paths[path_name]
    reason = applies(case, path)
    if reason is not None:
        pytest.skip(reason)
    run(case, path)


def test_every_case_runs_and_every_path_runs_most(paths: dict[str, CallPath]) -> None:
    counts = {name: sum(applies(case, path) is None for case in CASES) for name, path in paths.items()}
    nowhere = [case["id"] for case in CASES if all(applies(case, path) is not None for path in paths.values())]
    assert not nowhere, f"cases no path runs: {nowhere}"
    assert len(CASES) >= 150
    short = {name: (count, MINIMUM[name]) for name, count in counts.items() if count < MINIMUM[name]}
    assert not short, f"paths that run fewer cases than they should (ran, expected at least): {short}"
    print(f"parity cases per path: {counts} of {len(CASES)}")


def test_the_table_is_well_formed() -> None:
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids))
    for case in CASES:
        assert set(case) <= {"id", "call", "args", "kwargs", "expect", "hosts", "not_on"}, case["id"]
        expect = case["expect"]
        assert ("returns" in expect) != ("raises" in expect), case["id"]
        assert set(expect) <= {"returns", "after", "raises", "message", "plugin_message"}, case["id"]
        assert ("message" in expect) == ("raises" in expect), case["id"]
        assert set(case.get("not_on", {})) <= set(PATHS) | {"rust"}, case["id"]  # rust: the Rust host's runner
