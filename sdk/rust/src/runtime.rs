//! Machinery behind [`plugin!`](crate::plugin) and the logging macros: the
//! code they expand to calls into this module, as `ferrule_sdk::__private`.
//! Not a public API; may change in any release.

use core::cell::Cell;
use core::ffi::{c_char, c_void};
use core::fmt::Display;
use core::ptr;
use std::any::Any;
use std::borrow::Cow;
use std::ffi::CString;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};
use std::thread::LocalKey;

use crate::abi::{self, CallFn, Function, Host, Interface, Plugin, Value};
use crate::convert::ArgBorrow;
use crate::Level;

// ---- per-thread state -------------------------------------------------------
//
// Everything the shims keep per thread lives in one thread-local, so that a
// call pays for a single TLS lookup (in a cdylib, one `__tls_get_addr` call)
// and then works through the reference it got.
//
// The thread-local is declared by `plugin!` in the plugin's own crate, not
// here: a call shim is instantiated there, and a `thread_local!` of another
// crate can only be reached through the accessor function stored in its
// `LocalKey` static, an indirect call that cannot be inlined. Declared in the
// plugin's crate, the lookup is inlined into every shim. `entry` registers
// the key here, for the code of this crate that needs the state outside of a
// shim's own frame (logging, the panic hook, host function arguments).
//
// It is `const`-initialised and made of `Cell`s of `Copy` types: it needs no
// drop, so std registers no TLS destructor for it, and it is accessible on
// every thread for the thread's whole life (`with` never fails). A destructor
// would be a hazard: the library may be loaded into a process that never
// unloads it, or unloaded while threads that touched it are still alive.

/// The per-thread state of the shims, held in a `thread_local!` that
/// `plugin!` declares (`const`-initialised with [`ThreadState::new`]).
pub struct ThreadState {
    /// The host of the init, call or shutdown running on this thread; NULL
    /// outside of them.
    host: Cell<*const Host>,
    /// How many shims (or entry points) are active on this thread. While it
    /// is non-zero the panic hook captures messages instead of printing.
    depth: Cell<u32>,
    /// The panic message captured in the innermost active scope, a
    /// `Box<String>` turned into a raw pointer (NULL if none). A raw pointer
    /// rather than a `RefCell<Option<String>>` so that no TLS destructor is
    /// needed. Each scope saves the slot of its parent on entry and frees
    /// its own leftover on exit, so no message outlives its scope and none
    /// is left behind on any thread.
    message: Cell<*mut String>,
}

// No TLS destructor (see above).
const _: () = assert!(!core::mem::needs_drop::<ThreadState>());

/// The `thread_local!` key of a plugin's [`ThreadState`].
pub type StateKey = LocalKey<ThreadState>;

/// The key of the plugin in this library, registered by [`entry`] before it
/// hands out the descriptor, hence before any shim can run.
static STATE_KEY: OnceLock<&'static StateKey> = OnceLock::new();

std::thread_local! {
    /// The state used before a plugin registered its own (only code that
    /// runs without `ferrule_entry_v1`, e.g. interface thunks driven
    /// directly by a unit test, ever sees it).
    static FALLBACK_STATE: ThreadState = const { ThreadState::new() };
}

/// The registered key of this library's plugin, or the SDK's fallback.
#[inline]
fn state_key() -> &'static StateKey {
    match STATE_KEY.get() {
        Some(key) => key,
        None => &FALLBACK_STATE,
    }
}

/// Runs `f` with this thread's state.
fn with_state<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    state_key().with(f)
}

/// The address of this thread's state in `key`: one TLS lookup.
///
/// For the call shims, where the lookup must be inlined: `LocalKey::with`
/// with the whole call in its closure is not, while with this tiny closure
/// it is, and the shim keeps the address for the whole call instead of
/// looking it up again on exit.
///
/// Why the address may outlive the closure: the state needs no drop
/// (asserted above), so its storage is never destroyed while the thread
/// runs; at most the thread's own teardown releases it, after the thread's
/// code is done, and that cannot happen in the middle of a call running on
/// the thread. Callers dereference the address only on this thread, while
/// the shim that looked it up is running, and keep no reference beyond that
/// shim (`ThreadState` is not `Sync`, so no reference to it can reach
/// another thread either).
#[inline(always)]
fn state_ptr(key: &'static StateKey) -> *const ThreadState {
    key.with(|st| st as *const ThreadState)
}

/// The host of the call, init or shutdown running on this thread; NULL
/// outside of them.
pub(crate) fn current_host() -> *const Host {
    with_state(|st| st.host.get())
}

impl ThreadState {
    /// The state of a thread that runs no shim.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> ThreadState {
        ThreadState {
            host: Cell::new(ptr::null()),
            depth: Cell::new(0),
            message: Cell::new(ptr::null_mut()),
        }
    }

    fn take_message(&self) -> Option<String> {
        let p = self.message.replace(ptr::null_mut());
        if p.is_null() {
            None
        } else {
            // SAFETY: only `store_message` writes non-NULL pointers, each
            // from Box::into_raw, and every reader takes the pointer out of
            // the slot (replace) before it rebuilds the box, so each one is
            // rebuilt once.
            Some(*unsafe { Box::from_raw(p) })
        }
    }

    fn store_message(&self, msg: String) {
        drop(self.take_message());
        self.message.set(Box::into_raw(Box::new(msg)));
    }
}

/// Frees a message that was captured in a scope and never taken (plugin
/// code caught its own panic). Out of line: it almost never happens.
#[cold]
#[inline(never)]
fn free_message(p: *mut String) {
    // SAFETY: `p` was just taken out of the slot (see take_message).
    drop(unsafe { Box::from_raw(p) });
}

/// Sets the current host and panic capturing for one shim, and gives the
/// shim a fresh captured-message slot; restores all three on every exit path
/// (it is a drop guard), freeing a message that was captured in the scope
/// and not taken.
struct Scope<'s> {
    state: &'s ThreadState,
    previous_host: *const Host,
    previous_message: *mut String,
    previous_depth: u32,
}

impl<'s> Scope<'s> {
    #[inline(always)]
    fn enter(state: &'s ThreadState, host: *const Host) -> Scope<'s> {
        let previous_depth = state.depth.get();
        // Each level is a native stack frame: it cannot wrap in practice,
        // and must not panic here, outside of any catch_unwind.
        state.depth.set(previous_depth.wrapping_add(1));
        Scope {
            state,
            previous_host: state.host.replace(host),
            previous_message: state.message.replace(ptr::null_mut()),
            previous_depth,
        }
    }
}

impl Drop for Scope<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let st = self.state;
        st.host.set(self.previous_host);
        st.depth.set(self.previous_depth);
        let leftover = st.message.replace(self.previous_message);
        if !leftover.is_null() {
            free_message(leftover);
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
            let captured = with_state(|st| {
                if st.depth.get() == 0 {
                    return false;
                }
                let msg = payload_str(info.payload());
                let text = match info.location() {
                    Some(l) => format!("panicked at {}:{}:{}: {}", l.file(), l.line(), l.column(), msg),
                    None => format!("panicked at <unknown location>: {msg}"),
                };
                st.store_message(text);
                true
            });
            if !captured {
                previous(info);
            }
        }));
    });
}

/// The message for a panic caught in the current scope: what the hook
/// captured, else the payload. Drops the payload without letting a panicking
/// `Drop` escape (and without keeping what the hook captured for that one).
fn panic_message(st: &ThreadState, payload: Box<dyn Any + Send>) -> String {
    let msg = match st.take_message() {
        Some(m) => m,
        None => format!("panicked at <unknown location>: {}", payload_str(&*payload)),
    };
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // A payload whose Drop panicked, twice: give up and leak it.
        core::mem::forget(again);
        drop(st.take_message());
    }
    msg
}

// ---- host callbacks ---------------------------------------------------------

/// Whether the host table built by the host covers `field_end` bytes.
///
/// # Safety
/// `host` must be NULL or point to a live host table.
#[inline]
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

/// The body of the logging macros: like [`log`](crate::log), but formats
/// only when there is a host to log to.
pub fn log_fmt(level: Level, args: core::fmt::Arguments<'_>) {
    if current_host().is_null() {
        return;
    }
    match args.as_str() {
        Some(s) => crate::log(level, s),
        None => crate::log(level, &std::fmt::format(args)),
    }
}

// ---- shims ------------------------------------------------------------------
//
// The call path is generic and `#[inline(always)]`, so that each generated
// call shim is one function: the TLS lookup, a few loads and stores, the
// decoding and the user's function, with every failure path out of line.

/// Decode argument `name` of type `T` from the next slot.
///
/// # Safety
/// The slot must match `T::abi_type()` (see [`FromArg::from_arg`](crate::convert::FromArg::from_arg)).
#[inline(always)]
pub unsafe fn decode_arg<'a, T: crate::convert::FromArg<'a>>(slot: Option<&'a Value>, name: &str) -> Result<T, String> {
    match slot {
        Some(v) => match unsafe { T::from_arg(v) } {
            Ok(value) => Ok(value),
            Err(e) => Err(bad_arg(name, e)),
        },
        None => Err(missing_arg(name)),
    }
}

#[cold]
#[inline(never)]
fn bad_arg(name: &str, e: String) -> String {
    format!("argument `{name}`: {e}")
}

#[cold]
#[inline(never)]
fn missing_arg(name: &str) -> String {
    format!("argument `{name}` is missing")
}

/// Encode a user function's result.
#[inline(always)]
pub fn encode_ret<R: crate::convert::IntoRet>(r: R) -> Result<Option<Value>, String> {
    r.into_ret()
}

/// What a call shim knows about its function, built at compile time by
/// `plugin!` (a `const`), so that the checks it does not need cost nothing.
pub struct CallSpec<const N: usize> {
    /// Name and [`ArgBorrow`] of each parameter.
    params: [(&'static str, ArgBorrow); N],
    /// Whether a call must be checked for a mutable buffer that overlaps
    /// another argument: whether any parameter is a mutable buffer.
    check_overlap: bool,
    /// Whether the function returns a value.
    has_ret: bool,
}

impl<const N: usize> CallSpec<N> {
    /// The spec of a function with these parameters, returning a value or
    /// not.
    pub const fn new(params: [(&'static str, ArgBorrow); N], has_ret: bool) -> CallSpec<N> {
        let check_overlap = has_mutbuf(&params);
        CallSpec { params, check_overlap, has_ret }
    }

    /// Whether the function returns a value in the return slot.
    pub const fn has_ret(&self) -> bool {
        self.has_ret
    }
}

/// Whether any parameter is a mutable buffer.
const fn has_mutbuf(params: &[(&str, ArgBorrow)]) -> bool {
    let mut i = 0;
    while i < params.len() {
        if let ArgBorrow::MutBuf { .. } = params[i].1 {
            return true;
        }
        i += 1;
    }
    false
}

/// The body of every generated call shim. `state` is the plugin's
/// thread-local state (see [`ThreadState`]), `spec` describes the function.
/// A call whose mutable buffer overlaps another argument fails before `f`
/// decodes the arguments.
///
/// # Safety
/// The pointers are those the host passed to a [`CallFn`]: `host` a live
/// table, `args` `N` slots matching the signature (or anything if `N` is 0),
/// `ret` a writable slot (or anything if the function returns nothing).
/// `spec` must describe the function whose arguments `f` decodes: one
/// entry per slot, with the [`ArgBorrow`] of the type decoded from it.
#[inline(always)]
pub unsafe fn run_call<const N: usize, F>(
    state: &'static StateKey,
    spec: &CallSpec<N>,
    host: *const Host,
    args: *const Value,
    ret: *mut Value,
    f: F,
) -> i32
where
    F: FnOnce(&[Value; N]) -> Result<Option<Value>, String>,
{
    if host.is_null() {
        return abi::ERROR;
    }
    let args: &[Value; N] = if N == 0 {
        // SAFETY: a zero-sized array: any aligned non-NULL pointer will do.
        unsafe { &*ptr::NonNull::<[Value; N]>::dangling().as_ptr() }
    } else if args.is_null() {
        return unsafe { fail_static(host, "ferrule: NULL argument array") };
    } else {
        // SAFETY: the host passes N slots.
        unsafe { &*args.cast::<[Value; N]>() }
    };
    if spec.has_ret && ret.is_null() {
        return unsafe { fail_static(host, "ferrule: NULL return slot") };
    }
    // SAFETY: dereferenced on this thread, for this call only.
    let st = unsafe { &*state_ptr(state) };
    unsafe { run_in_scope(st, spec, host, args, ret, f) }
}

/// The part of [`run_call`] after the pointer checks: runs `f` in a scope
/// of `st` with panics caught, and reports the outcome.
///
/// # Safety
/// As for [`run_call`], with `args` already checked; `ret` is non-NULL if
/// `spec.has_ret`.
#[inline(always)]
pub(crate) unsafe fn run_in_scope<const N: usize, F>(
    st: &ThreadState,
    spec: &CallSpec<N>,
    host: *const Host,
    args: &[Value; N],
    ret: *mut Value,
    f: F,
) -> i32
where
    F: FnOnce(&[Value; N]) -> Result<Option<Value>, String>,
{
    let scope = Scope::enter(st, host);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        if spec.check_overlap {
            // SAFETY: the slots match the signature, hence the borrows.
            unsafe { crate::convert::check_overlap(args, &spec.params) }?;
        }
        f(args)
    }));
    // Failures are reported while the scope is still active, as the
    // captured panic message belongs to it.
    let status = match result {
        Ok(Ok(value)) => {
            if spec.has_ret {
                if let Some(v) = value {
                    // SAFETY: checked non-NULL above; writable per the ABI.
                    unsafe { ret.write(v) };
                }
            }
            abi::OK
        }
        Ok(Err(msg)) => unsafe { fail(host, msg) },
        Err(payload) => unsafe { fail_panic(st, host, payload) },
    };
    drop(scope);
    status
}

/// The current thread's state, in the registered key (or the fallback),
/// for code outside the plugin's own shims. Same rules as [`state_ptr`].
pub(crate) fn current_state_ptr() -> *const ThreadState {
    state_ptr(state_key())
}

/// Runs `f` in a scope of the current thread's state with `host` as the
/// current host; a panic or an `Err` is reported through `set_error` and
/// becomes the returned status.
///
/// # Safety
/// `host` must point to a live host table.
pub(crate) unsafe fn guarded_current<T>(host: *const Host, f: impl FnOnce() -> Result<T, String>) -> Result<T, i32> {
    unsafe { guarded(state_key(), host, f) }
}

/// Runs `f` in a scope of the current thread's state with `host` as the
/// current host; a panic is logged at error level as `"{what} {message}"`.
///
/// # Safety
/// `host` must be NULL or point to a live host table.
pub(crate) unsafe fn logged_current(host: *const Host, what: &str, f: impl FnOnce()) {
    state_key().with(|st| {
        let _scope = Scope::enter(st, host);
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
            let msg = panic_message(st, payload);
            unsafe { host_log(host, Level::Error, &format!("{what} {msg}")) };
        }
    });
}

/// Installs the SDK's panic hook (once per process); see
/// [`install_panic_hook`].
pub(crate) fn ensure_panic_hook() {
    install_panic_hook();
}

/// `set_error(msg)`; `FERRULE_ERROR`.
///
/// # Safety
/// `host` must point to a live host table.
#[cold]
#[inline(never)]
pub(crate) unsafe fn fail_static(host: *const Host, msg: &str) -> i32 {
    unsafe { set_error(host, msg) };
    abi::ERROR
}

/// `set_error(msg)`; `FERRULE_ERROR`.
///
/// # Safety
/// `host` must point to a live host table.
#[cold]
#[inline(never)]
unsafe fn fail(host: *const Host, msg: String) -> i32 {
    unsafe { fail_static(host, &msg) }
}

/// `set_error` with the message of a panic caught in the current scope;
/// `FERRULE_PANIC`.
///
/// # Safety
/// `host` must point to a live host table.
#[cold]
#[inline(never)]
unsafe fn fail_panic(st: &ThreadState, host: *const Host, payload: Box<dyn Any + Send>) -> i32 {
    let msg = panic_message(st, payload);
    unsafe { set_error(host, &msg) };
    abi::PANIC
}

/// Runs `f` with `host` as the current host. A panic or an `Err` is reported
/// through `set_error` (before the scope ends, while the captured panic
/// message is still there) and becomes the returned status.
///
/// # Safety
/// `host` must point to a live host table.
unsafe fn guarded<T>(state: &'static StateKey, host: *const Host, f: impl FnOnce() -> Result<T, String>) -> Result<T, i32> {
    state.with(|st| {
        let _scope = Scope::enter(st, host);
        match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(msg)) => Err(unsafe { fail(host, msg) }),
            Err(payload) => Err(unsafe { fail_panic(st, host, payload) }),
        }
    })
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
pub unsafe fn run_init<F, E>(
    key: &'static StateKey,
    host: *const Host,
    config: *const c_char,
    config_len: usize,
    state: *mut *mut c_void,
    f: F,
) -> i32
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
    match unsafe { guarded(key, host, || f(config).map_err(|e| e.to_string())) } {
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
pub unsafe fn run_shutdown<F: FnOnce()>(key: &'static StateKey, host: *const abi::Host, state: *mut c_void, f: F) {
    if state.is_null() {
        return;
    }
    // SAFETY: run_init made it with Box::into_raw; shutdown runs once.
    let instance = unsafe { Box::from_raw(state.cast::<Instance>()) };
    let host = if host.is_null() { instance.host } else { host };
    key.with(|st| {
        let _scope = Scope::enter(st, host);
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
            let msg = panic_message(st, payload);
            unsafe { host_log(host, Level::Error, &format!("shutdown {msg}")) };
        }
    });
    drop(instance);
}

// ---- descriptor -------------------------------------------------------------

/// What `plugin!` knows about one function.
pub struct FunctionSpec {
    /// The function's name (an identifier).
    pub name: &'static str,
    /// `(parameter name, ABI type)` pairs.
    pub params: Vec<(&'static str, Cow<'static, str>)>,
    /// ABI return type, `""` for none.
    pub ret: &'static str,
    /// `#[doc]` attributes in order; `None` for other attributes.
    pub docs: Vec<Option<&'static str>>,
    /// Marked `#[quick]`: registered with `FERRULE_FN_QUICK`.
    pub quick: bool,
    /// The generated call shim.
    pub call: CallFn,
}

/// What `plugin!` knows about the plugin.
pub struct PluginSpec {
    /// Reverse-DNS id.
    pub id: &'static str,
    /// Human-readable name.
    pub name: &'static str,
    /// The plugin's own version.
    pub version: &'static str,
    /// Optional description.
    pub description: Option<&'static str>,
    /// Optional SPDX license expression.
    pub license: Option<&'static str>,
    /// The generated init shim.
    pub init: abi::InitFn,
    /// The generated shutdown shim.
    pub shutdown: abi::ShutdownFn,
    /// The plugin functions, in declaration order.
    pub functions: Vec<FunctionSpec>,
    /// Implementations of host-defined interfaces (ABI 1.2).
    pub interfaces: Vec<crate::iface::Export>,
}

/// The canonical signature string: `(a: i64, b: i64) -> i64`, `(msg: str)`,
/// `()`.
fn signature<T: AsRef<str>>(params: &[(&str, T)], ret: &str) -> String {
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
fn join_docs(docs: &[Option<&str>]) -> Option<String> {
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
fn build_descriptor(spec: &PluginSpec) -> Option<*const Plugin> {
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
    let mut interfaces: Vec<*const Interface> = Vec::with_capacity(spec.interfaces.len());
    for export in &spec.interfaces {
        let interface = Interface {
            struct_size: core::mem::size_of::<Interface>() as u32,
            flags: if export.thread_safe { abi::IFACE_THREAD_SAFE } else { 0 },
            id: leak_cstr(export.id)?,
            revision: export.revision,
            method_count: u32::try_from(export.methods.len()).ok()?,
            fingerprint: export.fingerprint,
            layout: leak_opt_cstr(export.layout)?,
            name: leak_cstr(export.name)?,
            doc: leak_opt_cstr(export.doc)?,
            methods: Box::leak(export.methods.clone().into_boxed_slice()).as_ptr(),
            create: export.create,
            destroy: export.destroy,
        };
        interfaces.push(Box::into_raw(Box::new(interface)).cast_const());
    }
    let interface_count = u32::try_from(interfaces.len()).ok()?;
    let interfaces: &'static mut [*const Interface] = Box::leak(interfaces.into_boxed_slice());
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
        interface_count,
        reserved: 0,
        interfaces: interfaces.as_ptr(),
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
    /// A cell that holds no descriptor yet.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> DescriptorCell {
        DescriptorCell(OnceLock::new())
    }
}

/// The body of the generated `ferrule_entry_v1`. Never unwinds; NULL if the
/// descriptor cannot be built. Registers the plugin's thread-local `state`
/// for this crate (the first one wins; `plugin!` is used once per library).
pub fn entry<F: FnOnce() -> PluginSpec>(cell: &'static DescriptorCell, state: &'static StateKey, spec: F) -> *const Plugin {
    if let Some(p) = cell.0.get() {
        return p.0;
    }
    let _ = STATE_KEY.set(state);
    state.with(|st| {
        let _scope = Scope::enter(st, ptr::null());
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            install_panic_hook();
            cell.0
                .get_or_init(|| DescriptorPtr(build_descriptor(&spec()).unwrap_or(ptr::null())))
                .0
        }));
        match result {
            Ok(p) => p,
            Err(payload) => {
                drop(panic_message(st, payload));
                ptr::null()
            }
        }
    })
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
    fn call_specs() {
        let none = CallSpec::new([], false);
        assert!(!none.check_overlap && !none.has_ret);
        let reads = CallSpec::new([("a", ArgBorrow::Bytes), ("b", ArgBorrow::Buf { elem_size: 8 })], true);
        assert!(!reads.check_overlap && reads.has_ret);
        let writes = CallSpec::new([("a", ArgBorrow::None), ("b", ArgBorrow::MutBuf { elem_size: 4 })], false);
        assert!(writes.check_overlap);
        const SPEC: CallSpec<1> = CallSpec::new([("x", ArgBorrow::MutBuf { elem_size: 1 })], true);
        const { assert!(SPEC.check_overlap) };
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
