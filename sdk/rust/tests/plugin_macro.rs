//! Drives a `plugin!` through its raw descriptor with a minimal in-process
//! fake host (test-only; the SDK itself contains no host).

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::fmt;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferrule_sdk::abi::{self, Buf, Bytes, FnHandle, Function, Host, Plugin, Value};
use ferrule_sdk::{HostFn, HostFnError};

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
        /// Sum of a read-only buffer.
        fn sum(data: &[f64]) -> f64 { data.iter().sum() }
        /// Scale in place.
        #[quick]
        #[allow(clippy::needless_range_loop)]
        fn scale(data: &mut [i32], k: i32) { for i in 0..data.len() { data[i] *= k; } }
        /// Copy src into the start of dst.
        fn copy_into(dst: &mut [u8], src: &[u8]) -> u64 {
            let n = dst.len().min(src.len());
            dst[..n].copy_from_slice(&src[..n]);
            n as u64
        }
        /// Owned copy of a buffer.
        #[allow(clippy::ptr_arg)]
        fn owned(v: Vec<u16>) -> u64 { v.iter().map(|&x| x as u64).sum() }
        /// Apply a host function, errors converted with `?` into String.
        fn apply(f: HostFn<'_, fn(i64) -> i64>, x: i64) -> Result<i64, String> { Ok(f.call(x)? + 1) }
        /// Text and bytes through a host function.
        fn text(f: HostFn<'_, fn(String, Vec<u8>) -> String>, s: &str) -> Result<String, HostFnError> {
            f.call(s, s.as_bytes())
        }
        /// No parameters, no result.
        #[quick]
        fn poke(f: HostFn<'_, fn()>) -> Result<(), HostFnError> { f.call() }
        /// Call a host function from two scoped threads.
        fn par(f: HostFn<'_, fn(i64) -> i64>) -> Result<i64, HostFnError> {
            std::thread::scope(|s| {
                let a = s.spawn(|| f.call(1));
                let b = s.spawn(|| f.call(2));
                Ok(a.join().unwrap()? + b.join().unwrap()?)
            })
        }
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

// ---- a fake host function table for `invoke` --------------------------------

/// What a handle points to in these tests.
struct TestFn {
    /// Number of parameters.
    nargs: usize,
    /// Result value, or Err for a failing host function.
    run: fn(&[Value]) -> Result<Value, ()>,
}

static RELEASED: AtomicUsize = AtomicUsize::new(0);
static POKED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn release_result(ptr: *mut c_void, len: usize) {
    RELEASED.fetch_add(1, Ordering::SeqCst);
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(ptr.cast::<u8>(), len)) });
}

fn result_text(s: String) -> Value {
    let b = s.into_bytes().into_boxed_slice();
    let len = b.len();
    Value { bytes: Bytes { ptr: Box::into_raw(b).cast::<c_void>(), len, release: Some(release_result) } }
}

fn arg_bytes(v: &Value) -> Vec<u8> {
    let b = unsafe { v.bytes };
    assert!(b.release.is_none());
    unsafe { std::slice::from_raw_parts(b.ptr.cast::<u8>(), b.len) }.to_vec()
}

static TIMES_TEN: TestFn = TestFn { nargs: 1, run: |a| Ok(Value { i64: unsafe { a[0].i64 } * 10 }) };
static FAILS: TestFn = TestFn { nargs: 1, run: |_| Err(()) };
static CONCAT: TestFn = TestFn {
    nargs: 2,
    run: |a| {
        let s = String::from_utf8(arg_bytes(&a[0])).unwrap();
        Ok(result_text(format!("{s}+{}", arg_bytes(&a[1]).len())))
    },
};
static BAD_UTF8: TestFn = TestFn {
    nargs: 2,
    run: |_| {
        let b: Box<[u8]> = Box::new([0xff, 0xfe]);
        Ok(Value { bytes: Bytes { ptr: Box::into_raw(b).cast::<c_void>(), len: 2, release: Some(release_result) } })
    },
};
static POKE: TestFn = TestFn {
    nargs: 0,
    run: |_| {
        POKED.fetch_add(1, Ordering::SeqCst);
        Ok(Value::ZERO)
    },
};

fn handle(f: &'static TestFn) -> Value {
    Value { func: (f as *const TestFn).cast::<FnHandle>() }
}

unsafe extern "C" fn host_invoke(_h: *const Host, func: *const FnHandle, args: *const Value, ret: *mut Value) -> i32 {
    let f = unsafe { &*func.cast::<TestFn>() };
    assert!(!args.is_null(), "args is never NULL");
    let args = unsafe { std::slice::from_raw_parts(args, f.nargs) };
    match (f.run)(args) {
        Ok(v) => {
            unsafe { ret.write(v) };
            abi::OK
        }
        Err(()) => abi::ERROR,
    }
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
        invoke: Some(host_invoke),
        query: None,
        call: None,
        release: None,
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
    call_with(&host(), name, args)
}

fn call_with(h: &Host, name: &str, args: &[Value]) -> (i32, Value, Option<String>) {
    let mut ret = Value::ZERO;
    ERROR.with(|e| e.borrow_mut().take());
    let f = function(name);
    let rc = unsafe { (f.call)(h, ptr::null_mut(), args.as_ptr(), &mut ret) };
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
    assert_eq!(p.function_count, 16);
    assert_eq!(p.flags, 0);
    assert!(p.init.is_some() && p.shutdown.is_some());
    assert_eq!((p.abi_major, p.abi_minor), (1, 2));
    #[cfg(target_pointer_width = "64")]
    assert_eq!(p.struct_size, 104);
    assert_eq!((p.interface_count, p.reserved), (0, 0), "no interfaces: section");

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
    assert_eq!(cstr(function("sum").signature), Some("(data: buf[f64]) -> f64"));
    assert_eq!(cstr(function("scale").signature), Some("(data: mutbuf[i32], k: i32)"));
    assert_eq!(cstr(function("copy_into").signature), Some("(dst: mutbuf[u8], src: bytes) -> u64"));
    assert_eq!(cstr(function("owned").signature), Some("(v: buf[u16]) -> u64"));
    assert_eq!(cstr(function("apply").signature), Some("(f: fn(i64) -> i64, x: i64) -> i64"));
    assert_eq!(cstr(function("text").signature), Some("(f: fn(str, bytes) -> str, s: str) -> str"));
    assert_eq!(cstr(function("poke").signature), Some("(f: fn())"));
    // #[quick] sets the flag, is not re-emitted, and keeps other attributes.
    assert_eq!(function("scale").flags, abi::FN_THREAD_SAFE | abi::FN_QUICK);
    assert_eq!(function("poke").flags, abi::FN_THREAD_SAFE | abi::FN_QUICK);
    assert_eq!(function("apply").flags, abi::FN_THREAD_SAFE);
    assert_eq!(cstr(function("scale").doc), Some("Scale in place."));
    // The functions stay ordinary Rust functions.
    assert_eq!(self::add(2, 3), 5);
    let mut v = [1, 2];
    self::scale(&mut v, 3);
    assert_eq!(v, [3, 6]);
}

/// A read-only buffer argument.
fn buf<T>(data: &[T]) -> Value {
    Value { buf: Buf { ptr: data.as_ptr().cast_mut().cast(), len: data.len() } }
}

/// A writable buffer argument of `len` elements at `ptr`.
fn mutbuf<T>(ptr: *mut T, len: usize) -> Value {
    Value { buf: Buf { ptr: ptr.cast(), len } }
}

/// A bytes argument of `len` bytes at `ptr`.
fn bytes_at(ptr: *const u8, len: usize) -> Value {
    Value { bytes: Bytes { ptr: ptr.cast(), len, release: None } }
}

#[test]
fn buffers() {
    let data = [1.5f64, 2.0, 3.5];
    let (rc, ret, err) = call("sum", &[buf(&data)]);
    assert_eq!((rc, unsafe { ret.f64 }, err), (abi::OK, 7.0, None));

    // Empty: any pointer, even NULL or misaligned, is an empty slice.
    for ptr in [ptr::null_mut(), ptr::NonNull::<u8>::dangling().as_ptr().cast::<c_void>()] {
        let (rc, ret, err) = call("sum", &[Value { buf: Buf { ptr, len: 0 } }]);
        assert_eq!((rc, unsafe { ret.f64 }, err), (abi::OK, 0.0, None));
    }
    let (rc, _, err) = call("sum", &[Value { buf: Buf { ptr: ptr::null_mut(), len: 2 } }]);
    assert_eq!((rc, err.as_deref()), (abi::ERROR, Some("argument `data`: NULL buffer with 2 elements")));
    let misaligned = Value { buf: Buf { ptr: data.as_ptr().cast::<u8>().wrapping_add(1).cast_mut().cast(), len: 1 } };
    let (rc, _, err) = call("sum", &[misaligned]);
    assert_eq!(rc, abi::ERROR);
    assert!(err.unwrap().contains("is not aligned for f64 (8 bytes)"));
    let (rc, _, err) = call("sum", &[Value { buf: Buf { ptr: data.as_ptr().cast_mut().cast(), len: usize::MAX / 4 } }]);
    assert_eq!(rc, abi::ERROR);
    assert!(err.unwrap().ends_with("is too large"));

    // Written in place.
    let mut ints = [1i32, -2, 3];
    let (rc, _, err) = call("scale", &[mutbuf(ints.as_mut_ptr(), 3), Value { i64: -2 }]);
    assert_eq!((rc, err), (abi::OK, None));
    assert_eq!(ints, [-2, 4, -6]);

    // A mutable buffer may not overlap another argument...
    let mut mem = *b"abcdefgh";
    let base = mem.as_mut_ptr();
    let whole = mutbuf(base, 8);
    let tail = bytes_at(base.wrapping_add(4), 4);
    let (rc, _, err) = call("copy_into", &[whole, tail]);
    assert_eq!(rc, abi::ERROR);
    assert_eq!(
        err.as_deref(),
        Some("argument `dst` is a mutable buffer that overlaps the memory of argument `src`")
    );
    // ...but may touch it, or share it when either is empty.
    let (rc, ret, err) = call("copy_into", &[mutbuf(base, 4), tail]);
    assert_eq!((rc, unsafe { ret.u64 }, err), (abi::OK, 4, None));
    assert_eq!(call("copy_into", &[mutbuf(base, 0), tail]).0, abi::OK);
    assert_eq!(call("copy_into", &[mutbuf(base, 8), bytes_at(base, 0)]).0, abi::OK);
    assert_eq!(&mem, b"efghefgh");

    let shorts = [1u16, 2, 65535];
    let (rc, ret, _) = call("owned", &[buf(&shorts)]);
    assert_eq!((rc, unsafe { ret.u64 }), (abi::OK, 65538));
}

#[test]
fn host_functions() {
    let (rc, ret, err) = call("apply", &[handle(&TIMES_TEN), Value { i64: 4 }]);
    assert_eq!((rc, unsafe { ret.i64 }, err), (abi::OK, 41, None));

    let (rc, _, err) = call("apply", &[handle(&FAILS), Value { i64: 4 }]);
    assert_eq!((rc, err.as_deref()), (abi::ERROR, Some("host function failed")));

    let (rc, _, err) = call("apply", &[Value { func: ptr::null() }, Value { i64: 4 }]);
    assert_eq!((rc, err.as_deref()), (abi::ERROR, Some("argument `f`: NULL host function handle")));

    let before = RELEASED.load(Ordering::SeqCst);
    let (rc, ret, err) = call("text", &[handle(&CONCAT), str_arg("héllo".as_bytes())]);
    assert_eq!((rc, err), (abi::OK, None));
    assert_eq!(take_bytes(ret), "héllo+6".as_bytes());
    let (rc, _, err) = call("text", &[handle(&BAD_UTF8), str_arg(b"")]);
    assert_eq!(rc, abi::ERROR);
    assert!(err.unwrap().starts_with("host function returned a bad result: invalid UTF-8"));
    assert_eq!(RELEASED.load(Ordering::SeqCst) - before, 2, "each str result released once");

    let before = POKED.load(Ordering::SeqCst);
    assert_eq!(call("poke", &[handle(&POKE)]).0, abi::OK);
    assert_eq!(POKED.load(Ordering::SeqCst) - before, 1);

    let (rc, ret, err) = call("par", &[handle(&TIMES_TEN)]);
    assert_eq!((rc, unsafe { ret.i64 }, err), (abi::OK, 30, None));

    // An ABI 1.0 host's table ends before `invoke`.
    let mut old = host();
    old.struct_size = std::mem::offset_of!(Host, invoke) as u32;
    old.abi_minor = 0;
    let (rc, _, err) = call_with(&old, "apply", &[handle(&TIMES_TEN), Value { i64: 4 }]);
    assert_eq!(rc, abi::ERROR);
    assert_eq!(err.unwrap(), HostFnError::Unsupported.to_string());
    let mut null_invoke = host();
    null_invoke.invoke = None;
    let (rc, _, err) = call_with(&null_invoke, "poke", &[handle(&POKE)]);
    assert_eq!((rc, err.unwrap()), (abi::ERROR, HostFnError::Unsupported.to_string()));
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
