//! Two Filters for the app: `shout` (upper case, with an optional suffix)
//! and `reverse`. Each leaves a note through the app's Notes service.

use app_api::{filter, notes};

fn leave_note(text: &str) {
    if let Some(notes) = notes::Client::query() {
        let _ = notes.note(text); // a note is a courtesy: a failure is not the filter's
    }
}

#[derive(Default)]
struct Shout {
    suffix: String,
}

impl filter::Filter for Shout {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(Shout::default())
    }

    fn configure(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "suffix" => {
                self.suffix = value.to_string();
                Ok(())
            }
            other => Err(format!("shout has no setting {other:?} (it has \"suffix\")")),
        }
    }

    fn apply(&mut self, text: &str) -> Result<String, String> {
        leave_note(&format!("shout: {} chars", text.chars().count()));
        Ok(format!("{}{}", text.to_uppercase(), self.suffix))
    }
}

struct Reverse;

impl filter::Filter for Reverse {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(Reverse)
    }

    fn configure(&mut self, key: &str, _value: &str) -> Result<(), String> {
        Err(format!("reverse has no settings (got {key:?})"))
    }

    fn apply(&mut self, text: &str) -> Result<String, String> {
        leave_note("reverse: done");
        Ok(text.chars().rev().collect())
    }
}

ferrule_sdk::plugin! {
    id: "org.example.app.filters",
    name: "App filters",
    version: env!("CARGO_PKG_VERSION"),
    description: "Filters for the worked example's app.",
    license: "MIT",
    functions: {
        /// How many filters this plugin offers.
        fn filter_count() -> u32 {
            2
        }
    },
    interfaces: [
        filter::export::<Shout>("shout", "Upper case, with an optional suffix."),
        filter::export::<Reverse>("reverse", "The text backwards."),
    ],
}
