//! The git capability's reading of history: pages read on several threads or ahead of the
//! plugin equal pages read one commit after the other.

use super::*;
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
    let one = read_all(&mut repo.walk_with_threads(&opts, 1, false).unwrap(), 256);
    assert_eq!(one.len(), 300);
    assert!(!one.iter().any(|c| c.contains("Cargo.lock")), "skipped paths are left out");
    assert!(one.iter().any(|c| c.contains("binary: true")));
    for change in ["Added", "Deleted", "Renamed", "Modified"] {
        assert!(one.iter().any(|c| c.contains(change)), "the history has a {change} change");
    }
    assert!(one.iter().any(|c| c.contains("patch-truncated: true")));
    for (threads, ahead, page) in [(3, false, 256), (3, false, 100), (2, false, 1024), (8, false, 64), (1, true, 256), (1, true, 7), (3, true, 100)] {
        let mut walk = repo.walk_with_threads(&opts, threads, ahead).unwrap();
        assert_eq!(walk.remaining(), 300);
        assert_eq!(read_all(&mut walk, page), one, "{threads} threads, ahead: {ahead}, pages of {page}");
        assert_eq!(walk.remaining(), 0);
    }
    // A walk dropped half way stops its reader (the next walk is unaffected).
    let mut walk = repo.walk_with_threads(&opts, 1, true).unwrap();
    assert_eq!(walk.next_page(10).unwrap().len(), 10);
    drop(walk);
    assert_eq!(read_all(&mut repo.walk_with_threads(&opts, 1, true).unwrap(), 256), one);
}
