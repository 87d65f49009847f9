//! End to end through the real binary: `brain demo` on a repository the test makes, then
//! `pipeline run` again (incremental collect, the training threshold, `--force`), model rollback
//! and `generate` following the active version, and a SIGKILLed training run that the next
//! `pipeline run` resumes from its checkpoint; a promoted version shipped to Ollama
//! (`[pipeline] ollama_model`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{commit, init_repo, Env};

fn make_repo(dir: &Path) {
    init_repo(dir);
    commit(dir, &[("README.md", b"# Widget\n\nWidget turns lists of numbers into charts.\n\n## Install\n\nRun `cargo install widget` and then `widget --help` to see every option it has.\n")], b"Add a README that says what Widget does");
    for i in 0..10 {
        let body = format!("pub fn step_{i}(x: i64) -> i64 {{\n    x * {i} + 1\n}}\n");
        commit(dir, &[(&format!("src/step_{i}.rs"), body.as_bytes())], format!("Add step {i}, which scales its input by {i}").as_bytes());
    }
}

/// Rewrites `key = …` lines of the demo's brain.toml.
fn set(env_dir: &Path, key: &str, value: &str) {
    let path = env_dir.join("brain.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut done = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if !done && l.starts_with(&format!("{key} = ")) {
                done = true;
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(done, "no `{key} =` line in the demo config");
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
}

/// A quick tiny-model demo (4 SFT updates, no pretraining) of a small repository: its folder.
fn tiny_demo(env: &Env) -> std::path::PathBuf {
    let repo = env.path().join("repo");
    make_repo(&repo);
    let demo = env.path().join("demo");
    env.run(["demo".as_ref(), demo.as_os_str(), "--repo".as_ref(), repo.as_os_str(), "--tiny".as_ref(), "--iters".as_ref(), "4".as_ref(), "--pretrain-iters".as_ref(), "0".as_ref()])
        .assert_ok();
    demo
}

fn step<'a>(report: &'a serde_json::Value, stage: &str) -> &'a serde_json::Value {
    report["steps"].as_array().unwrap().iter().find(|s| s["stage"] == stage).unwrap_or_else(|| panic!("no {stage} step in {report:#}"))
}

#[test]
fn demo_then_incremental_pipeline_threshold_force_and_rollback() {
    let env = Env::new();
    let repo = env.path().join("repo");
    make_repo(&repo);
    let demo = env.path().join("demo");
    let demo_flags = ["--tiny", "--iters", "12", "--pretrain-iters", "6"].map(|f| f.as_ref());
    let r = env.run(["demo".as_ref(), demo.as_os_str(), "--repo".as_ref(), repo.as_os_str()].into_iter().chain(demo_flags));
    r.assert_ok();
    assert!(r.stdout.contains("repo-commits"), "{}", r.stdout);
    // The tiny base was pretrained (full training) and fused before SFT: its weights are not
    // the random ones it started from.
    assert!(r.stdout.contains("tiny base model: 6 pretraining updates"), "{}", r.stdout);
    let tensor = |dir: &str| {
        let bytes = std::fs::read(demo.join(dir).join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.tensor("model.layers.0.mlp.down_proj.weight").unwrap().data().to_vec()
    };
    assert_ne!(tensor("pretrain/random-model"), tensor("model"), "the demo's base model is the random one");
    assert!(r.stdout.contains("model v1: promoted to active"), "{}", r.stdout);
    let png = r.stdout.lines().find_map(|l| l.strip_prefix("loss curves: ")).expect("the report names the loss-curve image");
    assert!(Path::new(png.trim()).is_file());

    let cfg = demo.join("brain.toml");
    let brain = |args: &[&str]| {
        let mut all: Vec<std::ffi::OsString> = vec!["--config".into(), cfg.clone().into()];
        all.extend(args.iter().map(Into::into));
        env.run(all)
    };
    // Nothing new: the second collect stores nothing and nothing trains below the threshold.
    set(&demo, "min_new_examples", "50");
    let r = brain(&["--json", "pipeline", "run"]);
    r.assert_ok();
    let rep = r.json();
    assert_eq!(step(&rep, "collect")["data"]["stored"], 0, "{rep:#}");
    assert_eq!(step(&rep, "train")["status"], "skipped", "{rep:#}");

    // One new commit: collected, still below the threshold.
    commit(&repo, &[("src/extra.rs", b"pub fn extra() -> u8 { 7 }\n")], b"Add extra, the lucky number helper");
    let rep = brain(&["--json", "pipeline", "run"]).json();
    assert!(step(&rep, "collect")["data"]["stored"].as_u64().unwrap() >= 1, "{rep:#}");
    assert_eq!(step(&rep, "train")["status"], "skipped");

    // --force trains, evaluates and registers v2.
    let r = brain(&["--json", "pipeline", "run", "--force"]);
    r.assert_ok();
    let rep = r.json();
    assert_eq!(step(&rep, "train")["status"], "done", "{rep:#}");
    assert_eq!(rep["model_version"], "v2");

    // Make v2 the active one, then roll back: v1 returns and generate uses it.
    brain(&["models", "promote", "v2"]).assert_ok();
    let g = brain(&["--json", "generate", "--prompt", "What does Widget do?", "--max-tokens", "4"]);
    g.assert_ok();
    assert_eq!(g.json()["model_version"], "v2");
    brain(&["models", "rollback"]).assert_ok();
    let g = brain(&["--json", "generate", "--prompt", "What does Widget do?", "--max-tokens", "4"]);
    g.assert_ok();
    assert_eq!(g.json()["model_version"], "v1", "rollback brings back the previous active version");
}

#[test]
fn killed_training_is_marked_interrupted_and_resumed_by_the_pipeline() {
    let env = Env::new();
    let demo = tiny_demo(&env);
    let cfg = demo.join("brain.toml");

    // A long run that saves often; kill it once a checkpoint exists.
    set(&demo, "iters", "60");
    set(&demo, "save_every", "2");
    let mut child = env
        .command(["--config".as_ref(), cfg.as_os_str(), "-q".as_ref(), "pipeline".as_ref(), "run".as_ref(), "--force".as_ref(), "--stages".as_ref(), "train".as_ref()])
        .spawn()
        .unwrap();
    let started = Instant::now();
    let has_checkpoint = || {
        walk(&demo.join("runs")).iter().any(|p| p.components().any(|c| c.as_os_str() == "checkpoints") && p.is_file())
    };
    while !has_checkpoint() {
        assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be killed");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let runs = env.run(["--config".as_ref(), cfg.as_os_str(), "--json".as_ref(), "runs".as_ref()]);
    runs.assert_ok();
    let runs = runs.json();
    let list = runs.as_array().or_else(|| runs["runs"].as_array()).expect("runs --json is a list").clone();
    assert!(list.iter().any(|r| r["kind"] == "sft" && r["status"] == "interrupted"), "{runs:#}");

    // The next pipeline run resumes it with the run's own settings and finishes it.
    let r = env.run(["--config".as_ref(), cfg.as_os_str(), "--json".as_ref(), "pipeline".as_ref(), "run".as_ref(), "--stages".as_ref(), "train".as_ref()]);
    r.assert_ok();
    let rep = r.json();
    let train = step(&rep, "train");
    assert!(train["detail"].as_str().unwrap().starts_with("resumed run"), "{rep:#}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `[pipeline] ollama_model`: a version the pipeline promotes is fused, written as one GGUF file
/// beside a checked Modelfile, and handed to `ollama create` (a fake `ollama` on PATH logs it).
#[test]
fn a_promoted_version_is_shipped_to_ollama() {
    let env = Env::new();
    let demo = tiny_demo(&env);
    let cfg = demo.join("brain.toml");
    // [pipeline] is the demo config's last table.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("ollama_model = \"sam-demo\"\nsystem_prompt = \"You are SAM.\"\n");
    std::fs::write(&cfg, text).unwrap();
    // A fresh store: the pipeline's version is the first, so it is promoted.
    for entry in std::fs::read_dir(&demo).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("brain.db") {
            std::fs::remove_file(p).unwrap();
        }
    }

    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = env.path().join("ollama.log");
    std::fs::write(bin.join("ollama"), format!("#!/bin/sh\necho \"$@\" >> {}\nexit 0\n", log.display())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("ollama"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = env
        .command(["--config".as_ref(), cfg.as_os_str(), "--json".as_ref(), "pipeline".as_ref(), "run".as_ref(), "--force".as_ref()])
        .env("PATH", &path)
        .output()
        .unwrap();
    let r = common::Run::from(out);
    r.assert_ok();
    let rep = r.json();
    assert_eq!(rep["promoted"], true, "{rep:#}");
    let ship = step(&rep, "ollama");
    assert_eq!(ship["status"], "done", "{rep:#}");
    assert_eq!(ship["data"]["created"], true, "{rep:#}");
    let modelfile = demo.join("ollama/sam-demo/Modelfile");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.lines().any(|l| l == format!("create sam-demo -f {}", modelfile.display())), "{calls}");
    let text = std::fs::read_to_string(&modelfile).unwrap();
    assert!(text.starts_with("FROM ./ggml-model-f16.gguf\n"), "{text}");
    assert!(text.contains("SYSTEM \"\"\"You are SAM.\"\"\""), "{text}");
    assert!(demo.join("ollama/sam-demo/ggml-model-f16.gguf").is_file());
}
