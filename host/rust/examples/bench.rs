//! The Rust host's costs against a raw function-pointer call, measured in one
//! run: `bench/run.py --case rust` builds bench/anchor.c and runs this with it.
//!
//!     cargo run --release -p ferrule-host --example bench -- PATH/TO/libanchor.so
//!
//! Rows (ns per operation, median of batches, the rows taking turns):
//! the plain C function `anchor_add` through libloading (the anchor), the
//! plugin's `add` through its ABI function pointer with no host around it,
//! the typed handle, the dynamic call, and a load + close of a library
//! already mapped.

use std::hint::black_box;
use std::time::Instant;

use ferrule_host::{Arg, LoadOptions, Plugin};

/// A row: its name, what it times (n operations), its samples in ns per operation.
type Row<'a> = (&'a str, Box<dyn FnMut(u64)>, Vec<f64>);

fn measure(rows: &mut [Row<'_>], per_batch: &[u64], batches: usize) {
    for _ in 0..batches {
        for (i, (_, run, samples)) in rows.iter_mut().enumerate() {
            let n = per_batch[i];
            let start = Instant::now();
            run(n);
            samples.push(start.elapsed().as_secs_f64() * 1e9 / n as f64);
        }
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    s[s.len() / 2]
}

/// The `call` pointer of the plugin's function `name`, read from the
/// descriptor by hand: the floor of any host of the ABI.
fn abi_function(lib: &libloading::Library, name: &str) -> Result<ferrule_sdk::abi::CallFn, Box<dyn std::error::Error>> {
    // SAFETY: ferrule_entry_v1's type per ferrule.h; the descriptor is static and was checked by Plugin::load below.
    unsafe {
        let entry: libloading::Symbol<'_, ferrule_sdk::abi::EntryFn> = lib.get(b"ferrule_entry_v1\0")?;
        let d = &*entry();
        for i in 0..d.function_count as usize {
            let f = &**d.functions.add(i);
            if std::ffi::CStr::from_ptr(f.name).to_bytes() == name.as_bytes() {
                return Ok(f.call);
            }
        }
    }
    Err(format!("no function {name}").into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: bench PATH/TO/libanchor.so")?;
    // SAFETY: the anchor library's constructors are its own; anchor_add is
    // `int64_t anchor_add(int64_t, int64_t)`.
    let raw_lib = unsafe { libloading::Library::new(&path)? };
    // SAFETY: as above: the symbol's C type.
    let raw: libloading::Symbol<'_, unsafe extern "C" fn(i64, i64) -> i64> = unsafe { raw_lib.get(b"anchor_add\0")? };
    let raw = *raw;
    let abi_add = abi_function(&raw_lib, "add")?;
    let plugin = Plugin::load(&path, LoadOptions::default().strict_permissions(false))?;
    let typed = plugin.typed::<(i64, i64), i64>("add")?;
    assert_eq!(typed.call((2, 3))?, 5);
    let dynamic = plugin.clone();
    let loading = path.clone();

    let mut rows: Vec<Row<'_>> = vec![
        ("raw libloading call of anchor_add(i64, i64)", Box::new(move |n| {
            for i in 0..n {
                // SAFETY: the anchor's C function, with its arguments.
                black_box(unsafe { raw(black_box(i as i64), 2) });
            }
        }), Vec::new()),
        ("the plugin's add through its ABI pointer, no host", Box::new(move |n| {
            let mut slots = [ferrule_sdk::abi::Value::ZERO; 3];
            for i in 0..n {
                slots[0].i64 = black_box(i as i64);
                slots[1].i64 = 2;
                let (args, ret) = slots.split_at_mut(2);
                // SAFETY: anchor.c's p_add reads two i64 slots and writes ret; it uses neither host nor state.
                let status = unsafe { abi_add(std::ptr::null(), std::ptr::null_mut(), args.as_ptr(), ret.as_mut_ptr()) };
                // SAFETY: p_add wrote ret.i64.
                black_box((status, unsafe { ret[0].i64 }));
            }
        }), Vec::new()),
        ("typed handle add(i64, i64) -> i64", Box::new(move |n| {
            for i in 0..n {
                black_box(typed.call((black_box(i as i64), 2)).expect("add"));
            }
        }), Vec::new()),
        ("dynamic call(\"add\", [Int, Int])", Box::new(move |n| {
            for i in 0..n {
                black_box(dynamic.call("add", &mut [Arg::Int(black_box(i as i128)), Arg::Int(2)]).expect("add"));
            }
        }), Vec::new()),
        ("Plugin::load + close (library mapped)", Box::new(move |n| {
            for _ in 0..n {
                let p = Plugin::load(&loading, LoadOptions::default().strict_permissions(false)).expect("load");
                p.close().expect("close");
            }
        }), Vec::new()),
    ];
    let per_batch = [20_000_000, 20_000_000, 5_000_000, 1_000_000, 2_000];
    measure(&mut rows, &[100_000, 100_000, 100_000, 10_000, 100], 1); // warm-up
    for row in rows.iter_mut() {
        row.2.clear();
    }
    measure(&mut rows, &per_batch, 7);
    let anchor = median(&rows[0].2);
    println!("  {:<46}{:>12}{:>10}", "path", "ns/op", "ratio");
    for (name, _, samples) in &rows {
        let m = median(samples);
        println!("  {name:<46}{m:>12.2}{:>9.2}x", m / anchor);
    }
    let (floor, typed) = (median(&rows[1].2), median(&rows[2].2));
    println!("  target: typed call <= 1.2x the raw call: {} ({:.2}x)",
             if typed <= 1.2 * anchor { "met" } else { "NOT met" }, typed / anchor);
    println!("  the host crate's own share: typed call {:.2}x the plugin's ABI function called bare (+{:.2} ns)",
             typed / floor, typed - floor);
    Ok(())
}
