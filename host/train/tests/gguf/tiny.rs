//! Tiny random GGUF models of the three architectures, written with our writer the way llama.cpp's
//! converter lays them out (its tensor names, q/k rows permuted for llama), next to a Hugging Face
//! directory holding the same weights after the same quantization round trip (dequantized, f32),
//! so a model loaded from either must compute the same logits.
//!
//! The GGUF names here are spelled out independently of the crate's name table on purpose.

use std::collections::BTreeMap;
use std::path::PathBuf;

use brain_train::gguf::quant::{dequantize, quantize_q4_0, quantize_q8_0};
use brain_train::gguf::{GgmlType, GgufWriter, Value};
use brain_train::rng::Rng;
use brain_train::tiny::{write_safetensors, BUILTIN_CORPUS};
use brain_train::tokenizer::{train_bpe, CHATML_TEMPLATE, ENDOFTEXT, IM_END, IM_START};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Spec {
    pub arch: &'static str,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Written as `attention.key_length` when set.
    pub head_dim: Option<usize>,
    pub inter: usize,
    pub qkv_bias: bool,
    pub qk_norm: bool,
    pub tied: bool,
    /// Add a Llama-3.1 `rope_freqs.weight`.
    pub rope_freqs: bool,
    pub theta: f32,
    pub eps: f32,
    pub seed: u64,
}

impl Spec {
    pub fn llama() -> Self {
        Spec {
            arch: "llama",
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: None,
            inter: 128,
            qkv_bias: false,
            qk_norm: false,
            tied: false,
            rope_freqs: true,
            theta: 10_000.0,
            eps: 1e-5,
            seed: 1,
        }
    }
    pub fn qwen2() -> Self {
        Spec {
            arch: "qwen2",
            qkv_bias: true,
            tied: true,
            rope_freqs: false,
            theta: 1_000_000.0,
            eps: 1e-6,
            seed: 2,
            ..Self::llama()
        }
    }
    pub fn qwen3() -> Self {
        Spec {
            arch: "qwen3",
            head_dim: Some(32),
            qk_norm: true,
            tied: false,
            rope_freqs: false,
            theta: 1_000_000.0,
            eps: 1e-6,
            seed: 3,
            ..Self::llama()
        }
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden / self.heads)
    }
}

/// (Hugging Face name, GGUF name, shape, values, stored type)
type Tensor = (String, String, Vec<usize>, Vec<f32>, GgmlType);

pub struct Built {
    pub _dir: tempfile::TempDir,
    pub gguf: PathBuf,
    /// config.json + model.safetensors of the dequantized weights.
    pub hf_dir: PathBuf,
    pub tokenizer: tokenizers::Tokenizer,
    /// Hugging Face name → (shape, dequantized values), what the GGUF must load as.
    pub weights: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub vocab: usize,
}

/// The tokenizer's tokens (by id) and merges, read back through its JSON form.
pub fn tokens_and_merges(tk: &tokenizers::Tokenizer) -> (Vec<String>, Vec<String>) {
    let vocab = tk.get_vocab(true);
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, i) in vocab {
        tokens[i as usize] = t;
    }
    let j: serde_json::Value = serde_json::from_str(&tk.to_string(false).unwrap()).unwrap();
    let merges = j["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            pair => format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap()),
        })
        .collect();
    (tokens, merges)
}

/// llama.cpp's converter's q/k row order: per head, the rotary halves interleaved.
fn permute(rows: usize, cols: usize, heads: usize, v: &[f32]) -> Vec<f32> {
    let hd = rows / heads;
    let mut out = vec![0.0; v.len()];
    for h in 0..heads {
        for s in 0..2 {
            for i in 0..hd / 2 {
                let from = h * hd + s * hd / 2 + i;
                let to = h * hd + 2 * i + s;
                out[to * cols..(to + 1) * cols].copy_from_slice(&v[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// What storing `v` as `t` and reading it back gives.
fn round_trip(t: GgmlType, v: &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    match t {
        GgmlType::F32 => return v.to_vec(),
        GgmlType::F16 => return v.iter().map(|x| mlx::f16::from_f32(*x).to_f32()).collect(),
        GgmlType::BF16 => return v.iter().map(|x| mlx::bf16::from_f32(*x).to_f32()).collect(),
        GgmlType::Q8_0 => dequantize(t, &quantize_q8_0(v), &mut out),
        GgmlType::Q4_0 => dequantize(t, &quantize_q4_0(v), &mut out),
        _ => panic!("{t}"),
    };
    out
}

pub fn build(spec: &Spec) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let tk = train_bpe(BUILTIN_CORPUS.split_inclusive('\n'), 400).unwrap();
    let (tokens, merges) = tokens_and_merges(&tk);
    let vocab = tokens.len();
    let (h, hd, inter) = (spec.hidden, spec.head_dim(), spec.inter);
    let (q_rows, kv_rows) = (spec.heads * hd, spec.kv_heads * hd);
    let mut rng = Rng::new(spec.seed);
    let mut normal = |n: usize, base: f32, std: f32| -> Vec<f32> { (0..n).map(|_| base + std * rng.normal() as f32).collect() };

    let mut tensors: Vec<Tensor> = Vec::new();
    let mut add = |hf: String, g: String, shape: Vec<usize>, v: Vec<f32>, t: GgmlType| tensors.push((hf, g, shape, v, t));
    add(
        "model.embed_tokens.weight".into(),
        "token_embd.weight".into(),
        vec![vocab, h],
        normal(vocab * h, 0.0, 0.5),
        GgmlType::Q8_0,
    );
    let o_type = if spec.arch == "qwen2" { GgmlType::BF16 } else { GgmlType::F16 };
    for l in 0..spec.layers {
        let (p, g) = (format!("model.layers.{l}"), format!("blk.{l}"));
        add(
            format!("{p}.input_layernorm.weight"),
            format!("{g}.attn_norm.weight"),
            vec![h],
            normal(h, 1.0, 0.1),
            GgmlType::F32,
        );
        add(
            format!("{p}.post_attention_layernorm.weight"),
            format!("{g}.ffn_norm.weight"),
            vec![h],
            normal(h, 1.0, 0.1),
            GgmlType::F32,
        );
        for (hf, gg, rows, t) in [
            ("q_proj", "attn_q", q_rows, GgmlType::Q4_0),
            ("k_proj", "attn_k", kv_rows, GgmlType::Q4_0),
            ("v_proj", "attn_v", kv_rows, GgmlType::Q8_0),
        ] {
            add(
                format!("{p}.self_attn.{hf}.weight"),
                format!("{g}.{gg}.weight"),
                vec![rows, h],
                normal(rows * h, 0.0, 0.08),
                t,
            );
            if spec.qkv_bias {
                add(
                    format!("{p}.self_attn.{hf}.bias"),
                    format!("{g}.{gg}.bias"),
                    vec![rows],
                    normal(rows, 0.0, 0.08),
                    GgmlType::F32,
                );
            }
        }
        if spec.qk_norm {
            add(
                format!("{p}.self_attn.q_norm.weight"),
                format!("{g}.attn_q_norm.weight"),
                vec![hd],
                normal(hd, 1.0, 0.1),
                GgmlType::F32,
            );
            add(
                format!("{p}.self_attn.k_norm.weight"),
                format!("{g}.attn_k_norm.weight"),
                vec![hd],
                normal(hd, 1.0, 0.1),
                GgmlType::F32,
            );
        }
        add(
            format!("{p}.self_attn.o_proj.weight"),
            format!("{g}.attn_output.weight"),
            vec![h, q_rows],
            normal(h * q_rows, 0.0, 0.08),
            o_type,
        );
        add(
            format!("{p}.mlp.gate_proj.weight"),
            format!("{g}.ffn_gate.weight"),
            vec![inter, h],
            normal(inter * h, 0.0, 0.08),
            GgmlType::Q4_0,
        );
        add(
            format!("{p}.mlp.up_proj.weight"),
            format!("{g}.ffn_up.weight"),
            vec![inter, h],
            normal(inter * h, 0.0, 0.08),
            GgmlType::Q4_0,
        );
        add(
            format!("{p}.mlp.down_proj.weight"),
            format!("{g}.ffn_down.weight"),
            vec![h, inter],
            normal(h * inter, 0.0, 0.08),
            GgmlType::Q8_0,
        );
    }
    add(
        "model.norm.weight".into(),
        "output_norm.weight".into(),
        vec![h],
        normal(h, 1.0, 0.1),
        GgmlType::F32,
    );
    if !spec.tied {
        add(
            "lm_head.weight".into(),
            "output.weight".into(),
            vec![vocab, h],
            normal(vocab * h, 0.0, 0.5),
            GgmlType::Q4_0,
        );
    }
    if spec.rope_freqs {
        add(
            "rope_freqs".into(),
            "rope_freqs.weight".into(),
            vec![hd / 2],
            (0..hd / 2).map(|i| 1.0 + i as f32).collect(),
            GgmlType::F32,
        );
    }

    let mut w = GgufWriter::new();
    let a = spec.arch;
    w.set("general.architecture", a)
        .set("general.name", "tiny test model")
        .set(&format!("{a}.block_count"), spec.layers as u32)
        .set(&format!("{a}.context_length"), 256u32)
        .set(&format!("{a}.embedding_length"), h as u32)
        .set(&format!("{a}.feed_forward_length"), inter as u32)
        .set(&format!("{a}.attention.head_count"), spec.heads as u32)
        .set(&format!("{a}.attention.head_count_kv"), spec.kv_heads as u32)
        .set(&format!("{a}.rope.freq_base"), spec.theta)
        .set(&format!("{a}.attention.layer_norm_rms_epsilon"), spec.eps);
    if let Some(d) = spec.head_dim {
        w.set(&format!("{a}.attention.key_length"), d as u32)
            .set(&format!("{a}.attention.value_length"), d as u32);
    }
    let id = |t: &str| tk.token_to_id(t).unwrap();
    let specials = [ENDOFTEXT, IM_START, IM_END];
    w.set("tokenizer.ggml.model", "gpt2")
        .set("tokenizer.ggml.pre", "qwen2")
        .set("tokenizer.ggml.tokens", Value::strings(tokens.clone()))
        .set(
            "tokenizer.ggml.token_type",
            Value::i32s(tokens.iter().map(|t| if specials.contains(&t.as_str()) { 3 } else { 1 })),
        )
        .set("tokenizer.ggml.merges", Value::strings(merges))
        .set("tokenizer.ggml.bos_token_id", id(ENDOFTEXT))
        .set("tokenizer.ggml.eos_token_id", id(IM_END))
        .set("tokenizer.ggml.padding_token_id", id(ENDOFTEXT))
        .set("tokenizer.ggml.add_bos_token", false)
        .set("tokenizer.chat_template", CHATML_TEMPLATE);

    let mut weights = BTreeMap::new();
    for (hf, g, shape, v, t) in &tensors {
        // The stored values: the llama converter's row order for q/k (weights and biases alike).
        let heads = if g.contains(".attn_q.") {
            Some(spec.heads)
        } else if g.contains(".attn_k.") {
            Some(spec.kv_heads)
        } else {
            None
        };
        let stored = match heads {
            Some(n) if spec.arch == "llama" => permute(shape[0], shape.get(1).copied().unwrap_or(1), n, v),
            _ => v.clone(),
        };
        w.add_f32(g, shape, &stored, *t).unwrap();
        // Quantization works on rows, so un-permuting after the round trip equals the round trip of
        // the Hugging Face order.
        weights.insert(hf.clone(), (shape.clone(), round_trip(*t, v)));
    }
    let gguf = dir.path().join("tiny.gguf");
    w.write(&gguf).unwrap();

    let hf_dir = dir.path().join("hf");
    std::fs::create_dir_all(&hf_dir).unwrap();
    let mut config = json!({
        "model_type": spec.arch, "hidden_size": h, "num_hidden_layers": spec.layers, "intermediate_size": inter,
        "num_attention_heads": spec.heads, "num_key_value_heads": spec.kv_heads, "vocab_size": vocab,
        "rms_norm_eps": spec.eps, "rope_theta": spec.theta, "tie_word_embeddings": spec.tied, "max_position_embeddings": 256,
    });
    if let Some(d) = spec.head_dim {
        config["head_dim"] = json!(d);
    }
    std::fs::write(hf_dir.join("config.json"), config.to_string()).unwrap();
    let host: Vec<(String, Vec<usize>, Vec<f32>)> = weights
        .iter()
        .filter(|(k, _)| k.as_str() != "rope_freqs")
        .map(|(k, (s, v))| (k.clone(), s.clone(), v.clone()))
        .collect();
    write_safetensors(&hf_dir.join("model.safetensors"), &host, "float32").unwrap();
    Built {
        _dir: dir,
        gguf,
        hf_dir,
        tokenizer: tk,
        weights,
        vocab,
    }
}
