//! One example rendered in each dataset form. Every function returns `None` when the example
//! does not fit the form (e.g. no final assistant answer, no rejected answer).

use serde_json::{json, Map, Value};

use crate::example::{Example, Message, Role};
use crate::store::StoredExample;

/// The forms of a snapshot, as directory names.
pub const FORMS: [&str; 5] = ["chat", "instruct", "preference", "preference/conversational", "raw"];

fn message(m: &Message) -> Value {
    json!({ "role": m.role.as_str(), "content": m.content })
}

/// The conversation before the final answer, and the final answer, when the last message is
/// the assistant's and something comes before it.
fn split_answer(ex: &Example) -> Option<(&[Message], &Message)> {
    let (last, context) = ex.messages.split_last()?;
    (last.role == Role::Assistant && !context.is_empty() && !last.content.trim().is_empty()).then_some((context, last))
}

/// `{"messages": [...], "kind", "task"}` — mlx-lm's chat format (a preference pair contributes
/// its chosen answer); `kind` and `task` are what `brain eval` reads (routing accuracy is scored
/// on `kind: routing` lines), and trainers ignore them. `phase` (curriculum) is added for
/// trainers that honour it; mlx-lm ignores it.
pub fn chat(ex: &Example, phase: Option<u32>) -> Option<Value> {
    split_answer(ex)?;
    let mut obj = Map::new();
    obj.insert("messages".into(), Value::Array(ex.messages.iter().map(message).collect()));
    obj.insert("kind".into(), json!(ex.kind.as_str()));
    if !ex.task.is_empty() {
        obj.insert("task".into(), json!(ex.task));
    }
    if let Some(p) = phase {
        obj.insert("phase".into(), json!(p));
    }
    Some(Value::Object(obj))
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "System",
        Role::User => "User",
        Role::Assistant => "Assistant",
        Role::Tool => "Tool",
    }
}

fn render_turns(turns: &[Message]) -> String {
    turns.iter().map(|m| format!("{}: {}", role_name(m.role), m.content)).collect::<Vec<_>>().join("\n\n")
}

/// The instruction (the last user turn before the answer) and the context before it.
fn instruction(context: &[Message]) -> (String, String) {
    match context.iter().rposition(|m| m.role == Role::User) {
        Some(i) => (context[i].content.clone(), {
            let mut rest: Vec<Message> = context[..i].to_vec();
            rest.extend_from_slice(&context[i + 1..]);
            render_turns(&rest)
        }),
        None => (render_turns(context), String::new()),
    }
}

/// Alpaca: `{"instruction", "input", "output"}`; `input` holds any earlier turns.
pub fn instruct(ex: &Example) -> Option<Value> {
    let (context, answer) = split_answer(ex)?;
    let (instruction, input) = instruction(context);
    Some(json!({ "instruction": instruction, "input": input, "output": answer.content }))
}

/// `{"prompt", "chosen", "rejected"}` as strings (the prompt is the last user turn, with any
/// earlier turns rendered before it).
pub fn preference(ex: &Example) -> Option<Value> {
    let rejected = ex.rejected.as_deref().filter(|r| !r.trim().is_empty())?;
    let (context, chosen) = split_answer(ex)?;
    let prompt = if context.len() == 1 && context[0].role == Role::User { context[0].content.clone() } else { render_turns(context) };
    Some(json!({ "prompt": prompt, "chosen": chosen.content, "rejected": rejected }))
}

/// The conversational variant: `prompt` is the message list, `chosen` and `rejected` are
/// one-message assistant lists.
pub fn preference_conversational(ex: &Example) -> Option<Value> {
    let rejected = ex.rejected.as_deref().filter(|r| !r.trim().is_empty())?;
    let (context, chosen) = split_answer(ex)?;
    Some(json!({
        "prompt": context.iter().map(message).collect::<Vec<_>>(),
        "chosen": [message(chosen)],
        "rejected": [{ "role": "assistant", "content": rejected }],
    }))
}

/// Everything, with metadata (no time stamps: snapshots are reproducible).
pub fn raw(s: &StoredExample, score: Option<f64>, complexity: Option<u8>) -> Value {
    let ex = &s.example;
    let mut obj = Map::new();
    obj.insert("id".into(), json!(s.id));
    obj.insert("source".into(), json!(s.source));
    obj.insert("plugin".into(), json!(s.plugin));
    obj.insert("kind".into(), json!(ex.kind.as_str()));
    obj.insert("task".into(), json!(ex.task));
    obj.insert("provenance".into(), json!(ex.provenance));
    obj.insert("messages".into(), Value::Array(ex.messages.iter().map(message).collect()));
    if let Some(r) = &ex.rejected {
        obj.insert("rejected".into(), json!(r));
    }
    obj.insert("metadata".into(), ex.metadata.clone());
    obj.insert("scrub_counts".into(), json!(s.scrub_counts));
    obj.insert("score".into(), score.map_or(Value::Null, |s| json!((s * 1e6).round() / 1e6)));
    obj.insert("complexity".into(), complexity.map_or(Value::Null, |c| json!(c)));
    Value::Object(obj)
}
