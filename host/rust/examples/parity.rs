//! The parity table (tests/parity/cases.json) on the Rust host: every case
//! that applies to it is run on the parity plugin's functions (path `rust`)
//! and on the methods of its Parity implementation "direct" (`rust-method`,
//! through the bindings `ferrule generate --rust-host` wrote), and must give
//! the result, or the error kind and message, the table says. Prints one
//! JSON summary line per path; tests/test_rust_host.py runs it and checks it.
//!
//!     cargo run --release -p ferrule-host --example parity -- tests/parity/cases.json PATH/TO/libparity.so

use std::collections::BTreeMap;

use ferrule_host::{Arg, Error, ErrorKind, HostFn, Instance, LoadOptions, Plugin, Signature, Type, Value};

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../../tests/plugins/generated/parity_host.rs"]
mod api;

/// What a path calls: the plugin's functions, or an instance's methods.
trait Target: Sync {
    fn signature(&self, name: &str) -> Option<Signature>;
    fn call(&self, name: &str, args: &mut [Arg<'_>]) -> Result<Value, Error>;
    fn close(&self) -> Result<(), Error>;
}

impl Target for Plugin {
    fn signature(&self, name: &str) -> Option<Signature> {
        self.function(name).map(|f| f.signature.clone())
    }
    fn call(&self, name: &str, args: &mut [Arg<'_>]) -> Result<Value, Error> {
        Plugin::call(self, name, args)
    }
    fn close(&self) -> Result<(), Error> {
        Plugin::close(self)
    }
}

impl Target for Instance {
    fn signature(&self, name: &str) -> Option<Signature> {
        Instance::signature(self, name).cloned()
    }
    fn call(&self, name: &str, args: &mut [Arg<'_>]) -> Result<Value, Error> {
        Instance::call(self, name, args)
    }
    fn close(&self) -> Result<(), Error> {
        Instance::close(self)
    }
}
use serde_json::Value as Json;

/// A lone UTF-16 surrogate escape in the table (a Python str may hold one, a
/// Rust str cannot): replaced by this private-use character before parsing,
/// and the case is skipped.
const LONE_SURROGATE: char = '\u{e000}';

fn without_lone_surrogates(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let hex = |at: usize| text.get(at..at + 4).and_then(|h| u32::from_str_radix(h, 16).ok());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'u') {
            if let Some(unit) = hex(i + 2) {
                let high = (0xd800..0xdc00).contains(&unit);
                let low = (0xdc00..0xe000).contains(&unit);
                let pair = high
                    && text.get(i + 6..i + 8) == Some("\\u")
                    && hex(i + 8).is_some_and(|next| (0xdc00..0xe000).contains(&next));
                if pair {
                    out.push_str(&text[i..i + 12]);
                    i += 12;
                    continue;
                }
                if high || low {
                    out.push(LONE_SURROGATE);
                    i += 6;
                    continue;
                }
            }
            out.push_str(&text[i..i + 2]); // any other escape: as it is
            i += 2;
            continue;
        }
        let c = text[i..].chars().next().expect("inside the text");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// A case's argument, owned, as the Rust host can pass it; Err: why it cannot.
enum Owned<'p> {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Array(Array),
    Func(Box<HostFn<'p>>),
}

fn int_of(v: &Value) -> i64 {
    match v {
        Value::I64(n) => *n,
        Value::U64(n) => *n as i64,
        other => panic!("not an integer: {other:?}"),
    }
}

fn float_of(v: &Value) -> f64 {
    match v {
        Value::F64(x) => *x,
        Value::F32(x) => *x as f64,
        other => panic!("not a float: {other:?}"),
    }
}

/// The host functions the table names (tests/test_parity.py defines the
/// same): some call back into the plugin.
fn host_function<'p>(name: &str, plugin: &'p dyn Target) -> Result<Box<HostFn<'p>>, String> {
    Ok(match name {
        "double" => Box::new(|a: &[Value]| Ok(Value::I64(int_of(&a[0]) * 2))),
        "raise" => Box::new(|_: &[Value]| Err(Error::new(ErrorKind::Value, "the host function failed"))),
        "text" => Box::new(|_: &[Value]| Ok(Value::Str("no".into()))),
        "upper" => Box::new(|a: &[Value]| match &a[0] {
            Value::Str(s) => Ok(Value::Str(s.to_uppercase())),
            other => panic!("not text: {other:?}"),
        }),
        "five" => Box::new(|_: &[Value]| Ok(Value::I64(5))),
        "multiply" => Box::new(|a: &[Value]| Ok(Value::F64(float_of(&a[0]) * float_of(&a[1])))),
        "int_product" => Box::new(|a: &[Value]| Ok(Value::I64((float_of(&a[0]) * float_of(&a[1])) as i64))),
        "same" => Box::new(|a: &[Value]| Ok(a[0].clone())),
        "reverse" => Box::new(|a: &[Value]| match &a[0] {
            Value::Bytes(b) => Ok(Value::Bytes(b.iter().rev().copied().collect())),
            other => panic!("not bytes: {other:?}"),
        }),
        "none" => Box::new(|_: &[Value]| Ok(Value::None)),
        "add_twenty" => Box::new(move |a: &[Value]| plugin.call("add", &mut [Arg::Int(20), Arg::Int(int_of(&a[0]) as i128)])),
        "apply_double" => Box::new(move |a: &[Value]| {
            let double = |b: &[Value]| Ok(Value::I64(int_of(&b[0]) * 2));
            plugin.call("apply", &mut [Arg::HostFn(&double), Arg::Int(int_of(&a[0]) as i128)])
        }),
        "echo" => Box::new(move |a: &[Value]| match &a[0] {
            Value::Str(s) => plugin.call("echo_str", &mut [Arg::Str(s)]),
            other => panic!("not text: {other:?}"),
        }),
        "fail_inside" => Box::new(move |_: &[Value]| match plugin.call("fail", &mut [Arg::Str("inner")]) {
            Err(e) if e.kind() == ErrorKind::PluginCall && e.message().contains("inner") => Ok(Value::I64(0)),
            other => panic!("the inner call should fail with 'inner', got {other:?}"),
        }),
        "add_inside" => Box::new(move |_: &[Value]| plugin.call("add", &mut [Arg::Int(1), Arg::Int(1)])),
        "close" => Box::new(move |_: &[Value]| plugin.close().map(|()| Value::I64(0))),
        "too_big" => return Err("too_big returns 2**64, which no Rust integer holds".into()),
        other => return Err(format!("no host function {other:?} here")),
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Array {
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

fn float(v: &Json) -> Result<f64, String> {
    match v {
        Json::Object(o) if o.contains_key("float") => match o["float"].as_str() {
            Some("inf") => Ok(f64::INFINITY),
            Some("-inf") => Ok(f64::NEG_INFINITY),
            Some("nan") => Ok(f64::NAN),
            other => Err(format!("an unknown float {other:?}")),
        },
        Json::Number(n) => n.to_string().parse::<f64>().map_err(|e| e.to_string()),
        other => Err(format!("not a float: {other}")),
    }
}

fn array(format: &str, values: &[Json]) -> Result<Array, String> {
    macro_rules! ints {
        ($t:ty, $v:ident) => {
            Array::$v(values.iter().map(|x| x.to_string().parse::<$t>().map_err(|e| e.to_string())).collect::<Result<_, _>>()?)
        };
    }
    Ok(match format {
        "b" => ints!(i8, I8),
        "h" => ints!(i16, I16),
        "i" => ints!(i32, I32),
        "q" => ints!(i64, I64),
        "B" => ints!(u8, U8),
        "H" => ints!(u16, U16),
        "I" => ints!(u32, U32),
        "Q" => ints!(u64, U64),
        "f" => Array::F32(values.iter().map(|x| float(x).map(|f| f as f32)).collect::<Result<_, _>>()?),
        "d" => Array::F64(values.iter().map(float).collect::<Result<_, _>>()?),
        other => return Err(format!("array format {other:?} has no Rust slice type")),
    })
}

fn owned<'p>(v: &Json, plugin: &'p dyn Target) -> Result<Owned<'p>, String> {
    Ok(match v {
        Json::Bool(b) => Owned::Bool(*b),
        Json::Number(n) => {
            let text = n.to_string();
            if text.contains(['.', 'e', 'E']) {
                Owned::Float(text.parse().map_err(|_| format!("{text} is no float"))?)
            } else {
                Owned::Int(text.parse().map_err(|_| "an integer beyond i128 does not fit a Rust integer".to_string())?)
            }
        }
        Json::String(s) if s.contains(LONE_SURROGATE) => return Err("a Rust str cannot hold a lone surrogate".into()),
        Json::String(s) => Owned::Str(s.clone()),
        Json::Null => return Err("Rust has no None to pass".into()),
        Json::Object(o) => {
            if o.contains_key("float") {
                Owned::Float(float(v)?)
            } else if let Some(hex) = o.get("bytes").and_then(Json::as_str) {
                Owned::Bytes((0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect())
            } else if let (Some(format), Some(values)) = (o.get("array").and_then(Json::as_str), o.get("values")) {
                if o.contains_key("step") || o.contains_key("readonly") || o.contains_key("misaligned") {
                    return Err("a Rust slice is contiguous, aligned and as mutable as it is borrowed".into());
                }
                Owned::Array(array(format, values.as_array().ok_or("array values")?)?)
            } else if let Some(name) = o.get("hostfn").and_then(Json::as_str) {
                Owned::Func(host_function(name, plugin)?)
            } else {
                return Err(format!("{} values are not functions' values", o.keys().next().map(String::as_str).unwrap_or("?")));
            }
        }
        other => return Err(format!("unknown value {other}")),
    })
}

fn arg<'a>(value: &'a mut Owned<'_>, ty: &Type) -> Arg<'a> {
    let writable = matches!(ty, Type::MutBuf(_));
    match value {
        Owned::Bool(b) => Arg::Bool(*b),
        Owned::Int(n) => Arg::Int(*n),
        Owned::Float(x) => Arg::Float(*x),
        Owned::Str(s) => Arg::Str(s),
        Owned::Bytes(b) => Arg::Bytes(b),
        Owned::Func(f) => Arg::HostFn(&**f),
        Owned::Array(a) => {
            macro_rules! slice {
                ($v:expr) => {
                    if writable { Arg::from($v.as_mut_slice()) } else { Arg::from($v.as_slice()) }
                };
            }
            match a {
                Array::I8(v) => slice!(v),
                Array::I16(v) => slice!(v),
                Array::I32(v) => slice!(v),
                Array::I64(v) => slice!(v),
                Array::U8(v) => slice!(v),
                Array::U16(v) => slice!(v),
                Array::U32(v) => slice!(v),
                Array::U64(v) => slice!(v),
                Array::F32(v) => slice!(v),
                Array::F64(v) => slice!(v),
            }
        }
    }
}

/// Equal and of the same kind; floats bit for bit (NaN equals NaN).
fn same(got: &Value, want: &Json) -> bool {
    let same_float = |x: f64| {
        float(want).is_ok_and(|w| (x.is_nan() && w.is_nan()) || (x == w && x.is_sign_negative() == w.is_sign_negative()))
            && (matches!(want, Json::Object(_)) || want.to_string().contains(['.', 'e', 'E']))
    };
    match got {
        Value::None => want.is_null(),
        Value::Bool(b) => want.as_bool() == Some(*b),
        Value::I64(n) => matches!(want, Json::Number(m) if m.as_str() == n.to_string()),
        Value::U64(n) => matches!(want, Json::Number(m) if m.as_str() == n.to_string()),
        Value::F32(x) => same_float(*x as f64),
        Value::F64(x) => same_float(*x),
        Value::Str(s) => want.as_str() == Some(s.as_str()),
        Value::Bytes(b) => {
            want.get("bytes").and_then(Json::as_str) == Some(&b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = std::fs::read_to_string(&args[0]).expect("the parity table");
    let table: Json = serde_json::from_str(&without_lone_surrogates(&text)).expect("the parity table is JSON");
    assert_eq!(table["format"], 1, "a parity table of format 1");
    let plugin = Plugin::load(&args[1], LoadOptions::default()).expect("the parity plugin");
    let target = format!("plugin '{}'", plugin.descriptor().id);
    let cases = table["cases"].as_array().expect("cases");
    let plain = run_path(cases, "rust", None, &plugin, "", &target);
    // Each case that closes its target gets a fresh one: a new instance per case.
    let method = run_path(cases, "rust-method", Some("method"), &plugin, "Parity.",
                          &format!("Parity instance 'direct' of {target}"));
    println!("{}", serde_json::json!({"passed": plain["passed"], "failed": plain["failed"], "skipped": plain["skipped"],
                                       "paths": {"rust": plain, "rust-method": method}}));
}

/// Whether the declaration of Parity method `name` has a struct or handle,
/// which the Python host's messages show as declared.
fn declared_with_structs_or_handles(name: &str) -> bool {
    api::parity::LAYOUT.lines().any(|line| {
        line.split_once(' ').and_then(|(_, rest)| rest.split_once(' ')).is_some_and(|(_, decl)| {
            decl.starts_with(&format!("{name}(")) && (decl.contains("struct ") || decl.contains("handle "))
        })
    })
}

fn run_path(cases: &[Json], path: &str, family: Option<&str>, plugin: &Plugin, prefix: &str, target: &str) -> Json {
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut skipped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for case in cases {
        let id = case["id"].as_str().expect("an id").to_string();
        let mut skip = |why: String| skipped.entry(why).or_default().push(id.clone());
        if let Some(hosts) = case.get("hosts").and_then(Json::as_array) {
            if !hosts.iter().any(|h| h == "rust") {
                skip("a case for other hosts".into());
                continue;
            }
        }
        let not_on = |key: &str| case.get("not_on").and_then(|n| n.get(key)).and_then(Json::as_str);
        let reason = not_on(path).or_else(|| family.and_then(not_on)).or_else(|| not_on("rust"));
        if let Some(why) = reason {
            skip(why.to_string());
            continue;
        }
        let instance;
        let callee: &dyn Target = if family.is_some() {
            instance = api::parity::create(plugin, Some("direct")).expect("the Parity instance 'direct'").into_inner();
            &instance
        } else {
            plugin
        };
        let name = case["call"].as_str().expect("a call");
        if family.is_some() && declared_with_structs_or_handles(name) {
            skip("struct values and handles travel in their C layout on the dynamic method path (the generated \
                  client packs them: tests/instances.rs)".into());
            continue;
        }
        let Some(signature) = callee.signature(name) else {
            skip(format!("the path has no {name}"));
            continue;
        };
        let params: Vec<Type> = signature.params.iter().map(|p| p.ty.clone()).collect();
        let mut values = Vec::new();
        let mut why = None;
        for v in case["args"].as_array().expect("args") {
            match owned(v, callee) {
                Ok(o) => values.push(o),
                Err(e) => {
                    why = Some(e);
                    break;
                }
            }
        }
        if let Some(why) = why {
            skip(why);
            continue;
        }
        let expect = &case["expect"];
        let outcome = {
            let mut call_args: Vec<Arg<'_>> = values
                .iter_mut()
                .enumerate()
                .map(|(i, v)| arg(v, params.get(i).unwrap_or(&Type::Scalar(ferrule_host::Scalar::I64))))
                .collect();
            callee.call(name, &mut call_args)
        };
        let shown = format!("{prefix}{name}");
        let ok = match (&outcome, expect.get("raises")) {
            (Err(e), Some(class)) => {
                let plugin_message = expect.get("plugin_message").and_then(Json::as_str).unwrap_or("");
                let message = expect["message"].as_str().expect("a message").replace("{name}", &shown)
                    .replace("{target}", target).replace("{plugin_message}", plugin_message);
                class == e.kind().python_name() && e.message() == message
                    && (expect.get("plugin_message").is_none() || e.plugin_message().unwrap_or("") == plugin_message)
            }
            (Ok(v), None) => {
                same(v, &expect["returns"])
                    && expect.get("after").and_then(Json::as_object).is_none_or(|after| {
                        after.iter().all(|(i, want)| {
                            let i: usize = i.parse().expect("an index");
                            match (&values[i], want.get("array").and_then(Json::as_str), want.get("values")) {
                                (Owned::Array(got), Some(format), Some(vals)) => {
                                    array(format, vals.as_array().expect("values")).is_ok_and(|w| &w == got)
                                }
                                _ => false,
                            }
                        })
                    })
            }
            _ => false,
        };
        if ok {
            passed.push(id);
        } else {
            let got = match &outcome {
                Ok(v) => format!("{v:?}"),
                Err(e) => format!("{}: {}", e.kind().python_name(), e.message()),
            };
            failed.push(serde_json::json!({"id": id, "got": got, "expected": expect}));
        }
    }
    serde_json::json!({"passed": passed.len(), "failed": failed, "skipped": skipped})
}
