//! A hostile plugin (tests/plugins/c/lender.c) against the Rust host's
//! lifecycle and lending: creates that query, destroys that release, closes
//! that race, loans kept past a shutdown, forged and stale tokens. The plugin
//! counts live instances, overlapping calls, and calls into a plugin state
//! after its shutdown (`viol`); every test asserts on those counts. Each test
//! loads its own copies of the library (its counters are the library's
//! globals). A deadlock ends the test binary through a watchdog.

mod common;

#[allow(clippy::all, unused_imports, dead_code)]
#[path = "../../../tests/plugins/generated/iface_host.rs"]
mod api;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ferrule_host::{Arg, ErrorKind, LoadOptions, Plugin, PluginHost, Value};

/// A copy of lender.c named `name`; `one_offer`: only "h-counter" (else also "h-counter-2").
fn lender(name: &str, one_offer: bool) -> PathBuf {
    let include = format!("-I{}", concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/plugins/generated"));
    let mut flags = vec![include.as_str(), "-lpthread"];
    if one_offer {
        flags.push("-DONE_OFFER");
    }
    common::build_c_plugin("tests/plugins/c/lender.c", &format!("liblender_{name}.so"), &flags)
}

/// A copy of borrower.c named `name`.
fn borrower(name: &str) -> PathBuf {
    let include = format!("-I{}", concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/plugins/generated"));
    common::build_c_plugin("tests/plugins/c/borrower.c", &format!("libborrower_{name}.so"), &[&include, "-lpthread"])
}

/// Fails the whole run if `what` has not finished in `secs`: a deadlock.
struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    fn new(secs: u64, what: &'static str) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let seen = done.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            if !seen.load(Ordering::SeqCst) {
                eprintln!("DEADLOCK: {what} did not finish in {secs} s");
                std::process::exit(99);
            }
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Switches of lender.c: 1 create queries a Counter and keeps it, 2 destroy
/// releases the kept token, 3 shutdown queries one and keeps it, 4 add(777)
/// calls the kept object back, 5 add(778) queries one into the token, 9 resets the counters.
fn set(p: &Plugin, what: u64, value: u64) {
    p.call("set", &mut [Arg::from(what), Arg::from(value)]).unwrap();
}

/// The library's counters, read through a fresh load (which adds one shutdown once read).
fn stats(path: &PathBuf) -> String {
    let p = Plugin::load(path, LoadOptions::default()).unwrap();
    let Value::Str(s) = p.call("stats", &mut []).unwrap() else { unreachable!("stats is a str") };
    s
}

fn token(v: Value) -> u64 {
    match v {
        Value::U64(t) => t,
        other => panic!("a token, got {other:?}"),
    }
}

fn raw(p: &Plugin, token: u64, method: u64, null_args: bool) -> Value {
    p.call("raw", &mut [Arg::from(token), Arg::from(method), Arg::Bool(null_args), Arg::Bool(false)]).unwrap()
}

const UNKNOWN: &str = "status 1: host->call: unknown or released object";

#[test]
fn a_create_that_queries_its_own_interface_gets_the_other_offer() {
    let _w = Watchdog::new(10, "create querying its own interface");
    let path = lender("own", false);
    let host = PluginHost::new();
    let a = host.load(&path, LoadOptions::default()).unwrap();
    set(&a, 9, 0);
    set(&a, 1, 1);
    drop(a.create(&api::counter::SPEC, Some("h-counter")).unwrap());
    drop(a);
    assert!(stats(&path).starts_with("live=0 shut=1 viol=0 overlap=0 creates=2 destroys=2"), "{}", stats(&path));
}

#[test]
fn creates_that_query_each_other_on_two_threads_do_not_deadlock() {
    let _w = Watchdog::new(60, "creates querying each other");
    let (pa, pb) = (lender("abba_a", true), lender("abba_b", true));
    let host = PluginHost::new();
    let a = host.load(&pa, LoadOptions::default()).unwrap();
    let b = host.load(&pb, LoadOptions::default()).unwrap();
    set(&a, 1, 1);
    set(&b, 1, 1);
    for _ in 0..500 {
        let (a2, b2) = (a.clone(), b.clone());
        let t1 = std::thread::spawn(move || drop(a2.create(&api::counter::SPEC, None).unwrap()));
        let t2 = std::thread::spawn(move || drop(b2.create(&api::counter::SPEC, None).unwrap()));
        t1.join().unwrap();
        t2.join().unwrap();
    }
}

#[test]
fn a_destroy_that_releases_a_chain_back_into_its_plugin_completes() {
    let _w = Watchdog::new(10, "a destroy chain");
    let (pa, pb) = (lender("chain_a", true), lender("chain_b", true));
    let host = PluginHost::new();
    let a = host.load(&pa, LoadOptions::default()).unwrap();
    let b = host.load(&pb, LoadOptions::default()).unwrap();
    set(&a, 1, 1); // A's instance holds a B instance, released by its destroy
    set(&b, 2, 1); // B's destroy releases B's kept token
    let x = a.create(&api::counter::SPEC, None).unwrap();
    b.call("grab", &mut []).unwrap(); // B keeps an A instance
    drop(x); // A destroys X, which releases Y (B), whose destroy releases B's A instance
}

#[test]
fn a_second_close_after_a_deferred_close_returns() {
    let _w = Watchdog::new(10, "a second close");
    let (pa, pb) = (lender("twice_a", false), lender("twice_b", false));
    let host = PluginHost::new();
    let a = host.load(&pa, LoadOptions::default()).unwrap();
    let b = host.load(&pb, LoadOptions::default()).unwrap();
    set(&a, 9, 0);
    set(&b, 2, 1);
    set(&a, 5, 1);
    b.call("grab", &mut []).unwrap(); // T1: an A instance lent to B
    a.close().unwrap(); // deferred: T1 is alive
    b.call("poke", &mut [Arg::from(778)]).unwrap(); // T1's add queries a B instance for A
    a.close().unwrap();
    drop((a, b));
    let s = stats(&pa);
    assert!(s.starts_with("live=0 shut=1 viol=0"), "{s}");
}

#[test]
fn a_close_racing_creates_never_shuts_down_under_an_instance() {
    let _w = Watchdog::new(120, "close racing creates");
    let path = lender("race", true);
    set(&Plugin::load(&path, LoadOptions::default()).unwrap(), 9, 0);
    for round in 0..300u64 {
        let p = Plugin::load(&path, LoadOptions::default()).unwrap();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    while let Ok(i) = p.create(&api::counter::SPEC, None) {
                        let _ = i.call("total", &mut []);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(50 + (round % 7) * 30));
        p.close().unwrap();
        for t in threads {
            t.join().unwrap();
        }
    }
    let s = stats(&path);
    assert!(s.starts_with("live=0 shut=301 viol=0 overlap=0"), "{s}");
}

#[test]
fn typed_handles_racing_a_close_see_one_shutdown_per_load() {
    let path = lender("typed", true);
    set(&Plugin::load(&path, LoadOptions::default()).unwrap(), 9, 0);
    for _ in 0..300 {
        let p = Plugin::load(&path, LoadOptions::default()).unwrap();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || loop {
                    let Ok(t) = p.typed::<(), i64>("alive") else { break };
                    let again = t.clone();
                    drop(t);
                    if again.call(()).is_err() {
                        break;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(100));
        p.close().unwrap();
        for t in threads {
            t.join().unwrap();
        }
    }
    let s = stats(&path);
    assert!(s.starts_with("live=0 shut=301 viol=0"), "{s}");
}

#[test]
fn what_a_shutdown_queries_is_refused_and_nothing_stays_lent() {
    let _w = Watchdog::new(10, "a query in shutdown");
    let (pa, pb) = (lender("shutq_a", false), lender("shutq_b", false));
    let host = PluginHost::new();
    let a = host.load(&pa, LoadOptions::default()).unwrap();
    let b = host.load(&pb, LoadOptions::default()).unwrap();
    set(&b, 9, 0);
    set(&a, 3, 1); // A's shutdown queries a Counter and keeps it
    a.close().unwrap();
    b.close().unwrap();
    drop((a, b, host));
    let s = stats(&pb);
    assert!(s.starts_with("live=0 shut=1 viol=0 overlap=0 creates=0"), "{s}");
}

#[test]
fn plugins_dropped_holding_instances_of_each_other_shut_down() {
    let (pa, pb) = (lender("cycle_a", true), lender("cycle_b", true));
    for p in [&pa, &pb] {
        set(&Plugin::load(p, LoadOptions::default()).unwrap(), 9, 0);
    }
    {
        // One that holds an instance of its own implementation.
        let host = PluginHost::new();
        let a = host.load(&pa, LoadOptions::default()).unwrap();
        assert_ne!(token(a.call("grab", &mut []).unwrap()), 0);
    }
    // (Each count includes the shutdown of the load that reset the counters, and of each stats() read.)
    let s = stats(&pa);
    assert!(s.starts_with("live=0 shut=2 viol=0 overlap=0 creates=1 destroys=1"), "{s}");
    {
        // Two that hold each other's.
        let host = PluginHost::new();
        let a = host.load(&pa, LoadOptions::default()).unwrap();
        let b = host.load(&pb, LoadOptions::default()).unwrap();
        a.call("grab", &mut []).unwrap();
        b.call("grab", &mut []).unwrap();
    }
    let (sa, sb) = (stats(&pa), stats(&pb));
    assert!(sa.starts_with("live=0 shut=4 viol=0"), "{sa}");
    assert!(sb.starts_with("live=0 shut=2 viol=0"), "{sb}");
}

#[test]
fn a_later_plugin_inherits_no_loans() {
    let (pa, pb) = (lender("inherit_a", true), lender("inherit_b", true));
    let host = PluginHost::new();
    let _b = host.load(&pb, LoadOptions::default()).unwrap();
    // A failing init that queried, and a shutdown that queried: both leave nothing lent.
    let e = host.load(&pa, LoadOptions::default().config("query-fail")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PluginInit);
    let a = host.load(&pa, LoadOptions::default()).unwrap();
    set(&a, 3, 1);
    a.close().unwrap();
    drop(a);
    for _ in 0..20 {
        // Host tables freed above are reused; the loans were filed by plugin, not by address.
        let c = host.load(&pa, LoadOptions::default()).unwrap();
        set(&c, 3, 0);
        for t in 1..4 {
            assert_eq!(raw(&c, t, 1, false), Value::Str(UNKNOWN.into()), "token {t}");
        }
    }
}

#[test]
fn forged_stale_and_null_calls_are_refused_or_given_slots() {
    let (pa, pb) = (lender("tokens_a", false), lender("tokens_b", false));
    let host = PluginHost::new();
    let a = host.load(&pa, LoadOptions::default()).unwrap();
    let b = host.load(&pb, LoadOptions::default()).unwrap();
    let lent = token(a.call("grab", &mut []).unwrap()); // an instance of B's, lent to A
    for t in 0..6 {
        assert_eq!(raw(&b, t, 0, false), Value::Str(UNKNOWN.into()), "B guessing token {t}");
    }
    assert_eq!(raw(&a, lent, 99, false), Value::Str("status 1: host->call: org.ferrule.test.counter/1 has no method number 99".into()));
    // NULL arguments: the Python host's zeroed slot, never NULL, for an instance.
    assert_eq!(raw(&a, lent, 0, true), Value::Str("ok 0".into()));
    a.call("release_raw", &mut [Arg::from(lent)]).unwrap();
    assert_eq!(raw(&a, lent, 1, false), Value::Str(UNKNOWN.into()));
    a.call("release_raw", &mut [Arg::from(lent)]).unwrap(); // twice: nothing happens
    a.call("release_raw", &mut [Arg::from(u64::MAX)]).unwrap();
    // A service: NULL arguments to a method that takes some are refused with the Python host's words.
    host.provide(api::counter::service(Total(0)));
    let service = token(a.call("grab", &mut []).unwrap());
    assert_eq!(raw(&a, service, 0, true), Value::Str("status 1: host->call: Counter.add needs arguments, got NULL".into()));
    assert_eq!(raw(&a, service, 5, false), Value::Str("status 1: host->call: Counter has no method number 5".into()));
    // A service failing with an empty message: no plugin failed, so the text says whose it is.
    assert_eq!(raw(&a, service, 4, false),
               Value::Str("status 1: (the host's Counter service gave no error message)".into()));
}

/// A Counter the host provides; add(13) panics.
struct Total(i64);

impl api::counter::Counter for Total {
    type Error = String;
    fn create() -> Result<Self, String> {
        Ok(Total(0))
    }
    fn add(&mut self, n: i64) -> Result<i64, String> {
        if n == 13 {
            panic!("service boom");
        }
        self.0 += n;
        Ok(self.0)
    }
    fn total(&mut self) -> Result<i64, String> {
        Ok(self.0)
    }
    fn slow_add(&mut self, n: i64, _: u32) -> Result<i64, String> {
        self.add(n)
    }
    fn name(&mut self) -> Result<String, String> {
        Ok("total".into())
    }
    fn fail(&mut self, m: &str) -> Result<(), String> {
        Err(m.into())
    }
}

/// A service that calls the plugin, which calls the service again on this thread.
struct Reenters {
    v: Vec<u64>,
    plugin: Arc<OnceLock<Plugin>>,
}

impl api::counter::Counter for Reenters {
    type Error = String;
    fn create() -> Result<Self, String> {
        Err("provided, not created".into())
    }
    fn add(&mut self, n: i64) -> Result<i64, String> {
        if n == 1 {
            let first: &u64 = &self.v[0];
            let nested = self.plugin.get().expect("set").call("poke", &mut [Arg::from(2)]);
            let message = nested.expect_err("the nested call is refused").message().to_string();
            assert!(message.contains("is already running on this thread"), "{message}");
            return Ok(*first as i64); // still 42: nothing replaced self.v under the borrow
        }
        self.v = vec![0];
        Ok(0)
    }
    fn total(&mut self) -> Result<i64, String> {
        Ok(0)
    }
    fn slow_add(&mut self, n: i64, _: u32) -> Result<i64, String> {
        Ok(n)
    }
    fn name(&mut self) -> Result<String, String> {
        Ok("reenters".into())
    }
    fn fail(&mut self, m: &str) -> Result<(), String> {
        Err(m.into())
    }
}

#[test]
fn a_service_that_is_not_thread_safe_is_not_reentered() {
    let plugin = Arc::new(OnceLock::new());
    let host = PluginHost::new();
    host.provide(api::counter::service(Reenters { v: vec![42; 4], plugin: plugin.clone() }));
    let a = host.load(lender("reenter", false), LoadOptions::default()).unwrap();
    plugin.set(a.clone()).ok();
    a.call("grab", &mut []).unwrap();
    assert_eq!(a.call("poke", &mut [Arg::from(1)]).unwrap(), Value::I64(42));
}

#[test]
fn a_service_panic_is_reported_where_it_happened() {
    let host = PluginHost::new();
    host.provide(api::counter::service(Total(0)));
    let a = host.load(lender("panics", false), LoadOptions::default()).unwrap();
    a.call("grab", &mut []).unwrap();
    let e = a.call("poke", &mut [Arg::from(13)]).unwrap_err();
    assert!(e.message().contains("service boom") && e.message().contains("lending.rs"), "{}", e.message());
    assert_eq!(a.call("poke", &mut [Arg::from(5)]).unwrap(), Value::I64(5), "the service works after its panic");
}

#[test]
fn an_instance_lent_from_a_closed_plugin_works_until_released() {
    let (pa, pb) = (lender("closed_a", true), lender("closed_b", true));
    let host = PluginHost::new();
    let a = host.load(&pa, LoadOptions::default()).unwrap();
    set(&a, 9, 0);
    let b = host.load(&pb, LoadOptions::default()).unwrap();
    b.call("grab", &mut []).unwrap();
    a.close().unwrap();
    drop(a);
    assert_eq!(b.call("poke", &mut [Arg::from(5)]).unwrap(), Value::I64(5));
    assert!(stats(&pa).starts_with("live=1 shut=0 viol=0"), "{}", stats(&pa));
    b.call("drop_token", &mut []).unwrap();
    assert!(stats(&pa).starts_with("live=0 shut=2 viol=0"), "{}", stats(&pa));
}

static DROPPED_BY_SERVICE: Mutex<Option<Plugin>> = Mutex::new(None);

/// A Store whose put drops the program's last handle of a plugin.
struct Dropper;

impl api::store::Store for Dropper {
    type Error = String;
    fn create() -> Result<Self, String> {
        Err("provided".into())
    }
    fn get(&self, _: &str) -> Result<String, String> {
        Ok(String::new())
    }
    fn put(&self, _: &str, _: &str) -> Result<(), String> {
        drop(DROPPED_BY_SERVICE.lock().unwrap().take());
        Ok(())
    }
}

#[test]
fn the_last_handle_dropped_inside_a_lent_create_closes_after_it() {
    let _w = Watchdog::new(20, "the last handle dropped inside a lent create");
    let path = borrower("last_handle");
    let host = PluginHost::new();
    host.provide(ferrule_host::Service::new(api::store::provided(Dropper)));
    let a = host.load(&path, LoadOptions::default()).unwrap();
    let b = host.load(lender("last_handle_b", true), LoadOptions::default()).unwrap();
    set(&a, 1, 1); // A's create calls Store.put, which drops the program's only handle of A
    *DROPPED_BY_SERVICE.lock().unwrap() = Some(a);
    // B queries a Counter: an instance of A's is made for it; the close waits for that create to end.
    assert_ne!(token(b.call("grab", &mut []).unwrap()), 0);
    b.close().unwrap(); // gives the instance back: A's shutdown runs then
    let check = Plugin::load(&path, LoadOptions::default()).unwrap();
    assert_eq!(check.call("shutdowns", &mut []).unwrap(), Value::I64(1));
}

#[test]
fn a_close_keeps_the_loans_of_calls_in_flight() {
    for typed in [false, true] {
        let host = PluginHost::new();
        host.provide(api::counter::service(Total(0)));
        let a = host.load(borrower(if typed { "inflight_t" } else { "inflight_d" }), LoadOptions::default()).unwrap();
        a.call("grab", &mut []).unwrap();
        let twice = a.typed::<(u32,), i64>("twice").unwrap();
        let a2 = a.clone();
        let t = std::thread::spawn(move || {
            // twice uses its loan, sleeps 300 ms, and uses it again
            if typed { twice.call((300_000,)).map(Value::I64) } else { a2.call("twice", &mut [Arg::from(300_000u64)]) }
        });
        std::thread::sleep(Duration::from_millis(100));
        a.close().unwrap();
        let got = t.join().unwrap();
        assert!(got.is_ok(), "typed={typed}: the call in flight lost its loan: {got:?}");
    }
}

/// A zero-sized Counter that calls another plugin, which calls another instance of it.
struct Zst;

static OTHER_PLUGIN: Mutex<Option<Plugin>> = Mutex::new(None);

impl api::counter::Counter for Zst {
    type Error = String;
    fn create() -> Result<Self, String> {
        Ok(Zst)
    }
    fn add(&mut self, n: i64) -> Result<i64, String> {
        if n == 1 {
            let p = OTHER_PLUGIN.lock().unwrap().clone().expect("set");
            return match p.call("poke", &mut [Arg::from(2)]) {
                Ok(Value::I64(v)) => Ok(100 + v),
                other => Err(format!("{other:?}")),
            };
        }
        Ok(n)
    }
    fn total(&mut self) -> Result<i64, String> {
        Ok(0)
    }
    fn slow_add(&mut self, n: i64, _: u32) -> Result<i64, String> {
        Ok(n)
    }
    fn name(&mut self) -> Result<String, String> {
        Ok("zst".into())
    }
    fn fail(&mut self, m: &str) -> Result<(), String> {
        Err(m.into())
    }
}

#[test]
fn two_zero_sized_instances_are_two_instances() {
    // Every box of a zero-sized type has one address: the SDK's re-entry check must not take them for one.
    let (h1, h2) = (PluginHost::new(), PluginHost::new());
    h1.provide(api::counter::service(Zst));
    h2.provide(api::counter::service(Zst));
    let p1 = h1.load(lender("zst_1", true), LoadOptions::default()).unwrap();
    let p2 = h2.load(lender("zst_2", true), LoadOptions::default()).unwrap();
    p1.call("grab", &mut []).unwrap();
    p2.call("grab", &mut []).unwrap();
    *OTHER_PLUGIN.lock().unwrap() = Some(p2);
    let got = p1.call("poke", &mut [Arg::from(1)]);
    OTHER_PLUGIN.lock().unwrap().take();
    assert_eq!(got.map_err(|e| e.message().to_string()), Ok(Value::I64(102)));
}
