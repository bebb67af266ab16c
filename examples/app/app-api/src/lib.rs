//! What the app and its plugins agree on, declared in Rust: a plugin
//! implements `Filter`, the app provides `Notes`. Both sides build from this
//! one declaration, so the layouts (and fingerprints) cannot drift apart.

ferrule_sdk::interface! {
    /// One step of the app's text processing. Not thread-safe: each instance
    /// keeps its settings, and the host serialises calls into it.
    #[interface(id = "org.example.app.filter", revision = 1)]
    pub mod filter: trait Filter {
        /// Change a setting; fails for one the filter does not have.
        fn configure(key: str, value: str);
        /// The filtered text.
        fn apply(text: str) -> str;
    }

    /// Where plugins leave notes for the app (the app implements it).
    #[interface(id = "org.example.app.notes", revision = 1, thread_safe = true)]
    pub mod notes: trait Notes {
        /// Record a note.
        fn note(text: str);
    }
}
