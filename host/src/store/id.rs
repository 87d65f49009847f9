//! An example's id: the SHA-256 of its normalized content, so collecting the same thing twice —
//! from the same source or another — stores it once.

use sha2::{Digest, Sha256};

use crate::example::Example;

/// Collapses every run of whitespace to one space and trims both ends.
pub fn normalize_ws(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Hex SHA-256 over the kind, each message's role and whitespace-normalized content, and the
/// normalized rejected answer. Task, provenance and metadata are not content: the same
/// conversation found twice is one example. Every field is length-prefixed, so no two different
/// examples hash the same input.
pub fn example_id(example: &Example) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(example.kind.as_str().as_bytes());
    for m in &example.messages {
        field(m.role.as_str().as_bytes());
        field(normalize_ws(&m.content).as_bytes());
    }
    match &example.rejected {
        Some(r) => field(format!("rejected:{}", normalize_ws(r)).as_bytes()),
        None => field(b"no-rejected"),
    }
    hex::encode(h.finalize())
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

    #[test]
    fn message_boundaries_matter() {
        let a = ex(Kind::Chat, &[(Role::User, "ab"), (Role::User, "c")], None);
        let b = ex(Kind::Chat, &[(Role::User, "a"), (Role::User, "bc")], None);
        assert_ne!(example_id(&a), example_id(&b));
    }
}
