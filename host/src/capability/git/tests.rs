//! The git capability's reading of history: pages read on several threads or ahead of the
//! plugin equal pages read one commit after the other.

use super::*;
use crate::capability::Handle;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// A history of `n` commits through `git fast-import`: files edited, added, deleted, renamed
/// (same content), a binary file and a nested directory, so every kind of change appears.
fn repo(dir: &Path, n: usize) -> PathBuf {
    let repo = dir.join("repo");
    let status = Command::new("git").args(["init", "-q", "-b", "main"]).arg(&repo).status().expect("git is installed");
    assert!(status.success());
    let mut stream = String::new();
    let blob = |s: &mut String, path: &str, data: &str| {
        let _ = write!(s, "M 100644 inline {path}\ndata {}\n{data}\n", data.len());
    };
    for c in 0..n {
        let msg = format!("change {c}");
        let _ = write!(stream, "commit refs/heads/main\nauthor A <a@x> {} +0000\ncommitter A <a@x> {} +0000\ndata {}\n{msg}\n", 1_600_000_000 + c, 1_600_000_000 + c, msg.len());
        let f = c % 7;
        let body: String = (0..20).map(|l| if l == c % 20 { format!("line {l} edited in {c}\n") } else { format!("line {l} of file {f}\n") }).collect();
        blob(&mut stream, &format!("src/m{f}.rs"), &body);
        if c % 11 == 3 {
            blob(&mut stream, &format!("deep/a/b/new{c}.txt"), &format!("added in {c}\n"));
        }
        if c % 11 == 8 && c > 8 {
            let _ = writeln!(stream, "D deep/a/b/new{}.txt", c - 5);
        }
        if c % 17 == 9 {
            let _ = writeln!(stream, "R src/m{}.rs src/renamed{c}.rs", (f + 3) % 7);
        }
        if c % 19 == 4 {
            let _ = write!(stream, "M 100644 inline bin{c}.dat\ndata 4\na\0b\n\n");
        }
        if c % 23 == 1 {
            blob(&mut stream, "Cargo.lock", &format!("version {c}\n"));
        }
        stream.push('\n');
    }
    let mut child = Command::new("git").args(["fast-import", "--quiet"]).current_dir(&repo).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stream.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    repo
}

fn read_all(walk: &mut GitWalk, page: u32) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let commits = walk.next_page(page).unwrap();
        if commits.is_empty() {
            return out;
        }
        out.extend(commits.iter().map(|c| format!("{c:?}")));
    }
}

#[test]
fn pages_read_on_several_threads_or_ahead_equal_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::open(&repo(dir.path(), 300)).unwrap();
    let opts = WalkOptions { tip: "HEAD".into(), hide: vec![], max_patch_bytes: 150, skip_paths: vec!["*.lock".into()], include_merges: false };
    let one = read_all(&mut repo.walk_with_threads(&opts, 1, false, None, &mut |_| {}).unwrap(), 256);
    assert_eq!(one.len(), 300);
    assert!(!one.iter().any(|c| c.contains("Cargo.lock")), "skipped paths are left out");
    assert!(one.iter().any(|c| c.contains("binary: true")));
    for change in ["Added", "Deleted", "Renamed", "Modified"] {
        assert!(one.iter().any(|c| c.contains(change)), "the history has a {change} change");
    }
    assert!(one.iter().any(|c| c.contains("patch-truncated: true")));
    for (threads, ahead, page) in [(3, false, 256), (3, false, 100), (2, false, 1024), (8, false, 64), (1, true, 256), (1, true, 7), (3, true, 100)] {
        let mut walk = repo.walk_with_threads(&opts, threads, ahead, None, &mut |_| {}).unwrap();
        assert_eq!(walk.remaining(), 300);
        assert_eq!(read_all(&mut walk, page), one, "{threads} threads, ahead: {ahead}, pages of {page}");
        assert_eq!(walk.remaining(), 0);
    }
    // A walk dropped half way stops its reader (the next walk is unaffected).
    let mut walk = repo.walk_with_threads(&opts, 1, true, None, &mut |_| {}).unwrap();
    assert_eq!(walk.next_page(10).unwrap().len(), 10);
    drop(walk);
    assert_eq!(read_all(&mut repo.walk_with_threads(&opts, 1, true, None, &mut |_| {}).unwrap(), 256), one);
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git is installed");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn alternates_and_worktrees_outside_the_grant_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = repo(&dir.path().join("outside"), 3);
    let granted = std::fs::canonicalize(dir.path()).unwrap().join("granted");
    std::fs::create_dir_all(&granted).unwrap();
    let inside = |p: &Path| p.starts_with(&granted);

    // A repository whose objects come from one outside the grant.
    let borrower = granted.join("borrower");
    git(dir.path(), &["init", "-q", borrower.to_str().unwrap()]);
    let alternates = borrower.join(".git/objects/info/alternates");
    std::fs::write(&alternates, format!("{}\n", outside.join(".git/objects").display())).unwrap();
    let (path, err) = GitRepo::open(&borrower).unwrap().confined(inside).unwrap_err();
    assert!(err.contains("object alternate") && err.contains("outside the plugin's git grants"), "{err}");
    assert_eq!(path, std::fs::canonicalize(outside.join(".git/objects")).unwrap());
    // Relative, through `..`: the same.
    std::fs::write(&alternates, "../../../../outside/repo/.git/objects\n").unwrap();
    assert!(GitRepo::open(&borrower).unwrap().confined(inside).is_err());
    // An alternate inside the grant is fine.
    let lender = repo(&granted.join("lender"), 2);
    std::fs::write(&alternates, format!("{}\n", lender.join(".git/objects").display())).unwrap();
    GitRepo::open(&borrower).unwrap().confined(inside).unwrap();

    // A linked worktree inside the grant of a repository outside it (`.git` file, commondir).
    git(&outside, &["worktree", "add", "-q", granted.join("wt").to_str().unwrap()]);
    let (path, err) = GitRepo::open(&granted.join("wt")).unwrap().confined(inside).unwrap_err();
    assert!(err.contains("outside the plugin's git grants"), "{err}");
    assert!(path.starts_with(std::fs::canonicalize(&outside).unwrap()), "{}", path.display());
    GitRepo::open(&outside).unwrap().confined(|_| true).unwrap();
}

#[test]
fn walks_are_bounded_in_size_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::open(&repo(dir.path(), 40)).unwrap();
    let opts = |tip: &str, hide: Vec<String>| WalkOptions { tip: tip.into(), hide, max_patch_bytes: 100, skip_paths: vec![], include_merges: false };
    // Searching revisions scan every commit message: refused, as tip, hide entry or resolve.
    for rev in [":/change 3", "HEAD^{/change}", ":src/m1.rs"] {
        let err = repo.resolve(rev).unwrap_err();
        assert!(err.contains("not allowed"), "{rev}: {err}");
    }
    assert!(repo.walk(&opts(":/change", vec![])).is_err());
    assert!(repo.resolve(&"a".repeat(MAX_REV + 1)).unwrap_err().contains("limit"));
    let err = repo.walk(&opts("HEAD", vec!["HEAD~1".into(); MAX_HIDE + 1])).err().unwrap();
    assert!(err.contains("hide entries"), "{err}");
    // Unresolvable hide entries are ignored, not fatal, with a bounded number of warnings.
    let mut warnings = Vec::new();
    let mut walk = repo.walk_logged(&opts("HEAD", vec!["nope".into(); 50]), None, &mut |w| warnings.push(w)).unwrap();
    assert_eq!(walk.remaining(), 40);
    assert_eq!(warnings.len(), MAX_WARNINGS + 1, "{warnings:?}");
    assert!(warnings.last().unwrap().contains("45 more hide entries ignored"), "{warnings:?}");
    // A deadline already past stops the walk and its pages.
    let past = Some(Instant::now() - std::time::Duration::from_millis(1));
    assert_eq!(repo.walk_until(&opts("HEAD", vec![]), past).err().unwrap(), PAST_DEADLINE);
    assert_eq!(walk.next_page_until(10, past).unwrap_err(), PAST_DEADLINE);
    assert_eq!(walk.next_page(10).unwrap().len(), 10);
}

#[test]
fn open_handles_are_bounded_per_plugin() {
    let mut h = crate::capability::Handles::default();
    for _ in 0..Handle::GitWalk.limit() {
        h.open(Handle::GitWalk).unwrap();
    }
    let err = h.open(Handle::GitWalk).unwrap_err();
    assert!(err.contains("too many open git walks"), "{err}");
    h.open(Handle::Sqlite).unwrap();
    h.close(Handle::GitWalk);
    h.open(Handle::GitWalk).unwrap();
    assert_eq!(h.count(Handle::GitWalk), Handle::GitWalk.limit());
}
