//! `compile = true`: each batch's loss and gradient through MLX's compile gives the run the
//! uncompiled one gives — batches of different lengths (a trace each) and sizes (the token count
//! the loss is divided by is an input, not baked in), gradient accumulation, clipping.

mod common;

use brain_train::trainer::Event;
use brain_train::{train, LoraArgs, TrainArgs};
use common::{tiny, write_jsonl};
use serde_json::json;

fn run(args: &TrainArgs) -> (Vec<f32>, brain_train::TrainReport, Vec<f32>) {
    let mut losses = Vec::new();
    let r = train(args, &mut |p| {
        if p.event == Event::Train {
            losses.push(p.train_loss.unwrap());
        }
    })
    .unwrap();
    let weights = mlx::io::load_safetensors(&r.run.adapter_file).unwrap();
    let flat = weights.tensors.iter().flat_map(|(_, a)| a.as_type(mlx::Dtype::Float32).unwrap().to_vec::<f32>().unwrap()).collect();
    (losses, r, flat)
}

#[test]
fn a_compiled_update_trains_as_the_uncompiled_one() {
    let (td, dir) = tiny(brain_train::tiny::TinySpec { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, tokenizer_vocab: 320, seed: 3, ..Default::default() });
    let data = td.path().join("data");
    // Answers of 1 to 12 words: every batch has its own length and number of trained tokens.
    let ex: Vec<_> = (0..12)
        .map(|i| {
            let answer = (0..=i).map(|w| format!("w{}", (w * 5 + i) % 11)).collect::<Vec<_>>().join(" ");
            json!({"messages": [{"role": "user", "content": format!("Q{i}?")}, {"role": "assistant", "content": answer}]})
        })
        .collect();
    write_jsonl(&data, "train", &ex);
    let args = |name: &str, compile: bool, dropout: f32| TrainArgs {
        model: dir.clone(),
        data: data.clone(),
        adapter_path: td.path().join(name),
        iters: 6,
        batch_size: 2,
        grad_accumulation_steps: 2,
        max_grad_norm: Some(1.0),
        learning_rate: 1e-2,
        num_layers: -1,
        lora: LoraArgs { rank: 4, scale: 10.0, dropout, ..Default::default() },
        steps_per_report: 1,
        steps_per_save: 1000,
        val_batches: 0,
        compile: Some(compile),
        ..Default::default()
    };
    let (plain, r0, w0) = run(&args("plain", false, 0.0));
    let (compiled, r1, w1) = run(&args("compiled", true, 0.0));
    assert_eq!(r0.run.compiled_batches, 0);
    assert_eq!(r1.run.compiled_batches, 12, "6 updates of 2 batches each, all compiled");
    assert_eq!(plain.len(), 6);
    assert!(plain[5] < plain[0] - 0.1, "the run learns: {plain:?}");
    for (a, b) in plain.iter().zip(&compiled) {
        assert!((a - b).abs() <= 1e-4 * a.abs(), "losses {plain:?} vs {compiled:?}");
    }
    assert_eq!(w0.len(), w1.len());
    let scale = w0.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = w0.iter().zip(&w1).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4 * scale, "adapters differ by {diff} (largest weight {scale})");

    // Dropout draws a new mask each update, which a compiled graph would freeze: not compiled.
    let (_, r2, _) = run(&args("dropout", true, 0.1));
    assert_eq!(r2.run.compiled_batches, 0);
}
