//! The descriptor checks, field by field in the order ABI 1.x defines and
//! with the Python host's messages (`src/ferrule/_abi/descriptor.py`).
//!
//! The descriptor is plugin memory: every pointer is read as an address and
//! checked before it is followed, and function pointers stay addresses until
//! they are known not to be NULL.

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};

use ferrule_sdk::abi;

use crate::error::{Error, ErrorKind, Result};
use crate::library::Library;
use crate::types::{bytes_repr, parse_signature, py_repr, utf8_reason, Signature};

/// `ferrule_entry_v1`: the one symbol a plugin exports.
pub const ENTRY_SYMBOL: &str = "ferrule_entry_v1";
const PLUGIN_V10_SIZE: u32 = offset_of!(abi::Plugin, interface_count) as u32;
const PLUGIN_V12_SIZE: u32 = (offset_of!(abi::Plugin, interfaces) + size_of::<*const c_void>()) as u32;
const FUNCTION_V10_SIZE: u32 = size_of::<abi::Function>() as u32;
const INTERFACE_V12_SIZE: u32 = size_of::<abi::Interface>() as u32;
const MAX_FUNCTIONS: u32 = 4096;
const MAX_METHODS: u32 = 256;
const MAX_TEXT: usize = 1 << 16;

// The host's view of the plugin's structs: every pointer an address.
#[repr(C)]
struct RawPlugin {
    magic: u64,
    struct_size: u32,
    abi_major: u16,
    abi_minor: u16,
    id: *const c_char,
    name: *const c_char,
    version: *const c_char,
    description: *const c_char,
    license: *const c_char,
    function_count: u32,
    flags: u32,
    functions: *const *const RawFunction,
    init: *const c_void,
    shutdown: *const c_void,
    interface_count: u32,
    reserved: u32,
    interfaces: *const *const RawInterface,
}

#[repr(C)]
struct RawFunction {
    struct_size: u32,
    flags: u32,
    name: *const c_char,
    signature: *const c_char,
    doc: *const c_char,
    call: *const c_void,
}

#[repr(C)]
struct RawInterface {
    struct_size: u32,
    flags: u32,
    id: *const c_char,
    revision: u32,
    method_count: u32,
    fingerprint: u64,
    layout: *const c_char,
    name: *const c_char,
    doc: *const c_char,
    methods: *const *const c_void,
    create: *const c_void,
    destroy: *const c_void,
}

const _: () = {
    // The raw views have the SDK's layouts, which its tests hold to ferrule.h.
    assert!(size_of::<RawPlugin>() == size_of::<abi::Plugin>());
    assert!(offset_of!(RawPlugin, interfaces) == offset_of!(abi::Plugin, interfaces));
    assert!(offset_of!(RawPlugin, init) == offset_of!(abi::Plugin, init));
    assert!(size_of::<RawFunction>() == size_of::<abi::Function>());
    assert!(offset_of!(RawFunction, call) == offset_of!(abi::Function, call));
    assert!(size_of::<RawInterface>() == size_of::<abi::Interface>());
    assert!(offset_of!(RawInterface, destroy) == offset_of!(abi::Interface, destroy));
};

/// One exported function, as the descriptor describes it.
#[derive(Clone, Debug)]
pub struct FunctionInfo {
    /// Its name.
    pub name: String,
    /// Its parsed signature.
    pub signature: Signature,
    /// Its doc (empty when the plugin gave none).
    pub doc: String,
    /// `FERRULE_FN_*` bits.
    pub flags: u32,
    pub(crate) call: abi::CallFn,
}

impl FunctionInfo {
    /// Flagged `FERRULE_FN_THREAD_SAFE`: calls may overlap.
    pub fn thread_safe(&self) -> bool {
        self.flags & abi::FN_THREAD_SAFE != 0
    }
}

/// One interface implementation the plugin offers.
#[derive(Clone, Debug)]
pub struct OfferInfo {
    /// The interface id, reverse-DNS.
    pub id: String,
    /// The interface revision implemented.
    pub revision: u32,
    /// The implementation's name, unique among the plugin's implementations of the id.
    pub name: String,
    /// Its doc (empty when none).
    pub doc: String,
    /// `FERRULE_IFACE_*` bits.
    pub flags: u32,
    /// The fingerprint of the layout it was generated from.
    pub fingerprint: u64,
    /// That canonical layout text (empty when the plugin gave none).
    pub layout: String,
    /// Entries in its vtable.
    pub method_count: u32,
    pub(crate) methods: Vec<abi::CallFn>,
    pub(crate) create: abi::CreateFn,
    pub(crate) destroy: abi::DestroyFn,
}

/// A checked descriptor: the plugin's metadata, functions and offers.
#[derive(Clone, Debug)]
pub struct Descriptor {
    /// The plugin id, reverse-DNS.
    pub id: String,
    /// Its human-readable name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Its description (empty when none).
    pub description: String,
    /// Its SPDX license expression (empty when none).
    pub license: String,
    /// The ABI version it was built for.
    pub abi_version: (u16, u16),
    /// Its exported functions, in descriptor order.
    pub functions: Vec<FunctionInfo>,
    /// The interface implementations it offers.
    pub offers: Vec<OfferInfo>,
    pub(crate) init: Option<abi::InitFn>,
    pub(crate) shutdown: Option<abi::ShutdownFn>,
}

fn error(kind: ErrorKind, message: String) -> Error {
    Error::new(kind, message)
}

/// Call the entry point and check what it returns.
pub(crate) fn describe(library: &Library) -> Result<Descriptor> {
    let path = &library.path;
    let Some(entry) = library.symbol(ENTRY_SYMBOL) else {
        for major in (0..10).filter(|&n| n != abi::ABI_MAJOR) {
            if library.symbol(&format!("ferrule_entry_v{major}")).is_some() {
                return Err(error(
                    ErrorKind::AbiVersion,
                    format!(
                        "{path} exports ferrule_entry_v{major} (ABI {major}), this host speaks ABI {}: rebuild the \
                         plugin against ABI {} or use a matching ferrule",
                        abi::ABI_MAJOR,
                        abi::ABI_MAJOR
                    ),
                ));
            }
        }
        return Err(error(
            ErrorKind::NoEntryPoint,
            format!(
                "{path} does not export {ENTRY_SYMBOL}, expected by every ferrule plugin: export it with the Rust \
                 SDK's plugin! macro or the C header's FERRULE_ENTRY"
            ),
        ));
    };
    // SAFETY: the symbol is the ABI's entry point, `const ferrule_plugin *(void)`.
    let entry: abi::EntryFn = unsafe { std::mem::transmute::<*const c_void, abi::EntryFn>(entry) };
    // SAFETY: calling the entry point is the one thing a plugin's loading does
    // besides its constructors; it takes nothing.
    let raw = unsafe { entry() } as *const RawPlugin;
    if raw.is_null() {
        return Err(error(ErrorKind::NoEntryPoint, format!("{ENTRY_SYMBOL} in {path} returned NULL, expected a descriptor")));
    }
    // SAFETY: the entry point returned a non-NULL descriptor pointer; its
    // head is read first, and no field past struct_size is read.
    unsafe { check(&*raw, path) }
}

/// # Safety
/// `raw` is what the entry point returned; strings and tables it points to
/// are read up to their checked lengths.
unsafe fn check(raw: &RawPlugin, path: &str) -> Result<Descriptor> {
    check_head(raw, path)?;
    let id = text(raw.id, "plugin id", true)?;
    if !is_reverse_dns(&id) {
        return Err(error(
            ErrorKind::Metadata,
            format!("{path}: plugin id {} is not reverse-DNS (like 'org.example.greeter'): fix the descriptor", py_repr(&id)),
        ));
    }
    let name = text(raw.name, &format!("plugin {} name", py_repr(&id)), true)?;
    let version = text(raw.version, &format!("plugin {} version", py_repr(&id)), true)?;
    let description = text(raw.description, &format!("plugin {} description", py_repr(&id)), false)?;
    let license = text(raw.license, &format!("plugin {} license", py_repr(&id)), false)?;
    let functions = read_functions(raw, &id)?;
    let offers = read_offers(raw, &id)?;
    Ok(Descriptor {
        id,
        name,
        version,
        description,
        license,
        abi_version: (raw.abi_major, raw.abi_minor),
        functions,
        offers,
        // SAFETY: NULL is None; a non-NULL address is the plugin's init or
        // shutdown, of the types the ABI gives them.
        init: if raw.init.is_null() { None } else { Some(std::mem::transmute::<*const c_void, abi::InitFn>(raw.init)) },
        shutdown: if raw.shutdown.is_null() {
            None
        } else {
            Some(std::mem::transmute::<*const c_void, abi::ShutdownFn>(raw.shutdown))
        },
    })
}

const SWAPPED_MAGIC: u64 = abi::MAGIC.swap_bytes();

fn check_head(raw: &RawPlugin, path: &str) -> Result<()> {
    if (raw.magic == 0 || raw.magic == abi::MAGIC) && raw.struct_size == 0 {
        let fields = [("magic", raw.magic == 0), ("struct_size", true), ("abi_major", raw.abi_major == 0),
                      ("abi_minor", raw.abi_minor == 0 && raw.abi_major == 0)];
        let zero: Vec<&str> = fields.iter().filter(|f| f.1).map(|f| f.0).collect();
        let kind = if raw.magic == 0 { ErrorKind::BadMagic } else { ErrorKind::DescriptorTooSmall };
        return Err(error(
            kind,
            format!(
                "{path}: the descriptor's head (magic, struct_size, abi_major, abi_minor) is not filled in: {} {} 0: \
                 start the initialiser with FERRULE_PLUGIN_HEAD (or set .magic = FERRULE_MAGIC, .struct_size = \
                 sizeof(ferrule_plugin), .abi_major = FERRULE_ABI_MAJOR, .abi_minor = FERRULE_ABI_MINOR)",
                zero.join(", "),
                if zero.len() == 1 { "is" } else { "are" }
            ),
        ));
    }
    if raw.magic == 0 {
        return Err(error(
            ErrorKind::BadMagic,
            format!(
                "{path}: descriptor starts with zeros where FERRULE_MAGIC ({:#018x}) belongs: fill the head with \
                 FERRULE_PLUGIN_HEAD (or set .magic = FERRULE_MAGIC)",
                abi::MAGIC
            ),
        ));
    }
    if raw.magic == SWAPPED_MAGIC {
        return Err(error(
            ErrorKind::BadMagic,
            format!(
                "{path}: descriptor starts with {:#018x}, the magic {:#018x} with its bytes reversed: FERRULE_MAGIC \
                 is a native-endian integer; set it as the integer (FERRULE_PLUGIN_HEAD does), not as the bytes \
                 \"FERRULE!\", and build the plugin for this machine",
                raw.magic,
                abi::MAGIC
            ),
        ));
    }
    if raw.magic != abi::MAGIC {
        return Err(error(
            ErrorKind::BadMagic,
            format!(
                "{path}: descriptor starts with {:#018x}, expected the magic {:#018x}: the entry point returns \
                 something that is not a ferrule descriptor",
                raw.magic,
                abi::MAGIC
            ),
        ));
    }
    if raw.abi_major != abi::ABI_MAJOR {
        return Err(error(
            ErrorKind::AbiVersion,
            format!(
                "{path} was built for ferrule ABI {}.{}, this host speaks ABI {}.{}: rebuild the plugin against ABI {}",
                raw.abi_major,
                raw.abi_minor,
                abi::ABI_MAJOR,
                abi::ABI_MINOR,
                abi::ABI_MAJOR
            ),
        ));
    }
    if raw.struct_size < PLUGIN_V10_SIZE {
        return Err(error(
            ErrorKind::DescriptorTooSmall,
            format!(
                "{path}: descriptor struct_size is {} bytes, ABI {}.0 needs at least {PLUGIN_V10_SIZE}: rebuild the \
                 plugin with the current SDK",
                raw.struct_size,
                abi::ABI_MAJOR
            ),
        ));
    }
    Ok(())
}

/// A reverse-DNS id: `[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+`.
fn is_reverse_dns(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

/// A function name: an identifier, as Python's `str.isidentifier` has it for
/// ASCII names. (A non-ASCII name is refused here; see the crate docs.)
fn is_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A NUL-terminated UTF-8 string of the descriptor, at most MAX_TEXT bytes.
///
/// # Safety
/// `ptr` is NULL or points to readable memory holding a NUL within MAX_TEXT
/// bytes or at least MAX_TEXT readable bytes.
unsafe fn text(ptr: *const c_char, what: &str, required: bool) -> Result<String> {
    if ptr.is_null() {
        if required {
            return Err(error(ErrorKind::Metadata, format!("{what} is NULL, expected a UTF-8 string: fill it in the descriptor")));
        }
        return Ok(String::new());
    }
    let mut len = 0;
    while len < MAX_TEXT && *ptr.add(len) != 0 {
        len += 1;
    }
    let raw = std::slice::from_raw_parts(ptr as *const u8, len);
    match std::str::from_utf8(raw) {
        Ok(s) => Ok(s.to_string()),
        Err(e) if len == MAX_TEXT && e.error_len().is_none() => Ok(String::from_utf8_lossy(&raw[..e.valid_up_to()]).into_owned()),
        Err(e) => {
            let shown = if raw.len() > 120 {
                // The bytes around the error, not all of it.
                let low = e.valid_up_to().saturating_sub(40);
                let high = (low + 80).min(raw.len());
                format!("b'{}' (bytes {low} to {high} of {})", bytes_repr(&raw[low..high]), raw.len())
            } else {
                format!("b'{}'", bytes_repr(raw))
            };
            Err(error(ErrorKind::Metadata, format!("{what} is not valid UTF-8 ({}): {shown}", utf8_reason(raw, &e))))
        }
    }
}

unsafe fn read_functions(raw: &RawPlugin, plugin: &str) -> Result<Vec<FunctionInfo>> {
    let count = raw.function_count;
    let p = py_repr(plugin);
    if count > MAX_FUNCTIONS {
        return Err(error(ErrorKind::Metadata, format!("plugin {p} declares {count} functions, at most {MAX_FUNCTIONS} allowed")));
    }
    if count > 0 && raw.functions.is_null() {
        return Err(error(ErrorKind::Descriptor, format!("plugin {p} declares {count} functions but its function table is NULL")));
    }
    let mut out: Vec<FunctionInfo> = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let entry = *raw.functions.add(i);
        let wh = format!("plugin {p} function #{i}");
        if entry.is_null() {
            return Err(error(ErrorKind::Descriptor, format!("{wh} is NULL, expected a ferrule_function")));
        }
        let f = &*entry;
        if f.struct_size == 0 {
            let named = match text(f.name, "name", true) {
                Ok(n) if is_function_name(&n) => format!("{} (#{i})", py_repr(&n)),
                _ => format!("#{i}"),
            };
            return Err(error(
                ErrorKind::DescriptorTooSmall,
                format!(
                    "plugin {p} function {named}: its ferrule_function has struct_size 0: build each entry with \
                     FERRULE_FUNCTION(...) (or set .struct_size = sizeof(ferrule_function))"
                ),
            ));
        }
        if f.struct_size < FUNCTION_V10_SIZE {
            return Err(error(
                ErrorKind::DescriptorTooSmall,
                format!(
                    "{wh}: struct_size is {} bytes, ABI {}.0 needs at least {FUNCTION_V10_SIZE}: rebuild the plugin \
                     with the current SDK",
                    f.struct_size,
                    abi::ABI_MAJOR
                ),
            ));
        }
        let name = text(f.name, &format!("{wh} name"), true)?;
        if !is_function_name(&name) {
            return Err(error(ErrorKind::Metadata, format!("{wh} name {} is not an identifier", py_repr(&name))));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(error(ErrorKind::Metadata, format!("plugin {p} exports two functions named {}", py_repr(&name))));
        }
        let n = py_repr(&name);
        let sig_text = text(f.signature, &format!("plugin {p} function {n} signature"), true)?;
        let signature = parse_signature(&sig_text).map_err(|why| {
            error(
                ErrorKind::Signature,
                format!(
                    "plugin {p} function {n} has a malformed signature {}: {why}; expected e.g. '(a: i64, b: i64) -> i64'",
                    py_repr(&sig_text)
                ),
            )
        })?;
        if f.call.is_null() {
            return Err(error(ErrorKind::Descriptor, format!("plugin {p} function {n} has a NULL call pointer")));
        }
        let doc = text(f.doc, &format!("plugin {p} function {n} doc"), false)?;
        // SAFETY: a non-NULL call pointer of a ferrule_function is its ferrule_call_fn.
        let call = std::mem::transmute::<*const c_void, abi::CallFn>(f.call);
        out.push(FunctionInfo { name, signature, doc, flags: f.flags, call });
    }
    Ok(out)
}

unsafe fn read_offers(raw: &RawPlugin, plugin: &str) -> Result<Vec<OfferInfo>> {
    if raw.struct_size < PLUGIN_V12_SIZE || raw.interface_count == 0 {
        return Ok(Vec::new());
    }
    let p = py_repr(plugin);
    let count = raw.interface_count;
    if count > MAX_FUNCTIONS {
        return Err(error(
            ErrorKind::Metadata,
            format!("plugin {p} declares {count} interface implementations, at most {MAX_FUNCTIONS} allowed"),
        ));
    }
    if raw.interfaces.is_null() {
        return Err(error(
            ErrorKind::Descriptor,
            format!("plugin {p} declares {count} interface implementations but its table is NULL"),
        ));
    }
    let mut out: Vec<OfferInfo> = Vec::new();
    for i in 0..count as usize {
        let entry = *raw.interfaces.add(i);
        let wh = format!("plugin {p} interface implementation #{i}");
        if entry.is_null() {
            return Err(error(ErrorKind::Descriptor, format!("{wh} is NULL, expected a ferrule_interface")));
        }
        let f = &*entry;
        if f.struct_size < INTERFACE_V12_SIZE {
            return Err(error(
                ErrorKind::DescriptorTooSmall,
                format!(
                    "{wh}: struct_size is {} bytes, ABI {}.2 needs at least {INTERFACE_V12_SIZE}: rebuild the plugin \
                     with the current SDK",
                    f.struct_size,
                    abi::ABI_MAJOR
                ),
            ));
        }
        let id = text(f.id, &format!("{wh} id"), true)?;
        if !is_reverse_dns(&id) {
            return Err(error(ErrorKind::Metadata, format!("{wh}: interface id {} is not reverse-DNS", py_repr(&id))));
        }
        let name = text(f.name, &format!("{wh} name"), true)?;
        if name.is_empty() {
            return Err(error(ErrorKind::Metadata, format!("{wh} ({id}) has an empty name")));
        }
        if out.iter().any(|o| o.id == id && o.revision == f.revision && o.name == name) {
            return Err(error(
                ErrorKind::Metadata,
                format!("plugin {p} offers two implementations of {id}/{} named {}", f.revision, py_repr(&name)),
            ));
        }
        let wh = format!("plugin {p} implementation {} of {id}/{}", py_repr(&name), f.revision);
        if f.method_count > MAX_METHODS {
            return Err(error(ErrorKind::Metadata, format!("{wh} has {} methods, at most {MAX_METHODS} allowed", f.method_count)));
        }
        if f.method_count > 0 && f.methods.is_null() {
            return Err(error(ErrorKind::Descriptor, format!("{wh} has {} methods but a NULL method table", f.method_count)));
        }
        for m in 0..f.method_count as usize {
            if (*f.methods.add(m)).is_null() {
                return Err(error(ErrorKind::Descriptor, format!("{wh}: method #{m} is NULL")));
            }
        }
        if f.create.is_null() || f.destroy.is_null() {
            return Err(error(ErrorKind::Descriptor, format!("{wh} has a NULL create or destroy")));
        }
        let layout = text(f.layout, &format!("{wh} layout"), false)?;
        let doc = text(f.doc, &format!("{wh} doc"), false)?;
        out.push(OfferInfo {
            id,
            revision: f.revision,
            name,
            doc,
            flags: f.flags,
            fingerprint: f.fingerprint,
            layout,
            method_count: f.method_count,
            // SAFETY: checked above: method_count non-NULL entries, and a
            // non-NULL create and destroy, all functions of the ABI's types.
            methods: (0..f.method_count as usize)
                .map(|m| std::mem::transmute::<*const c_void, abi::CallFn>(*f.methods.add(m)))
                .collect(),
            create: std::mem::transmute::<*const c_void, abi::CreateFn>(f.create),
            destroy: std::mem::transmute::<*const c_void, abi::DestroyFn>(f.destroy),
        });
    }
    Ok(out)
}
