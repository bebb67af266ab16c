//! A Rust program hosting the very plugin binaries the Python demo loads:
//! the Rust greeter and the C calculator, and (given a third path) the
//! pipeline example's Rust plugin, with a Dictionary service implemented
//! here and typed clients from `ferrule generate --rust-host`.
//!
//!     cargo run -p rust-host -- target/release/libgreeter.so build/libcalc.so [target/release/libtextkit.so]

use ferrule_host::{Arg, LoadOptions, Plugin, PluginHost, Value};

#[path = "../../pipeline/generated/pipeline_host.rs"]
mod api;

/// The pipeline's Dictionary, provided by this host: plugins query it.
struct Abbreviations;

impl api::dictionary::Dictionary for Abbreviations {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(Abbreviations)
    }

    fn contains(&self, word_list: &str, word: &str) -> Result<bool, String> {
        match word_list {
            "stop" => Ok(["a", "the", "of"].contains(&word)),
            other => Err(format!("no word list {other:?}")),
        }
    }

    fn expansion(&self, word: &str) -> Result<String, String> {
        Ok(match word {
            "abi" => "application binary interface",
            "ffi" => "foreign function interface",
            _ => "",
        }
        .to_string())
    }
}

/// Plugin logs arrive through the `log` facade, under `ferrule.plugin.<id>`.
struct Print;

impl log::Log for Print {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        println!("  [log {}] {}", record.target(), record.args());
    }
    fn flush(&self) {}
}

fn main() -> Result<(), ferrule_host::Error> {
    log::set_logger(&Print).expect("one logger");
    log::set_max_level(log::LevelFilter::Info);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (greeter_path, calc_path, textkit_path) = match args.as_slice() {
        [g, c] => (g, c, None),
        [g, c, t] => (g, c, Some(t)),
        _ => {
            eprintln!("usage: rust-host GREETER_LIB CALC_LIB [TEXTKIT_LIB]");
            std::process::exit(2);
        }
    };

    let greeter = Plugin::load(greeter_path, LoadOptions::default().config(r#"{"lang": "en"}"#))?;
    let d = greeter.descriptor();
    println!("loaded {} {} ({}), ABI {}.{}", d.name, d.version, d.id, d.abi_version.0, d.abi_version.1);
    for f in &d.functions {
        println!("  {}{}", f.name, f.signature);
    }
    let add = greeter.typed::<(i64, i64), i64>("add")?; // checked once against "(a: i64, b: i64) -> i64"
    println!("greeter add(2, 3)          = {}", add.call((2, 3))?);
    if let Value::Str(text) = greeter.call("greet", &mut [Arg::from("Ada")])? {
        println!("greeter greet(\"Ada\")       = {text}");
    }
    let mut values = vec![1.0, 2.0, 6.0];
    println!("greeter mean([1, 2, 6])    = {:?}", greeter.call("mean", &mut [Arg::from(&values)])?);
    greeter.call("scale", &mut [Arg::from(values.as_mut_slice()), Arg::from(10.0)])?;
    println!("after greeter scale(.., 10): {values:?}");
    // A host function: a closure the plugin calls back.
    let odd = |args: &[Value]| Ok(Value::Bool(matches!(args[0], Value::I64(n) if n % 2 == 1)));
    println!("greeter count_if(odd, 10)  = {:?}", greeter.call("count_if", &mut [Arg::HostFn(&odd), Arg::from(10)])?);
    match greeter.call("divide", &mut [Arg::from(1.0), Arg::from(0.0)]) {
        Ok(v) => println!("greeter divide(1, 0) = {v:?}"),
        Err(e) => println!("greeter divide(1, 0)       failed ({:?}): {}", e.kind(), e.plugin_message().unwrap_or("")),
    }
    match greeter.call("add", &mut [Arg::from(1), Arg::from("two")]) {
        Ok(v) => println!("greeter add(1, \"two\") = {v:?}"),
        Err(e) => println!("greeter add(1, \"two\")      refused ({:?}): {e}", e.kind()),
    }
    greeter.close()?;

    let calc = Plugin::load(calc_path, LoadOptions::default())?;
    let mul = calc.typed::<(i64, i64), i64>("mul")?;
    println!("calc mul(6, 7)             = {}", mul.call((6, 7))?);
    println!("calc reverse(\"stressed\")   = {:?}", calc.call("reverse", &mut [Arg::from("stressed")])?);
    println!("calc calls()               = {}", calc.typed::<(), u64>("calls")?.call(())?);
    calc.close()?;

    if let Some(path) = textkit_path {
        let host = PluginHost::new();
        host.provide(api::dictionary::service(Abbreviations)); // what the plugin's Dictionary queries find
        let textkit = host.load(path, LoadOptions::default())?;
        let mut expand = api::transform::create(&textkit, Some("expand"))?; // checked by layout fingerprint
        expand.configure("case", "upper")?;
        println!("textkit expand.apply       = {:?}", expand.apply("the ABI, not the FFI")?);
        if let Err(e) = expand.configure("case", "title") {
            println!("textkit expand.configure   failed ({:?}): {}", e.kind(), e.plugin_message().unwrap_or(""));
        }
        let words = api::analyzer::create(&textkit, None)?;
        let stats = words.stats("one two\nthree")?;
        println!("textkit words.stats        = {} words, {} lines, {} chars", stats.words, stats.lines, stats.chars);
        drop((expand, words));
        textkit.close()?;
    }
    Ok(())
}
