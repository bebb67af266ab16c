//! The Rust host on tests/plugins/c/cdata.c, built here with cc: owned
//! results released by their rule, host functions (text, and a handle the
//! plugin wrongly keeps past its call), and the serial lock.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use ferrule_host::{Arg, ErrorKind, LoadOptions, Plugin, Value};

fn cdata() -> Plugin {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let path = BUILT.get_or_init(|| common::build_c_plugin("tests/plugins/c/cdata.c", "libcdata.so", &[]));
    Plugin::load(path, LoadOptions::default()).unwrap()
}

/// The plugin's counters (results alive, overlaps) are its process's: the
/// tests that read them run one at a time.
static COUNTERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn live(plugin: &Plugin) -> i64 {
    plugin.typed::<(), i64>("live").unwrap().call(()).unwrap()
}

#[test]
fn owned_results_are_released_by_their_rule() {
    let _alone = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    let plugin = cdata();
    let before = live(&plugin);
    assert_eq!(plugin.call("make", &mut [Arg::from(5u64)]).unwrap(), Value::Bytes(b"abcde".to_vec()));
    assert_eq!(plugin.call("make_text", &mut [Arg::from(3u64)]).unwrap(), Value::Str("abc".into()));
    assert_eq!(live(&plugin), before); // each result went back to the plugin's own release
}

#[test]
fn text_host_functions_and_their_results() {
    let plugin = cdata();
    let exclaim = |args: &[Value]| match &args[0] {
        Value::Str(s) => Ok(Value::Str(format!("{s}!"))),
        other => panic!("not text: {other:?}"),
    };
    assert_eq!(plugin.call("shout", &mut [Arg::HostFn(&exclaim), Arg::from("hey")]).unwrap(), Value::Str("HEY!".into()));
}

#[test]
fn a_handle_kept_past_its_call_is_refused() {
    let plugin = cdata();
    let first = AtomicUsize::new(0);
    let second = AtomicUsize::new(0);
    let f = |_: &[Value]| {
        first.fetch_add(1, Ordering::SeqCst);
        Ok(Value::I64(1))
    };
    plugin.call("keep", &mut [Arg::HostFn(&f)]).unwrap();
    let g = |_: &[Value]| {
        second.fetch_add(1, Ordering::SeqCst);
        Ok(Value::I64(2))
    };
    for _ in 0..100 {
        // The kept handle names a call that returned: refused, whatever handle this call's g has.
        let err = plugin.call("use_kept", &mut [Arg::HostFn(&g)]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PluginCall);
        assert_eq!(err.plugin_message(), Some("the kept handle was refused"));
    }
    assert_eq!((first.load(Ordering::SeqCst), second.load(Ordering::SeqCst)), (0, 0));
}

#[test]
fn calls_that_are_not_thread_safe_never_overlap() {
    let _alone = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    let plugin = cdata();
    let make = plugin.clone();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let make = make.clone();
            s.spawn(move || {
                for _ in 0..500 {
                    assert_eq!(make.call("serial_make", &mut [Arg::from(64u64)]).unwrap(),
                               Value::Bytes((0..64).map(|i| b'a' + (i % 26) as u8).collect()));
                }
            });
        }
    });
    assert_eq!(plugin.typed::<(), i64>("overlaps").unwrap().call(()).unwrap(), 0);
}

#[test]
fn a_null_text_argument_fails_the_call_as_in_the_python_host() {
    let plugin = cdata();
    let seen = std::sync::Mutex::new(Vec::new());
    let f = |args: &[Value]| {
        seen.lock().unwrap().push(args.to_vec());
        Ok(Value::I64(1))
    };
    let e = plugin.call("null_text", &mut [Arg::HostFn(&f)]).unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::Value, "the plugin passed a NULL pointer with a non-zero length"));
    assert!(seen.lock().unwrap().is_empty(), "the host function never ran on the bad text");
}
