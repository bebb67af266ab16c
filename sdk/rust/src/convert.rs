//! Argument decoding ([`FromArg`]) and result encoding ([`IntoRet`]).

use core::ffi::c_void;
use core::fmt::Display;

use crate::abi::{Bytes, Value};

/// A Rust type that a plugin function can take as a parameter.
///
/// `TYPE` is the parameter's type in the ABI signature string. Implemented
/// for `bool`, `i8`..`i64`, `u8`..`u64`, `f32`, `f64` (same names), `&str` and
/// `String` (`str`), `&[u8]` and `Vec<u8>` (`bytes`).
///
/// The lifetime `'a` is the duration of the call: borrowed types (`&str`,
/// `&[u8]`) point straight into the host's argument buffer, without a copy,
/// and cannot outlive the call.
pub trait FromArg<'a>: Sized {
    /// The ABI signature type name, e.g. `"i64"` or `"str"`.
    const TYPE: &'static str;

    /// Decode one argument slot. An `Err` fails the call with
    /// `FERRULE_ERROR` and that message.
    ///
    /// # Safety
    ///
    /// `v` must be a slot the host filled for a parameter whose signature
    /// type is `Self::TYPE`: for `str`/`bytes` its `bytes` member must point
    /// to `len` readable bytes (or have `len` 0) that stay valid and
    /// unchanged for `'a`.
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String>;
}

/// A Rust type that a plugin function can return.
///
/// `TYPE` is the return type in the ABI signature string, or `""` for no
/// return value (the signature then has no `-> ...` part). Implemented for
/// `()`, the scalars of [`FromArg`], `String`, `&'static str`, `Vec<u8>`,
/// `&'static [u8]`, and `Result<T, E>` for any such `T` and `E: Display`.
pub trait IntoRet {
    /// The ABI signature type name, or `""` for none.
    const TYPE: &'static str;

    /// Encode the result: `Ok(None)` for no value, `Ok(Some(slot))` for a
    /// value to write to the return slot, `Err(message)` to fail the call
    /// with `FERRULE_ERROR`. A returned `bytes` slot must follow the
    /// ownership rules of [`Bytes`]: `release` is called once by the host.
    fn into_ret(self) -> Result<Option<Value>, String>;
}

// ---- arguments --------------------------------------------------------------

macro_rules! signed_arg {
    ($($t:ident),*) => {$(
        impl<'a> FromArg<'a> for $t {
            const TYPE: &'static str = stringify!($t);
            #[inline]
            unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
                // The host range-checked the value against the signature.
                Ok(unsafe { v.i64 } as $t)
            }
        }
        impl IntoRet for $t {
            const TYPE: &'static str = stringify!($t);
            #[inline]
            fn into_ret(self) -> Result<Option<Value>, String> {
                let mut v = Value::ZERO;
                v.i64 = self as i64;
                Ok(Some(v))
            }
        }
    )*};
}

macro_rules! unsigned_arg {
    ($($t:ident),*) => {$(
        impl<'a> FromArg<'a> for $t {
            const TYPE: &'static str = stringify!($t);
            #[inline]
            unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
                Ok(unsafe { v.u64 } as $t)
            }
        }
        impl IntoRet for $t {
            const TYPE: &'static str = stringify!($t);
            #[inline]
            fn into_ret(self) -> Result<Option<Value>, String> {
                let mut v = Value::ZERO;
                v.u64 = self as u64;
                Ok(Some(v))
            }
        }
    )*};
}

signed_arg!(i8, i16, i32, i64);
unsigned_arg!(u8, u16, u32, u64);

impl<'a> FromArg<'a> for bool {
    const TYPE: &'static str = "bool";
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        Ok(unsafe { v.u64 } != 0)
    }
}

impl IntoRet for bool {
    const TYPE: &'static str = "bool";
    #[inline]
    fn into_ret(self) -> Result<Option<Value>, String> {
        let mut v = Value::ZERO;
        v.u64 = self as u64;
        Ok(Some(v))
    }
}

impl<'a> FromArg<'a> for f32 {
    const TYPE: &'static str = "f32";
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        Ok(unsafe { v.f32 })
    }
}

impl IntoRet for f32 {
    const TYPE: &'static str = "f32";
    #[inline]
    fn into_ret(self) -> Result<Option<Value>, String> {
        let mut v = Value::ZERO;
        v.f32 = self;
        Ok(Some(v))
    }
}

impl<'a> FromArg<'a> for f64 {
    const TYPE: &'static str = "f64";
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        Ok(unsafe { v.f64 })
    }
}

impl IntoRet for f64 {
    const TYPE: &'static str = "f64";
    #[inline]
    fn into_ret(self) -> Result<Option<Value>, String> {
        let mut v = Value::ZERO;
        v.f64 = self;
        Ok(Some(v))
    }
}

/// The borrowed bytes of a `str`/`bytes` slot.
///
/// # Safety
/// As for [`FromArg::from_arg`].
#[inline]
unsafe fn slot_bytes(v: &Value) -> &[u8] {
    let b = unsafe { v.bytes };
    if b.len == 0 || b.ptr.is_null() {
        &[]
    } else {
        unsafe { core::slice::from_raw_parts(b.ptr.cast::<u8>(), b.len) }
    }
}

impl<'a> FromArg<'a> for &'a str {
    const TYPE: &'static str = "str";
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        let bytes = unsafe { slot_bytes(v) };
        core::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8: {e}"))
    }
}

impl<'a> FromArg<'a> for String {
    const TYPE: &'static str = "str";
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        unsafe { <&str as FromArg<'a>>::from_arg(v) }.map(str::to_owned)
    }
}

impl<'a> FromArg<'a> for &'a [u8] {
    const TYPE: &'static str = "bytes";
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        Ok(unsafe { slot_bytes(v) })
    }
}

impl<'a> FromArg<'a> for Vec<u8> {
    const TYPE: &'static str = "bytes";
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        Ok(unsafe { slot_bytes(v) }.to_vec())
    }
}

// ---- results ----------------------------------------------------------------

impl IntoRet for () {
    const TYPE: &'static str = "";
    #[inline]
    fn into_ret(self) -> Result<Option<Value>, String> {
        Ok(None)
    }
}

/// `release` for bytes the SDK returned from a `Box<[u8]>`: rebuilds the box
/// from `(ptr, len)` and drops it.
///
/// # Safety
/// `(ptr, len)` must come from exactly one `Box::<[u8]>::into_raw` in
/// [`boxed_bytes`], and this must be called at most once for it.
unsafe extern "C" fn release_boxed_bytes(ptr: *mut c_void, len: usize) {
    if ptr.is_null() {
        return;
    }
    let slice = core::ptr::slice_from_raw_parts_mut(ptr.cast::<u8>(), len);
    // SAFETY: see above; dropping a Box<[u8]> cannot panic.
    drop(unsafe { Box::from_raw(slice) });
}

/// A return slot that hands `data` to the host without copying; the host
/// gives it back through [`release_boxed_bytes`].
fn boxed_bytes(data: Box<[u8]>) -> Value {
    let len = data.len();
    // For len 0 the pointer is dangling but non-NULL; release frees nothing.
    let ptr = Box::into_raw(data).cast::<u8>();
    Value {
        bytes: Bytes {
            ptr: ptr.cast::<c_void>().cast_const(),
            len,
            release: Some(release_boxed_bytes),
        },
    }
}

fn static_bytes(data: &'static [u8]) -> Value {
    Value {
        bytes: Bytes {
            ptr: data.as_ptr().cast::<c_void>(),
            len: data.len(),
            release: None,
        },
    }
}

impl IntoRet for String {
    const TYPE: &'static str = "str";
    #[inline]
    fn into_ret(self) -> Result<Option<Value>, String> {
        Ok(Some(boxed_bytes(self.into_bytes().into_boxed_slice())))
    }
}

impl IntoRet for &'static str {
    const TYPE: &'static str = "str";
    #[inline]
    fn into_ret(self) -> Result<Option<Value>, String> {
        Ok(Some(static_bytes(self.as_bytes())))
    }
}

impl IntoRet for Vec<u8> {
    const TYPE: &'static str = "bytes";
    #[inline]
    fn into_ret(self) -> Result<Option<Value>, String> {
        Ok(Some(boxed_bytes(self.into_boxed_slice())))
    }
}

impl IntoRet for &'static [u8] {
    const TYPE: &'static str = "bytes";
    #[inline]
    fn into_ret(self) -> Result<Option<Value>, String> {
        Ok(Some(static_bytes(self)))
    }
}

impl<T: IntoRet, E: Display> IntoRet for Result<T, E> {
    const TYPE: &'static str = T::TYPE;
    #[inline]
    fn into_ret(self) -> Result<Option<Value>, String> {
        match self {
            Ok(v) => v.into_ret(),
            Err(e) => Err(e.to_string()),
        }
    }
}
