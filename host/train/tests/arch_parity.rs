//! Our architectures equal mlx-lm's, numerically. Tiny random models are built with mlx-lm's own
//! model classes (`mlx_lm.models.llama` with llama3 / linear rope scaling, attention + MLP bias and
//! an explicit head_dim; `qwen2`; `qwen3` with q/k norms), saved as Hugging Face directories and
//! read back by mlx-lm's loader (tests/reference/make_models.py, one python process). Then:
//! - the saved weight names are exactly Hugging Face's, and our loader takes them;
//! - our f32 logits equal mlx-lm's (relative error ≤ 1e-4, overall and per position), while the
//!   same weights with the feature under test removed (no rope scaling, no biases, no q/k norms)
//!   give logits far outside that tolerance — so a missing feature would fail;
//! - `evaluate_test` on chat data (one- and multi-turn, with system messages) and on text data
//!   equals the mean next-token NLL of mlx-lm's model over the same ids and trained positions
//!   (within 0.1%), with the same token count.

mod common;

use std::path::Path;

use brain_train::models::Model;
use brain_train::tokenizer::{Message, Tokenized};
use brain_train::{evaluate_test, TestArgs};
use common::{rel_err, run_reference, small_spec, write_jsonl};
use mlx::{Array, Dtype};
use serde_json::{json, Value};

const MAKE_MODELS: &str = include_str!("reference/make_models.py");

/// Forward-parity tolerance (relative error of the logits).
const FORWARD_TOL: f32 = 1e-4;
/// A variant without the feature under test must differ from the reference by at least this.
const VARIANT_MIN: f32 = 1e-2;
/// Test-loss parity (relative).
const LOSS_TOL: f64 = 1e-3;

/// (name, config.json, variant the reference also computes).
fn models(vocab: usize) -> Vec<(&'static str, Value, &'static str)> {
    let base = |model_type: &str| {
        json!({
            "model_type": model_type,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "intermediate_size": 96,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": vocab,
            "rms_norm_eps": 1e-5,
            "max_position_embeddings": 4096,
        })
    };
    let with = |mut v: Value, extra: Value| {
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    vec![
        (
            // GQA, untied, Llama 3.1's rope correction. head_dim 16, theta 10000: periods 1 …
            // 3162, wavelengths 6.3 … 19869; with an old context of 64, pairs 1–2 are in the
            // smoothed band and pairs 3–7 are stretched by 8 (see the variant check).
            "llama3_rope",
            with(
                base("llama"),
                json!({"architectures": ["LlamaForCausalLM"], "head_dim": 16, "rope_theta": 10000.0, "tie_word_embeddings": false,
                       "attention_bias": false, "mlp_bias": false,
                       "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 64}}),
            ),
            "no_rope_scaling",
        ),
        (
            // Biases everywhere, head_dim 24 ≠ 64 / 4 (so q/k/v are 96 wide), tied, plain rope.
            "llama_bias_headdim",
            with(
                base("llama"),
                json!({"architectures": ["LlamaForCausalLM"], "head_dim": 24, "rope_theta": 10000.0, "tie_word_embeddings": true,
                       "attention_bias": true, "mlp_bias": true, "rope_scaling": null}),
            ),
            "no_bias",
        ),
        (
            // Linear position interpolation (the older "type" spelling), one kv head (MQA).
            "llama_linear_rope",
            with(
                base("llama"),
                json!({"architectures": ["LlamaForCausalLM"], "num_key_value_heads": 1, "head_dim": 16, "rope_theta": 100.0,
                       "tie_word_embeddings": true, "attention_bias": false, "mlp_bias": false,
                       "rope_scaling": {"type": "linear", "factor": 2.0}}),
            ),
            "no_rope_scaling",
        ),
        (
            // q/k/v bias (none on o or the MLP), tied.
            "qwen2",
            with(
                base("qwen2"),
                json!({"architectures": ["Qwen2ForCausalLM"], "head_dim": 16, "rope_theta": 1000000.0, "tie_word_embeddings": true,
                       "rope_scaling": null}),
            ),
            "no_bias",
        ),
        (
            // q/k RMSNorm per head, head_dim 32 ≠ 64 / 4, untied.
            "qwen3",
            with(
                base("qwen3"),
                json!({"architectures": ["Qwen3ForCausalLM"], "head_dim": 32, "rope_theta": 1000000.0, "tie_word_embeddings": false,
                       "attention_bias": false, "rope_scaling": null}),
            ),
            "no_qk_norm",
        ),
    ]
}

/// The weight names Hugging Face's modeling code gives a model of `config` (independent of mlx-lm).
fn hf_names(config: &Value) -> Vec<String> {
    let arch = config["model_type"].as_str().unwrap();
    let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(false);
    let (qkv_bias, o_bias, mlp_bias, qk_norm) = match arch {
        "llama" => (flag("attention_bias"), flag("attention_bias"), flag("mlp_bias"), false),
        "qwen2" => (true, false, false, false),
        "qwen3" => (flag("attention_bias"), flag("attention_bias"), false, true),
        other => panic!("{other}"),
    };
    let mut n = vec!["model.embed_tokens.weight".to_string(), "model.norm.weight".to_string()];
    if !config["tie_word_embeddings"].as_bool().unwrap() {
        n.push("lm_head.weight".into());
    }
    for l in 0..config["num_hidden_layers"].as_u64().unwrap() {
        let p = format!("model.layers.{l}");
        n.push(format!("{p}.input_layernorm.weight"));
        n.push(format!("{p}.post_attention_layernorm.weight"));
        for (proj, bias) in [("q", qkv_bias), ("k", qkv_bias), ("v", qkv_bias), ("o", o_bias)] {
            n.push(format!("{p}.self_attn.{proj}_proj.weight"));
            if bias {
                n.push(format!("{p}.self_attn.{proj}_proj.bias"));
            }
        }
        for proj in ["gate", "up", "down"] {
            n.push(format!("{p}.mlp.{proj}_proj.weight"));
            if mlp_bias {
                n.push(format!("{p}.mlp.{proj}_proj.bias"));
            }
        }
        if qk_norm {
            n.push(format!("{p}.self_attn.q_norm.weight"));
            n.push(format!("{p}.self_attn.k_norm.weight"));
        }
    }
    n.sort();
    n
}

fn chat_lines() -> Vec<Value> {
    vec![
        json!({"messages": [{"role": "user", "content": "What is the capital of France?"},
                            {"role": "assistant", "content": "The capital of France is Paris."}]}),
        json!({"messages": [{"role": "system", "content": "You are a terse assistant."},
                            {"role": "user", "content": "Add 2 and 3."},
                            {"role": "assistant", "content": "5"}]}),
        json!({"messages": [{"role": "system", "content": "Answer in one line."},
                            {"role": "user", "content": "Name a prime number."},
                            {"role": "assistant", "content": "Seven is prime."},
                            {"role": "user", "content": "And an even one?"},
                            {"role": "assistant", "content": "Two is the only even prime."}]}),
        json!({"messages": [{"role": "user", "content": "fn main() { println!(\"hi\"); }\nWhat does it print?"},
                            {"role": "assistant", "content": "It prints hi and a newline."},
                            {"role": "user", "content": "Thanks!"},
                            {"role": "assistant", "content": "You're welcome."}]}),
    ]
}

fn text_lines() -> Vec<Value> {
    vec![
        json!({"text": "The quick brown fox jumps over the lazy dog."}),
        json!({"text": "fn add(a: i32, b: i32) -> i32 { a + b }"}),
        json!({"text": "Hello"}),
    ]
}

/// Our tokenization of DIR/test.jsonl (the ids and trained-target mask the loss uses).
fn tokenize(model: &Path, lines: &[Value]) -> Vec<Tokenized> {
    let tok = brain_train::source::load_tokenizer(model).unwrap();
    lines
        .iter()
        .map(|l| match (l.get("messages"), l.get("text")) {
            (Some(m), _) => {
                let msgs: Vec<Message> = serde_json::from_value(m.clone()).unwrap();
                tok.encode_chat(&msgs).unwrap()
            }
            (_, Some(t)) => tok.encode_text(t.as_str().unwrap()).unwrap(),
            _ => panic!("{l}"),
        })
        .collect()
}

#[test]
fn architectures_and_test_loss_match_mlx_lm() {
    let td = tempfile::tempdir().unwrap();
    let root = td.path();

    // A real (trained BPE, ChatML) tokenizer from a tiny model; the models get more rows than it
    // has tokens, as real ones often do.
    let tiny = root.join("tiny");
    let rep = brain_train::tiny::init_tiny(&tiny, &small_spec(), None).unwrap();
    let vocab = rep.tokenizer_size.div_ceil(64) * 64 + 64;
    assert!(vocab >= rep.tokenizer_size);

    let chat_dir = root.join("chat");
    let text_dir = root.join("text");
    write_jsonl(&chat_dir, "test", &chat_lines());
    write_jsonl(&text_dir, "test", &text_lines());
    let chat = tokenize(&tiny, &chat_lines());
    let text = tokenize(&tiny, &text_lines());
    // The chat examples really have masked prompts and several trained turns.
    assert!(chat.iter().all(|t| t.mask.iter().any(|m| !m) && t.trained() > 0));
    let seqs = |v: &[Tokenized]| v.iter().map(|t| json!({"tokens": t.tokens, "mask": t.mask})).collect::<Vec<_>>();

    let (b, l) = (2usize, 16usize);
    let ids: Vec<i32> = (0..b * l).map(|i| ((i * 37 + 5) % rep.tokenizer_size) as i32).collect();
    let forward_ids: Vec<Vec<i32>> = ids.chunks(l).map(<[i32]>::to_vec).collect();

    let models = models(vocab);
    let out = root.join("models");
    let spec = json!({
        "out": out, "tokenizer_dir": tiny, "forward_ids": forward_ids, "seed": 1234,
        "models": models.iter().map(|(n, c, v)| json!({"name": n, "config": c, "variant": v})).collect::<Vec<_>>(),
        "sequences": {"chat": seqs(&chat), "text": seqs(&text)},
    });
    let spec_path = root.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let stdout = run_reference(MAKE_MODELS, &[spec_path.to_str().unwrap()]);
    let report: Value = serde_json::from_str(stdout.lines().rfind(|l| l.starts_with('{')).expect("a JSON report")).unwrap();
    let reference = mlx::io::load_safetensors(out.join("reference.safetensors")).unwrap().tensors;

    let ids_arr = Array::from_slice(&ids, &[b as i32, l as i32]).unwrap();
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for (name, config, variant) in &models {
        let r = &report[*name];
        let dir = out.join(name);

        // Hugging Face names, exactly; mlx-lm read its own directory back unchanged.
        let keys: Vec<String> = serde_json::from_value(r["keys"].clone()).unwrap();
        if keys != hf_names(config) {
            failures.push(format!(
                "{name}: saved weight names {keys:?} are not Hugging Face's {:?}",
                hf_names(config)
            ));
        }
        let reload = r["reload_err"].as_f64().unwrap();
        assert!(
            reload < 1e-6,
            "{name}: mlx-lm's reloaded model differs from the one that wrote it ({reload})"
        );
        let std = r["logit_std"].as_f64().unwrap();
        assert!(
            std > 0.3,
            "{name}: logits are nearly flat (std {std}); the comparison would be weak"
        );

        // Forward parity.
        let model = Model::load(&dir, Some(Dtype::Float32)).unwrap_or_else(|e| panic!("{name}: our loader: {e}"));
        let logits = model.logits(&ids_arr).unwrap();
        assert_eq!(logits.shape(), vec![b as i32, l as i32, vocab as i32], "{name}");
        let ours = logits.to_vec::<f32>().unwrap();
        let theirs = reference[&format!("{name}.logits")].to_vec::<f32>().unwrap();
        let without = reference[&format!("{name}.variant")].to_vec::<f32>().unwrap();
        let e = rel_err(&ours, &theirs);
        let worst_row = (0..b * l)
            .map(|t| rel_err(&ours[t * vocab..(t + 1) * vocab], &theirs[t * vocab..(t + 1) * vocab]))
            .fold(0f32, f32::max);
        let e_variant = rel_err(&without, &theirs);
        let e_ours_variant = rel_err(&ours, &without);
        if e > FORWARD_TOL || worst_row > FORWARD_TOL {
            failures.push(format!(
                "{name}: logits differ from mlx-lm's: relative error {e:.3e} (worst position {worst_row:.3e})"
            ));
        }
        if e_variant < VARIANT_MIN || e_ours_variant < VARIANT_MIN {
            failures.push(format!(
                "{name}: the {variant} variant is too close to the reference ({e_variant:.3e}) or to ours ({e_ours_variant:.3e}); the test could not catch that feature missing"
            ));
        }

        // Test-loss parity, chat and text.
        let mut loss_txt = Vec::new();
        for (kind, data) in [("chat", &chat_dir), ("text", &text_dir)] {
            let t = evaluate_test(&TestArgs {
                model: dir.clone(),
                data: data.clone(),
                adapter_path: None,
                batch_size: 2,
                max_seq_length: 2048,
                test_batches: 0,
                dtype: None,
                loss: "auto".into(),
            })
            .unwrap_or_else(|e| panic!("{name}: evaluate_test on {kind}: {e}"));
            let sum = r["nll"][kind][0].as_f64().unwrap();
            let count = r["nll"][kind][1].as_u64().unwrap() as usize;
            let mean = sum / count as f64;
            let rel = (t.test_loss as f64 - mean).abs() / mean;
            if t.tokens != count {
                failures.push(format!(
                    "{name} {kind}: we count {} trained tokens, the reference {count}",
                    t.tokens
                ));
            }
            if rel > LOSS_TOL {
                failures.push(format!(
                    "{name} {kind}: test loss {} vs mlx-lm's per-token NLL {mean} (relative {rel:.3e})",
                    t.test_loss
                ));
            }
            loss_txt.push(format!("{kind} {:.5} vs {mean:.5} ({count} tokens, rel {rel:.1e})", t.test_loss));
        }
        lines.push(format!(
            "{name:<20} logits rel err {e:.2e} (worst position {worst_row:.2e}); {variant}: {e_variant:.2e} from mlx-lm, {e_ours_variant:.2e} from ours; logit std {std:.2}; loss {}",
            loss_txt.join(", ")
        ));
    }
    eprintln!("{}", lines.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
