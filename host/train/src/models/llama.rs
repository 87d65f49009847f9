//! Llama 2 / 3.x, SmolLM and Mistral-style models: q/k/v/o without bias unless
//! `attention_bias`, MLP bias when `mlp_bias`, RoPE with `rope_scaling` `linear` or `llama3`
//! (Llama 3.1/3.2's frequency correction), tied or untied embeddings, explicit `head_dim`.

use super::blocks::{Layout, Rope};
use crate::config::ModelConfig;

pub(super) fn layout(cfg: &ModelConfig, rope_factors: Option<&[f32]>) -> Result<Layout, String> {
    let bias = cfg.attention_bias.unwrap_or(false);
    Ok(Layout {
        qkv_bias: bias,
        o_bias: bias,
        mlp_bias: cfg.mlp_bias.unwrap_or(false),
        qk_norm: false,
        rope: Rope::from_config(cfg, rope_factors)?,
    })
}
