//! Interfaces (ABI 1.2): implementations exported by `plugin!`, driven
//! through their raw `ferrule_interface`, and generated clients calling
//! through a fake host whose query/call/release lend this plugin's own
//! implementations. Uses the generated bindings of tests/iface_api.py.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CStr};
use std::ptr;
use std::sync::Mutex;

use ferrule_sdk::abi::{self, Buf, Bytes, Host, Interface, Plugin, Value};
use ferrule_sdk::__private::iface::{self, Struct};
use ferrule_sdk::HostFn;

#[path = "generated/iface_api.rs"] // a link to the file ferrule generates for tests/iface_api.py
mod api;

use api::{counter, shapes, store, Point, Rect, Token};

// ---- implementations ----------------------------------------------------------

struct TestCounter<const B: bool> {
    total: i64,
}

impl<const B: bool> TestCounter<B> {
    const NAME: &'static str = if B { "test-counter-b" } else { "test-counter" };
}

impl<const B: bool> counter::Counter for TestCounter<B> {
    type Error = String;

    fn create() -> Result<Self, String> {
        ferrule_sdk::info!("create {}", Self::NAME);
        Ok(TestCounter { total: 0 })
    }
    fn add(&mut self, n: i64) -> Result<i64, String> {
        self.total += n;
        Ok(self.total)
    }
    fn total(&mut self) -> Result<i64, String> {
        Ok(self.total)
    }
    fn slow_add(&mut self, n: i64, _spin_us: u32) -> Result<i64, String> {
        self.add(n)
    }
    fn name(&mut self) -> Result<String, String> {
        Ok(Self::NAME.to_owned())
    }
    fn fail(&mut self, message: &str) -> Result<(), String> {
        if message == "panic" {
            panic!("asked to panic");
        }
        Err(message.to_owned())
    }
}

impl<const B: bool> Drop for TestCounter<B> {
    fn drop(&mut self) {
        ferrule_sdk::info!("destroy {}", Self::NAME);
    }
}

struct TestShapes {
    labels: Mutex<Vec<String>>,
}

impl shapes::Shapes for TestShapes {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(TestShapes {
            labels: Mutex::new(Vec::new()),
        })
    }
    fn area(&self, r: Rect) -> Result<u64, String> {
        Ok(u64::from(r.width) * u64::from(r.height))
    }
    fn grow(&self, r: Rect, by: u32) -> Result<Rect, String> {
        let (width, height) = (r.width + 2 * by, r.height + 2 * by);
        Ok(Rect {
            origin: Point {
                x: r.origin.x - by as i32,
                y: r.origin.y - by as i32,
            },
            width,
            height,
            filled: r.filled,
            area_hint: u64::from(width) * u64::from(height),
        })
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
        let mut labels = self.labels.lock().unwrap();
        labels.push(label.to_owned());
        Ok(Token(labels.len() as u64))
    }
    fn label(&self, t: Token) -> Result<String, String> {
        let labels = self.labels.lock().unwrap();
        (t.0 as usize)
            .checked_sub(1)
            .and_then(|i| labels.get(i))
            .cloned()
            .ok_or(format!("unknown token {}", t.0))
    }
    fn echo(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        Ok(data.to_vec())
    }
    fn apply(&self, f: HostFn<'_, fn(i64) -> i64>, x: i64) -> Result<i64, String> {
        Ok(f.call(x)?)
    }
}

struct TestStore {
    values: Mutex<BTreeMap<String, String>>,
}

impl store::Store for TestStore {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(TestStore {
            values: Mutex::new(BTreeMap::new()),
        })
    }
    fn get(&self, key: &str) -> Result<String, String> {
        self.values
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or(format!("no key {key:?}"))
    }
    fn put(&self, key: &str, value: &str) -> Result<(), String> {
        self.values.lock().unwrap().insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}

/// Fails to create.
struct NoStore;

impl store::Store for NoStore {
    type Error = &'static str;

    fn create() -> Result<Self, &'static str> {
        Err("no store today")
    }
    fn get(&self, _key: &str) -> Result<String, &'static str> {
        unreachable!()
    }
    fn put(&self, _key: &str, _value: &str) -> Result<(), &'static str> {
        unreachable!()
    }
}

ferrule_sdk::plugin! {
    id: "org.ferrule.tests.sdk.ifaces",
    name: "SDK interface test",
    version: "1",
    functions: {
        /// Store through the host: put, then get.
        fn roundtrip(key: &str, value: &str) -> Result<String, String> {
            let store = store::Client::query().ok_or("no store")?;
            store.put(key, value)?;
            Ok(store.get(key)?)
        }
        /// Store through the host: get (a failure keeps the callee's message).
        fn get(key: &str) -> Result<String, String> {
            let store = store::Client::query().ok_or("no store")?;
            Ok(store.get(key)?)
        }
        /// Counter through the host.
        fn counter_via_host(n: i64) -> Result<i64, String> {
            let mut counter = counter::Client::query().ok_or("no counter")?;
            counter.add(n)?;
            counter.add(n)?;
            Ok(counter.total()?)
        }
        /// Whether the function sees a host.
        fn has_host() -> bool { ferrule_sdk::host().is_some() }
    },
    interfaces: [
        counter::export::<TestCounter<false>>("test-counter", "A running total."),
        counter::export::<TestCounter<true>>("test-counter-b", ""),
        shapes::export::<TestShapes>("test-shapes", "Every kind."),
        store::export::<NoStore>("no-store", ""),
        store::export::<TestStore>("test-store", ""),
    ],
}

// ---- a fake host ------------------------------------------------------------------

thread_local! {
    static LOGS: RefCell<Vec<(i32, String)>> = const { RefCell::new(Vec::new()) };
    static ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn text(msg: *const c_char, len: usize) -> String {
    String::from_utf8(unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) }.to_vec()).unwrap()
}

unsafe extern "C" fn host_log(_h: *const Host, level: i32, msg: *const c_char, len: usize) {
    LOGS.with(|l| l.borrow_mut().push((level, text(msg, len))));
}

unsafe extern "C" fn host_set_error(_h: *const Host, msg: *const c_char, len: usize) {
    ERROR.with(|e| *e.borrow_mut() = Some(text(msg, len)));
}

/// What the fake host lends: an instance of one of the plugin's own
/// implementations.
struct Lent {
    iface: &'static Interface,
    this: *mut c_void,
}

thread_local! {
    // Per test thread: the tests run in parallel.
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static RELEASED_MESSAGES: Cell<usize> = const { Cell::new(0) };
}

fn live() -> usize {
    LIVE.with(Cell::get)
}

unsafe extern "C" fn release_message(ptr: *mut c_void, len: usize) {
    RELEASED_MESSAGES.with(|n| n.set(n.get() + 1));
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(ptr.cast::<u8>(), len)) });
}

/// The first implementation of (id, revision, fingerprint) that creates.
unsafe extern "C" fn host_query(
    h: *const Host,
    id: *const c_char,
    revision: u32,
    fingerprint: u64,
) -> *const abi::Object {
    let id = unsafe { CStr::from_ptr(id) }.to_str().unwrap();
    for i in interfaces() {
        if cstr(i.id) == Some(id) && i.revision == revision && i.fingerprint == fingerprint {
            let mut this = ptr::null_mut();
            if unsafe { (i.create)(h, ptr::null_mut(), &mut this) } == abi::OK {
                LIVE.with(|n| n.set(n.get() + 1));
                return Box::into_raw(Box::new(Lent { iface: i, this })).cast::<abi::Object>();
            }
            ERROR.with(|e| e.borrow_mut().take());
        }
    }
    ptr::null()
}

unsafe extern "C" fn host_call(
    h: *const Host,
    object: *const abi::Object,
    method: u32,
    args: *const Value,
    ret: *mut Value,
) -> i32 {
    let lent = unsafe { &*object.cast::<Lent>() };
    assert!(method < lent.iface.method_count);
    let f = unsafe { *lent.iface.methods.add(method as usize) };
    let status = unsafe { f(h, lent.this, args, ret) };
    if status != abi::OK {
        let msg = ERROR
            .with(|e| e.borrow_mut().take())
            .unwrap_or_default()
            .into_bytes()
            .into_boxed_slice();
        let len = msg.len();
        let bytes = Bytes {
            ptr: Box::into_raw(msg).cast::<c_void>(),
            len,
            release: Some(release_message),
        };
        unsafe { ret.write(Value { bytes }) };
    }
    status
}

unsafe extern "C" fn host_release(h: *const Host, object: *const abi::Object) {
    if object.is_null() {
        return;
    }
    let lent = unsafe { Box::from_raw(object.cast_mut().cast::<Lent>()) };
    unsafe { (lent.iface.destroy)(h, ptr::null_mut(), lent.this) };
    LIVE.with(|n| n.set(n.get() - 1));
}

fn host() -> Host {
    Host {
        struct_size: std::mem::size_of::<Host>() as u32,
        abi_major: 1,
        abi_minor: 2,
        host_data: ptr::null_mut(),
        log: Some(host_log),
        set_error: Some(host_set_error),
        alloc: None,
        free: None,
        invoke: None,
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

fn plugin() -> &'static Plugin {
    unsafe { &*ferrule_entry_v1() }
}

fn interfaces() -> Vec<&'static Interface> {
    let p = plugin();
    unsafe { std::slice::from_raw_parts(p.interfaces, p.interface_count as usize) }
        .iter()
        .map(|i| unsafe { &**i })
        .collect()
}

fn implementation(name: &str) -> &'static Interface {
    interfaces().into_iter().find(|i| cstr(i.name) == Some(name)).unwrap()
}

fn logs() -> Vec<(i32, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// An instance of `name`, made and destroyed with the fake host.
struct Instance {
    iface: &'static Interface,
    this: *mut c_void,
    host: Box<Host>,
}

impl Instance {
    fn new(name: &str) -> Instance {
        let iface = implementation(name);
        let host = Box::new(host());
        let mut this = ptr::null_mut();
        assert_eq!(unsafe { (iface.create)(&*host, ptr::null_mut(), &mut this) }, abi::OK);
        assert!(!this.is_null());
        Instance { iface, this, host }
    }

    /// Calls method `index`: status, return slot, error message.
    fn call(&self, index: usize, args: &[Value]) -> (i32, Value, Option<String>) {
        let f = unsafe { *self.iface.methods.add(index) };
        let mut ret = Value::ZERO;
        ERROR.with(|e| e.borrow_mut().take());
        let status = unsafe { f(&*self.host, self.this, args.as_ptr(), &mut ret) };
        (status, ret, ERROR.with(|e| e.borrow_mut().take()))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        unsafe { (self.iface.destroy)(&*self.host, ptr::null_mut(), self.this) };
    }
}

fn int(n: i64) -> Value {
    Value { i64: n }
}

fn uint(n: u64) -> Value {
    Value { u64: n }
}

fn str_arg(s: &CStr) -> Value {
    Value {
        bytes: Bytes {
            ptr: s.as_ptr().cast::<c_void>(),
            len: s.to_bytes().len(),
            release: None,
        },
    }
}

fn bytes_arg(b: &[u8]) -> Value {
    Value {
        bytes: Bytes {
            ptr: b.as_ptr().cast::<c_void>(),
            len: b.len(),
            release: None,
        },
    }
}

fn take_text(v: Value) -> String {
    let b = unsafe { v.bytes };
    let data = unsafe { std::slice::from_raw_parts(b.ptr.cast::<u8>(), b.len) }.to_vec();
    if let Some(release) = b.release {
        unsafe { release(b.ptr.cast_mut(), b.len) };
    }
    String::from_utf8(data).unwrap()
}

fn call_function(name: &str, h: &Host, args: &[Value]) -> (i32, Value, Option<String>) {
    let p = plugin();
    let fns = unsafe { std::slice::from_raw_parts(p.functions, p.function_count as usize) };
    let f = fns
        .iter()
        .map(|f| unsafe { &**f })
        .find(|f| cstr(f.name) == Some(name))
        .unwrap();
    let mut ret = Value::ZERO;
    ERROR.with(|e| e.borrow_mut().take());
    let status = unsafe { (f.call)(h, ptr::null_mut(), args.as_ptr(), &mut ret) };
    (status, ret, ERROR.with(|e| e.borrow_mut().take()))
}

// ---- tests ----------------------------------------------------------------------

#[test]
fn descriptor_lists_the_implementations() {
    let p = plugin();
    assert_eq!((p.abi_major, p.abi_minor), (1, 2));
    assert_eq!(p.struct_size as usize, std::mem::size_of::<Plugin>());
    assert_eq!((p.interface_count, p.reserved), (5, 0));
    let names: Vec<_> = interfaces().iter().map(|i| cstr(i.name).unwrap()).collect();
    assert_eq!(
        names,
        [
            "test-counter",
            "test-counter-b",
            "test-shapes",
            "no-store",
            "test-store"
        ]
    );

    let c = implementation("test-counter");
    assert_eq!(c.struct_size as usize, std::mem::size_of::<Interface>());
    assert_eq!(cstr(c.id), Some("org.ferrule.test.counter"));
    assert_eq!((c.revision, c.method_count, c.flags), (1, 5, 0));
    assert_eq!(c.fingerprint, counter::FINGERPRINT);
    assert_eq!(cstr(c.layout), Some(counter::LAYOUT));
    assert!(counter::LAYOUT.starts_with("ferrule-layout 1\ninterface org.ferrule.test.counter\n"));
    assert_eq!(cstr(c.doc), Some("A running total."));
    assert_eq!(cstr(implementation("test-counter-b").doc), None);

    let s = implementation("test-shapes");
    assert_eq!((s.revision, s.method_count, s.flags), (1, 9, abi::IFACE_THREAD_SAFE));
    assert_eq!(s.fingerprint, shapes::FINGERPRINT);
}

#[test]
fn counter_lifecycle_and_errors() {
    logs();
    {
        let c = Instance::new("test-counter-b");
        assert_eq!(logs(), [(abi::LOG_INFO, "create test-counter-b".to_owned())]);
        let (status, ret, _) = c.call(0, &[int(2)]);
        assert_eq!((status, unsafe { ret.i64 }), (abi::OK, 2));
        let (status, ret, _) = c.call(0, &[int(-5)]);
        assert_eq!((status, unsafe { ret.i64 }), (abi::OK, -3));
        assert_eq!(unsafe { c.call(1, &[]).1.i64 }, -3);
        let (status, ret, _) = c.call(3, &[]);
        assert_eq!((status, take_text(ret)), (abi::OK, "test-counter-b".to_owned()));
        let (status, _, err) = c.call(4, &[str_arg(c"it broke")]);
        assert_eq!((status, err.as_deref()), (abi::ERROR, Some("it broke")));
        let (status, _, err) = c.call(4, &[str_arg(c"panic")]);
        assert_eq!(status, abi::PANIC);
        let err = err.unwrap();
        assert!(
            err.starts_with("panicked at ") && err.ends_with(": asked to panic"),
            "{err}"
        );
        let (status, _, err) = c.call(4, &[bytes_arg(b"\xff")]);
        assert_eq!(status, abi::ERROR);
        assert!(err.unwrap().starts_with("argument `message`: invalid UTF-8"));
        // Still usable after a panic.
        assert_eq!(unsafe { c.call(0, &[int(3)]).1.i64 }, 0);
    }
    assert_eq!(logs(), [(abi::LOG_INFO, "destroy test-counter-b".to_owned())]);
}

#[test]
fn failing_create_reports_its_message() {
    let i = implementation("no-store");
    let h = host();
    let mut this = ptr::null_mut();
    ERROR.with(|e| e.borrow_mut().take());
    assert_eq!(unsafe { (i.create)(&h, ptr::null_mut(), &mut this) }, abi::ERROR);
    assert!(this.is_null());
    assert_eq!(ERROR.with(|e| e.borrow_mut().take()).as_deref(), Some("no store today"));
}

#[test]
fn shapes_every_parameter_kind() {
    let s = Instance::new("test-shapes");
    let rect = Rect {
        origin: Point { x: 1, y: 2 },
        width: 3,
        height: 4,
        filled: true,
        area_hint: 0,
    };
    let bytes = iface::struct_bytes(&rect);
    assert_eq!(bytes.len(), 32);
    // Unaligned on purpose.
    let mut unaligned = vec![0u8; 33];
    unaligned[1..].copy_from_slice(&bytes);
    let (status, ret, _) = s.call(0, &[bytes_arg(&unaligned[1..])]);
    assert_eq!((status, unsafe { ret.u64 }), (abi::OK, 12));
    let (status, _, err) = s.call(0, &[bytes_arg(&bytes[..31])]);
    assert_eq!(
        (status, err.as_deref()),
        (abi::ERROR, Some("argument `r`: struct Rect is 32 bytes, got 31"))
    );
    let mut bad_bool = bytes.clone();
    bad_bool[16] = 2;
    let (status, _, err) = s.call(0, &[bytes_arg(&bad_bool)]);
    assert_eq!(status, abi::ERROR);
    assert_eq!(
        err.unwrap(),
        "argument `r`: struct Rect: bool at offset 16 is 2, not 0 or 1"
    );

    // grow: struct result through the trailing out buffer.
    let mut out = vec![0xAAu8; 32];
    let out_slot = Value {
        buf: Buf {
            ptr: out.as_mut_ptr().cast(),
            len: 32,
        },
    };
    let (status, _, err) = s.call(1, &[bytes_arg(&bytes), uint(1), out_slot]);
    assert_eq!((status, err), (abi::OK, None));
    let grown = Rect::read(&out).unwrap();
    assert_eq!(
        grown,
        Rect {
            origin: Point { x: 0, y: 1 },
            width: 5,
            height: 6,
            filled: true,
            area_hint: 30
        }
    );
    assert!(out[17..24].iter().all(|&b| b == 0), "padding zeroed");
    let short = Value {
        buf: Buf {
            ptr: out.as_mut_ptr().cast(),
            len: 8,
        },
    };
    let (status, _, err) = s.call(1, &[bytes_arg(&bytes), uint(1), short]);
    assert_eq!(
        (status, err.as_deref()),
        (abi::ERROR, Some("argument `out`: struct Rect is 32 bytes, got 8"))
    );
    let overlapping = Value {
        buf: Buf {
            ptr: unaligned.as_mut_ptr().cast(),
            len: 32,
        },
    };
    let (status, _, err) = s.call(1, &[bytes_arg(&unaligned[1..]), uint(1), overlapping]);
    assert_eq!(status, abi::ERROR);
    assert!(err.unwrap().contains("overlaps"));

    // mix: every scalar slot.
    let mut c = Value::ZERO;
    c.f32 = 0.5;
    let args = [uint(0), int(-3), uint(65535), c, Value { f64: 0.25 }, uint(10)];
    let (status, ret, _) = s.call(2, &args);
    assert_eq!(
        (status, unsafe { ret.f64 }),
        (abi::OK, -(65535.0 - 3.0 + 0.5 + 0.25 + 10.0))
    );

    // sum and fill: typed buffers.
    let values = [1.5f64, 2.5, 3.0];
    let (status, ret, _) = s.call(
        3,
        &[Value {
            buf: Buf {
                ptr: values.as_ptr().cast_mut().cast(),
                len: 3,
            },
        }],
    );
    assert_eq!((status, unsafe { ret.f64 }), (abi::OK, 7.0));
    let mut target = [0i32; 4];
    let slot = Value {
        buf: Buf {
            ptr: target.as_mut_ptr().cast(),
            len: 4,
        },
    };
    assert_eq!(s.call(4, &[slot, int(-7)]).0, abi::OK);
    assert_eq!(target, [-7; 4]);

    // token and label: handles.
    let (status, ret, _) = s.call(5, &[str_arg(c"first")]);
    assert_eq!((status, unsafe { ret.u64 }), (abi::OK, 1));
    assert_eq!(unsafe { s.call(5, &[str_arg(c"second")]).1.u64 }, 2);
    assert_eq!(take_text(s.call(6, &[uint(2)]).1), "second");
    let (status, _, err) = s.call(6, &[uint(9)]);
    assert_eq!((status, err.as_deref()), (abi::ERROR, Some("unknown token 9")));

    // echo: bytes.
    let (status, ret, _) = s.call(7, &[bytes_arg(b"a\0b")]);
    assert_eq!((status, take_text(ret)), (abi::OK, "a\0b".to_owned()));
}

#[test]
fn clients_call_through_the_host() {
    let h = host();
    let (status, ret, err) = call_function("roundtrip", &h, &[str_arg(c"k"), str_arg(c"v")]);
    assert_eq!((status, err), (abi::OK, None));
    assert_eq!(take_text(ret), "v");
    // The callee's message, unchanged, and released by the client.
    let released = RELEASED_MESSAGES.with(Cell::get);
    let (status, _, err) = call_function("get", &h, &[str_arg(c"missing")]);
    assert_eq!((status, err.as_deref()), (abi::ERROR, Some("no key \"missing\"")));
    assert!(RELEASED_MESSAGES.with(Cell::get) > released);

    let (status, ret, err) = call_function("counter_via_host", &h, &[int(21)]);
    assert_eq!((status, unsafe { ret.i64 }, err), (abi::OK, 42, None));
    assert_eq!(live(), 0, "every object released");
    let (status, ret, _) = call_function("has_host", &h, &[]);
    assert_eq!((status, unsafe { ret.u64 }), (abi::OK, 1));
}

#[test]
fn typed_clients() {
    let h = host();
    let host_ref = unsafe { ferrule_sdk::HostRef::from_ptr(&h) }.unwrap();
    assert!(host_ref.has_objects());
    assert_eq!(host_ref.abi_version(), (1, 2));
    {
        let mut c = counter::Client::query_in(host_ref).expect("a counter");
        assert_eq!(c.add(5), Ok(5));
        assert_eq!(c.slow_add(1, 0), Ok(6));
        assert_eq!(c.name().as_deref(), Ok("test-counter"));
        let err = c.fail("nope").unwrap_err();
        assert_eq!((err.status(), err.message()), (abi::ERROR, "nope"));
        assert_eq!(String::from(err), "nope");
        let err = c.fail("panic").unwrap_err();
        assert!(err.is_panic() && err.to_string().ends_with("asked to panic"), "{err}");

        let s = shapes::Client::query_in(host_ref).expect("shapes");
        let rect = Rect {
            origin: Point { x: -1, y: 0 },
            width: 2,
            height: 3,
            filled: false,
            area_hint: 7,
        };
        assert_eq!(s.area(rect), Ok(6));
        assert_eq!(
            s.grow(rect, 2)
                .map(|r| (r.origin, r.width, r.height, r.filled, r.area_hint)),
            Ok((Point { x: -3, y: -2 }, 6, 7, false, 42))
        );
        assert_eq!(s.mix(true, 1, 2, 3.0, 4.0, 5), Ok(15.0));
        assert_eq!(s.sum(&[1.0, 2.0]), Ok(3.0));
        let mut target = [1i32, 2, 3];
        assert_eq!(s.fill(&mut target, 9), Ok(()));
        assert_eq!(target, [9, 9, 9]);
        let t = s.token("label").unwrap();
        assert_eq!(t, Token(1));
        assert_eq!(s.label(t).as_deref(), Ok("label"));
        assert_eq!(s.label(Token(5)).unwrap_err().message(), "unknown token 5");
        assert_eq!(s.echo(b"\x00\x01").as_deref(), Ok(&b"\x00\x01"[..]));
        assert_eq!(live(), 2);
    }
    assert_eq!(live(), 0, "dropping a client releases it");
    assert!(
        api::store2::Client::query_in(host_ref).is_none(),
        "no implementation of revision 2"
    );
}

#[test]
fn older_hosts_and_no_host_lend_nothing() {
    assert!(ferrule_sdk::host().is_none());
    assert!(counter::Client::query().is_none(), "outside of a call");
    let mut old = host();
    old.struct_size = std::mem::offset_of!(Host, query) as u32;
    let old_ref = unsafe { ferrule_sdk::HostRef::from_ptr(&old) }.unwrap();
    assert!(!old_ref.has_objects());
    assert!(counter::Client::query_in(old_ref).is_none());
    let (status, _, err) = call_function("get", &old, &[str_arg(c"k")]);
    assert_eq!((status, err.as_deref()), (abi::ERROR, Some("no store")));
}

#[test]
fn struct_layouts_round_trip() {
    let r = Rect {
        origin: Point { x: i32::MIN, y: 7 },
        width: u32::MAX,
        height: 1,
        filled: true,
        area_hint: u64::MAX,
    };
    let bytes = iface::struct_bytes(&r);
    assert_eq!(Rect::read(&bytes), Ok(r));
    // The C layout is the Rust layout: the bytes of the value itself match
    // (padding aside).
    let base = (&r as *const Rect).cast::<u8>();
    assert_eq!(unsafe { std::slice::from_raw_parts(base, 17) }, &bytes[..17]);
    assert_eq!(unsafe { std::slice::from_raw_parts(base.add(24), 8) }, &bytes[24..]);
    assert_eq!(
        iface::struct_result::<Point>(&[1, 0, 0, 0, 2, 0, 0, 0]),
        Ok(Point { x: 1, y: 2 })
    );
    let err = iface::struct_result::<Rect>(&[3; 32]).unwrap_err();
    assert_eq!(err.message(), "result struct Rect: bool at offset 16 is 3, not 0 or 1");
}
