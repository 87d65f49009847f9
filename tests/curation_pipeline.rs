//! Curation inside `brain collect`, end to end: filter plugins score every new example (scores
//! stored apart from decisions) and the `[review]` thresholds decide; a failing filter fails
//! alone; near duplicates are found against everything stored, across runs and sources.

mod common;
#[path = "support/fault_plugins.rs"]
mod fault_plugins;
#[path = "curation_support.rs"]
mod support;

use common::*;
use support::*;

const FILTERS: &str = "[[filter]]\nname = \"quality\"\nplugin = \"quality\"\n\n[[filter]]\nname = \"repetition\"\nplugin = \"repetition\"\n\n[[filter]]\nname = \"length\"\nplugin = \"length\"\n\n";

#[test]
fn filters_score_and_thresholds_decide() {
    let env = Env::new();
    let repo = env.path().join("repo");
    prose_repo(&repo, 5, "r");
    // The length filter rejects a message that stops mid-sentence.
    commit(&repo, &[("notes/cut.md", b"cut\n")], b"Write the note about the parser and");
    env.write_config(&format!("{}{FILTERS}[review]\napprove_above = 0.5\nreject_below = 0.3\n", git_source("r", &repo)));

    let run = env.run(["collect", "--json"]);
    run.assert_ok();
    let c = &run.json()["sources"][0]["curation"];
    assert_eq!(c["auto_approved"], 5, "{c}");
    assert_eq!(c["auto_rejected"], 1, "{c}");
    assert_eq!(c["filter_rejected"], 1, "{c}");
    assert_eq!(env.count("SELECT count(*) FROM verdicts"), 18, "three verdicts per example");
    assert_eq!(env.count("SELECT count(DISTINCT filter) FROM verdicts"), 3);

    let rejected = env.run(["review", "list", "--status", "rejected", "--json"]).json();
    let rejected = rejected.as_array().unwrap();
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0]["reason"].as_str().unwrap().starts_with("length:"), "{rejected:?}");
    assert_eq!(rejected[0]["decided_by"], "auto");
    let show = env.run(["review", "show", rejected[0]["id"].as_str().unwrap(), "--json"]).json();
    let verdicts = show["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 3);
    let length = verdicts.iter().find(|v| v["filter"] == "length").unwrap();
    assert!(length["fired"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().starts_with("truncated")), "{length}");
    assert!(length["flags"].as_array().unwrap().iter().any(|f| f == "incomplete"), "{length}");
}

#[test]
fn a_failing_filter_fails_alone() {
    let env = Env::new();
    let repo = env.path().join("repo");
    prose_repo(&repo, 4, "f");
    let bad = fault_plugins::wasm("bad-verdicts");
    env.write_config(&format!(
        "{}[[filter]]\nname = \"sloppy\"\nplugin = {}\n\n[[filter]]\nname = \"length\"\nplugin = \"length\"\n\n[review]\napprove_above = 0.5\n",
        git_source("f", &repo),
        toml_str(&bad)
    ));
    let run = env.run(["collect", "--json"]);
    run.assert_ok();
    assert!(run.stderr.contains("sloppy"), "the failing filter is named: {}", run.stderr);
    let src = &run.json()["sources"][0];
    assert_eq!(src["stored"], 4, "{src}");
    assert_eq!(src["curation"]["filter_failed:sloppy"], 4, "{src}");
    // The healthy filter's verdicts are stored; none from the failing one.
    assert_eq!(env.count("SELECT count(*) FROM verdicts WHERE filter = 'length'"), 4);
    assert_eq!(env.count("SELECT count(*) FROM verdicts WHERE filter = 'sloppy'"), 0);
    // Length alone would approve them (score 1.0): with a filter missing nothing is auto-approved,
    // not by recut either.
    assert_eq!(env.status()["by_status"]["pending"], 4);
    let listed = env.run(["review", "list", "--json"]).json();
    assert!(listed[0]["reason"].as_str().unwrap().contains("not scored by filter sloppy"), "{listed}");
    env.run(["review", "recut"]).assert_ok();
    assert_eq!(env.status()["by_status"]["pending"], 4);
}

/// A long text and a lightly edited copy of it.
fn essay(edit: bool) -> String {
    let mut words: Vec<String> = (0..260)
        .map(|i| {
            ["parser", "token", "stream", "syntax", "tree", "node", "span", "error", "checker", "scope", "binding", "module", "import"]
                [(i * 7 + i / 3) % 13]
                .to_string()
                + &(i % 17).to_string()
        })
        .collect();
    if edit {
        words[40] = "edited".into();
        words[200] = "changed".into();
    }
    words.join(" ")
}

#[test]
fn near_duplicates_across_runs_and_sources_are_linked_and_rejected() {
    let env = Env::new();
    let a = env.path().join("upstream");
    let b = env.path().join("fork");
    init_repo(&a);
    init_repo(&b);
    commit(&a, &[("design.md", essay(false).as_bytes())], b"Describe the front end design");
    commit(&a, &[("other.md", paragraph(1, "x").as_bytes())], b"Add an unrelated note");
    // The fork has the same change, lightly edited, and an unrelated one.
    commit(&b, &[("design.md", essay(true).as_bytes())], b"Describe the front end design");
    commit(&b, &[("more.md", paragraph(2, "y").as_bytes())], b"Add another unrelated note");
    env.write_config(&format!("{}{}", git_source("upstream", &a), git_source("fork", &b)));

    env.run(["collect", "--source", "upstream"]).assert_ok();
    assert_eq!(env.status()["by_status"]["pending"], 2);
    // Second run, other source: the near copy is found against the stored examples.
    let run = env.run(["collect", "--source", "fork", "--json"]);
    run.assert_ok();
    let c = &run.json()["sources"][0];
    assert_eq!(c["stored"], 2, "{c}");
    assert_eq!(c["curation"]["near_duplicates"], 1, "{c}");
    assert_eq!(env.count("SELECT count(*) FROM duplicates"), 1);
    let (dup, of, sim): (String, String, f64) =
        env.db().query_row("SELECT example_id, duplicate_of, similarity FROM duplicates", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    assert!(sim >= 0.7, "{sim}");
    let source_of = |id: &str| -> String { env.db().query_row("SELECT source FROM examples WHERE id = ?1", [id], |r| r.get(0)).unwrap() };
    assert_eq!((source_of(&dup).as_str(), source_of(&of).as_str()), ("fork", "upstream"), "without scores the older one stays");
    let (status, by, reason) = status_of(&env, &dup);
    assert_eq!((status.as_str(), by.as_deref(), reason.as_deref()), ("rejected", Some("auto"), Some("duplicate")));
    let show = env.run(["review", "show", &dup]);
    assert!(show.stdout.contains(&format!("duplicate   of {of}")), "{}", show.stdout);
    // Signatures are persisted for every new example.
    assert_eq!(env.count("SELECT count(*) FROM minhash"), 4);
    // The unrelated notes are not duplicates of anything.
    assert_eq!(env.status()["by_status"]["pending"], 3);
}
