//! The shared library exports the C API and nothing else: the version
//! script names `ferrule_host_*` global and every other symbol local.

fn main() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ferrule_host.map");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", script.display());
    }
}
