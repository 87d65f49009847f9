//! The `llm` capability: chat requests to language-model endpoints granted to a plugin.
//!
//! Plugins have no network; the host makes the request for them with the blocking client in
//! [`crate::llm`], and only to an endpoint the config grants (`grants = { llm = ["…/v1"] }`),
//! matched exactly (a trailing `/` aside: no prefixes, so `…/v1.evil.com` is not `…/v1`). The API
//! key comes from the environment variable the grant names (`llm_key_env`), read when the call
//! is made, never from the plugin, the config file or the store. Each request runs under what is
//! left of the plugin call's deadline; its reply is read up to a bound; its calls and tokens are
//! counted in the source's [`LlmMeter`] against its [`LlmBudget`] for one collect. What the model
//! answers is text for the plugin only: it reaches the store only as part of an example, which is
//! scrubbed like every other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{deadline_trap, Denial};
use crate::llm::{Api, ChatOptions as WireOptions, Endpoint};
use crate::plugin::bindings::source::sam::plugin::llm::{ChatOptions, ChatReply, Host};
use crate::plugin::bindings::source::sam::plugin::types::{Message, Role};
use crate::plugin::state::HostState;

/// Most messages in one request.
pub const MAX_MESSAGES: usize = 256;
/// Most bytes of message text in one request.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Most tokens one reply may ask for, whatever the plugin says.
pub const MAX_REPLY_TOKENS: u32 = 16_384;

/// The endpoints one plugin may ask, the key to send, and its budget and meter.
#[derive(Clone, Debug, Default)]
pub struct LlmGrant {
    /// Endpoint base URLs as configured (`http://127.0.0.1:8080/v1`, `https://api.anthropic.com`).
    pub endpoints: Vec<String>,
    /// The environment variable holding the API key sent to these endpoints.
    pub key_env: Option<String>,
    pub budget: LlmBudget,
    /// Shared with whoever reports the usage (the collect's per-source counters).
    pub meter: Arc<LlmMeter>,
}

/// Calls and tokens (prompt + completion) one source may use in one collect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LlmBudget {
    pub calls: u64,
    pub tokens: u64,
}

impl Default for LlmBudget {
    /// No limit: the collect sets the configured one.
    fn default() -> Self {
        LlmBudget { calls: u64::MAX, tokens: u64::MAX }
    }
}

/// What a source has used, for the collect report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LlmUsage {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl LlmUsage {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Counts the calls and tokens of one source; remembers why it was stopped at its budget.
#[derive(Debug, Default)]
pub struct LlmMeter {
    calls: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    stopped: Mutex<Option<String>>,
}

impl LlmMeter {
    pub fn usage(&self) -> LlmUsage {
        LlmUsage {
            calls: self.calls.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
        }
    }

    /// Why the source was refused a call for being over its budget, if it was.
    pub fn stopped(&self) -> Option<String> {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes one call from `budget`, returning the most completion tokens it may ask for, or
    /// says which budget is spent (and remembers it).
    pub fn reserve(&self, budget: &LlmBudget, max_tokens: u32) -> Result<u32, String> {
        let used = self.usage();
        let over = if used.calls >= budget.calls {
            Some((format!("{} calls", budget.calls), "llm_calls", "max_llm_calls"))
        } else if used.tokens() >= budget.tokens {
            Some((format!("{} tokens", budget.tokens), "llm_tokens", "max_llm_tokens"))
        } else {
            None
        };
        if let Some((limit, key, default_key)) = over {
            let msg = format!(
                "stopped at its llm budget of {limit} per collect, after {} calls and {} tokens; what it produced before is stored \
                 (raise it with `budget = {{ {key} = … }}` on the source, or [plugins] {default_key})",
                used.calls,
                used.tokens()
            );
            *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg.clone());
            return Err(msg);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let left = budget.tokens - used.tokens();
        Ok(u64::from(max_tokens.clamp(1, MAX_REPLY_TOKENS)).min(left) as u32)
    }

    pub fn add_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens.fetch_add(completion, Ordering::Relaxed);
    }
}

/// An endpoint URL as compared: without trailing slashes.
pub fn normalize(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// The granted endpoint `requested` names, if any: equal after [`normalize`], nothing else.
pub fn granted<'a>(endpoints: &'a [String], requested: &str) -> Option<&'a str> {
    let want = normalize(requested);
    endpoints.iter().map(|e| normalize(e)).find(|e| !e.is_empty() && *e == want)
}

/// Why a configured endpoint cannot be granted (checked when the config loads).
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || normalize(url).len() <= "https://".len() {
        return Err(format!("`{url}` is not an http:// or https:// endpoint URL"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` contains whitespace"));
    }
    Ok(())
}

fn role(r: Role) -> Result<&'static str, String> {
    match r {
        Role::System => Ok("system"),
        Role::User => Ok("user"),
        Role::Assistant => Ok("assistant"),
        Role::Tool => Err("llm.chat takes system, user and assistant messages, not tool".into()),
    }
}

impl HostState {
    fn llm_chat(&mut self, endpoint: &str, messages: Vec<Message>, options: ChatOptions) -> Result<ChatReply, String> {
        let grant = &self.caps.llm;
        let Some(url) = granted(&grant.endpoints, endpoint).map(str::to_string) else {
            let why = if grant.endpoints.is_empty() { "this plugin has no `llm` grant" } else { "it is not one of the granted endpoints" };
            self.caps.denial = Some(Denial { capability: "llm", path: endpoint.to_string() });
            return Err(format!("access to `{endpoint}` denied: {why}; grant it in brain.toml with `grants = {{ llm = [\"...\"] }}`"));
        };
        if messages.is_empty() || messages.len() > MAX_MESSAGES {
            return Err(format!("a chat request holds 1 to {MAX_MESSAGES} messages, not {}", messages.len()));
        }
        let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        if bytes > MAX_REQUEST_BYTES {
            return Err(format!("a chat request holds at most {} KiB of text, not {} KiB", MAX_REQUEST_BYTES >> 10, bytes >> 10));
        }
        if options.model.len() > 256 {
            return Err("the model name is longer than 256 bytes".into());
        }
        let turns = messages.into_iter().map(|m| Ok((role(m.role)?.to_string(), m.content))).collect::<Result<Vec<_>, String>>()?;
        let api_key = match &grant.key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => return Err(format!("the environment variable `{var}` (the grant's `llm_key_env`) holding the API key is not set")),
            },
            None => None,
        };
        let timeout = match self.caps.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(300),
        };
        if timeout.is_zero() {
            return Err("the plugin call's deadline has passed".into());
        }
        let max_tokens = grant.meter.reserve(&grant.budget, options.max_tokens)?;
        let endpoint = Endpoint { api: Api::detect(&url), url, model: options.model, api_key, timeout };
        let opts = WireOptions { max_tokens, temperature: options.temperature, seed: options.seed };
        let reply = endpoint.chat(&turns, &opts).map_err(|e| e.to_string())?;
        grant.meter.add_tokens(reply.prompt_tokens, reply.completion_tokens);
        Ok(ChatReply { text: reply.text, model: reply.model, prompt_tokens: reply.prompt_tokens, completion_tokens: reply.completion_tokens })
    }
}

impl Host for HostState {
    fn chat(&mut self, endpoint: String, messages: Vec<Message>, options: ChatOptions) -> wasmtime::Result<Result<ChatReply, String>> {
        let result = self.llm_chat(&endpoint, messages, options);
        deadline_trap(self.caps.deadline, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_match_exactly_but_for_a_trailing_slash() {
        let g = vec!["http://127.0.0.1:8080/v1".to_string(), "https://api.anthropic.com/".to_string()];
        assert_eq!(granted(&g, "http://127.0.0.1:8080/v1"), Some("http://127.0.0.1:8080/v1"));
        assert_eq!(granted(&g, "http://127.0.0.1:8080/v1/"), Some("http://127.0.0.1:8080/v1"));
        assert_eq!(granted(&g, "https://api.anthropic.com"), Some("https://api.anthropic.com"));
        for no in [
            "http://127.0.0.1:8080/v1.evil.com",
            "http://127.0.0.1:8080/v1/../admin",
            "http://127.0.0.1:8080/v1/chat/completions",
            "http://127.0.0.1:8080/v",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/v1@evil.com",
            "http://127.0.0.1:80801/v1",
            "https://127.0.0.1:8080/v1",
            "",
            "/",
        ] {
            assert_eq!(granted(&g, no), None, "{no:?} was granted");
        }
        assert_eq!(granted(&[], "http://127.0.0.1:8080/v1"), None);
        // An empty grant entry grants nothing (not even an empty request).
        assert_eq!(granted(&["/".to_string()], ""), None);
    }

    #[test]
    fn configured_endpoints_must_be_http_urls() {
        assert!(check_endpoint("http://127.0.0.1:8080/v1").is_ok());
        assert!(check_endpoint("https://api.anthropic.com").is_ok());
        for bad in ["127.0.0.1:8080", "file:///etc/passwd", "https://", "http:// x", ""] {
            assert!(check_endpoint(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_call_budget_refuses_the_call_past_it() {
        let m = LlmMeter::default();
        let b = LlmBudget { calls: 2, tokens: u64::MAX };
        assert_eq!(m.reserve(&b, 100), Ok(100));
        assert_eq!(m.reserve(&b, 100), Ok(100));
        let err = m.reserve(&b, 100).unwrap_err();
        assert!(err.contains("llm budget of 2 calls") && err.contains("after 2 calls") && err.contains("llm_calls"), "{err}");
        assert_eq!(m.usage().calls, 2, "a refused call is not counted");
        assert_eq!(m.stopped().as_deref(), Some(err.as_str()));
    }

    #[test]
    fn the_token_budget_bounds_the_reply_and_then_refuses() {
        let m = LlmMeter::default();
        let b = LlmBudget { calls: u64::MAX, tokens: 100 };
        assert_eq!(m.reserve(&b, 1000), Ok(100), "a reply may not ask for more than is left");
        m.add_tokens(30, 40);
        assert_eq!(m.usage(), LlmUsage { calls: 1, prompt_tokens: 30, completion_tokens: 40 });
        assert_eq!(m.reserve(&b, 1000), Ok(30));
        m.add_tokens(10, 20);
        let err = m.reserve(&b, 1000).unwrap_err();
        assert!(err.contains("100 tokens") && err.contains("after 2 calls and 100 tokens") && err.contains("max_llm_tokens"), "{err}");
        assert!(m.stopped().is_some());
        // The plugin's own bound is capped too.
        let m = LlmMeter::default();
        assert_eq!(m.reserve(&LlmBudget::default(), u32::MAX), Ok(MAX_REPLY_TOKENS));
        assert_eq!(m.reserve(&LlmBudget::default(), 0), Ok(1));
    }
}
