//! The fallback when no real model can be had (no network on first use): a tiny random model
//! whose tokenizer is trained on the exported text, pretrained briefly so SFT adapts a model
//! that predicts text.

use std::path::Path;

use anyhow::Context as _;
use brain_train::fuse::{fuse, FuseArgs};
use brain_train::tiny::{init_tiny, TinySpec};
use brain_train::{FineTuneType, RunSummary, TrainArgs};

/// The text of the exported conversations of one split (what the tiny tokenizer and the
/// pretraining learn from; never the test split, which evaluation scores).
pub(super) fn export_text(snapshot_dir: &Path, split: &str) -> String {
    let mut text = String::new();
    let Ok(body) = std::fs::read_to_string(snapshot_dir.join("chat").join(format!("{split}.jsonl"))) else { return text };
    for line in body.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        for m in v["messages"].as_array().into_iter().flatten() {
            if let Some(c) = m["content"].as_str() {
                text.push_str(c);
                text.push('\n');
            }
        }
    }
    text
}

/// Gives the random model in `init` some language and writes the result to `model`: `iters`
/// full-training updates on `text` cut into ~700-character pieces (~250 tokens; every 20th held
/// out), then the trained weights fused into a new model directory. A random model knows
/// nothing, so LoRA on it only learns token frequencies; after this SFT adapts a model that
/// predicts text, as it would a real base model.
fn pretrain(work: &Path, init: &Path, model: &Path, text: &str, iters: usize, quiet: bool) -> anyhow::Result<RunSummary> {
    let data = work.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let mut pieces = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if pieces.last().is_some_and(|p| !p.is_empty() && p.len() + line.len() > 700) {
            pieces.push(String::new());
        }
        pieces.last_mut().expect("never empty").push_str(line);
    }
    let (mut train, mut valid) = (String::new(), String::new());
    for (i, piece) in pieces.iter().filter(|p| !p.trim().is_empty()).enumerate() {
        let out = if i % 20 == 19 { &mut valid } else { &mut train };
        out.push_str(&serde_json::json!({ "text": piece }).to_string());
        out.push('\n');
    }
    for (name, body) in [("train.jsonl", &train), ("valid.jsonl", &valid)] {
        let path = data.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    let args = TrainArgs {
        model: init.to_path_buf(),
        data,
        adapter_path: work.join("run"),
        fine_tune_type: FineTuneType::Full,
        iters,
        batch_size: 8,
        learning_rate: 1e-2,
        num_layers: -1,
        max_seq_length: 256,
        steps_per_report: 25,
        steps_per_eval: iters.max(1),
        val_batches: 0,
        steps_per_save: iters.max(1),
        seed: 7,
        ..TrainArgs::default()
    };
    let report = brain_train::train(&args, &mut |p| {
        if !quiet && p.event == brain_train::Event::Train {
            eprintln!("  pretrain [{}/{}] loss {:.4} {:.0} tok/s", p.step, p.iters, p.train_loss.unwrap_or(f32::NAN), p.tokens_per_second);
        }
    })
    .context("pretraining the tiny model")?;
    let save_path = model.to_path_buf();
    fuse(&FuseArgs { model: init.to_path_buf(), adapter_path: args.adapter_path.clone(), save_path, dequantize: false, dtype: None, overwrite: false })
        .context("writing the pretrained tiny model")?;
    Ok(report.run)
}


/// Make the tiny model in `model` (its tokenizer trained on the snapshot's text), pretrained with
/// `pretrain_iters` full-training updates unless 0. The pretraining's summary, when it ran.
pub(super) fn make(dir: &Path, snapshot: &Path, model: &Path, pretrain_iters: usize, quiet: bool) -> anyhow::Result<Option<RunSummary>> {
    // Untied head: a tied random embedding makes the untrained model predict its input token
    // (logits ~2·sqrt(hidden)), which LoRA spends the whole demo unlearning.
    let spec = TinySpec {
        hidden: 128,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        intermediate: 256,
        tokenizer_vocab: 1024,
        tie_word_embeddings: false,
        seed: 7,
        ..TinySpec::default()
    };
    let (train_text, valid_text) = (export_text(snapshot, "train"), export_text(snapshot, "valid"));
    let corpus = format!("{train_text}{valid_text}{}", brain_train::tiny::BUILTIN_CORPUS);
    if pretrain_iters == 0 {
        init_tiny(model, &spec, Some(&corpus))?;
        return Ok(None);
    }
    let init = dir.join("pretrain").join("random-model");
    init_tiny(&init, &spec, Some(&corpus))?;
    if !quiet {
        eprintln!("demo: pretraining it: {pretrain_iters} full-training updates on plain text (the exported train split and a built-in corpus)");
    }
    let text = train_text + brain_train::tiny::BUILTIN_CORPUS;
    Ok(Some(pretrain(&dir.join("pretrain"), &init, model, &text, pretrain_iters, quiet)?))
}
