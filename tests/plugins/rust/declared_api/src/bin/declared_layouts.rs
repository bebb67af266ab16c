//! Prints `declared_api::ALL` as JSON, `{"name": {"layout": ..., "fingerprint": ...}}`,
//! for tests/test_declared.py to compare with ferrule.idl's layouts.

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
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

fn main() {
    let entries: Vec<String> = declared_api::ALL
        .iter()
        .map(|(name, layout, fingerprint)| {
            format!("{}: {{\"layout\": {}, \"fingerprint\": {fingerprint}}}", json_str(name), json_str(layout))
        })
        .collect();
    println!("{{{}}}", entries.join(", "));
}
