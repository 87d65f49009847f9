//! The trainer end to end on tiny models: overfitting, exact resume, early stopping, NaN stop
//! (the same stop for DPO: tests/dpo_train.rs).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use brain_train::tiny::{write_synthetic_chat, TinySpec};
use brain_train::trainer::{Event, StopReason};
use brain_train::{train, FineTuneType, LoraArgs, TrainArgs};
use common::{assert_non_finite_stop, small_spec, tiny, write_jsonl};
use serde_json::json;

fn losses_of(args: &TrainArgs) -> (Vec<(usize, f32)>, brain_train::TrainReport) {
    let mut losses = Vec::new();
    let r = train(args, &mut |p| {
        if p.event == Event::Train {
            losses.push((p.step, p.train_loss.unwrap()));
        }
    })
    .unwrap();
    (losses, r)
}

#[test]
fn overfits_sixteen_examples() {
    let (td, dir) = tiny(TinySpec { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, tokenizer_vocab: 320, seed: 1, ..Default::default() });
    let data = td.path().join("data");
    let ex: Vec<_> = (0..16)
        .map(|i| json!({"messages": [{"role": "user", "content": format!("Item {i}?")}, {"role": "assistant", "content": format!("The answer is {}.", i * 7 % 16)}]}))
        .collect();
    write_jsonl(&data, "train", &ex);
    let args = TrainArgs {
        model: dir,
        data,
        adapter_path: td.path().join("run"),
        iters: 250,
        batch_size: 16,
        learning_rate: 3e-3,
        num_layers: -1,
        lora: LoraArgs {
            rank: 16,
            scale: 20.0,
            dropout: 0.0,
            keys: brain_train::models::LINEAR_KEYS.iter().map(|s| s.to_string()).collect(),
        },
        steps_per_report: 1,
        steps_per_save: 1000,
        ..Default::default()
    };
    let (losses, r) = losses_of(&args);
    let last: f32 = losses[losses.len() - 2..].iter().map(|l| l.1).sum::<f32>() / 2.0;
    // Below 0.2 (it was 0.1 when `<|im_end|>` ended the trained span): the tied random embedding
    // makes each position predict its own input token, and the `\n` the template writes after
    // `<|im_end|>` — trained now that the mask follows the template — is the one target LoRA alone
    // learns slowly (measured: 0.18–0.20 at 150 updates, by the BLAS kernels' rounding; 0.036
    // with that target left out). 250 updates leave it well below the bound.
    assert!(last < 0.2, "final train loss {last} (first {})", losses[0].1);
    assert_eq!(r.run.stop, StopReason::Completed);
    assert!(r.run.adapter_file.exists());
}

fn resume_args(td: &std::path::Path, dir: &std::path::Path, run: &str) -> TrainArgs {
    TrainArgs {
        model: dir.to_path_buf(),
        data: td.join("data"),
        adapter_path: td.join(run),
        iters: 8,
        batch_size: 2,
        learning_rate: 3e-3,
        warmup: 2,
        num_layers: -1,
        grad_accumulation_steps: 2,
        max_grad_norm: Some(1.0),
        lora: LoraArgs { rank: 4, scale: 10.0, dropout: 0.1, ..Default::default() },
        steps_per_report: 1,
        steps_per_eval: 3,
        val_batches: 0,
        steps_per_save: 100,
        seed: 5,
        ..Default::default()
    }
}

#[test]
fn interrupted_then_resumed_equals_uninterrupted() {
    let (td, dir) = tiny(small_spec());
    write_synthetic_chat(&td.path().join("data"), 24, 6, 4, 3).unwrap();
    let (full, _) = losses_of(&resume_args(td.path(), &dir, "a"));
    assert_eq!(full.len(), 8);

    // Same run, cancelled after update 3 (a checkpoint is written), then resumed.
    let cancel = Arc::new(AtomicBool::new(false));
    let mut args = resume_args(td.path(), &dir, "b");
    args.cancel = Some(cancel.clone());
    let mut first = Vec::new();
    let r = train(&args, &mut |p| {
        if p.event == Event::Train {
            first.push((p.step, p.train_loss.unwrap()));
            if p.step == 3 {
                cancel.store(true, Ordering::SeqCst);
            }
        }
    })
    .unwrap();
    assert_eq!(r.run.stop, StopReason::Cancelled);
    assert_eq!(r.run.steps, 3);
    let mut args = resume_args(td.path(), &dir, "b");
    args.resume = true;
    let (rest, r) = losses_of(&args);
    assert_eq!(r.run.steps, 8);
    let resumed: Vec<(usize, f32)> = first.into_iter().chain(rest).collect();
    assert_eq!(resumed, full, "losses after resume differ from the uninterrupted run");
    // Both runs end with the same best adapter.
    let a = std::fs::read(td.path().join("a/adapters.safetensors")).unwrap();
    let b = std::fs::read(td.path().join("b/adapters.safetensors")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn resume_without_checkpoint_is_an_error() {
    let (td, dir) = tiny(small_spec());
    write_synthetic_chat(&td.path().join("data"), 8, 2, 2, 3).unwrap();
    let mut args = resume_args(td.path(), &dir, "c");
    args.resume = true;
    let e = train(&args, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("no checkpoint"), "{e}");
}

#[test]
fn early_stopping_and_best_adapter() {
    let (td, dir) = tiny(small_spec());
    write_synthetic_chat(&td.path().join("data"), 16, 4, 2, 9).unwrap();
    let mut args = resume_args(td.path(), &dir, "d");
    // A huge learning rate makes validation worse after the first updates.
    args.learning_rate = 0.5;
    args.iters = 40;
    args.steps_per_eval = 1;
    args.patience = Some(2);
    args.max_grad_norm = None;
    args.lora.dropout = 0.0;
    let mut vals = Vec::new();
    let r = train(&args, &mut |p| {
        if p.event == Event::Val {
            vals.push(p.val_loss.unwrap());
        }
    })
    .unwrap();
    assert_eq!(r.run.stop, StopReason::EarlyStopped, "val losses {vals:?}");
    let best = vals.iter().cloned().fold(f32::INFINITY, f32::min);
    assert_eq!(r.run.best_val_loss, Some(best));
    // The kept adapter is the best one: evaluating it on valid gives the best loss.
    let metrics = std::fs::read_to_string(td.path().join("d/metrics.jsonl")).unwrap();
    assert!(metrics.lines().count() >= vals.len());
}

#[test]
fn nan_loss_stops_with_a_clear_error() {
    let (td, dir) = tiny(small_spec());
    write_synthetic_chat(&td.path().join("data"), 8, 2, 2, 3).unwrap();
    let mut args = resume_args(td.path(), &dir, "e");
    args.learning_rate = f32::INFINITY;
    args.warmup = 0;
    args.max_grad_norm = None;
    args.steps_per_save = 1;
    let mut events = Vec::new();
    let e = train(&args, &mut |p| events.push(p.clone())).unwrap_err();
    let done = assert_non_finite_stop(&args.adapter_path, &e);
    // The failed loss: NaN/inf to the callback, null in JSON.
    assert!(done["train_loss"].is_null(), "{done}");
    let last = events.last().unwrap();
    assert!(last.event == Event::Done && !last.train_loss.unwrap().is_finite() && last.error.as_deref() == Some(e.to_string().as_str()));
}

#[test]
fn full_fine_tuning_saves_layer_weights() {
    let (td, dir) = tiny(small_spec());
    write_synthetic_chat(&td.path().join("data"), 8, 2, 2, 3).unwrap();
    let mut args = resume_args(td.path(), &dir, "f");
    args.fine_tune_type = FineTuneType::Full;
    args.num_layers = 1;
    args.iters = 3;
    args.lora.dropout = 0.0;
    let (losses, r) = losses_of(&args);
    assert_eq!(losses.len(), 3);
    let st = mlx::io::load_safetensors(&r.run.adapter_file).unwrap();
    assert!(st.tensors.keys().all(|k| k.starts_with("model.layers.1.")), "{:?}", st.tensors.keys().collect::<Vec<_>>());
    assert!(st.tensors.contains_key("model.layers.1.mlp.down_proj.weight"));
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(td.path().join("f/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["fine_tune_type"], "full");
}

