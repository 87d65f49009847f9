//! `brain serve` through the real binary on loopback: OpenAI's chat-completions shapes (checked
//! against the fields and types of OpenAI's published schema, written out here, not against our
//! own structs), streaming as server-sent events ending in `[DONE]`, 400 on malformed bodies,
//! concurrent clients both answered, a client that disconnects stops its generation, and the API
//! key rules.

mod common;
#[path = "support/serve_client.rs"]
mod serve_client;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Env;
use serde_json::{json, Value};
use serve_client::{http, json_body, sse_data, start_with, Server};

fn start(env: &Env, model: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--model", model.to_str().unwrap(), "--no-adapter"];
    args.extend_from_slice(extra);
    start_with(env, &args, &[])
}

/// OpenAI's `ChatCompletion` object: the fields a client library requires, with their types.
fn check_completion(v: &Value) {
    assert!(v["id"].is_string() && v["object"] == "chat.completion" && v["created"].is_u64() && v["model"].is_string(), "{v}");
    let c = &v["choices"][0];
    assert_eq!(v["choices"].as_array().unwrap().len(), 1);
    assert!(c["index"] == 0 && c["message"]["role"] == "assistant" && c["message"]["content"].is_string(), "{v}");
    assert!(["stop", "length"].contains(&c["finish_reason"].as_str().unwrap()), "{v}");
    let u = &v["usage"];
    let (p, n, t) = (u["prompt_tokens"].as_u64().unwrap(), u["completion_tokens"].as_u64().unwrap(), u["total_tokens"].as_u64().unwrap());
    assert!(p > 0 && n > 0 && t == p + n, "{u}");
}

fn request(max_tokens: u32, stream: bool) -> String {
    json!({"model": "anything", "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "How do I run the tests?"}],
           "max_tokens": max_tokens, "temperature": 0, "stream": stream, "stream_options": {"include_usage": true}})
    .to_string()
}

#[test]
fn serves_the_openai_chat_api() {
    let env = Env::new();
    let model = env.path().join("tiny");
    env.run(["model", "init-tiny", model.to_str().unwrap()]).assert_ok();
    let server = start(&env, &model, &[]);
    let port = server.port;

    let (status, raw) = http(port, "GET", "/v1/models", "", &[]);
    assert_eq!(status, 200, "{raw}");
    let m = json_body(&raw);
    assert!(m["object"] == "list" && m["data"][0]["id"] == "tiny" && m["data"][0]["object"] == "model", "{m}");

    // Plain: greedy is deterministic, and max_tokens bounds the completion.
    let (status, raw) = http(port, "POST", "/v1/chat/completions", &request(6, false), &[]);
    assert_eq!(status, 200, "{raw}");
    let plain = json_body(&raw);
    check_completion(&plain);
    assert!(plain["usage"]["completion_tokens"].as_u64().unwrap() <= 6);

    // Streamed: a role chunk, content chunks, the finish chunk, the usage chunk, [DONE]; the
    // pieces join to the plain answer.
    let (status, raw) = http(port, "POST", "/v1/chat/completions", &request(6, true), &[]);
    assert_eq!(status, 200, "{raw}");
    assert!(raw.to_ascii_lowercase().contains("content-type: text/event-stream"), "{raw}");
    let data = sse_data(&raw);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{raw}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]), "{raw}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, plain["choices"][0]["message"]["content"].as_str().unwrap());
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], plain["choices"][0]["finish_reason"], "{raw}");
    assert_eq!(chunks.last().unwrap()["usage"], plain["usage"], "{raw}");

    // Stop strings are cut, never sent.
    if let Some(cut) = text.chars().nth(2).filter(|c| !c.is_whitespace()) {
        let body = json!({"messages": [{"role": "user", "content": "How do I run the tests?"}, ], "max_tokens": 6, "temperature": 0, "stop": [cut.to_string()]});
        let v = json_body(&http(port, "POST", "/v1/chat/completions", &body.to_string(), &[]).1);
        let got = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(!got.contains(cut) && text.starts_with(got), "{got:?} vs {text:?}");
    }

    // Malformed bodies: 400 with an OpenAI error object.
    for bad in ["{\"messages\": ", "{\"messages\": []}", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": 9}"] {
        let (status, raw) = http(port, "POST", "/v1/chat/completions", bad, &[]);
        assert_eq!(status, 400, "{bad}: {raw}");
        assert!(json_body(&raw)["error"]["message"].is_string(), "{raw}");
    }

    // Two clients at once: both answered, the same greedy text.
    let both: Vec<Value> = (0..2)
        .map(|_| std::thread::spawn(move || http(port, "POST", "/v1/chat/completions", &request(6, false), &[])))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| {
            let (status, raw) = h.join().unwrap();
            assert_eq!(status, 200, "{raw}");
            json_body(&raw)
        })
        .collect();
    for v in &both {
        check_completion(v);
        assert_eq!(v["choices"][0]["message"], plain["choices"][0]["message"]);
    }

    // A client that leaves mid-stream stops its generation (a long one: 4000 tokens).
    {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Sampled, with the end-of-turn and end-of-text tokens banned: it would run long.
        let body = json!({"messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 4000, "temperature": 1.0, "seed": 3,
                          "stream": true, "logit_bias": {"0": -100, "1": -100, "2": -100}})
        .to_string();
        write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut first = [0u8; 256];
        let n = s.read(&mut first).unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).contains("200"), "the stream started");
        std::thread::sleep(Duration::from_millis(300));
    }
    let t0 = Instant::now();
    while !server.stderr.lock().unwrap().contains("client went away") {
        assert!(t0.elapsed() < Duration::from_secs(120), "generation did not stop: {}", server.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    // … and the server goes on answering.
    let (status, _) = http(port, "POST", "/v1/chat/completions", &request(3, false), &[]);
    assert_eq!(status, 200);
}

#[test]
fn api_keys_guard_every_request_and_other_hosts_need_one() {
    let env = Env::new();
    let model = env.path().join("tiny");
    env.run(["model", "init-tiny", model.to_str().unwrap()]).assert_ok();

    let r = env.run(["serve", "--model", model.to_str().unwrap(), "--no-adapter", "--host", "0.0.0.0", "--port", "0"]);
    r.assert_failed();
    assert!(r.stderr.contains("API key"), "{}", r.stderr);

    let server = start(&env, &model, &["--api-key", "s3cret-key"]);
    for (path, method, body) in [("/v1/models", "GET", String::new()), ("/v1/chat/completions", "POST", request(2, false))] {
        let (status, raw) = http(server.port, method, path, &body, &[]);
        assert_eq!(status, 401, "{raw}");
        let (status, _) = http(server.port, method, path, &body, &[("Authorization", "Bearer wrong")]);
        assert_eq!(status, 401);
        let (status, raw) = http(server.port, method, path, &body, &[("Authorization", "Bearer s3cret-key")]);
        assert_eq!(status, 200, "{raw}");
    }
}

#[test]
fn a_full_queue_answers_503_and_the_queued_request_is_served() {
    let env = Env::new();
    let model = env.path().join("tiny");
    env.run(["model", "init-tiny", model.to_str().unwrap()]).assert_ok();
    let server = start(&env, &model, &["--queue", "1"]);
    let port = server.port;

    // A long sampled stream holds the one generation slot until its client leaves.
    let mut busy = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = json!({"messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 4000, "temperature": 1.0, "seed": 3,
                      "stream": true, "logit_bias": {"0": -100, "1": -100, "2": -100}})
    .to_string();
    write!(busy, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    // The 200, the headers and the role chunk go out as soon as the job is queued; a second event
    // (the first token) means the generation thread has taken the job out of the queue — before
    // that, the queue of one is full and both requests below would be turned away.
    let mut seen = String::new();
    let t0 = Instant::now();
    while seen.matches("data:").count() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no token streamed: {seen}");
        let mut chunk = [0u8; 256];
        let n = busy.read(&mut chunk).unwrap();
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    assert!(seen.contains("200"), "the stream started: {seen}");

    // Two more: one waits in the queue of one, the other is turned away at once.
    let waiting: Vec<_> = (0..2).map(|_| std::thread::spawn(move || http(port, "POST", "/v1/chat/completions", &request(3, false), &[]))).collect();
    let t0 = Instant::now();
    while !waiting.iter().any(|h| h.is_finished()) {
        assert!(t0.elapsed() < Duration::from_secs(60), "neither extra request was turned away: {}", server.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(busy);
    let mut statuses: Vec<(u16, String)> = waiting.into_iter().map(|h| h.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses[0].0, 200, "the queued request is answered once the slot frees: {}", statuses[0].1);
    check_completion(&json_body(&statuses[0].1));
    assert_eq!(statuses[1].0, 503, "{}", statuses[1].1);
    assert!(json_body(&statuses[1].1)["error"]["message"].is_string(), "{}", statuses[1].1);
}
