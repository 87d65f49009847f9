//! Where a model comes from. Every `--model` names one of: a Hugging Face directory (single or
//! sharded safetensors, f32/f16/bf16), an mlx-community quantized directory, a `.gguf` file, or
//! `ollama:NAME[:TAG]` in the Ollama store. This layer hands the models a config, named weights
//! (Hugging Face names) and a tokenizer with its chat template, whatever the origin.

pub mod gguf;
pub mod ollama;
pub mod smollm2;

use std::path::Path;

use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// The tokenizer (with its chat template) of the model `model` names.
pub fn load_tokenizer(model: &Path) -> Result<Tokenizer> {
    Tokenizer::load(model)
}
