//! A client for chat models behind the two wire formats that cover the teachers people use:
//! OpenAI's chat completions (OpenAI, Ollama, vLLM, llama.cpp's server, another `brain serve`)
//! and Anthropic's Messages API (`/v1/messages` with `x-api-key` and `anthropic-version`).
//!
//! Blocking (ureq, rustls): callers give it a thread of its own (`brain serve` runs it with
//! tokio's `spawn_blocking`). Every request has a deadline and every reply is read up to a
//! bound, so a teacher that hangs or floods cannot stall or exhaust the caller. Errors never
//! carry the API key.

use std::io::Read as _;
use std::time::Duration;

use serde_json::{json, Value};

/// The most bytes of a reply that are read.
pub const MAX_REPLY_BYTES: u64 = 8 << 20;
/// The `anthropic-version` header the Messages API requires.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Which wire format an endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    /// `openai`, `anthropic`, or `auto` (see [`Api::detect`]).
    pub fn parse(s: &str, url: &str) -> Result<Api, String> {
        match s {
            "openai" => Ok(Api::OpenAi),
            "anthropic" => Ok(Api::Anthropic),
            "auto" | "" => Ok(Api::detect(url)),
            other => Err(format!("unknown teacher API {other:?}: use openai, anthropic or auto")),
        }
    }

    /// Anthropic for its own host or a URL ending in `/messages`; OpenAI-compatible otherwise.
    pub fn detect(url: &str) -> Api {
        let u = url.trim_end_matches('/');
        if u.contains("anthropic.com") || u.ends_with("/messages") {
            Api::Anthropic
        } else {
            Api::OpenAi
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }
}

/// A chat model at a URL.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The base URL as configured (`http://127.0.0.1:8080/v1`, `https://api.anthropic.com`), or
    /// the full path of the chat route.
    pub url: String,
    pub api: Api,
    pub model: String,
    pub api_key: Option<String>,
    /// The whole request, connect to last byte.
    pub timeout: Duration,
}

/// What a request asks of the model beyond the messages.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatOptions {
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub seed: Option<u64>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions { max_tokens: 1024, temperature: None, seed: None }
    }
}

/// A model's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub text: String,
    /// The model that answered, as the endpoint named it.
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{url} answered HTTP {status}: {message}")]
    Status { url: String, status: u16, message: String },
    #[error("could not reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url} sent a reply that is not a chat answer: {message}")]
    Malformed { url: String, message: String },
}

impl Endpoint {
    /// The URL the chat request goes to.
    pub fn chat_url(&self) -> String {
        let base = self.url.trim_end_matches('/');
        match self.api {
            Api::OpenAi if base.ends_with("/chat/completions") => base.to_string(),
            Api::OpenAi => format!("{base}/chat/completions"),
            Api::Anthropic if base.ends_with("/messages") => base.to_string(),
            Api::Anthropic if base.ends_with("/v1") => format!("{base}/messages"),
            Api::Anthropic => format!("{base}/v1/messages"),
        }
    }

    /// The request body for `messages` ((role, content) with roles system, user, assistant).
    pub fn body(&self, messages: &[(String, String)], opts: &ChatOptions) -> Value {
        match self.api {
            Api::OpenAi => {
                let msgs: Vec<Value> = messages.iter().map(|(r, c)| json!({"role": r, "content": c})).collect();
                let mut b = json!({"model": self.model, "messages": msgs, "max_tokens": opts.max_tokens, "stream": false});
                if let Some(t) = opts.temperature {
                    b["temperature"] = json!(t);
                }
                if let Some(s) = opts.seed {
                    b["seed"] = json!(s);
                }
                b
            }
            Api::Anthropic => {
                // The Messages API takes the system prompt apart from the turns.
                let system: Vec<&str> = messages.iter().filter(|(r, _)| r == "system").map(|(_, c)| c.as_str()).collect();
                let msgs: Vec<Value> =
                    messages.iter().filter(|(r, _)| r != "system").map(|(r, c)| json!({"role": r, "content": c})).collect();
                let mut b = json!({"model": self.model, "messages": msgs, "max_tokens": opts.max_tokens});
                if !system.is_empty() {
                    b["system"] = json!(system.join("\n\n"));
                }
                if let Some(t) = opts.temperature {
                    b["temperature"] = json!(t);
                }
                b
            }
        }
    }

    /// Sends one chat request and returns the answer.
    pub fn chat(&self, messages: &[(String, String)], opts: &ChatOptions) -> Result<Reply, LlmError> {
        let url = self.chat_url();
        let agent = ureq::AgentBuilder::new().timeout(self.timeout).redirects(0).build();
        let mut req = agent.post(&url).set("content-type", "application/json");
        match (self.api, &self.api_key) {
            (Api::OpenAi, Some(k)) => req = req.set("authorization", &format!("Bearer {k}")),
            (Api::Anthropic, Some(k)) => req = req.set("x-api-key", k),
            (_, None) => {}
        }
        if self.api == Api::Anthropic {
            req = req.set("anthropic-version", ANTHROPIC_VERSION);
        }
        let (status, text) = match req.send_string(&self.body(messages, opts).to_string()) {
            Ok(resp) => (resp.status(), read_bounded(resp).map_err(|message| LlmError::Transport { url: url.clone(), message })?),
            Err(ureq::Error::Status(code, resp)) => (code, read_bounded(resp).unwrap_or_default()),
            Err(ureq::Error::Transport(t)) => return Err(LlmError::Transport { url, message: t.to_string() }),
        };
        if !(200..300).contains(&status) {
            return Err(LlmError::Status { url, status, message: error_message(&text) });
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| LlmError::Malformed { url: url.clone(), message: format!("not JSON ({e})") })?;
        self.reply(&v).map_err(|message| LlmError::Malformed { url, message })
    }

    /// The answer in a reply body.
    fn reply(&self, v: &Value) -> Result<Reply, String> {
        let model = v["model"].as_str().unwrap_or(&self.model).to_string();
        let n = |x: &Value| x.as_u64().unwrap_or(0);
        match self.api {
            Api::OpenAi => {
                let text = v["choices"][0]["message"]["content"].as_str().ok_or("no choices[0].message.content")?;
                Ok(Reply { text: text.to_string(), model, prompt_tokens: n(&v["usage"]["prompt_tokens"]), completion_tokens: n(&v["usage"]["completion_tokens"]) })
            }
            Api::Anthropic => {
                let blocks = v["content"].as_array().ok_or("no content blocks")?;
                let text: String = blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect();
                if blocks.iter().all(|b| b["type"] != "text") {
                    return Err("no text block in content".into());
                }
                Ok(Reply { text, model, prompt_tokens: n(&v["usage"]["input_tokens"]), completion_tokens: n(&v["usage"]["output_tokens"]) })
            }
        }
    }
}

fn read_bounded(resp: ureq::Response) -> Result<String, String> {
    let mut bytes = Vec::new();
    resp.into_reader().take(MAX_REPLY_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_REPLY_BYTES {
        return Err(format!("the reply is larger than {} MiB", MAX_REPLY_BYTES >> 20));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The message of an error body in either format (`{"error": {"message": …}}`), else its start.
fn error_message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match v["error"]["message"].as_str().or(v["error"].as_str()) {
        Some(m) => m.chars().take(500).collect(),
        None => body.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A one-request HTTP server: returns its URL and a handle yielding (request head, body).
    fn one_shot(status: u16, reply: &'static str) -> (String, std::thread::JoinHandle<(String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            write!(s, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len()).unwrap();
            (head, String::from_utf8(body).unwrap())
        });
        (url, h)
    }

    fn endpoint(url: String, api: Api) -> Endpoint {
        Endpoint { url, api, model: "teacher-1".into(), api_key: Some("k-123".into()), timeout: Duration::from_secs(10) }
    }

    fn conversation() -> Vec<(String, String)> {
        vec![("system".into(), "Be brief.".into()), ("user".into(), "What is 2+2?".into())]
    }

    #[test]
    fn openai_wire_format() {
        let (url, h) = one_shot(200, r#"{"model":"t","choices":[{"message":{"role":"assistant","content":"4"}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}"#);
        let e = endpoint(format!("{url}/v1"), Api::OpenAi);
        let r = e.chat(&conversation(), &ChatOptions { max_tokens: 7, temperature: Some(0.0), seed: Some(1) }).unwrap();
        assert_eq!(r, Reply { text: "4".into(), model: "t".into(), prompt_tokens: 9, completion_tokens: 1 });
        let (head, body) = h.join().unwrap();
        assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
        assert!(head.to_lowercase().contains("authorization: bearer k-123"), "{head}");
        let b: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(b["messages"][0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!((b["max_tokens"].as_u64(), b["seed"].as_u64(), b["model"].as_str()), (Some(7), Some(1), Some("teacher-1")));
    }

    #[test]
    fn anthropic_wire_format() {
        let (url, h) = one_shot(200, r#"{"model":"claude-x","content":[{"type":"text","text":"Four."}],"usage":{"input_tokens":12,"output_tokens":2}}"#);
        let e = endpoint(url, Api::Anthropic);
        let r = e.chat(&conversation(), &ChatOptions::default()).unwrap();
        assert_eq!(r, Reply { text: "Four.".into(), model: "claude-x".into(), prompt_tokens: 12, completion_tokens: 2 });
        let (head, body) = h.join().unwrap();
        let lower = head.to_lowercase();
        assert!(head.starts_with("POST /v1/messages "), "{head}");
        assert!(lower.contains("x-api-key: k-123") && lower.contains("anthropic-version: 2023-06-01"), "{head}");
        assert!(!lower.contains("authorization"), "{head}");
        let b: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(b["system"], "Be brief.");
        assert_eq!(b["messages"], json!([{"role": "user", "content": "What is 2+2?"}]));
    }

    #[test]
    fn errors_say_what_the_endpoint_said_and_never_the_key() {
        let (url, h) = one_shot(401, r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#);
        let err = endpoint(url, Api::Anthropic).chat(&conversation(), &ChatOptions::default()).unwrap_err().to_string();
        h.join().unwrap();
        assert!(err.contains("HTTP 401") && err.contains("invalid x-api-key"), "{err}");
        assert!(!err.contains("k-123"), "{err}");
        let (url, h) = one_shot(200, r#"{"choices":[]}"#);
        let err = endpoint(url, Api::OpenAi).chat(&conversation(), &ChatOptions::default()).unwrap_err();
        h.join().unwrap();
        assert!(matches!(err, LlmError::Malformed { .. }), "{err}");
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let err = endpoint(format!("http://{closed}"), Api::OpenAi).chat(&conversation(), &ChatOptions::default()).unwrap_err();
        assert!(matches!(err, LlmError::Transport { .. }), "{err}");
    }

    #[test]
    fn urls_and_detection() {
        let e = |url: &str, api| Endpoint { url: url.into(), api, model: String::new(), api_key: None, timeout: Duration::from_secs(1) }.chat_url();
        assert_eq!(e("http://h:1/v1/", Api::OpenAi), "http://h:1/v1/chat/completions");
        assert_eq!(e("http://h:1/v1/chat/completions", Api::OpenAi), "http://h:1/v1/chat/completions");
        assert_eq!(e("https://api.anthropic.com", Api::Anthropic), "https://api.anthropic.com/v1/messages");
        assert_eq!(e("https://api.anthropic.com/v1", Api::Anthropic), "https://api.anthropic.com/v1/messages");
        assert_eq!(Api::detect("https://api.anthropic.com"), Api::Anthropic);
        assert_eq!(Api::detect("http://127.0.0.1:9/v1/messages"), Api::Anthropic);
        assert_eq!(Api::detect("http://127.0.0.1:11434/v1"), Api::OpenAi);
        assert!(Api::parse("grpc", "x").is_err());
    }
}
