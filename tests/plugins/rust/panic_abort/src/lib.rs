//! A plugin with a function that panics: fine with panic = "unwind", and
//! refused at compile time with panic = "abort".

ferrule_sdk::plugin! {
    id: "org.ferrule.tests.panic_abort",
    name: "Panic strategy test",
    version: "0.1.0",
    functions: {
        /// Panic with the given message.
        fn boom(msg: &str) -> i64 { panic!("{msg}") }
    }
}
