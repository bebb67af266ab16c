"""Interfaces declared in Rust (``ferrule_sdk::interface!``) and in Python
(``ferrule.idl``) are one declaration: the test plugin built only from the
Rust declarations of tests/plugins/rust/declared_api (tests/iface_api.py's
interfaces, rewritten) is driven through the proxies generated from the
Python ones, uses Python services, and swaps implementations with the plugin
built from the generated bindings."""

from __future__ import annotations

import array
import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

import ferrule
from ferrule import idl
from tests import iface_api as api
from tests import iface_proxies as proxies

from .conftest import ROOT, Built
from .test_interfaces import DictStore, DictStore2

DECLARED = {"counter": api.Counter, "shapes": api.Shapes, "store": api.Store, "store2": api.Store2}


@pytest.fixture(scope="module")
def rust_layouts(built: Built) -> dict[str, dict[str, object]]:
    """What the api crate's declarations compiled to: name -> layout, fingerprint."""
    out = subprocess.run([str(built.declared_layouts)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture
def plugin(built: Built, call_path: str) -> Iterator[ferrule.Plugin]:
    with ferrule.PluginHost().load(str(built.declared)) as p:
        yield p


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_the_rust_declaration_has_the_python_layout(rust_layouts: dict[str, dict[str, object]], name: str) -> None:
    spec = idl.spec(DECLARED[name])
    assert rust_layouts[name]["layout"] == spec.layout
    assert rust_layouts[name]["fingerprint"] == spec.fingerprint


def test_the_deliberately_different_declaration_differs(rust_layouts: dict[str, dict[str, object]]) -> None:
    changed = rust_layouts["mismatched.store"]
    spec = idl.spec(api.Store)
    assert changed["layout"] == spec.layout.replace("put(str, str)", "put(str, bytes)") != spec.layout
    assert changed["fingerprint"] != spec.fingerprint


def test_the_host_accepts_what_the_plugin_offers(plugin: ferrule.Plugin) -> None:
    offered = {(o.id, o.revision, o.name, o.fingerprint, o.layout) for o in plugin.interfaces}
    counter, shapes = idl.spec(api.Counter), idl.spec(api.Shapes)
    assert offered == {
        (counter.id, 1, "declared-counter", counter.fingerprint, counter.layout),
        (shapes.id, 1, "declared-shapes", shapes.fingerprint, shapes.layout),
    }
    impl = plugin.implementation(proxies.Counter)
    assert impl is not None and not impl.thread_safe
    assert plugin.implementation(proxies.Shapes).thread_safe  # type: ignore[union-attr]


def test_every_counter_method(plugin: ferrule.Plugin) -> None:
    with plugin.create(proxies.Counter, "declared-counter") as counter:
        assert counter.add(5) == 5
        assert counter.add(-2) == 3
        assert counter.slow_add(4, 10) == 7
        assert counter.total() == 7
        assert counter.name() == "declared-counter"
        with pytest.raises(ferrule.PluginCallError, match="boom here") as info:
            counter.fail("boom here")
        assert info.value.plugin_message == "boom here"
        assert counter.total() == 7


def test_every_shapes_method(plugin: ferrule.Plugin) -> None:
    with plugin.create(proxies.Shapes) as shapes:
        rect = api.Rect(api.Point(-3, 4), 5, 6, True, 0)
        assert shapes.area(rect) == 30
        assert shapes.grow(rect, 2) == api.Rect(api.Point(-5, 2), 9, 10, True, 90)
        assert shapes.mix(True, -8, 65535, 0.5, 0.25, 1 << 40) == pytest.approx(-8 + 65535 + 0.75 + (1 << 40))
        assert shapes.mix(False, 1, 2, 3.0, 4.0, 5) == -15.0
        assert shapes.sum(array.array("d", [1.5, 2.5, 3.0])) == 7.0
        target = array.array("i", [0] * 5)
        shapes.fill(target, -7)
        assert list(target) == [-7] * 5
        first, second = shapes.token("alpha"), shapes.token("beta")
        assert isinstance(first, api.Token) and int(second) == int(first) + 1
        assert shapes.label(second) == "beta"
        with pytest.raises(ferrule.PluginCallError, match="unknown token 999"):
            shapes.label(api.Token(999))
        assert shapes.echo(b"\x00bytes\xff") == b"\x00bytes\xff"
        assert shapes.apply(lambda x: x * 3, 14) == 42


def test_declared_clients_call_python_services(built: Built, call_path: str) -> None:
    host = ferrule.PluginHost()
    store, store2 = DictStore(), DictStore2()
    host.provide(api.Store, store)
    host.provide(api.Store2, store2)
    with host.load(str(built.declared)) as plugin:
        assert plugin.store_roundtrip("k", "välue") == "välue"
        assert store.calls == ["put k", "get k"] and store2.calls == []
        with pytest.raises(ferrule.PluginCallError, match="no key 'missing' in the store"):
            plugin.store_get("missing")
        store2.data.update(x="1", y="2")
        assert plugin.store2_count() == 2


@pytest.mark.parametrize("other", ["rust", "c"])
def test_declared_and_generated_plugins_use_each_other(built: Built, other: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ferrule.plugin")
    host = ferrule.PluginHost()
    declared = host.load(str(built.declared))
    generated = host.load(str(built.ifaces_rust if other == "rust" else built.ifaces_c))
    # Each prefers the other plugin's counter.
    assert declared.counter_via_host(21) == 42
    assert generated.counter_via_host(4) == 8
    messages = [r.getMessage() for r in caplog.records]
    assert f"create {other}-counter" in messages and f"destroy {other}-counter" in messages
    assert "create declared-counter" in messages and "destroy declared-counter" in messages
    # The declared client calls every client method of a Shapes the host lends:
    # the generated plugin's, as another plugin's implementation comes first.
    assert declared.shapes_via_host() == "unknown token 999"
    assert [i.name for i in host.implementations(proxies.Shapes)] == ["declared-shapes", f"{other}-shapes"]


def test_a_rust_host_uses_the_declarations_too(built: Built) -> None:
    # tests/plugins/rust/declared_host: ferrule-host with only declared_api's
    # declarations makes instances of the plugin's implementations, calls
    # every method through the declared clients, and provides a Store
    # service that the plugin's declared client calls.
    proc = subprocess.run([str(built.declared_host), str(built.declared)], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def test_a_different_declaration_is_refused(plugin: ferrule.Plugin, caplog: pytest.LogCaptureFixture) -> None:
    @idl.interface("org.ferrule.test.counter", revision=1)
    class ChangedCounter(Protocol):
        def add(self, n: idl.i32) -> idl.i64: ...
        def total(self) -> idl.i64: ...
        def slow_add(self, n: idl.i64, spin_us: idl.u32) -> idl.i64: ...
        def name(self) -> str: ...
        def fail(self, message: str) -> None: ...

    with pytest.raises(ferrule.InterfaceMismatchError) as info:
        plugin.implementations(ChangedCounter)
    assert "line 5: host has 'method 0 add(i32) -> i64', plugin has 'method 0 add(i64) -> i64'" in str(info.value)
    assert info.value.found_layout == idl.spec(api.Counter).layout


def test_a_client_of_a_different_declaration_gets_nothing(built: Built, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    host = ferrule.PluginHost()
    host.provide(api.Store, DictStore())
    with host.load(str(built.declared)) as plugin:
        assert plugin.mismatched_store_found() is False
        assert plugin.store_roundtrip("a", "b") == "b"  # the right declaration is served
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("asked for org.ferrule.test.store/1 with layout fingerprint" in m for m in warned), warned


def D(items: str) -> str:
    """An invocation of the macro with these items."""
    return f"ferrule_sdk::interface! {{ {items} }}"


REFUSED = {
    "non-field type": (D("pub struct P { y: String }"), "struct P field y is `String`: struct fields are numbers, bool"),
    "buffer result": (D("#[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { fn f() -> mutbuf[u8]; }"),
                      "A::f returns `mutbuf[u8]`: a result is a number, bool, str, bytes"),
    "bad option": (D("#[interface(id = \"x.y\", revision = 1, thread_safe = maybe)] pub mod a: trait A { fn f(); }"),
                   "cannot read `#[interface(id = \"x.y\", revision = 1, thread_safe = maybe)]` on mod a"),
    "no colon": (D("#[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { fn f(x u32); }"),
                 "cannot read the parameters of A::f, `x u32`"),
    "self": (D("#[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { fn f(&self); }"),
             "cannot read the parameters of A::f, `&self`: write `name: TYPE, ...` (no `self`)"),
    "buffer of str": (D("#[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { fn f(x: buf[str]); }"),
                      "`buf[str]` / `mutbuf[str]`: the element type of a buffer is a number"),
    "Rust type": (D("#[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { fn f(x: String); }"),
                  "`String` is not an interface type: use bool, i8"),
    "id": (D("#[interface(id = \"nodots\", revision = 1)] pub mod a: trait A { fn f(); }"),
           "interface A: id \"nodots\" is not reverse-DNS"),
    "revision 0": (D("#[interface(id = \"x.y\", revision = 0)] pub mod a: trait A { fn f(); }"),
                   "interface A: the revision counts from 1, got 0"),
    "reserved method": (D("#[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { fn close(); }"),
                        "interface A method `close`: the name is an attribute of every Python instance"),
    "out": (D("#[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { fn f(out: u8); }"),
            "interface A method `f`: `out` is reserved for struct results"),
    "no methods": (D("#[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { }"), "interface A declares no methods"),
    "struct as handle": (D("pub struct P { x: u8 } #[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { fn f(p: handle P); }"),
                         "`P` is not a handle declared with ferrule_sdk::interface!"),
    "two structs of one name": (
        "mod other { " + D("pub struct P { y: u8 }") + " } use other::P as Q; "
        + D("pub struct P { x: u8 } pub struct R { a: struct P, b: struct Q } "
            "#[interface(id = \"x.y\", revision = 1)] pub mod a: trait A { fn f(r: struct R); }"),
        "the interface uses two different structs of one name; rename one"),
}


@pytest.fixture(scope="module")
def refused_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refused-target")


def cargo_check(source: str, crate: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """`cargo check` of a library crate whose lib.rs is ``source``, on ferrule-sdk."""
    (crate / "src").mkdir()
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "refused"\nversion = "0.1.0"\nedition = "2021"\n\n[workspace]\n\n'
        f'[dependencies]\nferrule-sdk = {{ path = "{ROOT / "sdk" / "rust"}" }}\n')
    (crate / "src" / "lib.rs").write_text(source + "\n")
    return subprocess.run(["cargo", "check", "--quiet", "--target-dir", str(target)], cwd=crate,
                          capture_output=True, text=True)


def test_a_good_declaration_compiles(tmp_path: Path, refused_target: Path) -> None:
    # The control of the test below: only the declarations are wrong there.
    proc = cargo_check(D("pub struct P { x: u8 } pub handle H; #[interface(id = \"x.y\", revision = 1)] "
                         "pub mod a: trait A { fn f(p: struct P, h: handle H, o: u8) -> struct P; }"),
                       tmp_path, refused_target)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_ferrule_idl_refuses_does_not_compile(case: str, tmp_path: Path, refused_target: Path) -> None:
    source, message = REFUSED[case]
    proc = cargo_check(source, tmp_path, refused_target)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
