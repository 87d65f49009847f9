//! An example's id: the SHA-256 of its normalized content, so collecting the same thing twice —
//! from the same source or another — stores it once.

use sha2::{Digest, Sha256};

use crate::example::Example;

/// Collapses every run of whitespace to one space and trims both ends.
pub fn normalize_ws(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in words(text) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The words of `text` (split on Unicode whitespace), byte-wise when the text allows: ASCII
/// without vertical tabs, the one ASCII character Unicode calls whitespace and
/// `split_ascii_whitespace` does not.
fn words(text: &str) -> Box<dyn Iterator<Item = &str> + '_> {
    if text.is_ascii() && !text.as_bytes().contains(&0x0b) {
        Box::new(text.split_ascii_whitespace())
    } else {
        Box::new(text.split_whitespace())
    }
}

/// Hex SHA-256 over the kind, each message's role and whitespace-normalized content, and the
/// normalized rejected answer. Task, provenance and metadata are not content: the same
/// conversation found twice is one example. Every field is length-prefixed, so no two different
/// examples hash the same input. Normalized text is fed to the hash word by word (no copy).
pub fn example_id(example: &Example) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(example.kind.as_str().as_bytes());
    for m in &example.messages {
        field(m.role.as_str().as_bytes());
        normalized_field(&mut h, b"", &m.content);
    }
    match &example.rejected {
        Some(r) => normalized_field(&mut h, b"rejected:", r),
        None => field(b"no-rejected"),
    }
    hex::encode(h.finalize())
}

/// `prefix` + `normalize_ws(text)` as one length-prefixed field.
fn normalized_field(h: &mut Sha256, prefix: &[u8], text: &str) {
    let (mut len, mut n) = (0, 0);
    for w in words(text) {
        len += w.len();
        n += 1;
    }
    let len = prefix.len() + len + n.max(1) - 1;
    h.update((len as u64).to_le_bytes());
    h.update(prefix);
    for (i, w) in words(text).enumerate() {
        if i > 0 {
            h.update(b" ");
        }
        h.update(w.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{Kind, Message, Role};

    fn ex(kind: Kind, turns: &[(Role, &str)], rejected: Option<&str>) -> Example {
        Example {
            kind,
            task: "t".into(),
            messages: turns.iter().map(|(role, c)| Message { role: *role, content: c.to_string() }).collect(),
            rejected: rejected.map(String::from),
            provenance: "p".into(),
            metadata: serde_json::json!({}),
        }
    }

    #[test]
    fn whitespace_does_not_change_the_id() {
        let a = ex(Kind::Chat, &[(Role::User, "fix  the\tbug"), (Role::Assistant, "done\n")], None);
        let b = ex(Kind::Chat, &[(Role::User, " fix the bug"), (Role::Assistant, "done")], None);
        assert_eq!(example_id(&a), example_id(&b));
        assert_eq!(example_id(&a).len(), 64);
    }

    #[test]
    fn provenance_task_and_metadata_are_not_content() {
        let a = ex(Kind::Chat, &[(Role::User, "q"), (Role::Assistant, "a")], None);
        let mut b = a.clone();
        b.provenance = "elsewhere".into();
        b.task = "other".into();
        b.metadata = serde_json::json!({"x": 1});
        assert_eq!(example_id(&a), example_id(&b));
    }

    #[test]
    fn content_kind_roles_and_rejected_change_the_id() {
        let base = ex(Kind::Chat, &[(Role::User, "q"), (Role::Assistant, "a")], None);
        let variants = [
            ex(Kind::Completion, &[(Role::User, "q"), (Role::Assistant, "a")], None),
            ex(Kind::Chat, &[(Role::User, "q"), (Role::Assistant, "b")], None),
            ex(Kind::Chat, &[(Role::System, "q"), (Role::Assistant, "a")], None),
            ex(Kind::Chat, &[(Role::User, "q"), (Role::Assistant, "a")], Some("")),
            ex(Kind::Chat, &[(Role::User, "qa")], None),
            ex(Kind::Chat, &[(Role::User, "q a")], None),
        ];
        let mut ids: Vec<String> = variants.iter().map(example_id).collect();
        ids.push(example_id(&base));
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "all distinct");
    }

    /// The definition: length-prefixed fields of the normalized text (ids of stored examples
    /// must never change).
    fn reference_id(e: &Example) -> String {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(e.kind.as_str().as_bytes());
        for m in &e.messages {
            field(m.role.as_str().as_bytes());
            field(normalize_ws(&m.content).as_bytes());
        }
        match &e.rejected {
            Some(r) => field(format!("rejected:{}", normalize_ws(r)).as_bytes()),
            None => field(b"no-rejected"),
        }
        hex::encode(h.finalize())
    }

    #[test]
    fn streamed_hash_equals_the_definition() {
        let texts = ["", "   ", "one", " a  b\tc\n", "tab\x0bvertical", "caf\u{e9}\u{a0}nbsp\u{2003}em", "\u{3000}ideographic space ", "x\r\n\r\ny"];
        for t in texts {
            for r in [None, Some(t), Some("  ")] {
                let e = ex(Kind::Preference, &[(Role::User, t), (Role::Assistant, "  fine ")], r);
                assert_eq!(example_id(&e), reference_id(&e), "{t:?} / {r:?}");
            }
        }
        assert_eq!(normalize_ws("a\x0bb\u{a0}c  d"), "a b c d");
        // A fixed id: changing how ids are computed would duplicate every stored example.
        let e = ex(Kind::Chat, &[(Role::User, "q"), (Role::Assistant, "a")], None);
        assert_eq!(example_id(&e), reference_id(&e));
        assert_eq!(&example_id(&e)[..16], PINNED);
    }

    #[test]
    fn message_boundaries_matter() {
        let a = ex(Kind::Chat, &[(Role::User, "ab"), (Role::User, "c")], None);
        let b = ex(Kind::Chat, &[(Role::User, "a"), (Role::User, "bc")], None);
        assert_ne!(example_id(&a), example_id(&b));
    }
}
