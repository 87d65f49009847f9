//! The `llm` capability and the bundled `teacher` plugin, end to end through `brain collect`,
//! against a fake OpenAI-compatible teacher on loopback (a std TcpListener answering
//! `/v1/chat/completions` with text that differs per request): `count` examples stored, calls and
//! tokens in the report, the API key sent from the environment and stored nowhere, an endpoint
//! outside the grant refused for that source alone, the call budget stopping a source, principles
//! made from a store's corrections, and a `sam:plugin@0.1.0` plugin running beside 0.2.0 ones.

mod common;
#[path = "support/fault_plugins.rs"]
mod fault_plugins;
#[path = "support/serve_client.rs"]
mod serve_client;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

const KEY_VAR: &str = "BRAIN_TEST_TEACHER_KEY";
const KEY: &str = "sk-test-teacher-5f3a9c";
const PROMPT_TOKENS: u64 = 11;
const COMPLETION_TOKENS: u64 = 7;

/// A fake teacher: every request gets a reply of its own (words drawn from the request's
/// number), so a collect of N examples has N distinct ones.
struct FakeTeacher {
    /// Base URL, `http://127.0.0.1:PORT/v1`.
    url: String,
    /// (request head, JSON body) of every request, in order.
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl FakeTeacher {
    fn start() -> FakeTeacher {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicU64::new(0));
        let r = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, counter) = (r.clone(), counter.clone());
                std::thread::spawn(move || answer(stream, &r, &counter));
            }
        });
        FakeTeacher { url, requests }
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

const VOCAB: &[&str] = &[
    "borrow", "lifetime", "trait", "iterator", "closure", "vector", "slice", "module", "crate", "macro", "thread", "channel", "mutex",
    "future", "await", "pattern", "match", "enum", "struct", "generic", "bound", "impl", "derive", "serde", "cargo", "test", "bench",
    "unsafe", "pointer", "box", "rc", "arc", "cell", "string", "parse", "error", "result", "option", "panic", "index", "hash", "map",
    "set", "sort", "search", "buffer", "stream", "socket", "file", "path", "config", "logging", "tracing", "profile", "memory", "cache",
    "queue", "stack", "tree", "graph", "matrix", "window", "timer", "signal",
];

/// Fourteen words picked by `n`: two replies share no 5-word run (no near duplicates).
fn words(n: u64) -> String {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(12345);
    (0..14)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            VOCAB[(x >> 33) as usize % VOCAB.len()]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn answer(stream: TcpStream, requests: &Mutex<Vec<(String, Value)>>, counter: &AtomicU64) {
    let Some((head, body)) = serve_client::read_request(&stream) else { return };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = counter.fetch_add(1, Ordering::SeqCst);
    let prompt = body["messages"].to_string();
    let text = if prompt.contains("principle") {
        format!("Always {} (rule {n}).", words(n))
    } else if prompt.contains("Write one realistic") {
        format!("How do I use {}? (question {n})", words(n))
    } else {
        format!("You {} and that is answer {n}.", words(n))
    };
    requests.lock().unwrap().push((head.clone(), body));
    let reply = json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "model": "fake-teacher",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
    })
    .to_string();
    let mut s = stream;
    let path_ok = head.starts_with("POST /v1/chat/completions ");
    let status = if path_ok { "200 OK" } else { "404 Not Found" };
    let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len());
}

/// A `teacher` source in `generate` mode.
fn teacher_source(name: &str, endpoint: &str, grant: &str, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nplugin = \"teacher\"\ngrants = {{ llm = [\"{grant}\"], llm_key_env = \"{KEY_VAR}\" }}\n\
         config = {{ endpoint = \"{endpoint}\", model = \"tiny-teacher\", domain = \"Rust\", {extra} }}\n"
    )
}

fn wasm_source(name: &str, plugin: &str, extra: &str) -> String {
    format!("[[source]]\nname = \"{name}\"\nplugin = {}\n{extra}\n", toml_str(fault_plugins::wasm(plugin)))
}

fn collect(env: &Env, args: &[&str]) -> Run {
    let mut cmd = env.command(["collect", "--json"].iter().chain(args));
    cmd.env(KEY_VAR, KEY);
    Run::from(cmd.output().expect("running brain collect"))
}

fn source<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name} missing: {report:#}"))
}

#[test]
fn a_teacher_source_stores_count_examples_and_reports_its_calls_and_tokens() {
    let teacher = FakeTeacher::start();
    let env = Env::new();
    env.write_config(&teacher_source("tutor", &teacher.url, &format!("{}/", teacher.url), "count = 4, topics = [\"lifetimes\", \"traits\"]"));
    let run = collect(&env, &[]);
    run.assert_ok();
    let report = run.json();
    let s = source(&report, "tutor");
    assert_eq!((s["received"].as_u64(), s["stored"].as_u64()), (Some(4), Some(4)), "{report:#}");
    // Two calls per example (the request, then its answer), each with the fake's usage.
    assert_eq!(s["llm"], json!({"calls": 8, "prompt_tokens": 8 * PROMPT_TOKENS, "completion_tokens": 8 * COMPLETION_TOKENS}), "{report:#}");
    assert_eq!(teacher.count(), 8);
    assert_eq!(env.status()["by_source"], json!({"tutor": 4}));

    // The examples: the teacher's question, then its answer; labelled and traceable.
    let db = env.db();
    let mut stmt = db.prepare("SELECT kind, task, provenance, messages, metadata FROM examples ORDER BY provenance").unwrap();
    let rows: Vec<(String, String, String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    for (i, (kind, task, provenance, messages, metadata)) in rows.iter().enumerate() {
        assert_eq!((kind.as_str(), task.as_str()), ("chat", "teacher-rust"));
        assert_eq!(provenance, &format!("teacher:{}#tiny-teacher/{i}", teacher.url));
        let m: Value = serde_json::from_str(messages).unwrap();
        assert!(m[0]["content"].as_str().unwrap().starts_with("How do I use"), "{m}");
        assert!(m[1]["content"].as_str().unwrap().contains("that is answer"), "{m}");
        let meta: Value = serde_json::from_str(metadata).unwrap();
        assert_eq!(meta["topic"], if i % 2 == 0 { "lifetimes" } else { "traits" }, "{meta}");
    }
    // Each example had its own seed, the topic was in the request, and the API key from the
    // environment went to the endpoint, never into the store.
    let requests = teacher.requests.lock().unwrap().clone();
    let seeds: Vec<u64> = requests.iter().filter_map(|(_, b)| b["seed"].as_u64()).collect();
    assert_eq!(seeds, [1, 1, 2, 2, 3, 3, 4, 4]);
    assert!(requests[0].1["messages"].to_string().contains("lifetimes"), "{}", requests[0].1);
    assert!(requests.iter().all(|(h, b)| h.to_lowercase().contains(&format!("authorization: bearer {KEY}")) && b["model"] == "tiny-teacher"));
    let leaked = env.count(&format!(
        "SELECT (SELECT count(*) FROM examples WHERE messages || metadata || provenance LIKE '%{KEY}%') + \
         (SELECT count(*) FROM checkpoints WHERE checkpoint LIKE '%{KEY}%')"
    ));
    assert_eq!(leaked, 0);

    // The checkpoint: the next collect makes nothing new and asks the teacher nothing.
    let again = collect(&env, &[]);
    again.assert_ok();
    assert_eq!(source(&again.json(), "tutor")["llm"]["calls"], 0);
    assert_eq!((teacher.count(), env.status()["total"].as_u64()), (8, Some(4)));
    // The text report shows the usage.
    env.write_config(&teacher_source("tutor", &teacher.url, &teacher.url, "count = 5"));
    let mut cmd = env.command(["collect"]);
    cmd.env(KEY_VAR, KEY);
    let text = Run::from(cmd.output().unwrap());
    text.assert_ok();
    assert!(text.stdout.contains("llm: 2 calls, 36 tokens (22 prompt, 14 completion)"), "{}", text.stdout);
    assert_eq!(env.status()["total"], 5);
}

#[test]
fn an_endpoint_outside_the_grant_fails_that_source_alone() {
    let teacher = FakeTeacher::start();
    let env = Env::new();
    let mut config = teacher_source("good", &teacher.url, &teacher.url, "count = 2");
    // Granted another path on the same server, and a look-alike with the grant as a prefix.
    config.push_str(&teacher_source("rogue", &teacher.url, &teacher.url.replace("/v1", "/v2"), "count = 2"));
    config.push_str(&teacher_source("prefix", &format!("{}.evil.com", teacher.url), &teacher.url, "count = 2"));
    config.push_str(&wasm_source("healthy", "healthy-source", "config = { count = 3 }"));
    env.write_config(&config);
    let run = collect(&env, &[]);
    run.assert_failed();
    let report = run.json();
    for name in ["rogue", "prefix"] {
        let s = source(&report, name);
        let err = s["error"].as_str().unwrap_or_else(|| panic!("{name} did not fail: {report:#}"));
        assert!(err.contains(&format!("`{name}`")) && err.contains("denied `llm` access") && err.contains("grants = { llm = [...] }"), "{err}");
        assert_eq!((s["stored"].as_u64(), s["llm"]["calls"].as_u64()), (Some(0), Some(0)), "{s:#}");
        assert!(run.stderr.contains(&format!("source \"{name}\"")), "{}", run.stderr);
    }
    let mut failed: Vec<&str> = report["failed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    failed.sort_unstable();
    assert_eq!(failed, ["prefix", "rogue"]);
    assert_eq!(env.status()["by_source"], json!({"good": 2, "healthy": 3}));
    assert_eq!(teacher.count(), 4, "only the granted source reached the teacher");

    // A grant that is not an http(s) URL is a config error naming the source.
    env.write_config(&teacher_source("bad", &teacher.url, "127.0.0.1:9/v1", "count = 1"));
    let run = env.run(["collect"]);
    run.assert_failed();
    assert!(run.stderr.contains("\"bad\"") && run.stderr.contains("llm grant") && run.stderr.contains("not an http"), "{}", run.stderr);
}

#[test]
fn a_source_over_its_llm_call_budget_stops_and_keeps_what_it_stored() {
    let teacher = FakeTeacher::start();
    let env = Env::new();
    let mut config = teacher_source("chatty", &teacher.url, &teacher.url, "count = 5");
    config.push_str("budget = { llm_calls = 3 }\n");
    config.push_str(&wasm_source("healthy", "healthy-source", "config = { count = 3 }"));
    env.write_config(&config);
    let run = collect(&env, &[]);
    run.assert_failed();
    let report = run.json();
    let s = source(&report, "chatty");
    let err = s["error"].as_str().unwrap();
    assert!(err.contains("llm budget of 3 calls") && err.contains("after 3 calls") && err.contains("budget = { llm_calls"), "{err}");
    // Example 0 took two calls; example 1 got its request (call 3) and was refused its answer.
    assert_eq!((s["stored"].as_u64(), s["llm"]["calls"].as_u64()), (Some(1), Some(3)), "{s:#}");
    assert_eq!(teacher.count(), 3, "the refused call never reached the teacher");
    assert_eq!(env.status()["by_source"], json!({"chatty": 1, "healthy": 3}));

    // The token budget in [plugins] applies to every source unless it sets its own.
    let config = format!(
        "{}\n[plugins]\nmax_llm_tokens = 20\ncache_dir = {}\n",
        teacher_source("chatty", &teacher.url, &teacher.url, "count = 5"),
        toml_str(plugin_cache())
    );
    env.write_config(&config);
    let run = collect(&env, &[]);
    run.assert_failed();
    let err = source(&run.json(), "chatty")["error"].as_str().unwrap().to_string();
    assert!(err.contains("llm budget of 20 tokens") && err.contains("max_llm_tokens"), "{err}");
}

#[test]
fn principles_mode_turns_the_stores_corrections_into_principles() {
    let teacher = FakeTeacher::start();
    let env = Env::new();
    // A store holding three corrections (stored as chats by a plugin, then marked as corrections).
    env.write_config(&wasm_source("seed", "healthy-source", "config = { count = 3 }"));
    env.run(["collect"]).assert_ok();
    {
        let db = rusqlite::Connection::open(env.db_path()).unwrap();
        db.execute("UPDATE examples SET kind = 'correction'", []).unwrap();
    }
    let db_path = env.db_path();
    let config = format!(
        "{}[[source]]\nname = \"principles\"\nplugin = \"teacher\"\n\
         grants = {{ sqlite = [\"brain.db\"], llm = [\"{url}\"] }}\n\
         config = {{ mode = \"principles\", endpoint = \"{url}\", model = \"tiny-teacher\", store = {db} }}\n",
        wasm_source("seed", "healthy-source", "config = { count = 3 }"),
        url = teacher.url,
        db = toml_str(&db_path),
    );
    env.write_config(&config);
    let run = collect(&env, &["--source", "principles"]);
    run.assert_ok();
    let s = source(&run.json(), "principles").clone();
    assert_eq!((s["stored"].as_u64(), s["llm"]["calls"].as_u64()), (Some(3), Some(3)), "{s:#}");
    assert_eq!(env.count("SELECT count(*) FROM examples WHERE kind = 'principle' AND task = 'principle'"), 3);
    // Each principle points at the correction it came from, and states a rule.
    let linked = env.count(
        "SELECT count(*) FROM examples p JOIN examples c ON p.provenance = 'correction/' || c.id \
         WHERE p.kind = 'principle' AND c.kind = 'correction'",
    );
    assert_eq!(linked, 3);
    assert_eq!(env.count("SELECT count(*) FROM examples WHERE kind = 'principle' AND messages LIKE '%Always %'"), 3);
    // The teacher saw the correction's text.
    assert!(teacher.requests.lock().unwrap()[0].1["messages"].to_string().contains("Say hello number"));
    // Done: the next collect reads no correction twice.
    let again = collect(&env, &["--source", "principles"]);
    again.assert_ok();
    assert_eq!(source(&again.json(), "principles")["llm"]["calls"], 0);
    assert_eq!(teacher.count(), 3);
}

#[test]
fn a_plugin_built_against_0_1_runs_beside_0_2_plugins() {
    let teacher = FakeTeacher::start();
    let env = Env::new();
    let mut config = wasm_source("legacy", "legacy-source", "");
    config.push_str(&wasm_source("healthy", "healthy-source", "config = { count = 3 }"));
    config.push_str(&teacher_source("tutor", &teacher.url, &teacher.url, "count = 1"));
    env.write_config(&config);
    let run = collect(&env, &[]);
    run.assert_ok();
    assert_eq!(env.status()["by_source"], json!({"healthy": 3, "legacy": 2, "tutor": 1}));
    assert_eq!(env.count("SELECT count(*) FROM examples WHERE messages LIKE '%sam:plugin 0.1.0 built legacy example%'"), 2);

    // The runtime reports each plugin's own interface version.
    let dir = tempfile::tempdir().unwrap();
    let host = brain::plugin::PluginHost::new(dir.path(), brain::plugin::Limits::default()).unwrap();
    let info = |p| host.info(&p).unwrap();
    let legacy = info(brain::plugin::PluginRef::Path(fault_plugins::wasm("legacy-source")));
    let teacher_info = info(brain::plugin::PluginRef::Bundled("teacher".into()));
    assert_eq!((legacy.version.as_str(), teacher_info.version.as_str()), ("0.1.0", "0.2.0"));
    assert!(teacher_info.imports.iter().any(|i| i == "sam:plugin/llm@0.2.0"), "{:?}", teacher_info.imports);
    assert!(!legacy.imports.iter().any(|i| i.contains("llm")), "{:?}", legacy.imports);

    // `brain plugins info` says so too, and warns about a teacher source granted no endpoint.
    env.write_config("[[source]]\nname = \"ungranted\"\nplugin = \"teacher\"\n");
    let r = env.run(["plugins", "info", "teacher"]);
    r.assert_ok();
    assert!(r.stdout.contains("version  0.2.0") && r.stdout.contains("sam:plugin/llm@0.2.0"), "{}", r.stdout);
    assert!(r.stdout.contains("imports sqlite, llm but is granted none"), "{}", r.stdout);
}

#[test]
fn a_teacher_that_never_answers_is_cut_off_at_the_plugin_call_deadline() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(120));
                drop(stream);
            });
        }
    });
    let env = Env::new();
    let mut config = teacher_source("stuck", &url, &url, "count = 2");
    config.push_str(&wasm_source("healthy", "healthy-source", "config = { count = 3 }"));
    config.push_str(&format!("[plugins]\ntimeout_s = 2\ncache_dir = {}\n", toml_str(plugin_cache())));
    env.write_config(&config);
    let run = collect(&env, &[]);
    run.assert_failed();
    let report = run.json();
    let s = source(&report, "stuck");
    let err = s["error"].as_str().unwrap_or_else(|| panic!("stuck did not fail: {report:#}"));
    assert!(err.contains("`stuck`") && err.to_lowercase().contains("timed out"), "{err}");
    assert_eq!((s["stored"].as_u64(), s["llm"]["calls"].as_u64()), (Some(0), Some(1)), "{s:#}");
    assert_eq!(env.status()["by_source"], json!({"healthy": 3}));
}
