//! `brain fuse`: merge an adapter into its base model and write a Hugging Face-layout directory,
//! and with `--export-gguf` also one GGUF file llama.cpp and Ollama run (mlx-lm's flag names).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use brain_train::gguf::export::{export_gguf, GgufType};

use super::Ctx;
use crate::config::Config;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The adapter directory (default: the active model version's, else [train] adapter_path).
    #[arg(long, value_name = "DIR", conflicts_with = "model_version")]
    pub adapter: Option<PathBuf>,
    /// A registered model version (`v3`) whose adapter and base model to fuse.
    #[arg(long, value_name = "VERSION")]
    pub model_version: Option<String>,
    /// The base model directory (default: the version's base, else [train] base_model).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Where to write the fused model (default: fused/<version> beside the config).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Dequantize a quantized (4-bit) base: the fused model is dense. Required for one.
    #[arg(long)]
    pub dequantize: bool,
    /// dtype of dequantized and fused weights: float16, bfloat16, float32.
    #[arg(long)]
    pub dtype: Option<String>,
    /// Replace a model already in the output directory.
    #[arg(long)]
    pub overwrite: bool,
    /// Also write the fused model as one GGUF file (llama.cpp, Ollama, LM Studio); a quantized
    /// base is dequantized before merging (implies --dequantize).
    #[arg(long)]
    pub export_gguf: bool,
    /// Tensor type of the GGUF file: f16, q8_0 or q4_0 (embeddings and norms stay more precise).
    #[arg(long, value_name = "TYPE", default_value = "f16", requires = "export_gguf")]
    pub gguf_type: String,
    /// The GGUF file, relative to the output directory (default: ggml-model-<type>.gguf).
    #[arg(long, value_name = "PATH", requires = "export_gguf")]
    pub gguf_path: Option<PathBuf>,
}

/// The adapter, the base model and a label (version or `adapter`) a command should use:
/// explicit arguments first, then the given or active model version, then [train].
pub fn resolve_adapter(config: &Config, store: &Store, adapter: Option<PathBuf>, version: Option<&str>, model: Option<PathBuf>) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    let record = match (version, &adapter) {
        (Some(v), _) => Some(store.model(v)?.ok_or_else(|| crate::registry::RegistryError::NoModel(v.to_string()))?),
        (None, None) => store.active_model()?,
        (None, Some(_)) => None,
    };
    let label = record.as_ref().map(|m| m.version.clone()).unwrap_or_else(|| "adapter".into());
    let adapter = match adapter {
        Some(a) => a,
        None => match record.as_ref().and_then(|m| m.adapter.clone()) {
            Some(a) => PathBuf::from(a),
            None => config.train.adapter_path.clone(),
        },
    };
    let base = model
        .or_else(|| record.as_ref().and_then(|m| m.base_model.clone()).map(PathBuf::from))
        .or_else(|| config.train.base_model.clone())
        .context("no base model: pass --model DIR or set [train] base_model")?;
    Ok((adapter, base, label))
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    // With an adapter, a base and an output folder given, no project is needed.
    let (adapter, base, out, label) = match (args.adapter, args.model, args.out) {
        (Some(adapter), Some(base), Some(out)) if !ctx.config_path.exists() => (adapter, base, out, "adapter".to_string()),
        (adapter, model, out) => {
            let config = ctx.config()?;
            let store = ctx.open_store(&config)?;
            let (adapter, base, label) = resolve_adapter(&config, &store, adapter, args.model_version.as_deref(), model)?;
            let out = out.unwrap_or_else(|| config.dir.join("fused").join(&label));
            (adapter, base, out, label)
        }
    };
    // Checked before fusing, so a bad type does not cost a fuse.
    let gguf_type: Option<GgufType> = if args.export_gguf { Some(args.gguf_type.parse()?) } else { None };
    let fuse_args = brain_train::fuse::FuseArgs {
        model: base.clone(),
        adapter_path: adapter.clone(),
        save_path: out,
        // A GGUF export is written from dense weights: a quantized base is dequantized first.
        dequantize: args.dequantize || args.export_gguf,
        dtype: args.dtype,
        overwrite: args.overwrite,
    };
    let report = brain_train::fuse::fuse(&fuse_args).with_context(|| format!("fusing {} into {}", adapter.display(), base.display()))?;
    let gguf = match gguf_type {
        Some(t) => {
            let path = out_path(&report.save_path, args.gguf_path.as_deref(), t);
            let name = format!("{} ({label})", base.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            Some(export_gguf(&report.save_path, &path, t, Some(&name)).with_context(|| format!("writing {}", path.display()))?)
        }
        None => None,
    };
    if ctx.json {
        let mut v = serde_json::to_value(&report)?;
        v["gguf"] = serde_json::to_value(&gguf)?;
        super::print_json(&v)?;
    } else if !ctx.quiet {
        println!(
            "fused {} ({} layers{}) into {}",
            adapter.display(),
            report.fused,
            if report.dequantized > 0 { format!(", {} weights dequantized to {}", report.dequantized, report.dtype) } else { String::new() },
            report.save_path.display()
        );
        if report.update_lost > 0.0 {
            println!("rounding to {} lost {:.1}% of the adapter's update (norm)", report.dtype, report.update_lost * 100.0);
        }
        println!("files: config.json, {}, {}", report.files.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", "), report.copied.join(", "));
        if let Some(g) = &gguf {
            let types = g.tensor_types.iter().map(|(t, n)| format!("{n} {t}")).collect::<Vec<_>>().join(", ");
            println!("GGUF ({}, {}, {:.1} MB; tensors: {types}): {}", g.gguf_type.name(), g.architecture, g.bytes as f64 / 1e6, g.path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `--gguf-path` puts the file: relative paths inside the fused directory (as mlx-lm does).
pub fn out_path(fused: &std::path::Path, asked: Option<&std::path::Path>, t: GgufType) -> PathBuf {
    match asked {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => fused.join(p),
        None => fused.join(t.default_file_name()),
    }
}
