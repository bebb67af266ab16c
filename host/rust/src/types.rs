//! The ABI's value types and signatures, as the host reads them.
//!
//! The facts of each type (its name, its range, the `ferrule_value` member
//! that carries it) are those of the Python host's one table,
//! `src/ferrule/_abi/types.py`; `tests/test_rust_host.py` holds the two
//! together.

use std::fmt;

/// A scalar or text type: what a parameter, a result, an array element or a
/// host function's value may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// `bool`
    Bool,
    /// `i8`
    I8,
    /// `i16`
    I16,
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `u8`
    U8,
    /// `u16`
    U16,
    /// `u32`
    U32,
    /// `u64`
    U64,
    /// `f32`
    F32,
    /// `f64`
    F64,
    /// `str`: UTF-8 text
    Str,
    /// `bytes`
    Bytes,
}

/// Every scalar, in the ABI's type-code order.
pub const SCALARS: [Scalar; 13] = [
    Scalar::Bool,
    Scalar::I8,
    Scalar::I16,
    Scalar::I32,
    Scalar::I64,
    Scalar::U8,
    Scalar::U16,
    Scalar::U32,
    Scalar::U64,
    Scalar::F32,
    Scalar::F64,
    Scalar::Str,
    Scalar::Bytes,
];

impl Scalar {
    /// As a signature spells it.
    pub fn name(self) -> &'static str {
        match self {
            Scalar::Bool => "bool",
            Scalar::I8 => "i8",
            Scalar::I16 => "i16",
            Scalar::I32 => "i32",
            Scalar::I64 => "i64",
            Scalar::U8 => "u8",
            Scalar::U16 => "u16",
            Scalar::U32 => "u32",
            Scalar::U64 => "u64",
            Scalar::F32 => "f32",
            Scalar::F64 => "f64",
            Scalar::Str => "str",
            Scalar::Bytes => "bytes",
        }
    }

    /// The scalar a signature name spells, if any.
    pub fn from_name(name: &str) -> Option<Scalar> {
        SCALARS.iter().copied().find(|s| s.name() == name)
    }

    /// A number type: a buffer element.
    pub fn is_number(self) -> bool {
        !matches!(self, Scalar::Bool | Scalar::Str | Scalar::Bytes)
    }

    /// The integer range, inclusive, as i128 (None for other types).
    pub fn range(self) -> Option<(i128, i128)> {
        let bits = match self {
            Scalar::I8 | Scalar::U8 => 8,
            Scalar::I16 | Scalar::U16 => 16,
            Scalar::I32 | Scalar::U32 => 32,
            Scalar::I64 | Scalar::U64 => 64,
            _ => return None,
        };
        Some(if self.signed() {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        })
    }

    fn signed(self) -> bool {
        matches!(self, Scalar::I8 | Scalar::I16 | Scalar::I32 | Scalar::I64)
    }

    /// The `ferrule_value` member: `i64`, `u64`, `f64`, `f32` or `bytes`.
    pub fn slot(self) -> &'static str {
        match self {
            Scalar::I8 | Scalar::I16 | Scalar::I32 | Scalar::I64 => "i64",
            Scalar::Bool | Scalar::U8 | Scalar::U16 | Scalar::U32 | Scalar::U64 => "u64",
            Scalar::F32 => "f32",
            Scalar::F64 => "f64",
            Scalar::Str | Scalar::Bytes => "bytes",
        }
    }

    /// Bytes of one element of an array of this type (0 for text).
    pub fn size(self) -> usize {
        match self {
            Scalar::Bool | Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::I64 | Scalar::U64 | Scalar::F64 => 8,
            Scalar::Str | Scalar::Bytes => 0,
        }
    }
}

/// The type of a parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// A scalar or text value.
    Scalar(Scalar),
    /// `buf[T]`: the caller's array, read-only.
    Buf(Scalar),
    /// `mutbuf[T]`: the caller's array, writable.
    MutBuf(Scalar),
    /// `fn(...) -> R`: a host function.
    Fn(Box<Signature>),
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Scalar(s) => f.write_str(s.name()),
            Type::Buf(s) => write!(f, "buf[{}]", s.name()),
            Type::MutBuf(s) => write!(f, "mutbuf[{}]", s.name()),
            Type::Fn(sig) => write!(f, "fn{sig}"),
        }
    }
}

/// One parameter: its name (empty in a host function's signature) and type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: Type,
}

/// A parsed signature, `(a: i64, b: i64) -> i64`. Its `Display` is the
/// canonical text, as the Python host prints it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The parameters, in order.
    pub params: Vec<Param>,
    /// The result type, if any.
    pub result: Option<Scalar>,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if p.name.is_empty() {
                write!(f, "{}", p.ty)?;
            } else {
                write!(f, "{}: {}", p.name, p.ty)?;
            }
        }
        f.write_str(")")?;
        if let Some(r) = self.result {
            write!(f, " -> {}", r.name())?;
        }
        Ok(())
    }
}

const MAX_LENGTH: usize = 4096;
const MAX_PARAMS: usize = 64;
/// Python's keywords: a parameter name may not be one (the Python host makes
/// parameters keyword arguments, and the grammar is one for every host).
const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

fn is_ascii_identifier(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Tokens as the Python host's parser cuts them: `->`, identifiers, and any
/// other single non-space character; each with its 0-based column (in
/// characters).
fn tokens(text: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'>') {
            out.push(("->".to_string(), i));
            i += 2;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((chars[start..i].iter().collect(), start));
        } else {
            out.push((c.to_string(), i));
            i += 1;
        }
    }
    out
}

struct Parser {
    tokens: Vec<(String, usize)>,
    pos: usize,
}

fn value_names() -> String {
    SCALARS.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
}

fn number_names() -> String {
    SCALARS.iter().filter(|s| s.is_number()).map(|s| s.name()).collect::<Vec<_>>().join(", ")
}

impl Parser {
    fn fail(&self, expected: &str) -> String {
        match self.tokens.get(self.pos) {
            Some((token, col)) => format!("expected {expected} at column {}, found {}", col + 1, py_repr(token)),
            None => format!("expected {expected}, found the end of the signature"),
        }
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(|(t, _)| t.as_str())
    }

    fn take(&mut self, expected: &str, ok: impl Fn(&str) -> bool) -> Result<String, String> {
        match self.tokens.get(self.pos) {
            Some((t, _)) if ok(t) => {
                self.pos += 1;
                Ok(t.clone())
            }
            _ => Err(self.fail(expected)),
        }
    }

    fn exact(&mut self, token: &str) -> Result<(), String> {
        self.take(token, |t| t == token).map(|_| ())
    }

    fn value_type(&mut self) -> Result<Scalar, String> {
        let t = self.take(&format!("a type ({})", value_names()), |t| Scalar::from_name(t).is_some())?;
        Ok(Scalar::from_name(&t).expect("checked"))
    }

    fn param_type(&mut self) -> Result<Type, String> {
        match self.peek() {
            Some("buf") | Some("mutbuf") => {
                let kind = self.take("buf or mutbuf", |t| t == "buf" || t == "mutbuf")?;
                self.exact("[")?;
                let elem = self.take(&format!("an element type ({})", number_names()), |t| {
                    Scalar::from_name(t).is_some_and(Scalar::is_number)
                })?;
                self.exact("]")?;
                let elem = Scalar::from_name(&elem).expect("checked");
                Ok(if kind == "buf" { Type::Buf(elem) } else { Type::MutBuf(elem) })
            }
            Some("fn") => {
                self.exact("fn")?;
                Ok(Type::Fn(Box::new(self.parameters(false)?)))
            }
            _ => Ok(Type::Scalar(self.value_type()?)),
        }
    }

    fn parameters(&mut self, named: bool) -> Result<Signature, String> {
        self.exact("(")?;
        let mut params: Vec<Param> = Vec::new();
        if self.peek().is_some() && self.peek() != Some(")") {
            loop {
                if named {
                    let name = self.take("a parameter name (an ASCII identifier, not a Python keyword)", |t| {
                        is_ascii_identifier(t) && !KEYWORDS.contains(&t)
                    })?;
                    if params.iter().any(|p| p.name == name) {
                        self.pos -= 1;
                        return Err(self.fail("a parameter name not used before"));
                    }
                    self.exact(":")?;
                    let ty = self.param_type()?;
                    params.push(Param { name, ty });
                } else {
                    let ty = Type::Scalar(self.value_type()?);
                    params.push(Param { name: String::new(), ty });
                }
                if params.len() > MAX_PARAMS {
                    return Err(format!("more than {MAX_PARAMS} parameters"));
                }
                if self.peek() == Some(",") {
                    self.pos += 1;
                    continue;
                }
                break;
            }
        }
        self.exact(")")?;
        let mut result = None;
        if self.peek() == Some("->") {
            self.exact("->")?;
            result = Some(self.value_type()?);
        }
        Ok(Signature { params, result })
    }
}

/// Python's `repr()` of a short token: `'x'`, or `"'"` for a quote.
pub(crate) fn py_repr(text: &str) -> String {
    if text.contains('\'') && !text.contains('"') {
        return format!("\"{text}\"");
    }
    let mut out = String::from("'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Why bytes are not UTF-8, in Python's words: `invalid start byte at byte 3`.
pub(crate) fn utf8_reason(bytes: &[u8], e: &std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    let reason = if e.error_len().is_none() {
        "unexpected end of data"
    } else if (0xc2..=0xf4).contains(&bytes[at]) {
        "invalid continuation byte"
    } else {
        "invalid start byte"
    };
    format!("{reason} at byte {at}")
}

/// Bytes as Python's repr shows them, without the quotes: `root:x\x00`.
pub(crate) fn bytes_repr(raw: &[u8]) -> String {
    raw.iter()
        .map(|&b| match b {
            b'\\' => "\\\\".to_string(),
            b'\'' => "\\'".to_string(),
            b'\t' => "\\t".to_string(),
            b'\n' => "\\n".to_string(),
            b'\r' => "\\r".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

/// Parse a signature. The error says where and what was expected, in the
/// Python host's words.
pub fn parse_signature(text: &str) -> Result<Signature, String> {
    let length = text.chars().count();
    if length > MAX_LENGTH {
        return Err(format!("signature is {length} characters long, at most {MAX_LENGTH} allowed"));
    }
    let mut parser = Parser { tokens: tokens(text), pos: 0 };
    let signature = parser.parameters(true)?;
    if parser.pos < parser.tokens.len() {
        return Err(parser.fail(if signature.result.is_some() {
            "the end of the signature"
        } else {
            "'->' or the end of the signature"
        }));
    }
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text() {
        let sig = parse_signature("( f : fn( i64 )->i64 ,x:i64,d:buf [ f64 ])-> i64").unwrap();
        assert_eq!(sig.to_string(), "(f: fn(i64) -> i64, x: i64, d: buf[f64]) -> i64");
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(parse_signature("(a: i65)").unwrap_err(),
                   "expected a type (bool, i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, str, bytes) at column 5, \
                    found 'i65'");
        assert_eq!(parse_signature("(a: i64, a: i64)").unwrap_err(),
                   "expected a parameter name not used before at column 10, found 'a'");
        assert_eq!(parse_signature("(class: i64)").unwrap_err(),
                   "expected a parameter name (an ASCII identifier, not a Python keyword) at column 2, found 'class'");
        assert_eq!(parse_signature("(a: i64").unwrap_err(), "expected ), found the end of the signature");
    }
}
