//! What the crate's tests share: the repository's C plugins, built with cc.

use std::path::PathBuf;
use std::process::Command;

/// `source` (relative to the repository) built with the system's C compiler
/// into the tests' temporary directory as `name`.
pub fn build_c_plugin(source: &str, name: &str, libs: &[&str]) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(cc)
        .args(["-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-std=c99"])
        .arg(format!("-I{}", root.join("sdk/c/include").display()))
        .arg(root.join(source))
        .args(libs)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("a C compiler (cc) to build the test plugins");
    assert!(status.success(), "cc failed to build {source}");
    out
}
