//! Test plugin exercising every type the ABI carries, errors, panics,
//! logging, init and shutdown, typed buffers, host functions and the quick
//! flag.

use ferrule_sdk::{HostFn, HostFnError, Level};

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

        // ---- typed buffers (ABI 1.1) ----------------------------------------

        /// Sum the bytes as f64.
        fn sum_bytes(data: &[u8]) -> f64 { data.iter().map(|&x| x as f64).sum() }
        /// Sum the i8 elements as f64.
        fn sum_i8(data: &[i8]) -> f64 { data.iter().map(|&x| x as f64).sum() }
        /// Sum the i16 elements as f64.
        fn sum_i16(data: &[i16]) -> f64 { data.iter().map(|&x| x as f64).sum() }
        /// Sum the i32 elements as f64.
        fn sum_i32(data: &[i32]) -> f64 { data.iter().map(|&x| x as f64).sum() }
        /// Sum the i64 elements as f64.
        fn sum_i64(data: &[i64]) -> f64 { data.iter().map(|&x| x as f64).sum() }
        /// Sum the u16 elements as f64.
        fn sum_u16(data: &[u16]) -> f64 { data.iter().map(|&x| x as f64).sum() }
        /// Sum the u32 elements as f64.
        fn sum_u32(data: &[u32]) -> f64 { data.iter().map(|&x| x as f64).sum() }
        /// Sum the u64 elements as f64.
        fn sum_u64(data: &[u64]) -> f64 { data.iter().map(|&x| x as f64).sum() }
        /// Sum the f32 elements as f64.
        fn sum_f32(data: &[f32]) -> f64 { data.iter().map(|&x| x as f64).sum() }
        /// Sum the f64 elements.
        fn sum_f64(data: &[f64]) -> f64 { data.iter().sum() }

        /// Double every i8 element in place, wrapping.
        fn double_i8(data: &mut [i8]) { data.iter_mut().for_each(|x| *x = x.wrapping_mul(2)) }
        /// Double every i16 element in place, wrapping.
        fn double_i16(data: &mut [i16]) { data.iter_mut().for_each(|x| *x = x.wrapping_mul(2)) }
        /// Double every i32 element in place, wrapping.
        fn double_i32(data: &mut [i32]) { data.iter_mut().for_each(|x| *x = x.wrapping_mul(2)) }
        /// Double every i64 element in place, wrapping.
        fn double_i64(data: &mut [i64]) { data.iter_mut().for_each(|x| *x = x.wrapping_mul(2)) }
        /// Double every u8 element in place, wrapping.
        fn double_u8(data: &mut [u8]) { data.iter_mut().for_each(|x| *x = x.wrapping_mul(2)) }
        /// Double every u16 element in place, wrapping.
        fn double_u16(data: &mut [u16]) { data.iter_mut().for_each(|x| *x = x.wrapping_mul(2)) }
        /// Double every u32 element in place, wrapping.
        fn double_u32(data: &mut [u32]) { data.iter_mut().for_each(|x| *x = x.wrapping_mul(2)) }
        /// Double every u64 element in place, wrapping.
        fn double_u64(data: &mut [u64]) { data.iter_mut().for_each(|x| *x = x.wrapping_mul(2)) }
        /// Double every f32 element in place.
        fn double_f32(data: &mut [f32]) { data.iter_mut().for_each(|x| *x *= 2.0) }
        /// Double every f64 element in place.
        fn double_f64(data: &mut [f64]) { data.iter_mut().for_each(|x| *x *= 2.0) }

        /// Address of the f64 buffer as received (zero-copy check).
        fn addr_f64(data: &[f64]) -> u64 { data.as_ptr() as usize as u64 }
        /// Address of the mutable u8 buffer as received (zero-copy check).
        fn addr_u8(data: &mut [u8]) -> u64 { data.as_mut_ptr() as usize as u64 }
        /// Address of the bytes as received (zero-copy check).
        fn addr_bytes(data: &[u8]) -> u64 { data.as_ptr() as usize as u64 }

        // ---- threads and the quick flag -------------------------------------

        /// CPU-bound: n rounds of xorshift64; returns the final state. Not
        /// quick, so the host lets other threads run meanwhile.
        fn spin(n: u64) -> u64 {
            let mut x: u64 = std::hint::black_box(0x9E37_79B9_7F4A_7C15);
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            x
        }
        /// Add two integers, wrapping; marked quick.
        #[quick]
        fn quick_add(a: i64, b: i64) -> i64 { a.wrapping_add(b) }

        // ---- host functions (ABI 1.1) ---------------------------------------

        /// Return f(x).
        fn apply(f: HostFn<'_, fn(i64) -> i64>, x: i64) -> Result<i64, HostFnError> { f.call(x) }
        /// Return f(0) + f(1) + ... + f(n - 1), wrapping; stops at the first
        /// failure.
        fn apply_sum(f: HostFn<'_, fn(i64) -> i64>, n: i64) -> Result<i64, HostFnError> {
            let mut sum = 0i64;
            for i in 0..n {
                sum = sum.wrapping_add(f.call(i)?);
            }
            Ok(sum)
        }
        /// Return f(s) followed by "!".
        fn apply_text(f: HostFn<'_, fn(String) -> String>, s: &str) -> Result<String, HostFnError> {
            let mut out = f.call(s)?;
            out.push('!');
            Ok(out)
        }
        /// Return f(a, b).
        fn apply_f64(f: HostFn<'_, fn(f64, f64) -> f64>, a: f64, b: f64) -> Result<f64, HostFnError> {
            f.call(a, b)
        }
        /// Call f once.
        fn call_none(f: HostFn<'_, fn()>) -> Result<(), HostFnError> { f.call() }

        /// Return a string of n 'x' characters.
        fn make_text(n: u64) -> String { "x".repeat(n as usize) }
    }
}
