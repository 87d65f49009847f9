//! Adapters in mlx-lm's format: `adapters.safetensors` (keys like
//! `model.layers.N.self_attn.q_proj.lora_a`, lora_a (in, r), lora_b (r, out)) and
//! `adapter_config.json` (`fine_tune_type`, `num_layers`, `lora_parameters` {rank, scale, dropout,
//! keys}), so mlx-lm's `--adapter-path` loads ours and we load mlx-lm's.

use std::collections::BTreeMap;
use std::path::Path;

use mlx::{Array, Dtype};
use serde::{Deserialize, Serialize};

use crate::error::{io, model_err, Result};
use crate::models::{Model, LINEAR_KEYS};

pub const ADAPTER_FILE: &str = "adapters.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// `lora_parameters` of adapter_config.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraParameters {
    pub rank: usize,
    pub scale: f32,
    #[serde(default)]
    pub dropout: f32,
    /// Module keys inside a block (`self_attn.q_proj`, …); mlx-lm treats a missing list as "every
    /// linear layer".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
}

/// adapter_config.json. Fields mlx-lm writes that we do not use are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    #[serde(default = "default_ftt")]
    pub fine_tune_type: String,
    pub num_layers: i32,
    #[serde(default)]
    pub lora_parameters: Option<LoraParameters>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn default_ftt() -> String {
    "lora".into()
}

impl AdapterConfig {
    /// The LoRA keys, expanding mlx-lm's "none given" to every linear layer.
    pub fn keys(&self) -> Vec<String> {
        match self.lora_parameters.as_ref().and_then(|l| l.keys.clone()) {
            Some(k) => k,
            None => LINEAR_KEYS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `lora_parameters`, which a LoRA adapter must have (`dir`: the adapter directory, named in
    /// the error).
    pub fn lora(&self, dir: &Path) -> Result<&LoraParameters> {
        self.lora_parameters.as_ref().ok_or_else(|| model_err(dir.join(ADAPTER_CONFIG), "lora_parameters is missing"))
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text).map_err(|e| model_err(&path, format!("bad adapter config: {e}")))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(ADAPTER_CONFIG);
        let text = serde_json::to_string_pretty(self).expect("serializes");
        std::fs::write(&path, text + "\n").map_err(io(&path))
    }
}

/// Write the model's trainable parameters as a safetensors file.
pub fn save_weights(model: &Model, path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let meta = BTreeMap::from([("format".to_string(), "mlx".to_string())]);
    Ok(mlx::io::save_safetensors(path, model.trainable_params(), &meta)?)
}

/// Put saved trainable values (from [`save_weights`]) into the model; names and shapes must match.
pub fn load_weights(model: &mut Model, path: &Path) -> Result<()> {
    let st = mlx::io::load_safetensors(path)?;
    let mut errors = Vec::new();
    let mut values = Vec::new();
    for (name, cur) in model.trainable_params() {
        match st.tensors.get(name) {
            None => errors.push(format!("{name} is missing")),
            Some(a) if a.shape() != cur.shape() => {
                errors.push(format!("{name}: shape {:?} in the file, {:?} in the model", a.shape(), cur.shape()))
            }
            Some(a) => values.push(a.as_type(cur.dtype())?),
        }
    }
    let trainable: std::collections::HashSet<&str> = model.trainable_params().iter().map(|(n, _)| *n).collect();
    for k in st.tensors.keys() {
        if !trainable.contains(k.as_str()) {
            errors.push(format!("{k} is not a trainable parameter of this model and adapter configuration"));
        }
    }
    if !errors.is_empty() {
        return Err(model_err(path, format!("incompatible adapter:\n  {}", errors.join("\n  "))));
    }
    mlx::eval(values.iter())?;
    model.set_trainable(values);
    Ok(())
}

/// Load an adapter directory (ours or mlx-lm's) onto a model: applies LoRA as configured (or
/// marks layers trainable for `full`), then loads the weights. Returns the config.
pub fn load_adapters(model: &mut Model, dir: &Path) -> Result<AdapterConfig> {
    let cfg = AdapterConfig::read(dir)?;
    match cfg.fine_tune_type.as_str() {
        "lora" => {
            let lp = cfg.lora(dir)?;
            model.apply_lora(cfg.num_layers, &cfg.keys(), lp.rank, lp.scale, lp.dropout, 0)?;
        }
        "full" => model.full_fine_tune(cfg.num_layers)?,
        other => return Err(model_err(dir.join(ADAPTER_CONFIG), format!("fine_tune_type {other:?} is not supported (lora, full)"))),
    }
    load_weights(model, &dir.join(ADAPTER_FILE))?;
    Ok(cfg)
}

/// One LoRA layer of an adapter file: the layer's name (`model.layers.N.self_attn.q_proj`) and
/// its matrices.
pub(crate) struct LoraLayer<'t> {
    pub prefix: &'t str,
    pub a: &'t Array,
    pub b: &'t Array,
}

/// The LoRA layers of `tensors` (loaded from `file`, named in errors): every key must be a
/// `.lora_a` or `.lora_b` and every layer must have both.
pub(crate) fn lora_layers<'t>(tensors: &'t BTreeMap<String, Array>, file: &Path) -> Result<Vec<LoraLayer<'t>>> {
    let mut layers = Vec::new();
    for name in tensors.keys() {
        if name.ends_with(".lora_b") {
            continue;
        }
        let Some(prefix) = name.strip_suffix(".lora_a") else {
            return Err(model_err(file, format!("{name} is not a LoRA matrix (lora_a / lora_b)")));
        };
        let b = tensors.get(&format!("{prefix}.lora_b")).ok_or_else(|| model_err(file, format!("{prefix}.lora_b is missing")))?;
        layers.push(LoraLayer { prefix, a: &tensors[name], b });
    }
    for name in tensors.keys().filter_map(|k| k.strip_suffix(".lora_b")) {
        if !tensors.contains_key(&format!("{name}.lora_a")) {
            return Err(model_err(file, format!("{name}.lora_a is missing")));
        }
    }
    Ok(layers)
}

/// `layer` folded into its dense weight `w` (out, in): `W + scale · (A·B)ᵀ` — the layer's output
/// `W x + scale · (x A) B` as one matrix — computed in f32, returned as `dtype` and evaluated.
/// The one place the fused weight is computed, for fusing in memory
/// ([`crate::generate::fuse_adapter`]) and into files ([`crate::fuse::fuse`]); `file` is the
/// adapter, named when the update does not fit the weight.
pub(crate) fn fold_lora(w: &Array, layer: &LoraLayer<'_>, scale: f32, dtype: Dtype, file: &Path) -> Result<Array> {
    fold(&w.as_type(Dtype::Float32)?, &lora_delta(w, layer, scale, file)?, dtype)
}

/// `w32 + delta` stored as `dtype`, evaluated.
fn fold(w32: &Array, delta: &Array, dtype: Dtype) -> Result<Array> {
    let fused = w32.add(delta)?.as_type(dtype)?;
    fused.eval()?;
    Ok(fused)
}

/// A weight with an update added and stored in a dtype, and how much of the update the stored
/// weight still carries.
pub(crate) struct Folded {
    pub weight: Array,
    /// Σ update², in f32's terms.
    pub update_sq: f64,
    /// Σ (what the stored weight changed by − the update)²: the update lost to rounding.
    pub lost_sq: f64,
}

/// [`fold_lora`] that also measures the update rounding lost (see [`Folded`]).
pub(crate) fn fold_lora_measured(w: &Array, layer: &LoraLayer<'_>, scale: f32, dtype: Dtype, file: &Path) -> Result<Folded> {
    let delta = lora_delta(w, layer, scale, file)?;
    let w32 = w.as_type(Dtype::Float32)?;
    measured(fold(&w32, &delta, dtype)?, &w32, &delta)
}

/// `scale · (A·B)ᵀ` in f32, in `w`'s (out, in) layout.
fn lora_delta(w: &Array, layer: &LoraLayer<'_>, scale: f32, file: &Path) -> Result<Array> {
    let delta = layer.a.as_type(Dtype::Float32)?.matmul(&layer.b.as_type(Dtype::Float32)?)?.t()?.mul(scale)?;
    if delta.shape() != w.shape() {
        return Err(model_err(
            file,
            format!("{}: the update is {:?} but the weight is {:?} (an adapter of another model?)", layer.prefix, delta.shape(), w.shape()),
        ));
    }
    Ok(delta)
}

/// Measures `stored` (base `w32` + `delta`, stored in its dtype). The stored weight changed by
/// `round(W + Δ) − round(W)`; the base's own rounding (a f32 base written as bf16) is not the
/// update's loss, so it is taken out.
fn measured(stored: Array, w32: &Array, delta: &Array) -> Result<Folded> {
    let update_sq = delta.square()?.sum_all()?.item::<f32>()? as f64;
    let lost_sq = if stored.dtype() == Dtype::Float32 {
        0.0
    } else {
        let moved = stored.as_type(Dtype::Float32)?.sub(&w32.as_type(stored.dtype())?.as_type(Dtype::Float32)?)?;
        moved.sub(delta)?.square()?.sum_all()?.item::<f32>()? as f64
    };
    Ok(Folded { weight: stored, update_sq, lost_sq })
}

/// A full fine-tune's trained weight `name` replacing the base's `cur`: shapes must agree;
/// stored as `dtype`, else as the base's dtype (evaluated).
pub(crate) fn full_weight(name: &str, trained: &Array, cur: &Array, dtype: Option<Dtype>, file: &Path) -> Result<Array> {
    if trained.shape() != cur.shape() {
        return Err(model_err(file, format!("{name}: {:?} in the adapter, {:?} in the model", trained.shape(), cur.shape())));
    }
    let v = trained.as_type(dtype.unwrap_or(cur.dtype()))?;
    v.eval()?;
    Ok(v)
}

/// [`full_weight`] that also measures the update (trained − base) rounding lost.
pub(crate) fn full_weight_measured(name: &str, trained: &Array, cur: &Array, dtype: Option<Dtype>, file: &Path) -> Result<Folded> {
    let v = full_weight(name, trained, cur, dtype, file)?;
    let w32 = cur.as_type(Dtype::Float32)?;
    measured(v, &w32, &trained.as_type(Dtype::Float32)?.sub(&w32)?)
}
