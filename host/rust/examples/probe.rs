//! What the Rust host makes of a plugin, as one JSON object per line, for
//! tests that hold it to the Python host (tests/test_rust_host.py):
//!
//!     probe load PATH                      # the load's outcome: metadata, or the error
//!     probe call PATH FUNCTION ARG...      # one call; ARG is i:N, f:X, b:true, s:TEXT, y:HEX
//!     probe types                          # the type table
//!     probe signature TEXT...              # each signature's canonical text, or why it does not parse
use ferrule_host::{parse_signature, Arg, Error, LoadOptions, Plugin, Value, SCALARS};

fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn failure(e: &Error) -> String {
    format!("{{\"error\": {}, \"message\": {}}}", quote(e.kind().python_name()), quote(e.message()))
}

fn value(v: &Value) -> String {
    match v {
        Value::None => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F32(x) => format!("{:?}", *x as f64),
        Value::F64(x) => format!("{x:?}"),
        Value::Str(s) => quote(s),
        Value::Bytes(b) => quote(&b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("signature") => {
            for text in &args[1..] {
                match parse_signature(text) {
                    Ok(sig) => println!("probe: {{\"text\": {}}}", quote(&sig.to_string())),
                    Err(why) => println!("probe: {{\"error\": {}}}", quote(&why)),
                }
            }
        }
        Some("types") => {
            for s in SCALARS {
                let (low, high) = s.range().unwrap_or((0, 0));
                println!("probe: {{\"name\": {}, \"slot\": {}, \"size\": {}, \"min\": {low}, \"max\": {high}}}",
                         quote(s.name()), quote(s.slot()), s.size());
            }
        }
        Some("load") => match Plugin::load(&args[1], LoadOptions::default()) {
            Ok(p) => {
                let d = p.descriptor();
                let functions: Vec<String> =
                    d.functions.iter().map(|f| quote(&format!("{}{}", f.name, f.signature))).collect();
                println!("probe: {{\"id\": {}, \"name\": {}, \"version\": {}, \"abi\": [{}, {}], \"functions\": [{}]}}",
                         quote(&d.id), quote(&d.name), quote(&d.version), d.abi_version.0, d.abi_version.1,
                         functions.join(", "));
                p.close().expect("close");
            }
            Err(e) => println!("probe: {}", failure(&e)),
        },
        Some("call") => {
            let plugin = match Plugin::load(&args[1], LoadOptions::default()) {
                Ok(p) => p,
                Err(e) => return println!("probe: {}", failure(&e)),
            };
            let texts: Vec<(char, String)> =
                args[3..].iter().map(|a| (a.chars().next().unwrap_or('?'), a.get(2..).unwrap_or("").to_string())).collect();
            let bytes: Vec<Vec<u8>> = texts.iter().map(|(_, t)| {
                (0..t.len() / 2).filter_map(|i| u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()).collect()
            }).collect();
            let mut call_args: Vec<Arg<'_>> = texts.iter().zip(&bytes).map(|((kind, text), raw)| match kind {
                'i' => Arg::Int(text.parse().expect("an integer")),
                'f' => Arg::Float(text.parse().expect("a float")),
                'b' => Arg::Bool(text == "true"),
                's' => Arg::Str(text),
                'y' => Arg::Bytes(raw),
                other => panic!("unknown argument kind {other}"),
            }).collect();
            match plugin.call(&args[2], &mut call_args) {
                Ok(v) => println!("probe: {{\"result\": {}}}", value(&v)),
                Err(e) => println!("probe: {}", failure(&e)),
            }
        }
        _ => eprintln!("usage: probe load PATH | probe call PATH FUNCTION ARG... | probe types"),
    }
}
