//! The `git` capability and the bundled `git` source plugin on a repository the test creates with
//! the git CLI: commits including a merge, a binary file, a huge diff, a rename, a lockfile and a
//! non-UTF-8 message.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use brain::capability::git::GitRepo;
use brain::example::Example;
use brain::plugin::bindings::source::sam::plugin::git::{Change, WalkOptions};
use brain::plugin::{Grants, Limits, PluginError, PluginHost, PluginRef};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git CLI");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit_all(dir: &Path, msg: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
}

/// A repository with 8 non-merge commits and 1 merge.
fn make_repo(root: &Path) -> PathBuf {
    let repo = root.join("sam");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "# Sam\n\nA project.\n").unwrap();
    std::fs::write(repo.join("src/main.rs"), "fn main() {\n    println!(\"hi\");\n}\n").unwrap();
    commit_all(&repo, "Initial commit");
    std::fs::write(repo.join("src/main.rs"), "fn main() {\n    println!(\"hello\");\n    run();\n}\n\nfn run() {}\n").unwrap();
    commit_all(&repo, "Say hello and run");
    // A branch, merged back with a merge commit.
    git(&repo, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(repo.join("src/feature.rs"), "pub fn feature() -> u32 {\n    42\n}\n").unwrap();
    commit_all(&repo, "Add the feature module");
    git(&repo, &["checkout", "-q", "main"]);
    std::fs::write(repo.join("README.md"), "# Sam\n\nA project that says hello.\n").unwrap();
    commit_all(&repo, "Describe the project");
    git(&repo, &["merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature"]);
    // A binary file.
    let mut png = vec![0x89, b'P', b'N', b'G', 0, 0, 0, 13];
    png.extend((0..2000u32).map(|i| (i % 251) as u8));
    std::fs::write(repo.join("logo.png"), png).unwrap();
    commit_all(&repo, "Add the logo");
    // A huge diff.
    let big: String = (0..20_000).map(|i| format!("line {i} of generated-but-not-named-so data\n")).collect();
    std::fs::write(repo.join("data.txt"), big).unwrap();
    commit_all(&repo, "Add the big data table");
    // A rename plus a lockfile change (the lockfile is skipped by default).
    git(&repo, &["mv", "src/feature.rs", "src/features.rs"]);
    std::fs::write(repo.join("Cargo.lock"), "# lock\nversion = 3\n").unwrap();
    commit_all(&repo, "Rename feature to features");
    // A message that is not UTF-8.
    std::fs::write(repo.join("src/main.rs"), "fn main() {}\n").unwrap();
    git(&repo, &["add", "-A"]);
    let msg = repo.join(".git/MSG");
    std::fs::write(&msg, b"Simplify main \xff\xfe caf\xe9\n").unwrap();
    git(&repo, &["-c", "i18n.commitEncoding=latin1", "commit", "-q", "-F", msg.to_str().unwrap()]);
    repo
}

fn non_merge_ids(repo: &Path, range: &str) -> BTreeSet<String> {
    git(repo, &["rev-list", "--no-merges", range]).lines().map(str::to_string).collect()
}

fn opts(tip: &str) -> WalkOptions {
    WalkOptions { tip: tip.into(), hide: vec![], max_patch_bytes: 4000, skip_paths: vec![], include_merges: false }
}

#[test]
fn capability_reads_history() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = make_repo(tmp.path());
    let repo = GitRepo::open(&repo_dir).unwrap();
    assert_eq!(repo.name(), "sam");
    let head = git(&repo_dir, &["rev-parse", "HEAD"]);
    assert_eq!(repo.resolve("HEAD").unwrap().to_string(), head);
    assert_eq!(repo.resolve("main").unwrap().to_string(), head);
    assert!(repo.resolve("no-such-branch").is_err());

    let mut walk = repo.walk(&opts("HEAD")).unwrap();
    let mut commits = Vec::new();
    loop {
        let page = walk.next_page(3).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        commits.extend(page);
    }
    let ids: BTreeSet<String> = commits.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, non_merge_ids(&repo_dir, "HEAD"));
    assert_eq!(commits.len(), 8);
    assert!(commits.iter().all(|c| c.parents.len() <= 1));
    assert_eq!(commits[0].id, head, "newest first");

    let by_msg = |m: &str| commits.iter().find(|c| c.message.starts_with(m)).unwrap_or_else(|| panic!("no commit {m}"));
    // Line counts.
    let hello = by_msg("Say hello");
    assert_eq!(hello.files.len(), 1);
    let f = &hello.files[0];
    assert_eq!((f.path.as_str(), f.change, f.insertions, f.deletions), ("src/main.rs", Change::Modified, 4, 1));
    assert!(hello.patch.contains("+    println!(\"hello\");") && hello.patch.contains("-    println!(\"hi\");"), "{}", hello.patch);
    assert!(!hello.patch_truncated);
    assert_eq!(hello.author.email, "ada@example.com");
    assert_eq!(hello.author.name, "Ada Lovelace");
    assert!(hello.author.time > 1_600_000_000);
    // Root commit: everything added.
    let init = by_msg("Initial commit");
    assert!(init.parents.is_empty());
    assert_eq!(init.files.iter().filter(|f| f.change == Change::Added).count(), 2);
    // Binary.
    let logo = by_msg("Add the logo");
    assert!(logo.files[0].binary && logo.files[0].insertions == 0, "{:?}", logo.files);
    assert!(logo.patch.contains("Binary files"), "{}", logo.patch);
    // Huge diff: counted fully, patch bounded.
    let big = by_msg("Add the big data table");
    assert_eq!(big.files[0].insertions, 20_000);
    assert!(big.patch.len() <= 4000 && big.patch_truncated, "{}", big.patch.len());
    // Rename.
    let ren = by_msg("Rename feature");
    let r = ren.files.iter().find(|f| f.change == Change::Renamed).expect("a rename");
    assert_eq!((r.path.as_str(), r.old_path.as_deref()), ("src/features.rs", Some("src/feature.rs")));
    // Non-UTF-8 message: decoded lossily.
    let odd = by_msg("Simplify main");
    assert!(odd.message.contains('\u{fffd}'), "{:?}", odd.message);

    // Skip globs drop paths from files and patch.
    let mut o = opts("HEAD");
    o.skip_paths = vec!["*.lock".into(), "data.txt".into()];
    let commits = repo.walk(&o).unwrap().next_page(100).unwrap();
    assert!(commits.iter().all(|c| c.files.iter().all(|f| f.path != "Cargo.lock" && f.path != "data.txt")));
    assert!(commits.iter().any(|c| c.message.starts_with("Add the big") && c.files.is_empty()));

    // Merges on request; no patch when max-patch-bytes is 0.
    let mut o = opts("HEAD");
    o.include_merges = true;
    o.max_patch_bytes = 0;
    let all = repo.walk(&o).unwrap().next_page(100).unwrap();
    assert_eq!(all.len(), 9);
    assert!(all.iter().all(|c| c.patch.is_empty()));

    // Hide: only what is newer than an old tip.
    let old_tip = by_msg("Add the logo").id.clone();
    let mut o = opts("HEAD");
    o.hide = vec![old_tip.clone(), "no-longer-exists".into()];
    let newer = repo.walk(&o).unwrap().next_page(100).unwrap();
    let ids: BTreeSet<String> = newer.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, non_merge_ids(&repo_dir, &format!("{old_tip}..HEAD")));
    assert_eq!(ids.len(), 3);
}

fn host(cache: &Path) -> PluginHost {
    PluginHost::new(cache, Limits { memory_bytes: 256 << 20, call_timeout: Duration::from_secs(30) }).unwrap()
}

/// What a run of the git source produced: examples, discards, last checkpoint.
type Collected = (Vec<Example>, Vec<(String, u32)>, Option<String>);

/// Runs the bundled git source to the end.
fn collect(host: &PluginHost, grants: &Grants, config: &serde_json::Value, checkpoint: Option<&str>) -> Result<Collected, PluginError> {
    let mut s = host.open_source("sam-commits", &PluginRef::Bundled("git".into()), grants, &config.to_string(), checkpoint)?;
    let (mut ex, mut disc, mut cp) = (Vec::new(), Vec::new(), checkpoint.map(str::to_string));
    while let Some(b) = s.next(4)? {
        assert!(b.examples.len() <= 4);
        ex.extend(b.examples);
        disc.extend(b.discarded);
        if b.checkpoint.is_some() {
            cp = b.checkpoint;
        }
    }
    Ok((ex, disc, cp))
}

#[test]
fn git_plugin_collects_incrementally() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = make_repo(tmp.path());
    let host = host(&tmp.path().join("cache"));
    let grants = Grants { git: vec![tmp.path().to_path_buf()], ..Default::default() };
    let config = serde_json::json!({ "repos": [repo_dir.to_str().unwrap()] });

    let (examples, discards, cp) = collect(&host, &grants, &config, None).unwrap();
    let expected: BTreeSet<String> = non_merge_ids(&repo_dir, "HEAD").iter().map(|id| format!("sam@{id}")).collect();
    let got: BTreeSet<String> = examples.iter().map(|e| e.provenance.clone()).collect();
    assert_eq!(got, expected, "one example per non-merge commit");
    assert_eq!(examples.len(), 8);
    assert!(discards.is_empty(), "{discards:?}");
    for e in &examples {
        assert_eq!(e.task, "commit-message");
        assert_eq!(e.kind, brain::example::Kind::Chat);
        assert_eq!(e.messages.len(), 2);
        assert!(e.messages[0].content.contains("`sam`"));
        assert_eq!(e.metadata["repo"], "sam");
    }
    let find = |m: &str| examples.iter().find(|e| e.messages[1].content.starts_with(m)).unwrap();
    assert!(find("Add the logo").messages[0].content.contains("logo.png (binary)"));
    let big = &find("Add the big").messages[0].content;
    assert!(big.contains("Diff (truncated)") && big.len() < 4000 + 1000, "{}", big.len());
    let ren = &find("Rename feature").messages[0].content;
    assert!(!ren.contains("Cargo.lock"), "lockfiles are skipped by default: {ren}");
    assert!(ren.contains("src/feature.rs → src/features.rs"), "{ren}");
    assert!(find("Simplify main").messages[1].content.contains('\u{fffd}'));

    // Second collect from the checkpoint: nothing new.
    let cp = cp.expect("a checkpoint");
    let (again, _, cp2) = collect(&host, &grants, &config, Some(&cp)).unwrap();
    assert!(again.is_empty(), "{again:?}");
    // One new commit: exactly one new example.
    std::fs::write(repo_dir.join("NEW.md"), "new\n").unwrap();
    commit_all(&repo_dir, "Add NEW.md");
    let (new, _, _) = collect(&host, &grants, &config, cp2.as_deref()).unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].messages[1].content, "Add NEW.md");

    // The author filter.
    let filtered = serde_json::json!({ "repos": [repo_dir.to_str().unwrap()], "authors": ["someone@else.org"] });
    let (none, discards, _) = collect(&host, &grants, &filtered, None).unwrap();
    assert!(none.is_empty());
    assert_eq!(discards.iter().map(|d| d.1).sum::<u32>(), 9);
}

#[test]
fn git_outside_the_grant_is_denied() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = make_repo(tmp.path());
    let other = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let host = host(&tmp.path().join("cache"));
    let config = serde_json::json!({ "repos": [repo_dir.to_str().unwrap()] });
    for grants in [Grants { git: vec![other.clone()], ..Default::default() }, Grants::default()] {
        let err = collect(&host, &grants, &config, None).expect_err("denied");
        assert!(matches!(err, PluginError::Denied { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("sam-commits") && msg.contains("git") && msg.contains(repo_dir.to_str().unwrap()), "{msg}");
    }
    // `..` does not escape a grant.
    let sneaky = format!("{}/../sam", other.display());
    let grants = Grants { git: vec![other.clone()], ..Default::default() };
    let err = collect(&host, &grants, &serde_json::json!({ "repos": [sneaky] }), None).err().unwrap();
    assert!(matches!(err, PluginError::Denied { .. }), "{err}");
    // Bad config: a clear plugin error.
    let grants = Grants { git: vec![tmp.path().to_path_buf()], ..Default::default() };
    let err = collect(&host, &grants, &serde_json::json!({ "repos": [] }), None).err().unwrap();
    assert!(matches!(err, PluginError::Plugin { .. }) && err.to_string().contains("repos"), "{err}");
}
