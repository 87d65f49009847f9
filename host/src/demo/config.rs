//! The demo's brain.toml: four sources, three filters, and training settings sized for 2 CPU
//! cores — for a real pretrained model (LoRA on a few top layers, short sequences) or for the
//! tiny random fallback.

use std::path::Path;

/// The model the demo trains.
pub(super) enum Base<'a> {
    /// A real pretrained model (a GGUF file, a directory or `ollama:NAME`).
    Real(&'a Path),
    /// The tiny random model the demo makes in `DIR/model`.
    Tiny,
}

/// Adapted layers, sequence length and batch on a real model: the top 8 blocks, 192 tokens and 2
/// sequences keep an update of SmolLM2-135M at about 4 s on 2 CPU cores, and the demo at a few
/// minutes.
pub(super) const REAL_LAYERS: usize = 8;
pub(super) const REAL_MAX_SEQ: usize = 192;

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

pub(super) fn demo_config(repo: &Path, samples: &Path, base: &Base<'_>, iters: usize) -> String {
    let repo = toml_str(repo);
    let claude = toml_str(&samples.join("claude-projects"));
    let routing = toml_str(&samples.join("routing"));
    // Shorter commit diffs and doc answers on a real model: what fits in REAL_MAX_SEQ tokens.
    let (diff_bytes, answer_chars) = match base {
        Base::Real(_) => (240, 480),
        Base::Tiny => (600, 6000),
    };
    let training = match base {
        Base::Real(model) => format!(
            r#"[train]
base_model = {model}
iters = {iters}
batch_size = 2
learning_rate = 1e-3
warmup = 4
num_layers = {REAL_LAYERS}
max_seq_length = {REAL_MAX_SEQ}
steps_per_report = 5
steps_per_eval = {iters}
val_batches = 2
save_every = {iters}
runs_dir = "runs"
lora = {{ rank = 8, scale = 20.0, dropout = 0.0 }}

[dpo]
iters = 6
batch_size = 1
learning_rate = 5e-5
num_layers = {REAL_LAYERS}
max_seq_length = {REAL_MAX_SEQ}
steps_per_eval = {iters}
lora = {{ rank = 8, scale = 20.0, dropout = 0.0 }}

[eval]
max_examples = 3
max_tokens = 24
"#,
            model = toml_str(model)
        ),
        Base::Tiny => format!(
            r#"[train]
base_model = "model"
iters = {iters}
batch_size = 4
learning_rate = 3e-3
warmup = 10
num_layers = 2
max_seq_length = 768
steps_per_report = 10
steps_per_eval = 20
val_batches = 4
save_every = 20
runs_dir = "runs"
lora = {{ rank = 16, scale = 2.0, dropout = 0.0, keys = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"] }}

[dpo]
iters = 10
batch_size = 1
learning_rate = 5e-4
num_layers = 2
max_seq_length = 768
steps_per_eval = 5
lora = {{ rank = 8, scale = 2.0, dropout = 0.0 }}

[eval]
max_examples = 6
max_tokens = 24
"#
        ),
    };
    format!(
        r#"# Written by `brain demo`. Edit and re-run `brain pipeline run --config brain.toml`.
[store]
path = "brain.db"

[[source]]
name = "repo-commits"
plugin = "git"
grants = {{ git = [{repo}] }}
config = {{ repos = [{repo}], max_diff_bytes = {diff_bytes} }}

[[source]]
name = "repo-docs"
plugin = "docs"
grants = {{ read = [{repo}] }}
config = {{ dirs = [{repo}], project = "SAM Brain", max_answer_chars = {answer_chars} }}

[[source]]
name = "sample-transcripts"
plugin = "claude-logs"
grants = {{ read = [{claude}] }}
config = {{ context_tokens = 0 }}

[[source]]
name = "sample-routing"
plugin = "routing"
grants = {{ read = [{routing}] }}

[[filter]]
name = "quality"
plugin = "quality"
config = {{ reject_below = 0.15 }}

[[filter]]
name = "repetition"
plugin = "repetition"

[[filter]]
name = "length"
plugin = "length"

[review]
approve_above = 0.4
reject_below = 0.15

[export]
out = "exports"
ratios = {{ train = 0.8, valid = 0.1, test = 0.1 }}

{training}
[pipeline]
min_new_examples = 1
min_new_pairs = 1
auto_promote = true
"#
    )
}
