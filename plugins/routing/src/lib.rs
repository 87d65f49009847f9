//! Source plugin `routing`: interaction logs (JSONL) → task → handler-label examples that teach
//! a router which tasks the local model can take and which go to a bigger one. See README.md.

#[path = "../../claude-logs/src/lines.rs"]
pub mod lines;
#[path = "../../claude-logs/src/shared.rs"]
pub mod shared;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use sam_plugin::source::{assistant, user, Batch, Discards, Example, Kind, Message, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::lines::{Body, LineReader};
use crate::shared::{granted_dirs, log, resolve_dirs};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directories holding the logs; empty means every granted directory.
    pub dirs: Vec<String>,
    /// File names ending in this are read.
    pub suffix: String,
    /// Routing labels and what each stands for (shown to the model in the system message).
    pub labels: BTreeMap<String, String>,
    /// The label an escalated or corrected answer teaches when the record names none.
    pub escalation_label: String,
    /// The system message; default: built from `labels`.
    pub system_prompt: Option<String>,
    /// Also emit the template examples (marked synthetic). Off by default: real records only.
    pub synthetic: bool,
    /// Extra templates for `synthetic = true`.
    pub templates: Vec<Template>,
    pub max_task_chars: usize,
    pub max_line_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dirs: vec![],
            suffix: ".jsonl".into(),
            labels: BTreeMap::from([
                (
                    "local".to_string(),
                    "the small local model: quick, private answers, single-file edits, explanations, commit messages".to_string(),
                ),
                (
                    "claude".to_string(),
                    "Claude: large or ambiguous tasks, changes across many files, deep debugging and design".to_string(),
                ),
            ]),
            escalation_label: "claude".into(),
            system_prompt: None,
            synthetic: false,
            templates: vec![],
            max_task_chars: 4000,
            max_line_bytes: 1 << 20,
        }
    }
}

impl Config {
    fn system(&self) -> String {
        if let Some(p) = &self.system_prompt {
            return p.clone();
        }
        let mut s = String::from("Route the task to one handler. Handlers:");
        for (label, desc) in &self.labels {
            s.push_str(&format!("\n- {label}: {desc}"));
        }
        s.push_str("\nAnswer with the handler's label on the first line, then `Reason:` and one line.");
        s
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub task: String,
    pub label: String,
    pub reason: String,
}

/// One interaction-log record (see README.md). Unknown fields are ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    #[serde(alias = "prompt")]
    pub task: Option<String>,
    #[serde(alias = "handled_by")]
    pub handler: Option<String>,
    pub outcome: Option<String>,
    pub latency_ms: Option<f64>,
    pub reason: Option<String>,
    pub escalated_to: Option<String>,
    pub timestamp: Option<String>,
    pub id: Option<serde_json::Value>,
}

/// The label a record teaches and a one-line reason, or why it teaches nothing.
pub fn decide(r: &Record, cfg: &Config) -> Result<(String, String), &'static str> {
    let handler = r.handler.as_deref().map(str::trim).filter(|h| !h.is_empty()).ok_or("missing_handler")?;
    let outcome = r.outcome.as_deref().unwrap_or("ok").trim().to_lowercase();
    let note = r.reason.as_deref().map(one_line).filter(|s| !s.is_empty());
    let with_note = |s: String| match &note {
        Some(n) => format!("{s}: {n}"),
        None => s,
    };
    let (label, reason) = match outcome.as_str() {
        "ok" => {
            let took = r.latency_ms.map(|ms| format!(" in {}", human_ms(ms))).unwrap_or_default();
            let who = if handler == "local" { "the local model".to_string() } else { handler.to_string() };
            (handler.to_string(), with_note(format!("{who} handled it well{took}")))
        }
        "escalated" | "corrected" => {
            let target = r.escalated_to.as_deref().map(str::trim).filter(|t| !t.is_empty()).unwrap_or(&cfg.escalation_label);
            if target == handler {
                return Err("escalated_from_top_handler");
            }
            let what = if outcome == "escalated" {
                format!("{handler} had to escalate it")
            } else {
                format!("{handler}'s answer had to be corrected")
            };
            (target.to_string(), with_note(what))
        }
        _ => return Err("unknown_outcome"),
    };
    if !cfg.labels.contains_key(&label) {
        return Err("unknown_label");
    }
    Ok((label, reason))
}

fn one_line(s: &str) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

fn human_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{} ms", ms.round() as i64)
    }
}

fn routing_example(cfg: &Config, task: &str, label: &str, reason: &str, provenance: String, metadata: serde_json::Value) -> Example {
    Example {
        kind: Kind::Routing,
        task: "routing".into(),
        messages: vec![
            Message { role: Role::System, content: cfg.system() },
            user(task.trim()),
            assistant(format!("{label}\nReason: {reason}.")),
        ],
        rejected: None,
        provenance,
        metadata: metadata.to_string(),
    }
}

/// One log line → an example, or the reason it gives none.
pub fn line_example(bytes: &[u8], provenance: String, cfg: &Config) -> Result<Example, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "invalid_utf8_line")?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| "invalid_json_line")?;
    if !value.is_object() {
        return Err("not_a_record_line");
    }
    let r: Record = serde_json::from_value(value).map_err(|_| "malformed_record")?;
    let task = r.task.as_deref().map(str::trim).unwrap_or("");
    if task.is_empty() {
        return Err("missing_task");
    }
    if task.chars().count() > cfg.max_task_chars {
        return Err("task_too_long");
    }
    let (label, reason) = decide(&r, cfg)?;
    let meta = json!({
        "label": label,
        "handler": r.handler,
        "outcome": r.outcome.as_deref().unwrap_or("ok"),
        "latency_ms": r.latency_ms,
        "reason": r.reason,
        "escalated_to": r.escalated_to,
        "timestamp": r.timestamp,
        "id": r.id,
        "synthetic": false,
    });
    Ok(routing_example(cfg, task, &label, &reason, provenance, meta))
}

/// Templates used with `synthetic = true`, besides the configured ones.
const BUILTIN_TEMPLATES: &[(&str, &str, &str)] = &[
    ("Write a commit message for the staged changes.", "local", "a short summary of a visible diff fits the local model"),
    ("Explain what this regular expression matches: ^\\d{4}-\\d{2}-\\d{2}$", "local", "a self-contained explanation of a few characters"),
    ("Rename the variable `tmp` to `buffer` in this function.", "local", "a mechanical single-function edit"),
    ("Add a docstring to this Python function.", "local", "a small edit grounded in the code shown"),
    ("Convert this JSON object to a TOML table.", "local", "a direct format conversion"),
    (
        "Redesign the storage layer so it supports multiple users, and migrate the existing data.",
        "claude",
        "an open design task touching many files and data",
    ),
    ("Find out why the integration tests fail only on CI and fix it.", "claude", "debugging across environments needs long investigation"),
    ("Review this 2,000-line pull request for concurrency bugs.", "claude", "a large input and subtle reasoning"),
    ("Plan the migration of the project from Python to Rust.", "claude", "a long multi-step plan across the whole codebase"),
    ("Write a threat model for the plugin sandbox.", "claude", "security analysis needs broad, careful reasoning"),
];

fn synthetic_examples(cfg: &Config, discards: &mut Discards) -> Vec<Example> {
    let builtin = BUILTIN_TEMPLATES.iter().map(|(t, l, r)| Template { task: t.to_string(), label: l.to_string(), reason: r.to_string() });
    let mut out = vec![];
    for (i, t) in builtin.chain(cfg.templates.iter().cloned()).enumerate() {
        if !cfg.labels.contains_key(&t.label) {
            discards.add("unknown_label");
            continue;
        }
        let meta = json!({ "label": t.label, "synthetic": true, "template": i });
        out.push(routing_example(cfg, &t.task, &t.label, &one_line(&t.reason), format!("synthetic:routing-template#{i}"), meta));
    }
    out
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileState {
    /// Bytes read (whole lines).
    pub offset: u64,
    /// Lines read, for `#L<n>` provenance.
    pub line: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub v: u32,
    pub files: BTreeMap<String, FileState>,
    /// Set once the synthetic templates were emitted (the templates' fingerprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<String>,
}

pub enum Update {
    File(String, FileState),
    Synthetic(String),
}

pub struct Files {
    cfg: Config,
    files: VecDeque<(PathBuf, String)>,
    checkpoint: Checkpoint,
    synthetic_pending: bool,
}

/// New lines of one log file from its stored state.
pub fn read_log(
    path: &std::path::Path,
    rel: &str,
    previous: Option<&FileState>,
    cfg: &Config,
    discards: &mut Discards,
) -> std::io::Result<(Vec<Example>, FileState)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    // A file shorter than what was read was replaced or rotated: read it from the start.
    let mut state = previous.filter(|p| p.offset <= len).cloned().unwrap_or_default();
    if state.offset == len {
        return Ok((vec![], state));
    }
    f.seek(SeekFrom::Start(state.offset))?;
    let mut reader = LineReader::new(BufReader::new(f), state.offset, cfg.max_line_bytes);
    let mut out = vec![];
    while let Some(line) = reader.next_line()? {
        let bytes = match line.body {
            Body::Complete(b) => b,
            Body::TooLong(_) => {
                state = FileState { offset: line.end, line: state.line + 1 };
                discards.add("line_too_long");
                continue;
            }
            Body::Unterminated(b) => {
                // Possibly still being written: take it only if it is a whole record.
                if serde_json::from_slice::<serde_json::Value>(&b).is_err() {
                    discards.add("truncated_last_line");
                    break;
                }
                b
            }
        };
        state = FileState { offset: line.end, line: state.line + 1 };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match line_example(&bytes, format!("{rel}#L{}", state.line), cfg) {
            Ok(e) => out.push(e),
            Err(reason) => discards.add(reason),
        }
    }
    Ok((out, state))
}

impl shared::FileSource for Files {
    type Update = Update;

    fn next_file(&mut self, discards: &mut Discards) -> Option<(Vec<Example>, Option<Update>, u64)> {
        let Some((path, rel)) = self.files.pop_front() else {
            if std::mem::take(&mut self.synthetic_pending) {
                let found = synthetic_examples(&self.cfg, discards);
                return Some((found, Some(Update::Synthetic(templates_fingerprint(&self.cfg))), 0));
            }
            return None;
        };
        let key = path.to_string_lossy().into_owned();
        let previous = self.checkpoint.files.get(&key);
        match read_log(&path, &rel, previous, &self.cfg, discards) {
            Ok((examples, state)) => {
                let read = state.offset.saturating_sub(previous.map_or(0, |p| p.offset));
                let update = (previous != Some(&state)).then_some(Update::File(key, state));
                Some((examples, update, read))
            }
            Err(e) => {
                log(true, &format!("routing: cannot read {} ({e}); skipped", path.display()));
                discards.add("unreadable_file");
                Some((vec![], None, 0))
            }
        }
    }

    fn apply(&mut self, update: Update) {
        match update {
            Update::File(key, state) => {
                self.checkpoint.files.insert(key, state);
            }
            Update::Synthetic(fp) => self.checkpoint.synthetic = Some(fp),
        }
    }

    fn checkpoint(&self) -> Result<String, String> {
        serde_json::to_string(&self.checkpoint).map_err(|e| e.to_string())
    }

    fn files_left(&self) -> usize {
        self.files.len() + usize::from(self.synthetic_pending)
    }
}

/// Changes when the templates or labels change, so that edited templates are emitted again.
fn templates_fingerprint(cfg: &Config) -> String {
    let text = serde_json::to_string(&(&cfg.templates, &cfg.labels, BUILTIN_TEMPLATES, cfg.system())).unwrap_or_default();
    // FNV-1a: a fingerprint, not a security boundary.
    let h = text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!("{h:016x}")
}

pub struct Routing {
    files: Files,
    batcher: shared::Batcher<Update>,
}

impl sam_plugin::Source for Routing {
    fn open(config: serde_json::Value, checkpoint: Option<String>) -> Result<Self, String> {
        let cfg: Config = serde_json::from_value(config).map_err(|e| format!("routing config: {e}"))?;
        if cfg.labels.is_empty() {
            return Err("routing config: `labels` is empty; give each handler label a description".into());
        }
        if !cfg.labels.contains_key(&cfg.escalation_label) {
            return Err(format!("routing config: `escalation_label` {:?} is not one of `labels`", cfg.escalation_label));
        }
        let checkpoint: Checkpoint = match checkpoint.as_deref() {
            None | Some("") => Checkpoint { v: 1, ..Default::default() },
            Some(s) => serde_json::from_str(s)
                .map_err(|e| format!("routing: stored checkpoint is unreadable ({e}); reset this source's checkpoint"))?,
        };
        let granted = granted_dirs();
        let (dirs, skipped) =
            if cfg.dirs.is_empty() { (granted.iter().map(PathBuf::from).collect(), vec![]) } else { resolve_dirs(&cfg.dirs, &granted) };
        for s in skipped {
            log(true, &format!("routing: dir {s} is not granted (add it to grants.read); skipped"));
        }
        let mut files = VecDeque::new();
        for dir in dirs {
            let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            match shared::walk_files(&dir, 8, &|rel| rel.ends_with(cfg.suffix.as_str())) {
                Ok(found) => {
                    files.extend(found.into_iter().map(|(p, rel)| (p, if dir_name.is_empty() { rel } else { format!("{dir_name}/{rel}") })))
                }
                Err(e) => log(true, &format!("routing: cannot read {} ({e}); skipped — is it granted?", dir.display())),
            }
        }
        let synthetic_pending = cfg.synthetic && checkpoint.synthetic.as_deref() != Some(templates_fingerprint(&cfg).as_str());
        Ok(Routing { files: Files { cfg, files, checkpoint, synthetic_pending }, batcher: Default::default() })
    }

    fn next(&mut self, max: u32) -> Result<Option<Batch>, String> {
        self.batcher.next(&mut self.files, max)
    }

    fn estimate(&self) -> Option<u64> {
        Some(self.batcher.estimate(&self.files))
    }
}

sam_plugin::export_source!(Routing);

#[cfg(test)]
mod tests;
