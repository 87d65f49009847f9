//! Escalation: hard questions go to a teacher, the client gets the teacher's answer, and the
//! exchange becomes training data — the seed's continuous loop on standard protocols.
//!
//! The local model always answers first (its answer is the `rejected` side of the pair and the
//! router's evidence). With `routing`, [`route`] decides from that answer alone; with `always`
//! every request goes to the teacher. A successful escalation stores, scrubbed like every
//! collected example and pending review: a preference example (teacher `chosen`, local
//! `rejected`) for DPO and a correction example (the conversation with the teacher's answer) for
//! SFT, both with provenance `serve/<request id>` and the model version that answered. The
//! pipeline then picks them up like any source's examples. Every answered request is also logged
//! (the interactions table) for routing data and evaluation, kept `keep_interactions_days`. A
//! failed escalation stores nothing; the client gets the local answer and a warning header.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::Context as _;
use brain_curate::Scrubber;
use serde_json::json;

use super::openai::Usage;
use crate::config::{EscalateWhen, ServeSection};
use crate::curation::clean;
use crate::example::{Example, Kind, Message, Role};
use crate::llm::{self, Api, ChatOptions, Endpoint, Reply};
use crate::store::interactions::Interaction;
use crate::store::{example_id, DecidedBy, Decision, Record, ReviewStatus, Store};

/// The `source` escalations are stored under.
pub const SOURCE: &str = "serve";

/// The teacher and when to ask it.
pub struct Teacher {
    pub endpoint: Endpoint,
    pub when: EscalateWhen,
    pub max_tokens: u32,
}

impl Teacher {
    /// The teacher `[serve]` describes, or none when no `escalate` URL is set. The API key is
    /// read from the environment variable the config names.
    pub fn from_config(s: &ServeSection) -> anyhow::Result<Option<Teacher>> {
        let Some(url) = &s.escalate else { return Ok(None) };
        let api = Api::parse(&s.escalate_api, url).map_err(anyhow::Error::msg).context("[serve] escalate_api")?;
        let model = match (&s.escalate_model, api) {
            (Some(m), _) => m.clone(),
            (None, Api::OpenAi) => "default".into(),
            (None, Api::Anthropic) => anyhow::bail!("[serve] escalate_model is required for an Anthropic teacher (e.g. claude-sonnet-4-5)"),
        };
        let api_key = match &s.escalate_key_env {
            Some(var) => Some(std::env::var(var).with_context(|| format!("[serve] escalate_key_env names {var}, which is not set"))?),
            None => None,
        };
        let endpoint = Endpoint { url: url.clone(), api, model, api_key, timeout: std::time::Duration::from_secs(s.escalate_timeout_s.max(1)) };
        Ok(Some(Teacher { endpoint, when: s.escalate_when, max_tokens: s.escalate_max_tokens.max(1) }))
    }

    /// Asks the teacher (blocking).
    pub fn ask(&self, messages: &[(String, String)], temperature: f32) -> Result<Reply, llm::LlmError> {
        self.endpoint.chat(messages, &ChatOptions { max_tokens: self.max_tokens, temperature: Some(temperature), seed: None })
    }
}

/// What the local model answered.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalAnswer {
    pub text: String,
    pub finish: &'static str,
    pub usage: Usage,
    /// The `max_tokens` the request allowed.
    pub max_tokens: usize,
}

/// Phrases with which a model says it does not know.
const UNSURE: [&str; 10] = [
    "i don't know",
    "i do not know",
    "i'm not sure",
    "i am not sure",
    "i cannot answer",
    "i can't answer",
    "i'm unable to",
    "i am unable to",
    "not enough information",
    "as an ai",
];

/// The bundled router: why the local answer should not stand (`empty`, `repetitive`, `unsure`,
/// `rambling`), or none. It reads only the answer, so it costs nothing and needs no model.
pub fn route(a: &LocalAnswer) -> Option<&'static str> {
    let text = a.text.trim();
    if text.is_empty() {
        return Some("empty");
    }
    if repetitive(text) {
        return Some("repetitive");
    }
    let lower = text.to_lowercase();
    if UNSURE.iter().any(|p| lower.contains(p)) {
        return Some("unsure");
    }
    // Ran out of a generous budget without finishing: the model lost its way.
    if a.finish == "length" && a.max_tokens >= 256 {
        return Some("rambling");
    }
    None
}

/// Half or more of the word trigrams repeat an earlier one, or the characters cycle through
/// few distinct 8-grams (`clllllll… 10.10.10`).
fn repetitive(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() >= 12 {
        let grams: Vec<_> = words.windows(3).collect();
        let distinct: std::collections::HashSet<_> = grams.iter().collect();
        if (grams.len() - distinct.len()) * 2 >= grams.len() {
            return true;
        }
    }
    let chars: Vec<char> = text.chars().collect();
    if chars.len() >= 40 {
        let grams: std::collections::HashSet<&[char]> = chars.windows(8).collect();
        if grams.len() * 10 < (chars.len() - 7) * 3 {
            return true;
        }
    }
    false
}

/// Writes what serve learns into the project's store, scrubbed.
pub struct Recorder {
    store: Mutex<Store>,
    scrubber: Scrubber,
    /// The registered version that answers, if any.
    pub model_version: Option<String>,
    keep_days: u32,
}

fn role(r: &str) -> Role {
    match r {
        "system" => Role::System,
        "assistant" => Role::Assistant,
        _ => Role::User,
    }
}

impl Recorder {
    pub fn new(store: Store, scrubber: Scrubber, model_version: Option<String>, keep_days: u32) -> Recorder {
        Recorder { store: Mutex::new(store), scrubber, model_version, keep_days }
    }

    fn messages(&self, messages: &[(String, String)]) -> Vec<Message> {
        messages.iter().map(|(r, c)| Message { role: role(r), content: c.clone() }).collect()
    }

    fn scrubbed(&self, mut text: String) -> String {
        clean::normalize_text(&mut text);
        clean::scrub_text(&self.scrubber, &mut text);
        text
    }

    /// Logs an answer that was not escalated (nothing when interactions are not kept).
    pub fn record_local(&self, messages: &[(String, String)], local: &LocalAnswer) -> anyhow::Result<()> {
        if self.keep_days == 0 {
            return Ok(());
        }
        let i = Interaction {
            model_version: self.model_version.clone(),
            messages: self.messages(messages).into_iter().map(|m| Message { content: self.scrubbed(m.content), ..m }).collect(),
            answer: self.scrubbed(local.text.clone()),
            finish: local.finish.to_string(),
            escalated: false,
            route: None,
            teacher: None,
            example_id: None,
        };
        self.store.lock().map_err(|_| anyhow::anyhow!("the store lock was poisoned"))?.log_interaction(&i, self.keep_days)?;
        Ok(())
    }

    /// Stores a successful escalation: the preference pair (unless the local answer is blank)
    /// and the correction, pending review, and the interaction, in one transaction. Returns the
    /// id of the first example stored (the pair's when there is one).
    pub fn record_escalation(
        &self,
        request_id: &str,
        messages: &[(String, String)],
        local: &LocalAnswer,
        reason: &str,
        teacher: &Endpoint,
        reply: &Reply,
    ) -> anyhow::Result<String> {
        let mut conversation = self.messages(messages);
        conversation.push(Message { role: Role::Assistant, content: reply.text.clone() });
        let metadata = json!({
            "model_version": self.model_version, "teacher": reply.model, "teacher_api": teacher.api.as_str(),
            "route": reason, "local_finish": local.finish,
        });
        let provenance = format!("{SOURCE}/{request_id}");
        let preference = Example {
            kind: Kind::Preference,
            task: "serve-escalation".into(),
            messages: conversation.clone(),
            rejected: Some(local.text.clone()),
            provenance: provenance.clone(),
            metadata: metadata.clone(),
        };
        let mut correction_meta = metadata;
        correction_meta["local_answer"] = json!(local.text);
        let correction =
            Example { kind: Kind::Correction, task: "serve-correction".into(), messages: conversation, rejected: None, provenance, metadata: correction_meta };
        let decision = Decision {
            status: ReviewStatus::Pending,
            reason: Some(format!("escalated to the teacher {} ({reason}); review before training", reply.model)),
            note: None,
            decided_by: DecidedBy::Auto,
        };
        // A blank local answer makes no pair (there is nothing to prefer against); the
        // correction alone teaches the answer.
        let examples = if local.text.trim().is_empty() { vec![correction] } else { vec![preference, correction] };
        let records: Vec<Record> = examples
            .into_iter()
            .map(|mut ex| {
                clean::normalize(&mut ex);
                let scrub_counts: BTreeMap<String, u32> = clean::scrub(&self.scrubber, &mut ex);
                let mut rec = Record::new(ex);
                rec.id = Some(example_id(&rec.example));
                rec.scrub_counts = scrub_counts;
                rec.decision = Some(decision.clone());
                rec
            })
            .collect();
        let pair_id = records[0].id.clone().expect("set above");
        let first = &records[0].example;
        let interaction = Interaction {
            model_version: self.model_version.clone(),
            messages: first.messages[..first.messages.len() - 1].to_vec(),
            answer: self.scrubbed(local.text.clone()),
            finish: local.finish.to_string(),
            escalated: true,
            route: Some(reason.to_string()),
            teacher: Some(reply.model.clone()),
            example_id: Some(pair_id.clone()),
        };
        let mut store = self.store.lock().map_err(|_| anyhow::anyhow!("the store lock was poisoned"))?;
        store.store_escalation(SOURCE, "brain serve", &records, &interaction, self.keep_days.max(1))?;
        Ok(pair_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str, finish: &'static str, max_tokens: usize) -> LocalAnswer {
        LocalAnswer { text: text.into(), finish, usage: Usage { prompt: 1, completion: 1 }, max_tokens }
    }

    #[test]
    fn the_router_escalates_answers_that_should_not_stand() {
        assert_eq!(route(&answer("  \n", "stop", 100)), Some("empty"));
        assert_eq!(route(&answer(&"the cat sat on the mat. ".repeat(6), "stop", 100)), Some("repetitive"));
        assert_eq!(route(&answer(&format!("c{}10.10.10.10.10.10.10.10", "l".repeat(40)), "length", 64)), Some("repetitive"));
        assert_eq!(route(&answer("Honestly, I'm not sure what that flag does.", "stop", 100)), Some("unsure"));
        let long = "Rust borrows check at compile time, so a reference never outlives its owner and data races are refused before the program runs";
        assert_eq!(route(&answer(long, "length", 512)), Some("rambling"));
        assert_eq!(route(&answer(long, "length", 32)), None, "cut by a small max_tokens the client chose");
        assert_eq!(route(&answer(long, "stop", 512)), None);
        assert_eq!(route(&answer("Use `git rebase -i HEAD~3` and mark the commits as fixup.", "stop", 256)), None);
    }
}
