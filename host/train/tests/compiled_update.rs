//! `compile = true`: each batch's loss and gradient through MLX's compile gives the run the
//! uncompiled one gives — batches of different lengths (a trace each) and sizes (the token count
//! the loss is divided by is an input, not baked in), gradient accumulation, clipping, LoRA
//! dropout (the key is an input: new masks every update).

mod common;

use brain_train::trainer::Event;
use brain_train::tokenizer::{Message, Tokenizer};
use brain_train::{train, LoraArgs, TrainArgs, COMPILED_LENGTH_MULTIPLE};
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

    // Dropout: the batch's key is an input of the compiled graph, so each update draws new masks
    // exactly as the uncompiled run does (a key baked in at the first trace would repeat the first
    // masks and drift from it), and the masks matter (the run differs from the one without). A
    // mask is drawn for the batch's shape, so here every example is 1 mod 32 tokens long: the
    // compiled run's padding to a multiple of 32 adds nothing and both runs draw the same masks.
    let tok = Tokenizer::load(&dir).unwrap();
    let aligned: Vec<_> = (0..12)
        .map(|i| {
            let mut answer = (0..=i).map(|w| format!("w{}", (w * 5 + i) % 11)).collect::<Vec<_>>().join(" ");
            let conv = |a: &str| [Message::new("user", &format!("Q{i}?")), Message::new("assistant", a)];
            // One character at a time (never more than one token longer) until the length fits.
            for c in " z".chars().cycle().take(8 * COMPILED_LENGTH_MULTIPLE) {
                if tok.encode_chat(&conv(&answer)).unwrap().tokens.len() % COMPILED_LENGTH_MULTIPLE == 1 {
                    break;
                }
                answer.push(c);
            }
            assert_eq!(tok.encode_chat(&conv(&answer)).unwrap().tokens.len() % COMPILED_LENGTH_MULTIPLE, 1, "{answer:?}");
            json!({"messages": [{"role": "user", "content": format!("Q{i}?")}, {"role": "assistant", "content": answer}]})
        })
        .collect();
    write_jsonl(&data, "train", &aligned);
    let (plain_a, ..) = run(&args("aligned-plain", false, 0.0));
    let (plain_d, r2, w2) = run(&args("dropout-plain", false, 0.3));
    // Compiled with per-block recomputation too: the recomputed blocks draw the same masks.
    let (compiled_d, r3, w3) = run(&TrainArgs { grad_checkpoint: true, ..args("dropout-compiled", true, 0.3) });
    assert_eq!((r2.run.compiled_batches, r3.run.compiled_batches), (0, 12));
    for (a, b) in plain_d.iter().zip(&compiled_d) {
        assert!((a - b).abs() <= 1e-4 * a.abs(), "with dropout: losses {plain_d:?} vs {compiled_d:?}");
    }
    let scale = w2.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = w2.iter().zip(&w3).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4 * scale, "with dropout: adapters differ by {diff}");
    assert!(plain_d.iter().zip(&plain_a).any(|(a, b)| (a - b).abs() > 1e-3 * b.abs()), "dropout changed nothing: {plain_d:?} vs {plain_a:?}");
}
