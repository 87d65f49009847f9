//! Secrets planted in collected sources — fake tokens of every rule in diffs, commit messages and
//! documentation prose — never reach the store or an export; look-alikes come through untouched;
//! the store keeps how many secrets each example had (never the secrets).

mod common;
#[path = "../host/curate/tests/common/corpus.rs"]
mod corpus;
#[path = "../host/curate/tests/common/secrets_corpus.rs"]
mod secrets_corpus;
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

/// The whole secrets corpus (host/curate/tests/secrets-corpus/) planted in every channel a
/// secret comes in by — a git commit's diff and message, a markdown doc, a Claude transcript's
/// tool result, a code-dedup row — reaches neither the store nor any export format.
#[test]
fn corpus_secrets_in_every_channel_never_reach_the_store_or_exports() {
    let env = Env::new();
    let root = env.path();
    let cases = secrets_corpus::positives();

    // Git: each case in a committed config file (the diff), some in the commit message too.
    let repo = root.join("infra");
    init_repo(&repo);
    for (n, chunk) in cases.chunks(12).enumerate() {
        let files: Vec<(String, Vec<u8>)> =
            chunk.iter().enumerate().map(|(i, c)| (format!("config/{}-{n}-{i}.txt", c.rule), format!("# {} settings\n{}\n", c.family, c.text).into_bytes())).collect();
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        let message = format!("Configure the {} integrations ({n})\n\nFor the record, the value I tested with:\n{}\n", chunk[0].family, chunk[0].text);
        commit(&repo, &files, message.as_bytes());
    }

    // Markdown: one section per case.
    let docs = root.join("notes");
    std::fs::create_dir_all(&docs).unwrap();
    let mut md = String::from("# Runbook\n\nHow the services are wired, collected from old tickets.\n\n");
    for (i, c) in cases.iter().enumerate() {
        md.push_str(&format!(
            "## Setting up {} ({i})\n\nThe {} integration was configured like this during the migration, which is what this page \
             warns about:\n\n```\n{}\n```\n\nUse the vault for it from now on.\n\n",
            c.rule, c.family, c.text
        ));
    }
    std::fs::write(docs.join("runbook.md"), md).unwrap();

    // Claude: each case is what a Read tool returned in one turn of a session.
    let project = root.join("claude/-work-infra");
    std::fs::create_dir_all(&project).unwrap();
    let mut lines = Vec::new();
    let mut parent = serde_json::Value::Null;
    for (i, c) in cases.iter().enumerate() {
        let base = serde_json::json!({"sessionId": "7f1e2d3c-0000-4000-8000-00000000abcd", "cwd": "/work/infra", "version": "2.0.14"});
        let line = |extra: serde_json::Value| {
            let mut v = base.clone();
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v.to_string()
        };
        let (u, a, r, b) = (format!("u{i}"), format!("a{i}"), format!("r{i}"), format!("b{i}"));
        lines.push(line(serde_json::json!({"type": "user", "uuid": u, "parentUuid": parent,
            "message": {"role": "user", "content": format!("Why does the {} step {i} fail? Check its config.", c.rule)}})));
        lines.push(line(serde_json::json!({"type": "assistant", "uuid": a, "parentUuid": u, "requestId": format!("req_{i}"),
            "message": {"id": format!("msg_{i}a"), "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "tool_use", "id": format!("toolu_{i}"), "name": "Read", "input": {"file_path": format!("/work/infra/config/{i}.txt")}}]}})));
        lines.push(line(serde_json::json!({"type": "user", "uuid": r, "parentUuid": a,
            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("toolu_{i}"), "content": c.text}]}})));
        lines.push(line(serde_json::json!({"type": "assistant", "uuid": b, "parentUuid": r, "requestId": format!("req_{i}b"),
            "message": {"id": format!("msg_{i}b"), "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": format!("Step {i} reads a hard-coded {} credential; move it to the vault and reload.", c.family)}]}})));
        parent = serde_json::Value::String(b);
    }
    std::fs::write(project.join("7f1e2d3c-0000-4000-8000-00000000abcd.jsonl"), lines.join("\n") + "\n").unwrap();

    // Code-dedup: each case inside a documented Python function.
    let db = root.join("snippets.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE snippets (id INTEGER PRIMARY KEY, language TEXT, file_path TEXT, content TEXT, content_hash TEXT);").unwrap();
        for (i, case) in cases.iter().enumerate() {
            let code = format!(
                "def load_{}_settings_{i}(path):\n    \"\"\"Read the {} settings of step {i} and return them parsed.\"\"\"\n    raw = r'''{}'''\n    return parse_settings(raw, path)\n",
                case.family.replace('-', "_"),
                case.rule,
                case.text
            );
            c.execute("INSERT INTO snippets VALUES (?1, 'python', ?2, ?3, ?4)", rusqlite::params![i as i64, format!("app/settings_{i}.py"), code, format!("h{i}")])
                .unwrap();
        }
    }

    let mut config = git_source("infra", &repo).replace("config = { repos = [", "config = { max_diff_bytes = 1000000, repos = [");
    config.push_str(&format!(
        "[[source]]\nname = \"notes\"\nplugin = \"docs\"\ngrants = {{ read = [{d}] }}\nconfig = {{ dirs = [{d}], max_answer_chars = 100000 }}\n\n\
         [[source]]\nname = \"claude\"\nplugin = \"claude-logs\"\ngrants = {{ read = [{cl}] }}\nconfig = {{ roots = [{cl}], tool_excerpt_chars = 20000 }}\n\n\
         [[source]]\nname = \"code\"\nplugin = \"code-dedup\"\ngrants = {{ sqlite = [{db}] }}\nconfig = {{ db = {db} }}\n\n",
        d = toml_str(&docs),
        cl = toml_str(root.join("claude")),
        db = toml_str(&db),
    ));
    env.write_config(&config);

    env.run(["collect", "--json"]).assert_ok();
    let status = env.status();
    for source in ["infra", "notes", "claude", "code"] {
        assert!(status["by_source"][source].as_u64().unwrap_or(0) >= 20, "source {source} stored too little: {status:#}");
        env.run(["review", "approve", "--source", source]).assert_ok();
    }
    let snap = root.join("snapshot");
    env.run(["export", "--out", snap.to_str().unwrap()]).assert_ok();
    let stored = store_text(&env);
    let exported = snapshot_text(&snap);
    for form in ["chat", "instruct", "raw"] {
        assert!(snap.join(form).join("train.jsonl").exists(), "no {form} export");
    }
    let leaked: Vec<String> = cases
        .iter()
        .filter(|c| stored.contains(&c.secret) || exported.contains(&c.secret))
        .map(|c| format!("{} {} (positives.txt line {}): store {} export {}", c.family, c.rule, c.line, stored.contains(&c.secret), exported.contains(&c.secret)))
        .collect();
    assert!(leaked.is_empty(), "{} of {} corpus secrets reached the store or an export:\n{}", leaked.len(), cases.len(), leaked.join("\n"));
    assert!(exported.contains("[REDACTED:"), "nothing was redacted in the export");
}
