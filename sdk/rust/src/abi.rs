//! `#[repr(C)]` mirror of the FERRULE-ABI block of `sdk/c/include/ferrule.h`
//! (ABI v1.2).
//!
//! The C header is the single source of truth; every item here has the same
//! layout as its C counterpart (checked by the `layout_probe` binary against a
//! C probe and the Python host, and by the size asserts at the bottom of this
//! file on 64-bit targets). Names follow Rust style: `ferrule_plugin` is
//! [`Plugin`], `FERRULE_ABI_MAJOR` is [`ABI_MAJOR`], and so on.
//!
//! Function pointers that the header allows to be NULL, and every callback
//! that comes from the host (which Rust cannot trust to be non-NULL), are
//! `Option<unsafe extern "C" fn(..)>`; that has the same size and ABI as a C
//! function pointer, NULL being `None`.
//!
//! Nothing in this module is safe to use carelessly: it is raw FFI. Plugin
//! authors normally never touch it and use [`plugin!`](crate::plugin) instead;
//! it is public for a plugin that implements the ABI by hand, for fake hosts
//! in tests, and for layout checks such as `layout_probe`.

use core::ffi::{c_char, c_void};

/// `FERRULE_ABI_MAJOR`: major version of the ABI this crate was built for. A
/// host refuses a plugin whose major differs from its own.
pub const ABI_MAJOR: u16 = 1;
/// `FERRULE_ABI_MINOR`: minor version of the ABI this crate was built for.
pub const ABI_MINOR: u16 = 2;

/// `FERRULE_MAGIC`: the first field of every [`Plugin`] descriptor. It is the
/// ASCII text `"FERRULE!"` read as a big-endian `u64`, stored as a native
/// `u64` (so on little-endian machines the bytes in memory read `"!ELURREF"`).
pub const MAGIC: u64 = 0x4645_5252_554C_4521;

/// `FERRULE_OK`: status of a successful init or call.
pub const OK: i32 = 0;
/// `FERRULE_ERROR`: the init or call failed; the plugin called
/// [`Host::set_error`] first, on the calling thread.
pub const ERROR: i32 = 1;
/// `FERRULE_PANIC`: a Rust panic was caught at the boundary; the plugin
/// called [`Host::set_error`] with the panic message first.
pub const PANIC: i32 = 2;

/// `FERRULE_LOG_TRACE`: level for [`Host::log`].
pub const LOG_TRACE: i32 = 0;
/// `FERRULE_LOG_DEBUG`: level for [`Host::log`].
pub const LOG_DEBUG: i32 = 1;
/// `FERRULE_LOG_INFO`: level for [`Host::log`].
pub const LOG_INFO: i32 = 2;
/// `FERRULE_LOG_WARN`: level for [`Host::log`].
pub const LOG_WARN: i32 = 3;
/// `FERRULE_LOG_ERROR`: level for [`Host::log`].
pub const LOG_ERROR: i32 = 4;

/// `FERRULE_FN_THREAD_SAFE`: bit of [`Function::flags`]. The function may run
/// on several threads at once; without it the host serialises calls into the
/// plugin instance.
pub const FN_THREAD_SAFE: u32 = 1;
/// `FERRULE_FN_QUICK` (ABI 1.1): bit of [`Function::flags`]. The function is
/// short and never blocks (no I/O, no locks, no host callbacks that wait), so
/// the host may keep its own locks held across the call. A Python host then
/// keeps the GIL, which saves its release and re-acquire on tiny calls; other
/// Python threads do not run meanwhile. Without it the host releases the GIL
/// during the call.
pub const FN_QUICK: u32 = 2;

/// `FERRULE_IFACE_THREAD_SAFE` (ABI 1.2): bit of [`Interface::flags`]. The
/// implementation's instances may be called from several threads at once.
/// Without it the host serialises calls into each instance (each instance
/// has its own lock).
pub const IFACE_THREAD_SAFE: u32 = 1;

/// `FERRULE_ENTRY_SYMBOL`: the name of the one symbol a plugin exports, an
/// [`EntryFn`]. (Defined outside the ABI block in the header, but part of the
/// contract.)
pub const ENTRY_SYMBOL: &str = "ferrule_entry_v1";

/// `ferrule_fn` (ABI 1.1): opaque handle to a host function, received as an
/// `fn(...)` argument (`Value::func`). Call it with [`Host::invoke`]; valid
/// until the call that received it returns. Only ever used behind a pointer.
#[repr(C)]
pub struct FnHandle {
    _opaque: [u8; 0],
    // Not Send, not Sync, not Unpin: nothing may be assumed about it.
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

/// `ferrule_object` (ABI 1.2): opaque handle to an object the host lends a
/// plugin: a service the host implements, or an instance of an interface
/// another plugin provides. Got from [`Host::query`], used with
/// [`Host::call`], given back with [`Host::release`]. Only ever used behind
/// a pointer.
#[repr(C)]
pub struct Object {
    _opaque: [u8; 0],
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

/// `ferrule_bytes.release`: frees bytes that a plugin returned. Called by the
/// host exactly once, with the same `ptr` and `len`, on any thread, after it
/// copied the bytes.
pub type ReleaseFn = unsafe extern "C" fn(ptr: *mut c_void, len: usize);

/// `ferrule_bytes`: a run of bytes.
///
/// * As an argument: borrowed from the host for the duration of the call;
///   `release` is `None`. A `str` argument is also NUL-terminated (`len`
///   excludes the NUL); a `bytes` argument need not be.
/// * As a return value: the host copies `len` bytes from `ptr` once, then
///   calls `release(ptr, len)` if `release` is not `None`. `None` means the
///   bytes are static (valid until the library is unloaded).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Bytes {
    /// First byte; may be NULL (or dangling) when `len` is 0.
    pub ptr: *const c_void,
    /// Number of bytes.
    pub len: usize,
    /// How the host gives returned bytes back; `None` for borrowed or static
    /// bytes.
    pub release: Option<ReleaseFn>,
}

/// `ferrule_buf` (ABI 1.1): a typed array the caller owns, the argument of a
/// `buf[T]` or `mutbuf[T]` parameter.
///
/// `ptr` is the caller's own memory, not a copy, borrowed for the call and
/// aligned for `T`; `len` counts elements of `T`, not bytes. Only a `mutbuf`
/// may be written. `ptr` may be NULL when `len` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Buf {
    /// First element; may be NULL when `len` is 0.
    pub ptr: *mut c_void,
    /// Number of elements of `T` (not bytes).
    pub len: usize,
}

/// `ferrule_value`: one argument or return slot.
///
/// Integers of every width travel sign-extended in `i64` (signed types) or
/// zero-extended in `u64` (unsigned types); `bool` is `u64` 0 or 1; `f32` uses
/// its own member; `str` and `bytes` use `bytes`; `buf[T]` and `mutbuf[T]`
/// use `buf`; `fn(...)` uses `func`. Which member is live is
/// given by the function's signature, never by the value itself. Argument
/// slots are borrowed from the host for the call; the return slot is written
/// by the plugin and owned by the host afterwards.
#[repr(C)]
#[derive(Clone, Copy)]
pub union Value {
    /// Signed integers (`i8`..`i64`), sign-extended.
    pub i64: i64,
    /// Unsigned integers (`u8`..`u64`), zero-extended, and `bool` (0 or 1).
    pub u64: u64,
    /// `f64`.
    pub f64: f64,
    /// `f32`; the other bytes of the slot are unspecified.
    pub f32: f32,
    /// `str` (UTF-8) and `bytes`.
    pub bytes: Bytes,
    /// `buf[T]` and `mutbuf[T]` (ABI 1.1).
    pub buf: Buf,
    /// `fn(...)` (ABI 1.1): the host function handle.
    pub func: *const FnHandle,
}

impl Value {
    /// A slot with every byte zero (`bytes` = NULL, 0, no release).
    pub const ZERO: Value = Value {
        bytes: Bytes {
            ptr: core::ptr::null(),
            len: 0,
            release: None,
        },
    };
}

impl core::fmt::Debug for Value {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The live member is unknown here; show the first word only.
        // SAFETY: every bit pattern is a valid u64 and the first 8 bytes of
        // a Value are always initialised when it was built in Rust or C.
        let word = unsafe { self.u64 };
        write!(f, "Value {{ word0: {word:#018x} }}")
    }
}

/// `ferrule_host.log`: log `msg` (UTF-8, `len` bytes, borrowed for the call,
/// not necessarily NUL-terminated) at a `LOG_*` level. Callable from any
/// thread while the instance is alive.
pub type LogFn = unsafe extern "C" fn(host: *const Host, level: i32, msg: *const c_char, len: usize);
/// `ferrule_host.set_error`: set the failure message of the current call or
/// init, on the thread that runs it, before returning a non-OK status. The
/// host copies `msg`.
pub type SetErrorFn = unsafe extern "C" fn(host: *const Host, msg: *const c_char, len: usize);
/// `ferrule_host.alloc`: allocate `size` bytes, aligned for any type; a unique
/// non-NULL pointer even for size 0; NULL only on failure.
pub type AllocFn = unsafe extern "C" fn(size: usize) -> *mut c_void;
/// `ferrule_host.free`: free memory from [`AllocFn`], with the same size. Has
/// the signature of a [`ReleaseFn`], so it can be a return value's release.
pub type FreeFn = unsafe extern "C" fn(ptr: *mut c_void, size: usize);
/// `ferrule_host.invoke` (ABI 1.1): call the host function `func`, received
/// as an `fn(...)` argument of the current call, from any thread before that
/// call returns. `args` holds one slot per parameter of `func`'s signature,
/// borrowed by the host for the invoke; a `str` or `bytes` result in `*ret`
/// is owned by the plugin afterwards and must be given to its `release`
/// (when not `None`). Returns [`OK`], or [`ERROR`] when the host function
/// failed (the host reports that failure itself when the call returns,
/// whatever status the plugin returns) or `func` is not a live handle.
pub type InvokeFn =
    unsafe extern "C" fn(host: *const Host, func: *const FnHandle, args: *const Value, ret: *mut Value) -> i32;

/// `ferrule_host.query` (ABI 1.2): find an implementation of interface `id`
/// (borrowed, NUL-terminated) at exactly `revision`, with the layout
/// `fingerprint` the caller was generated with: a service of the host, else
/// an instance made for the caller from another loaded plugin's
/// implementation. NULL when nothing matches. The object is the caller's
/// until it passes it to [`ReleaseObjectFn`]; an object of an interface that
/// is not thread-safe must not be called from two threads at once. Allowed
/// from any thread, also in init.
pub type QueryFn =
    unsafe extern "C" fn(host: *const Host, id: *const c_char, revision: u32, fingerprint: u64) -> *const Object;
/// `ferrule_host.call` (ABI 1.2): call method number `method` (declaration
/// order, from 0) of `object` with `args` (borrowed, laid out as for an
/// exported function; NULL allowed when there are none). On [`OK`], `*ret`
/// holds the result; the caller owns a `str` or `bytes` result and gives it
/// to its `release`. On failure returns [`ERROR`] or [`PANIC`] and
/// `ret.bytes` holds the callee's message, owned by the caller the same way.
pub type ObjectCallFn = unsafe extern "C" fn(
    host: *const Host,
    object: *const Object,
    method: u32,
    args: *const Value,
    ret: *mut Value,
) -> i32;
/// `ferrule_host.release` (ABI 1.2): give an object back; it must not be used
/// afterwards. NULL is ignored.
pub type ReleaseObjectFn = unsafe extern "C" fn(host: *const Host, object: *const Object);

/// `ferrule_host`: callbacks the host hands to the plugin at init.
///
/// Owned by the host. The table and `host_data` stay valid until shutdown
/// returns. All callbacks may be called from any thread while the instance is
/// alive. Check `struct_size` before using any field added after ABI 1.0
/// ([`Host::invoke`], [`Host::query`], [`Host::call`], [`Host::release`]):
/// an older host's table ends before them, so only read such a field through
/// a raw pointer after the check, never through a `&Host`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// `sizeof(ferrule_host)` as the host built it.
    pub struct_size: u32,
    /// The host's ABI major version.
    pub abi_major: u16,
    /// The host's ABI minor version.
    pub abi_minor: u16,
    /// Opaque; the host's own.
    pub host_data: *mut c_void,
    /// See [`LogFn`]. Never NULL from a conforming host.
    pub log: Option<LogFn>,
    /// See [`SetErrorFn`]. Never NULL from a conforming host.
    pub set_error: Option<SetErrorFn>,
    /// See [`AllocFn`]. Never NULL from a conforming host.
    pub alloc: Option<AllocFn>,
    /// See [`FreeFn`]. Never NULL from a conforming host.
    pub free: Option<FreeFn>,
    /// See [`InvokeFn`]. ABI 1.1: present only when `struct_size` covers it;
    /// never NULL then, from a conforming host.
    pub invoke: Option<InvokeFn>,
    /// See [`QueryFn`]. ABI 1.2: present only when `struct_size` covers it.
    pub query: Option<QueryFn>,
    /// See [`ObjectCallFn`]. ABI 1.2: present only when `struct_size` covers
    /// it.
    pub call: Option<ObjectCallFn>,
    /// See [`ReleaseObjectFn`]. ABI 1.2: present only when `struct_size`
    /// covers it.
    pub release: Option<ReleaseObjectFn>,
}

/// `ferrule_call_fn`: an exported function.
///
/// `args` holds one slot per parameter of the signature, borrowed for the
/// call (never NULL, even with no parameters); the function writes its result (if
/// any) to `*ret`. `state` is what init returned. Returns [`OK`] or, after
/// calling `host->set_error` on this thread, a failure status. Called from
/// any thread; concurrently only if [`FN_THREAD_SAFE`] is set.
pub type CallFn =
    unsafe extern "C" fn(host: *const Host, state: *mut c_void, args: *const Value, ret: *mut Value) -> i32;

/// `ferrule_function`: one exported function. Owned by the plugin and static
/// (valid until the library is unloaded); the host only reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Function {
    /// `sizeof(ferrule_function)` as the plugin built it.
    pub struct_size: u32,
    /// `FN_*` bits.
    pub flags: u32,
    /// Static, NUL-terminated; an identifier, unique in the plugin.
    pub name: *const c_char,
    /// Static, NUL-terminated; e.g. `"(a: i64, b: i64) -> i64"`.
    pub signature: *const c_char,
    /// Static, NUL-terminated; may be NULL.
    pub doc: *const c_char,
    /// The function itself; never NULL.
    pub call: CallFn,
}

/// `ferrule_init_fn`: creates the instance state.
///
/// `config` is borrowed UTF-8 (`config_len` bytes, NUL-terminated), empty
/// when the host has none. The host table stays valid until shutdown returns.
/// On failure call `host->set_error` and return a non-OK status; shutdown is
/// then not called.
pub type InitFn = unsafe extern "C" fn(
    host: *const Host,
    config: *const c_char,
    config_len: usize,
    state: *mut *mut c_void,
) -> i32;

/// `ferrule_interface.create` (ABI 1.2): make an instance, store it in
/// `*this` and return [`OK`], or call `host->set_error` and return a failure
/// status. `plugin_state` is what the plugin's init stored.
pub type CreateFn = unsafe extern "C" fn(host: *const Host, plugin_state: *mut c_void, this: *mut *mut c_void) -> i32;
/// `ferrule_interface.destroy` (ABI 1.2): destroy an instance made by
/// [`CreateFn`]; called exactly once per instance, after every call into it
/// has returned, and before the plugin's shutdown.
pub type DestroyFn = unsafe extern "C" fn(host: *const Host, plugin_state: *mut c_void, this: *mut c_void);

/// `ferrule_interface` (ABI 1.2): an implementation of a host-defined
/// interface revision. Owned by the plugin and static.
///
/// The host makes instances with `create` and calls their methods through
/// `methods[i](host, this, args, ret)`, the calling convention of a
/// [`CallFn`] with the instance as `state`. Generated code fills this in
/// (`ferrule generate`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Interface {
    /// `sizeof(ferrule_interface)` as the plugin built it.
    pub struct_size: u32,
    /// `IFACE_*` bits.
    pub flags: u32,
    /// Static, NUL-terminated; the interface id, e.g.
    /// `"org.example.text.transform"`.
    pub id: *const c_char,
    /// The interface revision implemented.
    pub revision: u32,
    /// Number of entries in `methods`.
    pub method_count: u32,
    /// Fingerprint of the revision's canonical layout, as generated.
    pub fingerprint: u64,
    /// Static, NUL-terminated; the canonical layout text; may be NULL.
    pub layout: *const c_char,
    /// Static, NUL-terminated; unique in the plugin among implementations of
    /// `id`.
    pub name: *const c_char,
    /// Static, NUL-terminated; may be NULL.
    pub doc: *const c_char,
    /// Static array of `method_count` entries, in declaration order.
    pub methods: *const CallFn,
    /// Makes an instance; see [`CreateFn`].
    pub create: CreateFn,
    /// Destroys an instance; see [`DestroyFn`].
    pub destroy: DestroyFn,
}

/// `ferrule_shutdown_fn`: destroys the instance state; called exactly once per
/// successful init, after every call into the instance has returned. The
/// host table is valid for the duration of the call.
pub type ShutdownFn = unsafe extern "C" fn(host: *const Host, state: *mut c_void);

/// `ferrule_plugin`: the descriptor returned by the entry point.
///
/// Owned by the plugin and static. The host checks `magic`, `struct_size` and
/// `abi_major` before it reads any other field.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Plugin {
    /// [`MAGIC`].
    pub magic: u64,
    /// `sizeof(ferrule_plugin)` as the plugin built it.
    pub struct_size: u32,
    /// [`ABI_MAJOR`] the plugin was built with.
    pub abi_major: u16,
    /// [`ABI_MINOR`] the plugin was built with.
    pub abi_minor: u16,
    /// Static; reverse-DNS, e.g. `"org.example.greeter"`.
    pub id: *const c_char,
    /// Static; human-readable.
    pub name: *const c_char,
    /// Static; the plugin's own version.
    pub version: *const c_char,
    /// Static; may be NULL.
    pub description: *const c_char,
    /// Static; an SPDX expression; may be NULL.
    pub license: *const c_char,
    /// Number of entries in `functions`.
    pub function_count: u32,
    /// Reserved, 0.
    pub flags: u32,
    /// Static array of `function_count` pointers.
    pub functions: *const *const Function,
    /// May be `None`: the state is then NULL.
    pub init: Option<InitFn>,
    /// May be `None`.
    pub shutdown: Option<ShutdownFn>,
    /// ABI 1.2: number of entries in `interfaces`.
    pub interface_count: u32,
    /// ABI 1.2: reserved, 0.
    pub reserved: u32,
    /// ABI 1.2: static array of `interface_count` pointers.
    pub interfaces: *const *const Interface,
}

/// `ferrule_entry_fn`: the type of the one exported symbol,
/// [`ENTRY_SYMBOL`]. Callable from any thread, any number of times; returns
/// the same static descriptor (or NULL if the plugin could not build it).
pub type EntryFn = unsafe extern "C" fn() -> *const Plugin;

// Compile-time checks. The authoritative comparison with the C header is the
// layout_probe binary; these catch accidental edits early.
const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<Option<ReleaseFn>>() == size_of::<*const c_void>());
    assert!(size_of::<Option<LogFn>>() == size_of::<*const c_void>());
    assert!(size_of::<Option<InitFn>>() == size_of::<*const c_void>());
    assert!(size_of::<Option<InvokeFn>>() == size_of::<*const c_void>());
    assert!(size_of::<*const FnHandle>() == size_of::<*const c_void>());
    assert!(size_of::<Option<QueryFn>>() == size_of::<*const c_void>());
    assert!(size_of::<CreateFn>() == size_of::<*const c_void>());
    assert!(size_of::<Buf>() <= size_of::<Bytes>());
    assert!(size_of::<CallFn>() == size_of::<*const c_void>());
    assert!(size_of::<Value>() == size_of::<Bytes>());
    assert!(align_of::<Value>() == 8);
};

#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Bytes>() == 24);
    assert!(size_of::<Buf>() == 16);
    assert!(offset_of!(Buf, len) == 8);
    assert!(size_of::<Value>() == 24);
    assert!(size_of::<Host>() == 80);
    assert!(offset_of!(Host, invoke) == 48);
    assert!(offset_of!(Host, release) == 72);
    assert!(offset_of!(Host, host_data) == 8);
    assert!(offset_of!(Host, free) == 40);
    assert!(size_of::<Function>() == 40);
    assert!(offset_of!(Function, call) == 32);
    assert!(size_of::<Plugin>() == 104);
    assert!(offset_of!(Plugin, interface_count) == 88);
    assert!(offset_of!(Plugin, interfaces) == 96);
    assert!(size_of::<Interface>() == 80);
    assert!(offset_of!(Interface, fingerprint) == 24);
    assert!(offset_of!(Interface, destroy) == 72);
    assert!(offset_of!(Plugin, function_count) == 56);
    assert!(offset_of!(Plugin, shutdown) == 80);
};
