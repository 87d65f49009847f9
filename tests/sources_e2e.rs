//! Every bundled source in one config — git, docs, code-dedup, routing, claude-logs — collects
//! into one store; `status --json` counts by source and kind; a second collect adds nothing.

mod common;

use common::{commit, init_repo, toml_str, Env};

#[test]
fn five_sources_collect_into_one_store_and_recollecting_adds_nothing() {
    let env = Env::new();
    let root = env.path();

    let repo = root.join("repo");
    init_repo(&repo);
    commit(&repo, &[("src/lib.rs", b"pub fn add(a: i32, b: i32) -> i32 { a + b }\n")], b"Add the add function");
    commit(&repo, &[("src/lib.rs", b"pub fn add(a: i64, b: i64) -> i64 { a + b }\n")], b"Widen add to 64-bit integers");

    let docs = root.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("guide.md"),
        "# Widget guide\n\n## Installing\n\nRun `cargo install widget`, then check the installation with `widget --version`; \
         it prints the version and the path of the configuration file it will read.\n\n## Configuring\n\n\
         Widget reads `widget.toml` from the current directory. Every key has a default, so an empty file is a valid \
         configuration, and unknown keys are reported with their line number.\n",
    )
    .unwrap();

    let db = root.join("dedup.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE snippets (id INTEGER PRIMARY KEY, language TEXT, file_path TEXT, content TEXT, content_hash TEXT);",
        )
        .unwrap();
        let code = "def load_config(path):\n    \"\"\"Read the TOML configuration file at path and return it as a dict.\"\"\"\n    with open(path, 'rb') as f:\n        return tomllib.load(f)\n";
        for (id, file) in [(1, "app/config.py"), (2, "tools/config.py")] {
            c.execute("INSERT INTO snippets VALUES (?1, 'python', ?2, ?3, 'h1')", rusqlite::params![id, file, code]).unwrap();
        }
    }

    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    let claude = samples.join("claude-projects").canonicalize().unwrap();
    let routing = samples.join("routing").canonicalize().unwrap();
    env.write_config(&format!(
        r#"
[store]
path = "brain.db"

[[source]]
name = "commits"
plugin = "git"
grants = {{ git = [{repo}] }}
config = {{ repos = [{repo}] }}

[[source]]
name = "docs"
plugin = "docs"
grants = {{ read = [{docs}] }}
config = {{ min_section_chars = 40 }}

[[source]]
name = "code"
plugin = "code-dedup"
grants = {{ sqlite = [{db}] }}
config = {{ db = {db} }}

[[source]]
name = "routing"
plugin = "routing"
grants = {{ read = [{routing}] }}

[[source]]
name = "claude"
plugin = "claude-logs"
grants = {{ read = [{claude}] }}
"#,
        repo = toml_str(&repo),
        docs = toml_str(&docs),
        db = toml_str(&db),
        routing = toml_str(&routing),
        claude = toml_str(&claude),
    ));

    let r = env.run(["--json", "collect"]);
    r.assert_ok();
    let status = env.status();
    let by_source = &status["by_source"];
    for s in ["commits", "docs", "code", "routing", "claude"] {
        assert!(by_source[s].as_u64().unwrap_or(0) > 0, "source {s} stored nothing: {status:#}");
    }
    assert_eq!(by_source["commits"], 2);
    let by_kind = &status["by_kind"];
    for k in ["chat", "routing", "correction", "preference"] {
        assert!(by_kind[k].as_u64().unwrap_or(0) > 0, "no {k} examples: {status:#}");
    }
    let total = status["total"].as_u64().unwrap();
    assert_eq!(by_source.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(), total);

    let r = env.run(["--json", "collect"]);
    r.assert_ok();
    assert_eq!(r.json()["stored"], 0, "a second collect adds nothing");
    assert_eq!(env.status()["total"], total);
}
