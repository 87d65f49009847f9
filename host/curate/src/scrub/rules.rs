//! The rule table: the built-in `rules.toml` and users' extra rule files, in one format.
//!
//! Rules are data, not code, so users extend them the same way the project writes them
//! (`[scrub] extra_rules = "…"` in brain.toml) and each carries its id, description, keywords,
//! pattern, entropy floor and allow-list together. The file format is documented at the top of
//! `rules.toml`.

use std::sync::LazyLock;

use serde::Deserialize;

use super::check::Check;

/// The built-in rules, in priority order.
const BUILTIN_TOML: &str = include_str!("rules.toml");

/// Rules that are off unless the config turns them on (`emails`, `home_paths`).
pub(crate) const EMAIL: &str = "email";
pub(crate) const HOME_PATH: &str = "home-path";

/// A rules file: `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

/// One `[[rule]]` as written (compiled by [`super::Scrubber::new`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    pub id: String,
    #[serde(default)]
    #[allow(dead_code)] // documentation for people reading and extending the rules
    pub description: String,
    /// Lower-case literals, found ASCII case-insensitively.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Every match starts with one of the keywords: the regex is tried only where they occur.
    #[serde(default)]
    pub anchored: bool,
    pub regex: String,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    #[serde(default)]
    pub entropy: f64,
    #[serde(default)]
    pub check: Check,
    /// Regexes; a secret matching one is kept.
    #[serde(default)]
    pub allow: Vec<String>,
}

impl RuleSpec {
    /// The regex with the file format's shorthands expanded.
    pub fn expanded_regex(&self) -> String {
        expand(&self.regex)
    }

    /// For `HEAD{near}VALUE` with `{near}` outside any group: HEAD, and VALUE preceded by what
    /// may precede a value. The scrubber then matches HEAD at a keyword and searches VALUE in
    /// the two lines after it, which is several times faster than one regex whose lazy window
    /// keeps a hundred automaton threads alive.
    pub fn near_split(&self) -> Option<(String, String)> {
        let (head, value) = self.regex.split_once("{near}")?;
        if value.contains("{near}") || group_depth(head) != 0 {
            return None;
        }
        Some((expand(head), format!("{NEAR_START}{}", expand(value))))
    }
}

/// How many groups are open at the end of `regex` (escapes and classes skipped).
fn group_depth(regex: &str) -> i32 {
    let (mut depth, mut class, mut chars) = (0, false, regex.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' => class = true,
            ']' => class = false,
            '(' if !class => depth += 1,
            ')' if !class => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// `{assign}`: a key's tail, optional quote, `=`/`:`/`:=`/`=>`, optional quote.
const ASSIGN: &str = r#"[A-Za-z0-9_.\-]{0,24}['"]?[ \t]{0,4}(?:=>|:=|=|:)[ \t]{0,4}['"`]?"#;
/// `{near}`: the keyword's line and optionally the next, up to 60 characters each, then a
/// character that can precede a value (or the start of the next line, after a diff's `+`).
/// ASCII classes, not `[^\n]`/`\s`: Unicode ones make each of these bounded repetitions hundreds of
/// automaton states, which is what keeps the lazy DFA fast or not.
const NEAR: &str = r#"(?:[\x00-\x09\x0B-\x7F]{0,60}?\n)?[\x00-\x09\x0B-\x7F]{0,60}?(?:(?m:^)\+?|[ \t\r\n'"`=:,(\[>/])"#;
/// The end of `{near}`: what precedes a value found by searching the window after a keyword.
const NEAR_START: &str = r#"(?:(?m:^)\+?|[ \t\r\n'"`=:,(\[>/])"#;
/// The window `{near}` allows: the rest of the keyword's line and the next line, 60 bytes each.
pub(crate) const NEAR_LINE: usize = 60;
/// `{end}`: the value stops at a character that cannot continue a token.
const END: &str = r"(?:[^A-Za-z0-9_\-]|$)";

fn expand(regex: &str) -> String {
    regex.replace("{assign}", ASSIGN).replace("{near}", NEAR).replace("{end}", END)
}

/// Parses a rules file; `origin` names it in errors.
pub(crate) fn parse(text: &str) -> Result<Vec<RuleSpec>, String> {
    let file: RuleFile = toml::from_str(text).map_err(|e| e.to_string())?;
    Ok(file.rule)
}

/// The built-in rules (parsed once).
pub(crate) fn builtin() -> &'static [RuleSpec] {
    static RULES: LazyLock<Vec<RuleSpec>> = LazyLock::new(|| parse(BUILTIN_TOML).expect("the built-in rules.toml parses"));
    &RULES
}

/// Substrings (case-insensitive) that mark a match as a placeholder, not a secret.
pub(crate) const STOPWORDS: &[&str] = &[
    "example", "xxxx", "****", "your", "placeholder", "changeme", "change_me", "dummy", "sample", "redacted", "lorem", "<",
    ">", "${", "{{", "1234567890", "abcdefgh", "0000000000", "insert", "replace", "fake", "secret_here", "token_here", "key_here",
    "...", "change-this", "change_this",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_are_well_formed() {
        let rules = builtin();
        assert!(rules.len() > 60, "{}", rules.len());
        let mut seen = std::collections::HashSet::new();
        for r in rules {
            assert!(seen.insert(r.id.as_str()), "duplicate id {}", r.id);
            assert!(!r.description.is_empty(), "{} has no description", r.id);
            assert!(r.keywords.iter().all(|k| *k == k.to_lowercase() && !k.is_empty()), "{}: keywords must be lower-case", r.id);
            assert!(!r.expanded_regex().contains("{near}"), "{}", r.id);
            regex_automata::meta::Regex::new(&r.expanded_regex()).unwrap_or_else(|e| panic!("{}: {e}", r.id));
        }
    }

    #[test]
    fn near_rules_split_only_outside_groups() {
        let spec = |regex: &str| parse(&format!("[[rule]]\nid = \"x\"\nregex = '''{regex}'''\n")).unwrap().remove(0);
        let (head, value) = spec(r"(?i:client\.run\(|acme){near}([a-z0-9]{17}){end}").near_split().unwrap();
        assert_eq!(head, r"(?i:client\.run\(|acme)");
        assert_eq!(value, format!("{NEAR_START}([a-z0-9]{{17}}){END}"));
        assert!(spec(r"(?:(AKIA[A-Z]{16})|(?i:acme){near}([a-z]{17}))").near_split().is_none());
        assert!(spec(r"acme_[a-z]{17}").near_split().is_none());
    }

    #[test]
    fn rule_files_report_their_errors() {
        assert!(parse("[[rule]]\nid = \"x\"\n").unwrap_err().contains("regex"));
        assert!(parse("[[rule]]\nid = \"x\"\nregex = \"y\"\ncheck = \"nope\"\n").is_err());
        assert!(parse("[[rule]]\nid = \"x\"\nregex = \"y\"\ntypo = 1\n").unwrap_err().contains("typo"));
        let ok = parse("[[rule]]\nid = \"x\"\nregex = \"k_{end}\"\nkeywords = [\"k_\"]\n").unwrap();
        assert_eq!(ok[0].expanded_regex(), format!("k_{END}"));
    }
}
