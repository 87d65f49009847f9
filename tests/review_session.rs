//! `brain review` without a terminal: commands are read from stdin one per line. Scripted
//! sessions approve, reject with a reason, edit the response in $EDITOR, skip, undo, and a new
//! session resumes where the last one stopped. Without commands it ends at once.

mod common;
#[path = "curation_support.rs"]
mod support;

use common::*;
use support::*;

fn setup(n: usize) -> (Env, Vec<String>) {
    let env = Env::new();
    let repo = env.path().join("repo");
    prose_repo(&repo, n, "s");
    env.write_config(&git_source("notes", &repo));
    env.run(["collect"]).assert_ok();
    let ids = pending_ids(&env);
    assert_eq!(ids.len(), n);
    (env, ids)
}

#[test]
fn approve_reject_skip_and_resume() {
    let (env, ids) = setup(6);
    let run = review_script(&env, "a looks right\nr too vague to learn from\ns\nq\n", &[]);
    run.assert_ok();
    assert!(run.stdout.contains("reviewed: 1 approved (0 edited), 1 rejected, 1 skipped, 0 undone; 4 pending"), "{}", run.stdout);
    assert_eq!(status_of(&env, &ids[0]), ("approved".into(), Some("human".into()), Some("approved by reviewer".into())));
    assert_eq!(status_of(&env, &ids[1]), ("rejected".into(), Some("human".into()), Some("too vague to learn from".into())));
    assert_eq!(status_of(&env, &ids[2]).0, "pending");
    let note = env.run(["review", "show", &ids[0], "--json"]).json()["summary"]["note"].clone();
    assert_eq!(note, "looks right");

    // The next session starts after the skipped one, and comes back to it at the end.
    let run = review_script(&env, "a\na\na\n", &[]);
    run.assert_ok();
    assert!(run.stdout.contains("resuming"), "{}", run.stdout);
    for id in &ids[3..6] {
        assert_eq!(status_of(&env, id).0, "approved", "{}", run.stdout);
    }
    assert_eq!(status_of(&env, &ids[2]).0, "pending");
    let run = review_script(&env, "r off topic\n", &[]);
    run.assert_ok();
    assert_eq!(status_of(&env, &ids[2]), ("rejected".into(), Some("human".into()), Some("off topic".into())));
    assert_eq!(env.status()["by_status"]["pending"], 0);
}

#[test]
fn undo_within_and_across_sessions() {
    let (env, ids) = setup(4);
    // Approve, undo, reject the same example: one decision remains.
    let run = review_script(&env, "a\nu\nr wrong\nq\n", &[]);
    run.assert_ok();
    assert!(run.stdout.contains("undone"), "{}", run.stdout);
    assert_eq!(status_of(&env, &ids[0]).0, "rejected");
    let history = env.run(["review", "show", &ids[0], "--json"]).json()["history"].clone();
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(status_of(&env, &ids[1]).0, "pending");

    // A new session undoes the previous session's last decision, then shows that example again.
    let run = review_script(&env, "u\na\nq\n", &[]);
    run.assert_ok();
    assert!(run.stdout.contains("undone an earlier decision"), "{}", run.stdout);
    assert_eq!(status_of(&env, &ids[0]).0, "approved", "{}", run.stdout);
    assert_eq!(status_of(&env, &ids[1]).0, "pending");

    // `brain review undo` takes back the latest decision by a person.
    env.run(["review", "undo"]).assert_ok();
    assert_eq!(status_of(&env, &ids[0]).0, "pending");
}

#[test]
fn edit_in_editor_then_undo_restores_the_text() {
    let (env, ids) = setup(3);
    let original: String = env.db().query_row("SELECT messages FROM examples WHERE id = ?1", [&ids[0]], |r| r.get(0)).unwrap();
    assert!(original.contains("Write note "), "{original}");
    // An "editor" that rewrites the response and plants a secret in it.
    let editor = format!("{} -c 'printf \"Explain note zero in detail with token ghp_R4nd0mT0k3nW1thTh1rtySixCh4rsXyZ01234\" > \"$0\"'", "sh");
    let run = review_script(&env, "e\nq\n", &[("EDITOR", &editor)]);
    run.assert_ok();
    assert!(run.stdout.contains("edited and approved"), "{}\n{}", run.stdout, run.stderr);
    let (status, by, reason) = status_of(&env, &ids[0]);
    assert_eq!((status.as_str(), by.as_deref(), reason.as_deref()), ("approved", Some("human"), Some("edited")));
    let messages: String = env.db().query_row("SELECT messages FROM examples WHERE id = ?1", [&ids[0]], |r| r.get(0)).unwrap();
    assert!(messages.contains("Explain note zero in detail with token [REDACTED:github-token]"), "{messages}");
    assert!(!store_text(&env).contains("ghp_R4nd0mT0k3nW1thTh1rtySixCh4rsXyZ01234"), "an edit is scrubbed too");
    let counts: String = env.db().query_row("SELECT scrub_counts FROM examples WHERE id = ?1", [&ids[0]], |r| r.get(0)).unwrap();
    assert_eq!(counts, r#"{"github-token":1}"#);

    // The export has the edited text.
    let snap = env.path().join("snap");
    env.run(["export", "--out", snap.to_str().unwrap()]).assert_ok();
    assert!(snapshot_text(&snap).contains("Explain note zero in detail"));

    // Undo: the original text and counts are back, and the example is pending again.
    let run = review_script(&env, "u\nq\n", &[]);
    run.assert_ok();
    let messages: String = env.db().query_row("SELECT messages FROM examples WHERE id = ?1", [&ids[0]], |r| r.get(0)).unwrap();
    assert_eq!(messages, original);
    assert_eq!(status_of(&env, &ids[0]).0, "pending");
    let counts: String = env.db().query_row("SELECT scrub_counts FROM examples WHERE id = ?1", [&ids[0]], |r| r.get(0)).unwrap();
    assert_eq!(counts, "{}");

    // An editor that changes nothing saves nothing; a failing one neither.
    let run = review_script(&env, "e\ne\nq\n", &[("EDITOR", "true")]);
    assert!(run.stdout.contains("unchanged: nothing saved"), "{}", run.stdout);
    let run = review_script(&env, "e\nq\n", &[("EDITOR", "false")]);
    assert!(run.stdout.contains("edit failed"), "{}", run.stdout);
    // No editor and no terminal: a clear message, nothing changes.
    let run = review_script(&env, "e\nq\n", &[]);
    assert!(run.stdout.contains("set $EDITOR"), "{}", run.stdout);
    assert_eq!(env.status()["by_status"]["pending"], 3);
}

#[test]
fn without_a_terminal_or_commands_it_never_waits() {
    let (env, _) = setup(2);
    // stdin is /dev/null (Env::command's default).
    let started = std::time::Instant::now();
    let run = env.run(["review"]);
    run.assert_ok();
    assert!(started.elapsed().as_secs() < 30);
    assert!(run.stderr.contains("no terminal and no commands"), "{}", run.stderr);
    assert_eq!(env.status()["by_status"]["pending"], 2);
    // --json: the outcome on stdout, the transcript on stderr.
    let run = review_script(&env, "a\nq\n", &[]);
    run.assert_ok();
    let mut cmd = env.command(["review", "--json"]);
    cmd.stdin(std::process::Stdio::piped());
    let out = {
        use std::io::Write;
        let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"s\nq\n").unwrap();
        Run::from(child.wait_with_output().unwrap())
    };
    out.assert_ok();
    let v = out.json();
    assert_eq!((v["skipped"].as_u64(), v["quit"].as_bool(), v["remaining"].as_u64()), (Some(1), Some(true), Some(1)));
}
