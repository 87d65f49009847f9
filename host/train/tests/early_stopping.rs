//! Early stopping keeps the adapter of the best validation loss. The validation set is made to
//! turn worse: training answers every question with one word, validation with another, so the
//! validation loss first falls (the chat format and the answer's shape are learned) and then
//! rises (the training word wins). The adapter left in the run directory must score the best
//! validation loss seen — measured independently with `evaluate_test` on the validation lines —
//! not the last one.

mod common;

use brain_train::{evaluate_test, train, Event, LoraArgs, StopReason, TestArgs, TrainArgs};
use common::{small_spec, tiny, write_jsonl};
use serde_json::json;

fn chat(q: &str, a: &str) -> serde_json::Value {
    json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
}

#[test]
fn early_stopping_keeps_the_best_validation_adapter() {
    let (td, model) = tiny(small_spec());
    let data = td.path().join("data");
    let questions: Vec<String> = (0..12).map(|i| format!("Which colour is item {i}?")).collect();
    let train_lines: Vec<_> = questions.iter().map(|q| chat(q, "red red red")).collect();
    let valid_lines: Vec<_> = questions.iter().take(6).map(|q| chat(q, "blue blue blue")).collect();
    write_jsonl(&data, "train", &train_lines);
    write_jsonl(&data, "valid", &valid_lines);
    // The same validation lines as a test split, for the independent measurement.
    let val_as_test = td.path().join("val-as-test");
    write_jsonl(&val_as_test, "test", &valid_lines);

    let run = td.path().join("run");
    let args = TrainArgs {
        model: model.clone(),
        data: data.clone(),
        adapter_path: run.clone(),
        iters: 60,
        batch_size: 4,
        learning_rate: 2e-2,
        num_layers: -1,
        lora: LoraArgs { rank: 8, scale: 20.0, ..Default::default() },
        steps_per_report: 1,
        steps_per_eval: 2,
        val_batches: 0,
        steps_per_save: 1000,
        patience: Some(4),
        seed: 5,
        ..Default::default()
    };
    let mut vals: Vec<(usize, f32)> = Vec::new();
    let report = train(&args, &mut |p| {
        if p.event == Event::Val {
            vals.push((p.step, p.val_loss.unwrap()));
        }
    })
    .unwrap();

    // The set did turn worse, and patience stopped the run.
    let (best_step, best) = vals.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let (last_step, last) = *vals.last().unwrap();
    assert!(best_step > 0 && vals[0].1 > best, "validation never improved: {vals:?}");
    assert!(last > best + 0.05 && last_step > best_step, "validation did not turn worse: {vals:?}");
    assert_eq!(report.run.stop, StopReason::EarlyStopped, "{vals:?}");
    assert_eq!((report.run.best_step, report.run.best_val_loss), (Some(best_step), Some(best)), "{vals:?}");

    // The adapter in the run directory is the best one: it scores the best loss, not the last.
    let measured = evaluate_test(&TestArgs {
        model,
        data: val_as_test,
        adapter_path: Some(run),
        batch_size: 4,
        max_seq_length: 2048,
        test_batches: 0,
        dtype: None,
        loss: "auto".into(),
    })
    .unwrap()
    .test_loss;
    assert!((measured - best).abs() < 1e-4, "kept adapter scores {measured}; best {best} at step {best_step}, last {last} at {last_step}");
}
