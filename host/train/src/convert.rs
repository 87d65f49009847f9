//! Quantize a dense model directory into mlx-community's layout (what `mlx_lm.convert -q` writes):
//! every linear layer and the embedding whose input width is a multiple of the group size
//! becomes a packed uint32 `weight` + `scales` + `biases`; config.json gets `quantization`
//! (and `quantization_config`) `{group_size, bits}`.

use std::collections::BTreeMap;
use std::path::Path;

use mlx::Array;

use crate::error::{io, model_err, Error, Result};

/// Files copied unchanged next to the weights.
const TOKENIZER_FILES: &[&str] = &["tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"];

/// Quantize `src` (a dense HF-layout model) into `dst` with `bits` (2, 3, 4, 6, 8) per weight in
/// groups of `group_size` (32, 64, 128).
pub fn quantize_model(src: &Path, dst: &Path, group_size: i32, bits: i32) -> Result<()> {
    let cfg_path = src.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
    let mut cfg: serde_json::Value = serde_json::from_str(&text).map_err(|e| model_err(&cfg_path, e))?;
    if cfg.get("quantization").is_some() {
        return Err(model_err(&cfg_path, "the model is already quantized"));
    }
    let st = mlx::io::load_safetensors(src.join("model.safetensors"))?;
    let mut out: BTreeMap<String, Array> = BTreeMap::new();
    for (name, w) in st.tensors {
        let quantizable = name.ends_with(".weight")
            && w.ndim() == 2
            && !name.contains("norm")
            && w.dim(-1) % group_size == 0
            && (name.contains("_proj.") || name.contains("embed_tokens") || name.starts_with("lm_head"));
        if quantizable {
            let q = mlx::quantized::quantize(&w, group_size, bits)?;
            let prefix = name.trim_end_matches(".weight");
            out.insert(format!("{prefix}.weight"), q.weight);
            out.insert(format!("{prefix}.scales"), q.scales);
            out.insert(format!("{prefix}.biases"), q.biases);
        } else {
            out.insert(name, w);
        }
    }
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    let meta = BTreeMap::from([("format".to_string(), "mlx".to_string())]);
    mlx::io::save_safetensors(dst.join("model.safetensors"), out.iter().map(|(k, v)| (k.as_str(), v)), &meta)?;
    let q = serde_json::json!({"group_size": group_size, "bits": bits});
    let o = cfg.as_object_mut().ok_or_else(|| model_err(&cfg_path, "config.json is not an object"))?;
    o.insert("quantization".into(), q.clone());
    o.insert("quantization_config".into(), q);
    let cfg_out = dst.join("config.json");
    std::fs::write(&cfg_out, serde_json::to_string_pretty(&cfg).map_err(|e| Error::Args(e.to_string()))?).map_err(io(&cfg_out))?;
    for f in TOKENIZER_FILES {
        let from = src.join(f);
        if from.exists() {
            std::fs::copy(&from, dst.join(f)).map_err(io(&from))?;
        }
    }
    Ok(())
}
