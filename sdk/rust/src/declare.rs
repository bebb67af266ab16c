//! The declaration model behind [`interface!`](crate::interface): what the
//! macro records about an interface, and the `const fn`s that turn it into
//! the canonical layout text and its fingerprint at compile time, byte for
//! byte as `ferrule.idl` (`canonical_layout`) does. Reached by expanded code
//! as `ferrule_sdk::__private::declare`; not an API.

/// A parameter, result or field type, as the layout text names it.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// A number or `bool`: its name and size (its alignment too).
    Fixed(&'static str, usize),
    /// `str` or `bytes`.
    Text(&'static str),
    /// `buf[T]`, with T's name.
    Buf(&'static str),
    /// `mutbuf[T]`, with T's name.
    MutBuf(&'static str),
    /// A declared struct.
    Struct(&'static Struct),
    /// A declared handle, by name.
    Handle(&'static str),
    /// A host function: parameter types and result.
    Fn(&'static [Ty], Option<&'static Ty>),
}

/// A declared struct: C layout, natural alignment, no packing.
#[derive(Clone, Copy, Debug)]
pub struct Struct {
    /// The struct's name.
    pub name: &'static str,
    /// Name and type of each field, in order.
    pub fields: &'static [(&'static str, Ty)],
}

/// One method: name, parameters and result (`None`: no result).
#[derive(Clone, Copy, Debug)]
pub struct Method {
    /// The method's name.
    pub name: &'static str,
    /// Name and type of each parameter, in order (the layout has only the
    /// types; the call-layer signature has both).
    pub params: &'static [(&'static str, Ty)],
    /// The result type.
    pub result: Option<Ty>,
}

/// One interface revision.
#[derive(Clone, Copy, Debug)]
pub struct Interface {
    /// The reverse-DNS id.
    pub id: &'static str,
    /// The revision.
    pub revision: u32,
    /// Whether one instance may be called from several threads at once.
    pub thread_safe: bool,
    /// The methods, in declaration order.
    pub methods: &'static [Method],
}

/// A struct declared with `interface!`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a struct declared with ferrule_sdk::interface!",
    label = "declare it there as `pub struct {Self} {{ field: TYPE, ... }}`, or write `handle {Self}` for a handle"
)]
pub trait DeclaredStruct {
    /// Its declaration.
    const DECL: Struct;
}

/// A handle declared with `interface!`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handle declared with ferrule_sdk::interface!",
    label = "declare it there as `pub handle {Self};`, or write `struct {Self}` for a struct"
)]
pub trait DeclaredHandle {
    /// Its name.
    const NAME: &'static str;
}

const fn size_of(t: &Ty) -> usize {
    match t {
        Ty::Fixed(_, size) => *size,
        Ty::Handle(_) => 8,
        Ty::Struct(s) => s.size(),
        _ => panic!("ferrule: only numbers, bool, structs and handles have a size"),
    }
}

const fn align_of(t: &Ty) -> usize {
    match t {
        Ty::Struct(s) => s.align(),
        _ => size_of(t),
    }
}

const fn round_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

impl Ty {
    /// The same type; `E` is the Rust type of a buffer's elements, named
    /// only so that a non-number element fails to compile.
    pub const fn elem<E: Copy>(self) -> Ty {
        self
    }
}

impl Struct {
    /// The alignment: the largest of the fields'.
    pub const fn align(&self) -> usize {
        let mut align = 1;
        let mut i = 0;
        while i < self.fields.len() {
            let a = align_of(&self.fields[i].1);
            if a > align {
                align = a;
            }
            i += 1;
        }
        align
    }

    /// The offset of field `index`.
    pub const fn offset(&self, index: usize) -> usize {
        let mut offset = 0;
        let mut i = 0;
        loop {
            let t = &self.fields[i].1;
            offset = round_up(offset, align_of(t));
            if i == index {
                return offset;
            }
            offset += size_of(t);
            i += 1;
        }
    }

    /// The size: past the last field, rounded up to the alignment.
    pub const fn size(&self) -> usize {
        let last = self.fields.len() - 1;
        round_up(self.offset(last) + size_of(&self.fields[last].1), self.align())
    }

    /// The offset of the field named `name` (which must exist).
    pub const fn offset_of(&self, name: &str) -> usize {
        let mut i = 0;
        while i < self.fields.len() {
            if str_eq(self.fields[i].0, name) {
                return self.offset(i);
            }
            i += 1;
        }
        panic!("ferrule: no such field")
    }
}

/// Byte-wise string equality (`==` on `str` is not `const`).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `name` without a leading `r#` (a raw identifier's declared name).
pub const fn unraw(name: &str) -> &str {
    match name.as_bytes() {
        [b'r', b'#', rest @ ..] => match core::str::from_utf8(rest) {
            Ok(s) => s,
            Err(_) => name,
        },
        _ => name,
    }
}

/// Whether `id` is reverse-DNS as the host requires: two or more dot-separated
/// parts of ASCII letters, digits, `_` and `-`.
pub const fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    let (mut parts, mut part_len, mut i) = (1, 0, 0);
    while i < b.len() {
        match b[i] {
            b'.' if part_len == 0 => return false,
            b'.' => {
                parts += 1;
                part_len = 0;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => part_len += 1,
            _ => return false,
        }
        i += 1;
    }
    parts >= 2 && part_len > 0
}

/// Method names that `ferrule.idl` refuses (attributes of every Python
/// instance) or that clash with the items generated for an interface.
pub const fn reserved_method(name: &str) -> bool {
    let reserved = [
        "aio", "close", "closed", "implementation", "create", "query", "query_in", "object", "of", "new", "into_inner",
    ];
    let mut i = 0;
    while i < reserved.len() {
        if str_eq(reserved[i], unraw(name)) {
            return true;
        }
        i += 1;
    }
    false
}

/// Names of the items generated in an interface's module.
pub const fn reserved_type(name: &str) -> bool {
    let reserved = ["Client", "Vtable", "Spec", "ID", "REVISION", "FINGERPRINT", "LAYOUT", "SPEC", "C"];
    let mut i = 0;
    while i < reserved.len() {
        if str_eq(reserved[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

// ---- the canonical layout --------------------------------------------------

/// The most structs and handles one interface may use (the collection is a
/// fixed array: `const fn` cannot allocate).
const MAX_TYPES: usize = 64;

/// The structs (dependencies first) and handles an interface uses, each
/// once, in first-use order, as `ferrule.idl` collects them.
#[derive(Clone, Copy)]
struct Used {
    structs: [Option<&'static Struct>; MAX_TYPES],
    n_structs: usize,
    handles: [&'static str; MAX_TYPES],
    n_handles: usize,
}

const fn same_struct(a: &Struct, b: &Struct) -> bool {
    if !str_eq(a.name, b.name) || a.fields.len() != b.fields.len() {
        return false;
    }
    let mut i = 0;
    while i < a.fields.len() {
        let (fa, fb) = (&a.fields[i], &b.fields[i]);
        let same_type = match (&fa.1, &fb.1) {
            (Ty::Fixed(x, _), Ty::Fixed(y, _)) | (Ty::Handle(x), Ty::Handle(y)) => str_eq(x, y),
            (Ty::Struct(x), Ty::Struct(y)) => same_struct(x, y),
            _ => false,
        };
        if !str_eq(fa.0, fb.0) || !same_type {
            return false;
        }
        i += 1;
    }
    true
}

impl Used {
    const fn new() -> Used {
        Used { structs: [None; MAX_TYPES], n_structs: 0, handles: [""; MAX_TYPES], n_handles: 0 }
    }

    const fn add(mut self, t: &Ty) -> Used {
        match t {
            Ty::Struct(s) => {
                let mut i = 0;
                while i < s.fields.len() {
                    self = self.add(&s.fields[i].1);
                    i += 1;
                }
                let mut j = 0;
                while j < self.n_structs {
                    if let Some(seen) = self.structs[j] {
                        if str_eq(seen.name, s.name) {
                            if !same_struct(seen, s) {
                                panic!("ferrule_sdk::interface!: the interface uses two different structs of one name; rename one");
                            }
                            return self;
                        }
                    }
                    j += 1;
                }
                if self.n_structs == MAX_TYPES {
                    panic!("ferrule_sdk::interface!: an interface may use at most 64 structs");
                }
                self.structs[self.n_structs] = Some(*s);
                self.n_structs += 1;
            }
            Ty::Handle(name) => {
                let mut j = 0;
                while j < self.n_handles {
                    if str_eq(self.handles[j], name) {
                        return self;
                    }
                    j += 1;
                }
                if self.n_handles == MAX_TYPES {
                    panic!("ferrule_sdk::interface!: an interface may use at most 64 handles");
                }
                self.handles[self.n_handles] = name;
                self.n_handles += 1;
            }
            Ty::Fn(params, _) => {
                let mut i = 0;
                while i < params.len() {
                    self = self.add(&params[i]);
                    i += 1;
                }
            }
            _ => {}
        }
        self
    }

    const fn of(decl: &Interface) -> Used {
        let mut used = Used::new();
        let mut m = 0;
        while m < decl.methods.len() {
            let method = &decl.methods[m];
            let mut p = 0;
            while p < method.params.len() {
                used = used.add(&method.params[p].1);
                p += 1;
            }
            if let Some(r) = &method.result {
                used = used.add(r);
            }
            m += 1;
        }
        used
    }

    /// Whether a used struct or handle is named `name`.
    const fn has(&self, name: &str) -> bool {
        let mut i = 0;
        while i < self.n_structs {
            if let Some(s) = self.structs[i] {
                if str_eq(s.name, name) {
                    return true;
                }
            }
            i += 1;
        }
        i = 0;
        while i < self.n_handles {
            if str_eq(self.handles[i], name) {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// Fails (at compile time) for what `ferrule.idl` and `ferrule generate
/// --rust` refuse about the types an interface uses; then whether one of them
/// is named `trait_name`.
pub const fn check_types(decl: &Interface, trait_name: &str) -> bool {
    let used = Used::of(decl);
    let mut i = 0;
    while i < used.n_structs {
        if let Some(s) = used.structs[i] {
            if is_handle(&used, s.name) {
                panic!("ferrule_sdk::interface!: a struct and a handle the interface uses have one name; rename one");
            }
            if reserved_type(s.name) {
                panic!("ferrule_sdk::interface!: a struct the interface uses is named like a generated item (Client, Vtable, Spec, ID, REVISION, FINGERPRINT, LAYOUT, SPEC, C); rename it");
            }
        }
        i += 1;
    }
    i = 0;
    while i < used.n_handles {
        if reserved_type(used.handles[i]) {
            panic!("ferrule_sdk::interface!: a handle the interface uses is named like a generated item (Client, Vtable, Spec, ID, REVISION, FINGERPRINT, LAYOUT, SPEC, C); rename it");
        }
        i += 1;
    }
    used.has(trait_name)
}

const fn is_handle(used: &Used, name: &str) -> bool {
    let mut i = 0;
    while i < used.n_handles {
        if str_eq(used.handles[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// The layout text, written into `N` bytes; with `N == 0` only its length
/// is counted (the first pass, which gives `N`).
#[derive(Clone, Copy)]
struct Out<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Out<N> {
    const fn bytes(mut self, b: &[u8]) -> Self {
        let mut i = 0;
        while i < b.len() {
            if N > 0 {
                self.buf[self.len] = b[i];
            }
            self.len += 1;
            i += 1;
        }
        self
    }

    const fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }

    const fn num(self, n: usize) -> Self {
        let mut digits = [0u8; 20];
        let (mut i, mut n) = (digits.len(), n);
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let (_, tail) = digits.split_at(i);
        self.bytes(tail)
    }

    const fn ty(self, t: &Ty) -> Self {
        match t {
            Ty::Fixed(name, _) | Ty::Text(name) => self.str(name),
            Ty::Buf(e) => self.str("buf[").str(e).str("]"),
            Ty::MutBuf(e) => self.str("mutbuf[").str(e).str("]"),
            Ty::Struct(s) => self.str("struct ").str(s.name),
            Ty::Handle(name) => self.str("handle ").str(name),
            Ty::Fn(params, result) => {
                let mut out = self.str("fn(").list(params).str(")");
                if let Some(r) = result {
                    out = out.str(" -> ").ty(r);
                }
                out
            }
        }
    }

    /// A type as the call layer carries it: a struct as `bytes`, a handle
    /// as `u64` (`TypeSpec.abi` in ferrule.idl).
    const fn abi(self, t: &Ty) -> Self {
        match t {
            Ty::Struct(_) => self.str("bytes"),
            Ty::Handle(_) => self.str("u64"),
            _ => self.ty(t),
        }
    }

    /// The call-layer signature of `m` (`MethodSpec.signature` in
    /// ferrule.idl): a struct result is a trailing `out: mutbuf[u8]`.
    const fn signature(mut self, m: &Method) -> Self {
        self = self.str("(");
        let mut p = 0;
        while p < m.params.len() {
            if p > 0 {
                self = self.str(", ");
            }
            self = self.str(unraw(m.params[p].0)).str(": ").abi(&m.params[p].1);
            p += 1;
        }
        match &m.result {
            Some(Ty::Struct(_)) => self.str(if p > 0 { ", out: mutbuf[u8])" } else { "out: mutbuf[u8])" }),
            Some(r) => self.str(") -> ").abi(r),
            None => self.str(")"),
        }
    }

    const fn list(mut self, types: &[Ty]) -> Self {
        let mut i = 0;
        while i < types.len() {
            if i > 0 {
                self = self.str(", ");
            }
            self = self.ty(&types[i]);
            i += 1;
        }
        self
    }

    const fn layout(mut self, decl: &Interface) -> Self {
        let used = Used::of(decl);
        self = self.str("ferrule-layout 1\ninterface ").str(decl.id).str("\nrevision ");
        self = self.num(decl.revision as usize).str("\nthread-safe ");
        self = self.str(if decl.thread_safe { "yes\n" } else { "no\n" });
        let mut i = 0;
        while i < used.n_handles {
            self = self.str("handle ").str(used.handles[i]).str(": u64\n");
            i += 1;
        }
        i = 0;
        while i < used.n_structs {
            if let Some(s) = used.structs[i] {
                self = self.str("struct ").str(s.name).str(": size ").num(s.size());
                self = self.str(", align ").num(s.align()).str("\n");
                let mut f = 0;
                while f < s.fields.len() {
                    self = self.str("  field ").str(unraw(s.fields[f].0)).str(": ");
                    self = self.ty(&s.fields[f].1).str(" at ").num(s.offset(f)).str("\n");
                    f += 1;
                }
            }
            i += 1;
        }
        i = 0;
        while i < decl.methods.len() {
            let m = &decl.methods[i];
            self = self.str("method ").num(i).str(" ").str(unraw(m.name)).str("(");
            let mut p = 0;
            while p < m.params.len() {
                if p > 0 {
                    self = self.str(", ");
                }
                self = self.ty(&m.params[p].1);
                p += 1;
            }
            self = match &m.result {
                Some(r) => self.str(") -> ").ty(r).str("\n"),
                None => self.str(") -> none\n"),
            };
            i += 1;
        }
        self
    }
}

/// The length of `decl`'s layout text in bytes.
pub const fn layout_len(decl: &Interface) -> usize {
    Out::<0> { buf: [], len: 0 }.layout(decl).len
}

/// `decl`'s layout text; `N` must be [`layout_len`].
pub const fn layout_bytes<const N: usize>(decl: &Interface) -> [u8; N] {
    let out = Out::<N> { buf: [0; N], len: 0 }.layout(decl);
    assert!(out.len == N, "ferrule: layout_bytes::<N> needs N == layout_len");
    out.buf
}

/// The length of `m`'s call-layer signature in bytes.
pub const fn signature_len(m: &Method) -> usize {
    Out::<0> { buf: [], len: 0 }.signature(m).len
}

/// `m`'s call-layer signature; `N` must be [`signature_len`].
pub const fn signature_bytes<const N: usize>(m: &Method) -> [u8; N] {
    let out = Out::<N> { buf: [0; N], len: 0 }.signature(m);
    assert!(out.len == N, "ferrule: signature_bytes::<N> needs N == signature_len");
    out.buf
}

/// The layout text or a signature as `str` (UTF-8 from the declaration).
pub const fn layout_str(bytes: &'static [u8]) -> &'static str {
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => panic!("ferrule: a layout text is not UTF-8"),
    }
}

pub use crate::sha256::fingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    const POINT: Struct = Struct { name: "Point", fields: &[("x", Ty::Fixed("i32", 4)), ("y", Ty::Fixed("i32", 4))] };
    const RECT: Struct = Struct {
        name: "Rect",
        fields: &[
            ("origin", Ty::Struct(&POINT)),
            ("width", Ty::Fixed("u32", 4)),
            ("height", Ty::Fixed("u32", 4)),
            ("filled", Ty::Fixed("bool", 1)),
            ("area_hint", Ty::Fixed("u64", 8)),
        ],
    };

    #[test]
    fn natural_layout() {
        assert_eq!((POINT.size(), POINT.align()), (8, 4));
        assert_eq!((RECT.size(), RECT.align()), (32, 8));
        assert_eq!([RECT.offset(0), RECT.offset(3), RECT.offset(4)], [0, 16, 24]);
        assert_eq!(RECT.offset_of("area_hint"), 24);
    }

    #[test]
    fn ids_and_names() {
        assert!(valid_id("org.ferrule.test.counter") && valid_id("a-b.c_d"));
        for bad in ["", "org", "org.", ".org", "org..x", "org.ex ample", "org.é"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert_eq!(unraw("r#type"), "type");
        assert_eq!(unraw("rtype"), "rtype");
        assert!(reserved_method("close") && reserved_method("r#of") && !reserved_method("closes"));
    }

    #[test]
    fn numbers_and_fn_types() {
        const DECL: Interface = Interface {
            id: "org.x.y",
            revision: 4_000_000_000,
            thread_safe: true,
            methods: &[Method {
                name: "r#apply",
                params: &[
                    ("r#f", Ty::Fn(&[Ty::Text("str"), Ty::Fixed("i64", 8)], Some(&Ty::Text("bytes")))),
                    ("g", Ty::Fn(&[], None)),
                ],
                result: None,
            }],
        };
        const N: usize = layout_len(&DECL);
        const BYTES: [u8; N] = layout_bytes::<N>(&DECL);
        assert_eq!(
            layout_str(&BYTES),
            "ferrule-layout 1\ninterface org.x.y\nrevision 4000000000\nthread-safe yes\n\
             method 0 apply(fn(str, i64) -> bytes, fn()) -> none\n"
        );
        const M: Method = DECL.methods[0];
        const S: [u8; signature_len(&M)] = signature_bytes::<{ signature_len(&M) }>(&M);
        assert_eq!(layout_str(&S), "(f: fn(str, i64) -> bytes, g: fn())");
        const R: Method = Method { name: "grow", params: &[("r", Ty::Struct(&RECT)), ("by", Ty::Fixed("u32", 4))], result: Some(Ty::Struct(&RECT)) };
        const RS: [u8; signature_len(&R)] = signature_bytes::<{ signature_len(&R) }>(&R);
        assert_eq!(layout_str(&RS), "(r: bytes, by: u32, out: mutbuf[u8])");
        const T: Method = Method { name: "token", params: &[], result: Some(Ty::Handle("Token")) };
        const TS: [u8; signature_len(&T)] = signature_bytes::<{ signature_len(&T) }>(&T);
        assert_eq!(layout_str(&TS), "() -> u64");
    }
}
