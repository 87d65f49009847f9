//! Text generation (`brain generate`, `brain chat`): a base model plus adapters (or fused
//! weights), the KV cache, greedy or sampled decoding ([`crate::sampling`]), stopping at the
//! end-of-turn token (and eos), and truncation of looping output.
//!
//! [`Generator`] keeps the model loaded: `reply(history)` for a chat REPL (the KV cache of the
//! previous turn is reused for the shared prefix), `generate_tokens` for raw ids. [`generate`]
//! is the one-shot entry point with mlx-lm's argument names.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use mlx::{Array, Dtype};

use crate::adapters::{self, AdapterConfig, ADAPTER_FILE};
use crate::cache::KvCache;
use crate::error::{model_err, Error, Result};
use crate::models::{Mode, Model, Work};
use crate::sampling::{LoopDetector, Sampler, SamplingOptions};
use crate::tokenizer::{Message, Tokenizer, ENDOFTEXT};

/// Arguments of [`generate`] (names as mlx-lm's `generate`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateArgs {
    pub model: PathBuf,
    /// Adapter directories (ours or mlx-lm's). One is applied as LoRA; several are fused into
    /// the (dense) weights in order. Empty: the model as it is (e.g. fused weights).
    pub adapter_path: Vec<PathBuf>,
    pub prompt: String,
    pub system_prompt: Option<String>,
    /// Use the prompt as raw text, without the chat template.
    pub ignore_chat_template: bool,
    pub max_tokens: usize,
    pub temp: f32,
    pub top_p: f32,
    /// 0: off.
    pub top_k: usize,
    /// 0: off.
    pub min_p: f32,
    pub seed: u64,
    pub repetition_penalty: Option<f32>,
    pub repetition_context_size: usize,
    /// Stop and truncate when the output loops (see [`LoopDetector`]).
    pub stop_on_loop: bool,
    /// Compute dtype ("float32", "bfloat16", "float16"); default f32 on CPU, the model's on GPU.
    pub dtype: Option<String>,
}

impl Default for GenerateArgs {
    fn default() -> Self {
        let s = SamplingOptions::default();
        GenerateArgs {
            model: PathBuf::new(),
            adapter_path: Vec::new(),
            prompt: String::new(),
            system_prompt: None,
            ignore_chat_template: false,
            max_tokens: 256,
            temp: s.temp,
            top_p: s.top_p,
            top_k: s.top_k,
            min_p: s.min_p,
            seed: s.seed,
            repetition_penalty: s.repetition_penalty,
            repetition_context_size: s.repetition_context_size,
            stop_on_loop: true,
            dtype: None,
        }
    }
}

impl GenerateArgs {
    pub fn sampling(&self) -> SamplingOptions {
        SamplingOptions {
            temp: self.temp,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            repetition_context_size: self.repetition_context_size,
            seed: self.seed,
            logit_bias: Vec::new(),
        }
    }

    pub fn options(&self) -> GenOptions {
        GenOptions { max_tokens: self.max_tokens, sampling: self.sampling(), stop_on_loop: self.stop_on_loop }
    }

    /// The conversation the prompt stands for (system prompt, then the user's prompt).
    pub fn messages(&self) -> Vec<Message> {
        let mut m = Vec::new();
        if let Some(s) = &self.system_prompt {
            m.push(Message::new("system", s));
        }
        m.push(Message::new("user", &self.prompt));
        m
    }
}

/// Per-call generation options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenOptions {
    pub max_tokens: usize,
    pub sampling: SamplingOptions,
    pub stop_on_loop: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions { max_tokens: 256, sampling: SamplingOptions::default(), stop_on_loop: true }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-turn / eos token came.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The output looped; it was truncated after the first copy of the repeated unit.
    Repetition,
    /// The caller stopped it (a stop string, a client that went away).
    Cancelled,
}

/// The result of one generation (field names as mlx-lm's `GenerationResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated text (special tokens and the stop token left out).
    pub text: String,
    /// Generated token ids (without the stop token; after loop truncation).
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub generation_tokens: usize,
    pub finish_reason: FinishReason,
    /// Prompt tokens per second (prefill; only the tokens not already in the cache count).
    pub prompt_tps: f32,
    /// Generated tokens per second.
    pub generation_tps: f32,
    /// MLX's peak memory, GB.
    pub peak_memory: f32,
    /// Weight matrices multiplied in bf16 (a model stored in bf16 on a CPU with AVX-512 BF16).
    pub bf16_matrices: usize,
}

/// A loaded model and tokenizer for repeated generation.
pub struct Generator {
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// Tokens that end a reply: `<|im_end|>`, eos, `<|endoftext|>`.
    pub stop_tokens: Vec<u32>,
    pub loop_detector: LoopDetector,
    /// Decode with the KV cache (true) or recompute the whole sequence every token (tests).
    pub use_cache: bool,
    cache: KvCache,
    /// The tokens whose keys and values `cache` holds.
    cached: Vec<u32>,
}

/// Add an adapter's update to the model's dense weights: LoRA layers folded in
/// (`adapters::fold_lora`), or a full fine-tune's weights replacing the base's.
pub fn fuse_adapter(model: &mut Model, dir: &Path) -> Result<()> {
    let cfg = AdapterConfig::read(dir)?;
    let file = dir.join(ADAPTER_FILE);
    let st = mlx::io::load_safetensors(&file)?;
    match cfg.fine_tune_type.as_str() {
        "lora" => {
            if model.is_quantized() {
                return Err(model_err(dir, "several adapters are fused into the weights, which needs a dense (not quantized) model; use one adapter"));
            }
            let scale = cfg.lora(dir)?.scale;
            for layer in adapters::lora_layers(&st.tensors, &file)? {
                let wi = model.params.get(&format!("{}.weight", layer.prefix)).ok_or_else(|| model_err(&file, format!("{}: no such layer in the model", layer.prefix)))?;
                let w = &model.params.values[wi];
                model.params.values[wi] = adapters::fold_lora(w, &layer, scale, w.dtype(), &file)?;
            }
        }
        "full" => {
            for (name, v) in &st.tensors {
                let wi = model.params.get(name).ok_or_else(|| model_err(&file, format!("{name}: no such weight in the model")))?;
                model.params.values[wi] = adapters::full_weight(name, v, &model.params.values[wi], None, &file)?;
            }
        }
        other => return Err(model_err(dir, format!("fine_tune_type {other:?} is not supported (lora, full)"))),
    }
    Ok(())
}

/// Load a model with adapters: one is applied as LoRA (as in training), several are fused in order.
/// With the default dtype, a model stored in bf16 multiplies its weights in bf16 on a CPU with
/// AVX-512 BF16 as training does (`Model::bf16_matmul_by_default`): decoding then reads half the
/// bytes per token.
pub fn load_model(model: &Path, adapter_path: &[PathBuf], dtype: Option<Dtype>) -> Result<Model> {
    let mut m = Model::load(model, dtype)?;
    match adapter_path {
        [] => {}
        [one] => {
            adapters::load_adapters(&mut m, one)?;
        }
        many => {
            for a in many {
                fuse_adapter(&mut m, a)?;
            }
        }
    }
    if dtype.is_none() {
        m.use_bf16_matmul(None, Work::Decoding)?;
    }
    Ok(m)
}

impl Generator {
    /// Load `model` (+ adapters) and its tokenizer.
    pub fn load(model: &Path, adapter_path: &[PathBuf], dtype: Option<Dtype>) -> Result<Self> {
        let tokenizer = crate::source::load_tokenizer(model)?;
        let m = load_model(model, adapter_path, dtype)?;
        Ok(Self::new(m, tokenizer))
    }

    /// Wrap an already loaded model (e.g. right after training).
    pub fn new(model: Model, tokenizer: Tokenizer) -> Self {
        let mut stop_tokens = tokenizer.stop_ids().to_vec();
        if let Some(e) = tokenizer.inner().token_to_id(ENDOFTEXT) {
            stop_tokens.push(e);
        }
        stop_tokens.sort_unstable();
        stop_tokens.dedup();
        let cache = KvCache::new(model.num_layers());
        Generator { model, tokenizer, stop_tokens, loop_detector: LoopDetector::default(), use_cache: true, cache, cached: Vec::new() }
    }

    /// Prompt ids of a conversation: the chat template with the assistant's turn opened.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.tokenizer.encode(&self.tokenizer.render_chat(messages, true)?)
    }

    /// The assistant's reply to `history` (which ends with the user's turn). The caller appends
    /// the reply to the history for the next turn.
    pub fn reply(&mut self, history: &[Message], opts: &GenOptions) -> Result<Generation> {
        let ids = self.chat_prompt(history)?;
        self.generate_tokens(&ids, opts, &mut |_| {})
    }

    /// [`Generator::reply`], calling `on_text` with each new piece of text as it is generated.
    pub fn reply_stream(&mut self, history: &[Message], opts: &GenOptions, on_text: &mut dyn FnMut(&str)) -> Result<Generation> {
        let ids = self.chat_prompt(history)?;
        self.generate_tokens(&ids, opts, on_text)
    }

    /// Forget the cached prefix.
    pub fn reset(&mut self) {
        self.cache.clear();
        self.cached.clear();
    }

    /// Logits (V) of the last position after feeding `prompt` (uses and extends the cache).
    fn prefill(&mut self, prompt: &[u32]) -> Result<Array> {
        if !self.use_cache {
            return self.full_logits(prompt);
        }
        // Reuse the cached prefix (a chat's earlier turns); at least one token is fed.
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len() - 1);
        self.cache.truncate(common);
        self.cached.truncate(common);
        self.feed(&prompt[common..])
    }

    /// Feed tokens through the cache; logits of the last one.
    fn feed(&mut self, ids: &[u32]) -> Result<Array> {
        let arr = Array::from_slice(&ids.iter().map(|&t| t as i32).collect::<Vec<_>>(), &[1, ids.len() as i32])?;
        let h = self.model.hidden_cached(&arr, &mut self.cache)?;
        self.cached.extend_from_slice(ids);
        self.last_logits(&h)
    }

    /// Without the cache: the whole sequence again.
    fn full_logits(&self, ids: &[u32]) -> Result<Array> {
        let arr = Array::from_slice(&ids.iter().map(|&t| t as i32).collect::<Vec<_>>(), &[1, ids.len() as i32])?;
        let h = self.model.hidden(&self.model.params.values, &arr, Mode::default())?;
        self.last_logits(&h)
    }

    fn last_logits(&self, h: &Array) -> Result<Array> {
        let l = h.dim(1);
        let last = h.slice_axis(1, l - 1, l)?.reshape(&[1, -1])?;
        Ok(self.model.head_logits(&last)?.reshape(&[-1])?.as_type(Dtype::Float32)?)
    }

    /// Generate from prompt ids. `on_text` receives the text as it grows (pieces that do not end
    /// inside a multi-byte character).
    pub fn generate_tokens(&mut self, prompt: &[u32], opts: &GenOptions, on_text: &mut dyn FnMut(&str)) -> Result<Generation> {
        self.generate_until(prompt, opts, &mut |t| {
            on_text(t);
            true
        })
    }

    /// [`Generator::generate_tokens`] whose `on_text` may end generation by returning false
    /// (finish reason [`FinishReason::Cancelled`]): a stop string was seen, or nobody listens.
    pub fn generate_until(&mut self, prompt: &[u32], opts: &GenOptions, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::Args("the prompt is empty".into()));
        }
        let vocab = self.tokenizer.vocab_size();
        let t0 = Instant::now();
        let fresh = self.prefill_count(prompt);
        let mut logits = self.prefill(prompt)?;
        logits.eval()?;
        let prompt_time = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut sampler = Sampler::new(&opts.sampling);
        let mut history: Vec<u32> = prompt.to_vec();
        let mut out: Vec<u32> = Vec::new();
        let mut sent = 0usize; // bytes of text already passed to on_text
        let mut finish = FinishReason::Length;
        while out.len() < opts.max_tokens {
            let mut l = logits.to_vec::<f32>()?;
            // Rows past the tokenizer (Qwen's padded embedding) are never sampled.
            if vocab > 0 && vocab < l.len() {
                l.truncate(vocab);
            }
            let tok = sampler.next(&mut l, &history);
            if self.stop_tokens.contains(&tok) {
                finish = FinishReason::Stop;
                break;
            }
            out.push(tok);
            history.push(tok);
            if opts.stop_on_loop {
                if let Some(keep) = self.loop_detector.detect(&out) {
                    out.truncate(keep);
                    finish = FinishReason::Repetition;
                    break;
                }
            }
            let text = self.tokenizer.decode(&out, true)?;
            if text.len() > sent && !text.ends_with('\u{FFFD}') && text.is_char_boundary(sent) {
                let go_on = on_text(&text[sent..]);
                sent = text.len();
                if !go_on {
                    finish = FinishReason::Cancelled;
                    break;
                }
            }
            if out.len() >= opts.max_tokens {
                break;
            }
            logits = if self.use_cache { self.feed(&[tok])? } else { self.full_logits(&history)? };
        }
        let gen_time = t1.elapsed().as_secs_f64();
        let text = self.tokenizer.decode(&out, true)?;
        if text.len() > sent && text.is_char_boundary(sent) && !matches!(finish, FinishReason::Repetition | FinishReason::Cancelled) {
            on_text(&text[sent..]);
        }
        Ok(Generation {
            generation_tokens: out.len(),
            text,
            tokens: out,
            prompt_tokens: prompt.len(),
            finish_reason: finish,
            prompt_tps: (fresh as f64 / prompt_time.max(1e-9)) as f32,
            generation_tps: (history.len().saturating_sub(prompt.len()) as f64 / gen_time.max(1e-9)) as f32,
            peak_memory: crate::train_loop::peak_gb(),
            bf16_matrices: self.model.bf16_matrices(),
        })
    }

    /// Prompt tokens that prefill will actually compute.
    fn prefill_count(&self, prompt: &[u32]) -> usize {
        if !self.use_cache {
            return prompt.len();
        }
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len().saturating_sub(1));
        prompt.len() - common
    }
}

/// `brain generate`: load, generate once, return the result.
pub fn generate(args: &GenerateArgs) -> Result<Generation> {
    let mut g = Generator::load(&args.model, &args.adapter_path, crate::trainer::parse_dtype(&args.dtype)?)?;
    let ids = if args.ignore_chat_template {
        g.tokenizer.encode(&args.prompt)?
    } else {
        g.chat_prompt(&args.messages())?
    };
    g.generate_tokens(&ids, &args.options(), &mut |_| {})
}
