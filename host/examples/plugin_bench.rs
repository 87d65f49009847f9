//! Micro-benchmark of the plugin runtime (run by bench/plugin_call.sh, in release):
//! - compile a component cold, load it from the on-disk cache, instantiate it;
//! - µs per example of a batched filter call at several batch sizes;
//! - examples/s pulled from a source through the boundary.
//!
//! Usage: plugin_bench <filter.wasm> [<source.wasm>]

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

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let filter = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!("usage: plugin_bench <filter.wasm> [<source.wasm>]"))?);
    let source = args.next().map(PathBuf::from);
    let tmp = std::env::temp_dir().join(format!("brain-plugin-bench-{}", std::process::id()));
    let cache = tmp.join("cache");
    let grants = Grants::default();
    let fref = PluginRef::Path(filter.clone());

    println!("plugin runtime micro-benchmark ({})", filter.display());
    let t = Instant::now();
    let host = PluginHost::new(&cache, Limits::default())?;
    host.info(&fref)?;
    println!("  compile (cold, Cranelift) + link:        {:>10.2} ms", t.elapsed().as_secs_f64() * 1e3);
    drop(host);

    let t = Instant::now();
    let host = PluginHost::new(&cache, Limits::default())?;
    host.info(&fref)?;
    println!("  new host + load from disk cache + link:  {:>10.2} ms", t.elapsed().as_secs_f64() * 1e3);

    let n = 200;
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
        let t = Instant::now();
        for _ in 0..calls {
            let v = f.evaluate(examples)?;
            assert_eq!(v.len(), batch);
        }
        let el = t.elapsed();
        println!("    batch {batch:>5}: {:>8.3} µs/example  ({:>8.1} µs/call)", per(el, calls * batch), per(el, calls));
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
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
