//! Training a byte-level BPE tokenizer for tiny models (Qwen2's pre-tokenizer), and saving one.

use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::{ENDOFTEXT, IM_END, IM_START};
use crate::error::{io, Error, Result};

/// Qwen2's pre-tokenization regex.
pub const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

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
    let specials: Vec<AddedToken> = [ENDOFTEXT, IM_START, IM_END].iter().map(|t| AddedToken::from(*t, true)).collect();
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
