//! A session's entries → its active branch → the turns a person had with the assistant.

use std::collections::{HashMap, HashSet};

use crate::transcript::{Block, Body, Entry, ToolResult};

/// One tool call made while answering, with its result when one was recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub input: String,
    pub result: Option<ToolResult>,
}

/// One assistant API message, merged from all lines sharing its `message.id`.
#[derive(Clone, Debug, Default)]
struct Message {
    id: String,
    model: Option<String>,
    blocks: Vec<Block>,
    /// uuid of the line holding the message's last text block (else its first line).
    uuid: Option<String>,
}

/// A human turn and everything the assistant did for it, up to the next human turn.
#[derive(Clone, Debug)]
pub struct Turn {
    pub human_uuid: String,
    pub human: String,
    /// Byte offset of the human turn's line (what incremental collection compares).
    pub start: u64,
    pub timestamp: Option<String>,
    pub cwd: Option<String>,
    pub git_branch: Option<String>,
    pub tools: Vec<ToolCall>,
    /// Non-empty thinking blocks, in order.
    pub thinking: Vec<String>,
    /// The assistant's final answer: the text of its last message, when nothing (no tool call)
    /// followed that text. `None` while the turn is unfinished or was interrupted.
    pub answer: Option<String>,
    pub answer_uuid: Option<String>,
    pub model: Option<String>,
}

/// The active branch: from the latest main-thread leaf up to the root, following `parentUuid`
/// (and `logicalParentUuid` across a compaction boundary). Returns entry indices, root first.
pub fn active_chain(entries: &[Entry]) -> Vec<usize> {
    let mut by_uuid: HashMap<&str, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let (Some(u), false) = (e.uuid.as_deref(), e.sidechain) {
            by_uuid.insert(u, i);
        }
    }
    let Some(leaf) = entries.iter().rposition(|e| e.uuid.is_some() && !e.sidechain) else {
        return vec![];
    };
    let mut chain = vec![];
    let mut seen = HashSet::new();
    let mut cur = Some(leaf);
    while let Some(i) = cur {
        if !seen.insert(i) {
            break; // a cycle: stop rather than loop
        }
        chain.push(i);
        let e = &entries[i];
        let lookup = |p: &Option<String>| p.as_deref().and_then(|u| by_uuid.get(u).copied());
        cur = lookup(&e.parent).or_else(|| if e.parent.is_none() { lookup(&e.logical_parent) } else { None });
    }
    chain.reverse();
    chain
}

/// Turns along the active chain, in order. Entries before the first human turn are ignored.
pub fn turns(entries: &[Entry]) -> Vec<Turn> {
    let mut out: Vec<(Turn, Vec<Message>)> = vec![];
    for i in active_chain(entries) {
        let e = &entries[i];
        match &e.body {
            Body::Human(text) => out.push((
                Turn {
                    human_uuid: e.uuid.clone().unwrap_or_default(),
                    human: text.clone(),
                    start: e.start,
                    timestamp: e.timestamp.clone(),
                    cwd: e.cwd.clone(),
                    git_branch: e.git_branch.clone(),
                    tools: vec![],
                    thinking: vec![],
                    answer: None,
                    answer_uuid: None,
                    model: None,
                },
                vec![],
            )),
            Body::Assistant { message_id, model, blocks } => {
                let Some((_, messages)) = out.last_mut() else { continue };
                // Lines of one API message share its id; merge them (an empty id never merges).
                let pos = messages.iter().position(|m| !message_id.is_empty() && &m.id == message_id);
                let m = match pos {
                    Some(p) => &mut messages[p],
                    None => {
                        messages.push(Message { id: message_id.clone(), model: model.clone(), ..Default::default() });
                        messages.last_mut().expect("just pushed")
                    }
                };
                if m.uuid.is_none() || blocks.iter().any(|b| matches!(b, Block::Text(t) if !t.trim().is_empty())) {
                    m.uuid = e.uuid.clone();
                }
                m.blocks.extend(blocks.iter().cloned());
            }
            Body::ToolResults(results) => {
                if let Some((turn, _)) = out.last_mut() {
                    turn.tools.extend(results.iter().map(|r| ToolCall {
                        name: String::new(),
                        input: String::new(),
                        result: Some(r.clone()),
                    }));
                }
            }
            Body::Meta | Body::CompactSummary | Body::Structural(_) => {}
        }
    }
    out.into_iter().map(|(turn, messages)| finish(turn, messages)).collect()
}

/// Pairs tool calls with their results and picks the final answer.
fn finish(mut turn: Turn, messages: Vec<Message>) -> Turn {
    let mut results: HashMap<String, ToolResult> =
        turn.tools.drain(..).filter_map(|t| t.result).map(|r| (r.tool_use_id.clone(), r)).collect();
    for m in &messages {
        for b in &m.blocks {
            match b {
                Block::ToolUse { id, name, input } => {
                    turn.tools.push(ToolCall { name: name.clone(), input: input.clone(), result: results.remove(id) })
                }
                Block::Thinking(t) if !t.trim().is_empty() => turn.thinking.push(t.trim().to_string()),
                _ => {}
            }
        }
    }
    if let Some(last) = messages.last() {
        let after_tools = match last.blocks.iter().rposition(|b| matches!(b, Block::ToolUse { .. })) {
            Some(p) => &last.blocks[p + 1..],
            None => &last.blocks[..],
        };
        let text: Vec<&str> = after_tools
            .iter()
            .filter_map(|b| match b {
                Block::Text(t) if !t.trim().is_empty() => Some(t.trim()),
                _ => None,
            })
            .collect();
        if !text.is_empty() {
            turn.answer = Some(text.join("\n\n"));
            turn.answer_uuid = last.uuid.clone();
            turn.model = last.model.clone();
        }
    }
    turn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::{parse_line, Bounds};

    fn entries(lines: &[&str]) -> Vec<Entry> {
        let mut pos = 0;
        lines
            .iter()
            .map(|l| {
                let e = parse_line(l.as_bytes(), pos, pos + l.len() as u64 + 1, &Bounds { tool_excerpt_chars: 100 }).unwrap();
                pos += l.len() as u64 + 1;
                e
            })
            .collect()
    }

    #[test]
    fn follows_the_latest_branch_and_merges_split_messages() {
        let es = entries(&[
            r#"{"type":"user","uuid":"u1","parentUuid":null,"message":{"role":"user","content":"first question"}}"#,
            r#"{"type":"assistant","uuid":"a1","parentUuid":"u1","message":{"id":"m1","content":[{"type":"text","text":"abandoned answer"}]}}"#,
            r#"{"type":"assistant","uuid":"a2","parentUuid":"u1","message":{"id":"m2","content":[{"type":"thinking","thinking":"plan"}]}}"#,
            r#"{"type":"assistant","uuid":"a3","parentUuid":"a2","message":{"id":"m2","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}}"#,
            r#"{"type":"user","uuid":"r1","parentUuid":"a3","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"a.txt"}]}}"#,
            r#"{"type":"assistant","uuid":"a4","parentUuid":"r1","message":{"id":"m3","content":[{"type":"text","text":"There is one file."}]}}"#,
        ]);
        assert_eq!(active_chain(&es), vec![0, 2, 3, 4, 5]);
        let ts = turns(&es);
        assert_eq!(ts.len(), 1);
        let t = &ts[0];
        assert_eq!(t.answer.as_deref(), Some("There is one file."));
        assert_eq!(t.answer_uuid.as_deref(), Some("a4"));
        assert_eq!(t.thinking, vec!["plan".to_string()]);
        assert_eq!(t.tools.len(), 1);
        assert_eq!(t.tools[0].name, "Bash");
        assert_eq!(t.tools[0].result.as_ref().unwrap().excerpt, "a.txt");
    }

    #[test]
    fn unfinished_turn_has_no_answer_and_cycles_terminate() {
        let es = entries(&[
            r#"{"type":"user","uuid":"u1","parentUuid":"x","message":{"role":"user","content":"go"}}"#,
            r#"{"type":"assistant","uuid":"x","parentUuid":"u1","message":{"id":"m1","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"t","name":"Read","input":{}}]}}"#,
        ]);
        let ts = turns(&es);
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0].answer, None);
    }

    #[test]
    fn crosses_compaction_by_logical_parent() {
        let es = entries(&[
            r#"{"type":"user","uuid":"u1","parentUuid":null,"message":{"role":"user","content":"q1"}}"#,
            r#"{"type":"assistant","uuid":"a1","parentUuid":"u1","message":{"id":"m1","content":[{"type":"text","text":"a1"}]}}"#,
            r#"{"type":"system","subtype":"compact_boundary","uuid":"b","parentUuid":null,"logicalParentUuid":"a1"}"#,
            r#"{"type":"user","uuid":"s","parentUuid":"b","isCompactSummary":true,"message":{"role":"user","content":"summary"}}"#,
            r#"{"type":"user","uuid":"u2","parentUuid":"s","message":{"role":"user","content":"q2"}}"#,
            r#"{"type":"assistant","uuid":"a2","parentUuid":"u2","message":{"id":"m2","content":[{"type":"text","text":"a2"}]}}"#,
        ]);
        let ts = turns(&es);
        assert_eq!(ts.iter().map(|t| t.human.as_str()).collect::<Vec<_>>(), vec!["q1", "q2"]);
    }
}
