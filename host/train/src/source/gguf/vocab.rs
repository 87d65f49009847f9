//! The tokenizer of a GGUF file: `tokenizer.ggml.model = gpt2` (byte-level BPE) rebuilt with the
//! `tokenizers` crate from `tokens`, `merges` and `token_type`, with the pre-tokenizer the
//! Hugging Face tokenizer.json of that family has (chosen by `tokenizer.ggml.pre`), so ids equal
//! what transformers gives for the original model.
//!
//! Pre-tokenizers (`tokenizer.ggml.pre` → what the family's tokenizer.json holds; llama.cpp's
//! `llama-vocab.cpp` uses the same regexes):
//! - `gpt2`, `gpt-2`, `default` (and a missing key): ByteLevel with its built-in GPT-2 regex
//!   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
//! - `smollm`, `starcoder`, `refact`: digits split one by one, then the GPT-2 ByteLevel regex
//!   (SmolLM2's tokenizer.json: `Digits(individual_digits)` + `ByteLevel(use_regex)`).
//! - `llama-bpe`, `llama3`, `llama-v3` (Llama 3): Split on
//!   `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
//!   ByteLevel without its regex, and `ignore_merges` (a word in the vocabulary is one token).
//! - `qwen2`: NFC, then Split on Qwen2's regex ([`crate::tokenizer::QWEN2_SPLIT`]: as Llama 3's but
//!   single digits), ByteLevel without its regex.
//!
//! Token types: CONTROL (3) tokens become added special tokens, USER_DEFINED (4) added non-special
//! ones — llama.cpp's converter gives those types to Hugging Face's special and non-special added
//! tokens, so this restores them as they were.

use std::path::Path;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{model_err, Result};
use crate::gguf::GgufFile;
use crate::tokenizer::{Tokenizer, TokenizerParts, QWEN2_SPLIT};

/// `tokenizer.ggml.pre` values understood (aliases of one family share a line in the module doc).
pub const PRE_TOKENIZERS: &[&str] = &[
    "gpt2",
    "gpt-2",
    "default",
    "smollm",
    "starcoder",
    "refact",
    "llama-bpe",
    "llama3",
    "llama-v3",
    "qwen2",
];

/// Llama 3's split regex (its tokenizer.json's `Split` pattern).
const LLAMA3_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Pre-tokenizer families.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    Gpt2,
    SmolLm,
    Llama3,
    Qwen2,
}

fn family(pre: Option<&str>) -> Option<Family> {
    Some(match pre {
        None | Some("gpt2" | "gpt-2" | "default") => Family::Gpt2,
        Some("smollm" | "starcoder" | "refact") => Family::SmolLm,
        Some("llama-bpe" | "llama3" | "llama-v3") => Family::Llama3,
        Some("qwen2") => Family::Qwen2,
        Some(_) => return None,
    })
}

/// The tokenizer of GGUF file `path`, with its special tokens and chat template.
pub fn tokenizer(path: &Path) -> Result<Tokenizer> {
    tokenizer_of(&GgufFile::open(path)?)
}

/// [`tokenizer`] of an already opened file.
pub fn tokenizer_of(file: &GgufFile) -> Result<Tokenizer> {
    let (inner, parts) = tokenizer_parts(file)?;
    Tokenizer::from_parts(inner, parts).map_err(|e| model_err(&file.path, e))
}

/// The `tokenizers` tokenizer and the [`TokenizerParts`] of a GGUF file, before they are joined.
pub fn tokenizer_parts(file: &GgufFile) -> Result<(tokenizers::Tokenizer, TokenizerParts)> {
    let err = |m: String| model_err(&file.path, m);
    match file.get_str("tokenizer.ggml.model")? {
        Some("gpt2") => {}
        Some("llama") => {
            return Err(err(
                "its tokenizer is SentencePiece (tokenizer.ggml.model = llama), which is not supported yet; use the model's \
                 Hugging Face directory instead"
                    .into(),
            ))
        }
        Some(other) => {
            return Err(err(format!(
                "tokenizer.ggml.model {other:?} is not supported (gpt2, byte-level BPE, is)"
            )))
        }
        None => return Err(err("tokenizer.ggml.model is missing: the file has no tokenizer".into())),
    }
    let pre = file.get_str("tokenizer.ggml.pre")?;
    let fam = family(pre).ok_or_else(|| {
        err(format!(
            "pre-tokenizer {:?} (tokenizer.ggml.pre) is not supported (supported: {})",
            pre.unwrap_or(""),
            PRE_TOKENIZERS.join(", ")
        ))
    })?;
    if pre.is_none() {
        tracing::warn!(
            "{}: tokenizer.ggml.pre is missing; using GPT-2's pre-tokenizer",
            file.path.display()
        );
    }
    let tokens = file
        .get_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| err("tokenizer.ggml.tokens is missing".into()))?;
    let merges = file
        .get_str_array("tokenizer.ggml.merges")?
        .ok_or_else(|| err("tokenizer.ggml.merges is missing (a BPE tokenizer needs them)".into()))?;
    let types = file.get_int_array("tokenizer.ggml.token_type")?.unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(err(format!("{} token types for {} tokens", types.len(), tokens.len())));
    }
    let id = |key: &str| -> Result<Option<u32>> {
        match file.get_uint(key)? {
            Some(i) if (i as usize) < tokens.len() => Ok(Some(i as u32)),
            Some(i) => Err(err(format!("{key} is {i}, past the {} tokens", tokens.len()))),
            None => Ok(None),
        }
    };
    let name = |i: Option<u32>| i.map(|i| tokens[i as usize].to_string());

    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
    if vocab.len() != tokens.len() {
        return Err(err("tokenizer.ggml.tokens has duplicate tokens".into()));
    }
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| err(format!("merge {i} ({m:?}) is not two tokens")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut bpe = BPE::builder().vocab_and_merges(vocab, merges).ignore_merges(fam == Family::Llama3);
    if let Some(unk) = name(id("tokenizer.ggml.unknown_token_id")?) {
        bpe = bpe.unk_token(unk);
    }
    let bpe = bpe.build().map_err(|e| err(format!("cannot build the BPE model: {e}")))?;
    let mut tk = tokenizers::Tokenizer::new(bpe);
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Ok(Split::new(SplitPattern::Regex(re.into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| err(format!("bad split regex: {e}")))?
            .into())
    };
    let pre_tok: PreTokenizerWrapper = match fam {
        Family::Gpt2 => ByteLevel::new(false, true, true).into(),
        Family::SmolLm => Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
        Family::Llama3 => Sequence::new(vec![split(LLAMA3_SPLIT)?, ByteLevel::new(false, true, false).into()]).into(),
        Family::Qwen2 => Sequence::new(vec![split(QWEN2_SPLIT)?, ByteLevel::new(false, false, false).into()]).into(),
    };
    if fam == Family::Qwen2 {
        tk.with_normalizer(Some(NFC));
    }
    tk.with_pre_tokenizer(Some(pre_tok));
    tk.with_post_processor(Some(ByteLevel::new(false, false, false)));
    tk.with_decoder(Some(ByteLevel::new(false, false, false)));
    let added = |ty: i64, special: bool| -> Vec<AddedToken> {
        types
            .iter()
            .zip(&tokens)
            .filter(|(t, _)| **t == ty)
            .map(|(_, s)| AddedToken::from(s.to_string(), special).normalized(false))
            .collect()
    };
    tk.add_special_tokens(&added(CONTROL, true));
    tk.add_tokens(&added(USER_DEFINED, false));

    let eos = id("tokenizer.ggml.eos_token_id")?;
    let mut extra_eos_ids = Vec::new();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(i) = id(key)? {
            if Some(i) != eos && !extra_eos_ids.contains(&i) {
                extra_eos_ids.push(i);
            }
        }
    }
    let parts = TokenizerParts {
        bos_token: name(id("tokenizer.ggml.bos_token_id")?),
        eos_token: name(eos),
        pad_token: name(id("tokenizer.ggml.padding_token_id")?),
        // llama.cpp adds bos by default for Llama 3's tokenizer only.
        add_bos_token: file.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(fam == Family::Llama3),
        chat_template: file
            .get_str("tokenizer.chat_template")?
            .map(|t| (t.to_string(), "GGUF tokenizer.chat_template".to_string())),
        extra_eos_ids,
        other_tokens: name(id("tokenizer.ggml.unknown_token_id")?).map(|t| ("unk_token".to_string(), t)).into_iter().collect(),
    };
    Ok((tk, parts))
}

/// The `tokenizer.ggml.pre` name of a Hugging Face tokenizer's pre-tokenizer, for writing GGUF
/// files: the inverse of the table above, read off the tokenizer's own JSON (`tokenizer_json`: the
/// pre-tokenizer and its split regex), so llama.cpp splits text as transformers does. None for a
/// pre-tokenizer llama.cpp knows under no name this module understands.
pub fn pre_name(tokenizer_json: &serde_json::Value) -> Option<&'static str> {
    let pre = tokenizer_json.get("pre_tokenizer")?;
    let kind = |v: &serde_json::Value| v.get("type").and_then(|t| t.as_str()).unwrap_or("").to_string();
    let steps: Vec<&serde_json::Value> = match kind(pre).as_str() {
        "Sequence" => pre.get("pretokenizers")?.as_array()?.iter().collect(),
        _ => vec![pre],
    };
    let kinds: Vec<String> = steps.iter().map(|s| kind(s)).collect();
    let regex = |s: &serde_json::Value| s.get("pattern").and_then(|p| p.get("Regex")).and_then(|r| r.as_str()).map(str::to_string);
    let byte_level_regex = |s: &serde_json::Value| s.get("use_regex").and_then(|u| u.as_bool()).unwrap_or(true);
    match kinds.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["ByteLevel"] if byte_level_regex(steps[0]) => Some("gpt2"),
        ["Digits", "ByteLevel"] if byte_level_regex(steps[1]) => Some("smollm"),
        ["Split", "ByteLevel"] if !byte_level_regex(steps[1]) => match regex(steps[0])?.as_str() {
            r if r == LLAMA3_SPLIT => Some("llama-bpe"),
            r if r == QWEN2_SPLIT => Some("qwen2"),
            _ => None,
        },
        _ => None,
    }
}
