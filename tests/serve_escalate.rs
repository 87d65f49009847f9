//! `brain serve --escalate`: a student `brain serve` asks a teacher — a second `brain serve`
//! (OpenAI wire format) or a small Anthropic Messages server in the test — and the client gets
//! the teacher's answer; the exchange is stored scrubbed as a preference pair and a correction,
//! pending review, with provenance `serve` and the model version that answered; routing
//! escalates only answers that should not stand; a failing teacher stores nothing and the
//! client gets the local answer with a warning header.

mod common;
#[path = "support/serve_client.rs"]
mod serve_client;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::Env;
use serde_json::{json, Value};
use serve_client::{header, http, json_body, sse_data, start_with};

fn ask(question: &str, max_tokens: u32, stream: bool) -> String {
    json!({"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}],
           "max_tokens": max_tokens, "temperature": 0, "stream": stream})
    .to_string()
}

/// A `logit_bias` that bans the student's blank and special tokens: the random model's own
/// greedy choice is blank lines, an answer with nothing to prefer against.
fn text_only(env: &Env) -> Value {
    let tokenizer: Value = serde_json::from_str(&std::fs::read_to_string(env.path().join("student/tokenizer.json")).unwrap()).unwrap();
    let mut banned = serde_json::Map::new();
    for (token, id) in tokenizer["model"]["vocab"].as_object().unwrap() {
        if token.chars().all(|c| matches!(c, 'Ċ' | 'Ġ' | 'ĉ' | 'č')) {
            banned.insert(id.to_string(), json!(-100));
        }
    }
    for t in tokenizer["added_tokens"].as_array().unwrap() {
        banned.insert(t["id"].to_string(), json!(-100));
    }
    Value::Object(banned)
}

/// `ask` with the student held to text.
fn ask_text(env: &Env, question: &str, max_tokens: u32, stream: bool) -> String {
    let mut v: Value = serde_json::from_str(&ask(question, max_tokens, stream)).unwrap();
    v["logit_bias"] = text_only(env);
    v.to_string()
}

fn text_of(raw: &str) -> String {
    json_body(raw)["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("no answer: {raw}")).to_string()
}

/// The examples serve stored, as `brain review list --json` shows them, with their content.
fn stored(env: &Env) -> Vec<Value> {
    let list = env.run(["review", "list", "--json"]).json();
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap();
            env.run(["review", "show", id, "--json"]).json()
        })
        .collect()
}

/// Two tiny models with different weights, and a project around the student.
fn models(env: &Env) {
    env.run(["model", "init-tiny", "student", "--seed", "1"]).assert_ok();
    env.run(["model", "init-tiny", "teacher", "--seed", "2"]).assert_ok();
}

#[test]
fn a_student_escalates_to_a_brain_teacher_and_stores_what_it_learned() {
    let env = Env::new();
    models(&env);
    env.write_config("[serve]\nescalate_max_tokens = 12\n");
    // The teacher: the tiny model after a few updates on chat data, so it answers with text
    // (a random one echoes the blank line that ends its prompt).
    let teacher_env = Env::new();
    let qa = [("How do I run the tests?", "Run cargo test."), ("What does cargo fmt do?", "It formats the code."), ("How do I build?", "Run cargo build.")];
    let lines: String = qa.iter().map(|(q, a)| format!("{}\n", json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}))).collect();
    std::fs::create_dir_all(teacher_env.path().join("data")).unwrap();
    std::fs::write(teacher_env.path().join("data/train.jsonl"), lines.repeat(3)).unwrap();
    std::fs::write(teacher_env.path().join("data/valid.jsonl"), &lines).unwrap();
    let teacher_model = env.path().join("teacher");
    let t = teacher_model.to_str().unwrap();
    let taught = ["train", "--model", t, "--data", "data", "--adapter-path", "taught", "--iters", "40", "--learning-rate", "1e-2", "--fine-tune-type", "full", "--no-register"];
    teacher_env.run(taught).assert_ok();
    let teacher = start_with(&teacher_env, &["--model", t, "--adapter-path", "taught"], &[]);
    let url = format!("http://127.0.0.1:{}/v1", teacher.port);
    let student = start_with(&env, &["--model", "student", "--no-adapter", "--escalate", &url, "--escalate-when", "always"], &[]);

    // The client gets the teacher's answer: what the teacher says to the same conversation.
    let (status, raw) = http(student.port, "POST", "/v1/chat/completions", &ask_text(&env, "How do I run the tests?", 6, false), &[]);
    assert_eq!(status, 200, "{raw}");
    assert!(header(&raw, "x-brain-escalation").is_some_and(|h| h.starts_with("teacher ") && h.contains("(always)")), "{raw}");
    let (_, direct) = http(teacher.port, "POST", "/v1/chat/completions", &ask("How do I run the tests?", 12, false), &[]);
    let taught = text_of(&raw);
    assert_eq!(taught, text_of(&direct));
    let (_, local) = http(student.port, "GET", "/v1/models", "", &[]);
    assert_eq!(json_body(&local)["data"][0]["id"], "student");

    // Streamed: the same answer as server-sent events.
    let (status, raw) = http(student.port, "POST", "/v1/chat/completions", &ask_text(&env, "What does cargo fmt do?", 6, true), &[]);
    assert_eq!(status, 200, "{raw}");
    let data = sse_data(&raw);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let streamed: String = data[..data.len() - 1].iter().filter_map(|d| serde_json::from_str::<Value>(d).ok()).filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(String::from)).collect();
    let (_, direct) = http(teacher.port, "POST", "/v1/chat/completions", &ask("What does cargo fmt do?", 12, false), &[]);
    assert_eq!(streamed, text_of(&direct));

    // Stored: per request a preference pair and a correction, pending review, provenance serve.
    let status = env.run(["--json", "status"]).json();
    assert_eq!(status["by_source"], json!({"serve": 4}), "{status:#}");
    assert_eq!(status["by_kind"], json!({"correction": 2, "preference": 2}));
    assert_eq!(status["by_status"]["pending"], 4);
    assert_eq!(status["interactions"], json!({"total": 2, "escalated": 2}));
    let text = env.run(["status"]);
    assert!(text.stdout.contains("served 2 requests, 2 escalated to the teacher"), "{}", text.stdout);
    let examples = stored(&env);
    let pair = examples.iter().find(|e| e["kind"] == "preference" && e["messages"].to_string().contains("run the tests")).unwrap();
    let ex = pair;
    assert!(ex["provenance"].as_str().unwrap().starts_with("serve/chatcmpl-"), "{ex}");
    assert_eq!(ex["messages"].as_array().unwrap().last().unwrap()["content"], taught);
    assert!(ex["rejected"].is_string(), "the local answer is the rejected side: {ex}");
    assert_eq!(ex["metadata"]["route"], "always");
    assert!(pair["summary"]["reason"].as_str().unwrap().contains("escalated"), "{pair}");

    // Once reviewed, they are training data like any source's: the pairs for DPO, the teacher's
    // answers for SFT.
    env.run(["review", "approve", "--source", "serve"]).assert_ok();
    env.run(["export", "--out", "snapshot"]).assert_ok();
    let read_all = |form: &str| -> String {
        ["train", "valid", "test"].iter().filter_map(|s| std::fs::read_to_string(env.path().join("snapshot").join(form).join(format!("{s}.jsonl"))).ok()).collect()
    };
    let pairs: Vec<Value> = read_all("preference").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(pairs.len(), 2, "both escalations are DPO pairs");
    assert!(pairs.iter().any(|p| p["chosen"] == taught.as_str()), "{pairs:?}");
    assert!(read_all("chat").contains(&serde_json::to_string(&taught).unwrap()), "the teacher's answer is SFT data");
}

/// A Messages API server: answers every request with `reply`, and keeps (head, body) of each.
fn anthropic_teacher(reply: Value) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let Some((head, body)) = serve_client::read_request(&s) else { continue };
            log.lock().unwrap().push((head, String::from_utf8(body).unwrap()));
            let text = reply.to_string();
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
        }
    });
    (url, seen)
}

#[test]
fn an_anthropic_teacher_routing_and_a_failing_teacher() {
    let env = Env::new();
    models(&env);
    env.write_config("");
    let secret = "ghp_R4nd0mT0k3nW1thTh1rtySixCh4rsXyZ01234";
    let answer = format!("Run `cargo test`. (Your token {secret} should be rotated.)");
    let (url, seen) = anthropic_teacher(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": answer}], "stop_reason": "end_turn", "usage": {"input_tokens": 20, "output_tokens": 11}}));
    let student = start_with(
        &env,
        &["--model", "student", "--no-adapter", "--escalate", &url, "--escalate-api", "anthropic", "--escalate-model", "claude-test", "--escalate-key-env", "TEACHER_KEY"],
        &[("TEACHER_KEY", "sk-ant-test-key")],
    );

    // Routing: an answer forced to be empty (end-of-text first) goes to the teacher…
    let empty = json!({"messages": [{"role": "user", "content": "How do I run the tests?"}], "max_tokens": 8, "temperature": 0,
                       "logit_bias": {"1": 100, "2": 100}})
    .to_string();
    let (status, raw) = http(student.port, "POST", "/v1/chat/completions", &empty, &[]);
    assert_eq!(status, 200, "{raw}");
    assert_eq!(text_of(&raw), answer, "the client gets the teacher's answer as it is");
    assert_eq!(header(&raw, "x-brain-escalation").as_deref(), Some("teacher claude-test (empty)"), "{raw}");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (head, body) = &requests[0];
    let lower = head.to_lowercase();
    assert!(head.starts_with("POST /v1/messages ") && lower.contains("x-api-key: sk-ant-test-key") && lower.contains("anthropic-version: "), "{head}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!((body["model"].as_str(), body["messages"][0]["role"].as_str()), (Some("claude-test"), Some("user")), "{body}");

    // …and is stored scrubbed: the teacher's token never reaches the store.
    let bytes = std::fs::read(env.db_path()).unwrap();
    let wal = std::fs::read(env.path().join("brain.db-wal")).unwrap_or_default();
    for b in [&bytes, &wal] {
        assert!(!b.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret reached the store");
    }
    let examples = stored(&env);
    assert_eq!(examples.len(), 1, "a blank local answer makes no pair, only the correction");
    assert_eq!(examples[0]["kind"], "correction");
    assert!(examples[0]["messages"].to_string().contains("Run `cargo test`."), "{examples:?}");

    // A local answer that stands (three tokens of text) is not escalated, but logged.
    let plain = json!({"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 3, "temperature": 0, "logit_bias": text_only(&env)}).to_string();
    let (status, raw) = http(student.port, "POST", "/v1/chat/completions", &plain, &[]);
    assert!(!text_of(&raw).trim().is_empty(), "{raw}");
    assert_eq!(status, 200, "{raw}");
    assert_eq!(header(&raw, "x-brain-escalation").as_deref(), Some("none"), "{raw}");
    assert_eq!(seen.lock().unwrap().len(), 1, "the teacher was not asked");
    let status = env.run(["--json", "status"]).json();
    assert_eq!(status["interactions"], json!({"total": 2, "escalated": 1}), "{status:#}");
    assert_eq!(status["total"], 1);
    drop(student);

    // A teacher that cannot be reached: the local answer, a warning, nothing stored.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let student = start_with(&env, &["--model", "student", "--no-adapter", "--escalate", &format!("http://{closed}/v1"), "--escalate-when", "always"], &[]);
    let (status, raw) = http(student.port, "POST", "/v1/chat/completions", &ask("Is this stored?", 4, false), &[]);
    assert_eq!(status, 200, "{raw}");
    assert_eq!(header(&raw, "x-brain-escalation").as_deref(), Some("failed (always)"), "{raw}");
    assert!(header(&raw, "warning").is_some_and(|w| w.contains("escalation failed")), "{raw}");
    let status = env.run(["--json", "status"]).json();
    assert_eq!((status["total"].as_u64(), status["interactions"]["total"].as_u64()), (Some(1), Some(2)), "nothing stored: {status:#}");
}

#[test]
fn escalation_needs_a_project_and_a_set_key() {
    let env = Env::new();
    models(&env);
    let r = env.run(["serve", "--model", "student", "--no-adapter", "--port", "0", "--escalate", "http://127.0.0.1:9/v1"]);
    r.assert_failed();
    assert!(r.stderr.contains("brain init"), "{}", r.stderr);
    env.write_config("");
    let r = env.run(["serve", "--model", "student", "--no-adapter", "--port", "0", "--escalate", "https://api.anthropic.com", "--escalate-model", "claude-x", "--escalate-key-env", "NOT_SET_ANYWHERE_42"]);
    r.assert_failed();
    assert!(r.stderr.contains("NOT_SET_ANYWHERE_42"), "{}", r.stderr);
    let r = env.run(["serve", "--model", "student", "--no-adapter", "--port", "0", "--escalate", "https://api.anthropic.com"]);
    r.assert_failed();
    assert!(r.stderr.contains("escalate_model"), "{}", r.stderr);
}
