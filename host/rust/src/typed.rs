//! Typed call handles: `plugin.typed::<(i64, i64), i64>("add")?` checks the
//! Rust types against the plugin's signature once, at lookup; each call is
//! then a plain call with no checks and no allocation.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use ferrule_sdk::abi;

use crate::error::{Error, ErrorKind, Result};
use crate::host::clear_error;
use crate::plugin::Plugin;
use crate::types::{py_repr, Scalar, Signature, Type};

/// A Rust type that is one of the ABI's numbers or `bool`.
pub trait AbiScalar: Copy + sealed::Sealed {
    /// Its ABI type.
    const SCALAR: Scalar;
    #[doc(hidden)]
    fn store(self) -> abi::Value;
    #[doc(hidden)]
    /// # Safety
    /// `v` holds a value of `Self::SCALAR` in its slot.
    unsafe fn load(v: abi::Value) -> Self;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! scalars {
    ($($t:ty => $s:ident, $member:ident, $wide:ty);*) => {$(
        impl sealed::Sealed for $t {}
        impl AbiScalar for $t {
            const SCALAR: Scalar = Scalar::$s;
            #[inline]
            fn store(self) -> abi::Value {
                abi::Value { $member: self as $wide }
            }
            #[inline]
            unsafe fn load(v: abi::Value) -> Self {
                // SAFETY: the caller's promise: the slot holds a $s.
                unsafe { v.$member as $t }
            }
        }
    )*};
}

scalars!(i8 => I8, i64, i64; i16 => I16, i64, i64; i32 => I32, i64, i64; i64 => I64, i64, i64;
         u8 => U8, u64, u64; u16 => U16, u64, u64; u32 => U32, u64, u64; u64 => U64, u64, u64;
         f64 => F64, f64, f64);

impl sealed::Sealed for f32 {}
impl AbiScalar for f32 {
    const SCALAR: Scalar = Scalar::F32;
    #[inline]
    fn store(self) -> abi::Value {
        let mut v = abi::Value::ZERO;
        v.f32 = self;
        v
    }
    #[inline]
    unsafe fn load(v: abi::Value) -> Self {
        // SAFETY: the caller's promise: the slot holds an f32.
        unsafe { v.f32 }
    }
}

impl sealed::Sealed for bool {}
impl AbiScalar for bool {
    const SCALAR: Scalar = Scalar::Bool;
    #[inline]
    fn store(self) -> abi::Value {
        abi::Value { u64: self as u64 }
    }
    #[inline]
    unsafe fn load(v: abi::Value) -> Self {
        // SAFETY: the caller's promise: the slot holds a bool (0 or 1).
        unsafe { v.u64 != 0 }
    }
}

/// The parameters of a typed handle: a tuple of [`AbiScalar`]s.
pub trait Params: sealed::Sealed {
    #[doc(hidden)]
    const SCALARS: &'static [Scalar];
    #[doc(hidden)]
    type Slots: AsRef<[abi::Value]> + AsMut<[abi::Value]>;
    #[doc(hidden)]
    fn slots(self) -> Self::Slots;
}

/// The result of a typed handle: `()` or an [`AbiScalar`].
pub trait Returns: Sized {
    #[doc(hidden)]
    const SCALAR: Option<Scalar>;
    #[doc(hidden)]
    /// # Safety
    /// `v` holds the result of a function whose result type is `Self::SCALAR`.
    unsafe fn take(v: abi::Value) -> Self;
}

impl Returns for () {
    const SCALAR: Option<Scalar> = None;
    unsafe fn take(_v: abi::Value) -> Self {}
}

impl<T: AbiScalar> Returns for T {
    const SCALAR: Option<Scalar> = Some(T::SCALAR);
    #[inline]
    unsafe fn take(v: abi::Value) -> Self {
        // SAFETY: forwarded from the caller.
        unsafe { T::load(v) }
    }
}

macro_rules! params {
    ($n:literal; $($t:ident . $i:tt),*) => {
        impl<$($t: AbiScalar),*> sealed::Sealed for ($($t,)*) {}
        impl<$($t: AbiScalar),*> Params for ($($t,)*) {
            const SCALARS: &'static [Scalar] = &[$($t::SCALAR),*];
            type Slots = [abi::Value; $n + 1];
            #[inline]
            #[allow(unused_mut)]
            fn slots(self) -> Self::Slots {
                let mut out = [abi::Value::ZERO; $n + 1];
                $(out[$i] = self.$i.store();)*
                out
            }
        }
    };
}

params!(0;);
params!(1; A.0);
params!(2; A.0, B.1);
params!(3; A.0, B.1, C.2);
params!(4; A.0, B.1, C.2, D.3);
params!(5; A.0, B.1, C.2, D.3, E.4);
params!(6; A.0, B.1, C.2, D.3, E.4, F.5);

/// A plugin function with Rust types, checked once against its signature.
///
/// It holds the plugin open, as an instance does: after `close()` its calls
/// fail with `PluginClosed`, and the shutdown runs once the last handle is
/// dropped. So a call needs no count of calls in flight: it is a check of
/// one flag and the plain call (and the serial lock, for a function that is
/// not thread-safe).
pub struct Typed<A, R> {
    plugin: Plugin,
    index: usize,
    call: abi::CallFn,
    thread_safe: bool,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> Typed<A, R> {
    fn new(plugin: &Plugin, index: usize) -> Self {
        plugin.inner.hold();
        plugin.inner.typed.fetch_add(1, Ordering::SeqCst);
        let f = &plugin.descriptor().functions[index];
        Typed { plugin: plugin.clone(), index, call: f.call, thread_safe: f.thread_safe(), _types: PhantomData }
    }
}

impl<A, R> Clone for Typed<A, R> {
    fn clone(&self) -> Self {
        Typed::new(&self.plugin, self.index)
    }
}

impl<A, R> Drop for Typed<A, R> {
    fn drop(&mut self) {
        self.plugin.inner.typed_gone();
    }
}

fn rust_types(scalars: &[Scalar], result: Option<Scalar>) -> String {
    let params = scalars.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
    let params = if scalars.len() == 1 { format!("({params},)") } else { format!("({params})") };
    format!("{params} -> {}", result.map(Scalar::name).unwrap_or("()"))
}

impl Plugin {
    /// The function `name` as a typed handle: its signature must have these
    /// parameter types and this result type, exactly (`i64` for `i64`).
    pub fn typed<A: Params, R: Returns>(&self, name: &str) -> Result<Typed<A, R>> {
        let Some(f) = self.function(name) else {
            return Err(Error::new(
                ErrorKind::NoSuchFunction,
                format!("plugin {} has no function {}", py_repr(&self.descriptor().id), py_repr(name)),
            ));
        };
        if !matches(&f.signature, A::SCALARS, R::SCALAR) {
            return Err(Error::new(
                ErrorKind::Type,
                format!(
                    "plugin {} function {} is {}{}, not the Rust types {}: give typed::<..>() the types of its \
                     signature (i64 for i64, f64 for f64, bool for bool), or call it with call()",
                    py_repr(&self.descriptor().id),
                    py_repr(name),
                    f.name,
                    f.signature,
                    rust_types(A::SCALARS, R::SCALAR)
                ),
            ));
        }
        let index = self.descriptor().functions.iter().position(|g| g.name == name).expect("found above");
        Ok(Typed::new(self, index))
    }
}

fn matches(sig: &Signature, params: &[Scalar], result: Option<Scalar>) -> bool {
    sig.result == result
        && sig.params.len() == params.len()
        && sig.params.iter().zip(params).all(|(p, s)| p.ty == Type::Scalar(*s))
}

impl<A: Params, R: Returns> Typed<A, R> {
    /// Call it. The only checks left are the plugin's own: its status.
    #[inline(always)]
    pub fn call(&self, args: A) -> Result<R> {
        let inner = &*self.plugin.inner;
        // Only for the error: the shutdown waits for this handle anyway.
        if inner.gate.closing.load(Ordering::Relaxed) {
            return Err(self.plugin.target().closed_error());
        }
        let mut slots = args.slots();
        let slots = slots.as_mut();
        let count = slots.len() - 1;
        let _serial = (!self.thread_safe).then(|| inner.serial.lock());
        clear_error();
        let (args, ret) = slots.split_at_mut(count);
        // SAFETY: the call pointer of a checked function whose signature is
        // A -> R, with the plugin's host table and state, one slot per
        // parameter and the result slot; the shutdown has not run (this handle
        // holds it off); not thread-safe calls hold the serial lock.
        let status = unsafe { (self.call)(inner.host.as_ptr(), inner.state.0, args.as_ptr(), ret.as_mut_ptr()) };
        if status != abi::OK {
            return Err(self.plugin.status_error(self.index, status));
        }
        // SAFETY: lookup checked that the function's result type is R's.
        Ok(unsafe { R::take(ret[0]) })
    }
}
