//! The host of the current call and the objects it lends: what plugin code
//! uses to call interface implementations through the host (ABI 1.2).
//! [`HostRef`], [`Object`] and [`CallError`] are re-exported at the crate
//! root; [`CallResult`] is machinery for [`Object::call`].
//!
//! Lifetimes: a [`HostRef`] or [`Object`] may be kept and sent to other
//! threads, but only while the plugin instance is alive, as the host table
//! is valid until the plugin's shutdown returns. Drop every object before
//! that (at the latest in `shutdown`, or with the instance that holds it);
//! using one afterwards is undefined behaviour.

use core::fmt::{self, Display};
use core::mem::offset_of;
use core::ptr::{self, NonNull};
use std::ffi::CString;

use crate::abi::{self, Host, Value};
use crate::runtime as rt;
use crate::Level;

/// The host table of the plugin instance, as a handle that may be copied,
/// kept and sent to other threads.
///
/// Get it with [`host()`](fn@crate::host) during a plugin call, init, shutdown,
/// or an interface instance's create, method call or destroy. It stays valid
/// until the plugin's shutdown returns: it may be used on threads the plugin
/// spawned while the plugin is alive, never after its shutdown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HostRef(NonNull<Host>);

// SAFETY: every host callback may be called from any thread while the
// instance is alive (ferrule.h), which is as long as a HostRef may be used.
unsafe impl Send for HostRef {}
unsafe impl Sync for HostRef {}

impl fmt::Debug for HostRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HostRef").field(&self.0).finish()
    }
}

impl HostRef {
    /// The host of the call, init, shutdown, create or destroy running on
    /// this thread; `None` outside of one.
    pub fn current() -> Option<HostRef> {
        NonNull::new(rt::current_host().cast_mut()).map(HostRef)
    }

    /// Wraps a raw host table pointer; `None` if it is NULL.
    ///
    /// # Safety
    /// `host` must be NULL or a host table that stays valid for as long as
    /// the returned handle (or any copy, or any [`Object`] queried with it)
    /// is used.
    pub unsafe fn from_ptr(host: *const Host) -> Option<HostRef> {
        NonNull::new(host.cast_mut()).map(HostRef)
    }

    /// The raw table.
    pub fn as_ptr(self) -> *const Host {
        self.0.as_ptr()
    }

    /// The host's ABI version `(major, minor)`.
    pub fn abi_version(self) -> (u16, u16) {
        // SAFETY: a live table; the version fields exist since ABI 1.0.
        unsafe { ((*self.as_ptr()).abi_major, (*self.as_ptr()).abi_minor) }
    }

    /// Whether the host lends objects: its table has `query`, `call` and
    /// `release` (ABI 1.2 and later).
    pub fn has_objects(self) -> bool {
        let host = self.as_ptr();
        // SAFETY: a live table; the fields are read only when struct_size
        // covers them.
        unsafe {
            rt::host_has(host, rt::end_of(offset_of!(Host, release)))
                && (*host).query.is_some()
                && (*host).call.is_some()
                && (*host).release.is_some()
        }
    }

    /// Log `msg` at `level` through this host (from any thread).
    pub fn log(self, level: Level, msg: &str) {
        // SAFETY: a live table.
        unsafe { rt::host_log(self.as_ptr(), level, msg) };
    }
}

// ---- the client side --------------------------------------------------------

/// Why a call through the host failed: the status (`FERRULE_ERROR`, or
/// `FERRULE_PANIC` when the callee panicked) and the callee's message.
///
/// `Display` shows the message unchanged, so that returning a `CallError`
/// from a plugin function (it converts into `String`) propagates the
/// callee's message as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    status: i32,
    message: String,
}

impl CallError {
    /// An error with this status and message.
    pub fn new(status: i32, message: impl Into<String>) -> CallError {
        CallError {
            status,
            message: message.into(),
        }
    }

    /// The status the call returned (never `FERRULE_OK`).
    pub fn status(&self) -> i32 {
        self.status
    }

    /// Whether the callee panicked (`FERRULE_PANIC`).
    pub fn is_panic(&self) -> bool {
        self.status == abi::PANIC
    }

    /// The callee's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The callee's message, owned.
    pub fn into_message(self) -> String {
        self.message
    }
}

impl Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CallError {}

impl From<CallError> for String {
    fn from(e: CallError) -> String {
        e.message
    }
}

/// An object the host lent this plugin: a service of the host, or an
/// instance of another plugin's implementation.
///
/// Query one by hand with [`Object::query`] for an interface that no
/// generated code covers; generated clients wrap one.
///
/// Dropping it gives it back (`host->release`). It may be sent to and used
/// from other threads while the plugin instance is alive, and must be
/// dropped before the plugin's shutdown returns; an object of an interface
/// that is not thread-safe must not be called from two threads at once,
/// which generated clients enforce by taking `&mut self`.
pub struct Object {
    host: HostRef,
    ptr: NonNull<abi::Object>,
    fingerprint: u64,
}

// SAFETY: the host allows query/call/release on any thread; concurrent calls
// of non-thread-safe objects are excluded by the generated clients' `&mut`.
unsafe impl Send for Object {}
unsafe impl Sync for Object {}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object").field("ptr", &self.ptr).finish()
    }
}

impl Object {
    /// `host->query(id, revision, fingerprint)`: an implementation of
    /// interface `id` at exactly `revision` whose layout has this
    /// fingerprint. `None` when there is none, when `id` contains a NUL, or
    /// when the host is older than ABI 1.2 (it lends no objects).
    pub fn query(host: HostRef, id: &str, revision: u32, fingerprint: u64) -> Option<Object> {
        if !host.has_objects() {
            return None;
        }
        let id = CString::new(id).ok()?;
        // SAFETY: a live table that has query (checked above).
        let query = unsafe { (*host.as_ptr()).query }?;
        let found = unsafe { query(host.as_ptr(), id.as_ptr(), revision, fingerprint) };
        NonNull::new(found.cast_mut()).map(|ptr| Object { host, ptr, fingerprint })
    }

    /// The host that lent the object.
    pub fn host(&self) -> HostRef {
        self.host
    }

    /// The raw object handle.
    pub fn as_ptr(&self) -> *const abi::Object {
        self.ptr.as_ptr()
    }

    /// `host->call(method, args)`: the raw result slot on success (owned by
    /// the caller: a `str`/`bytes` result must go to its `release`), or the
    /// callee's status and message.
    ///
    /// # Safety
    /// `args` must hold one slot per parameter of method number `method`,
    /// encoded as its call-layer signature says (as for an exported
    /// function), with borrowed memory valid for the call; a `str` argument
    /// must be NUL-terminated, the NUL not counted in its length.
    pub unsafe fn call_raw(&self, method: u32, args: &[Value]) -> Result<Value, CallError> {
        let host = self.host.as_ptr();
        // SAFETY: has_objects() held when the object was queried.
        let Some(call) = (unsafe { (*host).call }) else {
            return Err(CallError::new(abi::ERROR, "the host cannot call objects"));
        };
        let mut ret = Value::ZERO;
        let args_ptr = if args.is_empty() { ptr::null() } else { args.as_ptr() };
        // SAFETY: a live host and object; args as the caller promised.
        let status = unsafe { call(host, self.as_ptr(), method, args_ptr, &mut ret) };
        if status == abi::OK {
            return Ok(ret);
        }
        // SAFETY: on failure ret.bytes holds the message, owned by us.
        let message = match unsafe { take_bytes(ret) } {
            Ok(bytes) if bytes.is_empty() => format!("call failed with status {status} and no message"),
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => e,
        };
        Err(CallError::new(status, message))
    }

    /// [`call_raw`](Object::call_raw), then decode (and take ownership of)
    /// the result as `R`: `()`, `bool`, a number type, `String` (`str`) or
    /// `Vec<u8>` (`bytes`).
    ///
    /// # Safety
    /// As for `call_raw`, and `R` must match the method's result type.
    pub unsafe fn call<R: CallResult>(&self, method: u32, args: &[Value]) -> Result<R, CallError> {
        let ret = unsafe { self.call_raw(method, args) }?;
        unsafe { R::take(ret) }
    }
}

/// What a generated client calls its methods through: an [`Object`] the
/// host lent a plugin, or, in a Rust host, an interface instance the host
/// crate made. A client is made only from a callee whose fingerprint is its
/// interface's.
///
/// # Safety
/// [`fingerprint`](Callee::fingerprint) must be the layout fingerprint of
/// the implementation `call_raw` calls, and `call_raw` must call its method
/// number `method` with `args` and hand over the result slot, as
/// [`Object::call_raw`] does.
pub unsafe trait Callee {
    /// The error of a failed call.
    type Error: From<CallError>;

    /// The layout fingerprint of the implementation behind it.
    fn fingerprint(&self) -> u64;

    /// As [`Object::call_raw`].
    ///
    /// # Safety
    /// As for [`Object::call_raw`].
    unsafe fn call_raw(&self, method: u32, args: &[Value]) -> Result<Value, Self::Error>;
}

// SAFETY: query() checked the fingerprint (the host lends only a match);
// call_raw is host->call.
unsafe impl Callee for Object {
    type Error = CallError;

    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    unsafe fn call_raw(&self, method: u32, args: &[Value]) -> Result<Value, CallError> {
        unsafe { Object::call_raw(self, method, args) }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let host = self.host.as_ptr();
        // SAFETY: has_objects() held when the object was queried; released
        // exactly once.
        if let Some(release) = unsafe { (*host).release } {
            unsafe { release(host, self.as_ptr()) };
        }
    }
}

/// Copies a `str`/`bytes` result (or failure message) and gives it to its
/// `release`.
///
/// # Safety
/// `v.bytes` must be a result the caller owns: `len` readable bytes at
/// `ptr` (or `len` 0), released at most once.
unsafe fn take_bytes(v: Value) -> Result<Vec<u8>, String> {
    let b = unsafe { v.bytes };
    let data = if b.len == 0 {
        Ok(Vec::new())
    } else if b.ptr.is_null() {
        Err(format!("result is NULL with length {}", b.len))
    } else {
        // SAFETY: the callee handed over `len` readable bytes.
        Ok(unsafe { core::slice::from_raw_parts(b.ptr.cast::<u8>(), b.len) }.to_vec())
    };
    if let Some(release) = b.release {
        unsafe { release(b.ptr.cast_mut(), b.len) };
    }
    data
}

/// A type a client call can return: `()`, `bool`, the numbers, `String`
/// (`str`) and `Vec<u8>` (`bytes`). Handles and structs are decoded by the
/// generated clients on top of `u64` and an `out` buffer.
pub trait CallResult: Sized {
    /// Decode (and take ownership of) the result slot of a successful call.
    ///
    /// # Safety
    /// `v` must be the result slot of a successful call of a method whose
    /// result has this type, decoded once.
    unsafe fn take(v: Value) -> Result<Self, CallError>;
}

impl CallResult for () {
    unsafe fn take(_v: Value) -> Result<(), CallError> {
        Ok(())
    }
}

impl CallResult for bool {
    unsafe fn take(v: Value) -> Result<bool, CallError> {
        Ok(unsafe { v.u64 } != 0)
    }
}

macro_rules! scalar_result {
    ($($t:ident: $member:ident),* $(,)?) => {$(
        impl CallResult for $t {
            #[allow(clippy::unnecessary_cast)]
            unsafe fn take(v: Value) -> Result<$t, CallError> {
                // The host range-checks results against the signature.
                Ok(unsafe { v.$member } as $t)
            }
        }
    )*};
}

scalar_result!(
    i8: i64, i16: i64, i32: i64, i64: i64, u8: u64, u16: u64, u32: u64, u64: u64, f32: f32, f64: f64,
);

impl CallResult for Vec<u8> {
    unsafe fn take(v: Value) -> Result<Vec<u8>, CallError> {
        unsafe { take_bytes(v) }.map_err(|e| CallError::new(abi::ERROR, e))
    }
}

impl CallResult for String {
    unsafe fn take(v: Value) -> Result<String, CallError> {
        let bytes = unsafe { <Vec<u8> as CallResult>::take(v) }?;
        String::from_utf8(bytes)
            .map_err(|e| CallError::new(abi::ERROR, format!("result is not valid UTF-8: {}", e.utf8_error())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_errors_show_the_message() {
        let e = CallError::new(abi::PANIC, "panicked at x");
        assert!(e.is_panic());
        assert_eq!(
            (e.status(), e.message(), e.to_string()),
            (abi::PANIC, "panicked at x", "panicked at x".to_owned())
        );
        assert_eq!(String::from(e), "panicked at x");
        assert!(!CallError::new(abi::ERROR, "").is_panic());
    }

    #[test]
    fn results_take_their_bytes() {
        use crate::convert::IntoRet;
        let v = IntoRet::into_ret(String::from("hé")).unwrap().unwrap();
        assert_eq!(unsafe { <String as CallResult>::take(v) }, Ok("hé".to_owned()));
        let bad = IntoRet::into_ret(vec![0xffu8]).unwrap().unwrap();
        let err = unsafe { <String as CallResult>::take(bad) }.unwrap_err();
        assert!(err.message().starts_with("result is not valid UTF-8"));
    }
}
