//! Where a model comes from. Every `--model` names one of: a Hugging Face directory (single or
//! sharded safetensors, f32/f16/bf16), an mlx-community quantized directory (kept quantized:
//! QLoRA), a `.gguf` file, or `ollama:NAME[:TAG]` in the Ollama store. This layer hands the
//! models a config, weights under Hugging Face names and a tokenizer with its chat template,
//! whatever the origin.

pub mod gguf;
pub(crate) mod hf;
mod info;
pub mod ollama;
pub mod smollm2;

pub use info::{model_info, ModelInfo};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlx::Array;

use crate::config::ModelConfig;
use crate::error::{model_err, Result};
use crate::tokenizer::Tokenizer;

/// What a `--model` value resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A Hugging Face / mlx-community directory.
    Dir(PathBuf),
    /// A GGUF file (given directly, or an Ollama blob).
    Gguf(PathBuf),
}

impl Origin {
    pub fn path(&self) -> &Path {
        match self {
            Origin::Dir(p) | Origin::Gguf(p) => p,
        }
    }
}

/// Resolve a `--model` value: `ollama:NAME[:TAG]`, a file (GGUF, checked by its magic), or a
/// directory with a config.json.
pub fn resolve(model: &Path) -> Result<Origin> {
    let text = model.to_string_lossy();
    if let Some(name) = text.strip_prefix("ollama:") {
        return Ok(Origin::Gguf(ollama::resolve(name)?));
    }
    if model.is_file() {
        let mut magic = [0u8; 4];
        let ok = std::fs::File::open(model).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok();
        if ok && &magic == b"GGUF" {
            return Ok(Origin::Gguf(model.to_path_buf()));
        }
        return Err(model_err(model, "is a file but not a GGUF model (a model is a GGUF file, a Hugging Face directory or ollama:NAME)"));
    }
    if model.is_dir() {
        if !model.join("config.json").exists() {
            return Err(model_err(model, "has no config.json: not a Hugging Face model directory"));
        }
        return Ok(Origin::Dir(model.to_path_buf()));
    }
    Err(model_err(model, "no such model: give a Hugging Face directory, a .gguf file or ollama:NAME[:TAG]"))
}

/// The config of the model `model` names (no tensor data is read).
pub fn load_config(model: &Path) -> Result<ModelConfig> {
    match resolve(model)? {
        Origin::Dir(d) => ModelConfig::load(&d),
        Origin::Gguf(f) => gguf::config(&f),
    }
}

/// The config and weights (Hugging Face names) of the model `model` names.
pub fn load_weights(model: &Path) -> Result<(ModelConfig, BTreeMap<String, Array>)> {
    match resolve(model)? {
        Origin::Dir(d) => hf::load(&d),
        Origin::Gguf(f) => {
            let config = gguf::config(&f)?;
            let weights = gguf::weights(&f, &config)?;
            Ok((config, weights))
        }
    }
}

/// The tokenizer (with its chat template) of the model `model` names.
pub fn load_tokenizer(model: &Path) -> Result<Tokenizer> {
    match resolve(model)? {
        Origin::Dir(d) => Tokenizer::load(&d),
        Origin::Gguf(f) => gguf::tokenizer(&f),
    }
}
