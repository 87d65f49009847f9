//! Checks that a Modelfile renders conversations exactly as training did.
//!
//! Three renderings of the same conversations are compared:
//! - training's: brain-train's renderer of the model's chat template (ChatML when it has none),
//!   including a system turn the template inserts when a conversation has none (Qwen2.5's);
//! - the model's own `chat_template` (tokenizer_config.json or chat_template.jinja), rendered
//!   as transformers does (brain-train's renderer, with the generation prompt);
//! - the Modelfile's TEMPLATE, rendered by [`super::gotmpl`] the way Ollama's chat endpoint does
//!   (its SYSTEM put in front of conversations without one), after the bos Ollama's tokenizer
//!   adds when the model's tokenizer adds one.
//!
//! Training's rendering is the reference: a TEMPLATE or SYSTEM that differs from it is an error
//! of the export; a chat_template that differs from it is only reported (training did not use it).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::gotmpl;

/// A conversation as (role, content) pairs.
pub type Conversation = Vec<(String, String)>;

fn conv(v: &[(&str, &str)]) -> Conversation {
    v.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect()
}

/// The conversations the checks render: with and without a system message, several turns,
/// text with newlines and markup.
pub fn probe_conversations() -> Vec<Conversation> {
    vec![
        conv(&[("system", "You answer in one line."), ("user", "What is 2 + 2?")]),
        conv(&[("user", "Hello!")]),
        conv(&[("system", "Be terse."), ("user", "Hi."), ("assistant", "Hello."), ("user", "Name a prime.")]),
        conv(&[
            ("user", "Write a function.\nIt adds two numbers."),
            ("assistant", "```rust\nfn add(a: i32, b: i32) -> i32 { a + b }\n```"),
            ("user", "Now in Python, with <b>types</b>."),
        ]),
    ]
}

/// The model's chat template, in transformers' order: `chat_template.jinja`, else
/// tokenizer_config.json's `chat_template` (a string, or the `default` of a list of named ones).
pub fn chat_template(model_dir: &Path) -> Option<String> {
    brain_train::tokenizer::TokenizerParts::from_dir(model_dir).ok()?.chat_template.map(|(text, _origin)| text)
}

fn token_string(cfg: &serde_json::Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        v => v.get("content").and_then(|c| c.as_str()).map(String::from),
    }
}

/// Renders a Hugging Face chat template (Jinja) with a generation prompt, as transformers'
/// `apply_chat_template` does (brain-train's renderer, the one training uses).
pub fn render_hf(template: &str, messages: &[(String, String)], bos: Option<&str>, eos: Option<&str>) -> Result<String> {
    let vars: Vec<(String, String)> =
        [("bos_token", bos), ("eos_token", eos)].into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string()))).collect();
    let tmpl = brain_train::tokenizer::ChatTemplate::new(template, "the model's chat_template", &vars).context("parsing the chat template")?;
    let msgs: Vec<brain_train::tokenizer::Message> = messages.iter().map(|(r, c)| brain_train::tokenizer::Message::new(r, c)).collect();
    tmpl.render(&msgs, true).context("rendering the chat template")
}

/// What training renders for `messages` plus the open assistant turn.
pub fn render_training(tokenizer: &brain_train::tokenizer::Tokenizer, messages: &[(String, String)]) -> Result<String> {
    let msgs: Vec<brain_train::tokenizer::Message> = messages.iter().map(|(r, c)| brain_train::tokenizer::Message::new(r, c)).collect();
    Ok(tokenizer.render_chat(&msgs, true)?)
}

/// What the model reads through Ollama for a conversation: the bos Ollama's tokenizer adds (when
/// the model's tokenizer adds one), then the Modelfile's TEMPLATE rendered as Ollama's chat
/// endpoint does.
pub fn render_ollama(tokenizer: &brain_train::tokenizer::Tokenizer, template: &str, system: Option<&str>, messages: &[(String, String)]) -> Result<String> {
    let body = gotmpl::render_chat(template, system, messages).context("rendering the Modelfile's TEMPLATE")?;
    Ok(format!("{}{body}", super::family::auto_bos(tokenizer).unwrap_or_default()))
}

/// One conversation rendered differently.
#[derive(Clone, Debug, Serialize)]
pub struct Mismatch {
    pub conversation: usize,
    /// `training` or `chat_template`.
    pub against: String,
    pub expected: String,
    pub modelfile: String,
}

/// The outcome of [`check`].
#[derive(Clone, Debug, Serialize)]
pub struct TemplateCheck {
    pub conversations: usize,
    /// The Modelfile renders every probe conversation as training did.
    pub matches_training: bool,
    /// The same against the model's own chat template; None when it has none or it cannot be
    /// rendered here (see `notes`).
    pub matches_chat_template: Option<bool>,
    /// Stop strings the Modelfile must carry (the model's end-of-turn and eos tokens).
    pub expected_stop: Vec<String>,
    /// Expected stop strings missing from the Modelfile.
    pub missing_stop: Vec<String>,
    /// The system turn the chat template inserts when a conversation has none (Qwen2.5's default).
    pub default_system: Option<String>,
    pub mismatches: Vec<Mismatch>,
    pub notes: Vec<String>,
}

impl TemplateCheck {
    /// True when nothing in the Modelfile contradicts training.
    pub fn ok(&self) -> bool {
        self.matches_training && self.missing_stop.is_empty()
    }
}

/// Checks the Modelfile `modelfile_text` against the model (tokenizer files) in `model_dir`.
pub fn check(model_dir: &Path, modelfile_text: &str) -> Result<TemplateCheck> {
    let parsed = super::ollama::parse_modelfile(modelfile_text);
    let template = parsed.template.clone().context("the Modelfile has no TEMPLATE")?;
    let tokenizer = brain_train::tokenizer::Tokenizer::load(model_dir).with_context(|| format!("loading the tokenizer of {}", model_dir.display()))?;
    let cfg = std::fs::read_to_string(model_dir.join("tokenizer_config.json")).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).unwrap_or_default();
    let (bos, eos) = (token_string(&cfg, "bos_token"), token_string(&cfg, "eos_token"));
    let hf = chat_template(model_dir);
    let mut notes = Vec::new();
    if hf.is_none() {
        notes.push("the model has no chat_template; compared with training only".into());
    }
    let mut mismatches = Vec::new();
    let mut hf_ok: Option<bool> = hf.as_ref().map(|_| true);
    let probes = probe_conversations();
    for (i, c) in probes.iter().enumerate() {
        let ollama = render_ollama(&tokenizer, &template, parsed.system.as_deref(), c)?;
        // What the model sees through Ollama is the conversation with SYSTEM in front when it has
        // no system message; training renders that same conversation.
        let mut effective = c.clone();
        if let Some(sys) = parsed.system.as_deref().filter(|s| !s.is_empty()) {
            if effective.first().is_none_or(|m| m.0 != "system") {
                effective.insert(0, ("system".into(), sys.to_string()));
            }
        }
        let trained = render_training(&tokenizer, &effective).context("rendering the conversation as training does")?;
        if trained != ollama {
            mismatches.push(Mismatch { conversation: i, against: "training".into(), expected: trained, modelfile: ollama.clone() });
        }
        if let (Some(t), Some(true)) = (&hf, hf_ok) {
            match render_hf(t, &effective, bos.as_deref(), eos.as_deref()) {
                Ok(r) if r == ollama => {}
                Ok(r) => {
                    hf_ok = Some(false);
                    mismatches.push(Mismatch { conversation: i, against: "chat_template".into(), expected: r, modelfile: ollama.clone() });
                }
                Err(e) => {
                    hf_ok = None;
                    notes.push(format!("the model's chat_template cannot be rendered here: {e:#}"));
                }
            }
        }
    }
    // The derived stops when the layout is one we write, else the tokenizer's own.
    let expected_stop = super::family::derive(&tokenizer).map(|d| d.stop).unwrap_or_else(|_| super::family::stop_strings(&tokenizer));
    let missing_stop = expected_stop.iter().filter(|s| !parsed.stop.contains(s)).cloned().collect();
    Ok(TemplateCheck {
        conversations: probes.len(),
        matches_training: !mismatches.iter().any(|m| m.against == "training"),
        matches_chat_template: hf_ok,
        expected_stop,
        missing_stop,
        default_system: tokenizer.default_system().map(String::from),
        mismatches,
        notes,
    })
}
