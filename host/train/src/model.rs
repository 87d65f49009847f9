//! Qwen2 (and the Llama layout) on MLX: q/k/v with bias, o without, grouped-query attention,
//! RoPE, RMSNorm, SwiGLU MLP, tied or untied head; dense (bf16/f16/f32) or mlx-community
//! quantized weights (packed uint32 + scales + biases, `quantized_matmul`).
//!
//! Parameters live in one flat [`Params`] list under their Hugging Face names; layers refer to
//! them by index, so the trainer can swap in the traced trainable arrays inside `value_and_grad`
//! and a transformer block can be wrapped in `mlx::checkpoint` with its parameters as inputs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx::fast::{self, SdpaMask};
use mlx::quantized::{dequantize, quantized_matmul};
use mlx::{Array, Dtype};

use crate::cache::{KvCache, LayerKv};
use crate::config::ModelConfig;
use crate::error::{io, model_err, Result};

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

/// Affine quantization of one matrix: indices of scales and biases, group size, bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QSpec {
    pub scales: usize,
    pub biases: usize,
    pub group: i32,
    pub bits: i32,
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

/// Per-call options: the dropout seed (training with dropout) or none (evaluation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    pub dropout_seed: Option<u64>,
}

impl LinearSpec {
    fn forward(&self, p: &[Array], x: &Array, mode: Mode) -> mlx::Result<Array> {
        let mut y = match (self.q, self.bias) {
            (Some(q), bias) => {
                let y = quantized_matmul(x, &p[self.w], &p[q.scales], Some(&p[q.biases]), true, q.group, q.bits)?;
                match bias {
                    Some(b) => y.add(&p[b])?,
                    None => y,
                }
            }
            // addmm: the bias is the GEMM's accumulator (one pass less than matmul + add).
            (None, Some(b)) => mlx::addmm(&p[b], x, &p[self.w].t_last2()?, 1.0, 1.0)?,
            (None, None) => x.matmul(&p[self.w].t_last2()?)?,
        };
        if let Some(l) = self.lora {
            let xd = match mode.dropout_seed {
                Some(seed) if l.dropout > 0.0 => {
                    let key = mlx::random::key(seed.wrapping_mul(0x9E37_79B9).wrapping_add(l.slot))?;
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
    fn in_dims(&self, p: &[Array]) -> i32 {
        let cols = p[self.w].dim(-1);
        match self.q {
            Some(q) => cols * 32 / q.bits,
            None => cols,
        }
    }
}

trait T2 {
    fn t_last2(&self) -> mlx::Result<Array>;
}
impl T2 for Array {
    fn t_last2(&self) -> mlx::Result<Array> {
        self.swapaxes(-1, -2)
    }
}

/// Shape constants a block needs (Copy, so checkpoint closures can own them).
#[derive(Debug, Clone, Copy)]
struct Dims {
    heads: i32,
    kv_heads: i32,
    head_dim: i32,
    eps: f32,
    theta: f32,
}

/// One transformer block; linear indices are local to the block's own parameter list.
#[derive(Debug, Clone)]
struct BlockSpec {
    input_norm: usize,
    post_norm: usize,
    /// q, k, v, o, gate, up, down
    lin: [LinearSpec; 7],
}

/// The module keys of a block, in `BlockSpec::lin` order (mlx-lm's LoRA `keys`).
pub const LINEAR_KEYS: [&str; 7] =
    ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

/// `cache`: incremental decoding — positions start at the cache's offset and this call's keys
/// and values are appended to it (attention then covers every cached position).
fn block_forward(s: &BlockSpec, d: Dims, h: &Array, p: &[Array], mode: Mode, cache: Option<&mut LayerKv>) -> mlx::Result<Array> {
    let sh = h.shape();
    let (b, l) = (sh[0], sh[1]);
    let x = fast::rms_norm(h, Some(&p[s.input_norm]), d.eps)?;
    let split_heads = |t: Array, n: i32| t.reshape(&[b, l, n, d.head_dim])?.transpose(&[0, 2, 1, 3]);
    let q = split_heads(s.lin[0].forward(p, &x, mode)?, d.heads)?;
    let k = split_heads(s.lin[1].forward(p, &x, mode)?, d.kv_heads)?;
    let v = split_heads(s.lin[2].forward(p, &x, mode)?, d.kv_heads)?;
    let offset = cache.as_ref().map_or(0, |c| c.offset());
    let q = fast::rope(&q, d.head_dim, false, d.theta, 1.0, offset)?;
    let k = fast::rope(&k, d.head_dim, false, d.theta, 1.0, offset)?;
    let (k, v) = match cache {
        Some(c) => c.update(&k, &v)?,
        None => (k, v),
    };
    let scale = (d.head_dim as f32).powf(-0.5);
    let o = fast::scaled_dot_product_attention(&q, &k, &v, scale, SdpaMask::Causal)?;
    let o = o.transpose(&[0, 2, 1, 3])?.reshape(&[b, l, d.heads * d.head_dim])?;
    let h = h.add(&s.lin[3].forward(p, &o, mode)?)?;
    let x = fast::rms_norm(&h, Some(&p[s.post_norm]), d.eps)?;
    let g = s.lin[4].forward(p, &x, mode)?;
    let u = s.lin[5].forward(p, &x, mode)?;
    let m = s.lin[6].forward(p, &g.silu()?.mul(&u)?, mode)?;
    h.add(&m)
}

/// Moves weights out of the loaded map into [`Params`], casting floats to the compute dtype.
struct Loader<'a> {
    raw: &'a mut BTreeMap<String, Array>,
    dir: &'a Path,
    dtype: Dtype,
    quant: Option<&'a crate::config::Quantization>,
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
            Some(QSpec { scales, biases, group, bits })
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

/// A loaded Qwen2 model.
pub struct Qwen2 {
    pub config: ModelConfig,
    pub params: Params,
    /// Compute dtype of activations and dense weights.
    pub dtype: Dtype,
    /// Indices of the trainable parameters (LoRA a/b, or whole layers for full fine-tuning).
    pub trainable: Vec<usize>,
    /// Recompute each block's activations in the backward pass instead of keeping them.
    pub grad_checkpoint: bool,
    embed: usize,
    embed_q: Option<QSpec>,
    blocks: Vec<Block>,
    norm: usize,
    head: Option<LinearSpec>,
    /// Dense output projection (V, H) when the stored one is quantized (dequantized once).
    head_dense: Option<Array>,
    dims: Dims,
}

/// Weight files of a model directory: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`, or every `*.safetensors` (mlx-community layout).
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
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

/// Default compute dtype: f32 on the CPU (bf16 matmuls there are slow and inexact), the stored
/// floating dtype on a GPU.
pub fn default_dtype(stored: Dtype) -> Result<Dtype> {
    if mlx::device::default_device()?.is_gpu() && stored.is_float() {
        Ok(stored)
    } else {
        Ok(Dtype::Float32)
    }
}

impl Qwen2 {
    /// Load a Hugging Face / mlx-community directory. `dtype`: compute dtype (None: [`default_dtype`]).
    pub fn load(dir: &Path, dtype: Option<Dtype>) -> Result<Self> {
        let config = ModelConfig::load(dir)?;
        let mut raw: BTreeMap<String, Array> = BTreeMap::new();
        for f in weight_files(dir)? {
            let st = mlx::io::load_safetensors(&f)?;
            raw.extend(st.tensors);
        }
        raw.retain(|k, _| !k.contains("rotary_emb.inv_freq"));
        if config.tie_word_embeddings {
            raw.retain(|k, _| !k.starts_with("lm_head."));
        }
        let stored = raw.get("model.embed_tokens.weight").map(|a| a.dtype()).unwrap_or(Dtype::Float32);
        let stored = if stored.is_float() {
            stored
        } else {
            raw.get("model.embed_tokens.scales").map(|a| a.dtype()).unwrap_or(Dtype::Float32)
        };
        let dtype = match dtype {
            Some(d) => d,
            None => default_dtype(stored)?,
        };
        Self::from_weights(dir, config, raw, dtype)
    }

    /// Build from named weights (Hugging Face names).
    pub fn from_weights(dir: &Path, config: ModelConfig, mut raw: BTreeMap<String, Array>, dtype: Dtype) -> Result<Self> {
        let mut params = Params::default();
        let quant = config.quantization.clone();
        let mut ld = Loader { raw: &mut raw, dir, dtype, quant: quant.as_ref() };
        let e = ld.linear("model.embed_tokens", false, &mut params)?;
        let mut blocks = Vec::new();
        let attn_bias = config.qkv_bias();
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let start = params.len();
            let input_norm = ld.take(&format!("{p}.input_layernorm.weight"), &mut params)? - start;
            let post_norm = ld.take(&format!("{p}.post_attention_layernorm.weight"), &mut params)? - start;
            let mut lin = Vec::new();
            for (k, key) in LINEAR_KEYS.iter().enumerate() {
                let prefix = format!("{p}.{key}");
                let mut s = ld.linear(&prefix, attn_bias && k < 3, &mut params)?;
                s.w -= start;
                s.bias = s.bias.map(|b| b - start);
                s.q = s.q.map(|q| QSpec { scales: q.scales - start, biases: q.biases - start, ..q });
                lin.push(s);
            }
            let ix = (start..params.len()).collect();
            let lin: [LinearSpec; 7] = lin.try_into().expect("seven linear layers");
            blocks.push(Block { spec: BlockSpec { input_norm, post_norm, lin }, ix });
        }
        let norm = ld.take("model.norm.weight", &mut params)?;
        let head = if config.tie_word_embeddings { None } else { Some(ld.linear("lm_head", false, &mut params)?) };
        if let Some(extra) = raw.keys().next() {
            tracing::warn!("{}: ignoring unexpected weight {extra} ({} unused)", dir.display(), raw.len());
        }
        let dims = Dims {
            heads: config.num_attention_heads as i32,
            kv_heads: config.kv_heads() as i32,
            head_dim: config.head_dim() as i32,
            eps: config.rms_norm_eps,
            theta: config.rope_theta,
        };
        let mut m = Qwen2 {
            config,
            params,
            dtype,
            trainable: Vec::new(),
            grad_checkpoint: false,
            embed: e.w,
            embed_q: e.q,
            blocks,
            norm,
            head,
            head_dense: None,
            dims,
        };
        let hq = match &m.head {
            Some(h) => h.q.map(|q| (h.w, q)),
            None => m.embed_q.map(|q| (m.embed, q)),
        };
        if let Some((w, q)) = hq {
            let p = &m.params.values;
            m.head_dense = Some(dequantize(&p[w], &p[q.scales], Some(&p[q.biases]), q.group, q.bits)?.as_type(dtype)?);
        }
        mlx::eval(m.params.values.iter().chain(m.head_dense.iter()))?;
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
                let (spec, dims) = (b.spec.clone(), self.dims);
                let mut inputs: Vec<&Array> = vec![&h];
                inputs.extend(bp.iter());
                let out = mlx::checkpoint(move |xs: &[Array]| Ok(vec![block_forward(&spec, dims, &xs[0], &xs[1..], mode, None)?]), &inputs)?;
                out.into_iter().next().expect("one output")
            } else {
                block_forward(&b.spec, self.dims, &h, &bp, mode, None)?
            };
        }
        fast::rms_norm(&h, Some(&p[self.norm]), self.dims.eps)
    }

    /// [`Qwen2::hidden`] for incremental decoding with the current parameters: `ids` (B, L)
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
            h = block_forward(&b.spec, self.dims, &h, &bp, Mode::default(), Some(kv))?;
        }
        fast::rms_norm(&h, Some(&p[self.norm]), self.dims.eps)
    }

    /// The output projection (V, H) as a dense matrix (tied embedding or lm_head).
    pub fn head_weight(&self, p: &[Array]) -> Array {
        if let Some(d) = &self.head_dense {
            return d.clone();
        }
        match &self.head {
            Some(h) => p[h.w].clone(),
            None => p[self.embed].clone(),
        }
    }

    /// Logits (B, L, V) for int32 ids (B, L), with the current parameters.
    pub fn logits(&self, ids: &Array) -> Result<Array> {
        let p = &self.params.values;
        let h = self.hidden(p, ids, Mode::default())?;
        Ok(h.matmul(&self.head_weight(p).t_last2()?)?)
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
