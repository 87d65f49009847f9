//! Loss masks: every assistant turn is trained from where the template opens it for generation
//! through its `<|im_end|>` and the `\n` the template writes after it; system, user and the other
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
    assert_eq!(t.tokens, tok.encode(&tok.render_chat(&conversation(), false).unwrap()).unwrap());
    // Trained runs, decoded, are exactly "content<|im_end|>\n" of each assistant turn.
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
    assert_eq!(decoded, vec!["4.<|im_end|>\n".to_string(), "It is 6.\n\nDone<|im_end|>\n".to_string()]);
    // Every <|im_end|> of an assistant turn is trained; those of other turns are not.
    let im_end = tok.inner().token_to_id("<|im_end|>").unwrap();
    assert_eq!(tok.end_of_turn(), Some("<|im_end|>"));
    let ends: Vec<bool> = t.tokens.iter().zip(&t.mask).filter(|(id, _)| **id == im_end).map(|(_, m)| *m).collect();
    assert_eq!(ends, vec![false, false, true, false, true]);
}

/// mlx-lm's `--mask-prompt` span: the tokens after the prompt rendered with the generation prompt.
#[test]
fn the_last_turn_is_trained_from_the_generation_prompt_on() {
    let (_td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let convs = [
        vec![Message::new("user", "Say hi"), Message::new("assistant", "hi")],
        vec![Message::new("system", "Terse."), Message::new("user", "x\n\n"), Message::new("assistant", "\n\ny  ")],
        conversation(),
    ];
    for c in &convs {
        let t = tok.encode_chat(c).unwrap();
        let p = tok.encode(&tok.render_chat(&c[..c.len() - 1], true).unwrap()).unwrap().len();
        assert!(t.mask[p..].iter().all(|m| *m) && !t.mask[p - 1], "{c:?}: {:?} from {p}", t.mask);
        if c.len() == 2 || c[0].role == "system" && c.len() == 3 {
            assert_eq!(t.mask, (0..t.tokens.len()).map(|i| i >= p).collect::<Vec<_>>(), "{c:?}");
        }
    }
}

/// Tool calls reach a template that renders them; a template that does not (ChatML) gets them
/// in the content, Qwen2.5-style.
#[test]
fn tool_calls_go_to_the_template_when_it_renders_them() {
    let (_td, dir) = tiny(small_spec());
    let line = r#"{"messages": [{"role": "user", "content": "w?"}, {"role": "assistant", "content": null, "tool_calls": [{"function": {"name": "f", "arguments": {"b": 1, "a": 2}}}]}, {"role": "tool", "content": "3"}, {"role": "assistant", "content": "3."}]}"#;
    let tok = Tokenizer::load(&dir).unwrap();
    let msgs = brain_train::data::parse_messages(line, &tok).unwrap();
    assert_eq!(msgs[1].content, "<tool_call>\n{\"arguments\":{\"a\":2,\"b\":1},\"name\":\"f\"}\n</tool_call>");
    assert!(msgs[1].extra.get("tool_calls").is_none());
    let cfg_path = dir.join("tokenizer_config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["chat_template"] = json!("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% for c in m.tool_calls or [] %}[{{ c.function.name }} {{ c.function.arguments | tojson }}]{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let tok = Tokenizer::load(&dir).unwrap();
    let msgs = brain_train::data::parse_messages(line, &tok).unwrap();
    let text = tok.render_chat(&msgs, false).unwrap();
    assert!(text.contains("<|im_start|>assistant\n[f {\"b\": 1, \"a\": 2}]<|im_end|>"), "arguments keep their written order: {text}");
    let (_, t) = brain_train::data::tokenize_line(line, &tok).unwrap();
    let trained: Vec<u32> = t.tokens.iter().zip(&t.mask).filter(|(_, m)| **m).map(|(id, _)| *id).collect();
    assert_eq!(tok.decode(&trained, false).unwrap(), "[f {\"b\": 1, \"a\": 2}]<|im_end|>\n3.<|im_end|>\n");
}

#[test]
fn completions_and_text_formats() {
    let (_td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let c = tok.encode_completion("Say hi", "hi").unwrap();
    let trained: Vec<u32> = c.tokens.iter().zip(&c.mask).filter(|(_, m)| **m).map(|(t, _)| *t).collect();
    assert_eq!(tok.decode(&trained, false).unwrap(), "hi<|im_end|>\n");
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
    // Trained positions are exactly the assistant turns: "Hi.<|im_end|>\n" and "ok<|im_end|>\n".
    let trained: Vec<u32> = b0.targets.iter().zip(&b0.weights).filter(|(_, w)| **w == 1.0).map(|(t, _)| *t as u32).collect();
    assert_eq!(tok.decode(&trained, false).unwrap(), "Hi.<|im_end|>\nok<|im_end|>\n");
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
