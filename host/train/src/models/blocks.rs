//! The building blocks every architecture shares: linear layers (dense, quantized, with LoRA),
//! rotary position embeddings, attention with optional per-head q/k norms, the SwiGLU MLP, and the
//! pre-norm transformer block. An architecture file only says which of these its block uses
//! ([`Layout`]), so a new architecture is one small file.
//!
//! Layers refer to parameters by index into the list a block is called with, so the trainer can
//! swap in traced trainable arrays inside `value_and_grad` and a block can be wrapped in
//! `mlx::checkpoint` with its parameters as inputs.

use mlx::fast::{self, SdpaMask};
use mlx::quantized::{quantized_matmul, quantized_matmul_cpu, quantized_matmul_cpu_bf16};
use mlx::Array;

use crate::config::ModelConfig;

use crate::cache::LayerKv;

/// Affine quantization of one matrix: indices of scales and biases, group size, bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QSpec {
    pub scales: usize,
    pub biases: usize,
    pub group: i32,
    pub bits: i32,
    /// Multiply with the bridge's CPU kernel (a CPU device, 2/4/8 bits) instead of MLX's
    /// `quantized_matmul`, whose CPU version is a scalar loop (see `mlx::quantized_matmul_cpu`).
    pub cpu_kernel: bool,
    /// With the CPU kernel, multiply its dequantized tiles in bf16 (`Model::multiply_in_bf16`).
    pub bf16: bool,
}

/// LoRA beside a linear layer: `y += scale * dropout(x) @ a @ b`, `a` (in, r), `b` (r, out).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoraSpec {
    pub a: usize,
    pub b: usize,
    pub scale: f32,
    pub dropout: f32,
    /// Distinguishes the dropout masks of different layers.
    pub slot: u64,
}

/// A linear layer; indices are into the parameter list the layer is called with.
#[derive(Debug, Clone)]
pub(crate) struct LinearSpec {
    pub w: usize,
    pub bias: Option<usize>,
    pub q: Option<QSpec>,
    pub lora: Option<LoraSpec>,
}

/// Per-call options: the batch's dropout key (training with dropout) or none (evaluation).
/// Each LoRA layer draws its mask from the key plus its slot, so a compiled step can take the
/// key as an input and draw new masks every update.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode<'a> {
    pub dropout_key: Option<&'a Array>,
}

impl LinearSpec {
    pub(crate) fn forward(&self, p: &[Array], x: &Array, mode: Mode) -> mlx::Result<Array> {
        let y = match (self.q, self.bias) {
            (Some(q), _) => {
                if q.cpu_kernel && q.bf16 {
                    quantized_matmul_cpu_bf16(x, &p[self.w], &p[q.scales], &p[q.biases], true, q.group, q.bits)?
                } else if q.cpu_kernel {
                    quantized_matmul_cpu(x, &p[self.w], &p[q.scales], &p[q.biases], true, q.group, q.bits)?
                } else {
                    quantized_matmul(x, &p[self.w], &p[q.scales], Some(&p[q.biases]), true, q.group, q.bits)?
                }
            }
            // A frozen bf16 weight under f32 activations: `Model::multiply_in_bf16` (CPU).
            (None, _) if self.bf16_product(p, x) => mlx::bf16mm::matmul_cpu(x, &p[self.w], true)?,
            // addmm: the bias is the GEMM's accumulator (one pass less than matmul + add).
            (None, Some(b)) => return self.add_lora(mlx::addmm(&p[b], x, &p[self.w].swapaxes(-1, -2)?, 1.0, 1.0)?, p, x, mode),
            (None, None) => x.matmul(&p[self.w].swapaxes(-1, -2)?)?,
        };
        self.finish(y, p, x, mode)
    }

    /// Whether `x @ Wᵀ` goes through the bf16 kernel (a bf16 weight, f32 activations).
    fn bf16_product(&self, p: &[Array], x: &Array) -> bool {
        self.q.is_none() && p[self.w].dtype() == mlx::Dtype::Bfloat16 && x.dtype() == mlx::Dtype::Float32
    }

    /// The product `y = x @ Wᵀ` plus the bias and the LoRA term.
    fn finish(&self, y: Array, p: &[Array], x: &Array, mode: Mode) -> mlx::Result<Array> {
        let y = match self.bias {
            Some(b) => y.add(&p[b])?,
            None => y,
        };
        self.add_lora(y, p, x, mode)
    }

    fn add_lora(&self, mut y: Array, p: &[Array], x: &Array, mode: Mode) -> mlx::Result<Array> {
        if let Some(l) = self.lora {
            let xd = match mode.dropout_key {
                Some(batch_key) if l.dropout > 0.0 => {
                    let key = batch_key.add(&Array::scalar(l.slot as u32)?)?;
                    let keep = mlx::random::bernoulli(&Array::scalar(1.0 - l.dropout)?, &x.shape(), Some(&key))?;
                    x.mul(&keep.as_type(x.dtype())?)?.mul(1.0 / (1.0 - l.dropout))?
                }
                _ => x.clone(),
            };
            let xa = xd.matmul(&p[l.a])?;
            y = if y.dtype() == xa.dtype() {
                // y + scale · (x a) b in one GEMM.
                mlx::addmm(&y, &xa, &p[l.b], l.scale, 1.0)?
            } else {
                y.add(&xa.matmul(&p[l.b])?.mul(l.scale)?.as_type(y.dtype())?)?
            };
        }
        Ok(y)
    }

    /// Input features (unpacking quantized widths).
    pub(crate) fn in_dims(&self, p: &[Array]) -> i32 {
        let cols = p[self.w].dim(-1);
        match self.q {
            Some(q) => cols * 32 / q.bits,
            None => cols,
        }
    }
}

/// Rows of x up to which layers that share x (q, k, v; gate, up) multiply as one op
/// ([`mlx::bf16mm::matmul_group_cpu`]): decoding, where each product is small and the hand-off to
/// the kernel's threads is a large part of its time.
const GROUP_ROWS: i32 = 4;

/// `BRAIN_NO_GROUPED_PRODUCTS=1` keeps every product its own op (to measure the difference).
fn grouping_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("BRAIN_NO_GROUPED_PRODUCTS").is_ok_and(|v| v == "1"))
}

/// The layers' outputs for one x: one op for all their bf16 products when decoding, else each
/// layer's own forward.
fn forward_shared(lin: &[&LinearSpec], p: &[Array], x: &Array, mode: Mode) -> mlx::Result<Vec<Array>> {
    let rows = x.size() as i32 / x.dim(-1).max(1);
    if rows <= GROUP_ROWS && !grouping_off() && lin.iter().all(|l| l.bf16_product(p, x)) {
        let ws: Vec<&Array> = lin.iter().map(|l| &p[l.w]).collect();
        let ys = mlx::bf16mm::matmul_group_cpu(x, &ws)?;
        return lin.iter().zip(ys).map(|(l, y)| l.finish(y, p, x, mode)).collect();
    }
    lin.iter().map(|l| l.forward(p, x, mode)).collect()
}

/// How positions are rotated into q and k (the rotate-half layout of Llama and Qwen).
#[derive(Clone)]
pub(crate) enum Rope {
    /// Periods `base^(2i/d)`, positions multiplied by `scale` (1, or 1/factor for `linear`).
    Base { base: f32, scale: f32 },
    /// Explicit periods per rotary pair: Llama-3's frequency correction (from `rope_scaling`
    /// or a GGUF's `rope_freqs` factors).
    Periods(Array),
}

impl Rope {
    fn apply(&self, x: &Array, dims: i32, offset: i32) -> mlx::Result<Array> {
        match self {
            Rope::Base { base, scale } => fast::rope(x, dims, false, *base, *scale, offset),
            Rope::Periods(p) => fast::rope_with_freqs(x, dims, false, 1.0, offset, p),
        }
    }

    /// The rotary embedding a config asks for: `rope_scaling` of type `linear` or `llama3`, or
    /// a GGUF's per-pair frequency `factors` (llama.cpp's `rope_freqs`), else plain `rope_theta`.
    pub(crate) fn from_config(cfg: &ModelConfig, factors: Option<&[f32]>) -> Result<Rope, String> {
        let dims = cfg.head_dim();
        let periods = |v: Vec<f32>| Array::from_slice(&v, &[v.len() as i32]).map(Rope::Periods).map_err(|e| e.to_string());
        if let Some(f) = factors {
            if f.len() != dims / 2 {
                return Err(format!("rope_freqs has {} factors; head_dim {dims} needs {}", f.len(), dims / 2));
            }
            return periods(Self::periods(cfg.rope_theta, dims, Some(f)));
        }
        let scaling = cfg.rope_scaling.as_ref().filter(|s| !s.is_null());
        let kind = scaling.and_then(|s| s.get("rope_type").or_else(|| s.get("type"))).and_then(|v| v.as_str());
        let num = |key: &str, default: Option<f32>| -> Result<f32, String> {
            match scaling.and_then(|s| s.get(key)).and_then(|v| v.as_f64()) {
                Some(v) => Ok(v as f32),
                None => default.ok_or_else(|| format!("rope_scaling needs \"{key}\"")),
            }
        };
        match kind {
            None | Some("default") => Ok(Rope::Base { base: cfg.rope_theta, scale: 1.0 }),
            Some("linear") => Ok(Rope::Base { base: cfg.rope_theta, scale: 1.0 / num("factor", None)? }),
            Some("llama3") => periods(Self::llama3_periods(
                cfg.rope_theta,
                dims,
                num("factor", None)?,
                num("low_freq_factor", Some(1.0))?,
                num("high_freq_factor", Some(4.0))?,
                num("original_max_position_embeddings", Some(8192.0))?,
            )),
            Some(other) => Err(format!("rope_scaling type {other:?} is not supported (supported: linear, llama3)")),
        }
    }

    /// The periods `base^(2i/d)` of the `d/2` rotary pairs, each times `factors[i]` when given.
    pub(crate) fn periods(base: f32, dims: usize, factors: Option<&[f32]>) -> Vec<f32> {
        (0..dims / 2)
            .map(|i| {
                let p = (base as f64).powf(2.0 * i as f64 / dims as f64) as f32;
                p * factors.map_or(1.0, |f| f[i])
            })
            .collect()
    }

    /// Llama 3.1's correction (`rope_type: llama3`): long wavelengths stretched by `factor`,
    /// short ones kept, the band between interpolated smoothly.
    pub(crate) fn llama3_periods(base: f32, dims: usize, factor: f32, low: f32, high: f32, old_context: f32) -> Vec<f32> {
        let (low_wavelen, high_wavelen) = (old_context / low, old_context / high);
        Self::periods(base, dims, None)
            .into_iter()
            .map(|p| {
                let wavelen = 2.0 * std::f32::consts::PI * p;
                let scaled = if wavelen > low_wavelen { p * factor } else { p };
                if wavelen > high_wavelen && wavelen < low_wavelen {
                    let smooth = (old_context / wavelen - low) / (high - low);
                    scaled / ((1.0 - smooth) / factor + smooth)
                } else {
                    scaled
                }
            })
            .collect()
    }
}

/// Which parts a block has, as an architecture file declares them.
#[derive(Clone)]
pub(crate) struct Layout {
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// RMSNorm over each head of q and k before RoPE (Qwen3).
    pub qk_norm: bool,
    pub rope: Rope,
}

/// Shape constants and the rotary embedding a block needs (cloned into checkpoint closures).
#[derive(Clone)]
pub(crate) struct Dims {
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    pub eps: f32,
    pub rope: Rope,
}

/// One transformer block; indices are local to the block's own parameter list.
#[derive(Debug, Clone)]
pub(crate) struct BlockSpec {
    pub input_norm: usize,
    pub post_norm: usize,
    /// Per-head norms of q and k (Qwen3).
    pub qk_norm: Option<(usize, usize)>,
    /// q, k, v, o, gate, up, down
    pub lin: [LinearSpec; 7],
}

/// The module keys of a block, in `BlockSpec::lin` order (mlx-lm's LoRA `keys`).
pub const LINEAR_KEYS: [&str; 7] =
    ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

/// Attention: q/k/v projections, optional q/k norms, RoPE (from the cache's offset when
/// decoding), causal grouped-query attention, output projection.
fn attention(s: &BlockSpec, d: &Dims, x: &Array, p: &[Array], mode: Mode, cache: Option<&mut LayerKv>) -> mlx::Result<Array> {
    let sh = x.shape();
    let (b, l) = (sh[0], sh[1]);
    let heads = |t: Array, n: i32| t.reshape(&[b, l, n, d.head_dim]);
    let [q, k, v]: [Array; 3] = forward_shared(&[&s.lin[0], &s.lin[1], &s.lin[2]], p, x, mode)?.try_into().expect("three outputs");
    let mut q = heads(q, d.heads)?;
    let mut k = heads(k, d.kv_heads)?;
    if let Some((qn, kn)) = s.qk_norm {
        q = fast::rms_norm(&q, Some(&p[qn]), d.eps)?;
        k = fast::rms_norm(&k, Some(&p[kn]), d.eps)?;
    }
    let q = q.transpose(&[0, 2, 1, 3])?;
    let k = k.transpose(&[0, 2, 1, 3])?;
    let v = heads(v, d.kv_heads)?.transpose(&[0, 2, 1, 3])?;
    let offset = cache.as_ref().map_or(0, |c| c.offset());
    let q = d.rope.apply(&q, d.head_dim, offset)?;
    let k = d.rope.apply(&k, d.head_dim, offset)?;
    let (k, v) = match cache {
        Some(c) => c.update(&k, &v)?,
        None => (k, v),
    };
    let scale = (d.head_dim as f32).powf(-0.5);
    let o = fast::scaled_dot_product_attention(&q, &k, &v, scale, SdpaMask::Causal)?;
    let o = o.transpose(&[0, 2, 1, 3])?.reshape(&[b, l, d.heads * d.head_dim])?;
    s.lin[3].forward(p, &o, mode)
}

/// SwiGLU: `down(silu(gate(x)) * up(x))`.
fn mlp(s: &BlockSpec, x: &Array, p: &[Array], mode: Mode) -> mlx::Result<Array> {
    let [g, u]: [Array; 2] = forward_shared(&[&s.lin[4], &s.lin[5]], p, x, mode)?.try_into().expect("two outputs");
    s.lin[6].forward(p, &fast::swiglu(&g, &u)?, mode)
}

/// Pre-norm block: `h + attn(norm(h))`, then `h + mlp(norm(h))`. With `cache` (incremental
/// decoding) positions start at the cache's offset and this call's keys and values are appended.
pub(crate) fn block_forward(s: &BlockSpec, d: &Dims, h: &Array, p: &[Array], mode: Mode, cache: Option<&mut LayerKv>) -> mlx::Result<Array> {
    let x = fast::rms_norm(h, Some(&p[s.input_norm]), d.eps)?;
    let h = h.add(&attention(s, d, &x, p, mode, cache)?)?;
    let x = fast::rms_norm(&h, Some(&p[s.post_norm]), d.eps)?;
    h.add(&mlp(s, &x, p, mode)?)
}

