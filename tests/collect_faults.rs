//! Faulty source plugins beside a healthy one in one `brain collect`: each fault is reported
//! with the source's name and its cause, the healthy source's examples are stored, and the
//! exit status is non-zero. Also: a plugin that cannot be found or loaded.

mod common;
#[path = "support/fault_plugins.rs"]
mod fault_plugins;

use common::*;

fn wasm_source(name: &str, plugin: &str, extra: &str) -> String {
    format!("[[source]]\nname = \"{name}\"\nplugin = {}\n{extra}\n", toml_str(fault_plugins::wasm(plugin)))
}

#[test]
fn every_fault_is_reported_by_name_and_the_healthy_source_is_stored() {
    let env = Env::new();
    let granted = env.path().join("granted");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::write(env.path().join("secret.txt"), "top secret").unwrap();
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
    ];
    let mut config = wasm_source("healthy", "healthy-source", "config = { count = 600 }");
    for (name, plugin, extra, _) in &faults {
        config.push_str(&wasm_source(name, plugin, extra));
    }
    config.push_str("[plugins]\nmemory_mb = 64\ntimeout_s = 2\n");
    config.push_str(&format!("cache_dir = {}\n", toml_str(plugin_cache())));
    env.write_config(&config);

    let run = env.run(["collect", "--json"]);
    run.assert_failed();
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
