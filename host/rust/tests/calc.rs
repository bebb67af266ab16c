//! The Rust host on the example C calculator, built here with the system's
//! C compiler: typed and dynamic calls, the thread contract, close.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use ferrule_host::{Arg, ErrorKind, LoadOptions, Plugin, Value};

fn calc() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| common::build_c_plugin("examples/c_plugin/calc.c", "libcalc.so", &["-lm"]))
}

#[test]
fn typed_and_dynamic_calls() {
    let plugin = Plugin::load(calc(), LoadOptions::default()).unwrap();
    let d = plugin.descriptor();
    assert_eq!((d.id.as_str(), d.abi_version), ("org.ferrule.examples.calc", (1, 2)));
    let mul = plugin.typed::<(i64, i64), i64>("mul").unwrap();
    assert_eq!(mul.call((6, 7)).unwrap(), 42);
    let hypot = plugin.typed::<(f64, f64), f64>("hypot").unwrap();
    assert_eq!(hypot.call((3.0, 4.0)).unwrap(), 5.0);
    assert_eq!(plugin.call("reverse", &mut [Arg::from("stressed")]).unwrap(), Value::Str("desserts".into()));
    let err = plugin.typed::<(i64, i64), i64>("checked_div").unwrap().call((1, 0)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PluginCall);
    assert_eq!(err.plugin_message(), Some("checked_div: division by zero"));
    let wrong = plugin.typed::<(i32, i64), i64>("mul").err().unwrap();
    assert_eq!(wrong.kind(), ErrorKind::Type);
    assert!(wrong.message().contains("is mul(a: i64, b: i64) -> i64, not the Rust types (i32, i64) -> i64"), "{wrong}");
    assert_eq!(plugin.typed::<(), i64>("nope").err().unwrap().kind(), ErrorKind::NoSuchFunction);
}

#[test]
fn calls_that_are_not_thread_safe_are_serialised() {
    // calc's functions are not thread-safe; its call counter is a plain
    // static, so overlapping calls would lose counts.
    let plugin = Plugin::load(calc(), LoadOptions::default().config("{}")).unwrap();
    let calls = plugin.typed::<(), u64>("calls").unwrap();
    let before = calls.call(()).unwrap();
    let mul = plugin.typed::<(i64, i64), i64>("mul").unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let mul = mul.clone();
            s.spawn(move || {
                for i in 0..10_000 {
                    assert_eq!(mul.call((i, 2)).unwrap(), 2 * i);
                }
            });
        }
    });
    assert_eq!(calls.call(()).unwrap(), before + 40_001);
}

#[test]
fn close_runs_shutdown_once_and_refuses_later_calls() {
    let plugin = Plugin::load(calc(), LoadOptions::default()).unwrap();
    let mul = plugin.typed::<(i64, i64), i64>("mul").unwrap();
    plugin.close().unwrap();
    plugin.close().unwrap();
    assert!(plugin.closed());
    let err = mul.call((1, 2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PluginClosed);
    assert_eq!(err.message(), "plugin 'org.ferrule.examples.calc' is closed: load it again to call it");
}

#[test]
fn a_bare_name_is_looked_up_in_ferrule_path_only() {
    let err = Plugin::load("calc", LoadOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LibraryNotFound);
    assert!(err.message().starts_with("no plugin libcalc.so in FERRULE_PATH"), "{err}");
}

/// Plugin logs, with the thread that wrote them (tests run in parallel).
struct Logs(std::sync::Mutex<Vec<(std::thread::ThreadId, String)>>);

impl log::Log for Logs {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push((std::thread::current().id(), record.args().to_string()));
    }
    fn flush(&self) {}
}

static LOGS: Logs = Logs(std::sync::Mutex::new(Vec::new()));

fn shutdowns_here() -> usize {
    let me = std::thread::current().id();
    LOGS.0.lock().unwrap().iter().filter(|(t, m)| *t == me && m == "calc shutting down").count()
}

#[test]
fn a_typed_handle_holds_the_shutdown_off_until_it_is_dropped() {
    let _ = log::set_logger(&LOGS);
    log::set_max_level(log::LevelFilter::Info);
    let plugin = Plugin::load(calc(), LoadOptions::default()).unwrap();
    let mul = plugin.typed::<(i64, i64), i64>("mul").unwrap();
    let again = mul.clone();
    plugin.close().unwrap();
    assert_eq!(shutdowns_here(), 0, "a typed handle is alive: the shutdown waits");
    assert_eq!(again.call((2, 3)).unwrap_err().kind(), ErrorKind::PluginClosed);
    drop(mul);
    assert_eq!(shutdowns_here(), 0, "one handle is left");
    drop(again);
    assert_eq!(shutdowns_here(), 1, "the last handle ran the shutdown");
    drop(plugin);
    assert_eq!(shutdowns_here(), 1, "once");
}
