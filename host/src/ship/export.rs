//! `brain export ollama NAME`: everything between a trained adapter and `ollama create`.
//!
//! - [`Source::FuseFirst`] (the default for a registered model): the adapter is fused into its
//!   base — dequantized when the base is quantized, since Ollama's importer reads dense
//!   safetensors only — into `OUT/fused`, and the Modelfile says `FROM OUT/fused`.
//! - [`Source::Fused`]: an already fused directory; when it holds a GGUF file (`brain fuse
//!   --export-gguf`) that file is used.
//! - With [`OllamaOptions::gguf`] (fused sources only) the fused weights are written as one GGUF
//!   file beside the Modelfile (`FROM ./ggml-model-<type>.gguf`), the file llama.cpp and Ollama
//!   run as is; without it (or with [`OllamaOptions::safetensors`]) Ollama converts the fused
//!   safetensors directory itself.
//! - [`Source::AdapterOnBase`]: `FROM base` + `ADAPTER OUT/adapter`, the adapter converted to PEFT
//!   with `lora_alpha = scale × rank`. Ollama converts safetensors adapters for the llama and
//!   gemma2 architectures only (Qwen2 adapters are refused by its importer), and cannot read MLX
//!   quantized weights: both are reported as warnings.
//!
//! The TEMPLATE and stop strings come from the model's chat template ([`super::family`]); the
//! TEMPLATE is checked against training's rendering ([`super::template::check`]) before
//! `ollama create` runs; a mismatch is an error.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use brain_train::gguf::export::{export_gguf, GgufType};

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
    /// Write (or reuse) a GGUF file of this type and build the Ollama model from it.
    pub gguf: Option<GgufType>,
    /// Build from the fused safetensors directory even when it holds a GGUF file.
    pub safetensors: bool,
}

/// What [`export_ollama`] did.
#[derive(Clone, Debug, Serialize)]
pub struct OllamaExportReport {
    pub name: String,
    pub modelfile: PathBuf,
    /// `gguf`, `fused` (safetensors) or `adapter`.
    pub layout: String,
    /// The chat family the TEMPLATE was derived for (`chatml`, `llama3`).
    pub family: String,
    /// The GGUF file the Modelfile builds on.
    pub gguf: Option<PathBuf>,
    /// The GGUF export's report, when it ran.
    pub gguf_export: Option<brain_train::gguf::export::GgufReport>,
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

/// The GGUF files (`*.gguf`) directly inside `dir`, sorted.
fn gguf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The GGUF file for `fused`, placed in `out`: with a type, `ggml-model-<type>.gguf` of the
/// fused directory when it exists, else written from the fused weights; without one, the single
/// GGUF file the fused directory holds (None when it holds none).
fn gguf_for(fused: &Path, out: &Path, ty: Option<GgufType>, name: &str) -> Result<(Option<PathBuf>, Option<brain_train::gguf::export::GgufReport>)> {
    let existing = match ty {
        Some(t) => Some(fused.join(t.default_file_name())).filter(|p| p.is_file()),
        None => {
            let files = gguf_files(fused)?;
            if files.len() > 1 {
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                bail!("{} holds several GGUF files ({}): choose one with --gguf TYPE, or --safetensors", fused.display(), names.join(", "));
            }
            files.into_iter().next()
        }
    };
    if let Some(file) = existing {
        let target = out.join(file.file_name().expect("a file name"));
        if file != target {
            // A hard link costs nothing; across filesystems the file is copied.
            let _ = std::fs::remove_file(&target);
            if std::fs::hard_link(&file, &target).is_err() {
                std::fs::copy(&file, &target).with_context(|| format!("copying {} to {}", file.display(), target.display()))?;
            }
        }
        return Ok((Some(target), None));
    }
    let Some(t) = ty else { return Ok((None, None)) };
    let target = out.join(t.default_file_name());
    let report = export_gguf(fused, &target, t, Some(name)).with_context(|| format!("writing the GGUF file {}", target.display()))?;
    Ok((Some(target), Some(report)))
}

/// Writes the Modelfile (and fused model, GGUF file or PEFT adapter) under `opts.out_dir`,
/// checks its template against training, and runs `ollama create` when asked and installed.
pub fn export_ollama(opts: &OllamaOptions) -> Result<OllamaExportReport> {
    let out = absolute(&opts.out_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut warnings = Vec::new();
    let mut fused_report = None;
    let (weights, tokenizer_dir, adapter_out) = match &opts.source {
        Source::Fused(dir) => {
            let dir = absolute(dir);
            if !dir.join("config.json").is_file() {
                bail!("{} is not a model directory (no config.json)", dir.display());
            }
            if is_quantized(&dir) {
                warnings.push(format!("{} holds MLX-quantized weights, which Ollama's importer cannot read; fuse with --dequantize", dir.display()));
            }
            (Weights::Fused(dir.clone()), dir, None)
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
            warnings.extend(report.warnings.iter().cloned());
            fused_report = Some(report);
            (Weights::Fused(fused.clone()), fused, None)
        }
        Source::AdapterOnBase { adapter, base } => {
            if opts.gguf.is_some() {
                bail!("--gguf needs fused weights: leave out --adapter (the adapter is then fused into its base first)");
            }
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
            (Weights::BaseWithAdapter { base: base.clone(), adapter: peft_dir.clone() }, base, Some(peft_dir))
        }
    };

    // The TEMPLATE and stops come from the chat template training renders; refused early (before
    // a GGUF is written) when it is none of the families a Go template here can express.
    let tokenizer = brain_train::tokenizer::Tokenizer::load(&tokenizer_dir).with_context(|| format!("loading the tokenizer of {}", tokenizer_dir.display()))?;
    let derived = super::family::derive(&tokenizer).with_context(|| format!("deriving the Ollama TEMPLATE for {}", tokenizer_dir.display()))?;
    warnings.extend(derived.notes.iter().cloned());

    let (mut weights, mut gguf, mut gguf_export) = (weights, None, None);
    if let Weights::Fused(dir) = &weights {
        if !opts.safetensors {
            let (file, report) = gguf_for(dir, &out, opts.gguf, &opts.name)?;
            if let Some(f) = file {
                weights = Weights::Gguf(f.clone());
                gguf = Some(f);
                gguf_export = report;
            }
        }
    }
    let layout = match &weights {
        Weights::Gguf(_) => "gguf",
        Weights::Fused(_) => "fused",
        Weights::BaseWithAdapter { .. } => "adapter",
    };

    // SYSTEM: the configured prompt, else what training puts in front of a conversation without
    // one (Qwen2.5's default), so Ollama sees what training saw.
    let system_prompt = opts.system_prompt.clone().or(tokenizer.default_system().map(String::from));
    let from = match &weights {
        Weights::Fused(d) => d.clone(),
        Weights::Gguf(f) => f.clone(),
        Weights::BaseWithAdapter { base, .. } => base.clone(),
    };
    let spec = ModelfileSpec { weights, template: derived.template.clone(), system_prompt, temperature: opts.temperature, stop: derived.stop.clone() };
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
        warnings.push("the model's own chat_template renders differently from training's (training's is used)".into());
    }
    let (command, created) = ollama::create(&opts.name, &path, opts.quantize.as_deref(), opts.create)?;
    Ok(OllamaExportReport {
        name: opts.name.clone(),
        modelfile: path,
        layout: layout.into(),
        family: derived.family.name().into(),
        gguf,
        gguf_export,
        from,
        adapter: adapter_out,
        fused: fused_report,
        command,
        created,
        template: check,
        warnings,
    })
}
