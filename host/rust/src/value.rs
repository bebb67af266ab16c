//! The values of the dynamic call path: what a caller passes (`Arg`) and
//! what a call returns (`Value`).

use crate::types::Scalar;

/// An argument of a dynamic call. Integers of every width are `Int` (checked
/// against the parameter's range at the call); buffers borrow the caller's
/// slice, which the plugin reads (and for `MutBuf` writes) in place.
pub enum Arg<'a> {
    /// For `bool`.
    Bool(bool),
    /// For every integer type.
    Int(i128),
    /// For `f32` and `f64`.
    Float(f64),
    /// For `str`.
    Str(&'a str),
    /// For `bytes`.
    Bytes(&'a [u8]),
    /// For `buf[T]`.
    Buf(Buffer<'a>),
    /// For `mutbuf[T]`.
    MutBuf(BufferMut<'a>),
    /// For `fn(...)`: a host function the plugin may call (on any thread)
    /// until the call returns. Its error becomes the call's.
    HostFn(&'a HostFn<'a>),
}

/// A host function passed to a plugin call: given the plugin's arguments,
/// it returns the declared result (`Value::None` for none) or an error,
/// which the call then returns as it is.
pub type HostFn<'a> = dyn Fn(&[Value]) -> crate::error::Result<Value> + Sync + 'a;

/// A borrowed array of numbers, for a `buf[T]` parameter.
#[derive(Debug, Clone, Copy)]
pub struct Buffer<'a> {
    pub(crate) elem: Scalar,
    pub(crate) ptr: *const u8,
    pub(crate) len: usize,
    _borrow: std::marker::PhantomData<&'a [u8]>,
}

/// A mutably borrowed array of numbers, for a `mutbuf[T]` parameter.
#[derive(Debug)]
pub struct BufferMut<'a> {
    pub(crate) elem: Scalar,
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    _borrow: std::marker::PhantomData<&'a mut [u8]>,
}

/// A number type that can be a buffer element.
pub trait Element: Copy + sealed::Sealed {
    /// Its ABI type.
    const SCALAR: Scalar;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! elements {
    ($($t:ty => $s:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const SCALAR: Scalar = Scalar::$s;
        }
        impl<'a> From<&'a [$t]> for Arg<'a> {
            fn from(data: &'a [$t]) -> Arg<'a> {
                Arg::Buf(Buffer { elem: Scalar::$s, ptr: data.as_ptr() as *const u8, len: data.len(),
                                  _borrow: std::marker::PhantomData })
            }
        }
        impl<'a> From<&'a Vec<$t>> for Arg<'a> {
            fn from(data: &'a Vec<$t>) -> Arg<'a> {
                Arg::from(data.as_slice())
            }
        }
        impl<'a> From<&'a mut [$t]> for Arg<'a> {
            fn from(data: &'a mut [$t]) -> Arg<'a> {
                Arg::MutBuf(BufferMut { elem: Scalar::$s, ptr: data.as_mut_ptr() as *mut u8, len: data.len(),
                                        _borrow: std::marker::PhantomData })
            }
        }
    )*};
}

elements!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16, u32 => U32, u64 => U64,
          f32 => F32, f64 => F64);

macro_rules! ints {
    ($($t:ty),*) => {$(
        impl From<$t> for Arg<'_> {
            fn from(n: $t) -> Self {
                Arg::Int(n as i128)
            }
        }
    )*};
}

ints!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl From<bool> for Arg<'_> {
    fn from(b: bool) -> Self {
        Arg::Bool(b)
    }
}

impl From<f64> for Arg<'_> {
    fn from(x: f64) -> Self {
        Arg::Float(x)
    }
}

impl From<f32> for Arg<'_> {
    fn from(x: f32) -> Self {
        Arg::Float(x as f64)
    }
}

impl<'a> From<&'a HostFn<'a>> for Arg<'a> {
    fn from(f: &'a HostFn<'a>) -> Self {
        Arg::HostFn(f)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Str(s)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Str(s)
    }
}

impl Arg<'_> {
    /// How the Python host would name the caller's type in a message.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Arg::Bool(_) => "bool",
            Arg::Int(_) => "int",
            Arg::Float(_) => "float",
            Arg::Str(_) => "str",
            Arg::Bytes(_) => "bytes",
            Arg::Buf(_) | Arg::MutBuf(_) => "memoryview",
            Arg::HostFn(_) => "function",
        }
    }
}

impl std::fmt::Debug for Arg<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Bool(b) => write!(f, "Bool({b})"),
            Arg::Int(n) => write!(f, "Int({n})"),
            Arg::Float(x) => write!(f, "Float({x})"),
            Arg::Str(s) => write!(f, "Str({s:?})"),
            Arg::Bytes(b) => write!(f, "Bytes({b:?})"),
            Arg::Buf(b) => write!(f, "{b:?}"),
            Arg::MutBuf(b) => write!(f, "{b:?}"),
            Arg::HostFn(_) => f.write_str("HostFn"),
        }
    }
}

/// A call's result. `None` for a function without one.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// The function has no result.
    None,
    /// A `bool`.
    Bool(bool),
    /// Every signed integer type.
    I64(i64),
    /// Every unsigned integer type.
    U64(u64),
    /// An `f32`.
    F32(f32),
    /// An `f64`.
    F64(f64),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
}
