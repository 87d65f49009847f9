//! Fuse an adapter into its base model and write a Hugging Face-layout directory (config.json,
//! safetensors, tokenizer files) that mlx-lm, transformers and Ollama's importer read as a plain
//! model.
//!
//! LoRA: every adapted linear layer becomes `W' = W + scale · (A·B)ᵀ` in the stored (out, in)
//! layout (`adapters::fold_lora`, shared with fusing in memory), stored in the layer's dtype.
//! Full fine-tunes: the trained layers replace the base's.
//!
//! A quantized base (mlx-community 4-bit: packed uint32 + scales + biases) is refused unless
//! `dequantize` is set: then every quantized weight is dequantized (the adapted ones before the
//! update is added), the output is dense (f16/bf16 as the scales were, or `dtype`), and
//! config.json loses `quantization` / `quantization_config`. Re-quantizing the fused model is
//! [`crate::convert::quantize_model`]'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mlx::{Array, Dtype};
use serde::Serialize;

use crate::adapters::{self, AdapterConfig, ADAPTER_FILE};
use crate::config::ModelConfig;
use crate::error::{io, model_err, Error, Result};
use crate::source::hf::weight_files;
use crate::trainer::parse_dtype;

/// Files copied unchanged from the base directory when present.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
];

/// Shards above this many bytes are split (Hugging Face's default is 5 GB).
const SHARD_BYTES: usize = 5_000_000_000;

/// What to fuse (names follow mlx-lm's `fuse`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FuseArgs {
    /// The base model directory the adapter was trained on.
    pub model: PathBuf,
    /// The adapter directory (`adapters.safetensors` + `adapter_config.json`).
    pub adapter_path: PathBuf,
    /// Where the fused model is written.
    pub save_path: PathBuf,
    /// Dequantize a quantized base (required for one).
    pub dequantize: bool,
    /// Output dtype of dequantized and fused weights: `float16`, `bfloat16`, `float32`
    /// (default: the dtype of the base's float weights or scales).
    pub dtype: Option<String>,
    /// Write into a directory that already holds a model.
    pub overwrite: bool,
}

/// What [`fuse`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct FuseReport {
    pub save_path: PathBuf,
    /// Linear layers that received an update (LoRA) or were replaced (full).
    pub fused: usize,
    /// Quantized weights written dense.
    pub dequantized: usize,
    /// The dtype of dequantized / fused weights.
    pub dtype: String,
    pub fine_tune_type: String,
    /// Weight files written.
    pub files: Vec<PathBuf>,
    /// Tokenizer and generation files copied.
    pub copied: Vec<String>,
    /// The part of the adapter's update the stored weights lost to rounding: ‖stored change −
    /// update‖ / ‖update‖ over all fused layers (0 in f32; bf16's 8-bit significand loses much
    /// of a small LoRA update).
    pub update_lost: f32,
    /// What the user should know about the fused model (e.g. a large `update_lost`).
    pub warnings: Vec<String>,
}

/// Above this `update_lost`, fusing warns. Small losses matter: fusing a 36-update LoRA on the
/// real SmolLM2 into bf16 lost 4.3% of its update and changed 2 of 6 trained answers (a digit of a
/// port number, a name); fused in f32 it keeps them (tests/real_model.rs).
pub const UPDATE_LOST_WARNING: f32 = 0.02;

/// Hugging Face's name of a float dtype (`torch_dtype`).
pub fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::Float16 => "float16",
        Dtype::Bfloat16 => "bfloat16",
        Dtype::Float64 => "float64",
        _ => "float32",
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Fuses `args.adapter_path` into `args.model` and writes the result to `args.save_path`.
pub fn fuse(args: &FuseArgs) -> Result<FuseReport> {
    let base = &args.model;
    let out_dir = &args.save_path;
    if same_dir(base, out_dir) || same_dir(&args.adapter_path, out_dir) {
        return Err(Error::Args(format!("the fused model must go to a new directory, not {}", out_dir.display())));
    }
    if out_dir.join("config.json").exists() && !args.overwrite {
        return Err(Error::Args(format!("{} already holds a model; choose another directory or overwrite it explicitly", out_dir.display())));
    }
    let origin = crate::source::resolve(base)?;
    let adapter_cfg = AdapterConfig::read(&args.adapter_path)?;
    // A GGUF base (a file or an Ollama blob): config and tensors from the source layer; the
    // tokenizer files are written from its metadata below.
    let (config, cfg_path, mut cfg_json, mut tensors) = match &origin {
        crate::source::Origin::Dir(_) => {
            let config = ModelConfig::load(base)?;
            let cfg_path = base.join("config.json");
            let cfg_text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
            let cfg_json: serde_json::Value = serde_json::from_str(&cfg_text).map_err(|e| model_err(&cfg_path, e))?;
            let mut tensors: BTreeMap<String, Array> = BTreeMap::new();
            for f in weight_files(base)? {
                tensors.extend(mlx::io::load_safetensors(&f)?.tensors);
            }
            (config, cfg_path, cfg_json, tensors)
        }
        crate::source::Origin::Gguf(file) => {
            let (config, tensors) = crate::source::load_weights(base)?;
            if tensors.contains_key("rope_freqs") {
                // Llama 3.1's frequency factors have no exact config.json form; brain reads the
                // tensor back, other tools ignore it (and use plain rope_theta).
                tracing::warn!("{}: the GGUF's rope_freqs factors are kept as a `rope_freqs` tensor, which only brain reads", file.display());
            }
            let mut config = config;
            if config.architectures.is_empty() {
                let class = match config.model_type.as_str() {
                    "qwen2" => "Qwen2ForCausalLM",
                    "qwen3" => "Qwen3ForCausalLM",
                    _ => "LlamaForCausalLM",
                };
                config.architectures = vec![class.into()];
            }
            let cfg_json = serde_json::to_value(&config).map_err(|e| model_err(file, e))?;
            (config, file.clone(), cfg_json, tensors)
        }
    };
    let quantized: BTreeSet<String> =
        tensors.keys().filter_map(|k| k.strip_suffix(".scales")).filter(|p| tensors.contains_key(&format!("{p}.biases"))).map(String::from).collect();
    if !quantized.is_empty() && !args.dequantize {
        return Err(model_err(
            base,
            format!(
                "the base model is quantized ({} quantized weights, {}-bit): fusing needs dense weights. \
                 Pass --dequantize to write a dense model (f16/bf16, larger on disk), or keep the adapter separate",
                quantized.len(),
                config.quantization.as_ref().map_or(4, |q| q.bits)
            ),
        ));
    }
    let quant = config.quantization.clone();
    if !quantized.is_empty() && quant.is_none() {
        return Err(model_err(&cfg_path, "weights are quantized but config.json has no \"quantization\""));
    }

    // The dtype of dense output: asked, else the scales' (quantized base) or the embedding's.
    let stored_float = tensors
        .iter()
        .find(|(k, a)| a.dtype().is_float() && (k.ends_with(".scales") || k.starts_with("model.embed_tokens")))
        .map(|(_, a)| a.dtype())
        .or_else(|| tensors.values().map(|a| a.dtype()).find(|d| d.is_float()))
        .unwrap_or(Dtype::Float32);
    let asked_dtype = parse_dtype(&args.dtype)?;
    let out_dtype = asked_dtype.unwrap_or(stored_float);

    let dequant = |tensors: &BTreeMap<String, Array>, prefix: &str| -> Result<Array> {
        let q = quant.as_ref().expect("checked above");
        let (group, bits) = q.for_layer(prefix);
        let get = |s: &str| tensors.get(&format!("{prefix}.{s}")).ok_or_else(|| model_err(base, format!("{prefix}.{s} is missing")));
        // In f32 (then cast to the output dtype): with f16/bf16 scales MLX would return the
        // weights rounded to that dtype, while llama.cpp and the CPU kernel compute in f32.
        let (s, b) = (get("scales")?.as_type(Dtype::Float32)?, get("biases")?.as_type(Dtype::Float32)?);
        Ok(mlx::quantized::dequantize(get("weight")?, &s, Some(&b), group, bits)?)
    };

    let adapter_file = args.adapter_path.join(ADAPTER_FILE);
    let adapter = mlx::io::load_safetensors(&adapter_file)?.tensors;
    if adapter.is_empty() {
        return Err(model_err(&adapter_file, "the adapter holds no tensors"));
    }
    let mut fused = 0;
    let mut dequantized = 0;
    let (mut update_sq, mut lost_sq, mut rounded_to) = (0f64, 0f64, Dtype::Float32);
    let mut measure = |f: adapters::Folded| {
        update_sq += f.update_sq;
        lost_sq += f.lost_sq;
        if f.weight.dtype() != Dtype::Float32 {
            rounded_to = f.weight.dtype();
        }
        f.weight
    };
    match adapter_cfg.fine_tune_type.as_str() {
        "lora" => {
            let scale = adapter_cfg.lora(&args.adapter_path)?.scale;
            for layer in adapters::lora_layers(&adapter, &adapter_file)? {
                let prefix = layer.prefix;
                let wname = format!("{prefix}.weight");
                let (w, dtype) = if quantized.contains(prefix) {
                    dequantized += 1;
                    (dequant(&tensors, prefix)?, out_dtype)
                } else {
                    let w = tensors.get(&wname).ok_or_else(|| model_err(base, format!("the adapter has {prefix} but the model has no {wname}")))?;
                    (w.clone(), asked_dtype.unwrap_or(w.dtype()))
                };
                let new = measure(adapters::fold_lora_measured(&w, &layer, scale, dtype, &adapter_file)?);
                for s in ["scales", "biases"] {
                    tensors.remove(&format!("{prefix}.{s}"));
                }
                tensors.insert(wname, new);
                fused += 1;
            }
        }
        "full" => {
            for (name, value) in &adapter {
                let Some(cur) = tensors.get(name) else {
                    return Err(model_err(&adapter_file, format!("{name} is not a weight of the base model")));
                };
                let new = measure(adapters::full_weight_measured(name, value, cur, asked_dtype, &adapter_file)?);
                tensors.insert(name.clone(), new);
                fused += 1;
            }
        }
        other => {
            return Err(model_err(args.adapter_path.join("adapter_config.json"), format!("fine_tune_type {other:?} cannot be fused (lora, full)")));
        }
    }

    let update_lost = if update_sq > 0.0 { (lost_sq / update_sq).sqrt() as f32 } else { 0.0 };
    let mut warnings = Vec::new();
    if update_lost > UPDATE_LOST_WARNING {
        let w = format!(
            "storing the fused weights in {} loses {:.0}% of the adapter's update to rounding (its changes are small next to \
             the weights): the fused model may forget what was trained. Fuse with --dtype float32 (twice the size; \
             exact), or use the adapter on its base",
            dtype_name(rounded_to),
            update_lost * 100.0
        );
        tracing::warn!("{w}");
        warnings.push(w);
    }

    // Whatever is still quantized becomes dense.
    for prefix in &quantized {
        if !tensors.contains_key(&format!("{prefix}.scales")) {
            continue;
        }
        let w = dequant(&tensors, prefix)?.as_type(out_dtype)?;
        w.eval()?;
        tensors.remove(&format!("{prefix}.scales"));
        tensors.remove(&format!("{prefix}.biases"));
        tensors.insert(format!("{prefix}.weight"), w);
        dequantized += 1;
    }

    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let files = save_sharded(out_dir, &tensors)?;

    if let Some(o) = cfg_json.as_object_mut() {
        if !quantized.is_empty() {
            o.remove("quantization");
            o.remove("quantization_config");
        }
        if !quantized.is_empty() || asked_dtype.is_some() {
            o.insert("torch_dtype".into(), serde_json::Value::String(dtype_name(out_dtype).into()));
        }
    }
    let out_cfg = out_dir.join("config.json");
    std::fs::write(&out_cfg, serde_json::to_string_pretty(&cfg_json).expect("JSON") + "\n").map_err(io(&out_cfg))?;

    let mut copied = Vec::new();
    if let crate::source::Origin::Gguf(_) = origin {
        copied = write_tokenizer_files(&crate::source::load_tokenizer(base)?, out_dir)?;
    }
    for name in TOKENIZER_FILES.iter().filter(|_| matches!(origin, crate::source::Origin::Dir(_))) {
        let src = base.join(name);
        if src.is_file() {
            let dst = out_dir.join(name);
            std::fs::copy(&src, &dst).map_err(io(&dst))?;
            copied.push(name.to_string());
        }
    }
    if !copied.iter().any(|c| c == "tokenizer.json" || c == "tokenizer.model") {
        tracing::warn!("{}: no tokenizer files to copy; the fused model will need them", base.display());
    }
    Ok(FuseReport {
        save_path: out_dir.clone(),
        fused,
        dequantized,
        dtype: dtype_name(out_dtype).into(),
        fine_tune_type: adapter_cfg.fine_tune_type.clone(),
        files,
        copied,
        update_lost,
        warnings,
    })
}

/// tokenizer.json and tokenizer_config.json (special tokens, chat template) for a model whose
/// tokenizer came from GGUF metadata, so the fused directory loads anywhere a Hugging Face one does.
fn write_tokenizer_files(tok: &crate::tokenizer::Tokenizer, out_dir: &Path) -> Result<Vec<String>> {
    let path = out_dir.join("tokenizer.json");
    tok.inner().save(&path, true).map_err(|e| model_err(&path, e.to_string()))?;
    let name = |id: Option<u32>| id.and_then(|i| tok.inner().id_to_token(i));
    let cfg = serde_json::json!({
        "bos_token": name(tok.bos_id),
        "eos_token": name(Some(tok.eos_id)),
        "pad_token": name(Some(tok.pad_id)),
        "add_bos_token": tok.add_bos_token(),
        "chat_template": tok.chat_template().source(),
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    let cfg_path = out_dir.join("tokenizer_config.json");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).expect("JSON") + "\n").map_err(io(&cfg_path))?;
    Ok(vec!["tokenizer.json".into(), "tokenizer_config.json".into()])
}

/// `model.safetensors`, or `model-0000K-of-0000N.safetensors` + `model.safetensors.index.json`
/// above [`SHARD_BYTES`].
fn save_sharded(dir: &Path, tensors: &BTreeMap<String, Array>) -> Result<Vec<PathBuf>> {
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let total: usize = tensors.values().map(|a| a.nbytes()).sum();
    for stale in std::fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok()) {
        let name = stale.file_name().to_string_lossy().into_owned();
        if name.starts_with("model") && (name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json")) {
            std::fs::remove_file(stale.path()).map_err(io(stale.path()))?;
        }
    }
    if total <= SHARD_BYTES {
        let path = dir.join("model.safetensors");
        mlx::io::save_safetensors(&path, tensors.iter().map(|(k, v)| (k.as_str(), v)), &meta)?;
        return Ok(vec![path]);
    }
    let mut shards: Vec<Vec<(&String, &Array)>> = vec![Vec::new()];
    let mut size = 0;
    for (k, v) in tensors {
        if size > 0 && size + v.nbytes() > SHARD_BYTES {
            shards.push(Vec::new());
            size = 0;
        }
        size += v.nbytes();
        shards.last_mut().expect("one shard").push((k, v));
    }
    let n = shards.len();
    let mut files = Vec::new();
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shards.iter().enumerate() {
        let name = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        let path = dir.join(&name);
        mlx::io::save_safetensors(&path, shard.iter().map(|(k, v)| (k.as_str(), *v)), &meta)?;
        for (k, _) in shard {
            weight_map.insert((*k).clone(), serde_json::Value::String(name.clone()));
        }
        files.push(path);
    }
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    let path = dir.join("model.safetensors.index.json");
    std::fs::write(&path, serde_json::to_string_pretty(&index).expect("JSON") + "\n").map_err(io(&path))?;
    Ok(files)
}
