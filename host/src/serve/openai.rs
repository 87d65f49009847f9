//! The OpenAI chat-completions wire format: the request as clients send it (lenient where the
//! API is: `content` as a string or a list of text parts, `stop` as a string or a list,
//! `max_completion_tokens` as the newer name of `max_tokens`), validated into what the generator
//! needs, and the response, chunk and error bodies.

use serde::Deserialize;
use serde_json::{json, Value};

/// The most tokens one request may ask for.
pub const MAX_TOKENS_LIMIT: usize = 8192;
/// Default `max_tokens` when a request names none.
pub const DEFAULT_MAX_TOKENS: usize = 512;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct WireRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<WireMessage>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    logit_bias: Option<std::collections::BTreeMap<String, f32>>,
}

/// A validated chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// (role, content) in order.
    pub messages: Vec<(String, String)>,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub stop: Vec<String>,
    pub seed: u64,
    pub stream: bool,
    pub include_usage: bool,
    /// (token id, bias in [-100, 100]).
    pub logit_bias: Vec<(u32, f32)>,
    /// The model the client named (answered by the one model served, whatever the name).
    pub model: Option<String>,
}

/// Parses and validates a request body; the error is the message a 400 carries.
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, String> {
    let w: WireRequest = serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?;
    if w.messages.is_empty() {
        return Err("messages must not be empty".into());
    }
    let mut messages = Vec::with_capacity(w.messages.len());
    for (i, m) in w.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => return Err(format!("messages[{i}].role {other:?} is not supported (system, user, assistant)")),
        };
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.into_iter().enumerate() {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => return Err(format!("messages[{i}].content[{j}]: only text parts are supported, not {kind:?}")),
                    }
                }
                text
            }
        };
        messages.push((role.to_string(), content));
    }
    if messages.last().is_some_and(|(r, _)| r == "assistant") {
        return Err("the last message must not be the assistant's (there is nothing to answer)".into());
    }
    let max_tokens = w.max_completion_tokens.or(w.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 || max_tokens > MAX_TOKENS_LIMIT {
        return Err(format!("max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, not {max_tokens}"));
    }
    let temperature = w.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(format!("temperature must be between 0 and 2, not {temperature}"));
    }
    let top_p = w.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(format!("top_p must be in (0, 1], not {top_p}"));
    }
    if w.n.is_some_and(|n| n != 1) {
        return Err("n must be 1 (one choice per request)".into());
    }
    let stop = match w.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if stop.len() > 4 || stop.iter().any(|s| s.is_empty()) {
        return Err("stop must be up to 4 non-empty strings".into());
    }
    let mut logit_bias = Vec::new();
    for (k, v) in w.logit_bias.unwrap_or_default() {
        let id: u32 = k.parse().map_err(|_| format!("logit_bias key {k:?} is not a token id"))?;
        if !(-100.0..=100.0).contains(&v) {
            return Err(format!("logit_bias for token {id} must be between -100 and 100, not {v}"));
        }
        logit_bias.push((id, v));
    }
    Ok(ChatRequest {
        logit_bias,
        messages,
        max_tokens,
        temperature,
        top_p,
        stop,
        seed: w.seed.unwrap_or(0),
        stream: w.stream,
        include_usage: w.stream_options.is_some_and(|o| o.include_usage),
        model: w.model,
    })
}

/// The body of an error response (OpenAI's shape).
pub fn error_body(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub prompt: usize,
    pub completion: usize,
}

impl Usage {
    pub fn json(self) -> Value {
        json!({"prompt_tokens": self.prompt, "completion_tokens": self.completion, "total_tokens": self.prompt + self.completion})
    }
}

/// A whole (non-streamed) completion.
pub fn completion(id: &str, created: u64, model: &str, text: &str, finish: &str, usage: Usage) -> Value {
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish}],
        "usage": usage.json(),
    })
}

/// One streamed chunk: `delta` is `{"role": …}`, `{"content": …}` or `{}` with the finish reason.
pub fn chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

/// The last chunk when the client asked for usage: no choices, the counts.
pub fn usage_chunk(id: &str, created: u64, model: &str, usage: Usage) -> Value {
    json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage.json()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_leniently_and_validate() {
        let r = parse_request(br#"{"model": "x", "messages": [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}],
            "max_completion_tokens": 7, "stop": "END", "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}"#)
        .unwrap();
        assert_eq!(r.messages, vec![("system".to_string(), "be brief".to_string()), ("user".to_string(), "hi there".to_string())]);
        assert_eq!((r.max_tokens, r.temperature, r.stop.clone(), r.stream, r.include_usage), (7, 0.0, vec!["END".to_string()], true, true));
        for (body, needle) in [
            (&br#"{"messages": []}"#[..], "empty"),
            (br#"{"messages": [{"role": "tool", "content": "x"}]}"#, "tool"),
            (br#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#, "max_tokens"),
            (br#"{"messages": [{"role": "user", "content": "x"}], "temperature": 3}"#, "temperature"),
            (br#"{"messages": [{"role": "user", "content": "x"}], "n": 2}"#, "n must be 1"),
            (br#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, "image_url"),
            (br#"{"messages": "#, "invalid request body"),
        ] {
            let e = parse_request(body).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
