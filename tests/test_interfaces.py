"""Host-defined interfaces end to end: the Rust and C test plugins, built
only from generated code, implement tests/iface_api.py's declarations; the
host provides the store service; plugins reach each other through it."""

from __future__ import annotations

import array
import gc
import logging
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

import ferrule
from ferrule import idl
from tests import iface_api as api
from tests import iface_proxies as proxies

from .conftest import Built

LANGS = ["rust", "c"]


def path_of(built: Built, lang: str) -> str:
    return str(built.ifaces_rust if lang == "rust" else built.ifaces_c)


@pytest.fixture(params=LANGS)
def lang(request: pytest.FixtureRequest, built: Built, call_path: str) -> str:
    return str(request.param)


@pytest.fixture(params=["in-process", "isolated"])
def isolated(request: pytest.FixtureRequest) -> bool:
    """In process, and through a PluginHost with isolated=True: instances in
    the child, services through the channel, the same results and errors."""
    return request.param == "isolated"


@pytest.fixture
def plugin(built: Built, lang: str, isolated: bool) -> Iterator[ferrule.Plugin]:
    with ferrule.PluginHost().load(path_of(built, lang), isolated=isolated) as p:  # type: ignore[call-overload]
        yield p


class DictStore:
    """The host's store service, revision 1."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.calls: list[str] = []

    def get(self, key: str) -> str:
        self.calls.append(f"get {key}")
        if key not in self.data:
            raise KeyError(f"no key {key!r} in the store")
        return self.data[key]

    def put(self, key: str, value: str) -> None:
        self.calls.append(f"put {key}")
        self.data[key] = value


class DictStore2(DictStore):
    def count(self) -> int:
        return len(self.data)


def test_plugin_lists_what_it_implements(plugin: ferrule.Plugin, lang: str) -> None:
    offered = {(o.id, o.revision, o.name, o.fingerprint) for o in plugin.interfaces}
    counter = idl.spec(api.Counter)
    shapes = idl.spec(api.Shapes)
    assert offered == {
        (counter.id, 1, f"{lang}-counter", counter.fingerprint),
        (counter.id, 1, f"{lang}-counter-b", counter.fingerprint),
        (shapes.id, 1, f"{lang}-shapes", shapes.fingerprint),
    }
    impls = plugin.implementations(proxies.Counter)
    assert [i.name for i in impls] == [f"{lang}-counter", f"{lang}-counter-b"]
    assert not impls[0].thread_safe
    assert plugin.implementation(proxies.Shapes) is not None
    assert plugin.implementation(proxies.Shapes).thread_safe  # type: ignore[union-attr]
    assert plugin.implementation(proxies.Counter, "nope") is None
    assert plugin.implementation(proxies.Store) is None  # a service, not implemented by plugins


def test_counter_instances_are_independent(plugin: ferrule.Plugin, lang: str) -> None:
    a = plugin.create(proxies.Counter, f"{lang}-counter")
    b = plugin.create(proxies.Counter, f"{lang}-counter-b")
    assert isinstance(a, proxies.Counter)
    assert a.add(5) == 5
    assert a.add(-2) == 3
    assert b.add(10) == 10
    assert (a.total(), b.total()) == (3, 10)
    assert (a.name(), b.name()) == (f"{lang}-counter", f"{lang}-counter-b")
    assert a.add is a.add and a.add is not b.add  # each instance its own methods, each made once
    assert {"add", "total", "slow_add", "name", "fail", "close"} <= set(dir(a))
    with pytest.raises(AttributeError, match="'Counter' object has no attribute 'nope'"):
        a.nope  # type: ignore[attr-defined]
    with pytest.raises(ferrule.PluginCallError, match="boom here") as info:
        a.fail("boom here")
    assert info.value.plugin_message == "boom here"
    assert a.total() == 3  # the instance is still usable after a failure
    with pytest.raises(TypeError, match=r"Counter.add\(\) argument 'n' must be int"):
        a.add("5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range for i64"):
        a.add(1 << 63)
    a.close()
    a.close()  # idempotent
    assert a.closed
    with pytest.raises(ferrule.PluginClosedError, match="instance .*-counter' of plugin .* is closed"):
        a.add(1)
    assert b.total() == 10
    b.close()


def test_every_parameter_kind(plugin: ferrule.Plugin, lang: str) -> None:
    with plugin.create(proxies.Shapes) as shapes:
        rect = api.Rect(api.Point(-3, 4), 5, 6, True, 0)
        assert shapes.area(rect) == 30
        grown = shapes.grow(rect, 2)
        assert grown == api.Rect(api.Point(-5, 2), 9, 10, True, 90)
        assert type(grown.origin) is api.Point
        assert shapes.mix(True, -8, 65535, 0.5, 0.25, 1 << 40) == pytest.approx(-8 + 65535 + 0.75 + (1 << 40))
        assert shapes.mix(False, 1, 2, 3.0, 4.0, 5) == -15.0
        assert shapes.sum(array.array("d", [1.5, 2.5, 3.0])) == 7.0
        target = array.array("i", [0] * 5)
        shapes.fill(target, -7)
        assert list(target) == [-7] * 5
        first = shapes.token("alpha")
        second = shapes.token("beta")
        assert isinstance(first, api.Token) and int(second) == int(first) + 1
        assert shapes.label(second) == "beta"
        with pytest.raises(ferrule.PluginCallError, match="unknown token 999"):
            shapes.label(api.Token(999))
        assert shapes.echo(b"\x00bytes\xff") == b"\x00bytes\xff"
        assert shapes.apply(lambda x: x * 3, 14) == 42
        with pytest.raises(TypeError, match="must be Rect, got Point"):
            shapes.area(api.Point(1, 2))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="out of range"):
            shapes.area(api.Rect(api.Point(0, 0), -1, 1, False, 0))
        with pytest.raises(TypeError, match="Rect.width must be int, got float"):
            shapes.area(api.Rect(api.Point(0, 0), 1.5, 1, False, 0))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Rect.filled must be bool, got int"):
            shapes.area(api.Rect(api.Point(0, 0), 1, 1, 1, 0))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Rect.origin must be Point, got Rect"):
            shapes.area(api.Rect(rect, 1, 1, True, 0))  # type: ignore[arg-type]


def test_non_thread_safe_instances_are_serialised(plugin: ferrule.Plugin, lang: str, isolated: bool) -> None:
    # slow_add reads, waits, then writes: concurrent calls lose updates.
    impl = plugin.implementation(proxies.Counter)
    assert impl is not None

    def hammer(counter: proxies.Counter) -> int:
        threads = [threading.Thread(target=lambda: [counter.slow_add(1, 200) for _ in range(25)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return counter.total()

    with impl.create() as counter:
        assert hammer(counter) == 100
    if isolated:
        return  # one process runs one call at a time: the control below cannot lose updates there
    # The control: the same instance kind, wrongly declared thread-safe, loses updates.
    impl.thread_safe = True
    with impl.create() as unsafe:
        assert hammer(unsafe) < 100


def test_instance_keeps_its_plugin_alive(built: Built, lang: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ferrule.plugin")
    host = ferrule.PluginHost()
    plugin = host.load(path_of(built, lang))
    counter = plugin.create(proxies.Counter)
    add = counter.add
    plugin.close()  # closes the plugin's own functions; shutdown waits for the instance
    del plugin
    gc.collect()
    assert add(2) == 2
    assert counter.total() == 2
    messages = [r.getMessage() for r in caplog.records]
    assert "shutdown" not in messages
    del counter
    gc.collect()
    assert add(1) == 3  # a method keeps its instance alive
    del add
    gc.collect()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.index(f"destroy {lang}-counter") < messages.index("shutdown")


def test_create_after_close_is_refused(plugin: ferrule.Plugin) -> None:
    impl = plugin.implementation(proxies.Counter)
    assert impl is not None
    plugin.close()
    with pytest.raises(ferrule.PluginClosedError):
        impl.create()


def test_service_from_python(built: Built, lang: str, isolated: bool) -> None:
    host = ferrule.PluginHost()
    store = DictStore()
    host.provide(api.Store, store)
    plugin = host.load(path_of(built, lang), isolated=isolated)  # type: ignore[call-overload]
    assert plugin.store_roundtrip("k", "välue") == "välue"
    assert store.data == {"k": "välue"}
    with pytest.raises(ferrule.PluginCallError, match="no key 'missing' in the store"):
        plugin.store_get("missing")
    assert plugin.store_get("k") == "välue"


def test_revision_1_plugin_on_a_host_with_revisions_1_and_2(built: Built, lang: str, isolated: bool) -> None:
    host = ferrule.PluginHost()
    old, new = DictStore(), DictStore2()
    host.provide(api.Store, old)
    host.provide(api.Store2, new)
    plugin = host.load(path_of(built, lang), isolated=isolated)  # type: ignore[call-overload]
    assert plugin.store_roundtrip("a", "1") == "1"
    assert old.calls == ["put a", "get a"] and new.calls == []
    new.data.update(x="1", y="2")
    assert plugin.store2_count() == 2


def test_missing_ids_and_revisions(built: Built, lang: str, isolated: bool) -> None:
    host = ferrule.PluginHost()
    host.provide(api.Store2, DictStore2())  # revision 2 only
    plugin = host.load(path_of(built, lang), isolated=isolated)  # type: ignore[call-overload]
    assert plugin.query_missing() is True
    with pytest.raises(ferrule.PluginCallError, match="no org.ferrule.test.store/1"):
        plugin.store_roundtrip("k", "v")
    assert host.create(proxies.Store) is None
    assert host.service(api.Store) is None
    lonely = ferrule.load(path_of(built, lang), isolated=isolated)  # a host of its own, with no services
    with pytest.raises(ferrule.PluginCallError, match="no org.ferrule.test.store/2"):
        lonely.store2_count()


@pytest.mark.parametrize("caller", LANGS)
def test_plugin_uses_another_plugins_implementation(built: Built, caller: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ferrule.plugin")
    other = "c" if caller == "rust" else "rust"
    host = ferrule.PluginHost()
    calling = host.load(path_of(built, caller))
    host.load(path_of(built, other))
    assert calling.counter_via_host(21) == 42
    messages = [r.getMessage() for r in caplog.records]
    # The host preferred the other plugin's counter, and gave it back.
    assert f"create {other}-counter" in messages and f"destroy {other}-counter" in messages
    assert [i.name for i in host.implementations(proxies.Counter)] == [
        f"{caller}-counter", f"{caller}-counter-b", f"{other}-counter", f"{other}-counter-b"]


def test_fingerprint_mismatch_prints_both_layouts(plugin: ferrule.Plugin) -> None:
    @idl.interface("org.ferrule.test.counter", revision=1)
    class ChangedCounter(Protocol):
        def add(self, n: idl.i32) -> idl.i64: ...
        def total(self) -> idl.i64: ...
        def slow_add(self, n: idl.i64, spin_us: idl.u32) -> idl.i64: ...
        def name(self) -> str: ...
        def fail(self, message: str) -> None: ...

    with pytest.raises(ferrule.InterfaceMismatchError) as info:
        plugin.implementations(ChangedCounter)
    text = str(info.value)
    assert "first difference: line 5: host has 'method 0 add(i32) -> i64', plugin has 'method 0 add(i64) -> i64'" in text
    assert "host layout:\n    ferrule-layout 1" in text and "plugin layout:\n    ferrule-layout 1" in text
    assert "Regenerate the plugin's code" in text
    assert info.value.found_layout == idl.spec(api.Counter).layout
    assert plugin.create(proxies.Counter).add(1) == 1  # the host still works


def test_stale_generated_proxy_is_refused() -> None:
    with pytest.raises(ferrule.InterfaceMismatchError, match="run ferrule generate again"):

        class Stale(ferrule.Instance):
            __ferrule_interface__ = idl.spec(api.Counter)
            __ferrule_fingerprint__ = 1


def test_provide_checks_the_object() -> None:
    host = ferrule.PluginHost()
    with pytest.raises(TypeError, match="lacks method count"):
        host.provide(api.Store2, DictStore())
    complete = type("AllShapes", (), {m.name: lambda self, *a: None for m in idl.spec(api.Shapes).methods})()
    with pytest.raises(TypeError, match="Shapes.apply takes a callable"):
        host.provide(api.Shapes, complete)


def test_debug_mode_reports_thread_contract_violations(built: Built) -> None:
    host = ferrule.PluginHost(debug=True)
    plugin = host.load(str(built.ifaces_c))
    with pytest.warns(ferrule.ThreadContractWarning, match="called host->set_error from thread .* not running a call"):
        assert plugin.error_from_thread() is True
    # Calls on the calling thread are fine, and the plugin still works.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ferrule.ThreadContractWarning)
        with plugin.create(proxies.Counter) as counter:
            assert counter.add(2) == 2
            with pytest.raises(ferrule.PluginCallError, match="on the right thread"):
                counter.fail("on the right thread")


def test_without_debug_mode_no_checks_run(built: Built) -> None:
    plugin = ferrule.PluginHost().load(str(built.ifaces_c))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ferrule.ThreadContractWarning)
        assert plugin.error_from_thread() is True


def test_a_host_that_loads_and_closes_for_ever_keeps_no_closed_plugin(built: Built) -> None:
    """Closed plugins leave the host as it loads more, not only when
    host.plugins is read (100k cycles grew the process by 176 MB)."""
    host = ferrule.PluginHost()
    refs = []
    for _ in range(600):
        plugin = host.load(str(built.ifaces_c))
        refs.append(weakref.ref(plugin))
        plugin.close()
        del plugin
    gc.collect()
    alive = sum(ref() is not None for ref in refs)
    assert alive <= 40, alive  # those closed since the host last dropped closed ones
    assert host.plugins == ()


AT_EXIT = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
import ferrule
from tests import iface_proxies as proxies
plugin = ferrule.load(sys.argv[1])
kept = [plugin.create(proxies.Counter, "c-counter") for _ in range(2)]
print("exiting", flush=True)
"""


def test_instances_alive_at_exit_are_destroyed_before_the_plugin_shuts_down(built: Built) -> None:
    proc = subprocess.run([sys.executable, "-c", AT_EXIT, str(built.ifaces_c)], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == ["create c-counter"] * 2 + ["exiting"] + ["destroy c-counter"] * 2 + [
        "shutdown"]
    assert proc.stderr == ""  # nothing left to run, or to complain, as the interpreter tears down


class SerialCounter:
    """Counter as a Python service that counts the times two threads were inside at once."""

    def __init__(self) -> None:
        self.value = 0
        self.inside = 0
        self.overlaps = 0

    def add(self, n: int) -> int:
        self.inside += 1
        try:
            if self.inside > 1:
                self.overlaps += 1
            value = self.value
            time.sleep(0)  # let another thread in, if the host does not hold it out
            self.value = value + n
            return self.value
        finally:
            self.inside -= 1

    def total(self) -> int:
        return self.value

    def slow_add(self, n: int, micros: int) -> int:
        return self.add(n)

    def name(self) -> str:
        return "python"

    def fail(self, message: str) -> None:
        raise ValueError(message)


def test_a_service_that_is_not_thread_safe_is_called_one_thread_at_a_time(built: Built, call_path: str) -> None:
    # Counter is not thread-safe: host->call holds the service's lock, on the
    # C path as on the Python one; the plugin function releases the GIL.
    host = ferrule.PluginHost()
    service = SerialCounter()
    host.provide(api.Counter, service)
    plugin: Any = host.load(path_of(built, "c"))
    threads = [threading.Thread(target=plugin.counter_loop, args=(300,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (service.overlaps, service.value) == (0, 1200)


class WrongResults(DictStore):
    def __init__(self, result: object) -> None:
        super().__init__()
        self.result = result

    def get(self, key: str) -> Any:
        return self.result


@pytest.mark.parametrize(("result", "message"), [
    (5, "TypeError: the result of Store.get() must be str (str), got int"),
    ("a\0b", "ValueError: the result of Store.get()"),
    (b"bytes", "TypeError: the result of Store.get() must be str (str), got bytes"),
])
def test_a_service_result_of_the_wrong_kind_is_refused_in_the_hosts_words(built: Built, lang: str, result: object,
                                                                         message: str) -> None:
    host = ferrule.PluginHost()
    host.provide(api.Store, WrongResults(result))
    plugin: Any = host.load(path_of(built, lang))
    with pytest.raises(ferrule.PluginCallError) as info:
        plugin.store_get("k")
    assert info.value.plugin_message.startswith(message)


def test_a_service_failure_reaches_the_plugin_as_class_and_message(built: Built, lang: str) -> None:
    host = ferrule.PluginHost()
    host.provide(api.Store, DictStore())
    plugin: Any = host.load(path_of(built, lang))
    with pytest.raises(ferrule.PluginCallError) as info:
        plugin.store_get("missing")
    assert info.value.plugin_message == "KeyError: no key 'missing' in the store"


def test_a_plugin_cannot_call_or_release_what_was_lent_to_another(built: Built, call_path: str) -> None:
    # Tokens are small numbers a plugin could guess: each is good only for
    # the plugin it was lent to, on the C path and the Python one.
    host = ferrule.PluginHost()
    host.provide(api.Store, DictStore())
    owner: Any = host.load(path_of(built, "c"))
    other: Any = host.load(path_of(built, "c"))
    token = owner.hold_store()
    needs = "host->call: Store.get needs arguments, got NULL"  # the owner reaches the store
    assert owner.call_token(token) == needs
    assert other.call_token(token) == "host->call: unknown or released object"
    other.release_token(token)  # ignored: not the other's to give back
    assert owner.call_token(token) == needs
    owner.release_token(token)
    assert owner.call_token(token) == "host->call: unknown or released object"


def test_a_method_may_not_hide_an_attribute_of_every_instance() -> None:
    attributes = set(dir(ferrule.Instance)) | set(ferrule.Instance.__annotations__)  # implementation: set per instance
    public = {name for name in attributes if not name.startswith("_")}
    assert public == idl.RESERVED_METHOD_NAMES
    for name in sorted(public):
        with pytest.raises(TypeError, match=f"{name!r} is an attribute of every instance"):
            idl.interface("org.example.reserved", revision=1)(type("Reserved", (), {
                name: lambda self: None, "__annotations__": {}}))


def test_a_dropped_plugin_shuts_down_at_once_after_making_instances(built: Built, lang: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ferrule.plugin")
    gc.disable()  # no cycle may keep it: the collector is not there to find one
    try:
        plugin = ferrule.load(path_of(built, lang))
        plugin.create(proxies.Counter).close()
        del plugin
        assert "shutdown" in [r.getMessage() for r in caplog.records]
    finally:
        gc.enable()


def test_the_front_doors_annotations_resolve() -> None:
    import typing

    assert typing.get_type_hints(ferrule.load)["return"] is not None


def lender_libs(tmp_path: Path, *names: str) -> list[Path]:
    """Copies of tests/plugins/c/lender.c with one offer (its counters are each copy's own)."""
    from .conftest import CC, INCLUDE, ROOT, run

    libs = []
    for name in names:
        out = tmp_path / f"liblender_{name}.so"
        run([CC, "-shared", "-fPIC", "-O2", f"-I{INCLUDE}", f"-I{ROOT / 'tests' / 'plugins' / 'generated'}",
             "-DONE_OFFER", str(ROOT / "tests" / "plugins" / "c" / "lender.c"), "-o", str(out), "-lpthread"])
        libs.append(out)
    return libs


def test_nothing_stays_lent_after_a_failed_init_or_a_query_in_shutdown(tmp_path: Path) -> None:
    """lender.c's init that queries and then fails, and its shutdown that
    queries: the instances of B they got are destroyed (B counts them)."""
    pa, pb = lender_libs(tmp_path, "loan_a", "loan_b")
    host = ferrule.PluginHost()
    b = host.load(str(pb))
    with pytest.raises(ferrule.PluginInitError):
        host.load(str(pa), config="query-fail")
    assert b.stats().startswith("live=0 "), b.stats()
    a = host.load(str(pa))
    a.set(3, 1)  # its shutdown queries a Counter and keeps it
    a.close()
    assert b.stats().startswith("live=0 "), b.stats()
    b.close()


def test_two_plugins_whose_creates_query_each_other_do_not_deadlock(tmp_path: Path) -> None:
    """tests/plugins/c/lender.c with one offer, loaded twice: each create
    queries a Counter, which the host lends from the other plugin, so two
    threads creating at once would each hold its own plugin's create lock and
    wait for the other's. One re-entrant lock per host serves both (the Rust
    host's lending.rs plays the same)."""
    libs = lender_libs(tmp_path, "a", "b")
    host = ferrule.PluginHost()
    a, b = (host.load(str(p)) for p in libs)
    a.set(1, 1)
    b.set(1, 1)  # each create queries a Counter (and keeps it until its destroy)

    def creates(plugin: Any) -> None:
        for _ in range(300):
            plugin.create(api.Counter).close()

    threads = [threading.Thread(target=creates, args=(p,), daemon=True) for p in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "the two creates deadlocked"
    a.close()
    b.close()
