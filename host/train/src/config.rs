//! `config.json` of a Hugging Face model directory (plus mlx-community's `quantization`), for the
//! architectures of [`crate::models`]: `llama` (also `mistral`), `qwen2`, `qwen3`. A GGUF file's
//! metadata is turned into the same struct (`source::gguf`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io, model_err, Result};

/// The fields of a `config.json` the models read. Unknown fields are ignored on read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Some configs give it explicitly; else hidden_size / num_attention_heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f32,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    #[serde(default = "default_tie")]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers 5 writes `rope_theta` and the scaling here instead of at the top level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    /// Llama-family configs: whether q/k/v/o carry a bias (Qwen2 always has q/k/v bias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    /// Llama-family configs: whether gate/up/down carry a bias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    /// mlx-community quantized checkpoints: `{"group_size": 64, "bits": 4}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
}

/// Quantization parameters (MLX's affine mode). Per-layer overrides (`"model.layers.0.mlp.down_proj":
/// {"group_size": 64, "bits": 8}`) are kept in `overrides`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    pub group_size: i32,
    pub bits: i32,
    #[serde(flatten)]
    pub overrides: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Quantization {
    /// (group_size, bits) for the layer with prefix `name` (e.g. `model.layers.3.self_attn.q_proj`).
    pub fn for_layer(&self, name: &str) -> (i32, i32) {
        match self.overrides.get(name) {
            Some(v) if v.is_object() => (
                v.get("group_size").and_then(|g| g.as_i64()).map_or(self.group_size, |g| g as i32),
                v.get("bits").and_then(|g| g.as_i64()).map_or(self.bits, |g| g as i32),
            ),
            _ => (self.group_size, self.bits),
        }
    }
}

/// `model_type` values [`crate::models`] implements (`mistral` is the llama layout).
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];

fn default_eps() -> f32 {
    1e-6
}
/// transformers' default for llama, qwen2 and qwen3 when a config names no base.
fn default_theta() -> f32 {
    10_000.0
}
fn default_tie() -> bool {
    true
}
fn default_max_pos() -> usize {
    32768
}

impl ModelConfig {
    /// Read `DIR/config.json` and check it describes a supported model.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| model_err(&path, format!("bad config.json: {e}")))?;
        let mut cfg: ModelConfig =
            serde_json::from_value(raw.clone()).map_err(|e| model_err(&path, format!("bad config.json: {e}")))?;
        cfg.adopt_rope_parameters(raw.get("rope_theta").is_some());
        // Absent, transformers' default is untied; an lm_head in the weights decides (hf::load).
        if raw.get("tie_word_embeddings").is_none() {
            cfg.tie_word_embeddings = !crate::source::hf::has_lm_head(dir);
        }
        cfg.validate().map_err(|m| model_err(&path, m))?;
        Ok(cfg)
    }

    /// Take `rope_theta` and the scaling from transformers 5's `rope_parameters` when the
    /// top level lacks them.
    fn adopt_rope_parameters(&mut self, has_theta: bool) {
        let Some(p) = self.rope_parameters.clone().filter(|p| p.is_object()) else { return };
        if !has_theta {
            if let Some(t) = p.get("rope_theta").and_then(|t| t.as_f64()) {
                self.rope_theta = t as f32;
            }
        }
        let kind = p.get("rope_type").or_else(|| p.get("type")).and_then(|v| v.as_str());
        if self.rope_scaling.as_ref().is_none_or(|s| s.is_null()) && !matches!(kind, None | Some("default")) {
            self.rope_scaling = Some(p);
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !SUPPORTED_MODEL_TYPES.contains(&self.model_type.as_str()) {
            return Err(format!(
                "model_type {:?} is not supported (supported: {})",
                self.model_type,
                SUPPORTED_MODEL_TYPES.join(", ")
            ));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) && self.head_dim.is_none() {
            return Err("hidden_size must be a multiple of num_attention_heads".into());
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err("num_attention_heads must be a multiple of num_key_value_heads".into());
        }
        if let Some(s) = &self.rope_scaling {
            if !s.is_null() {
                let kind = s.get("type").or_else(|| s.get("rope_type")).and_then(|v| v.as_str());
                if !matches!(kind, None | Some("default") | Some("linear") | Some("llama3")) {
                    return Err(format!("rope_scaling {s} is not supported (supported: linear, llama3)"));
                }
            }
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Whether q/k/v projections carry a bias (Qwen2: always; Llama, Qwen3: `attention_bias`).
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias.unwrap_or(false)
    }
}
