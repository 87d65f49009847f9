//! `brain serve`: the active model version (or the one named) behind the OpenAI chat API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use brain_train::generate::Generator;

use super::Ctx;
use crate::config::{Config, EscalateWhen, ServeSection};
use crate::serve::escalate::{Recorder, Teacher};
use crate::serve::{serve, Escalation, ServeOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The base model (directory, .gguf or ollama:NAME; default: the version's, else [train] base_model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// An adapter to apply (default: the active model version's).
    #[arg(long, conflicts_with = "model_version")]
    pub adapter_path: Option<PathBuf>,
    /// A registered model version to serve (default: the active one).
    #[arg(long)]
    pub model_version: Option<String>,
    /// Serve the base model without any adapter.
    #[arg(long, conflicts_with_all = ["adapter_path", "model_version"])]
    pub no_adapter: bool,
    /// Address to bind; anything but loopback needs an API key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Key every request must send as `Authorization: Bearer KEY`.
    #[arg(long, env = "BRAIN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Requests that may wait while one is answered; more get HTTP 503.
    #[arg(long, default_value_t = 32)]
    pub queue: usize,
    /// A teacher for hard questions: an OpenAI-compatible base URL (`http://127.0.0.1:11434/v1`)
    /// or Anthropic's (`https://api.anthropic.com`); overrides [serve] escalate. Its answers are
    /// stored as preference pairs and corrections for review (needs a project).
    #[arg(long, value_name = "URL")]
    pub escalate: Option<String>,
    /// The teacher model's name ([serve] escalate_model).
    #[arg(long, value_name = "NAME")]
    pub escalate_model: Option<String>,
    /// When to ask the teacher ([serve] escalate_when): always, routing (empty, repetitive,
    /// unsure or rambling local answers) or never.
    #[arg(long, value_enum)]
    pub escalate_when: Option<EscalateWhen>,
    /// The teacher's wire format: openai, anthropic or auto ([serve] escalate_api).
    #[arg(long, value_name = "API")]
    pub escalate_api: Option<String>,
    /// The environment variable holding the teacher's API key ([serve] escalate_key_env).
    #[arg(long, value_name = "VAR")]
    pub escalate_key_env: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let (model, adapter, label) = if !ctx.config_path.exists() && a.model_version.is_none() {
        // No project: the model (and adapter) as given.
        let model = a.model.clone().context("no model: pass --model (no brain.toml here to find a model version in)")?;
        (model, a.adapter_path.clone(), None)
    } else {
        let config = ctx.config()?;
        let store = ctx.open_store(&config)?;
        let record = match &a.model_version {
            Some(v) => Some(store.model(v)?.ok_or_else(|| crate::registry::RegistryError::NoModel(v.clone()))?),
            None if a.no_adapter || a.adapter_path.is_some() => None,
            None => store.active_model()?,
        };
        let model = a
            .model
            .clone()
            .or_else(|| record.as_ref().and_then(|m| m.base_model.clone()).map(PathBuf::from))
            .or_else(|| config.train.base_model.clone())
            .context("no model: pass --model, set [train] base_model, or promote a model version")?;
        let adapter = if a.no_adapter { None } else { a.adapter_path.clone().or_else(|| record.as_ref().and_then(|m| m.adapter.clone()).map(PathBuf::from)) };
        (model, adapter, record.map(|m| m.version))
    };
    let label_for_records = label.clone();
    let model_id = label.unwrap_or_else(|| model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "brain".into()));
    let adapters: Vec<PathBuf> = adapter.into_iter().collect();
    if !ctx.quiet {
        eprintln!("brain serve: loading {}{}", model.display(), adapters.first().map(|a| format!(" with adapter {}", a.display())).unwrap_or_default());
    }
    let escalation = escalation(ctx, &a, label_for_records)?;
    if let (Some(e), false) = (&escalation, ctx.quiet) {
        eprintln!(
            "brain serve: escalating to {} ({}, {}) when {:?}; exchanges are stored for review",
            e.teacher.endpoint.chat_url(),
            e.teacher.endpoint.model,
            e.teacher.endpoint.api.as_str(),
            e.teacher.when
        );
    }
    let load = move || -> anyhow::Result<Generator> { Ok(Generator::load(&model, &adapters, None)?) };
    serve(load, ServeOptions { host: a.host, port: a.port, api_key: a.api_key, model_id, queue: a.queue.max(1), escalation })?;
    Ok(ExitCode::SUCCESS)
}

/// The teacher of `[serve]` with the flags applied, and the project's store to record into.
fn escalation(ctx: &Ctx, a: &Args, model_version: Option<String>) -> anyhow::Result<Option<Escalation>> {
    let config = if ctx.config_path.exists() { Some(ctx.config()?) } else { None };
    let mut section = config.as_ref().map(|c| c.serve.clone()).unwrap_or_default();
    section.escalate = a.escalate.clone().or(section.escalate);
    section.escalate_model = a.escalate_model.clone().or(section.escalate_model);
    section.escalate_when = a.escalate_when.unwrap_or(section.escalate_when);
    section.escalate_api = a.escalate_api.clone().unwrap_or(section.escalate_api);
    section.escalate_key_env = a.escalate_key_env.clone().or(section.escalate_key_env);
    let Some(teacher) = Teacher::from_config(&section)? else { return Ok(None) };
    let config: Config = config.context(
        "--escalate records what the teacher teaches into a project's store: run it in a project folder (`brain init`) or pass --config",
    )?;
    let store = ctx.open_store(&config)?;
    let scrubber = crate::curation::clean::scrubber(&config.scrub).with_context(|| format!("{}: [scrub]", config.path.display()))?;
    let ServeSection { keep_interactions_days, .. } = section;
    Ok(Some(Escalation { teacher, recorder: Recorder::new(store, scrubber, model_version, keep_interactions_days) }))
}
