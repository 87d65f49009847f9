//! The curation engine on generated material: planted secrets in diffs, tool outputs and prose;
//! look-alikes; near duplicates; split stability.

#[path = "common/corpus.rs"]
mod corpus;

use brain_curate::{LshIndex, MinHashParams, MinHasher, ScrubConfig, Scrubber, Split, SplitRatios};
use corpus::*;

fn all_plants(seed: u64, per_rule: usize, rules: &[&'static str]) -> Vec<Plant> {
    let mut r = rng(seed);
    rules.iter().flat_map(|rule| (0..per_rule).map(|v| plant(&mut r, rule, v)).collect::<Vec<_>>()).collect()
}

/// Plants wrapped in the three kinds of text an example carries.
fn embed(plant: &Plant, i: usize) -> String {
    match i % 3 {
        0 => format!(
            "diff --git a/.env b/.env\nindex 83db48f..bf269f4 100644\n--- a/.env\n+++ b/.env\n@@ -1,3 +1,4 @@\n APP_NAME=brain\n{}\n LOG_LEVEL=info\n",
            plant.text
        ),
        1 => format!("$ cat config.json\n{{\n  \"name\": \"brain\",\n{}\n  \"debug\": false\n}}\n[exit 0]", plant.text),
        _ => format!("While debugging the deploy yesterday I noticed this: {} Then I rotated it.", plant.text),
    }
}

#[test]
fn planted_secrets_are_all_redacted_and_counted() {
    let scrubber = Scrubber::default();
    let plants = all_plants(7, 12, DEFAULT_RULES);
    for (i, plant) in plants.iter().enumerate() {
        let text = embed(plant, i);
        let out = scrubber.scrub(&text);
        assert!(!out.text.contains(&plant.secret), "rule {} left its secret in:\n{}", plant.rule, out.text);
        assert!(out.counts.get(plant.rule) >= 1, "expected rule {} to fire on:\n{text}\ncounts: {:?}", plant.rule, out.counts);
        assert!(out.text.contains(&format!("[REDACTED:{}]", plant.rule)));
        let again = scrubber.scrub(&out.text);
        assert_eq!(again.text, out.text, "not idempotent");
        assert!(again.counts.is_empty());
    }
}

#[test]
fn one_document_with_every_secret() {
    let scrubber = Scrubber::default();
    let plants = all_plants(11, 3, DEFAULT_RULES);
    let doc: String = plants.iter().enumerate().map(|(i, p)| embed(p, i) + "\n").collect();
    let out = scrubber.scrub(&doc);
    for p in &plants {
        assert!(!out.text.contains(&p.secret), "rule {} left {}", p.rule, p.secret);
    }
    assert!(out.counts.total() as usize >= plants.len());
    assert_eq!(scrubber.scrub(&out.text).text, out.text);
    // The counts never hold plaintext.
    let json = serde_json::to_string(&out.counts).unwrap();
    assert!(plants.iter().all(|p| !json.contains(&p.secret)));
}

#[test]
fn look_alikes_survive() {
    let scrubber = Scrubber::default();
    for text in LOOK_ALIKES {
        let out = scrubber.scrub(text);
        assert_eq!(&out.text, text, "look-alike changed (counts {:?})", out.counts);
    }
    let optional = Scrubber::new(&ScrubConfig { emails: true, home_paths: true, ..Default::default() }).unwrap();
    for text in LOOK_ALIKES {
        assert_eq!(&optional.scrub(text).text, text);
    }
}

#[test]
fn optional_rules_only_when_asked() {
    let plants = all_plants(3, 4, &["email", "home-path"]);
    let default = Scrubber::default();
    let optional = Scrubber::new(&ScrubConfig { emails: true, home_paths: true, ..Default::default() }).unwrap();
    for p in &plants {
        assert_eq!(default.scrub(&p.text).text, p.text);
        let out = optional.scrub(&p.text);
        assert!(!out.text.contains(&p.secret), "{}", out.text);
        assert_eq!(out.counts.get(p.rule), 1);
    }
}

#[test]
fn allowlist_and_stopwords_from_config_keep_values() {
    let mut r = rng(5);
    let p = plant(&mut r, "github-token", 0);
    let keep = Scrubber::new(&ScrubConfig { allow_values: vec![p.secret.clone()], ..Default::default() }).unwrap();
    assert_eq!(keep.scrub(&p.text).text, p.text);
    let keep = Scrubber::new(&ScrubConfig { allow: vec!["^ghp_".into()], ..Default::default() }).unwrap();
    assert_eq!(keep.scrub(&p.text).text, p.text);
    let keep = Scrubber::new(&ScrubConfig { stopwords: vec![p.secret[4..10].to_uppercase()], ..Default::default() }).unwrap();
    assert_eq!(keep.scrub(&p.text).text, p.text);
}

#[test]
fn scrub_fields_sums_counts() {
    let mut r = rng(9);
    let a = plant(&mut r, "npm-token", 1);
    let b = plant(&mut r, "jwt", 2);
    let mut fields = [a.text.clone(), "clean".to_string(), b.text.clone()];
    let counts = Scrubber::default().scrub_fields(fields.iter_mut());
    assert_eq!(counts.get("npm-token"), 1);
    assert_eq!(counts.get("jwt"), 1);
    assert_eq!(fields[1], "clean");
    assert!(!fields[0].contains(&a.secret) && !fields[2].contains(&b.secret));
}

#[test]
fn near_duplicates_caught_and_same_topic_texts_not() {
    let params = MinHashParams::default();
    let hasher = MinHasher::new(params.clone()).unwrap();
    let mut index = LshIndex::new(params.clone()).unwrap();
    let mut r = rng(42);
    let topics: Vec<Vec<String>> = (0..4).map(|t| topic_vocab(t, 300)).collect();
    let originals: Vec<String> = (0..400).map(|i| topic_doc(&mut r, &topics[i % 4], 170)).collect();
    // Unrelated texts of the same four topics: nothing may be flagged.
    for (i, doc) in originals.iter().enumerate() {
        let found = index.query_insert(i, &hasher.signature(doc));
        assert!(found.is_empty(), "doc {i} flagged as a near duplicate of {found:?}");
    }
    // Lightly edited copies: 2 and 5 words of ~170 replaced.
    let mut caught = [0usize; 2];
    for (k, &edits) in [2usize, 5].iter().enumerate() {
        for (i, doc) in originals.iter().enumerate() {
            let copy = edit_words(&mut r, doc, edits, &topics[i % 4]);
            let found = index.query(&hasher.signature(&copy));
            assert!(found.iter().all(|d| d.id == i), "copy of {i} matched other documents: {found:?}");
            caught[k] += found.iter().any(|d| d.id == i) as usize;
        }
    }
    assert!(caught[0] >= 396, "2-word edits: {} of 400 caught", caught[0]);
    assert!(caught[1] >= 320, "5-word edits: {} of 400 caught", caught[1]);

    // The index rebuilt from stored signature bytes answers the same.
    let stored: Vec<(usize, Vec<u8>)> = originals.iter().enumerate().map(|(i, d)| (i, hasher.signature(d).to_bytes(&params))).collect();
    let rebuilt = LshIndex::rebuild(&hasher, stored.clone()).unwrap();
    assert_eq!(rebuilt.len(), originals.len());
    let other = MinHasher::new(MinHashParams { seed: 2, ..params.clone() }).unwrap();
    assert!(LshIndex::rebuild(&other, stored).is_err());
    let copy = edit_words(&mut r, &originals[7], 2, &topics[3]);
    assert_eq!(rebuilt.query(&hasher.signature(&copy)).first().map(|d| d.id), Some(7));
}

#[test]
fn splits_are_stable_when_examples_arrive() {
    let ratios = SplitRatios::default();
    let ids: Vec<String> = (0..2000).map(|i| brain_curate::content_hash(&format!("example {i}"))).collect();
    let before: Vec<Split> = ids.iter().map(|id| ratios.assign(id)).collect();
    // New examples arrive, in another order, interleaved with the old ones.
    let mut grown: Vec<String> = (2000..4000).map(|i| brain_curate::content_hash(&format!("example {i}"))).collect();
    grown.extend(ids.iter().rev().cloned());
    let after: std::collections::HashMap<&String, Split> = grown.iter().map(|id| (id, ratios.assign(id))).collect();
    for (id, split) in ids.iter().zip(&before) {
        assert_eq!(after[id], *split);
    }
    assert!(before.contains(&Split::Test) && before.contains(&Split::Valid));
}

#[test]
fn scrubbing_is_idempotent_on_random_mixtures() {
    let scrubber = Scrubber::new(&ScrubConfig { emails: true, home_paths: true, ..Default::default() }).unwrap();
    let mut r = rng(1234);
    let rules: Vec<&'static str> = DEFAULT_RULES.iter().copied().chain(["email", "home-path"]).collect();
    let glue = [" ", "\n", "=", ":", "\"", "'", "@", "/", "://", "-", "_", "é ", "…", "", "[REDACTED:jwt]", "password="];
    for round in 0..300 {
        let mut text = String::new();
        let mut secrets = vec![];
        for k in 0..rand::Rng::random_range(&mut r, 1..6) {
            let p = plant(&mut r, rules[(round + k) % rules.len()], round + k);
            text.push_str(glue[rand::Rng::random_range(&mut r, 0..glue.len())]);
            text.push_str(&p.text);
            text.push_str(LOOK_ALIKES[(round * 7 + k) % LOOK_ALIKES.len()]);
            secrets.push(p.secret);
        }
        let once = scrubber.scrub(&text);
        let twice = scrubber.scrub(&once.text);
        assert_eq!(twice.text, once.text, "round {round}:\n{text}");
        assert!(twice.counts.is_empty());
    }
}

#[test]
fn engine_types_are_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Scrubber>();
    shareable::<MinHasher>();
    shareable::<LshIndex<String>>();
}
