//! Curation benchmark: scrub + near-dup throughput on a generated corpus, and files for the
//! Python comparison (detect-secrets, datasketch) that bench/curate.sh runs on the same corpus.
//!
//! cargo run --release -p brain-curate --example curate_bench -- [--n 100000] [--ds-docs 1000] [--out DIR]

#[path = "../tests/common/corpus.rs"]
mod corpus;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use brain_curate::{LshIndex, MinHashParams, MinHasher, Scrubber};
use corpus::*;
use rand::Rng;

struct Args {
    n: usize,
    ds_docs: usize,
    dup_copies: usize,
    out: PathBuf,
}

fn args() -> Args {
    let mut a = Args { n: 100_000, ds_docs: 1_000, dup_copies: 2_000, out: PathBuf::from("bench/out/curate") };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => a.n = value.parse().expect("--n N"),
            "--ds-docs" => a.ds_docs = value.parse().expect("--ds-docs N"),
            "--dup-copies" => a.dup_copies = value.parse().expect("--dup-copies N"),
            "--out" => a.out = PathBuf::from(value),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn main() {
    let args = args();
    std::fs::create_dir_all(&args.out).expect("create output dir");
    let mut r = rng(2026);
    let topics: Vec<Vec<String>> = (0..50).map(|t| topic_vocab(t, 300)).collect();

    // 1. The corpus.
    let t = Instant::now();
    let mut docs: Vec<String> = (0..args.n).map(|i| base_doc(&mut r, &topics[i % topics.len()])).collect();
    // Near-duplicate copies (5 of ~170 words replaced) of earlier documents, outside the
    // detect-secrets slice and never of another copy.
    let mut copy_of: HashMap<usize, usize> = HashMap::new();
    let lo = (args.ds_docs + 1).max(args.n / 50);
    while copy_of.len() < args.dup_copies.min(args.n.saturating_sub(lo) / 4) {
        let c = r.random_range(lo..args.n);
        if copy_of.contains_key(&c) {
            continue;
        }
        let o = r.random_range(args.ds_docs..c);
        if copy_of.contains_key(&o) || copy_of.values().any(|&x| x == c) {
            continue;
        }
        copy_of.insert(c, o);
    }
    let mut pairs: Vec<(usize, usize)> = copy_of.iter().map(|(&c, &o)| (c, o)).collect();
    pairs.sort();
    for &(c, o) in &pairs {
        docs[c] = edit_words(&mut r, &docs[o], 5, &topics[o % topics.len()]);
    }
    let in_pair: HashSet<usize> = pairs.iter().flat_map(|&(c, o)| [c, o]).collect();
    // Secrets: 400 in the detect-secrets slice, and 1 % of the rest; look-alikes beside them.
    let mut plants: Vec<(usize, Plant)> = Vec::new();
    let ds_plants = 400.min(args.ds_docs * 2);
    for k in 0..ds_plants {
        let doc = r.random_range(0..args.ds_docs.max(1));
        plants.push((doc, plant(&mut r, DEFAULT_RULES[k % DEFAULT_RULES.len()], k / DEFAULT_RULES.len())));
    }
    for k in 0..(args.n / 100) {
        let doc = r.random_range(args.ds_docs..args.n);
        if !in_pair.contains(&doc) {
            plants.push((doc, plant(&mut r, DEFAULT_RULES[k % DEFAULT_RULES.len()], k)));
        }
    }
    for (doc, p) in &plants {
        let text = &mut docs[*doc];
        let at = text.find('\n').map(|i| i + 1).unwrap_or(0);
        text.insert_str(at, &format!("{}\n", p.text));
    }
    for k in 0..args.ds_docs / 5 {
        let doc = r.random_range(0..args.ds_docs.max(1));
        docs[doc].push_str(LOOK_ALIKES[k % LOOK_ALIKES.len()]);
        docs[doc].push('\n');
    }
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    println!(
        "corpus: {} docs, {:.1} MB ({:.0} B/doc), {} near-dup copies, {} planted secrets ({} in the first {} docs) — generated in {:.1}s",
        docs.len(),
        bytes as f64 / 1e6,
        bytes as f64 / docs.len() as f64,
        pairs.len(),
        plants.len(),
        ds_plants,
        args.ds_docs,
        t.elapsed().as_secs_f64()
    );
    let mb = bytes as f64 / 1e6;
    let mut summary = serde_json::Map::new();
    let mut record = |key: &str, value: serde_json::Value| {
        summary.insert(key.to_string(), value);
    };
    record("docs", docs.len().into());
    record("mb", mb.into());

    // 2. Scrubbing, one core.
    let scrubber = Scrubber::default();
    let t = Instant::now();
    let scrubbed: Vec<String> = docs.iter().map(|d| scrubber.scrub(d).text.into_owned()).collect();
    let scrub_s = t.elapsed().as_secs_f64();
    let missed = plants.iter().filter(|(doc, p)| scrubbed[*doc].contains(&p.secret)).count();
    let redactions: usize = scrubbed.iter().map(|d| d.matches("[REDACTED:").count()).sum();
    println!(
        "scrub (1 core):        {:>8.0} docs/s  {:>7.1} MB/s   planted secrets left: {missed} of {}  redactions: {redactions}",
        docs.len() as f64 / scrub_s,
        mb / scrub_s,
        plants.len()
    );
    record("scrub_docs_per_s", (docs.len() as f64 / scrub_s).into());
    record("scrub_mb_per_s", (mb / scrub_s).into());
    record("planted_secrets", plants.len().into());
    record("planted_left", missed.into());
    // The detect-secrets slice alone (denser in secrets), best of 5.
    let slice = &docs[..args.ds_docs];
    let slice_mb = slice.iter().map(|d| d.len()).sum::<usize>() as f64 / 1e6;
    let slice_s = (0..5)
        .map(|_| {
            let t = Instant::now();
            slice.iter().for_each(|d| drop(scrubber.scrub(d)));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    println!("scrub, detect-secrets slice: {:.2} MB in {:.1} ms = {:.1} MB/s", slice_mb, slice_s * 1e3, slice_mb / slice_s);
    record("slice_mb", slice_mb.into());
    record("slice_scrub_s", slice_s.into());
    let (set, regexes) = brain_curate::scrub::regexset_baseline();
    let t = Instant::now();
    let mut baseline_hits = 0usize;
    for d in &docs {
        for i in set.matches(d).iter() {
            baseline_hits += regexes[i].captures_iter(d).count();
        }
    }
    let base_s = t.elapsed().as_secs_f64();
    println!(
        "RegexSet baseline:     {:>8.0} docs/s  {:>7.1} MB/s   ({} raw matches, no entropy/allowlist) → ours is {:.1}x",
        docs.len() as f64 / base_s,
        mb / base_s,
        baseline_hits,
        base_s / scrub_s
    );
    record("regexset_mb_per_s", (mb / base_s).into());

    // 3. Near duplicates, one core, incremental over the stream.
    let run = |params: MinHashParams, label: &str, report_steps: bool| -> (Vec<Vec<usize>>, Vec<Vec<usize>>, f64) {
        let hasher = MinHasher::new(params.clone()).expect("params");
        let mut index = LshIndex::with_capacity(params, docs.len()).expect("params");
        let mut found = Vec::with_capacity(docs.len());
        let mut classic = Vec::with_capacity(docs.len());
        let t = Instant::now();
        let mut last = (0usize, 0.0f64);
        for (i, d) in scrubbed.iter().enumerate() {
            let sig = hasher.signature(d);
            classic.push(if in_pair.contains(&i) { index.classic_candidates(&sig).into_iter().map(|n| n.id).collect() } else { vec![] });
            found.push(index.query_insert(i, &sig).into_iter().map(|n| n.id).collect());
            let done = i + 1;
            if report_steps && (done == 25_000 || done == 50_000 || done == 100_000 || done == docs.len()) {
                let el = t.elapsed().as_secs_f64();
                println!(
                    "  {label}: {done:>7} docs in {el:>6.2}s  ({:>6.0} docs/s overall, {:>6.0} docs/s since {})",
                    done as f64 / el,
                    (done - last.0) as f64 / (el - last.1),
                    last.0
                );
                last = (done, el);
            }
        }
        (found, classic, t.elapsed().as_secs_f64())
    };
    let score = |found: &[Vec<usize>]| {
        let hits = pairs.iter().filter(|&&(c, o)| found[c].contains(&o)).count();
        let flagged: usize = found.iter().map(|f| f.len()).sum();
        let false_pos = found
            .iter()
            .enumerate()
            .map(|(i, f)| f.iter().filter(|&&o| copy_of.get(&i) != Some(&o)).count())
            .sum::<usize>();
        (hits, flagged, false_pos)
    };
    for (layouts, label) in [(1usize, "14x8, 1 layout "), (2, "14x8, 2 layouts")] {
        let params = MinHashParams { layouts, ..MinHashParams::default() };
        println!("near-dup MinHash(112) + LSH {label} (1 core):");
        let (found, classic, secs) = run(params, label, true);
        let (hits, flagged, fp) = score(&found);
        let (chits, _, _) = score(&classic);
        println!(
            "  query(): {hits} of {} copies found, {fp} other pairs flagged of {flagged}; classic band candidates: {chits} of {}; {:.0} docs/s",
            pairs.len(),
            pairs.len(),
            docs.len() as f64 / secs
        );
        record(&format!("neardup_layouts{layouts}_docs_per_s"), (docs.len() as f64 / secs).into());
        record(&format!("neardup_layouts{layouts}_found"), hits.into());
        record(&format!("neardup_layouts{layouts}_other_pairs"), fp.into());
        record("classic_candidates_found", chits.into());
    }

    // 4. The whole step on 2 threads: scrub + signature in parallel, index sequential.
    let params = MinHashParams::default();
    let hasher = MinHasher::new(params.clone()).expect("params");
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(2);
    let t = Instant::now();
    let chunk = docs.len().div_ceil(threads);
    let sigs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = docs
            .chunks(chunk)
            .map(|part| {
                let (scrubber, hasher) = (&scrubber, &hasher);
                s.spawn(move || part.iter().map(|d| hasher.signature(&scrubber.scrub(d).text)).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker")).collect()
    });
    let mut index = LshIndex::with_capacity(params, docs.len()).expect("params");
    let mut dups = 0;
    for (i, sig) in sigs.iter().enumerate() {
        dups += !index.query_insert(i, sig).is_empty() as usize;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "scrub + dedup ({threads} threads): {:>8.0} docs/s  {:>7.1} MB/s  ({dups} near-dups flagged)",
        docs.len() as f64 / secs,
        mb / secs
    );
    record("pipeline_threads", threads.into());
    record("pipeline_docs_per_s", (docs.len() as f64 / secs).into());
    record("copies", pairs.len().into());

    // 5. Files for the Python side.
    let mut corpus = String::with_capacity(bytes + docs.len() * 16);
    for d in &docs {
        corpus.push_str(&serde_json::to_string(d).expect("json"));
        corpus.push('\n');
    }
    std::fs::write(args.out.join("corpus.jsonl"), corpus).expect("write");
    let pair_lines: Vec<String> = pairs.iter().map(|(c, o)| format!("{c} {o}")).collect();
    std::fs::write(args.out.join("dup_pairs.txt"), pair_lines.join("\n")).expect("write");
    // The detect-secrets slice: raw and scrubbed, and the planted secrets in it.
    let ds_raw: String = docs[..args.ds_docs].join("\n");
    std::fs::write(args.out.join("ds_raw.txt"), &ds_raw).expect("write");
    std::fs::write(args.out.join("ds_scrubbed.json"), serde_json::to_string(&scrubbed[..args.ds_docs]).expect("json")).expect("write");
    let ds_truth: Vec<serde_json::Value> = plants
        .iter()
        .filter(|(doc, _)| *doc < args.ds_docs)
        .map(|(_, p)| serde_json::json!({"rule": p.rule, "secret": p.secret}))
        .collect();
    std::fs::write(args.out.join("ds_truth.json"), serde_json::to_string(&ds_truth).expect("json")).expect("write");
    std::fs::write(args.out.join("ours.json"), serde_json::Value::Object(summary).to_string()).expect("write");
    println!(
        "wrote {} ({} lines, {:.2} MB in the detect-secrets slice)",
        args.out.display(),
        ds_raw.lines().count(),
        ds_raw.len() as f64 / 1e6
    );
}
