//! The host callback table a Rust host hands each plugin at init: logging
//! to the `log` facade, the failure message of the current call, memory,
//! host functions (closures) and, for a plugin a `PluginHost` loaded, the
//! objects it lends (services and other plugins' implementations).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, RwLock};

use ferrule_sdk::abi;

use crate::error::{Error, ErrorKind};
use crate::types::{py_repr, Scalar, Signature, Type};
use crate::value::HostFn;

/// Bytes kept of a set_error message (the Python host keeps as many).
const MAX_MESSAGE: usize = 1 << 16;
/// What a failure without a message reads, as in the Python host.
pub(crate) const NO_MESSAGE: &str = "(the plugin gave no error message)";

thread_local! {
    /// The failure message the plugin set on this thread for the current call.
    static ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Whether ERROR may hold a message: a thread-local without a destructor,
    /// so that a call that finds none (nearly every call) reads one flag.
    static PENDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[inline]
pub(crate) fn clear_error() {
    if !PENDING.with(std::cell::Cell::get) {
        return;
    }
    PENDING.with(|p| p.set(false));
    ERROR.with(|e| {
        if let Ok(mut message) = e.try_borrow_mut() {
            if message.is_some() {
                *message = None;
            }
        }
    });
}

/// The thread's pending message, kept aside while a host function runs (it
/// may call plugins, which clear and take messages of their own).
pub(crate) fn stash_error() -> Option<String> {
    ERROR.with(|e| e.try_borrow_mut().ok().and_then(|mut m| m.take()))
}

pub(crate) fn restore_error(saved: Option<String>) {
    if saved.is_some() {
        PENDING.with(|p| p.set(true));
    }
    ERROR.with(|e| {
        if let Ok(mut m) = e.try_borrow_mut() {
            *m = saved;
        }
    });
}

pub(crate) fn take_error() -> String {
    ERROR.with(|e| e.borrow_mut().take()).filter(|m| !m.is_empty()).unwrap_or_else(|| NO_MESSAGE.to_string())
}

/// What host_data points to: the log target of the plugin, and the host
/// functions of its calls in flight (by handle address).
pub(crate) struct HostData {
    pub(crate) target: String,
    /// By handle: a number never used twice, not an address, so that a handle
    /// a plugin kept past its call never names a later call's function.
    pub(crate) frames: Mutex<HashMap<usize, Arc<Frame>>>,
    pub(crate) next_handle: std::sync::atomic::AtomicUsize,
    /// The PluginHost that loaded the plugin: what its queries find.
    pub(crate) registry: Option<std::sync::Weak<crate::services::Registry>>,
    /// The plugin's id, for query warnings.
    pub(crate) plugin_id: String,
    /// A number no other plugin of this process gets: what its loans are
    /// filed under (a table's address may be reused by a later plugin).
    pub(crate) serial: usize,
    /// Its shutdown began: queries find nothing.
    pub(crate) shutting: std::sync::atomic::AtomicBool,
    /// The plugin, once loaded: a lending callback holds it for its duration
    /// (what the callback runs may drop the program's last handle).
    pub(crate) owner: std::sync::OnceLock<std::sync::Weak<crate::plugin::Inner>>,
}

static SERIALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// One host function passed to a call in flight. `open` is read-locked by
/// each invoke and write-locked once by the call that made it, as it ends:
/// the closure is never run after that call returned.
pub(crate) struct Frame {
    pub(crate) closure: *const HostFn<'static>,
    pub(crate) sig: Signature,
    pub(crate) function: String,
    pub(crate) param: String,
    pub(crate) open: RwLock<bool>,
    /// The first failure (the host function's own error, or its result's):
    /// final for the call, which returns it.
    pub(crate) error: Mutex<Option<Error>>,
}

// SAFETY: the closure is Sync (HostFn is), and used only while `open` holds.
unsafe impl Send for Frame {}
// SAFETY: as above.
unsafe impl Sync for Frame {}

/// A host table with its data; both live as long as the plugin.
pub(crate) struct HostTable {
    pub(crate) table: Box<abi::Host>,
    pub(crate) data: Box<HostData>,
}

// SAFETY: the table is read-only once built; its callbacks may run on any
// thread, and HostData is only read.
unsafe impl Send for HostTable {}
// SAFETY: as above.
unsafe impl Sync for HostTable {}

impl HostTable {
    pub(crate) fn new(plugin_id: &str, registry: Option<std::sync::Weak<crate::services::Registry>>) -> HostTable {
        let mut data = Box::new(HostData {
            target: format!("ferrule.plugin.{plugin_id}"),
            frames: Mutex::new(HashMap::new()),
            next_handle: std::sync::atomic::AtomicUsize::new(1),
            registry,
            plugin_id: plugin_id.to_string(),
            serial: SERIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            shutting: std::sync::atomic::AtomicBool::new(false),
            owner: std::sync::OnceLock::new(),
        });
        let table = Box::new(abi::Host {
            struct_size: std::mem::size_of::<abi::Host>() as u32,
            abi_major: abi::ABI_MAJOR,
            abi_minor: abi::ABI_MINOR,
            host_data: &mut *data as *mut HostData as *mut c_void,
            log: Some(log),
            set_error: Some(set_error),
            alloc: Some(alloc),
            free: Some(free),
            invoke: Some(invoke),
            query: Some(query),
            call: Some(call),
            release: Some(release),
        });
        HostTable { table, data }
    }

    pub(crate) fn as_ptr(&self) -> *const abi::Host {
        &*self.table
    }
}

/// # Safety
/// `msg` is NULL or points to `len` readable bytes.
unsafe fn message(msg: *const c_char, len: usize) -> String {
    if msg.is_null() {
        return String::new();
    }
    String::from_utf8_lossy(std::slice::from_raw_parts(msg as *const u8, len)).into_owned()
}

unsafe extern "C" fn log(host: *const abi::Host, level: i32, msg: *const c_char, len: usize) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: host is the table this crate made; host_data its HostData.
        let data = unsafe { &*((*host).host_data as *const HostData) };
        let level = match level {
            i32::MIN..=abi::LOG_TRACE => log::Level::Trace,
            abi::LOG_DEBUG => log::Level::Debug,
            abi::LOG_INFO => log::Level::Info,
            abi::LOG_WARN => log::Level::Warn,
            _ => log::Level::Error,
        };
        if log::log_enabled!(target: &data.target, level) {
            // SAFETY: the ABI says msg holds len bytes, borrowed for this call.
            let text = unsafe { message(msg, len) };
            log::log!(target: &data.target, level, "{text}");
        }
    }));
}

unsafe extern "C" fn set_error(_host: *const abi::Host, msg: *const c_char, len: usize) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the ABI says msg holds len bytes; at most MAX_MESSAGE are kept.
        let text = unsafe { message(msg, len.min(MAX_MESSAGE)) };
        ERROR.with(|e| *e.borrow_mut() = Some(text));
        PENDING.with(|p| p.set(true));
    }));
}

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    #[link_name = "free"]
    fn libc_free(ptr: *mut c_void);
}

unsafe extern "C" fn alloc(size: usize) -> *mut c_void {
    // SAFETY: malloc of at least one byte: a unique pointer even for size 0.
    unsafe { malloc(size.max(1)) }
}

unsafe extern "C" fn free(ptr: *mut c_void, _size: usize) {
    // SAFETY: ptr came from alloc (malloc), as the ABI requires, or is NULL.
    unsafe { libc_free(ptr) }
}

/// Give a message to a plugin in `ret->bytes`, in memory it releases with
/// this host's free.
///
/// # Safety
/// `ret` is writable.
pub(crate) unsafe fn give_bytes(ret: *mut abi::Value, text: &[u8]) {
    // SAFETY: a fresh allocation of text.len() bytes, written whole.
    unsafe {
        let out = alloc(text.len()) as *mut u8;
        if out.is_null() {
            (*ret).bytes = abi::Bytes { ptr: std::ptr::null(), len: 0, release: None };
            return;
        }
        std::ptr::copy_nonoverlapping(text.as_ptr(), out, text.len());
        (*ret).bytes = abi::Bytes { ptr: out as *const c_void, len: text.len(), release: Some(free) };
    }
}

unsafe extern "C" fn invoke(
    host: *const abi::Host,
    handle: *const abi::FnHandle,
    args: *const abi::Value,
    ret: *mut abi::Value,
) -> i32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: host is the table this crate made; host_data its HostData.
        let data = unsafe { &*((*host).host_data as *const HostData) };
        let Some(frame) = data.frames.lock().unwrap_or_else(|e| e.into_inner()).get(&(handle as usize)).cloned() else {
            return abi::ERROR; // not a live handle: unknown, or its call returned
        };
        let open = frame.open.read().unwrap_or_else(|e| e.into_inner());
        let mut error = frame.error.lock().unwrap_or_else(|e| e.into_inner());
        if !*open || error.is_some() || ret.is_null() {
            return abi::ERROR;
        }
        drop(error);
        let saved = stash_error(); // the plugin's pending message survives what the host function calls
        // SAFETY: args holds one slot per parameter of the function's
        // signature, borrowed for this invoke; ret is the plugin's slot.
        let outcome = unsafe { run_host_function(&frame, args, ret) };
        restore_error(saved);
        match outcome {
            Ok(()) => abi::OK,
            Err(e) => {
                error = frame.error.lock().unwrap_or_else(|e| e.into_inner());
                error.get_or_insert(e);
                abi::ERROR
            }
        }
    }))
    .unwrap_or(abi::ERROR)
}

/// # Safety
/// As for invoke: args has a slot per parameter, ret is writable; the frame is open.
unsafe fn run_host_function(frame: &Frame, args: *const abi::Value, ret: *mut abi::Value) -> Result<(), Error> {
    let mut values = Vec::with_capacity(frame.sig.params.len());
    if args.is_null() && !frame.sig.params.is_empty() {
        return Err(Error::new(
            ErrorKind::Value,
            format!("the plugin passed no arguments to a host function that takes {}", frame.sig.params.len()),
        ));
    }
    for (i, p) in frame.sig.params.iter().enumerate() {
        let Type::Scalar(s) = p.ty else { unreachable!("a host function's parameters are values") };
        // SAFETY: slot i of the plugin's arguments, of the parameter's type.
        let slot = unsafe { *args.add(i) };
        // SAFETY: a str or bytes parameter's member.
        if matches!(s, Scalar::Str | Scalar::Bytes) && unsafe { slot.bytes.ptr.is_null() && slot.bytes.len != 0 } {
            return Err(Error::new(ErrorKind::Value, "the plugin passed a NULL pointer with a non-zero length"));
        }
        // SAFETY: the member the type uses.
        values.push(match unsafe { crate::plugin::value_of(s, slot) } {
            Ok(v) => v,
            Err(at_reason) => {
                return Err(Error::new(
                    ErrorKind::PluginCall,
                    format!(
                        "plugin function {} passed text that is not valid UTF-8 ({at_reason}) to the host function given \
                         as argument {}; expected str",
                        py_repr(&frame.function),
                        py_repr(&frame.param)
                    ),
                ))
            }
        });
    }
    // SAFETY: the closure lives while the frame is open, which it is (read-locked by the caller).
    let closure = unsafe { &*frame.closure };
    let result = closure(&values)?;
    let what = || format!("the result of the host function passed as {}() argument {}", frame.function, py_repr(&frame.param));
    let Some(kind) = frame.sig.result else { return Ok(()) };
    // SAFETY: ret is the plugin's result slot for this invoke.
    let ret = unsafe { &mut *ret };
    crate::plugin::store_result(kind, result, ret, &what)
}

/// The registry serving the plugin of `host`, if a PluginHost loaded it.
///
/// # Safety
/// `host` is NULL or a table this crate made.
unsafe fn registry(host: *const abi::Host) -> Option<Lending> {
    if host.is_null() {
        return None;
    }
    // SAFETY: a table this crate made. It lives as long as its plugin, which
    // `alive` holds through the callback (before the plugin is loaded, its
    // load holds it; while it is being dropped, its drop does).
    let data: &'static HostData = unsafe { &*((*host).host_data as *const HostData) };
    let alive = data.owner.get().and_then(std::sync::Weak::upgrade);
    data.registry.as_ref()?.upgrade().map(|registry| Lending { data, registry, _alive: alive })
}

/// What a lending callback works with, and the plugin it keeps alive meanwhile.
struct Lending {
    data: &'static HostData,
    registry: Arc<crate::services::Registry>,
    _alive: Option<Arc<crate::plugin::Inner>>,
}

unsafe extern "C" fn query(host: *const abi::Host, id: *const c_char, revision: u32, fingerprint: u64) -> *const abi::Object {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin passes its own table.
        let Some(Lending { data, registry, _alive }) = (unsafe { registry(host) }) else { return std::ptr::null() };
        if id.is_null() || data.shutting.load(std::sync::atomic::Ordering::SeqCst) {
            return std::ptr::null();
        }
        // SAFETY: a NUL-terminated id, borrowed for the call (at most 256 bytes are read, as the Python host does).
        let bytes = unsafe { bounded_c_str(id, 256) };
        let id = String::from_utf8_lossy(bytes);
        let token = registry.query(data.serial, &data.target, &data.plugin_id, &id, revision, fingerprint);
        token as *const abi::Object
    }))
    .unwrap_or(std::ptr::null())
}

/// The bytes of a NUL-terminated text, at most `max` of them.
///
/// # Safety
/// `p` points to readable bytes up to a NUL or `max` bytes.
unsafe fn bounded_c_str<'a>(p: *const c_char, max: usize) -> &'a [u8] {
    let mut n = 0;
    // SAFETY: read up to the NUL or max, as promised.
    while n < max && unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: n readable bytes.
    unsafe { std::slice::from_raw_parts(p as *const u8, n) }
}

unsafe extern "C" fn call(
    host: *const abi::Host,
    object: *const abi::Object,
    method: u32,
    args: *const abi::Value,
    ret: *mut abi::Value,
) -> i32 {
    if ret.is_null() {
        return abi::ERROR;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin passes its own table.
        let Some(Lending { data, registry, _alive }) = (unsafe { registry(host) }) else {
            // SAFETY: ret is the caller's slot.
            unsafe { give_bytes(ret, b"host->call: unknown or released object") };
            return abi::ERROR;
        };
        // SAFETY: the plugin's slots, as host->call received them; ret is not NULL.
        unsafe { registry.call(host, data.serial, object as usize, method, args, ret) }
    }))
    .unwrap_or(abi::ERROR)
}

unsafe extern "C" fn release(host: *const abi::Host, object: *const abi::Object) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin passes its own table.
        if let Some(Lending { data, registry, _alive }) = unsafe { registry(host) } {
            registry.release(data.serial, object as usize);
        }
    }));
}
