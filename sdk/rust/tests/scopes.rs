//! Per-thread shim state across nested calls: a host function that calls
//! back into the plugin (with another host) while a call is running, panics
//! inside and around such callbacks, and captured panic messages that must
//! not outlive their call.
//!
//! One test in its own binary, on purpose: the last step replaces the panic
//! hook of the process.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use ferrule_sdk::abi::{self, Bytes, FnHandle, Function, Host, Plugin, Value};
use ferrule_sdk::{HostFn, HostFnError};

ferrule_sdk::plugin! {
    id: "org.ferrule.tests.scopes",
    name: "Scopes",
    version: "0",
    functions: {
        fn hello(tag: &str) { ferrule_sdk::info!("hello {tag}"); }
        fn boom(msg: &str) -> i64 { panic!("{msg}") }
        /// Logs, calls `f` (which may call back into this plugin), logs again.
        fn around(f: HostFn<'_, fn(i64) -> i64>) -> Result<i64, HostFnError> {
            ferrule_sdk::info!("before");
            let r = f.call(1);
            ferrule_sdk::info!("after {:?}", ferrule_sdk::host_abi_version());
            r
        }
        /// Panics; while it unwinds, a drop guard calls `f`.
        fn unwind_reenter(f: HostFn<'_, fn(i64) -> i64>) -> i64 {
            struct CallOnDrop<'a>(HostFn<'a, fn(i64) -> i64>);
            impl Drop for CallOnDrop<'_> {
                fn drop(&mut self) {
                    let _ = self.0.call(2);
                }
            }
            let _guard = CallOnDrop(f);
            panic!("outer")
        }
        /// Panics and catches the panic itself.
        fn swallow() -> bool { std::panic::catch_unwind(|| panic!("swallowed")).is_err() }
        /// Calls `f`, then panics with a panic hook of its own, which
        /// captures nothing: the message can only come from the payload.
        fn silent_panic(f: HostFn<'_, fn(i64) -> i64>) -> Result<i64, HostFnError> {
            f.call(3)?;
            std::panic::set_hook(Box::new(|_| {}));
            panic!("plain")
        }
    }
}

// ---- a fake host, two instances told apart by host_data ---------------------

/// What a host saw: `(host id, message)` for logs and errors.
#[derive(Default)]
struct Seen {
    logs: Vec<(usize, String)>,
    errors: Vec<(usize, String)>,
}

thread_local! {
    static SEEN: RefCell<Seen> = RefCell::new(Seen::default());
}

fn text(msg: *const c_char, len: usize) -> String {
    let bytes = unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) };
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn host_id(h: *const Host) -> usize {
    unsafe { (*h).host_data as usize }
}

unsafe extern "C" fn host_log(h: *const Host, _level: i32, msg: *const c_char, len: usize) {
    SEEN.with(|s| s.borrow_mut().logs.push((host_id(h), text(msg, len))));
}

unsafe extern "C" fn host_set_error(h: *const Host, msg: *const c_char, len: usize) {
    SEEN.with(|s| s.borrow_mut().errors.push((host_id(h), text(msg, len))));
}

/// A host function: what a handle points to here.
struct Callback(fn() -> Value);

unsafe extern "C" fn host_invoke(_h: *const Host, func: *const FnHandle, _args: *const Value, ret: *mut Value) -> i32 {
    let f = unsafe { &*func.cast::<Callback>() };
    unsafe { ret.write((f.0)()) };
    abi::OK
}

fn make_host(id: usize) -> Host {
    Host {
        struct_size: std::mem::size_of::<Host>() as u32,
        abi_major: 1,
        abi_minor: id as u16,
        host_data: ptr::null_mut::<u8>().wrapping_add(id).cast::<c_void>(),
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

fn function(name: &str) -> &'static Function {
    let p: &Plugin = unsafe { &*ferrule_entry_v1() };
    let fns = unsafe { std::slice::from_raw_parts(p.functions, p.function_count as usize) };
    fns.iter()
        .map(|f| unsafe { &**f })
        .find(|f| unsafe { CStr::from_ptr(f.name) }.to_str() == Ok(name))
        .unwrap()
}

fn call(host: &Host, name: &str, args: &[Value]) -> (i32, Value) {
    let mut ret = Value::ZERO;
    let rc = unsafe { (function(name).call)(host, ptr::null_mut(), args.as_ptr(), &mut ret) };
    (rc, ret)
}

fn str_arg(s: &'static str) -> Value {
    Value { bytes: Bytes { ptr: s.as_ptr().cast(), len: s.len(), release: None } }
}

fn handle(f: &'static Callback) -> Value {
    Value { func: (f as *const Callback).cast::<FnHandle>() }
}

fn take_seen() -> Seen {
    SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// Host functions that call back into the plugin as host 2.
static HELLO_AS_2: Callback = Callback(|| {
    let rc = call(&make_host(2), "hello", &[str_arg("inner")]).0;
    Value { i64: rc as i64 }
});
static BOOM_AS_2: Callback = Callback(|| {
    let rc = call(&make_host(2), "boom", &[str_arg("inner boom")]).0;
    Value { i64: rc as i64 }
});
static SWALLOW_AS_2: Callback = Callback(|| {
    let (rc, ret) = call(&make_host(2), "swallow", &[]);
    assert_eq!((rc, unsafe { ret.u64 }), (abi::OK, 1));
    Value { i64: 0 }
});

const HERE: &str = "panicked at sdk/rust/tests/scopes.rs:";

#[test]
fn nested_scopes() {
    let host1 = make_host(1);

    // Logs reach the host of the innermost running call, and the outer
    // call's host again once the callback returns.
    let (rc, ret) = call(&host1, "around", &[handle(&HELLO_AS_2)]);
    assert_eq!((rc, unsafe { ret.i64 }), (abi::OK, abi::OK as i64));
    let seen = take_seen();
    assert_eq!(
        seen.logs,
        [(1, "before".to_owned()), (2, "hello inner".to_owned()), (1, "after Some((1, 1))".to_owned())]
    );
    assert!(seen.errors.is_empty());
    assert_eq!(ferrule_sdk::host_abi_version(), None, "no host outside a call");

    // A panic in the nested call is reported to its own host; the outer
    // call goes on with its own host.
    let (rc, ret) = call(&host1, "around", &[handle(&BOOM_AS_2)]);
    assert_eq!((rc, unsafe { ret.i64 }), (abi::OK, abi::PANIC as i64));
    let seen = take_seen();
    assert_eq!(seen.logs, [(1, "before".to_owned()), (1, "after Some((1, 1))".to_owned())]);
    assert_eq!(seen.errors.len(), 1);
    let (id, err) = &seen.errors[0];
    assert_eq!(*id, 2);
    assert!(err.starts_with(HERE) && err.ends_with(": inner boom"), "{err}");

    // A call that re-enters the plugin while it unwinds: each panic keeps
    // its own message and location.
    let (rc, _) = call(&host1, "unwind_reenter", &[handle(&BOOM_AS_2)]);
    assert_eq!(rc, abi::PANIC);
    let seen = take_seen();
    assert_eq!(seen.errors.len(), 2, "{:?}", seen.errors);
    let (id, err) = &seen.errors[0];
    assert_eq!(*id, 2);
    assert!(err.starts_with(HERE) && err.ends_with(": inner boom"), "{err}");
    let (id, err) = &seen.errors[1];
    assert_eq!(*id, 1);
    assert!(err.starts_with(HERE) && err.ends_with(": outer"), "{err}");

    // A panic the plugin catches itself leaves nothing behind, neither at
    // the top level nor in a nested call: below, with a hook that captures
    // nothing, the message comes from the payload, not from a stale capture.
    let (rc, ret) = call(&host1, "swallow", &[]);
    assert_eq!((rc, unsafe { ret.u64 }), (abi::OK, 1));
    let (rc, _) = call(&host1, "silent_panic", &[handle(&SWALLOW_AS_2)]);
    drop(std::panic::take_hook()); // back to the default hook
    assert_eq!(rc, abi::PANIC);
    let seen = take_seen();
    assert_eq!(seen.errors, [(1, "panicked at <unknown location>: plain".to_owned())]);
    assert_eq!(ferrule_sdk::host_abi_version(), None);
}
