//! `brain pipeline run --dry-run` through the binary: it writes nothing (no file in the folder
//! created or changed, the store not created, migrated or written, its scratch export removed)
//! and reports the steps a real run then takes, with the same reasons — the same snapshot id,
//! the same training decision and the same skip messages.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::{generated_repo, git_source, toml_str, Env};
use serde_json::Value;

/// Every file under `dir` (except `skip`) with its bytes and modification time.
fn tree(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p == skip {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let meta = std::fs::metadata(&p).unwrap();
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), (std::fs::read(&p).unwrap(), meta.modified().unwrap()));
            }
        }
    }
    out
}

/// `pipeline run` (with `extra` flags) as JSON, with TMPDIR inside the test folder.
fn pipeline(env: &Env, tmp: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "pipeline", "run"];
    args.extend_from_slice(extra);
    let r = common::Run::from(env.command(&args).env("TMPDIR", tmp).output().unwrap());
    r.assert_ok();
    r.json()
}

/// (stage, status, detail) of each step; a dry run's `would-run` read as a real run's `done`
/// and its "would …" details as what was done.
fn steps(report: &Value, dry: bool) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let status = s["status"].as_str().unwrap();
            let status = if dry && status == "would-run" { "done" } else { status };
            (s["stage"].as_str().unwrap().to_string(), status.to_string())
        })
        .collect()
}

fn detail<'a>(report: &'a Value, stage: &str) -> &'a str {
    report["steps"].as_array().unwrap().iter().find(|s| s["stage"] == stage).and_then(|s| s["detail"].as_str()).unwrap_or("")
}

#[test]
fn a_dry_run_writes_nothing_and_plans_what_the_real_run_does() {
    let env = Env::new();
    let repo = env.path().join("repo");
    generated_repo(&repo, 40);
    env.write_config(&format!(
        "{}[train]\nbase_model = {}\niters = 4\nbatch_size = 2\nsteps_per_eval = 4\nruns_dir = \"runs\"\n\n[eval]\nmax_examples = 2\nmax_tokens = 4\n\n[pipeline]\nmin_new_examples = 1\n",
        git_source("commits", &repo),
        toml_str("models/tiny")
    ));
    env.run(["model", "init-tiny", "models/tiny"]).assert_ok();
    let tmp = env.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();

    // Before anything: the dry run does not create the store.
    let dry = pipeline(&env, &tmp, &["--dry-run"]);
    assert!(!env.db_path().exists(), "a dry run created the store: {dry:#}");
    assert_eq!(detail(&dry, "collect"), "would collect from commits", "{dry:#}");

    env.run(["collect"]).assert_ok();
    env.run(["review", "approve", "--source", "commits"]).assert_ok();
    // (Counted through the binary: a read-only connection of the test would leave -shm behind.)
    let approved = env.status()["by_status"]["approved"].as_i64().unwrap_or(0);
    assert!(approved >= 30, "{:#}", env.status());

    let before = tree(env.path(), &tmp);
    let dry = pipeline(&env, &tmp, &["--dry-run"]);
    let after = tree(env.path(), &tmp);
    let changed: Vec<&PathBuf> = before.keys().chain(after.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(changed.is_empty(), "the dry run changed {changed:?}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "the dry run left its scratch export behind");

    let real = pipeline(&env, &tmp, &[]);
    assert_eq!(steps(&dry, true), steps(&real, false), "dry:\n{dry:#}\nreal:\n{real:#}");
    assert!(steps(&real, false).iter().any(|(s, st)| s == "train" && st == "done"), "{real:#}");
    // The snapshot the dry run planned is the one the real run wrote; skips give the same reason.
    let planned = dry["steps"][1]["data"]["id"].as_str().unwrap();
    assert_eq!(Some(planned), real["snapshot"].as_str(), "{dry:#}\n{real:#}");
    assert_eq!(detail(&dry, "dpo"), detail(&real, "dpo"));
    assert_eq!(real["model_version"], "v1", "{real:#}");

    // Nothing new now: the dry run says training is skipped, with the reason the real run gives.
    let before = tree(env.path(), &tmp);
    let dry = pipeline(&env, &tmp, &["--dry-run"]);
    assert_eq!(before, tree(env.path(), &tmp));
    let real = pipeline(&env, &tmp, &[]);
    assert_eq!(steps(&dry, true), steps(&real, false), "dry:\n{dry:#}\nreal:\n{real:#}");
    assert_eq!(detail(&dry, "train"), detail(&real, "train"));
    assert!(detail(&real, "train").contains("fewer than min_new_examples"), "{real:#}");

    // A plain `brain train` on that snapshot's chat split records the snapshot in its run.
    let chat = PathBuf::from(real["snapshot_dir"].as_str().unwrap_or_else(|| panic!("{real:#}"))).join("chat");
    let r = env.run(["--json".as_ref(), "train".as_ref(), "--data".as_ref(), chat.as_os_str(), "--adapter-path".as_ref(), "runs/by-hand".as_ref(), "--iters".as_ref(), "2".as_ref()]);
    r.assert_ok();
    let run = r.json()["registered"]["run"].as_str().unwrap().to_string();
    let snapshot: Option<String> = env.db().query_row("SELECT snapshot_id FROM runs WHERE id = ?1", [&run], |row| row.get(0)).unwrap();
    assert_eq!(snapshot.as_deref(), Some(planned), "the run of a train on exports/<id>/chat names snapshot <id>");
}
