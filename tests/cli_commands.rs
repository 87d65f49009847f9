//! Every training-side command of README's usage block through the built `brain` binary, on a
//! tiny model made with `brain model init-tiny` in a temporary folder: model info, train (its
//! registration, `--test`, `--resume` with changed settings, `--no-register`, dataset errors),
//! dpo (the layer default on a two-layer model), runs, models show/promote/rollback, eval
//! (`--model-version`, `--compare`), generate and chat with scripted input. Outputs and `--json`
//! shapes are checked, not only exit codes. (fuse and export ollama: tests/ship_*.rs.)

mod common;

use std::io::Write as _;
use std::process::Stdio;

use common::{Env, Run};
use serde_json::{json, Value};

/// `brain ARGS`, asserting success.
#[track_caller]
fn ok(env: &Env, args: &[&str]) -> common::Run {
    let r = env.run(args);
    r.assert_ok();
    r
}

/// `brain --json ARGS`, parsed.
#[track_caller]
fn json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    ok(env, &all).json()
}

fn write_lines(path: &std::path::Path, lines: &[Value]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Preference pairs a tiny model can tell apart: the chosen answer repeats the question's word.
fn write_pairs(dir: &std::path::Path) {
    let words = ["red", "blue", "green", "fox", "dog", "river", "stone", "code"];
    let pair = |w: &str| json!({"prompt": format!("Say {w}."), "chosen": format!("{w} {w}"), "rejected": "no"});
    write_lines(&dir.join("train.jsonl"), &words.iter().map(|w| pair(w)).collect::<Vec<_>>());
    write_lines(&dir.join("valid.jsonl"), &words[..4].iter().map(|w| pair(w)).collect::<Vec<_>>());
}

fn count(env: &Env, sql: &str) -> i64 {
    env.count(sql)
}

#[test]
fn train_dpo_runs_models_eval_generate_and_chat_through_the_binary() {
    let env = Env::new();
    env.write_config("[train]\nbase_model = \"models/tiny\"\n");

    // model init-tiny / model info
    let tiny = json(&env, &["model", "init-tiny", "models/tiny"]);
    assert!(tiny["parameters"].as_u64().unwrap() > 0 && tiny["tokenizer_size"].as_u64().unwrap() > 0, "{tiny}");
    let info = json(&env, &["model", "info", "models/tiny"]);
    assert_eq!(info["layers"], 2, "{info}");
    assert_eq!(info["parameters"], tiny["parameters"], "{info}");
    let text = ok(&env, &["model", "info", "models/tiny"]).stdout;
    assert!(text.contains("architecture") && text.contains("2 layers"), "{text}");

    brain_train::tiny::write_synthetic_chat(&env.path().join("data"), 24, 6, 6, 1).unwrap();
    let sft = ["--model", "models/tiny", "--data", "data", "--adapter-path", "runs/sft", "--learning-rate", "5e-3"];
    let train = |extra: &[&str]| {
        let mut a = vec!["train"];
        a.extend_from_slice(&sft);
        if !extra.contains(&"--batch-size") {
            a.extend_from_slice(&["--batch-size", "4"]);
        }
        a.extend_from_slice(extra);
        env.run(&a)
    };

    // A plain `brain train` records its run and registers its adapter as a model version.
    let r = train(&["--iters", "6", "--steps-per-eval", "3", "--save-every", "3", "--json"]);
    r.assert_ok();
    let rep = r.json();
    assert_eq!(rep["steps"], 6, "{rep}");
    assert!(rep["best_val_loss"].as_f64().unwrap() > 0.0, "{rep}");
    let run1 = rep["registered"]["run"].as_str().unwrap().to_string();
    assert_eq!(rep["registered"]["model_version"], "v1", "{rep}");
    assert!(env.path().join("runs/sft/adapters.safetensors").is_file());
    let (kind, status, adapter): (String, String, String) = env
        .db()
        .query_row("SELECT kind, status, adapter FROM runs WHERE id = ?1", [&run1], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    assert_eq!((kind.as_str(), status.as_str()), ("sft", "done"));
    assert!(adapter.ends_with("runs/sft"), "{adapter}");
    let models = json(&env, &["models"]);
    let v1 = models.as_array().unwrap().iter().find(|m| m["version"] == "v1").unwrap_or_else(|| panic!("{models}"));
    assert_eq!(v1["run_id"], run1.as_str());
    assert!(v1["eval"]["test_loss"].as_f64().unwrap() > 0.0, "test.jsonl exists, so v1 carries a test loss: {v1}");

    // Resuming with another batch size is refused, naming the setting (no panic).
    let r = train(&["--iters", "9", "--resume", "--batch-size", "16"]);
    r.assert_failed();
    assert!(r.stderr.contains("batch_size (checkpoint: 4, now: 16)") && r.stderr.contains("--resume"), "{}", r.stderr);
    // With the same settings it continues from the checkpoint to the new total.
    let r = train(&["--iters", "9", "--resume", "--json"]);
    r.assert_ok();
    let rep = r.json();
    assert_eq!(rep["steps"], 9, "{rep}");
    assert_eq!(rep["registered"]["model_version"], "v2", "{rep}");

    // train --test: loss and perplexity of the adapter on test.jsonl.
    let t = json(&env, &["train", "--test", "--model", "models/tiny", "--data", "data", "--adapter-path", "runs/sft"]);
    let (loss, ppl) = (t["test_loss"].as_f64().unwrap(), t["test_ppl"].as_f64().unwrap());
    assert!(loss > 0.0 && (ppl - loss.exp()).abs() < 1e-3 * ppl, "{t}");
    assert!(t["tokens"].as_u64().unwrap() > 0, "{t}");

    // --no-register: a scratch run leaves the store as it was. --compile: both updates' loss and
    // gradient ran compiled (tests/compiled_update.rs checks it trains as the uncompiled run), and
    // with the CPU's fused AdamW turned off the update is MLX-compiled too (as on a GPU), so the
    // second update's loss, which the first update's AdamW step decides, checks it through the
    // binary against the same run uncompiled.
    let runs_before = count(&env, "SELECT count(*) FROM runs");
    let scratch = ["--json", "train", "--model", "models/tiny", "--data", "data", "--adapter-path", "runs/scratch", "--iters", "2", "--no-register", "--learning-rate", "0.01"];
    let composed_adamw = |extra: &[&str]| Run::from(env.command(scratch.iter().chain(extra)).env("BRAIN_COMPOSED_ADAMW", "1").output().unwrap());
    let r = composed_adamw(&["--compile"]);
    r.assert_ok();
    assert!(r.json().get("registered").is_none(), "{}", r.stdout);
    assert_eq!(r.json()["compiled_batches"], 2, "{}", r.stdout);
    assert_eq!(count(&env, "SELECT count(*) FROM runs"), runs_before);
    let compiled_loss = r.json()["final_train_loss"].as_f64().unwrap();
    // Unset, compiling follows the device: on a GPU yes, on this CPU no. Asking for both is refused.
    let r = composed_adamw(&[]);
    r.assert_ok();
    assert_eq!(r.json()["compiled_batches"], 0, "{}", r.stdout);
    let plain_loss = r.json()["final_train_loss"].as_f64().unwrap();
    assert!((compiled_loss - plain_loss).abs() <= 1e-4 * plain_loss.abs(), "second-update loss compiled {compiled_loss}, uncompiled {plain_loss}");
    let r = env.run(scratch.iter().copied().chain(["--compile", "--no-compile"]));
    r.assert_failed();
    assert!(r.stderr.contains("--compile") && r.stderr.contains("--no-compile"), "{}", r.stderr);

    // --bf16-matmul: the 15 frozen matrices (2 layers x 7, the tied output matrix) multiplied
    // in bf16 by the bridge's AVX-512 BF16 kernel; the run trains to about the f32 run's loss
    // (bf16 rounding of weights and activations, ~1e-3 relative), not to exactly it (so the
    // kernel ran). Without the instructions the run is refused, saying so.
    let r = env.run(scratch.iter().copied().chain(["--bf16-matmul"]));
    if mlx::bf16mm::is_available().unwrap() {
        r.assert_ok();
        assert_eq!(r.json()["bf16_matrices"], 15, "{}", r.stdout);
        let bf16_loss = r.json()["final_train_loss"].as_f64().unwrap();
        let rel = (bf16_loss - plain_loss).abs() / plain_loss.abs();
        assert!(rel > 0.0 && rel < 2e-2, "second-update loss with bf16 products {bf16_loss}, f32 {plain_loss}");
    } else {
        r.assert_failed();
        assert!(r.stderr.contains("AVX-512 BF16"), "{}", r.stderr);
    }

    // A model stored in bf16 trains with bf16 products by default where the CPU's are faster than
    // sgemm (its weights are then exact; the activations round), and in f32 where they are not,
    // where it cannot multiply in bf16, or when told not to.
    let stored_bf16 = json(&env, &["model", "init-tiny", "models/tiny-bf16", "--dtype", "bfloat16"]);
    assert_eq!(stored_bf16["parameters"], tiny["parameters"], "{stored_bf16}");
    let bf16_run = |extra: &[&str]| {
        let args = [&scratch[..2], &["--model", "models/tiny-bf16"][..], &scratch[4..], extra].concat();
        ok(&env, &args).json()
    };
    let auto = bf16_run(&[]);
    let available = mlx::bf16mm::tiles_outrun_f32().unwrap();
    assert_eq!(auto["bf16_matrices"], if available { 15 } else { 0 }, "{auto}");
    let exact = bf16_run(&["--no-bf16-matmul"]);
    assert_eq!(exact["bf16_matrices"], 0, "{exact}");
    let (auto_loss, exact_loss) = (auto["final_train_loss"].as_f64().unwrap(), exact["final_train_loss"].as_f64().unwrap());
    assert!((auto_loss == exact_loss) != available, "second-update loss by default {auto_loss}, with f32 products {exact_loss}");
    let r = env.run(scratch.iter().copied().chain(["--bf16-matmul", "--no-bf16-matmul"]));
    r.assert_failed();
    assert!(r.stderr.contains("--no-bf16-matmul"), "{}", r.stderr);

    // A dataset line that is not UTF-8: the error names the file and the line.
    std::fs::create_dir_all(env.path().join("bad")).unwrap();
    std::fs::copy(env.path().join("data/valid.jsonl"), env.path().join("bad/valid.jsonl")).unwrap();
    let good = std::fs::read_to_string(env.path().join("data/train.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(env.path().join("bad/train.jsonl"), [first.as_bytes(), b"\n{\"text\": \"caf\xe9\"}\n"].concat()).unwrap();
    let r = env.run(["train", "--model", "models/tiny", "--data", "bad", "--adapter-path", "runs/bad", "--iters", "1"]);
    r.assert_failed();
    assert!(r.stderr.contains("bad/train.jsonl:2: not valid UTF-8"), "{}", r.stderr);

    // dpo with the default num_layers (16) on a two-layer model trains all layers, as train does.
    write_pairs(&env.path().join("pairs"));
    let d = json(&env, &["dpo", "--model", "models/tiny", "--data", "pairs", "--adapter-path", "runs/dpo", "--iters", "3", "--batch-size", "2"]);
    for k in ["loss", "rewards/margins", "rewards/accuracies", "eval_rewards/margins", "run", "reference"] {
        assert!(d.get(k).is_some(), "dpo --json lacks {k}: {d}");
    }
    assert_eq!(d["registered"]["model_version"], "v3", "{d}");
    let dpo_run = d["run"].as_str().unwrap().to_string();
    // Starting from the SFT adapter links the DPO run to the SFT run that wrote it.
    let d2 = json(&env, &["dpo", "--model", "models/tiny", "--data", "pairs", "--adapter-path", "runs/dpo2", "--reference-adapter", "runs/sft", "--iters", "2", "--batch-size", "2", "--beta", "0.2", "--loss-type", "ipo"]);
    assert!(d2["reference"].as_str().unwrap().contains("runs/sft"), "{d2}");
    let parent: Option<String> = env.db().query_row("SELECT parent_id FROM runs WHERE id = ?1", [d2["run"].as_str().unwrap()], |r| r.get(0)).unwrap();
    assert!(parent.is_some_and(|p| p.starts_with("sft")), "the DPO run's parent is an SFT run");

    // runs: every training command is listed, filters apply.
    let runs = json(&env, &["runs", "--limit", "0"]);
    let of = |kind: &str, status: &str| runs.as_array().unwrap().iter().filter(|r| r["kind"] == kind && r["status"] == status).count();
    assert_eq!((of("sft", "done"), of("dpo", "done")), (2, 2), "{runs}");
    // The refused resume and the bad dataset are recorded as failed, with the error.
    let failed: Vec<&str> = runs.as_array().unwrap().iter().filter(|r| r["status"] == "failed").map(|r| r["error"].as_str().unwrap()).collect();
    assert!(failed.len() == 2 && failed.iter().any(|e| e.contains("batch_size")) && failed.iter().any(|e| e.contains("UTF-8")), "{failed:?}");
    let only_dpo = json(&env, &["runs", "--kind", "dpo", "--status", "done"]);
    assert!(only_dpo.as_array().unwrap().iter().all(|r| r["kind"] == "dpo") && only_dpo.as_array().unwrap().iter().any(|r| r["id"] == dpo_run.as_str()), "{only_dpo}");
    let show = ok(&env, &["runs", "show", &run1]).stdout;
    assert!(show.contains("train_loss") && show.contains("val_loss"), "{show}");

    // models promote / rollback / show.
    let c = json(&env, &["models", "promote", "v1", "--reason", "first"]);
    assert_eq!(c["active"], "v1", "{c}");
    let c = json(&env, &["models", "promote", "v2"]);
    assert_eq!((c["active"].as_str(), c["retired"].as_str()), (Some("v2"), Some("v1")), "{c}");
    let c = json(&env, &["models", "rollback"]);
    assert_eq!((c["active"].as_str(), c["retired"].as_str()), (Some("v1"), Some("v2")), "{c}");
    let s = json(&env, &["models", "show", "v1"]);
    assert_eq!(s["model"]["status"], "active", "{s}");
    assert!(s["events"].as_array().unwrap().len() >= 3, "{s}");
    let listing = ok(&env, &["models"]).stdout;
    assert!(listing.contains("v1 *"), "{listing}");

    // eval of a registered version stores its numbers with it; --compare shows two.
    let e = json(&env, &["eval", "--model-version", "v2", "--data", "data", "--max-examples", "2", "--max-tokens", "6"]);
    assert_eq!(e["model_version"], "v2", "{e}");
    assert!(e["test_loss"].as_f64().unwrap() > 0.0 && e["perplexity"].as_f64().unwrap() > 1.0, "{e}");
    assert!(e["run"].as_str().unwrap().starts_with("eval"), "{e}");
    let stored = json(&env, &["models", "show", "v2"]);
    assert_eq!(stored["model"]["eval"]["test_loss"], e["test_loss"], "{stored}");
    let cmp = json(&env, &["eval", "--compare", "v1", "v2"]);
    assert_eq!(cmp["v2"]["test_loss"], e["test_loss"], "{cmp}");
    assert!(cmp["v1"].is_object(), "{cmp}");
    let table = ok(&env, &["eval", "--compare", "v1", "v2"]).stdout;
    assert!(table.contains("test_loss") && table.contains("v1") && table.contains("v2"), "{table}");

    // generate follows the active version (v1); --no-adapter uses the bare model.
    let g = json(&env, &["generate", "--prompt", "What is 3 plus 4?", "--max-tokens", "5"]);
    assert_eq!(g["model_version"], "v1", "{g}");
    assert!(g["generation_tokens"].as_u64().unwrap() <= 5 && g["text"].is_string(), "{g}");
    let bare = json(&env, &["generate", "--prompt", "What is 3 plus 4?", "--max-tokens", "5", "--no-adapter"]);
    assert!(bare["model_version"].is_null(), "{bare}");
    let plain = ok(&env, &["generate", "-p", "What is 3 plus 4?", "-m", "5"]).stdout;
    assert_eq!(plain, format!("{}\n", g["text"].as_str().unwrap()), "greedy decoding gives the same text");

    // chat with scripted input: one reply line per user turn, /reset and /quit understood.
    let mut child = env.command(["chat", "--max-tokens", "5"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"What is 3 plus 4?\n/reset\nWhat is 3 plus 4?\n/quit\nnever read\n").unwrap();
    let out = common::Run::from(child.wait_with_output().unwrap());
    out.assert_ok();
    // Two turns, two replies; after /reset the same question gets generate's (greedy) reply again.
    let reply = g["text"].as_str().unwrap();
    assert_eq!(out.stdout, format!("{reply}\n{reply}\n"), "stderr: {}", out.stderr);
}

/// The lines of a run's metrics.jsonl with `event`.
fn events(run: &std::path::Path, event: &str) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == event)
        .collect()
}

#[test]
fn training_and_generation_flags_do_what_they_say() {
    let env = Env::new();
    env.write_config("");
    ok(&env, &["model", "init-tiny", "models/tiny"]);
    brain_train::tiny::write_synthetic_chat(&env.path().join("data"), 24, 6, 6, 1).unwrap();
    let train = |run: &str, extra: &[&str]| {
        let mut a = vec!["--json", "train", "--model", "models/tiny", "--data", "data", "--adapter-path", run, "--no-register", "--learning-rate", "5e-3"];
        a.extend_from_slice(extra);
        ok(&env, &a).json()
    };
    let config = |run: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(env.path().join(run).join("adapter_config.json")).unwrap()).unwrap() };

    // --epochs with --grad-accumulation-steps: 24 examples / batch 4 = 6 batches per epoch;
    // 2 epochs at 2 batches per update = 6 updates.
    let r = train("runs/epochs", &["--epochs", "2", "--batch-size", "4", "--grad-accumulation-steps", "2"]);
    assert_eq!(r["steps"], 6, "{r}");
    // --quick: 10 updates.
    assert_eq!(train("runs/quick", &["--quick"])["steps"], 10);
    // --fine-tune-type full --num-layers 1: the last block's weights, recorded as such.
    let full = train("runs/full", &["--iters", "2", "--fine-tune-type", "full", "--num-layers", "1"]);
    let lora = train("runs/lora", &["--iters", "2", "--num-layers", "1"]);
    assert_eq!((config("runs/full")["fine_tune_type"].as_str(), config("runs/full")["num_layers"].as_i64()), (Some("full"), Some(1)));
    assert_eq!(config("runs/lora")["fine_tune_type"], "lora");
    assert!(full["trainable_parameters"].as_u64() > lora["trainable_parameters"].as_u64(), "{full} {lora}");
    // --max-seq-length cuts (and counts) longer examples.
    let tokenized = ok(&env, &["--json", "tokenize", "--model", "models/tiny", "--data", "data/train.jsonl"]).stdout;
    let longest = tokenized.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["ids"].as_array().unwrap().len()).max().unwrap();
    let cut = (longest - 1).to_string();
    assert!(train("runs/short", &["--iters", "1", "--max-seq-length", &cut])["truncated_examples"].as_u64().unwrap() > 0);
    // --steps-per-report and --save-every set the cadence of reports and checkpoints.
    train("runs/cadence", &["--iters", "4", "--steps-per-report", "2", "--save-every", "2", "--steps-per-eval", "4"]);
    let reported: Vec<u64> = events(&env.path().join("runs/cadence"), "train").iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(reported, [2, 4]);
    let vals: Vec<u64> = events(&env.path().join("runs/cadence"), "val").iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(vals, [0, 4]);
    for step in ["0000002", "0000004"] {
        assert!(env.path().join("runs/cadence/checkpoints").join(step).join("state.json").is_file(), "checkpoint {step}");
    }
    // --learning-rate drives the cosine schedule: the report of update 2 shows the rate it used,
    // MLX's cosine_decay(5e-3, 4) at step count 1.
    let first = &events(&env.path().join("runs/cadence"), "train")[0];
    let want = 5e-3 * 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos());
    assert!((first["learning_rate"].as_f64().unwrap() - want).abs() < 1e-8, "{first} vs {want}");
    // --seed fixes the run; another seed gives another one; --grad-checkpoint changes memory, not numbers.
    let a = train("runs/seed-a", &["--iters", "3", "--seed", "7"]);
    let b = train("runs/seed-b", &["--iters", "3", "--seed", "7", "--grad-checkpoint"]);
    let c = train("runs/seed-c", &["--iters", "3", "--seed", "8"]);
    let loss = |v: &Value| v["final_train_loss"].as_f64().unwrap();
    assert!((loss(&a) - loss(&b)).abs() < 1e-5, "{a} {b}");
    assert_ne!(loss(&a), loss(&c), "another seed, another run");

    // dpo flags: --loss-type, --label-smoothing, --sft-weight, --quick, --compile reach the run
    // (dpo_train.rs checks a compiled DPO run trains as the uncompiled one).
    write_pairs(&env.path().join("pairs"));
    let d = ok(&env, &["--json", "dpo", "--model", "models/tiny", "--data", "pairs", "--adapter-path", "runs/dpo", "--quick", "--loss-type", "robust", "--label-smoothing", "0.1", "--sft-weight", "0.5", "--batch-size", "2", "--compile"]).json();
    assert_eq!(d["compiled_batches"], 10, "every --quick update compiled: {d}");
    let run = d["run"].as_str().unwrap();
    let cfg: String = env.db().query_row("SELECT config FROM runs WHERE id = ?1", [run], |r| r.get(0)).unwrap();
    let cfg: Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!((cfg["loss_type"].as_str(), cfg["quick"].as_bool()), (Some("robust"), Some(true)), "{cfg}");
    assert!((cfg["label_smoothing"].as_f64().unwrap() - 0.1).abs() < 1e-6 && (cfg["sft_weight"].as_f64().unwrap() - 0.5).abs() < 1e-6, "{cfg}");
    assert_eq!(events(&env.path().join("runs/dpo"), "train").len(), 10, "--quick reports each of its 10 updates");
    // dpo --bf16-matmul (with per-block recomputation): the reference log-probs come from the
    // same bf16 products as the policy's, so the first update's rewards are ~0 (~1e-6; with f32
    // reference log-probs against bf16 policy ones they are 5-7e-5 here).
    if mlx::bf16mm::is_available().unwrap() {
        let d = ok(&env, &["--json", "dpo", "--model", "models/tiny", "--data", "pairs", "--adapter-path", "runs/dpo-bf16", "--quick", "--batch-size", "2", "--bf16-matmul", "--grad-checkpoint", "--no-register"]).json();
        assert_eq!(d["bf16_matrices"], 15, "{d}");
        let first = &events(&env.path().join("runs/dpo-bf16"), "train")[0];
        for k in ["rewards/chosen", "rewards/margins"] {
            let v = first[k].as_f64().unwrap();
            assert!(v.abs() < 1e-5, "first update's {k} {v}: reference and policy differ: {first}");
        }
    }

    // generate: explicit --model/--adapter-path; sampling with a seed repeats; top-k 1 is greedy;
    // a system prompt lengthens the prompt; -p - reads stdin.
    let gen = |extra: &[&str]| {
        let mut a = vec!["--json", "generate", "--model", "models/tiny", "--adapter-path", "runs/quick", "--max-tokens", "6"];
        a.extend_from_slice(extra);
        ok(&env, &a).json()
    };
    let greedy = gen(&["-p", "What is 1 plus 2?"]);
    let s1 = gen(&["-p", "What is 1 plus 2?", "--temp", "1.5", "--top-p", "0.95", "--seed", "3"]);
    let s2 = gen(&["-p", "What is 1 plus 2?", "--temp", "1.5", "--top-p", "0.95", "--seed", "3"]);
    assert_eq!(s1["text"], s2["text"], "same seed, same sample");
    assert_eq!(gen(&["-p", "What is 1 plus 2?", "--temp", "1.5", "--top-k", "1"])["text"], greedy["text"], "top-k 1 is greedy");
    let sys = gen(&["-p", "What is 1 plus 2?", "--system-prompt", "You answer with numbers only, always."]);
    assert!(sys["prompt_tokens"].as_u64() > greedy["prompt_tokens"].as_u64(), "{sys} {greedy}");
    assert!(gen(&["-p", "What is 1 plus 2?", "--repetition-penalty", "1.3"])["generation_tokens"].as_u64().unwrap() <= 6);
    let mut child = env.command(["--json", "generate", "--model", "models/tiny", "--adapter-path", "runs/quick", "--max-tokens", "6", "-p", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"What is 1 plus 2?").unwrap();
    let piped = common::Run::from(child.wait_with_output().unwrap());
    piped.assert_ok();
    assert_eq!(piped.json()["text"], greedy["text"], "the prompt read from stdin");

    // eval with an explicit --model and --adapter-path; runs --limit.
    let e = ok(&env, &["--json", "eval", "--model", "models/tiny", "--adapter-path", "runs/quick", "--data", "data", "--max-examples", "1", "--max-tokens", "4"]).json();
    assert!(e["test_loss"].as_f64().unwrap() > 0.0 && e["model_version"].is_null(), "{e}");
    assert_eq!(ok(&env, &["--json", "runs", "--limit", "1"]).json().as_array().unwrap().len(), 1);
}
