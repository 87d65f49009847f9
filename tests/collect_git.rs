//! `brain collect` over a real git repository, end to end: every non-merge commit becomes one
//! example, re-collecting adds nothing, a new commit adds one, and `status --json` counts them.

mod common;

use common::*;

/// A repository with the awkward cases: a merge, a binary file, a huge diff, a message that is
/// not UTF-8, a lockfile beside code.
fn awkward_repo(dir: &std::path::Path) {
    init_repo(dir);
    commit(dir, &[("README.md", b"# demo\n")], b"Initial commit\n\nAdd a README.");
    commit(dir, &[("src/lib.rs", b"pub fn one() -> u32 { 1 }\n")], b"Add one()");
    // A binary file (NUL bytes, invalid UTF-8).
    let png: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    commit(dir, &[("assets/logo.png", &png)], b"Add the logo");
    // A huge diff: 2 MB of text.
    let big: String = (0..40_000).map(|i| format!("line {i} of a very large generated file\n")).collect();
    commit(dir, &[("data/big.txt", big.as_bytes())], b"Add a large generated data file");
    // A message in Latin-1 (invalid UTF-8).
    commit(dir, &[("src/lib.rs", b"pub fn one() -> u32 { 1 }\npub fn caf\xc3\xa9() {}\n")], b"Add caf\xe9 helper (Latin-1 message)");
    // A branch merged with a merge commit.
    git(dir, &["checkout", "-q", "-b", "feature"]);
    commit(dir, &[("src/feature.rs", b"pub fn feature() {}\n")], b"Add the feature module");
    git(dir, &["checkout", "-q", "main"]);
    commit(dir, &[("src/lib.rs", b"pub fn one() -> u32 { 1 }\npub fn two() -> u32 { 2 }\n")], b"Add two()");
    git(dir, &["merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature"]);
    assert_eq!(git(dir, &["rev-list", "--count", "--merges", "HEAD"]), "1");
}

#[test]
fn collect_stores_every_non_merge_commit_once_and_is_incremental() {
    let env = Env::new();
    let repo = env.path().join("repo");
    awkward_repo(&repo);
    let expected = non_merge_commits(&repo);
    assert_eq!(expected, 7);
    env.write_config(&git_source("demo-commits", &repo));

    let first = env.run(["collect", "--json"]);
    first.assert_ok();
    let report = first.json();
    let src = &report["sources"][0];
    assert_eq!(src["name"], "demo-commits");
    assert_eq!(src["stored"], expected, "{report:#}");
    assert_eq!(src["received"], expected, "{report:#}");
    assert_eq!(src["errors"], 0);
    assert_eq!(report["failed"], serde_json::json!([]));

    let status = env.status();
    assert_eq!(status["total"], expected);
    assert_eq!(status["by_source"]["demo-commits"], expected);
    assert_eq!(status["by_kind"]["chat"], expected);
    assert_eq!(status["by_status"]["pending"], expected);
    assert_eq!(status["by_task"]["commit-message"], expected);

    // Every example carries its provenance: repo@<full commit id> of a non-merge commit.
    let merges = git(&repo, &["rev-list", "--merges", "HEAD"]);
    let db = env.db();
    let mut stmt = db.prepare("SELECT provenance, source, plugin, messages FROM examples").unwrap();
    let rows: Vec<(String, String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    for (provenance, source, plugin, messages) in &rows {
        let (name, id) = provenance.split_once('@').expect("repo@commit");
        assert_eq!(name, "repo");
        assert_eq!(id.len(), 40, "{provenance}");
        assert!(!merges.contains(id), "a merge commit was collected: {provenance}");
        assert_eq!((source.as_str(), plugin.as_str()), ("demo-commits", "git"));
        let messages: serde_json::Value = serde_json::from_str(messages).unwrap();
        assert_eq!(messages.as_array().map(Vec::len), Some(2), "{messages}");
    }
    let latin1 = rows.iter().find(|r| r.3.contains("helper (Latin-1 message)")).expect("the Latin-1 commit is stored");
    assert!(latin1.3.contains("Add caf\u{fffd} helper"), "invalid bytes replaced: {}", latin1.3);
    assert!(env.count("SELECT max(length(messages)) FROM examples") < 100_000, "the huge diff is bounded");

    // Again: nothing new.
    let second = env.run(["collect", "--json"]);
    second.assert_ok();
    assert_eq!(second.json()["sources"][0]["stored"], 0);
    assert_eq!(env.status()["total"], expected);

    // One new commit: one new example.
    commit(&repo, &[("src/lib.rs", b"pub fn three() -> u32 { 3 }\n")], b"Add three()");
    let third = env.run(["collect"]);
    third.assert_ok();
    assert!(third.stdout.contains("demo-commits"), "the table names the source:\n{}", third.stdout);
    assert_eq!(env.status()["total"], expected + 1);
    assert_eq!(env.count("SELECT count(*) FROM examples"), expected + 1);
    assert_eq!(env.count("SELECT count(*) FROM checkpoints WHERE source = 'demo-commits'"), 1);
}

#[test]
fn one_source_can_be_collected_alone_and_unknown_names_are_refused() {
    let env = Env::new();
    let (a, b) = (env.path().join("a"), env.path().join("b"));
    for (repo, n) in [(&a, 2), (&b, 3)] {
        init_repo(repo);
        for i in 0..n {
            let body = format!("fn f{i}() {{}}\n");
            commit(repo, &[(&format!("f{i}.rs"), body.as_bytes())], format!("Add f{i} to {}", repo.display()).as_bytes());
        }
    }
    env.write_config(&format!("{}{}", git_source("a", &a), git_source("b", &b)));
    env.run(["collect", "--source", "b"]).assert_ok();
    let status = env.status();
    assert_eq!(status["by_source"], serde_json::json!({"b": 3}));

    let r = env.run(["collect", "--source", "nope"]);
    r.assert_failed();
    assert!(r.stderr.contains("no source named \"nope\"") && r.stderr.contains("a, b"), "{}", r.stderr);

    env.run(["-q", "collect"]).assert_ok();
    assert_eq!(env.status()["by_source"], serde_json::json!({"a": 2, "b": 3}));
}

#[test]
fn status_json_of_an_empty_store_has_the_promised_keys() {
    let env = Env::new();
    env.write_config("");
    let s = env.status();
    assert_eq!(s["total"], 0);
    assert_eq!(s["by_source"], serde_json::json!({}));
    assert_eq!(s["by_kind"], serde_json::json!({}));
    assert_eq!(s["by_status"], serde_json::json!({"approved": 0, "pending": 0, "rejected": 0}));
}
