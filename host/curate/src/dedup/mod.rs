//! Exact and near-duplicate detection.
//!
//! - Exact: [`normalize`] then [`content_hash`] (sha256 hex); [`ContentHasher`] hashes several
//!   fields (an example's messages, say) unambiguously.
//! - Near: [`MinHasher`] turns a text into a [`Signature`] (MinHash over word n-gram shingles,
//!   defaults like datatrove/datasketch: 5-grams, 112 permutations = 14 bands × 8 rows, threshold
//!   0.7); [`LshIndex`] holds the signatures seen so far and answers, for a new one, which of them
//!   are near duplicates with their estimated Jaccard similarity. Signatures round-trip through
//!   bytes ([`Signature::to_bytes`], [`MinHasher::decode`]) so the store keeps them and rebuilds the
//!   index by inserting them again.

mod lsh;
mod minhash;

pub use lsh::{LshIndex, NearDup};
pub use minhash::{MinHashParams, MinHasher, Signature};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DedupError {
    #[error("invalid MinHash parameters: {0}")]
    BadParams(String),
    #[error("stored MinHash signature is not readable: {0}")]
    BadSignature(String),
    #[error("stored MinHash signature was made with other settings ({stored}; now {current}): recompute signatures")]
    ParamsMismatch { stored: String, current: String },
}

/// The canonical form of a text for exact-duplicate hashing: line endings as `\n`, trailing
/// whitespace cut from every line, runs of blank lines collapsed to one, leading and trailing
/// blank lines removed. Case, inner spacing and punctuation are kept (they matter in code).
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for line in text.split('\n') {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

/// sha256 (hex) of [`normalize`]`(text)`.
pub fn content_hash(text: &str) -> String {
    let mut h = ContentHasher::new();
    h.field(text);
    h.finish()
}

/// sha256 over several normalized fields, each length-prefixed so that `["ab", "c"]` and
/// `["a", "bc"]` differ. Feed the fields in a fixed order (kind, each message's role and content,
/// the rejected response…).
#[derive(Clone, Default)]
pub struct ContentHasher(Sha256);

impl ContentHasher {
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds one field, normalized.
    pub fn field(&mut self, text: &str) -> &mut Self {
        self.raw(&normalize(text))
    }
    /// Adds one field as is (labels, enum names).
    pub fn raw(&mut self, text: &str) -> &mut Self {
        self.0.update((text.len() as u64).to_le_bytes());
        self.0.update(text.as_bytes());
        self
    }
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_ignores_layout_noise() {
        assert_eq!(normalize("a  \r\nb\t\n\n\n\nc\n\n"), "a\nb\n\nc");
        assert_eq!(normalize("\n\n  x"), "  x");
        assert_eq!(content_hash("a\r\nb  "), content_hash("a\nb"));
        assert_ne!(content_hash("a b"), content_hash("a  b"));
        assert_eq!(content_hash("").len(), 64);
    }

    #[test]
    fn fields_are_unambiguous() {
        let h = |fields: &[&str]| {
            let mut h = ContentHasher::new();
            for f in fields {
                h.field(f);
            }
            h.finish()
        };
        assert_ne!(h(&["ab", "c"]), h(&["a", "bc"]));
        assert_eq!(h(&["ab", "c"]), h(&["ab  ", "c\r\n"]));
    }
}
