//! A loaded plugin: init once, calls under the thread contract, shutdown
//! once; the library stays mapped.

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::path::Path;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ferrule_sdk::abi;

use crate::descriptor::{describe, Descriptor, FunctionInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::host::{clear_error, give_bytes, take_error, Frame, HostData, HostTable};
use crate::library::{check_permissions, open, plugin_file};
use crate::types::{py_repr, utf8_reason, Scalar, Signature, Type};
use crate::value::{Arg, HostFn, Value};

/// A str or bytes result pointer below this is no address (the first page
/// is never mapped); no result is longer than MAX_RESULT_LEN. The Python
/// host uses the same two numbers.
const NO_ADDRESS: usize = 4096;
const MAX_RESULT_LEN: usize = 1 << 48;
const F32_MAX: f64 = f32::MAX as f64;

/// How to load a plugin.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    config: Option<Vec<u8>>,
    strict_permissions: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { config: None, strict_permissions: true }
    }
}

impl LoadOptions {
    /// The text the plugin's init receives (UTF-8, e.g. JSON).
    pub fn config(mut self, config: impl Into<String>) -> Self {
        self.config = Some(config.into().into_bytes());
        self
    }

    /// `false` loads a file that others than its owner could write
    /// (refused by default, as ssh refuses such keys).
    pub fn strict_permissions(mut self, strict: bool) -> Self {
        self.strict_permissions = strict;
        self
    }
}

pub(crate) struct State(pub(crate) *mut c_void);
// SAFETY: the state is the plugin's; the ABI lets it be used from any
// thread, and calls that are not thread-safe are serialised.
unsafe impl Send for State {}
// SAFETY: as above.
unsafe impl Sync for State {}

pub(crate) struct Inner {
    pub(crate) descriptor: Descriptor,
    pub(crate) host: HostTable,
    pub(crate) state: State,
    path: String,
    by_name: HashMap<String, usize>,
    /// Calls in flight, and whether close() began: shutdown never runs under a call.
    pub(crate) gate: Gate,
    /// Whether a close began (the first one does the work; later ones return),
    /// and whether the shutdown ran.
    close_started: AtomicBool,
    finished: AtomicBool,
    /// The program's last handle went while this thread was inside one of
    /// its calls (a lent create that ran the host's code): the close runs
    /// when the last call leaves, not under it.
    close_on_exit: AtomicBool,
    /// Live typed handles: their calls are not counted in the gate, so what
    /// the plugin got from queries is given back only once none is left.
    pub(crate) typed: AtomicUsize,
    /// Calls into functions that are not thread-safe take it (re-entrant: a
    /// host function may call back into the plugin on the same thread).
    pub(crate) serial: Serial,
    /// Live instances and typed handles, and whether close() left the
    /// shutdown to the last of them.
    pub(crate) instances: Mutex<(usize, bool)>,
    /// Held by each create and destroy: one instance is made or destroyed at
    /// a time. Shared by the plugins of one PluginHost (two plugins' creates
    /// that query each other cannot each hold their own), and re-entrant (a
    /// create may query, a destroy release, another implementation).
    pub(crate) making: Arc<Serial>,
    /// The PluginHost that loaded it (its services and other plugins), if any.
    pub(crate) registry: Option<Arc<crate::services::Registry>>,
}

/// Calls in flight into a plugin or instance, and whether it is closing:
/// its shutdown (or destroy) never runs under a call.
#[derive(Default)]
pub(crate) struct Gate {
    pub(crate) active: AtomicUsize,
    pub(crate) closing: AtomicBool,
}

impl Gate {
    pub(crate) fn key(&self) -> usize {
        self as *const Gate as usize
    }

    /// Set closing, then wait for the calls in flight.
    pub(crate) fn close_and_wait(&self) {
        self.closing.store(true, Ordering::SeqCst);
        while self.active.load(Ordering::SeqCst) != 0 {
            std::thread::sleep(std::time::Duration::from_micros(50)); // calls in flight finish first
        }
    }
}

/// A re-entrant lock: held by one thread, as many times as it takes it.
#[derive(Default)]
pub(crate) struct Serial {
    owner: Mutex<(Option<std::thread::ThreadId>, usize)>,
    free: std::sync::Condvar,
}

pub(crate) struct SerialGuard<'a>(&'a Serial);

impl Serial {
    pub(crate) fn lock(&self) -> SerialGuard<'_> {
        let me = std::thread::current().id();
        let mut held = self.owner.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match held.0 {
                None => {
                    *held = (Some(me), 1);
                    break;
                }
                Some(t) if t == me => {
                    held.1 += 1;
                    break;
                }
                Some(_) => held = self.free.wait(held).unwrap_or_else(|e| e.into_inner()),
            }
        }
        SerialGuard(self)
    }
}

impl Drop for SerialGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.0.owner.lock().unwrap_or_else(|e| e.into_inner());
        held.1 -= 1;
        if held.1 == 0 {
            held.0 = None;
            self.0.free.notify_one();
        }
    }
}

/// One call in flight on this thread: a list through the stack, innermost
/// first, of the plugins this thread is inside a call of.
struct Inside {
    plugin: usize,
    outer: *const Inside,
}

thread_local! {
    static INSIDE: Cell<*const Inside> = const { Cell::new(std::ptr::null()) };
}

/// A call counted in: counted out (and the thread's list restored) when dropped.
struct Entered<'a> {
    active: &'a AtomicUsize,
    outer: *const Inside,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        INSIDE.with(|c| c.set(self.outer));
        self.active.fetch_sub(1, Ordering::Release);
    }
}

pub(crate) fn inside(plugin: usize) -> bool {
    let mut at = INSIDE.with(Cell::get);
    while !at.is_null() {
        // SAFETY: every entry is an Inside on this thread's stack, below the
        // frame that reads it, and removed before its frame returns.
        let frame = unsafe { &*at };
        if frame.plugin == plugin {
            return true;
        }
        at = frame.outer;
    }
    false
}

/// A loaded, initialised plugin. Cheap to clone (one plugin, shared); its
/// shutdown runs once, at `close()` or when the last clone is dropped. The
/// library is never unloaded.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<Inner>,
    /// Held by the program's handles (not by the host's own references to
    /// the plugin): when the last one goes, the plugin is closed.
    _user: Option<Arc<UserHandles>>,
}

struct UserHandles(Arc<Inner>);

impl Drop for UserHandles {
    fn drop(&mut self) {
        let inner = &self.0;
        if inside(inner.gate.key()) {
            // Waiting for the calls in flight would wait for this one: new
            // calls are refused now, and the last call out closes it.
            inner.close_on_exit.store(true, Ordering::SeqCst);
            inner.gate.closing.store(true, Ordering::SeqCst);
            return;
        }
        inner.shutdown();
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.inner.descriptor;
        write!(f, "<ferrule plugin {} {:?} {}, ABI {}.{}>", d.id, d.name, d.version, d.abi_version.0, d.abi_version.1)
    }
}

impl Plugin {
    /// Load the plugin at `path` (or a bare name, looked up in `FERRULE_PATH`
    /// only), check its descriptor and run its init.
    pub fn load(path: impl AsRef<Path>, options: LoadOptions) -> Result<Plugin> {
        Plugin::load_in(path.as_ref(), options, None, Arc::default())
    }

    pub(crate) fn load_in(path: &Path, options: LoadOptions, registry: Option<Arc<crate::services::Registry>>,
                          making: Arc<Serial>) -> Result<Plugin> {
        let file = plugin_file(path)?;
        if options.strict_permissions {
            check_permissions(&file)?;
        }
        let library = open(&file)?;
        let descriptor = describe(&library)?;
        let host = HostTable::new(&descriptor.id, registry.as_ref().map(Arc::downgrade));
        let config = options.config.unwrap_or_default();
        let mut state: *mut c_void = std::ptr::null_mut();
        if let Some(init) = descriptor.init {
            clear_error();
            // SAFETY: init of a checked descriptor, with this plugin's host
            // table, its config (borrowed for the call) and a state slot.
            let status = unsafe { init(host.as_ptr(), config.as_ptr() as *const c_char, config.len(), &mut state) };
            if status != abi::OK {
                let message = take_error();
                let subject = format!("plugin {}", py_repr(&descriptor.id));
                let text = if status == abi::PANIC {
                    format!("{subject} panicked in init: {message}")
                } else {
                    format!("{subject} failed to initialise: {message}")
                };
                if let Some(registry) = &registry {
                    registry.release_all(host.data.serial); // what its init got from queries
                }
                return Err(Error::from_plugin(ErrorKind::PluginInit, text, message));
            }
        }
        let by_name = descriptor.functions.iter().enumerate().map(|(i, f)| (f.name.clone(), i)).collect();
        let inner = Arc::new(Inner {
                descriptor,
                host,
                state: State(state),
                path: library.path,
                by_name,
                gate: Gate::default(),
                close_started: AtomicBool::new(false),
                finished: AtomicBool::new(false),
                close_on_exit: AtomicBool::new(false),
                typed: AtomicUsize::new(0),
                serial: Serial::default(),
                instances: Mutex::new((0, false)),
                making,
                registry,
        });
        let _ = inner.host.data.owner.set(Arc::downgrade(&inner));
        Ok(Plugin { _user: Some(Arc::new(UserHandles(inner.clone()))), inner })
    }

    /// The host's own reference: it does not keep the plugin open.
    pub(crate) fn internal(inner: Arc<Inner>) -> Plugin {
        Plugin { inner, _user: None }
    }

    /// The call target of the plugin's own functions.
    #[inline]
    pub(crate) fn target(&self) -> Target<'_> {
        let inner = &*self.inner;
        Target { plugin: inner, gate: &inner.gate, serial: &inner.serial, state: inner.state.0, instance: None }
    }

    /// The checked descriptor: id, name, version, functions, offers.
    pub fn descriptor(&self) -> &Descriptor {
        &self.inner.descriptor
    }

    /// The library's path.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&FunctionInfo> {
        self.inner.by_name.get(name).map(|&i| &self.inner.descriptor.functions[i])
    }

    /// Call `name` with `args`, checked against its signature first (the
    /// Python host's checks and messages).
    pub fn call(&self, name: &str, args: &mut [Arg<'_>]) -> Result<Value> {
        let inner = &*self.inner;
        let Some(&index) = inner.by_name.get(name) else {
            return Err(Error::new(
                ErrorKind::NoSuchFunction,
                format!("plugin {} has no function {}", py_repr(&inner.descriptor.id), py_repr(name)),
            ));
        };
        let f = &inner.descriptor.functions[index];
        self.target().dynamic(&f.name, &f.signature, f.call, f.thread_safe(), args)
    }

    /// The error of a call of function `index` that returned `status`, with
    /// the message the plugin set on this thread.
    pub(crate) fn status_error(&self, index: usize, status: i32) -> Error {
        self.target().status_error(&self.inner.descriptor.functions[index].name, status)
    }

    /// Wait for calls in flight, give back what the plugin got from queries,
    /// then run its shutdown: at once, or, while instances or typed handles
    /// of it are alive, when the last of them is dropped (they fail once
    /// closed). Later calls return at once. Refused from inside one of the
    /// plugin's own calls (it would wait for itself). Dropping the last
    /// handle of the plugin closes it too.
    pub fn close(&self) -> Result<()> {
        let inner = &*self.inner;
        if inside(inner.gate.key()) {
            return Err(Error::new(
                ErrorKind::PluginClosed,
                format!(
                    "plugin {}: close() from inside one of its calls (a host function); close it after the call returns",
                    py_repr(&inner.descriptor.id)
                ),
            ));
        }
        inner.shutdown();
        Ok(())
    }

    /// Whether `close()` ran.
    pub fn closed(&self) -> bool {
        self.inner.gate.closing.load(Ordering::SeqCst)
    }
}

/// What a call runs on: a plugin's functions, or one instance's methods
/// (its own gate, serial lock and state, the plugin's host table).
pub(crate) struct Target<'a> {
    pub(crate) plugin: &'a Inner,
    pub(crate) gate: &'a Gate,
    pub(crate) serial: &'a Serial,
    pub(crate) state: *mut c_void,
    /// For an instance: what the messages call it (`Parity instance 'direct' of plugin 'p'`).
    pub(crate) instance: Option<&'a str>,
}

impl Target<'_> {
    pub(crate) fn closed_error(&self) -> Error {
        let text = match self.instance {
            None => format!("plugin {} is closed: load it again to call it", py_repr(&self.plugin.descriptor.id)),
            Some(what) => format!("{what} is closed: create another"),
        };
        Error::new(ErrorKind::PluginClosed, text)
    }

    /// The error of a call of `name` that returned `status`, with the
    /// message the plugin set on this thread.
    pub(crate) fn status_error(&self, name: &str, status: i32) -> Error {
        let where_ = format!("plugin {} function {}", py_repr(&self.plugin.descriptor.id), py_repr(name));
        let message = take_error();
        let (kind, text) = if status == abi::PANIC {
            (ErrorKind::PluginPanic, format!("{where_} panicked: {message}"))
        } else {
            (ErrorKind::PluginCall, format!("{where_} failed: {message}"))
        };
        Error::from_plugin(kind, text, message)
    }

    /// Call `call` with the argument slots and the result slot (last), under
    /// the thread contract; `finish(status, result slot)` runs before the
    /// call's locks are left (it may release the result).
    #[inline]
    pub(crate) fn run<R>(&self, call: abi::CallFn, thread_safe: bool, slots: &mut [abi::Value],
                         finish: impl FnOnce(i32, abi::Value) -> R) -> Result<R> {
        let count = slots.len() - 1;
        let (args, ret) = slots.split_at_mut(count);
        let ret = ret.as_mut_ptr();
        // SAFETY: the result slot, read after the call wrote it and before its locks are left.
        let (_, out) = self.run_raw(call, thread_safe, args.as_ptr(), ret, |status| finish(status, unsafe { *ret }))?;
        Ok(out)
    }

    /// As `run`, on slots the caller owns; `inside(status)` runs under the
    /// call's locks.
    #[inline]
    pub(crate) fn run_raw<R>(&self, call: abi::CallFn, thread_safe: bool, args: *const abi::Value,
                             ret: *mut abi::Value, inside_: impl FnOnce(i32) -> R) -> Result<(i32, R)> {
        self.enter(|| {
            let _serial = (!thread_safe).then(|| self.serial.lock());
            clear_error();
            // SAFETY: a checked call pointer, with the plugin's host table and
            // this target's state; the caller passes one slot per parameter
            // (each checked against its type) and the result slot; calls that
            // are not thread-safe hold the lock.
            let status = unsafe { call(self.plugin.host.as_ptr(), self.state, args, ret) };
            (status, inside_(status))
        })
    }

    /// Run `f` as a call into the target: counted in (refused once it is
    /// closing) and on this thread's list of calls it is inside. A create
    /// runs so, without the serial lock.
    #[inline]
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        let gate = self.gate;
        let out = {
            // Counted in before closing is read, and close sets closing before it
            // reads the count (both sequentially consistent): a call either sees
            // closing, or close waits for it.
            gate.active.fetch_add(1, Ordering::SeqCst);
            let frame = Inside { plugin: gate.key(), outer: INSIDE.with(Cell::get) };
            let _entered = Entered { active: &gate.active, outer: frame.outer };
            if gate.closing.load(Ordering::SeqCst) {
                Err(self.closed_error())
            } else {
                INSIDE.with(|c| c.set(&frame));
                Ok(f())
            }
        };
        if self.instance.is_none() && self.plugin.close_on_exit.load(Ordering::SeqCst)
            && gate.active.load(Ordering::SeqCst) == 0
        {
            self.plugin.shutdown(); // the close its last handle left to the last call out
        }
        out
    }

    /// The dynamic call path: `args` checked against `sig` first (the Python
    /// host's checks and messages), the result decoded and released.
    pub(crate) fn dynamic(&self, name: &str, sig: &Signature, call: abi::CallFn, thread_safe: bool,
                          args: &mut [Arg<'_>]) -> Result<Value> {
        let inner = self.plugin;
        let count = sig.params.len();
        if args.len() != count {
            return Err(Error::new(
                ErrorKind::Type,
                format!("{}{} takes {count} argument{}, {} given", name, sig, if count != 1 { "s" } else { "" },
                        args.len()),
            ));
        }
        let mut slots = vec![abi::Value::ZERO; count + 1];
        let mut keep = Vec::new(); // the NUL-terminated copies of str arguments, kept for the call
        let mut frames = Frames { data: &inner.host.data, made: Vec::new() };
        for (i, (param, arg)) in sig.params.iter().zip(args.iter_mut()).enumerate() {
            let what = Named(name, &param.name);
            if let (Type::Fn(sig), Arg::HostFn(closure)) = (&param.ty, &*arg) {
                slots[i].func = frames.open(closure, sig, name, &param.name);
                continue;
            }
            slots[i] = slot(&param.ty, arg, &what, &mut keep)?;
        }
        let result = sig.result;
        let unset = UNSET.as_ptr() as *const c_void;
        if matches!(result, Some(Scalar::Str | Scalar::Bytes)) {
            slots[count].bytes = abi::Bytes { ptr: unset, len: 0, release: None };
        }
        // The result is read, and released, before the call's locks are left:
        // a release is plugin code too, under the same contract as the call.
        self.run(call, thread_safe, &mut slots, |status, ret| {
            if let Some(error) = frames.close() {
                // A host function failed: that is the call's error. A result it made anyway is released unread.
                if status == abi::OK && matches!(result, Some(Scalar::Str | Scalar::Bytes)) {
                    // SAFETY: the result slot of a str or bytes function, which the plugin wrote.
                    let b = unsafe { ret.bytes };
                    if b.ptr != unset && (b.ptr as usize >= NO_ADDRESS || (b.len == 0 && (b.ptr as usize) <= 1)) {
                        if let Some(release) = b.release {
                            // SAFETY: the plugin's own release, for its own result, once.
                            unsafe { release(b.ptr as *mut c_void, b.len) };
                        }
                    }
                }
                return Err(error);
            }
            if status != abi::OK {
                return Err(self.status_error(name, status));
            }
            decode(result, ret, unset, &Where(&inner.descriptor.id, name))
        })?
    }

}

impl Inner {
    /// Close: wait for the calls in flight, give back what it holds, and run
    /// the shutdown unless instances or typed handles are left (then the
    /// last one to go runs it). Only the first close does this; no lock is
    /// held while plugin code runs, which may close or release again.
    pub(crate) fn shutdown(&self) {
        if self.close_started.swap(true, Ordering::SeqCst) {
            return;
        }
        self.gate.close_and_wait();
        if self.typed.load(Ordering::SeqCst) == 0 {
            self.give_back(); // (else the last typed handle does, when no typed call can be using it)
        }
        let run = {
            let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
            instances.1 = instances.0 > 0;
            instances.0 == 0
        };
        if run {
            self.finish();
        }
    }

    /// Release what it still holds from queries (it may be one of its own instances).
    pub(crate) fn give_back(&self) {
        if let Some(registry) = &self.registry {
            let left = registry.release_all(self.host.data.serial);
            if left > 0 {
                log::warn!(target: &self.host.data.target,
                           "a plugin shut down holding {left} objects from host->query; released them");
            }
        }
    }

    /// The shutdown itself, once: after every call, instance and handle.
    fn finish(&self) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        self.host.data.shutting.store(true, Ordering::SeqCst); // its queries from now on find nothing
        if let Some(shutdown) = self.descriptor.shutdown {
            // SAFETY: once, after every call and instance: new calls see closing, and none is in flight.
            unsafe { shutdown(self.host.as_ptr(), self.state.0) };
        }
        self.give_back();
        if let Some(registry) = &self.registry {
            registry.detach(self);
        }
    }

    /// A typed handle went: the last one gives back what a close left.
    pub(crate) fn typed_gone(&self) {
        if self.typed.fetch_sub(1, Ordering::SeqCst) == 1 && self.close_started.load(Ordering::SeqCst) {
            self.give_back();
        }
        self.instance_gone();
    }

    /// One more instance or typed handle.
    pub(crate) fn hold(&self) {
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
    }

    /// An instance was destroyed or a typed handle dropped; the last one runs
    /// a shutdown close() left.
    pub(crate) fn instance_gone(&self) {
        let run = {
            let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
            instances.0 -= 1;
            let run = instances.0 == 0 && instances.1;
            instances.1 &= !run;
            run
        };
        if run {
            self.finish();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The sentinel a str or bytes result slot holds until the plugin writes it.
pub(crate) static UNSET: [u8; 1] = [0];

/// The host functions of one call: registered as live handles while it runs.
struct Frames<'a> {
    data: &'a HostData,
    made: Vec<(usize, Arc<Frame>)>,
}

impl Frames<'_> {
    fn open(&mut self, closure: &HostFn<'_>, sig: &Signature, function: &str, param: &str) -> *const abi::FnHandle {
        // SAFETY: the lifetime is erased for the frame, which never runs the
        // closure after this call: close() shuts it before the call returns.
        let closure: *const HostFn<'static> = unsafe { std::mem::transmute(closure as *const HostFn<'_>) };
        let frame = Arc::new(Frame {
            closure,
            sig: sig.clone(),
            function: function.to_string(),
            param: param.to_string(),
            open: std::sync::RwLock::new(true),
            error: Mutex::new(None),
        });
        let handle = self.data.next_handle.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.data.frames.lock().unwrap_or_else(|e| e.into_inner()).insert(handle, frame.clone());
        self.made.push((handle, frame));
        handle as *const abi::FnHandle
    }

    /// Shut every frame (waiting for invokes in flight on other threads) and
    /// unregister it; the first host function's error, if any.
    fn close(&mut self) -> Option<Error> {
        let mut first = None;
        for (handle, frame) in self.made.drain(..) {
            *frame.open.write().unwrap_or_else(|e| e.into_inner()) = false;
            self.data.frames.lock().unwrap_or_else(|e| e.into_inner()).remove(&handle);
            let error = frame.error.lock().unwrap_or_else(|e| e.into_inner()).take();
            if first.is_none() {
                first = error;
            }
        }
        first
    }
}

impl Drop for Frames<'_> {
    fn drop(&mut self) {
        self.close(); // (an early return: no frame outlives the call)
    }
}

/// A value of scalar type `s` in a slot the plugin wrote (a host function's
/// argument); Err: why its text is not UTF-8.
///
/// # Safety
/// The slot holds a value of `s` in its member; str and bytes point to `len` readable bytes.
pub(crate) unsafe fn value_of(s: Scalar, v: abi::Value) -> std::result::Result<Value, String> {
    // SAFETY: the caller's promise.
    unsafe {
        Ok(match s {
            Scalar::Bool => Value::Bool(v.u64 != 0),
            Scalar::I8 => Value::I64(v.u64 as i8 as i64),
            Scalar::I16 => Value::I64(v.u64 as i16 as i64),
            Scalar::I32 => Value::I64(v.u64 as i32 as i64),
            Scalar::I64 => Value::I64(v.i64),
            Scalar::U8 => Value::U64(v.u64 as u8 as u64),
            Scalar::U16 => Value::U64(v.u64 as u16 as u64),
            Scalar::U32 => Value::U64(v.u64 as u32 as u64),
            Scalar::U64 => Value::U64(v.u64),
            Scalar::F32 => Value::F32(v.f32),
            Scalar::F64 => Value::F64(v.f64),
            Scalar::Str | Scalar::Bytes => {
                let b = v.bytes;
                let data = if b.len == 0 || b.ptr.is_null() {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(b.ptr as *const u8, b.len).to_vec()
                };
                if s == Scalar::Bytes {
                    Value::Bytes(data)
                } else {
                    Value::Str(String::from_utf8(data).map_err(|e| utf8_reason(e.as_bytes(), &e.utf8_error()))?)
                }
            }
        })
    }
}

fn value_type_name(v: &Value) -> &'static str {
    match v {
        Value::None => "NoneType",
        Value::Bool(_) => "bool",
        Value::I64(_) | Value::U64(_) => "int",
        Value::F32(_) | Value::F64(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
    }
}

/// A host function's result in the plugin's slot, after the Python host's
/// checks of it (type, range); `what` names it in messages.
pub(crate) fn store_result(kind: Scalar, result: Value, ret: &mut abi::Value, what: &dyn Fn() -> String) -> Result<()> {
    let wrong = |expected: &str| {
        Error::new(ErrorKind::Type, format!("{} must be {expected} ({}), got {}", what(), kind.name(), value_type_name(&result)))
    };
    if let Some((low, high)) = kind.range() {
        let n: i128 = match result {
            Value::I64(n) => n as i128,
            Value::U64(n) => n as i128,
            _ => return Err(wrong("int")),
        };
        if !(low..=high).contains(&n) {
            return Err(Error::new(
                ErrorKind::Value,
                format!("{}: {n} is out of range for {} ({low} to {high})", what(), kind.name()),
            ));
        }
        if kind.slot() == "i64" {
            ret.i64 = n as i64;
        } else {
            ret.u64 = n as u64;
        }
        return Ok(());
    }
    match (kind, &result) {
        (Scalar::Bool, Value::Bool(b)) => ret.u64 = *b as u64,
        (Scalar::Bool, _) => return Err(wrong("bool")),
        (Scalar::F32 | Scalar::F64, Value::F32(_) | Value::F64(_) | Value::I64(_) | Value::U64(_)) => {
            let x = match result {
                Value::F32(x) => x as f64,
                Value::F64(x) => x,
                Value::I64(n) => n as f64,
                Value::U64(n) => n as f64,
                _ => unreachable!("matched above"),
            };
            if kind == Scalar::F32 {
                if x.is_finite() && x.abs() > F32_MAX {
                    return Err(Error::new(ErrorKind::Value, format!("{}: {} is out of range for f32", what(), py_float(x))));
                }
                ret.f32 = x as f32;
            } else {
                ret.f64 = x;
            }
        }
        (Scalar::F32 | Scalar::F64, _) => return Err(wrong("float")),
        (Scalar::Str, Value::Str(s)) => {
            // SAFETY: ret is the plugin's slot; the bytes are the plugin's to release, with this host's free.
            unsafe { give_bytes(ret, s.as_bytes()) }
        }
        (Scalar::Str, _) => return Err(wrong("str")),
        (Scalar::Bytes, Value::Bytes(b)) => {
            // SAFETY: as above.
            unsafe { give_bytes(ret, b) }
        }
        (Scalar::Bytes, _) => return Err(wrong("bytes-like object")),
        _ => unreachable!("integers are handled above"),
    }
    Ok(())
}

/// `f() argument 'x'`, written only when a message needs it.
struct Named<'a>(&'a str, &'a str);

impl std::fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}() argument {}", self.0, py_repr(self.1))
    }
}

/// `plugin 'p' function 'f'`, written only when a message needs it.
pub(crate) struct Where<'a>(pub(crate) &'a str, pub(crate) &'a str);

impl std::fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugin {} function {}", py_repr(self.0), py_repr(self.1))
    }
}

fn wrong(what: &Named<'_>, expected: &str, ty: &Type, arg: &Arg<'_>) -> Error {
    Error::new(ErrorKind::Type, format!("{what} must be {expected} ({ty}), got {}", arg.type_name()))
}

/// One argument in its slot, with the Python host's checks.
fn slot(ty: &Type, arg: &mut Arg<'_>, what: &Named<'_>, keep: &mut Vec<Vec<u8>>) -> Result<abi::Value> {
    let mut v = abi::Value::ZERO;
    match (ty, &*arg) {
        (Type::Scalar(s), _) if s.range().is_some() => {
            let Arg::Int(n) = *arg else { return Err(wrong(what, "int", ty, arg)) };
            let (low, high) = s.range().expect("an integer");
            if !(low..=high).contains(&n) {
                return Err(Error::new(
                    ErrorKind::Value,
                    format!("{what}: {n} is out of range for {} ({low} to {high})", s.name()),
                ));
            }
            if s.slot() == "i64" {
                v.i64 = n as i64;
            } else {
                v.u64 = n as u64;
            }
        }
        (Type::Scalar(Scalar::Bool), Arg::Bool(b)) => v.u64 = *b as u64,
        (Type::Scalar(Scalar::Bool), _) => return Err(wrong(what, "bool", ty, arg)),
        (Type::Scalar(s @ (Scalar::F32 | Scalar::F64)), _) => {
            let x = match *arg {
                Arg::Float(x) => x,
                Arg::Int(n) => n as f64,
                _ => return Err(wrong(what, "float", ty, arg)),
            };
            if *s == Scalar::F32 {
                if x.is_finite() && x.abs() > F32_MAX {
                    return Err(Error::new(ErrorKind::Value, format!("{what}: {} is out of range for f32", py_float(x))));
                }
                v.f32 = x as f32;
            } else {
                v.f64 = x;
            }
        }
        (Type::Scalar(Scalar::Str), Arg::Str(s)) => {
            if let Some(at) = s.chars().position(|c| c == '\0') {
                return Err(Error::new(
                    ErrorKind::Value,
                    format!(
                        "{what}: contains a NUL character (at index {at}); a str reaches the plugin as NUL-terminated \
                         text, which would end there: pass bytes for data with NULs"
                    ),
                ));
            }
            // A str argument is NUL-terminated for C: the caller's &str has no
            // NUL after it, so the text goes in a copy that has one.
            let mut copy = Vec::with_capacity(s.len() + 1);
            copy.extend_from_slice(s.as_bytes());
            copy.push(0);
            v.bytes = abi::Bytes { ptr: copy.as_ptr() as *const c_void, len: s.len(), release: None };
            keep.push(copy); // (a Vec's buffer stays where it is when the Vec moves)
        }
        (Type::Scalar(Scalar::Str), _) => return Err(wrong(what, "str", ty, arg)),
        (Type::Scalar(Scalar::Bytes), Arg::Bytes(b)) => v.bytes = abi::Bytes { ptr: b.as_ptr() as *const c_void, len: b.len(), release: None },
        (Type::Scalar(Scalar::Bytes), Arg::Buf(b)) if b.elem == Scalar::U8 => {
            v.bytes = abi::Bytes { ptr: b.ptr as *const c_void, len: b.len, release: None }
        }
        (Type::Scalar(Scalar::Bytes), _) => return Err(wrong(what, "bytes-like object", ty, arg)),
        (Type::Buf(elem) | Type::MutBuf(elem), _) => {
            // The Python host's checks; the advice names Rust's types.
            let writable = matches!(ty, Type::MutBuf(_));
            let (found, ptr, len) = match &*arg {
                Arg::Buf(b) if !writable => (b.elem, b.ptr as *mut c_void, b.len),
                Arg::Bytes(b) if !writable => (Scalar::U8, b.as_ptr() as *mut c_void, b.len()),
                Arg::MutBuf(b) => (b.elem, b.ptr as *mut c_void, b.len),
                Arg::Buf(_) | Arg::Bytes(_) => {
                    return Err(Error::new(
                        ErrorKind::Type,
                        format!("{what} is a read-only slice, {ty} needs a writable one: pass a &mut [{}]", elem.name()),
                    ))
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::Type,
                        format!("{what} must be a buffer of {} ({ty}), such as a &[{}], got {}", elem.name(), elem.name(),
                                arg.type_name()),
                    ))
                }
            };
            if found != *elem {
                return Err(Error::new(
                    ErrorKind::Type,
                    format!("{what} has elements of {}, {ty} needs {}: pass a &{}[{}]", found.name(), elem.name(),
                            if writable { "mut " } else { "" }, elem.name()),
                ));
            }
            v.buf = abi::Buf { ptr, len };
        }
        (Type::Fn(_), _) => {
            return Err(Error::new(ErrorKind::Type, format!("{what} must be callable ({ty}), got {}", arg.type_name())))
        }
        (Type::Scalar(_), _) => unreachable!("every scalar is handled above"),
    }
    Ok(v)
}

/// A float as Python prints it (`1e+39`, `3.5`).
fn py_float(x: f64) -> String {
    let text = format!("{x:?}");
    if let Some((mantissa, exp)) = text.split_once('e') {
        let sign = if exp.starts_with('-') { "-" } else { "+" };
        let digits = exp.trim_start_matches('-');
        return format!("{mantissa}e{sign}{digits:0>2}").replace(".0e", "e");
    }
    text
}

pub(crate) fn decode(result: Option<Scalar>, ret: abi::Value, unset: *const c_void, where_: &Where<'_>) -> Result<Value> {
    let Some(r) = result else { return Ok(Value::None) };
    if !matches!(r, Scalar::Str | Scalar::Bytes) {
        // SAFETY: the member the result's type uses, which the plugin wrote.
        return Ok(unsafe { value_of(r, ret) }.expect("no text to decode"));
    }
    // SAFETY: a str or bytes result: the plugin wrote ret.bytes, or left the sentinel.
    let b = unsafe { ret.bytes };
    if b.ptr == unset {
        return Err(Error::new(
            ErrorKind::PluginCall,
            format!(
                "{where_} returned FERRULE_OK without writing its {} result: fill in ret->bytes (ptr, len, release), or \
                 return a failure status",
                r.name()
            ),
        ));
    }
    let address = b.ptr as usize;
    if (address < NO_ADDRESS || b.len > MAX_RESULT_LEN) && !(b.len == 0 && address <= 1) {
        return Err(refused(r, address, b.len, where_));
    }
    // SAFETY: an address and a length that passed the checks: the plugin's result, read once.
    let value = unsafe { value_of(r, ret) };
    if let Some(release) = b.release {
        // SAFETY: the plugin's own release, for its own result, once.
        unsafe { release(b.ptr as *mut c_void, b.len) };
    }
    value.map_err(|reason| {
        Error::new(ErrorKind::PluginCall, format!("{where_} returned text that is not valid UTF-8 ({reason}); expected str"))
    })
}

fn refused(r: Scalar, address: usize, len: usize, where_: &Where<'_>) -> Error {
    let found = format!("{where_} returned a {} result with ptr {address:#x} and len {len}", r.name());
    let (why, with_what) = if len > MAX_RESULT_LEN {
        ("len is more than any real result (2^48 bytes)".to_string(), " with len the data's size in bytes")
    } else if address == 0 {
        ("ptr is NULL with a non-zero len (NULL is allowed only with len 0)".to_string(), " with ptr pointing at the data")
    } else {
        (format!("ptr is not an address (below {NO_ADDRESS}), as when an integer is written to ret->i64 or ret->u64"), "")
    };
    Error::new(
        ErrorKind::PluginCall,
        format!(
            "{found}; {why}: a {} result must set ret->bytes (ptr, len, release){with_what}, e.g. with \
             ferrule_return_copy(host, ret, data, len)",
            r.name()
        ),
    )
}
