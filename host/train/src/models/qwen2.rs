//! Qwen2, Qwen2.5 and Qwen2.5-Coder: the Llama block with a bias on the q, k and v projections
//! (none on o, none in the MLP); RoPE base 1e6 by default.

use super::blocks::{Layout, Rope};
use crate::config::ModelConfig;

pub(super) fn layout(cfg: &ModelConfig, rope_factors: Option<&[f32]>) -> Result<Layout, String> {
    Ok(Layout { qkv_bias: true, o_bias: false, mlp_bias: false, qk_norm: false, rope: Rope::from_config(cfg, rope_factors)? })
}
