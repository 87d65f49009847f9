//! DPO on a tiny model: the chosen-vs-rejected margin grows on held-out pairs; the reference
//! log-probs are computed once (before training), never change, and equal the reference
//! recomputed from its definition (the base model, or the frozen SFT adapter); resume after an
//! interruption continues exactly; a NaN/inf loss stops the run as it stops SFT.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use brain_train::dpo::{dpo, evaluate_split, load_pairs, reference_logps, DpoArgs, DpoProgress, LossType, Reference, ReferenceCache, REFERENCE_FILE};
use brain_train::models::Model;
use brain_train::tokenizer::Tokenizer;
use brain_train::{adapters, train, Event, LoraArgs, StopReason, TrainArgs};
use common::{assert_non_finite_stop, small_spec, tiny, write_jsonl};
use mlx::loss::CePath;
use serde_json::json;

const THINGS: [&str; 12] = ["the plan", "the test", "the model", "the data", "the code", "the run", "the file", "the map", "the note", "the step", "the tool", "the list"];

fn pair(i: usize, thing: &str, conversational: bool) -> serde_json::Value {
    let prompt = format!("Question {i}: what about {thing}?");
    let chosen = format!("Sure, {thing} looks good to me.");
    let rejected = format!("No. I will not look at {thing}.");
    if conversational {
        json!({"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}], "rejected": [{"role": "assistant", "content": rejected}]})
    } else {
        json!({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    }
}

/// train: 8 pairs (plain and conversational mixed); valid and test: held-out things.
fn write_pairs(data: &Path) {
    let train: Vec<_> = (0..8).map(|i| pair(i, THINGS[i], i % 2 == 0)).collect();
    write_jsonl(data, "train", &train);
    write_jsonl(data, "valid", &[pair(20, THINGS[8], true), pair(21, THINGS[9], false)]);
    write_jsonl(data, "test", &[pair(30, THINGS[10], false), pair(31, THINGS[11], true)]);
}

fn args(model: &Path, data: &Path, run: PathBuf, iters: usize) -> DpoArgs {
    DpoArgs {
        train: TrainArgs {
            model: model.to_path_buf(),
            data: data.to_path_buf(),
            adapter_path: run,
            iters,
            batch_size: 4,
            learning_rate: 5e-3,
            num_layers: -1,
            lora: LoraArgs { rank: 8, scale: 20.0, ..Default::default() },
            lr_schedule: brain_train::optim::ScheduleKind::Constant,
            steps_per_report: 1,
            steps_per_eval: 10,
            steps_per_save: 1000,
            seed: 3,
            ..Default::default()
        },
        beta: 0.1,
        loss_type: LossType::Sigmoid,
        ..Default::default()
    }
}

fn read_cache(run: &Path) -> String {
    std::fs::read_to_string(run.join(REFERENCE_FILE)).unwrap()
}

#[test]
fn dpo_raises_held_out_margin_with_a_fixed_reference() {
    let (td, model) = tiny(small_spec());
    let data = td.path().join("dpo");
    write_pairs(&data);
    let run = td.path().join("run");
    let a = args(&model, &data, run.clone(), 30);

    let before = evaluate_split(&a, "test", None).unwrap();
    assert_eq!(before.eval_rewards_margins, 0.0);

    let mut at_first_step: Option<String> = None;
    let mut events: Vec<DpoProgress> = Vec::new();
    let report = dpo(&a, &mut |p| {
        if p.event == Event::Train && at_first_step.is_none() {
            at_first_step = Some(read_cache(&run));
        }
        events.push(p.clone());
    })
    .unwrap();
    assert_eq!(report.reference, Reference::Base { model: model.clone() });
    assert!(report.reference_description.contains("adapters disabled"));
    assert_eq!(report.run.steps, 30);

    // The cache was written before the first update and never changed.
    let at_end = read_cache(&run);
    assert_eq!(at_first_step.as_deref(), Some(at_end.as_str()));
    // It equals the reference recomputed now from its definition: the bare base model.
    let cache: ReferenceCache = serde_json::from_str(&at_end).unwrap();
    let tok = Tokenizer::load(&model).unwrap();
    let base = Model::load(&model, None).unwrap();
    let pairs = load_pairs(&data.join("train.jsonl"), &tok, 2048).unwrap().unwrap();
    let again = reference_logps(&base, &pairs.pairs, 4, tok.pad_id, CePath::Auto).unwrap();
    assert_eq!(again, cache.train);
    // The trained policy does not give those numbers any more.
    let mut policy = Model::load(&model, None).unwrap();
    adapters::load_adapters(&mut policy, &run).unwrap();
    let now = reference_logps(&policy, &pairs.pairs, 4, tok.pad_id, CePath::Auto).unwrap();
    assert_ne!(now, cache.train);

    // At step 0 policy == reference: sigmoid loss ln 2, zero margins.
    let first_val = events.iter().find(|e| e.event == Event::Val).unwrap().eval.unwrap();
    assert!((first_val.eval_loss - std::f32::consts::LN_2).abs() < 1e-5, "{first_val:?}");
    assert_eq!(first_val.eval_rewards_margins, 0.0);
    // Training metrics carry TRL's names and move the right way.
    let m = report.metrics.unwrap();
    assert!(m.rewards_margins > 0.0 && m.rewards_accuracies > 0.5, "{m:?}");
    assert!(m.grad_norm > 0.0 && m.tokens_per_second > 0.0 && m.learning_rate == 5e-3);
    let line = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(line.contains("\"rewards/accuracies\"") && line.contains("\"eval_rewards/margins\""));

    // Held-out pairs: the margin grew and most pairs are ranked right.
    let after = evaluate_split(&a, "test", Some(&run)).unwrap();
    assert!(after.eval_rewards_margins > 0.5, "{after:?}");
    assert_eq!(after.eval_rewards_accuracies, 1.0, "{after:?}");
    assert!(after.eval_loss < before.eval_loss);
    // The adapter config records DPO and its reference.
    let cfg = std::fs::read_to_string(run.join("adapter_config.json")).unwrap();
    assert!(cfg.contains("\"loss_type\": \"sigmoid\"") && cfg.contains("adapters disabled"), "{cfg}");
}

/// `compile`: each batch's DPO loss and gradient through MLX's compile (the pair arrays, reference
/// log-probs, the SFT term's token count and the batch's loss weight as inputs; rows padded to a
/// multiple of 32) trains as the uncompiled run: every update's loss and metrics, and the
/// adapter, with gradient accumulation (two batches of different lengths per update), the SFT
/// term and clipping (DPO reports the gradient norm). (Dropout under compile: compiled_update.rs.)
#[test]
fn a_compiled_dpo_update_trains_as_the_uncompiled_one() {
    let (td, model) = tiny(small_spec());
    let data = td.path().join("dpo");
    write_pairs(&data);
    let run = |name: &str, compile: bool| {
        let mut a = DpoArgs { sft_weight: 0.5, ..args(&model, &data, td.path().join(name), 6) };
        a.train.batch_size = 2;
        a.train.grad_accumulation_steps = 2;
        a.train.max_grad_norm = Some(1.0);
        a.train.compile = Some(compile);
        let mut losses = Vec::new();
        let report = dpo(&a, &mut |p| {
            if let (Event::Train, Some(m)) = (p.event, p.train) {
                losses.push((m.loss, m.rewards_margins, m.grad_norm));
            }
        })
        .unwrap();
        let w = mlx::io::load_safetensors(&report.run.adapter_file).unwrap();
        let flat: Vec<f32> = w.tensors.iter().flat_map(|(_, a)| a.as_type(mlx::Dtype::Float32).unwrap().to_vec::<f32>().unwrap()).collect();
        (losses, report.run.compiled_batches, flat)
    };
    let (plain, n0, w0) = run("plain", false);
    let (compiled, n1, w1) = run("compiled", true);
    assert_eq!((n0, n1), (0, 12), "6 updates of 2 batches, all compiled");
    assert_eq!(plain.len(), 6);
    assert!(plain[5].0 < plain[0].0, "the run learns: {plain:?}");
    for (a, b) in plain.iter().zip(&compiled) {
        for (x, y) in [(a.0, b.0), (a.1, b.1), (a.2, b.2)] {
            assert!((x - y).abs() <= 1e-4 * x.abs().max(1e-2), "updates {plain:?} vs {compiled:?}");
        }
    }
    let scale = w0.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = w0.iter().zip(&w1).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4 * scale, "adapters differ by {diff} (largest weight {scale})");
}

#[test]
fn every_loss_type_trains() {
    let (td, model) = tiny(small_spec());
    let data = td.path().join("dpo");
    write_pairs(&data);
    for (lt, eps, sft) in [(LossType::Ipo, 0.0, 0.0), (LossType::Hinge, 0.0, 0.0), (LossType::Robust, 0.1, 0.0), (LossType::Sigmoid, 0.0, 0.5)] {
        let run = td.path().join(format!("run-{lt:?}"));
        let a = DpoArgs { loss_type: lt, label_smoothing: eps, sft_weight: sft, ..args(&model, &data, run.clone(), 12) };
        let r = dpo(&a, &mut |_| {}).unwrap();
        let m = r.metrics.unwrap();
        assert!(m.loss.is_finite() && m.rewards_margins > 0.0, "{lt:?}: {m:?}");
    }
}

#[test]
fn starting_from_sft_the_reference_is_the_frozen_adapter() {
    let (td, model) = tiny(small_spec());
    let data = td.path().join("dpo");
    write_pairs(&data);
    // A short SFT on the chosen answers.
    let sft_data = td.path().join("sft");
    let lines: Vec<_> = (0..8)
        .map(|i| json!({"prompt": format!("Question {i}: what about {}?", THINGS[i]), "completion": format!("Sure, {} looks good to me.", THINGS[i])}))
        .collect();
    write_jsonl(&sft_data, "train", &lines);
    let sft_run = td.path().join("sft-run");
    let sft = TrainArgs {
        model: model.clone(),
        data: sft_data,
        adapter_path: sft_run.clone(),
        iters: 10,
        batch_size: 4,
        learning_rate: 5e-3,
        num_layers: -1,
        lora: LoraArgs { rank: 4, scale: 20.0, ..Default::default() },
        steps_per_eval: 1000,
        steps_per_save: 1000,
        ..Default::default()
    };
    train(&sft, &mut |_| {}).unwrap();

    let run = td.path().join("dpo-run");
    // LoRA settings of the SFT adapter win over the arguments' (rank 8 here, 4 in the adapter).
    let a = DpoArgs { reference: Some(sft_run.clone()), ..args(&model, &data, run.clone(), 6) };
    let mut first_val = None;
    let report = dpo(&a, &mut |p| {
        if p.event == Event::Val && first_val.is_none() {
            first_val = p.eval;
        }
    })
    .unwrap();
    assert_eq!(report.reference, Reference::SftAdapter { model: model.clone(), adapter: sft_run.clone() });
    // Policy starts as the SFT adapter, and so does the reference: loss ln 2 at step 0.
    let v = first_val.unwrap();
    assert!((v.eval_loss - std::f32::consts::LN_2).abs() < 1e-5, "{v:?}");
    // The cached reference is base + SFT adapter, not the bare base.
    let cache = ReferenceCache::read(&run).unwrap();
    let tok = Tokenizer::load(&model).unwrap();
    let pairs = load_pairs(&data.join("train.jsonl"), &tok, 2048).unwrap().unwrap();
    let mut with_sft = Model::load(&model, None).unwrap();
    adapters::load_adapters(&mut with_sft, &sft_run).unwrap();
    assert_eq!(reference_logps(&with_sft, &pairs.pairs, 4, tok.pad_id, CePath::Auto).unwrap(), cache.train);
    let base = Model::load(&model, None).unwrap();
    assert_ne!(reference_logps(&base, &pairs.pairs, 4, tok.pad_id, CePath::Auto).unwrap(), cache.train);
    let cfg = adapters::AdapterConfig::read(&run).unwrap();
    assert_eq!(cfg.lora_parameters.unwrap().rank, 4);
    assert!(report.run.steps == 6 && report.run.stop == StopReason::Completed);
}

#[test]
fn resume_continues_exactly() {
    let (td, model) = tiny(small_spec());
    let data = td.path().join("dpo");
    write_pairs(&data);
    let losses = |events: &[DpoProgress]| -> Vec<(usize, f32)> {
        events.iter().filter(|e| e.event == Event::Train).map(|e| (e.step, e.train.unwrap().loss)).collect()
    };
    let mut whole = Vec::new();
    dpo(&args(&model, &data, td.path().join("whole"), 8), &mut |p| whole.push(p.clone())).unwrap();

    let run = td.path().join("parts");
    let cancel = Arc::new(AtomicBool::new(false));
    let mut a = args(&model, &data, run.clone(), 8);
    a.train.cancel = Some(cancel.clone());
    let mut first = Vec::new();
    let r = dpo(&a, &mut |p| {
        if p.event == Event::Train && p.step == 4 {
            cancel.store(true, Ordering::SeqCst);
        }
        first.push(p.clone());
    })
    .unwrap();
    assert_eq!((r.run.stop, r.run.steps), (StopReason::Cancelled, 4));
    let cache_before = read_cache(&run);
    a.train.cancel = None;
    a.train.resume = true;
    let mut second = Vec::new();
    let r = dpo(&a, &mut |p| second.push(p.clone())).unwrap();
    assert_eq!(r.run.steps, 8);
    assert_eq!(r.reference_seconds, 0.0, "resume reads the cached reference");
    assert_eq!(read_cache(&run), cache_before);
    let mut parts = losses(&first);
    parts.extend(losses(&second));
    assert_eq!(parts, losses(&whole));
}

#[test]
fn nan_loss_stops_with_a_clear_error_as_sft_does() {
    let (td, model) = tiny(small_spec());
    let data = td.path().join("dpo");
    write_pairs(&data);
    let mut a = args(&model, &data, td.path().join("run"), 6);
    // An infinite step turns the weights non-finite after the first update.
    a.train.learning_rate = f32::INFINITY;
    a.train.steps_per_save = 1;
    let mut events: Vec<DpoProgress> = Vec::new();
    let e = dpo(&a, &mut |p| events.push(p.clone())).unwrap_err();
    let done = assert_non_finite_stop(&a.train.adapter_path, &e);
    // No training metrics from the failed update.
    assert!(done.get("loss").is_none(), "{done}");
    let last = events.last().unwrap();
    assert!(last.event == Event::Done && last.train.is_none() && last.error.as_deref() == Some(e.to_string().as_str()));
}

#[test]
fn pairs_score_only_the_response() {
    let (td, model) = tiny(small_spec());
    let tok = Tokenizer::load(&model).unwrap();
    let data = td.path().join("p");
    write_jsonl(
        &data,
        "train",
        &[
            pair(0, "the plan", false),
            pair(0, "the plan", true),
            // History with an earlier assistant turn, and a system key.
            json!({"system": "Be brief.", "prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "and?"}],
                   "chosen": {"role": "assistant", "content": "more."}, "rejected": "less."}),
        ],
    );
    let set = load_pairs(&data.join("train.jsonl"), &tok, 2048).unwrap().unwrap();
    assert_eq!(set.pairs[0], set.pairs[1], "plain and conversational forms tokenize alike");
    let trained = |t: &brain_train::tokenizer::Tokenized| {
        let ids: Vec<u32> = t.tokens.iter().zip(&t.mask).filter(|(_, m)| **m).map(|(id, _)| *id).collect();
        tok.decode(&ids, false).unwrap()
    };
    assert_eq!(trained(&set.pairs[0].chosen), "Sure, the plan looks good to me.<|im_end|>\n");
    assert_eq!(trained(&set.pairs[0].rejected), "No. I will not look at the plan.<|im_end|>\n");
    assert_eq!(trained(&set.pairs[2].chosen), "more.<|im_end|>\n");
    assert_eq!(trained(&set.pairs[2].rejected), "less.<|im_end|>\n");
    assert!(tok.decode(&set.pairs[2].chosen.tokens, false).unwrap().starts_with("<|im_start|>system\nBe brief."));

    write_jsonl(&data, "train", &[pair(0, "the plan", false), json!({"prompt": "x", "chosen": "y"})]);
    let e = load_pairs(&data.join("train.jsonl"), &tok, 2048).unwrap_err().to_string();
    assert!(e.contains("train.jsonl:2") && e.contains("rejected"), "{e}");
}
