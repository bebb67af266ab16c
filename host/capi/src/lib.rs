//! The C API of `ferrule-host`: a C or C++
//! program hosts ferrule plugins through `libferrule_host.so` (or `.a`) and
//! `include/ferrule_host.h`, with the Rust host's checks, codes and messages.
//!
//! Every entry point is `extern "C"`, named `ferrule_host_*`, and catches
//! panics at the boundary. The header documents the contract (ownership,
//! threads, errors); this crate's items carry the Rust side of it.

#![deny(clippy::undocumented_unsafe_blocks, missing_docs)]

use std::ffi::{c_char, CStr};

pub mod error;
pub mod log_sink;
pub mod plugin;
pub mod value;

/// This library's version, `"0.1.0"`: static, NUL-terminated.
#[no_mangle]
pub extern "C" fn ferrule_host_version() -> *const c_char {
    const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the version has no NUL"),
    };
    VERSION.as_ptr()
}

/// `sizeof` of the header's struct called `type_name` as this library was
/// built with it (0 for a name it does not know): a C host checks that its
/// header and the library agree.
///
/// # Safety
/// `type_name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_struct_size(type_name: *const c_char) -> usize {
    error::quiet(0, || {
        if type_name.is_null() {
            return 0;
        }
        // SAFETY: the caller's promise.
        let name = unsafe { CStr::from_ptr(type_name) }.to_bytes();
        plugin::SIZES.iter().find(|s| s.0.as_bytes() == name).map_or(0, |s| s.1)
    })
}

#[cfg(test)]
mod tests;
