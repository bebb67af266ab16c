//! Example ferrule plugin: greets people and does arithmetic.
//!
//! Build with `cargo build --release -p greeter`; the plugin is
//! `target/release/libgreeter.so` (`.dylib` on macOS, `greeter.dll` on
//! Windows).

use ferrule_sdk::{HostFn, HostFnError};

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

        /// The mean of the values (read in place, not copied); fails when empty.
        fn mean(values: &[f64]) -> Result<f64, String> {
            if values.is_empty() {
                return Err("mean of no values".to_string());
            }
            Ok(values.iter().sum::<f64>() / values.len() as f64)
        }

        /// Multiply every value by factor, in the caller's own buffer.
        fn scale(values: &mut [f64], factor: f64) {
            for v in values.iter_mut() {
                *v *= factor;
            }
        }

        /// How many of 0..n the host's predicate keeps.
        fn count_if(keep: HostFn<'_, fn(i64) -> bool>, n: i64) -> Result<i64, HostFnError> {
            let mut count = 0;
            for i in 0..n {
                if keep.call(i)? {
                    count += 1;
                }
            }
            Ok(count)
        }
    }
}
