//! Test plugin exercising every type the ABI carries, errors, panics,
//! logging, init and shutdown.

use ferrule_sdk::Level;

fn kitchen_init(config: &str) -> Result<(), String> {
    ferrule_sdk::info!("kitchen init: {config}");
    if config.contains("fail") {
        return Err(format!("bad config: {config}"));
    }
    if config.contains("panic") {
        panic!("init exploded");
    }
    Ok(())
}

fn kitchen_shutdown() {
    ferrule_sdk::info!("kitchen shutdown");
}

ferrule_sdk::plugin! {
    id: "org.ferrule.tests.kitchen",
    name: "Kitchen Sink",
    version: "1.2.3",
    description: "Every type the ABI carries.",
    license: "Apache-2.0",
    init: kitchen_init,
    shutdown: kitchen_shutdown,
    functions: {
        /// Return the bool unchanged.
        fn echo_bool(v: bool) -> bool { v }
        /// Return the i8 unchanged.
        fn echo_i8(v: i8) -> i8 { v }
        /// Return the i16 unchanged.
        fn echo_i16(v: i16) -> i16 { v }
        /// Return the i32 unchanged.
        fn echo_i32(v: i32) -> i32 { v }
        /// Return the i64 unchanged.
        fn echo_i64(v: i64) -> i64 { v }
        /// Return the u8 unchanged.
        fn echo_u8(v: u8) -> u8 { v }
        /// Return the u16 unchanged.
        fn echo_u16(v: u16) -> u16 { v }
        /// Return the u32 unchanged.
        fn echo_u32(v: u32) -> u32 { v }
        /// Return the u64 unchanged.
        fn echo_u64(v: u64) -> u64 { v }
        /// Return the f32 unchanged.
        fn echo_f32(v: f32) -> f32 { v }
        /// Return the f64 unchanged.
        fn echo_f64(v: f64) -> f64 { v }
        /// Return a copy of the string.
        fn echo_str(s: &str) -> String { s.to_string() }
        /// Return a copy of the bytes.
        fn echo_bytes(b: &[u8]) -> Vec<u8> { b.to_vec() }
        /// Return the string in upper case (takes an owned String).
        fn upper(s: String) -> String { s.to_uppercase() }
        /// Return a static string (no release function).
        fn static_str() -> &'static str { "static hello" }
        /// Add two integers, wrapping on overflow.
        fn add(a: i64, b: i64) -> i64 { a.wrapping_add(b) }
        /// Sum five arguments of mixed types as f64.
        fn mixed(a: i8, b: u16, c: f32, d: bool, e: f64) -> f64 {
            a as f64 + b as f64 + c as f64 + (d as i32) as f64 + e
        }
        /// Do nothing.
        fn nothing() {}
        /// Always fail with the given message.
        fn fail(msg: &str) -> Result<i64, String> { Err(msg.to_string()) }
        /// Panic with the given message.
        fn boom(msg: &str) -> i64 { panic!("{msg}") }
        /// Log msg at level 0..=4 (trace..error); higher levels log at error.
        fn log_at(level: u8, msg: &str) {
            let level = match level {
                0 => Level::Trace,
                1 => Level::Debug,
                2 => Level::Info,
                3 => Level::Warn,
                _ => Level::Error,
            };
            ferrule_sdk::log(level, msg);
        }
        /// Return the number of bytes.
        fn len_bytes(b: &[u8]) -> u64 { b.len() as u64 }
    }
}
