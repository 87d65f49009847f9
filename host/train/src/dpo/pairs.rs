//! Preference pairs: `{"prompt", "chosen", "rejected"}` JSONL, plain (strings: the prompt is a
//! user turn, the responses assistant turns) or conversational (the prompt a list of messages,
//! each response a list of assistant messages, or one message); an optional `"system"` string.
//!
//! Each side is tokenized as the whole conversation through the chat template (like SFT data);
//! only the response's tokens are scored: its assistant content and `<|im_end|>`, never the
//! prompt's (not even assistant turns inside the prompt).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::{collate, Batch};
use crate::error::{Error, Result};
use crate::tokenizer::{Message, Tokenized, Tokenizer};

/// One tokenized pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub chosen: Tokenized,
    pub rejected: Tokenized,
}

impl Pair {
    /// Length used to group pairs into batches (the longer side).
    pub fn len(&self) -> usize {
        self.chosen.tokens.len().max(self.rejected.tokens.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The pairs of one split.
#[derive(Debug, Clone)]
pub struct PairSet {
    pub path: PathBuf,
    pub pairs: Vec<Pair>,
    /// Pairs with a side cut to `max_seq_length`.
    pub truncated: usize,
    /// Pairs dropped because a side had no response token left within `max_seq_length`.
    pub skipped: usize,
}

impl PairSet {
    pub fn len(&self) -> usize {
        self.pairs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

fn messages(v: &Value, what: &str, default_role: &str, tok: &Tokenizer) -> std::result::Result<Vec<Message>, String> {
    let message = |m: &Value| crate::data::parse_message(m, None, tok);
    match v {
        Value::String(s) => Ok(vec![Message::new(default_role, s)]),
        Value::Object(_) => Ok(vec![message(v).map_err(|e| format!("{what}: {e}"))?]),
        Value::Array(items) => items.iter().enumerate().map(|(i, m)| message(m).map_err(|e| format!("{what}[{i}]: {e}"))).collect(),
        _ => Err(format!("\"{what}\" must be a string, a message or a list of messages")),
    }
}

/// Tokenize `prompt ++ response` training only the response's assistant turns, by the same rule
/// as SFT: each from where the template opens it for generation after what precedes it.
fn side(tok: &Tokenizer, prompt: &[Message], response: &[Message]) -> std::result::Result<Tokenized, String> {
    if !response.iter().any(|m| m.role == "assistant") {
        return Err("a response needs an assistant message".into());
    }
    let full: Vec<Message> = prompt.iter().chain(response).cloned().collect();
    tok.encode_chat_from(&full, prompt.len()).map_err(|e| e.to_string())
}

/// Parse and tokenize one JSON line.
pub fn parse_pair(v: &Value, tok: &Tokenizer) -> std::result::Result<Pair, String> {
    let obj = v.as_object().ok_or("expected a JSON object")?;
    let get = |k: &str| obj.get(k).ok_or_else(|| format!("missing \"{k}\" (a pair is {{\"prompt\", \"chosen\", \"rejected\"}})"));
    let mut prompt = messages(get("prompt")?, "prompt", "user", tok)?;
    if let Some(sys) = obj.get("system").and_then(|s| s.as_str()) {
        if prompt.first().is_none_or(|m| m.role != "system") {
            prompt.insert(0, Message::new("system", sys));
        }
    }
    let chosen = messages(get("chosen")?, "chosen", "assistant", tok)?;
    let rejected = messages(get("rejected")?, "rejected", "assistant", tok)?;
    Ok(Pair {
        chosen: side(tok, &prompt, &chosen).map_err(|e| format!("chosen: {e}"))?,
        rejected: side(tok, &prompt, &rejected).map_err(|e| format!("rejected: {e}"))?,
    })
}

fn truncate(t: &mut Tokenized, max: usize) -> bool {
    if t.tokens.len() > max {
        t.tokens.truncate(max);
        t.mask.truncate(max);
        true
    } else {
        false
    }
}

/// Load a pairs JSONL file. `Ok(None)` if it does not exist; a bad line is an error naming the
/// file and line.
pub fn load_pairs(path: &Path, tok: &Tokenizer, max_seq_length: usize) -> Result<Option<PairSet>> {
    let Some(lines) = crate::jsonl::read_lines(path)? else { return Ok(None) };
    let mut set = PairSet { path: path.to_path_buf(), pairs: Vec::new(), truncated: 0, skipped: 0 };
    for (n, line) in &lines {
        let err = |msg: String| Error::Data { file: path.to_path_buf(), line: *n, msg };
        let v: Value = serde_json::from_str(line).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let mut p = parse_pair(&v, tok).map_err(err)?;
        let cut = truncate(&mut p.chosen, max_seq_length) | truncate(&mut p.rejected, max_seq_length);
        set.truncated += cut as usize;
        if p.chosen.trained() == 0 || p.rejected.trained() == 0 {
            set.skipped += 1;
            continue;
        }
        set.pairs.push(p);
    }
    if set.truncated > 0 {
        tracing::warn!("{}: {} pairs were longer than {max_seq_length} tokens and were truncated", path.display(), set.truncated);
    }
    if set.skipped > 0 {
        tracing::warn!("{}: {} pairs have no response token within {max_seq_length} tokens and were skipped", path.display(), set.skipped);
    }
    Ok(Some(set))
}

/// A batch of pairs as one padded batch: rows `0..B` the chosen sides, `B..2B` the rejected.
pub fn collate_pairs(pairs: &[&Pair], pad: u32) -> Batch {
    let rows: Vec<&Tokenized> = pairs.iter().map(|p| &p.chosen).chain(pairs.iter().map(|p| &p.rejected)).collect();
    collate(&rows, pad)
}

/// A 64-bit FNV-1a fingerprint of the pairs' tokens and masks (to tie cached reference
/// log-probs to the data they were computed on).
pub fn fingerprint(pairs: &[Pair]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut put = |x: u64| {
        for b in x.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    };
    for p in pairs {
        for t in [&p.chosen, &p.rejected] {
            put(t.tokens.len() as u64);
            for (&id, &m) in t.tokens.iter().zip(&t.mask) {
                put(((id as u64) << 1) | m as u64);
            }
        }
    }
    h
}
