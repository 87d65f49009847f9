//! Source plugin `teacher`: training examples written by a stronger model through the host's
//! `llm` capability. Two modes (see README.md):
//!
//! - `generate` (default): `count` instruction/answer pairs for a `domain`, each from two calls
//!   (the teacher writes a request on a topic, then answers it), topics and seeds varied per
//!   example so a greedy server does not repeat itself.
//! - `principles`: each correction example of a brain store (read through the `sqlite`
//!   capability) becomes one short "Always …"/"Never …" principle.
//!
//! One example per `next` call: each costs one or two model requests, and every call into a
//! plugin has a deadline. The checkpoint says how far it got, so the next collect goes on from
//! there (and a finished `generate` makes nothing new until `count` is raised).

use sam_plugin::source::{assistant, llm, sqlite, user, Batch, Discards, Example, Kind, Message, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The teacher's base URL; must be granted (`grants = { llm = [...] }`).
    pub endpoint: String,
    pub model: String,
    #[serde(default)]
    pub mode: Mode,
    /// What the examples are about (`generate`), e.g. `rust`, `sql`, `git`.
    #[serde(default)]
    pub domain: String,
    /// `generate`: how many examples in all (over every collect). `principles`: at most this
    /// many per collect (0 = every correction not turned yet).
    #[serde(default)]
    pub count: u32,
    /// Topics cycled through, one per example; default: general facets of a domain.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Sampling temperature of the requests; default 0.9 (instructions) and the endpoint's own
    /// (answers, principles).
    pub temperature: Option<f32>,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// `principles`: the brain store to read corrections from, an absolute path (or `~/…`)
    /// granted with `grants = { sqlite = [...] }`.
    pub store: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Generate,
    Principles,
}

fn default_max_tokens() -> u32 {
    1024
}

/// Facets cycled through when the config names no topics.
const FACETS: &[&str] = &[
    "a concept a beginner finds confusing",
    "debugging a concrete error",
    "a step-by-step how-to",
    "comparing two approaches and when to use each",
    "a subtle edge case",
    "performance",
    "testing",
    "security pitfalls",
    "reading and explaining a short piece of code or configuration",
    "designing a small component",
    "refactoring for clarity",
    "a common mistake and how to avoid it",
];

/// Longest correction text shown to the teacher.
const MAX_CORRECTION_CHARS: usize = 8000;

/// Where a run is: examples generated so far (`generate`), the last correction's rowid
/// (`principles`). Tied to the domain so a new domain starts over.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
struct Checkpoint {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    generated: u32,
    #[serde(default)]
    after_rowid: i64,
}

pub struct Teacher {
    cfg: Config,
    at: Checkpoint,
    store: Option<sqlite::Connection>,
    /// Principles emitted in this collect.
    emitted: u32,
    done: bool,
}

impl sam_plugin::Source for Teacher {
    fn open(config: serde_json::Value, checkpoint: Option<String>) -> Result<Self, String> {
        let cfg: Config = serde_json::from_value(config).map_err(|e| format!("bad teacher config: {e}"))?;
        if cfg.endpoint.trim().is_empty() || cfg.model.trim().is_empty() {
            return Err("bad teacher config: `endpoint` and `model` must be set".into());
        }
        let key = match cfg.mode {
            Mode::Generate => {
                if cfg.domain.trim().is_empty() {
                    return Err("bad teacher config: `domain` must be set (e.g. domain = \"rust\")".into());
                }
                cfg.domain.clone()
            }
            Mode::Principles => "principles".to_string(),
        };
        let mut at: Checkpoint = checkpoint.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
        if at.domain != key {
            at = Checkpoint { domain: key, ..Default::default() };
        }
        let store = match cfg.mode {
            Mode::Generate => None,
            Mode::Principles => {
                let path = cfg.store.as_deref().ok_or("bad teacher config: principles mode needs `store`, the brain.db to read corrections from")?;
                Some(sqlite::Connection::open(path)?)
            }
        };
        Ok(Teacher { cfg, at, store, emitted: 0, done: false })
    }

    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        if self.done {
            return Ok(None);
        }
        let mut discards = Discards::default();
        let example = match self.cfg.mode {
            Mode::Generate => {
                if self.at.generated >= self.cfg.count {
                    self.done = true;
                    return Ok(None);
                }
                let ex = self.generate(self.at.generated, &mut discards)?;
                self.at.generated += 1;
                ex
            }
            Mode::Principles => {
                if self.cfg.count > 0 && self.emitted >= self.cfg.count {
                    self.done = true;
                    return Ok(None);
                }
                let Some(ex) = self.principle(&mut discards)? else {
                    self.done = true;
                    return Ok(None);
                };
                self.emitted += 1;
                ex
            }
        };
        let checkpoint = serde_json::to_string(&self.at).map_err(|e| e.to_string())?;
        Ok(Some(Batch { examples: example.into_iter().collect(), discarded: discards.take(), checkpoint: Some(checkpoint) }))
    }

    fn estimate(&self) -> Option<u64> {
        match self.cfg.mode {
            Mode::Generate => Some(u64::from(self.cfg.count.saturating_sub(self.at.generated))),
            Mode::Principles => None,
        }
    }
}

impl Teacher {
    fn ask(&self, messages: Vec<Message>, temperature: Option<f32>, seed: u64) -> Result<llm::ChatReply, String> {
        let options = llm::ChatOptions { model: self.cfg.model.clone(), max_tokens: self.cfg.max_tokens, temperature, seed: Some(seed) };
        llm::chat(&self.cfg.endpoint, &messages, &options)
    }

    /// Example `index`: the teacher writes a request on the index's topic, then answers it.
    fn generate(&self, index: u32, discards: &mut Discards) -> Result<Option<Example>, String> {
        let domain = self.cfg.domain.trim();
        let topic = topic(&self.cfg.topics, index);
        let seed = u64::from(index) + 1;
        let ask = vec![
            Message { role: Role::System, content: format!("You write realistic training data for an assistant that helps with {domain}.") },
            user(format!(
                "Write one realistic, self-contained request that a user might send to a {domain} assistant, about: {topic}. \
                 Make it specific and different from the usual textbook examples (variation {seed}). \
                 Reply with the request only: no preamble, no answer."
            )),
        ];
        let instruction = self.ask(ask, Some(self.cfg.temperature.unwrap_or(0.9)), seed)?;
        let instruction_text = clean_reply(&instruction.text);
        if instruction_text.is_empty() {
            discards.add("empty_instruction");
            return Ok(None);
        }
        let answer_to = vec![
            Message { role: Role::System, content: format!("You are an expert {domain} assistant. Answer correctly, clearly and concisely.") },
            user(instruction_text.clone()),
        ];
        let answer = self.ask(answer_to, self.cfg.temperature, seed)?;
        let answer_text = answer.text.trim().to_string();
        if answer_text.is_empty() {
            discards.add("empty_answer");
            return Ok(None);
        }
        Ok(Some(Example {
            kind: Kind::Chat,
            task: format!("teacher-{}", slug(domain)),
            messages: vec![user(instruction_text), assistant(answer_text)],
            rejected: None,
            provenance: format!("teacher:{}#{}/{index}", self.cfg.endpoint, self.cfg.model),
            metadata: json!({
                "endpoint": self.cfg.endpoint,
                "model": answer.model,
                "topic": topic,
                "index": index,
                "seed": seed,
                "tokens": instruction.prompt_tokens + instruction.completion_tokens + answer.prompt_tokens + answer.completion_tokens,
            })
            .to_string(),
        }))
    }

    /// The next correction of the store turned into a principle; `None` when none is left.
    fn principle(&mut self, discards: &mut Discards) -> Result<Option<Option<Example>>, String> {
        let store = self.store.as_ref().ok_or("no store open")?;
        let rows = store.query(
            "SELECT rowid, id, provenance, messages FROM examples WHERE kind = 'correction' AND rowid > ?1 ORDER BY rowid LIMIT 1",
            &[sqlite::Value::Integer(self.at.after_rowid)],
        )?;
        let Some(row) = rows.rows.into_iter().next() else { return Ok(None) };
        let text = |v: &sqlite::Value| match v {
            sqlite::Value::Text(t) => t.clone(),
            _ => String::new(),
        };
        let rowid = match row.first() {
            Some(sqlite::Value::Integer(r)) => *r,
            _ => return Err("the store's examples table has no integer rowid".into()),
        };
        let (id, provenance, messages) = (text(&row[1]), text(&row[2]), text(&row[3]));
        self.at.after_rowid = rowid;
        let transcript = transcript(&messages);
        if transcript.is_empty() {
            discards.add("empty_correction");
            return Ok(Some(None));
        }
        let ask = vec![
            Message { role: Role::System, content: "You distil corrections into short rules an assistant must follow.".into() },
            user(format!(
                "In the conversation below a person corrected an assistant. State the one principle the assistant should follow \
                 from now on, as a single short sentence that starts with \"Always\" or \"Never\". Reply with that sentence only.\n\n\
                 {transcript}"
            )),
        ];
        let reply = self.ask(ask, self.cfg.temperature, rowid as u64)?;
        let Some(principle) = as_principle(&reply.text) else {
            discards.add("not_a_principle");
            return Ok(Some(None));
        };
        Ok(Some(Some(Example {
            kind: Kind::Principle,
            task: "principle".into(),
            messages: vec![user(principle)],
            rejected: None,
            provenance: format!("correction/{id}"),
            metadata: json!({
                "correction_id": id,
                "correction_provenance": provenance,
                "endpoint": self.cfg.endpoint,
                "model": reply.model,
            })
            .to_string(),
        })))
    }
}

/// The topic of example `index`: the configured ones in turn, else the built-in facets.
pub fn topic(topics: &[String], index: u32) -> String {
    let topics: Vec<&str> = topics.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect();
    if topics.is_empty() {
        FACETS[index as usize % FACETS.len()].to_string()
    } else {
        topics[index as usize % topics.len()].to_string()
    }
}

/// `Rust Async` → `rust-async`: the task label's form.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// A reply without surrounding whitespace and quotes, and without a `Request:`-style label.
pub fn clean_reply(s: &str) -> String {
    let mut t = s.trim();
    for label in ["Request:", "request:", "Instruction:", "instruction:"] {
        if let Some(rest) = t.strip_prefix(label) {
            t = rest.trim();
        }
    }
    t.trim_matches(|c| c == '"' || c == '“' || c == '”').trim().to_string()
}

/// The principle in a reply: its first line starting with "Always" or "Never" (bullets and
/// quotes removed), or `None`.
pub fn as_principle(reply: &str) -> Option<String> {
    reply.lines().map(|l| clean_reply(l.trim().trim_start_matches(['-', '*', '•']).trim())).find(|l| {
        let lower = l.to_lowercase();
        (lower.starts_with("always ") || lower.starts_with("never ")) && l.chars().count() <= 400
    })
}

/// A stored example's messages (JSON `[{role, content}]`) as `role: content` lines, bounded.
pub fn transcript(messages_json: &str) -> String {
    let Ok(serde_json::Value::Array(msgs)) = serde_json::from_str::<serde_json::Value>(messages_json) else { return String::new() };
    let mut out = String::new();
    for m in msgs {
        let (Some(role), Some(content)) = (m["role"].as_str(), m["content"].as_str()) else { continue };
        if content.trim().is_empty() {
            continue;
        }
        out.push_str(&format!("{role}: {}\n\n", content.trim()));
    }
    if out.chars().count() > MAX_CORRECTION_CHARS {
        out = out.chars().take(MAX_CORRECTION_CHARS).collect::<String>() + "…";
    }
    out.trim_end().to_string()
}

sam_plugin::export_source!(Teacher);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_cycle_and_default_to_facets() {
        let t = vec!["lifetimes".to_string(), " ".to_string(), "traits".to_string()];
        assert_eq!((topic(&t, 0), topic(&t, 1), topic(&t, 2)), ("lifetimes".into(), "traits".into(), "lifetimes".into()));
        assert_eq!(topic(&[], 1), FACETS[1]);
    }

    #[test]
    fn principles_are_found_in_replies() {
        assert_eq!(as_principle("Sure!\n- \"Always run the tests before committing.\""), Some("Always run the tests before committing.".into()));
        assert_eq!(as_principle("never force-push to main"), Some("never force-push to main".into()));
        assert_eq!(as_principle("You should test."), None);
    }

    #[test]
    fn labels_and_transcripts() {
        assert_eq!(slug("Rust / Async"), "rust-async");
        assert_eq!(clean_reply("  Request: \"How do I X?\" "), "How do I X?");
        let t = transcript(r#"[{"role":"user","content":"a"},{"role":"assistant","content":" b "}]"#);
        assert_eq!(t, "user: a\n\nassistant: b");
        assert_eq!(transcript("not json"), "");
    }
}
