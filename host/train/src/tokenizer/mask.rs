//! Which bytes of a rendered conversation are trained, and from them which tokens.
//!
//! The rule: each assistant turn is trained from where the template opens it for generation to
//! where the next message's rendering starts (its end-of-turn token and what the template writes
//! after it, e.g. ChatML's `\n`); the last message, when it is the assistant's, to the end of the
//! text. For a one-turn conversation that is exactly what follows
//! `apply_chat_template(messages[:-1], add_generation_prompt=True)` — the span mlx-lm's
//! `--mask-prompt` trains — including whatever the template inserts at the start of the turn
//! (Qwen3's empty `<think>` block).
//!
//! Templates are programs, so the spans come from renderings, not from a format we assume:
//! - start of turn i: the rendering of `messages[..i]` with the generation prompt, when it is a
//!   prefix of the full text (it is for ChatML, Llama 3 and Qwen3 alike); else where the turn's
//!   content appears;
//! - end of turn i: the rendering of `messages[..=i]`, when it is a prefix of the full text; else
//!   (Qwen3 renders a final assistant turn differently from an earlier one) the end of the
//!   content, extended over the end-of-turn token and the whitespace after it.

use super::chat_template::ChatTemplate;
use super::Message;
use crate::error::{Error, Result};

/// Byte ranges `[start, end)` of `full` (the rendering of `messages`) that are trained: the
/// assistant turns with index `>= first_trained`.
pub fn assistant_spans(
    tpl: &ChatTemplate,
    messages: &[Message],
    full: &str,
    end_of_turn: Option<&str>,
    first_trained: usize,
) -> Result<Vec<(usize, usize)>> {
    let mut spans = Vec::new();
    let mut cursor = 0;
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let start = turn_start(tpl, messages, i, full, cursor)?;
        let end = if i + 1 == messages.len() {
            full.len()
        } else {
            turn_end(tpl, messages, i, full, start, end_of_turn)?
        };
        cursor = end;
        if i >= first_trained && end > start {
            spans.push((start, end));
        }
    }
    Ok(spans)
}

fn turn_start(tpl: &ChatTemplate, messages: &[Message], i: usize, full: &str, cursor: usize) -> Result<usize> {
    if i > 0 {
        if let Ok(prefix) = tpl.render(&messages[..i], true) {
            if prefix.len() >= cursor && full.starts_with(&prefix) {
                return Ok(prefix.len());
            }
        }
    }
    locate_content(full, cursor, &messages[i].content).map(|(s, _)| s).ok_or_else(|| {
        Error::Tokenizer(format!(
            "cannot find where assistant message {} starts in the conversation rendered by the chat template of {} \
             (the template neither opens it as it opens a generation nor writes its content as given)",
            i + 1,
            tpl.origin()
        ))
    })
}

fn turn_end(tpl: &ChatTemplate, messages: &[Message], i: usize, full: &str, start: usize, end_of_turn: Option<&str>) -> Result<usize> {
    if let Ok(through) = tpl.render(&messages[..=i], false) {
        if through.len() > start && full.starts_with(&through) {
            return Ok(through.len());
        }
    }
    let content_end = locate_content(full, start, &messages[i].content).map_or(start, |(_, e)| e);
    let mut end = content_end;
    match end_of_turn {
        Some(eot) => match full[content_end..].find(eot) {
            Some(p) => end = content_end + p + eot.len(),
            None => {
                return Err(Error::Tokenizer(format!(
                    "assistant message {} has no end-of-turn {eot} in the conversation rendered by the chat template of {}",
                    i + 1,
                    tpl.origin()
                )))
            }
        },
        None if end == start => {
            return Err(Error::Tokenizer(format!(
                "cannot find where assistant message {} ends in the conversation rendered by the chat template of {} \
                 (its content is not written as given and the template has no end-of-turn token)",
                i + 1,
                tpl.origin()
            )))
        }
        None => {}
    }
    let rest = &full[end..];
    Ok(end + (rest.len() - rest.trim_start().len()))
}

/// Where `content` appears in `full` at or after `from`: as given, trimmed (Llama 3 trims), or
/// its part after `</think>` (Qwen3 drops earlier turns' reasoning). An empty content is found
/// at `from`.
fn locate_content(full: &str, from: usize, content: &str) -> Option<(usize, usize)> {
    let hay = full.get(from..)?;
    let after_think = content.rsplit_once("</think>").map(|(_, a)| a.trim_start_matches('\n'));
    let candidates = [Some(content), Some(content.trim()), after_think, after_think.map(str::trim)];
    for c in candidates.into_iter().flatten() {
        if c.is_empty() {
            continue;
        }
        if let Some(p) = hay.find(c) {
            return Some((from + p, from + p + c.len()));
        }
    }
    content.trim().is_empty().then_some((from, from))
}

/// `mask[i]`: whether token i (with byte `offsets[i]` into the text) starts inside a span.
pub fn token_mask(offsets: &[(usize, usize)], spans: &[(usize, usize)]) -> Vec<bool> {
    let mut j = 0;
    offsets
        .iter()
        .map(|&(start, _)| {
            while j < spans.len() && start >= spans[j].1 {
                j += 1;
            }
            j < spans.len() && start >= spans[j].0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_belong_to_the_span_they_start_in() {
        let offsets = [(0, 2), (2, 5), (5, 6), (6, 9), (9, 12), (12, 14)];
        assert_eq!(
            token_mask(&offsets, &[(5, 9), (12, 14)]),
            vec![false, false, true, true, false, true]
        );
        assert_eq!(token_mask(&offsets, &[(3, 10)]), vec![false, false, true, true, true, false]);
        assert_eq!(token_mask(&offsets, &[]), vec![false; 6]);
    }

    #[test]
    fn content_is_found_as_the_template_writes_it() {
        assert_eq!(locate_content("ab  x y  ab x y", 3, "  x y  "), Some((4, 7)));
        assert_eq!(
            locate_content("<think>r</think>\n\nanswer", 0, "<think>zz</think>\nanswer"),
            Some((18, 24))
        );
        assert_eq!(locate_content("abc", 1, ""), Some((1, 1)));
        assert_eq!(locate_content("abc", 0, "zzz"), None);
    }
}
