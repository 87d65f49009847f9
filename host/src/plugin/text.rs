//! Text a plugin hands the host outside an example — log lines, error messages, panic output,
//! discard reasons, checkpoints, filter verdict labels and reasons — made safe before it is
//! stored, printed or logged: control characters and bidi overrides are stripped (they could
//! rewrite what a terminal shows), then secrets are redacted by the same scrubber as examples.
//!
//! Stripping comes first: a secret split by invisible characters is whole again when scrubbed.

use std::borrow::Cow;

use brain_curate::{ScrubConfig, Scrubber};

/// The scrubber every plugin channel goes through. `Send + Sync`; one per [`PluginHost`](super::PluginHost).
pub struct PluginText {
    scrubber: Scrubber,
    /// For checkpoints: the same rules without `home_paths`, since a checkpoint is the plugin's
    /// own bookkeeping (keyed by the paths it reads, which it must find again next time) and is
    /// never shown or exported; secrets in it are still redacted.
    checkpoints: Scrubber,
}

impl PluginText {
    /// `config` is the `[scrub]` configuration (see `curation::clean::scrub_config`).
    pub fn new(config: &ScrubConfig) -> Result<PluginText, brain_curate::ScrubError> {
        let checkpoints = Scrubber::new(&ScrubConfig { home_paths: false, ..config.clone() })?;
        Ok(PluginText { scrubber: Scrubber::new(config)?, checkpoints })
    }

    /// With the built-in secret rules only (for hosts started without a config).
    pub fn builtin() -> PluginText {
        PluginText::new(&ScrubConfig::default()).expect("the built-in scrub rules compile")
    }

    /// Redacts secrets in a checkpoint (kept otherwise byte for byte: it is the plugin's state);
    /// returns whether anything was redacted.
    pub fn clean_checkpoint(&self, s: &mut String) -> bool {
        let scrubbed = self.checkpoints.scrub(s);
        if scrubbed.counts.is_empty() {
            return false;
        }
        *s = scrubbed.text.into_owned();
        true
    }

    /// `s` without control characters (but newline and tab) and bidi controls, secrets redacted.
    pub fn clean(&self, s: &str) -> String {
        let stripped = strip_controls(s);
        self.scrubber.scrub(&stripped).text.into_owned()
    }

    /// Cleans `s` in place.
    pub fn clean_in_place(&self, s: &mut String) {
        let cleaned = self.clean(s);
        if cleaned != *s {
            *s = cleaned;
        }
    }
}

/// Characters that reorder or hide text on a terminal: Unicode bidi embeddings, overrides,
/// isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` without C0/C1 control characters (escape sequences start with one) except newline and
/// tab, and without bidi controls.
pub fn strip_controls(s: &str) -> Cow<'_, str> {
    let drop = |c: char| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c);
    if !s.chars().any(drop) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().filter(|&c| !drop(c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_and_bidi_overrides_are_stripped() {
        let s = "ok\x1b[2J\x1b]0;title\x07 line\r\nnext\tcol \u{202E}gnp.exe\u{202C} \u{2066}x\u{2069}\u{9b}";
        assert_eq!(strip_controls(s), "ok[2J]0;title line\nnext\tcol gnp.exe x");
        assert!(matches!(strip_controls("plain\ttext\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn checkpoints_keep_home_paths_but_lose_secrets() {
        let t = PluginText::new(&ScrubConfig { home_paths: true, ..ScrubConfig::default() }).unwrap();
        let mut c = r#"{"/home/alice/code/repo":"3f2a9c0d1e4b5a6978877665544332211aabbccd"}"#.to_string();
        let before = c.clone();
        assert!(!t.clean_checkpoint(&mut c));
        assert_eq!(c, before);
        assert!(t.clean("/home/alice/code/repo").contains("REDACTED"), "other channels do hide home paths");
        let mut c = "cursor AKIAZ7Q3L5M2N8P4R6T1".to_string();
        assert!(t.clean_checkpoint(&mut c));
        assert!(c.starts_with("cursor [REDACTED:"), "{c}");
    }

    #[test]
    fn secrets_are_redacted_even_when_split_by_invisible_characters() {
        let t = PluginText::builtin();
        let key = "AKIAZ7Q3L5M2N8P4R6T1";
        let out = t.clean(&format!("key={key} done"));
        assert!(!out.contains(key), "{out}");
        assert!(out.contains("[REDACTED:"), "{out}");
        let split = format!("key=AKIAZ7Q3\u{200F}L5M2N\x1b8P4R6T1 done");
        let out = t.clean(&split);
        assert!(!out.contains("8P4R6T1"), "{out}");
    }
}
