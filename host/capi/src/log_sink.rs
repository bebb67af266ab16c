//! The log sink: plugin logs (the Rust host sends them to the `log` facade,
//! target `ferrule.plugin.<id>`) delivered to a C function.

use std::ffi::{c_char, c_void, CString};
use std::sync::{OnceLock, RwLock};

use crate::error::{guard, Failure};

/// `ferrule_host_log_fn`.
pub type LogFn = unsafe extern "C" fn(
    user_data: *mut c_void,
    level: i32,
    plugin_id: *const c_char,
    target: *const c_char,
    message: *const c_char,
    len: usize,
);

struct Sink {
    call: LogFn,
    user_data: *mut c_void,
}

// SAFETY: the header tells the C caller that the sink (and its user_data) is
// called from any thread a plugin logs on.
unsafe impl Send for Sink {}
// SAFETY: as above.
unsafe impl Sync for Sink {}

/// Read-locked by each record, write-locked to change: once set returns,
/// the old sink is no longer running or called.
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

struct Forward;

static FORWARD: Forward = Forward;

const PREFIX: &str = "ferrule.plugin.";

/// The ABI's level (FERRULE_LOG_TRACE 0 .. FERRULE_LOG_ERROR 4).
fn level_code(level: log::Level) -> i32 {
    match level {
        log::Level::Trace => 0,
        log::Level::Debug => 1,
        log::Level::Info => 2,
        log::Level::Warn => 3,
        log::Level::Error => 4,
    }
}

impl log::Log for Forward {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        SINK.read().map(|s| s.is_some()).unwrap_or(false)
    }

    fn log(&self, record: &log::Record<'_>) {
        let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
        let Some(sink) = sink.as_ref() else { return };
        let mut text = record.args().to_string().into_bytes();
        let len = text.len();
        text.push(0); // NUL-terminated too; the length counts every byte (a message may hold a NUL)
        let target = CString::new(record.target()).unwrap_or_default();
        let id = record.target().strip_prefix(PREFIX).and_then(|id| CString::new(id).ok());
        // SAFETY: the C caller's sink and data; every pointer is borrowed for the call.
        unsafe {
            (sink.call)(
                sink.user_data,
                level_code(record.level()),
                id.as_ref().map_or(std::ptr::null(), |i| i.as_ptr()),
                target.as_ptr(),
                text.as_ptr() as *const c_char,
                len,
            )
        };
    }

    fn flush(&self) {}
}

/// Send plugin logs at `min_level` or above to `sink` (NULL: nowhere, the
/// default). Process-wide: the `log` facade has one logger per process.
///
/// # Safety
/// `sink` and `user_data` are usable from any thread until this is called
/// again; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_set_log_sink(
    sink: Option<LogFn>,
    user_data: *mut c_void,
    min_level: i32,
    error: *mut *mut Failure,
) -> i32 {
    // SAFETY: the caller's promises.
    unsafe {
        guard(error, || {
            if !(0..=4).contains(&min_level) {
                return Err(Failure::invalid(format!(
                    "ferrule_host_set_log_sink: min_level is {min_level}, expected a FERRULE_LOG_* level from 0 \
                     (TRACE) to 4 (ERROR)"
                )));
            }
            static INSTALLED: OnceLock<bool> = OnceLock::new();
            if !*INSTALLED.get_or_init(|| log::set_logger(&FORWARD).is_ok()) {
                return Err(Failure::invalid(
                    "ferrule_host_set_log_sink: another logger already holds this process's Rust log facade (a Rust \
                     library linked into the program set it), so plugin logs go there: set no sink here, or have \
                     that library forward them",
                ));
            }
            let mut slot = SINK.write().unwrap_or_else(|e| e.into_inner());
            *slot = sink.map(|call| Sink { call, user_data });
            log::set_max_level(match (slot.is_some(), min_level) {
                (false, _) => log::LevelFilter::Off,
                (true, 0) => log::LevelFilter::Trace,
                (true, 1) => log::LevelFilter::Debug,
                (true, 2) => log::LevelFilter::Info,
                (true, 3) => log::LevelFilter::Warn,
                (true, _) => log::LevelFilter::Error,
            });
            Ok(())
        })
    }
}
