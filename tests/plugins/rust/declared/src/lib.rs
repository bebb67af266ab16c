//! The declared-interfaces test plugin (`org.ferrule.test.declared`):
//! Counter and Shapes implemented, Store, Store2, Counter and Shapes called
//! through the host, all from `declared_api`'s `interface!` declarations.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use declared_api::{counter, mismatched, shapes, store, store2, Point, Rect, Token};
use ferrule_sdk::HostFn;

struct DeclaredCounter {
    total: i64,
}

impl counter::Counter for DeclaredCounter {
    type Error = String;

    fn create() -> Result<Self, String> {
        ferrule_sdk::info!("create declared-counter");
        Ok(DeclaredCounter { total: 0 })
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
        Ok("declared-counter".to_owned())
    }

    fn fail(&mut self, message: &str) -> Result<(), String> {
        Err(message.to_owned())
    }
}

impl Drop for DeclaredCounter {
    fn drop(&mut self) {
        ferrule_sdk::info!("destroy declared-counter");
    }
}

struct DeclaredShapes {
    labels: Mutex<Vec<String>>,
}

impl shapes::Shapes for DeclaredShapes {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(DeclaredShapes { labels: Mutex::new(Vec::new()) })
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
        let found = usize::try_from(t.0).ok().and_then(|i| i.checked_sub(1)).and_then(|i| labels.get(i));
        found.cloned().ok_or_else(|| format!("unknown token {}", t.0))
    }

    fn echo(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        Ok(data.to_vec())
    }

    fn apply(&self, f: HostFn<'_, fn(i64) -> i64>, x: i64) -> Result<i64, String> {
        Ok(f.call(x)?)
    }
}

/// Every method of a Shapes the host lends (no `apply`: a client cannot
/// pass a host function), checked; the first wrong result fails the call.
fn shapes_client_roundtrip() -> Result<String, String> {
    let shapes = shapes::Client::query().ok_or("no org.ferrule.test.shapes/1")?;
    let rect = Rect { origin: Point { x: -3, y: 4 }, width: 5, height: 6, filled: true, area_hint: 0 };
    let check = |what: &str, ok: bool| if ok { Ok(()) } else { Err(format!("{what} is wrong")) };
    check("area", shapes.area(rect)? == 30)?;
    let grown = shapes.grow(rect, 2)?;
    check("grow", grown == Rect { origin: Point { x: -5, y: 2 }, width: 9, height: 10, filled: true, area_hint: 90 })?;
    check("mix", shapes.mix(false, 1, 2, 3.0, 4.0, 5)? == -15.0)?;
    check("sum", shapes.sum(&[1.5, 2.5, 3.0])? == 7.0)?;
    let mut target = [0i32; 4];
    shapes.fill(&mut target, -7)?;
    check("fill", target == [-7; 4])?;
    let first = shapes.token("alpha")?;
    let second = shapes.token("beta")?;
    check("token", second.0 == first.0 + 1)?;
    check("label", shapes.label(second)? == "beta")?;
    check("echo", shapes.echo(b"\x00bytes\xff")? == b"\x00bytes\xff")?;
    let unknown = shapes.label(Token(999)).err().map(|e| e.into_message()).unwrap_or_default();
    Ok(unknown)
}

ferrule_sdk::plugin! {
    id: "org.ferrule.test.declared",
    name: "Declared interface tests",
    version: env!("CARGO_PKG_VERSION"),
    description: "Implements Counter and Shapes as declared with interface!; calls Store, Counter and Shapes.",
    license: "MIT",
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
        /// Shapes rev 1 through the host: every method a client has; returns
        /// the message of label(999)'s failure.
        fn shapes_via_host() -> Result<String, String> {
            shapes_client_roundtrip()
        }
        /// Whether the host lends a Store to the deliberately different
        /// declaration (it must not).
        fn mismatched_store_found() -> bool {
            mismatched::store::Client::query().is_some()
        }
    },
    interfaces: [
        counter::export::<DeclaredCounter>("declared-counter", "A running total."),
        shapes::export::<DeclaredShapes>("declared-shapes", "Every parameter kind."),
    ],
}
