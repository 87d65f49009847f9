//! `brain model info`: what a model is, read from its config, its tensors' shapes and dtypes
//! (no weight data is evaluated) and its tokenizer.

use std::collections::BTreeMap;
use std::path::Path;

use mlx::Dtype;
use serde::Serialize;

use super::Origin;
use crate::error::Result;

/// A model's description.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// What `--model` resolved to: a directory or a GGUF file (an Ollama name resolves to its blob).
    pub path: String,
    /// `dir` or `gguf`.
    pub format: &'static str,
    pub architecture: String,
    pub parameters: usize,
    /// e.g. `4-bit (group 64)`, `4-bit (group 32), 8-bit for 1 tensor`; none for dense weights.
    pub quantization: Option<String>,
    /// Stored dtype of the dense floating tensors (the most common one).
    pub dtype: String,
    pub layers: usize,
    pub hidden_size: usize,
    pub context_length: usize,
    pub vocab_size: usize,
    pub tokenizer_size: usize,
    pub tie_word_embeddings: bool,
    /// Where the chat template came from, or `ChatML fallback (the model has none)`.
    pub chat_template: String,
}

fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::Float32 => "float32",
        Dtype::Float16 => "float16",
        Dtype::Bfloat16 => "bfloat16",
        Dtype::Float64 => "float64",
        _ => "other",
    }
}

/// Describe the model `model` names.
pub fn model_info(model: &Path) -> Result<ModelInfo> {
    let origin = super::resolve(model)?;
    let (config, raw) = super::load_weights(model)?;
    let tokenizer = super::load_tokenizer(model)?;
    let quant = config.quantization.as_ref();
    let mut parameters = 0usize;
    let mut bits_count: BTreeMap<i32, usize> = BTreeMap::new();
    let mut group = 0;
    let mut dtypes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (name, a) in &raw {
        if name.ends_with(".scales") || name.ends_with(".biases") || name == "rope_freqs" {
            continue;
        }
        let prefix = name.trim_end_matches(".weight");
        if a.dtype() == Dtype::Uint32 && raw.contains_key(&format!("{prefix}.scales")) {
            let (g, bits) = quant.map(|q| q.for_layer(prefix)).unwrap_or((32, 4));
            parameters += a.size() * 32 / bits as usize;
            *bits_count.entry(bits).or_default() += 1;
            group = g;
        } else {
            parameters += a.size();
            *dtypes.entry(dtype_name(a.dtype())).or_default() += a.size();
        }
    }
    let quantization = (!bits_count.is_empty()).then(|| {
        let mut by_count: Vec<(i32, usize)> = bits_count.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1));
        let mut s = format!("{}-bit (group {group})", by_count[0].0);
        for (bits, n) in &by_count[1..] {
            s.push_str(&format!(", {bits}-bit for {n} tensor{}", if *n == 1 { "" } else { "s" }));
        }
        s
    });
    let dtype = dtypes.iter().max_by_key(|(_, n)| **n).map_or("none", |(d, _)| *d).to_string();
    let (path, format) = match &origin {
        Origin::Dir(d) => (d.display().to_string(), "dir"),
        Origin::Gguf(f) => (f.display().to_string(), "gguf"),
    };
    Ok(ModelInfo {
        path,
        format,
        architecture: config.model_type.clone(),
        parameters,
        quantization,
        dtype,
        layers: config.num_hidden_layers,
        hidden_size: config.hidden_size,
        context_length: config.max_position_embeddings,
        vocab_size: config.vocab_size,
        tokenizer_size: tokenizer.vocab_size(),
        tie_word_embeddings: config.tie_word_embeddings,
        chat_template: tokenizer.template_source().to_string(),
    })
}
