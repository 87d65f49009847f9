//! The sections of `brain.toml`, as written in the file.
//!
//! Every struct rejects unknown keys and gives every key a default, so an empty file is a valid
//! config. Paths are kept as written here; [`super::Config`] resolves them (relative to the config
//! file's directory, `~` expanded) right after parsing.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// `[store]`: where the SQLite store lives.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub path: PathBuf,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection { path: "brain.db".into() }
    }
}

/// `grants = { git = [..], sqlite = [..], read = [..] }` of a source or filter: capabilities,
/// none by default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsSection {
    /// Repositories (or directories holding them) the `git` capability may open.
    pub git: Vec<String>,
    /// SQLite database files the `sqlite` capability may open read-only.
    pub sqlite: Vec<String>,
    /// Directories preopened read-only in the plugin's WASI filesystem.
    pub read: Vec<String>,
    /// Model endpoints (base URLs) the `llm` capability may call.
    pub llm: Vec<String>,
    /// The environment variable holding the API key sent to the `llm` endpoints (the key itself
    /// is never written in the config).
    pub llm_key_env: Option<String>,
}

/// One `[[source]]` or `[[filter]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// Unique among sources (or filters); appears in provenance, checkpoints and status.
    pub name: Spanned<String>,
    /// A bundled plugin's name, or a path to a `.wasm` component.
    pub plugin: Spanned<String>,
    #[serde(default)]
    pub grants: GrantsSection,
    /// The plugin's own table, handed to it as JSON.
    #[serde(default)]
    pub config: toml::Table,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A source's own collect budget (see [`BudgetSection`]).
    #[serde(default)]
    pub budget: BudgetSection,
}

fn yes() -> bool {
    true
}

/// `[review]`: batch thresholds on the combined filter score.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewSection {
    /// Examples scoring above this are approved automatically.
    pub approve_above: Spanned<f64>,
    /// Examples scoring below this are rejected automatically.
    pub reject_below: Spanned<f64>,
}

impl Default for ReviewSection {
    fn default() -> Self {
        ReviewSection { approve_above: Spanned::new(0..0, 0.7), reject_below: Spanned::new(0..0, 0.3) }
    }
}

/// `[scrub]`: secret scrubbing before anything is stored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubSection {
    /// Extra rules beside the built-in ones.
    pub rules: Vec<ScrubRule>,
    /// Regexes (or exact values) never redacted.
    pub allowlist: Vec<String>,
    /// Also redact email addresses.
    pub emails: bool,
    /// Also redact home directory paths (`/home/x`, `/Users/x`).
    pub home_paths: bool,
    /// A rules file in the built-in rules' format (`[[rule]]` tables with id, description,
    /// keywords, regex, entropy, check, allow), relative to brain.toml.
    pub extra_rules: Option<PathBuf>,
}

/// One user scrub rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubRule {
    /// Appears in `[REDACTED:<id>]`.
    pub id: String,
    /// The regex; its first capture group (or the whole match) is the secret.
    pub regex: String,
    /// Cheap prefilter: the rule runs only on text containing one of these (all text if empty).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy (bits per char) of the secret.
    #[serde(default)]
    pub entropy: Option<f64>,
}

/// `[dedup]`: near-duplicate detection (MinHash + LSH over word shingles).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupSection {
    /// Estimated Jaccard similarity at or above which an example is a near duplicate.
    pub threshold: f64,
    pub bands: u32,
    pub rows: u32,
    /// Words per shingle.
    pub shingle: u32,
}

impl Default for DedupSection {
    fn default() -> Self {
        DedupSection { threshold: 0.7, bands: 14, rows: 8, shingle: 5 }
    }
}

/// `[export]`: dataset snapshots.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSection {
    /// Directory the snapshots are written under.
    pub out: PathBuf,
    pub ratios: Ratios,
    /// How many times a correction example counts in the training split.
    pub correction_weight: f64,
    /// Order the training split from simple to complex (filter complexity).
    pub curriculum: bool,
}

impl Default for ExportSection {
    fn default() -> Self {
        ExportSection { out: "data".into(), ratios: Ratios::default(), correction_weight: 2.0, curriculum: false }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ratios {
    pub train: f64,
    pub valid: f64,
    pub test: f64,
}

impl Default for Ratios {
    fn default() -> Self {
        Ratios { train: 0.8, valid: 0.1, test: 0.1 }
    }
}

/// `[train]`: supervised fine-tuning; field names follow mlx-lm's `lora` command.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// A Hugging Face model directory (Qwen2 family; mlx-community 4-bit directories too).
    #[serde(alias = "model")]
    pub base_model: Option<PathBuf>,
    /// Directory with train/valid/test JSONL; defaults to the latest export snapshot.
    pub data: Option<PathBuf>,
    /// `lora` or `full`.
    pub fine_tune_type: String,
    pub iters: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    /// Warmup steps of the learning-rate schedule (then cosine decay).
    pub warmup: u32,
    /// How many of the last layers get adapters.
    pub num_layers: u32,
    pub max_seq_length: u32,
    pub grad_accumulation: u32,
    pub grad_checkpoint: bool,
    /// Compile each update with MLX (unset: on a GPU only).
    pub compile: Option<bool>,
    /// On the CPU, multiply the frozen weights in bf16 (AVX-512 BF16; ~2x sgemm's rate). Unset:
    /// for models stored in bf16 on CPUs that have the instructions.
    pub bf16_matmul: Option<bool>,
    pub steps_per_report: u32,
    pub steps_per_eval: u32,
    pub val_batches: u32,
    pub save_every: u32,
    /// Stop after this many evaluations without improvement (0 = never).
    pub early_stopping_patience: u32,
    pub seed: u64,
    /// Where adapters are written (`adapters.safetensors` + `adapter_config.json`).
    pub adapter_path: PathBuf,
    /// Runs (checkpoints, metrics, loss curves) are kept under this directory.
    pub runs_dir: PathBuf,
    /// Stop with a clear error above this much memory (GB); none = no limit.
    pub memory_limit_gb: Option<f64>,
    pub lora: LoraSection,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            base_model: None,
            data: None,
            fine_tune_type: "lora".into(),
            iters: 1000,
            batch_size: 4,
            learning_rate: 1e-5,
            warmup: 0,
            num_layers: 16,
            max_seq_length: 2048,
            grad_accumulation: 1,
            grad_checkpoint: false,
            compile: None,
            bf16_matmul: None,
            steps_per_report: 10,
            steps_per_eval: 200,
            val_batches: 25,
            save_every: 100,
            early_stopping_patience: 0,
            seed: 0,
            adapter_path: "adapters".into(),
            runs_dir: "runs".into(),
            memory_limit_gb: None,
            lora: LoraSection::default(),
        }
    }
}

/// `[train.lora]` / `[dpo.lora]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    pub rank: u32,
    /// Absolute scale (mlx-lm's `scale`, not alpha).
    pub scale: f64,
    pub dropout: f64,
    /// Which linear layers get adapters.
    pub keys: Vec<String>,
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection {
            rank: 8,
            scale: 20.0,
            dropout: 0.0,
            keys: ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// `[dpo]`: preference tuning after SFT.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoSection {
    /// Defaults to `[train] base_model`.
    #[serde(alias = "model")]
    pub base_model: Option<PathBuf>,
    pub data: Option<PathBuf>,
    /// The frozen reference: an SFT adapter directory; none = the base model with adapters off.
    pub reference_adapter: Option<PathBuf>,
    /// `sigmoid` (DPO), `hinge` or `ipo`.
    pub loss_type: String,
    pub beta: f64,
    pub iters: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    pub num_layers: u32,
    pub max_seq_length: u32,
    pub steps_per_eval: u32,
    pub seed: u64,
    pub adapter_path: PathBuf,
    pub lora: LoraSection,
}

impl Default for DpoSection {
    fn default() -> Self {
        DpoSection {
            base_model: None,
            data: None,
            reference_adapter: None,
            loss_type: "sigmoid".into(),
            beta: 0.1,
            iters: 200,
            batch_size: 2,
            learning_rate: 5e-7,
            num_layers: 16,
            max_seq_length: 2048,
            steps_per_eval: 50,
            seed: 0,
            adapter_path: "adapters-dpo".into(),
            lora: LoraSection::default(),
        }
    }
}

/// `[eval]`: comparing a candidate model with the active one.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Test set; defaults to the export's test split.
    pub data: Option<PathBuf>,
    /// At most this many test examples (0 = all).
    pub max_examples: u32,
    /// Generation settings for judged samples.
    pub max_tokens: u32,
    pub temperature: f64,
    /// A candidate is promoted only when it beats the active model on `promote_metric` by this
    /// much (absolute, in the metric's units).
    pub min_improvement: f64,
    /// The evaluation number automatic promotion compares (`test_loss`, `routing_accuracy`, …).
    pub promote_metric: String,
    /// `auto` (from the metric's name), `lower` or `higher`: which way is better.
    pub promote_direction: String,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            data: None,
            max_examples: 0,
            max_tokens: 256,
            temperature: 0.0,
            min_improvement: 0.0,
            promote_metric: "test_loss".into(),
            promote_direction: "auto".into(),
        }
    }
}

/// `[pipeline]`: collect → export → train → dpo → eval → promote, unattended.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Train only when at least this many new approved examples arrived since the last run.
    pub min_new_examples: u32,
    /// Run DPO only when the snapshot holds at least this many preference pairs.
    pub min_new_pairs: u32,
    pub stages: Vec<String>,
    /// Promote a candidate that passes eval without asking.
    pub auto_promote: bool,
    /// Name of the Ollama model to create on promotion (none = don't ship to Ollama).
    pub ollama_model: Option<String>,
    /// The system prompt the shipped model runs with (the Modelfile's SYSTEM); none = the
    /// chat template's default, if it has one.
    pub system_prompt: Option<String>,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            min_new_examples: 100,
            min_new_pairs: 8,
            stages: ["collect", "export", "train", "dpo", "eval"].map(String::from).to_vec(),
            auto_promote: false,
            ollama_model: None,
            system_prompt: None,
        }
    }
}

/// `[plugins]`: limits every plugin instance runs under, and the compile cache.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsSection {
    pub memory_mb: u64,
    pub timeout_s: u64,
    /// Compiled components; default `$XDG_CACHE_HOME/sam-brain/components`.
    pub cache_dir: Option<PathBuf>,
    /// What one collect may take from one source (each overridable by the source's `budget`):
    /// examples, MiB of output, and seconds of wall time.
    pub max_examples: u64,
    pub max_mb: u64,
    pub max_seconds: u64,
    /// Model calls and tokens (prompt + completion) one collect may spend per source through
    /// the `llm` capability.
    pub max_llm_calls: u64,
    pub max_llm_tokens: u64,
}

impl Default for PluginsSection {
    fn default() -> Self {
        PluginsSection {
            memory_mb: 256,
            timeout_s: 30,
            cache_dir: None,
            max_examples: 1_000_000,
            max_mb: 4096,
            max_seconds: 4 * 3600,
            max_llm_calls: 1000,
            max_llm_tokens: 2_000_000,
        }
    }
}

/// `budget = { examples = …, mb = …, seconds = …, llm_calls = …, llm_tokens = … }` of a
/// `[[source]]`: its own limits for one collect; keys left out take `[plugins]` `max_examples`,
/// `max_mb`, `max_seconds`, `max_llm_calls`, `max_llm_tokens`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSection {
    pub examples: Option<u64>,
    pub mb: Option<u64>,
    pub seconds: Option<u64>,
    pub llm_calls: Option<u64>,
    pub llm_tokens: Option<u64>,
}

/// When `brain serve` asks the teacher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EscalateWhen {
    /// Every request.
    Always,
    /// When the local answer looks unreliable (empty, repetitive, unsure, rambling).
    #[default]
    Routing,
    /// Never (the teacher settings are kept, unused).
    Never,
}

/// `[serve]`: `brain serve`'s teacher. With `escalate` set, hard questions go to the teacher, the
/// client gets its answer, and the exchange is stored as a preference pair and a correction for
/// review (provenance `serve`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSection {
    /// The teacher's URL: an OpenAI-compatible base (`http://127.0.0.1:11434/v1`) or Anthropic's
    /// (`https://api.anthropic.com`).
    pub escalate: Option<String>,
    /// The teacher model's name as its endpoint knows it.
    pub escalate_model: Option<String>,
    /// `openai`, `anthropic` or `auto` (from the URL).
    pub escalate_api: String,
    pub escalate_when: EscalateWhen,
    /// The environment variable holding the teacher's API key (the key itself is never written
    /// to the config or the store).
    pub escalate_key_env: Option<String>,
    /// Seconds one teacher request may take.
    pub escalate_timeout_s: u64,
    /// The most tokens the teacher may answer with.
    pub escalate_max_tokens: u32,
    /// Days answered requests are kept in the store's interaction log; 0 keeps none.
    pub keep_interactions_days: u32,
}

impl Default for ServeSection {
    fn default() -> Self {
        ServeSection {
            escalate: None,
            escalate_model: None,
            escalate_api: "auto".into(),
            escalate_when: EscalateWhen::Routing,
            escalate_key_env: None,
            escalate_timeout_s: 120,
            escalate_max_tokens: 1024,
            keep_interactions_days: 30,
        }
    }
}
