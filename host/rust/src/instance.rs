//! Interface instances: a plugin's implementation of a host-declared
//! interface revision, checked against the declaration by fingerprint,
//! made with the offer's create and destroyed exactly once.

use std::cell::RefCell;
use std::ffi::c_void;

use ferrule_sdk::__private::iface::Spec;
use ferrule_sdk::abi;

use crate::descriptor::OfferInfo;
use crate::error::{Error, ErrorKind, Result};
use crate::host::{give_bytes, take_error};
use crate::plugin::{inside, Gate, Plugin, Serial, State, Target};
use crate::types::{parse_signature, py_repr, Scalar, Signature};
use crate::value::{Arg, Value};

/// A host's declaration of an interface revision, as `ferrule generate
/// --rust`, `--rust-host` and `ferrule_sdk::interface!` write it (each
/// interface module's `SPEC`).
pub type InterfaceSpec = Spec;

/// One method of an instance, as the call layer sees it.
struct Method {
    /// `Parity.echo_i64`: the Python host's name for it in messages.
    name: String,
    /// None in an instance lent to a plugin, which the host never calls itself.
    signature: Option<Signature>,
    call: abi::CallFn,
}

thread_local! {
    /// The offers whose create runs on this thread (plugin state, offer):
    /// a create that queries is not lent its own implementation.
    static MAKING: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn being_created(plugin: &Plugin, offer: usize) -> bool {
    let key = (plugin.inner.gate.key(), offer);
    MAKING.with(|m| m.borrow().contains(&key))
}

/// An instance of a plugin's implementation of an interface. Its methods
/// are called by name on the dynamic path ([`Instance::call`]) or through a
/// generated client (`Client::new(instance)`). Calls into an instance of an
/// interface that is not thread-safe are serialised (each instance has its
/// own lock). Destroyed by [`Instance::close`] or when dropped, after every
/// call into it; the plugin's shutdown waits for its last instance.
pub struct Instance {
    plugin: Plugin,
    offer: usize,
    fingerprint: u64,
    methods: Vec<Method>,
    thread_safe: bool,
    this: State,
    gate: Gate,
    serial: Serial,
    destroyed: std::sync::Mutex<bool>,
    /// `Parity instance 'direct' of plugin 'p'`.
    what: String,
    /// `Parity`, or a lent instance's `id/revision`: what host->call's messages name.
    iface: String,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<ferrule {}>", self.what)
    }
}

/// `text` indented by four spaces, for the layouts in messages.
pub(crate) fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// The first differing line of two canonical layouts (the Python host's words).
fn first_difference(expected: &str, found: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), found.lines().collect());
    for i in 0..a.len().max(b.len()) {
        let left = a.get(i).copied().unwrap_or("(end)");
        let right = b.get(i).copied().unwrap_or("(end)");
        if left != right {
            return format!("line {}: host has {}, plugin has {}", i + 1, py_repr(left), py_repr(right));
        }
    }
    "the texts are equal, the fingerprints are not: the plugin's fingerprint does not match its own layout".to_string()
}

/// InterfaceMismatch unless `offer` was generated from `spec`.
fn check_offer(plugin_id: &str, offer: &OfferInfo, spec: &Spec) -> Result<()> {
    let methods = spec.methods.len() as u32;
    if offer.fingerprint == spec.fingerprint && offer.method_count == methods {
        return Ok(());
    }
    let detail = if offer.fingerprint == spec.fingerprint {
        format!("it has {} methods, the declaration {methods}", offer.method_count)
    } else if !offer.layout.is_empty() {
        format!("first difference: {}", first_difference(spec.layout, &offer.layout))
    } else {
        "the plugin gives no layout text".to_string()
    };
    let found = if offer.layout.is_empty() { "(not given)\n" } else { &offer.layout };
    Err(Error::new(
        ErrorKind::InterfaceMismatch,
        format!(
            "plugin {} implementation {} of {}/{} has layout fingerprint {:#018x}, the host's declaration {} has \
             {:#018x}; {detail}. Regenerate the plugin's code from the host's declaration (ferrule generate), or \
             declare the changed interface as a new revision.\nhost layout:\n{}plugin layout:\n{}",
            py_repr(plugin_id),
            py_repr(&offer.name),
            spec.id,
            spec.revision,
            offer.fingerprint,
            spec.name,
            spec.fingerprint,
            indent(spec.layout),
            indent(found)
        ),
    ))
}

impl Plugin {
    /// The plugin's implementations of `spec`'s interface revision, in
    /// descriptor order (empty when it offers none). An implementation
    /// generated from another layout of the same id and revision is an
    /// [`ErrorKind::InterfaceMismatch`] error.
    pub fn implementations(&self, spec: &Spec) -> Result<Vec<&OfferInfo>> {
        let d = self.descriptor();
        let mut found = Vec::new();
        for offer in d.offers.iter().filter(|o| o.id == spec.id && o.revision == spec.revision) {
            check_offer(&d.id, offer, spec)?;
            found.push(offer);
        }
        Ok(found)
    }

    /// An instance of the implementation called `name` (or the first) of
    /// `spec`'s interface revision, made by the plugin's create.
    pub fn create(&self, spec: &Spec, name: Option<&str>) -> Result<Instance> {
        let d = self.descriptor();
        let offered = self.implementations(spec)?;
        let Some(offer) = offered.iter().find(|o| name.is_none_or(|n| o.name == n)) else {
            let which = name.map(|n| format!(" named {}", py_repr(n))).unwrap_or_default();
            let list: Vec<String> = offered.iter().map(|o| py_repr(&o.name)).collect();
            let also = if list.is_empty() { String::new() } else { format!(" (it offers {})", list.join(", ")) };
            return Err(Error::new(
                ErrorKind::NoImplementation,
                format!("plugin {} offers no implementation of {}/{}{which}{also}", py_repr(&d.id), spec.id, spec.revision),
            ));
        };
        let index = d.offers.iter().position(|o| std::ptr::eq(o, *offer)).expect("one of its offers");
        let mut methods = Vec::with_capacity(spec.methods.len());
        for (i, (method, text)) in spec.methods.iter().enumerate() {
            let signature = parse_signature(text).map_err(|e| {
                Error::new(ErrorKind::Signature, format!("the declaration of {}.{method} has signature {text:?}: {e}", spec.name))
            })?;
            methods.push(Method { name: format!("{}.{method}", spec.name), signature: Some(signature),
                                  call: offer.methods[i] });
        }
        let thread_safe = spec.thread_safe || offer.flags & abi::IFACE_THREAD_SAFE != 0;
        self.instantiate(index, spec.name, methods, thread_safe)
    }

    /// An instance of offer `index` for a plugin's query: its methods are
    /// called only on the plugin's slots, so no declaration is needed.
    pub(crate) fn create_lent(&self, index: usize) -> Result<Instance> {
        let offer = &self.descriptor().offers[index];
        let name = format!("{}/{}", offer.id, offer.revision);
        let methods = offer.methods.iter().enumerate()
            .map(|(i, &call)| Method { name: format!("{name} method #{i}"), signature: None, call })
            .collect();
        self.instantiate(index, &name, methods, offer.flags & abi::IFACE_THREAD_SAFE != 0)
    }

    fn instantiate(&self, index: usize, iface: &str, methods: Vec<Method>, thread_safe: bool) -> Result<Instance> {
        let d = self.descriptor();
        let offer = &d.offers[index];
        let this = self.run_create(index, &format!("{iface} {}", py_repr(&offer.name)))?;
        Ok(Instance {
            plugin: self.clone(),
            offer: index,
            fingerprint: offer.fingerprint,
            methods,
            thread_safe,
            this: State(this),
            gate: Gate::default(),
            serial: Serial::default(),
            destroyed: std::sync::Mutex::new(false),
            what: format!("{iface} instance {} of plugin {}", py_repr(&offer.name), py_repr(&d.id)),
            iface: iface.to_string(),
        })
    }

    /// Offer `index`'s create, as a call into the plugin (refused once it is
    /// closed), one create or destroy at a time.
    fn run_create(&self, index: usize, what: &str) -> Result<*mut c_void> {
        let inner = &*self.inner;
        let offer = &inner.descriptor.offers[index];
        let mut made: *mut c_void = std::ptr::null_mut();
        let target = self.target();
        let key = (inner.gate.key(), index);
        MAKING.with(|m| m.borrow_mut().push(key));
        let outcome = {
            let _making = inner.making.lock();
            target.enter(|| {
                crate::host::clear_error();
                // SAFETY: a checked offer's create, with the plugin's host
                // table and state and a slot for the instance.
                let status = unsafe { (offer.create)(inner.host.as_ptr(), inner.state.0, &mut made) };
                if status == abi::OK {
                    inner.hold(); // counted while the call still holds off a close
                }
                status
            })
        };
        MAKING.with(|m| {
            let mut m = m.borrow_mut();
            if let Some(at) = m.iter().rposition(|k| *k == key) {
                m.remove(at);
            }
        });
        let status = outcome?;
        if status != abi::OK {
            let message = take_error();
            let kind = if status == abi::PANIC { ErrorKind::PluginPanic } else { ErrorKind::PluginCall };
            let text = format!("plugin {} could not create {what}: {message}", py_repr(&inner.descriptor.id));
            return Err(Error::from_plugin(kind, text, message));
        }
        Ok(made)
    }
}

impl Instance {
    /// The plugin whose implementation it is.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The implementation it is an instance of.
    pub fn implementation(&self) -> &OfferInfo {
        &self.plugin.descriptor().offers[self.offer]
    }

    /// Whether calls may overlap (the interface or the implementation is thread-safe).
    pub fn thread_safe(&self) -> bool {
        self.thread_safe
    }

    fn target(&self) -> Target<'_> {
        Target {
            plugin: &self.plugin.inner,
            gate: &self.gate,
            serial: &self.serial,
            state: self.this.0,
            instance: Some(&self.what),
        }
    }

    fn method(&self, index: usize) -> Option<&Method> {
        self.methods.get(index)
    }

    /// The method called `name` (its own name, not `Parity.name`), if the host declared it.
    fn named(&self, name: &str) -> Option<(&Method, &Signature)> {
        let m = self.methods.iter().find(|m| m.name.rsplit_once('.').is_some_and(|(_, n)| n == name))?;
        m.signature.as_ref().map(|s| (m, s))
    }

    /// The call-layer signature of method `name` (a struct argument as
    /// `bytes`, a struct result as a trailing `out: mutbuf[u8]`).
    pub fn signature(&self, name: &str) -> Option<&Signature> {
        self.named(name).map(|(_, s)| s)
    }

    /// Call method `name` with `args`, checked against its call-layer
    /// signature (a struct argument is its C layout as bytes, a struct result
    /// a trailing `out` buffer): the Python host's checks and messages.
    pub fn call(&self, name: &str, args: &mut [Arg<'_>]) -> Result<Value> {
        let Some((m, signature)) = self.named(name) else {
            return Err(Error::new(ErrorKind::NoSuchFunction, format!("{} has no method {}", self.what, py_repr(name))));
        };
        self.target().dynamic(&m.name, signature, m.call, self.thread_safe, args)
    }

    /// Method number `index` on slots the caller encoded, for a plugin's
    /// host->call: the status, a failure's message in `ret->bytes` (owned
    /// by the caller), a result passed on as the callee wrote it.
    ///
    /// # Safety
    /// `args` holds a slot per parameter of the method, `ret` is writable.
    pub(crate) unsafe fn call_for_plugin(&self, index: u32, args: *const abi::Value, ret: *mut abi::Value) -> i32 {
        let Some(m) = self.method(index as usize) else {
            // SAFETY: ret is the caller's slot.
            unsafe { give_bytes(ret, format!("host->call: {} has no method number {index}", self.iface).as_bytes()) };
            return abi::ERROR;
        };
        match self.target().run_raw(m.call, self.thread_safe, args, ret, |_| ()) {
            Ok((abi::OK, ())) => abi::OK,
            Ok((status, ())) => {
                // SAFETY: as above.
                unsafe { give_bytes(ret, take_error().as_bytes()) };
                if status == abi::PANIC { abi::PANIC } else { abi::ERROR }
            }
            Err(e) => {
                // SAFETY: as above.
                unsafe { give_bytes(ret, e.message().as_bytes()) };
                abi::ERROR
            }
        }
    }

    /// Destroy it, after the calls in flight. Idempotent; refused from
    /// inside one of its own calls (a host function).
    pub fn close(&self) -> Result<()> {
        if inside(self.gate.key()) {
            return Err(Error::new(
                ErrorKind::PluginClosed,
                format!(
                    "{}: close() from inside one of its calls (a host function); close it after the call returns",
                    self.what
                ),
            ));
        }
        self.destroy();
        Ok(())
    }

    /// Whether it was closed.
    pub fn closed(&self) -> bool {
        self.gate.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn destroy(&self) {
        let mut destroyed = self.destroyed.lock().unwrap_or_else(|e| e.into_inner());
        if *destroyed {
            return;
        }
        self.gate.close_and_wait();
        *destroyed = true;
        let inner = &*self.plugin.inner;
        let offer = &inner.descriptor.offers[self.offer];
        {
            let _making = inner.making.lock();
            // SAFETY: once, after every call into the instance, with the
            // instance create made; before the plugin's shutdown (which waits
            // for the instance count).
            unsafe { (offer.destroy)(inner.host.as_ptr(), inner.state.0, self.this.0) };
        }
        inner.instance_gone();
    }

    /// Method number `method` with encoded slots, for generated clients.
    ///
    /// # Safety
    /// As for [`ferrule_sdk::Callee::call_raw`].
    unsafe fn raw(&self, method: u32, args: &[abi::Value]) -> Result<abi::Value> {
        let found = self.method(method as usize).and_then(|m| m.signature.as_ref().map(|s| (m, s)));
        let Some((m, signature)) = found else {
            return Err(Error::new(ErrorKind::NoSuchFunction, format!("{} has no method number {method}", self.what)));
        };
        let mut ret = abi::Value::ZERO;
        let text = matches!(signature.result, Some(Scalar::Str | Scalar::Bytes));
        let unset = crate::plugin::UNSET.as_ptr() as *const c_void;
        if text {
            ret.bytes = abi::Bytes { ptr: unset, len: 0, release: None };
        }
        let args_ptr = if args.is_empty() { std::ptr::null() } else { args.as_ptr() };
        let target = self.target();
        let ret_ptr: *mut abi::Value = &mut ret;
        let (status, decoded) = target.run_raw(m.call, self.thread_safe, args_ptr, ret_ptr, |status| {
            // A str or bytes result is checked, copied and released under the call's locks.
            (status == abi::OK && text).then(|| {
                // SAFETY: the slot the call just wrote.
                let written = unsafe { *ret_ptr };
                let where_ = crate::plugin::Where(&self.plugin.descriptor().id, &m.name);
                crate::plugin::decode(signature.result, written, unset, &where_)
            })
        })?;
        if status != abi::OK {
            return Err(target.status_error(&m.name, status));
        }
        match decoded {
            None => Ok(ret),
            Some(value) => {
                let data = match value? {
                    Value::Str(s) => s.into_bytes(),
                    Value::Bytes(b) => b,
                    _ => unreachable!("a str or bytes result"),
                };
                let mut out = abi::Value::ZERO;
                // SAFETY: a fresh slot; the bytes go to the caller with this host's free.
                unsafe { give_bytes(&mut out, &data) };
                Ok(out)
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.destroy();
    }
}

// SAFETY: the fingerprint is the implementation's, checked against the
// client's spec by Client::new; raw() calls its method `method`, and a str or
// bytes result is handed over in memory the caller releases with its release.
unsafe impl ferrule_sdk::Callee for Instance {
    type Error = Error;

    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    unsafe fn call_raw(&self, method: u32, args: &[abi::Value]) -> Result<abi::Value> {
        // SAFETY: the caller's promise.
        unsafe { self.raw(method, args) }
    }
}
