//! Tokenizer (`tokenizer.json` through the `tokenizers` crate), ChatML rendering, tokenization with a
//! per-token loss mask, and training a byte-level BPE tokenizer for tiny models.
//!
//! Loss mask rule for chat: every assistant turn's content and its `<|im_end|>` are trained; system,
//! user and tool turns and the template tokens (`<|im_start|>role\n`, the `\n` after `<|im_end|>`)
//! are masked. The whole conversation is tokenized in one piece (so tokens equal what Hugging Face's
//! `apply_chat_template` gives for the same string) and the mask is derived from byte offsets.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{io, model_err, Error, Result};

pub const ENDOFTEXT: &str = "<|endoftext|>";
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

/// Qwen2's pre-tokenization regex.
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The ChatML chat template written into tiny models' tokenizer_config.json.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Qwen2.5's template inserts this system turn when a conversation has none.
const QWEN25_DEFAULT_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// What a tokenizer needs besides its vocabulary: special tokens and the chat template. Read from
/// tokenizer_config.json / generation_config.json / config.json for a directory, or from the
/// `tokenizer.ggml.*` metadata of a GGUF file; [`Tokenizer::from_parts`] builds the tokenizer.
#[derive(Debug, Clone, Default)]
pub struct TokenizerParts {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    /// Whether plain text (the `{"text"}` format) starts with bos (GGUF `add_bos_token`,
    /// tokenizer_config.json `add_bos_token`). Chat templates write bos themselves.
    pub add_bos_token: bool,
    /// The Jinja chat template and where it came from (shown by `brain model info`), e.g.
    /// ("…", "tokenizer_config.json") or ("…", "GGUF tokenizer.chat_template").
    pub chat_template: Option<(String, String)>,
    /// More ids that end generation (`eos_token_id` of config.json / generation_config.json).
    pub extra_eos_ids: Vec<u32>,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

/// Token ids with a per-token loss mask: `mask[i]` says whether predicting `tokens[i]` is trained.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tokenized {
    pub tokens: Vec<u32>,
    pub mask: Vec<bool>,
}

impl Tokenized {
    /// Number of trained target tokens (position 0 is never a target).
    pub fn trained(&self) -> usize {
        self.mask.iter().skip(1).filter(|m| **m).count()
    }
}

/// A loaded tokenizer with the ids the trainer needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub eos_id: u32,
    pub im_start_id: u32,
    pub im_end_id: u32,
    /// Padding id (`<|endoftext|>` when present, else eos); padded positions are always masked.
    pub pad_id: u32,
    /// System turn added when a conversation has none (Qwen2.5's template does this).
    pub default_system: Option<String>,
}

impl Tokenizer {
    /// Load `DIR/tokenizer.json` (+ `tokenizer_config.json` for eos and the chat template).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| model_err(&path, format!("cannot load tokenizer: {e}")))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| model_err(&cfg_path, format!("bad JSON: {e}")))?,
            Err(_) => serde_json::Value::Null,
        };
        let token_str = |key: &str| -> Option<String> {
            match cfg.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                v => v.get("content").and_then(|c| c.as_str()).map(String::from),
            }
        };
        let eos = token_str("eos_token").unwrap_or_else(|| IM_END.to_string());
        let template = cfg.get("chat_template").and_then(|t| t.as_str()).unwrap_or("");
        let default_system = template.contains(QWEN25_DEFAULT_SYSTEM).then(|| QWEN25_DEFAULT_SYSTEM.to_string());
        let mut t = Self::from_tokenizers(inner, &eos).map_err(|e| model_err(&path, e))?;
        t.default_system = default_system;
        Ok(t)
    }

    /// Wrap a `tokenizers` tokenizer; it must know the ChatML special tokens.
    pub fn from_tokenizers(inner: tokenizers::Tokenizer, eos: &str) -> Result<Self> {
        let id = |t: &str| {
            inner.token_to_id(t).ok_or_else(|| Error::Tokenizer(format!("the vocabulary has no {t} token")))
        };
        let im_start_id = id(IM_START)?;
        let im_end_id = id(IM_END)?;
        let eos_id = id(eos)?;
        let pad_id = inner.token_to_id(ENDOFTEXT).unwrap_or(eos_id);
        Ok(Tokenizer { inner, eos_id, im_start_id, im_end_id, pad_id, default_system: None })
    }

    /// TEMPORARY (branch `gguf`): a minimal stand-in so the GGUF tokenizer compiles until the real
    /// `from_parts` lands from branch `tok` — replace this whole function with that one on merge.
    /// It only takes eos (else `<|im_end|>`), pad (else `<|endoftext|>`, else eos) and the ChatML
    /// ids (eos when the vocabulary lacks them); bos, add_bos_token, the chat template and
    /// extra_eos_ids are ignored here.
    pub fn from_parts(inner: tokenizers::Tokenizer, parts: TokenizerParts) -> Result<Self> {
        let eos = parts.eos_token.as_deref().unwrap_or(IM_END);
        let eos_id = inner.token_to_id(eos).ok_or_else(|| Error::Tokenizer(format!("the vocabulary has no eos token {eos}")))?;
        let find = |t: Option<&str>| t.and_then(|t| inner.token_to_id(t));
        let pad_id = find(parts.pad_token.as_deref()).or_else(|| inner.token_to_id(ENDOFTEXT)).unwrap_or(eos_id);
        let im_start_id = inner.token_to_id(IM_START).unwrap_or(eos_id);
        let im_end_id = inner.token_to_id(IM_END).unwrap_or(eos_id);
        Ok(Tokenizer { inner, eos_id, im_start_id, im_end_id, pad_id, default_system: None })
    }

    /// Where the chat template came from (temporary until templates are read from the model).
    pub fn template_source(&self) -> &str {
        "ChatML (built in)"
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encode text as is (special-token strings in it are recognized; nothing is added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    fn render_with_system(&self, messages: &[Message], add_generation_prompt: bool) -> (String, Vec<Span>) {
        let needs = messages.first().is_none_or(|m| m.role != "system");
        let sys = self.default_system.as_deref().filter(|_| needs).map(|s| Message::new("system", s));
        let list: Vec<&Message> = sys.iter().chain(messages.iter()).collect();
        render(&list, add_generation_prompt)
    }

    /// ChatML: `<|im_start|>role\ncontent<|im_end|>\n` per message, then `<|im_start|>assistant\n`
    /// when `add_generation_prompt`.
    pub fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        self.render_with_system(messages, add_generation_prompt).0
    }

    /// Tokenize a conversation with its loss mask (see the module doc for the rule).
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Tokenized> {
        let (text, spans) = self.render_with_system(messages, false);
        let enc = self.inner.encode(text.as_str(), false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let tokens = enc.get_ids().to_vec();
        let mask = enc
            .get_offsets()
            .iter()
            .zip(&tokens)
            .map(|(&(start, _), &id)| {
                spans.iter().any(|s| {
                    (start >= s.content.0 && start < s.content.1) || (id == self.im_end_id && start == s.content.1)
                })
            })
            .collect();
        Ok(Tokenized { tokens, mask })
    }

    /// `{"prompt", "completion"}` → a user turn and an assistant turn.
    pub fn encode_completion(&self, prompt: &str, completion: &str) -> Result<Tokenized> {
        self.encode_chat(&[Message::new("user", prompt), Message::new("assistant", completion)])
    }

    /// `{"text"}` → the text plus eos (unless it already ends with it), every token trained.
    pub fn encode_text(&self, text: &str) -> Result<Tokenized> {
        let mut tokens = self.encode(text)?;
        if tokens.last() != Some(&self.eos_id) {
            tokens.push(self.eos_id);
        }
        let mask = vec![true; tokens.len()];
        Ok(Tokenized { tokens, mask })
    }
}

/// Byte span of an assistant turn's content in the rendered text (its `<|im_end|>` starts at `.1`).
struct Span {
    content: (usize, usize),
}

fn render(messages: &[&Message], add_generation_prompt: bool) -> (String, Vec<Span>) {
    let mut s = String::new();
    let mut spans = Vec::new();
    for m in messages {
        s.push_str(IM_START);
        s.push_str(&m.role);
        s.push('\n');
        let start = s.len();
        s.push_str(&m.content);
        if m.role == "assistant" {
            spans.push(Span { content: (start, s.len()) });
        }
        s.push_str(IM_END);
        s.push('\n');
    }
    if add_generation_prompt {
        s.push_str(IM_START);
        s.push_str("assistant\n");
    }
    (s, spans)
}

/// Train a byte-level BPE tokenizer (Qwen2's pre-tokenizer, NFC, byte-level decoder) on `texts`,
/// with `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` as the first ids. `vocab_size` counts them;
/// training stops earlier when the corpus has no more merges.
pub fn train_bpe<S: AsRef<str> + Send>(texts: impl Iterator<Item = S> + Send, vocab_size: usize) -> Result<tokenizers::Tokenizer> {
    let terr = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
    let split = Split::new(SplitPattern::Regex(QWEN2_SPLIT.into()), SplitDelimiterBehavior::Isolated, false).map_err(terr)?;
    let byte_level = ByteLevel::new(false, false, false);
    let mut tk = tokenizers::Tokenizer::new(BPE::default());
    tk.with_normalizer(Some(NFC));
    tk.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), byte_level.into()])));
    tk.with_post_processor(Some(ByteLevel::new(false, false, false)));
    tk.with_decoder(Some(ByteLevel::new(false, false, false)));
    let specials: Vec<AddedToken> =
        [ENDOFTEXT, IM_START, IM_END].iter().map(|t| AddedToken::from(*t, true)).collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .show_progress(false)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tk.train(&mut trainer, texts).map_err(terr)?;
    tk.add_special_tokens(&specials);
    Ok(tk)
}

/// Save a tokenizer as `DIR/tokenizer.json`.
pub fn save_tokenizer(tk: &tokenizers::Tokenizer, dir: &Path) -> Result<()> {
    let path = dir.join("tokenizer.json");
    let json = tk.to_string(true).map_err(|e| Error::Tokenizer(e.to_string()))?;
    std::fs::write(&path, json).map_err(io(&path))
}
