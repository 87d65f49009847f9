//! `brain fuse`: merge an adapter into its base model and write a Hugging Face-layout directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

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
    let config = ctx.config()?;
    let store = ctx.open_store(&config)?;
    let (adapter, base, label) = resolve_adapter(&config, &store, args.adapter, args.model_version.as_deref(), args.model)?;
    let out = args.out.unwrap_or_else(|| config.dir.join("fused").join(&label));
    let fuse_args = brain_train::fuse::FuseArgs {
        model: base.clone(),
        adapter_path: adapter.clone(),
        save_path: out,
        dequantize: args.dequantize,
        dtype: args.dtype,
        overwrite: args.overwrite,
    };
    let report = brain_train::fuse::fuse(&fuse_args).with_context(|| format!("fusing {} into {}", adapter.display(), base.display()))?;
    if ctx.json {
        super::print_json(&report)?;
    } else if !ctx.quiet {
        println!(
            "fused {} ({} layers{}) into {}",
            adapter.display(),
            report.fused,
            if report.dequantized > 0 { format!(", {} weights dequantized to {}", report.dequantized, report.dtype) } else { String::new() },
            report.save_path.display()
        );
        println!("files: config.json, {}, {}", report.files.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", "), report.copied.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
