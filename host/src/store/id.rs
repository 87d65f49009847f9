//! An example's id: the SHA-256 of its normalized content, so collecting the same thing twice —
//! from the same source or another — stores it once.

use sha2::{Digest, Sha256};

use crate::example::Example;

/// Collapses every run of whitespace to one space and trims both ends.
pub fn normalize_ws(text: &str) -> String {
    let mut buf = Vec::with_capacity(text.len());
    push_normalized(&mut buf, text);
    String::from_utf8(buf).expect("whitespace normalization keeps UTF-8 intact")
}

/// Appends `text` with every run of (Unicode) whitespace collapsed to one space and both ends
/// trimmed. ASCII text — nearly all of it — takes a byte loop.
fn push_normalized(buf: &mut Vec<u8>, text: &str) {
    let start = buf.len();
    if text.is_ascii() {
        buf.reserve(text.len());
        let mut space = false;
        for &b in text.as_bytes() {
            // The ASCII characters `char::is_whitespace` accepts (vertical tab included).
            if matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
                space = buf.len() > start;
            } else {
                if space {
                    buf.push(b' ');
                    space = false;
                }
                buf.push(b);
            }
        }
    } else {
        for word in text.split_whitespace() {
            if buf.len() > start {
                buf.push(b' ');
            }
            buf.extend_from_slice(word.as_bytes());
        }
    }
}

/// Hex SHA-256 over the kind, each message's role and whitespace-normalized content, and the
/// normalized rejected answer. Task, provenance and metadata are not content: the same
/// conversation found twice is one example. Every field is length-prefixed, so no two different
/// examples hash the same input.
pub fn example_id(example: &Example) -> String {
    let mut h = Sha256::new();
    let mut buf = Vec::new();
    field(&mut h, example.kind.as_str().as_bytes());
    for m in &example.messages {
        field(&mut h, m.role.as_str().as_bytes());
        buf.clear();
        push_normalized(&mut buf, &m.content);
        field(&mut h, &buf);
    }
    match &example.rejected {
        Some(r) => {
            buf.clear();
            buf.extend_from_slice(b"rejected:");
            push_normalized(&mut buf, r);
            field(&mut h, &buf);
        }
        None => field(&mut h, b"no-rejected"),
    }
    hex::encode(h.finalize())
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
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

    /// The first 16 hex digits of the id of `q` → `a` (chat), as computed since the first store.
    const PINNED: &str = "b92fe0f16a56267a";

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
            field(m.content.split_whitespace().collect::<Vec<_>>().join(" ").as_bytes());
        }
        match &e.rejected {
            Some(r) => field(format!("rejected:{}", r.split_whitespace().collect::<Vec<_>>().join(" ")).as_bytes()),
            None => field(b"no-rejected"),
        }
        hex::encode(h.finalize())
    }

    #[test]
    fn fast_normalization_equals_the_definition() {
        let texts = ["", "   ", "one", " a  b\tc\n", "tab\x0bvertical", "caf\u{e9}\u{a0}nbsp\u{2003}em", "\u{3000}ideographic space ", "x\r\n\r\ny"];
        for t in texts {
            for r in [None, Some(t), Some("  ")] {
                let e = ex(Kind::Preference, &[(Role::User, t), (Role::Assistant, "  fine ")], r);
                assert_eq!(example_id(&e), reference_id(&e), "{t:?} / {r:?}");
            }
        }
        assert_eq!(normalize_ws("a\x0bb\u{a0}c  d"), "a b c d");
        for b in 0u8..128 {
            let c = b as char;
            let t = format!("{c} a{c}{c}b {c}x{c}");
            assert_eq!(normalize_ws(&t), t.split_whitespace().collect::<Vec<_>>().join(" "), "byte {b:#x}");
        }
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
