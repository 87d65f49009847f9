//! A `.gguf` file as a model source: the same [`ModelConfig`], Hugging Face–named weights and
//! tokenizer a Hugging Face directory gives, so the models never know where weights came from.
//!
//! - [`config`]: from the `{arch}.*` metadata (llama, qwen2, qwen3) and the tensor table.
//! - [`weights`]: tensors decoded by [`crate::gguf::tensors`] (Q4_0/Q4_1/Q8_0/Q4_K stay quantized
//!   as MLX affine triples, group size 32), renamed GGUF → Hugging Face, with llama.cpp's row
//!   permutation of `attn_q`/`attn_k` undone for llama-architecture files.
//! - [`tokenizer`] (in `gguf/vocab.rs`): the byte-level BPE tokenizer from `tokenizer.ggml.*`.

use std::collections::BTreeMap;
use std::path::Path;

use mlx::Array;
use serde_json::json;

use crate::config::{ModelConfig, Quantization};
use crate::error::{model_err, Result};
use crate::gguf::{quant, tensors, GgufFile};

mod vocab;

pub use vocab::{pre_name, tokenizer, tokenizer_of, tokenizer_parts, PRE_TOKENIZERS};

/// `general.architecture` values this loader understands.
pub const ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3"];

/// Key of the Llama-3.1 rotary frequency factors (`rope_freqs.weight` in the file) among the
/// weights: one multiplier per rotary dimension pair, applied to the rotary periods.
pub const ROPE_FREQS: &str = "rope_freqs";

/// Tensor-name pieces inside a block: GGUF → Hugging Face.
const BLOCK_NAMES: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Top-level tensor-name pieces: GGUF → Hugging Face.
const TOP_NAMES: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

/// The Hugging Face name of GGUF array `name` (`blk.3.attn_q.scales` →
/// `model.layers.3.self_attn.q_proj.scales`); `rope_freqs.weight` → [`ROPE_FREQS`]. None for a
/// tensor this loader does not know.
pub fn hf_name(name: &str) -> Option<String> {
    if name == "rope_freqs.weight" {
        return Some(ROPE_FREQS.to_string());
    }
    let (base, suffix) = name.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias" | "scales" | "biases") {
        return None;
    }
    if let Some(rest) = base.strip_prefix("blk.") {
        let (layer, piece) = rest.split_once('.')?;
        layer.parse::<usize>().ok()?;
        let hf = BLOCK_NAMES.iter().find(|(g, _)| *g == piece)?.1;
        return Some(format!("model.layers.{layer}.{hf}.{suffix}"));
    }
    let hf = TOP_NAMES.iter().find(|(g, _)| *g == base)?.1;
    Some(format!("{hf}.{suffix}"))
}

/// The GGUF name of Hugging Face weight `name` (the inverse of [`hf_name`]), for writing GGUF files.
pub fn gguf_name(name: &str) -> Option<String> {
    if name == ROPE_FREQS {
        return Some("rope_freqs.weight".to_string());
    }
    let (base, suffix) = name.rsplit_once('.')?;
    if let Some(rest) = base.strip_prefix("model.layers.") {
        let (layer, piece) = rest.split_once('.')?;
        layer.parse::<usize>().ok()?;
        let g = BLOCK_NAMES.iter().find(|(_, h)| *h == piece)?.0;
        return Some(format!("blk.{layer}.{g}.{suffix}"));
    }
    let g = TOP_NAMES.iter().find(|(_, h)| *h == base)?.0;
    Some(format!("{g}.{suffix}"))
}

/// The config of the model in GGUF file `path`.
pub fn config(path: &Path) -> Result<ModelConfig> {
    config_of(&GgufFile::open(path)?)
}

/// [`config`] of an already opened file.
pub fn config_of(file: &GgufFile) -> Result<ModelConfig> {
    let err = |m: String| model_err(&file.path, m);
    let arch = file.architecture()?;
    if !ARCHITECTURES.contains(&arch) {
        return Err(err(format!(
            "architecture {arch:?} is not supported (supported: {})",
            ARCHITECTURES.join(", ")
        )));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let uint = |k: &str| file.get_uint(&key(k));
    let required = |k: &str| -> Result<usize> { Ok(uint(k)?.ok_or_else(|| err(format!("metadata {} is missing", key(k))))? as usize) };
    let hidden = required("embedding_length")?;
    let layers = required("block_count")?;
    let heads = required("attention.head_count")?;
    let kv_heads = uint("attention.head_count_kv")?.map_or(heads, |v| v as usize);
    if hidden == 0 || layers == 0 || heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(err(format!(
            "bad shape: hidden {hidden}, {layers} blocks, {heads} heads, {kv_heads} key/value heads"
        )));
    }
    let head_dim = uint("attention.key_length")?.map(|v| v as usize);
    let hd = head_dim.unwrap_or(hidden / heads);
    if let Some(v) = uint("attention.value_length")? {
        if v as usize != hd {
            return Err(err(format!(
                "{} ({v}) differs from the key length ({hd}); not supported",
                key("attention.value_length")
            )));
        }
    }
    if let Some(r) = uint("rope.dimension_count")? {
        if r as usize != hd {
            return Err(err(format!(
                "{} is {r} but heads have {hd} dimensions: partial rotary embeddings are not supported",
                key("rope.dimension_count")
            )));
        }
    }
    let eps = file
        .get_f64(&key("attention.layer_norm_rms_epsilon"))?
        .ok_or_else(|| err(format!("metadata {} is missing", key("attention.layer_norm_rms_epsilon"))))?;
    let tokens = file.get_array("tokenizer.ggml.tokens")?.map(|t| t.len());
    let embed_rows = file
        .tensor("token_embd.weight")
        .and_then(|t| t.shape().first().copied())
        .map(|r| r as usize);
    let vocab_size = match (tokens, uint("vocab_size")?, embed_rows) {
        (Some(t), _, Some(e)) if t != e => {
            tracing::warn!("{}: {t} tokens but token_embd has {e} rows; using {e}", file.path.display());
            e
        }
        (Some(t), _, _) => t,
        (None, Some(v), _) => v as usize,
        (None, None, Some(e)) => e,
        (None, None, None) => {
            return Err(err(
                "no tokenizer.ggml.tokens, vocab_size or token_embd.weight: the vocabulary size is unknown".into(),
            ))
        }
    };
    let id = |k: &str| file.get_uint(k).map(|v| v.map(|v| v as u32));
    let eos = id("tokenizer.ggml.eos_token_id")?;
    Ok(ModelConfig {
        model_type: arch.to_string(),
        architectures: vec![match arch {
            "llama" => "LlamaForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            _ => "Qwen3ForCausalLM",
        }
        .to_string()],
        hidden_size: hidden,
        num_hidden_layers: layers,
        intermediate_size: required("feed_forward_length")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv_heads),
        head_dim,
        vocab_size,
        rms_norm_eps: eps as f32,
        // llama.cpp's default when the key is absent.
        rope_theta: file.get_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32,
        tie_word_embeddings: file.tensor("output.weight").is_none(),
        max_position_embeddings: uint("context_length")?.map_or(4096, |v| v as usize),
        torch_dtype: None,
        bos_token_id: id("tokenizer.ggml.bos_token_id")?,
        eos_token_id: eos.map(|e| json!(e)),
        rope_scaling: rope_scaling(file, arch)?,
        rope_parameters: None,
        attention_bias: Some(file.tensor("blk.0.attn_q.bias").is_some()),
        mlp_bias: Some(file.tensor("blk.0.ffn_up.bias").is_some()),
        quantization: quantization(file),
    })
}

/// `{arch}.rope.scaling.*` as config.json's `rope_scaling` (linear only; Llama 3.1's scaling comes
/// as the `rope_freqs` tensor instead).
fn rope_scaling(file: &GgufFile, arch: &str) -> Result<Option<serde_json::Value>> {
    let kind = file.get_str(&format!("{arch}.rope.scaling.type"))?;
    let factor = file.get_f64(&format!("{arch}.rope.scaling.factor"))?;
    // Files from before the scaling keys: a bare linear factor.
    let legacy = file.get_f64(&format!("{arch}.rope.scale_linear"))?;
    match (kind, factor.or(legacy)) {
        (None | Some("none"), None) | (Some("none"), _) => Ok(None),
        (None | Some("linear"), Some(1.0)) => Ok(None),
        (None | Some("linear"), Some(f)) => Ok(Some(json!({"type": "linear", "factor": f}))),
        (Some("linear"), None) => Err(model_err(
            &file.path,
            format!("{arch}.rope.scaling.type is linear but {arch}.rope.scaling.factor is missing"),
        )),
        (Some(other), _) => Err(model_err(
            &file.path,
            format!("rope scaling {other:?} is not supported (linear is)"),
        )),
    }
}

/// MLX quantization of the layers that [`tensors`] keeps quantized: group size 32, `bits` the most
/// common width, one override per Hugging Face layer prefix of another width. Dense layers need no
/// entry (the models detect quantized layers by their `.scales`).
fn quantization(file: &GgufFile) -> Option<Quantization> {
    let mut layers: Vec<(String, i32)> = Vec::new();
    for t in &file.tensors {
        let (Some(bits), Some(hf)) = (quant::affine_bits(t.ggml_type), hf_name(&t.name)) else {
            continue;
        };
        if let Some(prefix) = hf.strip_suffix(".weight") {
            layers.push((prefix.to_string(), bits));
        }
    }
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    for (_, b) in &layers {
        *counts.entry(*b).or_default() += 1;
    }
    // Most common width; ties go to the wider one.
    let bits = counts.iter().max_by_key(|(b, n)| (**n, **b)).map(|(b, _)| *b)?;
    let group = quant::QK as i32;
    let overrides = layers
        .into_iter()
        .filter(|(_, b)| *b != bits)
        .map(|(p, b)| (p, json!({"group_size": group, "bits": b})))
        .collect();
    Some(Quantization {
        group_size: group,
        bits,
        overrides,
    })
}

/// The weights of GGUF file `path` under Hugging Face names, for `config` (from [`config`]).
pub fn weights(path: &Path, config: &ModelConfig) -> Result<BTreeMap<String, Array>> {
    let file = GgufFile::open(path)?;
    let arch = file.architecture()?;
    if arch != config.model_type {
        return Err(model_err(
            path,
            format!("the file is {arch}, the config says {}", config.model_type),
        ));
    }
    let unknown: Vec<&str> = file
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| hf_name(n).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(model_err(
            path,
            format!("tensors this loader does not know ({arch}): {}", unknown.join(", ")),
        ));
    }
    let loaded = tensors::load(&file, |_| true)?;
    if !loaded.dequantized.is_empty() {
        let what: Vec<String> = loaded.dequantized.iter().map(|(t, n)| format!("{n} {t}")).collect();
        tracing::info!(
            "{}: dequantized {} tensors to f16 (no MLX layout for their type)",
            path.display(),
            what.join(", ")
        );
    }
    // llama.cpp's converter interleaves the rotary halves of each head's q/k rows for llama files.
    let permuted = arch == "llama";
    let mut out = BTreeMap::new();
    for (name, a) in loaded.arrays {
        let hf = hf_name(&name).ok_or_else(|| model_err(path, format!("tensor {name} has no Hugging Face name")))?;
        let heads = if hf.contains(".self_attn.q_proj.") {
            Some(config.num_attention_heads)
        } else if hf.contains(".self_attn.k_proj.") {
            Some(config.kv_heads())
        } else {
            None
        };
        let a = match heads {
            Some(h) if permuted => unpermute_rows(&a, h as i32).map_err(|e| model_err(path, format!("tensor {name}: {e}")))?,
            _ => a,
        };
        out.insert(hf, a);
    }
    Ok(out)
}

/// Undo llama.cpp's permutation of q/k output rows: within each of `heads` heads it stores rotary
/// pair (i, i + d/2) as rows (2i, 2i + 1); Hugging Face keeps the halves apart. Rows are the first
/// axis of the packed weight, its scales and biases, and of a bias vector alike.
pub fn unpermute_rows(a: &Array, heads: i32) -> std::result::Result<Array, String> {
    let shape = a.shape();
    let rows = *shape.first().ok_or("a scalar has no rows")?;
    if heads <= 0 || rows % (2 * heads) != 0 {
        return Err(format!("{rows} rows do not split into {heads} heads of rotary pairs"));
    }
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend_from_slice(&shape[1..]);
    let go = || -> mlx::Result<Array> { a.reshape(&split)?.swapaxes(1, 2)?.reshape(&shape) };
    go().map_err(|e| e.to_string())
}
