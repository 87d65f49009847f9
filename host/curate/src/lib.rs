//! Curation primitives for SAM Brain: what happens to an example between a source plugin and the
//! store, and again at export.
//!
//! - [`scrub`]: gitleaks-style secret scrubbing (keyword prefilter → regex with a secret group →
//!   entropy → allowlist/stopwords), replacing secrets with `[REDACTED:<rule-id>]`; idempotent.
//! - [`dedup`]: text normalization, content hashes (exact duplicates), MinHash signatures over word
//!   shingles and an incremental LSH index (near duplicates).
//! - [`split`]: deterministic train/valid/test assignment from a content hash.
//!
//! The crate knows nothing about the store or the example type: it works on text, so the host
//! decides which fields of an example it scrubs and hashes.

pub mod dedup;
pub mod scrub;
pub mod split;

pub use dedup::{content_hash, normalize, ContentHasher, DedupError, LshIndex, MinHashParams, MinHasher, NearDup, Signature};
pub use scrub::{ScrubConfig, ScrubCounts, ScrubError, Scrubbed, Scrubber, UserRule};
pub use split::{Split, SplitError, SplitRatios};
