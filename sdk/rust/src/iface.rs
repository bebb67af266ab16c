//! Machinery of the Rust code that `ferrule generate --rust` writes for
//! host-defined interfaces (ABI 1.2), reached by that code as
//! `ferrule_sdk::__private::iface`; not an API of its own.
//!
//! Implementing: each implementation is a Rust type that implements the
//! generated trait. The host makes instances through [`run_create`] (the
//! instance is boxed; [`destroy`] drops the box, so cleanup goes in `Drop`)
//! and calls the methods through generated thunks built on
//! [`run_exclusive`] / [`run_shared`], which decode each argument ([`arg`],
//! [`struct_arg`], [`out_arg`]), catch panics (`FERRULE_PANIC`, as for plugin
//! functions) and turn an `Err(e)` into `FERRULE_ERROR` with `e.to_string()`
//! as the message ([`ret`], [`struct_ret`]). [`Export`] is an entry of
//! `plugin!`'s `interfaces: [...]`.
//!
//! Calling: a generated `Client` wraps a [`Callee`](crate::Callee) (an
//! [`Object`](crate::Object) in a plugin, an instance in a Rust host) and
//! encodes its arguments with [`scalar`], [`bytes`], [`buf`], [`mutbuf`] and
//! [`StrArg`]; [`call`] decodes results.

use core::ffi::c_void;
use core::fmt::{self, Display};
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::abi::{self, Buf, Bytes, CallFn, CreateFn, DestroyFn, Host, Value};
use crate::convert::{FromArg, IntoRet};
use crate::host::{CallError, CallResult, Callee};
use crate::runtime::{self as rt, CallSpec};

/// What a method thunk knows about its method at compile time: name and
/// [`ArgBorrow`](crate::convert::ArgBorrow) of each argument slot, and
/// whether the result goes in `ret`. Built by generated code with
/// `MethodSpec::new([...], has_ret)`.
pub type MethodSpec<const N: usize> = CallSpec<N>;

// ---- the client side: arguments ---------------------------------------------


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

/// Calls method number `method` of `callee` and decodes (taking ownership
/// of) its result as `R`.
///
/// # Safety
/// As for [`Callee::call_raw`], and `R` must match the method's result type.
#[inline]
pub unsafe fn call<C: Callee, R: CallResult>(callee: &C, method: u32, args: &[Value]) -> Result<R, C::Error> {
    let ret = unsafe { callee.call_raw(method, args) }?;
    Ok(unsafe { R::take(ret) }?)
}

// ---- the implementation side ------------------------------------------------

/// The declaration of an interface revision, as generated: the facts the
/// host checks an implementation or a query against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The declaration's name, e.g. `"Transform"` (the host's messages use it).
    pub name: &'static str,
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
    /// Each method's name and call-layer signature (`"(text: str) -> str"`;
    /// a struct argument as `bytes`, a struct result as a trailing
    /// `out: mutbuf[u8]`), in vtable order: what a host's dynamic calls check.
    pub methods: &'static [(&'static str, &'static str)],
}

/// A generated `#[repr(C)]` struct of method thunks, one [`CallFn`] per
/// method in declaration order.
///
/// # Safety
/// The implementing type must be `#[repr(C)]` with only [`CallFn`] fields.
pub unsafe trait Vtable: Copy + 'static {}

/// A vtable's thunks, in declaration order.
fn methods_of<V: Vtable>(vtable: &V) -> Vec<CallFn> {
    const { assert!(size_of::<V>() % size_of::<CallFn>() == 0 && align_of::<V>() == align_of::<CallFn>()) };
    let count = size_of::<V>() / size_of::<CallFn>();
    // SAFETY: V is a #[repr(C)] struct of `count` CallFn fields (Vtable).
    unsafe { core::slice::from_raw_parts((vtable as *const V).cast::<CallFn>(), count) }.to_vec()
}

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
        let methods = methods_of(&vtable);
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

/// A value of a type that implements an interface's trait, with that type's
/// thunks: what a Rust host provides as a service (ferrule-host's
/// `Service::new`). Made by a generated `provided(value)`, which ties the
/// thunks to the value's type.
pub struct Provided {
    spec: Spec,
    methods: Vec<CallFn>,
    this: *mut c_void,
    drop_value: unsafe fn(*mut c_void),
}

// SAFETY: the value is Send (new requires it); a host calls a provided value
// of an interface that is not thread-safe one call at a time (and
// run_exclusive refuses re-entry), and the trait of a thread-safe one
// requires Sync.
unsafe impl Send for Provided {}
// SAFETY: as above.
unsafe impl Sync for Provided {}

unsafe fn drop_box<T>(this: *mut c_void) {
    // SAFETY: the Box<T> Provided::new made, dropped once.
    drop(unsafe { Box::from_raw(this.cast::<T>()) });
}

impl Provided {
    /// `value`, called through `vtable`, as an implementation of `spec`.
    ///
    /// # Safety
    /// `vtable` must be the thunks generated for `T` (`Vtable::of::<T>()`) of
    /// the interface `spec` declares.
    pub unsafe fn new<V: Vtable, T: Send + 'static>(spec: &Spec, vtable: V, value: T) -> Provided {
        let methods = methods_of(&vtable);
        rt::ensure_panic_hook(); // a panic in a method is reported where it happened
        Provided { spec: *spec, methods, this: Box::into_raw(Box::new(value)).cast::<c_void>(), drop_value: drop_box::<T> }
    }

    /// The interface it implements.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Its thunks, in declaration order: call them with [`this`](Provided::this) as the instance.
    pub fn methods(&self) -> &[CallFn] {
        &self.methods
    }

    /// The instance pointer the thunks take.
    pub fn this(&self) -> *mut c_void {
        self.this
    }
}

impl Drop for Provided {
    fn drop(&mut self) {
        // SAFETY: made by new(), dropped once, after every call (the host
        // keeps a provided value while any object lent of it is held).
        unsafe { (self.drop_value)(self.this) };
    }
}

impl fmt::Debug for Provided {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provided").field("id", &self.spec.id).field("revision", &self.spec.revision).finish_non_exhaustive()
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
    // A host serialises calls into the instance across threads, but a method
    // that calls the host may be called back into on this thread: a second
    // `&mut T` while the first is live. Refused.
    let outer = EXCLUSIVE.with(core::cell::Cell::get);
    // (Every box of a zero-sized T has the same address, and two `&mut` to
    // zero bytes alias nothing: only sized instances are checked.)
    if size_of::<T>() != 0 && Exclusive::holds(outer, this) {
        return unsafe { rt::fail_static(host, REENTERED) };
    }
    let frame = Exclusive { this, outer };
    EXCLUSIVE.with(|c| c.set(&frame));
    let _restore = Restore(outer);
    // SAFETY: dereferenced on this thread, for this call only.
    let st = unsafe { &*rt::current_state_ptr() };
    // SAFETY: the host serialises calls into this instance across threads,
    // and Exclusive refused a second call on this one.
    let instance = unsafe { &mut *this.cast::<T>() };
    unsafe { rt::run_in_scope(st, spec, host, args, ret, |args| f(instance, args)) }
}

const REENTERED: &str = "ferrule: a method of this instance is already running on this thread (it called the host, \
    which called the instance again); its interface is not thread-safe, so a method is not entered again before the \
    first returns";

/// The instances of interfaces that are not thread-safe that this thread is
/// inside a method of: a list through the stack, innermost first.
struct Exclusive {
    this: *mut c_void,
    outer: *const Exclusive,
}

std::thread_local! {
    static EXCLUSIVE: core::cell::Cell<*const Exclusive> = const { core::cell::Cell::new(core::ptr::null()) };
}

impl Exclusive {
    /// Whether the list from `at` holds `this`.
    fn holds(mut at: *const Exclusive, this: *mut c_void) -> bool {
        while !at.is_null() {
            // SAFETY: every entry is a frame of run_exclusive further up this
            // thread's stack, taken off the list (Restore) before it returns.
            let frame = unsafe { &*at };
            if frame.this == this {
                return true;
            }
            at = frame.outer;
        }
        false
    }
}

/// Puts the list back as it was when a method returns.
struct Restore(*const Exclusive);

impl Drop for Restore {
    fn drop(&mut self) {
        EXCLUSIVE.with(|c| c.set(self.0));
    }
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
    use crate::host::CallResult;

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
}
