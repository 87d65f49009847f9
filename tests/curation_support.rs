//! Helpers of the curation, review and export tests (included with
//! `#[path = "curation_support.rs"] mod support;` beside `mod common;`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::common::*;

/// A git repository of `n` commits, each adding one file with a paragraph of prose.
pub fn prose_repo(dir: &Path, n: usize, tag: &str) {
    init_repo(dir);
    add_prose_commits(dir, 0, n, tag);
}

/// Adds commits `from..from + n` (distinct texts per index and tag).
pub fn add_prose_commits(dir: &Path, from: usize, n: usize, tag: &str) {
    for i in from..from + n {
        let body = paragraph(i, tag);
        commit(dir, &[(&format!("notes/{tag}-{i}.md"), body.as_bytes())], format!("Write note {i} about {}", topic(i)).as_bytes());
    }
}

const TOPICS: &[&str] = &[
    "the lexer",
    "error recovery",
    "the type checker",
    "code generation",
    "the borrow checker",
    "incremental builds",
    "the test runner",
    "release packaging",
];

fn topic(i: usize) -> &'static str {
    TOPICS[i % TOPICS.len()]
}

/// A paragraph that differs enough between indices to never be a near duplicate.
pub fn paragraph(i: usize, tag: &str) -> String {
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar",
        "papa",
    ];
    let mut out = format!("# Note {i} ({tag})\n\nThis note is about {}.", topic(i));
    // A pseudo-random word sequence per (i, tag).
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tag.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    for k in 0..60 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push(' ');
        out.push_str(words[(state % words.len() as u64) as usize]);
        if k % 12 == 11 {
            out.push('.');
        }
    }
    out.push('\n');
    out
}

/// Every file under `dir` (relative path → bytes).
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read dir") {
            let e = e.expect("entry");
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The JSON lines of a snapshot file.
pub fn lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: bad line {l}: {e}", path.display()))).collect()
}

/// id → split, from a snapshot's raw files.
pub fn raw_splits(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for split in ["train", "valid", "test"] {
        let path = dir.join(format!("raw/{split}.jsonl"));
        if !path.exists() {
            continue;
        }
        for l in lines(&path) {
            out.insert(l["id"].as_str().unwrap().to_string(), split.to_string());
        }
    }
    out
}

/// Every string inside a JSON value, joined (to search text as it was, JSON escapes undone).
pub fn json_strings(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.push_str(k);
                out.push('\n');
                json_strings(x, out);
            }
        }
        _ => {}
    }
}

/// All text the store holds, raw (every text cell of every table) and decoded (JSON cells'
/// strings), plus the database files' bytes as lossy text.
pub fn store_text(env: &Env) -> String {
    let db = env.db();
    let tables: Vec<String> =
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let mut out = String::new();
    for t in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let cols = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for c in 0..cols {
                if let Ok(Some(text)) = r.get::<_, Option<String>>(c) {
                    out.push_str(&text);
                    out.push('\n');
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                        json_strings(&v, &mut out);
                    }
                }
            }
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(bytes) = std::fs::read(format!("{}{suffix}", env.db_path().display())) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

/// All text of a snapshot directory: bytes and decoded JSON strings.
pub fn snapshot_text(dir: &Path) -> String {
    let mut out = String::new();
    for (name, bytes) in tree(dir) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if name.ends_with(".jsonl") {
            for l in text.lines() {
                json_strings(&serde_json::from_str(l).unwrap(), &mut out);
            }
        }
        out.push_str(&text);
    }
    out
}

/// The pending examples' ids in review order.
pub fn pending_ids(env: &Env) -> Vec<String> {
    let r = env.run(["review", "list", "--status", "pending", "--json"]);
    r.assert_ok();
    r.json().as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

/// `(status, decided_by, reason)` of an example.
pub fn status_of(env: &Env, id: &str) -> (String, Option<String>, Option<String>) {
    let r = env.run(["review", "show", id, "--json"]);
    r.assert_ok();
    let v = r.json();
    let s = &v["summary"];
    (s["status"].as_str().unwrap().to_string(), s["decided_by"].as_str().map(String::from), s["reason"].as_str().map(String::from))
}

/// `brain review` with `script` on stdin (no terminal), and extra environment.
pub fn review_script(env: &Env, script: &str, vars: &[(&str, &str)]) -> Run {
    use std::io::Write;
    let mut cmd = env.command(["review"]);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.env_remove("EDITOR").env_remove("VISUAL");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn brain review");
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().expect("brain review");
    Run::from(out)
}

/// A copy of the bundled Claude Code sample session under `dir`; returns the projects root.
pub fn claude_sample(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/claude-projects");
    let dst = dir.join("claude-projects");
    for (name, bytes) in tree(&src) {
        let p = dst.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    dst
}

/// A `[[source]]` of the bundled claude-logs plugin over `root`.
pub fn claude_source(name: &str, root: &Path) -> String {
    format!(
        "[[source]]\nname = {}\nplugin = \"claude-logs\"\ngrants = {{ read = [{root}] }}\nconfig = {{ roots = [{root}] }}\n\n",
        toml_str(name),
        root = toml_str(root)
    )
}
