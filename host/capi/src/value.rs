//! `ferrule_host_value`: the tagged values a C host passes and receives,
//! turned into the Rust host's `Arg`s and back, and host functions as C
//! function pointers.

use std::ffi::{c_char, c_void};
use std::sync::Mutex;

use host::{Arg, ErrorKind, Scalar, Type, Value};

use crate::error::{kind_of, Failure, OK};

/// `ferrule_host_tag`: what a value holds.
pub mod tag {
    /// No value (a function without a result).
    pub const NONE: u32 = 0;
    /// `v.b`
    pub const BOOL: u32 = 1;
    /// `v.i64`
    pub const I64: u32 = 2;
    /// `v.u64`
    pub const U64: u32 = 3;
    /// `v.f32`
    pub const F32: u32 = 4;
    /// `v.f64`
    pub const F64: u32 = 5;
    /// `v.str`: UTF-8 text
    pub const STR: u32 = 6;
    /// `v.str`: bytes
    pub const BYTES: u32 = 7;
    /// `v.buf`: a read-only array of `elem`
    pub const BUF: u32 = 8;
    /// `v.buf`: a writable array of `elem`
    pub const MUTBUF: u32 = 9;
    /// `v.fn`: a host function
    pub const FN: u32 = 10;
}

/// `FERRULE_HOST_VALUE_OWNED`: the value's memory is the library's, freed
/// by `ferrule_host_value_free`.
pub const OWNED: u16 = 1;

/// `ferrule_host_type` of a scalar: the ABI's type-code order, from 1 (0 is none).
pub(crate) fn type_code(s: Scalar) -> u32 {
    host::SCALARS.iter().position(|&t| t == s).map(|i| i as u32 + 1).unwrap_or(0)
}

fn scalar_of(code: u32) -> Option<Scalar> {
    (code as usize).checked_sub(1).and_then(|i| host::SCALARS.get(i)).copied()
}

/// The tag a value of this scalar type has.
pub(crate) fn tag_of(s: Scalar) -> u32 {
    match s {
        Scalar::Bool => tag::BOOL,
        Scalar::F32 => tag::F32,
        Scalar::F64 => tag::F64,
        Scalar::Str => tag::STR,
        Scalar::Bytes => tag::BYTES,
        s if s.slot() == "i64" => tag::I64,
        _ => tag::U64,
    }
}

/// The tag and `ferrule_host_type` a parameter of this type takes.
pub(crate) fn param_tag(ty: &Type) -> (u32, u32) {
    match ty {
        Type::Scalar(s) => (tag_of(*s), type_code(*s)),
        Type::Buf(s) => (tag::BUF, type_code(*s)),
        Type::MutBuf(s) => (tag::MUTBUF, type_code(*s)),
        Type::Fn(_) => (tag::FN, 0),
    }
}

/// `ferrule_host_callback`.
pub type Callback = unsafe extern "C" fn(
    user_data: *mut c_void,
    args: *const CValue,
    arg_count: usize,
    result: *mut CValue,
    error: *mut *mut Failure,
) -> i32;

/// `v.str`
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CText {
    pub(crate) ptr: *const c_char,
    pub(crate) len: usize,
}

/// `v.buf`
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CBuf {
    pub(crate) ptr: *mut c_void,
    pub(crate) len: usize,
}

/// `v.fn`
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CFn {
    pub(crate) call: Option<Callback>,
    pub(crate) user_data: *mut c_void,
}

/// The union `v`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union CUnion {
    pub(crate) b: u8, // C's bool: read as a byte, any non-zero is true
    pub(crate) i64: i64,
    pub(crate) u64: u64,
    pub(crate) f32: f32,
    pub(crate) f64: f64,
    pub(crate) str: CText,
    pub(crate) buf: CBuf,
    pub(crate) func: CFn,
    pub(crate) reserved: [u8; 32],
}

/// `ferrule_host_value`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CValue {
    pub(crate) tag: u32,
    pub(crate) elem: u16,
    pub(crate) flags: u16,
    pub(crate) v: CUnion,
}

impl std::fmt::Debug for CValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ferrule_host_value {{ tag: {}, elem: {}, flags: {} }}", self.tag, self.elem, self.flags)
    }
}

const _: () = assert!(std::mem::size_of::<CValue>() == 40 && std::mem::align_of::<CValue>() == 8);

impl CValue {
    pub(crate) const NONE: CValue = CValue { tag: tag::NONE, elem: 0, flags: 0, v: CUnion { reserved: [0; 32] } };

    pub(crate) fn with(tag: u32, v: CUnion) -> CValue {
        CValue { tag, v, ..CValue::NONE }
    }

    /// A value that borrows `bytes` (text: NUL-terminated, the NUL not counted).
    fn text(tag: u32, bytes: &[u8], len: usize) -> CValue {
        CValue::with(tag, CUnion { str: CText { ptr: bytes.as_ptr() as *const c_char, len } })
    }

    fn scalar(v: &Value) -> Option<CValue> {
        Some(match *v {
            Value::Bool(b) => CValue::with(tag::BOOL, CUnion { b: b as u8 }),
            Value::I64(n) => CValue::with(tag::I64, CUnion { i64: n }),
            Value::U64(n) => CValue::with(tag::U64, CUnion { u64: n }),
            Value::F32(x) => {
                let mut v = CUnion { reserved: [0; 32] };
                v.f32 = x;
                CValue::with(tag::F32, v)
            }
            Value::F64(x) => CValue::with(tag::F64, CUnion { f64: x }),
            _ => return None,
        })
    }
}

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
}

/// A call's result for C: str and bytes in memory of this library's
/// (malloc), NUL-terminated, flagged OWNED.
pub(crate) fn owned(value: Value) -> CValue {
    if let Some(v) = CValue::scalar(&value) {
        return v;
    }
    let (tag, bytes) = match &value {
        Value::Str(s) => (tag::STR, s.as_bytes()),
        Value::Bytes(b) => (tag::BYTES, b.as_slice()),
        _ => return CValue::NONE,
    };
    // SAFETY: a fresh allocation of len + 1 bytes (never 0), filled whole below.
    let out = unsafe { malloc(bytes.len() + 1) } as *mut u8;
    if out.is_null() {
        std::alloc::handle_alloc_error(std::alloc::Layout::array::<u8>(bytes.len() + 1).expect("a result's size"));
    }
    // SAFETY: out has len + 1 writable bytes; bytes is another allocation.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len());
        *out.add(bytes.len()) = 0;
    }
    let mut v = CValue::with(tag, CUnion { str: CText { ptr: out as *const c_char, len: bytes.len() } });
    v.flags = OWNED;
    v
}

/// Free a result's memory (only a value flagged OWNED owns any) and make it
/// `FERRULE_HOST_NONE`. NULL is ignored; freeing twice is harmless.
///
/// # Safety
/// `value` is NULL or a writable value; if flagged OWNED, as this library made it.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_value_free(value: *mut CValue) {
    crate::error::quiet((), || {
        // SAFETY: the caller's promise.
        let Some(v) = (unsafe { value.as_mut() }) else { return };
        if v.flags & OWNED != 0 && matches!(v.tag, tag::STR | tag::BYTES) {
            // SAFETY: an OWNED str or bytes points to this library's malloc.
            unsafe { free(v.v.str.ptr as *mut c_void) };
        }
        *v = CValue::NONE;
    })
}

/// A host function the C caller passed: its pointer, its data, and the
/// first failure it reported (returned as the call's error, code and all).
pub(crate) struct HostCallback {
    call: Callback,
    user_data: *mut c_void,
    pub(crate) failure: Mutex<Option<Failure>>,
    what: String,
}

// SAFETY: the header tells the C caller that a host function (and its
// user_data) may be called from any thread the plugin calls it on.
unsafe impl Sync for HostCallback {}
// SAFETY: as above.
unsafe impl Send for HostCallback {}

impl HostCallback {
    /// Run the C function with the plugin's arguments; its result, or its
    /// failure (kept, to return as it is).
    pub(crate) fn invoke(&self, args: &[Value]) -> host::Result<Value> {
        let mut keep: Vec<Vec<u8>> = Vec::new(); // NUL-terminated copies of str arguments
        let mut slots = Vec::with_capacity(args.len());
        for a in args {
            slots.push(match a {
                Value::Str(s) => {
                    let mut copy = Vec::with_capacity(s.len() + 1);
                    copy.extend_from_slice(s.as_bytes());
                    copy.push(0);
                    let v = CValue::text(tag::STR, &copy, s.len());
                    keep.push(copy); // (the Vec's buffer stays put when it moves)
                    v
                }
                Value::Bytes(b) => CValue::text(tag::BYTES, if b.is_empty() { b"\0" } else { b }, b.len()),
                other => CValue::scalar(other).unwrap_or(CValue::NONE),
            });
        }
        let mut result = CValue::NONE;
        let mut error: *mut Failure = std::ptr::null_mut();
        // SAFETY: the C caller's function and data, with arguments borrowed for the call.
        let code = unsafe { (self.call)(self.user_data, slots.as_ptr(), slots.len(), &mut result, &mut error) };
        let reported = (!error.is_null()).then(|| {
            // SAFETY: an error the function made with ferrule_host_error_new: now this library's.
            *unsafe { Box::from_raw(error) }
        });
        // A result flagged OWNED (a nested call's, passed on) is this
        // library's memory: freed once read, whatever the code.
        let _free = FreeOwned(&mut result as *mut CValue);
        if code != OK {
            let mut failure = reported.unwrap_or_else(|| {
                Failure::new(code, format!("{} failed with code {code} and set no error: set *error with \
                                            ferrule_host_error_new(code, message) to say why", self.what))
            });
            if failure.code == OK {
                failure.code = code; // an error made with code 0 must not turn the call into a success
            }
            return Err(self.fail(failure));
        }
        // (an error set with a success code is dropped: the code decides)
        // SAFETY: the function wrote result for its tag, or left it NONE.
        unsafe { self.result(&result) }.map_err(|f| self.fail(f))
    }

}

/// Frees an OWNED value when dropped.
struct FreeOwned(*mut CValue);

impl Drop for FreeOwned {
    fn drop(&mut self) {
        // SAFETY: a live local value; OWNED only as this library made it.
        unsafe { ferrule_host_value_free(self.0) };
    }
}

impl HostCallback {
    /// The result the C function set, as the Rust host's value; its text is
    /// copied now (the memory stays the function's).
    ///
    /// # Safety
    /// `v`'s member for its tag is set; str and bytes point to `len` readable bytes.
    unsafe fn result(&self, v: &CValue) -> Result<Value, Failure> {
        // SAFETY: the caller's promise, per tag.
        unsafe {
            Ok(match v.tag {
                tag::NONE => Value::None,
                tag::BOOL => Value::Bool(v.v.b != 0),
                tag::I64 => Value::I64(v.v.i64),
                tag::U64 => Value::U64(v.v.u64),
                tag::F32 => Value::F32(v.v.f32),
                tag::F64 => Value::F64(v.v.f64),
                tag::STR | tag::BYTES => {
                    let bytes = borrowed(v.v.str, &format!("the result of {}", self.what))?.to_vec();
                    if v.tag == tag::BYTES {
                        Value::Bytes(bytes)
                    } else {
                        Value::Str(String::from_utf8(bytes).map_err(|e| {
                            Failure::invalid(format!(
                                "the result of {} is tagged FERRULE_HOST_STR but is not valid UTF-8 (at byte {}): \
                                 tag it FERRULE_HOST_BYTES, or return UTF-8 text",
                                self.what,
                                e.utf8_error().valid_up_to()
                            ))
                        })?)
                    }
                }
                other => {
                    return Err(Failure::invalid(format!(
                        "the result of {} has tag {other}: a host function returns a number, bool, str or bytes \
                         (or FERRULE_HOST_NONE)",
                        self.what
                    )))
                }
            })
        }
    }

    /// Keep the first failure, and give the Rust host an error of its kind
    /// and message (the call's error is then swapped back for it).
    fn fail(&self, failure: Failure) -> host::Error {
        let kind = kind_of(failure.code).unwrap_or(ErrorKind::PluginCall);
        let error = host::Error::new(kind, String::from_utf8_lossy(failure.text()));
        let mut first = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(failure);
        error
    }
}

/// The bytes `t` points to, borrowed.
///
/// # Safety
/// `t.ptr` is NULL (with `len` 0) or points to `len` readable bytes.
unsafe fn borrowed<'a>(t: CText, what: &str) -> Result<&'a [u8], Failure> {
    if t.ptr.is_null() {
        if t.len != 0 {
            return Err(Failure::invalid(format!("{what} has a NULL ptr and len {}: NULL is allowed only with len 0", t.len)));
        }
        return Ok(&[]);
    }
    if t.len > isize::MAX as usize {
        return Err(Failure::invalid(format!("{what} has len {}, more than any real text", t.len)));
    }
    // SAFETY: the caller's promise.
    Ok(unsafe { std::slice::from_raw_parts(t.ptr as *const u8, t.len) })
}

/// The host functions among a call's arguments, made before the arguments
/// that borrow them.
///
/// # Safety
/// A value tagged FERRULE_HOST_FN has its `v.fn` member set.
pub(crate) unsafe fn callbacks(args: &[CValue], function: &host::FunctionInfo) -> Result<Vec<Option<HostCallback>>, Failure> {
    let mut out = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        if a.tag != tag::FN {
            out.push(None);
            continue;
        }
        // SAFETY: a FN value's member is v.fn.
        let f = unsafe { a.v.func };
        let Some(call) = f.call else {
            return Err(Failure::invalid(format!("ferrule_host_call: args[{i}] is FERRULE_HOST_FN with a NULL function")));
        };
        let what = match function.signature.params.get(i) {
            Some(p) => format!("the host function passed as {}() argument '{}'", function.name, p.name),
            None => format!("the host function passed as {}() argument #{i}", function.name),
        };
        out.push(Some(HostCallback { call, user_data: f.user_data, failure: Mutex::new(None), what }));
    }
    Ok(out)
}

/// A C value as the Rust host's argument, borrowing what it points to.
///
/// # Safety
/// The member for the value's tag is set and points to what the header says
/// (text: `len` bytes; buffers: `len` elements, writable for MUTBUF), valid
/// for the call.
pub(crate) unsafe fn arg<'a>(v: &CValue, i: usize, host_fn: Option<&'a host::HostFn<'a>>) -> Result<Arg<'a>, Failure> {
    let at = format!("ferrule_host_call: args[{i}]");
    // SAFETY: the caller's promise, per tag.
    unsafe {
        Ok(match v.tag {
            tag::BOOL => Arg::Bool(v.v.b != 0),
            tag::I64 => Arg::Int(v.v.i64 as i128),
            tag::U64 => Arg::Int(v.v.u64 as i128),
            tag::F32 => Arg::Float(v.v.f32 as f64),
            tag::F64 => Arg::Float(v.v.f64),
            tag::STR => {
                let bytes = borrowed(v.v.str, &at)?;
                Arg::Str(std::str::from_utf8(bytes).map_err(|e| {
                    Failure::invalid(format!(
                        "{at} is tagged FERRULE_HOST_STR but is not valid UTF-8 (at byte {}): pass UTF-8 text, or \
                         FERRULE_HOST_BYTES for bytes",
                        e.valid_up_to()
                    ))
                })?)
            }
            tag::BYTES => Arg::Bytes(borrowed(v.v.str, &at)?),
            tag::BUF | tag::MUTBUF => buffer(v.v.buf, v.elem, v.tag == tag::MUTBUF, &at)?,
            tag::FN => Arg::HostFn(host_fn.expect("made by callbacks()")),
            tag::NONE => {
                return Err(Failure::invalid(format!("{at} is FERRULE_HOST_NONE: every argument needs a value")))
            }
            other => {
                return Err(Failure::invalid(format!(
                    "{at} has tag {other}, which is no ferrule_host_tag (FERRULE_HOST_BOOL .. FERRULE_HOST_FN)"
                )))
            }
        })
    }
}

/// A buffer argument as a slice of its element type.
///
/// # Safety
/// `b.ptr` points to `b.len` elements of `elem`, writable when `writable`.
unsafe fn buffer<'a>(b: CBuf, elem: u16, writable: bool, at: &str) -> Result<Arg<'a>, Failure> {
    let Some(s) = scalar_of(elem as u32).filter(|s| s.is_number()) else {
        return Err(Failure::invalid(format!(
            "{at} is a buffer with elem {elem}, which is no number type: set elem to one of FERRULE_HOST_TYPE_I8 .. \
             FERRULE_HOST_TYPE_F64"
        )));
    };
    if b.ptr.is_null() && b.len != 0 {
        return Err(Failure::invalid(format!("{at} is a buffer with a NULL ptr and len {}: NULL is allowed only with len 0", b.len)));
    }
    if b.len.checked_mul(s.size()).is_none_or(|n| n > isize::MAX as usize) {
        return Err(Failure::invalid(format!("{at} is a buffer of {} {} elements, more than memory holds", b.len, s.name())));
    }
    if (b.ptr as usize) % s.size() != 0 {
        return Err(Failure::invalid(format!(
            "{at} is a buffer of {} at {:#x}, not aligned to {} bytes: pass an array of that type",
            s.name(),
            b.ptr as usize,
            s.size()
        )));
    }
    macro_rules! slice {
        ($t:ty) => {{
            let ptr = if b.ptr.is_null() { std::ptr::NonNull::<$t>::dangling().as_ptr() } else { b.ptr as *mut $t };
            // The slice only hands its address to the Rust host, which passes it to the plugin: no Rust code
            // reads or writes through it, so the C caller may pass the same memory twice.
            if writable {
                // SAFETY: ptr is aligned and points to len writable elements (the caller's promise), or is
                // dangling with len 0.
                let data = unsafe { std::slice::from_raw_parts_mut(ptr, b.len) };
                Arg::from(data)
            } else {
                // SAFETY: as above, read-only.
                let data = unsafe { std::slice::from_raw_parts(ptr as *const $t, b.len) };
                Arg::from(data)
            }
        }};
    }
    Ok(match s {
        Scalar::I8 => slice!(i8),
        Scalar::I16 => slice!(i16),
        Scalar::I32 => slice!(i32),
        Scalar::I64 => slice!(i64),
        Scalar::U8 => slice!(u8),
        Scalar::U16 => slice!(u16),
        Scalar::U32 => slice!(u32),
        Scalar::U64 => slice!(u64),
        Scalar::F32 => slice!(f32),
        Scalar::F64 => slice!(f64),
        _ => unreachable!("a number type"),
    })
}

/// Swap a call's error for the C host function failure it came from, when
/// it did: the caller gets that function's own code and message.
pub(crate) fn host_failure(error: host::Error, callbacks: &[Option<HostCallback>]) -> Failure {
    for cb in callbacks.iter().flatten() {
        let kept = cb.failure.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(failure) = kept {
            if failure.text() == error.message().as_bytes() {
                return failure;
            }
        }
    }
    Failure::from(error)
}
