//! The C API driven from Rust, as a C host would, on the repository's C
//! plugins built here with cc: codes, messages, ownership, host functions.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::error::*;
use crate::plugin::*;
use crate::value::*;

/// `source` (relative to the repository) built with cc into OUT_DIR, a
/// directory only its owner may write (the permission check refuses /tmp).
fn build(source: &str, name: &str) -> CString {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(env!("OUT_DIR")).join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = std::process::Command::new(cc)
        .args(["-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-std=c99"])
        .arg(format!("-I{}", root.join("sdk/c/include").display()))
        .arg(root.join(source))
        .arg("-lm")
        .arg("-o")
        .arg(&out)
        .status()
        .expect("a C compiler (cc) to build the test plugins");
    assert!(status.success(), "cc failed to build {source}");
    CString::new(out.to_str().unwrap()).unwrap()
}

fn calc_path() -> &'static CStr {
    static BUILT: OnceLock<CString> = OnceLock::new();
    BUILT.get_or_init(|| build("examples/c_plugin/calc.c", "libcalc.so"))
}

fn cdata_path() -> &'static CStr {
    static BUILT: OnceLock<CString> = OnceLock::new();
    BUILT.get_or_init(|| build("tests/plugins/c/cdata.c", "libcdata.so"))
}

/// An open plugin, freed when dropped.
struct Open(*mut Handle);

impl Drop for Open {
    fn drop(&mut self) {
        // SAFETY: a handle ferrule_host_open made, freed once.
        unsafe { ferrule_host_plugin_free(self.0) }
    }
}

fn open(path: &CStr) -> Open {
    let mut plugin = std::ptr::null_mut();
    // SAFETY: a C string path, no options, places to write.
    let code = unsafe { ferrule_host_open(path.as_ptr(), std::ptr::null(), &mut plugin, std::ptr::null_mut()) };
    assert_eq!(code, OK);
    Open(plugin)
}

/// A call's outcome: the result, or the code and message.
fn call(p: &Open, name: &str, args: &[CValue]) -> Result<CValue, (i32, String)> {
    let name = CString::new(name).unwrap();
    let mut result = CValue::NONE;
    let mut error: *mut Failure = std::ptr::null_mut();
    // SAFETY: a live handle, args.len() values, places to write.
    let code = unsafe {
        ferrule_host_call_by_name(p.0, name.as_ptr(), args.as_ptr(), args.len(), &mut result, &mut error)
    };
    if code == OK {
        assert!(error.is_null(), "a success leaves *error alone");
        return Ok(result);
    }
    // SAFETY: the error the call made, read then freed once.
    unsafe {
        assert_eq!(ferrule_host_error_code(error), code);
        let mut len = 0;
        let text = ferrule_host_error_message(error, &mut len);
        let message = std::str::from_utf8(std::slice::from_raw_parts(text as *const u8, len)).unwrap().to_string();
        assert_eq!(CStr::from_ptr(text).to_bytes().len(), len);
        ferrule_host_error_free(error);
        Err((code, message))
    }
}

fn value(tag: u32, v: CUnion) -> CValue {
    CValue { tag, v, ..CValue::NONE }
}

fn i64_value(n: i64) -> CValue {
    value(tag::I64, CUnion { i64: n })
}

fn read_i64(v: &CValue) -> i64 {
    assert_eq!(v.tag, tag::I64);
    // SAFETY: an I64 value's member.
    unsafe { v.v.i64 }
}

fn text_value(tag: u32, bytes: &[u8]) -> CValue {
    value(tag, CUnion { str: CText { ptr: bytes.as_ptr() as *const c_char, len: bytes.len() } })
}

fn read_text(v: &CValue) -> Vec<u8> {
    assert!(matches!(v.tag, tag::STR | tag::BYTES));
    // SAFETY: a str or bytes value's member, pointing to len bytes.
    unsafe { std::slice::from_raw_parts(v.v.str.ptr as *const u8, v.v.str.len).to_vec() }
}

fn fn_value(call: Callback, user_data: *mut c_void) -> CValue {
    value(tag::FN, CUnion { func: CFn { call: Some(call), user_data } })
}

#[test]
fn numbers_text_and_the_rust_hosts_errors() {
    let calc = open(calc_path());
    let product = call(&calc, "mul", &[i64_value(6), i64_value(7)]).unwrap();
    assert_eq!(read_i64(&product), 42);
    let mut reversed = call(&calc, "reverse", &[text_value(tag::STR, b"stressed")]).unwrap();
    assert_eq!(read_text(&reversed), b"desserts");
    // SAFETY: an owned result, freed once (twice is harmless).
    unsafe {
        ferrule_host_value_free(&mut reversed);
        ferrule_host_value_free(&mut reversed);
    }
    assert_eq!((reversed.tag, reversed.flags), (tag::NONE, 0));
    assert_eq!(
        call(&calc, "mul", &[i64_value(6), text_value(tag::STR, b"x")]).unwrap_err(),
        (18, "mul() argument 'b' must be int (i64), got str".to_string())
    );
    assert_eq!(
        call(&calc, "checked_div", &[i64_value(1), i64_value(0)]).unwrap_err(),
        (15, "plugin 'org.ferrule.examples.calc' function 'checked_div' failed: checked_div: division by zero".into())
    );
    assert_eq!(
        call(&calc, "nope", &[]).unwrap_err(),
        (20, "plugin 'org.ferrule.examples.calc' has no function 'nope'".to_string())
    );
    let (code, message) = call(&calc, "reverse", &[text_value(tag::STR, b"a\xffb")]).unwrap_err();
    assert_eq!(code, E_INVALID_ARGUMENT);
    assert!(message.contains("args[0] is tagged FERRULE_HOST_STR but is not valid UTF-8 (at byte 1)"), "{message}");
}

#[test]
fn a_value_the_caller_made_is_only_reset() {
    let data = b"mine".to_vec();
    let mut v = text_value(tag::STR, &data);
    // SAFETY: a writable value, not OWNED: nothing is freed.
    unsafe { ferrule_host_value_free(&mut v) };
    assert_eq!((v.tag, v.flags), (tag::NONE, 0));
    assert_eq!(data, b"mine");
}

#[test]
fn structs_too_short_and_unknown_flags_are_refused() {
    let calc = open(calc_path());
    let mut info = [0u8; 128];
    info[..4].copy_from_slice(&8u32.to_ne_bytes());
    let mut error = std::ptr::null_mut();
    // SAFETY: a live handle and 128 writable bytes that say they are 8.
    let code = unsafe { ferrule_host_get_plugin_info(calc.0, info.as_mut_ptr() as *mut _, &mut error) };
    assert_eq!(code, E_INVALID_ARGUMENT);
    assert!(info[4..].iter().all(|&b| b == 0), "nothing written past what was refused");
    // SAFETY: the error just made.
    unsafe { ferrule_host_error_free(error) };
    // A longer struct (a newer header's) gets this version's fields; its size stays.
    info[..4].copy_from_slice(&128u32.to_ne_bytes());
    // SAFETY: as above, 128 bytes.
    assert_eq!(unsafe { ferrule_host_get_plugin_info(calc.0, info.as_mut_ptr() as *mut _, std::ptr::null_mut()) }, OK);
    assert_eq!(u32::from_ne_bytes(info[..4].try_into().unwrap()), 128);
    assert_eq!(u16::from_ne_bytes(info[4..6].try_into().unwrap()), 1); // abi_major
    assert!(info[72..].iter().all(|&b| b == 0));

    let mut options = [0u8; 16];
    options[..4].copy_from_slice(&16u32.to_ne_bytes());
    options[4..8].copy_from_slice(&6u32.to_ne_bytes());
    let mut plugin = std::ptr::null_mut();
    let mut error = std::ptr::null_mut();
    // SAFETY: a C string, a 16-byte options struct, places to write.
    let code = unsafe { ferrule_host_open(calc_path().as_ptr(), options.as_ptr() as *const _, &mut plugin, &mut error) };
    assert_eq!((code, plugin.is_null()), (E_INVALID_ARGUMENT, true));
    // SAFETY: the error just made.
    let message = unsafe { CStr::from_ptr(ferrule_host_error_message(error, std::ptr::null_mut())) }.to_str().unwrap().to_string();
    assert!(message.contains("unknown bits 0x6"), "{message}");
    // SAFETY: freed once.
    unsafe { ferrule_host_error_free(error) };
}

unsafe extern "C" fn double_it(
    calls: *mut c_void,
    args: *const CValue,
    count: usize,
    result: *mut CValue,
    _error: *mut *mut Failure,
) -> i32 {
    // SAFETY: user_data is the test's counter; args holds count values; result is writable.
    unsafe {
        *(calls as *mut usize) += 1;
        assert_eq!(count, 1);
        *result = i64_value(2 * read_i64(&*args));
    }
    OK
}

unsafe extern "C" fn refuse(
    _: *mut c_void,
    _: *const CValue,
    _: usize,
    _: *mut CValue,
    error: *mut *mut Failure,
) -> i32 {
    // SAFETY: error is writable; the error is the library's once returned.
    unsafe { *error = ferrule_host_error_new(E_INVALID_ARGUMENT, c"the host says no".as_ptr()) };
    E_INVALID_ARGUMENT
}

unsafe extern "C" fn refuse_with_ok(
    _: *mut c_void,
    _: *const CValue,
    _: usize,
    _: *mut CValue,
    error: *mut *mut Failure,
) -> i32 {
    // SAFETY: error is writable; the error is the library's once returned.
    unsafe { *error = ferrule_host_error_new(OK, c"the host says no".as_ptr()) };
    19 // FERRULE_HOST_E_VALUE
}

unsafe extern "C" fn exclaim(
    _: *mut c_void,
    args: *const CValue,
    _: usize,
    result: *mut CValue,
    _: *mut *mut Failure,
) -> i32 {
    static OUT: &[u8] = b"hey!";
    // SAFETY: one str argument, NUL-terminated too; result is writable.
    unsafe {
        let text = (*args).v.str;
        assert_eq!(((*args).tag, text.len), (tag::STR, 3));
        assert_eq!(CStr::from_ptr(text.ptr).to_bytes(), b"hey");
        *result = text_value(tag::STR, OUT);
    }
    OK
}

#[test]
fn host_functions_are_c_functions_and_their_errors_are_the_calls() {
    let cdata = open(cdata_path());
    let mut calls = 0usize;
    let got = call(&cdata, "apply", &[fn_value(double_it, &mut calls as *mut usize as *mut c_void), i64_value(21)]);
    assert_eq!(read_i64(&got.unwrap()), 42);
    assert_eq!(calls, 1);
    // A code with no Rust host kind comes back as it was, message and all.
    assert_eq!(
        call(&cdata, "apply", &[fn_value(refuse, std::ptr::null_mut()), i64_value(1)]).unwrap_err(),
        (E_INVALID_ARGUMENT, "the host says no".to_string())
    );
    // An error made with code 0 still fails the call, with the code the function returned.
    assert_eq!(
        call(&cdata, "apply", &[fn_value(refuse_with_ok, std::ptr::null_mut()), i64_value(1)]).unwrap_err(),
        (19, "the host says no".to_string())
    );
    let mut shouted = call(&cdata, "shout", &[fn_value(exclaim, std::ptr::null_mut()), text_value(tag::STR, b"hey")]).unwrap();
    assert_eq!(read_text(&shouted), b"HEY!");
    // SAFETY: an owned result, freed once.
    unsafe { ferrule_host_value_free(&mut shouted) };
}

#[test]
fn the_sizes_are_the_headers() {
    for (name, size) in SIZES {
        let c = CString::new(name).unwrap();
        // SAFETY: a C string.
        assert_eq!(unsafe { crate::ferrule_host_struct_size(c.as_ptr()) }, size);
    }
    // SAFETY: a C string.
    assert_eq!(unsafe { crate::ferrule_host_struct_size(c"nothing".as_ptr()) }, 0);
    // Every one of them in include/ferrule_host.h, by name.
    let header = include_str!("../include/ferrule_host.h");
    for (name, _) in SIZES {
        assert!(header.contains(&format!("}} {name};")) || header.contains(&format!("struct {name} {{")), "{name}");
    }
}

/// A handle shared with other threads, as the header allows.
#[derive(Clone, Copy)]
struct Shared(*mut Handle);
// SAFETY: the C API's handles may be used from any thread at once.
unsafe impl Send for Shared {}

#[test]
fn one_handle_serves_many_threads() {
    let calc = open(calc_path());
    let shared = Shared(calc.0);
    let mul = c"mul";
    let mut index = usize::MAX;
    // SAFETY: a live handle, a C string, a place to write.
    assert_eq!(unsafe { ferrule_host_find_function(calc.0, mul.as_ptr(), &mut index, std::ptr::null_mut()) }, OK);
    let threads: Vec<_> = (0..8i64)
        .map(|t| {
            std::thread::spawn(move || {
                let shared = shared;
                for i in 0..200i64 {
                    let args = [i64_value(t), i64_value(i)];
                    let mut out = CValue::NONE;
                    // SAFETY: the handle outlives the threads (joined below); two values; places to write.
                    let code = unsafe { ferrule_host_call(shared.0, index, args.as_ptr(), 2, &mut out, std::ptr::null_mut()) };
                    assert_eq!((code, read_i64(&out)), (OK, t * i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

static LOGGED: std::sync::Mutex<Vec<(i32, String, String)>> = std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn collect(_: *mut c_void, level: i32, id: *const c_char, _: *const c_char, text: *const c_char, len: usize) {
    // SAFETY: the sink's arguments, borrowed for the call: id is NUL-terminated, text holds len bytes.
    let (id, text) = unsafe {
        (CStr::from_ptr(id).to_str().unwrap().to_string(), String::from_utf8_lossy(std::slice::from_raw_parts(text as *const u8, len)).into_owned())
    };
    LOGGED.lock().unwrap().push((level, id, text));
}

#[test]
fn plugin_logs_reach_the_sink_until_it_is_unset() {
    let mut error = std::ptr::null_mut();
    // SAFETY: a sink callable from any thread, no data, a place for the error.
    assert_eq!(unsafe { crate::log_sink::ferrule_host_set_log_sink(Some(collect), std::ptr::null_mut(), 5, &mut error) }, E_INVALID_ARGUMENT);
    // SAFETY: the error just made.
    unsafe { ferrule_host_error_free(error) };
    // SAFETY: as above.
    assert_eq!(unsafe { crate::log_sink::ferrule_host_set_log_sink(Some(collect), std::ptr::null_mut(), 2, std::ptr::null_mut()) }, OK);
    drop(open(calc_path())); // calc logs at init and shutdown, at FERRULE_LOG_INFO
    // SAFETY: no sink.
    assert_eq!(unsafe { crate::log_sink::ferrule_host_set_log_sink(None, std::ptr::null_mut(), 2, std::ptr::null_mut()) }, OK);
    let logged = std::mem::take(&mut *LOGGED.lock().unwrap());
    let calc: Vec<_> = logged.iter().filter(|l| l.1 == "org.ferrule.examples.calc").collect();
    assert!(calc.iter().any(|l| l.0 == 2 && l.2.starts_with("calc ready")), "{logged:?}");
    assert!(calc.iter().any(|l| l.0 == 2 && l.2 == "calc shutting down"), "{logged:?}");
    drop(open(calc_path()));
    assert!(LOGGED.lock().unwrap().is_empty(), "no sink, no records");
}

#[test]
fn every_kind_of_the_rust_host_has_its_own_code() {
    let codes: Vec<i32> = host::ErrorKind::ALL.iter().map(|&k| code_of(k)).collect();
    assert!(!codes.contains(&E_UNKNOWN), "a kind without a code: {:?}",
            host::ErrorKind::ALL.iter().zip(&codes).find(|(_, c)| **c == E_UNKNOWN));
    let mut unique = codes.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), codes.len(), "two kinds share a code");
    for &k in host::ErrorKind::ALL {
        assert_eq!(kind_of(code_of(k)), Some(k));
    }
}

#[test]
fn a_result_slot_may_be_an_argument() {
    let path = build("examples/c_plugin/calc.c", "libcalc_alias.so");
    let mut plugin: *mut Handle = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path, writable outputs.
    assert_eq!(unsafe { ferrule_host_open(path.as_ptr(), std::ptr::null(), &mut plugin, std::ptr::null_mut()) }, OK);
    let name = CString::new("mul").unwrap();
    let mut args = [CValue::with(tag::I64, CUnion { i64: 6 }), CValue::with(tag::I64, CUnion { i64: 7 })];
    let at: *mut CValue = &mut args[0];
    // SAFETY: two values, and the first of them as the result slot (the header allows it).
    let code = unsafe { ferrule_host_call_by_name(plugin, name.as_ptr(), args.as_ptr(), 2, at, std::ptr::null_mut()) };
    assert_eq!(code, OK);
    // SAFETY: the call wrote an I64 result into it.
    assert_eq!((args[0].tag, unsafe { args[0].v.i64 }), (tag::I64, 42));
    // SAFETY: a handle from open, freed once.
    unsafe { ferrule_host_plugin_free(plugin) };
}
