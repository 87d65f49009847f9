//! Scrubbing on the secrets corpus (tests/secrets-corpus/): recall per family, false redaction of
//! the look-alikes and MB/s on one core; writes the corpus as plain files with each case's line
//! range so that bench/curate_compare.py runs detect-secrets on exactly the same text.
//!
//! cargo run --release -p brain-curate --example scrub_corpus -- [--out DIR]

#[path = "../tests/common/secrets_corpus.rs"]
mod secrets_corpus;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use brain_curate::Scrubber;
use secrets_corpus::*;
use serde_json::json;

/// Writes `texts` one after another, a blank line between; returns the file and each text's
/// first and last line (1-based).
fn layout<'a>(texts: impl Iterator<Item = &'a str>) -> (String, Vec<(usize, usize)>) {
    let (mut file, mut lines, mut next) = (String::new(), Vec::new(), 1);
    for t in texts {
        let n = t.lines().count().max(1);
        lines.push((next, next + n - 1));
        file.push_str(t);
        file.push_str("\n\n");
        next += n + 1;
    }
    (file, lines)
}

fn main() {
    let mut out = PathBuf::from("bench/out/curate");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--out", Some(v)) => out = PathBuf::from(v),
            (other, _) => panic!("unknown flag or missing value: {other}"),
        }
    }
    let out = out.join("secrets");
    std::fs::create_dir_all(&out).expect("create output dir");
    let pos = positives();
    let neg = negatives();
    let scrubber = Scrubber::default();

    let mut families: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut pos_found = Vec::new();
    for c in &pos {
        let found = !scrubber.scrub(&c.text).text.contains(&c.secret);
        let f = families.entry(c.family.as_str()).or_default();
        f.0 += found as usize;
        f.1 += 1;
        pos_found.push(found);
    }
    let touched: Vec<bool> = neg.iter().map(|c| scrubber.scrub(&c.text).text != c.text).collect();

    // Speed: every case is one text, as examples are; best of 5 passes.
    let texts: Vec<&str> = pos.iter().map(|c| c.text.as_str()).chain(neg.iter().map(|c| c.text.as_str())).collect();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let reps = (4_000_000 / bytes).max(1);
    let secs = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                texts.iter().for_each(|t| drop(std::hint::black_box(scrubber.scrub(t))));
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min);
    let mb_s = bytes as f64 / 1e6 / secs;

    let found = pos_found.iter().filter(|&&f| f).count();
    let bad = touched.iter().filter(|&&t| t).count();
    println!("secrets corpus: {} secrets in {} families, {} look-alikes, {:.3} MB", pos.len(), families.len(), neg.len(), bytes as f64 / 1e6);
    println!(
        "ours (1 core): recall {found}/{} = {:.1}%, false redaction {bad}/{} = {:.1}%, {:.1} MB/s ({:.2} ms per pass)",
        pos.len(),
        100.0 * found as f64 / pos.len() as f64,
        neg.len(),
        100.0 * bad as f64 / neg.len() as f64,
        mb_s,
        secs * 1e3
    );

    let (pos_file, pos_lines) = layout(pos.iter().map(|c| c.text.as_str()));
    let (neg_file, neg_lines) = layout(neg.iter().map(|c| c.text.as_str()));
    std::fs::write(out.join("positives.txt"), pos_file).expect("write");
    std::fs::write(out.join("negatives.txt"), neg_file).expect("write");
    let index = json!({
        "positives": pos.iter().zip(&pos_lines).zip(&pos_found).map(|((c, l), f)| json!({
            "family": c.family, "rule": c.rule, "first": l.0, "last": l.1, "ours": f,
        })).collect::<Vec<_>>(),
        "negatives": neg.iter().zip(&neg_lines).zip(&touched).map(|((c, l), t)| json!({
            "kind": c.kind, "first": l.0, "last": l.1, "ours": t,
        })).collect::<Vec<_>>(),
        "ours_mb_per_s": mb_s,
        "ours_pass_s": secs,
        "mb": bytes as f64 / 1e6,
    });
    std::fs::write(out.join("index.json"), index.to_string()).expect("write");
    println!("wrote {}", out.display());
}
