//! Hugging Face and mlx-community model directories: `config.json` plus `model.safetensors`, the
//! shards `model.safetensors.index.json` names, or every `*.safetensors` (mlx-community layout).
//! Tensors stay in their stored dtype (f32/f16/bf16, or packed quantized triples).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlx::Array;

use crate::config::ModelConfig;
use crate::error::{io, model_err, Result};

/// Weight files of a model directory.
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(io(&index))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| model_err(&index, e))?;
        let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| model_err(&index, "no weight_map"))?;
        let mut files: Vec<_> = map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("adapters")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(model_err(dir, "no model.safetensors (or shards with an index) found"));
    }
    Ok(files)
}

/// The config and every tensor of a directory, by Hugging Face name.
pub(crate) fn load(dir: &Path) -> Result<(ModelConfig, BTreeMap<String, Array>)> {
    let config = ModelConfig::load(dir)?;
    let mut raw = BTreeMap::new();
    for f in weight_files(dir)? {
        raw.extend(mlx::io::load_safetensors(&f)?.tensors);
    }
    Ok((config, raw))
}

/// Whether the directory's weights hold an `lm_head.weight` (reads only safetensors headers).
pub(crate) fn has_lm_head(dir: &Path) -> bool {
    let Ok(files) = weight_files(dir) else { return false };
    files.iter().any(|f| {
        let Ok(mut file) = std::fs::File::open(f) else { return false };
        let mut len = [0u8; 8];
        if std::io::Read::read_exact(&mut file, &mut len).is_err() {
            return false;
        }
        let n = u64::from_le_bytes(len).min(100 << 20) as usize;
        let mut header = vec![0u8; n];
        std::io::Read::read_exact(&mut file, &mut header).is_ok() && header.windows(14).any(|w| w == b"\"lm_head.weigh")
    })
}
