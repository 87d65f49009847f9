//! Tiny models and adapters for the fuse and Ollama export tests (brain-train's init_tiny, a
//! LoRA adapter with random non-zero matrices so fusing has something to add).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use brain_train::adapters::{self, AdapterConfig, LoraParameters};
use brain_train::models::Model;
use brain_train::tiny::{init_tiny, TinySpec};
use mlx::{Array, Dtype};

pub const KEYS: [&str; 5] = ["self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"];

/// A random 2-layer Qwen2 with a trained BPE tokenizer and the ChatML template.
pub fn tiny_base(dir: &Path, tie: bool) {
    let spec = TinySpec { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, tie_word_embeddings: tie, seed: 7, ..TinySpec::default() };
    init_tiny(dir, &spec, None).expect("init_tiny");
}

/// Llama 3's special tokens, in the order they are added to the tiny tokenizer.
pub const LLAMA3_SPECIALS: [&str; 5] = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"];

/// Llama 3's chat layout, written from Meta's documented prompt format: bos, then per message
/// `<|start_header_id|>role<|end_header_id|>\n\n` + trimmed content + `<|eot_id|>`, then the open
/// assistant header.
pub const LLAMA3_TEMPLATE: &str = "{{- bos_token }}{%- for m in messages %}{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\n\n' + (m.content | trim) + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}";

/// Llama 3.1's layout (documented): the system turn is always written and starts with the
/// knowledge cut-off and a date (the fixed default, as without `strftime_now`), then the system
/// message, if any.
pub const LLAMA31_TEMPLATE: &str = "{{- bos_token }}{%- if messages[0].role == 'system' %}{%- set sys = messages[0].content | trim %}{%- set rest = messages[1:] %}{%- else %}{%- set sys = '' %}{%- set rest = messages %}{%- endif %}{{- '<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n' + sys + '<|eot_id|>' }}{%- for m in rest %}{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\n\n' + (m.content | trim) + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}";

/// A tiny model whose tokenizer is Llama-3-style: the tiny BPE plus Llama 3's special tokens,
/// bos added by the tokenizer's post-processor (as Llama 3's tokenizer.json does), eos
/// `<|eot_id|>` (the instruct models'), and `chat_template`.
pub fn tiny_llama3(dir: &Path, chat_template: &str) {
    // Room in the embedding for the added tokens.
    let spec = TinySpec { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, vocab: 576, tie_word_embeddings: true, seed: 11, ..TinySpec::default() };
    init_tiny(dir, &spec, None).expect("init_tiny");
    let read = |name: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap() };
    let mut tk = read("tokenizer.json");
    let mut cfg = read("tokenizer_config.json");
    let vocab_len = tk["model"]["vocab"].as_object().unwrap().len();
    let added = tk["added_tokens"].as_array_mut().unwrap();
    let mut next = added.iter().map(|t| t["id"].as_u64().unwrap() as usize + 1).max().unwrap_or(0).max(vocab_len);
    let mut bos_id = 0;
    for t in LLAMA3_SPECIALS {
        let entry = serde_json::json!({"id": next, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
        added.push(entry.clone());
        let mut decoder_entry = entry.clone();
        decoder_entry.as_object_mut().unwrap().remove("id");
        cfg["added_tokens_decoder"][next.to_string()] = decoder_entry;
        if t == "<|begin_of_text|>" {
            bos_id = next;
        }
        next += 1;
    }
    let bos = serde_json::json!({"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}});
    tk["post_processor"] = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos_id], "tokens": ["<|begin_of_text|>"]}}
    });
    cfg["bos_token"] = "<|begin_of_text|>".into();
    cfg["eos_token"] = "<|eot_id|>".into();
    cfg["chat_template"] = chat_template.into();
    cfg.as_object_mut().unwrap().remove("additional_special_tokens");
    let mut config = read("config.json");
    config["bos_token_id"] = bos_id.into();
    config["eos_token_id"] = (bos_id + 4).into();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), serde_json::to_string(&tk).unwrap()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    assert!(next <= 576, "the tiny embedding has room for the added tokens ({next})");
}

/// A LoRA adapter for `base` in mlx-lm's layout with uniform(-0.2, 0.2) A and B matrices.
pub fn random_adapter(base: &Path, out: &Path, rank: usize, scale: f32, seed: u64) {
    let mut m = Model::load(base, Some(Dtype::Float32)).expect("load base");
    let keys: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    m.apply_lora(-1, &keys, rank, scale, 0.0, seed).expect("apply_lora");
    let mut values = Vec::new();
    for (i, (_, a)) in m.trainable_params().iter().enumerate() {
        let key = mlx::random::key(seed * 1000 + i as u64).unwrap();
        values.push(mlx::random::uniform(-0.2, 0.2, &a.shape(), Dtype::Float32, Some(&key)).unwrap());
    }
    mlx::eval(values.iter()).unwrap();
    m.set_trainable(values);
    adapters::save_weights(&m, &out.join(adapters::ADAPTER_FILE)).expect("save adapter");
    AdapterConfig {
        fine_tune_type: "lora".into(),
        num_layers: m.num_layers() as i32,
        lora_parameters: Some(LoraParameters { rank, scale, dropout: 0.0, keys: Some(keys) }),
        extra: BTreeMap::new(),
    }
    .write(out)
    .expect("write adapter config");
}

/// Logits (flattened) of `model_dir` (+ `adapter`) on a fixed token sequence.
pub fn logits(model_dir: &Path, adapter: Option<&Path>) -> Vec<f32> {
    let mut m = Model::load(model_dir, Some(Dtype::Float32)).expect("load model");
    if let Some(a) = adapter {
        adapters::load_adapters(&mut m, a).expect("load adapter");
    }
    let ids = Array::from_slice(&[3i32, 17, 42, 5, 99, 12, 8, 64, 1, 30], &[1, 10]).unwrap();
    m.logits(&ids).expect("logits").to_vec::<f32>().expect("to host")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
