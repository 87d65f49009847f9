//! The tokenizer: `tokenizer.json` through the `tokenizers` crate, the model's own Jinja chat
//! template rendered as Hugging Face transformers renders it, tokenization with a per-token loss
//! mask, and training a byte-level BPE tokenizer for tiny models.
//!
//! A conversation is rendered whole (`add_generation_prompt=false`) and encoded in one piece
//! without adding special tokens, so its ids equal transformers'
//! `apply_chat_template(messages, tokenize=True)`. The loss mask trains every assistant turn,
//! from where the template opens it for generation through its end-of-turn token and what the
//! template writes after it (see [`mask`] for the rule and how it is found).
//!
//! Modules: [`parts`] reads a model directory, [`chat_template`] renders, [`mask`] finds the
//! trained spans, [`probe`] finds what a template does (its end-of-turn token, a default system
//! message), [`pyfmt`] and [`strftime`] give templates Python's value formats, [`bpe`] trains.

pub mod bpe;
pub mod chat_template;
pub mod mask;
pub mod parts;
pub mod probe;
pub mod pyfmt;
pub mod strftime;

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::AddedToken;

pub use bpe::{save_tokenizer, train_bpe, QWEN2_SPLIT};
pub use chat_template::ChatTemplate;
pub use parts::TokenizerParts;

use crate::error::{model_err, Error, Result};

pub const ENDOFTEXT: &str = "<|endoftext|>";
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

/// The ChatML chat template: written into tiny models' tokenizer_config.json, and used for a
/// model that brings no template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Where the template comes from when the model has none.
pub const CHATML_FALLBACK_ORIGIN: &str = "built-in ChatML (the model has no chat template)";

/// One chat message: role and text, plus any other keys its line carries (`tool_calls`,
/// `reasoning_content`, `name`, …), which the chat template sees as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    #[serde(flatten)]
    pub extra: Fields,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            extra: Fields::default(),
        }
    }

    /// The message with one more key (replacing a key of that name).
    pub fn with_field(mut self, key: &str, value: minijinja::Value) -> Self {
        self.extra.set(key, value);
        self
    }
}

/// A message's keys besides role and content, in the order they were written (templates print
/// them with `tojson`, and Python keeps a JSON object's order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Vec<(String, minijinja::Value)>);

impl Fields {
    pub fn get(&self, key: &str) -> Option<&minijinja::Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn set(&mut self, key: &str, value: minijinja::Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<minijinja::Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, minijinja::Value)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of message fields")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Fields, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, minijinja::Value>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(Visit)
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

/// A loaded tokenizer with its chat template and the ids the trainer needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    template: ChatTemplate,
    pub eos_id: u32,
    pub bos_id: Option<u32>,
    /// Padding id (pad_token, else `<|endoftext|>` when present, else eos); padded positions are
    /// always masked.
    pub pad_id: u32,
    add_bos_token: bool,
    end_of_turn: Option<String>,
    stop_ids: Vec<u32>,
    default_system: Option<String>,
}

impl Tokenizer {
    /// Load the model directory `dir`: tokenizer.json, tokenizer_config.json (special tokens,
    /// `added_tokens_decoder`, chat template), chat_template.jinja, and `eos_token_id` of
    /// config.json and generation_config.json.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let mut inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| {
            model_err(
                &path,
                format!("cannot load tokenizer: {e}; the directory needs a Hugging Face tokenizer.json"),
            )
        })?;
        // transformers adds the config's added tokens that tokenizer.json lacks.
        for e in parts::added_tokens_decoder(dir)? {
            if inner.token_to_id(&e.content).is_none() {
                let token = AddedToken::from(e.content.clone(), e.special);
                if e.special {
                    inner.add_special_tokens(&[token]);
                } else {
                    inner.add_tokens(&[token]);
                }
                if inner.token_to_id(&e.content) != Some(e.id) {
                    tracing::warn!(
                        "{}: added token {:?} got id {:?}, not {} as tokenizer_config.json says",
                        dir.display(),
                        e.content,
                        inner.token_to_id(&e.content),
                        e.id
                    );
                }
            }
        }
        let mut parts = TokenizerParts::from_dir(dir)?;
        // transformers 5 ignores tokenizer_config.json's add_bos_token when tokenizer.json exists:
        // its post-processor decides.
        parts.add_bos_token = post_processor_adds(&inner, parts.bos_token.as_deref());
        Self::from_parts(inner, parts).map_err(|e| match e {
            Error::Tokenizer(msg) => model_err(dir, msg),
            e => e,
        })
    }

    /// Build a tokenizer from a vocabulary and its parts (special tokens, chat template, extra
    /// eos ids). Without a chat template it renders ChatML and says so (once per process).
    pub fn from_parts(inner: tokenizers::Tokenizer, parts: TokenizerParts) -> Result<Tokenizer> {
        let lookup = |what: &str, t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| format!("the {what} {t:?} is not in the vocabulary"))
        };
        let mut vars: Vec<(String, String)> = Vec::new();
        for (name, t) in [
            ("bos_token", &parts.bos_token),
            ("eos_token", &parts.eos_token),
            ("pad_token", &parts.pad_token),
        ] {
            if let Some(t) = t {
                vars.push((name.to_string(), t.clone()));
            }
        }
        vars.extend(parts.other_tokens.iter().cloned());
        let (source, origin) = match &parts.chat_template {
            Some((s, o)) => (s.as_str(), o.as_str()),
            None => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!("the model has no chat template; conversations are rendered as ChatML (<|im_start|>role\\n…<|im_end|>)")
                });
                (CHATML_TEMPLATE, CHATML_FALLBACK_ORIGIN)
            }
        };
        let template = ChatTemplate::new(source, origin, &vars)?;
        let specials: Vec<String> = inner.get_added_tokens_decoder().into_values().map(|t| t.content).collect();
        let end_of_turn = probe::end_of_turn(&template, &specials);
        let eot_id = end_of_turn.as_deref().and_then(|t| inner.token_to_id(t));
        let eos_id = match &parts.eos_token {
            Some(t) => lookup("eos_token", t).map_err(Error::Tokenizer)?,
            None => parts
                .extra_eos_ids
                .first()
                .copied()
                .or(eot_id)
                .or(inner.token_to_id(ENDOFTEXT))
                .ok_or_else(|| {
                    Error::Tokenizer("no eos token: give eos_token in tokenizer_config.json or eos_token_id in config.json".into())
                })?,
        };
        let bos_id = parts
            .bos_token
            .as_deref()
            .and_then(|t| lookup("bos_token", t).map_err(|e| tracing::warn!("{e}; no bos is added")).ok());
        let pad_id = parts
            .pad_token
            .as_deref()
            .and_then(|t| lookup("pad_token", t).map_err(|e| tracing::warn!("{e}; padding with eos")).ok())
            .or(inner.token_to_id(ENDOFTEXT))
            .unwrap_or(eos_id);
        let mut stop_ids = Vec::new();
        for id in eot_id.into_iter().chain([eos_id]).chain(parts.extra_eos_ids.iter().copied()) {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
        let default_system = probe::default_system(&template);
        Ok(Tokenizer {
            inner,
            template,
            eos_id,
            bos_id,
            pad_id,
            add_bos_token: parts.add_bos_token && bos_id.is_some(),
            end_of_turn,
            stop_ids,
            default_system,
        })
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The chat template conversations are rendered with.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Where the chat template came from ("chat_template.jinja", "tokenizer_config.json", "GGUF
    /// tokenizer.chat_template", or [`CHATML_FALLBACK_ORIGIN`]).
    pub fn template_source(&self) -> &str {
        self.template.origin()
    }

    /// The token ids that end generation: the template's end-of-turn token, eos, and the extra
    /// eos ids of the model's configs, each once.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The special token that ends an assistant turn (`<|im_end|>`, `<|eot_id|>`), if the
    /// template writes one.
    pub fn end_of_turn(&self) -> Option<&str> {
        self.end_of_turn.as_deref()
    }

    /// The system message the template inserts when a conversation has none.
    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// Whether plain text starts with bos.
    pub fn add_bos_token(&self) -> bool {
        self.add_bos_token
    }

    /// Encode text as is (special-token strings in it are recognized; nothing is added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The conversation as the chat template renders it; with `add_generation_prompt` the
    /// assistant's turn is opened at the end.
    pub fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.template.render(messages, add_generation_prompt)
    }

    /// Tokenize a conversation with its loss mask: every assistant turn trained (see [`mask`]).
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Tokenized> {
        self.encode_chat_from(messages, 0)
    }

    /// [`Tokenizer::encode_chat`] training only the assistant turns at index `first_trained` or
    /// later (a preference pair's response after its prompt).
    pub fn encode_chat_from(&self, messages: &[Message], first_trained: usize) -> Result<Tokenized> {
        if messages.is_empty() {
            return Err(Error::Tokenizer("a conversation needs at least one message".into()));
        }
        let text = self.template.render(messages, false)?;
        let enc = self
            .inner
            .encode(text.as_str(), false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let spans = mask::assistant_spans(&self.template, messages, &text, self.end_of_turn.as_deref(), first_trained)?;
        Ok(Tokenized {
            tokens: enc.get_ids().to_vec(),
            mask: mask::token_mask(enc.get_offsets(), &spans),
        })
    }

    /// `{"prompt", "completion"}` → a user turn and an assistant turn.
    pub fn encode_completion(&self, prompt: &str, completion: &str) -> Result<Tokenized> {
        self.encode_chat(&[Message::new("user", prompt), Message::new("assistant", completion)])
    }

    /// `{"text"}` → bos (when the tokenizer adds it), the text, eos (unless it already ends
    /// with it); every token trained.
    pub fn encode_text(&self, text: &str) -> Result<Tokenized> {
        let mut tokens = self.encode(text)?;
        if let Some(bos) = self.bos_id.filter(|_| self.add_bos_token) {
            if tokens.first() != Some(&bos) {
                tokens.insert(0, bos);
            }
        }
        if tokens.last() != Some(&self.eos_id) {
            tokens.push(self.eos_id);
        }
        let mask = vec![true; tokens.len()];
        Ok(Tokenized { tokens, mask })
    }
}

/// Whether encoding with special tokens puts `bos` first (tokenizer.json's post-processor).
fn post_processor_adds(inner: &tokenizers::Tokenizer, bos: Option<&str>) -> bool {
    let Some(bos_id) = bos.and_then(|b| inner.token_to_id(b)) else {
        return false;
    };
    match (inner.encode("a", true), inner.encode("a", false)) {
        (Ok(with), Ok(without)) => with.get_ids().first() == Some(&bos_id) && without.get_ids().first() != Some(&bos_id),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_other_keys_in_order_through_serde() {
        let line = r#"{"role":"assistant","content":"x","tool_calls":[{"b":1,"a":2}],"name":"n"}"#;
        let m: Message = serde_json::from_str(line).unwrap();
        assert_eq!(m.extra.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["tool_calls", "name"]);
        assert_eq!(serde_json::to_string(&m).unwrap(), line);
        assert_eq!(
            serde_json::to_string(&Message::new("user", "hi")).unwrap(),
            r#"{"role":"user","content":"hi"}"#
        );
    }
}
