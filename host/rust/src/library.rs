//! Finding and opening a plugin's library, with the Python host's rules:
//! a path, or a bare name looked up in `FERRULE_PATH` only (never the
//! current directory or the system loader's path); the trust checks before
//! any of it runs; `dlopen(RTLD_NOW | RTLD_LOCAL)`; and never `dlclose`.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// An opened library. Never closed: code of it may still run (a thread the
/// plugin started, a callback it registered), so it stays mapped for the
/// life of the process, as with the Python host.
pub(crate) struct Library {
    inner: &'static libloading::os::unix::Library,
    pub(crate) path: String,
}

impl Library {
    /// The address of an exported symbol, or None.
    pub(crate) fn symbol(&self, name: &str) -> Option<*const std::ffi::c_void> {
        let mut bytes = name.as_bytes().to_vec();
        bytes.push(0);
        // SAFETY: the symbol is only read as an address here; the caller
        // casts it to the type the ABI gives that symbol.
        unsafe {
            self.inner
                .get::<*const std::ffi::c_void>(&bytes)
                .ok()
                .map(|s| *s)
                .filter(|p| !p.is_null())
        }
    }
}

/// The file a plugin name opens: an absolute path for a path (a name with a
/// slash), else the first `FERRULE_PATH` directory's file of that name.
pub(crate) fn plugin_file(name: &Path) -> Result<PathBuf> {
    let text = name.as_os_str();
    if text.is_empty() {
        return Err(Error::new(ErrorKind::LibraryNotFound, "empty plugin name: give the plugin's path"));
    }
    if name.components().count() > 1 || text.as_encoded_bytes().contains(&b'/') {
        return Ok(absolute(name));
    }
    let text = text.to_string_lossy();
    let file_name = if text.ends_with(".so") || text.contains(".so.") || text.ends_with(".dylib")
        || text.ends_with(".dll")
    {
        text.to_string()
    } else {
        format!("lib{text}.so")
    };
    let dirs = ferrule_path();
    for directory in &dirs {
        let candidate = directory.join(&file_name);
        if fs::symlink_metadata(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    let joined = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":");
    let wh = if dirs.is_empty() {
        "in FERRULE_PATH, which is not set".to_string()
    } else {
        format!("in FERRULE_PATH ({joined})")
    };
    let advice = if fs::symlink_metadata(&file_name).is_ok() {
        format!("{file_name} is in the current directory: pass './{file_name}' (or its full path) to load that file")
    } else {
        "give the plugin's path, or add its directory to FERRULE_PATH".to_string()
    };
    Err(Error::new(
        ErrorKind::LibraryNotFound,
        format!(
            "no plugin {file_name} {wh}: a bare plugin name is looked up in FERRULE_PATH's directories only, never \
             on the system loader path or in the current directory; {advice}"
        ),
    ))
}

fn ferrule_path() -> Vec<PathBuf> {
    std::env::var_os("FERRULE_PATH")
        .map(|v| std::env::split_paths(&v).filter(|d| !d.as_os_str().is_empty()).map(|d| absolute(&d)).collect())
        .unwrap_or_default()
}

/// Absolute, with `.` and `..` taken out by name, as Python's
/// `os.path.abspath` does (links are not followed).
fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::from("/");
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out
}

extern "C" {
    fn geteuid() -> u32;
}

fn others(meta: &fs::Metadata, me: u32) -> Option<String> {
    let mode = meta.permissions().mode() & 0o7777;
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!("is owned by another user (uid {})", meta.uid()));
    }
    if mode & 0o002 != 0 {
        return Some(format!("is writable by every user (mode {mode:04o})"));
    }
    if mode & 0o020 != 0 {
        return Some(format!("is writable by its group (mode {mode:04o})"));
    }
    None
}

/// Refuse a file that someone other than this user (or root) could change,
/// or replace in its directory (a sticky directory such as /tmp is fine).
pub(crate) fn check_permissions(path: &Path) -> Result<()> {
    let Ok(lmeta) = fs::symlink_metadata(path) else { return Ok(()) }; // the loader says what is missing
    let (real, meta) = if lmeta.file_type().is_symlink() {
        let Ok(real) = fs::canonicalize(path) else { return Ok(()) };
        let Ok(meta) = fs::metadata(&real) else { return Ok(()) };
        (real, meta)
    } else {
        (path.to_path_buf(), lmeta)
    };
    let directory = real.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let Ok(dmeta) = fs::metadata(&directory) else { return Ok(()) };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { geteuid() };
    let (file_problem, dir_problem) = (others(&meta, me), others(&dmeta, me));
    if file_problem.is_none() && dir_problem.is_none() {
        return Ok(());
    }
    let real = fs::canonicalize(&real).unwrap_or(real);
    let directory = real.parent().map(Path::to_path_buf).unwrap_or(directory);
    let fix = "; if that is intended, pass strict_permissions=False";
    if let Some(problem) = file_problem {
        return Err(Error::new(
            ErrorKind::UnsafeFile,
            format!(
                "{} {problem}, so others could put code into this process: none of it ran. Make it the user's own \
                 and writable only by them (chmod go-w){fix}",
                real.display()
            ),
        ));
    }
    let sticky = dmeta.permissions().mode() & 0o1000 != 0 && (dmeta.uid() == 0 || dmeta.uid() == me);
    if !sticky {
        let problem = dir_problem.unwrap_or_default();
        return Err(Error::new(
            ErrorKind::UnsafeFile,
            format!(
                "the directory of {}, {}, {problem}, so others could replace the plugin: none of it ran. Move it to \
                 a directory only its owner can write (or chmod go-w {}){fix}",
                real.display(),
                directory.display(),
                directory.display()
            ),
        ));
    }
    Ok(())
}

/// What a file is when it is no regular file or directory: opening one (a
/// FIFO with no writer, a device) could block for ever.
fn not_a_file(meta: &fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        None
    }
}

/// Open the library at an absolute path.
pub(crate) fn open(path: &Path) -> Result<Library> {
    let shown = path.display().to_string();
    if let Ok(meta) = fs::metadata(path) {
        if let Some(kind) = not_a_file(&meta) {
            return Err(Error::new(
                ErrorKind::NotALibrary,
                format!("{shown} is {kind}, not a file: load the shared library file itself"),
            ));
        }
    }
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
    // SAFETY: opening a library runs its constructors; that is what loading
    // a plugin means, and the trust checks ran before.
    match unsafe { libloading::os::unix::Library::open(Some(path.as_os_str()), flags) } {
        Ok(library) => Ok(Library { inner: Box::leak(Box::new(library)), path: shown }),
        Err(error) => {
            let message = match &error {
                libloading::Error::DlOpen { desc } => format!("{desc:?}").trim_matches('"').to_string(),
                other => other.to_string(),
            };
            Err(explain(path, &shown, &message))
        }
    }
}

/// A failed dlopen, explained from the file itself where the loader's
/// message is vague, else from the loader's message.
fn explain(path: &Path, shown: &str, message: &str) -> Error {
    if fs::symlink_metadata(path).is_err() {
        return Error::new(ErrorKind::LibraryNotFound, not_found(path, shown));
    }
    if fs::metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        if let Ok(target) = fs::read_link(path) {
            return Error::new(
                ErrorKind::LibraryNotFound,
                format!(
                    "{shown} is a symbolic link to {}, which does not exist: fix or remove the link",
                    crate::types::py_repr(&target.to_string_lossy())
                ),
            );
        }
    }
    if let Err(error) = fs::File::open(path) {
        if !matches!(error.raw_os_error(), Some(21)) {  // (a directory: check_header says what it is)
            let text = error.to_string();
            let reason = text.split(" (os error").next().unwrap_or(&text);
            return Error::new(
                ErrorKind::Library,
                format!("cannot read {shown}: {reason}; check the file and its permissions"),
            );
        }
    }
    if let Err(error) = check_header(path, shown) {
        return error;
    }
    let text = format!("cannot load {shown}: {message}");
    let base = path.file_name().map(OsStr::to_string_lossy).unwrap_or_default();
    let own = message.starts_with(&format!("{shown}:")) || message.starts_with(&format!("{base}:"));
    if message.contains("cannot open shared object file") && !own {
        let dep = message.split(':').next().unwrap_or("");
        if needed(path).iter().any(|n| n == dep) {
            return Error::new(
                ErrorKind::MissingDependency,
                format!(
                    "{text}; {shown} needs {dep}, which the loader cannot find: install it or add its directory to \
                     LD_LIBRARY_PATH (or the library's RUNPATH)"
                ),
            );
        }
        return Error::new(
            ErrorKind::MissingDependency,
            format!(
                "{text}; a library that {shown} links against needs {dep}, which the loader cannot find: install it \
                 or add its directory to LD_LIBRARY_PATH (or the RUNPATH of the library that needs it; ldd {shown} \
                 shows which)"
            ),
        );
    }
    if message.contains("undefined symbol") {
        return Error::new(
            ErrorKind::MissingDependency,
            format!("{text}; a library it depends on is missing that symbol (too old, or not linked)"),
        );
    }
    if message.contains("wrong ELF class") || message.contains("ELF file data encoding") {
        return Error::new(ErrorKind::WrongArchitecture, format!("{text}; rebuild it for this platform"));
    }
    if message.contains("invalid ELF header") || message.contains("file too short")
        || message.contains("position-independent")
    {
        return Error::new(ErrorKind::NotALibrary, format!("{text}; expected a shared library"));
    }
    if message.contains("cannot open shared object file") {
        return Error::new(ErrorKind::LibraryNotFound, format!("{text}; check the name and the loader path"));
    }
    Error::new(ErrorKind::Library, text)
}

const MACHINES: [(u16, &str); 10] = [
    (3, "x86 (i386)"),
    (8, "MIPS"),
    (20, "PowerPC"),
    (21, "PowerPC64"),
    (22, "s390"),
    (40, "ARM (32-bit)"),
    (62, "x86_64"),
    (183, "aarch64"),
    (243, "RISC-V"),
    (258, "LoongArch"),
];

fn host_machine() -> Option<u16> {
    match std::env::consts::ARCH {
        "x86_64" => Some(62),
        "x86" => Some(3),
        "aarch64" => Some(183),
        "arm" => Some(40),
        "powerpc64" => Some(21),
        "s390x" => Some(22),
        "riscv64" => Some(243),
        "loongarch64" => Some(258),
        _ => None,
    }
}

fn host_description() -> String {
    format!("{} ({}-bit {})", std::env::consts::ARCH, usize::BITS, std::env::consts::OS)
}

/// Refuse a file that cannot be a shared library for this process, saying
/// what it is: empty, a Mach-O or PE binary, an archive, no ELF, another
/// machine, an executable or object file.
pub(crate) fn check_header(path: &Path, shown: &str) -> Result<()> {
    let mut head = Vec::with_capacity(64);
    let opened = fs::OpenOptions::new().read(true).custom_flags(0o4000 /* O_NONBLOCK */).open(path);
    match opened {
        Ok(file) => {
            if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                return Err(Error::new(ErrorKind::NotALibrary, format!("{shown} is a directory, expected a shared library file")));
            }
            let _ = file.take(64).read_to_end(&mut head);
        }
        Err(error) if error.raw_os_error() == Some(21) => {
            return Err(Error::new(ErrorKind::NotALibrary, format!("{shown} is a directory, expected a shared library file")));
        }
        Err(_) => return Ok(()),
    }
    let expected = format!("expected an ELF shared library for {}", host_description());
    let fail = |kind, text: String| Err(Error::new(kind, text));
    if head.is_empty() {
        return fail(ErrorKind::NotALibrary, format!("{shown} is an empty file, {expected}; rebuild or re-download it"));
    }
    const MACHO: [[u8; 4]; 5] =
        [[0xfe, 0xed, 0xfa, 0xce], [0xfe, 0xed, 0xfa, 0xcf], [0xce, 0xfa, 0xed, 0xfe], [0xcf, 0xfa, 0xed, 0xfe], [0xca, 0xfe, 0xba, 0xbe]];
    if head.len() >= 4 && MACHO.iter().any(|m| head[..4] == *m) {
        return fail(ErrorKind::WrongArchitecture, format!("{shown} is a Mach-O (macOS) binary, {expected}; use the Linux build"));
    }
    if head.starts_with(b"MZ") {
        return fail(ErrorKind::WrongArchitecture, format!("{shown} is a Windows PE binary, {expected}; use the Linux build"));
    }
    if head.starts_with(b"!<arch>\n") || head.starts_with(b"!<thin>\n") {
        return fail(ErrorKind::NotALibrary, archive_message(path, shown, &expected));
    }
    if !head.starts_with(b"\x7fELF") {
        let start = crate::types::bytes_repr(&head[..head.len().min(8)]);
        return fail(
            ErrorKind::NotALibrary,
            format!("{shown} is not a shared library (no ELF header; starts with b'{start}'), {expected}"),
        );
    }
    if head.len() < 20 {
        return fail(ErrorKind::NotALibrary, format!("{shown} is a truncated ELF file ({} bytes), {expected}", head.len()));
    }
    let bits = match head[4] {
        1 => Some(32),
        2 => Some(64),
        _ => None,
    };
    let read = |at: usize| {
        let pair = [head[at], head[at + 1]];
        if head[5] == 1 { u16::from_le_bytes(pair) } else { u16::from_be_bytes(pair) }
    };
    let (e_type, e_machine) = (read(16), read(18));
    let machine = host_machine();
    if bits != Some(usize::BITS) || machine.is_some_and(|m| m != e_machine) {
        let name = MACHINES.iter().find(|(m, _)| *m == e_machine).map(|(_, n)| n.to_string())
            .unwrap_or_else(|| format!("machine {e_machine}"));
        let bits = bits.map(|b| b.to_string()).unwrap_or_else(|| "?".to_string());
        return fail(
            ErrorKind::WrongArchitecture,
            format!("{shown} was built for {name} ({bits}-bit), {expected}; rebuild it for this platform"),
        );
    }
    if e_type != 3 {
        let kind = match e_type {
            1 => "a relocatable object (.o)".to_string(),
            2 => "an executable".to_string(),
            other => format!("ELF type {other}"),
        };
        return fail(ErrorKind::NotALibrary, format!("{shown} is {kind}, {expected}; link it with -shared / crate-type cdylib"));
    }
    Ok(())
}


/// The DT_NEEDED names of a library's dynamic section (empty when it cannot
/// be read): only the headers and the section's strings are read.
fn needed(path: &Path) -> Vec<String> {
    read_needed(path).unwrap_or_default()
}

fn read_needed(path: &Path) -> Option<Vec<String>> {
    use std::io::{Seek, SeekFrom};
    let mut f = fs::File::open(path).ok()?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head).ok()?;
    if &head[..4] != b"\x7fELF" {
        return None;
    }
    let wide = head[4] == 2;
    let little = head[5] == 1;
    let int = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for (i, &x) in b.iter().enumerate() {
            v |= (x as u64) << (8 * if little { i } else { b.len() - 1 - i });
        }
        v
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(&head[32..40]), int(&head[54..56]) as usize, int(&head[56..58]) as usize)
    } else {
        (int(&head[28..32]), int(&head[42..44]) as usize, int(&head[44..46]) as usize)
    };
    if phentsize == 0 {
        return None;
    }
    f.seek(SeekFrom::Start(phoff)).ok()?;
    let mut table = vec![0u8; phnum.min(256) * phentsize];
    f.read_exact(&mut table).ok()?;
    let mut loads = Vec::new(); // (vaddr, filesz, offset)
    let mut dynamic = None;
    for entry in table.chunks_exact(phentsize) {
        let (p_type, offset, vaddr, filesz) = if wide {
            (int(&entry[0..4]), int(&entry[8..16]), int(&entry[16..24]), int(&entry[32..40]))
        } else {
            (int(&entry[0..4]), int(&entry[4..8]), int(&entry[8..12]), int(&entry[16..20]))
        };
        match p_type {
            1 => loads.push((vaddr, filesz, offset)),
            2 => dynamic = Some((offset, filesz.min(1 << 16))),
            _ => {}
        }
    }
    let (offset, size) = dynamic?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut section = vec![0u8; size as usize];
    let got = f.read(&mut section).ok()?;
    section.truncate(got);
    let step = if wide { 16 } else { 8 };
    let mut tags = Vec::new();
    for e in section.chunks_exact(step) {
        let (tag, value) = (int(&e[..step / 2]), int(&e[step / 2..]));
        if tag == 0 {
            break;
        }
        tags.push((tag, value));
    }
    let strtab = tags.iter().find(|t| t.0 == 5)?.1;
    let base = loads.iter().find(|(v, s, _)| *v <= strtab && strtab < v + s).map(|(v, _, o)| strtab - v + o)?;
    let mut names = Vec::new();
    for &(_, at) in tags.iter().filter(|t| t.0 == 1) {
        f.seek(SeekFrom::Start(base + at)).ok()?;
        let mut chunk = vec![0u8; 4096];
        let got = f.read(&mut chunk).ok()?;
        let end = chunk[..got].iter().position(|&b| b == 0)?;
        names.push(String::from_utf8(chunk[..end].to_vec()).ok()?);
    }
    Some(names)
}

/// The message for a library path with no file, which may be where a Rust
/// crate built without crate-type cdylib would have put one.
fn not_found(path: &Path, shown: &str) -> String {
    let base = path.file_name().map(OsStr::to_string_lossy).unwrap_or_default();
    if let Some(stem) = base.strip_prefix("lib").and_then(|b| b.strip_suffix(".so")).filter(|s| !s.is_empty()) {
        let rlib = path.with_file_name(format!("lib{stem}.rlib"));
        if is_rust_library(&rlib) {
            return format!(
                "no file at {shown}, but {} is there: the crate was built as a Rust library only; add [lib] \
                 crate-type = [\"cdylib\"] to its Cargo.toml and rebuild",
                rlib.display()
            );
        }
    }
    format!("no file at {shown}: check the path, or build the library first")
}

/// Whether the file is a Rust rlib: an ar archive with a lib.rmeta member
/// among its first few (rustc puts it first, after the symbol table).
fn is_rust_library(path: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(path) else { return false };
    let mut magic = [0u8; 8];
    if f.read_exact(&mut magic).is_err() || &magic != b"!<arch>\n" {
        return false;
    }
    for _ in 0..8 {
        let mut header = [0u8; 60];
        if f.read_exact(&mut header).is_err() || &header[58..60] != b"`\n" {
            return false;
        }
        let mut name = String::from_utf8_lossy(&header[..16]).trim_end().to_string();
        let size: i64 = String::from_utf8_lossy(&header[48..58]).trim().parse().unwrap_or(0);
        let mut skip = size + size % 2; // members are 2-byte aligned
        if let Some(length) = name.strip_prefix("#1/").and_then(|n| n.parse::<usize>().ok()) {
            let mut long = vec![0u8; length]; // BSD: the name follows the header
            if f.read_exact(&mut long).is_err() {
                return false;
            }
            name = String::from_utf8_lossy(&long).trim_end_matches('\0').to_string();
            skip -= length as i64;
        }
        if name.trim_end_matches('/') == "lib.rmeta" {
            return true;
        }
        if f.seek(SeekFrom::Current(skip)).is_err() {
            return false;
        }
    }
    false
}

/// What an archive is and which file to load instead: a static library, or
/// a Rust crate built without crate-type cdylib (and where its .so would be).
fn archive_message(path: &Path, shown: &str, expected: &str) -> String {
    if !is_rust_library(path) {
        return format!(
            "{shown} is a static archive (ar), {expected}; a plugin must be a shared library: link it with -shared \
             (a Rust crate: crate-type = [\"cdylib\"], not \"staticlib\")"
        );
    }
    let base = path.file_name().map(OsStr::to_string_lossy).unwrap_or_default().to_string();
    let mut directory = path.parent().map(Path::to_path_buf).unwrap_or_default();
    // lib<name>(-<16 hex digits>)?.rlib
    let stem = base.strip_prefix("lib").and_then(|b| b.strip_suffix(".rlib")).filter(|s| !s.is_empty());
    let shared = match stem {
        None => "the libNAME.so that cargo then writes to target/release (or target/debug)".to_string(),
        Some(stem) => {
            let hashed = stem.len() > 17
                && stem.as_bytes()[stem.len() - 17] == b'-'
                && stem[stem.len() - 16..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let name = if hashed { &stem[..stem.len() - 17] } else { stem };
            // deps/libNAME-HASH.rlib is an intermediate; cargo puts the cdylib one level up.
            if hashed && directory.file_name().is_some_and(|d| d == "deps") {
                directory.pop();
            }
            let shared = directory.join(format!("lib{name}.so"));
            if shared.exists() {
                return format!(
                    "{shown} is a Rust library (.rlib), {expected}; load the shared library cargo built beside it: {}",
                    shared.display()
                );
            }
            shared.display().to_string()
        }
    };
    format!(
        "{shown} is a Rust library (.rlib), {expected}; the crate is built without crate-type = [\"cdylib\"]: add \
         [lib] crate-type = [\"cdylib\"] to its Cargo.toml, rebuild, and load {shared}"
    )
}
