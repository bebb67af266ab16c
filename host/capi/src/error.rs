//! Error codes and error objects: `ferrule_host_code`, `ferrule_host_error`.
//!
//! Every fallible entry point returns a code and, when its caller passes a
//! place for one, a new error object with the Rust host's message. A panic
//! is caught at the boundary (it would be a bug here) and becomes
//! `FERRULE_HOST_E_INTERNAL`.

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use host::ErrorKind;

/// `FERRULE_HOST_OK`.
pub const OK: i32 = 0;
/// `FERRULE_HOST_E_INVALID_ARGUMENT`: misuse of the C API.
pub const E_INVALID_ARGUMENT: i32 = 100;
/// `FERRULE_HOST_E_INTERNAL`: a panic caught at the C boundary.
pub const E_INTERNAL: i32 = 101;
/// `FERRULE_HOST_E_UNKNOWN`: an `ErrorKind` newer than this library.
pub const E_UNKNOWN: i32 = 102;

/// Every code: its number, its C name, and the Rust host's kind (none for
/// the C API's own codes). The header's enum is this table.
pub(crate) const CODES: [(i32, &str, Option<ErrorKind>); 26] = [
    (OK, "FERRULE_HOST_OK", None),
    (1, "FERRULE_HOST_E_LIBRARY_NOT_FOUND", Some(ErrorKind::LibraryNotFound)),
    (2, "FERRULE_HOST_E_NOT_A_LIBRARY", Some(ErrorKind::NotALibrary)),
    (3, "FERRULE_HOST_E_WRONG_ARCHITECTURE", Some(ErrorKind::WrongArchitecture)),
    (4, "FERRULE_HOST_E_MISSING_DEPENDENCY", Some(ErrorKind::MissingDependency)),
    (5, "FERRULE_HOST_E_LIBRARY", Some(ErrorKind::Library)),
    (6, "FERRULE_HOST_E_UNSAFE_FILE", Some(ErrorKind::UnsafeFile)),
    (7, "FERRULE_HOST_E_NO_ENTRY_POINT", Some(ErrorKind::NoEntryPoint)),
    (8, "FERRULE_HOST_E_BAD_MAGIC", Some(ErrorKind::BadMagic)),
    (9, "FERRULE_HOST_E_ABI_VERSION", Some(ErrorKind::AbiVersion)),
    (10, "FERRULE_HOST_E_DESCRIPTOR_TOO_SMALL", Some(ErrorKind::DescriptorTooSmall)),
    (11, "FERRULE_HOST_E_METADATA", Some(ErrorKind::Metadata)),
    (12, "FERRULE_HOST_E_SIGNATURE", Some(ErrorKind::Signature)),
    (13, "FERRULE_HOST_E_DESCRIPTOR", Some(ErrorKind::Descriptor)),
    (14, "FERRULE_HOST_E_PLUGIN_INIT", Some(ErrorKind::PluginInit)),
    (15, "FERRULE_HOST_E_PLUGIN_CALL", Some(ErrorKind::PluginCall)),
    (16, "FERRULE_HOST_E_PLUGIN_PANIC", Some(ErrorKind::PluginPanic)),
    (17, "FERRULE_HOST_E_PLUGIN_CLOSED", Some(ErrorKind::PluginClosed)),
    (18, "FERRULE_HOST_E_TYPE", Some(ErrorKind::Type)),
    (19, "FERRULE_HOST_E_VALUE", Some(ErrorKind::Value)),
    (20, "FERRULE_HOST_E_NO_SUCH_FUNCTION", Some(ErrorKind::NoSuchFunction)),
    (21, "FERRULE_HOST_E_INTERFACE_MISMATCH", Some(ErrorKind::InterfaceMismatch)),
    (22, "FERRULE_HOST_E_NO_IMPLEMENTATION", Some(ErrorKind::NoImplementation)),
    (E_INVALID_ARGUMENT, "FERRULE_HOST_E_INVALID_ARGUMENT", None),
    (E_INTERNAL, "FERRULE_HOST_E_INTERNAL", None),
    (E_UNKNOWN, "FERRULE_HOST_E_UNKNOWN", None),
];

/// The code of a Rust host error kind.
pub(crate) fn code_of(kind: ErrorKind) -> i32 {
    CODES.iter().find(|c| c.2 == Some(kind)).map(|c| c.0).unwrap_or(E_UNKNOWN)
}

/// The Rust host's kind for a code, if it has one.
pub(crate) fn kind_of(code: i32) -> Option<ErrorKind> {
    CODES.iter().find(|c| c.0 == code).and_then(|c| c.2)
}

/// `ferrule_host_error`: a code, its message and the plugin's own message,
/// each kept NUL-terminated for C.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub(crate) code: i32,
    message: Vec<u8>,
    plugin_message: Option<Vec<u8>>,
}

fn terminated(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    bytes
}

impl Failure {
    /// A failure of this code and message.
    pub(crate) fn new(code: i32, message: impl AsRef<str>) -> Failure {
        Failure { code, message: terminated(message.as_ref()), plugin_message: None }
    }

    /// Misuse of the C API, named by the entry point it happened in.
    pub(crate) fn invalid(message: impl AsRef<str>) -> Failure {
        Failure::new(E_INVALID_ARGUMENT, message)
    }

    /// The message, without its NUL.
    pub(crate) fn text(&self) -> &[u8] {
        &self.message[..self.message.len() - 1]
    }

    fn from_panic(payload: &(dyn std::any::Any + Send)) -> Failure {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        Failure::new(
            E_INTERNAL,
            format!("ferrule-host-capi caught a panic at the C boundary ({what}): this is a bug in the library; please report it"),
        )
    }
}

impl From<host::Error> for Failure {
    fn from(e: host::Error) -> Failure {
        Failure {
            code: code_of(e.kind()),
            message: terminated(e.message()),
            plugin_message: e.plugin_message().map(terminated),
        }
    }
}

/// Give `failure` to the caller through `error` (when not NULL); its code.
///
/// # Safety
/// `error` is NULL or writable.
unsafe fn deliver(error: *mut *mut Failure, failure: Failure) -> i32 {
    let code = failure.code;
    if !error.is_null() {
        // SAFETY: the caller's promise; the object is the caller's to free.
        unsafe { *error = Box::into_raw(Box::new(failure)) };
    }
    code
}

/// Run the body of a fallible entry point: its failure (or a panic) as a
/// code and an error object.
///
/// # Safety
/// `error` is NULL or writable.
pub(crate) unsafe fn guard(error: *mut *mut Failure, body: impl FnOnce() -> Result<(), Failure>) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(Failure::from_panic(&*payload)));
    match outcome {
        Ok(()) => OK,
        // SAFETY: forwarded from the caller.
        Err(failure) => unsafe { deliver(error, failure) },
    }
}

/// Run the body of an entry point that cannot fail: `fallback` if it panics.
pub(crate) fn quiet<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// A C string argument that must not be NULL, as text.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string.
pub(crate) unsafe fn c_text<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL, expected a NUL-terminated UTF-8 string")));
    }
    // SAFETY: the caller's promise.
    let bytes = unsafe { std::ffi::CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::invalid(format!(
            "{what} is not valid UTF-8 (at byte {}): pass UTF-8 text",
            e.valid_up_to()
        ))
    })
}

/// A new error of `code` with `message` (NULL: none), for a host function
/// to fail with. Freed by `ferrule_host_error_free`, or by this library when
/// a host function hands it back.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_error_new(code: i32, message: *const c_char) -> *mut Failure {
    quiet(std::ptr::null_mut(), || {
        let text = if message.is_null() {
            String::new()
        } else {
            // SAFETY: the caller's promise.
            String::from_utf8_lossy(unsafe { std::ffi::CStr::from_ptr(message) }.to_bytes()).into_owned()
        };
        Box::into_raw(Box::new(Failure::new(code, text)))
    })
}

/// The error's code (`FERRULE_HOST_E_INVALID_ARGUMENT` for NULL).
///
/// # Safety
/// `error` is NULL or an error of this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_error_code(error: *const Failure) -> i32 {
    // SAFETY: the caller's promise.
    quiet(E_INTERNAL, || unsafe { error.as_ref() }.map(|e| e.code).unwrap_or(E_INVALID_ARGUMENT))
}

/// The error's message, NUL-terminated, owned by the error; its length
/// (without the NUL) in `*len` when `len` is not NULL. `""` for NULL.
///
/// # Safety
/// `error` is NULL or an error of this library, not yet freed; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_error_message(error: *const Failure, len: *mut usize) -> *const c_char {
    quiet(std::ptr::null(), || {
        // SAFETY: the caller's promise.
        let bytes: &[u8] = unsafe { error.as_ref() }.map(|e| e.message.as_slice()).unwrap_or(b"\0");
        if !len.is_null() {
            // SAFETY: the caller's promise.
            unsafe { *len = bytes.len() - 1 };
        }
        bytes.as_ptr() as *const c_char
    })
}

/// The plugin's own failure message (what it passed to set_error), for a
/// failed init or call; NULL for other errors. Length in `*len` as above.
///
/// # Safety
/// As for `ferrule_host_error_message`.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_error_plugin_message(error: *const Failure, len: *mut usize) -> *const c_char {
    quiet(std::ptr::null(), || {
        // SAFETY: the caller's promise.
        let Some(bytes) = unsafe { error.as_ref() }.and_then(|e| e.plugin_message.as_deref()) else {
            return std::ptr::null();
        };
        if !len.is_null() {
            // SAFETY: the caller's promise.
            unsafe { *len = bytes.len() - 1 };
        }
        bytes.as_ptr() as *const c_char
    })
}

/// Free an error. NULL is ignored.
///
/// # Safety
/// `error` is NULL or an error of this library, freed once.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_error_free(error: *mut Failure) {
    quiet((), || {
        if !error.is_null() {
            // SAFETY: made by Box::into_raw here, and freed once (the caller's promise).
            drop(unsafe { Box::from_raw(error) });
        }
    })
}

/// The C name of a code (`"FERRULE_HOST_E_BAD_MAGIC"`), static; NULL for a
/// number that is no code.
#[no_mangle]
pub extern "C" fn ferrule_host_code_name(code: i32) -> *const c_char {
    quiet(std::ptr::null(), || match CODES.iter().position(|c| c.0 == code) {
        Some(i) => CODE_NAMES[i].as_ptr(),
        None => std::ptr::null(),
    })
}

/// CODES' names, NUL-terminated (same order).
const CODE_NAMES: [&std::ffi::CStr; 26] = [
    c"FERRULE_HOST_OK",
    c"FERRULE_HOST_E_LIBRARY_NOT_FOUND",
    c"FERRULE_HOST_E_NOT_A_LIBRARY",
    c"FERRULE_HOST_E_WRONG_ARCHITECTURE",
    c"FERRULE_HOST_E_MISSING_DEPENDENCY",
    c"FERRULE_HOST_E_LIBRARY",
    c"FERRULE_HOST_E_UNSAFE_FILE",
    c"FERRULE_HOST_E_NO_ENTRY_POINT",
    c"FERRULE_HOST_E_BAD_MAGIC",
    c"FERRULE_HOST_E_ABI_VERSION",
    c"FERRULE_HOST_E_DESCRIPTOR_TOO_SMALL",
    c"FERRULE_HOST_E_METADATA",
    c"FERRULE_HOST_E_SIGNATURE",
    c"FERRULE_HOST_E_DESCRIPTOR",
    c"FERRULE_HOST_E_PLUGIN_INIT",
    c"FERRULE_HOST_E_PLUGIN_CALL",
    c"FERRULE_HOST_E_PLUGIN_PANIC",
    c"FERRULE_HOST_E_PLUGIN_CLOSED",
    c"FERRULE_HOST_E_TYPE",
    c"FERRULE_HOST_E_VALUE",
    c"FERRULE_HOST_E_NO_SUCH_FUNCTION",
    c"FERRULE_HOST_E_INTERFACE_MISMATCH",
    c"FERRULE_HOST_E_NO_IMPLEMENTATION",
    c"FERRULE_HOST_E_INVALID_ARGUMENT",
    c"FERRULE_HOST_E_INTERNAL",
    c"FERRULE_HOST_E_UNKNOWN",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_table() {
        for (i, (code, name, _)) in CODES.iter().enumerate() {
            assert_eq!(CODE_NAMES[i].to_str().unwrap(), *name);
            // SAFETY: a static C string, or NULL.
            let got = unsafe { std::ffi::CStr::from_ptr(ferrule_host_code_name(*code)) };
            assert_eq!(got.to_str().unwrap(), *name);
        }
        assert!(ferrule_host_code_name(55).is_null());
    }

    #[test]
    fn every_kind_has_its_own_code_and_back() {
        let kinds: Vec<ErrorKind> = CODES.iter().filter_map(|c| c.2).collect();
        assert_eq!(kinds.len(), 22);
        for kind in kinds {
            let code = code_of(kind);
            assert!((1..=22).contains(&code), "{kind:?}");
            assert_eq!(kind_of(code), Some(kind));
        }
        let mut names: Vec<&str> = CODES.iter().filter_map(|c| c.2).map(|k| k.python_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 22); // one-to-one with the Python host's classes
    }

    #[test]
    fn a_panic_is_a_code_and_a_message() {
        let mut error: *mut Failure = std::ptr::null_mut();
        // SAFETY: error is writable.
        let code = unsafe { guard(&mut error, || panic!("boom")) };
        assert_eq!(code, E_INTERNAL);
        // SAFETY: the error guard made.
        let failure = unsafe { Box::from_raw(error) };
        assert!(std::str::from_utf8(failure.text()).unwrap().contains("(boom)"));
    }
}
