//! Host-defined interfaces (ABI 1.2): implement them in a plugin, and call
//! the implementations the host lends out.
//!
//! An interface is declared once, in Python (`ferrule.idl`), and
//! `ferrule generate --lang rust` writes a Rust module per interface
//! revision that builds on this module: a trait to implement, an `export`
//! function for [`plugin!`](crate::plugin)'s `interfaces: [...]` section, and
//! a typed `Client`. Plugin code normally uses only the generated items,
//! [`HostRef`], [`Object`] and [`CallError`]; the rest of this module is the
//! machinery the generated code calls (argument decoding, thunks, result
//! encoding), public so that generated code in the plugin's crate can reach
//! it.
//!
//! # Implementing
//!
//! Each implementation is a Rust type that implements the generated trait.
//! The host makes instances with the trait's `create()` (the instance is
//! boxed; destroying it drops the box, so cleanup goes in `Drop`) and calls
//! the methods through generated thunks that decode each argument, catch
//! panics (`FERRULE_PANIC`, as for plugin functions) and turn an `Err(e)`
//! into `FERRULE_ERROR` with `e.to_string()` as the message.
//!
//! # Calling
//!
//! A generated `Client::query()` asks the host of the current call for an
//! implementation ([`Object::query`]); its methods call through the host and
//! return `Result<R, CallError>`, the error carrying the callee's message.
//! Dropping the client gives the object back to the host.
//!
//! # Lifetimes and threads
//!
//! [`HostRef`] and [`Object`] may be kept and sent to other threads, but only
//! while the plugin instance is alive: the host table is valid until the
//! plugin's shutdown returns. Drop every object before that (at the latest
//! in `shutdown`, or with the instance that holds it); using one afterwards
//! is undefined behaviour.

use core::ffi::c_void;
use core::fmt::{self, Display};
use core::mem::{align_of, offset_of, size_of};
use core::ptr::{self, NonNull};
use std::ffi::CString;

use crate::__private::{self as rt, CallSpec};
use crate::abi::{self, Buf, Bytes, CallFn, CreateFn, DestroyFn, Host, Value};
use crate::{FromArg, IntoRet, Level};

pub use crate::convert::ArgBorrow;

/// What a method thunk knows about its method at compile time: name and
/// [`ArgBorrow`] of each argument slot, and whether the result goes in
/// `ret`. Built by generated code with `MethodSpec::new([...], has_ret)`.
pub type MethodSpec<const N: usize> = CallSpec<N>;

// ---- the host --------------------------------------------------------------

/// The host table of the plugin instance, as a handle that may be copied,
/// kept and sent to other threads.
///
/// Get it with [`crate::host()`] during a plugin call, init, shutdown, or an
/// interface instance's create, method call or destroy. It stays valid until
/// the plugin's shutdown returns (see the [module docs](self)).
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
/// instance of another plugin's implementation. Generated clients wrap one.
///
/// Dropping it gives it back (`host->release`). It may be sent to and used
/// from other threads while the plugin instance is alive (see the
/// [module docs](self)); an object of an interface that is not thread-safe
/// must not be called from two threads at once, which generated clients
/// enforce by taking `&mut self`.
pub struct Object {
    host: HostRef,
    ptr: NonNull<abi::Object>,
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
        NonNull::new(found.cast_mut()).map(|ptr| Object { host, ptr })
    }

    /// [`Object::query`] for a generated interface's [`Spec`].
    pub fn query_spec(host: HostRef, spec: &Spec) -> Option<Object> {
        Object::query(host, spec.id, spec.revision, spec.fingerprint)
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
    /// encoded as its call-layer signature says, with borrowed memory valid
    /// for the call (a `str` NUL-terminated, see [`StrArg`]).
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
    /// the result as `R`.
    ///
    /// # Safety
    /// As for `call_raw`, and `R` must match the method's result type.
    pub unsafe fn call<R: CallResult>(&self, method: u32, args: &[Value]) -> Result<R, CallError> {
        let ret = unsafe { self.call_raw(method, args) }?;
        unsafe { R::take(ret) }
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

/// A number or `bool` argument of a client call; see [`scalar`].
pub trait Scalar: Copy {
    /// The argument slot.
    fn to_value(self) -> Value;
}

macro_rules! scalar_arg {
    ($($t:ident: $member:ident as $wide:ident),* $(,)?) => {$(
        impl Scalar for $t {
            #[allow(clippy::unnecessary_cast)]
            fn to_value(self) -> Value {
                let mut v = Value::ZERO;
                v.$member = self as $wide;
                v
            }
        }
    )*};
}

scalar_arg!(
    i8: i64 as i64, i16: i64 as i64, i32: i64 as i64, i64: i64 as i64,
    u8: u64 as u64, u16: u64 as u64, u32: u64 as u64, u64: u64 as u64,
    f32: f32 as f32, f64: f64 as f64,
);

impl Scalar for bool {
    fn to_value(self) -> Value {
        let mut v = Value::ZERO;
        v.u64 = self as u64;
        v
    }
}

/// The slot of a number or `bool` argument (`bool` as 0/1, signed integers
/// sign-extended, unsigned zero-extended).
pub fn scalar<T: Scalar>(x: T) -> Value {
    x.to_value()
}

/// The slot of a `bytes` argument (or of a struct's C layout), borrowing
/// `data` for the call.
pub fn bytes(data: &[u8]) -> Value {
    Value {
        bytes: Bytes {
            ptr: data.as_ptr().cast::<c_void>(),
            len: data.len(),
            release: None,
        },
    }
}

/// The slot of a `buf[T]` argument, borrowing `data` for the call.
pub fn buf<T: Copy>(data: &[T]) -> Value {
    Value {
        buf: Buf {
            ptr: data.as_ptr().cast_mut().cast::<c_void>(),
            len: data.len(),
        },
    }
}

/// The slot of a `mutbuf[T]` argument, lending `data` to the callee for the
/// call.
pub fn mutbuf<T: Copy>(data: &mut [T]) -> Value {
    Value {
        buf: Buf {
            ptr: data.as_mut_ptr().cast::<c_void>(),
            len: data.len(),
        },
    }
}

/// A `str` argument: a NUL-terminated copy of the text (the ABI passes
/// `str` arguments NUL-terminated, the NUL not counted in the length).
pub struct StrArg(Vec<u8>);

impl StrArg {
    /// Copies `s` and appends a NUL.
    pub fn new(s: &str) -> StrArg {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        StrArg(v)
    }

    /// The argument slot, borrowing `self`.
    pub fn value(&self) -> Value {
        Value {
            bytes: Bytes {
                ptr: self.0.as_ptr().cast::<c_void>(),
                len: self.0.len() - 1,
                release: None,
            },
        }
    }
}

// ---- structs ------------------------------------------------------------------

/// A struct of an interface declaration: `#[repr(C)]`, natural alignment,
/// read from and written to its C layout field by field (the generated code
/// implements it; bytes may be unaligned).
pub trait Struct: Copy + 'static {
    /// The declaration's name, for messages.
    const NAME: &'static str;
    /// Size of the C layout in bytes.
    const SIZE: usize;
    /// Reads the fields from `bytes` (at least `SIZE` long). Fails for a
    /// `bool` byte other than 0 or 1.
    fn read(bytes: &[u8]) -> Result<Self, String>;
    /// Writes the fields into `bytes` (at least `SIZE` long); padding is left
    /// as it is (callers zero it first).
    fn write(&self, bytes: &mut [u8]);
}

/// A field of a [`Struct`]: a number, `bool`, handle or nested struct, read
/// and written at a byte offset in the struct's C layout.
pub trait Field: Sized {
    /// Reads the field at `offset`.
    fn read_at(bytes: &[u8], offset: usize) -> Result<Self, String>;
    /// Writes the field at `offset`.
    fn write_at(&self, bytes: &mut [u8], offset: usize);
}

macro_rules! number_field {
    ($($t:ident),*) => {$(
        impl Field for $t {
            fn read_at(bytes: &[u8], offset: usize) -> Result<$t, String> {
                let mut raw = [0u8; size_of::<$t>()];
                raw.copy_from_slice(&bytes[offset..offset + size_of::<$t>()]);
                Ok($t::from_ne_bytes(raw))
            }
            fn write_at(&self, bytes: &mut [u8], offset: usize) {
                bytes[offset..offset + size_of::<$t>()].copy_from_slice(&self.to_ne_bytes());
            }
        }
    )*};
}

number_field!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

impl Field for bool {
    fn read_at(bytes: &[u8], offset: usize) -> Result<bool, String> {
        match bytes[offset] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("bool at offset {offset} is {other}, not 0 or 1")),
        }
    }
    fn write_at(&self, bytes: &mut [u8], offset: usize) {
        bytes[offset] = *self as u8;
    }
}

impl<S: Struct> Field for S {
    fn read_at(bytes: &[u8], offset: usize) -> Result<S, String> {
        S::read(&bytes[offset..offset + S::SIZE])
    }
    fn write_at(&self, bytes: &mut [u8], offset: usize) {
        self.write(&mut bytes[offset..offset + S::SIZE]);
    }
}

/// The C layout of `value`, padding zeroed, in a new vector (client calls
/// of generated code use a stack array instead).
pub fn struct_bytes<S: Struct>(value: &S) -> Vec<u8> {
    let mut out = vec![0u8; S::SIZE];
    value.write(&mut out);
    out
}

/// Reads a struct result from the `out` buffer a client passed; a bad
/// `bool` byte fails with `FERRULE_ERROR`.
pub fn struct_result<S: Struct>(out: &[u8]) -> Result<S, CallError> {
    S::read(out).map_err(|e| CallError::new(abi::ERROR, format!("result struct {}: {e}", S::NAME)))
}

// ---- the implementation side ------------------------------------------------

/// The declaration of an interface revision, as generated: the facts the
/// host checks an implementation or a query against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The interface id, e.g. `"org.example.text.transform"`.
    pub id: &'static str,
    /// The revision.
    pub revision: u32,
    /// The fingerprint of the canonical layout.
    pub fingerprint: u64,
    /// The canonical layout text.
    pub layout: &'static str,
    /// Whether instances may be called from several threads at once.
    pub thread_safe: bool,
}

/// A generated `#[repr(C)]` struct of method thunks, one [`CallFn`] per
/// method in declaration order.
///
/// # Safety
/// The implementing type must be `#[repr(C)]` with only [`CallFn`] fields.
pub unsafe trait Vtable: Copy + 'static {}

/// One implementation of an interface, for `plugin!`'s `interfaces: [...]`
/// section; made by a generated `export::<T>(name, doc)`.
pub struct Export {
    pub(crate) id: &'static str,
    pub(crate) revision: u32,
    pub(crate) fingerprint: u64,
    pub(crate) layout: Option<&'static str>,
    pub(crate) thread_safe: bool,
    pub(crate) name: &'static str,
    pub(crate) doc: Option<&'static str>,
    pub(crate) methods: Vec<CallFn>,
    pub(crate) create: CreateFn,
    pub(crate) destroy: DestroyFn,
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export")
            .field("id", &self.id)
            .field("revision", &self.revision)
            .field("name", &self.name)
            .field("methods", &self.methods.len())
            .finish_non_exhaustive()
    }
}

impl Export {
    /// An implementation of `spec` named `name` (unique in the plugin among
    /// implementations of the id), with a `doc` (`""` for none), a vtable
    /// and the create and destroy thunks.
    pub fn new<V: Vtable>(
        spec: &Spec,
        name: &'static str,
        doc: &'static str,
        vtable: V,
        create: CreateFn,
        destroy: DestroyFn,
    ) -> Export {
        const { assert!(size_of::<V>() % size_of::<CallFn>() == 0 && align_of::<V>() == align_of::<CallFn>()) };
        let count = size_of::<V>() / size_of::<CallFn>();
        // SAFETY: V is a #[repr(C)] struct of `count` CallFn fields (Vtable).
        let methods = unsafe { core::slice::from_raw_parts((&vtable as *const V).cast::<CallFn>(), count) }.to_vec();
        Export {
            id: spec.id,
            revision: spec.revision,
            fingerprint: spec.fingerprint,
            layout: Some(spec.layout),
            thread_safe: spec.thread_safe,
            name,
            doc: if doc.is_empty() { None } else { Some(doc) },
            methods,
            create,
            destroy,
        }
    }

    /// The implementation's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The interface id and revision.
    pub fn interface(&self) -> (&'static str, u32) {
        (self.id, self.revision)
    }
}

/// Decodes argument `name` of type `T` (any [`FromArg`] type: numbers,
/// `bool`, `&str`, `&[u8]`, `&[T]`, `&mut [T]`, `HostFn`).
///
/// # Safety
/// `slot` must be a slot the host filled for a parameter of `T`'s call-layer
/// type (see [`FromArg::from_arg`]), inside the call that received it.
#[inline]
pub unsafe fn arg<'a, T: FromArg<'a>>(slot: &'a Value, name: &str) -> Result<T, String> {
    unsafe { rt::decode_arg(Some(slot), name) }
}

/// Decodes a struct argument: a `bytes` slot holding exactly `S::SIZE` bytes
/// of its C layout (possibly unaligned).
///
/// # Safety
/// `slot` must be a `bytes` slot the host filled for the call.
pub unsafe fn struct_arg<S: Struct>(slot: &Value, name: &str) -> Result<S, String> {
    let data: &[u8] = unsafe { arg(slot, name) }?;
    if data.len() != S::SIZE {
        return Err(format!(
            "argument `{name}`: struct {} is {} bytes, got {}",
            S::NAME,
            S::SIZE,
            data.len()
        ));
    }
    S::read(data).map_err(|e| format!("argument `{name}`: struct {}: {e}", S::NAME))
}

/// Decodes the trailing `out: mutbuf[u8]` slot of a method with a struct
/// result; it must hold exactly `S::SIZE` bytes.
///
/// # Safety
/// `slot` must be a `mutbuf[u8]` slot the host filled for the call, not
/// overlapping any other argument (the thunk checks that first).
// The slot holds a raw pointer to memory the host lends writable: the
// `&mut` comes from that, not from the `&Value`.
#[allow(clippy::mut_from_ref)]
pub unsafe fn out_arg<S: Struct>(slot: &Value) -> Result<&mut [u8], String> {
    let out: &mut [u8] = unsafe { arg(slot, "out") }?;
    if out.len() != S::SIZE {
        return Err(format!(
            "argument `out`: struct {} is {} bytes, got {}",
            S::NAME,
            S::SIZE,
            out.len()
        ));
    }
    Ok(out)
}

/// Encodes a method's result (any [`IntoRet`] type, usually
/// `Result<R, E>` with `E: Display`).
#[inline]
pub fn ret<R: IntoRet>(r: R) -> Result<Option<Value>, String> {
    r.into_ret()
}

/// Writes a struct result into the `out` buffer (padding zeroed); nothing
/// goes in the return slot.
pub fn struct_ret<S: Struct, E: Display>(r: Result<S, E>, out: &mut [u8]) -> Result<Option<Value>, String> {
    let value = r.map_err(|e| e.to_string())?;
    out.fill(0);
    value.write(out);
    Ok(None)
}

/// Checks a method call's pointers; `Err(status)` after `set_error` when one
/// is bad.
///
/// # Safety
/// As for [`run_exclusive`].
#[inline(always)]
unsafe fn checked_args<'a, const N: usize>(
    spec: &MethodSpec<N>,
    host: *const Host,
    this: *mut c_void,
    args: *const Value,
    ret: *mut Value,
) -> Result<&'a [Value; N], i32> {
    if host.is_null() {
        return Err(abi::ERROR);
    }
    if this.is_null() {
        return Err(unsafe { rt::fail_static(host, "ferrule: NULL instance") });
    }
    if spec.has_ret() && ret.is_null() {
        return Err(unsafe { rt::fail_static(host, "ferrule: NULL return slot") });
    }
    if N == 0 {
        // SAFETY: a zero-sized array: any aligned non-NULL pointer will do.
        Ok(unsafe { &*NonNull::<[Value; N]>::dangling().as_ptr() })
    } else if args.is_null() {
        Err(unsafe { rt::fail_static(host, "ferrule: NULL argument array") })
    } else {
        // SAFETY: the host passes N slots.
        Ok(unsafe { &*args.cast::<[Value; N]>() })
    }
}

/// The body of a generated method thunk of an interface that is not
/// thread-safe: the host serialises calls into the instance, so `f` gets
/// `&mut T`. Runs `f` with `host` as the current host, catches panics
/// (`FERRULE_PANIC`), reports `Err` (`FERRULE_ERROR`), writes the result.
///
/// # Safety
/// The pointers are those the host passed to the method: `host` a live
/// table, `this` an instance that [`run_create`] made with a `T` and no other
/// call is using, `args` `N` slots matching the signature described by
/// `spec`, `ret` a writable slot.
#[inline(always)]
pub unsafe fn run_exclusive<T, const N: usize, F>(
    spec: &MethodSpec<N>,
    host: *const Host,
    this: *mut c_void,
    args: *const Value,
    ret: *mut Value,
    f: F,
) -> i32
where
    T: Send + 'static,
    F: FnOnce(&mut T, &[Value; N]) -> Result<Option<Value>, String>,
{
    let args = match unsafe { checked_args(spec, host, this, args, ret) } {
        Ok(args) => args,
        Err(status) => return status,
    };
    // SAFETY: dereferenced on this thread, for this call only.
    let st = unsafe { &*rt::current_state_ptr() };
    // SAFETY: the host serialises calls into this instance.
    let instance = unsafe { &mut *this.cast::<T>() };
    unsafe { rt::run_in_scope(st, spec, host, args, ret, |args| f(instance, args)) }
}

/// Like [`run_exclusive`] for a thread-safe interface: calls may run
/// concurrently, so `f` gets `&T` (and `T: Sync`).
///
/// # Safety
/// As for [`run_exclusive`], except that other calls may share the
/// instance.
#[inline(always)]
pub unsafe fn run_shared<T, const N: usize, F>(
    spec: &MethodSpec<N>,
    host: *const Host,
    this: *mut c_void,
    args: *const Value,
    ret: *mut Value,
    f: F,
) -> i32
where
    T: Send + Sync + 'static,
    F: FnOnce(&T, &[Value; N]) -> Result<Option<Value>, String>,
{
    let args = match unsafe { checked_args(spec, host, this, args, ret) } {
        Ok(args) => args,
        Err(status) => return status,
    };
    // SAFETY: dereferenced on this thread, for this call only.
    let st = unsafe { &*rt::current_state_ptr() };
    // SAFETY: shared access; T is Sync.
    let instance = unsafe { &*this.cast::<T>().cast_const() };
    unsafe { rt::run_in_scope(st, spec, host, args, ret, |args| f(instance, args)) }
}

/// The body of a generated `create` thunk: runs `make` with `host` as the
/// current host (so [`crate::host()`] and logging work), boxes the instance
/// and stores it in `*this`. A panic becomes `FERRULE_PANIC`, `Err(e)`
/// `FERRULE_ERROR` with `e.to_string()`.
///
/// # Safety
/// The pointers are those the host passed to a [`CreateFn`].
pub unsafe fn run_create<T, E, F>(host: *const Host, this: *mut *mut c_void, make: F) -> i32
where
    T: Send + 'static,
    E: Display,
    F: FnOnce() -> Result<T, E>,
{
    if host.is_null() {
        return abi::ERROR;
    }
    if this.is_null() {
        return unsafe { rt::fail_static(host, "ferrule: NULL instance pointer") };
    }
    rt::ensure_panic_hook();
    match unsafe { rt::guarded_current(host, || make().map(Box::new).map_err(|e| e.to_string())) } {
        Ok(instance) => {
            // SAFETY: checked non-NULL; writable per the ABI.
            unsafe { this.write(Box::into_raw(instance).cast::<c_void>()) };
            abi::OK
        }
        Err(status) => status,
    }
}

/// The `destroy` of every generated implementation: drops the box that
/// [`run_create`] made, with `host` as the current host. A panic in `Drop`
/// is logged at error level (destroy cannot fail).
///
/// # Safety
/// `this` must be an instance that `run_create` made with a `T`, destroyed
/// once, after every call into it has returned.
pub unsafe extern "C" fn destroy<T: Send + 'static>(host: *const Host, _plugin_state: *mut c_void, this: *mut c_void) {
    if this.is_null() {
        return;
    }
    // SAFETY: see above.
    let instance = unsafe { Box::from_raw(this.cast::<T>()) };
    unsafe { rt::logged_current(host, "destroy", move || drop(instance)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_args_are_nul_terminated() {
        let arg = StrArg::new("abc");
        let v = arg.value();
        let b = unsafe { v.bytes };
        assert_eq!(b.len, 3);
        assert!(b.release.is_none());
        assert_eq!(unsafe { core::slice::from_raw_parts(b.ptr.cast::<u8>(), 4) }, b"abc\0");
        assert_eq!(unsafe { StrArg::new("").value().bytes.len }, 0);
    }

    #[test]
    fn scalars_are_extended() {
        assert_eq!(unsafe { scalar(-1i8).i64 }, -1);
        assert_eq!(unsafe { scalar(0xFFu8).u64 }, 255);
        assert_eq!(unsafe { scalar(true).u64 }, 1);
        assert_eq!(unsafe { scalar(1.5f32).f32 }, 1.5);
        assert_eq!(unsafe { <i16 as CallResult>::take(scalar(-2i16)) }, Ok(-2));
        assert_eq!(unsafe { <bool as CallResult>::take(scalar(false)) }, Ok(false));
    }

    #[test]
    fn fields() {
        let mut b = [0u8; 16];
        0x0102_0304u32.write_at(&mut b, 4);
        true.write_at(&mut b, 9);
        (-1.5f64).write_at(&mut b, 8);
        assert_eq!(u32::read_at(&b, 4), Ok(0x0102_0304));
        assert_eq!(f64::read_at(&b, 8), Ok(-1.5));
        let mut flags = [0u8, 1, 7];
        assert_eq!(bool::read_at(&flags, 1), Ok(true));
        assert_eq!(
            bool::read_at(&flags, 2),
            Err("bool at offset 2 is 7, not 0 or 1".to_owned())
        );
        false.write_at(&mut flags, 1);
        assert_eq!(flags, [0, 0, 7]);
    }

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
        let v = crate::IntoRet::into_ret(String::from("hé")).unwrap().unwrap();
        assert_eq!(unsafe { <String as CallResult>::take(v) }, Ok("hé".to_owned()));
        let bad = crate::IntoRet::into_ret(vec![0xffu8]).unwrap().unwrap();
        let err = unsafe { <String as CallResult>::take(bad) }.unwrap_err();
        assert!(err.message().starts_with("result is not valid UTF-8"));
    }
}
