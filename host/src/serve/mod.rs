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
}

struct AppState {
    jobs: mpsc::SyncSender<Job>,
    model_id: String,
    api_key: Option<String>,
    created: u64,
    next_id: AtomicU64,
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

    let state = Arc::new(AppState { jobs, model_id: opts.model_id.clone(), api_key: opts.api_key.clone(), created: unix_now(), next_id: AtomicU64::new(1) });
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
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    match state.jobs.try_send(Job { id: id.clone(), request, events: tx }) {
        Ok(()) => {}
        Err(mpsc::TrySendError::Full(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, "too many requests are waiting; try again shortly", "server_busy"),
        Err(mpsc::TrySendError::Disconnected(_)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the generation thread has stopped", "server_error"),
    }
    let model = state.model_id.clone();
    if stream {
        streamed(id, model, state.created, include_usage, rx)
    } else {
        whole(id, model, state.created, rx).await
    }
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
