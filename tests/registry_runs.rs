//! The run registry: runs recorded with their metrics, finished, failed when dropped, resumed;
//! a run whose process died (SIGKILL) is found and marked interrupted; `brain runs` lists them and
//! `brain runs show` prints a sparkline and writes a PNG.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use brain::registry::runs::{self, Run, RunSpec};
use brain::store::runs::{RunFilter, RunInsert, RunStatus};
use brain::store::Store;
use common::Env;
use serde_json::json;

/// A model directory the fingerprint can read: config.json and a small safetensors file.
fn fake_model(dir: &Path, fill: u8) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type":"qwen2","hidden_size":8}"#).unwrap();
    let data = vec![fill; 64];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![64], &data).unwrap();
    safetensors::serialize_to_file(vec![("w", view)], None, &dir.join("model.safetensors")).unwrap();
}

fn spec(env: &Env, kind: &str) -> RunSpec {
    RunSpec {
        kind: kind.into(),
        config: json!({"iters": 3, "learning_rate": 1e-4}),
        base_model: Some(env.path().join("base")),
        adapter: Some(env.path().join("adapters")),
        device: Some("cpu".into()),
        ..RunSpec::default()
    }
}

#[test]
fn a_run_is_recorded_with_metrics_fingerprint_and_duration() {
    let env = Env::new();
    fake_model(&env.path().join("base"), 1);
    let store = Store::open(&env.db_path()).unwrap();
    let run = Run::start(&store, spec(&env, "sft")).unwrap();
    let id = run.id().to_string();
    assert!(id.starts_with("sft-"), "{id}");
    for step in 1..=3u64 {
        run.log(step, &[("train_loss", 3.0 / step as f64), ("learning_rate", 1e-4), ("bad", f64::NAN)]).unwrap();
    }
    run.log_report(3, &json!({"step": 3, "val_loss": 1.5, "rewards": {"margins": 0.25}})).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let rec = run.done(json!({"val_loss": 1.5})).unwrap();
    assert_eq!(rec.status, RunStatus::Done);
    assert!(rec.duration_s.unwrap() > 0.0);
    assert!(rec.finished_at.is_some());
    assert_eq!(rec.final_metrics["val_loss"], 1.5);
    assert_eq!(rec.device.as_deref(), Some("cpu"));
    assert_eq!(rec.pid, Some(std::process::id() as i64));
    assert!(rec.host.as_deref().is_some_and(|h| !h.is_empty()));
    assert!(rec.base_model.as_deref().unwrap().ends_with("base"));
    let hash = rec.base_hash.clone().unwrap();
    assert!(hash.starts_with("sha256:"));

    let m = store.run_metrics(&id).unwrap();
    assert_eq!(m["train_loss"], vec![(1, 3.0), (2, 1.5), (3, 1.0)]);
    assert_eq!(m["val_loss"], vec![(3, 1.5)]);
    assert_eq!(m["rewards/margins"], vec![(3, 0.25)]);
    assert!(!m.contains_key("bad") && !m.contains_key("step"));

    // References are checked with clear errors.
    let err = Run::start(&store, RunSpec { snapshot_id: Some("snap-x".into()), ..spec(&env, "sft") }).err().unwrap();
    assert!(err.to_string().contains("no dataset snapshot snap-x"), "{err}");
    let err = Run::start(&store, RunSpec { parent_id: Some("sft-x".into()), ..spec(&env, "dpo") }).err().unwrap();
    assert!(err.to_string().contains("no run sft-x"), "{err}");
    store.record_snapshot("snap-1", "/data/snap-1", &json!({}), 3).unwrap();
    let with_snap = Run::start(&store, RunSpec { snapshot_id: Some("snap-1".into()), parent_id: Some(id.clone()), ..spec(&env, "dpo") }).unwrap();
    let rec3 = with_snap.done(json!({})).unwrap();
    assert_eq!((rec3.snapshot_id.as_deref(), rec3.parent_id.as_deref()), (Some("snap-1"), Some(id.as_str())));

    // Another base with other weights: another fingerprint.
    fake_model(&env.path().join("base"), 2);
    let other = Run::start(&store, spec(&env, "sft")).unwrap();
    let rec2 = other.done(json!({})).unwrap();
    assert_ne!(rec2.base_hash.unwrap(), hash);
}

#[test]
fn unfinished_runs_fail_and_interrupted_runs_resume() {
    let env = Env::new();
    fake_model(&env.path().join("base"), 1);
    let store = Store::open(&env.db_path()).unwrap();

    // Dropped without a result (an early `?`): failed, not left running.
    let id = {
        let run = Run::start(&store, spec(&env, "dpo")).unwrap();
        run.id().to_string()
    };
    let rec = store.run(&id).unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Failed);
    assert!(rec.error.unwrap().contains("without recording a result"));

    // Stopped with a checkpoint, resumed, finished: metrics kept, work time added up.
    let run = Run::start(&store, spec(&env, "sft")).unwrap();
    let id = run.id().to_string();
    run.log(1, &[("train_loss", 2.0)]).unwrap();
    run.log(2, &[("train_loss", 1.9)]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let first = run.interrupted("Ctrl-C", json!({"step": 2})).unwrap();
    assert_eq!(first.status, RunStatus::Interrupted);
    let first_s = first.duration_s.unwrap();
    assert!(first_s >= 0.03, "{first_s}");
    assert_eq!(runs::latest_interrupted(&store, "sft").unwrap().unwrap().id, id);

    let run = Run::resume(&store, &id, Some("cpu")).unwrap();
    assert_eq!(store.run(&id).unwrap().unwrap().status, RunStatus::Running);
    run.log(2, &[("train_loss", 1.8)]).unwrap(); // re-reported after the checkpoint: replaces
    run.log(3, &[("train_loss", 1.7)]).unwrap();
    let done = run.done(json!({"train_loss": 1.7})).unwrap();
    assert_eq!(done.status, RunStatus::Done);
    assert!(done.duration_s.unwrap() >= first_s);
    assert_eq!(store.run_metrics(&id).unwrap()["train_loss"], vec![(1, 2.0), (2, 1.8), (3, 1.7)]);

    // A finished run cannot be resumed.
    let err = Run::resume(&store, &id, None).err().expect("done runs do not resume");
    assert!(err.to_string().contains("only an interrupted or failed run"), "{err}");
    assert!(runs::latest_interrupted(&store, "sft").unwrap().is_none());
}

/// Inserts a `running` row as if process `pid` (started at `start`) had begun it on `host`.
fn fake_running(store: &Store, id: &str, host: &str, pid: u32, start: Option<String>) {
    store
        .insert_run(&RunInsert {
            id: id.into(),
            kind: "sft".into(),
            host: Some(host.into()),
            pid: Some(pid as i64),
            pid_start: start,
            ..RunInsert::default()
        })
        .unwrap();
    store.log_run_metrics(id, 5, &[("train_loss", 1.0)]).unwrap();
}

#[test]
fn a_killed_process_leaves_an_interrupted_run() {
    let env = Env::new();
    let store = Store::open(&env.db_path()).unwrap();
    let host = runs::host_name();

    let mut alive = Command::new("sleep").arg("60").stdin(Stdio::null()).spawn().unwrap();
    let mut killed = Command::new("sleep").arg("60").stdin(Stdio::null()).spawn().unwrap();
    fake_running(&store, "sft-alive", &host, alive.id(), runs::process_start(alive.id()));
    fake_running(&store, "sft-killed", &host, killed.id(), runs::process_start(killed.id()));
    // Same live pid, but another start time: the pid was recycled, the run's process is gone.
    fake_running(&store, "sft-recycled", &host, alive.id(), Some("1".into()));
    // Another machine's run cannot be checked from here.
    fake_running(&store, "sft-elsewhere", "some-other-host", killed.id(), None);

    killed.kill().unwrap(); // SIGKILL: nothing gets recorded by the process itself
    killed.wait().unwrap();

    let reaped = runs::reap_stale(&store).unwrap();
    let mut ids: Vec<&str> = reaped.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    let expect_recycled = runs::process_start(alive.id()).is_some();
    if expect_recycled {
        assert_eq!(ids, ["sft-killed", "sft-recycled"]);
    } else {
        assert_eq!(ids, ["sft-killed"]);
    }
    let status = |id: &str| store.run(id).unwrap().unwrap().status;
    assert_eq!(status("sft-alive"), RunStatus::Running);
    assert_eq!(status("sft-elsewhere"), RunStatus::Running);
    let k = store.run("sft-killed").unwrap().unwrap();
    assert_eq!(k.status, RunStatus::Interrupted);
    assert!(k.error.unwrap().contains(&format!("process {}", killed.id())));
    assert_eq!(k.finished_at, k.heartbeat_at, "finished at its last metric");
    assert!(k.duration_s.is_some());
    // Reaping again changes nothing.
    assert!(runs::reap_stale(&store).unwrap().is_empty());

    alive.kill().unwrap();
    alive.wait().unwrap();
    // `brain runs` reaps too.
    env.write_config("");
    let r = env.run(["runs", "--json"]);
    r.assert_ok();
    assert_eq!(status("sft-alive"), RunStatus::Interrupted);
    let list = r.json();
    assert!(list.as_array().unwrap().iter().any(|x| x["id"] == "sft-alive" && x["status"] == "interrupted"));
}

#[test]
fn runs_lists_and_show_draws_curves() {
    let env = Env::new();
    env.write_config("");
    fake_model(&env.path().join("base"), 1);
    std::fs::create_dir_all(env.path().join("adapters")).unwrap();
    let store = Store::open(&env.db_path()).unwrap();
    let sft = Run::start(&store, spec(&env, "sft")).unwrap();
    for step in 1..=40u64 {
        sft.log(step, &[("train_loss", 3.0 / (step as f64).sqrt())]).unwrap();
        if step % 10 == 0 {
            sft.log(step, &[("val_loss", 3.2 / (step as f64).sqrt())]).unwrap();
        }
    }
    let sft_id = sft.done(json!({"val_loss": 0.51, "train_loss": 0.47})).unwrap().id;
    let dpo = Run::start(&store, RunSpec { parent_id: Some(sft_id.clone()), ..spec(&env, "dpo") }).unwrap();
    for step in 1..=5u64 {
        let s = step as f64;
        dpo.log_report(step, &json!({"loss": 0.69 - 0.05 * s, "rewards/chosen": 0.1 * s, "rewards/rejected": -0.1 * s, "rewards/margins": 0.2 * s, "rewards/accuracies": 0.5 + 0.1 * s}))
            .unwrap();
    }
    let dpo_id = dpo.done(json!({"loss": 0.44})).unwrap().id;

    let r = env.run(["runs"]);
    r.assert_ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATUS"), "{}", r.stdout);
    assert!(lines[1].starts_with(&dpo_id), "newest first:\n{}", r.stdout);
    assert!(r.stdout.contains("val_loss 0.5100") && r.stdout.contains("done"), "{}", r.stdout);

    let r = env.run(["runs", "--json", "--kind", "sft"]);
    r.assert_ok();
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], sft_id.as_str());
    assert_eq!(v[0]["config"]["iters"], 3);

    // Show by a unique prefix (the random suffix makes the full id unique).
    let prefix = &sft_id[..sft_id.len() - 1];
    let r = env.run(["runs", "show", prefix]);
    r.assert_ok();
    assert!(r.stdout.contains(&format!("run        {sft_id}")), "{}", r.stdout);
    assert!(r.stdout.contains('█') && r.stdout.contains('▁'), "sparkline:\n{}", r.stdout);
    assert!(r.stdout.contains("train_loss") && r.stdout.contains("val_loss"), "{}", r.stdout);
    let png = r.stdout.lines().find_map(|l| l.strip_prefix("loss curves ")).expect("prints the image path").to_string();
    assert!(png.ends_with("loss_curves.png") && png.contains("adapters"), "{png}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");

    // DPO: rewards and accuracy panels; --out; --json.
    let out = env.path().join("dpo.png");
    let r = env.run(["runs", "show", &dpo_id, "--out", out.to_str().unwrap(), "--json"]);
    r.assert_ok();
    let v = r.json();
    assert_eq!(v["run"]["parent_id"], sft_id.as_str());
    assert_eq!(v["metrics"]["rewards/margins"].as_array().unwrap().len(), 5);
    assert_eq!(v["curves"], out.to_str().unwrap());
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 3 * 320, "three panels: loss, rewards, accuracy");

    let r = env.run(["runs", "show", "latest", "--no-plot"]);
    r.assert_ok();
    assert!(r.stdout.contains(&dpo_id));

    // Errors: unknown, ambiguous.
    let r = env.run(["runs", "show", "nope"]);
    r.assert_failed();
    assert!(r.stderr.contains("no run nope"), "{}", r.stderr);
    Run::start(&store, spec(&env, "sft")).unwrap().done(json!({})).unwrap();
    let r = env.run(["runs", "show", "sft-"]);
    r.assert_failed();
    assert!(r.stderr.contains("matches several runs"), "{}", r.stderr);
    assert_eq!(store.runs(&RunFilter::default()).unwrap().len(), 3);
    let r = env.run(["runs", "--status", "bogus"]);
    r.assert_failed();
}
