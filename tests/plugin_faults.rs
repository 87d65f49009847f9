//! The plugin runtime's sandbox at the `brain::plugin` API: every misbehaving plugin of
//! tests/fault-plugins fails alone, with an error naming it and the cause, and a healthy plugin in
//! the same `PluginHost` keeps working afterwards.

#[path = "support/fault_plugins.rs"]
mod fault_plugins;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use brain::example::{Example, Kind, Message, Role};
use brain::plugin::{Grants, Limits, PluginError, PluginHost, PluginRef, World};

fn host() -> &'static PluginHost {
    static HOST: OnceLock<(tempfile::TempDir, PluginHost)> = OnceLock::new();
    &HOST
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let limits = Limits { memory_bytes: 64 << 20, call_timeout: Duration::from_secs(2) };
            let host = PluginHost::new(&dir.path().join("cache"), limits).unwrap();
            (dir, host)
        })
        .1
}

fn plugin(name: &str) -> PluginRef {
    PluginRef::Path(fault_plugins::wasm(name))
}

/// Runs a source to the end; the examples, or the first error.
fn collect(name: &str, p: &PluginRef, grants: &Grants, config: &str) -> Result<Vec<Example>, PluginError> {
    let mut s = host().open_source(name, p, grants, config, None)?;
    let mut out = Vec::new();
    while let Some(b) = s.next(16)? {
        out.extend(b.examples);
    }
    Ok(out)
}

/// The healthy neighbour still works in the same host.
fn healthy_still_works() {
    let got = collect("neighbour", &plugin("healthy-source"), &Grants::default(), r#"{"count": 5}"#).unwrap();
    assert_eq!(got.len(), 5);
    let mut f = host().open_filter("neighbour-filter", &plugin("healthy-filter"), &Grants::default(), "{}").unwrap();
    let v = f.evaluate(&got).unwrap();
    assert_eq!(v.len(), 5);
}

fn expect_err(name: &str, p: &str, grants: &Grants, config: &str) -> PluginError {
    let err = match collect(name, &plugin(p), grants, config) {
        Ok(ex) => panic!("{p} should have failed, got {} examples: {ex:?}", ex.len()),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert_eq!(err.plugin(), name, "{msg}");
    assert!(msg.contains(&format!("`{name}`")), "error does not name the plugin: {msg}");
    err
}

#[test]
fn healthy_source_and_filter() {
    let got = collect("hello", &plugin("healthy-source"), &Grants::default(), r#"{"count": 40}"#).unwrap();
    assert_eq!(got.len(), 40);
    assert_eq!(got[0].kind, Kind::Chat);
    assert_eq!(got[0].provenance, "healthy#0");
    assert_eq!(got[0].metadata, serde_json::json!({}));
    let mut f = host().open_filter("len", &plugin("healthy-filter"), &Grants::default(), "").unwrap();
    let v = f.evaluate(&got).unwrap();
    assert_eq!(v.len(), 40);
    assert!(v.iter().all(|v| (0.0..=1.0).contains(&v.score) && (1..=10).contains(&v.complexity)));
    assert_eq!(v[0].rule, "length");
    assert!(f.evaluate(&[]).unwrap().is_empty());
}

#[test]
fn checkpoint_and_estimate_reach_the_host() {
    let mut s = host().open_source("cp", &plugin("healthy-source"), &Grants::default(), r#"{"count": 10}"#, Some("7")).unwrap();
    assert_eq!(s.estimate(), Some(3));
    let b = s.next(100).unwrap().unwrap();
    assert_eq!(b.examples.len(), 3);
    assert_eq!(b.checkpoint.as_deref(), Some("10"));
    assert!(s.next(100).unwrap().is_none());
    assert!(s.next(100).unwrap().is_none(), "a finished session stays finished");
}

#[test]
fn trap_is_reported_and_kills_the_session() {
    let name = "trapper";
    let mut s = host().open_source(name, &plugin("trap"), &Grants::default(), "{}", None).unwrap();
    let err = s.next(4).unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("trapper") && err.to_string().contains("unreachable"), "{err}");
    let again = s.next(4).unwrap_err();
    assert!(matches!(again, PluginError::Dead { .. }), "{again}");
    assert!(again.to_string().contains("trapper") && again.to_string().contains("(trap)"), "{again}");
    healthy_still_works();
}

#[test]
fn panic_message_is_captured() {
    let err = expect_err("panicky", "panic", &Grants::default(), "{}");
    assert!(matches!(err, PluginError::Panic { .. }), "{err}");
    assert!(err.to_string().contains("fault plugin panicked on purpose"), "{err}");
    healthy_still_works();
}

#[test]
fn infinite_loop_times_out() {
    let err = expect_err("spinner", "spin", &Grants::default(), "{}");
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    healthy_still_works();
}

#[test]
fn a_plugin_blocked_in_a_host_call_times_out() {
    // `std::thread::sleep` waits in `wasi:io/poll`, where epoch interruption never fires; the call
    // still ends at the deadline (2 s here, the sleep is an hour), in `next` and in `open`.
    for (name, config) in [("sleepy-next", "{}"), ("sleepy-open", r#"{"when": "open"}"#)] {
        let err = expect_err(name, "sleeper", &Grants::default(), config);
        assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");
    }
    // A filter blocked the same way.
    let mut f = host().open_filter("sleepy-filter", &plugin("sleepy-filter"), &Grants::default(), "{}").unwrap();
    let err = f.evaluate(&examples(2)).err().expect("the sleeping filter timed out");
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("`sleepy-filter`"), "{err}");
    let again = f.evaluate(&examples(1)).err().expect("a timed-out filter is dead");
    assert!(matches!(again, PluginError::Dead { .. }), "{again}");
    healthy_still_works();
}

#[test]
fn memory_bomb_hits_the_cap() {
    let err = expect_err("bomber", "membomb", &Grants::default(), "{}");
    assert!(matches!(err, PluginError::OutOfMemory { .. }), "{err}");
    assert!(err.to_string().contains("64 MiB"), "{err}");
    healthy_still_works();
}

#[test]
fn stack_overflow_is_a_trap() {
    let err = expect_err("deep", "stackoverflow", &Grants::default(), "{}");
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("stack overflow"), "{err}");
    healthy_still_works();
}

fn sandbox_dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let granted = tmp.path().join("granted");
    let secret_dir = tmp.path().join("secret");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::create_dir_all(&secret_dir).unwrap();
    std::fs::write(granted.join("ok.txt"), "fine").unwrap();
    std::fs::write(secret_dir.join("key.txt"), "TOP SECRET").unwrap();
    (tmp, granted, secret_dir)
}

fn read_config(path: &Path) -> String {
    serde_json::json!({ "path": path.to_str().unwrap() }).to_string()
}

#[test]
fn reads_stay_inside_read_grants() {
    let (_tmp, granted, secret) = sandbox_dirs();
    let grants = Grants { read: vec![granted.clone()], ..Default::default() };
    // Inside the grant: allowed.
    let ok = collect("reader", &plugin("read-outside"), &grants, &read_config(&granted.join("ok.txt"))).unwrap();
    assert_eq!(ok.len(), 1);
    assert!(ok[0].messages[1].content.contains("fine"));
    // Outside, through `..`, and through a symlink pointing out: refused.
    #[cfg(unix)]
    std::os::unix::fs::symlink(secret.join("key.txt"), granted.join("link.txt")).unwrap();
    let attempts = [secret.join("key.txt"), granted.join("../secret/key.txt"), granted.join("link.txt")];
    for path in attempts {
        if !cfg!(unix) && path.ends_with("link.txt") {
            continue;
        }
        let err = expect_err("reader", "read-outside", &grants, &read_config(&path));
        assert!(matches!(err, PluginError::Plugin { .. }), "{err}");
        assert!(!err.to_string().contains("TOP SECRET"), "{err}");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
    // No grant at all: nothing is visible.
    let err = expect_err("reader", "read-outside", &Grants::default(), &read_config(&granted.join("ok.txt")));
    assert!(matches!(err, PluginError::Plugin { .. }), "{err}");
    healthy_still_works();
}

#[test]
fn read_grants_are_read_only() {
    let (_tmp, granted, _secret) = sandbox_dirs();
    let grants = Grants { read: vec![granted.clone()], ..Default::default() };
    let config = serde_json::json!({ "dir": granted.to_str().unwrap() }).to_string();
    let err = expect_err("writer", "write-readonly", &grants, &config);
    assert!(matches!(err, PluginError::Plugin { .. }), "{err}");
    assert!(!granted.join("pwned.txt").exists(), "the plugin wrote into its read-only grant");
    healthy_still_works();
}

#[test]
fn missing_read_grant_is_a_clear_error() {
    let grants = Grants { read: vec![PathBuf::from("/definitely/not/here")], ..Default::default() };
    let err = host().open_source("g", &plugin("healthy-source"), &grants, "{}", None).err().unwrap();
    assert!(matches!(err, PluginError::BadGrant { .. }), "{err}");
    assert!(err.to_string().contains("/definitely/not/here"), "{err}");
}

#[test]
fn malformed_examples_are_refused() {
    for (mode, needle) in [
        ("empty-messages", "no messages"),
        ("metadata", "not an object"),
        ("huge", "over the limit"),
        ("too-many", "at most 16"),
    ] {
        let config = serde_json::json!({ "mode": mode }).to_string();
        let err = expect_err("shoddy", "malformed", &Grants::default(), &config);
        assert!(matches!(err, PluginError::Malformed { .. }), "{mode}: {err}");
        assert!(err.to_string().contains(needle), "{mode}: {err}");
    }
    healthy_still_works();
}

fn examples(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            kind: Kind::Chat,
            task: "t".into(),
            messages: vec![
                Message { role: Role::User, content: format!("q{i}") },
                Message { role: Role::Assistant, content: format!("a{i}") },
            ],
            rejected: None,
            provenance: format!("test#{i}"),
            metadata: serde_json::json!({"i": i}),
        })
        .collect()
}

#[test]
fn bad_verdicts_are_refused() {
    for (mode, needle) in [
        ("count", "4 verdicts for 3 examples"),
        ("nan", "NaN"),
        ("score", "1.5"),
        ("complexity", "complexity 0"),
    ] {
        let config = serde_json::json!({ "mode": mode }).to_string();
        let mut f = host().open_filter("judgy", &plugin("bad-verdicts"), &Grants::default(), &config).unwrap();
        let err = f.evaluate(&examples(3)).unwrap_err();
        assert!(matches!(err, PluginError::Malformed { .. }), "{mode}: {err}");
        assert!(err.to_string().contains("`judgy`") && err.to_string().contains(needle), "{mode}: {err}");
    }
    healthy_still_works();
}

#[test]
fn load_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    // Missing file.
    let missing = PluginRef::Path(tmp.path().join("nope.wasm"));
    let err = host().open_source("ghost", &missing, &Grants::default(), "{}", None).err().unwrap();
    assert!(matches!(err, PluginError::Load { .. }) && err.to_string().contains("nope.wasm"), "{err}");
    // Not a component.
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x01\0\0\0 definitely not a component").unwrap();
    let err = host().info(&PluginRef::Path(junk)).err().unwrap();
    assert!(matches!(err, PluginError::Load { .. }) && err.to_string().contains("not a WebAssembly component"), "{err}");
    // Wrong world for how it is configured.
    let err = host().open_source("f", &plugin("healthy-filter"), &Grants::default(), "{}", None).err().unwrap();
    assert!(err.to_string().contains("is a filter plugin"), "{err}");
    let err = host().open_filter("s", &plugin("healthy-source"), &Grants::default(), "{}").err().unwrap();
    assert!(err.to_string().contains("is a source plugin"), "{err}");
    // Unknown bundled name.
    let err = host().info(&PluginRef::Bundled("no-such-plugin".into())).err().unwrap();
    assert!(err.to_string().contains("no bundled plugin named `no-such-plugin`"), "{err}");
    // An incompatible interface version.
    let err = host().open_filter("future", &plugin("future-version"), &Grants::default(), "{}").err().unwrap();
    assert!(matches!(err, PluginError::Load { .. }), "{err}");
    assert!(err.to_string().contains("sam:plugin@0.3.0") && err.to_string().contains("0.1.x to 0.2.x"), "{err}");
}

#[test]
fn info_describes_plugins() {
    let i = host().info(&plugin("healthy-source")).unwrap();
    assert_eq!(i.world, World::Source);
    assert_eq!(i.version, "0.2.0");
    // A plugin built against the previous version still loads, and says which it is.
    let i = host().info(&plugin("legacy-source")).unwrap();
    assert_eq!((i.world, i.version.as_str()), (World::Source, "0.1.0"));
    assert!(i.imports.iter().all(|n| !n.starts_with("sam:plugin/") || n.ends_with("@0.1.0")), "{:?}", i.imports);
    assert!(!i.bundled);
    assert!(i.size_bytes > 0);
    assert!(i.imports.iter().any(|n| n.starts_with("sam:plugin/")), "{:?}", i.imports);
    let i = host().info(&plugin("healthy-filter")).unwrap();
    assert_eq!(i.world, World::Filter);
    let names = PluginHost::bundled_names();
    assert!(names.contains(&"git"), "{names:?}");
    // Every embedded plugin loads and targets this host's interface.
    for name in &names {
        let i = host().info(&PluginRef::Bundled(name.to_string())).unwrap_or_else(|e| panic!("{e}"));
        assert!(i.bundled && i.version.starts_with("0.2."), "{name}: {i:?}");
    }
    let git = host().info(&PluginRef::Bundled("git".into())).unwrap();
    assert!(git.bundled && git.world == World::Source);
    assert!(git.imports.iter().any(|n| n.starts_with("sam:plugin/git@")), "{:?}", git.imports);
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let p = plugin("healthy-source");
    {
        let h = PluginHost::new(&cache, Limits::default()).unwrap();
        h.info(&p).unwrap();
    }
    let mut files: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    // The artifact, and the digest the host recorded for it.
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].extension().unwrap() == "cwasm");
    assert_eq!(files[1], files[0].with_extension("cwasm.sha256"));
    let stamp = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    // A second host loads the cached artifact instead of compiling (and rewriting) it.
    let h = PluginHost::new(&cache, Limits::default()).unwrap();
    let got: Vec<_> = {
        let mut s = h.open_source("again", &p, &Grants::default(), r#"{"count": 2}"#, None).unwrap();
        std::iter::from_fn(|| s.next(8).unwrap()).flat_map(|b| b.examples).collect()
    };
    assert_eq!(got.len(), 2);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().modified().unwrap(), stamp);
    // A corrupt cache file is recompiled, not fatal.
    std::fs::write(&files[0], b"garbage").unwrap();
    let h = PluginHost::new(&cache, Limits::default()).unwrap();
    h.info(&p).unwrap();
    assert_ne!(std::fs::read(&files[0]).unwrap(), b"garbage", "the corrupt artifact was replaced");
    // The cache folder is private to the user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o700);
    }
}

#[test]
fn sessions_run_on_threads() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let n = 10 + i;
                let got = collect(&format!("t{i}"), &plugin("healthy-source"), &Grants::default(), &format!("{{\"count\": {n}}}")).unwrap();
                assert_eq!(got.len(), n);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn plugin_errors_are_reported_as_plugin_errors() {
    // The config is missing `path`: the guest's own Err string comes back as PluginError::Plugin.
    let err = host().open_source("cfg", &plugin("read-outside"), &Grants::default(), "{}", None).err().unwrap();
    assert!(matches!(err, PluginError::Plugin { .. }), "{err}");
    assert!(err.to_string().contains("config needs `path`"), "{err}");
}
