//! What a tokenizer needs besides its vocabulary, read from a Hugging Face model directory the
//! way transformers reads it: special tokens and `add_bos_token` from tokenizer_config.json, the
//! chat template from `chat_template.jinja` (which takes priority) or tokenizer_config.json's
//! `chat_template`, and the extra ids that end generation from config.json and
//! generation_config.json.

use std::path::Path;

use serde_json::Value;

use crate::error::{io, model_err, Result};

/// What a tokenizer needs besides its vocabulary: special tokens and the chat template. Read from
/// tokenizer_config.json / generation_config.json / config.json for a directory
/// ([`TokenizerParts::from_dir`]), or from the `tokenizer.ggml.*` metadata of a GGUF file;
/// [`super::Tokenizer::from_parts`] builds the tokenizer.
#[derive(Debug, Clone, Default)]
pub struct TokenizerParts {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    /// Whether plain text (the `{"text"}` format) starts with bos (GGUF `add_bos_token`; for a
    /// directory, whether tokenizer.json's post-processor adds it, as transformers 5 decides).
    /// Chat templates write bos themselves.
    pub add_bos_token: bool,
    /// The Jinja chat template and where it came from (shown by `brain model info`), e.g.
    /// ("…", "tokenizer_config.json") or ("…", "GGUF tokenizer.chat_template").
    pub chat_template: Option<(String, String)>,
    /// More ids that end generation (`eos_token_id` of config.json / generation_config.json).
    pub extra_eos_ids: Vec<u32>,
    /// The other named special tokens templates may read, as (name, text): ("unk_token",
    /// "<unk>"), ("sep_token", …), ("cls_token", …), ("mask_token", …).
    pub other_tokens: Vec<(String, String)>,
}

/// An entry of tokenizer_config.json's `added_tokens_decoder`.
#[derive(Debug, Clone, PartialEq)]
pub struct AddedTokenEntry {
    pub id: u32,
    pub content: String,
    pub special: bool,
}

impl TokenizerParts {
    /// Read the parts of the model directory `dir` (every file is optional; a file that exists
    /// must parse). `add_bos_token` is left false: it depends on tokenizer.json, see
    /// [`super::Tokenizer::load`].
    pub fn from_dir(dir: &Path) -> Result<TokenizerParts> {
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = read_json(&cfg_path)?.unwrap_or(Value::Null);
        let token = |key: &str| cfg.get(key).and_then(token_text);
        let mut parts = TokenizerParts {
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            pad_token: token("pad_token"),
            ..Default::default()
        };
        for key in ["unk_token", "sep_token", "cls_token", "mask_token"] {
            if let Some(t) = token(key) {
                parts.other_tokens.push((key.to_string(), t));
            }
        }
        parts.chat_template = chat_template(dir, &cfg)?;
        for name in ["generation_config.json", "config.json"] {
            let path = dir.join(name);
            if let Some(ids) = read_json(&path)?.as_ref().and_then(|c| c.get("eos_token_id")) {
                for id in token_ids(ids).map_err(|e| model_err(&path, format!("eos_token_id: {e}")))? {
                    if !parts.extra_eos_ids.contains(&id) {
                        parts.extra_eos_ids.push(id);
                    }
                }
            }
        }
        Ok(parts)
    }
}

/// The entries of tokenizer_config.json's `added_tokens_decoder` (`{"151643": {"content": …,
/// "special": true}, …}`), in id order.
pub fn added_tokens_decoder(dir: &Path) -> Result<Vec<AddedTokenEntry>> {
    let path = dir.join("tokenizer_config.json");
    let Some(cfg) = read_json(&path)? else { return Ok(Vec::new()) };
    let Some(map) = cfg.get("added_tokens_decoder").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (id, entry) in map {
        let id: u32 = id
            .parse()
            .map_err(|_| model_err(&path, format!("added_tokens_decoder: {id:?} is not a token id")))?;
        let content = entry
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| model_err(&path, format!("added_tokens_decoder[{id}] has no string \"content\"")))?;
        let special = entry.get("special").and_then(Value::as_bool).unwrap_or(false);
        out.push(AddedTokenEntry {
            id,
            content: content.to_string(),
            special,
        });
    }
    out.sort_by_key(|e| e.id);
    Ok(out)
}

/// The template in transformers' order: `chat_template.jinja`, else tokenizer_config.json's
/// `chat_template` (a string, or a list of `{name, template}` of which `default` is used).
fn chat_template(dir: &Path, cfg: &Value) -> Result<Option<(String, String)>> {
    let file = dir.join("chat_template.jinja");
    match std::fs::read_to_string(&file) {
        Ok(t) => return Ok(Some((t, "chat_template.jinja".into()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&file)(e)),
    }
    let cfg_path = dir.join("tokenizer_config.json");
    Ok(match cfg.get("chat_template") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some((s.clone(), "tokenizer_config.json".into())),
        Some(Value::Array(list)) => {
            let named = |n: &str| list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(n));
            let pick = named("default").ok_or_else(|| {
                model_err(
                    &cfg_path,
                    "chat_template is a list of named templates without one named \"default\"; name one \"default\"",
                )
            })?;
            let text = pick
                .get("template")
                .and_then(Value::as_str)
                .ok_or_else(|| model_err(&cfg_path, "the \"default\" chat_template has no string \"template\""))?;
            Some((text.to_string(), "tokenizer_config.json (template \"default\")".into()))
        }
        Some(_) => return Err(model_err(&cfg_path, "chat_template must be a string or a list of {name, template}")),
    })
}

/// A special token written as a string or as `{"content": …}` (an AddedToken).
fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        v => v.get("content").and_then(Value::as_str).map(String::from),
    }
}

/// `eos_token_id`: an integer or a list of them.
fn token_ids(v: &Value) -> std::result::Result<Vec<u32>, String> {
    let one = |x: &Value| {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{x} is not a token id"))
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(one).collect(),
        x => Ok(vec![one(x)?]),
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| model_err(path, format!("bad JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_directory_in_transformers_order() {
        let td = tempfile::tempdir().unwrap();
        let d = td.path();
        std::fs::write(
            d.join("tokenizer_config.json"),
            json!({
                "bos_token": {"content": "<s>", "special": true}, "eos_token": "</s>", "pad_token": null, "unk_token": "<unk>",
                "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
                "added_tokens_decoder": {"2": {"content": "</s>", "special": true}, "1": {"content": "<s>"}}
            })
            .to_string(),
        )
        .unwrap();
        std::fs::write(d.join("config.json"), json!({"eos_token_id": 2}).to_string()).unwrap();
        std::fs::write(d.join("generation_config.json"), json!({"eos_token_id": [7, 2]}).to_string()).unwrap();
        let p = TokenizerParts::from_dir(d).unwrap();
        assert_eq!(
            (p.bos_token.as_deref(), p.eos_token.as_deref(), p.pad_token.as_deref()),
            (Some("<s>"), Some("</s>"), None)
        );
        assert_eq!(p.other_tokens, vec![("unk_token".to_string(), "<unk>".to_string())]);
        assert_eq!(p.chat_template.as_ref().map(|t| t.0.as_str()), Some("D"));
        assert_eq!(p.extra_eos_ids, vec![7, 2]);
        let added = added_tokens_decoder(d).unwrap();
        assert_eq!(
            added.iter().map(|e| (e.id, e.special)).collect::<Vec<_>>(),
            vec![(1, false), (2, true)]
        );
        std::fs::write(d.join("chat_template.jinja"), "J").unwrap();
        let p = TokenizerParts::from_dir(d).unwrap();
        assert_eq!(p.chat_template, Some(("J".to_string(), "chat_template.jinja".to_string())));
        std::fs::write(d.join("config.json"), "{").unwrap();
        let e = TokenizerParts::from_dir(d).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("bad JSON"), "{e}");
    }
}
