//! The `git` capability: read-only history of granted repositories, read natively with gix.
//!
//! Plugins cannot read git objects themselves (gix memory-maps packs, which wasm32-wasip2
//! cannot), so the host walks history and diffs trees here and hands commits over in pages.
//! Tree diffs are computed entry by entry (exact-content renames are detected), line counts and
//! patch text with imara-diff. Binary files (a NUL byte in the first 8000 bytes, git's rule) get no
//! line counts and a one-line patch note.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};
use gix::bstr::{BString, ByteSlice};
use gix::objs::tree::EntryKind;
use gix::ObjectId;
use imara_diff::{Algorithm, BasicLineDiffPrinter, Diff, InternedInput, UnifiedDiffConfig};

use crate::plugin::bindings::source::sam::plugin::git::{Change, Commit, FileChange, Signature, WalkOptions};

mod bounds;
mod confine;
mod host;
mod pages;
use bounds::{check_deadline, check_rev, DEADLINE_EVERY, MAX_WARNINGS};
pub use bounds::{MAX_HIDE, MAX_REV, MAX_SKIP_PATHS, PAST_DEADLINE};
pub use pages::GitWalk;

/// Most commits one `next` call returns, whatever the guest asks for.
pub const MAX_PAGE: u32 = 1024;
/// Blobs larger than this are counted by lines but not diffed.
const MAX_DIFF_BLOB: usize = 8 * 1024 * 1024;
/// git's binary heuristic looks at this many leading bytes.
const BINARY_PROBE: usize = 8000;

/// An open repository (the host side of the WIT `repository` resource).
pub struct GitRepo {
    repo: gix::Repository,
    name: String,
    path: PathBuf,
}

/// Reads and diffs commits: one repository handle (gix handles are cheap clones sharing the
/// opened packs; each has its own caches) and the caches that make a newest-first walk cheap.
pub(crate) struct Reader {
    repo: gix::Repository,
    max_patch: usize,
    skip: Option<GlobSet>,
    /// Trees and blobs read recently: walking newest-first, a commit's "old" side is the next
    /// commit's "new" side, so each object would otherwise be read and inflated twice.
    cache: RefCell<ObjCache>,
    /// The parent commit read last (for its tree), kept whole: in a linear newest-first walk it
    /// is the next commit to read. This replaces gix's object cache, which copied every object.
    parent: RefCell<Option<(ObjectId, Vec<u8>)>>,
}

/// A tree's entries sorted by name (byte order), their names in one buffer: one allocation per
/// tree instead of one per entry, and two trees compare by a merge of their sorted entries.
#[derive(Default)]
struct Tree {
    names: Vec<u8>,
    entries: Vec<TreeEntry>,
}

struct TreeEntry {
    name: std::ops::Range<u32>,
    kind: EntryKind,
    id: ObjectId,
}

impl Tree {
    fn name(&self, e: &TreeEntry) -> &[u8] {
        &self.names[e.name.start as usize..e.name.end as usize]
    }
}

#[derive(Default)]
struct ObjCache {
    trees: HashMap<ObjectId, Arc<Tree>>,
    blobs: HashMap<ObjectId, Arc<Vec<u8>>>,
    blob_bytes: usize,
}

const CACHE_TREES: usize = 4096;
const CACHE_BLOB_BYTES: usize = 4 << 20;
const CACHE_BLOB_MAX: usize = 1 << 20;

fn err(context: &str, e: impl std::fmt::Display) -> String {
    format!("{context}: {e}")
}

impl GitRepo {
    /// Opens the repository at `path` (its work tree or its git dir), ignoring the user's and
    /// the system's git configuration and environment.
    pub fn open(path: &Path) -> Result<GitRepo, String> {
        let mut repo = gix::open_opts(path, gix::open::Options::isolated())
            .map_err(|e| err(&format!("`{}` is not a git repository", path.display()), e))?;
        repo.object_cache_size_if_unset(8 * 1024 * 1024);
        let base = repo.workdir().map(Path::to_path_buf).unwrap_or_else(|| {
            let gd = repo.git_dir();
            if gd.file_name().is_some_and(|n| n == ".git") {
                gd.parent().unwrap_or(gd).to_path_buf()
            } else {
                gd.to_path_buf()
            }
        });
        let name = base
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".git").to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "repository".to_string());
        Ok(GitRepo { repo, name, path: path.to_path_buf() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A revision (`HEAD`, a branch, a tag, an id) peeled to its commit.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId, String> {
        check_rev(rev)?;
        let id = self
            .repo
            .rev_parse_single(rev)
            .map_err(|e| err(&format!("cannot resolve `{rev}` in {}", self.name), e))?;
        let not_commit = |e: &dyn std::fmt::Display| err(&format!("`{rev}` in {} is not a commit", self.name), e);
        let commit = id
            .object()
            .map_err(|e| not_commit(&e))?
            .peel_to_commit()
            .map_err(|e| not_commit(&e))?;
        Ok(commit.id)
    }

    /// Lists the commits to visit, newest first. Hide entries that no longer resolve (e.g. a
    /// checkpoint after a force-push) are ignored with a warning. Commits are then read ahead
    /// of the plugin on another thread when the machine has two cores or more, with pages
    /// split between readers on all cores but one (see [`GitWalk`]).
    pub fn walk(&self, opts: &WalkOptions) -> Result<GitWalk, String> {
        self.walk_until(opts, None)
    }

    /// [`GitRepo::walk`] that gives up once `deadline` has passed (checked between resolutions
    /// and every [`DEADLINE_EVERY`] commits listed).
    pub fn walk_until(&self, opts: &WalkOptions, deadline: Option<Instant>) -> Result<GitWalk, String> {
        self.walk_logged(opts, deadline, &mut |w| tracing::warn!("{w}"))
    }

    /// [`GitRepo::walk_until`] handing its warnings (which quote the plugin's revisions) to
    /// `warn`, at most [`MAX_WARNINGS`] and a summary.
    pub fn walk_logged(&self, opts: &WalkOptions, deadline: Option<Instant>, warn: &mut dyn FnMut(String)) -> Result<GitWalk, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.walk_with_threads(opts, cores.saturating_sub(1), cores >= 2, deadline, warn)
    }

    fn walk_with_threads(
        &self,
        opts: &WalkOptions,
        threads: usize,
        ahead: bool,
        deadline: Option<Instant>,
        warn: &mut dyn FnMut(String),
    ) -> Result<GitWalk, String> {
        if opts.hide.len() > MAX_HIDE {
            return Err(format!("{} hide entries, over the limit of {MAX_HIDE} per walk", opts.hide.len()));
        }
        if opts.skip_paths.len() > MAX_SKIP_PATHS {
            return Err(format!("{} skip-paths patterns, over the limit of {MAX_SKIP_PATHS} per walk", opts.skip_paths.len()));
        }
        let tip = self.resolve(if opts.tip.is_empty() { "HEAD" } else { &opts.tip })?;
        let mut hidden = Vec::new();
        let mut ignored = 0usize;
        for h in &opts.hide {
            check_deadline(deadline)?;
            match self.resolve(h) {
                Ok(id) => hidden.push(id),
                Err(e) => {
                    ignored += 1;
                    if ignored <= MAX_WARNINGS {
                        warn(format!("git walk of {}: hide entry ignored: {e}", self.name));
                    }
                }
            }
        }
        if ignored > MAX_WARNINGS {
            warn(format!("git walk of {}: {} more hide entries ignored", self.name, ignored - MAX_WARNINGS));
        }
        let walk = self
            .repo
            .rev_walk([tip])
            .sorting(gix::revision::walk::Sorting::ByCommitTime(Default::default()))
            .with_hidden(hidden)
            .all()
            .map_err(|e| err(&format!("cannot walk {}", self.name), e))?;
        let mut ids = Vec::new();
        for (n, info) in walk.enumerate() {
            if n % DEADLINE_EVERY == 0 {
                check_deadline(deadline)?;
            }
            let info = info.map_err(|e| err(&format!("walking {}", self.name), e))?;
            if !opts.include_merges && info.parent_ids.len() > 1 {
                continue;
            }
            ids.push(info.id);
        }
        let skip = build_globs(&opts.skip_paths)?;
        let threads = threads.clamp(1, pages::MAX_THREADS);
        let readers = (0..threads)
            .map(|_| {
                let mut repo = self.repo.clone();
                repo.object_cache_size(0);
                // A delta-base cache: walking newest-first through packs whose deltas point to
                // older bases (fast-import, some servers) otherwise re-inflates whole chains per
                // blob. 16 MiB: on bench/collect.sh's repository 64 MiB cost ~5% more CPU
                // (memory first touched) and 1 MiB ~20% more (chains decoded again).
                repo.objects.set_pack_cache(|| Box::new(gix::odb::pack::cache::lru::MemoryCappedHashmap::new(16 << 20)));
                Reader {
                    repo,
                    max_patch: opts.max_patch_bytes as usize,
                    skip: skip.clone(),
                    cache: RefCell::new(ObjCache::default()),
                    parent: RefCell::new(None),
                }
            })
            .collect();
        Ok(GitWalk::new(ids, readers, ahead))
    }
}

fn build_globs(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| err(&format!("bad skip-paths glob `{p}`"), e))?);
    }
    b.build().map(Some).map_err(|e| err("bad skip-paths globs", e))
}

/// One changed path before line counting.
struct RawChange {
    path: String,
    old_path: Option<String>,
    change: Change,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
}

impl Reader {
    pub(crate) fn read_commit(&self, id: ObjectId) -> Result<Commit, String> {
        let ctx = || format!("reading commit {id}");
        let data = match self.parent.borrow_mut().take() {
            Some((p, data)) if p == id => data,
            _ => self.commit_data(id).map_err(|e| err(&ctx(), e))?,
        };
        let decoded = gix::objs::CommitRef::from_bytes(&data, self.repo.object_hash()).map_err(|e| err(&ctx(), e))?;
        let message = decoded.message.to_str_lossy().into_owned();
        let author = signature(decoded.author().map_err(|e| err(&ctx(), e))?);
        let committer = signature(decoded.committer().map_err(|e| err(&ctx(), e))?);
        let parents: Vec<ObjectId> = decoded.parents().collect();
        let new_tree = decoded.tree();
        let old_tree = match parents.first() {
            Some(p) => {
                let pdata = self.commit_data(*p).map_err(|e| err(&ctx(), e))?;
                let tree = gix::objs::CommitRefIter::from_bytes(&pdata, self.repo.object_hash()).tree_id().map_err(|e| err(&ctx(), e))?;
                *self.parent.borrow_mut() = Some((*p, pdata));
                Some(tree)
            }
            None => None,
        };

        let mut raw = Vec::new();
        self.diff_trees(old_tree, Some(new_tree), &mut BString::default(), &mut raw)
            .map_err(|e| err(&ctx(), e))?;
        detect_renames(&mut raw);
        if let Some(skip) = &self.skip {
            raw.retain(|c| !skipped(skip, &c.path) && !c.old_path.as_deref().is_some_and(|p| skipped(skip, p)));
        }

        let mut files = Vec::with_capacity(raw.len());
        let mut patch = String::new();
        let mut truncated = false;
        for c in &raw {
            let (fc, text) = self.file_change(c, self.max_patch > 0 && patch.len() < self.max_patch)?;
            files.push(fc);
            if let Some(text) = text {
                let room = self.max_patch.saturating_sub(patch.len());
                if text.len() > room {
                    patch.push_str(crate::capability::truncate_str(&text, room));
                    truncated = true;
                } else {
                    patch.push_str(&text);
                }
            } else if self.max_patch > 0 && patch.len() >= self.max_patch {
                truncated = true;
            }
        }
        Ok(Commit {
            id: id.to_string(),
            message,
            author,
            committer,
            parents: parents.iter().map(|p| p.to_string()).collect(),
            files,
            patch,
            patch_truncated: truncated,
        })
    }

    /// A commit object's bytes (a copy of exactly its size; gix keeps its read buffer).
    fn commit_data(&self, id: ObjectId) -> Result<Vec<u8>, String> {
        Ok(self.repo.find_commit(id).map_err(|e| e.to_string())?.data.clone())
    }

    fn tree_entries(&self, id: Option<ObjectId>) -> Result<Arc<Tree>, String> {
        let Some(id) = id else { return Ok(Arc::default()) };
        if let Some(t) = self.cache.borrow().trees.get(&id) {
            return Ok(t.clone());
        }
        let tree = self.repo.find_tree(id).map_err(|e| e.to_string())?;
        let mut out = Tree { names: Vec::with_capacity(tree.data.len()), entries: Vec::new() };
        for entry in tree.iter() {
            let entry = entry.map_err(|e| e.to_string())?;
            let start = out.names.len() as u32;
            out.names.extend_from_slice(entry.filename());
            out.entries.push(TreeEntry { name: start..out.names.len() as u32, kind: entry.mode().kind(), id: entry.oid().to_owned() });
        }
        // git orders a directory as if its name ended in `/`; byte order is what the merge needs.
        let names = &out.names;
        let key = |e: &TreeEntry| &names[e.name.start as usize..e.name.end as usize];
        if !out.entries.windows(2).all(|w| key(&w[0]) < key(&w[1])) {
            let mut entries = std::mem::take(&mut out.entries);
            entries.sort_unstable_by(|x, y| out.name(x).cmp(out.name(y)));
            out.entries = entries;
        }
        let out = Arc::new(out);
        let mut cache = self.cache.borrow_mut();
        if cache.trees.len() >= CACHE_TREES {
            cache.trees.clear();
        }
        cache.trees.insert(id, out.clone());
        Ok(out)
    }

    /// Recursively compares two trees; submodule entries are ignored.
    fn diff_trees(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        prefix: &mut BString,
        out: &mut Vec<RawChange>,
    ) -> Result<(), String> {
        if old == new {
            return Ok(());
        }
        let a = self.tree_entries(old)?;
        let b = self.tree_entries(new)?;
        // Both trees are sorted by name: walk them side by side, in name order.
        let (mut i, mut j) = (0, 0);
        loop {
            let (x, y) = (a.entries.get(i), b.entries.get(j));
            let order = match (x, y) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => a.name(x).cmp(b.name(y)),
            };
            let (x, y, name) = match order {
                std::cmp::Ordering::Less => (x, None, a.name(&a.entries[i])),
                std::cmp::Ordering::Greater => (None, y, b.name(&b.entries[j])),
                std::cmp::Ordering::Equal => (x, y, a.name(&a.entries[i])),
            };
            if order.is_le() {
                i += 1;
            }
            if order.is_ge() {
                j += 1;
            }
            // Submodule entries are ignored.
            let l = x.map(|e| (e.kind, e.id)).filter(|(k, _)| *k != EntryKind::Commit);
            let r = y.map(|e| (e.kind, e.id)).filter(|(k, _)| *k != EntryKind::Commit);
            if l == r {
                continue; // the same tree or blob (or nothing) on both sides
            }
            let len = prefix.len();
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(name);
            let is_tree = |e: Option<(EntryKind, ObjectId)>| e.is_some_and(|(k, _)| k == EntryKind::Tree);
            let blob = |e: Option<(EntryKind, ObjectId)>| e.filter(|(k, _)| *k != EntryKind::Tree).map(|(_, id)| id);
            // Trees on either side: recurse (a tree replacing a blob is a delete plus adds).
            if is_tree(l) || is_tree(r) {
                let lt = l.filter(|_| is_tree(l)).map(|(_, id)| id);
                let rt = r.filter(|_| is_tree(r)).map(|(_, id)| id);
                self.diff_trees(lt, rt, prefix, out)?;
            }
            let path = || prefix.to_str_lossy().into_owned();
            match (blob(l), blob(r)) {
                (Some(x), Some(y)) if x == y && l.map(|e| e.0) == r.map(|e| e.0) => {}
                (Some(x), Some(y)) => {
                    out.push(RawChange { path: path(), old_path: None, change: Change::Modified, old: Some(x), new: Some(y) })
                }
                (Some(x), None) => {
                    out.push(RawChange { path: path(), old_path: None, change: Change::Deleted, old: Some(x), new: None })
                }
                (None, Some(y)) => {
                    out.push(RawChange { path: path(), old_path: None, change: Change::Added, old: None, new: Some(y) })
                }
                (None, None) => {}
            }
            prefix.truncate(len);
        }
        Ok(())
    }

    fn blob(&self, id: Option<ObjectId>) -> Result<Arc<Vec<u8>>, String> {
        let Some(id) = id else { return Ok(Arc::default()) };
        if let Some(b) = self.cache.borrow().blobs.get(&id) {
            return Ok(b.clone());
        }
        // A copy of exactly the blob's size; the read buffer goes back to gix's pool for the next
        // read (taking it would make every read grow a fresh buffer from nothing).
        let data = Arc::new(self.repo.find_blob(id).map_err(|e| e.to_string())?.data.clone());
        if data.len() <= CACHE_BLOB_MAX {
            let mut cache = self.cache.borrow_mut();
            if cache.blob_bytes + data.len() > CACHE_BLOB_BYTES {
                cache.blobs.clear();
                cache.blob_bytes = 0;
            }
            cache.blob_bytes += data.len();
            cache.blobs.insert(id, data.clone());
        }
        Ok(data)
    }

    /// Line counts for one change, and its patch text when `want_patch`.
    fn file_change(&self, c: &RawChange, want_patch: bool) -> Result<(FileChange, Option<String>), String> {
        let old = self.blob(c.old)?;
        let new = self.blob(c.new)?;
        let binary = is_binary(&old) || is_binary(&new);
        let old_path = c.old_path.as_deref().unwrap_or(&c.path);
        let mut fc = FileChange {
            path: c.path.clone(),
            old_path: c.old_path.clone(),
            change: c.change,
            insertions: 0,
            deletions: 0,
            binary,
        };
        let header = |text: &mut String| {
            let _ = writeln!(text, "diff --git a/{old_path} b/{}", c.path);
            match c.change {
                Change::Added => text.push_str("new file\n"),
                Change::Deleted => text.push_str("deleted file\n"),
                Change::Renamed => {
                    let _ = writeln!(text, "rename from {old_path}\nrename to {}", c.path);
                }
                Change::Modified => {}
            }
        };
        if binary {
            let text = want_patch.then(|| {
                let mut t = String::new();
                header(&mut t);
                let _ = writeln!(t, "Binary files a/{old_path} and b/{} differ", c.path);
                t
            });
            return Ok((fc, text));
        }
        let before = utf8_lossy(&old);
        let after = utf8_lossy(&new);
        if old.len() > MAX_DIFF_BLOB || new.len() > MAX_DIFF_BLOB {
            fc.deletions = count_lines(&before);
            fc.insertions = count_lines(&after);
            let text = want_patch.then(|| {
                let mut t = String::new();
                header(&mut t);
                t.push_str("(file too large to diff)\n");
                t
            });
            return Ok((fc, text));
        }
        let input = InternedInput::new(before.as_ref(), after.as_ref());
        let mut diff = Diff::compute(Algorithm::Histogram, &input);
        fc.insertions = diff.count_additions();
        fc.deletions = diff.count_removals();
        if !want_patch || (fc.insertions == 0 && fc.deletions == 0) {
            return Ok((fc, None));
        }
        diff.postprocess_lines(&input);
        let mut text = String::with_capacity(256 + 64 * (fc.insertions + fc.deletions) as usize);
        header(&mut text);
        let a = if c.old.is_some() { format!("a/{old_path}") } else { "/dev/null".into() };
        let b = if c.new.is_some() { format!("b/{}", c.path) } else { "/dev/null".into() };
        let _ = writeln!(text, "--- {a}\n+++ {b}");
        let printer = BasicLineDiffPrinter(&input.interner);
        let _ = write!(text, "{}", diff.unified_diff(&printer, UnifiedDiffConfig::default(), &input));
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok((fc, Some(text)))
    }
}

/// `String::from_utf8_lossy`, with the (fast) validation of valid UTF-8 first: nearly all text is.
fn utf8_lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn count_lines(s: &str) -> u32 {
    let n = s.lines().count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(BINARY_PROBE)].contains(&0)
}

/// A glob matches the whole path or its file name (`Cargo.lock` skips `a/b/Cargo.lock`).
fn skipped(set: &GlobSet, path: &str) -> bool {
    if set.is_match(path) {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    name != path && set.is_match(name)
}

/// Pairs a deleted and an added path with the same content into one rename.
fn detect_renames(changes: &mut Vec<RawChange>) {
    let mut deleted: BTreeMap<ObjectId, Vec<usize>> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        if c.change == Change::Deleted {
            if let Some(id) = c.old {
                deleted.entry(id).or_default().push(i);
            }
        }
    }
    if deleted.is_empty() {
        return;
    }
    let mut remove = Vec::new();
    for i in 0..changes.len() {
        if changes[i].change != Change::Added {
            continue;
        }
        let Some(id) = changes[i].new else { continue };
        if let Some(list) = deleted.get_mut(&id) {
            if let Some(d) = list.pop() {
                let old_path = changes[d].path.clone();
                let c = &mut changes[i];
                c.change = Change::Renamed;
                c.old_path = Some(old_path);
                c.old = Some(id);
                remove.push(d);
            }
        }
    }
    remove.sort_unstable();
    for d in remove.into_iter().rev() {
        changes.remove(d);
    }
}

fn signature(s: gix::actor::SignatureRef<'_>) -> Signature {
    let time = s.time().unwrap_or_default();
    Signature {
        name: s.name.trim().to_str_lossy().into_owned(),
        email: s.email.trim().to_str_lossy().into_owned(),
        time: time.seconds,
        offset_minutes: time.offset / 60,
    }
}

#[cfg(test)]
mod tests;
