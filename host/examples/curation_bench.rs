//! Curation throughput with the real filter plugins (run by bench/curation.sh, in release):
//! generated ~1 KB chat examples (planted secrets, near-duplicate copies) go through the host's
//! curation stage — normalize, scrub, exact dedup, the bundled `quality`, `repetition` and
//! `length` filters, near-duplicate detection against everything curated before, the automatic
//! decision — batch by batch, as `brain collect` runs it. Nothing is written to the store, so the
//! figure is scrub + filter + dedup alone. Also prints each filter's cost per example (one
//! thread, the batched call) and the stage without filters.
//!
//! Usage: curation_bench [--n 100000] [--batch 256]

#[path = "../curate/tests/common/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::time::Instant;

use brain::collect::{Curate, SourceCounters};
use brain::config::Config;
use brain::curation::Curation;
use brain::example::{Example, Kind, Message, Role};
use brain::plugin::{Limits, PluginHost};
use brain::store::{Record, Store};
use corpus::*;
use rand::Rng;

/// The examples' source (never opened: curation only reads its name).
const SOURCE: &str = r#"
[[source]]
name = "bench"
plugin = "git"
"#;

/// The bundled filters, each with its default config.
fn filters() -> String {
    ["quality", "repetition", "length"].iter().map(|f| format!("[[filter]]\nname = \"{f}\"\nplugin = \"{f}\"\n\n")).collect()
}

/// CPU time of the whole process so far (user + system), from /proc/self/stat.
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn corpus(n: usize) -> (Vec<Example>, usize, usize) {
    let mut r = rng(2026);
    let topics: Vec<Vec<String>> = (0..50).map(|t| topic_vocab(t, 300)).collect();
    let mut docs: Vec<String> = (0..n).map(|i| base_doc(&mut r, &topics[i % topics.len()])).collect();
    // 2 % near-duplicate copies of earlier documents (5 words changed), 1 % planted secrets.
    let copies = n / 50;
    for _ in 0..copies {
        let c = r.random_range(n / 10..n);
        let o = r.random_range(0..n / 10);
        docs[c] = edit_words(&mut r, &docs[o], 5, &topics[o % topics.len()]);
    }
    let secrets = n / 100;
    for k in 0..secrets {
        let doc = r.random_range(0..n);
        let p = plant(&mut r, DEFAULT_RULES[k % DEFAULT_RULES.len()], k);
        let at = docs[doc].find('\n').map_or(0, |i| i + 1);
        docs[doc].insert_str(at, &format!("{}\n", p.text));
    }
    let examples = docs
        .into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let topic = &topics[i % topics.len()];
            Example {
                kind: Kind::Chat,
                task: "explain".into(),
                messages: vec![
                    Message { role: Role::User, content: format!("How does {} relate to {} here?", topic[i % 300], topic[(i * 7) % 300]) },
                    Message { role: Role::Assistant, content: doc },
                ],
                rejected: None,
                provenance: format!("bench#{i}"),
                metadata: serde_json::json!({ "i": i }),
            }
        })
        .collect();
    (examples, copies, secrets)
}

fn main() -> anyhow::Result<()> {
    let (mut n, mut batch) = (100_000usize, 256usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => n = value.parse()?,
            "--batch" => batch = value.parse()?,
            other => anyhow::bail!("unknown flag {other} (use --n N, --batch N)"),
        }
    }
    let tmp = tempfile::tempdir()?;
    let host = PluginHost::new(&tmp.path().join("cache"), Limits::default())?;
    let t = Instant::now();
    let (examples, copies, secrets) = corpus(n);
    let bytes: usize = examples.iter().flat_map(|e| &e.messages).map(|m| m.content.len()).sum();
    println!(
        "corpus: {n} chat examples, {:.0} B each, {copies} near-duplicate copies, {secrets} planted secrets (generated in {:.1} s)",
        bytes as f64 / n as f64,
        t.elapsed().as_secs_f64()
    );

    // Each filter alone, on one thread: the batched call's cost per example.
    let config = Config::from_str(&filters(), &tmp.path().join("brain.toml"))?;
    let sample = &examples[..n.min(20_000)];
    for entry in &config.filters {
        let mut f = host.open_filter(&entry.name, &entry.plugin, &entry.grants, &entry.config_json)?;
        let t = Instant::now();
        for chunk in sample.chunks(batch) {
            f.evaluate(chunk)?;
        }
        println!("  filter {:<11} {:>8.1} µs per example (one thread, batches of {batch})", entry.name, t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64);
    }

    // The three at once, each on its own thread, as curation runs them.
    let mut instances = Vec::new();
    for entry in &config.filters {
        instances.push(host.open_filter(&entry.name, &entry.plugin, &entry.grants, &entry.config_json)?);
    }
    let (t, cpu) = (Instant::now(), process_cpu_s());
    std::thread::scope(|scope| {
        for f in &mut instances {
            scope.spawn(move || {
                for chunk in sample.chunks(batch) {
                    f.evaluate(chunk).expect("filter");
                }
            });
        }
    });
    let (wall, cpu) = (t.elapsed().as_secs_f64(), process_cpu_s() - cpu);
    let t2 = Instant::now();
    for chunk in sample.chunks(batch) {
        std::thread::scope(|scope| {
            for f in &mut instances {
                scope.spawn(move || {
                    f.evaluate(chunk).expect("filter");
                });
            }
        });
    }
    println!("  the three, threads started per batch: {:.1} µs per example wall", t2.elapsed().as_secs_f64() * 1e6 / sample.len() as f64);
    println!(
        "  the three together      {:>8.1} µs per example wall, {:.1} µs CPU ({:.2} cores busy)",
        wall * 1e6 / sample.len() as f64,
        cpu * 1e6 / sample.len() as f64,
        cpu / wall
    );

    for (label, filters) in [("scrub + dedup (no filters)", String::new()), ("scrub + filter + dedup", filters())] {
        let config = Config::from_str(&format!("{SOURCE}{filters}"), &tmp.path().join("brain.toml"))?;
        let mut curation = Curation::new(&config, &host)?;
        let store = Store::open_in_memory()?;
        let entry = &config.sources[0];
        let mut counters = SourceCounters::default();
        let (t, cpu) = (Instant::now(), process_cpu_s());
        let mut kept = 0usize;
        for chunk in examples.chunks(batch) {
            let mut records: Vec<Record> = chunk.iter().cloned().map(Record::new).collect();
            curation.curate(&store, entry, &mut records, &mut counters)?;
            kept += records.len();
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), process_cpu_s() - cpu);
        let c: BTreeMap<_, _> = counters.curation.iter().filter(|(k, _)| !k.starts_with("filter_failed")).collect();
        println!("{label}: {:.0} examples/s wall, {:.1} µs CPU per example ({n} in {wall:.2} s; {kept} kept, {} exact duplicates)", n as f64 / wall, cpu * 1e6 / n as f64, counters.duplicate);
        println!("  counters: {c:?}");
        if let Some((name, e)) = curation.filter_errors.iter().next() {
            anyhow::bail!("filter {name} failed: {e}");
        }
    }
    Ok(())
}
