//! Shipping a trained model: fusing (brain-train's `fuse`), Ollama Modelfiles checked against
//! the chat template used in training, and adapters in the layout Ollama's importer reads.
//!
//! - [`export::export_ollama`]: `brain export ollama NAME` — fuse (or convert the adapter),
//!   write the Modelfile, check it, run `ollama create` or print the command.
//! - [`family`]: the TEMPLATE and stop strings, derived from the chat template training renders.
//! - [`ollama`]: Modelfile text and `ollama create`.
//! - [`peft`]: mlx-lm adapter → PEFT layout (`lora_alpha = scale × rank`).
//! - [`template`]: renders conversations as training, the model's chat template and the
//!   Modelfile would, and compares; [`gotmpl`] is the Go-template subset Ollama templates use.

pub mod export;
pub mod family;
pub mod gotmpl;
pub mod ollama;
pub mod peft;
pub mod template;
