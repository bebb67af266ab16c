//! textkit (Rust): the pipeline example's Rust plugin, built only from the
//! SDK and the module `ferrule generate` wrote from pipeline_api.py
//! (examples/pipeline/generated/pipeline_api.rs).
//!
//! - Transform "expand": spells out abbreviations with the host's Dictionary
//!   service (a client of `Dictionary.expansion`).
//! - Analyzer "words": word, line and character counts, byte histogram.

#[path = "../../generated/pipeline_api.rs"]
mod api;

use api::{analyzer, dictionary, transform, Stats};

// ---- Transform "expand" -----------------------------------------------------

/// One pipeline stage: its options. The host serialises calls into it.
#[derive(Default)]
struct Expand {
    upper: bool,
}

impl transform::Transform for Expand {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(Expand::default())
    }

    /// `case`: `keep` (the default) or `upper` (uppercase the whole result).
    fn configure(&mut self, option: &str, value: &str) -> Result<(), String> {
        match (option, value) {
            ("case", "keep") => self.upper = false,
            ("case", "upper") => self.upper = true,
            ("case", other) => return Err(format!("case must be keep or upper, got '{other}'")),
            (other, _) => return Err(format!("unknown option '{other}'")),
        }
        Ok(())
    }

    /// Replaces each word (a run of ASCII alphanumerics) that has an
    /// expansion for its lowercase form; copies everything else unchanged.
    fn apply(&mut self, text: &str) -> Result<String, String> {
        let dictionary = dictionary::Client::query().ok_or_else(no_dictionary)?;
        let mut out = String::with_capacity(text.len());
        let mut expanded = 0;
        let mut rest = text;
        while !rest.is_empty() {
            // A word, or the run of other characters up to the next one.
            let is_word = rest.as_bytes()[0].is_ascii_alphanumeric();
            let end = rest
                .find(|c: char| c.is_ascii_alphanumeric() != is_word)
                .unwrap_or(rest.len());
            let (piece, tail) = rest.split_at(end);
            rest = tail;
            let expansion = if is_word {
                dictionary.expansion(&piece.to_ascii_lowercase())?
            } else {
                String::new()
            };
            if expansion.is_empty() {
                out.push_str(piece);
            } else {
                out.push_str(&expansion);
                expanded += 1;
            }
        }
        ferrule_sdk::info!("expanded {expanded} words");
        Ok(if self.upper { out.to_uppercase() } else { out })
    }
}

/// The failure of a call that needs the host's Dictionary service.
fn no_dictionary() -> String {
    format!(
        "the host provides no {}/{}",
        dictionary::ID,
        dictionary::REVISION
    )
}

// ---- Analyzer "words" -------------------------------------------------------

/// No state, so calls from several threads at once are safe.
struct Words;

impl analyzer::Analyzer for Words {
    type Error = String;

    fn create() -> Result<Self, String> {
        Ok(Words)
    }

    /// Whitespace-separated words, lines, and characters as code points.
    fn stats(&self, text: &str) -> Result<Stats, String> {
        let longest = text
            .split_whitespace()
            .map(|w| w.chars().count())
            .max()
            .unwrap_or(0);
        Ok(Stats {
            words: count(text.split_whitespace().count())?,
            lines: count(text.lines().count())?,
            chars: count(text.chars().count())?,
            longest_word: count(longest)?,
        })
    }

    /// Adds each byte's number of occurrences in `text` to `counts`.
    fn histogram(&self, text: &[u8], counts: &mut [u32]) -> Result<(), String> {
        if counts.len() != 256 {
            return Err(format!(
                "counts must have 256 elements, got {}",
                counts.len()
            ));
        }
        for &b in text {
            counts[usize::from(b)] += 1;
        }
        Ok(())
    }
}

/// `n` as a `Stats` field.
fn count(n: usize) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("count {n} does not fit in u32"))
}

// ---- the plugin -------------------------------------------------------------

ferrule_sdk::plugin! {
    id: "org.ferrule.example.textkit",
    name: "Textkit (Rust)",
    version: env!("CARGO_PKG_VERSION"),
    description: "The pipeline example's Rust plugin: Transform \"expand\" and Analyzer \"words\".",
    license: "MIT",
    functions: {},
    interfaces: [
        transform::export::<Expand>("expand", "Spells out the abbreviations the host's Dictionary knows."),
        analyzer::export::<Words>("words", "Counts whitespace-separated words, lines and characters."),
    ],
}
