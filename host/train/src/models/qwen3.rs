//! Qwen3 dense models: an RMSNorm over each head of q and k (weights of `head_dim`) before RoPE,
//! an explicit `head_dim` (heads × head_dim may differ from the hidden size), and no q/k/v bias
//! unless `attention_bias` (which then applies to o as well).

use super::blocks::{Layout, Rope};
use crate::config::ModelConfig;

pub(super) fn layout(cfg: &ModelConfig, rope_factors: Option<&[f32]>) -> Result<Layout, String> {
    let bias = cfg.attention_bias.unwrap_or(false);
    Ok(Layout { qkv_bias: bias, o_bias: bias, mlp_bias: false, qk_norm: true, rope: Rope::from_config(cfg, rope_factors)? })
}
