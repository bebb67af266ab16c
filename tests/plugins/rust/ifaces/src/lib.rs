//! The Rust interface test plugin (`org.ferrule.test.ifaces_rust`): the
//! implementations and client calls that tests/test_interfaces.py drives,
//! the same as the C plugin's.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferrule_sdk::HostFn;

#[path = "../../../generated/iface_api.rs"]
mod api;

use api::{counter, shapes, store, store2, Rect, Token};

// ---- Counter, twice ---------------------------------------------------------

/// A running total; `B` picks the implementation name, so that the plugin
/// offers two implementations of one interface with the same code.
struct RustCounter<const B: bool> {
    total: i64,
}

impl<const B: bool> RustCounter<B> {
    const NAME: &'static str = if B { "rust-counter-b" } else { "rust-counter" };
}

impl<const B: bool> counter::Counter for RustCounter<B> {
    type Error = String;

    fn create() -> Result<Self, String> {
        ferrule_sdk::info!("create {}", Self::NAME);
        Ok(RustCounter { total: 0 })
    }

    fn add(&mut self, n: i64) -> Result<i64, String> {
        self.total = self.total.wrapping_add(n);
        Ok(self.total)
    }

    fn total(&mut self) -> Result<i64, String> {
        Ok(self.total)
    }

    fn slow_add(&mut self, n: i64, spin_us: u32) -> Result<i64, String> {
        let seen = self.total;
        let until = Instant::now() + Duration::from_micros(spin_us.into());
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.total = seen.wrapping_add(n);
        Ok(self.total)
    }

    fn name(&mut self) -> Result<String, String> {
        Ok(Self::NAME.to_owned())
    }

    fn fail(&mut self, message: &str) -> Result<(), String> {
        Err(message.to_owned())
    }
}

impl<const B: bool> Drop for RustCounter<B> {
    fn drop(&mut self) {
        ferrule_sdk::info!("destroy {}", Self::NAME);
    }
}

// ---- Shapes -----------------------------------------------------------------

/// Every parameter kind; the labels of `token` are the only state.
struct RustShapes {
    labels: Mutex<Vec<String>>,
}

impl shapes::Shapes for RustShapes {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(RustShapes {
            labels: Mutex::new(Vec::new()),
        })
    }

    fn area(&self, r: Rect) -> Result<u64, String> {
        Ok(u64::from(r.width) * u64::from(r.height))
    }

    fn grow(&self, r: Rect, by: u32) -> Result<Rect, String> {
        let mut out = r;
        out.origin.x = r.origin.x.wrapping_sub(by as i32);
        out.origin.y = r.origin.y.wrapping_sub(by as i32);
        out.width = r.width.wrapping_add(by.wrapping_mul(2));
        out.height = r.height.wrapping_add(by.wrapping_mul(2));
        out.area_hint = u64::from(out.width) * u64::from(out.height);
        Ok(out)
    }

    fn mix(&self, flag: bool, a: i8, b: u16, c: f32, d: f64, e: u64) -> Result<f64, String> {
        let total = f64::from(a) + f64::from(b) + f64::from(c) + d + e as f64;
        Ok(if flag { total } else { -total })
    }

    fn sum(&self, values: &[f64]) -> Result<f64, String> {
        Ok(values.iter().sum())
    }

    fn fill(&self, target: &mut [i32], value: i32) -> Result<(), String> {
        target.fill(value);
        Ok(())
    }

    fn token(&self, label: &str) -> Result<Token, String> {
        let mut labels = self.labels.lock().map_err(|e| e.to_string())?;
        labels.push(label.to_owned());
        Ok(Token(labels.len() as u64))
    }

    fn label(&self, t: Token) -> Result<String, String> {
        let labels = self.labels.lock().map_err(|e| e.to_string())?;
        let found = usize::try_from(t.0)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| labels.get(i));
        found.cloned().ok_or_else(|| format!("unknown token {}", t.0))
    }

    fn echo(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        Ok(data.to_vec())
    }

    fn apply(&self, f: HostFn<'_, fn(i64) -> i64>, x: i64) -> Result<i64, String> {
        Ok(f.call(x)?)
    }
}

// ---- the plugin -------------------------------------------------------------

fn shutdown() {
    ferrule_sdk::info!("shutdown");
}

ferrule_sdk::plugin! {
    id: "org.ferrule.test.ifaces_rust",
    name: "Rust interface tests",
    version: env!("CARGO_PKG_VERSION"),
    description: "Implements Counter and Shapes; calls Store and Counter through the host.",
    license: "MIT",
    shutdown: shutdown,
    functions: {
        /// Store rev 1: put(key, value), then return get(key).
        fn store_roundtrip(key: &str, value: &str) -> Result<String, String> {
            let store = store::Client::query().ok_or("no org.ferrule.test.store/1")?;
            store.put(key, value)?;
            Ok(store.get(key)?)
        }
        /// Store rev 1: get(key); a failure keeps the callee's message.
        fn store_get(key: &str) -> Result<String, String> {
            let store = store::Client::query().ok_or("no org.ferrule.test.store/1")?;
            Ok(store.get(key)?)
        }
        /// Store rev 2: count().
        fn store2_count() -> Result<u32, String> {
            let store = store2::Client::query().ok_or("no org.ferrule.test.store/2")?;
            Ok(store.count()?)
        }
        /// Counter rev 1 (whichever the host picks): add(n) twice, return total().
        fn counter_via_host(n: i64) -> Result<i64, String> {
            let mut counter = counter::Client::query().ok_or("no org.ferrule.test.counter/1")?;
            counter.add(n)?;
            counter.add(n)?;
            Ok(counter.total()?)
        }
        /// Whether an unknown id and an unknown revision both query as absent.
        fn query_missing() -> bool {
            let Some(host) = ferrule_sdk::host() else { return false };
            let nothing = ferrule_sdk::Object::query(host, "org.ferrule.test.nothing", 1, 0);
            let rev99 = ferrule_sdk::Object::query(host, store::ID, 99, store::FINGERPRINT);
            nothing.is_none() && rev99.is_none()
        }
    },
    interfaces: [
        counter::export::<RustCounter<false>>("rust-counter", "A running total."),
        counter::export::<RustCounter<true>>("rust-counter-b", "A running total, second implementation."),
        shapes::export::<RustShapes>("rust-shapes", "Every parameter kind."),
    ],
}
