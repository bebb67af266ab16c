//! Drives a `plugin!` through its raw descriptor with a minimal in-process
//! fake host (test-only; the SDK itself contains no host).

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::fmt;
use std::ptr;

use ferrule_sdk::abi::{self, Bytes, Function, Host, Plugin, Value};

#[derive(Debug)]
struct Oops(u32);

impl fmt::Display for Oops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oops #{}", self.0)
    }
}

ferrule_sdk::plugin! {
    id: "org.ferrule.tests.sdk",
    name: "SDK test",
    version: concat!("0.", "9"),
    functions: {
        /// Line one.
        ///
        ///     indented
        #[allow(clippy::needless_return)]
        pub fn add(a: i64, b: i64) -> i64 { return a + b; }
        fn undocumented() {}
        /// Echo with logging.
        fn echo(s: &str, raw: Vec<u8>,) -> String {
            ferrule_sdk::debug!("echo {s} {}", raw.len());
            ferrule_sdk::log(ferrule_sdk::Level::Warn, "plain");
            format!("{s}:{}", raw.len())
        }
        /// Unit result with a custom error type.
        fn check(n: u32) -> Result<(), Oops> { if n == 0 { Ok(()) } else { Err(Oops(n)) } }
        /// Host version seen from inside a call.
        fn version() -> String { format!("{:?}", ferrule_sdk::host_abi_version()) }
        /// Bytes out.
        fn blob(n: u16) -> Vec<u8> { vec![7; n as usize] }
        /// Narrow types.
        fn narrow(a: i8, b: u8, c: bool, d: f32) -> f32 { a as f32 + b as f32 + c as u8 as f32 + d }
        /// Panics with a non-string payload.
        fn odd_panic() -> i64 { std::panic::panic_any(42u8) }
    }
}

thread_local! {
    static LOGS: RefCell<Vec<(i32, String)>> = const { RefCell::new(Vec::new()) };
    static ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

unsafe extern "C" fn host_log(_h: *const Host, level: i32, msg: *const c_char, len: usize) {
    let s = unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) };
    LOGS.with(|l| l.borrow_mut().push((level, String::from_utf8(s.to_vec()).unwrap())));
}

unsafe extern "C" fn host_set_error(_h: *const Host, msg: *const c_char, len: usize) {
    let s = unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) };
    ERROR.with(|e| *e.borrow_mut() = Some(String::from_utf8(s.to_vec()).unwrap()));
}

fn host() -> Host {
    Host {
        struct_size: std::mem::size_of::<Host>() as u32,
        abi_major: 1,
        abi_minor: 7,
        host_data: ptr::null_mut(),
        log: Some(host_log),
        set_error: Some(host_set_error),
        alloc: None,
        free: None,
    }
}

fn cstr(p: *const c_char) -> Option<&'static str> {
    if p.is_null() {
        None
    } else {
        Some(unsafe { CStr::from_ptr(p) }.to_str().unwrap())
    }
}

fn plugin() -> &'static Plugin {
    let p = ferrule_entry_v1();
    assert!(!p.is_null());
    assert_eq!(p, ferrule_entry_v1(), "same descriptor every time");
    unsafe { &*p }
}

fn function(name: &str) -> &'static Function {
    let p = plugin();
    let fns = unsafe { std::slice::from_raw_parts(p.functions, p.function_count as usize) };
    fns.iter()
        .map(|f| unsafe { &**f })
        .find(|f| cstr(f.name) == Some(name))
        .unwrap_or_else(|| panic!("no function {name}"))
}

fn str_arg(s: &[u8]) -> Value {
    Value { bytes: Bytes { ptr: s.as_ptr().cast(), len: s.len(), release: None } }
}

/// Calls `name`; returns status, return slot and error message.
fn call(name: &str, args: &[Value]) -> (i32, Value, Option<String>) {
    let h = host();
    let mut ret = Value::ZERO;
    ERROR.with(|e| e.borrow_mut().take());
    let f = function(name);
    let rc = unsafe { (f.call)(&h, ptr::null_mut(), args.as_ptr(), &mut ret) };
    (rc, ret, ERROR.with(|e| e.borrow_mut().take()))
}

fn take_bytes(v: Value) -> Vec<u8> {
    let b = unsafe { v.bytes };
    let data = unsafe { std::slice::from_raw_parts(b.ptr.cast::<u8>(), b.len) }.to_vec();
    if let Some(release) = b.release {
        unsafe { release(b.ptr.cast_mut(), b.len) };
    }
    data
}

#[test]
fn descriptor() {
    let p = plugin();
    assert_eq!(p.magic, abi::MAGIC);
    assert_eq!(p.struct_size as usize, std::mem::size_of::<Plugin>());
    assert_eq!((p.abi_major, p.abi_minor), (abi::ABI_MAJOR, abi::ABI_MINOR));
    assert_eq!(cstr(p.id), Some("org.ferrule.tests.sdk"));
    assert_eq!(cstr(p.name), Some("SDK test"));
    assert_eq!(cstr(p.version), Some("0.9"));
    assert_eq!(cstr(p.description), None);
    assert_eq!(cstr(p.license), None);
    assert_eq!(p.function_count, 8);
    assert_eq!(p.flags, 0);
    assert!(p.init.is_some() && p.shutdown.is_some());

    let add = function("add");
    assert_eq!(cstr(add.signature), Some("(a: i64, b: i64) -> i64"));
    assert_eq!(cstr(add.doc), Some("Line one.\n\n    indented"));
    assert_eq!(add.flags, abi::FN_THREAD_SAFE);
    assert_eq!(add.struct_size as usize, std::mem::size_of::<Function>());
    assert_eq!(cstr(function("undocumented").signature), Some("()"));
    assert_eq!(cstr(function("undocumented").doc), None);
    assert_eq!(cstr(function("echo").signature), Some("(s: str, raw: bytes) -> str"));
    assert_eq!(cstr(function("check").signature), Some("(n: u32)"));
    assert_eq!(cstr(function("blob").signature), Some("(n: u16) -> bytes"));
    assert_eq!(cstr(function("narrow").signature), Some("(a: i8, b: u8, c: bool, d: f32) -> f32"));
    // The functions stay ordinary Rust functions.
    assert_eq!(self::add(2, 3), 5);
}

#[test]
fn calls() {
    let (rc, ret, err) = call("add", &[Value { i64: 40 }, Value { i64: 2 }]);
    assert_eq!((rc, unsafe { ret.i64 }, err), (abi::OK, 42, None));

    let (rc, _, err) = call("undocumented", &[]);
    assert_eq!((rc, err), (abi::OK, None));

    LOGS.with(|l| l.borrow_mut().clear());
    let (rc, ret, _) = call("echo", &[str_arg(b"hi"), str_arg(b"\0\x01\x02")]);
    assert_eq!(rc, abi::OK);
    assert!(unsafe { ret.bytes }.release.is_some());
    assert_eq!(take_bytes(ret), b"hi:3");
    assert_eq!(
        LOGS.with(|l| l.borrow().clone()),
        vec![(abi::LOG_DEBUG, "echo hi 3".to_string()), (abi::LOG_WARN, "plain".to_string())]
    );

    let (rc, _, err) = call("echo", &[str_arg(b"\xff"), str_arg(b"")]);
    assert_eq!(rc, abi::ERROR);
    assert!(err.unwrap().starts_with("argument `s`: invalid UTF-8"));

    assert_eq!(call("check", &[Value { u64: 0 }]).0, abi::OK);
    let (rc, _, err) = call("check", &[Value { u64: 5 }]);
    assert_eq!((rc, err.as_deref()), (abi::ERROR, Some("oops #5")));

    let (rc, ret, _) = call("version", &[]);
    assert_eq!(rc, abi::OK);
    assert_eq!(take_bytes(ret), b"Some((1, 7))");
    assert_eq!(ferrule_sdk::host_abi_version(), None, "no host outside a call");
    ferrule_sdk::info!("no host: no-op");

    let (rc, ret, _) = call("blob", &[Value { u64: 0 }]);
    assert_eq!(rc, abi::OK);
    assert_eq!(take_bytes(ret), b"");
    let (rc, ret, _) = call("blob", &[Value { u64: 3 }]);
    assert_eq!(rc, abi::OK);
    assert_eq!(take_bytes(ret), [7, 7, 7]);

    let (rc, ret, _) = call("narrow", &[Value { i64: -3 }, Value { u64: 250 }, Value { u64: 1 }, Value { f32: 0.5 }]);
    assert_eq!((rc, unsafe { ret.f32 }), (abi::OK, 248.5));
}

#[test]
fn panics() {
    let (rc, _, err) = call("odd_panic", &[]);
    assert_eq!(rc, abi::PANIC);
    let err = err.unwrap();
    assert!(err.starts_with("panicked at sdk/rust/tests/plugin_macro.rs:"), "{err}");
    assert!(err.ends_with(": Box<dyn Any>"), "{err}");
    assert_eq!(ferrule_sdk::host_abi_version(), None, "host cleared after a panic");
}

#[test]
fn init_and_shutdown() {
    let p = plugin();
    let h = host();
    let mut state: *mut c_void = ptr::null_mut();
    let rc = unsafe { (p.init.unwrap())(&h, c"cfg".as_ptr(), 3, &mut state) };
    assert_eq!(rc, abi::OK);
    assert!(!state.is_null());
    unsafe { (p.shutdown.unwrap())(&h, state) };

    let bad = b"\xff\0";
    let mut state: *mut c_void = ptr::null_mut();
    ERROR.with(|e| e.borrow_mut().take());
    let rc = unsafe { (p.init.unwrap())(&h, bad.as_ptr().cast(), 1, &mut state) };
    assert_eq!(rc, abi::ERROR);
    assert!(state.is_null());
    assert!(ERROR.with(|e| e.borrow_mut().take()).unwrap().starts_with("config is not valid UTF-8"));
}
