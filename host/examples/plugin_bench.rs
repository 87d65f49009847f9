//! Micro-benchmark of the plugin runtime (run by bench/plugin_call.sh, in release):
//! - compile a component cold, load it from the on-disk cache, instantiate it;
//! - µs per example of a batched filter call at several batch sizes;
//! - examples/s pulled from a source through the boundary;
//! - with `BENCH_GIT_REPO=<repo>`: commits/s read by the git capability alone, and examples/s of
//!   the bundled git plugin through the boundary (no store).
//!
//! Usage: [BENCH_GIT_REPO=<repo>] plugin_bench [<filter.wasm> [<source.wasm>]]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use brain::example::{Example, Kind, Message, Role};
use brain::plugin::{Grants, Limits, PluginHost, PluginRef};

fn example(i: usize) -> Example {
    Example {
        kind: Kind::Chat,
        task: "commit-message".into(),
        messages: vec![
            Message { role: Role::User, content: format!("Write the commit message for change {i}: fix the parser's handling of escaped quotes.") },
            Message { role: Role::Assistant, content: format!("Fix escaped quotes in the parser ({i})") },
        ],
        rejected: None,
        provenance: format!("bench@{i:040}"),
        metadata: serde_json::json!({ "i": i }),
    }
}

/// CPU time of this thread (Linux: /proc/thread-self/schedstat), to read figures on a busy machine.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let filter = args.next().map(PathBuf::from);
    let source = args.next().map(PathBuf::from);
    let tmp = std::env::temp_dir().join(format!("brain-plugin-bench-{}", std::process::id()));
    let cache = tmp.join("cache");
    let grants = Grants::default();
    let host = PluginHost::new(&cache, Limits::default())?;

    if let Some(filter) = &filter {
        let fref = PluginRef::Path(filter.clone());
        println!("plugin runtime micro-benchmark ({})", filter.display());
        let t = Instant::now();
        let cold = PluginHost::new(&tmp.join("cold-cache"), Limits::default())?;
        cold.info(&fref)?;
        println!("  compile (cold, Cranelift) + link:        {:>10.2} ms", t.elapsed().as_secs_f64() * 1e3);
        drop(cold);

        let t = Instant::now();
        let warm = PluginHost::new(&tmp.join("cold-cache"), Limits::default())?;
        warm.info(&fref)?;
        println!("  new host + load from disk cache + link:  {:>10.2} ms", t.elapsed().as_secs_f64() * 1e3);
        drop(warm);

        let n = 200;
        host.info(&fref)?;
        let t = Instant::now();
        for _ in 0..n {
            let _f = host.open_filter("bench", &fref, &grants, "{}")?;
        }
        println!("  instantiate + open (per instance):       {:>10.1} µs", per(t.elapsed(), n));

        let mut f = host.open_filter("bench", &fref, &grants, "{}")?;
        let pool: Vec<Example> = (0..4096).map(example).collect();
        println!("  batched filter call:");
        for batch in [1usize, 10, 100, 256, 1000, 4096] {
            let examples = &pool[..batch];
            // Warm up, then time enough calls for ~200k examples (at least 200 calls).
            for _ in 0..10 {
                f.evaluate(examples)?;
            }
            let calls = (200_000 / batch).max(200);
            let (t, c) = (Instant::now(), cpu_ns());
            for _ in 0..calls {
                let v = f.evaluate(examples)?;
                assert_eq!(v.len(), batch);
            }
            let el = t.elapsed();
            let cpu = match (c, cpu_ns()) {
                (Some(a), Some(b)) => format!(", on-CPU {:.3} µs/example", (b - a) as f64 / 1e3 / (calls * batch) as f64),
                _ => String::new(),
            };
            println!("    batch {batch:>5}: {:>8.3} µs/example wall ({:>8.1} µs/call{cpu})", per(el, calls * batch), per(el, calls));
        }
    }

    if let Some(source) = source {
        let sref = PluginRef::Path(source);
        let count = 200_000u64;
        let config = format!("{{\"count\": {count}}}");
        let t = Instant::now();
        let mut s = host.open_source("bench-source", &sref, &grants, &config, None)?;
        let mut got = 0usize;
        while let Some(b) = s.next(256)? {
            got += b.examples.len();
        }
        let el = t.elapsed();
        println!("  source pull (batches of 256): {} examples, {:.0} examples/s ({:.3} µs/example)", got, got as f64 / el.as_secs_f64(), per(el, got));
    }
    if let Some(repo) = std::env::var_os("BENCH_GIT_REPO") {
        use brain::plugin::bindings::source::sam::plugin::git::WalkOptions;
        let repo = PathBuf::from(repo);
        let r = brain::capability::git::GitRepo::open(&repo).map_err(anyhow::Error::msg)?;
        let opts = WalkOptions { tip: "HEAD".into(), hide: vec![], max_patch_bytes: 4000, skip_paths: vec!["*.lock".into()], include_merges: false };
        let (t, c) = (Instant::now(), cpu_ns());
        let mut w = r.walk(&opts).map_err(anyhow::Error::msg)?;
        let listed = t.elapsed();
        let mut n = 0usize;
        loop {
            let page = w.next_page(256).map_err(anyhow::Error::msg)?;
            if page.is_empty() {
                break;
            }
            n += page.len();
        }
        let el = t.elapsed();
        let cpu = match (c, cpu_ns()) {
            (Some(a), Some(b)) => format!(", on-CPU {:.0} commits/s", n as f64 / ((b - a) as f64 / 1e9)),
            _ => String::new(),
        };
        println!("  git capability alone: {n} commits in {:.3} s ({:.0} commits/s wall{cpu}; listing ids {:.1} ms)", el.as_secs_f64(), n as f64 / el.as_secs_f64(), listed.as_secs_f64() * 1e3);
        let grants = Grants { git: vec![repo.clone()], ..Default::default() };
        let config = serde_json::json!({ "repos": [repo.to_str().unwrap_or_default()] }).to_string();
        let t = Instant::now();
        let mut s = host.open_source("git-bench", &PluginRef::Bundled("git".into()), &grants, &config, None)?;
        let mut got = 0usize;
        while let Some(b) = s.next(256)? {
            got += b.examples.len();
        }
        let el = t.elapsed();
        println!("  bundled git plugin through the boundary: {got} examples in {:.3} s ({:.0} examples/s)", el.as_secs_f64(), got as f64 / el.as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
