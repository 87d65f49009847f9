//! Native training core of SAM Brain: Llama, Qwen2 and Qwen3 models from any source (Hugging Face
//! and mlx-community directories, GGUF, Ollama), LoRA/QLoRA, SFT and DPO trainers, over MLX.
//!
//! One concept per module: [`tokenizer`] (tokenizer.json, ChatML, loss masks, BPE training),
//! [`tiny`] (random tiny HF-layout models), [`jsonl`] (data files read line by line), [`data`] (JSONL formats, batches), [`config`]
//! (config.json), [`models`] (one file per architecture, LoRA layers),
//! [`source`] (where a model comes from), [`gguf`] (GGUF files: read, write, tensor decoding),
//! [`adapters`] (mlx-lm's adapter format),
//! [`loss`] (masked cross-entropy), [`optim`] (AdamW, schedule), [`train_loop`] (the training
//! loop SFT and DPO share), [`trainer`] (SFT, test evaluation), [`dpo`] (preference
//! optimization), [`cache`] (KV cache), [`sampling`] (token choice, loop detection), [`generate`]
//! (generation, chat), [`eval`] (evaluation).
//!
//! Entry points for the CLI:
//! - `brain train` → [`train`]`(&TrainArgs, &mut |p: &Progress| …) -> TrainReport`
//! - `brain train --test` → [`evaluate_test`]`(&TestArgs) -> TestReport {test_loss, test_ppl, tokens}`
//! - `brain model init-tiny DIR` → [`tiny::init_tiny`]`(dir, &TinySpec, corpus)`
//! - `brain dpo` → [`dpo::dpo`]`(&DpoArgs, &mut |p: &DpoProgress| …) -> DpoReport` (`report.metrics`:
//!   TRL's names)
//! - `brain generate` → [`generate::generate`]`(&GenerateArgs) -> Generation`; `brain chat` →
//!   [`generate::Generator::load`] then `reply_stream(&history, &GenOptions, on_text)` per turn
//! - `brain eval` → [`eval::evaluate`]`(&EvalArgs, Option<&mut Scorer>) -> EvalReport`

pub mod adapters;
pub mod cache;
pub mod config;
pub mod convert;
pub mod data;
pub mod distributed;
pub mod dpo;
pub mod error;
pub mod eval;
pub mod fuse;
pub mod generate;
pub mod gguf;
pub mod jsonl;
pub mod loss;
pub mod models;
pub mod optim;
pub mod rng;
pub mod sampling;
pub mod source;
pub mod tiny;
pub mod tokenizer;
pub mod train_loop;
pub mod trainer;

pub use error::{Error, Result};
pub use trainer::{evaluate_test, train, Event, FineTuneType, LoraArgs, Progress, RunSummary, StopReason, TestArgs, TestReport, TrainArgs, TrainReport, COMPILED_LENGTH_MULTIPLE};
