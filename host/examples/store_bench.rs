//! The store's share of collect → store (run by bench/collect.sh, in release): examples/s of
//! `Store::store_batch` in batches of 256 on a file store, for git-like examples (a ~2.3 KB
//! prompt with a diff, a one-line answer, metadata):
//! - plain examples (no curation data);
//! - as curation leaves them (a MinHash signature of 112 × u32 and an automatic decision);
//! - a second pass of the same examples (all duplicates: what an incremental collect costs);
//! - the content id alone;
//! - on fresh stores, curated examples with one transaction per batch, then in write groups of
//!   4,096 examples with their content ids given (what `brain collect` does, see
//!   `Store::begin_group` and `Record::id`).
//!
//! Wall time and this thread's CPU time are both printed (the machine may be shared).
//!
//! Usage: store_bench [N]   (default 10,000)

use std::time::{Duration, Instant};

use brain::example::{Example, Kind, Message, Role};
use brain::store::{example_id, DecidedBy, Decision, MinHash, Record, ReviewStatus, Store};

fn example(i: usize) -> Example {
    let mut diff = String::new();
    for l in 0..24 {
        diff.push_str(&format!("-    let value_{l} = compute({l}, \"old {i}\");\n+    let value_{l} = compute_v{i}({l}, \"new\");\n"));
    }
    Example {
        kind: Kind::Chat,
        task: "commit-message".into(),
        messages: vec![
            Message {
                role: Role::User,
                content: format!(
                    "Write the commit message for this change to the `bench` repository.\n\nChanged files:\n- modified src/module_{}.rs (+24 -24)\n\nDiff:\n```diff\n{diff}```\n",
                    i % 40
                ),
            },
            Message { role: Role::Assistant, content: format!("Fix the parser state in module {} (change {i})", i % 40) },
        ],
        rejected: None,
        provenance: format!("bench@{i:040x}"),
        metadata: serde_json::json!({ "repo": "bench", "commit": format!("{i:040x}"), "files": 1, "insertions": 24, "deletions": 24 }),
    }
}

fn cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn timed(what: &str, n: usize, f: impl FnOnce()) {
    let (w, c) = (Instant::now(), cpu());
    f();
    let (wall, cpu) = (w.elapsed(), cpu() - c);
    println!(
        "{what:<44} {:>9.0} examples/s wall ({:.3} s), {:>9.0} examples/s cpu ({:.3} s)",
        n as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        n as f64 / cpu.as_secs_f64().max(1e-9),
        cpu.as_secs_f64()
    );
}

fn store_all(store: &mut Store, records: &[Record]) -> u64 {
    records.chunks(256).map(|b| store.store_batch("bench", "git", b, Some("checkpoint")).expect("store").stored).sum()
}

/// As `brain collect` stores: batches of 256 in write groups of 4,096 examples.
fn store_grouped(store: &mut Store, records: &[Record]) -> u64 {
    let mut stored = 0;
    for group in records.chunks(4096) {
        store.begin_group().expect("begin");
        stored += store_all(store, group);
        store.commit_group().expect("commit");
    }
    stored
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let plain: Vec<Record> = (0..n).map(|i| Record::new(example(i))).collect();
    let curated: Vec<Record> = (0..n)
        .map(|i| {
            let mut r = Record::new(example(n + i));
            r.minhash = Some(MinHash { signature: (0..448u32).map(|b| (b * 7 + i as u32) as u8).collect(), bands: Vec::new() });
            r.decision = Some(Decision { status: ReviewStatus::Approved, reason: Some("score 0.82 >= 0.70".into()), note: None, decided_by: DecidedBy::Auto });
            r
        })
        .collect();
    let bytes: usize = plain.iter().map(|r| r.example.messages.iter().map(|m| m.content.len()).sum::<usize>()).sum();
    println!("{n} examples, {:.0} bytes of messages each on average", bytes as f64 / n as f64);

    let dir = tempfile::tempdir()?;
    let mut store = Store::open(&dir.path().join("bench.db"))?;
    timed("content id (sha256 of normalized content)", n, || {
        for r in &plain {
            std::hint::black_box(example_id(&r.example));
        }
    });
    timed("store_batch, plain examples", n, || assert_eq!(store_all(&mut store, &plain), n as u64));
    timed("store_batch, with MinHash + decision", n, || assert_eq!(store_all(&mut store, &curated), n as u64));
    timed("store_batch, all already stored", n, || assert_eq!(store_all(&mut store, &plain), 0));
    let size = std::fs::metadata(dir.path().join("bench.db"))?.len() + std::fs::metadata(dir.path().join("bench.db-wal")).map_or(0, |m| m.len());
    println!("store: {} examples, {:.1} MiB (db + wal)", store.status()?.total, size as f64 / (1 << 20) as f64);

    let mut with_ids = curated.clone();
    for r in &mut with_ids {
        r.id = Some(example_id(&r.example));
    }
    let mut fresh = Store::open(&dir.path().join("per-batch.db"))?;
    timed("fresh store, MinHash + decision, per batch", n, || assert_eq!(store_all(&mut fresh, &curated), n as u64));
    let mut fresh = Store::open(&dir.path().join("grouped.db"))?;
    timed("fresh store, same, groups of 4,096 + ids given", n, || assert_eq!(store_grouped(&mut fresh, &with_ids), n as u64));
    Ok(())
}
