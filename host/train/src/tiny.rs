//! `init_tiny`: write a small random Qwen2 model as a Hugging Face directory (config.json,
//! model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json) that mlx-lm and
//! transformers load as is. Needs no MLX: weights are written with the `safetensors` crate.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use crate::config::ModelConfig;
use crate::error::{io, Error, Result};
use crate::rng::Rng;
use crate::tokenizer::{self, Message, CHATML_TEMPLATE, ENDOFTEXT, IM_END, IM_START};

/// The built-in corpus the tokenizer is trained on when no text is given.
pub const BUILTIN_CORPUS: &str = include_str!("tiny_corpus.txt");

/// Shape and initialization of a tiny model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    /// Embedding rows (`vocab_size` in config.json). 0: the tokenizer's size rounded up to 64.
    /// May exceed the tokenizer (Qwen2 uses 151936 rows for 151665 tokens): set 151936 for a
    /// Qwen-size output layer.
    pub vocab: usize,
    /// Target size of the trained BPE tokenizer (the corpus may allow fewer).
    pub tokenizer_vocab: usize,
    pub tie_word_embeddings: bool,
    pub rope_theta: f32,
    pub rms_norm_eps: f32,
    pub max_position_embeddings: usize,
    /// "float32" (default), "bfloat16" or "float16".
    pub dtype: String,
    /// Standard deviation of the random weights (the embedding and head use 2/sqrt(hidden), so
    /// logits have a usable range — up to ±2·sqrt(hidden) — and LoRA on the blocks can fit data).
    pub init_std: f32,
    pub seed: u64,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 128,
            vocab: 0,
            tokenizer_vocab: 512,
            tie_word_embeddings: true,
            rope_theta: 1_000_000.0,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 4096,
            dtype: "float32".into(),
            init_std: 0.02,
            seed: 0,
        }
    }
}

/// What `init_tiny` wrote.
#[derive(Debug, Clone)]
pub struct TinyReport {
    pub config: ModelConfig,
    pub tokenizer_size: usize,
    pub parameters: usize,
}

/// Write a random tiny Qwen2 model into `dir` (created if missing). `corpus`: text to train the
/// tokenizer on (default: [`BUILTIN_CORPUS`]).
pub fn init_tiny(dir: &Path, spec: &TinySpec, corpus: Option<&str>) -> Result<TinyReport> {
    if spec.heads == 0 || !spec.hidden.is_multiple_of(spec.heads) || spec.kv_heads == 0 || !spec.heads.is_multiple_of(spec.kv_heads) {
        return Err(Error::Args("tiny model: hidden must be a multiple of heads, heads of kv_heads".into()));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let corpus = corpus.unwrap_or(BUILTIN_CORPUS);
    let tk = tokenizer::train_bpe(corpus.split_inclusive('\n'), spec.tokenizer_vocab)?;
    tokenizer::save_tokenizer(&tk, dir)?;
    let tokenizer_size = tk.get_vocab_size(true);
    let vocab = if spec.vocab == 0 { tokenizer_size.div_ceil(64) * 64 } else { spec.vocab };
    if vocab < tokenizer_size {
        return Err(Error::Args(format!("tiny model: vocab {vocab} is smaller than the tokenizer ({tokenizer_size})")));
    }
    let id = |t: &str| tk.token_to_id(t).unwrap_or(0);
    let config = ModelConfig {
        model_type: "qwen2".into(),
        architectures: vec!["Qwen2ForCausalLM".into()],
        hidden_size: spec.hidden,
        num_hidden_layers: spec.layers,
        intermediate_size: spec.intermediate,
        num_attention_heads: spec.heads,
        num_key_value_heads: Some(spec.kv_heads),
        head_dim: None,
        vocab_size: vocab,
        rms_norm_eps: spec.rms_norm_eps,
        rope_theta: spec.rope_theta,
        tie_word_embeddings: spec.tie_word_embeddings,
        max_position_embeddings: spec.max_position_embeddings,
        torch_dtype: Some(spec.dtype.clone()),
        bos_token_id: Some(id(ENDOFTEXT)),
        eos_token_id: Some(json!(id(IM_END))),
        rope_scaling: None,
        rope_parameters: None,
        attention_bias: None,
        mlp_bias: None,
        quantization: None,
    };
    write_json(&dir.join("config.json"), &config_json(&config))?;
    write_json(&dir.join("tokenizer_config.json"), &tokenizer_config(&tk))?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({"bos_token_id": id(ENDOFTEXT), "eos_token_id": [id(IM_END), id(ENDOFTEXT)], "pad_token_id": id(ENDOFTEXT)}),
    )?;
    let tensors = random_weights(&config, spec.init_std, spec.seed);
    let parameters = tensors.iter().map(|t| t.2.len()).sum();
    write_safetensors(&dir.join("model.safetensors"), &tensors, &spec.dtype)?;
    Ok(TinyReport { config, tokenizer_size, parameters })
}

fn config_json(c: &ModelConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(c).expect("config serializes");
    let o = v.as_object_mut().expect("object");
    o.insert("hidden_act".into(), json!("silu"));
    o.insert("attention_dropout".into(), json!(0.0));
    o.insert("initializer_range".into(), json!(0.02));
    o.insert("use_cache".into(), json!(true));
    o.insert("use_sliding_window".into(), json!(false));
    o.insert("sliding_window".into(), json!(c.max_position_embeddings));
    o.insert("max_window_layers".into(), json!(c.num_hidden_layers));
    o.insert("rope_scaling".into(), serde_json::Value::Null);
    o.insert("transformers_version".into(), json!("4.46.0"));
    v
}

fn tokenizer_config(tk: &tokenizers::Tokenizer) -> serde_json::Value {
    let mut decoder = serde_json::Map::new();
    for t in [ENDOFTEXT, IM_START, IM_END] {
        if let Some(id) = tk.token_to_id(t) {
            decoder.insert(
                id.to_string(),
                json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}),
            );
        }
    }
    json!({
        "add_bos_token": false,
        "add_prefix_space": false,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": null,
        "chat_template": CHATML_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": false,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": null
    })
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("JSON serializes");
    std::fs::write(path, text + "\n").map_err(io(path))
}

/// Host tensor: (name, shape, values).
pub type HostTensor = (String, Vec<usize>, Vec<f32>);

/// Random weights with Hugging Face Qwen2 names: N(0, std) matrices and biases, norms 1 + N(0, std),
/// embedding and head N(0, 2/sqrt(hidden)).
pub fn random_weights(c: &ModelConfig, std: f32, seed: u64) -> Vec<HostTensor> {
    let mut rng = Rng::new(seed);
    let (h, hd) = (c.hidden_size, c.head_dim());
    let (q, kv, i) = (c.num_attention_heads * hd, c.kv_heads() * hd, c.intermediate_size);
    let mut out = Vec::new();
    let embed_std = 2.0 / (h as f32).sqrt();
    let mut add_std = |name: String, shape: Vec<usize>, base: f32, std: f32| {
        let n: usize = shape.iter().product();
        let v = (0..n).map(|_| base + std * rng.normal() as f32).collect();
        out.push((name, shape, v));
    };
    add_std("model.embed_tokens.weight".into(), vec![c.vocab_size, h], 0.0, embed_std);
    let mut add = |name: String, shape: Vec<usize>, base: f32| add_std(name, shape, base, std);
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), vec![h], 1.0);
        for (name, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            add(format!("{p}.self_attn.{name}.weight"), vec![rows, h], 0.0);
            if c.qkv_bias() {
                add(format!("{p}.self_attn.{name}.bias"), vec![rows], 0.0);
            }
        }
        add(format!("{p}.self_attn.o_proj.weight"), vec![h, q], 0.0);
        add(format!("{p}.post_attention_layernorm.weight"), vec![h], 1.0);
        add(format!("{p}.mlp.gate_proj.weight"), vec![i, h], 0.0);
        add(format!("{p}.mlp.up_proj.weight"), vec![i, h], 0.0);
        add(format!("{p}.mlp.down_proj.weight"), vec![h, i], 0.0);
    }
    add("model.norm.weight".into(), vec![h], 1.0);
    if !c.tie_word_embeddings {
        add_std("lm_head.weight".into(), vec![c.vocab_size, h], 0.0, embed_std);
    }
    out
}

/// Write host tensors as safetensors in `dtype` ("float32", "bfloat16", "float16"), with the
/// `{"format": "pt"}` metadata transformers expects.
pub fn write_safetensors(path: &Path, tensors: &[HostTensor], dtype: &str) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let (st_dtype, conv): (Dtype, fn(f32) -> Vec<u8>) = match dtype {
        "float32" => (Dtype::F32, |x| x.to_le_bytes().to_vec()),
        "bfloat16" => (Dtype::BF16, |x| f32_to_bf16(x).to_le_bytes().to_vec()),
        "float16" => (Dtype::F16, |x| f32_to_f16(x).to_le_bytes().to_vec()),
        other => return Err(Error::Args(format!("dtype {other:?}: use float32, bfloat16 or float16"))),
    };
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(n, s, v)| (n.clone(), s.clone(), v.iter().flat_map(|x| conv(*x)).collect())).collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(st_dtype, s.clone(), b).map_err(|e| Error::Args(e.to_string()))?)))
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), path).map_err(|e| Error::Args(format!("{}: {e}", path.display())))
}

/// f32 → bf16 bits, round to nearest even.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return 0x7FC0;
    }
    let round = 0x7FFF + ((b >> 16) & 1);
    ((b + round) >> 16) as u16
}

/// f32 → f16 bits, round to nearest even (subnormals and overflow handled).
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xFF) as i32;
    let man = b & 0x7F_FFFF;
    if exp == 0xFF {
        return sign | 0x7C00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1F {
        return sign | 0x7C00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1FFF;
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

/// Write a synthetic chat data set (train/valid/test JSONL, mlx-lm's chat format) for demos, tests
/// and benchmarks: short arithmetic and echo conversations, some with two assistant turns.
pub fn write_synthetic_chat(dir: &Path, train: usize, valid: usize, test: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut rng = Rng::new(seed);
    for (name, n) in [("train", train), ("valid", valid), ("test", test)] {
        let mut out = String::new();
        for _ in 0..n {
            let msgs = synthetic_conversation(&mut rng);
            out.push_str(&serde_json::to_string(&json!({ "messages": msgs })).expect("serializes"));
            out.push('\n');
        }
        let path = dir.join(format!("{name}.jsonl"));
        std::fs::write(&path, out).map_err(io(&path))?;
    }
    Ok(())
}

fn synthetic_conversation(rng: &mut Rng) -> Vec<Message> {
    const WORDS: &[&str] = &["red", "blue", "green", "fox", "dog", "model", "token", "loss", "code", "test", "river", "stone"];
    let a = rng.below(50);
    let b = rng.below(50);
    let w1 = WORDS[rng.below(WORDS.len())];
    let w2 = WORDS[rng.below(WORDS.len())];
    let mut m = Vec::new();
    if rng.below(2) == 0 {
        m.push(Message::new("system", "You are a helpful assistant."));
    }
    match rng.below(3) {
        0 => {
            m.push(Message::new("user", &format!("What is {a} + {b}?")));
            m.push(Message::new("assistant", &format!("{a} + {b} = {}.", a + b)));
        }
        1 => {
            m.push(Message::new("user", &format!("Repeat: {w1} {w2}")));
            m.push(Message::new("assistant", &format!("{w1} {w2}")));
        }
        _ => {
            m.push(Message::new("user", &format!("Say {w1}.")));
            m.push(Message::new("assistant", w1));
            m.push(Message::new("user", &format!("Now add {a} and {b}.")));
            m.push(Message::new("assistant", &format!("The sum is {}.", a + b)));
        }
    }
    m
}
