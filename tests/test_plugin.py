"""The plugin host against real Rust and C plugins: metadata, every type,
argument checking, errors, panics, logging and the lifecycle."""

from __future__ import annotations

import inspect
import logging
import pydoc
import threading

import pytest

import ferrule

from .conftest import Built

KITCHEN_LOGGER = "ferrule.plugin.org.ferrule.tests.kitchen"

# Every test runs on both call paths (C accelerator and cffi fallback):
# the same assertions must hold on each.
pytestmark = pytest.mark.usefixtures("call_path")


def kitchen_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == KITCHEN_LOGGER]


@pytest.fixture()
def kitchen(built: Built):  # type: ignore[no-untyped-def]
    with ferrule.load(built.kitchen, config="ok") as plugin:
        yield plugin


def test_metadata(kitchen: ferrule.Plugin, built: Built) -> None:
    assert kitchen.id == "org.ferrule.tests.kitchen"
    assert kitchen.name == "Kitchen Sink"
    assert kitchen.version == "1.2.3"
    assert kitchen.description == "Every type the ABI carries."
    assert kitchen.license == "Apache-2.0"
    assert kitchen.abi_version == (1, 2)
    assert kitchen.path == str(built.kitchen.resolve())
    assert "echo_i8" in kitchen.functions
    assert str(kitchen.functions["add"].signature) == "(a: i64, b: i64) -> i64"
    assert str(kitchen.functions["nothing"].signature) == "()"
    assert str(kitchen.functions["log_at"].signature) == "(level: u8, msg: str)"
    assert all(fn.thread_safe for fn in kitchen)


INTS = [
    ("i8", -(2**7), 2**7 - 1),
    ("i16", -(2**15), 2**15 - 1),
    ("i32", -(2**31), 2**31 - 1),
    ("i64", -(2**63), 2**63 - 1),
    ("u8", 0, 2**8 - 1),
    ("u16", 0, 2**16 - 1),
    ("u32", 0, 2**32 - 1),
    ("u64", 0, 2**64 - 1),
]


@pytest.mark.parametrize(("kind", "low", "high"), INTS, ids=[i[0] for i in INTS])
def test_integers_round_trip_and_are_range_checked(kitchen: ferrule.Plugin, kind: str, low: int, high: int) -> None:
    echo = kitchen.functions[f"echo_{kind}"]
    for value in (low, high, 0, 1, low // 3, high // 3):
        assert echo(value) == value
    for bad in (low - 1, high + 1):
        with pytest.raises(ValueError, match=rf"echo_{kind}\(\) argument 'v': {bad} is out of range for {kind} \({low} to {high}\)"):
            echo(bad)


def test_floats_bools_text_bytes(kitchen: ferrule.Plugin) -> None:
    assert kitchen.echo_f64(1.5e300) == 1.5e300
    assert kitchen.echo_f64(-0.1) == -0.1
    assert kitchen.echo_f32(0.5) == 0.5
    assert kitchen.echo_f32(0.1) == pytest.approx(0.1, rel=1e-7)
    assert kitchen.echo_f64(3) == 3.0
    assert kitchen.echo_bool(True) is True and kitchen.echo_bool(False) is False
    assert kitchen.echo_str("héllo wörld ✓") == "héllo wörld ✓"
    assert kitchen.echo_str("") == ""
    assert kitchen.upper("ferrule") == "FERRULE"
    assert kitchen.static_str() == "static hello"
    blob = bytes(range(256)) * 10
    assert kitchen.echo_bytes(blob) == blob
    assert kitchen.echo_bytes(bytearray(b"\x00\x01")) == b"\x00\x01"
    assert kitchen.echo_bytes(memoryview(blob)[10:20]) == blob[10:20]
    assert kitchen.len_bytes(b"") == 0 and kitchen.len_bytes(blob) == len(blob)
    assert kitchen.nothing() is None
    assert kitchen.mixed(-3, 500, 0.25, True, 1.5) == pytest.approx(-3 + 500 + 0.25 + 1 + 1.5)
    assert kitchen.add(a=2, b=3) == 5 and kitchen.add(2, b=3) == 5


def test_argument_errors_name_function_and_parameter(kitchen: ferrule.Plugin) -> None:
    with pytest.raises(TypeError, match=r"add\(a: i64, b: i64\) -> i64 takes 2 arguments, 1 given"):
        kitchen.add(1)
    with pytest.raises(TypeError, match=r"add\(\) argument 'b' must be int \(i64\), got str"):
        kitchen.add(1, "2")
    with pytest.raises(TypeError, match=r"add\(\) argument 'a' must be int \(i64\), got float"):
        kitchen.add(1.0, 2)
    with pytest.raises(TypeError, match=r"argument 'v' must be int \(u8\), got bool"):
        kitchen.echo_u8(True)
    with pytest.raises(TypeError, match=r"echo_bool\(\) argument 'v' must be bool \(bool\), got int"):
        kitchen.echo_bool(1)
    with pytest.raises(TypeError, match=r"echo_str\(\) argument 's' must be str \(str\), got bytes"):
        kitchen.echo_str(b"x")
    with pytest.raises(TypeError, match=r"echo_bytes\(\) argument 'b' must be bytes-like object \(bytes\), got str"):
        kitchen.echo_bytes("x")
    with pytest.raises(ValueError, match=r"echo_f32\(\) argument 'v': 1e\+300 is out of range for f32"):
        kitchen.echo_f32(1e300)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'c'"):
        kitchen.add(1, c=2)
    with pytest.raises(TypeError, match=r"multiple values for argument 'a'"):
        kitchen.add(1, a=2)
    with pytest.raises(TypeError, match=r"missing argument: b"):
        kitchen.add(a=1)
    with pytest.raises(ValueError, match="not contiguous"):
        kitchen.echo_bytes(memoryview(b"abcdef")[::2])
    assert kitchen.add(1, 2) == 3


def test_result_error_and_panic(kitchen: ferrule.Plugin, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ferrule.PluginCallError) as info:
        kitchen.fail("disk is full")
    assert type(info.value) is ferrule.PluginCallError
    assert str(info.value) == "plugin 'org.ferrule.tests.kitchen' function 'fail' failed: disk is full"
    with pytest.raises(ferrule.PluginPanicError, match=r"function 'boom' panicked: panicked at .*lib\.rs:\d+:\d+: kaboom 42") as panic:
        kitchen.boom("kaboom 42")
    assert "kaboom 42" in panic.value.plugin_message
    # The host and the same instance keep working after a panic.
    for _ in range(3):
        with pytest.raises(ferrule.PluginPanicError):
            kitchen.boom("again")
    assert kitchen.add(40, 2) == 42


def test_logging_goes_to_a_logger_named_after_the_plugin(kitchen: ferrule.Plugin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1, logger=KITCHEN_LOGGER)
    for level in range(5):
        kitchen.log_at(level, f"message {level}")
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name == KITCHEN_LOGGER]
    assert records == [
        (KITCHEN_LOGGER, 5, "message 0"),
        (KITCHEN_LOGGER, logging.DEBUG, "message 1"),
        (KITCHEN_LOGGER, logging.INFO, "message 2"),
        (KITCHEN_LOGGER, logging.WARNING, "message 3"),
        (KITCHEN_LOGGER, logging.ERROR, "message 4"),
    ]


def test_lifecycle_init_config_and_shutdown_once(built: Built, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=KITCHEN_LOGGER)
    plugin = ferrule.load(built.kitchen, config={"threads": 2})
    assert plugin.add(1, 2) == 3
    plugin.close()
    plugin.close()
    assert plugin.closed
    with pytest.raises(ferrule.PluginClosedError, match="plugin 'org.ferrule.tests.kitchen' is closed: load it again"):
        plugin.add(1, 2)
    messages = kitchen_messages(caplog)
    assert messages == ['kitchen init: {"threads": 2}', "kitchen shutdown"]


def test_context_manager_shuts_down(built: Built, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=KITCHEN_LOGGER)
    with ferrule.load(built.kitchen) as plugin:
        assert plugin.echo_i32(-7) == -7
    assert plugin.closed
    assert kitchen_messages(caplog).count("kitchen shutdown") == 1


def test_unclosed_plugin_is_shut_down_when_collected(built: Built, caplog: pytest.LogCaptureFixture) -> None:
    import gc

    caplog.set_level(logging.INFO, logger=KITCHEN_LOGGER)
    plugin = ferrule.load(built.kitchen)
    del plugin
    gc.collect()
    assert kitchen_messages(caplog).count("kitchen shutdown") == 1


def test_rust_init_failure_and_panic(built: Built) -> None:
    with pytest.raises(ferrule.PluginInitError, match=r"plugin 'org.ferrule.tests.kitchen' failed to initialise: bad config: please fail"):
        ferrule.load(built.kitchen, config="please fail")
    with pytest.raises(ferrule.PluginInitError, match=r"plugin 'org.ferrule.tests.kitchen' panicked in init: panicked at .*init exploded"):
        ferrule.load(built.kitchen, config="panic")
    with ferrule.load(built.kitchen) as plugin:
        assert plugin.add(1, 1) == 2


def test_repr_and_help_show_signatures_and_docs(kitchen: ferrule.Plugin) -> None:
    text = repr(kitchen)
    assert "org.ferrule.tests.kitchen" in text
    assert "add(a: i64, b: i64) -> i64" in text
    add = kitchen.add
    assert repr(add) == "<ferrule function org.ferrule.tests.kitchen.add(a: i64, b: i64) -> i64>"
    assert str(inspect.signature(add)) == "(a: int, b: int) -> int"
    assert add.doc
    page = pydoc.render_doc(add, renderer=pydoc.plaintext)
    assert "add(a: i64, b: i64) -> i64" in page and add.doc in page
    assert "echo_str" in dir(kitchen)
    with pytest.raises(AttributeError, match="has no function 'nope'"):
        kitchen.nope  # noqa: B018


def test_c_plugin_and_host_allocated_text(built: Built) -> None:
    with ferrule.load(built.calc) as calc:
        assert calc.id == "org.ferrule.examples.calc"
        assert calc.mul(-6, 7) == -42
        assert calc.hypot(3.0, 4.0) == 5.0
        assert calc.reverse("ferrule") == "elurref"
        assert not calc.functions["mul"].thread_safe


def test_non_thread_safe_functions_are_serialised(built: Built) -> None:
    # calc's counter is a plain increment: without the host's lock, threads lose updates.
    with ferrule.load(built.calc) as calc:
        def work() -> None:
            for _ in range(2000):
                calc.mul(1, 1)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert calc.calls() == 8001


def test_close_waits_for_calls_in_flight(built: Built) -> None:
    plugin = ferrule.load(built.kitchen)
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                plugin.echo_str("x" * 1000)
            except ferrule.PluginClosedError:
                return
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    plugin.close()
    stop.set()
    for t in threads:
        t.join()
    assert errors == []


def test_two_instances_of_one_library(built: Built) -> None:
    with ferrule.load(built.calc) as a, ferrule.load(built.calc) as b:
        a.calls(), a.calls()
        assert b.calls() == 1
        assert a.calls() == 3


def test_argument_edge_cases(kitchen: ferrule.Plugin) -> None:
    class Weird(str):
        def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
            return b"\xff not utf-8"

    class Index:
        def __index__(self) -> int:
            return 7

    class BadIndex:
        def __index__(self) -> float:
            return 1.5

    assert kitchen.echo_str(Weird("plain")) == "plain"
    assert kitchen.echo_u8(Index()) == 7
    with pytest.raises(TypeError, match=r"echo_u8\(\) argument 'v' must be int \(u8\), got BadIndex"):
        kitchen.echo_u8(BadIndex())
    with pytest.raises(ValueError, match=r"argument 'v': a 16610-bit integer is out of range for i64"):
        kitchen.echo_i64(10**5000)
    with pytest.raises(ValueError, match=r"echo_f64\(\) argument 'v': integer too large for f64"):
        kitchen.echo_f64(10**400)
    with pytest.raises(ValueError, match=r"echo_str\(\) argument 's': cannot encode as UTF-8: surrogates not allowed"):
        kitchen.echo_str("\ud800")


def test_config_forms(built: Built, caplog: pytest.LogCaptureFixture) -> None:
    from types import MappingProxyType

    caplog.set_level(logging.INFO, logger=KITCHEN_LOGGER)
    ferrule.load(built.kitchen, config=MappingProxyType({"a": 1})).close()
    assert 'kitchen init: {"a": 1}' in [r.getMessage() for r in caplog.records]
    with pytest.raises(TypeError, match="config must be str, a mapping"):
        ferrule.load(built.kitchen, config=b"x")  # type: ignore[arg-type]
