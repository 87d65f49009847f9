//! Faulty source plugins beside a healthy one in one `brain collect`: each fault is reported
//! with the source's name and its cause, the healthy source's examples are stored, and the
//! exit status is non-zero; the run ends in bounded time and memory even when a plugin blocks in
//! a host call. Also: a plugin that cannot be found or loaded, a filter that hangs (its examples
//! wait in review), and secrets a plugin hands over outside its examples.

mod common;
#[path = "support/core_instances.rs"]
mod core_instances;
#[path = "support/fault_plugins.rs"]
mod fault_plugins;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use core_instances::{core_module, with_core_instances};

/// A finished `brain` run with the child's own peak resident memory and its wall time.
struct Measured {
    run: Run,
    peak_rss_bytes: u64,
    wall: Duration,
}

/// `brain` run under tests/support/peak_rss.py, which reports the run's own `ru_maxrss` (see
/// there why the test process cannot measure it directly).
struct MeasuredCommand {
    wrapped: std::process::Command,
    report: tempfile::NamedTempFile,
}

impl MeasuredCommand {
    fn new(cmd: &std::process::Command) -> MeasuredCommand {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/peak_rss.py");
        let report = tempfile::NamedTempFile::new().unwrap();
        let mut wrapped = std::process::Command::new("python3");
        wrapped.arg(&script).arg(report.path()).arg(cmd.get_program()).args(cmd.get_args()).stdin(Stdio::null());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        MeasuredCommand { wrapped, report }
    }

    fn run(mut self) -> Measured {
        let started = Instant::now();
        let out = self.wrapped.output().expect("running python3 tests/support/peak_rss.py");
        let wall = started.elapsed();
        let run = Run { code: out.status.code(), stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() };
        let kib: u64 = std::fs::read_to_string(self.report.path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("peak_rss.py reported nothing: {}", run.stderr));
        Measured { run, peak_rss_bytes: kib * 1024, wall }
    }
}

fn run_measured(cmd: &mut std::process::Command) -> Measured {
    MeasuredCommand::new(cmd).run()
}

/// Compiles every plugin the config names into the shared cache first (`brain plugins list`
/// loads each), so a measured collect's peak memory is the run's, not Cranelift's: a cold cache
/// compiles several components in parallel, which alone can take hundreds of MiB.
fn warm_plugin_cache(env: &Env) {
    let _ = env.run(["plugins", "list"]);
}

/// The bound on a collect's peak memory in these tests: several plugin instances at their 64 MiB
/// cap plus the host (debug build); far below what an unbounded plugin would take.
const PEAK_RSS_LIMIT: u64 = 512 << 20;

fn wasm_source(name: &str, plugin: &str, extra: &str) -> String {
    format!("[[source]]\nname = \"{name}\"\nplugin = {}\n{extra}\n", toml_str(fault_plugins::wasm(plugin)))
}

#[test]
fn every_fault_is_reported_by_name_and_the_healthy_source_is_stored() {
    let env = Env::new();
    let granted = env.path().join("granted");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::write(env.path().join("secret.txt"), "top secret").unwrap();
    let fifo = std::ffi::CString::new(granted.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let grant = format!("grants = {{ read = [{}] }}", toml_str(&granted));

    // (source name, fault plugin, extra keys, words the error must contain)
    let faults: Vec<(&str, &str, String, &[&str])> = vec![
        ("crashy", "trap", String::new(), &["crash", "trap"]),
        ("panicky", "panic", String::new(), &["panicked", "fault plugin panicked on purpose"]),
        ("loopy", "spin", String::new(), &["timed out"]),
        ("hungry", "membomb", String::new(), &["out of memory"]),
        ("deep", "stackoverflow", String::new(), &["stack overflow"]),
        (
            "nosy",
            "read-outside",
            format!("{grant}\nconfig = {{ path = {} }}", toml_str(env.path().join("secret.txt"))),
            &["cannot read"],
        ),
        ("vandal", "write-readonly", format!("{grant}\nconfig = {{ dir = {} }}", toml_str(&granted)), &["cannot write"]),
        ("sloppy", "malformed", String::new(), &["malformed"]),
        // Blocked in `wasi:io/poll` (an hour-long sleep), where epoch interruption never fires.
        ("sleepy", "sleeper", String::new(), &["timed out"]),
        // Blocked in a file read that never returns: a FIFO with no writer, inside its grant.
        ("piped", "read-outside", format!("{grant}\nconfig = {{ path = {} }}", toml_str(granted.join("pipe"))), &["timed out"]),
        ("drowsy", "sleeper", "config = { when = \"open\" }".into(), &["timed out"]),
    ];
    let mut config = wasm_source("healthy", "healthy-source", "config = { count = 600 }");
    for (name, plugin, extra, _) in &faults {
        config.push_str(&wasm_source(name, plugin, extra));
    }
    config.push_str("[plugins]\nmemory_mb = 64\ntimeout_s = 2\n");
    config.push_str(&format!("cache_dir = {}\n", toml_str(plugin_cache())));
    env.write_config(&config);

    warm_plugin_cache(&env);
    let measured = run_measured(&mut env.command(["collect", "--json"]));
    let run = measured.run;
    run.assert_failed();
    // timeout_s is 2: each fault ends within it; the whole run (ten sources on at most one
    // worker per core, plus compiling) is given a wide margin, far below the hour-long sleeps.
    assert!(measured.wall < Duration::from_secs(120), "collect took {:?}", measured.wall);
    assert!(measured.peak_rss_bytes < PEAK_RSS_LIMIT, "peak RSS {} MiB", measured.peak_rss_bytes >> 20);
    eprintln!("collect with every fault: {:?}, peak RSS {} MiB", measured.wall, measured.peak_rss_bytes >> 20);
    let report = run.json();
    let sources = report["sources"].as_array().unwrap();
    let by_name = |n: &str| sources.iter().find(|s| s["name"] == n).unwrap_or_else(|| panic!("{n} missing: {report:#}"));

    let healthy = by_name("healthy");
    assert_eq!(healthy["stored"], 600, "{report:#}");
    assert_eq!(healthy["error"], serde_json::Value::Null);
    for (name, _, _, words) in &faults {
        let s = by_name(name);
        let error = s["error"].as_str().unwrap_or_else(|| panic!("{name} did not fail: {s:#}"));
        assert_eq!(s["stored"], 0, "{name}: {s:#}");
        assert!(error.contains(&format!("`{name}`")), "{name}: the error names the plugin: {error}");
        for w in *words {
            assert!(error.to_lowercase().contains(&w.to_lowercase()), "{name}: {error:?} should say {w:?}");
        }
        assert!(run.stderr.contains(&format!("source \"{name}\"")), "{name} reported on stderr:\n{}", run.stderr);
    }
    let mut failed: Vec<&str> = report["failed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    failed.sort_unstable();
    let mut want: Vec<&str> = faults.iter().map(|f| f.0).collect();
    want.sort_unstable();
    assert_eq!(failed, want);

    assert!(!granted.join("pwned.txt").exists(), "the read-only grant was written");
    let status = env.status();
    assert_eq!(status["total"], 600);
    assert_eq!(status["by_source"], serde_json::json!({"healthy": 600}));
    assert_eq!(env.count("SELECT count(*) FROM examples WHERE messages LIKE '%ESCAPED%' OR messages LIKE '%WROTE%'"), 0);

    // The healthy source finished: its checkpoint makes the next run add nothing, and the
    // faulty ones fail again the same way.
    let again = env.run(["collect", "--json"]);
    again.assert_failed();
    assert_eq!(again.json()["stored"], 0);
    assert_eq!(env.status()["total"], 600);
}

#[test]
fn a_missing_plugin_file_is_a_clear_error_and_does_not_stop_the_others() {
    let env = Env::new();
    let mut config = wasm_source("healthy", "healthy-source", "config = { count = 5 }");
    config.push_str("[[source]]\nname = \"ghost\"\nplugin = \"plugins/ghost.wasm\"\n");
    env.write_config(&config);
    let run = env.run(["collect"]);
    run.assert_failed();
    let ghost = env.path().join("plugins/ghost.wasm");
    assert!(run.stderr.contains("source \"ghost\""), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("plugin file {} does not exist", ghost.display())), "{}", run.stderr);
    // The config line of the plugin is given (brain.toml:line:column).
    assert!(run.stderr.contains("brain.toml:7:10"), "{}", run.stderr);
    assert_eq!(env.status()["by_source"], serde_json::json!({"healthy": 5}));
}

#[test]
fn unknown_bundled_plugins_and_non_components_are_clear_errors() {
    let env = Env::new();
    std::fs::write(env.path().join("junk.wasm"), b"this is not wasm").unwrap();
    env.write_config("[[source]]\nname = \"typo\"\nplugin = \"gti\"\n\n[[source]]\nname = \"junk\"\nplugin = \"junk.wasm\"\n");
    let run = env.run(["collect"]);
    run.assert_failed();
    assert!(run.stderr.contains("no bundled plugin named \"gti\"") && run.stderr.contains("git"), "{}", run.stderr);
    assert!(run.stderr.contains("source \"junk\""), "{}", run.stderr);
    assert!(run.stderr.contains("`junk`"), "the load error names the plugin: {}", run.stderr);
}

#[test]
fn a_filter_configured_as_a_source_is_refused_with_a_hint() {
    let env = Env::new();
    env.write_config(&wasm_source("backwards", "healthy-filter", ""));
    let run = env.run(["collect"]);
    run.assert_failed();
    assert!(run.stderr.contains("[[filter]]"), "{}", run.stderr);
}

/// A secret the built-in scrubber knows (an AWS access key id).
const SECRET: &str = "AKIAZ7Q3L5M2N8P4R6T1";

/// Every byte the store holds on disk (database, WAL).
fn store_bytes(env: &Env) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(env.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("brain.db")) {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

#[test]
fn a_secret_handed_over_outside_examples_never_reaches_the_store_or_the_terminal() {
    let env = Env::new();
    let mut config = wasm_source("healthy", "healthy-source", "config = { count = 5 }");
    config.push_str(&wasm_source("leaky", "leaky", &format!("config = {{ secret = \"{SECRET}\" }}")));
    // A filter planting it in its verdicts (reason, flag, rule, fired) and a log line.
    config.push_str(&format!(
        "[[filter]]\nname = \"leaky-filter\"\nplugin = {}\nconfig = {{ secret = \"{SECRET}\" }}\n",
        toml_str(fault_plugins::wasm("leaky-filter"))
    ));
    env.write_config(&config);
    // Every log level on, so the plugin's log lines are written.
    let measured = run_measured(env.command(["collect", "--json"]).env("BRAIN_LOG", "trace"));
    let run = measured.run;
    run.assert_failed();
    for (channel, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(!text.contains(SECRET), "the secret reached {channel}:\n{text}");
        assert!(!text.contains("8P4R6T1"), "part of the secret reached {channel}:\n{text}");
    }
    // Each channel was used, redacted: the log lines, the error, the discard reason.
    assert!(run.stderr.contains("using key [REDACTED:"), "{}", run.stderr);
    assert!(run.stderr.contains("judging with [REDACTED:"), "{}", run.stderr);
    assert!(run.stderr.contains("looks old"), "{}", run.stderr);
    let report = run.json();
    let leaky = report["sources"].as_array().unwrap().iter().find(|s| s["name"] == "leaky").unwrap();
    let error = leaky["error"].as_str().unwrap();
    assert!(error.contains("`leaky`") && error.contains("the key was [REDACTED:"), "{error}");
    let reasons: Vec<&String> = leaky["discarded"].as_object().unwrap().keys().collect();
    assert!(reasons.len() == 1 && reasons[0].contains("because of [REDACTED:"), "{reasons:?}");
    // Terminal controls and bidi overrides are stripped from plugin text.
    assert!(run.stderr.contains("title") && !run.stderr.contains("\x1b]0;pwned"), "{:?}", run.stderr);
    assert!(!run.stderr.contains('\u{202E}'), "a bidi override reached the terminal: {:?}", run.stderr);

    // The store: the batch and its checkpoint were stored, redacted.
    assert_eq!(env.status()["by_source"], serde_json::json!({"healthy": 5, "leaky": 1}));
    let checkpoint: String = env.db().query_row("SELECT checkpoint FROM checkpoints WHERE source = 'leaky'", [], |r| r.get(0)).unwrap();
    assert!(checkpoint.starts_with("cursor [REDACTED:"), "{checkpoint}");
    let (reason, flags, rule, fired): (String, String, String, String) = env
        .db()
        .query_row("SELECT reject_reason, flags, rule, fired FROM verdicts WHERE filter = 'leaky-filter' LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    for (field, value) in [("reason", &reason), ("flags", &flags), ("rule", &rule), ("fired", &fired)] {
        assert!(value.contains("[REDACTED:") && !value.contains(SECRET), "verdict {field}: {value}");
    }
    assert_eq!(env.count("SELECT count(*) FROM verdicts WHERE filter = 'leaky-filter'"), 6);
    let bytes = store_bytes(&env);
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "the secret is in the store's files");
}

#[test]
fn a_filter_that_hangs_lets_nothing_through_to_auto_approval() {
    // approve_above = 0: the length filter alone approves every example.
    let review = "[review]\napprove_above = 0.0\nreject_below = 0.0\n";
    let filters = |sleepy: bool| {
        let mut f = format!("[[filter]]\nname = \"length\"\nplugin = {}\n\n", toml_str(fault_plugins::wasm("healthy-filter")));
        if sleepy {
            f.push_str(&format!("[[filter]]\nname = \"sleepy\"\nplugin = {}\n\n", toml_str(fault_plugins::wasm("sleepy-filter"))));
        }
        f
    };
    // 1100 examples: five batches of at most 256, so the filter fails three times and is then
    // left out for the last two.
    let source = wasm_source("healthy", "healthy-source", "config = { count = 1100 }");
    let plugins = format!("[plugins]\ntimeout_s = 1\ncache_dir = {}\n", toml_str(plugin_cache()));

    let control = Env::new();
    control.write_config(&format!("{source}{}{review}{plugins}", filters(false)));
    control.run(["collect"]).assert_ok();
    assert!(control.count("SELECT count(*) FROM reviews WHERE status = 'approved'") > 0, "the control approves nothing");

    let env = Env::new();
    env.write_config(&format!("{source}{}{review}{plugins}", filters(true)));
    warm_plugin_cache(&env);
    let measured = run_measured(&mut env.command(["collect", "--json"]));
    let run = measured.run;
    run.assert_ok();
    assert!(measured.wall < Duration::from_secs(90), "collect took {:?}", measured.wall);
    assert!(measured.peak_rss_bytes < PEAK_RSS_LIMIT, "peak RSS {} MiB", measured.peak_rss_bytes >> 20);
    assert!(run.stderr.contains("sleepy") && run.stderr.contains("timed out"), "{}", run.stderr);
    let src = &run.json()["sources"][0];
    assert_eq!(src["received"], 1100, "{src}");
    assert_eq!(env.count("SELECT count(*) FROM reviews WHERE status = 'approved'"), 0, "{src}");
    let waiting = env.count("SELECT count(*) FROM reviews WHERE status = 'pending' AND reason LIKE 'not scored by filter sleepy%'");
    let undecided = env.count("SELECT count(*) FROM examples e WHERE NOT EXISTS (SELECT 1 FROM reviews r WHERE r.example_id = e.id AND r.status != 'pending')");
    assert!(waiting > 0, "{src}");
    assert_eq!(waiting, undecided, "every example not rejected as a duplicate waits, naming the filter: {src}");
    // All five batches counted the filter's failure, the last two after it was left out.
    assert_eq!(src["curation"]["filter_failed:sleepy"].as_u64().unwrap() + src["duplicate"].as_u64().unwrap(), 1100, "{src}");
}

#[test]
fn a_source_over_its_budget_stops_keeping_what_it_stored_and_goes_on_next_time() {
    let env = Env::new();
    let mut config = wasm_source("greedy", "healthy-source", "config = { count = 1000 }\nbudget = { examples = 300 }");
    config.push_str(&wasm_source("neighbour", "healthy-source", "config = { count = 700 }"));
    // [plugins] max_examples is the default of every source without its own budget.
    config.push_str(&format!("[plugins]\nmax_examples = 700\ncache_dir = {}\n", toml_str(plugin_cache())));
    env.write_config(&config);
    let run = env.run(["collect", "--json"]);
    run.assert_failed();
    let report = run.json();
    let by_name = |n: &str| report["sources"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap().clone();
    let greedy = by_name("greedy");
    let error = greedy["error"].as_str().unwrap();
    assert!(error.contains("budget of 300 examples") && error.contains("budget = { examples"), "{error}");
    assert_eq!(greedy["received"], 300, "{greedy}");
    // The neighbour emits the same examples (the same plugin): those greedy stored first are
    // duplicates for it.
    let neighbour = by_name("neighbour");
    assert_eq!(neighbour["received"], 700, "{neighbour}");
    assert_eq!(neighbour["error"], serde_json::Value::Null);
    assert_eq!(report["failed"], serde_json::json!(["greedy"]));
    assert_eq!(env.status()["total"], 700);
    let checkpoint = |env: &Env| -> String {
        env.db().query_row("SELECT checkpoint FROM checkpoints WHERE source = 'greedy'", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(checkpoint(&env), "300");
    // The checkpoint of the last stored batch: the next collect goes on from example 300.
    let again = env.run(["collect", "--json", "--source", "greedy"]);
    again.assert_failed();
    assert_eq!(again.json()["sources"][0]["received"], 300, "{}", again.stdout);
    assert_eq!(checkpoint(&env), "600");
    // A time budget of zero stops a source before its first batch, with the same kind of message.
    env.write_config(&wasm_source("late", "healthy-source", "budget = { seconds = 0 }"));
    let late = env.run(["collect", "--json"]);
    late.assert_failed();
    assert!(late.json()["sources"][0]["error"].as_str().unwrap().contains("budget of 0 s"), "{}", late.stdout);
}

#[test]
fn a_flood_of_discard_reasons_and_log_lines_is_bounded() {
    let env = Env::new();
    let mut config = wasm_source("flood", "flood", "config = { batches = 20, lines = 1000 }");
    config.push_str(&wasm_source("healthy", "healthy-source", "config = { count = 50 }"));
    env.write_config(&config);
    warm_plugin_cache(&env);
    let measured = run_measured(env.command(["collect", "--json"]).env("BRAIN_LOG", "info"));
    let run = measured.run;
    run.assert_ok();
    assert!(measured.peak_rss_bytes < PEAK_RSS_LIMIT, "peak RSS {} MiB", measured.peak_rss_bytes >> 20);
    let report = run.json();
    let flood = report["sources"].as_array().unwrap().iter().find(|s| s["name"] == "flood").unwrap();
    assert_eq!(flood["stored"], 20, "{flood}");
    // 20 × 256 distinct reasons: at most 256 are kept by name, the rest are counted together.
    let reasons = flood["discarded"].as_object().unwrap();
    assert!(reasons.len() <= 257, "{} reasons kept", reasons.len());
    assert!(reasons["(other reasons)"].as_u64().unwrap() > 0);
    assert_eq!(reasons.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 20 * 256 * 2, "no discard lost from the count");
    // 21 calls of 1000 lines each: at most 200 per call are written, the drops are reported.
    let written = run.stderr.matches("flood line").count();
    assert!(written > 0 && written <= 21 * 200, "{written} plugin log lines written");
    assert!(run.stderr.contains("dropped 800 log lines"), "{}", &run.stderr[run.stderr.len().saturating_sub(2000)..]);
    assert_eq!(env.status()["by_source"], serde_json::json!({"flood": 20, "healthy": 50}));
}

#[test]
fn hostile_git_and_sqlite_calls_fail_alone_in_bounded_time_and_memory() {
    let env = Env::new();
    let granted = std::fs::canonicalize(env.path()).unwrap().join("granted");
    std::fs::create_dir_all(&granted).unwrap();
    // A database inside the grant.
    let db = granted.join("notes.db");
    rusqlite::Connection::open(&db).unwrap().execute_batch("CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('a');").unwrap();
    // A private repository outside the grant, and one inside it borrowing its objects.
    let private = env.path().join("private");
    init_repo(&private);
    commit(&private, &[("diary.txt", b"dear diary")], b"PRIVATE-COMMIT-MESSAGE");
    let borrower = granted.join("borrower");
    init_repo(&borrower);
    std::fs::write(borrower.join(".git/objects/info/alternates"), format!("{}\n", private.join(".git/objects").display())).unwrap();
    let head = git(&private, &["rev-parse", "HEAD"]);
    git(&borrower, &["update-ref", "refs/heads/main", &head]);
    // A repository inside the grant, searched by commit message.
    let mine = granted.join("mine");
    init_repo(&mine);
    commit(&mine, &[("a.txt", b"a")], b"first");

    let sqlite_grant = format!("grants = {{ sqlite = [{}] }}", toml_str(&granted));
    let git_grant = format!("grants = {{ git = [{}] }}", toml_str(&granted));
    let hog = |sql: &str, then: &str| format!("{sqlite_grant}\nconfig = {{ db = {}, sql = {}, then = {} }}", toml_str(&db), toml_str(sql), toml_str(then));
    let probe = |path: &std::path::Path, tip: &str| format!("{git_grant}\nconfig = {{ path = {}, tip = {} }}", toml_str(path), toml_str(tip));
    let forever = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r";
    // (source name, fault plugin, extra keys, words the error must contain)
    let faults: Vec<(&str, &str, String, &[&str])> = vec![
        ("blob", "sqlite-hog", hog("SELECT zeroblob(2000000000)", "SELECT 1"), &["too big"]),
        ("concat", "sqlite-hog", hog("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 1000) SELECT group_concat(hex(zeroblob(100000))) FROM r", "SELECT 1"), &["too big"]),
        ("forever", "sqlite-hog", hog(forever, "SELECT 1"), &["timed out"]),
        ("txn", "sqlite-hog", hog("BEGIN", "SELECT x FROM t"), &["not authorized"]),
        ("borrower", "git-probe", probe(&borrower, "HEAD"), &["denied `git` access", "private/.git/objects"]),
        ("searcher", "git-probe", probe(&mine, ":/first"), &["not allowed"]),
    ];
    let mut config = wasm_source("healthy", "healthy-source", "config = { count = 600 }");
    for (name, plugin, extra, _) in &faults {
        config.push_str(&wasm_source(name, plugin, extra));
    }
    config.push_str(&format!("[plugins]\nmemory_mb = 64\ntimeout_s = 2\ncache_dir = {}\n", toml_str(plugin_cache())));
    env.write_config(&config);

    warm_plugin_cache(&env);
    let measured = run_measured(&mut env.command(["collect", "--json"]));
    let run = measured.run;
    run.assert_failed();
    assert!(measured.wall < Duration::from_secs(90), "collect took {:?}", measured.wall);
    assert!(measured.peak_rss_bytes < PEAK_RSS_LIMIT, "peak RSS {} MiB", measured.peak_rss_bytes >> 20);
    eprintln!("collect with hostile capability calls: {:?}, peak RSS {} MiB", measured.wall, measured.peak_rss_bytes >> 20);
    let report = run.json();
    let by_name = |n: &str| report["sources"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(by_name("healthy")["stored"], 600, "{report:#}");
    for (name, _, _, words) in &faults {
        let s = by_name(name);
        let error = s["error"].as_str().unwrap_or_else(|| panic!("{name} did not fail: {s:#}"));
        assert!(error.contains(&format!("`{name}`")), "{name}: the error names the plugin: {error}");
        for w in *words {
            assert!(error.contains(w), "{name}: {error:?} should say {w:?}");
        }
        assert_eq!(s["stored"], 0, "{name}: {s:#}");
    }
    // Nothing outside the grant was read.
    assert_eq!(env.count("SELECT count(*) FROM examples WHERE messages LIKE '%PRIVATE-COMMIT-MESSAGE%'"), 0);
    assert_eq!(env.status()["by_source"], serde_json::json!({"healthy": 600}));
}

#[test]
fn a_sleeping_plugin_does_not_keep_the_pipeline_lock() {
    let env = Env::new();
    let mut config = wasm_source("healthy", "healthy-source", "config = { count = 20 }");
    config.push_str(&wasm_source("sleepy", "sleeper", ""));
    config.push_str(&format!("[plugins]\ntimeout_s = 1\ncache_dir = {}\n", toml_str(plugin_cache())));
    env.write_config(&config);
    let lock = env.path().join(".brain-pipeline.lock");
    for attempt in 0..2 {
        let measured = run_measured(&mut env.command(["pipeline", "run", "--stages", "collect", "--force"]));
        // The sleep is an hour; the run ends at the plugin's deadline and gives the lock back.
        assert!(measured.wall < Duration::from_secs(60), "pipeline run {attempt} took {:?}", measured.wall);
        let run = measured.run;
        assert!(run.stdout.contains("failed: sleepy"), "{}\n{}", run.stdout, run.stderr);
        assert!(!run.stderr.contains("pipeline lock"), "run {attempt} found the lock taken:\n{}", run.stderr);
        assert!(!lock.exists(), "the lock outlived run {attempt}");
    }
    assert_eq!(env.status()["by_source"], serde_json::json!({"healthy": 20}));
}

#[test]
fn a_full_disk_fails_the_collect_clearly_and_keeps_what_was_committed() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    env.write_config(&format!("{}{}", wasm_source("small", "healthy-source", "config = { count = 50 }"), wasm_source("big", "flood", "config = { batches = 100000, lines = 0 }")));
    env.run(["collect", "--source", "small"]).assert_ok();
    let committed = env.count("SELECT count(*) FROM examples");
    assert_eq!(committed, 50);
    // A disk that is full: no file of this process may grow past 512 KiB beyond the store's
    // size now (RLIMIT_FSIZE; SIGXFSZ ignored, so writes fail with EFBIG instead of killing it).
    let limit = std::fs::metadata(env.db_path()).unwrap().len() + (512 << 10);
    let mut cmd = MeasuredCommand::new(&env.command(["collect", "--json"]));
    // SAFETY: only async-signal-safe calls between fork and exec; the limits pass from the
    // measuring python3 to brain.
    unsafe {
        cmd.wrapped.pre_exec(move || {
            let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let measured = cmd.run();
    let run = measured.run;
    run.assert_failed();
    assert!(measured.wall < Duration::from_secs(120), "collect took {:?}", measured.wall);
    let said = format!("{}\n{}", run.stdout, run.stderr).to_lowercase();
    // Whether a batch or the commit of a write group hit the limit, the error says what to check.
    assert!(said.contains("disk full or read-only"), "the error points at the disk:\n{said}");
    assert!(said.contains("committed before") && said.contains("kept"), "{said}");
    // What was committed before stays, and the store is sound.
    let check: String = env.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    assert!(env.count("SELECT count(*) FROM examples WHERE source = 'small'") == 50);
}

#[test]
fn a_component_that_brings_more_memories_tables_or_instances_fails_alone() {
    let env = Env::new();
    let healthy = std::fs::read(fault_plugins::wasm("healthy-source")).unwrap();
    // (source name, extra core instances, words the error must contain)
    let attacks: Vec<(&str, Vec<u8>, &[&str])> = vec![
        // Eight more memories of 48 MiB: each under the 64 MiB cap, 384 MiB together.
        ("memories", with_core_instances(&healthy, &core_module(Some(768), None), 8), &["more than one linear memory"]),
        // Forty tables of 900,000 function references: 36 million elements.
        ("tables", with_core_instances(&healthy, &core_module(None, Some(900_000)), 40), &["more than 1000000 elements"]),
        // A hundred empty instances.
        ("instances", with_core_instances(&healthy, &core_module(None, None), 100), &["more than 64 core instances"]),
    ];
    let mut config = wasm_source("healthy", "healthy-source", "config = { count = 50 }");
    for (name, bytes, _) in &attacks {
        let path = env.path().join(format!("{name}.wasm"));
        std::fs::write(&path, bytes).unwrap();
        config.push_str(&format!("[[source]]\nname = \"{name}\"\nplugin = {}\nconfig = {{ count = 50 }}\n", toml_str(&path)));
    }
    config.push_str(&format!("[plugins]\nmemory_mb = 64\ntimeout_s = 2\ncache_dir = {}\n", toml_str(plugin_cache())));
    env.write_config(&config);

    warm_plugin_cache(&env);
    let measured = run_measured(&mut env.command(["collect", "--json"]));
    let run = measured.run;
    run.assert_failed();
    assert!(measured.peak_rss_bytes < PEAK_RSS_LIMIT, "peak RSS {} MiB", measured.peak_rss_bytes >> 20);
    let report = run.json();
    let by_name = |n: &str| report["sources"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(by_name("healthy")["stored"], 50, "{report:#}");
    for (name, _, words) in &attacks {
        let s = by_name(name);
        let error = s["error"].as_str().unwrap_or_else(|| panic!("{name} did not fail: {s:#}")).to_lowercase();
        eprintln!("{name}: {error}");
        assert!(error.contains(&format!("`{name}`")), "{name}: the error names the plugin: {error}");
        for w in *words {
            assert!(error.contains(w), "{name}: {error:?} should say {w:?}");
        }
        assert_eq!(s["stored"], 0, "{name}: {s:#}");
    }
    assert_eq!(env.status()["by_source"], serde_json::json!({"healthy": 50}));
}
