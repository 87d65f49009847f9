//! `brain export`: a dataset snapshot of the approved examples.
//!
//! ```text
//! DIR/manifest.json
//! DIR/chat/{train,valid,test}.jsonl                      {"messages": [...]}  (mlx-lm --data DIR/chat)
//! DIR/instruct/{train,valid,test}.jsonl                  {"instruction", "input", "output"}  (Alpaca)
//! DIR/preference/{train,valid,test}.jsonl                {"prompt", "chosen", "rejected"}  (strings)
//! DIR/preference/conversational/{train,valid,test}.jsonl {"prompt": [msgs], "chosen": [msg], "rejected": [msg]}
//! DIR/raw/{train,valid,test}.jsonl                       every field, metadata, scores
//! ```
//!
//! - Only approved examples. Each gets a split from its id (brain-curate's hash split, with the
//!   `[export] ratios`); the split is recorded in the store the first time, so an example never
//!   changes split — not when new examples arrive, not when the ratios change — and the test
//!   split never enters training. A line whose text is identical in two splits (two examples
//!   that render the same) is written once, in the split furthest from training (test, then
//!   valid).
//! - Corrections (kind `correction`, or metadata `"correction": true`) are repeated in the
//!   training files of chat, instruct and preference by `correction_weight` (2.0 = twice; a
//!   fraction is applied per example by its hash, so 1.5 repeats half of them). raw holds every
//!   example once.
//! - Order: training lines are shuffled deterministically (by a hash of id and copy); with
//!   `curriculum = true` they go from simple to complex (filter complexity), and chat lines carry
//!   `"phase"` (0 simple 1–3, 1 medium 4–6, 2 complex 7–10) for trainers that honour it. valid
//!   and test are ordered by id.
//! - A split without lines gets no file (mlx-lm refuses an empty JSONL but accepts a missing
//!   `test.jsonl`); the manifest lists the files written.
//! - Reproducible: same store and config ⇒ byte-identical files (no time stamps; stable order;
//!   sorted keys). The snapshot id is the start of the manifest's SHA-256; the snapshot is
//!   recorded in the store's `snapshots` table (id, directory, manifest hash and counts).
//!   Without `--out`, it is written to `[export] out`/<id>, and `[export] out`/latest points at it.

pub mod formats;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use brain_curate::{Split, SplitRatios};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::example::Kind;
use crate::store::snapshots::Approved;
use crate::store::Store;

/// The manifest's `format`.
pub const FORMAT: &str = "sam-brain-snapshot/1";

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub id: String,
    pub dir: PathBuf,
    pub manifest_sha256: String,
    /// Approved examples exported.
    pub examples: u64,
    /// Examples per split.
    pub splits: BTreeMap<String, u64>,
    /// Lines per file (`chat/train.jsonl` → n).
    pub lines: BTreeMap<String, u64>,
    pub warnings: Vec<String>,
}

/// The settings an export uses (written into the manifest).
#[derive(Clone, Debug, Serialize)]
struct Settings {
    ratios: BTreeMap<&'static str, f64>,
    correction_weight: f64,
    curriculum: bool,
    review: BTreeMap<&'static str, f64>,
    filters: Vec<String>,
}

fn split_index(s: Split) -> usize {
    match s {
        Split::Train => 0,
        Split::Valid => 1,
        Split::Test => 2,
    }
}

fn parse_split(s: &str) -> Split {
    match s {
        "valid" => Split::Valid,
        "test" => Split::Test,
        _ => Split::Train,
    }
}

/// A number in [0, 1) from a hash of `parts` (deterministic choices and order).
fn unit_hash(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

fn is_correction(a: &Approved) -> bool {
    let ex = &a.stored.example;
    ex.kind == Kind::Correction || ex.metadata.get("correction").and_then(Value::as_bool) == Some(true)
}

/// Copies of an example in a training file under `weight`.
fn copies(id: &str, weight: f64) -> u32 {
    let whole = weight.floor();
    let frac = weight - whole;
    let u = (unit_hash(&[b"brain-oversample", id.as_bytes()]) >> 11) as f64 / (1u64 << 53) as f64;
    let extra = frac > 0.0 && u < frac;
    whole as u32 + u32::from(extra)
}

fn phase(complexity: Option<u8>) -> u32 {
    match complexity.unwrap_or(1) {
        0..=3 => 0,
        4..=6 => 1,
        _ => 2,
    }
}

/// A line of a form, destined for a split.
struct Line {
    text: String,
    split: Split,
    id: String,
    complexity: Option<u8>,
    correction: bool,
}

/// Writes a snapshot of the approved examples. `out`: the directory to write (replaced if it
/// holds an earlier snapshot); `None` = `[export] out`/<snapshot id>.
pub fn export(store: &Store, config: &Config, out: Option<&Path>) -> anyhow::Result<ExportReport> {
    let e = &config.export;
    let ratios =
        SplitRatios::new(e.ratios.train, e.ratios.valid, e.ratios.test).with_context(|| format!("{}: [export] ratios", config.path.display()))?;
    if !e.correction_weight.is_finite() || !(0.0..=100.0).contains(&e.correction_weight) {
        bail!("{}: [export] correction_weight = {} must be between 0 and 100", config.path.display(), e.correction_weight);
    }
    let approved = store.approved_examples()?;
    let ids: Vec<&str> = approved.iter().map(|a| a.stored.id.as_str()).collect();
    let splits = store.splits_for(&ids, |id| ratios.assign(id).as_str())?;
    let split_of = |id: &str| parse_split(splits.get(id).map(String::as_str).unwrap_or("train"));

    let mut warnings = Vec::new();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut skipped: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for form in formats::FORMS {
        let mut lines: Vec<Line> = Vec::new();
        for a in &approved {
            let ex = &a.stored.example;
            let value = match form {
                "chat" => formats::chat(ex, e.curriculum.then(|| phase(a.complexity))),
                "instruct" => formats::instruct(ex),
                "preference" => formats::preference(ex),
                "preference/conversational" => formats::preference_conversational(ex),
                _ => Some(formats::raw(&a.stored, a.score, a.complexity)),
            };
            let Some(value) = value else {
                if !form.starts_with("preference") || ex.rejected.is_some() {
                    *skipped.entry(form.to_string()).or_default().entry("no_final_answer").or_default() += 1;
                }
                continue;
            };
            lines.push(Line {
                text: serde_json::to_string(&value)?,
                split: split_of(&a.stored.id),
                id: a.stored.id.clone(),
                complexity: a.complexity,
                correction: is_correction(a),
            });
        }
        // The same text in two splits: keep it once, in the split furthest from training.
        if form != "raw" {
            let mut best: HashMap<&str, (usize, &str)> = HashMap::new();
            for l in &lines {
                let entry = best.entry(l.text.as_str()).or_insert((split_index(l.split), l.id.as_str()));
                if (split_index(l.split), std::cmp::Reverse(l.id.as_str())) > (entry.0, std::cmp::Reverse(entry.1)) {
                    *entry = (split_index(l.split), l.id.as_str());
                }
            }
            let keep: Vec<bool> = lines.iter().map(|l| best.get(l.text.as_str()).is_some_and(|b| b.1 == l.id)).collect();
            let dropped = keep.iter().filter(|k| !**k).count() as u64;
            if dropped > 0 {
                *skipped.entry(form.to_string()).or_default().entry("same_text_as_another").or_default() += dropped;
            }
            let mut k = keep.into_iter();
            lines.retain(|_| k.next().unwrap_or(true));
        }
        for split in Split::ALL {
            // (complexity level, hash order, id, text): training lines shuffled by a hash of id
            // and copy (simple to complex first with a curriculum); valid and test by id.
            let mut rows: Vec<(u64, u64, &str, &str)> = Vec::new();
            for l in lines.iter().filter(|l| l.split == split) {
                let train = split == Split::Train;
                let n = if train && form != "raw" && l.correction { copies(&l.id, e.correction_weight) } else { 1 };
                let level = if train && e.curriculum { u64::from(l.complexity.unwrap_or(1)) } else { 0 };
                for copy in 0..n {
                    let order = if train { unit_hash(&[b"brain-order", l.id.as_bytes(), &copy.to_le_bytes()]) } else { 0 };
                    rows.push((level, order, l.id.as_str(), l.text.as_str()));
                }
            }
            rows.sort();
            let mut buf = Vec::new();
            for (_, _, _, text) in rows {
                buf.extend_from_slice(text.as_bytes());
                buf.push(b'\n');
            }
            // An empty split gets no file: mlx-lm fails on an empty JSONL (a missing one is fine).
            if !buf.is_empty() {
                files.insert(format!("{form}/{}.jsonl", split.as_str()), buf);
            }
        }
    }

    // Counts.
    let mut by_split: BTreeMap<String, u64> = Split::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
    let mut by_kind: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut by_source: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for a in &approved {
        let s = split_of(&a.stored.id).as_str().to_string();
        *by_split.entry(s.clone()).or_default() += 1;
        *by_kind.entry(a.stored.example.kind.as_str().into()).or_default().entry(s.clone()).or_default() += 1;
        *by_source.entry(a.stored.source.clone()).or_default().entry(s).or_default() += 1;
    }
    let lines_of = |name: &str| files.get(name).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64);
    if approved.is_empty() {
        warnings.push("no approved examples: the snapshot is empty (review some with `brain review`)".into());
    } else {
        if lines_of("chat/train.jsonl") == 0 {
            warnings.push("no chat/train.jsonl: nothing to train on".into());
        }
        if lines_of("chat/valid.jsonl") == 0 {
            warnings.push("no chat/valid.jsonl: mlx-lm needs validation examples (more approved examples, or a larger [export] ratios.valid)".into());
        }
    }
    let file_entries: BTreeMap<String, Value> = files
        .iter()
        .map(|(name, bytes)| {
            (
                name.clone(),
                json!({ "lines": bytes.iter().filter(|&&c| c == b'\n').count(), "bytes": bytes.len(), "sha256": hex::encode(Sha256::digest(bytes)) }),
            )
        })
        .collect();
    let settings = Settings {
        ratios: [("train", e.ratios.train), ("valid", e.ratios.valid), ("test", e.ratios.test)].into_iter().collect(),
        correction_weight: e.correction_weight,
        curriculum: e.curriculum,
        review: [("approve_above", config.review.approve_above), ("reject_below", config.review.reject_below)].into_iter().collect(),
        filters: config.filters.iter().filter(|f| f.enabled).map(|f| f.name.clone()).collect(),
    };
    let manifest = json!({
        "format": FORMAT,
        "examples": approved.len(),
        "counts": { "by_split": by_split, "by_kind": by_kind, "by_source": by_source },
        "skipped": skipped,
        "files": file_entries,
        "config": settings,
        "layout": {
            "chat": "{\"messages\": [{\"role\", \"content\"}, ...]} (mlx-lm chat; use DIR/chat as --data)",
            "instruct": "{\"instruction\", \"input\", \"output\"} (Alpaca)",
            "preference": "{\"prompt\", \"chosen\", \"rejected\"} strings",
            "preference/conversational": "{\"prompt\": [messages], \"chosen\": [message], \"rejected\": [message]}",
            "raw": "every field with metadata, scrub counts, score, complexity",
        },
    });
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    manifest_bytes.push(b'\n');
    let manifest_sha256 = hex::encode(Sha256::digest(&manifest_bytes));
    let id = manifest_sha256[..16].to_string();

    let dir = match out {
        Some(d) => std::path::absolute(d)?,
        None => e.out.join(&id),
    };
    write_snapshot(&dir, &files, &manifest_bytes)?;
    if out.is_none() {
        point_latest(&e.out, &id);
    }
    let summary = json!({
        "manifest_sha256": manifest_sha256,
        "examples": approved.len(),
        "by_split": manifest["counts"]["by_split"],
        "lines": files.keys().map(|k| (k.clone(), lines_of(k))).collect::<BTreeMap<_, _>>(),
    });
    store.record_snapshot(&id, &dir.display().to_string(), &summary, approved.len() as u64)?;
    Ok(ExportReport {
        id,
        dir,
        manifest_sha256,
        examples: approved.len() as u64,
        splits: by_split,
        lines: files.keys().map(|k| (k.clone(), lines_of(k))).collect(),
        warnings,
    })
}

/// Writes the files into a fresh directory beside `dir`, then puts it in place of `dir`.
fn write_snapshot(dir: &Path, files: &BTreeMap<String, Vec<u8>>, manifest: &[u8]) -> anyhow::Result<()> {
    if dir.exists() {
        let is_snapshot = dir.join("manifest.json").is_file();
        let empty = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_none();
        if !is_snapshot && !empty {
            bail!("{} exists and is not a snapshot (no manifest.json): choose another --out, or empty it", dir.display());
        }
    }
    let parent = dir.parent().context("the snapshot directory has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = dir.file_name().context("the snapshot directory has no name")?.to_string_lossy().into_owned();
    let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let write = |rel: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let path = staging.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    };
    for (name, bytes) in files {
        write(name, bytes)?;
    }
    write("manifest.json", manifest)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("replacing the earlier snapshot {}", dir.display()))?;
    }
    std::fs::rename(&staging, dir).with_context(|| format!("moving the snapshot into {}", dir.display()))?;
    Ok(())
}

/// `out/latest` → the snapshot just written (a symbolic link; best effort).
fn point_latest(out: &Path, id: &str) {
    let link = out.join("latest");
    #[cfg(unix)]
    {
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(&link);
        }
        if !link.exists() {
            let _ = std::os::unix::fs::symlink(id, &link);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (link, id);
    }
}
