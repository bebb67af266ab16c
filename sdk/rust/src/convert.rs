//! Argument decoding ([`FromArg`]) and result encoding ([`IntoRet`]) of plugin
//! functions: machinery that `plugin!` expands to, reached as
//! `__private::convert`.

use std::borrow::Cow;

use core::ffi::c_void;
use core::fmt::Display;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::abi::{Bytes, Value};

/// A Rust type that a plugin function can take as a parameter.
///
/// Implemented for `bool`, `i8`..`i64`, `u8`..`u64`, `f32`, `f64` (same
/// names), `&str` and `String` (`str`), `&[u8]` and `Vec<u8>` (`bytes`),
/// `&[T]` and `Vec<T>` (`buf[T]`, for `T` in `i8`..`i64`, `u16`..`u64`,
/// `f32`, `f64`), `&mut [T]` (`mutbuf[T]`, for those and `u8`), and
/// [`HostFn`](crate::HostFn) (`fn(...)`).
///
/// The lifetime `'a` is the duration of the call: borrowed types (`&str`,
/// `&[u8]`, `&[T]`, `&mut [T]`, `HostFn`) point straight into the host's
/// memory, without a copy, and cannot outlive the call.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a parameter of a plugin function",
    note = "see `ferrule_sdk::plugin!` for the parameter types: scalars, `&str`/`String`, `&[u8]`/`Vec<u8>`, \
            `&[T]`/`Vec<T>`, `&mut [T]` (T a number type), `HostFn<'_, fn(..) -> R>`"
)]
pub trait FromArg<'a>: Sized {
    /// The ABI signature type name, e.g. `"i64"`, `"str"`, `"mutbuf[f32]"`
    /// or `"fn(i64) -> i64"`. A function rather than a constant because some
    /// names are composed from other types' names.
    fn abi_type() -> Cow<'static, str>;

    /// Which host memory the decoded value reads or writes. Before decoding
    /// any argument, the SDK fails a call in which a [`ArgBorrow::MutBuf`]
    /// argument overlaps any other borrowing argument, so that a `&mut [T]`
    /// never aliases another reference.
    const BORROW: ArgBorrow = ArgBorrow::None;

    /// Decode one argument slot. An `Err` fails the call with
    /// `FERRULE_ERROR` and that message.
    ///
    /// # Safety
    ///
    /// `v` must be a slot the host filled for a parameter whose signature
    /// type is `Self::abi_type()`: for `str`/`bytes` its `bytes` member must
    /// point to `len` readable bytes (or have `len` 0), for `buf[T]` its
    /// `buf` member to `len` readable elements (or have `len` 0), valid and
    /// unchanged for `'a`; for `mutbuf[T]` likewise writable, and no other
    /// live reference may point into that memory (call `from_arg` at most
    /// once per slot); for `fn(...)`, `func` must be a handle that stays
    /// valid for `'a`, and this must run inside the call that received it.
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String>;
}

/// Which host memory an argument borrows; see [`FromArg::BORROW`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgBorrow {
    /// No memory behind the slot (scalars, host functions).
    None,
    /// Reads `bytes.len` bytes at `bytes.ptr` (`str`, `bytes`, also when
    /// copied into a `String` or `Vec<u8>`).
    Bytes,
    /// Reads `buf.len` elements of `elem_size` bytes at `buf.ptr`.
    Buf {
        /// Size of one element in bytes.
        elem_size: usize,
    },
    /// Reads and writes `buf.len` elements of `elem_size` bytes at
    /// `buf.ptr`.
    MutBuf {
        /// Size of one element in bytes.
        elem_size: usize,
    },
}

impl ArgBorrow {
    /// The byte range `(start, len)` that this kind of borrow covers in `v`.
    ///
    /// # Safety
    /// `v` must be a slot of the matching kind (see [`FromArg::from_arg`]).
    pub(crate) unsafe fn range(self, v: &Value) -> (usize, usize) {
        match self {
            ArgBorrow::None => (0, 0),
            ArgBorrow::Bytes => {
                let b = unsafe { v.bytes };
                (b.ptr as usize, b.len)
            }
            ArgBorrow::Buf { elem_size } | ArgBorrow::MutBuf { elem_size } => {
                let b = unsafe { v.buf };
                (b.ptr as usize, b.len.saturating_mul(elem_size))
            }
        }
    }
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

/// Implements [`FromArg`] with a fixed ABI type name.
macro_rules! fixed_type {
    ($name:expr) => {
        #[inline]
        fn abi_type() -> Cow<'static, str> {
            Cow::Borrowed($name)
        }
    };
}

// ---- arguments --------------------------------------------------------------

macro_rules! signed_arg {
    ($($t:ident),*) => {$(
        impl<'a> FromArg<'a> for $t {
            fixed_type!(stringify!($t));
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
            fixed_type!(stringify!($t));
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
    fixed_type!("bool");
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
    fixed_type!("f32");
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
    fixed_type!("f64");
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
    fixed_type!("str");
    const BORROW: ArgBorrow = ArgBorrow::Bytes;
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        let bytes = unsafe { slot_bytes(v) };
        core::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8: {e}"))
    }
}

impl<'a> FromArg<'a> for String {
    fixed_type!("str");
    const BORROW: ArgBorrow = ArgBorrow::Bytes;
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        unsafe { <&str as FromArg<'a>>::from_arg(v) }.map(str::to_owned)
    }
}

impl<'a> FromArg<'a> for &'a [u8] {
    fixed_type!("bytes");
    const BORROW: ArgBorrow = ArgBorrow::Bytes;
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        Ok(unsafe { slot_bytes(v) })
    }
}

impl<'a> FromArg<'a> for Vec<u8> {
    fixed_type!("bytes");
    const BORROW: ArgBorrow = ArgBorrow::Bytes;
    #[inline]
    unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
        Ok(unsafe { slot_bytes(v) }.to_vec())
    }
}

// ---- typed buffers ----------------------------------------------------------

/// Checks the `buf` member of a `buf[T]`/`mutbuf[T]` slot and returns a
/// pointer and length that `slice::from_raw_parts(_mut)` accepts: dangling
/// and 0 for an empty buffer (whatever `ptr` is); an error for a NULL or
/// misaligned `ptr` with elements, or a size over `isize::MAX` bytes.
///
/// # Safety
/// `v` must be a `buf[T]`/`mutbuf[T]` slot.
#[inline]
unsafe fn buf_parts<T>(v: &Value, type_name: &str) -> Result<(NonNull<T>, usize), String> {
    let b = unsafe { v.buf };
    if b.len == 0 {
        return Ok((NonNull::dangling(), 0));
    }
    let Some(ptr) = NonNull::new(b.ptr.cast::<T>()) else {
        return Err(format!("NULL buffer with {} elements", b.len));
    };
    if (ptr.as_ptr() as usize) % align_of::<T>() != 0 {
        return Err(format!(
            "buffer at {:#x} is not aligned for {type_name} ({} bytes)",
            ptr.as_ptr() as usize,
            align_of::<T>()
        ));
    }
    match b.len.checked_mul(size_of::<T>()) {
        Some(n) if n <= isize::MAX as usize => Ok((ptr, b.len)),
        _ => Err(format!("buffer of {} {type_name} elements is too large", b.len)),
    }
}

/// `&[T]` and `Vec<T>` as `buf[T]` (not for `u8`: `&[u8]` is `bytes`).
macro_rules! buf_arg {
    ($($t:ident),*) => {$(
        impl<'a> FromArg<'a> for &'a [$t] {
            fixed_type!(concat!("buf[", stringify!($t), "]"));
            const BORROW: ArgBorrow = ArgBorrow::Buf { elem_size: size_of::<$t>() };
            #[inline]
            unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
                let (ptr, len) = unsafe { buf_parts::<$t>(v, stringify!($t)) }?;
                // SAFETY: non-NULL, aligned, in bounds of isize; the host
                // lends `len` readable elements for 'a (see from_arg).
                Ok(unsafe { core::slice::from_raw_parts(ptr.as_ptr(), len) })
            }
        }
        impl<'a> FromArg<'a> for Vec<$t> {
            fixed_type!(concat!("buf[", stringify!($t), "]"));
            const BORROW: ArgBorrow = ArgBorrow::Buf { elem_size: size_of::<$t>() };
            #[inline]
            unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
                unsafe { <&[$t] as FromArg<'a>>::from_arg(v) }.map(<[$t]>::to_vec)
            }
        }
    )*};
}

/// `&mut [T]` as `mutbuf[T]`.
macro_rules! mutbuf_arg {
    ($($t:ident),*) => {$(
        impl<'a> FromArg<'a> for &'a mut [$t] {
            fixed_type!(concat!("mutbuf[", stringify!($t), "]"));
            const BORROW: ArgBorrow = ArgBorrow::MutBuf { elem_size: size_of::<$t>() };
            #[inline]
            unsafe fn from_arg(v: &'a Value) -> Result<Self, String> {
                let (ptr, len) = unsafe { buf_parts::<$t>(v, stringify!($t)) }?;
                // SAFETY: as for &[T], plus: the host lends the memory
                // writable and the shim checked that no other argument
                // overlaps it (see from_arg).
                Ok(unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), len) })
            }
        }
    )*};
}

buf_arg!(i8, i16, i32, i64, u16, u32, u64, f32, f64);
mutbuf_arg!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

/// Fails when a `mutbuf` argument overlaps any other argument's memory.
/// `params` are `(name, borrow)` per slot of `args`.
///
/// # Safety
/// Every slot of `args` must match the kind of its borrow.
pub(crate) unsafe fn check_overlap(args: &[Value], params: &[(&str, ArgBorrow)]) -> Result<(), String> {
    if !params.iter().any(|(_, b)| matches!(b, ArgBorrow::MutBuf { .. })) {
        return Ok(());
    }
    for (i, ((name, borrow), slot)) in params.iter().zip(args).enumerate() {
        if !matches!(borrow, ArgBorrow::MutBuf { .. }) {
            continue;
        }
        let (start, len) = unsafe { borrow.range(slot) };
        if len == 0 {
            continue;
        }
        for (j, ((other, other_borrow), other_slot)) in params.iter().zip(args).enumerate() {
            if i == j {
                continue;
            }
            let (o_start, o_len) = unsafe { other_borrow.range(other_slot) };
            if o_len != 0 && start < o_start.saturating_add(o_len) && o_start < start.saturating_add(len) {
                return Err(format!(
                    "argument `{name}` is a mutable buffer that overlaps the memory of argument `{other}`"
                ));
            }
        }
    }
    Ok(())
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
