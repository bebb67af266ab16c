//! The app: a Rust host that loads filter plugins built against app-api,
//! provides the Notes service they query, and runs every filter a plugin
//! offers.
//!
//!     cargo build --release -p app -p app-plugin
//!     target/release/app target/release/libapp_plugin.so

use std::sync::{Arc, Mutex};

use app_api::{filter, notes};
use ferrule_host::{LoadOptions, PluginHost, Service};

/// The app's Notes: what plugins tell it, kept in order.
struct Notebook(Arc<Mutex<Vec<String>>>);

impl notes::Notes for Notebook {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(Notebook(Arc::default()))
    }

    fn note(&self, text: &str) -> Result<(), String> {
        self.0.lock().map_err(|e| e.to_string())?.push(text.to_string());
        Ok(())
    }
}

fn main() -> Result<(), ferrule_host::Error> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "target/release/libapp_plugin.so".to_string());
    let host = PluginHost::new();
    let notebook = Arc::new(Mutex::new(Vec::new()));
    host.provide(Service::new(notes::provided(Notebook(notebook.clone()))));
    let plugin = host.load(&path, LoadOptions::default())?;
    let d = plugin.descriptor();
    println!("loaded {} {} ({})", d.name, d.version, d.id);
    let names: Vec<String> = plugin.implementations(&filter::SPEC)?.iter().map(|o| o.name.clone()).collect();
    for name in &names {
        let instance = plugin.create(&filter::SPEC, Some(name))?;
        let mut f = filter::Client::new(instance).expect("create() checked the fingerprint");
        if name == "shout" {
            f.configure("suffix", "!")?;
        }
        println!("{name}: {:?}", f.apply("plugins, at last")?);
        if let Err(e) = f.configure("colour", "red") {
            println!("{name}: configure refused: {}", e.plugin_message().unwrap_or(e.message()));
        }
    }
    plugin.close()?;
    println!("notes from the plugin: {:?}", notebook.lock().expect("not poisoned"));
    Ok(())
}
