//! `brain export ollama NAME`: everything between a trained adapter and `ollama create`.
//!
//! - [`Source::FuseFirst`] (the default for a registered model): the adapter is fused into its
//!   base — dequantized when the base is quantized, since Ollama's importer reads dense
//!   safetensors only — into `OUT/fused`, and the Modelfile says `FROM OUT/fused`.
//! - [`Source::Fused`]: an already fused directory.
//! - [`Source::AdapterOnBase`]: `FROM base` + `ADAPTER OUT/adapter`, the adapter converted to PEFT
//!   with `lora_alpha = scale × rank`. Ollama converts safetensors adapters for the llama and
//!   gemma2 architectures only (Qwen2 adapters are refused by its importer), and cannot read MLX
//!   quantized weights: both are reported as warnings.
//!
//! The TEMPLATE is checked against training's rendering ([`super::template::check`]) before
//! `ollama create` runs; a mismatch is an error.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::ollama::{self, ModelfileSpec, Weights};
use super::template::{self, TemplateCheck};

/// Where the weights come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// An already fused model directory.
    Fused(PathBuf),
    /// Fuse `adapter` into `base` first (into `OUT/fused`).
    FuseFirst { adapter: PathBuf, base: PathBuf },
    /// Keep the adapter separate: `FROM base` + `ADAPTER`.
    AdapterOnBase { adapter: PathBuf, base: PathBuf },
}

#[derive(Clone, Debug)]
pub struct OllamaOptions {
    pub name: String,
    pub source: Source,
    /// Directory for the Modelfile (and `fused/` or `adapter/`).
    pub out_dir: PathBuf,
    /// The SYSTEM line; None = the system turn training inserts by default (if any).
    pub system_prompt: Option<String>,
    pub temperature: Option<f32>,
    /// Passed to `ollama create --quantize` (e.g. `q4_K_M`).
    pub quantize: Option<String>,
    /// Run `ollama create` when Ollama is installed.
    pub create: bool,
}

/// What [`export_ollama`] did.
#[derive(Clone, Debug, Serialize)]
pub struct OllamaExportReport {
    pub name: String,
    pub modelfile: PathBuf,
    /// `fused` or `adapter`.
    pub layout: String,
    pub from: PathBuf,
    pub adapter: Option<PathBuf>,
    /// The fuse step's report, when it ran.
    pub fused: Option<brain_train::fuse::FuseReport>,
    /// The exact `ollama create` command.
    pub command: String,
    /// True when `ollama create` ran and succeeded.
    pub created: bool,
    pub template: TemplateCheck,
    pub warnings: Vec<String>,
}

fn is_quantized(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|c| c.get("quantization").is_some() || c.get("quantization_config").is_some())
}

fn model_type(dir: &Path) -> Option<String> {
    let t = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let c: serde_json::Value = serde_json::from_str(&t).ok()?;
    c.get("model_type").and_then(|m| m.as_str()).map(String::from)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Writes the Modelfile (and fused model or PEFT adapter) under `opts.out_dir`, checks its
/// template against training, and runs `ollama create` when asked and installed.
pub fn export_ollama(opts: &OllamaOptions) -> Result<OllamaExportReport> {
    let out = absolute(&opts.out_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut warnings = Vec::new();
    let mut fused_report = None;
    let (weights, tokenizer_dir, layout, adapter_out) = match &opts.source {
        Source::Fused(dir) => {
            let dir = absolute(dir);
            if !dir.join("config.json").is_file() {
                bail!("{} is not a model directory (no config.json)", dir.display());
            }
            if is_quantized(&dir) {
                warnings.push(format!("{} holds MLX-quantized weights, which Ollama's importer cannot read; fuse with --dequantize", dir.display()));
            }
            (Weights::Fused(dir.clone()), dir, "fused", None)
        }
        Source::FuseFirst { adapter, base } => {
            let fused = out.join("fused");
            let args = brain_train::fuse::FuseArgs {
                model: base.clone(),
                adapter_path: adapter.clone(),
                save_path: fused.clone(),
                dequantize: is_quantized(base),
                dtype: None,
                overwrite: true,
            };
            let report = brain_train::fuse::fuse(&args).with_context(|| format!("fusing {} into {}", adapter.display(), base.display()))?;
            fused_report = Some(report);
            (Weights::Fused(fused.clone()), fused, "fused", None)
        }
        Source::AdapterOnBase { adapter, base } => {
            let base = absolute(base);
            let peft_dir = out.join("adapter");
            super::peft::convert(adapter, &base.display().to_string(), &peft_dir)
                .with_context(|| format!("converting {} to the PEFT layout", adapter.display()))?;
            if is_quantized(&base) {
                warnings.push(format!(
                    "the base {} is MLX-quantized, which Ollama's importer cannot read: export the fused layout instead (leave out --adapter)",
                    base.display()
                ));
            }
            match model_type(&base).as_deref() {
                Some("llama") | Some("gemma2") => {}
                other => warnings.push(format!(
                    "Ollama converts safetensors LoRA adapters for llama and gemma2 models only; this base is {}: \
                     `ollama create` will likely refuse the ADAPTER — export the fused layout instead (leave out --adapter)",
                    other.unwrap_or("of unknown type")
                )),
            }
            (Weights::BaseWithAdapter { base: base.clone(), adapter: peft_dir.clone() }, base, "adapter", Some(peft_dir))
        }
    };

    // SYSTEM: the configured prompt, else what training puts in front of a conversation without
    // one (Qwen2.5's default), so Ollama sees what training saw.
    let default_system = brain_train::tokenizer::Tokenizer::load(&tokenizer_dir)
        .with_context(|| format!("loading the tokenizer of {}", tokenizer_dir.display()))?
        .default_system()
        .map(String::from);
    let system_prompt = opts.system_prompt.clone().or(default_system);
    let from = match &weights {
        Weights::Fused(d) => d.clone(),
        Weights::BaseWithAdapter { base, .. } => base.clone(),
    };
    let spec = ModelfileSpec { weights, system_prompt, temperature: opts.temperature, stop: template::stop_strings(&tokenizer_dir) };
    let text = ollama::modelfile(&spec);
    let path = out.join("Modelfile");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;

    let check = template::check(&tokenizer_dir, &text)?;
    if !check.ok() {
        let first = check.mismatches.iter().find(|m| m.against == "training");
        let detail = match first {
            Some(m) => format!("training renders\n{}\nthe Modelfile renders\n{}", m.expected, m.modelfile),
            None => format!("stop strings missing: {}", check.missing_stop.join(", ")),
        };
        bail!("the Modelfile {} would not render conversations as training did:\n{detail}", path.display());
    }
    if check.matches_chat_template == Some(false) {
        warnings.push("the model's own chat_template renders differently from training's ChatML (training's is used)".into());
    }
    let (command, created) = ollama::create(&opts.name, &path, opts.quantize.as_deref(), opts.create)?;
    Ok(OllamaExportReport {
        name: opts.name.clone(),
        modelfile: path,
        layout: layout.into(),
        from,
        adapter: adapter_out,
        fused: fused_report,
        command,
        created,
        template: check,
        warnings,
    })
}
