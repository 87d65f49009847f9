//! Secrets planted in collected sources — fake tokens of every rule in diffs, commit messages and
//! documentation prose — never reach the store or an export; look-alikes come through untouched;
//! the store keeps how many secrets each example had (never the secrets).

mod common;
#[path = "../host/curate/tests/common/corpus.rs"]
mod corpus;
#[path = "curation_support.rs"]
mod support;

use common::*;
use corpus::*;
use support::*;

#[test]
fn planted_secrets_never_reach_the_store_or_exports() {
    let env = Env::new();
    let repo = env.path().join("service");
    init_repo(&repo);
    let mut r = rng(2026);
    let mut plants = Vec::new();
    for (i, rule) in DEFAULT_RULES.iter().enumerate() {
        for v in 0..3 {
            let p = plant(&mut r, rule, v);
            // In a file (the diff of the prompt) …
            let file = format!("APP_NAME=service\nLOG_LEVEL=info\n{}\nTIMEOUT=30\n", p.text);
            let q = plant(&mut r, rule, v + 1);
            // … and in the commit message (the answer).
            let message = format!("Configure the {rule} integration ({i}.{v})\n\nWhile testing I used this: {}\nRotate it afterwards.", q.text);
            commit(&repo, &[(&format!("config/{rule}-{v}.txt"), file.as_bytes())], message.as_bytes());
            plants.push(p);
            plants.push(q);
        }
    }
    let look_alikes: String = LOOK_ALIKES.iter().map(|l| format!("{l}\n")).collect();
    commit(&repo, &[("docs/placeholders.txt", look_alikes.as_bytes())], b"Document the placeholder values used in examples");

    // Documentation prose with secrets too.
    let docs = env.path().join("handbook");
    std::fs::create_dir_all(&docs).unwrap();
    let mut md = String::from("# Operations handbook\n\nHow the team runs the service day to day.\n\n");
    for (i, rule) in DEFAULT_RULES.iter().enumerate() {
        let p = plant(&mut r, rule, i);
        md.push_str(&format!(
            "## Credentials for step {i}\n\nDuring the migration of step {i} somebody pasted the following into the runbook, \
             which is exactly what this section warns about:\n\n{}\n\nNever do that again; use the vault instead.\n\n",
            p.text
        ));
        plants.push(p);
    }
    std::fs::write(docs.join("handbook.md"), md).unwrap();

    let mut config = git_source("service", &repo).replace("config = { repos = [", "config = { max_diff_bytes = 1000000, repos = [");
    config.push_str(&format!(
        "[[source]]\nname = \"handbook\"\nplugin = \"docs\"\ngrants = {{ read = [{d}] }}\nconfig = {{ dirs = [{d}], max_answer_chars = 100000 }}\n\n",
        d = toml_str(&docs)
    ));
    env.write_config(&config);

    let run = env.run(["collect", "--json"]);
    run.assert_ok();
    let report = run.json();
    let redacted: u64 = report["sources"].as_array().unwrap().iter().map(|s| s["curation"]["secrets_redacted"].as_u64().unwrap_or(0)).sum();
    assert!(redacted as usize >= plants.len(), "every planted secret is counted: {redacted} < {}\n{report:#}", plants.len());
    let total = env.status()["total"].as_u64().unwrap();
    assert!(total > DEFAULT_RULES.len() as u64 * 3, "{total}");

    // Approve everything and export it.
    env.run(["review", "approve", "--source", "service"]).assert_ok();
    env.run(["review", "approve", "--source", "handbook"]).assert_ok();
    let snap = env.path().join("snapshot");
    env.run(["export", "--out", snap.to_str().unwrap()]).assert_ok();
    assert_eq!(raw_splits(&snap).len(), total as usize);

    let stored = store_text(&env);
    let exported = snapshot_text(&snap);
    for p in &plants {
        assert!(!stored.contains(&p.secret), "a {} secret reached the store: {}", p.rule, p.secret);
        assert!(!exported.contains(&p.secret), "a {} secret reached the export: {}", p.rule, p.secret);
    }
    for rule in DEFAULT_RULES {
        assert!(exported.contains(&format!("[REDACTED:{rule}]")), "no redaction marker of {rule}");
    }
    // (A multi-line look-alike is checked line by line: the diff prefixes each line with `+`.)
    for l in LOOK_ALIKES.iter().flat_map(|l| l.lines()) {
        assert!(stored.contains(l), "look-alike changed in the store: {l}");
        assert!(exported.contains(l), "look-alike changed in the export: {l}");
    }

    // Counts per example, by rule; never the secret.
    let db = env.db();
    let with_counts: i64 = db.query_row("SELECT count(*) FROM examples WHERE scrub_counts != '{}'", [], |r| r.get(0)).unwrap();
    assert!(with_counts as usize >= DEFAULT_RULES.len() * 3, "{with_counts}");
    let counts: String = db
        .query_row("SELECT scrub_counts FROM examples WHERE provenance LIKE 'service@%' AND messages LIKE '%github-token%' LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let counts: serde_json::Value = serde_json::from_str(&counts).unwrap();
    assert!(counts["github-token"].as_u64().unwrap() >= 2, "{counts}");

    // `review show` prints them.
    let id: String = db.query_row("SELECT id FROM examples WHERE scrub_counts != '{}' ORDER BY id LIMIT 1", [], |r| r.get(0)).unwrap();
    let show = env.run(["review", "show", &id]);
    show.assert_ok();
    assert!(show.stdout.contains("scrubbed"), "{}", show.stdout);

    // Collecting again adds nothing: the scrubbed examples are exact duplicates of themselves.
    let again = env.run(["collect", "--json"]);
    again.assert_ok();
    assert_eq!(env.status()["total"].as_u64().unwrap(), total);
}
