//! `interface!`: the interfaces of tests/iface_api.py and of the pipeline
//! example declared in Rust give the same canonical layout text and
//! fingerprint as `ferrule generate --rust` wrote from the Python
//! declarations, and the same items work the same way.

#[path = "generated/iface_api.rs"] // a link to the file ferrule generates for tests/iface_api.py
#[allow(clippy::all)]
mod generated;

#[path = "generated/pipeline_api.rs"] // and for examples/pipeline/pipeline_api.py
#[allow(clippy::all)]
mod generated_pipeline;

mod declared {
    ferrule_sdk::interface! {
        /// A point on a grid.
        pub struct Point { x: i32, y: i32 }

        /// A rectangle: a nested struct, padding before a u64 and after a bool.
        pub struct Rect {
            origin: struct Point,
            width: u32,
            height: u32,
            filled: bool,
            area_hint: u64,
        }

        /// A label the plugin keeps; the host only passes the handle on.
        pub handle Token;

        /// A running total. Not thread-safe: the host serialises calls.
        #[interface(id = "org.ferrule.test.counter", revision = 1)]
        pub mod counter: trait Counter {
            /// Add n and return the new total.
            fn add(n: i64) -> i64;
            fn total() -> i64;
            fn slow_add(n: i64, spin_us: u32) -> i64;
            fn name() -> str;
            fn fail(message: str);
        }

        /// Every parameter kind. Thread-safe: no state.
        #[interface(id = "org.ferrule.test.shapes", revision = 1, thread_safe = true)]
        pub mod shapes: trait Shapes {
            fn area(r: struct Rect) -> u64;
            fn grow(r: struct Rect, by: u32) -> struct Rect;
            fn mix(flag: bool, a: i8, b: u16, c: f32, d: f64, e: u64) -> f64;
            fn sum(values: buf[f64]) -> f64;
            fn fill(target: mutbuf[i32], value: i32);
            fn token(label: str) -> handle Token;
            fn label(t: handle Token) -> str;
            fn echo(data: bytes) -> bytes;
            fn apply(f: fn(i64) -> i64, x: i64) -> i64;
        }

        #[interface(id = "org.ferrule.test.store", revision = 1, thread_safe = true)]
        pub mod store: trait Store {
            fn get(key: str) -> str;
            fn put(key: str, value: str);
        }

        /// Revision 2 of the store: adds count.
        #[interface(id = "org.ferrule.test.store", revision = 2, thread_safe = true,)]
        pub mod store2: trait Store2 {
            fn get(key: str) -> str;
            fn put(key: str, value: str,);
            fn count() -> u32;
        }
    }

    pub mod pipeline {
        ferrule_sdk::interface! {
            /// Counts over a text.
            pub struct Stats { words: u32, lines: u32, chars: u32, longest_word: u32 }

            /// One stage of the pipeline: rewrites text.
            #[interface(id = "org.ferrule.example.pipeline.transform", revision = 1)]
            pub mod transform: trait Transform {
                /// Set an option; fails for an option the stage does not know.
                fn configure(option: str, value: str);
                /// The rewritten text.
                fn apply(text: str) -> str;
            }

            #[interface(id = "org.ferrule.example.pipeline.analyzer", revision = 1, thread_safe = true)]
            pub mod analyzer: trait Analyzer {
                fn stats(text: str) -> struct Stats;
                fn histogram(text: bytes, counts: mutbuf[u32]);
            }

            #[interface(id = "org.ferrule.example.pipeline.dictionary", revision = 1, thread_safe = true)]
            pub mod dictionary: trait Dictionary {
                fn contains(word_list: str, word: str) -> bool;
                fn expansion(word: str) -> str;
            }
        }
    }
}

macro_rules! same_as_generated {
    ($($declared:path => $generated:path),* $(,)?) => {$({
        use $declared as d;
        use $generated as g;
        assert_eq!(d::LAYOUT, g::LAYOUT, "{}", stringify!($declared));
        assert_eq!(d::FINGERPRINT, g::FINGERPRINT, "{}", stringify!($declared));
        assert_eq!(d::SPEC, g::SPEC, "{}", stringify!($declared));
        assert_eq!(
            core::mem::size_of::<d::Vtable>(),
            core::mem::size_of::<g::Vtable>(),
            "{}",
            stringify!($declared)
        );
    })*};
}

#[test]
fn layouts_and_fingerprints_equal_the_python_declarations() {
    same_as_generated!(
        declared::counter => generated::counter,
        declared::shapes => generated::shapes,
        declared::store => generated::store,
        declared::store2 => generated::store2,
        declared::pipeline::transform => generated_pipeline::transform,
        declared::pipeline::analyzer => generated_pipeline::analyzer,
        declared::pipeline::dictionary => generated_pipeline::dictionary,
    );
}

#[test]
fn the_fingerprint_is_the_layouts_hash() {
    // Not only equal to the generated constant: a change of the text changes it.
    let text = declared::counter::LAYOUT.replace("add(i64)", "add(i32)");
    assert_ne!(ferrule_sdk::__private::declare::fingerprint(&text), declared::counter::FINGERPRINT);
    assert_eq!(ferrule_sdk::__private::declare::fingerprint(declared::counter::LAYOUT), 0xb3ce_5c19_c8bd_e9d1);
}

#[test]
fn structs_have_the_declared_layout() {
    use ferrule_sdk::__private::iface::{struct_bytes, Struct};

    let rect = declared::Rect {
        origin: declared::Point { x: -3, y: 4 },
        width: 5,
        height: 6,
        filled: true,
        area_hint: 1 << 40,
    };
    let same = generated::Rect {
        origin: generated::Point { x: -3, y: 4 },
        width: 5,
        height: 6,
        filled: true,
        area_hint: 1 << 40,
    };
    assert_eq!(<declared::Rect as Struct>::SIZE, 32);
    assert_eq!(struct_bytes(&rect), struct_bytes(&same));
    assert_eq!(declared::Rect::read(&struct_bytes(&same)), Ok(rect));
    let mut bad = struct_bytes(&rect);
    bad[16] = 2; // filled
    assert_eq!(
        declared::Rect::read(&bad),
        Err("bool at offset 16 is 2, not 0 or 1".to_owned())
    );
    assert_eq!(declared::Token(7), declared::Token(7));
}

/// A callee that records what a client passes and answers with fixed
/// values, to hold the declared and the generated clients side by side.
#[derive(Debug)]
struct Recorder {
    fingerprint: u64,
    calls: std::cell::RefCell<Vec<(u32, Vec<Vec<u8>>)>>,
}

impl Recorder {
    fn new(fingerprint: u64) -> Recorder {
        Recorder { fingerprint, calls: Default::default() }
    }
}

// SAFETY: call_raw reads each slot as the test's methods pass it and writes
// only the `out` buffer of a struct result; results carry no memory (the
// test calls no method with a str or bytes result).
unsafe impl ferrule_sdk::Callee for Recorder {
    type Error = ferrule_sdk::CallError;

    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    unsafe fn call_raw(&self, method: u32, args: &[ferrule_sdk::abi::Value]) -> Result<ferrule_sdk::abi::Value, Self::Error> {
        use ferrule_sdk::abi::Value;
        // Each slot as the bytes it holds: a scalar's 8 bytes, or the memory
        // behind a pointer and length (str, bytes, buffers).
        let seen = args
            .iter()
            .map(|v| unsafe {
                let (ptr, len) = (v.bytes.ptr.cast::<u8>(), v.bytes.len);
                if len > 0 && len < 4096 && !ptr.is_null() {
                    std::slice::from_raw_parts(ptr, len).to_vec()
                } else {
                    v.u64.to_ne_bytes().to_vec()
                }
            })
            .collect();
        self.calls.borrow_mut().push((method, seen));
        if let Some(out) = args.last().filter(|_| method == 1 && args.len() == 3) {
            // grow's `out`: the struct result's C layout.
            let out = unsafe { std::slice::from_raw_parts_mut(out.buf.ptr.cast::<u8>(), out.buf.len) };
            out.fill(0);
            out[8] = 42; // width
        }
        Ok(Value { u64: 7 })
    }
}

#[test]
fn declared_clients_call_as_generated_clients_do() {
    let rect = declared::Rect { origin: declared::Point { x: 1, y: 2 }, width: 3, height: 4, filled: true, area_hint: 5 };
    let same = generated::Rect { origin: generated::Point { x: 1, y: 2 }, width: 3, height: 4, filled: true, area_hint: 5 };

    let d = declared::shapes::Client::new(Recorder::new(declared::shapes::FINGERPRINT)).unwrap();
    let g = generated::shapes::Client::new(Recorder::new(generated::shapes::FINGERPRINT)).unwrap();
    assert_eq!(d.area(rect).unwrap(), g.area(same).unwrap());
    assert_eq!(d.grow(rect, 9).unwrap().width, 42);
    assert_eq!(g.grow(same, 9).unwrap().width, 42);
    assert_eq!(d.mix(true, -1, 2, 0.5, 0.25, 3).unwrap().to_bits(), g.mix(true, -1, 2, 0.5, 0.25, 3).unwrap().to_bits());
    let mut a = [1i32, 2];
    let mut b = [1i32, 2];
    d.fill(&mut a, 3).unwrap();
    g.fill(&mut b, 3).unwrap();
    assert_eq!(d.sum(&[1.0, 2.0]).unwrap().to_bits(), g.sum(&[1.0, 2.0]).unwrap().to_bits());
    assert_eq!(d.token("t").unwrap(), declared::Token(7));
    assert_eq!(g.token("t").unwrap(), generated::Token(7));
    let (d, g) = (d.into_inner(), g.into_inner());
    assert_eq!(d.calls.borrow().len(), 6);
    assert_eq!(*d.calls.borrow(), *g.calls.borrow());

    let mut d = declared::counter::Client::new(Recorder::new(declared::counter::FINGERPRINT)).unwrap();
    let mut g = generated::counter::Client::new(Recorder::new(generated::counter::FINGERPRINT)).unwrap();
    assert_eq!(d.add(-5).unwrap(), g.add(-5).unwrap());
    assert_eq!(d.slow_add(1, 2).unwrap(), g.slow_add(1, 2).unwrap());
    assert_eq!(*d.object().calls.borrow(), *g.object().calls.borrow());
    assert_eq!(d.object().calls.borrow()[1].0, 2); // slow_add is method 2

    // A callee of another layout is refused, and given back.
    let wrong = declared::store::Client::new(Recorder::new(declared::store2::FINGERPRINT)).unwrap_err();
    assert_eq!(wrong.fingerprint, declared::store2::FINGERPRINT);
}
