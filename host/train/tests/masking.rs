//! Loss masks: every assistant turn's content and its <|im_end|> are trained; system, user and
//! template tokens are not — checked on the token mask and on the loss itself.

mod common;

use brain_train::data::{collate, load_split};
use brain_train::loss::{nll_sum, DeviceBatch};
use brain_train::models::{Mode, Model};
use brain_train::tokenizer::{Message, Tokenizer};
use common::{small_spec, tiny, write_jsonl};
use mlx::loss::CePath;
use mlx::Dtype;
use serde_json::json;

fn conversation() -> Vec<Message> {
    vec![
        Message::new("system", "Be brief."),
        Message::new("user", "What is 2 + 2?"),
        Message::new("assistant", "4."),
        Message::new("user", "And 3 + 3?"),
        Message::new("assistant", "It is 6.\n\nDone"),
    ]
}

#[test]
fn mask_covers_each_assistant_turn_and_its_end_token() {
    let (_td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let t = tok.encode_chat(&conversation()).unwrap();
    // Same tokens as encoding the rendered string in one piece.
    assert_eq!(t.tokens, tok.encode(&tok.render_chat(&conversation(), false)).unwrap());
    // Trained runs, decoded, are exactly "content<|im_end|>" of each assistant turn.
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut prev = false;
    for (id, m) in t.tokens.iter().zip(&t.mask) {
        if *m {
            if !prev {
                runs.push(Vec::new());
            }
            runs.last_mut().unwrap().push(*id);
        }
        prev = *m;
    }
    let decoded: Vec<String> = runs.iter().map(|r| tok.decode(r, false).unwrap()).collect();
    assert_eq!(decoded, vec!["4.<|im_end|>".to_string(), "It is 6.\n\nDone<|im_end|>".to_string()]);
    // Every <|im_end|> of an assistant turn is trained; those of other turns are not.
    let ends: Vec<bool> = t.tokens.iter().zip(&t.mask).filter(|(id, _)| **id == tok.im_end_id).map(|(_, m)| *m).collect();
    assert_eq!(ends, vec![false, false, true, false, true]);
}

#[test]
fn completions_and_text_formats() {
    let (_td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let c = tok.encode_completion("Say hi", "hi").unwrap();
    let trained: Vec<u32> = c.tokens.iter().zip(&c.mask).filter(|(_, m)| **m).map(|(t, _)| *t).collect();
    assert_eq!(tok.decode(&trained, false).unwrap(), "hi<|im_end|>");
    let t = tok.encode_text("plain text").unwrap();
    assert_eq!(*t.tokens.last().unwrap(), tok.eos_id);
    assert!(t.mask.iter().all(|m| *m));
}

#[test]
fn loss_ignores_prompt_tokens_and_counts_every_assistant_token() {
    let (td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let model = Model::load(&dir, Some(Dtype::Float32)).unwrap();
    let data = td.path().join("data");
    let msgs = |sys: &str, user: &str, a1: &str| {
        json!({"messages": [
            {"role": "system", "content": sys}, {"role": "user", "content": user},
            {"role": "assistant", "content": a1}, {"role": "user", "content": "more"},
            {"role": "assistant", "content": "ok"}]})
    };
    write_jsonl(&data, "train", &[msgs("Be brief.", "Hello there", "Hi."), msgs("Be long!", "Hola amigo", "Hi."), msgs("Be brief.", "Hello there", "Yo.")]);
    let ds = load_split(&data.join("train.jsonl"), &tok, 512).unwrap().unwrap();
    let loss = |i: usize| {
        let b = collate(&[&ds.examples[i]], tok.pad_id);
        let db = DeviceBatch::new(&b).unwrap();
        (nll_sum(&model, &model.params.values, &db, Mode::default(), CePath::Composed).unwrap().item::<f32>().unwrap(), b)
    };
    let (l0, b0) = loss(0);
    // The per-token NLL over the masked targets, computed from full logits.
    let db = DeviceBatch::new(&b0).unwrap();
    let logits = model.logits(&db.inputs).unwrap().to_vec::<f32>().unwrap();
    let v = model.config.vocab_size;
    let mut manual = 0f64;
    for j in 0..b0.len {
        if b0.weights[j] == 1.0 {
            let row = &logits[j * v..(j + 1) * v];
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = m as f64 + row.iter().map(|x| ((x - m) as f64).exp()).sum::<f64>().ln();
            manual += lse - row[b0.targets[j] as usize] as f64;
        }
    }
    assert!((l0 as f64 - manual).abs() < 1e-4 * manual.abs(), "{l0} vs {manual}");
    // Trained positions are exactly the assistant tokens: "Hi.<|im_end|>" and "ok<|im_end|>".
    let trained: Vec<u32> = b0.targets.iter().zip(&b0.weights).filter(|(_, w)| **w == 1.0).map(|(t, _)| *t as u32).collect();
    assert_eq!(tok.decode(&trained, false).unwrap(), "Hi.<|im_end|>ok<|im_end|>");
    assert_eq!(b0.tokens, trained.len());
    // Changing the prompt changes the context but not which tokens count; changing the first
    // assistant answer changes the loss.
    let (l2, b2) = loss(2);
    assert_eq!(b2.tokens, b0.tokens);
    assert!((l2 - l0).abs() > 1e-4);
    // Flipping masked target ids (prompt positions) leaves the loss unchanged.
    let mut b3 = b0.clone();
    for j in 0..b3.len {
        if b3.weights[j] == 0.0 {
            b3.targets[j] = (b3.targets[j] + 1) % v as i32;
        }
    }
    let l3 = nll_sum(&model, &model.params.values, &DeviceBatch::new(&b3).unwrap(), Mode::default(), CePath::Composed).unwrap().item::<f32>().unwrap();
    assert_eq!(l3, l0);
    // And the fused kernel agrees with composed ops.
    let lf = nll_sum(&model, &model.params.values, &db, Mode::default(), CePath::Fused).unwrap().item::<f32>().unwrap();
    assert!((lf - l0).abs() < 1e-4 * l0.abs(), "fused {lf} vs composed {l0}");
}
