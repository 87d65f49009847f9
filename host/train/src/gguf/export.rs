//! A dense model (what `brain fuse` writes, or any Hugging Face-layout directory or GGUF file) as a
//! GGUF file that llama.cpp, Ollama and LM Studio run: `llama` (Llama 2/3.x, SmolLM, Mistral-style),
//! `qwen2` and `qwen3`, in f16, q8_0 or q4_0.
//!
//! What llama.cpp's own converter (`convert_hf_to_gguf.py`) does, and so does this:
//! - tensor names GGUF's (`blk.N.attn_q.weight`, …), the llama architecture's q/k rows permuted
//!   into the interleaved rotary layout its kernels expect;
//! - norms, biases and rotary factors stay f32; the token embedding and output matrix stay f16
//!   (q8_0 in the quantized types: they are the tensors quantization hurts most); a matrix whose
//!   rows are not whole 32-value blocks stays f16;
//! - Llama 3.1's `rope_scaling` becomes the `rope_freqs.weight` factors, linear scaling the
//!   `rope.scaling.*` keys;
//! - the tokenizer as `tokenizer.ggml.model = gpt2` (byte-level BPE) with the family's `pre` name,
//!   every token in id order (rows the embedding has beyond the tokenizer as unused `[PADn]`),
//!   token types (control for special added tokens, user-defined for other added ones), merges,
//!   special ids and the model's own chat template.
//!
//! The file reads back through [`crate::source`], so `brain generate --model out.gguf` runs it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mlx::{Array, Dtype};
use serde::Serialize;

use super::{GgmlType, GgufWriter, Value};
use crate::config::ModelConfig;
use crate::error::{model_err, Error, Result};
use crate::models::blocks::Rope;
use crate::source::gguf::{gguf_name, pre_name, ROPE_FREQS};
use crate::tokenizer::Tokenizer;

/// The tensor types a GGUF export writes (mlx-lm's `--gguf-type` names, plus the two it lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GgufType {
    F16,
    Q8_0,
    Q4_0,
}

impl std::str::FromStr for GgufType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(GgufType::F16),
            "q8_0" => Ok(GgufType::Q8_0),
            "q4_0" => Ok(GgufType::Q4_0),
            other => Err(Error::Args(format!("GGUF type {other:?} is not supported (f16, q8_0, q4_0)"))),
        }
    }
}

impl GgufType {
    pub fn name(self) -> &'static str {
        match self {
            GgufType::F16 => "f16",
            GgufType::Q8_0 => "q8_0",
            GgufType::Q4_0 => "q4_0",
        }
    }

    /// mlx-lm's default file name, `ggml-model-<type>.gguf`.
    pub fn default_file_name(self) -> String {
        format!("ggml-model-{}.gguf", self.name())
    }

    /// `general.file_type`: llama.cpp's `llama_ftype` (MOSTLY_F16 = 1, MOSTLY_Q4_0 = 2, MOSTLY_Q8_0 = 7).
    fn file_type(self) -> u32 {
        match self {
            GgufType::F16 => 1,
            GgufType::Q4_0 => 2,
            GgufType::Q8_0 => 7,
        }
    }

    /// The type of the projection matrices.
    fn matrix(self) -> GgmlType {
        match self {
            GgufType::F16 => GgmlType::F16,
            GgufType::Q8_0 => GgmlType::Q8_0,
            GgufType::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// The type of the token embedding and the output matrix.
    fn embedding(self) -> GgmlType {
        match self {
            GgufType::F16 => GgmlType::F16,
            GgufType::Q8_0 | GgufType::Q4_0 => GgmlType::Q8_0,
        }
    }
}

/// What [`export_gguf`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct GgufReport {
    pub path: PathBuf,
    pub gguf_type: GgufType,
    /// `general.architecture`.
    pub architecture: String,
    /// `tokenizer.ggml.pre`.
    pub pre_tokenizer: String,
    pub tensors: usize,
    /// Tensors written in each GGUF type (`F32`, `F16`, `Q8_0`, …).
    pub tensor_types: BTreeMap<String, usize>,
    pub bytes: u64,
}

/// The GGUF architecture of a Hugging Face `model_type`.
fn architecture(model_type: &str) -> Option<&'static str> {
    Some(match model_type {
        "llama" | "mistral" => "llama",
        "qwen2" => "qwen2",
        "qwen3" => "qwen3",
        _ => return None,
    })
}

/// Writes the model at `model` as a GGUF file of `ty` at `out`; `name` is `general.name`
/// (default: the model folder's name).
pub fn export_gguf(model: &Path, out: &Path, ty: GgufType, name: Option<&str>) -> Result<GgufReport> {
    let (config, weights) = crate::source::load_weights(model)?;
    let arch = architecture(&config.model_type).ok_or_else(|| {
        model_err(model, format!("model_type {:?} cannot be written as GGUF (llama, mistral, qwen2, qwen3 can)", config.model_type))
    })?;
    if let Some(q) = weights.keys().find(|k| k.ends_with(".scales")) {
        return Err(model_err(
            model,
            format!("{q}: the weights are quantized; a GGUF export needs dense weights (fuse with --dequantize first)"),
        ));
    }
    let tok = crate::source::load_tokenizer(model)?;
    let mut w = GgufWriter::new();
    let default_name = model.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    w.set("general.architecture", arch)
        .set("general.name", name.map(str::to_string).unwrap_or(default_name))
        .set("general.file_type", ty.file_type())
        .set("general.quantization_version", 2u32);
    let rope_factors = hyper_parameters(&mut w, arch, &config, model)?;
    let pre = tokenizer_metadata(&mut w, &tok, config.vocab_size, model)?;

    let mut tensor_types: BTreeMap<String, usize> = BTreeMap::new();
    let mut add = |w: &mut GgufWriter, name: &str, shape: &[usize], values: &[f32], t: GgmlType| -> Result<()> {
        w.add_f32(name, shape, values, t)?;
        *tensor_types.entry(t.to_string()).or_default() += 1;
        Ok(())
    };
    let mut names: Vec<(&String, String)> = Vec::new();
    for hf in weights.keys() {
        let g = gguf_name(hf).ok_or_else(|| model_err(model, format!("weight {hf} has no GGUF tensor name (is it a {arch} model?)")))?;
        names.push((hf, g));
    }
    // llama.cpp's order: embedding, blocks in order, then the head.
    names.sort_by_key(|(_, g)| (block_index(g), g.clone()));
    for (hf, g) in &names {
        let a = &weights[*hf];
        let shape: Vec<usize> = a.shape().iter().map(|&d| d as usize).collect();
        let permute_heads = match (arch, hf.rsplit_once('.').map(|(p, _)| p)) {
            ("llama", Some(p)) if p.ends_with("self_attn.q_proj") => Some(config.num_attention_heads),
            ("llama", Some(p)) if p.ends_with("self_attn.k_proj") => Some(config.kv_heads()),
            _ => None,
        };
        let a = match permute_heads {
            Some(h) => permute_rows(a, h as i32).map_err(|e| model_err(model, format!("{hf}: {e}")))?,
            None => a.clone(),
        };
        let values = a.as_type(Dtype::Float32)?.to_vec::<f32>()?;
        let t = if shape.len() < 2 || hf.as_str() == ROPE_FREQS {
            GgmlType::F32
        } else {
            let t = if g.starts_with("token_embd.") || g.starts_with("output.") { ty.embedding() } else { ty.matrix() };
            let whole_blocks = shape.last().is_some_and(|c| c % super::quant::QK == 0);
            if t.block().is_some_and(|(per, _)| per > 1) && !whole_blocks {
                GgmlType::F16
            } else {
                t
            }
        };
        add(&mut w, g, &shape, &values, t)?;
    }
    if let Some(f) = rope_factors.filter(|_| !weights.contains_key(ROPE_FREQS)) {
        add(&mut w, "rope_freqs.weight", &[f.len()], &f, GgmlType::F32)?;
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
    }
    w.write(out)?;
    let bytes = std::fs::metadata(out).map_err(crate::error::io(out))?.len();
    Ok(GgufReport {
        path: out.to_path_buf(),
        gguf_type: ty,
        architecture: arch.into(),
        pre_tokenizer: pre.into(),
        tensors: tensor_types.values().sum(),
        tensor_types,
        bytes,
    })
}

/// The block a tensor belongs to, for ordering: the embedding first, blocks by number, then the rest.
fn block_index(gguf: &str) -> (u8, usize) {
    if gguf.starts_with("token_embd.") {
        return (0, 0);
    }
    match gguf.strip_prefix("blk.").and_then(|r| r.split_once('.')).and_then(|(n, _)| n.parse().ok()) {
        Some(n) => (1, n),
        None => (2, 0),
    }
}

/// The `{arch}.*` keys; returns Llama 3.1's rotary factors when the config asks for them.
fn hyper_parameters(w: &mut GgufWriter, arch: &str, c: &ModelConfig, model: &Path) -> Result<Option<Vec<f32>>> {
    let key = |k: &str| format!("{arch}.{k}");
    let hd = c.head_dim();
    w.set(&key("context_length"), c.max_position_embeddings as u32)
        .set(&key("embedding_length"), c.hidden_size as u32)
        .set(&key("feed_forward_length"), c.intermediate_size as u32)
        .set(&key("block_count"), c.num_hidden_layers as u32)
        .set(&key("attention.head_count"), c.num_attention_heads as u32)
        .set(&key("attention.head_count_kv"), c.kv_heads() as u32)
        .set(&key("attention.key_length"), hd as u32)
        .set(&key("attention.value_length"), hd as u32)
        .set(&key("rope.dimension_count"), hd as u32)
        .set(&key("rope.freq_base"), c.rope_theta)
        .set(&key("attention.layer_norm_rms_epsilon"), c.rms_norm_eps)
        .set(&key("vocab_size"), c.vocab_size as u32);
    let scaling = c.rope_scaling.as_ref().filter(|s| !s.is_null());
    let kind = scaling.and_then(|s| s.get("rope_type").or_else(|| s.get("type"))).and_then(|v| v.as_str());
    match kind {
        None | Some("default") => Ok(None),
        Some("linear") => {
            let factor = scaling.and_then(|s| s.get("factor")).and_then(|v| v.as_f64()).ok_or_else(|| model_err(model, "rope_scaling linear needs \"factor\""))?;
            w.set(&key("rope.scaling.type"), "linear").set(&key("rope.scaling.factor"), factor as f32);
            Ok(None)
        }
        Some("llama3") => {
            // The factors are the corrected periods over the plain ones (llama.cpp divides the
            // frequencies by them).
            let Rope::Periods(p) = Rope::from_config(c, None).map_err(|e| model_err(model, e))? else {
                return Err(model_err(model, "rope_scaling llama3 gave no periods"));
            };
            let corrected = p.to_vec::<f32>()?;
            let plain = Rope::periods(c.rope_theta, hd, None);
            Ok(Some(corrected.iter().zip(&plain).map(|(c, p)| c / p).collect()))
        }
        Some(other) => Err(model_err(model, format!("rope_scaling {other:?} cannot be written as GGUF (linear and llama3 can)"))),
    }
}

/// The `tokenizer.*` keys; returns the `pre` name written.
fn tokenizer_metadata(w: &mut GgufWriter, tok: &Tokenizer, rows: usize, model: &Path) -> Result<&'static str> {
    const NORMAL: i32 = 1;
    const CONTROL: i32 = 3;
    const USER_DEFINED: i32 = 4;
    const UNUSED: i32 = 5;
    let tk = tok.inner();
    let json: serde_json::Value = serde_json::from_str(&tk.to_string(false).map_err(|e| model_err(model, e.to_string()))?)
        .map_err(|e| model_err(model, e))?;
    let pre = pre_name(&json).ok_or_else(|| {
        model_err(
            model,
            "the tokenizer's pre-tokenizer is none of the families llama.cpp knows by name (GPT-2, SmolLM, Llama 3, Qwen2), \
             so a GGUF file could not split text as the model was trained",
        )
    })?;
    let vocab: HashMap<String, u32> = tk.get_vocab(true);
    let size = vocab.values().max().map_or(0, |m| *m as usize + 1);
    if size > rows {
        return Err(model_err(model, format!("the tokenizer has {size} tokens but the embedding only {rows} rows")));
    }
    let mut tokens: Vec<Option<String>> = vec![None; rows];
    for (t, id) in vocab {
        tokens[id as usize] = Some(t);
    }
    let added = tk.get_added_tokens_decoder();
    let types: Vec<i32> = (0..rows)
        .map(|i| match (&tokens[i], added.get(&(i as u32))) {
            (None, _) => UNUSED,
            (_, Some(a)) if a.special => CONTROL,
            (_, Some(_)) => USER_DEFINED,
            _ => NORMAL,
        })
        .collect();
    let tokens: Vec<String> = tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]"))).collect();

    let merges: Vec<String> = json
        .pointer("/model/merges")
        .and_then(|m| m.as_array())
        .ok_or_else(|| model_err(model, "the tokenizer is not BPE with merges (GGUF export writes byte-level BPE tokenizers)"))?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(p) => Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?)),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| model_err(model, "a merge of the tokenizer is neither \"a b\" nor [a, b]"))?;

    w.set("tokenizer.ggml.model", "gpt2")
        .set("tokenizer.ggml.pre", pre)
        .set("tokenizer.ggml.tokens", Value::strings(tokens))
        .set("tokenizer.ggml.token_type", Value::i32s(types))
        .set("tokenizer.ggml.merges", Value::strings(merges))
        .set("tokenizer.ggml.eos_token_id", tok.eos_id)
        .set("tokenizer.ggml.padding_token_id", tok.pad_id)
        .set("tokenizer.ggml.add_bos_token", tok.add_bos_token())
        .set("tokenizer.chat_template", tok.chat_template().source());
    if let Some(b) = tok.bos_id {
        w.set("tokenizer.ggml.bos_token_id", b);
    }
    // The template's end-of-turn token, when it is not eos, is where llama.cpp stops a turn.
    if let Some(eot) = tok.end_of_turn().and_then(|t| tk.token_to_id(t)).filter(|id| *id != tok.eos_id) {
        w.set("tokenizer.ggml.eot_token_id", eot);
    }
    Ok(pre)
}

/// llama.cpp's q/k row order for the llama architecture: within each of `heads` heads, rotary pair
/// (i, i + d/2) of Hugging Face's rotate-half layout becomes rows (2i, 2i + 1). The inverse of
/// [`crate::source::gguf::unpermute_rows`].
pub fn permute_rows(a: &Array, heads: i32) -> std::result::Result<Array, String> {
    let shape = a.shape();
    let rows = *shape.first().ok_or("a scalar has no rows")?;
    if heads <= 0 || rows % (2 * heads) != 0 {
        return Err(format!("{rows} rows do not split into {heads} heads of rotary pairs"));
    }
    let mut split = vec![heads, 2, rows / heads / 2];
    split.extend_from_slice(&shape[1..]);
    let go = || -> mlx::Result<Array> { a.reshape(&split)?.swapaxes(1, 2)?.reshape(&shape) };
    go().map_err(|e| e.to_string())
}
