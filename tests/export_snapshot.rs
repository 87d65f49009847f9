//! `brain export`: only approved examples, every form and split, byte-identical snapshots from
//! the same store and config, splits that never move when new examples arrive, corrections
//! oversampled in training only, and the snapshot recorded in the store.

mod common;
#[path = "curation_support.rs"]
mod support;

use std::collections::BTreeMap;

use common::*;
use support::*;

const FORMS: [&str; 5] = ["chat", "instruct", "preference", "preference/conversational", "raw"];

/// Commits of a repository plus the bundled Claude Code sample session (chat, reasoning,
/// correction, preference and principle examples), everything approved.
fn approved_env(commits: usize, export: &str) -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let repo = env.path().join("repo");
    prose_repo(&repo, commits, "e");
    let claude = claude_sample(env.path());
    env.write_config(&format!("{}{}{export}", git_source("notes", &repo), claude_source("sessions", &claude)));
    env.run(["collect"]).assert_ok();
    env.run(["review", "approve", "--source", "notes"]).assert_ok();
    env.run(["review", "approve", "--source", "sessions"]).assert_ok();
    (env, repo)
}

#[test]
fn snapshots_are_complete_reproducible_and_recorded() {
    let (env, _) = approved_env(30, "[export]\nratios = { train = 0.6, valid = 0.2, test = 0.2 }\ncorrection_weight = 3.0\n");
    let kinds = env.status()["by_kind"].clone();
    for k in ["chat", "correction", "preference"] {
        assert!(kinds[k].as_u64().unwrap_or(0) >= 1, "the sample gives {k} examples: {kinds}");
    }
    // One example rejected: it must not be exported.
    let total = env.status()["total"].as_u64().unwrap();
    let victim: String = env.db().query_row("SELECT id FROM examples WHERE source = 'notes' ORDER BY id LIMIT 1", [], |r| r.get(0)).unwrap();
    env.run(["review", "reject", &victim, "--reason", "no"]).assert_ok();

    let one = env.path().join("one");
    let two = env.path().join("two");
    let r1 = env.run(["export", "--out", one.to_str().unwrap(), "--json"]);
    r1.assert_ok();
    let r2 = env.run(["export", "--out", two.to_str().unwrap(), "--json"]);
    r2.assert_ok();
    let (t1, t2) = (tree(&one), tree(&two));
    assert_eq!(t1, t2, "two exports of the same store and config are byte-identical");
    assert_eq!(r1.json()["id"], r2.json()["id"]);

    // Layout: the manifest lists every file with its hash; empty splits have no file (mlx-lm
    // refuses an empty JSONL); chat, instruct and raw have all three splits here.
    let manifest: serde_json::Value = serde_json::from_slice(&t1["manifest.json"]).unwrap();
    let listed: Vec<&String> = manifest["files"].as_object().unwrap().keys().collect();
    let written: Vec<&String> = t1.keys().filter(|k| *k != "manifest.json").collect();
    assert_eq!(listed, written);
    for (name, bytes) in t1.iter().filter(|(k, _)| *k != "manifest.json") {
        assert!(FORMS.iter().any(|f| ["train", "valid", "test"].iter().any(|s| *name == format!("{f}/{s}.jsonl"))), "{name}");
        assert!(!bytes.is_empty(), "{name} is empty");
        assert_eq!(manifest["files"][name]["sha256"], sha256_hex(bytes), "{name}");
    }
    for form in ["chat", "instruct", "raw"] {
        for split in ["train", "valid", "test"] {
            assert!(t1.contains_key(&format!("{form}/{split}.jsonl")), "{form}/{split}.jsonl missing");
        }
    }
    assert_eq!(manifest["examples"], total - 1);
    assert!(!has_timestamp(&String::from_utf8_lossy(&t1["manifest.json"])), "no time stamps in the manifest");

    // Only approved examples; every raw line is one example, the rejected one absent.
    let splits = raw_splits(&one);
    assert_eq!(splits.len() as u64, total - 1);
    assert!(!splits.contains_key(&victim));
    for (split, n) in manifest["counts"]["by_split"].as_object().unwrap() {
        assert_eq!(splits.values().filter(|s| *s == split).count() as u64, n.as_u64().unwrap());
        assert!(n.as_u64().unwrap() > 0, "{split} is empty");
    }
    assert!(manifest["counts"]["by_kind"]["preference"].is_object());
    assert!(manifest["counts"]["by_source"]["notes"].is_object());
    assert_eq!(manifest["config"]["correction_weight"], 3.0);

    // Forms.
    for split in ["train", "valid", "test"] {
        for l in lines(&one.join(format!("chat/{split}.jsonl"))) {
            let m = l["messages"].as_array().unwrap();
            assert_eq!(m.last().unwrap()["role"], "assistant", "{l}");
            // mlx-lm reads `messages` and ignores the rest; `kind`/`task` are for `brain eval`.
            assert!(l.as_object().unwrap().keys().all(|k| ["messages", "kind", "task"].contains(&k.as_str())), "{l}");
        }
        for l in lines(&one.join(format!("instruct/{split}.jsonl"))) {
            assert!(l["instruction"].is_string() && l["input"].is_string() && l["output"].is_string(), "{l}");
        }
        for l in lines_if(&one.join(format!("preference/{split}.jsonl"))) {
            assert!(l["prompt"].is_string() && l["chosen"].is_string() && l["rejected"].is_string(), "{l}");
            assert_ne!(l["chosen"], l["rejected"]);
        }
        for l in lines_if(&one.join(format!("preference/conversational/{split}.jsonl"))) {
            assert!(l["prompt"].is_array() && l["chosen"][0]["role"] == "assistant" && l["rejected"][0]["role"] == "assistant", "{l}");
        }
    }
    let prefs: usize = ["train", "valid", "test"].iter().map(|s| lines_if(&one.join(format!("preference/{s}.jsonl"))).len()).sum();
    assert!(prefs >= 1);

    // Corrections: three times in chat/train, once in raw; never repeated in valid/test.
    let raw_train = lines(&one.join("raw/train.jsonl"));
    let chat_train = lines(&one.join("chat/train.jsonl"));
    let corrections: Vec<&serde_json::Value> = raw_train.iter().filter(|l| l["kind"] == "correction").collect();
    for c in &corrections {
        let same = chat_train.iter().filter(|l| l["messages"] == c["messages"] && l["kind"] == "correction").count();
        assert_eq!(same, 3, "a correction in train appears 3 times");
    }
    // Every chat line keeps its kind (and task) for `brain eval`.
    assert!(chat_train.iter().all(|l| l["kind"].is_string()));
    let non_corrections = raw_train.iter().filter(|l| l["kind"] != "correction" && chat_form(l)).count();
    assert_eq!(chat_train.len(), non_corrections + 3 * corrections.len());

    // The test split never enters training: no test line is in a train file.
    for form in FORMS {
        let read = |split: &str| std::fs::read_to_string(one.join(format!("{form}/{split}.jsonl"))).unwrap_or_default();
        let train: std::collections::HashSet<String> = read("train").lines().map(String::from).collect();
        for l in read("test").lines() {
            assert!(!train.contains(l), "{form}: a test line is in train");
        }
    }

    // Default directory: [export] out/<id>, `latest` pointing at it, recorded in the store.
    let r3 = env.run(["export", "--json"]);
    r3.assert_ok();
    let id = r3.json()["id"].as_str().unwrap().to_string();
    let dir = env.path().join("data").join(&id);
    assert_eq!(tree(&dir), t1);
    assert_eq!(std::fs::canonicalize(env.path().join("data/latest")).unwrap(), std::fs::canonicalize(&dir).unwrap());
    let (path, manifest_col, n): (String, String, i64) = env
        .db()
        .query_row("SELECT path, manifest, example_count FROM snapshots WHERE id = ?1", [&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    assert_eq!(std::path::Path::new(&path), dir);
    assert_eq!(n as u64, total - 1);
    let summary: serde_json::Value = serde_json::from_str(&manifest_col).unwrap();
    assert_eq!(summary["manifest_sha256"].as_str().unwrap(), sha256_hex(&t1["manifest.json"]));
    assert!(id.len() == 16 && summary["manifest_sha256"].as_str().unwrap().starts_with(&id));

    // A directory that is not a snapshot is never overwritten.
    let other = env.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "mine").unwrap();
    let run = env.run(["export", "--out", other.to_str().unwrap()]);
    run.assert_failed();
    assert!(run.stderr.contains("not a snapshot"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(other.join("keep.txt")).unwrap(), "mine");
}

/// `dddd-dd-ddT` anywhere.
fn has_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    (0..b.len()).any(|i| {
        (0..4).all(|k| d(i + k))
            && b.get(i + 4) == Some(&b'-')
            && d(i + 5)
            && d(i + 6)
            && b.get(i + 7) == Some(&b'-')
            && d(i + 8)
            && d(i + 9)
            && b.get(i + 10) == Some(&b'T')
    })
}

fn chat_form(raw: &serde_json::Value) -> bool {
    let m = raw["messages"].as_array().unwrap();
    m.len() >= 2 && m.last().unwrap()["role"] == "assistant" && !m.last().unwrap()["content"].as_str().unwrap().trim().is_empty()
}

/// The lines of a snapshot file that may be absent (an empty split).
fn lines_if(path: &std::path::Path) -> Vec<serde_json::Value> {
    if path.exists() {
        lines(path)
    } else {
        Vec::new()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn splits_are_stable_when_new_examples_arrive_and_when_ratios_change() {
    let (env, repo) = approved_env(40, "[export]\nratios = { train = 0.5, valid = 0.25, test = 0.25 }\n");
    let first = env.path().join("first");
    env.run(["export", "--out", first.to_str().unwrap()]).assert_ok();
    let before = raw_splits(&first);
    let mut per_split: BTreeMap<&str, usize> = BTreeMap::new();
    for s in before.values() {
        *per_split.entry(s.as_str()).or_default() += 1;
    }
    assert!(per_split.len() == 3, "{per_split:?}");

    // New examples arrive; and the ratios change.
    add_prose_commits(&repo, 40, 40, "e");
    env.run(["collect"]).assert_ok();
    env.run(["review", "approve", "--source", "notes"]).assert_ok();
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("train = 0.5, valid = 0.25, test = 0.25", "train = 0.9, valid = 0.05, test = 0.05");
    std::fs::write(env.config_path(), config).unwrap();
    let second = env.path().join("second");
    env.run(["export", "--out", second.to_str().unwrap()]).assert_ok();
    let after = raw_splits(&second);
    assert_eq!(after.len(), before.len() + 40);
    for (id, split) in &before {
        assert_eq!(after.get(id), Some(split), "{id} moved");
    }
    // The new ones follow the new ratios (mostly train).
    let new_train = after.iter().filter(|(id, s)| !before.contains_key(*id) && s.as_str() == "train").count();
    assert!(new_train >= 28, "{new_train} of 40 new examples in train");
}
