//! The bounds of one git call: how large a request may be (hide entries, skip patterns, a
//! revision; no searching revisions) and when it must give up (the plugin's call deadline).

use std::time::Instant;

/// Most `hide` entries and `skip-paths` patterns of one walk, and the longest revision.
pub const MAX_HIDE: usize = 4096;
pub const MAX_SKIP_PATHS: usize = 256;
pub const MAX_REV: usize = 256;
/// Warnings one call logs one by one; the rest are summed up in one line.
pub(super) const MAX_WARNINGS: usize = 5;
/// Commits listed between two looks at the deadline.
pub(super) const DEADLINE_EVERY: usize = 1024;

/// What a host call answers once the plugin's call deadline has passed; the runtime turns it
/// into a timeout (see [`deadline_trap`](crate::capability::deadline_trap)).
pub const PAST_DEADLINE: &str = "the plugin's call deadline passed";

pub(super) fn check_deadline(deadline: Option<Instant>) -> Result<(), String> {
    match deadline {
        Some(d) if Instant::now() > d => Err(PAST_DEADLINE.to_string()),
        _ => Ok(()),
    }
}

/// Refuses revisions that are long or that search: `:/text` and `^{/text}` scan every commit
/// message of the history, `:path` reads the index.
pub(super) fn check_rev(rev: &str) -> Result<(), String> {
    if rev.len() > MAX_REV {
        return Err(format!("a revision of {} bytes, over the limit of {MAX_REV}", rev.len()));
    }
    if rev.starts_with(':') || rev.contains("^{/") || rev.contains(":/") {
        return Err(format!("`{rev}`: searching revisions (`:/text`, `^{{/text}}`, `:path`) are not allowed; name a branch, tag or commit"));
    }
    Ok(())
}
