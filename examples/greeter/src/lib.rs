//! Example ferrule plugin: greets people and does arithmetic.
//!
//! Build with `cargo build --release -p greeter`; the plugin is
//! `target/release/libgreeter.so` (`.dylib` on macOS, `greeter.dll` on
//! Windows).

ferrule_sdk::plugin! {
    id: "org.ferrule.examples.greeter",
    name: "Greeter",
    version: env!("CARGO_PKG_VERSION"),
    description: "Greets people and does arithmetic.",
    license: "MIT",
    functions: {
        /// Add two integers.
        #[quick] // tiny and never blocks: the host may keep its locks (the GIL)
        fn add(a: i64, b: i64) -> i64 {
            a + b
        }

        /// Greet someone by name.
        fn greet(name: &str) -> String {
            ferrule_sdk::info!("greeting {name}");
            format!("Hello, {name}!")
        }

        /// Divide a by b; fails when b is 0.
        fn divide(a: f64, b: f64) -> Result<f64, String> {
            if b == 0.0 {
                Err("division by zero: b must not be 0".to_string())
            } else {
                Ok(a / b)
            }
        }

        /// Return the text in upper case.
        fn shout(text: &str) -> String {
            text.to_uppercase()
        }
    }
}
