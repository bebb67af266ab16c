//! A Rust library with one C function and no ferrule entry point.

use core::ffi::c_char;

/// Returns a static, NUL-terminated greeting.
#[unsafe(no_mangle)]
pub extern "C" fn greet() -> *const c_char {
    c"Hello from Rust!".as_ptr()
}
