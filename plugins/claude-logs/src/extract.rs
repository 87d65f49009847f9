//! Turns → training examples: chat, reasoning, correction + preference pair, principle.

use sam_plugin::source::{assistant, user, Discards, Example, Kind, Message, Role};
use serde_json::json;

use crate::session::Turn;
use crate::Config;

/// Where a session came from, for provenance and metadata.
pub struct SessionRef<'a> {
    /// The file's path relative to its root, e.g. `-Users-me-code-app/<session>.jsonl`.
    pub file: &'a str,
    pub session_id: &'a str,
}

/// Examples for the turns that start at or after byte `emit_from`. Turns before it only serve as
/// context. An unfinished last turn is left for a later run (see [`resume_offset`]).
pub fn examples(turns: &[Turn], emit_from: u64, session: &SessionRef, cfg: &Config, discards: &mut Discards) -> Vec<Example> {
    let mut out = vec![];
    for (i, turn) in turns.iter().enumerate() {
        if turn.start < emit_from {
            continue;
        }
        let last = i + 1 == turns.len();
        if last && turn.answer.is_none() {
            break; // unfinished: read again next time (see `resume_offset`)
        }
        if cfg.principles {
            for p in principles(&turn.human) {
                out.push(principle_example(&p, turn, session));
            }
        }
        let Some(answer) = turn.answer.as_deref() else {
            discards.add("no_final_answer");
            continue;
        };
        if answer.chars().count() > cfg.max_answer_chars {
            discards.add("answer_too_long");
            continue;
        }
        let previous = i.checked_sub(1).map(|p| &turns[p]).filter(|p| p.answer.is_some());
        let correction = cfg.corrections && previous.is_some() && is_correction(&turn.human, &cfg.correction_phrases);
        if correction {
            let prev = previous.expect("checked above");
            let context = context(&turns[..i - 1], cfg.context_tokens);
            out.push(correction_example(&context, prev, turn, i, session, cfg));
            match preference_example(&context, prev, turn, i, session) {
                Some(p) => out.push(p),
                None => discards.add("preference_same_answers"),
            }
            continue;
        }
        let corrected_later =
            cfg.corrections && turns.get(i + 1).is_some_and(|n| n.answer.is_some() && is_correction(&n.human, &cfg.correction_phrases));
        if corrected_later {
            // The next turn says this answer was wrong: it must not be trained as a good one.
            discards.add("answer_corrected_later");
            continue;
        }
        let context = context(&turns[..i], cfg.context_tokens);
        out.push(chat_example(&context, turn, i, session, cfg));
        if cfg.reasoning && !turn.thinking.is_empty() {
            let thinking = turn.thinking.join("\n\n");
            if thinking.chars().count() > cfg.max_thinking_chars {
                discards.add("thinking_too_long");
            } else {
                out.push(reasoning_example(&thinking, turn, i, session));
            }
        }
    }
    out
}

/// The offset a checkpoint should keep: the start of an unfinished last turn, so that it is read
/// again next time; else `end` (everything read).
pub fn resume_offset(turns: &[Turn], end: u64) -> u64 {
    match turns.last() {
        Some(t) if t.answer.is_none() => t.start,
        _ => end,
    }
}

/// Earlier exchanges (human turn + final answer), newest kept first, within a token budget
/// (estimated as characters / 4), returned oldest first.
fn context(before: &[Turn], budget_tokens: usize) -> Vec<Message> {
    let mut kept: Vec<&Turn> = vec![];
    let mut used = 0;
    for t in before.iter().rev() {
        let Some(a) = &t.answer else { continue };
        let cost = estimate_tokens(&t.human) + estimate_tokens(a);
        if used + cost > budget_tokens {
            break;
        }
        used += cost;
        kept.push(t);
    }
    kept.iter().rev().flat_map(|t| [user(t.human.clone()), assistant(t.answer.clone().unwrap_or_default())]).collect()
}

fn estimate_tokens(s: &str) -> usize {
    s.len().div_ceil(4)
}

/// The tool traffic of a turn as one `tool` message: name, bounded input and result excerpts.
fn tool_summary(turn: &Turn, cfg: &Config) -> Option<Message> {
    if !cfg.summarize_tools() || turn.tools.is_empty() {
        return None;
    }
    let mut s = String::from("Tool calls made before answering:");
    for t in turn.tools.iter().take(cfg.max_tools) {
        s.push_str(&format!("\n- {}", if t.name.is_empty() { "tool" } else { &t.name }));
        if !t.input.is_empty() {
            s.push_str(&format!(" {}", t.input));
        }
        match &t.result {
            Some(r) => {
                let label = if r.is_error { "error" } else { "result" };
                s.push_str(&format!("\n  {label} ({} chars): {}", r.total_chars, r.excerpt.replace('\n', "\n  ")));
            }
            None => s.push_str("\n  (no result recorded)"),
        }
    }
    if turn.tools.len() > cfg.max_tools {
        s.push_str(&format!("\n… and {} more tool calls", turn.tools.len() - cfg.max_tools));
    }
    Some(Message { role: Role::Tool, content: s })
}

fn provenance(session: &SessionRef, uuid: &str) -> String {
    format!("{}#{}", session.file, uuid)
}

fn metadata(turn: &Turn, index: usize, session: &SessionRef, extra: serde_json::Value) -> String {
    let mut m = json!({
        "session": session.session_id,
        "file": session.file,
        "turn": index,
        "human_uuid": turn.human_uuid,
        "answer_uuid": turn.answer_uuid,
        "timestamp": turn.timestamp,
        "cwd": turn.cwd,
        "git_branch": turn.git_branch,
        "model": turn.model,
        "tools": turn.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
    });
    if let (Some(m), serde_json::Value::Object(extra)) = (m.as_object_mut(), extra) {
        m.extend(extra);
    }
    m.to_string()
}

fn chat_example(context: &[Message], turn: &Turn, index: usize, session: &SessionRef, cfg: &Config) -> Example {
    let mut messages = context.to_vec();
    messages.push(user(turn.human.clone()));
    messages.extend(tool_summary(turn, cfg));
    messages.push(assistant(turn.answer.clone().unwrap_or_default()));
    Example {
        kind: Kind::Chat,
        task: "chat".into(),
        messages,
        rejected: None,
        provenance: provenance(session, &turn.human_uuid),
        metadata: metadata(turn, index, session, json!({ "context_turns": context.len() / 2 })),
    }
}

fn reasoning_example(thinking: &str, turn: &Turn, index: usize, session: &SessionRef) -> Example {
    let answer = turn.answer.as_deref().unwrap_or_default();
    Example {
        kind: Kind::Reasoning,
        task: "chain-of-thought".into(),
        messages: vec![user(turn.human.clone()), assistant(format!("<think>\n{thinking}\n</think>\n\n{answer}"))],
        rejected: None,
        provenance: provenance(session, &turn.human_uuid),
        metadata: metadata(turn, index, session, json!({ "format": "think-tags", "thinking_blocks": turn.thinking.len() })),
    }
}

fn correction_example(context: &[Message], wrong: &Turn, fix: &Turn, index: usize, session: &SessionRef, cfg: &Config) -> Example {
    let mut messages = context.to_vec();
    messages.push(user(wrong.human.clone()));
    messages.push(assistant(wrong.answer.clone().unwrap_or_default()));
    messages.push(user(fix.human.clone()));
    messages.extend(tool_summary(fix, cfg));
    messages.push(assistant(fix.answer.clone().unwrap_or_default()));
    Example {
        kind: Kind::Correction,
        task: "correction".into(),
        messages,
        rejected: None,
        provenance: provenance(session, &fix.human_uuid),
        metadata: metadata(
            fix,
            index,
            session,
            json!({ "wrong_answer_uuid": wrong.answer_uuid, "supersedes": provenance(session, &wrong.human_uuid) }),
        ),
    }
}

/// Prompt = the original question, chosen = the fix (its opening apology removed), rejected =
/// the wrong answer.
fn preference_example(context: &[Message], wrong: &Turn, fix: &Turn, index: usize, session: &SessionRef) -> Option<Example> {
    let rejected = wrong.answer.clone().unwrap_or_default();
    let chosen = strip_apology(fix.answer.as_deref().unwrap_or_default());
    if chosen.trim().is_empty() || chosen.trim() == rejected.trim() {
        return None;
    }
    let mut messages = context.to_vec();
    messages.push(user(wrong.human.clone()));
    messages.push(assistant(chosen));
    Some(Example {
        kind: Kind::Preference,
        task: "correction".into(),
        messages,
        rejected: Some(rejected),
        provenance: provenance(session, &fix.human_uuid),
        metadata: metadata(
            fix,
            index,
            session,
            json!({ "prompt_uuid": wrong.human_uuid, "rejected_uuid": wrong.answer_uuid, "correction": fix.human }),
        ),
    })
}

fn principle_example(principle: &str, turn: &Turn, session: &SessionRef) -> Example {
    Example {
        kind: Kind::Principle,
        task: "principle".into(),
        messages: vec![user(principle.to_string())],
        rejected: None,
        provenance: provenance(session, &turn.human_uuid),
        metadata: json!({
            "session": session.session_id,
            "file": session.file,
            "human_uuid": turn.human_uuid,
            "timestamp": turn.timestamp,
            "cwd": turn.cwd,
            "stated_in": sam_excerpt(&turn.human, 300),
        })
        .to_string(),
    }
}

fn sam_excerpt(s: &str, n: usize) -> String {
    crate::transcript::excerpt(s, n)
}

/// Phrases that open a correction ("no, …", "that's wrong …").
const CORRECTION_OPENINGS: &[&str] = &[
    "no,",
    "no.",
    "no!",
    "nope",
    "wrong",
    "incorrect",
    "not quite",
    "not right",
    "that's wrong",
    "that is wrong",
    "that's not right",
    "that's incorrect",
    "that is incorrect",
    "this is wrong",
    "you're wrong",
    "you are wrong",
    "actually, that",
    "that doesn't work",
    "that didn't work",
    "this doesn't work",
    "it doesn't work",
    "it didn't work",
    "still broken",
    "still fails",
    "still failing",
    "still doesn't work",
    "still not working",
];

/// Phrases that say the previous answer was wrong anywhere in the first sentences.
const CORRECTION_PHRASES: &[&str] = &[
    "that's wrong",
    "that is wrong",
    "this is wrong",
    "it's wrong",
    "answer is wrong",
    "you're wrong",
    "you are wrong",
    "that's not right",
    "that's incorrect",
    "that is incorrect",
    "is not correct",
    "isn't correct",
    "isn't right",
    "you made a mistake",
    "that's not what i",
    "that is not what i",
    "doesn't work",
    "didn't work",
    "does not work",
    "did not work",
    "still fails",
    "still failing",
    "still broken",
    "that broke",
    "you broke",
    "wrong answer",
    "not what i asked",
];

/// Whether a human turn says the previous answer was wrong (plus any configured phrases).
pub fn is_correction(text: &str, extra: &[String]) -> bool {
    let head: String = text.chars().take(240).collect::<String>().to_lowercase().replace('’', "'");
    let head = head.trim_start();
    CORRECTION_OPENINGS.iter().any(|p| head.starts_with(p))
        || CORRECTION_PHRASES.iter().any(|p| head.contains(p))
        || extra.iter().any(|p| !p.is_empty() && head.contains(&p.to_lowercase()))
}

/// Removes an opening sentence such as "You're right, I apologize." from a fix, so that it reads
/// as a direct answer to the original question.
pub fn strip_apology(answer: &str) -> String {
    const OPENERS: &[&str] = &[
        "you're right",
        "you are right",
        "you're absolutely right",
        "you are absolutely right",
        "sorry",
        "my apologies",
        "i apologize",
        "apologies",
        "good catch",
        "my mistake",
        "my bad",
    ];
    let trimmed = answer.trim_start();
    let lower = trimmed.to_lowercase().replace('’', "'");
    if !OPENERS.iter().any(|o| lower.starts_with(o)) {
        return answer.trim().to_string();
    }
    let end = trimmed
        .char_indices()
        .find(|&(i, c)| c == '\n' || (matches!(c, '.' | '!') && trimmed[i + 1..].starts_with(char::is_whitespace)))
        .map(|(i, c)| i + c.len_utf8());
    match end {
        Some(e) if !trimmed[e..].trim().is_empty() => trimmed[e..].trim().to_string(),
        _ => answer.trim().to_string(),
    }
}

/// Rules the person states: sentences that begin with "always" or "never" (after "please",
/// "from now on", …), outside code blocks, not questions.
pub fn principles(text: &str) -> Vec<String> {
    const LEADS: &[&str] = &[
        "please ",
        "remember to ",
        "remember: ",
        "and ",
        "also ",
        "from now on, ",
        "from now on ",
        "going forward, ",
        "in the future, ",
        "important: ",
    ];
    let mut out = vec![];
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        for sentence in split_sentences(line) {
            let mut s = sentence.trim().trim_start_matches(['-', '*', '>', ' ']);
            let mut changed = true;
            while changed {
                changed = false;
                for lead in LEADS {
                    if s.len() >= lead.len() && s[..lead.len()].eq_ignore_ascii_case(lead) {
                        s = s[lead.len()..].trim_start();
                        changed = true;
                    }
                }
            }
            let lower = s.to_lowercase();
            let rule = ["always ", "never ", "don't ever ", "do not ever "].iter().any(|p| lower.starts_with(p));
            let words = s.split_whitespace().count();
            if rule && !s.ends_with('?') && (3..=60).contains(&words) {
                let mut p: String = s.trim_end_matches(['.', '!', ',', ';', ':']).to_string();
                if let Some(first) = p.chars().next() {
                    p.replace_range(..first.len_utf8(), &first.to_uppercase().to_string());
                }
                p.push('.');
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn split_sentences(line: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut start = 0;
    for (i, c) in line.char_indices() {
        if matches!(c, '.' | '!' | '?' | ';') && line[i + 1..].starts_with(' ') {
            out.push(&line[start..=i]);
            start = i + 1;
        }
    }
    out.push(&line[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correction_phrases() {
        for yes in [
            "No, that's wrong: the flag is --release.",
            "That doesn't work, it panics",
            "Nope. Use the v2 API.",
            "Hmm, that's not right either",
            "You’re wrong about the default",
        ] {
            assert!(is_correction(yes, &[]), "{yes}");
        }
        for no in [
            "Now add a test",
            "Nothing else, thanks",
            "What is wrong with this code?",
            "Notes: add docs",
            "Great, now wrong-foot the parser",
        ] {
            assert!(!is_correction(no, &[]), "{no}");
        }
        assert!(is_correction("Not what we agreed", &["not what we agreed".into()]));
    }

    #[test]
    fn apology_is_removed_from_the_chosen_answer() {
        assert_eq!(strip_apology("You're right, I apologize. Use `cargo build --release`."), "Use `cargo build --release`.");
        assert_eq!(strip_apology("Use X."), "Use X.");
        assert_eq!(strip_apology("Sorry!"), "Sorry!");
    }

    #[test]
    fn principles_are_rules_outside_code() {
        let t = "Thanks. Please always run cargo fmt before committing. Never push to main! Always?\n```\nnever do this in code\n```\n- from now on, always use tabs in Makefiles";
        assert_eq!(principles(t), vec!["Always run cargo fmt before committing.", "Never push to main.", "Always use tabs in Makefiles."]);
        assert!(principles("Should we always do this?").is_empty());
    }
}
