//! `ferrule_host_plugin`: open, inspect, call, close and free a plugin.

use std::ffi::{c_char, CString};
use std::os::unix::ffi::OsStrExt;

use host::{LoadOptions, Plugin};

use crate::error::{c_text, guard, quiet, Failure};
use crate::value::{arg, callbacks, host_failure, owned, param_tag, tag_of, type_code, CValue, HostCallback};

/// `FERRULE_HOST_OPEN_LAX_PERMISSIONS`: load a file that others than its
/// owner could write (`LoadOptions::strict_permissions(false)`).
pub const OPEN_LAX_PERMISSIONS: u32 = 1;

/// `ferrule_host_open_options`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpenOptions {
    struct_size: u32,
    flags: u32,
    config: *const c_char,
}

/// `ferrule_host_plugin_info`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginInfo {
    struct_size: u32,
    abi_major: u16,
    abi_minor: u16,
    id: *const c_char,
    name: *const c_char,
    version: *const c_char,
    description: *const c_char,
    license: *const c_char,
    path: *const c_char,
    function_count: usize,
    offer_count: usize,
}

/// `ferrule_host_function_info`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FunctionInfo {
    struct_size: u32,
    flags: u32,
    name: *const c_char,
    signature: *const c_char,
    doc: *const c_char,
    param_count: usize,
    result_tag: u32,
    result_type: u32,
}

/// `ferrule_host_param_info`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ParamInfo {
    struct_size: u32,
    tag: u32,
    name: *const c_char,
    type_text: *const c_char,
    scalar: u32,
    reserved: u32,
}

/// `ferrule_host_offer_info`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OfferInfo {
    struct_size: u32,
    flags: u32,
    id: *const c_char,
    name: *const c_char,
    doc: *const c_char,
    layout: *const c_char,
    fingerprint: u64,
    revision: u32,
    method_count: u32,
}

/// The sizes of the structs as this library has them (the header's sizeof
/// must agree): ferrule_host_struct_size answers from it.
pub(crate) const SIZES: [(&str, usize); 6] = [
    ("ferrule_host_open_options", std::mem::size_of::<OpenOptions>()),
    ("ferrule_host_plugin_info", std::mem::size_of::<PluginInfo>()),
    ("ferrule_host_function_info", std::mem::size_of::<FunctionInfo>()),
    ("ferrule_host_param_info", std::mem::size_of::<ParamInfo>()),
    ("ferrule_host_offer_info", std::mem::size_of::<OfferInfo>()),
    ("ferrule_host_value", std::mem::size_of::<CValue>()),
];

/// Descriptor text, NUL-terminated for C (a descriptor string has no NUL:
/// it was read up to one; a path or a type cannot have one either).
fn c(text: &str) -> CString {
    CString::new(text.split('\0').next().unwrap_or_default()).expect("no NUL left")
}

struct FunctionText {
    name: CString,
    signature: CString,
    doc: CString,
    params: Vec<(CString, CString)>,
}

struct OfferText {
    id: CString,
    name: CString,
    doc: CString,
    layout: CString,
}

/// `ferrule_host_plugin`: the Rust host's plugin, with its descriptor's
/// text kept NUL-terminated for the info structs (borrowed until free).
pub struct Handle {
    plugin: Plugin,
    id: CString,
    name: CString,
    version: CString,
    description: CString,
    license: CString,
    path: CString,
    functions: Vec<FunctionText>,
    offers: Vec<OfferText>,
}

impl Handle {
    fn new(plugin: Plugin) -> Handle {
        let d = plugin.descriptor();
        let functions = d
            .functions
            .iter()
            .map(|f| FunctionText {
                name: c(&f.name),
                signature: c(&f.signature.to_string()),
                doc: c(&f.doc),
                params: f.signature.params.iter().map(|p| (c(&p.name), c(&p.ty.to_string()))).collect(),
            })
            .collect();
        let offers = d
            .offers
            .iter()
            .map(|o| OfferText { id: c(&o.id), name: c(&o.name), doc: c(&o.doc), layout: c(&o.layout) })
            .collect();
        Handle {
            id: c(&d.id),
            name: c(&d.name),
            version: c(&d.version),
            description: c(&d.description),
            license: c(&d.license),
            path: c(plugin.path()),
            functions,
            offers,
            plugin,
        }
    }

    fn function(&self, index: usize, what: &str) -> Result<&host::FunctionInfo, Failure> {
        let functions = &self.plugin.descriptor().functions;
        functions.get(index).ok_or_else(|| {
            Failure::invalid(format!(
                "{what}: function index {index} is out of range: plugin '{}' has {} functions{}",
                self.plugin.descriptor().id,
                functions.len(),
                if functions.is_empty() { String::new() } else { format!(" (0 to {})", functions.len() - 1) }
            ))
        })
    }
}

/// The handle behind a pointer argument.
///
/// # Safety
/// `plugin` is NULL or a live handle of this library.
unsafe fn handle<'a>(plugin: *const Handle, what: &str) -> Result<&'a Handle, Failure> {
    // SAFETY: the caller's promise.
    unsafe { plugin.as_ref() }.ok_or_else(|| Failure::invalid(format!("{what}: plugin is NULL")))
}

/// Read a caller's struct of at least `T`'s size (this version's); a longer
/// one (a newer header's) is read as far as this version knows it.
///
/// # Safety
/// `ptr` points to a struct whose first field is its u32 struct_size, and as many readable bytes.
unsafe fn read_sized<T: Copy>(ptr: *const T, what: &str, ty: &str) -> Result<T, Failure> {
    // SAFETY: the caller's promise: the struct starts with its size.
    let size = unsafe { *(ptr as *const u32) } as usize;
    check_size(size, std::mem::size_of::<T>(), what, ty)?;
    // SAFETY: at least size_of::<T>() readable bytes, as checked.
    Ok(unsafe { std::ptr::read_unaligned(ptr) })
}

/// Fill a caller's struct: as much of `value` as its struct_size holds (all
/// of this version's fields; a newer header's extra fields are left as they are).
///
/// # Safety
/// `out` points to a writable struct whose first field is its u32 struct_size.
unsafe fn write_sized<T: Copy>(out: *mut T, value: T, what: &str, ty: &str) -> Result<(), Failure> {
    // SAFETY: the caller's promise.
    let size = unsafe { *(out as *const u32) };
    check_size(size as usize, std::mem::size_of::<T>(), what, ty)?;
    // SAFETY: the struct has at least size_of::<T>() bytes, as checked; its size field is put back.
    unsafe {
        std::ptr::write_unaligned(out, value);
        *(out as *mut u32) = size;
    }
    Ok(())
}

fn check_size(size: usize, need: usize, what: &str, ty: &str) -> Result<(), Failure> {
    if size < need {
        return Err(Failure::invalid(format!(
            "{what}->struct_size is {size}, at least {need} expected: set it to sizeof({ty}) before the call"
        )));
    }
    Ok(())
}

/// Load the plugin at `path` (a path, or a bare name looked up in
/// FERRULE_PATH), check it and run its init; `*plugin` is the new handle
/// (NULL on failure).
///
/// # Safety
/// `path` is a NUL-terminated string; `options` is NULL or a struct of the
/// header; `plugin` is writable; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_open(
    path: *const c_char,
    options: *const OpenOptions,
    plugin: *mut *mut Handle,
    error: *mut *mut Failure,
) -> i32 {
    // SAFETY: the caller's promises, checked for NULL in the body.
    unsafe {
        guard(error, || {
            if plugin.is_null() {
                return Err(Failure::invalid("ferrule_host_open: plugin is NULL, expected where to put the handle"));
            }
            *plugin = std::ptr::null_mut();
            if path.is_null() {
                return Err(Failure::invalid("ferrule_host_open: path is NULL, expected the plugin's path or name"));
            }
            let path = std::ffi::OsStr::from_bytes(std::ffi::CStr::from_ptr(path).to_bytes());
            let mut load = LoadOptions::default();
            if !options.is_null() {
                let o = read_sized(options, "ferrule_host_open: options", "ferrule_host_open_options")?;
                if o.flags & !OPEN_LAX_PERMISSIONS != 0 {
                    return Err(Failure::invalid(format!(
                        "ferrule_host_open: options->flags has unknown bits {:#x}: this library knows \
                         FERRULE_HOST_OPEN_LAX_PERMISSIONS ({OPEN_LAX_PERMISSIONS:#x})",
                        o.flags & !OPEN_LAX_PERMISSIONS
                    )));
                }
                load = load.strict_permissions(o.flags & OPEN_LAX_PERMISSIONS == 0);
                if !o.config.is_null() {
                    load = load.config(c_text(o.config, "ferrule_host_open: options->config")?);
                }
            }
            let loaded = Plugin::load(path, load)?;
            *plugin = Box::into_raw(Box::new(Handle::new(loaded)));
            Ok(())
        })
    }
}

/// Wait for the plugin's calls in flight, then run its shutdown (once; again
/// is a no-op). The handle stays valid for inspection; calls now fail with
/// FERRULE_HOST_E_PLUGIN_CLOSED. The library stays loaded.
///
/// # Safety
/// `plugin` is NULL or a live handle; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_close(plugin: *mut Handle, error: *mut *mut Failure) -> i32 {
    // SAFETY: the caller's promises.
    unsafe { guard(error, || Ok(handle(plugin, "ferrule_host_close")?.plugin.close()?)) }
}

/// Free a handle, running the plugin's shutdown first if it was not closed.
/// NULL is ignored.
///
/// # Safety
/// `plugin` is NULL or a live handle, freed once, with no call of it in flight.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_plugin_free(plugin: *mut Handle) {
    quiet((), || {
        if !plugin.is_null() {
            // SAFETY: made by Box::into_raw in ferrule_host_open, freed once (the caller's promise).
            drop(unsafe { Box::from_raw(plugin) });
        }
    })
}

/// The plugin's metadata. Strings are the handle's, valid until it is freed.
///
/// # Safety
/// `plugin` is NULL or a live handle; `info` is NULL or a writable struct
/// with struct_size set; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_get_plugin_info(plugin: *const Handle, info: *mut PluginInfo, error: *mut *mut Failure) -> i32 {
    // SAFETY: the caller's promises, checked for NULL.
    unsafe {
        guard(error, || {
            let h = handle(plugin, "ferrule_host_get_plugin_info")?;
            if info.is_null() {
                return Err(Failure::invalid("ferrule_host_get_plugin_info: info is NULL"));
            }
            let d = h.plugin.descriptor();
            let value = PluginInfo {
                struct_size: 0,
                abi_major: d.abi_version.0,
                abi_minor: d.abi_version.1,
                id: h.id.as_ptr(),
                name: h.name.as_ptr(),
                version: h.version.as_ptr(),
                description: h.description.as_ptr(),
                license: h.license.as_ptr(),
                path: h.path.as_ptr(),
                function_count: d.functions.len(),
                offer_count: d.offers.len(),
            };
            write_sized(info, value, "ferrule_host_get_plugin_info: info", "ferrule_host_plugin_info")
        })
    }
}

/// Function `index` (0 to function_count - 1, descriptor order).
///
/// # Safety
/// As for `ferrule_host_plugin_info`.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_get_function_info(
    plugin: *const Handle,
    index: usize,
    info: *mut FunctionInfo,
    error: *mut *mut Failure,
) -> i32 {
    // SAFETY: the caller's promises, checked for NULL.
    unsafe {
        guard(error, || {
            let h = handle(plugin, "ferrule_host_get_function_info")?;
            let f = h.function(index, "ferrule_host_get_function_info")?;
            if info.is_null() {
                return Err(Failure::invalid("ferrule_host_get_function_info: info is NULL"));
            }
            let t = &h.functions[index];
            let result = f.signature.result;
            let value = FunctionInfo {
                struct_size: 0,
                flags: f.flags,
                name: t.name.as_ptr(),
                signature: t.signature.as_ptr(),
                doc: t.doc.as_ptr(),
                param_count: f.signature.params.len(),
                result_tag: result.map(tag_of).unwrap_or(crate::value::tag::NONE),
                result_type: result.map(type_code).unwrap_or(0),
            };
            write_sized(info, value, "ferrule_host_get_function_info: info", "ferrule_host_function_info")
        })
    }
}

/// Parameter `param` of function `function`.
///
/// # Safety
/// As for `ferrule_host_plugin_info`.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_get_param_info(
    plugin: *const Handle,
    function: usize,
    param: usize,
    info: *mut ParamInfo,
    error: *mut *mut Failure,
) -> i32 {
    // SAFETY: the caller's promises, checked for NULL.
    unsafe {
        guard(error, || {
            let h = handle(plugin, "ferrule_host_get_param_info")?;
            let f = h.function(function, "ferrule_host_get_param_info")?;
            let Some(p) = f.signature.params.get(param) else {
                return Err(Failure::invalid(format!(
                    "ferrule_host_get_param_info: parameter index {param} is out of range: {}{} has {} parameters",
                    f.name,
                    f.signature,
                    f.signature.params.len()
                )));
            };
            if info.is_null() {
                return Err(Failure::invalid("ferrule_host_get_param_info: info is NULL"));
            }
            let (name, type_text) = &h.functions[function].params[param];
            let (tag, scalar) = param_tag(&p.ty);
            let value = ParamInfo { struct_size: 0, tag, name: name.as_ptr(), type_text: type_text.as_ptr(), scalar, reserved: 0 };
            write_sized(info, value, "ferrule_host_get_param_info: info", "ferrule_host_param_info")
        })
    }
}

/// Interface implementation `index` the plugin offers (0 to offer_count - 1).
///
/// # Safety
/// As for `ferrule_host_plugin_info`.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_get_offer_info(
    plugin: *const Handle,
    index: usize,
    info: *mut OfferInfo,
    error: *mut *mut Failure,
) -> i32 {
    // SAFETY: the caller's promises, checked for NULL.
    unsafe {
        guard(error, || {
            let h = handle(plugin, "ferrule_host_get_offer_info")?;
            let offers = &h.plugin.descriptor().offers;
            let Some(o) = offers.get(index) else {
                return Err(Failure::invalid(format!(
                    "ferrule_host_get_offer_info: offer index {index} is out of range: plugin '{}' offers {}",
                    h.plugin.descriptor().id,
                    offers.len()
                )));
            };
            if info.is_null() {
                return Err(Failure::invalid("ferrule_host_get_offer_info: info is NULL"));
            }
            let t = &h.offers[index];
            let value = OfferInfo {
                struct_size: 0,
                flags: o.flags,
                id: t.id.as_ptr(),
                name: t.name.as_ptr(),
                doc: t.doc.as_ptr(),
                layout: t.layout.as_ptr(),
                fingerprint: o.fingerprint,
                revision: o.revision,
                method_count: o.method_count,
            };
            write_sized(info, value, "ferrule_host_get_offer_info: info", "ferrule_host_offer_info")
        })
    }
}

/// The index of the function called `name`, for ferrule_host_call:
/// FERRULE_HOST_E_NO_SUCH_FUNCTION (the Rust host's message) if none.
///
/// # Safety
/// `plugin` is NULL or a live handle; `name` NULL or NUL-terminated; `index`
/// writable; `error` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_find_function(
    plugin: *const Handle,
    name: *const c_char,
    index: *mut usize,
    error: *mut *mut Failure,
) -> i32 {
    // SAFETY: the caller's promises, checked for NULL.
    unsafe {
        guard(error, || {
            let h = handle(plugin, "ferrule_host_find_function")?;
            if index.is_null() {
                return Err(Failure::invalid("ferrule_host_find_function: index is NULL"));
            }
            let name = c_text(name, "ferrule_host_find_function: name")?;
            match h.plugin.descriptor().functions.iter().position(|f| f.name == name) {
                Some(i) => {
                    *index = i;
                    Ok(())
                }
                // The Rust host's own error for the name: what a call by name fails with.
                None => Err(h.plugin.call(name, &mut []).expect_err("no such function").into()),
            }
        })
    }
}

/// Call function `function` with `arg_count` values; the result goes to
/// `*result` (NULL: dropped). Checked against the signature as the Rust
/// host checks (its codes and messages).
///
/// # Safety
/// `plugin` is NULL or a live handle; `args` holds `arg_count` values set as
/// the header says (NULL if 0); `result` is NULL or writable; `error` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_call(
    plugin: *const Handle,
    function: usize,
    args: *const CValue,
    arg_count: usize,
    result: *mut CValue,
    error: *mut *mut Failure,
) -> i32 {
    // SAFETY: the caller's promises, checked for NULL. `*result` is written
    // only once the arguments were read: it may be one of them.
    let code = unsafe {
        guard(error, || {
            let h = handle(plugin, "ferrule_host_call")?;
            let f = h.function(function, "ferrule_host_call")?;
            if args.is_null() && arg_count != 0 {
                return Err(Failure::invalid(format!("ferrule_host_call: args is NULL with arg_count {arg_count}")));
            }
            let values: &[CValue] = if arg_count == 0 { &[] } else { std::slice::from_raw_parts(args, arg_count) };
            let hosts = callbacks(values, f)?;
            let closures: Vec<Option<Box<host::HostFn<'_>>>> = hosts
                .iter()
                .map(|cb| cb.as_ref().map(|cb: &HostCallback| Box::new(move |a: &[host::Value]| cb.invoke(a)) as Box<host::HostFn<'_>>))
                .collect();
            let mut list = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                list.push(arg(v, i, closures[i].as_deref())?);
            }
            let value = h.plugin.call(&f.name, &mut list).map_err(|e| host_failure(e, &hosts))?;
            if !result.is_null() {
                *result = owned(value);
            }
            Ok(())
        })
    };
    if code != crate::error::OK && !result.is_null() {
        // SAFETY: the caller's promise: writable.
        unsafe { *result = CValue::NONE };
    }
    code
}

/// Call the function called `name`: ferrule_host_find_function, then
/// ferrule_host_call.
///
/// # Safety
/// As for `ferrule_host_call`, and `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn ferrule_host_call_by_name(
    plugin: *const Handle,
    name: *const c_char,
    args: *const CValue,
    arg_count: usize,
    result: *mut CValue,
    error: *mut *mut Failure,
) -> i32 {
    let mut index = 0usize;
    // SAFETY: the caller's promises, forwarded.
    let code = unsafe { ferrule_host_find_function(plugin, name, &mut index, error) };
    if code != crate::error::OK {
        if !result.is_null() {
            // SAFETY: the caller's promise: writable.
            unsafe { *result = CValue::NONE };
        }
        return code;
    }
    // SAFETY: as above.
    unsafe { ferrule_host_call(plugin, index, args, arg_count, result, error) }
}
