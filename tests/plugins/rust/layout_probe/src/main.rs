//! Prints the Rust SDK's view of the ferrule ABI as one JSON object, keyed by
//! the C names from `sdk/c/include/ferrule.h`:
//!
//! ```text
//! {"structs": {"ferrule_bytes": {"size": 24, "align": 8, "fields": {"ptr": 0, ...}}, ...},
//!  "constants": {"FERRULE_ABI_MAJOR": 1, ...}}
//! ```
//!
//! With the argument `types`, prints instead how the SDK spells each ABI value
//! type, for comparison with the Python host's table (src/ferrule/_abi/types.py):
//!
//! ```text
//! {"i8": {"abi": "i8", "size": 1}, "&str": {"abi": "str", "size": 0}, "&[f64]": {"abi": "buf[f64]", ...}, ...}
//! ```

use std::mem::{align_of, offset_of, size_of};

use ferrule_sdk::__private::convert::FromArg;
use ferrule_sdk::abi::{self, Buf, Bytes, Function, Host, Interface, Plugin, Value};

/// The ABI name of a parameter type, and its size as an array element or
/// struct field (0 where it is neither).
fn abi_of<T: FromArg<'static>>(element: bool) -> (String, usize) {
    (T::abi_type().into_owned(), if element { size_of::<T>() } else { 0 })
}

fn print_types() {
    let mut rows: Vec<(String, (String, usize))> = vec![
        ("bool".into(), abi_of::<bool>(true)),
        ("&str".into(), abi_of::<&'static str>(false)),
        ("&[u8]".into(), abi_of::<&'static [u8]>(false)),
    ];
    macro_rules! numbers {
        ($($t:ident),*) => {$(
            rows.push((stringify!($t).into(), abi_of::<$t>(true)));
            rows.push((format!("&mut [{}]", stringify!($t)), abi_of::<&'static mut [$t]>(false)));
        )*};
    }
    numbers!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);
    // &[u8] is bytes; the other element types borrow as buf[T].
    macro_rules! bufs {
        ($($t:ident),*) => {$(
            rows.push((format!("&[{}]", stringify!($t)), abi_of::<&'static [$t]>(false)));
        )*};
    }
    bufs!(i8, i16, i32, i64, u16, u32, u64, f32, f64);
    let body: Vec<String> = rows
        .iter()
        .map(|(rust, (abi, size))| format!("\"{rust}\": {{\"abi\": \"{abi}\", \"size\": {size}}}"))
        .collect();
    println!("{{{}}}", body.join(", "));
}

struct Layout {
    name: &'static str,
    size: usize,
    align: usize,
    fields: Vec<(&'static str, usize)>,
}

macro_rules! layout {
    ($cname:literal, $ty:ty, { $($cfield:literal => $field:ident),* $(,)? }) => {
        Layout {
            name: $cname,
            size: size_of::<$ty>(),
            align: align_of::<$ty>(),
            fields: vec![$(($cfield, offset_of!($ty, $field))),*],
        }
    };
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("types") {
        print_types();
        return;
    }
    let structs = [
        layout!("ferrule_bytes", Bytes, {
            "ptr" => ptr, "len" => len, "release" => release,
        }),
        layout!("ferrule_buf", Buf, {
            "ptr" => ptr, "len" => len,
        }),
        layout!("ferrule_value", Value, {
            "i64" => i64, "u64" => u64, "f64" => f64, "f32" => f32, "bytes" => bytes,
            "buf" => buf, "func" => func,
        }),
        layout!("ferrule_host", Host, {
            "struct_size" => struct_size, "abi_major" => abi_major, "abi_minor" => abi_minor,
            "host_data" => host_data, "log" => log, "set_error" => set_error,
            "alloc" => alloc, "free" => free, "invoke" => invoke,
            "query" => query, "call" => call, "release" => release,
        }),
        layout!("ferrule_function", Function, {
            "struct_size" => struct_size, "flags" => flags, "name" => name,
            "signature" => signature, "doc" => doc, "call" => call,
        }),
        layout!("ferrule_plugin", Plugin, {
            "magic" => magic, "struct_size" => struct_size, "abi_major" => abi_major,
            "abi_minor" => abi_minor, "id" => id, "name" => name, "version" => version,
            "description" => description, "license" => license,
            "function_count" => function_count, "flags" => flags, "functions" => functions,
            "init" => init, "shutdown" => shutdown, "interface_count" => interface_count,
            "reserved" => reserved, "interfaces" => interfaces,
        }),
        layout!("ferrule_interface", Interface, {
            "struct_size" => struct_size, "flags" => flags, "id" => id, "revision" => revision,
            "method_count" => method_count, "fingerprint" => fingerprint, "layout" => layout,
            "name" => name, "doc" => doc, "methods" => methods, "create" => create,
            "destroy" => destroy,
        }),
    ];
    let constants: [(&str, u64); 14] = [
        ("FERRULE_ABI_MAJOR", abi::ABI_MAJOR.into()),
        ("FERRULE_ABI_MINOR", abi::ABI_MINOR.into()),
        ("FERRULE_MAGIC", abi::MAGIC),
        ("FERRULE_OK", abi::OK as u64),
        ("FERRULE_ERROR", abi::ERROR as u64),
        ("FERRULE_PANIC", abi::PANIC as u64),
        ("FERRULE_LOG_TRACE", abi::LOG_TRACE as u64),
        ("FERRULE_LOG_DEBUG", abi::LOG_DEBUG as u64),
        ("FERRULE_LOG_INFO", abi::LOG_INFO as u64),
        ("FERRULE_LOG_WARN", abi::LOG_WARN as u64),
        ("FERRULE_LOG_ERROR", abi::LOG_ERROR as u64),
        ("FERRULE_FN_THREAD_SAFE", abi::FN_THREAD_SAFE.into()),
        ("FERRULE_FN_QUICK", abi::FN_QUICK.into()),
        ("FERRULE_IFACE_THREAD_SAFE", abi::IFACE_THREAD_SAFE.into()),
    ];

    let mut out = String::from("{\"structs\": {");
    for (i, s) in structs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!(
            "\"{}\": {{\"size\": {}, \"align\": {}, \"fields\": {{",
            s.name, s.size, s.align
        ));
        for (j, (field, offset)) in s.fields.iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("\"{field}\": {offset}"));
        }
        out.push_str("}}");
    }
    out.push_str("}, \"constants\": {");
    for (i, (name, value)) in constants.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("\"{name}\": {value}"));
    }
    out.push_str("}}");
    println!("{out}");
}
