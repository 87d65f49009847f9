//! Decoder-only transformers on MLX, one file per architecture — [`llama`] (Llama 2/3.x, SmolLM,
//! Mistral), [`qwen2`] (Qwen2, Qwen2.5, Qwen2.5-Coder), [`qwen3`] (Qwen3 dense) — over the shared
//! blocks of [`blocks`]. Weights are dense (bf16/f16/f32) or quantized (mlx-community layouts and
//! GGUF Q4_0/Q4_1/Q8_0: packed uint32 + scales + biases, `quantized_matmul`), from any model
//! source ([`crate::source`]).
//!
//! Parameters live in one flat [`Params`] list under their Hugging Face names; layers refer to
//! them by index, so the trainer can swap in the traced trainable arrays inside `value_and_grad`
//! and a transformer block can be wrapped in `mlx::checkpoint` with its parameters as inputs.

pub(crate) mod blocks;
mod dense;
mod llama;
mod qwen2;
mod qwen3;

pub use blocks::{Mode, LINEAR_KEYS};
use blocks::{block_forward, BlockSpec, Dims, Layout, LinearSpec, LoraSpec, QSpec};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx::fast;
use mlx::quantized::{dequantize, quantized_matmul_cpu};
use mlx::{Array, Dtype};

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::error::{model_err, Result};

/// All parameters by name, in a fixed order.
#[derive(Clone, Default)]
pub struct Params {
    pub names: Vec<String>,
    pub values: Vec<Array>,
    index: HashMap<String, usize>,
}

impl Params {
    pub fn push(&mut self, name: String, value: Array) -> usize {
        let i = self.values.len();
        self.index.insert(name.clone(), i);
        self.names.push(name);
        self.values.push(value);
        i
    }
    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Moves weights out of the loaded map into [`Params`], casting floats to the compute dtype.
struct Loader<'a> {
    raw: &'a mut BTreeMap<String, Array>,
    dir: &'a Path,
    dtype: Dtype,
    quant: Option<&'a crate::config::Quantization>,
    /// The default device is the CPU (quantized layers use the bridge's CPU kernel).
    cpu: bool,
}

impl Loader<'_> {
    fn take(&mut self, name: &str, params: &mut Params) -> Result<usize> {
        let a = self.raw.remove(name).ok_or_else(|| model_err(self.dir, format!("weight {name} is missing")))?;
        let a = if a.dtype().is_float() && a.dtype() != self.dtype { a.as_type(self.dtype)? } else { a };
        Ok(params.push(name.to_string(), a))
    }

    /// A linear layer (or the embedding) under `prefix`; quantized when `prefix.scales` exists.
    fn linear(&mut self, prefix: &str, bias: bool, params: &mut Params) -> Result<LinearSpec> {
        let w = self.take(&format!("{prefix}.weight"), params)?;
        let q = if self.raw.contains_key(&format!("{prefix}.scales")) {
            let q = self.quant.ok_or_else(|| model_err(self.dir, format!("{prefix} is quantized but config.json has no \"quantization\"")))?;
            let (group, bits) = q.for_layer(prefix);
            let scales = self.take(&format!("{prefix}.scales"), params)?;
            let biases = self.take(&format!("{prefix}.biases"), params)?;
            Some(QSpec { scales, biases, group, bits, cpu_kernel: self.cpu && matches!(bits, 2 | 4 | 8), bf16: false })
        } else {
            None
        };
        let bias = if bias { Some(self.take(&format!("{prefix}.bias"), params)?) } else { None };
        Ok(LinearSpec { w, bias, q, lora: None })
    }
}

struct Block {
    spec: BlockSpec,
    /// Global parameter index of each local index.
    ix: Vec<usize>,
}

/// What a model is about to do, for choices whose better answer depends on it (bf16 products).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Forward and backward passes over whole sequences (SFT, DPO): tiled products.
    Training,
    /// Generation: one row per token, each weight read once (memory-bound).
    Decoding,
}

/// A loaded model of any supported architecture.
pub struct Model {
    pub config: ModelConfig,
    pub params: Params,
    /// Compute dtype of activations and dense weights.
    pub dtype: Dtype,
    /// Floating dtype the weights were stored in (a quantized model's scales'): decides the CPU's
    /// default for [`Model::use_bf16_matmul`].
    pub stored: Dtype,
    /// Indices of the trainable parameters (LoRA a/b, or whole layers for full fine-tuning).
    pub trainable: Vec<usize>,
    /// Recompute each block's activations in the backward pass instead of keeping them.
    pub grad_checkpoint: bool,
    embed: usize,
    embed_q: Option<QSpec>,
    blocks: Vec<Block>,
    norm: usize,
    head: Option<LinearSpec>,
    /// Dense output projection (V, H) when the stored one is quantized: made (once) the first
    /// time the loss needs it, so generation, which multiplies the packed matrix, never holds it.
    head_dense: std::cell::OnceCell<Array>,
    /// `head_dense` is made in bf16 (`multiply_in_bf16`: the fused cross-entropy multiplies it so).
    head_dense_bf16: bool,
    dims: Dims,
}

/// Default compute dtype: f32 on the CPU (bf16 matmuls there are slow and inexact), the stored
/// floating dtype on a GPU.
pub fn default_dtype(stored: Dtype) -> Result<Dtype> {
    if mlx::device::default_device()?.is_gpu() && stored.is_float() {
        Ok(stored)
    } else {
        Ok(Dtype::Float32)
    }
}

/// The floating dtype `raw`'s weights are stored in: the embedding's, or a quantized one's scales'.
fn stored_dtype(raw: &BTreeMap<String, Array>) -> Dtype {
    let stored = raw.get("model.embed_tokens.weight").map(|a| a.dtype()).unwrap_or(Dtype::Float32);
    if stored.is_float() {
        stored
    } else {
        raw.get("model.embed_tokens.scales").map(|a| a.dtype()).unwrap_or(Dtype::Float32)
    }
}

/// The block layout of `config`'s architecture (`rope_factors`: a GGUF's `rope_freqs`).
fn layout(config: &ModelConfig, rope_factors: Option<&[f32]>) -> std::result::Result<Layout, String> {
    match config.model_type.as_str() {
        "llama" | "mistral" => llama::layout(config, rope_factors),
        "qwen2" => qwen2::layout(config, rope_factors),
        "qwen3" => qwen3::layout(config, rope_factors),
        other => Err(format!(
            "model_type {other:?} is not supported (supported: {})",
            crate::config::SUPPORTED_MODEL_TYPES.join(", ")
        )),
    }
}

impl Model {
    /// Load the model `model` names — a Hugging Face or mlx-community directory, a `.gguf`
    /// file or `ollama:NAME[:TAG]` (see [`crate::source`]). `dtype`: compute dtype (None:
    /// [`default_dtype`] of the stored weights).
    ///
    /// Quantized weights stay quantized (QLoRA); on the CPU only widths the bridge's kernel
    /// lacks (3, 5, 6 bits) are dequantized once when the dense copy fits (see `dense.rs`).
    pub fn load(model: &Path, dtype: Option<Dtype>) -> Result<Self> {
        Self::load_with(model, dtype, true)
    }

    /// [`Model::load`] that keeps quantized weights quantized on every device (QLoRA).
    pub fn load_quantized(model: &Path, dtype: Option<Dtype>) -> Result<Self> {
        Self::load_with(model, dtype, false)
    }

    fn load_with(model: &Path, dtype: Option<Dtype>, may_dequantize: bool) -> Result<Self> {
        let (mut config, mut raw) = crate::source::load_weights(model)?;
        let dtype = match dtype {
            Some(d) => d,
            None => default_dtype(stored_dtype(&raw))?,
        };
        if may_dequantize && dense::should_dequantize(&config, &raw)? {
            dense::dequantize_all(&mut config, &mut raw, dtype)?;
        }
        Self::from_weights(model, config, raw, dtype)
    }

    /// Build from named weights (Hugging Face names; `rope_freqs` for a GGUF's rotary factors).
    /// `origin` names the model in errors.
    pub fn from_weights(origin: &Path, config: ModelConfig, mut raw: BTreeMap<String, Array>, dtype: Dtype) -> Result<Self> {
        raw.retain(|k, _| !k.contains("rotary_emb.inv_freq"));
        let stored = stored_dtype(&raw);
        if config.tie_word_embeddings {
            raw.retain(|k, _| !k.starts_with("lm_head."));
        }
        let rope_factors = match raw.remove("rope_freqs") {
            Some(f) => Some(f.as_type(Dtype::Float32)?.to_vec::<f32>()?),
            None => None,
        };
        let layout = layout(&config, rope_factors.as_deref()).map_err(|m| model_err(origin, m))?;
        let mut params = Params::default();
        let quant = config.quantization.clone();
        let cpu = !mlx::device::default_device()?.is_gpu();
        let mut ld = Loader { raw: &mut raw, dir: origin, dtype, quant: quant.as_ref(), cpu };
        let e = ld.linear("model.embed_tokens", false, &mut params)?;
        let mut blocks = Vec::new();
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let start = params.len();
            let input_norm = ld.take(&format!("{p}.input_layernorm.weight"), &mut params)? - start;
            let post_norm = ld.take(&format!("{p}.post_attention_layernorm.weight"), &mut params)? - start;
            let qk_norm = if layout.qk_norm {
                let q = ld.take(&format!("{p}.self_attn.q_norm.weight"), &mut params)? - start;
                let k = ld.take(&format!("{p}.self_attn.k_norm.weight"), &mut params)? - start;
                Some((q, k))
            } else {
                None
            };
            let mut lin = Vec::new();
            for (k, key) in LINEAR_KEYS.iter().enumerate() {
                let bias = match k {
                    0..=2 => layout.qkv_bias,
                    3 => layout.o_bias,
                    _ => layout.mlp_bias,
                };
                let mut s = ld.linear(&format!("{p}.{key}"), bias, &mut params)?;
                s.w -= start;
                s.bias = s.bias.map(|b| b - start);
                s.q = s.q.map(|q| QSpec { scales: q.scales - start, biases: q.biases - start, ..q });
                lin.push(s);
            }
            let ix = (start..params.len()).collect();
            let lin: [LinearSpec; 7] = lin.try_into().expect("seven linear layers");
            blocks.push(Block { spec: BlockSpec { input_norm, post_norm, qk_norm, lin }, ix });
        }
        let norm = ld.take("model.norm.weight", &mut params)?;
        let head = if config.tie_word_embeddings { None } else { Some(ld.linear("lm_head", false, &mut params)?) };
        if let Some(extra) = raw.keys().next() {
            tracing::warn!("{}: ignoring unexpected weight {extra} ({} unused)", origin.display(), raw.len());
        }
        let dims = Dims {
            heads: config.num_attention_heads as i32,
            kv_heads: config.kv_heads() as i32,
            head_dim: config.head_dim() as i32,
            eps: config.rms_norm_eps,
            rope: layout.rope,
        };
        let m = Model {
            config,
            params,
            dtype,
            stored,
            trainable: Vec::new(),
            grad_checkpoint: false,
            embed: e.w,
            embed_q: e.q,
            blocks,
            norm,
            head,
            head_dense: std::cell::OnceCell::new(),
            head_dense_bf16: false,
            dims,
        };
        mlx::eval(m.params.values.iter())?;
        Ok(m)
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the weights are quantized (QLoRA).
    pub fn is_quantized(&self) -> bool {
        self.embed_q.is_some() || self.blocks.iter().any(|b| b.spec.lin.iter().any(|l| l.q.is_some()))
    }

    /// Token embeddings (B, L, H) of int32 ids (B, L).
    fn embed(&self, p: &[Array], ids: &Array) -> mlx::Result<Array> {
        let w = &p[self.embed];
        match self.embed_q {
            None if w.dtype() != self.dtype => w.take(ids, 0)?.as_type(self.dtype),
            None => w.take(ids, 0),
            Some(q) => {
                let sh = ids.shape();
                let flat = ids.reshape(&[-1])?;
                let rows = w.take(&flat, 0)?;
                let s = p[q.scales].take(&flat, 0)?;
                let b = p[q.biases].take(&flat, 0)?;
                let h = dequantize(&rows, &s, Some(&b), q.group, q.bits)?.as_type(self.dtype)?;
                h.reshape(&[sh[0], sh[1], -1])
            }
        }
    }

    /// Final hidden states (B, L, H) after the last norm, for int32 token ids (B, L), computed
    /// with parameter values `p` (normally `self.params.values`, or traced ones in a gradient).
    pub fn hidden(&self, p: &[Array], ids: &Array, mode: Mode) -> mlx::Result<Array> {
        let mut h = self.embed(p, ids)?;
        for b in &self.blocks {
            let bp: Vec<Array> = b.ix.iter().map(|&i| p[i].clone()).collect();
            h = if self.grad_checkpoint {
                let (spec, dims, key) = (b.spec.clone(), self.dims.clone(), mode.dropout_key.cloned());
                let mut inputs: Vec<&Array> = vec![&h];
                inputs.extend(bp.iter());
                let out = mlx::checkpoint(
                    move |xs: &[Array]| Ok(vec![block_forward(&spec, &dims, &xs[0], &xs[1..], Mode { dropout_key: key.as_ref() }, None)?]),
                    &inputs,
                )?;
                out.into_iter().next().expect("one output")
            } else {
                block_forward(&b.spec, &self.dims, &h, &bp, mode, None)?
            };
        }
        fast::rms_norm(&h, Some(&p[self.norm]), self.dims.eps)
    }

    /// [`Model::hidden`] for incremental decoding with the current parameters: `ids` (B, L)
    /// continue the sequence whose keys and values `cache` holds (positions from its offset);
    /// theirs are appended.
    pub fn hidden_cached(&self, ids: &Array, cache: &mut KvCache) -> mlx::Result<Array> {
        let p = &self.params.values;
        if cache.layers.len() != self.blocks.len() {
            *cache = KvCache::new(self.blocks.len());
        }
        let mut h = self.embed(p, ids)?;
        for (b, kv) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let bp: Vec<Array> = b.ix.iter().map(|&i| p[i].clone()).collect();
            h = block_forward(&b.spec, &self.dims, &h, &bp, Mode::default(), Some(kv))?;
        }
        fast::rms_norm(&h, Some(&p[self.norm]), self.dims.eps)
    }

    /// The output projection's parameter index and quantization (tied embedding or lm_head).
    fn head_matrix(&self) -> (usize, Option<QSpec>) {
        match &self.head {
            Some(h) => (h.w, h.q),
            None => (self.embed, self.embed_q),
        }
    }

    /// The output projection (V, H) as a dense matrix (tied embedding or lm_head); a quantized
    /// one is dequantized the first time and kept.
    pub fn head_weight(&self, p: &[Array]) -> mlx::Result<Array> {
        let (w, q) = self.head_matrix();
        let Some(q) = q else { return Ok(p[w].clone()) };
        if let Some(d) = self.head_dense.get() {
            return Ok(d.clone());
        }
        let v = &self.params.values;
        let d = if self.head_dense_bf16 {
            // An eighth of the rows at a time, each widened to f32 and narrowed to bf16 before the
            // next: the f32 copy of the whole matrix (0.93 GB for a 151,936-row head of width
            // 1,536) never exists beside the bf16 one.
            let rows = v[w].shape()[0];
            let step = (rows + 7) / 8;
            let mut parts = Vec::new();
            for r0 in (0..rows).step_by(step.max(1) as usize) {
                let r1 = (r0 + step).min(rows);
                let rows_of = |a: &Array| a.slice_axis(0, r0, r1);
                let part = dense::dequantize_f32(&rows_of(&v[w])?, &rows_of(&v[q.scales])?, Some(&rows_of(&v[q.biases])?), q.group, q.bits)?
                    .as_type(Dtype::Bfloat16)?;
                part.eval()?;
                parts.push(part);
            }
            mlx::concatenate(&parts.iter().collect::<Vec<_>>(), 0)?
        } else {
            dense::dequantize_f32(&v[w], &v[q.scales], Some(&v[q.biases]), q.group, q.bits)?.as_type(self.dtype)?
        };
        d.eval()?;
        Ok(self.head_dense.get_or_init(|| d).clone())
    }

    /// Logits (..., V) of final hidden states (..., H) with the current parameters: a packed
    /// output matrix is multiplied as it is (the bridge's kernel on the CPU), which for decoding
    /// reads an eighth of the bytes of its dense copy.
    pub fn head_logits(&self, h: &Array) -> mlx::Result<Array> {
        let p = &self.params.values;
        match self.head_matrix() {
            (w, Some(q)) if q.cpu_kernel => quantized_matmul_cpu(h, &p[w], &p[q.scales], &p[q.biases], true, q.group, q.bits),
            (w, None) if p[w].dtype() == Dtype::Bfloat16 && h.dtype() == Dtype::Float32 => mlx::bf16mm::matmul_cpu(h, &p[w], true),
            _ => h.matmul(&self.head_weight(p)?.swapaxes(-1, -2)?),
        }
    }

    /// Logits (B, L, V) for int32 ids (B, L), with the current parameters.
    pub fn logits(&self, ids: &Array) -> Result<Array> {
        let h = self.hidden(&self.params.values, ids, Mode::default())?;
        Ok(self.head_logits(&h)?)
    }

    /// Add LoRA (rank `rank`, absolute `scale`, `dropout`) to the linear layers named by `keys`
    /// (e.g. `self_attn.q_proj`) in the last `num_layers` blocks (-1 or more than the model has:
    /// all). lora_a ~ U(-1/sqrt(in), 1/sqrt(in)) (in, r), lora_b = 0 (r, out), both f32, like
    /// mlx-lm. The new parameters become the trainable set.
    pub fn apply_lora(&mut self, num_layers: i32, keys: &[String], rank: usize, scale: f32, dropout: f32, seed: u64) -> Result<()> {
        let n = self.blocks.len();
        let first = if num_layers < 0 || num_layers as usize >= n { 0 } else { n - num_layers as usize };
        let mut slots = Vec::new();
        for key in keys {
            let k = LINEAR_KEYS.iter().position(|x| x == key).ok_or_else(|| {
                crate::Error::Args(format!("LoRA key {key:?} is not a linear layer of a block (use {})", LINEAR_KEYS.join(", ")))
            })?;
            slots.push(k);
        }
        let mut trainable = Vec::new();
        for (l, block) in self.blocks.iter_mut().enumerate().skip(first) {
            for &k in &slots {
                let lin = &block.spec.lin[k];
                if lin.lora.is_some() {
                    continue;
                }
                let bp: Vec<Array> = block.ix.iter().map(|&i| self.params.values[i].clone()).collect();
                let input = lin.in_dims(&bp);
                let output = bp[lin.w].dim(0);
                let bound = 1.0 / (input as f32).sqrt();
                let slot = (l * 16 + k) as u64;
                let key = mlx::random::key(seed.wrapping_mul(1_000_003).wrapping_add(slot))?;
                let a = mlx::random::uniform(-bound, bound, &[input, rank as i32], Dtype::Float32, Some(&key))?;
                let b = mlx::zeros(&[rank as i32, output], Dtype::Float32)?;
                let prefix = format!("model.layers.{l}.{}", LINEAR_KEYS[k]);
                let ga = self.params.push(format!("{prefix}.lora_a"), a);
                let gb = self.params.push(format!("{prefix}.lora_b"), b);
                block.ix.push(ga);
                block.ix.push(gb);
                let la = block.ix.len() - 2;
                block.spec.lin[k].lora = Some(LoraSpec { a: la, b: la + 1, scale, dropout, slot });
                trainable.extend([ga, gb]);
            }
        }
        mlx::eval(trainable.iter().map(|&i| &self.params.values[i]))?;
        self.trainable = trainable;
        Ok(())
    }

    /// Multiply the frozen dense weights of every block's linear layers and the output matrix in
    /// bfloat16 on the CPU (`mlx::bf16mm`: AVX-512 BF16, the activations rounded to bf16 in the
    /// products, sums in f32): those weights are stored as bf16 (exactly, for a model shipped in
    /// bf16; rounded otherwise), halving their memory, and their products run at about twice
    /// sgemm's rate. Quantized layers stay packed, their kernel multiplying its dequantized tiles
    /// in bf16 (and a quantized output matrix is dequantized to bf16 for the loss). Trainable
    /// weights are left as they are. Returns how many matrices changed. An error on a GPU, on a
    /// CPU without AVX-512 BF16, or when the compute dtype is not f32.
    pub fn multiply_in_bf16(&mut self) -> Result<usize> {
        let refuse = |why: &str| Err(crate::Error::Args(format!("bf16 matmul: {why}")));
        if mlx::device::default_device()?.is_gpu() {
            return refuse("it is for the CPU; on a GPU set dtype = \"bfloat16\" instead");
        }
        if !mlx::bf16mm::is_available()? {
            return refuse("this CPU lacks AVX-512 BF16 (or BRAIN_MLX_NO_BF16_GEMM=1); train without it");
        }
        if self.dtype != Dtype::Float32 {
            return refuse("it needs the f32 compute dtype (the CPU's default)");
        }
        let mut changed = 0;
        for i in self.bf16_candidates() {
            if !self.trainable.contains(&i) && self.params.values[i].dtype() != Dtype::Bfloat16 {
                // One at a time, so the f32 copy is freed before the next is converted: the peak
                // stays the f32 model's, not one and a half times it.
                let b = self.params.values[i].as_type(Dtype::Bfloat16)?;
                b.eval()?;
                self.params.values[i] = b;
                changed += 1;
            }
        }
        // Quantized layers stay packed; their kernel multiplies its dequantized tiles in bf16. Their
        // weights are frozen (packed weights have no gradient).
        let mut quantized = 0;
        for q in self.blocks.iter_mut().flat_map(|b| b.spec.lin.iter_mut()).filter_map(|l| l.q.as_mut()) {
            if q.cpu_kernel && !q.bf16 {
                q.bf16 = true;
                quantized += 1;
            }
        }
        if matches!(self.head_matrix(), (_, Some(_))) && !self.head_dense_bf16 {
            self.head_dense.take();
            self.head_dense_bf16 = true;
            quantized += 1;
        }
        Ok(changed + quantized)
    }

    /// Whether [`Model::multiply_in_bf16`] is the default for `work`: on a CPU with AVX-512 BF16,
    /// for a model stored in bf16 computed in f32. Its weights are then exact in bf16 (a packed
    /// model's tiles round as a GPU's bf16 kernels round them) and only the activations round in
    /// the products, sums staying f32 — finer than a GPU's bf16 training of the same model.
    /// Decoding a dense model reads each weight once per token, so 2 bytes instead of 4 win on
    /// every such CPU; tiled products (training, a quantized model's prompt) only where they outrun
    /// sgemm ([`mlx::bf16mm::tiles_outrun_f32`]: about twice its rate on AMD's Zen 4, slower on
    /// Intel's Sapphire Rapids). A model stored in f32 or f16 keeps exact f32 products unless asked.
    pub fn bf16_matmul_by_default(&self, work: Work) -> Result<bool> {
        if self.stored != Dtype::Bfloat16 || !self.can_multiply_in_bf16()? {
            return Ok(false);
        }
        Ok(match work {
            // A quantized model decodes through its integer row kernels either way; bf16 would
            // only change its prompt's tiles (1.5x slower on Sapphire Rapids).
            Work::Decoding if !self.is_quantized() => true,
            _ => mlx::bf16mm::tiles_outrun_f32()?,
        })
    }

    /// Whether [`Model::multiply_in_bf16`] can run: f32 compute on a CPU with AVX-512 BF16.
    pub fn can_multiply_in_bf16(&self) -> Result<bool> {
        Ok(self.dtype == Dtype::Float32 && !mlx::device::default_device()?.is_gpu() && mlx::bf16mm::is_available()?)
    }

    /// `asked` (`bf16_matmul`: Some(true) insists, refusing where it cannot; Some(false) keeps
    /// f32 products; None: [`Model::bf16_matmul_by_default`] for `work`) applied with
    /// [`Model::multiply_in_bf16`]. Returns the matrices now multiplied in bf16.
    pub fn use_bf16_matmul(&mut self, asked: Option<bool>, work: Work) -> Result<usize> {
        let on = match asked {
            Some(on) => on,
            None => self.bf16_matmul_by_default(work)?,
        };
        if !on {
            return Ok(0);
        }
        let n = self.multiply_in_bf16()?;
        let why = if asked.is_some() { "as asked" } else { "the model is stored in bf16; --no-bf16-matmul for f32 products" };
        tracing::info!("{n} frozen weight matrices multiplied in bf16 ({why})");
        Ok(n)
    }

    /// Parameter indices of the dense matrices [`Model::multiply_in_bf16`] may keep in bf16: every
    /// block's linear weights and the output matrix (the fused cross-entropy multiplies it in
    /// bf16 too; a tied embedding then looks its rows up in bf16 and widens them).
    fn bf16_candidates(&self) -> Vec<usize> {
        let mut ix: Vec<usize> = self.blocks.iter().flat_map(|b| b.spec.lin.iter().filter(|l| l.q.is_none()).map(|l| b.ix[l.w])).collect();
        if let (w, None) = self.head_matrix() {
            ix.push(w);
        }
        ix
    }

    /// How many matrices [`Model::multiply_in_bf16`] has multiplied in bf16 under f32 activations.
    pub fn bf16_matrices(&self) -> usize {
        if self.dtype != Dtype::Float32 {
            return 0;
        }
        let dense = self.bf16_candidates().into_iter().filter(|&i| self.params.values[i].dtype() == Dtype::Bfloat16).count();
        let quantized = self.blocks.iter().flat_map(|b| b.spec.lin.iter()).filter(|l| l.q.is_some_and(|q| q.cpu_kernel && q.bf16)).count();
        dense + quantized + self.head_dense_bf16 as usize
    }

    /// Make every parameter of the last `num_layers` blocks trainable (full fine-tuning; dense
    /// models only). Trainable weights are kept in f32.
    pub fn full_fine_tune(&mut self, num_layers: i32) -> Result<()> {
        if self.is_quantized() {
            return Err(crate::Error::Args("full fine-tuning needs a dense (not quantized) model; use LoRA".into()));
        }
        let n = self.blocks.len();
        let first = if num_layers < 0 || num_layers as usize >= n { 0 } else { n - num_layers as usize };
        let mut t = Vec::new();
        for b in &self.blocks[first..] {
            for &i in &b.ix {
                self.params.values[i] = self.params.values[i].as_type(Dtype::Float32)?;
                t.push(i);
            }
        }
        self.trainable = t;
        Ok(())
    }

    /// (name, value) of the trainable parameters.
    pub fn trainable_params(&self) -> Vec<(&str, &Array)> {
        self.trainable.iter().map(|&i| (self.params.names[i].as_str(), &self.params.values[i])).collect()
    }

    /// Parameter values with `trainable` substituted at the trainable indices.
    pub fn with_trainable(&self, trainable: &[Array]) -> Vec<Array> {
        let mut p = self.params.values.clone();
        for (k, &i) in self.trainable.iter().enumerate() {
            p[i] = trainable[k].clone();
        }
        p
    }

    /// Store new values of the trainable parameters.
    pub fn set_trainable(&mut self, values: Vec<Array>) {
        for (k, v) in values.into_iter().enumerate() {
            self.params.values[self.trainable[k]] = v;
        }
    }

    /// Total parameter count (quantized weights counted unpacked).
    pub fn parameter_count(&self) -> usize {
        let mut n = 0;
        for (name, v) in self.params.names.iter().zip(&self.params.values) {
            if name.ends_with(".scales") || name.ends_with(".biases") {
                continue;
            }
            n += if v.dtype() == Dtype::Uint32 { v.size() * 32 / self.bits_of(name) } else { v.size() };
        }
        n
    }

    fn bits_of(&self, name: &str) -> usize {
        let prefix = name.trim_end_matches(".weight");
        self.config.quantization.as_ref().map(|q| q.for_layer(prefix).1 as usize).unwrap_or(4)
    }
}
