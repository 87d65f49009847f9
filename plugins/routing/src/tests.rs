//! The plugin's logic on interaction logs written by the tests.

use std::io::Write;
use std::path::Path;

use sam_plugin::Source;
use serde_json::{json, Value};

use super::*;

fn collect(cfg: Value, checkpoint: Option<String>) -> (Vec<Example>, BTreeMap<String, u32>, Option<String>) {
    let mut src = Routing::open(cfg, checkpoint.clone()).unwrap();
    let (mut examples, mut discards, mut ckpt) = (vec![], BTreeMap::new(), checkpoint);
    while let Some(b) = src.next(2).unwrap() {
        assert!(b.examples.len() <= 2);
        examples.extend(b.examples);
        for d in b.discarded {
            *discards.entry(d.reason).or_insert(0) += d.count;
        }
        ckpt = b.checkpoint.or(ckpt);
    }
    (examples, discards, ckpt)
}

fn cfg(dir: &Path) -> Value {
    json!({ "dirs": [dir.join("logs").to_string_lossy()] })
}

fn log_file(dir: &Path) -> PathBuf {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut f = std::fs::File::create(logs.join("interactions.jsonl")).unwrap();
    let lines = [
        json!({"task":"Write a commit message for the staged diff","handler":"local","outcome":"ok","latency_ms":820}),
        json!({"task":"Refactor the plugin host into its own crate","handler":"claude","outcome":"ok","latency_ms":45000,"reason":"many files"}),
        json!({"task":"Why does the collect test hang on CI?","handler":"local","outcome":"escalated","reason":"the local answer\nguessed"}),
        json!({"task":"Fix the off-by-one in the pager","handler":"local","outcome":"corrected","escalated_to":"claude","latency_ms":1200}),
        json!({"task":"Design the review UI","handler":"claude","outcome":"escalated"}),
        json!({"task":"Summarize this file","handler":"local","outcome":"maybe"}),
        json!({"handler":"local","outcome":"ok"}),
        json!({"task":"Translate this","handler":"gpt","outcome":"ok"}),
        json!({"task":"Explain this regex","handled_by":"local","extra_field":true}),
    ];
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.write_all(b"{\"task\":\"caf\xe9\",\"handler\":\"local\"}\n\n[1]\n").unwrap();
    f.write_all(format!("{{\"task\":\"{}\",\"handler\":\"local\"}}\n", "y".repeat(2 << 20)).as_bytes()).unwrap();
    f.write_all(b"{\"task\":\"half a rec").unwrap();
    logs.join("interactions.jsonl")
}

#[test]
fn real_records_teach_labels_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    log_file(dir.path());
    let (examples, discards, _) = collect(cfg(dir.path()), None);
    let got: Vec<(&str, &str, &str)> =
        examples.iter().map(|e| (e.provenance.as_str(), e.messages[1].content.as_str(), e.messages[2].content.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (
                "logs/interactions.jsonl#L1",
                "Write a commit message for the staged diff",
                "local\nReason: the local model handled it well in 820 ms."
            ),
            (
                "logs/interactions.jsonl#L2",
                "Refactor the plugin host into its own crate",
                "claude\nReason: claude handled it well in 45.0 s: many files."
            ),
            (
                "logs/interactions.jsonl#L3",
                "Why does the collect test hang on CI?",
                "claude\nReason: local had to escalate it: the local answer guessed."
            ),
            ("logs/interactions.jsonl#L4", "Fix the off-by-one in the pager", "claude\nReason: local's answer had to be corrected."),
            ("logs/interactions.jsonl#L9", "Explain this regex", "local\nReason: the local model handled it well."),
        ]
    );
    for e in &examples {
        assert_eq!(e.kind, Kind::Routing);
        assert_eq!(e.task, "routing");
        assert_eq!(e.messages[0].role, Role::System);
        assert!(
            e.messages[0].content.contains("- claude: Claude: large") && e.messages[0].content.contains("- local: the small local model")
        );
        let meta: Value = serde_json::from_str(&e.metadata).unwrap();
        assert_eq!(meta["synthetic"], false);
    }
    let expected: BTreeMap<String, u32> = [
        ("escalated_from_top_handler", 1),
        ("unknown_outcome", 1),
        ("missing_task", 1),
        ("unknown_label", 1),
        ("invalid_utf8_line", 1),
        ("not_a_record_line", 1),
        ("line_too_long", 1),
        ("truncated_last_line", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(discards, expected);
}

#[test]
fn incremental_by_offset_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_file(dir.path());
    let (first, _, ckpt) = collect(cfg(dir.path()), None);
    assert_eq!(first.len(), 5);
    let (again, _, ckpt) = collect(cfg(dir.path()), ckpt);
    assert!(again.is_empty());
    // The half-written record is finished, and one more arrives.
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(f, "\",\"handler\":\"local\"}}").unwrap();
    writeln!(f, "{}", json!({"task":"Add a test for the pager","handler":"local","outcome":"ok"})).unwrap();
    drop(f);
    let (more, _, ckpt) = collect(cfg(dir.path()), ckpt);
    let tasks: Vec<&str> = more.iter().map(|e| e.messages[1].content.as_str()).collect();
    assert_eq!(tasks, vec!["half a rec", "Add a test for the pager"]);
    assert_eq!(more[1].provenance, "logs/interactions.jsonl#L15");
    // Rotation: the file is replaced by a shorter one.
    std::fs::write(&path, format!("{}\n", json!({"task":"New log","handler":"local"}))).unwrap();
    let (rotated, _, _) = collect(cfg(dir.path()), ckpt);
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0].provenance, "logs/interactions.jsonl#L1");
}

#[test]
fn synthetic_templates_only_when_asked_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let (none, _, _) = collect(cfg(dir.path()), None);
    assert!(none.is_empty());
    let c = json!({ "dirs": [dir.path().join("logs").to_string_lossy()], "synthetic": true,
                    "templates": [{ "task": "Bump the version number", "label": "local", "reason": "a one-line edit" },
                                  { "task": "Ask the oracle", "label": "oracle", "reason": "no such label" }] });
    let (synthetic, discards, ckpt) = collect(c.clone(), None);
    assert_eq!(synthetic.len(), BUILTIN_TEMPLATES.len() + 1);
    assert_eq!(discards.get("unknown_label"), Some(&1));
    for e in &synthetic {
        assert!(e.provenance.starts_with("synthetic:routing-template#"));
        let meta: Value = serde_json::from_str(&e.metadata).unwrap();
        assert_eq!(meta["synthetic"], true);
    }
    assert_eq!(synthetic.last().unwrap().messages[2].content, "local\nReason: a one-line edit.");
    let (again, _, ckpt) = collect(c.clone(), ckpt);
    assert!(again.is_empty());
    let mut changed = c;
    changed["templates"][0]["task"] = json!("Bump the patch version");
    let (re, _, _) = collect(changed, ckpt);
    assert_eq!(re.len(), BUILTIN_TEMPLATES.len() + 1);
}

#[test]
fn labels_and_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    log_file(dir.path());
    let c = json!({ "dirs": [dir.path().join("logs").to_string_lossy()],
                    "labels": { "local": "small model", "claude": "big model", "gpt": "another big model" },
                    "system_prompt": "Pick local, claude or gpt." });
    let (examples, _, _) = collect(c, None);
    assert_eq!(examples.len(), 6);
    assert!(examples.iter().all(|e| e.messages[0].content == "Pick local, claude or gpt."));

    assert!(Routing::open(json!({ "labels": {} }), None).err().unwrap().contains("`labels` is empty"));
    assert!(Routing::open(json!({ "escalation_label": "human" }), None).err().unwrap().contains("escalation_label"));
    assert!(Routing::open(json!({ "synthetc": true }), None).err().unwrap().contains("unknown field `synthetc`"));
    assert!(Routing::open(json!({}), Some("[".into())).err().unwrap().contains("checkpoint"));
    let (none, _, _) = collect(json!({ "dirs": ["/no/such/dir"] }), None);
    assert!(none.is_empty());
}

#[test]
fn the_repository_sample_log() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/routing");
    let (examples, discards, _) = collect(json!({ "dirs": [dir.to_string_lossy()] }), None);
    let labels: Vec<&str> = examples.iter().map(|e| e.messages[2].content.lines().next().unwrap()).collect();
    assert_eq!(labels, vec!["local", "local", "claude", "claude", "claude", "local"]);
    assert!(discards.is_empty(), "{discards:?}");
}
