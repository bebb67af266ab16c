//! Host functions: `fn(...)` parameters ([`HostFn`]), called back through
//! `ferrule_host.invoke` (ABI 1.1). [`HostFn`] and [`HostFnError`] are
//! re-exported at the crate root; the traits that spell a signature
//! ([`HostFnSignature`], [`HostFnArg`], [`HostFnRet`]) are machinery in
//! `__private::hostfn`, named only in the bounds of [`HostFn::call`].

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use core::ffi::c_void;

use crate::abi::{self, Bytes, FnHandle, Host, Value};
use crate::convert::FromArg;

/// A host function passed to a plugin function as an `fn(...)` argument,
/// for example a Python callable.
///
/// `F` is a Rust function pointer type that spells the signature:
/// `HostFn<'_, fn(i64, f64) -> i64>` is the ABI type `fn(i64, f64) -> i64`,
/// `HostFn<'_, fn()>` is `fn()`. Parameter and result types are `bool`,
/// `i8`..`i64`, `u8`..`u64`, `f32`, `f64`, `String` (ABI `str`) and
/// `Vec<u8>` (ABI `bytes`); the result may also be `()` (none). Spell text
/// and byte parameters as `String` and `Vec<u8>`; [`call`](HostFn::call)
/// still takes them borrowed, as `&str` and `&[u8]`.
///
/// `call` is implemented for up to six parameters:
///
/// ```
/// use ferrule_sdk::{HostFn, HostFnError};
///
/// fn apply_twice(f: HostFn<'_, fn(i64) -> i64>, x: i64) -> Result<i64, HostFnError> {
///     f.call(f.call(x)?)
/// }
///
/// fn shout(f: HostFn<'_, fn(String) -> String>, text: &str) -> Result<String, HostFnError> {
///     Ok(f.call(text)? + "!")
/// }
/// ```
///
/// The lifetime `'a` is the duration of the plugin call that received the
/// handle: it cannot be stored beyond it. Within the call it may be copied
/// and used from any thread (e.g. with [`std::thread::scope`]).
///
/// A failing host function (e.g. one that raised a Python exception)
/// returns [`HostFnError::Failed`]; the host reports the original failure
/// itself when the plugin call returns, so just propagate the error, e.g.
/// with `?`.
pub struct HostFn<'a, F> {
    host: *const Host,
    func: *const FnHandle,
    _call: PhantomData<&'a ()>,
    _sig: PhantomData<F>,
}

impl<F> Clone for HostFn<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for HostFn<'_, F> {}

impl<F> fmt::Debug for HostFn<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFn").field("func", &self.func).finish()
    }
}

// SAFETY: the contract lets the plugin call `invoke` from any thread before
// the call that received the handle returns, which 'a enforces; the host
// table is valid for as long.
unsafe impl<F> Send for HostFn<'_, F> {}
unsafe impl<F> Sync for HostFn<'_, F> {}

/// Why calling a [`HostFn`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostFnError {
    /// The host is older than ABI 1.1: its table has no `invoke`.
    Unsupported,
    /// The host function failed (for example the Python callable raised),
    /// or the handle was not live. The host reports the failure itself when
    /// the plugin call returns.
    Failed,
    /// The host function's result could not be decoded (e.g. a `str` result
    /// that is not UTF-8).
    BadResult(String),
}

impl fmt::Display for HostFnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostFnError::Unsupported => {
                f.write_str("the host cannot call host functions (it has no invoke; ABI older than 1.1)")
            }
            HostFnError::Failed => f.write_str("host function failed"),
            HostFnError::BadResult(msg) => write!(f, "host function returned a bad result: {msg}"),
        }
    }
}

impl std::error::Error for HostFnError {}

impl From<HostFnError> for String {
    fn from(e: HostFnError) -> String {
        e.to_string()
    }
}

impl<'a, F: HostFnSignature> FromArg<'a> for HostFn<'a, F> {
    fn abi_type() -> Cow<'static, str> {
        Cow::Owned(F::abi_type())
    }

    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        let func = unsafe { v.func };
        if func.is_null() {
            return Err("NULL host function handle".to_owned());
        }
        let host = crate::runtime::current_host();
        if host.is_null() {
            return Err("host function argument outside of a call".to_owned());
        }
        Ok(HostFn {
            host,
            func,
            _call: PhantomData,
            _sig: PhantomData,
        })
    }
}

impl<F> HostFn<'_, F> {
    /// Calls `host->invoke` with encoded arguments; the raw result slot.
    fn invoke(&self, args: &[Value]) -> Result<Value, HostFnError> {
        let host = self.host;
        // SAFETY: `host` is the live table of the call that received the
        // handle ('a); `invoke` is read only when struct_size covers it.
        let invoke = unsafe {
            if !crate::runtime::host_has(host, crate::runtime::end_of(core::mem::offset_of!(Host, invoke))) {
                return Err(HostFnError::Unsupported);
            }
            (*host).invoke
        };
        let Some(invoke) = invoke else {
            return Err(HostFnError::Unsupported);
        };
        let mut ret = Value::ZERO;
        // SAFETY: a live handle and host; `args` has one slot per parameter
        // of the signature (F), encoded as the ABI says, borrowed for this
        // call; `ret` is writable.
        let status = unsafe { invoke(host, self.func, args.as_ptr(), &mut ret) };
        if status == abi::OK {
            Ok(ret)
        } else {
            Err(HostFnError::Failed)
        }
    }
}

/// A type that can be a parameter of a [`HostFn`] signature.
///
/// Implemented for `bool`, `i8`..`i64`, `u8`..`u64`, `f32`, `f64`, `String`
/// (`str`) and `Vec<u8>` (`bytes`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a parameter of a host function signature",
    note = "use bool, i8..i64, u8..u64, f32, f64, `String` (str) or `Vec<u8>` (bytes); \
            `HostFn::call` still takes `&str` and `&[u8]` for them"
)]
pub trait HostFnArg {
    /// The ABI type name, e.g. `"i64"` or `"str"`.
    const TYPE: &'static str;
    /// What [`HostFn::call`] takes for it: the type itself for scalars,
    /// `&str` for `String`, `&[u8]` for `Vec<u8>`.
    type Param<'p>;
    /// Encode an argument slot; borrowed data must outlive the invoke.
    fn encode(p: Self::Param<'_>) -> Value;
}

/// A type that can be the result of a [`HostFn`] signature.
///
/// Implemented for `()` (no result), `bool`, `i8`..`i64`, `u8`..`u64`,
/// `f32`, `f64`, `String` (`str`) and `Vec<u8>` (`bytes`).
pub trait HostFnRet: Sized {
    /// The ABI type name, or `""` for none.
    const TYPE: &'static str;
    /// Decode (and take ownership of) the result slot of a successful
    /// invoke.
    ///
    /// # Safety
    /// `v` must be the result slot of an invoke of a host function whose
    /// result type is `Self::TYPE`, decoded once.
    unsafe fn decode(v: Value) -> Result<Self, HostFnError>;
}

/// A function pointer type that spells a [`HostFn`] signature:
/// `fn(A, B, ..) -> R` with up to six [`HostFnArg`] parameters and a
/// [`HostFnRet`] result.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a host function signature",
    note = "use `fn(A, ..) -> R` with up to six parameters of bool, i8..i64, u8..u64, f32, f64, \
            `String` (str) or `Vec<u8>` (bytes), e.g. `fn(String) -> String`, not `fn(&str) -> String`"
)]
pub trait HostFnSignature {
    /// The canonical ABI text, e.g. `fn(i64, f64) -> i64` or `fn()`.
    fn abi_type() -> String;
}

/// `fn(A, B) -> R` as text.
fn signature_text(params: &[&str], ret: &str) -> String {
    let mut s = String::from("fn(");
    s.push_str(&params.join(", "));
    s.push(')');
    if !ret.is_empty() {
        s.push_str(" -> ");
        s.push_str(ret);
    }
    s
}

macro_rules! host_scalar {
    ($($t:ident: $member:ident as $wide:ident),* $(,)?) => {$(
        impl HostFnArg for $t {
            const TYPE: &'static str = stringify!($t);
            type Param<'p> = $t;
            #[inline]
            #[allow(clippy::unnecessary_cast)]
            fn encode(p: $t) -> Value {
                let mut v = Value::ZERO;
                v.$member = p as $wide;
                v
            }
        }
        impl HostFnRet for $t {
            const TYPE: &'static str = stringify!($t);
            #[inline]
            #[allow(clippy::unnecessary_cast)]
            unsafe fn decode(v: Value) -> Result<$t, HostFnError> {
                // The host range-checks the result against the signature.
                Ok(unsafe { v.$member } as $t)
            }
        }
    )*};
}

host_scalar!(
    i8: i64 as i64, i16: i64 as i64, i32: i64 as i64, i64: i64 as i64,
    u8: u64 as u64, u16: u64 as u64, u32: u64 as u64, u64: u64 as u64,
    f32: f32 as f32, f64: f64 as f64,
);

impl HostFnArg for bool {
    const TYPE: &'static str = "bool";
    type Param<'p> = bool;
    #[inline]
    fn encode(p: bool) -> Value {
        let mut v = Value::ZERO;
        v.u64 = p as u64;
        v
    }
}

impl HostFnRet for bool {
    const TYPE: &'static str = "bool";
    #[inline]
    unsafe fn decode(v: Value) -> Result<bool, HostFnError> {
        Ok(unsafe { v.u64 } != 0)
    }
}

fn borrowed_bytes(data: &[u8]) -> Value {
    Value {
        bytes: Bytes {
            ptr: data.as_ptr().cast::<c_void>(),
            len: data.len(),
            release: None,
        },
    }
}

impl HostFnArg for String {
    const TYPE: &'static str = "str";
    type Param<'p> = &'p str;
    #[inline]
    fn encode(p: &str) -> Value {
        borrowed_bytes(p.as_bytes())
    }
}

impl HostFnArg for Vec<u8> {
    const TYPE: &'static str = "bytes";
    type Param<'p> = &'p [u8];
    #[inline]
    fn encode(p: &[u8]) -> Value {
        borrowed_bytes(p)
    }
}

/// Copies the bytes of a `str`/`bytes` result and gives them to `release`.
///
/// # Safety
/// As for [`HostFnRet::decode`].
unsafe fn take_result_bytes(v: Value) -> Result<Vec<u8>, HostFnError> {
    let b = unsafe { v.bytes };
    let data = if b.len == 0 {
        Ok(Vec::new())
    } else if b.ptr.is_null() {
        Err(HostFnError::BadResult(format!("NULL data with length {}", b.len)))
    } else {
        // SAFETY: the host hands over `len` readable bytes.
        Ok(unsafe { core::slice::from_raw_parts(b.ptr.cast::<u8>(), b.len) }.to_vec())
    };
    if let Some(release) = b.release {
        // SAFETY: the plugin owns the result and releases it exactly once.
        unsafe { release(b.ptr.cast_mut(), b.len) };
    }
    data
}

impl HostFnRet for Vec<u8> {
    const TYPE: &'static str = "bytes";
    unsafe fn decode(v: Value) -> Result<Vec<u8>, HostFnError> {
        unsafe { take_result_bytes(v) }
    }
}

impl HostFnRet for String {
    const TYPE: &'static str = "str";
    unsafe fn decode(v: Value) -> Result<String, HostFnError> {
        let data = unsafe { take_result_bytes(v) }?;
        String::from_utf8(data).map_err(|e| HostFnError::BadResult(format!("invalid UTF-8: {}", e.utf8_error())))
    }
}

impl HostFnRet for () {
    const TYPE: &'static str = "";
    #[inline]
    unsafe fn decode(_v: Value) -> Result<(), HostFnError> {
        Ok(())
    }
}

macro_rules! host_fn_arity {
    ($($arg:ident: $A:ident),*) => {
        impl<$($A: HostFnArg,)* R: HostFnRet> HostFnSignature for fn($($A),*) -> R {
            fn abi_type() -> String {
                signature_text(&[$($A::TYPE),*], R::TYPE)
            }
        }

        impl<$($A: HostFnArg,)* R: HostFnRet> HostFn<'_, fn($($A),*) -> R> {
            /// Call the host function with these arguments (borrowed for
            /// the call) and return its result.
            ///
            /// Errors: [`HostFnError::Failed`] if the host function failed,
            /// [`HostFnError::Unsupported`] if the host is older than ABI
            /// 1.1, [`HostFnError::BadResult`] if the result cannot be
            /// decoded.
            #[allow(clippy::too_many_arguments)]
            pub fn call(&self, $($arg: $A::Param<'_>),*) -> Result<R, HostFnError> {
                let args: &[Value] = &[$($A::encode($arg)),*];
                let ret = self.invoke(args)?;
                // SAFETY: the result slot of a successful invoke of a host
                // function with result type R.
                unsafe { R::decode(ret) }
            }
        }
    };
}

host_fn_arity!();
host_fn_arity!(a: A);
host_fn_arity!(a: A, b: B);
host_fn_arity!(a: A, b: B, c: C);
host_fn_arity!(a: A, b: B, c: C, d: D);
host_fn_arity!(a: A, b: B, c: C, d: D, e: E);
host_fn_arity!(a: A, b: B, c: C, d: D, e: E, g: G);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_texts() {
        assert_eq!(<fn() as HostFnSignature>::abi_type(), "fn()");
        assert_eq!(<fn(i64) -> i64 as HostFnSignature>::abi_type(), "fn(i64) -> i64");
        assert_eq!(<fn(String) -> String as HostFnSignature>::abi_type(), "fn(str) -> str");
        assert_eq!(
            <fn(f64, f64) -> f64 as HostFnSignature>::abi_type(),
            "fn(f64, f64) -> f64"
        );
        assert_eq!(<fn(bool, Vec<u8>, u8)>::abi_type(), "fn(bool, bytes, u8)");
        assert_eq!(
            <HostFn<'_, fn(i64, f64) -> i64> as FromArg<'_>>::abi_type(),
            "fn(i64, f64) -> i64"
        );
    }
}
