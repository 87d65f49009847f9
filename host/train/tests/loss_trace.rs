//! Loss traces of short SFT and DPO runs that exercise every part of the loop (gradient
//! accumulation, clipping, dropout, warmup, report windows, validation, checkpoints). Each run is
//! done twice and must give identical traces (the seed fixes everything); the trace is printed
//! (`cargo test -p brain-train --test loss_trace -- --nocapture`) so that a refactor of the loop
//! can be checked to leave the numbers bit for bit unchanged.

mod common;

use std::path::Path;

use brain_train::dpo::{dpo, DpoArgs, LossType};
use brain_train::tiny::write_synthetic_chat;
use brain_train::{train, LoraArgs, TrainArgs};
use common::{small_spec, tiny, write_jsonl};
use serde_json::{json, Value};

/// metrics.jsonl without the fields that depend on the clock or the allocator.
fn metrics_without_timing(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["elapsed_s", "tokens_per_second", "peak_memory_gb", "peak_memory", "path"] {
                o.remove(k);
            }
            v.to_string()
        })
        .collect()
}

/// The raw key order of each metrics.jsonl line (the file format, not just the values).
fn metric_keys(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| l.split(['{', ',']).filter_map(|f| f.split_once("\":").map(|(k, _)| k.trim_start_matches('"').to_string())).collect::<Vec<_>>().join(","))
        .collect()
}

fn sft_args(dir: &Path, td: &Path, run: &str) -> TrainArgs {
    TrainArgs {
        model: dir.to_path_buf(),
        data: td.join("data"),
        adapter_path: td.join(run),
        iters: 7,
        batch_size: 2,
        learning_rate: 3e-3,
        warmup: 2,
        num_layers: -1,
        grad_accumulation_steps: 2,
        max_grad_norm: Some(1.0),
        lora: LoraArgs { rank: 4, scale: 10.0, dropout: 0.1, ..Default::default() },
        steps_per_report: 2,
        steps_per_eval: 3,
        val_batches: 0,
        steps_per_save: 4,
        seed: 11,
        ..Default::default()
    }
}

fn sft_trace(dir: &Path, td: &Path, run: &str) -> Vec<String> {
    let mut out = Vec::new();
    let r = train(&sft_args(dir, td, run), &mut |p| {
        out.push(format!("{:?} step {} train {:?} val {:?} lr {:e}", p.event, p.step, p.train_loss.map(f32::to_bits), p.val_loss.map(f32::to_bits), p.learning_rate));
    })
    .unwrap();
    out.push(format!(
        "report steps {} first {:?} final {:?} best {:?}@{:?} tokens {}",
        r.run.steps,
        r.run.first_loss.map(f32::to_bits),
        r.run.final_train_loss.map(f32::to_bits),
        r.run.best_val_loss.map(f32::to_bits),
        r.run.best_step,
        r.run.trained_tokens
    ));
    out.extend(metrics_without_timing(&td.join(run)));
    out.extend(metric_keys(&td.join(run)));
    out
}

#[test]
fn sft_trace_is_reproducible() {
    let (td, dir) = tiny(small_spec());
    write_synthetic_chat(&td.path().join("data"), 24, 6, 4, 3).unwrap();
    let a = sft_trace(&dir, td.path(), "a");
    let b = sft_trace(&dir, td.path(), "b");
    println!("SFT trace:\n{}", a.join("\n"));
    assert_eq!(a, b);
    assert!(a.iter().any(|l| l.starts_with("Save step 4")), "a checkpoint at step 4: {a:?}");
}

fn dpo_args(model: &Path, td: &Path, run: &str) -> DpoArgs {
    DpoArgs {
        train: TrainArgs {
            model: model.to_path_buf(),
            data: td.join("dpo"),
            adapter_path: td.join(run),
            iters: 7,
            batch_size: 2,
            learning_rate: 5e-3,
            warmup: 1,
            num_layers: -1,
            grad_accumulation_steps: 2,
            max_grad_norm: Some(1.0),
            lora: LoraArgs { rank: 4, scale: 20.0, dropout: 0.1, ..Default::default() },
            steps_per_report: 2,
            steps_per_eval: 3,
            steps_per_save: 4,
            seed: 3,
            ..Default::default()
        },
        beta: 0.1,
        loss_type: LossType::Sigmoid,
        sft_weight: 0.5,
        ..Default::default()
    }
}

fn dpo_trace(model: &Path, td: &Path, run: &str) -> Vec<String> {
    let mut out = Vec::new();
    let r = dpo(&dpo_args(model, td, run), &mut |p| {
        let t = p.train.map(|m| [m.loss, m.rewards_chosen, m.rewards_rejected, m.rewards_accuracies, m.logps_chosen, m.grad_norm, m.learning_rate].map(f32::to_bits));
        let e = p.eval.map(|m| ([m.eval_loss, m.eval_rewards_margins, m.eval_rewards_accuracies, m.eval_logps_rejected].map(f32::to_bits), m.eval_pairs));
        out.push(format!("{:?} step {} train {t:?} eval {e:?}", p.event, p.step));
    })
    .unwrap();
    out.push(format!(
        "report steps {} first {:?} best {:?}@{:?} tokens {} pairs {}/{}",
        r.run.steps,
        r.run.first_loss.map(f32::to_bits),
        r.run.best_val_loss.map(f32::to_bits),
        r.run.best_step,
        r.run.trained_tokens,
        r.train_pairs,
        r.valid_pairs
    ));
    out.extend(metrics_without_timing(&td.join(run)));
    out.extend(metric_keys(&td.join(run)));
    out
}

#[test]
fn dpo_trace_is_reproducible() {
    let (td, model) = tiny(small_spec());
    let pair = |i: usize| {
        json!({"prompt": format!("Question {i}: what about item {i}?"), "chosen": format!("Sure, item {i} looks good."), "rejected": format!("No. Not item {i}.")})
    };
    let data = td.path().join("dpo");
    write_jsonl(&data, "train", &(0..8).map(pair).collect::<Vec<_>>());
    write_jsonl(&data, "valid", &(20..23).map(pair).collect::<Vec<_>>());
    let a = dpo_trace(&model, td.path(), "a");
    let b = dpo_trace(&model, td.path(), "b");
    println!("DPO trace:\n{}", a.join("\n"));
    assert_eq!(a, b);
    assert!(a.iter().any(|l| l.starts_with("Save step 4")), "a checkpoint at step 4: {a:?}");
}
