//! `brain serve`: the model behind the OpenAI-compatible chat API (`GET /v1/models`,
//! `POST /v1/chat/completions`, plain or streamed as server-sent events), so any OpenAI client,
//! editor plugin or another brain can talk to it.
//!
//! One worker thread owns the model and answers requests in arrival order ([`worker`]); the HTTP
//! side (axum on a single-threaded tokio runtime) parses and validates requests ([`openai`]),
//! queues them (a full queue answers 503 instead of piling up), and relays the worker's text.
//! Dropping a response — a client that disconnects — closes its channel, which stops generation
//! at the next token. Every request is checked against the API key when one is set; binding
//! anywhere but loopback requires one.

pub mod escalate;
pub mod openai;
pub mod worker;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use anyhow::{bail, Context as _};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use brain_train::generate::Generator;
use serde_json::{json, Value};

use openai::parse_request;
use worker::{Event, Job};

pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    /// The id `/v1/models` lists and responses carry.
    pub model_id: String,
    /// Requests that may wait for the worker before new ones get 503.
    pub queue: usize,
    /// A teacher to escalate to, and where the exchanges are recorded.
    pub escalation: Option<Escalation>,
}

/// `brain serve --escalate`: the teacher and the recorder of what it teaches.
pub struct Escalation {
    pub teacher: escalate::Teacher,
    pub recorder: escalate::Recorder,
}

struct AppState {
    jobs: mpsc::SyncSender<Job>,
    model_id: String,
    api_key: Option<String>,
    created: u64,
    next_id: AtomicU64,
    escalation: Option<Arc<Escalation>>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether `host` is a loopback address (or `localhost`).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Loads the model on the worker thread (`load`), binds, and serves until the process ends.
pub fn serve(load: impl FnOnce() -> anyhow::Result<Generator> + Send + 'static, opts: ServeOptions) -> anyhow::Result<()> {
    if !is_loopback(&opts.host) && opts.api_key.is_none() {
        bail!("serving on {} (not loopback) needs an API key: pass --api-key or set BRAIN_API_KEY", opts.host);
    }
    let (jobs, queue) = mpsc::sync_channel::<Job>(opts.queue);
    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
    std::thread::Builder::new()
        .name("brain-serve-worker".into())
        .spawn(move || match load() {
            Ok(g) => {
                let _ = ready_tx.send(Ok(()));
                worker::run(g, queue);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .context("starting the generation thread")?;
    ready_rx.recv().context("the generation thread ended while loading the model")??;

    let state = Arc::new(AppState {
        jobs,
        model_id: opts.model_id.clone(),
        api_key: opts.api_key.clone(),
        created: unix_now(),
        next_id: AtomicU64::new(1),
        escalation: opts.escalation.map(Arc::new),
    });
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route (the API is /v1/models and /v1/chat/completions)", "not_found_error") })
        .with_state(state);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the HTTP runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port)).await.with_context(|| format!("binding {}:{}", opts.host, opts.port))?;
        let addr = listener.local_addr()?;
        eprintln!("brain serve: model {} at http://{addr}/v1 (OpenAI chat API; Ctrl-C stops)", opts.model_id);
        axum::serve(listener, app).await.context("serving HTTP")
    })
}

fn error(status: StatusCode, message: &str, kind: &str) -> Response {
    (status, Json(openai::error_body(message, kind))).into_response()
}

/// The API key check every route makes (`Authorization: Bearer KEY`).
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(key) = &state.api_key else { return Ok(()) };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.as_str()) {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "missing or wrong API key (Authorization: Bearer KEY)", "authentication_error"))
    }
}

async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    Json(json!({"object": "list", "data": [{"id": state.model_id, "object": "model", "created": state.created, "owned_by": "brain"}]})).into_response()
}

async fn chat(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m, "invalid_request_error"),
    };
    let id = format!("chatcmpl-{}-{}", state.created, state.next_id.fetch_add(1, Ordering::Relaxed));
    let stream = request.stream;
    let include_usage = request.include_usage;
    let asked = (request.messages.clone(), request.temperature, request.max_tokens);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    match state.jobs.try_send(Job { id: id.clone(), request, events: tx }) {
        Ok(()) => {}
        Err(mpsc::TrySendError::Full(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, "too many requests are waiting; try again shortly", "server_busy"),
        Err(mpsc::TrySendError::Disconnected(_)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the generation thread has stopped", "server_error"),
    }
    let model = state.model_id.clone();
    if let Some(esc) = state.escalation.clone() {
        let (messages, temperature, max_tokens) = asked;
        let reply = Reply { id, model, created: state.created, stream, include_usage };
        return with_teacher(esc, reply, messages, temperature, max_tokens, rx).await;
    }
    if stream {
        streamed(id, model, state.created, include_usage, rx)
    } else {
        whole(id, model, state.created, rx).await
    }
}

/// How a finished answer goes back to the client.
struct Reply {
    id: String,
    model: String,
    created: u64,
    stream: bool,
    include_usage: bool,
}

impl Reply {
    /// The whole `text` as one completion, or as server-sent events, with extra headers.
    fn send(self, text: String, finish: &'static str, usage: openai::Usage, headers: &[(&'static str, String)]) -> Response {
        let mut resp = if self.stream {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let _ = tx.send(Event::Text(text));
            let _ = tx.send(Event::Done { finish, usage });
            streamed(self.id, self.model, self.created, self.include_usage, rx)
        } else {
            Json(openai::completion(&self.id, self.created, &self.model, &text, finish, usage)).into_response()
        };
        for (name, value) in headers {
            if let Ok(v) = axum::http::HeaderValue::from_str(&header_text(value)) {
                resp.headers_mut().insert(*name, v);
            }
        }
        resp
    }
}

/// Printable ASCII only, bounded: header values cannot carry anything else.
fn header_text(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(300).collect()
}

/// The escalation path: the whole local answer first, then the router (or `always`), then the
/// teacher on a blocking thread; what is learned is recorded. A failed escalation answers with
/// the local text and says so in the `x-brain-escalation` and `warning` headers.
async fn with_teacher(
    esc: Arc<Escalation>,
    reply: Reply,
    messages: Vec<(String, String)>,
    temperature: f32,
    max_tokens: usize,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Response {
    let mut text = String::new();
    let (finish, usage) = loop {
        match rx.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Done { finish, usage }) => break (finish, usage),
            Some(Event::Failed { client: true, message }) => return error(StatusCode::BAD_REQUEST, &message, "invalid_request_error"),
            Some(Event::Failed { client: false, message }) => return error(StatusCode::INTERNAL_SERVER_ERROR, &message, "server_error"),
            None => return error(StatusCode::INTERNAL_SERVER_ERROR, "the generation thread dropped the request", "server_error"),
        }
    };
    let local = escalate::LocalAnswer { text, finish, usage, max_tokens };
    let reason = match esc.teacher.when {
        crate::config::EscalateWhen::Always => Some("always"),
        crate::config::EscalateWhen::Routing => escalate::route(&local),
        crate::config::EscalateWhen::Never => None,
    };
    let Some(reason) = reason else {
        let (e, m, l) = (esc.clone(), messages, local.clone());
        match tokio::task::spawn_blocking(move || e.recorder.record_local(&m, &l)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{}: could not log the interaction: {e:#}", reply.id),
            Err(e) => tracing::warn!("{}: could not log the interaction: {e}", reply.id),
        }
        return reply.send(local.text, local.finish, local.usage, &[("x-brain-escalation", "none".into())]);
    };
    let (e, m) = (esc.clone(), messages.clone());
    let asked = tokio::task::spawn_blocking(move || e.teacher.ask(&m, temperature)).await;
    let answer = match asked {
        Ok(Ok(answer)) if !answer.text.trim().is_empty() => answer,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("the teacher request stopped: {e}"),
                Ok(Ok(a)) => format!("the teacher ({}) answered with nothing", a.model),
            };
            tracing::warn!("{}: escalation ({reason}) failed, answering with the local model: {why}", reply.id);
            let headers = [("x-brain-escalation", format!("failed ({reason})")), ("warning", format!("199 brain \"escalation failed: {why}\""))];
            return reply.send(local.text, local.finish, local.usage, &headers);
        }
    };
    let (e, id, m, l, a) = (esc.clone(), reply.id.clone(), messages, local.clone(), answer.clone());
    let recorded = tokio::task::spawn_blocking(move || e.recorder.record_escalation(&id, &m, &l, reason, &e.teacher.endpoint, &a)).await;
    let mut headers = vec![("x-brain-escalation", format!("teacher {} ({reason})", answer.model))];
    match recorded {
        Ok(Ok(example)) => tracing::info!("{}: escalated ({reason}); stored preference example {example} for review", reply.id),
        Ok(Err(e)) => {
            tracing::warn!("{}: the teacher answered but the exchange could not be stored: {e:#}", reply.id);
            headers.push(("warning", format!("199 brain \"not recorded: {e}\"")));
        }
        Err(e) => tracing::warn!("{}: recording stopped: {e}", reply.id),
    }
    let usage = openai::Usage { prompt: local.usage.prompt, completion: answer.completion_tokens as usize };
    reply.send(answer.text, "stop", usage, &headers)
}

async fn whole(id: String, model: String, created: u64, mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>) -> Response {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            Event::Done { finish, usage } => return Json(openai::completion(&id, created, &model, &text, finish, usage)).into_response(),
            Event::Failed { client: true, message } => return error(StatusCode::BAD_REQUEST, &message, "invalid_request_error"),
            Event::Failed { client: false, message } => return error(StatusCode::INTERNAL_SERVER_ERROR, &message, "server_error"),
        }
    }
    error(StatusCode::INTERNAL_SERVER_ERROR, "the generation thread dropped the request", "server_error")
}

/// Server-sent events: a first chunk with the role, one chunk per piece of text, a last chunk with
/// the finish reason (and a usage chunk when asked), then `[DONE]`.
fn streamed(id: String, model: String, created: u64, include_usage: bool, rx: tokio::sync::mpsc::UnboundedReceiver<Event>) -> Response {
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let mut first = VecDeque::new();
    first.push_back(data(openai::chunk(&id, created, &model, json!({"role": "assistant", "content": ""}), None)));
    let state = (rx, first, false);
    let events = futures_util::stream::unfold(state, move |(mut rx, mut pending, mut ended)| {
        let (id, model) = (id.clone(), model.clone());
        async move {
            loop {
                if let Some(e) = pending.pop_front() {
                    return Some((Ok::<_, std::convert::Infallible>(e), (rx, pending, ended)));
                }
                if ended {
                    return None;
                }
                let chunk = |delta: Value, finish: Option<&str>| data(openai::chunk(&id, created, &model, delta, finish));
                match rx.recv().await {
                    Some(Event::Text(t)) => pending.push_back(chunk(json!({"content": t}), None)),
                    Some(Event::Done { finish, usage }) => {
                        pending.push_back(chunk(json!({}), Some(finish)));
                        if include_usage {
                            pending.push_back(data(openai::usage_chunk(&id, created, &model, usage)));
                        }
                        pending.push_back(SseEvent::default().data("[DONE]"));
                        ended = true;
                    }
                    Some(Event::Failed { message, .. }) => {
                        pending.push_back(data(openai::error_body(&message, "server_error")));
                        pending.push_back(SseEvent::default().data("[DONE]"));
                        ended = true;
                    }
                    None => return None,
                }
            }
        }
    });
    Sse::new(events).into_response()
}
