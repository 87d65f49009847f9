//! End-to-end tests of the plugin's logic on hand-written transcripts in a temporary directory.

use std::io::Write;

use sam_plugin::source::{Kind, Role};
use sam_plugin::Source;
use serde_json::{json, Value};

use super::*;

fn user(uuid: &str, parent: Option<&str>, text: &str) -> Value {
    json!({"type":"user","uuid":uuid,"parentUuid":parent,"sessionId":"s1","timestamp":"2026-01-01T00:00:00Z","cwd":"/work/app","gitBranch":"main",
           "message":{"role":"user","content":text}})
}

fn assistant(uuid: &str, parent: &str, id: &str, blocks: Value) -> Value {
    json!({"type":"assistant","uuid":uuid,"parentUuid":parent,"sessionId":"s1","requestId":"req",
           "message":{"id":id,"model":"claude-test","role":"assistant","content":blocks,"stop_reason":null}})
}

fn text(t: &str) -> Value {
    json!([{"type":"text","text":t}])
}

/// The session the issue asks for: a rewind branch, a split assistant message, a meta line, a
/// compaction summary, a tool call with a large result, a correction — plus an unknown record
/// type and a truncated last line.
fn session_lines() -> Vec<String> {
    let big = format!("[package]\nname = \"app\"\nedition = \"2021\"\n{}", "# padding\n".repeat(20_000));
    let lines = vec![
        user("u1", None, "How do I list the files of a directory in Rust?"),
        assistant("a1", "u1", "msg_A", json!([{"type":"thinking","thinking":"They want std::fs::read_dir.","signature":"sig"}])),
        assistant("a2", "a1", "msg_A", text("Use `std::fs::read_dir(path)?` and iterate over the entries.")),
        json!({"type":"user","uuid":"m1","parentUuid":"a2","isMeta":true,"message":{"role":"user","content":"<command-name>/cost</command-name>"}}),
        // The abandoned branch: asked, answered, then rewound.
        user("x1", Some("m1"), "ABANDONED question. Never use unwrap."),
        assistant("x2", "x1", "msg_X", text("ABANDONED answer")),
        // The active branch continues from m1.
        user("u2", Some("m1"), "Thanks. Please always use anyhow for errors. Which edition does Cargo.toml use?"),
        assistant("a3", "u2", "msg_B", text("The edition is 2018.")),
        json!({"type":"system","subtype":"compact_boundary","uuid":"b1","parentUuid":null,"logicalParentUuid":"a3","content":"Conversation compacted"}),
        json!({"type":"user","uuid":"c1","parentUuid":"b1","isCompactSummary":true,"message":{"role":"user","content":"This session is being continued from a previous conversation. Summary: edition question."}}),
        user("u3", Some("c1"), "No, that's wrong. Read Cargo.toml again."),
        assistant(
            "a4",
            "u3",
            "msg_C",
            json!([{"type":"text","text":"Let me read it."},{"type":"tool_use","id":"toolu_1","name":"Read","input":{"file_path":"/work/app/Cargo.toml"}}]),
        ),
        json!({"type":"user","uuid":"r1","parentUuid":"a4","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":big}]},
               "toolUseResult":{"type":"text"}}),
        assistant("a5", "r1", "msg_D", text("You're right, I apologize. The edition is 2021.")),
        json!({"type":"mystery-record","uuid":"q1","parentUuid":"a5"}),
    ];
    let mut out: Vec<String> = lines.iter().map(|v| v.to_string()).collect();
    out.push(r#"{"type":"user","uuid":"u4","parentUuid":"a5","message":{"role":"user","con"#.to_string());
    out
}

fn write_session(dir: &Path, name: &str, lines: &[String], trailing_newline: bool) -> PathBuf {
    let project = dir.join("-work-app");
    std::fs::create_dir_all(&project).unwrap();
    let path = project.join(name);
    let mut body = lines.join("\n");
    if trailing_newline {
        body.push('\n');
    }
    std::fs::write(&path, body).unwrap();
    path
}

fn config(root: &Path) -> serde_json::Value {
    json!({ "roots": [root.to_string_lossy()], "tool_excerpt_chars": 60 })
}

/// Runs a whole collection; returns the examples, the discards by reason and the checkpoint.
fn collect(cfg: Value, checkpoint: Option<String>) -> (Vec<Example>, BTreeMap<String, u32>, Option<String>) {
    let mut src = ClaudeLogs::open(cfg, checkpoint.clone()).unwrap();
    let (mut examples, mut discards, mut ckpt) = (vec![], BTreeMap::new(), checkpoint);
    while let Some(batch) = src.next(2).unwrap() {
        assert!(batch.examples.len() <= 2, "batch larger than max");
        examples.extend(batch.examples);
        for d in batch.discarded {
            *discards.entry(d.reason).or_insert(0) += d.count;
        }
        if batch.checkpoint.is_some() {
            ckpt = batch.checkpoint;
        }
    }
    (examples, discards, ckpt)
}

fn of_kind(examples: &[Example], kind: Kind) -> Vec<&Example> {
    examples.iter().filter(|e| e.kind == kind).collect()
}

fn contents(e: &Example) -> Vec<(Role, &str)> {
    e.messages.iter().map(|m| (m.role, m.content.as_str())).collect()
}

#[test]
fn hand_written_session_gives_exactly_the_expected_examples() {
    let dir = tempfile::tempdir().unwrap();
    write_session(dir.path(), "s1.jsonl", &session_lines(), false);
    let (examples, discards, _) = collect(config(dir.path()), None);

    let kinds: Vec<Kind> = examples.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![Kind::Chat, Kind::Reasoning, Kind::Principle, Kind::Correction, Kind::Preference], "{examples:#?}");
    for e in &examples {
        assert!(!e.messages.iter().any(|m| m.content.contains("ABANDONED")), "abandoned branch leaked: {e:?}");
        assert!(!e.messages.iter().any(|m| m.content.contains("This session is being continued")), "compaction summary leaked");
        assert!(!e.messages.iter().any(|m| m.content.contains("/cost")), "meta line leaked");
        assert!(serde_json::from_str::<Value>(&e.metadata).unwrap().is_object());
    }

    let chat = of_kind(&examples, Kind::Chat)[0];
    assert_eq!(
        contents(chat),
        vec![
            (Role::User, "How do I list the files of a directory in Rust?"),
            (Role::Assistant, "Use `std::fs::read_dir(path)?` and iterate over the entries.")
        ]
    );
    assert_eq!(chat.task, "chat");
    assert_eq!(chat.provenance, "-work-app/s1.jsonl#u1");

    let reasoning = of_kind(&examples, Kind::Reasoning)[0];
    assert_eq!(
        reasoning.messages[1].content,
        "<think>\nThey want std::fs::read_dir.\n</think>\n\nUse `std::fs::read_dir(path)?` and iterate over the entries."
    );

    let principle = of_kind(&examples, Kind::Principle)[0];
    assert_eq!(contents(principle), vec![(Role::User, "Always use anyhow for errors.")]);
    assert_eq!(principle.provenance, "-work-app/s1.jsonl#u2");

    let correction = of_kind(&examples, Kind::Correction)[0];
    let c = contents(correction);
    assert_eq!(c.len(), 7, "{c:#?}");
    assert_eq!(c[2], (Role::User, "Thanks. Please always use anyhow for errors. Which edition does Cargo.toml use?"));
    assert_eq!(c[3], (Role::Assistant, "The edition is 2018."));
    assert_eq!(c[4], (Role::User, "No, that's wrong. Read Cargo.toml again."));
    assert_eq!(c[5].0, Role::Tool);
    assert!(c[5].1.starts_with("Tool calls made before answering:\n- Read {\"file_path\":\"/work/app/Cargo.toml\"}"), "{}", c[5].1);
    assert!(c[5].1.contains("result (200040 chars): [package]"), "{}", c[5].1);
    assert!(c[5].1.len() < 400, "tool excerpt not bounded: {} bytes", c[5].1.len());
    assert_eq!(c[6], (Role::Assistant, "You're right, I apologize. The edition is 2021."));
    assert_eq!(correction.provenance, "-work-app/s1.jsonl#u3");

    let preference = of_kind(&examples, Kind::Preference);
    assert_eq!(preference.len(), 1);
    let p = preference[0];
    assert_eq!(p.messages.last().unwrap().content, "The edition is 2021.");
    assert_eq!(p.messages[p.messages.len() - 2].content, "Thanks. Please always use anyhow for errors. Which edition does Cargo.toml use?");
    assert_eq!(p.rejected.as_deref(), Some("The edition is 2018."));

    assert_eq!(discards.get("answer_corrected_later"), Some(&1));
    assert_eq!(discards.get("unknown_record_type"), Some(&1));
    assert_eq!(discards.get("truncated_last_line"), Some(&1));
}

#[test]
fn second_run_adds_nothing_and_appended_turns_only_new_examples() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = session_lines();
    lines.pop(); // no truncated tail this time
    let path = write_session(dir.path(), "s1.jsonl", &lines, true);
    let (first, _, ckpt) = collect(config(dir.path()), None);
    assert_eq!(first.len(), 5);

    let (again, _, ckpt2) = collect(config(dir.path()), ckpt.clone());
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(ckpt2, ckpt);

    // The session goes on: a question whose answer is still being written, then finished.
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(f, "{}", user("u5", Some("a5"), "And how do I read a file to a string? Always prefer std over crates.")).unwrap();
    writeln!(f, "{}", assistant("a6", "u5", "msg_E", json!([{"type":"tool_use","id":"t9","name":"Grep","input":{}}]))).unwrap();
    drop(f);
    let (partial, _, ckpt3) = collect(config(dir.path()), ckpt2);
    assert!(partial.is_empty(), "unfinished turn emitted: {partial:?}");

    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(f, "{}", json!({"type":"user","uuid":"r9","parentUuid":"a6","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t9","content":"none"}]}})).unwrap();
    writeln!(f, "{}", assistant("a7", "r9", "msg_F", text("Use `std::fs::read_to_string(path)?`."))).unwrap();
    drop(f);
    let (more, _, _) = collect(config(dir.path()), ckpt3);
    // The principle of the held turn comes once, with the turn.
    let kinds: Vec<Kind> = more.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![Kind::Principle, Kind::Chat], "{more:#?}");
    let more = &more[1..];
    assert_eq!(more[0].messages.last().unwrap().content, "Use `std::fs::read_to_string(path)?`.");
    assert_eq!(more[0].provenance, "-work-app/s1.jsonl#u5");
    // Context: the earlier exchanges within the budget, the tool message, then the answer.
    let roles: Vec<Role> = more[0].messages.iter().map(|m| m.role).collect();
    assert_eq!(&roles[roles.len() - 3..], &[Role::User, Role::Tool, Role::Assistant]);
    assert!(roles.len() > 3);
}

#[test]
fn a_replaced_file_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> =
        vec![user("u1", None, "Question one?").to_string(), assistant("a1", "u1", "m", text("Answer one.")).to_string()];
    write_session(dir.path(), "s.jsonl", &lines, true);
    let (_, _, ckpt) = collect(config(dir.path()), None);
    let other: Vec<String> = vec![
        user("z1", None, "A different, longer first question here?").to_string(),
        assistant("z2", "z1", "m", text("A different answer.")).to_string(),
    ];
    write_session(dir.path(), "s.jsonl", &other, true);
    let (examples, _, _) = collect(config(dir.path()), ckpt);
    assert_eq!(examples.len(), 1);
    assert_eq!(examples[0].provenance, "-work-app/s.jsonl#z1");
}

#[test]
fn odd_files_are_counted_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    write_session(dir.path(), "empty.jsonl", &[], false);
    let project = dir.path().join("-work-app");
    // Invalid UTF-8, a huge line (50 MB), blank lines, JSON that is not an object, then a good turn.
    let mut f = std::fs::File::create(project.join("odd.jsonl")).unwrap();
    f.write_all(b"{\"type\":\"user\",\"uuid\":\"bad\",\"message\":{\"content\":\"\xff\xfe\"}}\n").unwrap();
    let huge = format!("{{\"type\":\"user\",\"uuid\":\"huge\",\"message\":{{\"content\":\"{}\"}}}}\n", "x".repeat(50 << 20));
    f.write_all(huge.as_bytes()).unwrap();
    drop(huge);
    f.write_all(b"\n\n[1,2,3]\nnot json at all\n").unwrap();
    writeln!(f, "{}", user("u1", None, "What is 2 + 2?")).unwrap();
    writeln!(f, "{}", assistant("a1", "u1", "m1", text("4"))).unwrap();
    drop(f);
    // A subagent transcript: skipped by default.
    std::fs::create_dir_all(project.join("s1/subagents")).unwrap();
    std::fs::write(project.join("s1/subagents/agent-1.jsonl"), format!("{}\n", user("g", None, "subagent prompt"))).unwrap();

    let (examples, discards, _) = collect(config(dir.path()), None);
    assert_eq!(examples.len(), 1, "{examples:#?}");
    assert_eq!(examples[0].messages[1].content, "4");
    assert_eq!(discards.get("invalid_utf8_line"), Some(&1));
    assert_eq!(discards.get("line_too_long"), Some(&1));
    assert_eq!(discards.get("not_a_record_line"), Some(&1));
    assert_eq!(discards.get("invalid_json_line"), Some(&1));

    let with_agents = json!({ "roots": [dir.path().to_string_lossy()], "include_subagents": true });
    let (examples, _, _) = collect(with_agents, None);
    assert_eq!(examples.len(), 1, "a subagent turn with no answer gives no example");
}

#[test]
fn tools_can_be_dropped_and_config_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_session(dir.path(), "s1.jsonl", &session_lines(), true);
    let cfg = json!({ "roots": [dir.path().to_string_lossy()], "tools": "drop", "reasoning": false, "principles": false });
    let (examples, _, _) = collect(cfg, None);
    let kinds: Vec<Kind> = examples.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![Kind::Chat, Kind::Correction, Kind::Preference]);
    assert!(examples.iter().all(|e| e.messages.iter().all(|m| m.role != Role::Tool)));

    assert!(ClaudeLogs::open(json!({ "tools": "sometimes" }), None).err().unwrap().contains("`tools`"));
    assert!(ClaudeLogs::open(json!({ "rootz": [] }), None).err().unwrap().contains("unknown field `rootz`"));
    assert!(ClaudeLogs::open(json!({}), Some("not json".into())).err().unwrap().contains("checkpoint"));
}

#[test]
fn missing_roots_are_skipped() {
    let (examples, discards, _) = collect(json!({ "roots": ["/definitely/not/here"] }), None);
    assert!(examples.is_empty() && discards.is_empty());
    // Defaults resolve to nothing when nothing is granted.
    let (examples, _, _) = collect(json!({}), None);
    assert!(examples.is_empty());
}

#[test]
fn the_repository_sample_transcript() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/claude-projects");
    let (examples, discards, _) = collect(json!({ "roots": [root.to_string_lossy()] }), None);
    let file = "-home-demo-todo-app/5d0c8e2a-7b1f-4c3e-9a61-2f4d8b9e0c11.jsonl";
    // The second sample session: three wrong answers, each corrected and fixed.
    let second: Vec<Kind> = examples.iter().filter(|e| e.provenance.starts_with("-home-demo-todo-app/9b7e4c1d")).map(|e| e.kind).collect();
    assert_eq!(second.iter().filter(|k| **k == Kind::Correction).count(), 3, "{second:?}");
    assert_eq!(second.iter().filter(|k| **k == Kind::Preference).count(), 3, "{second:?}");
    // The third: twelve facts, each asked twice — 24 chat examples (the demo's before/after).
    let facts: Vec<Kind> = examples.iter().filter(|e| e.provenance.starts_with("-home-demo-todo-app/3c1f9a2e")).map(|e| e.kind).collect();
    assert_eq!(facts, vec![Kind::Chat; 24], "{facts:?}");
    let examples: Vec<_> = examples.into_iter().filter(|e| e.provenance.starts_with(file)).collect();
    let got: Vec<(Kind, &str)> = examples.iter().map(|e| (e.kind, e.provenance.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Kind::Chat, format!("{file}#u-0001").as_str()),
            (Kind::Reasoning, format!("{file}#u-0001").as_str()),
            (Kind::Principle, format!("{file}#u-0002").as_str()),
            (Kind::Correction, format!("{file}#u-0003").as_str()),
            (Kind::Preference, format!("{file}#u-0003").as_str()),
        ]
    );
    assert_eq!(examples[2].messages[0].content, "Always keep functions under 40 lines in this repo.");
    assert!(examples[4].messages.last().unwrap().content.starts_with("The project requires Python 3.11 or newer"));
    assert_eq!(examples[4].rejected.as_deref(), Some("The project requires Python 3.8."));
    assert_eq!(discards.get("answer_corrected_later"), Some(&4), "one wrong answer in the first session, three in the second");
}
