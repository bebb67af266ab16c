//! Uses every public item of the crate by its public path, as a plugin
//! author would, so that renaming, moving or hiding one breaks this test.
//! It names nothing under `ferrule_sdk::__private`. The list of public names
//! itself is held by tests/test_rust_sdk_surface.py at the repository root.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr};
use std::mem::size_of;
use std::ptr;

use ferrule_sdk::abi;
use ferrule_sdk::{CallError, HostFn, HostFnError, HostRef, Level, Object};

const ECHO_ID: &str = "org.ferrule.tests.surface.echo";
const ECHO_FINGERPRINT: u64 = 7;

fn init(config: &str) -> Result<(), String> {
    let host = ferrule_sdk::host().ok_or("no host in init")?;
    assert_eq!(HostRef::current(), Some(host));
    host.log(Level::Debug, &format!("init {config}"));
    Ok(())
}

fn shutdown() {
    ferrule_sdk::info!("shutdown");
}

ferrule_sdk::plugin! {
    id: "org.ferrule.tests.surface",
    name: "Public surface",
    version: "1.0.0",
    description: "Every public item by its public path.",
    license: "MIT",
    init: init,
    shutdown: shutdown,
    functions: {
        /// Every way to log, then the host's ABI version.
        fn logs() -> String {
            ferrule_sdk::trace!("trace {}", 1);
            ferrule_sdk::debug!("debug");
            ferrule_sdk::info!("info");
            ferrule_sdk::warn!("warn");
            ferrule_sdk::error!("error");
            ferrule_sdk::log(Level::Info, "plain");
            format!("{:?}", ferrule_sdk::host_abi_version())
        }
        /// Calls a host function.
        #[quick]
        fn apply(f: HostFn<'_, fn(i64) -> i64>, x: i64) -> Result<i64, HostFnError> {
            f.call(x)
        }
        /// Queries the echo object by hand and calls method `method` with `n`.
        fn echo(method: u32, n: u64) -> Result<u64, CallError> {
            let host = ferrule_sdk::host().ok_or_else(|| CallError::new(abi::ERROR, "no host"))?;
            let object = Object::query(host, ECHO_ID, 1, ECHO_FINGERPRINT)
                .ok_or_else(|| CallError::new(abi::ERROR, "no echo"))?;
            assert_eq!(object.host(), host);
            assert!(!object.as_ptr().is_null());
            let args = [abi::Value { u64: n }];
            // SAFETY: the fake echo object's methods take one u64 and
            // return one.
            let raw = unsafe { object.call_raw(method, &args) }?;
            let typed = unsafe { object.call::<u64>(method, &args) }?;
            assert_eq!(unsafe { raw.u64 }, typed);
            Ok(typed)
        }
    }
}

// ---- a fake host ---------------------------------------------------------------

thread_local! {
    static LOGS: RefCell<Vec<(i32, String)>> = const { RefCell::new(Vec::new()) };
    static ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    static RELEASED: Cell<usize> = const { Cell::new(0) };
}

fn text(msg: *const c_char, len: usize) -> String {
    String::from_utf8(unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) }.to_vec()).unwrap()
}

unsafe extern "C" fn host_log(_h: *const abi::Host, level: i32, msg: *const c_char, len: usize) {
    LOGS.with(|l| l.borrow_mut().push((level, text(msg, len))));
}

unsafe extern "C" fn host_set_error(_h: *const abi::Host, msg: *const c_char, len: usize) {
    ERROR.with(|e| *e.borrow_mut() = Some(text(msg, len)));
}

/// A host function: `x * 10`.
unsafe extern "C" fn host_invoke(
    _h: *const abi::Host,
    _func: *const abi::FnHandle,
    args: *const abi::Value,
    ret: *mut abi::Value,
) -> i32 {
    unsafe { ret.write(abi::Value { i64: (*args).i64 * 10 }) };
    abi::OK
}

/// The one object this host lends: any non-NULL pointer will do.
static ECHO: u8 = 0;

unsafe extern "C" fn host_query(
    _h: *const abi::Host,
    id: *const c_char,
    revision: u32,
    fingerprint: u64,
) -> *const abi::Object {
    let id = unsafe { CStr::from_ptr(id) }.to_str().unwrap();
    if (id, revision, fingerprint) == (ECHO_ID, 1, ECHO_FINGERPRINT) {
        (&ECHO as *const u8).cast::<abi::Object>()
    } else {
        ptr::null()
    }
}

/// Method 0 returns its argument plus one; every other method fails with a
/// static message.
unsafe extern "C" fn host_call(
    _h: *const abi::Host,
    _object: *const abi::Object,
    method: u32,
    args: *const abi::Value,
    ret: *mut abi::Value,
) -> i32 {
    if method == 0 {
        unsafe { ret.write(abi::Value { u64: (*args).u64 + 1 }) };
        return abi::OK;
    }
    let msg: &'static [u8] = b"no such method";
    let bytes = abi::Bytes {
        ptr: msg.as_ptr().cast::<c_void>(),
        len: msg.len(),
        release: None,
    };
    unsafe { ret.write(abi::Value { bytes }) };
    abi::ERROR
}

unsafe extern "C" fn host_release(_h: *const abi::Host, _object: *const abi::Object) {
    RELEASED.with(|n| n.set(n.get() + 1));
}

fn host() -> abi::Host {
    abi::Host {
        struct_size: size_of::<abi::Host>() as u32,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        host_data: ptr::null_mut(),
        log: Some(host_log),
        set_error: Some(host_set_error),
        alloc: None,
        free: None,
        invoke: Some(host_invoke),
        query: Some(host_query),
        call: Some(host_call),
        release: Some(host_release),
    }
}

fn cstr(p: *const c_char) -> Option<&'static str> {
    if p.is_null() {
        None
    } else {
        Some(unsafe { CStr::from_ptr(p) }.to_str().unwrap())
    }
}

fn plugin() -> &'static abi::Plugin {
    let entry: abi::EntryFn = ferrule_entry_v1;
    unsafe { &*entry() }
}

fn function(name: &str) -> &'static abi::Function {
    let p = plugin();
    let fns = unsafe { std::slice::from_raw_parts(p.functions, p.function_count as usize) };
    fns.iter()
        .map(|f| unsafe { &**f })
        .find(|f| cstr(f.name) == Some(name))
        .unwrap()
}

/// Calls `name`: status, return slot, error message.
fn call(name: &str, args: &[abi::Value]) -> (i32, abi::Value, Option<String>) {
    let h = host();
    let mut ret = abi::Value::ZERO;
    ERROR.with(|e| e.borrow_mut().take());
    let call: abi::CallFn = function(name).call;
    let status = unsafe { call(&h, ptr::null_mut(), args.as_ptr(), &mut ret) };
    (status, ret, ERROR.with(|e| e.borrow_mut().take()))
}

fn take_text(v: abi::Value) -> String {
    let b: abi::Bytes = unsafe { v.bytes };
    let data = unsafe { std::slice::from_raw_parts(b.ptr.cast::<u8>(), b.len) }.to_vec();
    let release: Option<abi::ReleaseFn> = b.release;
    if let Some(release) = release {
        unsafe { release(b.ptr.cast_mut(), b.len) };
    }
    String::from_utf8(data).unwrap()
}

fn take_logs() -> Vec<(i32, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

// ---- tests ----------------------------------------------------------------------

#[test]
fn the_descriptor_of_a_plugin_that_names_only_public_items() {
    let p = plugin();
    assert_eq!(
        (p.magic, p.abi_major, p.abi_minor),
        (abi::MAGIC, abi::ABI_MAJOR, abi::ABI_MINOR)
    );
    assert_eq!(p.struct_size as usize, size_of::<abi::Plugin>());
    assert_eq!(cstr(p.id), Some("org.ferrule.tests.surface"));
    assert_eq!(cstr(p.description), Some("Every public item by its public path."));
    assert_eq!(cstr(p.license), Some("MIT"));
    assert_eq!((p.function_count, p.interface_count), (3, 0));
    let apply = function("apply");
    assert_eq!(cstr(apply.signature), Some("(f: fn(i64) -> i64, x: i64) -> i64"));
    assert_eq!(apply.flags, abi::FN_THREAD_SAFE | abi::FN_QUICK);
    assert_eq!(cstr(function("echo").signature), Some("(method: u32, n: u64) -> u64"));
    assert_eq!(size_of::<abi::Interface>() % size_of::<usize>(), 0);

    let init: abi::InitFn = p.init.unwrap();
    let shutdown: abi::ShutdownFn = p.shutdown.unwrap();
    let h = host();
    let mut state: *mut c_void = ptr::null_mut();
    take_logs();
    assert_eq!(unsafe { init(&h, c"cfg".as_ptr(), 3, &mut state) }, abi::OK);
    unsafe { shutdown(&h, state) };
    assert_eq!(
        take_logs(),
        [
            (abi::LOG_DEBUG, "init cfg".to_owned()),
            (abi::LOG_INFO, "shutdown".to_owned())
        ]
    );
}

#[test]
fn logging_and_the_host_version() {
    take_logs();
    let (status, ret, _) = call("logs", &[]);
    assert_eq!((status, take_text(ret)), (abi::OK, "Some((1, 2))".to_owned()));
    let expected = [
        (abi::LOG_TRACE, "trace 1"),
        (abi::LOG_DEBUG, "debug"),
        (abi::LOG_INFO, "info"),
        (abi::LOG_WARN, "warn"),
        (abi::LOG_ERROR, "error"),
        (abi::LOG_INFO, "plain"),
    ];
    assert_eq!(take_logs(), expected.map(|(l, m)| (l, m.to_owned())));
    // Outside of a call there is no host: logging does nothing.
    assert_eq!(ferrule_sdk::host_abi_version(), None);
    assert!(ferrule_sdk::host().is_none() && HostRef::current().is_none());
    ferrule_sdk::log(Level::Error, "nobody listens");
    assert!(take_logs().is_empty());
}

#[test]
fn levels_are_the_abi_constants() {
    for (level, value) in [
        (Level::Trace, abi::LOG_TRACE),
        (Level::Debug, abi::LOG_DEBUG),
        (Level::Info, abi::LOG_INFO),
        (Level::Warn, abi::LOG_WARN),
        (Level::Error, abi::LOG_ERROR),
    ] {
        assert_eq!((level as i32, Level::from_i32(value)), (value, Some(level)));
    }
    assert_eq!(Level::from_i32(5), None);
}

#[test]
fn host_functions() {
    let func = abi::Value {
        func: ptr::NonNull::<abi::FnHandle>::dangling().as_ptr(),
    };
    let (status, ret, err) = call("apply", &[func, abi::Value { i64: 4 }]);
    assert_eq!((status, unsafe { ret.i64 }, err), (abi::OK, 40, None));

    for (e, text) in [
        (
            HostFnError::Unsupported,
            "the host cannot call host functions (it has no invoke; ABI older than 1.1)",
        ),
        (HostFnError::Failed, "host function failed"),
        (
            HostFnError::BadResult("x".to_owned()),
            "host function returned a bad result: x",
        ),
    ] {
        let as_error: &dyn std::error::Error = &e;
        assert_eq!(as_error.to_string(), text);
        assert_eq!(String::from(e), text);
    }
}

#[test]
fn objects_queried_by_hand() {
    let released = RELEASED.with(Cell::get);
    let (status, ret, err) = call("echo", &[abi::Value { u64: 0 }, abi::Value { u64: 41 }]);
    assert_eq!((status, unsafe { ret.u64 }, err), (abi::OK, 42, None));
    assert_eq!(RELEASED.with(Cell::get), released + 1, "dropping an Object releases it");
    // A failing method: the callee's message, unchanged.
    let (status, _, err) = call("echo", &[abi::Value { u64: 3 }, abi::Value { u64: 0 }]);
    assert_eq!((status, err.as_deref()), (abi::ERROR, Some("no such method")));

    let h = host();
    let host_ref = unsafe { HostRef::from_ptr(&h) }.unwrap();
    assert_eq!(host_ref.as_ptr(), &h as *const abi::Host);
    assert_eq!(host_ref.abi_version(), (1, 2));
    assert!(host_ref.has_objects());
    assert!(Object::query(host_ref, "org.ferrule.tests.surface.nothing", 1, 0).is_none());
    assert!(unsafe { HostRef::from_ptr(ptr::null()) }.is_none());
    take_logs();
    host_ref.log(Level::Warn, "direct");
    assert_eq!(take_logs(), [(abi::LOG_WARN, "direct".to_owned())]);
}

#[test]
fn call_errors() {
    let e = CallError::new(abi::PANIC, "panicked at here");
    assert!(e.is_panic());
    assert_eq!(
        (e.status(), e.message(), e.to_string()),
        (abi::PANIC, "panicked at here", "panicked at here".to_owned())
    );
    let as_error: &dyn std::error::Error = &e;
    assert_eq!(as_error.to_string(), "panicked at here");
    assert_eq!(e.clone().into_message(), "panicked at here");
    assert_eq!(String::from(e), "panicked at here");
    assert!(!CallError::new(abi::ERROR, "").is_panic());
}

#[test]
fn abi_items() {
    assert_eq!((abi::ABI_MAJOR, abi::ABI_MINOR), (1, 2));
    assert_eq!(&abi::MAGIC.to_be_bytes(), b"FERRULE!");
    assert_eq!((abi::OK, abi::ERROR, abi::PANIC), (0, 1, 2));
    assert_eq!((abi::FN_THREAD_SAFE, abi::FN_QUICK, abi::IFACE_THREAD_SAFE), (1, 2, 1));
    assert_eq!(abi::ENTRY_SYMBOL, "ferrule_entry_v1");
    let word = size_of::<usize>();
    for size in [
        size_of::<Option<abi::ReleaseFn>>(),
        size_of::<Option<abi::LogFn>>(),
        size_of::<Option<abi::SetErrorFn>>(),
        size_of::<Option<abi::AllocFn>>(),
        size_of::<Option<abi::FreeFn>>(),
        size_of::<Option<abi::InvokeFn>>(),
        size_of::<Option<abi::QueryFn>>(),
        size_of::<Option<abi::ObjectCallFn>>(),
        size_of::<Option<abi::ReleaseObjectFn>>(),
        size_of::<abi::CallFn>(),
        size_of::<Option<abi::InitFn>>(),
        size_of::<abi::CreateFn>(),
        size_of::<abi::DestroyFn>(),
        size_of::<Option<abi::ShutdownFn>>(),
        size_of::<abi::EntryFn>(),
        size_of::<*const abi::FnHandle>(),
        size_of::<*const abi::Object>(),
    ] {
        assert_eq!(size, word);
    }
    assert_eq!(size_of::<abi::Value>(), size_of::<abi::Bytes>());
    assert!(size_of::<abi::Buf>() <= size_of::<abi::Bytes>());
    assert_eq!(unsafe { abi::Value::ZERO.u64 }, 0);
    assert_eq!(size_of::<abi::Function>(), 4 * word + 8);
}

ferrule_sdk::interface! {
    /// A pair of numbers.
    pub struct Pair { a: u32, b: u32 }

    #[interface(id = "org.ferrule.tests.surface.sum", revision = 1)]
    pub mod sum: trait Sum {
        fn sum(pair: struct Pair) -> u64;
    }
}

#[test]
fn declared_interfaces() {
    assert_eq!(sum::ID, "org.ferrule.tests.surface.sum");
    assert_eq!(sum::REVISION, 1);
    assert!(sum::LAYOUT.contains("struct Pair: size 8, align 4\n"));
    assert_ne!(sum::FINGERPRINT, 0);
    assert_eq!(Pair { a: 1, b: 2 }, Pair { a: 1, b: 2 });
}
