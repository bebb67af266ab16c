//! A `PluginHost`: the plugins it loaded, the services the Rust program
//! provides, and the objects it lends plugins through host->query, call
//! and release.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use ferrule_sdk::__private::iface::{Provided, Spec};
use ferrule_sdk::abi;

use crate::error::Result;
use crate::host::{give_bytes, restore_error, stash_error, take_error};
use crate::instance::{being_created, Instance};
use crate::plugin::{Inner, LoadOptions, Plugin, Serial};

use crate::types::py_repr;

/// An object the Rust program implements for plugins to query: a value of
/// a type that implements an interface's trait, called through the same
/// generated thunks a plugin's implementation uses. Made from a generated
/// `provided(value)` (or `service(value)` of `ferrule generate --rust-host`).
pub struct Service {
    provided: Provided,
    /// Calls into a service that is not thread-safe take it, one thread at a
    /// time (a call back into it on the same thread is refused by its thunk).
    serial: Serial,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let spec = self.provided.spec();
        write!(f, "<ferrule service {} {}/{}>", spec.name, spec.id, spec.revision)
    }
}

impl Service {
    /// The service of a provided value: `Service::new(api::store::provided(MyStore::default()))`.
    pub fn new(provided: Provided) -> Service {
        Service { provided, serial: Serial::default() }
    }

    /// The interface revision it serves.
    pub fn spec(&self) -> &Spec {
        self.provided.spec()
    }
}

enum Lentee {
    Service(Arc<Service>),
    Instance(Instance),
}

struct Lent {
    /// The serial number of the plugin it was lent to.
    owner: usize,
    what: Arc<Lentee>,
}

/// Zeroed slots a method gets for a caller's NULL arguments: more than any
/// method reads (the descriptor allows at most 64 parameters).
const NULL_ARGS_SLOTS: usize = 64;

#[derive(Default)]
pub(crate) struct Registry {
    services: RwLock<HashMap<(String, u32), Arc<Service>>>,
    plugins: Mutex<Vec<Weak<Inner>>>,
    lent: Mutex<HashMap<usize, Lent>>,
    tokens: AtomicUsize,
}

/// Loads plugins that may use services the Rust program provides, and
/// implementations that the other plugins it loaded offer: what a plugin's
/// `Client::query()` finds. Plugins loaded with [`Plugin::load`] find
/// nothing.
///
/// ```no_run
/// # mod api { pub mod dictionary { pub fn service<T>(_: T) -> ferrule_host::Service { unimplemented!() } } }
/// # struct Words;
/// use ferrule_host::{LoadOptions, PluginHost};
///
/// let host = PluginHost::new();
/// host.provide(api::dictionary::service(Words));
/// let textkit = host.load("build/libtextkit.so", LoadOptions::default())?;
/// # Ok::<(), ferrule_host::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct PluginHost {
    registry: Arc<Registry>,
    /// The create and destroy lock of every plugin it loads.
    making: Arc<Serial>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let services = self.registry.services.read().unwrap_or_else(|e| e.into_inner()).len();
        write!(f, "<ferrule PluginHost, {services} services>")
    }
}

impl PluginHost {
    /// A host with no services and no plugins.
    pub fn new() -> PluginHost {
        PluginHost::default()
    }

    /// Serve `service` to plugins that query its interface revision (with
    /// its fingerprint), in place of one provided before, which is returned.
    /// Objects already lent keep the service they were lent.
    pub fn provide(&self, service: Service) -> Option<Arc<Service>> {
        let key = (service.spec().id.to_string(), service.spec().revision);
        self.registry.services.write().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::new(service))
    }

    /// Stop serving `spec`'s interface revision; the service, if there was one.
    pub fn withdraw(&self, spec: &Spec) -> Option<Arc<Service>> {
        let key = (spec.id.to_string(), spec.revision);
        self.registry.services.write().unwrap_or_else(|e| e.into_inner()).remove(&key)
    }

    /// Load a plugin as [`Plugin::load`] does, served by this host: its
    /// queries (from init on) find the host's services, then the
    /// implementations of the other plugins this host loaded, then its own.
    pub fn load(&self, path: impl AsRef<Path>, options: LoadOptions) -> Result<Plugin> {
        let plugin = Plugin::load_in(path.as_ref(), options, Some(self.registry.clone()), self.making.clone())?;
        let mut plugins = self.registry.plugins.lock().unwrap_or_else(|e| e.into_inner());
        plugins.retain(|p| p.strong_count() > 0);
        plugins.push(Arc::downgrade(&plugin.inner));
        Ok(plugin)
    }
}

/// `plugin 'p' asked for id/rev with layout fingerprint ...`: the start of both warnings.
fn asked(caller: &str, id: &str, revision: u32, fingerprint: u64) -> String {
    format!("plugin {} asked for {id}/{revision} with layout fingerprint {fingerprint:#018x}", py_repr(caller))
}

impl Registry {
    /// host->query for the plugin of serial number `table` (logging to
    /// `target`): a token, or 0.
    pub(crate) fn query(&self, table: usize, target: &str, caller_id: &str, id: &str, revision: u32, fingerprint: u64)
                        -> usize {
        let service = self.services.read().unwrap_or_else(|e| e.into_inner()).get(&(id.to_string(), revision)).cloned();
        let what = if let Some(service) = service {
            if service.spec().fingerprint != fingerprint {
                let indented = crate::instance::indent(service.spec().layout);
                log::warn!(target: target,
                    "{}, the host's {} has {:#018x}: regenerate the plugin's code from the host's declaration\nhost layout:\n{indented}",
                    asked(caller_id, id, revision, fingerprint), service.spec().name, service.spec().fingerprint);
                return 0;
            }
            Lentee::Service(service)
        } else {
            match self.instance_for(table, target, caller_id, id, revision, fingerprint) {
                Some(instance) => Lentee::Instance(instance),
                None => return 0,
            }
        };
        let token = self.tokens.fetch_add(1, Ordering::Relaxed) + 1;
        self.lent.lock().unwrap_or_else(|e| e.into_inner()).insert(token, Lent { owner: table, what: Arc::new(what) });
        token
    }

    /// An instance of another loaded plugin's implementation (the caller's own last).
    fn instance_for(&self, table: usize, target: &str, caller_id: &str, id: &str, revision: u32, fingerprint: u64)
                    -> Option<Instance> {
        let plugins: Vec<Arc<Inner>> = {
            let plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
            plugins.iter().filter_map(Weak::upgrade).collect()
        };
        let (own, others): (Vec<_>, Vec<_>) = plugins.into_iter().partition(|p| p.host.data.serial == table);
        for inner in others.into_iter().chain(own) {
            let plugin = Plugin::internal(inner);
            for (index, offer) in plugin.descriptor().offers.iter().enumerate() {
                if offer.id != id || offer.revision != revision {
                    continue;
                }
                if offer.fingerprint != fingerprint {
                    log::warn!(target: target, "{}, plugin {} implements it as {} with {:#018x}: skipped",
                               asked(caller_id, id, revision, fingerprint), py_repr(&plugin.descriptor().id),
                               py_repr(&offer.name), offer.fingerprint);
                    continue;
                }
                if plugin.closed() || being_created(&plugin, index) {
                    continue; // (its own create asking for itself: no recursion)
                }
                match plugin.create_lent(index) {
                    Ok(instance) => return Some(instance),
                    Err(e) => {
                        log::warn!(target: target, "{}: {}", asked(caller_id, id, revision, fingerprint), e.message());
                        return None;
                    }
                }
            }
        }
        None
    }

    fn find(&self, table: usize, token: usize) -> Option<Arc<Lentee>> {
        let lent = self.lent.lock().unwrap_or_else(|e| e.into_inner());
        lent.get(&token).filter(|l| l.owner == table).map(|l| l.what.clone())
    }

    /// host->call on token `token` for the plugin of host table `host`, serial number `serial`.
    ///
    /// # Safety
    /// `args` and `ret` are the plugin's, as host->call received them; `ret` is not NULL.
    pub(crate) unsafe fn call(&self, host: *const abi::Host, serial: usize, token: usize, method: u32,
                              args: *const abi::Value, ret: *mut abi::Value) -> i32 {
        let Some(what) = self.find(serial, token) else {
            // SAFETY: ret is the caller's slot.
            unsafe { give_bytes(ret, b"host->call: unknown or released object") };
            return abi::ERROR;
        };
        // NULL arguments: a service method that takes some refuses them (the
        // Python host's words); otherwise the callee gets zeroed slots, never
        // NULL, as the Python host gives (implementations may rely on it).
        let zeros; // (made only for a NULL: host->call is a hot path)
        let args = if args.is_null() {
            if let Lentee::Service(service) = &*what {
                if let Some((name, signature)) = service.spec().methods.get(method as usize) {
                    if !signature.starts_with("()") {
                        let text = format!("host->call: {}.{name} needs arguments, got NULL", service.spec().name);
                        // SAFETY: ret is the caller's slot.
                        unsafe { give_bytes(ret, text.as_bytes()) };
                        return abi::ERROR;
                    }
                }
            }
            zeros = [abi::Value::ZERO; NULL_ARGS_SLOTS];
            zeros.as_ptr()
        } else {
            args
        };
        // The caller's pending message survives what the call runs.
        let saved = stash_error();
        let status = match &*what {
            // SAFETY: as the caller promised.
            Lentee::Instance(instance) => unsafe { instance.call_for_plugin(method, args, ret) },
            // SAFETY: as the caller promised.
            Lentee::Service(service) => unsafe { call_service(service, host, method, args, ret) },
        };
        restore_error(saved);
        status
    }

    /// host->release: whether `token` was lent to that plugin.
    pub(crate) fn release(&self, table: usize, token: usize) -> bool {
        let removed = {
            let mut lent = self.lent.lock().unwrap_or_else(|e| e.into_inner());
            match lent.get(&token) {
                Some(l) if l.owner == table => lent.remove(&token),
                _ => None,
            }
        };
        removed.is_some() // (dropped here, outside the lock: an instance's destroy runs plugin code)
    }

    /// Give back everything lent to the plugin of serial number `table`; how many there were.
    pub(crate) fn release_all(&self, table: usize) -> usize {
        let taken: Vec<Lent> = {
            let mut lent = self.lent.lock().unwrap_or_else(|e| e.into_inner());
            let tokens: Vec<usize> = lent.iter().filter(|(_, l)| l.owner == table).map(|(t, _)| *t).collect();
            tokens.into_iter().filter_map(|t| lent.remove(&t)).collect()
        };
        taken.len()
    }

    /// The plugin shut down.
    pub(crate) fn detach(&self, inner: &Inner) {
        let mut plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        plugins.retain(|p| p.strong_count() > 0 && !std::ptr::eq(p.as_ptr(), inner));
    }
}

/// A service's method `method` through its generated thunk, with the
/// calling plugin's host table; a failure's message goes to `ret->bytes`.
///
/// # Safety
/// As for Registry::call.
unsafe fn call_service(service: &Service, host: *const abi::Host, method: u32, args: *const abi::Value,
                       ret: *mut abi::Value) -> i32 {
    let Some(&call) = service.provided.methods().get(method as usize) else {
        let text = format!("host->call: {} has no method number {method}", service.spec().name);
        // SAFETY: ret is the caller's slot.
        unsafe { give_bytes(ret, text.as_bytes()) };
        return abi::ERROR;
    };
    let _serial = (!service.spec().thread_safe).then(|| service.serial.lock());
    crate::host::clear_error();
    // SAFETY: a generated thunk of the service's own type, on the value
    // new() boxed, with the caller's slots; not thread-safe calls hold the lock.
    let status = unsafe { call(host, service.provided.this(), args, ret) };
    if status == abi::OK {
        return abi::OK;
    }
    let mut message = take_error();
    if message == crate::host::NO_MESSAGE {
        message = format!("(the host's {} service gave no error message)", service.spec().name); // no plugin failed
    }
    // SAFETY: as above.
    unsafe { give_bytes(ret, message.as_bytes()) };
    if status == abi::PANIC { abi::PANIC } else { abi::ERROR }
}
