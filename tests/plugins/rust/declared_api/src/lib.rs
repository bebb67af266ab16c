//! tests/iface_api.py's declarations, written with `ferrule_sdk::interface!`
//! instead of generated from Python: the same layouts, so a plugin built from
//! either is one a host of the other accepts.

ferrule_sdk::interface! {
    /// A point on a grid.
    pub struct Point {
        /// Column.
        x: i32,
        /// Row.
        y: i32,
    }

    /// A rectangle: a nested struct, padding before a u64 and after a bool.
    pub struct Rect {
        origin: struct Point,
        width: u32,
        height: u32,
        filled: bool,
        area_hint: u64,
    }

    /// A label the plugin keeps; the host only passes the handle on.
    pub handle Token;

    /// A running total. Not thread-safe: the host serialises calls.
    #[interface(id = "org.ferrule.test.counter", revision = 1)]
    pub mod counter: trait Counter {
        /// Add n and return the new total.
        fn add(n: i64) -> i64;
        /// The total so far.
        fn total() -> i64;
        /// Read the total, wait spin_us microseconds, then write total + n.
        fn slow_add(n: i64, spin_us: u32) -> i64;
        /// The implementation's name.
        fn name() -> str;
        /// Fail with this message.
        fn fail(message: str);
    }

    /// Every parameter kind. Thread-safe: no state.
    #[interface(id = "org.ferrule.test.shapes", revision = 1, thread_safe = true)]
    pub mod shapes: trait Shapes {
        /// width * height.
        fn area(r: struct Rect) -> u64;
        /// r moved by (-by, -by), width and height + 2 * by, area_hint the new area.
        fn grow(r: struct Rect, by: u32) -> struct Rect;
        /// a + b + c + d + e (as f64), negated when flag is false.
        fn mix(flag: bool, a: i8, b: u16, c: f32, d: f64, e: u64) -> f64;
        /// The sum of values.
        fn sum(values: buf[f64]) -> f64;
        /// Set every element of target to value.
        fn fill(target: mutbuf[i32], value: i32);
        /// Keep label; return its handle (handles count from 1).
        fn token(label: str) -> handle Token;
        /// The label of a handle token returned; fails for an unknown one.
        fn label(t: handle Token) -> str;
        /// data, unchanged.
        fn echo(data: bytes) -> bytes;
        /// f(x), through the host.
        fn apply(f: fn(i64) -> i64, x: i64) -> i64;
    }

    /// A string store the host provides to plugins.
    #[interface(id = "org.ferrule.test.store", revision = 1, thread_safe = true)]
    pub mod store: trait Store {
        /// The value of key; fails when it is absent.
        fn get(key: str) -> str;
        /// Set key to value.
        fn put(key: str, value: str);
    }

    /// Revision 2 of the store: adds count.
    #[interface(id = "org.ferrule.test.store", revision = 2, thread_safe = true)]
    pub mod store2: trait Store2 {
        /// The value of key; fails when it is absent.
        fn get(key: str) -> str;
        /// Set key to value.
        fn put(key: str, value: str);
        /// How many keys are set.
        fn count() -> u32;
    }
}

/// Deliberately not tests/iface_api.py's Store: `put` takes bytes. The host
/// must refuse it (a different fingerprint for the same id and revision).
pub mod mismatched {
    ferrule_sdk::interface! {
        #[interface(id = "org.ferrule.test.store", revision = 1, thread_safe = true)]
        pub mod store: trait Store {
            fn get(key: str) -> str;
            fn put(key: str, value: bytes);
        }
    }
}

/// Every interface above: module name, layout text and fingerprint.
pub const ALL: [(&str, &str, u64); 5] = [
    ("counter", counter::LAYOUT, counter::FINGERPRINT),
    ("shapes", shapes::LAYOUT, shapes::FINGERPRINT),
    ("store", store::LAYOUT, store::FINGERPRINT),
    ("store2", store2::LAYOUT, store2::FINGERPRINT),
    ("mismatched.store", mismatched::store::LAYOUT, mismatched::store::FINGERPRINT),
];
