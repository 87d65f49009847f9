//! SIGKILL in the middle of `brain collect` leaves a sound store, and the rerun completes
//! without duplicates: every batch is one transaction with its checkpoint.

mod common;

use std::time::{Duration, Instant};

use common::*;

const COMMITS: usize = 30_000;

#[test]
fn a_killed_collect_leaves_a_sound_store_and_the_rerun_completes() {
    let env = Env::new();
    let repo = env.path().join("big");
    generated_repo(&repo, COMMITS);
    env.write_config(&git_source("big", &repo));

    let mut child = env.command(["-q", "collect"]).spawn().expect("start brain collect");
    // Wait until some batches are committed, then kill it mid-run.
    let deadline = Instant::now() + Duration::from_secs(300);
    let stored_before_kill = loop {
        assert!(Instant::now() < deadline, "no batch was stored in time");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("collect finished ({status}) before it could be killed; make the repository bigger");
        }
        let n = if env.db_path().exists() {
            env.db().query_row("SELECT count(*) FROM examples", [], |r| r.get::<_, i64>(0)).unwrap_or(0)
        } else {
            0
        };
        if n > 0 {
            break n;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let after_kill = env.count("SELECT count(*) FROM examples");
    assert!(after_kill >= stored_before_kill);
    assert!(after_kill < COMMITS as i64, "killed mid-run: {after_kill} of {COMMITS} stored");
    let check: String = env.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");

    let rerun = env.run(["collect", "--json"]);
    rerun.assert_ok();
    let report = rerun.json();
    assert_eq!(env.count("SELECT count(*) FROM examples"), COMMITS as i64, "{report:#}");
    assert_eq!(env.count("SELECT count(DISTINCT provenance) FROM examples"), COMMITS as i64);
    let check: String = env.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    assert_eq!(report["sources"][0]["stored"].as_i64().unwrap() + after_kill, COMMITS as i64);
}
