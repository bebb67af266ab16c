//! `declared-host PLUGIN`: drives the declared test plugin from Rust with
//! only the declared_api crate's declarations; prints `ok`, or fails with
//! what differed.

use std::collections::HashMap;
use std::error::Error;
use std::sync::Mutex;

use declared_api::{counter, shapes, store, Point, Rect, Token};
use ferrule_host::{Arg, LoadOptions, PluginHost, Service, Value};

/// The Store the host provides, implemented from the declared trait.
#[derive(Default)]
struct MapStore(Mutex<HashMap<String, String>>);

impl store::Store for MapStore {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(MapStore::default())
    }

    fn get(&self, key: &str) -> Result<String, String> {
        let map = self.0.lock().map_err(|e| e.to_string())?;
        map.get(key).cloned().ok_or_else(|| format!("no key {key:?} in the Rust store"))
    }

    fn put(&self, key: &str, value: &str) -> Result<(), String> {
        self.0.lock().map_err(|e| e.to_string())?.insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}

fn expect<T: PartialEq + std::fmt::Debug>(what: &str, found: T, expected: T) -> Result<(), String> {
    if found == expected {
        Ok(())
    } else {
        Err(format!("{what}: expected {expected:?}, found {found:?}"))
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args().nth(1).ok_or("usage: declared-host PATH-TO-libdeclared.so")?;
    let host = PluginHost::new();
    host.provide(Service::new(store::provided(MapStore::default())));
    let plugin = host.load(&path, LoadOptions::default())?;

    let mut counter = counter::Client::new(plugin.create(&counter::SPEC, None)?)
        .map_err(|_| "the plugin's counter has another fingerprint")?;
    expect("add", counter.add(5)?, 5)?;
    expect("slow_add", counter.slow_add(-2, 1)?, 3)?;
    expect("total", counter.total()?, 3)?;
    expect("name", counter.name()?, "declared-counter".to_owned())?;
    let failed = counter.fail("no luck").err().and_then(|e| e.plugin_message().map(str::to_owned));
    expect("fail", failed.as_deref(), Some("no luck"))?;

    let shapes = shapes::Client::new(plugin.create(&shapes::SPEC, None)?)
        .map_err(|_| "the plugin's shapes has another fingerprint")?;
    let rect = Rect { origin: Point { x: -3, y: 4 }, width: 5, height: 6, filled: true, area_hint: 0 };
    expect("area", shapes.area(rect)?, 30)?;
    let grown = Rect { origin: Point { x: -5, y: 2 }, width: 9, height: 10, filled: true, area_hint: 90 };
    expect("grow", shapes.grow(rect, 2)?, grown)?;
    expect("mix", shapes.mix(false, 1, 2, 3.0, 4.0, 5)?, -15.0)?;
    expect("sum", shapes.sum(&[1.5, 2.5, 3.0])?, 7.0)?;
    let mut target = [0i32; 3];
    shapes.fill(&mut target, 9)?;
    expect("fill", target, [9; 3])?;
    let token = shapes.token("alpha")?;
    expect("token", token, Token(1))?;
    expect("label", shapes.label(token)?, "alpha".to_owned())?;
    expect("echo", shapes.echo(b"\x00\xff")?, b"\x00\xff".to_vec())?;

    // The plugin's declared Store client reaches the service above.
    let stored = plugin.call("store_roundtrip", &mut [Arg::from("k"), Arg::from("v")])?;
    expect("store_roundtrip", stored, Value::Str("v".to_owned()))?;
    println!("ok");
    Ok(())
}
