//! Machinery behind [`plugin!`](crate::plugin): the generated shims call into
//! this module. Not a public API; may change in any release.

use core::cell::Cell;
use core::ffi::{c_char, c_void};
use core::fmt::Display;
use core::ptr;
use std::any::Any;
use std::borrow::Cow;
use std::ffi::CString;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

use crate::abi::{self, CallFn, Function, Host, Plugin, Value};
use crate::Level;

// ---- thread-locals ----------------------------------------------------------
//
// All of them are `const`-initialised `Cell`s of `Copy` types: they need no
// drop, so std registers no TLS destructor for them. A destructor would be a
// hazard: the library may be loaded into a process that never unloads it,
// or unloaded while threads that touched it are still alive.

thread_local! {
    /// The host of the init, call or shutdown running on this thread; NULL
    /// outside of them.
    static CURRENT_HOST: Cell<*const Host> = const { Cell::new(ptr::null()) };
    /// How many shims (or entry points) are active on this thread. While it
    /// is non-zero the panic hook captures messages instead of printing.
    static CAPTURE_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The last captured panic message, a `Box<String>` turned into a raw
    /// pointer (NULL if none). A raw pointer rather than a
    /// `RefCell<Option<String>>` so that no TLS destructor is needed; shims
    /// free it before they return, so nothing is left behind on any thread.
    static PANIC_MESSAGE: Cell<*mut String> = const { Cell::new(ptr::null_mut()) };
}

pub(crate) fn current_host() -> *const Host {
    CURRENT_HOST.get()
}

fn take_captured_message() -> Option<String> {
    let p = PANIC_MESSAGE.replace(ptr::null_mut());
    if p.is_null() {
        None
    } else {
        // SAFETY: only `store_captured_message` writes non-NULL pointers,
        // each from Box::into_raw, and `replace` hands each one out once.
        Some(*unsafe { Box::from_raw(p) })
    }
}

fn store_captured_message(msg: String) {
    let old = PANIC_MESSAGE.replace(Box::into_raw(Box::new(msg)));
    if !old.is_null() {
        // SAFETY: as in take_captured_message.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// Sets the current host and panic capturing for one shim; restores both on
/// every exit path (it is a drop guard) and frees a leftover message.
struct ShimScope {
    previous_host: *const Host,
}

impl ShimScope {
    fn enter(host: *const Host) -> ShimScope {
        let depth = CAPTURE_DEPTH.get() + 1;
        CAPTURE_DEPTH.set(depth);
        let previous_host = CURRENT_HOST.replace(host);
        if depth == 1 {
            // Outermost scope: drop anything stale.
            drop(take_captured_message());
        }
        ShimScope { previous_host }
    }
}

impl Drop for ShimScope {
    fn drop(&mut self) {
        CURRENT_HOST.set(self.previous_host);
        CAPTURE_DEPTH.set(CAPTURE_DEPTH.get().saturating_sub(1));
        if CAPTURE_DEPTH.get() == 0 {
            drop(take_captured_message());
        }
    }
}

// ---- panics -----------------------------------------------------------------

static HOOK: Once = Once::new();

fn payload_str(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "Box<dyn Any>"
    }
}

/// Installs (once per process) a panic hook that, on threads inside a shim,
/// stores `panicked at FILE:LINE:COL: MESSAGE` for the shim instead of
/// printing it. Elsewhere (threads the plugin spawned, code outside the
/// shims) it defers to the hook that was installed before.
///
/// The hook is this library's own: a cdylib carries its own copy of std, so
/// it does not affect the host or other plugins. If plugin code replaces the
/// hook, shims fall back to the panic payload (without a location).
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURE_DEPTH.get() == 0 {
                previous(info);
                return;
            }
            let msg = payload_str(info.payload());
            let text = match info.location() {
                Some(l) => format!("panicked at {}:{}:{}: {}", l.file(), l.line(), l.column(), msg),
                None => format!("panicked at <unknown location>: {msg}"),
            };
            store_captured_message(text);
        }));
    });
}

/// The message for a caught panic: what the hook captured, else the payload.
/// Drops the payload without letting a panicking `Drop` escape.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let msg = match take_captured_message() {
        Some(m) => m,
        None => format!("panicked at <unknown location>: {}", payload_str(&*payload)),
    };
    drop_payload(payload);
    msg
}

fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // A payload whose Drop panicked, twice: give up and leak it.
        core::mem::forget(again);
    }
}

// ---- host callbacks ---------------------------------------------------------

/// Whether the host table built by the host covers `field_end` bytes.
///
/// # Safety
/// `host` must be NULL or point to a live host table.
pub(crate) unsafe fn host_has(host: *const Host, field_end: usize) -> bool {
    !host.is_null() && unsafe { (*host).struct_size } as usize >= field_end
}

/// The end of a pointer-sized field at `offset` (every optional host field
/// is a function pointer).
pub(crate) const fn end_of(offset: usize) -> usize {
    offset + core::mem::size_of::<usize>()
}

/// `host->set_error(msg)`, if the host has it.
///
/// # Safety
/// `host` must be NULL or point to a live host table.
pub(crate) unsafe fn set_error(host: *const Host, msg: &str) {
    if unsafe { host_has(host, end_of(core::mem::offset_of!(Host, set_error))) } {
        if let Some(f) = unsafe { (*host).set_error } {
            unsafe { f(host, msg.as_ptr().cast::<c_char>(), msg.len()) };
        }
    }
}

/// `host->log(level, msg)`, if the host has it.
///
/// # Safety
/// `host` must be NULL or point to a live host table.
pub(crate) unsafe fn host_log(host: *const Host, level: Level, msg: &str) {
    if unsafe { host_has(host, end_of(core::mem::offset_of!(Host, log))) } {
        if let Some(f) = unsafe { (*host).log } {
            unsafe { f(host, level as i32, msg.as_ptr().cast::<c_char>(), msg.len()) };
        }
    }
}

// ---- shims ------------------------------------------------------------------

/// Decode argument `name` of type `T` from the next slot.
///
/// # Safety
/// The slot must match `T::TYPE` (see [`crate::FromArg::from_arg`]).
#[inline]
pub unsafe fn decode_arg<'a, T: crate::FromArg<'a>>(slot: Option<&'a Value>, name: &str) -> Result<T, String> {
    match slot {
        Some(v) => unsafe { T::from_arg(v) }.map_err(|e| format!("argument `{name}`: {e}")),
        None => Err(format!("argument `{name}` is missing")),
    }
}

/// Encode a user function's result.
#[inline]
pub fn encode_ret<R: crate::IntoRet>(r: R) -> Result<Option<Value>, String> {
    r.into_ret()
}

/// The body of every generated call shim. `params` holds the name and
/// [`ArgBorrow`](crate::ArgBorrow) of each parameter; before `f` decodes
/// the arguments, a call whose mutable buffer overlaps another argument
/// fails.
///
/// # Safety
/// The pointers are those the host passed to a [`CallFn`]: `host` a live
/// table, `args` `params.len()` slots matching the signature (or anything if
/// there are no parameters), `ret` a writable slot (or anything if `has_ret`
/// is false).
pub unsafe fn run_call<F>(
    host: *const Host,
    args: *const Value,
    params: &[(&str, crate::ArgBorrow)],
    ret: *mut Value,
    has_ret: bool,
    f: F,
) -> i32
where
    F: FnOnce(&[Value]) -> Result<Option<Value>, String>,
{
    let nargs = params.len();
    if host.is_null() {
        return abi::ERROR;
    }
    let args: &[Value] = if nargs == 0 {
        &[]
    } else if args.is_null() {
        unsafe { set_error(host, "ferrule: NULL argument array") };
        return abi::ERROR;
    } else {
        unsafe { core::slice::from_raw_parts(args, nargs) }
    };
    if has_ret && ret.is_null() {
        unsafe { set_error(host, "ferrule: NULL return slot") };
        return abi::ERROR;
    }
    let checked = || {
        // SAFETY: the slots match the signature, hence the borrows.
        unsafe { crate::convert::check_overlap(args, params) }?;
        f(args)
    };
    match unsafe { guarded(host, checked) } {
        Ok(value) => {
            if let (Some(v), true) = (value, has_ret) {
                unsafe { ret.write(v) };
            }
            abi::OK
        }
        Err(status) => status,
    }
}

/// Runs `f` with `host` as the current host. A panic or an `Err` is reported
/// through `set_error` (before the scope ends, while the captured panic
/// message is still there) and becomes the returned status.
///
/// # Safety
/// `host` must point to a live host table.
unsafe fn guarded<T>(host: *const Host, f: impl FnOnce() -> Result<T, String>) -> Result<T, i32> {
    let _scope = ShimScope::enter(host);
    let (msg, status) = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(msg)) => (msg, abi::ERROR),
        Err(payload) => (panic_message(payload), abi::PANIC),
    };
    unsafe { set_error(host, &msg) };
    Err(status)
}

/// The instance state behind the `state` pointer.
struct Instance {
    host: *const Host,
}

/// Default `init` when the plugin gives none.
pub fn no_init(_config: &str) -> Result<(), String> {
    Ok(())
}

/// Default `shutdown` when the plugin gives none.
pub fn no_shutdown() {}

/// The body of the generated init shim.
///
/// # Safety
/// The pointers are those the host passed to an [`abi::InitFn`].
pub unsafe fn run_init<F, E>(host: *const Host, config: *const c_char, config_len: usize, state: *mut *mut c_void, f: F) -> i32
where
    F: FnOnce(&str) -> Result<(), E>,
    E: Display,
{
    if host.is_null() {
        return abi::ERROR;
    }
    if state.is_null() {
        unsafe { set_error(host, "ferrule: NULL state pointer") };
        return abi::ERROR;
    }
    let bytes: &[u8] = if config_len == 0 || config.is_null() {
        &[]
    } else {
        unsafe { core::slice::from_raw_parts(config.cast::<u8>(), config_len) }
    };
    let config = match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            unsafe { set_error(host, &format!("config is not valid UTF-8: {e}")) };
            return abi::ERROR;
        }
    };
    match unsafe { guarded(host, || f(config).map_err(|e| e.to_string())) } {
        Ok(()) => {
            let instance = Box::new(Instance { host });
            unsafe { state.write(Box::into_raw(instance).cast::<c_void>()) };
            abi::OK
        }
        Err(status) => status,
    }
}

/// The body of the generated shutdown shim. A panic in `f` is logged at
/// error level (shutdown cannot fail).
///
/// # Safety
/// `state` must be what [`run_init`] stored, passed once; `host` the live
/// host table or NULL (then the one init saw is used).
pub unsafe fn run_shutdown<F: FnOnce()>(host: *const abi::Host, state: *mut c_void, f: F) {
    if state.is_null() {
        return;
    }
    // SAFETY: run_init made it with Box::into_raw; shutdown runs once.
    let instance = unsafe { Box::from_raw(state.cast::<Instance>()) };
    let host = if host.is_null() { instance.host } else { host };
    let scope = ShimScope::enter(host);
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
        let msg = panic_message(payload);
        unsafe { host_log(host, Level::Error, &format!("shutdown {msg}")) };
    }
    drop(scope);
    drop(instance);
}

// ---- descriptor -------------------------------------------------------------

/// What `plugin!` knows about one function.
pub struct FunctionSpec {
    pub name: &'static str,
    /// `(parameter name, ABI type)` pairs.
    pub params: Vec<(&'static str, Cow<'static, str>)>,
    /// ABI return type, `""` for none.
    pub ret: &'static str,
    /// `#[doc]` attributes in order; `None` for other attributes.
    pub docs: Vec<Option<&'static str>>,
    /// Marked `#[quick]`: registered with `FERRULE_FN_QUICK`.
    pub quick: bool,
    pub call: CallFn,
}

/// What `plugin!` knows about the plugin.
pub struct PluginSpec {
    pub id: &'static str,
    pub name: &'static str,
    pub version: &'static str,
    pub description: Option<&'static str>,
    pub license: Option<&'static str>,
    pub init: abi::InitFn,
    pub shutdown: abi::ShutdownFn,
    pub functions: Vec<FunctionSpec>,
}

/// The canonical signature string: `(a: i64, b: i64) -> i64`, `(msg: str)`,
/// `()`.
pub fn signature<T: AsRef<str>>(params: &[(&str, T)], ret: &str) -> String {
    let mut s = String::from("(");
    for (i, (name, ty)) in params.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(name);
        s.push_str(": ");
        s.push_str(ty.as_ref());
    }
    s.push(')');
    if !ret.is_empty() {
        s.push_str(" -> ");
        s.push_str(ret);
    }
    s
}

/// Joins `///` lines the way rustdoc reads them: one leading space of each
/// line dropped, lines joined with `\n`, the whole trimmed. `None` if empty.
pub fn join_docs(docs: &[Option<&str>]) -> Option<String> {
    let lines: Vec<&str> = docs
        .iter()
        .flatten()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let joined = lines.join("\n");
    let trimmed = joined.trim();
    if trimmed.is_empty() {
        None
    } else {
        Some(trimmed.to_owned())
    }
}

/// A static, NUL-terminated copy of `s`; `None` if `s` contains a NUL.
fn leak_cstr(s: &str) -> Option<*const c_char> {
    CString::new(s).ok().map(|c| c.into_raw().cast_const())
}

fn leak_opt_cstr(s: Option<&str>) -> Option<*const c_char> {
    match s {
        Some(s) => leak_cstr(s),
        None => Some(ptr::null()),
    }
}

/// Builds the descriptor; everything in it is leaked (static for the life of
/// the library). `None` if a string has an interior NUL.
pub fn build_descriptor(spec: &PluginSpec) -> Option<*const Plugin> {
    let mut functions: Vec<*const Function> = Vec::with_capacity(spec.functions.len());
    for f in &spec.functions {
        let doc = join_docs(&f.docs);
        let function = Function {
            struct_size: core::mem::size_of::<Function>() as u32,
            // Safe Rust cannot data-race and the shims share no mutable
            // state, so every SDK function may run on many threads at once.
            flags: if f.quick { abi::FN_THREAD_SAFE | abi::FN_QUICK } else { abi::FN_THREAD_SAFE },
            name: leak_cstr(f.name)?,
            signature: leak_cstr(&signature(&f.params, f.ret))?,
            doc: leak_opt_cstr(doc.as_deref())?,
            call: f.call,
        };
        functions.push(Box::into_raw(Box::new(function)).cast_const());
    }
    let function_count = u32::try_from(functions.len()).ok()?;
    let functions: &'static mut [*const Function] = Box::leak(functions.into_boxed_slice());
    let plugin = Plugin {
        magic: abi::MAGIC,
        struct_size: core::mem::size_of::<Plugin>() as u32,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        id: leak_cstr(spec.id)?,
        name: leak_cstr(spec.name)?,
        version: leak_cstr(spec.version)?,
        description: leak_opt_cstr(spec.description)?,
        license: leak_opt_cstr(spec.license)?,
        function_count,
        flags: 0,
        functions: functions.as_ptr(),
        init: Some(spec.init),
        shutdown: Some(spec.shutdown),
    };
    Some(Box::into_raw(Box::new(plugin)).cast_const())
}

/// A descriptor pointer that may live in a `static`.
struct DescriptorPtr(*const Plugin);

// SAFETY: the descriptor is immutable after it is built and everything it
// points to is leaked, so it may be read from any thread.
unsafe impl Send for DescriptorPtr {}
unsafe impl Sync for DescriptorPtr {}

/// The once-built descriptor of a plugin; one per `plugin!`.
pub struct DescriptorCell(OnceLock<DescriptorPtr>);

impl DescriptorCell {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> DescriptorCell {
        DescriptorCell(OnceLock::new())
    }
}

/// The body of the generated `ferrule_entry_v1`. Never unwinds; NULL if the
/// descriptor cannot be built.
pub fn entry<F: FnOnce() -> PluginSpec>(cell: &'static DescriptorCell, spec: F) -> *const Plugin {
    if let Some(p) = cell.0.get() {
        return p.0;
    }
    let scope = ShimScope::enter(ptr::null());
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        install_panic_hook();
        cell.0
            .get_or_init(|| DescriptorPtr(build_descriptor(&spec()).unwrap_or(ptr::null())))
            .0
    }));
    let plugin = match result {
        Ok(p) => p,
        Err(payload) => {
            drop(panic_message(payload));
            ptr::null()
        }
    };
    drop(scope);
    plugin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        assert_eq!(signature(&[("a", "i64"), ("b", "i64")], "i64"), "(a: i64, b: i64) -> i64");
        assert_eq!(signature(&[("name", "str")], "str"), "(name: str) -> str");
        assert_eq!(signature::<&str>(&[], ""), "()");
        assert_eq!(signature(&[("msg", "str")], ""), "(msg: str)");
        assert_eq!(signature::<&str>(&[], "bytes"), "() -> bytes");
        assert_eq!(
            signature(&[("f", Cow::Borrowed("fn(i64) -> i64")), ("data", Cow::Owned("buf[f64]".into()))], "i64"),
            "(f: fn(i64) -> i64, data: buf[f64]) -> i64"
        );
    }

    #[test]
    fn docs() {
        assert_eq!(join_docs(&[]), None);
        assert_eq!(join_docs(&[None, Some("   ")]), None);
        assert_eq!(join_docs(&[Some(" Add two integers.")]).as_deref(), Some("Add two integers."));
        assert_eq!(
            join_docs(&[Some(" First."), None, Some(""), Some("     code")]).as_deref(),
            Some("First.\n\n    code")
        );
    }
}
