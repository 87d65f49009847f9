//! AdamW (MLX's update rule, with optional bias correction) with state save/load, global-norm
//! gradient clipping, and the learning-rate schedule (linear warmup, then constant or cosine).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use mlx::optimizers::{adamw_cpu, AdamWStep};
use mlx::{Array, Dtype, Operand};

use crate::error::{model_err, Result};

/// AdamW: `p ← p·(1 − lr·wd)`, then `p ← p − lr̂·m / (√v̂ + eps)`.
pub struct AdamW {
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    /// Divide m and v by (1 − βᵗ) (PyTorch's Adam; MLX's default is off).
    pub bias_correction: bool,
    /// Updates done so far.
    pub step: usize,
    /// On the CPU with float32 parameters, the whole update as one primitive
    /// (`mlx::optimizers::adamw_cpu`; the composed ops cost ~15 array ops per parameter). On by
    /// default; `BRAIN_COMPOSED_ADAMW=1` turns it off.
    pub fused: bool,
    /// Otherwise, when set, the composed update of all parameters through MLX's compile: each
    /// parameter's chain of elementwise ops becomes one kernel (on a GPU, ~128 launches instead
    /// of ~1,500 for LoRA on q/k/v/o of 16 layers). The training loop sets it when it compiles
    /// (`compile`, by default on a GPU).
    pub compiled: Option<mlx::Compiled>,
    m: Vec<Array>,
    v: Vec<Array>,
}

impl AdamW {
    pub fn new(weight_decay: f32) -> Self {
        let fused = !std::env::var("BRAIN_COMPOSED_ADAMW").is_ok_and(|v| v == "1");
        AdamW { betas: (0.9, 0.999), eps: 1e-8, weight_decay, bias_correction: true, step: 0, fused, compiled: None, m: Vec::new(), v: Vec::new() }
    }

    /// One update: returns the new parameters (lazy; evaluate them with [`AdamW::state`]).
    pub fn update(&mut self, params: &[Array], grads: &[Array], lr: f32) -> Result<Vec<Array>> {
        if self.m.len() != params.len() {
            self.m = params.iter().map(|p| p.zeros_like()).collect::<mlx::Result<_>>()?;
            self.v = self.m.clone();
        }
        self.step += 1;
        let (b1, b2) = self.betas;
        let t = self.step as i32;
        let (lr_hat, v_scale) = if self.bias_correction {
            (lr / (1.0 - b1.powi(t)), 1.0 / (1.0 - b2.powi(t)).sqrt())
        } else {
            (lr, 1.0)
        };
        let decay = (self.weight_decay != 0.0).then_some(1.0 - lr * self.weight_decay);
        let on_cpu = !mlx::device::default_device()?.is_gpu();
        if self.fused && on_cpu && params.iter().all(|p| p.dtype() == Dtype::Float32) {
            let s = AdamWStep { lr_hat, v_scale, b1, b2, eps: self.eps, decay: decay.unwrap_or(1.0) };
            let (new, m, v) = adamw_cpu(params, grads, &self.m, &self.v, s)?;
            (self.m, self.v) = (m, v);
            return Ok(new);
        }
        let (eps, n) = (self.eps, params.len());
        if let Some(c) = &self.compiled {
            // Everything that changes between updates is an input: the rates as 0-d arrays.
            let rates = [Array::scalar(lr_hat)?, Array::scalar(v_scale)?, Array::scalar(decay.unwrap_or(1.0))?];
            let inputs: Vec<&Array> = params.iter().chain(grads).chain(&self.m).chain(&self.v).chain(&rates).collect();
            let with_decay = decay.is_some();
            let mut out = c.call(
                |xs: &[Array]| {
                    let (p, rest) = xs.split_at(n);
                    let (g, rest) = rest.split_at(n);
                    let (m, rest) = rest.split_at(n);
                    let (v, r) = rest.split_at(n);
                    let decay = with_decay.then_some(&r[2]);
                    let mut new = Vec::with_capacity(3 * n);
                    let (mut ms, mut vs) = (Vec::with_capacity(n), Vec::with_capacity(n));
                    for i in 0..n {
                        let (p, m, v) = adamw_step(&p[i], &g[i], &m[i], &v[i], &r[0], &r[1], decay, (b1, b2, eps))?;
                        new.push(p);
                        ms.push(m);
                        vs.push(v);
                    }
                    new.extend(ms);
                    new.extend(vs);
                    Ok(new)
                },
                &inputs,
            )?;
            self.v = out.split_off(2 * n);
            self.m = out.split_off(n);
            return Ok(out);
        }
        let mut out = Vec::with_capacity(n);
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let (new, m, v) = adamw_step(p, g, &self.m[i], &self.v[i], lr_hat, v_scale, decay, (b1, b2, eps))?;
            self.m[i] = m;
            self.v[i] = v;
            out.push(new);
        }
        Ok(out)
    }

    /// The moment arrays (to evaluate together with the parameters).
    pub fn state(&self) -> impl Iterator<Item = &Array> {
        self.m.iter().chain(self.v.iter())
    }

    /// Save m and v (named after the parameters) and the step.
    pub fn save(&self, path: &Path, names: &[&str]) -> Result<()> {
        let mut tensors: Vec<(String, &Array)> = Vec::new();
        for (i, n) in names.iter().enumerate().take(self.m.len()) {
            tensors.push((format!("m.{n}"), &self.m[i]));
            tensors.push((format!("v.{n}"), &self.v[i]));
        }
        let meta = BTreeMap::from([
            ("step".to_string(), self.step.to_string()),
            ("optimizer".to_string(), "adamw".to_string()),
        ]);
        Ok(mlx::io::save_safetensors(path, tensors.iter().map(|(k, a)| (k.as_str(), *a)), &meta)?)
    }

    /// Load state saved by [`AdamW::save`] for parameters `names`.
    pub fn load(&mut self, path: &Path, names: &[&str]) -> Result<()> {
        let mut st = mlx::io::load_safetensors(path)?;
        let step = st.metadata.get("step").and_then(|s| s.parse().ok()).ok_or_else(|| model_err(path, "no step in metadata"))?;
        let mut m = Vec::new();
        let mut v = Vec::new();
        for n in names {
            let get = |st: &mut mlx::io::Safetensors, k: String| st.tensors.remove(&k).ok_or_else(|| model_err(path, format!("{k} is missing")));
            m.push(get(&mut st, format!("m.{n}"))?);
            v.push(get(&mut st, format!("v.{n}"))?);
        }
        mlx::eval(m.iter().chain(v.iter()))?;
        self.m = m;
        self.v = v;
        self.step = step;
        Ok(())
    }
}

/// One parameter's AdamW step as MLX ops: (new parameter, m, v). The rates are numbers, or 0-d
/// arrays inside a compiled update; `decay` is `1 − lr·wd` (none without weight decay).
#[allow(clippy::too_many_arguments)]
fn adamw_step<S: Operand + Copy>(
    p: &Array,
    g: &Array,
    m: &Array,
    v: &Array,
    lr_hat: S,
    v_scale: S,
    decay: Option<S>,
    (b1, b2, eps): (f32, f32, f32),
) -> mlx::Result<(Array, Array, Array)> {
    let g = g.as_type(Dtype::Float32)?;
    let m = m.mul(b1)?.add(&g.mul(1.0 - b1)?)?;
    let v = v.mul(b2)?.add(&g.square()?.mul(1.0 - b2)?)?;
    let decayed = match decay {
        Some(d) => p.mul(d)?,
        None => p.clone(),
    };
    let denom = v.sqrt()?.mul(v_scale)?.add(eps)?;
    let new = decayed.sub(&m.mul(lr_hat)?.div(&denom)?)?.as_type(p.dtype())?;
    Ok((new, m, v))
}

/// Scale gradients so their global L2 norm is at most `max_norm`; returns the (lazy) norm.
pub fn clip_grad_norm(grads: &mut [Array], max_norm: f32) -> Result<Array> {
    let mut total: Option<Array> = None;
    for g in grads.iter() {
        let s = g.as_type(Dtype::Float32)?.square()?.sum_all()?;
        total = Some(match total {
            Some(t) => t.add(&s)?,
            None => s,
        });
    }
    let norm = match total {
        Some(t) => t.sqrt()?,
        None => Array::scalar(0f32)?,
    };
    let factor = Array::scalar(max_norm)?.div(&norm.add(1e-6f32)?)?.minimum(1.0f32)?;
    for g in grads.iter_mut() {
        *g = g.mul(&factor.as_type(g.dtype())?)?;
    }
    Ok(norm)
}

/// Learning-rate schedule kind after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    #[default]
    Cosine,
}

/// Linear warmup from 0 over `warmup` updates, then constant or cosine decay to `min_lr` at
/// update `total`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f32,
    pub warmup: usize,
    pub total: usize,
    pub min_lr: f32,
}

impl Schedule {
    /// Learning rate after `step` updates (MLX's optimizer step count), i.e. the rate update
    /// `step + 1` uses: MLX evaluates a scheduled learning rate at its step count before
    /// incrementing it, so the first update uses `lr(0)`. Equal to MLX's
    /// `join_schedules([linear_schedule(0, base_lr, warmup), cosine_decay(base_lr, total - warmup,
    /// min_lr)], [warmup])` (tests/optim_reference.rs checks it against mlx.optimizers).
    pub fn lr(&self, step: usize) -> f32 {
        if self.warmup > 0 && step <= self.warmup {
            return self.base_lr * step as f32 / self.warmup as f32;
        }
        match self.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Cosine => {
                let span = self.total.saturating_sub(self.warmup).max(1) as f32;
                let progress = ((step - self.warmup) as f32 / span).clamp(0.0, 1.0);
                self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos())
            }
        }
    }
}
