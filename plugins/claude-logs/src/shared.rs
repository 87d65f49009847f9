//! What the file-reading sources share (docs, routing and claude-logs include this file with
//! `#[path]`; it depends only on std, `sam-plugin` and, in the guest, `wasip2`):
//! finding files in granted directories, and handing out per-file examples in bounded batches
//! whose checkpoint never runs ahead of the examples already handed out.
//!
//! The host preopens each granted directory read-only at its absolute path; the guest has no
//! environment, so `~/…` in a plugin's config is matched against those directories by suffix.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use sam_plugin::source::{Batch, Discards, Example};

/// A source that reads files one at a time.
pub trait FileSource {
    /// A change to the checkpoint, applied once all of a file's examples are handed out.
    type Update;
    /// Reads the next file: its examples, its checkpoint change (none when nothing changed), and
    /// the bytes read. `None` when no file is left.
    fn next_file(&mut self, discards: &mut Discards) -> Option<(Vec<Example>, Option<Self::Update>, u64)>;
    fn apply(&mut self, update: Self::Update);
    /// The checkpoint text as of the updates applied so far.
    fn checkpoint(&self) -> Result<String, String>;
    fn files_left(&self) -> usize;
}

/// Bytes read per `next` call at most (beyond one file), so that a call that finds few examples
/// in many files still returns in good time.
const BYTES_PER_CALL: u64 = 64 << 20;

/// Turns a [`FileSource`] into `next(max)` batches.
pub struct Batcher<U> {
    queue: VecDeque<Example>,
    pending: Option<U>,
    discards: Discards,
    dirty: bool,
    exhausted: bool,
}

impl<U> Default for Batcher<U> {
    fn default() -> Self {
        Batcher { queue: VecDeque::new(), pending: None, discards: Discards::default(), dirty: false, exhausted: false }
    }
}

impl<U> Batcher<U> {
    pub fn next<S: FileSource<Update = U>>(&mut self, src: &mut S, max: u32) -> Result<Option<Batch>, String> {
        let max = max.max(1) as usize;
        let mut examples = vec![];
        let mut read = 0;
        while examples.len() < max {
            if let Some(e) = self.queue.pop_front() {
                examples.push(e);
                continue;
            }
            if let Some(u) = self.pending.take() {
                src.apply(u);
                self.dirty = true;
            }
            if read >= BYTES_PER_CALL || self.exhausted {
                break;
            }
            match src.next_file(&mut self.discards) {
                Some((found, update, bytes)) => {
                    read += bytes;
                    self.queue.extend(found);
                    self.pending = update;
                }
                None => self.exhausted = true,
            }
        }
        let discarded = self.discards.take();
        if examples.is_empty() && discarded.is_empty() && !self.dirty && self.exhausted {
            return Ok(None);
        }
        self.dirty = false;
        Ok(Some(Batch { examples, discarded, checkpoint: Some(src.checkpoint()?) }))
    }

    /// Remaining work for progress bars: files not read yet plus examples not handed out.
    pub fn estimate<S: FileSource<Update = U>>(&self, src: &S) -> u64 {
        (src.files_left() + self.queue.len()) as u64
    }
}

/// The directories the host preopened for this plugin (its `grants.read`), as absolute paths.
pub fn granted_dirs() -> Vec<String> {
    #[cfg(target_os = "wasi")]
    {
        wasip2::filesystem::preopens::get_directories().into_iter().map(|(_, p)| p).collect()
    }
    #[cfg(not(target_os = "wasi"))]
    {
        vec![]
    }
}

/// Resolves configured directories against the granted ones. `~/x/y` matches a granted
/// directory ending in `/x/y`, a granted `…/x` (giving `…/x/y`), or a granted folder inside
/// `…/x/y/`. Other paths are used as given. Returns the directories and the entries that matched
/// nothing granted.
pub fn resolve_dirs(dirs: &[String], granted: &[String]) -> (Vec<PathBuf>, Vec<String>) {
    let mut found: Vec<PathBuf> = vec![];
    let mut skipped = vec![];
    let mut push = |p: PathBuf| {
        if !found.contains(&p) {
            found.push(p)
        }
    };
    for dir in dirs {
        let Some(rest) = dir.strip_prefix("~/") else {
            push(PathBuf::from(dir));
            continue;
        };
        let comps: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).collect();
        let suffix = comps.join("/");
        let mut any = false;
        for g in granted {
            let g = g.trim_end_matches('/');
            let hit = if g.ends_with(&format!("/{suffix}")) || g.contains(&format!("/{suffix}/")) {
                Some(PathBuf::from(g))
            } else {
                (1..comps.len())
                    .rev()
                    .find(|&k| g.ends_with(&format!("/{}", comps[..k].join("/"))))
                    .map(|k| Path::new(g).join(comps[k..].join("/")))
            };
            if let Some(h) = hit {
                push(h);
                any = true;
            }
        }
        if !any {
            skipped.push(dir.clone());
        }
    }
    (found, skipped)
}

/// Regular files under `base` (hidden entries and symlinks skipped, at most `max_depth` folders
/// deep) whose path relative to `base` passes `keep`, sorted, as (path, relative path).
pub fn walk_files(base: &Path, max_depth: usize, keep: &dyn Fn(&str) -> bool) -> std::io::Result<Vec<(PathBuf, String)>> {
    fn go(
        base: &Path,
        dir: &Path,
        depth: usize,
        max_depth: usize,
        keep: &dyn Fn(&str) -> bool,
        out: &mut Vec<(PathBuf, String)>,
    ) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let ty = entry.file_type()?;
            if ty.is_dir() && depth < max_depth {
                go(base, &path, depth + 1, max_depth, keep, out)?;
            } else if ty.is_file() {
                let rel = path.strip_prefix(base).map(|r| r.to_string_lossy().replace('\\', "/")).unwrap_or_default();
                if keep(&rel) {
                    out.push((path.clone(), rel));
                }
            }
        }
        Ok(())
    }
    let mut out = vec![];
    go(base, base, 0, max_depth, keep, &mut out)?;
    out.sort();
    Ok(out)
}

/// Logs through the host (a no-op in native unit tests, which have no host).
pub fn log(warn: bool, message: &str) {
    #[cfg(target_os = "wasi")]
    {
        if warn {
            sam_plugin::source::warn(message)
        } else {
            sam_plugin::source::info(message)
        }
    }
    #[cfg(not(target_os = "wasi"))]
    {
        let _ = (warn, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_resolve_against_grants() {
        let granted =
            vec!["/home/me/.claude".to_string(), "/home/me/.config/claude/projects/-home-me-app".to_string(), "/data".to_string()];
        let (dirs, skipped) =
            resolve_dirs(&["~/.claude/projects".into(), "~/.config/claude/projects".into(), "~/other".into(), "/abs".into()], &granted);
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/home/me/.claude/projects"),
                PathBuf::from("/home/me/.config/claude/projects/-home-me-app"),
                PathBuf::from("/abs")
            ]
        );
        assert_eq!(skipped, vec!["~/other".to_string()]);
    }

    #[test]
    fn walk_skips_hidden_and_sorts() {
        let dir = std::env::temp_dir().join(format!("grants-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b/.git")).unwrap();
        std::fs::create_dir_all(dir.join("a/deep/deeper")).unwrap();
        for f in ["b/x.md", "b/.git/y.md", "a/z.md", "a/deep/deeper/w.md", ".hidden.md", "top.txt"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let files = walk_files(&dir, 1, &|rel| rel.ends_with(".md")).unwrap();
        let rels: Vec<&str> = files.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(rels, vec!["a/z.md", "b/x.md"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
