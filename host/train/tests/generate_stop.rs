//! After SFT on chat data whose assistant turns end with `<|im_end|>` (trained, as every
//! assistant turn's end is), greedy generation reproduces the answer and stops at the
//! end-of-turn token; the one-shot `generate` entry point loads the adapter the same way.

mod common;

use brain_train::generate::{generate, FinishReason, GenOptions, GenerateArgs, Generator};
use brain_train::tokenizer::Message;
use brain_train::{train, FineTuneType, LoraArgs, TrainArgs};
use common::{small_spec, tiny, write_jsonl};
use serde_json::json;

const PAIRS: [(&str, &str); 6] = [
    ("Say hi.", "hi there."),
    ("Name a color.", "blue."),
    ("What is the plan?", "train then test."),
    ("Count to three.", "one two three."),
    ("Who are you?", "a tiny model."),
    ("Is it done?", "yes."),
];

#[test]
fn sft_model_stops_at_end_of_turn() {
    let (td, model) = tiny(small_spec());
    let data = td.path().join("data");
    let lines: Vec<_> = PAIRS
        .iter()
        .map(|(q, a)| json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}))
        .collect();
    write_jsonl(&data, "train", &lines);
    let run = td.path().join("run");
    let args = TrainArgs {
        model: model.clone(),
        data: data.clone(),
        adapter_path: run.clone(),
        fine_tune_type: FineTuneType::Full,
        iters: 300,
        batch_size: 6,
        learning_rate: 3e-3,
        num_layers: -1,
        lora: LoraArgs { rank: 16, scale: 10.0, ..Default::default() },
        lr_schedule: brain_train::optim::ScheduleKind::Constant,
        steps_per_report: 1000,
        steps_per_eval: 1000,
        steps_per_save: 1000,
        seed: 1,
        ..Default::default()
    };
    let report = train(&args, &mut |_| {}).unwrap();
    assert!(report.run.final_train_loss.unwrap() < 0.1, "SFT did not fit: {:?}", report.run.final_train_loss);

    let mut g = Generator::load(&model, std::slice::from_ref(&run), None).unwrap();
    let opts = GenOptions { max_tokens: 40, ..Default::default() };
    for (q, a) in PAIRS {
        let out = g.reply(&[Message::new("user", q)], &opts).unwrap();
        assert_eq!(out.finish_reason, FinishReason::Stop, "{q:?} → {:?}", out.text);
        assert_eq!(out.text, a);
        assert!(out.generation_tokens < 40);
    }

    // The base model alone does not produce the answers.
    let mut base = Generator::load(&model, &[], None).unwrap();
    let out = base.reply(&[Message::new("user", PAIRS[0].0)], &opts).unwrap();
    assert_ne!(out.text, PAIRS[0].1);

    // One-shot entry point (mlx-lm's argument names).
    let one = generate(&GenerateArgs { model: model.clone(), adapter_path: vec![run.clone()], prompt: PAIRS[1].0.into(), max_tokens: 40, ..Default::default() }).unwrap();
    assert_eq!((one.text.as_str(), one.finish_reason), (PAIRS[1].1, FinishReason::Stop));
    assert!(one.generation_tps > 0.0 && one.prompt_tokens > 0);
}
