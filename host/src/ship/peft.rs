//! Converts an mlx-lm adapter (`adapters.safetensors`, lora_a (in, r), lora_b (r, out), absolute
//! `scale`) into the PEFT layout Ollama's importer reads (`adapter_model.safetensors` with
//! `…lora_A.weight` (r, in) and `…lora_B.weight` (out, r), `adapter_config.json` with `r` and
//! `lora_alpha`). PEFT scales by `lora_alpha / r`, so `lora_alpha = scale × r` keeps the
//! adapter's effect identical to training.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

/// The LoRA settings read from mlx-lm's adapter_config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSettings {
    pub rank: usize,
    pub scale: f64,
    pub dropout: f64,
}

pub fn read_lora_settings(adapter_dir: &Path) -> Result<LoraSettings> {
    let path = adapter_dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let lp = v
        .get("lora_parameters")
        .ok_or_else(|| anyhow!("{}: no `lora_parameters` (is this a LoRA adapter?)", path.display()))?;
    let rank = lp.get("rank").and_then(|r| r.as_u64()).ok_or_else(|| anyhow!("{}: `lora_parameters.rank` missing", path.display()))?;
    let scale = lp.get("scale").and_then(|s| s.as_f64()).ok_or_else(|| anyhow!("{}: `lora_parameters.scale` missing", path.display()))?;
    let dropout = lp.get("dropout").and_then(|d| d.as_f64()).unwrap_or(0.0);
    Ok(LoraSettings { rank: rank as usize, scale, dropout })
}

/// Writes `out_dir/adapter_model.safetensors` and `out_dir/adapter_config.json`.
/// Returns the settings used.
pub fn convert(adapter_dir: &Path, base_model: &str, out_dir: &Path) -> Result<LoraSettings> {
    let settings = read_lora_settings(adapter_dir)?;
    let path = adapter_dir.join("adapters.safetensors");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes).with_context(|| format!("parsing {}", path.display()))?;

    let mut tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    let mut modules = std::collections::BTreeSet::new();
    for (name, view) in st.tensors() {
        let (prefix, which) = if let Some(p) = name.strip_suffix(".lora_a") {
            (p, "lora_A")
        } else if let Some(p) = name.strip_suffix(".lora_b") {
            (p, "lora_B")
        } else {
            bail!("{}: tensor `{name}` is not a LoRA matrix (full fine-tunes must be fused instead)", path.display());
        };
        if let Some(module) = prefix.rsplit('.').next() {
            modules.insert(module.to_string());
        }
        let (shape, data) = transpose(&view).with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        tensors.insert(format!("base_model.model.{prefix}.{which}.weight"), (view.dtype(), shape, data));
    }
    if tensors.is_empty() {
        bail!("{} holds no tensors", path.display());
    }

    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, (dt, shape, data))| Ok((k.clone(), TensorView::new(*dt, shape.clone(), data)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let out = out_dir.join("adapter_model.safetensors");
    safetensors::serialize_to_file(views, Some(meta), &out).with_context(|| format!("writing {}", out.display()))?;

    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": settings.rank,
        "lora_alpha": settings.scale * settings.rank as f64,
        "lora_dropout": settings.dropout,
        "bias": "none",
        "target_modules": modules.into_iter().collect::<Vec<_>>(),
    });
    let cfg_path = out_dir.join("adapter_config.json");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&config)? + "\n")
        .with_context(|| format!("writing {}", cfg_path.display()))?;
    Ok(settings)
}

/// Transposes a 2-D tensor's raw bytes (any element size).
fn transpose(view: &TensorView<'_>) -> Result<(Vec<usize>, Vec<u8>)> {
    let shape = view.shape();
    if shape.len() != 2 {
        bail!("expected a 2-D matrix, found shape {shape:?}");
    }
    let (rows, cols) = (shape[0], shape[1]);
    let size = view.dtype().bitsize() / 8;
    let src = view.data();
    if src.len() != rows * cols * size {
        bail!("data length {} does not match shape {shape:?}", src.len());
    }
    let mut out = vec![0u8; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            let from = (r * cols + c) * size;
            let to = (c * rows + r) * size;
            out[to..to + size].copy_from_slice(&src[from..from + size]);
        }
    }
    Ok((vec![cols, rows], out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn converts_keys_shapes_and_alpha() {
        let dir = tempfile::tempdir().unwrap();
        let a = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]); // (in=3, r=2)
        let b = f32_bytes(&[7.0, 8.0, 9.0, 10.0]); // (r=2, out=2)
        let views = vec![
            ("model.layers.0.self_attn.q_proj.lora_a".to_string(), TensorView::new(Dtype::F32, vec![3, 2], &a).unwrap()),
            ("model.layers.0.self_attn.q_proj.lora_b".to_string(), TensorView::new(Dtype::F32, vec![2, 2], &b).unwrap()),
        ];
        safetensors::serialize_to_file(views, None, &dir.path().join("adapters.safetensors")).unwrap();
        std::fs::write(
            dir.path().join("adapter_config.json"),
            r#"{"fine_tune_type":"lora","num_layers":1,"lora_parameters":{"rank":2,"scale":10.0,"dropout":0.0}}"#,
        )
        .unwrap();
        let out = dir.path().join("peft");
        let s = convert(dir.path(), "base", &out).unwrap();
        assert_eq!(s.rank, 2);

        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!(cfg["r"], 2);
        assert_eq!(cfg["lora_alpha"].as_f64(), Some(20.0));
        assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj"]));

        let bytes = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let a_t = st.tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").unwrap();
        assert_eq!(a_t.shape(), &[2, 3]);
        // Row 0 of A^T is column 0 of A: 1, 3, 5.
        assert_eq!(a_t.data(), f32_bytes(&[1.0, 3.0, 5.0, 2.0, 4.0, 6.0]).as_slice());
        let b_t = st.tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight").unwrap();
        assert_eq!(b_t.data(), f32_bytes(&[7.0, 9.0, 8.0, 10.0]).as_slice());
    }

    #[test]
    fn full_fine_tune_weights_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = f32_bytes(&[1.0; 4]);
        let views = vec![("model.layers.0.mlp.up_proj.weight".to_string(), TensorView::new(Dtype::F32, vec![2, 2], &w).unwrap())];
        safetensors::serialize_to_file(views, None, &dir.path().join("adapters.safetensors")).unwrap();
        std::fs::write(dir.path().join("adapter_config.json"), r#"{"num_layers":1,"lora_parameters":{"rank":2,"scale":1.0}}"#).unwrap();
        let err = convert(dir.path(), "base", &dir.path().join("p")).unwrap_err().to_string();
        assert!(err.contains("not a LoRA matrix"), "{err}");
    }
}
