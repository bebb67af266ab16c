//! Interface instances and services through the Rust host, on the C plugin
//! tests/plugins/c/ifaces.c and the bindings `ferrule generate --rust-host`
//! wrote from tests/iface_api.py.

mod common;

#[allow(clippy::all, unused_imports)]
#[path = "../../../tests/plugins/generated/iface_host.rs"]
mod api;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use ferrule_host::{Arg, ErrorKind, LoadOptions, Plugin, PluginHost, Value};

fn ifaces() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let include = format!("-I{}", concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/plugins/generated"));
        common::build_c_plugin("tests/plugins/c/ifaces.c", "libifaces_c.so", &[&include, "-lpthread"])
    })
}

fn load() -> Plugin {
    Plugin::load(ifaces(), LoadOptions::default()).expect("ifaces.c loads")
}

const PLUGIN: &str = "'org.ferrule.test.ifaces_c'";

#[test]
fn counters_are_instances_with_their_own_state() {
    let plugin = load();
    let mut a = api::counter::create(&plugin, None).unwrap();
    let mut b = api::counter::create(&plugin, Some("c-counter-b")).unwrap();
    assert_eq!(a.add(5).unwrap(), 5);
    assert_eq!(a.add(2).unwrap(), 7);
    assert_eq!(b.add(1).unwrap(), 1);
    assert_eq!((a.total().unwrap(), b.total().unwrap()), (7, 1));
    assert_eq!(a.name().unwrap(), "c-counter");
    assert_eq!(b.name().unwrap(), "c-counter-b");
    let e = a.fail("no luck").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PluginCall);
    assert_eq!(e.message(), format!("plugin {PLUGIN} function 'Counter.fail' failed: no luck"));
    assert_eq!(e.plugin_message(), Some("no luck"));
    let names: Vec<&str> =
        plugin.implementations(&api::counter::SPEC).unwrap().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["c-counter", "c-counter-b"]);
}

#[test]
fn the_dynamic_path_checks_methods_as_the_python_host_does() {
    let plugin = load();
    let counter = plugin.create(&api::counter::SPEC, None).unwrap();
    assert_eq!(counter.call("add", &mut [Arg::from(40)]).unwrap(), Value::I64(40));
    assert_eq!(counter.call("add", &mut [Arg::from(2)]).unwrap(), Value::I64(42));
    let e = counter.call("add", &mut []).unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::Type, "Counter.add(n: i64) -> i64 takes 1 argument, 0 given"));
    let e = counter.call("add", &mut [Arg::from("x")]).unwrap_err();
    assert_eq!(e.message(), "Counter.add() argument 'n' must be int (i64), got str");
    let e = counter.call("nope", &mut []).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchFunction);
    assert_eq!(e.message(), format!("Counter instance 'c-counter' of plugin {PLUGIN} has no method 'nope'"));
    counter.close().unwrap();
    let e = counter.call("total", &mut []).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PluginClosed);
    assert_eq!(e.message(), format!("Counter instance 'c-counter' of plugin {PLUGIN} is closed: create another"));
}

#[test]
fn every_kind_of_parameter_crosses() {
    let plugin = load();
    let shapes = api::shapes::create(&plugin, None).unwrap();
    let rect = api::Rect { origin: api::Point { x: 1, y: 2 }, width: 3, height: 4, filled: true, area_hint: 0 };
    assert_eq!(shapes.area(rect).unwrap(), 12);
    let grown = shapes.grow(rect, 2).unwrap();
    // grow moves the origin out by 2 and widens each side by 2.
    assert_eq!(grown, api::Rect { origin: api::Point { x: -1, y: 0 }, width: 7, height: 8, filled: true, area_hint: 56 });
    let mixed = shapes.mix(true, -3, 7, 1.5, 2.25, 10).unwrap();
    assert!(mixed.is_finite());
    assert_eq!(shapes.sum(&[1.0, 2.5, 3.5]).unwrap(), 7.0);
    let mut target = [0i32; 4];
    shapes.fill(&mut target, 9).unwrap();
    assert_eq!(target, [9; 4]);
    let token = shapes.token("label me").unwrap();
    assert_eq!(shapes.label(token).unwrap(), "label me");
    assert_eq!(shapes.echo(b"\x00\xffbytes").unwrap(), b"\x00\xffbytes");
    // A host function through the dynamic path (the client skips `apply`).
    let inner = shapes.into_inner();
    let double = |args: &[Value]| match args {
        [Value::I64(x)] => Ok(Value::I64(x * 2)),
        _ => unreachable!("apply passes one i64"),
    };
    assert_eq!(inner.call("apply", &mut [Arg::HostFn(&double), Arg::from(21)]).unwrap(), Value::I64(42));
}

#[test]
fn a_missing_or_different_implementation_is_refused_with_the_python_hosts_words() {
    let plugin = load();
    let e = plugin.create(&api::counter::SPEC, Some("other")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoImplementation);
    assert_eq!(
        e.message(),
        format!(
            "plugin {PLUGIN} offers no implementation of org.ferrule.test.counter/1 named 'other' (it offers \
             'c-counter', 'c-counter-b')"
        )
    );
    let e = plugin.create(&api::store::SPEC, None).unwrap_err();
    assert_eq!(e.message(), format!("plugin {PLUGIN} offers no implementation of org.ferrule.test.store/1"));
    // The same id and revision from another layout: the declaration changed without a new revision.
    let changed = ferrule_host::InterfaceSpec {
        layout: "ferrule-layout 1\ninterface org.ferrule.test.counter\nrevision 1\nthread-safe no\nmethod 0 add(i32) -> i64\n",
        fingerprint: 0x1234,
        ..api::counter::SPEC
    };
    let e = plugin.create(&changed, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InterfaceMismatch);
    assert!(
        e.message().starts_with(&format!(
            "plugin {PLUGIN} implementation 'c-counter' of org.ferrule.test.counter/1 has layout fingerprint {:#018x}, \
             the host's declaration Counter has 0x0000000000001234; first difference: line 5: host has \
             'method 0 add(i32) -> i64', plugin has 'method 0 add(i64) -> i64'. Regenerate the plugin's code",
            api::counter::FINGERPRINT
        )),
        "{}",
        e.message()
    );
    // A client is made only from an instance of its own interface.
    let counter = plugin.create(&api::counter::SPEC, None).unwrap();
    assert!(api::shapes::Client::new(counter).is_err());
}

#[test]
fn the_plugins_shutdown_waits_for_its_last_instance() {
    let plugin = load();
    let mut counter = api::counter::create(&plugin, None).unwrap();
    plugin.close().unwrap();
    assert!(plugin.closed());
    // New instances are refused; the live one still works until it goes.
    let e = plugin.create(&api::counter::SPEC, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PluginClosed);
    assert_eq!(counter.add(3).unwrap(), 3);
    drop(counter);
}

/// The host's store: the Store service plugins query.
struct Words(Mutex<HashMap<String, String>>);

impl api::store::Store for Words {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(Words(Mutex::new(HashMap::new())))
    }

    fn get(&self, key: &str) -> Result<String, String> {
        self.0.lock().unwrap().get(key).cloned().ok_or_else(|| format!("no key {key:?}"))
    }

    fn put(&self, key: &str, value: &str) -> Result<(), String> {
        self.0.lock().unwrap().insert(key.to_string(), value.to_string());
        Ok(())
    }
}

#[test]
fn plugins_call_services_the_rust_host_provides() {
    let host = PluginHost::new();
    host.provide(api::store::service(Words(Mutex::new(HashMap::new()))));
    let plugin = host.load(ifaces(), LoadOptions::default()).unwrap();
    let got = plugin.call("store_roundtrip", &mut [Arg::from("colour"), Arg::from("blue")]).unwrap();
    assert_eq!(got, Value::Str("blue".into()));
    assert_eq!(plugin.call("store_get", &mut [Arg::from("colour")]).unwrap(), Value::Str("blue".into()));
    // The service's error reaches the plugin, which fails with it.
    let e = plugin.call("store_get", &mut [Arg::from("size")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PluginCall);
    assert!(e.message().contains("no key \"size\""), "{}", e.message());
    // Revision 2 is not provided: the plugin's query finds nothing.
    assert!(plugin.call("store2_count", &mut []).is_err());
    assert_eq!(plugin.call("query_missing", &mut []).unwrap(), Value::Bool(true));
}

#[test]
fn plugins_get_implementations_of_loaded_plugins() {
    let host = PluginHost::new();
    let plugin = host.load(ifaces(), LoadOptions::default()).unwrap();
    // counter_via_host queries a Counter: the host lends an instance of the plugin's own c-counter.
    assert_eq!(plugin.call("counter_via_host", &mut [Arg::from(4)]).unwrap(), Value::I64(8));
    assert_eq!(plugin.call("counter_loop", &mut [Arg::from(1000)]).unwrap(), Value::I64(1000));
    // Plugin::load alone lends nothing.
    let alone = load();
    assert!(alone.call("counter_via_host", &mut [Arg::from(4)]).is_err());
}

#[test]
fn what_was_lent_to_one_plugin_is_not_anothers() {
    let host = PluginHost::new();
    host.provide(api::store::service(Words(Mutex::new(HashMap::new()))));
    let first = host.load(ifaces(), LoadOptions::default()).unwrap();
    let token = first.call("hold_store", &mut []).unwrap();
    let Value::U64(token) = token else { panic!("a token: {token:?}") };
    assert_ne!(token, 0);
    let other = PluginHost::new().load(ifaces(), LoadOptions::default()).unwrap();
    let told = other.call("call_token", &mut [Arg::from(token)]).unwrap();
    assert_eq!(told, Value::Str("host->call: unknown or released object".into()));
    first.call("release_token", &mut [Arg::from(token)]).unwrap();
    let told = first.call("call_token", &mut [Arg::from(token)]).unwrap();
    assert_eq!(told, Value::Str("host->call: unknown or released object".into()));
}
