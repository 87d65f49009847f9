//! Data-parallel training through `brain launch` on loopback (MLX's ring backend): two ranks
//! train the adapter one process trains from the same seed and global batch (SFT and DPO), print
//! the same losses, write and register once; a resumed two-rank run equals an uninterrupted one;
//! a rank that dies stops the launch with a clear error, and a peer that never comes is an error
//! within the join timeout, not a hang.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Env;
use serde_json::{json, Value};

/// Chat examples of several lengths (so that the ranks' rows pad differently).
fn write_chat(dir: &Path) {
    let qa = [("How do I run the tests?", "Run cargo test."), ("What does cargo fmt do?", "It formats the code."), ("How do I build it?", "cargo build"), ("What is a commit?", "A recorded change.")];
    std::fs::create_dir_all(dir).unwrap();
    for (split, n) in [("train", 16), ("valid", 4)] {
        let lines: String = (0..n)
            .map(|i| {
                let (q, a) = qa[i % 4];
                format!("{}\n", json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": format!("{a}{}", " Yes.".repeat(i % 5))}]}))
            })
            .collect();
        std::fs::write(dir.join(format!("{split}.jsonl")), lines).unwrap();
    }
}

fn write_pairs(dir: &Path) {
    let words = ["red", "blue", "green", "fox", "dog", "river", "stone", "code"];
    std::fs::create_dir_all(dir).unwrap();
    for (split, ws) in [("train", &words[..]), ("valid", &words[..4])] {
        let lines: String = ws.iter().map(|w| format!("{}\n", json!({"prompt": format!("Say {w}."), "chosen": format!("{w} {w}"), "rejected": "no"}))).collect();
        std::fs::write(dir.join(format!("{split}.jsonl")), lines).unwrap();
    }
}

/// Every tensor of a safetensors file as f32 values.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
            (name, t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Asserts two adapters are equal within `rel` of the largest magnitude of each tensor.
fn assert_same_adapter(a: &Path, b: &Path, rel: f32) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.iter().map(|t| &t.0).collect::<Vec<_>>(), tb.iter().map(|t| &t.0).collect::<Vec<_>>());
    for ((name, x), (_, y)) in ta.iter().zip(&tb) {
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(diff <= rel * scale, "{name}: max |diff| {diff} vs scale {scale}");
    }
}

/// The `train` losses of a run's metrics.jsonl, in order.
fn train_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "train")
        .map(|v| v["train_loss"].as_f64().unwrap())
        .collect()
}

/// What rank `r` printed on stdout through the launcher (its prefix removed).
fn rank_stdout(stdout: &str, r: usize) -> String {
    let prefix = format!("[rank {r}] ");
    stdout.lines().filter_map(|l| l.strip_prefix(&prefix)).map(|l| format!("{l}\n")).collect()
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{what}: {a} vs {b}");
}

#[test]
fn two_ranks_train_what_one_process_trains() {
    let env = Env::new();
    env.write_config("");
    env.run(["model", "init-tiny", "tiny"]).assert_ok();
    write_chat(&env.path().join("data"));
    let sft = ["train", "--model", "tiny", "--data", "data", "--iters", "4", "--batch-size", "4", "--seed", "3", "--learning-rate", "1e-3", "--steps-per-report", "1"];
    let one = env.run([&["--json"][..], &sft, &["--adapter-path", "one", "--no-register"]].concat());
    one.assert_ok();
    let two = env.run([&["launch", "-n", "2", "--", "--json"][..], &sft, &["--adapter-path", "two"]].concat());
    two.assert_ok();
    assert!(two.stderr.contains("brain launch: 2 ranks"), "{}", two.stderr);
    assert_same_adapter(&env.path().join("one/adapters.safetensors"), &env.path().join("two/adapters.safetensors"), 1e-4);
    // The losses are the global ones, printed alike by both ranks, and written once.
    let (l1, l2) = (train_losses(&env.path().join("one")), train_losses(&env.path().join("two")));
    assert_eq!(l2.len(), 4, "rank 0 alone wrote metrics.jsonl: {l2:?}");
    for (a, b) in l1.iter().zip(&l2) {
        assert_close(*a, *b, "update loss");
    }
    let single = one.json();
    for r in 0..2 {
        let printed: Value = serde_json::from_str(&rank_stdout(&two.stdout, r)).unwrap_or_else(|e| panic!("rank {r}: {e}\n{}", two.stdout));
        assert_close(printed["final_train_loss"].as_f64().unwrap(), single["final_train_loss"].as_f64().unwrap(), "printed final loss");
        assert_eq!(printed["trained_tokens"], single["trained_tokens"], "rank {r} counts the global tokens");
    }
    // Rank 0 registered the run, once.
    let runs = env.run(["--json", "runs"]).json();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");

    // DPO alike.
    write_pairs(&env.path().join("pairs"));
    let dpo = ["dpo", "--model", "tiny", "--data", "pairs", "--iters", "3", "--batch-size", "4", "--seed", "5", "--learning-rate", "1e-3", "--no-register"];
    env.run([&dpo[..], &["--adapter-path", "dpo-one"]].concat()).assert_ok();
    env.run([&["launch", "-n", "2", "--"][..], &dpo, &["--adapter-path", "dpo-two"]].concat()).assert_ok();
    assert_same_adapter(&env.path().join("dpo-one/adapters.safetensors"), &env.path().join("dpo-two/adapters.safetensors"), 1e-4);

    // A batch smaller than the world is refused by name.
    let small: Vec<&str> = sft.iter().map(|a| if *a == "4" { "1" } else { a }).collect();
    let r = env.run([&["launch", "-n", "2", "--"][..], &small, &["--adapter-path", "small", "--no-register"]].concat());
    r.assert_failed();
    assert!(r.stderr.contains("batch size 1 cannot be split over 2 ranks"), "{}", r.stderr);
}

#[test]
fn a_resumed_two_rank_run_equals_an_uninterrupted_one() {
    let env = Env::new();
    env.run(["model", "init-tiny", "tiny"]).assert_ok();
    write_chat(&env.path().join("data"));
    let run = |dir: &str, extra: &[&str]| {
        let base = ["launch", "--ranks", "2", "--", "train", "--model", "tiny", "--data", "data", "--iters", "4", "--batch-size", "4", "--seed", "9", "--learning-rate", "1e-3", "--save-every", "2", "--no-register", "--adapter-path", dir];
        env.run([&base[..], extra].concat()).assert_ok();
    };
    run("whole", &[]);
    // A hostfile (mlx.launch's format) needs two hosts at least; one is refused by name.
    std::fs::write(env.path().join("hosts.json"), r#"[{"ssh": "only-one", "ips": ["10.0.0.1"]}]"#).unwrap();
    let r = env.run(["launch", "--hostfile", "hosts.json", "--port", "5000", "--", "train", "--model", "tiny"]);
    r.assert_failed();
    assert!(r.stderr.contains("hosts.json: a hostfile needs at least two hosts"), "{}", r.stderr);
    // An interrupted copy: what the run held after update 2.
    let (whole, cut) = (env.path().join("whole"), env.path().join("cut"));
    std::fs::create_dir_all(cut.join("checkpoints")).unwrap();
    for f in ["adapter_config.json"] {
        std::fs::copy(whole.join(f), cut.join(f)).unwrap();
    }
    let ck = cut.join("checkpoints/0000002");
    std::fs::create_dir_all(&ck).unwrap();
    for entry in std::fs::read_dir(whole.join("checkpoints/0000002")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), ck.join(entry.file_name())).unwrap();
    }
    run("cut", &["--resume"]);
    assert_same_adapter(&whole.join("adapters.safetensors"), &cut.join("adapters.safetensors"), 1e-6);
}

#[test]
fn a_rank_that_dies_stops_the_launch_and_a_missing_peer_is_an_error() {
    let env = Env::new();
    env.run(["model", "init-tiny", "tiny"]).assert_ok();
    write_chat(&env.path().join("data"));
    let mut child = env
        .command(["launch", "-n", "2", "--", "train", "--model", "tiny", "--data", "data", "--iters", "100000", "--batch-size", "4", "--no-register", "--adapter-path", "long"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let mut victim = None;
    // Rank 1's process id, then its first progress report (training is under way).
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if let Some(pid) = line.strip_prefix("brain launch: rank 1 is process ") {
            victim = Some(pid.trim().parse::<i32>().unwrap());
        }
        if victim.is_some() && line.starts_with("[rank 1]") && line.contains("loss") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{log}");
    }
    let pid = victim.unwrap_or_else(|| panic!("no rank 1: {log}"));
    // SAFETY: kill(2) on a process id the launcher reported for its own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 9), "the worst rank's code: killed by signal 9\n{log}");
    assert!(killed.elapsed() < Duration::from_secs(60), "the launch ended {:?} after the kill", killed.elapsed());
    // Whichever rank the launcher sees end first, the killed one is named.
    assert!(log.contains("brain launch: rank 1 was killed by signal 9"), "{log}");
    assert!(log.contains("stopping the other ranks"), "{log}");

    // One rank of two, its peer never started: an error within the join timeout.
    let hostfile = env.path().join("ring.json");
    std::fs::write(&hostfile, r#"[["127.0.0.1:1"], ["127.0.0.1:2"]]"#).unwrap();
    let t0 = Instant::now();
    let r = common::Run::from(
        env.command(["train", "--model", "tiny", "--data", "data", "--iters", "2", "--no-register", "--adapter-path", "alone"])
            .env("MLX_RANK", "0")
            .env("MLX_HOSTFILE", &hostfile)
            .env("BRAIN_DIST_TIMEOUT_S", "3")
            .output()
            .unwrap(),
    );
    r.assert_failed();
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    assert!(r.stderr.contains("rank 0 could not"), "{}", r.stderr);
}
