//! The host callback table a Rust host hands each plugin at init: logging
//! to the `log` facade, the failure message of the current call, memory,
//! and (for now) no host functions and no services.

use std::cell::RefCell;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ferrule_sdk::abi;

/// Bytes kept of a set_error message (the Python host keeps as many).
const MAX_MESSAGE: usize = 1 << 16;
/// What a failure without a message reads, as in the Python host.
pub(crate) const NO_MESSAGE: &str = "(the plugin gave no error message)";

thread_local! {
    /// The failure message the plugin set on this thread for the current call.
    static ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

#[inline]
pub(crate) fn clear_error() {
    ERROR.with(|e| {
        if let Ok(mut message) = e.try_borrow_mut() {
            if message.is_some() {
                *message = None;
            }
        }
    });
}

pub(crate) fn take_error() -> String {
    ERROR.with(|e| e.borrow_mut().take()).filter(|m| !m.is_empty()).unwrap_or_else(|| NO_MESSAGE.to_string())
}

/// What host_data points to: the log target of the plugin.
pub(crate) struct HostData {
    pub(crate) target: String,
}

/// A host table with its data; both live as long as the plugin.
pub(crate) struct HostTable {
    pub(crate) table: Box<abi::Host>,
    _data: Box<HostData>,
}

// SAFETY: the table is read-only once built; its callbacks may run on any
// thread, and HostData is only read.
unsafe impl Send for HostTable {}
// SAFETY: as above.
unsafe impl Sync for HostTable {}

impl HostTable {
    pub(crate) fn new(plugin_id: &str) -> HostTable {
        let mut data = Box::new(HostData { target: format!("ferrule.plugin.{plugin_id}") });
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
        HostTable { table, _data: data }
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
    _host: *const abi::Host,
    _fn: *const abi::FnHandle,
    _args: *const abi::Value,
    _ret: *mut abi::Value,
) -> i32 {
    abi::ERROR // no call of this host passes host functions yet: no handle is live
}

unsafe extern "C" fn query(_host: *const abi::Host, _id: *const c_char, _revision: u32, _fp: u64) -> *const abi::Object {
    std::ptr::null() // this host provides no services yet
}

unsafe extern "C" fn call(
    _host: *const abi::Host,
    _object: *const abi::Object,
    _method: u32,
    _args: *const abi::Value,
    ret: *mut abi::Value,
) -> i32 {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !ret.is_null() {
            // SAFETY: ret is the caller's slot.
            unsafe { give_bytes(ret, b"host->call: unknown or released object") };
        }
    }));
    abi::ERROR
}

unsafe extern "C" fn release(_host: *const abi::Host, _object: *const abi::Object) {}
