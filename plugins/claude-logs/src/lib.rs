//! Source plugin `claude-logs`: Claude Code transcripts → chat, reasoning, correction,
//! preference and principle examples. See README.md for the config and what is emitted.
//!
//! Layout: [`lines`] reads JSONL with bounded memory, [`transcript`] turns one line into an
//! entry, [`session`] follows the active branch and builds turns, [`extract`] makes examples.
//! This file holds the config, the checkpoint and the file walk (the only I/O).

pub mod extract;
pub mod lines;
pub mod session;
pub mod shared;
pub mod transcript;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use sam_plugin::source::{Batch, Discards, Example};
use serde::{Deserialize, Serialize};

use crate::lines::{Body as LineBody, LineReader};
use crate::shared::{granted_dirs, log, resolve_dirs};
use crate::transcript::{Bounds, Entry};

/// Where Claude Code keeps transcripts when `$CLAUDE_CONFIG_DIR` is not set.
pub const DEFAULT_ROOTS: &[&str] = &["~/.config/claude/projects", "~/.claude/projects"];

/// The plugin's config table (`config = { … }` in brain.toml).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directories holding transcripts: Claude's `projects/` dirs, a config dir that has one, or
    /// single project folders. `~/…` entries are matched against the granted directories.
    /// Unset: [`DEFAULT_ROOTS`] as far as granted, and every granted directory.
    pub roots: Option<Vec<String>>,
    /// Only project folders whose name contains one of these (empty: all).
    pub projects: Vec<String>,
    /// Also read subagent transcripts (`subagents/agent-*.jsonl`, `agent-*.jsonl`).
    pub include_subagents: bool,
    /// Token budget (characters / 4) of earlier exchanges kept as context of a chat example.
    pub context_tokens: usize,
    /// `summarize` (one tool message: name + bounded excerpts) or `drop`.
    pub tools: String,
    pub tool_excerpt_chars: usize,
    pub max_tools: usize,
    pub max_answer_chars: usize,
    pub max_thinking_chars: usize,
    /// Lines longer than this are skipped and counted (`line_too_long`).
    pub max_line_bytes: usize,
    pub reasoning: bool,
    pub corrections: bool,
    pub principles: bool,
    /// Extra phrases that mark a human turn as a correction.
    pub correction_phrases: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            roots: None,
            projects: vec![],
            include_subagents: false,
            context_tokens: 1536,
            tools: "summarize".into(),
            tool_excerpt_chars: 400,
            max_tools: 8,
            max_answer_chars: 24_000,
            max_thinking_chars: 16_000,
            max_line_bytes: 8 << 20,
            reasoning: true,
            corrections: true,
            principles: true,
            correction_phrases: vec![],
        }
    }
}

impl Config {
    pub fn summarize_tools(&self) -> bool {
        self.tools == "summarize"
    }

    fn parse(value: serde_json::Value) -> Result<Config, String> {
        let cfg: Config = serde_json::from_value(value).map_err(|e| format!("claude-logs config: {e}"))?;
        if cfg.tools != "summarize" && cfg.tools != "drop" {
            return Err(format!("claude-logs config: `tools` must be \"summarize\" or \"drop\", not {:?}", cfg.tools));
        }
        if cfg.max_line_bytes == 0 {
            return Err("claude-logs config: `max_line_bytes` must be positive".into());
        }
        Ok(cfg)
    }
}

/// What was read of one transcript file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileState {
    /// Bytes read (whole lines).
    pub size: u64,
    /// Turns starting before this offset have been emitted.
    pub emit_from: u64,
    /// uuid of the last entry before `size`: if it is not there next time, the file was
    /// replaced and is read from the start.
    pub last_uuid: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub v: u32,
    pub files: BTreeMap<String, FileState>,
}

impl Checkpoint {
    fn parse(s: Option<&str>) -> Result<Checkpoint, String> {
        match s {
            None | Some("") => Ok(Checkpoint { v: 1, files: BTreeMap::new() }),
            Some(s) => serde_json::from_str(s)
                .map_err(|e| format!("claude-logs: stored checkpoint is unreadable ({e}); reset this source's checkpoint")),
        }
    }
}

/// The result of reading one file: its examples and its new state.
pub struct FileOutcome {
    pub examples: Vec<Example>,
    pub state: FileState,
    pub bytes_read: u64,
}

/// Reads one transcript file and returns the examples of turns not emitted before.
/// `file` is the path relative to its root (used in provenance).
pub fn collect_file(
    path: &Path,
    file: &str,
    previous: Option<&FileState>,
    cfg: &Config,
    discards: &mut Discards,
) -> std::io::Result<FileOutcome> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    if let Some(p) = previous {
        if p.size == len {
            return Ok(FileOutcome { examples: vec![], state: p.clone(), bytes_read: 0 });
        }
    }
    let bounds = Bounds { tool_excerpt_chars: cfg.tool_excerpt_chars };
    let mut reader = LineReader::new(BufReader::with_capacity(64 << 10, f), 0, cfg.max_line_bytes);
    let mut entries: Vec<Entry> = vec![];
    let mut size = 0;
    while let Some(line) = reader.next_line()? {
        match line.body {
            LineBody::Complete(bytes) => {
                size = line.end;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match transcript::parse_line(&bytes, line.start, line.end, &bounds) {
                    Ok(e) => entries.push(e),
                    Err(skip) => discards.add(skip.reason()),
                }
            }
            LineBody::TooLong(_) => {
                size = line.end;
                discards.add("line_too_long");
            }
            LineBody::Unterminated(bytes) => match transcript::parse_line(&bytes, line.start, line.end, &bounds) {
                Ok(e) => {
                    size = line.end;
                    entries.push(e);
                }
                Err(_) => discards.add("truncated_last_line"),
            },
        }
    }
    // A file that no longer holds what was read before was replaced: start over.
    let emit_from = match previous {
        Some(p) if p.size <= size && last_uuid_before(&entries, p.size) == p.last_uuid => p.emit_from,
        _ => 0,
    };
    let turns = session::turns(&entries);
    let session_id = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let sref = extract::SessionRef { file, session_id };
    let examples = extract::examples(&turns, emit_from, &sref, cfg, discards);
    let state =
        FileState { size, emit_from: extract::resume_offset(&turns, size).max(emit_from), last_uuid: last_uuid_before(&entries, size) };
    Ok(FileOutcome { examples, state, bytes_read: size })
}

fn last_uuid_before(entries: &[Entry], offset: u64) -> Option<String> {
    entries.iter().rev().filter(|e| e.end <= offset).find_map(|e| e.uuid.clone())
}

/// Transcript files under `root` (sorted), with their paths relative to it. A config dir with a
/// `projects/` folder is read through that folder.
pub fn transcript_files(root: &Path, cfg: &Config) -> std::io::Result<Vec<(PathBuf, String)>> {
    let projects = root.join("projects");
    let base = if projects.is_dir() { projects } else { root.to_path_buf() };
    shared::walk_files(&base, 4, &|rel| {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let subagent = rel.contains("/subagents/") || name.starts_with("agent-");
        let project = rel.split('/').next().unwrap_or("");
        name.ends_with(".jsonl")
            && (cfg.include_subagents || !subagent)
            && (cfg.projects.is_empty() || cfg.projects.iter().any(|p| project.contains(p.as_str())))
    })
}

/// The files still to read and the checkpoint.
pub struct Files {
    cfg: Config,
    files: VecDeque<(PathBuf, String)>,
    checkpoint: Checkpoint,
}

impl shared::FileSource for Files {
    type Update = (String, FileState);

    fn next_file(&mut self, discards: &mut Discards) -> Option<(Vec<Example>, Option<Self::Update>, u64)> {
        let (path, rel) = self.files.pop_front()?;
        let key = path.to_string_lossy().into_owned();
        let previous = self.checkpoint.files.get(&key);
        match collect_file(&path, &rel, previous, &self.cfg, discards) {
            Ok(out) => {
                let update = (previous != Some(&out.state)).then_some((key, out.state));
                Some((out.examples, update, out.bytes_read))
            }
            Err(e) => {
                log(true, &format!("claude-logs: cannot read {} ({e}); skipped", path.display()));
                discards.add("unreadable_file");
                Some((vec![], None, 0))
            }
        }
    }

    fn apply(&mut self, (key, state): Self::Update) {
        self.checkpoint.files.insert(key, state);
    }

    fn checkpoint(&self) -> Result<String, String> {
        serde_json::to_string(&self.checkpoint).map_err(|e| e.to_string())
    }

    fn files_left(&self) -> usize {
        self.files.len()
    }
}

pub struct ClaudeLogs {
    files: Files,
    batcher: shared::Batcher<(String, FileState)>,
}

impl sam_plugin::Source for ClaudeLogs {
    fn open(config: serde_json::Value, checkpoint: Option<String>) -> Result<Self, String> {
        let cfg = Config::parse(config)?;
        let checkpoint = Checkpoint::parse(checkpoint.as_deref())?;
        let granted = granted_dirs();
        let (roots, skipped) = match &cfg.roots {
            Some(roots) => resolve_dirs(roots, &granted),
            None => {
                let defaults: Vec<String> = DEFAULT_ROOTS.iter().map(|r| r.to_string()).collect();
                let (mut roots, skipped) = resolve_dirs(&defaults, &granted);
                roots.extend(granted.iter().map(PathBuf::from));
                (roots, skipped)
            }
        };
        for s in skipped {
            log(false, &format!("claude-logs: root {s} is not granted (add it to grants.read); skipped"));
        }
        let mut found = vec![];
        for root in roots {
            match transcript_files(&root, &cfg) {
                Ok(fs) => found.extend(fs),
                Err(e) => log(true, &format!("claude-logs: cannot read {} ({e}); skipped — is it granted?", root.display())),
            }
        }
        // Roots may overlap (a granted `~/.claude` and the default `~/.claude/projects`).
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        let files: VecDeque<_> = found.into();
        Ok(ClaudeLogs { files: Files { cfg, files, checkpoint }, batcher: Default::default() })
    }

    fn next(&mut self, max: u32) -> Result<Option<Batch>, String> {
        self.batcher.next(&mut self.files, max)
    }

    fn estimate(&self) -> Option<u64> {
        Some(self.batcher.estimate(&self.files))
    }
}

sam_plugin::export_source!(ClaudeLogs);

#[cfg(test)]
mod tests;
