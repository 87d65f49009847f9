//! The `git` source: one `commit-message` example per non-merge commit.
//!
//! The host reads the repositories (the `git` capability); this plugin chooses commits, builds
//! the prompt (repository, changed files, a bounded diff) and keeps the checkpoint: a JSON map
//! from each configured repository to the tip collected last, so the next collect walks only
//! newer commits. See README.md for the config keys.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sam_plugin::source::git::{Change, Commit, CommitWalk, FileChange, Repository, WalkOptions};
use sam_plugin::source::{assistant, user, Batch, Discards, Example, Kind};
use serde::Deserialize;

/// Paths left out of file lists and diffs unless `default_skip = false`.
pub const DEFAULT_SKIP: &[&str] = &[
    "*.lock",
    "package-lock.json",
    "pnpm-lock.yaml",
    "go.sum",
    "*.min.js",
    "*.min.css",
    "*.map",
    "*.pb.go",
    "*_pb2.py",
    "*.generated.*",
    "*_generated.*",
    "**/node_modules/**",
    "node_modules/**",
    "**/vendor/**",
    "vendor/**",
    "dist/**",
    "**/dist/**",
    "*.snap",
];

/// Most changed files listed in a prompt.
const MAX_FILES_LISTED: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repositories (their directories); each must be under a `git` grant.
    #[serde(default)]
    pub repos: Vec<String>,
    /// Revision to collect from in every repository.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Bound on the diff text in a prompt.
    #[serde(default = "default_max_diff")]
    pub max_diff_bytes: u32,
    /// Extra globs of paths to leave out.
    #[serde(default)]
    pub skip: Vec<String>,
    /// Whether DEFAULT_SKIP applies.
    #[serde(default = "yes")]
    pub default_skip: bool,
    /// Keep only commits whose author's email or name is one of these (case-insensitive).
    #[serde(default)]
    pub authors: Vec<String>,
}

fn default_branch() -> String {
    "HEAD".into()
}
fn default_max_diff() -> u32 {
    4000
}
fn yes() -> bool {
    true
}

impl Config {
    pub fn parse(v: serde_json::Value) -> Result<Config, String> {
        let c: Config = serde_json::from_value(v).map_err(|e| format!("git plugin config: {e}"))?;
        if c.repos.is_empty() {
            return Err("git plugin config: `repos` is empty; list the repositories to collect, e.g. repos = [\"~/code/project\"]".into());
        }
        Ok(c)
    }

    pub fn skip_globs(&self) -> Vec<String> {
        let mut v: Vec<String> = if self.default_skip { DEFAULT_SKIP.iter().map(|s| s.to_string()).collect() } else { Vec::new() };
        v.extend(self.skip.iter().cloned());
        v
    }

    /// Whether a commit's author passes the `authors` filter.
    pub fn author_ok(&self, name: &str, email: &str) -> bool {
        self.authors.is_empty()
            || self.authors.iter().any(|a| a.eq_ignore_ascii_case(email) || a.eq_ignore_ascii_case(name))
    }
}

/// The prompt for one commit: the repository, the changed files and the (bounded) diff.
pub fn prompt(repo: &str, c: &Commit) -> String {
    let mut p = format!("Write the commit message for this change to the `{repo}` repository.\n\nChanged files:\n");
    for f in c.files.iter().take(MAX_FILES_LISTED) {
        p.push_str(&file_line(f));
        p.push('\n');
    }
    if c.files.len() > MAX_FILES_LISTED {
        let _ = writeln!(p, "… and {} more files", c.files.len() - MAX_FILES_LISTED);
    }
    let patch = c.patch.trim_end();
    if !patch.is_empty() {
        p.push_str("\nDiff");
        if c.patch_truncated {
            p.push_str(" (truncated)");
        }
        p.push_str(":\n```diff\n");
        p.push_str(patch);
        p.push_str("\n```\n");
    }
    p
}

fn file_line(f: &FileChange) -> String {
    let tag = match f.change {
        Change::Added => "added",
        Change::Deleted => "deleted",
        Change::Modified => "modified",
        Change::Renamed => "renamed",
    };
    let path = match &f.old_path {
        Some(old) => format!("{old} → {}", f.path),
        None => f.path.clone(),
    };
    if f.binary {
        format!("- {tag} {path} (binary)")
    } else {
        format!("- {tag} {path} (+{} -{})", f.insertions, f.deletions)
    }
}

/// The example for one commit, or the reason it is discarded.
pub fn example(repo: &str, c: &Commit, cfg: &Config) -> Result<Example, &'static str> {
    if !cfg.author_ok(&c.author.name, &c.author.email) {
        return Err("author-filtered");
    }
    let message = c.message.trim();
    if message.is_empty() {
        return Err("empty-message");
    }
    if c.files.is_empty() {
        return Err("no-changed-files");
    }
    let (ins, del) = c.files.iter().fold((0u64, 0u64), |(i, d), f| (i + f.insertions as u64, d + f.deletions as u64));
    let metadata = serde_json::json!({
        "repo": repo,
        "commit": c.id,
        "author": c.author.name,
        "time": c.author.time,
        "files": c.files.len(),
        "insertions": ins,
        "deletions": del,
        "patch_truncated": c.patch_truncated,
    });
    Ok(Example {
        kind: Kind::Chat,
        task: "commit-message".into(),
        messages: vec![user(prompt(repo, c)), assistant(message)],
        rejected: None,
        provenance: format!("{repo}@{}", c.id),
        metadata: metadata.to_string(),
    })
}

/// Checkpoint: configured repository path → tip commit id collected last.
pub type Checkpoint = BTreeMap<String, String>;

pub fn parse_checkpoint(s: Option<&str>) -> Checkpoint {
    match s {
        Some(s) if !s.trim().is_empty() => serde_json::from_str(s).unwrap_or_else(|e| {
            sam_plugin::source::warn(&format!("ignoring unreadable checkpoint ({e}); collecting from the start"));
            Checkpoint::new()
        }),
        _ => Checkpoint::new(),
    }
}

struct Repo {
    key: String,
    handle: Repository,
    name: String,
    tip: String,
    walk: Option<CommitWalk>,
}

pub struct GitSource {
    cfg: Config,
    repos: Vec<Repo>,
    current: usize,
    checkpoint: Checkpoint,
    discards: Discards,
}

impl sam_plugin::Source for GitSource {
    fn open(config: serde_json::Value, checkpoint: Option<String>) -> Result<Self, String> {
        let cfg = Config::parse(config)?;
        let checkpoint = parse_checkpoint(checkpoint.as_deref());
        let mut repos = Vec::new();
        for key in &cfg.repos {
            let handle = Repository::open(key)?;
            let name = handle.name();
            let tip = handle.resolve(&cfg.branch).map_err(|e| format!("{key}: {e}"))?;
            repos.push(Repo { key: key.clone(), handle, name, tip, walk: None });
        }
        Ok(GitSource { cfg, repos, current: 0, checkpoint, discards: Discards::default() })
    }

    fn next(&mut self, max: u32) -> Result<Option<Batch>, String> {
        while self.current < self.repos.len() {
            let repo = &mut self.repos[self.current];
            let previous = self.checkpoint.get(&repo.key).cloned();
            if previous.as_deref() == Some(repo.tip.as_str()) {
                self.current += 1;
                continue;
            }
            if repo.walk.is_none() {
                let opts = WalkOptions {
                    tip: repo.tip.clone(),
                    hide: previous.into_iter().collect(),
                    max_patch_bytes: self.cfg.max_diff_bytes,
                    skip_paths: self.cfg.skip_globs(),
                    include_merges: false,
                };
                repo.walk = Some(repo.handle.walk(&opts).map_err(|e| format!("{}: {e}", repo.key))?);
            }
            let walk = repo.walk.as_ref().expect("walk started above");
            let commits = walk.next(max).map_err(|e| format!("{}: {e}", repo.key))?;
            if commits.is_empty() {
                // This repository is done: later collects start from its tip.
                self.checkpoint.insert(repo.key.clone(), repo.tip.clone());
                repo.walk = None;
                self.current += 1;
                return Ok(Some(self.batch(Vec::new())));
            }
            let mut examples = Vec::with_capacity(commits.len());
            for c in &commits {
                match example(&repo.name, c, &self.cfg) {
                    Ok(e) => examples.push(e),
                    Err(reason) => self.discards.add(reason),
                }
            }
            return Ok(Some(self.batch(examples)));
        }
        Ok(None)
    }
}

impl GitSource {
    fn batch(&mut self, examples: Vec<Example>) -> Batch {
        Batch {
            examples,
            discarded: self.discards.take(),
            checkpoint: Some(serde_json::to_string(&self.checkpoint).unwrap_or_default()),
        }
    }
}

sam_plugin::export_source!(GitSource);

#[cfg(test)]
mod tests {
    use super::*;
    use sam_plugin::source::git::Signature;

    fn commit(files: Vec<FileChange>, message: &str) -> Commit {
        let sig = Signature { name: "Ada".into(), email: "ada@example.com".into(), time: 1, offset_minutes: 0 };
        Commit {
            id: "abc".into(),
            message: message.into(),
            author: sig.clone(),
            committer: sig,
            parents: vec![],
            files,
            patch: "diff --git a/x b/x\n+hi\n".into(),
            patch_truncated: true,
        }
    }

    fn file(path: &str, binary: bool) -> FileChange {
        FileChange { path: path.into(), old_path: None, change: Change::Modified, insertions: 3, deletions: 1, binary }
    }

    fn cfg(v: serde_json::Value) -> Config {
        Config::parse(v).unwrap()
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = cfg(serde_json::json!({"repos": ["/r"]}));
        assert_eq!(c.branch, "HEAD");
        assert_eq!(c.max_diff_bytes, 4000);
        assert!(c.skip_globs().iter().any(|g| g == "*.lock"));
        assert!(Config::parse(serde_json::json!({})).unwrap_err().contains("repos"));
        assert!(Config::parse(serde_json::json!({"repos": ["/r"], "nope": 1})).is_err());
        let c = cfg(serde_json::json!({"repos": ["/r"], "default_skip": false, "skip": ["*.txt"]}));
        assert_eq!(c.skip_globs(), vec!["*.txt".to_string()]);
    }

    #[test]
    fn prompt_lists_files_and_diff() {
        let c = commit(vec![file("src/a.rs", false), file("logo.png", true)], "Fix it\n");
        let p = prompt("sam", &c);
        assert!(p.contains("`sam`"));
        assert!(p.contains("- modified src/a.rs (+3 -1)"));
        assert!(p.contains("- modified logo.png (binary)"));
        assert!(p.contains("Diff (truncated):\n```diff\ndiff --git"));
        let e = example("sam", &c, &cfg(serde_json::json!({"repos": ["/r"]}))).unwrap();
        assert_eq!(e.provenance, "sam@abc");
        assert_eq!(e.messages[1].content, "Fix it");
    }

    #[test]
    fn discards() {
        let c = cfg(serde_json::json!({"repos": ["/r"], "authors": ["someone@else"]}));
        assert_eq!(example("r", &commit(vec![file("a", false)], "m"), &c).unwrap_err(), "author-filtered");
        let c = cfg(serde_json::json!({"repos": ["/r"], "authors": ["ADA@example.com"]}));
        assert!(example("r", &commit(vec![file("a", false)], "m"), &c).is_ok());
        assert_eq!(example("r", &commit(vec![], "m"), &c).unwrap_err(), "no-changed-files");
        assert_eq!(example("r", &commit(vec![file("a", false)], "  \n"), &c).unwrap_err(), "empty-message");
    }

    #[test]
    fn checkpoint_roundtrip() {
        assert!(parse_checkpoint(None).is_empty());
        let cp = parse_checkpoint(Some(r#"{"/r":"abc"}"#));
        assert_eq!(cp.get("/r").map(String::as_str), Some("abc"));
    }
}
